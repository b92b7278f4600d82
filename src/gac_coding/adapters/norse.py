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

Neurons are Norse's ``SNN``, ``SNNRecurrent`` and cell modules (``LIFCell``, ``LICell``...) of
``norse.torch.module``; its ``SequentialState`` applies its children in order. NIR: ``LIFCell`` /
``LIF`` (current-based) is a NIR ``CubaLIF`` with ``dt/tau_syn = dt_n * tau_syn_inv``,
``dt/tau_mem = dt_n * tau_mem_inv``, ``w_in = tau_syn/dt``, ``r = 1``; ``LIFBoxCell`` (no current)
a ``LIF`` with ``r = 1``; ``v_leak`` must be 0 (Norse starts the membrane at ``v_leak``, NIR
consumers at 0). Its other neurons are refused.

Example:
    >>> from gac_coding.adapters import get_framework
    >>> get_framework("norse").nir_neurons
    'Norse LIFCell/LIF/LIFBoxCell'
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from ._nir_nodes import full
from .base import Driver, Framework, describe, require, stack_steps, walk

__all__ = ["Norse", "NorseDriver", "build"]

_MODULES = "norse.torch.module"
_SEQUENCE_NEURONS = ("SNNCell", "SNNRecurrentCell", "SNN", "SNNRecurrent")
_EXPORTED = ("LIFCell", "LIF", "LIFBoxCell")


def _is_neuron(module: nn.Module) -> bool:
    for cls in type(module).__mro__:
        if cls.__module__.startswith(_MODULES) and (
            cls.__name__ in _SEQUENCE_NEURONS or cls.__name__.endswith("Cell")
        ):
            return True
    return False


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


def _lif_node(nir: Any, m: Any, where: str, shape: tuple[int, ...], dt: float, dtype: torch.dtype) -> Any:
    """``LIFCell``/``LIF`` as a NIR ``CubaLIF``, ``LIFBoxCell`` as a ``LIF`` (``v_leak`` must be 0)."""
    p = m.p
    dt_n = float(getattr(m, "dt", 0.001))
    v_leak = torch.as_tensor(p.v_leak).detach()
    if not bool((v_leak == 0).all()):
        raise ValueError(
            f"{where}: v_leak={v_leak.tolist()} is also Norse's initial membrane, while NIR "
            f"consumers start at 0; export needs v_leak=0"
        )
    reset_method = getattr(p, "reset_method", None)  # LIFBoxParameters have one; LIFParameters do not
    if reset_method is not None:
        from norse.torch.functional.reset import reset_value

        if reset_method is not reset_value:
            name = getattr(reset_method, "__name__", repr(reset_method))
            raise ValueError(
                f"{where}: reset_method={name} is not a reset to v_reset, which is all NIR's LIF "
                f"expresses; build the neuron with Norse's default reset_value"
            )
    thr = full(p.v_th, shape, dtype)
    reset = full(p.v_reset, shape, dtype)
    leak_mem = dt_n * torch.as_tensor(p.tau_mem_inv).detach().to(dtype)  # dt/tau_mem
    tau_mem = full(dt / leak_mem, shape, dtype)
    ones = full(1.0, shape, dtype)
    if type(m).__name__ == "LIFBoxCell":
        return nir.LIF(tau=tau_mem, r=ones, v_leak=full(0.0, shape, dtype), v_threshold=thr, v_reset=reset)
    leak_syn = dt_n * torch.as_tensor(p.tau_syn_inv).detach().to(dtype)  # dt/tau_syn
    tau_syn = full(dt / leak_syn, shape, dtype)
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=ones,
        v_leak=full(0.0, shape, dtype),
        v_threshold=thr,
        v_reset=reset,
        w_in=tau_syn / dt,
    )


class Norse(Framework):
    """Norse: detection, the step and sequence modes, and the NIR map of its LIF neurons. Its
    state is functional (threaded by the driver), so there is none to reset."""

    name = "norse"
    title = "Norse"
    package = "norse"
    extra = "norse"
    nir_neurons = "Norse LIFCell/LIF/LIFBoxCell"
    chains = True

    def is_neuron(self, module: nn.Module) -> bool:
        return _is_neuron(module)

    def build(self, backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> NorseDriver:
        return build(backbone, T, input_layer)

    def nir_node(
        self, nir: Any, where: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: torch.dtype
    ) -> Any | None:
        cls = type(module)
        if not cls.__module__.startswith(_MODULES):
            return None
        if cls.__name__ in _EXPORTED:
            return _lif_node(nir, module, where, shape, dt, dtype)
        if cls.__name__.endswith("Cell") or hasattr(module, "p"):
            raise TypeError(
                f"{where}: NIR export maps Norse's LIFCell, LIF and LIFBoxCell only; this neuron "
                f"has other dynamics (a leaky integrator readout has no spikes to export: end the "
                f"backbone with a Linear layer)"
            )
        return None
