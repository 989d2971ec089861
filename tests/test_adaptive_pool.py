"""Adaptive max and average pooling, forward and backward, against the NumPy reference.

PyTorch's bin rule: bin i along an axis covers [floor(i*I/O), ceil((i+1)*I/O)), so bins
overlap when O does not divide I, and O may exceed I (pixels repeat). The grid covers
sizes not divisible by the output size, 1-pixel inputs, outputs larger than the input,
None entries (keep the input size), spatial rank 1-3, both layouts and dtypes; it runs
on the default backend, a subset on every SIMD path x threads 1 and 2, and larger cases
must be bitwise identical on all of them. Max values, indices and max gradients of
exactly summable data are exact.
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


def fp(name: str):
    """fastpool.<name>; a missing function fails the test (AttributeError), never skips."""
    return getattr(fastpool, name)


# --------------------------------------------------------------------------- helpers


def sum_rtol(dtype: Any, terms: int) -> float:
    """rtol 1e-6 / 1e-12, or the worst-case bound of a sum of ``terms`` terms, if larger."""
    dtype = np.dtype(dtype)
    return max(RTOL[dtype], (terms - 1) * np.finfo(dtype).eps / 2 * 1.01)


def assert_close(actual, expected, scale, rtol: float, what: str = "") -> None:
    """NaN/inf at the same places; elsewhere |actual - expected| <= rtol * |scale|."""
    fin = _check_specials(actual, expected)
    tol = rtol * np.abs(np.asarray(scale, dtype=np.float64)) + np.finfo(actual.dtype).tiny
    err = np.abs(np.where(fin, actual, 0).astype(np.float64) - np.where(fin, expected, 0))
    bad = fin & ~(err <= tol)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} differ beyond rtol={rtol:.3g}: first at "
                             f"{where}: actual {actual[where]!r}, expected {expected[where]!r}, tol {tol[where]:.3g}")


def assert_max_equal(actual, expected, what: str = "") -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
        (what, actual.dtype, expected.dtype, actual.shape, expected.shape)
    np.testing.assert_array_equal(actual, expected, err_msg=what)
    assert_same_signs(actual, expected)


def _fmt(o) -> str:
    return "x".join("N" if v is None else str(v) for v in o) if isinstance(o, tuple) else str(o)


@dataclass(frozen=True)
class ACase:
    spatial: Tuple[int, ...]
    output_size: Any
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def out_sizes(self) -> Tuple[int, ...]:
        o = self.output_size
        o = (o,) * self.rank if not isinstance(o, tuple) else o
        return tuple(i if v is None else v for v, i in zip(o, self.spatial))

    @property
    def shape(self) -> Tuple[int, ...]:
        if self.layout == "channels_last":
            return (self.batch,) + self.spatial + (self.channels,)
        return (self.batch, self.channels) + self.spatial

    @property
    def out_shape(self) -> Tuple[int, ...]:
        if self.layout == "channels_last":
            return (self.batch,) + self.out_sizes + (self.channels,)
        return (self.batch, self.channels) + self.out_sizes

    @property
    def id(self) -> str:
        return (f"{self.rank}d-{SHORT[self.layout]}-{SHORT[self.dtype]}-N{self.batch}C{self.channels}-"
                f"{'x'.join(map(str, self.spatial))}-to-{_fmt(self.output_size)}")

    @property
    def max_bin(self) -> int:
        return int(np.prod([-(-i // o) + 1 for i, o in zip(self.spatial, self.out_sizes)]))

    def kw(self):
        return dict(output_size=self.output_size, layout=self.layout)

    def data(self, kind: str, salt: str = "") -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32((self.id + kind + salt).encode()))
        return make_data(rng, self.shape, self.dtype, kind)

    def grad(self, kind: str = "ints") -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32((self.id + "grad" + kind).encode()))
        return make_data(rng, self.out_shape, self.dtype, kind)


GEOMS = [
    ((7,), 3), ((7,), (7,)), ((5,), (8,)), ((1,), 1), ((1,), (3,)), ((10,), (4,)), ((67,), 5), ((100,), (33,)),
    ((7, 7), (3, 3)), ((5, 31), (2, 4)), ((1, 1), (2, 3)), ((3, 5), (7, 4)), ((8, 9), (None, 4)),
    ((13, 13), 1), ((6, 6), (6, 6)), ((10, 10), (3, 7)), ((1, 67), (1, 5)), ((56, 56), 7), ((14, 15), (None, None)),
    ((4, 5, 6), (2, 3, 4)), ((3, 7, 5), (None, 2, 3)), ((1, 1, 1), (2, 2, 2)), ((5, 5, 5), 1),
    ((2, 3, 4), (3, 5, 6)), ((4, 6, 17), (2, 3, 5)),
]
CHANNELS = (1, 3, 17, 33)


def _grid():
    cases = []
    for gi, (sp, o) in enumerate(GEOMS):
        for vi, (layout, dtype) in enumerate([(lay, d) for lay in LAYOUTS for d in DTYPES]):
            k = gi + vi
            cases.append(ACase(sp, o, layout, dtype, batch=1 + k % 2, channels=CHANNELS[k % 4]))
    return cases


GRID = _grid()
BACKEND_CASES = [
    ACase((7,), 3, "channels_first", np.float32, 2, 3),
    ACase((5,), (8,), "channels_last", np.float64, 1, 17),
    ACase((5, 31), (2, 4), "channels_first", np.float64, 2, 5),
    ACase((3, 5), (7, 4), "channels_last", np.float32, 2, 17),
    ACase((13, 13), (6, 6), "channels_first", np.float32, 1, 9),
    ACase((1, 1), (2, 3), "channels_first", np.float32, 2, 3),
    ACase((4, 5, 6), (2, 3, 4), "channels_last", np.float32, 2, 3),
    ACase((3, 7, 5), (None, 2, 3), "channels_first", np.float64, 1, 2),
]
IDENTITY_CASES = [
    ACase((33, 67), (5, 9), "channels_first", np.float32, 2, 17),
    ACase((20, 21), (6, 6), "channels_last", np.float32, 2, 37),
    ACase((13, 13), (4, 4), "channels_first", np.float32, 8, 64),
    ACase((3000,), (7,), "channels_first", np.float64, 2, 7),
    ACase((9, 10, 11), (4, 3, 5), "channels_last", np.float64, 2, 35),
    ACase((7, 7), (11, 11), "channels_first", np.float32, 4, 33),
]


def params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


def ref_max(case: ACase, kind: str):
    return cached(("amax", case.id, kind), lambda: ref.adaptive_max_pool(case.data(kind), **case.kw()))


def ref_avg(case: ACase, kind: str):
    def compute():
        x = case.data(kind)
        return ref.adaptive_avg_pool(x, **case.kw()), ref.adaptive_avg_pool(np.abs(x), **case.kw())
    return cached(("aavg", case.id, kind), compute)


def check_forward(case: ACase, kinds=("normal", "ints", "special")) -> None:
    for kind in kinds:
        x = case.data(kind)
        e_y, e_i = ref_max(case, kind)
        y, idx = fastpool.adaptive_max_pool(x, return_indices=True, **case.kw())
        assert idx.dtype == np.int64 and idx.shape == case.out_shape
        assert_max_equal(y, e_y, f"max {kind}")
        np.testing.assert_array_equal(idx, e_i, err_msg=f"indices {kind}")
        assert_max_equal(fastpool.adaptive_max_pool(x, **case.kw()), e_y, f"max {kind} without indices")
        e_a, scale = ref_avg(case, kind)
        rtol = RTOL[np.dtype(case.dtype)] if kind == "ints" else sum_rtol(case.dtype, case.max_bin)
        assert_close(fastpool.adaptive_avg_pool(x, **case.kw()), e_a, scale, rtol, f"avg {kind}")


def check_backward(case: ACase) -> None:
    x = case.data("ints")  # ties: the first maximum gets the gradient
    g = case.grad("ints")  # overlapping bins add multiples of 1/4: exact sums
    expected = cached(("amax_bwd", case.id), lambda: ref.adaptive_max_pool_backward(g, x, **case.kw()))
    gx = fastpool.adaptive_max_pool_backward(g, x, **case.kw())
    assert gx.shape == x.shape and gx.dtype == x.dtype
    assert_max_equal(gx, expected, "max backward")
    _, idx = ref_max(case, "ints")
    assert_max_equal(fastpool.adaptive_max_pool_backward(g, x, indices=idx, **case.kw()), expected,
                     "max backward with indices")

    def avg_expected():
        return (ref.adaptive_avg_pool_backward(g, x.shape, **case.kw()),
                ref.adaptive_avg_pool_backward(np.abs(g), x.shape, **case.kw()))
    e_avg, scale = cached(("aavg_bwd", case.id), avg_expected)
    ga = fastpool.adaptive_avg_pool_backward(g, x.shape, **case.kw())
    assert ga.shape == x.shape and ga.dtype == x.dtype
    assert_close(ga, e_avg, scale, RTOL[np.dtype(case.dtype)], "avg backward")


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


def _all_outputs(case: ACase):
    x, xs, g = case.data("normal"), case.data("special"), case.grad("normal")
    y, idx = fastpool.adaptive_max_pool(x, return_indices=True, **case.kw())
    ys, idxs = fastpool.adaptive_max_pool(xs, return_indices=True, **case.kw())
    return {"max": y, "idx": idx, "max special": ys, "idx special": idxs,
            "avg": fastpool.adaptive_avg_pool(x, **case.kw()),
            "avg special": fastpool.adaptive_avg_pool(xs, **case.kw()),  # NaN payloads too
            "max bwd": fastpool.adaptive_max_pool_backward(g, x, **case.kw()),
            "avg bwd": fastpool.adaptive_avg_pool_backward(g, x.shape, **case.kw())}


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
    base = runs[base_key]
    for key, got in runs.items():
        for name, value in base.items():
            assert_bitwise_equal(got[name], value, f"{name} on {key} vs {base_key}")
    x, g = case.data("normal"), case.grad("normal")
    e_y, e_i = ref.adaptive_max_pool(x, **case.kw())
    assert_max_equal(base["max"], e_y)
    np.testing.assert_array_equal(base["idx"], e_i)
    assert_close(base["avg"], ref.adaptive_avg_pool(x, **case.kw()), ref.adaptive_avg_pool(np.abs(x), **case.kw()),
                 sum_rtol(case.dtype, case.max_bin))
    assert_close(base["max bwd"], ref.adaptive_max_pool_backward(g, x, **case.kw()),
                 ref.adaptive_max_pool_backward(np.abs(g), x, **case.kw()), RTOL[np.dtype(case.dtype)])
    assert_close(base["avg bwd"], ref.adaptive_avg_pool_backward(g, x.shape, **case.kw()),
                 ref.adaptive_avg_pool_backward(np.abs(g), x.shape, **case.kw()), RTOL[np.dtype(case.dtype)])


def _random_cases(n: int, seed: int):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        rank = int(rng.integers(1, 4))
        spatial = tuple(int(v) for v in rng.integers(1, 21 if rank < 3 else 9, rank))
        out = tuple(None if rng.random() < 0.1 else int(rng.integers(1, 2 * s + 3)) for s in spatial)
        cases.append(ACase(spatial, out, LAYOUTS[int(rng.integers(2))], DTYPES[int(rng.integers(2))],
                           int(rng.integers(1, 3)), int(rng.integers(1, 21))))
    return cases


@pytest.mark.parametrize("case", params(_random_cases(80, seed=3)))
def test_random_sizes_match_reference(case):
    check_forward(case, kinds=("normal", "special"))
    check_backward(case)


# --------------------------------------------------------------------------- argument forms


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_fixed_rank_forms_and_unbatched_input(rank, layout):
    spatial, osz = {1: ((11,), (4,)), 2: ((5, 7), (3, 9)), 3: ((3, 4, 5), (2, 5, 2))}[rank]
    case = ACase(spatial, osz, layout, np.float64, 2, 5)
    x, g = case.data("normal"), case.grad("normal")
    kw = case.kw()
    e_y, e_i = ref.adaptive_max_pool(x, **kw)
    e_a = ref.adaptive_avg_pool(x, **kw)
    e_gm = ref.adaptive_max_pool_backward(g, x, **kw)
    e_ga = ref.adaptive_avg_pool_backward(g, x.shape, **kw)
    fmax, favg = fp(f"adaptive_max_pool{rank}d"), fp(f"adaptive_avg_pool{rank}d")
    fmax_b, favg_b = fp(f"adaptive_max_pool{rank}d_backward"), fp(f"adaptive_avg_pool{rank}d_backward")
    for batched in (True, False):
        xb, gb = (x, g) if batched else (x[0], g[0])
        ey, ei, ea, egm, ega = (e_y, e_i, e_a, e_gm, e_ga) if batched else (e_y[0], e_i[0], e_a[0], e_gm[0], e_ga[0])
        for f_max, f_avg, f_max_b, f_avg_b in ((fmax, favg, fmax_b, favg_b),
                                               (fastpool.adaptive_max_pool, fastpool.adaptive_avg_pool,
                                                fastpool.adaptive_max_pool_backward,
                                                fastpool.adaptive_avg_pool_backward)):
            y, idx = f_max(xb, return_indices=True, **kw)
            assert_max_equal(y, ey, f"batched={batched}")
            np.testing.assert_array_equal(idx, ei)
            np.testing.assert_allclose(f_avg(xb, **kw), ea, rtol=1e-12)
            assert_max_equal(f_max_b(gb, xb, **kw), egm)
            assert_max_equal(f_max_b(gb, xb, indices=ei, **kw), egm)
            np.testing.assert_allclose(f_avg_b(gb, xb.shape, **kw), ega, rtol=1e-12)


def test_output_size_forms():
    """An int means every axis (rank x.ndim - 2 for the generic form, fixed for 1d/2d/3d);
    None keeps the input size; list and numpy ints work like a tuple."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    e3 = ref.adaptive_avg_pool(x, (3, 3))
    np.testing.assert_array_equal(fastpool.adaptive_avg_pool(x, 3), fastpool.adaptive_avg_pool(x, (3, 3)))
    assert_close(fastpool.adaptive_avg_pool(x, 3), e3, ref.adaptive_avg_pool(np.abs(x), (3, 3)), 1e-6)
    np.testing.assert_array_equal(fastpool.adaptive_avg_pool2d(x, 3), fastpool.adaptive_avg_pool(x, (3, 3)))
    np.testing.assert_array_equal(fastpool.adaptive_max_pool(x, [3, np.int64(4)]),
                                  fastpool.adaptive_max_pool(x, (3, 4)))
    np.testing.assert_array_equal(fastpool.adaptive_max_pool(x, (None, 4)), fastpool.adaptive_max_pool(x, (9, 4)))
    np.testing.assert_array_equal(fastpool.adaptive_max_pool2d(x, (None, None)), x)
    assert_close(fastpool.adaptive_avg_pool2d(x[0], (4, None)), ref.adaptive_avg_pool(x[0], (4, 10)),
                 ref.adaptive_avg_pool(np.abs(x[0]), (4, 10)), 1e-6)
    # an int with the fixed-rank 3d form on an unbatched (C, D, H, W) input
    assert fastpool.adaptive_max_pool3d(x, 2).shape == (2, 2, 2, 2)
    assert fastpool.adaptive_avg_pool1d(x[0, 0], 4).shape == (9, 4)
    # the tuple's length gives the rank: (C, H, W) as unbatched 2D, (N, C, W) as 1D
    assert fastpool.adaptive_max_pool(x[0], (2, 2)).shape == (3, 2, 2)
    assert fastpool.adaptive_max_pool(x[0], (5,)).shape == (3, 9, 5)
    # identity: output size == input size
    np.testing.assert_array_equal(fastpool.adaptive_avg_pool(x, (9, 10)), x)
    y, idx = fastpool.adaptive_max_pool(x, (9, 10), return_indices=True)
    np.testing.assert_array_equal(idx, np.broadcast_to(np.arange(90).reshape(9, 10), x.shape))


def test_values_by_hand():
    """I = 5, O = 3: bins [0, 2), [1, 4), [3, 5) overlap at 1 and 3; I = 2, O = 3: [0, 1),
    [0, 2), [1, 2) (an output larger than the input repeats pixels)."""
    x = np.array([[[1.0, 5.0, 2.0, 7.0, 7.0]]])
    y, idx = fastpool.adaptive_max_pool1d(x, 3, return_indices=True)
    np.testing.assert_array_equal(y, [[[5.0, 7.0, 7.0]]])
    np.testing.assert_array_equal(idx, [[[1, 3, 3]]])
    np.testing.assert_allclose(fastpool.adaptive_avg_pool1d(x, 3), [[[3.0, 14 / 3, 7.0]]], rtol=1e-15)
    g = np.array([[[1.0, 2.0, 4.0]]])
    np.testing.assert_array_equal(fastpool.adaptive_max_pool1d_backward(g, x, 3), [[[0, 1, 0, 6, 0]]])
    np.testing.assert_allclose(fastpool.adaptive_avg_pool1d_backward(g, x.shape, 3),
                               [[[0.5, 0.5 + 2 / 3, 2 / 3, 2 / 3 + 2, 2]]], rtol=1e-15)
    x2 = np.array([[[3.0, np.nan]]])
    y, idx = fastpool.adaptive_max_pool1d(x2, 3, return_indices=True)
    np.testing.assert_array_equal(y, [[[3.0, np.nan, np.nan]]])
    np.testing.assert_array_equal(idx, [[[0, 1, 1]]])
    np.testing.assert_allclose(fastpool.adaptive_avg_pool1d_backward(g, (1, 1, 2), 3), [[[2.0, 5.0]]], rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nan_propagates(dtype, layout, backend):
    case = ACase((9, 13), (4, 5), layout, dtype, 2, 17)
    x = case.data("normal")
    xc = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    xc[0, 1, 2, 3] = np.nan  # bins (0..1, 1) overlap at rows 2: several outputs
    xc[0, 1, 2, 1] = np.nan
    xc[1, 2] = -np.inf
    y, idx = fastpool.adaptive_max_pool(x, return_indices=True, **case.kw())
    e_y, e_i = ref.adaptive_max_pool(x, **case.kw())
    assert_max_equal(y, e_y)
    np.testing.assert_array_equal(idx, e_i)
    yc = y if layout == "channels_first" else np.moveaxis(y, -1, 1)
    assert np.isnan(yc[0, 1, :2, :2]).all() and np.isfinite(yc[0, 1, 2:]).all()
    assert (yc[1, 2] == -np.inf).all()
    a = fastpool.adaptive_avg_pool(x, **case.kw())
    ac = a if layout == "channels_first" else np.moveaxis(a, -1, 1)
    assert np.isnan(ac[0, 1, :2, :2]).all() and np.isfinite(ac[0, 0]).all()


# --------------------------------------------------------------------------- memory


VIEW_CASES = [ACase((9, 31), (4, 7), "channels_first", np.float32, 2, 3),
              ACase((3, 4, 9), (2, 3, 4), "channels_last", np.float64, 2, 17),
              ACase((67,), (10,), "channels_first", np.float64, 2, 5)]


@pytest.mark.parametrize("case", params(VIEW_CASES))
def test_non_contiguous_inputs(case, backend):
    x = case.data("ints")
    before = x.copy()
    g = case.grad("ints")
    kw = case.kw()
    e_y, e_i = ref.adaptive_max_pool(x, **kw)
    e_a, scale = ref.adaptive_avg_pool(x, **kw), ref.adaptive_avg_pool(np.abs(x), **kw)
    e_gm = ref.adaptive_max_pool_backward(g, x, **kw)
    e_ga = ref.adaptive_avg_pool_backward(g, x.shape, **kw)
    g_scale = ref.adaptive_avg_pool_backward(np.abs(g), x.shape, **kw)
    rtol = RTOL[np.dtype(case.dtype)]
    for name, xv in views(x):
        y, idx = fastpool.adaptive_max_pool(xv, return_indices=True, **kw)
        assert_max_equal(y, e_y, name)
        np.testing.assert_array_equal(idx, e_i, err_msg=name)
        assert_close(fastpool.adaptive_avg_pool(xv, **kw), e_a, scale, rtol, name)
        assert_max_equal(fastpool.adaptive_max_pool_backward(g, xv, **kw), e_gm, name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        assert_max_equal(fastpool.adaptive_max_pool_backward(gv, x, **kw), e_gm, f"grad {name}")
        assert_max_equal(fastpool.adaptive_max_pool_backward(gv, x, indices=e_i, **kw), e_gm, f"grad {name}")
        assert_close(fastpool.adaptive_avg_pool_backward(gv, x.shape, **kw), e_ga, g_scale, rtol, f"grad {name}")
    for name, iv in views(e_i):
        assert_max_equal(fastpool.adaptive_max_pool_backward(g, x, indices=iv, **kw), e_gm, f"indices {name}")
    # a channels_first view of channels_last memory, and the reverse
    xt = np.ascontiguousarray(np.moveaxis(x, 1, -1) if case.layout == "channels_first" else np.moveaxis(x, -1, 1))
    xv = np.moveaxis(xt, -1, 1) if case.layout == "channels_first" else np.moveaxis(xt, 1, -1)
    y, idx = fastpool.adaptive_max_pool(xv, return_indices=True, **kw)
    assert_max_equal(y, e_y, "transposed memory")
    np.testing.assert_array_equal(idx, e_i)
    assert_close(fastpool.adaptive_avg_pool(xv, **kw), e_a, scale, rtol, "transposed memory")
    assert_max_equal(fastpool.adaptive_max_pool_backward(g, xv, **kw), e_gm, "transposed memory")
    out = np.full(e_y.shape, np.nan, case.dtype)
    assert fastpool.adaptive_max_pool(xv, out=out, **kw) is out
    assert_max_equal(out, e_y, "transposed memory, out=")


OUT_CASES = [ACase((8, 67), (3, 5), "channels_first", np.float32, 2, 3),
             ACase((8, 67), (9, 70), "channels_last", np.float64, 2, 17),
             ACase((31,), (None,), "channels_first", np.float64, 1, 5),
             ACase((3, 5, 7), (2, 2, 2), "channels_last", np.float32, 1, 3)]


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    x, g = case.data("normal"), case.grad("ints")
    kw = case.kw()
    e_y, e_i = ref_max(case, "normal")
    out = np.full(case.out_shape, np.nan, case.dtype)
    assert fastpool.adaptive_max_pool(x, out=out, **kw) is out
    assert_max_equal(out, e_y)
    out = np.full(case.out_shape, np.nan, case.dtype)
    y, idx = fastpool.adaptive_max_pool(x, return_indices=True, out=out, **kw)
    assert y is out
    np.testing.assert_array_equal(idx, e_i)
    out = np.full(case.out_shape, np.nan, case.dtype)
    assert fastpool.adaptive_avg_pool(x, out=out, **kw) is out
    e_a, scale = ref_avg(case, "normal")
    assert_close(out, e_a, scale, sum_rtol(case.dtype, case.max_bin))
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fastpool.adaptive_max_pool_backward(g, x, out=gout, **kw) is gout
    assert_max_equal(gout, ref.adaptive_max_pool_backward(g, x, **kw))
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fastpool.adaptive_avg_pool_backward(g, x.shape, out=gout, **kw) is gout
    assert_close(gout, ref.adaptive_avg_pool_backward(g, x.shape, **kw),
                 ref.adaptive_avg_pool_backward(np.abs(g), x.shape, **kw), RTOL[np.dtype(case.dtype)])


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
@pytest.mark.parametrize("spatial, output_size", [((7,), (3,)), ((2,), (5,)), ((5, 4), (2, 3)), ((3, 2), (4, 3)),
                                                  ((2, 3, 4), (1, 2, 3))],
                         ids=["1d-7to3", "1d-2to5", "2d-5x4to2x3", "2d-3x2to4x3", "3d"])
def test_numerical_gradient(spatial, output_size, layout, rng):
    case = ACase(spatial, output_size, layout, np.float64, 2, 3)
    n = int(np.prod(case.shape))
    x = (rng.permutation(n) * 1e-2 + rng.uniform(0, 1e-3, n)).reshape(case.shape)
    g = rng.standard_normal(case.out_shape)
    kw = case.kw()
    expected = numerical_gradient(lambda v: fastpool.adaptive_max_pool(v, **kw), x, g)
    np.testing.assert_allclose(fastpool.adaptive_max_pool_backward(g, x, **kw), expected, rtol=0, atol=1e-8)
    expected = numerical_gradient(lambda v: fastpool.adaptive_avg_pool(v, **kw), x, g)
    np.testing.assert_allclose(fastpool.adaptive_avg_pool_backward(g, x.shape, **kw), expected, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- torch

TORCH_CASES = GRID[::2]


@pytest.mark.parametrize("kind", ["normal", "special"])
@pytest.mark.parametrize("case", params(TORCH_CASES))
def test_matches_torch(case, kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    r = case.rank
    x = case.data(kind)
    g = case.grad("ints")
    osz = case.out_sizes

    def run(fn, **kw):
        leaf = torch.from_numpy(x.copy()).requires_grad_(True)
        t = leaf.movedim(-1, 1) if case.layout == "channels_last" else leaf
        if kind == "special":  # torch's channels-last kernels: see test_torch.py on -inf windows
            t = t.contiguous()
        res = fn(t, osz, **kw)
        y = res[0] if isinstance(res, tuple) else res
        gt = torch.from_numpy(g.copy())
        y.backward(gt.movedim(-1, 1) if case.layout == "channels_last" else gt)

        def back(a):
            a = a.detach()
            return np.ascontiguousarray((a.movedim(1, -1) if case.layout == "channels_last" else a).numpy())
        return tuple(back(a) for a in (res if isinstance(res, tuple) else (res,))), leaf.grad.numpy()

    (y_t, i_t), gx_t = run({1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[r],
                           return_indices=True)
    y, idx = fastpool.adaptive_max_pool(x, return_indices=True, **case.kw())
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(idx, i_t)
    if kind == "normal":  # (torch's channels-last kernels route a -inf window's gradient elsewhere)
        assert_close(fastpool.adaptive_max_pool_backward(g, x, **case.kw()), gx_t,
                     ref.adaptive_max_pool_backward(np.abs(g), x, **case.kw()), RTOL[np.dtype(case.dtype)])
        (a_t,), ga_t = run({1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[r])
        assert_close(fastpool.adaptive_avg_pool(x, **case.kw()), a_t, ref.adaptive_avg_pool(np.abs(x), **case.kw()),
                     2 * sum_rtol(case.dtype, case.max_bin))
        assert_close(fastpool.adaptive_avg_pool_backward(g, x.shape, **case.kw()), ga_t,
                     ref.adaptive_avg_pool_backward(np.abs(g), x.shape, **case.kw()), 2 * RTOL[np.dtype(case.dtype)])
