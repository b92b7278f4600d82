"""Memory modes: what a training step keeps for backward, and its time, side by side in one run.

Variants, all ``msresnet18_imagenet``-shaped (7x7/2 stem, four strided stages, 1000 classes), the
same T, batch, image size and float32:

* ``direct/<mode>`` and ``gac/<mode>``: our model with direct coding or the GAC encoder, in memory
  mode ``default``, ``lean`` or ``checkpoint`` (:mod:`gac_coding.ops.memory`);
* ``sj``: SpikingJelly's ``ms_resnet18`` as shipped (its state reset before every forward; the same
  architecture, see ``benchmarks/peers.py``, which checks it computes our direct model's numbers);
* ``sj-memopt``: the same with SpikingJelly's memory optimiser
  (``spikingjelly.activation_based.memopt.optimize_memory``, checkpointing its blocks with 1-bit
  spike compression) at ``--sj-level`` (1 by default: levels 2-4 search with CUDA memory
  measurements and do not run on the CPU); left out, with the reason printed, where it fails.

Saved bytes: the tensors autograd keeps for the backward pass of one training forward, counted
once per storage with ``torch.autograd.graph.saved_tensors_hooks`` (parameters excluded;
:func:`gac_coding.ops.memory.saved_tensor_bytes`). Deterministic, unlike a peak of the resident
set. A train step is ``zero_grad``, forward, cross-entropy of the time-averaged logits, backward and
``SGD.step``; steps are interleaved (one of every variant per round) after a warm-up round; the
median step is given, and its ratio to our default mode with the same coding. ``--clock cpu``
(default) times this process's CPU time, which the other jobs of a shared machine disturb far less
than the wall clock.

Also printed: each variant's growth per extra time step (least squares over the T measured) and
the largest T at which it keeps no more than SpikingJelly keeps at T=4 (from the fit, then
measured at that T and the next), and the goals of the memory modes checked on these figures.

``--device cuda`` also gives each step's peak memory above what was allocated before it
(``torch.cuda.max_memory_allocated``; wall clock, synchronised) and runs SpikingJelly's optimiser at
level 4; ``--model cifar`` measures ``msresnet18_cifar`` (SpikingJelly has no counterpart: ours
alone). ``benchmarks/cuda_check.sh`` runs it on a GPU (batch 32 at 224x224, and the CIFAR model at
T=6, batch 128).

Run (CPU; the figures in benchmarks/RESULTS.md)::

    .venv/bin/python benchmarks/memory.py                                  # T=2,4,8,16, batch 4, 96x96
    .venv/bin/python benchmarks/memory.py --T 2 4 --size 64 --rounds 2     # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gac_coding.models import create_model  # noqa: E402
from gac_coding.ops.memory import saved_tensor_bytes  # noqa: E402

MODES = ("default", "lean", "checkpoint")
CODINGS = ("direct", "gac")
MIB = 2.0**20


#: per --model: our model, its classes, SpikingJelly's counterpart (None: it has none)
MODELS = {"imagenet": ("msresnet18_imagenet", 1000, True), "cifar": ("msresnet18_cifar", 10, False)}
MODEL = "msresnet18_imagenet"
CLASSES = 1000


def ours(coding: str, mode: str, T: int) -> Callable[[], nn.Module]:
    return lambda: create_model(MODEL, T=T, coding=coding, memory=mode, num_classes=CLASSES)


def spikingjelly(T: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from peers import SpikingJellyNet  # benchmarks/peers.py

        return SpikingJellyNet(T, 1000)

    return build


DEVICE = torch.device("cpu")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def spikingjelly_memopt(T: int, level: int, batch: int, size: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from peers import SpikingJellyNet
        from spikingjelly.activation_based import functional
        from spikingjelly.activation_based.memopt import optimize_memory
        from spikingjelly.activation_based.model.ms_resnet import _MSBlock

        model = SpikingJellyNet(T, 1000).to(DEVICE)
        example = torch.rand(batch, 3, size, size, device=DEVICE)

        def forward(m: nn.Module) -> object:
            functional.reset_net(m)
            return m(example)

        optimize_memory(model.net, _MSBlock, lambda m: forward(m), level=level)  # type: ignore[arg-type]
        return model

    return build


def variants(T: int, args: argparse.Namespace) -> dict[str, Callable[[], nn.Module]]:
    out: dict[str, Callable[[], nn.Module]] = {}
    for coding in CODINGS:
        for mode in MODES:
            out[f"{coding}/{mode}"] = ours(coding, mode, T)
    if not MODELS[args.model][2]:
        return out
    out["sj"] = spikingjelly(T)
    if args.sj_level > 0:
        out["sj-memopt"] = spikingjelly_memopt(T, args.sj_level, args.batch, args.size)
    return out


def logits(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).mean(0)


def saved_mib(build: Callable[[], nn.Module], x: Tensor, y: Tensor) -> float:
    torch.manual_seed(0)
    model = build().to(DEVICE).train()
    with saved_tensor_bytes() as saved:
        out = logits(model, x)
    F.cross_entropy(out, y).backward()  # frees what was kept
    return saved.bytes / MIB


class Stepper:
    """One variant's model, optimiser and train step."""

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        torch.manual_seed(0)
        self.model = build().to(DEVICE).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.peak = 0.0  # CUDA: the step's peak allocation above what was allocated before it, MiB

    def step(self, x: Tensor, y: Tensor, clock: Callable[[], float]) -> float:
        self.opt.zero_grad(set_to_none=True)
        sync()
        if DEVICE.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        start = clock()
        F.cross_entropy(logits(self.model, x), y).backward()
        self.opt.step()
        sync()
        took = clock() - start
        if DEVICE.type == "cuda":
            self.peak = max(self.peak, (torch.cuda.max_memory_allocated() - before) / MIB)
        return took


def fit_line(ts: list[int], values: list[float]) -> tuple[float, float]:
    """``(intercept, slope)`` of the least-squares line through ``(T, value)``."""
    mt, mv = statistics.fmean(ts), statistics.fmean(values)
    slope = sum((t - mt) * (v - mv) for t, v in zip(ts, values, strict=True)) / sum((t - mt) ** 2 for t in ts)
    return mv - slope * mt, slope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--model", choices=sorted(MODELS), default="imagenet")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CUDA: also each step's peak memory)")
    parser.add_argument("--sj-level", type=int, default=None, help="SpikingJelly memopt level (0: leave it "
                        "out; default 1 on the CPU, 4 on CUDA)")  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--no-time", action="store_true", help="saved bytes only")
    parser.add_argument("--no-fit", action="store_true", help="leave out the largest-T measurements")
    args = parser.parse_args(argv)
    global DEVICE, MODEL, CLASSES
    DEVICE = torch.device(args.device)
    MODEL, CLASSES, _ = MODELS[args.model]
    if args.sj_level is None:
        args.sj_level = 4 if DEVICE.type == "cuda" else 1
    if DEVICE.type == "cuda":
        args.clock = "wall"
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    from importlib.metadata import version

    print(
        f"{MODEL}-shaped models on {DEVICE}, batch {args.batch}, {args.size}x{args.size}, float32, "
        f"train mode; "
        f"torch {torch.__version__}, spikingjelly {version('spikingjelly')}, {args.threads} thread(s), "
        f"{args.clock} clock; load average {os.getloadavg()[0]:.1f}"
    )
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(DEVICE)
    y = torch.randint(0, CLASSES, (args.batch,), generator=g).to(DEVICE)
    saved: dict[str, dict[int, float]] = {}
    times: dict[str, dict[int, float]] = {}
    peaks: dict[str, dict[int, float]] = {}
    failed: dict[str, str] = {}
    for T in args.T:
        builds = variants(T, args)
        for name, build in list(builds.items()):
            if name in failed:
                del builds[name]
                continue
            try:
                saved.setdefault(name, {})[T] = saved_mib(build, x, y)
            except Exception as exc:  # SpikingJelly's optimiser where it does not run here
                failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                saved.pop(name, None)
                del builds[name]
        if args.no_time:
            continue
        steppers = {name: Stepper(build) for name, build in builds.items()}
        samples: dict[str, list[float]] = {name: [] for name in steppers}
        for r in range(args.rounds + 1):
            for name, s in steppers.items():
                dt = s.step(x, y, clock)
                if r > 0:
                    samples[name].append(dt)
        for name, ts in samples.items():
            times.setdefault(name, {})[T] = statistics.median(ts)
            if DEVICE.type == "cuda":
                peaks.setdefault(name, {})[T] = steppers[name].peak
        del steppers
        print(f"T={T} done; load average {os.getloadavg()[0]:.1f}", flush=True)

    names = list(saved)
    print("\nSaved for backward, MiB (one training forward):\n")
    print(
        "| variant | " + " | ".join(f"T={T}" for T in args.T) + " | per extra step | vs SpikingJelly at T=4 |"
    )
    print("|---|" + "---:|" * (len(args.T) + 2))
    sj4 = saved.get("sj", {}).get(4)
    for name in names:
        row = [f"{saved[name][T]:.1f}" for T in args.T]
        slope = fit_line(args.T, [saved[name][T] for T in args.T])[1] if len(args.T) > 1 else float("nan")
        ratio = f"{saved[name][4] / sj4:.2f}x" if sj4 and 4 in saved[name] else "n/a"
        print(f"| {name} | " + " | ".join(row) + f" | {slope:.1f} | {ratio} |")
    for name, why in failed.items():
        print(f"| {name} | did not run here: {why} |")

    if times:
        print(f"\nTrain step, median {args.clock} seconds (ratio to our default mode, same coding):\n")
        print("| variant | " + " | ".join(f"T={T}" for T in args.T) + " |")
        print("|---|" + "---:|" * len(args.T))
        for name in times:
            coding = name.split("/")[0]
            cells = []
            for T in args.T:
                ref = times.get(f"{coding}/default", {}).get(T) if coding in CODINGS else None
                ratio = f" ({times[name][T] / ref:.2f}x)" if ref else ""
                cells.append(f"{times[name][T]:.3f}{ratio}")
            print(f"| {name} | " + " | ".join(cells) + " |")

    if peaks:
        print("\nPeak memory of a train step above what was allocated before it (CUDA), MiB:\n")
        print("| variant | " + " | ".join(f"T={T}" for T in args.T) + " |")
        print("|---|" + "---:|" * len(args.T))
        for name in peaks:
            print(f"| {name} | " + " | ".join(f"{peaks[name][T]:.0f}" for T in args.T) + " |")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"saved_mib": saved, "step_s": times, "peak_mib": peaks, "failed": failed,
                       "settings": vars(args)}, f, indent=1)  # fmt: skip

    if sj4 and len(args.T) > 1 and not args.no_fit:
        print("\nLargest T keeping no more than SpikingJelly at T=4 (fit, then measured):\n")
        for name in names:
            if name.startswith("sj"):
                continue
            a, b = fit_line(args.T, [saved[name][T] for T in args.T])
            guess = max(1, int((sj4 - a) // b))
            coding, mode = name.split("/")
            fits = {t: saved_mib(ours(coding, mode, t), x, y) for t in (guess, guess + 1)}
            best = max((t for t, v in fits.items() if v <= sj4), default=None)
            measured = ", ".join(f"T={t}: {v:.1f} MiB" for t, v in fits.items())
            largest = best if best is not None else f"< {guess}"
            print(f"- {name}: T = {largest} ({measured}; SpikingJelly T=4: {sj4:.1f})")

    if sj4 and 4 in args.T:
        print("\nGoals at T=4 (saved bytes against SpikingJelly's; time against our default):\n")
        sj_slope = fit_line(args.T, [saved["sj"][T] for T in args.T])[1] if len(args.T) > 1 else None

        def check(label: str, value: float, bound: float) -> None:
            print(f"- {label}: {value:.2f}x (goal <= {bound}x): {'met' if value <= bound else 'NOT met'}")

        for coding, bound in (("direct", 0.35), ("gac", 0.40)):
            check(f"{coding}/lean saved bytes", saved[f"{coding}/lean"][4] / sj4, bound)
            check(f"{coding}/checkpoint saved bytes", saved[f"{coding}/checkpoint"][4] / sj4, 0.15)
            if times:
                ref = times[f"{coding}/default"][4]
                check(f"{coding}/lean step time", times[f"{coding}/lean"][4] / ref, 1.15)
                check(f"{coding}/checkpoint step time", times[f"{coding}/checkpoint"][4] / ref, 1.5)
            if sj_slope:
                slope = fit_line(args.T, [saved[f"{coding}/lean"][T] for T in args.T])[1]
                check(f"{coding}/lean growth per extra step", slope / sj_slope, 0.35)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
