"""Direct coding: the stem's output, the same at every step (the baseline of the paper's tables)."""

from __future__ import annotations

from torch import Tensor

from ..ops.layout import empty_steps
from .base import StemEncoder
from .registry import register_coding

__all__ = ["DirectEncoder"]


@register_coding
class DirectEncoder(StemEncoder):
    """The stem of :class:`~gac_coding.coding.GACEncoder` without neuron and gate: direct coding.

    Returns the stem's BN output ``U`` as a sequence ``[T, B, C, H', W']`` (a static image is
    repeated over ``T``); the first backbone block turns it into spikes with its own LIF. The
    static fast path of the stem (convolution and BN once per image, BN statistics as for ``T``
    copies) is that of :class:`~gac_coding.coding.StemEncoder`, which every encoder shares.
    It has no neuron, so no neuron or gate settings: passing one raises ``TypeError``. Nothing is
    recorded (:attr:`last_spikes` is ``None``).

    Args:
        in_channels, out_channels, T, kernel_size, stride, padding: the stem.

    Example:
        >>> import torch
        >>> from gac_coding.coding import DirectEncoder
        >>> stem = DirectEncoder(in_channels=1, out_channels=8, T=3)
        >>> stem(torch.rand(2, 1, 8, 8)).shape
        torch.Size([3, 2, 8, 8, 8])
    """

    coding = "direct"
    label = "direct coding"

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C_in, H, W]`` or ``[T, B, C_in, H, W]`` -> ``U: [T, B, C, H', W']``."""
        u, static = self.membrane(x)
        if not static:
            return u
        # T copies of U in U's layout (channels-last steps stay channels-last for the first block)
        return empty_steps(u, self.T).copy_(u.unsqueeze(0).expand(self.T, *u.shape))

    def extra_repr(self) -> str:
        return f"T={self.T}, direct coding (no gate)"
