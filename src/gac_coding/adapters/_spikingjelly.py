"""SpikingJelly backbones (``pip install "gac-coding[spikingjelly]"``).

SpikingJelly keeps state in its modules and clears it with ``functional.reset_net``, which the
wrapper calls before every forward. The step mode is read from the backbone's modules:

* ``"m"`` (multi-step): one call on the whole ``[T, B, ...]`` code.
* ``"s"`` (single-step): the wrapper loops over the ``T`` steps and stacks the outputs.

A backbone that mixes the two (say a multi-step convolution feeding a single-step neuron) is
rejected with the names of one module of each mode. The children of SpikingJelly's step-mode
containers (``SeqToANNContainer``, ``MultiStepContainer``...) count with their container's mode,
as they do in ``functional.set_step_mode``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ._common import Driver, describe, require, stack_steps, walk

__all__ = ["SpikingJellyDriver", "build"]

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
