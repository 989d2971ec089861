"""Mixed max-average pooling (Lee, Gallagher & Tu 2016; Yu et al. 2014), forward and backward.

``y = alpha * max + (1 - alpha) * avg`` over each window, with one ``alpha`` for every
channel or one per channel. Computed in one read of the input: each window's maximum
and sum come from the same pass (the bin reductions of :mod:`fastpool.power_pool`),
and the backward returns ``dL/dalpha`` beside ``dL/dx`` so ``alpha`` can be learned.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ._validate import check_float_array
from .pooling import IntOrTuple, Padding, _rank_of, _ranked
from .power_pool import _power_backward, _power_forward, _Spec, _window_spec

__all__ = [
    "mixed_pool",
    "mixed_pool1d",
    "mixed_pool2d",
    "mixed_pool3d",
    "mixed_pool_backward",
    "mixed_pool1d_backward",
    "mixed_pool2d_backward",
    "mixed_pool3d_backward",
]

Alpha = Union[float, Sequence[float], np.ndarray]


def _spec(rank, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad) -> _Spec:
    if count_include_pad is not None and not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool or None, got {count_include_pad!r}")
    cip = None if count_include_pad is None else bool(count_include_pad)
    return _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode, cip)


def mixed_pool(
    x: np.ndarray,
    alpha: Alpha,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    count_include_pad: Optional[bool] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Mixed max-average pooling: ``y = alpha * max + (1 - alpha) * avg`` per window.

    ``max`` is :func:`fastpool.max_pool`'s (padding never wins; NaN propagates) and
    ``avg`` is :func:`fastpool.avg_pool`'s with the same ``count_include_pad``, so the
    result equals ``alpha * max_pool(x) + (1 - alpha) * avg_pool(x)`` computed in one
    pass (the max exactly; the window sums may round differently from avg_pool's,
    which sums row by row in some channels_first cases). The formula is applied as written: ``alpha = 1`` with an infinite average
    gives NaN, as the composition does.

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, *spatial) or (C, *spatial) (channels_last: (N, *spatial, C)).
    alpha : float or array of shape (C,)
        Mixing weight, finite: one for all channels or one per channel (the learned
        per-channel form of Lee et al.). Values in [0, 1] interpolate between average
        (0) and max (1) pooling; others are allowed (a learned alpha may leave [0, 1]).
    kernel_size, stride, padding, dilation, ceil_mode
        As :func:`fastpool.max_pool` (``stride`` defaults to ``kernel_size``;
        ``padding`` may be "same" / "valid").
    count_include_pad : bool, optional
        The average's divisor, as :func:`fastpool.avg_pool`: None (default) is True
        for numeric padding (PyTorch) and False for "same" (Keras).
        ``divisor_override`` is not offered.
    layout, out
        As :func:`fastpool.max_pool`.

    Returns
    -------
    ndarray of x's dtype, shape (N, C, *out_spatial) in x's layout.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3., 2., 2.]]], dtype=np.float32)
    >>> fastpool.mixed_pool(x, 0.5, (2,))  # 0.5 * (3, 2) + 0.5 * (2, 2)
    array([[[2.5, 2. ]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _mixed(x, _rank_of(kernel_size, x.ndim), alpha, kernel_size, stride, padding, dilation, ceil_mode,
                  count_include_pad, layout, out)


def _mixed(x, rank, alpha, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, layout, out):
    spec = _spec(rank, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad)
    return _power_forward(x, spec, "mixed", alpha, 0.0, layout, out)


def mixed_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    alpha: Alpha,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    count_include_pad: Optional[bool] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`mixed_pool`: ``(grad_x, grad_alpha)``.

    Per window with gradient ``g``::

        grad_x[argmax] += alpha * g          (max_pool_backward's argmax: first maximum,
                                              a NaN where there is one)
        grad_x[i]      += (1 - alpha) * g / D  for every tap i (D: avg_pool's divisor)
        grad_alpha     += g * (max - avg)

    ``grad_alpha`` has alpha's shape (a 0-d array for a scalar alpha, (C,) per channel)
    and x's dtype, summed over the batch and the windows (and over the channels for a
    scalar alpha). ``out`` receives ``grad_x``. Other parameters as :func:`mixed_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3.]]], dtype=np.float32)
    >>> gx, ga = fastpool.mixed_pool_backward(np.ones((1, 1, 1), np.float32), x, 0.5, (2,))
    >>> gx, ga
    (array([[[0.25, 0.75]]], dtype=float32), array(1., dtype=float32))
    """
    x = check_float_array(x, "x")
    return _mixed_backward(grad_output, x, _rank_of(kernel_size, x.ndim), alpha, kernel_size, stride, padding,
                           dilation, ceil_mode, count_include_pad, layout, out)


def _mixed_backward(grad_output, x, rank, alpha, kernel_size, stride, padding, dilation, ceil_mode,
                    count_include_pad, layout, out):
    spec = _spec(rank, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad)
    return _power_backward(grad_output, x, spec, "mixed", alpha, 0.0, layout, out, True)


def _mixed_fixed(rank, x, alpha, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 count_include_pad=None, layout="channels_first", out=None):
    return _mixed(check_float_array(x, "x"), rank, alpha, kernel_size, stride, padding, dilation, ceil_mode,
                  count_include_pad, layout, out)


def _mixed_bwd_fixed(rank, grad_output, x, alpha, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False, count_include_pad=None, layout="channels_first", out=None):
    return _mixed_backward(grad_output, check_float_array(x, "x"), rank, alpha, kernel_size, stride, padding,
                           dilation, ceil_mode, count_include_pad, layout, out)


mixed_pool1d = _ranked(1, "mixed_pool1d", _mixed_fixed, mixed_pool)
mixed_pool2d = _ranked(2, "mixed_pool2d", _mixed_fixed, mixed_pool)
mixed_pool3d = _ranked(3, "mixed_pool3d", _mixed_fixed, mixed_pool)
mixed_pool1d_backward = _ranked(1, "mixed_pool1d_backward", _mixed_bwd_fixed, mixed_pool_backward)
mixed_pool2d_backward = _ranked(2, "mixed_pool2d_backward", _mixed_bwd_fixed, mixed_pool_backward)
mixed_pool3d_backward = _ranked(3, "mixed_pool3d_backward", _mixed_bwd_fixed, mixed_pool_backward)
