"""Pinned behaviour of :func:`gac_coding.wrap` / :class:`GACNet` that the other adapter tests leave
open (found by mutation testing, area ``adapters-wrap``): the whole messages of its errors, which
layer the gated-code warning names, the size check on odd inputs, the replaced layer, and
``set_timesteps``. Tiny nets, 8x8 inputs, T <= 3."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from warning_frames import warnings_pointing

import gac_coding as gac
import gac_coding.adapters as adapters
from gac_coding.adapters import GACNet, GatedInputWarning
from gac_coding.adapters._layers import adapt_layer


def _gated_warnings(call: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in seen if issubclass(w.category, GatedInputWarning)]


def _conv_net(c: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, 3, 3, padding=1), gac.LIF(), nn.Flatten(2), nn.Linear(3 * 64, 4))


# ------------------------------------------------------------------------- set_timesteps
def test_set_timesteps_changes_the_steps_of_a_plain_net() -> None:
    torch.manual_seed(0)
    net = gac.wrap(
        nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 4)),
        T=2,
        in_channels=1,
        temporal_attention="conv",
    )
    net.set_timesteps(3)
    assert net.T == 3 and net.encoder.T == 3
    assert net(torch.rand(2, 1, 8, 8)).shape == (3, 2, 4)
    with pytest.raises(ValueError, match=re.escape("T: expected an integer >= 1, got 0")):
        net.set_timesteps(0)
    assert net.T == 3


def test_set_timesteps_reaches_a_per_step_driver() -> None:
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(1), nn.Linear(64, 4), snn.Leaky(beta=0.5, init_hidden=True))
    net = gac.wrap(backbone, T=2, in_channels=1, binarize=True, temporal_attention="conv")
    assert net.mode == "step"
    net.set_timesteps(3)
    assert net(torch.rand(2, 1, 8, 8)).shape == (3, 2, 4)


class _LoopLifFirst(nn.Module):
    """A tutorial-style snnTorch class that registers its neuron before its Linear."""

    def __init__(self, num_steps: int) -> None:
        super().__init__()
        import snntorch as snn

        self.num_steps = num_steps
        self.lif1 = snn.Leaky(beta=0.8)
        self.fc1 = nn.Linear(64, 4)

    def forward(self, x: Tensor) -> Tensor:
        mem = self.lif1.init_leaky()
        out = []
        for _ in range(self.num_steps):
            spk, mem = self.lif1(self.fc1(x.view(x.shape[0], -1)), mem)
            out.append(spk)
        return torch.stack(out)


def test_loop_net_keeps_its_steps_and_warns_about_its_input_layer() -> None:
    pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net: list[GACNet] = []
    msgs = _gated_warnings(lambda: net.append(gac.wrap(_LoopLifFirst(2), T=2, in_channels=1)))
    assert net[0].mode == "loop"
    # the loop feeds step t to fc1 (its input layer), although lif1 is registered first
    assert len(msgs) == 1 and msgs[0].startswith("gac_coding.wrap: the backbone's first layer 'fc1' (Linear)")
    net[0].set_timesteps(2)  # its own number of steps: accepted
    assert net[0].T == 2
    with pytest.raises(ValueError) as err:
        net[0].set_timesteps(3)
    assert str(err.value) == (
        "T: this backbone runs its own loop of 2 steps (mode 'loop'), which set_timesteps cannot "
        "change; set the net's number of steps and wrap it again with T=3"
    )


# ------------------------------------------------------------------------- messages
def test_framework_named_for_a_plain_backbone_lists_every_framework() -> None:
    pytest.importorskip("snntorch")
    with pytest.raises(ValueError) as err:
        gac.wrap(_conv_net(), T=2, in_channels=1, framework="snntorch", binarize=True)
    assert str(err.value) == (
        "framework: got 'snntorch' but the backbone holds no snnTorch, Norse or SpikingJelly "
        "modules; leave framework=None to detect it, or pass framework='torch'"
    )


def test_unknown_module_attribute_is_named() -> None:
    with pytest.raises(AttributeError) as err:
        adapters.NO_SUCH_NAME  # noqa: B018
    assert str(err.value) == "module 'gac_coding.adapters' has no attribute 'NO_SUCH_NAME'"


def test_unknown_input_layer_lists_the_conv_and_linear_layers() -> None:
    with pytest.raises(ValueError) as err:
        gac.wrap(_conv_net(), T=2, in_channels=1, input_layer="nope", binarize=True)
    assert str(err.value) == (
        "input_layer: expected the name of a submodule of the backbone (its Conv/Linear layers "
        "are ['0', '3']), got 'nope'"
    )


def test_gacnet_defaults_gac_coding_and_no_adaptation() -> None:
    net = GACNet(_conv_net(), 2, 1, binarize=True)  # every default of GACNet itself
    assert net.coding == "gac"
    with pytest.raises(ValueError) as err:
        GACNet(_conv_net(), 2, 1, 2, binarize=True)
    assert str(err.value) == (
        "out_channels: the code has 2 channels but the backbone's input layer '0' (Conv2d) takes "
        "in_channels=1; pass adapt_input_layer=True to replace it by a re-initialised Conv2d that "
        "takes 2, or choose out_channels=1"
    )


def test_wrap_passes_the_coding_on() -> None:
    net = gac.wrap(
        nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 4)), T=2, in_channels=1, coding="rate"
    )
    assert net.coding == "rate"


def test_no_conv_or_linear_is_fine_without_adaptation_and_refused_with_it() -> None:
    backbone = nn.Sequential(gac.LIF(), nn.Flatten(2))
    net = gac.wrap(backbone, T=2, in_channels=1, out_channels=2)  # nothing to match
    assert net(torch.rand(1, 1, 8, 8)).shape == (2, 1, 128)
    with pytest.raises(ValueError) as err:
        gac.wrap(
            nn.Sequential(gac.LIF(), nn.Flatten(2)),
            T=2,
            in_channels=1,
            out_channels=2,
            adapt_input_layer=True,
        )
    assert str(err.value) == (
        "adapt_input_layer: the backbone has no Conv/Linear layer to adapt; name its input "
        "layer with input_layer="
    )


def test_named_neuron_input_layer_is_kept_and_refused_for_adaptation() -> None:
    backbone = nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(2 * 64, 4))
    net = gac.wrap(backbone, T=2, in_channels=1, out_channels=2, input_layer="0")  # a neuron: no size
    assert net.input_layer == "0"
    net = gac.wrap(
        nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 4)),
        T=2,
        in_channels=1,
        input_layer="0",
        adapt_input_layer=True,
    )  # same channels: nothing to adapt
    assert net.input_layer == "0"
    with pytest.raises(ValueError) as err:
        gac.wrap(backbone, T=2, in_channels=1, out_channels=2, input_layer="0", adapt_input_layer=True)
    assert (
        str(err.value) == "adapt_input_layer: expected the input layer to be a Conv or Linear, got '0' (LIF)"
    )


# ------------------------------------------------------------------------- the gated-code warning
def test_warning_only_for_the_gac_code_and_the_named_input_layer() -> None:
    # another coding has no binarize: never warned about
    assert _gated_warnings(lambda: gac.wrap(_conv_net(), T=2, in_channels=1, coding="direct")) == []
    # the named input layer, a Conv, receives the gated code although a neuron is registered first
    backbone = nn.Sequential(gac.LIF(), nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(2))
    msgs = _gated_warnings(lambda: gac.wrap(backbone, T=2, in_channels=1, input_layer="1"))
    assert len(msgs) == 1 and msgs[0] == (
        "gac_coding.wrap: the backbone's first layer '1' (Conv2d) receives the GAC encoder's gated "
        "output, which is not binary (values in [0, 1)), so it multiplies real values (MACs) instead "
        "of accumulating spikes (ACs). Pass binarize=True to feed it binary spikes, or start the "
        "backbone with a spiking neuron (as MS-ResNet does)."
    )
    # a module that is neither neuron nor Conv/Linear comes first: the Conv after it is named
    backbone = nn.Sequential(nn.Identity(), nn.Conv2d(1, 2, 3, padding=1), gac.LIF())
    msgs = _gated_warnings(lambda: gac.wrap(backbone, T=2, in_channels=1))
    assert len(msgs) == 1 and "first layer '1' (Conv2d)" in msgs[0]


# ------------------------------------------------------------------------- the size check
class _Calls(nn.Module):
    """Feeds its layer what ``how`` makes of the code (odd calls a real net might make)."""

    def __init__(self, layer: nn.Module, how: Any) -> None:
        super().__init__()
        self.layer, self.how = layer, how

    def forward(self, x: Tensor) -> Tensor:
        return self.how(self.layer, x)


def _size_error(layer: nn.Module, how: Any, out_channels: int = 1) -> str:
    net = gac.wrap(_Calls(layer, how), T=2, in_channels=1, out_channels=out_channels, binarize=True)
    with pytest.raises(ValueError) as err:
        net(torch.rand(1, 1, 8, 8))
    return str(err.value)


def test_size_check_reports_what_the_layer_received() -> None:
    torch.manual_seed(0)
    code = "from the code of shape (2, 1, 2, 8, 8) (2 channels)"
    msg = _size_error(nn.Conv2d(2, 2, 3), lambda m, x: m(x.flatten(0, 1)[:, :1]), out_channels=2)
    assert msg == (
        "x: the backbone's input layer 'layer' (Conv2d) expects in_channels=2 but receives 1 "
        f"{code}; pass adapt_input_layer=True to wrap() to replace it by a re-initialised layer, "
        "or change out_channels or the image size"
    )
    # a Conv2d fed a 2-d tensor, a Linear fed a 0-d one: "receives 0", not an IndexError
    conv = _size_error(nn.Conv2d(1, 2, 3), lambda m, x: m(x.flatten(1)))
    assert "expects in_channels=1 but receives 0 from the code" in conv
    lin = _size_error(nn.Linear(1, 2), lambda m, x: m(x.sum()))
    assert "expects in_features=1 but receives 0 from the code" in lin


def test_size_check_accepts_unbatched_input_and_keyword_calls() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    net = gac.wrap(_Calls(conv, lambda m, x: m(x[0, 0])), T=2, in_channels=1, binarize=True)
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(net(x), conv(net.encoder(x)[0, 0]))  # [C, H, W]: unbatched
    lin = nn.Linear(8, 3)
    net = gac.wrap(_Calls(lin, lambda m, x: m(input=x)), T=2, in_channels=1, binarize=True)
    torch.testing.assert_close(net(x), lin(net.encoder(x)))  # no positional argument: not checked


# ------------------------------------------------------------------------- the replaced layer
def test_adaptation_replaces_a_nested_layer_in_float64_and_leaves_the_old_one() -> None:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1)), gac.LIF()).double()
    old = backbone[0][0]
    before = (old.weight.detach().clone(), old.bias.detach().clone())
    net = gac.wrap(backbone, T=2, in_channels=1, out_channels=2, adapt_input_layer=True, binarize=True)
    new = backbone[0][0]
    assert net.input_layer == "0.0" and new is not old and isinstance(new, nn.Conv2d)
    assert new.in_channels == 2 and new.weight.shape == (3, 2, 3, 3) and new.weight.dtype == torch.float64
    assert old.weight.shape == (3, 1, 3, 3) and old.in_channels == 1
    assert torch.equal(old.weight, before[0]) and torch.equal(old.bias, before[1])
    assert [n for n, _ in backbone.named_children()] == ["0", "1"]


def test_adapt_layer_keeps_device_and_dtype_and_names_what_it_refuses() -> None:
    meta = nn.Conv2d(1, 3, 3, device="meta", dtype=torch.float64)
    new = adapt_layer(meta, 1, 2)
    assert new.weight.device.type == "meta" and new.weight.dtype == torch.float64
    with pytest.raises(ValueError) as err:
        adapt_layer(nn.Bilinear(2, 2, 2), 1, 2)
    assert str(err.value) == "adapt_input_layer: expected a Conv or Linear input layer, got Bilinear"


def test_adaptation_errors_name_the_layer() -> None:
    conv = nn.Conv2d(1, 3, 3)
    conv.register_parameter("weight", None)
    with pytest.raises(ValueError) as err:
        gac.wrap(
            nn.Sequential(conv), T=2, in_channels=1, out_channels=2, adapt_input_layer=True, binarize=True
        )
    assert str(err.value) == "adapt_input_layer: the input layer Conv2d has no weight"
    with pytest.raises(ValueError) as err:
        gac.wrap(
            nn.Sequential(nn.ConvTranspose2d(1, 3, 3)),
            T=2,
            in_channels=1,
            out_channels=2,
            adapt_input_layer=True,
            binarize=True,
        )
    assert str(err.value) == (
        "adapt_input_layer: expected a Conv or Linear input layer, got the transposed convolution "
        "ConvTranspose2d; build the backbone for 2 channels"
    )
    with pytest.raises(ValueError) as err:
        gac.wrap(
            nn.Sequential(nn.Flatten(2), nn.Linear(65, 4)),
            T=2,
            in_channels=2,
            out_channels=3,
            adapt_input_layer=True,
            binarize=True,
        )
    assert str(err.value) == (
        "adapt_input_layer: the input Linear has in_features=65, not a multiple of in_channels=2, "
        "so it does not take a flattened 2-channel image; build the backbone for the code's size instead"
    )


# ------------------------------------------------------------------------- where the warning points
def test_the_gated_code_warning_points_at_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    # run in the ordinary suite only (tests/mutation/areas.py skips it: mutmut's trampolines sit
    # between the library's frames, so the level it counts differs there)
    def through_wrap() -> None:
        gac.wrap(_conv_net(), T=2, in_channels=1)

    def through_gacnet() -> None:
        GACNet(_conv_net(), 2, 1)

    for call, name in ((through_wrap, "through_wrap"), (through_gacnet, "through_gacnet")):
        seen = warnings_pointing(monkeypatch, call)
        assert [(where, category) for _, where, category in seen] == [(name, GatedInputWarning)]
