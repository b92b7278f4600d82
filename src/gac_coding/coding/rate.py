"""Rate (Poisson) coding: Bernoulli spikes drawn per step from the pixel intensities.

Each step every pixel fires with probability equal to its intensity in ``[0, 1]``, independently
over time, so the expected firing rate over ``T`` steps is the intensity itself. The spikes go
through the stem (convolution and BatchNorm, on every step) to the backbone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import positive_int
from .base import StemEncoder
from .registry import register_coding

__all__ = ["RateEncoder", "rate_encode"]


def _check_intensities(x: object, what: str) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.numel() and not torch.compiler.is_compiling():
        low, high = float(x.min()), float(x.max())
        if not (0.0 <= low and high <= 1.0):  # NaN fails too
            raise ValueError(f"x: {what} expects intensities in [0, 1], got [{low}, {high}]")
    return x


def _bernoulli(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """Bernoulli draws of ``probs``; a generator on another device draws there (the same numbers
    as on that device) and the spikes come back to ``probs``' device."""
    if generator is None or generator.device == probs.device:
        return torch.bernoulli(probs, generator=generator)
    return torch.bernoulli(probs.to(generator.device), generator=generator).to(probs.device)


def rate_encode(x: Tensor, T: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Rate (Poisson, i.e. Bernoulli per step) coding: ``[B, ...]`` intensities in ``[0, 1]`` ->
    spikes ``[T, B, ...]`` (0./1. in ``x``'s dtype).

    Each step emits a spike with probability equal to the pixel's intensity, independently over
    time, so the expected rate over ``T`` steps is the intensity itself. The draws come from
    ``generator`` (default: torch's global generator); the same generator state gives the same
    spikes.

    Example:
        >>> import torch
        >>> from gac_coding.coding import rate_encode
        >>> s = rate_encode(torch.full((2, 1, 4, 4), 0.5), T=8)
        >>> s.shape, bool(((s == 0) | (s == 1)).all())
        (torch.Size([8, 2, 1, 4, 4]), True)
    """
    x = _check_intensities(x, "rate coding")
    T = positive_int("T", T)
    probs = x.contiguous().unsqueeze(0).expand(T, *x.shape)
    return _bernoulli(probs, generator)


@register_coding
class RateEncoder(StemEncoder):
    """Rate coding: Bernoulli spikes of the image at every step (:func:`rate_encode`), then the stem.

    A static batch ``[B, C, H, W]`` of intensities in ``[0, 1]`` gives ``T`` independent spike
    frames; a sequence ``[T, B, C, H, W]`` of intensities gives one draw per frame. The stem
    (convolution and BatchNorm, no bias) runs on each spike frame and its output ``U``, real
    values, is the code ``[T, B, C', H', W']``: the backbone's first neuron turns it into spikes,
    as for :class:`~gac_coding.coding.DirectEncoder`. The stem's convolution receives binary
    spikes (accumulates, in the energy count) and runs at every step (no static fast path).

    Args:
        in_channels, out_channels, T, kernel_size, stride, padding: the stem.
        generator: where the draws come from (:attr:`generator`, may be set later); ``None``
            (default): torch's global generator, so that a run seeded with ``torch.manual_seed``
            repeats its draws. A generator on another device than the input draws there.
            ``torch.compile(fullgraph=True)`` and ``torch.export`` trace draws from the global
            generator; a generator of one's own is a graph break for them.

    Example:
        >>> import torch
        >>> from gac_coding.coding import RateEncoder
        >>> enc = RateEncoder(1, 4, T=3, generator=torch.Generator().manual_seed(0))
        >>> enc(torch.rand(2, 1, 6, 6)).shape
        torch.Size([3, 2, 4, 6, 6])
    """

    coding = "rate"
    label = "Poisson rate coding"
    static_stem = False
    reads_intensities = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        T: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, T, kernel_size, stride, padding)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
        #: the source of the draws (``None``: torch's global generator)
        self.generator = generator

    def spikes(self, x: Tensor) -> Tensor:
        """The spike frames ``[T, B, C, H, W]`` of ``x`` (validated), before the stem."""
        if not self.check_input(x):  # a sequence of intensities: one draw per frame
            return _bernoulli(_check_intensities(x, "rate coding"), self.generator)
        spikes = rate_encode(x, self.T, generator=self.generator)
        if x.is_contiguous(memory_format=torch.channels_last):
            # a channels-last image (a channels-last model converts its input) gives channels-last frames
            spikes = spikes.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(spikes.shape)
        return spikes

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C_in, H, W]`` or ``[T, B, C_in, H, W]`` intensities -> ``U: [T, B, C, H', W']``."""
        return self.membrane(self.spikes(x))[0]

    def extra_repr(self) -> str:
        seeded = "global generator" if self.generator is None else "own generator"
        return f"T={self.T}, rate coding (Bernoulli spikes, {seeded})"
