"""``gac_coding.wrap`` on real backbones of every shape the adapters support.

The backbones are small and written as each framework's tutorials write them. Every factory returns
``(backbone, readout)``: ``readout`` maps the wrapped net's output to logits ``[B, 10]`` (mean over
time of a real-valued output: a membrane, a leaky integrator, a Linear).
Inputs are 1-channel 8x8 images (scikit-learn's digits) and ``T`` steps.
"""

from __future__ import annotations

import copy
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


# ---------------------------------------------------------------- the wrapped output, by hand
# Each reference below takes ``code = net.encoder(x)`` and steps the backbone the way its framework's
# own tutorials do, carrying the state from step to step by hand. The nets are float64 (snnTorch
# with a dtype-keeping surrogate) and the input is strong enough that every spiking layer fires, so
# a step fed out of order or a state dropped between steps changes the output.
def _explicit_leaky(neuron: nn.Module) -> nn.Module:
    """An ``init_hidden=False`` twin of an snnTorch ``Leaky`` (same beta, threshold, reset)."""
    import snntorch as snn

    return snn.Leaky(
        beta=float(neuron.beta), threshold=float(neuron.threshold), spike_grad=dtype_preserving_spike
    )


def by_hand_snntorch_sequential(backbone: nn.Module, code: Tensor) -> tuple[Tensor, Tensor]:
    conv, lif1, flatten, fc, lif2 = backbone
    lif1, lif2 = _explicit_leaky(lif1), _explicit_leaky(lif2)
    mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
    spikes, membranes = [], []
    for t in range(code.shape[0]):
        spk1, mem1 = lif1(conv(code[t]), mem1)
        spk2, mem2 = lif2(fc(flatten(spk1)), mem2)
        spikes.append(spk2)
        membranes.append(mem2)
    return torch.stack(spikes), torch.stack(membranes)


def by_hand_snntorch_custom(backbone: nn.Module, code: Tensor) -> tuple[Tensor, Tensor]:
    import snntorch as snn

    conv, synaptic = backbone.block
    syn_neuron = snn.Synaptic(
        alpha=float(synaptic.alpha), beta=float(synaptic.beta), spike_grad=dtype_preserving_spike
    )
    out = _explicit_leaky(backbone.out)
    syn, mem1 = syn_neuron.init_synaptic()
    mem2 = out.init_leaky()
    spikes, membranes = [], []
    for t in range(code.shape[0]):
        spk1, syn, mem1 = syn_neuron(conv(code[t]), syn, mem1)
        spk2, mem2 = out(backbone.fc(spk1.flatten(1)), mem2)
        spikes.append(spk2)
        membranes.append(mem2)
    return torch.stack(spikes), torch.stack(membranes)


def by_hand_snntorch_tutorial(backbone: nn.Module, code: Tensor) -> tuple[Tensor, Tensor]:
    mem1, mem2 = backbone.lif1.init_leaky(), backbone.lif2.init_leaky()
    spikes, membranes = [], []
    for t in range(code.shape[0]):
        spk1, mem1 = backbone.lif1(backbone.fc1(code[t].flatten(1)), mem1)
        spk2, mem2 = backbone.lif2(backbone.fc2(spk1), mem2)
        spikes.append(spk2)
        membranes.append(mem2)
    return torch.stack(spikes), torch.stack(membranes)


def by_hand_norse_cells(backbone: nn.Module, code: Tensor) -> Tensor:
    conv, lif, flatten, fc, li = backbone
    s1 = s2 = None
    voltages = []
    for t in range(code.shape[0]):
        z, s1 = lif(conv(code[t]), s1)
        v, s2 = li(fc(flatten(z)), s2)
        voltages.append(v)
    return torch.stack(voltages)


def by_hand_norse_sequence(backbone: nn.Module, code: Tensor) -> Tensor:
    """The whole-sequence ``LIF``/``LI`` replaced by their cells, stepped with the state threaded."""
    import norse.torch as norse

    conv, lif, flatten, fc, li = backbone
    lif_cell = norse.LIFCell(p=lif.p, dt=DT)
    li_cell = norse.LICell(p=li.p, dt=DT)
    s1 = s2 = None
    voltages = []
    for t in range(code.shape[0]):
        z, s1 = lif_cell(conv.lifted_module(code[t]), s1)
        v, s2 = li_cell(fc.lifted_module(z.flatten(1)), s2)
        voltages.append(v)
    return torch.stack(voltages)


def by_hand_norse_tutorial(backbone: nn.Module, code: Tensor) -> Tensor:
    return backbone(code)  # the module loops over the sequence itself


def by_hand_spikingjelly(backbone: nn.Module, code: Tensor) -> Tensor:
    """A single-step copy with the same weights, reset, then called once per step in order."""
    from spikingjelly.activation_based import functional

    single = copy.deepcopy(backbone)
    functional.set_step_mode(single, "s")
    functional.reset_net(single)
    return torch.stack([single(code[t]) for t in range(code.shape[0])])


def by_hand_torch(backbone: nn.Module, code: Tensor) -> Tensor:
    return backbone(code)  # a plain PyTorch backbone takes the whole [T, B, ...] code


BY_HAND: dict[str, Callable[[nn.Module, Tensor], Any]] = {
    "snntorch-sequential": by_hand_snntorch_sequential,
    "snntorch-custom": by_hand_snntorch_custom,
    "snntorch-tutorial-loop": by_hand_snntorch_tutorial,
    "norse-cells": by_hand_norse_cells,
    "norse-sequence": by_hand_norse_sequence,
    "norse-tutorial-loop": by_hand_norse_tutorial,
    "spikingjelly-m": by_hand_spikingjelly,
    "spikingjelly-s": by_hand_spikingjelly,
    "torch": by_hand_torch,
}


def build_float64(name: str, steps: int = T) -> gac.GACNet:
    factory, framework, _ = SHAPES[name]
    kwargs = {"spike_grad": dtype_preserving_spike} if framework == "snntorch" else {}
    torch.manual_seed(1)
    backbone, _ = factory(steps, **kwargs)
    with torch.no_grad():  # default init is too weak to make every layer fire on digits
        for m in backbone.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(6.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        net = gac.wrap(backbone.double(), T=steps, in_channels=1)
    # eval: a BatchNorm uses its running statistics, the same whether it sees [T * B, ...] at
    # once (SpikingJelly "m") or [B, ...] per step ("s"); in training their batch statistics differ
    return net.eval()


def spike_counts(net: gac.GACNet, x: Tensor) -> dict[str, int]:
    """Spikes emitted by each spiking layer of the backbone during ``net(x)``."""
    from gac_coding.adapters import is_neuron

    counts: dict[str, int] = {}

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            spikes = out[0] if isinstance(out, tuple) else out
            counts[name] = counts.get(name, 0) + int(spikes.detach().ne(0).sum())

        return hook

    handles = [
        m.register_forward_hook(record(n))
        for n, m in net.backbone.named_modules()
        if n and is_neuron(m) and type(m).__name__ not in ("LI", "LICell")  # LI: no spikes
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return counts


def strong_digits() -> Tensor:
    return digits()[0][:8].double() * 3  # the encoder's LIF fires on most pixels


@pytest.mark.parametrize("name", NAMES)
def test_wrapped_output_equals_a_hand_written_loop_over_the_code(name: str) -> None:
    net = build_float64(name)
    x = strong_digits()
    counts = spike_counts(net, x)
    if name != "torch":
        assert counts and all(c > 0 for c in counts.values()), counts  # every spiking layer fires
    with torch.no_grad():
        wrapped = leaves(net(x))
        code = net.encoder(x)
        expected = leaves(BY_HAND[name](net.backbone, code))
    assert code.ne(0).any()
    assert len(wrapped) == len(expected)
    for got, want in zip(wrapped, expected, strict=True):
        assert got.dtype == want.dtype == torch.float64
        # Same operations in the same order except for the Norse whole-sequence modules (LIF
        # against LIFCell): float64 round-off is ~1e-16, far below any change of one spike.
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert not torch.equal(wrapped[-1][0], wrapped[-1][-1])  # the output changes over time


def test_spikingjelly_single_step_equals_multi_step_with_the_same_weights() -> None:
    multi = build_float64("spikingjelly-m")
    single = build_float64("spikingjelly-s")
    single.load_state_dict(multi.state_dict())
    x = strong_digits()
    with torch.no_grad():
        a, b = multi(x), single(x)
    assert a.ne(0).any() and not torch.equal(a[0], a[-1])  # nonzero, and varies over time
    assert torch.equal(a, b)


def snntorch_whole_sequence_float64(steps: int = T) -> gac.GACNet:
    """snnTorch's whole-sequence neuron (``StateLeaky``, mode ``"sequence"``), float64."""
    from snntorch._neurons.stateleaky import StateLeaky

    torch.manual_seed(1)
    backbone = nn.Sequential(nn.Flatten(2), nn.Linear(64, 10), StateLeaky(beta=0.8, channels=10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        return gac.wrap(backbone.double(), T=steps, in_channels=1)


def test_snntorch_whole_sequence_neuron_equals_its_recurrence() -> None:
    net = snntorch_whole_sequence_float64()
    backbone = net.backbone
    assert (net.framework, net.mode) == ("snntorch", "sequence")
    x = strong_digits()
    with torch.no_grad():
        spikes, membrane = net(x)
        code = net.encoder(x)
        decay = torch.exp(-1 / backbone[2].tau)  # StateLeaky's kernel: exp(-t / tau)
        mem = torch.zeros_like(membrane[0])
        expected = []
        for t in range(T):
            mem = decay * mem + backbone[1](code[t].flatten(1))
            expected.append(mem)
    torch.testing.assert_close(membrane, torch.stack(expected), rtol=0, atol=1e-12)
    assert spikes.ne(0).any() and spikes.eq(0).any()
