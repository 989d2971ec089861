"""An input of more than 2**31 elements: (1, 1, 46341, 46341) float32, 8.6 GB.

max_pool2d(k=2, ceil_mode=True, return_indices=True), then max_pool2d_backward with those
indices. ceil_mode makes the last output row and column cover the odd last input row and
column, so the flat indices reach 46341**2 - 1 = 2,147,488,280 > 2**31 (in floor mode the last
input row is dropped and every index stays below 2**31). Checked against direct NumPy
computation on the input patches: whole output rows (first, middle, the last ones, some
random) and 5000 random windows; globally, index range and the number of nonzero gradients.

The input pattern is x[r, c] = (7r + 13c) mod 1024 + 1: rows repeat every 1024 rows, so the
array is filled by copying one 1024-row block (fast), the four values of every 2x2 window are
distinct and nonzero, and the argmax position varies from window to window.

Peak memory is about 15 GB (x, values, int64 indices; then values, indices and the gradient,
with x freed: the backward with indices only needs x's shape, so x is passed as a broadcast
view). Skipped with a reason below 20 GiB of MemAvailable. Marked slow and run only when
selected (``-m slow``) or with FASTPOOL_RUN_SLOW=1: it holds 15 GB for about half a minute.
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

import fastpool
from pool_cases import hang_guard, mem_available_bytes

pytestmark = pytest.mark.slow

N = 46341  # N * N = 2,147,488,281 > 2**31
M = (N + 1) // 2  # 23171 output rows and columns with ceil_mode
PERIOD = 1024
NEEDED = 20 * 2**30


@pytest.fixture(autouse=True)
def _only_when_selected(request):
    expr = request.config.getoption("markexpr") or ""
    if not (("slow" in expr and "not slow" not in expr) or os.environ.get("FASTPOOL_RUN_SLOW") == "1"):
        pytest.skip("slow test (8.6 GB input): select it with -m slow or FASTPOOL_RUN_SLOW=1")
    available = mem_available_bytes()
    if available < NEEDED:
        pytest.skip(f"needs {NEEDED / 2**30:.0f} GiB of available memory, MemAvailable is {available / 2**30:.1f} GiB")


def pattern(r, c) -> np.ndarray:
    return ((7 * np.asarray(r, np.int64) + 13 * np.asarray(c, np.int64)) % PERIOD + 1).astype(np.float32)


def fill(x2d: np.ndarray) -> None:
    """x2d[r, c] = pattern(r, c), written as one 1024-row block and copies of it."""
    block = pattern(np.arange(PERIOD)[:, None], np.arange(N)[None, :])
    for r0 in range(0, N, PERIOD):
        n = min(PERIOD, N - r0)
        x2d[r0 : r0 + n] = block[:n]


def expected_row(x2d: np.ndarray, i: int):
    """(max, flat argmax) of every window of output row i, from the input patches: taps in
    row-major window order, the first maximum wins (np.argmax)."""
    r0 = 2 * i
    rows = x2d[r0 : r0 + 2]  # 1 or 2 input rows
    h = rows.shape[0]
    padded = np.full((h, 2 * M), -np.inf, np.float32)  # the ceil-mode overhang never wins
    padded[:, :N] = rows
    windows = padded.reshape(h, M, 2).transpose(1, 0, 2).reshape(M, 2 * h)
    a = np.argmax(windows, axis=1)
    values = windows[np.arange(M), a]
    flat = (r0 + a // 2).astype(np.int64) * N + 2 * np.arange(M, dtype=np.int64) + a % 2
    return values, flat


def expected_windows(x2d: np.ndarray, i: np.ndarray, j: np.ndarray):
    """(max, flat argmax) of windows (i, j), gathered tap by tap."""
    taps_r = 2 * i[:, None] + np.array([0, 0, 1, 1])[None, :]
    taps_c = 2 * j[:, None] + np.array([0, 1, 0, 1])[None, :]
    inside = (taps_r < N) & (taps_c < N)
    v = np.where(inside, x2d[np.minimum(taps_r, N - 1), np.minimum(taps_c, N - 1)], -np.inf)
    a = np.argmax(v, axis=1)
    k = np.arange(len(i))
    return v[k, a].astype(np.float32), taps_r[k, a].astype(np.int64) * N + taps_c[k, a]


def test_max_pool2d_over_2_31_elements() -> None:
    rng = np.random.default_rng(0)
    timings = {}
    with hang_guard(600):
        t = time.perf_counter()
        x = np.empty((1, 1, N, N), np.float32)
        x2d = x[0, 0]
        fill(x2d)
        assert x.size > 2**31
        probe_r, probe_c = rng.integers(0, N, 1000), rng.integers(0, N, 1000)
        np.testing.assert_array_equal(x2d[probe_r, probe_c], pattern(probe_r, probe_c))
        timings["fill"] = time.perf_counter() - t

        t = time.perf_counter()
        y, idx = fastpool.max_pool2d(x, 2, ceil_mode=True, return_indices=True)
        timings["forward"] = time.perf_counter() - t
        assert y.shape == idx.shape == (1, 1, M, M) and y.dtype == np.float32 and idx.dtype == np.int64

        t = time.perf_counter()
        rows = sorted({0, 1, 2, M // 2, M - 3, M - 2, M - 1} | set(rng.integers(0, M, 24).tolist()))
        expected = {}
        for i in rows:
            values, flat = expected_row(x2d, i)
            np.testing.assert_array_equal(y[0, 0, i], values, err_msg=f"values of output row {i}")
            np.testing.assert_array_equal(idx[0, 0, i], flat, err_msg=f"indices of output row {i}")
            expected[i] = (values, flat)
        last_flat = expected[M - 1][1]
        assert last_flat.max() == N * N - 1 and (last_flat > 2**31).sum() > 2000, "the last row reaches past 2**31"
        wi, wj = rng.integers(0, M, 5000), rng.integers(0, M, 5000)
        values, flat = expected_windows(x2d, wi, wj)
        np.testing.assert_array_equal(y[0, 0, wi, wj], values, err_msg="values of random windows")
        np.testing.assert_array_equal(idx[0, 0, wi, wj], flat, err_msg="indices of random windows")
        assert int(idx.min()) >= 0 and int(idx.max()) == N * N - 1
        assert float(y.min()) >= 1.0 and float(y.max()) <= PERIOD
        timings["forward checks"] = time.perf_counter() - t

        del x, x2d  # the backward with indices needs only x's shape
        gc.collect()
        x_shape = np.broadcast_to(np.float32(0), (1, 1, N, N))
        t = time.perf_counter()
        gx = fastpool.max_pool2d_backward(y, x_shape, 2, ceil_mode=True, indices=idx)
        timings["backward"] = time.perf_counter() - t
        assert gx.shape == (1, 1, N, N) and gx.dtype == np.float32

        t = time.perf_counter()
        g2d = gx[0, 0]
        for i, (values, flat) in expected.items():  # windows do not overlap: each tap gets 0 or its max
            r0 = 2 * i
            h = min(2, N - r0)
            want = np.zeros((h, N), np.float32)
            want[flat // N - r0, flat % N] = values
            np.testing.assert_array_equal(g2d[r0 : r0 + h], want, err_msg=f"gradient rows of output row {i}")
        np.testing.assert_array_equal(g2d.reshape(-1)[flat], values, err_msg="gradient at random windows' argmax")
        # every window routes its (nonzero) maximum to one distinct element, nothing else is written
        assert int(np.count_nonzero(g2d)) == M * M
        timings["backward checks"] = time.perf_counter() - t
        del gx, g2d, y, idx
        gc.collect()
        fastpool.trim_buffers()
    print("\nhuge test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
