"""Max-pooling dropout (Wu & Gu, "Towards dropout training for convolutional neural
networks", Neural Networks 2015), forward and backward.

Training drops each input element with probability ``rate`` (it reads as 0) and max
pools what is left; inference takes the expectation of that maximum, the paper's
probabilistic weighted pooling ``sum_i p q^(n-i) a_(i)`` over the window's values
sorted ascending (``p = 1 - rate``, ``q = rate``).

The mask is a counter-based hash of (seed, plane n*C + c, element position), so a seed
gives the same mask at any thread count, on every SIMD path, in both layouts and both
dtypes, and the backward can make it again from the seed.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._validate import check_bool, check_float_array, draw_seed
from .pooling import IntOrTuple, Padding, _rank_of, _ranked
from .power_pool import _check_training_source, _power_backward, _power_forward, _route_backward, _window_spec

__all__ = [
    "max_pool_dropout",
    "max_pool_dropout1d",
    "max_pool_dropout2d",
    "max_pool_dropout3d",
    "max_pool_dropout_backward",
    "max_pool_dropout1d_backward",
    "max_pool_dropout2d_backward",
    "max_pool_dropout3d_backward",
]

Seed = Union[None, int, np.integer, np.random.Generator]


def _check_rate(rate: Any) -> float:
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise TypeError(f"rate must be a float in [0, 1] (the probability of dropping an element), got {rate!r}")
    v = float(rate)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"rate must be in [0, 1] (the probability of dropping an element), got {rate!r}")
    return v


def max_pool_dropout(
    x: np.ndarray,
    rate: float,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    training: bool = True,
    seed: Seed = None,
    return_indices: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Max-pooling dropout (Wu & Gu 2015).

    Over each window's taps inside the input (padding takes no part):

    * ``training=True``: every element of x is dropped with probability ``rate``
      (replaced by 0, so a dropped NaN or inf takes no part), then
      ``y = max_pool(x_dropped)`` with max pooling's rules (the first maximum; NaN
      propagates). The mask belongs to the input element: overlapping windows see the
      same one. No 1 / (1 - rate) rescaling (the paper's form).
    * ``training=False``: the expectation of the training output for x >= 0, the
      paper's probabilistic weighted pooling: with ``p = 1 - rate``, ``q = rate``,
      ``y = sum_i p q^c_i x_i``, ``c_i`` the number of taps ranked above tap i in
      ascending order (NaN above every number, the earlier of equal values above, so
      ``rate=0`` gives max pooling's value and gradient). A term of weight 0 adds 0,
      even for an infinite tap. For negative inputs this is the paper's formula, not
      the expectation (a dropped element's 0 can exceed them).

    The mask: element q (flat spatial position ``(d * H + h) * W + w``) of plane
    ``P = n*C + c`` is dropped when ``h < floor(rate * 2**32)``, where
    ``key = mix(seed ^ (P + 1) * 0x9E3779B97F4A7C15)`` (``mix``: splitmix64's output function,
    arithmetic mod 2**64), ``k0, k1`` its low and high 32 bits and
    ``h = f(f((q mod 2**32) ^ k0) ^ ((k1 + q // 2**32) mod 2**32))``, ``f`` being
    MurmurHash3's 32-bit finalizer. It is the same for float32 and float64, both
    layouts, every SIMD path and thread count.

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, *spatial) or (C, *spatial) (channels_last: (N, *spatial, C)).
    rate : float in [0, 1]
        The probability that an element is dropped.
    kernel_size, stride, padding, dilation, ceil_mode
        As :func:`fastpool.max_pool` (``stride`` defaults to ``kernel_size``).
    training : bool
        Drop and max pool (True, the default) or return the weighted form (False).
    seed : None, int in [0, 2**64) or numpy.random.Generator
        Training only. An int makes the mask reproducible (and lets the backward make
        it again); a Generator gives one 64-bit draw of its stream as the seed; None
        draws from fresh OS entropy.
    return_indices : bool
        Training only: also return each window's winning tap as an int64 flat spatial
        position (PyTorch's max pooling indices), or -1 where the maximum is a dropped
        element's 0 (which passes no gradient).
    layout, out
        As :func:`fastpool.max_pool`.

    Returns
    -------
    y, or ``(y, indices)``: shape (N, C, *out_spatial) in x's layout.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3., 2.]]], dtype=np.float32)
    >>> fastpool.max_pool_dropout(x, 0.5, (3,), training=False)  # .5*1*3 + .5*.5*2 + .5*.25*1
    array([[[2.125]]], dtype=float32)
    >>> fastpool.max_pool_dropout(x, 0.0, (3,), seed=1)  # nothing dropped: max pooling
    array([[[3.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _dropout(x, _rank_of(kernel_size, x.ndim), rate, kernel_size, stride, padding, dilation, ceil_mode,
                    training, seed, return_indices, layout, out)


def _dropout(x, rank, rate, kernel_size, stride, padding, dilation, ceil_mode, training, seed, return_indices,
             layout, out):
    rate = _check_rate(rate)
    spec = _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode)
    training = check_bool(training, "training")
    return_indices = check_bool(return_indices, "return_indices")
    if not training:
        if return_indices:
            raise ValueError("return_indices applies to training=True (inference drops nothing)")
        if seed is not None:
            raise ValueError("seed applies to training=True (inference drops nothing)")
        return _power_forward(x, spec, "dropout_mean", rate, 0.0, layout, out)
    return _power_forward(x, spec, "dropout", rate, 0.0, layout, out, draw_seed(seed), return_indices)


def max_pool_dropout_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    rate: float,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    training: bool = True,
    indices: Optional[np.ndarray] = None,
    seed: Optional[int] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`max_pool_dropout` with respect to ``x``.

    * ``training=True``: each window's gradient goes to its winning tap when that tap
      was kept (a dropped maximum's 0 is a constant). The winners are given as the
      forward's ``indices`` (-1: none) or found again from the forward's int ``seed``
      (the same mask: same x, rate, seed and geometry). Exactly one of the two.
    * ``training=False``: ``dy/dx_i = p q^c_i`` for every tap of a window (the
      weights of the forward).

    Gradients of overlapping windows add up. Other parameters as :func:`max_pool_dropout`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3., 2.]]], dtype=np.float32)
    >>> g = np.ones((1, 1, 1), np.float32)
    >>> fastpool.max_pool_dropout_backward(g, x, 0.5, (3,), training=False)
    array([[[0.125, 0.5  , 0.25 ]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _dropout_backward(grad_output, x, _rank_of(kernel_size, x.ndim), rate, kernel_size, stride, padding,
                             dilation, ceil_mode, training, indices, seed, layout, out)


def _dropout_backward(grad_output, x, rank, rate, kernel_size, stride, padding, dilation, ceil_mode, training,
                      indices, seed, layout, out):
    rate = _check_rate(rate)
    spec = _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode)
    if not _check_training_source(training, indices, seed, "drops"):
        return _power_backward(grad_output, x, spec, "dropout_mean", rate, 0.0, layout, out, False)
    if seed is not None:
        return _power_backward(grad_output, x, spec, "dropout", rate, 0.0, layout, out, False, draw_seed(seed))
    return _route_backward(grad_output, x, spec, rank, layout, out, indices, skip_minus_one=True)


def _dropout_fixed(rank, x, rate, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, training=True,
                   seed=None, return_indices=False, layout="channels_first", out=None):
    return _dropout(check_float_array(x, "x"), rank, rate, kernel_size, stride, padding, dilation, ceil_mode,
                    training, seed, return_indices, layout, out)


def _dropout_bwd_fixed(rank, grad_output, x, rate, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       training=True, indices=None, seed=None, layout="channels_first", out=None):
    return _dropout_backward(grad_output, check_float_array(x, "x"), rank, rate, kernel_size, stride, padding,
                             dilation, ceil_mode, training, indices, seed, layout, out)


max_pool_dropout1d = _ranked(1, "max_pool_dropout1d", _dropout_fixed, max_pool_dropout)
max_pool_dropout2d = _ranked(2, "max_pool_dropout2d", _dropout_fixed, max_pool_dropout)
max_pool_dropout3d = _ranked(3, "max_pool_dropout3d", _dropout_fixed, max_pool_dropout)
max_pool_dropout1d_backward = _ranked(1, "max_pool_dropout1d_backward", _dropout_bwd_fixed, max_pool_dropout_backward)
max_pool_dropout2d_backward = _ranked(2, "max_pool_dropout2d_backward", _dropout_bwd_fixed, max_pool_dropout_backward)
max_pool_dropout3d_backward = _ranked(3, "max_pool_dropout3d_backward", _dropout_bwd_fixed, max_pool_dropout_backward)
