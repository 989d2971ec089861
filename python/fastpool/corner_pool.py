"""Corner, center and cascade corner pooling (CornerNet, CenterNet), forward and backward.

All three are built from one kernel: the running maximum along the rows or the
columns of each 2-D plane (a *line*), optionally added to another array in the same
pass. Inputs are (N, C, H, W), or (N, H, W, C) with ``layout="channels_last"``; the
batch dimension is optional. Outputs have the input's shape.

Directions (i indexes H, j indexes W, within one (n, c) plane):

- ``"top"``: ``y[i, j] = max_{r >= i} x[r, j]`` (the maximum from the bottom edge up to i)
- ``"bottom"``: ``y[i, j] = max_{r <= i} x[r, j]``
- ``"left"``: ``y[i, j] = max_{c >= j} x[i, c]``
- ``"right"``: ``y[i, j] = max_{c <= j} x[i, c]``
- a corner ``"<v>_<h>"`` (``"top_left"``, ``"top_right"``, ``"bottom_left"``,
  ``"bottom_right"``) is ``v(x) + h(x2)``, ``x2`` defaulting to ``x``.

NaN propagates: a maximum over a range holding a NaN is NaN.

**Gradients** follow CornerNet's reference implementation, which scans each line from
the far edge and moves the maximum on a strictly greater value: ``grad_output[i, j]``
goes to the element that supplied the maximum, and among equal maxima to the one
nearest the far edge (for ``"top"`` the largest row r >= i holding it; for
``"bottom"`` the smallest r <= i; ``"left"``: the largest column; ``"right"``: the
smallest). NaN counts as larger than every number, and the first NaN found from
the far edge supplies the maximum.

Non-contiguous inputs are copied once; C-contiguous inputs are read in place.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from ._config import get_num_threads
from ._validate import check_float_array, check_layout, check_no_overlap, contiguous, output_array

_SCANS = {"top": (0, _core.LineScan.from_end), "bottom": (0, _core.LineScan.from_start),
          "left": (1, _core.LineScan.from_end), "right": (1, _core.LineScan.from_start)}
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
DIRECTIONS = tuple(_SCANS) + CORNERS
_COLUMN_MAX = (0, _core.LineScan.whole)
_ROW_MAX = (1, _core.LineScan.whole)

Pass = Tuple[int, Any]  # (axis: 0 along H, 1 along W; _core.LineScan)
Pair = Tuple[np.ndarray, np.ndarray]


def _passes(direction: Any, allowed: Sequence[str], name: str) -> List[Pass]:
    """The line scans of a direction: one, or (vertical, horizontal) for a corner."""
    if not isinstance(direction, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(allowed)}; got {direction!r}")
    if direction not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {direction!r}")
    if direction in _SCANS:
        return [_SCANS[direction]]
    v, h = direction.split("_")
    return [_SCANS[v], _SCANS[h]]


class _Planes:
    """The arrays of one call, checked against each other, seen as 4-D kernel inputs."""

    def __init__(self, layout: Any, first: Tuple[str, Any]) -> None:
        self.channels_last = check_layout(layout)
        name, x = first
        x = check_float_array(x, name)
        if x.ndim not in (3, 4):
            raise ValueError(
                f"{name} must have 3 (unbatched) or 4 (batched) dimensions for 2D pooling, got {x.ndim}")
        if any(s == 0 for s in x.shape):
            raise ValueError(f"{name} has a zero-size dimension: shape {x.shape}")
        self.shape, self.dtype, self.name = x.shape, x.dtype, name
        self.kernel_shape = x.shape if x.ndim == 4 else (1,) + x.shape
        self.first = x

    def check(self, name: str, a: Any) -> np.ndarray:
        """Another input: same shape and dtype as the first."""
        a = check_float_array(a, name)
        if a.shape != self.shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {self.name}'s shape {self.shape}")
        if a.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {a.dtype}, expected {self.name}'s dtype {self.dtype}")
        return a

    def kernel(self, a: np.ndarray) -> np.ndarray:
        """The 4-D C-contiguous array the kernels read (a view when a is contiguous)."""
        return contiguous(a).reshape(self.kernel_shape)

    def output(self, out: Optional[np.ndarray], name: str = "out") -> np.ndarray:
        return output_array(out, self.shape, self.dtype, name)

    def scratch(self) -> np.ndarray:
        return output_array(None, self.kernel_shape, self.dtype)

    def forward(self, x: np.ndarray, add: Optional[np.ndarray], y: np.ndarray, scan: Pass) -> None:
        _core.line_max_forward(x, add, y, scan[0], scan[1], self.channels_last, get_num_threads())

    def backward(self, gy: np.ndarray, x: np.ndarray, add: Optional[np.ndarray], gx: np.ndarray,
                 scan: Pass) -> None:
        _core.line_max_backward(gy, x, add, gx, scan[0], scan[1], self.channels_last, get_num_threads())


def _outputs(planes: _Planes, out: Any, n: int, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
    """n result arrays: fresh, or the user's out (an array when n == 1, else a tuple)."""
    if n == 1:
        outs = [planes.output(out)]
    else:
        if out is not None and not (isinstance(out, (tuple, list)) and len(out) == n):
            raise TypeError(f"out must be None or a tuple of {n} arrays (one per gradient), got {type(out).__name__}")
        outs = [planes.output(None if out is None else out[k], f"out[{k}]") for k in range(n)]
        if n == 2 and np.may_share_memory(outs[0], outs[1]):
            raise ValueError("out[0] and out[1] overlap")
    for k, o in enumerate(outs):
        check_no_overlap(o, "out" if n == 1 else f"out[{k}]", *inputs)
    return outs


def _two_forward(planes: _Planes, x: np.ndarray, x2: Optional[np.ndarray], passes: List[Pass],
                 out: Optional[np.ndarray]) -> np.ndarray:
    """passes[0](x) (+ passes[1](x2 or x))."""
    (y,) = _outputs(planes, out, 1, [x, x2])
    yk = y.reshape(planes.kernel_shape)
    xk = planes.kernel(x)
    planes.forward(xk, None, yk, passes[0])
    if len(passes) == 2:
        planes.forward(xk if x2 is None else planes.kernel(x2), yk, yk, passes[1])
    return y


def _two_backward(planes: _Planes, gy: np.ndarray, x: np.ndarray, x2: Optional[np.ndarray],
                  passes: List[Pass], out: Any) -> Union[np.ndarray, Pair]:
    gyk, xk = planes.kernel(gy), planes.kernel(x)
    if x2 is None:
        (gx,) = _outputs(planes, out, 1, [gy, x])
        gxk = gx.reshape(planes.kernel_shape)
        planes.backward(gyk, xk, None, gxk, passes[0])
        if len(passes) == 2:
            planes.backward(gyk, xk, gxk, gxk, passes[1])
        return gx
    gx, gx2 = _outputs(planes, out, 2, [gy, x, x2])
    planes.backward(gyk, xk, None, gx.reshape(planes.kernel_shape), passes[0])
    planes.backward(gyk, planes.kernel(x2), None, gx2.reshape(planes.kernel_shape), passes[1])
    return gx, gx2


def corner_pool(
    x: np.ndarray,
    direction: str,
    x2: Optional[np.ndarray] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Corner pooling (CornerNet, Law & Deng 2018): running maxima from an edge.

    ``direction`` is ``"top"`` (``y[i, j] = max_{r >= i} x[r, j]``), ``"bottom"``
    (``max_{r <= i}``), ``"left"`` (``y[i, j] = max_{c >= j} x[i, c]``), ``"right"``
    (``max_{c <= j}``), or a corner ``"top_left"`` / ``"top_right"`` /
    ``"bottom_left"`` / ``"bottom_right"``: the sum of its two pools,
    ``top(x) + left(x2)`` for ``"top_left"`` (``x2`` defaults to ``x``; CornerNet
    pools two different feature maps).

    Parameters
    ----------
    x : ndarray, (N, C, H, W) or (C, H, W); (N, H, W, C) or (H, W, C) channels_last
        float32 or float64.
    direction : str
    x2 : ndarray, optional
        The horizontal pool's input of a corner (x's shape and dtype).
    layout : {"channels_first", "channels_last"}
    out : ndarray, optional
        Receives the result (x's shape and dtype, C-contiguous).

    Returns
    -------
    ndarray of x's shape. NaN propagates.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[[1., 3., 2.],
    ...                 [0., 1., 4.]]]], dtype=np.float32)
    >>> fastpool.corner_pool(x, "left")[0, 0]
    array([[3., 3., 2.],
           [4., 4., 4.]], dtype=float32)
    >>> fastpool.corner_pool(x, "top_left")[0, 0]
    array([[4., 6., 6.],
           [4., 5., 8.]], dtype=float32)
    """
    planes = _Planes(layout, ("x", x))
    x = planes.first
    passes = _passes(direction, DIRECTIONS, "direction")
    if x2 is not None:
        if len(passes) == 1:
            raise ValueError(f"x2 is the second input of a corner; direction {direction!r} takes one input")
        x2 = planes.check("x2", x2)
    return _two_forward(planes, x, x2, passes, out)


def corner_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    direction: str,
    x2: Optional[np.ndarray] = None,
    layout: str = "channels_first",
    out: Union[None, np.ndarray, Pair] = None,
) -> Union[np.ndarray, Pair]:
    """Gradient of :func:`corner_pool`: each ``grad_output[i, j]`` goes to the element
    that supplied its maximum, the one nearest the far edge among equal maxima
    (CornerNet's rule; see the module notes for NaN).

    Returns ``grad_x``, or ``(grad_x, grad_x2)`` when ``x2`` is given (``out`` is then
    a tuple of two arrays). For a corner without ``x2`` both pools' gradients add up
    in ``grad_x``.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[[2.], [5.], [5.], [1.]]]], dtype=np.float32)  # H = 4, W = 1
    >>> g = np.ones_like(x)
    >>> fastpool.corner_pool_backward(g, x, "top")[0, 0, :, 0]  # rows 0-2 see the 5 at row 2
    array([0., 0., 3., 1.], dtype=float32)
    """
    planes = _Planes(layout, ("x", x))
    x = planes.first
    passes = _passes(direction, DIRECTIONS, "direction")
    gy = planes.check("grad_output", grad_output)
    if x2 is not None:
        if len(passes) == 1:
            raise ValueError(f"x2 is the second input of a corner; direction {direction!r} takes one input")
        x2 = planes.check("x2", x2)
    return _two_backward(planes, gy, x, x2, passes, out)


def center_pool(
    x: np.ndarray,
    x2: Optional[np.ndarray] = None,
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Center pooling (CenterNet, Duan et al. 2019): the maximum of each position's
    column plus the maximum of its row.

    ``y[i, j] = max_r x[r, j] + max_c x2[i, c]`` (``x2`` defaults to ``x``), the same as
    CenterNet's ``bottom(top(x)) + right(left(x2))``, in one read of the input and one
    write of ``y`` (the line maxima go to small buffers first).
    Shapes as :func:`corner_pool`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[[1., 3., 2.],
    ...                 [0., 1., 4.]]]], dtype=np.float32)
    >>> fastpool.center_pool(x)[0, 0]  # column maxima (1, 3, 4) + row maxima (3, 4)
    array([[4., 6., 7.],
           [5., 7., 8.]], dtype=float32)
    """
    planes = _Planes(layout, ("x", x))
    x = planes.first
    if x2 is not None:
        x2 = planes.check("x2", x2)
    (y,) = _outputs(planes, out, 1, [x, x2])
    xk = planes.kernel(x)
    _core.center_max_forward(xk, xk if x2 is None else planes.kernel(x2), y.reshape(planes.kernel_shape),
                             planes.channels_last, get_num_threads())
    return y


def center_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    x2: Optional[np.ndarray] = None,
    layout: str = "channels_first",
    out: Union[None, np.ndarray, Pair] = None,
) -> Union[np.ndarray, Pair]:
    """Gradient of :func:`center_pool`: a column's summed gradient goes to its
    maximum, the last one (largest row) among equal maxima; a row's to its last
    (largest column) maximum. That is where CenterNet's ``bottom(top(.))`` and
    ``right(left(.))`` route it. A NaN counts as the maximum (the last NaN wins).

    Returns ``grad_x``, or ``(grad_x, grad_x2)`` when ``x2`` is given.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[[1., 3.],
    ...                 [3., 3.]]]], dtype=np.float32)
    >>> fastpool.center_pool_backward(np.ones_like(x), x)[0, 0]
    array([[0., 2.],
           [2., 4.]], dtype=float32)
    """
    planes = _Planes(layout, ("x", x))
    x = planes.first
    gy = planes.check("grad_output", grad_output)
    if x2 is not None:
        x2 = planes.check("x2", x2)
    return _two_backward(planes, gy, x, x2, [_COLUMN_MAX, _ROW_MAX], out)


def _term_inputs(planes: _Planes, value: Any, name: str) -> Tuple[Pair, bool]:
    """(term-1 array, term-2 array) and whether one array serves both terms."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an array or a pair of arrays (one per term), got {len(value)} items")
        return (planes.check(f"{name}[0]", value[0]), planes.check(f"{name}[1]", value[1])), False
    a = planes.check(name, value)
    return (a, a), True


def _cascade_setup(boundary: Any, inner: Any, corner: Any, layout: Any):
    first = boundary[0] if isinstance(boundary, (tuple, list)) and len(boundary) == 2 else boundary
    planes = _Planes(layout, ("boundary" if first is boundary else "boundary[0]", first))
    v, h = _passes(corner, CORNERS, "corner")
    b, b_shared = _term_inputs(planes, boundary, "boundary")
    i, i_shared = _term_inputs(planes, inner, "inner")
    return planes, v, h, [planes.kernel(a) for a in b], b_shared, [planes.kernel(a) for a in i], i_shared


def cascade_corner_pool(
    boundary: Union[np.ndarray, Pair],
    inner: Union[np.ndarray, Pair],
    corner: str = "top_left",
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Cascade corner pooling (CenterNet, Duan et al. 2019): each term first takes the
    maximum along the boundary direction, then, added to the inner features, along
    the inner direction.

    For ``corner="<v>_<h>"``::

        y = v(inner1 + h(boundary1)) + h(inner2 + v(boundary2))

    so ``"top_left"`` is ``top(inner1 + left(boundary1)) + left(inner2 + top(boundary2))``.
    ``boundary`` and ``inner`` are each one array (used by both terms) or a pair
    (term 1, term 2); all have the same shape and dtype. (In CenterNet's module a
    convolution sits between the sum and the second pool; apply it outside by
    calling :func:`corner_pool` in two steps where that matters.)

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> b = np.array([[[[0., 2.],
    ...                 [1., 0.]]]], dtype=np.float32)
    >>> fastpool.cascade_corner_pool(b, np.zeros_like(b))[0, 0]  # top(left(b)) + left(top(b))
    array([[4., 4.],
           [2., 0.]], dtype=float32)
    """
    planes, v, h, b, _, i, _ = _cascade_setup(boundary, inner, corner, layout)
    (y,) = _outputs(planes, out, 1, b + i)
    yk = y.reshape(planes.kernel_shape)
    t = planes.scratch()
    planes.forward(b[0], i[0], t, h)
    planes.forward(t, None, yk, v)
    planes.forward(b[1], i[1], t, v)
    planes.forward(t, yk, yk, h)
    return y


def cascade_corner_pool_backward(
    grad_output: np.ndarray,
    boundary: Union[np.ndarray, Pair],
    inner: Union[np.ndarray, Pair],
    corner: str = "top_left",
    layout: str = "channels_first",
) -> Tuple[Union[np.ndarray, Pair], Union[np.ndarray, Pair]]:
    """Gradient of :func:`cascade_corner_pool`: ``(grad_boundary, grad_inner)``, each
    one array if that argument was one array (both terms' gradients summed), else a
    pair. The maxima route gradients as in :func:`corner_pool_backward`.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> b = np.array([[[[0., 2.],
    ...                 [1., 0.]]]], dtype=np.float32)
    >>> gb, gi = fastpool.cascade_corner_pool_backward(np.ones_like(b), b, np.zeros_like(b))
    >>> gb[0, 0]
    array([[0., 4.],
           [2., 2.]], dtype=float32)
    """
    planes, v, h, b, b_shared, i, i_shared = _cascade_setup(boundary, inner, corner, layout)
    gy = planes.kernel(planes.check("grad_output", grad_output))
    shape = planes.shape
    t = planes.scratch()
    # Term 1: s1 = inner1 + h(boundary1), y1 = v(s1).
    g_i1 = planes.scratch()
    planes.forward(b[0], i[0], t, h)
    planes.backward(gy, t, None, g_i1, v)
    g_b1 = planes.scratch()
    planes.backward(g_i1, b[0], None, g_b1, h)
    # Term 2: s2 = inner2 + v(boundary2), y2 = h(s2).
    planes.forward(b[1], i[1], t, v)
    g_i2 = planes.scratch()
    planes.backward(gy, t, None, g_i2, h)
    g_b2 = g_b1 if b_shared else planes.scratch()
    planes.backward(g_i2, b[1], g_b1 if b_shared else None, g_b2, v)
    if i_shared:  # term 2's routing again, added to term 1's (a kernel pass, not a NumPy add)
        planes.backward(gy, t, g_i1, g_i1, h)
    grad_b: Union[np.ndarray, Pair] = g_b1.reshape(shape) if b_shared else (g_b1.reshape(shape), g_b2.reshape(shape))
    grad_i: Union[np.ndarray, Pair] = g_i1.reshape(shape) if i_shared else (g_i1.reshape(shape), g_i2.reshape(shape))
    return grad_b, grad_i
