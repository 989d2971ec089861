"""Numerical gradient checks: central differences of L(x) = sum(g * pool(x)).

float64, small inputs. For max pooling the inputs are distinct and at least 1e-2 apart,
so no argmax changes within the step h = 1e-5 and the finite difference is exact up to
rounding. Average pooling is linear, so the same holds for it.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool
from pool_cases import Geom, distinct_values, numerical_gradient

H = 1e-5
ATOL = 1e-8

GEOMS = [
    pytest.param(Geom((9,), 3, 2, 1), id="1d-k3-s2-p1"),
    pytest.param(Geom((8,), 3, 1, ((2, 0),), dilation=2, ceil_mode=True), id="1d-k3-s1-p(2,0)-d2-ceil"),
    pytest.param(Geom((5, 6), 3, 2, 1, ceil_mode=True), id="2d-k3-s2-p1-ceil"),
    pytest.param(Geom((5, 7), (2, 3), 1, "same"), id="2d-k(2,3)-s1-same"),
    pytest.param(Geom((7,), 2, 1, 1, dilation=2), id="1d-k2-s1-p1-d2"),
    pytest.param(Geom((6, 5), 2, 1, 1, dilation=(2, 1)), id="2d-k2-s1-p1-d(2,1)"),
    pytest.param(Geom((5, 7), 2, 1, 1, dilation=(1, 3)), id="2d-k2-s1-p1-d(1,3)"),
    pytest.param(Geom((3, 4, 5), 2, 1, ((1, 0), 0, (0, 1))), id="3d-k2-s1-p-pairs"),
    pytest.param(Geom((4, 4, 3), (3, 2, 2), (2, 1, 1), "same_lower"), id="3d-k(3,2,2)-same_lower"),
]
LAYOUTS = [pytest.param("channels_first", id="cf"), pytest.param("channels_last", id="cl")]


def _input(rng, geom: Geom, layout: str) -> np.ndarray:
    """Distinct values spaced >= 1e-2 apart, in random order."""
    shape = (2,) + ((3,) + geom.spatial if layout == "channels_first" else geom.spatial + (3,))
    return distinct_values(rng, shape) - int(np.prod(shape)) * 5e-3


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom", GEOMS)
def test_max_pool_gradient(geom, layout, rng):
    kw = dict(geom.kwargs(), layout=layout)
    x = _input(rng, geom, layout)
    y, idx = fastpool.max_pool(x, return_indices=True, **kw)
    g = rng.standard_normal(y.shape)
    expected = numerical_gradient(lambda v: fastpool.max_pool(v, **kw), x, g, h=H)
    assert np.count_nonzero(expected) > 0
    np.testing.assert_allclose(fastpool.max_pool_backward(g, x, **kw), expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(fastpool.max_pool_backward(g, x, indices=idx, **kw), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="default"),
        pytest.param({"count_include_pad": False}, id="exclude-pad"),
        pytest.param({"count_include_pad": True}, id="include-pad"),
        pytest.param({"divisor_override": 3}, id="divisor=3"),
    ],
)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom", GEOMS)
def test_avg_pool_gradient(geom, layout, options, rng):
    kw = dict(geom.kwargs(), layout=layout, **options)
    x = rng.standard_normal(_input(rng, geom, layout).shape)
    g = rng.standard_normal(fastpool.avg_pool(x, **kw).shape)
    expected = numerical_gradient(lambda v: fastpool.avg_pool(v, **kw), x, g, h=H)
    np.testing.assert_allclose(fastpool.avg_pool_backward(g, x.shape, **kw), expected, rtol=0, atol=ATOL)
