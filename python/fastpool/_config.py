"""Runtime configuration: threads and the SIMD path.

Thread counts follow scikit-learn: ``None`` means the default (``OMP_NUM_THREADS``
or the CPUs this process may use), a negative count counts back from all CPUs
(-1: all), 0 is an error. The setting is per Python thread, as
``scipy.fft.set_workers``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, List, Optional

from . import _core

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "threads",
    "get_simd",
    "set_simd",
    "available_simd",
    "show_config",
    "trim_buffers",
]

_local = threading.local()


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _default_threads() -> int:
    return int(_core.default_num_threads())  # OMP_NUM_THREADS, else the usable CPUs


def _normalize(n: Optional[int]) -> int:
    if n is None:
        return _default_threads()
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n_threads must be an int or None, got {n!r}")
    if n == 0:
        raise ValueError("n_threads must not be 0 (use None for the default, -1 for all CPUs)")
    if n < 0:
        return max(1, _cpu_count() + 1 + n)
    return n


def get_num_threads() -> int:
    """The number of threads a kernel call started from this Python thread uses."""
    n = getattr(_local, "n_threads", None)
    return n if n is not None else _default_threads()


def set_num_threads(n: Optional[int]) -> int:
    """Set the thread count for this Python thread; returns the previous count.

    ``None`` restores the default, negative values count back from the CPU count.
    Results do not depend on the thread count.
    """
    previous = get_num_threads()
    _local.n_threads = None if n is None else _normalize(n)
    return previous


@contextlib.contextmanager
def threads(n: Optional[int]) -> Iterator[int]:
    """Context manager: ``with fastpool.threads(2): ...`` runs kernels on 2 threads."""
    previous = getattr(_local, "n_threads", None)
    _local.n_threads = None if n is None else _normalize(n)
    try:
        yield get_num_threads()
    finally:
        _local.n_threads = previous


def get_simd() -> str:
    """The SIMD path in use: 'scalar', 'avx2', 'avx512' or 'neon'."""
    return _core.get_simd()


def available_simd() -> List[str]:
    """SIMD paths compiled in and supported by this CPU, worst first."""
    return list(_core.available_simd())


def set_simd(name: str) -> str:
    """Force a SIMD path (for testing); returns the previous one.

    Only paths in :func:`available_simd` are accepted. ``"best"`` selects the best.
    The environment variable ``FASTPOOL_SIMD`` does the same at import.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    return _core.set_simd(name)


@contextlib.contextmanager
def simd(name: str) -> Iterator[str]:
    """Context manager that runs the block on a given SIMD path (process-wide)."""
    previous = set_simd(name)
    try:
        yield name
    finally:
        set_simd(previous)


def _apply_environment() -> None:
    """Honours FASTPOOL_SIMD at import; a bad value warns and keeps the best path."""
    name = os.environ.get("FASTPOOL_SIMD", "").strip().lower()
    if not name:
        return
    try:
        _core.set_simd(name)
    except ValueError as e:
        import warnings

        warnings.warn(f"FASTPOOL_SIMD={name!r} ignored: {e}", RuntimeWarning, stacklevel=3)


def trim_buffers() -> int:
    """Free the cached output buffers; returns the bytes freed.

    Large outputs (1 MiB and up) come from a pool: when such an array is deleted
    its memory is kept (up to 1 GiB, 16 buffers) and handed to the next output of
    the same size, so repeated calls do not pay a page fault per 4 KiB page.
    """
    return int(_core.trim_buffers())


def show_config() -> None:
    """Print version, SIMD paths, OpenMP and thread count."""
    from . import __version__

    lines = [
        f"fastpool {__version__}",
        f"  SIMD in use:       {get_simd()}",
        f"  SIMD available:    {', '.join(available_simd())}",
        f"  SIMD compiled:     {', '.join(_core.compiled_simd())}",
        f"  OpenMP:            {'on' if _core.have_openmp() else 'off (single-threaded)'}",
        f"  threads:           {get_num_threads()}",
        f"  cached buffers:    {_core.cached_buffer_bytes() / 2**20:.1f} MiB",
    ]
    print("\n".join(lines))
