"""Memory layout of the neuron ops: a channels-last step stays channels-last.

Convolutions around the neuron run faster channels-last on oneDNN and cuDNN, and a layout change
would cost a copy. The kernels walk contiguous memory, so a channels-last ``[..., C, H, W]`` step is
handed to them as its plainly contiguous ``[..., H, W, C]`` view and the results are viewed back.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["channels_to_front", "channels_to_last", "empty_steps", "is_channels_last_step"]


def is_channels_last_step(step: Tensor) -> bool:
    """Whether a ``[B, C, H, W]`` step is stored channels-last (and not also plain contiguous)."""
    return (
        step.dim() == 4 and not step.is_contiguous() and step.is_contiguous(memory_format=torch.channels_last)
    )


def empty_steps(step: Tensor, T: int) -> Tensor:
    """Uninitialised ``[T, *step.shape]`` whose every step has the layout of ``step``.

    A channels-last ``step`` gives ``T`` channels-last steps, each a dense block, so that
    ``out.flatten(0, 1)`` is a channels-last ``[T * B, C, H, W]`` view; anything else gives a
    contiguous tensor.
    """
    if is_channels_last_step(step):
        flat = torch.empty(
            (T * step.shape[0], *step.shape[1:]),
            dtype=step.dtype,
            device=step.device,
            memory_format=torch.channels_last,
        )
        return flat.view(T, *step.shape)
    return torch.empty((T, *step.shape), dtype=step.dtype, device=step.device)


def channels_to_last(x: Tensor, on: bool) -> Tensor:
    """``[..., C, H, W] -> [..., H, W, C]`` (a view) when ``on``: a channels-last tensor becomes
    plainly contiguous, which is the layout the kernels walk."""
    return x.movedim(-3, -1) if on else x


def channels_to_front(x: Tensor, on: bool) -> Tensor:
    """Inverse of :func:`channels_to_last`."""
    return x.movedim(-1, -3) if on else x
