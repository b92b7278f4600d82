"""``gac_coding.wrap`` on real backbones of every shape the adapters support.

The backbones are small and written as each framework's tutorials write them. Every factory returns
``(backbone, readout)``: ``readout`` maps the wrapped net's output to logits ``[B, 10]`` (mean over
time of a real-valued output: a membrane, a leaky integrator, a Linear).
Inputs are 1-channel 8x8 images (scikit-learn's digits) and ``T`` steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.adapters import GatedInputWarning

Readout = Callable[[Any], Tensor]
HIDDEN = 6
DT = 0.005  # Norse integration step: with its default time constants a state settles in ~2 steps


def _mean(out: Tensor) -> Tensor:
    return out.mean(0)


def _second_mean(out: tuple[Tensor, Tensor]) -> Tensor:
    return out[1].mean(0)


class _Spike(torch.autograd.Function):
    """Heaviside keeping the input's dtype (snnTorch's own surrogates emit float32 spikes)."""

    @staticmethod
    def forward(ctx: Any, v: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        (v,) = ctx.saved_tensors
        return grad / (1 + 10 * v.abs()) ** 2


def dtype_preserving_spike(v: Tensor) -> Tensor:
    """A ``spike_grad`` for snnTorch neurons that works in float64."""
    return _Spike.apply(v)


def snntorch_sequential(T: int, spike_grad: Any = None) -> tuple[nn.Module, Readout]:
    """Per-step ``nn.Sequential`` with ``init_hidden=True`` neurons; returns ``(spk, mem)``."""
    import snntorch as snn

    net = nn.Sequential(
        nn.Conv2d(1, HIDDEN, 3, padding=1),
        snn.Leaky(beta=0.8, init_hidden=True, spike_grad=spike_grad),
        nn.Flatten(),
        nn.Linear(HIDDEN * 64, 10),
        snn.Leaky(beta=0.8, init_hidden=True, output=True, spike_grad=spike_grad),
    )
    return net, _second_mean


class SnnTorchCustom(nn.Module):
    """Per-step custom module, its neurons nested one level down (``block.1``)."""

    def __init__(self, spike_grad: Any = None) -> None:
        super().__init__()
        import snntorch as snn

        self.block = nn.Sequential(
            nn.Conv2d(1, HIDDEN, 3, padding=1),
            snn.Synaptic(alpha=0.7, beta=0.8, init_hidden=True, spike_grad=spike_grad),
        )
        self.fc = nn.Linear(HIDDEN * 64, 10)
        self.out = snn.Leaky(beta=0.8, init_hidden=True, output=True, spike_grad=spike_grad)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.out(self.fc(self.block(x).flatten(1)))


def snntorch_custom(T: int, spike_grad: Any = None) -> tuple[nn.Module, Readout]:
    return SnnTorchCustom(spike_grad), _second_mean


class SnnTorchTutorial(nn.Module):
    """The classic tutorial class: explicit ``init_leaky()`` membranes, loops over ``num_steps``."""

    def __init__(self, num_steps: int, spike_grad: Any = None) -> None:
        super().__init__()
        import snntorch as snn

        self.num_steps = num_steps
        self.fc1 = nn.Linear(64, 32)
        self.lif1 = snn.Leaky(beta=0.8, spike_grad=spike_grad)
        self.fc2 = nn.Linear(32, 10)
        self.lif2 = snn.Leaky(beta=0.8, spike_grad=spike_grad)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _ in range(self.num_steps):
            cur1 = self.fc1(x.view(x.shape[0], -1))
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def snntorch_tutorial(T: int, spike_grad: Any = None) -> tuple[nn.Module, Readout]:
    return SnnTorchTutorial(T, spike_grad), _second_mean


def norse_cells(T: int) -> tuple[nn.Module, Readout]:
    """``SequentialState`` of cells: one step per call, state threaded from ``None``."""
    import norse.torch as norse

    net = norse.SequentialState(
        nn.Conv2d(1, HIDDEN, 3, padding=1),
        norse.LIFCell(dt=DT),
        nn.Flatten(),
        nn.Linear(HIDDEN * 64, 10),
        norse.LICell(dt=DT),
    )
    return net, _mean


def norse_sequence(T: int) -> tuple[nn.Module, Readout]:
    """``SequentialState`` of whole-sequence modules (``Lift``, ``LIF``, ``LI``)."""
    import norse.torch as norse

    net = norse.SequentialState(
        norse.Lift(nn.Conv2d(1, HIDDEN, 3, padding=1)),
        norse.LIF(dt=DT),
        nn.Flatten(2),
        norse.Lift(nn.Linear(HIDDEN * 64, 10)),
        norse.LI(dt=DT),
    )
    return net, _mean


class NorseTutorial(nn.Module):
    """Norse tutorial style: ``forward(x)`` loops over the sequence itself with cells."""

    def __init__(self) -> None:
        super().__init__()
        import norse.torch as norse

        self.conv = nn.Conv2d(1, HIDDEN, 3, padding=1)
        self.lif = norse.LIFCell(dt=DT)
        self.fc = nn.Linear(HIDDEN * 64, 10)
        self.out = norse.LICell(dt=DT)

    def forward(self, x: Tensor) -> Tensor:
        s1 = so = None
        voltages = []
        for ts in range(x.shape[0]):
            z, s1 = self.lif(self.conv(x[ts]), s1)
            v, so = self.out(self.fc(z.flatten(1)), so)
            voltages.append(v)
        return torch.stack(voltages)


def norse_tutorial(T: int) -> tuple[nn.Module, Readout]:
    return NorseTutorial(), _mean


def _spikingjelly_net(mode: str) -> nn.Module:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    net = nn.Sequential(
        layer.Conv2d(1, HIDDEN, 3, padding=1, bias=False),
        layer.BatchNorm2d(HIDDEN),
        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan()),
        layer.Flatten(),
        layer.Linear(HIDDEN * 64, 10),
    )
    functional.set_step_mode(net, mode)
    return net


def spikingjelly_multi(T: int) -> tuple[nn.Module, Readout]:
    return _spikingjelly_net("m"), _mean


def spikingjelly_single(T: int) -> tuple[nn.Module, Readout]:
    return _spikingjelly_net("s"), _mean


class TorchSequence(nn.Module):
    """Plain PyTorch on ``[T, B, C, H, W]``: per-step conv folded over T, the core LIF, a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, HIDDEN, 3, padding=1)
        self.lif = gac.LIF()
        self.fc = nn.Linear(HIDDEN * 64, 10)

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = self.conv(x.flatten(0, 1)).view(T, B, HIDDEN, *x.shape[-2:])
        return self.fc(self.lif(y).flatten(2))


def torch_sequence(T: int) -> tuple[nn.Module, Readout]:
    return TorchSequence(), _mean


# name -> (factory, framework, mode)
SHAPES: dict[str, tuple[Callable[..., tuple[nn.Module, Readout]], str, str]] = {
    "snntorch-sequential": (snntorch_sequential, "snntorch", "step"),
    "snntorch-custom": (snntorch_custom, "snntorch", "step"),
    "snntorch-tutorial-loop": (snntorch_tutorial, "snntorch", "loop"),
    "norse-cells": (norse_cells, "norse", "step"),
    "norse-sequence": (norse_sequence, "norse", "sequence"),
    "norse-tutorial-loop": (norse_tutorial, "norse", "sequence"),
    "spikingjelly-m": (spikingjelly_multi, "spikingjelly", "m"),
    "spikingjelly-s": (spikingjelly_single, "spikingjelly", "s"),
    "torch": (torch_sequence, "torch", "sequence"),
}


T = 4
NAMES = list(SHAPES)


def build(name: str, **kwargs: Any) -> tuple[gac.GACNet, Readout]:
    factory, _, _ = SHAPES[name]
    backbone, readout = factory(T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        net = gac.wrap(backbone, T=T, in_channels=1, **kwargs)
    return net, readout


def leaves(out: Any) -> list[Tensor]:
    return list(out) if isinstance(out, tuple) else [out]


@lru_cache(maxsize=1)
def digits(n: int = 320) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target[:n], dtype=torch.long)
    return x, y


@pytest.mark.parametrize("name", NAMES)
def test_detects_framework_and_mode(name: str) -> None:
    net, _ = build(name)
    _, framework, mode = SHAPES[name]
    assert (net.framework, net.mode) == (framework, mode)
    assert isinstance(net.encoder, gac.GACEncoder)


@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_static_and_sequence(name: str) -> None:
    net, readout = build(name)
    for x in (torch.rand(5, 1, 8, 8), torch.rand(T, 5, 1, 8, 8)):
        out = net(x)
        for leaf in leaves(out):
            assert leaf.shape == (T, 5, 10)
        assert readout(out).shape == (5, 10)


@pytest.mark.parametrize("name", NAMES)
def test_fresh_state_every_call_also_across_batch_sizes(name: str) -> None:
    net, _ = build(name)
    x = torch.rand(6, 1, 8, 8)
    first = leaves(net(x))
    # straight after: a leaked membrane would show here
    for a, b in zip(first, leaves(net(x)), strict=True):
        assert torch.equal(a, b)
    leaves(net(torch.rand(3, 1, 8, 8) + 0.5))  # another batch size, strong input
    again = leaves(net(x))
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    net.eval()
    ev1 = leaves(net(x))
    leaves(net(torch.rand(2, 1, 8, 8)))
    for a, b in zip(ev1, leaves(net(x)), strict=True):
        assert torch.equal(a, b)


def test_bare_snntorch_backbone_does_leak_state_so_the_reset_matters() -> None:
    backbone, _ = snntorch_sequential(T)
    x = torch.rand(4, 1, 8, 8) * 3
    first = torch.stack([backbone(x)[1] for _ in range(T)])
    second = torch.stack([backbone(x)[1] for _ in range(T)])  # no reset: membranes carry over
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_encoder_and_backbone(name: str) -> None:
    net, readout = build(name)
    x = torch.rand(4, 1, 8, 8)
    loss = readout(net(x)).pow(2).sum()
    loss.backward()
    enc = [p.grad for p in net.encoder.parameters()]
    assert all(g is not None for g in enc)
    assert sum(float(g.abs().sum()) for g in enc) > 0
    grads = [p.grad for p in net.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads[:1])
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


@pytest.mark.parametrize("name", NAMES)
def test_short_training_on_digits_lowers_the_loss(name: str) -> None:
    x, y = digits()
    net, readout = build(name)
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)

    def full_loss() -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(readout(net(x)), y))

    before = full_loss()
    for step in range(20):
        batch = slice((step % 5) * 64, (step % 5) * 64 + 64)
        loss = nn.functional.cross_entropy(readout(net(x[batch])), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = full_loss()
    assert after < 0.6 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_follows_backbone_dtype(name: str) -> None:
    """float64 end to end: encoder, code, backbone outputs, gradients; then back to float32."""
    factory, framework, _ = SHAPES[name]
    if framework == "snntorch":  # its built-in surrogates return float32 spikes whatever the input
        backbone, readout = factory(T, spike_grad=dtype_preserving_spike)
    else:
        backbone, readout = factory(T)
    backbone = backbone.double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        net = gac.wrap(backbone, T=T, in_channels=1)
    assert all(p.dtype == torch.float64 for p in net.encoder.parameters())
    out = net(torch.rand(3, 1, 8, 8, dtype=torch.float64))
    assert all(leaf.dtype == torch.float64 for leaf in leaves(out))
    readout(out).sum().backward()
    assert net.encoder.conv.weight.grad.dtype == torch.float64
    net.float()  # and back: the encoder moves with the net
    out = net(torch.rand(3, 1, 8, 8))
    assert all(leaf.dtype == torch.float32 for leaf in leaves(out))


@pytest.mark.parametrize("name", ["snntorch-sequential", "norse-cells", "spikingjelly-m"])
def test_follows_backbone_device(name: str) -> None:
    factory, _, _ = SHAPES[name]
    backbone, _ = factory(T)
    backbone.to("meta")  # a device other than the default, without needing a GPU
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        net = gac.wrap(backbone, T=T, in_channels=1)
    assert {p.device.type for p in net.encoder.parameters()} == {"meta"}
    assert {b.device.type for b in net.encoder.buffers()} == {"meta"}


@pytest.mark.parametrize("name", NAMES)
def test_binarize_feeds_binary_spikes_to_the_backbone(name: str) -> None:
    net, readout = build(name, binarize=True)
    seen: list[Tensor] = []
    first = next(m for m in net.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    handle = first.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        out = net(torch.rand(4, 1, 8, 8) * 2)
    finally:
        handle.remove()
    values = torch.cat([s.flatten() for s in seen]).unique()
    assert set(values.tolist()) <= {0.0, 1.0}
    assert 1.0 in values.tolist()  # some spikes get through
    readout(out).sum().backward()
    assert float(net.encoder.conv.weight.grad.abs().sum()) > 0  # straight-through gradient
