"""Spatial pyramid pooling (He et al. 2014) and strip pooling (Hou et al. 2020).

Both are several adaptive poolings of one input (see :mod:`fastpool.adaptive_pool`
for the bin rule), computed together in one pass over the input.
"""

from __future__ import annotations

import math

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _bins
from ._validate import (
    Layout,
    _as_int,
    _is_sequence,
    check_bool,
    check_float_array,
    check_layout,
    check_no_overlap,
    contiguous,
    output_array,
)
from .pooling import _Prepared

__all__ = [
    "spatial_pyramid_pool",
    "spatial_pyramid_pool_backward",
    "strip_pool",
    "strip_pool_backward",
]

Levels = Sequence[Union[int, Sequence[int]]]


def _mode(mode: Any) -> str:
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    return mode


def _levels(levels: Any, rank: int) -> List[Tuple[int, ...]]:
    """Each level as per-axis bin counts (an int l means l along every axis)."""
    if isinstance(levels, (str, bytes)) or not _is_sequence(levels) or len(levels) == 0:
        raise TypeError(f"levels must be a non-empty sequence of ints or {rank}-tuples of ints, got {levels!r}")
    out = []
    for lv in levels:
        if _is_sequence(lv):
            if len(lv) != rank:
                raise ValueError(f"levels entries must be ints or {rank}-tuples (one per spatial axis), got {levels!r}")
            bins = tuple(_as_int(b, "levels") for b in lv)
        else:
            bins = (_as_int(lv, "levels"),) * rank
        if any(b < 1 or b > (1 << 20) for b in bins):
            raise ValueError(f"levels entries must be in [1, 2**20], got {levels!r}")
        out.append(bins)
    return out


def _rank(x: np.ndarray) -> int:
    rank = x.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"x must be batched, (N, C, *spatial) or (N, *spatial, C) with 1 to 3 spatial axes; "
                         f"got {x.ndim} dimensions")
    return rank


def _pyramid(layout: Layout, shape, levels: List[Tuple[int, ...]]) -> Tuple[List[_bins.Grid], int]:
    grids = [_bins.Grid(layout, shape, lv, None) for lv in levels]
    return grids, sum(math.prod(lv) for lv in levels)


def _level_views(a: np.ndarray, grids: List[_bins.Grid]) -> List[np.ndarray]:
    """Each level's block of a (N, C * total) array as (N, C, D, H, W): C x bins per level."""
    views, off = [], 0
    for g in grids:
        n_bins = math.prod(g.out_spatial)
        block = a[:, off:off + g.channels * n_bins]
        views.append(block.reshape((g.batch, g.channels) + _bins.pad3(g.out_spatial)))  # splits one axis: a view
        off += g.channels * n_bins
    return views


def spatial_pyramid_pool(
    x: np.ndarray,
    levels: Levels = (1, 2, 4),
    mode: str = "max",
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
    return_indices: bool = False,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Spatial pyramid pooling: adaptive max (or avg) pooling to each level's grid,
    flattened and concatenated.

    The output is (N, C * sum(prod(level))): level by level in the given order, each
    flattened as C x bins (row-major), the standard order, for either layout. Inputs
    of different spatial sizes give the same output length. All levels are computed
    in one pass over the input.

    Parameters
    ----------
    x : ndarray, float32 or float64
        Batched: (N, C, *spatial) or (N, *spatial, C) for ``layout="channels_last"``,
        1 to 3 spatial axes.
    levels : sequence of int or tuple
        Bins per level: ``l`` means l along every axis; a tuple gives them per axis,
        e.g. ``((1, 1), (2, 3))``.
    mode : "max" or "avg"
    layout, out
        As :func:`fastpool.max_pool`.
    return_indices : bool
        ``mode="max"`` only: also return int64 indices shaped like the output, each
        the flat spatial position of its bin's maximum (as ``adaptive_max_pool``), for
        :func:`spatial_pyramid_pool_backward`'s ``indices``.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> fastpool.spatial_pyramid_pool(x, levels=(1, 2))
    array([[15.,  5.,  7., 13., 15.]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _rank(x)
    mode = _mode(mode)
    return_indices = _indices_mode(check_bool(return_indices, "return_indices"), mode, "return_indices")
    lv = _levels(levels, rank)
    prep = _Prepared(x, rank, layout, allow_view=True)  # the result is layout-free
    klayout = prep.kernel_layout()
    grids, total = _pyramid(klayout, prep.view.shape, lv)
    y = output_array(out, (grids[0].batch, grids[0].channels * total), prep.view.dtype)
    check_no_overlap(y, "out", prep.view)
    idx = np.empty(y.shape, dtype=np.int64) if return_indices else None
    idx_views = _level_views(idx, grids) if return_indices else [None] * len(grids)
    xm = prep.materialize()
    _bins.forward(grids[0].canon_in(xm), klayout.channels_last, mode,
                  [(g.bins, v, iv) for g, v, iv in zip(grids, _level_views(y, grids), idx_views)])
    return (y, idx) if return_indices else y


def _indices_mode(given: bool, mode: str, name: str) -> bool:
    if given and mode != "max":
        raise ValueError(f"{name} needs mode='max', got mode={mode!r}")
    return given


def spatial_pyramid_pool_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    levels: Levels = (1, 2, 4),
    mode: str = "max",
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
    indices: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`spatial_pyramid_pool` with respect to ``x``: every level's
    gradient routed to its bins' maxima (recomputed from ``x``, or taken from the
    ``indices`` the forward returned; ``x`` is then only read for its shape) or spread
    over the bins (avg), accumulated over levels and overlapping bins.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.array([[[1., 3., 2., 0.]]], dtype=np.float32)
    >>> fastpool.spatial_pyramid_pool_backward(np.ones((1, 3), np.float32), x, levels=(1, 2))
    array([[[0., 2., 1., 0.]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    rank = _rank(x)
    mode = _mode(mode)
    lv = _levels(levels, rank)
    lay = Layout(x.ndim, rank, check_layout(layout), "x")
    grids, total = _pyramid(lay, x.shape, lv)
    g = _bins.check_grad(grad_output, (grids[0].batch, grids[0].channels * total), x.dtype)
    idx_c = None
    if _indices_mode(indices is not None, mode, "indices"):  # read with grad_output's strides
        idx_c = contiguous(_bins.check_indices(indices, g.shape))
        g = contiguous(g)
    gx = output_array(out, x.shape, x.dtype)
    check_no_overlap(gx, "out", x, g, indices)
    xm = grids[0].canon_in(contiguous(x)) if mode == "max" and idx_c is None else None
    idx_views = _level_views(idx_c, grids) if idx_c is not None else [None] * len(grids)
    bad = _bins.backward(xm, grids[0].canon_in(gx), lay.channels_last, mode,
                         [(gr.bins, v, iv) for gr, v, iv in zip(grids, _level_views(_bins.readable(g), grids),
                                                                   idx_views)])
    if bad >= 0:
        raise _bins.bad_index_error(idx_c, bad, int(np.prod(grids[0].spatial)))
    return gx


def _strip_grids(layout: Layout, shape) -> Tuple[_bins.Grid, _bins.Grid]:
    spatial = _bins.spatial_split(shape, layout)[2]
    return _bins.Grid(layout, shape, (spatial[0], 1), None), _bins.Grid(layout, shape, (1, spatial[1]), None)


def strip_pool(
    x: np.ndarray,
    mode: str = "avg",
    layout: str = "channels_first",
) -> Tuple[np.ndarray, np.ndarray]:
    """Strip pooling (SPNet): the (H x 1) and (1 x W) pooled maps of a 2D input.

    ``y_h[n, c, h, 0]`` reduces row h over W; ``y_w[n, c, 0, w]`` reduces column w
    over H (mean for ``mode="avg"``, maximum for ``"max"``). Shapes (N, C, H, 1) and
    (N, C, 1, W), or (N, H, 1, C) and (N, 1, W, C) for ``layout="channels_last"``;
    the batch dimension is optional. Both maps come from one pass over ``x``.

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    >>> y_h, y_w = fastpool.strip_pool(x)
    >>> y_h.ravel(), y_w.ravel()
    (array([1., 4.], dtype=float32), array([1.5, 2.5, 3.5], dtype=float32))
    """
    x = check_float_array(x, "x")
    mode = _mode(mode)
    prep = _Prepared(x, 2, layout, allow_view=True)
    klayout = prep.kernel_layout()
    gh, gw = _strip_grids(klayout, prep.view.shape)
    y_h = output_array(None, gh.shape, prep.view.dtype)
    y_w = output_array(None, gw.shape, prep.view.dtype)
    xm = prep.materialize()
    _bins.forward(gh.canon_in(xm), klayout.channels_last, mode,
                  [(gh.bins, gh.level(y_h), None), (gw.bins, gw.level(y_w), None)])
    return prep.to_user(y_h), prep.to_user(y_w)


def strip_pool_backward(
    grad_h: np.ndarray,
    grad_w: np.ndarray,
    x: np.ndarray,
    mode: str = "avg",
    layout: str = "channels_first",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Gradient of :func:`strip_pool`: the sum of both maps' gradients (for ``"max"``
    routed to the first maximum of each strip, recomputed from ``x``; for ``"avg"``
    only ``x``'s shape is used).

    Examples
    --------
    >>> import numpy as np, fastpool
    >>> x = np.zeros((1, 1, 2, 2), np.float32)
    >>> fastpool.strip_pool_backward(np.ones((1, 1, 2, 1), np.float32), np.ones((1, 1, 1, 2), np.float32), x)
    array([[[[1., 1.],
             [1., 1.]]]], dtype=float32)
    """
    x = check_float_array(x, "x")
    mode = _mode(mode)
    lay = Layout(x.ndim, 2, check_layout(layout), "x")
    gh, gw = _strip_grids(lay, x.shape)
    g_h = _bins.check_grad(grad_h, gh.shape, x.dtype, "grad_h")
    g_w = _bins.check_grad(grad_w, gw.shape, x.dtype, "grad_w")
    gx = output_array(out, x.shape, x.dtype)
    check_no_overlap(gx, "out", x, g_h, g_w)
    xm = gh.canon_in(contiguous(x)) if mode == "max" else None
    _bins.backward(xm, gh.canon_in(gx), lay.channels_last, mode,
                   [(gh.bins, gh.level(_bins.readable(g_h)), None), (gw.bins, gw.level(_bins.readable(g_w)), None)])
    return gx
