"""Plain-NumPy reference of Hopfield pooling (Ramsauer et al. 2020, HopfieldPooling).

Ground truth of tests/test_hopfield_pool.py, written from the specification alone; it
shares no code with fastpool (layouts and ranks are parsed here again, on purpose).

For each sample n, the L = prod(spatial) positions are the stored patterns, keys and
values alike: X_n is the (L, C) matrix of sample n (positions in row-major spatial
order, in either layout). With the (Q, C) query patterns::

    S = beta Q X^T                        (Q, L)
    A = softmax(S) along the positions    (relative to each row's maximum)
    y[n] = A X                            (Q, C)

and, for G = grad_output[n]::

    dA = G X^T;  dS = A * (dA - rowsum(A * dA))
    grad_x[n]     = A^T G + beta dS^T Q
    grad_queries  = sum_n beta dS X
    grad_beta     = sum_n sum_{q,j} dS[q, j] <queries[q], X_n[j]>

Everything is computed in long double (80-bit on x86-64, float64 elsewhere) and cast to
the input's dtype at the end.

:func:`hopfield_pool_scales` gives the scales of the rounding errors a float
implementation may make (see its docstring); the tests multiply them by an rtol.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

WORK = np.longdouble
LAYOUTS = ("channels_first", "channels_last")


# ------------------------------------------------------------------------------ layouts


def spatial_rank(ndim: int, rank: Optional[int]) -> Tuple[int, bool]:
    """(rank, batched) of an input with ``ndim`` axes."""
    r = ndim - 2 if rank is None else int(rank)
    if r not in (1, 2, 3):
        raise ValueError(f"rank must be 1, 2 or 3, got {r}")
    if ndim == r + 2:
        return r, True
    if ndim == r + 1:
        return r, False
    raise ValueError(f"x must have {r + 1} or {r + 2} axes for rank {r}, got {ndim}")


def patterns(x: Any, rank: Optional[int] = None, layout: str = "channels_first") -> Tuple[np.ndarray, bool]:
    """(X of shape (N, L, C) in long double, batched): the stored patterns of each sample."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    x = np.asarray(x)
    r, batched = spatial_rank(x.ndim, rank)
    xb = x if batched else x[None]
    if layout == "channels_first":
        n, c = xb.shape[:2]
        xs = xb.reshape(n, c, -1).transpose(0, 2, 1)
    else:
        n, c = xb.shape[0], xb.shape[-1]
        xs = xb.reshape(n, -1, c)
    return np.ascontiguousarray(xs, dtype=WORK), batched


def to_input_layout(g: np.ndarray, x_shape: Tuple[int, ...], batched: bool, layout: str) -> np.ndarray:
    """(N, L, C) -> x's shape and layout."""
    if layout == "channels_first":
        g = g.transpose(0, 2, 1)
    shape = x_shape if batched else (1,) + tuple(x_shape)
    g = g.reshape(shape)
    return g if batched else g[0]


def _queries(queries: Any, c: int) -> np.ndarray:
    q = np.asarray(queries)
    if q.ndim != 2 or q.shape[1] != c or q.shape[0] < 1:
        raise ValueError(f"queries must have shape (Q, {c}), got {q.shape}")
    return q.astype(WORK)


def _grad(grad_output: Any, n: int, qn: int, c: int, batched: bool) -> np.ndarray:
    g = np.asarray(grad_output)
    want = (n, qn, c) if batched else (qn, c)
    if g.shape != want:
        raise ValueError(f"grad_output must have shape {want}, got {g.shape}")
    g = g.astype(WORK)
    return g if batched else g[None]


# ------------------------------------------------------------------------------ core


def logits(X: np.ndarray, Q: np.ndarray, beta: float) -> Tuple[np.ndarray, np.ndarray]:
    """(d, S): the dot products <queries[q], X_n[j]> (N, Q, L) and S = beta d."""
    d = np.einsum("qc,nlc->nql", Q, X)
    return d, WORK(beta) * d


def softmax_rows(S: np.ndarray) -> np.ndarray:
    """softmax along the last axis, relative to each row's maximum (NaN rows stay NaN)."""
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(S, axis=-1, keepdims=True)
        e = np.exp(S - m)
        return e / np.sum(e, axis=-1, keepdims=True)


def _parts(x, queries, beta, rank, layout):
    X, batched = patterns(x, rank, layout)
    Q = _queries(queries, X.shape[2])
    d, S = logits(X, Q, beta)
    A = softmax_rows(S)
    return X, Q, d, A, batched


def attention(x: Any, queries: Any, beta: float = 1.0, rank: Optional[int] = None,
              layout: str = "channels_first") -> np.ndarray:
    """The softmax weights A, (N, Q, L), in long double."""
    return _parts(x, queries, beta, rank, layout)[3]


def hopfield_pool(x: Any, queries: Any, beta: float = 1.0, rank: Optional[int] = None,
                  layout: str = "channels_first") -> np.ndarray:
    """y = softmax(beta Q X_n^T) X_n per sample: (N, Q, C), or (Q, C) for unbatched x."""
    x = np.asarray(x)
    X, _, _, A, batched = _parts(x, queries, beta, rank, layout)
    with np.errstate(invalid="ignore"):
        y = np.einsum("nql,nlc->nqc", A, X)
    y = y.astype(x.dtype)
    return y if batched else y[0]


def hopfield_pool_backward(grad_output: Any, x: Any, queries: Any, beta: float = 1.0,
                           rank: Optional[int] = None,
                           layout: str = "channels_first") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_x, grad_queries, grad_beta) by the specification's formulas; grad_beta a 0-d
    array; all of x's dtype."""
    x = np.asarray(x)
    X, Q, d, A, batched = _parts(x, queries, beta, rank, layout)
    G = _grad(grad_output, X.shape[0], Q.shape[0], X.shape[2], batched)
    b = WORK(beta)
    with np.errstate(invalid="ignore", over="ignore"):
        dA = np.einsum("nqc,nlc->nql", G, X)
        r = np.sum(A * dA, axis=-1, keepdims=True)
        dS = A * (dA - r)
        gx = np.einsum("nql,nqc->nlc", A, G) + b * np.einsum("nql,qc->nlc", dS, Q)
        gq = b * np.einsum("nql,nlc->qc", dS, X)
        gb = np.sum(dS * d)
    gx = to_input_layout(gx, x.shape, batched, layout)
    return gx.astype(x.dtype), gq.astype(x.dtype), np.asarray(gb).astype(x.dtype).reshape(())


# ------------------------------------------------------------------------------ error scales


def hopfield_pool_scales(grad_output: Any, x: Any, queries: Any, beta: float = 1.0,
                         rank: Optional[int] = None, layout: str = "channels_first") -> Dict[str, np.ndarray]:
    """Scales of the rounding errors of y, grad_x, grad_queries and grad_beta (float64,
    the shapes of the results): a float implementation's error is at most about
    rtol * scale, rtol a small multiple of the unit roundoff times the terms summed.

    Each scale is the result's formula applied to |terms|, with the softmax weights
    widened by their own sensitivity to the logits: an error of rtol |beta| D[q, j] in
    S[q, j] (D = sum_c |queries[q, c] X[j, c]|, the bound of a dot product's rounding)
    moves A[q, j] by A[q, j] e[q, j], |e[q, j]| <= rtol E[q, j] with

        E[q, j] = (1 - A[q, j]) Δ[q, j] + sum_{l != j} A[q, l] Δ[q, l],   Δ = |beta| D,

    which vanishes for one-hot (hard) attention. So, with Aw = A (1 + E),
    DA = |G| |X|^T and R = rowsum(Aw DA), P = Aw (DA + R) (the bound of |dS|):

        y:             sum_j A |X| + sum_j A E |X - y|   (the weights sum to 1)
        grad_x:        Aw^T |G| + |beta| P^T |Q|
        grad_queries:  |beta| sum_n P |X|
        grad_beta:     sum_n sum_{q,j} P D
    """
    x = np.asarray(x)
    X, Q, d, A, batched = _parts(x, queries, beta, rank, layout)
    n, _, c = X.shape
    G = _grad(grad_output, n, Q.shape[0], c, batched)
    ab = abs(WORK(beta))
    aX, aQ, aG = np.abs(X), np.abs(Q), np.abs(G)
    with np.errstate(invalid="ignore", over="ignore"):
        D = np.einsum("qc,nlc->nql", aQ, aX)
        delta = ab * D
        W = np.sum(A * delta, axis=-1, keepdims=True)
        E = (1 - A) * delta + (W - A * delta)
        Aw = A * (1 + E)
        y = np.einsum("nql,nlc->nqc", A, X)
        s_y = np.einsum("nql,nlc->nqc", A, aX) + np.einsum(
            "nql,nqlc->nqc", A * E, np.abs(X[:, None, :, :] - y[:, :, None, :]))
        DA = np.einsum("nqc,nlc->nql", aG, aX)
        R = np.sum(Aw * DA, axis=-1, keepdims=True)
        P = Aw * (DA + R)
        s_gx = np.einsum("nql,nqc->nlc", Aw, aG) + ab * np.einsum("nql,qc->nlc", P, aQ)
        s_gq = ab * np.einsum("nql,nlc->qc", P, aX)
        s_gb = np.sum(P * D)
    s_gx = to_input_layout(s_gx, x.shape, batched, layout)
    return {
        "y": (s_y if batched else s_y[0]).astype(np.float64),
        "grad_x": s_gx.astype(np.float64),
        "grad_queries": s_gq.astype(np.float64),
        "grad_beta": np.asarray(s_gb, dtype=np.float64),
    }
