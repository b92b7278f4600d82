"""Operation counts of one call of a convolution or linear layer: dense multiply-accumulates, and
the exact synaptic operations of a binary input (each spike times the weights it reaches)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["dense_macs", "exact_synops", "is_binary"]

_CONV = nn.modules.conv._ConvNd


def is_binary(x: Tensor) -> bool:
    """Whether every entry of ``x`` is 0 or 1 (a spike tensor; ``bool`` tensors always are).

    Example:
        >>> import torch
        >>> is_binary(torch.tensor([0.0, 1.0, 1.0])), is_binary(torch.tensor([0.0, 0.5]))
        (True, False)
    """
    if x.dtype == torch.bool:
        return True
    return bool(((x == 0) | (x == 1)).all())


def _spatial_dims(module: nn.Module) -> int:
    return len(module.kernel_size)  # type: ignore[arg-type]


def _batched(module: nn.Module, x: Tensor) -> Tensor:
    """Bring the input of a convolution to ``[N, C, *spatial]`` (multi-step ``[T, B, ...]`` folded)."""
    n = _spatial_dims(module)
    if x.dim() == n + 3:  # SpikingJelly-style multi-step layers receive [T, B, C, ...]
        return x.flatten(0, 1)
    if x.dim() == n + 1:  # unbatched
        return x.unsqueeze(0)
    return x


def dense_macs(module: nn.Module, x: Tensor, out: Tensor) -> int:
    """Multiply-accumulates of one dense call of a convolution or linear layer (bias excluded).

    Convolution: ``out.numel() * C_in / groups * prod(kernel)``; transposed convolution:
    ``x.numel() * C_out / groups * prod(kernel)``; linear: ``out.numel() * in_features``.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        >>> x = torch.rand(1, 3, 5, 5)
        >>> dense_macs(conv, x, conv(x)) == 8 * 5 * 5 * 3 * 3 * 3
        True
    """
    if isinstance(module, nn.Linear):
        return int(out.numel()) * int(module.in_features)
    if isinstance(module, _CONV):
        kernel = math.prod(module.kernel_size)  # type: ignore[arg-type]
        if module.transposed:
            return int(x.numel()) * (module.out_channels // module.groups) * kernel
        return int(out.numel()) * (module.in_channels // module.groups) * kernel
    raise TypeError(f"module: expected a convolution or nn.Linear, got {type(module).__name__}")


def exact_synops(module: nn.Module, x: Tensor) -> int:
    """Exact synaptic operations of a convolution or linear layer on a binary input ``x``.

    Every input spike costs one accumulate per weight it reaches. For a convolution this is counted
    by running the layer's own geometry (stride, padding, padding mode, dilation, groups) with
    all-ones weights: each output position then holds the number of spikes in its receptive field,
    and each counts once per output channel of its group. Spikes near a border reach fewer output
    positions, and zero padding produces no operations. A linear layer: ``nnz(x) * out_features``.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
        >>> x = torch.zeros(1, 1, 4, 4); x[0, 0, 0, 0] = 1.0     # one spike in a corner
        >>> exact_synops(conv, x)                              # 2 channels x 4 in-bounds taps
        8
    """
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            return int(torch.count_nonzero(x)) * int(module.out_features)
        if not isinstance(module, _CONV):
            raise TypeError(f"module: expected a convolution or nn.Linear, got {type(module).__name__}")
        xb = _batched(module, x)
        # float32 holds every count up to 2**24 exactly; past that (an output position reached
        # by more taps) and for a float64 input the counts are taken in float64
        taps = module.in_channels * math.prod(module.kernel_size)  # type: ignore[arg-type]
        exact32 = xb.dtype != torch.float64 and taps <= 2**24
        xb = xb.to(torch.float32 if exact32 else torch.float64)
        groups = int(module.groups)
        kernel = tuple(module.kernel_size)  # type: ignore[arg-type]
        if module.transposed:
            ones = xb.new_ones((module.in_channels, module.out_channels // groups, *kernel))
            fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[len(kernel) - 1]
            reached = fn(
                xb, ones, None, module.stride, module.padding,  # type: ignore[arg-type]
                module.output_padding, groups, module.dilation,  # type: ignore[arg-type]
            )  # fmt: skip
            return int(reached.sum(dtype=torch.float64).item())
        ones = xb.new_ones((groups, module.in_channels // groups, *kernel))
        counts = module._conv_forward(xb, ones, None)  # type: ignore[operator]
        per_group = module.out_channels // groups
        return int(counts.sum(dtype=torch.float64).item()) * per_group
