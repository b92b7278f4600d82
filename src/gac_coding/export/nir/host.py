"""The host side of an export: the model's encoder, run before the chip."""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

__all__ = ["HostEncoder"]


class HostEncoder(nn.Module):
    """Input image (or frame sequence) -> what crosses to the chip, ``[T, B, C, H, W]``.

    Holds a copy of the model's encoder: a :class:`~gac_coding.GACEncoder` (the gated code, real
    values in ``[0, 1)``, or binary spikes with ``binarize``) or the direct-coding stem of an
    MS-ResNet built with ``coding="direct"`` (the stem's BatchNorm output ``U``, real values). The copy
    runs its own ``forward``, so every option of the encoder (its gate, its temporal attention)
    runs on the host as it does in the model.

    Args:
        encoder: the encoder to copy.
        binarize: ``None`` keeps the encoder's setting; ``True``/``False`` sets it on the copy.
        channels_last: run the input channels-last, as an MS-ResNet built with
            ``channels_last=True`` does (same values as the model's own encoder).
    """

    def __init__(
        self, encoder: nn.Module, *, binarize: bool | None = None, channels_last: bool = False
    ) -> None:
        super().__init__()
        from ...coding import DirectEncoder, GACEncoder

        if not isinstance(encoder, (GACEncoder, DirectEncoder)):
            raise TypeError(
                f"encoder: expected a GACEncoder or a DirectEncoder, got {type(encoder).__name__}"
            )
        if binarize is not None and not isinstance(binarize, bool):
            raise TypeError(f"binarize: expected a bool or None, got {type(binarize).__name__}")
        self.direct = not isinstance(encoder, GACEncoder)
        if self.direct and binarize:
            raise ValueError(
                "binarize: the model uses direct coding, whose host sends the stem's "
                "real-valued membrane U to the chip; binarize=True needs a GAC encoder"
            )
        copied: Any = copy.deepcopy(encoder)  # a StemEncoder (nn.Module attributes are untyped)
        if binarize is not None and not self.direct:
            copied.binarize = binarize
        self.encoder = copied
        self.channels_last = bool(channels_last)
        self.T = int(encoder.T)

    @property
    def binarize(self) -> bool:
        """Whether the code is binary spikes."""
        return (not self.direct) and bool(self.encoder.binarize)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C, H, W]`` or ``[T, B, C, H, W]`` -> code ``[T, B, C', H', W']``."""
        if self.channels_last and isinstance(x, Tensor) and x.dim() in (4, 5) and x.numel():
            from ...models._steps import channels_last_steps

            x = channels_last_steps(x)
        return self.encoder(x)

    def extra_repr(self) -> str:
        return f"T={self.T}, direct={self.direct}, binarize={self.binarize}"
