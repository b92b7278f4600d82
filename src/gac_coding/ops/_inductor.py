"""Inductor's fallback for the neuron ops that have a registered decomposition.

:mod:`gac_coding.ops._decomp` registers plain-torch decompositions of ``gac_coding::lif`` and
``gac_coding::gated_lif`` in torch's global table, for ``torch.onnx.export``. Inductor runs an op
it has no lowering for through a fallback to its kernel, and when the environment variable ``CI``
is set it refuses to make that fallback for an op with a global decomposition ("a decomposition
exists, we should switch to it"): the check is meant for PyTorch's own operators. The neuron ops
must keep their kernels under ``torch.compile`` (the decomposition is the inference form, unrolled
over the steps), so their fallback is registered here, once, the way Inductor makes an implicit
one (the op's layout-constraint tag), with the decomposition overridden. Called by the ops' fake
kernels, which run while Inductor traces a graph, and at import when Inductor is already loaded;
it imports nothing of Inductor itself.
"""

from __future__ import annotations

import sys

import torch

__all__: list[str] = []

_DONE: list[bool] = []


def ensure_inductor_fallbacks() -> None:
    """Register Inductor's fallback for the ops with a decomposition, once Inductor is loaded."""
    if _DONE or "torch._inductor.lowering" not in sys.modules:
        return
    from torch._inductor.lowering import lowerings, make_fallback, tag_to_layout_constraint
    from torch._library.utils import get_layout_constraint_tag

    for op in (torch.ops.gac_coding.lif.default, torch.ops.gac_coding.gated_lif.default):
        if op not in lowerings:
            constraint = tag_to_layout_constraint(get_layout_constraint_tag(op, with_default=True))
            make_fallback(op, layout_constraint=constraint, warn=False, override_decomp=True)
    _DONE.append(True)
