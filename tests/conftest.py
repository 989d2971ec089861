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
from pool_cases import AVAILABLE_SIMD, SIMD_PATHS, THREAD_COUNTS


def pytest_report_header(config):
    return [
        f"fastpool {fastpool.__version__}: SIMD paths compiled {SIMD_PATHS}, available "
        f"{AVAILABLE_SIMD}, in use {fastpool.get_simd()}, threads {fastpool.get_num_threads()}"
    ]


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
