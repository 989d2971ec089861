"""Runtime configuration: show_config, thread counts, SIMD selection, docstring examples."""

from __future__ import annotations

import doctest
import importlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastpool
import fastpool.pooling
from pool_cases import AVAILABLE_SIMD, SIMD_PATHS


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ---------------------------------------------------------------------- show_config


def test_show_config_reports_version_simd_openmp_threads(capsys):
    with fastpool.threads(3):
        fastpool.show_config()
    text = capsys.readouterr().out
    assert f"fastpool {fastpool.__version__}" in text
    assert f"SIMD in use:       {fastpool.get_simd()}" in text
    assert f"SIMD available:    {', '.join(AVAILABLE_SIMD)}" in text
    assert "SIMD compiled:" in text
    assert "OpenMP:" in text and ("on" in text or "off" in text)
    assert "threads:           3" in text


def test_version_is_the_package_version():
    assert isinstance(fastpool.__version__, str)
    assert fastpool.__version__.count(".") >= 2


# ---------------------------------------------------------------------- threads


@pytest.fixture
def default_threads():
    """Runs the test with this Python thread's count at its default, restoring it after."""
    with fastpool.threads(None):
        yield


def test_default_thread_count(default_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert fastpool.get_num_threads() == _cpu_count()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert fastpool.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5,2")  # nested form: the outer level counts
    assert fastpool.get_num_threads() == 5


def test_set_num_threads_returns_previous_and_restores(default_threads):
    default = fastpool.get_num_threads()
    assert fastpool.set_num_threads(3) == default
    assert fastpool.get_num_threads() == 3
    assert fastpool.set_num_threads(1) == 3
    assert fastpool.get_num_threads() == 1
    assert fastpool.set_num_threads(None) == 1
    assert fastpool.get_num_threads() == default


def test_negative_thread_counts_count_back_from_the_cpus(default_threads):
    fastpool.set_num_threads(-1)
    assert fastpool.get_num_threads() == _cpu_count()
    fastpool.set_num_threads(-(_cpu_count() + 5))
    assert fastpool.get_num_threads() == 1  # never below one


def test_threads_context_manager_restores(default_threads):
    fastpool.set_num_threads(2)
    with fastpool.threads(5) as n:
        assert n == 5 and fastpool.get_num_threads() == 5
        with fastpool.threads(1):
            assert fastpool.get_num_threads() == 1
        assert fastpool.get_num_threads() == 5
    assert fastpool.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"):
        with fastpool.threads(4):
            raise RuntimeError("boom")
    assert fastpool.get_num_threads() == 2


def test_thread_count_is_per_python_thread(default_threads):
    default = fastpool.get_num_threads()
    fastpool.set_num_threads(3)
    seen = {}

    def worker():
        seen["initial"] = fastpool.get_num_threads()
        fastpool.set_num_threads(1)
        seen["after set"] = fastpool.get_num_threads()
        x = np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32)
        seen["result"] = fastpool.max_pool(x, 2)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["initial"] == default, "a new Python thread starts at the default"
    assert seen["after set"] == 1
    assert fastpool.get_num_threads() == 3, "another thread's setting leaked into this one"
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32)
    np.testing.assert_array_equal(seen["result"], fastpool.max_pool(x, 2))


def test_concurrent_calls_from_python_threads():
    """The kernels release the GIL: simultaneous calls from 4 Python threads each get
    their own right result."""
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((2, 8, 64, 64)).astype(np.float32) for _ in range(4)]
    expected = [fastpool.avg_pool(x, 3, 1, 1) for x in inputs]
    results = [None] * 4

    def worker(i):
        with fastpool.threads(2):
            for _ in range(5):
                results[i] = fastpool.avg_pool(inputs[i], 3, 1, 1)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


# ---------------------------------------------------------------------- SIMD


def test_available_simd_is_ordered_worst_first():
    assert AVAILABLE_SIMD[0] == "scalar"
    order = ["scalar", "neon", "avx2", "avx512"]
    assert AVAILABLE_SIMD == sorted(AVAILABLE_SIMD, key=order.index)
    assert set(AVAILABLE_SIMD) <= set(SIMD_PATHS)


@pytest.mark.parametrize("name", AVAILABLE_SIMD, ids=[f"simd={s}" for s in AVAILABLE_SIMD])
def test_set_simd_accepts_each_available_path(name):
    before = fastpool.get_simd()
    try:
        assert fastpool.set_simd(name) == before
        assert fastpool.get_simd() == name
    finally:
        fastpool.set_simd(before)
    assert fastpool.get_simd() == before


def test_set_simd_best_selects_the_best_available():
    before = fastpool.set_simd("scalar")
    try:
        assert fastpool.set_simd("best") == "scalar"
        assert fastpool.get_simd() == AVAILABLE_SIMD[-1]
    finally:
        fastpool.set_simd(before)


def test_simd_context_manager_restores():
    before = fastpool.get_simd()
    with fastpool.simd("scalar") as name:
        assert name == "scalar" and fastpool.get_simd() == "scalar"
    assert fastpool.get_simd() == before
    with pytest.raises(RuntimeError, match="boom"):
        with fastpool.simd("scalar"):
            raise RuntimeError("boom")
    assert fastpool.get_simd() == before


def _import_and_report(env_simd, cwd):
    """Imports fastpool in a fresh process (from cwd, away from the source tree)."""
    env = {k: v for k, v in os.environ.items() if k != "FASTPOOL_SIMD"}
    if env_simd is not None:
        env["FASTPOOL_SIMD"] = env_simd
    code = "import fastpool; print(fastpool.get_simd()); print(','.join(fastpool.available_simd()))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def test_best_path_is_the_default(tmp_path):
    """In a fresh process without FASTPOOL_SIMD the best available path is active."""
    proc = _import_and_report(None, tmp_path)
    assert proc.returncode == 0, proc.stderr
    active, available = proc.stdout.split()
    assert active == available.split(",")[-1]
    if "FASTPOOL_SIMD" not in os.environ:
        assert fastpool.get_simd() == fastpool.available_simd()[-1]


@pytest.mark.parametrize("name", AVAILABLE_SIMD, ids=[f"FASTPOOL_SIMD={s}" for s in AVAILABLE_SIMD])
def test_environment_variable_forces_a_path(name, tmp_path):
    proc = _import_and_report(name, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == name


def test_unknown_environment_value_is_an_error_message_not_a_crash(tmp_path):
    proc = _import_and_report("sse9", tmp_path)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert "sse9" in proc.stdout + proc.stderr


# ---------------------------------------------------------------------- docstrings


@pytest.mark.parametrize("module", ["pooling", "corner_pool"])
def test_docstring_examples_run(module):
    mod = importlib.import_module("fastpool." + module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 4, "the public functions should carry runnable examples"
    assert result.failed == 0


@pytest.mark.parametrize("name", fastpool.__all__)
def test_public_names_are_documented(name):
    obj = getattr(fastpool, name)
    if name == "__version__":
        assert isinstance(obj, str)
    else:
        assert obj.__doc__ and obj.__doc__.strip(), f"fastpool.{name} has no docstring"


def test_large_outputs_reuse_pooled_memory():
    """A deleted large output's memory serves the next output of the same size,
    results stay correct, and trim_buffers() gives the memory back."""
    x = np.arange(4 * 16 * 64 * 64, dtype=np.float32).reshape(4, 16, 64, 64)
    y = fastpool.max_pool2d(x, 2)
    assert y.nbytes >= 1 << 18 and x.nbytes >= 1 << 20
    g = fastpool.max_pool2d_backward(np.ones_like(y), x, 2)
    address = g.__array_interface__["data"][0]
    del g
    g2 = fastpool.max_pool2d_backward(np.ones_like(y), x, 2)
    assert g2.__array_interface__["data"][0] == address
    assert g2.sum() == y.size  # every window routes exactly one gradient
    np.testing.assert_array_equal(g2[:, :, 1::2, 1::2], 1)  # the max of each 2x2 is its last element
    del g2
    assert fastpool.trim_buffers() >= x.nbytes
    assert fastpool.trim_buffers() == 0
