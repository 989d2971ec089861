"""Property tests (hypothesis): random geometries, layouts, dtypes and values against the
NumPy reference in ``reference.py``.

Drawn per example: spatial rank 1-3 and sizes, kernel / stride / dilation (ints or per-axis
tuples, stride also None), padding in every form (int, per-axis tuple, per-side pairs,
"same", "same_lower", "valid"), ceil_mode, count_include_pad, divisor_override, layout,
dtype, batched or not, channel count, the generic or the fixed-rank entry point, the input's
memory (C-contiguous, strided, a channels_first view of channels_last memory) and whether
the result goes to an ``out=`` inside a canary buffer. Values mix normal numbers, ties
(multiples of 1/4), NaN, +-inf, -0.0, subnormals and extreme magnitudes.

Geometries the spec rejects (a window made only of padding, a kernel larger than the padded
input) are not filtered out: the reference's verdict decides, and fastpool must raise
ValueError for exactly those.

Max pooling (values, indices, backward with and without indices) is compared exactly;
average pooling with ``assert_close_to_sum``, the tolerance helper of test_avg_pool.py.

Profiles: ``ci`` (default: derandomized, bounded so the file runs well under 2 minutes) and
``long`` (20000 examples per test, random): ``FASTPOOL_FUZZ_PROFILE=long python -m pytest
tests/test_fuzz.py``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastpool
import reference as ref
from pool_cases import Canary, assert_close_to_sum, assert_same_signs, assert_unchanged, hang_guard, snapshot

# When an example fails, hypothesis's pytest plugin imports hypothesis.extra._patching (to print
# an @example patch); with libcst installed that import emits a DeprecationWarning from
# mypy_extensions, which filterwarnings=error turns into an INTERNALERROR hiding the failure.
# Import it once here with that warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

# ----------------------------------------------------------------------------- profiles

CI_EXAMPLES = 2000  # per test (10000 in all); the file takes about 40 s on 2 cores
_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", derandomize=True, max_examples=CI_EXAMPLES, **_COMMON)
settings.register_profile("long", max_examples=20000, **_COMMON)
PROFILE_NAME = os.environ.get("FASTPOOL_FUZZ_PROFILE", "ci")
if PROFILE_NAME not in ("ci", "long"):
    raise ValueError(f"FASTPOOL_FUZZ_PROFILE must be 'ci' or 'long', got {PROFILE_NAME!r}")
FUZZ = settings.get_profile(PROFILE_NAME)

GEOMETRY_ERROR = r"kernel_size|padding|window"

MAX = {None: fastpool.max_pool, 1: fastpool.max_pool1d, 2: fastpool.max_pool2d, 3: fastpool.max_pool3d}
MAX_BWD = {
    None: fastpool.max_pool_backward,
    1: fastpool.max_pool1d_backward,
    2: fastpool.max_pool2d_backward,
    3: fastpool.max_pool3d_backward,
}
AVG = {None: fastpool.avg_pool, 1: fastpool.avg_pool1d, 2: fastpool.avg_pool2d, 3: fastpool.avg_pool3d}
AVG_BWD = {
    None: fastpool.avg_pool_backward,
    1: fastpool.avg_pool1d_backward,
    2: fastpool.avg_pool2d_backward,
    3: fastpool.avg_pool3d_backward,
}

# ----------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class FuzzCase:
    spatial: Tuple[int, ...]
    kernel: Any  # user form: int or tuple
    stride: Any
    padding: Any
    dilation: Any
    ceil_mode: bool
    layout: str
    dtype: Any
    batch: Optional[int]  # None: unbatched input
    channels: int
    fixed_rank: bool  # max_pool2d(...) rather than max_pool(...)
    memory: str  # "contiguous", "strided", "cf-view-of-cl"
    use_out: bool

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def shape(self) -> Tuple[int, ...]:
        core = self.spatial + (self.channels,) if self.layout == "channels_last" else (self.channels,) + self.spatial
        return core if self.batch is None else (self.batch,) + core

    def fn(self, table: Dict[Optional[int], Any]):
        return table[self.rank if self.fixed_rank else None]

    def kwargs(self) -> Dict[str, Any]:
        return dict(
            kernel_size=self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            layout=self.layout,
        )

    def ref_kwargs(self) -> Dict[str, Any]:
        kw = self.kwargs()
        if isinstance(self.kernel, int):
            kw["kernel_size"] = (self.kernel,) * self.rank  # the reference infers the rank from an int
        return kw

    def ref_geometry(self):
        """The reference geometry, or the ValueError the spec demands."""
        kw = self.ref_kwargs()
        kw.pop("layout")
        return ref.make_geometry(self.spatial, **kw)

    def out_shape(self, geom) -> Tuple[int, ...]:
        core = (
            geom.out_sizes + (self.channels,) if self.layout == "channels_last" else (self.channels,) + geom.out_sizes
        )
        return core if self.batch is None else (self.batch,) + core

    def in_memory(self, x: np.ndarray) -> np.ndarray:
        """x (C-contiguous) in this case's memory form, with the same values."""
        if self.memory == "strided":
            big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
            big[..., ::2] = x
            return big[..., ::2]
        if self.memory == "cf-view-of-cl" and self.layout == "channels_first":
            c_axis = 0 if self.batch is None else 1
            cl = np.ascontiguousarray(np.moveaxis(x, c_axis, -1))
            return np.moveaxis(cl, -1, c_axis)
        return x


def _per_axis(draw, rank: int, lo: int, hi: int) -> Any:
    """An int, or a tuple of ``rank`` ints."""
    if draw(st.booleans()):
        return draw(st.integers(lo, hi))
    return tuple(draw(st.integers(lo, hi)) for _ in range(rank))


@st.composite
def cases(
    draw,
    max_size: int = 10,
    max_kernel: int = 5,
    max_stride: int = 4,
    max_pad: int = 3,
    max_dilation: int = 3,
    max_channels: int = 5,
) -> FuzzCase:
    rank = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, max_size)) for _ in range(rank))
    kernel = _per_axis(draw, rank, 1, max_kernel)
    stride = None if draw(st.integers(0, 4)) == 0 else _per_axis(draw, rank, 1, max_stride)
    dilation = 1 if draw(st.booleans()) else _per_axis(draw, rank, 1, max_dilation)
    form = draw(st.sampled_from(["int", "tuple", "pairs", "mixed", "same", "same_lower", "valid"]))
    if form == "int":
        padding: Any = draw(st.integers(0, max_pad))
    elif form == "tuple":
        padding = tuple(draw(st.integers(0, max_pad)) for _ in range(rank))
    elif form == "pairs":
        padding = tuple((draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad))) for _ in range(rank))
    elif form == "mixed":  # pairs and ints per axis, at least one pair
        padding = tuple(
            (draw(st.integers(0, max_pad)), draw(st.integers(0, max_pad)))
            if i == 0 or draw(st.booleans())
            else draw(st.integers(0, max_pad))
            for i in range(rank)
        )
        padding = padding[1:] + padding[:1] if rank > 1 and draw(st.booleans()) else padding
    else:
        padding = form
    batch = draw(st.sampled_from([None, 1, 2]))
    fixed_rank = draw(st.booleans())
    if isinstance(kernel, int) and not fixed_rank and batch is None:
        kernel = (kernel,) * rank  # an int kernel makes the generic form infer rank = ndim - 2
    channels = draw(st.one_of(st.integers(1, max_channels), st.sampled_from([8, 17])))
    return FuzzCase(
        spatial,
        kernel,
        stride,
        padding,
        dilation,
        draw(st.booleans()),
        draw(st.sampled_from(["channels_first", "channels_last"])),
        draw(st.sampled_from([np.float32, np.float64])),
        batch,
        channels,
        fixed_rank,
        draw(st.sampled_from(["contiguous", "contiguous", "strided", "cf-view-of-cl"])),
        draw(st.booleans()),
    )


def _special_palette(dtype, bounded: bool) -> np.ndarray:
    fi = np.finfo(dtype)
    big = float(fi.max) if not bounded else (1e30 if fi.bits == 32 else 1e300)
    return np.array(
        [
            np.nan,
            np.inf,
            -np.inf,
            0.0,
            -0.0,
            fi.smallest_subnormal,
            -fi.smallest_subnormal,
            fi.tiny / 2,
            -fi.tiny / 2,
            fi.tiny,
            big,
            -big,
            1.0,
            -1.0,
            0.25,
        ],
        dtype=dtype,
    )


@st.composite
def arrays_for(draw, shape: Tuple[int, ...], dtype, bounded: bool, kind: str = "any") -> np.ndarray:
    """Values for an array of ``shape``. ``bounded``: finite magnitudes small enough that no
    sum over a window overflows (average pooling). ``kind="quarters"``: multiples of 1/4
    (plus specials), whose sums are exact in any order (max backward gradients)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    width = 32 if dtype == np.float32 else 64
    limit = float(dtype.type(1e30 if width == 32 else 1e300)) if bounded else None  # exactly representable
    palette = _special_palette(dtype, bounded)
    if kind == "quarters":  # keep every sum exact: no huge or subnormal finite values
        palette = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.25], dtype=dtype)
    if kind == "any" and n <= 48 and draw(st.booleans()):
        # small arrays: element by element, so hypothesis can shrink values
        finite = st.floats(
            min_value=-limit if limit else None,
            max_value=limit,
            allow_nan=False,
            allow_infinity=False,
            allow_subnormal=True,
            width=width,
        )
        elements = st.one_of(
            finite, st.sampled_from(palette.tolist()), st.sampled_from([-1.0, -0.5, -0.0, 0.0, 0.5, 1.0])
        )
        return draw(hnp.arrays(dtype, shape, elements=elements))
    seed = draw(st.integers(0, 2**32 - 1))
    base = draw(st.sampled_from(["normal", "ties", "wide"] if kind == "any" else ["quarters"]))
    p_special = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3, 0.9]))
    specials = draw(st.lists(st.sampled_from(range(len(palette))), min_size=1, max_size=6, unique=True))
    rng = np.random.default_rng(seed)
    if base == "normal":
        x = rng.standard_normal(shape)
    elif base in ("ties", "quarters"):
        x = rng.integers(-8, 9, size=shape) / 4.0
        x = np.where(rng.random(shape) < 0.5, x, -x)  # zeros of both signs
    else:  # wide exponent range
        e = rng.integers(-120 if width == 32 else -1000, 121 if width == 32 else 1001, size=shape)
        x = rng.choice([-1.0, 1.0], size=shape) * np.ldexp(rng.random(shape) + 0.5, e)
        if limit:
            x = np.clip(x, -limit, limit)
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    mask = rng.random(shape) < p_special
    x[mask] = palette[np.asarray(specials)][rng.integers(0, len(specials), size=int(mask.sum()))]
    return x


def _errstate():
    return np.errstate(invalid="ignore", over="ignore", divide="ignore")


def _rejects(case: FuzzCase) -> Optional[str]:
    """The reference's reason to reject the geometry, or None if it is valid."""
    try:
        case.ref_geometry()
    except ValueError as e:
        return str(e)
    return None


def _canary_out(case: FuzzCase, shape, dtype) -> Optional[Canary]:
    return Canary(tuple(shape), dtype, pad=256) if case.use_out else None


def _describe(case: FuzzCase, **arrays: np.ndarray) -> None:
    note(f"case: {case}")
    for name, a in arrays.items():
        note(f"{name}: shape {a.shape} dtype {a.dtype} strides {a.strides}\n{a!r}")


# ----------------------------------------------------------------------------- max pooling


@FUZZ
@given(case=cases(), data=st.data())
def test_max_pool_forward(case: FuzzCase, data) -> None:
    x = case.in_memory(data.draw(arrays_for(case.shape, case.dtype, bounded=False), label="x"))
    _describe(case, x=x)
    fn = case.fn(MAX)
    snap = snapshot(x)
    with hang_guard(120):
        reason = _rejects(case)
        if reason is not None:
            event("geometry rejected")
            with pytest.raises(ValueError, match=GEOMETRY_ERROR):
                fn(x, return_indices=True, **case.kwargs())
            with pytest.raises(ValueError, match=GEOMETRY_ERROR):
                fn(x, **case.kwargs())
            return
        event("geometry valid")
        with _errstate():
            y_ref, i_ref = ref.max_pool(x, **case.ref_kwargs())
        canary = _canary_out(case, y_ref.shape, x.dtype)
        extra = {} if canary is None else {"out": canary.out}
        y, idx = fn(x, return_indices=True, **case.kwargs(), **extra)
        assert y.dtype == x.dtype and idx.dtype == np.int64 and y.shape == y_ref.shape
        np.testing.assert_array_equal(y, y_ref, err_msg="values")
        assert_same_signs(y, y_ref)
        np.testing.assert_array_equal(idx, i_ref, err_msg="indices")
        if canary is not None:
            canary.assert_intact("max_pool out")
        y_only = fn(x, **case.kwargs())  # the value-only kernels
        np.testing.assert_array_equal(y_only, y_ref, err_msg="values, no indices")
        assert_same_signs(y_only, y_ref)
    assert_unchanged(snap, "x")


@FUZZ
@given(case=cases(), data=st.data())
def test_max_pool_backward(case: FuzzCase, data) -> None:
    x = case.in_memory(data.draw(arrays_for(case.shape, case.dtype, bounded=False), label="x"))
    fn = case.fn(MAX_BWD)
    with hang_guard(120):
        reason = _rejects(case)
        if reason is not None:
            event("geometry rejected")
            g = np.zeros(x.shape, x.dtype)  # any shape: the geometry is checked first
            _describe(case, x=x)
            with pytest.raises(ValueError, match=GEOMETRY_ERROR):
                fn(g, x, **case.kwargs())
            return
        event("geometry valid")
        out_shape = case.out_shape(case.ref_geometry())
        g = data.draw(arrays_for(out_shape, case.dtype, bounded=True, kind="quarters"), label="grad_output")
        _describe(case, x=x, grad_output=g)
        snap = snapshot(x, g)
        with _errstate():
            _, i_ref = ref.max_pool(x, **case.ref_kwargs())
            expected = ref.max_pool_backward(g, x, **case.ref_kwargs())
        canary = _canary_out(case, x.shape, x.dtype)
        extra = {} if canary is None else {"out": canary.out}
        got = fn(g, x, **case.kwargs(), **extra)
        assert got.dtype == x.dtype and got.shape == x.shape
        np.testing.assert_array_equal(got, expected, err_msg="argmax recomputed from x")
        if canary is not None:
            canary.assert_intact("max_pool_backward out")
        got = fn(g, x, indices=i_ref, **case.kwargs())
        np.testing.assert_array_equal(got, expected, err_msg="reference indices given")
        # indices are used as given, wherever they point inside the plane
        plane = int(np.prod(case.spatial))
        other = (
            np.random.default_rng(data.draw(st.integers(0, 2**16), label="idx seed"))
            .integers(0, plane, size=i_ref.shape)
            .astype(np.int64)
        )
        with _errstate():
            expected_other = ref.max_pool_backward(g, x, indices=other, **case.ref_kwargs())
        np.testing.assert_array_equal(
            fn(g, x, indices=other, **case.kwargs()), expected_other, err_msg="arbitrary in-range indices given"
        )
        assert_unchanged(snap, "inputs")


# ----------------------------------------------------------------------------- average pooling


@st.composite
def avg_options(draw) -> Dict[str, Any]:
    opts: Dict[str, Any] = {}
    cip = draw(st.sampled_from([None, True, False]))
    if cip is not None:
        opts["count_include_pad"] = cip
    div = draw(st.one_of(st.none(), st.integers(1, 12), st.sampled_from([7919, 2**31 + 11])))
    if div is not None:
        opts["divisor_override"] = div
    return opts


@FUZZ
@given(case=cases(), opts=avg_options(), data=st.data())
def test_avg_pool_forward(case: FuzzCase, opts: Dict[str, Any], data) -> None:
    x = case.in_memory(data.draw(arrays_for(case.shape, case.dtype, bounded=True), label="x"))
    _describe(case, x=x)
    note(f"options: {opts}")
    fn = case.fn(AVG)
    snap = snapshot(x)
    with hang_guard(120):
        if _rejects(case) is not None:
            event("geometry rejected")
            with pytest.raises(ValueError, match=GEOMETRY_ERROR):
                fn(x, **case.kwargs(), **opts)
            return
        event("geometry valid")
        with _errstate():
            expected = ref.avg_pool(x, **case.ref_kwargs(), **opts)
            scale = ref.avg_pool(np.abs(x), **case.ref_kwargs(), **opts)
        canary = _canary_out(case, expected.shape, x.dtype)
        extra = {} if canary is None else {"out": canary.out}
        y = fn(x, **case.kwargs(), **opts, **extra)
        assert y.dtype == x.dtype
        assert_close_to_sum(y, expected, scale, "avg_pool")
        if canary is not None:
            canary.assert_intact("avg_pool out")
    assert_unchanged(snap, "x")


@FUZZ
@given(case=cases(), opts=avg_options(), data=st.data())
def test_avg_pool_backward(case: FuzzCase, opts: Dict[str, Any], data) -> None:
    fn = case.fn(AVG_BWD)
    note(f"options: {opts}")
    with hang_guard(120):
        if _rejects(case) is not None:
            event("geometry rejected")
            _describe(case)
            with pytest.raises(ValueError, match=GEOMETRY_ERROR):
                fn(np.zeros(case.shape, case.dtype), case.shape, **case.kwargs(), **opts)
            return
        event("geometry valid")
        out_shape = case.out_shape(case.ref_geometry())
        g = case.in_memory(data.draw(arrays_for(out_shape, case.dtype, bounded=True), label="grad_output"))
        _describe(case, grad_output=g)
        snap = snapshot(g)
        with _errstate():
            expected = ref.avg_pool_backward(g, case.shape, **case.ref_kwargs(), **opts)
            scale = ref.avg_pool_backward(np.abs(g), case.shape, **case.ref_kwargs(), **opts)
        canary = _canary_out(case, case.shape, case.dtype)
        extra = {} if canary is None else {"out": canary.out}
        got = fn(g, case.shape, **case.kwargs(), **opts, **extra)
        assert got.dtype == g.dtype and got.shape == case.shape
        assert_close_to_sum(got, expected, scale, "avg_pool_backward")
        if canary is not None:
            canary.assert_intact("avg_pool_backward out")
        assert_unchanged(snap, "grad_output")


# ----------------------------------------------------------------------------- geometry


@FUZZ
@given(case=cases(max_size=40, max_kernel=9, max_stride=6, max_pad=8, max_dilation=6, max_channels=2))
def test_geometry_verdict_and_shape_agree(case: FuzzCase) -> None:
    """Wider parameter ranges on tiny data: every operator accepts exactly the geometries the
    reference accepts, with the reference's output shape (and the max values)."""
    case = FuzzCase(**{**case.__dict__, "batch": 1, "channels": 1, "use_out": False})
    x = np.arange(int(np.prod(case.shape)), dtype=case.dtype).reshape(case.shape) * -0.5
    _describe(case)
    calls = {
        "max": lambda: case.fn(MAX)(x, **case.kwargs()),
        "max_backward": lambda g: case.fn(MAX_BWD)(g, x, **case.kwargs()),
        "avg": lambda: case.fn(AVG)(x, **case.kwargs()),
        "avg_backward": lambda g: case.fn(AVG_BWD)(g, case.shape, **case.kwargs()),
    }
    with hang_guard(120):
        if _rejects(case) is not None:
            event("geometry rejected")
            for name, call in calls.items():
                with pytest.raises(ValueError, match=GEOMETRY_ERROR):
                    call() if name in ("max", "avg") else call(np.zeros(x.shape, x.dtype))
            return
        event("geometry valid")
        out_shape = case.out_shape(case.ref_geometry())
        y = calls["max"]()
        assert y.shape == out_shape
        np.testing.assert_array_equal(y, ref.max_pool(x, **case.ref_kwargs())[0])
        assert calls["avg"]().shape == out_shape
        g = np.ones(out_shape, case.dtype)
        assert calls["max_backward"](g).shape == x.shape
        assert calls["avg_backward"](g).shape == x.shape
