"""NIR node builders shared by the frameworks' neuron maps (``Framework.nir_node``).

The ``nir`` package is passed in by the exporter (:func:`gac_coding.export.to_nir` imports it), so
nothing here imports it. The equations each map follows are in the module docstring of
:mod:`gac_coding.export.nir`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["SettingShapeError", "decay_node", "full", "probe_spike_function"]


class SettingShapeError(RuntimeError):
    """A neuron's setting (a tensor per neuron or per channel) that does not broadcast to the shape
    a node is built for. The exporter's check before tracing probes with a shape of its own and
    skips such a neuron; the trace builds its node with the real shape."""


def _broadcast(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    try:
        return torch.broadcast_to(t, shape)
    except RuntimeError as exc:
        raise SettingShapeError(f"a setting of shape {tuple(t.shape)} does not broadcast to {shape}") from exc


def full(value: Any, shape: tuple[int, ...], dtype: torch.dtype) -> Any:
    """``value`` (a number or a broadcastable tensor) as a numpy array of ``shape``."""
    t = torch.as_tensor(value.detach() if isinstance(value, Tensor) else value, dtype=dtype)
    return _broadcast(t.to("cpu"), shape).clone().numpy()


def decay_node(nir: Any, decay: Tensor, threshold: Any, shape: tuple[int, ...], dt: float, where: str) -> Any:
    """``v <- decay v + x``, fire above ``threshold``, reset to 0, as a NIR LIF (or IF when decay is 1)."""
    dtype = decay.dtype
    # the time constants in float64, then in the model's dtype
    d = _broadcast(decay.detach().to("cpu", torch.float64), shape)
    thr = full(threshold, shape, dtype)
    zeros = full(0.0, shape, dtype)
    if bool((d == 1).all()):
        return nir.IF(r=full(1.0 / dt, shape, dtype), v_threshold=thr, v_reset=zeros)
    if bool((d == 1).any()):
        raise ValueError(
            f"{where}: some neurons have decay 1 (no leak) and others leak; NIR's LIF cannot "
            f"express a non-leaky neuron (tau would be infinite) and IF cannot leak"
        )
    leak = 1.0 - d
    return nir.LIF(
        tau=(dt / leak).to(dtype).numpy(),
        r=(1.0 / leak).to(dtype).numpy(),
        v_leak=zeros,
        v_threshold=thr,
        v_reset=zeros.copy(),
    )


def probe_spike_function(fn: Callable[[Tensor], Any], dtype: torch.dtype) -> str:
    """``"gt"`` (fires above 0), ``"ge"`` (at 0 too) or ``"other"`` for a spike function of ``v - thr``."""
    probe = torch.tensor([-1e-3, 0.0, 1e-3], dtype=dtype)
    with torch.no_grad():
        out = fn(probe)
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, Tensor):
        return "other"
    values = [float(v) for v in out.flatten().tolist()]
    if values == [0.0, 0.0, 1.0]:
        return "gt"
    if values == [0.0, 1.0, 1.0]:
        return "ge"
    return "other"
