"""SoftPool (Stergiou et al., ICCV 2021), forward and backward.

Each window's softmax-weighted mean: ``y = sum(e^x_i x_i) / sum(e^x_i)`` over the
window's taps inside the input (padding takes no part: it neither adds a weight nor
a value). Computed relative to the window's maximum m, ``e_i = exp(x_i - m) <= 1``,
so large inputs never overflow, and in one read of the input (forward) or one pass per
window kept in cache (backward), like :mod:`fastpool.power_pool`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._validate import check_float_array
from .pooling import IntOrTuple, Padding, _rank_of, _ranked
from .power_pool import _power_backward, _power_forward, _window_spec

__all__ = [
    "soft_pool",
    "soft_pool1d",
    "soft_pool2d",
    "soft_pool3d",
    "soft_pool_backward",
    "soft_pool1d_backward",
    "soft_pool2d_backward",
    "soft_pool3d_backward",
]


def soft_pool(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """SoftPool: the softmax-weighted mean of each window (Stergiou et al. 2021).

    ``y = sum_i w_i x_i`` with ``w_i = exp(x_i) / sum_j exp(x_j)`` over the window's taps
    inside the input (padding takes no part). Computed as
    ``sum exp(x_i - m) x_i / sum exp(x_i - m)`` with m the window maximum, so it is exact
    for any input scale. NaN in a window gives NaN; a window whose maximum is +inf gives
    +inf, one of only -inf gives -inf.

    Geometry (``kernel_size``, ``stride`` defaulting to ``kernel_size``, ``padding``
    incl. "same"/"valid", ``dilation``, ``ceil_mode``), shapes, layouts and ``out`` as
    :func:`fastpool.max_pool`; rank = ``len(kernel_size)`` (or ``x.ndim - 2`` for an
    int). The reference SoftPool code has 1D, 2D and 3D forms and no padding; with no
    padding the two agree.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[0., 0., 1., 1000.]]], dtype=np.float32)
    >>> fastpool.soft_pool(x, (2,))  # equal taps: their mean; a dominant tap: itself
    array([[[   0., 1000.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _soft(x, _rank_of(kernel_size, x.ndim), kernel_size, stride, padding, dilation, ceil_mode, layout, out)


def _soft(x, rank, kernel_size, stride, padding, dilation, ceil_mode, layout, out):
    return _power_forward(x, _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode), "soft", 1.0, 0.0,
                          layout, out)


def soft_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`soft_pool` with respect to ``x``:
    ``grad_x_i = sum over the windows holding i of grad * w_i (1 + x_i - y)``
    (``w_i`` the tap's softmax weight in that window). Windows whose maximum is
    infinite pass no gradient.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.zeros((1, 1, 2), dtype=np.float32)
    >>> fastpool.soft_pool_backward(np.ones((1, 1, 1), np.float32), x, (2,))
    array([[[0.5, 0.5]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _soft_backward(grad_output, x, _rank_of(kernel_size, x.ndim), kernel_size, stride, padding, dilation,
                          ceil_mode, layout, out)


def _soft_backward(grad_output, x, rank, kernel_size, stride, padding, dilation, ceil_mode, layout, out):
    return _power_backward(grad_output, x, _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode), "soft",
                           1.0, 0.0, layout, out, False)


def _soft_fixed(rank, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                layout="channels_first", out=None):
    return _soft(check_float_array(x, "x"), rank, kernel_size, stride, padding, dilation, ceil_mode, layout, out)


def _soft_bwd_fixed(rank, grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    layout="channels_first", out=None):
    return _soft_backward(grad_output, check_float_array(x, "x"), rank, kernel_size, stride, padding, dilation,
                          ceil_mode, layout, out)


soft_pool1d = _ranked(1, "soft_pool1d", _soft_fixed, soft_pool)
soft_pool2d = _ranked(2, "soft_pool2d", _soft_fixed, soft_pool)
soft_pool3d = _ranked(3, "soft_pool3d", _soft_fixed, soft_pool)
soft_pool1d_backward = _ranked(1, "soft_pool1d_backward", _soft_bwd_fixed, soft_pool_backward)
soft_pool2d_backward = _ranked(2, "soft_pool2d_backward", _soft_bwd_fixed, soft_pool_backward)
soft_pool3d_backward = _ranked(3, "soft_pool3d_backward", _soft_bwd_fixed, soft_pool_backward)
