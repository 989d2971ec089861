"""Fractional max pooling (Graham 2014) with PyTorch's intervals, 2D and 3D, forward and backward.

Each plane (n, c) has one sample u in [0, 1) per axis (PyTorch's order: 2D (W, H), 3D
(D, H, W)); along an axis of input I, output O, kernel k the window of output i < O - 1
starts at int((i + u) * alpha) - int(u * alpha), alpha = (I - k) / (O - 1) in x's dtype,
the last at I - k. y is the window's first maximum (row-major taps; NaN propagates, the
last NaN), the index its flat spatial position; the backward adds grad_output there.

* Hand-checked examples: expected arrays worked out by reasoning from that rule (run on
  fastpool and on the reference, tests/fractional_reference.py, so they also check the
  reference): the docstring's 5x5 example, samples 0, 1/4, 1/2 and nextafter(1, 0) on
  both axes of a 2D plane and the three of a 3D one (so the sample order shows), a
  start that differs between float32 and float64 arithmetic, NaN windows (the last
  NaN, NaN payloads kept), ties and signed zeros (the first maximum), -inf windows,
  the backward accumulating where overlapping windows share their maximum (from the
  indices, the samples and an int seed), output_ratio's truncation, the 3D equality
  case PyTorch refuses.
* The interval rule: starts read back from the indices of an increasing input (the
  maximum is the window's last tap) over every (I, k, O) up to I = 22 in float32 and
  float64, per axis of 2D and 3D calls, with u = 0, nextafter(1, 0), float32(j / 10)
  and values at the thresholds where (i + u) * alpha crosses an integer (float32
  rounding matters there: some of these starts differ from float64 arithmetic); long
  axes (I up to 70001); O = 1, O = I - k + 1 (where u = nextafter(1, 0) makes the last
  two windows coincide), k = 1, k = I.
* A grid (2D and 3D, both layouts, both dtypes, batched and unbatched, O = 1,
  O = I - k + 1, k = 1, k = I, output_ratio forms) on normal data, ties and signed
  zeros, NaN with distinct payloads, +-inf: values bitwise and indices exactly equal to
  the reference, through the generic and fixed-rank forms; backwards from the indices,
  the samples and an int seed all equal to the reference scatter. A subset on every
  SIMD path x threads 1 and 2; larger inputs bitwise identical on every SIMD path x
  threads 1, 2, 3.
* PyTorch (skipped without torch): values, indices and autograd gradients bitwise
  equal given the same _random_samples, random 2D and 3D cases, both dtypes, batched
  and unbatched, output_ratio, channels_last (via transposes, and torch's own
  channels_last memory format), the interval sweep.
* Seeds (int, numpy int, Generator, None), out=, non-contiguous inputs, inputs left
  unchanged, list input, doctests; argument errors with their messages.
"""

from __future__ import annotations

import copy
import doctest
import importlib
import itertools
import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

import fractional_reference as fref
from bin_cases import BinCase, cycled
from pool_cases import (
    DTYPES,
    IMPLS,
    SHORT,
    assert_bitwise_equal,
    assert_close,
    assert_unchanged,
    cached,
    fp,
    identical_on_every_backend,
    make_data,
    params,
    snapshot,
    transposed_memory,
    views,
)

INF, NAN = np.inf, np.nan
F32_TENTHS = tuple(float(np.float32(j / 10)) for j in range(1, 10))  # exact in float32 (and float64)


def below_one(dtype: Any) -> float:
    """The largest sample below 1 in ``dtype``, as a float (exact in float64)."""
    return float(np.nextafter(np.dtype(dtype).type(1), np.dtype(dtype).type(0)))


def assert_exact(actual: Any, expected: np.ndarray, what: str = "") -> None:
    """An ndarray of expected's dtype and shape, C-contiguous, bitwise equal (NaN
    payloads and signs of zero included; for indices: exactly equal)."""
    assert isinstance(actual, np.ndarray), (what, type(actual))
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
        (what, actual.dtype, expected.dtype, actual.shape, expected.shape)
    assert actual.flags.c_contiguous, what
    assert_bitwise_equal(actual, expected, what)


def nan_with_payload(dtype: Any, payload: int, negative: bool = False) -> Any:
    """A quiet NaN of ``dtype`` carrying ``payload`` in its low mantissa bits."""
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        bits = np.uint32(0x7FC00000 | (payload & 0x3FFFFF) | (0x80000000 if negative else 0))
        return np.array([bits], np.uint32).view(np.float32)[0]
    bits = np.uint64(0x7FF8000000000000 | (payload & 0xFFFFFFFFFFFF) | ((1 << 63) if negative else 0))
    return np.array([bits], np.uint64).view(np.float64)[0]


def frac_data(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    """Input data of a kind.

    normal   standard normal: no ties.
    ints     multiples of 1/4 in [-1, 1], zeros of both signs: many ties.
    nans     normal with 40% NaNs, each with its own payload (and some with the sign
             bit): the returned value's bits tell which NaN a window took.
    special  normal with NaN, +inf and -inf (about 8% each).
    infs     mostly -inf, some +inf, 0 and -1: windows of -inf only.
    """
    dtype = np.dtype(dtype)
    if kind in ("normal", "ints", "special"):
        return make_data(rng, shape, dtype, kind)
    if kind == "nans":
        x = rng.standard_normal(shape).astype(dtype)
        words = x.reshape(-1).view(f"u{dtype.itemsize}")
        where = np.flatnonzero(rng.random(words.size) < 0.4)
        j = np.arange(1, where.size + 1, dtype=words.dtype)
        if dtype == np.float32:
            nan = np.uint32(0x7FC00000) | (j & np.uint32(0x3FFFFF)) | np.where(j % 3 == 1, np.uint32(1 << 31), 0)
        else:
            nan = np.uint64(0x7FF8000000000000) | j | np.where(j % 3 == 1, np.uint64(1 << 63), np.uint64(0))
        words[where] = nan.astype(words.dtype)
        assert np.isnan(x).sum() == where.size
        return x
    if kind == "infs":
        return rng.choice(np.array([-INF, -INF, -INF, -INF, -INF, -INF, INF, 0.0, -1.0], dtype), size=shape)
    raise ValueError(kind)


# --------------------------------------------------------------------------- hand-checked

def pool(which: str):
    """pool(x, kernel (tuple), output_size=..., random_samples=..., ...) -> (y, indices)."""
    if which == "fastpool":
        return lambda x, k, **kw: fp("fractional_max_pool")(x, k, return_indices=True, **kw)
    return lambda x, k, **kw: fref.fractional_max_pool(x, k, **kw)


def pool_backward(which: str):
    """pool_backward(g, x, kernel (tuple), indices=... | random_samples=... | seed=..., layout=...)."""
    if which == "fastpool":
        return lambda g, x, k, **kw: fp("fractional_max_pool_backward")(g, x, k, **kw)

    def ref(g, x, k, indices=None, random_samples=None, seed=None, layout="channels_first"):
        if indices is not None:
            return fref.fractional_max_pool_backward(g, np.shape(x), indices, len(k), layout)
        return fref.fractional_max_pool_backward_from_samples(g, x, k, random_samples, seed, layout)
    return ref


def _a(values, dtype=np.float64) -> np.ndarray:
    return np.array(values, dtype)


def _i(values) -> np.ndarray:
    return np.array(values, np.int64)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_docstring_example_by_hand(which, dtype):
    # 5 x 5 arange, k = 2, output 3: alpha = (5 - 2) / 2 = 1.5; u = 0: starts int(0) = 0,
    # int(1.5) = 1, and the last 5 - 2 = 3 on both axes. An increasing input has its
    # window maximum at the last tap, (start + 1) per axis: rows / columns 1, 2, 4.
    x = np.arange(25, dtype=dtype).reshape(1, 1, 5, 5)
    y, idx = pool(which)(x, (2, 2), output_size=3, random_samples=np.zeros((1, 1, 2)))
    expected = [[6, 7, 9], [11, 12, 14], [21, 22, 24]]
    assert_exact(y, _a([[expected]], dtype), "values")
    assert_exact(idx, _i([[expected]]), "indices")
    # u = 1/2 on H only (samples are (W, H)): int(0.75) = 0, int(1.5 * 1.5) - 0 = 2, last
    # 3: rows 1, 3, 4; W keeps u = 0: columns 1, 2, 4
    y, idx = pool(which)(x, (2, 2), output_size=(3, 3), random_samples=[[[0.0, 0.5]]])
    expected = [[6, 7, 9], [16, 17, 19], [21, 22, 24]]
    assert_exact(y, _a([[expected]], dtype), "u_H = 1/2")
    assert_exact(idx, _i([[expected]]), "u_H = 1/2 indices")
    # the backward: a 1 at each maximum (the docstring's second example)
    g = pool_backward(which)(np.ones((1, 1, 3, 3), dtype), x, (2, 2), random_samples=np.zeros((1, 1, 2)))
    e = np.zeros((5, 5))
    for r, c in itertools.product((1, 2, 4), (1, 2, 4)):
        e[r, c] = 1
    assert_exact(g, e[None, None].astype(dtype), "backward")


# A 5 x 7 plane of arange(35) (H = 5, W = 7), k = 2, output (3, 4). H: alpha = 3 / 2;
# W: alpha = 5 / 3. Starts by u (the maximum is at start + 1 on each axis):
#   H, u = 0:    0, int(1.5) = 1, 3                             -> rows 1, 2, 4
#   H, u = 1/2:  int(.75) = 0; int(2.25) - 0 = 2; 3              -> rows 1, 3, 4
#   W, u = 0:    0, int(5/3) = 1, int(10/3) = 3, 5               -> cols 1, 2, 4, 6
#   W, u = 1/4:  int(5/12) = 0; int(1.25 * 5/3 = 2.08) = 2; int(2.25 * 5/3 = 3.75) = 3; 5
#                                                                -> cols 1, 3, 4, 6
#   W, u = nextafter(1, 0): int(u * 5/3 = 1.67) = 1; 1 + u rounds to 2 (the exact sum
#                lies halfway between the two largest values below 2 and 2, the even
#                one is 2), 2 * 5/3 = 3.33 -> 3 - 1 = 2; 2 + u rounds to 3, 3 * fl(5/3)
#                rounds to 5 in float32 (4.99999988 -> 5) and float64 (5 + 2e-16 -> 5):
#                5 - 1 = 4; 5                                    -> cols 1, 3, 5, 6
# y = x[row, col] = 7 * row + col.
PLANE_5x7 = {
    # (u_W, u_H): expected values = indices
    "u=(0,0)": ((0.0, 0.0), [[8, 9, 11, 13], [15, 16, 18, 20], [29, 30, 32, 34]]),
    "u=(1/4,1/2)": ((0.25, 0.5), [[8, 10, 11, 13], [22, 24, 25, 27], [29, 31, 32, 34]]),
    "u=(1-,0)": (None, [[8, 10, 12, 13], [15, 17, 19, 20], [29, 31, 33, 34]]),
}


def _plane_5x7_samples(dtype) -> Tuple[np.ndarray, np.ndarray]:
    """(1, 3, 2) samples of the three planes, and their expected (1, 3, 3, 4) values."""
    s, e = [], []
    for label, (u, values) in PLANE_5x7.items():
        s.append(u if u is not None else (below_one(dtype), 0.0))
        e.append(values)
    return np.array([s]), np.array([e])


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_2d_samples_per_plane_and_axis_by_hand(which, dtype):
    """Three channels, each with its own (u_W, u_H): the sample order and the planes'
    independence show; channels_last and unbatched give the same."""
    samples, e = _plane_5x7_samples(dtype)
    x = np.broadcast_to(np.arange(35, dtype=dtype).reshape(5, 7), (1, 3, 5, 7)).copy()
    f = pool(which)
    y, idx = f(x, (2, 2), output_size=(3, 4), random_samples=samples)
    assert_exact(y, e.astype(dtype), "values")
    assert_exact(idx, e.astype(np.int64), "indices")
    # unbatched (C, H, W): samples (C, 2) or (1, C, 2)
    for s in (samples[0], samples):
        y, idx = f(x[0], (2, 2), output_size=(3, 4), random_samples=s)
        assert_exact(y, e[0].astype(dtype), "unbatched")
        assert_exact(idx, e[0].astype(np.int64), "unbatched indices")
    # channels_last (N, H, W, C) and (H, W, C)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    el = np.ascontiguousarray(np.moveaxis(e, 1, -1))
    y, idx = f(xl, (2, 2), output_size=(3, 4), random_samples=samples, layout="channels_last")
    assert_exact(y, el.astype(dtype), "channels_last")
    assert_exact(idx, el.astype(np.int64), "channels_last indices")
    y, idx = f(xl[0], (2, 2), output_size=(3, 4), random_samples=samples[0], layout="channels_last")
    assert_exact(y, el[0].astype(dtype), "channels_last unbatched")
    # two samples of a batch: the second sample's planes use samples[1]
    x2 = np.concatenate([x, x + 100])
    s2 = np.concatenate([samples, samples[:, ::-1]])
    y, idx = f(x2, (2, 2), output_size=(3, 4), random_samples=s2)
    assert_exact(idx, np.concatenate([e, e[:, ::-1]]).astype(np.int64), "batch of 2 indices")
    assert_exact(y, np.concatenate([e, e[:, ::-1] + 100]).astype(dtype), "batch of 2 values")


@pytest.mark.parametrize("which", IMPLS)
def test_arithmetic_in_x_dtype_by_hand(which):
    """W = 7, k = 2, output 4 (alpha = 5/3), u = float32(0.8) = 0.800000011920929 (the
    same number in both dtypes). Output 1 starts at int((1 + u) * alpha) - int(u * alpha):
    u * alpha = 1.33 -> 1 in both. float32: 1 + u is exactly halfway between the float32
    neighbours 1.79999995 and 1.80000007, ties to even give 1.79999995, times
    fl32(5/3) = 1.66666663 is 2.99999985 -> 2: start 1. float64: 1.800000011920929 *
    1.6666666666666667 = 3.00000002 -> 3: start 2. Output 2: (2.8) * 5/3 = 4.67 -> 4,
    start 3 in both; the last 5. Columns (start + 1): float32 1, 2, 4, 6; float64 1, 3, 4, 6."""
    u = float(np.float32(0.8))
    assert u == 0.800000011920929
    for dtype, cols in ((np.float32, [1, 2, 4, 6]), (np.float64, [1, 3, 4, 6])):
        x = np.arange(7, dtype=dtype).reshape(1, 1, 1, 7)
        y, idx = pool(which)(x, (1, 2), output_size=(1, 4), random_samples=[[[u, 0.0]]])
        assert_exact(idx, _i([[[cols]]]), str(dtype))
        assert_exact(y, _a([[[cols]]], dtype), str(dtype))


def _window_3x3(values, dtype):
    """(1, 1, 3, 3) plane; with k = 2 and output 2, alpha = 1 and the starts are 0, 1 on
    both axes whatever u: windows TL {0, 1, 3, 4}, TR {1, 2, 4, 5}, BL {3, 4, 6, 7},
    BR {4, 5, 7, 8} (flat positions)."""
    return np.array(values, dtype).reshape(1, 1, 3, 3)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_nan_windows_by_hand(which, dtype):
    n1, n2, n3 = (nan_with_payload(dtype, p, negative=(p == 2)) for p in (1, 2, 3))
    bits = np.array([n1, n2, n3], dtype).view(f"u{np.dtype(dtype).itemsize}")
    assert len(set(bits.tolist())) == 3  # three distinguishable NaNs
    f = pool(which)
    u = [[[0.3, 0.9]]]
    # [[n1, 1, 2], [n2, 0, 5], [3, 4, -1]]: TL (n1, 1, n2, 0): the last NaN, n2 at 3;
    # TR (1, 2, 0, 5): 5 at 5; BL (n2, 0, 3, 4): n2 at 3 (a NaN is never replaced by a
    # number); BR (0, 5, 4, -1): 5 at 5
    x = _window_3x3([n1, 1, 2, n2, 0, 5, 3, 4, -1], dtype)
    y, idx = f(x, (2, 2), output_size=2, random_samples=u)
    assert_exact(idx, _i([[[[3, 5], [3, 5]]]]), "indices")
    assert_exact(y, np.array([[[[n2, 5], [n2, 5]]]], dtype), "values (n2's payload and sign)")
    # [[7, n1, 1], [n2, 8, n3], [0, 9, 0]]: TL (7, n1, n2, 8) -> n2 at 3; TR (n1, 1, 8, n3)
    # -> n3 at 5; BL (n2, 8, 0, 9) -> n2 at 3; BR (8, n3, 9, 0) -> n3 at 5
    x = _window_3x3([7, n1, 1, n2, 8, n3, 0, 9, 0], dtype)
    y, idx = f(x, (2, 2), output_size=2, random_samples=u)
    assert_exact(idx, _i([[[[3, 5], [3, 5]]]]), "indices 2")
    assert_exact(y, np.array([[[[n2, n3], [n2, n3]]]], dtype), "values 2")
    # NaN next to +inf and -inf: [[inf, n1, -inf], [-inf, -inf, -inf], [1, 2, 3]]: TL -> n1
    # at 1, TR -> n1 at 1, BL (-inf, -inf, 1, 2) -> 2 at 7, BR (-inf, -inf, 2, 3) -> 3 at 8
    x = _window_3x3([INF, n1, -INF, -INF, -INF, -INF, 1, 2, 3], dtype)
    y, idx = f(x, (2, 2), output_size=2, random_samples=u)
    assert_exact(idx, _i([[[[1, 1], [7, 8]]]]), "indices 3")
    assert_exact(y, np.array([[[[n1, n1], [2, 3]]]], dtype), "values 3")


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_ties_signed_zeros_and_neg_inf_by_hand(which, dtype):
    f = pool(which)
    u = [[[0.6, 0.1]]]
    # ties: [[1, 3, 3], [3, 3, 2], [-0, 0, 3]]: the first maximum in row-major order:
    # TL (1, 3, 3, 3) -> 1; TR (3, 3, 3, 2) -> 1; BL (3, 3, -0, 0) -> 3; BR (3, 2, 0, 3) -> 4
    y, idx = f(_window_3x3([1, 3, 3, 3, 3, 2, -0.0, 0, 3], dtype), (2, 2), output_size=2, random_samples=u)
    assert_exact(idx, _i([[[[1, 1], [3, 4]]]]), "ties")
    assert_exact(y, _a([[[[3, 3], [3, 3]]]], dtype), "ties values")
    # zeros of both signs [[-0, 0, -0], [0, -0, 0], [-0, -0, 0]]: every window keeps its
    # first tap: TL -0 at 0, TR +0 at 1, BL +0 at 3, BR -0 at 4
    y, idx = f(_window_3x3([-0.0, 0, -0.0, 0, -0.0, 0, -0.0, -0.0, 0], dtype), (2, 2), output_size=2,
               random_samples=u)
    assert_exact(idx, _i([[[[0, 1], [3, 4]]]]), "zeros")
    assert_exact(y, _a([[[[-0.0, 0.0], [0.0, -0.0]]]], dtype), "signed zeros")
    # -inf everywhere: -inf at each window's first tap
    y, idx = f(_window_3x3([-INF] * 9, dtype), (2, 2), output_size=2, random_samples=u)
    assert_exact(idx, _i([[[[0, 1], [3, 4]]]]), "-inf")
    assert_exact(y, _a([[[[-INF, -INF], [-INF, -INF]]]], dtype), "-inf values")
    # -inf but one finite value at 5 (in TR and BR), +inf at 6 (BL only)
    y, idx = f(_window_3x3([-INF, -INF, -INF, -INF, -INF, -5, INF, -INF, -INF], dtype), (2, 2), output_size=2,
               random_samples=u)
    assert_exact(idx, _i([[[[0, 5], [6, 5]]]]), "-inf with others")
    assert_exact(y, _a([[[[-INF, -5], [INF, -5]]]], dtype), "-inf with others values")


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_backward_accumulates_by_hand(which, dtype):
    """Overlapping windows sharing a maximum: its position gets the sum of their
    gradients; from the indices, from the samples and from an int seed (the 3 x 3, k 2,
    output 2 windows do not depend on u)."""
    fb = pool_backward(which)
    g = _a([[[[1, 2], [4, 8]]]], dtype)
    # a peak in the middle: all four windows -> 1 + 2 + 4 + 8 = 15 at (1, 1)
    x = _window_3x3([0, 1, 0, 1, 9, 1, 0, 1, 0], dtype)
    e = _a([[[[0, 0, 0], [0, 15, 0], [0, 0, 0]]]], dtype)
    _, idx = pool(which)(x, (2, 2), output_size=2, random_samples=[[[0.5, 0.5]]])
    assert_exact(idx, _i([[[[4, 4], [4, 4]]]]), "indices")
    for kw in (dict(indices=idx), dict(random_samples=[[[0.5, 0.5]]]), dict(seed=12345)):
        assert_exact(fb(g, x, (2, 2), **kw), e, f"peak {sorted(kw)}")
    # all equal: first taps 0, 1, 3, 4
    x = _window_3x3([5] * 9, dtype)
    e = _a([[[[1, 2, 0], [4, 8, 0], [0, 0, 0]]]], dtype)
    for kw in (dict(indices=_i([[[[0, 1], [3, 4]]]])), dict(random_samples=[[[0.0, 0.0]]]), dict(seed=0)):
        assert_exact(fb(g, x, (2, 2), **kw), e, f"ties {sorted(kw)}")
    # 4 x 5 arange, k 2, output (3, 2): H starts 0, 1, 2 (alpha 1); W: alpha 3, u = 1/2:
    # int(1.5) - int(1.5) = 0, and the last 3. The maxima are the windows' last taps, rows
    # 1, 2, 3 x cols 1, 4, all different: each gets its own gradient. Then a 100 at (2, 1),
    # in the windows of output rows 1 (rows 1-2) and 2 (rows 2-3), output column 0
    # (cols 0-1): the maximum of both, which gets 4 + 16, and (3, 1) none.
    x = np.arange(20, dtype=dtype).reshape(1, 1, 4, 5)
    g2 = _a([[[[1, 2], [4, 8], [16, 32]]]], dtype)
    e = np.zeros((4, 5))
    e[1, 1], e[1, 4], e[2, 1], e[2, 4], e[3, 1], e[3, 4] = 1, 2, 4, 8, 16, 32
    assert_exact(fb(g2, x, (2, 2), random_samples=[[[0.5, 0.0]]]), e[None, None].astype(dtype), "arange")
    x = x.copy()
    x[0, 0, 2, 1] = 100
    e = np.zeros((4, 5))
    e[1, 1], e[1, 4], e[2, 1], e[2, 4], e[3, 4] = 1, 2, 4 + 16, 8, 32
    assert_exact(fb(g2, x, (2, 2), random_samples=[[[0.5, 0.0]]]), e[None, None].astype(dtype), "shared")
    # channels_last, unbatched (H, W, C): the same per channel
    xl = np.stack([x[0, 0], x[0, 0]], -1)
    gl = np.stack([g2[0, 0], 2 * g2[0, 0]], -1)
    got = fb(gl, xl, (2, 2), random_samples=[[0.5, 0.0], [0.5, 0.0]], layout="channels_last")
    assert_exact(got, np.stack([e, 2 * e], -1).astype(dtype), "channels_last")


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_3d_by_hand(which, dtype):
    """x = arange over (D, H, W) = (5, 3, 7), k = 2, output (3, 2, 4): the maximum is at
    (d + 1, h + 1, w + 1) of the start, value 21 (d + 1) + 7 (h + 1) + (w + 1). Samples
    (u_D, u_H, u_W); D as the 5-wide axis above (alpha 3/2), H: alpha 1 (starts 0, 1),
    W as the 7-wide one (alpha 5/3).
      plane 0: (0, 0.9, 0.5): D 0, 1, 3; W: int(5/6) = 0, int(2.5) = 2, int(4.17) = 4, 5
      plane 1: (0.5, 0, 0):   D 0, 2, 3; W 0, 1, 3, 5"""
    x = np.broadcast_to(np.arange(105, dtype=dtype).reshape(5, 3, 7), (1, 2, 5, 3, 7)).copy()
    s = [[[0.0, 0.9, 0.5], [0.5, 0.0, 0.0]]]
    e0 = [[[29, 31, 33, 34], [36, 38, 40, 41]],
          [[50, 52, 54, 55], [57, 59, 61, 62]],
          [[92, 94, 96, 97], [99, 101, 103, 104]]]
    e1 = [[[29, 30, 32, 34], [36, 37, 39, 41]],
          [[71, 72, 74, 76], [78, 79, 81, 83]],
          [[92, 93, 95, 97], [99, 100, 102, 104]]]
    y, idx = pool(which)(x, (2, 2, 2), output_size=(3, 2, 4), random_samples=s)
    assert_exact(idx, _i([[e0, e1]]), "indices")
    assert_exact(y, _a([[e0, e1]], dtype), "values")
    # unbatched channels_last (D, H, W, C)
    y, idx = pool(which)(np.ascontiguousarray(np.moveaxis(x[0], 0, -1)), (2, 2, 2), output_size=(3, 2, 4),
                         random_samples=s[0], layout="channels_last")
    assert_exact(idx, np.ascontiguousarray(np.moveaxis(_i([e0, e1]), 0, -1)), "channels_last indices")
    # 3 x 3 x 3, k 2, output 2 (output + kernel - 1 == input, which PyTorch's 3D refuses):
    # starts 0, 1 everywhere: last taps (d + 1, h + 1, w + 1), value 9 d' + 3 h' + w'
    x = np.arange(27, dtype=dtype).reshape(1, 1, 3, 3, 3)
    y, idx = pool(which)(x, (2, 2, 2), output_size=2, random_samples=[[[0.99, 0.5, 0.0]]])
    e = [[[13, 14], [16, 17]], [[22, 23], [25, 26]]]
    assert_exact(idx, _i([[e]]), "3x3x3 indices")
    assert_exact(y, _a([[e]], dtype), "3x3x3 values")
    # the backward: plane 0 of the first example with g = 1 .. 24 lands at the indices
    x = np.broadcast_to(np.arange(105, dtype=dtype).reshape(5, 3, 7), (1, 2, 5, 3, 7)).copy()
    g = np.arange(1, 49, dtype=dtype).reshape(1, 2, 3, 2, 4)
    e = np.zeros((1, 2, 105))
    for c, ec in enumerate((e0, e1)):
        e[0, c, np.array(ec).reshape(-1)] = np.arange(1, 25) + 24 * c
    got = pool_backward(which)(g, x, (2, 2, 2), random_samples=s)
    assert_exact(got, e.reshape(x.shape).astype(dtype), "3d backward")


@pytest.mark.parametrize("which", IMPLS)
def test_output_ratio_truncates_by_hand(which):
    """int(size * ratio) in Python floats: 100 * 0.29 = 28.999999999999996 -> 28 (not 29),
    5 * 0.5 = 2.5 -> 2, 7 * 0.75 = 5.25 -> 5."""
    x = np.zeros((1, 1, 100, 5, 7))
    y, idx = pool(which)(x, (2, 2, 2), output_ratio=(0.29, 0.5, 0.75), random_samples=[[[0.1, 0.2, 0.3]]])
    assert y.shape == idx.shape == (1, 1, 28, 2, 5)
    y, _ = pool(which)(np.zeros((1, 10, 5)), (1, 2), output_ratio=0.5, random_samples=[[[0.1, 0.2]]])
    assert y.shape == (1, 5, 2)  # unbatched (C, H, W) = (1, 10, 5)


def test_generic_rank_and_int_kernel():
    """fractional_max_pool takes its rank from len(kernel_size), or x.ndim - 2 for an int;
    the fixed-rank forms take an int kernel for either batching."""
    x = np.arange(2 * 3 * 25, dtype=np.float64).reshape(2, 3, 5, 5)
    s = np.random.default_rng(1).random((2, 3, 2))
    ey, ei = fref.fractional_max_pool(x, (2, 2), 3, random_samples=s)
    for y, idx in (fp("fractional_max_pool")(x, 2, 3, return_indices=True, random_samples=s),
                   fp("fractional_max_pool")(x, (2, 2), 3, return_indices=True, random_samples=s),
                   fp("fractional_max_pool2d")(x, 2, 3, return_indices=True, random_samples=s)):
        assert_exact(y, ey)
        assert_exact(idx, ei)
    g = np.arange(2 * 3 * 9, dtype=np.float64).reshape(2, 3, 3, 3)
    eg = fref.fractional_max_pool_backward(g, x.shape, ei, 2)
    assert_exact(fp("fractional_max_pool_backward")(g, x, 2, random_samples=s), eg)
    assert_exact(fp("fractional_max_pool_backward")(g, x, (2, 2), indices=ei), eg)
    assert_exact(fp("fractional_max_pool2d_backward")(g, x, 2, 3, random_samples=s), eg)
    # the same 4-dim array as an unbatched 3D input (C, D, H, W) with a 3-tuple
    s3 = np.random.default_rng(2).random((2, 3))
    ey, ei = fref.fractional_max_pool(x, (1, 2, 2), (2, 3, 3), random_samples=s3)
    assert_exact(fp("fractional_max_pool")(x, (1, 2, 2), (2, 3, 3), random_samples=s3), ey)
    assert_exact(fp("fractional_max_pool3d")(x, (1, 2, 2), (2, 3, 3), return_indices=True, random_samples=s3)[1],
                 ei)


# --------------------------------------------------------------------------- the reference itself


def _brute_2d(x: np.ndarray, k: Tuple[int, int], out: Tuple[int, int], s: np.ndarray):
    """(y, idx) of an (N, C, H, W) float64 array by Python floats: starts with exact
    rationals where they are exact (samples multiples of 1/8, alpha with denominator 1, 2
    or 4), the scan written again."""
    from fractions import Fraction
    n, c, H, W = x.shape
    y = np.empty((n, c) + out)
    idx = np.empty((n, c) + out, np.int64)

    def st(u, size, o, kk):
        if o == 1:
            return [size - kk]
        a = Fraction(size - kk, o - 1)
        u = Fraction(u)
        return [int((i + u) * a) - int(u * a) for i in range(o - 1)] + [size - kk]
    for b, ch in itertools.product(range(n), range(c)):
        rows, cols = st(s[b, ch, 1], H, out[0], k[0]), st(s[b, ch, 0], W, out[1], k[1])
        for i, j in itertools.product(range(out[0]), range(out[1])):
            best, at = None, None
            for r in range(rows[i], rows[i] + k[0]):
                for q in range(cols[j], cols[j] + k[1]):
                    v = float(x[b, ch, r, q])
                    if at is None or v > best or v != v:
                        best, at = v, r * W + q
            y[b, ch, i, j] = x.reshape(n, c, -1)[b, ch, at]
            idx[b, ch, i, j] = at
    return y, idx


@pytest.mark.parametrize("kind", ["normal", "ints", "nans", "infs"])
def test_reference_matches_brute_force(kind):
    """Sizes where alpha is exact ((I - k) / (O - 1) with O - 1 in {1, 2, 4}) and samples
    multiples of 1/8: float64 arithmetic is exact, so rational starts must agree."""
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    for (H, W), k, out in (((9, 7), (2, 3), (5, 3)), ((5, 6), (2, 2), (3, 2)), ((6, 9), (3, 2), (3, 5)),
                           ((4, 4), (1, 1), (2, 3))):
        shape = (2, 3, H, W)
        x = frac_data(rng, shape, np.float64, kind)
        s = rng.integers(0, 8, (2, 3, 2)) / 8
        ey, ei = _brute_2d(x, k, out, s)
        y, idx = fref.fractional_max_pool(x, k, out, random_samples=s)
        assert_exact(y, ey, f"{shape} {k} {out}")
        assert_exact(idx, ei, f"{shape} {k} {out}")


def test_reference_interval_examples():
    """The reference's starts on the hand-checked examples above."""
    assert fref.interval_starts(0.0, 5, 3, 2, np.float64) == [0, 1, 3]
    assert fref.interval_starts(0.5, 5, 3, 2, np.float32) == [0, 2, 3]
    assert fref.interval_starts(0.25, 7, 4, 2, np.float64) == [0, 2, 3, 5]
    for dt in DTYPES:
        assert fref.interval_starts(below_one(dt), 7, 4, 2, dt) == [0, 2, 4, 5]
        assert fref.interval_starts(0.3, 9, 1, 4, dt) == [5]
        assert fref.interval_starts(0.3, 9, 9, 1, dt) == list(range(9))
    assert fref.interval_starts(float(np.float32(0.8)), 7, 4, 2, np.float32) == [0, 1, 3, 5]
    assert fref.interval_starts(float(np.float32(0.8)), 7, 4, 2, np.float64) == [0, 2, 3, 5]


# --------------------------------------------------------------------------- the interval rule


@pytest.fixture
def torch_or_none():
    """torch on one intra-op thread (restored after), or None where it is not installed.
    (torch's OpenMP barriers spin: on a loaded 2-core machine each call can take ms.)"""
    try:
        import torch
    except ImportError:
        yield None
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(n)

INTERVAL_MAX_I = 22


def interval_combos(max_i: int = INTERVAL_MAX_I) -> List[Tuple[int, int, int]]:
    """Every (I, k, O) with 1 <= k <= min(I, 5) and 1 <= O <= I - k + 1."""
    return [(I, k, O) for I in range(1, max_i + 1) for k in range(1, min(I, 5) + 1) for O in range(1, I - k + 2)]


def interval_samples(I: int, k: int, O: int, dtype: Any) -> np.ndarray:
    """0, nextafter(1, 0), 1/2, 1/3, float32(j / 10), and samples at the thresholds where
    (i + u) * alpha or u * alpha crosses an integer (the nearest dtype values and their
    neighbours), a few random ones: at most 40."""
    dt = np.dtype(dtype).type
    us = [0.0, below_one(dtype), 0.5, 1 / 3, *F32_TENTHS]
    if O > 1:
        alpha = (I - k) / (O - 1)
        thresholds = []
        for i in range(O - 1):
            lo, hi = int(np.floor(i * alpha)), int(np.ceil((i + 1) * alpha))
            for m in range(lo, hi + 1):
                t = m / alpha - i if alpha > 0 else None
                if t is not None and 0 < t < 1:
                    thresholds.append(t)
        rng = np.random.default_rng(I * 1000 + k * 100 + O)
        if len(thresholds) > 8:
            thresholds = list(rng.choice(thresholds, 8, replace=False))
        for t in thresholds:
            c = dt(t)
            for v in (np.nextafter(c, dt(0)), c, np.nextafter(c, dt(1))):
                if 0 <= v < 1:
                    us.append(float(v))
        us.extend(float(v) for v in rng.random(3, dtype=np.dtype(dtype)))
    out = np.unique(np.array(us, np.float64).astype(dtype))
    assert ((out >= 0) & (out < 1)).all() and out.size <= 40
    return out


# (rank, axis in array order): where the pooled axis sits; the others have size 1
INTERVAL_AXES = [(2, 1), (2, 0), (3, 0), (3, 1), (3, 2)]


def _starts_from_fastpool(I: int, k: int, O: int, us: np.ndarray, dtype: Any, rank: int, axis: int) -> np.ndarray:
    """(C, O) starts read back from the indices of an increasing input along one axis."""
    C = us.size
    shape = [1] * rank
    shape[axis] = I
    x = np.broadcast_to(np.arange(I, dtype=dtype).reshape(shape), (1, C) + tuple(shape)).copy()
    kern, out = [1] * rank, [1] * rank
    kern[axis], out[axis] = k, O
    s = np.zeros((1, C, rank))
    s[0, :, fref.SAMPLE_AXIS[rank][axis]] = us
    _, idx = fp("fractional_max_pool")(x, tuple(kern), tuple(out), return_indices=True, random_samples=s)
    return idx.reshape(C, O) - (k - 1)  # the flat index along one axis is the position


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("rank,axis", [pytest.param(r, a, id=f"{r}d-axis{a}") for r, a in INTERVAL_AXES])
def test_interval_rule(rank, axis, dtype):
    """Starts = the reference's, computed in x's dtype, for every (I, k, O) up to
    I = 22 (the 2D W axis) or a third of them (other axes); first 0, last I - k,
    non-decreasing. The float32 run includes starts that float64 arithmetic gets wrong."""
    combos = interval_combos()
    if (rank, axis) != (2, 1):
        combos = combos[::3]
    differs_from_f64 = seen_near_one = 0
    for I, k, O in combos:
        us = interval_samples(I, k, O, dtype)
        got = _starts_from_fastpool(I, k, O, us, dtype, rank, axis)
        for u, row in zip(us, got):
            want = fref.interval_starts(u, I, O, k, dtype)
            assert list(row) == want, f"I={I} k={k} O={O} u={float(u)!r}: got {list(row)}, expected {want}"
            assert row[0] == (0 if O > 1 else I - k) and row[-1] == I - k and (np.diff(row) >= 0).all()
            if np.dtype(dtype) == np.float32 and want != fref.interval_starts(u, I, O, k, np.float64):
                differs_from_f64 += 1
            seen_near_one += float(u) == below_one(dtype)
    assert seen_near_one == len(combos)
    if np.dtype(dtype) == np.float32:
        assert differs_from_f64 > 10, differs_from_f64


def test_interval_edge_cases():
    """O = 1: the only window at I - k. O = I - k + 1 (alpha = 1): start i is
    int(i + u) - int(u); u = 0 gives every position 0, 1, ..., I - k; u = nextafter(1, 0)
    gives 0 then i + 1 for 1 <= i < O - 1 (i + u rounds up to i + 1 in both dtypes: the
    spacing at i >= 1 is at least twice 1 - u), and the last I - k: 0, 2, 3, ..., I - k,
    I - k (the last two windows coincide; PyTorch's rule, see test_interval_rule_matches_torch).
    k = 1 and k = I among them."""
    for dtype in DTYPES:
        for I, k in ((1, 1), (2, 1), (7, 1), (7, 3), (7, 7), (20, 4)):
            O = I - k + 1
            for u, want in ((0.0, list(range(O))),
                            (below_one(dtype), [0] + list(range(2, O)) + [I - k] if O > 1 else [I - k])):
                us = np.array([u])
                assert list(_starts_from_fastpool(I, k, 1, us, dtype, 2, 1)[0]) == [I - k]
                assert list(_starts_from_fastpool(I, k, O, us, dtype, 2, 1)[0]) == want, (I, k, u)
                assert list(_starts_from_fastpool(I, k, O, us, dtype, 3, 0)[0]) == want, (I, k, u)
                assert fref.interval_starts(u, I, O, k, dtype) == want


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_interval_rule_large_sizes(dtype, torch_or_none):
    """Long axes, where float32's (i + u) keeps few bits of u and alpha's rounding error
    grows with i: still the reference's starts (and PyTorch's, where installed)."""
    torch = torch_or_none
    for I, k, O in ((5000, 3, 1700), (20011, 2, 20000), (1001, 7, 995), (70001, 5, 3)):
        rng = np.random.default_rng(I)
        us = np.unique(np.concatenate([[0.0, below_one(dtype), 0.5], rng.random(3, dtype=np.dtype(dtype))])
                       .astype(dtype))
        got = _starts_from_fastpool(I, k, O, us, dtype, 2, 1)
        for u, row in zip(us, got):
            assert list(row) == fref.interval_starts(u, I, O, k, dtype), (I, k, O, float(u))
        if torch is None:
            continue
        x = np.broadcast_to(np.arange(I, dtype=dtype), (1, us.size, 1, I)).copy()
        s = np.zeros((1, us.size, 2), dtype)
        s[0, :, 0] = us
        _, ti = torch.nn.functional.fractional_max_pool2d(torch.from_numpy(x), (1, k), output_size=(1, O),
                                                          return_indices=True, _random_samples=torch.from_numpy(s))
        np.testing.assert_array_equal(got, ti.numpy().reshape(us.size, O) - (k - 1))


# --------------------------------------------------------------------------- grid


@dataclass(frozen=True)
class FCase(BinCase):
    """One fractional pooling: spatial sizes, kernel (tuple), output_size or output_ratio
    (as passed), layout, dtype, batch (0: unbatched), channels; kernel_form is the
    kernel as passed to the fixed-rank forms."""

    spatial: Tuple[int, ...]
    kernel: Tuple[int, ...]
    out: Any = None
    ratio: Any = None
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3
    kernel_form: Any = None

    @property
    def out_spatial(self) -> Tuple[int, ...]:
        return fref.output_sizes(self.spatial, self.kernel, self.out, self.ratio)

    @property
    def id(self) -> str:
        def f(v):
            return "(" + ",".join(map(str, v)) + ")" if isinstance(v, (tuple, list)) else str(v)
        o = f"o{f(self.out)}" if self.out is not None else f"r{f(self.ratio)}"
        return f"{self.rank}d-{self.variant_id}-{self.sizes_id}-k{f(self.kernel_form or self.kernel)}-{o}"

    @property
    def n(self) -> int:
        return max(self.batch, 1)

    def kw(self) -> Dict[str, Any]:
        return dict(output_size=self.out, output_ratio=self.ratio, layout=self.layout)

    @property
    def kform(self) -> Any:
        return self.kernel if self.kernel_form is None else self.kernel_form

    def samples(self) -> np.ndarray:
        """(N, C, rank) samples in x's dtype: random, about a third of them replaced by 0,
        nextafter(1, 0), 1/2 or float32(j / 10)."""
        rng = self.rng("samples")
        s = rng.random((self.n, self.channels, self.rank), dtype=np.dtype(self.dtype))
        special = np.array([0.0, below_one(self.dtype), 0.5, *F32_TENTHS]).astype(self.dtype)
        pick = rng.random(s.shape) < 0.35
        s[pick] = rng.choice(special, size=int(pick.sum()))
        return s

    @property
    def seed(self) -> int:
        return zlib.crc32(self.id.encode())

    def x(self, kind: str) -> np.ndarray:
        return frac_data(self.rng(kind), self.shape, self.dtype, kind)

    def grad(self, kind: str = "ints") -> np.ndarray:
        """grad_output (default: multiples of 1/4, sums exact in any order)."""
        return frac_data(self.rng("grad" + kind), self.with_channels(self.out_spatial), self.dtype, kind)


KINDS = ("normal", "ints", "nans", "special", "infs")

# (spatial, kernel (tuple), output_size or None, output_ratio or None, kernel as passed to
# the fixed-rank forms): O = 1, O = I - k + 1, k = 1, k = I, odd sizes, wide rows.
GRID_GEOMS = [
    ((5, 5), (2, 2), 3, None, 2),
    ((7, 7), (2, 2), (4, 4), None, (2, 2)),
    ((7, 7), (3, 2), None, 0.5, (3, 2)),
    ((8, 67), (3, 3), (5, 40), None, 3),
    ((9, 11), (2, 3), (4, 9), None, (2, 3)),
    ((4, 4), (2, 2), 3, None, 2),
    ((10, 13), (3, 3), 1, None, 3),
    ((6, 6), (1, 1), (4, 6), None, 1),
    ((6, 5), (6, 5), 1, None, (6, 5)),
    ((16, 16), (3, 2), None, 0.5, (3, 2)),
    ((31, 20), (2, 2), None, (0.7, 0.45), 2),
    ((12, 12), (4, 4), (9, 5), None, 4),
    ((3, 17), (1, 4), (3, 14), None, (1, 4)),
    ((5, 5, 5), (2, 2, 2), 3, None, 2),
    ((4, 6, 9), (2, 3, 2), (3, 3, 5), None, (2, 3, 2)),
    ((3, 3, 3), (2, 2, 2), 2, None, 2),
    ((6, 7, 8), (3, 3, 3), None, 0.5, 3),
    ((2, 9, 17), (1, 2, 3), (2, 4, 10), None, (1, 2, 3)),
    ((7, 5, 6), (1, 1, 1), (4, 5, 2), None, 1),
    ((4, 4, 20), (2, 1, 3), None, (0.5, 0.75, 0.9), (2, 1, 3)),
]
BATCHES = (1, 2, 0)
CHANNELS = (1, 3, 5, 17, 2)
GRID = [FCase(sp, k, o, r, layout, dtype, BATCHES[i % 3], CHANNELS[i % 5], kf)
        for i, (sp, k, o, r, kf), layout, dtype in cycled(GRID_GEOMS)]


def expected(case: FCase, kind: str):
    """(x, samples, y, indices, grad_output, grad_x) of the reference, cached."""
    def compute():
        x, s, g = case.x(kind), case.samples(), case.grad()
        y, idx = fref.fractional_max_pool(x, case.kernel, case.out, case.ratio, random_samples=s, layout=case.layout)
        gx = fref.fractional_max_pool_backward(g, x.shape, idx, case.rank, case.layout)
        return x, s, y, idx, g, gx
    return cached(("fractional", case.id, kind), compute)


def expected_seeded(case: FCase, kind: str):
    """(y, indices, grad_x) of the reference with the samples drawn from case.seed."""
    def compute():
        x, g = case.x(kind), case.grad()
        y, idx = fref.fractional_max_pool(x, case.kernel, case.out, case.ratio, seed=case.seed, layout=case.layout)
        return y, idx, fref.fractional_max_pool_backward(g, x.shape, idx, case.rank, case.layout)
    return cached(("fractional-seeded", case.id, kind), compute)


def check_case(case: FCase, kinds=KINDS) -> None:
    rank, kw = case.rank, case.kw()
    f, fb = fp(f"fractional_max_pool{rank}d"), fp(f"fractional_max_pool{rank}d_backward")
    gen, genb = fp("fractional_max_pool"), fp("fractional_max_pool_backward")
    for kind in kinds:
        x, s, ey, eidx, g, egx = expected(case, kind)
        assert ey.shape == case.with_channels(case.out_spatial)
        snap = snapshot(x, s, g)
        sample_forms = [s] if case.batch else [s, s[0]]  # unbatched: (1, C, rank) or (C, rank)
        for sf in sample_forms:
            what = f"{kind} samples{sf.shape}"
            y, idx = gen(x, case.kernel, return_indices=True, random_samples=sf, **kw)
            assert_exact(y, ey, f"{what} values")
            assert_exact(idx, eidx, f"{what} indices")
            y, idx = f(x, case.kform, return_indices=True, random_samples=sf, **kw)
            assert_exact(y, ey, f"{what} {rank}d values")
            assert_exact(idx, eidx, f"{what} {rank}d indices")
            assert_exact(f(x, case.kform, random_samples=sf, **kw), ey, f"{what} no indices")
            assert_exact(fb(g, x, case.kform, random_samples=sf, layout=case.layout), egx, f"{what} backward samples")
            assert_exact(genb(g, x, case.kernel, random_samples=sf, **kw), egx, f"{what} generic backward samples")
        assert_exact(fb(g, x, case.kform, indices=eidx, layout=case.layout), egx, f"{kind} backward indices")
        assert_exact(genb(g, x, case.kernel, indices=eidx, **kw), egx, f"{kind} generic backward indices")
        assert_unchanged(snap, kind)
    # the samples drawn from an int seed
    kind = kinds[-1]
    x, g = case.x(kind), case.grad()
    ey, eidx, egx = expected_seeded(case, kind)
    y, idx = f(x, case.kform, return_indices=True, seed=case.seed, **kw)
    assert_exact(y, ey, "seeded values")
    assert_exact(idx, eidx, "seeded indices")
    assert_exact(fb(g, x, case.kform, seed=case.seed, **kw), egx, "backward from the seed")
    assert_exact(fb(g, x, case.kform, indices=idx, layout=case.layout), egx, "backward from the seeded indices")


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case):
    check_case(case)


def test_grid_covers_the_edge_cases():
    """O = 1, O = I - k + 1, k = 1 and k = I on some axis; output_ratio forms; 2D and 3D;
    unbatched; NaN outputs (windows of 4 or more taps at 40% NaN: many hold several, so
    'the last NaN' decides) and -inf outputs (windows of -inf only)."""
    seen = set()
    for case in GRID:
        for i, k, o in zip(case.spatial, case.kernel, case.out_spatial):
            seen |= {"O=1"} if o == 1 else set()
            seen |= {"O=I-k+1"} if o == i - k + 1 and o > 1 else set()
            seen |= {"k=1"} if k == 1 else set()
            seen |= {"k=I"} if k == i and i > 1 else set()
        seen |= {f"{case.rank}d", "ratio" if case.ratio is not None else "size", f"batch{case.batch}"}
    assert seen >= {"O=1", "O=I-k+1", "k=1", "k=I", "2d", "3d", "ratio", "size", "batch0", "batch1", "batch2"}
    nan_out = neg_inf = 0
    for case in GRID[:8]:
        nan_out += int(np.isnan(expected(case, "nans")[2]).sum())
        neg_inf += int(np.isneginf(expected(case, "infs")[2]).sum())
    assert nan_out > 20 and neg_inf > 10


BACKEND_CASES = [GRID[i] for i in (0, 7, 13, 14, 22, 45, 52, 61, 66, 75)]


@pytest.mark.parametrize("case", params(BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check_case(case, kinds=("nans", "ints"))


# Enough work for two and three threads to split it (planes for channels_first, output
# rows for channels_last).
IDENTITY_CASES = [
    FCase((33, 67), (3, 3), (20, 40), None, "channels_first", np.float32, 2, 17),
    FCase((33, 67), (3, 3), (20, 40), None, "channels_last", np.float64, 2, 17),
    FCase((40, 50), (2, 2), None, 0.7, "channels_last", np.float32, 1, 33),
    FCase((9, 17, 31), (2, 3, 3), (5, 10, 20), None, "channels_first", np.float64, 2, 7),
    FCase((9, 17, 31), (2, 3, 3), (5, 10, 20), None, "channels_last", np.float32, 0, 19),
]


def _outputs(case: FCase) -> Dict[str, np.ndarray]:
    out = {}
    for kind in ("nans", "ints"):
        x, s, g = case.x(kind), case.samples(), case.grad()
        y, idx = fp("fractional_max_pool")(x, case.kernel, return_indices=True, random_samples=s, **case.kw())
        out[f"y {kind}"], out[f"idx {kind}"] = y, idx
        out[f"grad {kind}"] = fp("fractional_max_pool_backward")(g, x, case.kernel, random_samples=s, **case.kw())
        out[f"grad normal {kind}"] = fp("fractional_max_pool_backward")(case.grad("normal"), x, case.kernel,
                                                                        indices=idx, **case.kw())
    return out


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    """Every SIMD path x threads 1, 2, 3: the same bits as the first; and the reference's."""
    base = identical_on_every_backend(lambda: _outputs(case))
    x, s, ey, eidx, g, egx = expected(case, "nans")
    assert_exact(base["y nans"], ey, "values")
    assert_exact(base["idx nans"], eidx, "indices")
    assert_exact(base["grad nans"], egx, "backward")


@pytest.mark.parametrize("case", params(IDENTITY_CASES[:3] + GRID[::9]))
def test_backward_with_normal_gradients(case):
    """grad_output of normal values (sums rounded): within a few roundings of the
    reference's sums (the scale: the same scatter of |g|)."""
    x, s, _, idx, _, _ = expected(case, "ints")
    g = case.grad("normal")
    got = fp("fractional_max_pool_backward")(g, x, case.kernel, indices=idx, layout=case.layout)
    e = fref.fractional_max_pool_backward(g, x.shape, idx, case.rank, case.layout)
    scale = fref.fractional_max_pool_backward(np.abs(g), x.shape, idx, case.rank, case.layout)
    assert_close(got, e, scale, 8 * np.finfo(case.dtype).eps, "backward")
    assert np.abs(got.astype(np.float64).sum() - g.astype(np.float64).sum()) <= 1e-4 * np.abs(g).sum()


# --------------------------------------------------------------------------- seeds

SEED_CASE = FCase((20, 24), (2, 3), (12, 15), None, "channels_first", np.float32, 2, 6)


def test_same_int_seed_same_result():
    x = SEED_CASE.x("normal")
    y1, i1 = fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=123)
    y2, i2 = fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=123)
    assert_exact(y1, y2)
    assert_exact(i1, i2)
    ey, ei = fref.fractional_max_pool(x, (2, 3), (12, 15), random_samples=fref.draw_samples(123, 2, 6, 2, np.float32))
    assert_exact(y1, ey)
    assert_exact(i1, ei)
    for s in (np.int64(123), np.uint64(123), np.int32(123)):
        assert_exact(fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=s)[1], i1)
    # the samples are default_rng(seed).random((N, C, rank), x's dtype): passing them gives the same
    s = np.random.default_rng(123).random((2, 6, 2), dtype=np.float32)
    assert_exact(fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, random_samples=s)[1], i1)
    # another seed: other windows (some plane's samples change its starts)
    _, i3 = fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=124)
    assert (i3 != i1).any()
    # float64: drawn in float64
    x64 = x.astype(np.float64)
    _, i64 = fp("fractional_max_pool")(x64, (2, 3), (12, 15), return_indices=True, seed=2**70)
    assert_exact(i64, fref.fractional_max_pool(x64, (2, 3), (12, 15), seed=2**70)[1])


def test_unbatched_seed_draws_one_batch():
    """An unbatched x draws (1, C, rank): the same as the batched x[None]."""
    x = SEED_CASE.x("normal")[0]
    y, idx = fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=9)
    yb, ib = fp("fractional_max_pool")(x[None], (2, 3), (12, 15), return_indices=True, seed=9)
    assert_exact(y, yb[0])
    assert_exact(idx, ib[0])


def test_generator_seed():
    """A Generator is drawn from directly: generators in the same state give the same
    result, the generator moves on (as after .random((N, C, rank), dtype))."""
    x = SEED_CASE.x("normal")
    g1, g2 = np.random.default_rng(77), np.random.default_rng(77)
    state = copy.deepcopy(g1.bit_generator.state)
    y1, i1 = fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=g1)
    y2, i2 = fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=g2)
    assert_exact(y1, y2)
    assert_exact(i1, i2)
    assert g1.bit_generator.state != state and g1.bit_generator.state == g2.bit_generator.state
    g3 = np.random.default_rng(77)
    s = g3.random((2, 6, 2), dtype=np.float32)
    assert g3.bit_generator.state == g1.bit_generator.state
    assert_exact(i1, fref.fractional_max_pool(x, (2, 3), (12, 15), random_samples=s)[1])
    assert_exact(i1, fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, random_samples=s)[1])
    _, i3 = fp("fractional_max_pool")(x, (2, 3), (12, 15), return_indices=True, seed=g1)
    assert (i3 != i1).any()
    # the backward from the forward's indices
    g = SEED_CASE.grad()
    assert_exact(fp("fractional_max_pool_backward")(g, x, (2, 3), indices=i1),
                 fref.fractional_max_pool_backward(g, x.shape, i1, 2))


def test_seed_none_gives_fresh_valid_windows():
    """seed=None (the default): valid windows (first start 0, last I - k, read back from an
    increasing input) that differ between calls."""
    I, k, O, C = 40, 3, 17, 64
    x = np.broadcast_to(np.arange(I, dtype=np.float64), (1, C, 1, I)).copy()
    runs = []
    for call in (lambda: fp("fractional_max_pool")(x, (1, k), (1, O), return_indices=True),
                 lambda: fp("fractional_max_pool2d")(x, (1, k), (1, O), return_indices=True, seed=None)):
        y, idx = call()
        starts = idx.reshape(C, O) - (k - 1)
        assert (starts[:, 0] == 0).all() and (starts[:, -1] == I - k).all() and (np.diff(starts) >= 0).all()
        assert_exact(y, idx.astype(np.float64))
        runs.append(starts)
    assert (runs[0] != runs[1]).any()
    assert len({tuple(r) for r in runs[0]}) > 1  # the planes draw their own samples


def test_backward_from_seed_equals_backward_from_indices():
    for case in (SEED_CASE, IDENTITY_CASES[3], GRID[5], GRID[62]):
        x, g = case.x("nans"), case.grad()
        for seed in (0, 5, 2**64 - 3, np.uint64(7)):
            _, idx = fp("fractional_max_pool")(x, case.kernel, return_indices=True, seed=seed, **case.kw())
            from_idx = fp("fractional_max_pool_backward")(g, x, case.kernel, indices=idx, layout=case.layout)
            from_seed = fp("fractional_max_pool_backward")(g, x, case.kernel, seed=seed, **case.kw())
            assert_exact(from_seed, from_idx, f"{case.id} seed {seed}")


# --------------------------------------------------------------------------- memory

MEM_CASES = [
    FCase((9, 17), (3, 2), (5, 12), None, "channels_first", np.float32, 2, 3),
    FCase((9, 17), (2, 2), None, 0.6, "channels_last", np.float64, 1, 5),
    FCase((5, 6, 7), (2, 2, 3), (3, 4, 3), None, "channels_first", np.float64, 0, 2),
    FCase((5, 6, 7), (2, 2, 2), (4, 4, 4), None, "channels_last", np.float32, 2, 3),
]


@pytest.mark.parametrize("case", params(MEM_CASES))
def test_out_argument(case, backend):
    """out= (starting as NaN) written in full and returned, with and without indices;
    inside a larger buffer nothing else is written; the backward's out= likewise."""
    x, s, ey, eidx, g, egx = expected(case, "nans")
    gen, genb, kw = fp("fractional_max_pool"), fp("fractional_max_pool_backward"), case.kw()
    snap = snapshot(x, s, g)
    out = np.full(ey.shape, np.nan, case.dtype)
    assert gen(x, case.kernel, random_samples=s, out=out, **kw) is out
    assert_exact(out, ey, "out")
    out[...] = 7
    y, idx = gen(x, case.kernel, return_indices=True, random_samples=s, out=out, **kw)
    assert y is out
    assert_exact(out, ey, "out with indices")
    assert_exact(idx, eidx, "indices with out")
    buf = np.full(2 * out.size + 64, -3.0, case.dtype)
    view = buf[32:32 + out.size].reshape(out.shape)
    assert fp(f"fractional_max_pool{case.rank}d")(x, case.kform, random_samples=s, out=view, **kw) is view
    assert_exact(np.ascontiguousarray(view), ey, "out in a buffer")
    assert (buf[:32] == -3).all() and (buf[32 + out.size:] == -3).all()
    gout = np.full(x.shape, np.nan, case.dtype)
    assert genb(g, x, case.kernel, indices=eidx, out=gout, layout=case.layout) is gout
    assert_exact(gout, egx, "backward out")
    gout[...] = 5  # every element rewritten, the zeros too
    assert genb(g, x, case.kernel, random_samples=s, out=gout, **kw) is gout
    assert_exact(gout, egx, "backward out from samples")
    assert_unchanged(snap, "out=")


@pytest.mark.parametrize("case", params(MEM_CASES))
def test_non_contiguous_inputs(case, backend):
    """Strided, reversed, Fortran-order, read-only, unaligned and transposed-memory x,
    grad_output, indices and samples: the same results; inputs unchanged."""
    x, s, ey, eidx, g, egx = expected(case, "nans")
    gen, genb, kw = fp("fractional_max_pool"), fp("fractional_max_pool_backward"), case.kw()

    def variants_of(a):
        out = dict(views(a))
        if a.ndim >= 3 and a.shape[1] > 1:
            out["transposed-memory"] = transposed_memory(a, case.layout)
        return out

    vx, vg, vi = variants_of(x), variants_of(g), variants_of(eidx)
    vs = {name: v for name, v in views(s)}
    assert len(vx) >= 6
    for name in vx:
        xv, gv, iv, sv = vx[name], vg.get(name, g), vi.get(name, eidx), vs.get(name, s)
        snap = snapshot(xv, gv, iv, sv)
        y, idx = gen(xv, case.kernel, return_indices=True, random_samples=sv, **kw)
        assert_exact(y, ey, f"{name} x")
        assert_exact(idx, eidx, f"{name} indices")
        assert_exact(genb(gv, xv, case.kernel, indices=iv, layout=case.layout), egx, f"{name} backward indices")
        assert_exact(genb(gv, xv, case.kernel, random_samples=sv, **kw), egx, f"{name} backward samples")
        assert_unchanged(snap, name)
    # a sliced view of a bigger input
    big = np.full(tuple(d + 2 for d in x.shape), -7.0, case.dtype)
    big[tuple(slice(1, 1 + d) for d in x.shape)] = x
    sub = big[tuple(slice(1, 1 + d) for d in x.shape)]
    assert_exact(gen(sub, case.kernel, random_samples=s, **kw), ey, "sliced view")


def test_list_input_and_docstring_examples():
    # (C, H, W) of Python floats: float64; one output: the window starts at I - k, (0, 1):
    # taps 1, 2, 4, 3 -> 4 at (1, 1), flat 4
    y, idx = fp("fractional_max_pool")([[[0.0, 1.0, 2.0], [5.0, 4.0, 3.0]]], (2, 2), 1, return_indices=True,
                                       random_samples=[[0.5, 0.5]])
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    assert_exact(y, _a([[[4.0]]]))
    assert_exact(idx, _i([[[4]]]))
    g = fp("fractional_max_pool2d_backward")([[[2.0]]], [[[0.0, 1.0, 2.0], [5.0, 4.0, 3.0]]], 2, 1,
                                             random_samples=[[0.5, 0.5]])
    assert_exact(g, _a([[[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]]))
    mod = importlib.import_module("fastpool.fractional_pool")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 4 and result.failed == 0


# --------------------------------------------------------------------------- errors

X = np.zeros((1, 2, 5, 6), np.float32)
S = np.full((1, 2, 2), 0.5)
GO = np.ones((1, 2, 3, 3), np.float32)  # output 3 of X with kernel 2
IDX = np.zeros(GO.shape, np.int64)
X3 = np.zeros((1, 2, 4, 5, 6), np.float32)


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


def _read_only(shape, dtype=np.float32):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


def _idx_with(value: int, pos: Tuple[int, ...]) -> np.ndarray:
    a = IDX.copy()
    a[pos] = value
    return a


def _fm(*a, **k):
    return fp("fractional_max_pool")(*a, **k)


def _fmb(*a, **k):
    return fp("fractional_max_pool_backward")(*a, **k)


def _f2(*a, **k):
    return fp("fractional_max_pool2d")(*a, **k)


def _f2b(*a, **k):
    return fp("fractional_max_pool2d_backward")(*a, **k)


def _f3(*a, **k):
    return fp("fractional_max_pool3d")(*a, **k)


def _out_overlapping_x():
    buf = np.zeros(X.size + 8, np.float32)
    x = buf[:X.size].reshape(X.shape)
    return _f2(x, 2, 3, random_samples=S, out=buf[8:8 + GO.size].reshape(GO.shape))


def _out_overlapping_grad():
    buf = np.zeros(X.size, np.float32)
    g = buf[:GO.size].reshape(GO.shape)
    return _f2b(g, X, 2, indices=IDX, out=buf.reshape(X.shape))


def _out_overlapping_indices():
    buf = np.zeros(X.size, np.float64)
    idx = buf[:GO.size].view(np.int64).reshape(GO.shape)
    idx[...] = 0
    return _f2b(GO.astype(np.float64), X.astype(np.float64), 2, indices=idx, out=buf.reshape(X.shape))


E, T = ValueError, TypeError
RANK = "fractional max pooling is 2D or 3D"
FIT = "output \\+ kernel - 1 must be <= input"
ONE_OF = "give exactly one of output_size and output_ratio"
NEEDS = "the backward needs exactly one of the forward's indices, random_samples or int seed"
ERRORS = [
    # rank
    ("rank-1-int-kernel", lambda: _fm(np.zeros((1, 2, 7)), 2, 3, seed=0), E, _all(RANK, "got a 1D call")),
    ("rank-1-tuple", lambda: _fm(X, (2,), 3, seed=0), E, _all(RANK, "got a 1D call", r"kernel_size=\(2,\)")),
    ("rank-4-tuple", lambda: _fm(np.zeros((1, 1, 5, 5, 5, 5)), (2, 2, 2, 2), 3, seed=0), E,
     _all(RANK, "got a 4D call")),
    ("rank-4-int-kernel", lambda: _fm(np.zeros((1, 1, 5, 5, 5, 5)), 2, 3, seed=0), E, _all(RANK, "4D", "x.ndim=6")),
    ("rank-1-backward", lambda: _fmb(np.zeros((1, 2, 3)), np.zeros((1, 2, 7)), (2,), seed=0), E, RANK),
    ("ndim-2d-form-5d", lambda: _f2(X3, 2, 3, seed=0), E,
     _all(r"x must have 3 \(unbatched\) or 4 \(batched\) dimensions for 2D pooling", "got 5")),
    ("ndim-3d-form-3d", lambda: _f3(X[0, 0], 2, 3, seed=0), E, _all("x must have 4", "3D pooling", "got 2")),
    ("ndim-generic-tuple", lambda: _fm(X[0, 0], (2, 2), 1, seed=0), E, _all("x must have", "got 2")),
    ("kernel-length-2d-form", lambda: _f2(X, (2, 2, 2), 3, seed=0), E, "kernel_size must have 2 entries"),
    # kernel_size
    ("kernel-larger-than-input", lambda: _f2(X, (6, 2), 1, seed=0), E,
     _all(r"kernel_size \(6, 2\) exceeds the input's spatial size \(5, 6\)")),
    ("kernel-larger-3d", lambda: _f3(X3, (1, 1, 7), 1, seed=0), E, r"kernel_size \(1, 1, 7\) exceeds"),
    ("kernel-zero", lambda: _f2(X, 0, 3, seed=0), E, "kernel_size must be >= 1"),
    ("kernel-float", lambda: _f2(X, 2.0, 3, seed=0), T, "kernel_size must be an integer"),
    ("kernel-str", lambda: _fm(X, "22", 3, seed=0), (T, E), "kernel_size"),
    # output_size / output_ratio
    ("output-too-large", lambda: _f2(X, 2, (5, 3), seed=0), E,
     _all(r"output size \(5, 3\) with kernel_size \(2, 2\) does not fit the input's spatial size \(5, 6\)", FIT)),
    ("output-too-large-3d", lambda: _f3(X3, (2, 2, 2), (3, 5, 5), seed=0), E, _all(r"output size \(3, 5, 5\)", FIT)),
    ("output-too-large-k1", lambda: _f2(X, 1, (6, 1), seed=0), E, FIT),
    ("output-zero", lambda: _f2(X, 2, 0, seed=0), E, "output_size must be >= 1"),
    ("output-length", lambda: _f2(X, 2, (3, 3, 3), seed=0), E, "output_size must have 2 entries"),
    ("output-float", lambda: _f2(X, 2, 2.5, seed=0), T, "output_size must be an integer"),
    ("both-size-and-ratio", lambda: _f2(X, 2, 3, 0.5, seed=0), E, ONE_OF),
    ("neither-size-nor-ratio", lambda: _f2(X, 2, seed=0), E, ONE_OF),
    ("both-backward", lambda: _f2b(GO, X, 2, 3, 0.5, indices=IDX), E, ONE_OF),
    ("ratio-zero", lambda: _f2(X, 2, output_ratio=0.0, seed=0), E, r"output_ratio must be in \(0, 1\), got 0\.0"),
    ("ratio-one", lambda: _f2(X, 2, output_ratio=1.0, seed=0), E, r"output_ratio must be in \(0, 1\), got 1\.0"),
    ("ratio-above-one", lambda: _f2(X, 2, output_ratio=(0.5, 1.5), seed=0), E,
     r"output_ratio must be in \(0, 1\), got \(0\.5, 1\.5\)"),
    ("ratio-negative", lambda: _f2(X, 2, output_ratio=-0.5, seed=0), E, r"output_ratio must be in \(0, 1\)"),
    ("ratio-nan", lambda: _f2(X, 2, output_ratio=float("nan"), seed=0), E, r"output_ratio must be in \(0, 1\)"),
    ("ratio-empty-output", lambda: _f2(X, 2, output_ratio=0.1, seed=0), E,
     _all(r"output_ratio=0\.1 gives an empty output for spatial size \(5, 6\)")),
    ("ratio-empty-one-axis", lambda: _f2(X, 2, output_ratio=(0.5, 0.15), seed=0), E, "gives an empty output"),
    ("ratio-too-large-for-kernel", lambda: _f2(X, 3, output_ratio=0.9, seed=0), E, _all(r"output size \(4, 5\)", FIT)),
    ("ratio-length", lambda: _f2(X, 2, output_ratio=(0.5, 0.5, 0.5), seed=0), E,
     r"output_ratio must be a float or 2 floats, got \(0\.5, 0\.5, 0\.5\)"),
    ("ratio-str", lambda: _f2(X, 2, output_ratio="0.5", seed=0), T, "output_ratio must hold floats in"),
    ("ratio-bool", lambda: _f2(X, 2, output_ratio=True, seed=0), T, "output_ratio must hold floats in"),
    # random_samples
    ("samples-shape", lambda: _f2(X, 2, 3, random_samples=np.full((1, 2, 3), 0.5)), E,
     _all(r"random_samples has shape \(1, 2, 3\), expected \(1, 2, 2\)", "one sample per plane and axis")),
    ("samples-shape-unbatched-form-for-batched", lambda: _f2(X, 2, 3, random_samples=np.full((2, 2), 0.5)), E,
     r"random_samples has shape \(2, 2\), expected \(1, 2, 2\) \(one"),
    ("samples-shape-unbatched", lambda: _f2(X[0], 2, 3, random_samples=np.full((3, 2), 0.5)), E,
     r"random_samples has shape \(3, 2\), expected \(1, 2, 2\) or \(2, 2\)"),
    ("samples-shape-3d", lambda: _f3(X3, 2, 2, random_samples=np.full((1, 2, 2), 0.5)), E,
     r"expected \(1, 2, 3\)"),
    ("samples-one", lambda: _f2(X, 2, 3, random_samples=np.array([[[0.5, 1.0], [0.0, 0.0]]])), E,
     r"random_samples must be in \[0, 1\) in float32"),
    ("samples-negative", lambda: _f2(X.astype(np.float64), 2, 3, random_samples=np.array([[[0.5, -1e-300],
                                                                                               [0, 0]]])), E,
     r"random_samples must be in \[0, 1\) in float64"),
    ("samples-nan", lambda: _f2(X, 2, 3, random_samples=np.array([[[0.5, np.nan], [0, 0]]])), E,
     r"random_samples must be in \[0, 1\)"),
    ("samples-inf", lambda: _f2(X, 2, 3, random_samples=np.array([[[0.5, np.inf], [0, 0]]])), E,
     r"random_samples must be in \[0, 1\)"),
    # below 1 in float64, 1.0 once cast to float32: refused for float32 x
    ("samples-round-to-one-f32", lambda: _f2(X, 2, 3, random_samples=np.array([[[0.5, 1 - 2**-30], [0, 0]]])), E,
     r"random_samples must be in \[0, 1\) in float32"),
    ("samples-str", lambda: _f2(X, 2, 3, random_samples="abc"), T, "random_samples must be an array of floats"),
    ("samples-and-seed", lambda: _f2(X, 2, 3, random_samples=S, seed=1), E, "give random_samples or seed, not both"),
    ("samples-and-generator", lambda: _f2(X, 2, 3, random_samples=S, seed=np.random.default_rng(0)), E,
     "give random_samples or seed, not both"),
    # seed
    ("seed-float", lambda: _f2(X, 2, 3, seed=1.0), T,
     r"seed must be None, an int or a numpy.random.Generator, got 1\.0"),
    ("seed-str", lambda: _f2(X, 2, 3, seed="7"), T, r"seed must be None, an int or a numpy.random.Generator, got '7'"),
    ("seed-bool", lambda: _f2(X, 2, 3, seed=True), T,
     "seed must be None, an int or a numpy.random.Generator, got True"),
    ("seed-np-bool", lambda: _f2(X, 2, 3, seed=np.bool_(False)), T, "seed must be None, an int"),
    ("seed-random-state", lambda: _f2(X, 2, 3, seed=np.random.RandomState(0)), T, "seed must be None, an int"),
    ("seed-negative", lambda: _f2(X, 2, 3, seed=-1), E, "negative"),  # numpy's SeedSequence message
    # return_indices
    ("return-indices-int", lambda: _f2(X, 2, 3, seed=0, return_indices=1), T, "return_indices must be a bool, got 1"),
    ("return-indices-none", lambda: _f2(X, 2, 3, seed=0, return_indices=None), T,
     "return_indices must be a bool, got None"),
    ("return-indices-str", lambda: _fm(X, (2, 2), 3, seed=0, return_indices="yes"), T, "return_indices must be a bool"),
    # x
    ("x-int32", lambda: _f2(X.astype(np.int32), 2, 3, seed=0), T,
     "x has dtype int32; supported dtypes are float32, float64"),
    ("x-float16", lambda: _f2(X.astype(np.float16), 2, 3, seed=0), T, "x has dtype float16"),
    ("x-object", lambda: _f2(object(), 2, 3, seed=0), T, "x must be a numpy.ndarray, got object"),
    ("x-zero-size", lambda: _f2(np.zeros((1, 0, 5, 6), np.float32), 2, 3, seed=0), E,
     r"x has a zero-size dimension: shape \(1, 0, 5, 6\)"),
    ("layout-bad", lambda: _f2(X, 2, 3, seed=0, layout="NHWC"), E,
     "layout must be 'channels_first' or 'channels_last', got 'NHWC'"),
    # backward: exactly one of indices / random_samples / int seed
    ("backward-none", lambda: _f2b(GO, X, 2), E, NEEDS),
    ("backward-none-with-size", lambda: _f2b(GO, X, 2, 3), E, NEEDS),
    ("backward-indices-and-samples", lambda: _f2b(GO, X, 2, indices=IDX, random_samples=S), E, NEEDS),
    ("backward-indices-and-seed", lambda: _f2b(GO, X, 2, indices=IDX, seed=1), E, NEEDS),
    ("backward-samples-and-seed", lambda: _f2b(GO, X, 2, random_samples=S, seed=1), E, NEEDS),
    ("backward-all-three", lambda: _fmb(GO, X, (2, 2), indices=IDX, random_samples=S, seed=1), E, NEEDS),
    ("backward-generator", lambda: _f2b(GO, X, 2, seed=np.random.default_rng(1)), T,
     _all("the backward needs the forward's int seed: a Generator has moved on since the forward",
          "pass the forward's indices or random_samples instead")),
    ("backward-seed-bool", lambda: _f2b(GO, X, 2, seed=True), T, "the backward needs the forward's int seed"),
    ("backward-seed-float", lambda: _f2b(GO, X, 2, seed=1.5), T, "seed must be None, an int"),
    ("backward-samples-shape", lambda: _f2b(GO, X, 2, random_samples=np.full((1, 2, 3), 0.5)), E,
     r"random_samples has shape \(1, 2, 3\)"),
    ("backward-samples-value", lambda: _f2b(GO, X, 2, random_samples=np.full((1, 2, 2), 1.0)), E,
     r"random_samples must be in \[0, 1\)"),
    # backward: grad_output
    ("grad-batch", lambda: _f2b(np.ones((2, 2, 3, 3), np.float32), X, 2, indices=np.zeros((2, 2, 3, 3), np.int64)),
     E, _all(r"grad_output has shape \(2, 2, 3, 3\), which does not match x's batch and channels",
             r"x: \(1, 2, 5, 6\)")),
    ("grad-channels", lambda: _f2b(np.ones((1, 3, 3, 3), np.float32), X, 2, seed=0), E,
     r"grad_output has shape \(1, 3, 3, 3\), which does not match x's batch and channels"),
    ("grad-unbatched", lambda: _f2b(GO[0], X, 2, seed=0), E, "which does not match x's batch and channels"),
    ("grad-channels-last", lambda: _f2b(GO, X, 2, seed=0, layout="channels_last"), E,
     "which does not match x's batch and channels"),
    ("grad-ndim", lambda: _f2b(GO[0, 0], X, 2, seed=0), E,
     r"grad_output must have 3 \(unbatched\) or 4 \(batched\) dimensions for 2D pooling, got 2"),
    ("grad-output-size-disagrees", lambda: _f2b(GO, X, 2, 2, seed=0), E,
     _all(r"grad_output's spatial size \(3, 3\) is not the output size that output_size=2 / output_ratio=None give")),
    ("grad-output-ratio-disagrees", lambda: _f2b(GO, X, 2, output_ratio=0.5, indices=IDX), E,
     r"grad_output's spatial size \(3, 3\) is not the output size that output_size=None / output_ratio=0\.5 give"),
    ("grad-output-size-does-not-fit", lambda: _f2b(GO, X, 2, (5, 3), seed=0), E, FIT),
    ("grad-too-large-from-samples", lambda: _f2b(np.ones((1, 2, 5, 3), np.float32), X, 2, random_samples=S), E, FIT),
    ("grad-dtype", lambda: _f2b(GO.astype(np.float64), X, 2, seed=0), T,
     r"grad_output has dtype float64, expected float32 \(x's\)"),
    ("grad-int", lambda: _f2b(GO.astype(np.int32), X, 2, seed=0), T, "grad_output has dtype int32"),
    # backward: indices
    ("indices-int32", lambda: _f2b(GO, X, 2, indices=IDX.astype(np.int32)), T,
     "indices has dtype int32, expected int64"),
    ("indices-float", lambda: _f2b(GO, X, 2, indices=IDX.astype(np.float64)), T, "indices has dtype float64"),
    ("indices-list", lambda: _f2b(GO, X, 2, indices=IDX.tolist()), T, "indices must be a numpy.ndarray, got list"),
    ("indices-shape", lambda: _f2b(GO, X, 2, indices=np.zeros((1, 2, 3, 2), np.int64)), E,
     r"indices has shape \(1, 2, 3, 2\), expected \(1, 2, 3, 3\)"),
    ("indices-unbatched", lambda: _f2b(GO, X, 2, indices=IDX[0]), E, r"indices has shape \(2, 3, 3\)"),
    ("indices-out-of-plane", lambda: _f2b(GO, X, 2, indices=_idx_with(30, (0, 0, 1, 2))), E,
     r"indices holds 30 at flat position 5, outside the spatial plane \[0, 30\)"),
    ("indices-negative", lambda: _f2b(GO, X, 2, indices=_idx_with(-1, (0, 1, 2, 2))), E,
     r"indices holds -1 at flat position 17, outside the spatial plane \[0, 30\)"),
    ("indices-huge", lambda: _f2b(GO, X, 2, indices=_idx_with(2**62, (0, 1, 0, 0))), E,
     f"indices holds {2**62} at flat position 9"),
    # out
    ("out-shape", lambda: _f2(X, 2, 3, seed=0, out=np.zeros((1, 2, 2, 2), np.float32)), E,
     r"out has shape \(1, 2, 2, 2\), expected \(1, 2, 3, 3\)"),
    ("out-dtype", lambda: _f2(X, 2, 3, seed=0, out=np.zeros(GO.shape, np.float64)), T,
     "out has dtype float64, expected float32"),
    ("out-read-only", lambda: _f2(X, 2, 3, seed=0, out=_read_only(GO.shape)), E, "out is read-only"),
    ("out-non-contiguous", lambda: _f2(X, 2, 3, seed=0, out=np.zeros((1, 2, 3, 6), np.float32)[..., ::2]), E,
     "out must be C-contiguous"),
    ("out-list", lambda: _f2(X, 2, 3, seed=0, out=GO.tolist()), T, "out must be a numpy.ndarray"),
    ("out-overlaps-x", _out_overlapping_x, E, "out overlaps an input array"),
    ("out-is-x", lambda: (lambda a: _f2(a, 1, (5, 6), seed=0, out=a))(X.copy()), E, "out overlaps an input array"),
    ("out-shape-backward", lambda: _f2b(GO, X, 2, indices=IDX, out=np.zeros(GO.shape, np.float32)), E,
     r"out has shape \(1, 2, 3, 3\), expected \(1, 2, 5, 6\)"),
    ("out-dtype-backward", lambda: _f2b(GO, X, 2, seed=1, out=np.zeros(X.shape, np.float64)), T,
     "out has dtype float64, expected float32"),
    ("out-read-only-backward", lambda: _f2b(GO, X, 2, indices=IDX, out=_read_only(X.shape)), E, "out is read-only"),
    ("out-is-x-backward", lambda: (lambda a: _f2b(GO, a, 2, indices=IDX, out=a))(X.copy()), E,
     "out overlaps an input array"),
    ("out-overlaps-grad", _out_overlapping_grad, E, "out overlaps an input array"),
    ("out-overlaps-indices", _out_overlapping_indices, E, "out overlaps an input array"),
]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_errors_leave_out_untouched():
    out = np.full(GO.shape, 7.0, np.float32)
    for kw in (dict(random_samples=np.full((1, 2, 2), 1.0)), dict(seed=1.5), dict(output_ratio=0.5),
               dict(random_samples=S, seed=3)):
        with pytest.raises((ValueError, TypeError)):
            _f2(X, 2, 3, out=out, **kw)
    np.testing.assert_array_equal(out, 7.0)


# --------------------------------------------------------------------------- torch


@pytest.fixture
def torch(torch_or_none):
    """torch_or_none, the test skipped without torch."""
    if torch_or_none is None:
        pytest.skip("torch is not installed")
    return torch_or_none


def torch_forward_backward(torch, x: np.ndarray, k: Tuple[int, ...], s: np.ndarray, g: np.ndarray,
                           output_size=None, output_ratio=None):
    """torch's (values, indices, autograd grad_x) for a channels_first x (batched or not)."""
    F = torch.nn.functional
    fn = F.fractional_max_pool2d if len(k) == 2 else F.fractional_max_pool3d
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    assert s.ndim == 3 and s.dtype == x.dtype
    ts = torch.from_numpy(s.copy())
    y, idx = fn(leaf, k, output_size=output_size, output_ratio=output_ratio, return_indices=True,
                _random_samples=ts)
    y.backward(torch.from_numpy(g.copy()))
    return y.detach().numpy().copy(), idx.numpy().copy(), leaf.grad.numpy().copy()


def random_torch_cases(n: int, seed: int, rank: int) -> List[Tuple[Any, ...]]:
    """(shape (channels_first), kernel, output size, dtype, kind) with torch's rules (3D:
    output + kernel - 1 < input)."""
    rng = np.random.default_rng(seed)
    cases = []
    kinds = ("normal", "ints", "nans", "special", "infs")
    while len(cases) < n:
        sizes = tuple(int(v) for v in rng.integers(2 if rank == 3 else 1, 15 if rank == 2 else 9, rank))
        k = tuple(int(rng.integers(1, min(s, 4) + 1)) for s in sizes)
        room = [s - kk + 1 - (rank == 3) for s, kk in zip(sizes, k)]
        if min(room) < 1:
            continue
        out = tuple(int(rng.integers(1, r + 1)) if rng.random() < 0.7 else r for r in room)
        batched = bool(rng.random() < 0.7)
        lead = (int(rng.integers(1, 4)),) if batched else ()
        shape = lead + (int(rng.integers(1, 6)),) + sizes
        cases.append((shape, k, out, DTYPES[len(cases) % 2], kinds[len(cases) % len(kinds)]))
    return cases


TORCH_2D = random_torch_cases(40, 11, 2)
TORCH_3D = random_torch_cases(30, 12, 3)


def _torch_samples(rng: np.random.Generator, lead: Tuple[int, int], rank: int, dtype: Any) -> np.ndarray:
    s = rng.random(lead + (rank,), dtype=np.dtype(dtype))
    special = np.array([0.0, below_one(dtype), 0.5, *F32_TENTHS]).astype(dtype)
    pick = rng.random(s.shape) < 0.4
    s[pick] = rng.choice(special, size=int(pick.sum()))
    return s


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{len(c[1])}d-{i}") for i, c in enumerate(TORCH_2D + TORCH_3D)])
def test_matches_torch(case, torch):
    """Values and indices bitwise, autograd grad_x bitwise (grad_output of multiples of
    1/4: exact sums), given the same _random_samples; the channels_last layout gives the
    transposed results."""
    shape, k, out, dtype, kind = case
    rank = len(k)
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = frac_data(rng, shape, dtype, kind)
    batched = len(shape) == rank + 2
    n, c = (shape[0], shape[1]) if batched else (1, shape[0])
    s = _torch_samples(rng, (n, c), rank, dtype)
    oshape = shape[:len(shape) - rank] + out
    g = frac_data(rng, oshape, dtype, "ints")
    ty, ti, tg = torch_forward_backward(torch, x, k, s, g, output_size=out)
    y, idx = fp("fractional_max_pool")(x, k, out, return_indices=True, random_samples=s)
    assert_exact(y, ty, "values")
    assert_exact(idx, ti, "indices")
    assert_exact(fp("fractional_max_pool_backward")(g, x, k, indices=idx), tg, "grad from indices")
    assert_exact(fp("fractional_max_pool_backward")(g, x, k, random_samples=s, output_size=out), tg,
                 "grad from samples")
    # channels_last: the channel axis moved last in every array
    cax = 1 if batched else 0

    def cl(a):
        return np.ascontiguousarray(np.moveaxis(a, cax, -1))
    y, idx = fp("fractional_max_pool")(cl(x), k, out, return_indices=True, random_samples=s, layout="channels_last")
    assert_exact(y, cl(ty), "channels_last values")
    assert_exact(idx, cl(ti), "channels_last indices")
    assert_exact(fp("fractional_max_pool_backward")(cl(g), cl(x), k, indices=idx, layout="channels_last"), cl(tg),
                 "channels_last grad")


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("rank", [2, 3])
def test_matches_torch_with_normal_gradients(rank, dtype, torch):
    """grad_output of normal values: torch accumulates in output order, as the reference;
    fastpool within a few roundings of both."""
    rng = np.random.default_rng(rank * 10 + (dtype == np.float32))
    shape = (2, 3, 11, 13) if rank == 2 else (2, 3, 6, 7, 9)
    k = (3,) * rank
    out = (5, 6) if rank == 2 else (3, 4, 5)
    x = frac_data(rng, shape, dtype, "ints")  # ties: maxima shared by windows
    s = _torch_samples(rng, (2, 3), rank, dtype)
    g = rng.standard_normal(shape[:2] + out).astype(dtype)
    ty, ti, tg = torch_forward_backward(torch, x, k, s, g, output_size=out)
    y, idx = fp("fractional_max_pool")(x, k, out, return_indices=True, random_samples=s)
    assert_exact(y, ty)
    assert_exact(idx, ti)
    scale = fref.fractional_max_pool_backward(np.abs(g), shape, idx, rank)
    got = fp("fractional_max_pool_backward")(g, x, k, indices=idx)
    assert_close(got, tg, scale, 8 * np.finfo(dtype).eps, "vs torch autograd")
    assert_exact(fref.fractional_max_pool_backward(g, shape, idx, rank), tg, "reference vs torch")


@pytest.mark.parametrize("rank", [2, 3])
def test_matches_torch_channels_last_memory_and_ratio(rank, torch):
    """torch on a channels_last-memory tensor, with output_ratio: fastpool's channels_last
    layout gives torch's values and indices (transposed)."""
    F = torch.nn.functional
    rng = np.random.default_rng(rank)
    for dtype in DTYPES:
        shape = (2, 5, 12, 15) if rank == 2 else (2, 5, 8, 9, 10)
        ratio = (0.5, 0.7) if rank == 2 else (0.5, 0.6, 0.7)
        k = (2,) * rank
        x = frac_data(rng, shape, dtype, "nans")
        s = _torch_samples(rng, (2, 5), rank, dtype)
        fmt = torch.channels_last if rank == 2 else torch.channels_last_3d
        tx = torch.from_numpy(x).contiguous(memory_format=fmt)
        fn = F.fractional_max_pool2d if rank == 2 else F.fractional_max_pool3d
        ty, ti = fn(tx, k, output_ratio=ratio, return_indices=True, _random_samples=torch.from_numpy(s))
        ty, ti = ty.contiguous().numpy(), ti.contiguous().numpy()
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        y, idx = fp("fractional_max_pool")(xl, k, output_ratio=ratio, return_indices=True, random_samples=s,
                                           layout="channels_last")
        assert_exact(y, np.ascontiguousarray(np.moveaxis(ty, 1, -1)), f"{dtype} values")
        assert_exact(idx, np.ascontiguousarray(np.moveaxis(ti, 1, -1)), f"{dtype} indices")
        # and channels_first with the ratio
        y, idx = fp("fractional_max_pool")(x, k, output_ratio=ratio, return_indices=True, random_samples=s)
        assert_exact(y, ty, f"{dtype} cf values")
        assert_exact(idx, ti, f"{dtype} cf indices")


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_interval_rule_matches_torch(dtype, torch):
    """The interval sweep (a quarter of the combos) on torch's 2D W axis and 3D D axis."""
    F = torch.nn.functional
    for j, (I, k, O) in enumerate(interval_combos()[::4]):
        us = interval_samples(I, k, O, dtype)
        C = us.size
        x = np.broadcast_to(np.arange(I, dtype=dtype), (1, C, 1, I)).copy()
        s = np.zeros((1, C, 2), dtype)
        s[0, :, 0] = us
        _, ti = F.fractional_max_pool2d(torch.from_numpy(x), (1, k), output_size=(1, O), return_indices=True,
                                        _random_samples=torch.from_numpy(s))
        np.testing.assert_array_equal(_starts_from_fastpool(I, k, O, us, dtype, 2, 1),
                                      ti.numpy().reshape(C, O) - (k - 1), err_msg=f"2d I={I} k={k} O={O}")
        if O + k - 1 < I:  # torch's 3D rule, which holds on every axis: H = W = 2, kernel 1, output 1
            # (the window at 1, 1); flat index 4 d + 3
            x3 = np.broadcast_to(np.arange(I, dtype=dtype).reshape(I, 1, 1), (1, C, I, 2, 2)).copy()
            s3 = np.zeros((1, C, 3), dtype)
            s3[0, :, 0] = us
            _, ti = F.fractional_max_pool3d(torch.from_numpy(x3), (k, 1, 1), output_size=(O, 1, 1),
                                            return_indices=True, _random_samples=torch.from_numpy(s3))
            ti = ti.numpy().reshape(C, O)
            assert ((ti - 3) % 4 == 0).all()
            np.testing.assert_array_equal(_starts_from_fastpool(I, k, O, us, dtype, 3, 0),
                                          (ti - 3) // 4 - (k - 1), err_msg=f"3d I={I} k={k} O={O}")


def test_torch_3d_refuses_what_fastpool_accepts(torch):
    """output + kernel - 1 == input: torch's 3D raises, its 2D accepts; fastpool accepts
    both, the 3D result the reference's (and, for a depth-1 kernel axis, torch's 2D)."""
    F = torch.nn.functional
    x = frac_data(np.random.default_rng(3), (1, 2, 4, 5, 6), np.float64, "ints")
    s = np.random.default_rng(4).random((1, 2, 3))
    with pytest.raises(RuntimeError):
        F.fractional_max_pool3d(torch.from_numpy(x), 2, output_size=(3, 4, 5), _random_samples=torch.from_numpy(s))
    y, idx = fp("fractional_max_pool3d")(x, 2, (3, 4, 5), return_indices=True, random_samples=s)
    ey, ei = fref.fractional_max_pool(x, (2, 2, 2), (3, 4, 5), random_samples=s)
    assert_exact(y, ey)
    assert_exact(idx, ei)
    # a 2D input with output + kernel - 1 == input: torch's 2D agrees
    x2 = x[:, :, 0]
    s2 = s[:, :, 1:][:, :, ::-1].copy()  # (W, H) order for the 2D call
    ty, ti = F.fractional_max_pool2d(torch.from_numpy(x2), 2, output_size=(4, 5), return_indices=True,
                                     _random_samples=torch.from_numpy(s2))
    y2, i2 = fp("fractional_max_pool2d")(x2, 2, (4, 5), return_indices=True, random_samples=s2)
    assert_exact(y2, ty.numpy())
    assert_exact(i2, ti.numpy())
