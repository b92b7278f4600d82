"""The layers of GAC-MS-ResNet-18 (CIFAR recipe) one at a time: convolutions by layout, the LIF by backend.

Explains the whole-step figures of ``benchmarks/models.py``:

* every convolution of ``msresnet18_cifar`` (T=6, batch 8, 32x32; the shapes are read from a forward
  pass of the model), forward + backward, with PyTorch's default layout (NCHW) and channels-last,
  interleaved, best of ``--repeats``; binary spikes as input, as the blocks see them;
* the multi-step LIF on the largest activation ``[6, 8, 128, 32, 32]`` (float32, channels-last),
  forward and forward + backward, eager vs the C++ kernel.

Run: ``.venv/bin/python benchmarks/layers.py`` (``--repeats N``, ``--threads N``; one thread by
default, as in ``benchmarks/models.py``).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from gac_coding import neuron
from gac_coding.models import create_model
from gac_coding.ops import _cpp

CL = torch.channels_last
NCHW = torch.contiguous_format


def conv_shapes() -> list[tuple[nn.Conv2d, tuple[int, ...], tuple[int, ...]]]:
    """``(conv, input shape, output shape)`` of every convolution in one forward pass."""
    model = create_model("msresnet18_cifar", num_classes=10, T=6, channels_last=False)
    seen: list[tuple[nn.Conv2d, tuple[int, ...], tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.append((m, tuple(i[0].shape), tuple(o.shape))))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32))
    for h in hooks:
        h.remove()
    return seen


def time_conv(conv: nn.Conv2d, shape_in: tuple[int, ...], shape_out: tuple[int, ...], fmt) -> float:
    """Seconds of one forward + backward of ``conv`` (input and weight gradients) in layout ``fmt``."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(shape_in, generator=gen) > 0.8).float().contiguous(memory_format=fmt)
    x.requires_grad_(shape_in[1] != 3)  # the stem's input (the image) needs no gradient
    w = conv.weight.detach().clone().contiguous(memory_format=fmt).requires_grad_()
    g = torch.randn(shape_out, generator=gen).contiguous(memory_format=fmt)
    start = time.perf_counter()
    y = F.conv2d(x, w, None, conv.stride, conv.padding)
    y.backward(g)
    return time.perf_counter() - start


def time_lif(backend: str, fmt, repeats: int) -> tuple[float, float]:
    """Best forward and best forward + backward seconds of the LIF on ``[6, 8, 128, 32, 32]``."""
    neuron.set_backend(backend)
    gen = torch.Generator().manual_seed(0)
    flat = torch.randn(48, 128, 32, 32, generator=gen).contiguous(memory_format=fmt)
    x = flat.view(6, 8, 128, 32, 32).requires_grad_()
    g = torch.randn(48, 128, 32, 32, generator=gen).contiguous(memory_format=fmt).view(x.shape)
    fwd, total = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        s = neuron.lif(x)
        mid = time.perf_counter()
        s.backward(g)
        fwd.append(mid - start)
        total.append(time.perf_counter() - start)
    return min(fwd[1:]), min(total[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, best of {args.repeats}")

    print("\nconvolutions of msresnet18_cifar (T=6, batch 8), forward + backward, ms")
    print(f"{'input':<20} {'output':<20} {'k':>2} {'NCHW':>8} {'CL':>8} {'NCHW/CL':>8}")
    totals = {NCHW: 0.0, CL: 0.0}
    for conv, shape_in, shape_out in conv_shapes():
        times: dict = {NCHW: [], CL: []}
        time_conv(conv, shape_in, shape_out, NCHW)  # warm-up (oneDNN primitive creation)
        time_conv(conv, shape_in, shape_out, CL)
        for _ in range(args.repeats):  # interleaved
            for fmt in (NCHW, CL):
                times[fmt].append(time_conv(conv, shape_in, shape_out, fmt))
        a, b = min(times[NCHW]), min(times[CL])
        totals[NCHW] += a
        totals[CL] += b
        k = conv.kernel_size[0]
        print(f"{shape_in!s:<20} {shape_out!s:<20} {k:>2} {a * 1e3:>8.1f} {b * 1e3:>8.1f} {a / b:>7.2f}x")
    print(
        f"all {len(conv_shapes())} convolutions: NCHW {totals[NCHW]:.2f} s, channels-last "
        f"{totals[CL]:.2f} s, {totals[NCHW] / totals[CL]:.2f}x"
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        built = _cpp.load() is not None
    print(f"\nLIF on [6, 8, 128, 32, 32] float32, ms (C++ kernel {'built' if built else 'NOT built: eager'})")
    for fmt, name in ((CL, "channels-last"), (NCHW, "NCHW")):
        for backend in ("eager", "cpp"):
            fwd, total = time_lif(backend, fmt, args.repeats)
            print(f"  {name:<14} {backend:<6} forward {fwd * 1e3:6.1f}   fwd + bwd {total * 1e3:6.1f}")
    neuron.set_backend("eager")


if __name__ == "__main__":
    main()
