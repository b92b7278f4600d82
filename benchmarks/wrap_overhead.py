"""Cost of ``gac_coding.wrap``: the wrapped net vs the bare backbone fed direct coding, same ``T``.

For one conv backbone per framework (snnTorch per-step ``nn.Sequential``, Norse ``SequentialState``
of cells, SpikingJelly multi-step, plain PyTorch on ``[T, B, ...]``), one training step
(forward + backward) of

* ``bare``: the backbone driven over ``T`` steps the way its framework does it, fed the same image at
  every step (direct coding), with the same state reset the wrapper uses;
* ``wrapped``: ``gac_coding.wrap(backbone, T, in_channels=3)`` fed the static image: the GAC
  encoder (static fast path) plus the wrapper's driving of the backbone;
* to split the difference: ``encoder``, the wrapped net's encoder alone; ``input grad``, what the
  bare net costs more when it also back-propagates into its input (the wrapped backbone must, so
  that the encoder learns: its first layer computes an input gradient at every step); and
  ``machinery``, the rest (``wrapped - bare with input grad - encoder``: resets, hooks, stacking).

All are timed interleaved (bare, wrapped, encoder, bare with input grad, bare, ...) so they see the
same machine load; medians in milliseconds and the ratio wrapped / bare are printed. The goal is a
ratio <= 1.3.

Usage::

    python benchmarks/wrap_overhead.py              # B=32, 3x32x32, T=4
    python benchmarks/wrap_overhead.py --quick      # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.adapters import GatedInputWarning

Step = Callable[[Tensor], Tensor]


def _conv_stack(width: int, size: int) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module, int]:
    """conv-pool, conv-pool, linear pieces shared by every backbone (same cost everywhere)."""
    conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
    conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
    pool = nn.AvgPool2d(2)
    features = 2 * width * (size // 4) ** 2
    return conv1, conv2, pool, nn.Linear(features, 10), features


def snntorch_case(T: int, width: int, size: int) -> tuple[nn.Module, Callable[[Tensor], Any]]:
    import snntorch as snn

    from gac_coding.adapters.snntorch import reset_states

    conv1, conv2, pool, fc, _ = _conv_stack(width, size)
    net = nn.Sequential(
        conv1,
        nn.BatchNorm2d(width),
        snn.Leaky(beta=0.5, init_hidden=True),
        pool,
        conv2,
        nn.BatchNorm2d(2 * width),
        snn.Leaky(beta=0.5, init_hidden=True),
        pool,
        nn.Flatten(),
        fc,
    )

    def bare(x: Tensor) -> Tensor:
        reset_states(net)
        return torch.stack([net(x) for _ in range(T)])

    return net, bare


def norse_case(T: int, width: int, size: int) -> tuple[nn.Module, Callable[[Tensor], Any]]:
    import norse.torch as norse

    conv1, conv2, pool, fc, _ = _conv_stack(width, size)
    net = norse.SequentialState(
        conv1,
        nn.BatchNorm2d(width),
        norse.LIFCell(dt=0.005),
        pool,
        conv2,
        nn.BatchNorm2d(2 * width),
        norse.LIFCell(dt=0.005),
        pool,
        nn.Flatten(),
        fc,
    )

    def bare(x: Tensor) -> Tensor:
        state, outs = None, []
        for _ in range(T):
            out, state = net(x, state)
            outs.append(out)
        return torch.stack(outs)

    return net, bare


def spikingjelly_case(T: int, width: int, size: int) -> tuple[nn.Module, Callable[[Tensor], Any]]:
    from spikingjelly.activation_based import functional, layer, neuron

    _, _, _, _, features = _conv_stack(width, size)
    net = nn.Sequential(
        layer.Conv2d(3, width, 3, padding=1, bias=False),
        layer.BatchNorm2d(width),
        neuron.LIFNode(tau=2.0),
        layer.AvgPool2d(2),
        layer.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        layer.BatchNorm2d(2 * width),
        neuron.LIFNode(tau=2.0),
        layer.AvgPool2d(2),
        layer.Flatten(),
        layer.Linear(features, 10),
    )
    functional.set_step_mode(net, "m")

    def bare(x: Tensor) -> Tensor:
        functional.reset_net(net)
        return net(x.unsqueeze(0).expand(T, *x.shape))

    return net, bare


class _TorchNet(nn.Module):
    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.conv1, self.conv2, self.pool, self.fc, _ = _conv_stack(width, size)
        self.bn1, self.bn2 = nn.BatchNorm2d(width), nn.BatchNorm2d(2 * width)
        self.lif1, self.lif2 = gac.LIF(), gac.LIF()

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = self.bn1(self.conv1(x.flatten(0, 1)))
        y = self.pool(self.lif1(y.view(T, B, *y.shape[1:])).flatten(0, 1))
        y = self.bn2(self.conv2(y))
        y = self.pool(self.lif2(y.view(T, B, *y.shape[1:])).flatten(0, 1))
        return self.fc(y.flatten(1)).view(T, B, -1)


def torch_case(T: int, width: int, size: int) -> tuple[nn.Module, Callable[[Tensor], Any]]:
    net = _TorchNet(width, size)
    return net, lambda x: net(x.unsqueeze(0).expand(T, *x.shape))


CASES = {
    "snntorch": snntorch_case,
    "norse": norse_case,
    "spikingjelly": spikingjelly_case,
    "torch": torch_case,
}


def _train_step(fn: Callable[[Tensor], Any], params: list[nn.Parameter], x: Tensor) -> None:
    for p in params:
        p.grad = None
    fn(x).float().sum().backward()


def measure(name: str, T: int, B: int, width: int, size: int, reps: int) -> dict[str, float]:
    """Median seconds of one training step of each variant, timed interleaved."""
    torch.manual_seed(0)
    backbone, bare = CASES[name](T, width, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        wrapped = gac.wrap(backbone, T=T, in_channels=3)
    params = list(wrapped.parameters())
    x = torch.rand(B, 3, size, size)
    x_grad = x.clone().requires_grad_(True)
    variants: dict[str, Callable[[], None]] = {
        "bare": lambda: _train_step(bare, params, x),
        "wrapped": lambda: _train_step(wrapped, params, x),
        "encoder": lambda: _train_step(wrapped.encoder, params, x),
        # the bare net also back-propagating into its input, as it must into the code
        "bare_input_grad": lambda: _train_step(bare, params, x_grad),
    }
    times: dict[str, list[float]] = {key: [] for key in variants}
    for fn in list(variants.values()) * 2:  # warm-up
        fn()
    for _ in range(reps):
        for key, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(acc) for key, acc in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=32, help="channels of the first conv")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="B=8, 16x16, 5 repetitions")
    parser.add_argument("--frameworks", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.reps = 8, 16, 5
    print(
        f"forward+backward, B={args.batch}, 3x{args.size}x{args.size}, T={args.T}, "
        f"width={args.width}, torch threads={torch.get_num_threads()}, median of {args.reps}"
    )
    print(
        f"{'framework':<14}{'bare':>9}{'wrapped':>9}{'ratio':>7}{'encoder':>9}"
        f"{'input grad':>12}{'machinery':>11}   (ms)"
    )
    for name in args.frameworks:
        t = {
            k: v * 1e3 for k, v in measure(name, args.T, args.batch, args.width, args.size, args.reps).items()
        }
        input_grad = t["bare_input_grad"] - t["bare"]
        machinery = t["wrapped"] - t["bare_input_grad"] - t["encoder"]
        print(
            f"{name:<14}{t['bare']:>9.1f}{t['wrapped']:>9.1f}{t['wrapped'] / t['bare']:>7.2f}"
            f"{t['encoder']:>9.1f}{input_grad:>12.1f}{machinery:>11.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
