"""Latency (time-to-first-spike) coding: one spike per pixel, brighter pixels earlier.

A pixel of intensity ``x`` in ``(0, 1]`` fires once, at step ``t = floor((1 - x) * T)``: ``x = 1``
at the first step, intensities in ``(0, 1/T]`` at the last; a pixel of intensity 0 never fires.
The coding is deterministic. The spikes go through the stem (convolution and BatchNorm, on every
step) to the backbone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import positive_int
from .base import StemEncoder
from .rate import _check_intensities
from .registry import register_coding

__all__ = ["LatencyEncoder", "latency_encode"]


def latency_encode(x: Tensor, T: int) -> Tensor:
    """Latency coding: ``[B, ...]`` intensities in ``[0, 1]`` -> spikes ``[T, B, ...]`` (0./1. in
    ``x``'s dtype), each pixel at most once: at step ``floor((1 - x) * T)`` if ``x > 0``, computed
    in float32 at least (a float16 or bfloat16 image gets the times of its values in float32).

    Example:
        >>> import torch
        >>> from gac_coding.coding import latency_encode
        >>> latency_encode(torch.tensor([1.0, 0.6, 0.3, 0.0]), T=4).t()   # rows: pixels
        tensor([[1., 0., 0., 0.],
                [0., 1., 0., 0.],
                [0., 0., 1., 0.],
                [0., 0., 0., 0.]])
    """
    x = _check_intensities(x, "latency coding")
    T = positive_int("T", T)
    # in float32 at least: in float16 / bfloat16 the product would round (moving spike times) and
    # so would the step numbers (bfloat16 counts exactly to 256 only: a pixel fired several times)
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    fire = torch.floor((1 - wide) * T)  # in [0, T]: T (x = 0) is past the last step, no spike
    steps = torch.arange(T, device=x.device, dtype=wide.dtype).view(T, *([1] * x.dim()))
    return (steps == fire.unsqueeze(0)).to(x.dtype)


@register_coding
class LatencyEncoder(StemEncoder):
    """Latency coding: one spike per pixel, brighter pixels earlier (:func:`latency_encode`), then
    the stem.

    Takes a static batch ``[B, C, H, W]`` of intensities in ``[0, 1]`` (a sequence has no single
    intensity per pixel to turn into a time, so it raises ``ValueError``). The stem (convolution
    and BatchNorm, no bias) runs on each spike frame and its output ``U``, real values, is the code
    ``[T, B, C', H', W']``, which the backbone's first neuron turns into spikes. The stem's
    convolution receives binary spikes and runs at every step.

    Args:
        in_channels, out_channels, T, kernel_size, stride, padding: the stem.

    Example:
        >>> import torch
        >>> from gac_coding.coding import LatencyEncoder
        >>> LatencyEncoder(1, 4, T=3)(torch.rand(2, 1, 6, 6)).shape
        torch.Size([3, 2, 4, 6, 6])
    """

    coding = "latency"
    label = "latency coding"
    static_stem = False
    reads_intensities = True

    def spikes(self, x: Tensor) -> Tensor:
        """The spike frames ``[T, B, C, H, W]`` of ``x`` (validated), before the stem."""
        if not self.check_input(x):
            raise ValueError(
                f"x: latency coding turns a static image batch [B, C, H, W] into spike times; got a "
                f"sequence of shape {tuple(x.shape)} (feed sequences to direct, rate or GAC coding)"
            )
        spikes = latency_encode(x, self.T)
        if x.is_contiguous(memory_format=torch.channels_last):
            spikes = spikes.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(spikes.shape)
        return spikes

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C_in, H, W]`` intensities -> ``U: [T, B, C, H', W']``."""
        return self.membrane(self.spikes(x))[0]

    def extra_repr(self) -> str:
        return f"T={self.T}, latency coding (one spike per pixel)"
