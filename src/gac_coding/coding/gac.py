"""Gated Attention Coding: the stem, a LIF and the attention gate (docs/design/encoder.md §1-3).

A static image batch ``[B, C, H, W]`` (direct coding) takes the exact fast path: the stem, its BN
and the spatial-channel attention run once per sample instead of ``T`` times, the temporal attention
sees a constant vector, and only the LIF and the gate (fused in one autograd node) run over ``T``.
A sequence ``[T, B, C, H, W]`` computes everything per step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..attention import GatedAttentionUnit
from ..neuron import SurrogateLike
from ..ops.memory import MemorySetting, checkpoint, lean_active
from .base import StemEncoder
from .registry import register_coding

__all__ = ["GACEncoder"]


@register_coding
class GACEncoder(MemorySetting, StemEncoder):
    """Gated Attention Coding: image (or frame sequence) -> gated spike code ``[T, B, C, H', W']``.

    ``U = BN(Conv(X_t))``, ``S = LIF(U)``, ``O = sigmoid(TA(U) * SCA(U)) * S``. Defaults are the
    CIFAR recipe of the paper (3x3 stem, LIF decay 0.5, threshold 1.0, triangle surrogate).

    The output is **not binary**: values lie in ``[0, 1)`` and are zero wherever ``S`` is. A
    backbone that starts with a LIF (as MS-ResNet does) turns it back into spikes; a backbone whose
    first layer is a convolution would multiply real values. ``binarize=True`` emits
    ``[O > 0.5]`` instead (a spike survives where its gate exceeds 0.5), with a straight-through
    gradient.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the code (``C``).
        T: number of time steps (>= 1).
        kernel_size, stride, padding: the stem convolution (no bias).
        decay, threshold, surrogate, detach_reset: the encoder's LIF (docs/design/recipes.md §2).
        ta_ratio, sca_ratio, sca_kernel: attention sizes (paper: 2, 1, 4).
        temporal_attention: ``"mlp"`` (the paper's, an MLP of width ``T``: the encoder runs at the
            ``T`` it was built for only) or ``"conv"`` (a 1-D convolution over time with no
            ``T``-sized weights, :class:`~gac_coding.attention.ConvTemporalAttention`: any ``T``,
            see :meth:`set_timesteps`).
        binarize: emit binary spikes (see above).
        backend: what computes the fused LIF+gate (see :class:`gac_coding.LIF`); also the
            :attr:`backend` attribute.
        memory: what training keeps for the backward pass (:mod:`gac_coding.ops.memory`):
            ``"default"``; ``"lean"``, the fused LIF+gate keeps its input (one step for a static
            image) and recomputes the membranes; ``"checkpoint"``, the encoder keeps its input
            alone and runs again in the backward pass. The same numbers in every mode.
        record: keep the spikes and gate of the last call (:attr:`last_spikes`, :attr:`last_gate`)
            for inspection. The record stays out of pickles, ``torch.save`` of the whole model and
            ``copy.deepcopy`` (a saved or copied encoder has none until its next call), is not part
            of the ``state_dict``, and is not kept while ``torch.export`` traces the encoder.

    Example:
        >>> import torch, gac_coding as gac
        >>> enc = gac.GACEncoder(in_channels=3, out_channels=16, T=4)
        >>> o = enc(torch.rand(2, 3, 8, 8))          # static batch: direct coding, fast path
        >>> o.shape
        torch.Size([4, 2, 16, 8, 8])
        >>> bool(((o == 0) | (enc.last_spikes == 1)).all())
        True
    """

    coding = "gac"
    label = "GAC"
    takes_neuron = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        T: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        *,
        decay: float = 0.5,
        threshold: float = 1.0,
        surrogate: SurrogateLike = "triangle",
        detach_reset: bool = False,
        ta_ratio: int = 2,
        sca_ratio: int = 1,
        sca_kernel: int = 4,
        temporal_attention: str = "mlp",
        binarize: bool = False,
        record: bool = True,
        backend: str = "auto",
        memory: str = "default",
    ) -> None:
        super().__init__(in_channels, out_channels, T, kernel_size, stride, padding)
        self.gate = GatedAttentionUnit(
            out_channels,
            self.T,
            ta_ratio=ta_ratio,
            sca_ratio=sca_ratio,
            sca_kernel=sca_kernel,
            decay=decay,
            threshold=threshold,
            surrogate=surrogate,
            detach_reset=detach_reset,
            temporal_attention=temporal_attention,
            backend=backend,
        )
        self.binarize = bool(binarize)
        self.record = bool(record)
        self._last: tuple[Tensor, Tensor, Tensor] | None = None
        self.memory = memory

    def _set_memory(self, mode: str) -> None:
        self.gate.memory = "default" if mode == "default" else "lean"

    @property
    def backend(self) -> str:
        """The backend setting of the encoder's fused LIF+gate (that of :attr:`gate`)."""
        return self.gate.backend

    @backend.setter
    def backend(self, value: str) -> None:
        self.gate.backend = value

    # ------------------------------------------------------------------ inspection
    @property
    def last_spikes(self) -> Tensor | None:
        """Spikes ``S`` of the last call, ``[T, B, C, H', W']`` (0./1., detached), or ``None``."""
        if self._last is None:
            return None
        fired, gate, _ = self._last
        return fired.to(gate.dtype)

    @property
    def last_gate(self) -> Tensor | None:
        """Gate ``sigmoid(TA * SCA)`` of the last call, ``[T, B, C, H', W']`` (detached)."""
        return None if self._last is None else self._last[1]

    @property
    def last_temporal_attention(self) -> Tensor | None:
        """``TA`` of the last call, ``[T, B]`` (detached)."""
        return None if self._last is None else self._last[2]

    def set_timesteps(self, T: int) -> None:
        """Change the number of time steps of the built encoder.

        Static inputs then give ``[T, B, ...]`` and sequences of ``T`` steps are accepted. With the
        paper's temporal attention (``temporal_attention="mlp"``, an MLP of width equal to the
        ``T`` it was built for) a later call at another ``T`` raises ``ValueError``; the ``"conv"``
        attention runs at any ``T``.

        Example:
            >>> import torch, gac_coding as gac
            >>> enc = gac.GACEncoder(1, 4, T=4, temporal_attention="conv")
            >>> enc.set_timesteps(7)
            >>> enc(torch.rand(2, 1, 6, 6)).shape
            torch.Size([7, 2, 4, 6, 6])
        """
        super().set_timesteps(T)

    def __getstate__(self) -> dict:
        # the record of the last call is for inspection: pickles, torch.save and deepcopy skip it
        state = super().__getstate__()
        state["_last"] = None
        return state

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x: [B, C_in, H, W]`` (static) or ``[T, B, C_in, H, W]`` -> ``[T, B, C, H', W']``."""
        # (not under torch.compile while recording: its checkpoint allows no side effect)
        recording = self.record and torch.compiler.is_compiling()
        if (
            self.memory == "checkpoint"
            and lean_active(self.memory)
            and isinstance(x, Tensor)
            and not recording
        ):
            return checkpoint(self._encode, [self], x)
        return self._encode(x)

    def _encode(self, x: Tensor) -> Tensor:
        u, static = self.membrane(x)
        out, fired, m, ta = self.gate.gate_and_fire(u, static=static, T=self.T)
        # no record while torch.export traces: it would keep the tracer's fake tensors
        keep = self.record and not torch.compiler.is_exporting()
        self._last = (fired, m, ta) if keep else None
        if self.binarize:
            hard = (out > 0.5).to(out.dtype)
            out = out + (hard - out).detach()
        return out

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, temporal_attention={self.gate.temporal_attention!r}, binarize={self.binarize}, "
            f"backend={self.backend!r}" + ("" if self.memory == "default" else f", memory={self.memory!r}")
        )
