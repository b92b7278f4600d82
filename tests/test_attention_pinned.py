"""What the coding-gac mutation run found unpinned in the attention, the gate unit and the GAC
encoder (tests/README.md, "Mutation testing"), beyond ``test_coding_gac_pinned.py``.

The documented defaults (the paper's ``r_t = 2``, ``r_sc = 1``, ``k = 4``, no biases, the CIFAR
LIF) on every constructor, and the encoder's settings reaching its gate; the sizes' messages naming
the argument; the reprs a user sees when printing a model; the record of a fresh or copied encoder
and reading the statistics without a reset; ``constant_over_time`` at its tolerance; the defaults
of ``combine_gate`` and ``membrane_of``; the functional ``gated_lif`` with every argument given
(against the slow formulation); the module's backend setting reaching the ops; and the variants'
gate in the input's dtype under autocast.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from slow_reference import slow_gated_lif

import gac_coding as gac
from gac_coding.attention import (
    ConvTemporalAttention,
    GatedAttentionUnit,
    SpatialChannelAttention,
    TemporalAttention,
    combine_gate,
    gated_lif,
    make_temporal_attention,
    membrane_of,
)
from gac_coding.coding.gate_stats import CONSTANT_GATE_TOLERANCE, GateStatistics
from gac_coding.ops.backends import BACKEND_ENV, use_backend
from gac_coding.ops.params import RECIPES, LIFParams

F64 = torch.float64


# ------------------------------------------------------------------------------------ defaults


def _sca_shape(sca: SpatialChannelAttention | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    assert sca is not None
    return tuple(sca.conv1.weight.shape), tuple(sca.conv2.weight.shape)


def test_the_attentions_default_to_the_papers_sizes_without_biases() -> None:
    """``r_t = 2`` (hidden ``max(1, T // 2)``), ``r_sc = 1``, ``k = 4``, no bias anywhere; the conv
    attention ``k = 3``, 4 filters (its docstring); at ``T = 6`` a ratio of 3 would give 2 hidden
    units instead of 3."""
    ta = TemporalAttention(6)
    assert (ta.fc1.weight.shape, ta.fc2.weight.shape) == ((3, 6), (6, 3))
    assert ta.fc1.bias is None and ta.fc2.bias is None
    assert make_temporal_attention("mlp", 6).extra_repr() == ta.extra_repr()
    conv = ConvTemporalAttention()
    assert (conv.conv1.weight.shape, conv.conv2.weight.shape) == ((4, 1, 3), (1, 4, 3))
    assert conv.conv1.bias is None and conv.conv2.bias is None
    assert make_temporal_attention("conv", 6).extra_repr() == conv.extra_repr()
    assert _sca_shape(SpatialChannelAttention(6)) == ((6, 6, 4, 4), (6, 6, 4, 4))
    assert _sca_shape(SpatialChannelAttention(6, 2, 3)) == ((3, 6, 3, 3), (6, 3, 3, 3))
    for module in (
        GatedAttentionUnit(6, T=6),
        GatedAttentionUnit(6, T=6, temporal_attention="conv"),
        gac.GACEncoder(1, 6, T=6).gate,
    ):
        assert module.params == RECIPES["cifar"] == LIFParams(0.5, 1.0, "triangle", False)
        assert module.backend == "auto" and module.options["ta_bias"] is False
        assert _sca_shape(module.sca) == ((6, 6, 4, 4), (6, 6, 4, 4))
        if isinstance(module.ta, TemporalAttention):
            assert module.ta.fc1.weight.shape == (3, 6)


def test_biases_reach_both_layers_of_either_temporal_attention() -> None:
    for ta in (TemporalAttention(4, bias=True), make_temporal_attention("mlp", 4, bias=True)):
        assert isinstance(ta, TemporalAttention)
        assert ta.fc1.bias is not None and ta.fc2.bias is not None
    for conv in (ConvTemporalAttention(bias=True), make_temporal_attention("conv", 4, bias=True)):
        assert isinstance(conv, ConvTemporalAttention)
        assert conv.conv1.bias is not None and conv.conv2.bias is not None
    for activation in ("leaky_relu", "gelu"):
        assert make_temporal_attention("mlp", 4, activation=activation).activation == activation
        assert make_temporal_attention("conv", 4, activation=activation).activation == activation


def test_the_encoders_settings_reach_its_gate() -> None:
    """Every non-default setting of the encoder's LIF and attention is the gate's (a dropped one
    would leave the gate at its own default)."""
    enc = gac.GACEncoder(
        1, 4, T=4, decay=0.25, threshold=0.7, surrogate="rectangle", detach_reset=True,
        ta_ratio=4, sca_ratio=2, sca_kernel=3, backend="eager",
    )  # fmt: skip
    assert enc.gate.params == LIFParams(0.25, 0.7, "rectangle", True)
    assert isinstance(enc.gate.ta, TemporalAttention) and enc.gate.ta.fc1.weight.shape == (1, 4)
    assert _sca_shape(enc.gate.sca) == ((2, 4, 3, 3), (4, 2, 3, 3))
    assert enc.gate.backend == "eager" == enc.backend
    unit = GatedAttentionUnit(4, T=4, sca_kernel=3, detach_reset=True)
    assert _sca_shape(unit.sca) == ((4, 4, 3, 3), (4, 4, 3, 3))
    assert unit.params == LIFParams(0.5, 1.0, "triangle", True)


# ------------------------------------------------------------------------------------ messages


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: TemporalAttention(0), "T"),
        (lambda: TemporalAttention(4, 0), "ratio"),
        (lambda: ConvTemporalAttention(0), "kernel_size"),
        (lambda: ConvTemporalAttention(3, 0), "hidden"),
        (lambda: ConvTemporalAttention().check_steps(0), "T"),
        (lambda: SpatialChannelAttention(0), "channels"),
        (lambda: SpatialChannelAttention(4, 0), "ratio"),
        (lambda: SpatialChannelAttention(4, 1, 0), "kernel_size"),
        (lambda: GatedAttentionUnit(4, T=0), "T"),
        (lambda: GatedAttentionUnit(0, T=2), "channels"),
    ],
)
def test_a_size_below_one_is_refused_naming_the_argument(make, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=rf"^{name}: expected an integer >= 1, got 0$"):
        make()


def test_the_conv_attention_accepts_any_number_of_steps() -> None:
    conv = ConvTemporalAttention()
    for steps in (1, 4, 9):
        conv.check_steps(steps)  # no T-sized weights: nothing to refuse
    with pytest.raises(TypeError, match=r"^T: expected an int, got float$"):
        conv.check_steps(2.0)  # type: ignore[arg-type]


def test_lean_refuses_a_gate_variant_with_the_whole_message() -> None:
    with pytest.raises(ValueError) as info:
        GatedAttentionUnit(4, T=2, gate="separate", memory="lean")
    assert str(info.value) == (
        "memory (GatedAttentionUnit): 'lean' (and a model's 'checkpoint', which runs its encoder lean) "
        "applies to the paper's gate (gate='product', ta_source='stem'), got gate='separate', "
        "ta_source='stem'; keep memory='default' with these variants"
    )


# ------------------------------------------------------------------------------------ reprs


def test_the_reprs_show_the_settings_that_differ_from_the_papers() -> None:
    """What printing a model shows: the options at the paper's value are left out (the temporal
    attention's kind always shown), the memory mode only when not the default."""
    assert TemporalAttention(4).extra_repr() == "width=4, ratio=2, bias=False, activation='relu'"
    assert TemporalAttention(4, 3, bias=True).extra_repr() == "width=4, ratio=3, bias=True, activation='relu'"
    assert ConvTemporalAttention().extra_repr() == "kernel_size=3, hidden=4, bias=False, activation='relu'"
    assert ConvTemporalAttention(5, 2, bias=True, activation="gelu").extra_repr() == (
        "kernel_size=5, hidden=2, bias=True, activation='gelu'"
    )
    assert GatedAttentionUnit(4, T=2).extra_repr() == "channels=4, temporal_attention='mlp', backend='auto'"
    assert GatedAttentionUnit(4, T=2, memory="lean").extra_repr() == (
        "channels=4, temporal_attention='mlp', backend='auto', memory='lean'"
    )
    unit = GatedAttentionUnit(
        4, T=2, temporal_attention="conv", backend="eager", ta_bias=True, ta_activation="gelu",
        ta_source="membrane", gate="separate",
    )  # fmt: skip
    assert unit.extra_repr() == (
        "channels=4, temporal_attention='conv', ta_bias=True, ta_activation='gelu', "
        "ta_source='membrane', gate='separate', backend='eager'"
    )
    assert repr(unit).startswith("GatedAttentionUnit(\n  channels=4, temporal_attention='conv', ta_bias=True")
    for memory, tail in (
        ("default", ""),
        ("lean", ", memory='lean'"),
        ("checkpoint", ", memory='checkpoint'"),
    ):
        enc = gac.GACEncoder(1, 4, T=2, memory=memory)
        assert enc.extra_repr() == "T=2, temporal_attention='mlp', binarize=False, backend='auto'" + tail


# ------------------------------------------------------------------------------------ record


def test_a_fresh_or_copied_encoder_has_no_record_and_reading_keeps_the_statistics() -> None:
    enc = gac.GACEncoder(1, 4, T=2).double()
    assert enc.last_spikes is None and enc.last_gate is None and enc.last_temporal_attention is None
    assert enc.gate_statistics() is None
    enc.eval()(torch.rand(3, 1, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(1)))
    assert enc.last_spikes is not None and enc.last_temporal_attention is not None
    first = enc.gate_statistics()
    assert first is not None and first["samples"] == 3 and first["calls"] == 1
    assert enc.gate_statistics() == first  # reading does not reset
    buffer = io.BytesIO()
    torch.save(enc, buffer)
    buffer.seek(0)
    for other in (
        copy.deepcopy(enc),
        pickle.loads(pickle.dumps(enc)),
        torch.load(buffer, weights_only=False),
    ):
        assert other.last_spikes is None and other.last_gate is None and other.last_temporal_attention is None
        assert other.gate_statistics() is None
    assert enc.last_spikes is not None  # the original keeps its record
    assert enc.gate_statistics(reset=True) == first
    assert enc.gate_statistics() is None


def test_the_constant_over_time_flag_includes_a_time_spread_of_exactly_the_tolerance() -> None:
    """Two steps at 0 and ``2 * tol``: every position's deviation over time is ``tol`` to the bit
    (halving and doubling are exact, ``sqrt(tol**2)`` rounds back to ``tol``)."""
    for scale, flag in ((2.0, True), (4.0, False)):
        gate = torch.zeros(2, 2, 1, 2, 2, dtype=F64)
        gate[1] = scale * CONSTANT_GATE_TOLERANCE
        stats = GateStatistics()
        stats.update(gate, torch.ones(2, 2, dtype=F64))
        read = stats.read()
        assert read is not None
        assert read["gate_time_std"] == scale / 2 * CONSTANT_GATE_TOLERANCE
        assert read["constant_over_time"] is flag and read["constant"] is False


def test_the_statistics_read_a_gate_in_its_memory_order() -> None:
    """The figures of a gate are those of its values in the order they lie in memory, to the bit
    (a channels-last gate is not copied into another order: the reductions read memory in order),
    and close to those of the same values in the other layout (the order changes rounding only)."""
    g = torch.Generator().manual_seed(8)
    gate = torch.rand(4, 3, 16, 9, 7, generator=g)
    ta = torch.randn(4, 3, generator=g)
    last = gate.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(gate.shape)
    assert last.stride()[2] == 1  # channels-last: C varies fastest

    def read(x: torch.Tensor) -> dict:
        stats = GateStatistics()
        stats.update(x, ta)
        figures = stats.read()
        assert figures is not None
        return figures

    assert read(gate) == read(gate.flatten(2))
    assert read(last) == read(gate.permute(0, 1, 3, 4, 2).flatten(2))
    for key, value in read(last).items():
        assert value == pytest.approx(read(gate)[key], rel=1e-6, abs=1e-12), key


# ------------------------------------------------------------------------------------ functions


def test_combine_gate_defaults_to_the_papers_product() -> None:
    g = torch.Generator().manual_seed(2)
    ta = torch.randn(3, 2, generator=g, dtype=F64)
    sca = torch.randn(3, 2, 4, 2, 2, generator=g, dtype=F64)
    want = torch.sigmoid(ta.view(3, 2, 1, 1, 1) * sca)
    assert torch.equal(combine_gate(ta, sca), want)
    assert torch.equal(combine_gate(ta, sca[0], static=True), torch.sigmoid(ta.view(3, 2, 1, 1, 1) * sca[0]))


def test_membrane_of_defaults_to_a_sequence() -> None:
    """``h_t = u_t + decay * h_{t-1} * (1 - s_{t-1})`` by hand on a sequence ``[T, B, N]``."""
    g = torch.Generator().manual_seed(3)
    u = torch.rand(3, 2, 4, generator=g, dtype=F64) * 2
    spikes = (torch.rand(3, 2, 4, generator=g, dtype=F64) > 0.5).to(F64)
    h = [u[0]]
    for t in (1, 2):
        h.append(u[t] + 0.25 * h[-1] * (1 - spikes[t - 1]))
    assert torch.equal(membrane_of(u, spikes, 0.25), torch.stack(h))


def test_the_functional_gated_lif_with_every_argument_given_equals_the_slow_formulation() -> None:
    """A static ``u`` with the ImageNet recipe (detached reset, rectangle surrogate): outputs and the
    gradients of ``u``, ``ta`` and ``sca`` against the step-by-step loop, float64."""
    g = torch.Generator().manual_seed(4)
    u = (torch.rand(2, 3, 2, 2, generator=g, dtype=F64) * 0.9).requires_grad_()
    ta = torch.randn(4, 2, generator=g, dtype=F64).requires_grad_()
    sca = torch.randn(2, 3, 2, 2, generator=g, dtype=F64).requires_grad_()
    weights = torch.linspace(-1, 2, 4 * u.numel(), dtype=F64).view(4, *u.shape)
    got = gated_lif(u, ta, sca, 0.25, 0.5, "rectangle", True, static=True, backend="eager")
    want = slow_gated_lif(u, ta, sca, 0.25, 0.5, "rectangle", True, True)
    assert bool(want[1].any()) and not bool(want[1].all())  # some spikes, with resets to detach
    for a, b in zip(got, want[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad((got[0] * weights).sum(), (u, ta, sca))
    slow_grads = torch.autograd.grad((want[0] * weights).sum(), (u, ta, sca))
    for a, b in zip(grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    attached = slow_gated_lif(u, ta, sca, 0.25, 0.5, "rectangle", False, True)
    assert not torch.equal(torch.autograd.grad((attached[0] * weights).sum(), u)[0], grads[0])


# ------------------------------------------------------------------------------------ backend


def test_a_modules_own_backend_is_the_one_its_ops_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The setting of the module (or the call) comes first: with ``"eager"`` the environment
    variable is not read, so a bad one there changes nothing, while ``"auto"`` reads it (and
    refuses it). Covers the paper's fused gate, a variant's LIF op, the encoder and the function."""
    g = torch.Generator().manual_seed(5)
    u = torch.rand(2, 2, 3, 4, 4, generator=g, dtype=F64) * 3
    x = torch.rand(2, 1, 5, 5, generator=g, dtype=F64)
    torch.manual_seed(0)
    units = {
        gate: GatedAttentionUnit(3, T=2, backend="eager", gate=gate).double() for gate in ("product", "sum")
    }
    enc = gac.GACEncoder(1, 3, T=2, backend="eager").double()
    ta, sca = torch.randn(2, 2, generator=g, dtype=F64), torch.randn(2, 3, 4, 4, generator=g, dtype=F64)

    def run() -> list[torch.Tensor]:
        return [units["product"](u), units["sum"](u), enc(x), gated_lif(u, ta, sca, backend="eager")[0]]

    with use_backend(None):
        monkeypatch.delenv(BACKEND_ENV, raising=False)
        before = run()
        monkeypatch.setenv(BACKEND_ENV, "fastest")
        after = run()
        for a, b in zip(before, after, strict=True):
            assert torch.equal(a, b)
        units["sum"].backend = "auto"
        with pytest.raises(ValueError, match=f"^{BACKEND_ENV}: expected one of"):
            units["sum"](u)


def test_a_recording_encoder_with_memory_checkpoint_compiles_without_the_checkpoint() -> None:
    """Under ``torch.compile`` a recording encoder with ``memory="checkpoint"`` runs without its
    checkpoint (the compiler's checkpoint allows no side effect such as the record): one graph
    (fullgraph), eager's numbers and gradients, and the record kept. (Left out of the mutation
    runs: it compiles.)"""
    torch._dynamo.reset()
    torch.manual_seed(9)
    enc = gac.GACEncoder(1, 4, T=2, memory="checkpoint").double()
    ref = gac.GACEncoder(1, 4, T=2).double()
    ref.load_state_dict(enc.state_dict())
    x = torch.rand(2, 1, 6, 6, dtype=F64, generator=torch.Generator().manual_seed(10))
    out = torch.compile(enc, fullgraph=True, backend="aot_eager")(x)
    out.square().sum().backward()
    want = ref(x)
    want.square().sum().backward()
    assert torch.equal(out, want)
    for p, q in zip(enc.parameters(), ref.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)
    assert enc.last_spikes is not None and ref.last_spikes is not None
    assert torch.equal(enc.last_spikes, ref.last_spikes)


# ------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("gate", ["separate", "temporal"])
def test_a_variants_gate_is_computed_in_the_dtype_of_u_under_autocast(gate: str) -> None:
    """Under CPU autocast the attentions' layers give bfloat16 scores; the variants' gate is made
    from them converted to the dtype of ``u`` (float32), as the formula on float32 scores: the
    sigmoids are not rounded to bfloat16."""
    torch.manual_seed(6)
    unit = GatedAttentionUnit(4, T=3, gate=gate)
    u = torch.rand(3, 2, 4, 5, 5, generator=torch.Generator().manual_seed(7)) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, spikes, got, ta = unit.gate_and_fire(u)
        raw_ta = unit.ta(u)
        raw_sca = None if unit.sca is None else unit.sca(u.flatten(0, 1)).view(u.shape)
    assert raw_ta.dtype == torch.bfloat16 and ta.dtype == torch.float32 and got.dtype == torch.float32
    t = ta.view(3, 2, 1, 1, 1)
    assert torch.equal(ta, raw_ta.float())
    if raw_sca is None:
        want = torch.sigmoid(t).expand(u.shape)
    else:
        assert raw_sca.dtype == torch.bfloat16
        want = torch.sigmoid(t) * torch.sigmoid(raw_sca.float())
    assert torch.equal(got, want)
    assert torch.equal(out, want * spikes)
