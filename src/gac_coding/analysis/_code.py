"""The check every function of :mod:`gac_coding.analysis` makes of a time-major code."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_code"]


def check_code(o: object, name: str = "o") -> Tensor:
    if not isinstance(o, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(o).__name__}")
    if o.dim() < 2:
        raise ValueError(
            f"{name}: expected a time-major code [T, B, ...] (at least 2 dims), got shape {tuple(o.shape)}"
        )
    if o.shape[0] < 1 or o.shape[1] < 1 or o.numel() == 0:
        raise ValueError(f"{name}: expected T >= 1, B >= 1 and a non-empty code, got {tuple(o.shape)}")
    if o.dtype == torch.bool:
        o = o.to(torch.float64)
    if o.is_complex() or not (o.is_floating_point() or o.dtype in _INT_DTYPES):
        raise TypeError(f"{name}: expected a real (float, int or bool) tensor, got dtype {o.dtype}")
    o = o.detach().to(device="cpu", dtype=torch.float64)  # metrics and plots run on the CPU
    if not bool(torch.isfinite(o).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return o


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
