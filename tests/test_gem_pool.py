"""GeM (generalized mean) pooling, forward and backward (grad_x and grad_p).

y = (sum over the window's taps inside the input of max(x, eps)^p / D)^(1/p); global by
default (output like global_avg_pool, rank/keepdims), windowed when kernel_size is given
(output like avg_pool; D = taps inside the input, or the avg_pool rule with
count_include_pad=True). p is a float > 0 or one value per channel.

Grid: global over 1-pixel to 56x56 planes, rank 1-3, and windowed over the pool_cases
geometries, both layouts and dtypes, p cycling over 1, 2, 3, 4, 2.5, 0.5 and per-channel
arrays; on the default backend, a subset on every SIMD path x threads 1 and 2.

Tolerances (vector exp/log): y relative 2e-5 (float32) / 1e-12 (float64), times
max(1, 1/p) and at least the K u bound of a K-term float32 sum; grad_x relative to the
sum of |terms|, also times max(1, |p - 1|); grad_p relative to the sum of the |terms| of
the spec's formula y (S_ln / (p S) - ln(M) / p^2) (whose two parts may cancel), and at
least the bound of the sum over the batch and channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pytest

import fastpool
import reference as ref
from bin_cases import PlaneCase, cycled
from pool_cases import (
    CHANNELS,
    DTYPES,
    GEOMS,
    LAYOUTS,
    RANDOM_CASES,
    RTOL,
    Geom,
    assert_bitwise_equal,
    assert_close,
    cached,
    identical_on_every_backend,
    numerical_gradient,
    params,
    transposed_memory,
    views,
)

POW_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
EPS = 1e-6


@dataclass(frozen=True)
class GemCase(PlaneCase):
    p: Any = 3.0  # a float, or "chan" for a per-channel array
    window: Optional[Geom] = None  # None: global
    cip: bool = False
    keepdims: bool = False

    @property
    def id(self) -> str:
        s = f"{self.rank}d-{self.variant_id}-{self.sizes_id}"
        s += "-global" if self.window is None else "-" + self.window.id.split("-", 1)[1]
        s += f"-p{self.p}" if isinstance(self.p, str) else f"-p{self.p:g}"
        if self.cip:
            s += "-cip"
        if self.keepdims:
            s += "-keepdims"
        return s

    def p_value(self):
        if self.p == "chan":
            rng = np.random.default_rng(self.channels)
            return np.round(rng.uniform(0.5, 5.0, self.channels), 2)
        return float(self.p)

    @property
    def p_min(self) -> float:
        return float(np.min(self.p_value()))

    @property
    def p_max(self) -> float:
        return float(np.max(self.p_value()))

    def kw(self):
        if self.window is None:
            return dict(keepdims=self.keepdims, layout=self.layout)
        return dict(self.window.kwargs(), count_include_pad=self.cip, layout=self.layout)

    @property
    def taps(self) -> int:
        if self.window is None:
            return self.plane
        k = self.window.kernel_size
        return int(np.prod(k if isinstance(k, tuple) else (k,) * self.rank))

    def data(self, kind: str) -> np.ndarray:
        rng = self.rng(kind)
        if kind == "normal":  # about half clamped to eps
            return rng.standard_normal(self.shape).astype(self.dtype)
        if kind == "pos":
            return rng.uniform(0.05, 3.0, self.shape).astype(self.dtype)
        raise ValueError(kind)

    def out_shape(self):
        return cached(("gem_shape", self.id), lambda: ref.gem_pool(self.data("pos"), self.p_value(), **self.kw()).shape)

    def grad(self) -> np.ndarray:
        return self.rng("grad").standard_normal(self.out_shape()).astype(self.dtype)

    # tolerances
    def fwd_rtol(self) -> float:
        base = max(POW_RTOL[np.dtype(self.dtype)], self.taps * np.finfo(self.dtype).eps / 2)
        return base * max(1.0, 1.0 / self.p_min)

    def bwd_rtol(self) -> float:
        return self.fwd_rtol() * max(1.0, abs(self.p_max - 1.0), abs(self.p_min - 1.0))

    def gradp_rtol(self, grad_p_terms: int) -> float:
        return max(self.bwd_rtol(), grad_p_terms * np.finfo(self.dtype).eps / 2)


P_CYCLE = (3.0, 1.0, 2.0, 4.0, 2.5, 0.5, "chan")
GLOBAL_SPATIAL = [(1,), (7,), (67,), (1, 1), (7, 7), (13, 13), (5, 31), (3, 1), (56, 56), (1, 1, 1), (3, 5, 7),
                  (4, 6, 17)]
GRID = [GemCase(sp, layout, dtype, 1 + k % 2, CHANNELS[k % 4], P_CYCLE[k % len(P_CYCLE)], keepdims=bool(k % 3 == 0))
        for k, sp, layout, dtype in cycled(GLOBAL_SPATIAL, stride=4)]
GRID += [GemCase(geom.spatial, layout, dtype, 1 + k % 2, CHANNELS[(k + 1) % 4], P_CYCLE[k % len(P_CYCLE)],
                 window=geom, cip=bool(k % 2)) for k, geom, layout, dtype in cycled(GEOMS[::2], stride=4)]
BACKEND_CASES = [
    GemCase((7, 7), "channels_first", np.float32, 2, 17, 3.0),
    GemCase((13, 13), "channels_last", np.float32, 2, 33, 2.5, keepdims=True),
    GemCase((67,), "channels_first", np.float64, 1, 3, "chan"),
    GemCase((3, 5, 7), "channels_last", np.float64, 2, 5, 4.0),
    GemCase((8, 67), "channels_first", np.float32, 2, 3, 3.0, window=Geom((8, 67), 3, 2, 1)),
    GemCase((11, 13), "channels_last", np.float32, 1, 17, "chan",
            window=Geom((11, 13), (3, 2), (2, 3), ((1, 0), (0, 1)), ceil_mode=True), cip=True),
    GemCase((6, 8), "channels_first", np.float64, 2, 3, 1.0, window=Geom((6, 8), 4, 3, "same")),
]
IDENTITY_CASES = [
    GemCase((7, 7), "channels_first", np.float32, 8, 129, 3.0),
    GemCase((13, 13), "channels_last", np.float32, 4, 67, 2.5),
    GemCase((14, 14), "channels_last", np.float32, 2, 65, "chan"),
    GemCase((33, 67), "channels_first", np.float32, 2, 17, 3.0, window=Geom((33, 67), 3, 2, 1)),
    GemCase((20, 21), "channels_last", np.float64, 2, 37, "chan", window=Geom((20, 21), 3, 1, 1), cip=True),
]


def ref_fwd(case: GemCase, kind: str):
    return cached(("gem", case.id, kind), lambda: ref.gem_pool(case.data(kind), case.p_value(), EPS, **case.kw()))


def ref_bwd(case: GemCase, kind: str):
    def compute():
        x, g, p = case.data(kind), case.grad(), case.p_value()
        gx, gp = ref.gem_pool_backward(g, x, p, EPS, **case.kw())
        sx, sp = ref.gem_pool_backward(g, x, p, EPS, magnitude=True, **case.kw())
        return gx, gp, sx, sp
    return cached(("gem_bwd", case.id, kind), compute)


def check(case: GemCase, kinds=("normal", "pos")) -> None:
    p = case.p_value()
    for kind in kinds:
        x = case.data(kind)
        e = ref_fwd(case, kind)
        y = fastpool.gem_pool(x, p, EPS, **case.kw())
        assert y.dtype == x.dtype and y.shape == e.shape
        assert_close(y, e, e, case.fwd_rtol(), f"forward {kind}")
        g = case.grad()
        e_gx, e_gp, s_gx, s_gp = ref_bwd(case, kind)
        res = fastpool.gem_pool_backward(g, x, p, EPS, **case.kw())
        assert isinstance(res, tuple) and len(res) == 2
        gx, gp = res
        assert gx.dtype == x.dtype and gx.shape == x.shape
        assert isinstance(gp, np.ndarray) and gp.dtype == x.dtype and gp.shape == np.shape(p), \
            (type(gp), getattr(gp, "dtype", None), np.shape(gp), np.shape(p))
        assert_close(gx, e_gx, s_gx, case.bwd_rtol(), f"grad_x {kind}")
        terms = g.size // (case.channels if np.ndim(p) else 1)
        assert_close(gp, e_gp, s_gp, case.gradp_rtol(terms), f"grad_p {kind}")


# --------------------------------------------------------------------------- grid


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case):
    check(case)


@pytest.mark.parametrize("case", params(BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check(case)


def _outputs(case: GemCase):
    x, g, p = case.data("normal"), case.grad(), case.p_value()
    gx, gp = fastpool.gem_pool_backward(g, x, p, EPS, **case.kw())
    res = {"y": fastpool.gem_pool(x, p, EPS, **case.kw()), "grad_x": gx, "grad_p": np.asarray(gp)}
    if np.ndim(p) == 0:
        for q in (1.0, 2.0, 4.0, 0.5):
            res[f"y p={q}"] = fastpool.gem_pool(x, q, EPS, **case.kw())
            gx, gp = fastpool.gem_pool_backward(g, x, q, EPS, **case.kw())
            res[f"grad_x p={q}"], res[f"grad_p p={q}"] = gx, np.asarray(gp)
    return res


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    base = identical_on_every_backend(lambda: _outputs(case))
    e = ref_fwd(case, "normal")
    assert_close(base["y"], e, e, case.fwd_rtol())


RANDOM = [GemCase(c.geom.spatial, c.layout, c.dtype, c.batch, c.channels, P_CYCLE[i % len(P_CYCLE)], window=c.geom,
                  cip=bool(i % 2)) for i, c in enumerate(RANDOM_CASES[100:180])]


@pytest.mark.parametrize("case", params(RANDOM))
def test_random_geometries_match_reference(case):
    check(case, kinds=("normal",))


# --------------------------------------------------------------------------- special p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_p1_is_the_mean_of_the_clamped_input(layout, dtype, backend):
    case = GemCase((9, 13), layout, dtype, 2, 17, 1.0)
    x = case.data("normal")
    c = np.maximum(x, np.asarray(EPS, dtype))
    y = fastpool.gem_pool(x, 1.0, EPS, layout=layout)
    assert_close(y, ref.global_avg_pool(c, layout=layout), ref.global_avg_pool(c, layout=layout),
                 max(RTOL[np.dtype(dtype)], 117 * np.finfo(dtype).eps / 2))
    kw = dict(kernel_size=3, stride=2, padding=1, layout=layout)
    for cip in (False, True):
        yw = fastpool.gem_pool(x, 1.0, EPS, count_include_pad=cip, **kw)
        e = ref.avg_pool(c, count_include_pad=cip, **kw)
        assert_close(yw, e, e, RTOL[np.dtype(dtype)], f"windowed, count_include_pad={cip}")
    # the gradient of the mean: 1/D where x > eps, 0 elsewhere
    g = np.ones(y.shape, dtype)
    gx, _ = fastpool.gem_pool_backward(g, x, 1.0, EPS, layout=layout)
    assert_close(gx, np.where(x > EPS, 1 / 117, 0).astype(dtype), np.full(x.shape, 1 / 117), RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2.0, 3.0, 4.0, 5.0, 2.5, 0.5, 1.5, 7.0])
def test_p_values(p, dtype, backend):
    for case in (GemCase((7, 7), "channels_first", dtype, 2, 17, p),
                 GemCase((9, 10), "channels_last", dtype, 2, 5, p, window=Geom((9, 10), 3, 2, 1))):
        check(case)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("p", [20.0, 50.0, 100.0])
def test_large_p_is_stable(p, layout, dtype, backend):
    """x in [0, 10]: x^50 overflows float32 and eps^50 underflows even float64, but y is
    finite, between the max and the max / D^(1/p) (eps where every tap is clamped), and
    its gradients are finite."""
    case = GemCase((7, 7), layout, dtype, 2, 17, p)
    rng = np.random.default_rng(int(p))
    x = rng.uniform(0.0, 10.0, case.shape).astype(dtype)
    xc = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    xc[1, 3] = -1.0  # a plane clamped to eps everywhere: y = eps
    xc[1, 4] = 0.0
    y = fastpool.gem_pool(x, p, EPS, layout=layout)
    assert np.isfinite(y).all()
    m = np.maximum(fastpool.global_max_pool(x, layout=layout), np.asarray(EPS, dtype))
    assert (y <= m * (1 + 1e-6)).all() and (y >= m / 49 ** (1 / p) * (1 - 1e-6)).all()
    np.testing.assert_allclose(y[1, 3:5], EPS, rtol=1e-5)
    e = ref.gem_pool(x, p, EPS, layout=layout)
    assert_close(y, e, e, POW_RTOL[np.dtype(dtype)])
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gp = fastpool.gem_pool_backward(g, x, p, EPS, layout=layout)
    assert np.isfinite(gx).all() and np.isfinite(gp).all()
    e_gx, e_gp = ref.gem_pool_backward(g, x, p, EPS, layout=layout)
    s_gx, s_gp = ref.gem_pool_backward(g, x, p, EPS, layout=layout, magnitude=True)
    assert_close(gx, e_gx, s_gx, POW_RTOL[np.dtype(dtype)] * p)
    assert_close(gp, e_gp, s_gp, POW_RTOL[np.dtype(dtype)] * p)
    # windowed
    yw = fastpool.gem_pool(x, p, EPS, kernel_size=3, stride=2, padding=1, layout=layout)
    ew = ref.gem_pool(x, p, EPS, kernel_size=3, stride=2, padding=1, layout=layout)
    assert np.isfinite(yw).all()
    assert_close(yw, ew, ew, POW_RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("pdtype", [np.float64, np.float32])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_channel_p(layout, dtype, pdtype, backend):
    """One p per channel (integers, fractions, 1, large), as an array of any float dtype,
    equals pooling each channel alone with its p; grad_p has shape (C,)."""
    c = 7
    p = np.array([1.0, 2.0, 3.0, 2.5, 0.5, 4.0, 30.0], pdtype)
    case = GemCase((6, 9), layout, dtype, 2, c, 3.0)
    x = case.data("normal")
    g = np.random.default_rng(1).standard_normal((2, c)).astype(dtype)
    y = fastpool.gem_pool(x, p, EPS, layout=layout)
    gx, gp = fastpool.gem_pool_backward(g, x, p, EPS, layout=layout)
    assert gp.shape == (c,) and gp.dtype == dtype
    xc = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    gxc = gx if layout == "channels_first" else np.moveaxis(gx, -1, 1)
    rtol = 2 * POW_RTOL[np.dtype(dtype)]  # p = 0.5: the root doubles the sum's error
    for ch in range(c):
        pc = float(p[ch])  # every entry is exact in float32
        rtol_b = rtol * max(1.0, abs(pc - 1))
        e = ref.gem_pool(xc[:, ch:ch + 1], pc, EPS)
        assert_close(y[:, ch:ch + 1], e, e, rtol, f"channel {ch}")
        e_gx, e_gp = ref.gem_pool_backward(g[:, ch:ch + 1], xc[:, ch:ch + 1], pc, EPS)
        s_gx, s_gp = ref.gem_pool_backward(g[:, ch:ch + 1], xc[:, ch:ch + 1], pc, EPS, magnitude=True)
        assert_close(gxc[:, ch:ch + 1], e_gx, s_gx, rtol_b, f"grad_x channel {ch}")
        assert_close(gp[ch], e_gp, s_gp, rtol_b, f"grad_p channel {ch}")
    # windowed
    yw = fastpool.gem_pool(x, p, EPS, kernel_size=(2, 3), stride=1, layout=layout)
    ew = ref.gem_pool(x, p.astype(np.float64), EPS, kernel_size=(2, 3), stride=1, layout=layout)
    assert_close(yw, ew, ew, rtol)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_channel_p_all_equal(layout, backend):
    """An array of equal p values is still per channel: grad_p has shape (C,), each entry
    the channel's share of the scalar-p gradient."""
    case = GemCase((5, 7), layout, np.float64, 2, 4, 3.0)
    x, g = case.data("normal"), case.grad()
    p = np.full(4, 3.0)
    np.testing.assert_allclose(fastpool.gem_pool(x, p, layout=layout), fastpool.gem_pool(x, 3.0, layout=layout),
                               rtol=1e-14)
    gx, gp = fastpool.gem_pool_backward(g, x, p, layout=layout)
    assert gp.shape == (4,)
    e_gx, e_gp = ref.gem_pool_backward(g, x, p, layout=layout)
    s_gx, s_gp = ref.gem_pool_backward(g, x, p, layout=layout, magnitude=True)
    assert_close(gx, e_gx, s_gx, 1e-12)
    assert_close(gp, e_gp, s_gp, 1e-12)
    _, gp_scalar = fastpool.gem_pool_backward(g, x, 3.0, layout=layout)
    np.testing.assert_allclose(gp.sum(), gp_scalar, rtol=1e-12, atol=1e-14)


def test_scalar_p_forms():
    """p as int, numpy scalar and 0-d array: the same result; grad_p a 0-d array."""
    x = np.random.default_rng(0).uniform(0, 2, (2, 3, 5, 5))
    e = fastpool.gem_pool(x, 3.0)
    for p in (3, np.float32(3.0), np.float64(3.0), np.array(3.0), np.int64(3)):
        np.testing.assert_allclose(fastpool.gem_pool(x, p), e, rtol=1e-12)
        _, gp = fastpool.gem_pool_backward(np.ones((2, 3)), x, p)
        assert isinstance(gp, np.ndarray) and gp.shape == () and gp.dtype == np.float64
    # defaults: p = 3, eps = 1e-6, global
    np.testing.assert_allclose(fastpool.gem_pool(x), ref.gem_pool(x, 3.0, 1e-6), rtol=1e-12)


@pytest.mark.parametrize("eps", [1e-3, 0.5, 1e-12])
def test_eps(eps):
    case = GemCase((9, 9), "channels_last", np.float64, 2, 5, 2.5)
    x = case.data("normal")
    y = fastpool.gem_pool(x, 2.5, eps, layout="channels_last")
    e = ref.gem_pool(x, 2.5, eps, layout="channels_last")
    assert_close(y, e, e, 1e-12)
    g = case.grad()
    gx, gp = fastpool.gem_pool_backward(g, x, 2.5, eps, layout="channels_last")
    e_gx, e_gp = ref.gem_pool_backward(g, x, 2.5, eps, layout="channels_last")
    s_gx, s_gp = ref.gem_pool_backward(g, x, 2.5, eps, layout="channels_last", magnitude=True)
    assert_close(gx, e_gx, s_gx, 1e-12)
    assert_close(gp, e_gp, s_gp, 1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nan_propagates(layout, dtype, backend):
    case = GemCase((9, 9), layout, dtype, 2, 17, 3.0)
    x = case.data("pos")
    xc = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    xc[0, 2, 4, 4] = np.nan
    y = fastpool.gem_pool(x, 3.0, EPS, layout=layout)
    assert np.isnan(y[0, 2]) and np.isfinite(np.delete(y.reshape(-1), 2)).all()
    yw = fastpool.gem_pool(x, 3.0, EPS, kernel_size=3, layout=layout)
    ywc = yw if layout == "channels_first" else np.moveaxis(yw, -1, 1)
    assert np.isnan(ywc[0, 2, 1, 1]) and np.isfinite(np.delete(ywc.reshape(-1), 2 * 9 + 4)).all()
    yp = fastpool.gem_pool(x, np.linspace(1, 4, 17), EPS, layout=layout)
    assert np.isnan(yp[0, 2]) and np.isfinite(np.delete(yp.reshape(-1), 2)).all()


# --------------------------------------------------------------------------- argument forms


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_unbatched_and_keepdims(rank, layout):
    spatial = {1: (9,), 2: (5, 6), 3: (2, 3, 4)}[rank]
    for keepdims in (False, True):
        case = GemCase(spatial, layout, np.float64, 2, 4, "chan", keepdims=keepdims)
        x, p, g = case.data("normal"), case.p_value(), case.grad()
        e = ref.gem_pool(x, p, EPS, **case.kw())
        e_gx, e_gp = ref.gem_pool_backward(g, x, p, EPS, **case.kw())
        ones = (1,) * rank
        want = (2,) + ((4,) + ones if layout == "channels_first" else ones + (4,)) if keepdims else (2, 4)
        assert e.shape == want
        y = fastpool.gem_pool(x, p, EPS, **case.kw())
        assert y.shape == want
        assert_close(y, e, e, 1e-12)
        # unbatched: rank given
        yu = fastpool.gem_pool(x[0], p, EPS, rank=rank, **case.kw())
        assert yu.shape == want[1:]
        assert_close(yu, e[0], e[0], 1e-12)
        gxu, gpu = fastpool.gem_pool_backward(g[0], x[0], p, EPS, rank=rank, **case.kw())
        e_gxu, e_gpu = ref.gem_pool_backward(g[0], x[0], p, EPS, rank=rank, **case.kw())
        s_gxu, s_gpu = ref.gem_pool_backward(g[0], x[0], p, EPS, rank=rank, magnitude=True, **case.kw())
        assert_close(gxu, e_gxu, s_gxu, 1e-11)
        assert_close(gpu, e_gpu, s_gpu, 1e-11)
    # windowed, unbatched (rank from the kernel tuple)
    x = GemCase(spatial, layout, np.float64, 1, 4).data("normal")[0]
    kw = dict(kernel_size=(2,) * rank, stride=1, padding=1, layout=layout)
    e = ref.gem_pool(x, 2.5, EPS, **kw)
    assert_close(fastpool.gem_pool(x, 2.5, EPS, **kw), e, e, 1e-12)


VIEW_CASES = [
    GemCase((9, 31), "channels_first", np.float32, 2, 3, 3.0),
    GemCase((4, 6, 9), "channels_last", np.float64, 2, 17, "chan"),
    GemCase((9, 31), "channels_last", np.float32, 2, 5, 2.5, window=Geom((9, 31), (3, 2), (2, 1), 1, ceil_mode=True)),
]


@pytest.mark.parametrize("case", params(VIEW_CASES))
def test_non_contiguous_inputs_and_out(case, backend):
    x, g, p = case.data("normal"), case.grad(), case.p_value()
    before = x.copy()
    kw = case.kw()
    e = ref_fwd(case, "normal")
    e_gx, e_gp, s_gx, s_gp = ref_bwd(case, "normal")
    rtol_p = case.gradp_rtol(g.size)
    for name, xv in views(x):
        assert_close(fastpool.gem_pool(xv, p, EPS, **kw), e, e, case.fwd_rtol(), name)
        gx, gp = fastpool.gem_pool_backward(g, xv, p, EPS, **kw)
        assert_close(gx, e_gx, s_gx, case.bwd_rtol(), name)
        assert_close(gp, e_gp, s_gp, rtol_p, name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        gx, gp = fastpool.gem_pool_backward(gv, x, p, EPS, **kw)
        assert_close(gx, e_gx, s_gx, case.bwd_rtol(), f"grad {name}")
    if np.ndim(p):
        pv = np.zeros(2 * case.channels)[::2]
        pv[:] = p
        assert_close(fastpool.gem_pool(x, pv, EPS, **kw), e, e, case.fwd_rtol(), "strided p")
    xv = transposed_memory(x, case.layout)
    assert_close(fastpool.gem_pool(xv, p, EPS, **kw), e, e, case.fwd_rtol(), "transposed memory")
    gx, gp = fastpool.gem_pool_backward(g, xv, p, EPS, **kw)
    assert_close(gx, e_gx, s_gx, case.bwd_rtol(), "transposed memory")
    out = np.full(e.shape, np.nan, case.dtype)
    assert fastpool.gem_pool(x, p, EPS, out=out, **kw) is out
    assert_close(out, e, e, case.fwd_rtol(), "out")
    gout = np.full(x.shape, np.nan, case.dtype)
    gx, gp = fastpool.gem_pool_backward(g, x, p, EPS, out=gout, **kw)
    assert gx is gout
    assert_close(gout, e_gx, s_gx, case.bwd_rtol(), "backward out")
    assert_close(gp, e_gp, s_gp, rtol_p, "backward out, grad_p")


# --------------------------------------------------------------------------- gradients

H = 1e-6

GRAD_SETUPS = [
    pytest.param(dict(), id="global"),
    pytest.param(dict(keepdims=True), id="global-keepdims"),
    pytest.param(dict(kernel_size=3, stride=2, padding=1), id="k3-s2-p1"),
    pytest.param(dict(kernel_size=3, stride=2, padding=1, count_include_pad=True), id="k3-s2-p1-cip"),
    pytest.param(dict(kernel_size=(2, 3), stride=1, padding="same", dilation=(2, 1)), id="k(2,3)-same-d(2,1)"),
    pytest.param(dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), id="k2-s2-p1-ceil"),
]


@pytest.mark.parametrize("p", [3.0, 1.0, 2.5, 0.7, "chan"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("setup", GRAD_SETUPS)
def test_numerical_gradient(setup, layout, p, rng):
    """Central differences of L = sum(g * gem(x, p)) in x and in p (float64)."""
    shape = (2, 3, 5, 6) if layout == "channels_first" else (2, 5, 6, 3)
    x = rng.uniform(0.1, 2.0, shape) * np.where(rng.random(shape) < 0.2, -1, 1)  # some clamped (flat) taps
    pv = np.array([1.5, 3.0, 0.8]) if p == "chan" else p
    kw = dict(setup, layout=layout)
    y = fastpool.gem_pool(x, pv, EPS, **kw)
    g = rng.standard_normal(y.shape)
    gx, gp = fastpool.gem_pool_backward(g, x, pv, EPS, **kw)
    num_x = numerical_gradient(lambda v: fastpool.gem_pool(v, pv, EPS, **kw), x, g, h=H)
    np.testing.assert_allclose(gx, num_x, rtol=1e-6, atol=1e-7)
    pa = np.array(pv, dtype=np.float64)
    num_p = numerical_gradient(lambda q: fastpool.gem_pool(x, q if pa.ndim else float(q), EPS, **kw), pa, g, h=H)
    assert np.shape(gp) == pa.shape
    np.testing.assert_allclose(gp, num_p, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- torch

TORCH_SETUPS = [
    pytest.param((7, 7), None, False, id="global-7x7"),
    pytest.param((13, 13), None, False, id="global-13x13"),
    pytest.param((9, 10), (3, 2, 1), False, id="k3-s2-p1"),
    pytest.param((9, 10), (3, 2, 1), True, id="k3-s2-p1-cip"),
    pytest.param((8, 8), (2, 2, 0), False, id="k2-s2"),
    pytest.param((9, 11), (3, 1, 0), False, id="k3-s1"),
    pytest.param((10, 9), (3, 2, 1, True), True, id="k3-s2-p1-ceil-cip"),
    pytest.param((10, 9), (2, 2, 1, True), False, id="k2-s2-p1-ceil"),
]


@pytest.mark.parametrize("p", [3.0, 2.5, 1.0, "chan"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("spatial, window, cip", TORCH_SETUPS)
def test_matches_torch_composition(spatial, window, cip, layout, dtype, p):
    """torch: avg_pool2d(x.clamp(min=eps).pow(p), ...).pow(1/p) (global: mean), with
    autograd for grad_x and grad_p."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    case = GemCase(spatial, layout, dtype, 2, 17, p)
    x = case.data("normal")
    pv = case.p_value()
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf.movedim(-1, 1) if layout == "channels_last" else leaf
    tp = torch.tensor(pv, dtype=leaf.dtype, requires_grad=True)
    tpb = tp.reshape(1, -1, 1, 1) if tp.ndim else tp
    c = t.clamp(min=EPS).pow(tpb)
    if window is None:
        yt = c.mean(dim=(2, 3)).pow(1 / tpb.reshape(1, -1) if tp.ndim else 1 / tpb)
        kw = dict(layout=layout)
    else:
        k, s, pad, ceil = window + (False,) * (4 - len(window))
        yt = F.avg_pool2d(c, k, s, pad, ceil_mode=ceil, count_include_pad=cip).pow(1 / tpb)
        kw = dict(kernel_size=k, stride=s, padding=pad, ceil_mode=ceil, count_include_pad=cip, layout=layout)
    y = fastpool.gem_pool(x, pv, EPS, **kw)
    g = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    gt = torch.from_numpy(g.copy())
    if window is not None and layout == "channels_last":
        gt = gt.movedim(-1, 1)
    yt.backward(gt)
    yt = yt.detach()
    y_t = yt.movedim(1, -1) if (window is not None and layout == "channels_last") else yt
    y_t = np.ascontiguousarray(y_t.numpy())
    taps = int(np.prod(spatial)) if window is None else window[0] ** 2
    rtol = 4 * max(POW_RTOL[np.dtype(dtype)], taps * np.finfo(dtype).eps) * 2  # both sides round
    assert_close(y, y_t, y_t, rtol, "forward")
    gx, gp = fastpool.gem_pool_backward(g, x, pv, EPS, **kw)
    s_gx, s_gp = ref.gem_pool_backward(g, x, pv, EPS, magnitude=True, **kw)
    assert_close(gx, leaf.grad.numpy(), s_gx, rtol * 4, "grad_x")
    assert_close(gp, tp.grad.numpy(), s_gp, max(rtol * 4, g.size * np.finfo(dtype).eps), "grad_p")


# --------------------------------------------------------------------------- benchmark shapes


@pytest.mark.parametrize("layout", LAYOUTS)
def test_benchmark_shape(layout, num_threads):
    """(32, 256, 13, 13), the issue's comparison shape, float32, forward and backward."""
    case = GemCase((13, 13), layout, np.float32, 32, 256, 3.0)
    x, g = case.data("normal"), case.grad()
    e = ref_fwd(case, "normal")
    assert_close(fastpool.gem_pool(x, layout=layout), e, e, case.fwd_rtol())
    gx, gp = fastpool.gem_pool_backward(g, x, layout=layout)
    e_gx, e_gp, s_gx, s_gp = ref_bwd(case, "normal")
    assert_close(gx, e_gx, s_gx, case.bwd_rtol())
    assert_close(gp, e_gp, s_gp, case.gradp_rtol(g.size))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_no_temporaries_the_size_of_x(layout):
    """Forward and backward (grad_x into out=) allocate nothing near x's size through
    NumPy (traced by tracemalloc): no clamped or powered copy of x."""
    import tracemalloc

    case = GemCase((32, 32), layout, np.float32, 8, 64, 3.0)
    x, g = case.data("normal"), case.grad()
    gout = np.empty_like(x)
    p_chan = np.linspace(1.0, 4.0, 64)
    calls = {
        "forward": lambda: fastpool.gem_pool(x, layout=layout),
        "forward per-channel p": lambda: fastpool.gem_pool(x, p_chan, layout=layout),
        "backward": lambda: fastpool.gem_pool_backward(g, x, layout=layout, out=gout),
        "backward per-channel p": lambda: fastpool.gem_pool_backward(g, x, p_chan, layout=layout, out=gout),
    }
    for name, call in calls.items():
        call()
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 0.05 * x.nbytes, f"{name}: peak traced allocation {peak} bytes, x has {x.nbytes}"


def test_concurrent_python_threads_give_serial_results():
    """The GIL is released while kernels run: calls from several Python threads at once
    (each with its own thread count) return exactly the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 64, 13, 13)).astype(np.float32)
    g = rng.standard_normal((4, 64)).astype(np.float32)
    p = np.linspace(1.0, 4.0, 64)
    calls = [
        lambda: fastpool.gem_pool(x, 3.0),
        lambda: fastpool.gem_pool_backward(g, x, p)[1],
        lambda: fastpool.gem_pool_backward(g, x, 2.5)[0],
        lambda: fastpool.gem_pool(x, p, kernel_size=3, stride=2, padding=1),
        lambda: fastpool.lp_pool(x, 2.5, 3, 2, 1),
        lambda: fastpool.spatial_pyramid_pool(x, (1, 2, 4), "avg"),
        lambda: fastpool.adaptive_max_pool_backward(np.ones((4, 64, 5, 5), np.float32), x, 5),
        lambda: fastpool.global_avg_pool(x),
    ]
    serial = [np.asarray(c()).copy() for c in calls]

    def work(i):
        with fastpool.threads(1 + i % 3):
            return [(j, np.asarray(calls[j]()).copy()) for j in range(len(calls))[i % 2::1]]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(12)))
    for res in results:
        for j, value in res:
            assert_bitwise_equal(value, serial[j], f"call {j}")
