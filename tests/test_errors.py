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


# ------------------------------------------------------------------ issue 3: bin reductions
# global, adaptive, LP, GeM, spatial pyramid and strip pooling: every message names the
# argument.
XB = np.zeros((2, 3, 4, 5), np.float32)  # 2D, plane of 20
GB = np.zeros((2, 3), np.float32)  # global output
GA = np.zeros((2, 3, 2, 2), np.float32)  # adaptive (2, 2) / lp kernel 2 output
IA = np.zeros((2, 3, 2, 2), np.int64)
GS = np.zeros((2, 3 * 5), np.float32)  # spp levels (1, 2)
GH, GW = np.zeros((2, 3, 4, 1), np.float32), np.zeros((2, 3, 1, 5), np.float32)

GLOBAL_ERRORS = [
    ("global-max-layout-bad", lambda: fastpool.global_max_pool(XB, layout="NCHW"), E,
     r"layout must be 'channels_first' or 'channels_last', got 'NCHW'"),
    ("global-avg-layout-bad", lambda: fastpool.global_avg_pool(XB, layout="nhwc"), E, r"layout must be"),
    ("global-rank-4", lambda: fastpool.global_avg_pool(XB, rank=4), E, r"\brank\b"),
    ("global-rank-0", lambda: fastpool.global_max_pool(XB, rank=0), E, r"\brank\b"),
    ("global-rank-float", lambda: fastpool.global_max_pool(XB, rank=1.5), T, r"\brank\b"),
    ("global-rank-too-large-for-x", lambda: fastpool.global_max_pool(np.zeros((3, 4), np.float32), rank=2), E,
     r"\bx\b|\brank\b"),
    ("global-x-1d-no-spatial", lambda: fastpool.global_avg_pool(np.zeros((3, 4), np.float32)), E,
     r"\brank\b|\bx\b"),
    ("global-2d-x-ndim", lambda: fastpool.global_max_pool2d(np.zeros((4, 5), np.float32)), E, r"\bx must have"),
    ("global-3d-x-ndim", lambda: fastpool.global_avg_pool3d(XB[0, 0]), E, r"\bx must have"),
    ("global-keepdims-not-bool", lambda: fastpool.global_max_pool(XB, keepdims="yes"), T, r"keepdims must be a bool"),
    ("global-return-indices-not-bool", lambda: fastpool.global_max_pool(XB, return_indices=1), T,
     r"return_indices must be a bool"),
    ("global-x-int", lambda: fastpool.global_max_pool(XB.astype(np.int32)), T,
     r"x has dtype int32; supported dtypes are float32, float64"),
    ("global-x-float16", lambda: fastpool.global_avg_pool(XB.astype(np.float16)), T, r"x has dtype float16"),
    ("global-x-zero-size", lambda: fastpool.global_max_pool(np.zeros((2, 3, 0, 5), np.float32)), E, r"zero-size"),
    ("global-max-bwd-grad-shape", lambda: fastpool.global_max_pool_backward(np.zeros((2, 4), np.float32), XB), E,
     r"grad_output has shape \(2, 4\), expected \(2, 3\)"),
    ("global-max-bwd-grad-not-keepdims", lambda: fastpool.global_max_pool_backward(GB, XB, keepdims=True), E,
     r"grad_output has shape \(2, 3\), expected \(2, 3, 1, 1\)"),
    ("global-max-bwd-grad-dtype", lambda: fastpool.global_max_pool_backward(GB.astype(np.float64), XB), T,
     r"grad_output has dtype float64, expected float32"),
    ("global-avg-bwd-grad-int", lambda: fastpool.global_avg_pool_backward(GB.astype(np.int64), XB.shape), T,
     r"grad_output has dtype int64"),
    ("global-avg-bwd-grad-shape", lambda: fastpool.global_avg_pool_backward(GB, (2, 4, 4, 5)), E,
     r"grad_output has shape"),
    ("global-avg-bwd-input-shape-not-ints", lambda: fastpool.global_avg_pool_backward(GB, (2, 3, "a", 5)), T,
     r"input_shape"),
    ("global-avg-bwd-input-shape-ndim", lambda: fastpool.global_avg_pool2d_backward(GB, (4, 5)), E, r"input_shape"),
    ("global-max-bwd-indices-dtype", lambda: fastpool.global_max_pool_backward(
        GB, XB, indices=np.zeros((2, 3), np.int32)), T, r"indices has dtype int32, expected int64"),
    ("global-max-bwd-indices-shape", lambda: fastpool.global_max_pool_backward(
        GB, XB, indices=np.zeros((2, 3, 1), np.int64)), E, r"indices has shape"),
    ("global-max-bwd-indices-too-large", lambda: fastpool.global_max_pool_backward(
        GB, XB, indices=np.array([[0, 1, 2], [3, 20, 4]], np.int64)), E, r"indices holds 20"),
    ("global-max-bwd-indices-negative", lambda: fastpool.global_max_pool_backward(
        GB, XB, indices=np.array([[0, 1, 2], [3, -1, 4]], np.int64)), E, r"indices holds -1"),
    ("global-max-bwd-indices-list", lambda: fastpool.global_max_pool_backward(GB, XB, indices=[[0, 0, 0]] * 2), T,
     r"indices must be a numpy.ndarray"),
    ("global-out-shape", lambda: fastpool.global_max_pool(XB, out=np.zeros((2, 3, 1, 1), np.float32)), E,
     r"out has shape \(2, 3, 1, 1\), expected \(2, 3\)"),
    ("global-out-dtype", lambda: fastpool.global_avg_pool(XB, out=np.zeros((2, 3))), T,
     r"out has dtype float64, expected float32"),
    ("global-out-read-only", lambda: fastpool.global_avg_pool(XB, out=_read_only((2, 3))), E, r"out is read-only"),
    ("global-bwd-out-shape", lambda: fastpool.global_avg_pool_backward(GB, XB.shape, out=np.zeros((2, 3), np.float32)),
     E, r"out has shape"),
]

ADAPTIVE_ERRORS = [
    ("adaptive-output-size-0", lambda: fastpool.adaptive_max_pool(XB, (0, 2)), E, r"output_size"),
    ("adaptive-output-size-negative", lambda: fastpool.adaptive_avg_pool(XB, -1), E, r"output_size"),
    ("adaptive-output-size-negative-in-tuple", lambda: fastpool.adaptive_avg_pool2d(XB, (2, -3)), E,
     r"output_size"),
    ("adaptive-output-size-too-long", lambda: fastpool.adaptive_max_pool2d(XB, (2, 2, 2)), E,
     r"output_size must have 2 entries"),
    ("adaptive-output-size-too-short-3d", lambda: fastpool.adaptive_avg_pool3d(XB, (2, 2)), E,
     r"output_size must have 3 entries"),
    ("adaptive-output-size-rank-4", lambda: fastpool.adaptive_avg_pool(XB, (2, 2, 2, 2)), E, r"output_size|rank"),
    ("adaptive-output-size-float", lambda: fastpool.adaptive_max_pool(XB, (2.5, 2)), T, r"output_size"),
    ("adaptive-output-size-str", lambda: fastpool.adaptive_max_pool2d(XB, "2"), T, r"output_size"),
    ("adaptive-output-size-none", lambda: fastpool.adaptive_avg_pool(XB, None), T, r"output_size"),
    ("adaptive-output-size-empty", lambda: fastpool.adaptive_avg_pool(XB, ()), E, r"output_size|rank"),
    ("adaptive-x-no-spatial-axis", lambda: fastpool.adaptive_max_pool(np.zeros((3, 4), np.float32), 2), E,
     r"output_size|rank"),
    ("adaptive-x-ndim", lambda: fastpool.adaptive_max_pool2d(np.zeros((4, 5), np.float32), 2), E, r"\bx must have"),
    ("adaptive-layout-bad", lambda: fastpool.adaptive_max_pool(XB, 2, layout="NHWC"), E, r"layout must be"),
    ("adaptive-layout-bad-backward", lambda: fastpool.adaptive_avg_pool_backward(GA, XB.shape, 2, layout="x"), E,
     r"layout must be"),
    ("adaptive-return-indices-not-bool", lambda: fastpool.adaptive_max_pool(XB, 2, return_indices="no"), T,
     r"return_indices must be a bool"),
    ("adaptive-x-int", lambda: fastpool.adaptive_avg_pool(XB.astype(np.int64), 2), T, r"x has dtype int64"),
    ("adaptive-max-bwd-grad-shape", lambda: fastpool.adaptive_max_pool_backward(
        np.zeros((2, 3, 2, 3), np.float32), XB, (2, 2)), E,
     r"grad_output has shape \(2, 3, 2, 3\), expected \(2, 3, 2, 2\)"),
    ("adaptive-max-bwd-grad-dtype", lambda: fastpool.adaptive_max_pool_backward(GA.astype(np.float64), XB, 2), T,
     r"grad_output has dtype float64, expected float32"),
    ("adaptive-avg-bwd-grad-shape", lambda: fastpool.adaptive_avg_pool_backward(GA, XB.shape, (2, 3)), E,
     r"grad_output has shape"),
    ("adaptive-avg-bwd-input-shape-ndim", lambda: fastpool.adaptive_avg_pool2d_backward(GA, (4, 5), 2), E,
     r"input_shape"),
    ("adaptive-avg-bwd-input-shape-not-ints", lambda: fastpool.adaptive_avg_pool_backward(GA, (2, 3, 4.5, 5), 2), T,
     r"input_shape"),
    ("adaptive-max-bwd-indices-dtype", lambda: fastpool.adaptive_max_pool_backward(
        GA, XB, 2, indices=IA.astype(np.float32)), T, r"indices has dtype float32, expected int64"),
    ("adaptive-max-bwd-indices-shape", lambda: fastpool.adaptive_max_pool_backward(
        GA, XB, 2, indices=np.zeros((2, 3, 2, 1), np.int64)), E, r"indices has shape"),
    ("adaptive-max-bwd-indices-too-large", lambda: fastpool.adaptive_max_pool_backward(
        GA, XB, 2, indices=np.full((2, 3, 2, 2), 20, np.int64)), E, r"indices holds 20"),
    ("adaptive-out-shape", lambda: fastpool.adaptive_max_pool(XB, 2, out=np.zeros((2, 3, 2, 3), np.float32)), E,
     r"out has shape \(2, 3, 2, 3\), expected \(2, 3, 2, 2\)"),
    ("adaptive-out-dtype", lambda: fastpool.adaptive_avg_pool(XB, 2, out=np.zeros((2, 3, 2, 2))), T,
     r"out has dtype float64, expected float32"),
    ("adaptive-out-non-contiguous", lambda: fastpool.adaptive_avg_pool(XB, 2, out=_non_contiguous((2, 3, 2, 2))), E,
     r"out must be C-contiguous"),
    ("adaptive-out-is-x", lambda: (lambda x: fastpool.adaptive_avg_pool(x, (4, 5), out=x))(XB.copy()), E,
     r"out overlaps an input"),
]

LP_ERRORS = [
    ("lp-p-0", lambda: fastpool.lp_pool(XB, 0.0, 2), E, r"\bp\b"),
    ("lp-p-negative", lambda: fastpool.lp_pool2d(XB, -1.0, 2), E, r"\bp\b"),
    ("lp-p-nan", lambda: fastpool.lp_pool(XB, float("nan"), 2), E, r"\bp\b"),
    ("lp-p-inf", lambda: fastpool.lp_pool(XB, float("inf"), 2), E, r"\bp\b"),
    ("lp-p-str", lambda: fastpool.lp_pool(XB, "2", 2), T, r"\bp\b"),
    ("lp-p-none", lambda: fastpool.lp_pool(XB, None, 2), T, r"\bp\b"),
    ("lp-p-array", lambda: fastpool.lp_pool(XB, np.ones(3), 2), T, r"\bp must be a scalar"),
    ("lp-kernel-0", lambda: fastpool.lp_pool(XB, 2.0, 0), E, r"kernel_size must be >= 1"),
    ("lp-kernel-float", lambda: fastpool.lp_pool(XB, 2.0, 2.5), T, r"kernel_size must be an integer"),
    ("lp-kernel-too-long", lambda: fastpool.lp_pool2d(XB, 2.0, (2, 2, 2)), E, r"kernel_size must have 2 entries"),
    ("lp-stride-0", lambda: fastpool.lp_pool(XB, 2.0, 2, 0), E, r"stride must be >= 1"),
    ("lp-padding-negative", lambda: fastpool.lp_pool(XB, 2.0, 2, padding=-1), E, r"padding must be >= 0"),
    ("lp-padding-bad-string", lambda: fastpool.lp_pool(XB, 2.0, 2, padding="full"), E, r"padding must be"),
    ("lp-dilation-0", lambda: fastpool.lp_pool(XB, 2.0, 2, dilation=0), E, r"dilation must be >= 1"),
    ("lp-kernel-larger-than-input", lambda: fastpool.lp_pool(XB, 2.0, 6), E, r"kernel_size 6 .*exceeds"),
    ("lp-ceil-mode-not-bool", lambda: fastpool.lp_pool(XB, 2.0, 2, ceil_mode=1), T, r"ceil_mode must be a bool"),
    ("lp-layout-bad", lambda: fastpool.lp_pool(XB, 2.0, 2, layout="NCHW"), E, r"layout must be"),
    ("lp-x-int", lambda: fastpool.lp_pool(XB.astype(np.int32), 2.0, 2), T, r"x has dtype int32"),
    ("lp-x-ndim", lambda: fastpool.lp_pool2d(np.zeros((4, 5), np.float32), 2.0, 2), E, r"\bx must have"),
    ("lp-bwd-grad-shape", lambda: fastpool.lp_pool_backward(np.zeros((2, 3, 2, 3), np.float32), XB, 2.0, 2), E,
     r"grad_output has shape \(2, 3, 2, 3\), expected \(2, 3, 2, 2\)"),
    ("lp-bwd-grad-dtype", lambda: fastpool.lp_pool_backward(GA.astype(np.float64), XB, 2.0, 2), T,
     r"grad_output has dtype float64, expected float32"),
    ("lp-bwd-p-0", lambda: fastpool.lp_pool_backward(GA, XB, 0.0, 2), E, r"\bp\b"),
    ("lp-bwd-p-array", lambda: fastpool.lp_pool2d_backward(GA, XB, np.ones(3), 2), T, r"\bp must be a scalar"),
    ("lp-bwd-layout-bad", lambda: fastpool.lp_pool_backward(GA, XB, 2.0, 2, layout="cl"), E, r"layout must be"),
    ("lp-out-shape", lambda: fastpool.lp_pool(XB, 2.0, 2, out=np.zeros((2, 3, 2, 3), np.float32)), E,
     r"out has shape"),
    ("lp-bwd-out-dtype", lambda: fastpool.lp_pool_backward(GA, XB, 2.0, 2, out=np.zeros(XB.shape)), T,
     r"out has dtype float64, expected float32"),
]

GEM_ERRORS = [
    ("gem-p-0", lambda: fastpool.gem_pool(XB, 0.0), E, r"\bp must be finite and > 0"),
    ("gem-p-negative", lambda: fastpool.gem_pool(XB, -3.0), E, r"\bp\b.*> 0"),
    ("gem-p-nan", lambda: fastpool.gem_pool(XB, float("nan")), E, r"\bp\b"),
    ("gem-p-inf", lambda: fastpool.gem_pool(XB, float("inf")), E, r"\bp\b"),
    ("gem-p-str", lambda: fastpool.gem_pool(XB, "3"), T, r"\bp\b"),
    ("gem-p-complex", lambda: fastpool.gem_pool(XB, 3 + 1j), T, r"\bp\b"),
    ("gem-p-per-channel-too-long", lambda: fastpool.gem_pool(XB, np.ones(4)), E, r"\bp\b.*\(3,\)"),
    ("gem-p-per-channel-too-short", lambda: fastpool.gem_pool(XB, [3.0, 3.0]), E, r"\bp\b.*\(3,\)"),
    ("gem-p-per-channel-2d", lambda: fastpool.gem_pool(XB, np.ones((3, 1))), E, r"\bp\b"),
    ("gem-p-per-channel-negative", lambda: fastpool.gem_pool(XB, np.array([1.0, -1.0, 2.0])), E, r"\bp\b.*> 0"),
    ("gem-p-per-channel-zero", lambda: fastpool.gem_pool(XB, np.array([1.0, 0.0, 2.0])), E, r"\bp\b"),
    ("gem-p-per-channel-nan", lambda: fastpool.gem_pool(XB, np.array([1.0, np.nan, 2.0])), E, r"\bp\b"),
    ("gem-p-per-channel-channels-last", lambda: fastpool.gem_pool(XB, np.ones(3), layout="channels_last"), E,
     r"\bp\b.*\(5,\)"),
    ("gem-eps-0", lambda: fastpool.gem_pool(XB, 3.0, 0.0), E, r"\beps\b"),
    ("gem-eps-negative", lambda: fastpool.gem_pool(XB, 3.0, -1e-6), E, r"\beps\b"),
    ("gem-eps-nan", lambda: fastpool.gem_pool(XB, 3.0, float("nan")), E, r"\beps\b"),
    ("gem-eps-str", lambda: fastpool.gem_pool(XB, 3.0, "1e-6"), T, r"\beps\b"),
    ("gem-stride-without-kernel", lambda: fastpool.gem_pool(XB, stride=2), E, r"stride.*kernel_size"),
    ("gem-padding-without-kernel", lambda: fastpool.gem_pool(XB, padding=1), E, r"padding.*kernel_size"),
    ("gem-keepdims-with-kernel", lambda: fastpool.gem_pool(XB, kernel_size=2, keepdims=True), E, r"keepdims"),
    ("gem-keepdims-not-bool", lambda: fastpool.gem_pool(XB, keepdims=1), T, r"keepdims must be a bool"),
    ("gem-rank-disagrees-with-kernel", lambda: fastpool.gem_pool(XB, kernel_size=(2, 2, 2), rank=2), E, r"\brank\b"),
    ("gem-rank-4", lambda: fastpool.gem_pool(XB, rank=4), E, r"\brank\b"),
    ("gem-kernel-0", lambda: fastpool.gem_pool(XB, kernel_size=0), E, r"kernel_size must be >= 1"),
    ("gem-kernel-larger-than-input", lambda: fastpool.gem_pool(XB, kernel_size=6), E, r"kernel_size 6 .*exceeds"),
    ("gem-cip-not-bool", lambda: fastpool.gem_pool(XB, kernel_size=2, count_include_pad=1), T,
     r"count_include_pad must be a bool"),
    ("gem-layout-bad", lambda: fastpool.gem_pool(XB, layout="NCHW"), E, r"layout must be"),
    ("gem-x-int", lambda: fastpool.gem_pool(XB.astype(np.int64)), T, r"x has dtype int64"),
    ("gem-x-no-spatial-axis", lambda: fastpool.gem_pool(np.zeros((2, 3), np.float32)), E, r"\brank\b|\bx\b"),
    ("gem-bwd-grad-shape", lambda: fastpool.gem_pool_backward(np.zeros((2, 4), np.float32), XB), E,
     r"grad_output has shape \(2, 4\), expected \(2, 3\)"),
    ("gem-bwd-grad-shape-windowed", lambda: fastpool.gem_pool_backward(GB, XB, kernel_size=2), E,
     r"grad_output has shape \(2, 3\), expected \(2, 3, 2, 2\)"),
    ("gem-bwd-grad-dtype", lambda: fastpool.gem_pool_backward(GB.astype(np.float64), XB), T,
     r"grad_output has dtype float64, expected float32"),
    ("gem-bwd-p-per-channel-length", lambda: fastpool.gem_pool_backward(GB, XB, np.ones(2)), E, r"\bp\b.*\(3,\)"),
    ("gem-bwd-p-0", lambda: fastpool.gem_pool_backward(GB, XB, 0.0), E, r"\bp\b"),
    ("gem-bwd-eps-0", lambda: fastpool.gem_pool_backward(GB, XB, 3.0, 0.0), E, r"\beps\b"),
    ("gem-out-shape", lambda: fastpool.gem_pool(XB, out=np.zeros((2, 3, 1, 1), np.float32)), E, r"out has shape"),
    ("gem-out-dtype", lambda: fastpool.gem_pool(XB, kernel_size=2, out=np.zeros((2, 3, 2, 2))), T,
     r"out has dtype float64, expected float32"),
    ("gem-bwd-out-shape", lambda: fastpool.gem_pool_backward(GB, XB, out=np.zeros((2, 3), np.float32)), E,
     r"out has shape"),
]

PYRAMID_ERRORS = [
    ("spp-mode-bad", lambda: fastpool.spatial_pyramid_pool(XB, mode="min"), E,
     r"mode must be 'max' or 'avg', got 'min'"),
    ("spp-mode-not-str", lambda: fastpool.spatial_pyramid_pool(XB, mode=1), E, r"mode must be"),
    ("spp-mode-bad-backward", lambda: fastpool.spatial_pyramid_pool_backward(GS, XB, (1, 2), mode="sum"), E,
     r"mode must be"),
    ("spp-levels-empty", lambda: fastpool.spatial_pyramid_pool(XB, ()), T, r"\blevels\b"),
    ("spp-levels-0", lambda: fastpool.spatial_pyramid_pool(XB, (1, 0)), E, r"\blevels\b"),
    ("spp-levels-negative", lambda: fastpool.spatial_pyramid_pool(XB, (1, -2)), E, r"\blevels\b"),
    ("spp-levels-tuple-length", lambda: fastpool.spatial_pyramid_pool(XB, ((1, 2, 3),)), E, r"\blevels\b"),
    ("spp-levels-tuple-zero", lambda: fastpool.spatial_pyramid_pool(XB, ((1, 1), (2, 0))), E, r"\blevels\b"),
    ("spp-levels-float", lambda: fastpool.spatial_pyramid_pool(XB, (1, 2.5)), T, r"\blevels\b"),
    ("spp-levels-str", lambda: fastpool.spatial_pyramid_pool(XB, "124"), T, r"\blevels\b"),
    ("spp-levels-int", lambda: fastpool.spatial_pyramid_pool(XB, 4), T, r"\blevels\b"),
    ("spp-x-unbatched", lambda: fastpool.spatial_pyramid_pool(np.zeros((4, 5), np.float32)), E, r"x must be batched"),
    ("spp-x-rank-4", lambda: fastpool.spatial_pyramid_pool(np.zeros((1, 1, 2, 2, 2, 2), np.float32)), E,
     r"x must be batched"),
    ("spp-layout-bad", lambda: fastpool.spatial_pyramid_pool(XB, layout="NCHW"), E, r"layout must be"),
    ("spp-x-int", lambda: fastpool.spatial_pyramid_pool(XB.astype(np.int32)), T, r"x has dtype int32"),
    ("spp-bwd-grad-shape", lambda: fastpool.spatial_pyramid_pool_backward(np.zeros((2, 16), np.float32), XB, (1, 2)),
     E, r"grad_output has shape \(2, 16\), expected \(2, 15\)"),
    ("spp-bwd-grad-dtype", lambda: fastpool.spatial_pyramid_pool_backward(GS.astype(np.float64), XB, (1, 2)), T,
     r"grad_output has dtype float64, expected float32"),
    ("spp-bwd-levels-0", lambda: fastpool.spatial_pyramid_pool_backward(GS, XB, (0, 2)), E, r"\blevels\b"),
    ("spp-out-shape", lambda: fastpool.spatial_pyramid_pool(XB, (1, 2), out=np.zeros((2, 16), np.float32)), E,
     r"out has shape \(2, 16\), expected \(2, 15\)"),
    ("spp-out-dtype", lambda: fastpool.spatial_pyramid_pool(XB, (1, 2), out=np.zeros((2, 15))), T,
     r"out has dtype float64, expected float32"),
    ("spp-bwd-out-shape", lambda: fastpool.spatial_pyramid_pool_backward(GS, XB, (1, 2), out=np.zeros(
        (2, 3, 4, 4), np.float32)), E, r"out has shape"),
    ("strip-mode-bad", lambda: fastpool.strip_pool(XB, "min"), E, r"mode must be 'max' or 'avg', got 'min'"),
    ("strip-mode-bad-backward", lambda: fastpool.strip_pool_backward(GH, GW, XB, "sum"), E, r"mode must be"),
    ("strip-x-3d", lambda: fastpool.strip_pool(np.zeros((1, 2, 3, 4, 5), np.float32)), E, r"\bx\b"),
    ("strip-x-1d", lambda: fastpool.strip_pool(np.zeros((3, 4), np.float32)), E, r"\bx\b"),
    ("strip-layout-bad", lambda: fastpool.strip_pool(XB, layout="NHWC"), E, r"layout must be"),
    ("strip-x-int", lambda: fastpool.strip_pool(XB.astype(np.uint8)), T, r"x has dtype uint8"),
    ("strip-bwd-grad-h-shape", lambda: fastpool.strip_pool_backward(np.zeros((2, 3, 5, 1), np.float32), GW, XB), E,
     r"grad_h has shape \(2, 3, 5, 1\), expected \(2, 3, 4, 1\)"),
    ("strip-bwd-grad-w-shape", lambda: fastpool.strip_pool_backward(GH, np.zeros((2, 3, 1, 4), np.float32), XB), E,
     r"grad_w has shape \(2, 3, 1, 4\), expected \(2, 3, 1, 5\)"),
    ("strip-bwd-grad-h-swapped", lambda: fastpool.strip_pool_backward(GW, GH, XB), E, r"grad_h has shape"),
    ("strip-bwd-grad-h-dtype", lambda: fastpool.strip_pool_backward(GH.astype(np.float64), GW, XB), T,
     r"grad_h has dtype float64, expected float32"),
    ("strip-bwd-grad-w-dtype", lambda: fastpool.strip_pool_backward(GH, GW.astype(np.float64), XB), T,
     r"grad_w has dtype float64, expected float32"),
    ("strip-bwd-out-shape", lambda: fastpool.strip_pool_backward(GH, GW, XB, out=np.zeros((2, 3, 4, 4), np.float32)),
     E, r"out has shape"),
    ("strip-bwd-out-is-x", lambda: (lambda x: fastpool.strip_pool_backward(GH, GW, x, out=x))(XB.copy()), E,
     r"out overlaps an input"),
]

TABLE = TABLE + GLOBAL_ERRORS + ADAPTIVE_ERRORS + LP_ERRORS + GEM_ERRORS + PYRAMID_ERRORS


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
