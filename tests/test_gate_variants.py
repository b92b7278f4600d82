"""The attention and gate variants of the encoder (docs/design/encoder.md §7) and the gate
statistics (§8).

Every variant is checked against the independent slow formulation of ``test_encoder.py`` (per-step
stem, BatchNorm by hand, the LIF loop, the temporal attention written out with its biases and
activation, pooled from ``U`` or from the membrane, the three gates written out) in float64, for
static frames (the fast path) and sequences, in training and eval mode, at the ``T`` the encoder
was built for and, for the T-agnostic attention, after ``set_timesteps``. The statistics are
checked on hand-built gates whose values are known, and against the recorded gate.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_encoder import _compare

import gac_coding as gac
from gac_coding.attention import (
    ATTENTION_OPTIONS,
    check_attention_option,
    combine_gate,
    membrane_of,
)
from gac_coding.coding.gate_stats import GateStatistics
from gac_coding.models import create_model

F64 = torch.float64


def _randomise(enc: gac.GACEncoder) -> None:
    """Non-trivial BatchNorm parameters and statistics, attention weights and biases of size ~1."""
    with torch.no_grad():
        enc.bn.weight.uniform_(0.5, 2.0)
        enc.bn.bias.uniform_(-0.3, 0.8)
        enc.bn.running_mean.uniform_(-0.2, 0.2)
        enc.bn.running_var.uniform_(0.5, 2.0)
        for p in enc.gate.ta.parameters():
            p.uniform_(-1.0, 1.0)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=30, deadline=None)
@given(
    temporal_attention=st.sampled_from(ATTENTION_OPTIONS["temporal_attention"]),
    ta_bias=st.booleans(),
    ta_activation=st.sampled_from(ATTENTION_OPTIONS["ta_activation"]),
    ta_source=st.sampled_from(ATTENTION_OPTIONS["ta_source"]),
    gate=st.sampled_from(ATTENTION_OPTIONS["gate"]),
    T=st.integers(1, 4),
    T_run=st.integers(1, 5),
    B=st.integers(1, 3),
    cout=st.integers(1, 4),
    size=st.integers(3, 6),
    recipe=st.sampled_from(["cifar", "imagenet"]),
    train=st.booleans(),
    feed_sequence=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_variant_matches_the_slow_formulation(
    temporal_attention: str,
    ta_bias: bool,
    ta_activation: str,
    ta_source: str,
    gate: str,
    T: int,
    T_run: int,
    B: int,
    cout: int,
    size: int,
    recipe: str,
    train: bool,
    feed_sequence: bool,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    enc = gac.GACEncoder(
        2,
        cout,
        T,
        temporal_attention=temporal_attention,
        ta_bias=ta_bias,
        ta_activation=ta_activation,
        ta_source=ta_source,
        gate=gate,
        **gac.RECIPES[recipe],  # type: ignore[arg-type]
    ).double()
    _randomise(enc)
    if temporal_attention == "conv":  # T-agnostic: run at another T
        enc.set_timesteps(T_run)
    if B * size * size == 1 and enc.T == 1 and train:
        return  # BatchNorm cannot train on one value per channel (test_encoder covers the error)
    x = torch.rand(B, 2, size, size, dtype=F64) * 2
    _compare(enc, x, feed_sequence, train)


def test_the_paper_gate_runs_the_fused_op_and_the_other_gates_do_not(monkeypatch) -> None:
    from gac_coding import ops

    calls: list[str] = []
    for name in ("gated_lif", "lif"):
        original = getattr(ops, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(ops, name, spy)
    x = torch.rand(2, 1, 5, 5)
    assert gac.GACEncoder(1, 3, T=3).gate.is_paper
    gac.GACEncoder(1, 3, T=3)(x)
    assert calls == ["gated_lif"]
    for option, values in ATTENTION_OPTIONS.items():
        for value in values[1:]:
            calls.clear()
            enc = gac.GACEncoder(1, 3, T=3, **{option: value})
            assert not enc.gate.is_paper
            enc(x)
            # another temporal attention (conv, biases, activation) feeds the paper's gate: fused
            fused = option not in ("ta_source", "gate")
            assert calls == (["gated_lif"] if fused else ["lif"]), (option, value)


def test_membrane_source_varies_over_time_for_a_static_image() -> None:
    # the paper's TA pools U, which is the same at every step of a static image; the membrane is not
    torch.manual_seed(0)
    enc = gac.GACEncoder(1, 4, T=4, ta_source="membrane").double().eval()
    x = torch.rand(3, 1, 6, 6, dtype=F64) * 2
    u, static = enc.membrane(x)
    assert static
    spikes = gac.LIF(**gac.RECIPES["cifar"])(u.unsqueeze(0).expand(4, *u.shape))
    h = membrane_of(u, spikes, enc.gate.decay, static=True)
    means = h.flatten(2).mean(2)  # [T, B]
    assert not torch.allclose(means[0], means[1])
    # h by hand for one element: h_1 = u, h_t = u + 0.5 * h_{t-1} * (1 - s_{t-1})
    flat_u, flat_s = u.flatten(), spikes.flatten(1)
    want = [flat_u[7]]
    for t in range(1, 4):
        want.append(flat_u[7] + 0.5 * want[-1] * (1 - flat_s[t - 1, 7]))
    torch.testing.assert_close(h.flatten(1)[:, 7], torch.stack(want), rtol=0, atol=0)
    with pytest.raises(ValueError, match="spikes: expected the LIF's output"):
        membrane_of(u, spikes[:, :2], 0.5, static=True)


def test_combine_gate_by_hand() -> None:
    ta = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=F64)  # [T=2, B=2]
    sca = torch.tensor([[3.0], [0.5]], dtype=F64)  # [B, 1]: static
    sig = lambda z: 1.0 / (1.0 + torch.exp(torch.tensor(-z, dtype=F64)))  # noqa: E731
    cases = {
        "product": [[sig(0.0), sig(0.5)], [sig(6.0), sig(-0.5)]],
        "separate": [[sig(0.0) * sig(3.0), sig(1.0) * sig(0.5)], [sig(2.0) * sig(3.0), sig(-1.0) * sig(0.5)]],
        "sum": [[sig(3.0), sig(1.5)], [sig(5.0), sig(-0.5)]],
        "temporal": [[sig(0.0), sig(1.0)], [sig(2.0), sig(-1.0)]],
    }
    for gate, rows in cases.items():
        got = combine_gate(ta, sca, gate, static=True)
        want = torch.stack([torch.stack([torch.as_tensor(v) for v in row]) for row in rows]).view(2, 2, 1)
        torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
        seq = combine_gate(ta, sca.expand(2, 2, 1), gate)  # the same map at both steps, as a sequence
        torch.testing.assert_close(seq, got, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"gate": "max"},
            ValueError,
            r"gate: expected one of \['product', 'separate', 'sum', 'temporal'\], got 'max'",
        ),
        ({"ta_source": "spikes"}, ValueError, "ta_source: expected one of"),
        ({"ta_activation": "tanh"}, ValueError, "ta_activation: expected one of"),
        ({"ta_bias": 1}, TypeError, "ta_bias: expected a bool, got int"),
        ({"gate": None}, ValueError, "gate: expected one of"),
    ],
)
def test_bad_options_name_the_argument(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        gac.GACEncoder(1, 4, T=2, **kwargs)
    if None not in kwargs.values():  # a model reads None as "not given": the paper's value
        with pytest.raises(error, match=match):
            create_model("msresnet_tiny", T=2, in_channels=1, **kwargs)
    # direct coding has no gate: an option given to it is refused by name, never ignored
    name = next(iter(kwargs))
    with pytest.raises(TypeError, match=rf"coding 'direct' has no setting \['{name}'\]"):
        option = {name: ATTENTION_OPTIONS[name][1]}
        create_model("msresnet_tiny", T=2, in_channels=1, coding="direct", **option)
    with pytest.raises(ValueError, match="name: expected one of"):
        check_attention_option("gates", "sum")


def test_a_gate_of_zero_is_not_called_scaled_direct_coding() -> None:
    # seen in benchmarks/gate_variants.py: a gate="separate" run whose gate ended at 0 everywhere
    from gac_coding.analysis import gate_warning

    kind, message = gate_warning({"constant": True, "gate_mean": 0.0, "ta_zero_fraction": 0.0})
    assert kind == "constant" and message.startswith("the gate is 0 everywhere")
    assert "emits nothing" in message and "scaled direct coding" not in message


def test_run_settings_know_the_options_and_the_paper_values() -> None:
    # gac_coding.io sits below the attention layer and keeps its own copy of the option names and
    # the paper's values (what a GAC run that records no option was trained with)
    from gac_coding import io

    assert io.SETTING_KEYS[-len(ATTENTION_OPTIONS) :] == tuple(ATTENTION_OPTIONS)
    assert io._PAPER_OPTIONS == {key: values[0] for key, values in ATTENTION_OPTIONS.items()}
    recorded = {"model": "msresnet_tiny", "gac": "True", "ta_bias": "True", "gate": "sum"}  # metadata
    settings = io.read_settings("model.safetensors", recorded, choices=ATTENTION_OPTIONS)
    assert settings["ta_bias"] is True and settings["gate"] == "sum"
    completed = (settings["ta_activation"], settings["ta_source"], settings["temporal_attention"])
    assert completed == ("relu", "stem", "mlp")
    words = "a msresnet_tiny run (GAC encoder, temporal attention with biases, sum gate)"
    assert io.describe_settings(settings) == words


def test_options_reach_the_encoder_through_create_model_and_wrap() -> None:
    from torch import nn

    chosen = {"temporal_attention": "conv", "ta_bias": True, "ta_activation": "gelu",
              "ta_source": "membrane", "gate": "separate"}  # fmt: skip
    for model in (
        create_model("msresnet_tiny", T=3, in_channels=1, **chosen),
        create_model("vgg_tiny", T=3, **chosen),
        gac.wrap(
            nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(2 * 6 * 6, 3)),
            T=3,
            in_channels=1,
            out_channels=2,
            **chosen,
        ),
    ):
        assert model.encoder.gate.options == chosen
    paper = create_model("msresnet_tiny", T=3, in_channels=1).encoder.gate
    assert paper.options == {k: v[0] for k, v in ATTENTION_OPTIONS.items()} and paper.is_paper
    # the biases are parameters of the temporal attention (and in the state dict)
    keys = create_model("msresnet_tiny", T=3, in_channels=1, ta_bias=True).state_dict()
    assert "encoder.gate.ta.fc1.bias" in keys and "encoder.gate.ta.fc2.bias" in keys
    # the temporal gate has no spatial-channel attention at all
    temporal = create_model("msresnet_tiny", T=3, in_channels=1, gate="temporal")
    assert temporal.encoder.gate.sca is None
    assert not [k for k in temporal.state_dict() if ".sca." in k]


# ------------------------------------------------------------------------------ gate statistics


def _dead(enc: gac.GACEncoder) -> gac.GACEncoder:
    """The temporal attention's last layer zeroed: TA = 0 at every step, as after the collapse."""
    with torch.no_grad():
        last = enc.gate.ta.fc2 if enc.gate.temporal_attention == "mlp" else enc.gate.ta.conv2
        last.weight.zero_()
    return enc.eval()  # statistics are kept for eval-mode calls


@pytest.mark.parametrize("gate", ["product", "temporal"])
def test_dead_temporal_attention_makes_the_paper_and_the_temporal_gate_constant(gate: str) -> None:
    torch.manual_seed(0)
    enc = _dead(gac.GACEncoder(1, 4, T=4, gate=gate))
    for _ in range(2):
        enc(torch.rand(3, 1, 6, 6) * 2)
    stats = enc.gate_statistics()
    assert stats is not None
    assert stats["ta_zero_fraction"] == 1.0 and stats["gate_mean"] == 0.5
    assert stats["gate_min"] == stats["gate_max"] == 0.5
    assert stats["gate_time_std"] == 0.0 and stats["gate_space_std"] == 0.0
    assert stats["constant"] and stats["constant_over_time"]
    assert stats["samples"] == 6 and stats["calls"] == 2


@pytest.mark.parametrize("gate", ["separate", "sum"])
def test_dead_temporal_attention_leaves_the_other_gates_alive_but_constant_over_time(gate: str) -> None:
    torch.manual_seed(0)
    enc = _dead(gac.GACEncoder(1, 4, T=4, gate=gate))
    enc(torch.rand(3, 1, 6, 6) * 2)
    stats = enc.gate_statistics()
    assert stats is not None and stats["ta_zero_fraction"] == 1.0
    assert not stats["constant"] and stats["gate_space_std"] > 1e-3
    assert stats["constant_over_time"]  # a static image, TA = 0: only SCA shapes the gate


@pytest.mark.parametrize("feed_sequence", [False, True])
def test_live_gate_statistics_equal_their_definitions(feed_sequence: bool) -> None:
    torch.manual_seed(3)
    enc = gac.GACEncoder(2, 5, T=4, ta_bias=True, ta_activation="leaky_relu").double()
    _randomise(enc)
    enc.eval()
    batches = [torch.rand(3, 2, 6, 6, dtype=F64) * 2, torch.rand(2, 2, 6, 6, dtype=F64) * 2]
    gates, tas = [], []
    for x in batches:
        enc(x.unsqueeze(0).expand(4, *x.shape) if feed_sequence else x)
        assert enc.last_gate is not None and enc.last_temporal_attention is not None
        gates.append(enc.last_gate)
        tas.append(enc.last_temporal_attention)
    stats = enc.gate_statistics(reset=True)
    assert stats is not None and enc.gate_statistics() is None

    # the definitions, sample by sample: per-call means weighted by the batch size
    def per_call(g: torch.Tensor, ta: torch.Tensor) -> list[float]:
        T, B = ta.shape
        time_std = [
            float(g[:, b, c, i, j].std(correction=0))
            for b in range(B)
            for c in range(g.shape[2])
            for i in range(6)
            for j in range(6)
        ]
        space_std = [float(g[t, b].std(correction=0)) for t in range(T) for b in range(B)]
        return [float((ta == 0).double().mean()), float(g.mean()),
                sum(time_std) / len(time_std), sum(space_std) / len(space_std)]  # fmt: skip

    rows = [per_call(g, ta) for g, ta in zip(gates, tas, strict=True)]
    sizes = [3, 2]
    for i, key in enumerate(GateStatistics.KEYS):
        want = sum(r[i] * n for r, n in zip(rows, sizes, strict=True)) / 5
        assert stats[key] == pytest.approx(want, rel=1e-12, abs=1e-15), key
    assert stats["gate_min"] == min(float(g.min()) for g in gates)
    assert stats["gate_max"] == max(float(g.max()) for g in gates)
    assert stats["gate_time_std"] > 1e-3 and not stats["constant"] and not stats["constant_over_time"]


@given(
    T=st.integers(1, 4),
    B=st.integers(1, 3),
    C=st.integers(1, 5),
    H=st.integers(1, 4),
    layout=st.sampled_from(["contiguous", "channels_last", "sliced", "transposed"]),
)
@settings(max_examples=30, deadline=None)
def test_gate_statistics_do_not_depend_on_the_gate_layout(
    T: int, B: int, C: int, H: int, layout: str
) -> None:
    """The statistics read the gate in memory order: a channels-last, a sliced (not dense) or a
    transposed gate gives the figures of its contiguous copy, which equal the definitions
    (``test_live_gate_statistics_equal_their_definitions``)."""
    g = torch.Generator().manual_seed(T * 1000 + B * 100 + C * 10 + H)
    gate = torch.rand(T, B, C, H, H + 1, generator=g, dtype=F64)
    ta = torch.randn(T, B, generator=g, dtype=F64).clamp_min(0)
    if layout == "channels_last":
        laid = gate.view(T * B, C, H, H + 1).contiguous(memory_format=torch.channels_last).view(gate.shape)
    elif layout == "sliced":
        laid = torch.cat([gate, gate], dim=3)[:, :, :, :H]
    else:
        laid = gate.transpose(2, 4).contiguous().transpose(2, 4)
    assert torch.equal(laid, gate)  # the same values; a layout of its own where the shape allows one
    want, got = GateStatistics(), GateStatistics()
    want.update(gate, ta)
    got.update(laid, ta)
    expected, measured = want.read(), got.read()
    assert expected is not None and measured is not None
    assert measured["gate_min"] == expected["gate_min"] and measured["gate_max"] == expected["gate_max"]
    for key in GateStatistics.KEYS:
        assert measured[key] == pytest.approx(expected[key], rel=1e-12, abs=1e-15), key
    # the definitions, on the contiguous gate
    time_std = gate.std(dim=0, correction=0).mean()
    space_std = gate.flatten(2).std(dim=2, correction=0).mean()
    assert expected["gate_time_std"] == pytest.approx(float(time_std), rel=1e-12, abs=1e-15)
    assert expected["gate_space_std"] == pytest.approx(float(space_std), rel=1e-12, abs=1e-15)
    assert expected["gate_mean"] == pytest.approx(float(gate.mean()), rel=1e-12)


def test_statistics_of_eval_calls_only_none_without_record_and_none_in_copies() -> None:
    import copy

    enc = gac.GACEncoder(1, 4, T=2, record=False).eval()
    enc(torch.rand(2, 1, 5, 5))
    assert enc.gate_statistics() is None
    rec = gac.GACEncoder(1, 4, T=2)
    rec(torch.rand(2, 1, 5, 5))  # training mode: nothing kept (training runs at full speed)
    assert rec.gate_statistics() is None and rec.last_gate is not None
    rec.eval()(torch.rand(2, 1, 5, 5))
    assert rec.gate_statistics() is not None
    assert copy.deepcopy(rec).gate_statistics() is None
    rec.reset_gate_statistics()
    assert rec.gate_statistics() is None


def test_gate_statistics_update_checks_shapes() -> None:
    with pytest.raises(ValueError, match="gate, ta: expected"):
        GateStatistics().update(torch.rand(3, 2, 4), torch.rand(2, 2))


# ------------------------------------------------------------------------------ energy accounting


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ta_source": "membrane", "ta_bias": True, "ta_activation": "gelu"},
        {"gate": "sum"},
        {"gate": "separate", "temporal_attention": "conv", "ta_bias": True},
        {"gate": "temporal", "ta_source": "membrane"},
    ],
)
def test_energy_counts_every_attention_layer_of_each_variant(options: dict) -> None:
    from gac_coding.energy import estimate_energy

    T, B, C, size = 3, 2, 4, 6
    enc = gac.GACEncoder(1, C, T, **options)
    report = estimate_energy(enc, torch.rand(B, 1, size, size) * 2)  # static: the fast path
    by_name = {layer.name: layer for layer in report.layers}
    pixels = B * size * size
    # name -> (MACs of what ran, steps it stands for): biases are not counted (energy.md §1)
    expected = {"conv": (pixels * C * 1 * 9, T)}
    if options.get("temporal_attention", "mlp") == "mlp":
        hidden = max(1, T // 2)  # the MLP runs on the mean and on the max: two calls on [B, T]
        expected["gate.ta.fc1"] = (2 * B * hidden * T, 1)
        expected["gate.ta.fc2"] = (2 * B * T * hidden, 1)
    else:  # Conv1d(1, 4, 3) and Conv1d(4, 1, 3) on [2B, ., T]
        expected["gate.ta.conv1"] = (2 * B * 4 * T * 3, 1)
        expected["gate.ta.conv2"] = (2 * B * T * 4 * 3, 1)
    if options.get("gate") != "temporal":  # two C -> C 4x4 convolutions, once per image
        expected["gate.sca.conv1"] = (pixels * C * C * 16, T)
        expected["gate.sca.conv2"] = (pixels * C * C * 16, T)
    assert set(by_name) == set(expected)
    for name, (macs, steps) in expected.items():
        layer = by_name[name]
        counted = (layer.flops, layer.steps, layer.mac, layer.mac_paper)
        assert counted == (macs, steps, macs, macs * steps), name
        assert layer.role == ("stem" if name == "conv" else "attention")


# ------------------------------------------------------------------------- gac-coding train's watch


def test_training_records_the_gate_per_epoch_and_warns_once(tmp_path) -> None:
    import json

    from gac_coding.train import TrainConfig, fit

    def dead_model(name: str, **kwargs):
        # both layers of the temporal attention zero: its ReLU passes no gradient, so it stays 0
        model = create_model(name, **kwargs)
        with torch.no_grad():
            model.encoder.gate.ta.fc1.weight.zero_()
            model.encoder.gate.ta.fc2.weight.zero_()
        return model

    lines: list[str] = []
    config = TrainConfig(model="msresnet_tiny", dataset="digits", T=2, epochs=2, batch_size=512, lr=0.1,
                         progress=False, device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    result = fit(config, log=lines.append, model_factory=dead_model)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [
        "warning: the gate is 0.5 everywhere (the temporal attention is 0 on 100% of steps): GAC is "
        "acting as scaled direct coding; see docs/guide/gate.md"
    ]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:  # the test set's 360 images, every epoch
        gate = record["gate"]
        assert gate["constant"] and gate["gate_mean"] == 0.5 and gate["samples"] == 360
    assert result.history[-1]["gate"] == records[-1]["gate"]

    # a live gate is recorded and not flagged; direct coding records no gate
    live: list[str] = []
    config = TrainConfig(model="msresnet_tiny", dataset="digits", T=2, epochs=1, batch_size=512,
                         lr=0.1, progress=False, device="cpu",
                         model_kwargs={"gate": "sum", "ta_bias": True})  # fmt: skip
    record = fit(config, log=live.append).history[0]
    assert not record["gate"]["constant"] and not record["gate"]["constant_over_time"]
    assert not [line for line in live if line.startswith("warning:")]
    config = TrainConfig(model="msresnet_tiny", dataset="digits", T=2, epochs=1, batch_size=512, lr=0.1,
                         progress=False, device="cpu", coding="direct")  # fmt: skip
    assert "gate" not in fit(config, log=lambda line: None).history[0]


def test_variants_trace_into_one_graph_under_torch_compile() -> None:
    # the variants' torch operations and the LIF operator trace without a break (aot_eager: the
    # tracing alone, no code generation; test_compile_export covers inductor for the paper's gate)
    torch.manual_seed(0)
    for options in ({"ta_source": "membrane", "gate": "sum", "ta_bias": True},
                    {"gate": "temporal", "temporal_attention": "conv", "ta_activation": "gelu"}):  # fmt: skip
        enc = gac.GACEncoder(1, 4, T=3, **options).double()
        compiled = torch.compile(enc, fullgraph=True, backend="aot_eager")
        x = torch.rand(2, 1, 6, 6, dtype=F64) * 2
        eager_out = enc(x)
        (eager_grad,) = torch.autograd.grad(eager_out.sum(), [enc.conv.weight])
        out = compiled(x)
        (grad,) = torch.autograd.grad(out.sum(), [enc.conv.weight])
        torch.testing.assert_close(out, eager_out, rtol=0, atol=0)
        torch.testing.assert_close(grad, eager_grad, rtol=1e-12, atol=1e-14)
