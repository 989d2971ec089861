"""Spatial pyramid pooling (He et al. 2014) and strip pooling (SPNet), forward and backward.

SPP: adaptive max (or avg) pooling to each level's grid, each flattened as C x bins, the
levels concatenated: (N, C * sum(prod(bins))), the same order for channels_last input;
any input size gives the same output length. Strip pooling: y_h reduces over W,
(N, C, H, 1), y_w over H, (N, C, 1, W). Both against the NumPy reference over a grid of
sizes (1 pixel, sizes not divisible by the bins, more bins than pixels), both layouts,
both dtypes and modes; a subset on every SIMD path x threads 1 and 2; larger cases
bitwise identical on all of them. Max values and gradients of exactly summable data are
exact; averages are checked relative to the same pooling of |x| (rtol 1e-6 / 1e-12, or
the K u bound of a float32 sum of K terms when larger).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
import pytest

import fastpool
import reference as ref
from bin_cases import BinCase, cycled, with_scale
from pool_cases import (
    CHANNELS,
    DTYPES,
    LAYOUTS,
    RTOL,
    _fmt,
    assert_close,
    assert_max_equal,
    cached,
    distinct_values,
    identical_on_every_backend,
    make_data,
    numerical_gradient,
    params,
    sum_rtol,
    transposed_memory,
    views,
)

MODES = ("max", "avg")
MODE_VARIANTS = [(m, lay, d) for m in MODES for lay in LAYOUTS for d in DTYPES]


def _level_bins(levels, rank):
    return [(lev,) * rank if isinstance(lev, int) else tuple(lev) for lev in levels]


# =========================================================================== SPP


@dataclass(frozen=True)
class SCase(BinCase):
    spatial: Tuple[int, ...]
    levels: Any = (1, 2, 4)
    mode: str = "max"
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3

    @property
    def out_len(self) -> int:
        return self.channels * sum(int(np.prod(b)) for b in _level_bins(self.levels, self.rank))

    @property
    def id(self) -> str:
        return f"{self.rank}d-{self.mode}-{self.variant_id}-{self.sizes_id}-levels{_fmt(tuple(self.levels))}"

    @property
    def max_bin(self) -> int:
        return self.plane  # level 1 reduces the whole plane

    def kw(self):
        return dict(levels=self.levels, mode=self.mode, layout=self.layout)

    def grad(self, kind: str = "ints") -> np.ndarray:
        return self.make((self.batch, self.out_len), kind, "grad" + kind)


SPP_GEOMS = [
    ((13, 13), (1, 2, 4)), ((7, 9), (1, 2, 3)), ((5, 6), ((1, 1), (2, 3))), ((1, 1), (1, 2)), ((3, 4), (4, 6)),
    ((32, 17), (1, 2, 4, 6)), ((6, 6), (1, 2, 4)), ((7, 7), (4, 2, 1)), ((2, 9), ((2, 1), (1, 3), 5)),
    ((67,), (1, 2, 4)), ((3,), (1, 5)), ((4, 5, 6), (1, 2)), ((2, 3, 3), ((1, 1, 1), (2, 3, 4))),
    # nested levels (each coarse bin a union of finer bins), in any order, with ties and NaN
    ((8, 8), (1, 2, 4)), ((12, 12), (6, 3, 1, 2)), ((6, 9), ((1, 1), (2, 3), (6, 9))), ((16,), (1, 2, 4, 8)),
    ((4, 4, 8), (1, 2, 4)),
]
SPP_GRID = [SCase(sp, levels, mode, layout, dtype, batch=1 + k % 2, channels=CHANNELS[k % 4])
            for k, (sp, levels), mode, layout, dtype in cycled(SPP_GEOMS, MODE_VARIANTS)]
SPP_BACKEND = [
    SCase((13, 13), (1, 2, 4), "max", "channels_first", np.float32, 2, 17),
    SCase((13, 13), (1, 2, 4), "avg", "channels_last", np.float32, 2, 33),
    SCase((7, 9), ((1, 1), (2, 3)), "max", "channels_last", np.float64, 1, 3),
    SCase((3, 4), (4, 6), "avg", "channels_first", np.float64, 2, 5),
    SCase((1, 1), (1, 2), "max", "channels_last", np.float32, 2, 3),
    SCase((4, 5, 6), (1, 2), "avg", "channels_first", np.float32, 1, 3),
    SCase((8, 8), (1, 2, 4), "max", "channels_first", np.float32, 2, 17),
    SCase((12, 12), (6, 3, 1, 2), "max", "channels_last", np.float64, 2, 33),
]
SPP_IDENTITY = [
    SCase((13, 13), (1, 2, 4), "max", "channels_first", np.float32, 8, 64),
    SCase((13, 13), (1, 2, 4), "avg", "channels_first", np.float32, 8, 64),
    SCase((7, 7), (1, 2, 3, 6), "avg", "channels_last", np.float32, 4, 129),
    SCase((7, 7), (1, 2, 3, 6), "max", "channels_last", np.float64, 4, 129),
    SCase((33, 47), ((1, 1), (2, 3), (5, 4)), "avg", "channels_first", np.float64, 2, 17),
]


def ref_spp(case: SCase, kind: str):
    return cached(("spp", case.id, kind), lambda: with_scale(ref.spatial_pyramid_pool, case.data(kind), **case.kw()))


def ref_spp_bwd(case: SCase, kind: str = "ints"):
    return cached(("spp_bwd", case.id, kind),
                  lambda: with_scale(ref.spatial_pyramid_pool_backward, case.grad(), case.data(kind), **case.kw()))


def check_spp(case: SCase, kinds=("normal", "ints", "special")) -> None:
    for kind in kinds:
        x = case.data(kind)
        e, scale = ref_spp(case, kind)
        y = fastpool.spatial_pyramid_pool(x, **case.kw())
        assert y.shape == (case.batch, case.out_len) and y.dtype == x.dtype
        if case.mode == "max":
            assert_max_equal(y, e, f"forward {kind}")
        else:
            rtol = RTOL[np.dtype(case.dtype)] if kind == "ints" else sum_rtol(case.dtype, case.max_bin)
            assert_close(y, e, scale, rtol, f"forward {kind}")
    x, g = case.data("ints"), case.grad("ints")  # ties; exact sums of multiples of 1/4
    e, scale = ref_spp_bwd(case)
    gx = fastpool.spatial_pyramid_pool_backward(g, x, **case.kw())
    assert gx.shape == x.shape and gx.dtype == x.dtype
    if case.mode == "max":
        assert_max_equal(gx, e, "backward")
    else:
        assert_close(gx, e, scale, RTOL[np.dtype(case.dtype)], "backward")


@pytest.mark.parametrize("case", params(SPP_GRID))
def test_spp_matches_reference(case):
    check_spp(case)


@pytest.mark.parametrize("case", params(SPP_BACKEND))
def test_spp_every_backend_matches_reference(case, backend):
    check_spp(case)


def _spp_random(n: int, seed: int):
    """Random levels (1 to 6 bins per axis, square or not, any order) over random sizes,
    half of them multiples of every level (nested bins)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        rank = (1, 2, 2, 2, 3)[int(rng.integers(5))]
        levels = []
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.6:
                levels.append(int(rng.integers(1, 7)))
            else:
                levels.append(tuple(int(v) for v in rng.integers(1, 7, rank)))
        if i % 2:
            bins = _level_bins(levels, rank)
            spatial = tuple(int(np.lcm.reduce([b[a] for b in bins])) * int(rng.integers(1, 3)) for a in range(rank))
        else:
            spatial = tuple(int(v) for v in rng.integers(1, 20 if rank < 3 else 8, rank))
        cases.append(SCase(spatial, tuple(levels), MODES[i % 4 // 2], LAYOUTS[int(rng.integers(2))],
                           DTYPES[int(rng.integers(2))], int(rng.integers(1, 3)), int(rng.integers(1, 20))))
    return cases


@pytest.mark.parametrize("case", params(_spp_random(40, seed=7)))
def test_spp_random_levels_match_reference(case):
    check_spp(case, kinds=("ints", "special"))


def _spp_outputs(case: SCase):
    x, g = case.data("normal"), case.grad("normal")
    return {"y": fastpool.spatial_pyramid_pool(x, **case.kw()),
            "y special": fastpool.spatial_pyramid_pool(case.data("special"), **case.kw()),
            "grad": fastpool.spatial_pyramid_pool_backward(g, x, **case.kw())}


@pytest.mark.parametrize("case", params(SPP_IDENTITY))
def test_spp_bitwise_identical_on_every_backend(case):
    base = identical_on_every_backend(lambda: _spp_outputs(case))
    x, g = case.data("normal"), case.grad("normal")
    kw = case.kw()
    assert_close(base["y"], *with_scale(ref.spatial_pyramid_pool, x, **kw), sum_rtol(case.dtype, case.max_bin))
    assert_close(base["grad"], *with_scale(ref.spatial_pyramid_pool_backward, g, x, **kw), sum_rtol(case.dtype, 8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spatial, levels", [((7, 7), (1, 2, 4)), ((13, 13), (1, 2, 4)), ((32, 32), (1, 2, 3, 6)),
                                             ((33, 32), (1, 2, 4)), ((9,), (1, 2, 4)), ((2, 2), (4, 1))], ids=str)
def test_spp_max_gradient_identical_in_both_layouts(spatial, levels, dtype, backend):
    """A pixel that is the maximum of several bins (its level-1 bin and the finer bins
    holding it) receives their gradients' sum, added in one order: both layouts give the
    same bits, though their work items group lanes differently (21 channels: partial
    vectors, items across samples)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 21) + spatial).astype(dtype)
    n_bins = sum(int(np.prod(b)) for b in _level_bins(levels, len(spatial)))
    g = rng.standard_normal((3, 21 * n_bins)).astype(dtype)
    gf = fastpool.spatial_pyramid_pool_backward(g, x, levels)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    gl = fastpool.spatial_pyramid_pool_backward(g, xl, levels, layout="channels_last")
    np.testing.assert_array_equal(np.moveaxis(gl, -1, 1), gf)
    assert_close(gf, *with_scale(ref.spatial_pyramid_pool_backward, g, x, levels), sum_rtol(dtype, 8))


@pytest.mark.parametrize("mode", MODES)
def test_spp_output_length_does_not_depend_on_input_size(mode):
    rng = np.random.default_rng(0)
    for levels, length in (((1, 2, 4), 21), (((1, 1), (2, 3)), 7), ((3,), 9)):
        sizes = ((13, 13), (7, 9), (1, 1), (2, 40), (64, 3))
        xs = [rng.standard_normal((2, 5, h, w)).astype(np.float32) for h, w in sizes]
        shapes = [fastpool.spatial_pyramid_pool(x, levels, mode).shape for x in xs]
        assert shapes == [(2, 5 * length)] * len(shapes)


def test_spp_order_and_defaults():
    """Level by level, each C x bins_h x bins_w (row-major); default levels (1, 2, 4), max;
    channels_last input gives the same order."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 8))
    y = fastpool.spatial_pyramid_pool(x)
    parts = [x.max(axis=(2, 3)).reshape(2, -1),
             x.reshape(2, 3, 2, 4, 2, 4).max(axis=(3, 5)).reshape(2, -1),
             x.reshape(2, 3, 4, 2, 4, 2).max(axis=(3, 5)).reshape(2, -1)]
    np.testing.assert_array_equal(y, np.concatenate(parts, axis=1))
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(fastpool.spatial_pyramid_pool(xl, layout="channels_last"), y)
    a = fastpool.spatial_pyramid_pool(x, ((1, 1), (2, 4)), mode="avg")
    e = np.concatenate([x.mean(axis=(2, 3)).reshape(2, -1),
                        x.reshape(2, 3, 2, 4, 4, 2).mean(axis=(3, 5)).reshape(2, -1)], axis=1)
    np.testing.assert_allclose(a, e, rtol=1e-13)
    assert_close(fastpool.spatial_pyramid_pool(xl, ((1, 1), (2, 4)), mode="avg", layout="channels_last"), e,
                 ref.spatial_pyramid_pool(np.abs(x), ((1, 1), (2, 4)), "avg"), 1e-12)
    # levels as a list, numpy ints
    np.testing.assert_array_equal(fastpool.spatial_pyramid_pool(x, [np.int64(1), 2, (4, 4)]), y)


@pytest.mark.parametrize("levels", [(1, 2), (2, 1), ((1, 1), (2, 2), (4, 4))], ids=str)
def test_spp_ties_and_nan_in_nested_levels(levels, backend):
    """A coarse bin that is a union of finer bins follows its own row-major order: the
    first maximum wins ties and the last NaN is routed, whichever sub-bin holds it."""
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 0] = 1.0  # top-left 2x2 bin, second row
    x[0, 0, 0, 2] = 1.0  # top-right 2x2 bin, first row: the plane's first maximum
    n = sum(int(np.prod(b)) for b in _level_bins(levels, 2))
    whole = [i for i, b in enumerate(_level_bins(levels, 2)) if b == (1, 1)][0]
    start = sum(int(np.prod(b)) for b in _level_bins(levels, 2)[:whole])
    g = np.zeros((1, n), np.float32)
    g[0, start] = 1.0  # the gradient of the whole-plane bin only
    e = np.zeros_like(x)
    e[0, 0, 0, 2] = 1.0
    np.testing.assert_array_equal(fastpool.spatial_pyramid_pool_backward(g, x, levels), e)
    x[0, 0, 1, 0] = x[0, 0, 0, 2] = np.nan  # the last NaN in row-major order is (1, 0)
    e = np.zeros_like(x)
    e[0, 0, 1, 0] = 1.0
    np.testing.assert_array_equal(fastpool.spatial_pyramid_pool_backward(g, x, levels), e)
    np.testing.assert_array_equal(fastpool.spatial_pyramid_pool_backward(g, x, levels),
                                  ref.spatial_pyramid_pool_backward(g, x, levels))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("levels", [(1, 2, 4), ((1, 1), (2, 3), 5), (3, 6)], ids=str)
def test_spp_indices_round_trip(levels, layout, dtype, backend, rng):
    """return_indices gives each bin's argmax (first maximum, last NaN) shaped like the
    output; the backward given them equals the recomputing backward and the reference,
    reads x only for its shape, and rejects an index outside the plane by position."""
    n, c, h, w = 2, 5, 13, 11
    x = rng.integers(-4, 4, (n, c, h, w)).astype(dtype)  # ties
    x[1, 2, 5, 5] = x[1, 2, 7, 1] = np.nan
    if layout == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y, idx = fastpool.spatial_pyramid_pool(x, levels, layout=layout, return_indices=True)
    assert idx.dtype == np.int64 and idx.shape == y.shape
    assert_max_equal(y, fastpool.spatial_pyramid_pool(x, levels, layout=layout))
    np.testing.assert_array_equal(idx, ref.spatial_pyramid_pool_indices(x, levels, layout))
    g = rng.standard_normal(y.shape).astype(dtype)
    expect = ref.spatial_pyramid_pool_backward(g, x, levels, layout=layout)
    rtol = RTOL[np.dtype(dtype)]
    shape_only = np.broadcast_to(np.zeros((), dtype), x.shape)  # no data: the indices say where
    got = fastpool.spatial_pyramid_pool_backward(g, shape_only, levels, layout=layout, indices=idx)
    assert_close(got, expect, np.abs(g).max(), rtol)
    assert_close(got, fastpool.spatial_pyramid_pool_backward(g, x, levels, layout=layout), np.abs(g).max(), rtol)
    bad = idx.copy()
    bad[1, 7] = h * w
    with pytest.raises(ValueError, match=f"indices holds {h * w} at flat position {idx.shape[1] + 7},"):
        fastpool.spatial_pyramid_pool_backward(g, x, levels, layout=layout, indices=bad)


def test_spp_indices_need_max_mode():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="return_indices needs mode='max'"):
        fastpool.spatial_pyramid_pool(x, mode="avg", return_indices=True)
    g = np.zeros((1, 42), np.float32)
    with pytest.raises(ValueError, match="indices needs mode='max'"):
        fastpool.spatial_pyramid_pool_backward(g, x, mode="avg", indices=np.zeros((1, 42), np.int64))
    with pytest.raises(TypeError, match="indices has dtype int32"):
        fastpool.spatial_pyramid_pool_backward(g, x, indices=np.zeros((1, 42), np.int32))
    with pytest.raises(ValueError, match=r"indices has shape \(1, 41\)"):
        fastpool.spatial_pyramid_pool_backward(g, x, indices=np.zeros((1, 41), np.int64))
    with pytest.raises(TypeError, match="return_indices"):
        fastpool.spatial_pyramid_pool(x, return_indices="yes")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_spp_nan_propagates(layout, dtype, backend):
    case = SCase((8, 8), (1, 2, 4), "max", layout, dtype, 2, 3)
    x = case.data("normal")
    xc = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    xc[1, 2, 5, 1] = np.nan
    y = fastpool.spatial_pyramid_pool(x, **case.kw())
    nan = np.isnan(y)
    # level 1: channel 2; level 2: bin (1, 0) of channel 2; level 4: bin (2, 0)
    expect = np.zeros_like(nan)
    expect[1, [2, 3 + 2 * 4 + 2, 3 + 12 + 2 * 16 + 2 * 4 + 0]] = True
    np.testing.assert_array_equal(nan, expect)
    assert_max_equal(y, ref.spatial_pyramid_pool(x, **case.kw()))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_spp_non_contiguous_inputs_and_out(mode, layout, backend):
    case = SCase((9, 11), ((1, 1), (2, 3), 4), mode, layout, np.float32, 2, 17)
    x, g = case.data("ints"), case.grad("ints")
    before = x.copy()
    e, scale = ref_spp(case, "ints")
    e_g, g_scale = ref_spp_bwd(case)
    rtol = RTOL[np.dtype(case.dtype)]
    for name, xv in views(x):
        assert_close(fastpool.spatial_pyramid_pool(xv, **case.kw()), e, scale, rtol, name)
        assert_close(fastpool.spatial_pyramid_pool_backward(g, xv, **case.kw()), e_g, g_scale, rtol, name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        assert_close(fastpool.spatial_pyramid_pool_backward(gv, x, **case.kw()), e_g, g_scale, rtol, f"grad {name}")
    xv = transposed_memory(x, layout)
    assert_close(fastpool.spatial_pyramid_pool(xv, **case.kw()), e, scale, rtol, "transposed memory")
    assert_close(fastpool.spatial_pyramid_pool_backward(g, xv, **case.kw()), e_g, g_scale, rtol, "transposed memory")
    out = np.full(e.shape, np.nan, case.dtype)
    assert fastpool.spatial_pyramid_pool(x, out=out, **case.kw()) is out
    assert_close(out, e, scale, rtol, "out")
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fastpool.spatial_pyramid_pool_backward(g, x, out=gout, **case.kw()) is gout
    assert_close(gout, e_g, g_scale, rtol, "backward out")


# =========================================================================== strip


@dataclass(frozen=True)
class TCase(BinCase):
    spatial: Tuple[int, int]
    mode: str = "avg"
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2  # 0: unbatched
    channels: int = 3

    def out_shapes(self):
        h, w = self.spatial
        return self.with_channels((h, 1)), self.with_channels((1, w))

    @property
    def id(self) -> str:
        return f"{self.mode}-{self.variant_id}-{self.sizes_id}"

    def kw(self):
        return dict(mode=self.mode, layout=self.layout)

    def grads(self, kind: str = "ints"):
        rng = self.rng("grad" + kind)
        sh, sw = self.out_shapes()
        return make_data(rng, sh, self.dtype, kind), make_data(rng, sw, self.dtype, kind)


STRIP_SPATIAL = [(5, 7), (1, 1), (1, 9), (8, 1), (13, 31), (64, 3), (2, 67), (17, 17)]
STRIP_GRID = [TCase(sp, mode, layout, dtype, batch=(0, 1, 2)[k % 3], channels=CHANNELS[k % 4])
              for k, sp, mode, layout, dtype in cycled(STRIP_SPATIAL, MODE_VARIANTS)]
STRIP_BACKEND = [
    TCase((13, 31), "avg", "channels_first", np.float32, 2, 17),
    TCase((13, 31), "max", "channels_last", np.float32, 2, 33),
    TCase((5, 7), "max", "channels_first", np.float64, 0, 3),
    TCase((64, 3), "avg", "channels_last", np.float64, 1, 5),
    TCase((1, 9), "max", "channels_first", np.float32, 2, 3),
]
STRIP_IDENTITY = [
    TCase((33, 67), "avg", "channels_first", np.float32, 2, 17),
    TCase((33, 67), "max", "channels_first", np.float32, 2, 17),
    TCase((20, 21), "avg", "channels_last", np.float32, 2, 37),
    TCase((20, 21), "max", "channels_last", np.float64, 2, 37),
]


def ref_strip(case: TCase, kind: str):
    return cached(("strip", case.id, kind), lambda: with_scale(ref.strip_pool, case.data(kind), **case.kw()))


def check_strip(case: TCase, kinds=("normal", "ints", "special")) -> None:
    h, w = case.spatial
    for kind in kinds:
        x = case.data(kind)
        (eh, ew), (sh, sw) = ref_strip(case, kind)
        res = fastpool.strip_pool(x, **case.kw())
        assert isinstance(res, tuple) and len(res) == 2
        yh, yw = res
        assert (yh.shape, yw.shape) == case.out_shapes()
        if case.mode == "max":
            assert_max_equal(yh, eh, f"y_h {kind}")
            assert_max_equal(yw, ew, f"y_w {kind}")
        else:
            exact = kind == "ints"
            assert_close(yh, eh, sh, RTOL[np.dtype(case.dtype)] if exact else sum_rtol(case.dtype, w), f"y_h {kind}")
            assert_close(yw, ew, sw, RTOL[np.dtype(case.dtype)] if exact else sum_rtol(case.dtype, h), f"y_w {kind}")
    x = case.data("ints")
    gh, gw = case.grads("ints")

    def expected():
        return (ref.strip_pool_backward(gh, gw, x, **case.kw()),
                ref.strip_pool_backward(np.abs(gh), np.abs(gw), x, **case.kw()))
    e, scale = cached(("strip_bwd", case.id), expected)
    gx = fastpool.strip_pool_backward(gh, gw, x, **case.kw())
    assert gx.shape == x.shape and gx.dtype == x.dtype
    if case.mode == "max":
        assert_max_equal(gx, e, "backward")
    else:
        assert_close(gx, e, scale, RTOL[np.dtype(case.dtype)], "backward")


@pytest.mark.parametrize("case", params(STRIP_GRID))
def test_strip_matches_reference(case):
    check_strip(case)


@pytest.mark.parametrize("case", params(STRIP_BACKEND))
def test_strip_every_backend_matches_reference(case, backend):
    check_strip(case)


def _strip_outputs(case: TCase):
    x = case.data("normal")
    gh, gw = case.grads("normal")
    yh, yw = fastpool.strip_pool(x, **case.kw())
    sh, sw = fastpool.strip_pool(case.data("special"), **case.kw())
    return {"y_h": yh, "y_w": yw, "y_h special": sh, "y_w special": sw,
            "grad": fastpool.strip_pool_backward(gh, gw, x, **case.kw())}


@pytest.mark.parametrize("case", params(STRIP_IDENTITY))
def test_strip_bitwise_identical_on_every_backend(case):
    base = identical_on_every_backend(lambda: _strip_outputs(case))
    x = case.data("normal")
    (eh, ew), (sh, sw) = with_scale(ref.strip_pool, x, **case.kw())
    assert_close(base["y_h"], eh, sh, sum_rtol(case.dtype, case.spatial[1]))
    assert_close(base["y_w"], ew, sw, sum_rtol(case.dtype, case.spatial[0]))


def test_strip_values_by_hand():
    x = np.array([[[[1.0, 5.0, 5.0], [7.0, 0.0, -1.0]]]])
    yh, yw = fastpool.strip_pool(x, "max")
    np.testing.assert_array_equal(yh, [[[[5.0], [7.0]]]])
    np.testing.assert_array_equal(yw, [[[[7.0, 5.0, 5.0]]]])
    gx = fastpool.strip_pool_backward(np.array([[[[1.0], [2.0]]]]), np.array([[[[10.0, 20.0, 40.0]]]]), x, "max")
    np.testing.assert_array_equal(gx, [[[[0.0, 1.0 + 20.0, 40.0], [2.0 + 10.0, 0.0, 0.0]]]])
    ah, aw = fastpool.strip_pool(x)  # default mode avg
    np.testing.assert_allclose(ah, [[[[11 / 3], [2.0]]]], rtol=1e-15)
    np.testing.assert_allclose(aw, [[[[4.0, 2.5, 2.0]]]], rtol=1e-15)
    gx = fastpool.strip_pool_backward(np.array([[[[3.0], [6.0]]]]), np.array([[[[2.0, 4.0, 6.0]]]]), x)
    np.testing.assert_allclose(gx, [[[[1 + 1, 1 + 2, 1 + 3], [2 + 1, 2 + 2, 2 + 3]]]], rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_strip_nan_propagates(layout, dtype, backend):
    case = TCase((6, 9), "max", layout, dtype, 2, 5)
    x = case.data("normal")
    xc = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    xc[1, 3, 4, 2] = np.nan
    yh, yw = fastpool.strip_pool(x, **case.kw())
    yhc = yh if layout == "channels_first" else np.moveaxis(yh, -1, 1)
    ywc = yw if layout == "channels_first" else np.moveaxis(yw, -1, 1)
    assert np.isnan(yhc[1, 3, 4, 0]) and np.isnan(ywc[1, 3, 0, 2])
    assert np.isnan(yhc).sum() == 1 and np.isnan(ywc).sum() == 1
    (eh, ew), _ = (ref.strip_pool(x, **case.kw()), None)
    assert_max_equal(yh, eh)
    assert_max_equal(yw, ew)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_strip_non_contiguous_inputs_and_out(mode, layout, backend):
    case = TCase((9, 31), mode, layout, np.float32, 2, 17)
    x = case.data("ints")
    gh, gw = case.grads("ints")
    before = x.copy()
    (eh, ew), (sh, sw) = ref_strip(case, "ints")
    e_g = ref.strip_pool_backward(gh, gw, x, **case.kw())
    g_scale = ref.strip_pool_backward(np.abs(gh), np.abs(gw), x, **case.kw())
    rtol = RTOL[np.dtype(case.dtype)]
    for name, xv in views(x):
        yh, yw = fastpool.strip_pool(xv, **case.kw())
        assert_close(yh, eh, sh, rtol, name)
        assert_close(yw, ew, sw, rtol, name)
        assert_close(fastpool.strip_pool_backward(gh, gw, xv, **case.kw()), e_g, g_scale, rtol, name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for (name, ghv), (_, gwv) in zip(views(gh), views(gw)):
        assert_close(fastpool.strip_pool_backward(ghv, gwv, x, **case.kw()), e_g, g_scale, rtol, f"grad {name}")
    xv = transposed_memory(x, layout)
    yh, yw = fastpool.strip_pool(xv, **case.kw())
    assert_close(yh, eh, sh, rtol, "transposed memory")
    assert_close(yw, ew, sw, rtol, "transposed memory")
    assert_close(fastpool.strip_pool_backward(gh, gw, xv, **case.kw()), e_g, g_scale, rtol, "transposed memory")
    gout = np.full(x.shape, np.nan, case.dtype)
    assert fastpool.strip_pool_backward(gh, gw, x, out=gout, **case.kw()) is gout
    assert_close(gout, e_g, g_scale, rtol, "backward out")


# =========================================================================== gradients

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spatial, levels", [((5, 6), (1, 2, 4)), ((3, 4), ((1, 1), (2, 3), 5)), ((7,), (1, 3)),
                                             ((2, 3, 3), (1, 2))], ids=["2d", "2d-more-bins", "1d", "3d"])
def test_spp_numerical_gradient(spatial, levels, mode, layout, rng):
    case = SCase(spatial, levels, mode, layout, np.float64, 2, 3)
    x = distinct_values(rng, case.shape)
    g = rng.standard_normal((2, case.out_len))
    expected = numerical_gradient(lambda v: np.sum(g * fastpool.spatial_pyramid_pool(v, **case.kw())), x)
    np.testing.assert_allclose(fastpool.spatial_pyramid_pool_backward(g, x, **case.kw()), expected, rtol=0, atol=1e-8)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", [0, 2])
def test_strip_numerical_gradient(batch, mode, layout, rng):
    case = TCase((4, 5), mode, layout, np.float64, batch, 3)
    x = distinct_values(rng, case.shape)
    sh, sw = case.out_shapes()
    gh, gw = rng.standard_normal(sh), rng.standard_normal(sw)

    def loss(v):
        yh, yw = fastpool.strip_pool(v, **case.kw())
        return np.sum(gh * yh) + np.sum(gw * yw)
    expected = numerical_gradient(loss, x)
    np.testing.assert_allclose(fastpool.strip_pool_backward(gh, gw, x, **case.kw()), expected, rtol=0, atol=1e-8)


# =========================================================================== torch


@pytest.mark.parametrize("case", params([c for c in SPP_GRID if c.rank == 2][::2]))
def test_spp_matches_torch(case):
    """torch: concatenated adaptive_max_pool2d / adaptive_avg_pool2d, flattened."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, g = case.data("normal"), case.grad("ints")
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf.movedim(-1, 1) if case.layout == "channels_last" else leaf
    fn = F.adaptive_max_pool2d if case.mode == "max" else F.adaptive_avg_pool2d
    yt = torch.cat([fn(t, b).flatten(1) for b in _level_bins(case.levels, 2)], dim=1)
    yt.backward(torch.from_numpy(g))
    y = fastpool.spatial_pyramid_pool(x, **case.kw())
    gx = fastpool.spatial_pyramid_pool_backward(g, x, **case.kw())
    y_t = yt.detach().numpy()
    if case.mode == "max":
        np.testing.assert_array_equal(y, y_t)
    else:
        assert_close(y, y_t, ref.spatial_pyramid_pool(np.abs(x), **case.kw()), 2 * sum_rtol(case.dtype, case.max_bin))
    assert_close(gx, leaf.grad.numpy(), ref.spatial_pyramid_pool_backward(np.abs(g), x, **case.kw()),
                 2 * RTOL[np.dtype(case.dtype)])


@pytest.mark.parametrize("case", params(STRIP_GRID[::2]))
def test_strip_matches_torch(case):
    """torch: mean / amax over W (keepdim) and over H; data without ties."""
    torch = pytest.importorskip("torch")
    x = case.data("normal")
    gh, gw = case.grads("ints")
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    hw = (-3, -2) if case.layout == "channels_last" else (-2, -1)
    red = (lambda a, d: torch.amax(a, dim=d, keepdim=True)) if case.mode == "max" else \
        (lambda a, d: torch.mean(a, dim=d, keepdim=True))
    th, tw = red(leaf, hw[1]), red(leaf, hw[0])
    ((th * torch.from_numpy(gh)).sum() + (tw * torch.from_numpy(gw)).sum()).backward()
    yh, yw = fastpool.strip_pool(x, **case.kw())
    (_, _), (sh, sw) = ref_strip(case, "normal")
    h, w = case.spatial
    assert_close(yh, th.detach().numpy(), sh, 2 * sum_rtol(case.dtype, w), "y_h")
    assert_close(yw, tw.detach().numpy(), sw, 2 * sum_rtol(case.dtype, h), "y_w")
    assert_close(fastpool.strip_pool_backward(gh, gw, x, **case.kw()), leaf.grad.numpy(),
                 ref.strip_pool_backward(np.abs(gh), np.abs(gw), x, **case.kw()), 2 * RTOL[np.dtype(case.dtype)])


# =========================================================================== benchmark shapes


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", MODES)
def test_spp_benchmark_shape(mode, layout, num_threads):
    """(32, 256, 13, 13), the issue's comparison shape, float32, levels (1, 2, 4)."""
    case = SCase((13, 13), (1, 2, 4), mode, layout, np.float32, 32, 256)
    x, g = case.data("normal"), case.grad("normal")
    e, scale = ref_spp(case, "normal")
    assert_close(fastpool.spatial_pyramid_pool(x, **case.kw()), e, scale, sum_rtol(case.dtype, 169))
    e_g = cached(("spp_bench_bwd", case.id), lambda: (ref.spatial_pyramid_pool_backward(g, x, **case.kw()),
                                                        ref.spatial_pyramid_pool_backward(np.abs(g), x, **case.kw())))
    assert_close(fastpool.spatial_pyramid_pool_backward(g, x, **case.kw()), e_g[0], e_g[1], sum_rtol(case.dtype, 3))


@pytest.mark.parametrize("mode", MODES)
def test_spp_no_temporaries_the_size_of_x(mode):
    """All levels from one pass: forward and backward (into out=) allocate nothing near
    x's size through NumPy (traced by tracemalloc)."""
    import tracemalloc

    case = SCase((32, 32), (1, 2, 4), mode, "channels_first", np.float32, 8, 64)
    x, g = case.data("normal"), case.grad("normal")
    gout = np.empty_like(x)
    for name, call in (("forward", lambda: fastpool.spatial_pyramid_pool(x, **case.kw())),
                       ("backward", lambda: fastpool.spatial_pyramid_pool_backward(g, x, out=gout, **case.kw()))):
        call()
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 0.1 * x.nbytes, f"{name}: peak traced allocation {peak} bytes, x has {x.nbytes}"
