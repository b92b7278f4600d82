"""The authors' released checkpoints (docs/design/checkpoints.md): their key layouts, and loading
them into :class:`~gac_coding.models.MSResNet` (:func:`load_reference_checkpoint`) or writing a
model in their layout (:func:`export_reference_state_dict`).

Two layouts, both possibly prefixed with ``module.`` (files saved from ``DataParallel``):

* CIFAR: ``conv1.weight``, ``bn1.bn.*``, ``layer{1,2,3}.{i}.conv{1,2}.weight``,
  ``...bn{1,2}.bn.*``, ``...downsample.layer.module.weight``, ``...downsample.bn.bn.*``,
  ``fc1.*``, and every shared submodule saved a second time under another name
  (``bn1.seqbn.module.*``, ``conv1_s.layer.module.weight``, ``conv1_s.bn.bn.*``,
  ``fc1_s.layer.module.*``, ...).
* ImageNet: ``conv1.0.weight``, ``conv1.1.bn.*``, ``conv{2,3,4,5}_x.{i}.conv{1,2}.weight``,
  ``...bn{1,2}.bn.*``, ``...shortcut.0.weight``, ``...shortcut.1.bn.*``, ``fc1.*`` (and
  ``fc1_s.layer.module.*``).

Both store the encoder as ``encoding.TA.sharedMLP.{0,2}.weight`` (Conv3d weights
``[T//2, T, 1, 1, 1]`` and ``[T, T//2, 1, 1, 1]``, i.e. the temporal MLP's linear layers) and
``encoding.SCA.sharedMLP.{0,2}.weight``. ``.bn.`` keys are BatchNorm3d over ``[B, C, T, H, W]``,
whose statistics (over B, T, H, W) are exactly those of this library's BatchNorm2d over the folded
``[T * B, C, H, W]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..io import read_torch_file
from .msresnet import MSResNet

__all__ = [
    "LayoutEntry",
    "ReferenceCheckpointError",
    "export_reference_state_dict",
    "load_reference_checkpoint",
    "read_reference_state_dict",
    "reference_layout",
]

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_TA_KEYS = ("encoding.TA.sharedMLP.0.weight", "encoding.TA.sharedMLP.2.weight")
_MAX_LISTED = 8


class ReferenceCheckpointError(ValueError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped keys, another ``T``,
    another number of classes, or aliases that disagree. The message names the key."""


@dataclass(frozen=True)
class LayoutEntry:
    """One key of the authors' layout.

    Attributes:
        model_key: the key of this library's state dict that it fills.
        shape: the tensor shape in the authors' file.
        alias_of: for a duplicated entry, the authors' key whose tensor it repeats; else ``None``.
        temporal: a TA weight (Conv3d ``[out, in, 1, 1, 1]`` in the file, Linear ``[out, in]`` here).
    """

    model_key: str
    shape: tuple[int, ...]
    alias_of: str | None = None
    temporal: bool = False


def _check_model(model: object) -> MSResNet:
    if not isinstance(model, MSResNet):
        raise TypeError(
            f"model: expected an MSResNet (from gac_coding.models.create_model), got {type(model).__name__}"
        )
    gate = getattr(model.encoder, "gate", None)
    if model.coding == "gac" and gate is not None and not gate.is_paper:
        from ..attention import ATTENTION_OPTIONS

        changed = {k: v for k, v in gate.options.items() if v != ATTENTION_OPTIONS[k][0]}
        raise ReferenceCheckpointError(
            f"model: the authors' layout holds the paper's encoder only (an MLP temporal attention "
            f"without biases, ReLU, from the stem, gate sigmoid(TA * SCA)); this model's encoder has "
            f"{', '.join(f'{k}={v!r}' for k, v in changed.items())}"
        )
    return model


def _layout_items(model: MSResNet) -> Iterator[tuple[str, str, str | None, bool]]:
    """``(authors_key, model_key, alias_of, temporal)`` in the authors' file order."""

    def bn(authors: str, ours: str, aliases: tuple[str, ...] = ()):
        for f in _BN_FIELDS:
            yield f"{authors}.bn.{f}", f"{ours}.{f}", None, False
        for alias in aliases:
            for f in _BN_FIELDS:
                yield f"{alias}.{f}", f"{ours}.{f}", f"{authors}.bn.{f}", False

    def encoding():
        if model.coding != "gac":
            return
        yield _TA_KEYS[0], "encoder.gate.ta.fc1.weight", None, True
        yield _TA_KEYS[1], "encoder.gate.ta.fc2.weight", None, True
        yield "encoding.SCA.sharedMLP.0.weight", "encoder.gate.sca.conv1.weight", None, False
        yield "encoding.SCA.sharedMLP.2.weight", "encoder.gate.sca.conv2.weight", None, False

    def fc():
        for f in ("weight", "bias"):
            yield f"fc1.{f}", f"fc.{f}", None, False
        for f in ("weight", "bias"):
            yield f"fc1_s.layer.module.{f}", f"fc.{f}", f"fc1.{f}", False

    if model.recipe == "cifar":
        yield "conv1.weight", "encoder.conv.weight", None, False
        yield from bn("bn1", "encoder.bn", ("bn1.seqbn.module",))
        yield "conv1_s.layer.module.weight", "encoder.conv.weight", "conv1.weight", False
        for alias in ("conv1_s.bn.bn", "conv1_s.bn.seqbn.module"):
            for f in _BN_FIELDS:
                yield f"{alias}.{f}", f"encoder.bn.{f}", f"bn1.bn.{f}", False
        for i, stage in enumerate(model.stages):
            for j, block in enumerate(stage):  # type: ignore[arg-type, var-annotated]
                a, o = f"layer{i + 1}.{j}", f"stages.{i}.{j}"
                for n in (1, 2):
                    yield f"{a}.conv{n}.weight", f"{o}.conv{n}.weight", None, False
                    yield from bn(f"{a}.bn{n}", f"{o}.bn{n}", (f"{a}.bn{n}.seqbn.module",))
                if not isinstance(block.shortcut, nn.Identity):
                    yield f"{a}.downsample.layer.module.weight", f"{o}.shortcut.0.weight", None, False
                    yield from bn(
                        f"{a}.downsample.bn", f"{o}.shortcut.1", (f"{a}.downsample.bn.seqbn.module",)
                    )
                for n in (1, 2):
                    yield (
                        f"{a}.conv{n}_s.layer.module.weight",
                        f"{o}.conv{n}.weight",
                        f"{a}.conv{n}.weight",
                        False,
                    )
                    for alias in (f"{a}.conv{n}_s.bn.bn", f"{a}.conv{n}_s.bn.seqbn.module"):
                        for f in _BN_FIELDS:
                            yield f"{alias}.{f}", f"{o}.bn{n}.{f}", f"{a}.bn{n}.bn.{f}", False
        yield from fc()
        yield from encoding()
    else:
        yield "conv1.0.weight", "encoder.conv.weight", None, False
        yield from bn("conv1.1", "encoder.bn")
        yield from encoding()
        for i, stage in enumerate(model.stages):
            for j, block in enumerate(stage):  # type: ignore[arg-type, var-annotated]
                a, o = f"conv{i + 2}_x.{j}", f"stages.{i}.{j}"
                for n in (1, 2):
                    yield f"{a}.conv{n}.weight", f"{o}.conv{n}.weight", None, False
                    yield from bn(f"{a}.bn{n}", f"{o}.bn{n}")
                if not isinstance(block.shortcut, nn.Identity):
                    yield f"{a}.shortcut.0.weight", f"{o}.shortcut.0.weight", None, False
                    yield from bn(f"{a}.shortcut.1", f"{o}.shortcut.1")
        yield from fc()


def reference_layout(model: nn.Module) -> dict[str, LayoutEntry]:
    """Every key of the authors' checkpoint for ``model``, in the order of their files.

    The CIFAR-recipe models use the authors' CIFAR layout, the ImageNet-recipe ones their ImageNet
    layout; models with another coding than GAC have no ``encoding.*`` keys. A model that holds a
    tensor the authors' layout has no key for (a subclass with parameters or buffers of its own)
    raises :class:`ReferenceCheckpointError` naming it: their files cannot fill or hold it.

    Example:
        >>> from gac_coding.models import create_model
        >>> from gac_coding.models.reference import reference_layout
        >>> layout = reference_layout(create_model("msresnet18_cifar", num_classes=100, T=6))
        >>> layout["encoding.TA.sharedMLP.0.weight"].shape
        (3, 6, 1, 1, 1)
        >>> layout["fc1_s.layer.module.weight"].alias_of
        'fc1.weight'
    """
    model = _check_model(model)
    ours = model.state_dict()
    layout: dict[str, LayoutEntry] = {}
    for key, model_key, alias_of, temporal in _layout_items(model):
        shape = tuple(ours[model_key].shape)
        if temporal:
            shape = (*shape, 1, 1, 1)
        layout[key] = LayoutEntry(model_key, shape, alias_of, temporal)
    placed = {entry.model_key for entry in layout.values()}
    unplaced = [k for k in ours if k not in placed]  # e.g. a subclass's own parameters
    if unplaced:
        raise ReferenceCheckpointError(
            f"model: {type(model).__name__} holds {_listed(unplaced)}, which the authors' layout has no "
            "key for"
        )
    return layout


def export_reference_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s weights in the authors' layout, aliases included (aliases share one tensor).

    Example:
        >>> from gac_coding.models import create_model, load_reference_checkpoint
        >>> from gac_coding.models.reference import export_reference_state_dict
        >>> m = create_model("msresnet_tiny", num_classes=10, T=4)
        >>> sd = export_reference_state_dict(m)
        >>> sd["encoding.TA.sharedMLP.0.weight"].shape
        torch.Size([2, 4, 1, 1, 1])
        >>> load_reference_checkpoint(create_model("msresnet_tiny", num_classes=10, T=4), sd)
    """
    model = _check_model(model)
    ours = model.state_dict()
    out: dict[str, Tensor] = {}
    for key, entry in reference_layout(model).items():
        if entry.alias_of is not None:
            out[key] = out[entry.alias_of]
        else:
            out[key] = ours[entry.model_key].detach().clone().reshape(entry.shape)
    return out


def _listed(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return shown + (f" (and {more} more)" if more > 0 else "")


def _read(path_or_state_dict: object) -> dict[str, Tensor]:
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        if not os.path.isfile(path_or_state_dict):
            raise FileNotFoundError(
                f"path_or_state_dict: no checkpoint file at {os.fspath(path_or_state_dict)!r}"
            )
        obj: Any = read_torch_file(path_or_state_dict)
        source = f"file {os.fspath(path_or_state_dict)!r}"
    elif isinstance(path_or_state_dict, Mapping):
        obj = path_or_state_dict
        source = "the state dict"
    else:
        raise TypeError(
            f"path_or_state_dict: expected a file path or a state dict (a mapping of str to "
            f"Tensor), got {type(path_or_state_dict).__name__}"
        )
    if not isinstance(obj, Mapping):
        raise TypeError(f"path_or_state_dict: {source} holds a {type(obj).__name__}, not a state dict")
    if obj and not any(isinstance(v, Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model", "net"):  # training scripts often wrap the weights
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"path_or_state_dict: keys must be str, got {key!r}")
        if not isinstance(value, Tensor):
            raise TypeError(
                f"path_or_state_dict: key {key!r} holds a {type(value).__name__}, expected a Tensor"
            )
        state[key] = value
    if not state:
        raise ReferenceCheckpointError(f"path_or_state_dict: {source} is empty")
    prefixed = [k for k in state if k.startswith("module.")]
    if prefixed:
        plain = [k for k in state if not k.startswith("module.")]
        if plain:
            raise ReferenceCheckpointError(
                f"path_or_state_dict: some keys carry the DataParallel prefix 'module.' and some "
                f"do not, e.g. {plain[0]!r}"
            )
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_reference_state_dict(path_or_state_dict: object) -> dict[str, Tensor]:
    """The tensors of a checkpoint in the authors' layout (a file path, read weights-only, or a state
    dict), unwrapped from a ``"state_dict"``/``"model"``/``"net"`` entry and without the ``module.``
    prefix; what :func:`load_reference_checkpoint` reads first."""
    return _read(path_or_state_dict)


def _check_kind(model: MSResNet, state: Mapping[str, Tensor]) -> None:
    cifar_like = any(k.startswith(("layer1.", "bn1.bn.", "conv1_s.")) for k in state)
    imagenet_like = any(k.startswith(("conv2_x.", "conv1.0.", "conv1.1.bn.")) for k in state)
    if model.recipe == "cifar" and imagenet_like and not cifar_like:
        raise ReferenceCheckpointError(
            "path_or_state_dict: this is the authors' ImageNet layout (keys such as 'conv2_x.*') but "
            "the model uses the CIFAR recipe; build it with create_model('msresnet18_imagenet', ...) "
            "or 'msresnet34_imagenet'"
        )
    if model.recipe == "imagenet" and cifar_like and not imagenet_like:
        raise ReferenceCheckpointError(
            "path_or_state_dict: this is the authors' CIFAR layout (keys such as 'layer1.*') but the "
            "model uses the ImageNet recipe; build it with create_model('msresnet18_cifar', ...)"
        )


def _check_model_settings(model: MSResNet, state: Mapping[str, Tensor]) -> None:
    ta = state.get(_TA_KEYS[0])
    has_encoding = any(k.startswith("encoding.") for k in state)
    if has_encoding and model.coding != "gac":
        raise ReferenceCheckpointError(
            "path_or_state_dict: the checkpoint holds GAC encoder weights ('encoding.*') but the "
            f"model was built with coding={model.coding!r}; build it with coding='gac'"
        )
    if model.coding == "gac" and ta is not None and ta.dim() >= 2 and ta.shape[1] != model.T:
        raise ReferenceCheckpointError(
            f"path_or_state_dict: the checkpoint was made for T={ta.shape[1]} time steps "
            f"({_TA_KEYS[0]!r} has shape {list(ta.shape)}) but the model has T={model.T}; "
            f"build it with T={ta.shape[1]}"
        )
    fc = state.get("fc1.weight", state.get("fc1_s.layer.module.weight"))
    if fc is not None and fc.dim() == 2 and fc.shape[0] != model.num_classes:
        raise ReferenceCheckpointError(
            f"path_or_state_dict: the checkpoint was made for {fc.shape[0]} classes ('fc1.weight' "
            f"has shape {list(fc.shape)}) but the model has num_classes={model.num_classes}; "
            f"build it with num_classes={fc.shape[0]}"
        )


def load_reference_checkpoint(model: nn.Module, path_or_state_dict: object) -> None:
    """Load the authors' checkpoint (a file path or a state dict) into ``model``, in place.

    Accepts their CIFAR and ImageNet layouts (docs/design/checkpoints.md §2-3), with or without the
    ``module.`` prefix of ``DataParallel`` files; files are read with
    ``torch.load(..., weights_only=True)``. Keys the authors' files store twice
    (``conv1_s.layer.module.weight`` repeating ``conv1.weight``, ``.seqbn.module.`` repeating
    ``.bn.``, ``fc1_s.*`` repeating ``fc1.*``) must hold equal tensors; one of the copies is enough.
    The temporal attention's Conv3d weights ``[T//2, T, 1, 1, 1]`` become the Linear weights
    ``[T//2, T]``.

    Strict: raises :class:`ReferenceCheckpointError` (a ``ValueError``) naming the key for a
    missing, unexpected or mis-shaped key, for aliases that differ, and says so plainly when the
    checkpoint was made for another ``T``, another number of classes, the other recipe's layout,
    or with/without the GAC encoder, and for a model with tensors the layout has no key for (see
    :func:`reference_layout`). Nothing is loaded when it raises.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model, load_reference_checkpoint
        >>> from gac_coding.models.reference import export_reference_state_dict
        >>> src = create_model("msresnet_tiny", num_classes=10, T=4)
        >>> dst = create_model("msresnet_tiny", num_classes=10, T=4)
        >>> load_reference_checkpoint(dst, {"module." + k: v for k, v in
        ...                                 export_reference_state_dict(src).items()})
        >>> torch.equal(dst.encoder.conv.weight, src.encoder.conv.weight)
        True
    """
    model = _check_model(model)
    state = _read(path_or_state_dict)
    _check_kind(model, state)
    _check_model_settings(model, state)
    layout = reference_layout(model)

    unexpected = [k for k in state if k not in layout]
    if unexpected:
        hint = ""
        if any(k.startswith("encoding.") for k in unexpected):
            hint = " (GAC encoder weights for another attention size?)"
        raise ReferenceCheckpointError(
            f"path_or_state_dict: unexpected keys for {type(model).__name__} "
            f"(recipe={model.recipe!r}): {_listed(unexpected)}{hint}"
        )
    groups: dict[str, list[str]] = {}
    for key, entry in layout.items():
        groups.setdefault(entry.alias_of or key, []).append(key)
    missing = [canon for canon, keys in groups.items() if not any(k in state for k in keys)]
    if missing:
        hint = ""
        if model.coding == "gac" and any(k.startswith("encoding.") for k in missing):
            hint = (
                " (the checkpoint has no GAC encoder weights: if it is a direct-coding model, "
                "build the model with coding='direct')"
            )
        raise ReferenceCheckpointError(f"path_or_state_dict: missing keys: {_listed(missing)}{hint}")
    for key, value in state.items():
        expected = layout[key].shape
        if tuple(value.shape) != expected:
            raise ReferenceCheckpointError(
                f"path_or_state_dict: key {key!r} has shape {list(value.shape)}, expected "
                f"{list(expected)} for this model"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ReferenceCheckpointError(f"path_or_state_dict: key {key!r} contains NaN or infinite values")
    converted: dict[str, Tensor] = {}
    for canon, keys in groups.items():
        present = [k for k in keys if k in state]
        first = state[present[0]]
        for other in present[1:]:
            if not torch.equal(state[other], first):
                raise ReferenceCheckpointError(
                    f"path_or_state_dict: key {other!r} should repeat {present[0]!r} (the authors "
                    f"save that module twice) but holds a different tensor"
                )
        entry = layout[canon]
        converted[entry.model_key] = first.reshape(first.shape[:2]) if entry.temporal else first
    model.load_state_dict(converted, strict=True)
