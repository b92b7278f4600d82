"""snnTorch backbones (``pip install "gac-coding[snntorch]"``).

Three shapes, told apart by the neurons the backbone holds:

* ``"step"``: per-step neurons built with ``init_hidden=True`` (``nn.Sequential`` or a custom
  module). The wrapper owns the time loop and calls the backbone once per step.
* ``"loop"``: per-step neurons with ``init_hidden=False``, i.e. the tutorial class whose ``forward``
  calls ``init_leaky()`` and loops over ``num_steps`` on a static input. The wrapper calls the
  backbone once and feeds step ``t`` of the code to its input layer at that layer's ``t``-th call,
  through a :class:`LoopFeed` hook that ``wrap()`` leaves on the layer.
* ``"sequence"``: only whole-sequence neurons (``StateLeaky``, ``LeakyParallel``...): one call on
  ``[T, B, ...]``.

Before each call every neuron found by walking ``backbone.modules()`` has its hidden state reset
(``reset_mem()``). ``snntorch.utils.reset`` is not used: it relies on a global registry of neuron
instances that misses some nested neurons and touches unrelated networks.

Neurons are the classes of ``snntorch._neurons`` (``SpikingNeuron`` and its subclasses, also when
subclassed elsewhere). NIR: ``Leaky`` (``mem = beta * mem + input``) with
``reset_mechanism="zero"`` is a NIR ``LIF`` with ``decay = beta`` (clamped to ``[0, 1]`` as snnTorch
does); the soft reset (``"subtract"``), no reset, ``inhibition``, ``state_quant``, ``output=True``,
graded spikes and a spike function that does not fire exactly above the threshold are refused, and
so are its other neurons (other dynamics).

Example:
    >>> from gac_coding.adapters import get_framework
    >>> get_framework("snntorch").title
    'snnTorch'
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._nir_nodes import decay_node, probe_spike_function
from .base import Driver, Framework, describe, stack_steps, walk

__all__ = ["LoopFeed", "SnnTorch", "SnnTorchDriver", "build", "reset_states"]

_NEURON_MODULE = "snntorch._neurons"


def _is_neuron(module: nn.Module) -> bool:
    return any(cls.__module__.startswith(_NEURON_MODULE) for cls in type(module).__mro__)


def _neurons(backbone: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, nn.Module]]]:
    """(per-step neurons, i.e. with ``reset_mem``; whole-sequence snnTorch neurons).

    Does not look inside a neuron (``RLeaky`` holds its recurrent layer as a child).
    """
    stepwise: list[tuple[str, nn.Module]] = []
    sequence: list[tuple[str, nn.Module]] = []
    for name, module in walk(backbone, stop=lambda _name, m: _kind(m) is not None):
        kind = _kind(module)
        if kind is not None:
            (stepwise if kind == "step" else sequence).append((name, module))
    return stepwise, sequence


def _kind(module: nn.Module) -> str | None:
    """``"step"`` for a per-step neuron (it has ``reset_mem``), ``"sequence"`` for another
    snnTorch neuron, ``None`` for anything else."""
    if callable(getattr(module, "reset_mem", None)):
        return "step"
    return "sequence" if _is_neuron(module) else None


def reset_states(backbone: nn.Module) -> None:
    """Zero the hidden state of every snnTorch neuron in ``backbone`` (nested ones included)."""
    for module in backbone.modules():
        reset = getattr(module, "reset_mem", None)
        if callable(reset):
            reset()


class SnnTorchDriver(Driver):
    """Drives an snnTorch backbone; see the module docstring for the three modes."""

    framework = "snntorch"

    def __init__(self, mode: str, T: int, input_layer: str | None) -> None:
        self.mode = mode
        self.T = T
        self.input_layer = input_layer
        self.feed: LoopFeed | None = None  # mode "loop": the hook on the input layer

    def run(self, backbone: nn.Module, code: Tensor) -> Any:
        reset_states(backbone)
        if self.mode == "step":
            return stack_steps([backbone(code[t]) for t in range(self.T)])
        if self.mode == "sequence":
            return backbone(code)
        return self._run_loop(backbone, code)

    def _run_loop(self, backbone: nn.Module, code: Tensor) -> Any:
        feed = self.feed
        assert feed is not None and self.input_layer is not None
        layer = backbone.get_submodule(self.input_layer)
        if not feed.attached_to(layer):
            # the layer was replaced since wrap(): hook the new one (eager only: dynamo cannot
            # trace the registration of a hook)
            if torch.compiler.is_compiling() or torch.compiler.is_exporting():
                raise RuntimeError(
                    f"backbone: its input layer {self.input_layer!r} was replaced after wrap(); "
                    f"call the net once outside torch.compile/torch.export to re-attach it"
                )
            feed.attach(layer)
        feed.start(code)
        try:
            out = backbone(code[0])
            calls = feed.calls
        finally:
            feed.stop()
        if calls != self.T:
            raise ValueError(
                f"backbone: its input layer {self.input_layer!r} was called {calls} times in one "
                f"forward, expected exactly T={self.T} (one per step); set the net's num_steps to "
                f"T={self.T}"
            )
        return out


class LoopFeed:
    """The forward pre-hook that hands step ``t`` of the code to the input layer's ``t``-th call.

    Registered once, when the net is wrapped, and left on the layer: it passes the layer's input
    through unchanged unless a wrapped forward is running (:meth:`start` .. :meth:`stop`). One
    hook for the net's lifetime, rather than one registered and removed per call, keeps the loop
    mode traceable by ``torch.compile(fullgraph=True)`` and ``torch.export``.
    """

    def __init__(self, name: str, T: int) -> None:
        self.name = name
        self.T = T
        self.code: Tensor | None = None
        self.calls = 0
        self._layer: nn.Module | None = None

    def attach(self, layer: nn.Module) -> None:
        layer.register_forward_pre_hook(self)
        self._layer = layer

    def attached_to(self, layer: nn.Module) -> bool:
        return self._layer is layer

    def start(self, code: Tensor) -> None:
        self.code = code
        self.calls = 0

    def stop(self) -> None:
        self.code = None

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        code = self.code
        if code is None:  # the backbone called on its own, outside the wrapper
            return None
        t = self.calls
        self.calls = t + 1
        if t >= self.T:
            raise ValueError(
                f"backbone: its input layer {self.name!r} was called more than T={self.T} times "
                f"in one forward; the net's own loop (num_steps) must run exactly T={self.T} steps"
            )
        if not args or not isinstance(args[0], Tensor):
            raise TypeError(f"backbone: its input layer {self.name!r} was called without a tensor argument")
        step = code[t]
        if args[0].numel() != step.numel():
            raise ValueError(
                f"backbone: its input layer {self.name!r} received a tensor of shape "
                f"{tuple(args[0].shape)}, which is not a reshape of one code step "
                f"{tuple(step.shape)}; the net must pass its static input (possibly "
                f"flattened) straight to {self.name!r}, or name another layer with input_layer="
            )
        return (step.reshape(args[0].shape), *args[1:])


def build(backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> SnnTorchDriver:
    """Choose the mode of an snnTorch backbone, or raise a ``ValueError`` for an unsupported one."""
    stepwise, sequence = _neurons(backbone)
    hidden = [(n, m) for n, m in stepwise if getattr(m, "init_hidden", False)]
    explicit = [(n, m) for n, m in stepwise if not getattr(m, "init_hidden", False)]
    if hidden and explicit:
        raise ValueError(
            f"backbone: expected snnTorch neurons that all use init_hidden=True (the wrapper "
            f"loops over time) or all init_hidden=False (the net loops itself), got both: "
            f"{describe(*hidden[0])} has init_hidden=True, {describe(*explicit[0])} has "
            f"init_hidden=False"
        )
    if stepwise and sequence:
        raise ValueError(
            f"backbone: expected per-step snnTorch neurons or whole-sequence ones, got both: "
            f"{describe(*stepwise[0])} is per-step, {describe(*sequence[0])} takes whole sequences"
        )
    if explicit:
        if input_layer is None:
            raise ValueError(
                "backbone: its snnTorch neurons use explicit membranes (init_hidden=False), so the "
                "net loops over time itself and the code must enter through its input layer, but "
                "it has no Conv/Linear layer; name one with input_layer="
            )
        driver = SnnTorchDriver("loop", T, input_layer[0])
        driver.feed = LoopFeed(input_layer[0], T)
        driver.feed.attach(input_layer[1])
        return driver
    if sequence:
        return SnnTorchDriver("sequence", T, None)
    return SnnTorchDriver("step", T, None)


def _leaky_node(nir: Any, m: Any, where: str, shape: tuple[int, ...], dt: float, dtype: torch.dtype) -> Any:
    """``Leaky`` with a hard reset to zero as a NIR ``LIF``; any other setting raises."""
    mech = getattr(m, "reset_mechanism", "subtract")
    if mech != "zero":
        kind = "a soft reset (subtract the threshold)" if mech == "subtract" else "no reset"
        raise ValueError(
            f"{where}: reset_mechanism={mech!r} is {kind}, which NIR's LIF (reset to v_reset) "
            f"cannot express exactly; build the neuron with reset_mechanism='zero'"
        )
    if getattr(m, "inhibition", False) or getattr(m, "state_quant", False):
        raise ValueError(f"{where}: inhibition and state_quant have no NIR equivalent")
    if getattr(m, "output", False):
        raise ValueError(
            f"{where}: output=True returns the membrane, which NIR neurons do not emit (they "
            f"emit spikes only); end the backbone with a Linear layer for per-step logits"
        )
    factor = torch.as_tensor(getattr(m, "graded_spikes_factor", 1.0))
    if not bool((factor == 1).all()):
        raise ValueError(f"{where}: graded_spikes_factor must be 1 (binary spikes) for NIR")
    rule = probe_spike_function(m.spike_grad, dtype)
    if rule != "gt":
        raise ValueError(
            f"{where}: its spike function does not fire exactly when mem > threshold "
            f"(probe gave {rule!r}); NIR's LIF does"
        )
    beta = torch.as_tensor(m.beta).detach().to(dtype).clamp(0, 1)
    return decay_node(nir, beta, torch.as_tensor(m.threshold).detach(), shape, dt, where)


class SnnTorch(Framework):
    """snnTorch: detection, the three driving modes, ``reset_mem`` and the NIR map of ``Leaky``."""

    name = "snntorch"
    title = "snnTorch"
    package = "snntorch"
    extra = "snntorch"
    nir_neurons = "snnTorch Leaky"

    def is_neuron(self, module: nn.Module) -> bool:
        return _is_neuron(module)

    def build(self, backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> SnnTorchDriver:
        return build(backbone, T, input_layer)

    def reset_state(self, model: nn.Module) -> None:
        for module in model.modules():
            reset = getattr(module, "reset_mem", None)
            if callable(reset) and self.owns(module):
                reset()

    def nir_node(
        self, nir: Any, where: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: torch.dtype
    ) -> Any | None:
        path = type(module).__module__
        if path.partition(".")[0] != self.package:
            return None  # (a subclass defined elsewhere has no NIR map: export refuses it)
        if type(module).__name__ == "Leaky":
            return _leaky_node(nir, module, where, shape, dt, dtype)
        if path.startswith(_NEURON_MODULE):
            raise TypeError(
                f"{where}: NIR export maps snnTorch's Leaky only (a LIF); this neuron has other dynamics"
            )
        return None
