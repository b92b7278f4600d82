"""Read checkpoint files safely and load them into :class:`~gac_coding.models.MSResNet`.

One reader for every command that takes a file (``gac-coding train --resume``, ``gac-coding energy
--checkpoint``): :func:`read_torch_file` (``torch.load(..., weights_only=True)``),
:func:`read_weights` (``.pt``/``.pth`` or ``.safetensors``, with the run's recorded settings) and
:func:`load_weights`. Every unreadable or hostile file raises :class:`CheckpointError` with a
one-line message, and a file made for another model, ``T``, class or channel count raises a
``ValueError`` that says what the file holds.

The authors' released checkpoints (docs/design/checkpoints.md) are loaded by
:func:`load_reference_checkpoint`.

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

import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .msresnet import MSResNet

__all__ = [
    "DATA_SETTING_KEYS",
    "SETTING_KEYS",
    "CheckpointError",
    "ReferenceCheckpointError",
    "UnsafeCheckpointError",
    "WeightsFile",
    "describe_settings",
    "export_reference_state_dict",
    "load_reference_checkpoint",
    "load_weights",
    "read_torch_file",
    "read_weights",
    "recorded_coding",
    "reference_layout",
]

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_TA_KEYS = ("encoding.TA.sharedMLP.0.weight", "encoding.TA.sharedMLP.2.weight")
_MAX_LISTED = 8


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, empty, a folder, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint asks to run code (import or call something) and was refused unread."""


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
    layout; models with another coding than GAC have no ``encoding.*`` keys.

    Example:
        >>> from gac_coding.models import create_model
        >>> from gac_coding.models.checkpoints import reference_layout
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
    return layout


def export_reference_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """``model``'s weights in the authors' layout, aliases included (aliases share one tensor).

    Example:
        >>> from gac_coding.models import create_model, load_reference_checkpoint
        >>> from gac_coding.models.checkpoints import export_reference_state_dict
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
    or with/without the GAC encoder. Nothing is loaded when it raises.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model, load_reference_checkpoint
        >>> from gac_coding.models.checkpoints import export_reference_state_dict
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


# ------------------------------------------------------------------------------------------------
# Reading any checkpoint file safely (train --resume, energy --checkpoint)
# ------------------------------------------------------------------------------------------------

#: Run settings a checkpoint may record, in the order :func:`describe_settings` names them.
SETTING_KEYS: tuple[str, ...] = ("model", "T", "num_classes", "in_channels", "gac", "temporal_attention")
#: What a run of ``gac-coding train`` records about its data, so that ``gac-coding energy`` can
#: measure the model on the images it validated on and ``gac-coding export`` knows their size:
#: ``dataset`` (its name), ``data_dir`` (the folder, absolute), ``input_size`` (``(H, W)`` as fed
#: to the model), ``image_size`` (the data set's side, recorded by older ``last.pt`` files),
#: ``coding`` (a name of :data:`gac_coding.coding.CODINGS`; ``"poisson"`` in older runs reads as
#: ``"rate"``) and ``events`` (an event data set's frame
#: options other than ``T``).
DATA_SETTING_KEYS: tuple[str, ...] = ("dataset", "data_dir", "input_size", "image_size", "coding", "events")


def _check_file(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a folder, expected a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: the file is empty")
    return path


def _refused_global(exc: BaseException) -> str | None:
    """What a weights-only load refused to import, e.g. ``'os.system'``, from torch's message;
    ``None`` when the unpickler failed for another reason (a corrupt or non-pickle file)."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"[Uu]nsupported global:? ([\w.]+)", text)
    return found.group(1) if found else None


def _first_line(exc: BaseException) -> str:
    """The line of an exception's message that says what went wrong (torch's weights-only errors
    put it after ``WeightsUnpickler error:``)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def read_torch_file(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a ``torch.save`` file with ``weights_only=True``: tensors, numbers, strings, containers.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeCheckpointError: the file would import or call code; nothing of it ran.
        CheckpointError: the file is a folder, empty, truncated, not a torch file, or holds no dict.

    Example:
        >>> import tempfile, torch
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save({"epoch": 2}, f"{d}/last.pt")
        ...     read_torch_file(f"{d}/last.pt")["epoch"]
        2
    """
    path = _check_file(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file means unreadable
        refused = _refused_global(exc) if isinstance(exc, pickle.UnpicklingError) else None
        if refused is not None:
            raise UnsafeCheckpointError(
                f"checkpoint {path}: refused to load it because it asks to import or call code "
                f"({refused}), which a weights-only load forbids (nothing of it was executed); "
                "load only checkpoints written by gac-coding or another source you trust"
            ) from exc
        raise CheckpointError(
            f"checkpoint {path}: not a readable torch checkpoint (truncated or corrupt?): {_first_line(exc)}"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, got {type(obj).__name__}")
    return obj


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        from safetensors import safe_open
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f'reading {path.name} needs safetensors: pip install "gac-coding[train]"') from exc
    try:
        with safe_open(str(path), "pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file means unreadable
        raise CheckpointError(
            f"checkpoint {path}: not a readable .safetensors file (truncated or corrupt?): {_first_line(exc)}"
        ) from exc
    return tensors, metadata


def _json_setting(path: Path, key: str, value: object) -> Any:
    """A structured setting: itself in a torch file, JSON text in safetensors metadata."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise CheckpointError(f"checkpoint {path}: recorded {key} {value!r} is not valid JSON") from None


def _data_setting(path: Path, key: str, value: object) -> Any:
    """One of :data:`DATA_SETTING_KEYS` as its type."""
    if key in ("dataset", "data_dir", "coding"):
        if not isinstance(value, str) or not value:
            raise CheckpointError(f"checkpoint {path}: recorded {key} {value!r} is not a name")
        return value
    if key == "input_size":
        size = _json_setting(path, key, value)
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)
        ):
            raise CheckpointError(f"checkpoint {path}: recorded input_size {value!r} is not [H, W]")
        return (int(size[0]), int(size[1]))
    if key == "events":
        options = _json_setting(path, key, value)
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise CheckpointError(f"checkpoint {path}: recorded events {value!r} is not a dict of options")
        return dict(options)
    return _setting(path, key, value)  # image_size: an integer >= 1


def _setting(path: Path, key: str, value: object) -> Any:
    """A recorded setting as its type (safetensors metadata holds strings only)."""
    if key in DATA_SETTING_KEYS and key != "image_size":
        return _data_setting(path, key, value)
    if key == "model":
        if not isinstance(value, str) or not value:
            raise CheckpointError(f"checkpoint {path}: recorded model {value!r} is not a model name")
        return value
    if key == "gac":
        if isinstance(value, bool):
            return value
        if value in ("True", "False"):
            return value == "True"
        raise CheckpointError(f"checkpoint {path}: recorded gac {value!r} is not True or False")
    if key == "temporal_attention":
        from ..attention import TEMPORAL_ATTENTIONS

        if value not in TEMPORAL_ATTENTIONS:
            raise CheckpointError(
                f"checkpoint {path}: recorded temporal_attention {value!r} is not one of "
                f"{list(TEMPORAL_ATTENTIONS)}"
            )
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"checkpoint {path}: recorded {key} {value!r} is not an integer >= 1")
    return value


@dataclass(frozen=True)
class WeightsFile:
    """A model's weights read from a checkpoint file by :func:`read_weights`.

    Attributes:
        path: the file.
        state_dict: the weights (this library's keys, or the authors' layout).
        settings: the run settings the file records (``model``, ``T``, ``num_classes``,
            ``in_channels``, ``gac``, ``temporal_attention``, and about its data the
            :data:`DATA_SETTING_KEYS`; those present), empty for a bare state dict or the
            authors' file.
    """

    path: Path
    state_dict: dict[str, Tensor]
    settings: dict[str, Any] = field(default_factory=dict)


def read_weights(path: str | os.PathLike[str]) -> WeightsFile:
    """Read a model's weights and recorded run settings from any supported file.

    Supported: ``model.safetensors`` (settings in its metadata), ``last.pt`` / ``best.pt`` of
    ``gac-coding train`` (weights under ``"model"``, settings under ``"config"``, the temporal
    attention under its ``"model_kwargs"``), a ``torch.save``
    state dict, or one wrapped under ``"model"`` / ``"state_dict"``, and the authors' ``.pth``.
    Torch files are read with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeCheckpointError: a torch file asks to run code; nothing of it ran.
        CheckpointError: a folder, an empty, truncated or corrupt file, no tensors, or a recorded
            setting that is not valid.

    Example:
        >>> import tempfile, torch
        >>> from gac_coding.models import create_model
        >>> m = create_model("msresnet_tiny", num_classes=10, T=2)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save({"model": m.state_dict(), "config": {"model": "msresnet_tiny", "T": 2}},
        ...                f"{d}/last.pt")
        ...     read_weights(f"{d}/last.pt").settings
        {'model': 'msresnet_tiny', 'T': 2}
    """
    path = _check_file(path)
    recorded: Mapping[str, Any]
    if path.suffix == ".safetensors":
        state, recorded = _read_safetensors(path)
    else:
        obj = read_torch_file(path)
        config = obj.get("config")
        recorded = config if isinstance(config, Mapping) else {}
        extra = recorded.get("model_kwargs")  # train's create_model arguments, e.g. temporal_attention
        if isinstance(extra, Mapping) and "temporal_attention" in extra:
            recorded = {"temporal_attention": extra["temporal_attention"], **recorded}
        state = obj
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if not state or bad:
        what = "holds no tensors" if not state else f"key {bad[0]!r} does not hold a tensor"
        raise CheckpointError(f"checkpoint {path}: not a model checkpoint ({what})")
    settings = {k: _setting(path, k, recorded[k]) for k in SETTING_KEYS if k in recorded}
    # about the data: a run without a data folder (digits) records data_dir=None
    settings.update(
        {k: _setting(path, k, recorded[k]) for k in DATA_SETTING_KEYS if recorded.get(k) is not None}
    )
    coding = recorded_coding(settings)
    if coding is not None:
        settings["coding"] = coding
    return WeightsFile(path=path, state_dict=dict(state), settings=settings)


def recorded_coding(settings: Mapping[str, Any]) -> str | None:
    """The ``coding`` a run recorded. Runs written before ``coding`` had the value ``"gac"``
    recorded ``coding="direct"`` with ``gac=True``; they read as ``"gac"``. Runs written before
    rate coding had its name recorded ``"poisson"``; they read as ``"rate"``.

    Example:
        >>> recorded_coding({"coding": "direct", "gac": True}), recorded_coding({"gac": True})
        ('gac', None)
        >>> recorded_coding({"coding": "poisson", "gac": False})
        'rate'
    """
    coding = settings.get("coding")
    if coding == "direct" and settings.get("gac") is True:
        return "gac"
    return "rate" if coding == "poisson" else coding


def describe_settings(settings: Mapping[str, Any]) -> str:
    """Recorded run settings in words, e.g. ``"an msresnet_tiny run (T=4, 10 classes, ...)"``.

    Example:
        >>> describe_settings({"model": "msresnet_tiny", "T": 4, "num_classes": 10, "gac": False})
        'a msresnet_tiny run (T=4, 10 classes, direct coding)'
        >>> describe_settings({"model": "msresnet_tiny", "T": 4, "gac": False, "coding": "rate"})
        'a msresnet_tiny run (T=4, rate coding)'
    """
    parts = []
    if "T" in settings:
        parts.append(f"T={settings['T']}")
    if "num_classes" in settings:
        parts.append(f"{settings['num_classes']} classes")
    if "in_channels" in settings:
        parts.append(f"{settings['in_channels']} input channels")
    coding = settings.get("coding")  # the run's coding; files that record none say gac
    if coding is not None:
        parts.append("GAC encoder" if coding == "gac" else f"{coding} coding")
    elif "gac" in settings:
        parts.append("GAC encoder" if settings["gac"] else "direct coding")
    if "temporal_attention" in settings:
        parts.append(f"{settings['temporal_attention']} temporal attention")
    name = f"a {settings['model']} run" if "model" in settings else "a run"
    return f"{name} ({', '.join(parts)})" if parts else name


def _model_settings(model: nn.Module) -> dict[str, Any]:
    found = {key: getattr(model, key, None) for key in SETTING_KEYS[1:] if key != "gac"}
    coding = getattr(model, "coding", None)  # runs record gac: whether the coding is GAC
    found["gac"] = None if coding is None else coding == "gac"
    gate = getattr(getattr(model, "encoder", None), "gate", None)  # a GAC encoder's gate
    found["temporal_attention"] = getattr(gate, "temporal_attention", None)
    return {k: v for k, v in found.items() if v is not None}


def _is_library_layout(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(("encoder.", "stages.")) for k in state)


def load_weights(
    model: nn.Module, source: str | os.PathLike[str] | WeightsFile, *, model_name: str | None = None
) -> str:
    """Load ``source`` (a path or a :class:`WeightsFile`) into ``model``; strict, all or nothing.

    This library's layout (``model.safetensors``, ``last.pt``, a saved ``state_dict``) is loaded
    directly; anything else goes to :func:`load_reference_checkpoint` (the authors' layout).
    When the file does not fit, the ``ValueError`` says in one line what the file holds (its
    recorded settings, or the first key that differs) and what the model is. ``model_name`` (the
    registry name the model was built from) is compared with the recorded one.

    Returns:
        ``"library"`` or ``"reference"``, the layout that was loaded.

    Example:
        >>> import tempfile, torch
        >>> from gac_coding.models import create_model
        >>> src = create_model("msresnet_tiny", num_classes=10, T=2)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save(src.state_dict(), f"{d}/w.pt")
        ...     load_weights(create_model("msresnet_tiny", num_classes=10, T=2), f"{d}/w.pt")
        'library'
    """
    weights = source if isinstance(source, WeightsFile) else read_weights(source)
    recorded = weights.settings
    mine = dict(_model_settings(model), **({"model": model_name} if model_name else {}))
    differ = [k for k in SETTING_KEYS if k in recorded and k in mine and recorded[k] != mine[k]]
    if differ:
        raise ValueError(
            f"checkpoint: {weights.path} holds {describe_settings(recorded)}, which does not fit "
            f"the model asked for ({', '.join(f'{k}={mine[k]!r}' for k in differ)})"
        )
    state = weights.state_dict
    ours = model.state_dict()
    if set(state) == set(ours):
        for key, value in state.items():
            if value.shape != ours[key].shape:
                raise ValueError(
                    f"checkpoint: {weights.path} does not fit the model: {key!r} has shape "
                    f"{list(value.shape)} in the file, {list(ours[key].shape)} in the model "
                    "(another T, class count or channel count?)"
                )
        model.load_state_dict(state)
        return "library"
    if _is_library_layout(state):
        missing = sorted(set(ours) - set(state))
        unexpected = sorted(set(state) - set(ours))
        raise ValueError(
            f"checkpoint: {weights.path} holds {describe_settings(recorded)} whose keys do not "
            f"match the model (another model?): missing {_listed(missing) or 'none'}; "
            f"unexpected {_listed(unexpected) or 'none'}"
        )
    try:
        load_reference_checkpoint(model, state)
    except ReferenceCheckpointError as exc:
        raise ReferenceCheckpointError(
            f"checkpoint: {weights.path} is not this library's layout and does not fit the "
            f"authors' layout for this model: {exc}"
        ) from None
    return "reference"
