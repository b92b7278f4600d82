"""Time-major helpers of the backbones: fold time into the batch and back, channels-last steps.

Internal to :mod:`gac_coding.models` (the MS-ResNet and VGG backbones, the NIR host); public names so
that the modules that share them import no private helper.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["channels_last_steps", "fold", "unfold"]


def channels_last_steps(x: Tensor) -> Tensor:
    """A ``[B, C, H, W]`` batch or ``[T, B, C, H, W]`` sequence with channels-last steps (other
    inputs pass unchanged, for the encoder to reject with a clear message)."""
    if not isinstance(x, Tensor) or x.dim() not in (4, 5) or x.numel() == 0:
        return x
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    flat = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # no copy when it already is
    return flat.view(x.shape)


def fold(x: Tensor) -> Tensor:
    """``[T, B, ...] -> [T * B, ...]``."""
    return x.flatten(0, 1)


def unfold(y: Tensor, T: int) -> Tensor:
    """``[T * B, ...] -> [T, B, ...]``."""
    return y.view(T, y.shape[0] // T, *y.shape[1:])
