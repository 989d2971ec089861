"""Shared test cases: pooling geometries, input data and comparison helpers.

A :class:`Case` is one call: geometry, layout, dtype, batch and channels. Its input
data are derived from a hash of its id, so a failing case reruns identically alone.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

import reference as ref

DTYPES = (np.float32, np.float64)
LAYOUTS = ("channels_first", "channels_last")
SHORT = {"channels_first": "cf", "channels_last": "cl", np.float32: "f32", np.float64: "f64"}

# Tight tolerances of the average pooling checks, relative to the magnitude of the
# summed terms (see assert_close_to_sum).
RTOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_fmt(i) for i in v) + ")"
    return str(v)


@dataclass(frozen=True)
class Geom:
    """Geometry of one pooling call, in the user's forms (ints, tuples, pairs, strings)."""

    spatial: Tuple[int, ...]
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False

    @property
    def rank(self) -> int:
        return len(self.spatial)

    def kwargs(self) -> Dict[str, Any]:
        kw: Dict[str, Any] = dict(kernel_size=self.kernel_size, stride=self.stride,
                                  padding=self.padding, dilation=self.dilation,
                                  ceil_mode=self.ceil_mode)
        return kw

    @property
    def id(self) -> str:
        parts = ["x".join(map(str, self.spatial)), f"k{_fmt(self.kernel_size)}"]
        if self.stride is not None:
            parts.append(f"s{_fmt(self.stride)}")
        if self.padding != 0:
            parts.append(f"p{_fmt(self.padding)}")
        if self.dilation != 1:
            parts.append(f"d{_fmt(self.dilation)}")
        if self.ceil_mode:
            parts.append("ceil")
        return "-".join(parts)


G = Geom

# Spatial sizes 1, primes, kernel == input, widths with SIMD bodies and scalar tails
# (67 = 4*16 + 3), every padding form, dilation (also larger than the input),
# ceil-mode overhangs and stride > kernel.
GEOMS_1D = [
    G((1,), 1),
    G((7,), 2),
    G((7,), 2, ceil_mode=True),
    G((31,), 3, 2, 1),
    G((67,), 3, 1, 1),
    G((67,), 2, 2),
    G((67,), 5, 1, 2),
    G((67,), 9, 1, 4),
    G((67,), 3, 2, 3, dilation=3, ceil_mode=True),
    G((31,), 31),
    G((7,), 4, 3, 1, ceil_mode=True),
    G((13,), 4, 2, "same"),
    G((13,), 4, 2, "same_lower", dilation=2),
    G((64,), 8, 4),
    G((100,), 16, 16, ceil_mode=True),
    G((2,), 2, 1, 1),
    G((3,), 2, 1, 1, dilation=3),
    G((67,), 3, 1, "valid"),
    G((31,), 1, 3),
    G((37,), 4, 1, ((3, 0),)),
    G((37,), 3, 5, ((0, 2),), ceil_mode=True),
    G((131,), 7, 2, 3),
    G((5,), 2, 2, 1, ceil_mode=True),
]

GEOMS_2D = [
    G((7, 7), 2),
    G((8, 67), 3, 2, 1),
    G((5, 31), 3, 1, 1),
    G((1, 1), 1),
    G((1, 67), (1, 3), (1, 2), (0, 1)),
    G((7, 7), 7),
    G((11, 13), (3, 2), (2, 3), ((1, 0), (0, 1)), ceil_mode=True),
    G((13, 31), 3, 2, 0, dilation=2),
    G((6, 9), 2, 2, ceil_mode=True),
    G((5, 5), 3, 1, "same"),
    G((6, 8), 3, 2, "same_lower"),
    G((6, 8), 4, 3, "same"),
    G((9, 9), 3, 1, "valid"),
    G((17, 23), 5, 1, 2),
    G((19, 37), (7, 9), 1, (3, 4)),
    G((7, 67), 2, 1),
    G((10, 12), 3, 2, ((2, 0), (0, 2)), ceil_mode=True),
    G((15, 20), 3, 1, 2, dilation=2),
    G((3, 1), (2, 1), 1),
    G((10, 10), 2, 3),
    G((9, 33), 1, (2, 5)),
    G((6, 7), (2, 3), (1, 2), (1, 1), dilation=(2, 1), ceil_mode=True),
    G((4, 131), (1, 3), 1, (0, 1)),
    G((13, 17), 3, 2, 1, ceil_mode=True),
    G((3, 5), (2, 2), 1, 1, dilation=(3, 4)),
    G((5, 9), 2, 2, 1, ceil_mode=True),
]

GEOMS_3D = [
    G((4, 5, 6), 2),
    G((3, 7, 31), 3, 2, 1),
    G((5, 5, 5), (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    G((4, 6, 17), (2, 3, 3), (2, 1, 2), ceil_mode=True),
    G((3, 3, 3), 3),
    G((6, 7, 9), 3, 2, "same"),
    G((5, 6, 7), 2, 1, 1, dilation=2, ceil_mode=True),
    G((2, 4, 67), (1, 1, 3), (1, 1, 2)),
    G((1, 1, 1), 1),
    G((3, 5, 7), 2, 1, ((1, 0), (0, 1), (1, 1))),
    G((4, 4, 9), (3, 3, 5), 1, (1, 1, 2)),
    G((5, 6, 8), 3, 2, "same_lower", dilation=(1, 2, 1)),
]

GEOMS = GEOMS_1D + GEOMS_2D + GEOMS_3D

# Channel counts that are not multiples of any vector width, and 1.
CHANNELS = (1, 3, 17, 33)

# Average pooling options, cycled over the variants of each geometry.
AVG_OPTIONS = (
    {},
    {"count_include_pad": False},
    {"count_include_pad": True},
    {"divisor_override": 3},
)


@dataclass(frozen=True)
class Case:
    geom: Geom
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3
    avg: Dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def shape(self) -> Tuple[int, ...]:
        if self.layout == "channels_last":
            return (self.batch,) + self.geom.spatial + (self.channels,)
        return (self.batch, self.channels) + self.geom.spatial

    @property
    def id(self) -> str:
        s = f"{self.geom.rank}d-{SHORT[self.layout]}-{SHORT[self.dtype]}-N{self.batch}C{self.channels}-{self.geom.id}"
        for k, v in self.avg.items():
            s += f"-{ 'cip' if k == 'count_include_pad' else 'div'}={v}"
        return s

    def max_kwargs(self) -> Dict[str, Any]:
        return dict(self.geom.kwargs(), layout=self.layout)

    def avg_kwargs(self) -> Dict[str, Any]:
        return dict(self.geom.kwargs(), layout=self.layout, **self.avg)

    def rng(self, salt: str = "") -> np.random.Generator:
        return np.random.default_rng(zlib.crc32((self.id + salt).encode()))

    def data(self, kind: str, salt: str = "") -> np.ndarray:
        return make_data(self.rng(kind + salt), self.shape, self.dtype, kind)

    def out_shape(self) -> Tuple[int, ...]:
        g = ref.make_geometry(self.geom.spatial, **self.geom.kwargs())
        if self.layout == "channels_last":
            return (self.batch,) + g.out_sizes + (self.channels,)
        return (self.batch, self.channels) + g.out_sizes


def make_data(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    """Input data of a given kind.

    normal   standard normal: no ties.
    ints     multiples of 1/4 in [-1, 1]: many ties, and sums that are exact in
             float32, so an average has a single correct rounding.
    special  normal with NaN, +inf and -inf sprinkled in (about 8% each).
    neg_inf  -inf everywhere.
    """
    if kind == "normal":
        return rng.standard_normal(shape).astype(dtype)
    if kind == "ints":
        return (rng.integers(-4, 5, size=shape) / 4).astype(dtype)
    if kind == "special":
        x = rng.standard_normal(shape).astype(dtype)
        u = rng.random(shape)
        x[u < 0.08] = np.nan
        x[(u >= 0.08) & (u < 0.16)] = np.inf
        x[(u >= 0.16) & (u < 0.24)] = -np.inf
        return x
    if kind == "neg_inf":
        return np.full(shape, -np.inf, dtype=dtype)
    raise ValueError(kind)


def grid(geoms: List[Geom] = GEOMS, options: bool = False) -> List[Case]:
    """Each geometry in both layouts and both dtypes, cycling channels, batch, options."""
    cases = []
    for gi, g in enumerate(geoms):
        for vi, (layout, dtype) in enumerate([(l, d) for l in LAYOUTS for d in DTYPES]):
            avg = AVG_OPTIONS[(gi + vi) % len(AVG_OPTIONS)] if options else {}
            cases.append(Case(g, layout, dtype, batch=1 + (gi + vi) % 2,
                              channels=CHANNELS[(gi + vi) % len(CHANNELS)], avg=dict(avg)))
    return cases


def params(cases: List[Case]) -> List[Any]:
    return [pytest.param(c, id=c.id) for c in cases]


def geom_params(geoms: List[Geom] = GEOMS) -> List[Any]:
    return [pytest.param(g, id=f"{g.rank}d-{g.id}") for g in geoms]


def with_layout(case: Case, layout: str) -> Case:
    return replace(case, layout=layout)


# ------------------------------------------------------------------------- comparisons


def assert_close_to_sum(actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray) -> None:
    """|actual - expected| <= rtol * magnitude, where magnitude is the same operator
    applied to |terms| (the natural bound of a floating-point sum), and equal dtypes
    and shapes."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    rtol = RTOL[np.dtype(actual.dtype)]
    tol = rtol * np.abs(magnitude) + np.finfo(actual.dtype).tiny
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bad = ~(err <= tol) & ~(np.isnan(actual) & np.isnan(expected)) & ~(actual == expected)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements differ beyond rtol={rtol}: first at {where}: "
            f"actual {actual[where]!r}, expected {expected[where]!r}, tolerance {tol[where]:.3g}")


def assert_bitwise_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    a = np.ascontiguousarray(actual).view(np.uint8)
    e = np.ascontiguousarray(expected).view(np.uint8)
    if not np.array_equal(a, e):
        diff = np.flatnonzero((np.ascontiguousarray(actual).reshape(-1).view(
            f"u{actual.dtype.itemsize}") != np.ascontiguousarray(expected).reshape(-1).view(
            f"u{actual.dtype.itemsize}")))
        i = diff[0]
        raise AssertionError(
            f"{diff.size} of {actual.size} elements differ bitwise; first at flat {i}: "
            f"{actual.reshape(-1)[i]!r} vs {expected.reshape(-1)[i]!r}")


def iter_backends(available: List[str]) -> Iterator[Tuple[str, int]]:
    for name in available:
        for t in (1, 2):
            yield name, t


def first_valid_tap_ok(case: Case, indices: np.ndarray) -> Optional[str]:
    """None if every index lies in its window's valid taps, else a message."""
    g = ref.make_geometry(case.geom.spatial, **case.geom.kwargs())
    valid, flat = ref._tap_tables(g)
    ok = np.where(valid, flat, -1)
    idx = np.moveaxis(indices, -1, 1) if case.layout == "channels_last" else indices
    hit = (ok[None, None] == idx[..., None]).any(axis=-1)
    return None if hit.all() else f"{int((~hit).sum())} indices outside their window"
