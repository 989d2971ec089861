"""Global and adaptive max/average pooling, 1D/2D/3D, forward and backward.

Adaptive pooling divides each spatial axis of size I into O bins with PyTorch's rule:
bin ``i`` covers input positions ``[floor(i*I/O), ceil((i+1)*I/O))``. Bins overlap
when I is not a multiple of O (the backward then accumulates), and O may exceed I.
Global pooling is the one-bin case, over every spatial axis.

Layouts, dtypes (float32, float64), strides and ``out=`` as in
:mod:`fastpool.pooling`. Max pooling follows PyTorch's rules: ties go to the first
maximum in row-major order; a NaN makes the output NaN and its index points at the
last NaN. Indices are int64, flat over each (n, c) spatial plane.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _bins
from ._validate import (
    Layout,
    _is_sequence,
    check_bool,
    check_float_array,
    check_layout,
    check_no_overlap,
    contiguous,
    output_array,
    shape_tuple,
)
from .pooling import _Prepared, _ranked

__all__ = [
    "global_max_pool",
    "global_max_pool1d",
    "global_max_pool2d",
    "global_max_pool3d",
    "global_max_pool_backward",
    "global_max_pool1d_backward",
    "global_max_pool2d_backward",
    "global_max_pool3d_backward",
    "global_avg_pool",
    "global_avg_pool1d",
    "global_avg_pool2d",
    "global_avg_pool3d",
    "global_avg_pool_backward",
    "global_avg_pool1d_backward",
    "global_avg_pool2d_backward",
    "global_avg_pool3d_backward",
    "adaptive_max_pool",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "adaptive_max_pool_backward",
    "adaptive_max_pool1d_backward",
    "adaptive_max_pool2d_backward",
    "adaptive_max_pool3d_backward",
    "adaptive_avg_pool",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_avg_pool_backward",
    "adaptive_avg_pool1d_backward",
    "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d_backward",
]

OutputSize = Union[int, None, Sequence[Optional[int]]]


def _forward(x, rank, layout, sizes, op, return_indices, out, keepdims):
    return_indices = check_bool(return_indices, "return_indices")
    # A channels_first view of channels_last memory is read in place when the result
    # may be a view too (no out=), or is layout-free ((N, C) without keepdims).
    layout_free = keepdims is False
    prep = _Prepared(x, rank, layout, allow_view=out is None or layout_free)
    klayout = prep.kernel_layout()
    grid = _bins.Grid(klayout, prep.view.shape, sizes(_bins.spatial_split(prep.view.shape, klayout)[2]), keepdims)
    y = output_array(out, grid.shape, prep.view.dtype)
    check_no_overlap(y, "out", prep.view)
    idx = np.empty(grid.shape, dtype=np.int64) if return_indices else None
    xm = prep.materialize()
    _bins.forward(grid.canon_in(xm), klayout.channels_last, op,
                  [(grid.bins, grid.level(y), None if idx is None else grid.level(idx))])
    if not layout_free:
        y = prep.to_user(y)
        idx = None if idx is None else prep.to_user(idx)
    return (y, idx) if return_indices else y


def _backward(grad_output, x, input_shape, rank, layout, sizes, op, indices, out, keepdims):
    channels_last = check_layout(layout)
    shape = x.shape if x is not None else input_shape
    lay = Layout(len(shape), rank, channels_last, "x" if x is not None else "input_shape")
    spatial = _bins.spatial_split(shape, lay)[2]
    grid = _bins.Grid(lay, shape, sizes(spatial), keepdims)
    dtype = x.dtype if x is not None else check_float_array(grad_output, "grad_output").dtype
    g = _bins.check_grad(grad_output, grid.shape, dtype)
    idx_c = None
    if indices is not None:  # indices and grad_output are read with the same strides
        idx_c = contiguous(_bins.check_indices(indices, grid.shape))
        g = contiguous(g)
    gx = output_array(out, shape, dtype)
    check_no_overlap(gx, "out", x, g, indices)
    xm = None if x is None or idx_c is not None else grid.canon_in(contiguous(x))
    bad = _bins.backward(xm, grid.canon_in(gx), lay.channels_last, op,
                         [(grid.bins, grid.level(_bins.readable(g)), None if idx_c is None else grid.level(idx_c))])
    if bad >= 0:
        raise _bins.bad_index_error(idx_c, bad, int(np.prod(grid.spatial)))
    return gx


def _global_sizes(spatial):
    return (1,) * len(spatial)


# ------------------------------------------------------------------ global

def global_max_pool(
    x: np.ndarray,
    rank: Optional[int] = None,
    keepdims: bool = False,
    return_indices: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Maximum over all spatial positions of each (n, c).

    ``y[n, c] = max over every spatial position of x[n, c, ...]``.

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, *spatial) for ``layout="channels_first"``, (N, *spatial, C) for
        ``"channels_last"``; unbatched input (no N) needs ``rank``.
    rank : int, optional
        Number of spatial axes (1, 2 or 3); default ``x.ndim - 2`` (batched input).
    keepdims : bool
        Keep the spatial axes as size 1 (Keras' name): (N, C, 1, 1) or (N, 1, 1, C);
        otherwise the result is (N, C) (or (C,) unbatched) in either layout.
    return_indices : bool
        Also return the int64 flat spatial index of each maximum.
    layout : "channels_first" or "channels_last"
    out : ndarray, optional
        C-contiguous array of the output's shape and dtype to write into.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> fastpool.global_max_pool(x)
    array([[3., 7.]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _bins.check_rank(rank, x.ndim)
    return _forward(x, rank, layout, _global_sizes, "max", return_indices, out, check_bool(keepdims, "keepdims"))


def global_avg_pool(
    x: np.ndarray,
    rank: Optional[int] = None,
    keepdims: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Mean over all spatial positions of each (n, c): ``y[n, c] = sum(x[n, c]) / (D*H*W)``.

    Parameters as :func:`global_max_pool`. The sum runs in row-major order on
    every SIMD path and thread count (bitwise-reproducible results).

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> fastpool.global_avg_pool(x, keepdims=True)
    array([[[[1.5]],
    <BLANKLINE>
            [[5.5]]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _bins.check_rank(rank, x.ndim)
    return _forward(x, rank, layout, _global_sizes, "avg", False, out, check_bool(keepdims, "keepdims"))


def global_max_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    rank: Optional[int] = None,
    keepdims: bool = False,
    indices: Optional[np.ndarray] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`global_max_pool`: ``grad_output`` routed to each plane's
    maximum (recomputed from ``x``, or taken from ``indices``).

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3., 2.]]], dtype=np.float32)
    >>> fastpool.global_max_pool_backward(np.ones((1, 1), np.float32), x)
    array([[[0., 1., 0.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _bins.check_rank(rank, x.ndim)
    return _backward(grad_output, x, None, rank, layout, _global_sizes, "max", indices, out,
                     check_bool(keepdims, "keepdims"))


def global_avg_pool_backward(
    grad_output: np.ndarray,
    input_shape: Sequence[int],
    rank: Optional[int] = None,
    keepdims: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`global_avg_pool`: every position of a plane receives
    ``grad_output[n, c] / (D*H*W)``. The result has ``input_shape`` and
    ``grad_output``'s dtype.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> fastpool.global_avg_pool_backward(np.ones((1, 1), np.float32), (1, 1, 4))
    array([[[0.25, 0.25, 0.25, 0.25]]], dtype=float32)
    """
    input_shape = shape_tuple(input_shape, "input_shape")
    rank = _bins.check_rank(rank, len(input_shape))
    return _backward(grad_output, None, input_shape, rank, layout, _global_sizes, "avg", None, out,
                     check_bool(keepdims, "keepdims"))


# ------------------------------------------------------------------ adaptive

def _sizes_of(output_size):
    return lambda spatial: _bins.output_sizes(output_size, spatial)


def adaptive_max_pool(
    x: np.ndarray,
    output_size: OutputSize,
    return_indices: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Adaptive max pooling to ``output_size`` (rank = ``len(output_size)``, or
    ``x.ndim - 2`` for an int).

    ``y[n, c, i, j] = max of x[n, c, h, w]`` over ``h`` in bin ``i`` and ``w`` in
    bin ``j``, bin ``i`` of an axis of size ``I`` cut into ``O`` being
    ``[floor(i*I/O), ceil((i+1)*I/O))`` (PyTorch's rule).

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, *spatial) / (C, *spatial), or (N, *spatial, C) / (*spatial, C) for
        ``layout="channels_last"``.
    output_size : int or tuple of int/None
        Bins per spatial axis; None keeps that axis' input size. May exceed the
        input size.
    return_indices : bool
        Also return int64 flat spatial indices of the maxima, as PyTorch.
    layout, out
        As :func:`fastpool.max_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 5., 2., 0., 4.]]], dtype=np.float32)
    >>> fastpool.adaptive_max_pool(x, (2,))
    array([[[5., 4.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _bins.rank_of_size(output_size, x.ndim)
    return _forward(x, rank, layout, _sizes_of(output_size), "max", return_indices, out, None)


def adaptive_avg_pool(
    x: np.ndarray,
    output_size: OutputSize,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Adaptive average pooling: the mean of each bin (bins as
    :func:`adaptive_max_pool`).

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 5., 2., 0., 4.]]], dtype=np.float32)
    >>> fastpool.adaptive_avg_pool(x, (2,))
    array([[[2.6666667, 2.       ]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _bins.rank_of_size(output_size, x.ndim)
    return _forward(x, rank, layout, _sizes_of(output_size), "avg", False, out, None)


def adaptive_max_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    output_size: OutputSize,
    indices: Optional[np.ndarray] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`adaptive_max_pool` with respect to ``x``.

    ``grad_x[argmax(bin)] += grad_output[bin]``; the argmax is recomputed from ``x``
    (same tie and NaN rules) unless ``indices`` from the forward are given.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 5., 2., 0., 4.]]], dtype=np.float32)
    >>> fastpool.adaptive_max_pool_backward(np.ones((1, 1, 2), np.float32), x, (2,))
    array([[[0., 1., 0., 0., 1.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _bins.rank_of_size(output_size, x.ndim)
    return _backward(grad_output, x, None, rank, layout, _sizes_of(output_size), "max", indices, out, None)


def adaptive_avg_pool_backward(
    grad_output: np.ndarray,
    input_shape: Sequence[int],
    output_size: OutputSize,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`adaptive_avg_pool`: each position receives
    ``grad_output[bin] / size(bin)`` from every bin containing it (written once per
    element, summed in bin order).

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> fastpool.adaptive_avg_pool_backward(np.ones((1, 1, 2), np.float32), (1, 1, 3), (2,))
    array([[[0.5, 1. , 0.5]]], dtype=float32)
    """
    input_shape = shape_tuple(input_shape, "input_shape")
    rank = _bins.rank_of_size(output_size, len(input_shape))
    return _backward(grad_output, None, input_shape, rank, layout, _sizes_of(output_size), "avg", None, out, None)


def _global_max_fixed(rank, x, keepdims=False, return_indices=False, layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _forward(x, rank, layout, _global_sizes, "max", return_indices, out, check_bool(keepdims, "keepdims"))


def _global_avg_fixed(rank, x, keepdims=False, layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _forward(x, rank, layout, _global_sizes, "avg", False, out, check_bool(keepdims, "keepdims"))


def _global_max_bwd_fixed(rank, grad_output, x, keepdims=False, indices=None, layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _backward(grad_output, x, None, rank, layout, _global_sizes, "max", indices, out,
                     check_bool(keepdims, "keepdims"))


def _global_avg_bwd_fixed(rank, grad_output, input_shape, keepdims=False, layout="channels_first", out=None):
    input_shape = shape_tuple(input_shape, "input_shape")
    return _backward(grad_output, None, input_shape, rank, layout, _global_sizes, "avg", None, out,
                     check_bool(keepdims, "keepdims"))


def _fixed_size(output_size: Any, rank: int) -> Any:
    if _is_sequence(output_size) and len(output_size) != rank:
        raise ValueError(f"output_size must have {rank} entries (one per spatial axis), got {output_size!r}")
    return output_size if _is_sequence(output_size) else (output_size,) * rank


def _adaptive_max_fixed(rank, x, output_size, return_indices=False, layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _forward(x, rank, layout, _sizes_of(_fixed_size(output_size, rank)), "max", return_indices, out, None)


def _adaptive_avg_fixed(rank, x, output_size, layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _forward(x, rank, layout, _sizes_of(_fixed_size(output_size, rank)), "avg", False, out, None)


def _adaptive_max_bwd_fixed(rank, grad_output, x, output_size, indices=None, layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _backward(grad_output, x, None, rank, layout, _sizes_of(_fixed_size(output_size, rank)), "max",
                     indices, out, None)


def _adaptive_avg_bwd_fixed(rank, grad_output, input_shape, output_size, layout="channels_first", out=None):
    input_shape = shape_tuple(input_shape, "input_shape")
    return _backward(grad_output, None, input_shape, rank, layout, _sizes_of(_fixed_size(output_size, rank)),
                     "avg", None, out, None)


global_max_pool1d = _ranked(1, "global_max_pool1d", _global_max_fixed, global_max_pool)
global_max_pool2d = _ranked(2, "global_max_pool2d", _global_max_fixed, global_max_pool)
global_max_pool3d = _ranked(3, "global_max_pool3d", _global_max_fixed, global_max_pool)
global_avg_pool1d = _ranked(1, "global_avg_pool1d", _global_avg_fixed, global_avg_pool)
global_avg_pool2d = _ranked(2, "global_avg_pool2d", _global_avg_fixed, global_avg_pool)
global_avg_pool3d = _ranked(3, "global_avg_pool3d", _global_avg_fixed, global_avg_pool)
global_max_pool1d_backward = _ranked(1, "global_max_pool1d_backward", _global_max_bwd_fixed, global_max_pool_backward)
global_max_pool2d_backward = _ranked(2, "global_max_pool2d_backward", _global_max_bwd_fixed, global_max_pool_backward)
global_max_pool3d_backward = _ranked(3, "global_max_pool3d_backward", _global_max_bwd_fixed, global_max_pool_backward)
global_avg_pool1d_backward = _ranked(1, "global_avg_pool1d_backward", _global_avg_bwd_fixed, global_avg_pool_backward)
global_avg_pool2d_backward = _ranked(2, "global_avg_pool2d_backward", _global_avg_bwd_fixed, global_avg_pool_backward)
global_avg_pool3d_backward = _ranked(3, "global_avg_pool3d_backward", _global_avg_bwd_fixed, global_avg_pool_backward)
adaptive_max_pool1d = _ranked(1, "adaptive_max_pool1d", _adaptive_max_fixed, adaptive_max_pool)
adaptive_max_pool2d = _ranked(2, "adaptive_max_pool2d", _adaptive_max_fixed, adaptive_max_pool)
adaptive_max_pool3d = _ranked(3, "adaptive_max_pool3d", _adaptive_max_fixed, adaptive_max_pool)
adaptive_avg_pool1d = _ranked(1, "adaptive_avg_pool1d", _adaptive_avg_fixed, adaptive_avg_pool)
adaptive_avg_pool2d = _ranked(2, "adaptive_avg_pool2d", _adaptive_avg_fixed, adaptive_avg_pool)
adaptive_avg_pool3d = _ranked(3, "adaptive_avg_pool3d", _adaptive_avg_fixed, adaptive_avg_pool)
adaptive_max_pool1d_backward = _ranked(1, "adaptive_max_pool1d_backward", _adaptive_max_bwd_fixed,
                                       adaptive_max_pool_backward)
adaptive_max_pool2d_backward = _ranked(2, "adaptive_max_pool2d_backward", _adaptive_max_bwd_fixed,
                                       adaptive_max_pool_backward)
adaptive_max_pool3d_backward = _ranked(3, "adaptive_max_pool3d_backward", _adaptive_max_bwd_fixed,
                                       adaptive_max_pool_backward)
adaptive_avg_pool1d_backward = _ranked(1, "adaptive_avg_pool1d_backward", _adaptive_avg_bwd_fixed,
                                       adaptive_avg_pool_backward)
adaptive_avg_pool2d_backward = _ranked(2, "adaptive_avg_pool2d_backward", _adaptive_avg_bwd_fixed,
                                       adaptive_avg_pool_backward)
adaptive_avg_pool3d_backward = _ranked(3, "adaptive_avg_pool3d_backward", _adaptive_avg_bwd_fixed,
                                       adaptive_avg_pool_backward)
