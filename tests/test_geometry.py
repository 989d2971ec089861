"""Output sizes and padding rules, and checks of the NumPy reference itself.

The reference is the ground truth of the suite, so it is checked here against
hand-computed examples and, where PyTorch defines the same thing, against PyTorch.
fastpool's output shapes and geometry errors are compared with the reference over an
exhaustive grid of small 1D geometries.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import fastpool
import reference as ref

# ---------------------------------------------------------------------- spec examples


@pytest.mark.parametrize(
    "in_size, kernel, stride, dilation, same, same_lower",
    [
        (5, 3, 2, 1, (1, 1), (1, 1)),
        (6, 3, 2, 1, (0, 1), (1, 0)),
        (6, 4, 3, 1, (0, 1), (1, 0)),
        (4, 4, 3, 2, (3, 3), (3, 3)),
        (7, 2, 1, 1, (0, 1), (1, 0)),
        (7, 1, 3, 1, (0, 0), (0, 0)),
        (1, 5, 1, 1, (2, 2), (2, 2)),
        (10, 3, 4, 1, (0, 1), (1, 0)),  # O = 3: (3-1)*4 + 3 - 10 = 1
        (9, 2, 5, 1, (0, 0), (0, 0)),  # P would be negative: 0
    ],
)
def test_same_padding_examples(in_size, kernel, stride, dilation, same, same_lower):
    assert ref.same_padding(in_size, kernel, stride, dilation) == same
    assert ref.same_padding(in_size, kernel, stride, dilation, lower=True) == same_lower
    for lower, pads in ((False, same), (True, same_lower)):
        mode = "same_lower" if lower else "same"
        out = ref.output_size(in_size, kernel, stride, dilation, *pads)
        assert out == -(-in_size // stride), "'same' gives ceil(I / s) outputs"
        y = fastpool.avg_pool(np.ones((1, 1, in_size)), kernel, stride, mode, dilation=dilation)
        assert y.shape == (1, 1, out)


@pytest.mark.parametrize(
    "args, expected",
    [
        ((7, 2, 2), 3),
        ((7, 2, 2, 1, 0, 0, True), 4),
        ((5, 2, 2, 1, 1, 1, True), 3),  # ceil gives 4, but window 3 would start in the right padding
        ((5, 2, 2, 1, 1, 1, False), 3),
        ((6, 3, 2, 1, 1, 1, True), 4),  # last window starts at 5 < 6 + 1: kept
        ((10, 3, 1, 4, 0, 0), 2),
        ((1, 1, 1), 1),
        ((3, 5, 1, 1, 1, 1), 1),
    ],
)
def test_output_size_examples(args, expected):
    assert ref.output_size(*args) == expected


def test_reference_examples_by_hand():
    x = np.array([[[1.0, 3.0, 2.0, 5.0, 4.0]]])
    y, idx = ref.max_pool(x, 2, 1)
    np.testing.assert_array_equal(y, [[[3, 3, 5, 5]]])
    np.testing.assert_array_equal(idx, [[[1, 1, 3, 3]]])
    y, idx = ref.max_pool(x, 3, 2, 1, ceil_mode=True)  # windows (-1,0,1), (1,2,3), (3,4,5)
    np.testing.assert_array_equal(y, [[[3, 5, 5]]])
    np.testing.assert_array_equal(idx, [[[1, 3, 3]]])
    np.testing.assert_array_equal(ref.max_pool_backward(np.array([[[1.0, 2.0, 4.0]]]), x, 3, 2, 1,
                                                        ceil_mode=True), [[[0, 1, 0, 6, 0]]])
    # avg: with count_include_pad every window has D = 3 (position 5 is padding, counted)
    np.testing.assert_allclose(ref.avg_pool(x, 3, 2, 1, ceil_mode=True), [[[4 / 3, 10 / 3, 9 / 3]]])
    np.testing.assert_allclose(ref.avg_pool(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                               [[[4 / 2, 10 / 3, 9 / 2]]])
    np.testing.assert_allclose(ref.avg_pool(x, 3, 2, 1, ceil_mode=True, divisor_override=2),
                               [[[4 / 2, 10 / 2, 9 / 2]]])
    np.testing.assert_allclose(ref.avg_pool_backward(np.array([[[3.0, 3.0, 2.0]]]), x.shape, 3, 2, 1,
                                                     ceil_mode=True), [[[1, 2, 1, 5 / 3, 2 / 3]]])
    # I = 6: the last window (5, 6, 7) has 6 in the padding (counted) and 7 in the
    # ceil-mode overhang (not counted): D = 2
    x6 = np.arange(6.0).reshape(1, 1, 6)
    np.testing.assert_allclose(ref.avg_pool(x6, 3, 2, 1, ceil_mode=True), [[[1 / 3, 2, 4, 5 / 2]]])
    # 2D, channels_last: the index is flat over (H, W)
    x2 = np.arange(12.0).reshape(1, 3, 4, 1)
    y2, idx2 = ref.max_pool(x2, 2, 2, layout="channels_last")
    np.testing.assert_array_equal(y2[..., 0], [[[5, 7]]])
    np.testing.assert_array_equal(idx2[..., 0], [[[5, 7]]])


# ---------------------------------------------------------------------- exhaustive 1D grid


def _grid_1d():
    for in_size, k, s, d, pb, pe, ceil in itertools.product(
            range(1, 8), range(1, 5), range(1, 4), range(1, 4), range(0, 4), range(0, 4), (False, True)):
        yield in_size, k, s, d, pb, pe, ceil


def _ref_outcome(in_size, k, s, d, pb, pe, ceil):
    try:
        return ref.make_geometry((in_size,), k, s, ((pb, pe),), d, ceil).out_sizes[0]
    except ValueError:
        return "error"


def test_output_shapes_and_geometry_errors_match_reference():
    """Every 1D geometry with sizes 1-7, kernel 1-4, stride 1-3, dilation 1-3, pads 0-3
    and both rounding modes: fastpool's output length, or its ValueError, as the spec."""
    mismatches = []
    for params in _grid_1d():
        in_size, k, s, d, pb, pe, ceil = params
        expected = _ref_outcome(*params)
        try:
            got = fastpool.max_pool(np.zeros((1, 1, in_size), np.float32), k, s, ((pb, pe),), d, ceil).shape[-1]
        except ValueError:
            got = "error"
        if got != expected:
            mismatches.append((params, got, expected))
    assert not mismatches, f"{len(mismatches)} mismatches (in, k, s, d, pb, pe, ceil), got, expected: {mismatches[:5]}"


def _torch():
    return pytest.importorskip("torch")


def test_reference_output_size_matches_torch():
    """Where PyTorch accepts the geometry (symmetric padding <= k/2) and the spec does
    too, they agree. (PyTorch also accepts windows made only of padding; the spec makes
    them an error.)"""
    torch = _torch()
    compared = 0
    for in_size, k, s, d, p, _, ceil in _grid_1d():
        if p > k // 2 or _ref_outcome(in_size, k, s, d, p, p, ceil) == "error":
            continue
        try:
            o = torch.nn.functional.max_pool1d(torch.zeros(1, 1, in_size), k, s, p, d, ceil_mode=ceil).shape[-1]
        except RuntimeError:
            continue
        assert ref.output_size(in_size, k, s, d, p, p, ceil) == o, (in_size, k, s, d, p, ceil)
        compared += 1
    assert compared > 300


@pytest.mark.parametrize("seed", range(8))
def test_reference_matches_torch(seed):
    """max (values, indices, gradient) and avg (values) of the reference on random
    small 2D geometries PyTorch accepts, with ties and NaN in the data."""
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    done = 0
    while done < 20:
        h, w = rng.integers(1, 12, 2)
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        ceil = bool(rng.integers(2))
        x = rng.integers(-3, 4, (2, 3, h, w)).astype(np.float64)
        x[rng.random(x.shape) < 0.05] = np.nan
        try:
            ref.make_geometry((h, w), k, s, p, d, ceil)  # PyTorch also takes windows of only padding
        except ValueError:
            continue
        try:
            y_t, i_t = F.max_pool2d(torch.from_numpy(x), k, s, p, d, ceil, return_indices=True)
        except RuntimeError:
            continue
        y, idx = ref.max_pool(x, k, s, p, d, ceil)
        np.testing.assert_array_equal(y, y_t.numpy())
        np.testing.assert_array_equal(idx, i_t.numpy())
        xt = torch.from_numpy(x).requires_grad_()
        g = rng.integers(-4, 5, y.shape).astype(np.float64)
        F.max_pool2d(xt, k, s, p, d, ceil).backward(torch.from_numpy(g))
        np.testing.assert_array_equal(ref.max_pool_backward(g, x, k, s, p, d, ceil), xt.grad.numpy())
        xa = np.nan_to_num(x)
        for cip in (True, False):
            a_t = F.avg_pool2d(torch.from_numpy(xa), k, s, p, ceil, cip)
            np.testing.assert_allclose(ref.avg_pool(xa, k, s, p, ceil, cip), a_t.numpy(), rtol=1e-12, atol=1e-12)
        done += 1


# ---------------------------------------------------------------------- argument forms

X2 = np.random.default_rng(7).standard_normal((2, 3, 9, 10))


@pytest.mark.parametrize(
    "kwargs, canonical",
    [
        pytest.param({"kernel_size": 3}, {"kernel_size": (3, 3), "stride": (3, 3)}, id="stride-defaults-to-kernel"),
        pytest.param({"kernel_size": [3, 2], "stride": [1, 2]}, {"kernel_size": (3, 2), "stride": (1, 2)},
                     id="lists"),
        pytest.param({"kernel_size": np.array([3, 2]), "stride": np.int64(2)}, {"kernel_size": (3, 2), "stride": 2},
                     id="numpy-ints"),
        pytest.param({"kernel_size": (np.int32(3), np.int16(3)), "stride": 1, "padding": np.int8(1)},
                     {"kernel_size": 3, "stride": 1, "padding": 1}, id="numpy-int-scalars"),
        pytest.param({"kernel_size": 3, "stride": 1, "padding": (1, 0)},
                     {"kernel_size": 3, "stride": 1, "padding": ((1, 1), (0, 0))}, id="per-axis-tuple"),
        pytest.param({"kernel_size": 3, "stride": 1, "padding": ((1, 1), 0)},
                     {"kernel_size": 3, "stride": 1, "padding": ((1, 1), (0, 0))}, id="pair-and-int-mixed"),
        pytest.param({"kernel_size": 3, "stride": 1, "padding": [[2, 0], [0, 1]]},
                     {"kernel_size": 3, "stride": 1, "padding": ((2, 0), (0, 1))}, id="pairs-as-lists"),
        pytest.param({"kernel_size": 3, "stride": 2, "padding": "SAME"},
                     {"kernel_size": 3, "stride": 2, "padding": "same"}, id="SAME-uppercase"),
        pytest.param({"kernel_size": 3, "stride": 2, "padding": "same_upper"},
                     {"kernel_size": 3, "stride": 2, "padding": "same"}, id="same_upper-alias"),
        pytest.param({"kernel_size": 3, "stride": 2, "padding": "same"},
                     {"kernel_size": 3, "stride": 2, "padding": ((1, 1), (0, 1))}, id="same-explicit"),
        pytest.param({"kernel_size": 3, "stride": 2, "padding": "same_lower"},
                     {"kernel_size": 3, "stride": 2, "padding": ((1, 1), (1, 0))}, id="same_lower-explicit"),
        pytest.param({"kernel_size": 2, "padding": "valid"}, {"kernel_size": 2, "padding": 0}, id="valid"),
        pytest.param({"kernel_size": 2, "padding": "VALID", "dilation": (1, 1)}, {"kernel_size": 2}, id="VALID"),
        pytest.param({"kernel_size": 2, "ceil_mode": np.bool_(True)}, {"kernel_size": 2, "ceil_mode": True},
                     id="numpy-bool"),
    ],
)
def test_argument_forms_are_equivalent(kwargs, canonical):
    y, idx = fastpool.max_pool(X2, return_indices=True, **kwargs)
    y_c, idx_c = fastpool.max_pool(X2, return_indices=True, **canonical)
    np.testing.assert_array_equal(y, y_c)
    np.testing.assert_array_equal(idx, idx_c)
    np.testing.assert_array_equal(y, ref.max_pool(X2, **canonical)[0])
    # (explicit count_include_pad: its default depends on the padding form, see below)
    for cip in (False, True):
        np.testing.assert_array_equal(fastpool.avg_pool(X2, count_include_pad=cip, **kwargs),
                                      fastpool.avg_pool(X2, count_include_pad=cip, **canonical))


def test_same_padding_and_count_include_pad_default():
    """'same' forms default to count_include_pad=False, even when written explicitly as pairs
    they would count the padding: the default follows the form, not the numbers."""
    same = fastpool.avg_pool(X2, 3, 2, "same")
    pairs = ((1, 1), (0, 1))
    np.testing.assert_array_equal(same, fastpool.avg_pool(X2, 3, 2, pairs, count_include_pad=False))
    assert not np.array_equal(same, fastpool.avg_pool(X2, 3, 2, pairs))
