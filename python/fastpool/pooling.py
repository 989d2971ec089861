"""Max and average pooling, 1D/2D/3D, forward and backward.

Layouts: ``"channels_first"`` arrays are (N, C, *spatial), ``"channels_last"`` arrays
(N, *spatial, C); the batch dimension N is optional, as in PyTorch. Spatial rank is
1, 2 or 3.

Geometry along each spatial axis (input size I, kernel k, stride s, dilation d,
padding p_b before and p_e after): the window of output o covers input positions
``o*s - p_b + j*d`` for ``j = 0..k-1``, and::

    O = floor((I + p_b + p_e - d*(k-1) - 1) / s) + 1        (ceil with ceil_mode,
                                                           dropping a last window
                                                           that starts in the right
                                                           padding, as PyTorch)

``padding`` is an int, a per-axis tuple, per-side pairs ``((before, after), ...)``,
``"valid"`` (no padding), ``"same"`` (TensorFlow/ONNX SAME_UPPER: O = ceil(I/s), the
extra pad at the end) or ``"same_lower"`` (ONNX SAME_LOWER: the extra pad first). Any
padding is accepted as long as every window reads at least one input element.

Inputs of any strides are accepted; a C-contiguous input is never copied, other
strides are copied once (a channels_first array whose memory is channels_last, as
``x.transpose(0, 3, 1, 2)`` of an NHWC array, is read in place by the channels_last
kernel and the result has the same memory order). float32 and float64 are
supported; other dtypes are a TypeError, never silently cast.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._config import get_num_threads
from ._validate import (
    Layout,
    check_bool,
    check_float_array,
    check_layout,
    check_no_overlap,
    contiguous,
    geometry,
    output_array,
    shape_tuple,
)

__all__ = [
    "max_pool",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool_backward",
    "max_pool1d_backward",
    "max_pool2d_backward",
    "max_pool3d_backward",
    "avg_pool",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "avg_pool_backward",
    "avg_pool1d_backward",
    "avg_pool2d_backward",
    "avg_pool3d_backward",
]

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[int, str, Sequence[int], Sequence[Tuple[int, int]]]


def _rank_of(kernel_size: Any, ndim: int) -> int:
    if isinstance(kernel_size, (str, bytes)):
        raise TypeError(f"kernel_size must be an int or a tuple of ints, got {kernel_size!r}")
    if isinstance(kernel_size, (Sequence, np.ndarray)) and np.ndim(kernel_size) > 0:
        rank = len(kernel_size)
    else:
        rank = ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(
            f"spatial rank must be 1, 2 or 3 (len(kernel_size), or x.ndim - 2 for an int "
            f"kernel_size), got {rank}"
        )
    return rank


class _Prepared:
    """An input made ready for the kernels: C-contiguous in the kernel's layout.

    The memory is made contiguous only by :meth:`materialize`, after the geometry
    has been validated, so a bad argument never costs a copy of ``x``.
    """

    def __init__(self, x: np.ndarray, rank: int, layout: str, allow_view: bool) -> None:
        channels_last = check_layout(layout)
        self.layout = Layout(x.ndim, rank, channels_last, "x")
        self.kernel_channels_last = channels_last
        self.perm: Optional[Tuple[int, ...]] = None  # user axes -> memory axes
        if allow_view and not x.flags.c_contiguous and not channels_last:
            # channels_first view of channels_last memory: read it in place.
            b = 1 if self.layout.batched else 0
            perm = tuple(range(b)) + tuple(range(b + 1, x.ndim)) + (b,)
            if x.transpose(perm).flags.c_contiguous:
                self.kernel_channels_last = True
                self.perm = perm
        self.view = x.transpose(self.perm) if self.perm else x

    def materialize(self) -> np.ndarray:
        return contiguous(self.view)

    def kernel_layout(self) -> Layout:
        return Layout(self.layout.rank + (2 if self.layout.batched else 1), self.layout.rank,
                      self.kernel_channels_last)

    def to_user(self, y_memory: np.ndarray) -> np.ndarray:
        """A kernel-layout result seen in the user's layout (a view, no copy)."""
        if self.perm is None:
            return y_memory
        return y_memory.transpose(np.argsort(self.perm))


def _forward_setup(x, rank, layout, kernel_size, stride, padding, dilation, ceil_mode, out):
    x = check_float_array(x, "x")
    # The in-place channels_last reading returns a transposed view; with out= the
    # result must land in the caller's (C-contiguous) array, so x is copied instead.
    prep = _Prepared(x, rank, layout, allow_view=out is None)
    klayout = prep.kernel_layout()
    geom, is_same = geometry(prep.view.shape, klayout, kernel_size, stride, padding, dilation, ceil_mode)
    batch, channels, _ = klayout.split(prep.view.shape)
    out_spatial = tuple(geom.out_sizes[3 - rank:])
    y_shape = klayout.join(batch, channels, out_spatial)
    return prep, klayout, geom, is_same, y_shape


def _canon(a: np.ndarray, layout: Layout, geom: "_core.Geometry", which: str) -> np.ndarray:
    sizes = geom.in_sizes if which == "in" else geom.out_sizes
    return a.reshape(layout.canonical(geom.batch, geom.channels, sizes[3 - layout.rank:]))


def max_pool(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Max pooling over 1, 2 or 3 spatial axes (rank = ``len(kernel_size)``).

    ``y[n, c, o] = max_{j} x[n, c, o*s - p_b + j*d]`` over the window taps that fall
    inside the input (padding never wins).

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, *spatial) or (C, *spatial) for ``layout="channels_first"``;
        (N, *spatial, C) or (*spatial, C) for ``"channels_last"``.
    kernel_size, stride, dilation : int or tuple of ints
        Per spatial axis; ``stride`` defaults to ``kernel_size``.
    padding : int, tuple, ((before, after), ...), "valid", "same" or "same_lower"
    ceil_mode : bool
        Use ceil instead of floor for the output size (PyTorch's rule).
    return_indices : bool
        Also return int64 indices of the maxima, flat over the input's spatial
        plane of each (n, c), as ``torch.nn.functional.max_pool2d``.
    layout : "channels_first" or "channels_last"
    out : ndarray, optional
        C-contiguous array of the output's shape and dtype to write into.

    Returns
    -------
    y : ndarray, same dtype and layout as ``x``; ``(y, indices)`` if ``return_indices``.

    Ties go to the first maximum in row-major window order. A NaN in a window makes
    the output NaN and its index points at the (last) NaN, as in PyTorch.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> fastpool.max_pool(x, (2, 2))
    array([[[[ 5.,  7.],
             [13., 15.]]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _rank_of(kernel_size, x.ndim)
    return _max_pool(x, rank, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layout, out)


def _max_pool(x, rank, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layout, out):
    return_indices = check_bool(return_indices, "return_indices")
    prep, klayout, geom, _, y_shape = _forward_setup(
        x, rank, layout, kernel_size, stride, padding, dilation, ceil_mode, out)
    y = output_array(out, y_shape, prep.view.dtype)
    check_no_overlap(y, "out", prep.view)
    xm = prep.materialize()
    idx = np.empty(y_shape, dtype=np.int64) if return_indices else None
    _core.max_pool_forward(
        _canon(xm, klayout, geom, "in"), _canon(y, klayout, geom, "out"),
        None if idx is None else _canon(idx, klayout, geom, "out"), geom, get_num_threads())
    if return_indices:
        return prep.to_user(y), prep.to_user(idx)
    return prep.to_user(y)


def max_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    indices: Optional[np.ndarray] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`max_pool` with respect to ``x``.

    ``grad_x[argmax(window)] += grad_output[window]``, accumulating where windows
    overlap. Without ``indices`` the argmax is recomputed from ``x`` (the same tie
    and NaN rules as the forward), which saves storing int64 indices; with
    ``indices`` (from ``max_pool(..., return_indices=True)``) they are used as given,
    each checked to lie inside the spatial plane.

    Parameters
    ----------
    grad_output : ndarray
        Shape of the forward output, same dtype as ``x``.
    x : ndarray
        The forward input (its shape fixes the geometry).
    indices : ndarray of int64, optional
        Same shape as ``grad_output``.
    Other parameters as :func:`max_pool`.

    Returns
    -------
    grad_x : ndarray with the shape, dtype and layout of ``x``.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3., 2., 0.]]], dtype=np.float32)
    >>> fastpool.max_pool_backward(np.ones((1, 1, 2), np.float32), x, (2,))
    array([[[0., 1., 1., 0.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _rank_of(kernel_size, x.ndim)
    return _max_pool_backward(grad_output, x, rank, kernel_size, stride, padding, dilation,
                              ceil_mode, indices, layout, out)


def _max_pool_backward(grad_output, x, rank, kernel_size, stride, padding, dilation, ceil_mode,
                       indices, layout, out):
    x = check_float_array(x, "x")
    grad_output = check_float_array(grad_output, "grad_output")
    channels_last = check_layout(layout)
    lay = Layout(x.ndim, rank, channels_last, "x")
    geom, _ = geometry(x.shape, lay, kernel_size, stride, padding, dilation, ceil_mode)
    batch, channels, _ = lay.split(x.shape)
    y_shape = lay.join(batch, channels, geom.out_sizes[3 - rank:])
    if grad_output.shape != y_shape:
        raise ValueError(f"grad_output has shape {grad_output.shape}, expected {y_shape} (the forward output's)")
    if grad_output.dtype != x.dtype:
        raise TypeError(f"grad_output has dtype {grad_output.dtype}, expected {x.dtype} (x's)")
    if indices is not None:
        if not isinstance(indices, np.ndarray):
            raise TypeError(f"indices must be a numpy.ndarray, got {type(indices).__name__}")
        if indices.dtype != np.int64:
            raise TypeError(f"indices has dtype {indices.dtype}, expected int64")
        if indices.shape != y_shape:
            raise ValueError(f"indices has shape {indices.shape}, expected {y_shape}")
        indices = contiguous(indices)
    gx = output_array(out, x.shape, x.dtype)
    check_no_overlap(gx, "out", x, grad_output, indices)
    xm = contiguous(x) if indices is None else None
    bad = _core.max_pool_backward(
        _canon(contiguous(grad_output), lay, geom, "out"),
        None if xm is None else _canon(xm, lay, geom, "in"),
        None if indices is None else _canon(indices, lay, geom, "out"),
        _canon(gx, lay, geom, "in"), geom, get_num_threads())
    if bad >= 0:
        raise ValueError(
            f"indices holds {int(indices.reshape(-1)[bad])} at flat position {bad}, outside the "
            f"spatial plane [0, {geom.in_plane})")
    return gx


def avg_pool(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: Optional[bool] = None,
    divisor_override: Optional[int] = None,
    dilation: IntOrTuple = 1,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Average pooling over 1, 2 or 3 spatial axes (rank = ``len(kernel_size)``).

    ``y[o] = sum(x[taps inside the input]) / D`` where ``D`` is

    * ``divisor_override`` if given;
    * with ``count_include_pad``: the taps inside the padded extent
      ``[-p_b, I + p_e)`` per axis (the ceil-mode overhang is not counted, PyTorch's
      rule), multiplied over the axes;
    * otherwise the taps inside the input.

    ``count_include_pad`` defaults to True for numeric padding (PyTorch) and False
    for ``"same"``/``"same_lower"`` (TensorFlow/Keras). Parameters otherwise as
    :func:`max_pool`; ``dilation`` is supported (an extension over PyTorch).

    On every SIMD path and thread count the result is bitwise identical (the sums
    run in one fixed order without FMA contraction).

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> fastpool.avg_pool(x, 2)
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _rank_of(kernel_size, x.ndim)
    return _avg_pool(x, rank, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, dilation, layout, out)


def _avg_options(count_include_pad, divisor_override, is_same):
    if count_include_pad is None:
        count_include_pad = not is_same
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool or None, got {count_include_pad!r}")
    div = 0
    if divisor_override is not None:
        if isinstance(divisor_override, bool) or not isinstance(divisor_override, (int, np.integer)):
            raise TypeError(f"divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override < 1:
            raise ValueError(f"divisor_override must be >= 1, got {divisor_override!r}")
        div = int(divisor_override)
    return bool(count_include_pad), div


def _avg_pool(x, rank, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, dilation, layout, out):
    prep, klayout, geom, is_same, y_shape = _forward_setup(
        x, rank, layout, kernel_size, stride, padding, dilation, ceil_mode, out)
    include, div = _avg_options(count_include_pad, divisor_override, is_same)
    y = output_array(out, y_shape, prep.view.dtype)
    check_no_overlap(y, "out", prep.view)
    xm = prep.materialize()
    _core.avg_pool_forward(_canon(xm, klayout, geom, "in"), _canon(y, klayout, geom, "out"),
                           geom, include, div, get_num_threads())
    return prep.to_user(y)


def avg_pool_backward(
    grad_output: np.ndarray,
    input_shape: Sequence[int],
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    ceil_mode: bool = False,
    count_include_pad: Optional[bool] = None,
    divisor_override: Optional[int] = None,
    dilation: IntOrTuple = 1,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`avg_pool` with respect to its input.

    Each input position receives ``grad_output[o] / D(o)`` from every window ``o``
    whose taps include it. ``input_shape`` is the forward input's shape; the result
    has that shape and ``grad_output``'s dtype. Parameters as :func:`avg_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> g = np.ones((1, 1, 2), np.float32)
    >>> fastpool.avg_pool_backward(g, (1, 1, 4), (2,))
    array([[[0.5, 0.5, 0.5, 0.5]]], dtype=float32)
    """
    input_shape = shape_tuple(input_shape, "input_shape")
    rank = _rank_of(kernel_size, len(input_shape))
    return _avg_pool_backward(grad_output, input_shape, rank, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, dilation, layout, out)


def _avg_pool_backward(grad_output, input_shape, rank, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override, dilation, layout, out):
    grad_output = check_float_array(grad_output, "grad_output")
    input_shape = shape_tuple(input_shape, "input_shape")
    channels_last = check_layout(layout)
    lay = Layout(len(input_shape), rank, channels_last, "input_shape")
    geom, is_same = geometry(input_shape, lay, kernel_size, stride, padding, dilation, ceil_mode)
    include, div = _avg_options(count_include_pad, divisor_override, is_same)
    batch, channels, _ = lay.split(input_shape)
    y_shape = lay.join(batch, channels, geom.out_sizes[3 - rank:])
    if grad_output.shape != y_shape:
        raise ValueError(f"grad_output has shape {grad_output.shape}, expected {y_shape} (the forward output's)")
    gx = output_array(out, input_shape, grad_output.dtype)
    check_no_overlap(gx, "out", grad_output)
    _core.avg_pool_backward(_canon(contiguous(grad_output), lay, geom, "out"),
                            _canon(gx, lay, geom, "in"), geom, include, div, get_num_threads())
    return gx


def _ranked(rank: int, name: str, impl, template):
    """Fixed-rank wrapper (max_pool2d ...) with the generic function's docstring."""

    def wrapper(*args, **kwargs):
        return impl(rank, *args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = f"{rank}D form of :func:`{template.__name__}` (spatial rank fixed to {rank}).\n\n" + (
        template.__doc__ or "")
    return wrapper


def _max_fixed(rank, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, layout="channels_first", out=None):
    return _max_pool(x, rank, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layout, out)


def _max_bwd_fixed(rank, grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                   ceil_mode=False, indices=None, layout="channels_first", out=None):
    return _max_pool_backward(grad_output, x, rank, kernel_size, stride, padding, dilation,
                              ceil_mode, indices, layout, out)


def _avg_fixed(rank, x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=None, divisor_override=None, dilation=1,
               layout="channels_first", out=None):
    return _avg_pool(x, rank, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, dilation, layout, out)


def _avg_bwd_fixed(rank, grad_output, input_shape, kernel_size, stride=None, padding=0,
                   ceil_mode=False, count_include_pad=None, divisor_override=None, dilation=1,
                   layout="channels_first", out=None):
    return _avg_pool_backward(grad_output, input_shape, rank, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, dilation, layout, out)


max_pool1d = _ranked(1, "max_pool1d", _max_fixed, max_pool)
max_pool2d = _ranked(2, "max_pool2d", _max_fixed, max_pool)
max_pool3d = _ranked(3, "max_pool3d", _max_fixed, max_pool)
max_pool1d_backward = _ranked(1, "max_pool1d_backward", _max_bwd_fixed, max_pool_backward)
max_pool2d_backward = _ranked(2, "max_pool2d_backward", _max_bwd_fixed, max_pool_backward)
max_pool3d_backward = _ranked(3, "max_pool3d_backward", _max_bwd_fixed, max_pool_backward)
avg_pool1d = _ranked(1, "avg_pool1d", _avg_fixed, avg_pool)
avg_pool2d = _ranked(2, "avg_pool2d", _avg_fixed, avg_pool)
avg_pool3d = _ranked(3, "avg_pool3d", _avg_fixed, avg_pool)
avg_pool1d_backward = _ranked(1, "avg_pool1d_backward", _avg_bwd_fixed, avg_pool_backward)
avg_pool2d_backward = _ranked(2, "avg_pool2d_backward", _avg_bwd_fixed, avg_pool_backward)
avg_pool3d_backward = _ranked(3, "avg_pool3d_backward", _avg_bwd_fixed, avg_pool_backward)
