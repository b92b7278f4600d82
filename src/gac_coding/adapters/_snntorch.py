"""snnTorch backbones (``pip install "gac-coding[snntorch]"``).

Three shapes, told apart by the neurons the backbone holds:

* ``"step"``: per-step neurons built with ``init_hidden=True`` (``nn.Sequential`` or a custom
  module). The wrapper owns the time loop and calls the backbone once per step.
* ``"loop"``: per-step neurons with ``init_hidden=False``, i.e. the tutorial class whose ``forward``
  calls ``init_leaky()`` and loops over ``num_steps`` on a static input. The wrapper calls the
  backbone once and feeds step ``t`` of the code to its input layer at that layer's ``t``-th call.
* ``"sequence"``: only whole-sequence neurons (``StateLeaky``, ``LeakyParallel``...): one call on
  ``[T, B, ...]``.

Before each call every neuron found by walking ``backbone.modules()`` has its hidden state reset
(``reset_mem()``). ``snntorch.utils.reset`` is not used: it relies on a global registry of neuron
instances that misses some nested neurons and touches unrelated networks.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ._common import Driver, describe, neuron_framework, stack_steps, walk

__all__ = ["SnnTorchDriver", "build"]


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
    return "sequence" if neuron_framework(module) == "snntorch" else None


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

    def run(self, backbone: nn.Module, code: Tensor) -> Any:
        reset_states(backbone)
        if self.mode == "step":
            return stack_steps([backbone(code[t]) for t in range(self.T)])
        if self.mode == "sequence":
            return backbone(code)
        return self._run_loop(backbone, code)

    def _run_loop(self, backbone: nn.Module, code: Tensor) -> Any:
        assert self.input_layer is not None
        layer = backbone.get_submodule(self.input_layer)
        T, name = self.T, self.input_layer
        calls = [0]

        def feed(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            t = calls[0]
            calls[0] += 1
            if t >= T:
                raise ValueError(
                    f"backbone: its input layer {name!r} was called more than T={T} times in one "
                    f"forward; the net's own loop (num_steps) must run exactly T={T} steps"
                )
            if not args or not isinstance(args[0], Tensor):
                raise TypeError(f"backbone: its input layer {name!r} was called without a tensor argument")
            step = code[t]
            if args[0].numel() != step.numel():
                raise ValueError(
                    f"backbone: its input layer {name!r} received a tensor of shape "
                    f"{tuple(args[0].shape)}, which is not a reshape of one code step "
                    f"{tuple(step.shape)}; the net must pass its static input (possibly "
                    f"flattened) straight to {name!r}, or name another layer with input_layer="
                )
            return (step.reshape(args[0].shape), *args[1:])

        handle = layer.register_forward_pre_hook(feed)
        try:
            out = backbone(code[0])
        finally:
            handle.remove()
        if calls[0] != T:
            raise ValueError(
                f"backbone: its input layer {name!r} was called {calls[0]} times in one forward, "
                f"expected exactly T={T} (one per step); set the net's num_steps to T={T}"
            )
        return out


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
        return SnnTorchDriver("loop", T, input_layer[0])
    if sequence:
        return SnnTorchDriver("sequence", T, None)
    return SnnTorchDriver("step", T, None)
