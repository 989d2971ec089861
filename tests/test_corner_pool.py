"""Corner, center and cascade corner pooling (CornerNet, CenterNet), forward and backward.

* Hand-checked examples: expected arrays written out by reasoning from the definitions
  (run on fastpool and on the reference, so they also check the reference).
* The reference (tests/reference.py) is checked against a brute-force reading of the
  definitions on small planes full of ties, NaN and infinities.
* A grid of spatial sizes (1x1, single rows and columns, primes, SIMD bodies + tails),
  channels, batched and unbatched, both layouts and dtypes, every direction and corner,
  with and without x2 / pairs, on normal data, small-integer data (many ties) and data
  with NaN and +-inf. A directional max returns an input element and every sum is one
  addition in x's dtype, so forward results are exact: bitwise, zeros included (a max
  over tied zeros of both signs is the zero the tie rule picks, the element that gets
  the gradient), NaN at the same places (payloads are not compared: the kernels store
  a canonical NaN, numpy's inf + -inf is the negative default NaN). Gradients are sums
  of grad_output values: exact on grad_output made of multiples of 1/4 (which checks
  the routing of ties and NaN), and within the worst-case bound of a float sum
  relative to the sum of |terms| on normal ones.
* Every SIMD path x threads 1 and 2 on a subset; bitwise identity across backends on
  larger inputs; numerical gradients; out=, non-contiguous inputs, inputs left
  unchanged; argument errors; PyTorch's cummax composition where torch is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest

import reference as ref
from bin_cases import PlaneCase, cycled
from pool_cases import (
    DTYPES,
    IMPLS,
    SHORT,
    assert_close,
    assert_unchanged,
    distinct_values,
    fp,
    identical_on_every_backend,
    make_data,
    numerical_gradient,
    params,
    snapshot,
    sum_rtol,
    transposed_memory,
    views,
)

DIRECTIONS = ref.DIRECTIONS
CORNERS = ref.CORNERS
OPS = ("direction", "corner", "center", "cascade")
# (boundary is a pair, inner is a pair)
PAIR_COMBOS = [(False, False), (True, False), (False, True), (True, True)]


@dataclass(frozen=True)
class CCase(PlaneCase):
    """One input shape: spatial (H, W), layout, dtype, batch (0: unbatched), channels."""

    @property
    def id(self) -> str:
        return f"{self.variant_id}-{self.sizes_id}"

    @property
    def terms(self) -> int:
        """Most grad_output values one gradient element can sum (a cascade's boundary:
        both terms route every one of its plane's values through two pools)."""
        h, w = self.spatial
        return 2 * h * w + h + w


# --------------------------------------------------------------------------- comparisons


def assert_exact(actual: Any, expected: np.ndarray, what: str = "", zero_signs: bool = True) -> None:
    """A new C-contiguous array of expected's dtype and shape; NaN at the same places,
    every other element bitwise equal (``zero_signs=False``: equal in value, so +0 == -0)."""
    assert isinstance(actual, np.ndarray), (what, type(actual))
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
        (what, actual.dtype, expected.dtype, actual.shape, expected.shape)
    assert actual.flags.c_contiguous, what
    a_nan, e_nan = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(a_nan, e_nan):
        where = tuple(np.argwhere(a_nan != e_nan)[0])
        raise AssertionError(f"{what}: NaN pattern differs, first at {where}: actual {actual[where]!r}, "
                             f"expected {expected[where]!r}")
    a, e = np.where(a_nan, 0, actual), np.where(e_nan, 0, expected)
    bits = f"u{actual.dtype.itemsize}"
    bad = (a.view(bits) != e.view(bits)) if zero_signs else (a != e)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ, first at {where}: "
                             f"actual {actual[where]!r}, expected {expected[where]!r}")


def assert_grads(actual: Any, expected: Any, scale: Any = None, rtol: float = 0.0, what: str = "") -> None:
    """Gradients (an array or a pair of arrays, as expected): exact values when ``scale``
    is None, else assert_close relative to ``scale`` (the same gradient of |grad_output|)."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), (what, type(actual))
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_grads(a, e, None if scale is None else scale[k], rtol, f"{what}[{k}]")
        return
    assert isinstance(actual, np.ndarray), (what, type(actual))
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, \
        (what, actual.dtype, expected.dtype, actual.shape, expected.shape)
    assert actual.flags.c_contiguous, what
    if scale is None:
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        assert_close(actual, expected, scale, rtol, what)


# --------------------------------------------------------------------------- calls


@dataclass
class Call:
    """One forward or backward call: fastpool's and the reference's."""

    label: str
    run: Callable[[], Any]  # fastpool
    expect: Callable[[], Any]  # reference
    scale: Optional[Callable[[], Any]] = None  # reference on |grad_output| (backward only)


def _cascade_args(b1, b2, i1, i2, combo):
    b_pair, i_pair = combo
    return ((b1, b2) if b_pair else b1), ((i1, i2) if i_pair else i1)


def forward_calls(op: str, layout: str, a: Dict[str, np.ndarray], variant: int = 0) -> List[Call]:
    """The forward calls of an operator group on the arrays a['x'], a['x2'], a['b2'], a['i2']."""
    x, x2 = a["x"], a["x2"]
    kw = dict(layout=layout)
    calls = []
    if op == "direction":
        for d in DIRECTIONS:
            calls.append(Call(d, lambda d=d: fp("corner_pool")(x, d, **kw), lambda d=d: ref.corner_pool(x, d, **kw)))
    elif op == "corner":
        for c in CORNERS:
            calls.append(Call(c, lambda c=c: fp("corner_pool")(x, c, **kw), lambda c=c: ref.corner_pool(x, c, **kw)))
            calls.append(Call(f"{c} x2", lambda c=c: fp("corner_pool")(x, c, x2=x2, **kw),
                              lambda c=c: ref.corner_pool(x, c, x2=x2, **kw)))
    elif op == "center":
        calls.append(Call("center", lambda: fp("center_pool")(x, **kw), lambda: ref.center_pool(x, **kw)))
        calls.append(Call("center x2", lambda: fp("center_pool")(x, x2=x2, **kw),
                          lambda: ref.center_pool(x, x2=x2, **kw)))
    elif op == "cascade":
        for k, c in enumerate(CORNERS):
            combo = PAIR_COMBOS[(k + variant) % 4]
            b, i = _cascade_args(x, a["b2"], x2, a["i2"], combo)
            calls.append(Call(f"cascade {c} pairs={combo}",
                              lambda c=c, b=b, i=i: fp("cascade_corner_pool")(b, i, corner=c, **kw),
                              lambda c=c, b=b, i=i: ref.cascade_corner_pool(b, i, corner=c, **kw)))
    else:
        raise ValueError(op)
    return calls


def backward_calls(op: str, layout: str, a: Dict[str, np.ndarray], g: np.ndarray, variant: int = 0) -> List[Call]:
    """The backward calls of an operator group, with grad_output g."""
    x, x2 = a["x"], a["x2"]
    kw = dict(layout=layout)
    ga = np.abs(g)
    calls = []
    if op == "direction":
        for d in DIRECTIONS:
            calls.append(Call(d, lambda d=d: fp("corner_pool_backward")(g, x, d, **kw),
                              lambda d=d: ref.corner_pool_backward(g, x, d, **kw),
                              lambda d=d: ref.corner_pool_backward(ga, x, d, **kw)))
    elif op == "corner":
        for c in CORNERS:
            calls.append(Call(c, lambda c=c: fp("corner_pool_backward")(g, x, c, **kw),
                              lambda c=c: ref.corner_pool_backward(g, x, c, **kw),
                              lambda c=c: ref.corner_pool_backward(ga, x, c, **kw)))
            calls.append(Call(f"{c} x2", lambda c=c: fp("corner_pool_backward")(g, x, c, x2=x2, **kw),
                              lambda c=c: ref.corner_pool_backward(g, x, c, x2=x2, **kw),
                              lambda c=c: ref.corner_pool_backward(ga, x, c, x2=x2, **kw)))
    elif op == "center":
        calls.append(Call("center", lambda: fp("center_pool_backward")(g, x, **kw),
                          lambda: ref.center_pool_backward(g, x, **kw),
                          lambda: ref.center_pool_backward(ga, x, **kw)))
        calls.append(Call("center x2", lambda: fp("center_pool_backward")(g, x, x2=x2, **kw),
                          lambda: ref.center_pool_backward(g, x, x2=x2, **kw),
                          lambda: ref.center_pool_backward(ga, x, x2=x2, **kw)))
    elif op == "cascade":
        for k, c in enumerate(CORNERS):
            combo = PAIR_COMBOS[(k + variant) % 4]
            b, i = _cascade_args(x, a["b2"], x2, a["i2"], combo)
            calls.append(Call(f"cascade {c} pairs={combo}",
                              lambda c=c, b=b, i=i: fp("cascade_corner_pool_backward")(g, b, i, corner=c, **kw),
                              lambda c=c, b=b, i=i: ref.cascade_corner_pool_backward(g, b, i, corner=c, **kw),
                              lambda c=c, b=b, i=i: ref.cascade_corner_pool_backward(ga, b, i, corner=c, **kw)))
    else:
        raise ValueError(op)
    return calls


def arrays(case: CCase, kind: str) -> Dict[str, np.ndarray]:
    """x, x2 and the second boundary / inner arrays of a case, of one data kind."""
    return {name: case.data(kind, "" if name == "x" else name) for name in ("x", "x2", "b2", "i2")}


def _variant(case: CCase) -> int:
    return sum(case.spatial) + case.channels + case.batch


def check_forward(op: str, case: CCase, kinds=("normal", "ints", "special")) -> None:
    for kind in kinds:
        a = arrays(case, kind)
        snap = snapshot(*a.values())
        for call in forward_calls(op, case.layout, a, _variant(case)):
            assert_exact(call.run(), call.expect(), f"{call.label} {kind}")
        assert_unchanged(snap, f"{op} {kind}")


def check_backward(op: str, case: CCase, kinds=("normal", "ints", "special")) -> None:
    rtol = sum_rtol(case.dtype, case.terms)
    for kind in kinds:
        a = arrays(case, kind)
        grads = [("ints", False)] + ([("normal", True)] if kind == "normal" else [])
        for gkind, tolerant in grads:
            g = case.make(case.shape, gkind, "grad" + gkind)
            snap = snapshot(g, *a.values())
            for call in backward_calls(op, case.layout, a, g, _variant(case)):
                what = f"{call.label} {kind} data, {gkind} grad"
                if tolerant:
                    assert_grads(call.run(), call.expect(), call.scale(), rtol, what)
                else:  # sums of multiples of 1/4: exact
                    assert_grads(call.run(), call.expect(), None, 0.0, what)
            assert_unchanged(snap, f"{op} {kind}")


# --------------------------------------------------------------------------- hand-checked

def impl(which: str, name: str) -> Callable[..., Any]:
    return fp(name) if which == "fastpool" else getattr(ref, name)


# A 3 x 4 plane; every expected array below was worked out by hand from the definitions.
X34 = np.array([[1, 3, 2, 0],
                [4, 0, 5, 1],
                [2, 6, 1, 3]], dtype=np.float64)
BY_HAND = {
    # top: max over the rows at and below (r >= i), per column
    "top": [[4, 6, 5, 3],
            [4, 6, 5, 3],
            [2, 6, 1, 3]],
    # bottom: max over the rows at and above (r <= i)
    "bottom": [[1, 3, 2, 0],
               [4, 3, 5, 1],
               [4, 6, 5, 3]],
    # left: max over the columns at and to the right (c >= j), per row
    "left": [[3, 3, 2, 0],
             [5, 5, 5, 1],
             [6, 6, 3, 3]],
    # right: max over the columns at and to the left (c <= j)
    "right": [[1, 3, 3, 3],
              [4, 4, 5, 5],
              [2, 6, 6, 6]],
    "top_left": [[7, 9, 7, 3],  # top + left
                 [9, 11, 10, 4],
                 [8, 12, 4, 6]],
    "top_right": [[5, 9, 8, 6],  # top + right
                  [8, 10, 10, 8],
                  [4, 12, 7, 9]],
    "bottom_left": [[4, 6, 4, 0],  # bottom + left
                    [9, 8, 10, 2],
                    [10, 12, 8, 6]],
    "bottom_right": [[2, 6, 5, 3],  # bottom + right
                     [8, 7, 10, 6],
                     [6, 12, 11, 9]],
}


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("direction", DIRECTIONS + CORNERS)
def test_directions_and_corners_by_hand(direction, dtype, which):
    f = impl(which, "corner_pool")
    x = X34.astype(dtype)
    expected = np.array(BY_HAND[direction], dtype)
    np.testing.assert_array_equal(f(x[None, None], direction), expected[None, None])
    np.testing.assert_array_equal(f(x[None], direction), expected[None])  # unbatched (C, H, W)
    # channels_last: (N, H, W, C) with two channels, the second the negated plane's copy
    xl = np.stack([x, 10 * x], axis=-1)[None]
    y = f(xl, direction, layout="channels_last")
    np.testing.assert_array_equal(y[0, ..., 0], expected)
    np.testing.assert_array_equal(y[0, ..., 1], 10 * expected)  # max commutes with scaling by 10


@pytest.mark.parametrize("which", IMPLS)
def test_corner_with_x2_and_specials_by_hand(which):
    f = impl(which, "corner_pool")
    # top_left(x, x2 = -x) = top(x) + left(-x); left(-x) is [[0,0,0,0],[0,0,-1,-1],[-1,-1,-1,-3]]
    np.testing.assert_array_equal(f(X34[None, None], "top_left", x2=-X34[None, None])[0, 0],
                                  [[4, 6, 5, 3], [4, 6, 4, 2], [1, 5, 0, 0]])
    # NaN propagates down the scan; +-inf are ordinary values
    col = np.array([[1.0], [np.nan], [3.0]])[None, None]
    np.testing.assert_array_equal(f(col, "top")[0, 0, :, 0], [np.nan, np.nan, 3.0])
    np.testing.assert_array_equal(f(col, "bottom")[0, 0, :, 0], [1.0, np.nan, np.nan])
    row = np.array([[-np.inf, 2.0, np.inf, -1.0]])[None, None]
    np.testing.assert_array_equal(f(row, "left")[0, 0, 0], [np.inf, np.inf, np.inf, -1.0])
    np.testing.assert_array_equal(f(row, "right")[0, 0, 0], [-np.inf, 2.0, np.inf, np.inf])
    # a sum of +inf and -inf is NaN: top(x) = [inf, -inf], left(-x) = [-inf, inf] (W = 1)
    x = np.array([[np.inf], [-np.inf]], np.float32)[None, None]
    np.testing.assert_array_equal(f(x, "top_left", x2=-x)[0, 0, :, 0], np.array([np.nan, np.nan], np.float32))


@pytest.mark.parametrize("which", IMPLS)
def test_center_pool_by_hand(which):
    f = impl(which, "center_pool")
    # column maxima of X34: [4, 6, 5, 3]; row maxima: [3, 5, 6]
    expected = [[7, 9, 8, 6],
                [9, 11, 10, 8],
                [10, 12, 11, 9]]
    np.testing.assert_array_equal(f(X34[None, None])[0, 0], expected)
    # x2 = -X34: row maxima of -X34 are [0, 0, -1]
    np.testing.assert_array_equal(f(X34[None], x2=-X34[None])[0],
                                  [[4, 6, 5, 3], [4, 6, 5, 3], [3, 5, 4, 2]])


@pytest.mark.parametrize("which", IMPLS)
def test_cascade_corner_pool_by_hand(which):
    f = impl(which, "cascade_corner_pool")
    x = X34[None, None]
    # top_left: s1 = x + left(x) = [[4,6,4,0],[9,5,10,2],[8,12,4,6]], top(s1) = [[9,12,10,6],[9,12,10,6],[8,12,4,6]];
    # s2 = x + top(x) = [[5,9,7,3],[8,6,10,4],[4,12,2,6]], left(s2) = [[9,9,7,3],[10,10,10,4],[12,12,6,6]]
    np.testing.assert_array_equal(f(x, x, corner="top_left")[0, 0],
                                  [[18, 21, 17, 9],
                                   [19, 22, 20, 10],
                                   [20, 24, 10, 12]])
    # bottom_right with inner = 0: bottom(right(x)) + right(bottom(x)) = 2 * (max of the
    # rectangle [0..i] x [0..j]); those maxima are [[1,3,3,3],[4,4,5,5],[4,6,6,6]]
    np.testing.assert_array_equal(f(x, np.zeros_like(x), corner="bottom_right")[0, 0],
                                  [[2, 6, 6, 6],
                                   [8, 8, 10, 10],
                                   [8, 12, 12, 12]])
    # pairs: boundary (x, 0), inner (0, x): top_left = top(0 + left(x)) + left(x + top(0))
    #      = top(left(x)) + left(x); top(left(x)) = [[6,6,5,3],[6,6,5,3],[6,6,3,3]]
    z = np.zeros_like(x)
    np.testing.assert_array_equal(f((x, z), (z, x), corner="top_left")[0, 0],
                                  [[9, 9, 7, 3],
                                   [11, 11, 10, 4],
                                   [12, 12, 6, 6]])


G6 = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])  # powers of two: every sum names its terms


def _col(values) -> np.ndarray:
    return np.array(values, np.float64).reshape(1, 1, -1, 1)


def _row(values) -> np.ndarray:
    return np.array(values, np.float64).reshape(1, 1, 1, -1)


@pytest.mark.parametrize("which", IMPLS)
def test_backward_ties_by_hand(which):
    """Ties go to the element found first from the far edge (strict >)."""
    b = impl(which, "corner_pool_backward")
    x = _col([2, 5, 5, 1, 5, 3])
    g = _col(G6)
    # top: rows 0-4 see the max 5 at rows 1, 2 and 4; the largest, 4, gets 1+2+4+8+16; row 5 keeps 32
    np.testing.assert_array_equal(b(g, x, "top").ravel(), [0, 0, 0, 0, 31, 32])
    # bottom: row 0 keeps 1; rows 1-5 see 5 first at row 1 (the smallest): 2+4+8+16+32
    np.testing.assert_array_equal(b(g, x, "bottom").ravel(), [1, 62, 0, 0, 0, 0])
    x = _row([5, 1, 5, 5, 0])
    g = _row(G6[:5])
    # left: columns 0-3 to the largest column holding 5 (3): 1+2+4+8; column 4 keeps 16
    np.testing.assert_array_equal(b(g, x, "left").ravel(), [0, 0, 0, 15, 16])
    # right: every column's max 5 is first at column 0
    np.testing.assert_array_equal(b(g, x, "right").ravel(), [31, 0, 0, 0, 0])
    # -inf ties like any value; +inf is a maximum like any value
    np.testing.assert_array_equal(b(_col(G6[:2]), _col([-np.inf, -np.inf]), "top").ravel(), [0, 3])
    np.testing.assert_array_equal(b(_col(G6[:2]), _col([-np.inf, -np.inf]), "bottom").ravel(), [3, 0])
    np.testing.assert_array_equal(b(_col(G6[:3]), _col([np.inf, 1, np.inf]), "bottom").ravel(), [7, 0, 0])
    np.testing.assert_array_equal(b(_col(G6[:3]), _col([np.inf, 1, np.inf]), "top").ravel(), [0, 0, 7])
    # zeros of both signs are equal: the first found from the far edge wins
    np.testing.assert_array_equal(b(_row(G6[:3]), _row([0.0, -0.0, -1.0]), "left").ravel(), [0, 3, 4])
    np.testing.assert_array_equal(b(_row(G6[:3]), _row([-0.0, 0.0, -1.0]), "right").ravel(), [7, 0, 0])


@pytest.mark.parametrize("which", IMPLS)
def test_backward_nan_by_hand(which):
    """NaN beats every number; among NaNs the first found from the far edge wins."""
    b = impl(which, "corner_pool_backward")
    x = _col([1, np.nan, 3, np.nan, 2])
    g = _col(G6[:5])
    # top: rows 0-3 see the NaN at row 3 first (scanning up from row 4); row 4 keeps 16
    np.testing.assert_array_equal(b(g, x, "top").ravel(), [0, 0, 0, 15, 16])
    # bottom: row 0 keeps 1; rows 1-4 see the NaN at row 1 first
    np.testing.assert_array_equal(b(g, x, "bottom").ravel(), [1, 30, 0, 0, 0])
    x = _row([np.nan, np.inf, np.nan, 7])
    g = _row(G6[:4])
    np.testing.assert_array_equal(b(g, x, "left").ravel(), [0, 0, 7, 8])
    np.testing.assert_array_equal(b(g, x, "right").ravel(), [15, 0, 0, 0])


@pytest.mark.parametrize("which", IMPLS)
def test_corner_backward_by_hand(which):
    b = impl(which, "corner_pool_backward")
    x = np.ones((1, 1, 2, 2))
    g = np.array([[1.0, 2.0], [4.0, 8.0]])[None, None]
    # all tied. top_left: top sends each column's 1+4 / 2+8 to row 1; left sends each
    # row's 1+2 / 4+8 to column 1
    np.testing.assert_array_equal(b(g, x, "top_left")[0, 0], [[0, 3], [5, 22]])
    # bottom_right: bottom to row 0 (5, 10), right to column 0 (3, 12)
    np.testing.assert_array_equal(b(g, x, "bottom_right")[0, 0], [[8, 10], [12, 0]])
    # top_right: top to row 1 (5, 10), right to column 0 (3, 12)
    np.testing.assert_array_equal(b(g, x, "top_right")[0, 0], [[3, 0], [17, 10]])
    # with x2: (grad_x from the vertical pool, grad_x2 from the horizontal one)
    gx, gx2 = b(g, x, "bottom_left", x2=x.copy())
    np.testing.assert_array_equal(gx[0, 0], [[5, 10], [0, 0]])
    np.testing.assert_array_equal(gx2[0, 0], [[0, 3], [0, 12]])


@pytest.mark.parametrize("which", IMPLS)
def test_center_backward_by_hand(which):
    b = impl(which, "center_pool_backward")
    x = np.array([[1.0, 3.0, 3.0], [3.0, 0.0, 3.0]])[None, None]
    g = np.array([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])[None, None]
    # column sums of g: 9, 18, 36 to rows 1, 0 and (tie) the last row 1;
    # row sums 7, 56 to (ties) the last column holding the row max: 2, 2
    np.testing.assert_array_equal(b(g, x)[0, 0], [[0, 18, 7], [9, 0, 92]])
    gx, gx2 = b(g, x, x2=x.copy())
    np.testing.assert_array_equal(gx[0, 0], [[0, 18, 0], [9, 0, 36]])
    np.testing.assert_array_equal(gx2[0, 0], [[0, 0, 7], [0, 0, 56]])
    # NaN: the last NaN of a column / row
    xn = np.array([[np.nan, 1.0], [np.nan, 2.0]])[None, None]
    gn = np.array([[1.0, 2.0], [4.0, 8.0]])[None, None]
    # columns: 5 to (1, 0) (last NaN), 10 to (1, 1); rows: 3 to (0, 0), 12 to (1, 0)
    np.testing.assert_array_equal(b(gn, xn)[0, 0], [[3, 0], [17, 10]])


@pytest.mark.parametrize("which", IMPLS)
def test_cascade_backward_by_hand(which):
    b = impl(which, "cascade_corner_pool_backward")
    g = np.array([[1.0, 2.0], [4.0, 8.0]])[None, None]
    bd = np.array([[1.0, 2.0], [3.0, 0.0]])[None, None]
    z = np.zeros_like(bd)
    # top_left, inner 0: s1 = left(bd) = [[2,2],[3,0]]; top routes g to s1 as [[0,2],[5,8]]
    # (= grad inner1), left routes that to bd as [[0,2],[5,8]]. s2 = top(bd) = [[3,2],[3,0]];
    # left routes g to s2 as [[1,2],[4,8]] (= grad inner2), top routes that to bd as [[0,2],[5,8]].
    gb, gi = b(g, bd, z, corner="top_left")
    np.testing.assert_array_equal(gb[0, 0], [[0, 4], [10, 16]])
    np.testing.assert_array_equal(gi[0, 0], [[1, 4], [9, 16]])
    # all ties, pairs: each term routes everything to the far corner (1, 1) in the end
    o = np.ones_like(bd)
    (gb1, gb2), (gi1, gi2) = b(g, (o, o.copy()), (z, z.copy()), corner="top_left")
    np.testing.assert_array_equal(gb1[0, 0], [[0, 0], [0, 15]])
    np.testing.assert_array_equal(gb2[0, 0], [[0, 0], [0, 15]])
    np.testing.assert_array_equal(gi1[0, 0], [[0, 0], [5, 10]])  # top of s1 = 1s: to row 1
    np.testing.assert_array_equal(gi2[0, 0], [[0, 3], [0, 12]])  # left of s2 = 1s: to column 1
    gb, gi = b(g, o, (z, z.copy()), corner="top_left")
    np.testing.assert_array_equal(gb[0, 0], [[0, 0], [0, 30]])
    assert isinstance(gi, tuple)


# --------------------------------------------------------------------------- the reference itself


def _brute(plane: np.ndarray, direction: str):
    """(y, source (r, c) of each y) of one plane, straight from the definitions: the
    window's candidates listed from the far edge, the first NaN, else the first maximum."""
    h, w = plane.shape
    y = np.empty_like(plane)
    src = np.empty((h, w, 2), np.int64)
    for i in range(h):
        for j in range(w):
            cand = {"top": [(r, j) for r in range(h - 1, i - 1, -1)],
                    "bottom": [(r, j) for r in range(i + 1)],
                    "left": [(i, c) for c in range(w - 1, j - 1, -1)],
                    "right": [(i, c) for c in range(j + 1)]}[direction]
            nans = [p for p in cand if np.isnan(plane[p])]
            if nans:
                pick = nans[0]
            else:
                m = max(plane[p] for p in cand)
                pick = next(p for p in cand if plane[p] == m)
            y[i, j], src[i, j] = plane[pick], pick
    return y, src


@pytest.mark.parametrize("seed", range(6))
def test_reference_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    x = make_data(rng, (2, h, w), np.float64, ("ints", "special")[seed % 2])
    x2 = make_data(rng, (2, h, w), np.float64, "ints")
    g = rng.integers(-8, 9, (2, h, w)).astype(np.float64)
    for d in DIRECTIONS:
        gx = np.zeros_like(x)
        for c in range(2):
            y, src = _brute(x[c], d)
            np.testing.assert_array_equal(ref.corner_pool(x, d)[c], y)
            for i in range(h):
                for j in range(w):
                    gx[c][tuple(src[i, j])] += g[c, i, j]
        np.testing.assert_array_equal(ref.corner_pool_backward(g, x, d), gx)
    # center: column max + row max; composition bottom(top(.)) + right(left(.))
    with np.errstate(invalid="ignore"):
        expected = np.max(x, axis=1, keepdims=True) + np.max(x2, axis=2, keepdims=True)
    np.testing.assert_array_equal(ref.center_pool(x, x2), expected)
    composed = ref.corner_pool(ref.corner_pool(x, "top"), "bottom")
    with np.errstate(invalid="ignore"):
        composed = composed + ref.corner_pool(ref.corner_pool(x2, "left"), "right")
    np.testing.assert_array_equal(ref.center_pool(x, x2), composed)
    gx, gx2 = ref.center_pool_backward(g, x, x2)
    # the composition's gradient, by the chain rule through the reference's directional pools
    t = ref.corner_pool(x, "top")
    np.testing.assert_array_equal(gx, ref.corner_pool_backward(ref.corner_pool_backward(g, t, "bottom"), x, "top"))
    lft = ref.corner_pool(x2, "left")
    np.testing.assert_array_equal(gx2, ref.corner_pool_backward(ref.corner_pool_backward(g, lft, "right"), x2, "left"))
    # cascade top_left = top(inner1 + left(boundary1)) + left(inner2 + top(boundary2))
    b1, b2, i1, i2 = x, x2, x2[::-1].copy(), x[:, ::-1].copy()
    with np.errstate(invalid="ignore"):
        s1 = i1 + ref.corner_pool(b1, "left")
        s2 = i2 + ref.corner_pool(b2, "top")
        expected = ref.corner_pool(s1, "top") + ref.corner_pool(s2, "left")
    np.testing.assert_array_equal(ref.cascade_corner_pool((b1, b2), (i1, i2), "top_left"), expected)


# --------------------------------------------------------------------------- grid

SPATIAL = [(1, 1), (1, 37), (23, 1), (2, 2), (3, 5), (7, 7), (8, 8), (9, 17), (13, 13), (16, 33), (67, 5), (5, 67)]
BATCHES = (1, 2, 0)  # 0: unbatched
CHANNELS = (1, 3, 8, 17, 33)
GRID = [CCase(sp, layout, dtype, BATCHES[k % 3], CHANNELS[k % 5]) for k, sp, layout, dtype in cycled(SPATIAL)]


@pytest.mark.parametrize("case", params(GRID))
@pytest.mark.parametrize("op", OPS)
def test_forward_matches_reference(op, case):
    check_forward(op, case)


@pytest.mark.parametrize("case", params(GRID))
@pytest.mark.parametrize("op", OPS)
def test_backward_matches_reference(op, case):
    check_backward(op, case)


BACKEND_CASES = [
    CCase((1, 37), "channels_first", np.float32, 2, 3),
    CCase((23, 1), "channels_last", np.float64, 0, 17),
    CCase((9, 17), "channels_first", np.float64, 2, 8),
    CCase((16, 33), "channels_last", np.float32, 1, 33),
    CCase((67, 5), "channels_first", np.float32, 0, 5),
    CCase((5, 67), "channels_last", np.float64, 2, 3),
]


@pytest.mark.parametrize("case", params(BACKEND_CASES))
@pytest.mark.parametrize("op", OPS)
def test_every_backend_matches_reference(op, case, backend):
    check_forward(op, case)
    check_backward(op, case)


# Enough elements that two and three threads split the work; long rows and columns.
IDENTITY_CASES = [
    CCase((37, 29), "channels_first", np.float32, 2, 19),
    CCase((37, 29), "channels_last", np.float32, 2, 19),
    CCase((37, 29), "channels_first", np.float64, 2, 19),
    CCase((37, 29), "channels_last", np.float64, 2, 19),
    CCase((5, 2100), "channels_first", np.float32, 1, 4),
    CCase((300, 40), "channels_last", np.float64, 0, 7),
]


def _all_outputs(case: CCase) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for kind in ("normal", "special"):
        a = arrays(case, kind)
        g = case.make(case.shape, "normal", "grad")
        for op in OPS:
            for call in forward_calls(op, case.layout, a):
                out[f"fwd {call.label} {kind}"] = call.run()
            for call in backward_calls(op, case.layout, a, g):
                r = call.run()
                for k, v in enumerate(r if isinstance(r, tuple) else (r,)):
                    if isinstance(v, tuple):
                        for m, u in enumerate(v):
                            out[f"bwd {call.label} {kind} [{k}][{m}]"] = u
                    else:
                        out[f"bwd {call.label} {kind} [{k}]"] = v
    return out


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    base = identical_on_every_backend(lambda: _all_outputs(case))
    # and right
    a = arrays(case, "normal")
    for op in OPS:
        for call in forward_calls(op, case.layout, a):
            assert_exact(base[f"fwd {call.label} normal"], call.expect(), call.label)


# --------------------------------------------------------------------------- numerical gradients

NG_SHAPES = [pytest.param((2, 3, 4, 5), "channels_first", id="cf"),
             pytest.param((2, 5, 4, 3), "channels_last", id="cl"),
             pytest.param((3, 6, 5), "channels_first", id="cf-unbatched")]


def _distinct(rng, shape):
    return distinct_values(rng, shape) - int(np.prod(shape)) * 5e-3


@pytest.mark.parametrize("shape,layout", NG_SHAPES)
@pytest.mark.parametrize("direction", DIRECTIONS + CORNERS)
def test_numerical_gradient_corner_pool(direction, shape, layout, rng):
    f, fb = fp("corner_pool"), fp("corner_pool_backward")
    x = _distinct(rng, shape)
    g = rng.standard_normal(shape)
    expected = numerical_gradient(lambda v: f(v, direction, layout=layout), x, g)
    assert np.count_nonzero(expected) > 0
    np.testing.assert_allclose(fb(g, x, direction, layout=layout), expected, rtol=0, atol=1e-8)
    if direction in CORNERS:
        x2 = _distinct(rng, shape)
        e1 = numerical_gradient(lambda v: f(v, direction, x2=x2, layout=layout), x, g)
        e2 = numerical_gradient(lambda v: f(x, direction, x2=v, layout=layout), x2, g)
        g1, g2 = fb(g, x, direction, x2=x2, layout=layout)
        np.testing.assert_allclose(g1, e1, rtol=0, atol=1e-8)
        np.testing.assert_allclose(g2, e2, rtol=0, atol=1e-8)


@pytest.mark.parametrize("shape,layout", NG_SHAPES)
def test_numerical_gradient_center_pool(shape, layout, rng):
    f, fb = fp("center_pool"), fp("center_pool_backward")
    x, x2 = _distinct(rng, shape), _distinct(rng, shape)
    g = rng.standard_normal(shape)
    expected = numerical_gradient(lambda v: f(v, layout=layout), x, g)
    np.testing.assert_allclose(fb(g, x, layout=layout), expected, rtol=0, atol=1e-8)
    e1 = numerical_gradient(lambda v: f(v, x2=x2, layout=layout), x, g)
    e2 = numerical_gradient(lambda v: f(x, x2=v, layout=layout), x2, g)
    g1, g2 = fb(g, x, x2=x2, layout=layout)
    np.testing.assert_allclose(g1, e1, rtol=0, atol=1e-8)
    np.testing.assert_allclose(g2, e2, rtol=0, atol=1e-8)


@pytest.mark.parametrize("shape,layout", NG_SHAPES)
@pytest.mark.parametrize("corner", CORNERS)
def test_numerical_gradient_cascade(corner, shape, layout, rng):
    f, fb = fp("cascade_corner_pool"), fp("cascade_corner_pool_backward")
    b1, b2, i1, i2 = (_distinct(rng, shape) for _ in range(4))
    g = rng.standard_normal(shape)
    kw = dict(corner=corner, layout=layout)
    # single arrays
    eb = numerical_gradient(lambda v: f(v, i1, **kw), b1, g)
    ei = numerical_gradient(lambda v: f(b1, v, **kw), i1, g)
    gb, gi = fb(g, b1, i1, **kw)
    np.testing.assert_allclose(gb, eb, rtol=0, atol=1e-8)
    np.testing.assert_allclose(gi, ei, rtol=0, atol=1e-8)
    # pairs
    expected = [numerical_gradient(lambda v: f((v, b2), (i1, i2), **kw), b1, g),
                numerical_gradient(lambda v: f((b1, v), (i1, i2), **kw), b2, g),
                numerical_gradient(lambda v: f((b1, b2), (v, i2), **kw), i1, g),
                numerical_gradient(lambda v: f((b1, b2), (i1, v), **kw), i2, g)]
    (gb1, gb2), (gi1, gi2) = fb(g, (b1, b2), (i1, i2), **kw)
    for got, e in zip((gb1, gb2, gi1, gi2), expected):
        np.testing.assert_allclose(got, e, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- memory

MEM_CASES = [CCase((9, 17), "channels_first", np.float32, 2, 3),
             CCase((5, 67), "channels_last", np.float64, 2, 17),
             CCase((13, 13), "channels_first", np.float64, 0, 8)]


@pytest.mark.parametrize("case", params(MEM_CASES))
def test_out_argument(case, backend):
    """out= (starting as NaN) is written in full and returned; pairs for pair results."""
    a = arrays(case, "ints")
    x, x2 = a["x"], a["x2"]
    g = case.make(case.shape, "ints", "grad")
    kw = dict(layout=case.layout)
    snap = snapshot(g, *a.values())

    def fresh():
        return np.full(x.shape, np.nan, case.dtype)

    def check_one(call, expected):
        out = fresh()
        assert call(out) is out
        np.testing.assert_array_equal(out, expected)

    def check_pair(call, expected):
        o1, o2 = fresh(), fresh()
        r = call((o1, o2))
        assert isinstance(r, tuple) and r[0] is o1 and r[1] is o2
        np.testing.assert_array_equal(o1, expected[0])
        np.testing.assert_array_equal(o2, expected[1])

    for d in DIRECTIONS + CORNERS:
        check_one(lambda o: fp("corner_pool")(x, d, out=o, **kw), ref.corner_pool(x, d, **kw))
        check_one(lambda o: fp("corner_pool_backward")(g, x, d, out=o, **kw), ref.corner_pool_backward(g, x, d, **kw))
    for c in CORNERS:
        check_one(lambda o: fp("corner_pool")(x, c, x2=x2, out=o, **kw), ref.corner_pool(x, c, x2=x2, **kw))
        check_pair(lambda o: fp("corner_pool_backward")(g, x, c, x2=x2, out=o, **kw),
                   ref.corner_pool_backward(g, x, c, x2=x2, **kw))
        check_one(lambda o: fp("cascade_corner_pool")(x, (x2, a["i2"]), corner=c, out=o, **kw),
                  ref.cascade_corner_pool(x, (x2, a["i2"]), corner=c, **kw))
    check_one(lambda o: fp("center_pool")(x, out=o, **kw), ref.center_pool(x, **kw))
    check_one(lambda o: fp("center_pool")(x, x2=x2, out=o, **kw), ref.center_pool(x, x2=x2, **kw))
    check_one(lambda o: fp("center_pool_backward")(g, x, out=o, **kw), ref.center_pool_backward(g, x, **kw))
    check_pair(lambda o: fp("center_pool_backward")(g, x, x2=x2, out=o, **kw),
               ref.center_pool_backward(g, x, x2=x2, **kw))
    assert_unchanged(snap, "out=")


@pytest.mark.parametrize("case", params(MEM_CASES))
def test_non_contiguous_inputs(case, backend):
    """Strided, reversed, Fortran-order, read-only, unaligned and transposed-memory x, x2,
    grad_output, boundary and inner: the same results, inputs unchanged."""
    a = arrays(case, "special")
    x, x2 = a["x"], a["x2"]
    g = case.make(case.shape, "ints", "grad")
    kw = dict(layout=case.layout)
    e = {d: ref.corner_pool(x, d, **kw) for d in DIRECTIONS + CORNERS}
    e_x2 = ref.corner_pool(x, "bottom_left", x2=x2, **kw)
    e_b = {d: ref.corner_pool_backward(g, x, d, **kw) for d in ("top", "right", "top_right")}
    e_b2 = ref.corner_pool_backward(g, x, "top_left", x2=x2, **kw)
    e_c, e_cb = ref.center_pool(x, x2=x2, **kw), ref.center_pool_backward(g, x, x2=x2, **kw)
    e_k = ref.cascade_corner_pool((x, x2), x2, corner="bottom_right", **kw)
    e_kb = ref.cascade_corner_pool_backward(g, x, (x2, x), corner="top_right", **kw)

    def variants(v: np.ndarray) -> Dict[str, np.ndarray]:
        out = dict(views(v))
        if v.ndim == 4:
            out["transposed-memory"] = transposed_memory(v, case.layout)
        return out

    vx, vx2, vg = variants(x), variants(x2), variants(g)
    for name in vx:
        xv, x2v, gv = vx[name], vx2[name], vg[name]
        assert not xv.flags.c_contiguous or not xv.flags.aligned or not xv.flags.writeable, name
        snap = snapshot(xv, x2v, gv, x, x2, g)
        for d in DIRECTIONS + CORNERS:
            assert_exact(fp("corner_pool")(xv, d, **kw), e[d], f"{name} {d}")
        assert_exact(fp("corner_pool")(x, "bottom_left", x2=x2v, **kw), e_x2, f"{name} x2")
        assert_exact(fp("corner_pool")(xv, "bottom_left", x2=x2v, **kw), e_x2, f"{name} x and x2")
        for d, ed in e_b.items():
            assert_grads(fp("corner_pool_backward")(g, xv, d, **kw), ed, what=f"{name} {d} backward")
            assert_grads(fp("corner_pool_backward")(gv, x, d, **kw), ed, what=f"{name} grad {d}")
        assert_grads(fp("corner_pool_backward")(g, xv, "top_left", x2=x2v, **kw), e_b2,
                     what=f"{name} top_left x2 backward")
        assert_exact(fp("center_pool")(xv, x2=x2v, **kw), e_c, f"{name} center")
        assert_grads(fp("center_pool_backward")(gv, xv, x2=x2, **kw), e_cb, what=f"{name} center backward")
        assert_exact(fp("cascade_corner_pool")((xv, x2v), x2, corner="bottom_right", **kw), e_k, f"{name} cascade")
        assert_grads(fp("cascade_corner_pool_backward")(gv, xv, (x2v, x), corner="top_right", **kw), e_kb,
                     what=f"{name} cascade backward")
        assert_unchanged(snap, name)


def test_list_input_is_converted():
    x = [[[1.0, 3.0], [2.0, 0.0]]]  # (C, H, W) of Python floats: float64
    y = fp("corner_pool")(x, "top")
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[2.0, 3.0], [2.0, 0.0]]])
    np.testing.assert_array_equal(fp("center_pool")(x), [[[5.0, 6.0], [4.0, 5.0]]])


# --------------------------------------------------------------------------- errors

X = np.zeros((1, 2, 3, 4), np.float32)
X2 = np.ones((1, 2, 3, 4), np.float32)
GO = np.ones((1, 2, 3, 4), np.float32)


def _overlapping():
    buf = np.zeros(2 * X.size, np.float32)
    return buf[:X.size].reshape(X.shape), buf[4:4 + X.size].reshape(X.shape)


def _read_only():
    a = np.zeros(X.shape, np.float32)
    a.flags.writeable = False
    return a


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


E, T = ValueError, TypeError


def _by_name(name: str) -> Callable[..., Any]:
    """fastpool.<name>, looked up when called."""
    return lambda *a, **k: fp(name)(*a, **k)


cp, cpb = _by_name("corner_pool"), _by_name("corner_pool_backward")
ce, ceb = _by_name("center_pool"), _by_name("center_pool_backward")
cc, ccb = _by_name("cascade_corner_pool"), _by_name("cascade_corner_pool_backward")
ERRORS = [
    # x
    ("x-object", lambda: cp(object(), "top"), T, r"\bx\b"),
    ("x-int32", lambda: cp(np.zeros((1, 1, 2, 2), np.int32), "top"), T, _all(r"\bx\b", "int32")),
    ("x-int-list", lambda: ce([[[1, 2], [3, 4]]]), T, "int64"),
    ("x-float16", lambda: cp(X.astype(np.float16), "left"), T, "float16"),
    ("x-bool", lambda: ce(X.astype(bool)), T, "bool"),
    ("x-ndim-2", lambda: cp(np.zeros((3, 4), np.float32), "top"), E, r"\bx\b"),
    ("x-ndim-5", lambda: cp(np.zeros((1, 1, 1, 3, 4), np.float32), "top"), E, r"\bx\b"),
    ("x-ndim-2-center", lambda: ce(np.zeros((3, 4), np.float32)), E, r"\bx\b"),
    ("x-zero-channels", lambda: cp(np.zeros((1, 0, 3, 4), np.float32), "top"), E, r"(?i)zero|empty|size"),
    ("x-zero-height", lambda: ce(np.zeros((1, 1, 0, 4), np.float32)), E, r"(?i)zero|empty|size"),
    ("x-zero-width-cl", lambda: cp(np.zeros((1, 3, 0, 2), np.float32), "left", layout="channels_last"), E,
     r"(?i)zero|empty|size"),
    ("x-zero-batch", lambda: cpb(np.zeros((0, 1, 2, 2)), np.zeros((0, 1, 2, 2)), "top"), E, r"(?i)zero|empty|size"),
    # direction / corner
    ("direction-bad", lambda: cp(X, "up"), E, _all("direction", "'up'")),
    ("direction-case", lambda: cp(X, "Top"), E, _all("direction", "'Top'")),
    ("direction-center", lambda: cp(X, "center"), E, _all("direction", "'center'")),
    ("direction-backward", lambda: cpb(GO, X, "topleft"), E, _all("direction", "'topleft'")),
    ("direction-none", lambda: cp(X, None), (E, T), "direction"),
    ("cascade-corner-single", lambda: cc(X, X, corner="top"), E, _all("corner", "'top'")),
    ("cascade-corner-bad", lambda: cc(X, X, corner="left_top"), E, _all("corner", "'left_top'")),
    ("cascade-backward-corner", lambda: ccb(GO, X, X, corner="bottom"), E, _all("corner", "'bottom'")),
    # layout
    ("layout-bad", lambda: cp(X, "top", layout="NHWC"), E, _all("layout", "NHWC")),
    ("layout-bad-center", lambda: ce(X, layout="channels_middle"), E, "layout"),
    ("layout-bad-cascade", lambda: cc(X, X, layout="cl"), E, "layout"),
    ("layout-bad-backward", lambda: ceb(GO, X, layout=None), E, "layout"),
    # x2
    ("x2-single-direction", lambda: cp(X, "top", x2=X2), E, "x2"),
    ("x2-single-direction-backward", lambda: cpb(GO, X, "right", x2=X2), E, "x2"),
    ("x2-shape", lambda: cp(X, "top_left", x2=np.zeros((1, 2, 3, 5), np.float32)), E, "x2"),
    ("x2-shape-unbatched", lambda: cp(X, "top_left", x2=X2[0]), E, "x2"),
    ("x2-dtype", lambda: cp(X, "top_left", x2=X2.astype(np.float64)), T, "x2"),
    ("x2-int", lambda: ce(X, x2=X2.astype(np.int64)), T, "x2"),
    ("x2-shape-center", lambda: ce(X, x2=np.zeros((1, 2, 4, 3), np.float32)), E, "x2"),
    ("x2-shape-backward", lambda: cpb(GO, X, "top_left", x2=np.zeros((1, 2, 3, 5), np.float32)), E, "x2"),
    ("x2-dtype-center-backward", lambda: ceb(GO, X, x2=X2.astype(np.float64)), T, "x2"),
    # grad_output
    ("grad-shape", lambda: cpb(np.zeros((1, 2, 3, 5), np.float32), X, "top"), E, "grad_output"),
    ("grad-dtype", lambda: cpb(GO.astype(np.float64), X, "top"), T, "grad_output"),
    ("grad-shape-center", lambda: ceb(GO[0], X), E, "grad_output"),
    ("grad-shape-cascade", lambda: ccb(GO[:, :1], X, X), E, "grad_output"),
    ("grad-dtype-cascade", lambda: ccb(GO.astype(np.float64), X, X), T, "grad_output"),
    ("grad-int", lambda: ceb(GO.astype(np.int32), X), T, "grad_output"),
    # cascade boundary / inner
    ("inner-shape", lambda: cc(X, np.zeros((1, 2, 4, 3), np.float32)), E, "inner|boundary"),
    ("inner-dtype", lambda: cc(X, X.astype(np.float64)), T, "inner|boundary"),
    ("boundary-pair-shape", lambda: cc((X, np.zeros((1, 2, 3, 5), np.float32)), X), E, "boundary"),
    ("inner-pair-dtype", lambda: cc(X, (X, X.astype(np.float64))), T, "inner"),
    ("boundary-int", lambda: cc(X.astype(np.int16), X), T, "boundary"),
    ("inner-pair-shape-backward", lambda: ccb(GO, X, (X, X[0])), E, "inner"),
    # out
    ("out-shape", lambda: cp(X, "top", out=np.zeros((1, 2, 4, 3), np.float32)), E, r"\bout\b"),
    ("out-dtype", lambda: cp(X, "top", out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only", lambda: cp(X, "top_right", out=_read_only()), E, r"\bout\b"),
    ("out-overlaps-x", lambda: _overlap_call("corner_pool"), E, r"\bout\b"),
    ("out-is-x", lambda: _alias_call(), E, r"\bout\b"),
    ("out-shape-center", lambda: ce(X, out=np.zeros(X.shape[1:], np.float32)), E, r"\bout\b"),
    ("out-dtype-cascade", lambda: cc(X, X, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only-cascade", lambda: cc(X, X, out=_read_only()), E, r"\bout\b"),
    ("out-shape-backward", lambda: cpb(GO, X, "top", out=np.zeros((2, 2, 3, 4), np.float32)), E, r"\bout\b"),
    ("out-dtype-backward", lambda: ceb(GO, X, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-pair-shape-backward", lambda: cpb(GO, X, "top_left", x2=X2,
                                            out=(np.zeros(X.shape, np.float32), np.zeros((3,), np.float32))), E,
     r"\bout\b"),
    ("out-pair-read-only-backward", lambda: ceb(GO, X, x2=X2, out=(np.zeros(X.shape, np.float32), _read_only())), E,
     r"\bout\b"),
    ("out-overlaps-grad", lambda: _overlap_call("corner_pool_backward"), E, r"\bout\b"),
]


def _overlap_call(name: str):
    xo, out = _overlapping()
    if name == "corner_pool":
        return fp(name)(xo, "top", out=out)
    return fp(name)(xo, X, "bottom", out=out)  # out overlaps grad_output


def _alias_call():
    x = np.ones(X.shape, np.float32)
    return fp("center_pool")(x, out=x)


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------- torch


def _torch_dir(torch, t, d: str):
    """CornerNet's pools as cumulative maxima (channels_first)."""
    if d == "top":
        return torch.flip(torch.cummax(torch.flip(t, [2]), dim=2).values, [2])
    if d == "bottom":
        return torch.cummax(t, dim=2).values
    if d == "left":
        return torch.flip(torch.cummax(torch.flip(t, [3]), dim=3).values, [3])
    return torch.cummax(t, dim=3).values


def _torch_op(torch, op: str, ts):
    if op in DIRECTIONS:
        return _torch_dir(torch, ts[0], op)
    if op in CORNERS:
        v, h = op.split("_")
        return _torch_dir(torch, ts[0], v) + _torch_dir(torch, ts[1], h)
    if op == "center":
        return (_torch_dir(torch, _torch_dir(torch, ts[0], "top"), "bottom")
                + _torch_dir(torch, _torch_dir(torch, ts[1], "left"), "right"))
    v, h = op.split("_", 1)[1].split("_")  # "cascade_<v>_<h>"
    b1, b2, i1, i2 = ts
    return (_torch_dir(torch, i1 + _torch_dir(torch, b1, h), v)
            + _torch_dir(torch, i2 + _torch_dir(torch, b2, v), h))


def _fastpool_op(op: str, xs, g=None):
    """fastpool's forward (g None) or backward of the same composition, on arrays xs."""
    if op in DIRECTIONS:
        return fp("corner_pool")(xs[0], op) if g is None else (fp("corner_pool_backward")(g, xs[0], op),)
    if op in CORNERS:
        return fp("corner_pool")(xs[0], op, x2=xs[1]) if g is None else fp("corner_pool_backward")(g, xs[0], op,
                                                                                                  x2=xs[1])
    if op == "center":
        return fp("center_pool")(xs[0], x2=xs[1]) if g is None else fp("center_pool_backward")(g, xs[0], x2=xs[1])
    corner = op.split("_", 1)[1]
    b, i = (xs[0], xs[1]), (xs[2], xs[3])
    if g is None:
        return fp("cascade_corner_pool")(b, i, corner=corner)
    (gb1, gb2), (gi1, gi2) = fp("cascade_corner_pool_backward")(g, b, i, corner=corner)
    return gb1, gb2, gi1, gi2


TORCH_OPS = list(DIRECTIONS + CORNERS) + ["center"] + [f"cascade_{c}" for c in CORNERS]


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("op", TORCH_OPS)
def test_matches_torch(op, dtype):
    torch = pytest.importorskip("torch")
    case = CCase((9, 17), "channels_first", dtype, 2, 5)
    n_in = 1 if op in DIRECTIONS else 4 if op.startswith("cascade") else 2
    # values: normal data, and data with NaN and +-inf (cummax propagates NaN too)
    for kind in ("normal", "special"):
        xs = [case.data(kind, f"t{k}") for k in range(n_in)]
        with torch.no_grad():
            ty = _torch_op(torch, op, [torch.from_numpy(a.copy()) for a in xs]).numpy()
        assert_exact(_fastpool_op(op, xs), ty, f"{op} {kind}")
    # gradients on distinct values (no ties: the routing is unique); grad_output of
    # multiples of 1/4, so every gradient sum is exact whatever the order
    rng = case.rng("distinct")
    xs = [_distinct(rng, case.shape).astype(dtype) for _ in range(n_in)]
    g = case.make(case.shape, "ints", "grad")
    ts = [torch.from_numpy(a.copy()).requires_grad_(True) for a in xs]
    _torch_op(torch, op, ts).backward(torch.from_numpy(g))
    got = _fastpool_op(op, xs, g)
    assert len(got) == len(ts)
    for k, (a, t) in enumerate(zip(got, ts)):
        np.testing.assert_array_equal(a, t.grad.numpy(), err_msg=f"{op} grad {k}")
