"""Plain-NumPy reference implementations of fastpool's max and average pooling.

This module is the ground truth of the test suite. It is written from
``shared/spec/operators.md`` alone and shares no code with fastpool: geometry,
padding forms and layouts are parsed here again, on purpose.

Method, for every operator and spatial rank 1, 2 or 3:

1. bring the input to channels_first with a batch axis, (N, C, *spatial);
2. pad each spatial axis (``-inf`` for max, ``0`` for avg) far enough that every
   window, including a ceil-mode overhang, lies inside the padded array;
3. ``sliding_window_view`` + strided slicing gives every window as an array of shape
   (N, C, *out, *kernel);
4. reduce: avg sums the taps and divides by the divisor of each window; max scans the
   taps one by one in row-major window order, skipping taps outside the input, and
   takes a tap if ``v > best or isnan(v)`` (first maximum wins ties, the index lands on
   the last NaN, an all ``-inf`` window reports its first real tap).

The functions take the same keyword arguments as the fastpool functions they check.
Sums are done in float64 and the results cast to the input's dtype.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ----------------------------------------------------------------------------- geometry


def same_padding(in_size: int, kernel: int, stride: int, dilation: int = 1,
                 lower: bool = False) -> Tuple[int, int]:
    """(before, after) pads of "same" (extra pad after) or "same_lower" (extra pad first)."""
    out = -(-in_size // stride)  # ceil(I / s)
    total = max(0, (out - 1) * stride + dilation * (kernel - 1) + 1 - in_size)
    before = total - total // 2 if lower else total // 2
    return before, total - before


def output_size(in_size: int, kernel: int, stride: int, dilation: int = 1,
                pad_before: int = 0, pad_after: int = 0, ceil_mode: bool = False) -> int:
    """Output size along one axis; ValueError if no window fits."""
    room = in_size + pad_before + pad_after - dilation * (kernel - 1) - 1
    if room < 0:
        raise ValueError("kernel_size (dilated) exceeds the padded input")
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= in_size + pad_before:  # last window starts in the right padding
        out -= 1
    return out


def tap_positions(o: np.ndarray, kernel: int, stride: int, dilation: int,
                  pad_before: int) -> np.ndarray:
    """Input positions of the taps of windows ``o``: shape (len(o), kernel)."""
    return o[:, None] * stride - pad_before + np.arange(kernel)[None, :] * dilation


@dataclass(frozen=True)
class Geometry:
    in_sizes: Tuple[int, ...]
    kernel: Tuple[int, ...]
    stride: Tuple[int, ...]
    dilation: Tuple[int, ...]
    pads: Tuple[Tuple[int, int], ...]
    ceil_mode: bool
    out_sizes: Tuple[int, ...]
    is_same: bool  # padding was "same" / "same_lower"

    @property
    def rank(self) -> int:
        return len(self.in_sizes)

    def positions(self, axis: int) -> np.ndarray:
        """(out, kernel) input positions of every tap along ``axis``."""
        return tap_positions(np.arange(self.out_sizes[axis]), self.kernel[axis],
                             self.stride[axis], self.dilation[axis], self.pads[axis][0])


def _per_axis(value: Any, rank: int) -> Tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise ValueError(f"expected {rank} values, got {value}")
    return value


def _pads(padding: Any, in_sizes, kernel, stride, dilation) -> Tuple[tuple, bool]:
    rank = len(in_sizes)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * rank, False
        if padding in ("same", "same_lower"):
            lower = padding == "same_lower"
            return tuple(same_padding(in_sizes[a], kernel[a], stride[a], dilation[a], lower)
                         for a in range(rank)), True
        raise ValueError(f"unknown padding {padding!r}")
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * rank, False
    if len(padding) != rank:
        raise ValueError(f"expected {rank} paddings, got {padding}")
    pads = tuple((int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1]))
                 for p in padding)
    return pads, False


def make_geometry(in_sizes: Sequence[int], kernel_size: Any, stride: Any = None,
                  padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False) -> Geometry:
    """Normalise the user's forms; ValueError for a geometry the spec forbids."""
    in_sizes = tuple(int(i) for i in in_sizes)
    rank = len(in_sizes)
    kernel = _per_axis(kernel_size, rank)
    strides = kernel if stride is None else _per_axis(stride, rank)
    dil = _per_axis(dilation, rank)
    pads, is_same = _pads(padding, in_sizes, kernel, strides, dil)
    if min(kernel + strides + dil) < 1 or min(min(p) for p in pads) < 0:
        raise ValueError("kernel, stride, dilation must be >= 1 and padding >= 0")
    out = tuple(output_size(in_sizes[a], kernel[a], strides[a], dil[a], pads[a][0], pads[a][1],
                            ceil_mode) for a in range(rank))
    geom = Geometry(in_sizes, kernel, strides, dil, pads, bool(ceil_mode), out, is_same)
    for a in range(rank):
        pos = geom.positions(a)
        if not ((pos >= 0) & (pos < in_sizes[a])).any(axis=1).all():
            raise ValueError("a window lies entirely in the padding")
    return geom


# ------------------------------------------------------------------------------ layouts


def _to_ncs(x: np.ndarray, rank: int, layout: str) -> Tuple[np.ndarray, bool]:
    """(N, C, *spatial) view of x, and whether x was batched."""
    if layout not in ("channels_first", "channels_last"):
        raise ValueError(layout)
    batched = x.ndim == rank + 2
    if not batched and x.ndim != rank + 1:
        raise ValueError(f"x must have {rank + 1} or {rank + 2} dims, got {x.ndim}")
    if not batched:
        x = x[None]
    if layout == "channels_last":
        x = np.moveaxis(x, -1, 1)
    return x, batched


def _from_ncs(y: np.ndarray, batched: bool, layout: str) -> np.ndarray:
    if layout == "channels_last":
        y = np.moveaxis(y, 1, -1)
    if not batched:
        y = y[0]
    return np.ascontiguousarray(y)


def _rank(kernel_size: Any, ndim: int) -> int:
    if isinstance(kernel_size, (int, np.integer)):
        return ndim - 2
    return len(kernel_size)


# ------------------------------------------------------------------------------ windows


def _padded(x: np.ndarray, geom: Geometry, fill: float) -> np.ndarray:
    """x (N, C, *spatial) padded so that every window of ``geom`` fits."""
    widths = [(0, 0), (0, 0)]
    for a in range(geom.rank):
        before = geom.pads[a][0]
        needed = (geom.out_sizes[a] - 1) * geom.stride[a] + geom.dilation[a] * (geom.kernel[a] - 1) + 1
        widths.append((before, max(0, needed - before - geom.in_sizes[a])))
    return np.pad(x, widths, constant_values=fill)


def _windows(xp: np.ndarray, geom: Geometry) -> np.ndarray:
    """(N, C, *out, K): the taps of every window in row-major window order."""
    spans = tuple(d * (k - 1) + 1 for k, d in zip(geom.kernel, geom.dilation))
    v = sliding_window_view(xp, spans, axis=tuple(range(2, 2 + geom.rank)))
    pick = (slice(None), slice(None))
    pick += tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(geom.out_sizes, geom.stride))
    pick += tuple(slice(None, None, d) for d in geom.dilation)
    v = v[pick]
    return v.reshape(v.shape[:2 + geom.rank] + (-1,))


def _tap_tables(geom: Geometry) -> Tuple[np.ndarray, np.ndarray]:
    """valid[*out, K]: the tap reads the input; flat[*out, K]: its flat spatial index."""
    r = geom.rank
    shape = geom.out_sizes + geom.kernel
    valid = np.ones(shape, dtype=bool)
    flat = np.zeros(shape, dtype=np.int64)
    plane_stride = 1
    for a in reversed(range(r)):
        pos = geom.positions(a)
        bshape = [1] * (2 * r)
        bshape[a], bshape[r + a] = pos.shape
        pos = pos.reshape(bshape)
        valid &= (pos >= 0) & (pos < geom.in_sizes[a])
        flat += pos * plane_stride
        plane_stride *= geom.in_sizes[a]
    k = int(np.prod(geom.kernel))
    return valid.reshape(geom.out_sizes + (k,)), flat.reshape(geom.out_sizes + (k,))


def _divisors(geom: Geometry, count_include_pad: bool, divisor_override: Optional[int]) -> np.ndarray:
    """D of every window, shape out_sizes."""
    if divisor_override is not None:
        return np.full(geom.out_sizes, float(divisor_override))
    d = np.ones((), dtype=np.float64)
    for a in range(geom.rank):
        pos = geom.positions(a)
        lo, hi = 0, geom.in_sizes[a]
        if count_include_pad:  # the padded extent; the ceil-mode overhang is not counted
            lo, hi = -geom.pads[a][0], geom.in_sizes[a] + geom.pads[a][1]
        count = ((pos >= lo) & (pos < hi)).sum(axis=1).astype(np.float64)
        d = np.multiply.outer(d, count)
    return d


# ------------------------------------------------------------------------------ max


def max_pool(x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             layout="channels_first") -> Tuple[np.ndarray, np.ndarray]:
    """Reference max pooling: returns (y, indices), indices int64 flat over each plane."""
    x = np.asarray(x)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    win = _windows(_padded(xc, geom, -np.inf), geom)  # (N, C, *out, K)
    valid, flat = _tap_tables(geom)  # (*out, K)

    first_valid = np.argmax(valid, axis=-1)[..., None]
    best = np.full(win.shape[:-1], -np.inf, dtype=x.dtype)
    index = np.broadcast_to(np.take_along_axis(flat, first_valid, axis=-1)[..., 0], best.shape)
    for t in range(win.shape[-1]):  # the scan, in row-major window order
        v = win[..., t]
        take = valid[..., t] & ((v > best) | np.isnan(v))
        best = np.where(take, v, best)
        index = np.where(take, flat[..., t], index)
    return _from_ncs(best, batched, layout), _from_ncs(index.astype(np.int64), batched, layout)


def max_pool_backward(grad_output: np.ndarray, x: np.ndarray, kernel_size, stride=None, padding=0,
                      dilation=1, ceil_mode=False, indices=None,
                      layout="channels_first") -> np.ndarray:
    """Reference max backward: grad_x[argmax] += grad_output (argmax from x if no indices)."""
    x = np.asarray(x)
    if indices is None:
        _, indices = max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    ic, _ = _to_ncs(np.asarray(indices), rank, layout)
    n, c = xc.shape[:2]
    plane = int(np.prod(xc.shape[2:]))
    gx = np.zeros((n * c, plane), dtype=np.float64)
    rows = np.arange(n * c)[:, None]
    np.add.at(gx, (rows, ic.reshape(n * c, -1)), gc.reshape(n * c, -1).astype(np.float64))
    return _from_ncs(gx.reshape(xc.shape).astype(x.dtype), batched, layout)


# ------------------------------------------------------------------------------ avg


def _include_pad(count_include_pad: Optional[bool], geom: Geometry) -> bool:
    return (not geom.is_same) if count_include_pad is None else bool(count_include_pad)


def avg_pool(x: np.ndarray, kernel_size, stride=None, padding=0, ceil_mode=False,
             count_include_pad=None, divisor_override=None, dilation=1,
             layout="channels_first") -> np.ndarray:
    """Reference average pooling (sums in float64)."""
    x = np.asarray(x)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    win = _windows(_padded(xc.astype(np.float64), geom, 0.0), geom)
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN, as in any sum
        total = win.sum(axis=-1)
    divisor = _divisors(geom, _include_pad(count_include_pad, geom), divisor_override)
    y = total / divisor
    return _from_ncs(y.astype(x.dtype), batched, layout)


def avg_pool_backward(grad_output: np.ndarray, input_shape: Sequence[int], kernel_size, stride=None,
                      padding=0, ceil_mode=False, count_include_pad=None, divisor_override=None,
                      dilation=1, layout="channels_first") -> np.ndarray:
    """Reference avg backward: every tap of window o inside the input gets grad[o] / D(o)."""
    g = np.asarray(grad_output)
    input_shape = tuple(input_shape)
    rank = _rank(kernel_size, len(input_shape))
    shape_c, batched = _to_ncs(np.empty(input_shape, dtype=np.bool_), rank, layout)
    gc, _ = _to_ncs(g, rank, layout)
    geom = make_geometry(shape_c.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    share = gc.astype(np.float64) / _divisors(geom, _include_pad(count_include_pad, geom),
                                               divisor_override)
    gp = _padded(np.zeros(shape_c.shape), geom, 0.0)
    for taps in itertools.product(*(range(k) for k in geom.kernel)):
        # one tap of every window at once: distinct positions, a strided slice
        pick = (slice(None), slice(None)) + tuple(
            slice(j * d, j * d + (o - 1) * s + 1, s)
            for j, d, o, s in zip(taps, geom.dilation, geom.out_sizes, geom.stride))
        gp[pick] += share
    crop = (slice(None), slice(None)) + tuple(
        slice(p[0], p[0] + i) for p, i in zip(geom.pads, geom.in_sizes))
    return _from_ncs(gp[crop].astype(g.dtype), batched, layout)
