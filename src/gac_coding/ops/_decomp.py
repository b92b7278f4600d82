"""The neuron operators' plain-torch decompositions, registered where the exporters look.

``torch.onnx.export(model, args, dynamo=True)`` captures the model with ``torch.export``, then
decomposes the captured graph with a table it builds itself: torch.export's default
decompositions plus torch's global table of decompositions (``torch._decomp.decomposition_table``),
minus what it translates to ONNX directly. Registering the inference forms of
``torch.ops.gac_coding.lif`` and ``gated_lif``
(:func:`gac_coding.ops.functional.inference_decompositions`: the LIF unrolled over the steps as
``Add``, ``Mul``, ``Greater``, ``Cast``, the gate as ``Sigmoid``) in that global table is what lets
the plain call write a file that every ONNX runtime runs, without a translation table per call.

What it does not change: ``torch.export.export`` and ``torch.compile`` keep the custom operators
in their graphs (neither reads the global table: ``ExportedProgram.run_decompositions()`` uses
``torch.export.default_decompositions()``, Inductor its own table). The one reader besides the
ONNX exporter is FakeTensor, which computes an operator's output shapes from a global
decomposition instead of its fake kernel when the shapes are symbolic (``dynamic=True``); the
decomposition gives the same shapes, dtypes and strides as the fake kernel (tested), so the
traced graphs are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch._decomp import decomposition_table

from ._inductor import ensure_inductor_fallbacks
from .functional import inference_decompositions
from .layout import channels_to_front, channels_to_last, is_channels_last_step

__all__: list[str] = []


def _laid_out(t: Tensor, nhwc: bool) -> Tensor:
    """``t`` with the strides the operator's kernels and fake kernel give: every step of a
    channels-last input stays channels-last, anything else is contiguous (a relayout that changes
    no value; an exporter drops it). The empty membrane of a call without ``save`` stays as it is."""
    if not nhwc or t.dim() < 4:
        return t.contiguous()
    return channels_to_front(channels_to_last(t, nhwc).contiguous(), nhwc)


def _lif(x: Tensor, steps: int, *args: Any) -> tuple[Tensor, ...]:
    nhwc = is_channels_last_step(x if steps > 0 else x[0])
    return tuple(_laid_out(t, nhwc) for t in _TABLE[torch.ops.gac_coding.lif.default](x, steps, *args))


def _gated(u: Tensor, ta: Tensor, sca: Tensor, steps: int, *args: Any) -> tuple[Tensor, ...]:
    nhwc = is_channels_last_step(u if steps > 0 else u[0])
    op = torch.ops.gac_coding.gated_lif.default
    return tuple(_laid_out(t, nhwc) for t in _TABLE[op](u, ta, sca, steps, *args))


_TABLE: dict[Any, Callable[..., Any]] = inference_decompositions()


def _register() -> None:
    decomposition_table.setdefault(torch.ops.gac_coding.lif.default, _lif)
    decomposition_table.setdefault(torch.ops.gac_coding.gated_lif.default, _gated)
    ensure_inductor_fallbacks()  # Inductor keeps the ops' kernels (see gac_coding.ops._inductor)


_register()
