"""The folder of a training run: what marks it, checking it before a run starts or resumes, and the
files every epoch writes into it (``metrics.jsonl``, ``last.pt``, ``best.pt``, ``model.safetensors``,
each atomically)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from ..io import atomic_write, save_safetensors
from .checkpoint import append_jsonl, load_checkpoint, save_checkpoint
from .config import TrainConfig, saved_coding

__all__ = ["CHECKPOINT_FORMAT", "RUN_FILES", "prepare_out", "truncate_metrics", "write_epoch_files"]

#: Files that mark a folder as holding a training run.
RUN_FILES: tuple[str, ...] = ("last.pt", "best.pt", "metrics.jsonl", "model.safetensors")
CHECKPOINT_FORMAT = "gac-coding/train-checkpoint-v1"


def prepare_out(config: TrainConfig) -> dict[str, Any] | None:
    """Check ``out`` (rank 0); load and check ``last.pt`` when resuming. Returns the checkpoint.

    A new run's folder is not made here but with its first files (after the first epoch), so that
    a run that fails before (a missing data folder, a bad option) leaves nothing behind; whether it
    can be made is checked here, before any data is read."""
    if config.out is None:
        return None
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder, got an existing file {out}")
    present = [f for f in RUN_FILES if (out / f).exists()]
    if not config.resume:
        if present:
            raise ValueError(
                f"out: {out} already holds another run's files ({', '.join(present)}); pass "
                "--resume to continue that run, or choose an empty --out folder"
            )
        _check_creatable(out)
        return None
    last = out / "last.pt"
    if not last.exists():  # a folder in its place: the shared reader says so
        raise ValueError(f"resume: expected {last} to continue from, but it does not exist")
    ckpt = load_checkpoint(last)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"resume: {last} is not a gac-coding training checkpoint "
            f"(format {ckpt.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    saved = dict(ckpt["config"], coding=saved_coding(ckpt["config"]))
    for key, mine in (("model", config.model), ("T", config.T), ("coding", config.coding)):
        if saved.get(key) != mine:
            raise ValueError(
                f"{key}: the checkpoint being resumed ({last}) was trained with {key}="
                f"{saved.get(key)!r}, got {key}={mine!r}"
            )
    return ckpt


def _check_creatable(out: Path) -> None:
    """Raise ``ValueError`` unless ``out`` is a writable folder or can be made one."""
    parent = out.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"out: cannot make the folder {out}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"out: cannot write into {parent} (permission denied), so not {out} either")


def truncate_metrics(path: Path, upto_epoch: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``upto_epoch`` exactly as they were."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("epoch", 0) <= upto_epoch]
    if len(kept) != len(lines):
        atomic_write(path, lambda fh: fh.write("".join(kept).encode("utf-8")))


def write_epoch_files(
    out: Path,
    state: Mapping[str, Any],
    record: Mapping[str, Any],
    improved: bool,
    weights: Mapping[str, Tensor],
    metadata: Mapping[str, str],
) -> None:
    """Append the epoch's ``record`` to ``metrics.jsonl``, write ``state`` to ``last.pt`` (and to
    ``best.pt`` when the test accuracy ``improved``) and ``weights`` with ``metadata`` to
    ``model.safetensors``. The folder is made here, with the first files."""
    out.mkdir(parents=True, exist_ok=True)
    append_jsonl(out / "metrics.jsonl", record)
    save_checkpoint(state, out / "last.pt")
    if improved:
        save_checkpoint(state, out / "best.pt")
    save_safetensors(weights, out / "model.safetensors", metadata=metadata)
