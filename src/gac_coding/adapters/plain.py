"""Plain PyTorch backbones, whose spiking neuron is this library's :class:`~gac_coding.LIF`.

The wrapper calls such a module once on the whole time-major code ``[T, B, C, H, W]`` and returns
what it returns. It has no framework state to reset: :class:`~gac_coding.LIF` starts from rest at
every call, and a module that keeps state of its own across calls must reset it itself at the
start of ``forward`` (the project's convention).

NIR: :class:`~gac_coding.LIF` (``decay``, ``threshold``, hard reset to 0) is a NIR ``LIF`` with
``dt/tau = 1 - decay`` and ``r = 1/(1 - decay)``; ``decay = 1`` (no leak) becomes an ``IF`` with
``r = 1/dt``. A subclass of ``LIF`` is refused (it may change the dynamics). ``torch.nn``'s
``Sequential`` subclasses apply their children in order.

Example:
    >>> import gac_coding as gac
    >>> from torch import nn
    >>> from gac_coding.adapters import get_framework
    >>> fw = get_framework("torch")
    >>> fw.is_neuron(gac.LIF()), fw.is_neuron(nn.ReLU())
    (True, False)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..neuron import LIF
from ._nir_nodes import decay_node
from .base import DEFAULT_FRAMEWORK, Driver, Framework

__all__ = ["PlainTorch", "TorchDriver"]


class TorchDriver(Driver):
    """One call on the whole ``[T, B, ...]`` code."""

    framework = DEFAULT_FRAMEWORK
    mode = "sequence"


class PlainTorch(Framework):
    """Plain PyTorch: any backbone that holds no module of another registered framework."""

    name = DEFAULT_FRAMEWORK
    title = "PyTorch"
    package = "torch"
    extra = None
    nir_neurons = "gac_coding.LIF"
    chains = True

    def owns(self, module: nn.Module) -> bool:
        # every module is a torch module: plain PyTorch is what no other framework claims
        return False

    def is_neuron(self, module: nn.Module) -> bool:
        return isinstance(module, LIF)

    def build(self, backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> TorchDriver:
        del backbone, T, input_layer  # nothing to detect
        return TorchDriver()

    def nir_node(
        self, nir: Any, where: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: torch.dtype
    ) -> Any | None:
        if not isinstance(module, LIF):
            return None
        if type(module) is not LIF:
            raise TypeError(
                f"{where}: a subclass of gac_coding.LIF may change its dynamics; export takes LIF itself"
            )
        return decay_node(nir, torch.tensor(module.decay, dtype=dtype), module.threshold, shape, dt, where)
