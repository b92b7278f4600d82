"""Training-step speed and peak memory of GAC-MS-ResNet-18 (CIFAR recipe), side by side in one run.

Compares, for ``msresnet18_cifar`` at T=6, batch 8, 32x32 static images, one training step
(forward + backward of the cross-entropy on the time-averaged logits):

* ``library``: this library as ``create_model`` builds it (static fast path of the stem and SCA,
  fused multi-step LIF, channels-last activations), with the default eager LIF backend;
  ``library_cpp``: the same with the C++ LIF kernel (``gac_coding.neuron.set_backend("cpp")``,
  compiled on first use; its build time is printed); ``library_nchw``: the library with PyTorch's
  default layout (``channels_last=False``), to show what the layout alone contributes;
* ``naive``: the same weights computed the way the authors' code runs them: PyTorch's default
  layout, the image repeated T times, the stem, its BN and the SCA recomputed every step, every LIF
  (the encoder's included) a Python loop of autograd operations (``gac_coding.neuron.lif_reference``);
* ``direct`` / ``direct_cpp``: this library with ``coding="direct"`` (direct coding), to see what GAC
  costs, with each LIF backend.

Before timing, the script asserts that ``library`` (both backends) and ``naive`` agree (logits,
input gradient and every parameter gradient, float64, training mode). Peak memory is the growth of
the resident set during one step, each variant measured in a fresh subprocess.

Run: ``.venv/bin/python benchmarks/models.py`` (``--repeats N``, ``--batch B``, ``--threads N``;
one thread by default: on a CPU shared with other jobs, OpenMP threads that wait on each other make
multi-threaded timings swing by several times, while one thread gives repeatable figures).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gac_coding import LIF, neuron
from gac_coding.coding import GACEncoder
from gac_coding.models import create_model
from gac_coding.neuron import lif_reference
from gac_coding.ops import _cpp

T, CLASSES, SIZE = 6, 10, 32


class LoopLIF(nn.Module):
    """The LIF as a Python loop of autograd operations (as in the authors' code)."""

    def __init__(self, neuron: LIF) -> None:
        super().__init__()
        self.params = (neuron.decay, neuron.threshold, neuron.surrogate, neuron.detach_reset)

    def forward(self, x: Tensor) -> Tensor:
        return lif_reference(x, *self.params)


class NaiveEncoder(nn.Module):
    """GAC computed per step from the T-fold repeated image; shares the library encoder's weights."""

    def __init__(self, encoder: GACEncoder) -> None:
        super().__init__()
        self.enc = encoder

    def forward(self, x: Tensor) -> Tensor:
        enc, gate = self.enc, self.enc.gate
        frames = x.unsqueeze(0).repeat(enc.T, 1, 1, 1, 1)  # direct coding, spelled out
        u = enc.bn(enc.conv(frames.flatten(0, 1)))  # stem + BN on every step
        u = u.view(enc.T, x.shape[0], *u.shape[1:])
        ta = gate.ta(u)  # [T, B]
        sca = gate.sca(u.flatten(0, 1)).view(u.shape)  # SCA on every step
        spikes = lif_reference(u, gate.decay, gate.threshold, gate.surrogate, gate.detach_reset)
        return torch.sigmoid(ta.view(*ta.shape, 1, 1, 1) * sca) * spikes


def naive_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with the naive encoder and loop LIFs, in PyTorch's default layout."""
    naive = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    naive.channels_last = False
    for module in list(naive.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LIF):
                setattr(module, name, LoopLIF(child))
    naive.encoder = NaiveEncoder(naive.encoder)
    return naive


VARIANTS = ["library", "library_cpp", "library_nchw", "naive", "direct", "direct_cpp"]


def use_backend(variant: str) -> None:
    """Select the LIF backend a variant runs with (``naive`` does not use it)."""
    neuron.set_backend("cpp" if variant.endswith("_cpp") else "eager")


def build(variant: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    coding = "direct" if variant.startswith("direct") else "gac"
    lib = create_model(
        "msresnet18_cifar", num_classes=CLASSES, T=T, coding=coding, channels_last=variant != "library_nchw"
    )
    return naive_copy(lib) if variant == "naive" else lib


def train_step(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits.mean(0), y)
    loss.backward()
    return logits


def check_equal(
    backend: str, batch: int = 2, lib: nn.Module | None = None, size: int = SIZE, classes: int = CLASSES
) -> float:
    """library == naive in float64, training mode: logits, input and parameter gradients
    (``lib``: the model to check, default this script's ``library``; it is converted to float64)."""
    neuron.set_backend(backend)
    lib = (build("library") if lib is None else lib).double()
    naive = naive_copy(lib)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, classes, (batch,), generator=g)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = train_step(lib, xa, y), train_step(naive, xb, y)
    worst = float((a - b).detach().abs().max())
    assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), f"logits differ by {worst}"
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-7, atol=1e-9), "input gradients differ"
    for (name, pa), (_, pb) in zip(lib.named_parameters(), naive.named_parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-7, atol=1e-9), f"gradient of {name} differs"
    for (name, ba), (_, bb) in zip(lib.named_buffers(), naive.named_buffers(), strict=True):
        assert torch.allclose(ba.double(), bb.double(), rtol=1e-9, atol=1e-12), f"{name} differs"
    return worst


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    """High-water mark of this process's resident set (VmHWM; unlike ``getrusage``'s ru_maxrss it
    starts afresh at exec, so the parent's size does not leak into a subprocess's figure)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def saved_for_backward(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of one step."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x).mean(0), y)
    loss.backward()
    return sum(storages.values())


def memory_of(variant: str, batch: int) -> dict[str, int]:
    """Peak resident-set growth during one training step (run in a fresh process, with glibc
    returning large blocks to the system at once) and the bytes saved for backward."""
    use_backend(variant)
    model = build(variant)
    x = torch.rand(batch, 3, SIZE, SIZE)
    y = torch.randint(0, CLASSES, (batch,))
    before = _rss_bytes()
    train_step(model, x, y)
    peak = _peak_rss_bytes()
    return {"peak_rss": peak - before, "saved": saved_for_backward(model, x, y)}


def ratios(times: dict[str, list[float]], slow: str, fast: str) -> tuple[float, float, float]:
    """``slow / fast`` three ways: best steps, median steps, and the median of the ratios of the
    two steps of each interleaved round (neighbours in time share the machine's load)."""
    a, b = times[slow], times[fast]
    paired = statistics.median(s / f for s, f in zip(a, b, strict=True))
    return min(a) / min(b), statistics.median(a) / statistics.median(b), paired


def ratio_text(times: dict[str, list[float]], slow: str, fast: str) -> str:
    """:func:`ratios` as text."""
    best, med, paired = ratios(times, slow, fast)
    return f"{best:.2f}x best, {med:.2f}x medians, {paired:.2f}x paired"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: robust on a shared CPU)"
    )
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of, args.batch)))
        return

    print(
        f"msresnet18_cifar, T={T}, batch {args.batch}, {SIZE}x{SIZE}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    start = time.perf_counter()
    built_before = _cpp.is_built()
    kernel = _cpp.load()
    took = time.perf_counter() - start
    if kernel is None:
        print(f"C++ LIF kernel: build FAILED ({_cpp.build_error()}); *_cpp run the eager path")
    else:
        how = "loaded from torch's extension cache" if built_before else "compiled"
        print(f"C++ LIF kernel: {how} in {took:.1f} s")
    for backend in ("eager", "cpp"):
        worst = check_equal(backend)
        print(
            f"library ({backend}) == naive (float64, train mode): logits, input and parameter "
            f"gradients (max |logit diff| {worst:.1e})"
        )

    variants = VARIANTS
    models = {v: build(v) for v in variants}
    g = torch.Generator().manual_seed(2)
    x = torch.rand(args.batch, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (args.batch,), generator=g)
    for v in variants:  # warm-up
        use_backend(v)
        train_step(models[v], x, y)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # interleaved so that load changes hit all variants alike
        for v in variants:
            use_backend(v)
            start = time.perf_counter()
            train_step(models[v], x, y)
            times[v].append(time.perf_counter() - start)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    best = {v: min(ts) for v, ts in times.items()}  # least disturbed by other load: the ratios use it

    mem = {}
    for v in variants:
        cmd = [sys.executable, __file__, "--memory-of", v, "--batch", str(args.batch)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        mem[v] = json.loads(out.strip().splitlines()[-1])

    mib = 2**20
    print(
        f"\n{'variant':<13} {'best step s':>12} {'median s':>9}  {'all steps s':<30} "
        f"{'peak RSS MiB':>13} {'saved for bwd MiB':>18}"
    )
    for v in variants:
        every = " ".join(f"{t:.2f}" for t in times[v])
        print(
            f"{v:<13} {best[v]:>12.2f} {med[v]:>9.2f}  {every:<30} {mem[v]['peak_rss'] / mib:>13.0f} "
            f"{mem[v]['saved'] / mib:>18.0f}"
        )
    print()

    def ratio(slow: str, fast: str) -> str:
        return ratio_text(times, slow, fast)

    print("speed-up over naive (goal >= 1.3x):")
    for lib in ("library", "library_cpp", "library_nchw"):
        print(f"  {lib:<13} {ratio('naive', lib)}")
    print(f"cpp vs eager LIF backend:      {ratio('library', 'library_cpp')}")
    print(f"channels-last vs NCHW (eager): {ratio('library_nchw', 'library')}")
    print("cost of GAC, library / direct (goal <= 1.05x):")
    for lib, direct in (("library", "direct"), ("library_cpp", "direct_cpp")):
        print(f"  {lib:<13} {ratio(lib, direct)}")
    for key, name in (("peak_rss", "peak RSS"), ("saved", "saved for backward")):
        print(
            f"{name + ' library / naive:':<35}{mem['library'][key] / mem['naive'][key]:.2f}   "
            f"library / direct: {mem['library'][key] / mem['direct'][key]:.2f}   "
            f"library_cpp / naive: {mem['library_cpp'][key] / mem['naive'][key]:.2f}"
        )

if __name__ == "__main__":
    main()
