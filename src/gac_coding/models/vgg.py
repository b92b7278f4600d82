"""A small VGG-style spiking network for event data (and any ``[T, B, C, H, W]`` input).

The layer plan of the "VGGSNN" used for CIFAR10-DVS and DVS128 Gesture in the DVS literature
(e.g. the TET paper, Deng et al., ICLR 2022): ``64C3 - 128C3 - AP2 - 256C3 - 256C3 - AP2 - 512C3 -
512C3 - AP2 - 512C3 - 512C3 - AP2``, every convolution followed by BN and a LIF, then a linear
classifier. Here the first ``64C3 + BN`` is the stem: the GAC encoder (``gac=True``, on each frame
of a sequence, or on a static image with the exact fast path) or direct coding (``gac=False``, the
stem's BN output repeated over ``T`` for a static image). As in MS-ResNet, the stem's output goes
through a LIF before the next convolution, so every convolution after the stem receives spikes.
The head averages the last LIF's spikes over space and applies the linear layer per step (logits
``[T, B, classes]``), which makes the network independent of the frame size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..encoder import GACEncoder
from ..neuron import LIF, RECIPES
from ._steps import fold, unfold
from .msresnet import DirectEncoder

__all__ = ["SpikingVGG", "VGGSNN_PLAN", "VGG_TINY_PLAN", "vgg_tiny", "vggsnn_dvs"]

#: ``int``: a 3x3 convolution with that many channels (+ BN + LIF); ``"A"``: 2x2 average pooling.
VGGSNN_PLAN: tuple[int | str, ...] = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A")
VGG_TINY_PLAN: tuple[int | str, ...] = (16, 32, "A", 64, "A")


class SpikingVGG(nn.Module):
    """Plain spiking VGG: stem (GAC or direct) -> [LIF -> (AvgPool) -> Conv3x3 -> BN]* -> LIF -> head.

    Args:
        plan: layer plan (see :data:`VGGSNN_PLAN`); its first entry is the stem's width.
        num_classes: outputs of the linear head.
        T: time steps (change later with :meth:`set_timesteps`).
        gac: GAC encoder stem (``True``) or direct coding (``False``).
        in_channels: input channels (2 for event frames: OFF and ON counts).
        recipe: neuron settings, ``"cifar"`` or ``"imagenet"`` (:data:`gac_coding.RECIPES`).
        temporal_attention: the GAC encoder's ``"mlp"`` (fixed ``T``) or ``"conv"`` (any ``T``).
        ta_bias, ta_activation, ta_source, gate: the GAC encoder's variants of the attention and
            the gate (:class:`~gac_coding.GACEncoder`; the defaults are the paper's).
        encoder_kwargs: further :class:`~gac_coding.GACEncoder` arguments.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> net = create_model("vgg_tiny", num_classes=4, T=3)
        >>> net(torch.rand(3, 2, 2, 16, 16)).shape       # event frames [T, B, 2, H, W]
        torch.Size([3, 2, 4])
    """

    def __init__(
        self,
        plan: Sequence[int | str],
        num_classes: int,
        T: int,
        gac: bool = True,
        in_channels: int = 2,
        recipe: str = "cifar",
        temporal_attention: str = "mlp",
        encoder_kwargs: dict[str, Any] | None = None,
        *,
        ta_bias: bool = False,
        ta_activation: str = "relu",
        ta_source: str = "stem",
        gate: str = "product",
    ) -> None:
        super().__init__()
        plan = list(plan)
        if not plan or not isinstance(plan[0], int) or isinstance(plan[0], bool):
            raise ValueError(f"plan: expected a list of widths and 'A', starting with a width, got {plan!r}")
        if any(not (p == "A" or (isinstance(p, int) and not isinstance(p, bool) and p >= 1)) for p in plan):
            raise ValueError(f"plan: entries must be positive ints or 'A', got {plan!r}")
        if recipe not in RECIPES:
            raise ValueError(f"recipe: expected one of {sorted(RECIPES)}, got {recipe!r}")
        if not isinstance(gac, bool):
            raise TypeError(f"gac: expected a bool, got {type(gac).__name__}")
        lif: dict[str, Any] = dict(RECIPES[recipe])
        self.gac = gac
        self.recipe = recipe
        self.num_classes = num_classes
        self.plan = tuple(plan)
        width = int(plan[0])
        enc_cls = GACEncoder if gac else DirectEncoder
        kwargs = {
            "temporal_attention": temporal_attention, "ta_bias": ta_bias, "ta_activation": ta_activation,
            "ta_source": ta_source, "gate": gate, **(encoder_kwargs or {}),
        }  # fmt: skip
        self.encoder = enc_cls(in_channels, width, T, 3, 1, 1, **lif, **kwargs)
        self.T = self.encoder.T
        layers: list[nn.Module] = []
        channels = width
        for item in plan[1:]:
            if item == "A":
                layers.append(nn.AvgPool2d(2))
                continue
            layers += [
                LIF(**lif),
                nn.Conv2d(channels, int(item), 3, 1, 1, bias=False),
                nn.BatchNorm2d(int(item)),
            ]
            channels = int(item)
        self.layers = nn.ModuleList(layers)
        self.head_lif = LIF(**lif)
        self.fc = nn.Linear(channels, num_classes)

    def set_timesteps(self, T: int) -> None:
        """Run at ``T`` steps (see :meth:`gac_coding.GACEncoder.set_timesteps`)."""
        self.encoder.set_timesteps(T)
        self.T = self.encoder.T

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> logits ``[T, B, classes]``."""
        h = self.encoder(x)
        T = h.shape[0]
        for layer in self.layers:
            # LIFs run over time on [T, B, ...]; convolution, BN and pooling fold T into the batch
            h = layer(h) if isinstance(layer, LIF) else unfold(layer(fold(h)), T)
        spikes = self.head_lif(h)
        return self.fc(spikes.mean((3, 4)))

    def extra_repr(self) -> str:
        return f"gac={self.gac}, T={self.T}, num_classes={self.num_classes}, plan={list(self.plan)}"


def vggsnn_dvs(num_classes: int = 10, T: int = 10, gac: bool = True, **kwargs: Any) -> SpikingVGG:
    """VGGSNN for event frames (2 channels, e.g. CIFAR10-DVS at 48x48, T=10): 9.36 M params at 10 classes."""
    return SpikingVGG(VGGSNN_PLAN, num_classes, T, gac, **kwargs)


def vgg_tiny(num_classes: int = 10, T: int = 4, gac: bool = True, **kwargs: Any) -> SpikingVGG:
    """A small spiking VGG (16-32-AP-64-AP) for tests and CPU examples on event frames."""
    return SpikingVGG(VGG_TINY_PLAN, num_classes, T, gac, **kwargs)
