"""What a training run is: :class:`TrainConfig` (the fields mirror ``gac-coding train``'s options),
its checks, and the part of it that the run's checkpoints record (:meth:`TrainConfig.run_config`;
the format the readers rely on is :mod:`gac_coding.io`'s)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import integer, real
from ..coding import CODINGS, check_coding
from ..coding.registry import coding_from_gac_flag
from ..io import recorded_coding
from ..ops import backends
from ..ops.memory import check_memory
from .data import DATASETS
from .events import EVENT_DATASETS, FrameOptions
from .losses import LOSSES

__all__ = ["CODINGS", "TrainConfig", "saved_coding"]


# ``CODINGS`` (re-exported): the input codings, :data:`gac_coding.coding.CODINGS`;
# ``TrainConfig(coding=...)`` builds the model with that coding's encoder, which turns the images
# into its code inside the model (rate coding draws its spikes there, from torch's global generator).


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
    #: what a training step keeps for the backward pass (:data:`gac_coding.ops.memory.MEMORY_MODES`)
    memory: str = "default"
    progress: bool | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    #: frame options of an event data set other than ``T`` (``size``, ``window_ms``, ``flip``,
    #: ``translate``, ``cache_dir``, ``split_seed``; see :class:`gac_coding.train.events.FrameOptions`)
    events: dict[str, Any] = field(default_factory=dict)
    #: deprecated, use ``coding``: ``gac=False`` meant ``coding="direct"`` (or the coding given
    #: with it), ``gac=True`` meant ``coding="gac"``. Read when the config is made, then cleared.
    gac: bool | None = None

    def __post_init__(self) -> None:
        # the deprecated spellings (gac=..., coding="poisson") become the coding's name, with one
        # warning each, pointing at the TrainConfig(...) call (frames: here, the dataclass's
        # __init__, the caller); an unknown coding is left for validate() to name
        if self.gac is not None or self.coding == "poisson":
            self.coding = coding_from_gac_flag(self.coding, self.gac, "TrainConfig(gac=...)", stacklevel=3)
        self.gac = None

    @property
    def uses_gac(self) -> bool:
        """Whether the model has the GAC encoder (``coding == "gac"``)."""
        return self.coding == "gac"

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field."""

        def positive_int(name: str, minimum: int = 1) -> None:
            integer(name, getattr(self, name), minimum)

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
        real("lr", self.lr, 0, low_open=True)
        real("weight_decay", self.weight_decay, 0)
        real("momentum", self.momentum, 0, 1, high_open=True)
        real("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        real("cutmix", self.cutmix, 0, 1, what="a probability")
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {list(LOSSES)}, got {self.loss!r}")
        self.coding = check_coding(self.coding)
        backends.check_backend(self.backend)
        check_memory(self.memory)
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
        if CODINGS[check_coding(self.coding)].reads_intensities:
            raise ValueError(
                f"coding: event data sets are fed as frames, and {self.coding!r} coding reads pixel "
                f"intensities in [0, 1]; use coding 'gac' or 'direct'"
            )
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
