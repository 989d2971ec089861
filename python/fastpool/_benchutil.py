"""Helpers shared by the main job (``python -m fastpool``) and ``asv_bench/compare.py``."""

from __future__ import annotations

import os
import time
from typing import Optional, Tuple

import numpy as np


def uniform(rng: np.random.Generator, shape: Tuple[int, ...]) -> np.ndarray:
    """float32 data uniform in [-1, 1): 9x faster to draw than normal data."""
    a = rng.random(shape, dtype=np.float32)
    a *= 2
    a -= 1
    return a


class OtherLoad:
    """CPU time other processes used while we ran (Linux /proc/stat): timings on a
    2-core machine are only meaningful when this stays near zero."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> Optional[Tuple[float, float, float]]:
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
            busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
            t = os.times()
            return busy, t.user + t.system + t.children_user + t.children_system, time.monotonic()
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def report(self) -> str:
        end = self._sample()
        if self.start is None or end is None:
            return ""
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        share = others / max(end[2] - self.start[2], 1e-9)
        msg = f"other processes used {max(others, 0):.1f} CPU-s ({max(share, 0):.2f} CPUs on average) during the run"
        if share > 0.1:
            msg += ": WARNING, the timings are disturbed (a thread waiting for a busy core shows as ~8 ms steps)"
        return msg
