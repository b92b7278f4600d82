"""The neuron ops of gac-coding: functions of tensors and settings, no parameters or state.

Modules (:class:`gac_coding.LIF`, :class:`gac_coding.GatedAttentionUnit`, the encoder) hold
parameters and call these. Layout of the package:

* :mod:`~gac_coding.ops.params`: surrogate derivatives, :class:`LIFParams`, :data:`RECIPES`;
* :mod:`~gac_coding.ops.functional`: :func:`lif` and :func:`gated_lif` (autograd Functions in
  eager mode, custom operators ``torch.ops.gac_coding.*`` under ``torch.compile`` / ``torch.export``);
* :mod:`~gac_coding.ops.backends`: which backend computes them (``"auto"``, ``"eager"``, ``"cpp"``,
  ``"triton"``, or a list such as ``"cpp,eager"``), the :class:`~gac_coding.ops.backends.Backend`
  interface and its registry;
* :mod:`~gac_coding.ops.layout`: channels-last step helpers.
"""

from __future__ import annotations

from .backends import (
    BACKEND_ENV,
    BACKENDS,
    BackendError,
    auto_backend,
    get_backend,
    set_backend,
    use_backend,
)
from .functional import gated_lif, lif
from .params import (
    RECIPES,
    LIFParams,
    SurrogateFn,
    SurrogateLike,
    resolve_surrogate,
    surrogate_rectangle,
    surrogate_triangle,
)

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "BackendError",
    "LIFParams",
    "RECIPES",
    "SurrogateFn",
    "SurrogateLike",
    "auto_backend",
    "gated_lif",
    "get_backend",
    "lif",
    "resolve_surrogate",
    "set_backend",
    "surrogate_rectangle",
    "surrogate_triangle",
    "use_backend",
]
