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
from typing import Any, List, Optional, Sequence, Tuple

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


# ============================================================================ issue 3
# Global, adaptive, LP, GeM, spatial pyramid and strip pooling. Same method: channels_first
# with a batch axis, float64 arithmetic, results cast to the input's dtype. Global pooling
# is a window that covers the whole plane; adaptive bins are looped over in Python.


def _max_scan(vals: np.ndarray, flat: np.ndarray, valid: Optional[np.ndarray] = None):
    """Max over the last axis in order with the rule ``v > best or isnan(v)`` (first
    maximum, last NaN); ``flat`` (broadcastable to vals) gives each tap's plane index.
    Returns (best, index); taps with ``valid`` False are skipped."""
    flat = np.broadcast_to(flat, vals.shape)
    if valid is None:
        valid = np.ones(vals.shape[-1:], dtype=bool)
    valid = np.broadcast_to(valid, vals.shape)
    first = np.argmax(valid, axis=-1)[..., None]
    best = np.full(vals.shape[:-1], -np.inf, dtype=vals.dtype)
    index = np.take_along_axis(flat, first, axis=-1)[..., 0].copy()
    for t in range(vals.shape[-1]):
        v = vals[..., t]
        take = valid[..., t] & ((v > best) | np.isnan(v))
        best = np.where(take, v, best)
        index = np.where(take, flat[..., t], index)
    return best, index.astype(np.int64)


def _scatter_indices(gc: np.ndarray, ic: np.ndarray, shape_c: Tuple[int, ...]) -> np.ndarray:
    """float64 (N, C, *spatial) gradient: grad[n, c, idx[n, c, o]] += g[n, c, o]."""
    n, c = shape_c[:2]
    plane = int(np.prod(shape_c[2:]))
    gx = np.zeros((n * c, plane), dtype=np.float64)
    rows = np.arange(n * c)[:, None]
    np.add.at(gx, (rows, ic.reshape(n * c, -1)), gc.reshape(n * c, -1).astype(np.float64))
    return gx.reshape(shape_c)


def _shape_ncs(input_shape: Sequence[int], rank: int, layout: str) -> Tuple[Tuple[int, ...], bool]:
    """(N, C, *spatial) of an input shape, and whether it is batched."""
    xc, batched = _to_ncs(np.empty(tuple(int(s) for s in input_shape), dtype=np.bool_), rank, layout)
    return xc.shape, batched


# ------------------------------------------------------------------------------ global


def _global_rank(ndim: int, rank: Optional[int]) -> int:
    return ndim - 2 if rank is None else int(rank)


def _global_out(yc: np.ndarray, batched: bool, layout: str, keepdims: bool) -> np.ndarray:
    """yc is (N, C, 1, ..., 1): squeeze the spatial axes unless keepdims."""
    if not keepdims:
        yc = yc.reshape(yc.shape[:2])
        return np.ascontiguousarray(yc if batched else yc[0])
    return _from_ncs(yc, batched, layout)


def _global_in(g: np.ndarray, rank: int, batched: bool, layout: str, keepdims: bool) -> np.ndarray:
    """grad_output of a global pooling as (N, C, 1, ..., 1)."""
    g = np.asarray(g)
    if not keepdims:
        g = g if batched else g[None]
        return g.reshape(g.shape + (1,) * rank)
    return _to_ncs(g, rank, layout)[0]


def global_max_pool(x: np.ndarray, rank: Optional[int] = None, keepdims: bool = False,
                    layout: str = "channels_first") -> Tuple[np.ndarray, np.ndarray]:
    """Reference global max: (y, indices) over each (n, c) spatial plane."""
    x = np.asarray(x)
    rank = _global_rank(x.ndim, rank)
    xc, batched = _to_ncs(x, rank, layout)
    best, index = _max_scan(xc.reshape(xc.shape[:2] + (-1,)), np.arange(int(np.prod(xc.shape[2:]))))
    keep = xc.shape[:2] + (1,) * rank
    return (_global_out(best.reshape(keep), batched, layout, keepdims),
            _global_out(index.reshape(keep), batched, layout, keepdims))


def global_avg_pool(x: np.ndarray, rank: Optional[int] = None, keepdims: bool = False,
                    layout: str = "channels_first") -> np.ndarray:
    """Reference global average (float64 sum)."""
    x = np.asarray(x)
    rank = _global_rank(x.ndim, rank)
    xc, batched = _to_ncs(x, rank, layout)
    with np.errstate(invalid="ignore"):
        y = xc.astype(np.float64).reshape(xc.shape[:2] + (-1,)).mean(axis=-1)
    return _global_out(y.reshape(xc.shape[:2] + (1,) * rank).astype(x.dtype), batched, layout, keepdims)


def global_max_pool_backward(grad_output: np.ndarray, x: np.ndarray, rank: Optional[int] = None,
                             keepdims: bool = False, indices: Optional[np.ndarray] = None,
                             layout: str = "channels_first") -> np.ndarray:
    """Reference global max backward: the whole gradient goes to the argmax."""
    x = np.asarray(x)
    rank = _global_rank(x.ndim, rank)
    if indices is None:
        _, indices = global_max_pool(x, rank, keepdims, layout)
    xc, batched = _to_ncs(x, rank, layout)
    gc = _global_in(grad_output, rank, batched, layout, keepdims)
    ic = _global_in(indices, rank, batched, layout, keepdims)
    return _from_ncs(_scatter_indices(gc, ic, xc.shape).astype(x.dtype), batched, layout)


def global_avg_pool_backward(grad_output: np.ndarray, input_shape: Sequence[int],
                             rank: Optional[int] = None, keepdims: bool = False,
                             layout: str = "channels_first") -> np.ndarray:
    """Reference global avg backward: grad / plane size, broadcast over the plane."""
    g = np.asarray(grad_output)
    rank = _global_rank(len(input_shape), rank)
    shape_c, batched = _shape_ncs(input_shape, rank, layout)
    gc = _global_in(g, rank, batched, layout, keepdims).astype(np.float64)
    gx = np.broadcast_to(gc / float(np.prod(shape_c[2:])), shape_c)
    return _from_ncs(gx.astype(g.dtype), batched, layout)


# ------------------------------------------------------------------------------ adaptive


def adaptive_bins(in_size: int, out_size: int) -> List[Tuple[int, int]]:
    """PyTorch's rule: bin i covers [floor(i*I/O), ceil((i+1)*I/O))."""
    return [((i * in_size) // out_size, -(-((i + 1) * in_size) // out_size)) for i in range(out_size)]


def _adaptive_rank(output_size: Any, ndim: int, rank: Optional[int]) -> int:
    if rank is not None:
        return int(rank)
    if isinstance(output_size, (int, np.integer)):
        return ndim - 2
    return len(output_size)


def _adaptive_sizes(output_size: Any, in_sizes: Sequence[int]) -> Tuple[int, ...]:
    rank = len(in_sizes)
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size,) * rank
    output_size = tuple(output_size)
    if len(output_size) != rank:
        raise ValueError(f"output_size {output_size} for {rank} spatial axes")
    sizes = tuple(int(i) if o is None else int(o) for o, i in zip(output_size, in_sizes))
    if min(sizes) < 1:
        raise ValueError("output_size must be >= 1")
    return sizes


def _bin_table(in_sizes: Sequence[int], out_sizes: Sequence[int]):
    """[(out position tuple, tuple of slices, flat plane indices of the bin's taps)]."""
    per_axis = [adaptive_bins(i, o) for i, o in zip(in_sizes, out_sizes)]
    table = []
    for pos in itertools.product(*(range(o) for o in out_sizes)):
        spans = [per_axis[a][p] for a, p in enumerate(pos)]
        slices = tuple(slice(s, e) for s, e in spans)
        grids = np.meshgrid(*(np.arange(s, e) for s, e in spans), indexing="ij")
        flat = np.ravel_multi_index(tuple(g.reshape(-1) for g in grids), tuple(in_sizes))
        table.append((pos, slices, flat))
    return table


def adaptive_max_pool(x: np.ndarray, output_size: Any, layout: str = "channels_first",
                      rank: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Reference adaptive max: (y, indices)."""
    x = np.asarray(x)
    rank = _adaptive_rank(output_size, x.ndim, rank)
    xc, batched = _to_ncs(x, rank, layout)
    in_sizes = xc.shape[2:]
    out_sizes = _adaptive_sizes(output_size, in_sizes)
    y = np.empty(xc.shape[:2] + out_sizes, dtype=x.dtype)
    idx = np.empty(xc.shape[:2] + out_sizes, dtype=np.int64)
    for pos, slices, flat in _bin_table(in_sizes, out_sizes):
        taps = xc[(slice(None), slice(None)) + slices].reshape(xc.shape[:2] + (-1,))
        best, index = _max_scan(taps, flat)
        y[(slice(None), slice(None)) + pos] = best
        idx[(slice(None), slice(None)) + pos] = index
    return _from_ncs(y, batched, layout), _from_ncs(idx, batched, layout)


def adaptive_avg_pool(x: np.ndarray, output_size: Any, layout: str = "channels_first",
                      rank: Optional[int] = None) -> np.ndarray:
    """Reference adaptive average (float64 sums)."""
    x = np.asarray(x)
    rank = _adaptive_rank(output_size, x.ndim, rank)
    xc, batched = _to_ncs(x, rank, layout)
    in_sizes = xc.shape[2:]
    out_sizes = _adaptive_sizes(output_size, in_sizes)
    x64 = xc.astype(np.float64)
    y = np.empty(xc.shape[:2] + out_sizes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        for pos, slices, flat in _bin_table(in_sizes, out_sizes):
            taps = x64[(slice(None), slice(None)) + slices].reshape(xc.shape[:2] + (-1,))
            y[(slice(None), slice(None)) + pos] = taps.sum(axis=-1) / taps.shape[-1]
    return _from_ncs(y.astype(x.dtype), batched, layout)


def adaptive_max_pool_backward(grad_output: np.ndarray, x: np.ndarray, output_size: Any,
                               indices: Optional[np.ndarray] = None, layout: str = "channels_first",
                               rank: Optional[int] = None) -> np.ndarray:
    """Reference adaptive max backward: grad_x[argmax] += g (overlapping bins accumulate)."""
    x = np.asarray(x)
    rank = _adaptive_rank(output_size, x.ndim, rank)
    if indices is None:
        _, indices = adaptive_max_pool(x, output_size, layout, rank)
    xc, batched = _to_ncs(x, rank, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    ic, _ = _to_ncs(np.asarray(indices), rank, layout)
    return _from_ncs(_scatter_indices(gc, ic, xc.shape).astype(x.dtype), batched, layout)


def adaptive_avg_pool_backward(grad_output: np.ndarray, input_shape: Sequence[int], output_size: Any,
                               layout: str = "channels_first", rank: Optional[int] = None) -> np.ndarray:
    """Reference adaptive avg backward: each bin's taps get g / (bin size)."""
    g = np.asarray(grad_output)
    rank = _adaptive_rank(output_size, len(input_shape), rank)
    shape_c, batched = _shape_ncs(input_shape, rank, layout)
    gc, _ = _to_ncs(g, rank, layout)
    gc = gc.astype(np.float64)
    in_sizes = shape_c[2:]
    out_sizes = _adaptive_sizes(output_size, in_sizes)
    gx = np.zeros(shape_c, dtype=np.float64)
    for pos, slices, flat in _bin_table(in_sizes, out_sizes):
        share = gc[(slice(None), slice(None)) + pos] / flat.size
        gx[(slice(None), slice(None)) + slices] += share.reshape(share.shape + (1,) * rank)
    return _from_ncs(gx.astype(g.dtype), batched, layout)


# ------------------------------------------------------------------------------ windowed sums


def _window_setup(x: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode, layout):
    """(xc float64 (N, C, *spatial), batched, geom, windows (N, C, *out, K), valid (*out, K))."""
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    x64 = xc.astype(np.float64)
    win = _windows(_padded(x64, geom, 0.0), geom)
    valid, _ = _tap_tables(geom)
    return x64, batched, geom, win, valid


def _scatter_taps(contrib: np.ndarray, geom: Geometry, shape_c: Tuple[int, ...]) -> np.ndarray:
    """Adds contrib (N, C, *out, K) back onto the taps' input positions: (N, C, *spatial)."""
    gp = _padded(np.zeros(shape_c), geom, 0.0)
    for t, taps in enumerate(itertools.product(*(range(k) for k in geom.kernel))):
        pick = (slice(None), slice(None)) + tuple(
            slice(j * d, j * d + (o - 1) * s + 1, s)
            for j, d, o, s in zip(taps, geom.dilation, geom.out_sizes, geom.stride))
        gp[pick] += contrib[..., t]
    crop = (slice(None), slice(None)) + tuple(
        slice(p[0], p[0] + i) for p, i in zip(geom.pads, geom.in_sizes))
    return gp[crop]


def _check_p(p: Any) -> None:
    pa = np.asarray(p, dtype=np.float64)
    if not (np.all(np.isfinite(pa)) and np.all(pa > 0)):
        raise ValueError(f"p must be > 0, got {p!r}")


# ------------------------------------------------------------------------------ LP


def _lp_core(win: np.ndarray, valid: np.ndarray, p: float):
    """y = (sum |x|^p)^(1/p) over valid taps, computed relative to the window's max |x|
    (no overflow for large p). Returns (y, m) in float64."""
    a = np.where(valid, np.abs(win), 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = a.max(axis=-1)  # NaN propagates
        r = a / np.where((m > 0) & np.isfinite(m), m, 1.0)[..., None]
        y = m * np.power(np.sum(np.power(r, p), axis=-1), 1.0 / p)
    y = np.where(m == 0, 0.0, y)
    y = np.where(np.isposinf(m), np.inf, y)
    return y


def lp_pool(x: np.ndarray, p: float, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
            layout="channels_first") -> np.ndarray:
    """Reference LP pooling (ONNX LpPool: the L_p norm of each window; padding adds 0)."""
    x = np.asarray(x)
    _check_p(p)
    _, batched, geom, win, valid = _window_setup(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    return _from_ncs(_lp_core(win, valid, float(p)).astype(x.dtype), batched, layout)


def lp_pool_backward(grad_output: np.ndarray, x: np.ndarray, p: float, kernel_size, stride=None, padding=0,
                     dilation=1, ceil_mode=False, layout="channels_first", magnitude: bool = False) -> np.ndarray:
    """Reference LP backward: grad_x_i = sum over windows of g sign(x_i) (|x_i| / y)^(p-1),
    0 where y == 0 or x_i == 0. With ``magnitude`` the sum of |terms| (an error scale)."""
    x = np.asarray(x)
    p = float(p)
    xc, batched, geom, win, valid = _window_setup(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), geom.rank, layout)
    gc = gc.astype(np.float64)
    y = _lp_core(win, valid, p)[..., None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        term = np.sign(win) * np.power(np.abs(win) / np.where(y == 0, 1.0, y), p - 1.0)
    term = np.where(valid & (win != 0) & (y != 0), term, 0.0)
    contrib = gc[..., None] * term
    if magnitude:
        contrib = np.abs(contrib)
    return _from_ncs(_scatter_taps(contrib, geom, xc.shape).astype(x.dtype), batched, layout)


# ------------------------------------------------------------------------------ GeM


def _p_array(p: Any, channels: int, rank: int) -> np.ndarray:
    """p as float64, broadcastable against (N, C, *out): scalar or (1, C, 1, ...)."""
    _check_p(p)
    pa = np.asarray(p, dtype=np.float64)
    if pa.ndim == 0:
        return pa
    if pa.shape != (channels,):
        raise ValueError(f"p must be a scalar or have shape ({channels},), got {pa.shape}")
    return pa.reshape((1, channels) + (1,) * rank)


def _gem_setup(x, eps, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, rank, layout):
    """(xc, batched, geom, clamped windows c, valid, D (*out), global?) in float64."""
    x = np.asarray(x)
    is_global = kernel_size is None
    if is_global:
        rank = _global_rank(x.ndim, rank)
        xc, _ = _to_ncs(x, rank, layout)
        kernel_size = tuple(xc.shape[2:])
    x64, batched, geom, win, valid = _window_setup(x, kernel_size, stride, 0 if is_global else padding,
                                                   1 if is_global else dilation,
                                                   False if is_global else ceil_mode, layout)
    c = np.where(valid, np.maximum(win, float(eps)), 0.0)  # NaN propagates
    d = _divisors(geom, bool(count_include_pad) and not is_global, None)
    return x64, batched, geom, c, valid, d, is_global


def _gem_terms(c, valid, d, pa):
    """y and the pieces of its derivatives, relative to the window max m:
    r = c/m, R = sum r^p, R_ln = sum r^p ln r; y = m (R/D)^(1/p)."""
    pk = pa[..., None] if pa.ndim else pa
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.where(valid, c, -np.inf).max(axis=-1)
        mm = np.where(np.isfinite(m) & (m > 0), m, 1.0)[..., None]
        r = np.where(valid, c / mm, 0.0)
        rp = np.where(valid, np.power(r, pk), 0.0)
        lnr = np.where(valid & (r > 0), np.log(np.where(r > 0, r, 1.0)), 0.0)
        big_r = rp.sum(axis=-1)
        r_ln = (rp * lnr).sum(axis=-1)
        y = m * np.power(big_r / d, 1.0 / pa)
    y = np.where(np.isposinf(m), np.inf, y)
    return y, m, big_r, r_ln


def _gem_output(yc, batched, layout, is_global, keepdims):
    if is_global:
        return _global_out(yc, batched, layout, keepdims)
    return _from_ncs(yc, batched, layout)


def gem_pool(x: np.ndarray, p: Any = 3.0, eps: float = 1e-6, kernel_size=None, stride=None, padding=0,
             dilation=1, ceil_mode=False, count_include_pad=False, rank=None, keepdims=False,
             layout="channels_first") -> np.ndarray:
    """Reference GeM: (sum over the window's taps inside the input of max(x, eps)^p / D)^(1/p)."""
    x = np.asarray(x)
    xc, batched, geom, c, valid, d, is_global = _gem_setup(x, eps, kernel_size, stride, padding, dilation,
                                                           ceil_mode, count_include_pad, rank, layout)
    pa = _p_array(p, xc.shape[1], geom.rank)
    y, _, _, _ = _gem_terms(c, valid, d, pa)
    return _gem_output(y.astype(x.dtype), batched, layout, is_global, keepdims)


def gem_pool_backward(grad_output: np.ndarray, x: np.ndarray, p: Any = 3.0, eps: float = 1e-6,
                      kernel_size=None, stride=None, padding=0, dilation=1, ceil_mode=False,
                      count_include_pad=False, rank=None, keepdims=False, layout="channels_first",
                      magnitude: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Reference GeM backward: (grad_x, grad_p).

    dy/dx_i = (1/D) (x_i / y)^(p-1) where x_i > eps, else 0;
    dy/dp = y (R_ln / (p R) - ln(R / D) / p^2) (the spec's formula with c / m for c).
    grad_p is summed over the batch (and the channels for a scalar p), in x's dtype, p's
    shape. With ``magnitude``: the sums of |terms| of both, error scales for the checks
    (for grad_p the terms of the spec's unscaled formula, whose two parts may cancel)."""
    x = np.asarray(x)
    xc, batched, geom, c, valid, d, is_global = _gem_setup(x, eps, kernel_size, stride, padding, dilation,
                                                           ceil_mode, count_include_pad, rank, layout)
    pa = _p_array(p, xc.shape[1], geom.rank)
    y, m, big_r, r_ln = _gem_terms(c, valid, d, pa)
    g = np.asarray(grad_output)
    if is_global:
        gc = _global_in(g, geom.rank, batched, layout, keepdims)
    else:
        gc, _ = _to_ncs(g, geom.rank, layout)
    gc = gc.astype(np.float64)
    pk = pa[..., None] if pa.ndim else pa
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.power(c / np.where(y == 0, 1.0, y)[..., None], pk - 1.0)
        term = np.where(valid & (c > eps), ratio / d[..., None], 0.0)
        term = np.where(np.isnan(c), np.nan, term)
        contrib = gc[..., None] * term
        if magnitude:
            contrib = np.abs(contrib)
        grad_x = _scatter_taps(contrib, geom, xc.shape)
        lnm = np.log(np.where(m > 0, m, 1.0))
        a = r_ln / (pa * big_r) + lnm / pa
        b = lnm / pa + np.log(big_r / d) / pa ** 2
        dydp = y * (np.abs(a) + np.abs(b)) if magnitude else y * (r_ln / (pa * big_r) - np.log(big_r / d) / pa ** 2)
        gp = gc * dydp
        if magnitude:
            gp = np.abs(gp)
    axes = tuple(a for a in range(gp.ndim) if a != 1 or np.ndim(p) == 0)
    grad_p = gp.sum(axis=axes)
    grad_p = np.asarray(grad_p, dtype=x.dtype).reshape(np.shape(p))
    return _from_ncs(grad_x.astype(x.dtype), batched, layout), grad_p


# ------------------------------------------------------------------------------ SPP and strip


def _levels(levels: Any, rank: int) -> List[Tuple[int, ...]]:
    out = []
    for lev in levels:
        bins = (int(lev),) * rank if isinstance(lev, (int, np.integer)) else tuple(int(b) for b in lev)
        if len(bins) != rank or min(bins) < 1:
            raise ValueError(f"bad level {lev!r}")
        out.append(bins)
    return out


def spatial_pyramid_pool(x: np.ndarray, levels: Any = (1, 2, 4), mode: str = "max",
                         layout: str = "channels_first") -> np.ndarray:
    """Reference SPP: adaptive max/avg to each level's grid, each flattened C x bins,
    levels concatenated: (N, C * sum(prod(bins)))."""
    x = np.asarray(x)
    rank = x.ndim - 2
    xc, _ = _to_ncs(x, rank, layout)
    parts = []
    for bins in _levels(levels, rank):
        if mode == "max":
            y, _ = adaptive_max_pool(xc, bins)
        elif mode == "avg":
            y = adaptive_avg_pool(xc, bins)
        else:
            raise ValueError(mode)
        parts.append(y.reshape(y.shape[0], -1))
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def spatial_pyramid_pool_indices(x: np.ndarray, levels: Any = (1, 2, 4),
                                 layout: str = "channels_first") -> np.ndarray:
    """Reference SPP argmax: each level's adaptive max indices, flattened as the output."""
    x = np.asarray(x)
    rank = x.ndim - 2
    xc, _ = _to_ncs(x, rank, layout)
    parts = [adaptive_max_pool(xc, bins)[1] for bins in _levels(levels, rank)]
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def spatial_pyramid_pool_backward(grad_output: np.ndarray, x: np.ndarray, levels: Any = (1, 2, 4),
                                  mode: str = "max", layout: str = "channels_first") -> np.ndarray:
    """Reference SPP backward: the levels' adaptive backwards, summed (float64)."""
    x = np.asarray(x)
    rank = x.ndim - 2
    xc, _ = _to_ncs(x, rank, layout)
    n, c = xc.shape[:2]
    g = np.asarray(grad_output).astype(np.float64)
    gx = np.zeros(xc.shape, dtype=np.float64)
    start = 0
    for bins in _levels(levels, rank):
        size = c * int(np.prod(bins))
        gl = g[:, start:start + size].reshape((n, c) + bins)
        start += size
        if mode == "max":
            gx += adaptive_max_pool_backward(gl, xc.astype(np.float64), bins)
        else:
            gx += adaptive_avg_pool_backward(gl, xc.shape, bins)
    if start != g.shape[1]:
        raise ValueError("grad_output length")
    return _from_ncs(gx.astype(x.dtype), True, layout)


def strip_pool(x: np.ndarray, mode: str = "avg", layout: str = "channels_first") -> Tuple[np.ndarray, np.ndarray]:
    """Reference strip pooling of 2D input: (y_h over W: (N, C, H, 1), y_w over H: (N, C, 1, W))."""
    x = np.asarray(x)
    h, w = _to_ncs(x, 2, layout)[0].shape[2:]
    if mode == "max":
        return adaptive_max_pool(x, (h, 1), layout)[0], adaptive_max_pool(x, (1, w), layout)[0]
    if mode == "avg":
        return adaptive_avg_pool(x, (h, 1), layout), adaptive_avg_pool(x, (1, w), layout)
    raise ValueError(mode)


def strip_pool_backward(grad_h: np.ndarray, grad_w: np.ndarray, x: np.ndarray, mode: str = "avg",
                        layout: str = "channels_first") -> np.ndarray:
    """Reference strip backward: the sum of both strips' gradients (float64, then cast)."""
    x = np.asarray(x)
    x64 = x.astype(np.float64)
    h, w = _to_ncs(x, 2, layout)[0].shape[2:]
    gh, gw = np.asarray(grad_h).astype(np.float64), np.asarray(grad_w).astype(np.float64)
    if mode == "max":
        total = (adaptive_max_pool_backward(gh, x64, (h, 1), layout=layout)
                 + adaptive_max_pool_backward(gw, x64, (1, w), layout=layout))
    elif mode == "avg":
        total = (adaptive_avg_pool_backward(gh, x.shape, (h, 1), layout=layout)
                 + adaptive_avg_pool_backward(gw, x.shape, (1, w), layout=layout))
    else:
        raise ValueError(mode)
    return total.astype(x.dtype)


# ============================================================================ issue: corner pooling
# Corner, center and cascade corner pooling (CornerNet, CenterNet), written from the
# definitions alone. 2-D planes; every function brings its arrays to (N, C, H, W) first.
#
# A directional pool is a cumulative max along one spatial axis, scanned from the far
# edge towards the output position:
#
#   top     y[i, j] = max over r >= i of x[r, j]   scan r = H-1, H-2, ..., 0
#   bottom  y[i, j] = max over r <= i of x[r, j]   scan r = 0, 1, ..., H-1
#   left    y[i, j] = max over c >= j of x[i, c]   scan c = W-1, W-2, ..., 0
#   right   y[i, j] = max over c <= j of x[i, c]   scan c = 0, 1, ..., W-1
#
# The scan keeps the element found first with a strict >, a NaN beating every number
# and the first NaN found beating later NaNs (CornerNet's tie rule), and records where it
# is: y is that element (so also its sign of zero) and the backward routes the gradient
# of y[i, j] there. Forward sums are one addition in the input's dtype, as the kernels do
# them; gradients are accumulated in float64 and cast to the input's dtype once.

DIRECTIONS = ("top", "bottom", "left", "right")
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")

# direction: (axis of (N, C, H, W) it scans, scans from the end of the axis)
_SCANS = {"top": (2, True), "bottom": (2, False), "left": (3, True), "right": (3, False)}


def _split_corner(corner: str) -> Tuple[str, str]:
    """(vertical, horizontal) directions of a corner name."""
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    v, h = corner.split("_")
    return v, h


def _to_nchw(x: np.ndarray, layout: str) -> Tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"x must have 3 or 4 dims, got {x.ndim}")
    return _to_ncs(x, 2, layout)


def directional_scan(xc: np.ndarray, direction: str) -> Tuple[np.ndarray, np.ndarray]:
    """(y, src) for xc of shape (N, C, H, W): y the directional pool, src (int64) the
    position along the scanned axis of the element each y came from."""
    axis, from_end = _SCANS[direction]
    v = np.moveaxis(xc, axis, -1)
    length = v.shape[-1]
    best = np.empty(v.shape, v.dtype)
    src = np.empty(v.shape, np.int64)
    order = range(length - 1, -1, -1) if from_end else range(length)
    cur = cur_src = None
    for p in order:
        val = v[..., p]
        if cur is None:
            cur, cur_src = val.copy(), np.full(val.shape, p, np.int64)
        else:
            take = (val > cur) | (np.isnan(val) & ~np.isnan(cur))
            cur = np.where(take, val, cur)
            cur_src = np.where(take, p, cur_src)
        best[..., p] = cur
        src[..., p] = cur_src
    return np.moveaxis(best, -1, axis), np.moveaxis(src, -1, axis)


def _route(gc: np.ndarray, src: np.ndarray, axis: int) -> np.ndarray:
    """float64 gradient: out[.., src[.., p, ..], ..] += gc[.., p, ..] along ``axis``."""
    g = np.moveaxis(np.asarray(gc, dtype=np.float64), axis, -1)
    s = np.moveaxis(src, axis, -1)
    flat_g = g.reshape(-1, g.shape[-1])
    flat_s = s.reshape(-1, s.shape[-1])
    out = np.zeros(flat_g.shape, np.float64)
    np.add.at(out, (np.arange(flat_g.shape[0])[:, None], flat_s), flat_g)
    return np.moveaxis(out.reshape(g.shape), -1, axis)


def _dir_backward(gc: np.ndarray, xc: np.ndarray, direction: str) -> np.ndarray:
    """float64 (N, C, H, W) gradient of one directional pool of xc."""
    _, src = directional_scan(xc, direction)
    return _route(gc, src, _SCANS[direction][0])


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b in their dtype (inf + -inf is NaN, as in the kernels)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return a + b


def corner_pool(x: np.ndarray, direction: str, x2: Optional[np.ndarray] = None,
                layout: str = "channels_first") -> np.ndarray:
    """Reference directional / corner pooling: one direction of x, or for a corner
    "<v>_<h>" v(x) + h(x2) (x2 defaults to x)."""
    x = np.asarray(x)
    xc, batched = _to_nchw(x, layout)
    if direction in DIRECTIONS:
        if x2 is not None:
            raise ValueError("x2 is only allowed for a corner")
        return _from_ncs(directional_scan(xc, direction)[0], batched, layout)
    v, h = _split_corner(direction)
    x2c = xc if x2 is None else _to_nchw(np.asarray(x2), layout)[0]
    y = _add(directional_scan(xc, v)[0], directional_scan(x2c, h)[0])
    return _from_ncs(y, batched, layout)


def corner_pool_backward(grad_output: np.ndarray, x: np.ndarray, direction: str,
                         x2: Optional[np.ndarray] = None, layout: str = "channels_first"):
    """Reference backward: grad_x, or (grad_x, grad_x2) when x2 is given. A corner
    without x2 gives grad_x = v_backward + h_backward."""
    x = np.asarray(x)
    xc, batched = _to_nchw(x, layout)
    gc, _ = _to_nchw(np.asarray(grad_output), layout)
    out = lambda a: _from_ncs(a.astype(x.dtype), batched, layout)  # noqa: E731
    if direction in DIRECTIONS:
        return out(_dir_backward(gc, xc, direction))
    v, h = _split_corner(direction)
    gv = _dir_backward(gc, xc, v)
    if x2 is None:
        return out(gv + _dir_backward(gc, xc, h))
    x2c = _to_nchw(np.asarray(x2), layout)[0]
    return out(gv), out(_dir_backward(gc, x2c, h))


def _column_row_max(xc: np.ndarray, x2c: np.ndarray):
    """((col max (N, C, 1, W), its row), (row max (N, C, H, 1), its column)): the LAST
    position holding the maximum (or the last NaN), as a full top / left scan gives."""
    col, col_src = directional_scan(xc, "top")
    row, row_src = directional_scan(x2c, "left")
    return (col[:, :, :1, :], col_src[:, :, :1, :]), (row[:, :, :, :1], row_src[:, :, :, :1])


def center_pool(x: np.ndarray, x2: Optional[np.ndarray] = None, layout: str = "channels_first") -> np.ndarray:
    """Reference center pooling: y[i, j] = max_r x[r, j] + max_c x2[i, c]."""
    x = np.asarray(x)
    xc, batched = _to_nchw(x, layout)
    x2c = xc if x2 is None else _to_nchw(np.asarray(x2), layout)[0]
    (col, _), (row, _) = _column_row_max(xc, x2c)
    y = _add(np.broadcast_to(col, xc.shape), np.broadcast_to(row, xc.shape))
    return _from_ncs(y, batched, layout)


def center_pool_backward(grad_output: np.ndarray, x: np.ndarray, x2: Optional[np.ndarray] = None,
                         layout: str = "channels_first"):
    """Reference center backward: sum_i g[i, j] to the last row holding column j's max of
    x; sum_j g[i, j] to the last column holding row i's max of x2."""
    x = np.asarray(x)
    xc, batched = _to_nchw(x, layout)
    x2c = xc if x2 is None else _to_nchw(np.asarray(x2), layout)[0]
    g = _to_nchw(np.asarray(grad_output), layout)[0].astype(np.float64)
    (_, col_src), (_, row_src) = _column_row_max(xc, x2c)
    gx = np.zeros(xc.shape, np.float64)
    gx2 = np.zeros(xc.shape, np.float64)
    n, c, hh, ww = xc.shape
    col_g, row_g = g.sum(axis=2), g.sum(axis=3)  # (N, C, W), (N, C, H)
    for r in range(hh):
        gx[:, :, r, :] += np.where(col_src[:, :, 0, :] == r, col_g, 0.0)
    for cc in range(ww):
        gx2[:, :, :, cc] += np.where(row_src[:, :, :, 0] == cc, row_g, 0.0)
    out = lambda a: _from_ncs(a.astype(x.dtype), batched, layout)  # noqa: E731
    if x2 is None:
        return out(gx + gx2)
    return out(gx), out(gx2)


def _pair(a: Any, name: str, layout: str) -> Tuple[Tuple[np.ndarray, np.ndarray], bool, bool]:
    """((term 1, term 2) as (N, C, H, W), a pair was given, batched)."""
    if isinstance(a, (tuple, list)):
        if len(a) != 2:
            raise ValueError(f"{name} must be an array or a pair of arrays")
        (a1, batched), (a2, _) = _to_nchw(np.asarray(a[0]), layout), _to_nchw(np.asarray(a[1]), layout)
        return (a1, a2), True, batched
    a1, batched = _to_nchw(np.asarray(a), layout)
    return (a1, a1), False, batched


def _cascade_terms(bc, ic, corner):
    """The intermediates of a cascade corner: s1 = inner1 + h(boundary1), s2 = inner2 + v(boundary2)."""
    v, h = _split_corner(corner)
    s1 = _add(ic[0], directional_scan(bc[0], h)[0])
    s2 = _add(ic[1], directional_scan(bc[1], v)[0])
    return v, h, s1, s2


def cascade_corner_pool(boundary: Any, inner: Any, corner: str = "top_left",
                        layout: str = "channels_first") -> np.ndarray:
    """Reference cascade corner pooling: v(inner1 + h(boundary1)) + h(inner2 + v(boundary2))."""
    bc, _, batched = _pair(boundary, "boundary", layout)
    ic, _, _ = _pair(inner, "inner", layout)
    v, h, s1, s2 = _cascade_terms(bc, ic, corner)
    y = _add(directional_scan(s1, v)[0], directional_scan(s2, h)[0])
    return _from_ncs(y, batched, layout)


def cascade_corner_pool_backward(grad_output: np.ndarray, boundary: Any, inner: Any, corner: str = "top_left",
                                 layout: str = "channels_first"):
    """Reference cascade backward: (grad_boundary, grad_inner), each an array (both terms'
    gradients summed) or a pair, as the argument was given."""
    bc, b_pair, batched = _pair(boundary, "boundary", layout)
    ic, i_pair, _ = _pair(inner, "inner", layout)
    dtype = bc[0].dtype
    g = _to_nchw(np.asarray(grad_output), layout)[0]
    v, h, s1, s2 = _cascade_terms(bc, ic, corner)
    g_s1 = _dir_backward(g, s1, v)  # = grad of inner1
    g_s2 = _dir_backward(g, s2, h)  # = grad of inner2
    g_b1 = _dir_backward(g_s1, bc[0], h)
    g_b2 = _dir_backward(g_s2, bc[1], v)
    out = lambda a: _from_ncs(a.astype(dtype), batched, layout)  # noqa: E731
    gb = (out(g_b1), out(g_b2)) if b_pair else out(g_b1 + g_b2)
    gi = (out(g_s1), out(g_s2)) if i_pair else out(g_s1 + g_s2)
    return gb, gi


# ============================================================================ Max unpooling
# PyTorch's max_unpool1d/2d/3d and its gradient, written from the definitions alone:
#
#   forward   y = 0 of the unpooled shape, then for every pooled position p of a plane,
#             in row-major order, y[n, c, indices[n, c, p]] = x[n, c, p]; the index is
#             flat over y's spatial positions ((d * H + h) * W + w). A later p overwrites
#             an earlier one: of equal indices the last in x's order wins.
#   backward  grad_x[n, c, p] = grad_output[n, c, indices[n, c, p]], a gather: every one
#             of equal indices gets the gradient.
#
# Both bring their arrays to (N, C, plane) first; values are copied, never computed, so
# the results are exact (NaN payloads and signs of zero included).


def _unpool_planes(a: np.ndarray, rank: int, layout: str) -> Tuple[np.ndarray, bool, Tuple[int, ...]]:
    """(N, C, prod(spatial)) copy of a, whether a was batched, and a's spatial sizes."""
    ac, batched = _to_ncs(np.asarray(a), rank, layout)
    spatial = tuple(ac.shape[2:])
    return ac.reshape(ac.shape[0], ac.shape[1], -1).copy(), batched, spatial


def _check_unpool_indices(ic: np.ndarray, plane: int, name: str) -> None:
    if ic.dtype != np.int64:
        raise TypeError(f"{name} must be int64, got {ic.dtype}")
    bad = (ic < 0) | (ic >= plane)
    if bad.any():
        raise ValueError(f"{name} holds {int(ic[bad][0])}, outside [0, {plane})")


def max_unpool_ref(x: np.ndarray, indices: np.ndarray, output_spatial: Sequence[int],
                   layout: str = "channels_first") -> np.ndarray:
    """Reference max unpooling of x (rank = len(output_spatial)) to the spatial sizes
    ``output_spatial``; the last of equal indices wins."""
    output_spatial = tuple(int(s) for s in output_spatial)
    rank = len(output_spatial)
    x = np.asarray(x)
    indices = np.asarray(indices)
    if indices.shape != x.shape:
        raise ValueError(f"indices has shape {indices.shape}, x {x.shape}")
    xc, batched, _ = _unpool_planes(x, rank, layout)
    ic, _, _ = _unpool_planes(indices, rank, layout)
    n, c, plane_in = xc.shape
    plane_out = int(np.prod(output_spatial))
    _check_unpool_indices(ic, plane_out, "indices")
    y = np.zeros((n, c, plane_out), x.dtype)
    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for p in range(plane_in):  # in order: a later position overwrites an earlier one
        y[nn, cc, ic[:, :, p]] = xc[:, :, p]  # distinct (n, c) per assignment: no clash within
    return _from_ncs(y.reshape((n, c) + output_spatial), batched, layout)


def max_unpool_backward_ref(grad_output: np.ndarray, indices: np.ndarray, layout: str = "channels_first",
                            rank: Optional[int] = None) -> np.ndarray:
    """Reference gradient of max unpooling with respect to x: grad_output gathered at the
    indices (indices' shape, grad_output's dtype). ``rank`` is the spatial rank; by
    default the arrays are taken as batched (rank = ndim - 2), so pass it for unbatched
    arrays."""
    grad_output, indices = np.asarray(grad_output), np.asarray(indices)
    if grad_output.ndim != indices.ndim:
        raise ValueError(f"grad_output has {grad_output.ndim} dims, indices {indices.ndim}")
    rank = indices.ndim - 2 if rank is None else rank
    gc, batched, _ = _unpool_planes(grad_output, rank, layout)
    ic, _, spatial_in = _unpool_planes(indices, rank, layout)
    if gc.shape[:2] != ic.shape[:2]:
        raise ValueError(f"grad_output's (N, C) {gc.shape[:2]} differ from indices' {ic.shape[:2]}")
    _check_unpool_indices(ic, gc.shape[2], "indices")
    n, c, _ = ic.shape
    gx = np.empty(ic.shape, grad_output.dtype)
    for i in range(n):
        for j in range(c):
            gx[i, j] = gc[i, j][ic[i, j]]  # fancy indexing: a gather, duplicates each read
    return _from_ncs(gx.reshape((n, c) + spatial_in), batched, layout)


# ============================================================================ SoftPool
# SoftPool (Stergiou et al. 2021), written from the definition alone: over the taps of a
# window that lie inside the input (padding takes no part, neither weight nor value),
#
#   m = max_i x_i,  e_i = exp(x_i - m),  w_i = e_i / sum_j e_j,  y = sum_i w_i x_i
#   grad_x_i = sum over the windows holding i of grad * w_i * (1 + x_i - y)
#
# NaN in a window gives NaN (forward, and the gradient of each of its taps); a window
# whose maximum is +inf gives +inf, one of only -inf gives -inf, and neither passes any
# gradient; a -inf tap of a window with a finite maximum has weight 0 (and gradient 0).
# Geometry (incl. ceil mode and "same") as max pooling: make_geometry and the window
# helpers above. Arithmetic in a wider type than x's (float64 for float32 input,
# np.longdouble for float64 input), results cast to x's dtype.


def _soft_setup(x: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode, layout):
    """(xc (N, C, *spatial), batched, geom, windows (N, C, *out, K) in the working type, valid (*out, K))."""
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    work = np.float64 if x.dtype == np.float32 else np.longdouble
    win = _windows(_padded(xc.astype(work), geom, 0.0), geom)
    valid, _ = _tap_tables(geom)
    return xc, batched, geom, win, np.broadcast_to(valid, win.shape)


def _soft_core(win: np.ndarray, valid: np.ndarray):
    """(y, m, w, finite) of every window: y and m of shape (N, C, *out), the weights w of
    shape (N, C, *out, K) (0 for padding, -inf taps and windows with an infinite or NaN
    maximum), and finite = the window's maximum is finite."""
    v = np.where(valid, win, -np.inf)
    m = v.max(axis=-1)  # NaN propagates
    finite = np.isfinite(m)
    shift = np.where(finite, m, 0.0)[..., None]
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        e = np.where(valid & finite[..., None], np.exp(v - shift), 0.0)  # exp(-inf) = 0
        s0 = e.sum(axis=-1)  # >= 1: the maximum's own weight is 1
        s1 = np.where(e > 0, e * v, 0.0).sum(axis=-1)
        w = e / np.where(finite, s0, 1.0)[..., None]
        y = np.where(finite, s1 / np.where(finite, s0, 1.0), m)  # +-inf and NaN: m itself
    return y, m, w, finite


def soft_pool(x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
              layout="channels_first") -> np.ndarray:
    """Reference SoftPool: the softmax-weighted mean of each window's taps inside the input."""
    x = np.asarray(x)
    _, batched, _, win, valid = _soft_setup(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    y, _, _, _ = _soft_core(win, valid)
    return _from_ncs(y.astype(x.dtype), batched, layout)


def soft_pool_scale(x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    layout="channels_first") -> np.ndarray:
    """The error scale of each forward result: max |x| over the window's finite taps
    inside the input (0 if none), float64, the output's shape."""
    x = np.asarray(x)
    _, batched, _, win, valid = _soft_setup(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    a = np.where(valid & np.isfinite(win), np.abs(win), 0.0)
    return _from_ncs(a.max(axis=-1).astype(np.float64), batched, layout)


def soft_pool_backward(grad_output: np.ndarray, x: np.ndarray, kernel_size, stride=None, padding=0,
                       dilation=1, ceil_mode=False, layout="channels_first",
                       magnitude: bool = False) -> np.ndarray:
    """Reference SoftPool backward: grad_x_i = sum over windows of g w_i (1 + x_i - y).

    With ``magnitude``, an error scale instead (float64): the sum over the windows of
    |g| w_i (1 + |x_i - m|) (1 + |x_i - y| + M), M the window's max |x| (y carries an
    error ~ eps M, w_i a relative one ~ eps |x_i - m|); 0 for windows without gradient."""
    x = np.asarray(x)
    xc, batched, geom, win, valid = _soft_setup(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), geom.rank, layout)
    if gc.shape != win.shape[:-1]:
        raise ValueError(f"grad_output has shape {gc.shape}, expected {win.shape[:-1]}")
    g = gc.astype(win.dtype)[..., None]
    y, m, w, finite = _soft_core(win, valid)
    yk, mk = y[..., None], m[..., None]
    live = valid & finite[..., None] & (w > 0)  # taps that carry a gradient
    with np.errstate(invalid="ignore", over="ignore"):
        if magnitude:
            big = np.where(valid & np.isfinite(win), np.abs(win), 0.0).max(axis=-1)[..., None]
            term = np.abs(g) * w * (1 + np.abs(win - mk)) * (1 + np.abs(win - yk) + big)
            contrib = np.where(live, term, 0.0)
        else:
            contrib = np.where(live, g * w * (1 + (win - yk)), 0.0)  # x - y first: exact when x = y
            contrib = np.where(valid & np.isnan(m)[..., None], np.nan, contrib)
    gx = _scatter_taps(contrib, geom, xc.shape)
    if magnitude:
        return _from_ncs(gx.astype(np.float64), batched, layout)
    return _from_ncs(gx.astype(x.dtype), batched, layout)


# ============================================================================ Mixed pooling
# Mixed max-average pooling (Lee, Gallagher & Tu 2016; Yu et al. 2014), written from the
# definition and built from the max and average pooling references above (nothing else):
#
#   y          = alpha max + (1 - alpha) avg           (applied as written: 0 * inf is NaN)
#   grad_x     = max_pool_backward(alpha g) + avg_pool_backward((1 - alpha) g)
#   grad_alpha = sum of g (max - avg) over the batch and the windows (and the channels
#                for a scalar alpha)
#
# max is max_pool's (padding never wins, NaN propagates, the argmax by max_pool's scan),
# avg is avg_pool's with the same count_include_pad (None: True for numeric padding,
# False for "same"). alpha is a scalar or one value per channel (shape (C,)), taken in
# x's dtype (the value the kernels use) and broadcast over the channel axis of either
# layout. Arithmetic in float64 (avg of the float64 input, unrounded), results cast to
# x's dtype.


def _mixed_alpha(alpha: Any, channels: int, rank: int, dtype: Any) -> np.ndarray:
    """alpha in x's dtype, as float64, broadcastable against (N, C, *out)."""
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim != 0 and a.shape != (channels,):
        raise ValueError(f"alpha must be a scalar or have shape ({channels},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    a = a.astype(dtype).astype(np.float64)
    return a if a.ndim == 0 else a.reshape((1, channels) + (1,) * rank)


def _mixed_parts(x: np.ndarray, alpha: Any, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad,
                 layout):
    """(alpha, max, avg, avg of |x|) in float64, the last three (N, C, *out), batched, rank."""
    rank = _rank(kernel_size, x.ndim)
    geo = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode, dilation=dilation,
               layout=layout)
    m, _ = max_pool(x, **geo)
    x64 = x.astype(np.float64)
    avg = avg_pool(x64, count_include_pad=count_include_pad, **geo)
    avg_abs = avg_pool(np.abs(x64), count_include_pad=count_include_pad, **geo)
    mc, batched = _to_ncs(m.astype(np.float64), rank, layout)
    avgc, _ = _to_ncs(avg, rank, layout)
    absc, _ = _to_ncs(avg_abs, rank, layout)
    a = _mixed_alpha(alpha, mc.shape[1], rank, x.dtype)
    return a, mc, avgc, absc, batched, rank


def mixed_pool(x: np.ndarray, alpha: Any, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               count_include_pad=None, layout="channels_first") -> np.ndarray:
    """Reference mixed pooling: alpha max_pool(x) + (1 - alpha) avg_pool(x)."""
    x = np.asarray(x)
    a, m, avg, _, batched, _ = _mixed_parts(x, alpha, kernel_size, stride, padding, dilation, ceil_mode,
                                            count_include_pad, layout)
    with np.errstate(invalid="ignore", over="ignore"):
        y = a * m + (1.0 - a) * avg
    return _from_ncs(y.astype(x.dtype), batched, layout)


def mixed_pool_scale(x: np.ndarray, alpha: Any, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                     count_include_pad=None, layout="channels_first") -> np.ndarray:
    """The error scale of each forward result, |alpha| |max| + |1 - alpha| avg(|x|)
    (float64, the output's shape): the terms' magnitudes, the sum's in the average."""
    x = np.asarray(x)
    a, m, _, avg_abs, batched, _ = _mixed_parts(x, alpha, kernel_size, stride, padding, dilation, ceil_mode,
                                                count_include_pad, layout)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.abs(a) * np.abs(m) + np.abs(1.0 - a) * avg_abs
    return _from_ncs(s, batched, layout)


def mixed_pool_backward(grad_output: np.ndarray, x: np.ndarray, alpha: Any, kernel_size, stride=None, padding=0,
                        dilation=1, ceil_mode=False, count_include_pad=None, layout="channels_first",
                        magnitude: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Reference mixed backward: (grad_x, grad_alpha).

    grad_x = max_pool_backward(alpha g, x) + avg_pool_backward((1 - alpha) g);
    grad_alpha = sum g (max - avg), alpha's shape (0-d for a scalar), x's dtype. With
    ``magnitude``: error scales instead (float64), the same sums of the |terms|
    (|alpha g| at the argmax, |(1 - alpha) g| / D at each tap; |g| (|max| + avg(|x|)))."""
    x = np.asarray(x)
    a, m, avg, avg_abs, batched, rank = _mixed_parts(x, alpha, kernel_size, stride, padding, dilation, ceil_mode,
                                                     count_include_pad, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    if gc.shape != m.shape:
        raise ValueError(f"grad_output has shape {gc.shape}, expected {m.shape}")
    g = gc.astype(np.float64)
    to_user = lambda v: _from_ncs(v, batched, layout)  # noqa: E731
    geo = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode, dilation=dilation,
               layout=layout)
    g_max, g_avg = a * g, (1.0 - a) * g
    if magnitude:
        g_max, g_avg = np.abs(g_max), np.abs(g_avg)
    # x in float64 (the same argmax; an exact conversion) so the routed sums stay float64
    gx = (max_pool_backward(to_user(g_max), x.astype(np.float64), **geo)
          + avg_pool_backward(to_user(g_avg), x.shape, count_include_pad=count_include_pad, **geo))
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.abs(g) * (np.abs(m) + avg_abs) if magnitude else g * (m - avg)
        axes = tuple(i for i in range(terms.ndim) if i != 1 or a.ndim == 0)
        ga = terms.sum(axis=axes)
    shape = () if a.ndim == 0 else (a.size,)
    if magnitude:
        return gx, np.asarray(ga, np.float64).reshape(shape)
    return gx.astype(x.dtype), np.asarray(ga, dtype=x.dtype).reshape(shape)
