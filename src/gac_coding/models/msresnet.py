"""MS-ResNet backbones with the GAC encoder as their stem (docs/design/recipes.md §1-2).

Membrane-shortcut block, time-major ``[T, B, C, H, W]``::

    y = BN2(Conv2(LIF(BN1(Conv1(LIF(x)))))) + shortcut(x)

where the shortcut is the identity, or ``Conv1x1(stride) + BN`` when the shape changes, and takes the
block input ``x`` itself (a membrane potential, never spikes). Convolutions and BatchNorm fold ``T``
into the batch, so BN statistics are taken over ``T * B * H * W``. The head is
``LIF -> global average pool -> Linear`` per step; a model returns logits ``[T, B, classes]``.

Two recipes (neuron settings from :data:`gac_coding.RECIPES`):

* ``"cifar"``: 3x3 stride-1 stem, LIF decay 0.5 / threshold 1.0, triangle surrogate, reset not
  detached, PyTorch's default BN initialisation.
* ``"imagenet"``: 7x7 stride-2 stem (no max-pool), every stage strided, LIF decay 0.25 / threshold
  0.5, rectangle surrogate, detached reset; stem, BN1 and shortcut BN weights start at the threshold
  (0.5), BN2 weights at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import boolean, choice, integer, positive_int
from .._deprecated import deprecated, moved_names
from ..coding import StemEncoder
from ..coding.registry import coding_from_gac_flag
from ..neuron import LIF, RECIPES
from ..ops import lean
from ..ops.backends import check_backend
from ..ops.memory import MemorySetting, checkpoint, lean_active
from ._stem import build_encoder, builder_coding
from ._steps import channels_last_steps, fold, unfold
from .pretrained import PretrainedMixin

__all__ = [
    "MSBlock",
    "MSResNet",
    "count_parameters",
    "msresnet18_cifar",
    "msresnet18_dvs",
    "msresnet18_imagenet",
    "msresnet34_imagenet",
    "msresnet_tiny",
]


#: On CPU a block of a channels-last model with at least this many channels runs in the default
#: layout below ``_CPU_DEFAULT_LAYOUT_BELOW`` output positions per channel (see :func:`_block_layout`).
_CPU_DEFAULT_LAYOUT_CHANNELS = 256
_CPU_DEFAULT_LAYOUT_BELOW = 2.0


def _block_layout(x: Tensor, channels: int, stride: int) -> Tensor:
    """``x: [T, B, C, H, W]`` in the layout a block of a channels-last model runs in: channels-last
    steps, except on CPU for a block of 256 channels or more whose output has fewer than
    ``2 * channels`` positions (``T * B * H' * W'``). There the convolutions' large weights
    outweigh their maps, and oneDNN's channels-last convolutions lose to the default layout (512
    channels at 3x3 for 16 images: about 2x slower forward + backward on one thread;
    ``benchmarks/peers.py``). Either way the values are the same up to float rounding."""
    if x.dim() != 5:
        return x
    T, B, _, H, W = x.shape
    positions = T * B * ((H - 1) // stride + 1) * ((W - 1) // stride + 1)
    # not while torch.export traces: a rule on the batch size would fix a dynamic batch dimension
    # (torch.compile recompiles for another batch size anyway, so it keeps the rule)
    if (
        x.device.type == "cpu"
        and not torch.compiler.is_exporting()
        and channels >= _CPU_DEFAULT_LAYOUT_CHANNELS
        and positions < _CPU_DEFAULT_LAYOUT_BELOW * channels
    ):
        return x.contiguous()
    return channels_last_steps(x)


class MSBlock(MemorySetting, nn.Module):
    """Membrane-shortcut basic block: ``BN2(Conv2(LIF(BN1(Conv1(LIF(x)))))) + shortcut(x)``.

    Args:
        in_channels, out_channels: channels of ``x`` and of the output.
        stride: stride of ``Conv1`` and of the shortcut.
        lif: keyword arguments of both :class:`~gac_coding.LIF` neurons (a recipe).
        bn_weight: initial weight of BN1 and of the shortcut BN (``None``: PyTorch default, 1).
        bn2_weight: initial weight of BN2 (``None``: PyTorch default).
        memory: what training keeps for the backward pass (:mod:`gac_coding.ops.memory`):
            ``"default"``; ``"lean"``, spikes as bits, BN1 and the second LIF one op, a strided
            shortcut's input subsampled; ``"checkpoint"``, the block's input alone, the block run
            again (lean) in the backward pass. The same numbers in every mode.

    A block inside a channels-last :class:`MSResNet` (``channels_last = True``) converts its input to
    the layout it runs fastest in (see :class:`MSResNet`); a block on its own keeps its input's.

    Example:
        >>> import torch
        >>> from gac_coding.models import MSBlock
        >>> block = MSBlock(8, 16, stride=2)
        >>> block(torch.randn(4, 2, 8, 6, 6)).shape    # [T, B, C, H, W]
        torch.Size([4, 2, 16, 3, 3])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        lif: dict[str, Any] | None = None,
        bn_weight: float | None = None,
        bn2_weight: float | None = None,
        memory: str = "default",
    ) -> None:
        super().__init__()
        lif = dict(RECIPES["cifar"] if lif is None else lif)  # a copy
        self.channels_last = False  # set by MSResNet
        self.stride = stride
        self.lif1 = LIF(**lif)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.lif2 = LIF(**lif)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
            if bn_weight is not None:
                nn.init.constant_(self.shortcut[1].weight, bn_weight)  # type: ignore[arg-type]
        else:
            self.shortcut = nn.Identity()
        if bn_weight is not None:
            nn.init.constant_(self.bn1.weight, bn_weight)
        if bn2_weight is not None:
            nn.init.constant_(self.bn2.weight, bn2_weight)
        self.memory = memory

    def _set_memory(self, mode: str) -> None:
        self.lif1.memory = self.lif2.memory = "default" if mode == "default" else "lean"

    def forward(self, x: Tensor) -> Tensor:
        """``x: [T, B, C_in, H, W]`` (membrane potentials) -> ``[T, B, C_out, H', W']``."""
        if self.channels_last:
            x = _block_layout(x, self.bn2.num_features, self.stride)
        if self.memory == "checkpoint" and lean_active(self.memory):
            return checkpoint(self._forward, [self], x)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        T = x.shape[0]
        if lean_active(self.memory):
            b = self.lif1.backend
            s, bits = lean.lif(x, self.lif1.params, backend=b)
            y = lean.spike_conv2d(fold(s), self.conv1, bits, backend=b)
            s, bits = lean.bn_lif(y, self.bn1, self.lif2.params, T, backend=self.lif2.backend)
            y = self.bn2(lean.spike_conv2d(s, self.conv2, bits, backend=b))
            y += lean.block_shortcut(self.shortcut, fold(x))
            return unfold(y, T)
        y = self.bn1(self.conv1(fold(self.lif1(x))))
        y = self.bn2(self.conv2(fold(self.lif2(unfold(y, T)))))
        # in place: BN (or a convolution, should BN be folded away) does not keep its output
        y += self.shortcut(fold(x))
        return unfold(y, T)

    def extra_repr(self) -> str:
        return "" if self.memory == "default" else f"memory={self.memory!r}"


class MSResNet(PretrainedMixin, MemorySetting, nn.Module):
    """MS-ResNet with an encoder as its stem (GAC by default); logits ``[T, B, classes]``.

    Build the paper's models by name with :func:`gac_coding.models.create_model`; this class takes
    the architecture explicitly.

    Args:
        stages: ``(channels, blocks, first stride)`` per stage.
        num_classes: outputs of the linear head.
        T: time steps (held by the encoder: :attr:`T` reads it, :meth:`set_timesteps` changes it).
        recipe: ``"cifar"`` or ``"imagenet"`` (neuron settings, BN initialisation, checkpoint
            naming); the stem geometry is given separately.
        coding: the input coding, a name of :data:`gac_coding.coding.CODINGS`: ``"gac"`` (the GAC
            encoder, default), ``"direct"``, ``"rate"`` or ``"latency"``.
        in_channels: image channels.
        stem_channels: channels of the stem (the encoder's ``C``).
        stem_kernel, stem_stride, stem_padding: the stem convolution.
        encoder_kwargs: further settings of the coding's encoder (e.g. ``ta_ratio``,
            ``sca_kernel``, ``record`` for GAC; ``generator`` for rate coding); a setting the coding
            does not have raises ``TypeError``.
        channels_last: run the activations channels-last (``torch.channels_last`` per step; the
            input is converted on entry) and store the encoder's convolution weights so. The values
            are those of the default layout up to float rounding; oneDNN (CPU) and cuDNN
            convolutions run faster this way (``benchmarks/models.py``). Exception, on CPU only: a
            block of 256 channels or more whose output has fewer than ``2 * channels`` positions
            (``T * B * H' * W'``; e.g. the 512-channel stage of the ImageNet model at 3x3 or 7x7
            with 16 images) runs in the default layout, where oneDNN is faster for such
            weight-heavy convolutions (``benchmarks/peers.py``). The blocks' weights keep the
            default layout, which costs a channels-last convolution nothing on CPU (cuDNN converts
            them, a small copy per call). ``False`` keeps PyTorch's default layout.
        temporal_attention: the GAC encoder's temporal attention, ``"mlp"`` (the paper's, fixed
            ``T``; the default) or ``"conv"`` (any ``T``, see :meth:`set_timesteps`); a coding
            without one raises ``TypeError`` when it is given.
        backend: the backend setting of every neuron of the model, the encoder's included (see
            :class:`gac_coding.LIF`).
        memory: what training keeps for the backward pass (:mod:`gac_coding.ops.memory`):
            ``"default"``, ``"lean"`` (spikes as bits, BatchNorm and the LIF as one op, the
            encoder's gated LIF keeping its input) or ``"checkpoint"`` (each stage but the last
            keeps its input and runs again, lean, in the backward pass; the encoder goes with the
            first stage; the last stage, with the smallest activations, runs lean).
            The same numbers in every mode; see the README for when to choose which.
        gac: deprecated: ``gac=True`` / ``False`` for ``coding="gac"`` / ``"direct"``.

    Example:
        >>> import torch
        >>> from gac_coding.models import MSResNet
        >>> net = MSResNet([(8, 1, 1), (16, 1, 2)], num_classes=3, T=2, stem_channels=8)
        >>> net(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 2, 3])
    """

    def __init__(
        self,
        stages: Sequence[tuple[int, int, int]],
        num_classes: int,
        T: int,
        recipe: str = "cifar",
        coding: str = "gac",
        in_channels: int = 3,
        stem_channels: int = 64,
        stem_kernel: int = 3,
        stem_stride: int = 1,
        stem_padding: int = 1,
        encoder_kwargs: dict[str, Any] | None = None,
        channels_last: bool = True,
        temporal_attention: str | None = None,
        backend: str = "auto",
        *,
        memory: str = "default",
        gac: bool | None = None,
    ) -> None:
        super().__init__()
        coding = coding_from_gac_flag(coding, gac, "MSResNet(gac=...)")
        recipe = choice("recipe", recipe, sorted(RECIPES))
        for name, value in (("num_classes", num_classes), ("T", T), ("in_channels", in_channels)):
            positive_int(name, value)
        boolean("channels_last", channels_last)
        specs = [tuple(s) for s in stages]
        try:
            if not specs or any(len(spec) != 3 for spec in specs):
                raise ValueError("stages")
            for spec in specs:
                for value in spec:
                    positive_int("stages", value)
        except (TypeError, ValueError):
            raise ValueError(
                f"stages: expected a non-empty list of (channels, blocks, stride) positive ints, "
                f"got {specs!r}"
            ) from None
        lif: dict[str, Any] = dict(RECIPES[recipe], backend=check_backend(backend))
        self.recipe = recipe
        #: the input coding (a name of :data:`gac_coding.coding.CODINGS`)
        self.coding = coding
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.stage_specs: tuple[tuple[int, ...], ...] = tuple(specs)
        threshold = float(lif["threshold"])
        bn_weight = threshold if recipe == "imagenet" else None
        bn2_weight = 0.0 if recipe == "imagenet" else None

        self.encoder: StemEncoder = build_encoder(
            coding, in_channels, stem_channels, T, stem_kernel, stem_stride, stem_padding,
            neuron=lif, temporal_attention=temporal_attention, encoder_kwargs=encoder_kwargs,
        )  # fmt: skip
        if bn_weight is not None:
            nn.init.constant_(self.encoder.bn.weight, bn_weight)

        self.stages = nn.ModuleList()
        channels = stem_channels
        for width, blocks, stride in self.stage_specs:
            stage = nn.Sequential()
            for j in range(blocks):
                first = stride if j == 0 else 1
                stage.append(MSBlock(channels, width, first, lif, bn_weight=bn_weight, bn2_weight=bn2_weight))
                channels = width
            self.stages.append(stage)
        self.head_lif = LIF(**lif)
        self.fc = nn.Linear(channels, num_classes)
        self.channels_last = channels_last
        if channels_last:
            self.encoder.to(memory_format=torch.channels_last)  # the 4-d (convolution) weights
            for block in self.modules():
                if isinstance(block, MSBlock):
                    block.channels_last = True
        self.memory = memory

    def _set_memory(self, mode: str) -> None:
        inner = "default" if mode == "default" else "lean"
        for m in (self.encoder, self.head_lif, *self.stages.modules()):
            if isinstance(m, MemorySetting):
                m.memory = inner

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
        """Change the number of time steps of the built model: the encoder's, which the model
        reads (see :meth:`gac_coding.GACEncoder.set_timesteps`). The backbone runs at any ``T``;
        a GAC stem with the paper's ``"mlp"`` temporal attention refuses a call at another ``T``
        than it was built for (``ValueError``), the ``"conv"`` one and the other codings do not.

        Example:
            >>> import torch
            >>> from gac_coding.models import create_model
            >>> m = create_model("msresnet_tiny", T=4, in_channels=1, temporal_attention="conv")
            >>> m.set_timesteps(2)
            >>> m(torch.rand(3, 1, 8, 8)).shape, m.T, m.encoder.T
            (torch.Size([2, 3, 10]), 2, 2)
        """
        self.encoder.set_timesteps(T)

    def features(self, x: Tensor) -> Tensor:
        """Output of the last stage, ``[T, B, C, H', W']`` (membrane potentials, before the head)."""
        if self.memory == "checkpoint" and lean_active(self.memory) and isinstance(x, Tensor):
            # each stage keeps its input; the encoder goes with the first (a static image is
            # smaller than the T steps of its code)
            if torch.compiler.is_compiling() and getattr(self.encoder, "record", False):
                # the compiler's checkpoint allows no side effect such as the encoder's record
                h = checkpoint(self.stages[0], [self.stages[0]], self._encode(x))
            else:
                h = checkpoint(self._first_stage, [self.encoder, self.stages[0]], x)
            for i, stage in enumerate(self.stages[1:], 1):
                # the last stage runs lean: its activations are the smallest, its recomputation
                # would cost as much time as any other stage's
                h = checkpoint(stage, [stage], h) if i < len(self.stages) - 1 else stage(h)
            return h
        h = self._first_stage(x)
        for stage in self.stages[1:]:
            h = stage(h)
        return h

    def _encode(self, x: Tensor) -> Tensor:
        return self.encoder(channels_last_steps(x) if self.channels_last else x)

    def _first_stage(self, x: Tensor) -> Tensor:
        return self.stages[0](self._encode(x))

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C_in, H, W]`` (a static batch) or ``[T, B, C_in, H, W]`` -> ``[T, B, classes]``."""
        spikes = self.head_lif(self.features(x))
        return self.fc(spikes.mean((3, 4)))

    def extra_repr(self) -> str:
        return (
            f"recipe={self.recipe!r}, coding={self.coding!r}, T={self.T}, num_classes={self.num_classes}, "
            f"channels_last={self.channels_last}"
            + ("" if self.memory == "default" else f", memory={self.memory!r}")
        )


# ------------------------------------------------------------------------------------------------
# Builders of the registered models
# ------------------------------------------------------------------------------------------------

CIFAR_STAGES = ((128, 3, 1), (256, 3, 2), (512, 2, 2))
TINY_STAGES = ((16, 1, 1), (32, 1, 2), (64, 1, 2))


def _imagenet_stages(blocks: Sequence[int]) -> tuple[tuple[int, int, int], ...]:
    return tuple((w, n, 2) for w, n in zip((64, 128, 256, 512), blocks, strict=True))


def msresnet18_cifar(
    num_classes: int = 10, T: int = 6, coding: str = "gac", *, gac: bool | None = None, **kwargs: Any
) -> MSResNet:
    """GAC-MS-ResNet-18, CIFAR recipe (3x3 stem, 128/256/512 x 3/3/2 blocks); 12.63 M params at 10 classes."""
    return MSResNet(
        CIFAR_STAGES, num_classes, T, "cifar", builder_coding(coding, gac),
        stem_channels=64, stem_kernel=3, stem_stride=1, stem_padding=1, **kwargs,
    )  # fmt: skip


def msresnet18_imagenet(
    num_classes: int = 1000, T: int = 4, coding: str = "gac", *, gac: bool | None = None, **kwargs: Any
) -> MSResNet:
    """GAC-MS-ResNet-18, ImageNet recipe (7x7/2 stem, no max-pool, [2, 2, 2, 2]); 11.82 M params."""
    return MSResNet(
        _imagenet_stages((2, 2, 2, 2)), num_classes, T, "imagenet", builder_coding(coding, gac),
        stem_channels=64, stem_kernel=7, stem_stride=2, stem_padding=3, **kwargs,
    )  # fmt: skip


def msresnet34_imagenet(
    num_classes: int = 1000, T: int = 4, coding: str = "gac", *, gac: bool | None = None, **kwargs: Any
) -> MSResNet:
    """GAC-MS-ResNet-34, ImageNet recipe (7x7/2 stem, no max-pool, [3, 4, 6, 3]); 21.93 M params."""
    return MSResNet(
        _imagenet_stages((3, 4, 6, 3)), num_classes, T, "imagenet", builder_coding(coding, gac),
        stem_channels=64, stem_kernel=7, stem_stride=2, stem_padding=3, **kwargs,
    )  # fmt: skip


def msresnet_tiny(
    num_classes: int = 10, T: int = 4, coding: str = "gac", *, gac: bool | None = None, **kwargs: Any
) -> MSResNet:
    """A small MS-ResNet (16-channel stem; 16/32/64 x 1 block) for 8x8..32x32 inputs on a CPU."""
    return MSResNet(
        TINY_STAGES, num_classes, T, "cifar", builder_coding(coding, gac),
        stem_channels=16, stem_kernel=3, stem_stride=1, stem_padding=1, **kwargs,
    )  # fmt: skip


DVS_STAGES = ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))


def msresnet18_dvs(
    num_classes: int = 10,
    T: int = 10,
    coding: str = "gac",
    frame_size: int = 48,
    *,
    gac: bool | None = None,
    **kwargs: Any,
) -> MSResNet:
    """GAC-MS-ResNet-18 for event frames: 2 input channels, CIFAR recipe neurons, 64/128/256/512 x 2
    blocks (strides 1, 2, 2, 2).

    The stem is a 3x3 convolution, stride 1 for 48- or 64-pixel frames and stride 2 for 128-pixel
    ones (``frame_size >= 96``), so the last stage sees 6x6, 8x8 or 8x8 maps; 11.30 M params at 10 classes.
    """
    integer("frame_size", frame_size, 8)
    kwargs.setdefault("in_channels", 2)
    return MSResNet(
        DVS_STAGES, num_classes, T, "cifar", builder_coding(coding, gac), stem_channels=64,
        stem_kernel=3, stem_stride=2 if frame_size >= 96 else 1, stem_padding=1, **kwargs,
    )  # fmt: skip


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (weights, biases, BN affine; not BN running statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__getattr__ = moved_names(__name__)  # DirectEncoder, which moved to gac_coding.coding
