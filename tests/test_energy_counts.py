"""Energy totals that the fixtures of test_energy.py do not reach, counted by hand.

* A layer called several times in one forward pass: per-step framework nets (SpikingJelly's
  single-step mode, snnTorch), where every convolution and linear layer runs once per step, and a
  plain module that feeds one layer binary and real inputs in turn. Each count is the sum over the
  calls, computed here from the inputs the layer received (recorded by the test's own hooks) and
  the layer's geometry.
* The GAC encoder's static fast path on a binary image: the stem convolution runs once for the
  ``T`` steps; its exact synaptic operations are those of the one call, the paper's accumulates are
  ``FLOPs x firing rate x T``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.energy import E_AC_PJ, E_MAC_PJ, estimate_energy

PJ_TO_MJ = 1e-9


def _reach_3x3_same(H: int, W: int, i: int, j: int) -> int:
    """Output positions a spike at ``(i, j)`` reaches through a 3x3, stride 1, padding 1 kernel on
    an ``H x W`` map: the in-bounds rows ``i-1..i+1`` times the in-bounds columns ``j-1..j+1``."""
    rows = sum(0 <= r < H for r in (i - 1, i, i + 1))
    cols = sum(0 <= c < W for c in (j - 1, j, j + 1))
    return rows * cols


def _synops_3x3_same(x: Tensor, out_channels: int) -> int:
    """Exact accumulates of a 3x3 same convolution on the binary ``x: [N, C, H, W]``."""
    H, W = x.shape[-2:]
    return sum(_reach_3x3_same(H, W, i, j) for _, _, i, j in torch.nonzero(x).tolist()) * out_channels


def _record_inputs(model: nn.Module, names: list[str]) -> tuple[dict[str, list[Tensor]], list]:
    seen: dict[str, list[Tensor]] = {n: [] for n in names}
    handles = []
    for n in names:

        def hook(module: nn.Module, args: tuple, n: str = n) -> None:
            seen[n].append(args[0].detach().clone())

        handles.append(model.get_submodule(n).register_forward_pre_hook(hook))
    return seen, handles


def _opened_up(net: nn.Module) -> nn.Module:
    """An untrained wrapped net whose encoder fires and whose gate is open (as test_energy does)."""
    net.encoder.bn.weight.data.fill_(3.0)
    for p in net.encoder.gate.parameters():
        p.data.abs_()
    return net


# ------------------------------------------------------------------------------------------------
# Layers called once per step
# ------------------------------------------------------------------------------------------------


def _sj_single_step() -> nn.Module:
    from spikingjelly.activation_based import layer, neuron

    return nn.Sequential(
        layer.Conv2d(4, 3, 3, padding=1, bias=False),  # step_mode "s": one call per step
        neuron.IFNode(v_threshold=0.3),
        layer.Flatten(),
        layer.Linear(3 * 6 * 6, 5),
    )


def _snntorch_per_step() -> nn.Module:
    import snntorch as snn

    return nn.Sequential(
        nn.Conv2d(4, 3, 3, padding=1, bias=False),
        snn.Leaky(beta=0.5, threshold=0.3, init_hidden=True),
        nn.Flatten(),
        nn.Linear(3 * 6 * 6, 5),
    )


@pytest.mark.parametrize(
    ("name", "mode", "binarize"), [("spikingjelly-s", "s", True), ("snntorch", "step", False)]
)
def test_layers_called_every_step_sum_their_calls(name: str, mode: str, binarize: bool) -> None:
    T, B, H, W = 3, 2, 6, 6
    backbone = _sj_single_step() if name == "spikingjelly-s" else _snntorch_per_step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = _opened_up(gac.wrap(backbone, T=T, in_channels=1, out_channels=4, binarize=binarize))
    assert net.mode == mode  # the backbone runs once per step
    x = torch.rand(B, 1, H, W, generator=torch.Generator().manual_seed(3))
    conv_name, fc_name = "backbone.0", "backbone.3"
    seen, handles = _record_inputs(net, [conv_name, fc_name])
    try:
        report = estimate_energy(net, x)
    finally:
        for h in handles:
            h.remove()
    conv_in, fc_in = seen[conv_name], seen[fc_name]
    assert len(conv_in) == len(fc_in) == T  # one call per step
    layers = {ly.name: ly for ly in report.layers}
    conv, fc = layers[conv_name], layers[fc_name]

    # the convolution: T calls on the code of each step, [B, 4, 6, 6] -> [B, 3, 6, 6]
    per_call = B * 3 * H * W * 4 * 9
    assert conv.calls == T and conv.input_shape == (B, 4, H, W)
    assert conv.flops == T * per_call and conv.steps == 1
    nonzero = sum(int(torch.count_nonzero(c)) for c in conv_in)
    assert conv.firing_rate == pytest.approx(nonzero / (T * B * 4 * H * W), rel=1e-12)
    if binarize:
        assert all(bool(((c == 0) | (c == 1)).all()) for c in conv_in)
        synop = sum(_synops_3x3_same(c, 3) for c in conv_in)
        ac = sum(per_call * int(torch.count_nonzero(c)) / c.numel() for c in conv_in)
        assert conv.binary_input and conv.mac == conv.mac_paper == 0
        assert conv.synop == synop > 0
        assert conv.ac_paper == pytest.approx(ac, rel=1e-12)
    else:
        assert not conv.binary_input and not conv.spike_driven
        assert conv.mac == conv.mac_paper == T * per_call and conv.synop == 0 and conv.ac_paper == 0

    # the linear layer: T calls on the neurons' spikes [B, 108] -> [B, 5]
    counts = [int(torch.count_nonzero(s)) for s in fc_in]
    assert sum(c > 0 for c in counts) >= 2, counts  # spikes at several steps: a sum, not one call
    assert all(bool(((s == 0) | (s == 1)).all()) for s in fc_in)
    assert fc.calls == T and fc.input_shape == (B, 108) and fc.binary_input and fc.spike_driven
    assert fc.flops == T * B * 5 * 108 and fc.mac == fc.mac_paper == 0
    assert fc.synop == sum(counts) * 5
    assert fc.ac_paper == pytest.approx(sum(B * 5 * 108 * c / (B * 108) for c in counts), rel=1e-12)
    assert fc.firing_rate == pytest.approx(sum(counts) / (T * B * 108), rel=1e-12)
    assert fc.energy_mj == pytest.approx(E_AC_PJ * fc.ac_paper * PJ_TO_MJ, rel=1e-12)
    assert fc.energy_executed_mj == pytest.approx(E_AC_PJ * fc.synop * PJ_TO_MJ, rel=1e-12)

    # totals: the sums over the layers, whatever each layer's number of calls
    for key in ("flops", "mac", "synop", "mac_paper"):
        assert report.totals[key] == sum(getattr(ly, key) for ly in report.layers), key
    backbone_synop = sum(ly.synop for ly in report.layers if ly.part == "backbone")
    assert backbone_synop == conv.synop + fc.synop
    assert report.totals["T"] == T and report.totals["batch_size"] == B


class _CalledThrice(nn.Module):
    """A stem, then one linear layer fed a binary, a real and a binary input (of another batch
    size) in one forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 3)
        self.fc = nn.Linear(4, 3)
        self.register_buffer("a", torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]]))
        self.register_buffer("b", torch.tensor([[0.5, 0.0, 0.0, 2.0], [1.0, 1.0, 0.0, 0.0]]))
        self.register_buffer("c", torch.tensor([[0.0, 1.0, 0.0, 0.0]]))

    def forward(self, x: Tensor) -> Tensor:
        y = self.stem(x)
        return y + self.fc(self.a) + self.fc(self.b) + self.fc(self.c)


def test_one_layer_fed_binary_and_real_inputs_in_one_forward() -> None:
    report = estimate_energy(_CalledThrice(), torch.rand(2, 4))
    fc = {ly.name: ly for ly in report.layers}["fc"]
    per_call = 2 * 3 * 4  # [2, 4] -> [2, 3]; the last call is [1, 4] -> [1, 3]: 12
    assert fc.calls == 3 and fc.input_shape == (2, 4) and fc.role == "synaptic"  # the first call's
    assert fc.flops == 2 * per_call + 12
    # the real-valued call costs MACs; the binary ones (4 and 1 spikes) exact accumulates
    assert fc.mac == fc.mac_paper == per_call
    assert fc.synop == (4 + 1) * 3
    assert fc.ac_paper == pytest.approx(per_call * 4 / 8 + 12 * 1 / 4, rel=1e-12)
    assert fc.firing_rate == pytest.approx((4 + 4 + 1) / (8 + 8 + 4), rel=1e-12)
    assert not fc.binary_input and not fc.spike_driven  # one real call is enough
    assert report.non_spike_driven == ["fc"]
    want = (E_MAC_PJ * per_call + E_AC_PJ * fc.ac_paper) * PJ_TO_MJ
    assert fc.energy_mj == pytest.approx(want, rel=1e-12)
    assert fc.energy_executed_mj == pytest.approx((E_MAC_PJ * per_call + E_AC_PJ * 15) * PJ_TO_MJ, rel=1e-12)
    stem = report.layers[0]
    assert stem.name == "stem" and stem.calls == 1 and stem.role == "stem" and stem.mac == 2 * 3 * 4
    assert report.totals["mac"] == stem.mac + per_call and report.totals["synop"] == 15


# ------------------------------------------------------------------------------------------------
# The static fast path on a binary image
# ------------------------------------------------------------------------------------------------


def test_static_fast_path_accumulates_of_a_binary_image() -> None:
    T, C, H, W = 4, 3, 5, 5
    image = torch.zeros(2, 1, H, W)
    for i, j in ((0, 0), (0, 2), (2, 2), (4, 4), (3, 0)):  # corners, an edge, the centre
        image[0, 0, i, j] = 1.0
    image[1, 0, 1:3, 1:4] = 1.0  # a block of 6 inside
    spikes = int(image.sum())  # 11
    # by hand: corner 4 taps, top edge 6, centre 9, corner 4, left edge 6; the block's six inner
    # pixels reach 9 output positions each
    reach = 4 + 6 + 9 + 4 + 6 + 6 * 9
    assert _synops_3x3_same(image, 1) == reach  # the helper agrees with the hand count
    enc = gac.GACEncoder(in_channels=1, out_channels=C, T=T)
    report = estimate_energy(enc, image)
    stem = report.layers[0]
    flops = 2 * C * H * W * 1 * 9  # one call: [2, 1, 5, 5] -> [2, 3, 5, 5]
    rate = spikes / image.numel()
    assert stem.name == "conv" and stem.role == "stem" and stem.calls == 1 and stem.steps == T
    assert stem.binary_input and stem.spike_driven and stem.flops == flops
    assert stem.mac == stem.mac_paper == 0
    assert stem.synop == reach * C  # executed once: the fast path does not repeat the stem
    assert stem.ac_paper == pytest.approx(flops * rate * T, rel=1e-12)  # the paper: every step
    assert stem.firing_rate == pytest.approx(rate, rel=1e-12)
    assert stem.energy_mj == pytest.approx(E_AC_PJ * flops * rate * T * PJ_TO_MJ, rel=1e-12)
    assert stem.energy_executed_mj == pytest.approx(E_AC_PJ * reach * C * PJ_TO_MJ, rel=1e-12)
    assert report.totals["synop"] == reach * C
    assert report.totals["ac_paper"] == pytest.approx(flops * rate * T, rel=1e-12)
    # the attention still costs MACs (per image for the spatial-channel part, T steps in the paper)
    att = [ly for ly in report.layers if ly.role == "attention"]
    assert att and all(ly.synop == 0 and ly.mac == ly.flops > 0 for ly in att)
    # the same frame as a sequence of T copies executes what the paper counts
    seq = estimate_energy(enc, image.unsqueeze(0).expand(T, -1, -1, -1, -1).contiguous())
    seq_stem = seq.layers[0]
    assert seq_stem.calls == 1 and seq_stem.steps == 1 and seq_stem.synop == T * reach * C
    assert seq_stem.ac_paper == pytest.approx(stem.ac_paper, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Settings the other fixtures leave at one value (survivors of `make mutation AREA=energy`)
# ------------------------------------------------------------------------------------------------


class _TimeMajor(nn.Module):
    """A model without an encoder that returns time-major logits ``[T, B, K]``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x: Tensor) -> Tensor:  # x: [T, B, 6]
        return self.fc(x)


def test_batch_and_steps_without_an_encoder() -> None:
    T, B = 3, 5
    report = estimate_energy(_TimeMajor(), torch.rand(T, B, 6), e_mac_pj=2.0, e_ac_pj=0.5)
    t = report.totals
    assert t["batch_size"] == B and t["T"] == T  # read from the logits [T, B, K]
    assert t["e_mac_pj"] == 2.0 and t["e_ac_pj"] == 0.5
    assert t["mac"] == T * B * 4 * 6 and report.layers[0].kind == "Linear"
    d = report.layers[0].to_dict()
    assert d["input_shape"] == [T, B, 6] and d["kind"] == "Linear" and d["mac"] == t["mac"]
    assert not any(k.startswith("_") for k in d)  # the private tallies stay out
    assert t["energy_mj"] == pytest.approx(2.0 * t["mac"] * PJ_TO_MJ, rel=1e-12)
    assert t["energy_mj_per_sample"] == pytest.approx(t["energy_mj"] / B, rel=1e-12)
    flat = estimate_energy(nn.Linear(6, 4), torch.rand(7, 6)).totals  # [B, K]: no time dimension
    assert flat["batch_size"] == 7 and flat["T"] == 1
    given = estimate_energy(nn.Linear(6, 4), torch.rand(7, 6), batch_size=1).totals
    assert given["batch_size"] == 1 and given["energy_mj_per_sample"] == given["energy_mj"]


def test_transposed_convolution_on_real_input_and_an_unbatched_convolution() -> None:
    up = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    x = torch.rand(1, 4, 3, 3)
    layer = estimate_energy(up, x).layers[0]
    assert layer.kind == "ConvTranspose2d" and not layer.binary_input
    assert layer.mac == layer.flops == x.numel() * (6 // 2) * 9  # each input value x its taps
    assert isinstance(layer.flops, int)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    spikes = torch.zeros(2, 4, 4)  # unbatched [C, H, W]
    spikes[0, 0, 0] = spikes[1, 2, 1] = 1.0
    layer = estimate_energy(conv, spikes).layers[0]
    assert layer.binary_input and layer.synop == (4 + 9) * 3  # a corner and an inner pixel


def test_a_single_spike_input_and_batchnorm_without_affine() -> None:
    layer = estimate_energy(nn.Linear(1, 3), torch.ones(1, 1)).layers[0]
    assert layer.firing_rate == 1.0 and layer.synop == 3 and layer.ac_paper == 3.0
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, affine=False), nn.BatchNorm2d(2))
    assert estimate_energy(net, torch.rand(3, 1, 4, 4)).totals["mac_norm"] == 3 * 2 * 4 * 4  # one BN


class _Outputs(nn.Module):
    """A linear layer whose result comes back in a dict, or first in a tuple with a state."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(6, 4)

    def forward(self, x: Tensor) -> object:
        y = self.fc(x)
        if self.kind == "dict":
            return {"logits": y}
        return y, torch.zeros(7, 3, 2)  # the state after the logits, of another shape


def test_outputs_in_a_dict_or_a_tuple() -> None:
    T, B = 3, 5
    x = torch.rand(T, B, 6)
    in_dict = estimate_energy(_Outputs("dict"), x).totals
    assert in_dict["batch_size"] == T and in_dict["T"] == 1  # no logits to read: x's first dim
    first = estimate_energy(_Outputs("tuple"), x).totals
    assert first["batch_size"] == B and first["T"] == T  # the time-major logits come first


def test_direct_coding_model_counts_its_stem_for_every_step() -> None:
    from gac_coding.models import create_model

    T = 3
    model = create_model("msresnet_tiny", num_classes=4, T=T, coding="direct", in_channels=1)
    stem = estimate_energy(model, torch.rand(2, 1, 8, 8)).layers[0]
    assert stem.name == "encoder.conv" and stem.role == "stem" and stem.calls == 1
    assert stem.steps == T and stem.mac_paper == T * stem.mac == T * stem.flops > 0


def test_convolutional_temporal_attention_counts_once_on_the_static_path() -> None:
    T = 4
    enc = gac.GACEncoder(1, 3, T=T, temporal_attention="conv")
    report = estimate_energy(enc, torch.rand(2, 1, 5, 5))
    by_name = {ly.name: ly for ly in report.layers}
    for name in ("gate.ta.conv1", "gate.ta.conv2"):  # 1-D convolutions over the T steps
        assert by_name[name].steps == 1 and by_name[name].mac_paper == by_name[name].mac > 0
    for name in ("conv", "gate.sca.conv1", "gate.sca.conv2"):  # once per image for T steps
        assert by_name[name].steps == T and by_name[name].mac_paper == T * by_name[name].mac


def test_calibrate_batchnorm_restores_the_momentum() -> None:
    from gac_coding.energy import calibrate_batchnorm

    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2, momentum=0.3), nn.BatchNorm2d(2))
    calibrate_batchnorm(net, torch.rand(4, 1, 3, 3))
    assert net[1].momentum == 0.3 and net[2].momentum == 0.1


def test_argument_errors_name_the_argument_and_what_arrived() -> None:
    from gac_coding.energy import calibrate_batchnorm, dense_macs, exact_synops

    x = torch.rand(1, 1, 2, 2)
    conv = nn.Conv2d(1, 1, 1)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got str"):
        estimate_energy("net", x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x: expected a tensor, a DataLoader or an iterable .*, got int"):
        estimate_energy(conv, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x: batch 0 is a list whose first item is float; expected a tensor"):
        estimate_energy(conv, [[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="e_ac_pj: expected a finite energy in pJ >= 0, got -1.0"):
        estimate_energy(conv, x, e_ac_pj=-1.0)
    with pytest.raises(TypeError, match="e_ac_pj: expected a real number, got bool"):
        estimate_energy(conv, x, e_ac_pj=True)  # type: ignore[arg-type]
    assert estimate_energy(conv, x, e_mac_pj=0.0).totals["energy_mj"] == 0.0  # 0 pJ is allowed
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1 or None, got 0"):
        estimate_energy(conv, x, batch_size=0)
    for bad in (True, 2.5):
        with pytest.raises(TypeError, match=f"batch_size: expected an int or None, got {type(bad).__name__}"):
            estimate_energy(conv, x, batch_size=bad)  # type: ignore[arg-type]
    for fn in (lambda: exact_synops(nn.ReLU(), x), lambda: dense_macs(nn.ReLU(), x, x)):
        with pytest.raises(TypeError, match="module: expected a convolution or nn.Linear, got ReLU"):
            fn()
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module, got int"):
        calibrate_batchnorm(3, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name: expected 'encoder' or 'backbone', got 'head'"):
        estimate_energy(conv, x).part("head")


def test_spike_tensors_of_any_dtype_and_dilated_transposed_convolutions() -> None:
    from gac_coding.energy import exact_synops

    g = torch.Generator().manual_seed(2)
    spikes = (torch.rand(1, 2, 4, 4, generator=g) < 0.4).float()
    conv = nn.Conv2d(2, 4, 3, padding=1, groups=2)
    want = exact_synops(conv, spikes)
    assert exact_synops(conv, spikes.bool()) == exact_synops(conv, spikes.double()) == want
    assert isinstance(want, int) and isinstance(estimate_energy(conv, spikes).layers[0].flops, int)
    # a transposed convolution with stride 2, padding 2 and dilation 2: tap (ky, kx) of input pixel
    # (i, j) lands on (2 i - 2 + 2 ky, 2 j - 2 + 2 kx), kept when inside the 7 x 7 map (without
    # the dilation the map is 5 x 5 and other taps fall outside)
    up = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=2, dilation=2)
    Ho = (4 - 1) * 2 - 2 * 2 + 2 * (3 - 1) + 1  # 7
    reach = 0
    for _, _, i, j in torch.nonzero(spikes).tolist():
        rows = sum(0 <= 2 * i - 2 + 2 * k < Ho for k in range(3))
        cols = sum(0 <= 2 * j - 2 + 2 * k < Ho for k in range(3))
        reach += rows * cols * 3
    assert exact_synops(up, spikes) == reach and up(spikes).shape[-1] == Ho


def test_synaptic_operations_beyond_float32_integers_stay_exact() -> None:
    """A 1401 x 1401 map of spikes through a 3 x 3 same convolution: (3 * 1401 - 2)^2 = 17,648,401
    in-bounds taps, an odd number above 2^24 that float32 cannot hold (a sum in float32 gives
    17,648,400)."""
    from gac_coding.energy import exact_synops

    spikes = torch.ones(1, 1, 1401, 1401)
    want = (3 * 1401 - 2) ** 2
    assert want > 2**24 and want % 2 == 1
    assert exact_synops(nn.Conv2d(1, 1, 3, padding=1), spikes) == want
    assert exact_synops(nn.ConvTranspose2d(1, 1, 3, padding=1), spikes) == want


def test_a_moved_name_warns_at_the_line_that_uses_it() -> None:
    import gac_coding.energy as energy

    with pytest.warns(DeprecationWarning, match="energy.load_checkpoint is deprecated") as record:
        energy.load_checkpoint  # noqa: B018
    assert record[0].filename == __file__


def test_value_messages_are_exactly_the_documented_ones() -> None:
    x = torch.rand(1, 1, 2, 2)
    conv = nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match=r"^x: contains NaN or infinite values$"):
        estimate_energy(conv, torch.full((1, 1, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"^e_mac_pj: expected a finite energy in pJ >= 0, got inf$"):
        estimate_energy(conv, x, e_mac_pj=float("inf"))


# ------------------------------------------------------------------------------------------------
# The printed table, read back
# ------------------------------------------------------------------------------------------------

_NAME_34 = "layer_with_a_name_of_34_characters"
_NAME_35 = "a_layer_with_a_name_of_35_character"  # one longer than the column


class _Table(nn.Module):
    """A stem on real input, a layer on its spikes, one on its real output (not spike-driven),
    with names of 34 and 35 characters around the 34-character column."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 6)
        setattr(self, _NAME_34, nn.Linear(6, 2))
        setattr(self, _NAME_35, nn.Linear(6, 2))

    def forward(self, x: Tensor) -> Tensor:
        y = self.stem(x)
        return getattr(self, _NAME_34)((y > 0).float()) + getattr(self, _NAME_35)(y)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_the_printed_table_reads_back_the_report() -> None:
    report = estimate_energy(_Table(), torch.randn(5, 4, generator=torch.Generator().manual_seed(0)))
    lines = str(report).split("\n")
    head = lines[0]
    assert head.split() == "layer role in rate MAC (paper) SynOp exact AC (paper) E mJ".split()
    assert lines[1] == lines[2 + len(report.layers)] == "-" * len(head)
    shown = {"stem": "stem", _NAME_34: _NAME_34, _NAME_35: "..." + _NAME_35[-31:]}
    for layer, row in zip(report.layers, lines[2 : 2 + len(report.layers)], strict=True):
        assert row[:34].rstrip() == shown[layer.name] and row[34] == " "
        role, kind, rate, mac, synop, ac, energy, *flag = row[35:].split()
        assert role == layer.role and kind == ("bin" if layer.binary_input else "real")
        assert float(rate) == pytest.approx(layer.firing_rate, abs=5e-4)
        assert (_number(mac), _number(synop), _number(ac)) == (
            layer.mac_paper,
            layer.synop,
            round(layer.ac_paper),
        )
        assert float(energy) == pytest.approx(layer.energy_mj, rel=1e-3)
        assert flag == ([] if layer.spike_driven else ["<-", "not", "spike-driven"])
    assert [ly.binary_input for ly in report.layers] == [False, True, False]
    t = report.totals
    rest = lines[3 + len(report.layers) :]
    assert rest[0] == "batch 5, T=1, E_MAC=4.6 pJ, E_AC=0.9 pJ"
    words = rest[1].replace("(", " ").replace(";", " ").replace(",", "").split()
    assert words[:6] == ["paper", "accounting:", "MAC", str(t["mac_paper"]), "AC", str(round(t["ac_paper"]))]
    assert float(words[7]) == pytest.approx(t["energy_mj"], rel=1e-3)
    words = rest[2].replace(",", "").split()
    assert words[:6] == ["executed", "(exact):", "MAC", str(t["mac"]), "SynOp", str(t["synop"])]
    assert rest[3] == f"not spike-driven (real-valued input to a synaptic layer): {_NAME_35}"
    assert len(rest) == 4
    both = estimate_energy(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.Linear(2, 2)),
                           torch.rand(2, 4))  # fmt: skip
    assert str(both).split("\n")[-1] == "not spike-driven (real-valued input to a synaptic layer): 2, 3"
    clean = str(estimate_energy(nn.Linear(4, 3), torch.rand(2, 4))).split("\n")
    assert clean[-1] == "spike-driven: every synaptic layer after the stem receives binary spikes"


def test_an_unbatched_input_is_one_sample() -> None:
    """A Linear given ``[F]`` or a convolution given ``[C, H, W]`` ran on one sample: the energy
    per sample is the whole call's, as for the same sample in a batch of one."""
    x1, x3 = torch.rand(6), torch.rand(3, 5, 5)
    for layer, x in ((nn.Linear(6, 2), x1), (nn.Conv2d(3, 2, 3), x3), (nn.Conv1d(3, 2, 3), x3[:, 0])):
        # (an unbatched Conv2d gives a 3-d output, which is not read as time-major logits)
        one = estimate_energy(layer, x)
        batched = estimate_energy(
            layer, x.unsqueeze(0), batch_size=1
        )  # (a batched Conv1d output looks time-major)
        assert one.totals["batch_size"] == 1
        assert one.totals["samples"] == 1
        assert one.totals["energy_mj_per_sample"] == pytest.approx(
            batched.totals["energy_mj_per_sample"], rel=1e-12
        )
    # a batched input keeps its first dimension as the batch, and a model that feeds its first
    # layer one sample at a time is still read from its own input
    assert estimate_energy(nn.Linear(6, 2), torch.rand(5, 6)).totals["batch_size"] == 5

    class PerSample(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 2)

        def forward(self, x: Tensor) -> Tensor:
            return torch.stack([self.fc(row) for row in x])

    assert estimate_energy(PerSample(), torch.rand(4, 6)).totals["samples"] == 4


# ------------------------------------------------------------------------------------------------
# What the energy-counter mutation run found unpinned
# ------------------------------------------------------------------------------------------------


class _ByKeyword(nn.Module):
    """Calls its encoder and its classifier with keyword arguments (forward hooks then see no
    positional input), or positionally."""

    def __init__(self, keyword: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.keyword = keyword
        self.encoder = gac.GACEncoder(1, 2, T=2)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 16, 3)

    def forward(self, x: Tensor) -> Tensor:
        code = self.encoder(x=x) if self.keyword else self.encoder(x)
        h = self.conv(code.flatten(0, 1)).flatten(1)
        return self.fc(input=h) if self.keyword else self.fc(h)


def _keyword_and_positional() -> tuple[Any, Any]:
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    return estimate_energy(_ByKeyword(True).eval(), x), estimate_energy(_ByKeyword(False).eval(), x)


def test_layers_called_with_keyword_arguments_do_not_stop_the_count() -> None:
    by_kw, plain = _keyword_and_positional()
    assert [ly.name for ly in plain.layers] == ["encoder.conv", "encoder.gate.ta.fc1",
        "encoder.gate.ta.fc2", "encoder.gate.sca.conv1", "encoder.gate.sca.conv2", "conv", "fc"]  # fmt: skip
    assert "conv" in [ly.name for ly in by_kw.layers]
    assert by_kw.totals["samples"] == plain.totals["samples"] == 3
    conv_kw, conv = (next(ly for ly in r.layers if ly.name == "conv") for r in (by_kw, plain))
    assert conv_kw.to_dict() == conv.to_dict()  # a layer called positionally counts the same


def test_layers_called_with_keyword_arguments_are_counted_like_positional_ones() -> None:
    """``fc(input=h)`` is counted, and ``encoder(x=image)`` is seen to run its static fast path
    (its stem counted T times), as when they are called positionally."""
    by_kw, plain = _keyword_and_positional()
    assert [ly.to_dict() for ly in by_kw.layers] == [ly.to_dict() for ly in plain.layers]


@pytest.mark.parametrize(("coding", "steps"), [("rate", 1), ("latency", 1), ("gac", 2)])
def test_codings_that_draw_frames_run_the_stem_per_frame(coding: str, steps: int) -> None:
    from gac_coding.models import create_model

    torch.manual_seed(0)
    model = create_model("msresnet_tiny", num_classes=2, T=2, coding=coding, in_channels=1).eval()
    stem = next(ly for ly in estimate_energy(model, torch.rand(3, 1, 8, 8)).layers if ly.role == "stem")
    # rate and latency codings run the stem on every spike frame (their calls already count the
    # T steps); GAC's static fast path runs it once for all T
    assert stem.name == "encoder.conv" and stem.steps == steps


class _StemOnly(nn.Module):
    """Uses its encoder's convolution directly, never the encoder's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = gac.GACEncoder(1, 2, T=4)
        self.fc = nn.Linear(2 * 16, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.encoder.conv(x).flatten(1))


def test_an_encoder_layer_called_outside_its_encoder_counts_its_own_calls() -> None:
    stem = estimate_energy(_StemOnly().eval(), torch.rand(2, 1, 4, 4)).layers[0]
    assert stem.name == "encoder.conv" and stem.steps == 1 and stem.calls == 1
    assert stem.mac_paper == stem.mac == stem.flops


def test_samples_and_batches_add_up_over_batches_and_a_scalar_is_one_sample() -> None:
    fc = nn.Linear(4, 2)
    r = estimate_energy(fc, [torch.rand(2, 4), torch.rand(3, 4), torch.rand(1, 4)])
    assert (r.totals["samples"], r.totals["batches"]) == (6, 3)
    assert r.totals["energy_mj_per_sample"] == r.totals["energy_mj"] / 6

    class Scalar(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(x.view(1))

    assert estimate_energy(Scalar(), torch.tensor(0.5)).totals["samples"] == 1


class _EncodesTwice(_StemOnly):
    """Runs its encoder on the batch, then again on the first sample alone (an auxiliary view)."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.fc(self.encoder(x).flatten(2))
        self.encoder(x[:1] if x.dim() == 4 else x[:, :1])
        return out


def test_the_batch_is_the_one_the_encoder_saw_first() -> None:
    """The samples of a forward pass are counted from its first encoder call (``[B, C, H, W]``
    static, ``[T, B, C, H, W]`` sequence); a later call within the same pass, on another number of
    samples, changes neither the samples nor ``T``."""
    torch.manual_seed(0)
    model = _EncodesTwice().eval()
    r = estimate_energy(model, torch.rand(4, 1, 4, 4))
    assert (r.totals["samples"], r.totals["batches"], r.totals["T"]) == (4, 1, 4)
    r = estimate_energy(model, [torch.rand(4, 4, 1, 4, 4), torch.rand(4, 5, 1, 4, 4)])
    assert (r.totals["samples"], r.totals["batches"]) == (9, 2)


@pytest.mark.parametrize("shape", [(5,), (1, 3), (3, 8, 8)])
def test_an_input_of_the_wrong_rank_meets_the_encoders_message(shape: tuple[int, ...]) -> None:
    """The counter's hook on the encoder reads the batch only from a 4-d or 5-d tensor, so an
    input of another rank reaches the encoder's own check (not an ``IndexError`` in the hook)."""
    model = gac.GACEncoder(1, 2, T=2)
    with pytest.raises(ValueError) as info:
        estimate_energy(model, torch.rand(*shape))
    assert str(info.value) == (
        "x: expected a static batch [B, C, H, W] or a sequence [T, B, C, H, W], got "
        f"{len(shape)} dims with shape {shape}"
    )
