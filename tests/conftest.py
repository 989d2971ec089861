"""Fixtures: every SIMD path this CPU runs, thread counts 1 and 2, a seeded RNG.

``backend`` combines ``simd_path`` and ``num_threads``, so a test that takes it runs
once per (SIMD path, thread count), with ids such as ``simd=avx2-threads=2``. Paths
that are compiled in but not supported by this CPU are skipped with a reason (as
numpy's test_simd.py does), so the report shows what was not exercised.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np
import pytest

import fastpool
from fastpool import _core

AVAILABLE_SIMD = fastpool.available_simd()
# Compiled paths first, then anything available that is not listed as compiled.
SIMD_PATHS = list(_core.compiled_simd()) + [s for s in AVAILABLE_SIMD if s not in _core.compiled_simd()]
THREAD_COUNTS = (1, 2)


def pytest_report_header(config):
    return [f"fastpool {fastpool.__version__}: SIMD paths available {AVAILABLE_SIMD}, "
            f"compiled {list(_core.compiled_simd())}, default {fastpool.get_simd()}"]


@pytest.fixture(params=SIMD_PATHS, ids=[f"simd={s}" for s in SIMD_PATHS])
def simd_path(request) -> Iterator[str]:
    """Runs the test on one SIMD path (process-wide), restoring the previous one."""
    name = request.param
    if name not in AVAILABLE_SIMD:
        pytest.skip(f"SIMD path {name!r} is compiled in but not supported by this CPU")
    with fastpool.simd(name):
        assert fastpool.get_simd() == name
        yield name


@pytest.fixture(params=THREAD_COUNTS, ids=[f"threads={t}" for t in THREAD_COUNTS])
def num_threads(request) -> Iterator[int]:
    """Runs the test's kernel calls with a given thread count, restoring it after."""
    with fastpool.threads(request.param):
        assert fastpool.get_num_threads() == request.param
        yield request.param


@pytest.fixture
def backend(simd_path: str, num_threads: int) -> Tuple[str, int]:
    """(SIMD path, thread count) in force for the test."""
    return simd_path, num_threads


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)
