"""``set_memory``: a memory mode (:mod:`gac_coding.ops.memory`) on every module of a model or a
wrapped net that takes one, refused for modules of another framework (which have no lean path)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..ops.memory import MemorySetting, check_memory
from .base import module_framework

__all__ = ["set_memory"]


def _foreign(module: nn.Module) -> str | None:
    """The registered framework (other than plain PyTorch) ``module`` comes from, or ``None``."""
    return module_framework(module)


def set_memory(module: nn.Module, mode: str) -> nn.Module:
    """Set memory mode ``mode`` on ``module``: on itself if it has a ``memory``, else on each
    outermost submodule that has one (a model hands it on to its blocks, encoder and neurons).
    Returns ``module``.

    A mode other than ``"default"`` is refused (``ValueError``, nothing changed) for a module
    holding modules of another framework (:mod:`gac_coding.adapters`), which have no lean path,
    and for a module in which nothing takes ``memory=``; for a module that does not take the
    mode (``"checkpoint"`` on a lone :class:`gac_coding.LIF`) the message says which modes it
    takes.

    Example:
        >>> from gac_coding import set_memory
        >>> from gac_coding.models import create_model
        >>> model = create_model("msresnet_tiny", T=2)
        >>> set_memory(model, "lean").memory
        'lean'
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    mode = check_memory(mode)
    if mode != "default":
        for name, m in module.named_modules():
            framework = _foreign(m)
            if framework is not None:
                raise ValueError(
                    f"memory={mode!r} cannot apply to {name or 'the module'} "
                    f"({type(m).__module__}.{type(m).__name__}): {framework} modules have no lean "
                    f"path; set it on gac_coding's modules alone (e.g. set_memory(net.encoder, {mode!r}) "
                    f"or gac.wrap(..., memory={mode!r}) for the GAC encoder of a wrapped net)"
                )
    if isinstance(module, MemorySetting):
        module.memory = mode
        return module
    targets = _outermost(module)
    if not targets and mode != "default":
        raise ValueError(
            f"memory={mode!r} cannot apply to {type(module).__name__}: none of its modules takes "
            f"memory= (gac_coding's LIF, encoders and models do)"
        )
    for m in targets:
        m.memory = mode
    return module


def _outermost(module: nn.Module) -> list[Any]:
    found: list[Any] = []

    def walk(m: nn.Module) -> None:
        for child in m.children():
            if isinstance(child, MemorySetting):
                found.append(child)
            else:
                walk(child)

    walk(module)
    return found
