"""Plumbing shared by the bin reductions (global, adaptive, pyramid, strip, LP, GeM).

Each operator describes its outputs as *levels*: a grid of bins (``_core.Bins``) and
the array its values go to, seen as (N, C, D, H, W) whatever the memory layout (a
pyramid level is a strided view into one concatenated result). One kernel call
computes every level in one pass over the input.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._config import get_num_threads
from ._validate import (
    Layout,
    _as_int,
    _is_sequence,
    check_float_array,
)

_MAX_SIZE = 1 << 40

Level = Tuple["_core.Bins", np.ndarray, Optional[np.ndarray]]


def pad3(sizes: Sequence[int]) -> Tuple[int, int, int]:
    """Spatial sizes as the kernels' rank-3 (depth, height, width), leading 1s."""
    t = tuple(sizes) if type(sizes) is not tuple else sizes
    if all(type(s) is int for s in t):
        return (1,) * (3 - len(t)) + t  # type: ignore[return-value]
    return (1,) * (3 - len(t)) + tuple(int(s) for s in t)  # type: ignore[return-value]


def logical(a: np.ndarray, channels_last: bool) -> np.ndarray:
    """A canonical (N, C, D, H, W) / (N, D, H, W, C) array seen as (N, C, D, H, W)."""
    return a.transpose(0, 4, 1, 2, 3) if channels_last else a


def readable(a: np.ndarray) -> np.ndarray:
    """Level inputs may have any non-negative, aligned strides; others are copied."""
    if a.flags.aligned and all(s >= 0 for s in a.strides):
        return a
    return np.require(a, requirements="CA")


def check_rank(rank: Any, ndim: int, name: str = "rank") -> int:
    """Spatial rank: given, or x.ndim - 2 (batched input)."""
    if rank is None:
        rank = ndim - 2
    else:
        rank = _as_int(rank, name)
    if rank not in (1, 2, 3):
        raise ValueError(f"{name} must be 1, 2 or 3 (the spatial rank; default x.ndim - 2), got {rank}")
    return rank


def spatial_split(shape: Tuple[int, ...], layout: Layout) -> Tuple[int, int, Tuple[int, ...]]:
    if any(s == 0 for s in shape):
        raise ValueError(f"input has a zero-size dimension: shape {tuple(shape)}")
    batch, channels, spatial = layout.split(shape)
    for s in shape:
        if s > _MAX_SIZE:
            raise ValueError(f"input sizes must be <= 2**40, got shape {tuple(shape)}")
    return batch, channels, spatial


def output_sizes(output_size: Any, spatial: Sequence[int], name: str = "output_size") -> Tuple[int, ...]:
    """An int or a per-axis tuple of ints >= 1 or None (None keeps the input size)."""
    rank = len(spatial)
    if isinstance(output_size, (str, bytes)):
        raise TypeError(f"{name} must be an int or a tuple of {rank} ints/None, got {output_size!r}")
    if _is_sequence(output_size):
        items = tuple(output_size)
        if len(items) != rank:
            raise ValueError(f"{name} must have {rank} entries (one per spatial axis), got {output_size!r}")
    else:
        if output_size is None:
            raise TypeError(f"{name} must be an int or a tuple of {rank} ints/None, got None")
        items = (output_size,) * rank
    out = []
    for v, s in zip(items, spatial):
        if v is None:
            out.append(int(s))
            continue
        v = _as_int(v, name)
        if v < 1 or v > _MAX_SIZE:
            raise ValueError(f"{name} entries must be in [1, 2**40], got {output_size!r}")
        out.append(v)
    return tuple(out)


def rank_of_size(output_size: Any, ndim: int, name: str = "output_size") -> int:
    """Spatial rank of an adaptive call: len(output_size), or x.ndim - 2 for an int."""
    if _is_sequence(output_size):
        rank = len(output_size)
    else:
        rank = ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            f"spatial rank must be 1, 2 or 3 (len({name}), or x.ndim - 2 for an int {name}), got {rank}")
    return rank


def canonical(a: np.ndarray, layout: Layout, batch: int, channels: int, spatial: Sequence[int]) -> np.ndarray:
    return a.reshape(layout.canonical(batch, channels, spatial))


def _in_dtype(v: float, dtype: np.dtype) -> float:
    """v rounded to dtype (inf or 0 when it does not fit)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return float(np.asarray(v).astype(dtype))


def power_exponent(p: Any, channels: int, dtype: np.dtype, name: str = "p",
                   positive: bool = True) -> Tuple[float, Optional[np.ndarray], bool]:
    """(scalar value, per-channel values or None, whether given per channel) of a
    per-channel parameter: the power means' p (finite, > 0) or, with positive=False,
    mixed pooling's alpha (finite)."""
    kind = "positive float" if positive else "float"
    rule = "finite and > 0" if positive else "finite"

    def bad(a: np.ndarray) -> bool:
        return not np.all(np.isfinite(a)) or (positive and not np.all(a > 0))

    if isinstance(p, (bool, np.bool_, str, bytes)) or (isinstance(p, np.ndarray) and p.dtype.kind not in "iuf"):
        raise TypeError(f"{name} must be a {kind} or an array of {channels} {kind}s, got {p!r}")
    if np.ndim(p) == 0:
        try:
            v = float(p)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a {kind} or an array of {channels} {kind}s, got {p!r}") from None
        if bad(np.asarray(v)) or bad(np.asarray(_in_dtype(v, dtype))):
            raise ValueError(f"{name} must be {rule} in {np.dtype(dtype)}, got {p!r}")
        return v, None, False
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a {kind} or an array of {channels} {kind}s, got {p!r}") from None
    if arr.shape != (channels,):
        raise ValueError(f"{name} must be a scalar or have shape ({channels},) (one per channel), "
                         f"got shape {arr.shape}")
    if bad(arr):
        raise ValueError(f"{name} must be {rule} in every channel, got {p!r}")
    with np.errstate(over="ignore", under="ignore"):
        cast = arr.astype(dtype)
    if bad(cast):
        raise ValueError(f"{name} must be {rule} in {np.dtype(dtype)} in every channel, got {p!r}")
    if np.all(cast == cast[0]):  # one value: the scalar kernels (integer powers, p = 1)
        return float(cast[0]), None, True
    return float(cast[0]), np.ascontiguousarray(cast), True


def check_eps(eps: Any, dtype: np.dtype) -> float:
    """A positive float that stays positive and finite in the data's dtype."""
    if isinstance(eps, (bool, np.bool_, str, bytes)) or np.ndim(eps) != 0:
        raise TypeError(f"eps must be a positive float, got {eps!r}")
    try:
        v = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a positive float, got {eps!r}") from None
    cast = _in_dtype(v, dtype)
    if not np.isfinite(v) or v <= 0 or not np.isfinite(cast) or cast <= 0:
        raise ValueError(f"eps must be finite and > 0 in {np.dtype(dtype)}, got {eps!r}")
    return v


class Grid:
    """Output grid of one global/adaptive call: shapes in the user's terms."""

    def __init__(self, layout: Layout, shape: Tuple[int, ...], out_spatial: Tuple[int, ...],
                 global_keepdims: Optional[bool], bins: Optional["_core.Bins"] = None) -> None:
        self.layout = layout
        self.batch, self.channels, self.spatial = spatial_split(shape, layout)
        self.out_spatial = tuple(out_spatial)
        # adaptive bins unless given (the windows of LP / GeM pooling)
        self.bins = bins if bins is not None else _core.Bins.adaptive(pad3(self.spatial), pad3(self.out_spatial))
        if global_keepdims is False:  # (N, C): the same memory in either layout
            self.shape = (self.batch, self.channels) if layout.batched else (self.channels,)
        else:
            self.shape = layout.join(self.batch, self.channels, out_spatial)

    def level(self, a: np.ndarray) -> np.ndarray:
        """An output-shaped array seen as the kernels' (N, C, D, H, W)."""
        canon = a.reshape(self.layout.canonical(self.batch, self.channels, self.out_spatial))
        return logical(canon, self.layout.channels_last)

    def canon_in(self, a: np.ndarray) -> np.ndarray:
        return canonical(a, self.layout, self.batch, self.channels, self.spatial)


def forward(x_canon: np.ndarray, channels_last: bool, op: str, levels: List[Level], p: float = 1.0,
            p_channel: Optional[np.ndarray] = None, eps: float = 0.0, seed: int = 0) -> int:
    """-1, or 0 when a stochastic reduction met a value outside [0, inf) in a bin."""
    return _core.bin_forward(x_canon, channels_last, op, levels, p, p_channel, eps, seed, get_num_threads())


def backward(x_canon: Optional[np.ndarray], gx_canon: np.ndarray, channels_last: bool, op: str,
             levels: List[Level], p: float = 1.0, p_channel: Optional[np.ndarray] = None, eps: float = 0.0,
             grad_p: Optional[np.ndarray] = None, seed: int = 0) -> int:
    return _core.bin_backward(x_canon, gx_canon, channels_last, op, levels, p, p_channel, eps, seed, grad_p,
                              get_num_threads())


def check_grad(grad_output: Any, shape: Tuple[int, ...], dtype: np.dtype, name: str = "grad_output") -> np.ndarray:
    g = check_float_array(grad_output, name)
    if g.shape != tuple(shape):
        raise ValueError(f"{name} has shape {g.shape}, expected {tuple(shape)} (the forward output's)")
    if g.dtype != dtype:
        raise TypeError(f"{name} has dtype {g.dtype}, expected {dtype} (x's)")
    return g


def check_indices(indices: Any, shape: Tuple[int, ...]) -> np.ndarray:
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices has dtype {indices.dtype}, expected int64")
    if indices.shape != tuple(shape):
        raise ValueError(f"indices has shape {indices.shape}, expected {tuple(shape)}")
    return indices


def route_to_indices(g: np.ndarray, indices: np.ndarray, gx: np.ndarray, layout: "Layout",
                     out_spatial: Sequence[int], in_spatial: Sequence[int], skip_minus_one: bool = False) -> None:
    """gx = 0, then each element of g added at its flat in-plane position in indices
    (a C-contiguous int64 array shaped like g): the backward of an operator that
    returned argmax positions (stochastic, fractional max pooling, max-pooling dropout,
    whose -1 marks a dropped maximum: skip_minus_one)."""
    batch, channels, _ = layout.split(gx.shape)
    cl = layout.channels_last

    def planes(a: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
        size = int(np.prod(spatial))
        return a.reshape((batch, size, channels) if cl else (batch, channels, size))
    bad = _core.scatter_add(planes(g, out_spatial), planes(indices, out_spatial), planes(gx, in_spatial), cl,
                            skip_minus_one, get_num_threads())
    if bad >= 0:
        raise bad_index_error(indices, bad, int(np.prod(in_spatial)))


def weight_error(x: np.ndarray) -> ValueError:
    """The message for stochastic pooling's input holding a value that is no weight
    (the kernel reports that a window holds one; this finds the first such value)."""
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~((x >= 0) & (x < np.inf)))
    at = np.unravel_index(int(bad[0]), x.shape) if bad.size else ()
    value = x[at] if bad.size else "?"
    return ValueError(f"stochastic pooling needs x >= 0 and finite in every window (it draws with probability "
                      f"x / sum x, e.g. a ReLU's output); a window holds a value that is not: the first such "
                      f"value in x is x[{', '.join(map(str, at))}] = {value}")


def bad_index_error(indices_c: np.ndarray, pos: int, plane: int) -> ValueError:
    """The message for the first out-of-plane index, at memory offset pos of the
    C-contiguous indices array (the same flat position as in the user's array)."""
    return ValueError(f"indices holds {int(indices_c.reshape(-1)[pos])} at flat position {pos}, outside the "
                      f"spatial plane [0, {plane})")


__all__ = [
    "Grid",
    "Level",
    "backward",
    "canonical",
    "check_eps",
    "check_grad",
    "check_indices",
    "check_rank",
    "forward",
    "logical",
    "output_sizes",
    "pad3",
    "power_exponent",
    "rank_of_size",
    "readable",
    "route_to_indices",
    "spatial_split",
    "weight_error",
]
