"""Hostile inputs for every array-taking public function (max_pool*, avg_pool* and their
*_backward, generic and fixed-rank forms).

One table, one row per hostile input. Each row either

* must raise ``ValueError``/``TypeError`` (a few rows: ``MemoryError`` for allocations of
  exabytes) whose message names the offending argument (``Raises``), or
* must compute the documented result, compared with the NumPy reference in
  ``reference.py`` (``RESULT``), or
* may do either (``RaisesOrResult``) where the documentation leaves it open.

Every row also checks that no input array was modified. A row that computes a result is
run a second time with ``out=`` a view into a canary-filled buffer (``pool_cases.Canary``),
which must come back intact; a row that must raise and whose output shape is known is run
with such an ``out=`` too (nothing may be written outside it before the error). Rows that
may kill the interpreter (sizes next to the int64 limit) run in a child process, so a crash
is reported as a failure of that row instead of ending the session. Every call runs under
``hang_guard`` (the process is stopped with a traceback after 120 s).

The number of rows is ``BAD_INPUT_COUNT``; ``test_table_size_and_coverage`` asserts it and
prints it. Rows that hit a known library bug are marked ``xfail(strict=True)`` by
``known_bug()`` (the reason names the bug); when the bug is fixed they XPASS and fail, and
the entry is to be removed.
"""

from __future__ import annotations

import decimal
import fractions
import os
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import fastpool
import reference as ref
from pool_cases import Canary, assert_close_to_sum, assert_same_signs, assert_unchanged, hang_guard, snapshot

# ----------------------------------------------------------------------------- operators

_NAME = re.compile(r"^(max|avg)_pool([123])?d?(_backward)?$")
OP_NAMES = sorted(n for n in fastpool.__all__ if _NAME.match(n))


@dataclass(frozen=True)
class Op:
    name: str

    @property
    def kind(self) -> str:
        return _NAME.match(self.name).group(1)

    @property
    def backward(self) -> bool:
        return _NAME.match(self.name).group(3) is not None

    @property
    def fixed_rank(self) -> Optional[int]:
        r = _NAME.match(self.name).group(2)
        return int(r) if r else None

    @property
    def rank(self) -> int:
        """The spatial rank the table tests this operator at (generic forms: 2)."""
        return self.fixed_rank or 2

    @property
    def fn(self) -> Callable[..., Any]:
        return getattr(fastpool, self.name)

    @property
    def primary(self) -> str:
        """The array argument whose shape and dtype drive the call."""
        return "grad_output" if (self.kind, self.backward) == ("avg", True) else "x"

    @property
    def fwd(self) -> bool:
        return not self.backward


OPS = [Op(n) for n in OP_NAMES]
SPATIAL = {1: (9,), 2: (6, 7), 3: (4, 5, 6)}
AUTO: Any = object()

# ----------------------------------------------------------------------------- data


def full_shape(
    rank: int,
    layout: str = "channels_first",
    batch: Optional[int] = 2,
    channels: int = 3,
    spatial: Optional[Tuple[int, ...]] = None,
) -> Tuple[int, ...]:
    sp = tuple(spatial or SPATIAL[rank])
    shape = sp + (channels,) if layout == "channels_last" else (channels,) + sp
    return shape if batch is None else (batch,) + shape


def values(shape, dtype=np.float32, kind: str = "normal", seed: int = 0) -> np.ndarray:
    """Input data: normal, ints (multiples of 1/4, exact sums), special (NaN and +-inf
    sprinkled in), nan, posinf, neginf (all one value), denormal (+-0, subnormals, tiny)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if kind == "normal":
        return rng.standard_normal(shape).astype(dtype)
    if kind == "ints":
        return (rng.integers(-8, 9, size=shape) / 4).astype(dtype)
    if kind == "special":
        x = rng.standard_normal(shape).astype(dtype)
        u = rng.random(shape)
        x[u < 0.15] = np.nan
        x[(u >= 0.15) & (u < 0.3)] = np.inf
        x[(u >= 0.3) & (u < 0.45)] = -np.inf
        return x
    if kind in ("nan", "posinf", "neginf"):
        return np.full(shape, {"nan": np.nan, "posinf": np.inf, "neginf": -np.inf}[kind], dtype=dtype)
    if kind == "denormal":
        fi = np.finfo(dtype)
        palette = np.array(
            [
                0.0,
                -0.0,
                fi.smallest_subnormal,
                -fi.smallest_subnormal,
                fi.tiny / 2,
                -fi.tiny / 2,
                fi.tiny,
                fi.smallest_subnormal * 3,
            ],
            dtype=dtype,
        )
        return palette[rng.integers(0, len(palette), size=shape)]
    raise ValueError(kind)


def _ref_kernel(kernel: Any, rank: int) -> Tuple[int, ...]:
    if isinstance(kernel, (int, np.integer)):
        return (int(kernel),) * rank
    return tuple(int(k) for k in kernel)


def _split(shape: Sequence[int], rank: int, layout: str):
    """(batched, spatial) of a shape, or None if it is not a valid input shape."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (rank + 1, rank + 2):
        return None
    core = shape if len(shape) == rank + 1 else shape[1:]
    spatial = core[:-1] if layout == "channels_last" else core[1:]
    return len(shape) == rank + 2, spatial


def ref_out_shape(in_shape, rank: int, kernel, geom_kw: Dict[str, Any], layout: str):
    """Forward output shape per the reference, or None if the geometry is invalid."""
    try:
        split = _split(in_shape, rank, layout)
        if split is None or min(in_shape) < 1:
            return None
        batched, spatial = split
        g = ref.make_geometry(spatial, _ref_kernel(kernel, rank), **geom_kw)
        in_shape = tuple(int(s) for s in in_shape)
        if layout == "channels_last":
            return in_shape[: -1 - rank] + g.out_sizes + in_shape[-1:]
        return in_shape[: len(in_shape) - rank] + g.out_sizes
    except Exception:
        return None


# ----------------------------------------------------------------------------- trials

_SMALL = 1 << 22  # arrays the table may allocate (elements)


def _count(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


_GEOM_KEYS = ("stride", "padding", "dilation", "ceil_mode")
_AVG_KEYS = ("count_include_pad", "divisor_override")


@dataclass
class Trial:
    """One prepared call: ``call(**extra)`` runs it, ``check(result)`` compares with the
    reference, ``out_spec`` is (shape, dtype) of a valid ``out`` (None if unknown or if the
    row passes its own ``out``), ``inputs`` are the arrays that must stay unchanged."""

    call: Callable[..., Any]
    check: Callable[[Any], None]
    check_out: Callable[[np.ndarray], None]
    out_spec: Optional[Tuple[Tuple[int, ...], np.dtype]]
    inputs: Tuple[Any, ...] = ()


def trial(
    op: Op,
    x: Any = AUTO,
    kernel: Any = AUTO,
    *,
    grad: Any = AUTO,
    input_shape: Any = AUTO,
    rank: Optional[int] = None,
    ref_kernel: Any = AUTO,
    ref_kw: Optional[Dict[str, Any]] = None,
    extra_inputs: Tuple[Any, ...] = (),
    x_kind: str = "normal",
    grad_kind: Optional[str] = None,
    dtype: Any = np.float32,
    **kw: Any,
) -> Trial:
    """A call of ``op`` with the given (possibly hostile) arguments; AUTO ones are valid."""
    rank = rank or op.rank
    layout = kw.get("layout", "channels_first")
    ref_layout = layout if layout in ("channels_first", "channels_last") else str(layout)
    if kernel is AUTO:
        kernel = 2 if op.fixed_rank else (2,) * rank
    if x is AUTO:
        x = values(
            full_shape(rank, ref_layout if ref_layout in ("channels_first", "channels_last") else "channels_first"),
            dtype,
            x_kind,
            seed=zlib.crc32(op.name.encode()),
        )
    if input_shape is AUTO:
        input_shape = getattr(x, "shape", None)
    rk = ref_kernel if ref_kernel is not AUTO else kernel
    rkw = dict(kw if ref_kw is None else ref_kw)
    for k in ("out", "return_indices", "indices"):
        rkw.pop(k, None)
    geom_kw = {k: v for k, v in rkw.items() if k in _GEOM_KEYS}
    x_dtype = getattr(x, "dtype", np.dtype(np.float64))
    float_dtype = x_dtype if x_dtype in (np.float32, np.float64) else np.dtype(dtype)
    if op.kind == "avg" and op.backward:
        shape_source = input_shape
    else:
        shape_source = np.shape(x) if isinstance(x, (list, tuple)) else getattr(x, "shape", None)
    try:
        out_shape = (
            ref_out_shape(shape_source, rank, rk, geom_kw, str(ref_layout)) if shape_source is not None else None
        )
    except Exception:
        out_shape = None
    small_out = out_shape is not None and _count(out_shape) <= _SMALL
    if grad is AUTO and op.backward:
        gkind = grad_kind or ("ints" if op.kind == "max" else "normal")
        grad = values(out_shape, float_dtype, gkind, seed=7) if small_out else np.zeros((1,) * (rank + 2), float_dtype)
    elif grad is AUTO:
        grad = None
    indices = kw.get("indices")

    def call(**extra: Any) -> Any:
        kwargs = dict(kw, **extra)
        if op.fwd:
            return op.fn(x, kernel, **kwargs)
        if op.kind == "max":
            return op.fn(grad, x, kernel, **kwargs)
        return op.fn(grad, input_shape, kernel, **kwargs)

    def expected():
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in the reference sums
            return _expected()

    def _expected():
        rker = _ref_kernel(rk, rank)
        if op.kind == "max" and op.fwd:
            return ref.max_pool(np.asarray(x), rker, **rkw)
        if op.kind == "max":
            return ref.max_pool_backward(np.asarray(grad), np.asarray(x), rker, indices=indices, **rkw)
        if op.fwd:
            xa = np.asarray(x)
            return ref.avg_pool(xa, rker, **rkw), ref.avg_pool(np.abs(xa), rker, **rkw)
        ga = np.asarray(grad)
        shp = tuple(int(s) for s in input_shape)
        return (ref.avg_pool_backward(ga, shp, rker, **rkw), ref.avg_pool_backward(np.abs(ga), shp, rker, **rkw))

    with_indices = op.kind == "max" and op.fwd and bool(kw.get("return_indices", False))

    def compare(y: np.ndarray, what: str) -> None:
        exp = expected()
        if op.kind == "max" and op.fwd:
            np.testing.assert_array_equal(y, exp[0], err_msg=f"{what}: values")
            assert y.dtype == exp[0].dtype
            assert_same_signs(y, exp[0])
        elif op.kind == "max":
            assert y.dtype == exp.dtype and y.shape == exp.shape, (y.dtype, y.shape, exp.dtype, exp.shape)
            np.testing.assert_array_equal(y, exp, err_msg=what)
        else:
            assert_close_to_sum(y, exp[0], exp[1], what)

    def check(result: Any) -> None:
        if with_indices:
            assert isinstance(result, tuple) and len(result) == 2
            y, idx = result
            compare(y, "result")
            assert idx.dtype == np.int64
            np.testing.assert_array_equal(idx, expected()[1], err_msg="indices")
        else:
            assert isinstance(result, np.ndarray), type(result)
            compare(result, "result")

    def check_out(out: np.ndarray) -> None:
        compare(out, "out")

    if op.fwd:
        spec_shape, spec_dtype = out_shape, x_dtype
    else:
        spec_shape = tuple(int(s) for s in shape_source) if out_shape is not None else None
        spec_dtype = getattr(grad, "dtype", None) if op.kind == "avg" else x_dtype
    out_spec = None
    if (
        "out" not in kw
        and spec_shape is not None
        and _count(spec_shape) <= _SMALL
        and spec_dtype in (np.float32, np.float64)
    ):
        out_spec = (spec_shape, np.dtype(spec_dtype))
    inputs = (x, grad, indices) + tuple(extra_inputs)
    return Trial(call, check, check_out, out_spec, inputs)


# ----------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Raises:
    exc: Tuple[type, ...]
    match: str


@dataclass(frozen=True)
class RaisesOrResult(Raises):
    """Either raises (exc, match) or returns the documented result."""


RESULT = "result"
V = (ValueError,)
T = (TypeError,)
VT = (ValueError, TypeError)
MEM = (MemoryError,)


@dataclass(frozen=True)
class Row:
    id: str
    op: Op
    build: Callable[[], Trial]
    expect: Union[Raises, str]
    category: str
    isolate: bool = False  # run in a child process: the call may kill the interpreter
    bug: Optional[str] = field(default=None, compare=False)


def _name(arg: str) -> str:
    return rf"\b{arg}\b"


def _fmt(v: Any) -> str:
    """A short, deterministic id fragment for a value."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**20:
        sign, a = ("-" if v < 0 else ""), abs(v)
        if a & (a - 1) == 0:
            return f"{sign}2**{a.bit_length() - 1}"
        if (a + 1) & a == 0:
            return f"{sign}2**{a.bit_length()}-1"
        return str(v)
    if isinstance(v, np.ndarray):
        return f"ndarray{v.shape}{v.dtype}".replace(" ", "")
    text = repr(v)
    if " at 0x" in text:
        return type(v).__name__
    return text.replace(" ", "")[:40]


class Idx:
    """An object that declares __index__ (accepted wherever an int is)."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __index__(self) -> int:
        return self.v

    def __repr__(self) -> str:
        return f"Idx({self.v})"


# ----------------------------------------------------------------------------- categories


def cat_ndim(op: Op):
    r = op.rank
    for nd in sorted({0, 1, r, r + 3, r + 5}):
        if nd in (r + 1, r + 2):
            continue
        shape = (3,) * nd
        if op.primary == "x":
            yield (
                f"x-ndim-{nd}",
                lambda op=op, shape=shape: trial(op, np.zeros(shape, np.float32)),
                Raises(V, r"\bx\b.*dimensions"),
            )
        else:
            yield (
                f"input_shape-ndim-{nd}",
                lambda op=op, shape=shape: trial(op, input_shape=shape),
                Raises(V, r"input_shape.*dimensions"),
            )
    if op.fixed_rank is None:
        for nd in (0, 1, 2, 6, 40):
            shape = (1,) * nd
            if op.primary == "x":
                yield (
                    f"x-ndim-{nd}-int-kernel",
                    lambda op=op, shape=shape: trial(op, np.zeros(shape, np.float32), 1),
                    Raises(V, r"spatial rank.*kernel_size"),
                )
            else:
                yield (
                    f"input_shape-ndim-{nd}-int-kernel",
                    lambda op=op, shape=shape: trial(op, input_shape=shape, kernel=1),
                    Raises(V, r"spatial rank.*kernel_size"),
                )
        if op.primary != "x":
            yield (
                "input_shape-ndim-70-int-kernel",
                lambda op=op: trial(op, input_shape=(1,) * 70, kernel=1),
                Raises(V, r"input_shape|spatial rank.*kernel_size"),
            )
        for k in ((), (2,) * 4):
            yield (
                f"kernel-rank-{len(k)}",
                lambda op=op, k=k: trial(op, kernel=k),
                Raises(V, r"spatial rank.*kernel_size"),
            )
    else:
        for n in (r - 1, r + 1):
            if n >= 1:
                yield (f"kernel-len-{n}", lambda op=op, n=n: trial(op, kernel=(2,) * n), Raises(V, r"kernel_size"))
    if op.backward:
        yield (
            "grad_output-ndim+1",
            lambda op=op: trial(op, grad=np.zeros((1,) * (r + 3), np.float32)),
            Raises(V, r"grad_output"),
        )
        yield ("grad_output-0d", lambda op=op: trial(op, grad=np.zeros((), np.float32)), Raises(V, r"grad_output"))
    for layout in ("channels_first", "channels_last"):
        yield (
            f"unbatched-{layout}",
            lambda op=op, layout=layout: (
                trial(
                    op, values(full_shape(op.rank, layout, batch=None), np.float32), layout=layout, return_indices=True
                )
                if op.kind == "max" and op.fwd
                else trial(op, values(full_shape(op.rank, layout, batch=None), np.float32), layout=layout)
            ),
            RESULT,
        )


def cat_zero_size(op: Op):
    r = op.rank
    for layout in ("channels_first", "channels_last"):
        base = full_shape(r, layout)
        for axis in range(len(base)):
            shape = base[:axis] + (0,) + base[axis + 1 :]
            tag = f"zero-size-axis{axis}-{layout[9:]}"
            if op.primary == "x":
                yield (
                    tag,
                    lambda op=op, shape=shape, layout=layout: trial(op, np.zeros(shape, np.float32), layout=layout),
                    Raises(V, r"(\bx\b|\binput\b).*zero-size"),
                )
            else:
                yield (
                    tag,
                    lambda op=op, shape=shape, layout=layout: trial(op, input_shape=shape, layout=layout),
                    Raises(V, r"(input_shape|\binput\b).*zero-size"),
                )
    if op.backward:
        yield (
            "grad_output-zero-size",
            lambda op=op: trial(op, grad=np.zeros((2, 0) + (1,) * r, np.float32)),
            Raises(V, r"grad_output"),
        )


def _last_axis(rank: int, last: Any, other: Any = 1) -> Tuple[Any, ...]:
    return (other,) * (rank - 1) + (last,)


def cat_kernel_too_large(op: Op):
    r = op.rank
    last = SPATIAL[r][-1]
    yield ("kernel-input+1", lambda op=op: trial(op, kernel=_last_axis(r, last + 1)), Raises(V, r"kernel_size"))
    yield (
        "kernel-padded+1",
        lambda op=op: trial(op, kernel=_last_axis(r, last + 3), padding=1),
        Raises(V, r"kernel_size"),
    )
    yield ("kernel-dilated-span", lambda op=op: trial(op, kernel=2, dilation=last), Raises(V, r"kernel_size"))
    yield ("kernel-2**40", lambda op=op: trial(op, kernel=2**40), Raises(V, r"kernel_size"))
    yield (
        "kernel-valid-padding-too-large",
        lambda op=op: trial(op, kernel=_last_axis(r, last + 1), padding="valid"),
        Raises(V, r"kernel_size"),
    )
    yield (
        "kernel-volume-over-2**24",
        lambda op=op: trial(op, kernel=_last_axis(r, 2**24 + 1), padding=_last_axis(r, (2**24, 2**24), (0, 0))),
        Raises(V, r"kernel"),
    )
    yield ("kernel-equals-input", lambda op=op: trial(op, kernel=SPATIAL[r]), RESULT)


_BAD_SIZES = [0, -1, -(2**31), -(2**63), -(2**64), 2**40 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 2**100]


def cat_bad_numbers(op: Op):
    r = op.rank
    for name in ("kernel_size", "stride", "dilation", "padding"):
        arg = {"kernel_size": "kernel"}.get(name, name)
        for v in _BAD_SIZES:
            if name == "padding" and v == 0:
                continue
            yield (f"{name}={_fmt(v)}", lambda op=op, arg=arg, v=v: trial(op, **{arg: v}), Raises(V, _name(name)))
        for v in (0, -1, 2**62, 2**64):
            if name == "padding" and v == 0:
                continue
            yield (
                f"{name}=tuple-last-{_fmt(v)}",
                lambda op=op, arg=arg, v=v: trial(op, **{arg: _last_axis(r, v)}),
                Raises(V, _name(name)),
            )
    for v in (-1, 2**40 + 1, 2**63, -(2**63)):
        yield (
            f"padding-pair-after={_fmt(v)}",
            lambda op=op, v=v: trial(op, padding=_last_axis(r, (0, v), (0, 0))),
            Raises(V, r"\bpadding\b"),
        )
        yield (
            f"padding-pair-before={_fmt(v)}",
            lambda op=op, v=v: trial(op, padding=_last_axis(r, (v, 0), (0, 0))),
            Raises(V, r"\bpadding\b"),
        )
    # the largest accepted values: a documented result
    yield ("stride=2**40", lambda op=op: trial(op, stride=2**40), RESULT)
    yield ("dilation=2**40-kernel-1", lambda op=op: trial(op, kernel=1, dilation=2**40), RESULT)
    yield ("stride=2**40-ceil", lambda op=op: trial(op, kernel=1, stride=2**40, ceil_mode=True), RESULT)


def cat_padding_vs_kernel(op: Op):
    r = op.rank
    last = SPATIAL[r][-1]
    yield ("padding=kernel", lambda op=op: trial(op, kernel=2, stride=1, padding=2), Raises(V, r"\bpadding\b"))
    yield (
        "padding-before>kernel",
        lambda op=op: trial(op, kernel=2, stride=1, padding=_last_axis(r, (3, 0), (0, 0))),
        Raises(V, r"\bpadding\b"),
    )
    yield (
        "padding-after>kernel",
        lambda op=op: trial(op, kernel=2, stride=1, padding=_last_axis(r, (0, 5), (0, 0))),
        Raises(V, r"\bpadding\b"),
    )
    yield ("padding=2**40", lambda op=op: trial(op, kernel=2, padding=2**40), Raises(V, r"\bpadding\b"))
    yield (
        "padding-window-between-dilated-taps",
        lambda op=op: trial(
            op, kernel=_last_axis(r, 2), stride=1, padding=_last_axis(r, last + 1, 0), dilation=_last_axis(r, last + 2)
        ),
        Raises(V, r"\bpadding\b"),
    )
    yield ("padding>kernel-dilated", lambda op=op: trial(op, kernel=2, stride=1, padding=3, dilation=3), RESULT)
    yield ("padding=kernel-1", lambda op=op: trial(op, kernel=3, stride=2, padding=2), RESULT)
    yield (
        "padding-same-kernel>input",
        lambda op=op: trial(op, kernel=_last_axis(r, last + 2), stride=1, padding="same"),
        RESULT,
    )
    yield (
        "padding-same_lower-kernel>input",
        lambda op=op: trial(op, kernel=_last_axis(r, last + 3), stride=1, padding="same_lower"),
        RESULT,
    )
    yield (
        "padding-pairs-asymmetric",
        lambda op=op: trial(op, kernel=3, stride=1, padding=_last_axis(r, (2, 0), (0, 1))),
        RESULT,
    )
    for bad in (_last_axis(r, (1, 2, 3), (0, 0)), ((1, 1),) * (r + 1), (((1, 1),) * 2,) * r):
        yield (
            f"padding-pairs-malformed-{_fmt(bad)}",
            lambda op=op, bad=bad: trial(op, padding=bad),
            Raises(VT, r"\bpadding\b"),
        )


def _non_integers(r: int):
    return [
        1.5,
        "3",
        None,
        np.float64(2.0),
        2j,
        b"2",
        object(),
        fractions.Fraction(2, 1),
        decimal.Decimal(2),
        True,
        np.bool_(True),
        float("nan"),
        float("inf"),
        {},
        {2},
        (1.5,) * r,
        ("2",) * r,
        np.array([2.0] * r),
    ]


def cat_non_integer(op: Op):
    r = op.rank
    for name in ("kernel_size", "stride", "dilation", "padding"):
        arg = {"kernel_size": "kernel"}.get(name, name)
        for i, v in enumerate(_non_integers(r)):
            if v is None and name == "stride":
                yield ("stride=None", lambda op=op: trial(op, stride=None), RESULT)
                continue
            exc = VT if isinstance(v, (str, bytes)) else T
            yield (f"{name}={_fmt(v)}#{i}", lambda op=op, arg=arg, v=v: trial(op, **{arg: v}), Raises(exc, _name(name)))
        yield (
            f"{name}=Idx(2)",
            lambda op=op, arg=arg: trial(
                op,
                **{arg: Idx(2) if arg != "padding" else Idx(1)},
                ref_kw={arg: 2 if arg != "padding" else 1} if arg != "kernel" else None,
                ref_kernel=2 if arg == "kernel" else AUTO,
            ),
            RESULT,
        )
        yield (
            f"{name}=np.int32",
            lambda op=op, arg=arg: trial(op, **{arg: np.int32(1 if arg == "padding" else 2)}),
            RESULT,
        )
        yield (
            f"{name}=0d-array",
            lambda op=op, arg=arg: trial(
                op,
                **{arg: np.array(1 if arg == "padding" else 2)},
                ref_kw={arg: 1 if arg == "padding" else 2} if arg != "kernel" else None,
                ref_kernel=2 if arg == "kernel" else AUTO,
            ),
            RaisesOrResult(T, _name(name)),
        )
    for v in (None, "yes", 1, 0, 1.0, np.array([True])):
        yield (f"ceil_mode={_fmt(v)}", lambda op=op, v=v: trial(op, ceil_mode=v), Raises(T, r"\bceil_mode\b"))
    yield ("ceil_mode=np.bool_", lambda op=op: trial(op, ceil_mode=np.bool_(True), ref_kw={"ceil_mode": True}), RESULT)
    if op.kind == "max" and op.fwd:
        for v in ("no", None, 1, 2.5):
            yield (
                f"return_indices={_fmt(v)}",
                lambda op=op, v=v: trial(op, return_indices=v),
                Raises(T, r"\breturn_indices\b"),
            )
    if op.kind == "avg":
        for v in (1, 0, "no", 1.5):
            yield (
                f"count_include_pad={_fmt(v)}",
                lambda op=op, v=v: trial(op, count_include_pad=v, padding=1),
                Raises(T, r"\bcount_include_pad\b"),
            )
        yield (
            "count_include_pad=np.bool_",
            lambda op=op: trial(
                op, padding=1, count_include_pad=np.bool_(False), ref_kw={"padding": 1, "count_include_pad": False}
            ),
            RESULT,
        )
        for v in (0, -1, -(2**63)):
            yield (
                f"divisor_override={_fmt(v)}",
                lambda op=op, v=v: trial(op, divisor_override=v),
                Raises(V, r"\bdivisor_override\b"),
            )
        for v in (1.5, "3", True, np.float64(2.0), 2j):
            yield (
                f"divisor_override={_fmt(v)}",
                lambda op=op, v=v: trial(op, divisor_override=v),
                Raises(T, r"\bdivisor_override\b"),
            )
        for v in (2**63, 2**64):
            yield (
                f"divisor_override={_fmt(v)}",
                lambda op=op, v=v: trial(op, divisor_override=v),
                Raises(VT, r"\bdivisor_override\b"),
            )
        for v in (1, 2**62, 2**63 - 1, np.int64(3)):
            yield (f"divisor_override-ok={_fmt(v)}", lambda op=op, v=v: trial(op, divisor_override=v), RESULT)
    if op.kind == "avg" and op.backward:
        shape = full_shape(r)
        for i, bad in enumerate((1.5, "3", None, 2.0, True, 2**64, 2**63, object())):
            s = shape[:-1] + (bad,)
            exc = VT
            yield (
                f"input_shape-entry={_fmt(bad)}#{i}",
                lambda op=op, s=s: trial(op, input_shape=s, ref_kernel=AUTO),
                Raises(exc, r"\binput_shape\b"),
            )
        yield (
            "input_shape-entry=-1",
            lambda op=op: trial(op, input_shape=shape[:-1] + (-1,)),
            Raises(V, r"input[_ ]shape"),
        )
        for i, bad in enumerate((None, 5, "1144", b"1144", 4.0, {1: 2}, {1, 2, 3, 4}.__class__)):
            yield (
                f"input_shape={_fmt(bad)}#{i}",
                lambda op=op, bad=bad: trial(op, input_shape=bad),
                Raises(VT, r"\binput_shape\b"),
            )
        yield ("input_shape=ndarray", lambda op=op: trial(op, input_shape=np.array(shape)), RESULT)
        yield ("input_shape=list", lambda op=op: trial(op, input_shape=list(shape)), RESULT)
        yield (
            "input_shape=np.int64-entries",
            lambda op=op: trial(op, input_shape=tuple(np.int64(s) for s in shape)),
            RESULT,
        )
    if op.fixed_rank is None:
        yield ("kernel=bytes-len-1", lambda op=op: trial(op, kernel=b"2"), Raises(VT, r"\bkernel_size\b"))
        yield ("kernel=str-len-2", lambda op=op: trial(op, kernel="22"), Raises(VT, r"\bkernel_size\b"))


_BAD_LAYOUTS = [
    "NCHW",
    "NHWC",
    "channels-first",
    "Channels_Last",
    "CHANNELS_FIRST",
    "",
    " channels_last",
    None,
    0,
    1,
    True,
    b"channels_last",
    ["channels_last"],
    ("channels_first",),
]


def cat_layout(op: Op):
    for i, v in enumerate(_BAD_LAYOUTS):
        yield (f"layout={_fmt(v)}#{i}", lambda op=op, v=v: trial(op, layout=v), Raises(VT, r"\blayout\b"))
    yield (
        "layout=np.str_",
        lambda op=op: trial(
            op,
            values(full_shape(op.rank, "channels_last"), np.float32),
            layout=np.str_("channels_last"),
            ref_kw={"layout": "channels_last"},
        ),
        RESULT,
    )


def cat_special_values(op: Op):
    r = op.rank
    for dtype in (np.float32, np.float64):
        for layout in ("channels_first", "channels_last"):
            for kind in ("special", "nan", "posinf", "neginf", "denormal"):
                tag = f"{kind}-{np.dtype(dtype).name}-{layout[9:]}"
                shape = full_shape(r, layout)

                def build(op=op, dtype=dtype, layout=layout, kind=kind, shape=shape):
                    kw = dict(kernel=3, stride=1, padding=1, layout=layout, ceil_mode=kind == "special")
                    if op.kind == "max" and op.fwd:
                        return trial(op, values(shape, dtype, kind), return_indices=True, **kw)
                    if op.fwd:
                        return trial(op, values(shape, dtype, kind), **kw)
                    if op.kind == "max":
                        return trial(
                            op, values(shape, dtype, kind), grad_kind="special" if kind == "special" else "ints", **kw
                        )
                    return trial(op, values(shape, dtype), grad_kind=kind, **kw)

                yield (tag, build, RESULT)
        if op.kind == "max" and op.backward:

            def build_idx(op=op, dtype=dtype):
                x = values(full_shape(r), dtype, "special")
                _, idx = ref.max_pool(x, (3,) * r, 1, 1)
                return trial(op, x, 3, stride=1, padding=1, indices=idx, grad_kind="special", dtype=dtype)

            yield (f"special-indices-given-{np.dtype(dtype).name}", build_idx, RESULT)


_BAD_DTYPES = [
    np.int8,
    np.int32,
    np.int64,
    np.uint8,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
    np.object_,
    np.float16,
    np.longdouble,
    ">f4",
    ">f8",
    "U3",
    "datetime64[s]",
    [("a", "f4")],
]


def _dname(dt: Any) -> str:
    return re.sub(r"[^\w<>]+", "", str(np.dtype(dt)))[:16]


def cat_dtypes(op: Op):
    r = op.rank
    shape = full_shape(r)
    for dt in _BAD_DTYPES:
        tag = _dname(dt)
        if op.primary == "x":
            yield (f"x-dtype-{tag}", lambda op=op, dt=dt: trial(op, np.zeros(shape, dt)), Raises(T, r"\bx has dtype"))
        else:
            yield (
                f"grad_output-dtype-{tag}",
                lambda op=op, dt=dt: trial(
                    op, input_shape=shape, grad=np.zeros(ref_out_shape(shape, r, 2, {}, "channels_first"), dt)
                ),
                Raises(T, r"\bgrad_output has dtype"),
            )
        if op.kind == "max" and op.backward:
            yield (
                f"grad_output-dtype-{tag}",
                lambda op=op, dt=dt: trial(op, grad=np.zeros(ref_out_shape(shape, r, 2, {}, "channels_first"), dt)),
                Raises(T, r"\bgrad_output has dtype"),
            )
        if np.dtype(dt) not in (np.float32,):
            out_shape = shape if op.backward else ref_out_shape(shape, r, 2, {}, "channels_first")
            yield (
                f"out-dtype-{tag}",
                lambda op=op, dt=dt, s=out_shape: trial(op, out=np.zeros(s, dt)),
                Raises(T, r"\bout has dtype"),
            )
    out_shape = shape if op.backward else ref_out_shape(shape, r, 2, {}, "channels_first")
    yield (
        "out-dtype-float64-for-float32",
        lambda op=op, s=out_shape: trial(op, out=np.zeros(s, np.float64)),
        Raises(T, r"\bout has dtype"),
    )
    yield (
        "out-dtype-float32-for-float64",
        lambda op=op, s=out_shape: trial(op, values(shape, np.float64), dtype=np.float64, out=np.zeros(s, np.float32)),
        Raises(T, r"\bout has dtype"),
    )
    if op.kind == "max" and op.backward:
        yield (
            "grad_output-float64-for-float32-x",
            lambda op=op: trial(op, grad=np.zeros(ref_out_shape(shape, r, 2, {}, "channels_first"), np.float64)),
            Raises(T, r"\bgrad_output\b"),
        )
        for dt in (np.int32, np.uint64, np.float64, np.bool_, ">i8", np.object_, np.int16, np.uint32):
            yield (
                f"indices-dtype-{_dname(dt)}",
                lambda op=op, dt=dt: trial(op, indices=np.zeros(ref_out_shape(shape, r, 2, {}, "channels_first"), dt)),
                Raises(T, r"\bindices has dtype"),
            )
    # not arrays at all
    for i, v in enumerate((None, {"a": 1}, "abc", object(), memoryview(b"abcd"))):
        arg = op.primary
        if arg == "x":
            yield (f"x-not-array-{_fmt(v)}#{i}", lambda op=op, v=v: trial(op, v), Raises(VT, r"\bx\b"))
        else:
            yield (
                f"grad_output-not-array-{_fmt(v)}#{i}",
                lambda op=op, v=v: trial(op, input_shape=shape, grad=v),
                Raises(VT, r"\bgrad_output\b"),
            )
    if op.primary == "x":
        yield (
            "x-python-list",
            lambda op=op: trial(op, values(shape, np.float64).tolist(), ref_kw={}),
            RaisesOrResult(T, r"\bx\b"),
        )
        yield ("x-python-scalar", lambda op=op: trial(op, 3.0), Raises(VT, r"\bx\b"))


def cat_readonly_and_strides(op: Op):
    r = op.rank
    shape = full_shape(r)

    def ro(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a.flags.writeable = False
        return a

    def bcast(dtype=np.float32, s=shape, v=0.75):
        return np.broadcast_to(np.array([v], dtype).reshape((1,) * len(s)), s)

    def strided0(dtype=np.float32, s=shape):
        return as_strided(np.full(1, -1.25, dtype), shape=s, strides=(0,) * len(s), writeable=False)

    def reversed_ro(dtype=np.float32):
        a = values(shape, dtype)
        return ro(a[..., ::-1])[..., ::-1]

    def cl_memory_ro():
        a = ro(values(full_shape(r, "channels_last"), np.float32))
        return np.moveaxis(a, -1, 1)  # channels_first view of channels_last memory

    makers = {
        "read-only": lambda: ro(values(shape, np.float32)),
        "broadcast": bcast,
        "as_strided-0": strided0,
        "read-only-reversed": reversed_ro,
        "read-only-cf-view-of-cl": cl_memory_ro,
        "read-only-fortran": lambda: ro(np.asfortranarray(values(shape, np.float32))),
    }
    for tag, make in makers.items():
        if op.primary == "x":
            if op.kind == "max" and op.fwd:
                yield (
                    f"x-{tag}",
                    lambda op=op, make=make: trial(op, make(), return_indices=True, padding=1, stride=1, kernel=3),
                    RESULT,
                )
            else:
                yield (f"x-{tag}", lambda op=op, make=make: trial(op, make(), padding=1, stride=1, kernel=3), RESULT)
        else:

            def build(op=op, make=make):
                g = make()
                oshape = ref_out_shape(g.shape, r, 3, {"stride": 1, "padding": 0}, "channels_first")
                gg = g[(Ellipsis,) + tuple(slice(0, n) for n in oshape[2:])]
                return trial(op, input_shape=shape, grad=gg, kernel=3, stride=1, padding=0)

            yield (f"grad_output-{tag}", build, RESULT)
    if op.kind == "max" and op.backward:
        oshape = ref_out_shape(shape, r, 2, {}, "channels_first")
        yield ("grad_output-read-only", lambda op=op: trial(op, grad=ro(values(oshape, np.float32, "ints"))), RESULT)
        yield ("grad_output-broadcast", lambda op=op: trial(op, grad=bcast(s=oshape, v=0.5)), RESULT)
    if op.kind == "max" and op.backward:
        oshape = ref_out_shape(shape, r, 2, {}, "channels_first")
        plane = int(np.prod(SPATIAL[r]))

        def idx_random(seed=3):
            return np.random.default_rng(seed).integers(0, plane, size=oshape).astype(np.int64)

        yield ("indices-read-only", lambda op=op: trial(op, indices=ro(idx_random())), RESULT)
        yield ("indices-broadcast-0", lambda op=op: trial(op, indices=np.broadcast_to(np.int64(0), oshape)), RESULT)
        yield (
            "indices-broadcast-last",
            lambda op=op: trial(op, indices=np.broadcast_to(np.int64(plane - 1), oshape)),
            RESULT,
        )
        yield ("indices-fortran", lambda op=op: trial(op, indices=np.asfortranarray(idx_random(4))), RESULT)
        yield ("indices-reversed", lambda op=op: trial(op, indices=idx_random(5)[..., ::-1]), RESULT)
    if op.primary == "x":

        def unaligned_x():
            v = values(shape, np.float32)
            raw = np.zeros(v.nbytes + 1, np.uint8)[1:]
            u = raw.view(np.float32).reshape(shape)
            u[...] = v
            return u

        yield ("x-unaligned", lambda op=op: trial(op, unaligned_x()), RESULT)


def _y_shape(op: Op, shape, **geom) -> Tuple[int, ...]:
    return ref_out_shape(shape, op.rank, geom.pop("kernel", 2), geom, "channels_first")


def cat_out(op: Op):
    r = op.rank
    shape = full_shape(r)
    oshape = shape if op.backward else _y_shape(op, shape)

    def ro(s):
        a = np.zeros(s, np.float32)
        a.flags.writeable = False
        return a

    yield ("out-read-only", lambda op=op: trial(op, out=ro(oshape)), Raises(V, r"\bout\b.*read-only"))
    wrong_shapes = {
        "extra-dim": (1,) + oshape,
        "unbatched": oshape[1:],
        "last+1": oshape[:-1] + (oshape[-1] + 1,),
        "0d": (),
        "swapped": oshape[:-2] + (oshape[-1], oshape[-2]),
        "flat": (int(np.prod(oshape)),),
    }
    for tag, s in wrong_shapes.items():
        if tuple(s) == tuple(oshape):
            continue
        yield (
            f"out-shape-{tag}",
            lambda op=op, s=s: trial(op, out=np.zeros(s, np.float32)),
            Raises(V, r"\bout has shape"),
        )

    def fortran():
        return np.asfortranarray(np.zeros(oshape, np.float32))

    def every_other():
        return np.zeros(oshape[:-1] + (2 * oshape[-1],), np.float32)[..., ::2]

    def reversed_out():
        return np.zeros(oshape, np.float32)[..., ::-1]

    def broadcast_out():
        return np.broadcast_to(np.zeros(1, np.float32).reshape((1,) * len(oshape)), oshape)

    def strided0_out():
        return as_strided(np.zeros(1, np.float32), shape=oshape, strides=(0,) * len(oshape))

    for tag, make in (
        ("fortran", fortran),
        ("every-other", every_other),
        ("reversed", reversed_out),
        ("broadcast", broadcast_out),
        ("as_strided-0-writeable", strided0_out),
    ):
        yield (f"out-strides-{tag}", lambda op=op, make=make: trial(op, out=make()), Raises(V, r"\bout\b"))
    for i, v in enumerate(([0.0], (0.0,), memoryview(bytearray(4 * int(np.prod(oshape)))), "out", 3.0)):
        yield (f"out-not-array-{_fmt(v)}#{i}", lambda op=op, v=v: trial(op, out=v), Raises(T, r"\bout\b"))

    def unaligned_out():
        raw = np.zeros(4 * int(np.prod(oshape)) + 1, np.uint8)[1:]
        return raw.view(np.float32).reshape(oshape)

    def run_unaligned(op=op):
        o = unaligned_out()
        t = trial(op, out=o)
        inner = t.call

        def call(**extra):
            res = inner(**extra)
            t.check_out(o)
            return res

        t.call = call
        return t

    yield ("out-unaligned", run_unaligned, RaisesOrResult(V, r"\bout\b"))

    # overlap with inputs
    if op.fwd:

        def out_is_x(op=op):
            x = values(shape, np.float32)
            return trial(op, x, kernel=1, out=x, ref_kw={}, extra_inputs=())

        yield ("out-is-x", out_is_x, Raises(V, r"\bout\b.*overlap"))

        def partial_overlap(op=op):
            n = int(np.prod(shape))
            m = int(np.prod(oshape))
            buf = values((n + m,), np.float32)
            x = buf[:n].reshape(shape)
            return trial(op, x, out=buf[n - m // 2 : n - m // 2 + m].reshape(oshape), extra_inputs=(buf,))

        yield ("out-overlaps-x", partial_overlap, Raises(V, r"\bout\b.*overlap"))

        def overlap_strided_x(op=op):
            n = int(np.prod(shape))
            m = int(np.prod(oshape))
            buf = values((2 * n + m,), np.float32)
            x = buf[: 2 * n : 2].reshape(shape)  # non-contiguous: copied before the kernel reads it
            out = buf[1 : 1 + m].reshape(oshape)
            return _overlap_trial(op, x, out)

        yield ("out-overlaps-strided-x", overlap_strided_x, RaisesOrResult(V, r"\bout\b.*overlap"))
    else:
        yield (
            "out-is-x" if op.kind == "max" else "out-is-grad_output-buffer",
            (lambda op=op: (lambda x: trial(op, x, out=x))(values(shape, np.float32)))
            if op.kind == "max"
            else (lambda op=op: _avg_bwd_out_overlapping_grad(op, shape, _y_shape(op, shape))),
            Raises(V, r"\bout\b.*overlap"),
        )
        if op.kind == "max":
            yield (
                "out-overlaps-grad_output",
                lambda op=op: _max_bwd_overlap(op, shape, "grad"),
                Raises(V, r"\bout\b.*overlap"),
            )
            yield (
                "out-overlaps-indices",
                lambda op=op: _max_bwd_overlap(op, shape, "indices"),
                Raises(V, r"\bout\b.*overlap"),
            )
            yield ("out-overlaps-x", lambda op=op: _max_bwd_overlap(op, shape, "x"), Raises(V, r"\bout\b.*overlap"))


def _overlap_trial(op: Op, x: np.ndarray, out: np.ndarray) -> Trial:
    """out overlaps a non-contiguous x: must raise, or compute from x's values before the call."""
    x_before = x.copy()
    t = trial(op, x, out=out)
    inner = t.call
    expected_trial = trial(op, x_before)

    def call(**extra):
        res = inner(**extra)
        expected_trial.check_out(out)
        return res

    t.call = call
    t.check = lambda res: expected_trial.check_out(res)
    t.inputs = ()  # x is overwritten by design when the call succeeds
    return t


def _avg_bwd_out_overlapping_grad(op: Op, shape, oshape) -> Trial:
    n = int(np.prod(shape))
    m = int(np.prod(oshape))
    buf = values((n + m,), np.float32)
    g = buf[n - m // 2 : n - m // 2 + m].reshape(oshape)
    return trial(op, input_shape=shape, grad=g, out=buf[:n].reshape(shape), extra_inputs=(buf,))


def _max_bwd_overlap(op: Op, shape, which: str) -> Trial:
    r = op.rank
    oshape = ref_out_shape(shape, r, 2, {}, "channels_first")
    n, m = int(np.prod(shape)), int(np.prod(oshape))
    x = values(shape, np.float32)
    if which == "grad":
        buf = values((n + m,), np.float32, "ints")
        return trial(
            op, x, grad=buf[n - 1 : n - 1 + m].reshape(oshape), out=buf[:n].reshape(shape), extra_inputs=(buf,)
        )
    if which == "indices":
        buf = np.zeros(n + 2 * m, np.float32)
        idx = buf[n - 2 : n - 2 + 2 * m].view(np.int64).reshape(oshape)
        return trial(op, x, indices=idx, out=buf[:n].reshape(shape), extra_inputs=(buf,))
    buf = values((2 * n,), np.float32)
    return trial(op, buf[n // 2 : n // 2 + n].reshape(shape), out=buf[:n].reshape(shape), extra_inputs=(buf,))


def cat_indices(op: Op):
    if not (op.kind == "max" and op.backward):
        return
    r = op.rank
    for layout in ("channels_first", "channels_last"):
        shape = full_shape(r, layout)
        oshape = ref_out_shape(shape, r, 2, {}, layout)
        plane = int(np.prod(SPATIAL[r]))
        for v in (plane, plane + 1, -1, -(2**63), 2**63 - 1, 2**31, 2**32, 2**62, -plane):
            for pos in ("first", "last"):

                def build(op=op, shape=shape, oshape=oshape, v=v, pos=pos, layout=layout, plane=plane):
                    x = values(shape, np.float32)
                    idx = np.random.default_rng(1).integers(0, plane, size=oshape).astype(np.int64)
                    idx.reshape(-1)[0 if pos == "first" else -1] = v
                    return trial(op, x, indices=idx, layout=layout)

                yield (
                    f"indices-value={_fmt(v)}-{pos}-{layout[9:]}",
                    build,
                    Raises(V, rf"\bindices\b.*{re.escape(str(v))}"),
                )
    shape = full_shape(r)
    oshape = ref_out_shape(shape, r, 2, {}, "channels_first")
    for tag, s in {
        "extra-dim": (1,) + oshape,
        "unbatched": oshape[1:],
        "last+1": oshape[:-1] + (oshape[-1] + 1,),
        "0d": (),
        "swapped-batch-channels": (oshape[1], oshape[0]) + oshape[2:],
    }.items():
        yield (
            f"indices-shape-{tag}",
            lambda op=op, s=s: trial(op, indices=np.zeros(s, np.int64)),
            Raises(V, r"\bindices has shape"),
        )
    for i, v in enumerate(([0], (0,), np.zeros(oshape, np.int64).tolist(), "0", 0)):
        yield (f"indices-not-array-{_fmt(v)}#{i}", lambda op=op, v=v: trial(op, indices=v), Raises(T, r"\bindices\b"))
    yield ("indices=None", lambda op=op: trial(op, indices=None), RESULT)


def _huge(shape: Tuple[int, ...], dtype=np.float32, how: str = "broadcast") -> np.ndarray:
    if how == "broadcast":
        return np.broadcast_to(np.zeros(1, dtype).reshape((1,) * len(shape)), shape)
    return as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * len(shape), writeable=False)


def cat_huge(op: Op):
    r = op.rank
    # 2**58 elements (2**60 bytes of float32): a valid numpy array, no memory behind it
    huge = (2**28, 2 ** (30 - r)) + (2,) * r
    # for avg_pool_backward: input_shape tuples whose element count overflows int64
    if op.kind == "avg" and op.backward:
        yield (
            "input_shape-elements-overflow",
            lambda op=op: trial(op, input_shape=(2**32, 2**32) + (4,) * r),
            Raises(V, r"input[_ ]shape.*overflow"),
        )
        yield (
            "input_shape-output-overflow",
            lambda op=op: trial(op, input_shape=(2**31, 2**31) + (1,) * r, kernel=2, stride=1, padding=1),
            Raises(V, r"overflow"),
        )
        yield (
            "input_shape-batch-2**63",
            lambda op=op: trial(op, input_shape=(2**63, 1) + (4,) * r),
            Raises(VT, r"input[_ ]shape"),
        )
        yield (
            "input_shape-spatial-2**62-grad-small",
            lambda op=op: trial(op, input_shape=(1, 1) + (1,) * (r - 1) + (2**62,), kernel=_last_axis(r, 2)),
            Raises(V, r"\bgrad_output\b|overflow|input[_ ]shape"),
        )
        # sizes next to the int64 limit (last axis; the others are 1 with kernel 1): in + padding
        # and (out - 1) * stride overflow inside the geometry unless it bounds them first
        for tag, s, k, st, p, d, ceil in (
            ("int64max-pad1", 2**63 - 1, 2, 1, 1, 1, False),
            ("int64max-pad2**40", 2**63 - 1, 2, 1, 2**40, 1, False),
            ("int64max-2**30-pad2**40-ceil", 2**63 - 2**30, 2, 2, 2**40, 1, True),
            ("int64max-stride2**40-ceil", 2**63 - 1, 2**20, 2**40, 0, 2**20, True),
            ("int64max-k2**40-s2**40-ceil", 2**63 - 1, 2**40, 2**40, 0, 1, True),
            ("int64max-same", 2**63 - 1, 3, 1, "same", 1, False),
            ("int64max-same-d2**40", 2**63 - 1, 3, 2**40, "same", 2**40, False),
        ):
            shp = (1, 1) + (1,) * (r - 1) + (s,)
            kw = dict(
                kernel=_last_axis(r, k),
                stride=_last_axis(r, st),
                dilation=_last_axis(r, d),
                ceil_mode=ceil,
                padding=p if isinstance(p, str) else _last_axis(r, p, 0),
            )
            yield (
                f"input_shape-{tag}",
                lambda op=op, shp=shp, kw=kw: trial(op, input_shape=shp, **kw),
                Raises(V, r"input[_ ]shape|\bgrad_output\b"),
                True,
            )
        if r == 3 or op.fixed_rank is None:
            yield (
                "input_shape-3d-output-overflow-dilation",
                lambda op=op: trial(
                    op,
                    input_shape=(1, 1, 2**20, 2**20, 2**20),
                    kernel=(2, 2, 2),
                    stride=1,
                    padding=2**20,
                    dilation=2**20,
                    rank=3,
                ),
                Raises(V, r"overflow"),
            )
        g_huge = ref_out_shape(huge, r, 2, {}, "channels_first")
        yield (
            "grad_output-huge-broadcast",
            lambda op=op: trial(op, input_shape=huge, grad=_huge(g_huge)),
            Raises(MEM, r""),
        )
        return
    for how in ("broadcast", "as_strided"):
        if op.kind == "max" and op.backward:
            yield (
                f"x-huge-{how}-grad-small",
                lambda op=op, how=how: trial(op, _huge(huge, how=how), grad=np.zeros((1,) * (r + 2), np.float32)),
                Raises(V, r"\bgrad_output\b"),
            )
            yield (
                f"x-huge-{how}-kernel-0",
                lambda op=op, how=how: trial(op, _huge(huge, how=how), kernel=0),
                Raises(V, r"\bkernel_size\b"),
            )
            g_huge = ref_out_shape(huge, r, 2, {}, "channels_first")
            yield (
                f"x-huge-{how}-grad-huge",
                lambda op=op, how=how: trial(op, _huge(huge, how=how), grad=_huge(g_huge)),
                Raises(MEM, r""),
            )
            if r == 3 or op.fixed_rank is None:
                yield (
                    f"x-huge-{how}-output-overflow",
                    lambda op=op, how=how: trial(
                        op, _huge((2**30, 2**30, 1, 1, 1), how=how), kernel=(2, 2, 2), stride=1, padding=1, rank=3
                    ),
                    Raises(V, r"overflow"),
                )
        else:
            yield (
                f"x-huge-{how}-kernel-0",
                lambda op=op, how=how: trial(op, _huge(huge, how=how), kernel=0),
                Raises(V, r"\bkernel_size\b"),
            )
            yield (
                f"x-huge-{how}-padding-negative",
                lambda op=op, how=how: trial(op, _huge(huge, how=how), padding=-1),
                Raises(V, r"\bpadding\b"),
            )
            yield (
                f"x-huge-{how}-layout-bad",
                lambda op=op, how=how: trial(op, _huge(huge, how=how), layout="NCHW"),
                Raises(V, r"\blayout\b"),
            )
            yield (f"x-huge-{how}-valid", lambda op=op, how=how: trial(op, _huge(huge, how=how)), Raises(MEM, r""))
            if r == 3 or op.fixed_rank is None:
                yield (
                    f"x-huge-{how}-output-overflow",
                    lambda op=op, how=how: trial(
                        op, _huge((2**30, 2**30, 1, 1, 1), how=how), kernel=(2, 2, 2), stride=1, padding=1, rank=3
                    ),
                    Raises(V, r"overflow"),
                )


CATEGORIES = [
    cat_ndim,
    cat_zero_size,
    cat_kernel_too_large,
    cat_bad_numbers,
    cat_padding_vs_kernel,
    cat_non_integer,
    cat_layout,
    cat_special_values,
    cat_dtypes,
    cat_readonly_and_strides,
    cat_out,
    cat_indices,
    cat_huge,
]

# ----------------------------------------------------------------------------- known bugs
# Rows marked xfail(strict=True) until the library is fixed (then they XPASS and fail: remove
# the entry). The seven bugs this table first found are fixed.


def known_bug(op: Op, tag: str) -> Optional[str]:
    """Rows that fail for a known library bug (none open at the moment)."""
    return None


def _build_table() -> List[Row]:
    rows: List[Row] = []
    for op in OPS:
        for cat in CATEGORIES:
            for item in cat(op):
                tag, build, expect = item[:3]
                isolate = bool(item[3]) if len(item) > 3 else False
                rid = f"{op.name}:{tag}"
                bug = known_bug(op, tag)
                rows.append(Row(rid, op, build, expect, cat.__name__[4:], isolate, bug))
    return rows


TABLE = _build_table()
ROWS = {row.id: row for row in TABLE}
BAD_INPUT_COUNT = len(TABLE)

# ----------------------------------------------------------------------------- running a row


def _raises(expect: Raises, call: Callable[[], Any], what: str) -> BaseException:
    with pytest.raises(expect.exc) as info:
        call()
    message = str(info.value)
    assert re.search(expect.match, message), (
        f"{what}: {type(info.value).__name__} message does not match {expect.match!r}: {message!r}"
    )
    return info.value


def run_row(row: Row) -> None:
    t = row.build()
    snap = snapshot(*t.inputs)
    expect = row.expect
    if isinstance(expect, Raises) and not isinstance(expect, RaisesOrResult):
        _raises(expect, t.call, row.id)
        assert_unchanged(snap, row.id)
        if t.out_spec is not None and expect.exc != MEM:
            canary = Canary(*t.out_spec)
            _raises(expect, lambda: t.call(out=canary.out), row.id + " (with out=)")
            canary.assert_intact(row.id)
            assert_unchanged(snap, row.id + " (with out=)")
        return
    try:
        result = t.call()
    except Exception as e:
        if isinstance(expect, RaisesOrResult) and isinstance(e, expect.exc):
            assert re.search(expect.match, str(e)), (
                f"{row.id}: {type(e).__name__} message does not match {expect.match!r}: {str(e)!r}"
            )
            assert_unchanged(snap, row.id)
            return
        raise
    t.check(result)
    assert_unchanged(snap, row.id)
    if t.out_spec is not None:
        canary = Canary(*t.out_spec)
        result = t.call(out=canary.out)
        out_result = result[0] if isinstance(result, tuple) else result
        assert np.shares_memory(out_result, canary.out), "the result is not the given out"
        t.check(result)
        t.check_out(canary.out)
        canary.assert_intact(row.id)
        assert_unchanged(snap, row.id + " (with out=)")


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_hostile_inputs as m
m.run_row(m.ROWS[{rid!r}])
print("ROW-OK")
"""


def run_isolated(row: Row) -> None:
    """Runs the row in a child process: a crash fails the row, not the session."""
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(tests=tests, rid=row.id)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tests,
        check=False,
    )
    if proc.returncode < 0:
        pytest.fail(
            f"{row.id}: the interpreter was killed by signal {-proc.returncode} (stderr tail: {proc.stderr[-600:]!r})"
        )
    assert proc.returncode == 0 and "ROW-OK" in proc.stdout, f"{row.id}: child failed:\n{proc.stderr[-3000:]}"


def _param(row: Row):
    marks = [pytest.mark.xfail(strict=True, reason=row.bug)] if row.bug else []
    return pytest.param(row, id=row.id, marks=marks)


@pytest.mark.parametrize("row", [_param(r) for r in TABLE])
def test_hostile_input(row: Row) -> None:
    with hang_guard(120):
        if row.isolate:
            run_isolated(row)
        else:
            run_row(row)


def test_table_size_and_coverage(record_property) -> None:
    """Every array-taking public function is in the table, with every category."""
    # (max-pooling dropout has its own hostile-argument tests in test_max_pool_dropout.py)
    expected_ops = {n for n in fastpool.__all__
                    if n.startswith(("max_pool", "avg_pool")) and not n.startswith("max_pool_dropout")}
    assert set(OP_NAMES) == expected_ops and len(OP_NAMES) == 16
    ids = [r.id for r in TABLE]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    by_op: Dict[str, Dict[str, int]] = {}
    for r in TABLE:
        by_op.setdefault(r.op.name, {}).setdefault(r.category, 0)
        by_op[r.op.name][r.category] += 1
    required = {
        "ndim",
        "zero_size",
        "kernel_too_large",
        "bad_numbers",
        "padding_vs_kernel",
        "non_integer",
        "layout",
        "special_values",
        "dtypes",
        "readonly_and_strides",
        "out",
        "huge",
    }
    for name in OP_NAMES:
        missing = required - set(by_op[name])
        assert not missing, f"{name} lacks rows for {missing}"
        if name.startswith("max_pool") and name.endswith("backward"):
            assert by_op[name].get("indices", 0) >= 20
    n_raise = sum(isinstance(r.expect, Raises) and not isinstance(r.expect, RaisesOrResult) for r in TABLE)
    n_result = sum(r.expect == RESULT for r in TABLE)
    n_either = BAD_INPUT_COUNT - n_raise - n_result
    n_bug = sum(r.bug is not None for r in TABLE)
    record_property("bad_inputs", BAD_INPUT_COUNT)
    print(
        f"\nhostile inputs tried: {BAD_INPUT_COUNT} ({n_raise} must raise, {n_result} must give the documented "
        f"result, {n_either} either; {n_bug} marked as known bugs; "
        f"{sum(r.isolate for r in TABLE)} run in a child process)"
    )
    assert BAD_INPUT_COUNT >= 5000


def test_harness_detects_stray_writes() -> None:
    """The guards the table relies on do fire: a write next to out, a modified input."""
    canary = Canary((2, 3), np.float32)
    canary.out[...] = 1.0
    canary.assert_intact()
    for where in (canary.pad - 1, canary.pad + canary.out.size):
        canary.buffer[where] ^= 1
        with pytest.raises(AssertionError, match="canary elements overwritten"):
            canary.assert_intact()
        canary.buffer[where] ^= 1
    x = np.zeros(4, np.float32)
    snap = snapshot(x)
    x[2] = -0.0  # a sign-only change is still a change
    with pytest.raises(AssertionError, match="was modified"):
        assert_unchanged(snap)
