"""Inputs and helpers shared by the benchmarks.

Inputs come from a seeded RNG and are cached per process, so a parameter
combination always sees the same data and repeated setups do not regenerate it.
They are filled in full (never ``np.zeros``, whose lazily mapped pages would fault
inside the timed call).
"""

import functools
import os
import sys
import tempfile

import numpy as np

import fastpool

LAYOUTS = ["channels_first", "channels_last"]
DTYPES = ["float32", "float64"]
THREADS = [1, 2]


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def in_layout(shape, layout):
    """A channels_first shape (N, C, *spatial) in the given layout."""
    if layout == "channels_last":
        return (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return tuple(shape)


def out_shape(shape, layout, kernel_size, stride, padding):
    """Output shape of a pooling (floor mode, no dilation), without running it."""
    shape = list(shape)
    axes = range(1, len(shape) - 1) if layout == "channels_last" else range(2, len(shape))
    for a, k, s, p in zip(axes, kernel_size, stride, padding):
        shape[a] = (shape[a] + 2 * p - k) // s + 1
    return tuple(shape)


@functools.lru_cache(maxsize=4)
def random_array(shape, dtype, seed=0):
    """Uniform [-1, 1) data of a shape and dtype (a string), the same for every run.

    Uniform rather than normal: 9x faster to draw, and asv runs every parameter
    combination in a fresh process, so setup time adds up.
    """
    rng = np.random.default_rng(seed)
    a = rng.random(shape, dtype=np.dtype(dtype))
    a *= 2
    a -= 1
    return a


def _already_shown(lock_name="fastpool-asv-show-config.lock", after=1):
    """False the first ``after + 1`` calls in a run (asv's discovery, whose output
    asv drops, and the next import), True afterwards. Runs are told apart by the
    parent process id, as numpy's benchmarks do."""
    ppid = os.getppid()
    path = os.path.join(tempfile.gettempdir(), lock_name)
    try:
        with open(path, "a+") as f:
            f.seek(0)
            count, last = (f.read().split() + ["0", "0"])[:2]
            count = int(count) + 1 if int(last) == ppid else 0
            f.seek(0)
            f.truncate()
            f.write(f"{count} {ppid}")
        return count > after
    except (OSError, ValueError):
        return False


def show_config_once():
    """Print fastpool.show_config() (SIMD paths, OpenMP, threads) once per asv run."""
    if _already_shown():
        return
    stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        fastpool.show_config()
    finally:
        sys.stdout = stdout


show_config_once()
