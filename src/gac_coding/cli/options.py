"""The options that several subcommands share, written once: how the input is coded (``--coding``,
and the deprecated ``--no-gac``), and the options of a command that builds a registered model and
may load its weights (:func:`add_model_options`, read back with :func:`model_settings`).

Defaults come from the checkpoint's recorded run settings (:mod:`gac_coding.io`), else from what
the model says it is made for (:func:`gac_coding.models.model_info`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._deprecated import DEPRECATED

__all__ = [
    "CODING_HELP",
    "add_coding_options",
    "add_model_options",
    "build_model",
    "coding_option",
    "is_rank0",
    "model_coding_kwargs",
    "model_settings",
    "recorded_input_size",
    "resolve_input_size",
]

#: What ``--coding`` chooses, for the help of every subcommand that takes it.
CODING_HELP = (
    "how images reach the spiking backbone: gac (the GAC encoder), direct (the stem's output at "
    "every step), rate (Bernoulli spikes of the pixel intensities; poisson: its deprecated name) "
    "or latency (one spike per pixel, brighter earlier)"
)


def is_rank0() -> bool:
    """Whether this process prints (rank 0 under torchrun, or a plain run)."""
    return os.environ.get("RANK", "0") == "0"


def add_coding_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``--coding`` (choices: :data:`gac_coding.coding.CODINGS`, and ``poisson``, deprecated) and
    the deprecated ``--no-gac``; read them with :func:`coding_option`. ``default`` says in words
    what an absent ``--coding`` means."""
    from ..coding import CODINGS

    parser.add_argument(
        "--coding", choices=[*CODINGS, "poisson"], default=None, help=f"{CODING_HELP} ({default})"
    )
    parser.add_argument("--no-gac", action="store_true", help="deprecated: --coding direct")


def coding_option(args: argparse.Namespace) -> str | None:
    """``--coding`` as given (``None`` when absent), with the deprecated ``--no-gac`` read as
    ``--coding direct`` and ``--coding poisson`` as ``--coding rate``, after one warning line on
    stderr each."""
    command = getattr(args, "command", None)
    if args.coding == "poisson":
        if is_rank0():
            print(
                f"gac-coding{f' {command}' if command else ''}: --coding poisson is deprecated; "
                "use --coding rate",
                file=sys.stderr,
                flush=True,
            )
        args.coding = "rate"
    if not getattr(args, "no_gac", False):
        return args.coding
    if args.coding not in (None, "direct"):
        raise ValueError(
            f"--no-gac: means --coding direct, which contradicts --coding {args.coding}; give --coding alone"
        )
    row = DEPRECATED["gac-coding --no-gac"]
    new, removed_in = row.new, row.removed_in
    if is_rank0():
        print(
            f"gac-coding{f' {command}' if command else ''}: --no-gac is deprecated; use {new} "
            f"(it goes in gac-coding {removed_in})",
            file=sys.stderr,
            flush=True,
        )
    return "direct"


def model_coding_kwargs(coding: str) -> dict[str, Any]:
    """The :func:`~gac_coding.models.create_model` arguments that give a model for ``coding``."""
    return {"coding": coding}


def add_model_options(parser: argparse.ArgumentParser, *, checkpoint_required: bool = False) -> None:
    """``--model``, ``--checkpoint``, ``--T``, ``--num-classes``, ``--in-channels``, ``--coding``
    (``--no-gac``), ``--temporal-attention``: the options of a subcommand that builds a registered
    model and may load its weights (read the values with :func:`model_settings`)."""
    parser.add_argument(
        "--model",
        default=None,
        help="registered model name, e.g. msresnet18_cifar (default: the checkpoint's)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        required=checkpoint_required,
        help="weights: model.safetensors or last.pt/best.pt of gac-coding train (their model, T, "
        "classes, channels and coding are used), a saved state dict, or the authors' .pth",
    )
    parser.add_argument(
        "--T", type=int, default=None, help="time steps (default: the checkpoint's, else the model's)"
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="head size (default: the checkpoint's, else the model's)",
    )
    parser.add_argument(
        "--in-channels",
        type=int,
        default=None,
        help="image channels (default: the checkpoint's, else the model's: 2 for the event models, 3 "
        "for the others)",
    )
    add_coding_options(parser, "default: the checkpoint's, else gac")
    parser.add_argument(
        "--temporal-attention",
        choices=("mlp", "conv"),
        default=None,
        help="GAC's temporal attention (default: the checkpoint's, else mlp)",
    )


def _recorded_coding(recorded: dict[str, Any]) -> str | None:
    """The coding of a checkpoint's settings (:func:`gac_coding.io.recorded_coding`); files that
    record only ``gac`` read as gac or direct."""
    from ..io import recorded_coding

    if "coding" in recorded:
        return recorded_coding(recorded)
    if "gac" in recorded:
        return "gac" if recorded["gac"] else "direct"
    return None


def model_settings(args: argparse.Namespace, recorded: dict[str, Any], path: str | None) -> dict[str, Any]:
    """``model``, ``T``, ``num_classes``, ``in_channels``, ``coding``, ``gac`` and
    ``temporal_attention`` from the options of :func:`add_model_options`, else from the
    checkpoint's ``recorded`` settings, else from the model's :class:`~gac_coding.models.ModelInfo`;
    an option that disagrees with the checkpoint raises a ``ValueError`` saying what the file
    holds, and a coding the model does not take one naming those it does."""
    from ..io import describe_settings
    from ..models import model_info

    asked = {
        "model": args.model,
        "T": args.T,
        "num_classes": args.num_classes,
        "in_channels": args.in_channels,
        "coding": coding_option(args),
        "temporal_attention": getattr(args, "temporal_attention", None),
    }
    for key in ("T", "num_classes", "in_channels"):
        if asked[key] is not None and asked[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')}: expected an integer >= 1, got {asked[key]}")
    held = dict(recorded)
    if _recorded_coding(recorded) is not None:
        held["coding"] = _recorded_coding(recorded)
    settings: dict[str, Any] = {}
    for key, value in asked.items():
        option = f"--{key.replace('_', '-')}"
        if key == "coding" and getattr(args, "no_gac", False):
            option, value_text = "--no-gac", ""
        else:
            value_text = f" {value}"
        if value is not None and key in held and held[key] != value:
            held_text = describe_settings(recorded)
            raise ValueError(f"{option}: the checkpoint {path} holds {held_text}, got {option}{value_text}")
        settings[key] = value if value is not None else held.get(key)
    if settings["model"] is None:
        raise ValueError("--model: expected a model name (required without a --checkpoint that records one)")
    info = model_info(settings["model"])
    settings["coding"] = settings["coding"] or "gac"
    if settings["coding"] not in info.codings:
        kind = {"image": "images", "events": "event frames"}.get(info.input_kind, info.input_kind)
        raise ValueError(
            f"--coding: the model {settings['model']!r} takes {kind} coded as "
            f"{' or '.join(info.codings)}, got {settings['coding']}"
        )
    settings["gac"] = settings["coding"] == "gac"
    settings["in_channels"] = settings["in_channels"] or info.in_channels
    return settings


def build_model(settings: dict[str, Any]) -> Any:
    """The registered model that :func:`model_settings` describes (``temporal_attention`` passed on
    when set)."""
    from ..models import create_model

    extra = (
        {}
        if settings.get("temporal_attention") is None
        else {"temporal_attention": settings["temporal_attention"]}
    )
    return create_model(
        settings["model"],
        num_classes=settings["num_classes"],
        T=settings["T"],
        in_channels=settings["in_channels"],
        **model_coding_kwargs(settings["coding"]),
        **extra,
    )


def recorded_input_size(recorded: dict[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` that a checkpoint's recorded settings give, else ``None``.

    In order: the ``input_size`` a run records, the ``image_size`` of older ``last.pt`` files
    (:func:`gac_coding.io.recorded_input_size`), the known size of the data set the run names
    (older ``model.safetensors`` files name none).
    """
    from ..io import recorded_input_size as recorded_size
    from ..train.data import DATASETS, dataset_input_size

    found = recorded_size(recorded)
    if found is not None:
        return found
    dataset = recorded.get("dataset")
    if dataset in DATASETS:
        return dataset_input_size(dataset, events=recorded.get("events"))
    return None


def resolve_input_size(
    asked: Sequence[int] | None, recorded: dict[str, Any], path: str | None, model: str
) -> tuple[int, int]:
    """``(H, W)`` of the images a command feeds a model (``energy``'s random input,
    ``export``'s graph): ``--input-size`` when given, else the checkpoint's
    (:func:`recorded_input_size`), else without a checkpoint the size the model is made for
    (:attr:`gac_coding.models.ModelInfo.input_size`). A checkpoint that records none raises a
    ``ValueError`` asking for ``--input-size``."""
    from ..models import model_info

    if asked is not None:
        if len(asked) != 2 or min(asked) < 1:
            raise ValueError(f"--input-size: expected two integers >= 1, got {tuple(asked)}")
        return (int(asked[0]), int(asked[1]))
    if path is None:
        return model_info(model).input_size
    found = recorded_input_size(recorded)
    if found is None:
        raise ValueError(
            f"--input-size: the checkpoint {path} records no input size and no data set (a bare "
            f"state dict, the authors' file or an older model.safetensors); give --input-size H W, "
            f"the size of the images the model was trained on"
        )
    return found
