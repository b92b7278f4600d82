"""The neurons of a graph: each framework's NIR map (asked through the adapters' registry), and
what export cannot map."""

from __future__ import annotations

import math
from typing import Any, NoReturn

import torch
from torch import nn

from ...adapters import frameworks

__all__ = [
    "NEURON_TYPES",
    "SYNAPTIC_TYPES",
    "check_dt",
    "describe",
    "neuron_node",
    "require_nir",
    "unsupported",
]

#: NIR node types that hold neurons, and those that hold synaptic weights.
NEURON_TYPES = ("LIF", "IF", "CubaLIF")
SYNAPTIC_TYPES = ("Conv2d", "Affine", "Linear")


def require_nir() -> Any:
    """The ``nir`` package, or an ``ImportError`` naming the extra to install."""
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - the test extra installs nir
        raise ImportError(f'NIR export needs nir ({exc}): pip install "gac-coding[export]"') from exc
    return nir


def describe(name: str, module: nn.Module) -> str:
    """``'name' (ClassName)`` for messages; the model itself is ``<model>``."""
    return f"{name!r} ({type(module).__name__})" if name else f"<model> ({type(module).__name__})"


def check_dt(dt: object) -> float:
    """``dt`` as a float, or a ``TypeError``/``ValueError`` for anything but a finite step > 0."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt: expected a float (seconds), got {type(dt).__name__}")
    value = float(dt)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"dt: expected a finite step > 0, got {dt}")
    return value


def neuron_node(
    nir: Any, name: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: torch.dtype
) -> Any | None:
    """The NIR node of a neuron module, ``None`` when ``module`` is no framework's neuron.

    Each registered framework (:class:`gac_coding.adapters.Framework`) maps its own neurons, and
    raises for those of its neurons that NIR cannot express exactly.
    """
    where = describe(name, module)
    for framework in frameworks():
        node = framework.nir_node(nir, where, module, shape, dt, dtype)
        if node is not None:
            return node
    return None


def unsupported(name: str, module: nn.Module) -> NoReturn:
    """Raise the ``TypeError`` of a module that export cannot map."""
    where = describe(name, module)
    if any(True for _ in module.children()):
        raise TypeError(
            f"{where}: its forward is its own code, which export cannot read; export follows "
            f"nn.Sequential chains (also the frameworks' sequential containers, such as Norse's "
            f"SequentialState and SpikingJelly's), MSBlock and the supported layers and neurons"
        )
    neurons = ", ".join(fw.nir_neurons for fw in frameworks() if fw.nir_neurons)
    raise TypeError(
        f"{where}: no NIR mapping; export supports Conv2d, Linear, BatchNorm (folded), "
        f"Flatten, AvgPool2d/AdaptiveAvgPool2d, Identity/Dropout, {neurons} and MSBlock"
    )
