"""Pinned: the run files' reader and loader (``models/checkpoints.py``) and the checks of the authors'
layout (``models/reference.py``), each against an expectation written out here.

Every file is tiny (``msresnet_tiny`` at ``T=2``, or a handful of tensors) and written to
``tmp_path``. What is pinned: which weights a file gives and where they land (compared tensor by
tensor with the source model), the settings a file records and the ones the model is compared on
(``T``, classes, channels, ``gac``, the encoder's options, the registry name), which error a file
that does not fit raises and the whole of its message (the file, what it holds, what the model
is), and that nothing is loaded when it raises. The mutation area ``models-checkpoints``
(tests/mutation/areas.py) runs this file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from gac_coding.models import MSResNet, create_model
from gac_coding.models.checkpoints import (
    CheckpointError,
    WeightsFile,
    load_weights,
    read_weights,
)
from gac_coding.models.msresnet import TINY_STAGES
from gac_coding.models.reference import (
    ReferenceCheckpointError,
    export_reference_state_dict,
    load_reference_checkpoint,
    read_reference_state_dict,
    reference_layout,
)

#: The paper's encoder options, as a GAC run that records none of them reads back.
PAPER = {"temporal_attention": "mlp", "ta_bias": False, "ta_activation": "relu", "ta_source": "stem",
         "gate": "product"}  # fmt: skip


def _tiny(**kwargs) -> MSResNet:
    kwargs = {"num_classes": 10, "T": 2, **kwargs}
    return create_model("msresnet_tiny", **kwargs)


def _tiny_imagenet(T: int = 2) -> MSResNet:
    """The tiny stages with the ImageNet recipe (the authors' ImageNet key names)."""
    return MSResNet(TINY_STAGES, 10, T, "imagenet", stem_channels=16)


def _randomized(model: nn.Module, seed: int = 1) -> nn.Module:
    """Every tensor of the state (running statistics and counters too) set to values no fresh
    model has, so that a loaded model equals its source only if every tensor was loaded."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype))
            else:
                t.fill_(7 + len(key))
    return model


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_state(model: nn.Module, expected: dict[str, Tensor]) -> None:
    got = model.state_dict()
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def _load_quietly(model: nn.Module, source, **kwargs) -> str:
    """``load_weights`` with every warning an error: loading a file warns about nothing (in
    particular not about the deprecated ``model.gac``, which the settings must not read)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_weights(model, source, **kwargs)


def _load_fails(model: nn.Module, source, exc: type[Exception] = ValueError, **kwargs) -> Exception:
    """``load_weights`` raising ``exc``, with the model's state as it was (nothing loaded)."""
    before = _snapshot(model)
    with pytest.raises(exc) as info:
        _load_quietly(model, source, **kwargs)
    _assert_state(model, before)
    return info.value


# ------------------------------------------------------------------------------------------------
# read_weights: what a file gives
# ------------------------------------------------------------------------------------------------


def test_a_bare_state_dict_file_gives_its_tensors_its_path_and_no_settings(tmp_path: Path) -> None:
    src = _randomized(_tiny())
    path = tmp_path / "bare.pt"
    torch.save(src.state_dict(), path)
    weights = read_weights(path)
    assert isinstance(weights, WeightsFile)
    assert weights.path == path and weights.settings == {}
    assert list(weights.state_dict) == list(src.state_dict())
    for key, value in src.state_dict().items():
        assert torch.equal(weights.state_dict[key], value), key
    dst = _tiny()
    assert _load_quietly(dst, path) == "library"
    _assert_state(dst, src.state_dict())
    dst = _tiny()
    assert _load_quietly(dst, str(path)) == "library"
    _assert_state(dst, src.state_dict())


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_weights_wrapped_under_model_or_state_dict_are_unwrapped(tmp_path: Path, wrapper: str) -> None:
    src = _randomized(_tiny(coding="direct"))
    path = tmp_path / "wrapped.pt"
    torch.save({wrapper: src.state_dict(), "epoch": 3}, path)
    weights = read_weights(path)
    assert list(weights.state_dict) == list(src.state_dict()) and weights.settings == {}
    dst = _tiny(coding="direct")
    assert _load_quietly(dst, path) == "library"
    _assert_state(dst, src.state_dict())


def test_a_weights_file_already_read_is_loaded_as_it_is(tmp_path: Path) -> None:
    src = _randomized(_tiny())
    path = tmp_path / "last.pt"
    torch.save({"model": src.state_dict(), "config": {"model": "msresnet_tiny", "T": 2}}, path)
    weights = read_weights(path)
    path.unlink()  # loading a WeightsFile does not read the file again
    dst = _tiny()
    assert _load_quietly(dst, weights, model_name="msresnet_tiny") == "library"
    _assert_state(dst, src.state_dict())


def test_a_file_without_tensors_says_so(tmp_path: Path) -> None:
    for name, obj in (("empty.pt", {}), ("wrapped.pt", {"model": {}, "epoch": 1})):
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(CheckpointError) as info:
            read_weights(path)
        assert str(info.value) == f"checkpoint {path}: not a model checkpoint (holds no tensors)"


def test_a_gac_run_reads_with_the_paper_options_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    src = _tiny()
    config = {"model": "msresnet_tiny", "T": 2, "num_classes": 10, "in_channels": 3, "gac": True}
    path = tmp_path / "last.pt"
    torch.save({"model": src.state_dict(), "config": config}, path)
    assert read_weights(path).settings == {**config, **PAPER}
    torch.save({"model": src.state_dict(), "config": {**config, "temporal_attention": "lstm"}}, path)
    with pytest.raises(CheckpointError) as info:
        read_weights(path)
    assert str(info.value) == (
        f"checkpoint {path}: recorded temporal_attention 'lstm' is not one of ['mlp', 'conv']"
    )


# ------------------------------------------------------------------------------------------------
# load_weights: the recorded settings against the model's
# ------------------------------------------------------------------------------------------------


def test_recorded_settings_that_fit_load_every_tensor(tmp_path: Path) -> None:
    src = _randomized(_tiny())
    config = {"model": "msresnet_tiny", "T": 2, "num_classes": 10, "in_channels": 3, "gac": True}
    path = tmp_path / "last.pt"
    torch.save({"model": src.state_dict(), "config": config}, path)
    for kwargs in ({}, {"model_name": "msresnet_tiny"}):
        dst = _tiny()
        assert _load_quietly(dst, path, **kwargs) == "library"
        _assert_state(dst, src.state_dict())


def test_recorded_settings_that_differ_are_named_and_nothing_is_loaded(tmp_path: Path) -> None:
    # a direct-coded model: T changes no tensor shape, so only the record tells another T apart
    src = _randomized(_tiny(coding="direct"))
    path = tmp_path / "last.pt"
    config = {"model": "msresnet_tiny", "T": 3, "num_classes": 7, "in_channels": 1, "gac": False}
    torch.save({"model": src.state_dict(), "config": config}, path)
    dst = _tiny(coding="direct")
    assert str(_load_fails(dst, path)) == (
        f"checkpoint: {path} holds a msresnet_tiny run (T=3, 7 classes, 1 input channels, direct "
        "coding), which does not fit the model asked for (T=2, num_classes=10, in_channels=3)"
    )
    # T alone
    torch.save({"model": src.state_dict(), "config": {"T": 4}}, path)
    assert (
        str(_load_fails(dst, path))
        == f"checkpoint: {path} holds a run (T=4), which does not fit the model asked for (T=2)"
    )


def test_the_registry_name_asked_for_is_compared_with_the_recorded_one(tmp_path: Path) -> None:
    src = _tiny(coding="direct")
    path = tmp_path / "last.pt"
    torch.save({"model": src.state_dict(), "config": {"model": "msresnet_tiny", "T": 2}}, path)
    dst = _tiny(coding="direct")
    with pytest.raises(ValueError) as info:
        _load_quietly(dst, path, model_name="vgg_tiny")
    assert str(info.value) == (
        f"checkpoint: {path} holds a msresnet_tiny run (T=2), which does not fit the model asked for "
        "(model='vgg_tiny')"
    )
    assert _load_quietly(dst, path) == "library"  # no name asked for: the record's is not compared


def test_a_gac_run_does_not_load_into_a_direct_coded_model(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    config = {"model": "msresnet_tiny", "T": 2, "num_classes": 10, "in_channels": 3, "gac": True}
    torch.save({"model": _tiny().state_dict(), "config": config}, path)
    with pytest.raises(ValueError) as info:
        _load_quietly(_tiny(coding="direct"), path)
    assert type(info.value) is ValueError
    assert str(info.value) == (
        f"checkpoint: {path} holds a msresnet_tiny run (T=2, 10 classes, 3 input channels, GAC "
        "encoder), which does not fit the model asked for (gac=False)"
    )


class _Plain(nn.Module):
    """A model with none of the settings' attributes (no coding, T, encoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)


def test_a_model_without_settings_is_compared_on_none(tmp_path: Path) -> None:
    src = _randomized(_Plain())
    path = tmp_path / "last.pt"
    torch.save({"model": src.state_dict(), "config": {"gac": True, "T": 4, "num_classes": 2}}, path)
    dst = _Plain()
    assert _load_quietly(dst, path) == "library"
    _assert_state(dst, src.state_dict())


def test_the_encoder_options_are_compared(tmp_path: Path) -> None:
    """ta_activation and gate change no tensor: only the record tells them apart."""
    src = _tiny()
    path = tmp_path / "last.pt"
    config = {"model": "msresnet_tiny", "T": 2, "num_classes": 10, "in_channels": 3, "gac": True}
    torch.save({"model": src.state_dict(), "config": config}, path)
    dst = _tiny(ta_activation="gelu", gate="sum")
    assert list(dst.state_dict()) == list(src.state_dict())
    assert str(_load_fails(dst, path)) == (
        f"checkpoint: {path} holds a msresnet_tiny run (T=2, 10 classes, 3 input channels, GAC "
        "encoder), which does not fit the model asked for (ta_activation='gelu', gate='sum')"
    )
    # the same options recorded: it loads
    other = _randomized(_tiny(ta_activation="gelu", gate="sum"))
    options = {"ta_activation": "gelu", "gate": "sum"}
    torch.save({"model": other.state_dict(), "config": {**config, "model_kwargs": options}}, path)
    assert _load_quietly(dst, path) == "library"
    _assert_state(dst, other.state_dict())


# ------------------------------------------------------------------------------------------------
# load_weights: this library's keys that do not fit
# ------------------------------------------------------------------------------------------------


def test_another_shape_names_the_first_key_and_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    torch.save(_tiny(coding="direct").state_dict(), path)
    dst = _tiny(coding="direct", num_classes=5)
    assert str(_load_fails(dst, path)) == (
        f"checkpoint: {path} does not fit the model: 'fc.weight' has shape [10, 64] in the file, "
        "[5, 64] in the model (another T, class count or channel count?)"
    )


def test_keys_that_do_not_match_are_listed(tmp_path: Path) -> None:
    state = _tiny(coding="direct").state_dict()
    path = tmp_path / "w.pt"
    cases = [
        ({k: v for k, v in state.items() if not k.startswith("fc.")} | {"fc.extra": torch.zeros(1)},
         "missing 'fc.bias', 'fc.weight'; unexpected 'fc.extra'"),
        ({k: v for k, v in state.items() if k != "fc.bias"}, "missing 'fc.bias'; unexpected none"),
        ({**state, "stages.9.x": torch.zeros(1), "head.y": torch.zeros(1)},
         "missing none; unexpected 'head.y', 'stages.9.x'"),
    ]  # fmt: skip
    dst = _tiny(coding="direct")
    for file_state, listed in cases:
        torch.save(file_state, path)
        err = _load_fails(dst, path)
        assert type(err) is ValueError
        assert str(err) == (
            f"checkpoint: {path} holds a run whose keys do not match the model (another model?): {listed}"
        )


@pytest.mark.parametrize("key", ["encoder.conv.weight", "stages.0.0.conv1.weight"])
def test_one_key_of_this_library_is_its_layout(tmp_path: Path, key: str) -> None:
    """A file with this library's ``encoder.*`` or ``stages.*`` keys alone is read as this
    library's layout (keys listed), not handed to the authors' layout."""
    path = tmp_path / "w.pt"
    torch.save({key: torch.zeros(1)}, path)
    with pytest.raises(ValueError) as info:
        _load_quietly(_tiny(coding="direct"), path)
    assert type(info.value) is ValueError
    message = str(info.value)
    assert message.startswith(
        f"checkpoint: {path} holds a run whose keys do not match the model (another model?): "
    )
    assert message.endswith("more); unexpected none")


def test_the_authors_layout_through_load_weights(tmp_path: Path) -> None:
    src = _randomized(_tiny(T=4))
    path = tmp_path / "authors.pth"
    torch.save({"module." + k: v for k, v in export_reference_state_dict(src).items()}, path)
    dst = _tiny(T=4)
    assert _load_quietly(dst, path) == "reference"
    _assert_state(dst, src.state_dict())
    # another T: the authors' reader's reason, after the file and what failed
    dst = _tiny(T=2)
    assert str(_load_fails(dst, path, ReferenceCheckpointError)) == (
        f"checkpoint: {path} is not this library's layout and does not fit the authors' layout for "
        "this model: path_or_state_dict: the checkpoint was made for T=4 time steps "
        "('encoding.TA.sharedMLP.0.weight' has shape [2, 4, 1, 1, 1]) but the model has T=2; build it "
        "with T=4"
    )


# ------------------------------------------------------------------------------------------------
# The authors' layout: the model, the kind of file, its settings
# ------------------------------------------------------------------------------------------------


def _reference_fails(model: nn.Module, state, exc: type[Exception] = ReferenceCheckpointError) -> str:
    before = _snapshot(model)
    with pytest.raises(exc) as info:
        load_reference_checkpoint(model, state)
    _assert_state(model, before)
    return str(info.value)


def test_a_model_that_is_no_msresnet_or_not_the_papers_encoder_is_refused() -> None:
    with pytest.raises(TypeError) as info:
        load_reference_checkpoint(nn.Linear(2, 2), {})
    assert str(info.value) == "model: expected an MSResNet (from gac_coding.models.create_model), got Linear"
    model = _tiny(ta_activation="gelu", gate="sum")
    expected = (
        "model: the authors' layout holds the paper's encoder only (an MLP temporal attention without "
        "biases, ReLU, from the stem, gate sigmoid(TA * SCA)); this model's encoder has "
        "ta_activation='gelu', gate='sum'"
    )
    for call in (reference_layout, export_reference_state_dict):
        with pytest.raises(ReferenceCheckpointError) as info:
            call(model)
        assert str(info.value) == expected
    state = export_reference_state_dict(_tiny())
    assert _reference_fails(model, state) == expected
    # a direct-coded model has no gate: nothing to refuse
    direct = _tiny(coding="direct")
    load_reference_checkpoint(direct, export_reference_state_dict(_randomized(_tiny(coding="direct"))))


_CIFAR_KEY = (
    "path_or_state_dict: this is the authors' CIFAR layout (keys such as 'layer1.*') but the model uses "
    "the ImageNet recipe; build it with create_model('msresnet18_cifar', ...)"
)
_IMAGENET_KEY = (
    "path_or_state_dict: this is the authors' ImageNet layout (keys such as 'conv2_x.*') but the model "
    "uses the CIFAR recipe; build it with create_model('msresnet18_imagenet', ...) or "
    "'msresnet34_imagenet'"
)


@pytest.mark.parametrize("key", ["layer1.0.conv1.weight", "bn1.bn.weight", "conv1_s.layer.module.weight"])
def test_each_key_of_the_cifar_layout_tells_it_apart(key: str) -> None:
    assert _reference_fails(_tiny_imagenet(), {key: torch.zeros(1)}) == _CIFAR_KEY


@pytest.mark.parametrize("key", ["conv2_x.0.conv1.weight", "conv1.0.weight", "conv1.1.bn.weight"])
def test_each_key_of_the_imagenet_layout_tells_it_apart(key: str) -> None:
    assert _reference_fails(_tiny(), {key: torch.zeros(1)}) == _IMAGENET_KEY


def test_the_other_recipes_files_load_into_their_own_recipe() -> None:
    for make in (_tiny, _tiny_imagenet):
        src = _randomized(make())
        dst = make()
        load_reference_checkpoint(dst, export_reference_state_dict(src))
        _assert_state(dst, src.state_dict())


def test_gac_weights_for_a_direct_coded_model_say_so() -> None:
    state = export_reference_state_dict(_tiny())
    assert _reference_fails(_tiny(coding="direct"), state) == (
        "path_or_state_dict: the checkpoint holds GAC encoder weights ('encoding.*') but the model was "
        "built with coding='direct'; build it with coding='gac'"
    )


def test_another_T_is_read_from_the_temporal_attention_in_either_shape() -> None:
    state = export_reference_state_dict(_tiny(T=4))
    message = (
        "path_or_state_dict: the checkpoint was made for T=4 time steps ('encoding.TA.sharedMLP.0.weight' "
        "has shape {}) but the model has T=6; build it with T=4"
    )
    assert _reference_fails(_tiny(T=6), state) == message.format("[2, 4, 1, 1, 1]")
    # the Linear shape [T // 2, T] of a file saved from another implementation
    flat = {**state, "encoding.TA.sharedMLP.0.weight": state["encoding.TA.sharedMLP.0.weight"].flatten(1)}
    assert _reference_fails(_tiny(T=6), flat) == message.format("[2, 4]")


def test_another_class_count_is_read_from_either_copy_of_the_classifier() -> None:
    state = export_reference_state_dict(_tiny(num_classes=5))
    expected = (
        "path_or_state_dict: the checkpoint was made for 5 classes ('fc1.weight' has shape [5, 64]) but "
        "the model has num_classes=10; build it with num_classes=5"
    )
    assert _reference_fails(_tiny(), state) == expected
    only_fc1 = {k: v for k, v in state.items() if not k.startswith("fc1_s.")}
    assert _reference_fails(_tiny(), only_fc1) == expected
    only_copy = {k: v for k, v in state.items() if not k.startswith("fc1.")}
    message = _reference_fails(_tiny(), only_copy)
    assert "made for 5 classes" in message and message.endswith(
        "but the model has num_classes=10; build it with num_classes=5"
    )


# ------------------------------------------------------------------------------------------------
# The authors' layout: keys listed, aliases, what a file or a dict holds
# ------------------------------------------------------------------------------------------------


def test_unexpected_keys_are_listed_eight_at_most() -> None:
    state = export_reference_state_dict(_tiny())
    head = "path_or_state_dict: unexpected keys for MSResNet (recipe='cifar'): "
    two = {**state, "extra.a": torch.zeros(1), "extra.b": torch.zeros(1)}
    assert _reference_fails(_tiny(), two) == head + "'extra.a', 'extra.b'"
    eight = {**state, **{f"extra.{i}": torch.zeros(1) for i in range(8)}}
    listed = ", ".join(f"'extra.{i}'" for i in range(8))
    assert _reference_fails(_tiny(), eight) == head + listed
    nine = {**state, **{f"extra.{i}": torch.zeros(1) for i in range(9)}}
    assert _reference_fails(_tiny(), nine) == head + listed + " (and 1 more)"
    twelve = {**state, **{f"extra.{i}": torch.zeros(1) for i in range(12)}}
    assert _reference_fails(_tiny(), twelve) == head + listed + " (and 4 more)"
    encoding = {**state, "encoding.TA.sharedMLP.4.weight": torch.zeros(1)}
    assert _reference_fails(_tiny(), encoding) == (
        head + "'encoding.TA.sharedMLP.4.weight' (GAC encoder weights for another attention size?)"
    )


def test_missing_keys_are_listed_with_the_hint_for_the_encoder_only() -> None:
    state = export_reference_state_dict(_tiny())
    no_bias = {k: v for k, v in state.items() if k not in ("fc1.bias", "fc1_s.layer.module.bias")}
    assert _reference_fails(_tiny(), no_bias) == "path_or_state_dict: missing keys: 'fc1.bias'"
    no_encoder = {k: v for k, v in state.items() if not k.startswith("encoding.")}
    assert _reference_fails(_tiny(), no_encoder) == (
        "path_or_state_dict: missing keys: 'encoding.TA.sharedMLP.0.weight', "
        "'encoding.TA.sharedMLP.2.weight', 'encoding.SCA.sharedMLP.0.weight', "
        "'encoding.SCA.sharedMLP.2.weight' (the checkpoint has no GAC encoder weights: if it is a "
        "direct-coding model, build the model with coding='direct')"
    )


def test_a_copy_that_differs_from_the_first_is_named() -> None:
    state = export_reference_state_dict(_tiny())
    state["conv1_s.layer.module.weight"] = state["conv1.weight"] + 1.0  # the second of two copies
    assert _reference_fails(_tiny(), state) == (
        "path_or_state_dict: key 'conv1_s.layer.module.weight' should repeat 'conv1.weight' (the "
        "authors save that module twice) but holds a different tensor"
    )


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "net"])
def test_each_wrapper_of_a_training_script_is_unwrapped(wrapper: str) -> None:
    src = _randomized(_tiny())
    dst = _tiny()
    load_reference_checkpoint(dst, {wrapper: export_reference_state_dict(src), "epoch": 9})
    _assert_state(dst, src.state_dict())


def test_what_a_state_dict_or_a_file_holds_is_checked(tmp_path: Path) -> None:
    model = _tiny()
    assert _reference_fails(model, {}) == "path_or_state_dict: the state dict is empty"
    path = tmp_path / "empty.pth"
    torch.save({}, path)
    assert _reference_fails(model, path) == f"path_or_state_dict: file {str(path)!r} is empty"
    # tensors beside a wrapper: not unwrapped, the wrapper is no tensor
    state = export_reference_state_dict(_tiny())
    mixed = {"fc1.weight": state["fc1.weight"], "state_dict": state}
    assert _reference_fails(model, mixed, TypeError) == (
        "path_or_state_dict: key 'state_dict' holds a dict, expected a Tensor"
    )
    assert (
        _reference_fails(model, {1: torch.zeros(1)}, TypeError)
        == "path_or_state_dict: keys must be str, got 1"
    )


def test_read_reference_state_dict_gives_the_keys_without_the_prefix(tmp_path: Path) -> None:
    state = export_reference_state_dict(_randomized(_tiny()))
    path = tmp_path / "authors.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, path)
    read = read_reference_state_dict(path)
    assert list(read) == list(state)
    for key, value in state.items():
        assert torch.equal(read[key], value), key


class _Scaled(MSResNet):
    """A user's subclass with a parameter and a buffer of its own: the authors' files have no key
    for them, so they can neither fill nor hold them."""

    def __init__(self) -> None:
        super().__init__(TINY_STAGES, 10, 2, "cifar", stem_channels=16)
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def test_a_model_with_tensors_the_authors_layout_has_no_key_for_is_refused_before_loading() -> None:
    """Before the fix, loading ran torch's strict ``load_state_dict``: every other tensor was
    loaded, then a ``RuntimeError`` (not the documented error) came; the export left the
    subclass's parameter out of the file without a word."""
    expected = "model: _Scaled holds 'scale', 'steps', which the authors' layout has no key for"
    state = export_reference_state_dict(_randomized(_tiny()))
    assert _reference_fails(_Scaled(), state) == expected
    for call in (reference_layout, export_reference_state_dict):
        with pytest.raises(ReferenceCheckpointError) as info:
            call(_Scaled())
        assert str(info.value) == expected
