"""The neuron ops: the multi-step LIF and the LIF fused with the GAC gate.

Each op runs the whole ``[T, B, ...]`` sequence in one autograd node with a hand-written backward
through time: it saves the pre-spike membrane instead of the handful of intermediates per step
that an autograd loop keeps. The arithmetic is done by a backend (:mod:`gac_coding.ops.backends`).

Three ways in, one arithmetic:

* eager calls go through a ``torch.autograd.Function`` (the cheapest dispatch per call);
* under ``torch.compile``, ``torch.export`` and ``torch.jit`` tracing the ops are the custom
  operators ``torch.ops.gac_coding.lif`` / ``gated_lif`` (with ``lif_backward`` /
  ``gated_lif_backward``), registered with fake implementations that give the exact output
  shapes, dtypes and strides, so graphs trace through them without a break;
* a callable surrogate (no kernel knows it) runs the eager backend in eager mode; under tracing
  it runs :func:`lif_decomposed`, the same dynamics written with differentiable torch operations
  (spikes through a straight-through term whose derivative is the surrogate), which dynamo traces
  together with the callable. If dynamo cannot trace the callable it says so itself.

Custom operator schemas (``surrogate``: 0 triangle, 1 rectangle; ``h`` is empty when not
``save``; ``backend``: the caller's backend setting, resolved when the op runs, see
:mod:`gac_coding.ops.backends`)::

    gac_coding::lif(Tensor x, int steps, float decay, float threshold, int surrogate,
                    bool detach_reset, bool save, str backend="auto") -> (Tensor spikes, Tensor h)
    gac_coding::lif_backward(Tensor grad_s, Tensor h, bool is_static, float decay,
                             float threshold, int surrogate, bool detach_reset,
                             str backend="auto") -> Tensor
    gac_coding::gated_lif(Tensor u, Tensor ta, Tensor sca, int steps, float decay,
                          float threshold, int surrogate, bool detach_reset, bool save,
                          str backend="auto")
        -> (Tensor out, Tensor fired, Tensor gate, Tensor h)
    gac_coding::gated_lif_backward(Tensor grad_out, Tensor h, Tensor out, Tensor gate,
                                   Tensor ta, Tensor sca, bool u_static, float decay,
                                   float threshold, int surrogate, bool detach_reset,
                                   str backend="auto")
        -> (Tensor grad_u, Tensor grad_ta, Tensor grad_sca)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import positive_int
from . import backends
from ._inductor import ensure_inductor_fallbacks
from .layout import channels_to_front, channels_to_last, is_channels_last_step
from .params import LIFParams, SurrogateFn

__all__ = ["gated_lif", "gated_lif_decomposed", "lif", "lif_decomposed"]

_NAMES = ("triangle", "rectangle")
_HALF = (torch.float16, torch.bfloat16)


def _h_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the saved membrane: float32 for half inputs (the kernels' arithmetic)."""
    return torch.float32 if dtype in _HALF else dtype


def _kernel_surrogate(p: LIFParams) -> int | SurrogateFn:
    code = p.surrogate_code
    return p.surrogate_fn if code is None else code


def _in(t: Tensor, nhwc: bool) -> Tensor:
    """A tensor as the backends take it: contiguous, a channels-last step as ``[..., H, W, C]``."""
    return channels_to_last(t, nhwc).contiguous()


def _out(t: Tensor, nhwc: bool, dtype: torch.dtype | None = None) -> Tensor:
    """A backend's result back in the caller's layout (channels-last steps stay channels-last)."""
    t = t.contiguous() if dtype is None else t.to(dtype).contiguous()
    return channels_to_front(t, nhwc)


def _empty_out(shape: Sequence[int], nhwc: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Uninitialised tensor of ``shape`` laid out as :func:`_out` returns it (fake kernels)."""
    last = (*shape[:-3], shape[-2], shape[-1], shape[-3]) if nhwc else tuple(shape)
    return channels_to_front(torch.empty(last, dtype=dtype, device=device), nhwc)


# --------------------------------------------------------------------------------------------
# The four runs through a backend, shared by the autograd Functions and the custom operators.
# Each takes the plan of the call (the backends it may try) and returns the backend that ran.
# --------------------------------------------------------------------------------------------

Plan = backends.Plan


def _lif_forward(
    plan: Plan, x: Tensor, steps: int, p: LIFParams, save: bool
) -> tuple[Tensor, Tensor | None, str]:
    nhwc = is_channels_last_step(x if steps > 0 else x[0])
    (spikes, h), used = backends.call(plan, "lif_forward", _in(x, nhwc), steps, p.decay, p.threshold, save)
    return _out(spikes, nhwc, x.dtype), (None if h is None else _out(h, nhwc)), used


def _lif_backward(plan: Plan, grad_s: Tensor, h: Tensor, static: bool, p: LIFParams) -> Tensor:
    nhwc = is_channels_last_step(h[0])
    grad_x, _ = backends.call(
        plan,
        "lif_backward",
        _in(grad_s, nhwc),
        _in(h, nhwc),
        static,
        p.decay,
        p.threshold,
        _kernel_surrogate(p),
        p.detach_reset,
    )
    return _out(grad_x, nhwc, grad_s.dtype)


def _gated_forward(
    plan: Plan, u: Tensor, ta: Tensor, sca: Tensor, steps: int, p: LIFParams, save: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, str]:
    nhwc = is_channels_last_step(u if steps > 0 else u[0])
    (out, fired, gate, h), used = backends.call(
        plan,
        "gated_forward",
        _in(u, nhwc),
        ta.contiguous(),
        _in(sca, nhwc),
        steps,
        p.decay,
        p.threshold,
        save,
    )
    dtype = u.dtype
    return (
        _out(out, nhwc, dtype),
        _out(fired, nhwc, dtype),
        _out(gate, nhwc, dtype),
        None if h is None else _out(h, nhwc),
        used,
    )


def _gated_backward(
    plan: Plan,
    grad_out: Tensor,
    h: Tensor,
    out: Tensor,
    gate: Tensor,
    ta: Tensor,
    sca: Tensor,
    static: bool,
    p: LIFParams,
) -> tuple[Tensor, Tensor, Tensor]:
    nhwc = is_channels_last_step(h[0])
    (grad_u, grad_ta, grad_sca), _ = backends.call(
        plan,
        "gated_backward",
        _in(grad_out, nhwc),
        _in(h, nhwc),
        _in(out, nhwc),
        _in(gate, nhwc),
        ta.contiguous(),
        _in(sca, nhwc),
        static,
        p.decay,
        p.threshold,
        _kernel_surrogate(p),
        p.detach_reset,
    )
    return (
        _out(grad_u, nhwc, grad_out.dtype),
        grad_ta.to(ta.dtype).contiguous(),
        _out(grad_sca, nhwc, sca.dtype),
    )


def _from(plan: Plan, used: str) -> Plan:
    """The plan of a backward pass: the backend that ran the forward pass first (its saved
    membrane is in that backend's dtype), then the later ones of the forward's plan."""
    return Plan(plan.setting, plan.names[plan.names.index(used) :])


# --------------------------------------------------------------------------------------------
# Eager: autograd Functions carrying the LIFParams and the backend that ran the forward pass.
# --------------------------------------------------------------------------------------------


class _LIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, steps: int, p: LIFParams, save: bool, backend: str) -> Tensor:  # type: ignore[override]
        plan = backends.plan(backend, x, p.surrogate_code)
        spikes, h, used = _lif_forward(plan, x, steps, p, save)
        if save:
            ctx.save_for_backward(h)
        ctx.plan = _from(plan, used)
        ctx.static = steps > 0
        ctx.lif = p
        return spikes

    @staticmethod
    def backward(ctx, grad_s: Tensor):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        return _lif_backward(ctx.plan, grad_s, h, ctx.static, ctx.lif), None, None, None, None


class _GatedFunction(torch.autograd.Function):
    """``O_t = sigmoid(TA_t * SCA_t) * LIF(U)_t``; also returns the spikes and the gate."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, u: Tensor, ta: Tensor, sca: Tensor, steps: int, p: LIFParams, save: bool, backend: str
    ) -> tuple[Tensor, Tensor, Tensor]:
        plan = backends.plan(backend, u, p.surrogate_code)
        out, fired, gate, h, used = _gated_forward(plan, u, ta, sca, steps, p, save)
        if save:
            # the output O = gate * S stands for S in the backward pass (dO/dz = dO * O * (1 - gate))
            ctx.save_for_backward(h, out, gate, ta, sca)
        ctx.plan = _from(plan, used)
        ctx.static = steps > 0
        ctx.lif = p
        ctx.mark_non_differentiable(fired, gate)
        # no zero-filled T-sized gradients for the two non-differentiable outputs
        ctx.set_materialize_grads(False)
        return out, fired, gate

    @staticmethod
    def backward(ctx, grad_out: Tensor | None, _g_fired, _g_gate):  # type: ignore[override]
        if grad_out is None:  # only the non-differentiable outputs were used
            return (None,) * 7
        h, out, gate, ta, sca = ctx.saved_tensors
        grads = _gated_backward(ctx.plan, grad_out, h, out, gate, ta, sca, ctx.static, ctx.lif)
        return (*grads, None, None, None, None)


# --------------------------------------------------------------------------------------------
# Tracing: custom operators with fake kernels (exact shapes, dtypes, strides) and autograd.
# The backend setting is a plain string argument, resolved when the operator runs.
# --------------------------------------------------------------------------------------------


def _params(decay: float, threshold: float, surrogate: int, detach_reset: bool) -> LIFParams:
    return LIFParams(decay, threshold, _NAMES[surrogate], detach_reset)


@torch.library.custom_op("gac_coding::lif", mutates_args=())
def _lif_op(
    x: Tensor,
    steps: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    save: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    p = _params(decay, threshold, surrogate, detach_reset)
    plan = backends.plan(backends.check_backend(backend), x, surrogate)
    spikes, h, _ = _lif_forward(plan, x, steps, p, save)
    hd = _h_dtype(x.dtype)
    return spikes, (x.new_empty(0, dtype=hd) if h is None else h.to(hd))


@_lif_op.register_fake
def _lif_fake(x, steps, decay, threshold, surrogate, detach_reset, save, backend="auto"):
    ensure_inductor_fallbacks()  # Inductor keeps the kernel (see gac_coding.ops._inductor)
    step = x if steps > 0 else x[0]
    shape = (steps if steps > 0 else x.shape[0], *step.shape)
    nhwc = is_channels_last_step(step)
    spikes = _empty_out(shape, nhwc, x.dtype, x.device)
    hd = _h_dtype(x.dtype)
    h = _empty_out(shape, nhwc, hd, x.device) if save else x.new_empty(0, dtype=hd)
    return spikes, h


@torch.library.custom_op("gac_coding::lif_backward", mutates_args=())
def _lif_backward_op(
    grad_s: Tensor,
    h: Tensor,
    is_static: bool,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    backend: str = "auto",
) -> Tensor:
    p = _params(decay, threshold, surrogate, detach_reset)
    plan = backends.plan(backends.check_backend(backend), grad_s, surrogate)
    return _lif_backward(plan, grad_s, h, is_static, p)


@_lif_backward_op.register_fake
def _lif_backward_fake(grad_s, h, is_static, decay, threshold, surrogate, detach_reset, backend="auto"):
    shape = h.shape[1:] if is_static else h.shape
    return _empty_out(shape, is_channels_last_step(h[0]), grad_s.dtype, h.device)


def _empty_batch_grad(grad: Tensor, static: bool) -> Tensor:
    """The input's (zero) gradient for an output gradient ``grad`` with no elements: the shape of
    one step for a static input, of the whole sequence otherwise."""
    return grad.new_zeros(grad.shape[1:] if static else grad.shape)


def _lif_setup(ctx, inputs, output) -> None:
    x, steps, decay, threshold, surrogate, detach_reset, save, *backend = inputs
    ctx.save_for_backward(output[1])
    ctx.static = steps > 0
    ctx.lif = (decay, threshold, surrogate, detach_reset, *backend)
    ctx.mark_non_differentiable(output[1])


def _lif_op_backward(ctx, grad_s: Tensor, _grad_h):
    (h,) = ctx.saved_tensors
    if grad_s.numel() == 0:  # an empty batch: a zero gradient, with or without the membrane
        return _empty_batch_grad(grad_s, ctx.static), None, None, None, None, None, None, None
    if h.numel() == 0:
        raise RuntimeError("gac_coding::lif: backward through a call made without save=True")
    grad_x = torch.ops.gac_coding.lif_backward(grad_s, h, ctx.static, *ctx.lif)
    return grad_x, None, None, None, None, None, None, None


_lif_op.register_autograd(_lif_op_backward, setup_context=_lif_setup)


@torch.library.custom_op("gac_coding::gated_lif", mutates_args=())
def _gated_op(
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    steps: int,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    save: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    p = _params(decay, threshold, surrogate, detach_reset)
    plan = backends.plan(backends.check_backend(backend), u, surrogate)
    out, fired, gate, h, _ = _gated_forward(plan, u, ta, sca, steps, p, save)
    hd = _h_dtype(u.dtype)
    return out, fired, gate, (u.new_empty(0, dtype=hd) if h is None else h.to(hd))


@_gated_op.register_fake
def _gated_fake(u, ta, sca, steps, decay, threshold, surrogate, detach_reset, save, backend="auto"):
    ensure_inductor_fallbacks()
    step = u if steps > 0 else u[0]
    shape = (ta.shape[0], *step.shape)
    nhwc = is_channels_last_step(step)
    out, fired, gate = (_empty_out(shape, nhwc, u.dtype, u.device) for _ in range(3))
    hd = _h_dtype(u.dtype)
    h = _empty_out(shape, nhwc, hd, u.device) if save else u.new_empty(0, dtype=hd)
    return out, fired, gate, h


@torch.library.custom_op("gac_coding::gated_lif_backward", mutates_args=())
def _gated_backward_op(
    grad_out: Tensor,
    h: Tensor,
    out: Tensor,
    gate: Tensor,
    ta: Tensor,
    sca: Tensor,
    u_static: bool,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    p = _params(decay, threshold, surrogate, detach_reset)
    plan = backends.plan(backends.check_backend(backend), grad_out, surrogate)
    return _gated_backward(plan, grad_out, h, out, gate, ta, sca, u_static, p)


@_gated_backward_op.register_fake
def _gated_backward_fake(
    grad_out, h, out, gate, ta, sca, u_static, decay, threshold, surrogate, detach_reset, backend="auto"
):
    nhwc = is_channels_last_step(h[0])
    grad_u = _empty_out(h.shape[1:] if u_static else h.shape, nhwc, grad_out.dtype, h.device)
    grad_ta = torch.empty(ta.shape, dtype=ta.dtype, device=ta.device)
    grad_sca = _empty_out(sca.shape, nhwc, sca.dtype, sca.device)
    return grad_u, grad_ta, grad_sca


def _gated_setup(ctx, inputs, output) -> None:
    u, ta, sca, steps, decay, threshold, surrogate, detach_reset, save, *backend = inputs
    out, fired, gate, h = output
    ctx.save_for_backward(h, out, gate, ta, sca)
    ctx.static = steps > 0
    ctx.lif = (decay, threshold, surrogate, detach_reset, *backend)
    ctx.mark_non_differentiable(fired, gate, h)


def _gated_op_backward(ctx, grad_out: Tensor, _g_fired, _g_gate, _g_h):
    h, out, gate, ta, sca = ctx.saved_tensors
    if grad_out.numel() == 0:  # an empty batch: zero gradients, with or without the membrane
        grad_u = _empty_batch_grad(grad_out, ctx.static)
        return (grad_u, torch.zeros_like(ta), torch.zeros_like(sca), *([None] * 7))
    if h.numel() == 0:
        raise RuntimeError("gac_coding::gated_lif: backward through a call made without save=True")
    grads = torch.ops.gac_coding.gated_lif_backward(grad_out, h, out, gate, ta, sca, ctx.static, *ctx.lif)
    return (*grads, None, None, None, None, None, None, None)


_gated_op.register_autograd(_gated_op_backward, setup_context=_gated_setup)

# --------------------------------------------------------------------------------------------
# The same dynamics as differentiable torch operations (callable surrogates under tracing; a
# plain-aten formulation of the custom operators for exporters).
# --------------------------------------------------------------------------------------------


def _spike(h: Tensor, threshold: float, surrogate: SurrogateFn) -> Tensor:
    """``[h > threshold]`` whose derivative in ``h`` is ``surrogate(h - threshold)``.

    The straight-through term ``y - y.detach()`` is exactly zero for finite ``y``.
    """
    d = h - threshold
    y = d * surrogate(d).detach()
    return (d > 0).to(h.dtype) + (y - y.detach())


def lif_decomposed(
    x: Tensor, steps: int, p: LIFParams, *, differentiable: bool = True
) -> tuple[Tensor, Tensor]:
    """``(spikes, h)`` of :func:`lif` as a loop of torch operations.

    ``steps > 0``: ``x`` is one step applied ``steps`` times, else a sequence ``[T, ...]``. The
    spikes equal the op's. ``differentiable=True``: gradients agree with the op's to float
    rounding (memory: the autograd graph of every step, where the op saves only ``h``);
    ``False``: the forward alone, without the surrogate's straight-through terms (what an
    inference graph for an exporter needs).
    """
    fn = p.surrogate_fn
    T = steps if steps > 0 else x.shape[0]
    spikes: list[Tensor] = []
    hs: list[Tensor] = []
    for t in range(T):
        x_t = x if steps > 0 else x[t]
        if t == 0:
            h = x_t
        else:
            s = spikes[-1].detach() if p.detach_reset and differentiable else spikes[-1]
            h = x_t + (p.decay * hs[-1]) * (1.0 - s)
        hs.append(h)
        spikes.append(_spike(h, p.threshold, fn) if differentiable else (h > p.threshold).to(h.dtype))
    return torch.stack(spikes), torch.stack(hs)


def gated_lif_decomposed(
    u: Tensor, ta: Tensor, sca: Tensor, steps: int, p: LIFParams
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(out, fired, gate, h)`` of :func:`gated_lif` as differentiable torch operations
    (``fired`` and ``gate`` detached); ``steps > 0``: ``u`` is one step applied ``steps`` times."""
    spikes, h = lif_decomposed(u, steps, p)
    gate = _gate(ta, sca, spikes.dim())
    return gate * spikes, spikes.detach(), gate.detach(), h


def _gate(ta: Tensor, sca: Tensor, dims: int) -> Tensor:
    """``sigmoid(ta * sca)`` over ``[T, B, ...]`` of ``dims`` dimensions (``ta: [T, B]``)."""
    return torch.sigmoid(sca * ta.reshape(*ta.shape, *([1] * (dims - 2))))


def _lif_op_inference(x, steps, decay, threshold, surrogate, detach_reset, save, backend="auto"):
    hd = _h_dtype(x.dtype)  # the membrane's dtype in every backend (float32 for half types)
    p = _params(decay, threshold, surrogate, detach_reset)
    spikes, h = lif_decomposed(x.to(hd), steps, p, differentiable=False)
    return spikes.to(x.dtype), (h if save else x.new_empty(0, dtype=hd))


def _gated_op_inference(u, ta, sca, steps, decay, threshold, surrogate, detach_reset, save, backend="auto"):
    spikes, h = _lif_op_inference(u, steps, decay, threshold, surrogate, detach_reset, save)
    gate = _gate(ta, sca, spikes.dim())
    return gate * spikes, spikes, gate, h


def inference_decompositions() -> dict[Any, Callable[..., Any]]:
    """The neuron operators (``torch.ops.gac_coding.lif``, ``gated_lif``) as plain torch
    operations unrolled over the steps, forward only: a table for
    ``ExportedProgram.run_decompositions`` that leaves an inference graph no runtime needs this
    library for (the ONNX export uses it). Spikes and membranes equal the ops' bit for bit in
    float32 and float64 (the reset multiplies by a 0/1 factor); the gate to a few ulps (torch's
    sigmoid rounds differently in its vectorised body and loop tail). Half types keep the
    membrane in float32, as the Triton backend does (the eager one keeps it in the half type)."""
    return {
        torch.ops.gac_coding.lif.default: _lif_op_inference,
        torch.ops.gac_coding.gated_lif.default: _gated_op_inference,
    }


# --------------------------------------------------------------------------------------------
# The ops.
# --------------------------------------------------------------------------------------------


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def lif(x: Tensor, params: LIFParams, *, steps: int | None = None, backend: str = "auto") -> Tensor:
    """Multi-step LIF spikes ``[T, B, ...]`` (0./1., dtype of ``x``).

    Args:
        x: input current ``[T, B, ...]``, or with ``steps`` one step ``[B, ...]`` applied at each
            of ``steps`` steps (its gradient is the sum over the steps).
        params: the neuron settings.
        steps: number of steps for a static input; ``None`` for a sequence.
        backend: the backend setting of this call (:mod:`gac_coding.ops.backends`).

    Example:
        >>> import torch
        >>> from gac_coding.ops import LIFParams, lif
        >>> lif(torch.tensor([[0.6], [0.6], [0.6]]), LIFParams(0.5, 1.0)).flatten().tolist()
        [0.0, 0.0, 1.0]
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    if not isinstance(params, LIFParams):
        raise TypeError(f"params: expected a LIFParams, got {type(params).__name__}")
    if steps is None:
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"x: expected a sequence [T, B, ...] with T >= 1, got shape {tuple(x.shape)}")
        n = 0
    else:
        n = positive_int("steps", steps)
    save = torch.is_grad_enabled() and x.requires_grad
    if _tracing():
        code = params.surrogate_code
        if code is None:
            return lif_decomposed(x, n, params)[0]
        p = params
        return torch.ops.gac_coding.lif(x, n, p.decay, p.threshold, code, p.detach_reset, save, backend)[0]
    return _LIFFunction.apply(x, n, params, save, backends.check_backend(backend))


def gated_lif(
    u: Tensor, ta: Tensor, sca: Tensor, params: LIFParams, *, static: bool = False, backend: str = "auto"
) -> tuple[Tensor, Tensor, Tensor]:
    """Spikes of ``u`` gated by ``sigmoid(ta * sca)``, fused over time.

    Args:
        u: membrane input ``[T, B, ...]``, or with ``static=True`` one step ``[B, ...]`` applied at
            every step.
        ta: temporal scores ``[T, B]``.
        sca: spatial-channel scores, ``[B, ...]`` (the same at every step) or ``[T, B, ...]``.
        params: the LIF's settings.
        static: whether ``u`` is a single step repeated ``T = ta.shape[0]`` times.
        backend: the backend setting of this call (:mod:`gac_coding.ops.backends`).

    Returns:
        ``(out, spikes, gate)``: the gated output ``[T, B, ...]`` (differentiable), the spikes
        (0./1. in the dtype of ``u``) and the gate ``sigmoid(ta * sca)`` (both detached). ``ta``
        and ``sca`` are computed with in the dtype of ``u``.
    """
    for name, t in (("u", u), ("ta", ta), ("sca", sca)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    if not isinstance(params, LIFParams):
        raise TypeError(f"params: expected a LIFParams, got {type(params).__name__}")
    if ta.dim() != 2:
        raise ValueError(f"ta: expected [T, B], got shape {tuple(ta.shape)}")
    T, B = ta.shape
    step_shape = tuple(u.shape) if static else tuple(u.shape[1:])
    if not static and (u.dim() < 1 or u.shape[0] != T):
        raise ValueError(f"u: expected T={T} steps to match ta, got shape {tuple(u.shape)}")
    if not step_shape or step_shape[0] != B:
        raise ValueError(f"u: expected batch size {B} to match ta, got shape {tuple(u.shape)}")
    # lengths first: a tuple comparison would compare T with the (maybe dynamic) batch size
    sca_shape = tuple(sca.shape)
    n = len(step_shape)
    if not (
        (len(sca_shape) == n and sca_shape == step_shape)
        or (len(sca_shape) == n + 1 and sca_shape == (T, *step_shape))
    ):
        raise ValueError(f"sca: expected shape {step_shape} or {(T, *step_shape)}, got {tuple(sca.shape)}")
    # the op computes in u's dtype; autograd casts the gradients back
    ta = ta.to(u.dtype)
    sca = sca.to(u.dtype)
    save = torch.is_grad_enabled() and (u.requires_grad or ta.requires_grad or sca.requires_grad)
    steps = T if static else 0
    if _tracing():
        code = params.surrogate_code
        if code is None:
            return gated_lif_decomposed(u, ta, sca, steps, params)[:3]
        p = params
        out, fired, gate, _ = torch.ops.gac_coding.gated_lif(
            u, ta, sca, steps, p.decay, p.threshold, code, p.detach_reset, save, backend
        )
        return out, fired, gate
    return _GatedFunction.apply(u, ta, sca, steps, params, save, backends.check_backend(backend))
