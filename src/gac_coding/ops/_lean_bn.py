"""BatchNorm and the LIF as one lean op (:mod:`gac_coding.ops.lean`)."""

from __future__ import annotations

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
    _nhwc,
    _or_empty,
    _plan,
    _rows,
    _tracing,
)
from ._lean_lif import _bit_backward, check_lean_params
from .params import LIFParams

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
        # a copy: the custom operator returns the mean, and an output may not alias an input
        mean = running_mean.to(sd, copy=True)
        return mean, torch.rsqrt(running_var.to(acc) + eps).to(sd), None, None
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
