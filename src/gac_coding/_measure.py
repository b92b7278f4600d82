"""One way to run a model for a measurement (energy counts, firing rates, BatchNorm calibration).

:func:`measuring` saves every module's training flag, sets the mode, clears framework state and
turns gradients off; on the way out it restores the flags and clears the state again, whether the
run succeeded or raised. This library's modules reset their own state at every call; SpikingJelly
keeps membranes in its modules between calls, which :func:`reset_framework_state` clears without
importing SpikingJelly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["measuring", "reset_framework_state"]


def reset_framework_state(model: nn.Module) -> None:
    """Clear the memories of SpikingJelly modules in ``model`` (their ``reset()``).

    Other frameworks' state, and this library's, starts fresh at every call anyway.
    """
    for module in model.modules():
        if type(module).__module__.startswith("spikingjelly.") and callable(getattr(module, "reset", None)):
            module.reset()  # type: ignore[operator]


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
