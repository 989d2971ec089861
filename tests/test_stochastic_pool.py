"""Stochastic pooling (Zeiler & Fergus 2013), forward and backward.

Over each window's taps inside the input (padding takes no part), S = sum x:
training draws one tap with probability x_i / S (u from a counter-based hash of
(seed, plane n*C + c, window), then the first tap whose running sum in x's dtype
exceeds u * S; where rounding leaves none, the last tap at which the running sum is S
and the tap is > 0; a window of zeros keeps its first tap) and passes its value; its
backward routes grad_output to the drawn taps (given as indices, or drawn again from
the seed). Inference: y = sum x^2 / S (0 for a window of zeros), grad (2 x_i - y) / S g.

* Hand-checked examples: values and draws worked out from the definition (windows with
  one nonzero tap, which every seed must draw, windows of zeros, padding, overlap,
  dilation, ceil mode, subnormal sums where rounding leaves t == S; draws from a
  scalar pure-Python copy of the hash), training and inference, forward and backward,
  run on fastpool and on the reference (tests/stochastic_reference.py), so they also
  check the reference; the reference against a brute-force loop over windows and taps.
* The geometry grid of pool_cases (ranks 1-3, every padding form, dilation, ceil-mode
  overhangs, both layouts and dtypes) on ReLU-like data (many zeros, ties, signed
  zeros, subnormals), several seeds: draws (values and indices) bitwise equal to the
  reference; the training backward (indices and seed) bitwise equal to the reference
  scatter and to max_pool_backward with the same indices; the inference form against
  the reference. A subset on every SIMD path x threads 1 and 2, larger inputs bitwise
  identical on every SIMD path x threads 1, 2, 3.
* Statistics: empirical frequencies of the drawn taps over 20000 planes (and over the
  windows of one plane) against p, chi-square and per-tap z (fixed seeds, so the
  tests are deterministic); independence of adjacent windows and of adjacent seeds.
* Seeds: int reproducibility, different seeds differ, numpy Generators (one uint64
  draw, advancing), None (fresh, valid draws), numpy integer seeds, the backward from
  the seed equals the backward from the indices.
* Numerical gradients of the inference form; out=, non-contiguous inputs, inputs left
  unchanged, unbatched inputs, fixed-rank forms, list input, doctests; argument errors;
  PyTorch's composition avg_pool(x^2) / avg_pool(x) for the inference form.

Tolerances of the inference form: relative to the window's maximum for y (y lies in
[0, max]) and to sum |g| (2 x_i + y) / S for grad_x; rtol 1e-5 (float32), 1e-12 (float64).
Training results are exact: values and indices bitwise, gradients of multiples of 1/4.
"""

from __future__ import annotations

import copy
import doctest
import importlib
import itertools
import math
from typing import Any, Dict, Tuple

import numpy as np
import pytest

import fastpool
import reference as ref
import stochastic_reference as sref
from pool_cases import (
    DTYPES,
    GEOMS,
    IMPLS,
    LAYOUTS,
    OUT_CASES,
    SHORT,
    UNBATCHED,
    WINDOW_BACKEND_CASES,
    WINDOW_TORCH_CASES,
    Case,
    Geom,
    assert_bitwise_equal,
    assert_close,
    assert_unchanged,
    cached,
    fp,
    grid,
    identical_on_every_backend,
    numerical_gradient,
    params,
    row,
    snapshot,
    transposed_memory,
    views,
)

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
INF, NAN = np.inf, np.nan
SEEDS = (0, 20240601, 2**64 - 1)
KINDS = ("relu", "ties", "sparse", "subnormal")
SMOOTH_KINDS = ("relu", "ties", "sparse")  # the inference form: no x^2 underflow


def rtol_of(dtype: Any) -> float:
    return RTOL[np.dtype(dtype)]


def _tuple(geom: Geom) -> Tuple[int, ...]:
    k = geom.kernel_size
    return k if isinstance(k, tuple) else (k,) * geom.rank


# --------------------------------------------------------------------------- data


def relu_data(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    """Non-negative inputs of a given kind (every kind has zeros of both signs).

    relu       max(normal, 0): half zeros, no other ties.
    ties       multiples of 1/4 in [0, 2], half zeros: many equal taps, exact sums.
    sparse     85% zeros, the rest in [0.5, 2): windows of zeros and windows with a
               single nonzero tap.
    subnormal  0..3 times the smallest subnormal: u * S rounds to S for many u (the
               draw's fallback rule) and to 0 for others.
    """
    dtype = np.dtype(dtype)
    if kind == "relu":
        x = np.maximum(rng.standard_normal(shape), 0.0)
    elif kind == "ties":
        x = np.where(rng.random(shape) < 0.5, 0.0, rng.integers(1, 9, size=shape) / 4)
    elif kind == "sparse":
        x = np.where(rng.random(shape) < 0.85, 0.0, rng.uniform(0.5, 2.0, shape))
    elif kind == "subnormal":
        tiny = np.finfo(dtype).smallest_subnormal
        return (rng.integers(0, 4, size=shape) * tiny).astype(dtype)
    else:
        raise ValueError(kind)
    x = x.astype(dtype)
    x[(x == 0) & (rng.random(shape) < 0.3)] = -0.0
    return x


def case_data(case: Case, kind: str, salt: str = "") -> np.ndarray:
    return relu_data(case.rng("stochastic" + kind + salt), case.shape, case.dtype, kind)


# --------------------------------------------------------------------------- a scalar copy of the hash

_M64 = (1 << 64) - 1


def _mix_py(z: int) -> int:
    """splitmix64's output function on a Python int (mod 2**64): written again, scalar."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _u_py(seed: int, plane: int, window: int, dtype: Any) -> float:
    """The documented uniform of (seed, plane, window), as an exact Python float."""
    z = _mix_py((_mix_py(seed ^ ((plane * 0x9E3779B97F4A7C15) & _M64)) + window * 0xD1B54A32D192ED03) & _M64)
    return (z >> 40) / 2.0**24 if np.dtype(dtype) == np.float32 else (z >> 11) / 2.0**53


def test_hash_known_values():
    """splitmix64 started at 0 outputs mix(0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF first
    (its published first output); the reference's uint64 hash agrees with the scalar
    Python one, and u lies in [0, 1) with 24 / 53 bits."""
    assert _mix_py(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert int(sref.mix64(np.uint64(0x9E3779B97F4A7C15))) == 0xE220A8397B1DCDAF
    assert _mix_py(0) == 0 and int(sref.mix64(np.uint64(0))) == 0
    rng = np.random.default_rng(5)
    seeds = [0, 1, 2**63, 2**64 - 1] + [int(s) for s in rng.integers(0, 2**63, 4)]
    planes, windows = np.arange(37, dtype=np.uint64), np.array([0, 1, 2, 1000, 2**40], dtype=np.uint64)
    for seed in seeds:
        for dtype in DTYPES:
            u = sref.uniforms(seed, planes[:, None], windows[None, :], dtype)
            assert u.dtype == dtype and (u >= 0).all() and (u < 1).all()
            want = np.array([[_u_py(seed, int(p), int(w), dtype) for w in windows] for p in planes])
            np.testing.assert_array_equal(u.astype(np.float64), want)
    u32 = sref.uniforms(7, np.arange(4096)[:, None], np.arange(64)[None, :], np.float32)
    assert np.all((u32 * 2**24) == np.round(u32 * 2**24))
    assert 0.49 < u32.mean() < 0.51


# --------------------------------------------------------------------------- hand-checked

def _fwd(which: str):
    """stochastic_pool(x, k, training=..., seed=..., **kw) -> y, or (y, indices) in training."""
    if which == "fastpool":
        def f(x, k, training=True, seed=None, **kw):
            if training:
                return fp("stochastic_pool")(x, k, training=True, seed=seed, return_indices=True, **kw)
            return fp("stochastic_pool")(x, k, training=False, **kw)
        return f
    return lambda x, k, training=True, seed=None, **kw: sref.stochastic_pool(x, k, training=training, seed=seed, **kw)


def _bwd(which: str):
    if which == "fastpool":
        return fp("stochastic_pool_backward")
    return sref.stochastic_pool_backward


HAND_SEEDS = list(range(40)) + [2**32, 2**63, 2**64 - 1]

# Inference: (label, x, k, kwargs, y = sum x^2 / sum x, grad_output, grad_x = sum over windows
# of g (2 x_i - y) / S), every value worked out by hand.
HAND_INFERENCE = [
    # [0, 3] -> 9 / 3 = 3, grads (0 - 3)/3, (6 - 3)/3; [1, 1] -> 2 / 2 = 1, grads (2 - 1)/2
    ("0311", [0, 3, 1, 1], 2, {}, [3, 1], [1, 1], [-1, 1, 0.5, 0.5]),
    # [1, 3] -> 10 / 4; grads (2 - 2.5)/4 = -1/8, (6 - 2.5)/4 = 7/8
    ("13", [1, 3], 2, {}, [2.5], [1], [-0.125, 0.875]),
    ("13-g2", [1, 3], 2, {}, [2.5], [2], [-0.25, 1.75]),
    # a window of zeros: 0, no gradient
    ("zeros", [0, 0, 0], 3, {}, [0], [1], [0, 0, 0]),
    ("neg-zeros", [-0.0, 0, -0.0], 3, {}, [0], [1], [0, 0, 0]),
    # one nonzero tap: y is it; the zeros get (0 - 2)/2 = -1, the tap (4 - 2)/2 = 1
    ("single", [0, 2, 0], 3, {}, [2], [1], [-1, 1, -1]),
    # equal taps: y = their value, grads (2a - a) / (K a) = 1/K
    ("equal", [4, 4, 4, 4], 4, {}, [4], [1], [0.25, 0.25, 0.25, 0.25]),
    # padding takes no part: windows [pad, 2], [2, 2], [2, pad] -> 2, 2, 2; x0 gets
    # (4 - 2)/2 = 1 from [pad, 2] and (4 - 2)/4 = 1/2 from [2, 2], x1 the same
    ("padding", [2, 2], 2, {"stride": 1, "padding": 1}, [2, 2, 2], [1, 1, 1], [1.5, 1.5]),
    # overlap, stride 1: [1, 3] -> 2.5 and [3, 0] -> 3; g (1, 2): x0 -1/8,
    # x1 7/8 + 2 (6 - 3)/3 = 2.875, x2 2 (0 - 3)/3 = -2
    ("overlap", [1, 3, 0], 2, {"stride": 1}, [2.5, 3], [1, 2], [-0.125, 2.875, -2]),
    # dilation 2, stride 1: windows (x0, x2) = (1, 3) -> 2.5 and (x1, x3) = (0, 0) -> 0
    ("dilation", [1, 0, 3, 0], 2, {"stride": 1, "dilation": 2}, [2.5, 0], [1, 1], [-0.125, 0, 0.875, 0]),
    # ceil mode: the overhanging window [x4] = [5] is kept: 25 / 5 = 5, grad (10 - 5) / 5 = 1
    ("ceil", [1, 3, 0, 0, 5], 2, {"ceil_mode": True}, [2.5, 0, 5], [1, 1, 1], [-0.125, 0.875, 0, 0, 1]),
    ("floor", [1, 3, 0, 0, 5], 2, {}, [2.5, 0], [1, 1], [-0.125, 0.875, 0, 0, 0]),
]


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("label,x,k,kw,y,g,gx", [pytest.param(*h, id=h[0]) for h in HAND_INFERENCE])
def test_inference_by_hand(label, x, k, kw, y, g, gx, dtype, which):
    f, fb = _fwd(which), _bwd(which)
    xa, ga = row(x, dtype), row(g, dtype)
    got = f(xa, (k,), training=False, **kw)
    assert got.dtype == xa.dtype and got.shape == (1, 1, len(y))
    np.testing.assert_allclose(got, row(y, dtype), rtol=4 * np.finfo(dtype).eps, atol=0, err_msg=f"{label} forward")
    gg = fb(ga, xa, (k,), training=False, **kw)
    assert gg.dtype == xa.dtype and gg.shape == xa.shape
    np.testing.assert_allclose(gg, row(gx, dtype), rtol=4 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).eps,
                               err_msg=f"{label} backward")


# Training with a draw fixed by the data for every seed: (label, x, k, kwargs, y, indices,
# grad_output, grad_x). Taps of 0 have probability 0; windows of zeros give their first tap
# inside the input.
HAND_TRAINING = [
    # [0, 3] always draws 3 (index 1); [1, 1] either tap (checked separately)
    ("single-nonzero", [0, 0, 5, 0], 4, {}, [5], [2], [1], [0, 0, 1, 0]),
    ("single-first", [7, 0, 0], 3, {}, [7], [0], [2], [2, 0, 0]),
    ("single-last", [0, 0, 0.5], 3, {}, [0.5], [2], [3], [0, 0, 3]),
    ("zeros", [0, 0, 0], 3, {}, [0], [0], [1], [1, 0, 0]),
    # padding: [pad, 0] is a window of zeros (first tap inside: x0), [0, 4] and [4, 0] draw
    # x1, [0, pad] gives x2; pads are never drawn
    ("padding", [0, 4, 0], 2, {"stride": 1, "padding": 1}, [0, 4, 4, 0], [0, 1, 1, 2], [1, 2, 4, 8],
     [1, 6, 8]),
    # "same" k3 s1 on 3 (one pad each side): [pad, 0, 0], [0, 0, 6], [0, 6, pad]
    ("same", [0, 0, 6], 3, {"stride": 1, "padding": "same"}, [0, 6, 6], [0, 2, 2], [1, 1, 1], [1, 0, 2]),
    # overlap, stride 1: [0, 2] and [2, 0] both draw x1: gradients add
    ("overlap", [0, 2, 0], 2, {"stride": 1}, [2, 2], [1, 1], [1, 2], [0, 3, 0]),
    # dilation 2, stride 1: (x0, x2) = (0, 5), (x1, x3) = (1, 0), (x2, x4) = (5, 0)
    ("dilation", [0, 1, 5, 0, 0], 2, {"stride": 1, "dilation": 2}, [5, 1, 5], [2, 1, 2], [1, 2, 4],
     [0, 2, 5, 0, 0]),
    # ceil mode: the overhang [x4] is its own window; floor mode drops it
    ("ceil", [0, 0, 3, 0, 7], 2, {"ceil_mode": True}, [0, 3, 7], [0, 2, 4], [1, 2, 4], [1, 0, 2, 0, 4]),
    ("floor", [0, 0, 3, 0, 7], 2, {}, [0, 3], [0, 2], [1, 2], [1, 0, 2, 0, 0]),
    # ceil mode with padding 1 on 5: [pad, x0], [x1, x2], [x3, x4]
    ("ceil-pad", [2, 0, 0, 0, 3], 2, {"padding": 1, "ceil_mode": True}, [2, 0, 3], [0, 1, 4], [1, 2, 4],
     [1, 2, 0, 0, 4]),
]


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("label,x,k,kw,y,idx,g,gx", [pytest.param(*h, id=h[0]) for h in HAND_TRAINING])
def test_training_by_hand(label, x, k, kw, y, idx, g, gx, dtype, which):
    """Draws that every seed must make, their values, indices and gradients (from the
    indices and from the seed)."""
    f, fb = _fwd(which), _bwd(which)
    xa, ga = row(x, dtype), row(g, dtype)
    for seed in HAND_SEEDS:
        got, ind = f(xa, (k,), seed=seed, **kw)
        assert got.dtype == xa.dtype and ind.dtype == np.int64 and got.shape == ind.shape == (1, 1, len(y))
        np.testing.assert_array_equal(got, row(y, dtype), err_msg=f"{label} y, seed {seed}")
        np.testing.assert_array_equal(ind, row(idx, np.int64), err_msg=f"{label} indices, seed {seed}")
        np.testing.assert_array_equal(fb(ga, xa, (k,), indices=ind, **kw), row(gx, dtype), err_msg=label)
        np.testing.assert_array_equal(fb(ga, xa, (k,), seed=seed, **kw), row(gx, dtype), err_msg=label)


@pytest.mark.parametrize("which", IMPLS)
def test_zero_window_keeps_its_first_tap(which):
    """A window of zeros gives its first tap inside the input, that tap's own zero
    (-0.0 stays -0.0), and no other."""
    f = _fwd(which)
    x = row([-0.0, 0.0, 0.0, -0.0, 0.0, 0.0])
    for seed in HAND_SEEDS:
        y, ind = f(x, (2,), seed=seed)
        np.testing.assert_array_equal(ind, row([0, 2, 4], np.int64))
        np.testing.assert_array_equal(np.signbit(y), row([True, False, False], bool))
        y, ind = f(x, (3,), seed=seed, stride=2, padding=1)  # [pad, -0, 0], [0, 0, -0], [-0, 0, 0]
        np.testing.assert_array_equal(ind, row([0, 1, 3], np.int64))
        np.testing.assert_array_equal(np.signbit(y), row([True, False, True], bool))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_draws_follow_the_hash_by_hand(dtype, which):
    """Windows of 8 equal taps: the running sums 1..8 and t = 8 u are exact, so the drawn
    tap is floor(8 u), u from the scalar Python hash of (seed, plane n*C + c, window);
    both layouts, batched (plane n*C + c) and unbatched (plane c)."""
    f = _fwd(which)
    n, c, h, w = 2, 3, 4, 12  # windows 2 x 4: (2, 3) per plane
    x = np.ones((n, c, h, w), dtype)
    for seed in (0, 99, 2**64 - 1):
        y, ind = f(x, (2, 4), seed=seed)
        np.testing.assert_array_equal(y, np.ones((n, c, 2, 3), dtype))
        want = np.empty((n, c, 2, 3), np.int64)
        for b, ch, oh, ow in itertools.product(range(n), range(c), range(2), range(3)):
            t = math.floor(8 * _u_py(seed, b * c + ch, oh * 3 + ow, dtype))
            want[b, ch, oh, ow] = (2 * oh + t // 4) * w + 4 * ow + t % 4
        np.testing.assert_array_equal(ind, want, err_msg=f"seed {seed}")
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        _, ind_l = f(xl, (2, 4), seed=seed, layout="channels_last")
        np.testing.assert_array_equal(ind_l, np.moveaxis(want, 1, -1))
        _, ind_u = f(x[1], (2, 4), seed=seed)  # unbatched: planes 0..C-1, so batch 0's draws
        np.testing.assert_array_equal(ind_u, want[0])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_every_bit_of_u_by_hand(dtype, which, layout):
    """Windows [a, 2**b - a] (b = 24 / 53 bits of u): S = 2**b and t = u S = k exactly,
    k = z >> 40 (z >> 11) an integer, so the first tap is drawn iff a > k. With
    a = k + (plane + window) % 2, k from the scalar Python hash, the first tap is drawn
    exactly where plane + window is odd: every bit of u, of every (plane, window), counts."""
    f = _fwd(which)
    bits = 24 if np.dtype(dtype) == np.float32 else 53
    n, c, w = 2, 32, 5
    x = np.empty((n, c, 2 * w), dtype)
    want = np.empty((n, c, w), np.int64)
    for seed in (0x5EED, 2**64 - 5):
        for b, ch, o in itertools.product(range(n), range(c), range(w)):
            plane = b * c + ch
            k = int(_u_py(seed, plane, o, dtype) * 2**bits)
            odd = (plane + o) % 2
            a = k + odd
            x[b, ch, 2 * o], x[b, ch, 2 * o + 1] = a, 2**bits - a
            want[b, ch, o] = 2 * o + (0 if odd else 1)
        if layout == "channels_last":
            y, ind = f(np.ascontiguousarray(np.moveaxis(x, 1, -1)), (2,), seed=seed, layout=layout)
            y, ind = np.moveaxis(y, -1, 1), np.moveaxis(ind, -1, 1)
        else:
            y, ind = f(x, (2,), seed=seed)
        np.testing.assert_array_equal(ind, want, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(y, np.take_along_axis(x, want, axis=-1))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_rounding_fallback_by_hand(dtype, which):
    """Subnormal sums: t = u S rounds to S for u near 1 and no running sum exceeds it; the
    draw is then the last tap at which the running sum is S and the tap > 0.

    [0, m] (m the smallest subnormal): every seed draws x1 (never the zero).
    [m, m]: S = 2m, t = round(2u) m (ties to even): x0 iff round(2u) = 0 (c = m > 0),
    else x1 (t = m: c = 2m > m; t = 2m = S: the fallback, the last tap reaching S)."""
    f = _fwd(which)
    m = np.finfo(dtype).smallest_subnormal
    planes = 64
    x = np.zeros((1, planes, 2), dtype)
    x[..., 1] = m
    for seed in (1, 2, 3):
        y, ind = f(x, (2,), seed=seed)
        np.testing.assert_array_equal(ind, np.ones((1, planes, 1), np.int64))
        np.testing.assert_array_equal(y, np.full((1, planes, 1), m, dtype))
    x = np.full((1, planes, 2), m, dtype)
    for seed in (1, 2, 3):
        _, ind = f(x, (2,), seed=seed)
        us = [_u_py(seed, p, 0, dtype) for p in range(planes)]
        want = np.array([0 if round(2 * u) == 0 else 1 for u in us]).reshape(1, planes, 1)
        assert any(u >= 0.75 for u in us)  # the fallback was needed somewhere
        np.testing.assert_array_equal(ind, want, err_msg=f"seed {seed}")


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_2d_3d_and_layouts_by_hand(dtype, which):
    f, fb = _fwd(which), _bwd(which)
    eps = np.finfo(dtype).eps
    # 2x2 window [[0, 0], [0, 4]]: draws (1, 1) -> flat 3, y 4; inference 16 / 4 = 4,
    # grads (0 - 4)/4 = -1 for the zeros, (8 - 4)/4 = 1 for the 4
    plane = np.array([[0, 0], [0, 4]], dtype)
    for seed in (0, 1, 2):
        y, ind = f(plane[None, None], (2, 2), seed=seed)
        assert y.item() == 4 and ind.item() == 3
    np.testing.assert_allclose(f(plane[None, None], (2, 2), training=False).ravel(), [4], rtol=eps)
    g1 = np.ones((1, 1, 1, 1), dtype)
    np.testing.assert_allclose(fb(g1, plane[None, None], (2, 2), training=False)[0, 0],
                               [[-1, -1], [-1, 1]], rtol=eps)
    # channels_last, unbatched (H, W, C): channel 1 is [[1, 1], [1, 1]]: inference 1,
    # grads (2 - 1)/4; its draw is any tap
    xl = np.stack([plane, np.ones_like(plane)], axis=-1)
    y, ind = f(xl, (2, 2), seed=3, layout="channels_last")
    assert y.shape == ind.shape == (1, 1, 2)
    assert y[0, 0, 0] == 4 and ind[0, 0, 0] == 3 and y[0, 0, 1] == 1 and 0 <= ind[0, 0, 1] < 4
    np.testing.assert_allclose(f(xl, (2, 2), training=False, layout="channels_last")[0, 0], [4, 1], rtol=eps)
    gl = fb(np.ones((1, 1, 2), dtype), xl, (2, 2), training=False, layout="channels_last")
    np.testing.assert_allclose(gl[..., 0], [[-1, -1], [-1, 1]], rtol=eps)
    np.testing.assert_allclose(gl[..., 1], np.full((2, 2), 0.25), rtol=eps)
    gt = fb(np.array([[[2.0, 3.0]]], dtype), xl, (2, 2), indices=ind, layout="channels_last")
    assert gt[1, 1, 0] == 2 and gt[..., 0].sum() == 2
    assert gt[ind[0, 0, 1] // 2, ind[0, 0, 1] % 2, 1] == 3 and gt[..., 1].sum() == 3
    # 3-D 2x2x2 window of zeros with one 5 at (1, 0, 1): flat 5; inference 5
    cube = np.zeros((2, 2, 2), dtype)
    cube[1, 0, 1] = 5
    for seed in (0, 1):
        y, ind = f(cube[None, None], (2, 2, 2), seed=seed)
        assert y.item() == 5 and ind.item() == 5
    np.testing.assert_allclose(f(cube[None, None], (2, 2, 2), training=False).ravel(), [5], rtol=eps)
    gc = fb(np.ones((1, 1, 1, 1, 1), dtype), cube[None, None], (2, 2, 2), training=False)[0, 0]
    ex = np.full((2, 2, 2), -1.0)
    ex[1, 0, 1] = 1.0
    np.testing.assert_allclose(gc, ex, rtol=eps)


def test_pads_are_never_drawn():
    """Padding (numbers, pairs, "same") is no tap: over many seeds the draws of windows
    reaching into the padding are taps inside the input; every tap of a window of
    positive values is drawn sometimes."""
    x = np.ones((1, 200, 3), np.float32)
    seen = set()
    for kw in ({"padding": 1, "stride": 1}, {"padding": ((2, 1),), "stride": 2}, {"padding": "same", "stride": 1}):
        _, ind = fp("stochastic_pool")(x, (3,), seed=11, return_indices=True, **kw)
        assert ((ind >= 0) & (ind < 3)).all(), kw
        _, ref_ind = sref.stochastic_pool(x, (3,), seed=11, **kw)
        np.testing.assert_array_equal(ind, ref_ind)
        seen.update(np.unique(ind).tolist())
    assert seen == {0, 1, 2}
    # [pad, 1, 1]: the two taps each drawn about half the time
    _, ind = fp("stochastic_pool")(x, (3,), stride=1, padding=1, seed=12, return_indices=True)
    assert 70 < np.count_nonzero(ind[..., 0] == 0) < 130


def test_docstring_draw_example():
    """[0, 3, 1, 1] k2: the first window always draws 3 (index 1), the second either 1
    (index 2 or 3); the inference form 9/3, 2/2."""
    x = row([0, 3, 1, 1], np.float32)
    np.testing.assert_array_equal(fp("stochastic_pool")(x, (2,), training=False), row([3, 1], np.float32))
    seen = set()
    for seed in range(64):
        y, ind = fp("stochastic_pool")(x, (2,), seed=seed, return_indices=True)
        np.testing.assert_array_equal(y, row([3, 1], np.float32))
        assert ind[0, 0, 0] == 1 and ind[0, 0, 1] in (2, 3)
        seen.add(int(ind[0, 0, 1]))
    assert seen == {2, 3}


# --------------------------------------------------------------------------- the reference itself


def _brute(x: np.ndarray, seed: int, kernel_size, stride, padding, dilation, ceil_mode):
    """(y, indices) of x (N, C, *spatial) by loops over windows and taps with NumPy scalars
    of x's dtype (only the output sizes and pads from ref.make_geometry), u from the
    scalar Python hash."""
    dt = x.dtype.type
    geom = ref.make_geometry(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    n, c = x.shape[:2]
    y = np.empty((n, c) + geom.out_sizes, x.dtype)
    idx = np.empty((n, c) + geom.out_sizes, np.int64)
    for b, ch in itertools.product(range(n), range(c)):
        for w_out, o in enumerate(itertools.product(*(range(s) for s in geom.out_sizes))):
            taps = []
            for t in itertools.product(*(range(k) for k in geom.kernel)):
                pos = tuple(o[a] * geom.stride[a] - geom.pads[a][0] + t[a] * geom.dilation[a]
                            for a in range(geom.rank))
                if all(0 <= p < size for p, size in zip(pos, geom.in_sizes)):
                    taps.append(pos)
            vals = [x[(b, ch) + p] for p in taps]
            s = dt(0)
            for v in vals:
                s = dt(s + v)
            thr = dt(dt(_u_py(seed, b * c + ch, w_out, x.dtype)) * s)
            pick, run = None, dt(0)
            for i, v in enumerate(vals):
                run = dt(run + v)
                if run > thr:
                    pick = i
                    break
            if pick is None:
                run = dt(0)
                for i, v in enumerate(vals):
                    run = dt(run + v)
                    if run == s and v > 0:
                        pick = i
            if pick is None:
                pick = 0
            y[(b, ch) + o] = vals[pick]
            idx[(b, ch) + o] = int(np.ravel_multi_index(taps[pick], geom.in_sizes))
    return y, idx


REF_GEOMS = [
    Geom((7,), 3, 2, 1),
    Geom((6,), 2, 1, ((2, 0),), dilation=2, ceil_mode=True),
    Geom((5,), 4, 3, 2, ceil_mode=True),
    Geom((9,), 3, 2, "same"),
    Geom((4, 5), (2, 3), (1, 2), (1, 1)),
    Geom((5, 6), 2, 2, ((1, 0), (0, 1)), dilation=(2, 1), ceil_mode=True),
    Geom((3, 3, 4), 2, 1, ((1, 0), 0, (0, 1))),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("geom", [pytest.param(g, id=g.id) for g in REF_GEOMS])
@pytest.mark.parametrize("kind", KINDS)
def test_reference_matches_brute_force(geom, kind, dtype):
    case = Case(geom, "channels_first", dtype, 2, 2)
    x = case_data(case, kind, "brute")
    kw = geom.kwargs()
    for seed in (3, 2**64 - 2):
        y, idx = _brute(x, seed, **kw)
        ry, ridx = sref.stochastic_pool(x, seed=seed, **kw)
        assert_bitwise_equal(ry, y, f"reference y, seed {seed}")
        np.testing.assert_array_equal(ridx, idx)
        # channels_last and unbatched give the same draws (plane n*C + c in every layout)
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        ly, lidx = sref.stochastic_pool(xl, seed=seed, layout="channels_last", **kw)
        assert_bitwise_equal(ly, np.ascontiguousarray(np.moveaxis(y, 1, -1)))
        np.testing.assert_array_equal(lidx, np.moveaxis(idx, 1, -1))
        uy, uidx = sref.stochastic_pool(x[0], seed=seed, **dict(kw, kernel_size=_tuple(geom)))
        assert_bitwise_equal(uy, y[0])
        np.testing.assert_array_equal(uidx, idx[0])


# --------------------------------------------------------------------------- reference results


def expected_training(case: Case, kind: str, seed: int):
    """(y, indices, grad_x from them for case.grad()) of the reference, cached."""
    def compute():
        x, kw = case_data(case, kind), case.max_kwargs()
        y, idx = sref.stochastic_pool(x, seed=seed, **kw)
        return y, idx, sref.route_backward(case.grad(), x, idx, _tuple(case.geom), case.layout)
    return cached(("stochastic", case.id, kind, seed), compute)


def expected_inference(case: Case, kind: str):
    """(y, forward scale = the window max, grad_x, backward scale) of the reference, cached."""
    def compute():
        x, g, kw = case_data(case, kind), case.grad("normal"), case.max_kwargs()
        scale = ref.max_pool(x.astype(np.float64), **kw)[0]
        return (sref.stochastic_pool(x, training=False, **kw), scale,
                sref.stochastic_pool_backward(g, x, training=False, **kw),
                sref.stochastic_pool_backward(g, x, training=False, magnitude=True, **kw))
    return cached(("stochastic_mean", case.id, kind), compute)


def check_training(case: Case, kinds=KINDS, seeds=SEEDS) -> None:
    """Draws bitwise equal to the reference's; the backward from the indices and from
    the seed the reference scatter, bitwise; inputs left unchanged."""
    kw = case.max_kwargs()
    g = case.grad()
    for kind in kinds:
        x = case_data(case, kind)
        snap = snapshot(x, g)
        for seed in seeds:
            ey, eidx, egx = expected_training(case, kind, seed)
            what = f"{kind} seed {seed}"
            y, idx = fp("stochastic_pool")(x, seed=seed, return_indices=True, **kw)
            assert y.dtype == x.dtype and y.shape == case.out_shape() and y.flags.c_contiguous
            assert idx.dtype == np.int64 and idx.shape == y.shape and idx.flags.c_contiguous
            assert_bitwise_equal(y, ey, f"y {what}")
            assert_bitwise_equal(idx, eidx, f"indices {what}")
            assert_bitwise_equal(fp("stochastic_pool")(x, seed=seed, **kw), ey, f"y without indices {what}")
            gx = fp("stochastic_pool_backward")(g, x, indices=idx, **kw)
            assert gx.dtype == x.dtype and gx.shape == x.shape and gx.flags.c_contiguous
            assert_bitwise_equal(gx, egx, f"backward from indices {what}")
            assert_bitwise_equal(fp("stochastic_pool_backward")(g, x, seed=seed, **kw), egx,
                                 f"backward from seed {what}")
        assert_unchanged(snap, kind)


def check_inference(case: Case, kinds=SMOOTH_KINDS) -> None:
    kw = case.max_kwargs()
    rtol = rtol_of(case.dtype)
    for kind in kinds:
        x, g = case_data(case, kind), case.grad("normal")
        snap = snapshot(x, g)
        e, scale, e_g, g_scale = expected_inference(case, kind)
        y = fp("stochastic_pool")(x, training=False, **kw)
        assert isinstance(y, np.ndarray) and y.dtype == x.dtype and y.shape == case.out_shape()
        assert y.flags.c_contiguous
        assert_close(y, e, scale, rtol, f"inference forward {kind}")
        assert (y >= 0).all() and (y <= scale * (1 + rtol)).all()
        gx = fp("stochastic_pool_backward")(g, x, training=False, **kw)
        assert gx.dtype == x.dtype and gx.shape == x.shape and gx.flags.c_contiguous
        assert_close(gx, e_g, g_scale, rtol, f"inference backward {kind}")
        assert_unchanged(snap, kind)


# --------------------------------------------------------------------------- grid

GRID = grid(GEOMS)


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case):
    check_training(case)
    check_inference(case)




@pytest.mark.parametrize("case", params(WINDOW_BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check_training(case)
    check_inference(case)


@pytest.mark.parametrize("case", params(UNBATCHED))
def test_unbatched_and_fixed_rank_forms(case, backend):
    """(C, *spatial) / (*spatial, C) inputs (planes c: batch 0's draws) and
    stochastic_pool{1,2,3}d[_backward] with an int kernel_size give the batched generic
    results."""
    rank = case.geom.rank
    kw = case.max_kwargs()
    kw_tuple = dict(kw, kernel_size=_tuple(case.geom))
    rtol = rtol_of(case.dtype)
    f, fb = fp(f"stochastic_pool{rank}d"), fp(f"stochastic_pool{rank}d_backward")
    g = case.grad()
    for kind in ("relu", "sparse"):
        x = case_data(case, kind)
        for seed in SEEDS[:2]:
            ey, eidx, egx = expected_training(case, kind, seed)
            for batched in (True, False):
                xb, gb = (x, g) if batched else (x[0], g[0])
                eyb, eib, egb = (ey, eidx, egx) if batched else (ey[0], eidx[0], egx[0])
                what = f"{kind} seed {seed} batched={batched}"
                for name, fn, kk in ((f"stochastic_pool{rank}d", f, kw), ("stochastic_pool", fp("stochastic_pool"),
                                                                           kw_tuple)):
                    y, idx = fn(xb, seed=seed, return_indices=True, **kk)
                    assert_bitwise_equal(y, eyb, f"{name} {what}")
                    assert_bitwise_equal(idx, eib, f"{name} indices {what}")
                assert_bitwise_equal(fb(gb, xb, indices=eib, **kw), egb, f"backward indices {what}")
                assert_bitwise_equal(fb(gb, xb, seed=seed, **kw), egb, f"backward seed {what}")
                assert_bitwise_equal(fp("stochastic_pool_backward")(gb, xb, seed=seed, **kw_tuple), egb,
                                     f"generic backward seed {what}")
        e, scale, e_g, g_scale = expected_inference(case, kind)
        gn = case.grad("normal")
        for batched in (True, False):
            xb, gb = (x, gn) if batched else (x[0], gn[0])
            eb, sb, egb, gsb = (e, scale, e_g, g_scale) if batched else (e[0], scale[0], e_g[0], g_scale[0])
            assert_close(f(xb, training=False, **kw), eb, sb, rtol, f"inference {kind} batched={batched}")
            assert_close(fp("stochastic_pool")(xb, training=False, **kw_tuple), eb, sb, rtol)
            assert_close(fb(gb, xb, training=False, **kw), egb, gsb, rtol, f"inference backward {kind}")
            assert_close(fp("stochastic_pool_backward")(gb, xb, training=False, **kw_tuple), egb, gsb, rtol)


def test_unbatched_planes_are_the_first_batch_element():
    """The plane of (C, *spatial) channel c is c: unbatched x[1] draws as a batch of its
    own, not as batch element 1 (planes C + c)."""
    case = Case(Geom((40, 40), 2), "channels_first", np.float32, 2, 4)
    x = case_data(case, "relu")
    y, idx = fp("stochastic_pool")(x, 2, seed=5, return_indices=True)
    y0, idx0 = fp("stochastic_pool2d")(x[0], 2, seed=5, return_indices=True)
    y1, idx1 = fp("stochastic_pool2d")(x[1], 2, seed=5, return_indices=True)
    np.testing.assert_array_equal(idx0, idx[0])
    assert_bitwise_equal(y0, y[0])
    e1, ei1 = sref.stochastic_pool(x[1][None], (2, 2), seed=5)
    np.testing.assert_array_equal(idx1, ei1[0])
    assert (idx1 != idx[1]).any()


# --------------------------------------------------------------------------- backends

IDENTITY_CASES = [
    Case(Geom((33, 67), 3, 2, 1), "channels_first", np.float32, 2, 17),
    Case(Geom((33, 67), 3, 2, 1), "channels_last", np.float32, 2, 17),
    Case(Geom((40, 203), (3, 5), 1, (1, 2)), "channels_first", np.float64, 1, 9),
    Case(Geom((24, 70), 2, 2, ceil_mode=True), "channels_last", np.float64, 2, 37),
    Case(Geom((37, 131), 3, 3, 1, dilation=2, ceil_mode=True), "channels_first", np.float32, 1, 5),
    Case(Geom((2500,), 7, 2, 3), "channels_first", np.float32, 3, 11),
    Case(Geom((9, 17, 31), 3, 2, 1), "channels_last", np.float64, 2, 19),
    Case(Geom((10, 12, 45), (2, 3, 3), 1, ((1, 0), 1, 1), dilation=(2, 1, 1), ceil_mode=True),
         "channels_first", np.float32, 1, 3),
]

IDENTITY_SEED = 0xC0FFEE


def _outputs(case: Case) -> Dict[str, np.ndarray]:
    kw = case.max_kwargs()
    g = case.grad()
    res = {}
    for kind in ("relu", "ties"):
        x = case_data(case, kind)
        y, idx = fp("stochastic_pool")(x, seed=IDENTITY_SEED, return_indices=True, **kw)
        res[f"y {kind}"], res[f"indices {kind}"] = y, idx
        res[f"grad seed {kind}"] = fp("stochastic_pool_backward")(g, x, seed=IDENTITY_SEED, **kw)
        res[f"mean {kind}"] = fp("stochastic_pool")(x, training=False, **kw)
        res[f"mean grad {kind}"] = fp("stochastic_pool_backward")(case.grad("normal"), x, training=False, **kw)
    return res


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    """Every SIMD path x threads 1, 2, 3: the same bits as the first (scalar, 1 thread),
    draws, gradients and the inference form; the draws are the reference's."""
    base = identical_on_every_backend(lambda: _outputs(case))
    for kind in ("relu", "ties"):
        ey, eidx, egx = expected_training(case, kind, IDENTITY_SEED)
        assert_bitwise_equal(base[f"y {kind}"], ey, f"y {kind}")
        assert_bitwise_equal(base[f"indices {kind}"], eidx, f"indices {kind}")
        assert_bitwise_equal(base[f"grad seed {kind}"], egx, f"grad {kind}")
    e, scale, e_g, g_scale = expected_inference(case, "relu")
    assert_close(base["mean relu"], e, scale, rtol_of(case.dtype), "inference forward")
    assert_close(base["mean grad relu"], e_g, g_scale, rtol_of(case.dtype), "inference backward")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reproducible_at_any_thread_count(layout):
    """One seed, thread counts 1 to 8 on the best SIMD path: the same draws (the work is
    large enough to be split)."""
    case = Case(Geom((33, 67), 3, 2, 1), layout, np.float32, 2, 17)
    x, kw = case_data(case, "relu"), case.max_kwargs()
    assert x.size > 2**16
    ey, eidx, _ = expected_training(case, "relu", IDENTITY_SEED)
    for t in (1, 2, 3, 4, 5, 8):
        with fastpool.threads(t):
            y, idx = fp("stochastic_pool")(x, seed=IDENTITY_SEED, return_indices=True, **kw)
        assert_bitwise_equal(y, ey, f"threads {t}")
        assert_bitwise_equal(idx, eidx, f"indices threads {t}")


# --------------------------------------------------------------------------- statistics

# chi-square quantiles at 1 - 1e-4 (df: value), so a correct sampler fails one run in 10^4
# seeds; the seeds here are fixed, so the tests are deterministic.
CHI2_Q = {1: 15.137, 2: 18.421, 3: 21.108, 4: 23.513, 5: 25.745, 7: 29.878, 8: 31.828, 15: 44.263}


def _chi2(counts: np.ndarray, p: np.ndarray) -> float:
    n = counts.sum()
    e = n * p
    return float(((counts - e) ** 2 / e).sum())


def _check_frequencies(counts: np.ndarray, p: np.ndarray, what: str) -> None:
    """Zero-probability taps never drawn; chi-square below its 1 - 1e-4 quantile; every
    tap within 4 standard errors."""
    n = counts.sum()
    zero = p == 0
    assert (counts[zero] == 0).all(), f"{what}: a tap of probability 0 was drawn: {counts}"
    c, q = counts[~zero], p[~zero]
    chi2 = _chi2(c, q)
    df = c.size - 1
    assert chi2 < CHI2_Q[df], f"{what}: chi-square {chi2:.2f} (df {df}), counts {counts}, expected {n * p}"
    z = (c - n * q) / np.sqrt(n * q * (1 - q))
    assert np.abs(z).max() < 4.0, f"{what}: z {z}"


STAT_WINDOWS = [
    # (label, window values, kernel_size)
    ("0-1-2-3-4", [0, 1, 2, 3, 4], (5,)),
    ("skewed", [0.25, 0, 8, 0.5, 0, 1, 0.25, 0, 2], (3, 3)),
    ("equal-8", [1] * 8, (2, 2, 2)),
    ("tiny-tap", [1e-2, 1, 1, 1], (4,)),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("label,values,kernel", [pytest.param(*w, id=w[0]) for w in STAT_WINDOWS])
def test_frequencies_match_probabilities(label, values, kernel, dtype, layout):
    """One window per plane, 20000 planes (N = 4, C = 5000): the drawn taps' frequencies
    against p = x / sum x, for two seeds."""
    vals = np.array(values, dtype)
    p = vals.astype(np.float64) / vals.astype(np.float64).sum()
    n, c = 4, 5000
    window = vals.reshape(kernel)
    if layout == "channels_first":
        x = np.broadcast_to(window, (n, c) + kernel).copy()
    else:
        x = np.broadcast_to(window[..., None], (n,) + kernel + (c,)).copy()
    for seed in (1, 2**64 - 17):
        y, idx = fp("stochastic_pool")(x, kernel, seed=seed, layout=layout, return_indices=True)
        counts = np.bincount(idx.ravel(), minlength=vals.size)
        _check_frequencies(counts, p, f"{label} seed {seed}")
        np.testing.assert_array_equal(y.ravel(), vals[idx.ravel()])


def test_frequencies_over_the_windows_of_one_plane(backend):
    """One plane of 20000 windows (the window index in the hash), 2-D, overlapping
    windows sharing taps: each window draws with its own p."""
    row = np.array([0, 1, 3], np.float32)  # windows of k (1, 3), stride (1, 3): 1/4, 3/4
    x = np.tile(row, (200, 100))[None, None]  # (1, 1, 200, 300): 200 x 100 windows
    _, idx = fp("stochastic_pool")(x, (1, 3), seed=4, return_indices=True)
    counts = np.bincount((idx % 3).ravel(), minlength=3)
    _check_frequencies(counts, np.array([0, 0.25, 0.75]), "per-window")
    # overlapping windows, stride 1 over [1, 2, 1, 2, ...]: k 2: p (1/3, 2/3) or (2/3, 1/3)
    x = np.tile(np.array([1, 2], np.float64), (1, 1, 20001))
    _, idx = fp("stochastic_pool")(x, (2,), stride=1, seed=5, return_indices=True)
    big = x[0, 0, idx[0, 0]] == 2
    _check_frequencies(np.array([np.count_nonzero(~big), np.count_nonzero(big)]), np.array([1 / 3, 2 / 3]),
                       "overlapping")


def test_adjacent_windows_and_seeds_are_independent():
    """Joint frequencies of the draws of two neighbouring windows of a plane, and of one
    window under seeds s and s + 1: uniform over the 16 pairs (windows of 4 equal taps)."""
    x = np.ones((1, 20000, 8), np.float32)
    _, idx = fp("stochastic_pool")(x, (4,), seed=6, return_indices=True)
    pairs = (idx[0, :, 0] * 4 + (idx[0, :, 1] - 4)).astype(np.int64)
    _check_frequencies(np.bincount(pairs, minlength=16), np.full(16, 1 / 16), "neighbouring windows")
    _, a = fp("stochastic_pool")(x, (4,), seed=41, return_indices=True)
    _, b = fp("stochastic_pool")(x, (4,), seed=42, return_indices=True)
    pairs = (a[0, :, 0] * 4 + b[0, :, 0]).astype(np.int64)
    _check_frequencies(np.bincount(pairs, minlength=16), np.full(16, 1 / 16), "seeds 41 and 42")
    # neighbouring planes
    pairs = (a[0, 0::2, 1] - 4) * 4 + (a[0, 1::2, 1] - 4)
    _check_frequencies(np.bincount(pairs.astype(np.int64), minlength=16), np.full(16, 1 / 16), "planes")


def test_mean_of_draws_is_the_inference_form():
    """E[y] = sum p_i x_i = sum x^2 / S: the mean of the draws over 20000 planes is the
    inference form within 4 standard errors."""
    rng = np.random.default_rng(8)
    window = np.maximum(rng.standard_normal((3, 3)), 0).astype(np.float64)
    window[1, 1] = 2.5
    x = np.broadcast_to(window, (1, 20000, 3, 3)).copy()
    y = fp("stochastic_pool")(x, 3, seed=9)
    mean = fp("stochastic_pool")(x[:, :1], 3, training=False).item()
    p = window.ravel() / window.sum()
    sd = math.sqrt((p * (window.ravel() - mean) ** 2).sum() / y.size)
    assert abs(y.mean() - mean) < 4 * sd, (y.mean(), mean, sd)


# --------------------------------------------------------------------------- seeds

BIG = Case(Geom((32, 32), 2), "channels_first", np.float32, 2, 16)


def _valid_draws(x: np.ndarray, y: np.ndarray, idx: np.ndarray, kernel_size, **kw) -> None:
    """Each draw is a tap of its window: a tap > 0 (y its value), or the first tap inside
    the input of a window of zeros (y 0)."""
    valid, flat = sref.window_taps(x.shape, kernel_size, **kw)
    n, c = x.shape[:2]
    xs = x.reshape(n, c, -1)
    win = np.take(xs, flat, axis=-1, mode="clip")  # (N, C, *out, K); taps outside: masked below
    win = np.where(valid, win, 0)
    hit = (flat == idx[..., None]) & valid
    assert (hit.sum(axis=-1) >= 1).all(), "an index that is no tap of its window"
    np.testing.assert_array_equal(np.take_along_axis(xs, idx.reshape(n, c, -1), axis=-1).reshape(y.shape), y)
    zero = (win == 0).all(axis=-1)
    first = np.take_along_axis(np.broadcast_to(flat, win.shape), np.argmax(np.broadcast_to(valid, win.shape),
                                                                          axis=-1)[..., None], axis=-1)[..., 0]
    assert (y[~zero] > 0).all()
    np.testing.assert_array_equal(idx[zero], first[zero])
    assert (y[zero] == 0).all()


def test_same_int_seed_same_draws():
    x = case_data(BIG, "relu")
    y1, i1 = fp("stochastic_pool")(x, 2, seed=123, return_indices=True)
    y2, i2 = fp("stochastic_pool")(x, 2, seed=123, return_indices=True)
    assert_bitwise_equal(y1, y2)
    np.testing.assert_array_equal(i1, i2)
    # numpy integer seeds are the same seeds
    for s in (np.int64(123), np.uint64(123), np.int32(123)):
        _, i3 = fp("stochastic_pool")(x, 2, seed=s, return_indices=True)
        np.testing.assert_array_equal(i3, i1)
    _, top = fp("stochastic_pool")(x, 2, seed=np.uint64(2**64 - 1), return_indices=True)
    np.testing.assert_array_equal(top, sref.stochastic_pool(x, 2, seed=2**64 - 1)[1])


def test_different_seeds_differ():
    """Windows with at least two positive taps draw differently under other seeds (also
    seeds one bit apart, low or high): about half the draws of such windows change."""
    x = case_data(BIG, "ties")
    _, base = fp("stochastic_pool")(x, 2, seed=1000, return_indices=True)
    valid, flat = sref.window_taps(x.shape, 2)
    win = np.take(x.reshape(2, 16, -1), flat, axis=-1)
    choice = (win > 0).sum(axis=-1) >= 2
    assert choice.sum() > 2000
    for other in (1001, 1000 ^ 2**63, 1000 ^ 2**32, 0, 2**64 - 1):
        _, idx = fp("stochastic_pool")(x, 2, seed=other, return_indices=True)
        frac = np.count_nonzero(idx[choice] != base[choice]) / choice.sum()
        assert 0.3 < frac < 0.8, (other, frac)
        np.testing.assert_array_equal(idx[~choice], base[~choice])  # forced draws do not change


def test_generator_seed():
    """A Generator gives one uint64 draw of its stream as the seed: generators in the same
    state give the same draws, the generator moves on (the next call draws differently),
    and the draws are the reference's for that uint64."""
    x = case_data(BIG, "relu")
    g1, g2 = np.random.default_rng(77), np.random.default_rng(77)
    state = copy.deepcopy(g1.bit_generator.state)
    y1, i1 = fp("stochastic_pool")(x, 2, seed=g1, return_indices=True)
    y2, i2 = fp("stochastic_pool")(x, 2, seed=g2, return_indices=True)
    assert_bitwise_equal(y1, y2)
    np.testing.assert_array_equal(i1, i2)
    assert g1.bit_generator.state != state
    assert g1.bit_generator.state == g2.bit_generator.state
    _, i3 = fp("stochastic_pool")(x, 2, seed=g1, return_indices=True)
    assert (i3 != i1).any()
    g3 = np.random.default_rng(77)
    drawn = int(g3.integers(0, 2**64, dtype=np.uint64))
    assert g3.bit_generator.state == g2.bit_generator.state  # one uint64 draw
    ey, ei = sref.stochastic_pool(x, 2, seed=drawn)
    assert_bitwise_equal(y1, ey)
    np.testing.assert_array_equal(i1, ei)
    # the backward from those draws
    g = BIG.grad()
    np.testing.assert_array_equal(fp("stochastic_pool_backward")(g, x, 2, indices=i1),
                                  fp("stochastic_pool_backward")(g, x, 2, seed=drawn))


def test_seed_none_gives_fresh_valid_draws():
    x = case_data(BIG, "relu")
    y1, i1 = fp("stochastic_pool")(x, 2, return_indices=True)
    y2, i2 = fp("stochastic_pool")(x, 2, seed=None, return_indices=True)
    _valid_draws(x, y1, i1, 2)
    _valid_draws(x, y2, i2, 2)
    assert (i1 != i2).any()
    y3, i3 = fp("stochastic_pool")(x, 3, stride=2, padding=1, ceil_mode=True, return_indices=True)
    _valid_draws(x, y3, i3, 3, stride=2, padding=1, ceil_mode=True)


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_backward_from_seed_equals_backward_from_indices(case):
    """Also = max_pool_backward with the drawn indices (the same routing)."""
    kw = case.max_kwargs()
    x, g = case_data(case, "relu"), case.grad("normal")
    for seed in (5, 2**64 - 3):
        _, idx = fp("stochastic_pool")(x, seed=seed, return_indices=True, **kw)
        from_idx = fp("stochastic_pool_backward")(g, x, indices=idx, **kw)
        assert_bitwise_equal(fp("stochastic_pool_backward")(g, x, seed=seed, **kw), from_idx)
        assert_bitwise_equal(fp("stochastic_pool_backward")(g, x, seed=np.uint64(seed), **kw), from_idx)
        assert_bitwise_equal(fp("max_pool_backward")(g, x, indices=idx, **kw), from_idx, "max_pool_backward")
        # the reference scatter, to within the rounding of sums of up to K terms
        e = sref.route_backward(g, x, idx, _tuple(case.geom), case.layout)
        m = sref.route_backward(np.abs(g), x, idx, _tuple(case.geom), case.layout)
        assert_close(from_idx, e, m, 8 * np.finfo(case.dtype).eps, "backward vs scatter")


# --------------------------------------------------------------------------- gradients

GRAD_GEOMS = [
    pytest.param(Geom((9,), 3, 2, 1), id="1d-k3-s2-p1"),
    pytest.param(Geom((8,), 3, 1, ((2, 0),), dilation=2, ceil_mode=True), id="1d-k3-p(2,0)-d2-ceil"),
    pytest.param(Geom((5, 6), 3, 2, 1, ceil_mode=True), id="2d-k3-s2-p1-ceil"),
    pytest.param(Geom((5, 7), (2, 3), 1, "same"), id="2d-same"),
    pytest.param(Geom((3, 4, 5), 2, 1, ((1, 0), 0, (0, 1))), id="3d-pairs"),
]


def _shape(geom: Geom, layout: str, batch: int = 2, channels: int = 3):
    return (batch,) + ((channels,) + geom.spatial if layout == "channels_first" else geom.spatial + (channels,))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom", GRAD_GEOMS)
def test_numerical_gradient_of_the_inference_form(geom, layout, rng):
    x = rng.uniform(0.5, 2.0, _shape(geom, layout))
    kw = dict(geom.kwargs(), layout=layout, training=False)
    y = fp("stochastic_pool")(x, **kw)
    g = rng.standard_normal(y.shape)
    num = numerical_gradient(lambda v: fp("stochastic_pool")(v, **kw), x, g, h=1e-6)
    got = fp("stochastic_pool_backward")(g, x, **kw)
    assert np.abs(num).max() > 0.1
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_inference_invariants(dtype, backend):
    """Scaling x by 2 scales y by 2 and leaves the gradient unchanged (dy/dx is
    homogeneous of degree 0), bitwise (every step scales by a power of two); sum_i x_i
    dy/dx_i = y per window (Euler), so sum x * grad_x = sum g y."""
    case = Case(Geom((9, 11), 3, 2, 1, ceil_mode=True), "channels_last", dtype, 2, 5)
    kw = dict(case.max_kwargs(), training=False)
    x, g = case_data(case, "relu"), case.grad("normal")
    y = fp("stochastic_pool")(x, **kw)
    gx = fp("stochastic_pool_backward")(g, x, **kw)
    assert_bitwise_equal(fp("stochastic_pool")(2 * x, **kw), 2 * y)
    assert_bitwise_equal(fp("stochastic_pool_backward")(g, 2 * x, **kw), gx)
    lhs = (x.astype(np.float64) * gx).sum()
    rhs = (g.astype(np.float64) * y).sum()
    assert abs(lhs - rhs) <= 1e3 * np.finfo(dtype).eps * (np.abs(g) * y).sum()


# --------------------------------------------------------------------------- memory and inputs


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    """out= (starting as NaN) is written in full and returned: training (with and
    without indices), inference, and the three backwards."""
    x = case_data(case, "relu")
    g = case.grad()
    kw = case.max_kwargs()
    ey, eidx, egx = expected_training(case, "relu", SEEDS[1])
    snap = snapshot(x, g)
    out = np.full(ey.shape, np.nan, case.dtype)
    assert fp("stochastic_pool")(x, seed=SEEDS[1], out=out, **kw) is out
    assert_bitwise_equal(out, ey, "out")
    out[...] = np.nan
    y, idx = fp("stochastic_pool")(x, seed=SEEDS[1], out=out, return_indices=True, **kw)
    assert y is out
    assert_bitwise_equal(out, ey, "out with indices")
    np.testing.assert_array_equal(idx, eidx)
    out[...] = np.nan
    assert fp("stochastic_pool")(x, training=False, out=out, **kw) is out
    assert_bitwise_equal(out, fp("stochastic_pool")(x, training=False, **kw), "inference out")
    for name, extra in (("indices", {"indices": eidx}), ("seed", {"seed": SEEDS[1]})):
        gout = np.full(x.shape, np.nan, case.dtype)
        assert fp("stochastic_pool_backward")(g, x, out=gout, **extra, **kw) is gout
        assert_bitwise_equal(gout, egx, f"backward out from {name}")
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fp("stochastic_pool_backward")(g, x, training=False, out=gout, **kw) is gout
    assert_bitwise_equal(gout, fp("stochastic_pool_backward")(g, x, training=False, **kw), "inference backward out")
    # out inside a larger buffer (a canary of NaN around it): only out is written
    buf = np.full(2 * out.size + 64, np.nan, case.dtype)
    view = buf[32:32 + out.size].reshape(out.shape)
    assert fp("stochastic_pool")(x, seed=SEEDS[1], out=view, **kw) is view
    assert_bitwise_equal(view, ey)
    assert np.isnan(buf[:32]).all() and np.isnan(buf[32 + out.size:]).all()
    gbuf = np.full(2 * x.size + 64, np.nan, case.dtype)
    gview = gbuf[32:32 + x.size].reshape(x.shape)
    assert fp("stochastic_pool_backward")(g, x, indices=eidx, out=gview, **kw) is gview
    assert_bitwise_equal(gview, egx)
    assert np.isnan(gbuf[:32]).all() and np.isnan(gbuf[32 + x.size:]).all()
    # a non-contiguous out is refused, naming out
    big = np.full(ey.shape[:-1] + (2 * ey.shape[-1],), np.nan, case.dtype)
    with pytest.raises(ValueError, match=r"\bout\b"):
        fp("stochastic_pool")(x, seed=1, out=big[..., ::2], **kw)
    assert np.isnan(big).all()
    assert_unchanged(snap, "out=")


@pytest.mark.parametrize("case", params(OUT_CASES[:3]))
def test_non_contiguous_inputs(case, backend):
    """Strided, reversed, Fortran-order, read-only, unaligned and transposed-memory x,
    grad_output and indices: the same results, bitwise; inputs unchanged."""
    kw = case.max_kwargs()
    x, g = case_data(case, "ties"), case.grad()
    seed = SEEDS[1]
    ey, eidx, egx = expected_training(case, "ties", seed)
    mean = fp("stochastic_pool")(x, training=False, **kw)
    gn = case.grad("normal")
    mean_g = fp("stochastic_pool_backward")(gn, x, training=False, **kw)
    xs, gs, gns, ids = dict(views(x)), dict(views(g)), dict(views(gn)), dict(views(eidx))
    for d, a in ((xs, x), (gs, g), (gns, gn), (ids, eidx)):
        d["transposed-memory"] = transposed_memory(a, case.layout)
    for name in xs:
        xv, gv, gnv, iv = xs[name], gs[name], gns[name], ids[name]
        assert not (xv.flags.c_contiguous and xv.flags.aligned and xv.flags.writeable), name
        snap = snapshot(xv, gv, gnv, iv, x, g)
        y, idx = fp("stochastic_pool")(xv, seed=seed, return_indices=True, **kw)
        assert_bitwise_equal(y, ey, name)
        np.testing.assert_array_equal(idx, eidx, err_msg=name)
        assert_bitwise_equal(fp("stochastic_pool")(xv, training=False, **kw), mean, f"{name} inference")
        assert_bitwise_equal(fp("stochastic_pool_backward")(gv, xv, indices=iv, **kw), egx, f"{name} indices")
        assert_bitwise_equal(fp("stochastic_pool_backward")(gv, xv, seed=seed, **kw), egx, f"{name} seed")
        assert_bitwise_equal(fp("stochastic_pool_backward")(gnv, xv, training=False, **kw), mean_g,
                             f"{name} inference backward")
        assert_unchanged(snap, name)


def test_list_input_and_docstring_examples():
    y = fp("stochastic_pool")([[[0.0, 3.0, 1.0, 1.0]]], (2,), training=False)  # Python floats: float64
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[3.0, 1.0]]])
    y, idx = fp("stochastic_pool")([[[0.0, 3.0, 1.0, 1.0]]], (2,), seed=7, return_indices=True)
    assert y.dtype == np.float64 and y[0, 0, 0] == 3 and idx[0, 0, 0] == 1
    g = fp("stochastic_pool_backward")([[[1.0]]], [[[1.0, 3.0]]], (2,), training=False)
    np.testing.assert_allclose(g, [[[-0.125, 0.875]]], rtol=1e-15)
    mod = importlib.import_module("fastpool.stochastic_pool")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 3 and result.failed == 0


def test_values_outside_every_window_are_not_checked():
    """Only the taps of windows must be >= 0 and finite (the docstring: "a window
    holding ..."): x1 = -1 lies in no window of k1 s2."""
    x = row([1.0, -1.0, 2.0])
    y, idx = fp("stochastic_pool")(x, (1,), stride=2, seed=1, return_indices=True)
    np.testing.assert_array_equal(y, row([1.0, 2.0]))
    np.testing.assert_array_equal(idx, row([0, 2], np.int64))
    np.testing.assert_array_equal(fp("stochastic_pool")(x, (1,), stride=2, training=False), row([1.0, 2.0]))


# --------------------------------------------------------------------------- errors

X = np.ones((1, 2, 5, 6), np.float32)
GO = np.ones((1, 2, 2, 3), np.float32)  # the output of kernel_size 2
IDX = np.zeros((1, 2, 2, 3), np.int64)


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


def _with(value, at=(0, 1, 3, 4)) -> np.ndarray:
    x = X.copy()
    x[at] = value
    return x


def _idx_with(value, at) -> np.ndarray:
    i = IDX.copy()
    i[at] = value
    return i


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _sp(*a, **k):
    return fp("stochastic_pool")(*a, **k)


def _spb(*a, **k):
    return fp("stochastic_pool_backward")(*a, **k)


WEIGHT = "x >= 0 and finite"
E, T = ValueError, TypeError
ERRORS = [
    # values that are no weights, in the forward (training and inference) and in the
    # backwards that read them (inference, and training from the seed)
    ("negative", lambda: _sp(_with(-1.0), 2, seed=1), E, _all(WEIGHT, r"x\[0, 1, 3, 4\] = -1\.0")),
    # (a float32 value may be printed in its float64 expansion, -1.0000000031710769e-30)
    ("negative-tiny", lambda: _sp(_with(-1e-30), 2, seed=1), E, _all(WEIGHT, r"= -1(\.0+\d*)?e-30")),
    ("nan", lambda: _sp(_with(NAN), 2, seed=1), E, _all(WEIGHT, r"x\[0, 1, 3, 4\] = nan")),
    ("pos-inf", lambda: _sp(_with(INF), 2, seed=1), E, _all(WEIGHT, r"= inf")),
    ("neg-inf", lambda: _sp(_with(-INF), 2, seed=1), E, _all(WEIGHT, r"= -inf")),
    ("negative-inference", lambda: _sp(_with(-2.0), 2, training=False), E, _all(WEIGHT, r"= -2\.0")),
    ("nan-inference", lambda: _sp(_with(NAN), 2, training=False), E, _all(WEIGHT, "= nan")),
    ("inf-inference-f64", lambda: _sp(_with(INF).astype(np.float64), 2, training=False), E, _all(WEIGHT, "= inf")),
    ("negative-backward-inference", lambda: _spb(GO, _with(-1.0), 2, training=False), E, _all(WEIGHT, "= -1.0")),
    ("nan-backward-seed", lambda: _spb(GO, _with(NAN), 2, seed=3), E, _all(WEIGHT, "= nan")),
    ("negative-channels-last", lambda: _sp(_with(-3.0), 2, seed=1, layout="channels_last"), E,
     _all(WEIGHT, r"x\[0, 1, 3, 4\] = -3\.0")),
    ("negative-unbatched", lambda: _sp(_with(-1.0)[0], (2, 2), seed=1), E, _all(WEIGHT, r"x\[1, 3, 4\] = -1\.0")),
    ("negative-padding-window", lambda: _sp(_with(-1.0, (0, 0, 0, 0)), 3, 2, 1, seed=1), E, _all(WEIGHT, "-1.0")),
    # seed
    ("seed-float", lambda: _sp(X, 2, seed=1.0), T, _all("seed", "Generator", r"1\.0")),
    ("seed-str", lambda: _sp(X, 2, seed="7"), T, _all("seed", "'7'")),
    ("seed-bool", lambda: _sp(X, 2, seed=True), T, _all("seed", "True")),
    ("seed-np-bool", lambda: _sp(X, 2, seed=np.bool_(False)), T, "seed"),
    ("seed-np-float", lambda: _sp(X, 2, seed=np.float64(3)), T, "seed"),
    ("seed-array", lambda: _sp(X, 2, seed=np.array([1, 2])), T, "seed"),
    ("seed-legacy-random-state", lambda: _sp(X, 2, seed=np.random.RandomState(0)), T, "seed"),
    ("seed-negative", lambda: _sp(X, 2, seed=-1), E, _all("seed", r"\[0, 2\*\*64\)", "-1")),
    ("seed-too-big", lambda: _sp(X, 2, seed=2**64), E, _all("seed", r"\[0, 2\*\*64\)", str(2**64))),
    ("seed-np-negative", lambda: _sp(X, 2, seed=np.int64(-5)), E, _all("seed", "-5")),
    ("seed-backward-float", lambda: _spb(GO, X, 2, seed=2.0), T, "seed"),
    ("seed-backward-negative", lambda: _spb(GO, X, 2, seed=-1), E, _all("seed", "2\\*\\*64")),
    ("seed-backward-too-big", lambda: _spb(GO, X, 2, seed=2**64), E, "seed"),
    # inference takes neither seed nor return_indices
    ("return-indices-inference", lambda: _sp(X, 2, training=False, return_indices=True), E,
     _all("return_indices", "training=True")),
    ("seed-inference", lambda: _sp(X, 2, training=False, seed=0), E, _all("seed", "training=True")),
    ("generator-inference", lambda: _sp(X, 2, training=False, seed=np.random.default_rng(0)), E,
     _all("seed", "training=True")),
    ("indices-backward-inference", lambda: _spb(GO, X, 2, training=False, indices=IDX), E,
     _all("indices", "training=True")),
    ("seed-backward-inference", lambda: _spb(GO, X, 2, training=False, seed=1), E, _all("seed", "training=True")),
    # the training backward needs exactly one of indices and seed, an int seed
    ("backward-neither", lambda: _spb(GO, X, 2), E, _all("indices", "seed", "exactly one")),
    ("backward-both", lambda: _spb(GO, X, 2, indices=IDX, seed=1), E, _all("indices", "seed", "exactly one")),
    ("backward-generator", lambda: _spb(GO, X, 2, seed=np.random.default_rng(1)), T, _all("Generator", "indices")),
    # indices
    ("indices-int32", lambda: _spb(GO, X, 2, indices=IDX.astype(np.int32)), T, _all("indices", "int32", "int64")),
    ("indices-float", lambda: _spb(GO, X, 2, indices=IDX.astype(np.float32)), T, _all("indices", "float32")),
    ("indices-list", lambda: _spb(GO, X, 2, indices=IDX.tolist()), T, _all("indices", "numpy.ndarray")),
    ("indices-shape", lambda: _spb(GO, X, 2, indices=np.zeros((1, 2, 3, 3), np.int64)), E,
     _all("indices", "shape", r"\(1, 2, 2, 3\)")),
    ("indices-unbatched", lambda: _spb(GO, X, 2, indices=IDX[0]), E, _all("indices", "shape")),
    ("indices-out-of-plane", lambda: _spb(GO, X, 2, indices=np.full(IDX.shape, 30, np.int64)), E,
     _all("indices holds 30", "flat position 0", r"\[0, 30\)")),
    ("indices-negative", lambda: _spb(GO, X, 2, indices=_idx_with(-1, (0, 1, 1, 2))), E,
     _all("indices holds -1", "flat position 11", r"\[0, 30\)")),
    # training / return_indices
    ("training-int", lambda: _sp(X, 2, training=1), T, _all("training", "bool")),
    ("training-none", lambda: _sp(X, 2, training=None), T, _all("training", "bool")),
    ("training-str", lambda: _spb(GO, X, 2, training="False", seed=1), T, _all("training", "bool")),
    ("return-indices-int", lambda: _sp(X, 2, return_indices=1), T, _all("return_indices", "bool")),
    # grad_output
    ("grad-shape", lambda: _spb(np.ones((1, 2, 3, 3), np.float32), X, 2, seed=1), E, "grad_output"),
    ("grad-shape-indices", lambda: _spb(np.ones((1, 2, 3, 3), np.float32), X, 2, indices=IDX), E, "grad_output"),
    ("grad-shape-inference", lambda: _spb(np.ones((1, 2, 3, 3), np.float32), X, 2, training=False), E,
     "grad_output"),
    ("grad-unbatched", lambda: _spb(GO[0], X, 2, seed=1), E, "grad_output"),
    ("grad-dtype", lambda: _spb(GO.astype(np.float64), X, 2, seed=1), T, _all("grad_output", "float64")),
    ("grad-dtype-indices", lambda: _spb(GO.astype(np.float64), X, 2, indices=IDX), T, "grad_output"),
    ("grad-dtype-inference", lambda: _spb(GO.astype(np.float64), X, 2, training=False), T, "grad_output"),
    ("grad-int", lambda: _spb(GO.astype(np.int32), X, 2, seed=1), T, "grad_output"),
    # x
    ("x-object", lambda: _sp(object(), 2), T, r"\bx\b"),
    ("x-int32", lambda: _sp(X.astype(np.int32), 2), T, _all(r"\bx\b", "int32")),
    ("x-float16", lambda: _sp(X.astype(np.float16), 2), T, _all(r"\bx\b", "float16")),
    ("x-int-backward", lambda: _spb(GO, X.astype(np.int64), 2, seed=1), T, _all(r"\bx\b", "int64")),
    ("x-ndim-low", lambda: _sp(X[0, 0], (2, 2)), E, r"\bx\b"),
    ("x-ndim-high", lambda: fp("stochastic_pool1d")(X, 2), E, r"\bx\b"),
    ("x-zero-size", lambda: _sp(np.zeros((1, 0, 5, 6), np.float32), 2), E, r"(?i)zero|empty|size"),
    # geometry
    ("kernel-zero", lambda: _sp(X, 0), E, "kernel_size"),
    ("kernel-negative", lambda: _sp(X, (2, -1)), E, "kernel_size"),
    ("kernel-float", lambda: _sp(X, 2.5), T, "kernel_size"),
    ("kernel-length", lambda: fp("stochastic_pool2d")(X, (2, 2, 2)), E, "kernel_size"),
    ("kernel-too-big", lambda: _sp(X, (7, 7)), E, "kernel_size"),
    ("kernel-backward", lambda: _spb(GO, X, 0, seed=1), E, "kernel_size"),
    ("stride-zero", lambda: _sp(X, 2, 0), E, "stride"),
    ("stride-float", lambda: _sp(X, 2, 1.5), T, "stride"),
    ("padding-negative", lambda: _sp(X, 2, 1, -1), E, "padding"),
    ("padding-string", lambda: _sp(X, 2, 1, "full"), E, _all("padding", "full")),
    ("padding-window-in-padding", lambda: _sp(X, 2, 1, 2), E, "padding"),
    ("dilation-zero", lambda: _sp(X, 2, 1, 0, 0), E, "dilation"),
    ("dilation-too-big", lambda: _sp(X, 2, 1, 0, 6), E, "dilation"),
    ("ceil-mode-string", lambda: _sp(X, 2, ceil_mode="yes"), T, "ceil_mode"),
    ("layout-bad", lambda: _sp(X, 2, layout="NHWC"), E, _all("layout", "NHWC")),
    ("layout-bad-backward", lambda: _spb(GO, X, 2, seed=1, layout="cl"), E, "layout"),
    ("geometry-backward-inference", lambda: _spb(GO, X, 2, 0, training=False), E, "stride"),
    # out
    ("out-shape", lambda: _sp(X, 2, seed=1, out=np.zeros((1, 2, 3, 3), np.float32)), E, r"\bout\b"),
    ("out-dtype", lambda: _sp(X, 2, seed=1, out=np.zeros(GO.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only", lambda: _sp(X, 2, training=False, out=_read_only(GO.shape)), E, r"\bout\b"),
    ("out-is-x", lambda: (lambda a: _sp(a, (1, 1), seed=1, out=a))(X.copy()), E, r"\bout\b"),
    ("out-shape-backward", lambda: _spb(GO, X, 2, indices=IDX, out=np.zeros(GO.shape, np.float32)), E, r"\bout\b"),
    ("out-dtype-backward", lambda: _spb(GO, X, 2, seed=1, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only-backward", lambda: _spb(GO, X, 2, indices=IDX, out=_read_only(X.shape)), E, r"\bout\b"),
    ("out-is-x-backward", lambda: (lambda a: _spb(GO, a, 2, indices=IDX, out=a))(X.copy()), E, r"\bout\b"),
    ("out-is-x-backward-inference", lambda: (lambda a: _spb(GO, a, 2, training=False, out=a))(X.copy()), E,
     r"\bout\b"),
]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_reference_raises_on_the_same_values():
    for v in (-1.0, NAN, INF, -INF):
        with pytest.raises(ValueError, match="x >= 0 and finite"):
            sref.stochastic_pool(_with(v), 2, seed=1)
        with pytest.raises(ValueError, match="x >= 0 and finite"):
            sref.stochastic_pool(_with(v), 2, training=False)


def test_errors_leave_out_untouched():
    out = np.full(GO.shape, 7.0, np.float32)
    with pytest.raises(TypeError):
        fp("stochastic_pool")(X.astype(np.int32), 2, out=out)
    with pytest.raises(TypeError):
        fp("stochastic_pool")(X, 2, seed=1.5, out=out)
    with pytest.raises(ValueError):
        fp("stochastic_pool")(X, 2, seed=-1, out=out)
    with pytest.raises(ValueError):
        fp("stochastic_pool")(X, 2, padding=-1, out=out)
    np.testing.assert_array_equal(out, 7.0)
    gout = np.full(X.shape, 7.0, np.float32)
    with pytest.raises(ValueError):
        fp("stochastic_pool_backward")(GO, X, 2, out=gout)
    with pytest.raises(TypeError):
        fp("stochastic_pool_backward")(GO, X, 2, indices=IDX.astype(np.int32), out=gout)
    np.testing.assert_array_equal(gout, 7.0)


# --------------------------------------------------------------------------- torch



@pytest.mark.parametrize("kind", ["relu", "sparse"])
@pytest.mark.parametrize("case", params(WINDOW_TORCH_CASES))
def test_inference_matches_torch_composition(case, kind):
    """torch has no stochastic pooling; its inference form is avg_pool(x^2) / avg_pool(x)
    (count_include_pad=False: the divisors cancel), 0 where avg_pool(x) is 0 (windows of
    zeros: the division is guarded so that autograd sees no 0/0); autograd for grad_x."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = case_data(case, kind, "torch")
    g = case.grad("normal")
    geom = case.geom
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[geom.rank]
    cl = case.layout == "channels_last"
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf.movedim(-1, 1) if cl else leaf
    k, s = geom.kernel_size, geom.stride if geom.stride is not None else geom.kernel_size
    opts = dict(ceil_mode=geom.ceil_mode, count_include_pad=False)
    s1 = avg(t, k, s, geom.padding, **opts)
    s2 = avg(t * t, k, s, geom.padding, **opts)
    none = s1 == 0
    yt = torch.where(none, torch.zeros_like(s1), s2 / torch.where(none, torch.ones_like(s1), s1))
    gt = torch.from_numpy(g.copy())
    yt.backward(gt.movedim(-1, 1) if cl else gt)
    yt = yt.detach()
    y_t = np.ascontiguousarray((yt.movedim(1, -1) if cl else yt).numpy())
    kw = case.max_kwargs()
    assert y_t.shape == case.out_shape()
    if kind == "sparse":
        assert none.any()
    rtol = 4 * rtol_of(case.dtype)
    scale = ref.max_pool(x.astype(np.float64), **kw)[0]
    y = fp("stochastic_pool")(x, training=False, **kw)
    assert_close(y, y_t, scale, rtol, "forward vs torch")
    gx = fp("stochastic_pool_backward")(g, x, training=False, **kw)
    assert_close(gx, leaf.grad.numpy(), sref.stochastic_pool_backward(g, x, training=False, magnitude=True, **kw),
                 rtol, "backward vs torch autograd")
