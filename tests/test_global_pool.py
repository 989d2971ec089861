"""Global max and average pooling, forward and backward, against the NumPy reference.

The full grid (spatial rank 1-3, 1-pixel planes, odd sizes, both layouts and dtypes,
keepdims) runs on the default backend; a representative subset on every SIMD path x
threads 1 and 2, and a few larger cases must be bitwise identical on all of them.
Max results and indices are exact; averages are checked relative to the mean of |x|
(rtol 1e-6 / 1e-12, or the worst-case error bound of a float32 sum of K terms, K u,
when that is larger: a global plane can hold thousands of elements).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
import pytest

import fastpool
import reference as ref
from pool_cases import (
    AVAILABLE_SIMD,
    DTYPES,
    LAYOUTS,
    RTOL,
    SHORT,
    SIMD_PATHS,
    _check_specials,
    assert_bitwise_equal,
    assert_same_signs,
    cached,
    make_data,
    running_on,
    views,
)

FWD = {1: "global_max_pool1d", 2: "global_max_pool2d", 3: "global_max_pool3d"}
AVG = {1: "global_avg_pool1d", 2: "global_avg_pool2d", 3: "global_avg_pool3d"}


def fp(name: str):
    """fastpool.<name>; a missing function fails the test (AttributeError), never skips."""
    return getattr(fastpool, name)


# --------------------------------------------------------------------------- helpers


def sum_rtol(dtype: Any, terms: int) -> float:
    """rtol 1e-6 / 1e-12, or the worst-case relative bound of a sum of ``terms`` terms in
    any order, (terms - 1) * u, if larger."""
    dtype = np.dtype(dtype)
    return max(RTOL[dtype], (terms - 1) * np.finfo(dtype).eps / 2 * 1.01)


def assert_close(actual: np.ndarray, expected: np.ndarray, scale: np.ndarray, rtol: float,
                 what: str = "") -> None:
    """NaN/inf at the same places; elsewhere |actual - expected| <= rtol * |scale|."""
    fin = _check_specials(actual, expected)
    tol = rtol * np.abs(np.asarray(scale, dtype=np.float64)) + np.finfo(actual.dtype).tiny
    err = np.abs(np.where(fin, actual, 0).astype(np.float64) - np.where(fin, expected, 0))
    bad = fin & ~(err <= tol)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} differ beyond rtol={rtol:.3g}: first at "
                             f"{where}: actual {actual[where]!r}, expected {expected[where]!r}, tol {tol[where]:.3g}")


def assert_max_equal(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
        (what, actual.dtype, expected.dtype, actual.shape, expected.shape)
    np.testing.assert_array_equal(actual, expected, err_msg=what)
    assert_same_signs(actual, expected)


@dataclass(frozen=True)
class GCase:
    spatial: Tuple[int, ...]
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3
    keepdims: bool = False

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def shape(self) -> Tuple[int, ...]:
        if self.layout == "channels_last":
            return (self.batch,) + self.spatial + (self.channels,)
        return (self.batch, self.channels) + self.spatial

    @property
    def out_shape(self) -> Tuple[int, ...]:
        if not self.keepdims:
            return (self.batch, self.channels)
        ones = (1,) * self.rank
        if self.layout == "channels_last":
            return (self.batch,) + ones + (self.channels,)
        return (self.batch, self.channels) + ones

    @property
    def id(self) -> str:
        s = (f"{self.rank}d-{SHORT[self.layout]}-{SHORT[self.dtype]}-N{self.batch}C{self.channels}-"
             + "x".join(map(str, self.spatial)))
        return s + ("-keepdims" if self.keepdims else "")

    @property
    def plane(self) -> int:
        return int(np.prod(self.spatial))

    def kw(self):
        return dict(keepdims=self.keepdims, layout=self.layout)

    def data(self, kind: str, salt: str = "") -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32((self.id + kind + salt).encode()))
        return make_data(rng, self.shape, self.dtype, kind)

    def grad(self, kind: str = "normal") -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32((self.id + "grad" + kind).encode()))
        return make_data(rng, self.out_shape, self.dtype, kind)


SPATIAL = [(1,), (7,), (67,), (1000,), (1, 1), (7, 7), (5, 31), (13, 13), (3, 1), (1, 67), (56, 56),
           (1, 1, 1), (3, 5, 7), (4, 6, 17), (2, 1, 3)]
CHANNELS = (1, 3, 17, 33)


def _grid():
    cases = []
    for si, sp in enumerate(SPATIAL):
        for vi, (layout, dtype) in enumerate([(lay, d) for lay in LAYOUTS for d in DTYPES]):
            k = si + vi
            cases.append(GCase(sp, layout, dtype, batch=1 + k % 2, channels=CHANNELS[k % 4], keepdims=bool(k % 2)))
    return cases


GRID = _grid()
BACKEND_CASES = [
    GCase((1,), "channels_first", np.float32, 2, 3),
    GCase((67,), "channels_last", np.float64, 1, 17, keepdims=True),
    GCase((7, 7), "channels_first", np.float64, 2, 33),
    GCase((5, 31), "channels_last", np.float32, 2, 17),
    GCase((13, 13), "channels_first", np.float32, 1, 5, keepdims=True),
    GCase((3, 5, 7), "channels_last", np.float32, 2, 3, keepdims=True),
    GCase((4, 6, 17), "channels_first", np.float64, 1, 2),
]
# Enough elements that two threads split the work, wide channel counts, long planes.
IDENTITY_CASES = [
    GCase((33, 67), "channels_first", np.float32, 2, 17),
    GCase((20, 21), "channels_last", np.float32, 2, 37, keepdims=True),
    GCase((5000,), "channels_first", np.float64, 2, 7),
    GCase((9, 10, 11), "channels_last", np.float64, 2, 35),
    GCase((7, 7), "channels_first", np.float32, 8, 129),
]


def params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


def ref_max(case: GCase, kind: str):
    return cached(("gmax", case.id, kind), lambda: ref.global_max_pool(case.data(kind), **case.kw()))


def ref_avg(case: GCase, kind: str):
    def compute():
        x = case.data(kind)
        return ref.global_avg_pool(x, **case.kw()), ref.global_avg_pool(np.abs(x), **case.kw())
    return cached(("gavg", case.id, kind), compute)


def check_forward(case: GCase, kinds=("normal", "ints", "special")) -> None:
    for kind in kinds:
        x = case.data(kind)
        e_y, e_i = ref_max(case, kind)
        y, idx = fastpool.global_max_pool(x, return_indices=True, **case.kw())
        assert y.shape == case.out_shape and idx.dtype == np.int64
        assert_max_equal(y, e_y, f"max {kind}")
        np.testing.assert_array_equal(idx, e_i, err_msg=f"indices {kind}")
        assert_max_equal(fastpool.global_max_pool(x, **case.kw()), e_y, f"max {kind} without indices")
        e_a, scale = ref_avg(case, kind)
        a = fastpool.global_avg_pool(x, **case.kw())
        rtol = RTOL[np.dtype(case.dtype)] if kind == "ints" else sum_rtol(case.dtype, case.plane)
        assert_close(a, e_a, scale, rtol, f"avg {kind}")


def check_backward(case: GCase) -> None:
    x = case.data("ints")  # many ties: the first maximum must receive the gradient
    g = case.grad()
    expected = cached(("gmax_bwd", case.id), lambda: ref.global_max_pool_backward(g, x, **case.kw()))
    gx = fastpool.global_max_pool_backward(g, x, **case.kw())
    assert gx.shape == x.shape and gx.dtype == x.dtype
    assert_max_equal(gx, expected, "max backward")
    _, idx = ref_max(case, "ints")
    assert_max_equal(fastpool.global_max_pool_backward(g, x, indices=idx, **case.kw()), expected,
                     "max backward with indices")
    e_avg = cached(("gavg_bwd", case.id), lambda: ref.global_avg_pool_backward(g, x.shape, **case.kw()))
    ga = fastpool.global_avg_pool_backward(g, x.shape, **case.kw())
    assert ga.shape == x.shape and ga.dtype == x.dtype
    assert_close(ga, e_avg, e_avg, RTOL[np.dtype(case.dtype)], "avg backward")


# --------------------------------------------------------------------------- grid


@pytest.mark.parametrize("case", params(GRID))
def test_forward_matches_reference(case):
    check_forward(case)


@pytest.mark.parametrize("case", params(GRID))
def test_backward_matches_reference(case):
    check_backward(case)


@pytest.mark.parametrize("case", params(BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check_forward(case)
    check_backward(case)


def _all_outputs(case: GCase):
    x = case.data("normal")
    xs = case.data("special")
    g = case.grad()
    y, idx = fastpool.global_max_pool(x, return_indices=True, **case.kw())
    ys, idxs = fastpool.global_max_pool(xs, return_indices=True, **case.kw())
    return {"max": y, "idx": idx, "max special": ys, "idx special": idxs,
            "avg": fastpool.global_avg_pool(x, **case.kw()),
            "avg special": fastpool.global_avg_pool(xs, **case.kw()),  # NaN payloads too
            "max bwd": fastpool.global_max_pool_backward(g, x, **case.kw()),
            "avg bwd": fastpool.global_avg_pool_backward(g, x.shape, **case.kw())}


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    runs = {}
    for s in SIMD_PATHS:
        if s not in AVAILABLE_SIMD:
            continue
        for t in (1, 2, 3):
            with running_on(s, t):
                runs[(s, t)] = _all_outputs(case)
    base_key = next(iter(runs))
    for key, got in runs.items():
        for name, value in runs[base_key].items():
            assert_bitwise_equal(got[name], value, f"{name} on {key} vs {base_key}")
    # and correct
    x = case.data("normal")
    e_y, e_i = ref.global_max_pool(x, **case.kw())
    assert_max_equal(runs[base_key]["max"], e_y)
    np.testing.assert_array_equal(runs[base_key]["idx"], e_i)
    assert_close(runs[base_key]["avg"], ref.global_avg_pool(x, **case.kw()),
                 ref.global_avg_pool(np.abs(x), **case.kw()), sum_rtol(case.dtype, case.plane))


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("keepdims", [False, True])
def test_fixed_rank_forms_and_unbatched_input(rank, layout, keepdims):
    spatial = {1: (9,), 2: (5, 6), 3: (2, 3, 4)}[rank]
    case = GCase(spatial, layout, np.float64, 2, 5, keepdims)
    x = case.data("normal")
    g = case.grad()
    e_y, e_i = ref.global_max_pool(x, **case.kw())
    e_a = ref.global_avg_pool(x, **case.kw())
    fmax, favg = fp(FWD[rank]), fp(AVG[rank])
    fmax_b, favg_b = fp(FWD[rank] + "_backward"), fp(AVG[rank] + "_backward")
    # batched, fixed-rank forms
    y, idx = fmax(x, return_indices=True, **case.kw())
    assert_max_equal(y, e_y)
    np.testing.assert_array_equal(idx, e_i)
    np.testing.assert_allclose(favg(x, **case.kw()), e_a, rtol=1e-12)
    np.testing.assert_array_equal(fmax_b(g, x, **case.kw()), ref.global_max_pool_backward(g, x, **case.kw()))
    np.testing.assert_allclose(favg_b(g, x.shape, **case.kw()),
                               ref.global_avg_pool_backward(g, x.shape, **case.kw()), rtol=1e-12)
    # unbatched: (C, *spatial) / (*spatial, C)
    xu, gu = x[0], g[0]
    eu_y, eu_i = ref.global_max_pool(xu, rank=rank, **case.kw())
    assert eu_y.shape == case.out_shape[1:]
    np.testing.assert_array_equal(eu_y, e_y[0])
    for call in (lambda: fmax(xu, return_indices=True, **case.kw()),
                 lambda: fastpool.global_max_pool(xu, rank=rank, return_indices=True, **case.kw())):
        yu, iu = call()
        assert yu.shape == eu_y.shape
        assert_max_equal(yu, eu_y)
        np.testing.assert_array_equal(iu, eu_i)
    for au in (favg(xu, **case.kw()), fastpool.global_avg_pool(xu, rank=rank, **case.kw())):
        np.testing.assert_allclose(au, e_a[0], rtol=1e-12)
        assert au.shape == eu_y.shape
    eu_g = ref.global_max_pool_backward(gu, xu, rank=rank, **case.kw())
    np.testing.assert_array_equal(fmax_b(gu, xu, **case.kw()), eu_g)
    np.testing.assert_array_equal(fastpool.global_max_pool_backward(gu, xu, rank=rank, **case.kw()), eu_g)
    np.testing.assert_array_equal(fastpool.global_max_pool_backward(gu, xu, rank=rank, indices=eu_i,
                                                                    **case.kw()), eu_g)
    eu_a = ref.global_avg_pool_backward(gu, xu.shape, rank=rank, **case.kw())
    np.testing.assert_allclose(favg_b(gu, xu.shape, **case.kw()), eu_a, rtol=1e-12)
    np.testing.assert_allclose(fastpool.global_avg_pool_backward(gu, xu.shape, rank=rank, **case.kw()), eu_a,
                               rtol=1e-12)


def test_keepdims_shapes():
    x = np.zeros((2, 3, 4, 5), np.float32)
    assert fastpool.global_max_pool(x).shape == (2, 3)
    assert fastpool.global_avg_pool(x, keepdims=True).shape == (2, 3, 1, 1)
    assert fastpool.global_max_pool(x, keepdims=True, layout="channels_last").shape == (2, 1, 1, 5)
    assert fastpool.global_avg_pool(x, layout="channels_last").shape == (2, 5)
    assert fastpool.global_avg_pool2d(x[0], keepdims=True).shape == (3, 1, 1)
    assert fastpool.global_max_pool2d(x[0], keepdims=True, layout="channels_last").shape == (1, 1, 5)
    assert fastpool.global_max_pool3d(x).shape == (2,)
    assert fastpool.global_avg_pool(x, rank=3, keepdims=True).shape == (2, 1, 1, 1)


def test_values_by_hand():
    x = np.array([[[[1.0, 5.0, 2.0], [5.0, -1.0, 0.0]],
                   [[np.nan, 3.0, np.nan], [7.0, 0.0, 1.0]],
                   [[-np.inf, -np.inf, -np.inf], [-np.inf, -np.inf, -np.inf]]]])
    y, idx = fastpool.global_max_pool(x, return_indices=True)
    np.testing.assert_array_equal(y, [[5.0, np.nan, -np.inf]])
    np.testing.assert_array_equal(idx, [[1, 2, 0]])  # first max, last NaN, all -inf: first tap
    np.testing.assert_array_equal(fastpool.global_avg_pool(x[:, :1]), [[2.0]])
    g = fastpool.global_max_pool_backward(np.array([[1.0, 2.0, 3.0]]), x)
    e = np.zeros_like(x)
    e[0, 0, 0, 1], e[0, 1, 0, 2], e[0, 2, 0, 0] = 1, 2, 3
    np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(fastpool.global_avg_pool_backward(np.array([[6.0, 12.0, 0.0]]), x.shape),
                                  np.broadcast_to(np.array([1.0, 2.0, 0.0])[None, :, None, None], x.shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nan_and_inf_propagate(dtype, layout, backend):
    case = GCase((9, 13), layout, dtype, 2, 17)
    x = case.data("normal")
    xc = x if layout == "channels_first" else np.moveaxis(x, -1, 1)  # view
    xc[0, 1, 2, 3] = np.nan
    xc[0, 1, 5, 7] = np.nan
    xc[1, 2, 4, 4] = np.inf
    xc[1, 3] = -np.inf
    y, idx = fastpool.global_max_pool(x, return_indices=True, layout=layout)
    assert np.isnan(y[0, 1]) and idx[0, 1] == 5 * 13 + 7
    assert y[1, 2] == np.inf and idx[1, 2] == 4 * 13 + 4
    assert y[1, 3] == -np.inf and idx[1, 3] == 0
    assert np.isfinite(np.delete(y.reshape(-1), [1, 17 + 2, 17 + 3])).all()
    a = fastpool.global_avg_pool(x, layout=layout)
    assert np.isnan(a[0, 1]) and a[1, 2] == np.inf and a[1, 3] == -np.inf
    e_y, e_i = ref.global_max_pool(x, layout=layout)
    assert_max_equal(y, e_y)
    np.testing.assert_array_equal(idx, e_i)


# --------------------------------------------------------------------------- memory


VIEW_CASES = [GCase((5, 31), "channels_first", np.float32, 2, 3),
              GCase((3, 4, 9), "channels_last", np.float64, 2, 17, keepdims=True),
              GCase((67,), "channels_first", np.float64, 2, 5, keepdims=True)]


@pytest.mark.parametrize("case", params(VIEW_CASES))
def test_non_contiguous_inputs(case, backend):
    x = case.data("ints")
    before = x.copy()
    g = case.grad("ints")
    e_y, e_i = ref.global_max_pool(x, **case.kw())
    e_a, scale = ref.global_avg_pool(x, **case.kw()), ref.global_avg_pool(np.abs(x), **case.kw())
    e_gm = ref.global_max_pool_backward(g, x, **case.kw())
    e_ga = ref.global_avg_pool_backward(g, x.shape, **case.kw())
    for name, xv in views(x):
        y, idx = fastpool.global_max_pool(xv, return_indices=True, **case.kw())
        assert_max_equal(y, e_y, name)
        np.testing.assert_array_equal(idx, e_i, err_msg=name)
        assert_close(fastpool.global_avg_pool(xv, **case.kw()), e_a, scale, RTOL[np.dtype(case.dtype)], name)
        assert_max_equal(fastpool.global_max_pool_backward(g, xv, **case.kw()), e_gm, name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        assert_max_equal(fastpool.global_max_pool_backward(gv, x, **case.kw()), e_gm, f"grad {name}")
        assert_close(fastpool.global_avg_pool_backward(gv, x.shape, **case.kw()), e_ga, e_ga,
                     RTOL[np.dtype(case.dtype)], f"grad {name}")
    gt = np.asfortranarray(g)  # (N, C) grads: a transposed buffer
    assert_max_equal(fastpool.global_max_pool_backward(gt, x, **case.kw()), e_gm, "grad fortran")
    # transposed input: a channels_first view of channels_last memory and vice versa
    xt = np.ascontiguousarray(np.moveaxis(x, 1, -1) if case.layout == "channels_first" else np.moveaxis(x, -1, 1))
    xv = np.moveaxis(xt, -1, 1) if case.layout == "channels_first" else np.moveaxis(xt, 1, -1)
    np.testing.assert_array_equal(xv, x)
    y, idx = fastpool.global_max_pool(xv, return_indices=True, **case.kw())
    assert_max_equal(y, e_y, "transposed memory")
    np.testing.assert_array_equal(idx, e_i)
    assert_close(fastpool.global_avg_pool(xv, **case.kw()), e_a, scale, RTOL[np.dtype(case.dtype)], "transposed")
    assert_max_equal(fastpool.global_max_pool_backward(g, xv, **case.kw()), e_gm, "transposed")


OUT_CASES = [GCase((8, 67), "channels_first", np.float32, 2, 3),
             GCase((8, 67), "channels_last", np.float64, 2, 17, keepdims=True),
             GCase((3, 5, 7), "channels_first", np.float64, 1, 4, keepdims=True)]


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    x = case.data("normal")
    g = case.grad()
    e_y, e_i = ref_max(case, "normal")
    out = np.full(case.out_shape, np.nan, case.dtype)
    assert fastpool.global_max_pool(x, out=out, **case.kw()) is out
    assert_max_equal(out, e_y)
    out = np.full(case.out_shape, np.nan, case.dtype)
    y, idx = fastpool.global_max_pool(x, return_indices=True, out=out, **case.kw())
    assert y is out
    assert_max_equal(out, e_y)
    np.testing.assert_array_equal(idx, e_i)
    out = np.full(case.out_shape, np.nan, case.dtype)
    assert fastpool.global_avg_pool(x, out=out, **case.kw()) is out
    e_a, scale = ref_avg(case, "normal")
    assert_close(out, e_a, scale, sum_rtol(case.dtype, case.plane))
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fastpool.global_max_pool_backward(g, x, out=gout, **case.kw()) is gout
    assert_max_equal(gout, ref.global_max_pool_backward(g, x, **case.kw()))
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fastpool.global_avg_pool_backward(g, x.shape, out=gout, **case.kw()) is gout
    e = ref.global_avg_pool_backward(g, x.shape, **case.kw())
    assert_close(gout, e, e, RTOL[np.dtype(case.dtype)])


# --------------------------------------------------------------------------- gradients

H = 1e-5


def numerical_gradient(f, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        up = np.sum(g * f(x))
        flat[i] = old - H
        down = np.sum(g * f(x))
        flat[i] = old
        gflat[i] = (up - down) / (2 * H)
    return grad


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("spatial", [(7,), (3, 4), (2, 3, 2)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_numerical_gradient(spatial, layout, keepdims, rng):
    case = GCase(spatial, layout, np.float64, 2, 3, keepdims)
    n = int(np.prod(case.shape))
    x = (rng.permutation(n) * 1e-2 + rng.uniform(0, 1e-3, n)).reshape(case.shape)  # distinct, spaced
    g = rng.standard_normal(case.out_shape)
    kw = case.kw()
    expected = numerical_gradient(lambda v: fastpool.global_max_pool(v, **kw), x, g)
    np.testing.assert_allclose(fastpool.global_max_pool_backward(g, x, **kw), expected, rtol=0, atol=1e-8)
    expected = numerical_gradient(lambda v: fastpool.global_avg_pool(v, **kw), x, g)
    np.testing.assert_allclose(fastpool.global_avg_pool_backward(g, x.shape, **kw), expected, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("kind", ["normal", "special"])
def test_matches_torch(rank, dtype, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    case = GCase({1: (67,), 2: (7, 9), 3: (3, 4, 5)}[rank], "channels_first", dtype, 2, 17)
    x = case.data(kind)
    g = case.grad("ints")
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    amp = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[rank]
    ty, ti = amp(t, (1,) * rank, return_indices=True)
    ty.backward(torch.from_numpy(g.reshape(ty.shape)))
    y, idx = fastpool.global_max_pool(x, return_indices=True)
    np.testing.assert_array_equal(y, ty.detach().numpy().reshape(y.shape))
    np.testing.assert_array_equal(idx, ti.numpy().reshape(idx.shape))
    np.testing.assert_array_equal(fastpool.global_max_pool_backward(g, x), t.grad.numpy())
    if kind == "normal":
        t = torch.from_numpy(x.copy()).requires_grad_(True)
        ta = t.mean(dim=tuple(range(2, 2 + rank)))
        ta.backward(torch.from_numpy(g))
        assert_close(fastpool.global_avg_pool(x), ta.detach().numpy(), ref.global_avg_pool(np.abs(x)),
                     10 * sum_rtol(dtype, case.plane))
        np.testing.assert_allclose(fastpool.global_avg_pool_backward(g, x.shape), t.grad.numpy(),
                                   rtol=1e-6 if dtype == np.float32 else 1e-12)
