"""The main job: ``python -m fastpool [--threads N] [--quick] [--no-torch]``.

Prints ``show_config()``, then for the pooling layers of AlexNet, VGG-16 and
ResNet-50 (float32, both layouts, forward and backward) checks fastpool against the
plain-NumPy baseline (:mod:`fastpool._numpy_pool`) and times fastpool, NumPy and,
if importable, PyTorch (``torch.nn.functional``, backward through autograd, as many
threads as fastpool). Exits with status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import fastpool
from fastpool import _numpy_pool as npool

# (network, label, kind, channels_first shape, kernel, stride, padding)
CASES: List[Tuple[str, str, str, Tuple[int, ...], int, int, int]] = [
    ("alexnet", "maxpool 3x3/2", "max", (32, 64, 55, 55), 3, 2, 0),
    ("alexnet", "maxpool 3x3/2", "max", (32, 192, 27, 27), 3, 2, 0),
    ("alexnet", "maxpool 3x3/2", "max", (32, 256, 13, 13), 3, 2, 0),
    # VGG-16's two largest pooling layers at batch 8 to keep the job under a minute.
    ("vgg16", "maxpool 2x2/2", "max", (8, 64, 224, 224), 2, 2, 0),
    ("vgg16", "maxpool 2x2/2", "max", (8, 128, 112, 112), 2, 2, 0),
    ("vgg16", "maxpool 2x2/2", "max", (32, 256, 56, 56), 2, 2, 0),
    ("vgg16", "maxpool 2x2/2", "max", (32, 512, 28, 28), 2, 2, 0),
    ("vgg16", "maxpool 2x2/2", "max", (32, 512, 14, 14), 2, 2, 0),
    ("resnet50", "maxpool 3x3/2 p1", "max", (32, 64, 112, 112), 3, 2, 1),
    ("resnet50", "global avgpool 7x7", "avg", (32, 2048, 7, 7), 7, 7, 0),
]
LAYOUTS = ("channels_first", "channels_last")
DIRECTIONS = ("fwd", "bwd")


def uniform(rng: np.random.Generator, shape: Tuple[int, ...]) -> np.ndarray:
    """float32 data uniform in [-1, 1): 9x faster to draw than normal data."""
    a = rng.random(shape, dtype=np.float32)
    a *= 2
    a -= 1
    return a


class CheckFailed(Exception):
    pass


def check_close(got: np.ndarray, ref: np.ndarray, what: str, rtol: float, atol: float) -> None:
    if got.shape != ref.shape or got.dtype != ref.dtype:
        raise CheckFailed(f"{what}: got shape {got.shape} {got.dtype}, expected {ref.shape} {ref.dtype}")
    if rtol == 0 and atol == 0:
        bad = ~((got == ref) | (np.isnan(got) & np.isnan(ref)))
    else:
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(got - ref) <= atol + rtol * np.abs(ref))
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        i = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise CheckFailed(
            f"{what}: {n_bad} of {bad.size} elements differ from the NumPy baseline "
            f"(rtol={rtol}, atol={atol}); first at index {tuple(int(v) for v in i)}: "
            f"fastpool {got[i]!r}, NumPy {ref[i]!r}")


def time_once(prepare: Optional[Callable[[], Any]], run: Callable[..., Any]) -> float:
    state = prepare() if prepare is not None else None
    t0 = time.perf_counter()
    run(state) if prepare is not None else run()
    return time.perf_counter() - t0


def torch_contenders(torch: Any, kind: str, x: np.ndarray, g: np.ndarray, layout: str,
                     kw: Dict[str, Any]) -> Dict[str, Tuple[Optional[Callable], Callable]]:
    """(prepare, run) pairs timing torch's forward and its autograd backward."""
    F = torch.nn.functional
    rank = x.ndim - 2
    fn = getattr(F, f"{kind}_pool{rank}d")
    perm = (0, rank + 1) + tuple(range(1, rank + 1))  # NHWC memory seen as NCHW

    def as_torch(a: np.ndarray) -> Any:
        t = torch.from_numpy(a)
        return t.permute(perm) if layout == "channels_last" else t

    xt, gt = as_torch(x), as_torch(g)
    args = (kw["kernel_size"], kw["stride"], kw["padding"])

    def fwd() -> Any:
        with torch.no_grad():
            return fn(xt, *args)

    xg = xt.detach().requires_grad_(True)

    def prepare_bwd() -> Any:
        xg.grad = None  # a fresh gradient each call, as fastpool's
        return fn(xg, *args)

    return {"fwd": (None, fwd), "bwd": (prepare_bwd, lambda y: y.backward(gt))}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastpool", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="threads for fastpool and torch (default: fastpool's)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    args = ap.parse_args(argv)

    if args.threads is not None:
        fastpool.set_num_threads(args.threads)
    n_threads = fastpool.get_num_threads()
    fastpool.show_config()
    print()

    torch = None
    if not args.no_torch:
        try:
            import torch  # type: ignore[no-redef]

            torch.set_num_threads(n_threads)
        except ImportError:
            print("torch not importable: PyTorch column skipped\n")
    reps = {"fastpool": 3, "torch": 2, "numpy": 1} if args.quick else {"fastpool": 9, "torch": 5, "numpy": 2}

    rng = np.random.default_rng(20240601)
    steps = [(c, lay, d) for c in CASES for lay in LAYOUTS for d in DIRECTIONS]
    rows: List[Tuple[str, ...]] = []
    failures: List[str] = []
    t_start = time.perf_counter()
    inputs: Dict[Any, Any] = {}
    for step, (case, layout, direction) in enumerate(steps, 1):
        net, label, kind, shape, k, s, p = case
        rank = len(shape) - 2
        cl = layout == "channels_last"
        xshape = (shape[0],) + shape[2:] + (shape[1],) if cl else shape
        name = f"{net} {label}"
        shape_s = "(" + ",".join(map(str, xshape)) + ")"
        print(f"[{step}/{len(steps)}] {name} {shape_s} {layout} {direction} ...", file=sys.stderr, flush=True)

        kw = dict(kernel_size=(k,) * rank, stride=(s,) * rank, padding=(p,) * rank)
        if direction == "fwd":
            x = uniform(rng, xshape)
            t0 = time.perf_counter()
            y_ref = getattr(npool, f"{kind}_pool")(x, layout=layout, **kw)
            t_ref = time.perf_counter() - t0
            g = uniform(rng, y_ref.shape)
            inputs = {"x": x, "g": g, "ref": (y_ref, t_ref)}
        x, g = inputs["x"], inputs["g"]

        if kind == "max":
            f_fp = {"fwd": lambda: fastpool.max_pool(x, layout=layout, **kw),
                    "bwd": lambda: fastpool.max_pool_backward(g, x, layout=layout, **kw)}[direction]
            f_np = {"fwd": lambda: npool.max_pool(x, layout=layout, **kw),
                    "bwd": lambda: npool.max_pool_backward(g, x, layout=layout, **kw)}[direction]
        else:
            f_fp = {"fwd": lambda: fastpool.avg_pool(x, layout=layout, **kw),
                    "bwd": lambda: fastpool.avg_pool_backward(g, x.shape, layout=layout, **kw)}[direction]
            f_np = {"fwd": lambda: npool.avg_pool(x, layout=layout, **kw),
                    "bwd": lambda: npool.avg_pool_backward(g, x.shape, layout=layout, **kw)}[direction]

        # Check (the first NumPy run is also its first timing sample).
        samples: Dict[str, List[float]] = {"fastpool": [], "numpy": [], "torch": []}
        if direction == "fwd":
            ref, t_ref = inputs.pop("ref")
        else:
            t0 = time.perf_counter()
            ref = f_np()
            t_ref = time.perf_counter() - t0
        samples["numpy"].append(t_ref)
        status = "ok"
        try:
            got = f_fp()
            exact = kind == "max" and direction == "fwd"
            check_close(got, ref, f"{name} {shape_s} {layout} {direction}",
                        rtol=0 if exact else 1e-5, atol=0 if exact else 1e-5)
            del got
        except Exception as e:  # a crash or a mismatch: report, keep going
            failures.append(f"{type(e).__name__}: {e}" if not isinstance(e, CheckFailed) else str(e))
            status = "FAIL"
        del ref

        contenders: Dict[str, Tuple[Optional[Callable], Callable]] = {"numpy": (None, f_np)}
        if status == "ok":
            contenders["fastpool"] = (None, f_fp)
        if torch is not None:
            contenders["torch"] = torch_contenders(torch, kind, x, g, layout, kw)[direction]
            time_once(*contenders["torch"])  # warm-up
        # Interleave the contenders, so a change in memory bandwidth hits them all.
        for _ in range(max(reps.values())):
            for who, (prep, run) in contenders.items():
                if len(samples[who]) < reps[who]:
                    samples[who].append(time_once(prep, run))

        ms = {w: statistics.median(v) * 1e3 if v else None for w, v in samples.items()}
        fp = ms["fastpool"]

        def cell(v: Optional[float]) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        def ratio(v: Optional[float]) -> str:
            return "n/a" if v is None or fp is None else f"{v / fp:.1f}x"

        rows.append((name, shape_s, layout, direction, cell(fp), cell(ms["numpy"]), cell(ms["torch"]),
                     ratio(ms["numpy"]), ratio(ms["torch"]), status))

    headers = ("operator", "input shape", "layout", "dir", "fastpool ms", "NumPy ms", "torch ms",
               "vs NumPy", "vs torch", "check")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    left = {0, 1, 2, 3, 9}

    def fmt(r: Tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    print(f"float32, {n_threads} thread(s) for fastpool and torch; NumPy is single-threaded.")
    print(f"Medians of {reps['fastpool']} fastpool / {reps['torch']} torch runs after a warm-up; "
          f"NumPy: {'1 run' if reps['numpy'] == 1 else 'median of %d runs' % reps['numpy']} "
          f"(with the checking run, no warm-up). Fresh outputs every call.")
    print("torch backward: autograd .backward() only (its forward runs untimed before each call).")
    print("VGG-16's 224x224 and 112x112 layers use batch 8, every other layer batch 32.")
    print("vs X = X's time / fastpool's time (> 1: fastpool is faster).\n")
    print(fmt(headers))
    print(fmt(tuple("-" * w for w in widths)))
    for r in rows:
        print(fmt(r))
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    if failures:
        print(f"\nFAILED: {len(failures)} of {len(steps)} checks against the NumPy baseline:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    print(f"all {len(steps)} checks against the NumPy baseline passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
