"""Files that gac-coding writes and reads, and the run settings they record: one format for all.

Used by the training loop, the models' weight loading, ``gac-coding energy`` and the exports; it
imports torch alone (safetensors when a ``.safetensors`` file is written or read), so every layer
of the library may use it.

* **Atomic writes** (:func:`atomic_write`): a file is written to a temporary file in the destination
  folder, flushed and ``fsync``-ed, then moved over the destination with :func:`os.replace`
  (atomic on POSIX and Windows), and the folder entry is synced. A crash mid-save leaves the
  previous file intact. :func:`save_safetensors` writes tensors that way.
* **The safe readers**: :func:`read_torch_file` loads a ``torch.save`` file with
  ``weights_only=True`` (tensors, numbers, strings, plain containers); a file that asks to import
  or call anything is refused with :class:`UnsafeCheckpointError` before any of its code runs.
  :func:`read_safetensors` reads tensors and metadata. Every unreadable file raises
  :class:`CheckpointError` with a one-line message.
* **Run settings**: what a run of ``gac-coding train`` records so that the model and its data can
  be rebuilt from its files. ``last.pt``/``best.pt`` hold them under ``"config"`` (with the
  ``create_model`` arguments under ``"model_kwargs"``), ``model.safetensors`` as string metadata
  (:func:`settings_metadata`). :data:`SETTING_KEYS` rebuild the model (``model``, ``T``,
  ``num_classes``, ``in_channels``, ``gac``, ``temporal_attention``), :data:`DATA_SETTING_KEYS`
  describe its data (``dataset``, ``data_dir``, ``input_size``, ``image_size``, ``coding``,
  ``events``). :func:`read_settings` turns either record into typed settings,
  :func:`describe_settings` says them in words.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

__all__ = [
    "DATA_SETTING_KEYS",
    "SETTING_KEYS",
    "CheckpointError",
    "PathLike",
    "UnsafeCheckpointError",
    "atomic_write",
    "check_file",
    "describe_settings",
    "read_safetensors",
    "read_settings",
    "read_torch_file",
    "recorded_coding",
    "recorded_input_size",
    "save_safetensors",
    "settings_metadata",
]

PathLike = str | os.PathLike[str]


# ------------------------------------------------------------------------------------------------
# Writing files atomically
# ------------------------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse directory fsync
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file that then replaces it.

    On any exception the temporary file is removed and the previous ``path`` (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def save_safetensors(
    state_dict: Mapping[str, Tensor], path: PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write tensors (e.g. a model's ``state_dict``) to a ``.safetensors`` file atomically."""
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = st_save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})
    return atomic_write(path, lambda fh: fh.write(data))


# ------------------------------------------------------------------------------------------------
# Reading files safely
# ------------------------------------------------------------------------------------------------
class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, empty, a folder, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint asks to run code (import or call something) and was refused unread."""


def check_file(path: object) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names a non-empty file; what every reader checks first.

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: no file at ``path``.
        CheckpointError: a folder or an empty file.
    """
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
    path = check_file(path)
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


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a ``.safetensors`` file, on the CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a folder, an empty, truncated or corrupt file.
    """
    path = check_file(path)
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
    return _setting(path, key, value, {})  # image_size: an integer >= 1


def _setting(path: Path, key: str, value: object, choices: Mapping[str, Sequence[str]]) -> Any:
    """A recorded setting as its type (safetensors metadata holds strings only); a name that
    ``choices`` lists must be one of them."""
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
    if key in choices:
        if value not in choices[key]:
            raise CheckpointError(
                f"checkpoint {path}: recorded {key} {value!r} is not one of {list(choices[key])}"
            )
        return value
    if key == "temporal_attention":
        if not isinstance(value, str) or not value:
            raise CheckpointError(f"checkpoint {path}: recorded temporal_attention {value!r} is not a name")
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"checkpoint {path}: recorded {key} {value!r} is not an integer >= 1")
    return value


# ------------------------------------------------------------------------------------------------
# Run settings
# ------------------------------------------------------------------------------------------------
#: Run settings a checkpoint may record, in the order :func:`describe_settings` names them.
SETTING_KEYS: tuple[str, ...] = ("model", "T", "num_classes", "in_channels", "gac", "temporal_attention")
#: What a run of ``gac-coding train`` records about its data, so that ``gac-coding energy`` can
#: measure the model on the images it validated on and ``gac-coding export`` knows their size:
#: ``dataset`` (its name), ``data_dir`` (the folder, absolute), ``input_size`` (``(H, W)`` as fed
#: to the model), ``image_size`` (the data set's side, recorded by older ``last.pt`` files),
#: ``coding`` (a name of :data:`gac_coding.coding.CODINGS`; ``"poisson"`` in older runs reads as
#: ``"rate"``) and ``events`` (an event data set's frame options other than ``T``).
DATA_SETTING_KEYS: tuple[str, ...] = ("dataset", "data_dir", "input_size", "image_size", "coding", "events")


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


def read_settings(
    path: PathLike, recorded: Mapping[str, Any], *, choices: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """The run settings of a checkpoint's record, each as its type (those present).

    Args:
        path: the file the record came from (named in errors).
        recorded: a torch file's ``"config"`` (the run's create_model arguments under
            ``"model_kwargs"``) or a ``.safetensors`` file's metadata (strings).
        choices: settings whose value must be one of a few names, e.g.
            ``{"temporal_attention": ("mlp", "conv")}``.

    Raises:
        CheckpointError: a recorded setting that is not valid.

    Example:
        >>> read_settings("model.safetensors", {"model": "msresnet_tiny", "T": "4", "gac": "True",
        ...                                     "input_size": "[8, 8]", "epoch": "3"})
        {'model': 'msresnet_tiny', 'T': 4, 'gac': True, 'input_size': (8, 8)}
    """
    path = Path(path)
    choices = dict(choices or {})
    extra = recorded.get("model_kwargs")  # train's create_model arguments, e.g. temporal_attention
    if isinstance(extra, Mapping) and "temporal_attention" in extra:
        recorded = {"temporal_attention": extra["temporal_attention"], **recorded}
    settings = {k: _setting(path, k, recorded[k], choices) for k in SETTING_KEYS if k in recorded}
    # about the data: a run without a data folder (digits) records data_dir=None
    settings.update(
        {k: _setting(path, k, recorded[k], choices) for k in DATA_SETTING_KEYS if recorded.get(k) is not None}
    )
    coding = recorded_coding(settings)
    if coding is not None:
        settings["coding"] = coding
    return settings


def settings_metadata(config: Mapping[str, Any], *, epoch: int) -> dict[str, str]:
    """The metadata of a run's ``model.safetensors`` (strings only) from the run's ``config`` (what
    ``last.pt`` records): what rebuilds the model (model, ``T``, classes, channels, ``gac``, the
    temporal attention) and its data (data set, folder, input size, coding, frame options), as
    :func:`read_settings` reads them back.

    Example:
        >>> settings_metadata({"model": "msresnet_tiny", "T": 2, "num_classes": 10, "gac": True,
        ...                    "in_channels": 1, "dataset": "digits", "coding": "gac",
        ...                    "input_size": [8, 8], "model_kwargs": {}, "data_dir": None,
        ...                    "events": {}}, epoch=1)["input_size"]
        '[8, 8]'
    """
    meta: dict[str, Any] = {
        "model": config["model"],
        "T": config["T"],
        "num_classes": config["num_classes"],
        "gac": config["gac"],
        "in_channels": config["in_channels"],
        "epoch": epoch,
        "dataset": config["dataset"],
        "coding": config["coding"],
        "input_size": json.dumps(list(config["input_size"])),
    }
    model_kwargs = config.get("model_kwargs") or {}
    if "temporal_attention" in model_kwargs:  # needed to rebuild the model
        meta["temporal_attention"] = model_kwargs["temporal_attention"]
    if config.get("data_dir") is not None:
        meta["data_dir"] = config["data_dir"]
    if config.get("events"):
        meta["events"] = json.dumps(config["events"], sort_keys=True)
    return {k: str(v) for k, v in meta.items()}


def recorded_input_size(settings: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` that read settings give directly: the ``input_size`` a run records, else the
    ``image_size`` of older ``last.pt`` files; ``None`` when neither is there.

    Example:
        >>> recorded_input_size({"input_size": (8, 8)}), recorded_input_size({"image_size": 224})
        ((8, 8), (224, 224))
    """
    if "input_size" in settings:
        height, width = settings["input_size"]
        return (int(height), int(width))
    if "image_size" in settings:
        return (int(settings["image_size"]), int(settings["image_size"]))
    return None
