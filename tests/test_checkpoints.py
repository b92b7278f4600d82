"""Loading the authors' checkpoints (docs/design/checkpoints.md), checked against an independent slow forward.

The slow forward below is written from the design docs alone (docs/design/encoder.md §1,
docs/design/recipes.md §1-2) and reads the authors' key names directly: every
step is computed on its own (stem, temporal and spatial-channel attention recomputed per step), the
LIF is a plain Python loop, BatchNorm uses the running statistics (eval mode). It does not call any
gac_coding module. Random checkpoints are built from the key lists in ``tests/data`` (described
in docs/design/checkpoints.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from slow_reference import fire
from torch import Tensor

from gac_coding.models import (
    ReferenceCheckpointError,
    create_model,
    export_reference_state_dict,
    load_reference_checkpoint,
    reference_layout,
)

DATA = Path(__file__).parent / "data"
CIFAR_C100_T6 = "cifar_msresnet18_c100_t6.json"
IMAGENET18_T4 = "imagenet_msresnet18_t4.json"
IMAGENET34_T4 = "imagenet_msresnet34_t4.json"


def _layout(name: str) -> list[tuple[str, tuple[int, ...], str, str]]:
    rows = json.loads((DATA / name).read_text())["keys"]
    return [(k, tuple(shape), dtype, alias) for k, shape, dtype, alias in rows]


def random_reference_state_dict(name: str, seed: int = 0) -> dict[str, Tensor]:
    """A random checkpoint in the authors' layout; aliases hold (separate) copies of their tensor.

    Scales are chosen so that the network fires neither never nor always: BN running statistics
    and affine parameters are random, convolution weights He-scaled.
    """
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {}
    for key, shape, dtype, alias in _layout(name):
        if alias != key:
            sd[key] = sd[alias].clone()
            continue
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(int(torch.randint(1, 1000, (), generator=g)), dtype=torch.int64)
        elif key.endswith("running_mean"):
            sd[key] = 0.2 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + 1.5 * torch.rand(shape, generator=g)
        elif ".bn." in key and key.endswith(".weight") or key.endswith("seqbn.module.weight"):
            sd[key] = 0.6 + 0.8 * torch.rand(shape, generator=g)
        elif ".bn." in key and key.endswith(".bias"):
            sd[key] = 0.3 + 0.4 * torch.randn(shape, generator=g)
        elif key.startswith("encoding.TA"):
            sd[key] = 0.7 * torch.randn(shape, generator=g)
        elif key.endswith("bias"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            sd[key] = math.sqrt(2.0 / fan_in) * torch.randn(shape, generator=g)
        assert str(sd[key].dtype) == dtype
    return sd


# ------------------------------------------------------------------------------------------------
# The independent slow forward (docs/design/encoder.md §1, docs/design/recipes.md §1-2)
# ------------------------------------------------------------------------------------------------


RECIPE = {
    "cifar": dict(decay=0.5, th=1.0, kind="triangle", detach=False),
    "imagenet": dict(decay=0.25, th=0.5, kind="rectangle", detach=True),
}


def lif_loop(inputs: list[Tensor], decay: float, th: float, kind: str, detach: bool) -> list[Tensor]:
    """v_t = decay * v_{t-1} * (1 - s_{t-1}) + x_t, s_t = H(v_t - th), v_0 = 0."""
    v = torch.zeros_like(inputs[0])
    s = torch.zeros_like(inputs[0])
    out = []
    for x in inputs:
        keep = 1 - (s.detach() if detach else s)
        v = decay * v * keep + x
        s = fire(v - th, kind)
        out.append(s)
    return out


def bn_eval(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    shape = (1, -1, 1, 1)
    mean, var = sd[prefix + ".running_mean"].view(shape), sd[prefix + ".running_var"].view(shape)
    w, b = sd[prefix + ".weight"].view(shape), sd[prefix + ".bias"].view(shape)
    return (x - mean) / torch.sqrt(var + 1e-5) * w + b


def _names(kind: str):
    """The authors' key names of stem, blocks and shortcut for a layout."""
    if kind == "cifar":
        return dict(
            stem_conv="conv1.weight", stem_bn="bn1.bn", stage="layer{}", first_stage=1,
            sc_conv="downsample.layer.module.weight", sc_bn="downsample.bn.bn",
            stem=(1, 1), strides=lambda i: 1 if i == 0 else 2,
        )  # fmt: skip
    return dict(
        stem_conv="conv1.0.weight", stem_bn="conv1.1.bn", stage="conv{}_x", first_stage=2,
        sc_conv="shortcut.0.weight", sc_bn="shortcut.1.bn",
        stem=(2, 3), strides=lambda i: 2,
    )  # fmt: skip


def slow_forward(sd: dict[str, Tensor], frames: list[Tensor], kind: str, gac: bool = True) -> Tensor:
    """Logits [T, B, classes] of the authors' model, one step at a time; frames: T inputs [B, C, H, W]."""
    r = RECIPE[kind]
    n = _names(kind)
    T = len(frames)
    stride, pad = n["stem"]
    # 1. stem, per step
    U = [
        bn_eval(F.conv2d(x, sd[n["stem_conv"]], stride=stride, padding=pad), sd, n["stem_bn"]) for x in frames
    ]
    if gac:
        # 3. temporal attention: a shared MLP over the T pooled values of a sample
        w1 = sd["encoding.TA.sharedMLP.0.weight"].flatten(1)  # [T//2, T]
        w2 = sd["encoding.TA.sharedMLP.2.weight"].flatten(1)  # [T, T//2]
        a_avg = torch.stack([u.mean(dim=(1, 2, 3)) for u in U], dim=1)  # [B, T]
        a_max = torch.stack([u.amax(dim=(1, 2, 3)) for u in U], dim=1)
        mlp = lambda a: torch.relu(a @ w1.t()) @ w2.t()  # noqa: E731
        ta = mlp(a_avg) + mlp(a_max)  # [B, T]
        # 4. spatial-channel attention, per step, kernel 4, "same": 1 pixel before, 2 after
        k1, k2 = sd["encoding.SCA.sharedMLP.0.weight"], sd["encoding.SCA.sharedMLP.2.weight"]
        same = lambda z: F.pad(z, (1, 2, 1, 2))  # noqa: E731
        sca = [F.conv2d(same(torch.relu(F.conv2d(same(u), k1))), k2) for u in U]
        # 2 + 5. spikes and gate
        S = lif_loop(U, r["decay"], r["th"], r["kind"], r["detach"])
        h = [torch.sigmoid(ta[:, t].view(-1, 1, 1, 1) * sca[t]) * S[t] for t in range(T)]
    else:
        h = U
    # membrane-shortcut blocks
    i = 0
    while f"{n['stage'].format(n['first_stage'] + i)}.0.conv1.weight" in sd:
        j = 0
        while True:
            p = f"{n['stage'].format(n['first_stage'] + i)}.{j}."
            if p + "conv1.weight" not in sd:
                break
            st = n["strides"](i) if j == 0 else 1
            s1 = lif_loop(h, r["decay"], r["th"], r["kind"], r["detach"])
            y1 = [
                bn_eval(F.conv2d(s, sd[p + "conv1.weight"], stride=st, padding=1), sd, p + "bn1.bn")
                for s in s1
            ]
            s2 = lif_loop(y1, r["decay"], r["th"], r["kind"], r["detach"])
            y2 = [bn_eval(F.conv2d(s, sd[p + "conv2.weight"], padding=1), sd, p + "bn2.bn") for s in s2]
            if p + n["sc_conv"] in sd:
                sc = [bn_eval(F.conv2d(x, sd[p + n["sc_conv"]], stride=st), sd, p + n["sc_bn"]) for x in h]
            else:
                sc = h
            h = [a + b for a, b in zip(y2, sc, strict=True)]
            j += 1
        i += 1
    # head: LIF -> global average pool -> Linear, per step
    spikes = lif_loop(h, r["decay"], r["th"], r["kind"], r["detach"])
    return torch.stack([F.linear(s.mean(dim=(2, 3)), sd["fc1.weight"], sd["fc1.bias"]) for s in spikes])


def _double(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}


@pytest.fixture(scope="module")
def cifar_sd() -> dict[str, Tensor]:
    return random_reference_state_dict(CIFAR_C100_T6)


def _compare(model, sd, frames: list[Tensor], kind: str, static: bool, gac: bool = True) -> None:
    """Logits and input gradient of the model (after loading) and of the slow forward agree."""
    model.double().eval()
    sd = _double(sd)
    if static:
        x = frames[0].clone().requires_grad_(True)
        slow_frames = [x] * len(frames)
    else:
        x = torch.stack(frames).clone().requires_grad_(True)
        slow_frames = list(x.unbind(0))
    expected = slow_forward(sd, slow_frames, kind, gac=gac)
    weights = torch.randn(expected.shape, dtype=torch.float64)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)

    x_model = x.detach().clone().requires_grad_(True)
    got = model(x_model)
    (got * weights).sum().backward()
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x_model.grad, grad_expected, rtol=1e-7, atol=1e-9)
    # the check means something: logits vary over time and the gradient reaches the input
    assert float((expected[0] - expected[-1]).detach().abs().max()) > 1e-3
    assert float(grad_expected.abs().max()) > 0


@pytest.mark.parametrize("static", [True, False], ids=["static", "sequence"])
def test_cifar_checkpoint_matches_slow_forward(cifar_sd, static: bool) -> None:
    """The real msresnet18_cifar layout (100 classes, T=6), on small 8x8 inputs, batch 2."""
    model = create_model("msresnet18_cifar", num_classes=100, T=6)
    load_reference_checkpoint(model, cifar_sd)
    g = torch.Generator().manual_seed(1)
    frames = [torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 0.5 for _ in range(6)]
    _compare(model, cifar_sd, frames, "cifar", static)


def test_imagenet18_checkpoint_matches_slow_forward() -> None:
    """The ImageNet recipe (7x7/2 stem, every stage strided, rectangle surrogate, detached reset)."""
    sd = random_reference_state_dict(IMAGENET18_T4, seed=3)
    model = create_model("msresnet18_imagenet", num_classes=1000, T=4)
    load_reference_checkpoint(model, sd)
    g = torch.Generator().manual_seed(2)
    frames = [torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 0.5] * 4
    _compare(model, sd, frames, "imagenet", static=True)


def test_direct_coding_checkpoint_matches_slow_forward() -> None:
    """coding="direct": the stem's BN output, repeated over T, goes to the first block (no encoding.*)."""
    src = create_model("msresnet_tiny", num_classes=5, T=3, coding="direct")
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, t in src.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.3 + 0.4 * torch.randn(t.shape, generator=g))
            elif t.dim() == 1 and t.is_floating_point():  # BN weights
                t.copy_(0.6 + 0.8 * torch.rand(t.shape, generator=g))
            elif t.dim() >= 2:
                t.copy_(math.sqrt(2.0 / math.prod(t.shape[1:])) * torch.randn(t.shape, generator=g))
    sd = export_reference_state_dict(src)
    assert not any(k.startswith("encoding.") for k in sd)
    model = create_model("msresnet_tiny", num_classes=5, T=3, coding="direct")
    load_reference_checkpoint(model, sd)
    frames = [torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64) * 3] * 3
    _compare(model, sd, frames, "cifar", static=True, gac=False)


# ------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "model_name", "num_classes", "T"),
    [
        (CIFAR_C100_T6, "msresnet18_cifar", 100, 6),
        (IMAGENET18_T4, "msresnet18_imagenet", 1000, 4),
        (IMAGENET34_T4, "msresnet34_imagenet", 1000, 4),
    ],
)
def test_layout_and_export_equal_the_authors_key_lists(name, model_name, num_classes, T) -> None:
    model = create_model(model_name, num_classes=num_classes, T=T)
    layout = reference_layout(model)
    exported = export_reference_state_dict(model)
    ours = [(k, e.shape, str(exported[k].dtype), e.alias_of or k) for k, e in layout.items()]
    assert ours == _layout(name)
    assert list(exported) == [row[0] for row in _layout(name)]


def test_export_then_load_round_trips_through_a_file(tmp_path) -> None:
    src = create_model("msresnet_tiny", num_classes=10, T=4)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    path = tmp_path / "ckpt.pth"
    torch.save({"module." + k: v for k, v in export_reference_state_dict(src).items()}, path)
    dst = create_model("msresnet_tiny", num_classes=10, T=4)
    load_reference_checkpoint(dst, path)
    load_reference_checkpoint(dst, str(path))
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_wrapped_state_dict_is_unwrapped(cifar_sd) -> None:
    model = create_model("msresnet18_cifar", num_classes=100, T=6)
    load_reference_checkpoint(model, {"state_dict": cifar_sd, "epoch": 250})
    assert torch.equal(model.fc.weight, cifar_sd["fc1.weight"])
    assert torch.equal(
        model.encoder.gate.ta.fc1.weight, cifar_sd["encoding.TA.sharedMLP.0.weight"].flatten(1)
    )
    assert torch.equal(
        model.stages[1][0].shortcut[1].running_var, cifar_sd["layer2.0.downsample.bn.bn.running_var"]
    )


def test_one_copy_of_an_alias_is_enough(cifar_sd) -> None:
    sd = {k: v for k, v in cifar_sd.items() if ".seqbn." not in k and "_s." not in k}
    model = create_model("msresnet18_cifar", num_classes=100, T=6)
    load_reference_checkpoint(model, sd)
    only_alias = dict(cifar_sd)
    del only_alias["conv1.weight"]
    load_reference_checkpoint(model, only_alias)
    assert torch.equal(model.encoder.conv.weight, cifar_sd["conv1_s.layer.module.weight"])


# ------------------------------------------------------------------------------------------------
# Errors: each names what is wrong, and nothing is loaded
# ------------------------------------------------------------------------------------------------


def _fails(model, state, *fragments: str, exc: type[Exception] = ReferenceCheckpointError) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(exc) as info:
        load_reference_checkpoint(model, state)
    for fragment in fragments:
        assert fragment in str(info.value)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed although loading failed"


@pytest.fixture
def cifar_model():
    return create_model("msresnet18_cifar", num_classes=100, T=6)


def test_missing_key_is_named(cifar_model, cifar_sd) -> None:
    gone = "layer2.1.bn2.bn.running_mean"
    copies = {k for k, _, _, alias in _layout(CIFAR_C100_T6) if alias == gone}
    assert len(copies) == 4  # the key and its three aliases
    _fails(cifar_model, {k: v for k, v in cifar_sd.items() if k not in copies}, "missing", repr(gone))


def test_unexpected_key_is_named(cifar_model, cifar_sd) -> None:
    _fails(
        cifar_model,
        {**cifar_sd, "layer4.0.conv1.weight": torch.zeros(3)},
        "unexpected",
        "'layer4.0.conv1.weight'",
    )


def test_misshaped_key_is_named(cifar_model, cifar_sd) -> None:
    sd = dict(cifar_sd)
    sd["layer3.1.conv1.weight"] = torch.zeros(512, 512, 1, 1)
    _fails(cifar_model, sd, "'layer3.1.conv1.weight'", "[512, 512, 1, 1]", "[512, 512, 3, 3]")


def test_disagreeing_alias_is_named(cifar_model, cifar_sd) -> None:
    sd = dict(cifar_sd)
    sd["layer1.2.conv2_s.bn.seqbn.module.bias"] = sd["layer1.2.bn2.bn.bias"] + 1e-3
    _fails(cifar_model, sd, "'layer1.2.conv2_s.bn.seqbn.module.bias'", "'layer1.2.bn2.bn.bias'")


def test_checkpoint_for_another_T_says_so(cifar_sd) -> None:
    model = create_model("msresnet18_cifar", num_classes=100, T=4)
    _fails(model, cifar_sd, "T=6", "T=4", "encoding.TA.sharedMLP.0.weight")


def test_checkpoint_for_another_class_count_says_so(cifar_sd) -> None:
    model = create_model("msresnet18_cifar", num_classes=10, T=6)
    _fails(model, cifar_sd, "100 classes", "num_classes=10")


def test_layout_of_the_other_recipe_says_so(cifar_sd) -> None:
    _fails(
        create_model("msresnet18_imagenet", T=6, num_classes=100), cifar_sd, "CIFAR layout", "ImageNet recipe"
    )
    imagenet = random_reference_state_dict(IMAGENET18_T4)
    _fails(
        create_model("msresnet18_cifar", T=4, num_classes=1000), imagenet, "ImageNet layout", "CIFAR recipe"
    )


def test_gac_mismatch_says_so(cifar_sd) -> None:
    _fails(create_model("msresnet18_cifar", num_classes=100, T=6, coding="direct"), cifar_sd,
           "coding='direct'; build it with coding='gac'")  # fmt: skip
    no_encoding = {k: v for k, v in cifar_sd.items() if not k.startswith("encoding.")}
    _fails(
        create_model("msresnet18_cifar", num_classes=100, T=6),
        no_encoding,
        "missing",
        "encoding.TA",
        "coding='direct'",
    )


def test_module_prefix_must_be_on_every_key_or_none(cifar_model, cifar_sd) -> None:
    sd = {"module." + k: v for k, v in cifar_sd.items()}
    load_reference_checkpoint(cifar_model, sd)
    sd["fc1.bias"] = sd.pop("module.fc1.bias")
    _fails(cifar_model, sd, "module.", "'fc1.bias'")


def test_non_finite_values_are_named(cifar_model, cifar_sd) -> None:
    sd = dict(cifar_sd)
    sd["fc1.weight"] = sd["fc1.weight"].clone()
    sd["fc1.weight"][3, 7] = float("nan")
    sd["fc1_s.layer.module.weight"] = sd["fc1.weight"]
    _fails(cifar_model, sd, "'fc1.weight'", "NaN")


def test_bad_arguments_raise_type_errors(cifar_model, tmp_path) -> None:
    _fails(cifar_model, [1, 2], "path_or_state_dict", "list", exc=TypeError)
    _fails(cifar_model, {"fc1.weight": [1.0]}, "'fc1.weight'", "list", exc=TypeError)
    with pytest.raises(TypeError, match="model: expected an MSResNet"):
        load_reference_checkpoint(torch.nn.Linear(2, 2), {})
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_reference_checkpoint(cifar_model, tmp_path / "absent.pth")
    _fails(cifar_model, {}, "empty")


def test_files_are_read_with_weights_only(cifar_model, tmp_path) -> None:
    """A pickled arbitrary object is refused, not executed."""
    path = tmp_path / "evil.pth"
    torch.save({"fc1.weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        load_reference_checkpoint(cifar_model, path)


class _Payload:
    pass
