"""The contract of ``gac_coding.wrap``: detection, errors, the gated-input warning, input layers,
lazy framework imports. The per-framework behaviour on real backbones is in
``test_adapters_backbones.py``."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from collections import namedtuple

import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.adapters import GatedInputWarning
from gac_coding.adapters.base import stack_steps

T = 3


def quiet_wrap(backbone: nn.Module, **kwargs: object) -> gac.GACNet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        return gac.wrap(backbone, **kwargs)  # type: ignore[arg-type]


def lif_first(channels: int = 1) -> nn.Module:
    return nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(channels * 64, 10))


class PerFrameConv(nn.Module):
    """Plain torch, ``[T, B, C, H, W]`` in, a conv applied to every frame."""

    def __init__(self, in_channels: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, stride=2, padding=1, groups=groups, bias=False)
        self.lif = gac.LIF()
        self.fc = nn.Linear(4 * 16, 10)

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = self.conv(x.flatten(0, 1))
        return self.fc(self.lif(y.view(T, B, -1)))


# ---------------------------------------------------------------- public names and laziness
def test_public_names() -> None:
    assert gac.wrap is gac.adapters.wrap
    assert gac.GACNet is gac.adapters.GACNet
    assert "wrap" in gac.__all__ and "GACNet" in gac.__all__


def test_import_and_torch_wrap_need_no_snn_framework() -> None:
    code = (
        "import sys, torch\n"
        "import gac_coding as gac\n"
        "from torch import nn\n"
        "net = gac.wrap(nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 2)), T=2, "
        "in_channels=1)\n"
        "net(torch.rand(2, 1, 8, 8))\n"
        "print(sorted(m for m in ('snntorch', 'norse', 'spikingjelly') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("framework", ["snntorch", "norse", "spikingjelly"])
def test_missing_framework_names_the_extra(framework: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == framework or name.startswith(framework + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, framework, None)  # "import snntorch" now raises ImportError
    with pytest.raises(ImportError, match=rf'pip install "gac-coding\[{framework}\]"'):
        gac.wrap(lif_first(), T=T, in_channels=1, framework=framework)


def test_missing_framework_of_a_detected_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    import snntorch as snn

    backbone = nn.Sequential(nn.Conv2d(1, 2, 3), snn.Leaky(beta=0.5, init_hidden=True))
    monkeypatch.setitem(sys.modules, "snntorch", None)
    with pytest.raises(ImportError, match=r"gac-coding\[snntorch\]"):
        gac.wrap(backbone, T=T, in_channels=1)


# ---------------------------------------------------------------- detection and argument errors
def test_detection_sees_subclasses_defined_outside_the_framework() -> None:
    import snntorch as snn

    class MyLeaky(snn.Leaky):
        pass

    net = quiet_wrap(
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), MyLeaky(beta=0.5, init_hidden=True)),
        T=T,
        in_channels=1,
    )
    assert (net.framework, net.mode) == ("snntorch", "step")


def test_backbone_mixing_frameworks_is_rejected() -> None:
    import norse.torch as norse
    import snntorch as snn

    backbone = nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True), norse.LIFCell())
    with pytest.raises(ValueError, match=r"backbone: expected modules of one framework.*snntorch.*norse"):
        gac.wrap(backbone, T=T, in_channels=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"framework": "keras"}, ValueError, r"framework: expected one of .* got 'keras'"),
        ({"framework": 3}, TypeError, r"framework: expected one of .* got int"),
        ({"framework": "snntorch"}, ValueError, r"framework: got 'snntorch' but the backbone holds no"),
        ({"T": 0}, ValueError, r"T: expected an integer >= 1, got 0"),
        ({"T": 2.0}, TypeError, r"T: expected an int, got float"),
        ({"in_channels": -1}, ValueError, r"in_channels: expected an integer >= 1, got -1"),
        ({"out_channels": 0}, ValueError, r"out_channels: expected an integer >= 1, got 0"),
        ({"adapt_input_layer": 1}, TypeError, r"adapt_input_layer: expected a bool, got int"),
        ({"input_layer": "nope"}, ValueError, r"input_layer: expected the name of a submodule.*'nope'"),
        ({"input_layer": 2}, TypeError, r"input_layer: expected a submodule name"),
        ({"decay": 2.0}, ValueError, r"decay"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, pattern: str) -> None:
    args = {"T": T, "in_channels": 1, **kwargs}
    with pytest.raises(error, match=pattern):
        gac.wrap(lif_first(), **args)


def test_backbone_must_be_a_module() -> None:
    with pytest.raises(TypeError, match=r"backbone: expected a torch.nn.Module, got function"):
        gac.wrap(lambda x: x, T=T, in_channels=1)  # type: ignore[arg-type]


def test_framework_mismatch_names_the_detected_one() -> None:
    import snntorch as snn

    backbone = nn.Sequential(nn.Conv2d(1, 2, 3), snn.Leaky(beta=0.5, init_hidden=True))
    with pytest.raises(
        ValueError, match=r"got 'norse' but the backbone holds snntorch modules.*framework='snntorch'"
    ):
        gac.wrap(backbone, T=T, in_channels=1, framework="norse")


def test_bad_input_reaches_the_encoder_checks() -> None:
    net = gac.wrap(lif_first(), T=T, in_channels=1)
    with pytest.raises(ValueError, match=r"x: expected 1 channels at dim 1, got 3"):
        net(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"x: sequence has T=5 steps but the encoder was built for T=3"):
        net(torch.rand(5, 2, 1, 8, 8))


def test_unsupported_output_type_is_named() -> None:
    import snntorch as snn

    class Words(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lif = snn.Leaky(beta=0.5, init_hidden=True)

        def forward(self, x: Tensor) -> str:
            self.lif(x)
            return "spikes"

    net = gac.wrap(Words(), T=T, in_channels=1)
    with pytest.raises(TypeError, match=r"backbone output: expected tensors .* got str"):
        net(torch.rand(2, 1, 8, 8))


# ---------------------------------------------------------------- unsupported backbone shapes
def test_snntorch_mixing_hidden_and_explicit_membranes_is_rejected() -> None:
    import snntorch as snn

    backbone = nn.Sequential(
        nn.Linear(64, 8), snn.Leaky(beta=0.5, init_hidden=True), nn.Linear(8, 2), snn.Leaky(beta=0.5)
    )
    with pytest.raises(
        ValueError, match=r"init_hidden=True .*'1' \(Leaky\).*'3' \(Leaky\) has init_hidden=False"
    ):
        gac.wrap(backbone, T=T, in_channels=1)


def test_snntorch_mixing_step_and_sequence_neurons_is_rejected() -> None:
    import snntorch as snn

    backbone = nn.Sequential(
        snn.Leaky(beta=0.5, init_hidden=True), snn.LeakyParallel(input_size=4, hidden_size=4)
    )
    with pytest.raises(ValueError, match=r"per-step snnTorch neurons or whole-sequence ones, got both"):
        gac.wrap(backbone, T=T, in_channels=1)


class LoopNet(nn.Module):
    """Tutorial-style snnTorch class whose num_steps may differ from the wrapper's T."""

    def __init__(self, num_steps: int, linear: bool = True) -> None:
        super().__init__()
        import snntorch as snn

        self.num_steps = num_steps
        self.fc = nn.Linear(64, 10) if linear else nn.Identity()
        self.lif = snn.Leaky(beta=0.5)

    def forward(self, x: Tensor) -> Tensor:
        mem = self.lif.init_leaky()
        rec = []
        for _ in range(self.num_steps):
            spk, mem = self.lif(self.fc(x.flatten(1)), mem)
            rec.append(mem)
        return torch.stack(rec)


@pytest.mark.parametrize("num_steps", [T - 1, T + 2])
def test_snntorch_loop_must_call_the_input_layer_exactly_T_times(num_steps: int) -> None:
    net = quiet_wrap(LoopNet(num_steps), T=T, in_channels=1)
    assert net.mode == "loop" and net.input_layer == "fc"
    word = "more than" if num_steps > T else f"{num_steps} times"
    with pytest.raises(ValueError, match=rf"input layer 'fc' was called {word}.*T={T}"):
        net(torch.rand(2, 1, 8, 8))
    # after the error the feeding hook is idle: the backbone run on its own computes on its input
    x = torch.rand(2, 1, 8, 8)
    twin = LoopNet(num_steps)
    twin.load_state_dict(net.backbone.state_dict())
    assert torch.equal(net.backbone(x), twin(x))


def test_snntorch_loop_feed_follows_a_replaced_input_layer_and_copies() -> None:
    net = quiet_wrap(LoopNet(T), T=T, in_channels=1)
    x = torch.rand(2, 1, 8, 8) * 2
    twin = copy.deepcopy(net)  # the copy feeds its own copy of the layer
    torch.testing.assert_close(twin(x), net(x), rtol=0, atol=0)
    net.backbone.fc = nn.Linear(64, 10)  # replaced after wrap(): the hook moves to the new layer
    seen: list[Tensor] = []
    net.backbone.fc.register_forward_hook(lambda m, a, o: seen.append(a[0].detach().clone()))
    net(x)
    code = net.encoder(x)
    assert len(seen) == T and all(torch.equal(seen[t], code[t].flatten(1)) for t in range(T))


def test_snntorch_loop_without_input_layer_is_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"explicit membranes .* no Conv/Linear layer; name one with input_layer="
    ):
        gac.wrap(LoopNet(T, linear=False), T=T, in_channels=1)


def test_snntorch_loop_feeds_step_t_at_the_t_th_call() -> None:
    seen: list[Tensor] = []
    net = quiet_wrap(LoopNet(T), T=T, in_channels=1)
    net.backbone.fc.register_forward_hook(lambda m, a, o: seen.append(a[0].detach().clone()))
    x = torch.rand(2, 1, 8, 8) * 2
    net(x)
    code = net.encoder(x)  # same batch, same BN statistics: the same code again
    assert len(seen) == T
    for t in range(T):
        assert torch.equal(seen[t], code[t].flatten(1))
    assert not torch.equal(seen[0], seen[1])  # the code varies over time, unlike direct coding


def test_snntorch_loop_with_named_input_layer() -> None:
    import snntorch as snn

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.side = nn.Linear(3, 3)  # registered first, never called with the image
            self.stem = nn.Linear(64, 4)
            self.lif = snn.Leaky(beta=0.5)

        def forward(self, x: Tensor) -> Tensor:
            mem = self.lif.init_leaky()
            out = []
            for _ in range(T):
                spk, mem = self.lif(self.stem(x.flatten(1)), mem)
                out.append(spk)
            return torch.stack(out)

    with pytest.raises(ValueError, match=r"input layer 'side' was called 0 times"):
        quiet_wrap(TwoInputs(), T=T, in_channels=1)(torch.rand(2, 1, 8, 8))
    net = quiet_wrap(TwoInputs(), T=T, in_channels=1, input_layer="stem")
    x = torch.rand(2, 1, 8, 8) * 3
    with torch.no_grad():
        out, code = net(x), net.encoder(x)
        backbone = net.backbone
        mem = backbone.lif.init_leaky()
        expected = []
        for t in range(T):  # by hand: step t of the code into the named layer
            spk, mem = backbone.lif(backbone.stem(code[t].flatten(1)), mem)
            expected.append(spk)
    assert torch.equal(out, torch.stack(expected))


def test_norse_mixing_cells_and_sequence_modules_is_rejected() -> None:
    import norse.torch as norse

    backbone = norse.SequentialState(norse.Lift(nn.Conv2d(1, 2, 3)), norse.LIFCell())
    with pytest.raises(ValueError, match=r"'1' \(LIFCell\) takes one step, '0' \(Lift\) takes the whole"):
        gac.wrap(backbone, T=T, in_channels=1)


def test_norse_lift_of_stateful_module_drops_the_state() -> None:
    import norse.torch as norse

    fc = nn.Linear(64, 5)
    with torch.no_grad():
        fc.weight.fill_(0.2)  # with dt = 5 ms and threshold 0.5 the cell fires within T steps
    cell = norse.LIFCell(norse.LIFParameters(v_th=torch.tensor(0.5)), dt=0.005)
    backbone = norse.Lift(norse.SequentialState(nn.Flatten(), fc, cell))
    net = quiet_wrap(backbone, T=T, in_channels=1)
    x = torch.rand(2, 1, 8, 8) * 3
    with torch.no_grad():
        out, code = net(x), net.encoder(x)
        state, expected = None, []
        for t in range(T):  # by hand: the lifted module's state threaded from step to step
            z, state = backbone.lifted_module(code[t], state)
            expected.append(z)
    assert isinstance(out, Tensor) and torch.equal(out, torch.stack(expected)) and out.any()


def test_spikingjelly_mixed_step_modes_are_rejected() -> None:
    from spikingjelly.activation_based import layer, neuron

    backbone = nn.Sequential(layer.Conv2d(1, 2, 3, step_mode="m"), neuron.IFNode(step_mode="s"))
    with pytest.raises(
        ValueError, match=r"'0' \(Conv2d\) has step_mode='m', '1' \(IFNode\) has step_mode='s'"
    ):
        gac.wrap(backbone, T=T, in_channels=1)


def test_spikingjelly_container_children_count_with_the_container() -> None:
    from spikingjelly.activation_based import layer, neuron

    single = neuron.IFNode(step_mode="s")  # wrapped in a multi-step container: fine
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(0.3)  # strong enough that the IFNode fires
    backbone = nn.Sequential(
        layer.SeqToANNContainer(conv),
        layer.MultiStepContainer(single),
        layer.Flatten(step_mode="m"),
    )
    net = quiet_wrap(backbone, T=T, in_channels=1)
    assert net.mode == "m"
    x = torch.rand(2, 1, 8, 8) * 3
    with torch.no_grad():
        out, code = net(x), net.encoder(x)
        v = torch.zeros(2, 2, 8, 8)
        expected = []
        for t in range(T):  # by hand: an integrate-and-fire neuron, threshold 1, hard reset to 0
            v = v + conv(code[t])
            spikes = (v >= 1).float()
            v = v * (1 - spikes)
            expected.append(spikes.flatten(1))
    assert torch.equal(out, torch.stack(expected)) and out.any()


# ---------------------------------------------------------------- input layer channels
def test_out_channels_default_keeps_backbone_untouched() -> None:
    backbone = PerFrameConv()
    conv = backbone.conv
    net = quiet_wrap(backbone, T=T, in_channels=1)
    assert net.backbone is backbone and backbone.conv is conv
    assert net.encoder.conv.out_channels == 1


def test_channel_mismatch_without_adapt_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError,
        match=r"out_channels: the code has 8 channels but the backbone's input layer 'conv' "
        r"\(Conv2d\) takes in_channels=1; pass adapt_input_layer=True",
    ):
        gac.wrap(PerFrameConv(), T=T, in_channels=1, out_channels=8)


def test_adapt_input_layer_replaces_conv_with_same_hyperparameters() -> None:
    backbone = PerFrameConv(in_channels=2, groups=2)
    old = backbone.conv
    net = quiet_wrap(backbone, T=T, in_channels=2, out_channels=6, adapt_input_layer=True)
    new = backbone.conv
    assert new is not old and type(new) is type(old)
    assert new.in_channels == 6 and new.weight.shape == (4, 3, 3, 3)
    for attr in ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(new, attr) == getattr(old, attr)
    assert new.bias is None
    assert net(torch.rand(2, 2, 8, 8)).shape == (T, 2, 10)
    with pytest.raises(ValueError, match=r"groups=2, so the code's channels must be a multiple of 2, got 5"):
        quiet_wrap(PerFrameConv(2, groups=2), T=T, in_channels=2, out_channels=5, adapt_input_layer=True)


def test_adapt_input_layer_spikingjelly_conv_keeps_step_mode() -> None:
    from spikingjelly.activation_based import functional, layer, neuron

    backbone = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1), neuron.IFNode(), layer.Flatten(), layer.Linear(256, 3)
    )
    functional.set_step_mode(backbone, "m")
    net = quiet_wrap(backbone, T=T, in_channels=1, out_channels=5, adapt_input_layer=True)
    assert backbone[0].in_channels == 5 and backbone[0].step_mode == "m"
    out = net(torch.rand(2, 1, 8, 8))
    assert out.shape == (T, 2, 3)
    out.sum().backward()
    assert float(backbone[0].weight.grad.abs().sum()) > 0  # the adapted layer is in the graph


def test_adapt_input_layer_scales_a_linear_input_layer() -> None:
    import snntorch as snn

    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.5, init_hidden=True))
    net = quiet_wrap(backbone, T=T, in_channels=1, out_channels=3, adapt_input_layer=True)
    assert backbone[1].in_features == 192 and backbone[1].weight.shape == (10, 192)
    assert net(torch.rand(4, 1, 8, 8)).shape == (T, 4, 10)


def test_linear_input_layer_mismatch_is_caught_on_the_first_call() -> None:
    import snntorch as snn

    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.5, init_hidden=True))
    net = quiet_wrap(backbone, T=T, in_channels=1, out_channels=3)
    with pytest.raises(
        ValueError,
        match=r"input layer '1' \(Linear\) expects in_features=64 but receives 192 "
        r".*adapt_input_layer=True",
    ):
        net(torch.rand(4, 1, 8, 8))
    assert not backbone[1]._forward_pre_hooks


def test_adapt_input_layer_needs_a_layer_to_adapt() -> None:
    backbone = nn.Sequential(gac.LIF(), nn.Flatten(2))
    with pytest.raises(ValueError, match=r"adapt_input_layer: the backbone has no Conv/Linear layer"):
        gac.wrap(backbone, T=T, in_channels=1, out_channels=2, adapt_input_layer=True)


# ---------------------------------------------------------------- the gated-input warning
def _wrap_recording(backbone: nn.Module, **kwargs: object) -> tuple[gac.GACNet, list]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = gac.wrap(backbone, T=T, in_channels=1, **kwargs)  # type: ignore[arg-type]
        net(torch.rand(2, 1, 8, 8))
        net(torch.rand(2, 1, 8, 8))
    return net, [w for w in caught if issubclass(w.category, GatedInputWarning)]


def test_warns_once_when_a_conv_receives_the_gated_code() -> None:
    _, caught = _wrap_recording(PerFrameConv())
    assert len(caught) == 1
    assert issubclass(caught[0].category, UserWarning)
    assert "'conv' (Conv2d)" in str(caught[0].message) and "binarize=True" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller, not at the library


@pytest.mark.parametrize("maker", ["snntorch", "spikingjelly", "norse", "gac"])
def test_no_warning_when_a_neuron_comes_first(maker: str) -> None:
    if maker == "snntorch":
        import snntorch as snn

        backbone = nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True), nn.Flatten(), nn.Linear(64, 2))
    elif maker == "spikingjelly":
        from spikingjelly.activation_based import layer, neuron

        backbone = nn.Sequential(neuron.LIFNode(), layer.Flatten(), layer.Linear(64, 2))
    elif maker == "norse":
        import norse.torch as norse

        backbone = norse.SequentialState(norse.LIFCell(), nn.Flatten(), nn.Linear(64, 2))
    else:
        backbone = lif_first()
    _, caught = _wrap_recording(backbone)
    assert caught == []


def test_no_warning_with_binarize() -> None:
    net, caught = _wrap_recording(PerFrameConv(), binarize=True)
    assert caught == [] and net.encoder.binarize


def test_each_gacnet_warns_for_itself() -> None:
    _, first = _wrap_recording(PerFrameConv())
    _, second = _wrap_recording(PerFrameConv())
    assert len(first) == len(second) == 1


# ---------------------------------------------------------------- GACNet as a module
def test_gacnet_state_dict_copy_and_modes() -> None:
    import copy

    import snntorch as snn

    backbone = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 4), snn.Leaky(beta=0.5, init_hidden=True, output=True)
    )
    net = quiet_wrap(backbone, T=T, in_channels=1)
    keys = set(net.state_dict())
    assert {k.split(".")[0] for k in keys} == {"encoder", "backbone"}
    clone = copy.deepcopy(net)
    x = torch.rand(3, 1, 8, 8)
    for a, b in zip(net(x), clone(x), strict=True):
        assert torch.equal(a, b)
    assert "framework='snntorch', mode='step', T=3" in repr(net)


def test_stack_steps_element_by_element() -> None:
    Pair = namedtuple("Pair", "spk mem")
    steps = [Pair(torch.full((2,), float(t)), {"v": torch.ones(1) * t, "none": None}) for t in range(4)]
    out = stack_steps(steps)
    assert isinstance(out, Pair)
    assert out.spk.shape == (4, 2) and out.spk[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert out.mem["v"].shape == (4, 1) and out.mem["none"] is None
    lists = stack_steps([[torch.zeros(3), torch.ones(1)]] * 2)
    assert isinstance(lists, list) and [t.shape for t in lists] == [(2, 3), (2, 1)]
