"""Shared test cases: pooling geometries, input data and comparison helpers.

A :class:`Case` is one call: geometry, layout, dtype, batch and channels. Its input
data are derived from a hash of its id, so a failing case reruns identically alone.
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import pytest

import fastpool
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

    def grad(self, kind: str = "ints") -> np.ndarray:
        """A grad_output of the forward output's shape (default: multiples of 1/4, exact sums)."""
        return make_data(self.rng("grad"), self.out_shape(), self.dtype, kind)


def make_data(rng: np.random.Generator, shape, dtype, kind: str) -> np.ndarray:
    """Input data of a given kind.

    normal   standard normal: no ties.
    ints     multiples of 1/4 in [-1, 1], zeros of both signs: many ties, and sums
             that are exact in float32, so an average has one correct rounding.
    special  normal with NaN, +inf and -inf sprinkled in (about 8% each).
    neg_inf  -inf everywhere.
    """
    if kind == "normal":
        return rng.standard_normal(shape).astype(dtype)
    if kind == "ints":
        x = (rng.integers(-4, 5, size=shape) / 4).astype(dtype)
        return np.where(rng.random(shape) < 0.5, x, -x)  # flips the sign of half the zeros
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
        for vi, (layout, dtype) in enumerate([(lay, d) for lay in LAYOUTS for d in DTYPES]):
            avg = AVG_OPTIONS[(gi + vi) % len(AVG_OPTIONS)] if options else {}
            cases.append(Case(g, layout, dtype, batch=1 + (gi + vi) % 2,
                              channels=CHANNELS[(gi + vi) % len(CHANNELS)], avg=dict(avg)))
    return cases


def params(cases: List[Case]) -> List[Any]:
    return [pytest.param(c, id=c.id) for c in cases]


# Windowed-reduction cases shared by the tests of SoftPool and stochastic pooling:
# every rank, padding form, dilation and ceil-mode overhang once, for the SIMD paths...
WINDOW_BACKEND_CASES = [
    Case(Geom((31,), 3, 2, 1), "channels_first", np.float32, 2, 3),
    Case(Geom((67,), 5, 1, 2), "channels_last", np.float64, 1, 17),
    Case(Geom((13,), 4, 2, "same_lower", dilation=2), "channels_last", np.float32, 2, 33),
    Case(Geom((8, 67), 3, 2, 1), "channels_first", np.float32, 2, 5),
    Case(Geom((11, 13), (3, 2), (2, 3), ((1, 0), (0, 1)), ceil_mode=True), "channels_last", np.float32, 2, 17),
    Case(Geom((7, 7), 7), "channels_first", np.float64, 1, 33),
    Case(Geom((15, 20), 3, 1, 2, dilation=2), "channels_first", np.float32, 1, 3),
    Case(Geom((6, 8), 4, 3, "same"), "channels_last", np.float64, 2, 3),
    Case(Geom((3, 7, 31), 3, 2, 1), "channels_last", np.float32, 1, 5),
    Case(Geom((5, 6, 7), 2, 1, 1, dilation=2, ceil_mode=True), "channels_first", np.float64, 2, 3),
]
# ... and for the comparisons with torch (which has no dilation or string padding here).
WINDOW_TORCH_CASES = [
    Case(Geom((31,), 3, 2, 1), "channels_first", np.float32, 2, 3),
    Case(Geom((31,), 4, 3, 2, ceil_mode=True), "channels_last", np.float64, 2, 5),
    Case(Geom((8, 67), 3, 2, 1), "channels_first", np.float32, 2, 5),
    Case(Geom((11, 13), (3, 2), (2, 1), 1, ceil_mode=True), "channels_last", np.float32, 1, 17),
    Case(Geom((7, 7), 3, 1, 1), "channels_first", np.float64, 2, 3),
    Case(Geom((9, 9), 2), "channels_last", np.float64, 1, 4),
    Case(Geom((4, 6, 9), 3, 2, 1), "channels_first", np.float32, 1, 3),
    Case(Geom((5, 6, 7), 2, 1, 1, ceil_mode=True), "channels_last", np.float64, 2, 3),
]

# Hand-checked examples run on fastpool and on the reference alike.
IMPLS = [pytest.param("fastpool", id="fastpool"), pytest.param("reference", id="reference")]


def row(values, dtype=np.float64) -> np.ndarray:
    """(N=1, C=1, W) from a list."""
    return np.array(values, dtype).reshape(1, 1, -1)


def views(x: np.ndarray):
    """Non-contiguous views of the same values: (name, view), each equal to x."""
    yield "fortran", np.asfortranarray(x)
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    big[..., ::2] = x
    yield "strided", big[..., ::2]
    rev = np.ascontiguousarray(x[..., ::-1])
    yield "negative-stride", rev[..., ::-1]
    flip = np.ascontiguousarray(x[:, ::-1])
    yield "negative-stride-axis1", flip[:, ::-1]
    ro = x.copy()
    ro.flags.writeable = False
    yield "read-only", ro
    raw = np.zeros(x.nbytes + 1, np.uint8)[1:]  # C-contiguous but misaligned by one byte
    unaligned = raw.view(x.dtype).reshape(x.shape)
    unaligned[...] = x
    assert not unaligned.flags.aligned or x.itemsize == 1
    yield "unaligned", unaligned


def transposed_memory(x: np.ndarray, layout: str) -> np.ndarray:
    """A view equal to x (in ``layout``) whose memory is in the other layout's order: a
    channels_first view of channels_last memory, or the reverse."""
    if layout == "channels_first":
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, -1, 1)), 1, -1)


def distinct_values(rng: np.random.Generator, shape) -> np.ndarray:
    """Distinct values spaced >= 1e-2 apart, in random order, in [0, n * 1e-2): no
    argmax changes within a finite-difference step."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 1e-2 + rng.uniform(0, 1e-3, n)).reshape(shape)


def numerical_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray, g: Any = None, h: float = 1e-5) -> np.ndarray:
    """Central differences, step h, of L(x) = sum(g * f(x)), or of a scalar f(x) when g is
    None. x is perturbed in place (and restored) one element at a time."""
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    loss = f if g is None else (lambda v: np.sum(g * f(v)))
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = loss(x)
        flat[i] = old - h
        down = loss(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def random_cases(n: int, seed: int) -> List[Case]:
    """n random valid cases: rank 1-3, sizes 1-40, kernel 1-5, stride 1-4, dilation 1-3,
    per-side padding 0-3, ceil mode, both layouts and dtypes, 1-20 channels."""
    rng = np.random.default_rng(seed)
    cases: List[Case] = []
    while len(cases) < n:
        rank = int(rng.integers(1, 4))
        sizes = tuple(int(rng.integers(1, 41 if rng.random() < 0.3 else 13)) for _ in range(rank))
        geom = Geom(sizes,
                    tuple(int(v) for v in rng.integers(1, 6, rank)),
                    tuple(int(v) for v in rng.integers(1, 5, rank)),
                    tuple((int(b), int(a)) for b, a in rng.integers(0, 4, (rank, 2))),
                    tuple(int(v) for v in rng.integers(1, 4, rank)),
                    bool(rng.random() < 0.5))
        try:
            ref.make_geometry(geom.spatial, **geom.kwargs())
        except ValueError:
            continue
        cases.append(Case(geom, LAYOUTS[int(rng.integers(2))], DTYPES[int(rng.integers(2))],
                          int(rng.integers(1, 3)), int(rng.integers(1, 21))))
    return cases


RANDOM_CASES = random_cases(250, seed=1)

# Cases for the out= argument: both layouts, both dtypes, ranks 1 to 3.
OUT_CASES = [
    Case(Geom((8, 67), 3, 2, 1), "channels_first", np.float32, 2, 3),
    Case(Geom((8, 67), 3, 2, 1), "channels_last", np.float64, 2, 17),
    Case(Geom((31,), 4, 3, "same"), "channels_first", np.float64, 1, 5),
    Case(Geom((3, 5, 7), 2, 1, 1, ceil_mode=True), "channels_last", np.float32, 1, 3),
]

# (C, *spatial) / (*spatial, C) inputs: 1D, 2D and 3D, both layouts.
UNBATCHED = [
    Case(Geom((31,), 3, 2, 1), "channels_first", np.float32, 1, 17),
    Case(Geom((31,), 3, 2, 1), "channels_last", np.float64, 1, 17),
    Case(Geom((9, 11), 3, 2, 1, ceil_mode=True), "channels_first", np.float64, 1, 3),
    Case(Geom((9, 11), 3, 2, 1, ceil_mode=True), "channels_last", np.float32, 1, 33),
    Case(Geom((4, 5, 6), 2, 1, "same"), "channels_first", np.float32, 1, 2),
    Case(Geom((4, 5, 6), 2, 1, "same"), "channels_last", np.float32, 1, 5),
]



# Larger inputs: enough work that two threads really split it (the kernels stay on one
# thread below about 2**15 elements), output rows wider than a column chunk (2048),
# and every vector-body / tail combination.
IDENTITY_CASES = [
    Case(G((33, 67), 3, 2, 1), "channels_first", np.float32, 2, 17),
    Case(G((33, 67), 3, 2, 1), "channels_last", np.float32, 2, 17),
    Case(G((40, 203), (3, 5), 1, (1, 2)), "channels_first", np.float32, 1, 9),
    Case(G((40, 203), (3, 5), 1, (1, 2)), "channels_first", np.float64, 1, 9),
    Case(G((24, 70), 2, 2, ceil_mode=True), "channels_last", np.float64, 2, 37),
    Case(G((37, 131), 3, 3, 1, dilation=2, ceil_mode=True), "channels_first", np.float32, 1, 5),
    Case(G((20, 150), 3, 2, 1, dilation=2), "channels_first", np.float32, 2, 4),
    Case(G((37, 131), 3, 3, 1, dilation=2, ceil_mode=True), "channels_last", np.float32, 1, 35),
    Case(G((19, 37), (7, 9), 1, (3, 4)), "channels_first", np.float64, 2, 6),
    Case(G((80, 20), (9, 3), 1, (4, 1), dilation=(9, 1)), "channels_first", np.float32, 1, 3),
    Case(G((2500,), 7, 2, 3), "channels_first", np.float32, 3, 11),
    Case(G((4500,), 3, 1, 1), "channels_first", np.float64, 2, 5),
    Case(G((2, 2100), (2, 3), 1, ((1, 0), (0, 2))), "channels_first", np.float32, 1, 7),
    Case(G((9, 17, 31), 3, 2, 1), "channels_first", np.float32, 2, 7),
    Case(G((9, 17, 31), 3, 2, 1), "channels_last", np.float64, 2, 19),
    Case(G((10, 12, 45), (2, 3, 3), 1, ((1, 0), 1, 1), dilation=(2, 1, 1), ceil_mode=True),
         "channels_first", np.float64, 1, 3),
    Case(G((12, 40, 23), (3, 3, 3), 1, 0, dilation=(1, 5, 1)), "channels_first", np.float32, 1, 4),
]


# ------------------------------------------------------------------------- backends

_COMPILED = list(fastpool._core.compiled_simd())
AVAILABLE_SIMD = fastpool.available_simd()
# Compiled paths, then anything available that is not listed as compiled.
SIMD_PATHS = _COMPILED + [s for s in AVAILABLE_SIMD if s not in _COMPILED]
THREAD_COUNTS = (1, 2)
BASELINE = ("scalar", 1)


def other_backends() -> List[Any]:
    """(SIMD path, threads) params other than the scalar single-thread baseline; the best
    path also with 3 threads, which splits work at other boundaries."""
    combos = [(s, t) for s in SIMD_PATHS for t in THREAD_COUNTS if (s, t) != BASELINE]
    combos.append((SIMD_PATHS[-1], 3))
    return [pytest.param(s, t, id=f"simd={s}-threads={t}") for s, t in combos]


@contextlib.contextmanager
def running_on(simd_name: str, n_threads: int) -> Iterator[None]:
    if simd_name not in AVAILABLE_SIMD:
        pytest.skip(f"SIMD path {simd_name!r} is compiled in but not supported by this CPU")
    with fastpool.simd(simd_name), fastpool.threads(n_threads):
        yield


def fp(name: str) -> Callable[..., Any]:
    """fastpool.<name>; a missing function fails the test (AttributeError), never skips."""
    return getattr(fastpool, name)


def identical_on_every_backend(outputs: Callable[[], Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Runs ``outputs()`` on every available SIMD path x threads 1, 2 and 3; asserts every
    run bitwise identical to the first, and returns the first run's outputs."""
    runs = {}
    for s in SIMD_PATHS:
        if s not in AVAILABLE_SIMD:
            continue
        for t in (1, 2, 3):
            with running_on(s, t):
                runs[(s, t)] = outputs()
    base_key = next(iter(runs))
    for key, got in runs.items():
        for name, value in runs[base_key].items():
            assert_bitwise_equal(got[name], value, f"{name} on {key} vs {base_key}")
    return runs[base_key]


# ------------------------------------------------------------------------- caching

_CACHE: Dict[Tuple[Any, ...], Any] = {}


def cached(key: Tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """Memoizes reference results: the backend fixtures rerun a case several times."""
    if key not in _CACHE:
        _CACHE[key] = compute()
    return _CACHE[key]


# ------------------------------------------------------------------------- comparisons


def _check_specials(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """NaN and signed infinities must sit at the same places; returns the finite mask."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        a, e = test(actual), test(expected)
        if not np.array_equal(a, e):
            where = tuple(np.argwhere(a != e)[0])
            raise AssertionError(f"{name} pattern differs, first at {where}: actual "
                                 f"{actual[where]!r}, expected {expected[where]!r}")
    return np.isfinite(expected)


def assert_close_to_sum(actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray,
                        what: str = "") -> None:
    """Average pooling check: NaN/inf at the same places, elsewhere
    ``|actual - expected| <= rtol * magnitude`` where ``magnitude`` is the same operator
    applied to the absolute values of the terms (the natural error bound of a sum), and
    rtol is 1e-6 for float32, 1e-12 for float64."""
    fin = _check_specials(actual, expected)
    rtol = RTOL[np.dtype(actual.dtype)]
    tol = rtol * np.abs(magnitude.astype(np.float64)) + np.finfo(actual.dtype).tiny
    err = np.abs(np.where(fin, actual, 0).astype(np.float64) - np.where(fin, expected, 0))
    bad = fin & ~(err <= tol)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements differ beyond rtol={rtol}: first at {where}: "
            f"actual {actual[where]!r}, expected {expected[where]!r}, tolerance {tol[where]:.3g}")


def assert_bitwise_equal(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Same dtype, shape and bytes (so also the same NaN payloads and signed zeros)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    ua = np.ascontiguousarray(actual).reshape(-1).view(f"u{actual.dtype.itemsize}")
    ue = np.ascontiguousarray(expected).reshape(-1).view(f"u{expected.dtype.itemsize}")
    diff = np.flatnonzero(ua != ue)
    if diff.size:
        i = diff[0]
        raise AssertionError(
            f"{what}: {diff.size} of {actual.size} elements differ bitwise; first at flat {i}: "
            f"{actual.reshape(-1)[i]!r} vs {expected.reshape(-1)[i]!r}")


def assert_same_signs(actual: np.ndarray, expected: np.ndarray) -> None:
    """Max pooling returns an input element: its zero keeps the sign of the first maximum."""
    bad = np.signbit(actual) != np.signbit(expected)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"sign differs at {where}: {actual[where]!r} vs {expected[where]!r}")


def assert_max_equal(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Max results: same dtype, shape, values (NaN where NaN) and signs of zeros."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
        (what, actual.dtype, expected.dtype, actual.shape, expected.shape)
    np.testing.assert_array_equal(actual, expected, err_msg=what)
    assert_same_signs(actual, expected)


def sum_rtol(dtype: Any, terms: int) -> float:
    """rtol 1e-6 / 1e-12, or the worst-case relative bound of a sum of ``terms`` terms in
    any order, (terms - 1) * u, if larger."""
    dtype = np.dtype(dtype)
    return max(RTOL[dtype], (terms - 1) * np.finfo(dtype).eps / 2 * 1.01)


def assert_close(actual: Any, expected: Any, scale: Any, rtol: float, what: str = "") -> None:
    """NaN/inf at the same places; elsewhere |actual - expected| <= rtol * |scale| (the
    bin reductions' check: scale is the same reduction of the |terms|)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    fin = _check_specials(actual, expected)
    tol = rtol * np.abs(np.asarray(scale, dtype=np.float64)) + np.finfo(actual.dtype).tiny
    err = np.abs(np.where(fin, actual, 0).astype(np.float64) - np.where(fin, expected, 0))
    bad = fin & ~(err <= tol)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} differ beyond rtol={rtol:.3g}: first at "
                             f"{where}: actual {actual[where]!r}, expected {expected[where]!r}, tol {tol[where]:.3g}")


# ------------------------------------------------------------------------- robustness helpers
# Used by test_hostile_inputs, test_fuzz, test_threads, test_memory and test_huge.


class Canary:
    """A C-contiguous ``out`` array that is a view into the middle of a larger buffer
    filled with a canary bit pattern: :meth:`assert_intact` checks that a call wrote
    nothing before or after ``out`` (a kernel overrun or a stray scatter)."""

    PATTERNS = {1: 0xA5, 2: 0xA5C3, 4: 0x7FA5C3E1, 8: 0x7FF5A5C3E1D2B4F6}  # NaN payloads for floats

    def __init__(self, shape: Tuple[int, ...], dtype: Any, pad: int = 0) -> None:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64))
        self.pad = pad or max(1024, n)  # elements on each side
        self.words = np.dtype(f"u{dtype.itemsize}")
        self.buffer = np.full(n + 2 * self.pad, self.PATTERNS[dtype.itemsize], dtype=self.words)
        self.out = self.buffer[self.pad:self.pad + n].view(dtype).reshape(shape)
        assert self.out.flags.c_contiguous and self.out.flags.writeable
        self.fill = self.PATTERNS[dtype.itemsize]

    def assert_intact(self, what: str = "") -> None:
        n = self.out.size
        for side, part, base in (("before", self.buffer[:self.pad], -self.pad),
                                 ("after", self.buffer[self.pad + n:], n)):
            bad = np.flatnonzero(part != self.fill)
            if bad.size:
                raise AssertionError(f"{what}: {bad.size} canary elements overwritten {side} out "
                                     f"(first at element offset {base + int(bad[0])} from out's start)")


def snapshot(*arrays: Any) -> List[Tuple[Any, bytes]]:
    """Bytes of every ndarray argument, for :func:`assert_unchanged`."""
    return [(a, np.ascontiguousarray(a).tobytes()) for a in arrays if isinstance(a, np.ndarray)
            and a.size * a.itemsize < (1 << 26)]


def assert_unchanged(snap: List[Tuple[Any, bytes]], what: str = "") -> None:
    for i, (a, before) in enumerate(snap):
        assert np.ascontiguousarray(a).tobytes() == before, f"{what}: input array #{i} was modified"


@contextlib.contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Dumps every thread's traceback and exits the process if the block runs longer than
    ``seconds`` (a kernel that hangs with the GIL released cannot be interrupted otherwise;
    pytest-timeout is not a dependency)."""
    import faulthandler
    import sys

    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (0 if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
