"""The lean ops: the same numbers as the default layers with less kept for the backward pass.

Each op is a custom operator (``torch.ops.gac_coding.*``, eager and under ``torch.compile``) with
its own backward operator, so that what it keeps is fixed whatever runs it:

* :func:`lif` (``lean_lif``): the multi-step LIF that also returns its spikes as bits (for the
  convolution they feed). With the rectangle surrogate and a detached reset (the ImageNet recipe)
  its backward pass needs, per element and step, only whether the neuron fired and whether the
  membrane lay in the surrogate's window ``|h - threshold| < 0.5``: it keeps these two bits instead
  of the membrane, and hands the neuron ops' backward a membrane rebuilt from them (a value on the
  same side of the threshold and of the window's edges: the same gradient, bit for bit). Otherwise
  it keeps the membrane, as the default op does.
* :func:`spike_conv2d`: a convolution whose input is spikes keeps them as bits (1/32 of float32)
  and unpacks them for the weight gradient.
* :func:`bn_lif`: BatchNorm (training or eval mode, optionally followed by 2x2 average pooling)
  and the LIF in one op. It keeps the BatchNorm input and the batch statistics (what BatchNorm's own
  backward needs) and recomputes the normalised input and the membranes in the backward pass; with
  the rectangle surrogate and a detached reset it keeps the two bits per element instead of
  recomputing. The running statistics are updated as ``torch.nn.BatchNorm2d`` updates them.
* :func:`gated_lif`: the encoder's LIF fused with the gate keeps its inputs (``u``, the temporal
  and the spatial-channel scores: one step for a static image, not ``T``) and recomputes the
  membranes, spikes and gate in the backward pass.
* :func:`pointwise_conv`: a 1x1 convolution with stride ``s`` reads one input position in
  ``s * s``; it keeps those (the shortcut of a strided block).

On the CPU the forward passes run the very operations of the default path (the same BatchNorm
kernel, the same neuron backend, the same convolution), so logits and spikes are identical and the
gradients agree to float rounding (most of them bit for bit). The bit packing and the LIF that
packs its spikes run on a backend of their own family (:data:`LEAN_REGISTRY`, chosen by the same
``backend=`` setting as the neuron ops): ``"eager"`` (torch operations), ``"cpp"`` (fused CPU
loops, ``csrc/lean.cpp``) and ``"triton"`` (CUDA kernels, which also apply BatchNorm's per-channel
scale and shift inside the LIF kernel, so that the normalised input is never stored).

Bits: a tensor of ``T`` steps is packed per step in the order of its storage (a channels-last
step channel-fastest), 8 elements a byte, least significant bit first, each step's last byte
padded with zeros: ``uint8 [T, ceil(L / 8)]`` for ``L`` elements a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import backends, functional
from ._lean_bn import bn_lif
from ._lean_common import (
    LEAN_REGISTRY,
    _empty_like_layout,
    _lif_params,
    _like_layout,
    _nhwc,
    _or_empty,
    _plan,
    _tracing,
    pack_bits,
    unpack_bits,
)
from ._lean_lif import _check_conv, check_lean_params, lif, spike_conv2d
from .layout import is_channels_last_step
from .params import LIFParams

__all__ = [
    "LEAN_REGISTRY",
    "block_shortcut",
    "bn_lif",
    "check_lean_params",
    "gated_lif",
    "lif",
    "pack_bits",
    "pointwise_conv",
    "spike_conv2d",
    "unpack_bits",
]

# ------------------------------------------------------------------------------- gated LIF


def _lean_gated_forward(
    u: Tensor, ta: Tensor, sca: Tensor, steps: int, p: LIFParams, backend: str
) -> tuple[Tensor, Tensor, Tensor]:
    plan = _plan(backend, u, p.surrogate_code)
    out, fired, gate, _, _ = functional._gated_forward(plan, u, ta, sca, steps, p, False)
    return out, fired, gate


def _lean_gated_backward_run(
    grad_out: Tensor, u: Tensor, ta: Tensor, sca: Tensor, steps: int, p: LIFParams, backend: str
) -> tuple[Tensor, Tensor, Tensor]:
    """The fused op's forward run again with the membrane kept, then its backward: the default
    op's numbers."""
    plan = _plan(backend, u, p.surrogate_code)
    out, _, gate, h, used = functional._gated_forward(plan, u, ta, sca, steps, p, True)
    assert h is not None
    return functional._gated_backward(
        functional._from(plan, used), grad_out, h, out, gate, ta, sca, steps > 0, p
    )


@torch.library.custom_op("gac_coding::lean_gated_lif", mutates_args=())
def _lean_gated_op(
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    steps: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    p = _lif_params(decay, threshold, surrogate, detach_reset)
    return _lean_gated_forward(u, ta, sca, steps, p, backend)


@_lean_gated_op.register_fake
def _lean_gated_fake(u, ta, sca, steps, decay, threshold, surrogate, detach_reset, backend="auto"):
    from .functional import _gated_fake

    out, fired, gate, _ = _gated_fake(
        u, ta, sca, steps, decay, threshold, surrogate, detach_reset, False, backend
    )
    return out, fired, gate


@torch.library.custom_op("gac_coding::lean_gated_lif_backward", mutates_args=())
def _lean_gated_backward_op(
    grad_out: Tensor,
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    steps: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    p = _lif_params(decay, threshold, surrogate, detach_reset)
    return _lean_gated_backward_run(grad_out, u, ta, sca, steps, p, backend)


@_lean_gated_backward_op.register_fake
def _lean_gated_backward_fake(
    grad_out, u, ta, sca, steps, decay, threshold, surrogate, detach_reset, backend="auto"
):
    nhwc = is_channels_last_step(u if steps > 0 else u[0])
    grad_u = _empty_like_layout(u.shape, nhwc, grad_out.dtype, u.device)
    grad_sca = _empty_like_layout(sca.shape, nhwc, sca.dtype, sca.device)
    return grad_u, torch.empty(ta.shape, dtype=ta.dtype, device=ta.device), grad_sca


def _lean_gated_setup(ctx, inputs, output) -> None:
    u, ta, sca, steps, decay, threshold, surrogate, detach_reset, *backend = inputs
    ctx.save_for_backward(u, ta, sca)
    ctx.settings = (steps, decay, threshold, surrogate, detach_reset, *backend)
    ctx.mark_non_differentiable(output[1], output[2])
    ctx.set_materialize_grads(False)


def _lean_gated_backward(ctx, grad_out, _g_fired, _g_gate):
    if grad_out is None:
        return (None,) * 9
    u, ta, sca = ctx.saved_tensors
    grads = torch.ops.gac_coding.lean_gated_lif_backward(grad_out, u, ta, sca, *ctx.settings)
    return (*grads, *([None] * 6))


_lean_gated_op.register_autograd(_lean_gated_backward, setup_context=_lean_gated_setup)


class _LeanGatedFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, ta, sca, steps, p, backend):  # type: ignore[override]
        out, fired, gate = _lean_gated_forward(u, ta, sca, steps, p, backend)
        ctx.save_for_backward(u, ta, sca)
        ctx.settings = (steps, p, backend)
        ctx.mark_non_differentiable(fired, gate)
        ctx.set_materialize_grads(False)
        return out, fired, gate

    @staticmethod
    def backward(ctx, grad_out, _g_fired, _g_gate):  # type: ignore[override]
        if grad_out is None:
            return (None,) * 6
        u, ta, sca = ctx.saved_tensors
        grads = _lean_gated_backward_run(grad_out, u, ta, sca, *ctx.settings)
        return (*grads, None, None, None)


def gated_lif(
    u: Tensor, ta: Tensor, sca: Tensor, params: LIFParams, *, static: bool = False, backend: str = "auto"
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`gac_coding.ops.gated_lif` that keeps its inputs instead of the membrane, the output
    and the gate, and recomputes those in the backward pass (the same numbers). For a static ``u``
    (one step standing for all ``T``) that is one step instead of three tensors of ``T`` steps."""
    from .functional import gated_lif as default_gated_lif

    code = check_lean_params(params)
    if not torch.is_grad_enabled() or not (u.requires_grad or ta.requires_grad or sca.requires_grad):
        return default_gated_lif(u, ta, sca, params, static=static, backend=backend)
    ta = ta.to(u.dtype)
    sca = sca.to(u.dtype)
    T = ta.shape[0]
    p = params
    if _tracing():
        return torch.ops.gac_coding.lean_gated_lif(
            u, ta, sca, T if static else 0, p.decay, p.threshold, code, p.detach_reset, backend
        )
    return _LeanGatedFunction.apply(u, ta, sca, T if static else 0, p, backends.check_backend(backend))


# ------------------------------------------------------------------------- strided 1x1 convolution


def _subsampled(x: Tensor, stride: int) -> Tensor:
    """The input positions a 1x1 convolution of stride ``stride`` reads, in ``x``'s layout."""
    fmt = torch.channels_last if _nhwc(x) else torch.contiguous_format
    return x[:, :, ::stride, ::stride].contiguous(memory_format=fmt)


def _pointwise_backward_run(
    grad: Tensor,
    kept: Tensor,
    weight: Tensor,
    x_size: Sequence[int],
    stride: int,
    has_bias: bool,
    need_x: bool,
    need_w: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    gk, gw, gb = torch.ops.aten.convolution_backward(
        grad, kept, weight, [weight.shape[0]] if has_bias else None,
        [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [need_x, need_w, has_bias],
    )  # fmt: skip
    gx = None
    if need_x:
        gx = _empty_like_layout(x_size, _nhwc(kept), gk.dtype, gk.device).zero_()
        gx[:, :, ::stride, ::stride] = gk
    return gx, _like_layout(gw, _nhwc(weight)), gb


@torch.library.custom_op("gac_coding::pointwise_conv", mutates_args=())
def _pointwise_op(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> tuple[Tensor, Tensor]:
    out = F.conv2d(x, weight, bias, stride)
    return out, _subsampled(x, stride)


@_pointwise_op.register_fake
def _pointwise_fake(x, weight, bias, stride):
    return F.conv2d(x, weight, bias, stride), _subsampled(x, stride)


@torch.library.custom_op("gac_coding::pointwise_conv_backward", mutates_args=())
def _pointwise_backward_op(
    grad: Tensor,
    kept: Tensor,
    weight: Tensor,
    x_size: Sequence[int],
    stride: int,
    has_bias: bool,
    need_x: bool,
    need_w: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    gx, gw, gb = _pointwise_backward_run(grad, kept, weight, x_size, stride, has_bias, need_x, need_w)
    return _or_empty(gx, grad), _or_empty(gw, grad), _or_empty(gb, grad)


@_pointwise_backward_op.register_fake
def _pointwise_backward_fake(grad, kept, weight, x_size, stride, has_bias, need_x, need_w):
    gx = _empty_like_layout(x_size, _nhwc(kept), grad.dtype, grad.device) if need_x else None
    gw = _empty_like_layout(weight.shape, _nhwc(weight), weight.dtype, weight.device) if need_w else None
    gb = grad.new_empty((weight.shape[0],)) if has_bias else None
    return _or_empty(gx, grad), _or_empty(gw, grad), _or_empty(gb, grad)


def _pointwise_setup(ctx, inputs, output) -> None:
    x, weight, bias, stride = inputs
    ctx.save_for_backward(output[1], weight)
    ctx.conv = (tuple(x.shape), stride, bias is not None)
    ctx.mark_non_differentiable(output[1])


def _pointwise_backward(ctx, grad, _g_kept):
    kept, weight = ctx.saved_tensors
    x_size, stride, has_bias = ctx.conv
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = torch.ops.gac_coding.pointwise_conv_backward(
        grad, kept, weight, x_size, stride, has_bias, need_x, need_w
    )
    return (gx if need_x else None, gw if need_w else None, gb if (has_bias and need_b) else None, None)


_pointwise_op.register_autograd(_pointwise_backward, setup_context=_pointwise_setup)


class _PointwiseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride):  # type: ignore[override]
        kept = _subsampled(x, stride)
        ctx.save_for_backward(kept, weight)
        ctx.conv = (tuple(x.shape), stride, bias is not None)
        return F.conv2d(x, weight, bias, stride)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        kept, weight = ctx.saved_tensors
        x_size, stride, has_bias = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx, gw, gb = _pointwise_backward_run(grad, kept, weight, x_size, stride, has_bias, need_x, need_w)
        return gx, gw, (gb if need_b else None), None


def pointwise_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for a 1x1 convolution; with stride ``s > 1`` and gradients, only the ``1 / s**2``
    of ``x`` that it reads is kept for the backward pass (the same output, gradients to rounding)."""
    _check_conv(conv)
    k, s = conv.kernel_size, conv.stride
    simple = (
        tuple(k) == (1, 1)
        and s[0] == s[1]
        and tuple(conv.padding) == (0, 0)  # type: ignore[arg-type]
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
    )
    if (
        not simple
        or s[0] == 1
        or not torch.is_grad_enabled()
        or not (x.requires_grad or conv.weight.requires_grad)
    ):
        return conv(x)
    if _tracing():
        return torch.ops.gac_coding.pointwise_conv(x, conv.weight, conv.bias, s[0])[0]
    return _PointwiseFunction.apply(x, conv.weight, conv.bias, s[0])


def block_shortcut(shortcut: nn.Module, x: Tensor) -> Tensor:
    """A residual block's shortcut on ``x``: an identity, or a 1x1 convolution (kept lean by
    :func:`pointwise_conv`) followed by any further layers (BatchNorm)."""
    if isinstance(shortcut, nn.Identity):
        return x
    if isinstance(shortcut, nn.Sequential) and len(shortcut) and isinstance(shortcut[0], nn.Conv2d):
        y = pointwise_conv(shortcut[0], x)
        for layer in list(shortcut)[1:]:
            y = layer(y)
        return y
    return shortcut(x)


# ---------------------------------------------------------------------------- a run of layers


def _is_neuron(m: nn.Module) -> bool:
    """A multi-step neuron of this library (``gac_coding.LIF``): it holds ``params`` and ``backend``."""
    return isinstance(m, backends.BackendSetting) and isinstance(getattr(m, "params", None), LIFParams)


def _pool_size(m: nn.Module) -> int:
    """The kernel of an average pooling :func:`bn_lif` can fold in (kernel = stride, no padding,
    the default counting), else 0."""
    if not isinstance(m, nn.AvgPool2d):
        return 0
    k, s, p = m.kernel_size, m.stride, m.padding
    k = k if isinstance(k, int) else (k[0] if k[0] == k[1] else -1)
    s = s if isinstance(s, int) else (s[0] if s[0] == s[1] else -1)
    p = p if isinstance(p, int) else max(p)
    ok = (
        k > 0 and s == k and p == 0 and not m.ceil_mode and m.count_include_pad and m.divisor_override is None
    )
    return k if ok else 0


def run_layers(layers: Sequence[nn.Module], h: Tensor) -> Tensor:
    """Run ``layers`` on ``h: [T, B, ...]``: neurons (:class:`gac_coding.LIF`) over time, the other
    layers (``Conv2d``, ``BatchNorm2d``, pooling, ...) on time folded into the batch; returns
    ``[T, B, ...]``.

    With gradients, the lean ops run where they apply: a convolution of a neuron's spikes keeps
    them as bits (:func:`spike_conv2d`), ``BatchNorm2d`` followed by a neuron (with at most one
    average pooling between them) is :func:`bn_lif`, any other neuron is :func:`lif`; other layers
    run as they are. Without gradients every layer runs as it is. The same numbers either way.
    """
    T = h.shape[0]
    if not lean_active_now():
        for m in layers:
            h = m(h) if _is_neuron(m) else _unfold(m(h.flatten(0, 1)), T)
        return h
    x = h.flatten(0, 1)
    bits: Tensor | None = None  # the bits of x when x holds a neuron's spikes
    spike_backend = "auto"
    pending: list[Any] | None = None  # [BatchNorm input, the BatchNorm, its pooling kernel]

    def settle() -> Tensor:
        nonlocal pending
        if pending is None:
            return x
        y, bn, pool = pending
        pending = None
        z = bn(y)
        return F.avg_pool2d(z, pool) if pool else z

    for m in layers:
        if _is_neuron(m):
            params: LIFParams = m.params  # type: ignore[assignment]
            backend: str = m.backend  # type: ignore[assignment]
            if pending is not None:
                y, bn, pool = pending
                pending = None
                x, bits = bn_lif(y, bn, params, T, pool=pool, backend=backend)
            else:
                s, bits = lif(_unfold(x, T), params, backend=backend)
                x = s.flatten(0, 1)
            spike_backend = backend
        elif isinstance(m, nn.Conv2d) and pending is None:
            x = spike_conv2d(x, m, bits, backend=spike_backend) if bits is not None else m(x)
            bits = None
        elif isinstance(m, nn.BatchNorm2d) and pending is None:
            pending = [x, m, 0]
            bits = None
        elif pending is not None and pending[2] == 0 and _pool_size(m):
            pending[2] = _pool_size(m)
        else:
            x = settle()
            x = m(x) if not _is_neuron(m) else x
            bits = None
    x = settle()
    return _unfold(x, T)


def _unfold(y: Tensor, T: int) -> Tensor:
    return y.view(T, y.shape[0] // T, *y.shape[1:])


def lean_active_now() -> bool:
    """Whether the lean ops would run now (gradients on, no inference tracing)."""
    from .memory import lean_active

    return lean_active("lean")
