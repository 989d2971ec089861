"""Fractional max pooling (Graham 2014), 2D and 3D, PyTorch's interval rule.

Each (sample, channel) plane draws one number ``u`` in [0, 1) per spatial axis; the
window of output ``i`` along an axis of input size I, output size O and kernel k
starts at ``int((i + u) * alpha) - int(u * alpha)`` with ``alpha = (I - k) / (O - 1)``
(computed in x's dtype, as PyTorch does), and the last window at ``I - k``. Given the
same samples the result equals ``torch.nn.functional.fractional_max_pool2d/3d``
(``_random_samples``), values and indices.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _bins, _core
from ._config import get_num_threads
from ._validate import (
    Layout,
    _is_sequence,
    check_bool,
    check_float_array,
    check_layout,
    check_no_overlap,
    check_seed,
    contiguous,
    int_tuple,
    output_array,
)
from .pooling import _ranked

__all__ = [
    "fractional_max_pool",
    "fractional_max_pool2d",
    "fractional_max_pool3d",
    "fractional_max_pool_backward",
    "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward",
]

IntOrTuple = Union[int, Sequence[int]]
Seed = Union[None, int, np.integer, np.random.Generator]


def _rank(kernel_size: Any, ndim: int, rank: Optional[int]) -> int:
    if rank is None:
        rank = len(kernel_size) if _is_sequence(kernel_size) and not isinstance(kernel_size, (str, bytes)) \
            else ndim - 2
    if rank not in (2, 3):
        raise ValueError(f"fractional max pooling is 2D or 3D (PyTorch's); got a {rank}D call "
                         f"(kernel_size={kernel_size!r}, x.ndim={ndim})")
    return rank


def _output_sizes(output_size: Any, output_ratio: Any, spatial: Tuple[int, ...], kernel: Tuple[int, ...]
                  ) -> Tuple[int, ...]:
    rank = len(spatial)
    if (output_size is None) == (output_ratio is None):
        raise ValueError("give exactly one of output_size and output_ratio")
    if output_size is not None:
        out = int_tuple(output_size, rank, "output_size", 1)
    else:
        ratios = output_ratio if _is_sequence(output_ratio) else (output_ratio,) * rank
        if len(ratios) != rank:
            raise ValueError(f"output_ratio must be a float or {rank} floats, got {output_ratio!r}")
        for r in ratios:
            if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Real):
                raise TypeError(f"output_ratio must hold floats in (0, 1), got {output_ratio!r}")
            if not 0 < r < 1:
                raise ValueError(f"output_ratio must be in (0, 1), got {output_ratio!r}")
        out = tuple(int(i * float(r)) for i, r in zip(spatial, ratios))  # PyTorch: int(size * ratio)
        if min(out) < 1:
            raise ValueError(f"output_ratio={output_ratio!r} gives an empty output for spatial size {spatial}")
    for o, k, i in zip(out, kernel, spatial):
        if o + k - 1 > i:
            raise ValueError(f"output size {out} with kernel_size {kernel} does not fit the input's spatial "
                             f"size {spatial} (output + kernel - 1 must be <= input on every axis)")
    return out


def _samples(random_samples: Any, seed: Seed, batch: int, channels: int, rank: int, batched: bool,
             dtype: np.dtype) -> np.ndarray:
    """(N, C, rank) samples in [0, 1) in x's dtype, given or drawn."""
    if random_samples is not None:
        if seed is not None:
            raise ValueError("give random_samples or seed, not both")
        try:
            s = np.asarray(random_samples, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"random_samples must be an array of floats, got {type(random_samples).__name__}") \
                from None
        want = (batch, channels, rank)
        if s.shape != want and not (not batched and s.shape == want[1:]):
            raise ValueError(f"random_samples has shape {s.shape}, expected {want}"
                             + ("" if batched else f" or {want[1:]}") + " (one sample per plane and axis)")
        s = s.reshape(want).astype(dtype)
        if not np.all((s >= 0) & (s < 1)):
            raise ValueError(f"random_samples must be in [0, 1) in {np.dtype(dtype)}")
        return np.ascontiguousarray(s)
    seed = check_seed(seed, None)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.random((batch, channels, rank), dtype=dtype)


class _Call:
    """The checked shapes of one call."""

    def __init__(self, x: np.ndarray, rank: int, kernel_size: Any, layout: Any) -> None:
        self.rank = rank
        self.lay = Layout(x.ndim, rank, check_layout(layout), "x")
        if x.size == 0:
            raise ValueError(f"x has a zero-size dimension: shape {x.shape}")
        self.batch, self.channels, self.spatial = self.lay.split(x.shape)
        self.kernel = int_tuple(kernel_size, rank, "kernel_size", 1)
        for k, i in zip(self.kernel, self.spatial):
            if k > i:
                raise ValueError(f"kernel_size {self.kernel} exceeds the input's spatial size {self.spatial}")

    def canon(self, a: np.ndarray, spatial: Sequence[int]) -> np.ndarray:
        return a.reshape(self.lay.canonical(self.batch, self.channels, spatial))

    def run(self, x: np.ndarray, samples: np.ndarray, out_spatial: Tuple[int, ...], out: Optional[np.ndarray],
            want_indices: bool) -> Tuple[np.ndarray, np.ndarray]:
        shape = self.lay.join(self.batch, self.channels, out_spatial)
        y = output_array(out, shape, x.dtype)
        check_no_overlap(y, "out", x)
        idx = np.empty(shape, dtype=np.int64) if want_indices else None
        k3 = (1,) * (3 - self.rank) + self.kernel
        _core.fractional_max_forward(self.canon(contiguous(x), self.spatial), samples, self.canon(y, out_spatial),
                                     None if idx is None else self.canon(idx, out_spatial), k3, self.rank,
                                     self.lay.channels_last, get_num_threads())
        return y, idx


def fractional_max_pool(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    output_size: Optional[IntOrTuple] = None,
    output_ratio: Optional[Union[float, Sequence[float]]] = None,
    return_indices: bool = False,
    random_samples: Optional[np.ndarray] = None,
    seed: Seed = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Fractional max pooling (Graham 2014) with PyTorch's intervals.

    Windows of ``kernel_size`` start at pseudo-random positions (see the module
    docstring) so the output has ``output_size``, or ``int(size * output_ratio)`` per
    axis; each plane (n, c) has its own samples. Max and argmax as
    :func:`fastpool.max_pool` (first maximum; NaN propagates, the last NaN's index).

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, H, W) / (N, C, D, H, W), or unbatched without N; channels_last:
        (N, H, W, C) / (N, D, H, W, C).
    kernel_size : int or tuple of 2 or 3 ints
        Window size; a tuple's length is the rank (an int: rank ``x.ndim - 2``; or
        call :func:`fractional_max_pool2d` / ``3d``).
    output_size : int or tuple, optional
        Output spatial size; ``output + kernel - 1 <= input`` on every axis (PyTorch's
        2D rule; its 3D form refuses the equality, which works here in 3D too).
    output_ratio : float or tuple of floats in (0, 1), optional
        Instead of ``output_size``: ``int(input * ratio)``. Give exactly one.
    return_indices : bool
        Also return the int64 flat spatial position ``(d * H + h) * W + w`` of each
        maximum (PyTorch's indices; :func:`fractional_max_pool_backward` takes them).
    random_samples : array of shape (N, C, rank), optional
        The samples u in [0, 1) (PyTorch's ``_random_samples``, cast to x's dtype;
        unbatched x: (C, rank) or (1, C, rank)). PyTorch's order along the last axis:
        2D (W, H), 3D (D, H, W).
    seed : None, int or numpy.random.Generator
        Without ``random_samples``: the samples are
        ``numpy.random.default_rng(seed).random((N, C, rank), dtype)`` (a Generator is
        drawn from directly; None: fresh entropy).
    layout, out
        As :func:`fastpool.max_pool`.

    Returns
    -------
    y, or ``(y, indices)``.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    >>> u = np.zeros((1, 1, 2))                                 # starts 0, 1, 3
    >>> fastpool.fractional_max_pool(x, 2, output_size=3, random_samples=u)
    array([[[[ 6.,  7.,  9.],
             [11., 12., 14.],
             [21., 22., 24.]]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _fractional(x, _rank(kernel_size, x.ndim, None), kernel_size, output_size, output_ratio, return_indices,
                       random_samples, seed, layout, out)


def _fractional(x, rank, kernel_size, output_size, output_ratio, return_indices, random_samples, seed, layout,
                out):
    return_indices = check_bool(return_indices, "return_indices")
    call = _Call(x, rank, kernel_size, layout)
    out_spatial = _output_sizes(output_size, output_ratio, call.spatial, call.kernel)
    samples = _samples(random_samples, seed, call.batch, call.channels, rank, call.lay.batched, x.dtype)
    y, idx = call.run(x, samples, out_spatial, out, return_indices)
    return (y, idx) if return_indices else y


def fractional_max_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    output_size: Optional[IntOrTuple] = None,
    output_ratio: Optional[Union[float, Sequence[float]]] = None,
    indices: Optional[np.ndarray] = None,
    random_samples: Optional[np.ndarray] = None,
    seed: Optional[int] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`fractional_max_pool` with respect to ``x``: each output's
    gradient added at its maximum's position.

    The positions are the forward's ``indices``, or found again from the forward's
    ``random_samples`` or int ``seed`` (exactly one of the three). The output size is
    ``grad_output``'s; ``output_size`` / ``output_ratio`` may be passed as to the forward
    and must then agree with it. Other parameters as :func:`fractional_max_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    >>> g = fastpool.fractional_max_pool_backward(np.ones((1, 1, 3, 3), np.float32), x, 2,
    ...                                           random_samples=np.zeros((1, 1, 2)))
    >>> g[0, 0]
    array([[0., 0., 0., 0., 0.],
           [0., 1., 1., 0., 1.],
           [0., 1., 1., 0., 1.],
           [0., 0., 0., 0., 0.],
           [0., 1., 1., 0., 1.]], dtype=float32)
    """
    x = check_float_array(x, "x")
    return _fractional_backward(grad_output, x, _rank(kernel_size, x.ndim, None), kernel_size, output_size,
                                output_ratio, indices, random_samples, seed, layout, out)


def _fractional_backward(grad_output, x, rank, kernel_size, output_size, output_ratio, indices, random_samples,
                         seed, layout, out):
    call = _Call(x, rank, kernel_size, layout)
    g = check_float_array(grad_output, "grad_output")
    gl = Layout(g.ndim, rank, call.lay.channels_last, "grad_output")
    gb, gc, out_spatial = gl.split(g.shape)
    if gl.batched != call.lay.batched or (gb, gc) != (call.batch, call.channels):
        raise ValueError(f"grad_output has shape {g.shape}, which does not match x's batch and channels "
                         f"(x: {x.shape})")
    if (output_size is not None or output_ratio is not None) and \
            _output_sizes(output_size, output_ratio, call.spatial, call.kernel) != tuple(out_spatial):
        raise ValueError(f"grad_output's spatial size {tuple(out_spatial)} is not the output size that "
                         f"output_size={output_size!r} / output_ratio={output_ratio!r} give")
    if sum(a is not None for a in (indices, random_samples, seed)) != 1:
        raise ValueError("the backward needs exactly one of the forward's indices, random_samples or int seed")
    if seed is not None and (isinstance(seed, np.random.Generator) or seed is True or seed is False):
        raise TypeError("the backward needs the forward's int seed: a Generator has moved on since the forward "
                        "(pass the forward's indices or random_samples instead)")
    g = contiguous(_bins.check_grad(g, g.shape, x.dtype))
    if indices is None:
        _output_sizes(out_spatial, None, call.spatial, call.kernel)
        samples = _samples(random_samples, seed, call.batch, call.channels, rank, call.lay.batched, x.dtype)
        _, indices = call.run(x, samples, out_spatial, None, True)
    idx_c = contiguous(_bins.check_indices(indices, g.shape))
    gx = output_array(out, x.shape, x.dtype)
    check_no_overlap(gx, "out", x, g, idx_c)
    _bins.route_to_indices(g, idx_c, gx, call.lay, out_spatial, call.spatial)
    return gx


def _fixed(rank, x, kernel_size, output_size=None, output_ratio=None, return_indices=False, random_samples=None,
           seed=None, layout="channels_first", out=None):
    return _fractional(check_float_array(x, "x"), rank, kernel_size, output_size, output_ratio, return_indices,
                       random_samples, seed, layout, out)


def _bwd_fixed(rank, grad_output, x, kernel_size, output_size=None, output_ratio=None, indices=None,
               random_samples=None, seed=None, layout="channels_first", out=None):
    return _fractional_backward(grad_output, check_float_array(x, "x"), rank, kernel_size, output_size,
                                output_ratio, indices, random_samples, seed, layout, out)


fractional_max_pool2d = _ranked(2, "fractional_max_pool2d", _fixed, fractional_max_pool)
fractional_max_pool3d = _ranked(3, "fractional_max_pool3d", _fixed, fractional_max_pool)
fractional_max_pool2d_backward = _ranked(2, "fractional_max_pool2d_backward", _bwd_fixed,
                                         fractional_max_pool_backward)
fractional_max_pool3d_backward = _ranked(3, "fractional_max_pool3d_backward", _bwd_fixed,
                                         fractional_max_pool_backward)
