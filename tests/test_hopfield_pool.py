"""Hopfield pooling (Ramsauer et al. 2020, the HopfieldPooling layer), forward and backward.

For each sample n the L = prod(spatial) positions are the stored patterns (keys = values),
X_n the (L, C) matrix: y[n, q] = sum_j softmax_j(beta <queries[q], X_n[j]>) X_n[j], shape
(N, Q, C) in either layout ((Q, C) for an unbatched x); backward gives grad_x (x's shape
and layout), grad_queries (Q, C) and grad_beta (a 0-d array), all of x's dtype.

* Hand-checked examples reasoned from the definition (beta = 0: the mean; one position:
  that position; two positions with a dot-product gap of 1: weights 1/(1 + e^-1) and
  1/(1 + e); grad_beta at beta = 0 a covariance), run on fastpool and on the reference
  (tests/hopfield_reference.py), so they also check the reference.
* The reference against a brute-force loop in Python floats.
* A grid: ranks 1-3, 1 to 196 positions, C 1-100, Q 1-16, N 1 and 3 and unbatched, beta
  in (0, 1/8, 1/sqrt(C), 1, -2, 30), both layouts and dtypes, on normal data and on
  multiples of 1/4 (ties, signed zeros); a subset on every SIMD path x threads 1 and 2.
* Bitwise identity across SIMD paths and thread counts; channels_first and channels_last
  agree; hard attention for |beta| = 1e4 and no overflow for |x| ~ 1e3 or a 1e3 offset;
  NaN propagation per sample; invariants (convex hull, permutations, beta = 0, exact
  power-of-two rescaling of beta and the queries); numerical gradients; PyTorch's
  softmax(beta q X^T) X with autograd.
* Argument forms (rank, unbatched, beta's types, lists), out=, non-contiguous inputs,
  inputs left unchanged, errors, the docstring's examples.

Tolerances: |actual - expected| <= rtol * scale, rtol 1e-5 (float32) / 1e-12 (float64),
the scale from hopfield_reference.hopfield_pool_scales: each formula applied to |terms|
(for y at most max |X|), the softmax weights widened by their sensitivity to an error of
rtol |beta| sum_c |q_c x_c| in each logit (which vanishes for hard attention). rtol is
not grown with the number of terms (the worst-case bound T u would be 5e-4 for a float32
grad_beta of 9408 terms): the largest error of the implementation seen over the grid is
below a quarter of the tolerance.
"""

from __future__ import annotations

import doctest
import importlib
import itertools
import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import pytest

import hopfield_reference as hr
from pool_cases import (
    DTYPES,
    IMPLS,
    LAYOUTS,
    SHORT,
    assert_bitwise_equal,
    assert_close,
    assert_unchanged,
    cached,
    fp,
    identical_on_every_backend,
    make_data,
    numerical_gradient,
    snapshot,
    transposed_memory,
    views,
)

BASE_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
OUTPUTS = ("y", "grad_x", "grad_queries", "grad_beta")


def unit_roundoff(dtype: Any) -> float:
    return float(np.finfo(dtype).eps) / 2


def rtol_of(dtype: Any, terms: int) -> float:
    return max(BASE_RTOL[np.dtype(dtype)], terms * unit_roundoff(dtype))


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class HCase:
    """One call: x's spatial sizes, layout, dtype, batch (0: an unbatched x with rank
    given), channels C, queries Q, beta (a float, or "isqrt" for 1 / sqrt(C)), and
    whether a batched call passes rank explicitly."""

    spatial: Tuple[int, ...]
    layout: str = "channels_first"
    dtype: Any = np.float32
    batch: int = 2
    channels: int = 3
    nq: int = 2
    beta: Any = 1.0
    explicit_rank: bool = False

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def positions(self) -> int:
        return int(np.prod(self.spatial))

    @property
    def samples(self) -> int:
        return max(self.batch, 1)

    @property
    def id(self) -> str:
        b = self.beta if isinstance(self.beta, str) else f"{self.beta:g}"
        s = (f"{self.rank}d-{SHORT[self.layout]}-{SHORT[self.dtype]}-N{self.batch}C{self.channels}Q{self.nq}-"
             f"{'x'.join(map(str, self.spatial))}-b{b}")
        return s + ("-rank" if self.explicit_rank else "")

    @property
    def shape(self) -> Tuple[int, ...]:
        b = (self.batch,) if self.batch else ()
        if self.layout == "channels_last":
            return b + self.spatial + (self.channels,)
        return b + (self.channels,) + self.spatial

    @property
    def out_shape(self) -> Tuple[int, ...]:
        return ((self.batch,) if self.batch else ()) + (self.nq, self.channels)

    def beta_value(self) -> float:
        if self.beta == "isqrt":
            return 1.0 / math.sqrt(self.channels)
        return float(self.beta)

    def kw(self) -> Dict[str, Any]:
        kw: Dict[str, Any] = dict(layout=self.layout)
        if self.batch == 0 or self.explicit_rank:
            kw["rank"] = self.rank
        return kw

    def rng(self, salt: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32((self.id + salt).encode()))

    def data(self, kind: str = "normal") -> np.ndarray:
        return make_data(self.rng("x" + kind), self.shape, self.dtype, kind)

    def queries(self, kind: str = "normal") -> np.ndarray:
        return make_data(self.rng("q" + kind), (self.nq, self.channels), self.dtype, kind)

    def grad(self) -> np.ndarray:
        return make_data(self.rng("grad"), self.out_shape, self.dtype, "normal")

    def rtols(self) -> Dict[str, float]:
        return dict.fromkeys(OUTPUTS, BASE_RTOL[np.dtype(self.dtype)])


def params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


def expected(case: HCase, kind: str = "normal") -> Dict[str, np.ndarray]:
    """The reference's y, grad_x, grad_queries, grad_beta and their scales, cached."""
    def compute():
        x, qs, g, b, kw = case.data(kind), case.queries(kind), case.grad(), case.beta_value(), case.kw()
        return reference_results(g, x, qs, b, **kw)
    return cached(("hopfield", case.id, kind), compute)


def reference_results(g, x, qs, beta, **kw) -> Dict[str, np.ndarray]:
    gx, gq, gb = hr.hopfield_pool_backward(g, x, qs, beta, **kw)
    res = {"y": hr.hopfield_pool(x, qs, beta, **kw), "grad_x": gx, "grad_queries": gq, "grad_beta": gb}
    res.update({"scale " + k: v for k, v in hr.hopfield_pool_scales(g, x, qs, beta, **kw).items()})
    return res


def run(x, qs, g, beta, **kw) -> Dict[str, np.ndarray]:
    """fastpool's four results, with their types, dtypes and shapes checked."""
    y = fp("hopfield_pool")(x, qs, beta, **kw)
    assert isinstance(y, np.ndarray) and y.dtype == x.dtype, (type(y), getattr(y, "dtype", None))
    assert y.shape == g.shape and y.flags.c_contiguous, (y.shape, g.shape)
    res = fp("hopfield_pool_backward")(g, x, qs, beta, **kw)
    assert isinstance(res, tuple) and len(res) == 3
    gx, gq, gb = res
    assert isinstance(gx, np.ndarray) and gx.dtype == x.dtype and gx.shape == x.shape
    assert isinstance(gq, np.ndarray) and gq.dtype == x.dtype and gq.shape == qs.shape
    assert isinstance(gb, np.ndarray) and gb.dtype == x.dtype and gb.shape == (), \
        (type(gb), getattr(gb, "dtype", None), np.shape(gb))
    return {"y": y, "grad_x": gx, "grad_queries": gq, "grad_beta": gb}


def compare(got: Dict[str, np.ndarray], exp: Dict[str, np.ndarray], rtols: Dict[str, float],
            what: str = "", factor: float = 1.0) -> None:
    for name in OUTPUTS:
        assert_close(got[name], exp[name], exp["scale " + name], factor * rtols[name], f"{what} {name}")


def check(case: HCase, kinds=("normal",)) -> None:
    """fastpool's forward and backward against the reference; inputs left unchanged."""
    for kind in kinds:
        x, qs, g = case.data(kind), case.queries(kind), case.grad()
        snap = snapshot(x, qs, g)
        got = run(x, qs, g, case.beta_value(), **case.kw())
        compare(got, expected(case, kind), case.rtols(), kind)
        assert_unchanged(snap, kind)


# --------------------------------------------------------------------------- hand-checked


def impl(which: str, name: str) -> Callable[..., Any]:
    return fp(name) if which == "fastpool" else getattr(hr, name)


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def tol(dtype) -> Dict[str, float]:
    return dict(rtol=8 * float(np.finfo(dtype).eps), atol=8 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_beta_zero_is_the_mean(layout, dtype, which):
    """beta = 0: uniform weights 1/L whatever the queries. Channels (1, 2, 6) and (0, 3, -3):
    y = (3, 0) for each query; grad_x = (sum_q G[q]) / 3 at every position; grad_queries =
    0 (beta dS X); grad_beta = sum_q (1/3) sum_j (dA_j - mean dA) d_j (worked out below)."""
    f, fb = impl(which, "hopfield_pool"), impl(which, "hopfield_pool_backward")
    xc = np.array([[[1, 2, 6], [0, 3, -3]]], dtype)  # (N=1, C=2, W=3)
    x = xc if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(xc, 1, -1))
    qs = np.array([[1, 0], [0, 1]], dtype)
    y = f(x, qs, 0.0, layout=layout)
    assert y.dtype == dtype and y.shape == (1, 2, 2)
    np.testing.assert_allclose(y, [[[3, 0], [3, 0]]], **tol(dtype))
    g = np.array([[[1, 0], [0, 2]]], dtype)
    gx, gq, gb = fb(g, x, qs, 0.0, layout=layout)
    e_gx = np.broadcast_to(np.array([1 / 3, 2 / 3])[None, :, None], (1, 2, 3))
    if layout == "channels_last":
        e_gx = np.moveaxis(e_gx, 1, -1)
    np.testing.assert_allclose(gx, e_gx, **tol(dtype))
    np.testing.assert_allclose(gq, np.zeros((2, 2)), atol=0)
    # query 0 = (1, 0): d = (1, 2, 6); G = (1, 0): dA = (1, 2, 6), mean 3:
    #   (1/3)((-2) 1 + (-1) 2 + 3 6) = 14/3
    # query 1 = (0, 1): d = (0, 3, -3); G = (0, 2): dA = (0, 6, -6), mean 0:
    #   (1/3)(0 + 6 3 + (-6)(-3)) = 12
    np.testing.assert_allclose(gb, 14 / 3 + 12, **tol(dtype))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_grad_beta_at_zero_is_a_covariance(dtype, which):
    """One channel, X = (1, 2, 3), query (2), G = 1: dy/dbeta at 0 is the uniform
    covariance of X and 2X, 2 Var(X) = 4/3; a second sample 2X adds 4 (4/3) = 16/3.
    y: the means 2 and 4; grad_x 1/3 everywhere; grad_queries 0."""
    f, fb = impl(which, "hopfield_pool"), impl(which, "hopfield_pool_backward")
    x = np.array([[[1, 2, 3]], [[2, 4, 6]]], dtype)  # (N=2, C=1, W=3)
    qs = np.array([[2]], dtype)
    np.testing.assert_allclose(f(x, qs, 0.0), [[[2]], [[4]]], **tol(dtype))
    gx, gq, gb = fb(np.ones((2, 1, 1), dtype), x, qs, 0.0)
    np.testing.assert_allclose(gx, np.full(x.shape, 1 / 3), **tol(dtype))
    np.testing.assert_allclose(gq, [[0]], atol=0)
    np.testing.assert_allclose(gb, 4 / 3 + 16 / 3, **tol(dtype))
    # the first sample alone, unbatched (C, W) with rank 1
    gx, gq, gb = fb(np.ones((1, 1), dtype), x[0], qs, 0.0, rank=1)
    assert gx.shape == (1, 3) and gb.shape == ()
    np.testing.assert_allclose(gb, 4 / 3, **tol(dtype))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("beta", [0.5, 3.0, -7.0, 1e4])
def test_one_position_is_that_position(beta, layout, dtype, which):
    """L = 1: the weight is 1 for any beta: y[q] = x's column, grad_x = sum_q G[q],
    dS = 1 (dA - dA) = 0: grad_queries = grad_beta = 0."""
    f, fb = impl(which, "hopfield_pool"), impl(which, "hopfield_pool_backward")
    col = np.array([1.5, -2.0, 0.25], dtype)
    x = col.reshape(1, 3, 1, 1) if layout == "channels_first" else col.reshape(1, 1, 1, 3)
    qs = np.array([[1, 2, 3], [-1, 0, 4]], dtype)
    y = f(x, qs, beta, layout=layout)
    assert y.shape == (1, 2, 3)
    np.testing.assert_array_equal(y, np.broadcast_to(col, (1, 2, 3)))
    g = np.array([[[1, 2, 3], [4, 5, 6]]], dtype)
    gx, gq, gb = fb(g, x, qs, beta, layout=layout)
    np.testing.assert_allclose(gx.reshape(3), [5, 7, 9], **tol(dtype))
    np.testing.assert_allclose(gq, np.zeros((2, 3)), atol=0)
    np.testing.assert_allclose(gb, 0, atol=0)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_positions_by_hand(layout, dtype, which):
    """X_0 = (1, 0), X_1 = (0, 1). Query (1, 0), beta 1: logits (1, 0), weights
    p = 1/(1 + e^-1) and 1 - p: y = (p, 1 - p). Query (0, 2), beta 1/2: logits (0, 1):
    y = (1 - p, p). Beta -1 flips the first: y = (1 - p, p).

    Backward, query (1, 0), beta 1, G = (1, 0): dA = (1, 0), r = p, dS = (p(1 - p),
    -p(1 - p)); grad_beta = dS . d = p(1 - p) (= sigma'(1)); grad_queries = beta dS X =
    (p(1 - p), -p(1 - p)); grad_x[0] = p G + dS_0 q = (p + p(1 - p), 0), grad_x[1] =
    (1 - p - p(1 - p), 0)."""
    f, fb = impl(which, "hopfield_pool"), impl(which, "hopfield_pool_backward")
    xc = np.array([[[1, 0], [0, 1]]], dtype)  # (N=1, C=2, W=2): x[0, c, j] = X_j[c]
    to = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if layout == "channels_last" else (lambda a: a)
    x = to(xc)
    p = sigmoid(1.0)
    q1, q2 = np.array([[1, 0]], dtype), np.array([[0, 2]], dtype)
    np.testing.assert_allclose(f(x, q1, 1.0, layout=layout), [[[p, 1 - p]]], **tol(dtype))
    np.testing.assert_allclose(f(x, q2, 0.5, layout=layout), [[[1 - p, p]]], **tol(dtype))
    np.testing.assert_allclose(f(x, q1, -1.0, layout=layout), [[[1 - p, p]]], **tol(dtype))
    both = np.concatenate([q1, q2])
    np.testing.assert_allclose(f(x, both, 1.0, layout=layout), [[[p, 1 - p], [sigmoid(-2), sigmoid(2)]]],
                               **tol(dtype))
    s = p * (1 - p)
    gx, gq, gb = fb(np.array([[[1, 0]]], dtype), x, q1, 1.0, layout=layout)
    np.testing.assert_allclose(gx, to(np.array([[[p + s, 1 - p - s], [0, 0]]])), **tol(dtype))
    np.testing.assert_allclose(gq, [[s, -s]], **tol(dtype))
    np.testing.assert_allclose(gb, s, **tol(dtype))
    # beta 2, G = (0, 1) on query (1, 0): y_1 = 1 - sigma(2 (a - c)) with X_0 = (a, b),
    # X_1 = (c, d): dy_1/dbeta = -sigma'(2) (a - c) = -t, t = sigma(2)(1 - sigma(2));
    # grad_queries = beta dS X = (-2t, 2t); grad_x[0] = (A_0 G + beta dS_0 q) =
    # (-2t, sigma(2)), grad_x[1] = (2t, 1 - sigma(2))
    t = sigmoid(2) * (1 - sigmoid(2))
    gx, gq, gb = fb(np.array([[[0, 1]]], dtype), x, q1, 2.0, layout=layout)
    np.testing.assert_allclose(gb, -t, **tol(dtype))
    np.testing.assert_allclose(gq, [[-2 * t, 2 * t]], **tol(dtype))
    np.testing.assert_allclose(gx, to(np.array([[[-2 * t, 2 * t], [sigmoid(2), 1 - sigmoid(2)]]])), **tol(dtype))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_2d_3d_unbatched_by_hand(dtype, which):
    """Equal dot products give equal weights: a 2x2 plane whose positions all have the
    same dot product with the query is averaged; a 1x1x2 volume with logits (0, ln 3)
    weighs its positions 1/4 and 3/4."""
    f = impl(which, "hopfield_pool")
    # channels (1, 1, 1, 1) (every dot product 1 with query (1, 0)) and (0, 4, 8, 0)
    plane = np.array([[[1, 1], [1, 1]], [[0, 4], [8, 0]]], dtype)  # (C=2, H=2, W=2)
    y = f(plane, np.array([[1, 0]], dtype), 5.0, rank=2)
    assert y.shape == (1, 2)
    np.testing.assert_allclose(y, [[1, 3]], **tol(dtype))
    yl = f(np.ascontiguousarray(np.moveaxis(plane, 0, -1)), np.array([[1, 0]], dtype), 5.0, rank=2,
           layout="channels_last")
    np.testing.assert_allclose(yl, [[1, 3]], **tol(dtype))
    # 3-D, one channel (0, v), v = ln 3 rounded to dtype: query 1, beta 1: weights
    # 1/(1 + e^v) and e^v/(1 + e^v), about 1/4 and 3/4
    v = float(np.array(math.log(3), dtype))
    vol = np.array([0, v], dtype).reshape(1, 1, 1, 1, 2)
    np.testing.assert_allclose(f(vol, np.array([[1]], dtype), 1.0), [[[v * sigmoid(v)]]], **tol(dtype))


# --------------------------------------------------------------------------- the reference itself


def _brute(x: np.ndarray, qs: np.ndarray, beta: float, g: np.ndarray):
    """(y, grad_x, grad_queries, grad_beta) of channels_first x (N, C, *spatial) by loops
    in Python floats, straight from the definition and the specification's formulas."""
    n_, c_ = x.shape[:2]
    L = int(np.prod(x.shape[2:]))
    xs = x.reshape(n_, c_, L).tolist()
    Q = qs.tolist()
    G = g.tolist()
    nq = len(Q)
    y = [[[0.0] * c_ for _ in range(nq)] for _ in range(n_)]
    gx = [[[0.0] * L for _ in range(c_)] for _ in range(n_)]
    gq = [[0.0] * c_ for _ in range(nq)]
    gb = 0.0
    for n in range(n_):
        for q in range(nq):
            d = [sum(Q[q][c] * xs[n][c][j] for c in range(c_)) for j in range(L)]
            s = [beta * v for v in d]
            m = max(s)
            e = [math.exp(v - m) for v in s]
            z = sum(e)
            a = [v / z for v in e]
            for c in range(c_):
                y[n][q][c] = sum(a[j] * xs[n][c][j] for j in range(L))
            da = [sum(G[n][q][c] * xs[n][c][j] for c in range(c_)) for j in range(L)]
            r = sum(a[j] * da[j] for j in range(L))
            ds = [a[j] * (da[j] - r) for j in range(L)]
            for j in range(L):
                for c in range(c_):
                    gx[n][c][j] += a[j] * G[n][q][c] + beta * ds[j] * Q[q][c]
                    gq[q][c] += beta * ds[j] * xs[n][c][j]
                gb += ds[j] * d[j]
    return np.array(y), np.array(gx).reshape(x.shape), np.array(gq), gb


@pytest.mark.parametrize("spatial", [(1,), (5,), (2, 3), (2, 1, 3)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("beta", [0.0, 0.7, -2.5, 40.0])
@pytest.mark.parametrize("kind", ["normal", "ints"])
def test_reference_matches_brute_force(spatial, beta, kind):
    case = HCase(spatial, "channels_first", np.float64, 2, 3, 2, beta)
    x, qs, g = case.data(kind), case.queries(kind), case.grad()
    y, gx, gq, gb = _brute(x, qs, beta, g)
    np.testing.assert_allclose(hr.hopfield_pool(x, qs, beta), y, rtol=1e-13, atol=1e-14)
    r_gx, r_gq, r_gb = hr.hopfield_pool_backward(g, x, qs, beta)
    assert r_gb.shape == () and r_gx.shape == x.shape and r_gq.shape == qs.shape
    np.testing.assert_allclose(r_gx, gx, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(r_gq, gq, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(r_gb, gb, rtol=1e-12, atol=1e-13)
    # channels_last and unbatched give the same numbers
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(hr.hopfield_pool(xl, qs, beta, layout="channels_last"),
                                  hr.hopfield_pool(x, qs, beta))
    l_gx, l_gq, l_gb = hr.hopfield_pool_backward(g, xl, qs, beta, layout="channels_last")
    np.testing.assert_array_equal(np.moveaxis(l_gx, -1, 1), r_gx)
    np.testing.assert_array_equal(l_gq, r_gq)
    np.testing.assert_array_equal(hr.hopfield_pool(x[1], qs, beta, rank=len(spatial)),
                                  hr.hopfield_pool(x, qs, beta)[1])
    u_gx, _, _ = hr.hopfield_pool_backward(g[1], x[1], qs, beta, rank=len(spatial))
    np.testing.assert_array_equal(u_gx, r_gx[1])


# --------------------------------------------------------------------------- grid

SPATIAL = [(1,), (7,), (49,), (196,), (1, 1), (3, 5), (7, 7), (13, 13), (14, 14), (1, 1, 1), (2, 3, 5), (3, 4, 4)]
CHANNELS = (1, 3, 16, 17, 64, 100)
QUERIES = (1, 2, 5, 16)
BETAS = (0.0, 0.125, "isqrt", 1.0, -2.0, 30.0)
BATCHES = (1, 3, 0)
VARIANTS = [(lay, d) for lay in LAYOUTS for d in DTYPES]


def _grid():
    cases = []
    for i, sp in enumerate(SPATIAL):
        for j, (layout, dtype) in enumerate(VARIANTS):
            k = 4 * i + j
            cases.append(HCase(sp, layout, dtype, batch=BATCHES[(k + i) % 3], channels=CHANNELS[k % 6],
                               nq=QUERIES[(k // 6 + j) % 4], beta=BETAS[(k + k // 6) % 6],
                               explicit_rank=(k % 5 == 0)))
    return cases


GRID = _grid()


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case):
    check(case, kinds=("normal", "ints"))


BACKEND_CASES = [
    HCase((7,), "channels_first", np.float32, 3, 17, 5, 1.0),
    HCase((13, 13), "channels_last", np.float32, 2, 16, 2, "isqrt"),
    HCase((49,), "channels_last", np.float64, 1, 3, 16, -2.0),
    HCase((14, 14), "channels_first", np.float64, 3, 64, 1, 0.125),
    HCase((2, 3, 5), "channels_first", np.float32, 0, 100, 5, 30.0),
    HCase((1, 1), "channels_last", np.float32, 3, 1, 2, 0.0),
]


@pytest.mark.parametrize("case", params(BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check(case, kinds=("normal", "ints"))


# Positions in several tiles (a tile holds about 128 KiB of positions x channels, at least
# 16 positions): the online softmax's rescaling across tiles, partial last tiles.
TILE_CASES = [
    HCase((40, 40), "channels_first", np.float32, 2, 128, 3, "isqrt"),
    HCase((33,), "channels_first", np.float32, 1, 4100, 2, 0.05),
    HCase((2, 17), "channels_last", np.float64, 2, 2000, 3, 0.03),
    HCase((17,), "channels_last", np.float32, 0, 8193, 1, "isqrt"),
    HCase((3, 5, 7), "channels_first", np.float64, 1, 1025, 16, -0.04),
]


@pytest.mark.parametrize("case", params(TILE_CASES))
def test_many_tiles_match_reference(case):
    check(case, kinds=("normal", "ints"))


# Channel and position counts around the vector widths (4, 8, 16) of every path: the
# bodies and tails of dot products, axpys and N x N block transposes of tiles.
EDGE_SIZES = (1, 3, 7, 8, 9, 15, 16, 17, 33)


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_vector_tails(layout, dtype, backend):
    for c, L in itertools.product(EDGE_SIZES, EDGE_SIZES):
        case = HCase((L,), layout, dtype, 2, c, 3, 0.5)
        check(case)


# --------------------------------------------------------------------------- backends and layouts

IDENTITY_CASES = [
    HCase((5, 10), "channels_first", np.float32, 4, 67, 3, "isqrt"),
    HCase((5, 10), "channels_last", np.float32, 4, 67, 3, 1.0),
    HCase((50,), "channels_first", np.float64, 4, 67, 3, -2.0),
    HCase((40, 40), "channels_first", np.float32, 2, 128, 3, "isqrt"),
    HCase((40, 40), "channels_last", np.float32, 2, 128, 3, 0.5),
    HCase((40, 40), "channels_last", np.float64, 1, 128, 16, "isqrt"),
    HCase((6, 7, 9), "channels_first", np.float64, 3, 17, 16, 2.0),
    # C large enough that a tile holds few positions: several tiles and a 1-position tail
    HCase((50,), "channels_first", np.float64, 3, 1000, 5, "isqrt"),
    HCase((3, 11), "channels_last", np.float32, 2, 4100, 3, "isqrt"),
    HCase((9, 9), "channels_last", np.float32, 5, 33, 64, 0.25),
]


def _outputs(case: HCase) -> Dict[str, np.ndarray]:
    res = {}
    x, qs, g = case.data(), case.queries(), case.grad()
    for tag, beta in (("case beta", case.beta_value()), ("beta 0", 0.0), ("beta 30", 30.0)):
        for name, value in run(x, qs, g, beta, **case.kw()).items():
            res[f"{name} {tag}"] = value
    return res


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    """Every SIMD path x threads 1, 2, 3: the same bits as the first (scalar, 1 thread),
    forward and the three gradients, at the case's beta, 0 and 30."""
    base = identical_on_every_backend(lambda: _outputs(case))
    got = {name: base[f"{name} case beta"] for name in OUTPUTS}
    compare(got, expected(case), case.rtols(), "first backend")


LAYOUT_CASES = [
    HCase((7, 9), "channels_first", np.float32, 2, 17, 5, "isqrt"),
    HCase((31,), "channels_first", np.float64, 3, 64, 2, 1.0),
    HCase((2, 3, 5), "channels_first", np.float32, 0, 16, 3, -2.0),
    HCase((40, 40), "channels_first", np.float32, 2, 128, 3, 1.0),
]


@pytest.mark.parametrize("case", params(LAYOUT_CASES))
def test_layouts_agree(case, backend):
    """The same values in channels_first and channels_last: the same y, grad_queries and
    grad_beta, and the same grad_x up to the layout, within tolerance."""
    x, qs, g = case.data(), case.queries(), case.grad()
    beta = case.beta_value()
    c_axis = 1 if case.batch else 0
    xl = np.ascontiguousarray(np.moveaxis(x, c_axis, -1))
    first = run(x, qs, g, beta, **case.kw())
    last = run(xl, qs, g, beta, **dict(case.kw(), layout="channels_last"))
    last["grad_x"] = np.moveaxis(last["grad_x"], -1, c_axis)
    compare(last, dict(first, **{k: v for k, v in expected(case).items() if k.startswith("scale")}),
            case.rtols(), "channels_last vs channels_first", factor=2.0)


# --------------------------------------------------------------------------- stability


def _dots(x: np.ndarray, qs: np.ndarray, layout: str, rank: Optional[int] = None) -> np.ndarray:
    X, _ = hr.patterns(x, rank, layout)
    return np.einsum("qc,nlc->nql", qs.astype(np.float64), X.astype(np.float64))


def _hard_attention(x, qs, beta, layout, rank=None):
    """(X at the argmax of beta d per (n, q), float64 (N, Q, C)), after checking the data
    make it hard: the best logit beats the second by more than 50."""
    X, _ = hr.patterns(x, rank, layout)
    s = beta * _dots(x, qs, layout, rank)
    top2 = np.sort(s, axis=-1)[..., -2:]
    assert (top2[..., 1] - top2[..., 0] > 50).all(), "test data: not hard attention"
    j = np.argmax(s, axis=-1)
    return np.take_along_axis(X.astype(np.float64)[:, None], j[..., None, None], axis=2)[:, :, 0]


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("beta", [1e4, -1e4])
def test_huge_beta_is_hard_attention(beta, layout, dtype, backend):
    """|beta| = 1e4 on O(1) data: logits of order 1e4 (exp overflows in both dtypes unless
    taken relative to the row maximum): y is the value at the argmax of beta d (the
    argmin for beta < 0), no inf or NaN anywhere; the gradients are finite and match the
    reference (grad_x is G routed to the argmax positions)."""
    case = HCase((7, 7), layout, dtype, 2, 16, 3, beta)
    x, qs, g = case.data(), case.queries(), case.grad()
    hard = _hard_attention(x, qs, beta, layout)
    got = run(x, qs, g, beta, **case.kw())
    for name, value in got.items():
        assert np.isfinite(value).all(), name
    assert_close(got["y"], hard.astype(dtype), np.abs(hard), 4 * unit_roundoff(dtype), "y vs hard attention")
    compare(got, expected(case), case.rtols())


HUGE_TILE_CASES = [
    HCase((40, 40), "channels_last", np.float32, 2, 128, 3, 1e4),
    HCase((40, 40), "channels_first", np.float64, 1, 128, 2, -1e4),
    HCase((50,), "channels_first", np.float64, 2, 1000, 2, 1e4),
    HCase((33,), "channels_last", np.float32, 1, 4100, 3, -1e4),
]


@pytest.mark.parametrize("case", params(HUGE_TILE_CASES))
def test_huge_beta_over_many_tiles(case, backend):
    """|beta| = 1e4 when the maximum moves from tile to tile (the running sums rescaled
    by factors that underflow to 0): finite, and the stable reference's results."""
    x, qs, g = case.data(), case.queries(), case.grad()
    got = run(x, qs, g, case.beta_value(), **case.kw())
    for name, value in got.items():
        assert np.isfinite(value).all(), name
    compare(got, expected(case), case.rtols())


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("sign", [1, -1], ids=["plus", "minus"])
def test_logits_beyond_the_dtype_range(sign, dtype):
    """beta = +-max/2 of the dtype (finite) on O(1) data: several logits beta <q, x_j>,
    the row maximum among them, overflow the dtype, yet the softmax relative to the row
    maximum is still hard attention: y is the value at the argmax of beta d, no inf or
    NaN. x = (2.5, 3, 0.5, -3), one channel: query 1 picks 3 (beta > 0) or -3 (beta < 0);
    query -1/2 (no overflow there) picks -3 or 3."""
    beta = sign * float(np.finfo(dtype).max) / 2
    x = np.array([[[2.5, 3.0, 0.5, -3.0]]], dtype)
    qs = np.array([[1.0], [-0.5]], dtype)
    y = fp("hopfield_pool")(x, qs, beta)
    np.testing.assert_array_equal(y, np.array([[[3.0], [-3.0]]] if sign > 0 else [[[-3.0], [3.0]]], dtype))
    np.testing.assert_array_equal(y, hr.hopfield_pool(x, qs, beta))
    g = np.ones((1, 2, 1), dtype)
    gx, gq, gb = fp("hopfield_pool_backward")(g, x, qs, beta)
    assert np.isfinite(gx).all() and np.isfinite(gq).all() and np.isfinite(gb)
    # G routed to the selected positions (the beta dS Q term vanishes: one-hot rows)
    np.testing.assert_allclose(gx, np.array([[[0, 1, 0, 1]]], dtype), rtol=1e-6, atol=1e-6)


LARGE = [
    pytest.param("scaled", 1.0, id="x~1e3-beta1"),
    pytest.param("offset", 0.25, id="x~5e4+N(0,1)-beta0.25"),
    pytest.param("offset", -0.25, id="x~5e4+N(0,1)-beta-0.25"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("form,beta", LARGE)
def test_large_magnitude_is_stable(form, beta, layout, dtype, backend):
    """x ~ 1e3 (logits ~ 1e3-1e4: hard attention) or x = 5e4 + N(0, 1) (a common logit
    offset of 5e4 beta sum(q) = 5e4, beyond exp's range even in long double, while the
    softmax over the noise stays soft): finite results that match the stable reference."""
    case = HCase((7, 7), layout, dtype, 2, 16, 3, beta)
    rng = np.random.default_rng(7 if form == "scaled" else 8)
    noise = rng.standard_normal(case.shape)
    x = (1e3 * noise if form == "scaled" else 5e4 + noise).astype(dtype)
    qs = rng.standard_normal((3, 16)).astype(dtype)
    if form == "offset":  # sum(q) = 4: logits ~ 2e5 beta, beyond exp's range (11356) either side
        qs[:, 0] += (4.0 - qs.astype(np.float64).sum(axis=1)).astype(dtype)
        assert (np.abs(beta * _dots(x, qs, layout)) > 12000).all()
    g = case.grad()
    got = run(x, qs, g, beta, **case.kw())
    for name, value in got.items():
        assert np.isfinite(value).all(), name
    exp = reference_results(g, x, qs, beta, **case.kw())
    if form == "scaled":
        hard = _hard_attention(x, qs, beta, layout)
        assert_close(got["y"], hard.astype(dtype), np.abs(hard), 4 * unit_roundoff(dtype), "y vs hard attention")
    else:  # soft: the largest weight of every row is below 0.99
        assert (hr.attention(x, qs, beta, layout=layout).max(axis=-1) < 0.99).all()
    compare(got, exp, case.rtols())


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("channels,where", [(17, 0), (17, 26), (17, 48), (3000, 0), (3000, 20), (3000, 48)],
                         ids=lambda v: str(v))
def test_nan_propagates_per_sample(channels, where, layout, dtype, backend):
    """A NaN in sample 1's x at position ``where`` of 49 (first, middle, last; with 3000
    channels the positions span several tiles): sample 1's output is all NaN, samples 0
    and 2 are finite and unchanged."""
    case = HCase((7, 7), layout, dtype, 3, channels, 5, 1.0 if channels < 100 else 0.05)
    x, qs = case.data(), case.queries()
    beta = case.beta_value()
    clean = fp("hopfield_pool")(x, qs, beta, layout=layout)
    xn = x.copy()
    xc = xn if layout == "channels_first" else np.moveaxis(xn, -1, 1)
    xc[1, 4, where // 7, where % 7] = np.nan
    y = fp("hopfield_pool")(xn, qs, beta, layout=layout)
    assert np.isnan(y[1]).all()
    assert np.isfinite(y[[0, 2]]).all()
    np.testing.assert_array_equal(y[[0, 2]], clean[[0, 2]])


# --------------------------------------------------------------------------- invariants

INVARIANT_CASES = [
    HCase((7, 9), "channels_first", np.float32, 2, 17, 5, 1.0),
    HCase((30,), "channels_last", np.float64, 3, 16, 3, -2.0),
    HCase((3, 4, 5), "channels_last", np.float32, 1, 64, 2, "isqrt"),
]


@pytest.mark.parametrize("case", params(INVARIANT_CASES))
def test_invariants(case, backend):
    """y lies in the per-channel range of its sample's positions (a convex combination);
    permuting the positions changes no result beyond rounding (grad_x permuted alike);
    (beta / 2, 2 queries) gives exactly the same y and grad_x, half the grad_queries and
    twice the grad_beta (scaling by 2 commutes with rounding); beta = 0 gives the mean
    (global_avg_pool), grad_x = sum_q G / L and grad_queries = 0."""
    x, qs, g, beta, kw = case.data(), case.queries(), case.grad(), case.beta_value(), case.kw()
    got = run(x, qs, g, beta, **kw)
    X, _ = hr.patterns(x, None, case.layout)
    X = X.astype(np.float64)
    lo, hi = X.min(axis=1)[:, None], X.max(axis=1)[:, None]
    y = got["y"]
    slack = 4 * unit_roundoff(case.dtype) * np.maximum(np.abs(lo), np.abs(hi))
    assert (y >= lo - slack).all() and (y <= hi + slack).all()
    # permutation of the positions
    perm = np.random.default_rng(1).permutation(case.positions)
    cl = case.layout == "channels_last"
    flat = x.reshape(x.shape[:-case.rank - 1] + (case.positions, case.channels)) if cl else \
        x.reshape(x.shape[:2] + (case.positions,))
    xp = np.ascontiguousarray(flat[:, perm] if cl else flat[:, :, perm]).reshape(x.shape)
    gotp = run(xp, qs, g, beta, **kw)
    gxp = gotp["grad_x"].reshape(flat.shape)
    gotp["grad_x"] = np.empty_like(gxp)
    if cl:
        gotp["grad_x"][:, perm] = gxp
    else:
        gotp["grad_x"][:, :, perm] = gxp
    gotp["grad_x"] = gotp["grad_x"].reshape(x.shape)
    compare(gotp, expected(case), case.rtols(), "permuted", factor=2.0)
    # exact rescaling
    half = run(x, 2 * qs, g, beta / 2, **kw)
    assert_bitwise_equal(half["y"], got["y"], "y at (beta/2, 2 queries)")
    assert_bitwise_equal(half["grad_x"], got["grad_x"], "grad_x at (beta/2, 2 queries)")
    assert_bitwise_equal(2 * half["grad_queries"], got["grad_queries"], "grad_queries at (beta/2, 2 queries)")
    assert_bitwise_equal(half["grad_beta"], 2 * got["grad_beta"], "grad_beta at (beta/2, 2 queries)")
    # beta = 0
    zero = run(x, qs, g, 0.0, **kw)
    mean = X.mean(axis=1)
    rt = rtol_of(case.dtype, case.positions)
    assert_close(zero["y"], np.broadcast_to(mean[:, None], y.shape).astype(case.dtype),
                 np.broadcast_to(np.abs(X).mean(axis=1)[:, None], y.shape), rt, "beta 0: the mean")
    gsum = g.astype(np.float64).sum(axis=-2) / case.positions  # (N, C)
    e_gx = np.broadcast_to(gsum[:, None, :], X.shape)
    e_gx = hr.to_input_layout(e_gx, x.shape, True, case.layout)
    assert_close(zero["grad_x"], e_gx.astype(case.dtype), np.abs(e_gx), rtol_of(case.dtype, case.nq), "beta 0 grad_x")
    assert np.all(zero["grad_queries"] == 0)


# --------------------------------------------------------------------------- argument forms


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_unbatched_and_rank(rank, layout, backend):
    """rank given: a batched x ((N, C, *spatial) / (N, *spatial, C)) or an unbatched one
    ((C, *spatial) / (*spatial, C)), whose results are the batched ones of sample 0
    ((Q, C) output, x-shaped grad_x)."""
    spatial = {1: (9,), 2: (5, 6), 3: (2, 3, 4)}[rank]
    case = HCase(spatial, layout, np.float64, 1, 5, 3, 0.8)
    x, qs, g, kw = case.data(), case.queries(), case.grad(), case.kw()
    exp = expected(case)
    compare(run(x, qs, g, 0.8, **kw), exp, case.rtols(), "batched")
    compare(run(x, qs, g, 0.8, rank=rank, **kw), exp, case.rtols(), "batched, rank given")
    un = run(x[0], qs, g[0], 0.8, rank=rank, **kw)
    assert un["y"].shape == (3, 5) and un["grad_x"].shape == x.shape[1:]
    exp0 = {k: (v[0] if k in ("y", "grad_x", "scale y", "scale grad_x") else v) for k, v in exp.items()}
    compare(un, exp0, case.rtols(), "unbatched")


def test_beta_forms():
    """beta as int, NumPy scalars of any float or int type: the results of the same float,
    bit for bit; -0.0 is 0."""
    case = HCase((5, 6), "channels_first", np.float32, 2, 7, 3, 2.0)
    x, qs, g = case.data(), case.queries(), case.grad()
    base = run(x, qs, g, 2.0)
    for b in (2, np.float32(2.0), np.float64(2.0), np.int64(2), np.int32(2)):
        got = run(x, qs, g, b)
        for name in OUTPUTS:
            assert_bitwise_equal(got[name], base[name], f"beta {b!r} {name}")
    zero = run(x, qs, g, 0.0)
    for name in ("y", "grad_x", "grad_beta"):
        np.testing.assert_array_equal(run(x, qs, g, -0.0)[name], zero[name])
    # default beta = 1
    y1 = fp("hopfield_pool")(x, qs)
    assert_bitwise_equal(y1, fp("hopfield_pool")(x, qs, 1.0))
    gx, gq, gb = fp("hopfield_pool_backward")(g, x, qs)
    assert_bitwise_equal(gx, run(x, qs, g, 1.0)["grad_x"])


LIST_X = [[[1.0, 0.0], [0.0, 1.0]]]  # (N=1, C=2, L=2): X_0 = (1, 0), X_1 = (0, 1)
LIST_Q = [[1.0, 0.0]]
LIST_G = [[[1.0, 0.0]]]


@pytest.mark.parametrize("as_list", ["x", "queries", "grad_output", "all"])
def test_list_input(as_list):
    """Lists of Python floats are float64 arrays, for x, queries and grad_output alike (as
    global_avg_pool's x, mixed_pool_backward's grad_output, corner_pool's x2 are): the
    two-position example, y = (p, 1 - p), grad_beta = p (1 - p), p = 1/(1 + e^-1)."""
    arrays = {"x": np.array(LIST_X), "queries": np.array(LIST_Q), "grad_output": np.array(LIST_G)}
    lists = {"x": LIST_X, "queries": LIST_Q, "grad_output": LIST_G}
    args = {k: (lists[k] if as_list in (k, "all") else v) for k, v in arrays.items()}
    p = sigmoid(1.0)
    y = fp("hopfield_pool")(args["x"], args["queries"], 1.0)
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_allclose(y, [[[p, 1 - p]]], rtol=1e-15)
    gx, gq, gb = fp("hopfield_pool_backward")(args["grad_output"], args["x"], args["queries"], 1.0)
    assert gx.dtype == gq.dtype == gb.dtype == np.float64 and gb.shape == ()
    np.testing.assert_allclose(gb, p * (1 - p), rtol=1e-14)


def test_list_dtypes():
    """Lists of ints are int64 arrays (TypeError for x); a list of floats is float64, so
    TypeError for the queries or grad_output of a float32 x."""
    with pytest.raises(TypeError):
        fp("hopfield_pool")([[[1, 0], [0, 1]]], np.array(LIST_Q), 0.0)
    x32 = np.array(LIST_X, np.float32)
    with pytest.raises(TypeError):
        fp("hopfield_pool")(x32, LIST_Q, 0.0)
    with pytest.raises(TypeError):
        fp("hopfield_pool_backward")(LIST_G, x32, np.array(LIST_Q, np.float32), 0.0)


def test_docstring_examples():
    func = fp("hopfield_pool")
    assert func.__doc__ and ">>>" in func.__doc__, "hopfield_pool's docstring has no example"
    mod = importlib.import_module(func.__module__)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(func, "hopfield_pool", module=mod, globs=vars(mod).copy())
    assert sum(len(t.examples) for t in tests) >= 1
    for t in tests:
        runner.run(t, out=lambda s: None)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of hopfield_pool failed"
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0


# --------------------------------------------------------------------------- memory

VIEW_CASES = [
    HCase((9, 31), "channels_first", np.float32, 2, 3, 2, 1.0),
    HCase((4, 6, 9), "channels_last", np.float64, 2, 17, 5, "isqrt"),
    HCase((31,), "channels_last", np.float32, 3, 16, 1, -2.0),
]


@pytest.mark.parametrize("case", params(VIEW_CASES))
def test_non_contiguous_inputs(case, backend):
    """Fortran-ordered, strided, negative-stride, read-only and misaligned views of x,
    queries and grad_output, and x in the other layout's memory order: the results of
    the contiguous arrays (within tolerance), inputs left unchanged."""
    x, qs, g, beta, kw = case.data(), case.queries(), case.grad(), case.beta_value(), case.kw()
    exp, rt = expected(case), case.rtols()
    for name, xv in views(x):
        snap = snapshot(xv)
        compare(run(xv, qs, g, beta, **kw), exp, rt, f"x {name}")
        assert_unchanged(snap, name)
    for name, qv in views(qs):
        compare(run(x, qv, g, beta, **kw), exp, rt, f"queries {name}")
    for name, gv in views(g):
        gx, gq, gb = fp("hopfield_pool_backward")(gv, x, qs, beta, **kw)
        compare(dict(y=exp["y"], grad_x=gx, grad_queries=gq, grad_beta=gb), exp, rt, f"grad_output {name}")
    compare(run(transposed_memory(x, case.layout), qs, g, beta, **kw), exp, rt, "transposed memory")


OUT_CASES = [
    HCase((8, 9), "channels_first", np.float32, 2, 17, 3, 1.0),
    HCase((8, 9), "channels_last", np.float64, 2, 17, 3, 0.5),
    HCase((3, 5, 7), "channels_first", np.float64, 0, 4, 2, -2.0),
]


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    """out= receives y (forward) or grad_x (backward), is returned, and every element
    is written (it starts NaN)."""
    x, qs, g, beta, kw = case.data(), case.queries(), case.grad(), case.beta_value(), case.kw()
    exp, rt = expected(case), case.rtols()
    out = np.full(case.out_shape, np.nan, case.dtype)
    assert fp("hopfield_pool")(x, qs, beta, out=out, **kw) is out
    assert_close(out, exp["y"], exp["scale y"], rt["y"], "out")
    gout = np.full(x.shape, np.nan, case.dtype)
    gx, gq, gb = fp("hopfield_pool_backward")(g, x, qs, beta, out=gout, **kw)
    assert gx is gout
    compare(dict(y=out, grad_x=gout, grad_queries=gq, grad_beta=gb), exp, rt, "backward out")


# --------------------------------------------------------------------------- gradients

GRAD_SETUPS = [
    pytest.param((5,), "channels_first", 2, 0.7, id="1d-cf-beta0.7"),
    pytest.param((2, 3), "channels_last", 2, -1.3, id="2d-cl-beta-1.3"),
    pytest.param((2, 1, 3), "channels_first", 2, 2.5, id="3d-cf-beta2.5"),
    pytest.param((3, 2), "channels_first", 0, 1.1, id="2d-cf-unbatched"),
    pytest.param((4,), "channels_last", 1, 0.0, id="1d-cl-beta0"),
]


@pytest.mark.parametrize("spatial,layout,batch,beta", GRAD_SETUPS)
def test_numerical_gradient(spatial, layout, batch, beta):
    """Central differences of L = sum(g * hopfield_pool(x, queries, beta)) in x, in the
    queries and in beta (float64)."""
    case = HCase(spatial, layout, np.float64, batch, 3, 2, beta)
    x, qs, g, kw = case.data(), case.queries(), case.grad(), case.kw()
    f = fp("hopfield_pool")
    gx, gq, gb = fp("hopfield_pool_backward")(g, x, qs, beta, **kw)
    num_x = numerical_gradient(lambda v: f(v, qs, beta, **kw), x.copy(), g, h=1e-6)
    num_q = numerical_gradient(lambda v: f(x, v, beta, **kw), qs.copy(), g, h=1e-6)
    num_b = numerical_gradient(lambda v: f(x, qs, float(v), **kw), np.array(beta), g, h=1e-6)
    assert np.abs(num_x).max() > 0.1 and np.abs(num_b) > 1e-3
    np.testing.assert_allclose(gx, num_x, rtol=1e-6, atol=1e-8)
    if beta != 0:
        assert np.abs(num_q).max() > 1e-2
    np.testing.assert_allclose(gq, num_q, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, num_b, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- torch

TORCH_CASES = [
    HCase((7,), "channels_first", np.float32, 2, 17, 5, 1.0),
    HCase((13, 13), "channels_last", np.float32, 3, 16, 2, "isqrt"),
    HCase((7, 7), "channels_first", np.float64, 2, 64, 16, -2.0),
    HCase((2, 3, 5), "channels_last", np.float64, 1, 3, 1, 30.0),
    HCase((14, 14), "channels_first", np.float32, 1, 100, 3, 0.125),
    HCase((5, 6), "channels_last", np.float32, 0, 17, 4, 0.5),
]


@pytest.mark.parametrize("case", params(TORCH_CASES))
def test_matches_torch_composition(case):
    """torch.softmax(beta * q @ X_n.T, -1) @ X_n with autograd for x, the queries and a
    beta tensor."""
    torch = pytest.importorskip("torch")
    x, qs, g, beta, kw = case.data(), case.queries(), case.grad(), case.beta_value(), case.kw()
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf if case.batch else leaf.unsqueeze(0)
    n = t.shape[0]
    if case.layout == "channels_first":
        X = t.reshape(n, case.channels, -1).transpose(1, 2)
    else:
        X = t.reshape(n, -1, case.channels)
    tq = torch.from_numpy(qs.copy()).requires_grad_(True)
    tb = torch.tensor(beta, dtype=leaf.dtype, requires_grad=True)
    yt = torch.softmax(tb * torch.matmul(tq, X.transpose(1, 2)), dim=-1) @ X  # (N, Q, C)
    if not case.batch:
        yt = yt[0]
    yt.backward(torch.from_numpy(g.copy()))
    from_torch = {"y": yt.detach().numpy(), "grad_x": leaf.grad.numpy(), "grad_queries": tq.grad.numpy(),
                  "grad_beta": tb.grad.numpy()}
    exp = expected(case)
    got = run(x, qs, g, beta, **kw)
    compare(got, dict(exp, **{k: np.asarray(v).astype(case.dtype) for k, v in from_torch.items()}), case.rtols(),
            "vs torch", factor=2.0)  # both sides round


# --------------------------------------------------------------------------- errors

X = np.zeros((2, 3, 4, 5), np.float32)
QS = np.ones((2, 3), np.float32)
GO = np.ones((2, 2, 3), np.float32)


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _hp(*a, **k):
    return fp("hopfield_pool")(*a, **k)


def _hpb(*a, **k):
    return fp("hopfield_pool_backward")(*a, **k)


def _out_is_x_backward():
    x = X.copy()
    return _hpb(GO, x, QS, 1.0, out=x)


E, T = ValueError, TypeError
ERRORS = [
    # beta: type
    ("beta-str", lambda: _hp(X, QS, "1.0"), T, "beta"),
    ("beta-bytes", lambda: _hp(X, QS, b"1"), T, "beta"),
    ("beta-bool", lambda: _hp(X, QS, True), T, "beta"),
    ("beta-numpy-bool", lambda: _hp(X, QS, np.bool_(False)), T, "beta"),
    ("beta-none", lambda: _hp(X, QS, None), T, "beta"),
    ("beta-object", lambda: _hp(X, QS, object()), T, "beta"),
    ("beta-complex", lambda: _hp(X, QS, 1j), T, "beta"),
    ("beta-list", lambda: _hp(X, QS, [1.0]), (T, E), "beta"),
    ("beta-array", lambda: _hp(X, QS, np.array([1.0, 2.0])), (T, E), "beta"),
    ("beta-str-backward", lambda: _hpb(GO, X, QS, "1"), T, "beta"),
    ("beta-bool-backward", lambda: _hpb(GO, X, QS, False), T, "beta"),
    # beta: value
    ("beta-nan", lambda: _hp(X, QS, np.nan), E, "beta"),
    ("beta-inf", lambda: _hp(X, QS, np.inf), E, "beta"),
    ("beta-neg-inf", lambda: _hp(X, QS, -np.inf), E, "beta"),
    ("beta-float32-nan", lambda: _hp(X, QS, np.float32("nan")), E, "beta"),
    ("beta-nan-backward", lambda: _hpb(GO, X, QS, np.nan), E, "beta"),
    ("beta-inf-backward", lambda: _hpb(GO, X, QS, -np.inf), E, "beta"),
    # queries
    ("queries-dtype", lambda: _hp(X, QS.astype(np.float64), 1.0), T, "queries"),
    ("queries-int", lambda: _hp(X, QS.astype(np.int32), 1.0), T, "queries"),
    ("queries-dtype-backward", lambda: _hpb(GO, X, QS.astype(np.float64), 1.0), T, "queries"),
    ("queries-1d", lambda: _hp(X, QS[0], 1.0), E, "queries"),
    ("queries-3d", lambda: _hp(X, QS[None], 1.0), E, "queries"),
    ("queries-0d", lambda: _hp(X, np.array(1.0, np.float32), 1.0), E, "queries"),
    ("queries-channels", lambda: _hp(X, np.ones((2, 4), np.float32), 1.0), E, "queries"),
    ("queries-channels-last", lambda: _hp(X, QS, 1.0, layout="channels_last"), E, "queries"),  # C = 5 there
    ("queries-transposed", lambda: _hp(X, np.ones((3, 2), np.float32), 1.0), E, "queries"),
    ("queries-empty", lambda: _hp(X, np.ones((0, 3), np.float32), 1.0), E, "queries"),
    ("queries-channels-backward", lambda: _hpb(GO, X, np.ones((2, 4), np.float32), 1.0), E, "queries"),
    ("queries-object", lambda: _hp(X, object(), 1.0), T, "queries"),
    # x
    ("x-object", lambda: _hp(object(), QS, 1.0), T, r"\bx\b"),
    ("x-int32", lambda: _hp(X.astype(np.int32), QS, 1.0), T, _all(r"\bx\b", "int32")),
    ("x-float16", lambda: _hp(X.astype(np.float16), QS, 1.0), T, r"\bx\b"),
    ("x-complex", lambda: _hp(X.astype(np.complex64), QS, 1.0), T, r"\bx\b"),
    ("x-int-backward", lambda: _hpb(GO, X.astype(np.int64), QS, 1.0), T, r"\bx\b"),
    ("x-ndim-2", lambda: _hp(X[0, 0], np.ones((2, 4), np.float32), 1.0), E, "rank|x"),
    ("x-ndim-6", lambda: _hp(X[None, None], QS, 1.0), E, "rank|x"),
    ("x-zero-batch", lambda: _hp(np.zeros((0, 3, 4, 5), np.float32), QS, 1.0), E, r"(?i)zero|empty|size"),
    ("x-zero-channels", lambda: _hp(np.zeros((2, 0, 4, 5), np.float32), np.ones((2, 0), np.float32), 1.0), E,
     r"(?i)zero|empty|size"),
    ("x-zero-spatial", lambda: _hp(np.zeros((2, 3, 4, 0), np.float32), QS, 1.0), E, r"(?i)zero|empty|size"),
    ("x-zero-backward", lambda: _hpb(np.ones((0, 2, 3), np.float32), np.zeros((0, 3, 4, 5), np.float32), QS, 1.0), E,
     r"(?i)zero|empty|size"),
    # rank
    ("rank-0", lambda: _hp(X, QS, 1.0, rank=0), E, "rank"),
    ("rank-4", lambda: _hp(X, QS, 1.0, rank=4), E, "rank"),
    ("rank-mismatch", lambda: _hp(X, QS, 1.0, rank=1), E, "rank|x"),  # 4 axes: rank 2 or 3 only
    ("rank-str", lambda: _hp(X, QS, 1.0, rank="2"), (T, E), "rank"),
    ("rank-float", lambda: _hp(X, QS, 1.0, rank=2.0), (T, E), "rank"),
    ("rank-bool", lambda: _hp(X, QS, 1.0, rank=True), (T, E), "rank"),
    ("rank-backward", lambda: _hpb(GO, X, QS, 1.0, rank=5), E, "rank"),
    # layout
    ("layout-bad", lambda: _hp(X, QS, 1.0, layout="NHWC"), E, _all("layout", "NHWC")),
    ("layout-none", lambda: _hp(X, QS, 1.0, layout=None), (E, T), "layout"),
    ("layout-bad-backward", lambda: _hpb(GO, X, QS, 1.0, layout="cl"), E, "layout"),
    # grad_output
    ("grad-shape", lambda: _hpb(np.ones((2, 2, 4), np.float32), X, QS, 1.0), E, "grad_output"),
    ("grad-shape-queries", lambda: _hpb(np.ones((2, 3, 3), np.float32), X, QS, 1.0), E, "grad_output"),
    ("grad-shape-batch", lambda: _hpb(np.ones((1, 2, 3), np.float32), X, QS, 1.0), E, "grad_output"),
    ("grad-shape-unbatched", lambda: _hpb(GO[0], X, QS, 1.0), E, "grad_output"),
    ("grad-shape-x-like", lambda: _hpb(X, X, QS, 1.0), E, "grad_output"),
    ("grad-dtype", lambda: _hpb(GO.astype(np.float64), X, QS, 1.0), T, "grad_output"),
    ("grad-int", lambda: _hpb(GO.astype(np.int32), X, QS, 1.0), T, "grad_output"),
    ("grad-list", lambda: _hpb(GO.tolist(), X, QS, 1.0), T, "grad_output"),  # float64 values, x float32
    # out
    ("out-shape", lambda: _hp(X, QS, 1.0, out=np.zeros((2, 3, 2), np.float32)), E, r"\bout\b"),
    ("out-shape-x", lambda: _hp(X, QS, 1.0, out=np.zeros(X.shape, np.float32)), E, r"\bout\b"),
    ("out-dtype", lambda: _hp(X, QS, 1.0, out=np.zeros(GO.shape, np.float64)), T, r"\bout\b"),
    ("out-list", lambda: _hp(X, QS, 1.0, out=GO.tolist()), T, r"\bout\b"),
    ("out-read-only", lambda: _hp(X, QS, 1.0, out=_read_only(GO.shape)), E, r"\bout\b"),
    ("out-shape-backward", lambda: _hpb(GO, X, QS, 1.0, out=np.zeros(GO.shape, np.float32)), E, r"\bout\b"),
    ("out-dtype-backward", lambda: _hpb(GO, X, QS, 1.0, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only-backward", lambda: _hpb(GO, X, QS, 1.0, out=_read_only(X.shape)), E, r"\bout\b"),
    ("out-is-x-backward", _out_is_x_backward, E, r"\bout\b"),
]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_errors_leave_inputs_and_out_untouched():
    out = np.full(GO.shape, 7.0, np.float32)
    gout = np.full(X.shape, 7.0, np.float32)
    x, qs, g = X + 1, QS.copy(), GO.copy()
    snap = snapshot(x, qs, g)
    bad_calls = [
        (ValueError, lambda: _hp(x, qs, np.nan, out=out)),
        (TypeError, lambda: _hp(x, qs, "1", out=out)),
        (TypeError, lambda: _hp(x, qs.astype(np.float64), 1.0, out=out)),
        (ValueError, lambda: _hp(x, np.ones((2, 4), np.float32), 1.0, out=out)),
        (ValueError, lambda: _hp(x, qs, 1.0, layout="bad", out=out)),
        (ValueError, lambda: _hpb(g, x, qs, np.inf, out=gout)),
        (ValueError, lambda: _hpb(g[0], x, qs, 1.0, out=gout)),
        (TypeError, lambda: _hpb(g.astype(np.float64), x, qs, 1.0, out=gout)),
        (ValueError, lambda: _hpb(g, x, qs[:, :2], 1.0, out=gout)),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
        np.testing.assert_array_equal(out, 7.0)
        np.testing.assert_array_equal(gout, 7.0)
    assert_unchanged(snap)
