"""Stochastic pooling (Zeiler & Fergus, ICLR 2013), forward and backward.

Training draws one tap per window with probability ``p_i = x_i / sum x`` and passes its
value; inference returns the probability-weighted mean ``sum p_i x_i = sum x^2 / sum x``.
The input must be non-negative (a ReLU's output).

Draws are reproducible: the uniform number of window ``w`` of plane ``n*C + c`` is a
counter-based hash of ``(seed, plane, window)``, so a seed gives the same samples at
any thread count and on every SIMD path, and the backward can draw them again from
the seed instead of being given the indices.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from ._validate import check_bool, check_float_array, draw_seed
from .pooling import IntOrTuple, Padding, _rank_of, _ranked
from .power_pool import _check_training_source, _power_backward, _power_forward, _route_backward, _window_spec

__all__ = [
    "stochastic_pool",
    "stochastic_pool1d",
    "stochastic_pool2d",
    "stochastic_pool3d",
    "stochastic_pool_backward",
    "stochastic_pool1d_backward",
    "stochastic_pool2d_backward",
    "stochastic_pool3d_backward",
]

Seed = Union[None, int, np.integer, np.random.Generator]


def stochastic_pool(
    x: np.ndarray,
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
    """Stochastic pooling (Zeiler & Fergus 2013).

    Over each window's taps inside the input (padding takes no part), with
    ``p_i = x_i / S`` and ``S = sum x_i``:

    * ``training=True``: draws one tap ``l`` with probability ``p_l``; ``y = x_l``.
      A window of zeros gives 0 (its first tap).
    * ``training=False``: ``y = sum p_i x_i = sum x_i^2 / S`` (0 for a window of zeros;
      the squares are summed in x's dtype, so values above ~1.8e19 in float32 overflow
      to inf there, and values below ~1e-19 lose precision).

    The draw: ``u`` uniform in [0, 1) from ``(seed, plane n*C + c, window w)`` (window
    index in row-major output order), then the first tap at which the running sum of
    the window (in x's dtype, taps in row-major order) exceeds ``u * S`` (where rounding
    leaves none, the last tap at which the running sum reaches ``S``). ``u`` is
    ``z >> 40`` / 2**24 (float32) or ``z >> 11`` / 2**53 (float64) of
    ``z = mix(mix(seed ^ plane * 0x9E3779B97F4A7C15) + w * 0xD1B54A32D192ED03)``, ``mix``
    being splitmix64's output function (arithmetic mod 2**64). The same seed gives the
    same draws at any thread count and on every SIMD path.

    Parameters
    ----------
    x : ndarray, float32 or float64, every value >= 0 and finite
        (N, C, *spatial) or (C, *spatial) (channels_last: (N, *spatial, C)). A window
        holding a negative, NaN or infinite value raises ValueError (``out`` is then
        unspecified).
    kernel_size, stride, padding, dilation, ceil_mode
        As :func:`fastpool.max_pool` (``stride`` defaults to ``kernel_size``).
    training : bool
        Draw (True, the default) or return the probability-weighted mean (False).
    seed : None, int in [0, 2**64) or numpy.random.Generator
        Training only. An int makes the draws reproducible (and lets the backward draw
        them again); a Generator gives one 64-bit draw of its stream as the seed; None
        draws from fresh OS entropy.
    return_indices : bool
        Training only: also return the drawn taps as int64 flat spatial positions
        (``(d * H + h) * W + w``, PyTorch's max pooling indices).
    layout, out
        As :func:`fastpool.max_pool`.

    Returns
    -------
    y, or ``(y, indices)``: shape (N, C, *out_spatial) in x's layout.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[0., 3., 1., 1.]]], dtype=np.float32)
    >>> fastpool.stochastic_pool(x, (2,), training=False)  # 9/3, 2/2
    array([[[3., 1.]]], dtype=float32)
    >>> y, idx = fastpool.stochastic_pool(x, (2,), seed=7, return_indices=True)
    >>> float(y[0, 0, 0]), int(idx[0, 0, 0])  # 0 has probability 0: the first window draws 3
    (3.0, 1)
    """
    x = check_float_array(x, "x")
    return _stochastic(x, _rank_of(kernel_size, x.ndim), kernel_size, stride, padding, dilation, ceil_mode,
                       training, seed, return_indices, layout, out)


def _stochastic(x, rank, kernel_size, stride, padding, dilation, ceil_mode, training, seed, return_indices,
                layout, out):
    spec = _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode)
    training = check_bool(training, "training")
    return_indices = check_bool(return_indices, "return_indices")
    if not training:
        if return_indices:
            raise ValueError("return_indices applies to training=True (inference draws nothing)")
        if seed is not None:
            raise ValueError("seed applies to training=True (inference draws nothing)")
        return _power_forward(x, spec, "stochastic_mean", 1.0, 0.0, layout, out)
    return _power_forward(x, spec, "stochastic", 1.0, 0.0, layout, out, draw_seed(seed), return_indices)


def stochastic_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
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
    """Gradient of :func:`stochastic_pool` with respect to ``x``.

    * ``training=True``: each window's gradient goes to its drawn tap, given as the
      forward's ``indices`` or drawn again from the forward's int ``seed`` (the same
      draws: same x, seed and geometry). Exactly one of the two is needed.
    * ``training=False``: ``dy/dx_i = (2 x_i - y) / S`` for every tap of a window
      (``S = sum x``); a window of zeros passes no gradient.

    Gradients of overlapping windows add up. Other parameters as :func:`stochastic_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3.]]], dtype=np.float32)
    >>> fastpool.stochastic_pool_backward(np.ones((1, 1, 1), np.float32), x, (2,), training=False)
    array([[[-0.125,  0.875]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _stochastic_backward(grad_output, x, _rank_of(kernel_size, x.ndim), kernel_size, stride, padding,
                                dilation, ceil_mode, training, indices, seed, layout, out)


def _stochastic_backward(grad_output, x, rank, kernel_size, stride, padding, dilation, ceil_mode, training,
                         indices, seed, layout, out):
    spec = _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode)
    if not _check_training_source(training, indices, seed, "draws"):
        return _power_backward(grad_output, x, spec, "stochastic_mean", 1.0, 0.0, layout, out, False)
    if indices is None:  # drawn again from the seed
        def indices():
            return _power_forward(x, spec, "stochastic", 1.0, 0.0, layout, None, draw_seed(seed), True)[1]
    return _route_backward(grad_output, x, spec, rank, layout, out, indices)


def _stochastic_fixed(rank, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, training=True,
                      seed=None, return_indices=False, layout="channels_first", out=None):
    return _stochastic(check_float_array(x, "x"), rank, kernel_size, stride, padding, dilation, ceil_mode, training,
                       seed, return_indices, layout, out)


def _stochastic_bwd_fixed(rank, grad_output, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                          training=True, indices=None, seed=None, layout="channels_first", out=None):
    return _stochastic_backward(grad_output, check_float_array(x, "x"), rank, kernel_size, stride, padding,
                                dilation, ceil_mode, training, indices, seed, layout, out)


stochastic_pool1d = _ranked(1, "stochastic_pool1d", _stochastic_fixed, stochastic_pool)
stochastic_pool2d = _ranked(2, "stochastic_pool2d", _stochastic_fixed, stochastic_pool)
stochastic_pool3d = _ranked(3, "stochastic_pool3d", _stochastic_fixed, stochastic_pool)
stochastic_pool1d_backward = _ranked(1, "stochastic_pool1d_backward", _stochastic_bwd_fixed, stochastic_pool_backward)
stochastic_pool2d_backward = _ranked(2, "stochastic_pool2d_backward", _stochastic_bwd_fixed, stochastic_pool_backward)
stochastic_pool3d_backward = _ranked(3, "stochastic_pool3d_backward", _stochastic_bwd_fixed, stochastic_pool_backward)
