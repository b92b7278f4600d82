"""Training: data sets, losses, CutMix, safe checkpoints, the loop, the demo.

Needs the ``train`` extra (``pip install "gac-coding[train]"``): torchvision, scikit-learn,
matplotlib, tqdm and safetensors. Nothing here downloads anything.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._deprecated import moved_attribute

# Names are imported from their submodule on first use (PEP 562), so that importing one submodule
# (e.g. ``gac_coding.train.data`` for the CLI's ``--dataset`` choices) does not import the rest
# and ``gac-coding --help`` runs without the train extra.
_SOURCES = {
    "MixedTarget": "augment", "cutmix": "augment",
    "CheckpointError": "checkpoint", "UnsafeCheckpointError": "checkpoint",
    "atomic_write": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint", "save_safetensors": "checkpoint",
    "DATASETS": "data", "DataFolderError": "data", "DataSpec": "data",
    "build_datasets": "data", "load_digits_split": "data",
    "CODINGS": "engine", "RUN_FILES": "engine", "FitResult": "engine", "TrainConfig": "engine",
    "fit": "engine", "seed_everything": "engine",
    "LOSSES": "losses", "spike_loss": "losses",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        return moved_attribute(__name__, name)  # poisson_encode, now gac_coding.coding.rate_encode
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CODINGS",
    "DATASETS",
    "LOSSES",
    "RUN_FILES",
    "CheckpointError",
    "DataFolderError",
    "DataSpec",
    "FitResult",
    "MixedTarget",
    "TrainConfig",
    "UnsafeCheckpointError",
    "atomic_write",
    "build_datasets",
    "cutmix",
    "fit",
    "load_checkpoint",
    "load_digits_split",
    "save_checkpoint",
    "save_safetensors",
    "seed_everything",
    "spike_loss",
]
