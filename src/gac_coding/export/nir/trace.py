"""Tracing: the per-sample shapes of every module of a model, from one forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..._measure import first_tensor, reset_framework_state
from .neurons import describe

__all__ = ["per_sample", "trace_shapes"]


def per_sample(shape: tuple[int, ...], T: int, B: int) -> tuple[int, ...] | None:
    """Drop the leading batch (``[B, ...]``, ``[T*B, ...]``) or time and batch (``[T, B, ...]``) dims."""
    if len(shape) >= 1 and shape[0] in (B, T * B):
        return tuple(shape[1:])
    if len(shape) >= 2 and shape[0] == T and shape[1] == B:
        return tuple(shape[2:])
    return None


def trace_shapes(model: nn.Module, x: Tensor, T: int, B: int) -> dict[nn.Module, Any]:
    """Per-sample (input, output) shapes of the first call of every module of ``model`` (or the
    error that says why they cannot be read)."""
    shapes: dict[nn.Module, Any] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if module in shapes:
            return
        inp = args[0] if args and isinstance(args[0], Tensor) else None
        res = first_tensor(out)
        if inp is None or res is None:
            return
        ps_in = per_sample(tuple(inp.shape), T, B)
        ps_out = per_sample(tuple(res.shape), T, B)
        if ps_in is None or ps_out is None:
            # only an error if the graph needs this module (the encoder's internals never are)
            shapes[module] = ValueError(
                f"model: cannot tell the batch dimension of the tensors around "
                f"{describe(names.get(module, '?'), module)} (input {tuple(inp.shape)}, output "
                f"{tuple(res.shape)}, T={T}, batch {B}); export expects [B, ...], [T*B, ...] or "
                f"[T, B, ...]"
            )
            return
        shapes[module] = (ps_in, ps_out)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        reset_framework_state(model)
    return shapes
