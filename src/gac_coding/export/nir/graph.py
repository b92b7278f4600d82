"""The graph builder: a model's modules, in the order they run, as NIR nodes and edges.

``Conv2d`` and ``Linear`` (``Affine`` or ``Linear``) with an eval-mode ``BatchNorm`` right after them
folded in; ``Flatten`` with per-sample dimensions; average pooling as ``AvgPool2d`` without
padding; the neurons of every registered framework (:mod:`.neurons`); MS-ResNet's membrane shortcut
as several edges into the nodes that read the block's output. ``nn.Sequential`` chains are followed
(and the frameworks' sequential containers, :func:`gac_coding.adapters.is_chain`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ...adapters import is_chain
from ...adapters._nir_nodes import SettingShapeError
from .neurons import describe, neuron_node, unsupported

__all__ = ["Builder", "Value"]


@dataclass
class Value:
    """A per-sample signal: the sum of the outputs of ``terms`` (node names), of shape ``shape``."""

    terms: list[str]
    shape: tuple[int, ...]


class Builder:
    """Builds the nodes and edges of a graph from a model's modules, in the order they run."""

    def __init__(self, nir: Any, dt: float, dtype: torch.dtype, shapes: dict[nn.Module, Any]) -> None:
        self.nir = nir
        self.dt = dt
        self.dtype = dtype
        self.shapes = shapes
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.sources: dict[str, str] = {}  # graph node -> qualified module name in the model

    # -------------------------------------------------------------- helpers
    def add(
        self, name: str, node: Any, inputs: Value, shape: tuple[int, ...], module_name: str | None = None
    ) -> Value:
        key = (name or "node").replace(".", "_")
        base, i = key, 1
        while key in self.nodes:
            key = f"{base}_{i}"
            i += 1
        self.nodes[key] = node
        self.edges.extend((src, key) for src in inputs.terms)
        if module_name is not None:
            self.sources[key] = module_name
        return Value([key], tuple(shape))

    def shape_of(self, module: nn.Module, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if module not in self.shapes:
            raise ValueError(
                f"model: {describe(name, module)} was not called in the traced forward pass; "
                f"export follows the modules the model runs"
            )
        found = self.shapes[module]
        if isinstance(found, ValueError):
            raise found
        return found

    def array(self, t: Tensor | None, shape: tuple[int, ...] | None = None) -> Any:
        if t is None:
            assert shape is not None
            return torch.zeros(shape, dtype=self.dtype).numpy()
        return t.detach().to("cpu", self.dtype).contiguous().clone().numpy()

    # -------------------------------------------------------------- layers
    @staticmethod
    def _bn_scale(bn: Any, where: str) -> tuple[Tensor, Tensor]:
        """Eval-mode BatchNorm as ``y = x * scale + shift`` (per channel, float64)."""
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(
                f"{where}: BatchNorm without running statistics (track_running_stats=False) "
                f"normalises with the batch's statistics, which a chip cannot fold"
            )
        var = bn.running_var.detach().to(torch.float64)
        mean = bn.running_mean.detach().to(torch.float64)
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach().to(torch.float64)
        shift = -mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias.detach().to(torch.float64)
        return scale, shift

    def conv(self, name: str, conv: nn.Conv2d, bn: tuple[str, nn.Module] | None, x: Value) -> Value:
        where = describe(name, conv)
        if type(conv).__name__ != "Conv2d":  # nn.Conv2d, or a framework's (SpikingJelly's layer.Conv2d)
            raise TypeError(f"{where}: export maps nn.Conv2d (and SpikingJelly's layer.Conv2d) only")
        if conv.padding_mode != "zeros":
            raise ValueError(f"{where}: padding_mode={conv.padding_mode!r}; NIR's Conv2d pads with zeros")
        padding = conv.padding
        if isinstance(padding, str):
            if padding != "valid":
                raise ValueError(f"{where}: padding={padding!r}; pass explicit padding for NIR")
            padding = (0, 0)
        _, out_shape = self.shape_of(conv, name)
        weight = conv.weight.detach().to(torch.float64)
        if conv.bias is not None:
            bias = conv.bias.detach().to(torch.float64)
        else:
            bias = torch.zeros(conv.out_channels, dtype=torch.float64)
        if bn is not None:
            scale, shift = self._bn_scale(bn[1], describe(*bn))
            weight = weight * scale.view(-1, 1, 1, 1)
            bias = bias * scale + shift
            _, out_shape = self.shape_of(bn[1], bn[0])
        in_shape, _ = self.shape_of(conv, name)
        node = self.nir.Conv2d(
            input_shape=tuple(int(s) for s in in_shape[1:]),
            weight=self.array(weight),
            stride=tuple(int(s) for s in conv.stride),
            padding=tuple(int(p) for p in padding),
            dilation=tuple(int(d) for d in conv.dilation),
            groups=int(conv.groups),
            bias=self.array(bias),
        )
        return self.add(name, node, x, out_shape, name)

    def linear(self, name: str, fc: nn.Linear, bn: tuple[str, nn.Module] | None, x: Value) -> Value:
        where = describe(name, fc)
        if len(x.shape) != 1:
            raise ValueError(
                f"{where}: receives per-sample shape {x.shape}; NIR's Affine takes vectors, so "
                f"flatten before the Linear layer"
            )
        weight = fc.weight.detach().to(torch.float64)
        bias = fc.bias.detach().to(torch.float64) if fc.bias is not None else None
        out_shape = (int(fc.out_features),)
        if bn is not None:
            scale, shift = self._bn_scale(bn[1], describe(*bn))
            weight = weight * scale.view(-1, 1)
            bias = (bias if bias is not None else torch.zeros_like(scale)) * scale + shift
        if bias is None:
            node = self.nir.Linear(weight=self.array(weight))
        else:
            node = self.nir.Affine(weight=self.array(weight), bias=self.array(bias))
        return self.add(name, node, x, out_shape, name)

    def flatten(self, name: str, module: nn.Module, x: Value) -> Value:
        ps_in, ps_out = self.shape_of(module, name)
        if ps_in == ps_out:
            return x  # flattens only batch/time dims (or nothing): per sample an identity
        # the merged dims start at most at ps_out's last dim: matching a prefix (or a suffix) up to
        # the whole of ps_out would read a size-1 dim merged into its neighbour as kept
        last = min(len(ps_in), len(ps_out)) - 1
        n = 0
        while n < last and ps_in[n] == ps_out[n]:
            n += 1
        m = 0
        while m < last - n and ps_in[-1 - m] == ps_out[-1 - m]:
            m += 1
        start, end = n, len(ps_in) - 1 - m
        if len(ps_out) != len(ps_in) - (end - start) or math.prod(ps_in[start : end + 1]) != ps_out[start]:
            raise ValueError(
                f"{describe(name, module)}: turns per-sample shape {ps_in} into {ps_out}, which "
                f"is not a flatten of consecutive dimensions"
            )
        node = self.nir.Flatten(
            input_type={"input": self.nir_shape(ps_in)},
            start_dim=start,
            end_dim=end if end != len(ps_in) - 1 else -1,
        )
        return self.add(name, node, x, ps_out, name)

    def nir_shape(self, shape: tuple[int, ...]) -> Any:
        import numpy as np

        return np.array(shape, dtype=np.int64)

    def pool(self, name: str, module: Any, x: Value) -> Value:
        where = describe(name, module)
        ps_in, ps_out = self.shape_of(module, name)
        if len(ps_in) != 3:
            raise ValueError(f"{where}: expected per-sample [C, H, W], got {ps_in}")
        if isinstance(module, nn.AdaptiveAvgPool2d):
            (h, w), (oh, ow) = ps_in[1:], ps_out[1:]
            if h % oh or w % ow:
                raise ValueError(
                    f"{where}: adaptive pooling from {(h, w)} to {(oh, ow)} has windows of unequal "
                    f"size; NIR's AvgPool2d needs a fixed kernel"
                )
            kernel, stride = (h // oh, w // ow), (h // oh, w // ow)
        else:
            pad = module.padding if isinstance(module.padding, tuple) else (module.padding,) * 2
            if any(int(p) for p in pad) or module.ceil_mode or module.divisor_override is not None:
                raise ValueError(
                    f"{where}: padding, ceil_mode and divisor_override change what is averaged; "
                    f"NIR's AvgPool2d is written without them"
                )
            k = module.kernel_size
            kernel = k if isinstance(k, tuple) else (k, k)
            stride = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
        return self.avgpool(name, x, ps_out, kernel, stride, name)

    def avgpool(
        self, name: str, x: Value, out_shape: tuple[int, ...], kernel: Any, stride: Any,
        module_name: str | None,
    ) -> Value:  # fmt: skip
        node = self.nir.AvgPool2d(
            kernel_size=self.nir_shape(tuple(int(k) for k in kernel)),
            stride=self.nir_shape(tuple(int(s) for s in stride)),
            padding=self.nir_shape((0, 0)),
        )
        return self.add(name, node, x, out_shape, module_name)

    def neuron(self, name: str, module: nn.Module, x: Value) -> Value | None:
        node = neuron_node(self.nir, name, module, x.shape, self.dt, self.dtype)
        if node is None:
            return None
        return self.add(name, node, x, x.shape, name)

    # -------------------------------------------------------------- structure
    def chain(self, items: list[tuple[str, nn.Module]], x: Value) -> Value:
        flat = list(self._flatten_items(items))
        i = 0
        while i < len(flat):
            name, module = flat[i]
            nxt = flat[i + 1] if i + 1 < len(flat) else None
            bn = nxt if nxt is not None and isinstance(nxt[1], nn.modules.batchnorm._BatchNorm) else None
            if isinstance(module, nn.Conv2d):
                x = self.conv(name, module, bn, x)
                i += 2 if bn is not None else 1
                continue
            if isinstance(module, nn.Linear):
                x = self.linear(name, module, bn, x)
                i += 2 if bn is not None else 1
                continue
            x = self.module(name, module, x)
            i += 1
        return x

    def _flatten_items(self, items: list[tuple[str, nn.Module]]) -> Iterator[tuple[str, nn.Module]]:
        for name, module in items:
            if is_chain(module):
                yield from self._flatten_items(
                    [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
                )
            else:
                yield name, module

    def module(self, name: str, module: nn.Module, x: Value) -> Value:
        from ...models.msresnet import MSBlock

        where = describe(name, module)
        if isinstance(module, MSBlock):
            return self.block(name, module, x)
        if isinstance(module, (nn.Identity, nn.Dropout)):
            return x  # exact identities in eval mode
        if isinstance(module, nn.Flatten):
            return self.flatten(name, module, x)
        if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self.pool(name, module, x)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError(
                f"{where}: a BatchNorm must follow a Conv2d or Linear layer to be folded into it; "
                f"NIR has no normalisation node"
            )
        out = self.neuron(name, module, x)
        if out is not None:
            return out
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return self.chain([(name, module)], x)
        unsupported(name, module)

    def block(self, name: str, block: Any, x: Value) -> Value:
        """MS-ResNet block: ``BN2(Conv2(LIF(BN1(Conv1(LIF(x)))))) + shortcut(x)``."""
        p = f"{name}." if name else ""
        y = self.chain(
            [
                (p + "lif1", block.lif1),
                (p + "conv1", block.conv1),
                (p + "bn1", block.bn1),
                (p + "lif2", block.lif2),
                (p + "conv2", block.conv2),
                (p + "bn2", block.bn2),
            ],
            x,
        )
        if isinstance(block.shortcut, nn.Identity):
            short = x
        else:
            short = self.chain([(p + "shortcut", block.shortcut)], x)
        if short.shape != y.shape:
            raise ValueError(f"{describe(name, block)}: branch {y.shape} and shortcut {short.shape} differ")
        return Value(y.terms + short.terms, y.shape)

    def validate(self, items: list[tuple[str, nn.Module]]) -> None:
        """Refuse unsupported modules and settings before the traced run (which they may break)."""
        from ...models.msresnet import MSBlock

        flat = list(self._flatten_items(items))
        for i, (name, module) in enumerate(flat):
            if isinstance(module, MSBlock):
                self.validate([(f"{name}.lif1", module.lif1), (f"{name}.lif2", module.lif2)])
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                if i == 0 or not isinstance(flat[i - 1][1], (nn.Conv2d, nn.Linear)):
                    self.module(name, module, Value([], ()))  # raises the BatchNorm message
            elif not isinstance(module, (nn.Conv2d, nn.Linear, nn.Identity, nn.Dropout, nn.Flatten,
                                         nn.AvgPool2d, nn.AdaptiveAvgPool2d)):  # fmt: skip
                try:
                    node = neuron_node(self.nir, name, module, (1,), self.dt, self.dtype)
                except SettingShapeError:
                    # a setting per neuron or per channel (snnTorch's beta of shape [C, 1, 1]):
                    # the framework took the module, and the trace builds its node (and checks
                    # it) with the real shape
                    continue
                if node is None:
                    unsupported(name, module)

    # -------------------------------------------------------------- ends of the graph
    def msresnet_head(self, model: Any, y: Value) -> Value:
        """MS-ResNet's head: its LIF, the global average pool (``AvgPool2d`` over the whole map),
        ``Flatten`` and the ``Affine`` classifier."""
        head = self.neuron("head_lif", model.head_lif, y)
        assert head is not None  # validate() refused anything else
        c, h, w = head.shape
        y = self.avgpool("pool", head, (c, 1, 1), (h, w), (h, w), None)
        flat = self.nir.Flatten(input_type={"input": self.nir_shape((c, 1, 1))}, start_dim=0, end_dim=-1)
        y = self.add("flatten", flat, y, (c,))
        return self.linear("fc", model.fc, None, y)

    def graph(
        self,
        in_shape: tuple[int, ...],
        items: list[tuple[str, nn.Module]],
        model: Any,
        metadata: dict[str, Any],
    ) -> tuple[Any, Value]:
        """The ``NIRGraph`` from ``Input`` (``in_shape``) through ``items`` (and the head of an
        MS-ResNet ``model``) to ``Output``, with ``metadata``, and the value the output reads."""
        from ...models.msresnet import MSResNet

        self.nodes["input"] = self.nir.Input(input_type={"input": self.nir_shape(in_shape)})
        y = self.chain(items, Value(["input"], in_shape))
        if isinstance(model, MSResNet):
            y = self.msresnet_head(model, y)
        self.nodes["output"] = self.nir.Output(output_type={"output": self.nir_shape(y.shape)})
        self.edges.extend((src, "output") for src in y.terms)
        return self.nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=metadata), y
