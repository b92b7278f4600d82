"""The GAC encoder: stem convolution + BN, LIF, attention gate (docs/design/encoder.md §1-3).

A static image batch ``[B, C, H, W]`` (direct coding) takes the exact fast path: the stem, its BN
and the spatial-channel attention run once per sample instead of ``T`` times, the temporal attention
sees a constant vector, and only the LIF and the gate (fused in one autograd node) run over ``T``.
A sequence ``[T, B, C, H, W]`` computes everything per step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import nonnegative_int, positive_int
from .attention import GatedAttentionUnit, GateStatistics
from .neuron import SurrogateLike

__all__ = ["GACEncoder", "StemEncoder", "check_image_input"]


def check_image_input(
    x: object,
    *,
    in_channels: int,
    T: int,
    name: str = "x",
    min_size: tuple[int, int] = (1, 1),
    check_finite: bool | None = None,
) -> bool:
    """Validate a static ``[B, C, H, W]`` or sequence ``[T, B, C, H, W]`` input.

    Returns ``True`` for a static batch, ``False`` for a sequence. Raises ``TypeError`` or
    ``ValueError`` naming ``name``, what was expected and what arrived.

    ``check_finite``: whether to reject NaN or infinite values. ``None`` (default): only for CPU
    tensors, because on an accelerator the check is a blocking device-to-host copy on every call;
    ``True`` checks any device (and waits for it), ``False`` never checks.

    Under ``torch.compile`` / ``torch.export`` the type, rank, channel and ``T`` checks run while
    tracing, the batch and spatial sizes are checked with ``torch._check`` (a guard or a runtime
    assertion on dynamic sizes, with a shorter message), and the values are not checked.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = (
            " (convert images first, e.g. x.float() / 255)"
            if x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
            else ""
        )
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}{hint}")
    if x.dim() not in (4, 5):
        raise ValueError(
            f"{name}: expected a static batch [B, C, H, W] or a sequence [T, B, C, H, W], "
            f"got {x.dim()} dims with shape {tuple(x.shape)}"
        )
    static = x.dim() == 4
    if not static and x.shape[0] != T:
        raise ValueError(
            f"{name}: sequence has T={x.shape[0]} steps but the encoder was built for T={T} "
            f"(or set to it); shape {tuple(x.shape)}. To run at {x.shape[0]} steps, call "
            f"set_timesteps({x.shape[0]}) on the model first"
        )
    channel_dim = 1 if static else 2
    if x.shape[channel_dim] != in_channels:
        raise ValueError(
            f"{name}: expected {in_channels} channels at dim {channel_dim}, got "
            f"{x.shape[channel_dim]} (shape {tuple(x.shape)})"
        )
    if torch.compiler.is_compiling():
        # sizes that may be dynamic: checks that trace (the message must be a constant)
        batch_msg = f"{name}: expected a batch of at least 1"
        size_msg = f"{name}: spatial size too small for the stem, which needs at least {min_size}"
        torch._check(x.shape[channel_dim - 1] >= 1, lambda: batch_msg)
        torch._check(x.shape[-2] >= min_size[0], lambda: size_msg)
        torch._check(x.shape[-1] >= min_size[1], lambda: size_msg)
        return static
    if x.shape[channel_dim - 1] < 1:
        raise ValueError(f"{name}: expected a batch of at least 1, got shape {tuple(x.shape)}")
    if x.shape[-2] < min_size[0] or x.shape[-1] < min_size[1]:
        raise ValueError(
            f"{name}: spatial size {tuple(x.shape[-2:])} is too small for the stem, which needs "
            f"at least {min_size} (shape {tuple(x.shape)})"
        )
    if check_finite is None:
        check_finite = x.device.type == "cpu"
    if check_finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return static


class StemEncoder(nn.Module):
    """The stem every encoder starts with: ``U_t = BN(Conv(X_t))`` on each step.

    A static batch ``[B, C, H, W]`` runs the convolution and BatchNorm once for all ``T`` steps,
    with BatchNorm statistics as for ``T`` identical copies (docs/design/encoder.md §2-3);
    :meth:`membrane` returns ``U`` and whether it is static. What reaches the backbone is the
    subclass's choice: :class:`GACEncoder` gates the spikes of ``U``, the direct-coding
    :class:`~gac_coding.models.DirectEncoder` hands over ``U`` itself.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of ``U``.
        T: number of time steps (>= 1).
        kernel_size, stride, padding: the convolution (no bias).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        T: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
    ) -> None:
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        self.out_channels = positive_int("out_channels", out_channels)
        self.T = positive_int("T", T)
        kernel_size = positive_int("kernel_size", kernel_size)
        stride = positive_int("stride", stride)
        padding = nonnegative_int("padding", padding)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def set_timesteps(self, T: int) -> None:
        """Run at ``T`` steps from now on: static inputs give ``[T, B, ...]``, sequences of ``T``
        steps are accepted."""
        self.T = positive_int("T", T)

    def _min_input_size(self) -> tuple[int, int]:
        k = self.conv.kernel_size
        p = self.conv.padding
        return (max(1, k[0] - 2 * p[0]), max(1, k[1] - 2 * p[1]))  # type: ignore[operator]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size ``(H', W')`` of the code for an ``H x W`` input."""
        k, s, p = self.conv.kernel_size, self.conv.stride, self.conv.padding
        return (
            (height + 2 * p[0] - k[0]) // s[0] + 1,  # type: ignore[operator]
            (width + 2 * p[1] - k[1]) // s[1] + 1,  # type: ignore[operator]
        )

    def _check_params_match(self, x: Tensor) -> None:
        w = self.conv.weight
        if x.device != w.device:
            raise ValueError(
                f"x: is on {x.device} but the encoder's parameters are on {w.device}; "
                f"move one of them (x.to(...) or encoder.to(...))"
            )
        if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"x: dtype {x.dtype} does not match the encoder's parameters ({w.dtype}); "
                f"convert one of them or run under torch.autocast"
            )

    def _bn_static(self, y: Tensor) -> Tensor:
        """BN of one step standing for ``T`` identical steps (statistics as the naive formulation)."""
        bn = self.bn
        if not bn.training and bn.running_mean is not None:
            return bn(y)
        C = y.shape[1]
        count = y.numel() // C
        if count > 1:
            out = F.batch_norm(y, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
        elif self.T > 1:
            # one value per channel and step, T identical copies: zero mean deviation, zero variance
            mean = y.mean((0, 2, 3), keepdim=True)
            out = (y - mean) * torch.rsqrt(y.new_full((), bn.eps))
            if bn.weight is not None:
                out = out * bn.weight.view(1, C, 1, 1) + bn.bias.view(1, C, 1, 1)
        else:
            raise ValueError(
                f"x: training-mode BatchNorm needs more than one value per channel, got a "
                f"{tuple(y.shape)} stem output with T=1"
            )
        running_mean, running_var, tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
        if bn.track_running_stats and running_mean is not None and running_var is not None:
            assert tracked is not None  # BatchNorm keeps it whenever it tracks running statistics
            with torch.no_grad():
                n = count * self.T
                stat = y.detach().to(torch.promote_types(y.dtype, torch.float32))
                var, mean = torch.var_mean(stat, dim=(0, 2, 3), correction=0)
                tracked.add_(1)
                # momentum=None: cumulative average, weight 1 / batches seen (a tensor: no sync)
                factor: float | Tensor = (
                    bn.momentum if bn.momentum is not None else tracked.reciprocal().to(running_mean.dtype)
                )
                running_mean.lerp_(mean.to(running_mean.dtype), factor)
                running_var.lerp_((var * (n / (n - 1))).to(running_var.dtype), factor)
        return out

    def membrane(self, x: Tensor) -> tuple[Tensor, bool]:
        """Validated stem output ``U`` and whether it is static.

        ``U`` is ``[B, C, H', W']`` for a static input (standing for ``T`` identical steps) or
        ``[T, B, C, H', W']`` for a sequence.
        """
        static = check_image_input(x, in_channels=self.in_channels, T=self.T, min_size=self._min_input_size())
        self._check_params_match(x)
        if static:
            return self._bn_static(self.conv(x)), True
        y = self.bn(self.conv(x.flatten(0, 1)))
        return y.view(self.T, x.shape[1], *y.shape[1:]), False


class GACEncoder(StemEncoder):
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
        ta_bias, ta_activation, ta_source, gate: variants of the attention and the gate
            (docs/design/encoder.md §6; the defaults are the paper's): biases in the temporal
            attention (``True``/``False``), its activation (``"relu"``, ``"leaky_relu"``,
            ``"gelu"``), what it pools (``"stem"``: ``U``; ``"membrane"``: the LIF's membrane,
            which changes over time even for a static image), and how ``TA`` and ``SCA`` make the
            gate (``"product"``: ``sigmoid(TA * SCA)``; ``"separate"``: ``sigmoid(TA) *
            sigmoid(SCA)``; ``"sum"``: ``sigmoid(TA + SCA)``).
        binarize: emit binary spikes (see above).
        record: keep the spikes and gate of the last call (:attr:`last_spikes`, :attr:`last_gate`)
            for inspection, and, in eval mode, accumulate the gate's statistics
            (:meth:`gate_statistics`; tensors, no host synchronisation per call). The record stays
            out of pickles, ``torch.save`` of the whole model and ``copy.deepcopy`` (a saved or
            copied encoder has none until its next call), is not part of the ``state_dict``, and
            is not kept while ``torch.export`` traces the encoder (nor are statistics while
            ``torch.compile`` or ``torch.export`` trace it).

    Example:
        >>> import torch, gac_coding as gac
        >>> enc = gac.GACEncoder(in_channels=3, out_channels=16, T=4)
        >>> o = enc(torch.rand(2, 3, 8, 8))          # static batch: direct coding, fast path
        >>> o.shape
        torch.Size([4, 2, 16, 8, 8])
        >>> bool(((o == 0) | (enc.last_spikes == 1)).all())
        True
    """

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
        ta_bias: bool = False,
        ta_activation: str = "relu",
        ta_source: str = "stem",
        gate: str = "product",
        binarize: bool = False,
        record: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, T, kernel_size, stride, padding)
        self.gate = GatedAttentionUnit(
            out_channels,
            T,
            ta_ratio=ta_ratio,
            sca_ratio=sca_ratio,
            sca_kernel=sca_kernel,
            decay=decay,
            threshold=threshold,
            surrogate=surrogate,
            detach_reset=detach_reset,
            temporal_attention=temporal_attention,
            ta_bias=ta_bias,
            ta_activation=ta_activation,
            ta_source=ta_source,
            gate=gate,
        )
        self.binarize = bool(binarize)
        self.record = bool(record)
        self._last: tuple[Tensor, Tensor, Tensor] | None = None
        self._stats = GateStatistics()

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

    def gate_statistics(self, reset: bool = False) -> dict[str, Any] | None:
        """The gate's statistics over the eval-mode calls since the last reset (``None`` if none
        was recorded; training-mode calls add nothing, which keeps training at full speed):
        ``ta_zero_fraction``, ``gate_mean``, ``gate_time_std``, ``gate_space_std``, ``gate_min``,
        ``gate_max``, ``samples``, ``calls`` and the flags ``constant`` and ``constant_over_time``
        (:class:`~gac_coding.attention.GateStatistics`, docs/design/encoder.md §7). Reading
        waits for the device once; ``reset=True`` then starts afresh.

        Example:
            >>> import torch, gac_coding as gac
            >>> enc = gac.GACEncoder(1, 4, T=4)
            >>> _ = torch.nn.init.zeros_(enc.gate.ta.fc2.weight)   # a dead temporal attention: TA = 0
            >>> _ = enc.eval()(torch.rand(3, 1, 6, 6))
            >>> stats = enc.gate_statistics()
            >>> stats["ta_zero_fraction"], stats["gate_mean"], stats["constant"]
            (1.0, 0.5, True)
        """
        stats = self._stats.read()
        if reset:
            self._stats.reset()
        return stats

    def reset_gate_statistics(self) -> None:
        """Forget the gate statistics accumulated so far (see :meth:`gate_statistics`)."""
        self._stats.reset()

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
        self.gate.set_timesteps(self.T)

    def __getstate__(self) -> dict:
        # the record of the last call is for inspection: pickles, torch.save and deepcopy skip it
        state = super().__getstate__()
        state["_last"] = None
        state["_stats"] = GateStatistics()
        return state

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x: [B, C_in, H, W]`` (static) or ``[T, B, C_in, H, W]`` -> ``[T, B, C, H', W']``."""
        u, static = self.membrane(x)
        out, fired, m, ta = self.gate.gate_and_fire(u, static=static)
        # no record while torch.export traces: it would keep the tracer's fake tensors
        keep = self.record and not torch.compiler.is_exporting()
        self._last = (fired, m, ta) if keep else None
        if keep and not self.training and not torch.compiler.is_compiling():
            self._stats.update(m, ta)  # eval-mode calls only: a few passes over the gate
        if self.binarize:
            hard = (out > 0.5).to(out.dtype)
            out = out + (hard - out).detach()
        return out

    def extra_repr(self) -> str:
        return f"T={self.T}, temporal_attention={self.gate.temporal_attention!r}, binarize={self.binarize}"
