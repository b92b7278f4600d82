"""What every data set of :mod:`gac_coding.train` is built into (:class:`DataSpec`) and the error a
missing or malformed data folder raises (:class:`DataFolderError`): the bottom of the data modules,
which the image data sets (:mod:`~gac_coding.train.data`) and the event data sets
(:mod:`~gac_coding.train.events`) both build on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataFolderError", "DataSpec"]


class DataFolderError(FileNotFoundError):
    """A data folder is missing, incomplete or malformed; the message names what was expected."""


@dataclass
class DataSpec:
    """The two splits of a data set and what a model needs to know about them."""

    name: str
    train: Any  # a map-style torch Dataset with __len__
    test: Any
    num_classes: int
    in_channels: int
    image_size: int
    class_names: list[str] = field(default_factory=list)
    #: how a DataLoader stacks samples (``None``: PyTorch's default); event data sets give
    #: time-major batches ``[T, B, C, H, W]``
    collate_fn: Callable[..., Any] | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images or frames as the model receives them (square here)."""
        return (self.image_size, self.image_size)

    @property
    def test_split(self) -> str:
        """What the data set calls the split in :attr:`test`, the one a run validates on."""
        return "val" if self.name == "imagefolder" else "test"
