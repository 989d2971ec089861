"""Bad arguments: each raises ValueError or TypeError whose message names the argument.

Table-driven: (id, call, exception, regex the message must match).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool
from pool_cases import AVAILABLE_SIMD

X = np.zeros((1, 1, 4, 4), np.float32)  # 2D, output (1, 1, 2, 2) for kernel 2
X1 = np.zeros((1, 1, 4), np.float32)
G = np.zeros((1, 1, 2, 2), np.float32)
IDX = np.zeros((1, 1, 2, 2), np.int64)


def _overlapping_out():
    """x and a C-contiguous out of the output's shape in one buffer."""
    buf = np.zeros(32, np.float32)
    return buf[:16].reshape(1, 1, 4, 4), buf[12:16].reshape(1, 1, 2, 2)


def _non_contiguous(shape, dtype=np.float32):
    return np.zeros(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


E = ValueError
T = TypeError
GEOMETRY_ERRORS = [
    # (id, call, exception, message regex)
    ("x-ndim-too-small", lambda: fastpool.max_pool2d(np.zeros((4, 4), np.float32), 2), E,
     r"x must have 3 \(unbatched\) or 4 \(batched\) dimensions .* got 2"),
    ("x-ndim-too-large", lambda: fastpool.avg_pool2d(np.zeros((1, 1, 1, 4, 4), np.float32), 2), E,
     r"x must have 3 \(unbatched\) or 4 \(batched\) dimensions .* got 5"),
    ("x-ndim-with-int-kernel", lambda: fastpool.max_pool(np.zeros((4, 4), np.float32), 2), E,
     r"spatial rank must be 1, 2 or 3 .*kernel_size"),
    ("kernel-rank-4", lambda: fastpool.max_pool(X, (2, 2, 2, 2)), E, r"spatial rank .*kernel_size"),
    ("kernel-0", lambda: fastpool.max_pool(X, 0), E, r"kernel_size must be >= 1"),
    ("kernel-negative", lambda: fastpool.avg_pool(X, (2, -1)), E, r"kernel_size must be >= 1"),
    ("kernel-float", lambda: fastpool.max_pool(X, 2.5), T, r"kernel_size must be an integer"),
    ("kernel-float-in-tuple", lambda: fastpool.max_pool(X, (2, 2.0)), T, r"kernel_size must be an integer"),
    ("kernel-str", lambda: fastpool.max_pool2d(X, "2"), T, r"kernel_size must be an int or a tuple"),
    ("kernel-too-long", lambda: fastpool.max_pool2d(X, (2, 2, 2)), E, r"kernel_size must have 2 entries"),
    ("stride-0", lambda: fastpool.max_pool(X, 2, 0), E, r"stride must be >= 1"),
    ("stride-negative", lambda: fastpool.avg_pool(X, 2, (1, -2)), E, r"stride must be >= 1"),
    ("stride-float", lambda: fastpool.max_pool(X, 2, 1.5), T, r"stride must be an integer"),
    ("stride-too-short", lambda: fastpool.max_pool(X, (2, 2), (1,)), E, r"stride must have 2 entries"),
    ("dilation-0", lambda: fastpool.max_pool(X, 2, dilation=0), E, r"dilation must be >= 1"),
    ("dilation-negative", lambda: fastpool.avg_pool(X, 2, dilation=(1, -1)), E, r"dilation must be >= 1"),
    ("padding-negative", lambda: fastpool.max_pool(X, 2, padding=-1), E, r"padding must be >= 0"),
    ("padding-pair-negative", lambda: fastpool.max_pool(X, 2, padding=((1, -1), (0, 0))), E,
     r"padding must be >= 0"),
    ("padding-pair-length", lambda: fastpool.max_pool(X, 2, padding=((1, 2, 3), (0, 0))), E,
     r"padding pairs must be \(before, after\)"),
    ("padding-bad-string", lambda: fastpool.max_pool(X, 2, padding="full"), E,
     r"padding must be an int, a tuple, per-side pairs, 'valid', 'same' or 'same_lower', got 'full'"),
    ("padding-float", lambda: fastpool.avg_pool(X, 2, padding=0.5), T, r"padding must be an integer"),
    ("kernel-larger-than-input", lambda: fastpool.max_pool(np.zeros((1, 1, 3), np.float32), 5), E,
     r"kernel_size 5 .*exceeds the padded input size 3"),
    ("dilated-kernel-larger-than-input", lambda: fastpool.avg_pool(X1, 3, dilation=2), E,
     r"kernel_size 3 with dilation 2 .*exceeds the padded input size 4"),
    ("window-in-left-padding", lambda: fastpool.max_pool(X1, 2, 2, 2), E,
     r"window 0 lies entirely in the padding"),
    ("window-in-right-padding", lambda: fastpool.avg_pool(X1, 2, 2, ((0, 3),)), E,
     r"window 2 lies entirely in the padding"),
    ("window-between-dilated-taps", lambda: fastpool.max_pool(np.zeros((1, 1, 2), np.float32), 2, 1, 2,
                                                              dilation=3), E,
     r"window 1 lies entirely in the padding"),
    ("kernel-volume-over-2**24", lambda: fastpool.avg_pool(np.zeros((1, 1, 1, 1), np.float32), 5000, 5000,
                                                           4999), E, r"kernel volume"),
    ("zero-size-input", lambda: fastpool.max_pool(np.zeros((1, 0, 4), np.float32), 2), E, r"zero-size"),
    ("layout-bad", lambda: fastpool.max_pool(X, 2, layout="NCHW"), E,
     r"layout must be 'channels_first' or 'channels_last', got 'NCHW'"),
    ("layout-bad-backward", lambda: fastpool.avg_pool_backward(G, X.shape, 2, layout="nhwc"), E,
     r"layout must be"),
    ("ceil-mode-not-bool", lambda: fastpool.max_pool(X, 2, ceil_mode="yes"), T, r"ceil_mode must be a bool"),
    ("count-include-pad-not-bool", lambda: fastpool.avg_pool(X, 2, count_include_pad=1), T,
     r"count_include_pad must be a bool"),
    ("divisor-override-0", lambda: fastpool.avg_pool(X, 2, divisor_override=0), E,
     r"divisor_override must be >= 1"),
    ("divisor-override-negative", lambda: fastpool.avg_pool_backward(G, X.shape, 2, divisor_override=-3), E,
     r"divisor_override must be >= 1"),
    ("divisor-override-bool", lambda: fastpool.avg_pool(X, 2, divisor_override=True), T,
     r"divisor_override must be an int"),
    ("divisor-override-float", lambda: fastpool.avg_pool(X, 2, divisor_override=2.0), T,
     r"divisor_override must be an int"),
]

DTYPE_ERRORS = [
    (f"{op}-{name}-{np.dtype(dt).name}", make(dt), T,
     rf"{name} has dtype {np.dtype(dt).name}; supported dtypes are float32, float64")
    for dt in (np.int32, np.int64, np.uint8, np.complex64, np.complex128, np.bool_, np.object_, np.float16)
    for op, name, make in (
        ("max", "x", lambda dt: (lambda: fastpool.max_pool(X.astype(dt), 2))),
        ("max-backward", "x", lambda dt: (lambda: fastpool.max_pool_backward(G, X.astype(dt), 2))),
        ("avg", "x", lambda dt: (lambda: fastpool.avg_pool(X.astype(dt), 2))),
        ("avg-backward", "grad_output", lambda dt: (lambda: fastpool.avg_pool_backward(G.astype(dt), X.shape, 2))),
    )
] + [
    ("x-not-an-array", lambda: fastpool.max_pool2d({"a": 1}, 2), T, r"x must be a numpy.ndarray, got dict"),
    ("x-big-endian", lambda: fastpool.max_pool(X.astype(">f4"), 2), T,
     r"x has dtype >f4; supported dtypes are float32, float64"),
    ("x-list-of-ints", lambda: fastpool.avg_pool([[[1, 2, 3, 4]]], 2), T,
     r"x has dtype int64; supported dtypes are float32"),
]

OUT_ERRORS = [
    ("out-shape", lambda: fastpool.max_pool(X, 2, out=np.zeros((1, 1, 2, 3), np.float32)), E,
     r"out has shape \(1, 1, 2, 3\), expected \(1, 1, 2, 2\)"),
    ("out-dtype", lambda: fastpool.avg_pool(X, 2, out=np.zeros((1, 1, 2, 2), np.float64)), T,
     r"out has dtype float64, expected float32"),
    ("out-non-contiguous", lambda: fastpool.max_pool(X, 2, out=_non_contiguous((1, 1, 2, 2))), E,
     r"out must be C-contiguous"),
    ("out-read-only", lambda: fastpool.avg_pool(X, 2, out=_read_only((1, 1, 2, 2))), E, r"out is read-only"),
    ("out-not-an-array", lambda: fastpool.max_pool(X, 2, out=[[0.0]]), T, r"out must be a numpy.ndarray"),
    ("out-overlaps-x-max", lambda: (lambda x, o: fastpool.max_pool(x, 2, out=o))(*_overlapping_out()), E,
     r"out overlaps an input"),
    ("out-overlaps-x-avg", lambda: (lambda x, o: fastpool.avg_pool(x, 2, out=o))(*_overlapping_out()), E,
     r"out overlaps an input"),
    ("out-is-x", lambda: (lambda x: fastpool.avg_pool(x, 1, out=x))(X.copy()), E, r"out overlaps an input"),
    ("backward-out-shape", lambda: fastpool.max_pool_backward(G, X, 2, out=np.zeros((1, 1, 4, 3), np.float32)),
     E, r"out has shape"),
    ("backward-out-dtype", lambda: fastpool.avg_pool_backward(G, X.shape, 2, out=np.zeros(X.shape)), T,
     r"out has dtype float64, expected float32"),
    ("backward-out-overlaps-grad", lambda: (lambda b: fastpool.avg_pool_backward(
        b[:4].reshape(1, 1, 2, 2), (1, 1, 4, 4), 2, out=b[:16].reshape(1, 1, 4, 4)))(np.zeros(16, np.float32)),
     E, r"out overlaps an input"),
    ("backward-out-is-x", lambda: (lambda x: fastpool.max_pool_backward(G, x, 2, out=x))(X.copy()), E,
     r"out overlaps an input"),
]

BACKWARD_ERRORS = [
    ("max-grad-shape", lambda: fastpool.max_pool_backward(np.zeros((1, 1, 2, 3), np.float32), X, 2), E,
     r"grad_output has shape \(1, 1, 2, 3\), expected \(1, 1, 2, 2\)"),
    ("max-grad-dtype", lambda: fastpool.max_pool_backward(G.astype(np.float64), X, 2), T,
     r"grad_output has dtype float64, expected float32"),
    ("max-grad-int", lambda: fastpool.max_pool_backward(G.astype(np.int32), X, 2), T,
     r"grad_output has dtype int32; supported dtypes are float32"),
    ("avg-grad-shape", lambda: fastpool.avg_pool_backward(np.zeros((1, 2, 2, 2), np.float32), X.shape, 2), E,
     r"grad_output has shape \(1, 2, 2, 2\), expected \(1, 1, 2, 2\)"),
    ("avg-input-shape-not-ints", lambda: fastpool.avg_pool_backward(G, (1, 1, "a", 4), 2), T,
     r"input_shape must be a sequence of ints"),
    ("avg-input-shape-ndim", lambda: fastpool.avg_pool2d_backward(G, (4, 4), 2), E,
     r"input_shape must have 3 \(unbatched\) or 4 \(batched\) dimensions"),
    ("indices-dtype", lambda: fastpool.max_pool_backward(G, X, 2, indices=IDX.astype(np.int32)), T,
     r"indices has dtype int32, expected int64"),
    ("indices-shape", lambda: fastpool.max_pool_backward(G, X, 2, indices=np.zeros((1, 1, 2, 3), np.int64)), E,
     r"indices has shape \(1, 1, 2, 3\), expected \(1, 1, 2, 2\)"),
    ("indices-not-an-array", lambda: fastpool.max_pool_backward(G, X, 2, indices=[[[[0, 0], [0, 0]]]]), T,
     r"indices must be a numpy.ndarray"),
    ("indices-too-large", lambda: fastpool.max_pool_backward(G, X, 2, indices=np.array(
        [[[[0, 5], [16, 3]]]], np.int64)), E,
     r"indices holds 16 at flat position 2, outside the spatial plane \[0, 16\)"),
    ("indices-negative", lambda: fastpool.max_pool_backward(G, X, 2, indices=np.array(
        [[[[0, -1], [1, 3]]]], np.int64)), E, r"indices holds -1 at flat position 1, outside the spatial plane"),
    ("indices-too-large-channels-last", lambda: fastpool.max_pool_backward(
        np.zeros((1, 2, 2, 3), np.float32), np.zeros((1, 4, 4, 3), np.float32), 2,
        indices=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99, 11], np.int64).reshape(1, 2, 2, 3),
        layout="channels_last"), E, r"indices holds 99 at flat position 10"),
]

RUNTIME_ERRORS = [
    ("threads-0", lambda: fastpool.set_num_threads(0), E, r"n_threads must not be 0"),
    ("threads-context-0", lambda: fastpool.threads(0).__enter__(), E, r"n_threads must not be 0"),
    ("threads-float", lambda: fastpool.set_num_threads(1.5), T, r"n_threads must be an int or None"),
    ("threads-bool", lambda: fastpool.set_num_threads(True), T, r"n_threads must be an int or None"),
    ("threads-str", lambda: fastpool.set_num_threads("2"), T, r"n_threads must be an int or None"),
    ("simd-unknown", lambda: fastpool.set_simd("sse9"), E, r"unknown SIMD path 'sse9'"),
    ("simd-empty", lambda: fastpool.set_simd(""), E, r"unknown SIMD path ''"),
    ("simd-not-str", lambda: fastpool.set_simd(3), T, r"name must be a str"),
    ("simd-context-unknown", lambda: fastpool.simd("avx1024").__enter__(), E, r"unknown SIMD path 'avx1024'"),
] + [
    (f"simd-{name}-unavailable", (lambda n: lambda: fastpool.set_simd(n))(name), E,
     rf"SIMD path '{name}' is not (compiled in|supported by this CPU)")
    for name in ("scalar", "neon", "avx2", "avx512") if name not in AVAILABLE_SIMD
]

TABLE = GEOMETRY_ERRORS + DTYPE_ERRORS + OUT_ERRORS + BACKWARD_ERRORS + RUNTIME_ERRORS


@pytest.mark.parametrize("call, exception, message", [pytest.param(c, e, m, id=i) for i, c, e, m in TABLE])
def test_bad_argument_raises(call, exception, message):
    simd_before, threads_before = fastpool.get_simd(), fastpool.get_num_threads()
    with pytest.raises(exception, match=message):
        call()
    # a rejected call changes no setting
    assert fastpool.get_simd() == simd_before
    assert fastpool.get_num_threads() == threads_before


def test_table_ids_are_unique():
    ids = [row[0] for row in TABLE]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_failed_call_leaves_out_untouched_by_shape_errors():
    """Argument errors are raised before any kernel runs: out keeps its contents."""
    out = np.full((1, 1, 2, 2), 7.0, np.float32)
    with pytest.raises(ValueError, match="padding"):
        fastpool.max_pool(X, 2, padding=-1, out=out)
    np.testing.assert_array_equal(out, 7.0)
