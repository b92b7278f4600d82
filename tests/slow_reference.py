"""Pieces shared by the tests' independent slow formulations (not the library's code)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class _Fire(torch.autograd.Function):
    """Heaviside(x) (strict) with a surrogate derivative; ``x = v - V_th``."""

    @staticmethod
    def forward(ctx, x: Tensor, kind: str) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.kind = kind
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if ctx.kind == "triangle":
            d = torch.clamp(1.0 - x.abs(), min=0.0)
        else:
            d = (x.abs() < 0.5).to(x.dtype)
        return grad * d, None


def fire(x: Tensor, kind: str) -> Tensor:
    """Spikes of ``x = v - V_th`` with the ``"triangle"`` or ``"rectangle"`` surrogate gradient."""
    return _Fire.apply(x, kind)


def slow_lif(
    x: Tensor, decay: float, threshold: float, kind: str, detach_reset: bool
) -> tuple[Tensor, Tensor]:
    """The LIF of docs/design/neuron.md §1 step by step with autograd operations: ``(spikes, membranes)``.

    ``v_t = decay * v_{t-1} * (1 - s_{t-1}) + x_t``, ``s_t = [v_t > threshold]`` (``v_0 = 0``) over
    dim 0 of ``x``; the reset factor is a constant in the backward pass when ``detach_reset``.
    ``membranes`` (detached) are the ``v_t`` before the reset, for tests that keep away from the
    threshold.
    """
    v = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    spikes, membranes = [], []
    for t in range(x.shape[0]):
        reset = s.detach() if detach_reset else s
        v = decay * v * (1.0 - reset) + x[t]
        s = fire(v - threshold, kind)
        spikes.append(s)
        membranes.append(v.detach())
    return torch.stack(spikes), torch.stack(membranes)


def slow_gated_lif(
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    decay: float,
    threshold: float,
    kind: str,
    detach_reset: bool,
    static: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``O = sigmoid(TA * SCA) * LIF(U)`` written out: ``(out, spikes, gate, membranes)``.

    ``u``: ``[T, B, ...]`` or (``static``) one step repeated ``T = ta.shape[0]`` times; ``sca``: one
    step (the same at every step) or ``[T, B, ...]``.
    """
    T, B = ta.shape
    seq = u.expand(T, *u.shape) if static else u
    sca_seq = sca.expand(T, *sca.shape) if sca.dim() == seq.dim() - 1 else sca
    spikes, membranes = slow_lif(seq, decay, threshold, kind, detach_reset)
    gate = torch.sigmoid(ta.reshape(T, B, *([1] * (seq.dim() - 2))) * sca_seq)
    return gate * spikes, spikes, gate, membranes


def activation(x: Tensor, kind: str) -> Tensor:
    """The temporal attention's nonlinearity written out: ``relu``, ``leaky_relu`` (slope 0.1) or
    ``gelu`` (the exact one, with the error function)."""
    if kind == "relu":
        return torch.where(x > 0, x, torch.zeros_like(x))
    if kind == "leaky_relu":
        return torch.where(x > 0, x, 0.1 * x)
    assert kind == "gelu", kind
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def slow_temporal_attention(ta: torch.nn.Module, a_avg: Tensor, a_max: Tensor) -> Tensor:
    """``TA`` ``[T, B]`` from per-sample pooled statistics ``a_avg, a_max: [B, T]``, written out.

    ``"mlp"``: the paper's MLP across the T steps. ``"conv"``: two 1-D convolutions over time (zero
    padding, "same" length) with the activation between, as explicit sums. Biases (``ta_bias``)
    and the activation (``ta_activation``) are read from the module's layers and settings.
    """
    kind = ta.activation
    if ta.kind == "mlp":
        w1, w2 = ta.fc1.weight, ta.fc2.weight
        b1 = ta.fc1.bias if ta.fc1.bias is not None else torch.zeros_like(w1[:, 0])
        b2 = ta.fc2.bias if ta.fc2.bias is not None else torch.zeros_like(w2[:, 0])

        def f(a: Tensor) -> Tensor:
            hidden = [
                activation(sum(a[:, i] * w1[j, i] for i in range(w1.shape[1])) + b1[j], kind)
                for j in range(w1.shape[0])
            ]
            return torch.stack(
                [sum(hidden[j] * w2[o, j] for j in range(w1.shape[0])) + b2[o] for o in range(w2.shape[0])],
                dim=1,
            )

        return (f(a_avg) + f(a_max)).t()
    w1, w2 = ta.conv1.weight, ta.conv2.weight  # [hidden, 1, k], [1, hidden, k]
    hidden, _, k = w1.shape
    b1 = ta.conv1.bias if ta.conv1.bias is not None else torch.zeros_like(w1[:, 0, 0])
    b2 = ta.conv2.bias if ta.conv2.bias is not None else torch.zeros_like(w2[:, 0, 0])
    half = k // 2
    T = a_avg.shape[1]

    def conv(a: Tensor) -> Tensor:  # a: [B, T] -> [B, T]
        def tap(x: Tensor, t: int) -> Tensor:
            return x[:, t] if 0 <= t < T else torch.zeros_like(x[:, 0])

        mid = [
            [
                activation(sum(w1[h, 0, i] * tap(a, t + i - half) for i in range(k)) + b1[h], kind)
                for t in range(T)
            ]
            for h in range(hidden)
        ]
        mids = [torch.stack(m, dim=1) for m in mid]  # hidden x [B, T]
        out = [
            sum(w2[0, h, i] * tap(mids[h], t + i - half) for h in range(hidden) for i in range(k)) + b2[0]
            for t in range(T)
        ]
        return torch.stack(out, dim=1)

    return (conv(a_avg) + conv(a_max)).t()
