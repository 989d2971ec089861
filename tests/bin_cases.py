"""Shared pieces of the bin-reduction suites: global, adaptive, GeM, pyramid and strip pooling.

:class:`BinCase` gives their case dataclasses (spatial, layout, dtype, batch, channels and
an ``id``) shapes and input data derived from a hash of the id, as pool_cases' Case does;
:class:`PlaneCase` declares those fields first, for the cases that add theirs after them.
:func:`cycled` spreads the layout x dtype variants (and other parameters cycled by a
counter) over a list of sizes. :class:`MaxAvgPair` and the ``check_*`` functions are the
checks global and adaptive max/avg pooling share: they differ only in the functions
called and in the size of a bin.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

import reference as ref
from pool_cases import (
    DTYPES,
    LAYOUTS,
    RTOL,
    SHORT,
    assert_close,
    assert_max_equal,
    cached,
    distinct_values,
    fp,
    identical_on_every_backend,
    make_data,
    numerical_gradient,
    sum_rtol,
    transposed_memory,
    views,
)

# (layout, dtype) of every grid entry, in this order.
VARIANTS = [(lay, d) for lay in LAYOUTS for d in DTYPES]


def cycled(items: Sequence[Any], variants: Sequence[Tuple[Any, ...]] = VARIANTS, stride: int = 1) -> List[tuple]:
    """(k, item, *variant) for each item in each variant; k = stride * (item's index) +
    (variant's index) cycles the other parameters (batch, channels, p, ...)."""
    return [(stride * i + j, item) + tuple(v) for i, item in enumerate(items) for j, v in enumerate(variants)]


class BinCase:
    """Mixin for a frozen dataclass with fields spatial, layout, dtype, batch (0: an
    unbatched input) and channels, and an ``id`` property."""

    spatial: Tuple[int, ...]
    layout: str
    dtype: Any
    batch: int
    channels: int

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def plane(self) -> int:
        return int(np.prod(self.spatial))

    @property
    def variant_id(self) -> str:
        return f"{SHORT[self.layout]}-{SHORT[self.dtype]}-N{self.batch}C{self.channels}"

    @property
    def sizes_id(self) -> str:
        return "x".join(map(str, self.spatial))

    def with_channels(self, sizes: Tuple[int, ...]) -> Tuple[int, ...]:
        """(N, C, *sizes) or (N, *sizes, C), by layout; no N when batch is 0."""
        b = (self.batch,) if self.batch else ()
        if self.layout == "channels_last":
            return b + tuple(sizes) + (self.channels,)
        return b + (self.channels,) + tuple(sizes)

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.with_channels(self.spatial)

    def rng(self, salt: str = "") -> np.random.Generator:
        return np.random.default_rng(zlib.crc32((self.id + salt).encode()))  # type: ignore[attr-defined]

    def data(self, kind: str, salt: str = "") -> np.ndarray:
        """make_data of this kind, of the input's shape."""
        return make_data(self.rng(kind + salt), self.shape, self.dtype, kind)

    def make(self, shape: Tuple[int, ...], kind: str, salt: str) -> np.ndarray:
        """make_data of this kind and shape, seeded by the id and ``salt``."""
        return make_data(self.rng(salt), shape, self.dtype, kind)


@dataclass(frozen=True)
class PlaneCase(BinCase):
    """The leading fields of a case whose parameters all follow the input's (global and
    GeM pooling); subclasses add theirs after these."""

    spatial: Tuple[int, ...]
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3


def with_scale(f: Callable[..., Any], a: np.ndarray, *args: Any, **kw: Any) -> Tuple[Any, Any]:
    """(f(a, ...), f(|a|, ...)): a reference result and the scale of its rounding errors
    (the same reduction of the |terms|)."""
    return f(a, *args, **kw), f(np.abs(a), *args, **kw)


# --------------------------------------------------------------------------- max / avg pairs


@dataclass(frozen=True)
class MaxAvgPair:
    """``{prefix}_max_pool``, ``{prefix}_avg_pool`` and their ``_backward``, of fastpool
    (looked up when called: a missing function fails the test) and of the reference.

    Its cases have ``kw()``, ``out_shape``, ``terms`` (the most taps in a bin), ``data``
    and ``grad(kind)`` (of the output's shape; the default kind is the suite's)."""

    prefix: str  # "global" or "adaptive"

    def fn(self, op: str) -> Callable[..., Any]:
        return fp(f"{self.prefix}_{op}")

    def ref(self, op: str) -> Callable[..., Any]:
        return getattr(ref, f"{self.prefix}_{op}")

    def ref_max(self, case: Any, kind: str):
        return cached((self.prefix, "max", case.id, kind), lambda: self.ref("max_pool")(case.data(kind), **case.kw()))

    def ref_avg(self, case: Any, kind: str):
        return cached((self.prefix, "avg", case.id, kind),
                      lambda: with_scale(self.ref("avg_pool"), case.data(kind), **case.kw()))


def check_forward(pair: MaxAvgPair, case: Any, kinds=("normal", "ints", "special")) -> None:
    max_pool, avg_pool = pair.fn("max_pool"), pair.fn("avg_pool")
    for kind in kinds:
        x = case.data(kind)
        e_y, e_i = pair.ref_max(case, kind)
        y, idx = max_pool(x, return_indices=True, **case.kw())
        assert y.shape == idx.shape == case.out_shape and idx.dtype == np.int64
        assert_max_equal(y, e_y, f"max {kind}")
        np.testing.assert_array_equal(idx, e_i, err_msg=f"indices {kind}")
        assert_max_equal(max_pool(x, **case.kw()), e_y, f"max {kind} without indices")
        e_a, scale = pair.ref_avg(case, kind)
        rtol = RTOL[np.dtype(case.dtype)] if kind == "ints" else sum_rtol(case.dtype, case.terms)
        assert_close(avg_pool(x, **case.kw()), e_a, scale, rtol, f"avg {kind}")


def check_backward(pair: MaxAvgPair, case: Any) -> None:
    x = case.data("ints")  # ties: the first maximum gets the gradient
    g = case.grad()
    kw = case.kw()
    expected = cached((pair.prefix, "max_bwd", case.id), lambda: pair.ref("max_pool_backward")(g, x, **kw))
    gx = pair.fn("max_pool_backward")(g, x, **kw)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    assert_max_equal(gx, expected, "max backward")
    _, idx = pair.ref_max(case, "ints")
    assert_max_equal(pair.fn("max_pool_backward")(g, x, indices=idx, **kw), expected, "max backward with indices")
    e_avg, scale = cached((pair.prefix, "avg_bwd", case.id),
                          lambda: with_scale(pair.ref("avg_pool_backward"), g, x.shape, **kw))
    ga = pair.fn("avg_pool_backward")(g, x.shape, **kw)
    assert ga.shape == x.shape and ga.dtype == x.dtype
    assert_close(ga, e_avg, scale, RTOL[np.dtype(case.dtype)], "avg backward")


def _all_outputs(pair: MaxAvgPair, case: Any) -> Dict[str, np.ndarray]:
    x, xs, g = case.data("normal"), case.data("special"), case.grad("normal")
    kw = case.kw()
    y, idx = pair.fn("max_pool")(x, return_indices=True, **kw)
    ys, idxs = pair.fn("max_pool")(xs, return_indices=True, **kw)
    return {"max": y, "idx": idx, "max special": ys, "idx special": idxs,
            "avg": pair.fn("avg_pool")(x, **kw),
            "avg special": pair.fn("avg_pool")(xs, **kw),  # NaN payloads too
            "max bwd": pair.fn("max_pool_backward")(g, x, **kw),
            "avg bwd": pair.fn("avg_pool_backward")(g, x.shape, **kw)}


def check_identical_on_every_backend(pair: MaxAvgPair, case: Any) -> None:
    """Every output bitwise identical on every SIMD path and thread count, and right."""
    base = identical_on_every_backend(lambda: _all_outputs(pair, case))
    x, g = case.data("normal"), case.grad("normal")
    kw = case.kw()
    rtol = RTOL[np.dtype(case.dtype)]
    e_y, e_i = pair.ref("max_pool")(x, **kw)
    assert_max_equal(base["max"], e_y)
    np.testing.assert_array_equal(base["idx"], e_i)
    assert_close(base["avg"], *with_scale(pair.ref("avg_pool"), x, **kw), sum_rtol(case.dtype, case.terms))
    assert_close(base["max bwd"], *with_scale(pair.ref("max_pool_backward"), g, x, **kw), rtol)
    assert_close(base["avg bwd"], *with_scale(pair.ref("avg_pool_backward"), g, x.shape, **kw), rtol)


def check_non_contiguous_inputs(pair: MaxAvgPair, case: Any) -> None:
    """Strided, reversed, read-only, unaligned and transposed-memory x, grads and indices."""
    max_pool, avg_pool = pair.fn("max_pool"), pair.fn("avg_pool")
    max_bwd, avg_bwd = pair.fn("max_pool_backward"), pair.fn("avg_pool_backward")
    x = case.data("ints")
    before = x.copy()
    g = case.grad("ints")
    kw = case.kw()
    e_y, e_i = pair.ref("max_pool")(x, **kw)
    e_a, scale = with_scale(pair.ref("avg_pool"), x, **kw)
    e_gm = pair.ref("max_pool_backward")(g, x, **kw)
    e_ga, g_scale = with_scale(pair.ref("avg_pool_backward"), g, x.shape, **kw)
    rtol = RTOL[np.dtype(case.dtype)]
    for name, xv in views(x):
        y, idx = max_pool(xv, return_indices=True, **kw)
        assert_max_equal(y, e_y, name)
        np.testing.assert_array_equal(idx, e_i, err_msg=name)
        assert_close(avg_pool(xv, **kw), e_a, scale, rtol, name)
        assert_max_equal(max_bwd(g, xv, **kw), e_gm, name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        assert_max_equal(max_bwd(gv, x, **kw), e_gm, f"grad {name}")
        assert_max_equal(max_bwd(gv, x, indices=e_i, **kw), e_gm, f"grad {name}")
        assert_close(avg_bwd(gv, x.shape, **kw), e_ga, g_scale, rtol, f"grad {name}")
    for name, iv in views(e_i):
        assert_max_equal(max_bwd(g, x, indices=iv, **kw), e_gm, f"indices {name}")
    assert_max_equal(max_bwd(np.asfortranarray(g), x, **kw), e_gm, "grad fortran")
    xv = transposed_memory(x, case.layout)
    np.testing.assert_array_equal(xv, x)
    y, idx = max_pool(xv, return_indices=True, **kw)
    assert_max_equal(y, e_y, "transposed memory")
    np.testing.assert_array_equal(idx, e_i)
    assert_close(avg_pool(xv, **kw), e_a, scale, rtol, "transposed memory")
    assert_max_equal(max_bwd(g, xv, **kw), e_gm, "transposed memory")
    out = np.full(e_y.shape, np.nan, case.dtype)
    assert max_pool(xv, out=out, **kw) is out
    assert_max_equal(out, e_y, "transposed memory, out=")


def check_out_argument(pair: MaxAvgPair, case: Any) -> None:
    """``out=`` (starting as NaN) is written in full and returned, forward and backward."""
    max_pool, avg_pool = pair.fn("max_pool"), pair.fn("avg_pool")
    max_bwd, avg_bwd = pair.fn("max_pool_backward"), pair.fn("avg_pool_backward")
    x, g = case.data("normal"), case.grad()
    kw = case.kw()
    e_y, e_i = pair.ref_max(case, "normal")
    out = np.full(case.out_shape, np.nan, case.dtype)
    assert max_pool(x, out=out, **kw) is out
    assert_max_equal(out, e_y)
    out = np.full(case.out_shape, np.nan, case.dtype)
    y, idx = max_pool(x, return_indices=True, out=out, **kw)
    assert y is out
    assert_max_equal(out, e_y)
    np.testing.assert_array_equal(idx, e_i)
    out = np.full(case.out_shape, np.nan, case.dtype)
    assert avg_pool(x, out=out, **kw) is out
    e_a, scale = pair.ref_avg(case, "normal")
    assert_close(out, e_a, scale, sum_rtol(case.dtype, case.terms))
    gout = np.full(x.shape, np.nan, case.dtype)
    assert max_bwd(g, x, out=gout, **kw) is gout
    assert_max_equal(gout, pair.ref("max_pool_backward")(g, x, **kw))
    gout = np.full(x.shape, np.nan, case.dtype)
    assert avg_bwd(g, x.shape, out=gout, **kw) is gout
    assert_close(gout, *with_scale(pair.ref("avg_pool_backward"), g, x.shape, **kw), RTOL[np.dtype(case.dtype)])


def check_numerical_gradient(pair: MaxAvgPair, case: Any, rng: np.random.Generator) -> None:
    """Central differences of sum(g * pool(x)) on distinct, spaced float64 inputs (no
    argmax changes within the step)."""
    x = distinct_values(rng, case.shape)
    g = rng.standard_normal(case.out_shape)
    kw = case.kw()
    expected = numerical_gradient(lambda v: pair.fn("max_pool")(v, **kw), x, g)
    np.testing.assert_allclose(pair.fn("max_pool_backward")(g, x, **kw), expected, rtol=0, atol=1e-8)
    expected = numerical_gradient(lambda v: pair.fn("avg_pool")(v, **kw), x, g)
    np.testing.assert_allclose(pair.fn("avg_pool_backward")(g, x.shape, **kw), expected, rtol=0, atol=1e-8)
