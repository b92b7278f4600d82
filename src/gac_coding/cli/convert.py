"""``gac-coding convert``: the authors' released checkpoint as a Hub-style folder.

Reads a checkpoint in the authors' layout (``torch.load(..., weights_only=True)``; their CIFAR-100
``T=6`` release, or any file of their CIFAR or ImageNet layout), loads it into the registered model
with :func:`~gac_coding.models.load_reference_checkpoint` and writes the folder that
:func:`~gac_coding.models.from_pretrained` loads (:func:`~gac_coding.models.save_pretrained`).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

__all__ = ["configure_convert_parser", "reference_settings", "run_convert_command"]

_TA_KEY = "encoding.TA.sharedMLP.0.weight"


def configure_convert_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding convert``."""
    parser.add_argument(
        "--checkpoint", required=True, help="the authors' checkpoint (.pth), e.g. CIFAR100_T=6"
    )
    parser.add_argument(
        "--out", required=True, help="folder to write: model.safetensors, config.json, README.md"
    )
    parser.add_argument(
        "--model",
        default="msresnet18_cifar",
        help="registered model of the checkpoint's layout (default msresnet18_cifar)",
    )
    parser.add_argument("--T", type=int, default=None, help="time steps (default: read from the checkpoint)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classes (default: read from the checkpoint's head)")  # fmt: skip
    parser.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
        help="image size recorded in config.json (default: the model's, 32x32 for CIFAR)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the files of an existing --out folder"
    )


def reference_settings(state: dict[str, Any]) -> dict[str, Any]:
    """``T``, ``num_classes``, ``in_channels`` and ``coding`` read from a checkpoint in the authors'
    layout (the keys without their ``module.`` prefix); what the file does not say is left out."""
    found: dict[str, Any] = {"coding": "gac" if any(k.startswith("encoding.") for k in state) else "direct"}
    ta = state.get(_TA_KEY)
    if ta is not None and ta.dim() >= 2:
        found["T"] = int(ta.shape[1])
    head = state.get("fc1.weight", state.get("fc1_s.layer.module.weight"))
    if head is not None and head.dim() == 2:
        found["num_classes"] = int(head.shape[0])
    stem = state.get("conv1.weight", state.get("conv1.0.weight"))
    if stem is not None and stem.dim() == 4:
        found["in_channels"] = int(stem.shape[1])
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_convert_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding convert``: read, check, load and write; prints what it wrote.

    An ``--out`` folder that already holds files is refused unless ``--overwrite`` (nothing is
    read before that check). ``T`` and the class count come from the checkpoint unless given; a
    given value the checkpoint contradicts is refused in one line.
    """
    from ..models import create_model, load_reference_checkpoint, model_info, save_pretrained
    from ..models.reference import read_reference_state_dict

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise FileExistsError(
            f"--out: {out} already exists and is not empty; pass --overwrite to replace its files"
        )
    model_info(args.model)  # an unknown name fails here, before the file is read
    path = Path(args.checkpoint)
    state = read_reference_state_dict(path)
    settings = reference_settings(state)
    T = args.T if args.T is not None else settings.get("T")
    num_classes = args.num_classes if args.num_classes is not None else settings.get("num_classes")
    in_channels = settings.get("in_channels", model_info(args.model).in_channels)
    model = create_model(args.model, num_classes, T, settings["coding"], in_channels=in_channels)
    load_reference_checkpoint(model, state)
    description = (
        f"Converted by `gac-coding convert` from the authors' checkpoint `{path.name}` "
        f"(SHA-256 `{_sha256(path)}`), loaded with `load_reference_checkpoint`."
    )
    size = None if args.input_size is None else tuple(args.input_size)
    save_pretrained(model.eval(), out, input_size=size, description=description)
    print(f"{args.model} (T={model.T}, {model.num_classes} classes, {model.coding} coding) from "
          f"{path} -> {out}: model.safetensors, config.json, README.md")  # fmt: skip
    return 0
