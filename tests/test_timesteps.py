"""The T-agnostic temporal attention and ``set_timesteps`` (encoder, MS-ResNet, GACNet).

The encoder with ``temporal_attention="conv"`` is checked against the independent slow formulation
of ``test_encoder.py`` (per-step stem, BN, LIF, attention written out) in float64, at the ``T`` it
was built for and after :meth:`set_timesteps`, for static frames (the fast path) and sequences.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from slow_reference import slow_temporal_attention
from test_encoder import _compare
from torch import nn

import gac_coding as gac
from gac_coding.attention import ConvTemporalAttention, TemporalAttention
from gac_coding.models import create_model


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=15, deadline=None)
@given(
    T_built=st.integers(1, 5),
    T_run=st.integers(1, 7),
    B=st.integers(1, 3),
    cout=st.integers(1, 5),
    size=st.integers(3, 6),
    recipe=st.sampled_from(["cifar", "imagenet"]),
    train=st.booleans(),
    feed_sequence=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_conv_encoder_matches_slow_formulation_at_any_T(
    T_built: int,
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
        T_built,
        temporal_attention="conv",
        **gac.RECIPES[recipe],  # type: ignore[arg-type]
    ).double()
    with torch.no_grad():  # non-trivial BN parameters and statistics, larger attention weights
        enc.bn.weight.uniform_(0.5, 2.0)
        enc.bn.bias.uniform_(-0.3, 0.8)
        enc.bn.running_mean.uniform_(-0.2, 0.2)
        enc.bn.running_var.uniform_(0.5, 2.0)
        for p in enc.gate.ta.parameters():
            p.uniform_(-1.0, 1.0)
    enc.set_timesteps(T_run)
    x = torch.rand(B, 2, size, size, dtype=torch.float64) * 2
    if B * size * size == 1 and T_run == 1 and train:
        return
    _compare(enc, x, feed_sequence, train)


def test_conv_attention_matches_explicit_sums_and_differs_per_step() -> None:
    torch.manual_seed(1)
    ta = ConvTemporalAttention(kernel_size=5, hidden=3).double()
    avg, peak = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    got = ta.from_stats(avg, peak)
    want = slow_temporal_attention(ta, avg.t(), peak.t())
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert got.shape == (6, 4)
    assert not torch.allclose(got[0], got[1])


def test_conv_attention_is_shift_equivariant_away_from_the_ends() -> None:
    # k=3, two layers: a step's score depends on steps t-2..t+2 only; shifting the sequence by one
    # step shifts the scores of steps whose window stays inside on both sequences
    torch.manual_seed(2)
    ta = ConvTemporalAttention().double()
    a = torch.randn(10, 3, dtype=torch.float64)
    b = torch.roll(a, 1, dims=0)
    sa, sb = ta.from_stats(a, a), ta.from_stats(b, b)
    torch.testing.assert_close(sb[3:8], sa[2:7], rtol=1e-12, atol=1e-12)


def test_conv_attention_has_no_T_sized_weights() -> None:
    a = gac.GACEncoder(1, 4, T=2, temporal_attention="conv")
    b = gac.GACEncoder(1, 4, T=9, temporal_attention="conv")
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("kind, error", [("gru", ValueError), ("MLP", ValueError), (None, ValueError)])
def test_bad_temporal_attention(kind: object, error: type) -> None:
    with pytest.raises(error, match="temporal_attention: expected one of"):
        gac.GACEncoder(1, 4, T=2, temporal_attention=kind)  # type: ignore[arg-type]


def test_conv_kernel_must_be_odd() -> None:
    with pytest.raises(ValueError, match="kernel_size: expected an odd integer"):
        ConvTemporalAttention(kernel_size=4)


def test_mlp_at_another_T_raises_and_says_how() -> None:
    enc = gac.GACEncoder(1, 4, T=4)
    x = torch.rand(2, 1, 5, 5)
    enc.set_timesteps(6)
    for inp in (x, torch.rand(6, 2, 1, 5, 5)):
        with pytest.raises(
            ValueError, match=r"built for, so it cannot run at T=6.*temporal_attention='conv'"
        ):
            enc(inp)
    enc.set_timesteps(4)
    assert enc(x).shape == (4, 2, 4, 5, 5)
    with pytest.raises(ValueError, match="cannot run at T=3"):
        TemporalAttention(T=4)(torch.randn(3, 2, 4))


def test_sequence_of_other_length_says_set_timesteps() -> None:
    enc = gac.GACEncoder(1, 4, T=4, temporal_attention="conv")
    with pytest.raises(ValueError, match=r"call set_timesteps\(5\)"):
        enc(torch.rand(5, 2, 1, 5, 5))


@pytest.mark.parametrize("value, error", [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_set_timesteps_validates(value: object, error: type) -> None:
    with pytest.raises(error, match="T: expected"):
        gac.GACEncoder(1, 4, T=4).set_timesteps(value)  # type: ignore[arg-type]


def test_msresnet_set_timesteps_matches_a_model_built_at_that_T() -> None:
    torch.manual_seed(0)
    for coding in ("gac", "direct", "latency"):
        extra = {"temporal_attention": "conv"} if coding == "gac" else {}  # the others have none
        trained = create_model("msresnet_tiny", T=4, in_channels=2, coding=coding, **extra).double().eval()
        fresh = create_model("msresnet_tiny", T=3, in_channels=2, coding=coding, **extra).double().eval()
        fresh.load_state_dict(trained.state_dict())
        trained.set_timesteps(3)
        assert trained.T == 3 and trained.encoder.T == 3
        x = torch.rand(2, 2, 8, 8, dtype=torch.float64)
        torch.testing.assert_close(trained(x), fresh(x), rtol=0, atol=0)
        if coding == "latency":
            continue  # latency coding takes static images only
        seq = torch.rand(3, 2, 2, 8, 8, dtype=torch.float64)
        torch.testing.assert_close(trained(seq), fresh(seq), rtol=0, atol=0)


def test_msresnet_mlp_set_timesteps_then_call_raises() -> None:
    m = create_model("msresnet_tiny", T=4, in_channels=1)
    m.set_timesteps(2)
    with pytest.raises(ValueError, match="temporal_attention='conv'"):
        m(torch.rand(2, 1, 8, 8))


def test_gacnet_set_timesteps() -> None:
    torch.manual_seed(0)
    backbone = nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(2 * 6 * 6, 3))
    net = gac.wrap(backbone, T=4, in_channels=2, temporal_attention="conv")
    net.set_timesteps(7)
    out = net(torch.rand(5, 2, 6, 6))
    assert out.shape == (7, 5, 3) and net.T == 7 and net.encoder.T == 7
    mlp = gac.wrap(nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(2 * 6 * 6, 3)), T=4, in_channels=2)
    mlp.set_timesteps(2)
    with pytest.raises(ValueError, match="cannot run at T=2"):
        mlp(torch.rand(5, 2, 6, 6))


def test_energy_counts_the_conv_temporal_attention_once_per_sample() -> None:
    from gac_coding.energy import estimate_energy

    torch.manual_seed(0)
    enc = gac.GACEncoder(1, 4, T=5, temporal_attention="conv")
    B = 3
    report = estimate_energy(enc, torch.rand(B, 1, 6, 6))  # static: the fast path
    by_name = {ly.name: ly for ly in report.layers}
    k, hidden, T = 3, 4, 5
    # conv1: [2B, 1, T] -> [2B, hidden, T], k taps per output; conv2: [2B, hidden, T] -> [2B, 1, T]
    for name, macs in (("gate.ta.conv1", 2 * B * hidden * T * k), ("gate.ta.conv2", 2 * B * T * hidden * k)):
        layer = by_name[name]
        assert (layer.flops, layer.steps, layer.mac_paper) == (macs, 1, macs)
    assert by_name["conv"].steps == T  # the stem stands for T per-step convolutions


def test_energy_of_a_sequence_equals_static_paper_accounting() -> None:
    from gac_coding.energy import estimate_energy

    torch.manual_seed(0)
    for name in ("vgg_tiny", "msresnet_tiny"):
        model = create_model(name, num_classes=3, T=3, in_channels=2, temporal_attention="conv").double()
        x = torch.rand(2, 2, 8, 8, dtype=torch.float64) * 3
        static = estimate_energy(model, x).totals
        seq = estimate_energy(model, x.unsqueeze(0).expand(3, *x.shape).contiguous()).totals
        # a sequence executes every step; the paper's accounting of the static path matches it
        assert seq["mac"] == seq["mac_paper"] == static["mac_paper"] > static["mac"]
        assert seq["ac_paper"] == pytest.approx(static["ac_paper"], rel=1e-12)
        assert seq["T"] == static["T"] == 3
        model.set_timesteps(5)
        assert estimate_energy(model, x).totals["T"] == 5


def _sweep_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "timesteps.py"
    spec = importlib.util.spec_from_file_location("timesteps_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_sweep_smoke_mlp_only_at_its_T_and_summary() -> None:
    sweep = _sweep_module()
    run = sweep.run_one("gac-mlp", seed=0, epochs=1, steps=[2, 4])
    assert run["rows"][2] is None and 0.0 <= run["rows"][4]["acc"] <= 1.0 and run["rows"][4]["energy_uj"] > 0
    # the summary's mean and std by hand on two made-up seeds
    runs = [
        {"coding": c, "seed": s, "rows": {1: None if c == "gac-mlp" else {"acc": a, "energy_uj": e}}}
        for c in sweep.CODINGS
        for s, (a, e) in enumerate([(0.5, 1.0), (0.7, 3.0)])
    ]
    table = sweep.summarise(runs, [1])
    assert table["gac-mlp"][1] is None
    cell = table["direct"][1]
    assert cell["acc_mean"] == pytest.approx(0.6) and cell["acc_std"] == pytest.approx(0.1414213562373095)
    assert cell["energy_uj"] == pytest.approx(2.0) and cell["seeds"] == 2
    assert "| 1 | n/a | n/a | 60.00 ± 14.14 | 2.000 |" in sweep.markdown(table, [1])
