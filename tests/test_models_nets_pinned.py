"""The backbones pinned down: the spiking VGG against a slow forward, its memory modes, its settings
and messages; the registry's model descriptions; MS-ResNet's builders and memory modes.

Judges written apart from the models' code: a slow float64 forward of the VGG from its layer plan
(``slow_reference.slow_lif`` for the neurons, BatchNorm from its batch statistics, pooling as the
mean of 2x2 windows), parameter counts worked out by hand from the layer plans, and the memory
modes against the default mode (float64: logits equal, gradients to 1e-12, running statistics
equal) with what each mode keeps for the backward pass counted by hand.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from slow_reference import slow_lif
from torch import Tensor, nn
from warning_frames import warnings_pointing

from gac_coding import LIF, RECIPES
from gac_coding.models import (
    ModelInfo,
    MSBlock,
    MSResNet,
    SpikingVGG,
    count_parameters,
    create_model,
    msresnet18_cifar,
    msresnet18_dvs,
    msresnet18_imagenet,
    msresnet34_imagenet,
    msresnet_tiny,
    vgg_tiny,
    vggsnn_dvs,
)
from gac_coding.ops.memory import MEMORY_MODES, MemorySetting, saved_tensor_bytes

F64 = torch.float64

# three poolings: the checkpoint mode cuts four segments (the first with the encoder, two
# checkpointed, the last lean)
PLAN = (4, 6, "A", 5, "A", 3, "A", 4)


def _rel_err(a: Tensor, b: Tensor) -> float:
    scale = a.abs().max().item()
    diff = (a - b).abs().max().item()
    return 0.0 if diff == 0 else diff / max(scale, 1e-300)


def _widen_bn(model: nn.Module, low: float = 1.0) -> None:
    """Larger BatchNorm weights (uniform in ``[low, low + 1.5]``, biases in ``[-0.2, 0.4]``):
    spikes in every layer, down to the head."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(low, low + 1.5)
                m.bias.uniform_(-0.2, 0.4)


def _vgg(seed: int = 0, **kwargs: object) -> SpikingVGG:
    torch.manual_seed(seed)
    settings = {"coding": "direct", "in_channels": 2, **kwargs}
    model = SpikingVGG(PLAN, 3, 4, **settings).double()  # type: ignore[arg-type]
    _widen_bn(model, 1.5)
    return model


def _pool(h: Tensor) -> Tensor:
    return (h[..., 0::2, 0::2] + h[..., 1::2, 0::2] + h[..., 0::2, 1::2] + h[..., 1::2, 1::2]) / 4


def _bn(y: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    """Training-mode BatchNorm of ``[T, B, C, H, W]`` with the statistics of all steps and images."""
    mean = y.mean((0, 1, 3, 4), keepdim=True)
    var = ((y - mean) ** 2).mean((0, 1, 3, 4), keepdim=True)
    shape = (1, 1, -1, 1, 1)
    return (y - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def slow_vgg(model: SpikingVGG, x: Tensor, recipe: str, plan: tuple[int | str, ...]) -> tuple[Tensor, Tensor]:
    """Logits and the head's spikes, from the plan: after the stem, per width ``LIF -> Conv3x3
    (padding 1, no bias) -> BN``, per ``"A"`` a 2x2 mean; then a LIF, the mean over space, the
    linear head at each step."""
    p = RECIPES[recipe]
    convs = [m for m in model.layers if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.layers if isinstance(m, nn.BatchNorm2d)]
    h = model.encoder(x)
    T = h.shape[0]
    k = 0
    for item in plan[1:]:
        if item == "A":
            h = _pool(h)
            continue
        s, _ = slow_lif(h, p.decay, p.threshold, p.surrogate, p.detach_reset)
        y = torch.stack([F.conv2d(s[t], convs[k].weight, padding=1) for t in range(T)])
        h = _bn(y, bns[k])
        k += 1
    assert k == len(convs)
    s, _ = slow_lif(h, p.decay, p.threshold, p.surrogate, p.detach_reset)
    return s.mean((3, 4)) @ model.fc.weight.T + model.fc.bias, s


# ------------------------------------------------------------------------------ VGG: structure


def test_vgg_layers_follow_the_plan() -> None:
    model = _vgg()
    convs = [m for m in model.layers if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(6, 4, 3, 3), (5, 6, 3, 3), (3, 5, 3, 3), (4, 3, 3, 3)]
    assert all(c.bias is None and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)
    assert [m.num_features for m in model.layers if isinstance(m, nn.BatchNorm2d)] == [6, 5, 3, 4]
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.layers) == 3
    assert sum(isinstance(m, LIF) for m in model.layers) == 4
    stem = model.encoder.conv
    assert tuple(stem.weight.shape) == (4, 2, 3, 3) and stem.stride == (1, 1) and stem.padding == (1, 1)
    assert (model.fc.in_features, model.fc.out_features) == (4, 3)
    assert model.plan == PLAN and model.coding == "direct" and model.num_classes == 3
    text = repr(model)
    assert "coding='direct', T=4, num_classes=3, plan=[4, 6, 'A', 5, 'A', 3, 'A', 4]\n" in text
    model.memory = "lean"
    assert "plan=[4, 6, 'A', 5, 'A', 3, 'A', 4], memory='lean'\n" in repr(model)


def test_vggsnn_parameter_count_by_hand() -> None:
    """VGGSNN on 2-channel frames, 10 classes: 3x3 convolutions 2-64-128-256-256-512-512-512-512
    without bias, a BN (2 per channel) after each, the linear head; GAC adds its attention (SCA
    2 * 64^2 * 4^2 = 131,072 at kernel 4, TA 2 * T * (T // 2)): 9.36 M at T=10."""
    widths = [2, 64, 128, 256, 256, 512, 512, 512, 512]
    convs = sum(9 * a * b for a, b in zip(widths, widths[1:], strict=False))
    direct = convs + 2 * sum(widths[1:]) + 512 * 10 + 10
    assert direct == 9_227_786
    assert count_parameters(vggsnn_dvs(coding="direct")) == direct
    model = vggsnn_dvs()
    assert model.coding == "gac" and model.T == 10 and model.num_classes == 10
    assert count_parameters(model) == direct + 131_072 + 2 * 10 * 5
    assert count_parameters(vggsnn_dvs(5, 2, "direct", in_channels=3)) == direct + 9 * 64 - 512 * 5 - 5


def test_vgg_tiny_defaults_and_count() -> None:
    model = vgg_tiny()
    assert model.coding == "gac" and model.T == 4 and model.num_classes == 10
    assert model.plan == (16, 32, "A", 64, "A")
    direct = 9 * (2 * 16 + 16 * 32 + 32 * 64) + 2 * (16 + 32 + 64) + 64 * 10 + 10
    assert count_parameters(vgg_tiny(coding="direct")) == direct
    assert count_parameters(vgg_tiny(3, 2, "direct", in_channels=1)) == direct - 9 * 16 - 64 * 7 - 7
    assert SpikingVGG((8, "A"), 3, 2).coding == "gac"


@pytest.mark.parametrize(
    ("build", "old"),
    [
        (vgg_tiny, "model builder (gac=...)"),
        (vggsnn_dvs, "model builder (gac=...)"),
        (lambda **kw: SpikingVGG((8, "A"), 3, 2, **kw), "SpikingVGG(gac=...)"),
    ],
)
@pytest.mark.parametrize(("flag", "coding"), [(True, "gac"), (False, "direct")])
def test_deprecated_gac_flag_picks_the_coding(build, old: str, flag: bool, coding: str) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build(gac=flag)
    assert model.coding == coding
    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]
    assert len(messages) == 1 and messages[0].startswith(f"{old} is deprecated")


@pytest.mark.parametrize("recipe", ["cifar", "imagenet"])
def test_vgg_neurons_follow_the_recipe_and_backend(recipe: str) -> None:
    model = SpikingVGG(PLAN, 3, 2, "direct", recipe=recipe, backend="eager")
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert len(lifs) == 5
    assert {(n.params, n.backend) for n in lifs} == {(RECIPES[recipe], "eager")}


ATTENTION = {"temporal_attention": "conv", "ta_bias": True, "ta_activation": "gelu", "ta_source": "membrane",
             "gate": "sum"}  # fmt: skip


def test_vgg_attention_settings_reach_the_encoder() -> None:
    model = SpikingVGG((8, "A"), 3, 2, encoder_kwargs={"record": False}, **ATTENTION)
    assert model.encoder.record is False
    assert model.encoder.gate.options == ATTENTION
    assert SpikingVGG((8, "A"), 3, 2).encoder.record is True
    for name, value in ATTENTION.items():
        with pytest.raises(TypeError, match=f"{name}: given both as an argument and in encoder_kwargs"):
            SpikingVGG((8, "A"), 3, 2, encoder_kwargs={name: value}, **{name: value})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"plan": ["A", 8]},
            r"plan: expected a list of widths and 'A', starting with a width, got \['A', 8\]",
        ),
        ({"plan": []}, r"plan: expected a list of widths and 'A', starting with a width, got \[\]"),
        ({"plan": [8, "a"]}, r"plan: entries must be positive ints or 'A', got \[8, 'a'\]"),
        ({"plan": [8, 0]}, r"plan: entries must be positive ints or 'A', got \[8, 0\]"),
        ({"recipe": "mnist"}, "recipe: expected one of"),
        ({"num_classes": 0}, "num_classes: expected an integer >= 1, got 0"),
    ],
)
def test_vgg_bad_settings_name_the_argument(kwargs: dict, message: str) -> None:
    settings = {"plan": [8, "A"], "num_classes": 3, "T": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        SpikingVGG(**settings)


def test_vgg_plan_may_pool_right_after_the_stem() -> None:
    model = SpikingVGG([8, "A", 4], 3, 2, "direct")
    assert isinstance(model.layers[0], nn.AvgPool2d)
    assert model(torch.rand(2, 2, 4, 4)).shape == (2, 2, 3)


# ------------------------------------------------------------------------ VGG: slow forward


@pytest.mark.parametrize(("recipe", "static"), [("cifar", True), ("imagenet", False)])
def test_vgg_equals_slow_forward(recipe: str, static: bool) -> None:
    model = _vgg(recipe=recipe)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(*((2, 2, 16, 16) if static else (4, 2, 2, 16, 16)), generator=g, dtype=F64) * 3
    expected, spikes = slow_vgg(model, x, recipe, PLAN)
    assert 0 < spikes.mean() < 1  # the head's neurons fire, some of them
    logits = model(x)
    assert logits.shape == (4, 2, 3)
    assert _rel_err(expected, logits) <= 1e-12


# --------------------------------------------------------------------------- VGG: memory modes


def test_vgg_memory_is_handed_to_the_parts() -> None:
    model = _vgg(coding="gac")
    parts = [m for m in model.modules() if isinstance(m, MemorySetting) and m is not model]
    assert len(parts) == 7  # the GAC encoder and its gate, four neurons in the layers, the head's
    for mode, inner in (("lean", "lean"), ("checkpoint", "lean"), ("default", "default")):
        model.memory = mode
        assert model.memory == mode
        assert {m.memory for m in parts} == {inner}, mode


def _step(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    out = model(x)
    grads = torch.autograd.grad(out.square().sum() + out.sum(), list(model.parameters()))
    return out.detach(), list(grads), [b.clone() for b in model.buffers()]


@pytest.mark.parametrize("coding", ["gac", "direct"])
def test_vgg_memory_modes_same_numbers(coding: str) -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, 2, 2, 8, 8, generator=g, dtype=F64) * 3
    ref = _vgg(coding=coding)
    expected = _step(ref, x)
    assert all(gr.abs().sum() > 0 for gr in expected[1])
    for mode in ("lean", "checkpoint"):
        model = _vgg(coding=coding, memory=mode)
        model.load_state_dict(ref.state_dict())
        for b, b0 in zip(model.buffers(), _vgg(coding=coding).buffers(), strict=True):
            b.copy_(b0)
        out, grads, buffers = _step(model, x)
        assert torch.equal(out, expected[0]), mode
        for a, b in zip(expected[1], grads, strict=True):
            assert _rel_err(a, b) <= 1e-12, mode
        for a, b in zip(expected[2], buffers, strict=True):
            assert torch.equal(a, b), mode


def _kept(model: nn.Module, x: Tensor) -> int:
    with saved_tensor_bytes() as saved:
        out = model(x)
    out.sum().backward()
    return saved.bytes


def test_vgg_checkpoint_keeps_the_segment_inputs_and_the_last_segment_lean() -> None:
    """Checkpoint mode keeps: the input (the encoder runs in the first checkpoint), the input of
    each segment after a pooling but the last (two here: [T, B, 6, 8, 8] and [T, B, 5, 4, 4]),
    and what the lean ops keep for the last segment and then the head."""
    from gac_coding.ops import lean

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 2, 16, 16, generator=g, dtype=F64) * 3
    T, B = 4, 2
    kept = {mode: _kept(_vgg(coding="direct", memory=mode), x) for mode in MEMORY_MODES}
    assert kept["default"] > kept["lean"] > kept["checkpoint"]
    model = _vgg(coding="direct", memory="lean")
    tail = list(model.layers)[-3:]
    h = torch.rand(T, B, 3, 2, 2, dtype=F64, requires_grad=True) * 3  # not a leaf, as in the model
    with saved_tensor_bytes() as saved:  # the head's neuron runs after the segment, on its own
        model.fc(lean.run_layers([model.head_lif], lean.run_layers(tail, h)).mean((3, 4)))
    by_hand = 8 * (x.numel() + T * B * 6 * 8 * 8 + T * B * 5 * 4 * 4) + saved.bytes
    assert kept["checkpoint"] == by_hand


# (compiling, coding, record): eagerly the encoder runs in the checkpoint, whether it records or
# not; under the compiler, only an encoder that records runs before it
ENCODER_CASES = [(False, "gac", True), (True, "gac", True), (True, "gac", False), (True, "direct", None)]


@pytest.mark.parametrize(("compiling", "coding", "record"), ENCODER_CASES)
def test_vgg_checkpoint_runs_the_encoder_in_the_first_segment(
    monkeypatch: pytest.MonkeyPatch, compiling: bool, coding: str, record: bool | None
) -> None:
    """The encoder runs in the first checkpoint (once forward, once again in the backward pass),
    except under the compiler for an encoder that records its spikes (a side effect that the
    compiler's checkpoint does not allow): there it runs before the checkpoint, once. The compiler
    is stood in for by ``torch.compiler.is_compiling`` (its checkpoint is then torch's, eagerly);
    the logits and gradients are the default mode's either way."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(4, 2, 2, 8, 8, generator=g, dtype=F64) * 3
    kwargs = {} if record is None else {"encoder_kwargs": {"record": record}}
    expected = _step(_vgg(coding=coding, **kwargs), x)
    model = _vgg(coding=coding, memory="checkpoint", **kwargs)
    calls: list[int] = []
    model.encoder.register_forward_hook(lambda *args: calls.append(1))
    if compiling:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    out, grads, buffers = _step(model, x)
    monkeypatch.undo()
    assert len(calls) == (1 if compiling and record else 2)
    assert torch.equal(out, expected[0])
    for a, b in zip(expected[1], grads, strict=True):
        assert _rel_err(a, b) <= 1e-12
    if not compiling:  # (torch's checkpoint run eagerly updates BN's statistics again)
        for a, b in zip(expected[2], buffers, strict=True):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------------ registry


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The registry module with a copy of its table: what a test registers goes away after it."""
    from gac_coding.models import registry as module

    monkeypatch.setattr(module, "_REGISTRY", dict(module._REGISTRY))
    return module


def test_model_info_keeps_valid_settings_as_tuples() -> None:
    info = ModelInfo(input_size=[16, 24], recipe="cifar", exports=["onnx"], codings=["direct"], T=3)
    assert info.input_size == (16, 24) and info.exports == ("onnx",) and info.codings == ("direct",)
    assert ModelInfo(recipe="imagenet").recipe == "imagenet"
    assert ModelInfo(exports=("nir", "onnx")).exports == ("nir", "onnx")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 32}, r"input_size: expected \(H, W\), got 32"),
        ({"input_size": (8, 8, 8)}, r"input_size: expected \(H, W\), got \(8, 8, 8\)"),
        ({"T": 0}, "^T: expected an integer >= 1, got 0"),
        ({"num_classes": -1}, "^num_classes: expected an integer >= 1, got -1"),
        ({"recipe": "CIFAR"}, "recipe: expected 'cifar', 'imagenet' or None, got 'CIFAR'"),
        ({"exports": ("onnx", "tflite")}, r"exports: expected names from \['nir', 'onnx'\], got 'tflite'"),
    ],
)
def test_model_info_bad_settings_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelInfo(**kwargs)


def test_register_reads_int_defaults_only_and_keeps_given_values(registry) -> None:  # type: ignore[no-untyped-def]
    def odd(num_classes="ten", T=True, coding="gac"):  # type: ignore[no-untyped-def]
        return nn.Identity()

    def plain(num_classes, T, coding="gac"):  # type: ignore[no-untyped-def]
        return nn.Identity()

    registry.register_model("odd_defaults", odd)
    info = registry.model_info("odd_defaults")
    assert (info.T, info.num_classes) == (None, None)
    registry.register_model("given", plain, info=ModelInfo(T=3, num_classes=7))
    info = registry.model_info("given")
    assert (info.T, info.num_classes) == (3, 7)


@pytest.mark.parametrize("name", [5, ""])
def test_register_refuses_a_bad_name(registry, name: object) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match=f"name: expected a non-empty str, got {name!r}"):
        registry.register_model(name, lambda **kw: nn.Identity())
    assert name not in registry._REGISTRY


def test_register_refuses_a_builder_that_is_not_callable(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="builder: expected a callable, got int"):
        registry.register_model("number", 5)


# ------------------------------------------------------------------------ MS-ResNet: builders


def _block_params(cin: int, cout: int, stride: int) -> int:
    """Two 3x3 convolutions without bias, two BNs, and a 1x1 convolution + BN on the shortcut
    where the block changes the stride or the channels."""
    n = 9 * cin * cout + 9 * cout * cout + 4 * cout
    return n + (cin * cout + 2 * cout if stride != 1 or cin != cout else 0)


def _msresnet_params(stages, in_channels: int, stem: int, kernel: int, classes: int) -> int:  # type: ignore[no-untyped-def]
    n = kernel * kernel * in_channels * stem + 2 * stem
    cin = stem
    for width, blocks, stride in stages:
        for j in range(blocks):
            n += _block_params(cin, width, stride if j == 0 else 1)
            cin = width
    return n + cin * classes + classes


DVS = ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))


def test_msresnet18_dvs_count_by_hand() -> None:
    """11.30 M at 10 classes and T=10: 11,173,386 without GAC (the sum by hand), plus the
    attention (131,072 + 2 * 10 * 5)."""
    direct = _msresnet_params(DVS, 2, 64, 3, 10)
    assert direct == 11_173_386
    assert count_parameters(msresnet18_dvs(coding="direct")) == direct
    model = msresnet18_dvs()
    assert model.coding == "gac" and model.T == 10 and model.in_channels == 2
    assert count_parameters(model) == direct + 131_072 + 100
    model = msresnet18_dvs(4, 2, "direct", in_channels=3)
    assert count_parameters(model) == _msresnet_params(DVS, 3, 64, 3, 4) and model.T == 2


@pytest.mark.parametrize(("frame_size", "stride"), [(8, 1), (48, 1), (64, 1), (95, 1), (96, 2), (128, 2)])
def test_msresnet18_dvs_stem_stride_follows_the_frame_size(frame_size: int, stride: int) -> None:
    conv = msresnet18_dvs(coding="direct", frame_size=frame_size).encoder.conv
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (stride, stride), (1, 1))
    assert conv.out_channels == 64


@pytest.mark.parametrize("frame_size", [7, 0])
def test_msresnet18_dvs_refuses_a_small_frame(frame_size: int) -> None:
    with pytest.raises(ValueError, match=f"^frame_size: expected an integer >= 8, got {frame_size}"):
        msresnet18_dvs(frame_size=frame_size)


@pytest.mark.parametrize(
    ("build", "T", "classes", "kernel", "stride", "padding", "stem"),
    [
        (msresnet18_cifar, 6, 10, 3, 1, 1, 64),
        (msresnet18_imagenet, 4, 1000, 7, 2, 3, 64),
        (msresnet34_imagenet, 4, 1000, 7, 2, 3, 64),
        (msresnet_tiny, 4, 10, 3, 1, 1, 16),
        (msresnet18_dvs, 10, 10, 3, 1, 1, 64),
    ],
)
def test_msresnet_builders_defaults_stem_and_settings(
    build, T, classes, kernel, stride, padding, stem
) -> None:  # type: ignore[no-untyped-def]
    model = build()
    assert (model.coding, model.T, model.num_classes) == ("gac", T, classes)
    conv = model.encoder.conv
    assert (conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        stem,
        (kernel, kernel),
        (stride, stride),
        (padding, padding),
    )
    other = build(3, 2, "direct", backend="eager", channels_last=False)
    assert (other.coding, other.T, other.num_classes, other.channels_last) == ("direct", 2, 3, False)
    assert {m.backend for m in other.modules() if isinstance(m, LIF)} == {"eager"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert build(gac=False).coding == "direct"
    assert [str(w.message)[:32] for w in caught] == ["model builder (gac=...) is depre"]


def test_msresnet34_imagenet_count_by_hand() -> None:
    stages = ((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 2))
    direct = _msresnet_params(stages, 3, 64, 7, 1000)
    assert count_parameters(msresnet34_imagenet(coding="direct")) == direct
    stages18 = ((64, 2, 2), (128, 2, 2), (256, 2, 2), (512, 2, 2))
    assert count_parameters(msresnet18_imagenet(coding="direct")) == _msresnet_params(
        stages18, 3, 64, 7, 1000
    )


# ------------------------------------------------------------------ MS-ResNet: blocks, layout


def _block(memory: str, cin: int, cout: int, stride: int, recipe: str) -> MSBlock:
    torch.manual_seed(5)
    block = MSBlock(cin, cout, stride, dict(RECIPES[recipe]), memory=memory).double()
    _widen_bn(block)
    return block


@pytest.mark.parametrize(
    ("cin", "cout", "stride", "recipe"), [(3, 3, 1, "cifar"), (3, 5, 2, "imagenet"), (4, 4, 2, "cifar")]
)
def test_msblock_memory_modes_same_numbers_and_keep_less(
    cin: int, cout: int, stride: int, recipe: str
) -> None:
    """Lean and checkpoint: the default mode's output, gradients (input and parameters) and
    running statistics; the checkpoint keeps the block's input alone, the lean mode more, the
    default mode more still."""
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(3, 2, cin, 6, 6, generator=g, dtype=F64) * 2
    results, kept = {}, {}
    for mode in MEMORY_MODES:
        block = _block(mode, cin, cout, stride, recipe)
        x = x0.clone().requires_grad_()
        with saved_tensor_bytes() as saved:
            out = block(x * 1.0)
        kept[mode] = saved.bytes
        grads = torch.autograd.grad(out.square().sum() + out.sum(), [x, *block.parameters()])
        results[mode] = (out.detach(), grads, [b.clone() for b in block.buffers()])
    out, grads, buffers = results["default"]
    assert out.shape == (3, 2, cout, 6 // stride, 6 // stride)
    assert all(gr.abs().sum() > 0 for gr in grads)
    for mode in ("lean", "checkpoint"):
        assert torch.equal(results[mode][0], out), mode
        for a, b in zip(grads, results[mode][1], strict=True):
            assert _rel_err(a, b) <= 1e-12, mode
        for a, b in zip(buffers, results[mode][2], strict=True):
            assert torch.equal(a, b), mode
    assert kept["checkpoint"] == 8 * x0.numel()
    assert kept["default"] > kept["lean"] > kept["checkpoint"]


def test_msblock_and_msresnet_repr_show_the_memory_mode() -> None:
    block = MSBlock(4, 4)
    assert block.extra_repr() == ""
    block.memory = "lean"
    assert block.extra_repr() == "memory='lean'"
    model = msresnet_tiny(coding="direct")
    head = "recipe='cifar', coding='direct', T=4, num_classes=10, channels_last=True"
    assert model.extra_repr() == head
    model.memory = "checkpoint"
    assert model.extra_repr() == head + ", memory='checkpoint'"
    assert {b.memory for b in model.modules() if isinstance(b, MSBlock)} == {"lean"}


def test_block_layout_rule_by_hand() -> None:
    """On CPU, a block of ``channels >= 256`` whose output has fewer than ``2 * channels``
    positions (``T * B * ceil(H / stride) * ceil(W / stride)``) runs in the default layout, any
    other channels-last; the values are the input's."""
    from gac_coding.models.msresnet import _block_layout

    cases = [(255, 1, 1, 1, 5, 5), (255, 2, 4, 2, 30, 30)]  # below 256 channels: channels-last
    cases += [
        (channels, T, B, stride, H, W)
        for channels in (256, 300)
        for T, B in ((1, 1), (2, 1), (1, 3))
        for stride in (1, 2)
        for H in range(1, 34, 2 if stride == 1 else 1)
        for W in range(H, 34, 2 if stride == 1 else 1)
    ]
    for channels, T, B, stride, H, W in cases:
        x = torch.randn(T, B, 2, H, W)
        y = _block_layout(x, channels, stride)
        positions = T * B * math.ceil(H / stride) * math.ceil(W / stride)
        default = channels >= 256 and positions < 2 * channels
        steps = y.flatten(0, 1)
        assert torch.equal(y, x)
        what = (channels, T, B, stride, H, W)
        if default:
            assert y.is_contiguous(), what
        else:
            assert steps.is_contiguous(memory_format=torch.channels_last), what
            assert H * W == 1 or not steps.is_contiguous(), what
    x = torch.randn(2, 2, 4, 4)
    assert _block_layout(x, 512, 1) is x  # not a sequence: as it is


# ------------------------------------------------------------------ MS-ResNet: the whole model

STAGES3 = ((4, 1, 1), (5, 1, 2), (6, 1, 2))  # three stages: two checkpointed, the last lean


def _msresnet(seed: int = 0, **kwargs: object) -> MSResNet:
    torch.manual_seed(seed)
    settings = {"coding": "direct", "in_channels": 2, "stem_channels": 4, **kwargs}
    model = MSResNet(STAGES3, 3, 2, **settings).double()  # type: ignore[arg-type]
    _widen_bn(model)
    return model


@pytest.mark.parametrize(("compiling", "coding", "record"), ENCODER_CASES)
def test_msresnet_memory_modes_same_numbers_and_encoder_runs(
    monkeypatch: pytest.MonkeyPatch, compiling: bool, coding: str, record: bool | None
) -> None:
    """Lean and checkpoint give the default mode's logits, gradients and running statistics; in
    checkpoint mode the encoder runs with the first stage (twice: again in the backward pass),
    except under the compiler (stood in for as in the VGG's test) for an encoder that records."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 2, 2, 6, 6, generator=g, dtype=F64) * 3
    kwargs = {"coding": coding, **({} if record is None else {"encoder_kwargs": {"record": record}})}
    expected = _step(_msresnet(**kwargs), x)
    assert all(gr.abs().sum() > 0 for gr in expected[1])
    for mode in ("lean", "checkpoint"):
        if mode == "lean" and compiling:
            continue
        model = _msresnet(memory=mode, **kwargs)
        calls: list[int] = []
        model.encoder.register_forward_hook(lambda *args, calls=calls: calls.append(1))
        if compiling:
            monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        out, grads, buffers = _step(model, x)
        monkeypatch.undo()
        assert len(calls) == (1 if mode == "lean" or (compiling and record) else 2), mode
        assert torch.equal(out, expected[0]), mode
        for a, b in zip(expected[1], grads, strict=True):
            assert _rel_err(a, b) <= 1e-12, mode
        if not compiling:  # (torch's checkpoint run eagerly updates BN's statistics again)
            for a, b in zip(expected[2], buffers, strict=True):
                assert torch.equal(a, b), mode


def test_msresnet_checkpoint_keeps_the_stage_inputs_and_the_last_stage_lean() -> None:
    """Checkpoint mode keeps: the input (the encoder runs with the first stage), the second
    stage's input ([T, B, 4, 6, 6]), and what the lean mode keeps for the last stage and the head."""
    g = torch.Generator().manual_seed(8)
    x = torch.rand(2, 2, 6, 6, generator=g, dtype=F64) * 3
    T, B = 2, 2
    kept = {mode: _kept(_msresnet(memory=mode), x) for mode in MEMORY_MODES}
    assert kept["default"] > kept["lean"] > kept["checkpoint"]
    model = _msresnet(memory="lean")
    h = torch.rand(T, B, 5, 3, 3, dtype=F64, requires_grad=True) * 3  # not a leaf, as in the model
    with saved_tensor_bytes() as saved:
        model.fc(model.head_lif(model.stages[2](h)).mean((3, 4)))
    assert kept["checkpoint"] == 8 * (x.numel() + T * B * 4 * 6 * 6) + saved.bytes


def test_msresnet_settings_defaults_and_messages() -> None:
    model = MSResNet(((8, 1, 1),), 3, 2)
    conv = model.encoder.conv
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        3, 64, (3, 3), (1, 1), (1, 1)
    )  # fmt: skip
    assert model.coding == "gac" and model.recipe == "cifar" and model.channels_last is True
    block = model.stages[0][0]
    assert block.stride == 1 and block.channels_last is True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert MSResNet(((8, 1, 1),), 3, 2, gac=False, stem_channels=8).coding == "direct"
    assert [str(w.message)[:28] for w in caught] == ["MSResNet(gac=...) is depreca"]
    bad = [
        ({"recipe": "mnist"}, "^recipe: expected one of"),
        ({"in_channels": 0}, "^in_channels: expected an integer >= 1, got 0"),
        (
            {"stages": [(8, 1)]},
            r"^stages: expected a non-empty list of \(channels, blocks, stride\) positive ints",
        ),
        ({"stages": []}, r"^stages: expected a non-empty list of \(channels, blocks, stride\) positive ints"),
    ]
    for kwargs, message in bad:
        settings = {"stages": ((8, 1, 1),), "num_classes": 3, "T": 2, **kwargs}
        with pytest.raises(ValueError, match=message):
            MSResNet(**settings)


def test_msblock_defaults() -> None:
    block = MSBlock(4, 4)
    assert block.stride == 1 and isinstance(block.shortcut, nn.Identity) and block.channels_last is False
    assert block.conv1.stride == (1, 1)
    assert {(n.params, n.backend) for n in (block.lif1, block.lif2)} == {(RECIPES["cifar"], "auto")}
    block.memory = "checkpoint"
    assert (block.lif1.memory, block.lif2.memory) == ("lean", "lean")
    block.memory = "default"
    assert (block.lif1.memory, block.lif2.memory) == ("default", "default")
    block.memory = "lean"
    assert (block.lif1.memory, block.lif2.memory) == ("lean", "lean")


def test_builders_warn_at_their_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    for build in (msresnet_tiny, vgg_tiny):

        def call(build=build) -> None:  # type: ignore[no-untyped-def]
            build(gac=True)

        seen = warnings_pointing(monkeypatch, call)
        assert [(m[:31], where, category) for m, where, category in seen] == [
            ("model builder (gac=...) is depr", "call", DeprecationWarning)
        ]


# ------------------------------------------------------------------------------- create_model


def test_create_model_records_its_arguments_as_a_copy() -> None:
    settings = {"record": True}
    model = create_model("msresnet_tiny", 3, 2, "direct", in_channels=1, channels_last=False)
    assert model._gac_coding_build == {
        "model": "msresnet_tiny", "in_channels": 1, "channels_last": False, "num_classes": 3, "T": 2,
        "coding": "direct",
    }  # fmt: skip
    model = create_model("vgg_tiny", encoder_kwargs=settings)
    settings["record"] = False
    assert model._gac_coding_build == {
        "model": "vgg_tiny",
        "encoder_kwargs": {"record": True},
        "coding": "gac",
    }


def test_create_model_messages() -> None:
    with pytest.raises(TypeError, match="^name: expected a str, got int"):
        create_model(5)


def test_create_model_with_builders_it_cannot_inspect_or_arguments_it_cannot_copy(registry) -> None:  # type: ignore[no-untyped-def]
    import threading

    registry.register_model("plain_dict", dict)  # a builtin without a signature: the call decides
    assert registry.create_model("plain_dict", 3) == {"num_classes": 3, "coding": "gac"}

    def build(num_classes=2, T=2, coding="gac", lock=None):  # type: ignore[no-untyped-def]
        return nn.Identity()

    registry.register_model("with_lock", build)
    lock = threading.Lock()
    model = registry.create_model("with_lock", lock=lock)
    assert model._gac_coding_build == {"model": "with_lock", "lock": lock, "coding": "gac"}
    # a builder without **kwargs: create_model names itself and the model for an unknown argument
    with pytest.raises(TypeError, match=r"^create_model\('with_lock', \.\.\.\): got an unexpected keyword"):
        registry.create_model("with_lock", bogus=1)


def test_channels_last_steps_passes_what_it_cannot_convert_unchanged() -> None:
    """Empty tensors, other ranks and non-tensors come back as they are (for the encoder to reject
    with its message); a batch or each step of a sequence comes back channels-last, same values."""
    from gac_coding.models._steps import channels_last_steps

    for x in (torch.empty(0, 3, 4, 4), torch.empty(2, 0, 3, 4, 4), torch.randn(3, 4, 4), [1.0]):
        assert channels_last_steps(x) is x  # type: ignore[arg-type]
    x = torch.randn(2, 3, 4, 5)
    y = channels_last_steps(x)
    assert torch.equal(y, x) and y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    x = torch.randn(2, 2, 3, 4, 5)
    y = channels_last_steps(x)
    assert torch.equal(y, x) and y.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_each_attention_setting_alone_reaches_the_encoder(name: str) -> None:
    """One option given, the others left out (``None``): that one is the encoder's, the others the
    paper's; the same through MS-ResNet and the VGG."""
    expected = {"temporal_attention": "mlp", "ta_bias": False, "ta_activation": "relu", "ta_source": "stem",
                "gate": "product", name: ATTENTION[name]}  # fmt: skip
    for model in (
        MSResNet(((8, 1, 1),), 3, 2, stem_channels=8, **{name: ATTENTION[name]}),
        SpikingVGG((8, "A"), 3, 2, **{name: ATTENTION[name]}),
    ):
        assert model.encoder.gate.options == expected


def test_msresnet_attention_settings_reach_the_encoder() -> None:
    model = MSResNet(((8, 1, 1),), 3, 2, stem_channels=8, encoder_kwargs={"record": False}, **ATTENTION)
    assert model.encoder.record is False
    assert model.encoder.gate.options == ATTENTION


@pytest.mark.parametrize("name", ["kernel_size", "stride", "padding", "decay", "threshold"])
def test_encoder_settings_that_the_model_sets_are_refused(name: str) -> None:
    message = (
        rf"^encoder_kwargs: \['{name}'\] are set by the model \(the stem geometry, or the recipe's "
        r"neuron settings; change the recipe or backend= instead\)"
    )
    with pytest.raises(TypeError, match=message):
        MSResNet(((8, 1, 1),), 3, 2, stem_channels=8, encoder_kwargs={name: 1})


def test_lean_block_hands_the_bits_and_the_backend_to_the_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean block runs its convolutions on the neurons' bits (not the spikes as floats) and
    every op with its neurons' backend setting (a spy around each op records what it is given)."""
    from gac_coding.ops import lean

    seen: list[tuple[str, object, bool]] = []

    def spy(name: str):  # type: ignore[no-untyped-def]
        op = getattr(lean, name)

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            bits = args[2] if name == "spike_conv2d" and len(args) > 2 else kwargs.get("bits")
            seen.append((name, kwargs.get("backend"), bits is not None))
            return op(*args, **kwargs)

        return call

    for name in ("lif", "spike_conv2d", "bn_lif"):
        monkeypatch.setattr(lean, name, spy(name))
    block = MSBlock(3, 4, 2, dict(RECIPES["imagenet"], backend="eager"), memory="lean").double()
    x = torch.randn(2, 2, 3, 6, 6, dtype=F64, requires_grad=True) * 2
    block(x).sum().backward()
    assert seen == [
        ("lif", "eager", False),
        ("spike_conv2d", "eager", True),
        ("bn_lif", "eager", False),
        ("spike_conv2d", "eager", True),
    ]
