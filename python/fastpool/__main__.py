"""The main job: ``python -m fastpool [--threads N] [--quick] [--no-torch]``.

Prints ``show_config()``, then for the pooling layers of AlexNet, VGG-16 and
ResNet-50, for the heads put on their last feature maps (global average, GeM,
adaptive average to 6x6, spatial pyramid pooling) and for CornerNet's corner and
CenterNet's center pooling (float32, both layouts, forward and backward) checks fastpool against the plain-NumPy baseline
(:mod:`fastpool._numpy_pool`) and times fastpool, NumPy and, if importable, PyTorch
(``torch.nn.functional``, composed from torch ops where torch has no single op, see
:func:`fastpool._benchutil.torch_forward`; backward through autograd, as many threads
as fastpool). Exits with status 1 if any check fails.
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
from fastpool._benchutil import OtherLoad, exact_forward, operator_inputs, pool_call, torch_call, uniform


def win(k: int, s: int, p: int) -> Dict[str, Any]:
    """A square 2D window's keyword arguments."""
    return dict(kernel_size=(k, k), stride=(s, s), padding=(p, p))


# (network, label, fastpool operator, channels_first shape, keyword arguments)
CASES: List[Tuple[str, str, str, Tuple[int, ...], Dict[str, Any]]] = [
    ("alexnet", "maxpool 3x3/2", "max_pool2d", (32, 64, 55, 55), win(3, 2, 0)),
    ("alexnet", "maxpool 3x3/2", "max_pool2d", (32, 192, 27, 27), win(3, 2, 0)),
    ("alexnet", "maxpool 3x3/2", "max_pool2d", (32, 256, 13, 13), win(3, 2, 0)),
    # Heads on AlexNet's conv5: torchvision's adaptive average to 6x6; SPP-net's pyramid.
    ("alexnet", "adaptive avgpool 6x6", "adaptive_avg_pool2d", (32, 256, 13, 13), dict(output_size=(6, 6))),
    ("alexnet", "SPP 1,2,4 max", "spatial_pyramid_pool", (32, 256, 13, 13), dict(levels=(1, 2, 4))),
    # VGG-16's two largest pooling layers at batch 8 to keep the job under a minute.
    ("vgg16", "maxpool 2x2/2", "max_pool2d", (8, 64, 224, 224), win(2, 2, 0)),
    ("vgg16", "maxpool 2x2/2", "max_pool2d", (8, 128, 112, 112), win(2, 2, 0)),
    ("vgg16", "maxpool 2x2/2", "max_pool2d", (32, 256, 56, 56), win(2, 2, 0)),
    ("vgg16", "maxpool 2x2/2", "max_pool2d", (32, 512, 28, 28), win(2, 2, 0)),
    ("vgg16", "maxpool 2x2/2", "max_pool2d", (32, 512, 14, 14), win(2, 2, 0)),
    ("resnet50", "maxpool 3x3/2 p1", "max_pool2d", (32, 64, 112, 112), win(3, 2, 1)),
    ("resnet50", "avgpool 7x7", "avg_pool2d", (32, 2048, 7, 7), win(7, 7, 0)),
    # Heads on ResNet-50's last map: classification (global average), retrieval (GeM).
    ("resnet50", "global avgpool", "global_avg_pool", (32, 2048, 7, 7), {}),
    ("resnet50", "GeM p=3", "gem_pool", (32, 2048, 7, 7), dict(p=3.0)),
    # Keypoint heads on a 128x128 map (a 511x511 image at stride 4).
    ("cornernet", "top-left corner pool", "corner_pool", (2, 128, 128, 128), dict(direction="top_left")),
    ("centernet", "center pool", "center_pool", (2, 128, 128, 128), {}),
    # SoftPool (Stergiou et al.) in place of ResNet-50's stem max pooling.
    ("resnet50", "softpool 3x3/2 p1", "soft_pool2d", (8, 64, 112, 112), win(3, 2, 1)),
    # Mixed max-average pooling (Lee et al.) in the same place, alpha = 0.5.
    ("resnet50", "mixed pool 3x3/2 p1", "mixed_pool2d", (8, 64, 112, 112), dict(alpha=0.5, **win(3, 2, 1))),
    # Stochastic pooling (Zeiler & Fergus) there too: training draws (the backward draws
    # again from the seed), and the inference form.
    ("resnet50", "stochastic pool 3x3/2 p1", "stochastic_pool2d", (8, 64, 112, 112), dict(seed=1, **win(3, 2, 1))),
    ("resnet50", "stochastic pool 3x3/2 p1 (inference)", "stochastic_pool2d", (8, 64, 112, 112),
     dict(training=False, **win(3, 2, 1))),
    # Max-pooling dropout (Wu & Gu), rate 0.3, there too: training (the backward makes the
    # mask again from the seed) and the inference form.
    ("resnet50", "maxpool dropout 3x3/2 p1", "max_pool_dropout2d", (8, 64, 112, 112),
     dict(rate=0.3, seed=1, **win(3, 2, 1))),
    ("resnet50", "maxpool dropout 3x3/2 p1 (inference)", "max_pool_dropout2d", (8, 64, 112, 112),
     dict(rate=0.3, training=False, **win(3, 2, 1))),
    # Hopfield pooling (Ramsauer et al.'s HopfieldPooling) of ResNet-50's last map: 4
    # learnable queries, beta 1 / sqrt(C).
    ("resnet50", "Hopfield pool, 4 queries", "hopfield_pool", (32, 2048, 7, 7), dict(queries=4)),
    # Graham's fractional max pooling: 2x2 windows, output ratio 1 / sqrt(2).
    ("fmp", "fractional maxpool 2x2 -> 79x79", "fractional_max_pool2d", (8, 64, 112, 112),
     dict(kernel_size=(2, 2), output_size=(79, 79))),
    # SegNet's decoder puts a 2x2/2 max pool's values back by its indices (the shape is
    # the pooling's input, and the unpooled output's).
    ("segnet", "max unpool 2x2/2", "max_unpool2d", (8, 64, 112, 112), win(2, 2, 0)),
]
LAYOUTS = ("channels_first", "channels_last")
DIRECTIONS = ("fwd", "bwd")


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
            f"fastpool {got[i].item()!r}, NumPy {ref[i].item()!r}")


def time_once(prepare: Optional[Callable[[], Any]], run: Callable[..., Any]) -> float:
    state = prepare() if prepare is not None else None
    t0 = time.perf_counter()
    run(state) if prepare is not None else run()
    return time.perf_counter() - t0


def check_results(got: Any, ref: Any, what: str, exact: bool) -> None:
    """fastpool's result (an array, or a tuple such as GeM's (grad_x, grad_p)) against NumPy's."""
    got, ref = (got, ref) if isinstance(ref, tuple) else ((got,), (ref,))
    if len(got) != len(ref):
        raise CheckFailed(f"{what}: got {len(got)} results, expected {len(ref)}")
    for i, (a, b) in enumerate(zip(got, ref)):
        if i == 0:
            check_close(a, b, what, rtol=0 if exact else 1e-5, atol=0 if exact else 1e-5)
        else:  # GeM's grad_p: a float32 sum over the batch and channels, of terms of both signs
            check_close(a, b, f"{what} (grad_p)", rtol=1e-4, atol=1e-4)


def run_step(what: str, op: str, direction: str, x: np.ndarray, g: Optional[np.ndarray], layout: str,
             kw: Dict[str, Any], torch: Any, reps: Dict[str, int]
             ) -> Tuple[Dict[str, Optional[float]], Optional[str], Tuple[int, ...]]:
    """Check fastpool against NumPy, then time the contenders, interleaved.

    Returns the median ms per contender, a failure message or None, and the
    reference result's shape."""
    f_fp = pool_call(fastpool, op, direction, x, g, layout, kw)
    f_np = pool_call(npool, op, direction, x, g, layout, kw)
    samples: Dict[str, List[float]] = {"fastpool": [], "numpy": [], "torch": []}
    t0 = time.perf_counter()
    ref = f_np()  # the check run is NumPy's first timing sample
    samples["numpy"].append(time.perf_counter() - t0)
    ref_shape = (ref[0] if isinstance(ref, tuple) else ref).shape
    failure = None
    try:
        check_results(f_fp(), ref, what, exact=direction == "fwd" and exact_forward(op, kw))
    except CheckFailed as e:
        failure = str(e)
    except Exception as e:  # a crash: report it, keep going
        failure = f"{what}: {type(e).__name__}: {e}"
    del ref

    contenders: Dict[str, Tuple[Optional[Callable], Callable]] = {"numpy": (None, f_np)}
    if failure is None:
        contenders["fastpool"] = (None, f_fp)
    if torch is not None:
        contenders["torch"] = torch_call(torch, op, direction, x, g, layout, kw)
        time_once(*contenders["torch"])  # warm-up; fastpool's was the check
    # Interleave the contenders, so a change in memory bandwidth hits them all.
    for _ in range(max(reps.values())):
        for who, (prep, run) in contenders.items():
            if len(samples[who]) < reps[who]:
                samples[who].append(time_once(prep, run))
    ms = {w: statistics.median(v) * 1e3 if v else None for w, v in samples.items()}
    return ms, failure, ref_shape


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
    reps = {"fastpool": 5, "torch": 3, "numpy": 1} if args.quick else {"fastpool": 9, "torch": 5, "numpy": 2}

    def cell(v: Optional[float]) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    def ratio(v: Optional[float], fp: Optional[float]) -> str:
        return "n/a" if v is None or fp is None else f"{v / fp:.1f}x"

    rng = np.random.default_rng(20240601)
    n_steps = len(CASES) * len(LAYOUTS) * len(DIRECTIONS)
    rows: List[Tuple[str, ...]] = []
    failures: List[str] = []
    t_start = time.perf_counter()
    load = OtherLoad()
    for net, label, op, shape, kw in CASES:
        name = f"{net} {label}"
        for layout in LAYOUTS:
            xshape = (shape[0],) + shape[2:] + (shape[1],) if layout == "channels_last" else shape
            shape_s = "(" + ",".join(map(str, xshape)) + ")"
            (x, op_kw), g = operator_inputs(op, uniform(rng, xshape), layout, kw), None
            for direction in DIRECTIONS:
                what = f"{name} {shape_s} {layout} {direction}"
                print(f"[{len(rows) + 1}/{n_steps}] {what} ...", file=sys.stderr, flush=True)
                ms, failure, y_shape = run_step(what, op, direction, x, g, layout, op_kw, torch, reps)
                if failure:
                    failures.append(failure)
                if direction == "fwd":
                    g = uniform(rng, y_shape)
                fp = ms["fastpool"]
                rows.append((name, shape_s, layout, direction, cell(fp), cell(ms["numpy"]), cell(ms["torch"]),
                             ratio(ms["numpy"], fp), ratio(ms["torch"], fp), "FAIL" if failure else "ok"))

    headers = ("operator", "input shape", "layout", "dir", "fastpool ms", "NumPy ms", "torch ms",
               "vs NumPy", "vs torch", "check")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    left = {0, 1, 2, 3, 9}

    def fmt(r: Tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    numpy_runs = "1 run" if reps["numpy"] == 1 else f"median of {reps['numpy']} runs"
    print(f"float32, {n_threads} thread(s) for fastpool and torch; NumPy is single-threaded.")
    print(f"Medians of {reps['fastpool']} fastpool / {reps['torch']} torch runs after a warm-up; "
          f"NumPy: {numpy_runs} (the first is the checking run; no warm-up). Fresh outputs every call.")
    print("torch backward: autograd .backward() only (its forward runs untimed before each call).")
    print("torch global avgpool: adaptive_avg_pool2d(x, 1); GeM: clamp, pow, mean, pow with a learnable p\n"
          "(its backward, as fastpool's, also gives grad_p); SPP: adaptive_max_pool2d per level, concatenated;\n"
          "corner pool: flip, cummax, flip per direction, summed; center pool: amax over H + amax over W;\n"
          "softpool: avg_pool(x * exp(x)) / avg_pool(exp(x)); mixed pool: alpha * max_pool2d + (1 - alpha) *\n"
          "avg_pool2d with a learnable alpha (its backward, as fastpool's, also gives grad_alpha); stochastic pool:\n"
          "unfold, cumsum against torch.rand * sum, gather (inference: sum x^2 / sum x over the unfolded windows);\n"
          "maxpool dropout: max_pool2d(x * (torch.rand >= rate)) (inference: unfold, sort, weights p q^(n-i), sum);\n"
          "Hopfield pool: softmax(beta * einsum(Q, X)) then einsum with X, learnable queries (its backward, as\n"
          "fastpool's, also gives grad_queries).")
    print("VGG-16's 224x224 and 112x112 layers use batch 8, every other layer batch 32.")
    print("vs X = X's time / fastpool's time (> 1: fastpool is faster).\n")
    print(fmt(headers))
    print(fmt(tuple("-" * w for w in widths)))
    for r in rows:
        print(fmt(r))
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")
    other_load = load.report()
    if other_load:
        print(other_load)
    if failures:
        print(f"\nFAILED: {len(failures)} of {n_steps} checks against the NumPy baseline:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    print(f"all {n_steps} checks against the NumPy baseline passed")
    return 0

if __name__ == "__main__":
    sys.exit(main())
