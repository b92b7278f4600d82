"""Temporal attention, spatial-channel attention and the gate of GAC (docs/design/encoder.md §1, stages 3-5).

``TA[t, b] = f(mean_{chw} U[t, b]) + f(max_{chw} U[t, b])`` with a bias-free MLP ``f`` that mixes the
``T`` values of one sample; ``SCA = Conv_k(ReLU(Conv_k(U_t)))``; the output is
``O = sigmoid(TA * SCA) * S`` where ``S = LIF(U)``.

:func:`gated_lif` runs the LIF and the gate in one autograd node over the whole sequence: it never
materialises the ``T``-fold copy of a static input, nor ``TA * SCA``, nor the surrogate gradient,
and its backward walks the steps once, producing the gradients of ``U``, ``TA`` and ``SCA``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from ._checks import choice as _choice
from ._checks import positive_int as _positive_int
from .ops import lean
from .ops.backends import BackendSetting, check_backend
from .ops.memory import MemorySetting, lean_active
from .ops.params import RECIPES, LIFParams, LIFSettings, SurrogateLike

__all__ = [
    "TEMPORAL_ATTENTIONS",
    "ConvTemporalAttention",
    "GatedAttentionUnit",
    "SpatialChannelAttention",
    "TemporalAttention",
    "gated_lif",
    "make_temporal_attention",
]


class TemporalAttention(nn.Module):
    """One attention score per time step and sample, from the ``T`` pooled membranes of the sample.

    The paper's form: a bias-free MLP of width ``T`` mixes the ``T`` values of one sample, so the
    module only runs at the ``T`` it was built for, its :attr:`width` (a capacity fixed by the
    weights' shapes, not the current number of steps, which belongs to the encoder); a call at
    another ``T`` raises ``ValueError`` (see :class:`ConvTemporalAttention` for a T-agnostic one).

    Args:
        T: number of time steps it is built for (the MLP's width).
        ratio: reduction ratio ``r_t``; the hidden layer has ``max(1, T // ratio)`` units.

    Example:
        >>> import torch
        >>> from gac_coding.attention import TemporalAttention
        >>> ta = TemporalAttention(T=4)
        >>> ta(torch.randn(4, 2, 8, 5, 5)).shape, ta.width    # [T, B, C, H, W] -> [T, B]
        (torch.Size([4, 2]), 4)
    """

    kind = "mlp"

    def __init__(self, T: int, ratio: int = 2) -> None:
        super().__init__()
        #: the number of steps the MLP is built for (its input and output width)
        self.width = _positive_int("T", T)
        self.ratio = _positive_int("ratio", ratio)
        hidden = max(1, self.width // self.ratio)
        self.fc1 = nn.Linear(self.width, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, self.width, bias=False)

    def mlp(self, a: Tensor) -> Tensor:
        """The shared MLP on per-sample vectors ``a: [B, T]``."""
        return self.fc2(F.relu(self.fc1(a)))

    def check_steps(self, steps: int) -> None:
        """Raise ``ValueError`` unless the MLP can run at ``steps`` time steps (its :attr:`width`)."""
        if steps != self.width:
            raise ValueError(
                f"T: the paper's temporal attention (temporal_attention='mlp') is an MLP over the "
                f"{self.width} time steps it was built for, so it cannot run at T={steps}; build the "
                f"model with temporal_attention='conv' (no T-sized weights) to change the number of "
                f"steps, or set_timesteps({self.width}) back"
            )

    def from_stats(self, avg: Tensor, peak: Tensor) -> Tensor:
        """``TA`` from pooled statistics ``avg, peak: [T, B]``; returns ``[T, B]``."""
        self.check_steps(avg.shape[0])
        return (self.mlp(avg.t()) + self.mlp(peak.t())).t()

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() < 3:
            raise ValueError(f"u: expected [T={self.width}, B, ...], got shape {tuple(u.shape)}")
        self.check_steps(u.shape[0])
        flat = u.flatten(2)
        return self.from_stats(flat.mean(2), flat.amax(2))

    def extra_repr(self) -> str:
        return f"width={self.width}, ratio={self.ratio}"


class ConvTemporalAttention(nn.Module):
    """A temporal attention with no ``T``-sized weights: it runs at any number of steps.

    ``TA[:, b] = f(mean_{chw} U[:, b]) + f(max_{chw} U[:, b])`` as in the paper, but the shared
    ``f`` is a bias-free 1-D convolution over time, ``Conv1d(1, hidden, k) -> ReLU ->
    Conv1d(hidden, 1, k)`` with zero "same" padding, instead of an MLP across all ``T`` steps.

    Why a convolution: the score of a step is then a function of the statistics of its
    neighbourhood (``2k - 1`` steps wide for the two layers), the same function at every step and
    for every sequence length. A model trained at one ``T`` can run at another (fewer steps for
    latency and energy, event streams of varying length), and a shift in time shifts the scores
    (for steps away from the ends, where the zero padding sits). ``k = 3`` (one step either side per
    layer) keeps the receptive field small enough that a step's score is still local at ``T = 4``,
    as in ECA-Net's 1-D convolution over channels; ``hidden = 4`` filters.

    Args:
        kernel_size: ``k``, odd (the padding is symmetric).
        hidden: filters of the hidden layer.

    Example:
        >>> import torch
        >>> from gac_coding.attention import ConvTemporalAttention
        >>> ta = ConvTemporalAttention()
        >>> ta(torch.randn(4, 2, 8, 5, 5)).shape, ta(torch.randn(7, 2, 8, 5, 5)).shape
        (torch.Size([4, 2]), torch.Size([7, 2]))
    """

    kind = "conv"

    def __init__(self, kernel_size: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd integer (symmetric padding), got {kernel_size}")
        self.hidden = _positive_int("hidden", hidden)
        pad = self.kernel_size // 2
        self.conv1 = nn.Conv1d(1, self.hidden, self.kernel_size, padding=pad, bias=False)
        self.conv2 = nn.Conv1d(self.hidden, 1, self.kernel_size, padding=pad, bias=False)

    def check_steps(self, steps: int) -> None:
        """Any number of steps >= 1 is accepted."""
        _positive_int("T", steps)

    def from_stats(self, avg: Tensor, peak: Tensor) -> Tensor:
        """``TA`` from pooled statistics ``avg, peak: [T, B]``; returns ``[T, B]``."""
        T, B = avg.shape
        both = torch.cat((avg.t(), peak.t())).unsqueeze(1)  # [2B, 1, T]: f runs once on both
        scores = self.conv2(F.relu(self.conv1(both))).view(2, B, T)
        return (scores[0] + scores[1]).t()

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() < 3:
            raise ValueError(f"u: expected [T, B, ...], got shape {tuple(u.shape)}")
        flat = u.flatten(2)
        return self.from_stats(flat.mean(2), flat.amax(2))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, hidden={self.hidden}"


#: The accepted values of ``temporal_attention=``.
TEMPORAL_ATTENTIONS: tuple[str, ...] = ("mlp", "conv")


def make_temporal_attention(kind: str, T: int, ratio: int = 2) -> TemporalAttention | ConvTemporalAttention:
    """``TemporalAttention(T, ratio)`` for ``"mlp"``, ``ConvTemporalAttention()`` for ``"conv"``."""
    if _choice("temporal_attention", kind, TEMPORAL_ATTENTIONS) == "mlp":
        return TemporalAttention(T, ratio)
    return ConvTemporalAttention()


class SpatialChannelAttention(nn.Module):
    """Per-step spatial-channel score map ``Conv_k(ReLU(Conv_k(U_t)))`` (no bias, "same" padding).

    For an even kernel the padding is 1 pixel before and ``k - 2`` after on each axis (PyTorch's
    ``padding="same"``), as in the released weights.

    Args:
        channels: ``C``.
        ratio: ``r_sc``; the hidden layer has ``C // ratio`` channels.
        kernel_size: ``k`` (4 in the paper).
    """

    def __init__(self, channels: int, ratio: int = 1, kernel_size: int = 4) -> None:
        super().__init__()
        channels = _positive_int("channels", channels)
        ratio = _positive_int("ratio", ratio)
        kernel_size = _positive_int("kernel_size", kernel_size)
        hidden = channels // ratio
        if hidden < 1:
            raise ValueError(f"ratio: channels // ratio must be >= 1, got channels={channels}, ratio={ratio}")
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size, bias=False)
        self.conv2 = nn.Conv2d(hidden, channels, kernel_size, bias=False)
        before = (kernel_size - 1) // 2
        self._pad = (before, kernel_size - 1 - before) * 2  # (left, right, top, bottom)

    def forward(self, u: Tensor) -> Tensor:
        """``u: [N, C, H, W]`` (fold time into ``N``) -> ``[N, C, H, W]``."""
        hidden = F.relu(self.conv1(F.pad(u, self._pad)))
        return self.conv2(F.pad(hidden, self._pad))


def gated_lif(
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    decay: float = 0.5,
    threshold: float = 1.0,
    surrogate: SurrogateLike = "triangle",
    detach_reset: bool = False,
    *,
    static: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Spikes of ``u`` gated by ``sigmoid(ta * sca)``, fused over time.

    Args:
        u: membrane input ``[T, B, ...]``, or with ``static=True`` one step ``[B, ...]`` applied at
            every step.
        ta: temporal scores ``[T, B]``.
        sca: spatial-channel scores, ``[B, ...]`` (the same at every step) or ``[T, B, ...]``.
        decay, threshold, surrogate, detach_reset: the LIF (see :class:`gac_coding.LIF`).
        static: whether ``u`` is a single step repeated ``T = ta.shape[0]`` times.
        backend: the backend setting (see :class:`gac_coding.LIF`).

    Returns:
        ``(out, spikes, gate)``: the gated output ``[T, B, ...]`` (differentiable), the spikes
        (0./1. in the dtype of ``u``) and the gate ``sigmoid(ta * sca)`` (both detached).
    """
    params = LIFParams(decay, threshold, surrogate, detach_reset)
    return ops.gated_lif(u, ta, sca, params, static=static, backend=backend)


class GatedAttentionUnit(LIFSettings, BackendSetting, MemorySetting, nn.Module):
    """Gate spikes with temporal and spatial-channel attention computed from the membrane input.

    ``O = sigmoid(TA(U) * SCA(U)) * LIF(U)``, values in ``[0, 1)``, zero wherever no spike.

    The unit holds no number of time steps of its own: a sequence ``U: [T, B, C, H, W]`` brings
    its ``T``, and a static ``U`` (one step standing for all) is given ``T`` by its caller, the
    encoder that owns it (:meth:`gate_and_fire`). The paper's ``"mlp"`` temporal attention has a
    width, the ``T`` it is built for, and refuses any other.

    Args:
        channels: ``C`` of ``U``.
        T: the width of the ``"mlp"`` temporal attention (the number of steps it runs at); unused
            by ``"conv"``.
        ta_ratio, sca_ratio, sca_kernel: ``r_t``, ``r_sc``, ``k`` (paper: 2, 1, 4).
        decay, threshold, surrogate, detach_reset: the LIF that makes ``S``; CIFAR recipe default.
        temporal_attention: ``"mlp"`` (the paper's :class:`TemporalAttention`, fixed ``T``) or
            ``"conv"`` (:class:`ConvTemporalAttention`, any ``T``).
        backend: what computes the fused LIF+gate (see :class:`gac_coding.LIF`).
        memory: ``"default"`` or ``"lean"`` (:mod:`gac_coding.ops.memory`): in training, the fused
            LIF+gate keeps its inputs and recomputes the membranes, spikes and gate in the
            backward pass. Needs a named surrogate.

    Example:
        >>> import torch, gac_coding as gac
        >>> unit = gac.GatedAttentionUnit(channels=8, T=4)
        >>> o = unit(torch.randn(4, 2, 8, 5, 5))    # U: [T, B, C, H, W]
        >>> o.shape, bool((o >= 0).all() and (o < 1).all())
        (torch.Size([4, 2, 8, 5, 5]), True)
    """

    def __init__(
        self,
        channels: int,
        T: int,
        ta_ratio: int = 2,
        sca_ratio: int = 1,
        sca_kernel: int = 4,
        decay: float = RECIPES["cifar"].decay,
        threshold: float = RECIPES["cifar"].threshold,
        surrogate: SurrogateLike = "triangle",
        detach_reset: bool = False,
        temporal_attention: str = "mlp",
        backend: str = "auto",
        memory: str = "default",
    ) -> None:
        super().__init__()
        T = _positive_int("T", T)
        self.channels = _positive_int("channels", channels)
        self.backend = check_backend(backend)
        self.ta = make_temporal_attention(temporal_attention, T, ta_ratio)
        self.sca = SpatialChannelAttention(self.channels, sca_ratio, sca_kernel)
        #: the LIF's settings (checked once, here)
        self.params = LIFParams(decay, threshold, surrogate, detach_reset)
        self.memory = memory

    memory_modes = ("default", "lean")

    def _set_memory(self, mode: str) -> None:
        if mode == "lean":
            lean.check_lean_params(self.params, "memory (GatedAttentionUnit)")

    @property
    def temporal_attention(self) -> str:
        """``"mlp"`` or ``"conv"``: the kind of temporal attention."""
        return str(self.ta.kind)

    def gate_and_fire(
        self, u: Tensor, static: bool = False, T: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(out, spikes, gate, ta)`` for ``u: [T, B, C, H, W]`` or, static, ``[B, C, H, W]``
        standing for ``T`` identical steps (``T`` required then).

        ``spikes`` (0./1.), ``gate`` and ``ta`` are detached; only ``out`` carries gradients.
        """
        if static:
            if T is None:
                raise ValueError("T: a static u (one step standing for all) needs the number of steps")
            flat = u.flatten(1)
            ones = flat.new_ones(T, 1)
            ta = self.ta.from_stats(ones * flat.mean(1), ones * flat.amax(1))
            sca = self.sca(u)
        else:
            ta = self.ta(u)
            sca = self.sca(u.flatten(0, 1)).view(u.shape)
        fuse = lean.gated_lif if lean_active(self.memory) else ops.gated_lif
        out, fired, gate = fuse(u, ta, sca, self.params, static=static, backend=self.backend)
        return out, fired, gate, ta.detach()

    def forward(self, u: Tensor) -> Tensor:
        """``U: [T, B, C, H, W]`` -> ``O``, the same shape."""
        if not isinstance(u, Tensor):
            raise TypeError(f"u: expected a torch.Tensor, got {type(u).__name__}")
        width = getattr(self.ta, "width", None)  # the "mlp" attention's fixed T
        if u.dim() != 5 or u.shape[2] != self.channels or (width is not None and u.shape[0] != width):
            steps = "T" if width is None else f"T={width}"
            raise ValueError(f"u: expected [{steps}, B, C={self.channels}, H, W], got shape {tuple(u.shape)}")
        return self.gate_and_fire(u)[0]

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, temporal_attention={self.temporal_attention!r}, "
            f"backend={self.backend!r}" + ("" if self.memory == "default" else f", memory={self.memory!r}")
        )
