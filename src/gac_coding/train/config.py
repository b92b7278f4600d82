"""What a training run is: :class:`TrainConfig` (the fields mirror ``gac-coding train``'s options),
its checks, and the part of it that the run's checkpoints record (:meth:`TrainConfig.run_config`;
the format the readers rely on is :mod:`gac_coding.io`'s)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import recorded_coding
from ..ops import backends
from .data import DATASETS
from .events import EVENT_DATASETS, FrameOptions
from .losses import LOSSES

__all__ = ["CODINGS", "TrainConfig", "saved_coding"]


#: How images reach the spiking backbone: ``"gac"``, the static image through the model's GAC
#: encoder; ``"direct"``, the static image at every step (the model built without GAC);
#: ``"poisson"``, Bernoulli spike trains ``[T, B, C, H, W]`` drawn from the pixel intensities (the
#: model built without GAC).
CODINGS: tuple[str, ...] = ("direct", "poisson", "gac")


@dataclass
class TrainConfig:
    """Everything one training run needs; the fields mirror ``gac-coding train``'s options."""

    model: str
    dataset: str = "digits"
    data_dir: str | None = None
    T: int = 4
    epochs: int = 1
    stop_after: int | None = None
    batch_size: int = 64
    lr: float = 0.1
    out: str | None = None
    resume: bool = False
    amp: bool = False
    cutmix: float = 0.0
    loss: str = "ce"
    label_smoothing: float = 0.0
    weight_decay: float = 5e-5
    momentum: float = 0.9
    workers: int = 0
    seed: int = 0
    device: str | None = None
    image_size: int | None = None
    coding: str = "gac"
    #: backend setting of every neuron of the model (``"auto"``: the model's own, by default auto)
    backend: str = "auto"
    progress: bool | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: frame options of an event data set other than ``T`` (``size``, ``window_ms``, ``flip``,
    #: ``translate``, ``cache_dir``, ``split_seed``; see :class:`gac_coding.train.events.FrameOptions`)
    events: dict[str, Any] = field(default_factory=dict)
    #: deprecated, use ``coding``: ``gac=False`` meant ``coding="direct"`` (or ``"poisson"`` given
    #: with it), ``gac=True`` meant ``coding="gac"``. Read when the config is made, then cleared.
    gac: bool | None = None

    def __post_init__(self) -> None:
        if self.gac is None:
            return
        warnings.warn(
            "TrainConfig(gac=...) is deprecated: pass coding='gac', 'direct' or 'poisson'",
            DeprecationWarning,
            stacklevel=3,
        )
        if not isinstance(self.gac, bool):
            raise TypeError(f"gac: expected a bool, got {type(self.gac).__name__}")
        if self.gac and self.coding == "poisson":
            raise ValueError(
                "coding: Poisson rate coding feeds spikes to a model without GAC; "
                "gac=True contradicts it (pass coding='poisson' alone)"
            )
        if self.gac:
            self.coding = "gac"
        elif self.coding == "gac":
            self.coding = "direct"
        self.gac = None

    @property
    def uses_gac(self) -> bool:
        """Whether the model has the GAC encoder (``coding == "gac"``)."""
        return self.coding == "gac"

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field."""

        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
            if value < minimum:
                raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")

        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model: expected a model name, got {self.model!r}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {self.dataset!r}")
        for name in ("T", "epochs", "batch_size"):
            positive_int(name)
        positive_int("workers", 0)
        if self.stop_after is not None:
            positive_int("stop_after")
            if self.stop_after > self.epochs:
                raise ValueError(
                    f"stop_after: expected at most epochs ({self.epochs}), got "
                    f"{self.stop_after}; epochs is the schedule's length"
                )
        positive_int("seed", 0)
        for name in ("lr", "weight_decay", "momentum", "label_smoothing", "cutmix"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"{name}: expected a finite number, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: expected a value in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing: expected a value in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.cutmix <= 1:
            raise ValueError(f"cutmix: expected a probability in [0, 1], got {self.cutmix}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {list(LOSSES)}, got {self.loss!r}")
        if self.coding not in CODINGS:
            raise ValueError(f"coding: expected one of {list(CODINGS)}, got {self.coding!r}")
        backends.check_backend(self.backend)
        if self.resume and self.out is None:
            raise ValueError("resume: needs out, the folder holding last.pt")
        self.frame_options()  # validates the event options

    def frame_options(self) -> Any:
        """The :class:`~gac_coding.train.events.FrameOptions` of an event data set, else ``None``."""
        if self.dataset not in EVENT_DATASETS:
            if self.events:
                raise ValueError(
                    f"events: frame options {sorted(self.events)} apply to the event data "
                    f"sets {list(EVENT_DATASETS)}, not to {self.dataset!r}"
                )
            return None
        if self.cutmix > 0:
            raise ValueError("cutmix: works on static images; event data sets have no CutMix here")
        if self.coding == "poisson":
            raise ValueError(f"coding: event data sets are fed as frames; got coding={self.coding!r}")
        if not isinstance(self.events, dict):
            raise TypeError(f"events: expected a dict of frame options, got {type(self.events).__name__}")
        try:
            return FrameOptions(T=self.T, **self.events)
        except TypeError as exc:
            raise TypeError(f"events: {exc}") from None

    def run_config(self) -> dict[str, Any]:
        """The part of the config that describes the run (stored in checkpoints); ``data_dir``
        as an absolute path, so that ``gac-coding energy`` finds the data from any folder."""
        skip = {"out", "resume", "stop_after", "device", "progress", "workers", "gac"}
        config = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        config["gac"] = self.uses_gac  # what the checkpoint readers look for
        if self.data_dir is not None:
            config["data_dir"] = str(Path(self.data_dir).expanduser().resolve())
        return config


def saved_coding(saved: dict[str, Any]) -> str | None:
    """The ``coding`` of a checkpoint's config; checkpoints written before ``coding`` had the
    value ``"gac"`` recorded ``coding="direct"`` with ``gac=True``
    (:func:`~gac_coding.io.recorded_coding`)."""
    return recorded_coding(saved)
