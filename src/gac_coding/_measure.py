"""One way to run a model for a measurement (energy counts, firing rates, BatchNorm calibration,
the shapes NIR export traces).

:func:`measuring` saves every module's training flag, sets the mode, clears framework state and
turns gradients off; on the way out it restores the flags and clears the state again, whether the
run succeeded or raised. This library's modules reset their own state at every call; the state
other frameworks keep in their modules between calls is cleared by
:func:`reset_framework_state`, which asks each registered framework
(:func:`gac_coding.adapters.reset_state`) and imports none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .adapters import reset_state

__all__ = ["first_tensor", "measuring", "reset_framework_state"]


def reset_framework_state(model: nn.Module) -> None:
    """Clear the state that the frameworks' modules in ``model`` keep between calls.

    This library's own modules start fresh at every call anyway.
    """
    reset_state(model)


def first_tensor(value: Any) -> Tensor | None:
    """What a hook reads from a module's output: the tensor, or the first item of a tuple or list
    when it is a tensor (a neuron's ``(spikes, state)``), else ``None``.

    Example:
        >>> import torch
        >>> first_tensor((torch.ones(2), None)).shape, first_tensor("spikes")
        (torch.Size([2]), None)
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


@contextlib.contextmanager
def measuring(model: nn.Module, *, train: bool = False) -> Iterator[nn.Module]:
    """Run ``model`` inside the block in eval mode (``train=True``: training mode), without
    gradients, from fresh state; restore every module's training flag afterwards.

    Example:
        >>> import torch
        >>> from gac_coding._measure import measuring
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
        >>> net[1].eval()
        Dropout(p=0.5, inplace=False)
        >>> with measuring(net) as m:
        ...     y = m(torch.ones(1, 2))
        ...     (m.training, y.requires_grad)
        (False, False)
        >>> net.training, net[1].training            # each module's own flag is back
        (True, False)
    """
    flags = {module: module.training for module in model.modules()}
    try:
        model.train(train)
        reset_framework_state(model)
        with torch.no_grad():
            yield model
    finally:
        for module, flag in flags.items():
            module.training = flag
        reset_framework_state(model)
