"""Plain-NumPy reference of stochastic pooling (Zeiler & Fergus 2013), forward and backward.

Written from fastpool.stochastic_pool's docstring alone; it shares no code with fastpool
(geometry, padding, windows and tap tables come from tests/reference.py, read-only).

Over each window's taps inside the input (padding takes no part), S = sum x:

* training: ``u`` in [0, 1) from a counter-based hash of (seed, plane n*C + c, window w,
  w the row-major index of the window in the output plane)::

      mix(z)  = splitmix64's output function (mod 2**64):
                z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9; z = (z ^ z >> 27) * 0x94D049BB133111EB;
                z ^ z >> 31
      z       = mix(mix(seed ^ plane * 0x9E3779B97F4A7C15) + w * 0xD1B54A32D192ED03)
      u       = (z >> 40) / 2**24 (float32)  or  (z >> 11) / 2**53 (float64)

  then, in x's dtype and in row-major tap order, the running sum c of the window's
  taps (S is c after the last tap) and the threshold t = u * S (one rounding in x's
  dtype): the drawn tap is the first at which c > t; where rounding leaves none
  (t == S), the last tap at which c == S and the tap is > 0; a window of zeros keeps
  its first tap inside the input. y = the drawn tap's value, the index its flat
  spatial position ((d * H + h) * W + w).
* inference: y = sum x^2 / S (0 for a window of zeros); its gradient
  (2 x_i - y) / S * g for every tap of the window (0 for a window of zeros).
* training backward: g of every window to its drawn tap (overlapping windows add).

A window holding a value that is not >= 0 and finite raises ValueError. The draw is a
loop over the taps with NumPy arrays over all windows (sequential in tap order); the
hash uses numpy.uint64 arithmetic (wrapping products).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from reference import _from_ncs, _padded, _rank, _tap_tables, _to_ncs, _windows, make_geometry

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
WINDOW_MULT = np.uint64(0xD1B54A32D192ED03)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)


def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's output function on a uint64 array (products mod 2**64)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * MIX_1
        z = (z ^ (z >> np.uint64(27))) * MIX_2
    return z ^ (z >> np.uint64(31))


def hash_words(seed: int, planes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """z of every (plane, window) pair (broadcast), uint64."""
    s = np.uint64(int(seed))
    p = np.asarray(planes, dtype=np.uint64)
    w = np.asarray(windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        inner = mix64(s ^ (p * GOLDEN))
        return mix64(inner + w * WINDOW_MULT)


def uniforms(seed: int, planes: np.ndarray, windows: np.ndarray, dtype: Any) -> np.ndarray:
    """u in [0, 1) in ``dtype`` of every (plane, window) pair (broadcast)."""
    z = hash_words(seed, planes, windows)
    if np.dtype(dtype) == np.float32:
        return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    return (z >> np.uint64(11)).astype(np.float64) * np.float64(2.0 ** -53)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"the reference takes an int seed, got {seed!r}")
    if not 0 <= int(seed) < 2 ** 64:
        raise ValueError(f"seed out of range: {seed!r}")
    return int(seed)


def _setup(x: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode, layout):
    """(xc (N, C, *spatial), batched, geom, windows (N, C, *out, K) in x's dtype, valid, flat)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    win = _windows(_padded(xc, geom, 0.0), geom)
    valid, flat = _tap_tables(geom)
    with np.errstate(invalid="ignore"):
        weight = (win >= 0) & (win < np.inf)
    bad = valid & ~weight
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"a window holds {win[at]!r}: stochastic pooling needs x >= 0 and finite")
    return xc, batched, geom, win, valid, flat


def draw(win: np.ndarray, valid: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The drawn tap (0..K-1) of every window: win (..., K) in x's dtype, valid (..., K)
    (broadcastable), u (...) in x's dtype. The documented rule, tap by tap."""
    dtype = win.dtype
    valid = np.broadcast_to(valid, win.shape)
    k = win.shape[-1]
    s = np.zeros(win.shape[:-1], dtype)
    for t in range(k):  # S: the running sum's last value
        s = np.where(valid[..., t], (s + win[..., t]).astype(dtype), s)
    thr = (u.astype(dtype) * s).astype(dtype)  # one rounding in x's dtype
    assert thr.dtype == dtype and s.dtype == dtype
    c = np.zeros(win.shape[:-1], dtype)
    first_exceed = np.full(win.shape[:-1], -1, dtype=np.int64)
    last_full = np.full(win.shape[:-1], -1, dtype=np.int64)
    first_valid = np.argmax(valid, axis=-1)
    for t in range(k):
        v = win[..., t]
        live = valid[..., t]
        c = np.where(live, (c + v).astype(dtype), c)
        first_exceed = np.where(live & (first_exceed < 0) & (c > thr), t, first_exceed)
        last_full = np.where(live & (c == s) & (v > 0), t, last_full)
    assert np.array_equal(c, s)  # the same additions in the same order
    return np.where(first_exceed >= 0, first_exceed, np.where(last_full >= 0, last_full, first_valid))


def stochastic_pool(x: np.ndarray, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    training: bool = True, seed: Optional[int] = None,
                    layout: str = "channels_first"):
    """Training: (y, int64 indices) for an int seed. Inference: y."""
    x = np.asarray(x)
    xc, batched, geom, win, valid, flat = _setup(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    n, c = xc.shape[:2]
    if not training:
        w64 = np.where(valid, win, 0).astype(np.float64)
        s1 = w64.sum(axis=-1)
        s2 = (w64 * w64).sum(axis=-1)
        y = np.where(s1 == 0, 0.0, s2 / np.where(s1 == 0, 1.0, s1))
        return _from_ncs(y.astype(x.dtype), batched, layout)
    seed = _check_seed(seed)
    n_win = int(np.prod(geom.out_sizes))
    planes = np.arange(n * c, dtype=np.uint64)[:, None]
    windows = np.arange(n_win, dtype=np.uint64)[None, :]
    u = uniforms(seed, planes, windows, x.dtype).reshape((n, c) + geom.out_sizes)
    pick = draw(win, valid, u)[..., None]
    y = np.take_along_axis(win, pick, axis=-1)[..., 0]
    idx = np.take_along_axis(np.broadcast_to(flat, win.shape), pick, axis=-1)[..., 0]
    return _from_ncs(y.astype(x.dtype), batched, layout), _from_ncs(idx.astype(np.int64), batched, layout)


def _scatter(gc: np.ndarray, ic: np.ndarray, shape_c: Tuple[int, ...]) -> np.ndarray:
    """float64 (N, C, *spatial): grad[n, c, idx[n, c, o]] += g[n, c, o]."""
    n, c = shape_c[:2]
    plane = int(np.prod(shape_c[2:]))
    gx = np.zeros((n * c, plane), dtype=np.float64)
    rows = np.repeat(np.arange(n * c), gc[0, 0].size)
    np.add.at(gx, (rows, ic.reshape(-1)), gc.reshape(-1).astype(np.float64))
    return gx.reshape(shape_c)


def route_backward(grad_output: np.ndarray, x: np.ndarray, indices: np.ndarray, kernel_size,
                   layout: str = "channels_first") -> np.ndarray:
    """The training backward from the drawn positions: grad_output scattered (summed) to them."""
    x = np.asarray(x)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    ic, _ = _to_ncs(np.asarray(indices), rank, layout)
    return _from_ncs(_scatter(gc, ic, xc.shape).astype(x.dtype), batched, layout)


def stochastic_pool_backward(grad_output: np.ndarray, x: np.ndarray, kernel_size, stride=None, padding=0,
                             dilation=1, ceil_mode=False, training: bool = True, indices=None,
                             seed: Optional[int] = None, layout: str = "channels_first",
                             magnitude: bool = False) -> np.ndarray:
    """Training: g routed to the drawn taps (from indices, or drawn again from seed).
    Inference: sum over windows of g (2 x_i - y) / S; with ``magnitude`` the error scale
    sum of |g| (2 x_i + y) / S instead (float64)."""
    x = np.asarray(x)
    if training:
        if (indices is None) == (seed is None):
            raise ValueError("exactly one of indices and seed")
        if indices is None:
            _, indices = stochastic_pool(x, kernel_size, stride, padding, dilation, ceil_mode, True, seed,
                                         layout)
        return route_backward(grad_output, x, indices, kernel_size, layout)
    xc, batched, geom, win, valid, _ = _setup(x, kernel_size, stride, padding, dilation, ceil_mode, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), geom.rank, layout)
    if gc.shape != win.shape[:-1]:
        raise ValueError(f"grad_output has shape {gc.shape}, expected {win.shape[:-1]}")
    w64 = np.where(valid, win, 0).astype(np.float64)
    s1 = w64.sum(axis=-1)
    s2 = (w64 * w64).sum(axis=-1)
    none = s1 == 0
    safe = np.where(none, 1.0, s1)
    y = np.where(none, 0.0, s2 / safe)[..., None]
    g = gc.astype(np.float64)[..., None]
    term = (2 * w64 + y) * np.abs(g) if magnitude else (2 * w64 - y) * g
    contrib = np.where(valid & ~none[..., None], term / safe[..., None], 0.0)
    gx = np.zeros(xc.shape, dtype=np.float64)
    # add each tap's contribution at its input position (taps outside the input carry 0)
    _add_taps(gx, contrib, geom)
    if magnitude:
        return _from_ncs(gx, batched, layout)
    return _from_ncs(gx.astype(x.dtype), batched, layout)


def _add_taps(gx: np.ndarray, contrib: np.ndarray, geom) -> None:
    """gx[n, c, pos(o, t)] += contrib[n, c, o, t] for every tap inside the input."""
    valid, flat = _tap_tables(geom)
    n, c = gx.shape[:2]
    plane = int(np.prod(gx.shape[2:]))
    flat_gx = gx.reshape(n * c, plane)
    sel = np.broadcast_to(valid, contrib.shape[2:])
    pos = flat[sel]  # (M,)
    vals = contrib.reshape((n * c,) + contrib.shape[2:])[:, sel]  # (NC, M)
    rows = np.repeat(np.arange(n * c), pos.size)
    np.add.at(flat_gx, (rows, np.tile(pos, n * c)), vals.reshape(-1))


def window_taps(x_shape_c: Tuple[int, ...], kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(valid (*out, K), flat (*out, K)): the taps of every window of an (N, C, *spatial) shape."""
    geom = make_geometry(x_shape_c[2:], kernel_size, stride, padding, dilation, ceil_mode)
    return _tap_tables(geom)
