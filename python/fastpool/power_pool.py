"""Power-mean pooling: LP pooling and GeM (generalized mean), forward and backward.

* ``lp_pool``: ``y = (sum |x|^p)^(1/p)`` over each window's taps inside the input,
  the L_p norm of ONNX's LpPool. PyTorch's ``lp_pool2d`` omits the absolute value,
  so the two agree on non-negative input only (odd p differs on negative input).
* ``gem_pool``: ``y = (sum max(x, eps)^p / D)^(1/p)``, the generalized mean of
  Radenovic et al. (cirtorch); global by default, windowed with ``kernel_size``.

Both compute ``x^p`` by multiplications for p = 1, 2, 3, 4 and by exp/log otherwise,
relative to each window's maximum (``y = m (mean((x/m)^p))^(1/p)``), so large p never
overflows. Each call reads the input once (forward) or once per pass over a window
that stays in cache (backward): no temporaries the size of ``x``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _bins, _core
from ._validate import (
    Layout,
    check_bool,
    check_float_array,
    check_layout,
    check_no_overlap,
    contiguous,
    geometry,
    output_array,
)
from .pooling import IntOrTuple, Padding, _Prepared, _rank_of, _ranked

__all__ = [
    "lp_pool",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "lp_pool_backward",
    "lp_pool1d_backward",
    "lp_pool2d_backward",
    "lp_pool3d_backward",
    "gem_pool",
    "gem_pool_backward",
]

PArg = Union[float, Sequence[float], np.ndarray]


def _window_grid(layout: Layout, shape, kernel_size, stride, padding, dilation, ceil_mode,
                 count_include_pad: Optional[bool]) -> _bins.Grid:
    _bins.spatial_split(shape, layout)
    geom, is_same = geometry(shape, layout, kernel_size, stride, padding, dilation, ceil_mode)
    if count_include_pad is None:  # avg_pool's default: PyTorch's for numbers, Keras' for "same"
        count_include_pad = not is_same
    out_spatial = tuple(geom.out_sizes[3 - layout.rank:])
    return _bins.Grid(layout, shape, out_spatial, None, _core.Bins.window(geom, count_include_pad))


class _Spec:
    """The grid of a GeM / LP call: global (adaptive 1x1) or windowed."""

    def __init__(self, windowed: bool, rank: int, keepdims: Optional[bool], window_args: Tuple[Any, ...],
                 count_include_pad: bool) -> None:
        self.windowed = windowed
        self.rank = rank
        self.keepdims = keepdims
        self.window_args = window_args
        self.count_include_pad = count_include_pad

    def grid(self, layout: Layout, shape) -> _bins.Grid:
        if self.windowed:
            return _window_grid(layout, shape, *self.window_args, self.count_include_pad)
        return _bins.Grid(layout, shape, (1,) * self.rank, self.keepdims)


def _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad=False) -> _Spec:
    """The grid of a windowed reduction over a pooling window's taps."""
    return _Spec(True, rank, None, (kernel_size, stride, padding, dilation, ceil_mode), count_include_pad)


def _gem_spec(x_ndim, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, rank, keepdims):
    count_include_pad = check_bool(count_include_pad, "count_include_pad")
    keepdims = check_bool(keepdims, "keepdims")
    if kernel_size is None:
        for name, value, default in (("stride", stride, None), ("padding", padding, 0), ("dilation", dilation, 1),
                                     ("ceil_mode", ceil_mode, False)):
            if value is not default and not (type(value) is type(default) and value == default):
                raise ValueError(f"{name} needs kernel_size (global GeM has no windows), got {name}={value!r}")
        return _Spec(False, _bins.check_rank(rank, x_ndim), keepdims, (), False)
    win_rank = _rank_of(kernel_size, x_ndim)
    if rank is not None and _bins.check_rank(rank, x_ndim) != win_rank:
        raise ValueError(f"rank={rank!r} disagrees with kernel_size={kernel_size!r}")
    if keepdims:
        raise ValueError("keepdims applies to global GeM (kernel_size=None) only")
    return _window_spec(win_rank, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad)


def _param(op, p, channels, dtype):
    if op.startswith("dropout"):  # the rate, checked by max_pool_dropout
        return p, None, False
    if op == "mixed":
        return _bins.power_exponent(p, channels, dtype, "alpha", positive=False)
    return _bins.power_exponent(p, channels, dtype)


def _power_forward(x, spec: _Spec, op, p, eps, layout, out, seed=0, want_indices=False):
    """y, or (y, int64 positions) with want_indices (stochastic pooling's draws)."""
    layout_free = spec.keepdims is False
    prep = _Prepared(x, spec.rank, layout, allow_view=out is None or layout_free)
    klayout = prep.kernel_layout()
    grid = spec.grid(klayout, prep.view.shape)
    p_value, p_channel, _ = _param(op, p, grid.channels, prep.view.dtype)
    y = output_array(out, grid.shape, prep.view.dtype)
    check_no_overlap(y, "out", prep.view)
    idx = np.empty(grid.shape, dtype=np.int64) if want_indices else None
    xm = prep.materialize()
    if _bins.forward(grid.canon_in(xm), klayout.channels_last, op,
                     [(grid.bins, grid.level(y), None if idx is None else grid.level(idx))],
                     p_value, p_channel, eps, seed) >= 0:
        raise _bins.weight_error(x)
    if layout_free:
        return y
    return prep.to_user(y) if idx is None else (prep.to_user(y), prep.to_user(idx))


def _power_backward(grad_output, x, spec: _Spec, op, p, eps, layout, out, want_grad_p, seed=0):
    x = check_float_array(x, "x")
    lay = Layout(x.ndim, spec.rank, check_layout(layout), "x")
    grid = spec.grid(lay, x.shape)
    p_value, p_channel, per_channel = _param(op, p, grid.channels, x.dtype)
    g = _bins.check_grad(grad_output, grid.shape, x.dtype)
    gx = output_array(out, x.shape, x.dtype)
    check_no_overlap(gx, "out", x, g)
    grad_p = np.empty(grid.channels, dtype=x.dtype) if want_grad_p else None
    if _bins.backward(grid.canon_in(contiguous(x)), grid.canon_in(gx), lay.channels_last, op,
                      [(grid.bins, grid.level(_bins.readable(g)), None)], p_value, p_channel, eps, grad_p,
                      seed) >= 0:
        raise _bins.weight_error(x)
    if not want_grad_p:
        return gx
    if per_channel:
        return gx, grad_p
    return gx, np.asarray(grad_p.sum(dtype=x.dtype), dtype=x.dtype)


# ------------------------------------------------------------------ LP

def lp_pool(
    x: np.ndarray,
    p: float,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """LP pooling: the L_p norm of each window, ``y = (sum |x|^p)^(1/p)``.

    The sum runs over the window's taps inside the input (padding contributes 0).
    This is ONNX's LpPool; ``torch.nn.functional.lp_pool2d`` omits the absolute value,
    so the two agree on non-negative input. Geometry (``kernel_size``, ``stride``,
    ``padding`` incl. "same"/"valid", ``dilation``, ``ceil_mode``), layouts, ``out``
    as :func:`fastpool.max_pool`.

    Parameters
    ----------
    p : float
        The norm's exponent, finite and > 0.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[3., -4., 1., 0.]]], dtype=np.float32)
    >>> fastpool.lp_pool(x, 2, (2,))
    array([[[5., 1.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _rank_of(kernel_size, x.ndim)
    return _lp(x, rank, p, kernel_size, stride, padding, dilation, ceil_mode, layout, out)


def _lp(x, rank, p, kernel_size, stride, padding, dilation, ceil_mode, layout, out):
    spec = _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode)
    if np.ndim(p) != 0:
        raise TypeError(f"lp_pool's p must be a scalar, got {p!r}")
    return _power_forward(x, spec, "lp", p, 0.0, layout, out)


def lp_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    p: float,
    kernel_size: IntOrTuple,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`lp_pool` with respect to ``x``:
    ``grad_x_i = sum over windows of grad * sign(x_i) |x_i|^(p-1) y^(1-p)``, 0 where
    ``x_i = 0`` or ``y = 0``.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[3., -4.]]], dtype=np.float32)
    >>> fastpool.lp_pool_backward(np.ones((1, 1, 1), np.float32), x, 2, (2,))
    array([[[ 0.6, -0.8]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _rank_of(kernel_size, x.ndim)
    return _lp_backward(grad_output, x, rank, p, kernel_size, stride, padding, dilation, ceil_mode, layout, out)


def _lp_backward(grad_output, x, rank, p, kernel_size, stride, padding, dilation, ceil_mode, layout, out):
    spec = _window_spec(rank, kernel_size, stride, padding, dilation, ceil_mode)
    if np.ndim(p) != 0:
        raise TypeError(f"lp_pool_backward's p must be a scalar, got {p!r}")
    return _power_backward(grad_output, x, spec, "lp", p, 0.0, layout, out, False)


def _check_training_source(training, indices, seed, inference: str) -> bool:
    """Whether a stochastic reduction's backward is the training one; that one takes its
    taps from the forward's indices or its int seed (exactly one). ``inference``: what
    the inference form does not do ("draws", "drops")."""
    if not check_bool(training, "training"):
        if indices is not None or seed is not None:
            raise ValueError(f"indices and seed apply to training=True (the inference form {inference} nothing)")
        return False
    if (indices is None) == (seed is None):
        raise ValueError("the training backward needs the forward's indices or its int seed (exactly one)")
    if isinstance(seed, np.random.Generator):
        raise TypeError("the backward needs the forward's int seed: a Generator has moved on since the forward "
                        "(pass the forward's indices instead)")
    return True


def _route_backward(grad_output, x, spec: _Spec, rank, layout, out, indices, skip_minus_one=False):
    """grad_output added at the positions of ``indices`` (an array, or a function of no
    arguments giving it, called once grad_output is checked); -1 skipped if asked."""
    lay = Layout(x.ndim, rank, check_layout(layout), "x")
    grid = spec.grid(lay, x.shape)
    g = contiguous(_bins.check_grad(grad_output, grid.shape, x.dtype))
    if callable(indices):
        indices = indices()
    idx_c = contiguous(_bins.check_indices(indices, grid.shape))
    gx = output_array(out, x.shape, x.dtype)
    check_no_overlap(gx, "out", x, g, idx_c)
    _bins.route_to_indices(g, idx_c, gx, lay, grid.out_spatial, grid.spatial, skip_minus_one=skip_minus_one)
    return gx


def _lp_fixed(rank, x, p, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
              layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _lp(x, rank, p, kernel_size, stride, padding, dilation, ceil_mode, layout, out)


def _lp_bwd_fixed(rank, grad_output, x, p, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                  layout="channels_first", out=None):
    x = check_float_array(x, "x")
    return _lp_backward(grad_output, x, rank, p, kernel_size, stride, padding, dilation, ceil_mode, layout, out)


lp_pool1d = _ranked(1, "lp_pool1d", _lp_fixed, lp_pool)
lp_pool2d = _ranked(2, "lp_pool2d", _lp_fixed, lp_pool)
lp_pool3d = _ranked(3, "lp_pool3d", _lp_fixed, lp_pool)
lp_pool1d_backward = _ranked(1, "lp_pool1d_backward", _lp_bwd_fixed, lp_pool_backward)
lp_pool2d_backward = _ranked(2, "lp_pool2d_backward", _lp_bwd_fixed, lp_pool_backward)
lp_pool3d_backward = _ranked(3, "lp_pool3d_backward", _lp_bwd_fixed, lp_pool_backward)


# ------------------------------------------------------------------ GeM

def gem_pool(
    x: np.ndarray,
    p: PArg = 3.0,
    eps: float = 1e-6,
    kernel_size: Optional[IntOrTuple] = None,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = False,
    rank: Optional[int] = None,
    keepdims: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Generalized-mean (GeM) pooling: ``y = (sum max(x, eps)^p / D)^(1/p)``.

    Global by default (over every spatial position: D = D*H*W, output (N, C) or with
    ``keepdims`` the spatial axes kept as size 1, as :func:`global_avg_pool`);
    windowed when ``kernel_size`` is given (geometry as :func:`fastpool.avg_pool`,
    overlapping windows allowed; D = the window's taps inside the input, or with
    ``count_include_pad`` the taps inside the padded extent, avg_pool's rule).

    p = 1 is the mean of ``max(x, eps)``; p -> infinity tends to the maximum.
    NaN input gives NaN.

    Parameters
    ----------
    x : ndarray, float32 or float64
    p : float or array of shape (C,)
        Exponent (> 0, finite), one for all channels or one per channel.
    eps : float
        Clamp (> 0) applied before the power: keeps the gradient finite.
    kernel_size, stride, padding, dilation, ceil_mode, count_include_pad
        Windowed GeM; None (default) pools globally.
    rank : int, optional
        Spatial rank of global GeM for unbatched input (default x.ndim - 2).
    keepdims : bool
        Global GeM only: keep the spatial axes as size 1.
    layout, out
        As :func:`fastpool.max_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[[1., 2.], [3., 4.]]]], dtype=np.float32)
    >>> fastpool.gem_pool(x, p=1.0)
    array([[2.5]], dtype=float32)
    """
    x = check_float_array(x, "x")
    spec = _gem_spec(x.ndim, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, rank, keepdims)
    return _power_forward(x, spec, "gem", p, _bins.check_eps(eps, x.dtype), layout, out)


def gem_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    p: PArg = 3.0,
    eps: float = 1e-6,
    kernel_size: Optional[IntOrTuple] = None,
    stride: Optional[IntOrTuple] = None,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = False,
    rank: Optional[int] = None,
    keepdims: bool = False,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`gem_pool`: ``(grad_x, grad_p)``.

    With ``c = max(x, eps)``, ``S = sum c^p``, ``S_ln = sum c^p ln c`` and ``M = S/D``
    over a window::

        dy/dx_i = (1/D) x_i^(p-1) y^(1-p)   where x_i > eps, else 0
        dy/dp   = y (S_ln / (p S) - ln(M) / p^2)

    ``grad_p`` has p's shape (a 0-d array for a scalar p, (C,) per channel) and x's
    dtype, summed over the batch (and over the channels for a scalar p). ``out``
    receives ``grad_x``. Other parameters as :func:`gem_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[[1., 2.], [3., 4.]]]], dtype=np.float32)
    >>> gx, gp = fastpool.gem_pool_backward(np.ones((1, 1), np.float32), x, p=1.0)
    >>> gx
    array([[[[0.25, 0.25],
             [0.25, 0.25]]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    spec = _gem_spec(x.ndim, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad, rank, keepdims)
    return _power_backward(grad_output, x, spec, "gem", p, _bins.check_eps(eps, x.dtype), layout, out, True)
