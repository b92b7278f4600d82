"""The library's NIR simulator: a feed-forward graph run step by step with NIR's equations
(forward Euler at ``dt``, state from zero), for energy counts and quick checks."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .neurons import NEURON_TYPES, SYNAPTIC_TYPES, check_dt

__all__ = ["simulate"]


def _topological(graph: Any) -> list[str]:
    incoming = {name: 0 for name in graph.nodes}
    for _, dst in graph.edges:
        incoming[dst] += 1
    ready = [n for n, k in incoming.items() if k == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for src, dst in graph.edges:
            if src == name:
                incoming[dst] -= 1
                if incoming[dst] == 0:
                    ready.append(dst)
    if len(order) != len(graph.nodes):
        raise ValueError("graph: has a cycle; simulate runs feed-forward graphs only")
    return order


def _synaptic_module(node: Any, dtype: torch.dtype) -> nn.Module:
    kind = type(node).__name__
    w = torch.as_tensor(node.weight).to(dtype)
    if kind == "Conv2d":
        pad: Any = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in node.padding)
        kernel: Any = tuple(w.shape[2:])  # two ints: NIR's Conv2d is 2-D
        stride: Any = tuple(int(s) for s in node.stride)
        dilation: Any = tuple(int(d) for d in node.dilation)
        m: nn.Module = nn.Conv2d(
            w.shape[1] * int(node.groups), w.shape[0], kernel, stride=stride, padding=pad,
            dilation=dilation, groups=int(node.groups), bias=True,
        )  # fmt: skip
        m.bias = nn.Parameter(torch.as_tensor(node.bias).to(dtype), requires_grad=False)
    else:
        m = nn.Linear(w.shape[1], w.shape[0], bias=kind == "Affine")
        if kind == "Affine":
            m.bias = nn.Parameter(torch.as_tensor(node.bias).to(dtype), requires_grad=False)
    m.weight = nn.Parameter(w, requires_grad=False)
    return m.to(dtype)


def simulate(
    graph: Any, code: Tensor, dt: float, *, record: bool = False, count_ops: bool = False
) -> tuple[Tensor, dict[str, Any]]:
    """Run a feed-forward NIR graph for ``T`` steps, forward Euler at ``dt``, state from zero.

    ``code: [T, B, *input_shape]``; returns ``(output [T, B, *output_shape], extra)`` where
    ``extra`` holds, with ``record``, every node's outputs ``{name: [T, B, ...]}`` and, with
    ``count_ops``, ``"synop"`` and ``"mac"`` of the synaptic nodes (whole batch, all steps).
    Nodes: Input, Output, Conv2d, Affine, Linear, Scale, Flatten, AvgPool2d, SumPool2d (no
    padding), LIF, IF, CubaLIF with NIR's equations (module docstring).
    """
    dt = check_dt(dt)
    if not isinstance(code, Tensor) or code.dim() < 2:
        raise ValueError(f"code: expected a tensor [T, B, ...], got {getattr(code, 'shape', type(code))}")
    with torch.no_grad():
        return _simulate(graph, code, dt, record, count_ops)


def _simulate(
    graph: Any, code: Tensor, dt: float, record: bool, count_ops: bool
) -> tuple[Tensor, dict[str, Any]]:
    from ...energy import dense_macs, exact_synops, is_binary

    order = _topological(graph)
    sources: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        sources[dst].append(src)
    dtype = code.dtype
    modules = {
        n: _synaptic_module(node, dtype).to(code.device)
        for n, node in graph.nodes.items()
        if type(node).__name__ in SYNAPTIC_TYPES
    }
    params: dict[str, dict[str, Tensor]] = {}
    for n, node in graph.nodes.items():
        kind = type(node).__name__
        if kind in NEURON_TYPES or kind == "Scale":
            fields = {
                "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
                "IF": ("r", "v_threshold", "v_reset"),
                "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
                "Scale": ("scale",),
            }[kind]
            params[n] = {f: torch.as_tensor(getattr(node, f)).to(code.device, dtype) for f in fields}
    state: dict[str, dict[str, Tensor]] = {}
    outputs: dict[str, list[Tensor]] = {n: [] for n in graph.nodes} if record else {}
    ops = {"synop": 0, "mac": 0}
    result: list[Tensor] = []
    out_name = next(n for n, node in graph.nodes.items() if type(node).__name__ == "Output")
    for t in range(code.shape[0]):
        values: dict[str, Tensor] = {}
        for n in order:
            node = graph.nodes[n]
            kind = type(node).__name__
            if kind == "Input":
                y = code[t]
            else:
                ins = [values[s] for s in sources[n]]
                if not ins:
                    raise ValueError(f"graph: node {n!r} has no input")
                x = ins[0]
                for other in ins[1:]:
                    x = x + other
                y = _node_step(n, node, kind, x, params.get(n), modules.get(n), state, dt)
                if count_ops and kind in SYNAPTIC_TYPES:
                    if is_binary(x):
                        ops["synop"] += exact_synops(modules[n], x)
                    else:
                        ops["mac"] += dense_macs(modules[n], x, y)
            values[n] = y
            if record:
                outputs[n].append(y)
        result.append(values[out_name])
    extra: dict[str, Any] = dict(ops) if count_ops else {}
    if record:
        extra["outputs"] = {n: torch.stack(v) for n, v in outputs.items() if v}
    return torch.stack(result), extra


def _node_step(
    name: str, node: Any, kind: str, x: Tensor, p: dict[str, Tensor] | None,
    module: nn.Module | None, state: dict[str, dict[str, Tensor]], dt: float,
) -> Tensor:  # fmt: skip
    if kind == "Output":
        return x
    if kind in SYNAPTIC_TYPES:
        assert module is not None
        return module(x)
    if kind == "Scale":
        assert p is not None
        return x * p["scale"]
    if kind == "Flatten":
        start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return x.flatten(start, end)
    if kind in ("AvgPool2d", "SumPool2d"):
        if any(int(v) for v in node.padding):
            raise ValueError(f"graph: {kind} {name!r} has padding, which simulate does not run")
        k = tuple(int(v) for v in node.kernel_size)
        s = tuple(int(v) for v in node.stride)
        return F.avg_pool2d(x, k, s, divisor_override=1 if kind == "SumPool2d" else None)
    if kind in NEURON_TYPES:
        assert p is not None
        st = state.setdefault(name, {"v": torch.zeros_like(x), "i": torch.zeros_like(x)})
        v = st["v"]
        if kind == "IF":
            v = v + dt * p["r"] * x
        elif kind == "LIF":
            v = v + dt / p["tau"] * ((p["v_leak"] - v) + p["r"] * x)
        else:  # CubaLIF: current first, then the membrane with the updated current
            i = st["i"] + dt / p["tau_syn"] * (-st["i"] + p["w_in"] * x)
            st["i"] = i
            v = v + dt / p["tau_mem"] * ((p["v_leak"] - v) + p["r"] * i)
        z = (v > p["v_threshold"]).to(x.dtype)
        st["v"] = torch.where(z > 0, p["v_reset"], v)
        return z
    raise ValueError(f"graph: node {name!r} of type {kind} is not supported by simulate")
