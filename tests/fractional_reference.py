"""Plain-NumPy reference of fractional max pooling (Graham 2014) with PyTorch's intervals.

Written from fastpool.fractional_pool's docstrings; it shares no code with fastpool
(neither fastpool._numpy_pool nor tests/reference.py). Explicit loops over planes,
output positions and window taps.

* Output sizes: ``output_size`` (an int or one int per axis), or ``int(size * ratio)``
  per axis for ``output_ratio`` (a float or one per axis), in Python floats.
* Samples: one u in [0, 1) per plane (n, c) and axis, an (N, C, rank) array in x's
  dtype, given (an unbatched x: (C, rank) or (1, C, rank)) or drawn as
  ``numpy.random.default_rng(seed).random((N, C, rank), dtype=x.dtype)`` (N = 1 for an
  unbatched x). PyTorch's order along the last axis: 2D (W, H), 3D (D, H, W).
* Window starts on an axis of input size I, output size O, kernel k, for sample u:
  output i < O - 1 starts at ``int((i + u) * alpha) - int(u * alpha)`` with
  ``alpha = (I - k) / (O - 1)``, every operation in x's dtype (numpy scalars of that
  dtype, so float32 rounding for float32 x) and ``int`` truncating; the last output
  starts at ``I - k``.
* Each window: the first maximum in row-major tap order (a strictly greater value
  replaces it), a NaN always replaces it (so NaN propagates and the last NaN wins);
  the index is the flat spatial position ``(d * H + h) * W + w`` of that tap.
* Backward: each output's gradient added at its index, outputs in row-major order.
"""

from __future__ import annotations

import itertools
from typing import Any, List, Sequence, Tuple

import numpy as np

# Where each spatial axis (in array order) finds its sample along the samples' last axis.
SAMPLE_AXIS = {2: (1, 0), 3: (0, 1, 2)}  # 2D: (H, W) <- (u[1], u[0]); 3D: (D, H, W) <- (u[0], u[1], u[2])


def interval_starts(u: Any, in_size: int, out_size: int, kernel: int, dtype: Any) -> List[int]:
    """PyTorch's window starts of one axis for one sample u, in ``dtype`` arithmetic."""
    dt = np.dtype(dtype).type
    assert 1 <= kernel <= in_size and 1 <= out_size and out_size + kernel - 1 <= in_size
    u = dt(u)
    starts = []
    if out_size > 1:
        alpha = dt(in_size - kernel) / dt(out_size - 1)
        assert type(alpha) is dt
        base = int(u * alpha)
        for i in range(out_size - 1):
            t = (dt(i) + u) * alpha
            assert type(t) is dt
            starts.append(int(t) - base)
    starts.append(in_size - kernel)
    return starts


def output_sizes(spatial: Sequence[int], kernel: Sequence[int], output_size: Any = None,
                 output_ratio: Any = None) -> Tuple[int, ...]:
    rank = len(spatial)
    assert (output_size is None) != (output_ratio is None)
    if output_size is not None:
        out = tuple(output_size) if isinstance(output_size, (tuple, list)) else (int(output_size),) * rank
    else:
        ratios = tuple(output_ratio) if isinstance(output_ratio, (tuple, list)) else (output_ratio,) * rank
        out = tuple(int(s * float(r)) for s, r in zip(spatial, ratios))
    assert len(out) == rank
    for o, k, i in zip(out, kernel, spatial):
        assert 1 <= o and o + k - 1 <= i, (out, kernel, spatial)
    return out


def draw_samples(seed: Any, batch: int, channels: int, rank: int, dtype: Any) -> np.ndarray:
    """The documented draw: default_rng(seed).random((N, C, rank), dtype)."""
    return np.random.default_rng(seed).random((batch, channels, rank), dtype=np.dtype(dtype))


def _to_ncs(a: np.ndarray, rank: int, layout: str) -> Tuple[np.ndarray, bool]:
    """(N, C, *spatial) view of a (maybe unbatched, maybe channels_last) array."""
    assert a.ndim in (rank + 1, rank + 2), (a.shape, rank)
    batched = a.ndim == rank + 2
    if not batched:
        a = a[None]
    if layout == "channels_last":
        a = np.moveaxis(a, -1, 1)
    return a, batched


def _from_ncs(a: np.ndarray, batched: bool, layout: str) -> np.ndarray:
    if layout == "channels_last":
        a = np.moveaxis(a, 1, -1)
    if not batched:
        a = a[0]
    return np.ascontiguousarray(a)


def plane_samples(random_samples: Any, seed: Any, batch: int, channels: int, rank: int, batched: bool,
                  dtype: Any) -> np.ndarray:
    if random_samples is None:
        return draw_samples(seed, batch, channels, rank, dtype)
    s = np.asarray(random_samples, dtype=np.float64)
    if not batched and s.shape == (channels, rank):
        s = s[None]
    assert s.shape == (batch, channels, rank), s.shape
    s = s.astype(dtype)
    assert np.all((s >= 0) & (s < 1))
    return s


def window_max(plane: np.ndarray, starts: Sequence[int], kernel: Sequence[int]) -> Tuple[Any, int]:
    """PyTorch's scan of one window: (value, flat spatial position)."""
    spatial = plane.shape
    best_pos = None
    best = -np.inf
    for tap in itertools.product(*(range(s, s + k) for s, k in zip(starts, kernel))):
        v = plane[tap]
        if best_pos is None:
            best_pos = tap
        if v > best or v != v:  # a NaN always takes over
            best, best_pos = v, tap
    flat = 0
    for p, n in zip(best_pos, spatial):
        flat = flat * n + p
    return plane[best_pos], flat


def fractional_max_pool(x: np.ndarray, kernel_size: Sequence[int], output_size: Any = None,
                        output_ratio: Any = None, random_samples: Any = None, seed: Any = None,
                        layout: str = "channels_first") -> Tuple[np.ndarray, np.ndarray]:
    """(y, indices); the rank is len(kernel_size)."""
    x = np.asarray(x)
    kernel = tuple(int(k) for k in kernel_size)
    rank = len(kernel)
    assert rank in (2, 3)
    xc, batched = _to_ncs(x, rank, layout)
    n, c = xc.shape[:2]
    spatial = xc.shape[2:]
    out = output_sizes(spatial, kernel, output_size, output_ratio)
    u = plane_samples(random_samples, seed, n, c, rank, batched, x.dtype)
    y = np.empty((n, c) + out, x.dtype)
    idx = np.empty((n, c) + out, np.int64)
    for b in range(n):
        for ch in range(c):
            per_axis = [interval_starts(u[b, ch, SAMPLE_AXIS[rank][a]], spatial[a], out[a], kernel[a], x.dtype)
                        for a in range(rank)]
            plane = xc[b, ch]
            for o in itertools.product(*(range(s) for s in out)):
                v, j = window_max(plane, [per_axis[a][o[a]] for a in range(rank)], kernel)
                y[(b, ch) + o] = v
                idx[(b, ch) + o] = j
    return _from_ncs(y, batched, layout), _from_ncs(idx, batched, layout)


def starts_of(u: np.ndarray, spatial: Sequence[int], out: Sequence[int], kernel: Sequence[int], dtype: Any
              ) -> List[List[int]]:
    """The starts of every axis (array order) of one plane with samples u (PyTorch's order)."""
    rank = len(spatial)
    return [interval_starts(u[SAMPLE_AXIS[rank][a]], spatial[a], out[a], kernel[a], dtype) for a in range(rank)]


def fractional_max_pool_backward(grad_output: np.ndarray, x_shape: Tuple[int, ...], indices: np.ndarray,
                                 rank: int, layout: str = "channels_first") -> np.ndarray:
    """Scatter-add of grad_output at indices, outputs in row-major order per plane."""
    g, batched = _to_ncs(np.asarray(grad_output), rank, layout)
    ic, _ = _to_ncs(np.asarray(indices), rank, layout)
    dummy = np.empty(x_shape, dtype=np.uint8)
    xs, _ = _to_ncs(dummy, rank, layout)
    plane = int(np.prod(xs.shape[2:]))
    gx = np.zeros(xs.shape[:2] + (plane,), g.dtype)
    for b in range(g.shape[0]):
        for ch in range(g.shape[1]):
            for gv, j in zip(g[b, ch].reshape(-1), ic[b, ch].reshape(-1)):
                assert 0 <= j < plane
                gx[b, ch, j] += gv
    return _from_ncs(gx.reshape(xs.shape), batched, layout)


def fractional_max_pool_backward_from_samples(grad_output: np.ndarray, x: np.ndarray, kernel_size: Sequence[int],
                                              random_samples: Any = None, seed: Any = None,
                                              layout: str = "channels_first") -> np.ndarray:
    """The backward with the indices found again from samples (the output size is grad_output's)."""
    rank = len(kernel_size)
    gc, _ = _to_ncs(np.asarray(grad_output), rank, layout)
    _, idx = fractional_max_pool(x, kernel_size, output_size=tuple(gc.shape[2:]), random_samples=random_samples,
                                 seed=seed, layout=layout)
    return fractional_max_pool_backward(grad_output, np.shape(x), idx, rank, layout)


__all__ = [
    "SAMPLE_AXIS",
    "draw_samples",
    "fractional_max_pool",
    "fractional_max_pool_backward",
    "fractional_max_pool_backward_from_samples",
    "interval_starts",
    "output_sizes",
    "starts_of",
    "window_max",
]
