"""fastpool against PyTorch's pooling: forward, indices and autograd gradients.

Only geometries PyTorch accepts: symmetric numeric padding of at most half the kernel,
no dilation for average pooling. channels_last arrays go to PyTorch as a
channels-first view of channels-last memory (its own channels-last kernels).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest

import fastpool
import reference as ref
from pool_cases import DTYPES, GEOMS, LAYOUTS, SHORT, Case, Geom, assert_close_to_sum, make_data

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_geometry(geom: Geom, avg: bool):
    """(kernel, stride, padding, dilation) tuples if PyTorch accepts ``geom``, else None."""
    if isinstance(geom.padding, str):
        return None
    if isinstance(geom.padding, tuple) and any(isinstance(p, tuple) for p in geom.padding):
        return None  # per-side pairs
    g = ref.make_geometry(geom.spatial, **geom.kwargs())
    pads = tuple(p[0] for p in g.pads)
    if any(p > k // 2 for p, k in zip(pads, g.kernel)):
        return None
    if avg and any(d != 1 for d in g.dilation):
        return None
    return g.kernel, g.stride, pads, g.dilation


def _torch_cases(avg: bool):
    cases = []
    for gi, geom in enumerate(GEOMS):
        if _torch_geometry(geom, avg) is None:
            continue
        for vi, (layout, dtype) in enumerate([(lay, d) for lay in LAYOUTS for d in DTYPES]):
            cases.append(Case(geom, layout, dtype, batch=1 + (gi + vi) % 2, channels=(3, 17)[(gi + vi) % 2]))
    return [pytest.param(c, id=c.id) for c in cases]


def to_torch(x: np.ndarray, layout: str, requires_grad: bool = False, native: bool = True):
    """(leaf tensor in x's layout, channels-first tensor of it for PyTorch). With
    ``native`` a channels_last array stays in channels-last memory, so PyTorch runs its
    channels-last kernels; otherwise it gets a contiguous channels-first copy."""
    leaf = torch.from_numpy(x.copy()).requires_grad_(requires_grad)
    if layout != "channels_last":
        return leaf, leaf
    t = leaf.movedim(-1, 1)
    return leaf, (t if native else t.contiguous())


def from_torch(t, layout: str) -> np.ndarray:
    if layout == "channels_last":
        t = t.movedim(1, -1)
    return np.ascontiguousarray(t.detach().numpy())


def torch_max(case: Case, x: np.ndarray, g: np.ndarray, native: bool = True):
    k, s, p, d = _torch_geometry(case.geom, avg=False)
    leaf, t = to_torch(x, case.layout, requires_grad=True, native=native)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[case.geom.rank]
    y, idx = fn(t, k, s, p, d, ceil_mode=case.geom.ceil_mode, return_indices=True)
    y.backward(to_torch(g, case.layout)[1])
    return from_torch(y, case.layout), from_torch(idx, case.layout), leaf.grad.numpy()


def torch_avg(case: Case, x: np.ndarray, g: np.ndarray, options: Dict[str, Any]):
    k, s, p, _ = _torch_geometry(case.geom, avg=True)
    leaf, t = to_torch(x, case.layout, requires_grad=True)
    kw = dict(ceil_mode=case.geom.ceil_mode, count_include_pad=options.get("count_include_pad", True),
              divisor_override=options.get("divisor_override"))
    if case.geom.rank == 1:  # avg_pool1d has no divisor_override: pool a 1 x W plane
        y = F.avg_pool2d(t.unsqueeze(2), (1,) + k, (1,) + s, (0,) + p, **kw).squeeze(2)
    else:
        y = {2: F.avg_pool2d, 3: F.avg_pool3d}[case.geom.rank](t, k, s, p, **kw)
    y.backward(to_torch(g, case.layout)[1])
    return from_torch(y, case.layout), leaf.grad.numpy()


@pytest.mark.parametrize("kind", ["normal", "ints", "special"])
@pytest.mark.parametrize("case", _torch_cases(avg=False))
def test_max_pool_matches_torch(case, kind):
    x = case.data(kind)
    g = make_data(case.rng("grad"), case.out_shape(), case.dtype, "ints")  # exact sums
    # PyTorch 2.x's channels-last max_pool3d reports, for a window of only -inf, an index
    # without the window's depth offset (outside the window), and routes the gradient
    # there; its channels-first kernel is right. So windows of -inf go to the latter.
    y_t, idx_t, gx_t = torch_max(case, x, g, native=kind != "special")
    kw = case.max_kwargs()
    y, idx = fastpool.max_pool(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(idx, idx_t)
    np.testing.assert_array_equal(fastpool.max_pool(x, **kw), y_t)
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x, **kw), gx_t)
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x, indices=idx, **kw), gx_t)


AVG_OPTIONS = [
    pytest.param({}, id="default"),
    pytest.param({"count_include_pad": False}, id="exclude-pad"),
    pytest.param({"divisor_override": 5}, id="divisor=5"),
    pytest.param({"divisor_override": 2, "count_include_pad": False}, id="divisor=2-exclude-pad"),
]


@pytest.mark.parametrize("options", AVG_OPTIONS)
@pytest.mark.parametrize("case", _torch_cases(avg=True))
def test_avg_pool_matches_torch(case, options):
    x = case.data("ints")  # exact window sums: both sides round once
    g = make_data(case.rng("grad"), case.out_shape(), case.dtype, "ints")
    y_t, gx_t = torch_avg(case, x, g, options)
    kw = dict(case.avg_kwargs(), **options)
    assert_close_to_sum(fastpool.avg_pool(x, **kw), y_t, ref.avg_pool(np.abs(x), **kw))
    assert_close_to_sum(fastpool.avg_pool_backward(g, x.shape, **kw), gx_t,
                        ref.avg_pool_backward(np.abs(g), x.shape, **kw))


@pytest.mark.parametrize("layout", LAYOUTS, ids=[SHORT[lay] for lay in LAYOUTS])
def test_resnet_stem_matches_torch(layout):
    """The most common layer: max 3x3 / 2, padding 1, on a 112 x 112 map."""
    case = Case(Geom((112, 112), 3, 2, 1), layout, np.float32, 2, 16)
    x = case.data("normal")
    g = make_data(case.rng("grad"), case.out_shape(), case.dtype, "ints")
    y_t, idx_t, gx_t = torch_max(case, x, g)
    y, idx = fastpool.max_pool(x, return_indices=True, **case.max_kwargs())
    np.testing.assert_array_equal(y, y_t)
    np.testing.assert_array_equal(idx, idx_t)
    np.testing.assert_array_equal(fastpool.max_pool_backward(g, x, **case.max_kwargs()), gx_t)
