"""Eager against the C++ kernels on the CPU, side by side: should ``"auto"`` pick the C++ kernels?

Usage::

    python benchmarks/backends_cpu.py [--rounds 9] [--threads N] [--only lif,encoder,tiny,cifar]

Times, interleaved round by round with the same weights and inputs, a forward + backward of

* ``lif``: the LIF alone on ``[6, 8, 128, 32, 32]`` channels-last (the arithmetic dominates);
* ``encoder``: a static ``GACEncoder(3, 64, T=4)`` on 16 images of 32x32 (its fused LIF+gate);
* ``tiny``: a training step (SGD) of ``msresnet_tiny`` at T=4 on 64 grey 8x8 images (the demo's
  model and data size);
* ``cifar``: a training step of ``msresnet18_cifar`` at T=4 on 4 images of 32x32,

each with every neuron of the module on ``backend="eager"`` and on ``backend="cpp"``. Prints the
medians, the best rounds and the median of the per-round ratios eager / cpp (above 1: the C++
kernels are faster). The spikes of both are checked equal first (float64 for the LIF).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gac_coding import GACEncoder, neuron
from gac_coding.models import create_model
from gac_coding.ops import _cpp
from gac_coding.ops.backends import set_module_backend


def _lif(backend: str) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    shape = (6, 8, 128, 32, 32)
    flat = torch.randn(6 * 8, *shape[2:], generator=gen).contiguous(memory_format=torch.channels_last)
    x = (flat.view(shape) + 0.5).requires_grad_()
    g = torch.randn(shape, generator=gen)

    def run() -> None:
        neuron.lif(x, backend=backend).backward(g)

    return run


def _encoder(backend: str) -> Callable[[], None]:
    torch.manual_seed(0)
    enc = GACEncoder(3, 64, T=4, backend=backend)
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def run() -> None:
        enc.zero_grad(set_to_none=True)
        enc(x).sum().backward()

    return run


def _step(name: str, T: int, batch: int, channels: int, size: int, backend: str) -> Callable[[], None]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, T=T, in_channels=channels, backend=backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(batch, channels, size, size, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x).mean(0), y).backward()
        opt.step()

    return run


CASES: dict[str, Callable[[str], Callable[[], None]]] = {
    "lif": _lif,
    "encoder": _encoder,
    "tiny": lambda b: _step("msresnet_tiny", 4, 64, 1, 8, b),
    "cifar": lambda b: _step("msresnet18_cifar", 4, 4, 3, 32, b),
}


def _same_spikes() -> None:
    """Both backends give the same spikes (float64 LIF; a float64 model's logits)."""
    x = torch.randn(4, 3, 8, 5, 5, dtype=torch.float64) * 1.5
    assert torch.equal(neuron.lif(x, backend="eager"), neuron.lif(x, backend="cpp"))
    torch.manual_seed(0)
    model = create_model("msresnet_tiny", T=2, in_channels=1).double()
    inp = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    a = set_module_backend(model, "eager")(inp)
    b = set_module_backend(model, "cpp")(inp)
    assert torch.equal(a, b), float((a - b).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if _cpp.load() is None:
        raise SystemExit(f"the C++ kernels could not be built here: {_cpp.build_error()}")
    _same_spikes()
    names = [n for n in args.only.split(",") if n]
    runs = {(n, b): CASES[n](b) for n in names for b in ("eager", "cpp")}
    for run in runs.values():  # warm-up
        run()
    times: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))  # interleaved, alternating order
        for key in order:
            t0 = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - t0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds, "
          f"load average {load:.1f}")  # fmt: skip
    print(f"{'case':<9} {'eager ms':>9} {'cpp ms':>9} {'eager/cpp':>10} {'paired':>8} {'best':>7}")
    for n in names:
        e, c = times[(n, "eager")], times[(n, "cpp")]
        me, mc = statistics.median(e), statistics.median(c)
        paired = statistics.median(a / b for a, b in zip(e, c, strict=True))
        print(f"{n:<9} {me * 1e3:>9.1f} {mc * 1e3:>9.1f} {me / mc:>9.2f}x {paired:>7.2f}x "
              f"{min(e) / min(c):>6.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
