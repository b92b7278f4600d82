"""What the coding-gac and coding-stem mutation runs found unpinned (tests/README.md, "Mutation testing").

The gate unit's and the attentions' messages for bad input (each names the argument and what
arrived), the unit's shape check with the conv temporal attention (no fixed ``T``), the sequence
path of the gate variants (its step count comes from ``u``'s first dimension), ``binarize``'s
threshold at a dead gate (a gate of exactly 0.5 keeps no spike: ``[O > 0.5]``), and the
statistics' ``constant`` flag at its tolerance (a spread of exactly the tolerance is constant);
the functional ``gated_lif``'s defaults; the encoder's memory modes and lean's refusals; the static
stem's training-mode BatchNorm against ``nn.BatchNorm2d`` on the ``T`` copies (including one or two
values per channel, ``momentum=None`` and another ``eps``); ``output_size`` against the stem.
"""

from __future__ import annotations

import pytest
import torch

import gac_coding as gac
from gac_coding.attention import ConvTemporalAttention, GatedAttentionUnit, TemporalAttention, combine_gate
from gac_coding.coding.gate_stats import CONSTANT_GATE_TOLERANCE, GateStatistics

F64 = torch.float64


def test_bad_input_messages_name_the_argument_and_what_arrived() -> None:
    unit = GatedAttentionUnit(3, T=2)
    with pytest.raises(TypeError, match=r"^u: expected a torch.Tensor, got list$"):
        unit([1.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^u: expected \[T=2, B, C=3, H, W\], got shape \(2, 1, 4, 4\)$"):
        unit(torch.rand(2, 1, 4, 4))
    with pytest.raises(
        ValueError, match=r"^T: a static u \(one step standing for all\) needs the number of steps$"
    ):
        unit.gate_and_fire(torch.rand(1, 3, 4, 4), static=True)
    with pytest.raises(ValueError, match=r"^u: expected \[T=2, B, \.\.\.\], got shape \(2, 3\)$"):
        TemporalAttention(2)(torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"^u: expected \[T, B, \.\.\.\], got shape \(2, 3\)$"):
        ConvTemporalAttention()(torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"^sca: gate='product' needs the spatial-channel scores, got None$"):
        combine_gate(torch.zeros(2, 1), None, "product")


def test_the_attentions_take_any_input_of_three_dimensions_or_more() -> None:
    """``[T, B, N]`` (already flat) is enough: TA pools the mean and the maximum over ``N``."""
    torch.manual_seed(3)
    u = torch.rand(3, 2, 7, dtype=F64)
    for ta in (ConvTemporalAttention().double(), TemporalAttention(3).double()):
        want = ta.from_stats(u.mean(2), u.amax(2))
        assert torch.equal(ta(u), want)
        assert torch.equal(ta(u.view(3, 2, 7, 1)), want)


def test_the_unit_with_the_conv_attention_takes_any_T_and_checks_the_rest() -> None:
    torch.manual_seed(0)
    unit = GatedAttentionUnit(3, T=2, temporal_attention="conv").double()
    for T in (1, 3, 5):  # no T-sized weights: any number of steps
        u = torch.rand(T, 2, 3, 4, 4, dtype=F64) * 3
        out, spikes, gate, _ = unit.gate_and_fire(u)
        assert torch.equal(unit(u), out) and out.shape == u.shape
        assert torch.equal(out, gate * spikes)
    with pytest.raises(ValueError, match=r"^u: expected \[T, B, C=3, H, W\], got shape \(2, 2, 4, 4, 4\)$"):
        unit(torch.rand(2, 2, 4, 4, 4))  # four channels where the unit has three


@pytest.mark.parametrize("gate", ["separate", "sum", "temporal"])
def test_a_variant_on_a_sequence_runs_every_step_of_u(gate: str) -> None:
    """The variants' LIF and gate on a sequence ``[T, B, ...]`` with ``T`` different from ``B``:
    as many steps as ``u`` has, each the step-by-step LIF's."""
    torch.manual_seed(1)
    unit = GatedAttentionUnit(2, T=3, gate=gate).double()
    u = torch.rand(3, 5, 2, 4, 4, dtype=F64) * 3
    out, spikes, _, ta = unit.gate_and_fire(u)
    assert out.shape == u.shape and ta.shape == (3, 5)
    v = torch.zeros_like(u[0])
    for t in range(3):  # the LIF by hand: charge, fire at the threshold, hard reset to 0
        v = v * unit.params.decay + u[t]
        s = (v >= unit.params.threshold).to(F64)
        assert torch.equal(spikes[t], s), t
        v = v * (1 - s)


def test_binarize_keeps_no_spike_where_a_dead_gate_is_exactly_one_half() -> None:
    torch.manual_seed(2)
    enc = gac.GACEncoder(1, 4, T=2, binarize=True).double().eval()
    with torch.no_grad():
        torch.nn.init.zeros_(enc.gate.ta.fc2.weight)  # TA = 0: the paper's gate is sigmoid(0) = 0.5
        enc.bn.bias.fill_(2.0)  # every neuron fires
    out = enc(torch.rand(3, 1, 5, 5, dtype=F64))
    assert enc.last_spikes is not None and bool((enc.last_spikes == 1).all())
    assert enc.last_gate is not None and bool((enc.last_gate == 0.5).all())
    assert bool((out == 0).all())  # [O > 0.5] with O = 0.5 everywhere


def test_the_constant_flag_includes_a_spread_of_exactly_the_tolerance() -> None:
    stats = GateStatistics()
    gate = torch.zeros(2, 1, 1, 2, 2, dtype=F64)
    gate[1, 0, 0, 1, 1] = CONSTANT_GATE_TOLERANCE  # max - min == the tolerance, to the bit
    stats.update(gate, torch.ones(2, 1, dtype=F64))
    read = stats.read()
    assert read is not None and read["gate_max"] - read["gate_min"] == CONSTANT_GATE_TOLERANCE
    assert read["constant"]
    gate[1, 0, 0, 1, 1] = 2 * CONSTANT_GATE_TOLERANCE
    stats.reset()
    stats.update(gate, torch.ones(2, 1, dtype=F64))
    read = stats.read()
    assert read is not None and not read["constant"]


def test_the_functional_gated_lif_defaults_to_the_cifar_recipe() -> None:
    """``gac_coding.attention.gated_lif(u, ta, sca)``: decay 0.5, threshold 1, the triangle
    surrogate, the reset in the graph: the same outputs and gradients as the op with those
    settings spelled out, and other than with any one of them changed."""
    from gac_coding import ops
    from gac_coding.attention import gated_lif
    from gac_coding.ops.params import LIFParams

    def run(fn):  # type: ignore[no-untyped-def]
        g = torch.Generator().manual_seed(5)
        u = (torch.rand(3, 2, 2, 3, 3, generator=g, dtype=F64) * 2.4).requires_grad_()
        ta = torch.randn(3, 2, generator=g, dtype=F64)
        sca = torch.randn(3, 2, 2, 3, 3, generator=g, dtype=F64)
        out, spikes, gate = fn(u, ta, sca)
        (out * torch.linspace(-1, 2, out.numel(), dtype=F64).view(out.shape)).sum().backward()
        return out.detach(), spikes, gate, u.grad

    default = run(lambda u, ta, sca: gated_lif(u, ta, sca))
    spelled = run(lambda u, ta, sca: ops.gated_lif(u, ta, sca, LIFParams(0.5, 1.0, "triangle", False)))
    for a, b in zip(default, spelled, strict=True):
        assert torch.equal(a, b)
    for changed in (
        LIFParams(0.6, 1.0, "triangle", False),
        LIFParams(0.5, 1.1, "triangle", False),
        LIFParams(0.5, 1.0, "rectangle", False),
        LIFParams(0.5, 1.0, "triangle", True),
    ):
        other = run(lambda u, ta, sca, p=changed: ops.gated_lif(u, ta, sca, p))
        assert not all(torch.equal(a, b) for a, b in zip(default, other, strict=True)), changed


def test_the_encoder_memory_modes_reach_the_gate_and_keep_less() -> None:
    """``memory=`` on the encoder: ``"lean"`` and ``"checkpoint"`` run its gate lean, and each
    keeps less for the backward pass than the default (the checkpoint only the encoder's input),
    with the same numbers."""
    from gac_coding.ops.memory import saved_tensor_bytes

    x = torch.rand(2, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(6))
    kept, outs = {}, {}
    for mode in ("default", "lean", "checkpoint"):
        torch.manual_seed(7)
        enc = gac.GACEncoder(1, 4, T=3, memory=mode).double()
        assert enc.gate.memory == ("default" if mode == "default" else "lean")
        with saved_tensor_bytes() as saved:
            out = enc(x.clone().requires_grad_())
        kept[mode], outs[mode] = saved.bytes, out.detach()
        out.sum().backward()
    assert kept["checkpoint"] < kept["lean"] < kept["default"]
    assert kept["checkpoint"] <= x.numel() * 8  # the input alone
    assert torch.equal(outs["lean"], outs["default"]) and torch.equal(outs["checkpoint"], outs["default"])


@pytest.mark.parametrize(
    ("options", "got"),
    [
        ({"gate": "sum"}, "gate='sum', ta_source='stem'"),
        ({"ta_source": "membrane"}, "gate='product', ta_source='membrane'"),
    ],
)
def test_lean_refuses_the_gate_variants_by_name(options: dict, got: str) -> None:
    for mode in ("lean", "checkpoint"):
        with pytest.raises(ValueError, match=r"^memory \(GatedAttentionUnit\): 'lean' .*got " + got):
            gac.GACEncoder(1, 4, T=2, memory=mode, **options)
    with pytest.raises(ValueError, match=r"^memory \(GatedAttentionUnit\): 'lean' .*got " + got):
        GatedAttentionUnit(4, T=2, memory="lean", **options)
    assert GatedAttentionUnit(4, T=2, **options).memory == "default"


def test_lean_refuses_a_callable_surrogate_naming_the_gate_unit() -> None:
    def steep(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(4 * x)

    with pytest.raises(
        ValueError, match=r"^memory \(GatedAttentionUnit\): the lean ops take the named surrogates .*'steep'"
    ):
        GatedAttentionUnit(4, T=2, surrogate=steep, memory="lean")


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(("batch", "size"), [(2, 5), (1, 1), (2, 1)])
def test_the_static_stem_batchnorm_equals_batchnorm_of_the_T_copies(batch: int, size: int, momentum) -> None:
    """The static fast path's training-mode BatchNorm (one step standing for ``T`` copies) against
    ``nn.BatchNorm2d`` on the ``T`` copies stacked into the batch: outputs, running statistics over
    two batches (with ``momentum=None``, the cumulative average) and the batch counter, float64;
    including one value per channel and step (batch 1 and a 1x1 map: zero variance, the output is
    the bias; two values, the smallest count with a variance); an ``eps`` other than the default."""
    from copy import deepcopy

    T = 2
    torch.manual_seed(8)
    enc = gac.GACEncoder(2, 4, T=T).double().train()
    enc.bn.momentum = momentum
    enc.bn.eps = 1e-3
    with torch.no_grad():
        enc.bn.weight.uniform_(0.5, 2.0)
        enc.bn.bias.uniform_(-1.0, 1.0)
    naive = deepcopy(enc.bn)
    g = torch.Generator().manual_seed(9)
    for _ in range(2):
        x = torch.rand(batch, 2, size, size, generator=g, dtype=F64)
        u, static = enc.membrane(x)
        y = enc.conv(x).detach()
        want = naive(y.repeat(T, 1, 1, 1))
        assert static and u.shape == y.shape
        torch.testing.assert_close(u, want[:batch], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(enc.bn.running_mean, naive.running_mean, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(enc.bn.running_var, naive.running_var, rtol=1e-12, atol=1e-15)
        assert int(enc.bn.num_batches_tracked) == int(naive.num_batches_tracked)
    if batch * size * size == 1:
        torch.testing.assert_close(u, enc.bn.bias.detach().view(1, 4, 1, 1).expand_as(u), rtol=0, atol=1e-12)


def test_output_size_is_the_stems_output_size() -> None:
    for kwargs in (
        {},
        {"kernel_size": 5, "stride": 2, "padding": 1},
        {"kernel_size": 7, "stride": 3, "padding": 3},
    ):
        enc = gac.GACEncoder(1, 2, T=2, **kwargs).eval()
        for h, w in ((9, 9), (11, 8), (16, 13)):
            u, _ = enc.membrane(torch.rand(1, 1, h, w))
            assert enc.output_size(h, w) == tuple(u.shape[-2:]), (kwargs, h, w)
