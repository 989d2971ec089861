"""Max unpooling (PyTorch's ``max_unpool1d/2d/3d``), forward and backward.

The partial inverse of max pooling: each pooled value goes back to the position its
index names, every other output element is zero. Indices are int64, flat over the
output's spatial positions of each (n, c) plane, as :func:`fastpool.max_pool` returns
them (``return_indices=True``) in either layout.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _bins, _core
from ._config import get_num_threads
from ._validate import (
    Layout, _is_sequence, check_float_array, check_layout, check_no_overlap, contiguous, int_tuple, output_array,
    shape_tuple,
)

__all__ = [
    "max_unpool",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "max_unpool_backward",
    "max_unpool1d_backward",
    "max_unpool2d_backward",
    "max_unpool3d_backward",
]

IntOrTuple = Union[int, Sequence[int]]


def _rank_of(kernel_size: Any) -> int:
    if isinstance(kernel_size, (str, bytes)) or not _is_sequence(kernel_size):
        raise TypeError(f"kernel_size of max_unpool must be a tuple of 1, 2 or 3 ints (its length is the "
                        f"spatial rank; or call max_unpool1d/2d/3d), got {kernel_size!r}")
    if len(kernel_size) not in (1, 2, 3):
        raise ValueError(f"kernel_size must have 1, 2 or 3 entries, got {kernel_size!r}")
    return len(kernel_size)


class _Unpool:
    """The checked geometry of one call: the pooled shape (x, indices, grad_x) and
    the unpooled shape (y, grad_output)."""

    def __init__(self, rank: int, pooled_shape: Tuple[int, ...], name: str, kernel_size: Any, stride: Any,
                 padding: Any, output_size: Any, layout: Any) -> None:
        self.channels_last = check_layout(layout)
        self.lay = Layout(len(pooled_shape), rank, self.channels_last, name)
        if any(s == 0 for s in pooled_shape):
            raise ValueError(f"{name} has a zero-size dimension: shape {pooled_shape}")
        k = int_tuple(kernel_size, rank, "kernel_size", 1)
        s = k if stride is None else int_tuple(stride, rank, "stride", 1)
        p = int_tuple(padding, rank, "padding", 0)
        self.batch, self.channels, spatial = self.lay.split(pooled_shape)
        default = tuple(_core.unpool_default_size(i, kk, ss, pp) for i, kk, ss, pp in zip(spatial, k, s, p))
        out_spatial = default if output_size is None else self._requested(output_size, default, s, rank)
        self.pooled_shape = tuple(pooled_shape)
        self.unpooled_shape = self.lay.join(self.batch, self.channels, out_spatial)
        self.in_size, self.out_size = int(np.prod(spatial)), int(np.prod(out_spatial))

    def _requested(self, output_size: Any, default: Tuple[int, ...], stride: Tuple[int, ...],
                   rank: int) -> Tuple[int, ...]:
        size = shape_tuple(output_size, "output_size")
        if len(size) == rank + 2:  # a batched shape (torch's whole-shape form): its spatial entries
            size = Layout(rank + 2, rank, self.channels_last).split(size)[2]
        elif len(size) == rank + 1 and not self.lay.batched:  # the shape of an unbatched output
            size = self.lay.split(size)[2]
        elif len(size) != rank:
            raise ValueError(f"output_size must have {rank} entries (the spatial sizes) or be a whole output "
                             f"shape ({rank + 2} entries, or {rank + 1} for an unbatched input), got {output_size!r}")
        if any(o < 1 for o in size):
            raise ValueError(f"output_size entries must be >= 1, got {output_size!r}")
        for a, (o, d, st) in enumerate(zip(size, default, stride)):
            if not d - st < o < d + st:  # PyTorch's rule: the sizes max pooling maps to the input's
                raise ValueError(f"output_size {tuple(size)} is invalid: entry {a} must be in ({d - st}, {d + st}) "
                                 f"(the default size {d} -/+ stride {st}, exclusive), got {o}")
        return tuple(size)

    def canonical(self, a: np.ndarray, pooled: bool) -> np.ndarray:
        n = self.in_size if pooled else self.out_size
        shape = (self.batch, n, self.channels) if self.channels_last else (self.batch, self.channels, n)
        return a.reshape(shape)

    def raise_bad(self, bad: int, indices: np.ndarray) -> None:
        if bad >= 0:
            raise _bins.bad_index_error(indices, bad, self.out_size)


def _max_unpool(x, indices, rank, kernel_size, stride, padding, output_size, layout, out):
    x = check_float_array(x, "x")
    g = _Unpool(rank, x.shape, "x", kernel_size, stride, padding, output_size, layout)
    idx = contiguous(_bins.check_indices(indices, g.pooled_shape))
    y = output_array(out, g.unpooled_shape, x.dtype)
    check_no_overlap(y, "out", x, idx)
    bad = _core.max_unpool_forward(g.canonical(contiguous(x), True), g.canonical(idx, True),
                                   g.canonical(y, False), g.channels_last, get_num_threads())
    g.raise_bad(bad, idx)
    return y


def _max_unpool_backward(grad_output, indices, rank, kernel_size, stride, padding, output_size, layout, out):
    grad_output = check_float_array(grad_output, "grad_output")
    idx = _bins.check_indices(indices, np.shape(indices))
    g = _Unpool(rank, idx.shape, "indices", kernel_size, stride, padding, output_size, layout)
    idx = contiguous(idx)
    if grad_output.shape != g.unpooled_shape:
        raise ValueError(f"grad_output has shape {grad_output.shape}, expected {g.unpooled_shape} (the forward "
                         f"output's)")
    gx = output_array(out, g.pooled_shape, grad_output.dtype)
    check_no_overlap(gx, "out", grad_output, idx)
    bad = _core.max_unpool_backward(g.canonical(contiguous(grad_output), False), g.canonical(idx, True),
                                    g.canonical(gx, True), g.channels_last, get_num_threads())
    g.raise_bad(bad, idx)
    return gx


def max_unpool(
    x: np.ndarray,
    indices: np.ndarray,
    kernel_size: Sequence[int],
    stride: Optional[IntOrTuple] = None,
    padding: IntOrTuple = 0,
    output_size: Optional[Sequence[int]] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Max unpooling over 1, 2 or 3 spatial axes (rank = ``len(kernel_size)``), as
    PyTorch's ``max_unpool{1,2,3}d``.

    ``y = 0``, then ``y[n, c, indices[n, c, p]] = x[n, c, p]`` for every pooled position
    ``p``, the index flat over y's spatial positions (``(d * H + h) * W + w``). Of equal
    indices the last in ``x``'s row-major order wins (PyTorch's CPU result).

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, *spatial) or, with ``layout="channels_last"``, (N, *spatial, C); N optional.
    indices : ndarray of int64, x's shape
        E.g. from ``max_pool(..., return_indices=True)``. An index outside the output
        plane raises ``ValueError`` (``out`` is then unspecified).
    kernel_size, stride, padding : int or tuple
        The pooling's; ``stride`` defaults to ``kernel_size``, padding is symmetric.
    output_size : tuple, optional
        The spatial output sizes, or a whole output shape (batched, as PyTorch takes
        it, or unbatched for an unbatched ``x``) whose spatial entries are used.
        Default per axis ``(in - 1) * stride - 2 * padding + kernel_size``; a given size
        must lie strictly within ``stride`` of it (PyTorch's rule), e.g. the input size
        of a pooling whose windows did not cover it.
    layout : "channels_first" or "channels_last"
    out : ndarray, optional
        C-contiguous array of the output's shape and x's dtype to write into.

    Returns
    -------
    y : ndarray, x's dtype and layout, spatial sizes as above.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[[1., 5., 2., 0.],
    ...                 [3., 4., 8., 7.]]]], dtype=np.float32)
    >>> y, idx = fastpool.max_pool2d(x, 2, return_indices=True)
    >>> idx[0, 0]
    array([[1, 6]])
    >>> fastpool.max_unpool2d(y, idx, 2)[0, 0]
    array([[0., 5., 0., 0.],
           [0., 0., 8., 0.]], dtype=float32)
    """
    return _max_unpool(x, indices, _rank_of(kernel_size), kernel_size, stride, padding, output_size, layout, out)


def max_unpool_backward(
    grad_output: np.ndarray,
    indices: np.ndarray,
    kernel_size: Sequence[int],
    stride: Optional[IntOrTuple] = None,
    padding: IntOrTuple = 0,
    output_size: Optional[Sequence[int]] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`max_unpool` with respect to ``x``: ``grad_output`` gathered at
    the indices, ``grad_x[n, c, p] = grad_output[n, c, indices[n, c, p]]`` (every one of
    equal indices gets the gradient, as PyTorch's autograd gives).

    ``grad_output`` has the forward output's shape (checked against the arguments,
    which are the forward's); the result has ``indices``' shape and ``grad_output``'s
    dtype.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> g = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4)
    >>> idx = np.array([[[[1, 6]]]])
    >>> fastpool.max_unpool2d_backward(g, idx, 2)[0, 0]
    array([[1., 6.]], dtype=float32)
    """
    return _max_unpool_backward(grad_output, indices, _rank_of(kernel_size), kernel_size, stride, padding,
                                output_size, layout, out)


def _doc(rank: int, template) -> str:
    return (f"{rank}D form of :func:`{template.__name__}` (spatial rank fixed to {rank}; ``kernel_size`` "
            f"may be an int).\n\n" + (template.__doc__ or ""))


def _forward_of_rank(rank: int):
    def fn(x, indices, kernel_size, stride=None, padding=0, output_size=None, layout="channels_first", out=None):
        return _max_unpool(x, indices, rank, kernel_size, stride, padding, output_size, layout, out)

    fn.__name__ = fn.__qualname__ = f"max_unpool{rank}d"
    fn.__doc__ = _doc(rank, max_unpool)
    return fn


def _backward_of_rank(rank: int):
    def fn(grad_output, indices, kernel_size, stride=None, padding=0, output_size=None, layout="channels_first",
           out=None):
        return _max_unpool_backward(grad_output, indices, rank, kernel_size, stride, padding, output_size, layout,
                                    out)

    fn.__name__ = fn.__qualname__ = f"max_unpool{rank}d_backward"
    fn.__doc__ = _doc(rank, max_unpool_backward)
    return fn


max_unpool1d, max_unpool2d, max_unpool3d = (_forward_of_rank(r) for r in (1, 2, 3))
max_unpool1d_backward, max_unpool2d_backward, max_unpool3d_backward = (_backward_of_rank(r) for r in (1, 2, 3))
