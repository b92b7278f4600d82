"""Batch-level augmentation (CutMix) and Poisson rate coding.

CutMix draws from torch's global random generator (Poisson coding too, unless a ``generator`` is
given), so a training run seeded once, and resumed with its saved random states, repeats every draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MixedTarget", "cutmix", "poisson_encode"]


@dataclass
class MixedTarget:
    """Targets of a CutMix batch: the loss is ``lam * L(y_a) + (1 - lam) * L(y_b)``."""

    y_a: Tensor
    y_b: Tensor
    lam: float


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def cutmix(
    x: Tensor,
    y: Tensor,
    probability: float,
    *,
    beta: float = 1.0,
) -> tuple[Tensor, Tensor | MixedTarget]:
    """CutMix (Yun et al. 2019) on a static batch ``[B, C, H, W]`` with integer labels ``[B]``.

    With probability ``probability`` a box of area fraction ``1 - lam`` (``lam ~ Beta(beta,
    beta)``) is pasted from a shuffled copy of the batch; ``lam`` is then corrected to the box
    actually pasted (clipped at the border). Returns ``(x, y)`` unchanged otherwise.

    Example:
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> xm, target = cutmix(x, y, probability=1.0)
        >>> xm.shape, 0.0 <= target.lam <= 1.0
        (torch.Size([4, 3, 8, 8]), True)
    """
    probability = _check_probability("probability", probability)
    if x.dim() != 4:
        raise ValueError(f"x: expected a static batch [B, C, H, W], got shape {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
    if not beta > 0:
        raise ValueError(f"beta: expected > 0, got {beta!r}")
    if probability == 0.0 or float(torch.rand(())) >= probability:
        return x, y
    dist = torch.distributions.Beta(torch.tensor(float(beta)), torch.tensor(float(beta)))
    lam = float(dist.sample())
    height, width = x.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, ()))
    cx = int(torch.randint(width, ()))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    perm = torch.randperm(x.shape[0]).to(x.device)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return mixed, MixedTarget(y_a=y, y_b=y[perm], lam=lam)


def poisson_encode(x: Tensor, T: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Poisson (Bernoulli) rate coding: ``[B, ...]`` intensities in ``[0, 1]`` -> ``[T, B, ...]``.

    Each step emits a spike with probability equal to the pixel's intensity, independently over
    time, so the expected rate over ``T`` steps is the intensity itself.

    Example:
        >>> s = poisson_encode(torch.full((2, 1, 4, 4), 0.5), T=8)
        >>> s.shape, bool(((s == 0) | (s == 1)).all())
        (torch.Size([8, 2, 1, 4, 4]), True)
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T: expected an integer >= 1, got {T!r}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(
            f"x: Poisson coding expects intensities in [0, 1], got [{float(x.min())}, {float(x.max())}]"
        )
    probs = x.unsqueeze(0).expand(T, *x.shape)
    return torch.bernoulli(probs, generator=generator)
