"""The eager backend of the neuron ops: torch operations, a few passes over memory per step.

The four functions have the backend signatures (see :mod:`gac_coding.ops.backends`). Comparisons
write float results directly (no bool masks, ``masked_fill`` or bool-to-float copies) and every
per-step temporary is a reused scratch buffer. This backend also runs any callable surrogate
(``surrogate`` may be a code, 0 triangle / 1 rectangle, or the derivative function itself).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .layout import empty_steps
from .params import SurrogateFn

__all__ = [
    "available",
    "gated_backward",
    "gated_forward",
    "lif_backward",
    "lif_forward",
    "lif_step_backward",
    "lif_step_forward",
]

Surrogate = int | SurrogateFn


def available(device: object = None) -> tuple[bool, str]:
    """Always usable."""
    return True, ""


def lif_step_forward(
    x_t: Tensor,
    h_prev: Tensor | None,
    keep: Tensor,
    decay: float,
    threshold: float,
    h_out: Tensor,
    spike_out: Tensor,
) -> None:
    """One step: write ``h_t`` into ``h_out``, ``s_t`` into ``spike_out`` and ``1 - s_t`` into ``keep``.

    ``h_prev`` is ``h_{t-1}`` (``None`` at the first step), ``keep`` holds ``1 - s_{t-1}`` on entry
    (a float tensor of the step's shape). ``h_t = x_t + (decay h_{t-1}) (1 - s_{t-1})`` is one
    ``addcmul``. ``h_out`` may be ``h_prev`` itself.
    """
    if h_prev is None:
        h_out.copy_(x_t)
    else:
        torch.addcmul(x_t, h_prev, keep, value=decay, out=h_out)
    torch.gt(h_out, threshold, out=spike_out)
    torch.le(h_out, threshold, out=keep)


def _surrogate_at(h_t: Tensor, threshold: float, surrogate: Surrogate) -> Tensor:
    """``surrogate(h_t - threshold)`` as a new tensor of ``h_t``'s dtype, in place after the
    subtraction when named. A callable's result is brought to that dtype (a bool mask or float32
    values for a float64 membrane), as the in-place products below keep the dtype of their first
    operand."""
    d = torch.sub(h_t, threshold)
    if surrogate == 0:
        return d.abs_().neg_().add_(1.0).clamp_(min=0.0)  # -a + 1 rounds exactly as 1 - a
    if surrogate == 1:
        return d.abs_().lt_(0.5)
    return surrogate(d).to(h_t.dtype)  # type: ignore[operator]


def lif_step_backward(
    grad_s: Tensor,
    grad_h_next: Tensor | None,
    h_t: Tensor,
    keep: Tensor,
    decay: float,
    threshold: float,
    surrogate: Surrogate,
    detach_reset: bool,
    out: Tensor | None = None,
) -> Tensor:
    """``dL/dh_t`` from ``dL/ds_t`` and ``g = dL/dh_{t+1}`` (``None`` at the last step).

    ``keep`` is a float scratch tensor of the step's shape (overwritten with ``1 - s_t``, computed
    from ``h_t``); the result goes to ``out`` when given.

    ``v_t = h_t (1 - s_t)`` and ``h_{t+1} = decay v_t + x_{t+1}``, hence
    ``dL/ds_t = grad_s - decay g h_t`` (the reset path, dropped when detached) and
    ``dL/dh_t = dL/ds_t * surrogate(h_t - threshold) + decay g (1 - s_t)`` with ``g = dL/dh_{t+1}``.
    """
    sg = _surrogate_at(h_t, threshold, surrogate)
    if grad_h_next is None:
        return torch.mul(grad_s, sg, out=out) if out is not None else sg.mul_(grad_s)
    if detach_reset:
        grad_h = sg.mul_(grad_s)
    else:
        grad_h = torch.addcmul(grad_s, grad_h_next, h_t, value=-decay).mul_(sg)
    torch.le(h_t, threshold, out=keep)
    if out is None:
        return grad_h.addcmul_(grad_h_next, keep, value=decay)
    return torch.addcmul(grad_h, grad_h_next, keep, value=decay, out=out)


def lif_forward(
    x: Tensor, steps: int, decay: float, threshold: float, save: bool
) -> tuple[Tensor, Tensor | None]:
    static = steps > 0
    T = steps if static else x.shape[0]
    step = x if static else x[0]
    spikes = empty_steps(step, T)
    # without a backward pass one scratch step of membrane is enough (updated in place)
    h = torch.empty_like(spikes) if save else torch.empty_like(spikes[0])
    keep = torch.empty_like(spikes[0])
    h_prev = None
    for t in range(T):
        h_t = h[t] if save else h
        lif_step_forward(x if static else x[t], h_prev, keep, decay, threshold, h_t, spikes[t])
        h_prev = h_t
    return spikes, (h if save else None)


def lif_backward(
    grad_s: Tensor,
    h: Tensor,
    is_static: bool,
    decay: float,
    threshold: float,
    surrogate: Surrogate,
    detach_reset: bool,
) -> Tensor:
    T = h.shape[0]
    keep = torch.empty_like(h[0])
    grad_x = None if is_static else torch.empty_like(h)
    g = None
    for t in range(T - 1, -1, -1):
        out = None if is_static else grad_x[t]  # type: ignore[index]
        g = lif_step_backward(grad_s[t], g, h[t], keep, decay, threshold, surrogate, detach_reset, out=out)
        if is_static:
            # g is fresh each step and the previous one is no longer needed: accumulate in place
            grad_x = g if grad_x is None else grad_x.add_(g)
    return grad_x  # type: ignore[return-value]


def _ta_per_element(ta: Tensor, step_dims: int) -> Tensor:
    """``[T, B] -> [T, B, 1, ...]`` broadcasting over the other ``step_dims - 1`` dims of a step."""
    return ta.view(*ta.shape, *([1] * (step_dims - 1)))


def gated_forward(
    u: Tensor, ta: Tensor, sca: Tensor, steps: int, decay: float, threshold: float, save: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    static = steps > 0
    T = ta.shape[0]
    step = u if static else u[0]
    sca_static = sca.dim() == step.dim()
    fired = empty_steps(step, T)  # 0./1.: no bool promotions later
    gate = torch.empty_like(fired)
    out = torch.empty_like(fired)
    # without a backward pass one scratch step of membrane is enough
    h = torch.empty_like(fired) if save else torch.empty_like(fired[0])
    keep = torch.empty_like(fired[0])
    ta_b = _ta_per_element(ta, step.dim())
    h_prev = None
    for t in range(T):
        h_t = h[t] if save else h
        lif_step_forward(u if static else u[t], h_prev, keep, decay, threshold, h_t, fired[t])
        h_prev = h_t
        torch.mul(sca if sca_static else sca[t], ta_b[t], out=gate[t])
        gate[t].sigmoid_()
        torch.mul(gate[t], fired[t], out=out[t])
    return out, fired, gate, (h if save else None)


def gated_backward(
    grad_out: Tensor,
    h: Tensor,
    out: Tensor,
    gate: Tensor,
    ta: Tensor,
    sca: Tensor,
    u_static: bool,
    decay: float,
    threshold: float,
    surrogate: Surrogate,
    detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    T = h.shape[0]
    sca_static = sca.dim() == h.dim() - 1
    ta_b = _ta_per_element(ta, h.dim() - 1)
    grad_ta = torch.empty((T, ta.shape[1]), dtype=ta.dtype, device=ta.device)
    grad_u = torch.empty_like(h[0] if u_static else h)
    grad_sca = torch.empty_like(sca)
    # per-step scratch, reused: no fresh T-sized temporaries in the loop
    keep, grad_s, grad_z, prod = (torch.empty_like(h[0]) for _ in range(4))
    carry = (torch.empty_like(h[0]), torch.empty_like(h[0]))
    g = None
    for i, t in enumerate(range(T - 1, -1, -1)):
        m = gate[t]
        sca_t = sca if sca_static else sca[t]
        torch.mul(grad_out[t], m, out=grad_s)
        # d O / d z = S * m * (1 - m) with z = TA * SCA, and S * m = O
        torch.mul(grad_out[t], out[t], out=prod)
        torch.addcmul(prod, prod, m, value=-1.0, out=grad_z)
        grad_ta[t] = torch.mul(grad_z, sca_t, out=prod).sum(tuple(range(1, prod.dim())))
        if not sca_static:
            torch.mul(grad_z, ta_b[t], out=grad_sca[t])
        elif i == 0:
            torch.mul(grad_z, ta_b[t], out=grad_sca)
        else:
            grad_sca.addcmul_(grad_z, ta_b[t])
        g = lif_step_backward(
            grad_s, g, h[t], keep, decay, threshold, surrogate, detach_reset, out=carry[i % 2]
        )
        if not u_static:
            grad_u[t] = g
        elif i == 0:
            grad_u.copy_(g)
        else:
            grad_u.add_(g)
    return grad_u, grad_ta, grad_sca
