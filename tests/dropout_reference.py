"""Plain-NumPy reference of max-pooling dropout (Wu & Gu 2015), forward and backward.

Written from the operator's specification alone; it shares no code with fastpool
(geometry, padding, windows, tap tables and the max scan come from tests/reference.py,
splitmix64's output function from tests/stochastic_reference.py, both read-only).

The mask, per INPUT element (shared by every window that reads it): for plane
P = n*C + c and the element's flat spatial position q = (d*H + h)*W + w::

    key     = mix64(seed ^ ((P + 1) * 0x9E3779B97F4A7C15 mod 2**64))
    k0, k1  = key & 0xFFFFFFFF, key >> 32
    fmix32  = MurmurHash3's finalizer (mod 2**32):
              h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16
    h       = fmix32(fmix32((q & 0xFFFFFFFF) ^ k0) ^ ((k1 + (q >> 32)) & 0xFFFFFFFF))
    t       = floor(rate * 2**32)
    dropped = h < t

* training: x' = x with the dropped elements replaced by +0.0; (y, argmax) = max pooling
  of x' (tests/reference.max_pool: first maximum wins ties, the last NaN wins, an all
  -inf window reports its first tap inside the input); indices = the argmax where that
  tap is kept, -1 where it was dropped. Backward: grad_output scattered (summed) to the
  kept winners.
* inference: p = 1 - rate, q = rate, each rounded to x's dtype; over the taps a_i of a
  window inside the input, c_i = the number of taps ranked above tap i in the order
  "ascending value, NaN above every number, among equal values (and among NaNs) the
  earlier tap above the later" (-0.0 == 0.0); the weight w_i = p * q**c_i is computed
  as the documented kernel does, p multiplied by q c_i times in x's dtype (a table of K
  entries, so the weights are exact); y = sum w_i a_i summed in float64 (a term of weight
  0 contributes 0, even for a_i = inf or NaN), cast to x's dtype. Backward:
  grad_x[tap] += g * w_i for every tap of every window.

The comparisons of the inference form are with a tolerance relative to sum |w_i a_i|
(``magnitude=True`` gives that scale, and sum |g| w_i for the backward), since the kernel
sums in x's dtype in row-major tap order.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import numpy as np

from reference import _from_ncs, _max_scan, _padded, _rank, _tap_tables, _to_ncs, _windows, make_geometry
from stochastic_reference import mix64

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
FMIX_1 = np.uint32(0x85EBCA6B)
FMIX_2 = np.uint32(0xC2B2AE35)
LOW32 = np.uint64(0xFFFFFFFF)


# --------------------------------------------------------------------------- the mask


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer on a uint32 array (products mod 2**32)."""
    h = np.asarray(h, dtype=np.uint32)
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * FMIX_1
        h = h ^ (h >> np.uint32(13))
        h = h * FMIX_2
        return h ^ (h >> np.uint32(16))


def plane_keys(seed: int, planes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(k0, k1) uint32 of every plane: the low and high words of mix64(seed ^ (P + 1) * golden)."""
    p = np.asarray(planes, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = mix64(np.uint64(int(seed)) ^ ((p + np.uint64(1)) * GOLDEN))
    return (key & LOW32).astype(np.uint32), (key >> np.uint64(32)).astype(np.uint32)


def element_hash(seed: int, planes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """h (uint32) of every (plane, flat position) pair (broadcast)."""
    k0, k1 = plane_keys(seed, planes)
    q = np.asarray(positions, dtype=np.uint64)
    q_lo = (q & LOW32).astype(np.uint32)
    q_hi = (q >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        second = k1 + q_hi  # uint32: wraps mod 2**32
    return fmix32(fmix32(q_lo ^ k0) ^ second)


def threshold(rate: float) -> int:
    """t = floor(rate * 2**32), an int in [0, 2**32] (rate * 2**32 is exact in float64)."""
    return int(math.floor(float(rate) * 2.0**32))


def dropped_ncs(seed: int, shape_c: Tuple[int, ...], rate: float) -> np.ndarray:
    """The dropped mask (bool) of an (N, C, *spatial) shape."""
    n, c = shape_c[:2]
    plane_size = int(np.prod(shape_c[2:], dtype=np.int64))
    planes = np.arange(n * c, dtype=np.uint64)[:, None]
    positions = np.arange(plane_size, dtype=np.uint64)[None, :]
    h = element_hash(seed, planes, positions).astype(np.int64)
    return (h < threshold(rate)).reshape(shape_c)


def dropped_mask(x_shape: Tuple[int, ...], seed: int, rate: float, rank: int,
                 layout: str = "channels_first") -> np.ndarray:
    """The dropped mask (bool) of an input of shape ``x_shape`` in ``layout`` (batched or not;
    an unbatched input's planes are c, those of batch element 0)."""
    xc, batched = _to_ncs(np.empty(x_shape, dtype=np.bool_), rank, layout)
    return _from_ncs(dropped_ncs(seed, xc.shape, rate), batched, layout)


# --------------------------------------------------------------------------- checks


def check_rate(rate: Any) -> float:
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real):
        raise TypeError(f"rate must be a real number, got {rate!r}")
    r = float(rate)
    if math.isnan(r) or not 0.0 <= r <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    return r


def check_seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"the reference takes an int seed, got {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed out of range: {seed!r}")
    return int(seed)


def _float_input(x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    return x


# --------------------------------------------------------------------------- training


def max_pool_dropout(x: np.ndarray, rate: float, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False, training: bool = True, seed: Optional[int] = None,
                     layout: str = "channels_first", magnitude: bool = False):
    """Training: (y, int64 indices) for an int seed. Inference: y (with ``magnitude``, the
    float64 scale sum |w_i a_i| of each window instead)."""
    x = _float_input(x)
    rate = check_rate(rate)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    if not training:
        y = _inference(xc, geom, rate, magnitude)
        return _from_ncs(y if magnitude else y.astype(x.dtype), batched, layout)
    seed = check_seed(seed)
    drop = dropped_ncs(seed, xc.shape, rate)
    xd = np.where(drop, np.zeros((), x.dtype), xc)  # +0.0 for every dropped element (NaN, inf too)
    assert xd.dtype == x.dtype
    win = _windows(_padded(xd, geom, -np.inf), geom)  # (N, C, *out, K)
    valid, flat = _tap_tables(geom)
    y, idx = _max_scan(win, flat, valid)
    n, c = xc.shape[:2]
    winner_dropped = np.take_along_axis(drop.reshape(n, c, -1), idx.reshape(n, c, -1), axis=-1).reshape(idx.shape)
    idx = np.where(winner_dropped, -1, idx).astype(np.int64)
    return _from_ncs(y.astype(x.dtype), batched, layout), _from_ncs(idx, batched, layout)


def route_backward(grad_output: np.ndarray, x: np.ndarray, indices: np.ndarray, kernel_size,
                   layout: str = "channels_first", magnitude: bool = False) -> np.ndarray:
    """grad_output summed (float64, then cast to x's dtype) into the positions of ``indices``;
    -1 routes nothing. With ``magnitude``, the float64 sums of |grad_output|."""
    x = np.asarray(x)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    ic, _ = _to_ncs(np.asarray(indices), rank, layout)
    n, c = xc.shape[:2]
    plane = int(np.prod(xc.shape[2:]))
    gflat = gc.reshape(n * c, -1).astype(np.float64)
    if magnitude:
        gflat = np.abs(gflat)
    iflat = ic.reshape(n * c, -1)
    if ((iflat < -1) | (iflat >= plane)).any():
        raise ValueError("indices outside the plane")
    keep = iflat >= 0
    gx = np.zeros((n * c, plane + 1), dtype=np.float64)  # column `plane`: the -1 sink
    rows = np.broadcast_to(np.arange(n * c)[:, None], iflat.shape)
    np.add.at(gx, (rows, np.where(keep, iflat, plane)), np.where(keep, gflat, 0.0))
    gx = gx[:, :plane].reshape(xc.shape)
    return _from_ncs(gx if magnitude else gx.astype(x.dtype), batched, layout)


# --------------------------------------------------------------------------- inference


def weight_table(rate: float, dtype: Any, k: int) -> np.ndarray:
    """W[c] = p * q**c for c = 0..k-1, p = 1 - rate and q = rate rounded to ``dtype``, the
    products in ``dtype`` one factor q at a time (as the kernel computes them)."""
    dt = np.dtype(dtype).type
    p, q = dt(1.0 - float(rate)), dt(float(rate))
    table = np.empty(max(k, 1), dtype=np.dtype(dtype))
    w = p
    for c in range(table.size):
        table[c] = w
        w = dt(w * q)
    return table


def ranks_above(win: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """c (int64, same shape as win (..., K)): the number of taps of the window inside the
    input ranked above each tap (taps outside the input: any value, never counted).

    One argsort of an exact integer key per window: (inside the input, is NaN, the rank
    of the value among all values with -0.0 == 0.0, K - 1 - tap), ascending; the tap at
    sorted position s then has K - 1 - s taps above it."""
    k = win.shape[-1]
    valid = np.broadcast_to(valid, win.shape)
    nan = np.isnan(win)
    vals = np.where(nan | ~valid, 0.0, win.astype(np.float64))
    vals = np.where(vals == 0, 0.0, vals)  # -0.0 -> +0.0: equal values
    uniq = np.unique(vals)  # sorted, no NaN
    vrank = np.searchsorted(uniq, vals).astype(np.int64)
    tap = np.arange(k, dtype=np.int64)
    key = (((valid.astype(np.int64) * 2 + nan) * (uniq.size + 1) + vrank) * k) + (k - 1 - tap)
    order = np.argsort(key, axis=-1, kind="stable")
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.broadcast_to(tap, order.shape).copy(), axis=-1)
    return (k - 1) - pos


def _inference_terms(xc: np.ndarray, geom, rate: float):
    """(win (N, C, *out, K), valid (*out, K), weights (N, C, *out, K) in x's dtype, 0 outside)."""
    win = _windows(_padded(xc, geom, 0.0), geom)
    valid, _ = _tap_tables(geom)
    c = ranks_above(win, valid)
    table = weight_table(rate, xc.dtype, win.shape[-1])
    w = np.where(valid, table[c], np.zeros((), xc.dtype))
    return win, valid, w


def _forward_sums(win: np.ndarray, valid: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(y, sum |w_i a_i|) in float64: terms of weight 0 contribute 0."""
    w64, a64 = w.astype(np.float64), win.astype(np.float64)
    live = valid & (w64 != 0)
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.where(live, w64 * np.where(live, a64, 0.0), 0.0)
        return terms.sum(axis=-1), np.abs(terms).sum(axis=-1)


def _backward_sums(gc: np.ndarray, valid: np.ndarray, w: np.ndarray, geom, shape_c) -> Tuple[np.ndarray, np.ndarray]:
    """(grad_x, sum |g| w_i) in float64, (N, C, *spatial)."""
    g = gc.astype(np.float64)[..., None]
    w64 = w.astype(np.float64)
    gx, gs = np.zeros(shape_c), np.zeros(shape_c)
    _add_taps(gx, np.where(valid, g * w64, 0.0), geom)
    _add_taps(gs, np.where(valid, np.abs(g) * w64, 0.0), geom)
    return gx, gs


def _inference(xc: np.ndarray, geom, rate: float, magnitude: bool) -> np.ndarray:
    y, scale = _forward_sums(*_inference_terms(xc, geom, rate))
    return scale if magnitude else y


def max_pool_dropout_inference(x: np.ndarray, rate: float, grad_output: np.ndarray, kernel_size, stride=None,
                               padding=0, dilation=1, ceil_mode=False, layout: str = "channels_first"):
    """The inference form at once (the ranks computed once): (y in x's dtype, the float64
    scale sum |w_i a_i|, grad_x for grad_output in x's dtype, the float64 scale
    sum |g| w_i)."""
    x = _float_input(x)
    rate = check_rate(rate)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    if gc.shape != xc.shape[:2] + geom.out_sizes:
        raise ValueError(f"grad_output has shape {gc.shape}, expected {xc.shape[:2] + geom.out_sizes}")
    win, valid, w = _inference_terms(xc, geom, rate)
    y, scale = _forward_sums(win, valid, w)
    gx, gs = _backward_sums(gc, valid, w, geom, xc.shape)
    return (_from_ncs(y.astype(x.dtype), batched, layout), _from_ncs(scale, batched, layout),
            _from_ncs(gx.astype(x.dtype), batched, layout), _from_ncs(gs, batched, layout))


def _add_taps(gx: np.ndarray, contrib: np.ndarray, geom) -> None:
    """gx[n, c, pos(o, t)] += contrib[n, c, o, t] for every tap inside the input."""
    valid, flat = _tap_tables(geom)
    n, c = gx.shape[:2]
    flat_gx = gx.reshape(n * c, -1)
    sel = np.broadcast_to(valid, contrib.shape[2:])
    pos = flat[sel]
    vals = contrib.reshape((n * c,) + contrib.shape[2:])[:, sel]
    rows = np.repeat(np.arange(n * c), pos.size)
    np.add.at(flat_gx, (rows, np.tile(pos, n * c)), vals.reshape(-1))


# --------------------------------------------------------------------------- backward


def max_pool_dropout_backward(grad_output: np.ndarray, x: np.ndarray, rate: float, kernel_size, stride=None,
                              padding=0, dilation=1, ceil_mode=False, training: bool = True, indices=None,
                              seed: Optional[int] = None, layout: str = "channels_first",
                              magnitude: bool = False) -> np.ndarray:
    """Training: g routed to the kept winners (from indices, or from the seed's mask and
    argmax). Inference: sum over windows of g * w_i at every tap (with ``magnitude``, the
    float64 scale sum |g| w_i)."""
    x = _float_input(x)
    rate = check_rate(rate)
    if training:
        if (indices is None) == (seed is None):
            raise ValueError("exactly one of indices and seed")
        if indices is None:
            _, indices = max_pool_dropout(x, rate, kernel_size, stride, padding, dilation, ceil_mode, True,
                                          seed, layout)
        return route_backward(grad_output, x, indices, kernel_size, layout, magnitude)
    rank = _rank(kernel_size, x.ndim)
    xc, batched = _to_ncs(x, rank, layout)
    geom = make_geometry(xc.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    if gc.shape != xc.shape[:2] + geom.out_sizes:
        raise ValueError(f"grad_output has shape {gc.shape}, expected {xc.shape[:2] + geom.out_sizes}")
    _, valid, w = _inference_terms(xc, geom, rate)
    gx, gs = _backward_sums(gc, valid, w, geom, xc.shape)
    return _from_ncs(gs if magnitude else gx.astype(x.dtype), batched, layout)
