"""Training: data sets, losses, CutMix, Poisson coding, safe checkpoints, the loop, the demo.

Needs the ``train`` extra (``pip install "gac-coding[train]"``): torchvision, scikit-learn,
matplotlib, tqdm and safetensors. Nothing here downloads anything.
"""

from __future__ import annotations

from .augment import MixedTarget, cutmix, poisson_encode
from .checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
    save_safetensors,
)
from .data import DATASETS, DataFolderError, DataSpec, build_datasets, load_digits_split
from .engine import CODINGS, RUN_FILES, FitResult, TrainConfig, fit, seed_everything
from .losses import LOSSES, spike_loss

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
    "poisson_encode",
    "save_checkpoint",
    "save_safetensors",
    "seed_everything",
    "spike_loss",
]
