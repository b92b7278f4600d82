"""What every input coding shares: the input check and the stem (docs/design/encoder.md).

An encoder turns an image batch ``[B, C_in, H, W]`` (or a frame sequence ``[T, B, C_in, H, W]``)
into the code a spiking backbone receives, ``[T, B, C, H', W']``. Every coding of
:mod:`gac_coding.coding` is a :class:`StemEncoder`: a convolution and BatchNorm (the stem) on the
input or on spikes drawn from it, and the coding's own step after it. The encoder owns the number
of time steps ``T``: the models and wrapped nets read it from their encoder, and
:meth:`StemEncoder.set_timesteps` is the one place that changes it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import nonnegative_int, positive_int

__all__ = ["StemEncoder", "check_image_input"]


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
    """The interface of every encoder, and the stem they share: ``U_t = BN(Conv(X_t))`` per step.

    A static batch ``[B, C, H, W]`` runs the convolution and BatchNorm once for all ``T`` steps,
    with BatchNorm statistics as for ``T`` identical copies (docs/design/encoder.md §2-3);
    :meth:`membrane` returns ``U`` and whether it is static. What reaches the backbone is the
    subclass's choice (its ``forward``): :class:`~gac_coding.coding.GACEncoder` gates the spikes of
    ``U``, :class:`~gac_coding.coding.DirectEncoder` hands over ``U`` itself,
    :class:`~gac_coding.coding.RateEncoder` and :class:`~gac_coding.coding.LatencyEncoder` run the
    stem on spike trains drawn from the pixel intensities.

    The encoder owns ``T``: :attr:`T` is read-only and :meth:`set_timesteps` changes it; the
    modules that need ``T`` (the gate, a model, a wrapped net) read it from here.

    A subclass describes itself with class attributes, which the models, the training loop, the
    energy count and the demo read:

    * :attr:`coding`: its name in :data:`gac_coding.coding.CODINGS`; :attr:`label`: its name in
      words;
    * :attr:`takes_neuron`: it has a spiking neuron of its own, so a model passes it the recipe's
      neuron settings (``decay``, ``threshold``, ``surrogate``, ``detach_reset``, ``backend``);
    * :attr:`static_stem`: a static batch runs the stem once for all ``T`` steps (the fast path;
      ``False`` when the stem sees a different input at each step);
    * :attr:`reads_intensities`: it reads pixel intensities in ``[0, 1]`` (not event frames).

    Args:
        in_channels: channels of the input image.
        out_channels: channels of ``U``.
        T: number of time steps (>= 1).
        kernel_size, stride, padding: the convolution (no bias).
    """

    #: the name of the coding in :data:`gac_coding.coding.CODINGS`
    coding: ClassVar[str] = "stem"
    #: the coding in words (tables, plots)
    label: ClassVar[str] = "stem"
    #: whether the encoder has a spiking neuron (and takes the neuron settings of a recipe)
    takes_neuron: ClassVar[bool] = False
    #: whether a static batch computes the stem once for all T steps
    static_stem: ClassVar[bool] = True
    #: whether the input must be intensities in [0, 1] (images, not event frames)
    reads_intensities: ClassVar[bool] = False

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
        self._T = positive_int("T", T)
        kernel_size = positive_int("kernel_size", kernel_size)
        stride = positive_int("stride", stride)
        padding = nonnegative_int("padding", padding)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    @property
    def last_spikes(self) -> Tensor | None:
        """Spikes of the last call, for a coding that records them (``None`` here)."""
        return None

    @property
    def T(self) -> int:
        """The number of time steps (read-only; change it with :meth:`set_timesteps`)."""
        return self._T

    def set_timesteps(self, T: int) -> None:
        """Run at ``T`` steps from now on: static inputs give ``[T, B, ...]``, sequences of ``T``
        steps are accepted. The one place where ``T`` changes: a model or a wrapped net forwards
        its own ``set_timesteps`` here."""
        self._T = positive_int("T", T)

    def check_input(self, x: object) -> bool:
        """Validate ``x`` for this encoder (:func:`check_image_input`); ``True`` for a static batch."""
        return check_image_input(x, in_channels=self.in_channels, T=self.T, min_size=self._min_input_size())

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
                # momentum=None: cumulative average, weight 1 / batches seen (a tensor: no sync),
                # taken in the statistics' dtype, at least float32 (an integer tensor's reciprocal
                # would be torch's default dtype: float32 for float64 statistics)
                wide = torch.promote_types(running_mean.dtype, torch.float32)
                factor: float | Tensor = (
                    bn.momentum
                    if bn.momentum is not None
                    else tracked.to(wide).reciprocal().to(running_mean.dtype)
                )
                running_mean.lerp_(mean.to(running_mean.dtype), factor)
                running_var.lerp_((var * (n / (n - 1))).to(running_var.dtype), factor)
        return out

    def membrane(self, x: Tensor) -> tuple[Tensor, bool]:
        """Validated stem output ``U`` and whether it is static.

        ``U`` is ``[B, C, H', W']`` for a static input (standing for ``T`` identical steps) or
        ``[T, B, C, H', W']`` for a sequence.
        """
        static = self.check_input(x)
        self._check_params_match(x)
        if static:
            return self._bn_static(self.conv(x)), True
        y = self.bn(self.conv(x.flatten(0, 1)))
        return y.view(self.T, x.shape[1], *y.shape[1:]), False
