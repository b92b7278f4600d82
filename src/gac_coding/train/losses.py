"""Training losses on time-major logits ``[T, B, classes]``.

* ``"ce"``: cross-entropy of the time-averaged logits (the paper's recipe).
* ``"tet"``: temporal efficient training (Deng et al. 2022): the mean over ``t`` of the
  cross-entropy of each step's logits.

Both take optional label smoothing and CutMix targets (:class:`~gac_coding.train.augment.MixedTarget`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .augment import MixedTarget

__all__ = ["LOSSES", "spike_loss"]

#: Loss names accepted by ``--loss``.
LOSSES: tuple[str, ...] = ("ce", "tet")


def _ce(logits: Tensor, target: Tensor | MixedTarget, label_smoothing: float) -> Tensor:
    if isinstance(target, MixedTarget):
        return target.lam * F.cross_entropy(logits, target.y_a, label_smoothing=label_smoothing) + (
            1.0 - target.lam
        ) * F.cross_entropy(logits, target.y_b, label_smoothing=label_smoothing)
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def spike_loss(
    logits: Tensor,
    target: Tensor | MixedTarget,
    kind: str = "ce",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Loss of time-major ``logits [T, B, classes]`` against ``target``.

    Example:
        >>> import torch
        >>> logits = torch.zeros(4, 2, 10)
        >>> round(float(spike_loss(logits, torch.tensor([1, 2]), "tet")), 4)  # log(10)
        2.3026
    """
    if logits.dim() != 3:
        raise ValueError(f"logits: expected [T, B, classes], got shape {tuple(logits.shape)}")
    if kind not in LOSSES:
        raise ValueError(f"loss: expected one of {list(LOSSES)}, got {kind!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1), got {label_smoothing!r}")
    logits = logits.float()
    if kind == "ce":
        return _ce(logits.mean(0), target, label_smoothing)
    steps, batch, classes = logits.shape
    flat: Tensor | MixedTarget
    if isinstance(target, MixedTarget):
        flat = MixedTarget(y_a=target.y_a.repeat(steps), y_b=target.y_b.repeat(steps), lam=target.lam)
    else:
        flat = target.repeat(steps)
    # mean over t of the per-step batch-mean CE == CE averaged over the flattened T*B rows
    return _ce(logits.reshape(steps * batch, classes), flat, label_smoothing)
