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

import importlib
from collections.abc import Callable, Sequence
from types import MappingProxyType, ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import backends, functional
from .layout import channels_to_front, channels_to_last, is_channels_last_step
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

_NAMES = ("triangle", "rectangle")
_HALF = (torch.float16, torch.bfloat16)
_EMPTY: tuple[int, ...] = (0,)


def _h_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


# ------------------------------------------------------------------------------------ backends


class _LeanBackend:
    """A backend of the lean family: its three functions live in ``module`` (imported on first
    use); which tensors it takes is the rule of the neuron-ops backend of the same name."""

    def __init__(self, name: str, module: str, ready: Callable[[torch.device], tuple[bool, str]]) -> None:
        self.name = name
        self._module_name = module
        self._ready = ready

    def __repr__(self) -> str:
        return f"<gac_coding lean backend {self.name!r}>"

    def module(self) -> ModuleType:
        return importlib.import_module(f"{__package__}.{self._module_name}")

    def covers(self, device: torch.device, dtype: torch.dtype) -> bool:
        return backends.REGISTRY[self.name].covers(device, dtype)

    def ready(self, device: torch.device) -> tuple[bool, str]:
        return self._ready(device)

    def pack_bits(self, *args: Any) -> Any:
        return self.module().pack_bits(*args)

    def unpack_bits(self, *args: Any) -> Any:
        return self.module().unpack_bits(*args)

    def lif_forward_packed(self, *args: Any) -> Any:
        return self.module().lif_forward_packed(*args)

    def lif_backward_bits(self, *args: Any) -> Any:
        return self.module().lif_backward_bits(*args)


def _always(device: torch.device) -> tuple[bool, str]:
    return True, ""


def _cpp_ready(device: torch.device) -> tuple[bool, str]:
    from . import _lean_cpp

    if _lean_cpp.load() is not None:
        return True, ""
    return False, f"the C++ lean kernels could not be built: {_lean_cpp.build_error()}"


def _triton_ready(device: torch.device) -> tuple[bool, str]:
    from . import _triton

    return _triton.available(device)


#: The lean ops' backends by name (read-only): the same names and rules as
#: :data:`gac_coding.ops.backends.REGISTRY`.
LEAN_REGISTRY = MappingProxyType(
    {
        "eager": _LeanBackend("eager", "_lean_eager", _always),
        "cpp": _LeanBackend("cpp", "_lean_cpp", _cpp_ready),
        "triton": _LeanBackend("triton", "_lean_triton", _triton_ready),
    }
)


def _plan(backend: str, t: Tensor, code: int | None = 0) -> backends.Plan:
    return backends.plan(backends.check_backend(backend), t, code)


def _plan_for(backend: str, device: torch.device, dtype: torch.dtype) -> backends.Plan:
    """The plan of a call producing ``dtype`` tensors on ``device`` (unpacking bits: the backend
    is chosen by the float dtype it writes, as for the tensors it was packed from)."""
    return backends._plan(backends.check_backend(backend), device, dtype, 0)


def _call(plan: backends.Plan, function: str, *args: Any) -> Any:
    return backends.call(plan, function, *args, registry=LEAN_REGISTRY)[0]


def _tracing() -> bool:
    """Whether dynamo or the jit tracer is tracing: the ops are then custom operators; eagerly
    they are autograd Functions (the cheapest dispatch per call), around the same code."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _lif_params(decay: float, threshold: float, surrogate: int, detach_reset: bool) -> LIFParams:
    return LIFParams(decay, threshold, _NAMES[surrogate], detach_reset)


# ------------------------------------------------------------------------------ layout helpers


def _nhwc(t: Tensor) -> bool:
    """Whether a 4-d tensor, or each step of a 5-d one, is stored channels-last."""
    if t.dim() == 4:
        return is_channels_last_step(t)
    if t.dim() == 5:
        return is_channels_last_step(t[0])
    return False


def _rows(t: Tensor, rows: int, nhwc: bool) -> Tensor:
    """``t`` as ``[rows, L]`` in the order of its storage (a copy only if it is not dense)."""
    return channels_to_last(t, nhwc).contiguous().view(rows, -1)


def _from_rows(x: Tensor, shape: Sequence[int], nhwc: bool) -> Tensor:
    """A ``[rows, L]`` tensor viewed as ``shape`` in the layout ``nhwc`` (the inverse of :func:`_rows`)."""
    shape = tuple(shape)
    last = (*shape[:-3], shape[-2], shape[-1], shape[-3]) if nhwc else shape
    return channels_to_front(x.view(last), nhwc)


def _empty_like_layout(shape: Sequence[int], nhwc: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    shape = tuple(shape)
    last = (*shape[:-3], shape[-2], shape[-1], shape[-3]) if nhwc else shape
    return channels_to_front(torch.empty(last, dtype=dtype, device=device), nhwc)


def _like_layout(t: Tensor | None, nhwc: bool) -> Tensor | None:
    """``t`` stored channels-last (``nhwc``) or contiguous, copied only if it is not already."""
    if t is None:
        return None
    return t.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    """``t``, or a fresh empty tensor where there is none (a custom operator returns tensors,
    never the same one twice)."""
    return t if t is not None else like.new_empty(_EMPTY)


def _bytes_per_row(n: int) -> int:
    return (n + 7) // 8


def _backward_from_bits(
    grad_s: Tensor, bits: Tensor, sg: Tensor, is_static: bool, nhwc: bool, decay: float, backend: str
) -> Tensor:
    """The LIF's input gradient (rectangle surrogate, detached reset) from the bits of its spikes
    and of the surrogate's window, in the layout of the spikes: ``grad_s [T, ...]`` gives
    ``[T, ...]`` or, ``is_static``, the sum over the steps."""
    T = grad_s.shape[0]
    rows = _rows(grad_s, T, nhwc)
    plan = _plan_for(backend, grad_s.device, grad_s.dtype)
    out = _call(plan, "lif_backward_bits", rows, bits, sg, is_static, decay)
    shape = grad_s.shape[1:] if is_static else grad_s.shape
    return _from_rows(out, shape, nhwc)


# ------------------------------------------------------------------------------ bits (no autograd)


@torch.library.custom_op("gac_coding::pack_bits", mutates_args=())
def _pack_op(x: Tensor, backend: str = "auto") -> Tensor:
    return _call(_plan(backend, x), "pack_bits", x.contiguous())


@_pack_op.register_fake
def _pack_fake(x, backend="auto"):
    return x.new_empty((x.shape[0], _bytes_per_row(x.shape[1])), dtype=torch.uint8)


@torch.library.custom_op("gac_coding::unpack_bits", mutates_args=())
def _unpack_op(bits: Tensor, length: int, dtype: torch.dtype, backend: str = "auto") -> Tensor:
    return _call(_plan_for(backend, bits.device, dtype), "unpack_bits", bits.contiguous(), length, dtype)


@_unpack_op.register_fake
def _unpack_fake(bits, length, dtype, backend="auto"):
    return bits.new_empty((bits.shape[0], length), dtype=dtype)


def pack_bits(x: Tensor, *, backend: str = "auto") -> Tensor:
    """``x: [R, L]`` (nonzero means 1) packed to ``uint8 [R, ceil(L / 8)]`` (see the module doc).

    Example:
        >>> import torch
        >>> from gac_coding.ops.lean import pack_bits, unpack_bits
        >>> x = torch.tensor([[1., 0., 1., 1., 0., 0., 0., 0., 1.]])
        >>> pack_bits(x).tolist()                  # bits 0, 2, 3 -> 13; then bit 0 of the next byte
        [[13, 1]]
        >>> torch.equal(unpack_bits(pack_bits(x), 9, torch.float32), x)
        True
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x: expected a 2-d tensor [R, L], got {getattr(x, 'shape', type(x).__name__)}")
    return torch.ops.gac_coding.pack_bits(x, backend)


def unpack_bits(
    bits: Tensor, length: int, dtype: torch.dtype = torch.float32, *, backend: str = "auto"
) -> Tensor:
    """The ``[R, length]`` tensor of 0. and 1. that :func:`pack_bits` packed to ``bits``."""
    if not isinstance(bits, Tensor) or bits.dim() != 2 or bits.dtype != torch.uint8:
        raise ValueError(
            f"bits: expected a uint8 tensor [R, ceil(L / 8)], got {getattr(bits, 'shape', bits)}"
        )
    if isinstance(length, bool) or not isinstance(length, int) or _bytes_per_row(length) != bits.shape[1]:
        raise ValueError(f"length: expected L with ceil(L / 8) = {bits.shape[1]}, got {length!r}")
    return torch.ops.gac_coding.unpack_bits(bits, length, dtype, backend)


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
    if aux.numel() == 0 and grad_s.numel() != 0:
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


# ------------------------------------------------------------------------------ BatchNorm + LIF


def _in_kernel(backend: str, y: Tensor, surrogate: int, pool: int) -> bool:
    """Whether :func:`bn_lif` applies BatchNorm's scale and shift inside the LIF kernel (the
    triton backend, no pooling between them) rather than with torch's BatchNorm kernel. A pure
    function of the setting, the tensor's device and dtype: forward and backward agree."""
    return pool == 0 and _plan(backend, y, surrogate).names[0] == "triton"


def _stats_dtype(y: Tensor, weight: Tensor | None) -> torch.dtype:
    """The dtype of BatchNorm's saved statistics (that of ``torch.native_batch_norm``)."""
    return weight.dtype if weight is not None else y.dtype


def _batch_stats(
    y: Tensor,
    weight: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(mean, invstd, new running mean, new running var)`` of BatchNorm over all dims but 1,
    computed with torch reductions (the triton path; the update as torch's BatchNorm writes it)."""
    sd = _stats_dtype(y, weight)
    acc = torch.promote_types(_h_dtype(y.dtype), sd)
    if not training:
        assert running_mean is not None and running_var is not None
        return running_mean.to(sd), torch.rsqrt(running_var.to(acc) + eps).to(sd), None, None
    dims = [0, *range(2, y.dim())]
    var, mean = torch.var_mean(y.to(acc), dim=dims, correction=0)
    invstd = torch.rsqrt(var + eps)
    new_mean = new_var = None
    if running_mean is not None and running_var is not None:
        n = y.numel() // y.shape[1]
        unbiased = var * (n / max(n - 1, 1))
        new_mean = (momentum * mean + (1 - momentum) * running_mean.to(acc)).to(running_mean.dtype)
        new_var = (momentum * unbiased + (1 - momentum) * running_var.to(acc)).to(running_var.dtype)
    return mean.to(sd), invstd.to(sd), new_mean, new_var


def _scale_shift(
    mean: Tensor, invstd: Tensor, weight: Tensor | None, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """BatchNorm as ``y * alpha + beta`` per channel."""
    alpha = invstd * weight if weight is not None else invstd
    beta = bias - mean * alpha if bias is not None else -(mean * alpha)
    return alpha.contiguous(), beta.contiguous()


def _inner(y: Tensor, nhwc: bool) -> int:
    """Elements between two channels in the storage of a ``[N, C, H, W]`` tensor."""
    return 1 if nhwc else int(y.shape[2] * y.shape[3])


def _bn_native(
    y: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(z, mean, invstd, new running mean, new running var)`` from torch's BatchNorm kernel
    (the one ``torch.nn.BatchNorm2d`` runs), the running statistics updated on copies."""
    rm = running_mean.clone() if training and running_mean is not None else running_mean
    rv = running_var.clone() if training and running_var is not None else running_var
    z, mean, invstd = torch.native_batch_norm(y, weight, bias, rm, rv, training, momentum, eps)
    if training and running_mean is not None:
        return z, mean, invstd, rm, rv
    return z, mean, invstd, None, None


def _bn_lif_forward(
    y: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    steps: int,
    pool: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    save: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(spikes, bits, window bits or None, mean, invstd, new running mean, new running var)``."""
    nhwc = _nhwc(y)
    want_sg = save and _bit_backward(surrogate, detach_reset)
    plan = _plan(backend, y, surrogate)
    if _in_kernel(backend, y, surrogate, pool):
        mean, invstd, new_mean, new_var = _batch_stats(
            y, weight, running_mean, running_var, training, momentum, eps
        )
        alpha, beta = _scale_shift(mean, invstd, weight, bias)
        spikes, bits, sg, _ = _call(
            plan, "lif_forward_packed", _rows(y, steps, nhwc), 0, alpha, beta,
            y.shape[1], _inner(y, nhwc), decay, threshold, want_sg, False,
        )  # fmt: skip
        shape = y.shape
    else:
        z, mean, invstd, new_mean, new_var = _bn_native(
            y, weight, bias, running_mean, running_var, training, momentum, eps
        )
        if pool:
            z = F.avg_pool2d(z, pool)
        spikes, bits, sg, _ = _call(
            plan, "lif_forward_packed", _rows(z, steps, nhwc), 0, None, None, 1, 1,
            decay, threshold, want_sg, False,
        )  # fmt: skip
        shape = z.shape
    return _from_rows(spikes, shape, nhwc), bits, sg, mean, invstd, new_mean, new_var


@torch.library.custom_op("gac_coding::bn_lif", mutates_args=())
def _bn_lif_op(
    y: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
    steps: int,
    pool: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    save: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    spikes, bits, sg, mean, invstd, new_mean, new_var = _bn_lif_forward(
        y, weight, bias, running_mean, running_var, training, momentum, eps, steps, pool, decay,
        threshold, surrogate, detach_reset, save, backend,
    )  # fmt: skip
    return spikes, bits, _or_empty(sg, bits), mean, invstd, _or_empty(new_mean, y), _or_empty(new_var, y)


@_bn_lif_op.register_fake
def _bn_lif_fake(
    y, weight, bias, running_mean, running_var, training, momentum, eps, steps, pool, decay,
    threshold, surrogate, detach_reset, save, backend="auto",
):  # fmt: skip
    nhwc = _nhwc(y)
    C = y.shape[1]
    if _in_kernel(backend, y, surrogate, pool):
        sd = _stats_dtype(y, weight)
        mean, invstd = y.new_empty((C,), dtype=sd), y.new_empty((C,), dtype=sd)
        shape = tuple(y.shape)
    else:
        z, mean, invstd = torch.native_batch_norm(
            y, weight, bias, running_mean, running_var, training, momentum, eps
        )
        shape = tuple(F.avg_pool2d(z, pool).shape) if pool else tuple(z.shape)
    L = (shape[0] // steps) * shape[1] * shape[2] * shape[3]
    bits = y.new_empty((steps, _bytes_per_row(L)), dtype=torch.uint8)
    sg = (
        bits.new_empty(bits.shape)
        if save and _bit_backward(surrogate, detach_reset)
        else bits.new_empty(_EMPTY)
    )
    updates = training and running_mean is not None
    new_mean = torch.empty_like(running_mean) if updates else y.new_empty(_EMPTY)
    new_var = torch.empty_like(running_var) if updates else y.new_empty(_EMPTY)
    return _empty_like_layout(shape, nhwc, y.dtype, y.device), bits, sg, mean, invstd, new_mean, new_var


def _bn_lif_backward_run(
    grad_s: Tensor,
    y: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    mean: Tensor,
    invstd: Tensor,
    bits: Tensor | None,
    sg: Tensor | None,
    training: bool,
    eps: float,
    steps: int,
    pool: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    need_w: bool,
    need_b: bool,
    backend: str,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    nhwc = _nhwc(y)
    T = steps
    g5 = grad_s.view(T, grad_s.shape[0] // T, *grad_s.shape[1:])
    if sg is not None and bits is not None:
        grad_z = _backward_from_bits(g5, bits, sg, False, nhwc, decay, backend)
    else:
        plan = _plan(backend, y, surrogate)
        if _in_kernel(backend, y, surrogate, pool):
            alpha, beta = _scale_shift(mean, invstd, weight, bias)
            *_, h = _call(
                plan, "lif_forward_packed", _rows(y, T, nhwc), 0, alpha, beta,
                y.shape[1], _inner(y, nhwc), decay, threshold, False, True,
            )  # fmt: skip
        else:
            rm, rv = (None, None) if training else (running_mean, running_var)
            z = torch.native_batch_norm(y, weight, bias, rm, rv, training, 0.0, eps)[0]
            if pool:
                z = F.avg_pool2d(z, pool)
            *_, h = _call(
                plan, "lif_forward_packed", _rows(z, T, nhwc), 0, None, None, 1, 1,
                decay, threshold, False, True,
            )  # fmt: skip
        h = _from_rows(h, g5.shape, nhwc).to(_h_dtype(y.dtype))
        p = _lif_params(decay, threshold, surrogate, detach_reset)
        grad_z = functional._lif_backward(plan, g5, h, False, p)
    grad_z = grad_z.flatten(0, 1)
    if pool:
        like = _empty_like_layout(y.shape, nhwc, grad_z.dtype, y.device)
        grad_z = torch.ops.aten.avg_pool2d_backward(
            grad_z, like, [pool, pool], [pool, pool], [0, 0], False, True, None
        )
    rm, rv = (None, None) if training else (running_mean, running_var)
    return torch.ops.aten.native_batch_norm_backward(
        grad_z, y, weight, rm, rv, mean, invstd, training, eps, [True, need_w, need_b]
    )


@torch.library.custom_op("gac_coding::bn_lif_backward", mutates_args=())
def _bn_lif_backward_op(
    grad_s: Tensor,
    y: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    mean: Tensor,
    invstd: Tensor,
    bits: Tensor,
    sg: Tensor,
    training: bool,
    eps: float,
    steps: int,
    pool: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    need_w: bool,
    need_b: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    gy, gw, gb = _bn_lif_backward_run(
        grad_s, y, weight, bias, running_mean, running_var, mean, invstd,
        bits if sg.numel() else None, sg if sg.numel() else None, training, eps, steps, pool,
        decay, threshold, surrogate, detach_reset, need_w, need_b, backend,
    )  # fmt: skip
    return gy, _or_empty(gw, y), _or_empty(gb, y)


@_bn_lif_backward_op.register_fake
def _bn_lif_backward_fake(
    grad_s, y, weight, bias, running_mean, running_var, mean, invstd, bits, sg, training, eps,
    steps, pool, decay, threshold, surrogate, detach_reset, need_w, need_b, backend="auto",
):  # fmt: skip
    gw = torch.empty_like(weight) if need_w and weight is not None else None
    gb = torch.empty_like(bias) if need_b and bias is not None else None
    return torch.empty_like(y), _or_empty(gw, y), _or_empty(gb, y)


def _bn_lif_setup(ctx, inputs, output) -> None:
    (y, weight, bias, running_mean, running_var, training, momentum, eps, steps, pool, decay,
     threshold, surrogate, detach_reset, save, *backend) = inputs  # fmt: skip
    spikes, bits, sg, mean, invstd, new_mean, new_var = output
    keep_bits = sg.numel() > 0
    eval_stats = (running_mean, running_var) if not training else (None, None)
    ctx.save_for_backward(
        y, weight, bias, *eval_stats, mean, invstd, bits if keep_bits else bits.new_empty(_EMPTY), sg
    )
    ctx.settings = (training, eps, steps, pool, decay, threshold, surrogate, detach_reset)
    ctx.backend = backend[0] if backend else "auto"
    ctx.mark_non_differentiable(bits, sg, mean, invstd, new_mean, new_var)


def _bn_lif_backward(ctx, grad_s, *_):
    y, weight, bias, rm, rv, mean, invstd, bits, sg = ctx.saved_tensors
    training, eps, steps, pool, decay, threshold, surrogate, detach_reset = ctx.settings
    need_y, need_w, need_b = ctx.needs_input_grad[:3]
    gy, gw, gb = torch.ops.gac_coding.bn_lif_backward(
        grad_s, y, weight, bias, rm, rv, mean, invstd, bits, sg, training, eps, steps, pool,
        decay, threshold, surrogate, detach_reset, bool(need_w and weight is not None),
        bool(need_b and bias is not None), ctx.backend,
    )  # fmt: skip
    return (
        gy if need_y else None,
        gw if (need_w and weight is not None) else None,
        gb if (need_b and bias is not None) else None,
        *([None] * 13),
    )


_bn_lif_op.register_autograd(_bn_lif_backward, setup_context=_bn_lif_setup)


class _BNLIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        y,
        weight,
        bias,
        running_mean,
        running_var,
        training,
        momentum,
        eps,
        steps,
        pool,
        p,
        code,
        save,
        backend,
    ):  # type: ignore[override]
        spikes, bits, sg, mean, invstd, new_mean, new_var = _bn_lif_forward(
            y, weight, bias, running_mean, running_var, training, momentum, eps, steps, pool,
            p.decay, p.threshold, code, p.detach_reset, save, backend,
        )  # fmt: skip
        if save:
            eval_stats = (running_mean, running_var) if not training else (None, None)
            ctx.save_for_backward(
                y, weight, bias, *eval_stats, mean, invstd, bits if sg is not None else None, sg
            )
        ctx.settings = (training, eps, steps, pool, p.decay, p.threshold, code, p.detach_reset)
        ctx.backend = backend
        ctx.mark_non_differentiable(bits, *(t for t in (new_mean, new_var) if t is not None))
        return spikes, bits, new_mean, new_var

    @staticmethod
    def backward(ctx, grad_s, *_):  # type: ignore[override]
        y, weight, bias, rm, rv, mean, invstd, bits, sg = ctx.saved_tensors
        need_y, need_w, need_b = ctx.needs_input_grad[:3]
        gy, gw, gb = _bn_lif_backward_run(
            grad_s, y, weight, bias, rm, rv, mean, invstd, bits, sg, *ctx.settings,
            bool(need_w and weight is not None), bool(need_b and bias is not None), ctx.backend,
        )  # fmt: skip
        return (gy if need_y else None, gw, gb, *([None] * 11))


def _check_pool(pool: int, y: Tensor) -> None:
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 0:
        raise ValueError(f"pool: expected 0 (none) or a kernel size >= 1, got {pool!r}")


def bn_lif(
    y: Tensor, bn: nn.BatchNorm2d, params: LIFParams, T: int, *, pool: int = 0, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """``LIF(AvgPool(BN(y)))`` with ``y: [T * B, C, H, W]`` (time folded into the batch):
    ``(spikes [T * B, C, H', W'], bits uint8 [T, ceil(L / 8)])``.

    ``bn`` is used as ``torch.nn.BatchNorm2d`` would use itself (training or eval mode, its running
    statistics and ``num_batches_tracked`` updated the same way; ``momentum=None`` for the
    cumulative average). ``pool``: the kernel (and stride) of an average pooling between BatchNorm
    and the neuron, 0 for none. The spikes equal those of ``lif(unfold(pool(bn(y))))``; what is
    kept for the backward pass is ``y`` and the batch statistics (see the module doc).
    """
    code = check_lean_params(params)
    if not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"bn: expected a torch.nn.BatchNorm2d, got {type(bn).__name__}")
    _check_pool(pool, y)
    if y.dim() != 4 or y.shape[0] % T:
        raise ValueError(f"y: expected [T * B, C, H, W] with T={T}, got shape {tuple(y.shape)}")
    factor = 0.0 if bn.momentum is None else float(bn.momentum)
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
    training = bn.training or (bn.running_mean is None and bn.running_var is None)
    use_running = not bn.training or bn.track_running_stats
    rm = bn.running_mean if use_running else None
    rv = bn.running_var if use_running else None
    needs = y.requires_grad or any(p is not None and p.requires_grad for p in (bn.weight, bn.bias))
    save = torch.is_grad_enabled() and needs
    p = params
    if _tracing():
        spikes, bits, _, _, _, new_mean, new_var = torch.ops.gac_coding.bn_lif(
            y, bn.weight, bn.bias, rm, rv, training, factor, bn.eps, T, pool,
            p.decay, p.threshold, code, p.detach_reset, save, backend,
        )  # fmt: skip
    else:
        spikes, bits, new_mean, new_var = _BNLIFFunction.apply(
            y, bn.weight, bn.bias, rm, rv, training, factor, bn.eps, T, pool, p, code, save,
            backends.check_backend(backend),
        )  # fmt: skip
    if training and rm is not None and rv is not None:
        with torch.no_grad():
            rm.copy_(new_mean)
            rv.copy_(new_var)
    return spikes, bits


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
