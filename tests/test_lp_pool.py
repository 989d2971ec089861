"""LP pooling (ONNX LpPool: the L_p norm of each window), forward and backward.

y = (sum over the window's taps inside the input of |x|^p)^(1/p); padding contributes 0;
geometry exactly as max_pool's (all padding forms, dilation, ceil mode). The geometry
grid of pool_cases (every padding form, dilation, ceil-mode overhangs, 1-pixel inputs,
rank 1-3, both layouts and dtypes) runs on the default backend with p cycling over
integer and non-integer values; a subset on every SIMD path x threads 1 and 2.

Tolerances (the kernels use vector exp/log): relative to y, 2e-5 (float32) / 1e-12
(float64), scaled by max(1, 1/p) (the root amplifies the sum's error by 1/p); the
backward relative to the sum of |terms|, also scaled by max(1, |p - 1|).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool
import reference as ref
from pool_cases import (
    DTYPES,
    GEOMS,
    LAYOUTS,
    RANDOM_CASES,
    UNBATCHED,
    Case,
    Geom,
    assert_close,
    cached,
    fp,
    grid,
    identical_on_every_backend,
    numerical_gradient,
    params,
    transposed_memory,
    views,
)

POW_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
P_VALUES = (2.0, 1.0, 3.0, 2.5, 0.5, 7.0, 4.0, 1.5)


def kernel_volume(case: Case) -> int:
    k = case.geom.kernel_size
    return int(np.prod(k if isinstance(k, tuple) else (k,) * case.geom.rank))


def fwd_rtol(case: Case, p: float) -> float:
    terms = kernel_volume(case)
    base = max(POW_RTOL[np.dtype(case.dtype)], terms * np.finfo(case.dtype).eps / 2)
    return base * max(1.0, 1.0 / p)


def bwd_rtol(case: Case, p: float) -> float:
    return fwd_rtol(case, p) * max(1.0, abs(p - 1.0))


def _pcases(cases, offset: int = 0):
    ps = [P_VALUES[(i + offset) % len(P_VALUES)] for i in range(len(cases))]
    return [pytest.param(c, p, id=f"{c.id}-p{p:g}") for c, p in zip(cases, ps)]


GRID = _pcases(grid(GEOMS))
BACKEND_CASES = _pcases([
    Case(Geom((31,), 3, 2, 1), "channels_first", np.float32, 2, 3),
    Case(Geom((67,), 5, 1, 2), "channels_last", np.float64, 1, 17),
    Case(Geom((8, 67), 3, 2, 1), "channels_first", np.float32, 2, 5),
    Case(Geom((11, 13), (3, 2), (2, 3), ((1, 0), (0, 1)), ceil_mode=True), "channels_last", np.float32, 2, 17),
    Case(Geom((7, 7), 7), "channels_first", np.float64, 1, 33),
    Case(Geom((15, 20), 3, 1, 2, dilation=2), "channels_first", np.float32, 1, 3),
    Case(Geom((6, 8), 4, 3, "same"), "channels_last", np.float64, 2, 3),
    Case(Geom((3, 7, 31), 3, 2, 1), "channels_last", np.float32, 1, 5),
], offset=3)
IDENTITY_CASES = [
    Case(Geom((33, 67), 3, 2, 1), "channels_first", np.float32, 2, 17),
    Case(Geom((33, 67), 3, 2, 1), "channels_last", np.float32, 2, 17),
    Case(Geom((40, 203), (3, 5), 1, (1, 2)), "channels_first", np.float64, 1, 9),
    Case(Geom((7, 7), 3, 1, 1), "channels_first", np.float32, 8, 64),
    Case(Geom((2500,), 7, 2, 3), "channels_first", np.float32, 3, 11),
    Case(Geom((9, 17, 31), 3, 2, 1), "channels_last", np.float64, 2, 19),
]


def ref_lp(case: Case, p: float, kind: str):
    return cached(("lp", case.id, p, kind), lambda: ref.lp_pool(case.data(kind), p, **case.max_kwargs()))


def ref_lp_bwd(case: Case, p: float, kind: str):
    def compute():
        x, g = case.data(kind), case.grad("normal")
        return (ref.lp_pool_backward(g, x, p, **case.max_kwargs()),
                ref.lp_pool_backward(g, x, p, magnitude=True, **case.max_kwargs()))
    return cached(("lp_bwd", case.id, p, kind), compute)


def check(case: Case, p: float, kinds=("normal", "ints")) -> None:
    kw = case.max_kwargs()
    for kind in kinds:  # ints: zeros of both signs, all-zero windows (y = 0), ties
        x = case.data(kind)
        expected = ref_lp(case, p, kind)
        y = fastpool.lp_pool(x, p, **kw)
        assert y.dtype == x.dtype and y.shape == case.out_shape()
        assert_close(y, expected, expected, fwd_rtol(case, p), f"forward {kind}")
        g = case.grad("normal")
        e_g, scale = ref_lp_bwd(case, p, kind)
        gx = fastpool.lp_pool_backward(g, x, p, **kw)
        assert gx.dtype == x.dtype and gx.shape == x.shape
        assert_close(gx, e_g, scale, bwd_rtol(case, p), f"backward {kind}")


# --------------------------------------------------------------------------- grid


@pytest.mark.parametrize("case, p", GRID)
def test_matches_reference(case, p):
    check(case, p)


@pytest.mark.parametrize("case, p", BACKEND_CASES)
def test_every_backend_matches_reference(case, p, backend):
    check(case, p)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 2.5, 0.5])
def test_p_values_on_every_backend(p, backend):
    case = Case(Geom((9, 31), (3, 2), (2, 1), 1, ceil_mode=True), "channels_last", np.float32, 2, 17)
    check(case, p)
    check(Case(Geom((9, 31), 3, 2, 1), "channels_first", np.float64, 2, 3), p)


def _outputs(case: Case):
    x, g = case.data("normal"), case.grad("normal")
    res = {}
    for p in (2.0, 3.0, 2.5):
        res[f"y p={p}"] = fastpool.lp_pool(x, p, **case.max_kwargs())
        res[f"grad p={p}"] = fastpool.lp_pool_backward(g, x, p, **case.max_kwargs())
    return res


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    base = identical_on_every_backend(lambda: _outputs(case))
    e = ref.lp_pool(case.data("normal"), 2.5, **case.max_kwargs())
    assert_close(base["y p=2.5"], e, e, fwd_rtol(case, 2.5))


@pytest.mark.parametrize("case, p", _pcases(RANDOM_CASES[:100], offset=5))
def test_random_geometries_match_reference(case, p):
    check(case, p, kinds=("normal",))


# --------------------------------------------------------------------------- values


def test_values_by_hand():
    x = np.array([[[3.0, -4.0, 0.0, 0.0, 1.0, -1.0]]])
    np.testing.assert_allclose(fastpool.lp_pool1d(x, 2.0, 2), [[[5.0, 0.0, np.sqrt(2.0)]]], rtol=1e-15)
    np.testing.assert_allclose(fastpool.lp_pool1d(x, 1.0, 3, 3), [[[7.0, 2.0]]], rtol=1e-15)
    # padding contributes 0: window (pad, 3) at p=2 is 3
    np.testing.assert_allclose(fastpool.lp_pool1d(x, 2.0, 2, 2, 1), [[[3.0, 4.0, 1.0, 1.0]]], rtol=1e-15)
    # gradient: sign(x) (|x| / y)^(p - 1); 0 where y == 0
    g = np.ones((1, 1, 3))
    np.testing.assert_allclose(fastpool.lp_pool1d_backward(g, x, 2.0, 2),
                               [[[0.6, -0.8, 0.0, 0.0, 1 / np.sqrt(2), -1 / np.sqrt(2)]]], rtol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
def test_zero_windows_and_zero_taps_have_zero_gradient(p, dtype, backend):
    """y == 0 (a window of zeros) and x_i == 0 (|x|^(p-1) is infinite for p < 1) give 0,
    never NaN or inf; the zeros' signs do not matter."""
    x = np.array([[[0.0, -0.0, 0.0, 2.0, 0.0, -0.0]]], dtype)
    y = fastpool.lp_pool1d(x, p, 3)
    np.testing.assert_allclose(y, [[[0.0, 2.0]]])
    gx = fastpool.lp_pool1d_backward(np.ones_like(y), x, p, 3)
    np.testing.assert_array_equal(gx, np.array([[[0, 0, 0, 1, 0, 0]]], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf(dtype, backend):
    x = np.array([[[1.0, np.nan, 2.0, np.inf, -np.inf, 1.0, 3.0, 4.0]]], dtype)
    y = fastpool.lp_pool1d(x, 2.0, 2)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == np.inf and y[0, 0, 2] == np.inf
    np.testing.assert_allclose(y[0, 0, 3], 5.0, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [20.0, 50.0])
def test_large_p_does_not_overflow(p, dtype, backend):
    """|x|^p overflows float32 for |x| = 10, p = 50, but the norm does not: it lies between
    the window's max |x| and K^(1/p) times it."""
    rng = np.random.default_rng(int(p))
    x = rng.uniform(-10, 10, (2, 3, 9, 9)).astype(dtype)
    y = fastpool.lp_pool2d(x, p, 3)
    assert np.isfinite(y).all()
    m = fastpool.max_pool2d(np.abs(x), 3)
    assert (y >= m * (1 - 1e-6)).all() and (y <= m * 9 ** (1 / p) * (1 + 1e-6)).all()
    e = ref.lp_pool(x, p, 3)
    assert_close(y, e, e, POW_RTOL[np.dtype(dtype)])
    g = rng.standard_normal(y.shape).astype(dtype)
    gx = fastpool.lp_pool2d_backward(g, x, p, 3)
    assert np.isfinite(gx).all()
    assert_close(gx, ref.lp_pool_backward(g, x, p, 3), ref.lp_pool_backward(g, x, p, 3, magnitude=True),
                 POW_RTOL[np.dtype(dtype)] * p)


# --------------------------------------------------------------------------- argument forms


@pytest.mark.parametrize("case", params(UNBATCHED))
def test_fixed_rank_forms_and_unbatched(case):
    p = 2.5
    x, g = case.data("normal"), case.grad("normal")
    kw = case.max_kwargs()
    e, e_g = ref.lp_pool(x, p, **kw), ref.lp_pool_backward(g, x, p, **kw)
    scale = ref.lp_pool_backward(g, x, p, magnitude=True, **kw)
    rank = case.geom.rank
    f, fb = fp(f"lp_pool{rank}d"), fp(f"lp_pool{rank}d_backward")
    kw_tuple = dict(kw, kernel_size=(case.geom.kernel_size,) * rank)
    for batched in (True, False):
        xb, gb = (x, g) if batched else (x[0], g[0])
        eb, egb, sb = (e, e_g, scale) if batched else (e[0], e_g[0], scale[0])
        assert_close(f(xb, p, **kw), eb, eb, fwd_rtol(case, p))
        assert_close(fastpool.lp_pool(xb, p, **kw_tuple), eb, eb, fwd_rtol(case, p))
        assert_close(fb(gb, xb, p, **kw), egb, sb, bwd_rtol(case, p))
        assert_close(fastpool.lp_pool_backward(gb, xb, p, **kw_tuple), egb, sb, bwd_rtol(case, p))
    # p as an int, a numpy float and a numpy 0-d array
    for pv in (np.float32(2.5), np.float64(2.5), np.array(2.5)):
        assert_close(f(x, pv, **kw), e, e, fwd_rtol(case, p))
    e2 = ref.lp_pool(x, 2.0, **kw)
    assert_close(f(x, 2, **kw), e2, e2, fwd_rtol(case, 2.0))


STRIDE_CASES = [
    Case(Geom((67,), 3, 2, 1), "channels_first", np.float32, 2, 3),
    Case(Geom((9, 31), (3, 2), (2, 1), 1, ceil_mode=True), "channels_last", np.float64, 2, 17),
    Case(Geom((4, 6, 9), 2, 1, "same"), "channels_first", np.float32, 2, 3),
]


@pytest.mark.parametrize("case", params(STRIDE_CASES))
def test_non_contiguous_inputs_and_out(case, backend):
    p = 3.0
    x, g = case.data("normal"), case.grad("normal")
    before = x.copy()
    kw = case.max_kwargs()
    e, e_g = ref.lp_pool(x, p, **kw), ref.lp_pool_backward(g, x, p, **kw)
    scale = ref.lp_pool_backward(g, x, p, magnitude=True, **kw)
    for name, xv in views(x):
        assert_close(fastpool.lp_pool(xv, p, **kw), e, e, fwd_rtol(case, p), name)
        assert_close(fastpool.lp_pool_backward(g, xv, p, **kw), e_g, scale, bwd_rtol(case, p), name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        assert_close(fastpool.lp_pool_backward(gv, x, p, **kw), e_g, scale, bwd_rtol(case, p), f"grad {name}")
    xv = transposed_memory(x, case.layout)
    assert_close(fastpool.lp_pool(xv, p, **kw), e, e, fwd_rtol(case, p), "transposed memory")
    assert_close(fastpool.lp_pool_backward(g, xv, p, **kw), e_g, scale, bwd_rtol(case, p), "transposed memory")
    out = np.full(e.shape, np.nan, case.dtype)
    assert fastpool.lp_pool(x, p, out=out, **kw) is out
    assert_close(out, e, e, fwd_rtol(case, p), "out")
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fastpool.lp_pool_backward(g, x, p, out=gout, **kw) is gout
    assert_close(gout, e_g, scale, bwd_rtol(case, p), "backward out")


# --------------------------------------------------------------------------- gradients

H = 1e-6


GRAD_GEOMS = [
    pytest.param(Geom((9,), 3, 2, 1), id="1d-k3-s2-p1"),
    pytest.param(Geom((8,), 3, 1, ((2, 0),), dilation=2, ceil_mode=True), id="1d-k3-p(2,0)-d2-ceil"),
    pytest.param(Geom((5, 6), 3, 2, 1, ceil_mode=True), id="2d-k3-s2-p1-ceil"),
    pytest.param(Geom((5, 7), (2, 3), 1, "same"), id="2d-same"),
    pytest.param(Geom((3, 4, 5), 2, 1, ((1, 0), 0, (0, 1))), id="3d-pairs"),
]


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 1.5, 0.7])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom", GRAD_GEOMS)
def test_numerical_gradient(geom, layout, p, rng):
    shape = (2,) + ((3,) + geom.spatial if layout == "channels_first" else geom.spatial + (3,))
    x = rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)  # away from the kink at 0
    kw = dict(geom.kwargs(), layout=layout)
    y = fastpool.lp_pool(x, p, **kw)
    g = rng.standard_normal(y.shape)
    expected = numerical_gradient(lambda v: fastpool.lp_pool(v, p, **kw), x, g, h=H)
    np.testing.assert_allclose(fastpool.lp_pool_backward(g, x, p, **kw), expected, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- torch


def _torch_ok(geom: Geom) -> bool:
    return geom.padding == 0 and geom.dilation == 1 and not geom.ceil_mode


TORCH_CASES = [(c, p) for c, p in (prm.values for prm in GRID) if _torch_ok(c.geom)]


@pytest.mark.parametrize("case, p", [pytest.param(c, p, id=f"{c.id}-p{p:g}") for c, p in TORCH_CASES])
def test_matches_torch_on_non_negative_input(case, p):
    """PyTorch's lp_pool omits the absolute value (and has no padding or dilation): the
    two agree on non-negative input, without padding, in floor mode."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.abs(case.data("normal")) + np.asarray(0.05, case.dtype)  # > 0: torch's gradient at 0 differs
    g = case.grad("normal")
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf.movedim(-1, 1) if case.layout == "channels_last" else leaf
    k, s = case.geom.kernel_size, case.geom.stride
    fn = {1: F.lp_pool1d, 2: F.lp_pool2d, 3: F.lp_pool3d}[case.geom.rank]
    yt = fn(t, p, k, s)
    gt = torch.from_numpy(g.copy())
    yt.backward(gt.movedim(-1, 1) if case.layout == "channels_last" else gt)
    yt = yt.detach()
    y_t = np.ascontiguousarray((yt.movedim(1, -1) if case.layout == "channels_last" else yt).numpy())
    kw = case.max_kwargs()
    y = fastpool.lp_pool(x, p, **kw)
    rtol = 4 * fwd_rtol(case, p)  # torch: avg_pool of x^p, times K, then ^(1/p)
    assert_close(y, y_t, y_t, rtol)
    assert_close(fastpool.lp_pool_backward(g, x, p, **kw), leaf.grad.numpy(),
                 ref.lp_pool_backward(g, x, p, magnitude=True, **kw), 4 * bwd_rtol(case, p))


def _torch_composable(geom: Geom) -> bool:
    """2D, symmetric numeric padding of at most half the kernel, no dilation."""
    if geom.rank != 2 or geom.dilation != 1 or isinstance(geom.padding, str):
        return False
    if isinstance(geom.padding, tuple) and any(isinstance(q, tuple) for q in geom.padding):
        return False
    g = ref.make_geometry(geom.spatial, **geom.kwargs())
    return all(p[0] <= k // 2 for p, k in zip(g.pads, g.kernel))


COMPOSED_CASES = [(c, p) for c, p in (prm.values for prm in GRID) if _torch_composable(c.geom)]


@pytest.mark.parametrize("case, p", [pytest.param(c, p, id=f"{c.id}-p{p:g}") for c, p in COMPOSED_CASES])
def test_matches_torch_composition_with_sign_and_padding(case, p):
    """ONNX's L_p norm composed from torch ops, on signed input with padding and ceil mode:
    avg_pool2d(|x|^p, divisor_override=1) (a zero-padded sum) ^ (1/p), autograd for grad_x."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = case.data("normal")
    g = case.grad("normal")
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf.movedim(-1, 1) if case.layout == "channels_last" else leaf
    geom = ref.make_geometry(case.geom.spatial, **case.geom.kwargs())
    sums = F.avg_pool2d(t.abs().pow(p), geom.kernel, geom.stride, tuple(q[0] for q in geom.pads),
                        ceil_mode=geom.ceil_mode, divisor_override=1)
    yt = sums.pow(1 / p)
    gt = torch.from_numpy(g.copy())
    yt.backward(gt.movedim(-1, 1) if case.layout == "channels_last" else gt)
    yt = yt.detach()
    y_t = np.ascontiguousarray((yt.movedim(1, -1) if case.layout == "channels_last" else yt).numpy())
    kw = case.max_kwargs()
    assert_close(fastpool.lp_pool(x, p, **kw), y_t, y_t, 4 * fwd_rtol(case, p))
    assert_close(fastpool.lp_pool_backward(g, x, p, **kw), leaf.grad.numpy(),
                 ref.lp_pool_backward(g, x, p, magnitude=True, **kw), 4 * bwd_rtol(case, p))
