"""Argument normalisation shared by every operator.

Turns the user's forms (ints, tuples, per-side pairs, "same"/"valid") into the
explicit per-axis numbers the C++ geometry takes, and checks arrays. Every error
names the argument and the value it got.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _core

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
LAYOUTS = ("channels_first", "channels_last")
_DTYPE_NAMES = "float32, float64"
# Outputs from this size on come from the compiled buffer pool (see _core.empty).
_POOLED_BYTES = 1 << 20
_MAX_SIZE = 1 << 40  # the C++ geometry's bound on kernel, stride, dilation, padding


def _as_int(value: Any, name: str) -> int:
    """An integer (or an object with __index__, such as a 0-d integer array); bools
    are not sizes."""
    if type(value) is int:  # the common case, first (bool is a subclass, not this type)
        return value
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray) and value.dtype == np.bool_):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def _is_sequence(value: Any) -> bool:
    """A list/tuple/1-d array of per-axis values (not a string, not a 0-d array)."""
    if type(value) is tuple or type(value) is list:  # the common case, without the ABC check
        return True
    if isinstance(value, (str, bytes)):
        return False
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return isinstance(value, Sequence)


def int_tuple(value: Any, rank: int, name: str, minimum: int) -> Tuple[int, ...]:
    """An int or a sequence of ``rank`` ints, each >= ``minimum``."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a tuple of {rank} ints, got {value!r}")
    if _is_sequence(value):
        items = tuple(value)
        if len(items) != rank:
            raise ValueError(f"{name} must have {rank} entries (one per spatial axis), got {value!r}")
        out = tuple(_as_int(v, name) for v in items)
    else:
        out = (_as_int(value, name),) * rank
    for v in out:
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
        if v > _MAX_SIZE:
            raise ValueError(f"{name} must be <= 2**40, got {value!r}")
    return out


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def shape_tuple(value: Any, name: str) -> Tuple[int, ...]:
    """A shape given as a tuple/list of ints (each in [0, 2**62])."""
    try:
        if not _is_sequence(value):
            raise TypeError
        out = tuple(_as_int(v, name) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {value!r}") from None
    for v in out:
        if v < 0 or v > (1 << 62):
            raise ValueError(f"{name} entries must be in [0, 2**62], got {value!r}")
    return out


def check_seed(seed: Any, bound: Optional[int] = 2**64) -> Any:
    """None, a numpy.random.Generator, or an int in [0, bound) (returned as int; bound
    None: any non-negative int, as numpy.random.default_rng takes)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be None, an int or a numpy.random.Generator, got {seed!r}")
    if int(seed) < 0 or (bound is not None and int(seed) >= bound):
        raise ValueError(f"seed must be in [0, 2**64), got {seed!r}" if bound == 2**64 else
                         f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def draw_seed(seed: Any) -> int:
    """A 64-bit seed from an int, a Generator (one draw from it) or None (fresh entropy)."""
    seed = check_seed(seed)
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**64, dtype=np.uint64))
    return seed


def check_layout(layout: Any) -> bool:
    """Returns True for channels_last."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'channels_first' or 'channels_last', got {layout!r}")
    return layout == "channels_last"


def check_float_array(x: Any, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)) or np.isscalar(x):
            x = np.asarray(x)
        else:
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype}; supported dtypes are {_DTYPE_NAMES}")
    return x


def contiguous(x: np.ndarray) -> np.ndarray:
    """The kernels read C-contiguous, aligned memory; anything else is copied once."""
    return x if x.flags.c_contiguous and x.flags.aligned else np.require(x, requirements="CA")


class Layout:
    """Where batch, channels and spatial axes sit in an array of a given rank."""

    def __init__(self, ndim: int, rank: int, channels_last: bool, name: str = "x") -> None:
        if ndim not in (rank + 1, rank + 2):
            raise ValueError(
                f"{name} must have {rank + 1} (unbatched) or {rank + 2} (batched) dimensions "
                f"for {rank}D pooling, got {ndim}"
            )
        self.rank = rank
        self.batched = ndim == rank + 2
        self.channels_last = channels_last

    def split(self, shape: Tuple[int, ...]) -> Tuple[int, int, Tuple[int, ...]]:
        """(batch, channels, spatial sizes) of an array shape."""
        if not self.batched:
            shape = (1,) + tuple(shape)
        if self.channels_last:
            return shape[0], shape[-1], tuple(shape[1:-1])
        return shape[0], shape[1], tuple(shape[2:])

    def join(self, batch: int, channels: int, spatial: Sequence[int]) -> Tuple[int, ...]:
        """Array shape for (batch, channels, spatial), dropping the batch if unbatched."""
        spatial = tuple(spatial)
        shape = (batch,) + (spatial + (channels,) if self.channels_last else (channels,) + spatial)
        return shape if self.batched else shape[1:]

    def canonical(self, batch: int, channels: int, spatial: Sequence[int]) -> Tuple[int, ...]:
        """The rank-3 shape the kernels take: (N, C, D, H, W) or (N, D, H, W, C)."""
        sp = (1,) * (3 - len(spatial)) + tuple(spatial)
        return (batch,) + (sp + (channels,) if self.channels_last else (channels,) + sp)


def resolve_padding(
    padding: Any,
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> Tuple[Tuple[Tuple[int, int], ...], bool]:
    """Per-axis (before, after) pads, and whether the form was "same"/"same_lower"."""
    rank = len(spatial)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * rank, False
        if mode in ("same", "same_upper", "same_lower"):
            lower = mode == "same_lower"
            try:
                pads = tuple(
                    _core.same_padding(spatial[i], kernel[i], stride[i], dilation[i], lower)
                    for i in range(rank)
                )
            except ValueError as e:
                raise ValueError(f"padding={padding!r} for spatial size {tuple(spatial)}: {e}") from None
            return pads, True
        raise ValueError(
            f"padding must be an int, a tuple, per-side pairs, 'valid', 'same' or 'same_lower', got {padding!r}"
        )
    if _is_sequence(padding) and len(padding) == rank and any(_is_sequence(p) for p in padding):
        pairs = []
        for p in padding:
            if _is_sequence(p):
                if len(p) != 2:
                    raise ValueError(f"padding pairs must be (before, after), got {padding!r}")
                b, a = _as_int(p[0], "padding"), _as_int(p[1], "padding")
            else:
                b = a = _as_int(p, "padding")
            if b < 0 or a < 0:
                raise ValueError(f"padding must be >= 0, got {padding!r}")
            if b > _MAX_SIZE or a > _MAX_SIZE:
                raise ValueError(f"padding must be <= 2**40, got {padding!r}")
            pairs.append((b, a))
        return tuple(pairs), False
    pads = int_tuple(padding, rank, "padding", 0)
    return tuple((p, p) for p in pads), False


def geometry(
    shape: Tuple[int, ...],
    layout: Layout,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> Tuple["_core.Geometry", bool]:
    """Builds the C++ geometry (which re-checks every invariant) for an input shape."""
    rank = layout.rank
    batch, channels, spatial = layout.split(shape)
    if any(s == 0 for s in shape):
        raise ValueError(f"input has a zero-size dimension: shape {tuple(shape)}")
    kernel = int_tuple(kernel_size, rank, "kernel_size", 1)
    strides = kernel if stride is None else int_tuple(stride, rank, "stride", 1)
    dil = int_tuple(dilation, rank, "dilation", 1)
    check_bool(ceil_mode, "ceil_mode")
    pads, is_same = resolve_padding(padding, spatial, kernel, strides, dil)
    pad3 = ((0, 0),) * (3 - rank) + pads
    fill = (1,) * (3 - rank)
    try:
        geom = _core.Geometry(
            batch,
            channels,
            fill + spatial,
            fill + kernel,
            fill + strides,
            fill + dil,
            tuple(p[0] for p in pad3),
            tuple(p[1] for p in pad3),
            bool(ceil_mode),
            layout.channels_last,
        )
    except ValueError as e:
        raise ValueError(f"invalid pooling geometry for input shape {tuple(shape)}: {e}") from None
    return geom, is_same


def output_array(
    out: Optional[np.ndarray], shape: Tuple[int, ...], dtype: np.dtype, name: str = "out"
) -> np.ndarray:
    """A fresh output, or the user's ``out`` after checking it fits exactly."""
    if out is None:
        if math.prod(shape) * dtype.itemsize >= _POOLED_BYTES:
            return _core.empty(shape, dtype)  # reused memory: no page faults on first touch
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.aligned:
        raise ValueError(f"{name} must be aligned to its dtype")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def check_no_overlap(out: np.ndarray, name: str, *inputs: np.ndarray) -> None:
    for a in inputs:
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{name} overlaps an input array")
