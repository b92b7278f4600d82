"""Leaky integrate-and-fire dynamics with surrogate gradients (torch only).

The neuron of GAC and of the MS-ResNet backbones, per element and per step ``t``::

    h_t = decay * v_{t-1} + x_t             (membrane before firing, v_0 = 0)
    s_t = Heaviside(h_t - threshold)        (strictly greater than the threshold fires)
    v_t = h_t * (1 - s_t)                   (hard reset to 0)

which is ``v_t = decay * v_{t-1} * (1 - s_{t-1}) + x_t`` (docs/design/neuron.md §1) written with the reset
applied after firing. The backward pass replaces ``d s / d h`` by a surrogate and, with
``detach_reset=True``, treats the reset factor ``(1 - s_t)`` as a constant.

This module holds the :class:`LIF` module (its settings and its ``backend=``); the arithmetic
lives in :mod:`gac_coding.ops`. :func:`lif` runs the whole ``[T, B, ...]`` sequence in one
autograd node with a hand-written backward through time. Backends: ``"auto"`` (default),
``"eager"``, ``"cpp"``, ``"triton"``, or a list to try in order such as ``"cpp,eager"``, per module
(``backend=``) or for the process (:func:`set_backend`); see :mod:`gac_coding.ops.backends`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import ops
from .ops import lean
from .ops.backends import BACKEND_ENV, BACKENDS, BackendSetting, check_backend, get_backend, set_backend
from .ops.memory import MemorySetting, lean_active
from .ops.params import (
    RECIPES,
    LIFParams,
    LIFSettings,
    SurrogateFn,
    SurrogateLike,
    resolve_surrogate,
    surrogate_rectangle,
    surrogate_triangle,
)

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "LIF",
    "LIFParams",
    "RECIPES",
    "SurrogateFn",
    "SurrogateLike",
    "get_backend",
    "lif",
    "lif_reference",
    "resolve_surrogate",
    "set_backend",
    "surrogate_rectangle",
    "surrogate_triangle",
]


def lif(
    x: Tensor,
    decay: float = 0.5,
    threshold: float = 1.0,
    surrogate: SurrogateLike = "triangle",
    detach_reset: bool = False,
    *,
    steps: int | None = None,
    backend: str = "auto",
) -> Tensor:
    """Multi-step LIF spikes for a time-major input.

    Args:
        x: input current ``[T, B, ...]``, or with ``steps`` a static current ``[B, ...]`` that is
            applied at each of ``steps`` steps (its gradient is the sum over the steps).
        decay, threshold, surrogate, detach_reset: see :class:`LIF`.
        steps: number of steps for a static input; ``None`` for a sequence.
        backend: see :class:`LIF`.

    Returns:
        Spikes ``[T, B, ...]`` (0. or 1., dtype of ``x``).

    Example:
        >>> import torch
        >>> from gac_coding.neuron import lif
        >>> lif(torch.tensor([[0.6], [0.6], [0.6]]), decay=0.5, threshold=1.0).flatten().tolist()
        [0.0, 0.0, 1.0]
    """
    params = LIFParams(decay, threshold, surrogate, detach_reset)
    return ops.lif(x, params, steps=steps, backend=backend)


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: SurrogateFn) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate(x), None


def lif_reference(
    x: Tensor,
    decay: float = 0.5,
    threshold: float = 1.0,
    surrogate: SurrogateLike = "triangle",
    detach_reset: bool = False,
) -> Tensor:
    """The same dynamics as :func:`lif` as a plain loop of autograd operations (slow, for checks).

    This is how the authors' code runs the neuron; :func:`lif` equals it in values and gradients.
    """
    p = LIFParams(decay, threshold, surrogate, detach_reset)
    fn = p.surrogate_fn
    out = []
    v = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        keep = 1.0 - (s.detach() if p.detach_reset else s)
        v = p.decay * v * keep + x[t]
        s = _Heaviside.apply(v - p.threshold, fn)
        out.append(s)
    return torch.stack(out)


class LIF(LIFSettings, BackendSetting, MemorySetting, nn.Module):
    """Multi-step leaky integrate-and-fire neuron over dim 0 of ``[T, B, ...]``.

    ``v_t = decay * v_{t-1} * (1 - s_{t-1}) + x_t``, ``s_t = [v_t > threshold]``, ``v_0 = 0``.
    Stateless between calls: every forward starts from a zero membrane. Defaults are the CIFAR
    recipe (docs/design/recipes.md §2); ``LIF(**RECIPES["imagenet"])`` gives the ImageNet one. The
    settings are one :class:`~gac_coding.ops.LIFParams` (:attr:`params`), checked here once.

    Args:
        decay: membrane leak factor in ``[0, 1]``.
        threshold: firing threshold (> 0).
        surrogate: ``"triangle"`` (``max(0, 1 - |v - th|)``), ``"rectangle"``
            (``1`` where ``|v - th| < 0.5``) or a callable mapping ``v - th`` to ``d s / d v``
            (a callable runs on the eager backend).
        detach_reset: treat the reset factor ``(1 - s)`` as a constant in the backward pass.
        backend: what computes the neuron (:mod:`gac_coding.ops.backends`): ``"auto"`` (the
            process setting, else eager on the CPU and triton on CUDA), ``"eager"``, ``"cpp"``,
            ``"triton"`` (that backend or an error), or a list to try in order such as
            ``"cpp,eager"`` (a failed call runs on the next, with a warning). Changeable later
            through the :attr:`backend` attribute.
        memory: ``"default"`` or ``"lean"`` (:mod:`gac_coding.ops.memory`): in training, keep two
            bits per element for the backward pass instead of the membrane where that suffices
            (the rectangle surrogate with a detached reset, the ImageNet recipe); the same numbers
            either way. Needs a named surrogate. Changeable later through :attr:`memory`.

    Example:
        >>> import torch, gac_coding as gac
        >>> neuron = gac.LIF(decay=0.5, threshold=1.0)
        >>> x = torch.full((4, 2, 3), 0.7)          # [T, B, features]
        >>> neuron(x)[:, 0, 0].tolist()             # 0.7, 1.05 -> fire, reset, 0.7, 1.05 -> fire
        [0.0, 1.0, 0.0, 1.0]
        >>> gac.LIF(backend="cpp,eager")
        LIF(decay=0.5, threshold=1.0, surrogate=triangle, detach_reset=False, backend='cpp,eager')
    """

    def __init__(
        self,
        decay: float = 0.5,
        threshold: float = 1.0,
        surrogate: SurrogateLike = "triangle",
        detach_reset: bool = False,
        backend: str = "auto",
        memory: str = "default",
    ) -> None:
        super().__init__()
        self.params = LIFParams(decay, threshold, surrogate, detach_reset)
        self.backend = check_backend(backend)
        self.memory = memory

    memory_modes = ("default", "lean")

    def _set_memory(self, mode: str) -> None:
        if mode == "lean":
            lean.check_lean_params(self.params, "memory (LIF)")

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(
                f"x: expected a time-major sequence [T, B, ...] (at least 2 dims), got shape {tuple(x.shape)}"
            )
        if lean_active(self.memory):
            return lean.lif(x, self.params, backend=self.backend)[0]
        return ops.lif(x, self.params, backend=self.backend)

    def extra_repr(self) -> str:
        p = self.params
        memory = "" if self.memory == "default" else f", memory={self.memory!r}"
        return (
            f"decay={p.decay}, threshold={p.threshold}, surrogate={p.surrogate_name}, "
            f"detach_reset={p.detach_reset}, backend={self.backend!r}{memory}"
        )
