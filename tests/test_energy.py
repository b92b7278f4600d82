"""Energy accounting: hand-computable counts, exact synaptic operations against a brute-force loop,
executed vs per-step accounting, the spike-driven flag, SpikingJelly agreement, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import gac_coding as gac
from gac_coding.energy import (
    calibrate_batchnorm,
    dense_macs,
    estimate_energy,
    exact_synops,
    is_binary,
    spikingjelly_counts,
)
from gac_coding.models import create_model
from gac_coding.models.checkpoints import load_weights


def _spikes(*shape: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


# ------------------------------------------------------------------------------- brute force


def _brute_conv_synops(x: torch.Tensor, conv: nn.Conv2d) -> int:
    """Each spike x[n, c, i, j] reaches weight (o, c', ky, kx) of its group when the output
    position it lands on is an integer position inside the output map."""
    N, C, H, W = x.shape
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    ph, pw = conv.padding  # numeric padding only
    dh, dw = conv.dilation
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group = conv.out_channels // conv.groups
    total = 0
    for _n, _c, i, j in torch.nonzero(x).tolist():
        for ky in range(kh):
            for kx in range(kw):
                oy, ry = divmod(i + ph - ky * dh, sh)
                ox, rx = divmod(j + pw - kx * dw, sw)
                if ry == 0 and rx == 0 and 0 <= oy < Ho and 0 <= ox < Wo:
                    total += per_group
    return total


def _brute_conv_transpose_synops(x: torch.Tensor, conv: nn.ConvTranspose2d) -> int:
    N, C, H, W = x.shape
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    ph, pw = conv.padding
    oph, opw = conv.output_padding
    Ho = (H - 1) * sh - 2 * ph + (kh - 1) + oph + 1
    Wo = (W - 1) * sw - 2 * pw + (kw - 1) + opw + 1
    per_group = conv.out_channels // conv.groups
    total = 0
    for _n, _c, i, j in torch.nonzero(x).tolist():
        for ky in range(kh):
            for kx in range(kw):
                oy, ox = i * sh - ph + ky, j * sw - pw + kx
                if 0 <= oy < Ho and 0 <= ox < Wo:
                    total += per_group
    return total


# ------------------------------------------------------------------------------- hand counts


def test_conv_on_analog_input_costs_dense_macs() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.rand(2, 3, 6, 5)
    report = estimate_energy(conv, x)
    (layer,) = report.layers
    expected = 2 * 8 * 6 * 5 * 3 * 3 * 3  # B * C_out * H * W * C_in * k^2
    assert layer.mac == expected and layer.flops == expected and layer.mac_paper == expected
    assert layer.synop == 0 and layer.ac_paper == 0
    assert not layer.binary_input and layer.role == "stem" and layer.spike_driven
    assert report.totals["energy_mj"] == pytest.approx(expected * 4.6e-9)
    assert report.totals["energy_mj_per_sample"] == pytest.approx(expected * 4.6e-9 / 2)
    assert report.totals["batch_size"] == 2


def test_linear_macs_and_custom_costs() -> None:
    lin = nn.Linear(7, 5)
    report = estimate_energy(lin, torch.rand(4, 7), e_mac_pj=2.0, e_ac_pj=0.5)
    assert report.totals["mac"] == 4 * 5 * 7
    assert report.totals["energy_mj"] == pytest.approx(4 * 5 * 7 * 2.0e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=4, stride=1, padding=0, dilation=2),
        dict(kernel_size=3, stride=2, padding=2, groups=2),
        dict(kernel_size=1, stride=2),
    ],
)
def test_exact_synops_match_brute_force(kwargs: dict) -> None:
    conv = nn.Conv2d(4, 6, bias=False, **kwargs)
    x = _spikes(2, 4, 9, 7)
    brute = _brute_conv_synops(x, conv)
    assert exact_synops(conv, x) == brute
    layer = estimate_energy(conv, x).layers[0]
    assert layer.binary_input and layer.synop == brute and layer.mac == 0
    rate = float(x.mean())
    assert layer.firing_rate == pytest.approx(rate)
    # the paper's approximation: FLOPs x input firing rate
    assert layer.ac_paper == pytest.approx(layer.flops * rate)


def test_exact_synops_corner_spike_by_hand() -> None:
    conv = nn.Conv2d(1, 3, 3, padding=1, bias=False)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 0] = 1.0  # a corner reaches 2 x 2 of the 9 taps
    x[0, 0, 2, 2] = 1.0  # the centre reaches all 9
    assert exact_synops(conv, x) == 3 * (4 + 9)
    # approximation counts every tap of every output position times the rate
    flops = 3 * 5 * 5 * 9
    assert estimate_energy(conv, x).layers[0].ac_paper == pytest.approx(flops * 2 / 25)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_exact_synops_same_padding_even_kernel() -> None:
    conv = nn.Conv2d(2, 2, 4, padding="same", bias=False)  # pads 1 before, 2 after
    x = _spikes(1, 2, 6, 6, seed=3)
    padded = nn.functional.pad(x, (1, 2, 1, 2))
    plain = nn.Conv2d(2, 2, 4, padding=0, bias=False)
    assert exact_synops(conv, x) == _brute_conv_synops(padded, plain)


def test_exact_synops_conv_transpose_and_linear() -> None:
    convt = nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, bias=False)
    x = _spikes(2, 3, 4, 5, seed=1)
    assert exact_synops(convt, x) == _brute_conv_transpose_synops(x, convt)
    lin = nn.Linear(10, 6)
    s = _spikes(3, 10, seed=2)
    assert exact_synops(lin, s) == int(s.sum()) * 6


def test_exact_synops_conv1d_matches_unsqueezed_conv2d() -> None:
    c1 = nn.Conv1d(2, 3, 5, stride=2, padding=2, bias=False)
    c2 = nn.Conv2d(2, 3, (1, 5), stride=(1, 2), padding=(0, 2), bias=False)
    x = _spikes(2, 2, 11, seed=4)
    assert exact_synops(c1, x) == _brute_conv_synops(x.unsqueeze(2), c2)


def test_spikingjelly_multistep_conv_folds_time() -> None:
    from spikingjelly.activation_based import layer

    conv = layer.Conv2d(2, 3, 3, padding=1, bias=False, step_mode="m")
    x = _spikes(4, 2, 2, 5, 5, seed=5)  # [T, B, C, H, W]
    plain = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    report = estimate_energy(conv, x)
    assert report.layers[0].synop == _brute_conv_synops(x.flatten(0, 1), plain)
    assert report.layers[0].flops == dense_macs(plain, x.flatten(0, 1), plain(x.flatten(0, 1)))


def test_is_binary() -> None:
    assert is_binary(torch.tensor([0.0, 1.0])) and is_binary(torch.tensor([True, False]))
    assert not is_binary(torch.tensor([0.0, 0.5])) and not is_binary(torch.tensor([-1.0, 1.0]))


# ------------------------------------------------------------------------------- the encoder


def test_static_fast_path_executed_vs_paper_accounting() -> None:
    T, C = 4, 6
    enc = gac.GACEncoder(in_channels=2, out_channels=C, T=T)
    x = torch.rand(3, 2, 7, 7)
    static = estimate_energy(enc, x)
    stem = static.layers[0]
    assert stem.name == "conv" and stem.role == "stem" and stem.part == "encoder"
    assert stem.calls == 1 and stem.steps == T
    assert stem.mac == 3 * C * 7 * 7 * 2 * 9 and stem.mac_paper == T * stem.mac
    by_name = {layer.name: layer for layer in static.layers}
    sca = by_name["gate.sca.conv1"]
    assert sca.role == "attention" and sca.steps == T and sca.mac == 3 * C * 7 * 7 * C * 16
    ta = by_name["gate.ta.fc1"]
    assert ta.steps == 1 and ta.calls == 2 and ta.mac == 2 * 3 * T * (T // 2)
    assert static.totals["mac"] < static.totals["mac_paper"]
    assert static.non_spike_driven == []  # stem and attention are real-valued by design
    assert static.totals["encoder_energy_mj"] == pytest.approx(static.totals["energy_mj"])
    assert static.totals["T"] == T and static.totals["batch_size"] == 3
    # the naive formulation (the frame repeated T times) executes what the paper counts
    seq = estimate_energy(enc, x.unsqueeze(0).expand(T, *x.shape).contiguous())
    assert seq.totals["mac"] == seq.totals["mac_paper"] == static.totals["mac_paper"]
    assert seq.totals["energy_mj"] == pytest.approx(static.totals["energy_mj"])
    assert seq.layers[0].steps == 1 and seq.totals["batch_size"] == 3


class _FoldConv(nn.Module):
    """A backbone whose first layer is a convolution, applied per step."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.conv(o.flatten(0, 1))


@pytest.mark.parametrize("binarize", [False, True])
def test_spike_driven_flag_for_gated_output_into_a_convolution(binarize: bool) -> None:
    net = nn.Sequential(gac.GACEncoder(1, 4, T=3, binarize=binarize), _FoldConv(4))
    x = torch.rand(2, 1, 6, 6)
    calibrate_batchnorm(net, x)  # the stem's BN standardises U, so the encoder fires
    report = estimate_energy(net, x)
    assert float(net[0].last_spikes.sum()) > 0
    layer = {ly.name: ly for ly in report.layers}["1.conv"]
    assert layer.part == "backbone" and layer.role == "synaptic"
    if binarize:
        assert layer.binary_input and layer.spike_driven and layer.mac == 0
        assert report.non_spike_driven == []
    else:
        assert not layer.binary_input and not layer.spike_driven
        assert layer.mac == layer.flops > 0 and layer.synop == 0
        assert report.non_spike_driven == ["1.conv"]
        assert "not spike-driven" in str(report)


def test_plain_network_flags_real_input_after_the_stem() -> None:
    class Fire(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x > 0).float()

    spiking = nn.Sequential(nn.Conv2d(1, 3, 3), Fire(), nn.Conv2d(3, 2, 3), Fire(), nn.Flatten(),
                            nn.Linear(2 * 4 * 4, 3))  # fmt: skip
    report = estimate_energy(spiking, torch.rand(2, 1, 8, 8))
    assert [ly.role for ly in report.layers] == ["stem", "synaptic", "synaptic"]
    assert [ly.binary_input for ly in report.layers] == [False, True, True]
    assert report.non_spike_driven == []
    analog = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3))
    assert estimate_energy(analog, torch.rand(2, 1, 8, 8)).non_spike_driven == ["2"]


def test_batchnorm_affine_macs_and_state_restored() -> None:
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.BatchNorm2d(3, affine=False))
    net.train()
    before = net[1].running_mean.clone()
    report = estimate_energy(net, torch.rand(2, 2, 5, 5) + 1.0)
    assert report.totals["mac_norm"] == 2 * 3 * 5 * 5  # only the affine BN
    assert torch.equal(net[1].running_mean, before)  # eval mode: no statistics update
    assert all(m.training for m in net.modules())


def test_report_to_dict_is_json_and_str_is_a_table() -> None:
    model = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1)
    report = estimate_energy(model, torch.rand(2, 1, 8, 8))
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d) == {"layers", "totals", "non_spike_driven"}
    for key in ("mac", "synop", "ac_paper", "energy_mj", "mac_paper", "energy_executed_mj"):
        assert key in d["totals"]
    assert [ly["name"] for ly in d["layers"]][:2] == ["encoder.conv", "encoder.gate.ta.fc1"]
    assert d["layers"][0]["steps"] == 2 and d["layers"][0]["input_shape"] == [2, 1, 8, 8]
    text = str(report)
    assert "encoder.conv" in text and "paper accounting" in text and "executed" in text
    enc, back = report.part("encoder"), report.part("backbone")
    assert enc["energy_mj"] + back["energy_mj"] == pytest.approx(report.totals["energy_mj"])
    assert enc["energy_mj"] == pytest.approx(report.totals["encoder_energy_mj"])


def test_bad_arguments_name_themselves() -> None:
    conv = nn.Conv2d(1, 1, 1)
    with pytest.raises(TypeError, match="model"):
        estimate_energy("net", torch.rand(1, 1, 2, 2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x"):
        estimate_energy(conv, [[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="e_mac_pj"):
        estimate_energy(conv, torch.rand(1, 1, 2, 2), e_mac_pj=-1.0)
    with pytest.raises(ValueError, match="x: contains NaN"):
        estimate_energy(conv, torch.full((1, 1, 2, 2), math.nan))
    with pytest.raises(TypeError, match="module"):
        exact_synops(nn.ReLU(), torch.ones(2))


# ------------------------------------------------------------------------------- the anchor


def test_agrees_with_spikingjelly_on_msresnet18_cifar() -> None:
    torch.manual_seed(0)
    model = create_model("msresnet18_cifar", num_classes=10, T=6)
    x = torch.rand(1, 3, 32, 32)
    calibrate_batchnorm(model, x)  # so that the untrained backbone fires in eval mode
    report = estimate_energy(model, x)
    assert report.totals["synop"] > 10**8, "the backbone must fire for the check to mean anything"
    sj = spikingjelly_counts(model, x)
    # integer counts of the same operations: identical, not merely close
    assert report.totals["mac"] == sj["mac"]
    assert report.totals["synop"] == sj["synop"]
    with_bn = spikingjelly_counts(model, x, include_norm=True)
    assert report.totals["mac"] + report.totals["mac_norm"] == with_bn["mac"]
    # the membrane shortcuts of MS-ResNet take real values: MACs, flagged
    assert {"stages.0.0.shortcut.0", "stages.1.0.shortcut.0", "stages.2.0.shortcut.0"} <= set(
        report.non_spike_driven
    )
    assert all(
        ly.binary_input
        for ly in report.layers
        if ly.name.endswith(("conv1", "conv2")) and ly.part == "backbone"
    )


def test_core_works_without_spikingjelly_or_matplotlib() -> None:
    code = (
        "import sys\n"
        "sys.modules['spikingjelly'] = None\n"
        "import torch, gac_coding, gac_coding.energy, gac_coding.analysis\n"
        "assert 'matplotlib' not in sys.modules\n"
        "enc = gac_coding.GACEncoder(1, 2, T=2)\n"
        "r = gac_coding.energy.estimate_energy(enc, torch.rand(1, 1, 4, 4))\n"
        "print(r.totals['mac'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 0


# ------------------------------------------------------------------------------- CLI, checkpoints


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from gac_coding.cli import main

    assert main(args) == 0
    return capsys.readouterr().out


def test_cli_energy_json(capsys: pytest.CaptureFixture[str]) -> None:
    out = _cli(["energy", "--model", "msresnet_tiny", "--T", "2", "--input-size", "8", "8",
                "--batch-size", "2", "--json"], capsys)  # fmt: skip
    payload = json.loads(out)
    assert payload["model"] == "msresnet_tiny" and payload["totals"]["T"] == 2
    assert payload["totals"]["batch_size"] == 2 and payload["totals"]["energy_mj"] > 0
    assert payload["layers"][0]["input_shape"] == [2, 3, 8, 8]
    assert payload["batchnorm_calibrated"] is True


def test_cli_energy_checkpoints(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import save_file

    from gac_coding.models.checkpoints import export_reference_state_dict

    model = create_model("msresnet_tiny", num_classes=10, T=2)
    with torch.no_grad():
        model.fc.weight.fill_(0.25)
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    pt = tmp_path / "w.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, pt)
    ref = tmp_path / "ref.pth"
    torch.save(export_reference_state_dict(model), ref)
    for path, layout in ((st, "library"), (pt, "library"), (ref, "reference")):
        fresh = create_model("msresnet_tiny", num_classes=10, T=2)
        assert load_weights(fresh, str(path)) == layout
        assert torch.equal(fresh.fc.weight, model.fc.weight)
        out = _cli(["energy", "--model", "msresnet_tiny", "--T", "2", "--input-size", "8", "8",
                    "--checkpoint", str(path), "--random-input", "--json"], capsys)  # fmt: skip
        assert json.loads(out)["checkpoint"]["layout"] == layout
    text = _cli(["energy", "--model", "msresnet_tiny", "--T", "2", "--input-size", "8", "8"], capsys)
    assert "paper accounting" in text and "encoder.conv" in text


def test_moved_names_still_work_with_a_deprecation_warning() -> None:
    import gac_coding.cli.energy
    import gac_coding.energy as energy

    for name, target in (("load_checkpoint", load_weights),
                         ("configure_energy_parser", gac_coding.cli.energy.configure_energy_parser),
                         ("run_energy_command", gac_coding.cli.energy.run_energy_command)):  # fmt: skip
        new = f"{target.__module__}.{target.__name__}"
        with pytest.warns(
            DeprecationWarning, match=rf"gac_coding\.energy\.{name} is deprecated .*; use {new}$"
        ):
            assert getattr(energy, name) is target
    with pytest.raises(AttributeError, match="no_such_name"):
        energy.no_such_name  # noqa: B018


def test_energy_module_imports_neither_the_models_nor_the_cli() -> None:
    import inspect

    import gac_coding.energy as energy

    code = (
        "import sys, gac_coding.energy; "
        "print(sorted(m for m in sys.modules if m.startswith(('gac_coding.models', 'gac_coding.cli'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "argparse" not in inspect.getsource(energy)  # and parses no arguments


def test_cli_energy_rejects_bad_values() -> None:
    from gac_coding.cli import main

    with pytest.raises(ValueError, match="--T"):
        main(["energy", "--model", "msresnet_tiny", "--T", "0"])
    with pytest.raises(ValueError, match="name"):
        main(["energy", "--model", "no_such_model"])


# ------------------------------------------------------------------------------- wrapped frameworks


def _backbone(framework: str) -> nn.Module:
    if framework == "snntorch":
        import snntorch as snn

        return nn.Sequential(
            nn.Conv2d(4, 5, 3, padding=1),
            snn.Leaky(beta=0.9, init_hidden=True),
            nn.Flatten(),
            nn.Linear(5 * 6 * 6, 3),
            snn.Leaky(beta=0.9, init_hidden=True, output=True),
        )
    if framework == "norse":
        import norse.torch as norse

        return norse.SequentialState(
            nn.Conv2d(4, 5, 3, padding=1), norse.LIFCell(), nn.Flatten(), nn.Linear(5 * 6 * 6, 3)
        )
    from spikingjelly.activation_based import layer, neuron

    return nn.Sequential(
        layer.Conv2d(4, 5, 3, padding=1, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(5 * 6 * 6, 3, step_mode="m"),
    )


@pytest.mark.parametrize("framework", ["snntorch", "norse", "spikingjelly"])
@pytest.mark.parametrize("binarize", [False, True])
def test_wrapped_framework_backbones(framework: str, binarize: bool) -> None:
    import warnings

    T = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = gac.wrap(_backbone(framework), T=T, in_channels=1, out_channels=4, binarize=binarize)
    net.encoder.bn.weight.data.fill_(3.0)  # make the untrained stem fire
    for p in net.encoder.gate.parameters():  # and its gate open (TA, SCA >= 0: gate >= 0.5)
        p.data.abs_()
    x = torch.rand(2, 1, 6, 6)
    report = estimate_energy(net, x)
    layers = {ly.name: ly for ly in report.layers}
    first = layers["backbone.0"]
    assert first.flops == T * 2 * 5 * 6 * 6 * 4 * 9  # every step of the code, however it is driven
    assert report.totals["batch_size"] == 2 and report.totals["T"] == T
    net.eval()
    with torch.no_grad():
        code = net.encoder(x)
    assert float(code.sum()) > 0
    if binarize:
        assert first.binary_input and report.non_spike_driven == []
        plain = nn.Conv2d(4, 5, 3, padding=1)
        assert first.synop == _brute_conv_synops(code.flatten(0, 1), plain)
    else:
        assert report.non_spike_driven == ["backbone.0"] and first.mac == first.flops
    # the encoder's attention always costs MACs, whatever its input holds
    assert all(ly.mac == ly.flops for ly in report.layers if ly.role == "attention")
