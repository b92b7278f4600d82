"""MS-ResNet backbones and the model registry (docs/design/recipes.md)."""

from __future__ import annotations

import pytest
import torch

from gac_coding.models import count_parameters, create_model, list_models


def test_registry_lists_the_paper_models_and_tiny() -> None:
    assert {"msresnet18_cifar", "msresnet18_imagenet", "msresnet34_imagenet", "msresnet_tiny"} <= set(
        list_models()
    )


@pytest.mark.parametrize(
    ("name", "num_classes", "T", "paper_millions"),
    [
        ("msresnet18_cifar", 10, 6, 12.63),
        ("msresnet18_cifar", 100, 6, 12.68),
        ("msresnet18_imagenet", 1000, 4, 11.82),
        ("msresnet34_imagenet", 1000, 4, 21.93),
    ],
)
def test_parameter_counts_equal_the_paper(name, num_classes, T, paper_millions) -> None:
    model = create_model(name, num_classes=num_classes, T=T)
    assert abs(count_parameters(model) / 1e6 - paper_millions) <= 0.005


def test_tiny_on_one_channel_digits() -> None:
    model = create_model("msresnet_tiny", num_classes=10, T=4, in_channels=1)
    logits = model(torch.rand(3, 1, 8, 8))
    assert logits.shape == (4, 3, 10)
    logits.mean(0).sum().backward()
    assert model.encoder.conv.weight.grad is not None


# ------------------------------------------------------------------------------------------------
# Architecture and recipes (docs/design/recipes.md §1-2)
# ------------------------------------------------------------------------------------------------


def test_gac_adds_exactly_the_attention_weights() -> None:
    """SCA: 2 * C^2 * k^2 (131,072 for C=64, k=4); TA: 2 * T * max(1, T // 2)."""
    for T in (1, 2, 6):
        with_gac = count_parameters(create_model("msresnet18_cifar", num_classes=10, T=T))
        direct = count_parameters(create_model("msresnet18_cifar", num_classes=10, T=T, coding="direct"))
        assert with_gac - direct == 131_072 + 2 * T * max(1, T // 2)


def _lifs(model):
    return [m for m in model.modules() if type(m).__name__ == "LIF"]


@pytest.mark.parametrize(
    ("name", "decay", "threshold", "surrogate", "detach"),
    [
        ("msresnet18_cifar", 0.5, 1.0, "triangle", False),
        ("msresnet_tiny", 0.5, 1.0, "triangle", False),
        ("msresnet18_imagenet", 0.25, 0.5, "rectangle", True),
        ("msresnet34_imagenet", 0.25, 0.5, "rectangle", True),
    ],
)
def test_every_neuron_follows_the_recipe(name, decay, threshold, surrogate, detach) -> None:
    model = create_model(name, T=2)
    lifs = _lifs(model)
    blocks = sum(len(stage) for stage in model.stages)
    assert len(lifs) == 2 * blocks + 1  # two per block and the head's
    gate = model.encoder.gate
    neurons = [(n.decay, n.threshold, n.surrogate, n.detach_reset) for n in lifs]
    neurons.append((gate.decay, gate.threshold, gate.surrogate, gate.detach_reset))
    assert set(neurons) == {(decay, threshold, surrogate, detach)}


def _bn_weights(model):
    stem = set(model.encoder.bn.weight.tolist())
    bn1, bn2, short = set(), set(), set()
    for stage in model.stages:
        for block in stage:
            bn1 |= set(block.bn1.weight.tolist())
            bn2 |= set(block.bn2.weight.tolist())
            if isinstance(block.shortcut, torch.nn.Sequential):
                short |= set(block.shortcut[1].weight.tolist())
    return stem, bn1, bn2, short


def test_imagenet_bn_init_and_cifar_default() -> None:
    assert _bn_weights(create_model("msresnet18_imagenet", T=4)) == ({0.5}, {0.5}, {0.0}, {0.5})
    assert _bn_weights(create_model("msresnet18_cifar", T=4)) == ({1.0}, {1.0}, {1.0}, {1.0})


def _spatial_sizes(model, x):
    sizes = []
    hooks = [s.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for s in model.stages]
    model.encoder.register_forward_hook(lambda m, i, o: sizes.insert(0, tuple(o.shape[-2:])))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sizes


def test_strides_and_stems() -> None:
    cifar = create_model("msresnet18_cifar", num_classes=10, T=1)
    assert (cifar.encoder.conv.kernel_size, cifar.encoder.conv.stride) == ((3, 3), (1, 1))
    assert _spatial_sizes(cifar, torch.rand(1, 3, 32, 32)) == [(32, 32), (32, 32), (16, 16), (8, 8)]
    assert [s[-1].conv2.out_channels for s in cifar.stages] == [128, 256, 512]
    assert [len(s) for s in cifar.stages] == [3, 3, 2]
    imagenet = create_model("msresnet18_imagenet", num_classes=10, T=1)
    assert (imagenet.encoder.conv.kernel_size, imagenet.encoder.conv.stride) == ((7, 7), (2, 2))
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.MaxPool3d)) for m in imagenet.modules())
    assert _spatial_sizes(imagenet, torch.rand(1, 3, 64, 64)) == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert [len(s) for s in create_model("msresnet34_imagenet", T=1).stages] == [3, 4, 6, 3]


def test_imagenet_models_run_on_small_inputs() -> None:
    for name in ("msresnet18_imagenet", "msresnet34_imagenet"):
        model = create_model(name, num_classes=7, T=2)
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 2, 7)


# ------------------------------------------------------------------------------------------------
# Behaviour
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gac", "direct"])
def test_static_input_equals_the_repeated_sequence_in_training(coding: str) -> None:
    """Logits, gradients (input and parameters) and BN running statistics, training mode."""
    T = 4
    torch.manual_seed(0)
    a = create_model("msresnet_tiny", num_classes=5, T=T, coding=coding, in_channels=2).double()
    b = create_model("msresnet_tiny", num_classes=5, T=T, coding=coding, in_channels=2).double()
    b.load_state_dict(a.state_dict())
    x = (torch.rand(3, 2, 12, 12, dtype=torch.float64) * 3).requires_grad_(True)
    seq = x.detach().unsqueeze(0).repeat(T, 1, 1, 1, 1).requires_grad_(True)
    w = torch.randn(T, 3, 5, dtype=torch.float64)
    ya, yb = a(x), b(seq)
    torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-10)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(x.grad, seq.grad.sum(0), rtol=1e-8, atol=1e-10)
    assert float(x.grad.abs().max()) > 0
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-8, atol=1e-10, msg=name)
    for (name, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers(), strict=True):
        torch.testing.assert_close(ba, bb, rtol=1e-10, atol=1e-12, msg=name)


def test_every_parameter_gets_a_gradient() -> None:
    """No unused parameters (DistributedDataParallel would complain), with and without GAC."""
    for coding in ("gac", "direct"):
        model = create_model("msresnet_tiny", num_classes=4, T=3, coding=coding)
        model(torch.rand(4, 3, 8, 8) * 3).mean(0).logsumexp(1).sum().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_direct_coding_feeds_the_stem_output_repeated_to_the_first_block() -> None:
    model = create_model("msresnet_tiny", num_classes=4, T=3, coding="direct").eval()
    seen = []
    model.stages[0][0].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.rand(2, 3, 8, 8)
    model(x)
    stem = model.encoder
    u = torch.nn.functional.batch_norm(
        torch.nn.functional.conv2d(x, stem.conv.weight, padding=1),
        stem.bn.running_mean,
        stem.bn.running_var,
        stem.bn.weight,
        stem.bn.bias,
        False,
        0.0,
        stem.bn.eps,
    )
    assert seen[0].shape == (3, 2, 16, 8, 8)
    for t in range(3):
        torch.testing.assert_close(seen[0][t], u)
    assert not hasattr(model.encoder, "gate")


def test_gac_feeds_the_gated_code_to_the_first_block() -> None:
    model = create_model("msresnet_tiny", num_classes=4, T=3).eval()
    seen = []
    model.stages[0][0].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.rand(2, 3, 8, 8) * 3
    model(x)
    torch.testing.assert_close(seen[0], model.encoder(x))
    assert bool((seen[0] >= 0).all() and (seen[0] < 1).all())


def test_no_state_leaks_between_calls() -> None:
    model = create_model("msresnet_tiny", num_classes=4, T=3).eval()
    x, other = torch.rand(2, 3, 8, 8) * 3, torch.rand(5, 3, 8, 8) * 3
    first = model(x)
    model(other)
    torch.testing.assert_close(model(x), first, rtol=0, atol=0)


def test_direct_coding_is_causal_in_eval_mode() -> None:
    """Without TA (which looks at all steps), logits at step t depend only on frames <= t."""
    model = create_model("msresnet_tiny", num_classes=4, T=4, coding="direct").eval()
    frames = torch.rand(4, 2, 3, 8, 8) * 3
    changed = frames.clone()
    changed[2:] = torch.rand(2, 2, 3, 8, 8) * 3
    a, b = model(frames), model(changed)
    torch.testing.assert_close(a[:2], b[:2], rtol=0, atol=0)
    assert not torch.allclose(a[2:], b[2:])


def test_prediction_from_the_time_average_of_per_step_logits() -> None:
    """The head is per step: logits[t] = fc(mean_hw(LIF(features))[t])."""
    model = create_model("msresnet_tiny", num_classes=4, T=3).eval()
    x = torch.rand(2, 3, 8, 8) * 3
    spikes = model.head_lif(model.features(x))
    manual = torch.stack([model.fc(spikes[t].mean((2, 3))) for t in range(3)])
    torch.testing.assert_close(model(x), manual)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_bad_inputs_name_the_argument() -> None:
    model = create_model("msresnet_tiny", num_classes=4, T=3, in_channels=1)
    with pytest.raises(ValueError, match=r"x: expected 1 channels"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"x: sequence has T=2 steps but .* T=3"):
        model(torch.rand(2, 2, 1, 8, 8))
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor, got dtype torch.uint8"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"x: expected a static batch"):
        model(torch.rand(8, 8))


def test_create_model_errors() -> None:
    with pytest.raises(ValueError, match=r"name: unknown model 'resnet50'.*msresnet18_cifar"):
        create_model("resnet50")
    with pytest.raises(TypeError, match=r"name: expected a str"):
        create_model(18)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'widht'"):
        create_model("msresnet_tiny", widht=3)
    with pytest.raises(ValueError, match=r"num_classes: expected an integer >= 1, got 0"):
        create_model("msresnet_tiny", num_classes=0)
    with pytest.raises(TypeError, match=r"T: expected an int, got float"):
        create_model("msresnet_tiny", T=4.0)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match=r"gac: expected a bool"):
        create_model("msresnet_tiny", gac="yes")
    choices = r"\['direct', 'rate', 'latency', 'gac'\]"
    with pytest.raises(ValueError, match=rf"coding: expected one of {choices}, got 'morse'"):
        create_model("msresnet_tiny", coding="morse")
    with pytest.raises(TypeError, match=r"coding: expected a str, .* got bool \(gac=True / False is now"):
        create_model("msresnet_tiny", coding=False)  # type: ignore[arg-type]


def test_register_model() -> None:
    from gac_coding.models import MSResNet, register_model
    from gac_coding.models.registry import _REGISTRY

    def build(num_classes=3, T=2, coding="gac", **kw):
        return MSResNet([(8, 1, 1)], num_classes, T, coding=coding, stem_channels=8, **kw)

    try:
        assert register_model("test_tmp_net", build) is build
        assert "test_tmp_net" in list_models()
        model = create_model("test_tmp_net", T=5)
        assert (model.T, model.num_classes) == (5, 3)
        with pytest.raises(ValueError, match="already registered"):
            register_model("test_tmp_net", lambda **kw: None)
        decorated = register_model("test_tmp_net", overwrite=True)(build)
        assert decorated is build
        with pytest.raises(TypeError, match="builder: expected a callable"):
            register_model("test_tmp_net2", 3)
    finally:
        _REGISTRY.pop("test_tmp_net", None)


# ------------------------------------------------------------------------------------------------
# Memory layout
# ------------------------------------------------------------------------------------------------


def _layouts(model, x):
    """Whether the input of every convolution, BN and LIF is stored channels-last per step."""
    from gac_coding import LIF

    seen = []

    def record(module, inputs, output):
        t = inputs[0]
        step = t if t.dim() == 4 else t[0]
        seen.append(
            (type(module).__name__, step.is_contiguous(memory_format=torch.channels_last) and not
             step.is_contiguous())
        )  # fmt: skip

    kinds = (torch.nn.Conv2d, torch.nn.BatchNorm2d, LIF)
    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, kinds)]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


@pytest.mark.parametrize("coding", ["gac", "direct"])
@pytest.mark.parametrize("sequence", [False, True])
def test_channels_last_equals_the_default_layout(coding: str, sequence: bool) -> None:
    """``channels_last=True`` (the default) changes the layout, not the numbers (float64)."""
    T = 3
    torch.manual_seed(4)
    a = create_model("msresnet_tiny", num_classes=5, T=T, coding=coding).double()
    b = create_model("msresnet_tiny", num_classes=5, T=T, coding=coding, channels_last=False).double()
    b.load_state_dict(a.state_dict())
    assert a.channels_last and not b.channels_last
    assert a.encoder.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert b.encoder.conv.weight.is_contiguous()
    shape = (T, 2, 3, 10, 10) if sequence else (2, 3, 10, 10)
    x = torch.rand(shape, dtype=torch.float64) * 3
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, layout_a = _layouts(a, xa)
    yb, layout_b = _layouts(b, xb)
    # every convolution, BN and neuron sees channels-last steps in one model and none in the other
    assert len(layout_a) == len(layout_b) > 10
    assert all(cl for _, cl in layout_a) and not any(cl for _, cl in layout_b)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    w = torch.randn(ya.shape, dtype=torch.float64)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-10, atol=1e-12, msg=name)
    for (name, ba), (_, bb) in zip(a.named_buffers(), b.named_buffers(), strict=True):
        torch.testing.assert_close(ba, bb, rtol=1e-12, atol=1e-12, msg=name)


def test_channels_last_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"channels_last: expected a bool, got str"):
        create_model("msresnet_tiny", channels_last="yes")


def test_channels_last_model_runs_weight_heavy_cpu_blocks_in_the_default_layout() -> None:
    """On CPU a channels-last model runs a block of >= 256 channels with few output positions in
    the default layout (faster there); the numbers stay those of the default-layout model."""
    from gac_coding.models import MSResNet

    T = 2
    torch.manual_seed(5)
    stages = [(8, 1, 1), (256, 1, 2)]  # the second block: 256 channels at 2x2, 16 positions
    a = MSResNet(stages, num_classes=3, T=T, stem_channels=8).double()
    b = MSResNet(stages, num_classes=3, T=T, stem_channels=8, channels_last=False).double()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 3
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, layout_a = _layouts(a, xa)
    yb, _ = _layouts(b, xb)
    convs = [cl for kind, cl in layout_a if kind == "Conv2d"]
    # stem, SCA (2) and the first block's two convolutions channels-last; the 256-channel block's
    # three (conv1, conv2, shortcut) in the default layout
    assert convs == [True] * 5 + [False] * 3, convs
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    w = torch.randn(ya.shape, dtype=torch.float64)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-10, atol=1e-12, msg=name)


# ------------------------------------------------------------------------------------------------
# What each registered model is made for (ModelInfo)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_model_info_says_what_the_default_build_is(name: str) -> None:
    """T, classes, input channels and recipe of ``model_info`` are those of ``create_model(name)``
    (built on the meta device: no memory, no time); event models have 2 channels, the others 3."""
    from gac_coding.models import model_info

    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)
    assert (model.T, model.num_classes, model.recipe) == (info.T, info.num_classes, info.recipe)
    assert model.encoder.conv.in_channels == info.in_channels == (2 if info.input_kind == "events" else 3)
    big = "imagenet" in model.recipe
    assert info.input_size == ((224, 224) if big else (48, 48) if info.input_kind == "events" else (32, 32))
    assert {"gac", "direct"} <= set(info.codings)
    assert ({"rate", "latency"} <= set(info.codings)) == (info.input_kind == "image")


def test_the_declared_exports_are_the_ones_that_work(tmp_path) -> None:
    """A model declares the NIR export exactly when it is an MSResNet (what ``to_nir`` takes); the
    small model of each class is exported (or refused) as declared, ONNX included."""
    from gac_coding.export import to_nir, to_onnx
    from gac_coding.models import MSResNet, model_info

    for name in list_models():
        with torch.device("meta"):
            model = create_model(name)
        assert ("nir" in model_info(name).exports) == isinstance(model, MSResNet), name
        assert "onnx" in model_info(name).exports
    tiny = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1).eval()
    assert to_nir(tiny, torch.rand(1, 1, 8, 8)).output_shape == (3,)
    vgg = create_model("vgg_tiny", num_classes=3, T=2).eval()
    with pytest.raises(TypeError, match="expected an MSResNet .* got SpikingVGG"):
        to_nir(vgg, torch.rand(1, 2, 8, 8))
    assert to_onnx(vgg, torch.rand(2, 2, 2, 8, 8), tmp_path / "vgg.onnx").is_file()  # checked by onnxruntime


def test_model_info_of_a_registered_builder_and_bad_metadata() -> None:
    from gac_coding.models import ModelInfo, MSResNet, model_info, register_model
    from gac_coding.models.registry import _REGISTRY

    def build(num_classes=3, T=2, coding="gac", in_channels=1, **kw):
        return MSResNet(
            [(8, 1, 1)], num_classes, T, coding=coding, stem_channels=8, in_channels=in_channels, **kw
        )

    try:
        register_model("test_info_net", build, info=ModelInfo(in_channels=1, input_size=[8, 8]))
        info = model_info("test_info_net")
        assert (info.T, info.num_classes, info.input_size) == (2, 3, (8, 8))  # from the builder
        assert info.codings == ("gac", "direct", "rate", "latency") and info.exports == ()  # nothing declared
        register_model("test_info_net", lambda **kw: build(**kw), overwrite=True)
        assert model_info("test_info_net") == ModelInfo(in_channels=3, input_size=(32, 32))  # no defaults
        with pytest.raises(ValueError, match="info: T=5 disagrees with the builder's default T=2"):
            register_model("test_info_net", build, info=ModelInfo(T=5), overwrite=True)
    finally:
        _REGISTRY.pop("test_info_net", None)
    with pytest.raises(ValueError, match=r"name: unknown model 'nope'; expected one of \["):
        model_info("nope")
    with pytest.raises(TypeError, match="info: expected a ModelInfo, got dict"):
        register_model("test_info_net", build, info={"in_channels": 1})  # type: ignore[arg-type]
    for kwargs, error, fragment in (
        ({"in_channels": 0}, ValueError, "in_channels: expected an integer >= 1, got 0"),
        ({"input_size": (8,)}, ValueError, r"input_size: expected \(H, W\), got \(8,\)"),
        ({"input_size": (8, 8.0)}, TypeError, "input_size: expected an int, got float"),
        ({"input_kind": "audio"}, ValueError, r"input_kind: expected one of \['image', 'events'\]"),
        ({"recipe": "mnist"}, ValueError, "recipe: expected 'cifar', 'imagenet' or None"),
        ({"exports": ("tflite",)}, ValueError, "exports: expected names from .*, got 'tflite'"),
        ({"codings": ("",)}, ValueError, "codings: expected a tuple of coding names"),
    ):  # fmt: skip
        with pytest.raises(error, match=fragment):
            ModelInfo(**kwargs)
    assert "test_info_net" not in list_models()
