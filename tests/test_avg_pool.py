"""Average pooling forward and backward against the NumPy reference, on every SIMD path.

Tolerances are rtol 1e-6 (float32) / 1e-12 (float64) relative to the same pooling of
|terms| (see ``assert_close_to_sum``). With the "ints" data (multiples of 1/4) every
window sum is exact, so the forward is then checked to within the final division's
rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool
import reference as ref
from pool_cases import (
    OUT_CASES,
    UNBATCHED,
    IDENTITY_CASES,
    RANDOM_CASES,
    Case,
    Geom,
    assert_bitwise_equal,
    assert_close_to_sum,
    cached,
    grid,
    make_data,
    other_backends,
    params,
    running_on,
    views,
)

CASES = grid(options=True)
FIXED_RANK = {1: fastpool.avg_pool1d, 2: fastpool.avg_pool2d, 3: fastpool.avg_pool3d}
FIXED_RANK_BWD = {1: fastpool.avg_pool1d_backward, 2: fastpool.avg_pool2d_backward,
                  3: fastpool.avg_pool3d_backward}


def ref_forward(case: Case, kind: str, kwargs=None):
    """(reference y, the same pooling of |x|: the scale of the rounding errors)."""
    kw = case.avg_kwargs() if kwargs is None else kwargs

    def compute():
        x = case.data(kind)
        return ref.avg_pool(x, **kw), ref.avg_pool(np.abs(x), **kw)

    return cached(("avg", case.id, kind, repr(sorted(kw.items()))), compute)


def ref_backward(case: Case, g_kind: str = "ints", kwargs=None):
    """(grad_output, reference grad_x, the same of |grad_output|)."""
    kw = case.avg_kwargs() if kwargs is None else kwargs

    def compute():
        g = case.grad(g_kind)
        return (g, ref.avg_pool_backward(g, case.shape, **kw),
                ref.avg_pool_backward(np.abs(g), case.shape, **kw))

    return cached(("avg_bwd", case.id, g_kind, repr(sorted(kw.items()))), compute)


# ---------------------------------------------------------------------- grid vs reference


@pytest.mark.parametrize("case", params(CASES))
def test_forward_matches_reference(case, backend):
    for kind in ("ints", "normal", "special"):
        x = case.data(kind)
        expected, scale = ref_forward(case, kind)
        y = fastpool.avg_pool(x, **case.avg_kwargs())
        assert y.dtype == x.dtype
        assert_close_to_sum(y, expected, scale)


@pytest.mark.parametrize("case", params(CASES))
def test_backward_matches_reference(case, backend):
    g, expected, scale = ref_backward(case)
    gx = fastpool.avg_pool_backward(g, case.shape, **case.avg_kwargs())
    assert gx.dtype == g.dtype and gx.shape == case.shape
    assert_close_to_sum(gx, expected, scale)


COUNT_CASES = [
    Case(Geom((7,), 3, 2, 1, ceil_mode=True), "channels_first", np.float64, 1, 3),
    Case(Geom((6, 9), 3, 2, 1, ceil_mode=True), "channels_last", np.float32, 2, 17),
    Case(Geom((6, 9), (3, 4), (2, 3), ((2, 0), (1, 3)), ceil_mode=True), "channels_first", np.float32, 2, 5),
    Case(Geom((5, 8), 3, 2, "same"), "channels_first", np.float64, 1, 2),
    Case(Geom((5, 8), 4, 3, "same_lower", dilation=2), "channels_last", np.float32, 1, 9),
    Case(Geom((4, 5, 6), 3, 2, 1, dilation=(1, 2, 1), ceil_mode=True), "channels_first", np.float64, 1, 3),
]


@pytest.mark.parametrize("case", params(COUNT_CASES))
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="default"),
        pytest.param({"count_include_pad": True}, id="include-pad"),
        pytest.param({"count_include_pad": False}, id="exclude-pad"),
        pytest.param({"divisor_override": 1}, id="divisor=1"),
        pytest.param({"divisor_override": 7, "count_include_pad": False}, id="divisor=7-exclude-pad"),
        pytest.param({"divisor_override": np.int64(2)}, id="divisor=np.int64(2)"),
    ],
)
def test_divisor_options(case, options, backend):
    """Padding, ceil-mode overhang, dilation and every divisor rule, forward and backward."""
    kw = dict(case.geom.kwargs(), layout=case.layout, **options)
    x = case.data("ints")
    expected, scale = ref_forward(case, "ints", kw)
    assert_close_to_sum(fastpool.avg_pool(x, **kw), expected, scale)
    g, gexp, gscale = ref_backward(case, "ints", kw)
    assert_close_to_sum(fastpool.avg_pool_backward(g, x.shape, **kw), gexp, gscale)


def test_count_include_pad_default_depends_on_padding_form(backend):
    """Numeric padding counts the padding (PyTorch), "same" does not (TensorFlow):
    a 1x5 row of ones, kernel 3, one pad on each side."""
    x = np.ones((1, 1, 5), np.float64)
    numeric = fastpool.avg_pool(x, 3, 1, 1)
    same = fastpool.avg_pool(x, 3, 1, "same")
    np.testing.assert_allclose(numeric[0, 0], [2 / 3, 1, 1, 1, 2 / 3], rtol=1e-15)
    np.testing.assert_array_equal(same[0, 0], np.ones(5))
    np.testing.assert_array_equal(fastpool.avg_pool(x, 3, 1, 1, count_include_pad=False), same)
    np.testing.assert_array_equal(fastpool.avg_pool(x, 3, 1, "same", count_include_pad=True), numeric)


def test_ceil_overhang_not_counted(backend):
    """PyTorch's rule: with count_include_pad, the explicit padding counts in the divisor
    but the ceil-mode overhang beyond it does not. I=6, k=3, s=2, p=1, ceil: the last
    window covers positions 5, 6, 7 of which 6 is padding and 7 overhang: D = 2."""
    x = np.arange(6, dtype=np.float64).reshape(1, 1, 6)
    y = fastpool.avg_pool(x, 3, 2, 1, ceil_mode=True)
    # windows: (-1,0,1)/3, (1,2,3)/3, (3,4,5)/3, (5,6,7)/2
    np.testing.assert_allclose(y[0, 0], [1 / 3, 2, 4, 5 / 2], rtol=1e-15)


# ---------------------------------------------------------------------- shapes and memory

@pytest.mark.parametrize("case", params(UNBATCHED))
def test_unbatched_input(case, backend):
    x = case.data("ints")
    kw = case.avg_kwargs()
    expected, scale = ref_forward(case, "ints")
    xu = x[0]
    assert_close_to_sum(FIXED_RANK[case.geom.rank](xu, **kw), expected[0], scale[0])
    kw_tuple = dict(kw, kernel_size=(case.geom.kernel_size,) * case.geom.rank)
    assert_close_to_sum(fastpool.avg_pool(xu, **kw_tuple), expected[0], scale[0])
    g, gexp, gscale = ref_backward(case)
    assert_close_to_sum(FIXED_RANK_BWD[case.geom.rank](g[0], xu.shape, **kw), gexp[0], gscale[0])
    assert_close_to_sum(fastpool.avg_pool_backward(g[0], xu.shape, **kw_tuple), gexp[0], gscale[0])


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    """``out=`` is written in full (it starts as NaN) and returned."""
    x = case.data("ints")
    kw = case.avg_kwargs()
    expected, scale = ref_forward(case, "ints")
    out = np.full(expected.shape, np.nan, x.dtype)
    assert fastpool.avg_pool(x, out=out, **kw) is out
    assert_close_to_sum(out, expected, scale)
    g, gexp, gscale = ref_backward(case)
    gout = np.full(x.shape, np.nan, x.dtype)
    assert fastpool.avg_pool_backward(g, x.shape, out=gout, **kw) is gout
    assert_close_to_sum(gout, gexp, gscale)


STRIDE_CASES = [
    Case(Geom((67,), 3, 2, 1), "channels_first", np.float32, 2, 3),
    Case(Geom((9, 31), (3, 2), (2, 1), 1, ceil_mode=True), "channels_first", np.float32, 2, 5),
    Case(Geom((9, 31), (3, 2), (2, 1), 1, ceil_mode=True), "channels_last", np.float64, 2, 17),
    Case(Geom((4, 6, 9), 2, 1, "same"), "channels_last", np.float32, 2, 3),
]


@pytest.mark.parametrize("case", params(STRIDE_CASES))
def test_non_contiguous_inputs(case, backend):
    x = case.data("ints")
    before = x.copy()
    kw = case.avg_kwargs()
    expected, scale = ref_forward(case, "ints")
    g, gexp, gscale = ref_backward(case)
    for name, xv in views(x):
        assert_close_to_sum(fastpool.avg_pool(xv, **kw), expected, scale, name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        assert_close_to_sum(fastpool.avg_pool_backward(gv, x.shape, **kw), gexp, gscale, f"grad {name}")
    # input_shape as a list or numpy array works like a tuple
    assert_close_to_sum(fastpool.avg_pool_backward(g, list(x.shape), **kw), gexp, gscale)
    assert_close_to_sum(fastpool.avg_pool_backward(g, np.array(x.shape), **kw), gexp, gscale)


@pytest.mark.parametrize(
    "geom, batched",
    [
        pytest.param(Geom((67,), 3, 2, 1), True, id="1d"),
        pytest.param(Geom((9, 31), 3, 2, 1, ceil_mode=True), True, id="2d"),
        pytest.param(Geom((9, 31), (2, 3), 1, "same"), False, id="2d-unbatched"),
        pytest.param(Geom((4, 6, 9), 2, 1, 1), True, id="3d"),
    ],
)
@pytest.mark.parametrize("channels", [3, 17])
def test_channels_first_view_of_channels_last_memory(geom, batched, channels, backend):
    rank = geom.rank
    rng = np.random.default_rng(channels + rank)
    shape_cl = ((2,) if batched else ()) + geom.spatial + (channels,)
    x_cl = make_data(rng, shape_cl, np.float32, "ints")
    b = 1 if batched else 0
    to_cf = tuple(range(b)) + (x_cl.ndim - 1,) + tuple(range(b, x_cl.ndim - 1))
    x_view = x_cl.transpose(to_cf)
    kw = dict(geom.kwargs(), kernel_size=(geom.kernel_size,) * rank if isinstance(geom.kernel_size, int)
              else geom.kernel_size)
    x_c = np.ascontiguousarray(x_view)
    expected, scale = ref.avg_pool(x_c, **kw), ref.avg_pool(np.abs(x_c), **kw)
    y = fastpool.avg_pool(x_view, **kw)
    assert_close_to_sum(y, expected, scale)
    assert y.transpose(np.argsort(to_cf)).flags.c_contiguous, "result should keep channels_last order"
    out = np.full(expected.shape, np.nan, np.float32)
    assert fastpool.avg_pool(x_view, out=out, **kw) is out
    assert_close_to_sum(out, expected, scale)


# ---------------------------------------------------------------------- SIMD paths and threads


def _all_outputs(case: Case):
    """Forward on normal data (inexact sums: their order shows), also with count_include_pad
    False and a divisor override, and backward of normal gradients."""
    x = case.data("normal")
    g = case.grad("normal")
    kw = case.avg_kwargs()
    return {
        "y": fastpool.avg_pool(x, **kw),
        "y exclude pad": fastpool.avg_pool(x, **dict(kw, count_include_pad=False)),
        "y divisor 5": fastpool.avg_pool(x, **dict(kw, divisor_override=5)),
        "grad": fastpool.avg_pool_backward(g, x.shape, **kw),
        "grad exclude pad": fastpool.avg_pool_backward(g, x.shape, **dict(kw, count_include_pad=False)),
    }


def _run_on(simd_name, n_threads, case):
    with running_on(simd_name, n_threads):
        return _all_outputs(case)


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
@pytest.mark.parametrize("simd_name, n_threads", other_backends())
def test_paths_and_threads_bitwise_identical_to_scalar(case, simd_name, n_threads):
    base = cached(("avg_base", case.id), lambda: _run_on("scalar", 1, case))
    got = _run_on(simd_name, n_threads, case)
    for name, value in base.items():
        assert_bitwise_equal(got[name], value, name)


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_large_inputs_match_reference(case, num_threads):
    kw = case.avg_kwargs()
    x = case.data("normal")
    expected, scale = ref_forward(case, "normal")
    assert_close_to_sum(fastpool.avg_pool(x, **kw), expected, scale)
    g, gexp, gscale = ref_backward(case, "normal")
    assert_close_to_sum(fastpool.avg_pool_backward(g, x.shape, **kw), gexp, gscale)


# ---------------------------------------------------------------------- random geometries


@pytest.mark.parametrize("case", params(RANDOM_CASES))
def test_random_geometries_match_reference(case, backend):
    for options in ({}, {"count_include_pad": False}):
        kw = dict(case.avg_kwargs(), **options)
        x = case.data("normal")
        assert_close_to_sum(fastpool.avg_pool(x, **kw), ref.avg_pool(x, **kw), ref.avg_pool(np.abs(x), **kw))
        g = case.grad("normal")
        assert_close_to_sum(fastpool.avg_pool_backward(g, x.shape, **kw),
                            ref.avg_pool_backward(g, x.shape, **kw),
                            ref.avg_pool_backward(np.abs(g), x.shape, **kw))
