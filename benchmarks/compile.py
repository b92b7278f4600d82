"""Eager vs ``torch.compile`` (inductor) on the CPU: training step and inference, side by side.

Two workloads, each run eager and compiled (``torch.compile(module)``, default inductor backend,
``fullgraph=True`` so that a graph break fails loudly instead of slowing the compiled side):

* ``msresnet18_cifar``: ``create_model("msresnet18_cifar", T=6)``, batch 8, 32x32 static images;
  training step = forward + backward of the cross-entropy on the time-averaged logits (training
  mode: BatchNorm batch statistics); inference = ``model.eval()`` under ``torch.inference_mode``.
* ``encoder``: ``GACEncoder(3, 64, T=6)`` (the model's stem), same images; training step =
  forward + backward of the mean of the code times a fixed random tensor; inference as above.

On the CPU the model's inference is also timed compiled with inductor's ``freezing`` option
(``torch._inductor.config.freezing = True``: the weights become constants, BatchNorm is folded
into the convolutions and oneDNN's weights are prepacked; for inference with fixed weights).

For each pair on the CPU it also profiles one eager and one compiled call (``torch.profiler``) and
prints the share of the convolutions: inductor hands them to the same oneDNN kernels, so
``1 / share`` of the eager call bounds what compiling can gain (Amdahl's law).

For each pair the script prints the compile time (the first compiled call minus one eager call of
the same kind; inductor's on-disk caches are switched off unless ``--warm-cache``, so this is what a
fresh process pays), the compiled-vs-eager difference of outputs and gradients (float32; a spike
that flips at its threshold shows up as a large difference in a few elements, so the count of
elements beyond 1e-4 is printed too), then times ``--repeats`` rounds with one eager and one
compiled call per round, in alternating order. Ratios are eager / compiled three ways: best calls,
median calls, and the median of the per-round ratios.

``--check``: instead of timing, compile every registered model (``list_models()``) with inductor
and ``fullgraph=True`` in float64 and compare one training step and one inference call with eager
(small inputs); exit status 1 if any differs by more than 1e-9.

Run: ``.venv/bin/python benchmarks/compile.py`` (``--repeats N``, ``--threads N``, ``--batch B``,
``--only model`` or ``--only encoder``, ``--warm-cache``; ``--model``, ``--T``, ``--size`` change
the workload, ``--device cuda`` times on a GPU with ``torch.cuda.synchronize``, ``--backend
aot_eager`` runs the script quickly without inductor, ``--json PATH`` saves the rows; the CUDA
variant runs from ``benchmarks/cuda_check.sh``). One thread by default: on a CPU shared
with other jobs, OpenMP threads waiting on each other make multi-threaded timings swing. The load
average is printed before and after: figures taken under load are not comparable.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gac_coding import GACEncoder
from gac_coding.models import create_model, list_models

# the workload; main() overrides them from the command line (--model, --T, --size, --device)
MODEL, T, CLASSES, SIZE, STEM = "msresnet18_cifar", 6, 10, 32, 64
DEVICE = torch.device("cpu")
Step = Callable[[nn.Module], list[Tensor]]


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def build(which: str) -> nn.Module:
    torch.manual_seed(0)
    if which == "model":
        return create_model(MODEL, num_classes=CLASSES, T=T).to(DEVICE)
    return GACEncoder(3, STEM, T).to(DEVICE)


def steps(which: str, batch: int) -> tuple[Step, Step]:
    """(training step, inference) for one workload; each returns the tensors to compare."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, SIZE, SIZE, generator=g).to(DEVICE)
    y = torch.randint(0, CLASSES, (batch,), generator=g).to(DEVICE)
    weight = torch.randn(T, batch, STEM, SIZE, SIZE, generator=g).to(DEVICE)

    def train(m: nn.Module) -> list[Tensor]:
        m.train()
        m.zero_grad(set_to_none=True)
        out = m(x)
        loss = F.cross_entropy(out.mean(0), y) if which == "model" else (out * weight).mean()
        loss.backward()
        return [out.detach()] + [p.grad for p in m.parameters() if p.grad is not None]

    def infer(m: nn.Module) -> list[Tensor]:
        m.eval()
        with torch.inference_mode():
            return [m(x)]

    return train, infer


def compare(a: list[Tensor], b: list[Tensor]) -> tuple[float, int, int]:
    """(max relative difference, elements beyond 1e-4 absolute, elements) over paired tensors."""
    worst, beyond, total = 0.0, 0, 0
    for ta, tb in zip(a, b, strict=True):
        diff = (ta.float() - tb.float()).abs()
        scale = float(tb.abs().max()) or 1.0
        worst = max(worst, float(diff.max()) / scale)
        beyond += int((diff > 1e-4).sum())
        total += diff.numel()
    return worst, beyond, total


def timed(fn: Step, m: nn.Module) -> tuple[float, list[Tensor]]:
    sync()
    start = time.perf_counter()
    out = fn(m)
    sync()
    return time.perf_counter() - start, out


def run_pair(name: str, fn: Step, eager: nn.Module, compiled: nn.Module, repeats: int) -> dict:
    eager_first, ref = timed(fn, eager)
    first, out = timed(fn, compiled)
    eager_second, _ = timed(fn, eager)
    worst, beyond, total = compare(out, ref)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for r in range(repeats):
        order = ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")
        for kind in order:
            times[kind].append(timed(fn, eager if kind == "eager" else compiled)[0])
    paired = [e / c for e, c in zip(times["eager"], times["compiled"], strict=True)]
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "name": name,
        "compile_s": first - min(eager_first, eager_second),
        "diff": (worst, beyond, total),
        "best": best,
        "median": med,
        "ratios": (
            best["eager"] / best["compiled"],
            med["eager"] / med["compiled"],
            statistics.median(paired),
        ),
    }


def convolution_share(fn: Step, m: nn.Module) -> tuple[float, float]:
    """(seconds in convolution kernels, seconds in all) of one call of ``fn(m)``, by
    ``torch.profiler`` self CPU times: the operators whose name contains "convolution"
    (forward and backward, eager or called from inductor's generated code) against the whole call.
    Profiling slows small operators a little, so the share is an upper bound on the rest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn(m)
        wall = time.perf_counter() - start
    conv = sum(e.self_cpu_time_total for e in prof.key_averages() if "convolution" in e.key) / 1e6
    return conv, wall


def _float64_step(m: nn.Module, x: Tensor) -> list[Tensor]:
    xg = x.clone().requires_grad_(True)
    out = m(xg)
    out.mean(0).logsumexp(1).sum().backward()
    return [out.detach(), xg.grad] + [p.grad for p in m.parameters()]


def check_models(names: list[str]) -> bool:
    """Every registered model, inductor with ``fullgraph=True`` on its first call, float64: one
    training step (logits, input and parameter gradients, BatchNorm buffers) and one inference
    call against an eager copy with the same weights. Small inputs (T=2, batch 2)."""
    ok = True
    for name in names:
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, T=2).double()
        twin = copy.deepcopy(model)
        size = 32 if "imagenet" in name else 16
        channels = model.encoder.in_channels
        # the event-frame models (2 channels) take [T, B, 2, H, W] sequences
        shape = (2, 2, 2, size, size) if channels == 2 else (2, channels, size, size)
        x = torch.rand(*shape, dtype=torch.float64) * 3
        compiled = torch.compile(model, fullgraph=True)
        start = time.perf_counter()
        got = _float64_step(compiled, x)
        took = time.perf_counter() - start
        expected = _float64_step(twin, x)
        train = max(float((a - b).abs().max()) for a, b in zip(got, expected, strict=True))
        bufs = max(
            (
                float((a.double() - b.double()).abs().max())
                for a, b in zip(model.buffers(), twin.buffers(), strict=True)
            ),
            default=0.0,
        )
        model.eval(), twin.eval()
        start = time.perf_counter()
        with torch.no_grad():
            infer = float((compiled(x) - twin(x)).abs().max())
        took_eval = time.perf_counter() - start
        good = train <= 1e-9 and bufs <= 1e-12 and infer <= 1e-9
        ok &= good
        print(
            f"{name:22s} {'ok  ' if good else 'FAIL'} training step: first call {took:6.1f} s, max "
            f"|diff| {train:.1e} (buffers {bufs:.1e}); inference: first call {took_eval:5.1f} s, "
            f"max |diff| {infer:.1e}",
            flush=True,
        )
    return ok


def main() -> None:
    global MODEL, T, SIZE, DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--only", choices=("model", "encoder"), default=None)
    parser.add_argument(
        "--warm-cache", action="store_true", help="keep inductor's on-disk caches (default: off)"
    )
    parser.add_argument("--model", default=MODEL, help="a registered model (default %(default)s)")
    parser.add_argument("--T", type=int, default=T)
    parser.add_argument("--size", type=int, default=SIZE, help="image size (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timed with synchronize)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument(
        "--backend",
        default="inductor",
        help="torch.compile backend (default %(default)s; aot_eager: a quick run of the script)",
    )
    parser.add_argument(
        "--check",
        nargs="?",
        const="all",
        default=None,
        metavar="NAMES",
        help="instead of timing: registered models (comma-separated, default all) compiled in "
        "float64 against eager",
    )
    args = parser.parse_args()
    MODEL, T, SIZE, DEVICE = args.model, args.T, args.size, torch.device(args.device)
    torch.set_num_threads(args.threads)
    if not args.warm_cache:
        torch._inductor.config.fx_graph_cache = False
        torch._functorch.config.enable_autograd_cache = False
    if args.check:
        print(f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
        names = list_models() if args.check == "all" else args.check.split(",")
        raise SystemExit(0 if check_models(names) else 1)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, {DEVICE}, {torch.get_num_threads()} thread(s), {MODEL}, "
        f"batch {args.batch}, T={T}, {SIZE}x{SIZE}, {os.cpu_count()} CPUs, load average before: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    rows = []
    for which in ("model", "encoder"):
        if args.only not in (None, which):
            continue
        train, infer = steps(which, args.batch)
        eager = build(which)
        # the compiled module wraps the same parameters and buffers as the eager one
        compiled = torch.compile(eager, fullgraph=True, backend=args.backend)
        label = MODEL if which == "model" else "encoder"
        pairs = [("train step", train, False), ("inference", infer, False)]
        if which == "model" and DEVICE.type == "cpu" and args.backend == "inductor":
            pairs.append(("inference, freezing", infer, True))
        for kind, fn, freezing in pairs:
            if freezing:
                # weights become constants of the graph (BatchNorm folded into the convolutions,
                # oneDNN weights prepacked): for inference with fixed weights only
                torch._dynamo.reset()
                compiled = torch.compile(eager, fullgraph=True, backend=args.backend)
            with torch._inductor.config.patch(freezing=freezing):
                row = run_pair(f"{label} {kind}", fn, eager, compiled, args.repeats)
            if DEVICE.type == "cpu":
                row["convolutions"] = {
                    side: convolution_share(fn, module)
                    for side, module in (("eager", eager), ("compiled", compiled))
                }
            rows.append(row)
            worst, beyond, total = row["diff"]
            print(
                f"{row['name']:30s} compile {row['compile_s']:6.1f} s | eager best "
                f"{row['best']['eager']:.3f} "
                f"(median {row['median']['eager']:.3f}) s, compiled best {row['best']['compiled']:.3f} "
                f"(median {row['median']['compiled']:.3f}) s | eager/compiled "
                f"{row['ratios'][0]:.2f}x / {row['ratios'][1]:.2f}x / {row['ratios'][2]:.2f}x "
                f"(best / medians / paired) | max rel diff {worst:.1e}, {beyond}/{total} "
                f"elements beyond 1e-4",
                flush=True,
            )
            for side, (conv, wall) in row.get("convolutions", {}).items():
                bound = (
                    f"; a compiled call running the same convolutions is at most "
                    f"{wall / conv:.2f}x faster (Amdahl)"
                    if side == "eager" and conv > 0
                    else ""
                )
                print(
                    f"{'':30s} {side} call profiled: convolutions {conv:.3f} s of {wall:.3f} s "
                    f"({100 * conv / wall:.0f}%){bound}",
                    flush=True,
                )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print()
    print(
        "| workload | compile s | eager s best (median) | compiled s best (median) | "
        "eager / compiled: best / medians / paired |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        r = row["ratios"]
        print(
            f"| {row['name']} | {row['compile_s']:.1f} | {row['best']['eager']:.3f} "
            f"({row['median']['eager']:.3f}) | {row['best']['compiled']:.3f} "
            f"({row['median']['compiled']:.3f}) | {r[0]:.2f}x / {r[1]:.2f}x / {r[2]:.2f}x |"
        )


if __name__ == "__main__":
    main()
