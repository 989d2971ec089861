"""Hopfield pooling (Ramsauer et al., "Hopfield Networks is All You Need", ICLR 2021:
the HopfieldPooling layer), forward and backward.

Each query pattern retrieves from the positions of a sample by one step of the modern
Hopfield update, ``softmax(beta * q . x_j)``-weighted. The kernel is fused as flash
attention is: positions are visited in tiles with an online softmax, so no (queries x
positions) matrix larger than a tile is ever held, and the backward recomputes the
weights instead of storing them.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

from . import _bins, _core
from ._config import get_num_threads
from ._validate import Layout, check_float_array, check_layout, check_no_overlap, contiguous, output_array

__all__ = ["hopfield_pool", "hopfield_pool_backward"]


def _check_beta(beta: Any, dtype: np.dtype) -> float:
    if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a real number (the inverse temperature), got {beta!r}")
    v = float(beta)
    with np.errstate(over="ignore"):
        finite = np.isfinite(v) and np.isfinite(np.asarray(v).astype(dtype))
    if not finite:
        raise ValueError(f"beta must be finite in {np.dtype(dtype)}, got {beta!r}")
    return v


class _Call:
    """The checked arguments of one call, x seen as (N, C, L) or (N, L, C)."""

    def __init__(self, x: Any, queries: Any, beta: Any, rank: Any, layout: Any) -> None:
        x = check_float_array(x, "x")
        rank = _bins.check_rank(rank, x.ndim)
        self.layout = Layout(x.ndim, rank, check_layout(layout), "x")
        self.batch, self.channels, spatial = _bins.spatial_split(x.shape, self.layout)
        queries = check_float_array(queries, "queries")  # a list: float64, as x's would be
        if queries.dtype != x.dtype:
            raise TypeError(f"queries has dtype {queries.dtype}, expected {x.dtype} (x's)")
        if queries.ndim != 2 or queries.shape[1] != self.channels or queries.shape[0] < 1:
            raise ValueError(f"queries must have shape (Q, {self.channels}) with Q >= 1 (one pattern of x's "
                             f"{self.channels} channels per row), got shape {queries.shape}")
        self.x, self.queries = x, contiguous(queries)
        self.beta = _check_beta(beta, x.dtype)
        self.positions = int(np.prod(spatial))
        cl = self.layout.channels_last
        self.kernel_x = contiguous(x).reshape((self.batch, self.positions, self.channels) if cl
                                              else (self.batch, self.channels, self.positions))
        n_q = queries.shape[0]
        self.out_shape = (self.batch, n_q, self.channels) if self.layout.batched else (n_q, self.channels)

    def batched(self, a: np.ndarray) -> np.ndarray:
        return a.reshape((self.batch,) + a.shape[-2:])


def hopfield_pool(
    x: np.ndarray,
    queries: np.ndarray,
    beta: float = 1.0,
    rank: Optional[int] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Hopfield pooling (Ramsauer et al. 2020, the HopfieldPooling layer).

    With ``X_n`` the (L, C) matrix of sample n's L spatial positions (the stored
    patterns: keys and values) and ``Q = queries`` (the state patterns)::

        y[n, q] = sum_j softmax_j(beta * <Q[q], X_n[j]>) * X_n[j]

    computed relative to each row's maximum (no overflow at any beta). The projections
    W_Q, W_K, W_V of the layer are the caller's matmuls around this call.

    Parameters
    ----------
    x : ndarray, float32 or float64
        (N, C, *spatial) with 1-3 spatial axes, or (C, *spatial) when ``rank`` says so
        (channels_last: (N, *spatial, C)).
    queries : ndarray (Q, C) of x's dtype
        The query patterns.
    beta : float
        The inverse temperature (finite; 1 / sqrt(C) is attention's usual scale).
    rank : int, optional
        Spatial rank (default x.ndim - 2).
    layout, out
        As :func:`fastpool.max_pool`; ``out`` is (N, Q, C).

    Returns
    -------
    y : (N, Q, C), or (Q, C) for an unbatched x, in either layout.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 0.], [0., 1.]]], dtype=np.float32)  # 1 sample, C=2, L=2
    >>> fastpool.hopfield_pool(x, np.array([[0., 0.]], np.float32))  # no preference: the mean
    array([[[0.5, 0.5]]], dtype=float32)
    """
    c = _Call(x, queries, beta, rank, layout)
    y = output_array(out, c.out_shape, c.x.dtype)
    check_no_overlap(y, "out", c.x, c.queries)
    _core.hopfield_forward(c.kernel_x, c.queries, c.beta, c.batched(y), c.layout.channels_last, get_num_threads())
    return y


def hopfield_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    queries: np.ndarray,
    beta: float = 1.0,
    rank: Optional[int] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`hopfield_pool`: ``(grad_x, grad_queries, grad_beta)``.

    With A the (Q, L) softmax of a sample, G its grad_output rows,
    ``dS = A * (G X^T - rowsum(A * G X^T))``::

        grad_x[n]    = A^T G + beta dS^T Q
        grad_queries = sum_n beta dS X_n
        grad_beta    = sum_n sum dS * (Q X_n^T)

    ``grad_queries`` and ``grad_beta`` (a 0-d array) are summed over the batch in a
    fixed order (the same bits at any thread count). ``out`` receives grad_x.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 0.], [0., 1.]]], dtype=np.float32)
    >>> q = np.array([[0., 0.]], np.float32)
    >>> gx, gq, gb = fastpool.hopfield_pool_backward(np.ones((1, 1, 2), np.float32), x, q)
    >>> gx
    array([[[0.5, 0.5],
            [0.5, 0.5]]], dtype=float32)
    """
    c = _Call(x, queries, beta, rank, layout)
    g = _bins.check_grad(grad_output, c.out_shape, c.x.dtype)
    gx = output_array(out, c.x.shape, c.x.dtype)
    check_no_overlap(gx, "out", c.x, c.queries, g)
    gq = np.empty(c.queries.shape, dtype=c.x.dtype)
    gb = np.empty((), dtype=c.x.dtype)
    _core.hopfield_backward(c.kernel_x, c.queries, c.beta, c.batched(contiguous(g)), gx.reshape(c.kernel_x.shape),
                            gq, gb, c.layout.channels_last, get_num_threads())
    return gx, gq, gb
