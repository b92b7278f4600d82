"""The lean LIF and the convolution of spikes (:mod:`gac_coding.ops.lean`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import backends, functional
from ._lean_common import (
    _EMPTY,
    _backward_from_bits,
    _bytes_per_row,
    _call,
    _empty_like_layout,
    _from_rows,
    _h_dtype,
    _lif_params,
    _like_layout,
    _nhwc,
    _or_empty,
    _plan,
    _plan_for,
    _rows,
    _tracing,
    pack_bits,
)
from .layout import channels_to_last, is_channels_last_step
from .params import LIFParams

# ------------------------------------------------------------------------------------- lean LIF


def _bit_backward(surrogate: int, detach_reset: bool) -> bool:
    """Whether the LIF's backward needs only two bits per element (rectangle, detached reset)."""
    return surrogate == 1 and detach_reset


def _lean_lif_forward(
    x: Tensor,
    steps: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    save: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(spikes, bits, kept)``: ``kept`` is what the backward pass needs (the window's bits, the
    membrane, or an empty tensor without ``save``)."""
    static = steps > 0
    step = x if static else x[0]
    T = steps if static else x.shape[0]
    nhwc = is_channels_last_step(step)
    flat = channels_to_last(x, nhwc).contiguous()
    flat = flat.view(-1) if static else flat.view(T, -1)
    want_sg = save and _bit_backward(surrogate, detach_reset)
    want_h = save and not want_sg
    plan = _plan(backend, x, surrogate)
    spikes, bits, sg, h = _call(
        plan, "lif_forward_packed", flat, steps, None, None, 1, 1, decay, threshold, want_sg, want_h
    )
    shape = (T, *step.shape)
    out = _from_rows(spikes, shape, nhwc)
    if want_sg:
        aux = sg
    elif want_h:
        aux = _from_rows(h, shape, nhwc).to(_h_dtype(x.dtype))
    else:
        aux = x.new_empty(_EMPTY)
    return out, bits, aux


def _lean_lif_backward_run(
    grad_s: Tensor,
    bits: Tensor,
    aux: Tensor,
    is_static: bool,
    nhwc: bool,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    backend: str,
) -> Tensor:
    if _bit_backward(surrogate, detach_reset):
        return _backward_from_bits(grad_s, bits, aux, is_static, nhwc, decay, backend)
    p = _lif_params(decay, threshold, surrogate, detach_reset)
    return functional._lif_backward(_plan(backend, grad_s, surrogate), grad_s, aux, is_static, p)


@torch.library.custom_op("gac_coding::lean_lif", mutates_args=())
def _lean_lif_op(
    x: Tensor,
    steps: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    save: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    return _lean_lif_forward(x, steps, decay, threshold, surrogate, detach_reset, save, backend)


@_lean_lif_op.register_fake
def _lean_lif_fake(x, steps, decay, threshold, surrogate, detach_reset, save, backend="auto"):
    static = steps > 0
    step = x if static else x[0]
    T = steps if static else x.shape[0]
    nhwc = is_channels_last_step(step)
    shape = (T, *step.shape)
    L = step.numel()
    spikes = _empty_like_layout(shape, nhwc, x.dtype, x.device)
    bits = x.new_empty((T, _bytes_per_row(L)), dtype=torch.uint8)
    if save and _bit_backward(surrogate, detach_reset):
        aux = x.new_empty((T, _bytes_per_row(L)), dtype=torch.uint8)
    elif save:
        aux = _empty_like_layout(shape, nhwc, _h_dtype(x.dtype), x.device)
    else:
        aux = x.new_empty(_EMPTY)
    return spikes, bits, aux


@torch.library.custom_op("gac_coding::lean_lif_backward", mutates_args=())
def _lean_lif_backward_op(
    grad_s: Tensor,
    bits: Tensor,
    aux: Tensor,
    is_static: bool,
    nhwc: bool,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    backend: str = "auto",
) -> Tensor:
    return _lean_lif_backward_run(
        grad_s, bits, aux, is_static, nhwc, decay, threshold, surrogate, detach_reset, backend
    )


@_lean_lif_backward_op.register_fake
def _lean_lif_backward_fake(
    grad_s, bits, aux, is_static, nhwc, decay, threshold, surrogate, detach_reset, backend="auto"
):
    shape = grad_s.shape[1:] if is_static else grad_s.shape
    return _empty_like_layout(shape, nhwc, grad_s.dtype, grad_s.device)


def _lean_lif_setup(ctx, inputs, output) -> None:
    x, steps, decay, threshold, surrogate, detach_reset, save, *backend = inputs
    _, bits, aux = output
    ctx.save_for_backward(bits if _bit_backward(surrogate, detach_reset) else bits.new_empty(_EMPTY), aux)
    ctx.static = steps > 0
    ctx.nhwc = is_channels_last_step(x if steps > 0 else x[0])
    ctx.lif = (decay, threshold, surrogate, detach_reset, *backend)
    ctx.mark_non_differentiable(bits, aux)


def _lean_lif_backward(ctx, grad_s: Tensor, _g_bits, _g_aux):
    bits, aux = ctx.saved_tensors
    if grad_s.numel() == 0:  # an empty batch: a zero gradient, with or without what was kept
        return functional._empty_batch_grad(grad_s, ctx.static), None, None, None, None, None, None, None
    if aux.numel() == 0:
        raise RuntimeError("gac_coding::lean_lif: backward through a call made without save=True")
    grad_x = torch.ops.gac_coding.lean_lif_backward(grad_s, bits, aux, ctx.static, ctx.nhwc, *ctx.lif)
    return grad_x, None, None, None, None, None, None, None


_lean_lif_op.register_autograd(_lean_lif_backward, setup_context=_lean_lif_setup)


class _LeanLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, steps, p, code, save, backend):  # type: ignore[override]
        spikes, bits, aux = _lean_lif_forward(
            x, steps, p.decay, p.threshold, code, p.detach_reset, save, backend
        )
        if save:
            ctx.save_for_backward(bits if _bit_backward(code, p.detach_reset) else None, aux)
        ctx.static = steps > 0
        ctx.nhwc = is_channels_last_step(x if steps > 0 else x[0])
        ctx.lif = (p.decay, p.threshold, code, p.detach_reset, backend)
        ctx.mark_non_differentiable(bits)
        return spikes, bits

    @staticmethod
    def backward(ctx, grad_s, _g_bits):  # type: ignore[override]
        bits, aux = ctx.saved_tensors
        grad_x = _lean_lif_backward_run(grad_s, bits, aux, ctx.static, ctx.nhwc, *ctx.lif)
        return grad_x, None, None, None, None, None


def check_lean_params(params: LIFParams, what: str = "memory") -> int:
    """The surrogate code of ``params``; a ``ValueError`` for a callable surrogate (the lean ops
    run the kernels, which know the named surrogates only)."""
    code = params.surrogate_code
    if code is None:
        raise ValueError(
            f"{what}: the lean ops take the named surrogates 'triangle' and 'rectangle', not the "
            f"callable {params.surrogate_name!r}; use memory='default' (or 'checkpoint' on a model)"
        )
    return code


def lif(
    x: Tensor, params: LIFParams, *, steps: int | None = None, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Multi-step LIF spikes and their bits: ``(spikes [T, B, ...], bits uint8 [T, ceil(L / 8)])``.

    The spikes equal :func:`gac_coding.ops.lif`'s (and so do the gradients); what is kept for the
    backward pass is two bits per element with the rectangle surrogate and a detached reset, the
    membrane otherwise (see the module doc). Hand ``bits`` to :func:`spike_conv2d` with the spikes.

    Example:
        >>> import torch
        >>> from gac_coding.ops import LIFParams, lean
        >>> spikes, bits = lean.lif(torch.tensor([[0.6], [0.6], [0.6]]), LIFParams(0.5, 1.0))
        >>> spikes.flatten().tolist(), bits.flatten().tolist()
        ([0.0, 0.0, 1.0], [0, 0, 1])
    """
    code = check_lean_params(params)
    if steps is None:
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"x: expected a sequence [T, B, ...] with T >= 1, got shape {tuple(x.shape)}")
        n = 0
    elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    else:
        n = steps
    save = torch.is_grad_enabled() and x.requires_grad
    p = params
    if _tracing():
        spikes, bits, _ = torch.ops.gac_coding.lean_lif(
            x, n, p.decay, p.threshold, code, p.detach_reset, save, backend
        )
        return spikes, bits
    return _LeanLIFFunction.apply(x, n, p, code, save, backends.check_backend(backend))


# ------------------------------------------------------------------------- convolution of spikes


@torch.library.custom_op("gac_coding::spike_conv2d", mutates_args=())
def _spike_conv_op(
    s: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    bits: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    backend: str = "auto",
) -> Tensor:
    return F.conv2d(s, weight, bias, list(stride), list(padding), list(dilation), groups)


@_spike_conv_op.register_fake
def _spike_conv_fake(s, weight, bias, bits, stride, padding, dilation, groups, backend="auto"):
    return F.conv2d(s, weight, bias, list(stride), list(padding), list(dilation), groups)


def _spike_conv_backward_run(
    grad: Tensor,
    bits: Tensor,
    weight: Tensor,
    s_shape: Sequence[int],
    s_nhwc: bool,
    s_dtype: torch.dtype,
    has_bias: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    need_s: bool,
    need_w: bool,
    backend: str,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The convolution's backward (``torch.ops.aten.convolution_backward``, what autograd runs for
    ``conv2d``) on the input unpacked from its bits in its own layout."""
    rows = bits.shape[0]
    numel = 1
    for n in s_shape:
        numel *= n
    s = _call(_plan_for(backend, bits.device, s_dtype), "unpack_bits", bits, numel // rows, s_dtype)
    s = _from_rows(s, s_shape, s_nhwc)
    gs, gw, gb = torch.ops.aten.convolution_backward(
        grad, s, weight, [weight.shape[0]] if has_bias else None,
        list(stride), list(padding), list(dilation), False, [0, 0], groups,
        [need_s, need_w, has_bias],
    )  # fmt: skip
    # fixed layouts whatever the convolution kernel chose: the input's, the weight's
    return _like_layout(gs, s_nhwc), _like_layout(gw, _nhwc(weight)), gb


@torch.library.custom_op("gac_coding::spike_conv2d_backward", mutates_args=())
def _spike_conv_backward_op(
    grad: Tensor,
    bits: Tensor,
    weight: Tensor,
    s_shape: Sequence[int],
    s_nhwc: bool,
    s_dtype: torch.dtype,
    has_bias: bool,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    need_s: bool,
    need_w: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    gs, gw, gb = _spike_conv_backward_run(
        grad, bits, weight, s_shape, s_nhwc, s_dtype, has_bias, stride, padding, dilation, groups,
        need_s, need_w, backend,
    )  # fmt: skip
    return _or_empty(gs, grad), _or_empty(gw, grad), _or_empty(gb, grad)


@_spike_conv_backward_op.register_fake
def _spike_conv_backward_fake(
    grad, bits, weight, s_shape, s_nhwc, s_dtype, has_bias, stride, padding, dilation, groups,
    need_s, need_w, backend="auto",
):  # fmt: skip
    gs = _empty_like_layout(s_shape, s_nhwc, grad.dtype, grad.device) if need_s else None
    gw = _empty_like_layout(weight.shape, _nhwc(weight), weight.dtype, weight.device) if need_w else None
    gb = grad.new_empty((weight.shape[0],)) if has_bias else None
    return _or_empty(gs, grad), _or_empty(gw, grad), _or_empty(gb, grad)


def _spike_conv_setup(ctx, inputs, output) -> None:
    s, weight, bias, bits, stride, padding, dilation, groups, *backend = inputs
    ctx.save_for_backward(bits, weight)
    ctx.s = (tuple(s.shape), _nhwc(s), s.dtype)
    ctx.conv = (bias is not None, tuple(stride), tuple(padding), tuple(dilation), groups)
    ctx.backend = backend[0] if backend else "auto"


def _spike_conv_backward(ctx, grad: Tensor):
    bits, weight = ctx.saved_tensors
    has_bias, stride, padding, dilation, groups = ctx.conv
    need_s, need_w, need_b = ctx.needs_input_grad[:3]
    gs, gw, gb = torch.ops.gac_coding.spike_conv2d_backward(
        grad, bits, weight, *ctx.s, has_bias, stride, padding, dilation, groups, need_s, need_w, ctx.backend
    )
    return (
        gs if need_s else None,
        gw if need_w else None,
        gb if (has_bias and need_b) else None,
        None, None, None, None, None, None,
    )  # fmt: skip


_spike_conv_op.register_autograd(_spike_conv_backward, setup_context=_spike_conv_setup)


class _SpikeConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, weight, bias, bits, stride, padding, dilation, groups, backend):  # type: ignore[override]
        ctx.save_for_backward(bits, weight)
        ctx.s = (tuple(s.shape), _nhwc(s), s.dtype)
        ctx.conv = (bias is not None, tuple(stride), tuple(padding), tuple(dilation), groups)
        ctx.backend = backend
        return F.conv2d(s, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        bits, weight = ctx.saved_tensors
        has_bias, stride, padding, dilation, groups = ctx.conv
        need_s, need_w, need_b = ctx.needs_input_grad[:3]
        gs, gw, gb = _spike_conv_backward_run(
            grad,
            bits,
            weight,
            *ctx.s,
            has_bias,
            stride,
            padding,
            dilation,
            groups,
            need_s,
            need_w,
            ctx.backend,
        )
        return gs, gw, (gb if need_b else None), None, None, None, None, None, None


def _check_conv(conv: nn.Conv2d) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv: expected a torch.nn.Conv2d, got {type(conv).__name__}")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(
            f"conv: the lean ops take zero padding given as numbers, got padding={conv.padding!r}, "
            f"padding_mode={conv.padding_mode!r}"
        )


def spike_conv2d(s: Tensor, conv: nn.Conv2d, bits: Tensor | None = None, *, backend: str = "auto") -> Tensor:
    """``conv(s)`` for spikes ``s: [N, C, H, W]`` that keeps ``s`` as bits for the backward pass.

    ``bits``: the bits of ``s`` (e.g. from :func:`lif`, packed per step of its ``T`` steps), or
    ``None`` to pack them here, after checking that ``s`` holds only 0 and 1 (a real-valued input
    would lose its values: ``ValueError``). Without gradients this is ``conv(s)``.
    """
    _check_conv(conv)
    if not torch.is_grad_enabled() or not (s.requires_grad or conv.weight.requires_grad):
        return conv(s)
    if bits is None:
        if not bool(((s == 0) | (s == 1)).all()):
            raise ValueError("s: spike_conv2d keeps its input as bits, which needs 0s and 1s only")
        bits = pack_bits(_rows(s, 1, _nhwc(s)), backend=backend)
    stride, padding, dilation = list(conv.stride), list(conv.padding), list(conv.dilation)  # type: ignore[arg-type]
    if _tracing():
        return torch.ops.gac_coding.spike_conv2d(
            s, conv.weight, conv.bias, bits, stride, padding, dilation, conv.groups, backend
        )
    return _SpikeConvFunction.apply(
        s,
        conv.weight,
        conv.bias,
        bits,
        stride,
        padding,
        dilation,
        conv.groups,
        backends.check_backend(backend),
    )
