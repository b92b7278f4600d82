"""Batch-level augmentation: CutMix.

CutMix draws from torch's global random generator, so a training run seeded once, and resumed with
its saved random states, repeats every draw. (Rate coding, formerly ``poisson_encode`` here, is a
coding: :func:`gac_coding.coding.rate_encode` and :class:`gac_coding.coding.RateEncoder`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import probability as _probability
from .._checks import real
from .._deprecated import moved_names

__all__ = ["MixedTarget", "cutmix"]


@dataclass
class MixedTarget:
    """Targets of a CutMix batch: the loss is ``lam * L(y_a) + (1 - lam) * L(y_b)``."""

    y_a: Tensor
    y_b: Tensor
    lam: float


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
    probability = _probability("probability", probability)
    if x.dim() != 4:
        raise ValueError(f"x: expected a static batch [B, C, H, W], got shape {tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
    real("beta", beta, 0, low_open=True)
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


__getattr__ = moved_names(__name__)  # poisson_encode, now gac_coding.coding.rate_encode
