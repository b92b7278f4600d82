"""Norse backbones (``pip install "gac-coding[norse]"``).

Norse modules are functional about state: a stateful module takes ``(input, state)`` and returns
``(output, state)``, and ``state=None`` means "start from rest". The wrapper never reuses a state
between calls, so nothing leaks from one batch into the next.

* ``"step"``: a stateful backbone (``SequentialState``, or a cell alone) whose neurons are cells
  (``LIFCell``, ``LICell``...): the wrapper loops over the ``T`` steps and threads the state, starting
  from ``None``.
* ``"sequence"``: a stateful backbone whose neurons take whole sequences (``LIF``, ``LI``,
  ``Lift(...)``, a ``SequentialState`` of those): one call on ``[T, B, ...]`` with ``state=None``.
  A backbone whose ``forward`` has no ``state`` argument (a custom module that loops over the
  sequence itself, a ``Lift``) is also called once on the whole sequence.

A stateful backbone that mixes cells with whole-sequence modules is rejected: the cells would need
one call per step and the sequence modules one call in all.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

from ._common import Driver, describe, require, stack_steps, walk

__all__ = ["NorseDriver", "build"]


def _takes_state(module: nn.Module) -> bool:
    try:
        return "state" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def _classify(backbone: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, nn.Module]]]:
    """(bare cells, whole-sequence modules) in ``backbone``; does not look inside either kind."""
    module_api = require("norse", "norse.torch")
    sequence_types = tuple(
        getattr(module_api, n) for n in ("Lift", "SNN", "SNNRecurrent") if hasattr(module_api, n)
    )
    snn = require("norse", "norse.torch.module.snn")
    sequence_types += (snn.SNN, snn.SNNRecurrent, nn.RNNBase)
    cell_types = (snn.SNNCell, snn.SNNRecurrentCell)
    cells: list[tuple[str, nn.Module]] = []
    sequences: list[tuple[str, nn.Module]] = []

    def kind(module: nn.Module) -> str | None:
        if isinstance(module, sequence_types):
            return "sequence"
        if isinstance(module, cell_types) or (
            _takes_state(module) and type(module).__name__.endswith("Cell")
        ):
            return "cell"
        return None

    for name, module in walk(backbone, stop=lambda _name, m: kind(m) is not None):
        found = kind(module)
        if found is not None:
            (cells if found == "cell" else sequences).append((name, module))
    return cells, sequences


class NorseDriver(Driver):
    """Drives a Norse backbone; see the module docstring for the modes."""

    framework = "norse"

    def __init__(self, mode: str, T: int, stateful: bool) -> None:
        self.mode = mode
        self.T = T
        self.stateful = stateful

    def run(self, backbone: nn.Module, code: Tensor) -> Any:
        if self.mode == "step":
            state = None
            outputs = []
            for t in range(self.T):
                out, state = backbone(code[t], state)
                outputs.append(out)
            return stack_steps(outputs)
        if self.stateful:
            out, _ = backbone(code, None)
            return out
        out = backbone(code)
        if getattr(backbone, "is_stateful", False) and isinstance(out, tuple) and len(out) == 2:
            return out[0]  # a Lift of a stateful module returns (outputs, final state)
        return out


def build(backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> NorseDriver:
    """Choose the mode of a Norse backbone, or raise a ``ValueError`` for an unsupported one."""
    del input_layer  # Norse nets receive the code as their argument
    stateful = _takes_state(backbone)
    if not stateful:
        return NorseDriver("sequence", T, stateful=False)
    cells, sequences = _classify(backbone)
    if cells and sequences:
        raise ValueError(
            f"backbone: expected a Norse net of per-step cells or of whole-sequence modules, got "
            f"both: {describe(*cells[0])} takes one step, {describe(*sequences[0])} takes the "
            f"whole [T, B, ...] sequence; wrap the cells in norse.torch.Lift(...) or use the "
            f"cells' sequence versions (LIFCell -> LIF)"
        )
    if sequences:
        return NorseDriver("sequence", T, stateful=True)
    return NorseDriver("step", T, stateful=True)
