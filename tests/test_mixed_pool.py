"""Mixed max-average pooling (Lee, Gallagher & Tu 2016; Yu et al. 2014), forward and backward.

y = alpha * max + (1 - alpha) * avg per window, max as max_pool's (padding never wins,
NaN propagates) and avg as avg_pool's with the same count_include_pad (None: True for
numeric padding, False for "same"); alpha a finite scalar or one value per channel.
Backward: grad_x[argmax] += alpha g, grad_x[tap] += (1 - alpha) g / D for every tap
inside the input, grad_alpha = sum g (max - avg) over the batch and the windows (and the
channels for a scalar alpha).

* Hand-checked examples: values worked out from the definition (alpha 0, 1, 1/2, outside
  [0, 1], per channel; padding with count_include_pad True / False, "same", overlap,
  dilation, ceil mode; ties, NaN and +-inf, where the formula is applied as written),
  forward, grad_x and grad_alpha, run on fastpool and on the reference
  (tests/reference.py), so they also check the reference.
* The reference is checked against a brute-force loop over windows and taps.
* The geometry grid of pool_cases (ranks 1-3, every padding form, dilation, ceil-mode
  overhangs, both layouts and dtypes) with alpha cycling over scalars (0, 1, inside and
  outside [0, 1]) and per-channel arrays and count_include_pad over None / False / True,
  on normal data, data of multiples of 1/4 (ties, signed zeros) and data with NaN and
  +-inf; a subset on every SIMD path x threads 1 and 2, unbatched inputs and the
  fixed-rank forms.
* Bitwise identity across SIMD paths and thread counts; numerical gradients in x and in
  alpha; alpha = 1 is max pooling (forward and backward, exactly), alpha = 0 average
  pooling; invariants; alpha's forms and dtype; out=, non-contiguous inputs, inputs left
  unchanged; argument errors; PyTorch's composition alpha max_pool + (1 - alpha) avg_pool.

Tolerances are bounds of the rounding, relative to the sums of |terms| that
ref.mixed_pool_scale and ref.mixed_pool_backward(magnitude=True) give, with K the
window's taps: (K + 4) eps for y (a K-term sum, a division and the mixing), (2K + 4) eps
for grad_x (up to K windows each add two terms) and (K + 4 + T) eps for grad_alpha, a sum
of T terms.
"""

from __future__ import annotations

import doctest
import fractions
import importlib
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest

import reference as ref
from pool_cases import (
    DTYPES,
    GEOMS,
    IMPLS,
    LAYOUTS,
    OUT_CASES,
    SHORT,
    UNBATCHED,
    Case,
    Geom,
    assert_bitwise_equal,
    assert_close,
    assert_unchanged,
    cached,
    distinct_values,
    fp,
    grid,
    identical_on_every_backend,
    numerical_gradient,
    row,
    snapshot,
    transposed_memory,
    views,
)

INF, NAN = np.inf, np.nan


def eps_of(dtype: Any) -> float:
    return float(np.finfo(dtype).eps)


def _tuple(geom: Geom) -> Tuple[int, ...]:
    k = geom.kernel_size
    return k if isinstance(k, tuple) else (k,) * geom.rank


def _taps(geom: Geom) -> int:
    return int(np.prod(_tuple(geom)))


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class MixedCase(Case):
    """A Case with an alpha: a float, or "chan" for one value per channel."""

    alpha: Any = 0.5

    @property
    def id(self) -> str:
        a = self.alpha if isinstance(self.alpha, str) else f"{self.alpha:g}"
        return f"{super().id}-a{a}"

    def alpha_value(self) -> Any:
        if self.alpha == "chan":  # in [-0.5, 1.5], with 0 and 1 among them
            vals = np.round(np.random.default_rng(self.channels).uniform(-0.5, 1.5, self.channels), 2)
            vals[:2] = (0.0, 1.0)[:self.channels]
            return vals
        return float(self.alpha)

    def kw(self) -> Dict[str, Any]:
        """Keyword arguments of mixed_pool after alpha: geometry, layout, count_include_pad
        when the case sets it (else the default)."""
        return dict(self.max_kwargs(), **self.avg)

    def alpha_terms(self) -> int:
        """Terms summed into one grad_alpha entry."""
        out = ref.make_geometry(self.geom.spatial, **self.geom.kwargs()).out_sizes
        return self.batch * int(np.prod(out)) * (1 if self.alpha == "chan" else self.channels)

    def fwd_rtol(self) -> float:
        return (_taps(self.geom) + 4) * eps_of(self.dtype)

    def bwd_rtol(self) -> float:
        return (2 * _taps(self.geom) + 4) * eps_of(self.dtype)

    def alpha_rtol(self) -> float:
        return (_taps(self.geom) + 4 + self.alpha_terms()) * eps_of(self.dtype)


def mixed(case: Case, alpha: Any, cip: Any = "unset") -> MixedCase:
    avg = dict(case.avg) if cip == "unset" else ({} if cip is None else {"count_include_pad": cip})
    return MixedCase(case.geom, case.layout, case.dtype, case.batch, case.channels, avg, alpha)


def params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


# --------------------------------------------------------------------------- reference results


def expected(case: MixedCase, kind: str):
    """(y, forward scale, grad_x, grad_alpha, grad_x scale, grad_alpha scale) of the
    reference, cached per case and kind."""
    def compute():
        x, g, a, kw = case.data(kind), case.grad("normal"), case.alpha_value(), case.kw()
        gx, ga = ref.mixed_pool_backward(g, x, a, **kw)
        sgx, sga = ref.mixed_pool_backward(g, x, a, magnitude=True, **kw)
        return ref.mixed_pool(x, a, **kw), ref.mixed_pool_scale(x, a, **kw), gx, ga, sgx, sga
    return cached(("mixed_pool", case.id, kind), compute)


def check_alpha_grad(ga: Any, case: MixedCase, dtype: Any) -> None:
    assert isinstance(ga, np.ndarray) and ga.dtype == dtype
    assert ga.shape == (() if case.alpha != "chan" else (case.channels,))


def check(case: MixedCase, kinds=("normal", "ints", "special")) -> None:
    """fastpool's forward and backward against the reference; inputs left unchanged."""
    kw, a = case.kw(), case.alpha_value()
    for kind in kinds:
        x, g = case.data(kind), case.grad("normal")
        snap = snapshot(x, g, a)
        e, scale, e_gx, e_ga, s_gx, s_ga = expected(case, kind)
        y = fp("mixed_pool")(x, a, **kw)
        assert isinstance(y, np.ndarray) and y.dtype == x.dtype and y.shape == case.out_shape()
        assert y.flags.c_contiguous
        assert_close(y, e, scale, case.fwd_rtol(), f"forward {kind}")
        gx, ga = fp("mixed_pool_backward")(g, x, a, **kw)
        assert isinstance(gx, np.ndarray) and gx.dtype == x.dtype and gx.shape == x.shape
        assert gx.flags.c_contiguous
        check_alpha_grad(ga, case, x.dtype)
        assert_close(gx, e_gx, s_gx, case.bwd_rtol(), f"backward grad_x {kind}")
        assert_close(ga, e_ga, s_ga, case.alpha_rtol(), f"backward grad_alpha {kind}")
        assert_unchanged(snap, kind)


# --------------------------------------------------------------------------- hand-checked

def impl(which: str, name: str) -> Callable[..., Any]:
    return fp(name) if which == "fastpool" else getattr(ref, name)


# (label, x, kernel_size, alpha, extra kwargs, expected y, grad_output, expected grad_x,
# expected grad_alpha): 1-D rows, every value reasoned from the definition. For each
# window: y = a max + (1 - a) avg; the argmax gets a g, every tap inside the input
# (1 - a) g / D; grad_alpha += g (max - avg).
HAND_1D = [
    # [1, 3] and [2, 2]: max (3, 2), avg (2, 2); the tie [2, 2] routes a g to its first 2
    ("half", [1, 3, 2, 2], 2, 0.5, {}, [2.5, 2], [1, 1], [0.25, 0.75, 0.75, 0.25], 1),
    ("alpha-0", [1, 3, 2, 2], 2, 0.0, {}, [2, 2], [1, 2], [0.5, 0.5, 1, 1], 1),
    ("alpha-1", [1, 3, 2, 2], 2, 1.0, {}, [3, 2], [1, 2], [0, 1, 2, 0], 1),
    # alpha outside [0, 1]: -0.5 * 3 + 1.5 * 2 = 1.5; the taps get 1.5 / 2, the argmax -0.5
    ("alpha-negative", [1, 3, 2, 2], 2, -0.5, {}, [1.5, 2], [1, 1], [0.75, 0.25, 0.25, 0.75], 1),
    ("alpha-1.5", [1, 3, 2, 2], 2, 1.5, {}, [3.5, 2], [1, 1], [-0.25, 1.25, 1.25, -0.25], 1),
    # [-4, -2]: max -2, avg -3: -0.5 - 2.25; [-6, -8]: max -6, avg -7: -1.5 - 5.25;
    # g = 2: the argmax 0.5 + 0.75, the other 0.75; g = -1: -0.25 - 0.375 and -0.375;
    # grad_alpha 2 * 1 + (-1) * 1
    ("negative", [-4, -2, -6, -8], 2, 0.25, {}, [-2.75, -6.75], [2, -1], [0.75, 1.25, -0.625, -0.375], 1),
    # overlapping [0, 4], [4, 2] (g 1, 2): max (4, 4), avg (2, 3); x1 is both argmaxes:
    # 0.5 + 0.25 + 1 + 0.5; grad_alpha 1 * 2 + 2 * 1
    ("overlap", [0, 4, 2], 2, 0.5, {"stride": 1}, [3, 3.5], [1, 2], [0.25, 2.25, 0.5], 4),
    # padding 1, stride 1: [pad, 2], [2, 4], [4, pad]; max (2, 4, 4); avg with D = 2
    # (count_include_pad, the default for numbers) (1, 3, 2)
    ("padding-cip-default", [2, 4], 2, 0.5, {"stride": 1, "padding": 1}, [1.5, 3.5, 3], [1, 1, 1], [1.0, 1.5], 4),
    ("padding-cip-true", [2, 4], 2, 0.5, {"stride": 1, "padding": 1, "count_include_pad": True}, [1.5, 3.5, 3],
     [1, 1, 1], [1.0, 1.5], 4),
    # count_include_pad=False: D = 1 at the edges, avg (2, 3, 4), an edge tap gets 0.5
    ("padding-no-cip", [2, 4], 2, 0.5, {"stride": 1, "padding": 1, "count_include_pad": False}, [2, 3.5, 4],
     [1, 1, 1], [1.25, 1.75], 1),
    # padding never wins the max (a zero pad would beat -2 and -4): max (-2, -2, -4),
    # avg (-1, -3, -2); grad_alpha -1 + 1 - 2
    ("padding-never-wins", [-2, -4], 2, 0.5, {"stride": 1, "padding": 1}, [-1.5, -2.5, -3], [1, 1, 1], [1.5, 1.0],
     -2),
    # "same" (k 3, s 1 on 3: one pad each side) counts no padding by default: D = (2, 3, 2),
    # avg (1.5, 1, 1.5), max 3 everywhere
    ("same", [0, 3, 0], 3, 0.5, {"stride": 1, "padding": "same"}, [2.25, 2, 2.25], [1, 1, 1],
     [0.25 + 1 / 6, 2 + 1 / 6, 0.25 + 1 / 6], 5),
    ("same-cip", [0, 3, 0], 3, 0.5, {"stride": 1, "padding": "same", "count_include_pad": True}, [2, 2, 2], [1, 1, 1],
     [1 / 3, 2, 1 / 3], 6),
    # dilation 2, stride 1: windows (x0, x2) = (5, 1) and (x1, x3) = (0, 2)
    ("dilation", [5, 0, 1, 2], 2, 0.5, {"stride": 1, "dilation": 2}, [4, 1.5], [1, 1], [0.75, 0.25, 0.25, 0.75], 3),
    # ceil mode: the overhanging window [5] is kept, D = 1 (the overhang is not counted)
    ("ceil", [1, 3, 5], 2, 0.5, {"ceil_mode": True}, [2.5, 5], [1, 1], [0.25, 0.75, 1], 1),
    ("floor", [1, 3, 5], 2, 0.5, {}, [2.5], [1], [0.25, 0.75, 0], 1),
    # k 3, s 2, padding 1, ceil mode on 6: windows [pad, 1, 2], [2, 3, 4], [4, 5, 6],
    # [6, pad, overhang]; D with padding counted (3, 3, 3, 2): avg (1, 3, 5, 3)
    ("ceil-pad-cip", [1, 2, 3, 4, 5, 6], 3, 0.5, {"stride": 2, "padding": 1, "ceil_mode": True},
     [1.5, 3.5, 5.5, 4.5], [1, 1, 1, 1], [1 / 6, 5 / 6, 1 / 6, 5 / 6, 1 / 6, 17 / 12], 6),
    # without: D (2, 3, 3, 1), avg (1.5, 3, 5, 6)
    ("ceil-pad-no-cip", [1, 2, 3, 4, 5, 6], 3, 0.5,
     {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
     [1.75, 3.5, 5.5, 6], [1, 1, 1, 1], [0.25, 11 / 12, 1 / 6, 5 / 6, 1 / 6, 5 / 3], 2.5),
    # ties: the first maximum gets a g (also of zeros of both signs)
    ("tie", [2, 2], 2, 0.5, {}, [2], [1], [0.75, 0.25], 0),
    ("tie-signed-zeros", [-0.0, 0.0], 2, 0.5, {}, [0], [1], [0.75, 0.25], 0),
    ("tie-signed-zeros-2", [0.0, -0.0], 2, 0.5, {}, [0], [1], [0.75, 0.25], 0),
    # [1, 3, 3]: max 3 at x1, avg 7/3: 3/2 + 7/6; grad_alpha 3 - 7/3
    ("tie-later", [1, 3, 3], 3, 0.5, {}, [8 / 3], [1], [1 / 6, 2 / 3, 1 / 6], 2 / 3),
    # overlapping ties [3, 3] twice (g 1, 2): argmaxes x0 and x1
    ("tie-overlap", [3, 3, 3], 2, 0.5, {"stride": 1}, [3, 3], [1, 2], [0.75, 1.75, 0.5], 0),
    # NaN: y NaN, a g to the NaN, the taps their (1 - a) g / D; grad_alpha NaN
    ("nan", [NAN, 1], 2, 0.5, {}, [NAN], [1], [0.75, 0.25], NAN),
    ("nan-after", [1, NAN], 2, 0.5, {}, [NAN], [1], [0.25, 0.75], NAN),
    ("nan-alpha-0", [NAN, 1], 2, 0.0, {}, [NAN], [1], [0.5, 0.5], NAN),
    ("nan-alpha-1", [1, NAN], 2, 1.0, {}, [NAN], [1], [0, 1], NAN),
    # two NaNs: max_pool's scan (take v if v > best or v is NaN) ends on the last NaN
    ("two-nans", [NAN, 5, NAN], 3, 0.5, {}, [NAN], [1], [1 / 6, 1 / 6, 2 / 3], NAN),
    ("nan-neighbour", [NAN, 1, 0, 2], 2, 0.5, {}, [NAN, 1.5], [1, 1], [0.75, 0.25, 0.25, 0.75], NAN),
    # +-inf, the formula as written: max inf, avg inf: inf; grad_alpha g (inf - inf)
    ("inf", [INF, 1], 2, 0.5, {}, [INF], [1], [0.75, 0.25], NAN),
    ("inf-alpha-1", [INF, 1], 2, 1.0, {}, [NAN], [1], [1, 0], NAN),  # 1 inf + 0 inf
    ("inf-alpha-0", [INF, 1], 2, 0.0, {}, [NAN], [1], [0.5, 0.5], NAN),  # 0 inf + inf
    ("neg-inf-tap", [-INF, 1], 2, 0.5, {}, [-INF], [1], [0.25, 0.75], INF),  # max 1, avg -inf
    ("neg-inf-tap-alpha-1", [-INF, 1], 2, 1.0, {}, [NAN], [1], [0, 1], INF),  # 1 + 0 (-inf)
    ("zero-grad-neg-inf", [-INF, 1], 2, 0.5, {}, [-INF], [0], [0, 0], NAN),  # 0 inf
    ("all-neg-inf", [-INF, -INF], 2, 0.5, {}, [-INF], [1], [0.75, 0.25], NAN),  # argmax: the first tap
    ("inf-and-neg-inf", [INF, -INF], 2, 0.5, {}, [NAN], [1], [0.75, 0.25], NAN),  # avg NaN
    # [2, 3] beside [inf, 2]: max 3, avg 2.5 (g 4: 1 and 3); the sum of grad_alpha is NaN
    ("inf-neighbour", [INF, 2, 2, 3], 2, 0.5, {}, [INF, 2.75], [1, 4], [0.75, 0.25, 1, 3], NAN),
]


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("label,x,k,alpha,kw,y,g,gx,ga", [pytest.param(*h, id=h[0]) for h in HAND_1D])
def test_values_by_hand(label, x, k, alpha, kw, y, g, gx, ga, dtype, which):
    f, fb = impl(which, "mixed_pool"), impl(which, "mixed_pool_backward")
    xa, gg = row(x, dtype), row(g, dtype)
    rtol, atol = 4 * eps_of(dtype), 8 * eps_of(dtype)
    got = f(xa, alpha, (k,), **kw)
    assert got.dtype == xa.dtype and got.shape == (1, 1, len(y))
    np.testing.assert_allclose(got, row(y, dtype), rtol=rtol, atol=0, err_msg=f"{label} forward")
    got_x, got_a = fb(gg, xa, alpha, (k,), **kw)
    assert got_x.dtype == xa.dtype and got_x.shape == xa.shape
    assert isinstance(got_a, np.ndarray) and got_a.shape == () and got_a.dtype == xa.dtype
    np.testing.assert_allclose(got_x, row(gx, dtype), rtol=rtol, atol=atol, err_msg=f"{label} grad_x")
    np.testing.assert_allclose(got_a, np.asarray(ga, dtype), rtol=rtol, atol=atol, err_msg=f"{label} grad_alpha")


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_channel_alpha_by_hand(layout, dtype, which):
    """Channel 0 [1, 3, 2, 2] with alpha 0: its averages (2, 2); channel 1 [4, 0, -1, 5]
    with alpha 1/4: max (4, 5), avg (2, 2): (1 + 1.5, 1.25 + 1.5); the second sample is
    twice the first. grad_alpha per channel over the batch: (1 + 2, 5 + 10); a scalar
    alpha sums the channels too."""
    f, fb = impl(which, "mixed_pool"), impl(which, "mixed_pool_backward")
    rtol, atol = 4 * eps_of(dtype), 8 * eps_of(dtype)
    x1 = np.array([[1, 3, 2, 2], [4, 0, -1, 5]], dtype)
    x = np.stack([x1, 2 * x1])  # (N=2, C=2, W=4)
    y1 = np.array([[2, 2], [2.5, 2.75]], dtype)
    gx1 = np.array([[0.5, 0.5, 0.5, 0.5], [0.625, 0.375, 0.375, 0.625]], dtype)
    cl = layout == "channels_last"
    to = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if cl else (lambda a: a)  # noqa: E731
    for alpha in ([0.0, 0.25], (0, 0.25), np.array([0.0, 0.25], np.float32), np.array([0.0, 0.25])):
        y = f(to(x), alpha, (2,), layout=layout)
        np.testing.assert_allclose(y, to(np.stack([y1, 2 * y1])), rtol=rtol, atol=0)
        gx, ga = fb(to(np.ones((2, 2, 2), dtype)), to(x), alpha, (2,), layout=layout)
        np.testing.assert_allclose(gx, to(np.stack([gx1, gx1])), rtol=rtol, atol=atol)
        assert ga.shape == (2,) and ga.dtype == dtype
        np.testing.assert_allclose(ga, [3, 15], rtol=rtol)
    # unbatched (C, W) / (W, C): the first sample alone
    y = f(to(x)[0], [0.0, 0.25], (2,), layout=layout)
    np.testing.assert_allclose(y, to(y1[None])[0], rtol=rtol, atol=0)
    gx, ga = fb(to(np.ones((1, 2, 2), dtype))[0], to(x)[0], [0.0, 0.25], (2,), layout=layout)
    np.testing.assert_allclose(gx, to(gx1[None])[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(ga, [1, 5], rtol=rtol)
    # one alpha 1/4 for both: channel 0 (0.75 + 1.5, 0.5 + 1.5), grad_alpha 1 + 2 + 5 + 10
    y = f(to(x), 0.25, (2,), layout=layout)
    y0 = np.array([[2.25, 2], [2.5, 2.75]], dtype)
    np.testing.assert_allclose(y, to(np.stack([y0, 2 * y0])), rtol=rtol, atol=0)
    gx, ga = fb(to(np.ones((2, 2, 2), dtype)), to(x), 0.25, (2,), layout=layout)
    gx0 = np.array([[0.375, 0.625, 0.625, 0.375], [0.625, 0.375, 0.375, 0.625]], dtype)
    np.testing.assert_allclose(gx, to(np.stack([gx0, gx0])), rtol=rtol, atol=atol)
    assert ga.shape == () and ga.dtype == dtype
    np.testing.assert_allclose(ga, 18, rtol=rtol)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_2d_3d_and_layouts_by_hand(dtype, which):
    f, fb = impl(which, "mixed_pool"), impl(which, "mixed_pool_backward")
    rtol, atol = 4 * eps_of(dtype), 8 * eps_of(dtype)
    # 2x2 window [[1, 4], [3, 0]]: max 4, avg 2: 3; the 4 gets 1/2 + 1/8, the others 1/8
    plane = np.array([[1, 4], [3, 0]], dtype)
    np.testing.assert_allclose(f(plane[None, None], 0.5, 2), np.full((1, 1, 1, 1), 3, dtype), rtol=rtol)
    gx, ga = fb(np.ones((1, 1, 1, 1), dtype), plane[None, None], 0.5, 2)
    np.testing.assert_allclose(gx[0, 0], [[0.125, 0.625], [0.125, 0.125]], rtol=rtol, atol=atol)
    np.testing.assert_allclose(ga, 2, rtol=rtol)
    # overlapping 2x2 windows (stride 1) over [[1, 2, 3], [4, 5, 6], [7, 8, 9]]: max
    # (5, 6, 8, 9), avg (3, 4, 6, 7); each tap 1/8 per window holding it, each max 1/2
    x = np.arange(1, 10, dtype=dtype).reshape(1, 1, 3, 3)
    np.testing.assert_allclose(f(x, 0.5, 2, 1), np.array([[[[4, 5], [7, 8]]]], dtype), rtol=rtol)
    gx, ga = fb(np.ones((1, 1, 2, 2), dtype), x, 0.5, 2, 1)
    np.testing.assert_allclose(gx[0, 0], [[0.125, 0.25, 0.125], [0.25, 1.0, 0.75], [0.125, 0.75, 0.625]],
                               rtol=rtol, atol=atol)
    np.testing.assert_allclose(ga, 8, rtol=rtol)
    # k 2, s 2, padding 1 on 2x2: four windows of one tap v each; D = 4 with the padding
    # counted (y = v/2 + v/8), 1 without (y = v)
    x = np.array([[[[1, 2], [3, 4]]]], dtype)
    np.testing.assert_allclose(f(x, 0.5, 2, 2, 1), 0.625 * x, rtol=rtol)
    np.testing.assert_allclose(f(x, 0.5, 2, 2, 1, count_include_pad=False), x, rtol=rtol)
    gx, ga = fb(np.ones((1, 1, 2, 2), dtype), x, 0.5, 2, 2, 1)
    np.testing.assert_allclose(gx, np.full(x.shape, 0.625), rtol=rtol)
    np.testing.assert_allclose(ga, 0.75 * 10, rtol=rtol)
    gx, ga = fb(np.ones((1, 1, 2, 2), dtype), x, 0.5, 2, 2, 1, count_include_pad=False)
    np.testing.assert_allclose(gx, np.ones(x.shape), rtol=rtol)
    np.testing.assert_allclose(ga, 0, atol=atol)
    # channels_last, unbatched (H, W, C), alpha per channel (1/2, 1/4): channel 1 is
    # [[-1, -2], [-3, -6]]: max -1, avg -3: -1/4 - 9/4; the -1 gets 1/4 + 3/16
    xl = np.stack([plane, np.array([[-1, -2], [-3, -6]], dtype)], axis=-1)
    yl = f(xl, [0.5, 0.25], (2, 2), layout="channels_last")
    assert yl.shape == (1, 1, 2)
    np.testing.assert_allclose(yl[0, 0], [3, -2.5], rtol=rtol)
    gl, ga = fb(np.ones((1, 1, 2), dtype), xl, [0.5, 0.25], (2, 2), layout="channels_last")
    np.testing.assert_allclose(gl[..., 0], [[0.125, 0.625], [0.125, 0.125]], rtol=rtol, atol=atol)
    np.testing.assert_allclose(gl[..., 1], [[0.4375, 0.1875], [0.1875, 0.1875]], rtol=rtol, atol=atol)
    np.testing.assert_allclose(ga, [2, 2], rtol=rtol)
    # 3-D 2x2x2 window of zeros with one 8: max 8, avg 1: 4.5; grad 1/2 + 1/16 and 1/16
    cube = np.zeros((2, 2, 2), dtype)
    cube[1, 0, 1] = 8
    np.testing.assert_allclose(f(cube[None, None], 0.5, 2).ravel(), [4.5], rtol=rtol)
    gc, ga = fb(np.ones((1, 1, 1, 1, 1), dtype), cube[None, None], 0.5, 2)
    ex = np.full((2, 2, 2), 1 / 16)
    ex[1, 0, 1] += 0.5
    np.testing.assert_allclose(gc[0, 0], ex, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ga, 7, rtol=rtol)


def test_list_input_and_docstring_examples():
    y = fp("mixed_pool")([[[1.0, 3.0, 2.0, 2.0]]], 0.5, (2,))  # a list of Python floats: float64
    assert isinstance(y, np.ndarray) and y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[2.5, 2.0]]])
    gx, ga = fp("mixed_pool_backward")([[[1.0, 1.0]]], [[[1.0, 3.0, 2.0, 2.0]]], 0.5, (2,))
    assert gx.dtype == np.float64 and ga.dtype == np.float64 and ga.shape == ()
    np.testing.assert_array_equal(gx, [[[0.25, 0.75, 0.75, 0.25]]])
    assert ga == 1.0
    # fastpool.mixed_pool is the function: the module by its name
    mod = importlib.import_module("fastpool.mixed_pool")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted >= 4 and result.failed == 0


# --------------------------------------------------------------------------- the reference itself


def _brute(x: np.ndarray, alpha: np.ndarray, kernel_size, stride, padding, dilation, ceil_mode, cip):
    """(y, grad_x for grad_output 1 + index, grad_alpha per channel) of x (N, C, *spatial),
    float64, by loops in Python floats straight from the definition (only the output
    sizes and pads from ref.make_geometry)."""
    geom = ref.make_geometry(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    if cip is None:
        cip = not geom.is_same
    n, c = x.shape[:2]
    y = np.empty((n, c) + geom.out_sizes)
    gx = np.zeros(x.shape)
    ga = np.zeros(c)
    for b, ch in itertools.product(range(n), range(c)):
        a = float(alpha[ch])
        for k_out, o in enumerate(itertools.product(*(range(s) for s in geom.out_sizes))):
            g = 1.0 + k_out
            taps, counted = [], 0
            for t in itertools.product(*(range(k) for k in geom.kernel)):
                pos = tuple(o[i] * geom.stride[i] - geom.pads[i][0] + t[i] * geom.dilation[i] for i in range(geom.rank))
                if all(-geom.pads[i][0] <= p < size + geom.pads[i][1] for i, (p, size) in enumerate(
                        zip(pos, geom.in_sizes))):
                    counted += 1  # inside the padded extent (not in a ceil-mode overhang)
                if all(0 <= p < size for p, size in zip(pos, geom.in_sizes)):
                    taps.append((b, ch) + pos)
            vals = [float(x[p]) for p in taps]
            best, arg = -math.inf, taps[0]
            for p, v in zip(taps, vals):  # max_pool's scan
                if v > best or math.isnan(v):
                    best, arg = v, p
            d = counted if cip else len(taps)
            total = 0.0
            for v in vals:
                total += v
            avg = total / d
            y[(b, ch) + o] = a * best + (1 - a) * avg
            gx[arg] += a * g
            for p in taps:
                gx[p] += (1 - a) * g / d
            ga[ch] += g * (best - avg)
    return y, gx, ga


REF_GEOMS = [
    (Geom((7,), 3, 2, 1), None),
    (Geom((6,), 2, 1, ((2, 0),), dilation=2, ceil_mode=True), True),
    (Geom((5,), 4, 3, 2, ceil_mode=True), False),
    (Geom((6,), 3, 2, 1, ceil_mode=True), True),
    (Geom((9,), 3, 2, "same"), None),
    (Geom((9,), 4, 2, "same_lower"), True),
    (Geom((4, 5), (2, 3), (1, 2), (1, 1)), None),
    (Geom((5, 6), 2, 2, ((1, 0), (0, 1)), dilation=(2, 1), ceil_mode=True), False),
    (Geom((3, 3, 4), 2, 1, ((1, 0), 0, (0, 1))), True),
]


@pytest.mark.parametrize("geom,cip", [pytest.param(g, c, id=f"{g.id}-cip={c}") for g, c in REF_GEOMS])
@pytest.mark.parametrize("kind", ["normal", "ints", "special"])
def test_reference_matches_brute_force(geom, cip, kind):
    case = Case(geom, "channels_first", np.float64, 2, 3)
    x = case.data(kind, "brute")
    alpha = np.array([0.3, 1.0, -0.75])
    kw = dict(geom.kwargs(), count_include_pad=cip)
    y, gx, ga = _brute(x, alpha, cip=cip, **geom.kwargs())
    g = (1.0 + np.arange(y[0, 0].size)).reshape(y.shape[2:])
    g = np.broadcast_to(g, y.shape).copy()
    np.testing.assert_allclose(ref.mixed_pool(x, alpha, **kw), y, rtol=1e-14, atol=1e-15)
    r_gx, r_ga = ref.mixed_pool_backward(g, x, alpha, **kw)
    np.testing.assert_allclose(r_gx, gx, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(r_ga, ga, rtol=1e-13, atol=1e-13)
    # a scalar alpha: the same as equal values per channel, grad_alpha summed
    ys, gxs, gas = _brute(x, np.full(3, 0.3), cip=cip, **geom.kwargs())
    np.testing.assert_allclose(ref.mixed_pool(x, 0.3, **kw), ys, rtol=1e-14, atol=1e-15)
    r_gx, r_ga = ref.mixed_pool_backward(g, x, 0.3, **kw)
    assert r_ga.shape == ()
    np.testing.assert_allclose(r_gx, gxs, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(r_ga, gas.sum(), rtol=1e-13, atol=1e-13)
    # channels_last and unbatched give the same numbers
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    np.testing.assert_array_equal(ref.mixed_pool(xl, alpha, layout="channels_last", **kw),
                                  np.moveaxis(ref.mixed_pool(x, alpha, **kw), 1, -1))
    gl, gal = ref.mixed_pool_backward(np.moveaxis(g, 1, -1), xl, alpha, layout="channels_last", **kw)
    gc, gac = ref.mixed_pool_backward(g, x, alpha, **kw)
    np.testing.assert_array_equal(np.moveaxis(gl, -1, 1), gc)
    np.testing.assert_array_equal(gal, gac)
    kt = dict(kw, kernel_size=_tuple(geom))
    np.testing.assert_array_equal(ref.mixed_pool(x[1], alpha, **kt), ref.mixed_pool(x, alpha, **kw)[1])


# --------------------------------------------------------------------------- grid

ALPHAS = (0.3, "chan", 0.75, 0.0, "chan", 1.0, -0.5, 1.5, 0.5)
CIPS = (None, False, True)
GRID = [mixed(c, ALPHAS[i % len(ALPHAS)], CIPS[i % len(CIPS)]) for i, c in enumerate(grid(GEOMS))]


@pytest.mark.parametrize("case", params(GRID))
def test_matches_reference(case):
    check(case)


BACKEND_CASES = [
    MixedCase(Geom((31,), 3, 2, 1), "channels_first", np.float32, 2, 3, {}, 0.3),
    MixedCase(Geom((67,), 5, 1, 2), "channels_last", np.float64, 1, 17, {"count_include_pad": False}, "chan"),
    MixedCase(Geom((13,), 4, 2, "same_lower", dilation=2), "channels_last", np.float32, 2, 33, {}, "chan"),
    MixedCase(Geom((8, 67), 3, 2, 1), "channels_first", np.float32, 2, 5, {"count_include_pad": False}, 0.75),
    MixedCase(Geom((11, 13), (3, 2), (2, 3), ((1, 0), (0, 1)), ceil_mode=True), "channels_last", np.float32, 2, 17,
              {}, "chan"),
    MixedCase(Geom((7, 7), 7), "channels_first", np.float64, 1, 33, {}, -0.5),
    MixedCase(Geom((15, 20), 3, 1, 2, dilation=2), "channels_first", np.float32, 1, 3, {}, "chan"),
    MixedCase(Geom((6, 8), 4, 3, "same"), "channels_last", np.float64, 2, 3, {"count_include_pad": True}, 1.5),
    MixedCase(Geom((3, 7, 31), 3, 2, 1), "channels_last", np.float32, 1, 5, {}, "chan"),
    MixedCase(Geom((5, 6, 7), 2, 1, 1, dilation=2, ceil_mode=True), "channels_first", np.float64, 2, 3,
              {"count_include_pad": False}, 0.5),
]


@pytest.mark.parametrize("case", params(BACKEND_CASES))
def test_every_backend_matches_reference(case, backend):
    check(case)


UNBATCHED_CASES = [mixed(c, "chan" if i % 2 else 0.3, CIPS[i % 3]) for i, c in enumerate(UNBATCHED)]


@pytest.mark.parametrize("case", params(UNBATCHED_CASES))
def test_unbatched_and_fixed_rank_forms(case, backend):
    """(C, *spatial) / (*spatial, C) inputs, and mixed_pool{1,2,3}d[_backward] with an int
    kernel_size, give the batched generic results."""
    rank = case.geom.rank
    kw, a = case.kw(), case.alpha_value()
    kw_tuple = dict(kw, kernel_size=_tuple(case.geom))
    f, fb = fp(f"mixed_pool{rank}d"), fp(f"mixed_pool{rank}d_backward")
    for kind in ("normal", "special"):
        x, g = case.data(kind), case.grad("normal")
        e, scale, e_gx, e_ga, s_gx, s_ga = expected(case, kind)  # batch 1: grad_alpha is the sample's
        for batched in (True, False):
            xb, gb = (x, g) if batched else (x[0], g[0])
            eb, sb, egb, sgb = (e, scale, e_gx, s_gx) if batched else (e[0], scale[0], e_gx[0], s_gx[0])
            what = f"{kind} batched={batched}"
            assert_close(f(xb, a, **kw), eb, sb, case.fwd_rtol(), f"mixed_pool{rank}d {what}")
            assert_close(fp("mixed_pool")(xb, a, **kw_tuple), eb, sb, case.fwd_rtol(), f"mixed_pool {what}")
            for name, fn in ((f"mixed_pool{rank}d_backward", fb), ("mixed_pool_backward", fp("mixed_pool_backward"))):
                gx, ga = fn(gb, xb, a, **(kw if fn is fb else kw_tuple))
                assert gx.shape == xb.shape
                check_alpha_grad(ga, case, x.dtype)
                assert_close(gx, egb, sgb, case.bwd_rtol(), f"{name} grad_x {what}")
                assert_close(ga, e_ga, s_ga, case.alpha_rtol(), f"{name} grad_alpha {what}")


def test_fixed_rank_forms_check_the_rank():
    x = np.zeros((1, 2, 5, 6), np.float32)
    with pytest.raises(ValueError, match=r"\bx\b"):
        fp("mixed_pool1d")(x, 0.5, 2)
    with pytest.raises(ValueError, match=r"\bx\b"):
        fp("mixed_pool3d")(x[0], 0.5, 2)
    with pytest.raises(ValueError, match=r"\bx\b"):
        fp("mixed_pool1d_backward")(np.ones((1, 2, 2, 3), np.float32), x, 0.5, 2)
    # the 2-D forms take this x and an int kernel_size
    assert fp("mixed_pool2d")(x, 0.5, 2).shape == (1, 2, 2, 3)
    assert fp("mixed_pool2d_backward")(np.ones((1, 2, 2, 3), np.float32), x, 0.5, 2)[0].shape == x.shape


# --------------------------------------------------------------------------- backends

IDENTITY_CASES = [
    MixedCase(Geom((33, 67), 3, 2, 1), "channels_first", np.float32, 2, 17, {}, 0.3),
    MixedCase(Geom((33, 67), 3, 2, 1), "channels_last", np.float32, 2, 17, {"count_include_pad": False}, "chan"),
    MixedCase(Geom((40, 203), (3, 5), 1, (1, 2)), "channels_first", np.float64, 1, 9, {}, "chan"),
    MixedCase(Geom((24, 70), 2, 2, ceil_mode=True), "channels_last", np.float64, 2, 37, {}, 0.75),
    MixedCase(Geom((37, 131), 3, 3, 1, dilation=2, ceil_mode=True), "channels_first", np.float32, 1, 5,
              {"count_include_pad": False}, "chan"),
    MixedCase(Geom((2500,), 7, 2, 3), "channels_first", np.float32, 3, 11, {}, -0.5),
    MixedCase(Geom((9, 17, 31), 3, 2, 1), "channels_last", np.float64, 2, 19, {}, "chan"),
    MixedCase(Geom((10, 12, 45), (2, 3, 3), 1, ((1, 0), 1, 1), dilation=(2, 1, 1), ceil_mode=True),
              "channels_first", np.float32, 1, 3, {"count_include_pad": True}, 0.5),
]


def _outputs(case: MixedCase) -> Dict[str, np.ndarray]:
    kw = case.kw()
    res = {}
    for tag, alpha in (("case alpha", case.alpha_value()), ("alpha 0.3", 0.3)):
        for kind in ("normal", "special"):
            x, g = case.data(kind), case.grad("normal")
            res[f"y {kind} {tag}"] = fp("mixed_pool")(x, alpha, **kw)
            res[f"grad_x {kind} {tag}"], res[f"grad_alpha {kind} {tag}"] = fp("mixed_pool_backward")(g, x, alpha, **kw)
    return res


@pytest.mark.parametrize("case", params(IDENTITY_CASES))
def test_bitwise_identical_on_every_backend(case):
    """Every SIMD path x threads 1, 2, 3: the same bits as the first (scalar, 1 thread),
    y, grad_x and grad_alpha, with the case's alpha and a scalar one."""
    base = identical_on_every_backend(lambda: _outputs(case))
    e, scale, e_gx, e_ga, s_gx, s_ga = expected(case, "normal")
    assert_close(base["y normal case alpha"], e, scale, case.fwd_rtol(), "forward")
    assert_close(base["grad_x normal case alpha"], e_gx, s_gx, case.bwd_rtol(), "grad_x")
    assert_close(base["grad_alpha normal case alpha"], e_ga, s_ga, case.alpha_rtol(), "grad_alpha")


# --------------------------------------------------------------------------- gradients

GRAD_SETUPS = [
    pytest.param(Geom((9,), 3, 2, 1), None, id="1d-k3-s2-p1"),
    pytest.param(Geom((8,), 3, 1, ((2, 0),), dilation=2, ceil_mode=True), False, id="1d-k3-p(2,0)-d2-ceil-nocip"),
    pytest.param(Geom((5, 6), 3, 2, 1, ceil_mode=True), True, id="2d-k3-s2-p1-ceil-cip"),
    pytest.param(Geom((5, 7), (2, 3), 1, "same"), None, id="2d-same"),
    pytest.param(Geom((3, 4, 5), 2, 1, ((1, 0), 0, (0, 1))), False, id="3d-pairs-nocip"),
]


def _shape(geom: Geom, layout: str, batch: int = 2, channels: int = 3):
    return (batch,) + ((channels,) + geom.spatial if layout == "channels_first" else geom.spatial + (channels,))


@pytest.mark.parametrize("alpha", [0.3, "chan"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom,cip", GRAD_SETUPS)
def test_numerical_gradient(geom, cip, layout, alpha, rng):
    """Central differences of L = sum(g * mixed_pool(x, alpha)) in x and in alpha, float64,
    on distinct values 1e-2 apart of both signs (no argmax moves within a step)."""
    x = distinct_values(rng, _shape(geom, layout)) - 0.3
    a = np.array([1.3, -0.4, 0.6]) if alpha == "chan" else np.array(alpha)
    kw = dict(geom.kwargs(), layout=layout, count_include_pad=cip)
    arg = (lambda q: q) if alpha == "chan" else (lambda q: float(q))  # noqa: E731
    y = fp("mixed_pool")(x, arg(a), **kw)
    g = rng.standard_normal(y.shape)
    gx, ga = fp("mixed_pool_backward")(g, x, arg(a), **kw)
    num_x = numerical_gradient(lambda v: fp("mixed_pool")(v, arg(a), **kw), x, g, h=1e-6)
    assert np.abs(num_x).max() > 0.1
    np.testing.assert_allclose(gx, num_x, rtol=1e-6, atol=1e-7)
    num_a = numerical_gradient(lambda q: fp("mixed_pool")(x, arg(q), **kw), a.copy(), g, h=1e-6)
    assert np.shape(ga) == a.shape and np.abs(num_a).max() > 0.01
    np.testing.assert_allclose(ga, num_a, rtol=1e-6, atol=1e-7)


ALPHA_CASES = [
    MixedCase(Geom((31,), 3, 2, 1), "channels_first", np.float32, 2, 3),
    MixedCase(Geom((67,), 5, 1, 2, ceil_mode=True), "channels_last", np.float64, 1, 17, {"count_include_pad": False}),
    MixedCase(Geom((8, 67), 3, 2, 1), "channels_last", np.float32, 2, 5),
    MixedCase(Geom((9, 11), 3, 2, 1, ceil_mode=True), "channels_first", np.float64, 2, 5, {"count_include_pad": False}),
    MixedCase(Geom((13, 31), 3, 2, 0, dilation=2), "channels_first", np.float32, 1, 3),
    MixedCase(Geom((6, 8), 4, 3, "same"), "channels_last", np.float64, 2, 3),
    MixedCase(Geom((4, 5, 6), 2, 1, 1), "channels_last", np.float32, 1, 3, {"count_include_pad": True}),
    MixedCase(Geom((3, 7, 31), 3, 2, 1), "channels_first", np.float64, 2, 3),
]


@pytest.mark.parametrize("case", params(ALPHA_CASES))
def test_alpha_one_is_max_pooling(case, backend):
    """alpha = 1 (a scalar or every channel's): y is max_pool's (finite data: 1 max + 0 avg),
    grad_x max_pool_backward's, also with NaN / +-inf (0 g / D adds nothing), and
    grad_alpha = sum g (max - avg) with fastpool's own max and avg pooling."""
    kw = case.kw()
    mkw = case.max_kwargs()
    c_axis = 1 if case.layout == "channels_first" else -1
    for kind in ("normal", "ints", "special"):
        x, g = case.data(kind), case.grad("normal")
        m = fp("max_pool")(x, **mkw)
        for alpha in (1.0, np.ones(case.channels)):
            if kind != "special":
                np.testing.assert_array_equal(fp("mixed_pool")(x, alpha, **kw), m, err_msg=kind)
            gx, ga = fp("mixed_pool_backward")(g, x, alpha, **kw)
            np.testing.assert_array_equal(gx, fp("max_pool_backward")(g, x, **mkw), err_msg=kind)
            if kind == "special":
                continue
            avg = fp("avg_pool")(x, **kw)
            terms = g.astype(np.float64) * (m.astype(np.float64) - avg)
            scale = np.abs(g).astype(np.float64) * (np.abs(m) + fp("avg_pool")(np.abs(x), **kw))
            if np.ndim(alpha):  # per channel: grad_alpha is the sum over all but the channels
                terms, scale = np.moveaxis(terms, c_axis, 0), np.moveaxis(scale, c_axis, 0)
                terms = terms.reshape(case.channels, -1).sum(axis=1)
                scale = scale.reshape(case.channels, -1).sum(axis=1)
            else:
                terms, scale = terms.sum(), scale.sum()
            rtol = case.alpha_rtol() + 4 * eps_of(case.dtype)  # avg rounded once more here
            assert_close(ga, terms.astype(case.dtype), scale, rtol, f"grad_alpha {kind}")


@pytest.mark.parametrize("case", params(ALPHA_CASES))
def test_alpha_zero_is_average_pooling(case, backend):
    """alpha = 0: y is avg_pool's and grad_x avg_pool_backward's (finite data), to within
    the sums' rounding (avg_pool's channels-first row driver sums each row of a window,
    then the rows; mixed pooling adds the taps one by one in row-major order)."""
    kw = case.kw()
    rtol = (_taps(case.geom) + 2) * eps_of(case.dtype)
    for kind in ("normal", "ints"):
        x, g = case.data(kind), case.grad("normal")
        for alpha in (0.0, np.zeros(case.channels)):
            y = fp("mixed_pool")(x, alpha, **kw)
            assert_close(y, fp("avg_pool")(x, **kw), ref.avg_pool(np.abs(x), **kw), rtol, f"forward {kind}")
            gx, _ = fp("mixed_pool_backward")(g, x, alpha, **kw)
            assert_close(gx, fp("avg_pool_backward")(g, x.shape, **kw),
                         ref.avg_pool_backward(np.abs(g), x.shape, **kw), rtol, f"grad_x {kind}")


@pytest.mark.parametrize("case", params(ALPHA_CASES[:4]))
def test_invariants(case, backend):
    """Per channel, y is the mix of fastpool's own max and avg pooling; for alpha in
    [0, 1] it lies between them; grad_x sums to sum(g) when every tap of a window is
    counted (count_include_pad False, or no padding); grad_alpha is linear in g."""
    kw, mkw = case.kw(), case.max_kwargs()
    x, g = case.data("normal"), case.grad("normal")
    a = np.linspace(0, 1, case.channels)
    a_b = a.reshape((-1,) + (1,) * case.geom.rank) if case.layout == "channels_first" else a
    m, avg = fp("max_pool")(x, **mkw).astype(np.float64), fp("avg_pool")(x, **kw).astype(np.float64)
    y = fp("mixed_pool")(x, a, **kw)
    scale = np.abs(m) + np.abs(avg)
    assert_close(y, (a_b * m + (1 - a_b) * avg).astype(case.dtype), scale, 4 * eps_of(case.dtype), "mix")
    tol = 4 * eps_of(case.dtype) * scale
    assert (y >= np.minimum(m, avg) - tol).all() and (y <= np.maximum(m, avg) + tol).all()
    gx, ga = fp("mixed_pool_backward")(g, x, a, **kw)
    if case.avg.get("count_include_pad") is False:
        total = np.abs(g).astype(np.float64).sum()
        assert abs(gx.astype(np.float64).sum() - g.astype(np.float64).sum()) <= case.bwd_rtol() * total
    gx2, ga2 = fp("mixed_pool_backward")(2 * g, x, a, **kw)  # doubling is exact
    np.testing.assert_array_equal(gx2, 2 * gx)
    np.testing.assert_array_equal(ga2, 2 * ga)


@pytest.mark.parametrize("dtype", DTYPES, ids=[SHORT[d] for d in DTYPES])
def test_alpha_forms_and_dtype(dtype):
    """alpha as float, int, NumPy scalars, 0-d array, Fraction: one value in x's dtype
    (float32(0.1) for float32 x); arrays (list, tuple, any float or int dtype) per
    channel; equal per-channel values give the scalar result with grad_alpha per
    channel, summing to the scalar grad_alpha."""
    case = MixedCase(Geom((9, 11), 3, 2, 1), "channels_first", dtype, 2, 4)
    x, g = case.data("normal"), case.grad("normal")
    y = fp("mixed_pool")(x, 0.1, 3, 2, 1)
    gx, ga = fp("mixed_pool_backward")(g, x, 0.1, 3, 2, 1)
    a_dt = float(np.asarray(0.1, dtype))
    for alpha in (np.float32(0.1), np.float64(0.1), np.array(0.1), np.array(0.1, np.float32), a_dt):
        same = np.asarray(alpha, dtype) == np.asarray(0.1, dtype)  # float32(0.1) is another float64
        got = fp("mixed_pool")(x, alpha, 3, 2, 1)
        gx_a, ga_a = fp("mixed_pool_backward")(g, x, alpha, 3, 2, 1)
        assert isinstance(ga_a, np.ndarray) and ga_a.shape == () and ga_a.dtype == dtype
        if same:
            np.testing.assert_array_equal(got, y, err_msg=repr(alpha))
            np.testing.assert_array_equal(gx_a, gx)
            np.testing.assert_array_equal(ga_a, ga)
        else:  # float32(0.1) for float64 x: that value, not 0.1
            assert not np.array_equal(got, y)
            assert_close(got, ref.mixed_pool(x, alpha, 3, 2, 1), ref.mixed_pool_scale(x, alpha, 3, 2, 1),
                         case.fwd_rtol())
    assert_close(y, ref.mixed_pool(x, 0.1, 3, 2, 1), ref.mixed_pool_scale(x, 0.1, 3, 2, 1), case.fwd_rtol())
    for alpha in (1, np.int64(1), np.float32(1), fractions.Fraction(1, 1)):
        np.testing.assert_array_equal(fp("mixed_pool")(x, alpha, 3, 2, 1), fp("max_pool")(x, 3, 2, 1))
    per = np.array([0.25, -1.0, 2.0, 0.5])
    y_per = fp("mixed_pool")(x, per, 3, 2, 1)
    gx_per, ga_per = fp("mixed_pool_backward")(g, x, per, 3, 2, 1)
    assert ga_per.shape == (4,) and ga_per.dtype == dtype
    for alpha in (per.tolist(), tuple(per), per.astype(np.float32), np.array([0.25, -1, 2, 0.5], np.longdouble),
                  per[::-1].copy()[::-1], np.repeat(per, 2)[::2]):
        np.testing.assert_array_equal(fp("mixed_pool")(x, alpha, 3, 2, 1), y_per, err_msg=repr(alpha))
        gx_a, ga_a = fp("mixed_pool_backward")(g, x, alpha, 3, 2, 1)
        np.testing.assert_array_equal(gx_a, gx_per)
        np.testing.assert_array_equal(ga_a, ga_per)
    ints = np.array([0, 1, 2, -1])
    np.testing.assert_array_equal(fp("mixed_pool")(x, ints, 3, 2, 1), fp("mixed_pool")(x, ints.astype(float), 3, 2, 1))
    # equal values per channel: the scalar's y and grad_x, grad_alpha per channel
    eq = np.full(4, 0.1)
    np.testing.assert_array_equal(fp("mixed_pool")(x, eq, 3, 2, 1), y)
    gx_eq, ga_eq = fp("mixed_pool_backward")(g, x, eq, 3, 2, 1)
    np.testing.assert_array_equal(gx_eq, gx)
    assert ga_eq.shape == (4,)
    e_gx, e_ga = ref.mixed_pool_backward(g, x, eq, 3, 2, 1)
    s_gx, s_ga = ref.mixed_pool_backward(g, x, eq, 3, 2, 1, magnitude=True)
    assert_close(ga_eq, e_ga, s_ga, case.alpha_rtol())
    assert_close(ga_eq.sum(dtype=dtype), ga, s_ga.sum(), case.alpha_rtol())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_alpha(layout, backend):
    """alpha far outside [0, 1] (the formula as written): y = alpha (max - avg) + avg,
    to within rounding relative to |alpha| (|max| + avg|x|)."""
    for dtype, alpha in ((np.float64, 1e30), (np.float64, -1e12), (np.float32, 1e4), (np.float32, -3e3)):
        case = MixedCase(Geom((9, 11), 3, 2, 1), layout, dtype, 2, 5, {}, alpha)
        check(case, kinds=("normal",))


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("case", params([mixed(c, "chan" if i % 2 else 0.3) for i, c in enumerate(OUT_CASES)]))
def test_out_argument(case, backend):
    """out= (starting as NaN) is written in full and returned, forward and backward
    (backward: out receives grad_x)."""
    x, g, a, kw = case.data("normal"), case.grad("normal"), case.alpha_value(), case.kw()
    e, scale, e_gx, e_ga, s_gx, s_ga = expected(case, "normal")
    snap = snapshot(x, g, a)
    out = np.full(e.shape, np.nan, case.dtype)
    assert fp("mixed_pool")(x, a, out=out, **kw) is out
    assert_close(out, e, scale, case.fwd_rtol(), "out")
    np.testing.assert_array_equal(out, fp("mixed_pool")(x, a, **kw))
    gout = np.full(x.shape, np.nan, case.dtype)
    gx, ga = fp("mixed_pool_backward")(g, x, a, out=gout, **kw)
    assert gx is gout
    assert_close(gout, e_gx, s_gx, case.bwd_rtol(), "backward out")
    assert_close(ga, e_ga, s_ga, case.alpha_rtol(), "backward grad_alpha with out")
    gx_new, ga_new = fp("mixed_pool_backward")(g, x, a, **kw)
    np.testing.assert_array_equal(gout, gx_new)
    assert_bitwise_equal(ga, ga_new, "grad_alpha with and without out")
    # out inside a larger buffer (a canary of NaN around it): only out is written
    buf = np.full(2 * out.size + 64, np.nan, case.dtype)
    view = buf[32:32 + out.size].reshape(out.shape)
    assert fp("mixed_pool")(x, a, out=view, **kw) is view
    np.testing.assert_array_equal(view, out)
    assert np.isnan(buf[:32]).all() and np.isnan(buf[32 + out.size:]).all()
    gbuf = np.full(2 * x.size + 64, np.nan, case.dtype)
    gview = gbuf[32:32 + x.size].reshape(x.shape)
    assert fp("mixed_pool_backward")(g, x, a, out=gview, **kw)[0] is gview
    np.testing.assert_array_equal(gview, gout)
    assert np.isnan(gbuf[:32]).all() and np.isnan(gbuf[32 + x.size:]).all()
    # a non-contiguous out is refused, naming out
    big = np.full(e.shape[:-1] + (2 * e.shape[-1],), np.nan, case.dtype)
    with pytest.raises(ValueError, match=r"\bout\b"):
        fp("mixed_pool")(x, a, out=big[..., ::2], **kw)
    assert np.isnan(big).all()
    assert_unchanged(snap, "out=")


@pytest.mark.parametrize("case", params([mixed(c, "chan" if i % 2 else 0.3) for i, c in enumerate(OUT_CASES[:3])]))
def test_non_contiguous_inputs(case, backend):
    """Strided, reversed, Fortran-order, read-only, unaligned and transposed-memory x and
    grad_output (and strided / read-only per-channel alpha): the same results, bitwise;
    inputs unchanged."""
    kw, a = case.kw(), case.alpha_value()
    x, g = case.data("special"), case.grad("normal")
    y = fp("mixed_pool")(x, a, **kw)
    gx, ga = fp("mixed_pool_backward")(g, x, a, **kw)
    e, scale, e_gx, e_ga, s_gx, s_ga = expected(case, "special")
    assert_close(y, e, scale, case.fwd_rtol())
    assert_close(gx, e_gx, s_gx, case.bwd_rtol())
    assert_close(ga, e_ga, s_ga, case.alpha_rtol())
    xs = dict(views(x))
    gs = dict(views(g))
    xs["transposed-memory"] = transposed_memory(x, case.layout)
    gs["transposed-memory"] = transposed_memory(g, case.layout)
    for name in xs:
        xv, gv = xs[name], gs[name]
        assert not (xv.flags.c_contiguous and xv.flags.aligned and xv.flags.writeable), name
        snap = snapshot(xv, gv, x, g)
        np.testing.assert_array_equal(fp("mixed_pool")(xv, a, **kw), y, err_msg=name)
        for what, (gi, xi) in (("x", (g, xv)), ("grad", (gv, x)), ("both", (gv, xv))):
            gx_v, ga_v = fp("mixed_pool_backward")(gi, xi, a, **kw)
            np.testing.assert_array_equal(gx_v, gx, err_msg=f"{name} {what}")
            assert_bitwise_equal(ga_v, ga, f"{name} {what} grad_alpha")
        assert_unchanged(snap, name)
    if case.alpha == "chan":  # alpha as 1-D views: strided, reversed, read-only, unaligned, ...
        for name, av in ((name, v[0]) for name, v in views(a[None, :])):
            snap = snapshot(av)
            np.testing.assert_array_equal(fp("mixed_pool")(x, av, **kw), y, err_msg=f"alpha {name}")
            gx_v, ga_v = fp("mixed_pool_backward")(g, x, av, **kw)
            np.testing.assert_array_equal(gx_v, gx, err_msg=f"alpha {name}")
            assert_bitwise_equal(ga_v, ga, f"alpha {name} grad_alpha")
            assert_unchanged(snap, f"alpha {name}")


# --------------------------------------------------------------------------- errors

X = np.zeros((1, 2, 5, 6), np.float32)
GO = np.ones((1, 2, 2, 3), np.float32)  # the output of kernel_size 2


def _all(*words: str) -> str:
    """A regex matching a message that contains every word (any order)."""
    return "(?s)" + "".join(f"(?=.*{w})" for w in words)


def _read_only(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def _overlap_forward():
    buf = np.zeros(X.size + 8, np.float32)
    xo = buf[:X.size].reshape(X.shape)
    return fp("mixed_pool")(xo, 0.5, 1, out=buf[8:8 + X.size].reshape(X.shape))


def _overlap_backward(which: str):
    x = X.copy()
    g = GO.copy()
    if which == "x":
        return fp("mixed_pool_backward")(g, x, 0.5, 2, out=x)
    buf = np.zeros(X.size, np.float32)
    gv = buf[:GO.size].reshape(GO.shape)
    return fp("mixed_pool_backward")(gv, x, 0.5, 2, out=buf.reshape(X.shape))


def _mp(*a, **k):
    return fp("mixed_pool")(*a, **k)


def _mpb(*a, **k):
    return fp("mixed_pool_backward")(*a, **k)


E, T = ValueError, TypeError
ALPHA_TYPE = "(?=.*alpha)(?=.*float)"
ERRORS = [
    # alpha: type
    ("alpha-str", lambda: _mp(X, "0.5", 2), T, _all(ALPHA_TYPE, "'0.5'")),
    ("alpha-bytes", lambda: _mp(X, b"0.5", 2), T, ALPHA_TYPE),
    ("alpha-bool", lambda: _mp(X, True, 2), T, _all(ALPHA_TYPE, "True")),
    ("alpha-numpy-bool", lambda: _mp(X, np.bool_(False), 2), T, ALPHA_TYPE),
    ("alpha-none", lambda: _mp(X, None, 2), T, _all(ALPHA_TYPE, "None")),
    ("alpha-object", lambda: _mp(X, object(), 2), T, ALPHA_TYPE),
    ("alpha-complex", lambda: _mp(X, 0.5j, 2), T, ALPHA_TYPE),
    ("alpha-list-of-str", lambda: _mp(X, ["a", "b"], 2), T, ALPHA_TYPE),
    ("alpha-str-backward", lambda: _mpb(GO, X, "a", 2), T, ALPHA_TYPE),
    ("alpha-none-backward", lambda: _mpb(GO, X, None, 2), T, ALPHA_TYPE),
    # alpha: value
    ("alpha-nan", lambda: _mp(X, np.nan, 2), E, _all("alpha", "finite")),
    ("alpha-inf", lambda: _mp(X, np.inf, 2), E, _all("alpha", "finite")),
    ("alpha-neg-inf", lambda: _mp(X, -np.inf, 2), E, _all("alpha", "finite")),
    ("alpha-nan-backward", lambda: _mpb(GO, X, np.nan, 2), E, _all("alpha", "finite")),
    ("alpha-channel-nan", lambda: _mp(X, [0.5, np.nan], 2), E, _all("alpha", "finite", "every channel")),
    ("alpha-channel-inf-backward", lambda: _mpb(GO, X, np.array([np.inf, 0.5]), 2), E, _all("alpha", "finite")),
    # alpha that overflows x's dtype (finite as a Python float)
    ("alpha-overflows-float32", lambda: _mp(X, 1e39, 2), E, _all("alpha", "finite", "float32")),
    ("alpha-overflows-float32-neg", lambda: _mp(X, -1e39, 2), E, _all("alpha", "finite", "float32")),
    ("alpha-overflows-float32-backward", lambda: _mpb(GO, X, 1e39, 2), E, _all("alpha", "finite", "float32")),
    ("alpha-channel-overflows-float32", lambda: _mp(X, [0.5, 1e39], 2), E, _all("alpha", "float32", "every channel")),
    # alpha: shape
    ("alpha-shape-3", lambda: _mp(X, [0.5, 0.5, 0.5], 2), E, _all("alpha", r"\(2,\)", r"\(3,\)")),
    ("alpha-shape-1", lambda: _mp(X, [0.5], 2), E, _all("alpha", r"\(2,\)", r"\(1,\)")),
    ("alpha-shape-2x1", lambda: _mp(X, [[0.5], [0.5]], 2), E, _all("alpha", r"\(2, 1\)")),
    ("alpha-shape-1x2", lambda: _mp(X, np.full((1, 2), 0.5), 2), E, _all("alpha", r"\(1, 2\)")),
    ("alpha-shape-empty", lambda: _mp(X, [], 2), E, _all("alpha", r"\(0,\)")),
    ("alpha-shape-backward", lambda: _mpb(GO, X, [1.0, 2.0, 3.0], 2), E, _all("alpha", r"\(2,\)")),
    ("alpha-shape-channels-last", lambda: _mp(X, [0.5, 0.5], 2, layout="channels_last"), E,
     _all("alpha", r"\(6,\)")),  # channels_last (N, H, W, C): C = 6
    # count_include_pad
    ("cip-str", lambda: _mp(X, 0.5, 2, count_include_pad="yes"), T, _all("count_include_pad", "'yes'")),
    ("cip-int", lambda: _mp(X, 0.5, 2, count_include_pad=1), T, "count_include_pad"),
    ("cip-float", lambda: _mp(X, 0.5, 2, count_include_pad=0.0), T, "count_include_pad"),
    ("cip-backward", lambda: _mpb(GO, X, 0.5, 2, count_include_pad=0), T, "count_include_pad"),
    ("divisor-override", lambda: _mp(X, 0.5, 2, divisor_override=3), T, "divisor_override"),
    ("return-indices", lambda: _mp(X, 0.5, 2, return_indices=True), T, "return_indices"),
    # x
    ("x-object", lambda: _mp(object(), 0.5, 2), T, r"\bx\b"),
    ("x-int32", lambda: _mp(X.astype(np.int32), 0.5, 2), T, _all(r"\bx\b", "int32")),
    ("x-float16", lambda: _mp(X.astype(np.float16), 0.5, 2), T, _all(r"\bx\b", "float16")),
    ("x-complex", lambda: _mp(X.astype(np.complex64), 0.5, 2), T, "complex"),
    ("x-int-backward", lambda: _mpb(GO, X.astype(np.int64), 0.5, 2), T, _all(r"\bx\b", "int64")),
    ("x-ndim-low", lambda: _mp(X[0, 0], 0.5, (2, 2)), E, r"\bx\b"),
    ("x-ndim-high", lambda: fp("mixed_pool1d")(X, 0.5, 2), E, r"\bx\b"),
    ("x-zero-size", lambda: _mp(np.zeros((1, 0, 5, 6), np.float32), 0.5, 2), E, r"(?i)zero|empty|size"),
    # geometry
    ("kernel-zero", lambda: _mp(X, 0.5, 0), E, "kernel_size"),
    ("kernel-negative", lambda: _mp(X, 0.5, (2, -1)), E, "kernel_size"),
    ("kernel-float", lambda: _mp(X, 0.5, 2.5), T, "kernel_size"),
    ("kernel-length", lambda: fp("mixed_pool2d")(X, 0.5, (2, 2, 2)), E, "kernel_size"),
    ("kernel-too-big", lambda: _mp(X, 0.5, (7, 7)), E, "kernel_size"),
    ("kernel-none", lambda: _mp(X, 0.5, None), (E, T), "kernel_size"),
    ("kernel-backward", lambda: _mpb(GO, X, 0.5, 0), E, "kernel_size"),
    ("stride-zero", lambda: _mp(X, 0.5, 2, 0), E, "stride"),
    ("stride-length", lambda: _mp(X, 0.5, (2, 2), (1, 1, 1)), E, "stride"),
    ("stride-float", lambda: _mp(X, 0.5, 2, 1.5), T, "stride"),
    ("padding-negative", lambda: _mp(X, 0.5, 2, 1, -1), E, "padding"),
    ("padding-string", lambda: _mp(X, 0.5, 2, 1, "full"), E, _all("padding", "full")),
    ("padding-window-in-padding", lambda: _mp(X, 0.5, 2, 1, 2), E, "padding"),
    ("padding-backward", lambda: _mpb(GO, X, 0.5, 2, 1, -1), E, "padding"),
    ("dilation-zero", lambda: _mp(X, 0.5, 2, 1, 0, 0), E, "dilation"),
    ("dilation-too-big", lambda: _mp(X, 0.5, 2, 1, 0, 6), E, "dilation"),
    ("ceil-mode-string", lambda: _mp(X, 0.5, 2, ceil_mode="yes"), T, "ceil_mode"),
    ("layout-bad", lambda: _mp(X, 0.5, 2, layout="NHWC"), E, _all("layout", "NHWC")),
    ("layout-bad-backward", lambda: _mpb(GO, X, 0.5, 2, layout="cl"), E, "layout"),
    # grad_output
    ("grad-shape", lambda: _mpb(np.ones((1, 2, 3, 3), np.float32), X, 0.5, 2), E,
     _all("grad_output", r"\(1, 2, 3, 3\)", r"\(1, 2, 2, 3\)")),
    ("grad-shape-unbatched", lambda: _mpb(GO[0], X, 0.5, 2), E, "grad_output"),
    ("grad-shape-padding", lambda: _mpb(GO, X, 0.5, 2, padding=1), E, "grad_output"),
    ("grad-dtype", lambda: _mpb(GO.astype(np.float64), X, 0.5, 2), T, _all("grad_output", "float64", "float32")),
    ("grad-int", lambda: _mpb(GO.astype(np.int32), X, 0.5, 2), T, _all("grad_output", "int32")),
    ("grad-list", lambda: _mpb(GO.tolist(), X, 0.5, 2), T, "grad_output"),  # float64 values, x float32
    ("grad-shape-2d-form", lambda: fp("mixed_pool2d_backward")(np.ones((1, 2, 2, 2), np.float32), X, 0.5, 2), E,
     "grad_output"),
    # out
    ("out-shape", lambda: _mp(X, 0.5, 2, out=np.zeros((1, 2, 3, 3), np.float32)), E, r"\bout\b"),
    ("out-dtype", lambda: _mp(X, 0.5, 2, out=np.zeros(GO.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only", lambda: _mp(X, 0.5, 2, out=_read_only(GO.shape)), E, r"\bout\b"),
    ("out-overlaps-x", _overlap_forward, E, r"\bout\b"),
    ("out-is-x", lambda: (lambda a: _mp(a, 0.5, (1, 1), out=a))(X.copy()), E, r"\bout\b"),
    ("out-shape-backward", lambda: _mpb(GO, X, 0.5, 2, out=np.zeros(GO.shape, np.float32)), E, r"\bout\b"),
    ("out-dtype-backward", lambda: _mpb(GO, X, 0.5, 2, out=np.zeros(X.shape, np.float64)), T, r"\bout\b"),
    ("out-read-only-backward", lambda: _mpb(GO, X, 0.5, 2, out=_read_only(X.shape)), E, r"\bout\b"),
    ("out-is-x-backward", lambda: _overlap_backward("x"), E, r"\bout\b"),
    ("out-overlaps-grad", lambda: _overlap_backward("grad"), E, r"\bout\b"),
]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in ERRORS])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_alpha_finite_in_float64_is_accepted():
    """1e39 is finite in float64: accepted for float64 x (refused for float32 above)."""
    x = X.astype(np.float64)
    y = fp("mixed_pool")(x, 1e39, 2)
    assert y.dtype == np.float64 and np.array_equal(y, np.zeros(GO.shape))
    _, ga = fp("mixed_pool_backward")(GO.astype(np.float64), x, [1e39, -1e39], 2)
    np.testing.assert_array_equal(ga, [0, 0])


def test_errors_leave_out_untouched():
    out = np.full(GO.shape, 7.0, np.float32)
    gout = np.full(X.shape, 7.0, np.float32)
    bad_calls = [
        (TypeError, lambda: fp("mixed_pool")(X.astype(np.int32), 0.5, 2, out=out)),
        (ValueError, lambda: fp("mixed_pool")(X, 0.5, 2, padding=-1, out=out)),
        (ValueError, lambda: fp("mixed_pool")(X, np.nan, 2, out=out)),
        (ValueError, lambda: fp("mixed_pool")(X, 1e39, 2, out=out)),
        (ValueError, lambda: fp("mixed_pool")(X, [0.5, 0.5, 0.5], 2, out=out)),
        (TypeError, lambda: fp("mixed_pool")(X, "0.5", 2, out=out)),
        (TypeError, lambda: fp("mixed_pool")(X, 0.5, 2, count_include_pad="no", out=out)),
        (ValueError, lambda: fp("mixed_pool_backward")(GO, X, np.inf, 2, out=gout)),
        (ValueError, lambda: fp("mixed_pool_backward")(GO, X, [1.0, 2.0, 3.0], 2, out=gout)),
        (TypeError, lambda: fp("mixed_pool_backward")(GO, X, None, 2, out=gout)),
        (ValueError, lambda: fp("mixed_pool_backward")(GO[0], X, 0.5, 2, out=gout)),
        (TypeError, lambda: fp("mixed_pool_backward")(GO.astype(np.float64), X, 0.5, 2, out=gout)),
        (TypeError, lambda: fp("mixed_pool_backward")(GO, X, 0.5, 2, count_include_pad=1, out=gout)),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
        np.testing.assert_array_equal(out, 7.0)
        np.testing.assert_array_equal(gout, 7.0)


# --------------------------------------------------------------------------- torch

TORCH_CASES = [
    MixedCase(Geom((31,), 3, 2, 1), "channels_first", np.float32, 2, 3, {}, 0.3),
    MixedCase(Geom((31,), 4, 3, 2, ceil_mode=True), "channels_last", np.float64, 2, 5, {"count_include_pad": False},
              "chan"),
    MixedCase(Geom((31,), 4, 3, 2, ceil_mode=True), "channels_first", np.float32, 2, 5, {}, "chan"),
    MixedCase(Geom((8, 67), 3, 2, 1), "channels_first", np.float32, 2, 5, {"count_include_pad": False}, 0.75),
    MixedCase(Geom((11, 13), (3, 2), (2, 1), 1, ceil_mode=True), "channels_last", np.float32, 1, 17, {}, "chan"),
    MixedCase(Geom((10, 9), 3, 2, 1, ceil_mode=True), "channels_first", np.float64, 2, 3,
              {"count_include_pad": False}, -0.5),
    MixedCase(Geom((7, 7), 3, 1, 1), "channels_first", np.float64, 2, 3, {"count_include_pad": True}, 1.5),
    MixedCase(Geom((9, 9), 2), "channels_last", np.float64, 1, 4, {}, 0.0),
    MixedCase(Geom((9, 9), 2), "channels_first", np.float32, 1, 4, {}, 1.0),
    MixedCase(Geom((4, 6, 9), 3, 2, 1), "channels_first", np.float32, 1, 3, {"count_include_pad": False}, "chan"),
    MixedCase(Geom((5, 6, 7), 2, 1, 1, ceil_mode=True), "channels_last", np.float64, 2, 3, {}, 0.6),
]


@pytest.mark.parametrize("case", params(TORCH_CASES))
def test_matches_torch_composition(case):
    """alpha * F.max_poolNd + (1 - alpha) * F.avg_poolNd(count_include_pad) in torch, alpha
    a tensor (scalar or (C,), broadcast over the channels); autograd for grad_x and
    alpha's gradient."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rank = case.geom.rank
    x, g = case.data("normal"), case.grad("normal")
    a = case.alpha_value()
    cl = case.layout == "channels_last"
    leaf = torch.from_numpy(x.copy()).requires_grad_(True)
    t = leaf.movedim(-1, 1) if cl else leaf
    ta = torch.tensor(a, dtype=leaf.dtype, requires_grad=True)
    tab = ta.reshape((1, -1) + (1,) * rank) if ta.ndim else ta
    geom = case.geom
    k, s = geom.kernel_size, geom.stride if geom.stride is not None else geom.kernel_size
    mx = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank]
    av = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank]
    cip = case.avg.get("count_include_pad", True)  # numeric padding: the default is True
    yt = tab * mx(t, k, s, geom.padding, ceil_mode=geom.ceil_mode) + (1 - tab) * av(
        t, k, s, geom.padding, ceil_mode=geom.ceil_mode, count_include_pad=cip)
    gt = torch.from_numpy(g.copy())
    yt.backward(gt.movedim(-1, 1) if cl else gt)
    yt = yt.detach()
    y_t = np.ascontiguousarray((yt.movedim(1, -1) if cl else yt).numpy())
    kw = case.kw()
    assert y_t.shape == case.out_shape()
    e, scale, e_gx, e_ga, s_gx, s_ga = expected(case, "normal")
    y = fp("mixed_pool")(x, a, **kw)
    assert_close(y, y_t, scale, 2 * case.fwd_rtol(), "forward vs torch")  # both sides round
    gx, ga = fp("mixed_pool_backward")(g, x, a, **kw)
    assert_close(gx, leaf.grad.numpy(), s_gx, 2 * case.bwd_rtol(), "grad_x vs torch autograd")
    # torch: sum(g max) - sum(g avg), two sums that may cancel: relative to s_ga still
    assert_close(ga, ta.grad.numpy().astype(case.dtype), s_ga, 2 * case.alpha_rtol(), "grad_alpha vs torch autograd")
