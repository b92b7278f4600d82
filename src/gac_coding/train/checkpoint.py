"""Safe checkpoints: atomic writes, ``weights_only`` loads, random states, metrics lines.

* Every file is written atomically (:func:`gac_coding.io.atomic_write`: a temporary file in the
  destination folder, ``fsync``-ed, then moved over the destination). A crash mid-save leaves the
  previous file intact.
* Checkpoints are loaded with ``torch.load(..., weights_only=True)``: tensors, numbers, strings and
  plain containers only. A file that asks to import or call anything is refused with
  :class:`UnsafeCheckpointError` before any of its code can run. The reader is
  :func:`gac_coding.io.read_torch_file`, shared with ``gac-coding energy`` and the models.
* Random states (python, numpy, torch CPU, every CUDA device, and a data-order generator) are
  stored as tensors and plain tuples so that they too pass the ``weights_only`` loader.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..io import (
    CheckpointError,
    PathLike,
    UnsafeCheckpointError,
    atomic_write,
    read_torch_file,
    save_safetensors,
)

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "append_jsonl",
    "atomic_write",
    "capture_rng_state",
    "load_checkpoint",
    "read_jsonl",
    "restore_rng_state",
    "save_checkpoint",
    "save_safetensors",
]


def save_checkpoint(obj: Mapping[str, Any], path: PathLike) -> Path:
    """``torch.save`` a checkpoint dict atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: torch.save(dict(obj), fh))


def load_checkpoint(path: PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (the reader every command shares).

    The same function as :func:`gac_coding.io.read_torch_file`.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafeCheckpointError: the file would import or call code; nothing of it ran.
        CheckpointError: the file is a folder, empty, truncated, or not a torch checkpoint dict.

    Example:
        >>> import tempfile, torch
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = save_checkpoint({"epoch": 2, "w": torch.ones(3)}, f"{d}/last.pt")
        ...     load_checkpoint(path)["epoch"]
        2
    """
    return read_torch_file(path, map_location)


# ------------------------------------------------------------------------------ random states
def capture_rng_state(data_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state of this process, in a form that ``weights_only`` loading accepts."""
    import numpy as np  # the train extra's; imported here so that the CLI starts without it

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": (version, list(internal), gauss),
        "numpy": (
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": data_generator.get_state() if data_generator is not None else None,
    }
    return state


def restore_rng_state(state: Mapping[str, Any], data_generator: torch.Generator | None = None) -> None:
    """Restore the states captured by :func:`capture_rng_state`."""
    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            for i, s in enumerate(cuda_states[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)
    if data_generator is not None and state.get("data") is not None:
        data_generator.set_state(state["data"])


# ---------------------------------------------------------------------------------- metrics
def append_jsonl(path: PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON line to ``path`` and sync it to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(dict(record), sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file (empty list when absent); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
