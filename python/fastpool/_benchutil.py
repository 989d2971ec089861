"""Helpers shared by the main job (``python -m fastpool``) and ``asv_bench/compare.py``."""

from __future__ import annotations

import functools
import os
import re
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

# Backward functions that take the input's shape instead of the input.
SHAPE_ONLY_BACKWARD = ("avg_pool", "global_avg_pool", "adaptive_avg_pool")
# Backward functions that take neither (their keyword arguments carry what they need).
NO_INPUT_BACKWARD = ("max_unpool",)
# Backward functions timed with the indices their forward returned (made untimed, as
# torch's autograd keeps them) instead of the forward's samples.
INDICES_BACKWARD = ("fractional_max_pool",)


def uniform(rng: np.random.Generator, shape: Tuple[int, ...]) -> np.ndarray:
    """float32 data uniform in [-1, 1): 9x faster to draw than normal data."""
    a = rng.random(shape, dtype=np.float32)
    a *= 2
    a -= 1
    return a


class OtherLoad:
    """CPU time other processes used while we ran (Linux /proc/stat): timings on a
    2-core machine are only meaningful when this stays near zero."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> Optional[Tuple[float, float, float]]:
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
            busy = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
            t = os.times()
            return busy, t.user + t.system + t.children_user + t.children_system, time.monotonic()
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def report(self) -> str:
        end = self._sample()
        if self.start is None or end is None:
            return ""
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        share = others / max(end[2] - self.start[2], 1e-9)
        msg = f"other processes used {max(others, 0):.1f} CPU-s ({max(share, 0):.2f} CPUs on average) during the run"
        if share > 0.1:
            msg += ": WARNING, the timings are disturbed (a thread waiting for a busy core shows as ~8 ms steps)"
        return msg


def base_name(op: str) -> str:
    """The rank-generic function of an operator: "max_pool2d" -> "max_pool"."""
    return re.sub(r"[123]d$", "", op)


def exact_forward(op: str, kw: Dict[str, Any]) -> bool:
    """Whether the forward only selects input values (max), so must match bitwise."""
    name = base_name(op)
    if name == "max_pool_dropout":
        return kw.get("training", True)
    return ("max_pool" in name or name in ("corner_pool", "center_pool")
            or (name == "spatial_pyramid_pool" and kw.get("mode", "max") == "max"))


def pool_call(module: Any, op: str, direction: str, x: np.ndarray, g: Optional[np.ndarray], layout: str,
              kw: Dict[str, Any], **extra: Any) -> Callable[[], Any]:
    """``module.<op>(x, ...)`` or ``module.<op>_backward(g, x or x.shape, ...)`` as a
    call without arguments; ``module`` is fastpool or its NumPy baseline (same
    signatures), ``extra`` e.g. ``out=``."""
    name = base_name(op)
    if direction == "fwd":
        return functools.partial(getattr(module, name), x, layout=layout, **kw, **extra)
    if name in NO_INPUT_BACKWARD:
        return functools.partial(getattr(module, name + "_backward"), g, layout=layout, **kw, **extra)
    if name in INDICES_BACKWARD:
        _, idx = getattr(module, name)(x, layout=layout, return_indices=True, **kw)
        kw = {k: v for k, v in kw.items() if k != "random_samples"}
        return functools.partial(getattr(module, name + "_backward"), g, x, layout=layout, indices=idx, **kw,
                                 **extra)
    a = x.shape if name in SHAPE_ONLY_BACKWARD else x
    return functools.partial(getattr(module, name + "_backward"), g, a, layout=layout, **kw, **extra)


def operator_inputs(op: str, x: np.ndarray, layout: str, kw: Dict[str, Any]) -> Tuple[np.ndarray, Dict[str, Any]]:
    """The input and keyword arguments an operator is timed on, made from data ``x``
    shaped as the case says: max unpooling takes ``x`` max-pooled by its own window
    (and the indices, in ``kw``), as a decoder does; stochastic pooling and max-pooling
    dropout take a ReLU's output ``max(x, 0)`` (half zeros); Hopfield pooling gets
    ``kw["queries"]`` random query patterns and beta 1 / sqrt(C); fractional max pooling gets fixed samples (in
    ``kw``); other operators take ``x``."""
    if base_name(op) in ("stochastic_pool", "max_pool_dropout"):
        return np.maximum(x, 0, out=x), kw
    if base_name(op) == "hopfield_pool":  # kw["queries"]: how many; beta: attention's 1 / sqrt(C) unless given
        c = x.shape[-1] if layout == "channels_last" else x.shape[1]
        q = np.random.default_rng(0).standard_normal((kw["queries"], c)).astype(x.dtype)
        return x, dict(kw, queries=q, beta=kw.get("beta", 1 / np.sqrt(c)))
    if base_name(op) == "fractional_max_pool":  # the samples torch would draw, fixed
        n, c = (x.shape[0], x.shape[-1]) if layout == "channels_last" else x.shape[:2]
        u = np.random.default_rng(0).random((n, c, x.ndim - 2), dtype=x.dtype)
        return x, dict(kw, random_samples=u)
    if base_name(op) != "max_unpool":
        return x, kw
    import fastpool

    pool_kw = {k: kw[k] for k in ("kernel_size", "stride", "padding") if k in kw}
    y, idx = fastpool.max_pool(x, layout=layout, return_indices=True, **pool_kw)
    return y, dict(kw, indices=idx, output_size=_spatial(x.shape, layout))


def _spatial(shape: Tuple[int, ...], layout: str) -> Tuple[int, ...]:
    return tuple(shape[1:-1]) if layout == "channels_last" else tuple(shape[2:])


def _pair(v: Any) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def torch_forward(torch: Any, op: str, kw: Dict[str, Any], rank: int) -> Tuple[Callable[[Any], Any], List[Any]]:
    """torch's forward of an operator, one ``torch.nn.functional`` op or composed
    ones where torch has none, and its learnable parameters (GeM's p).

    Global pooling is adaptive pooling to 1 (torchvision's head), flattened to (N, C);
    GeM is clamp, pow, mean, pow with p a tensor that requires grad (cirtorch); mixed
    pooling is alpha * max_pool + (1 - alpha) * avg_pool with alpha requiring grad;
    stochastic pooling unfolds the windows and gathers the tap whose running sum passes
    u * sum (2D only); max-pooling dropout is max pooling of ``x * (rand >= rate)``
    (training) or unfold, sort and the weights p q^(n-i) (inference, 2D only); Hopfield
    pooling is ``softmax(beta Q X^T) X`` by einsum with learnable queries; SPP is
    adaptive pooling to each level, flattened and concatenated; corner pooling is
    flip, cummax, flip per direction (summed for a corner) and center pooling the
    sum of the column and row maxima (``amax``)."""
    F, name = torch.nn.functional, base_name(op)
    if name in ("max_pool", "avg_pool"):
        fn = getattr(F, f"{name}{rank}d")
        return (lambda t: fn(t, **kw)), []
    if name.startswith("global_"):
        fn = getattr(F, f"adaptive_{name[7:]}{rank}d")
        return (lambda t: fn(t, 1).flatten(1)), []
    if name.startswith("adaptive_"):
        fn = getattr(F, f"{name}{rank}d")
        return (lambda t: fn(t, kw["output_size"])), []
    if name == "spatial_pyramid_pool":
        fn = getattr(F, f"adaptive_{kw.get('mode', 'max')}_pool{rank}d")
        return (lambda t: torch.cat([fn(t, lv).flatten(1) for lv in kw["levels"]], 1)), []
    if name == "soft_pool":  # the SoftPool authors' PyTorch form: two average pools of e^x
        fn = getattr(F, f"avg_pool{rank}d")

        def soft(t: Any) -> Any:
            e = t.exp()
            return fn(t * e, **kw) / fn(e, **kw)
        return soft, []
    if name == "mixed_pool":  # Lee et al.'s form: alpha (learned: requires grad) mixing two pools
        a = torch.tensor(np.asarray(kw["alpha"], dtype=np.float32), requires_grad=True)
        geo = {k: v for k, v in kw.items() if k != "alpha"}
        mx, av = getattr(F, f"max_pool{rank}d"), getattr(F, f"avg_pool{rank}d")

        def mixed(t: Any) -> Any:
            ab = a.view(-1, *(1,) * rank) if a.ndim else a  # one per channel
            return ab * mx(t, **geo) + (1 - ab) * av(t, **geo)
        return mixed, [a]
    if name == "stochastic_pool":  # the usual PyTorch form: unfold, cumsum against u * sum, gather
        k, p = _pair(kw["kernel_size"]), _pair(kw.get("padding", 0))
        st = _pair(kw.get("stride") or k)
        training = kw.get("training", True)

        def stochastic(t: Any) -> Any:
            n, c, h, w = t.shape
            oh, ow = (h + 2 * p[0] - k[0]) // st[0] + 1, (w + 2 * p[1] - k[1]) // st[1] + 1
            cols = F.unfold(t, k, padding=p, stride=st).view(n, c, k[0] * k[1], oh * ow)
            total = cols.sum(2, keepdim=True)
            if not training:
                return ((cols * cols).sum(2, keepdim=True) / total.clamp_min(1e-30)).view(n, c, oh, ow)
            u = torch.rand(total.shape, dtype=t.dtype) * total
            pick = (cols.cumsum(2) <= u).sum(2, keepdim=True).clamp_max(k[0] * k[1] - 1)
            return cols.gather(2, pick).view(n, c, oh, ow)
        return stochastic, []
    if name == "hopfield_pool":  # softmax(beta Q X^T) X per sample, queries learnable
        qp = kw["queries"].clone().requires_grad_(True)
        beta = kw["beta"]

        def hopfield(t: Any) -> Any:
            xs = t.flatten(2)  # (N, C, L)
            a = torch.softmax(beta * torch.einsum("qc,ncl->nql", qp, xs), -1)
            return torch.einsum("nql,ncl->nqc", a, xs)
        return hopfield, [qp]
    if name == "max_pool_dropout":
        rate, training = kw["rate"], kw.get("training", True)
        geo = {k: kw[k] for k in ("kernel_size", "stride", "padding") if k in kw}
        mp = getattr(F, f"max_pool{rank}d")

        def dropout(t: Any) -> Any:
            if training:
                return mp(t * (torch.rand_like(t) >= rate), **geo)
            n, c, h, w = t.shape
            k, p = _pair(geo["kernel_size"]), _pair(geo.get("padding", 0))
            st = _pair(geo.get("stride") or k)
            oh, ow = (h + 2 * p[0] - k[0]) // st[0] + 1, (w + 2 * p[1] - k[1]) // st[1] + 1
            taps = k[0] * k[1]
            cols = F.unfold(t, k, padding=p, stride=st).view(n, c, taps, oh * ow).sort(2).values
            wts = (1 - rate) * rate ** torch.arange(taps - 1, -1, -1, dtype=t.dtype)
            return (cols * wts.view(1, 1, -1, 1)).sum(2).view(n, c, oh, ow)
        return dropout, []
    if name == "fractional_max_pool":
        fn = getattr(F, f"fractional_max_pool{rank}d")
        return (lambda t: fn(t, kw["kernel_size"], output_size=kw["output_size"],
                             _random_samples=kw["random_samples"])), []
    if name == "max_unpool":
        fn = getattr(F, f"max_unpool{rank}d")
        return (lambda t: fn(t, kw["indices"], kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                             kw.get("output_size"))), []
    if name == "corner_pool":  # CornerNet's TopPool etc. as flip + cummax + flip
        scans = {"top": (2, True), "bottom": (2, False), "left": (3, True), "right": (3, False)}
        parts = [scans[d] for d in (kw["direction"].split("_") if "_" in kw["direction"] else [kw["direction"]])]

        def running_max(t: Any, dim: int, reverse: bool) -> Any:
            if reverse:
                return t.flip(dim).cummax(dim).values.flip(dim)
            return t.cummax(dim).values
        return (lambda t: sum(running_max(t, dim, rev) for dim, rev in parts)), []
    if name == "center_pool":
        return (lambda t: t.amax(2, keepdim=True) + t.amax(3, keepdim=True)), []
    if name == "gem_pool":
        p = torch.tensor(np.asarray(kw.get("p", 3.0), dtype=np.float32), requires_grad=True)
        dims, eps = tuple(range(2, rank + 2)), kw.get("eps", 1e-6)

        def gem(t: Any) -> Any:
            pb = p.view(-1, *(1,) * rank) if p.ndim else p  # one per channel
            return t.clamp(min=eps).pow(pb).mean(dims).pow(1 / p)
        return gem, [p]
    raise ValueError(f"no torch equivalent of {op}")


def torch_call(torch: Any, op: str, direction: str, x: np.ndarray, g: Optional[np.ndarray], layout: str,
               kw: Dict[str, Any]) -> Tuple[Optional[Callable[[], Any]], Callable[..., Any]]:
    """(prepare, run) timing torch's forward under ``no_grad`` (prepare is None), or
    its autograd ``.backward()`` (prepare, untimed, runs the forward with a fresh
    gradient; run takes its result)."""
    rank = x.ndim - 2
    perm = (0, rank + 1) + tuple(range(1, rank + 1))  # NHWC memory seen as NCHW

    def as_torch(a: np.ndarray) -> Any:
        t = torch.from_numpy(a)
        return t.permute(perm) if layout == "channels_last" and a.ndim == x.ndim else t

    # Array arguments (max unpooling's indices) as tensors in the same layout.
    fn, params = torch_forward(torch, op, {k: as_torch(v) if isinstance(v, np.ndarray) else v
                                           for k, v in kw.items()}, rank)

    xt = as_torch(x)
    if direction == "fwd":
        def fwd() -> Any:
            with torch.no_grad():
                return fn(xt)
        return None, fwd
    xg, gt = xt.detach().requires_grad_(True), as_torch(g)

    def prepare() -> Any:
        for t in (xg, *params):
            t.grad = None  # fresh gradients every call, as fastpool's
        return fn(xg)
    return prepare, lambda y: y.backward(gt)
