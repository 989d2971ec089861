"""Max-pooling dropout (Wu & Gu 2015), forward and backward.

The mask is per INPUT element (shared by overlapping windows): element q (flat spatial
position) of plane P = n*C + c is dropped iff h < floor(rate * 2**32), h a counter-based
hash of (seed, P, q) (splitmix64's output function for the plane key, MurmurHash3's
finalizer twice for the element). Training: y = max_pool(x') with x' = x where kept, +0.0
where dropped (PyTorch's tie rules), indices = max_pool's argmax, or -1 where the winning
tap was dropped; its backward routes grad_output to the kept winners (given as indices,
or recomputed from the seed). Inference: y = sum_i p q**c_i a_i (p = 1 - rate, q = rate,
c_i the taps ranked above tap i: ascending value, NaN on top, the earlier of equal taps
above), its gradient p q**c_i g at every tap.

* Hand-checked examples: values worked out from the definition (ties, signed zeros, NaN,
  inf, rate 0 and 1, padding, overlap, dilation, ceil mode, the weights' rounding and
  underflow in x's dtype), and training results for masks realised by seeds found with a
  scalar pure-Python copy of the hash; run on fastpool and on the reference
  (tests/dropout_reference.py), so they also check the reference; the reference against
  a brute-force loop over windows and taps. The hash against MurmurHash3's and
  splitmix64's published values; the mask element by element against the scalar hash,
  and the threshold at every bit (rate = h / 2**32 keeps the element, (h + 1) / 2**32
  drops it).
* The geometry grid of pool_cases (ranks 1-3, every padding form, dilation, ceil-mode
  overhangs, both layouts and dtypes, batch 1 and 2) on ReLU-like data, ties, signed
  zeros, all-negative windows (a dropped zero wins), NaN and inf, several seeds and
  rates 0, 0.25, 0.5, 0.9, 1: training values and indices bitwise equal to the
  reference (and to fastpool.max_pool of the masked input), the backward (indices and
  seed) bitwise equal to the reference scatter; the inference form against the
  reference. A subset on every SIMD path x threads 1 and 2, larger inputs bitwise
  identical on every SIMD path x threads 1, 2, 3.
* The mask: the dropped fraction against rate (binomial z, fixed seeds), per plane too;
  independence of neighbouring elements, planes and seeds (chi-square); identical for
  both dtypes and both layouts, per element (windows of stride 1 see one mask); the
  mean of training outputs over many planes is the inference form.
* Seeds: int reproducibility, numpy integers, Generators (one uint64 draw, advancing),
  None (fresh); numerical gradients of both forms; PyTorch's max_pool of the masked
  input (values, indices, autograd); out=, non-contiguous inputs, inputs left
  unchanged, unbatched inputs, fixed-rank forms, list input, doctests; argument errors.

Tolerances of the inference form (the kernel multiplies the weights and sums in x's
dtype): relative to sum |w_i a_i| of the window for y and to sum |g| w_i for grad_x,
rtol max(1e-5 / 1e-12, 2 (K + 1) eps) for float32 / float64. Training results are exact.
"""

from __future__ import annotations

import copy
import doctest
import importlib
import itertools
import math
from typing import Dict, List, Tuple

import numpy as np
import pytest

import dropout_reference as dref
import fastpool
import reference as ref
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
    distinct_values,
    fp,
    grid,
    identical_on_every_backend,
    make_data,
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
RATES = (0.0, 0.25, 0.5, 0.9, 1.0)


def _kernel(geom: Geom) -> Tuple[int, ...]:
    k = geom.kernel_size
    return k if isinstance(k, tuple) else (k,) * geom.rank


def rtol_of(case: Case) -> float:
    """rtol of the inference form: 1e-5 / 1e-12, or 2 (K + 1) eps for large windows."""
    dtype = np.dtype(case.dtype)
    k = int(np.prod(_kernel(case.geom)))
    return max(RTOL[dtype], 2 * (k + 1) * np.finfo(dtype).eps)


# --------------------------------------------------------------------------- data


def dropout_data(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    """Inputs of a given kind.

    relu      max(normal, 0), 30% of its zeros -0.0: kept zeros tie with dropped zeros.
    ties      multiples of 1/4 in [-1, 1], zeros of both signs: many equal taps.
    normal    standard normal: no ties, half negative (a dropped zero often wins).
    negative  in [-2, -0.25] and some -0.0: every dropped tap wins its window.
    special   normal with NaN, +inf and -inf (about 8% each).
    """
    dtype = np.dtype(dtype)
    if kind == "relu":
        x = np.maximum(rng.standard_normal(shape), 0.0).astype(dtype)
        x[(x == 0) & (rng.random(shape) < 0.3)] = -0.0
        return x
    if kind == "ties":
        return make_data(rng, shape, dtype, "ints")
    if kind == "normal":
        return make_data(rng, shape, dtype, "normal")
    if kind == "negative":
        x = -rng.uniform(0.25, 2.0, shape).astype(dtype)
        x[rng.random(shape) < 0.1] = -0.0
        return x
    if kind == "special":
        return make_data(rng, shape, dtype, "special")
    raise ValueError(kind)


def case_data(case: Case, kind: str, salt: str = "") -> np.ndarray:
    return dropout_data(case.rng("dropout" + kind + salt), case.shape, case.dtype, kind)


# --------------------------------------------------------------------------- a scalar copy of the hash

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1


def _mix_py(z: int) -> int:
    """splitmix64's output function on a Python int (mod 2**64), written again, scalar."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _fmix_py(h: int) -> int:
    """MurmurHash3's finalizer on a Python int (mod 2**32)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def _h_py(seed: int, plane: int, q: int) -> int:
    key = _mix_py(seed ^ (((plane + 1) * 0x9E3779B97F4A7C15) & _M64))
    k0, k1 = key & _M32, key >> 32
    return _fmix_py(_fmix_py((q & _M32) ^ k0) ^ ((k1 + (q >> 32)) & _M32))


def _dropped_py(seed: int, plane: int, q: int, rate: float) -> bool:
    return _h_py(seed, plane, q) < math.floor(rate * 2**32)


def test_hash_known_values():
    """MurmurHash3_x86_32 of the empty string is fmix32(seed): 0x514E28B7 for seed 1 and
    0x81F16F39 for 0xFFFFFFFF (its published test vectors); splitmix64 started at 0
    outputs mix(0x9E3779B97F4A7C15) = 0xE220A8397B1DCDAF first. The reference's array
    hash agrees with the scalar one, also for positions q >= 2**32 (the high word)."""
    assert _fmix_py(0) == 0 and _fmix_py(1) == 0x514E28B7 and _fmix_py(0xFFFFFFFF) == 0x81F16F39
    assert int(dref.fmix32(np.uint32(1))) == 0x514E28B7
    assert int(dref.fmix32(np.uint32(0xFFFFFFFF))) == 0x81F16F39
    assert _mix_py(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    rng = np.random.default_rng(5)
    seeds = [0, 1, 2**63, 2**64 - 1] + [int(s) for s in rng.integers(0, 2**63, 3)]
    planes = np.array([0, 1, 2, 3, 17, 1000, 2**31 + 7], dtype=np.uint64)
    qs = np.array([0, 1, 2, 63, 4096, 2**32 - 1, 2**32, 2**32 + 5, 2**40 + 3], dtype=np.uint64)
    for seed in seeds:
        h = dref.element_hash(seed, planes[:, None], qs[None, :])
        assert h.dtype == np.uint32
        want = np.array([[_h_py(seed, int(p), int(q)) for q in qs] for p in planes], dtype=np.uint32)
        np.testing.assert_array_equal(h, want)
    assert dref.threshold(0.0) == 0 and dref.threshold(1.0) == 2**32 and dref.threshold(0.5) == 2**31
    assert dref.threshold(0.1) == 429496729  # floor(429496729.6)
    assert dref.threshold(np.nextafter(1.0, 0.0)) == 2**32 - 1


# --------------------------------------------------------------------------- implementations


def _fwd(which: str):
    """f(x, rate, *geometry, training=True, seed=None, **kw) -> y, or (y, indices) in training."""
    if which == "fastpool":
        def f(x, rate, *a, training=True, seed=None, **kw):
            if training:
                return fp("max_pool_dropout")(x, rate, *a, training=True, seed=seed, return_indices=True, **kw)
            return fp("max_pool_dropout")(x, rate, *a, training=False, **kw)
        return f
    return lambda x, rate, *a, training=True, seed=None, **kw: dref.max_pool_dropout(
        x, rate, *a, training=training, seed=seed, **kw)


def _bwd(which: str):
    if which == "fastpool":
        return fp("max_pool_dropout_backward")
    return dref.max_pool_dropout_backward


def _ones_mask(which: str, x_shape, rate, seed, layout="channels_first", dtype=np.float32, rank=None) -> np.ndarray:
    """The dropped mask as the operator shows it: kernel 1 over ones gives 0 and index -1
    where dropped, 1 and the element's own flat position where kept. ``rank`` defaults to
    len(x_shape) - 2 (batched)."""
    rank = len(x_shape) - 2 if rank is None else rank
    x = np.ones(x_shape, dtype)
    y, idx = _fwd(which)(x, rate, (1,) * rank, seed=seed, layout=layout)
    drop = idx == -1
    assert_bitwise_equal(y, np.where(drop, 0.0, 1.0).astype(dtype), "kernel-1 values")
    spatial = tuple(x_shape[-rank:]) if layout == "channels_first" else tuple(x_shape[-rank - 1:-1])
    own = np.arange(int(np.prod(spatial))).reshape(spatial)
    if layout == "channels_last":
        own = own[..., None]
    np.testing.assert_array_equal(idx[~drop], np.broadcast_to(own, idx.shape)[~drop])
    return drop


# --------------------------------------------------------------------------- the mask by hand


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_mask_follows_the_scalar_hash(which, layout):
    """Kernel 1 over ones shows the mask: element (n, c, q) dropped iff
    h(seed, n*C + c, q) < floor(rate * 2**32), from the scalar Python hash; batched
    (plane n*C + c), unbatched (plane c), both layouts."""
    n, c, h, w = 2, 3, 4, 5
    for seed in (0, 12345, 2**64 - 1):
        for rate in (0.1, 0.5, 0.75):
            want = np.array([[[_dropped_py(seed, b * c + ch, q, rate) for q in range(h * w)]
                              for ch in range(c)] for b in range(n)]).reshape(n, c, h, w)
            shape = (n, c, h, w) if layout == "channels_first" else (n, h, w, c)
            drop = _ones_mask(which, shape, rate, seed, layout)
            if layout == "channels_last":
                drop = np.moveaxis(drop, -1, 1)
            np.testing.assert_array_equal(drop, want, err_msg=f"seed {seed} rate {rate}")
            unb = _ones_mask(which, shape[1:], rate, seed, layout, rank=2)
            if layout == "channels_last":
                unb = np.moveaxis(unb, -1, 0)
            np.testing.assert_array_equal(unb, want[0], err_msg=f"unbatched, seed {seed} rate {rate}")


@pytest.mark.parametrize("which", IMPLS)
def test_threshold_at_every_bit(which):
    """rate = h / 2**32 (exact in float64) gives t = h: the element is kept (h < t is
    false); rate = (h + 1) / 2**32 drops it; rate = (h + 1/2) / 2**32 keeps it (floor)."""
    c, w, seed = 8, 16, 0xDEADBEEF
    picks = [(0, 0), (0, 15), (3, 7), (7, 9), (5, 1)]
    for ch, q in picks:
        h = _h_py(seed, ch, q)
        for rate, dropped in ((h / 2**32, False), ((h + 1) / 2**32, True), ((h + 0.5) / 2**32, False)):
            drop = _ones_mask(which, (1, c, w), rate, seed)
            assert drop[0, ch, q] == dropped, (ch, q, h, rate)
            want = np.array([[_h_py(seed, p, j) < math.floor(rate * 2**32) for j in range(w)] for p in range(c)])
            np.testing.assert_array_equal(drop[0], want)


@pytest.mark.parametrize("which", IMPLS)
def test_rate_zero_keeps_and_rate_one_drops_everything(which):
    for seed in (0, 7, 2**64 - 1):
        assert not _ones_mask(which, (2, 5, 7, 9), 0.0, seed).any()
        assert _ones_mask(which, (2, 5, 7, 9), 1.0, seed).all()


# --------------------------------------------------------------------------- hand-checked: inference

# (label, x, k, kwargs, rate, y, grad_output, grad_x): y = sum p q**c_i a_i, grad_x the
# sum over windows of g p q**c_i; rate 1/2: the weights of the taps from the top down are
# 1/2, 1/4, 1/8, ...
HAND_INFERENCE = [
    # [1, 3, 2]: 3 on top (1/2), then 2 (1/4), then 1 (1/8): 3/2 + 1/2 + 1/8 = 2.125
    ("132", [1, 3, 2], 3, {}, 0.5, [2.125], [1], [0.125, 0.5, 0.25]),
    ("132-g2", [1, 3, 2], 3, {}, 0.5, [2.125], [2], [0.25, 1, 0.5]),
    # rate 1/4: p = 3/4, q = 1/4: 3 * 3/4 + 2 * 3/16 + 1 * 3/64 = 2.671875
    ("132-rate-quarter", [1, 3, 2], 3, {}, 0.25, [2.671875], [1], [0.046875, 0.75, 0.1875]),
    # rate 3/4: p = 1/4, q = 3/4: 8 * 1/4 + 4 * 3/16 = 2.75
    ("rate-three-quarters", [4, 8], 2, {}, 0.75, [2.75], [1], [0.1875, 0.25]),
    # equal values: the earlier tap ranks above: 2/2 + 2/4 = 1.5
    ("tie", [2, 2], 2, {}, 0.5, [1.5], [1], [0.5, 0.25]),
    ("tie-three", [1, 1, 1], 3, {}, 0.5, [0.875], [1], [0.5, 0.25, 0.125]),
    # -0.0 == 0.0: ties broken by position, whichever sign comes first
    ("signed-zeros", [-0.0, 0.0, 1], 3, {}, 0.5, [0.5], [1], [0.25, 0.125, 0.5]),
    ("signed-zeros-reversed", [0.0, -0.0, 1], 3, {}, 0.5, [0.5], [1], [0.25, 0.125, 0.5]),
    # negatives: -1 on top: -1/2 - 2/4 - 3/8 = -1.375
    ("negative", [-1, -3, -2], 3, {}, 0.5, [-1.375], [1], [0.5, 0.125, 0.25]),
    # NaN ranks above every number; among NaNs the earlier above
    ("nan", [1, NAN, 2], 3, {}, 0.5, [NAN], [1], [0.125, 0.5, 0.25]),
    ("two-nans", [NAN, 1, NAN], 3, {}, 0.5, [NAN], [1], [0.5, 0.125, 0.25]),
    ("inf", [INF, 1], 2, {}, 0.5, [INF], [1], [0.5, 0.25]),
    ("neg-inf", [-INF, 1], 2, {}, 0.5, [-INF], [1], [0.25, 0.5]),
    ("inf-and-neg-inf", [-INF, INF], 2, {}, 0.5, [NAN], [1], [0.25, 0.5]),
    # rate 0: the maximum, its gradient to the first maximum; terms of weight 0 add 0
    ("rate0", [1, 3, 2], 3, {}, 0.0, [3], [1], [0, 1, 0]),
    ("rate0-tie", [2, 3, 3], 3, {}, 0.0, [3], [1], [0, 1, 0]),
    ("rate0-nan", [1, NAN, NAN], 3, {}, 0.0, [NAN], [1], [0, 1, 0]),
    ("rate0-neg-inf", [-INF, 1], 2, {}, 0.0, [1], [1], [0, 1]),
    ("rate0-inf-over-neg-inf", [INF, -INF, 2], 3, {}, 0.0, [INF], [1], [1, 0, 0]),
    # rate 1: every weight is 0: y = 0 even over NaN and inf
    ("rate1", [1, 3, 2], 3, {}, 1.0, [0], [1], [0, 0, 0]),
    ("rate1-specials", [NAN, INF, -INF], 3, {}, 1.0, [0], [3], [0, 0, 0]),
    # padding takes no part: [pad, 1] -> 1/2; [1, 3] -> 3/2 + 1/4; [3, pad] -> 3/2
    ("padding", [1, 3], 2, {"stride": 1, "padding": 1}, 0.5, [0.5, 1.75, 1.5], [1, 1, 1], [0.75, 1.0]),
    # overlap: [1, 3] -> 1.75 (1: 1/4, 3: 1/2), [3, 2] -> 2 (3: 1/2, 2: 1/4); g (1, 2)
    ("overlap", [1, 3, 2], 2, {"stride": 1}, 0.5, [1.75, 2.0], [1, 2], [0.25, 1.5, 0.5]),
    # dilation 2: (x0, x2) = (1, 3), (x1, x3) = (0, 0), (x2, x4) = (3, 5)
    ("dilation", [1, 0, 3, 0, 5], 2, {"stride": 1, "dilation": 2}, 0.5, [1.75, 0, 3.25], [1, 1, 1],
     [0.25, 0.5, 0.75, 0.25, 0.5]),
    # ceil mode: the overhang [5] is a window of one tap (weight p); floor mode drops it
    ("ceil", [1, 0, 3, 0, 5], 2, {"ceil_mode": True}, 0.5, [0.5, 1.5, 2.5], [1, 1, 1],
     [0.5, 0.25, 0.5, 0.25, 0.5]),
    ("floor", [1, 0, 3, 0, 5], 2, {}, 0.5, [0.5, 1.5], [1, 1], [0.5, 0.25, 0.5, 0.25, 0]),
]


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("label,x,k,kw,rate,y,g,gx", [pytest.param(*h, id=h[0]) for h in HAND_INFERENCE])
def test_inference_by_hand(label, x, k, kw, rate, y, g, gx, dtype, which):
    f, fb = _fwd(which), _bwd(which)
    xa, ga = row(x, dtype), row(g, dtype)
    with np.errstate(invalid="ignore"):
        got = f(xa, rate, (k,), training=False, **kw)
    assert got.dtype == xa.dtype and got.shape == (1, 1, len(y))
    np.testing.assert_allclose(got, row(y, dtype), rtol=4 * np.finfo(dtype).eps, atol=0, err_msg=f"{label} forward")
    gg = fb(ga, xa, rate, (k,), training=False, **kw)
    assert gg.dtype == xa.dtype and gg.shape == xa.shape
    np.testing.assert_array_equal(gg, row(gx, dtype), err_msg=f"{label} backward")


@pytest.mark.parametrize("which", IMPLS)
def test_weights_are_products_in_x_dtype(which):
    """p and q rounded to x's dtype, p q**c multiplied in it: rate 1e-30 over [-inf, 1, 2]:
    in float32 q**2 = 1e-60 underflows to 0, so -inf (two taps above it) adds nothing and
    y = 2 + 1e-30 = 2; in float64 its weight 1e-60 is not 0 and y = -inf. Rate 1e-200 in
    float64: q**2 underflows, y = 2."""
    f, fb = _fwd(which), _bwd(which)
    x32, x64 = row([-INF, 1, 2], np.float32), row([-INF, 1, 2], np.float64)
    g32, g64 = row([1], np.float32), row([1], np.float64)
    q32 = np.float32(1e-30)
    np.testing.assert_array_equal(f(x32, 1e-30, (3,), training=False), row([2], np.float32))
    np.testing.assert_array_equal(fb(g32, x32, 1e-30, (3,), training=False), row([0, q32, 1], np.float32))
    assert q32 * q32 == 0
    np.testing.assert_array_equal(f(x64, 1e-30, (3,), training=False), row([-INF], np.float64))
    np.testing.assert_allclose(fb(g64, x64, 1e-30, (3,), training=False), row([1e-60, 1e-30, 1.0]), rtol=1e-15)
    np.testing.assert_array_equal(f(x64, 1e-200, (3,), training=False), row([2]))
    np.testing.assert_array_equal(fb(g64, x64, 1e-200, (3,), training=False), row([0, 1e-200, 1]))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_inference_2d_3d_and_layouts_by_hand(dtype, which):
    """A 2x2 window [[1, 4], [3, 4]]: 4 (flat 1) on top, then 4 (flat 3), 3, 1: rate 1/2:
    2 + 1 + 3/8 + 1/16 = 3.4375; the same plane as channel 1 of an unbatched
    channels_last input next to a channel of zeros; a 2x2x2 cube of 1..8."""
    f, fb = _fwd(which), _bwd(which)
    plane = np.array([[1, 4], [3, 4]], dtype)
    want_g = np.array([[0.0625, 0.5], [0.125, 0.25]], dtype)
    np.testing.assert_array_equal(f(plane[None, None], 0.5, (2, 2), training=False), np.full((1, 1, 1, 1), 3.4375))
    np.testing.assert_array_equal(fb(np.ones((1, 1, 1, 1), dtype), plane[None, None], 0.5, (2, 2), training=False),
                                  want_g[None, None])
    xl = np.stack([np.zeros_like(plane), plane], axis=-1)  # (H, W, C), unbatched
    y = f(xl, 0.5, (2, 2), training=False, layout="channels_last")
    np.testing.assert_array_equal(y, np.array([[[0, 3.4375]]], dtype))
    gl = fb(np.array([[[1.0, 2.0]]], dtype), xl, 0.5, (2, 2), training=False, layout="channels_last")
    np.testing.assert_array_equal(gl[..., 1], 2 * want_g)
    np.testing.assert_array_equal(gl[..., 0], [[0.5, 0.25], [0.125, 0.0625]])  # zeros: tie by position
    cube = np.arange(1, 9, dtype=dtype).reshape(1, 1, 2, 2, 2)  # 8 on top ... 1 at the bottom
    y = f(cube, 0.5, (2, 2, 2), training=False)
    np.testing.assert_array_equal(y.ravel(), [sum(v * 0.5 ** (9 - v) for v in range(1, 9))])
    gc = fb(np.ones((1, 1, 1, 1, 1), dtype), cube, 0.5, (2, 2, 2), training=False)
    np.testing.assert_array_equal(gc.ravel(), [0.5 ** (9 - v) for v in range(1, 9)])


LARGE_WINDOWS = [
    # (dtype, rate, K): windows beyond 64 taps, weights that underflow to subnormals and 0
    (np.float32, 0.01, 40),    # q**c: subnormal from c = 19, 0 from c = 23
    (np.float32, 0.3, 200),
    (np.float32, 0.9, 1000),
    (np.float64, 0.5, 1100),   # 0 from c = 1075
    (np.float64, 1e-5, 80),
    (np.float32, 0.5, 100),    # no underflow: -inf at the bottom gives -inf
    (np.float64, 0.25, 300),
]


@pytest.mark.parametrize("dtype,rate,k", [pytest.param(*w, id=f"{SHORT[w[0]]}-rate{w[1]:g}-K{w[2]}")
                                          for w in LARGE_WINDOWS])
def test_large_windows_and_weight_underflow(dtype, rate, k):
    """One window of K distinct values in random order: tap i (value v_i = its rank from
    the bottom) gets p q**(K - 1 - v_i), p multiplied by q one factor at a time in x's
    dtype, so the taps whose weight underflows to 0 are known exactly; -inf (at the
    bottom) adds nothing where its weight is 0 and gives -inf where it is not; the
    training form against the reference."""
    rng = np.random.default_rng(k)
    dt = np.dtype(dtype).type
    x = rng.permutation(k).astype(dtype)[None, None]
    p, q = dt(1 - rate), dt(rate)
    table = [p]
    for _ in range(k - 1):
        table.append(dt(table[-1] * q))
    want = np.array([table[k - 1 - int(v)] for v in x.ravel()], dtype)
    one = np.ones((1, 1, 1), dtype)
    gx = fp("max_pool_dropout_backward")(one, x, rate, (k,), training=False)
    np.testing.assert_array_equal(gx.ravel() == 0, want == 0)
    np.testing.assert_allclose(gx.ravel(), want, rtol=4 * np.finfo(dtype).eps, atol=0)
    y = fp("max_pool_dropout")(x, rate, (k,), training=False).item()
    exact = sum(float(w) * float(v) for w, v in zip(want, x.ravel()))
    assert abs(y - exact) <= 4 * k * np.finfo(dtype).eps * abs(exact)
    bottom = x.copy()
    bottom[bottom == 0] = -np.inf
    y_bottom = fp("max_pool_dropout")(bottom, rate, (k,), training=False).item()
    assert (y_bottom == -np.inf) == (table[-1] != 0), (y_bottom, table[-1])
    for seed in (1, 2):
        y_t, i_t = fp("max_pool_dropout")(x, rate, (k,), seed=seed, return_indices=True)
        ey, ei = dref.max_pool_dropout(x, rate, (k,), seed=seed)
        assert_bitwise_equal(y_t, ey)
        np.testing.assert_array_equal(i_t, ei)


# --------------------------------------------------------------------------- hand-checked: training

_SEED_CACHE: Dict[Tuple[str, float, int], List[int]] = {}


def seeds_for(pattern: str, rate: float = 0.5, count: int = 3) -> List[int]:
    """The first ``count`` seeds whose mask of plane 0, positions 0, 1, ... is ``pattern``
    ("x" dropped, "." kept), from the scalar Python hash."""
    key = (pattern, rate, count)
    if key not in _SEED_CACHE:
        found = []
        for s in range(100000):
            if all(_dropped_py(s, 0, q, rate) == (ch == "x") for q, ch in enumerate(pattern)):
                found.append(s)
                if len(found) == count:
                    break
        assert len(found) == count, pattern
        _SEED_CACHE[key] = found
    return _SEED_CACHE[key]


# (label, x, k, kwargs, mask pattern, y, indices, grad_output, grad_x) at rate 1/2: x' is
# x with +0.0 at the dropped ("x") positions; y = max_pool(x'), the index -1 where the
# winning tap was dropped.
HAND_TRAINING = [
    ("all-kept", [1, 3, 2], 3, {}, "...", [3], [1], [2], [0, 2, 0]),
    ("max-dropped", [1, 3, 2], 3, {}, ".x.", [2], [2], [2], [0, 0, 2]),
    ("all-dropped", [1, 3, 2], 3, {}, "xxx", [0], [-1], [2], [0, 0, 0]),
    ("negatives-kept", [-1, -3, -2], 3, {}, "...", [-1], [0], [1], [1, 0, 0]),
    # a dropped element is a 0 that beats every negative value
    ("negatives-one-dropped", [-1, -3, -2], 3, {}, "..x", [0], [-1], [1], [0, 0, 0]),
    # ties of zeros: the first maximum wins, kept (its sign) or dropped (+0.0, -1)
    ("kept-neg-zero-first", [-0.0, 0.0, -1], 3, {}, "..x", [-0.0], [0], [1], [1, 0, 0]),
    ("dropped-first", [-0.0, 0.0, -1], 3, {}, "x..", [0.0], [-1], [1], [0, 0, 0]),
    ("dropped-before-kept-zero", [-1, 0.0], 2, {}, "x.", [0.0], [-1], [1], [0, 0]),
    ("kept-zero-before-dropped", [0.0, -1], 2, {}, ".x", [0.0], [0], [1], [1, 0]),
    # NaN: dropped it is 0; kept, the last NaN wins
    ("nan-dropped", [NAN, 5, 1], 3, {}, "x..", [5], [1], [1], [0, 1, 0]),
    ("nan-kept", [NAN, 5, NAN], 3, {}, "..x", [NAN], [0], [1], [1, 0, 0]),
    ("last-nan", [NAN, 5, NAN], 3, {}, "...", [NAN], [2], [1], [0, 0, 1]),
    ("inf-dropped", [INF, -INF], 2, {}, "x.", [0.0], [-1], [1], [0, 0]),
    ("neg-inf-window", [-INF, -INF], 2, {}, "..", [-INF], [0], [1], [1, 0]),
    ("neg-inf-second-dropped", [-INF, -INF], 2, {}, ".x", [0.0], [-1], [1], [0, 0]),
    # padding and overlap: x' = [1, 0, 2]; windows [pad, 1], [1, 0], [0, 2], [2, pad]
    ("padding-overlap", [1, 3, 2], 2, {"stride": 1, "padding": 1}, ".x.", [1, 1, 2, 2], [0, 0, 2, 2],
     [1, 2, 4, 8], [3, 0, 12]),
    # dilation 2: x' = [0, 1, -1, 2]: (x0, x2) = (0, -1) -> dropped 0; (x1, x3) = (1, 2)
    ("dilation", [5, 1, -1, 2], 2, {"stride": 1, "dilation": 2}, "x...", [0, 2], [-1, 3], [1, 2], [0, 0, 0, 2]),
    # ceil mode: x' = [1, 2, 0]: [1, 2] -> 2; the overhang [0] is the dropped x2
    ("ceil", [1, 2, 3], 2, {"ceil_mode": True}, "..x", [2, 0], [1, -1], [1, 2], [0, 1, 0]),
    # "same", k3 s1 on 4: [pad, a, b], [a, b, c], [b, c, d], [c, d, pad]; x' = [4, 0, 3, 0]
    ("same", [4, 5, 3, -1], 3, {"stride": 1, "padding": "same"}, ".x.x", [4, 4, 3, 3], [0, 0, 2, 2],
     [1, 1, 1, 1], [2, 0, 2, 0]),
]


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("label,x,k,kw,pattern,y,idx,g,gx", [pytest.param(*h, id=h[0]) for h in HAND_TRAINING])
def test_training_by_hand(label, x, k, kw, pattern, y, idx, g, gx, dtype, which):
    """For seeds realising the mask (found with the scalar hash): y bitwise (signs of
    zeros, NaN), the indices, the backward from the indices and from the seed."""
    f, fb = _fwd(which), _bwd(which)
    xa, ga = row(x, dtype), row(g, dtype)
    for seed in seeds_for(pattern):
        got, ind = f(xa, 0.5, (k,), seed=seed, **kw)
        assert got.dtype == xa.dtype and ind.dtype == np.int64 and got.shape == ind.shape == (1, 1, len(y))
        assert_bitwise_equal(got, row(y, dtype), f"{label} y, seed {seed}")
        np.testing.assert_array_equal(ind, row(idx, np.int64), err_msg=f"{label} indices, seed {seed}")
        np.testing.assert_array_equal(fb(ga, xa, 0.5, (k,), indices=ind, **kw), row(gx, dtype), err_msg=label)
        np.testing.assert_array_equal(fb(ga, xa, 0.5, (k,), seed=seed, **kw), row(gx, dtype), err_msg=label)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_training_2d_by_hand(dtype, which):
    """[[1, 4], [3, 2]] k2: mask ".x..": x' = [[1, 0], [3, 2]] -> 3 (flat 2); "...x": 4
    (flat 1); "xx.x": 3; unbatched channels_last: the same planes (plane c)."""
    f, fb = _fwd(which), _bwd(which)
    plane = np.array([[1, 4], [3, 2]], dtype)
    for pattern, y, i in ((".x..", 3, 2), ("...x", 4, 1), ("xx.x", 3, 2), ("xxxx", 0, -1), ("x.x.", 4, 1)):
        for seed in seeds_for(pattern, count=2):
            got, ind = f(plane[None, None], 0.5, (2, 2), seed=seed)
            assert got.item() == y and ind.item() == i, (pattern, seed)
            gx = fb(np.full((1, 1, 1, 1), 4.0, dtype), plane[None, None], 0.5, (2, 2), seed=seed)
            want = np.zeros(4, dtype)
            if i >= 0:
                want[i] = 4
            np.testing.assert_array_equal(gx.ravel(), want)
            xl = plane[..., None]  # (H, W, C = 1), unbatched: plane 0
            got_l, ind_l = f(xl, 0.5, (2, 2), seed=seed, layout="channels_last")
            assert got_l.shape == (1, 1, 1) and got_l.item() == y and ind_l.item() == i


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_training_rate_zero_is_max_pool(dtype, which):
    """Rate 0 keeps every element: y bitwise max_pool's (first maximum, last NaN, signs of
    zeros), indices max_pool's, the backward max_pool_backward's; any seed."""
    f, fb = _fwd(which), _bwd(which)
    case = Case(Geom((9, 11), 3, 2, 1, ceil_mode=True), "channels_first", dtype, 2, 3)
    g = case.grad()
    for kind in ("ties", "special", "negative"):
        x = case_data(case, kind, "rate0")
        ey, eidx = fp("max_pool")(x, **case.max_kwargs(), return_indices=True)
        ry, ridx = ref.max_pool(x, **case.max_kwargs())
        assert_bitwise_equal(ey, ry, "fastpool.max_pool vs reference")
        egx = fp("max_pool_backward")(g, x, indices=eidx, **case.max_kwargs())
        for seed in (0, 2**64 - 1):
            y, idx = f(x, 0.0, seed=seed, **case.max_kwargs())
            assert_bitwise_equal(y, ey, f"{kind} y")
            np.testing.assert_array_equal(idx, eidx)
            assert_bitwise_equal(fb(g, x, 0.0, seed=seed, **case.max_kwargs()), egx, f"{kind} grad")
        # inference at rate 0: the values of max pooling (the sign of a zero maximum is free)
        yi = f(x, 0.0, training=False, **case.max_kwargs())
        np.testing.assert_array_equal(yi, ey)
        if kind != "special":  # the gradient to the first maximum (with NaNs: the FIRST NaN)
            np.testing.assert_array_equal(fb(g, x, 0.0, training=False, **case.max_kwargs()), egx)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_rate_one_gives_zeros(dtype, which):
    """Rate 1 drops everything: training y is +0.0 everywhere, the indices -1, the
    backward 0; inference y = 0 and grad 0 (also over NaN and inf)."""
    f, fb = _fwd(which), _bwd(which)
    case = Case(Geom((5, 7, 6), 2, 1, 1), "channels_last", dtype, 2, 3)
    g = case.grad()
    for kind in ("normal", "special"):
        x = case_data(case, kind, "rate1")
        y, idx = f(x, 1.0, seed=3, **case.max_kwargs())
        assert_bitwise_equal(y, np.zeros(case.out_shape(), dtype))
        np.testing.assert_array_equal(idx, -1)
        assert_bitwise_equal(fb(g, x, 1.0, seed=3, **case.max_kwargs()), np.zeros(x.shape, dtype))
        assert_bitwise_equal(fb(g, x, 1.0, indices=idx, **case.max_kwargs()), np.zeros(x.shape, dtype))
        np.testing.assert_array_equal(f(x, 1.0, training=False, **case.max_kwargs()), 0)
        np.testing.assert_array_equal(fb(g, x, 1.0, training=False, **case.max_kwargs()), 0)


# --------------------------------------------------------------------------- the reference itself


def _brute(x: np.ndarray, rate: float, seed: int, g: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode):
    """(training y, indices, inference y, inference grad_x for g) of x (N, C, *spatial) by
    loops over windows and taps: the mask from the scalar hash, the max scan
    ``v > best or isnan(v)``, ranks by pairwise comparison, weights p q ... q in x's
    dtype, the inference sums in Python floats."""
    dt = x.dtype.type
    geom = ref.make_geometry(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    n, c = x.shape[:2]
    y = np.empty((n, c) + geom.out_sizes, x.dtype)
    idx = np.empty((n, c) + geom.out_sizes, np.int64)
    yi = np.empty((n, c) + geom.out_sizes, np.float64)
    gx = np.zeros(x.shape, np.float64)
    p, q = dt(1.0 - rate), dt(rate)

    def above(vj, vi, j, i):
        if math.isnan(vj) and math.isnan(vi):
            return j < i
        if math.isnan(vj) or math.isnan(vi):
            return math.isnan(vj)
        return vj > vi or (vj == vi and j < i)

    for b, ch in itertools.product(range(n), range(c)):
        for o in itertools.product(*(range(s) for s in geom.out_sizes)):
            taps = []
            for t in itertools.product(*(range(k) for k in geom.kernel)):
                pos = tuple(o[a] * geom.stride[a] - geom.pads[a][0] + t[a] * geom.dilation[a]
                            for a in range(geom.rank))
                if all(0 <= pp < size for pp, size in zip(pos, geom.in_sizes)):
                    taps.append(pos)
            vals = [x[(b, ch) + pp] for pp in taps]
            qs = [int(np.ravel_multi_index(pp, geom.in_sizes)) for pp in taps]
            drop = [_dropped_py(seed, b * c + ch, qq, rate) for qq in qs]
            xv = [dt(0.0) if d else v for v, d in zip(vals, drop)]
            best, bi = dt(-np.inf), 0
            for i, v in enumerate(xv):
                if v > best or np.isnan(v):
                    best, bi = v, i
            y[(b, ch) + o] = best
            idx[(b, ch) + o] = -1 if drop[bi] else qs[bi]
            total = 0.0
            for i, a in enumerate(vals):
                ci = sum(above(float(vals[j]), float(a), j, i) for j in range(len(vals)) if j != i)
                w = p
                for _ in range(ci):
                    w = dt(w * q)
                if w != 0:
                    total += float(w) * float(a)
                    gx[(b, ch) + taps[i]] += float(g[(b, ch) + o]) * float(w)
            yi[(b, ch) + o] = total
    return y, idx, yi, gx


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
def test_reference_matches_brute_force(geom, dtype):
    case = Case(geom, "channels_first", dtype, 2, 2)
    kw = geom.kwargs()
    g = case.grad()
    for kind, rate, seed in (("ties", 0.5, 3), ("special", 0.25, 2**64 - 2), ("relu", 0.9, 11),
                             ("negative", 0.5, 12), ("ties", 0.0, 1), ("special", 1.0, 5)):
        x = case_data(case, kind, "brute")
        by, bidx, byi, bgx = _brute(x, rate, seed, g, **kw)
        what = f"{kind} rate {rate} seed {seed}"
        ry, ridx = dref.max_pool_dropout(x, rate, seed=seed, **kw)
        assert_bitwise_equal(ry, by, f"reference y, {what}")
        np.testing.assert_array_equal(ridx, bidx, err_msg=what)
        assert_bitwise_equal(dref.max_pool_dropout_backward(g, x, rate, seed=seed, **kw),
                             dref.route_backward(g, x, bidx, _kernel(geom)), what)
        with np.errstate(invalid="ignore"):
            yi = dref.max_pool_dropout(x, rate, training=False, **kw)
            scale = dref.max_pool_dropout(x, rate, training=False, magnitude=True, **kw)
        assert_close(yi, byi.astype(dtype), scale, 1e-6 if dtype == np.float32 else 1e-14, f"inference {what}")
        gi = dref.max_pool_dropout_backward(g, x, rate, training=False, **kw)
        gs = dref.max_pool_dropout_backward(g, x, rate, training=False, magnitude=True, **kw)
        assert_close(gi, bgx.astype(dtype), gs, 1e-6 if dtype == np.float32 else 1e-14, f"inference grad {what}")
        # channels_last and unbatched: the same masks (plane n*C + c in every layout)
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        ly, lidx = dref.max_pool_dropout(xl, rate, seed=seed, layout="channels_last", **kw)
        assert_bitwise_equal(ly, np.ascontiguousarray(np.moveaxis(by, 1, -1)))
        np.testing.assert_array_equal(lidx, np.moveaxis(bidx, 1, -1))
        uy, uidx = dref.max_pool_dropout(x[0], rate, seed=seed, **dict(kw, kernel_size=_kernel(geom)))
        assert_bitwise_equal(uy, by[0])
        np.testing.assert_array_equal(uidx, bidx[0])


# --------------------------------------------------------------------------- reference results


def expected_training(case: Case, kind: str, rate: float, seed: int):
    """(y, indices, grad_x from them for case.grad()) of the reference, cached."""
    def compute():
        x, kw = case_data(case, kind), case.max_kwargs()
        y, idx = dref.max_pool_dropout(x, rate, seed=seed, **kw)
        return y, idx, dref.route_backward(case.grad(), x, idx, _kernel(case.geom), case.layout)
    return cached(("dropout", case.id, kind, rate, seed), compute)


def expected_inference(case: Case, kind: str, rate: float):
    """(y, forward scale, grad_x, backward scale) of the reference, cached."""
    def compute():
        x, g, kw = case_data(case, kind), case.grad("normal"), case.max_kwargs()
        return dref.max_pool_dropout_inference(x, rate, g, **kw)
    return cached(("dropout_mean", case.id, kind, rate), compute)


# (kind, rate); the seed cycles over SEEDS
TRAIN_COMBOS = [("relu", 0.25), ("relu", 0.9), ("ties", 0.5), ("normal", 0.5), ("negative", 0.25),
                ("special", 0.5), ("ties", 0.0), ("normal", 1.0)]
INFER_COMBOS = [("normal", 0.25), ("ties", 0.5), ("relu", 0.9), ("special", 0.5), ("ties", 0.0), ("normal", 1.0)]


def check_training(case: Case, combos=TRAIN_COMBOS, against_max_pool: bool = True) -> None:
    """Values and indices bitwise equal to the reference's; the backward from the indices
    and from the seed the reference scatter, bitwise; y = fastpool.max_pool of the masked
    input; inputs left unchanged."""
    kw = case.max_kwargs()
    g = case.grad()
    for i, (kind, rate) in enumerate(combos):
        seed = SEEDS[i % len(SEEDS)]
        x = case_data(case, kind)
        snap = snapshot(x, g)
        ey, eidx, egx = expected_training(case, kind, rate, seed)
        what = f"{kind} rate {rate} seed {seed}"
        y, idx = fp("max_pool_dropout")(x, rate, seed=seed, return_indices=True, **kw)
        assert y.dtype == x.dtype and y.shape == case.out_shape() and y.flags.c_contiguous
        assert idx.dtype == np.int64 and idx.shape == y.shape and idx.flags.c_contiguous
        assert_bitwise_equal(y, ey, f"y {what}")
        assert_bitwise_equal(idx, eidx, f"indices {what}")
        assert_bitwise_equal(fp("max_pool_dropout")(x, rate, seed=seed, **kw), ey, f"y without indices {what}")
        gx = fp("max_pool_dropout_backward")(g, x, rate, indices=idx, **kw)
        assert gx.dtype == x.dtype and gx.shape == x.shape and gx.flags.c_contiguous
        assert_bitwise_equal(gx, egx, f"backward from indices {what}")
        assert_bitwise_equal(fp("max_pool_dropout_backward")(g, x, rate, seed=seed, **kw), egx,
                             f"backward from seed {what}")
        if against_max_pool and i == 0:
            drop = dref.dropped_mask(x.shape, seed, rate, case.geom.rank, case.layout)
            my, midx = fp("max_pool")(np.where(drop, np.zeros((), x.dtype), x), return_indices=True, **kw)
            assert_bitwise_equal(y, my, f"y vs fastpool.max_pool of the masked input, {what}")
            np.testing.assert_array_equal(idx[idx >= 0], midx[idx >= 0])
        assert_unchanged(snap, what)


def check_inference(case: Case, combos=INFER_COMBOS) -> None:
    kw = case.max_kwargs()
    rtol = rtol_of(case)
    for kind, rate in combos:
        x, g = case_data(case, kind), case.grad("normal")
        snap = snapshot(x, g)
        e, scale, e_g, g_scale = expected_inference(case, kind, rate)
        what = f"{kind} rate {rate}"
        y = fp("max_pool_dropout")(x, rate, training=False, **kw)
        assert isinstance(y, np.ndarray) and y.dtype == x.dtype and y.shape == case.out_shape()
        assert y.flags.c_contiguous
        assert_close(y, e, scale, rtol, f"inference forward {what}")
        gx = fp("max_pool_dropout_backward")(g, x, rate, training=False, **kw)
        assert gx.dtype == x.dtype and gx.shape == x.shape and gx.flags.c_contiguous
        assert_close(gx, e_g, g_scale, rtol, f"inference backward {what}")
        assert_unchanged(snap, what)


# --------------------------------------------------------------------------- grid

GRID = grid(GEOMS)


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case):
    check_training(case)
    check_inference(case)


SHORT_TRAIN = [("relu", 0.5), ("ties", 0.25), ("special", 0.9)]
SHORT_INFER = [("ties", 0.5), ("special", 0.25)]


@pytest.mark.parametrize("case", params(WINDOW_BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check_training(case, SHORT_TRAIN, against_max_pool=False)
    check_inference(case, SHORT_INFER)


@pytest.mark.parametrize("case", params(UNBATCHED))
def test_unbatched_and_fixed_rank_forms(case):
    """(C, *spatial) / (*spatial, C) inputs (planes c: batch 0's mask) and
    max_pool_dropout{1,2,3}d[_backward] with an int kernel_size give the batched generic
    results."""
    rank = case.geom.rank
    kw = case.max_kwargs()
    kw_tuple = dict(kw, kernel_size=_kernel(case.geom))
    rtol = rtol_of(case)
    f, fb = fp(f"max_pool_dropout{rank}d"), fp(f"max_pool_dropout{rank}d_backward")
    gen, genb = fp("max_pool_dropout"), fp("max_pool_dropout_backward")
    g, gn = case.grad(), case.grad("normal")
    for kind, rate, seed in (("relu", 0.5, SEEDS[1]), ("negative", 0.25, SEEDS[2])):
        x = case_data(case, kind)
        ey, eidx, egx = expected_training(case, kind, rate, seed)
        for batched in (True, False):
            xb, gb = (x, g) if batched else (x[0], g[0])
            eyb, eib, egb = (ey, eidx, egx) if batched else (ey[0], eidx[0], egx[0])
            what = f"{kind} batched={batched}"
            for name, fn, kk in ((f"max_pool_dropout{rank}d", f, kw), ("max_pool_dropout", gen, kw_tuple)):
                y, idx = fn(xb, rate, seed=seed, return_indices=True, **kk)
                assert_bitwise_equal(y, eyb, f"{name} {what}")
                assert_bitwise_equal(idx, eib, f"{name} indices {what}")
            assert_bitwise_equal(fb(gb, xb, rate, indices=eib, **kw), egb, f"backward indices {what}")
            assert_bitwise_equal(fb(gb, xb, rate, seed=seed, **kw), egb, f"backward seed {what}")
            assert_bitwise_equal(genb(gb, xb, rate, seed=seed, **kw_tuple), egb, f"generic backward seed {what}")
        e, scale, e_g, g_scale = expected_inference(case, kind, rate)
        for batched in (True, False):
            xb, gb = (x, gn) if batched else (x[0], gn[0])
            eb, sb, egb, gsb = (e, scale, e_g, g_scale) if batched else (e[0], scale[0], e_g[0], g_scale[0])
            assert_close(f(xb, rate, training=False, **kw), eb, sb, rtol, f"inference {kind} batched={batched}")
            assert_close(gen(xb, rate, training=False, **kw_tuple), eb, sb, rtol)
            assert_close(fb(gb, xb, rate, training=False, **kw), egb, gsb, rtol, f"inference backward {kind}")
            assert_close(genb(gb, xb, rate, training=False, **kw_tuple), egb, gsb, rtol)


def test_unbatched_planes_are_the_first_batch_element():
    """The plane of (C, *spatial) channel c is c: unbatched x[1] is masked as a batch of
    its own, not as batch element 1 (planes C + c)."""
    x = np.ones((2, 4, 40, 40), np.float32)
    _, idx = fp("max_pool_dropout")(x, 0.5, 1, seed=5, return_indices=True)
    _, idx0 = fp("max_pool_dropout2d")(x[0], 0.5, 1, seed=5, return_indices=True)
    _, idx1 = fp("max_pool_dropout2d")(x[1], 0.5, 1, seed=5, return_indices=True)
    np.testing.assert_array_equal(idx0, idx[0])
    np.testing.assert_array_equal(idx1, idx[0])
    assert (idx1 != idx[1]).any()


# --------------------------------------------------------------------------- backends

IDENTITY_CASES = [
    Case(Geom((33, 67), 3, 2, 1), "channels_first", np.float32, 2, 17),
    Case(Geom((33, 67), 3, 2, 1), "channels_last", np.float32, 2, 17),
    Case(Geom((40, 203), (3, 5), 1, (1, 2)), "channels_first", np.float64, 1, 9),
    Case(Geom((2500,), 7, 2, 3), "channels_first", np.float32, 3, 11),
    Case(Geom((9, 17, 31), 3, 2, 1), "channels_last", np.float64, 2, 19),
]

IDENTITY_SEED = 0xC0FFEE


def _outputs(case: Case) -> Dict[str, np.ndarray]:
    kw = case.max_kwargs()
    g = case.grad()
    res = {}
    for kind, rate in (("relu", 0.5), ("negative", 0.25)):
        x = case_data(case, kind)
        y, idx = fp("max_pool_dropout")(x, rate, seed=IDENTITY_SEED, return_indices=True, **kw)
        res[f"y {kind}"], res[f"indices {kind}"] = y, idx
        res[f"grad seed {kind}"] = fp("max_pool_dropout_backward")(g, x, rate, seed=IDENTITY_SEED, **kw)
        res[f"mean {kind}"] = fp("max_pool_dropout")(x, rate, training=False, **kw)
        res[f"mean grad {kind}"] = fp("max_pool_dropout_backward")(case.grad("normal"), x, rate, training=False,
                                                                   **kw)
    return res


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    """Every SIMD path x threads 1, 2, 3: the same bits as the first run (training,
    gradients and the inference form); the training results are the reference's."""
    base = identical_on_every_backend(lambda: _outputs(case))
    for kind, rate in (("relu", 0.5), ("negative", 0.25)):
        ey, eidx, egx = expected_training(case, kind, rate, IDENTITY_SEED)
        assert_bitwise_equal(base[f"y {kind}"], ey, f"y {kind}")
        assert_bitwise_equal(base[f"indices {kind}"], eidx, f"indices {kind}")
        assert_bitwise_equal(base[f"grad seed {kind}"], egx, f"grad {kind}")
    e, scale, e_g, g_scale = expected_inference(case, "relu", 0.5)
    assert_close(base["mean relu"], e, scale, rtol_of(case), "inference forward")
    assert_close(base["mean grad relu"], e_g, g_scale, rtol_of(case), "inference backward")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reproducible_at_any_thread_count(layout):
    case = Case(Geom((33, 67), 3, 2, 1), layout, np.float32, 2, 17)
    x, kw = case_data(case, "relu"), case.max_kwargs()
    assert x.size > 2**16
    ey, eidx, _ = expected_training(case, "relu", 0.5, IDENTITY_SEED)
    for t in (1, 2, 3, 5, 8):
        with fastpool.threads(t):
            y, idx = fp("max_pool_dropout")(x, 0.5, seed=IDENTITY_SEED, return_indices=True, **kw)
        assert_bitwise_equal(y, ey, f"threads {t}")
        assert_bitwise_equal(idx, eidx, f"indices threads {t}")


# --------------------------------------------------------------------------- the mask: statistics and invariance

# chi-square quantile at 1 - 1e-4 for 3 degrees of freedom; z bounds at 4.5 standard
# errors: a correct hash fails about one seed in 10^4 or 10^5; the seeds are fixed.
CHI2_Q3 = 21.108
Z_MAX = 4.5


def _z(count: int, n: int, p: float) -> float:
    return (count - n * p) / math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.9])
def test_dropped_fraction_is_the_rate(rate):
    """262144 elements (64 planes of 64 x 64): the dropped count within 4.5 standard
    errors of n * rate, and so in every plane; two seeds."""
    shape = (4, 16, 64, 64)
    n_plane = 64 * 64
    for seed in (3, 2**63 + 1):
        drop = _ones_mask("fastpool", shape, rate, seed)
        z = _z(int(drop.sum()), drop.size, rate)
        assert abs(z) < Z_MAX, (seed, drop.mean(), z)
        per_plane = drop.reshape(-1, n_plane).sum(axis=1)
        zs = (per_plane - n_plane * rate) / math.sqrt(n_plane * rate * (1 - rate))
        assert np.abs(zs).max() < Z_MAX + 0.5, (seed, zs.min(), zs.max())


def _chi2_pairs(a: np.ndarray, b: np.ndarray, rate: float) -> float:
    """Chi-square of the 2 x 2 joint counts of two masks against independence at ``rate``."""
    counts = np.array([np.count_nonzero(~a & ~b), np.count_nonzero(~a & b),
                       np.count_nonzero(a & ~b), np.count_nonzero(a & b)], np.float64)
    p = np.array([(1 - rate) ** 2, (1 - rate) * rate, rate * (1 - rate), rate**2])
    e = counts.sum() * p
    return float(((counts - e) ** 2 / e).sum())


def test_neighbouring_elements_planes_and_seeds_are_independent():
    rate = 0.5
    drop = _ones_mask("fastpool", (2, 64, 32, 64), rate, 9)  # planes of 2048
    flat = drop.reshape(128, -1)
    assert _chi2_pairs(flat[:, 0::2], flat[:, 1::2], rate) < CHI2_Q3, "neighbouring positions"
    assert _chi2_pairs(flat[:, :-64], flat[:, 64:], rate) < CHI2_Q3, "neighbouring rows"
    assert _chi2_pairs(flat[0::2], flat[1::2], rate) < CHI2_Q3, "neighbouring planes"
    other = _ones_mask("fastpool", (2, 64, 32, 64), rate, 10).reshape(128, -1)
    assert _chi2_pairs(flat, other, rate) < CHI2_Q3, "seeds 9 and 10"
    high = _ones_mask("fastpool", (2, 64, 32, 64), rate, 9 ^ 2**63).reshape(128, -1)
    assert _chi2_pairs(flat, high, rate) < CHI2_Q3, "seeds one high bit apart"
    # rate 0.25 and 0.5 under one seed: the masks are nested (h < t)
    quarter = _ones_mask("fastpool", (2, 64, 32, 64), 0.25, 9).reshape(128, -1)
    assert not (quarter & ~flat).any()


def test_mask_is_the_same_for_both_dtypes_and_layouts(backend):
    """The mask depends on (seed, plane, position) only: float32 == float64, channels_last
    == channels_first (moved), on every SIMD path and thread count; the reference's."""
    shape = (2, 5, 48, 70)
    for seed, rate in ((1, 0.3), (2**64 - 1, 0.75)):
        want = dref.dropped_mask(shape, seed, rate, 2)
        for dtype in DTYPES:
            np.testing.assert_array_equal(_ones_mask("fastpool", shape, rate, seed, dtype=dtype), want)
            cl = _ones_mask("fastpool", (2, 48, 70, 5), rate, seed, "channels_last", dtype)
            np.testing.assert_array_equal(np.moveaxis(cl, -1, 1), want)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_overlapping_windows_share_the_mask(layout, backend):
    """Over ones, x' is 1 where kept and 0 where dropped, so a window's index is its first
    kept tap (-1 if none): windows of stride 1 (3x3, padding 1) must agree with the
    kernel-1 mask of the same seed at every tap."""
    shape = (2, 3, 20, 37) if layout == "channels_first" else (2, 20, 37, 3)
    rate, seed = 0.6, 77
    drop = _ones_mask("fastpool", shape, rate, seed, layout)
    x = np.ones(shape, np.float32)
    y, idx = fp("max_pool_dropout")(x, rate, 3, stride=1, padding=1, seed=seed, return_indices=True, layout=layout)
    if layout == "channels_last":
        drop, y, idx = (np.moveaxis(a, -1, 1) for a in (drop, y, idx))
    kept = np.pad(~drop, ((0, 0), (0, 0), (1, 1), (1, 1)))  # padding: never a tap
    want = np.full(idx.shape, -1, np.int64)
    for dh, dw in reversed(list(itertools.product(range(3), range(3)))):  # the first kept tap wins
        k = kept[:, :, dh:dh + 20, dw:dw + 37]
        pos = (np.arange(20)[:, None] + dh - 1) * 37 + (np.arange(37)[None, :] + dw - 1)
        want = np.where(k, pos, want)
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(y, (want >= 0).astype(np.float32))


def test_mean_of_training_outputs_is_the_inference_form():
    """For non-negative windows E[max(m a)] = sum p q**c_i a_i (the largest kept value, 0
    if none is kept): the mean over 20000 planes of training outputs is the inference
    form within 4.5 standard errors; ties included."""
    window = np.array([[0.5, 2.0, 0.0], [1.0, 2.0, 3.0], [0.25, 0.0, 1.5]])
    x = np.broadcast_to(window, (1, 20000, 3, 3)).copy()
    for rate, seed in ((0.5, 21), (0.2, 22), (0.8, 23)):
        y = fp("max_pool_dropout")(x, rate, 3, seed=seed)
        mean = fp("max_pool_dropout")(x[:, :1], rate, 3, training=False).item()
        sd = math.sqrt(((y - mean) ** 2).mean() / y.size)
        assert abs(y.mean() - mean) < Z_MAX * sd, (rate, y.mean(), mean, sd)


# --------------------------------------------------------------------------- seeds and rates

BIG = Case(Geom((32, 32), 2), "channels_first", np.float32, 2, 16)


def test_same_int_seed_same_results():
    x = case_data(BIG, "relu")
    y1, i1 = fp("max_pool_dropout")(x, 0.5, 2, seed=123, return_indices=True)
    y2, i2 = fp("max_pool_dropout")(x, 0.5, 2, seed=123, return_indices=True)
    assert_bitwise_equal(y1, y2)
    np.testing.assert_array_equal(i1, i2)
    for s in (np.int64(123), np.uint64(123), np.int32(123)):
        _, i3 = fp("max_pool_dropout")(x, 0.5, 2, seed=s, return_indices=True)
        np.testing.assert_array_equal(i3, i1)
    _, top = fp("max_pool_dropout")(x, 0.5, 2, seed=np.uint64(2**64 - 1), return_indices=True)
    np.testing.assert_array_equal(top, dref.max_pool_dropout(x, 0.5, 2, seed=2**64 - 1)[1])


def test_different_seeds_differ():
    """Other seeds (one bit apart, low or high) change about half of the mask."""
    shape = (2, 16, 32, 32)
    base = _ones_mask("fastpool", shape, 0.5, 1000)
    for other in (1001, 1000 ^ 2**63, 1000 ^ 2**32, 0, 2**64 - 1):
        frac = np.count_nonzero(_ones_mask("fastpool", shape, 0.5, other) != base) / base.size
        assert 0.45 < frac < 0.55, (other, frac)


def test_rate_forms():
    """Ints, numpy floats and numpy ints are rates too; -0.0 is 0."""
    x = case_data(BIG, "ties")
    for rate, forms in ((0.25, (np.float64(0.25), np.float32(0.25))), (0.0, (0, -0.0, np.int64(0))),
                        (1.0, (1, np.float32(1.0)))):
        ey, ei = fp("max_pool_dropout")(x, rate, 2, seed=4, return_indices=True)
        ym = fp("max_pool_dropout")(x, rate, 2, training=False)
        gm = fp("max_pool_dropout_backward")(BIG.grad(), x, rate, 2, training=False)
        for r in forms:
            y, i = fp("max_pool_dropout")(x, r, 2, seed=4, return_indices=True)
            assert_bitwise_equal(y, ey, repr(r))
            np.testing.assert_array_equal(i, ei)
            assert_bitwise_equal(fp("max_pool_dropout")(x, r, 2, training=False), ym, repr(r))
            assert_bitwise_equal(fp("max_pool_dropout_backward")(BIG.grad(), x, r, 2, training=False), gm, repr(r))
            assert_bitwise_equal(fp("max_pool_dropout_backward")(BIG.grad(), x, r, 2, seed=4),
                                 dref.route_backward(BIG.grad(), x, ei, (2, 2)), repr(r))


def test_generator_seed():
    """A Generator gives one uint64 draw of its stream as the seed: generators in the same
    state give the same masks, the generator moves on, the results are the reference's
    for that uint64."""
    x = case_data(BIG, "relu")
    g1, g2 = np.random.default_rng(77), np.random.default_rng(77)
    state = copy.deepcopy(g1.bit_generator.state)
    y1, i1 = fp("max_pool_dropout")(x, 0.5, 2, seed=g1, return_indices=True)
    y2, i2 = fp("max_pool_dropout")(x, 0.5, 2, seed=g2, return_indices=True)
    assert_bitwise_equal(y1, y2)
    np.testing.assert_array_equal(i1, i2)
    assert g1.bit_generator.state != state
    assert g1.bit_generator.state == g2.bit_generator.state
    _, i3 = fp("max_pool_dropout")(x, 0.5, 2, seed=g1, return_indices=True)
    assert (i3 != i1).any()
    g3 = np.random.default_rng(77)
    drawn = int(g3.integers(0, 2**64, dtype=np.uint64))
    assert g3.bit_generator.state == g2.bit_generator.state  # exactly one uint64 draw
    ey, ei = dref.max_pool_dropout(x, 0.5, 2, seed=drawn)
    assert_bitwise_equal(y1, ey)
    np.testing.assert_array_equal(i1, ei)
    g = BIG.grad()
    np.testing.assert_array_equal(fp("max_pool_dropout_backward")(g, x, 0.5, 2, indices=i1),
                                  fp("max_pool_dropout_backward")(g, x, 0.5, 2, seed=drawn))


def _valid_training(x: np.ndarray, rate: float, y: np.ndarray, idx: np.ndarray, **kw) -> None:
    """Each output is the maximum of x' for SOME mask: a kept tap's value at its index (no
    kept tap of its window larger, no NaN), or 0 at -1."""
    kept = idx >= 0
    xs = x.reshape(x.shape[0], x.shape[1], -1)
    vals = np.take_along_axis(xs, np.where(kept, idx, 0).reshape(*idx.shape[:2], -1), axis=-1).reshape(y.shape)
    assert_bitwise_equal(np.where(kept, y, 0), np.where(kept, vals, 0).astype(y.dtype))
    assert (y[~kept] == 0).all()
    mp = fp("max_pool")(x, **kw)
    assert (y <= np.maximum(mp, 0)).all()


def test_seed_none_gives_fresh_masks():
    x = case_data(BIG, "normal")
    y1, i1 = fp("max_pool_dropout")(x, 0.5, 2, return_indices=True)
    y2, i2 = fp("max_pool_dropout")(x, 0.5, 2, seed=None, return_indices=True)
    _valid_training(x, 0.5, y1, i1, kernel_size=2)
    _valid_training(x, 0.5, y2, i2, kernel_size=2)
    assert (i1 != i2).any()
    frac = np.count_nonzero(_ones_mask("fastpool", (2, 16, 32, 32), 0.5, None)) / (2 * 16 * 32 * 32)
    assert 0.45 < frac < 0.55


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_backward_from_seed_equals_backward_from_indices(case):
    """The seed recomputes the mask and the argmax: the same gradient as from the forward's
    indices, with any grad_output (here normal, not dyadic), and max_pool_backward's with
    the kept indices (the -1 entries given a grad_output of 0)."""
    kw = case.max_kwargs()
    x, g = case_data(case, "relu"), case.grad("normal")
    for seed, rate in ((5, 0.5), (2**64 - 3, 0.25)):
        _, idx = fp("max_pool_dropout")(x, rate, seed=seed, return_indices=True, **kw)
        from_idx = fp("max_pool_dropout_backward")(g, x, rate, indices=idx, **kw)
        assert_bitwise_equal(fp("max_pool_dropout_backward")(g, x, rate, seed=seed, **kw), from_idx)
        assert_bitwise_equal(fp("max_pool_dropout_backward")(g, x, rate, seed=np.uint64(seed), **kw), from_idx)
        e = dref.route_backward(g, x, idx, _kernel(case.geom), case.layout)
        m = dref.route_backward(g, x, idx, _kernel(case.geom), case.layout, magnitude=True)
        assert_close(from_idx, e, m, 8 * np.finfo(case.dtype).eps, "backward vs scatter")
        # an all -1 indices array routes nothing
        none = fp("max_pool_dropout_backward")(g, x, rate, indices=np.full_like(idx, -1), **kw)
        assert_bitwise_equal(none, np.zeros_like(x))


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


def _signed_distinct(rng: np.random.Generator, shape) -> np.ndarray:
    """Distinct values >= 1e-2 apart, half negative, all at least 4e-3 from 0."""
    n = int(np.prod(shape))
    return distinct_values(rng, shape) - (n // 2) * 1e-2 - 5e-3


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom", GRAD_GEOMS)
def test_numerical_gradient_of_the_inference_form(geom, layout, rng):
    x = _signed_distinct(rng, _shape(geom, layout))
    for rate in (0.3, 0.75):
        kw = dict(geom.kwargs(), layout=layout, training=False)
        y = fp("max_pool_dropout")(x, rate, **kw)
        g = rng.standard_normal(y.shape)
        num = numerical_gradient(lambda v: fp("max_pool_dropout")(v, rate, **kw), x, g, h=1e-6)
        got = fp("max_pool_dropout_backward")(g, x, rate, **kw)
        assert np.abs(num).max() > 0.1
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom", GRAD_GEOMS)
def test_numerical_gradient_of_the_training_form(geom, layout, rng):
    """With a fixed seed the mask is fixed and y = max(x') is piecewise linear: its
    gradient is the backward's (from the seed and from the indices)."""
    x = _signed_distinct(rng, _shape(geom, layout))
    for rate, seed in ((0.3, 1), (0.6, 2)):
        kw = dict(geom.kwargs(), layout=layout)
        y, idx = fp("max_pool_dropout")(x, rate, seed=seed, return_indices=True, **kw)
        assert (idx == -1).any() and (idx >= 0).any()
        g = rng.standard_normal(y.shape)
        num = numerical_gradient(lambda v: fp("max_pool_dropout")(v, rate, seed=seed, **kw), x, g, h=1e-6)
        got = fp("max_pool_dropout_backward")(g, x, rate, seed=seed, **kw)
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(fp("max_pool_dropout_backward")(g, x, rate, indices=idx, **kw), got)


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_inference_invariants(dtype):
    """The weights depend on the ranks only: scaling x by 2 scales y by 2 and leaves the
    gradient unchanged, bitwise; y is linear in x for fixed ranks, so
    sum x * grad_x = sum g * y; with g = 1 the weights of one window sum to
    p (1 + q + ... + q**(n-1)) = 1 - q**n."""
    case = Case(Geom((9, 11), 3, 2, 1, ceil_mode=True), "channels_last", dtype, 2, 5)
    kw = dict(case.max_kwargs(), training=False)
    x, g = case_data(case, "normal"), case.grad("normal")
    y = fp("max_pool_dropout")(x, 0.5, **kw)
    gx = fp("max_pool_dropout_backward")(g, x, 0.5, **kw)
    assert_bitwise_equal(fp("max_pool_dropout")(2 * x, 0.5, **kw), 2 * y)
    assert_bitwise_equal(fp("max_pool_dropout_backward")(g, 2 * x, 0.5, **kw), gx)
    lhs = (x.astype(np.float64) * gx).sum()
    rhs = (g.astype(np.float64) * y).sum()
    assert abs(lhs - rhs) <= 100 * np.finfo(dtype).eps * np.abs(g).sum() * np.abs(x).max()
    # one window of n taps: the weights sum to 1 - q**n
    for n, rate in ((5, 0.5), (9, 0.25), (4, 0.9)):
        xs = case_data(Case(Geom((n,), n), "channels_first", dtype, 1, 7), "ties")
        w = fp("max_pool_dropout_backward")(np.ones((1, 7, 1), dtype), xs, rate, (n,), training=False)
        q = float(np.asarray(rate, dtype))
        np.testing.assert_allclose(w.sum(axis=-1), 1 - q**n, rtol=20 * np.finfo(dtype).eps)


# --------------------------------------------------------------------------- memory and inputs


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    """out= (starting as NaN) is written in full and returned: training (with and without
    indices), inference, and the three backwards; only out is written."""
    x = case_data(case, "relu")
    g = case.grad()
    kw = case.max_kwargs()
    seed, rate = SEEDS[1], 0.5
    ey, eidx, egx = expected_training(case, "relu", rate, seed)
    snap = snapshot(x, g)
    out = np.full(ey.shape, np.nan, case.dtype)
    assert fp("max_pool_dropout")(x, rate, seed=seed, out=out, **kw) is out
    assert_bitwise_equal(out, ey, "out")
    out[...] = np.nan
    y, idx = fp("max_pool_dropout")(x, rate, seed=seed, out=out, return_indices=True, **kw)
    assert y is out
    assert_bitwise_equal(out, ey, "out with indices")
    np.testing.assert_array_equal(idx, eidx)
    out[...] = np.nan
    assert fp("max_pool_dropout")(x, rate, training=False, out=out, **kw) is out
    assert_bitwise_equal(out, fp("max_pool_dropout")(x, rate, training=False, **kw), "inference out")
    for name, extra in (("indices", {"indices": eidx}), ("seed", {"seed": seed})):
        gout = np.full(x.shape, np.nan, case.dtype)
        assert fp("max_pool_dropout_backward")(g, x, rate, out=gout, **extra, **kw) is gout
        assert_bitwise_equal(gout, egx, f"backward out from {name}")
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fp("max_pool_dropout_backward")(g, x, rate, training=False, out=gout, **kw) is gout
    assert_bitwise_equal(gout, fp("max_pool_dropout_backward")(g, x, rate, training=False, **kw),
                         "inference backward out")
    buf = np.full(2 * out.size + 64, np.nan, case.dtype)
    view = buf[32:32 + out.size].reshape(out.shape)
    assert fp("max_pool_dropout")(x, rate, seed=seed, out=view, **kw) is view
    assert_bitwise_equal(view, ey)
    assert np.isnan(buf[:32]).all() and np.isnan(buf[32 + out.size:]).all()
    gbuf = np.full(2 * x.size + 64, np.nan, case.dtype)
    gview = gbuf[32:32 + x.size].reshape(x.shape)
    assert fp("max_pool_dropout_backward")(g, x, rate, indices=eidx, out=gview, **kw) is gview
    assert_bitwise_equal(gview, egx)
    assert np.isnan(gbuf[:32]).all() and np.isnan(gbuf[32 + x.size:]).all()
    assert_unchanged(snap, "out=")


@pytest.mark.parametrize("case", params(OUT_CASES[:3]))
def test_non_contiguous_inputs(case):
    """Strided, reversed, Fortran-order, read-only, unaligned and transposed-memory x,
    grad_output and indices: the same results, bitwise; inputs unchanged."""
    kw = case.max_kwargs()
    x, g = case_data(case, "ties"), case.grad()
    seed, rate = SEEDS[1], 0.5
    ey, eidx, egx = expected_training(case, "ties", rate, seed)
    mean = fp("max_pool_dropout")(x, rate, training=False, **kw)
    gn = case.grad("normal")
    mean_g = fp("max_pool_dropout_backward")(gn, x, rate, training=False, **kw)
    xs, gs, gns, ids = dict(views(x)), dict(views(g)), dict(views(gn)), dict(views(eidx))
    for d, a in ((xs, x), (gs, g), (gns, gn), (ids, eidx)):
        d["transposed-memory"] = transposed_memory(a, case.layout)
    for name in xs:
        xv, gv, gnv, iv = xs[name], gs[name], gns[name], ids[name]
        snap = snapshot(xv, gv, gnv, iv, x, g)
        y, idx = fp("max_pool_dropout")(xv, rate, seed=seed, return_indices=True, **kw)
        assert_bitwise_equal(y, ey, name)
        np.testing.assert_array_equal(idx, eidx, err_msg=name)
        assert_bitwise_equal(fp("max_pool_dropout")(xv, rate, training=False, **kw), mean, f"{name} inference")
        assert_bitwise_equal(fp("max_pool_dropout_backward")(gv, xv, rate, indices=iv, **kw), egx, f"{name} indices")
        assert_bitwise_equal(fp("max_pool_dropout_backward")(gv, xv, rate, seed=seed, **kw), egx, f"{name} seed")
        assert_bitwise_equal(fp("max_pool_dropout_backward")(gnv, xv, rate, training=False, **kw), mean_g,
                             f"{name} inference backward")
        assert_unchanged(snap, name)


def test_list_input_as_max_pool():
    """Nested lists are taken as max_pool takes them (Python floats: float64)."""
    data = [[[1.0, 3.0, 2.0, -1.0]]]
    mp = fp("max_pool")(data, (2,))
    assert isinstance(mp, np.ndarray) and mp.dtype == np.float64  # max_pool accepts lists
    y = fp("max_pool_dropout")(data, 0.5, (2,), training=False)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[1.75, 1.0 - 0.25]]])  # [1, 3]: 3/2 + 1/4; [2, -1]: 1 - 1/4
    y, idx = fp("max_pool_dropout")(data, 0.0, (2,), seed=7, return_indices=True)
    np.testing.assert_array_equal(y, [[[3.0, 2.0]]])
    np.testing.assert_array_equal(idx, [[[1, 2]]])
    g = fp("max_pool_dropout_backward")([[[1.0]]], [[[1.0, 3.0]]], 0.5, (2,), training=False)
    np.testing.assert_array_equal(g, [[[0.25, 0.5]]])


def test_docstring_examples():
    func = fp("max_pool_dropout")
    mod = importlib.import_module(func.__module__)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(func, "max_pool_dropout", module=mod, globs=vars(mod).copy())
    assert sum(len(t.examples) for t in tests) >= 1, "max_pool_dropout's docstring has no example"
    for t in tests:
        runner.run(t, out=lambda s: None)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of max_pool_dropout failed"
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0


# --------------------------------------------------------------------------- errors

X = np.ones((1, 2, 5, 6), np.float32)
GO = np.ones((1, 2, 2, 3), np.float32)  # the output of kernel_size 2
IDX = np.zeros((1, 2, 2, 3), np.int64)


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


def _idx_with(value, at) -> np.ndarray:
    i = IDX.copy()
    i[at] = value
    return i


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _d(*a, **k):
    return fp("max_pool_dropout")(*a, **k)


def _db(*a, **k):
    return fp("max_pool_dropout_backward")(*a, **k)


E, T, TE = ValueError, TypeError, (TypeError, ValueError)
ERRORS = [
    # rate
    ("rate-str", lambda: _d(X, "0.5", 2, seed=1), T, r"\brate\b"),
    ("rate-none", lambda: _d(X, None, 2, seed=1), T, r"\brate\b"),
    ("rate-bool", lambda: _d(X, True, 2, seed=1), TE, r"\brate\b"),
    ("rate-np-bool", lambda: _d(X, np.bool_(False), 2, seed=1), TE, r"\brate\b"),
    ("rate-complex", lambda: _d(X, 0.5 + 0j, 2, seed=1), TE, r"\brate\b"),
    ("rate-array", lambda: _d(X, np.array([0.5]), 2, seed=1), TE, r"\brate\b"),
    ("rate-nan", lambda: _d(X, NAN, 2, seed=1), TE, r"\brate\b"),
    ("rate-nan-inference", lambda: _d(X, NAN, 2, training=False), TE, r"\brate\b"),
    ("rate-negative", lambda: _d(X, -0.1, 2, seed=1), E, r"\brate\b"),
    ("rate-tiny-negative", lambda: _d(X, -1e-300, 2, training=False), E, r"\brate\b"),
    ("rate-above-one", lambda: _d(X, 1.5, 2, seed=1), E, r"\brate\b"),
    ("rate-just-above-one", lambda: _d(X, 1 + 2**-52, 2, training=False), E, r"\brate\b"),
    ("rate-int-two", lambda: _d(X, 2, 2, seed=1), E, r"\brate\b"),
    ("rate-inf", lambda: _d(X, INF, 2, seed=1), E, r"\brate\b"),
    ("rate-backward-negative", lambda: _db(GO, X, -0.5, 2, seed=1), E, r"\brate\b"),
    ("rate-backward-indices", lambda: _db(GO, X, 1.5, 2, indices=IDX), E, r"\brate\b"),
    ("rate-backward-inference-nan", lambda: _db(GO, X, NAN, 2, training=False), TE, r"\brate\b"),
    ("rate-backward-str", lambda: _db(GO, X, "x", 2, training=False), T, r"\brate\b"),
    # seed
    ("seed-float", lambda: _d(X, 0.5, 2, seed=1.0), T, r"\bseed\b"),
    ("seed-str", lambda: _d(X, 0.5, 2, seed="7"), T, r"\bseed\b"),
    ("seed-bool", lambda: _d(X, 0.5, 2, seed=True), T, r"\bseed\b"),
    ("seed-np-float", lambda: _d(X, 0.5, 2, seed=np.float64(3)), T, r"\bseed\b"),
    ("seed-legacy-random-state", lambda: _d(X, 0.5, 2, seed=np.random.RandomState(0)), T, r"\bseed\b"),
    ("seed-negative", lambda: _d(X, 0.5, 2, seed=-1), E, r"\bseed\b"),
    ("seed-too-big", lambda: _d(X, 0.5, 2, seed=2**64), E, r"\bseed\b"),
    ("seed-backward-float", lambda: _db(GO, X, 0.5, 2, seed=2.0), T, r"\bseed\b"),
    ("seed-backward-negative", lambda: _db(GO, X, 0.5, 2, seed=-1), E, r"\bseed\b"),
    ("seed-backward-too-big", lambda: _db(GO, X, 0.5, 2, seed=2**64), E, r"\bseed\b"),
    # inference takes neither seed nor return_indices
    ("return-indices-inference", lambda: _d(X, 0.5, 2, training=False, return_indices=True), E,
     r"\breturn_indices\b"),
    ("seed-inference", lambda: _d(X, 0.5, 2, training=False, seed=0), E, r"\bseed\b"),
    ("generator-inference", lambda: _d(X, 0.5, 2, training=False, seed=np.random.default_rng(0)), E, r"\bseed\b"),
    ("seed-backward-inference", lambda: _db(GO, X, 0.5, 2, training=False, seed=1), E, r"\bseed\b"),
    # the training backward needs exactly one of indices and seed, an int seed
    ("backward-neither", lambda: _db(GO, X, 0.5, 2), E, _all("indices", "seed")),
    ("backward-both", lambda: _db(GO, X, 0.5, 2, indices=IDX, seed=1), E, _all("indices", "seed")),
    ("backward-generator", lambda: _db(GO, X, 0.5, 2, seed=np.random.default_rng(1)), T, r"\bseed\b|Generator"),
    # indices
    ("indices-int32", lambda: _db(GO, X, 0.5, 2, indices=IDX.astype(np.int32)), T, _all("indices", "int32")),
    ("indices-float", lambda: _db(GO, X, 0.5, 2, indices=IDX.astype(np.float32)), T, "indices"),
    ("indices-shape", lambda: _db(GO, X, 0.5, 2, indices=np.zeros((1, 2, 3, 3), np.int64)), E,
     _all("indices", "shape")),
    ("indices-unbatched", lambda: _db(GO, X, 0.5, 2, indices=IDX[0]), E, "indices"),
    ("indices-out-of-plane", lambda: _db(GO, X, 0.5, 2, indices=np.full(IDX.shape, 30, np.int64)), E,
     _all("indices", "30")),
    ("indices-one-out-of-plane", lambda: _db(GO, X, 0.5, 2, indices=_idx_with(30, (0, 1, 1, 2))), E, "indices"),
    ("indices-minus-two", lambda: _db(GO, X, 0.5, 2, indices=_idx_with(-2, (0, 1, 1, 2))), E, _all("indices", "-2")),
    ("indices-very-negative", lambda: _db(GO, X, 0.5, 2, indices=_idx_with(-2**62, (0, 0, 0, 0))), E, "indices"),
    ("indices-huge", lambda: _db(GO, X, 0.5, 2, indices=_idx_with(2**62, (0, 0, 1, 0))), E, "indices"),
    # training / return_indices
    ("training-str", lambda: _d(X, 0.5, 2, training="False", seed=1), T, "training"),
    ("return-indices-int", lambda: _d(X, 0.5, 2, return_indices=1, seed=1), T, "return_indices"),
    # grad_output
    ("grad-shape", lambda: _db(np.ones((1, 2, 3, 3), np.float32), X, 0.5, 2, seed=1), E, "grad_output"),
    ("grad-shape-indices", lambda: _db(np.ones((1, 2, 3, 3), np.float32), X, 0.5, 2, indices=IDX), E,
     "grad_output"),
    ("grad-shape-inference", lambda: _db(np.ones((1, 2, 3, 3), np.float32), X, 0.5, 2, training=False), E,
     "grad_output"),
    ("grad-unbatched", lambda: _db(GO[0], X, 0.5, 2, seed=1), E, "grad_output"),
    ("grad-dtype", lambda: _db(GO.astype(np.float64), X, 0.5, 2, seed=1), T, "grad_output"),
    ("grad-dtype-indices", lambda: _db(GO.astype(np.float64), X, 0.5, 2, indices=IDX), T, "grad_output"),
    ("grad-dtype-inference", lambda: _db(GO.astype(np.float64), X, 0.5, 2, training=False), T, "grad_output"),
    ("grad-int", lambda: _db(GO.astype(np.int32), X, 0.5, 2, seed=1), T, "grad_output"),
    # x and geometry
    ("x-object", lambda: _d(object(), 0.5, 2, seed=1), T, r"\bx\b"),
    ("x-int32", lambda: _d(X.astype(np.int32), 0.5, 2, seed=1), T, r"\bx\b"),
    ("x-float16", lambda: _d(X.astype(np.float16), 0.5, 2, training=False), T, r"\bx\b"),
    ("x-int-backward", lambda: _db(GO, X.astype(np.int64), 0.5, 2, seed=1), T, r"\bx\b"),
    ("x-ndim-low", lambda: _d(X[0, 0], 0.5, (2, 2), seed=1), E, r"\bx\b"),
    ("x-ndim-high", lambda: fp("max_pool_dropout1d")(X, 0.5, 2, seed=1), E, r"\bx\b"),
    ("kernel-zero", lambda: _d(X, 0.5, 0, seed=1), E, "kernel_size"),
    ("kernel-float", lambda: _d(X, 0.5, 2.5, seed=1), T, "kernel_size"),
    ("kernel-length", lambda: fp("max_pool_dropout2d")(X, 0.5, (2, 2, 2), seed=1), E, "kernel_size"),
    ("kernel-too-big", lambda: _d(X, 0.5, (7, 7), seed=1), E, "kernel_size"),
    ("stride-zero", lambda: _d(X, 0.5, 2, 0, seed=1), E, "stride"),
    ("padding-negative", lambda: _d(X, 0.5, 2, 1, -1, seed=1), E, "padding"),
    ("padding-string", lambda: _d(X, 0.5, 2, 1, "full", seed=1), E, "padding"),
    ("dilation-zero", lambda: _d(X, 0.5, 2, 1, 0, 0, seed=1), E, "dilation"),
    ("layout-bad", lambda: _d(X, 0.5, 2, seed=1, layout="NHWC"), E, "layout"),
    ("layout-bad-backward", lambda: _db(GO, X, 0.5, 2, seed=1, layout="cl"), E, "layout"),
    ("geometry-backward-inference", lambda: _db(GO, X, 0.5, 2, 0, training=False), E, "stride"),
    # out
    ("out-shape", lambda: _d(X, 0.5, 2, seed=1, out=np.zeros((1, 2, 3, 3), np.float32)), E, r"\bout\b"),
    ("out-dtype", lambda: _d(X, 0.5, 2, seed=1, out=np.zeros(GO.shape, np.float64)), T, r"\bout\b"),
    ("out-shape-inference", lambda: _d(X, 0.5, 2, training=False, out=np.zeros((1, 2, 3, 3), np.float32)), E,
     r"\bout\b"),
    ("out-dtype-inference", lambda: _d(X, 0.5, 2, training=False, out=np.zeros(GO.shape, np.float64)), T,
     r"\bout\b"),
    ("out-read-only", lambda: _d(X, 0.5, 2, training=False, out=_read_only(GO.shape)), E, r"\bout\b"),
    ("out-non-contiguous", lambda: _d(X, 0.5, 2, seed=1, out=np.zeros((1, 2, 2, 6), np.float32)[..., ::2]), E,
     r"\bout\b"),
    ("out-shape-backward", lambda: _db(GO, X, 0.5, 2, indices=IDX, out=np.zeros(GO.shape, np.float32)), E,
     r"\bout\b"),
    ("out-dtype-backward", lambda: _db(GO, X, 0.5, 2, seed=1, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-shape-backward-inference", lambda: _db(GO, X, 0.5, 2, training=False, out=np.zeros(GO.shape, np.float32)),
     E, r"\bout\b"),
    ("out-read-only-backward", lambda: _db(GO, X, 0.5, 2, indices=IDX, out=_read_only(X.shape)), E, r"\bout\b"),
]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_minus_one_indices_are_accepted():
    """-1 (a dropped winner) is the one negative index the backward takes: it routes
    nothing; the other entries route as usual."""
    idx = _idx_with(-1, (0, 1, 1, 2))
    idx[0, 0, 0, 0] = 7
    gx = _db(GO * 2, X, 0.5, 2, indices=idx)
    want = np.zeros_like(X)
    want[0, 0].reshape(-1)[7] += 2
    want[0, 0].reshape(-1)[0] += 2 * 5
    want[0, 1].reshape(-1)[0] += 2 * 5
    np.testing.assert_array_equal(gx, want)


def test_reference_checks_rate_and_seed():
    for bad in (True, "0.5", None):
        with pytest.raises(TypeError):
            dref.max_pool_dropout(X, bad, 2, seed=1)
    for bad in (NAN, -0.1, 1.5):
        with pytest.raises(ValueError):
            dref.max_pool_dropout(X, bad, 2, seed=1)
    with pytest.raises(ValueError):
        dref.max_pool_dropout_backward(GO, X, 0.5, 2)
    with pytest.raises(ValueError):
        dref.max_pool_dropout_backward(GO, X, 0.5, 2, indices=_idx_with(-2, (0, 0, 0, 0)))


def test_errors_leave_out_untouched():
    """Argument errors found before the kernel runs leave out as it was. (An index outside
    the plane is found during the scatter, as in max_pool_backward, so out is not checked
    there.)"""
    out = np.full(GO.shape, 7.0, np.float32)
    with pytest.raises(TypeError):
        fp("max_pool_dropout")(X.astype(np.int32), 0.5, 2, seed=1, out=out)
    with pytest.raises(ValueError):
        fp("max_pool_dropout")(X, 1.5, 2, seed=1, out=out)
    with pytest.raises(TypeError):
        fp("max_pool_dropout")(X, 0.5, 2, seed=1.5, out=out)
    with pytest.raises(ValueError):
        fp("max_pool_dropout")(X, 0.5, 2, training=False, seed=1, out=out)
    np.testing.assert_array_equal(out, 7.0)
    gout = np.full(X.shape, 7.0, np.float32)
    with pytest.raises(ValueError):
        fp("max_pool_dropout_backward")(GO, X, 0.5, 2, out=gout)
    with pytest.raises(TypeError):
        fp("max_pool_dropout_backward")(GO, X, 0.5, 2, indices=IDX.astype(np.int32), out=gout)
    np.testing.assert_array_equal(gout, 7.0)


# --------------------------------------------------------------------------- torch


@pytest.mark.parametrize("kind", ["relu", "normal"])
@pytest.mark.parametrize("case", params(WINDOW_TORCH_CASES))
def test_training_matches_torch_max_pool_of_the_masked_input(case, kind):
    """torch's max_pool{1,2,3}d (return_indices) of torch.where(dropped, 0, x) with the
    reference's mask: the same values bitwise, the same indices where the winner is kept
    (where it was dropped torch's index is a dropped element); autograd through
    torch.where and max_pool equals the backward from the seed."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    geom = case.geom
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[geom.rank]
    cl = case.layout == "channels_last"
    kw = case.max_kwargs()
    x, g = case_data(case, kind, "torch"), case.grad()
    rate, seed = (0.5, 31) if kind == "relu" else (0.3, 2**64 - 31)
    drop = dref.dropped_mask(x.shape, seed, rate, geom.rank, case.layout)

    def ncs(a):
        return np.ascontiguousarray(np.moveaxis(a, -1, 1)) if cl else a

    leaf = torch.from_numpy(ncs(x).copy()).requires_grad_(True)
    masked = torch.where(torch.from_numpy(ncs(drop)), torch.zeros((), dtype=leaf.dtype), leaf)
    k = geom.kernel_size
    s = geom.stride if geom.stride is not None else k
    yt, it = pool(masked, k, s, geom.padding, ceil_mode=geom.ceil_mode, return_indices=True)
    yt.backward(torch.from_numpy(ncs(g).copy()))
    y_t = yt.detach().numpy()
    i_t = it.numpy()
    gx_t = leaf.grad.numpy()
    if cl:
        y_t, i_t, gx_t = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (y_t, i_t, gx_t))
    y, idx = fp("max_pool_dropout")(x, rate, seed=seed, return_indices=True, **kw)
    assert_bitwise_equal(y, y_t, "values vs torch")
    kept = idx >= 0
    assert kept.any()
    np.testing.assert_array_equal(idx[kept], i_t[kept])
    plane_drop = ncs(drop).reshape(*ncs(drop).shape[:2], -1)
    i_ncs = ncs(i_t).reshape(*plane_drop.shape[:2], -1)
    torch_winner_dropped = np.take_along_axis(plane_drop, i_ncs, axis=-1).reshape(ncs(i_t).shape)
    np.testing.assert_array_equal(ncs(~kept), torch_winner_dropped)
    gx = fp("max_pool_dropout_backward")(g, x, rate, seed=seed, **kw)
    assert_bitwise_equal(gx, np.ascontiguousarray(gx_t), "backward vs torch autograd")
