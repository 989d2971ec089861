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

from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
import pytest

import fastpool
import reference as ref
from bin_cases import (
    BinCase,
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
    RTOL,
    assert_close,
    assert_max_equal,
    fp,
    params,
    sum_rtol,
)

ADAPTIVE = MaxAvgPair("adaptive")


def _fmt(o) -> str:
    return "x".join("N" if v is None else str(v) for v in o) if isinstance(o, tuple) else str(o)


@dataclass(frozen=True)
class ACase(BinCase):
    spatial: Tuple[int, ...]
    output_size: Any
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3

    @property
    def out_sizes(self) -> Tuple[int, ...]:
        o = self.output_size
        o = (o,) * self.rank if not isinstance(o, tuple) else o
        return tuple(i if v is None else v for v, i in zip(o, self.spatial))

    @property
    def out_shape(self) -> Tuple[int, ...]:
        return self.with_channels(self.out_sizes)

    @property
    def id(self) -> str:
        return f"{self.rank}d-{self.variant_id}-{self.sizes_id}-to-{_fmt(self.output_size)}"

    @property
    def terms(self) -> int:
        """The most taps in a bin."""
        return int(np.prod([-(-i // o) + 1 for i, o in zip(self.spatial, self.out_sizes)]))

    def kw(self):
        return dict(output_size=self.output_size, layout=self.layout)

    def grad(self, kind: str = "ints") -> np.ndarray:
        return self.make(self.out_shape, kind, "grad" + kind)


GEOMS = [
    ((7,), 3), ((7,), (7,)), ((5,), (8,)), ((1,), 1), ((1,), (3,)), ((10,), (4,)), ((67,), 5), ((100,), (33,)),
    ((7, 7), (3, 3)), ((5, 31), (2, 4)), ((1, 1), (2, 3)), ((3, 5), (7, 4)), ((8, 9), (None, 4)),
    ((13, 13), 1), ((6, 6), (6, 6)), ((10, 10), (3, 7)), ((1, 67), (1, 5)), ((56, 56), 7), ((14, 15), (None, None)),
    ((4, 5, 6), (2, 3, 4)), ((3, 7, 5), (None, 2, 3)), ((1, 1, 1), (2, 2, 2)), ((5, 5, 5), 1),
    ((2, 3, 4), (3, 5, 6)), ((4, 6, 17), (2, 3, 5)),
]
GRID = [ACase(sp, o, layout, dtype, batch=1 + k % 2, channels=CHANNELS[k % 4])
        for k, (sp, o), layout, dtype in cycled(GEOMS)]
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


# --------------------------------------------------------------------------- grid


@pytest.mark.parametrize("case", params(GRID))
def test_forward_matches_reference(case):
    check_forward(ADAPTIVE, case)


@pytest.mark.parametrize("case", params(GRID))
def test_backward_matches_reference(case):
    check_backward(ADAPTIVE, case)


@pytest.mark.parametrize("case", params(BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check_forward(ADAPTIVE, case)
    check_backward(ADAPTIVE, case)


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    check_identical_on_every_backend(ADAPTIVE, case)


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
    check_forward(ADAPTIVE, case, kinds=("normal", "special"))
    check_backward(ADAPTIVE, case)


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
    check_non_contiguous_inputs(ADAPTIVE, case)


OUT_CASES = [ACase((8, 67), (3, 5), "channels_first", np.float32, 2, 3),
             ACase((8, 67), (9, 70), "channels_last", np.float64, 2, 17),
             ACase((31,), (None,), "channels_first", np.float64, 1, 5),
             ACase((3, 5, 7), (2, 2, 2), "channels_last", np.float32, 1, 3)]


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    check_out_argument(ADAPTIVE, case)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("spatial, output_size", [((7,), (3,)), ((2,), (5,)), ((5, 4), (2, 3)), ((3, 2), (4, 3)),
                                                  ((2, 3, 4), (1, 2, 3))],
                         ids=["1d-7to3", "1d-2to5", "2d-5x4to2x3", "2d-3x2to4x3", "3d"])
def test_numerical_gradient(spatial, output_size, layout, rng):
    check_numerical_gradient(ADAPTIVE, ACase(spatial, output_size, layout, np.float64, 2, 3), rng)


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
                     2 * sum_rtol(case.dtype, case.terms))
        assert_close(fastpool.adaptive_avg_pool_backward(g, x.shape, **case.kw()), ga_t,
                     ref.adaptive_avg_pool_backward(np.abs(g), x.shape, **case.kw()), 2 * RTOL[np.dtype(case.dtype)])
