"""No leaks: 10,000 calls of each operator (and of the error paths) leave the resident set
size flat, and leave the reference counts of the arguments unchanged.

Method per variant: warm up (1,000 calls), gc.collect(), fastpool.trim_buffers(), read RSS
from /proc/self/statm; run 10,000 calls; collect, trim, read RSS again. The growth must stay
under 8 MiB. Outputs are 8-64 KiB, so one leaked output per call would be 80-640 MB; one
leaked reference to an argument shows in sys.getrefcount. Outputs of 1 MiB and more come from
the buffer pool: a variant with two alternating pooled sizes checks that the pool reuses
rather than accumulates, and that trim_buffers() gives the memory back.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

import fastpool
from pool_cases import hang_guard, rss_bytes

ITERATIONS = 10_000
WARMUP = 1_000
TOLERANCE = 8 * 2**20

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")


def _inputs() -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    d: Dict[str, np.ndarray] = {
        "x1": rng.standard_normal((2, 8, 512)).astype(np.float32),  # 32 KiB
        "x2": rng.standard_normal((1, 8, 32, 32)).astype(np.float32),  # 32 KiB
        "x3": rng.standard_normal((1, 4, 16, 16, 16)).astype(np.float32),  # 64 KiB
        "x2d": rng.standard_normal((1, 8, 32, 32)),  # float64, 64 KiB
    }
    d["x2cl"] = np.ascontiguousarray(d["x2"].transpose(0, 2, 3, 1))
    d["x2-strided"] = np.repeat(d["x2"], 2, axis=-1)[..., ::2]
    d["x2-cf-view-of-cl"] = d["x2cl"].transpose(0, 3, 1, 2)
    for name, x, k in (("1", d["x1"], 2), ("2", d["x2"], 2), ("3", d["x3"], 2)):
        y, i = fastpool.max_pool(x, (k,) * (x.ndim - 2), return_indices=True)
        d["g" + name] = np.ones_like(y)
        d["i" + name] = i
    d["out2"] = np.empty_like(d["g2"])
    d["gx2"] = np.empty_like(d["x2"])
    d["bad-idx2"] = d["i2"].copy()
    d["bad-idx2"].reshape(-1)[-1] = 10**9
    return d


D = _inputs()
F = fastpool

VARIANTS: Dict[str, Callable[[], Any]] = {
    # every public operator
    "max_pool": lambda: F.max_pool(D["x2"], (2, 2)),
    "max_pool1d": lambda: F.max_pool1d(D["x1"], 2),
    "max_pool2d": lambda: F.max_pool2d(D["x2"], 3, 1, 1),
    "max_pool3d": lambda: F.max_pool3d(D["x3"], 2),
    "max_pool_backward": lambda: F.max_pool_backward(D["g2"], D["x2"], (2, 2)),
    "max_pool1d_backward": lambda: F.max_pool1d_backward(D["g1"], D["x1"], 2),
    "max_pool2d_backward": lambda: F.max_pool2d_backward(D["g2"], D["x2"], 2),
    "max_pool3d_backward": lambda: F.max_pool3d_backward(D["g3"], D["x3"], 2),
    "avg_pool": lambda: F.avg_pool(D["x2"], (2, 2)),
    "avg_pool1d": lambda: F.avg_pool1d(D["x1"], 3, 1, 1),
    "avg_pool2d": lambda: F.avg_pool2d(D["x2"], 2, count_include_pad=False),
    "avg_pool3d": lambda: F.avg_pool3d(D["x3"], 2, divisor_override=3),
    "avg_pool_backward": lambda: F.avg_pool_backward(D["g2"], D["x2"].shape, (2, 2)),
    "avg_pool1d_backward": lambda: F.avg_pool1d_backward(D["g1"], D["x1"].shape, 2),
    "avg_pool2d_backward": lambda: F.avg_pool2d_backward(D["g2"], D["x2"].shape, 2),
    "avg_pool3d_backward": lambda: F.avg_pool3d_backward(D["g3"], D["x3"].shape, 2),
    # the other code paths
    "max_pool2d-indices": lambda: F.max_pool2d(D["x2"], 2, return_indices=True),
    "max_pool2d_backward-indices": lambda: F.max_pool2d_backward(D["g2"], D["x2"], 2, indices=D["i2"]),
    "max_pool2d-float64": lambda: F.max_pool2d(D["x2d"], 2),
    "max_pool2d-channels_last": lambda: F.max_pool2d(D["x2cl"], 2, layout="channels_last", return_indices=True),
    "avg_pool2d-strided-input-copied": lambda: F.avg_pool2d(D["x2-strided"], 2),
    "max_pool2d-cf-view-of-cl-memory": lambda: F.max_pool2d(D["x2-cf-view-of-cl"], 2, return_indices=True),
    "avg_pool2d-same": lambda: F.avg_pool2d(D["x2"], 3, 2, "same"),
    "max_pool2d-out": lambda: F.max_pool2d(D["x2"], 2, out=D["out2"]),
    "avg_pool2d_backward-out": lambda: F.avg_pool2d_backward(D["g2"], D["x2"].shape, 2, out=D["gx2"]),
    "max_pool2d_backward-out": lambda: F.max_pool2d_backward(D["g2"], D["x2"], 2, out=D["gx2"]),
    "threads-context": lambda: _with_threads(lambda: F.max_pool2d(D["x2"], 2)),
}

ERRORS: Dict[str, Callable[[], Any]] = {
    # raised in Python before any allocation
    "error-kernel-0": lambda: F.max_pool2d(D["x2"], 0),
    "error-dtype": lambda: F.avg_pool2d(D["x2"].view(np.int32), 2),
    # raised by the C++ geometry (std::invalid_argument through pybind11)
    "error-window-in-padding": lambda: F.avg_pool2d(D["x2"], 2, 2, 2),
    "error-kernel-volume": lambda: F.max_pool3d(D["x3"], (256, 256, 257), padding=(128, 128, 128)),
    # raised after the output was allocated and the kernel ran
    "error-indices-out-of-range": lambda: F.max_pool2d_backward(D["g2"], D["x2"], 2, indices=D["bad-idx2"]),
    # a failing allocation of an impossible output
    "error-memory": lambda: F.max_pool2d_backward(
        np.broadcast_to(np.float32(1), (2**28, 2**28, 1, 1)), np.broadcast_to(np.float32(0), (2**28, 2**28, 2, 2)), 2
    ),
}


def _with_threads(call: Callable[[], Any]) -> Any:
    with fastpool.threads(2):
        return call()


def _swallow(call: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except (ValueError, TypeError, MemoryError):
            pass
        else:  # pragma: no cover - the variant is meant to fail
            raise AssertionError("expected an error")

    return run


def _settle() -> int:
    gc.collect()
    fastpool.trim_buffers()
    return rss_bytes()


def _measure(call: Callable[[], Any], iterations: int) -> Tuple[int, List[int]]:
    """(RSS growth over ``iterations`` calls after a warm-up, refcount changes of the inputs)."""
    refs_before = [sys.getrefcount(v) for v in D.values()]
    for _ in range(WARMUP):
        call()
    before = _settle()
    for _ in range(iterations):
        call()
    after = _settle()
    refs_after = [sys.getrefcount(v) for v in D.values()]
    return after - before, [b - a for a, b in zip(refs_before, refs_after)]


def _check(name: str, call: Callable[[], Any], iterations: int = ITERATIONS) -> None:
    with hang_guard(300):
        growth, ref_changes = _measure(call, iterations)
    changed = {k: c for k, c in zip(D, ref_changes) if c}
    assert not changed, f"{name}: reference counts of the arguments changed: {changed}"
    assert growth < TOLERANCE, f"{name}: RSS grew by {growth / 2**20:.1f} MiB over {iterations} calls"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_no_leak(name: str) -> None:
    _check(name, VARIANTS[name])


@pytest.mark.parametrize("name", list(ERRORS))
def test_no_leak_on_errors(name: str) -> None:
    _check(name, _swallow(ERRORS[name]))


def test_pooled_outputs_are_reused_not_accumulated() -> None:
    """Outputs of 1 MiB and more come from the buffer pool: two alternating sizes, 10,000
    calls, stay flat, and trim_buffers() returns the pool's memory."""
    x_a = np.random.default_rng(1).standard_normal((1, 16, 128, 128)).astype(np.float32)  # 1 MiB gradient
    x_b = np.random.default_rng(2).standard_normal((1, 24, 128, 128)).astype(np.float32)  # 1.5 MiB gradient
    g_a = np.ones((1, 16, 64, 64), np.float32)
    g_b = np.ones((1, 24, 64, 64), np.float32)
    state = {"i": 0}

    def call() -> None:
        state["i"] += 1
        if state["i"] % 2:
            r = fastpool.max_pool2d_backward(g_a, x_a, 2)
        else:
            r = fastpool.avg_pool2d_backward(g_b, x_b.shape, 2)
        assert r.nbytes >= 2**20

    _check("pooled outputs", call)
    keep = [fastpool.avg_pool2d_backward(g_b, x_b.shape, 2) for _ in range(4)]
    del keep
    assert fastpool.trim_buffers() >= 4 * x_b.nbytes, "deleted pooled outputs should be cached until trimmed"
    assert fastpool.trim_buffers() == 0


def test_rss_reading_sees_a_real_leak() -> None:
    """Sanity check of the method: keeping every output (a deliberate 'leak') is detected."""
    kept: List[np.ndarray] = []

    def leak() -> None:
        kept.append(fastpool.max_pool2d_backward(D["g2"], D["x2"], 2))

    growth, _ = _measure(leak, ITERATIONS)
    kept.clear()
    assert growth > TOLERANCE, f"a 32 KiB-per-call leak grew RSS by only {growth / 2**20:.1f} MiB"
