"""The C++ backend of the lean ops (:mod:`gac_coding.ops.lean`): fused CPU loops, compiled on first use.

``csrc/lean.cpp`` (shipped with the package) packs and unpacks bits in one pass and runs the
multi-step LIF writing its spikes, their bits and (on request) the bits of the rectangle
surrogate's window in one pass over the input, with the membrane arithmetic of the neuron ops'
C++ and eager backends. It is a separate extension from the neuron ops' (``csrc/lif.cpp``, see
:mod:`gac_coding.ops._cpp`), built by the same loader (:class:`~gac_coding.ops._cpp.Extension`,
with ``torch.utils.cpp_extension``, cached by torch in ``TORCH_EXTENSIONS_DIR``) on the first call
that needs it; a failed build is remembered (:func:`build_error`) and not retried in this process.

The three functions have the lean backends' signatures (:mod:`gac_coding.ops._lean_eager`).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from . import _cpp

__all__ = [
    "SOURCE",
    "available",
    "build_error",
    "is_built",
    "lif_backward_bits",
    "lif_forward_packed",
    "load",
    "pack_bits",
    "unpack_bits",
]

#: The C++ source of the kernels (package data).
SOURCE = Path(__file__).with_name("csrc") / "lean.cpp"

_EXTENSION = _cpp.Extension("gac_coding_lean", SOURCE, "the C++ lean kernels")


def is_built() -> bool:
    """Whether this process loaded the kernels or torch's extension cache holds a build."""
    return _EXTENSION.is_built()


def build_error() -> str | None:
    """Why the build failed in this process (``None`` if none failed)."""
    return _EXTENSION.error


def available(device: object = None) -> tuple[bool, str]:
    """``(usable, reason if not)``: built already, or a toolchain to build it (nothing compiled)."""
    return _EXTENSION.available()


def load() -> ModuleType | None:
    """The compiled module (building it on first use), or ``None`` after a failed build."""
    return _EXTENSION.load()


def _kernels() -> ModuleType:
    return _EXTENSION.kernels()


def pack_bits(x: Tensor) -> Tensor:
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    return _kernels().pack_bits(x)


def unpack_bits(bits: Tensor, length: int, dtype: torch.dtype) -> Tensor:
    if dtype in (torch.float32, torch.float64):
        return _kernels().unpack_bits(bits, length, dtype)
    return _kernels().unpack_bits(bits, length, torch.float32).to(dtype)


def lif_forward_packed(
    x: Tensor,
    steps: int,
    alpha: Tensor | None,
    beta: Tensor | None,
    channels: int,
    inner: int,
    decay: float,
    threshold: float,
    want_sg: bool,
    want_h: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    spikes, bits, sg, h = _kernels().lif_forward_packed(
        x, steps, alpha, beta, channels, inner, decay, threshold, want_sg, want_h
    )
    return spikes, bits, (sg if want_sg else None), (h if want_h else None)


def lif_backward_bits(grad_s: Tensor, bits: Tensor, sg: Tensor, is_static: bool, decay: float) -> Tensor:
    return _kernels().lif_backward_bits(grad_s, bits, sg, is_static, decay)
