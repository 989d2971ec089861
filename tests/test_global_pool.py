"""Global max and average pooling, forward and backward, against the NumPy reference.

The full grid (spatial rank 1-3, 1-pixel planes, odd sizes, both layouts and dtypes,
keepdims) runs on the default backend; a representative subset on every SIMD path x
threads 1 and 2, and a few larger cases must be bitwise identical on all of them.
Max results and indices are exact; averages are checked relative to the mean of |x|
(rtol 1e-6 / 1e-12, or the worst-case error bound of a float32 sum of K terms, K u,
when that is larger: a global plane can hold thousands of elements).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import pytest

import fastpool
import reference as ref
from bin_cases import (
    PlaneCase,
    MaxAvgPair,
    check_backward,
    check_forward,
    check_identical_on_every_backend,
    check_non_contiguous_inputs,
    check_numerical_gradient,
    check_out_argument,
    cycled,
)
from pool_cases import (
    CHANNELS,
    DTYPES,
    LAYOUTS,
    assert_close,
    assert_max_equal,
    fp,
    params,
    sum_rtol,
)

FWD = {1: "global_max_pool1d", 2: "global_max_pool2d", 3: "global_max_pool3d"}
AVG = {1: "global_avg_pool1d", 2: "global_avg_pool2d", 3: "global_avg_pool3d"}
GLOBAL = MaxAvgPair("global")


@dataclass(frozen=True)
class GCase(PlaneCase):
    keepdims: bool = False

    @property
    def out_shape(self) -> Tuple[int, ...]:
        return self.with_channels((1,) * self.rank) if self.keepdims else (self.batch, self.channels)

    @property
    def id(self) -> str:
        return f"{self.rank}d-{self.variant_id}-{self.sizes_id}" + ("-keepdims" if self.keepdims else "")

    @property
    def terms(self) -> int:
        return self.plane

    def kw(self):
        return dict(keepdims=self.keepdims, layout=self.layout)

    def grad(self, kind: str = "normal") -> np.ndarray:
        return self.make(self.out_shape, kind, "grad" + kind)


SPATIAL = [(1,), (7,), (67,), (1000,), (1, 1), (7, 7), (5, 31), (13, 13), (3, 1), (1, 67), (56, 56),
           (1, 1, 1), (3, 5, 7), (4, 6, 17), (2, 1, 3)]
GRID = [GCase(sp, layout, dtype, batch=1 + k % 2, channels=CHANNELS[k % 4], keepdims=bool(k % 2))
        for k, sp, layout, dtype in cycled(SPATIAL)]
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


# --------------------------------------------------------------------------- grid


@pytest.mark.parametrize("case", params(GRID))
def test_forward_matches_reference(case):
    check_forward(GLOBAL, case)


@pytest.mark.parametrize("case", params(GRID))
def test_backward_matches_reference(case):
    check_backward(GLOBAL, case)


@pytest.mark.parametrize("case", params(BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check_forward(GLOBAL, case)
    check_backward(GLOBAL, case)


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    check_identical_on_every_backend(GLOBAL, case)


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
    check_non_contiguous_inputs(GLOBAL, case)


OUT_CASES = [GCase((8, 67), "channels_first", np.float32, 2, 3),
             GCase((8, 67), "channels_last", np.float64, 2, 17, keepdims=True),
             GCase((3, 5, 7), "channels_first", np.float64, 1, 4, keepdims=True)]


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    check_out_argument(GLOBAL, case)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_gradients_streamed(layout, dtype, backend, rng):
    """Gradients of 4 MiB and more are written with non-temporal stores, whole cache lines
    only: out= at several offsets from a 64-byte boundary (odd plane and channel sizes, so
    planes and rows start anywhere), ties, NaNs and given indices; nothing outside out=
    is written."""
    n, c, h, w = 2, 61, 97, 93  # 4.4 MB in float32
    x = rng.integers(-40, 40, (n, c, h, w)).astype(dtype)  # many tied maxima
    x[0, 3, 50, 7] = x[1, 60, 0, 0] = x[1, 60, 96, 92] = np.nan
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    g = rng.standard_normal((n, c)).astype(dtype)
    kw = dict(layout=layout)
    e_max = ref.global_max_pool_backward(g, x, **kw)
    e_avg = ref.global_avg_pool_backward(g, x.shape, **kw)
    _, idx = fastpool.global_max_pool(x, return_indices=True, **kw)
    item = np.dtype(dtype).itemsize
    for offset in (0, 1, 3, 64 // item - 1):
        buf = np.full(x.size + 2 * (64 // item), -7.0, dtype)
        start = (-buf.ctypes.data // item) % (64 // item) + offset
        out = buf[start:start + x.size].reshape(x.shape)
        assert (out.ctypes.data - offset * item) % 64 == 0
        for call, expect in ((lambda: fastpool.global_max_pool_backward(g, x, out=out, **kw), e_max),
                             (lambda: fastpool.global_max_pool_backward(g, x, indices=idx, out=out, **kw), e_max),
                             (lambda: fastpool.global_avg_pool_backward(g, x.shape, out=out, **kw), e_avg)):
            out.fill(np.nan)
            assert call() is out
            np.testing.assert_allclose(out, expect, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=0)
            assert np.all(buf[:start] == -7.0) and np.all(buf[start + x.size:] == -7.0), f"offset {offset}"
        np.testing.assert_array_equal(fastpool.global_max_pool_backward(g, x, **kw), e_max)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("spatial", [(7,), (3, 4), (2, 3, 2)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_numerical_gradient(spatial, layout, keepdims, rng):
    check_numerical_gradient(GLOBAL, GCase(spatial, layout, np.float64, 2, 3, keepdims), rng)


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
