"""Max unpooling (PyTorch's max_unpool1d/2d/3d), forward and backward.

* Hand-checked examples: expected arrays written out by reasoning from the definitions
  (run on fastpool and on the reference, so they also check the reference), in 1D, 2D
  and 3D, both layouts, batched and unbatched: equal indices (the last in x's row-major
  order wins the forward, every one gets the gradient), the default output size with
  and without padding, an explicit output_size, NaN and signed zeros copied as they are.
* The reference (tests/reference.py) is checked against a brute-force element loop.
* A grid of geometries (ranks 1-3, non-overlapping and overlapping windows, padding,
  odd sizes whose default output is smaller than the pooled input) x both layouts x both
  dtypes x batched / unbatched, on every SIMD path x threads 1 and 2. Per case: indices
  from fastpool.max_pool (with output_size = the pooled input's size, as spatial sizes
  or as a whole shape) and random valid indices with many duplicates (default output
  size, and an explicit one), with x values unrelated to the pooling (so duplicates
  carry different values and the tie rule shows). Unpooling copies values, so forward
  and backward are compared bitwise, NaN payloads and signs of zero included.
* Bitwise identity across SIMD paths and thread counts on larger inputs (enough work to
  split over threads, channels_last channel blocks); the pool / unpool round trip; the
  backward as the adjoint of the (linear) forward and as a numerical gradient; out=,
  non-contiguous inputs, inputs left unchanged; argument errors; PyTorch where installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

import reference as ref
from bin_cases import BinCase, cycled
from pool_cases import (
    DTYPES,
    IMPLS,
    LAYOUTS,
    SHORT,
    assert_bitwise_equal,
    assert_unchanged,
    cached,
    distinct_values,
    fp,
    identical_on_every_backend,
    make_data,
    numerical_gradient,
    params,
    snapshot,
    transposed_memory,
    views,
)

# --------------------------------------------------------------------------- cases


def _per_axis(v: Any, rank: int) -> Tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * rank


def _fmt(v: Any) -> str:
    return "(" + ",".join(map(str, v)) + ")" if isinstance(v, (tuple, list)) else str(v)


@dataclass(frozen=True)
class UGeom:
    """A pooling of an input of sizes ``spatial`` and the unpooling that undoes it (same
    kernel_size, stride, padding; symmetric padding, no dilation, floor mode)."""

    spatial: Tuple[int, ...]
    kernel_size: Any
    stride: Any = None
    padding: Any = 0

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def k(self) -> Tuple[int, ...]:
        return _per_axis(self.kernel_size, self.rank)

    @property
    def s(self) -> Tuple[int, ...]:
        return self.k if self.stride is None else _per_axis(self.stride, self.rank)

    @property
    def p(self) -> Tuple[int, ...]:
        return _per_axis(self.padding, self.rank)

    @property
    def pooled(self) -> Tuple[int, ...]:
        """The pooled (= unpooling input's) spatial sizes."""
        return tuple(ref.output_size(i, k, s, 1, p, p) for i, k, s, p in zip(self.spatial, self.k, self.s, self.p))

    @property
    def default(self) -> Tuple[int, ...]:
        """The unpooling's default output sizes, (in - 1) * stride - 2 * padding + kernel."""
        return tuple((i - 1) * s - 2 * p + k for i, k, s, p in zip(self.pooled, self.k, self.s, self.p))

    @property
    def overlapping(self) -> bool:
        return any(s < k for s, k in zip(self.s, self.k))

    def kwargs(self) -> Dict[str, Any]:
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)

    @property
    def id(self) -> str:
        parts = ["x".join(map(str, self.spatial)), f"k{_fmt(self.kernel_size)}"]
        if self.stride is not None:
            parts.append(f"s{_fmt(self.stride)}")
        if self.padding != 0:
            parts.append(f"p{_fmt(self.padding)}")
        return "-".join(parts)


@dataclass(frozen=True)
class UCase(BinCase):
    """One unpooling: geometry, layout, dtype, batch (0: unbatched), channels. ``shape``
    (BinCase's) is x's and the indices' shape, the pooled one."""

    geom: UGeom
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3

    @property
    def spatial(self) -> Tuple[int, ...]:  # type: ignore[override]
        return self.geom.pooled

    @property
    def id(self) -> str:
        return f"{self.geom.rank}d-{self.variant_id}-{self.geom.id}"

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """The pooling input's shape."""
        return self.with_channels(self.geom.spatial)

    def kw(self) -> Dict[str, Any]:
        return dict(self.geom.kwargs(), layout=self.layout)

    def pool_kw(self) -> Dict[str, Any]:
        """For fastpool.max_pool, which takes the rank of an int kernel_size from x.ndim
        (batched): kernel_size as a tuple."""
        return dict(self.kw(), kernel_size=self.geom.k)

    def pool_indices(self) -> np.ndarray:
        """fastpool.max_pool's indices on small-integer data (ties, and with overlapping
        windows one element the maximum of several windows: duplicates)."""
        inp = make_data(self.rng("pool-input"), self.input_shape, self.dtype, "ints")
        _, idx = fp("max_pool")(inp, return_indices=True, **self.pool_kw())
        assert idx.shape == self.shape and idx.dtype == np.int64
        return idx

    def random_indices(self, out_spatial: Tuple[int, ...], salt: str = "") -> np.ndarray:
        """Valid indices of an output plane of ``out_spatial``, drawn from about half as
        many values as a plane has positions (many duplicates), 0 and the last included."""
        rng = self.rng("indices" + salt)
        plane, n = int(np.prod(out_spatial)), int(np.prod(self.spatial))
        pool = np.concatenate([rng.integers(0, plane, size=n // 2 + 1), [0, plane - 1]])
        return rng.choice(pool, size=self.shape).astype(np.int64)


def unpool_fn(rank: int, backward: bool = False) -> Callable[..., Any]:
    return fp(f"max_unpool{rank}d" + ("_backward" if backward else ""))


def has_distinguishing_duplicates(x: np.ndarray, idx: np.ndarray, layout: str, rank: int) -> bool:
    """Whether some plane has equal indices holding different x values."""
    xc = np.asarray(ref._to_ncs(x, rank, layout)[0])
    ic = np.asarray(ref._to_ncs(idx, rank, layout)[0])
    xs, is_ = xc.reshape(xc.shape[0] * xc.shape[1], -1), ic.reshape(ic.shape[0] * ic.shape[1], -1)
    for xp, ip in zip(xs, is_):
        for j in np.unique(ip):
            vals = xp[ip == j]
            if vals.size > 1 and not np.all(vals.view(f"u{vals.itemsize}") == vals[0:1].view(f"u{vals.itemsize}")):
                return True
    return False


# --------------------------------------------------------------------------- comparisons


def assert_exact(actual: Any, expected: np.ndarray, what: str = "") -> None:
    """A C-contiguous array of expected's dtype and shape, bitwise equal (unpooling copies
    values: NaN payloads and signs of zero included)."""
    assert isinstance(actual, np.ndarray), (what, type(actual))
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
        (what, actual.dtype, expected.dtype, actual.shape, expected.shape)
    assert actual.flags.c_contiguous, what
    assert_bitwise_equal(actual, expected, what)


# --------------------------------------------------------------------------- hand-checked

def forward(which: str, out_spatial: Tuple[int, ...], layout: str = "channels_first", **kw: Any):
    """fastpool.max_unpool{rank}d(x, idx, **kw) or the reference with the output's spatial
    sizes worked out by hand."""
    rank = len(out_spatial)
    if which == "fastpool":
        return lambda x, idx: unpool_fn(rank)(x, idx, layout=layout, **kw)
    return lambda x, idx: ref.max_unpool_ref(x, idx, out_spatial, layout)


def backward(which: str, rank: int, layout: str = "channels_first", **kw: Any):
    if which == "fastpool":
        return lambda g, idx: unpool_fn(rank, True)(g, idx, layout=layout, **kw)
    return lambda g, idx: ref.max_unpool_backward_ref(g, idx, layout, rank=rank)


def _a(values, dtype=np.float64) -> np.ndarray:
    return np.array(values, dtype)


def _i(values) -> np.ndarray:
    return np.array(values, np.int64)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_1d_by_hand(which, dtype):
    x, idx = _a([[[1, 2, 3]]], dtype), _i([[[1, 1, 0]]])
    # kernel 2 (stride 2): default size (3 - 1) * 2 + 2 = 6; y[1] gets 1, then 2 (the
    # later of the equal indices), y[0] gets 3
    y = forward(which, (6,), kernel_size=2)(x, idx)
    np.testing.assert_array_equal(y, _a([[[3, 2, 0, 0, 0, 0]]], dtype))
    assert y.dtype == dtype
    # unbatched (C, L)
    np.testing.assert_array_equal(forward(which, (6,), kernel_size=2)(x[0], idx[0]), _a([[3, 2, 0, 0, 0, 0]], dtype))
    # output_size 7 (in (4, 8)): one more zero
    np.testing.assert_array_equal(forward(which, (7,), kernel_size=2, output_size=(7,))(x, idx),
                                  _a([[[3, 2, 0, 0, 0, 0, 0]]], dtype))
    # backward gathers: both equal indices get grad_output[1] = 20
    g = _a([[[10, 20, 30, 40, 50, 60]]], dtype)
    gx = backward(which, 1, kernel_size=2)(g, idx)
    np.testing.assert_array_equal(gx, _a([[[20, 20, 10]]], dtype))
    assert gx.dtype == dtype and gx.shape == idx.shape


@pytest.mark.parametrize("which", IMPLS)
def test_1d_overlapping_with_padding_by_hand(which):
    # kernel 3, stride 2, padding 1 on 3 pooled positions: (3 - 1) * 2 - 2 + 3 = 5
    x, idx = _a([[[5, 7, 9]]]), _i([[[0, 2, 2]]])
    np.testing.assert_array_equal(forward(which, (5,), kernel_size=3, stride=2, padding=1)(x, idx),
                                  [[[5, 0, 9, 0, 0]]])
    g = _a([[[1, 2, 4, 8, 16]]])
    np.testing.assert_array_equal(backward(which, 1, kernel_size=3, stride=2, padding=1)(g, idx), [[[1, 4, 4]]])
    # two channels, two samples: every plane on its own
    x2 = _a([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]])
    i2 = _i([[[4, 0, 4], [1, 1, 1]], [[0, 1, 2], [3, 3, 0]]])
    np.testing.assert_array_equal(forward(which, (5,), kernel_size=3, stride=2, padding=1)(x2, i2),
                                  [[[2, 0, 0, 0, 3], [0, 6, 0, 0, 0]],
                                   [[7, 8, 9, 0, 0], [12, 0, 0, 11, 0]]])
    g2 = _a([[[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]], [[-1, -2, -3, -4, -5], [0.5, 1.5, 2.5, 3.5, 4.5]]])
    np.testing.assert_array_equal(backward(which, 1, kernel_size=3, stride=2, padding=1)(g2, i2),
                                  [[[5, 1, 5], [20, 20, 20]], [[-1, -2, -3], [3.5, 3.5, 0.5]]])


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_2d_by_hand(which, dtype):
    # the docstring's example: max_pool2d(k=2) of [[1, 5, 2, 0], [3, 4, 8, 7]] is [[5, 8]]
    # at flat indices [[1, 6]]; default size (2, 4)
    y = forward(which, (2, 4), kernel_size=2)(_a([[[[5, 8]]]], dtype), _i([[[[1, 6]]]]))
    np.testing.assert_array_equal(y, _a([[[[0, 5, 0, 0], [0, 0, 8, 0]]]], dtype))
    # duplicates: index 5 is (1, 1) of the 4 x 4 plane, named by x[0, 1] (= 2) and then by
    # x[1, 0] (= 3): 3 stays; index 3 is (0, 3)
    x, idx = _a([[[[1, 2], [3, 4]]]], dtype), _i([[[[0, 5], [5, 3]]]])
    expected = _a([[[[1, 0, 0, 4],
                     [0, 3, 0, 0],
                     [0, 0, 0, 0],
                     [0, 0, 0, 0]]]], dtype)
    np.testing.assert_array_equal(forward(which, (4, 4), kernel_size=2)(x, idx), expected)
    np.testing.assert_array_equal(forward(which, (4, 4), kernel_size=(2, 2))(x[0], idx[0]), expected[0])
    g = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(backward(which, 2, kernel_size=2)(g, idx), _a([[[[0, 5], [5, 3]]]], dtype))
    # explicit output size (5, 3): each within (2, 6) of the default (4, 4); with rows of 3,
    # index 5 is (1, 2), index 3 is (1, 0)
    y = forward(which, (5, 3), kernel_size=2, output_size=(5, 3))(x, idx)
    np.testing.assert_array_equal(y, _a([[[[1, 0, 0], [4, 0, 3], [0, 0, 0], [0, 0, 0], [0, 0, 0]]]], dtype))


@pytest.mark.parametrize("which", IMPLS)
def test_2d_channels_last_by_hand(which):
    # (N, H, W, C) = (1, 1, 2, 2): channel 0 is the docstring's example, channel 1 names
    # index 4 = (1, 0) twice, the later value (-2) stays
    x = np.stack([_a([[5, 8]]), _a([[-1, -2]])], axis=-1)[None]
    idx = np.stack([_i([[1, 6]]), _i([[4, 4]])], axis=-1)[None]
    y = forward(which, (2, 4), "channels_last", kernel_size=2)(x, idx)
    assert y.shape == (1, 2, 4, 2)
    np.testing.assert_array_equal(y[0, ..., 0], [[0, 5, 0, 0], [0, 0, 8, 0]])
    np.testing.assert_array_equal(y[0, ..., 1], [[0, 0, 0, 0], [-2, 0, 0, 0]])
    # unbatched (H, W, C)
    np.testing.assert_array_equal(forward(which, (2, 4), "channels_last", kernel_size=2)(x[0], idx[0]), y[0])
    g = np.stack([np.arange(8.0).reshape(2, 4), 100 + np.arange(8.0).reshape(2, 4)], axis=-1)[None]
    gx = backward(which, 2, "channels_last", kernel_size=2)(g, idx)
    np.testing.assert_array_equal(gx[0, ..., 0], [[1, 6]])
    np.testing.assert_array_equal(gx[0, ..., 1], [[104, 104]])


@pytest.mark.parametrize("which", IMPLS)
def test_3d_by_hand(which):
    # kernel (1, 2, 3), stride (1, 1, 2), padding (0, 0, 1) on pooled (1, 1, 2):
    # D = 0 * 1 + 1 = 1, H = 0 * 1 + 2 = 2, W = 1 * 2 - 2 + 3 = 3; flat (d * 2 + h) * 3 + w
    kw = dict(kernel_size=(1, 2, 3), stride=(1, 1, 2), padding=(0, 0, 1))
    x, idx = _a([[[[[1.5, -2.5]]]]]), _i([[[[[5, 1]]]]])  # 5 = (0, 1, 2), 1 = (0, 0, 1)
    np.testing.assert_array_equal(forward(which, (1, 2, 3), **kw)(x, idx), [[[[[0, -2.5, 0], [0, 0, 1.5]]]]])
    g = _a([[[[[1, 2, 4], [8, 16, 32]]]]])
    np.testing.assert_array_equal(backward(which, 3, **kw)(g, idx), [[[[[32, 2]]]]])
    # kernel 2 on pooled (2, 1, 1): output (4, 2, 2); both depths name index 3 = (0, 1, 1)
    x, idx = _a([[[[[7]], [[9]]]]]), _i([[[[[3]], [[3]]]]])
    expected = np.zeros((1, 1, 4, 2, 2))
    expected[0, 0, 0, 1, 1] = 9
    np.testing.assert_array_equal(forward(which, (4, 2, 2), kernel_size=2)(x, idx), expected)
    g = np.arange(16.0).reshape(1, 1, 4, 2, 2)
    np.testing.assert_array_equal(backward(which, 3, kernel_size=2)(g, idx), [[[[[3]], [[3]]]]])
    # channels_last, unbatched (D, H, W, C) with C = 2
    xl, il = np.concatenate([x[0, 0, ..., None], -x[0, 0, ..., None]], -1), _i([[[[3, 0]]], [[[3, 15]]]])
    y = forward(which, (4, 2, 2), "channels_last", kernel_size=2)(xl, il)
    assert y.shape == (4, 2, 2, 2)
    np.testing.assert_array_equal(y[..., 0], expected[0, 0])
    e1 = np.zeros((4, 2, 2))
    e1[0, 0, 0], e1[3, 1, 1] = -7, -9
    np.testing.assert_array_equal(y[..., 1], e1)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_values_copied_not_compared_by_hand(which, dtype):
    """Unpooling assigns: a NaN is overwritten by a later value of the same index (no
    max, no NaN propagation), -0.0 keeps its sign, untouched positions are +0.0."""
    f = forward(which, (6,), kernel_size=2)  # 3 pooled positions: (3 - 1) * 2 + 2 = 6
    y = f(_a([[[np.nan, 1, -0.0]], [[2, np.nan, np.inf]]], dtype), _i([[[0, 0, 3]], [[1, 2, 2]]]))
    assert y.shape == (2, 1, 6)
    np.testing.assert_array_equal(y[0, 0], _a([1, 0, 0, -0.0, 0, 0], dtype))
    np.testing.assert_array_equal(np.signbit(y[0, 0]), [False, False, False, True, False, False])
    np.testing.assert_array_equal(y[1, 0], _a([0, 2, np.inf, 0, 0, 0], dtype))
    gx = backward(which, 1, kernel_size=2)(_a([[[np.nan, -0.0, 3, -np.inf, 5, 6]]], dtype), _i([[[0, 1, 3]]]))
    np.testing.assert_array_equal(gx, _a([[[np.nan, -0.0, -np.inf]]], dtype))
    assert np.signbit(gx[0, 0, 1])


@pytest.mark.parametrize("which", IMPLS)
def test_generic_max_unpool_by_hand(which):
    """max_unpool takes its rank from len(kernel_size); the fixed-rank forms agree."""
    x, idx = _a([[[[1, 2], [3, 4]]]]), _i([[[[0, 5], [5, 3]]]])
    if which == "fastpool":
        y = fp("max_unpool")(x, idx, (2, 2))
        g = fp("max_unpool_backward")(np.arange(16.0).reshape(1, 1, 4, 4), idx, (2, 2))
        # a 3-tuple makes the same 4-dim array an unbatched 3D one: (C, D, H, W) = (1, 1, 2, 2)
        y3 = fp("max_unpool")(x, idx, (1, 2, 2))
    else:
        y = ref.max_unpool_ref(x, idx, (4, 4))
        g = ref.max_unpool_backward_ref(np.arange(16.0).reshape(1, 1, 4, 4), idx, rank=2)
        y3 = ref.max_unpool_ref(x, idx, (1, 4, 4))
    np.testing.assert_array_equal(y, [[[[1, 0, 0, 4], [0, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]]])
    np.testing.assert_array_equal(g, [[[[0, 5], [5, 3]]]])
    np.testing.assert_array_equal(y3, y)


# --------------------------------------------------------------------------- the reference itself


def _brute_forward(x, idx, out_spatial, rank):
    """Element by element over every (n, c) and pooled position in row-major order."""
    y = np.zeros(x.shape[:2] + tuple(out_spatial), x.dtype)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for p in np.ndindex(*x.shape[2:]):
                y[(n, c) + np.unravel_index(idx[(n, c) + p], out_spatial)] = x[(n, c) + p]
    return y


@pytest.mark.parametrize("seed", range(6))
def test_reference_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    rank = seed % 3 + 1
    pooled = tuple(int(v) for v in rng.integers(1, 5, rank))
    out_spatial = tuple(int(v) for v in rng.integers(1, 6, rank))
    plane = int(np.prod(out_spatial))
    shape = (2, 3) + pooled
    x = make_data(rng, shape, np.float64, "special")
    idx = rng.integers(0, min(plane, 3), shape)  # few values: many duplicates
    expected = _brute_forward(x, idx, out_spatial, rank)
    assert_exact(ref.max_unpool_ref(x, idx, out_spatial), expected, "channels_first")
    xl, il = np.moveaxis(x, 1, -1), np.moveaxis(idx, 1, -1)
    assert_exact(ref.max_unpool_ref(xl, il, out_spatial, "channels_last"), np.moveaxis(expected, 1, -1).copy(),
                 "channels_last")
    g = make_data(rng, (2, 3) + out_spatial, np.float64, "special")
    gx = np.empty_like(x)
    for n in range(2):
        for c in range(3):
            for p in np.ndindex(*pooled):
                gx[(n, c) + p] = g[(n, c) + np.unravel_index(idx[(n, c) + p], out_spatial)]
    assert_exact(ref.max_unpool_backward_ref(g, idx), gx, "backward")
    assert_exact(ref.max_unpool_backward_ref(g[0], idx[0], rank=rank), gx[0], "backward unbatched")


# --------------------------------------------------------------------------- grid

G = UGeom
# Non-overlapping windows (odd sizes: the default output is smaller than the pooled
# input), overlapping ones (k3 s1 p1, k3 s2 p1, k4 s3 p1: duplicates from pooling),
# stride > kernel, single positions, SIMD-width rows.
UGEOMS = [
    G((1,), 1),
    G((7,), 2),
    G((8,), 2),
    G((31,), 3, 1, 1),
    G((30,), 3, 2, 1),
    G((67,), 3, 2, 1),
    G((20,), 4, 3, 1),
    G((13,), 5, 1, 2),
    G((10,), 2, 3),
    G((1, 1), 1),
    G((7, 9), 2),
    G((8, 8), 2),
    G((9, 17), 3, 1, 1),
    G((10, 13), 3, 2, 1),
    G((5, 31), (1, 3), (1, 2), (0, 1)),
    G((6, 7), (2, 3), (2, 1), (1, 1)),
    G((16, 33), 2, 2),
    G((2, 2, 2), 2),
    G((3, 5, 7), 2),
    G((4, 6, 5), 3, 1, 1),
    G((5, 6, 7), 3, 2, 1),
    G((3, 4, 9), (1, 2, 3), (1, 2, 2), (0, 1, 1)),
]
BATCHES = (1, 2, 0)  # 0: unbatched
CHANNELS = (1, 3, 17, 33, 5)
GRID = [UCase(g, layout, dtype, BATCHES[k % 3], CHANNELS[k % 5]) for k, g, layout, dtype in cycled(UGEOMS)]


@dataclass
class Variant:
    """One set of indices for a case, the output sizes they index, and output_size as
    passed (None: the default)."""

    label: str
    idx: np.ndarray
    out_spatial: Tuple[int, ...]
    output_size: Any
    kind: str  # x's data kind


def variants(case: UCase) -> List[Variant]:
    S, D = case.geom.spatial, case.geom.default
    whole = case.with_channels(S)  # output_size as a whole shape of x's rank
    pool = case.pool_indices()
    out = [
        Variant("pool-spatial", pool, S, list(S), "ints"),
        Variant("random-default", case.random_indices(D, "D"), D, None, "special"),
        Variant("random-whole", case.random_indices(S, "S"), S, whole, "normal"),
    ]
    if D == S:  # the pooling's own indices fit the default size
        out.append(Variant("pool-default", pool, S, None, "special"))
    return out


def _expected(case: UCase) -> List[Tuple[Variant, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(variant, x, grad_output, expected y, expected grad_x) per variant, computed once."""
    def compute():
        rows = []
        for v in variants(case):
            x = case.data(v.kind, v.label)
            g = case.make(case.with_channels(v.out_spatial), "special", "grad" + v.label)
            rows.append((v, x, g, ref.max_unpool_ref(x, v.idx, v.out_spatial, case.layout),
                         ref.max_unpool_backward_ref(g, v.idx, case.layout, rank=case.geom.rank)))
        return rows
    return cached(("unpool", case.id), compute)


def check_case(case: UCase) -> None:
    rank = case.geom.rank
    kw = case.kw()
    generic_kw = dict(kw, kernel_size=case.geom.k)  # max_unpool needs a tuple
    for v, x, g, ey, egx in _expected(case):
        snap = snapshot(x, v.idx, g)
        what = f"{v.label}"
        assert ey.shape == case.with_channels(v.out_spatial), what
        assert_exact(unpool_fn(rank)(x, v.idx, output_size=v.output_size, **kw), ey, what)
        assert_exact(fp("max_unpool")(x, v.idx, output_size=v.output_size, **generic_kw), ey, f"{what} generic")
        assert_exact(unpool_fn(rank, True)(g, v.idx, output_size=v.output_size, **kw), egx, f"{what} backward")
        assert_exact(fp("max_unpool_backward")(g, v.idx, output_size=v.output_size, **generic_kw), egx,
                     f"{what} backward generic")
        assert_unchanged(snap, what)


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case, backend):
    check_case(case)


def test_grid_exercises_duplicates():
    """The grid's indices do hold equal indices with different x values, from pooling
    (overlapping windows) and from the random draws, so the tie rule is checked."""
    pooled_dups = random_dups = 0
    for case in GRID:
        for v, x, _, _, _ in _expected(case):
            if has_distinguishing_duplicates(x, v.idx, case.layout, case.geom.rank):
                if v.label.startswith("pool"):
                    pooled_dups += 1
                else:
                    random_dups += 1
    overlapping = sum(c.geom.overlapping for c in GRID)
    assert pooled_dups >= overlapping, (pooled_dups, overlapping)
    assert random_dups >= len(GRID), random_dups


# Enough work for two and three threads to split it; channels_last with C = 70 (blocks
# of 18, 18, 18, 16 channels on two threads: the partial-block zeroing).
IDENTITY_CASES = [
    UCase(G((64, 96), 2), "channels_first", np.float32, 2, 17),
    UCase(G((30, 40), 3, 2, 1), "channels_last", np.float64, 1, 70),
    UCase(G((8, 12, 20), 2), "channels_last", np.float32, 2, 33),
    UCase(G((4001,), 3, 1, 1), "channels_first", np.float64, 2, 5),
    UCase(G((9, 17, 31), 3, 2, 1), "channels_first", np.float32, 0, 7),
]


def _all_outputs(case: UCase) -> Dict[str, np.ndarray]:
    rank, kw = case.geom.rank, case.kw()
    out = {}
    for v, x, g, _, _ in _expected(case):
        out[f"fwd {v.label}"] = unpool_fn(rank)(x, v.idx, output_size=v.output_size, **kw)
        out[f"bwd {v.label}"] = unpool_fn(rank, True)(g, v.idx, output_size=v.output_size, **kw)
    return out


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    base = identical_on_every_backend(lambda: _all_outputs(case))
    for v, _, _, ey, egx in _expected(case):  # and right
        assert_exact(base[f"fwd {v.label}"], ey, v.label)
        assert_exact(base[f"bwd {v.label}"], egx, f"{v.label} backward")


# --------------------------------------------------------------------------- round trip

ROUND_TRIP = [
    pytest.param((9,), 2, id="1d-9-k2"),
    pytest.param((12,), 3, id="1d-12-k3"),
    pytest.param((7, 9), 2, id="2d-7x9-k2"),
    pytest.param((8, 11), (2, 3), id="2d-8x11-k(2,3)"),
    pytest.param((5, 6, 7), 2, id="3d-5x6x7-k2"),
    pytest.param((4, 6, 9), (1, 2, 3), id="3d-4x6x9-k(1,2,3)"),
]


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=[SHORT[lay] for lay in LAYOUTS])
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("spatial,k", ROUND_TRIP)
def test_round_trip(spatial, k, dtype, layout, batched, rng):
    """Non-overlapping windows: max_pool -> max_unpool (output_size = the input's) ->
    max_pool gives the pooled values and indices back (positive distinct data: the
    zeros never win); the unpooled array is x at the maxima and 0 elsewhere, and
    equals max_pool_backward's scatter of the same values."""
    case = UCase(G(spatial, k), layout, dtype, 2 if batched else 0, 3)
    x = (distinct_values(rng, case.input_shape) + 1).astype(dtype)
    kw = case.pool_kw()
    y, idx = fp("max_pool")(x, return_indices=True, **kw)
    u = fp("max_unpool")(y, idx, case.geom.k, output_size=spatial, layout=layout)
    assert u.shape == x.shape and u.dtype == dtype
    y2, idx2 = fp("max_pool")(u, return_indices=True, **kw)
    assert_exact(y2, y, "pooled values")
    np.testing.assert_array_equal(idx2, idx)
    assert np.count_nonzero(u) == y.size
    np.testing.assert_array_equal(u, np.where(u != 0, x, 0))
    assert_exact(u, fp("max_pool_backward")(y, x, **kw), "max_pool_backward scatter")
    # and the backward of unpooling takes the pooled values back out of u
    assert_exact(unpool_fn(len(spatial), True)(u, idx, output_size=spatial, **kw), y, "backward gather")


# --------------------------------------------------------------------------- gradients

GRAD_CASES = [
    UCase(G((9,), 2), "channels_first", np.float64, 2, 3),
    UCase(G((12,), 3, 2, 1), "channels_last", np.float64, 0, 4),
    UCase(G((7, 9), 2), "channels_first", np.float64, 0, 3),
    UCase(G((8, 6), 3, 1, 1), "channels_last", np.float64, 2, 5),
    UCase(G((5, 6, 7), 2), "channels_last", np.float64, 1, 2),
    UCase(G((4, 6, 5), 3, 2, 1), "channels_first", np.float64, 2, 2),
]


def unique_indices(case: UCase, out_spatial: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Distinct indices in every plane (the forward is then injective per plane)."""
    plane, n = int(np.prod(out_spatial)), int(np.prod(case.spatial))
    lead = int(np.prod(case.shape)) // n
    flat = np.stack([rng.permutation(plane)[:n] for _ in range(lead)])  # (N * C, plane_in)
    ncs = (max(case.batch, 1), case.channels) + case.spatial
    idx = flat.reshape(ncs)
    if case.layout == "channels_last":
        idx = np.moveaxis(idx, 1, -1)
    return np.ascontiguousarray(idx if case.batch else idx[0])


@pytest.mark.parametrize("case", params(GRAD_CASES))
def test_backward_is_the_adjoint(case, rng):
    """Unpooling is linear in x: <g, unpool(x)> == <backward(g), x> for indices without
    duplicates (with duplicates the forward drops overwritten values, while the backward
    follows PyTorch: every duplicate gets the gradient)."""
    rank, kw = case.geom.rank, case.kw()
    for out_spatial, output_size in ((case.geom.default, None), (case.geom.spatial, case.geom.spatial)):
        idx = unique_indices(case, out_spatial, rng)
        for _ in range(3):
            x = rng.standard_normal(case.shape)
            g = rng.standard_normal(case.with_channels(out_spatial))
            lhs = np.vdot(g, unpool_fn(rank)(x, idx, output_size=output_size, **kw))
            rhs = np.vdot(unpool_fn(rank, True)(g, idx, output_size=output_size, **kw), x)
            assert abs(lhs) > 0
            np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("case", params(GRAD_CASES[::2]))
def test_numerical_gradient(case, rng):
    rank, kw = case.geom.rank, case.kw()
    idx = unique_indices(case, case.geom.default, rng)
    x = rng.standard_normal(case.shape)
    g = rng.standard_normal(case.with_channels(case.geom.default))
    expected = numerical_gradient(lambda v: unpool_fn(rank)(v, idx, **kw), x, g)
    assert np.count_nonzero(expected) == x.size
    np.testing.assert_allclose(unpool_fn(rank, True)(g, idx, **kw), expected, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- memory

MEM_CASES = [
    UCase(G((9, 17), 3, 2, 1), "channels_first", np.float32, 2, 3),
    UCase(G((7, 9), 2), "channels_last", np.float64, 1, 70),  # channels_last blocks
    UCase(G((13,), 3, 1, 1), "channels_last", np.float32, 0, 17),
    UCase(G((3, 5, 7), 2), "channels_first", np.float64, 2, 2),
]


@pytest.mark.parametrize("case", params(MEM_CASES))
def test_out_argument(case, backend):
    """out= (starting as NaN) is written in full, zeros included, and returned."""
    rank, kw = case.geom.rank, case.kw()
    for v, x, g, ey, egx in _expected(case):
        snap = snapshot(x, v.idx, g)
        out = np.full(ey.shape, np.nan, case.dtype)
        assert unpool_fn(rank)(x, v.idx, output_size=v.output_size, out=out, **kw) is out
        assert_exact(out, ey, v.label)
        # a second call into the same out: every element rewritten
        out[...] = 7
        assert fp("max_unpool")(x, v.idx, case.geom.k, case.geom.stride, case.geom.padding, v.output_size,
                                case.layout, out) is out
        assert_exact(out, ey, f"{v.label} positional")
        gout = np.full(x.shape, np.nan, case.dtype)
        assert unpool_fn(rank, True)(g, v.idx, output_size=v.output_size, out=gout, **kw) is gout
        assert_exact(gout, egx, f"{v.label} backward")
        assert_unchanged(snap, v.label)


@pytest.mark.parametrize("case", params(MEM_CASES))
def test_non_contiguous_inputs(case, backend):
    """Strided, reversed, Fortran-order, read-only, unaligned and transposed-memory x,
    indices and grad_output: the same results, inputs unchanged."""
    rank, kw = case.geom.rank, case.kw()

    def variants_of(a: np.ndarray) -> Dict[str, np.ndarray]:
        out = dict(views(a))
        out["transposed-memory"] = transposed_memory(a, case.layout)  # axis 1 last in memory
        out["axis-0-last-in-memory"] = np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 0, -1)), -1, 0)
        # (moving an axis of size 1 leaves the array C-contiguous: not a variant then)
        return {k: w for k, w in out.items() if not (w.flags.c_contiguous and w.flags.aligned and w.flags.writeable)}

    for v, x, g, ey, egx in _expected(case):
        vx, vi, vg = variants_of(x), variants_of(v.idx), variants_of(g)
        assert len(vx) >= 6 and set(vx) == set(vi) == set(vg), sorted(vx)
        for name in vx:
            xv, iv, gv = vx[name], vi[name], vg[name]
            np.testing.assert_array_equal(iv, v.idx)
            snap = snapshot(xv, iv, gv)
            f, b = unpool_fn(rank), unpool_fn(rank, True)
            what = f"{v.label} {name}"
            assert_exact(f(xv, v.idx, output_size=v.output_size, **kw), ey, f"{what} x")
            assert_exact(f(x, iv, output_size=v.output_size, **kw), ey, f"{what} indices")
            assert_exact(f(xv, iv, output_size=v.output_size, **kw), ey, f"{what} x and indices")
            assert_exact(b(gv, v.idx, output_size=v.output_size, **kw), egx, f"{what} grad")
            assert_exact(b(g, iv, output_size=v.output_size, **kw), egx, f"{what} grad indices")
            assert_exact(b(gv, iv, output_size=v.output_size, **kw), egx, f"{what} grad and indices")
            assert_unchanged(snap, what)


def test_list_input_is_converted():
    y = fp("max_unpool1d")([[1.0, 2.0]], np.array([[3, 0]]), 2)  # (C, L) of Python floats
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(y, [[2.0, 0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------- errors

X = np.zeros((1, 2, 3, 4), np.float32)  # pooled, kernel 2 -> default output (1, 2, 6, 8)
IDX = np.zeros(X.shape, np.int64)
GO = np.zeros((1, 2, 6, 8), np.float32)


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


E, T = ValueError, TypeError


def _by_name(name: str) -> Callable[..., Any]:
    return lambda *a, **k: fp(name)(*a, **k)


mu, mub = _by_name("max_unpool"), _by_name("max_unpool_backward")
mu1, mu2, mu3 = _by_name("max_unpool1d"), _by_name("max_unpool2d"), _by_name("max_unpool3d")
mu1b, mu2b = _by_name("max_unpool1d_backward"), _by_name("max_unpool2d_backward")


def _idx_with(pos: Tuple[int, ...], value: int, shape=X.shape) -> np.ndarray:
    a = np.zeros(shape, np.int64)
    a[pos] = value
    return a


def _read_only(shape, dtype=np.float32):
    a = np.zeros(shape, dtype)
    a.flags.writeable = False
    return a


def _non_contiguous(shape, dtype=np.float32):
    return np.zeros(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]


def _out_overlapping_x():
    buf = np.zeros(X.size + GO.size, np.float32)
    return mu2(buf[:X.size].reshape(X.shape), IDX, 2, out=buf[8:8 + GO.size].reshape(GO.shape))


def _out_overlapping_indices():
    buf = np.zeros(GO.size, np.float64)
    idx = buf[:X.size].view(np.int64).reshape(X.shape)
    idx[...] = 0
    return mu2(X.astype(np.float64), idx, 2, out=buf.reshape(GO.shape))


def _out_overlapping_grad():
    buf = np.zeros(GO.size, np.float32)
    return mu2b(buf.reshape(GO.shape), IDX, 2, out=buf[:X.size].reshape(X.shape))


def _out_is_grad_backward_same_shape():
    g = np.zeros((1, 1, 4), np.float32)  # kernel 1: the output is the input's size
    return mu1b(g, np.zeros((1, 1, 4), np.int64), 1, out=g)


ERRORS = [
    # x
    ("x-object", lambda: mu2(object(), IDX, 2), T, r"\bx\b"),
    ("x-int32", lambda: mu2(X.astype(np.int32), IDX, 2), T, _all(r"\bx\b", "int32")),
    ("x-int64", lambda: mu2(IDX, IDX, 2), T, _all(r"\bx\b", "int64")),
    ("x-float16", lambda: mu2(X.astype(np.float16), IDX, 2), T, _all(r"\bx\b", "float16")),
    ("x-bool", lambda: mu(X.astype(bool), IDX, (2, 2)), T, _all(r"\bx\b", "bool")),
    ("x-ndim-2", lambda: mu2(np.zeros((3, 4), np.float32), np.zeros((3, 4), np.int64), 2), E,
     _all(r"\bx\b", "dimensions")),
    ("x-ndim-5-for-2d", lambda: mu2(X[None], IDX[None], 2), E, _all(r"\bx\b", "dimensions")),
    ("x-ndim-for-generic-1d", lambda: mu(X, IDX, (2,)), E, _all(r"\bx\b", "dimensions")),
    ("x-zero-size", lambda: mu2(np.zeros((1, 0, 3, 4), np.float32), np.zeros((1, 0, 3, 4), np.int64), 2), E,
     _all(r"\bx\b", "zero")),
    # indices
    ("indices-int32", lambda: mu2(X, IDX.astype(np.int32), 2), T, _all("indices", "int32")),
    ("indices-uint64", lambda: mu2(X, IDX.astype(np.uint64), 2), T, _all("indices", "uint64")),
    ("indices-float", lambda: mu2(X, IDX.astype(np.float32), 2), T, _all("indices", "float32")),
    ("indices-list", lambda: mu2(X, IDX.tolist(), 2), T, _all("indices", "ndarray")),
    ("indices-shape", lambda: mu2(X, np.zeros((1, 2, 4, 3), np.int64), 2), E, _all("indices", "shape")),
    ("indices-unbatched", lambda: mu2(X, IDX[0], 2), E, _all("indices", "shape")),
    # index values: the value and its flat position
    ("index-too-big", lambda: mu2(X, _idx_with((0, 1, 2, 3), 48), 2), E,
     _all("indices", r"\b48\b", r"position 23\b", r"\[0, 48\)")),
    ("index-negative", lambda: mu2(X, _idx_with((0, 0, 1, 1), -1), 2), E, _all("indices", "-1", r"position 5\b")),
    ("index-huge", lambda: mu2(X, _idx_with((0, 1, 0, 0), 2 ** 62), 2), E,
     _all("indices", str(2 ** 62), r"position 12\b")),
    ("index-too-big-cl", lambda: mu2(X, _idx_with((0, 1, 2, 3), 24), 2, layout="channels_last"), E,
     _all("indices", r"\b24\b", r"position 23\b", r"\[0, 24\)")),  # cl: (N, H, W, C) = (1, 2, 3, 4) -> 4 x 6
    ("index-with-output-size", lambda: mu2(X, _idx_with((0, 0, 0, 1), 35), 2, output_size=(5, 7)), E,
     _all("indices", r"\b35\b", r"position 1\b", r"\[0, 35\)")),
    ("index-too-big-backward", lambda: mu2b(GO, _idx_with((0, 1, 2, 3), 48), 2), E,
     _all("indices", r"\b48\b", r"position 23\b")),
    ("index-negative-backward", lambda: mu2b(GO, _idx_with((0, 0, 0, 0), -5), 2), E,
     _all("indices", "-5", r"position 0\b")),
    ("index-negative-1d-unbatched", lambda: mu1(np.zeros((2, 3)), np.array([[0, 1, 2], [3, 4, -6]]), 2), E,
     _all("indices", "-6", r"position 5\b")),
    # kernel_size
    ("kernel-0", lambda: mu2(X, IDX, 0), E, "kernel_size must be >= 1"),
    ("kernel-negative", lambda: mu2(X, IDX, (2, -1)), E, "kernel_size must be >= 1"),
    ("kernel-0-generic", lambda: mu(X, IDX, (0, 2)), E, "kernel_size must be >= 1"),
    ("kernel-str", lambda: mu2(X, IDX, "2"), T, "kernel_size"),
    ("kernel-str-generic", lambda: mu(X, IDX, "22"), T, "kernel_size"),
    ("kernel-float", lambda: mu2(X, IDX, 2.0), T, "kernel_size must be an integer"),
    ("kernel-none", lambda: mu2(X, IDX, None), T, "kernel_size"),
    ("kernel-int-generic", lambda: mu(X, IDX, 2), T, _all("kernel_size", "tuple")),
    ("kernel-int-generic-backward", lambda: mub(GO, IDX, 2), T, _all("kernel_size", "tuple")),
    ("kernel-too-long", lambda: mu2(X, IDX, (2, 2, 2)), E, "kernel_size must have 2 entries"),
    ("kernel-too-short-3d", lambda: mu3(X[None], IDX[None], (2, 2)), E, "kernel_size must have 3 entries"),
    ("kernel-rank-4-generic", lambda: mu(X, IDX, (2, 2, 2, 2)), E, _all("kernel_size", "1, 2 or 3")),
    ("kernel-empty-generic", lambda: mu(X, IDX, ()), E, _all("kernel_size", "1, 2 or 3")),
    # stride, padding
    ("stride-0", lambda: mu2(X, IDX, 2, 0), E, "stride must be >= 1"),
    ("stride-negative", lambda: mu2(X, IDX, 2, (1, -2)), E, "stride must be >= 1"),
    ("stride-too-short", lambda: mu2(X, IDX, 2, (1,)), E, "stride must have 2 entries"),
    ("stride-float", lambda: mu2(X, IDX, 2, 1.5), T, "stride must be an integer"),
    ("padding-negative", lambda: mu2(X, IDX, 2, padding=-1), E, "padding must be >= 0"),
    ("padding-negative-backward", lambda: mu2b(GO, IDX, 2, padding=(0, -1)), E, "padding must be >= 0"),
    ("padding-str", lambda: mu2(X, IDX, 2, padding="same"), T, "padding"),
    ("padding-too-large", lambda: mu2(X, IDX, 2, padding=3), E, _all("padding", "not positive")),
    # output_size: strictly within stride of the default (6, 8)
    ("output-size-too-big", lambda: mu2(X, IDX, 2, output_size=(8, 8)), E,
     _all("output_size", "entry 0", r"\(4, 8\)", "got 8")),
    ("output-size-too-small", lambda: mu2(X, IDX, 2, output_size=(6, 6)), E,
     _all("output_size", "entry 1", r"\(6, 10\)", "got 6")),
    ("output-size-whole-shape-bad", lambda: mu2(X, IDX, 2, output_size=(1, 2, 6, 10)), E,
     _all("output_size", "entry 1", "got 10")),
    ("output-size-cl-whole-shape-bad", lambda: mu2(X, IDX, 2, output_size=(1, 4, 8, 4), layout="channels_last"), E,
     _all("output_size", "entry 1", r"\(4, 8\)", "got 8")),  # cl: spatial (2, 3), default (4, 6)
    ("output-size-stride-1", lambda: mu1(X[0], IDX[0], 3, 1, output_size=(7,)), E,
     _all("output_size", r"\(5, 7\)", "got 7")),  # default (4 - 1) + 3 = 6, only 6 fits
    ("output-size-length-1", lambda: mu2(X, IDX, 2, output_size=(6,)), E, _all("output_size", "2 entries")),
    ("output-size-length-3", lambda: mu2(X, IDX, 2, output_size=(2, 6, 8)), E, _all("output_size", "2 entries")),
    ("output-size-length-5", lambda: mu2(X, IDX, 2, output_size=(1, 1, 2, 6, 8)), E,
     _all("output_size", "2 entries")),
    ("output-size-int", lambda: mu2(X, IDX, 2, output_size=6), T, "output_size"),
    ("output-size-float", lambda: mu2(X, IDX, 2, output_size=(6.0, 8)), T, "output_size"),
    ("output-size-negative", lambda: mu2(X, IDX, 2, output_size=(-6, 8)), E, "output_size"),
    ("output-size-backward", lambda: mu2b(GO, IDX, 2, output_size=(7, 10)), E, _all("output_size", "entry 1")),
    # layout
    ("layout-bad", lambda: mu2(X, IDX, 2, layout="NHWC"), E, _all("layout", "NHWC")),
    ("layout-bad-backward", lambda: mu2b(GO, IDX, 2, layout=None), E, "layout"),
    # grad_output
    ("grad-shape", lambda: mu2b(np.zeros((1, 2, 6, 9), np.float32), IDX, 2), E, _all("grad_output", "shape")),
    ("grad-shape-vs-output-size", lambda: mu2b(GO, IDX, 2, output_size=(7, 8)), E, _all("grad_output", "shape")),
    ("grad-shape-unbatched", lambda: mu2b(GO[0], IDX, 2), E, "grad_output"),
    ("grad-int", lambda: mu2b(GO.astype(np.int32), IDX, 2), T, _all("grad_output", "int32")),
    ("grad-float16", lambda: mu2b(GO.astype(np.float16), IDX, 2), T, _all("grad_output", "float16")),
    ("grad-object", lambda: mu2b(object(), IDX, 2), T, "grad_output"),
    ("grad-indices-int32", lambda: mu2b(GO, IDX.astype(np.int32), 2), T, _all("indices", "int32")),
    ("grad-indices-list", lambda: mu2b(GO, IDX.tolist(), 2), T, _all("indices", "ndarray")),
    ("grad-indices-ndim", lambda: mu2b(GO, IDX[0, 0], 2), E, "indices"),
    # out
    ("out-shape", lambda: mu2(X, IDX, 2, out=np.zeros((1, 2, 6, 9), np.float32)), E, r"\bout\b"),
    ("out-shape-output-size", lambda: mu2(X, IDX, 2, output_size=(7, 8), out=np.zeros(GO.shape, np.float32)), E,
     r"\bout\b"),
    ("out-dtype", lambda: mu2(X, IDX, 2, out=np.zeros(GO.shape, np.float64)), T, _all(r"\bout\b", "float64")),
    ("out-list", lambda: mu2(X, IDX, 2, out=GO.tolist()), T, r"\bout\b"),
    ("out-read-only", lambda: mu2(X, IDX, 2, out=_read_only(GO.shape)), E, _all(r"\bout\b", "read-only")),
    ("out-non-contiguous", lambda: mu2(X, IDX, 2, out=_non_contiguous(GO.shape)), E, _all(r"\bout\b", "contiguous")),
    ("out-fortran", lambda: mu2(X, IDX, 2, out=np.asfortranarray(np.zeros(GO.shape, np.float32))), E,
     _all(r"\bout\b", "contiguous")),
    ("out-overlaps-x", _out_overlapping_x, E, _all(r"\bout\b", "overlap")),
    ("out-overlaps-indices", _out_overlapping_indices, E, _all(r"\bout\b", "overlap")),
    ("out-shape-backward", lambda: mu2b(GO, IDX, 2, out=np.zeros(GO.shape, np.float32)), E, r"\bout\b"),
    ("out-dtype-backward", lambda: mu2b(GO, IDX, 2, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only-backward", lambda: mu2b(GO, IDX, 2, out=_read_only(X.shape)), E, r"\bout\b"),
    ("out-overlaps-grad", _out_overlapping_grad, E, _all(r"\bout\b", "overlap")),
    ("out-is-grad", _out_is_grad_backward_same_shape, E, _all(r"\bout\b", "overlap")),
]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("layout", LAYOUTS, ids=[SHORT[lay] for lay in LAYOUTS])
def test_first_bad_index_is_reported(layout, backend):
    """Of several bad indices (in different planes, samples and threads' shares) the
    message names the first in flat order; the inputs are left unchanged."""
    case = UCase(G((30, 40), 2), layout, np.float32, 4, 20)
    x = case.data("normal")
    idx = np.zeros(case.shape, np.int64)
    flat = idx.reshape(-1)
    for pos, value in ((idx.size - 1, -3), (idx.size // 2, 10 ** 9), (idx.size // 3 + 7, 1200), (4321, -1)):
        flat[pos] = value
    snap = snapshot(x, idx)
    for call in (lambda: fp("max_unpool2d")(x, idx, 2, layout=layout),
                 lambda: fp("max_unpool2d_backward")(np.zeros(case.with_channels((30, 40)), np.float32), idx, 2,
                                                     layout=layout)):
        with pytest.raises(ValueError, match=_all("indices", r"holds -1 at flat position 4321\b", r"\[0, 1200\)")):
            call()
    assert_unchanged(snap, "bad indices")


# --------------------------------------------------------------------------- torch

# (pooling input sizes, kernel, stride, padding): PyTorch's max_pool needs padding <= k / 2.
TORCH_GEOMS = [
    G((9,), 2),
    G((12,), 3, 1, 1),
    G((11,), 3, 2, 1),
    G((14,), 4, 3, 2),
    G((7, 9), 2),
    G((8, 10), 3, 1, 1),
    G((9, 12), 3, 2, 1),
    G((6, 11), (2, 3), (1, 2), (1, 1)),
    G((5, 6, 7), 2),
    G((5, 6, 7), 3, 1, 1),
    G((6, 5, 7), 3, 2, 1),
]


def _torch_args(geom: UGeom):
    return geom.k, geom.s, geom.p


def _to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A channels_first batched array in ``layout``."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if layout == "channels_last" else a


@pytest.mark.parametrize("layout", LAYOUTS, ids=[SHORT[lay] for lay in LAYOUTS])
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("geom", [pytest.param(g, id=f"{g.rank}d-{g.id}") for g in TORCH_GEOMS])
def test_matches_torch_with_pool_indices(geom, dtype, layout):
    """torch's own max_pool indices (duplicates where windows overlap), x values unrelated
    to the pooled ones, output_size = the pooled input's size: forward and autograd
    gradient bitwise equal, in either layout (channels_last via moveaxis)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rank = geom.rank
    case = UCase(geom, "channels_first", dtype, 2, 5)
    k, s, p = _torch_args(geom)
    inp = make_data(case.rng("input"), case.input_shape, dtype, "ints")
    _, ti = getattr(F, f"max_pool{rank}d")(torch.from_numpy(inp), k, s, p, return_indices=True)
    idx = ti.numpy().copy()
    assert idx.shape == case.shape
    x = case.data("special")
    g = case.make(case.input_shape, "special", "grad")
    if geom.overlapping:
        assert has_distinguishing_duplicates(x, idx, "channels_first", rank)
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = getattr(F, f"max_unpool{rank}d")(leaf, ti, k, s, p, output_size=geom.spatial)
    ty.backward(torch.from_numpy(g.copy()))
    y_t, gx_t = ty.detach().numpy(), leaf.grad.numpy()
    kw = dict(kernel_size=geom.kernel_size, stride=geom.stride, padding=geom.padding, layout=layout)
    xl, il, gl = _to_layout(x, layout), _to_layout(idx, layout), _to_layout(g, layout)
    assert_exact(unpool_fn(rank)(xl, il, output_size=geom.spatial, **kw), _to_layout(y_t, layout), "forward")
    assert_exact(unpool_fn(rank, True)(gl, il, output_size=geom.spatial, **kw), _to_layout(gx_t, layout),
                 "backward")
    # and the pooled values themselves: unpooling inverts the pooling where it kept values
    pv, _ = getattr(F, f"max_pool{rank}d")(torch.from_numpy(inp), k, s, p, return_indices=True)
    with torch.no_grad():
        u_t = getattr(F, f"max_unpool{rank}d")(pv, ti, k, s, p, output_size=geom.spatial).numpy()
    assert_exact(unpool_fn(rank)(_to_layout(pv.numpy(), layout), il, output_size=geom.spatial, **kw),
                 _to_layout(u_t, layout), "pooled values")


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("geom", [pytest.param(g, id=f"{g.rank}d-{g.id}") for g in TORCH_GEOMS])
def test_matches_torch_default_size_random_indices(geom, dtype):
    """Random indices with many duplicates: the default output size, and the pooled
    input's size given as a whole shape; batched (N, C, ...) and unbatched (C, ...)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rank = geom.rank
    case = UCase(geom, "channels_first", dtype, 2, 4)
    k, s, p = _torch_args(geom)
    fn, fnb = unpool_fn(rank), unpool_fn(rank, True)
    tfn = getattr(F, f"max_unpool{rank}d")
    kw = dict(kernel_size=geom.kernel_size, stride=geom.stride, padding=geom.padding)
    for out_spatial in (geom.default, geom.spatial):
        explicit = out_spatial is geom.spatial
        idx = case.random_indices(out_spatial, str(explicit))
        x = case.data("special", str(explicit))
        g = case.make(case.with_channels(out_spatial), "special", f"grad{explicit}")
        assert has_distinguishing_duplicates(x, idx, "channels_first", rank)
        for batched in (True, False):
            xb, ib, gb = (x, idx, g) if batched else (x[1], idx[1], g[1])
            # torch takes the spatial sizes or an (N, C, *spatial) shape; fastpool the
            # spatial sizes or a shape of x's rank (for an unbatched x: (C, *spatial))
            t_size = (2, 4) + out_spatial if explicit else None
            f_size = xb.shape[:-rank] + out_spatial if explicit else None
            leaf = torch.from_numpy(xb.copy()).requires_grad_(True)
            ty = tfn(leaf, torch.from_numpy(ib), k, s, p, output_size=t_size)
            ty.backward(torch.from_numpy(gb.copy()))
            what = f"output {out_spatial} batched={batched}"
            assert_exact(fn(xb, ib, output_size=f_size, **kw), ty.detach().numpy(), what)
            assert_exact(fnb(gb, ib, output_size=f_size, **kw), leaf.grad.numpy(), f"{what} backward")


@pytest.mark.parametrize("geom", [pytest.param(g, id=f"{g.rank}d-{g.id}") for g in TORCH_GEOMS])
def test_output_size_rule_matches_torch(geom):
    """fastpool accepts an output_size exactly when PyTorch does (each axis varied around
    its default), and then gives the same array."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rank = geom.rank
    k, s, p = _torch_args(geom)
    case = UCase(geom, "channels_first", np.float64, 1, 2)
    x = case.data("normal")
    idx = np.zeros(case.shape, np.int64)  # index 0 is in every plane
    tested = accepted = 0
    for axis in range(rank):
        d, st = geom.default[axis], geom.s[axis]
        for o in range(max(1, d - st - 1), d + st + 2):
            size = list(geom.default)
            size[axis] = o
            try:
                t = getattr(F, f"max_unpool{rank}d")(torch.from_numpy(x), torch.from_numpy(idx), k, s, p,
                                                      output_size=size).numpy()
            except (ValueError, RuntimeError):
                t = None
            tested += 1
            if t is None:
                with pytest.raises(ValueError, match="output_size"):
                    unpool_fn(rank)(x, idx, geom.kernel_size, geom.stride, geom.padding, output_size=size)
            else:
                accepted += 1
                assert_exact(unpool_fn(rank)(x, idx, geom.kernel_size, geom.stride, geom.padding,
                                             output_size=size), t, f"output_size {size}")
    assert 0 < accepted < tested
