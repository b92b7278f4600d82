"""Hub-style model folders: :func:`save_pretrained`, :func:`from_pretrained`, :func:`push_to_hub`.

A folder written by :func:`save_pretrained` holds three files, the layout of the Hugging Face Hub:

* ``model.safetensors``: the weights (``state_dict``), read without executing anything;
* ``config.json``: what rebuilds the model through :func:`~gac_coding.models.create_model` (the
  registered name, ``num_classes``, ``T``, ``coding`` and every other ``create_model`` argument under
  ``"kwargs"``), and what it is made for (input channels, input size, input kind, recipe, temporal
  attention, dtype), plain JSON;
* ``README.md``: a model card (how to load it, the settings, the metrics and energy report given).

Only models built by :func:`~gac_coding.models.create_model` (any registered builder: the paper's
models, or a wrapped net whose builder you registered) can be saved: ``create_model`` records the
name and arguments that built them. Before anything is written the config is checked to rebuild
the same weights (a model built on the ``meta`` device, compared key by key). Every file is written
atomically (:func:`gac_coding.io.atomic_write`); a new folder appears whole or not at all.

:func:`from_pretrained` takes a local folder, or a Hub repository id when ``huggingface_hub`` is
installed (``pip install "gac-coding[hub]"``). A folder with a file missing, a config naming an
unknown model, or weights that do not fit the model the config describes raises one line naming
the file and what to do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn

from .._version import __version__
from ..io import PathLike, _umask, atomic_write, read_safetensors
from ._card import model_card
from .registry import create_model, list_models, model_info

__all__ = [
    "CONFIG_NAME",
    "CARD_NAME",
    "FORMAT",
    "WEIGHTS_NAME",
    "PretrainedConfigError",
    "PretrainedMixin",
    "from_pretrained",
    "pretrained_config",
    "push_to_hub",
    "save_pretrained",
]

#: The three files of a folder.
WEIGHTS_NAME, CONFIG_NAME, CARD_NAME = "model.safetensors", "config.json", "README.md"
#: ``config.json``'s ``"format"`` entry (with ``"format_version"`` 1).
FORMAT = "gac-coding-pretrained"
_BUILD_ATTR = "_gac_coding_build"  # set by create_model: {"model": name, **its arguments}
_HUB_EXTRA = 'pip install "gac-coding[hub]"'


class PretrainedConfigError(ValueError):
    """A folder's ``config.json`` is not valid, names an unknown model, or does not match its weights."""


def _json_value(name: str, value: Any) -> Any:
    """``value`` if JSON writes and reads it back unchanged, else ``ValueError`` naming ``name``."""
    try:
        same = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ValueError(
            f"model: the create_model argument {name}={value!r} cannot be written to {CONFIG_NAME} "
            "(JSON numbers, strings, booleans, lists and dicts only); build the model without it"
        )
    return value


def _build_record(model: nn.Module) -> dict[str, Any]:
    record = getattr(model, _BUILD_ATTR, None)
    if not isinstance(record, Mapping):
        raise TypeError(
            f"model: save_pretrained needs a model built by gac_coding.models.create_model (it records "
            f"the name and arguments that rebuild it); got a {type(model).__name__} built otherwise: "
            "register its builder with register_model and build it with create_model"
        )
    return dict(record)


def _weights_dtype(model: nn.Module) -> str:
    dtypes = {t.dtype for t in model.state_dict().values() if t.is_floating_point()}
    if len(dtypes) > 1:
        raise ValueError(f"model: its weights mix dtypes {sorted(map(str, dtypes))}; convert it to one first")
    return str(next(iter(dtypes), torch.float32)).removeprefix("torch.")


def _in_channels(model: nn.Module, default: int) -> int:
    """The input channels of the model (its own, else its encoder's, e.g. a wrapped net's)."""
    for owner in (model, getattr(model, "encoder", None)):
        value = getattr(owner, "in_channels", None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return int(default)


def pretrained_config(model: nn.Module, *, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ``config.json`` that :func:`save_pretrained` writes for ``model`` (a dict).

    ``T`` and ``num_classes`` are the model's own (after a ``set_timesteps``, the new ``T``);
    ``input_size`` defaults to the registered model's (:func:`~gac_coding.models.model_info`).

    Example:
        >>> from gac_coding.models import create_model
        >>> from gac_coding.models.pretrained import pretrained_config
        >>> c = pretrained_config(create_model("msresnet_tiny", T=2, in_channels=1), input_size=(8, 8))
        >>> c["model"], c["T"], c["coding"], c["kwargs"], c["input_size"], c["temporal_attention"]
        ('msresnet_tiny', 2, 'gac', {'in_channels': 1}, [8, 8], 'mlp')
    """
    record = _build_record(model)
    name = record.pop("model")
    info = model_info(name)
    built = {key: record.pop(key, None) for key in ("T", "num_classes", "coding")}
    T = getattr(model, "T", built["T"])  # the model's own: after set_timesteps, the new T
    num_classes = getattr(model, "num_classes", built["num_classes"])
    coding = getattr(model, "coding", built["coding"] or "gac")
    kwargs = {key: _json_value(key, value) for key, value in sorted(record.items())}
    gate = getattr(getattr(model, "encoder", None), "gate", None)
    size = info.input_size if input_size is None else tuple(int(v) for v in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"input_size: expected (H, W) of positive ints, got {input_size!r}")
    return {
        "format": FORMAT,
        "format_version": 1,
        "gac_coding_version": __version__,
        "model": name,
        "num_classes": None if num_classes is None else int(num_classes),
        "T": None if T is None else int(T),
        "coding": coding,
        "kwargs": kwargs,
        "in_channels": _in_channels(model, kwargs.get("in_channels", info.in_channels)),
        "input_size": list(size),
        "input_kind": info.input_kind,
        "recipe": getattr(model, "recipe", info.recipe),
        "temporal_attention": getattr(gate, "temporal_attention", None),
        "dtype": _weights_dtype(model),
    }


def _rebuild(config: Mapping[str, Any], where: Path, device: str | torch.device | None = None) -> nn.Module:
    """The model ``config`` describes (errors name ``where``, the config file)."""
    name = config["model"]
    if name not in list_models():
        raise PretrainedConfigError(
            f"{where}: model {name!r} is not registered (known: {', '.join(list_models())}); "
            "register its builder with gac_coding.models.register_model before loading, or fix 'model'"
        )
    args = {k: config[k] for k in ("num_classes", "T") if config.get(k) is not None}
    try:
        if device is not None:
            with torch.device(device):
                return create_model(name, coding=config["coding"], **args, **config["kwargs"])
        return create_model(name, coding=config["coding"], **args, **config["kwargs"])
    except (TypeError, ValueError) as exc:
        raise PretrainedConfigError(
            f"{where}: create_model({name!r}, ...) refuses the recorded arguments: "
            f"{' '.join(str(exc).split())}; fix {CONFIG_NAME} or save the model again"
        ) from None


def _check_fit(state: Mapping[str, Tensor], model: nn.Module, weights: Path, config: Path) -> None:
    """``state`` has the keys and shapes of ``model``'s, else one line naming both files."""
    ours = model.state_dict()
    fix = f"{config.name} does not describe these weights: fix {config} or save the folder again"
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    if missing or unexpected:
        which = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise PretrainedConfigError(
            f"{weights}: its keys differ from those of the model that {config.name} builds ({which}; "
            f"{len(missing)} missing, {len(unexpected)} unexpected); {fix}"
        )
    for key, mine in ours.items():
        value = state[key]
        if tuple(value.shape) != tuple(mine.shape):
            raise PretrainedConfigError(
                f"{weights}: {key!r} has shape {list(value.shape)}, but the model that {config.name} "
                f"builds has {list(mine.shape)} (another T, class or channel count?); {fix}"
            )


def _writer(data: bytes) -> Callable[[IO[bytes]], object]:
    return lambda fh: fh.write(data)


def _write_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` into ``folder``: a new folder is filled beside it and renamed into place
    (whole or not at all); into an existing one each file is replaced atomically."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"folder: {folder} is a file, expected a folder")
    if folder.is_dir():
        for name, data in files.items():
            atomic_write(folder / name, _writer(data))
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is private (0o700)
        for name, data in files.items():
            atomic_write(staging / name, _writer(data))
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_pretrained(
    model: nn.Module,
    folder: PathLike,
    *,
    input_size: tuple[int, int] | None = None,
    metrics: Mapping[str, Any] | None = None,
    energy: Any = None,
    description: str | None = None,
) -> Path:
    """Write ``model`` as a Hub-style folder: ``model.safetensors``, ``config.json``, ``README.md``.

    Args:
        model: a model built by :func:`~gac_coding.models.create_model`.
        folder: where to write (made if missing; files of the same names are replaced).
        input_size: ``(H, W)`` the model was trained on (default: the registered model's).
        metrics: numbers for the model card, e.g. ``{"val_acc": 0.91, "epochs": 2}``.
        energy: an energy report for the card (:func:`gac_coding.energy.estimate_energy`'s, or its text).
        description: a paragraph for the card (where the weights come from).

    Returns:
        the folder.

    Example:
        >>> import tempfile, torch
        >>> from gac_coding.models import create_model, from_pretrained
        >>> m = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1).eval()
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = m.save_pretrained(f"{d}/tiny", input_size=(8, 8), metrics={"val_acc": 0.5})
        ...     again = from_pretrained(f"{d}/tiny")
        >>> x = torch.rand(2, 1, 8, 8)
        >>> torch.equal(again(x), m(x))
        True
    """
    from safetensors.torch import save as st_save

    folder = Path(folder)
    config = pretrained_config(model, input_size=input_size)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    _check_fit(state, _rebuild(config, folder / CONFIG_NAME, device="meta"), folder / WEIGHTS_NAME,
               folder / CONFIG_NAME)  # fmt: skip
    files = {
        WEIGHTS_NAME: st_save(state, metadata={"format": "pt", "gac_coding": FORMAT}),
        CARD_NAME: model_card(config, metrics=metrics, energy=energy, description=description).encode(),
        CONFIG_NAME: (json.dumps(config, indent=2) + "\n").encode(),
    }
    _write_folder(folder, files)
    return folder


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _resolve(source: object, revision: str | None) -> Path:
    """A local folder for ``source``: itself, or a Hub repository's snapshot."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"folder_or_repo_id: expected a folder or a repository id, got {type(source).__name__}"
        )
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(
            f"{path}: is a file; from_pretrained takes the folder that holds {CONFIG_NAME}"
        )
    text = os.fspath(source)
    if not _REPO_ID.match(text) or text.count("/") != 1:
        raise FileNotFoundError(f"{path}: no such folder (nor a Hub repository id 'owner/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ImportError(
            f"from_pretrained: {text!r} is not a local folder; to download it from the Hugging Face "
            f"Hub install huggingface_hub: {_HUB_EXTRA}"
        ) from None
    return Path(snapshot_download(repo_id=text, revision=revision,
                                  allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]))  # fmt: skip


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing; a folder written by save_pretrained (or gac-coding convert) holds "
            f"{CONFIG_NAME}, {WEIGHTS_NAME} and {CARD_NAME}: write it again with model.save_pretrained"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PretrainedConfigError(
            f"{path}: not valid JSON ({exc}); write it again with save_pretrained"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise PretrainedConfigError(f'{path}: not a gac-coding config (expected "format": "{FORMAT}")')
    version = config.get("format_version")
    if version != 1:
        raise PretrainedConfigError(f"{path}: format_version {version!r} is not 1; upgrade gac-coding")
    for key, kind in (("model", str), ("coding", str), ("kwargs", dict), ("dtype", str)):
        if not isinstance(config.get(key), kind):
            raise PretrainedConfigError(f"{path}: {key!r} must be a {kind.__name__}, got {config.get(key)!r}")
    for key in ("num_classes", "T"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PretrainedConfigError(f"{path}: {key!r} must be an integer >= 1 or null, got {value!r}")
    if not isinstance(getattr(torch, config["dtype"], None), torch.dtype):
        raise PretrainedConfigError(f"{path}: 'dtype' {config['dtype']!r} is not a torch dtype")
    return config


def from_pretrained(
    folder_or_repo_id: PathLike, *, revision: str | None = None, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained` (or ``gac-coding convert``), in eval mode.

    Args:
        folder_or_repo_id: a local folder, or a Hugging Face Hub repository id ``"owner/name"``
            (downloaded with ``huggingface_hub.snapshot_download``: ``pip install "gac-coding[hub]"``).
        revision: the Hub revision (branch, tag or commit); ignored for a local folder.
        map_location: the device of the returned model.

    Nothing of the files is executed: ``config.json`` is parsed as JSON and the weights are read
    with safetensors. A missing file, an unknown model or weights that do not fit the config
    raise one line naming the file.

    Example:
        >>> import tempfile
        >>> from gac_coding.models import create_model, from_pretrained
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = create_model("msresnet_tiny", num_classes=3, T=2).save_pretrained(d)
        ...     m = from_pretrained(d)
        >>> type(m).__name__, m.T, m.num_classes, m.training
        ('MSResNet', 2, 3, False)
    """
    folder = _resolve(folder_or_repo_id, revision)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    config = _read_config(config_path)
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"{weights_path}: missing; the folder has {CONFIG_NAME} but no weights: write it again "
            "with model.save_pretrained"
        )
    state, _ = read_safetensors(weights_path)
    model = _rebuild(config, config_path)
    _check_fit(state, model, weights_path, config_path)
    model.to(dtype=getattr(torch, config["dtype"]))
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload gac-coding model",
    **card: Any,
) -> str:
    """Upload ``model`` to the Hugging Face Hub as the folder :func:`save_pretrained` writes.

    Needs ``huggingface_hub`` (``pip install "gac-coding[hub]"``); makes the repository if it
    is missing (``HfApi.create_repo(exist_ok=True)``) and uploads the three files in one commit
    (``HfApi.upload_folder``). ``card`` takes :func:`save_pretrained`'s ``input_size``,
    ``metrics``, ``energy`` and ``description``. Returns the commit's URL.
    """
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id: expected 'owner/name', got {repo_id!r}")
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError(f"push_to_hub needs huggingface_hub: {_HUB_EXTRA}") from None
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model, Path(tmp) / "model", **card)
        api = HfApi(token=token)
        api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    return str(getattr(info, "commit_url", info))


class PretrainedMixin:
    """``save_pretrained`` and ``push_to_hub`` as methods (the paper's models have them).

    The model must have been built by :func:`~gac_coding.models.create_model`; load it again
    with :func:`from_pretrained`.
    """

    def save_pretrained(self, folder: PathLike, **card: Any) -> Path:
        """:func:`gac_coding.models.pretrained.save_pretrained` of this model."""
        if not isinstance(self, nn.Module):  # pragma: no cover - mixed into modules only
            raise TypeError("PretrainedMixin: mix it into an nn.Module")
        return save_pretrained(self, folder, **card)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """:func:`gac_coding.models.pretrained.push_to_hub` of this model."""
        if not isinstance(self, nn.Module):  # pragma: no cover - mixed into modules only
            raise TypeError("PretrainedMixin: mix it into an nn.Module")
        return push_to_hub(self, repo_id, **kwargs)
