"""Pieces shared by the tests' independent slow formulations (not the library's code)."""

from __future__ import annotations

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
