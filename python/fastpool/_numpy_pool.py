"""Plain-NumPy pooling, forward and backward: the benchmarks' baseline.

Windowed max/avg pooling, and (at the end of the file) global, adaptive, spatial
pyramid and global GeM pooling.

Used by ``python -m fastpool`` and ``asv_bench/compare.py`` as the "NumPy" speed
baseline and to check fastpool's results; the test suite has its own reference in
``tests/``. Same arguments and semantics as :mod:`fastpool.pooling` (padding as an
int, per-axis ints, ``((before, after), ...)`` pairs, ``"valid"``, ``"same"`` or ``"same_lower"``),
batched inputs only.

Method: pad once, then loop over the kernel taps. Tap ``j`` of every window along an
axis is the strided slice ``padded[j*d : j*d + (O-1)*s + 1 : s]``, so each tap is one
vectorised NumPy operation over the whole output. The backward adds each tap's share
of the gradient into the same strided slice of a padded gradient, then crops it.
Max ties go to the first tap in row-major window order, and a NaN wins, the last one
in that order (PyTorch's rule). Padding never wins.
"""

from __future__ import annotations

import itertools
from typing import Any, List, Sequence, Tuple

import numpy as np

__all__ = ["max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward"]


def _tuple(v: Any, rank: int) -> Tuple[int, ...]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * rank
    v = tuple(int(i) for i in v)
    if len(v) != rank:
        raise ValueError(f"expected {rank} values, got {v}")
    return v


class _Geom:
    """Per-axis geometry, and the index tuples of the taps in an array's layout."""

    def __init__(self, shape, kernel_size, stride, padding, dilation, ceil_mode, layout):
        rank = len(kernel_size) if isinstance(kernel_size, Sequence) else len(shape) - 2
        if len(shape) != rank + 2:
            raise ValueError(f"expected a batched {rank}D input, got shape {tuple(shape)}")
        self.cl = layout == "channels_last"
        self.axes = list(range(1, rank + 1)) if self.cl else list(range(2, rank + 2))
        self.ndim = rank + 2
        self.I = tuple(shape[a] for a in self.axes)
        self.k = _tuple(kernel_size, rank)
        self.s = self.k if stride is None else _tuple(stride, rank)
        self.d = _tuple(dilation, rank)
        self.is_same = isinstance(padding, str) and padding.lower() != "valid"
        if isinstance(padding, str):
            pads = []
            for i, k, s, d in zip(self.I, self.k, self.s, self.d):
                o = -(-i // s)
                p = max(0, (o - 1) * s + d * (k - 1) + 1 - i) if self.is_same else 0
                lower = padding.lower() == "same_lower"
                pads.append((p - p // 2, p // 2) if lower else (p // 2, p - p // 2))
        elif isinstance(padding, Sequence) and any(isinstance(p, Sequence) for p in padding):
            pads = [tuple(p) if isinstance(p, Sequence) else (p, p) for p in padding]
        else:
            pads = [(p, p) for p in _tuple(padding, rank)]
        self.pads = [(int(b), int(a)) for b, a in pads]
        self.O = []
        for i, k, s, d, (pb, pe) in zip(self.I, self.k, self.s, self.d, self.pads):
            span = i + pb + pe - d * (k - 1) - 1
            o = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (o - 1) * s >= i + pb:
                o -= 1
            if o < 1:
                raise ValueError("empty output")
            self.O.append(o)
        # Padded extent: the explicit padding plus any ceil-mode overhang on the right.
        self.ext = [max(i + pb + pe, (o - 1) * s + d * (k - 1) + 1)
                    for i, o, s, d, k, (pb, pe) in zip(self.I, self.O, self.s, self.d, self.k, self.pads)]

    def out_shape(self, shape) -> Tuple[int, ...]:
        shape = list(shape)
        for a, o in zip(self.axes, self.O):
            shape[a] = o
        return tuple(shape)

    def padded_shape(self, shape) -> Tuple[int, ...]:
        shape = list(shape)
        for a, e in zip(self.axes, self.ext):
            shape[a] = e
        return tuple(shape)

    def interior(self) -> Tuple[slice, ...]:
        """Index of the input inside a padded array."""
        idx = [slice(None)] * self.ndim
        for a, i, (pb, _) in zip(self.axes, self.I, self.pads):
            idx[a] = slice(pb, pb + i)
        return tuple(idx)

    def taps(self) -> List[Tuple[slice, ...]]:
        """One index tuple per kernel tap, in row-major window order."""
        out = []
        for js in itertools.product(*(range(k) for k in self.k)):
            idx = [slice(None)] * self.ndim
            for a, j, o, s, d in zip(self.axes, js, self.O, self.s, self.d):
                idx[a] = slice(j * d, j * d + (o - 1) * s + 1, s)
            out.append(tuple(idx))
        return out

    def spatial_mask(self, include_pad: bool) -> np.ndarray:
        """Padded-extent boolean mask, broadcastable to the data: True inside the input
        (or inside the explicitly padded extent with ``include_pad``)."""
        shape = [1] * self.ndim
        for a, e in zip(self.axes, self.ext):
            shape[a] = e
        m = np.zeros(shape, dtype=bool)
        idx = [slice(None)] * self.ndim
        for a, i, (pb, pe) in zip(self.axes, self.I, self.pads):
            idx[a] = slice(0, pb + i + pe) if include_pad else slice(pb, pb + i)
        m[tuple(idx)] = True
        return m


def _padded(x: np.ndarray, g: _Geom, fill: float) -> np.ndarray:
    xp = np.empty(g.padded_shape(x.shape), dtype=x.dtype)
    if xp.shape != x.shape:
        xp.fill(fill)
    xp[g.interior()] = x
    return xp


def _max_padded(x, g: _Geom):
    xp = _padded(x, g, -np.inf)
    taps = g.taps()
    y = xp[taps[0]].copy()
    for t in taps[1:]:
        np.maximum(y, xp[t], out=y)  # propagates NaN
    return xp, y


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             layout="channels_first"):
    """Max pooling; see :func:`fastpool.max_pool`."""
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    return _max_padded(x, g)[1]


def max_pool_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                      ceil_mode=False, layout="channels_first"):
    """Gradient of :func:`max_pool` (argmax recomputed from ``x``)."""
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    xp, y = _max_padded(x, g)
    valid = g.spatial_mask(include_pad=False) if xp.shape != x.shape else None
    gp = np.zeros(xp.shape, dtype=grad_output.dtype)
    todo = np.ones(y.shape, dtype=bool)  # windows whose argmax is not found yet
    hit = np.empty(y.shape, dtype=bool)
    taps = g.taps()
    # The first tap equal to the maximum wins; then, in NaN windows (no tap equals a
    # NaN), the last NaN: the first one scanning the taps backwards.
    for nan_pass in (False, True):
        for t in taps[::-1] if nan_pass else taps:
            if nan_pass:
                np.isnan(xp[t], out=hit)
            else:
                np.equal(xp[t], y, out=hit)
            if valid is not None:
                hit &= valid[t]  # padding never wins
            hit &= todo
            todo ^= hit
            np.add(gp[t], grad_output, out=gp[t], where=hit)
        if not todo.any():
            break
    return np.ascontiguousarray(gp[g.interior()])


def _divisor(g: _Geom, count_include_pad, divisor_override, dtype) -> np.ndarray:
    """Per-window divisor, broadcastable to the output (spatial axes only)."""
    if count_include_pad is None:
        count_include_pad = not g.is_same
    shape = [1] * g.ndim
    for a, o in zip(g.axes, g.O):
        shape[a] = o
    if divisor_override is not None:
        return np.full(shape, divisor_override, dtype=dtype)
    m = g.spatial_mask(bool(count_include_pad))
    count = np.zeros(shape, dtype=np.int64)
    for t in g.taps():
        count += m[t]
    return np.maximum(count, 1).astype(dtype)  # an empty window gives 0 / 1 = 0


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=None,
             divisor_override=None, dilation=1, layout="channels_first"):
    """Average pooling; see :func:`fastpool.avg_pool`."""
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    xp = _padded(x, g, 0.0)
    taps = g.taps()
    y = xp[taps[0]].copy()
    for t in taps[1:]:
        y += xp[t]
    y /= _divisor(g, count_include_pad, divisor_override, x.dtype)
    return y


def avg_pool_backward(grad_output, input_shape, kernel_size, stride=None, padding=0,
                      ceil_mode=False, count_include_pad=None, divisor_override=None, dilation=1,
                      layout="channels_first"):
    """Gradient of :func:`avg_pool` with respect to its input of shape ``input_shape``."""
    g = _Geom(tuple(input_shape), kernel_size, stride, padding, dilation, ceil_mode, layout)
    share = grad_output / _divisor(g, count_include_pad, divisor_override, grad_output.dtype)
    gp = np.zeros(g.padded_shape(tuple(input_shape)), dtype=grad_output.dtype)
    for t in g.taps():
        gp[t] += share
    return np.ascontiguousarray(gp[g.interior()])


# --- bin reductions: global, adaptive, spatial pyramid, GeM ----------------------------
#
# One NumPy reduction per adaptive bin (PyTorch's rule: bin i of an axis of size I cut
# into O covers [floor(i*I/O), ceil((i+1)*I/O))), over the bin's spatial axes of every
# (n, c) at once. Global pooling is the one-bin case. Batched inputs only.

__all__ += ["global_max_pool", "global_max_pool_backward", "global_avg_pool", "global_avg_pool_backward",
            "adaptive_max_pool", "adaptive_max_pool_backward", "adaptive_avg_pool", "adaptive_avg_pool_backward",
            "spatial_pyramid_pool", "spatial_pyramid_pool_backward", "gem_pool", "gem_pool_backward"]


def _spatial_axes(ndim: int, layout: str) -> List[int]:
    return list(range(1, ndim - 1)) if layout == "channels_last" else list(range(2, ndim))


def _bins(shape, output_size, layout):
    """(output index, input index) of every bin, row-major; the output keeps each
    bin as a size-1 slice so the reductions can keep their dimensions."""
    axes = _spatial_axes(len(shape), layout)
    sizes = [shape[a] if o is None else int(o) for a, o in zip(axes, _seq(output_size, len(axes)))]
    per_axis = [[(o, (o * shape[a] // n, -(-(o + 1) * shape[a] // n))) for o in range(n)]
                for a, n in zip(axes, sizes)]
    out_shape = list(shape)
    for a, n in zip(axes, sizes):
        out_shape[a] = n
    bins = []
    for combo in itertools.product(*per_axis):
        oi, ii = [slice(None)] * len(shape), [slice(None)] * len(shape)
        for a, (o, (s, e)) in zip(axes, combo):
            oi[a], ii[a] = slice(o, o + 1), slice(s, e)
        bins.append((tuple(oi), tuple(ii)))
    return tuple(out_shape), axes, bins


def _seq(v: Any, rank: int) -> Tuple[Any, ...]:
    return tuple(v) if isinstance(v, Sequence) else (v,) * rank


def adaptive_max_pool(x, output_size, layout="channels_first"):
    """Adaptive max pooling; see :func:`fastpool.adaptive_max_pool`."""
    shape, axes, bins = _bins(x.shape, output_size, layout)
    y = np.empty(shape, dtype=x.dtype)
    for oi, ii in bins:
        y[oi] = x[ii].max(axis=tuple(axes), keepdims=True)  # propagates NaN
    return y


def adaptive_avg_pool(x, output_size, layout="channels_first"):
    """Adaptive average pooling; see :func:`fastpool.adaptive_avg_pool`."""
    shape, axes, bins = _bins(x.shape, output_size, layout)
    y = np.empty(shape, dtype=x.dtype)
    for oi, ii in bins:
        y[oi] = x[ii].mean(axis=tuple(axes), keepdims=True)
    return y


def adaptive_max_pool_backward(grad_output, x, output_size, layout="channels_first"):
    """Gradient of :func:`adaptive_max_pool`: each bin's gradient goes to its first
    maximum in row-major order (to its last NaN if it has one)."""
    shape, axes, bins = _bins(x.shape, output_size, layout)
    r = len(axes)
    last = tuple(range(-r, 0))
    gx = np.zeros(x.shape, dtype=grad_output.dtype)
    for oi, ii in bins:
        block = np.moveaxis(x[ii], axes, last)
        lead = block.shape[:-r]
        flat = block.reshape(lead + (-1,))
        arg = np.argmax(flat, axis=-1)
        nan = np.isnan(flat)
        if nan.any():
            arg = np.where(nan.any(-1), flat.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1), arg)
        hit = np.arange(flat.shape[-1]) == arg[..., None]
        share = hit * np.moveaxis(grad_output[oi], axes, last).reshape(lead + (1,))
        gx[ii] += np.moveaxis(share.reshape(block.shape), last, axes)
    return gx


def adaptive_avg_pool_backward(grad_output, input_shape, output_size, layout="channels_first"):
    """Gradient of :func:`adaptive_avg_pool` w.r.t. its input of shape ``input_shape``."""
    shape, axes, bins = _bins(tuple(input_shape), output_size, layout)
    gx = np.zeros(tuple(input_shape), dtype=grad_output.dtype)
    for oi, ii in bins:
        gx[ii] += grad_output[oi] / int(np.prod([gx[ii].shape[a] for a in axes]))
    return gx


def _global_shape(shape, layout):
    """(N, C) of a batched input."""
    return (shape[0], shape[-1] if layout == "channels_last" else shape[1])


def global_max_pool(x, layout="channels_first"):
    """Global max pooling to (N, C); see :func:`fastpool.global_max_pool`."""
    return x.max(axis=tuple(_spatial_axes(x.ndim, layout)))


def global_avg_pool(x, layout="channels_first"):
    """Global average pooling to (N, C); see :func:`fastpool.global_avg_pool`."""
    return x.mean(axis=tuple(_spatial_axes(x.ndim, layout)))


def _keep_spatial(grad_output, ndim, layout):
    """(N, C) gradient as (N, C, 1, ..) or (N, 1, .., C)."""
    return np.expand_dims(grad_output, tuple(_spatial_axes(ndim, layout)))


def global_max_pool_backward(grad_output, x, layout="channels_first"):
    """Gradient of :func:`global_max_pool` (argmax recomputed from ``x``)."""
    return adaptive_max_pool_backward(_keep_spatial(grad_output, x.ndim, layout), x, 1, layout)


def global_avg_pool_backward(grad_output, input_shape, layout="channels_first"):
    """Gradient of :func:`global_avg_pool`."""
    g = _keep_spatial(grad_output, len(input_shape), layout)
    spatial = [input_shape[a] for a in _spatial_axes(len(input_shape), layout)]
    return np.broadcast_to(g / int(np.prod(spatial)), tuple(input_shape)).copy()


def _as_channels_first(a, layout):
    return np.moveaxis(a, -1, 1) if layout == "channels_last" else a


def spatial_pyramid_pool(x, levels=(1, 2, 4), mode="max", layout="channels_first"):
    """Spatial pyramid pooling to (N, C * sum(bins)), level by level, each flattened
    as C x bins; see :func:`fastpool.spatial_pyramid_pool`."""
    pool = adaptive_max_pool if mode == "max" else adaptive_avg_pool
    return np.concatenate([_as_channels_first(pool(x, lv, layout), layout).reshape(x.shape[0], -1)
                           for lv in levels], axis=1)


def spatial_pyramid_pool_backward(grad_output, x, levels=(1, 2, 4), mode="max", layout="channels_first"):
    """Gradient of :func:`spatial_pyramid_pool`: the sum of every level's."""
    gx, off = np.zeros(x.shape, dtype=grad_output.dtype), 0
    for lv in levels:
        shape = _bins(x.shape, lv, layout)[0]
        cf = (shape[0], shape[-1]) + shape[1:-1] if layout == "channels_last" else shape
        n = int(np.prod(cf[1:]))
        g = grad_output[:, off:off + n].reshape(cf)
        g = np.moveaxis(g, 1, -1) if layout == "channels_last" else g
        gx += (adaptive_max_pool_backward(g, x, lv, layout) if mode == "max"
               else adaptive_avg_pool_backward(g, x.shape, lv, layout))
        off += n
    return gx


def _gem_parts(x, p, eps, layout):
    """The clamped input, p broadcastable to it, the spatial axes and the pooled size."""
    axes = tuple(_spatial_axes(x.ndim, layout))
    p = np.asarray(p, dtype=x.dtype)
    if p.ndim:  # one per channel
        p = p.reshape((-1,) + (1,) * len(axes)) if layout == "channels_first" else p
    return np.maximum(x, x.dtype.type(eps)), p, axes, int(np.prod([x.shape[a] for a in axes]))


def gem_pool(x, p=3.0, eps=1e-6, layout="channels_first"):
    """Global GeM pooling to (N, C): ``mean(max(x, eps)^p)^(1/p)``; see
    :func:`fastpool.gem_pool` (the windowed form is not in this baseline)."""
    xc, pb, axes, _ = _gem_parts(x, p, eps, layout)
    m = np.mean(xc ** pb, axis=axes)
    return m ** (1 / np.asarray(p, dtype=x.dtype))


def gem_pool_backward(grad_output, x, p=3.0, eps=1e-6, layout="channels_first"):
    """Gradient of :func:`gem_pool`: ``(grad_x, grad_p)``, grad_p summed over the batch
    (and over the channels for a scalar p, as a 0-d array)."""
    xc, pb, axes, d = _gem_parts(x, p, eps, layout)
    pn = np.asarray(p, dtype=x.dtype)
    xp = xc ** pb
    s = np.sum(xp, axis=axes)
    y = (s / d) ** (1 / pn)
    keep = _keep_spatial(grad_output * y ** (1 - pn) / d, x.ndim, layout)
    gx = np.where(x > eps, keep * xc ** (pb - 1), 0).astype(x.dtype)
    s_ln = np.sum(xp * np.log(xc), axis=axes)
    gp = (grad_output * y * (s_ln / (pn * s) - np.log(s / d) / pn ** 2)).astype(np.float64)
    gp = gp.sum(axis=0) if pn.ndim else gp.sum()
    return gx, np.asarray(gp, dtype=x.dtype)


# --- corner and center pooling (CornerNet, CenterNet) ------------------------------

_LINES = {"top": (0, True), "bottom": (0, False), "left": (1, True), "right": (1, False)}


def _line_axis(ndim, layout, axis):
    """The array axis of H (axis 0) or W (axis 1) of a (N, C, H, W) / (N, H, W, C) input."""
    return ndim - (3 if layout == "channels_last" else 2) + axis


def _corner_parts(direction):
    if direction in _LINES:
        return [direction]
    v, h = direction.split("_")
    return [v, h]


def _scan(x, direction, layout):
    """x seen in scan order of a direction: (view, axis)."""
    axis, reverse = _LINES[direction]
    ax = _line_axis(x.ndim, layout, axis)
    return (np.flip(x, ax) if reverse else x), ax


def corner_pool(x, direction, layout="channels_first"):
    """Corner pooling: the running maximum from an edge (a sum of two for a corner);
    see :func:`fastpool.corner_pool` (``x2`` is not in this baseline)."""
    y = None
    for d in _corner_parts(direction):
        v, ax = _scan(x, d, layout)
        part = _scan(np.maximum.accumulate(v, axis=ax), d, layout)[0]
        y = part if y is None else y + part
    return y


def corner_pool_backward(grad_output, x, direction, layout="channels_first"):
    """Gradient of :func:`corner_pool`: each gradient goes to the element that supplied
    its maximum, among equal maxima the one scanned first (CornerNet's rule)."""
    gx = np.zeros(x.shape, dtype=np.float64)
    for d in _corner_parts(direction):
        v, ax = _scan(x, d, layout)
        g = np.ascontiguousarray(_scan(grad_output, d, layout)[0])
        run = np.maximum.accumulate(v, axis=ax)
        prev = np.concatenate([np.take(run, [0], axis=ax), np.take(run, range(v.shape[ax] - 1), axis=ax)], axis=ax)
        k = np.arange(v.shape[ax]).reshape((-1,) + (1,) * (v.ndim - 1 - ax))
        record = (v > prev) | (np.isnan(v) & ~np.isnan(prev)) | (k == 0)
        source = np.maximum.accumulate(np.where(record, k, 0), axis=ax)
        stride = int(np.prod(v.shape[ax + 1:]))
        flat = np.arange(v.size).reshape(v.shape) + (source - k) * stride
        part = np.bincount(flat.reshape(-1), weights=g.reshape(-1), minlength=v.size).reshape(v.shape)
        gx += _scan(part, d, layout)[0]
    return gx.astype(x.dtype)


def center_pool(x, layout="channels_first"):
    """Center pooling: the maximum of the whole column plus that of the whole row
    through each position; see :func:`fastpool.center_pool`."""
    h, w = _line_axis(x.ndim, layout, 0), _line_axis(x.ndim, layout, 1)
    return x.max(axis=h, keepdims=True) + x.max(axis=w, keepdims=True)


def center_pool_backward(grad_output, x, layout="channels_first"):
    """Gradient of :func:`center_pool`: a line's summed gradient goes to its last
    maximum (a NaN: the last NaN), where CenterNet's ``bottom(top(.))`` routes it."""
    gx = np.zeros(x.shape, dtype=x.dtype)
    for axis in (0, 1):
        ax = _line_axis(x.ndim, layout, axis)
        rev, n = np.flip(x, ax), x.shape[ax]
        nan = np.isnan(rev)
        last = np.where(nan.any(axis=ax, keepdims=True), np.argmax(nan, axis=ax, keepdims=True),
                        np.argmax(rev, axis=ax, keepdims=True))
        last = n - 1 - last
        total = np.take_along_axis(gx, last, ax) + grad_output.sum(axis=ax, keepdims=True)
        np.put_along_axis(gx, last, total, ax)
    return gx


__all__ += ["corner_pool", "corner_pool_backward", "center_pool", "center_pool_backward"]


# --- max unpooling ---------------------------------------------------------------------


def _planes(a, layout):
    """(N, C, positions) view of a batched array."""
    a = _as_channels_first(a, layout)
    return a.reshape(a.shape[0], a.shape[1], -1)


def max_unpool(x, indices, kernel_size, stride=None, padding=0, output_size=None, layout="channels_first"):
    """Max unpooling (PyTorch's): zeros with ``x`` put at ``indices`` per plane; see
    :func:`fastpool.max_unpool` (``output_size``: the spatial sizes, or the default)."""
    rank = x.ndim - 2
    if output_size is None:
        k, s, p = _tuple(kernel_size, rank), _tuple(stride or kernel_size, rank), _tuple(padding, rank)
        spatial = x.shape[1:-1] if layout == "channels_last" else x.shape[2:]
        output_size = [(i - 1) * st - 2 * pp + kk for i, kk, st, pp in zip(spatial, k, s, p)]
    n, c = x.shape[0], x.shape[-1] if layout == "channels_last" else x.shape[1]
    y = np.zeros((n, c, int(np.prod(output_size))), dtype=x.dtype)
    np.put_along_axis(y, _planes(indices, layout), _planes(x, layout), axis=2)
    y = y.reshape((n, c) + tuple(output_size))
    return np.ascontiguousarray(np.moveaxis(y, 1, -1)) if layout == "channels_last" else y


def max_unpool_backward(grad_output, indices, kernel_size, stride=None, padding=0, output_size=None,
                        layout="channels_first"):
    """Gradient of :func:`max_unpool`: ``grad_output`` gathered at the indices."""
    gx = np.take_along_axis(_planes(grad_output, layout), _planes(indices, layout), axis=2)
    n, c = gx.shape[:2]
    spatial = indices.shape[1:-1] if layout == "channels_last" else indices.shape[2:]
    gx = gx.reshape((n, c) + tuple(spatial))
    return np.ascontiguousarray(np.moveaxis(gx, 1, -1)) if layout == "channels_last" else gx


__all__ += ["max_unpool", "max_unpool_backward"]


# --- SoftPool ------------------------------------------------------------------------------


def _soft_parts(x, g: _Geom):
    """Padded x (padding -inf: no weight), the window maxima and the weight sums S0, S1."""
    xp, m = _max_padded(x, g)
    s0, s1 = np.zeros_like(m), np.zeros_like(m)
    with np.errstate(invalid="ignore"):
        for t in g.taps():
            e = np.exp(xp[t] - m)
            s0 += e
            s1 += np.where(e == 0, 0, e * xp[t])
    return xp, m, s0, s1


def soft_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, layout="channels_first"):
    """SoftPool: ``sum e^x x / sum e^x`` over each window's taps inside the input; see
    :func:`fastpool.soft_pool`."""
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    _, m, s0, s1 = _soft_parts(x, g)
    return s1 / s0


def soft_pool_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       layout="channels_first"):
    """Gradient of :func:`soft_pool`: ``grad * e / S0 * (1 + x - y)`` summed over windows."""
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    xp, m, s0, s1 = _soft_parts(x, g)
    y = s1 / s0
    gp = np.zeros(xp.shape, dtype=grad_output.dtype)
    cf = grad_output / s0
    with np.errstate(invalid="ignore"):
        for t in g.taps():
            e = np.exp(xp[t] - m)
            gp[t] += np.where(e == 0, 0, cf * e * (1 + xp[t] - y))
    return np.ascontiguousarray(gp[g.interior()])


__all__ += ["soft_pool", "soft_pool_backward"]


# --- mixed pooling -------------------------------------------------------------------------


def _per_channel(alpha, dtype, ndim, layout):
    """alpha (scalar or (C,)) shaped to broadcast over the channel axis."""
    a = np.asarray(alpha, dtype=dtype)
    if a.ndim == 0:
        return a
    return a if layout == "channels_last" else a.reshape((-1,) + (1,) * (ndim - 2))


def mixed_pool(x, alpha, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               count_include_pad=None, layout="channels_first"):
    """``alpha * max_pool + (1 - alpha) * avg_pool``; see :func:`fastpool.mixed_pool`."""
    a = _per_channel(alpha, x.dtype, x.ndim, layout)
    m = max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    v = avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, None, dilation, layout)
    return a * m + (1 - a) * v


def mixed_pool_backward(grad_output, x, alpha, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        count_include_pad=None, layout="channels_first"):
    """``(grad_x, grad_alpha)`` of :func:`mixed_pool`."""
    a = _per_channel(alpha, x.dtype, x.ndim, layout)
    gm = max_pool_backward(grad_output * a, x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    gv = avg_pool_backward(grad_output * (1 - a), x.shape, kernel_size, stride, padding, ceil_mode,
                           count_include_pad, None, dilation, layout)
    m = max_pool(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    v = avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, None, dilation, layout)
    d = grad_output * (m - v)
    keep = x.ndim - 1 if layout == "channels_last" else 1
    ga = d.sum() if a.ndim == 0 else d.sum(axis=tuple(i for i in range(x.ndim) if i != keep))
    return gm + gv, np.asarray(ga, dtype=x.dtype)


__all__ += ["mixed_pool", "mixed_pool_backward"]


# --- stochastic pooling ----------------------------------------------------------------------


def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniforms(g: _Geom, shape_out, dtype, seed: int) -> np.ndarray:
    """fastpool.stochastic_pool's u of every window: a hash of (seed, n*C + c, window)."""
    n, c = shape_out[0], shape_out[-1] if g.cl else shape_out[1]
    planes = (np.arange(n, dtype=np.uint64)[:, None] * np.uint64(c) + np.arange(c, dtype=np.uint64)).reshape(
        (n,) + (1,) * (g.ndim - 2) + (c,) if g.cl else (n, c) + (1,) * (g.ndim - 2))
    wins = np.arange(int(np.prod(g.O)), dtype=np.uint64).reshape(
        (1,) + tuple(g.O) + (1,) if g.cl else (1, 1) + tuple(g.O))
    with np.errstate(over="ignore"):
        z = _mix64(_mix64(np.uint64(seed) ^ (planes * np.uint64(0x9E3779B97F4A7C15)))
                   + wins * np.uint64(0xD1B54A32D192ED03))
    if np.dtype(dtype) == np.float32:
        return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _draws(x, g: _Geom, seed: int):
    """Padded x and, per window, the number of its drawn tap (fastpool's rule)."""
    xp = _padded(x, g, 0.0)  # a zero tap is never drawn
    taps = g.taps()
    s = xp[taps[0]].copy()
    for t in taps[1:]:
        s += xp[t]
    thr = _uniforms(g, s.shape, x.dtype, seed) * s
    valid = g.spatial_mask(include_pad=False)
    pick = np.full(s.shape, -1, dtype=np.int64)
    first = np.full(s.shape, -1, dtype=np.int64)  # a window of zeros keeps its first tap inside x
    run = np.zeros_like(s)
    for i in range(len(taps) - 1, -1, -1):
        first = np.where(valid[taps[i]], i, first)
    for i, t in enumerate(taps):
        before = run > thr
        run = run + xp[t]
        hit = ~before & ((run > thr) | ((run == s) & (xp[t] > 0))) & (pick < 0)
        pick[hit] = i
    return xp, np.where(pick < 0, first, pick)


def stochastic_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, training=True, seed=0,
                    layout="channels_first"):
    """Stochastic pooling; see :func:`fastpool.stochastic_pool` (the same draws for an int seed)."""
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    if not training:
        xp = _padded(x, g, 0.0)
        s, q = np.zeros(g.out_shape(x.shape), x.dtype), np.zeros(g.out_shape(x.shape), x.dtype)
        for t in g.taps():
            s += xp[t]
            q += xp[t] * xp[t]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(s == 0, 0, q / s).astype(x.dtype)
    xp, pick = _draws(x, g, seed)
    y = np.zeros(pick.shape, x.dtype)
    for i, t in enumerate(g.taps()):
        np.copyto(y, xp[t], where=pick == i)
    return y


def stochastic_pool_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                             training=True, seed=0, layout="channels_first"):
    """Gradient of :func:`stochastic_pool` (training: to the draws of ``seed``)."""
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    taps = g.taps()
    if training:
        xp, pick = _draws(x, g, seed)
        gp = np.zeros(xp.shape, dtype=grad_output.dtype)
        for i, t in enumerate(taps):
            gp[t] += np.where(pick == i, grad_output, 0)
        return np.ascontiguousarray(gp[g.interior()])
    xp = _padded(x, g, 0.0)
    s, q = np.zeros_like(grad_output), np.zeros_like(grad_output)
    for t in taps:
        s += xp[t]
        q += xp[t] * xp[t]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = q / s
        cf = np.where(s == 0, 0, grad_output / s)
    y = np.where(s == 0, 0, y)
    gp = np.zeros(xp.shape, dtype=grad_output.dtype)
    for t in taps:
        gp[t] += cf * (2 * xp[t] - y)
    return np.ascontiguousarray(gp[g.interior()])


__all__ += ["stochastic_pool", "stochastic_pool_backward"]



# --- max-pooling dropout ------------------------------------------------------------------


def _fmix32(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _dropped(shape, layout: str, rate: float, seed: int) -> np.ndarray:
    """fastpool.max_pool_dropout's mask: True where an element of x is dropped."""
    cl = layout == "channels_last"
    n, c = shape[0], shape[-1] if cl else shape[1]
    spatial = shape[1:-1] if cl else shape[2:]
    planes = np.arange(n * c, dtype=np.uint64).reshape(n, c)
    with np.errstate(over="ignore"):
        key = _mix64(np.uint64(seed) ^ ((planes + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)))
    k0, k1 = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32), (key >> np.uint64(32)).astype(np.uint32)
    q = np.arange(int(np.prod(spatial)), dtype=np.uint64)
    lo, hi = (q & np.uint64(0xFFFFFFFF)).astype(np.uint32), (q >> np.uint64(32)).astype(np.uint32)
    h = _fmix32(_fmix32(lo[None, None, :] ^ k0[:, :, None]) ^ (k1[:, :, None] + hi[None, None, :]))
    m = h.astype(np.uint64) < np.uint64(int(np.floor(rate * 2.0**32)))
    m = m.reshape((n, c) + tuple(spatial))
    return np.moveaxis(m, 1, -1) if cl else m


def _rank_weights(x, g: _Geom, rate: float):
    """Padded x, and each window's taps' weights p q^c (c: taps ranked above, NaN highest,
    the earlier of equal values higher), stacked (taps, *out) in tap order."""
    xp = _padded(x, g, -np.inf)
    taps = g.taps()
    v = np.stack([xp[t] for t in taps[::-1]])  # reversed: a stable sort ranks the later of equals lower
    valid = np.stack([np.broadcast_to(g.spatial_mask(False)[t], v.shape[1:]) for t in taps[::-1]])
    order = np.argsort(np.where(valid, v, -np.inf), axis=0, kind="stable")  # NaN last, padding first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(len(taps)).reshape((-1,) + (1,) * (v.ndim - 1)), axis=0)
    p, q = x.dtype.type(1.0 - rate), x.dtype.type(rate)
    with np.errstate(under="ignore"):
        w = np.where(valid, p * q ** (len(taps) - 1 - rank).astype(x.dtype), 0).astype(x.dtype)
    return xp, w[::-1]


def max_pool_dropout(x, rate, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, training=True,
                     seed=0, layout="channels_first"):
    """Max-pooling dropout; see :func:`fastpool.max_pool_dropout` (the same mask for an int seed)."""
    if training:
        xd = np.where(_dropped(x.shape, layout, rate, seed), x.dtype.type(0), x)
        return max_pool(xd, kernel_size, stride, padding, dilation, ceil_mode, layout)
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    xp, w = _rank_weights(x, g, rate)
    y = np.zeros(g.out_shape(x.shape), x.dtype)
    with np.errstate(invalid="ignore"):
        for wi, t in zip(w, g.taps()):
            y += np.where(wi == 0, 0, wi * xp[t])
    return y


def max_pool_dropout_backward(grad_output, x, rate, kernel_size, stride=None, padding=0, dilation=1,
                              ceil_mode=False, training=True, seed=0, layout="channels_first"):
    """Gradient of :func:`max_pool_dropout` (training: the mask of ``seed``)."""
    if training:
        drop = _dropped(x.shape, layout, rate, seed)
        xd = np.where(drop, x.dtype.type(0), x)
        gx = max_pool_backward(grad_output, xd, kernel_size, stride, padding, dilation, ceil_mode, layout)
        gx[drop] = 0  # a dropped maximum's 0 is a constant
        return gx
    g = _Geom(x.shape, kernel_size, stride, padding, dilation, ceil_mode, layout)
    xp, w = _rank_weights(x, g, rate)
    gp = np.zeros(xp.shape, dtype=grad_output.dtype)
    for wi, t in zip(w, g.taps()):
        gp[t] += wi * grad_output
    return np.ascontiguousarray(gp[g.interior()])


__all__ += ["max_pool_dropout", "max_pool_dropout_backward"]

# --- fractional max pooling --------------------------------------------------------------


def _fractional_starts(u, in_size, out_size, k, dtype):
    """PyTorch's window starts of every output, per plane (u: one sample per plane)."""
    i = np.arange(out_size - 1, dtype=dtype)
    alpha = dtype(in_size - k) / dtype(max(out_size - 1, 1))
    s = ((i[None, :] + u[:, None]) * alpha).astype(np.int64) - (u * alpha).astype(np.int64)[:, None]
    return np.concatenate([s, np.full((len(u), 1), in_size - k, dtype=np.int64)], axis=1)


def fractional_max_pool(x, kernel_size, output_size=None, output_ratio=None, random_samples=None,
                        return_indices=False, layout="channels_first"):
    """Fractional max pooling of a batched input with given samples (N, C, rank); see
    :func:`fastpool.fractional_max_pool`."""
    y, idx = _fractional(x, kernel_size, output_size, random_samples, layout)
    return (y, idx) if return_indices else y


def _fractional(x, kernel_size, output_size, random_samples, layout):
    cl = layout == "channels_last"
    xc = np.moveaxis(x, -1, 1) if cl else x
    n, c = xc.shape[:2]
    rank = xc.ndim - 2
    k = _tuple(kernel_size, rank)
    o = _tuple(output_size, rank)
    u = np.asarray(random_samples, dtype=x.dtype).reshape(n * c, rank)
    order = (1, 0) if rank == 2 else (0, 1, 2)  # PyTorch: 2D samples are (W, H)
    planes = xc.reshape((n * c,) + xc.shape[2:])
    spatial = xc.shape[2:]
    starts = [_fractional_starts(u[:, order[a]], spatial[a], o[a], k[a], x.dtype.type) for a in range(rank)]
    y = np.full((n * c,) + o, -np.inf, dtype=x.dtype)
    idx = np.zeros((n * c,) + o, dtype=np.int64)
    flat = np.arange(int(np.prod(spatial))).reshape(spatial)
    rows = np.arange(n * c)
    for outs in itertools.product(*(range(v) for v in o)):
        first = True
        for taps in itertools.product(*(range(v) for v in k)):
            pos = tuple(starts[a][:, outs[a]] + taps[a] for a in range(rank))
            v = planes[(rows,) + pos]
            f = flat[pos]
            cur = y[(slice(None),) + outs]
            take = (v > cur) | np.isnan(v) | first
            y[(slice(None),) + outs] = np.where(take, v, cur)
            idx[(slice(None),) + outs] = np.where(take, f, idx[(slice(None),) + outs])
            first = False
    y = y.reshape((n, c) + o)
    idx = idx.reshape((n, c) + o)
    if cl:
        return np.ascontiguousarray(np.moveaxis(y, 1, -1)), np.ascontiguousarray(np.moveaxis(idx, 1, -1))
    return y, idx


def fractional_max_pool_backward(grad_output, x, kernel_size, output_size=None, random_samples=None,
                                 indices=None, layout="channels_first"):
    """Gradient of :func:`fractional_max_pool`: grad_output added at each maximum (the
    forward's indices, or found again from the samples)."""
    cl = layout == "channels_last"
    o = grad_output.shape[1:-1] if cl else grad_output.shape[2:]
    idx = indices if indices is not None else _fractional(x, kernel_size, o, random_samples, layout)[1]
    g = np.moveaxis(grad_output, -1, 1) if cl else grad_output
    ic = np.moveaxis(idx, -1, 1) if cl else idx
    n, c = g.shape[:2]
    gx = np.zeros((n * c, int(np.prod(x.shape[1:-1] if cl else x.shape[2:]))), dtype=grad_output.dtype)
    np.add.at(gx, (np.arange(n * c)[:, None], ic.reshape(n * c, -1)), g.reshape(n * c, -1))
    gx = gx.reshape((n, c) + (x.shape[1:-1] if cl else x.shape[2:]))
    return np.ascontiguousarray(np.moveaxis(gx, 1, -1)) if cl else gx


__all__ += ["fractional_max_pool", "fractional_max_pool_backward"]


# --- Hopfield pooling -------------------------------------------------------------------


def _hopfield_parts(x, queries, beta, layout):
    n = x.shape[0]
    X = x.reshape(n, -1, x.shape[-1]) if layout == "channels_last" else x.reshape(n, x.shape[1], -1).transpose(0, 2, 1)
    s = np.einsum("qc,nlc->nql", queries, X)
    a = np.exp(beta * s - (beta * s).max(axis=-1, keepdims=True))
    a /= a.sum(axis=-1, keepdims=True)
    return X, s, a


def hopfield_pool(x, queries, beta=1.0, layout="channels_first"):
    """Hopfield pooling; see :func:`fastpool.hopfield_pool` (softmax, matmul)."""
    X, _, a = _hopfield_parts(x, queries, beta, layout)
    return np.matmul(a, X).astype(x.dtype)


def hopfield_pool_backward(grad_output, x, queries, beta=1.0, layout="channels_first"):
    """Gradients of :func:`hopfield_pool`: (grad_x, grad_queries, grad_beta)."""
    X, s, a = _hopfield_parts(x, queries, beta, layout)
    da = np.matmul(grad_output, X.transpose(0, 2, 1))
    ds = a * (da - (a * da).sum(axis=-1, keepdims=True))
    gX = np.matmul(a.transpose(0, 2, 1), grad_output) + beta * np.matmul(ds.transpose(0, 2, 1), queries)
    gq = beta * np.einsum("nql,nlc->qc", ds, X)
    gb = np.asarray((ds * s).sum(), dtype=x.dtype)
    gx = gX.reshape(x.shape) if layout == "channels_last" else gX.transpose(0, 2, 1).reshape(x.shape)
    return gx.astype(x.dtype), gq.astype(x.dtype), gb


__all__ += ["hopfield_pool", "hopfield_pool_backward"]
