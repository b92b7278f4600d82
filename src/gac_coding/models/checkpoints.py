"""Read checkpoint files safely and load them into a model: one reader for every command that takes
a file (``gac-coding train --resume``, ``gac-coding energy --checkpoint``, ``gac-coding export``).

:func:`read_weights` reads ``.pt``/``.pth`` or ``.safetensors`` files with the run settings they
record (the format and the safe readers are :mod:`gac_coding.io`'s), :func:`load_weights` loads
them. Every unreadable or hostile file raises :class:`~gac_coding.io.CheckpointError` with a
one-line message, and a file made for another model, ``T``, class or channel count raises a
``ValueError`` that says what the file holds. Files in the authors' layout go to
:func:`~gac_coding.models.reference.load_reference_checkpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..attention import TEMPORAL_ATTENTIONS
from ..io import (
    DATA_SETTING_KEYS,
    SETTING_KEYS,
    CheckpointError,
    UnsafeCheckpointError,
    check_file,
    describe_settings,
    read_safetensors,
    read_settings,
    read_torch_file,
    recorded_coding,
)
from .reference import (
    ReferenceCheckpointError,
    _listed,
    export_reference_state_dict,
    load_reference_checkpoint,
    reference_layout,
)

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
    path = check_file(path)
    recorded: Mapping[str, Any]
    if path.suffix == ".safetensors":
        state, recorded = read_safetensors(path)
    else:
        obj = read_torch_file(path)
        config = obj.get("config")
        recorded = config if isinstance(config, Mapping) else {}
        state = obj
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if not state or bad:
        what = "holds no tensors" if not state else f"key {bad[0]!r} does not hold a tensor"
        raise CheckpointError(f"checkpoint {path}: not a model checkpoint ({what})")
    settings = read_settings(path, recorded, choices={"temporal_attention": TEMPORAL_ATTENTIONS})
    return WeightsFile(path=path, state_dict=dict(state), settings=settings)


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
