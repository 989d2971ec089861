"""SoftPool (Stergiou et al. 2021), forward and backward.

y = sum_i w_i x_i with w_i = exp(x_i - m) / sum_j exp(x_j - m) over the window's taps
inside the input (padding takes no part), m the window's maximum; grad_x_i = sum over
the windows holding i of g w_i (1 + x_i - y). Geometry as max_pool's.

* Hand-checked examples: values worked out from the definition (equal taps give their
  mean, [0, ln 3] the weights 1/4 and 3/4, a dominant tap itself; padding, overlap,
  dilation, ceil mode; NaN, +-inf), forward and backward, run on fastpool and on the
  reference (tests/reference.py), so they also check the reference.
* The reference is checked against a brute-force loop over windows and taps.
* The geometry grid of pool_cases (ranks 1-3, every padding form, dilation, ceil-mode
  overhangs, both layouts and dtypes) on normal data, data of multiples of 1/4 (ties,
  equal windows) and data with NaN and +-inf; a subset on every SIMD path x threads 1
  and 2, unbatched inputs and the fixed-rank forms.
* Bitwise identity across SIMD paths and thread counts; numerical gradients; invariants
  (gradients of a window sum to its grad_output, shift invariance, the dominant-tap
  limit is max pooling); large-magnitude inputs; out=, non-contiguous inputs, inputs
  left unchanged; argument errors; PyTorch's composition avg_pool(x e^x) / avg_pool(e^x).

Tolerances: the forward relative to the window's max |x| (ref.soft_pool_scale), the
backward relative to the sum over windows of |g| w_i (1 + |x_i - m|)(1 + |x_i - y| + M)
(ref.soft_pool_backward(magnitude=True)); rtol 1e-5 (float32), 1e-12 (float64).
"""

from __future__ import annotations

import doctest
import importlib
import itertools
import math
from typing import Any, Callable, Dict

import numpy as np
import pytest

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
LN3 = math.log(3.0)
INF, NAN = np.inf, np.nan


def rtol_of(dtype: Any) -> float:
    return RTOL[np.dtype(dtype)]


# --------------------------------------------------------------------------- reference results


def expected(case: Case, kind: str):
    """(y, forward scale, grad_x, backward scale) of the reference, cached per case and kind."""
    def compute():
        x, g, kw = case.data(kind), case.grad("normal"), case.max_kwargs()
        return (ref.soft_pool(x, **kw), ref.soft_pool_scale(x, **kw),
                ref.soft_pool_backward(g, x, **kw), ref.soft_pool_backward(g, x, magnitude=True, **kw))
    return cached(("soft_pool", case.id, kind), compute)


def check(case: Case, kinds=("normal", "ints", "special")) -> None:
    """fastpool's forward and backward against the reference; inputs left unchanged."""
    kw = case.max_kwargs()
    rtol = rtol_of(case.dtype)
    for kind in kinds:
        x, g = case.data(kind), case.grad("normal")
        snap = snapshot(x, g)
        e, scale, e_g, g_scale = expected(case, kind)
        y = fp("soft_pool")(x, **kw)
        assert isinstance(y, np.ndarray) and y.dtype == x.dtype and y.shape == case.out_shape()
        assert y.flags.c_contiguous
        assert_close(y, e, scale, rtol, f"forward {kind}")
        gx = fp("soft_pool_backward")(g, x, **kw)
        assert isinstance(gx, np.ndarray) and gx.dtype == x.dtype and gx.shape == x.shape
        assert gx.flags.c_contiguous
        assert_close(gx, e_g, g_scale, rtol, f"backward {kind}")
        assert_unchanged(snap, kind)


# --------------------------------------------------------------------------- hand-checked

def impl(which: str, name: str) -> Callable[..., Any]:
    return fp(name) if which == "fastpool" else getattr(ref, name)


# (x, kernel_size, extra kwargs, expected y, grad_output, expected grad_x): 1-D rows, every
# value reasoned from the definition. w = e / sum e with e = exp(x - max).
HAND_1D = [
    # equal taps: their mean, weights 1/2
    ("zeros", [0, 0], 2, {}, [0], [1], [0.5, 0.5]),
    ("equal-negative", [-2.5, -2.5, -2.5], 3, {}, [-2.5], [1], [1 / 3, 1 / 3, 1 / 3]),
    # [0, ln 3]: e = (1, 3), w = (1/4, 3/4), y = 3/4 ln 3;
    # grad = w (1 + x - y) = (1/4 (1 - 3/4 ln 3), 3/4 (1 + ln 3 / 4))
    ("ln3", [0, LN3], 2, {}, [0.75 * LN3], [1], [0.25 - 3 / 16 * LN3, 0.75 + 3 / 16 * LN3]),
    ("ln3-grad-2", [LN3, 0], 2, {}, [0.75 * LN3], [2], [1.5 + 3 / 8 * LN3, 0.5 - 3 / 8 * LN3]),
    # a dominant tap: exp(-1000) = 0, y = 1000, the whole gradient to it (1 + 0)
    ("dominant", [0, 1000], 2, {}, [1000], [1], [0, 1]),
    # overlapping windows [0, 0] twice, g = (1, 2): (1/2, 1/2 + 1, 1)
    ("overlap", [0, 0, 0], 2, {"stride": 1}, [0, 0], [1, 2], [0.5, 1.5, 1.0]),
    # padding takes no part: windows [pad, ln3], [ln3, 0], [0, pad] give ln 3 (one tap),
    # 3/4 ln 3, 0; grad of x0 = 1 (alone: w 1, 1 + 0) + 3/4 (1 + ln 3 / 4), of x1 =
    # 1/4 (1 - 3/4 ln 3) + 1
    ("padding", [LN3, 0], 2, {"stride": 1, "padding": 1}, [LN3, 0.75 * LN3, 0], [1, 1, 1],
     [1.75 + 3 / 16 * LN3, 1.25 - 3 / 16 * LN3]),
    # "same" (k=3, s=1 on 3: one pad each side): [pad, 0, ln3] -> 3/4 ln3, [0, ln3, 0] ->
    # e (1, 3, 1): 3/5 ln3, [ln3, 0, pad] -> 3/4 ln3
    ("same", [0, LN3, 0], 3, {"stride": 1, "padding": "same"}, [0.75 * LN3, 0.6 * LN3, 0.75 * LN3], [0, 1, 0],
     [0.2 * (1 - 0.6 * LN3), 0.6 * (1 + 0.4 * LN3), 0.2 * (1 - 0.6 * LN3)]),
    # dilation 2, stride 1: windows (x0, x2) = (0, ln3) and (x1, x3) = (4, 4)
    ("dilation", [0, 4, LN3, 4], 2, {"stride": 1, "dilation": 2}, [0.75 * LN3, 4], [1, 1],
     [0.25 - 3 / 16 * LN3, 0.5, 0.75 + 3 / 16 * LN3, 0.5]),
    # ceil mode: the overhanging window [x4] is kept (one tap: itself, gradient 1)
    ("ceil", [0, 0, LN3, 0, -7], 2, {"ceil_mode": True}, [0, 0.75 * LN3, -7], [1, 1, 1],
     [0.5, 0.5, 0.75 + 3 / 16 * LN3, 0.25 - 3 / 16 * LN3, 1]),
    ("floor", [0, 0, LN3, 0, -7], 2, {}, [0, 0.75 * LN3], [1, 1],
     [0.5, 0.5, 0.75 + 3 / 16 * LN3, 0.25 - 3 / 16 * LN3, 0]),
    # ceil mode with padding 1 on 5: windows [pad, x0], [x1, x2], [x3, x4]; the 4th would
    # start in the right padding and is dropped (PyTorch's rule)
    ("ceil-pad", [5, 0, LN3, LN3, 0], 2, {"padding": 1, "ceil_mode": True}, [5, 0.75 * LN3, 0.75 * LN3], [1, 1, 1],
     [1, 0.25 - 3 / 16 * LN3, 0.75 + 3 / 16 * LN3, 0.75 + 3 / 16 * LN3, 0.25 - 3 / 16 * LN3]),
    # -inf taps: weight 0 and gradient 0 in a window with a finite maximum
    ("neg-inf-tap", [-INF, 1], 2, {}, [1], [1], [0, 1]),
    ("neg-inf-tap-3", [-INF, 0, LN3], 3, {}, [0.75 * LN3], [1], [0, 0.25 - 3 / 16 * LN3, 0.75 + 3 / 16 * LN3]),
    # only -inf: -inf, no gradient; a +inf maximum: +inf, no gradient
    ("all-neg-inf", [-INF, -INF], 2, {}, [-INF], [1], [0, 0]),
    ("pos-inf", [INF, 1], 2, {}, [INF], [1], [0, 0]),
    ("pos-and-neg-inf", [-INF, INF], 2, {}, [INF], [1], [0, 0]),
    # NaN: NaN, and NaN to every tap of the window
    ("nan", [NAN, 1], 2, {}, [NAN], [1], [NAN, NAN]),
    ("nan-after", [1, NAN], 2, {}, [NAN], [1], [NAN, NAN]),
    ("nan-and-inf", [INF, NAN, -INF], 3, {}, [NAN], [1], [NAN, NAN, NAN]),
    # windows next to a special one are unaffected: [nan, 1] then [0, 0]; [inf, 2] then [1, 1]
    ("nan-neighbour", [NAN, 1, 0, 0], 2, {}, [NAN, 0], [1, 1], [NAN, NAN, 0.5, 0.5]),
    ("inf-neighbour", [INF, 2, 1, 1], 2, {}, [INF, 1], [1, 4], [0, 0, 2, 2]),
    # an -inf tap shared by a finite window and an all--inf one (stride 1)
    ("neg-inf-shared", [-INF, -INF, 3], 2, {"stride": 1}, [-INF, 3], [1, 1], [0, 0, 1]),
]


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("label,x,k,kw,y,g,gx", [pytest.param(*h, id=h[0]) for h in HAND_1D])
def test_values_by_hand(label, x, k, kw, y, g, gx, dtype, which):
    f, fb = impl(which, "soft_pool"), impl(which, "soft_pool_backward")
    xa, ga = row(x, dtype), row(g, dtype)
    rtol = 4 * np.finfo(dtype).eps
    got = f(xa, (k,), **kw)
    assert got.dtype == xa.dtype and got.shape == (1, 1, len(y))
    np.testing.assert_allclose(got, row(y, dtype), rtol=rtol, atol=0, err_msg=f"{label} forward")
    gg = fb(ga, xa, (k,), **kw)
    assert gg.dtype == xa.dtype and gg.shape == xa.shape
    np.testing.assert_allclose(gg, row(gx, dtype), rtol=rtol, atol=8 * np.finfo(dtype).eps,
                               err_msg=f"{label} backward")


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_2d_3d_and_layouts_by_hand(dtype, which):
    f, fb = impl(which, "soft_pool"), impl(which, "soft_pool_backward")
    rtol, atol = 4 * np.finfo(dtype).eps, 8 * np.finfo(dtype).eps
    # 2x2 window [[0, 0], [0, ln3]]: e = (1, 1, 1, 3), sum 6: y = 3 ln3 / 6 = ln3 / 2;
    # grad: 1/6 (1 - ln3/2) for each zero, 1/2 (1 + ln3/2) for ln3 (sum 1)
    plane = np.array([[0, 0], [0, LN3]], dtype)
    gz, gl = (1 - LN3 / 2) / 6, (1 + LN3 / 2) / 2
    ex_g = np.array([[gz, gz], [gz, gl]], dtype)
    np.testing.assert_allclose(f(plane[None, None], 2), np.full((1, 1, 1, 1), LN3 / 2, dtype), rtol=rtol)
    np.testing.assert_allclose(fb(np.ones((1, 1, 1, 1), dtype), plane[None, None], 2)[0, 0], ex_g, rtol=rtol, atol=atol)
    # channels_last, unbatched (H, W, C): the second channel is the plane + 10 (y + 10,
    # the same weights: the same gradient)
    xl = np.stack([plane, plane + 10], axis=-1)
    yl = f(xl, (2, 2), layout="channels_last")
    assert yl.shape == (1, 1, 2)
    np.testing.assert_allclose(yl[0, 0], np.array([LN3 / 2, 10 + LN3 / 2], dtype), rtol=rtol)
    gl_ = fb(np.ones((1, 1, 2), dtype), xl, (2, 2), layout="channels_last")
    np.testing.assert_allclose(gl_[..., 0], ex_g, rtol=rtol, atol=atol)
    np.testing.assert_allclose(gl_[..., 1], ex_g, rtol=16 * np.finfo(dtype).eps * 10, atol=16 * atol)
    # 3-D 2x2x2 window of zeros with one ln3: e sums to 7 + 3 = 10, y = 3 ln3 / 10
    cube = np.zeros((2, 2, 2), dtype)
    cube[1, 0, 1] = LN3
    np.testing.assert_allclose(f(cube[None, None], 2).ravel(), [0.3 * LN3], rtol=rtol)
    gc = fb(np.ones((1, 1, 1, 1, 1), dtype), cube[None, None], 2)[0, 0]
    ex = np.full((2, 2, 2), 0.1 * (1 - 0.3 * LN3))
    ex[1, 0, 1] = 0.3 * (1 + 0.7 * LN3)
    np.testing.assert_allclose(gc, ex.astype(dtype), rtol=rtol, atol=atol)


@pytest.mark.parametrize("which", IMPLS)
def test_large_magnitudes_by_hand(which):
    f, fb = impl(which, "soft_pool"), impl(which, "soft_pool_backward")
    s = 1 / (1 + math.e)  # the weight of the smaller of two taps 1 apart
    for base in (1e4, -1e4):
        x32 = row([base, base + 1], np.float32)
        y = f(x32, (2,))
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y.ravel(), [base + 1 - s], rtol=0, atol=2e-3)  # float32 spacing at 1e4: 1e-3
        gx = fb(np.ones_like(y), x32, (2,))
        # w (1 + x - y): s (1 - (1 - s)) = s^2 and (1 - s)(1 + s); y's float32 rounding
        # (5e-4) moves them by up to 5e-4 times w
        np.testing.assert_allclose(gx.ravel(), [s * s, (1 - s) * (1 + s)], rtol=0, atol=1e-3)
    # 1e30 and 1e29 in float32: exp(-9e29) = 0: the maximum itself, the whole gradient to it
    x = row([1e30, 1e29, -1e30, -1e30], np.float32)
    y = f(x, (2,))
    np.testing.assert_array_equal(y.ravel(), np.array([1e30, -1e30], np.float32))
    np.testing.assert_array_equal(fb(np.ones_like(y), x, (2,)).ravel(), [1, 0, 0.5, 0.5])
    x = row([1e300, -1e300, 1e300 * (1 + 1e-15), 1e300], np.float64)
    np.testing.assert_array_equal(f(x, (2,)).ravel(), [1e300, 1e300 * (1 + 1e-15)])


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_equal_taps_near_the_top_of_the_range(dtype):
    """Equal taps give their mean for every finite value, also where K * max|x|
    overflows the dtype (the docstring: 'exact for any input scale')."""
    big = np.finfo(dtype).max * 0.75  # two of them sum past the largest finite value
    x = row([big, big, -big, -big], dtype)
    y = fp("soft_pool")(x, (2,))
    np.testing.assert_array_equal(y, row([big, -big], dtype))
    np.testing.assert_array_equal(fp("soft_pool_backward")(np.ones_like(y), x, (2,)), row([0.5] * 4, dtype))
    x = np.full((1, 1, 3, 3), np.finfo(dtype).max / 4, dtype)  # 9 taps: sum e x = 2.25 max
    np.testing.assert_array_equal(fp("soft_pool")(x, 3), x[:, :, :1, :1])


def test_list_input_and_docstring_examples():
    y = fp("soft_pool")([[[0.0, LN3]]], (2,))  # (C, W) of Python floats: float64
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_allclose(y, [[[0.75 * LN3]]], rtol=1e-15)
    mod = importlib.import_module("fastpool.soft_pool")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 2 and result.failed == 0


# --------------------------------------------------------------------------- the reference itself


def _brute(x: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode):
    """(y, grad_x for grad_output 1 + index) of x (N, C, *spatial), float64, by loops in
    Python floats straight from the definition (only the output sizes and pads from
    ref.make_geometry)."""
    geom = ref.make_geometry(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    n, c = x.shape[:2]
    y = np.empty((n, c) + geom.out_sizes)
    gx = np.zeros(x.shape)
    for b, ch in itertools.product(range(n), range(c)):
        for k_out, o in enumerate(itertools.product(*(range(s) for s in geom.out_sizes))):
            g = 1.0 + k_out
            taps = []
            for t in itertools.product(*(range(k) for k in geom.kernel)):
                pos = tuple(o[a] * geom.stride[a] - geom.pads[a][0] + t[a] * geom.dilation[a]
                            for a in range(geom.rank))
                if all(0 <= p < size for p, size in zip(pos, geom.in_sizes)):
                    taps.append((b, ch) + pos)
            vals = [float(x[p]) for p in taps]
            if any(math.isnan(v) for v in vals):
                y[(b, ch) + o] = math.nan
                for p in taps:
                    gx[p] = math.nan
                continue
            m = max(vals)
            if math.isinf(m):
                y[(b, ch) + o] = m
                continue
            e = [math.exp(v - m) for v in vals]
            s0 = math.fsum(e)
            yy = math.fsum(ei * v for ei, v in zip(e, vals) if ei > 0) / s0
            y[(b, ch) + o] = yy
            for p, ei, v in zip(taps, e, vals):
                if ei > 0:
                    gx[p] += g * ei / s0 * (1 + (v - yy))
    return y, gx


REF_GEOMS = [
    Geom((7,), 3, 2, 1),
    Geom((6,), 2, 1, ((2, 0),), dilation=2, ceil_mode=True),
    Geom((5,), 4, 3, 2, ceil_mode=True),
    Geom((9,), 3, 2, "same"),
    Geom((4, 5), (2, 3), (1, 2), (1, 1)),
    Geom((5, 6), 2, 2, ((1, 0), (0, 1)), dilation=(2, 1), ceil_mode=True),
    Geom((3, 3, 4), 2, 1, ((1, 0), 0, (0, 1))),
]


@pytest.mark.parametrize("geom", [pytest.param(g, id=g.id) for g in REF_GEOMS])
@pytest.mark.parametrize("kind", ["normal", "ints", "special"])
def test_reference_matches_brute_force(geom, kind):
    case = Case(geom, "channels_first", np.float64, 2, 2)
    x = case.data(kind, "brute")
    kw = geom.kwargs()
    y, gx = _brute(x, **kw)
    g = (1.0 + np.arange(y[0, 0].size)).reshape(y.shape[2:])
    g = np.broadcast_to(g, y.shape).copy()
    np.testing.assert_allclose(ref.soft_pool(x, **kw), y, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ref.soft_pool_backward(g, x, **kw), gx, rtol=1e-13, atol=1e-14)
    # channels_last and unbatched give the same numbers
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(ref.soft_pool(xl, layout="channels_last", **kw),
                                  np.moveaxis(ref.soft_pool(x, **kw), 1, -1))
    np.testing.assert_array_equal(ref.soft_pool(x[1], **dict(kw, kernel_size=_tuple(geom))), ref.soft_pool(x, **kw)[1])


def _tuple(geom: Geom):
    k = geom.kernel_size
    return k if isinstance(k, tuple) else (k,) * geom.rank


# --------------------------------------------------------------------------- grid

GRID = grid(GEOMS)


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case):
    check(case)




@pytest.mark.parametrize("case", params(WINDOW_BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check(case)


@pytest.mark.parametrize("case", params(UNBATCHED))
def test_unbatched_and_fixed_rank_forms(case, backend):
    """(C, *spatial) / (*spatial, C) inputs, and soft_pool{1,2,3}d[_backward] with an int
    kernel_size, give the batched generic results."""
    rank = case.geom.rank
    kw = case.max_kwargs()
    kw_tuple = dict(kw, kernel_size=_tuple(case.geom))
    rtol = rtol_of(case.dtype)
    f, fb = fp(f"soft_pool{rank}d"), fp(f"soft_pool{rank}d_backward")
    for kind in ("normal", "special"):
        x, g = case.data(kind), case.grad("normal")
        e, scale, e_g, g_scale = expected(case, kind)
        for batched in (True, False):
            xb, gb = (x, g) if batched else (x[0], g[0])
            eb, sb, egb, gsb = (e, scale, e_g, g_scale) if batched else (e[0], scale[0], e_g[0], g_scale[0])
            assert_close(f(xb, **kw), eb, sb, rtol, f"soft_pool{rank}d {kind} batched={batched}")
            assert_close(fp("soft_pool")(xb, **kw_tuple), eb, sb, rtol, f"soft_pool {kind} batched={batched}")
            assert_close(fb(gb, xb, **kw), egb, gsb, rtol, f"soft_pool{rank}d_backward {kind} batched={batched}")
            assert_close(fp("soft_pool_backward")(gb, xb, **kw_tuple), egb, gsb, rtol,
                         f"soft_pool_backward {kind} batched={batched}")


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


def _outputs(case: Case) -> Dict[str, np.ndarray]:
    kw = case.max_kwargs()
    res = {}
    for kind in ("normal", "special"):
        x, g = case.data(kind), case.grad("normal")
        res[f"y {kind}"] = fp("soft_pool")(x, **kw)
        res[f"grad {kind}"] = fp("soft_pool_backward")(g, x, **kw)
    return res


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    """Every SIMD path x threads 1, 2, 3: the same bits as the first (scalar, 1 thread)."""
    base = identical_on_every_backend(lambda: _outputs(case))
    e, scale, e_g, g_scale = expected(case, "normal")
    assert_close(base["y normal"], e, scale, rtol_of(case.dtype), "forward")
    assert_close(base["grad normal"], e_g, g_scale, rtol_of(case.dtype), "backward")


# --------------------------------------------------------------------------- invariants and gradients

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
def test_numerical_gradient(geom, layout, rng):
    x = 2 * rng.standard_normal(_shape(geom, layout))
    kw = dict(geom.kwargs(), layout=layout)
    y = fp("soft_pool")(x, **kw)
    g = rng.standard_normal(y.shape)
    num = numerical_gradient(lambda v: fp("soft_pool")(v, **kw), x, g, h=1e-6)
    got = fp("soft_pool_backward")(g, x, **kw)
    assert np.abs(num).max() > 0.1
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_invariants(layout, dtype, backend):
    """sum_i w_i (1 + x_i - y) = 1: the gradient of a window sums to its grad_output, so
    all of grad_x sums to all of grad_output; y lies between the window's min and max;
    adding c to x adds c to y and leaves the gradient unchanged (padding is no tap)."""
    geom = Geom((9, 11), 3, 2, 1, ceil_mode=True)  # overlapping, padded, an overhang
    case = Case(geom, layout, dtype, 2, 5)
    kw = case.max_kwargs()
    x, g = case.data("normal"), case.grad("normal")
    y = fp("soft_pool")(x, **kw)
    gx = fp("soft_pool_backward")(g, x, **kw)
    tol = 100 * np.finfo(dtype).eps * np.abs(g).sum()
    assert abs(gx.astype(np.float64).sum() - g.astype(np.float64).sum()) <= tol
    hi = fp("max_pool")(x, **kw)
    lo = -fp("max_pool")(-x, **kw)
    eps = 4 * np.finfo(dtype).eps * np.abs(x).max()
    assert (y <= hi + eps).all() and (y >= lo - eps).all()
    assert (y < hi).any() and (y > lo).any()
    c = np.asarray(3.0, dtype)
    y2 = fp("soft_pool")(x + c, **kw)
    np.testing.assert_allclose(y2, y + c, rtol=0, atol=10 * rtol_of(dtype))
    np.testing.assert_allclose(fp("soft_pool_backward")(g, x + c, **kw), gx, rtol=0,
                               atol=10 * rtol_of(dtype) * np.abs(g).max())


DOMINANT = [
    Case(Geom((9, 11), 3, 2, 1, ceil_mode=True), "channels_first", np.float32, 2, 3),
    Case(Geom((9, 11), 2, 2, ((1, 0), (0, 1)), dilation=2), "channels_last", np.float32, 1, 17),
    Case(Geom((31,), 4, 3, "same"), "channels_first", np.float64, 2, 5),
    Case(Geom((4, 5, 6), 2, 2, 1, ceil_mode=True), "channels_last", np.float64, 1, 3),
]


@pytest.mark.parametrize("case", params(DOMINANT))
def test_dominant_taps_give_max_pooling(case, backend):
    """Inputs spread over +-1e30: every window's maximum dominates (exp(-1e22) = 0), so
    SoftPool is max pooling and its gradient max pooling's (overlapping windows too:
    both sum each window's grad_output at its maximum); nothing overflows."""
    rng = case.rng("dominant")
    x = rng.uniform(-1e30, 1e30, case.shape).astype(case.dtype)
    kw = case.max_kwargs()
    y = fp("soft_pool")(x, **kw)
    assert np.isfinite(y).all()
    m, idx = fp("max_pool")(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y, m)
    g = case.grad("normal")
    # the same sums of grad_output values, maybe added in another order: within a few
    # roundings of the sum of |terms|
    assert_close(fp("soft_pool_backward")(g, x, **kw), fp("max_pool_backward")(g, x, indices=idx, **kw),
                 fp("max_pool_backward")(np.abs(g), x, indices=idx, **kw), 4 * np.finfo(case.dtype).eps, "backward")


LARGE = [
    Case(Geom((9, 31), 3, 2, 1), "channels_first", np.float32, 2, 3),
    Case(Geom((9, 31), (3, 2), 1, "same"), "channels_last", np.float32, 1, 17),
    Case(Geom((67,), 5, 1, 2, dilation=2, ceil_mode=True), "channels_first", np.float32, 2, 5),
    Case(Geom((4, 6, 9), 3, 2, 1), "channels_last", np.float64, 1, 3),
]


@pytest.mark.parametrize("base", [1e4, -1e4])
@pytest.mark.parametrize("case", params(LARGE))
def test_large_magnitudes_are_stable(case, base, backend):
    """Inputs around +-1e4 (exp(1e4) overflows, exp(-1e4) underflows): finite results, the
    reference's within rtol of max|x|, and y - base the SoftPool of x - base (the
    weights only see differences) to within the float32 spacing at 1e4."""
    rng = case.rng(f"large{base}")
    d = 3 * rng.standard_normal(case.shape)
    x = (base + d).astype(case.dtype)
    kw = case.max_kwargs()
    rtol = rtol_of(case.dtype)
    y = fp("soft_pool")(x, **kw)
    assert np.isfinite(y).all()
    assert_close(y, ref.soft_pool(x, **kw), ref.soft_pool_scale(x, **kw), rtol, "forward")
    y_small = ref.soft_pool((x.astype(np.float64) - base), **kw)  # exact differences, small values
    spacing = float(np.spacing(np.asarray(abs(base), case.dtype)))
    taps = int(np.prod(_tuple(case.geom)))
    np.testing.assert_allclose(y.astype(np.float64) - base, y_small, rtol=0, atol=(2 + taps) * spacing)
    g = case.grad("normal")
    gx = fp("soft_pool_backward")(g, x, **kw)
    assert np.isfinite(gx).all()
    assert_close(gx, ref.soft_pool_backward(g, x, **kw), ref.soft_pool_backward(g, x, magnitude=True, **kw), rtol,
                 "backward")
    assert abs(gx.astype(np.float64).sum() - g.astype(np.float64).sum()) <= 1e-2 * np.abs(g).sum()


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    """out= (starting as NaN) is written in full and returned, forward and backward."""
    x, g = case.data("normal"), case.grad("normal")
    kw = case.max_kwargs()
    e, scale, e_g, g_scale = expected(case, "normal")
    snap = snapshot(x, g)
    out = np.full(e.shape, np.nan, case.dtype)
    assert fp("soft_pool")(x, out=out, **kw) is out
    assert_close(out, e, scale, rtol_of(case.dtype), "out")
    np.testing.assert_array_equal(out, fp("soft_pool")(x, **kw))
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fp("soft_pool_backward")(g, x, out=gout, **kw) is gout
    assert_close(gout, e_g, g_scale, rtol_of(case.dtype), "backward out")
    np.testing.assert_array_equal(gout, fp("soft_pool_backward")(g, x, **kw))
    # out inside a larger buffer (a canary of NaN around it): only out is written
    buf = np.full(2 * out.size + 64, np.nan, case.dtype)
    view = buf[32:32 + out.size].reshape(out.shape)
    assert fp("soft_pool")(x, out=view, **kw) is view
    np.testing.assert_array_equal(view, out)
    assert np.isnan(buf[:32]).all() and np.isnan(buf[32 + out.size:]).all()
    # a non-contiguous out is refused, naming out
    big = np.full(e.shape[:-1] + (2 * e.shape[-1],), np.nan, case.dtype)
    with pytest.raises(ValueError, match=r"\bout\b"):
        fp("soft_pool")(x, out=big[..., ::2], **kw)
    assert np.isnan(big).all()
    assert_unchanged(snap, "out=")


@pytest.mark.parametrize("case", params(OUT_CASES[:3]))
def test_non_contiguous_inputs(case, backend):
    """Strided, reversed, Fortran-order, read-only, unaligned and transposed-memory x and
    grad_output: the same results, bitwise; inputs unchanged."""
    kw = case.max_kwargs()
    x, g = case.data("special"), case.grad("normal")
    y = fp("soft_pool")(x, **kw)
    gx = fp("soft_pool_backward")(g, x, **kw)
    e, scale, e_g, g_scale = expected(case, "special")
    assert_close(y, e, scale, rtol_of(case.dtype))
    assert_close(gx, e_g, g_scale, rtol_of(case.dtype))
    xs = dict(views(x))
    gs = dict(views(g))
    xs["transposed-memory"] = transposed_memory(x, case.layout)
    gs["transposed-memory"] = transposed_memory(g, case.layout)
    for name in xs:
        xv, gv = xs[name], gs[name]
        assert not (xv.flags.c_contiguous and xv.flags.aligned and xv.flags.writeable), name
        snap = snapshot(xv, gv, x, g)
        np.testing.assert_array_equal(fp("soft_pool")(xv, **kw), y, err_msg=name)
        np.testing.assert_array_equal(fp("soft_pool_backward")(g, xv, **kw), gx, err_msg=f"{name} x")
        np.testing.assert_array_equal(fp("soft_pool_backward")(gv, x, **kw), gx, err_msg=f"{name} grad")
        np.testing.assert_array_equal(fp("soft_pool_backward")(gv, xv, **kw), gx, err_msg=f"{name} both")
        assert_unchanged(snap, name)


# --------------------------------------------------------------------------- errors

X = np.zeros((1, 2, 5, 6), np.float32)
GO = np.ones((1, 2, 2, 3), np.float32)  # the output of kernel_size 2


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _overlap_forward():
    buf = np.zeros(X.size + 8, np.float32)
    xo = buf[:X.size].reshape(X.shape)
    return fp("soft_pool")(xo, 1, out=buf[8:8 + X.size].reshape(X.shape))


def _overlap_backward(which: str):
    x = X.copy()
    g = GO.copy()
    if which == "x":
        return fp("soft_pool_backward")(g, x, 2, out=x)
    buf = np.zeros(X.size, np.float32)
    gv = buf[:GO.size].reshape(GO.shape)
    return fp("soft_pool_backward")(gv, x, 2, out=buf.reshape(X.shape))


def _sp(*a, **k):
    return fp("soft_pool")(*a, **k)


def _spb(*a, **k):
    return fp("soft_pool_backward")(*a, **k)


E, T = ValueError, TypeError
ERRORS = [
    # x
    ("x-object", lambda: _sp(object(), 2), T, r"\bx\b"),
    ("x-int32", lambda: _sp(X.astype(np.int32), 2), T, _all(r"\bx\b", "int32")),
    ("x-float16", lambda: _sp(X.astype(np.float16), 2), T, _all(r"\bx\b", "float16")),
    ("x-bool", lambda: _sp(X.astype(bool), 2), T, "bool"),
    ("x-complex", lambda: _sp(X.astype(np.complex64), 2), T, "complex"),
    ("x-int-backward", lambda: _spb(GO, X.astype(np.int64), 2), T, _all(r"\bx\b", "int64")),
    ("x-ndim-low", lambda: _sp(X[0, 0], (2, 2)), E, r"\bx\b"),
    ("x-ndim-high", lambda: fp("soft_pool1d")(X, 2), E, r"\bx\b"),
    ("x-ndim-3d", lambda: fp("soft_pool3d")(X[0], 2), E, r"\bx\b"),
    ("x-zero-size", lambda: _sp(np.zeros((1, 0, 5, 6), np.float32), 2), E, r"(?i)zero|empty|size"),
    # kernel_size
    ("kernel-zero", lambda: _sp(X, 0), E, "kernel_size"),
    ("kernel-negative", lambda: _sp(X, (2, -1)), E, "kernel_size"),
    ("kernel-float", lambda: _sp(X, 2.5), T, "kernel_size"),
    ("kernel-length", lambda: fp("soft_pool2d")(X, (2, 2, 2)), E, "kernel_size"),
    ("kernel-too-big", lambda: _sp(X, (7, 7)), E, "kernel_size"),
    ("kernel-none", lambda: _sp(X, None), (E, T), "kernel_size"),
    ("kernel-backward", lambda: _spb(GO, X, 0), E, "kernel_size"),
    # stride
    ("stride-zero", lambda: _sp(X, 2, 0), E, "stride"),
    ("stride-negative", lambda: _sp(X, 2, (1, -2)), E, "stride"),
    ("stride-length", lambda: _sp(X, (2, 2), (1, 1, 1)), E, "stride"),
    ("stride-float", lambda: _sp(X, 2, 1.5), T, "stride"),
    # padding
    ("padding-negative", lambda: _sp(X, 2, 1, -1), E, "padding"),
    ("padding-string", lambda: _sp(X, 2, 1, "full"), E, _all("padding", "full")),
    ("padding-length", lambda: _sp(X, (2, 2), 1, (1, 1, 1)), E, "padding"),
    ("padding-window-in-padding", lambda: _sp(X, 2, 1, 2), E, "padding"),
    ("padding-float", lambda: _sp(X, 2, 1, 0.5), T, "padding"),
    # dilation
    ("dilation-zero", lambda: _sp(X, 2, 1, 0, 0), E, "dilation"),
    ("dilation-length", lambda: _sp(X, (2, 2), 1, 0, (1, 1, 1)), E, "dilation"),
    ("dilation-too-big", lambda: _sp(X, 2, 1, 0, 6), E, "dilation"),
    # ceil_mode / layout
    ("ceil-mode-string", lambda: _sp(X, 2, ceil_mode="yes"), T, "ceil_mode"),
    ("layout-bad", lambda: _sp(X, 2, layout="NHWC"), E, _all("layout", "NHWC")),
    ("layout-bad-backward", lambda: _spb(GO, X, 2, layout="cl"), E, "layout"),
    # grad_output
    ("grad-shape", lambda: _spb(np.ones((1, 2, 3, 3), np.float32), X, 2), E, "grad_output"),
    ("grad-shape-unbatched", lambda: _spb(GO[0], X, 2), E, "grad_output"),
    ("grad-dtype", lambda: _spb(GO.astype(np.float64), X, 2), T, "grad_output"),
    ("grad-int", lambda: _spb(GO.astype(np.int32), X, 2), T, "grad_output"),
    ("grad-shape-2d-form", lambda: fp("soft_pool2d_backward")(np.ones((1, 2, 2, 2), np.float32), X, 2), E,
     "grad_output"),
    # out
    ("out-shape", lambda: _sp(X, 2, out=np.zeros((1, 2, 3, 3), np.float32)), E, r"\bout\b"),
    ("out-dtype", lambda: _sp(X, 2, out=np.zeros(GO.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only", lambda: _sp(X, 2, out=_read_only(GO.shape)), E, r"\bout\b"),
    ("out-overlaps-x", _overlap_forward, E, r"\bout\b"),
    ("out-is-x", lambda: (lambda a: _sp(a, (1, 1), out=a))(X.copy()), E, r"\bout\b"),
    ("out-shape-backward", lambda: _spb(GO, X, 2, out=np.zeros(GO.shape, np.float32)), E, r"\bout\b"),
    ("out-dtype-backward", lambda: _spb(GO, X, 2, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only-backward", lambda: _spb(GO, X, 2, out=_read_only(X.shape)), E, r"\bout\b"),
    ("out-is-x-backward", lambda: _overlap_backward("x"), E, r"\bout\b"),
    ("out-overlaps-grad", lambda: _overlap_backward("grad"), E, r"\bout\b"),
]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_errors_leave_out_untouched():
    out = np.full(GO.shape, 7.0, np.float32)
    with pytest.raises(TypeError):
        fp("soft_pool")(X.astype(np.int32), 2, out=out)
    with pytest.raises(ValueError):
        fp("soft_pool")(X, 2, padding=-1, out=out)
    np.testing.assert_array_equal(out, 7.0)


# --------------------------------------------------------------------------- torch



@pytest.mark.parametrize("case", params(WINDOW_TORCH_CASES))
def test_matches_torch_composition(case):
    """SoftPool composed from torch ops, avg_pool(x e^x) / avg_pool(e^x) (zero padding
    adds nothing to either sum, the divisors cancel), on |x| < 5; autograd for grad_x."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = case.rng("torch")
    x = rng.uniform(-4.9, 4.9, case.shape).astype(case.dtype)
    g = case.grad("normal")
    geom = case.geom
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[geom.rank]
    cl = case.layout == "channels_last"
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf.movedim(-1, 1) if cl else leaf
    k, s = geom.kernel_size, geom.stride if geom.stride is not None else geom.kernel_size
    e = torch.exp(t)
    yt = avg(t * e, k, s, geom.padding, ceil_mode=geom.ceil_mode) / avg(e, k, s, geom.padding,
                                                                         ceil_mode=geom.ceil_mode)
    gt = torch.from_numpy(g.copy())
    yt.backward(gt.movedim(-1, 1) if cl else gt)
    yt = yt.detach()
    y_t = np.ascontiguousarray((yt.movedim(1, -1) if cl else yt).numpy())
    kw = case.max_kwargs()
    assert y_t.shape == case.out_shape()
    rtol = 4 * rtol_of(case.dtype)
    y = fp("soft_pool")(x, **kw)
    assert_close(y, y_t, ref.soft_pool_scale(x, **kw), rtol, "forward vs torch")
    gx = fp("soft_pool_backward")(g, x, **kw)
    assert_close(gx, leaf.grad.numpy(), ref.soft_pool_backward(g, x, magnitude=True, **kw), rtol,
                 "backward vs torch autograd")
