"""Training: data sets, losses, CutMix, safe checkpoints, the loop, the demo.

Needs the ``train`` extra (``pip install "gac-coding[train]"``): torchvision, scikit-learn,
matplotlib, tqdm and safetensors. Nothing here downloads anything.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

# Names are imported from their submodule on first use (PEP 562), so that importing one submodule
# (e.g. ``gac_coding.train.data`` for the CLI's ``--dataset`` choices) does not import the rest
# and ``gac-coding --help`` runs without the train extra.
_SOURCES = {
    "MixedTarget": ".augment", "cutmix": ".augment",
    "CheckpointError": ".checkpoint", "UnsafeCheckpointError": ".checkpoint",
    "atomic_write": ".checkpoint", "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint", "save_safetensors": ".checkpoint",
    "CODINGS": ".config", "TrainConfig": ".config",
    "DATASETS": ".data", "build_datasets": ".data", "load_digits_split": ".data",
    "DataFolderError": ".spec", "DataSpec": ".spec",
    "RUN_FILES": ".rundir",
    "FitResult": ".engine", "fit": ".engine", "seed_everything": ".engine",
    "LOSSES": ".losses", "spike_loss": ".losses",
}  # fmt: skip

__getattr__, __dir__ = lazy_attributes(__name__, _SOURCES)

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
