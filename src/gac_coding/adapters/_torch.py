"""Plain PyTorch backbones: any module that takes the time-major code ``[T, B, C, H, W]``.

The wrapper calls the module once on the whole code and returns what it returns. Such a module has
no framework state to reset; if it keeps state of its own across calls, it must reset it itself at
the start of ``forward`` (the project's convention).
"""

from __future__ import annotations

from torch import nn

from ._common import Driver

__all__ = ["TorchDriver", "build"]


class TorchDriver(Driver):
    """One call on the whole ``[T, B, ...]`` code."""

    framework = "torch"
    mode = "sequence"


def build(backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> TorchDriver:
    """The driver of a plain PyTorch backbone (nothing to detect)."""
    del backbone, T, input_layer
    return TorchDriver()
