#!/usr/bin/env python
"""fastpool against its peers, in one run, interleaved.

    python asv_bench/compare.py [--quick] [--json out.json] [--threads 1 2] [--repeats R]

For each case, layout, thread count and direction, every contender is called once
per round (after one warm-up call each), so a change in the machine's memory
bandwidth, which on our 2-core machines moves in phases of seconds, hits all of
them alike; the medians are reported. Contenders:

* fastpool, with a fresh output every call and with ``out=`` reusing one buffer;
* PyTorch (``torch.nn.functional``; forward under ``no_grad``; backward through
  autograd, timing ``.backward()`` only, its forward runs untimed before each call;
  ``torch.set_num_threads``). Where torch has no single op it is composed
  (:func:`fastpool._benchutil.torch_forward`): global pooling is adaptive pooling to
  1, GeM is clamp, pow, mean, pow with a learnable p (its backward computes grad_p
  too, as fastpool's), SPP is adaptive_max_pool2d per level, concatenated, corner
  pooling is flip + cummax + flip per direction and center pooling two ``amax``,
  SoftPool ``avg_pool(x e^x) / avg_pool(e^x)`` (the SoftPool authors' PyTorch form);
* ONNX Runtime (forward only; needs ``onnx`` to build the model; channels_last is
  NCHW pooling between two Transpose nodes, which ORT's layout optimizer may remove)
  and JAX (``lax.reduce_window`` under ``jit``, global pooling as a mean / max over
  the spatial axes; backward by ``jax.vjp``; XLA picks its own thread count), each
  if importable, for windowed and global max / average pooling;
* the plain-NumPy baseline (single-threaded: timed only in the 1-thread rows, its
  time reused for the ratios of the other rows);
* a copy roofline: ``np.copyto`` of an array the size of the input (at 2 threads
  the two halves are copied by two Python threads; NumPy releases the GIL).

GB/s count the bytes an operator must read and write (forward: x and y; backward:
grad_output and grad_x, and x for the backwards that read it: max, GeM, SPP);
"roof" is fastpool's GB/s over the copy's (read + write) GB/s measured in the same
rounds; "x" columns are the peer's time over fastpool's (> 1: fastpool faster).
GeM and SPP also get a "f+b" row: forward + backward, the sum of the two medians
(torch's: its ``no_grad`` forward plus its ``.backward()``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

import fastpool
from fastpool import _numpy_pool as npool
from fastpool._benchutil import (NO_INPUT_BACKWARD, SHAPE_ONLY_BACKWARD, OtherLoad, base_name, operator_inputs,
                                 pool_call, torch_call, uniform)

# (operator, channels_first shape, keyword arguments)
CASES: List[Tuple[str, Tuple[int, ...], Dict[str, Any]]] = [
    ("max_pool2d", (32, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool2d", (16, 128, 112, 112), dict(kernel_size=2, stride=2, padding=0)),
    ("max_pool2d", (32, 96, 55, 55), dict(kernel_size=3, stride=2, padding=0)),
    ("max_pool1d", (64, 256, 4096), dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool3d", (8, 32, 16, 56, 56), dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool2d", (32, 64, 56, 56), dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ("avg_pool2d", (32, 256, 28, 28), dict(kernel_size=2, stride=2, padding=0)),
    # Bin reductions (keyword arguments: fastpool's).
    ("global_avg_pool", (64, 2048, 7, 7), {}),
    ("global_max_pool", (64, 2048, 7, 7), {}),
    ("adaptive_avg_pool2d", (32, 256, 13, 13), dict(output_size=(6, 6))),
    ("gem_pool", (64, 2048, 7, 7), dict(p=3.0)),
    ("gem_pool", (32, 256, 13, 13), dict(p=3.0)),
    ("spatial_pyramid_pool", (32, 256, 13, 13), dict(levels=(1, 2, 4))),
    ("spatial_pyramid_pool", (64, 2048, 7, 7), dict(levels=(1, 2, 4))),
    # CornerNet's top-left corner pool and CenterNet's center pool on 128x128 maps.
    ("corner_pool", (4, 128, 128, 128), dict(direction="top_left")),
    ("center_pool", (4, 128, 128, 128), {}),
    # SoftPool in place of a ResNet stem's max pooling.
    ("soft_pool2d", (32, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1)),
    # Mixed max-average pooling (alpha learned: forward + backward row) in the same place.
    ("mixed_pool2d", (32, 64, 112, 112), dict(alpha=0.5, kernel_size=3, stride=2, padding=1)),
    # Stochastic pooling (Zeiler & Fergus), training: a draw per window (the backward draws
    # again from the seed), in the same place.
    ("stochastic_pool2d", (32, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1, seed=1)),
    # Max-pooling dropout (Wu & Gu), rate 0.3, there too: training (the backward makes the
    # mask again from the seed) and the inference form.
    ("max_pool_dropout2d", (32, 64, 112, 112), dict(rate=0.3, kernel_size=3, stride=2, padding=1, seed=1)),
    ("max_pool_dropout2d", (32, 64, 112, 112), dict(rate=0.3, kernel_size=3, stride=2, padding=1, training=False)),
    # Hopfield pooling (the HopfieldPooling layer) of ResNet-50's last map, 4 learnable
    # queries, beta 1 / sqrt(C) (forward + backward row: the queries' gradient included).
    ("hopfield_pool", (64, 2048, 7, 7), dict(queries=4)),
    ("hopfield_pool", (8, 256, 28, 28), dict(queries=8)),
    # Graham's fractional max pooling, 2x2 windows, output ratio 1 / sqrt(2).
    ("fractional_max_pool2d", (32, 64, 112, 112), dict(kernel_size=2, output_size=(79, 79))),
    # SegNet's decoder: max unpooling of a 2x2/2 max pool's output by its indices (the
    # shape is the pooling's input; the unpooled output has it too).
    ("max_unpool2d", (8, 64, 224, 224), dict(kernel_size=2, stride=2, padding=0)),
]
# ResNet-50 stem, 1D max pool, 3x3/1 average pool, GeM and SPP on AlexNet's last map
QUICK_CASES = (0, 3, 5, 11, 12)
LAYOUTS = ("channels_first", "channels_last")
PEER_OPS = ("max_pool", "avg_pool", "global_max_pool", "global_avg_pool")  # what ORT / JAX are timed on
FWD_BWD_OPS = ("gem_pool", "spatial_pyramid_pool", "mixed_pool", "hopfield_pool")  # with a forward + backward row


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Contender:
    """A timed callable; ``prepare`` (untimed) runs before each call and feeds it."""

    def __init__(self, name: str, run: Callable, prepare: Optional[Callable] = None,
                 reps: Optional[int] = None, warmup: bool = True,
                 expect: Optional[np.ndarray] = None) -> None:
        self.name, self.run, self.prepare = name, run, prepare
        self.reps, self.warmup, self.expect = reps, warmup, expect
        self.samples: List[float] = []

    def once(self) -> float:
        state = self.prepare() if self.prepare is not None else None
        t0 = time.perf_counter()
        self.run(state) if self.prepare is not None else self.run()
        return time.perf_counter() - t0

    def check(self) -> None:
        """Compare a peer's result with fastpool's once (the warm-up call)."""
        got = self.run()
        got = np.asarray(got[0] if isinstance(got, list) else got)
        if not np.allclose(got, self.expect, rtol=1e-5, atol=1e-5):
            raise ValueError(f"result differs from fastpool's (max abs diff "
                             f"{np.max(np.abs(got - self.expect)):.3g})")

    @property
    def ms(self) -> Optional[float]:
        return statistics.median(self.samples) * 1e3 if self.samples else None


def interleave(contenders: List[Contender], repeats: int) -> None:
    alive = []
    for c in contenders:
        try:
            if c.expect is not None:
                t0 = time.perf_counter()
                c.check()
                if time.perf_counter() - t0 > 0.4:
                    c.reps = 1  # a slow peer: one timed run keeps --quick under a minute
            elif c.warmup and c.once() > 0.4:
                c.reps = 1
            alive.append(c)
        except Exception as e:  # an optional peer failing must not stop the run
            log(f"  {c.name}: {type(e).__name__}: {e} (skipped)")
    for _ in range(repeats):
        for c in alive:
            if len(c.samples) < (c.reps or repeats):
                c.samples.append(c.once())


# --- the peers -------------------------------------------------------------------

def cl_perm(rank: int) -> Tuple[int, ...]:
    """Axes of a channels_last array seen as channels_first (N, C, *spatial)."""
    return (0, rank + 1) + tuple(range(1, rank + 1))


def ort_session(op: str, x: np.ndarray, kw: Dict[str, Any], layout: str, threads: int) -> Callable:
    import onnx  # noqa: F401  (onnxruntime needs a serialized model)
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rank = x.ndim - 2
    nodes, src, dst = [], "X", "Y"
    if layout == "channels_last":
        nodes.append(helper.make_node("Transpose", ["X"], ["Xt"], perm=list(cl_perm(rank))))
        src = "Xt"
    if op.startswith("global_"):  # (N, C, 1, ..) flattened to fastpool's (N, C)
        nodes.append(helper.make_node("GlobalMaxPool" if "max" in op else "GlobalAveragePool", [src], ["G"]))
        nodes.append(helper.make_node("Flatten", ["G"], ["Y"], axis=1))
    else:
        k, s, p = (kw["kernel_size"],) * rank, (kw["stride"],) * rank, (kw["padding"],) * rank
        attrs: Dict[str, Any] = dict(kernel_shape=list(k), strides=list(s), pads=list(p) * 2)
        if op.startswith("avg"):
            attrs["count_include_pad"] = int(kw.get("count_include_pad", True))
        if layout == "channels_last":
            dst = "Yt"
        nodes.append(helper.make_node("MaxPool" if op.startswith("max") else "AveragePool", [src], [dst], **attrs))
        if layout == "channels_last":
            nodes.append(helper.make_node("Transpose", ["Yt"], ["Y"], perm=[0] + list(range(2, rank + 2)) + [1]))
    graph = helper.make_graph(
        nodes, "pool", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no stolen cycles
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"X": x})


def jax_functions(op: str, x: np.ndarray, g: np.ndarray, kw: Dict[str, Any], layout: str
                  ) -> Tuple[Callable, Callable]:
    import jax
    import jax.numpy as jnp
    from jax import lax

    rank = x.ndim - 2
    spatial = tuple(range(1, rank + 1)) if layout == "channels_last" else tuple(range(2, rank + 2))
    if op.startswith("global_"):
        k = s = [1] * rank
    else:
        k, s = [kw["kernel_size"]] * rank, [kw["stride"]] * rank
    p = [(kw.get("padding", 0),) * 2] * rank
    if layout == "channels_last":
        win, st, pad = (1, *k, 1), (1, *s, 1), [(0, 0), *p, (0, 0)]
    else:
        win, st, pad = (1, 1, *k), (1, 1, *s), [(0, 0), (0, 0), *p]

    def pool(a: Any) -> Any:
        if op.startswith("global_"):
            return (jnp.max if "max" in op else jnp.mean)(a, axis=spatial)
        if op.startswith("max"):
            return lax.reduce_window(a, -jnp.inf, lax.max, win, st, pad)
        total = lax.reduce_window(a, 0.0, lax.add, win, st, pad)
        if kw.get("count_include_pad", True):
            return total / float(np.prod(k))
        ones = jnp.ones((1,) * a.ndim, a.dtype)
        ones = jnp.broadcast_to(ones, tuple(1 if w == 1 else n for w, n in zip(win, a.shape)))
        return total / lax.reduce_window(ones, 0.0, lax.add, win, st, pad)

    fwd = jax.jit(pool)
    bwd = jax.jit(lambda a, b: jax.vjp(pool, a)[1](b)[0])
    xj, gj = jax.device_put(x), jax.device_put(g)
    return (lambda: fwd(xj).block_until_ready()), (lambda: bwd(xj, gj).block_until_ready())


# --- the roofline ------------------------------------------------------------------

class Copier:
    """np.copyto of an input-sized array on 1 or 2 threads (halves, GIL released)."""

    def __init__(self, src: np.ndarray) -> None:
        self.src = src.reshape(-1)
        self.dst = np.empty_like(self.src)
        self.dst.fill(0)  # fault the pages in outside the timing
        half = self.src.size // 2
        self.halves = [(self.dst[:half], self.src[:half]), (self.dst[half:], self.src[half:])]
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)

    def run(self, threads: int) -> None:
        if threads == 1:
            np.copyto(self.dst, self.src)
        else:
            for f in [self.pool.submit(np.copyto, d, s) for d, s in self.halves]:
                f.result()

    def close(self) -> None:
        self.pool.shutdown()


# --- main ----------------------------------------------------------------------------

def case_label(op: str, shape: Tuple[int, ...], kw: Dict[str, Any]) -> str:
    label = f"{op} ({','.join(map(str, shape))})"
    if "kernel_size" not in kw:  # e.g. "p=3", "levels=1,2,4"
        def fmt(v: Any) -> str:
            return ",".join(map(str, v)) if isinstance(v, tuple) else v if isinstance(v, str) else f"{v:g}"
        return " ".join([label] + [f"{k}={fmt(v)}" for k, v in kw.items()])
    extra = "" if kw.get("count_include_pad", True) else " cip=F"
    if "output_size" in kw:  # fractional max pooling
        return f"{label} k{kw['kernel_size']} out={','.join(map(str, kw['output_size']))}"
    return (f"{label} k{kw['kernel_size']} s{kw['stride']}"
            f"{' p%d' % kw['padding'] if kw['padding'] else ''}{extra}")


def fwd_bwd_record(fwd: Dict[str, Any], bwd: Dict[str, Any]) -> Dict[str, Any]:
    """Forward + backward: the sum of the two directions' medians, per contender."""
    ms = {k: fwd["ms"][k] + v for k, v in bwd["ms"].items() if v and fwd["ms"].get(k)}
    nbytes = fwd["bytes"] + bwd["bytes"]
    gbs = nbytes / ms["fastpool"] / 1e6 if ms.get("fastpool") else None
    return dict(fwd, direction="f+b", bytes=nbytes, copy_gbps=None, fastpool_gbps=gbs, roofline_fraction=None,
                ms=ms, samples_ms={})


def measure_layout(op: str, shape: Tuple[int, ...], kw: Dict[str, Any], layout: str,
                   thread_counts: List[int], peers: Dict[str, Any], repeats: int, with_numpy: bool,
                   rng: np.random.Generator, progress: Callable[[str], None]) -> List[Dict[str, Any]]:
    """Every thread count and direction of one case in one layout: a record each."""
    rank, name, label = len(shape) - 2, base_name(op), case_label(op, shape, kw)
    fp_kw = kw  # fastpool's (and NumPy's, torch's) keyword arguments: per-axis tuples
    if "kernel_size" in kw:
        fp_kw = dict(kw, **{k: (kw[k],) * rank for k in ("kernel_size", "stride", "padding") if k in kw})
    xshape = (shape[0],) + shape[2:] + (shape[1],) if layout == "channels_last" else shape
    x, fp_kw = operator_inputs(op, uniform(rng, xshape), layout, fp_kw)
    y = pool_call(fastpool, op, "fwd", x, None, layout, fp_kw)()
    g = uniform(rng, y.shape)
    outs = {"fwd": np.ones_like(y), "bwd": np.ones_like(x)}  # reused, pages already touched
    reads_x = name not in SHAPE_ONLY_BACKWARD + NO_INPUT_BACKWARD
    extra = fp_kw["indices"].nbytes if "indices" in fp_kw else 0  # max unpooling reads int64 indices
    nbytes = {"fwd": x.nbytes + y.nbytes + extra, "bwd": g.nbytes + x.nbytes + (x.nbytes if reads_x else 0) + extra}
    copier = Copier(x)
    peer_op = name in PEER_OPS
    jax_fns: Optional[Tuple[Callable, Callable]] = None
    if "jax" in peers and peer_op:
        try:
            jax_fns = jax_functions(op, x, g, kw, layout)
        except Exception as e:
            log(f"  jax: {type(e).__name__}: {e} (skipped)")
    numpy_ms: Dict[str, Optional[float]] = {}
    records = []
    for threads in thread_counts:
        fastpool.set_num_threads(threads)
        if "torch" in peers:
            peers["torch"].set_num_threads(threads)
        ort_run = None
        if "ort" in peers and peer_op:
            try:
                ort_run = ort_session(op, x, kw, layout, threads)
            except Exception as e:
                log(f"  onnxruntime: {type(e).__name__}: {e} (skipped)")
        for i, direction in enumerate(("fwd", "bwd")):
            progress(f"{label} {layout} threads={threads} {direction}")
            fp = Contender("fastpool", pool_call(fastpool, op, direction, x, g, layout, fp_kw))
            contenders = [fp, Contender("fastpool out=", pool_call(fastpool, op, direction, x, g, layout, fp_kw,
                                                                   out=outs[direction])),
                          Contender("copy", functools.partial(copier.run, threads))]
            if "torch" in peers:
                prepare, run = torch_call(peers["torch"], op, direction, x, g, layout, fp_kw)
                contenders.append(Contender("torch", run, prepare))
            # The peers not checked elsewhere compare their result with fastpool's at warm-up.
            expect = fp.run() if ort_run is not None or jax_fns is not None else None
            if ort_run is not None and direction == "fwd":
                contenders.append(Contender("ort", ort_run, expect=expect))
            if jax_fns is not None:
                contenders.append(Contender("jax", jax_fns[i], expect=expect))
            if with_numpy and direction not in numpy_ms:  # single-threaded: time it once
                contenders.append(Contender("numpy", pool_call(npool, op, direction, x, g, layout, fp_kw),
                                            reps=1, warmup=False))
            interleave(contenders, repeats)

            ms = {c.name: c.ms for c in contenders}
            if "numpy" in ms:
                numpy_ms[direction] = ms["numpy"]
            ms["numpy"] = numpy_ms.get(direction)
            copy_gbs = 2 * x.nbytes / ms["copy"] / 1e6 if ms.get("copy") else None
            gbs = nbytes[direction] / ms["fastpool"] / 1e6 if ms.get("fastpool") else None
            records.append(dict(
                case=label, op=op, shape=list(xshape), kwargs=kw, layout=layout, threads=threads,
                direction=direction, bytes=nbytes[direction], copy_gbps=copy_gbs, fastpool_gbps=gbs,
                roofline_fraction=gbs / copy_gbs if gbs and copy_gbs else None, ms=ms,
                samples_ms={c.name: [t * 1e3 for t in c.samples] for c in contenders}))
        if name in FWD_BWD_OPS:
            records.append(fwd_bwd_record(records[-2], records[-1]))
    copier.close()
    return records


def table(records: List[Dict[str, Any]], peer_cols: List[str]) -> str:
    def f2(v: Optional[float], fmt: str = "{:.2f}") -> str:
        return "-" if v is None else fmt.format(v)

    headers = ["case", "layout", "thr", "dir", "fastpool ms", "GB/s", "roof", "out= ms", "copy GB/s"]
    headers += [f"{p} ms" for p in peer_cols] + [f"{p} x" for p in peer_cols]
    rows = []
    for r in records:
        ms, fp = r["ms"], r["ms"].get("fastpool")
        row = [r["case"], r["layout"], str(r["threads"]), r["direction"], f2(fp), f2(r["fastpool_gbps"], "{:.1f}"),
               f2(r["roofline_fraction"]), f2(ms.get("fastpool out=")), f2(r["copy_gbps"], "{:.1f}")]
        row += [f2(ms.get(p)) for p in peer_cols]
        row += [f2(ms[p] / fp if ms.get(p) and fp else None, "{:.1f}") for p in peer_cols]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 cases, 5 rounds: under a minute")
    ap.add_argument("--json", metavar="PATH", help="write every measurement to this JSON file")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5 quick, 9 full)")
    ap.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy baseline")
    ap.add_argument("--only", metavar="NAMES", help="comma-separated operators to time (e.g. gem_pool,global_avg_pool)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 9)
    cases = [CASES[i] for i in QUICK_CASES] if args.quick else CASES
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c[0] in wanted]

    fastpool.show_config()
    peers: Dict[str, Any] = {}
    try:
        import torch
        peers["torch"] = torch
        versions = f"torch {torch.__version__}"
    except ImportError:
        versions = "torch: not importable"
    try:
        import onnx  # noqa: F401
        import onnxruntime
        peers["ort"] = onnxruntime
        versions += f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        versions += ", onnxruntime: not importable (or onnx missing)"
    try:
        import jax
        peers["jax"] = jax
        versions += f", jax {jax.__version__} (XLA's own thread count)"
    except ImportError:
        versions += ", jax: not importable"
    print(f"numpy {np.__version__}, {versions}; python {platform.python_version()}")
    print(f"median of {repeats} interleaved rounds after a warm-up call each (1 run for a contender "
          f"whose warm-up took > 0.4 s); NumPy: 1 run, 1 thread\n")

    load = OtherLoad()
    rng = np.random.default_rng(1234)
    n_groups = len(cases) * len(LAYOUTS) * len(args.threads) * 2
    done = [0]

    def progress(what: str) -> None:
        done[0] += 1
        log(f"[{done[0]}/{n_groups}] {what} ...")

    t_start = time.perf_counter()
    records: List[Dict[str, Any]] = []
    for op, shape, kw in cases:
        for layout in LAYOUTS:
            records += measure_layout(op, shape, kw, layout, args.threads, peers, repeats,
                                      not args.no_numpy, rng, progress)

    peer_cols = [p for p in ("torch", "ort", "jax") if p in peers] + ([] if args.no_numpy else ["numpy"])
    print(table(records, peer_cols))
    print(f"\n'p x' = p's time / fastpool's time (> 1: fastpool faster); roof = fastpool GB/s / copy GB/s; "
          f"torch bwd times .backward() only; NumPy ratios of the 2-thread rows use its 1-thread time;\n"
          f"f+b = fwd + bwd (sum of medians); torch GeM / SPP / corner / center / soft / mixed / stochastic pooling / max-pooling dropout / Hopfield pooling are composed of torch ops.\n"
          f"total {time.perf_counter() - t_start:.1f} s")
    other_load = load.report()
    if other_load:
        print(other_load)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(fastpool=fastpool.__version__, numpy=np.__version__, versions=versions,
                           repeats=repeats, quick=args.quick, other_load=other_load,
                           records=records), fh, indent=1)
        print(f"wrote {args.json}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
