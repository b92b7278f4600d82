"""MS-ResNet-18 against SpikingJelly's: training and inference speed and peak memory, side by side in one run.

Variants (same T, batch, input size and precision; one SGD optimiser each):

* ``direct/<backend>``: our ``msresnet18_imagenet`` with ``coding="direct"`` (direct coding), with each LIF
  backend given by ``--backends`` (``gac_coding.neuron.set_backend``; on CPU ``eager`` and ``cpp``);
* ``gac/<backend>``: the same with the GAC encoder;
* ``naive``: the GAC model computed per step the way the authors' code runs it (default layout, the
  stem, its BN and the attention recomputed on each of the T copies of the image, every LIF a Python
  loop of autograd operations): ``benchmarks/models.py``'s ``naive_copy``;
* ``sj``: SpikingJelly 2.0's ``spikingjelly.activation_based.model.ms_resnet.ms_resnet18`` (the
  paper's ImageNet recipe as SpikingJelly ships it: 7x7/2 stem without max-pool, every stage
  strided, LIF tau 4/3 without input decay, threshold 0.5, hard reset to 0 detached, rectangle
  surrogate ``Rect(alpha=2)``), with the LIF implementation SpikingJelly selects for the device
  (on CPU its registered torch operator; on CUDA its automatic choice, CUDA > Triton > torch);
  its state is reset before every forward (``functional.reset_net``).

``--model cifar`` times ``msresnet18_cifar`` (``gac``, ``direct``, ``naive``; SpikingJelly has no
MS-ResNet-18 of the CIFAR layout, its ``max_resnet18`` is another network).

Before timing, the script asserts in float64 (training mode, a small input) that ``direct`` and
SpikingJelly's model, given the same weights, compute the same logits, input gradient and every
parameter gradient (SpikingJelly built with ``Rect(alpha=1)`` for this check, our recipe's
rectangle ``1`` where ``|v - threshold| < 0.5``; its shipped ``Rect(alpha=2)``, ``2`` where
``|v - threshold| < 0.25``, differs only in the backward values, not in the work), and that ``gac``
agrees with ``naive`` (``benchmarks/models.py``'s check). So all variants compute one architecture
with the same FLOPs per layer; what differs is how (our static fast path runs the stem once per image
instead of T times, a fused multi-step LIF, channels-last activations).

A train step is ``zero_grad``, forward, cross-entropy of the time-averaged logits, backward and
``SGD.step`` (momentum 0.9); inference is a forward in ``eval`` mode under ``torch.inference_mode``.
Steps are interleaved (one step of every variant per round), each ratio is given three ways: best
steps, median steps and the median over rounds of the two steps' ratio within a round; images/s are
``batch / median step`` (``--clock cpu``: of this process's CPU time instead of the wall clock, on
a CPU shared with other jobs). Peak memory: on CPU the growth of the resident set (VmHWM) during one
steady-state step, each variant and mode in a fresh subprocess; on CUDA the growth of
``torch.cuda.max_memory_allocated`` during one step. The load average is printed before and after.

Run (CPU, the figures in benchmarks/RESULTS.md)::

    .venv/bin/python benchmarks/peers.py                       # T=4, batch 4, 96x96, 2 threads
    .venv/bin/python benchmarks/peers.py --device cuda         # T=4, batch 32, 224x224, fp32 + bf16
    .venv/bin/python benchmarks/peers.py --device cuda --model cifar   # T=6, batch 128, 32x32
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models as bench  # noqa: E402  benchmarks/models.py: the naive formulation, memory helpers, ratios

from gac_coding import neuron  # noqa: E402
from gac_coding.models import create_model  # noqa: E402

MODELS = {"imagenet": "msresnet18_imagenet", "cifar": "msresnet18_cifar"}
CLASSES = {"imagenet": 1000, "cifar": 10}
#: per (model, device): T, batch, image size
DEFAULTS = {
    ("imagenet", "cpu"): (4, 4, 96),
    ("imagenet", "cuda"): (4, 32, 224),
    ("cifar", "cpu"): (6, 8, 32),
    ("cifar", "cuda"): (6, 128, 32),
}
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ------------------------------------------------------------------------------------- the models
class SpikingJellyNet(nn.Module):
    """SpikingJelly's ``ms_resnet18`` called the way our models are: its state reset before every
    forward, logits returned as ``[1, B, classes]`` (it averages over T itself)."""

    def __init__(self, T: int, num_classes: int, **neuron_kwargs: Any) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional
        from spikingjelly.activation_based.model.ms_resnet import ms_resnet18

        self.net = ms_resnet18(T=T, num_classes=num_classes, **neuron_kwargs)
        self._reset = functional.reset_net

    def forward(self, x: Tensor) -> Tensor:
        self._reset(self.net)
        return self.net(x).unsqueeze(0)


def sj_name(name: str) -> str:
    """The name SpikingJelly's model (inside :class:`SpikingJellyNet`) gives one of our
    ``msresnet18_imagenet`` (``coding="direct"``) parameters or buffers."""
    parts = name.split(".")
    if parts[0] == "encoder":  # stem conv + BN
        parts = ["stem", "0" if parts[1] == "conv" else "1", *parts[2:]]
    elif parts[0] == "stages":  # stages.i.j.(conv1|bn1|conv2|bn2|shortcut.k) -> layer{i+1}.j...
        parts = [f"layer{int(parts[1]) + 1}", *parts[2:]]
        if parts[2] == "shortcut":
            parts[2] = "downsample"
    elif parts[0] == "fc":
        parts[0] = "head"
    return "net." + ".".join(parts)


def check_same_as_spikingjelly(T: int, batch: int = 2, size: int = 32) -> float:
    """Our direct-coding model and SpikingJelly's, same weights, float64, training mode: same logits,
    input gradient and parameter gradients (SpikingJelly with our rectangle surrogate)."""
    from spikingjelly.activation_based import surrogate

    torch.manual_seed(0)
    ours = create_model("msresnet18_imagenet", num_classes=10, T=T, coding="direct").double()
    sj = SpikingJellyNet(T, 10, surrogate_function=surrogate.Rect(alpha=1.0)).double()
    # strict: every parameter and buffer has its counterpart, of the same shape: the same layers
    sj.load_state_dict({sj_name(k): v.contiguous() for k, v in ours.state_dict().items()}, strict=True)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (batch,), generator=g)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = ours(xa).mean(0), sj(xb)[0]
    F.cross_entropy(a, y).backward()
    F.cross_entropy(b, y).backward()
    worst = float((a - b).detach().abs().max())
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), f"logits differ by {worst}"
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-7, atol=1e-10), "input gradients differ"
    theirs = dict(sj.named_parameters())
    for name, p in ours.named_parameters():
        q = theirs[sj_name(name)]
        assert torch.allclose(p.grad, q.grad, rtol=1e-7, atol=1e-10), f"gradient of {name} differs"
    n_ours = sum(p.numel() for p in ours.parameters())
    n_sj = sum(p.numel() for p in sj.parameters())
    assert n_ours == n_sj, f"parameter counts differ: {n_ours} vs {n_sj}"
    return worst


def variant_names(model: str, backends: list[str]) -> list[str]:
    names = [f"{kind}/{b}" for b in backends for kind in ("direct", "gac")]
    return [*names, "naive"] + (["sj"] if model == "imagenet" else [])


def build(variant: str, model: str, T: int, device: torch.device) -> nn.Module:
    """A variant's model on ``device`` (seeded: ours share their weights)."""
    torch.manual_seed(0)
    classes = CLASSES[model]
    if variant == "sj":
        net: nn.Module = SpikingJellyNet(T, classes)
    else:
        coding = "direct" if variant.startswith("direct") else "gac"
        net = create_model(MODELS[model], num_classes=classes, T=T, coding=coding)
        if variant == "naive":
            net = bench.naive_copy(net)
    return net.to(device)


def use(variant: str) -> None:
    """The LIF backend a variant runs with (``naive`` and ``sj`` do not use ours)."""
    if "/" in variant:
        neuron.set_backend(variant.split("/")[1])


# ------------------------------------------------------------------------------------- the steps
class Runner:
    """One variant's model, optimiser and step functions."""

    def __init__(self, variant: str, net: nn.Module, x: Tensor, y: Tensor, precision: str) -> None:
        self.variant, self.net, self.x, self.y = variant, net, x, y
        self.dtype = PRECISIONS[precision]
        self.opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.x.device.type, dtype=self.dtype)

    def train(self) -> None:
        use(self.variant)
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.net(self.x)
        F.cross_entropy(logits.float().mean(0), self.y).backward()
        self.opt.step()

    def infer(self) -> None:
        use(self.variant)
        self.net.eval()
        with torch.inference_mode(), self.autocast():
            self.net(self.x)


def inputs(args: argparse.Namespace, device: torch.device) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, CLASSES[args.model], (args.batch,), generator=g)
    return x.to(device), y.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], None], device: torch.device, clock: Callable[[], float] = time.perf_counter
) -> float:
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


# ------------------------------------------------------------------------------------- memory
def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return bench._peak_rss_bytes() <= bench._rss_bytes() + (1 << 20)


def memory_of(variant: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """CPU: peak resident-set growth of one step after a warm-up step (without a way to reset the
    high-water mark: of the first step), and for training the bytes autograd saves for backward."""
    device = torch.device("cpu")
    x, y = inputs(args, device)
    runner = Runner(variant, build(variant, args.model, args.T, device), x, y, args.precision[0])
    step = runner.train if mode == "train" else runner.infer
    step()  # warm-up: optimiser state, oneDNN primitives
    steady = _reset_peak_rss()
    if not steady:
        runner = Runner(variant, build(variant, args.model, args.T, device), x, y, args.precision[0])
        step = runner.train if mode == "train" else runner.infer
    before = bench._rss_bytes()
    step()
    out: dict[str, Any] = {"peak_rss": bench._peak_rss_bytes() - before, "steady": steady}
    if mode == "train":
        use(variant)
        out["saved"] = bench.saved_for_backward(runner.net, x, y)
    return out


def cpu_memory(variants: list[str], modes: list[str], args: argparse.Namespace) -> dict[str, dict]:
    mem: dict[str, dict] = {}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    for mode in modes:
        for v in variants:
            cmd = [
                sys.executable,
                __file__,
                "--memory-of",
                v,
                "--memory-mode",
                mode,
                "--model",
                args.model,
                "--T",
                str(args.T),
                "--batch",
                str(args.batch),
                "--size",
                str(args.size),
                "--threads",
                str(args.threads),
                "--precision",
                args.precision[0],
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            mem[f"{v}|{mode}"] = json.loads(out.strip().splitlines()[-1])
    return mem


def cuda_memory(runner: Runner, mode: str) -> dict[str, Any]:
    device = runner.x.device
    runner.opt.zero_grad(set_to_none=True)
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    (runner.train if mode == "train" else runner.infer)()
    sync(device)
    return {"peak_rss": torch.cuda.max_memory_allocated(device) - before, "steady": True}


# ------------------------------------------------------------------------------------- main
@contextlib.contextmanager
def reporting_warnings(label: str) -> Iterator[None]:
    """Print a backend's fallback warning (e.g. a kernel that failed to build) where it happens."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        yield
    for w in caught:
        if issubclass(w.category, RuntimeWarning):
            print(f"  warning during {label}: {w.message}")


def sj_implementation(device: torch.device) -> str:
    if device.type == "cpu":
        return "torch operator (CPU)"
    try:  # private API, for the record only
        from spikingjelly._ops.lif import _selection

        names = {getattr(s, "name", "?") for s in _selection._selections.values() if s is not None}
        return ", ".join(sorted(names)) or "not recorded"
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({type(exc).__name__})"


def goals(model: str, device: str, backends: list[str]) -> list[tuple[str, str, str, float | None]]:
    """(label, slow, fast, goal) per printed ratio; variant names without the precision."""
    out: list[tuple[str, str, str, float | None]] = []
    for b in backends:
        if model == "imagenet":
            out.append((f"sj / direct/{b}", "sj", f"direct/{b}", 1.3 if device == "cpu" else 1.0))
            out.append((f"sj / gac/{b}", "sj", f"gac/{b}", 1.0 if device == "cpu" else None))
        out.append((f"naive / gac/{b}", "naive", f"gac/{b}", 2.0 if device == "cuda" else None))
        out.append((f"cost of GAC, gac/{b} / direct/{b}", f"gac/{b}", f"direct/{b}", None))
    if len(backends) > 1:
        for kind in ("direct", "gac"):
            out.append(
                (
                    f"{kind}/{backends[0]} / {kind}/{backends[1]}",
                    f"{kind}/{backends[0]}",
                    f"{kind}/{backends[1]}",
                    None,
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="imagenet", choices=sorted(MODELS))
    parser.add_argument("--T", type=int, help="time steps (default: 4 imagenet, 6 cifar)")
    parser.add_argument("--batch", type=int, help="default: imagenet 4 (CPU) / 32 (CUDA), cifar 8 / 128")
    parser.add_argument("--size", type=int, help="image size (default: imagenet 96 (CPU) / 224, cifar 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU (default 2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall: elapsed time (default); cpu: this process's CPU time (CPU only; less disturbed "
        "by other jobs on a shared machine, but it counts threads spinning at barriers)",
    )
    parser.add_argument(
        "--backends", help="our LIF backends, comma-separated (default: CPU eager,cpp; CUDA triton,eager)"
    )
    parser.add_argument(
        "--precision", help="fp32, bf16, fp16 (autocast), comma-separated (default: CPU fp32; CUDA fp32,bf16)"
    )
    parser.add_argument("--modes", default="train,infer", help="train, infer (default both)")
    parser.add_argument("--variants", help="a comma-separated subset of the variants")
    parser.add_argument("--no-check", action="store_true", help="skip the float64 equality checks")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--memory-mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    dev_T, dev_batch, dev_size = DEFAULTS[(args.model, args.device)]
    args.T = args.T or dev_T
    args.batch = args.batch or dev_batch
    args.size = args.size or dev_size
    cuda = args.device == "cuda"
    backends = (args.backends or ("triton,eager" if cuda else "eager,cpp")).split(",")
    args.precision = (args.precision or ("fp32,bf16" if cuda else "fp32")).split(",")
    modes = args.modes.split(",")
    for p in args.precision:
        if p not in PRECISIONS:
            parser.error(f"--precision: expected some of {list(PRECISIONS)}, got {p!r}")
    for m in modes:
        if m not in ("train", "infer"):
            parser.error(f"--modes: expected train and/or infer, got {m!r}")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of, args.memory_mode, args)))
        return 0
    if cuda and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if cuda and args.clock == "cpu":
        parser.error("--clock cpu: CUDA steps are timed by the wall clock")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    variants = variant_names(args.model, backends)
    if args.variants:
        chosen = args.variants.split(",")
        unknown = sorted(set(chosen) - set(variants))
        if unknown:
            parser.error(f"--variants: unknown {unknown}; expected some of {variants}")
        variants = [v for v in variants if v in chosen]

    from importlib.metadata import version

    threads = f"{torch.get_num_threads()} threads" if not cuda else torch.cuda.get_device_name(device)
    print(
        f"{MODELS[args.model]}, T={args.T}, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.device} ({threads}), precision {'+'.join(args.precision)}, torch {torch.__version__}, "
        f"spikingjelly {version('spikingjelly')}"
    )
    results: dict[str, Any] = {
        "settings": {
            **{k: v for k, v in vars(args).items() if not k.startswith("memory")},
            "backends": backends,
            "variants": variants,
        }
    }
    if not args.no_check:
        started = time.perf_counter()
        if args.model == "imagenet" and "sj" in variants:
            worst = check_same_as_spikingjelly(args.T)
            print(
                f"direct == SpikingJelly ms_resnet18 (same weights, float64, train mode): logits, "
                f"input and every parameter gradient (max |logit diff| {worst:.1e})"
            )
        for b in backends:
            if b == "triton":  # the triton kernels run on CUDA tensors; checked by cuda_check.py
                continue
            torch.manual_seed(0)
            lib = create_model(MODELS[args.model], num_classes=10, T=args.T)
            worst = bench.check_equal(b, lib=lib, size=32, classes=10)
            print(
                f"gac ({b}) == naive (float64, train mode): logits, input and parameter gradients "
                f"(max |logit diff| {worst:.1e})"
            )
        print(f"checks took {time.perf_counter() - started:.0f} s")

    x, y = inputs(args, device)
    runners = {}
    for v in variants:
        net = build(v, args.model, args.T, device)
        for p in args.precision:
            runners[f"{v}|{p}"] = Runner(v, net, x, y, p)
    keys = list(runners)
    load_before = os.getloadavg()
    results["load_before"] = load_before
    times: dict[str, dict[str, list[float]]] = {}
    mem: dict[str, dict] = {}
    for mode in modes:
        with reporting_warnings(f"the {mode} warm-up"):
            for _ in range(args.warmup):
                for k in keys:
                    timed(getattr(runners[k], mode), device)
        if cuda and not args.no_memory:
            for k in keys:
                mem[f"{k}|{mode}"] = cuda_memory(runners[k], mode)
        times[mode] = {k: [] for k in keys}
        for _ in range(args.repeats):  # interleaved so that load changes hit all variants alike
            for k in keys:
                times[mode][k].append(timed(getattr(runners[k], mode), device, clock))
    load_after = os.getloadavg()
    results["load_after"] = load_after
    print(f"SpikingJelly's LIF implementation: {sj_implementation(device)}")
    print(
        "load average (1, 5, 15 min) before timing: "
        + " ".join(f"{v:.2f}" for v in load_before)
        + ", after: "
        + " ".join(f"{v:.2f}" for v in load_after)
    )
    del runners
    if not cuda and not args.no_memory:
        for p in args.precision:
            args_p = argparse.Namespace(**{**vars(args), "precision": [p]})
            for key, value in cpu_memory(variants, modes, args_p).items():
                v, mode = key.split("|")
                mem[f"{v}|{p}|{mode}"] = value

    mib = 2**20
    unit = "ms" if cuda else "s"
    scale = 1e3 if cuda else 1.0
    results["modes"] = {}
    # the goals are set for the ImageNet model at the default T, batch and size of the device
    at_goal_settings = args.model == "imagenet" and (args.T, args.batch, args.size) == (
        dev_T,
        dev_batch,
        dev_size,
    )
    for mode in modes:
        t = times[mode]
        print(
            f"\n{mode} ({'forward, backward, SGD step' if mode == 'train' else 'eval forward'}), "
            f"{args.repeats} interleaved rounds, {'CPU' if args.clock == 'cpu' else 'wall'} time"
        )
        print(
            f"{'variant':<20} {'best ' + unit:>9} {'median ' + unit:>10} {'img/s':>8} {'peak MiB':>9}"
            f"{' saved MiB' if mode == 'train' and not cuda else ''}  all steps {unit}"
        )
        for k in keys:
            m = mem.get(f"{k}|{mode}", {})
            med = statistics.median(t[k])
            peak = f"{m['peak_rss'] / mib:>9.0f}" if m else f"{'-':>9}"
            saved = (
                f" {m['saved'] / mib:>9.0f}"
                if "saved" in m
                else (" " * 10 if mode == "train" and not cuda else "")
            )
            every = " ".join(f"{s * scale:.{1 if cuda else 2}f}" for s in t[k])
            print(
                f"{k.replace('|', ' '):<20} {min(t[k]) * scale:>9.{2 if cuda else 3}f} "
                f"{med * scale:>10.{2 if cuda else 3}f} {args.batch / med:>8.1f} {peak}{saved}  {every}"
            )
        lines = []
        for p in args.precision:
            for label, slow, fast, goal in goals(args.model, args.device, backends):
                a, b = f"{slow}|{p}", f"{fast}|{p}"
                if a not in t or b not in t:
                    continue
                best, med, paired = bench.ratios(t, a, b)
                verdict = ""
                if goal is not None and at_goal_settings:
                    verdict = f"  goal >= {goal}x: " + (
                        "met"
                        if min(best, med, paired) >= goal
                        else "met by some figures"
                        if max(best, med, paired) >= goal
                        else "NOT met"
                    )
                lines.append(
                    f"  {label + ' ' + p:<34} {best:.2f}x best, {med:.2f}x medians, "
                    f"{paired:.2f}x paired{verdict}"
                )
                results["modes"].setdefault(mode, {}).setdefault("ratios", {})[f"{label} {p}"] = {
                    "best": round(best, 3),
                    "median": round(med, 3),
                    "paired": round(paired, 3),
                    "goal": goal,
                }
        if lines:
            print("speed ratios (throughput of the second over the first):")
            print("\n".join(lines))
        results["modes"].setdefault(mode, {})["steps_s"] = {k: [round(s, 5) for s in v] for k, v in t.items()}
        results["modes"][mode]["images_per_s"] = {
            k: round(args.batch / statistics.median(v), 2) for k, v in t.items()
        }
    results["memory"] = {k: v for k, v in mem.items()}
    if mem and "sj" in variants:
        print("\npeak memory / SpikingJelly's:")
        for mode in modes:
            for p in args.precision:
                ref = mem.get(f"sj|{p}|{mode}")
                if not ref:
                    continue
                parts = [
                    f"{v} {mem[f'{v}|{p}|{mode}']['peak_rss'] / ref['peak_rss']:.2f}"
                    for v in variants
                    if v != "sj" and f"{v}|{p}|{mode}" in mem
                ]
                print(f"  {mode} {p}: " + ", ".join(parts))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(results, f, indent=1, default=str)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
