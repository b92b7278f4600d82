"""SpikingJelly backbones (``pip install "gac-coding[spikingjelly]"``).

SpikingJelly keeps state in its modules and clears it with ``functional.reset_net``, which the
wrapper calls before every forward. The step mode is read from the backbone's modules:

* ``"m"`` (multi-step): one call on the whole ``[T, B, ...]`` code.
* ``"s"`` (single-step): the wrapper loops over the ``T`` steps and stacks the outputs.

A backbone that mixes the two (say a multi-step convolution feeding a single-step neuron) is
rejected with the names of one module of each mode. The children of SpikingJelly's step-mode
containers (``SeqToANNContainer``, ``MultiStepContainer``...) count with their container's mode,
as they do in ``functional.set_step_mode``.

Neurons are the classes of ``spikingjelly.activation_based.neuron`` (``BaseNode``...); its memories
are cleared by each module's ``reset()`` (what ``functional.reset_net`` calls) and its step-mode
containers apply their children in order. NIR: ``LIFNode`` with ``v_reset=0.0`` is a NIR ``LIF``
(``tau_nir = tau dt``; ``r = tau`` with ``decay_input=False``, which charges ``V - V/tau + X``, and
``r = 1`` with ``decay_input=True``, which charges ``V + (X - V)/tau``); ``IFNode`` with
``v_reset=0.0`` an ``IF`` with ``r = 1/dt``. The soft reset (``v_reset=None``), other reset values
and its other neurons are refused. SpikingJelly fires when ``v >= threshold`` where NIR fires when
``v > threshold``: the threshold is written unchanged, so the two differ only when a membrane lands
exactly on it.

Example:
    >>> from gac_coding.adapters import get_framework
    >>> get_framework("spikingjelly").chains
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._nir_nodes import full
from .base import Driver, Framework, describe, require, stack_steps, walk

__all__ = ["SpikingJelly", "SpikingJellyDriver", "build", "op_counts", "step_modes"]

_NEURONS = "spikingjelly.activation_based.neuron"

_CONTAINERS = (
    "StepModeContainer",
    "MultiStepContainer",
    "SeqToANNContainer",
    "TLastMultiStepContainer",
    "TLastSeqToANNContainer",
    "ElementWiseRecurrentContainer",
    "LinearRecurrentContainer",
)


def _mode_of(module: nn.Module) -> str | None:
    try:
        mode = module.step_mode
    except AttributeError:
        supported = getattr(module, "supported_step_mode", None)
        modes = tuple(supported()) if callable(supported) else ()
        return modes[0] if len(modes) == 1 else None
    return mode if isinstance(mode, str) else None


def step_modes(backbone: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """The step modes used in ``backbone``, each with the first module that uses it."""
    base = require("spikingjelly", "spikingjelly.activation_based.base")
    layer = require("spikingjelly", "spikingjelly.activation_based.layer")
    containers = tuple(getattr(layer, n) for n in _CONTAINERS if hasattr(layer, n))
    found: dict[str, tuple[str, nn.Module]] = {}
    # a container's children count with the container's mode: do not look inside
    for name, module in walk(backbone, stop=lambda _name, m: isinstance(m, containers)):
        if isinstance(module, base.StepModule) or hasattr(module, "supported_step_mode"):
            mode = _mode_of(module)
            if mode is not None:
                found.setdefault(mode, (name, module))
    return found


class SpikingJellyDriver(Driver):
    """Drives a SpikingJelly backbone in step mode ``"m"`` or ``"s"``."""

    framework = "spikingjelly"

    def __init__(self, mode: str, T: int) -> None:
        self.mode = mode
        self.T = T

    def run(self, backbone: nn.Module, code: Tensor) -> Any:
        # a plain import (build() has imported SpikingJelly already): torch.compile traces it,
        # whereas importlib.import_module would break the graph
        from spikingjelly.activation_based import functional

        functional.reset_net(backbone)
        if self.mode == "m":
            return backbone(code)
        return stack_steps([backbone(code[t]) for t in range(self.T)])


def build(backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> SpikingJellyDriver:
    """Read the step mode of a SpikingJelly backbone; a mixed one raises ``ValueError``."""
    del input_layer  # SpikingJelly nets receive the code as their argument
    found = step_modes(backbone)
    unknown = set(found) - {"m", "s"}
    if unknown:
        mode = unknown.pop()
        raise ValueError(
            f"backbone: expected SpikingJelly step mode 'm' or 's', got {mode!r} at {describe(*found[mode])}"
        )
    if len(found) > 1:
        raise ValueError(
            f"backbone: expected one SpikingJelly step mode throughout, got both: "
            f"{describe(*found['m'])} has step_mode='m', {describe(*found['s'])} has "
            f"step_mode='s'; call spikingjelly.activation_based.functional.set_step_mode(net, "
            f"'m') (or 's') first"
        )
    return SpikingJellyDriver(next(iter(found), "m"), T)


def _node(
    nir: Any, m: Any, where: str, shape: tuple[int, ...], dt: float, dtype: torch.dtype, *, lif: bool
) -> Any:
    """``LIFNode`` as a NIR ``LIF``, ``IFNode`` as an ``IF`` (hard reset to 0 only)."""
    v_reset = m.v_reset
    if v_reset is None:
        raise ValueError(
            f"{where}: v_reset=None is a soft reset (subtract the threshold), which NIR's "
            f"{'LIF' if lif else 'IF'} (reset to v_reset) cannot express exactly"
        )
    if float(v_reset) != 0.0:
        raise ValueError(
            f"{where}: v_reset={v_reset} also sets the resting and initial membrane, which NIR "
            f"consumers start at 0; export needs v_reset=0.0"
        )
    thr = full(float(m.v_threshold), shape, dtype)
    zeros = full(0.0, shape, dtype)
    if not lif:
        return nir.IF(r=full(1.0 / dt, shape, dtype), v_threshold=thr, v_reset=zeros)
    tau = float(m.tau)
    return nir.LIF(
        tau=full(tau * dt, shape, dtype),
        r=full(1.0 if m.decay_input else tau, shape, dtype),
        v_leak=zeros,
        v_threshold=thr,
        v_reset=zeros.copy(),
    )


def op_counts(model: nn.Module, x: Tensor, ignore: Sequence[type[nn.Module]] = ()) -> dict[str, int]:
    """``counts`` of SpikingJelly's ``estimate_simple_energy`` on ``model(x)``, modules of the
    types in ``ignore`` left out (:func:`gac_coding.energy.spikingjelly_counts` runs it in eval
    mode from fresh state)."""
    try:
        from spikingjelly.activation_based.op_counter import SimpleEnergyConfig, estimate_simple_energy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'spikingjelly_counts needs SpikingJelly: pip install "gac-coding[spikingjelly]"'
        ) from exc
    config = SimpleEnergyConfig(extra_ignore_modules=list(ignore))
    report = estimate_simple_energy(model, x, config=config)
    return {key: int(value) for key, value in report.counts.items()}


class SpikingJelly(Framework):
    """SpikingJelly: detection, step modes ``"m"``/``"s"``, ``reset()`` of its memories, its
    containers and the NIR map of ``LIFNode``/``IFNode``."""

    name = "spikingjelly"
    title = "SpikingJelly"
    package = "spikingjelly"
    extra = "spikingjelly"
    nir_neurons = "SpikingJelly LIFNode/IFNode"
    chains = True

    def is_neuron(self, module: nn.Module) -> bool:
        return any(cls.__module__.startswith(_NEURONS) for cls in type(module).__mro__)

    def build(
        self, backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None
    ) -> SpikingJellyDriver:
        return build(backbone, T, input_layer)

    def reset_state(self, model: nn.Module) -> None:
        for module in model.modules():
            reset = getattr(module, "reset", None)
            if callable(reset) and self.owns(module):
                reset()

    def nir_node(
        self, nir: Any, where: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: torch.dtype
    ) -> Any | None:
        cls = type(module)
        if not cls.__module__.startswith(_NEURONS):
            return None
        if cls.__name__ in ("LIFNode", "IFNode"):
            return _node(nir, module, where, shape, dt, dtype, lif=cls.__name__ == "LIFNode")
        raise TypeError(
            f"{where}: NIR export maps SpikingJelly's LIFNode and IFNode only; this neuron has other dynamics"
        )
