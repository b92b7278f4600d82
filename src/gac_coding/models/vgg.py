"""A small VGG-style spiking network for event data (and any ``[T, B, C, H, W]`` input).

The layer plan of the "VGGSNN" used for CIFAR10-DVS and DVS128 Gesture in the DVS literature
(e.g. the TET paper, Deng et al., ICLR 2022): ``64C3 - 128C3 - AP2 - 256C3 - 256C3 - AP2 - 512C3 -
512C3 - AP2 - 512C3 - 512C3 - AP2``, every convolution followed by BN and a LIF, then a linear
classifier. Here the first ``64C3 + BN`` is the stem: the encoder of the model's coding, the GAC
encoder by default (``coding="gac"``, on each frame of a sequence, or on a static image with the
exact fast path) or another of :data:`gac_coding.coding.CODINGS` (``coding="direct"``: the stem's
BN output, repeated over ``T`` for a static image). As in MS-ResNet, the stem's output goes
through a LIF before the next convolution, so every convolution after the stem receives spikes.
The head averages the last LIF's spikes over space and applies the linear layer per step (logits
``[T, B, classes]``), which makes the network independent of the frame size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import choice, positive_int
from .._deprecated import deprecated
from ..coding import StemEncoder
from ..coding.registry import coding_from_gac_flag
from ..neuron import LIF, RECIPES
from ..ops import lean
from ..ops.backends import check_backend
from ..ops.memory import MemorySetting, checkpoint, lean_active
from ._stem import build_encoder, builder_coding
from ._steps import fold, unfold
from .pretrained import PretrainedMixin

__all__ = ["SpikingVGG", "VGGSNN_PLAN", "VGG_TINY_PLAN", "vgg_tiny", "vggsnn_dvs"]

#: ``int``: a 3x3 convolution with that many channels (+ BN + LIF); ``"A"``: 2x2 average pooling.
VGGSNN_PLAN: tuple[int | str, ...] = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A")
VGG_TINY_PLAN: tuple[int | str, ...] = (16, 32, "A", 64, "A")


class SpikingVGG(PretrainedMixin, MemorySetting, nn.Module):
    """Plain spiking VGG: stem (an encoder) -> [LIF -> (AvgPool) -> Conv3x3 -> BN]* -> LIF -> head.

    Args:
        plan: layer plan (see :data:`VGGSNN_PLAN`); its first entry is the stem's width.
        num_classes: outputs of the linear head.
        T: time steps (held by the encoder; change later with :meth:`set_timesteps`).
        coding: the input coding, a name of :data:`gac_coding.coding.CODINGS` (``"gac"`` by
            default, ``"direct"``; ``"rate"`` and ``"latency"`` read intensities in ``[0, 1]``).
        in_channels: input channels (2 for event frames: OFF and ON counts).
        recipe: neuron settings, ``"cifar"`` or ``"imagenet"`` (:data:`gac_coding.RECIPES`).
        temporal_attention: the GAC encoder's ``"mlp"`` (fixed ``T``; the default) or ``"conv"``
            (any ``T``); a coding without one raises ``TypeError`` when it is given.
        encoder_kwargs: further settings of the coding's encoder.
        backend: the backend setting of every neuron of the model (see :class:`gac_coding.LIF`).
        memory: what training keeps for the backward pass (:mod:`gac_coding.ops.memory`):
            ``"default"``, ``"lean"`` (spikes as bits, BatchNorm, pooling and the LIF as one op)
            or ``"checkpoint"`` (the layers up to each pooling keep their input and run again,
            lean, in the backward pass; the encoder goes with the first, the layers after the last
            but one pooling run lean). The same numbers.
        gac: deprecated: ``gac=True`` / ``False`` for ``coding="gac"`` / ``"direct"``.

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
        coding: str = "gac",
        in_channels: int = 2,
        recipe: str = "cifar",
        temporal_attention: str | None = None,
        encoder_kwargs: dict[str, Any] | None = None,
        backend: str = "auto",
        *,
        memory: str = "default",
        gac: bool | None = None,
    ) -> None:
        super().__init__()
        coding = coding_from_gac_flag(coding, gac, "SpikingVGG(gac=...)")
        plan = list(plan)
        if not plan or plan[0] == "A":
            raise ValueError(f"plan: expected a list of widths and 'A', starting with a width, got {plan!r}")
        try:
            for item in plan:
                if item != "A":
                    positive_int("plan", item)
        except (TypeError, ValueError):
            raise ValueError(f"plan: entries must be positive ints or 'A', got {plan!r}") from None
        choice("recipe", recipe, sorted(RECIPES))
        positive_int("num_classes", num_classes)
        lif: dict[str, Any] = dict(RECIPES[recipe], backend=check_backend(backend))
        #: the input coding (a name of :data:`gac_coding.coding.CODINGS`)
        self.coding = coding
        self.recipe = recipe
        self.num_classes = num_classes
        self.plan = tuple(plan)
        width = int(plan[0])
        self.encoder: StemEncoder = build_encoder(
            coding, in_channels, width, T, 3, 1, 1,
            neuron=lif, temporal_attention=temporal_attention, encoder_kwargs=encoder_kwargs,
        )  # fmt: skip
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
        self.memory = memory

    def _set_memory(self, mode: str) -> None:
        inner = "default" if mode == "default" else "lean"
        for m in (self.encoder, self.head_lif, *self.layers):
            if isinstance(m, MemorySetting):
                m.memory = inner

    def _segments(self) -> list[list[nn.Module]]:
        """The layers cut after each pooling (the units a checkpoint recomputes)."""
        segments: list[list[nn.Module]] = [[]]
        for layer in self.layers:
            segments[-1].append(layer)
            if isinstance(layer, nn.AvgPool2d):
                segments.append([])
        return [s for s in segments if s] or [[]]

    @property
    def T(self) -> int:
        """The number of time steps: the encoder's (:meth:`set_timesteps` changes it)."""
        return self.encoder.T

    @property
    def gac(self) -> bool:
        """Deprecated: ``model.coding == "gac"``."""
        deprecated("model.gac")
        return self.coding == "gac"

    def set_timesteps(self, T: int) -> None:
        """Run at ``T`` steps: the encoder's, which the model reads (see
        :meth:`gac_coding.GACEncoder.set_timesteps`)."""
        self.encoder.set_timesteps(T)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> logits ``[T, B, classes]``."""
        if self.memory == "checkpoint" and lean_active(self.memory) and isinstance(x, Tensor):
            first, *rest = self._segments()
            if torch.compiler.is_compiling() and getattr(self.encoder, "record", False):
                # the compiler's checkpoint allows no side effect such as the encoder's record
                h = checkpoint(lambda inp: lean.run_layers(first, inp), first, self.encoder(x))
            else:
                h = checkpoint(
                    lambda inp: lean.run_layers(first, self.encoder(inp)), [self.encoder, *first], x
                )
            for i, segment in enumerate(rest, 1):
                if i == len(rest):  # the last runs lean: the smallest activations
                    h = lean.run_layers(segment, h)
                else:
                    h = checkpoint(lambda inp, seg=segment: lean.run_layers(seg, inp), segment, h)
            return self.fc(lean.run_layers([self.head_lif], h).mean((3, 4)))
        h = self.encoder(x)
        if lean_active(self.memory):
            return self.fc(lean.run_layers([*self.layers, self.head_lif], h).mean((3, 4)))
        T = h.shape[0]
        for layer in self.layers:
            # LIFs run over time on [T, B, ...]; convolution, BN and pooling fold T into the batch
            h = layer(h) if isinstance(layer, LIF) else unfold(layer(fold(h)), T)
        spikes = self.head_lif(h)
        return self.fc(spikes.mean((3, 4)))

    def extra_repr(self) -> str:
        memory = "" if self.memory == "default" else f", memory={self.memory!r}"
        return (
            f"coding={self.coding!r}, T={self.T}, num_classes={self.num_classes}, "
            f"plan={list(self.plan)}{memory}"
        )


def vggsnn_dvs(
    num_classes: int = 10, T: int = 10, coding: str = "gac", *, gac: bool | None = None, **kwargs: Any
) -> SpikingVGG:
    """VGGSNN for event frames (2 channels, e.g. CIFAR10-DVS at 48x48, T=10): 9.36 M params at 10 classes."""
    return SpikingVGG(VGGSNN_PLAN, num_classes, T, builder_coding(coding, gac), **kwargs)


def vgg_tiny(
    num_classes: int = 10, T: int = 4, coding: str = "gac", *, gac: bool | None = None, **kwargs: Any
) -> SpikingVGG:
    """A small spiking VGG (16-32-AP-64-AP) for tests and CPU examples on event frames."""
    return SpikingVGG(VGG_TINY_PLAN, num_classes, T, builder_coding(coding, gac), **kwargs)
