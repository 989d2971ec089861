"""Max pooling forward and backward against the NumPy reference, on every SIMD path.

Values and indices must be exactly equal to the reference. Backward gradients are
exact too: the grad_output values are multiples of 1/4, so sums of overlapping
windows are exact whatever order a kernel adds them in.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool
import reference as ref
from pool_cases import (
    OUT_CASES,
    UNBATCHED,
    GEOMS_1D,
    GEOMS_2D,
    GEOMS_3D,
    IDENTITY_CASES,
    RANDOM_CASES,
    Case,
    Geom,
    assert_bitwise_equal,
    assert_same_signs,
    cached,
    grid,
    make_data,
    other_backends,
    params,
    running_on,
    views,
)

CASES = grid()
KINDS = ("normal", "ints", "special")
FIXED_RANK = {1: fastpool.max_pool1d, 2: fastpool.max_pool2d, 3: fastpool.max_pool3d}
FIXED_RANK_BWD = {1: fastpool.max_pool1d_backward, 2: fastpool.max_pool2d_backward,
                  3: fastpool.max_pool3d_backward}


def ref_forward(case: Case, kind: str):
    return cached(("max", case.id, kind), lambda: ref.max_pool(case.data(kind), **case.max_kwargs()))


def assert_forward_equal(y, idx, y_ref, idx_ref, x_dtype, what=""):
    assert y.dtype == x_dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref, err_msg=f"{what}: values")
    assert_same_signs(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref, err_msg=f"{what}: indices")


# ---------------------------------------------------------------------- grid vs reference


@pytest.mark.parametrize("case", params(CASES))
def test_forward_matches_reference(case, backend):
    for kind in KINDS:
        x = case.data(kind)
        y_ref, idx_ref = ref_forward(case, kind)
        y, idx = fastpool.max_pool(x, return_indices=True, **case.max_kwargs())
        assert_forward_equal(y, idx, y_ref, idx_ref, x.dtype, f"{kind} data")
        # the index-free path must give the same values
        y_only = fastpool.max_pool(x, **case.max_kwargs())
        np.testing.assert_array_equal(y_only, y_ref, err_msg=f"{kind} data, no indices")
        assert_same_signs(y_only, y_ref)


@pytest.mark.parametrize("case", params(CASES))
def test_backward_matches_reference(case, backend):
    g = case.grad("ints")
    for kind in ("ints", "special"):
        x = case.data(kind)
        _, idx_ref = ref_forward(case, kind)
        expected = cached(("max_bwd", case.id, kind),
                          lambda x=x: ref.max_pool_backward(g, x, **case.max_kwargs()))
        recomputed = fastpool.max_pool_backward(g, x, **case.max_kwargs())
        assert recomputed.dtype == x.dtype and recomputed.shape == x.shape
        np.testing.assert_array_equal(recomputed, expected, err_msg=f"{kind} data, argmax from x")
        given_idx = fastpool.max_pool_backward(g, x, indices=idx_ref, **case.max_kwargs())
        np.testing.assert_array_equal(given_idx, expected, err_msg=f"{kind} data, indices given")


@pytest.mark.parametrize("case", params(grid(GEOMS_1D[::3] + GEOMS_2D[::3] + GEOMS_3D[::3])))
def test_all_neg_inf_reports_first_real_tap(case, backend):
    """A window of -inf only: -inf, and the index of its first tap inside the input."""
    x = case.data("neg_inf")
    y_ref, idx_ref = ref_forward(case, "neg_inf")
    assert np.all(y_ref == -np.inf)
    y, idx = fastpool.max_pool(x, return_indices=True, **case.max_kwargs())
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    g = case.grad("ints")
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x, **case.max_kwargs()),
                                  ref.max_pool_backward(g, x, **case.max_kwargs()))


@pytest.mark.parametrize("case", params(grid(GEOMS_1D[1::4] + GEOMS_2D[1::4] + GEOMS_3D[1::4])))
def test_backward_routes_through_given_indices(case, backend):
    """With ``indices`` the gradient goes where they say, even away from the argmax."""
    x = case.data("normal")
    g = case.grad("ints")
    plane = int(np.prod(case.geom.spatial))
    idx = case.rng("idx").integers(0, plane, size=g.shape).astype(np.int64)
    expected = ref.max_pool_backward(g, x, indices=idx, **case.max_kwargs())
    got = fastpool.max_pool_backward(g, x, indices=idx, **case.max_kwargs())
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------- hand-made windows


@pytest.mark.parametrize(
    "row, expected_value, expected_index",
    [
        pytest.param([1, 3, 3, 2], 3, 1, id="tie-first-wins"),
        pytest.param([1, np.nan, 5, np.nan, 2], np.nan, 3, id="nan-last-wins"),
        pytest.param([np.nan, 7, 1, 0], np.nan, 0, id="nan-first-only"),
        pytest.param([7, 1, 0, np.nan], np.nan, 3, id="nan-last-only"),
        pytest.param([-np.inf, -np.inf, -np.inf], -np.inf, 0, id="all-neg-inf"),
        pytest.param([-np.inf, np.inf, np.inf], np.inf, 1, id="pos-inf-tie"),
        pytest.param([np.nan, np.nan], np.nan, 1, id="all-nan"),
        pytest.param([-0.0, 0.0], -0.0, 0, id="neg-zero-first"),
        pytest.param([0.0, -0.0], 0.0, 0, id="pos-zero-first"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_single_window_rules(row, expected_value, expected_index, dtype, backend):
    """One window per row, repeated across 35 channels and 40 rows so that both the
    vector bodies and the scalar tails of each layout see it."""
    k = len(row)
    base = np.array(row, dtype=dtype)
    for layout in ("channels_first", "channels_last"):
        if layout == "channels_first":  # 40 windows side by side along W
            x = np.tile(base, 40).reshape(1, 1, 1, 40 * k)
        else:  # the same window in each of 35 channels
            x = np.repeat(base[:, None], 35, axis=1).reshape(1, 1, k, 35)
        y, idx = fastpool.max_pool(x, (1, k), return_indices=True, layout=layout)
        if layout == "channels_first":
            expect_idx = np.arange(40) * k + expected_index
        else:
            expect_idx = np.full(35, expected_index)
        np.testing.assert_array_equal(idx.reshape(-1), expect_idx, err_msg=layout)
        want = np.full(y.shape, expected_value, dtype=dtype)
        np.testing.assert_array_equal(y, want, err_msg=layout)
        assert_same_signs(y, want)
        g = np.ones(y.shape, dtype=dtype)
        gx = fastpool.max_pool_backward(g, x, (1, k), layout=layout)
        np.testing.assert_array_equal(gx.reshape(-1)[:k] if layout == "channels_first" else gx[0, 0, :, 0],
                                      np.eye(k, dtype=dtype)[expected_index], err_msg=layout)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_tie_rule_is_row_major_across_rows(layout, backend):
    """In a 2x2 window holding its maximum at (0, 1) and (1, 0), (0, 1) comes first in
    row-major order although (1, 0) has the smaller column: 20 such windows along W
    (and 19 channels for channels_last)."""
    plane = np.tile(np.array([[0.0, 5.0], [5.0, 1.0]]), (1, 20))  # (2, 40)
    if layout == "channels_first":
        x = plane[None, None]
    else:
        x = np.ascontiguousarray(np.repeat(plane[:, :, None], 19, axis=2))[None]
    y, idx = fastpool.max_pool(x, 2, return_indices=True, layout=layout)
    assert np.all(y == 5.0)
    first_max = 2 * np.arange(20) + 1  # row 0, column 2i + 1
    if layout == "channels_first":
        np.testing.assert_array_equal(idx, first_max.reshape(1, 1, 1, 20))
    else:
        np.testing.assert_array_equal(idx, np.broadcast_to(first_max[:, None], (1, 1, 20, 19)))


def test_padding_never_wins(backend):
    """All inputs negative: the zero/-inf padding must never be the maximum."""
    x = -1.0 - np.arange(2 * 3 * 5 * 7, dtype=np.float64).reshape(2, 3, 5, 7)
    y, idx = fastpool.max_pool(x, 3, 1, 1, return_indices=True)
    y_ref, idx_ref = ref.max_pool(x, 3, 1, 1)
    assert np.all(y < 0)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


# ---------------------------------------------------------------------- shapes and memory

@pytest.mark.parametrize("case", params(UNBATCHED))
def test_unbatched_input(case, backend):
    """(C, *spatial) / (*spatial, C) inputs, through the fixed-rank functions with an
    int kernel_size and through max_pool with a tuple one."""
    x = case.data("ints")
    y_ref, idx_ref = ref.max_pool(x, **case.max_kwargs())
    kw = case.max_kwargs()
    xu = x[0]
    y, idx = FIXED_RANK[case.geom.rank](xu, return_indices=True, **kw)
    assert_forward_equal(y, idx, y_ref[0], idx_ref[0], x.dtype)
    kw_tuple = dict(kw, kernel_size=(case.geom.kernel_size,) * case.geom.rank)
    y2, idx2 = fastpool.max_pool(xu, return_indices=True, **kw_tuple)
    assert_forward_equal(y2, idx2, y_ref[0], idx_ref[0], x.dtype)
    g = case.grad("ints")
    expected = ref.max_pool_backward(g, x, **kw)[0]
    np.testing.assert_array_equal(FIXED_RANK_BWD[case.geom.rank](g[0], xu, **kw), expected)
    np.testing.assert_array_equal(FIXED_RANK_BWD[case.geom.rank](g[0], xu, indices=idx, **kw), expected)


@pytest.mark.parametrize("case", params(OUT_CASES))
def test_out_argument(case, backend):
    """``out=`` is written in full (it starts as NaN) and returned."""
    x = case.data("ints")
    y_ref, idx_ref = ref.max_pool(x, **case.max_kwargs())
    out = np.full(y_ref.shape, np.nan, dtype=x.dtype)
    y = fastpool.max_pool(x, out=out, **case.max_kwargs())
    assert y is out
    np.testing.assert_array_equal(out, y_ref)
    out2 = np.full(y_ref.shape, np.nan, dtype=x.dtype)
    y2, idx = fastpool.max_pool(x, out=out2, return_indices=True, **case.max_kwargs())
    assert y2 is out2
    np.testing.assert_array_equal(out2, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    g = case.grad("ints")
    expected = ref.max_pool_backward(g, x, **case.max_kwargs())
    for indices in (None, idx_ref):
        gout = np.full(x.shape, np.nan, dtype=x.dtype)
        gx = fastpool.max_pool_backward(g, x, indices=indices, out=gout, **case.max_kwargs())
        assert gx is gout
        np.testing.assert_array_equal(gout, expected)


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
    y_ref, idx_ref = ref.max_pool(x, **case.max_kwargs())
    g = case.grad("ints")
    gx_ref = ref.max_pool_backward(g, x, **case.max_kwargs())
    for name, xv in views(x):
        y, idx = fastpool.max_pool(xv, return_indices=True, **case.max_kwargs())
        np.testing.assert_array_equal(y, y_ref, err_msg=name)
        np.testing.assert_array_equal(idx, idx_ref, err_msg=name)
        np.testing.assert_array_equal(fastpool.max_pool_backward(g, xv, **case.max_kwargs()), gx_ref,
                                      err_msg=name)
        np.testing.assert_array_equal(xv, before, err_msg=f"{name}: input modified")
    for name, gv in views(g):
        np.testing.assert_array_equal(fastpool.max_pool_backward(gv, x, **case.max_kwargs()), gx_ref,
                                      err_msg=f"grad {name}")
    for name, iv in views(idx_ref):
        np.testing.assert_array_equal(
            fastpool.max_pool_backward(g, x, indices=iv, **case.max_kwargs()), gx_ref, err_msg=f"indices {name}")


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
    """``x_nhwc.transpose(0, 3, 1, 2)`` is read in place; the result has the same values
    as for a C-contiguous copy, and channels_last memory order."""
    rank = geom.rank
    rng = np.random.default_rng(channels + rank)
    shape_cl = ((2,) if batched else ()) + geom.spatial + (channels,)
    x_cl = make_data(rng, shape_cl, np.float32, "ints")
    b = 1 if batched else 0
    to_cf = tuple(range(b)) + (x_cl.ndim - 1,) + tuple(range(b, x_cl.ndim - 1))
    x_view = x_cl.transpose(to_cf)
    assert not x_view.flags.c_contiguous
    kw = dict(geom.kwargs(), kernel_size=(geom.kernel_size,) * rank if isinstance(geom.kernel_size, int)
              else geom.kernel_size)
    y_ref, idx_ref = ref.max_pool(np.ascontiguousarray(x_view), **kw)
    y, idx = fastpool.max_pool(x_view, return_indices=True, **kw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    back = np.argsort(to_cf)
    assert y.transpose(back).flags.c_contiguous, "result should keep channels_last memory order"
    assert idx.transpose(back).flags.c_contiguous
    y_only = fastpool.max_pool(x_view, **kw)
    np.testing.assert_array_equal(y_only, y_ref)
    # with out= (a C-contiguous channels_first array) the values are the same
    out = np.full(y_ref.shape, np.nan, np.float32)
    assert fastpool.max_pool(x_view, out=out, **kw) is out
    np.testing.assert_array_equal(out, y_ref)
    g = make_data(rng, y_ref.shape, np.float32, "ints")
    gx_ref = ref.max_pool_backward(g, np.ascontiguousarray(x_view), **kw)
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x_view, **kw), gx_ref)
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x_view, indices=idx, **kw), gx_ref)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_channels_last_view_of_channels_first_memory(rank, backend):
    """The mirror case: ``x_nchw.transpose(0, 2, 3, 1)`` with layout="channels_last"."""
    spatial = (5, 7, 9)[3 - rank:]
    x_cf = make_data(np.random.default_rng(rank), (2, 17) + spatial, np.float64, "ints")
    x_view = np.moveaxis(x_cf, 1, -1)
    kw = dict(kernel_size=(3,) * rank, stride=2, padding=1, ceil_mode=True, layout="channels_last")
    y_ref, idx_ref = ref.max_pool(np.ascontiguousarray(x_view), **kw)
    y, idx = fastpool.max_pool(x_view, return_indices=True, **kw)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    g = make_data(np.random.default_rng(rank + 10), y_ref.shape, np.float64, "ints")
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x_view, **kw),
                                  ref.max_pool_backward(g, np.ascontiguousarray(x_view), **kw))


# ---------------------------------------------------------------------- SIMD paths and threads


def _all_outputs(case: Case):
    """Every max-pooling output of a case, on the current path: data with NaN and
    infinities, gradients that are not exactly summable (so the order of the sums shows)."""
    x = case.data("special")
    g = make_data(case.rng("grad-normal"), case.out_shape(), case.dtype, "normal")
    kw = case.max_kwargs()
    y, idx = fastpool.max_pool(x, return_indices=True, **kw)
    return {
        "y": y,
        "indices": idx,
        "y without indices": fastpool.max_pool(x, **kw),
        "y of ties": fastpool.max_pool(case.data("ints"), **kw),
        "grad from x": fastpool.max_pool_backward(g, x, **kw),
        "grad from indices": fastpool.max_pool_backward(g, x, indices=idx, **kw),
        "grad of ties": fastpool.max_pool_backward(g, case.data("ints"), **kw),
    }


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
@pytest.mark.parametrize("simd_name, n_threads", other_backends())
def test_paths_and_threads_bitwise_identical_to_scalar(case, simd_name, n_threads):
    base = cached(("max_base", case.id), lambda: _run_on("scalar", 1, case))
    with running_on(simd_name, n_threads):
        got = _all_outputs(case)
    for name, value in base.items():
        assert_bitwise_equal(got[name], value, name)


def _run_on(simd_name, n_threads, case):
    with running_on(simd_name, n_threads):
        return _all_outputs(case)


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_large_inputs_match_reference(case, num_threads):
    """The identity test's baseline is itself right (on the default path)."""
    kw = case.max_kwargs()
    for kind in ("special", "ints"):
        x = case.data(kind)
        y_ref, idx_ref = ref.max_pool(x, **kw)
        y, idx = fastpool.max_pool(x, return_indices=True, **kw)
        assert_forward_equal(y, idx, y_ref, idx_ref, x.dtype, f"{kind} data")
        g = case.grad("ints")
        np.testing.assert_array_equal(fastpool.max_pool_backward(g, x, **kw),
                                      ref.max_pool_backward(g, x, indices=idx_ref, **kw))


# ---------------------------------------------------------------------- random geometries


@pytest.mark.parametrize("case", params(RANDOM_CASES))
def test_random_geometries_match_reference(case, backend):
    kw = case.max_kwargs()
    x = case.data("special")
    y_ref, idx_ref = ref.max_pool(x, **kw)
    y, idx = fastpool.max_pool(x, return_indices=True, **kw)
    assert_forward_equal(y, idx, y_ref, idx_ref, x.dtype)
    g = case.grad("ints")
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x, **kw),
                                  ref.max_pool_backward(g, x, indices=idx_ref, **kw))


@pytest.mark.slow
def test_indices_beyond_float32_exactness():
    """A spatial plane of 2**24 + 37 elements: indices above 2**24 (not exact in float32)
    must still be exact. Windows of 2 with stride 2 and no ties: the argmax of pair o is
    2*o + (x[2o+1] > x[2o])."""
    n = 2**24 + 37
    x = np.random.default_rng(3).standard_normal((1, 1, n)).astype(np.float32)
    y, idx = fastpool.max_pool(x, 2, return_indices=True)
    pairs = x[0, 0, : n - 1].reshape(-1, 2)
    expected = 2 * np.arange(pairs.shape[0]) + (pairs[:, 1] > pairs[:, 0])
    np.testing.assert_array_equal(idx[0, 0], expected)
    np.testing.assert_array_equal(y[0, 0], pairs.max(axis=1))
    del y, pairs
    g = np.ones(idx.shape, np.float32)
    gx = fastpool.max_pool_backward(g, x, 2)
    hit = np.zeros(n, bool)
    hit[expected] = True
    np.testing.assert_array_equal(gx[0, 0], hit.astype(np.float32))
