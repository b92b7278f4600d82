"""What the lean ops (:mod:`gac_coding.ops.lean`) share: their backends, layout helpers and the
bit packing operators."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import MappingProxyType, ModuleType
from typing import Any

import torch
from torch import Tensor

from . import backends
from .layout import channels_to_front, channels_to_last, is_channels_last_step
from .params import LIFParams

_NAMES = ("triangle", "rectangle")
_HALF = (torch.float16, torch.bfloat16)
_EMPTY: tuple[int, ...] = (0,)


def _h_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF else dtype


# ------------------------------------------------------------------------------------ backends


class _LeanBackend:
    """A backend of the lean family: its three functions live in ``module`` (imported on first
    use); which tensors it takes is the rule of the neuron-ops backend of the same name."""

    def __init__(self, name: str, module: str, ready: Callable[[torch.device], tuple[bool, str]]) -> None:
        self.name = name
        self._module_name = module
        self._ready = ready

    def __repr__(self) -> str:
        return f"<gac_coding lean backend {self.name!r}>"

    def module(self) -> ModuleType:
        return importlib.import_module(f"{__package__}.{self._module_name}")

    def covers(self, device: torch.device, dtype: torch.dtype) -> bool:
        return backends.REGISTRY[self.name].covers(device, dtype)

    def ready(self, device: torch.device) -> tuple[bool, str]:
        return self._ready(device)

    def pack_bits(self, *args: Any) -> Any:
        return self.module().pack_bits(*args)

    def unpack_bits(self, *args: Any) -> Any:
        return self.module().unpack_bits(*args)

    def lif_forward_packed(self, *args: Any) -> Any:
        return self.module().lif_forward_packed(*args)

    def lif_backward_bits(self, *args: Any) -> Any:
        return self.module().lif_backward_bits(*args)


def _always(device: torch.device) -> tuple[bool, str]:
    return True, ""


def _cpp_ready(device: torch.device) -> tuple[bool, str]:
    from . import _lean_cpp

    if _lean_cpp.load() is not None:
        return True, ""
    return False, f"the C++ lean kernels could not be built: {_lean_cpp.build_error()}"


def _triton_ready(device: torch.device) -> tuple[bool, str]:
    from . import _triton

    return _triton.available(device)


#: The lean ops' backends by name (read-only): the same names and rules as
#: :data:`gac_coding.ops.backends.REGISTRY`.
LEAN_REGISTRY = MappingProxyType(
    {
        "eager": _LeanBackend("eager", "_lean_eager", _always),
        "cpp": _LeanBackend("cpp", "_lean_cpp", _cpp_ready),
        "triton": _LeanBackend("triton", "_lean_triton", _triton_ready),
    }
)


def _plan(backend: str, t: Tensor, code: int | None = 0) -> backends.Plan:
    return backends.plan(backends.check_backend(backend), t, code)


def _plan_for(backend: str, device: torch.device, dtype: torch.dtype) -> backends.Plan:
    """The plan of a call producing ``dtype`` tensors on ``device`` (unpacking bits: the backend
    is chosen by the float dtype it writes, as for the tensors it was packed from)."""
    return backends._plan(backends.check_backend(backend), device, dtype, 0)


def _call(plan: backends.Plan, function: str, *args: Any) -> Any:
    return backends.call(plan, function, *args, registry=LEAN_REGISTRY)[0]


def _tracing() -> bool:
    """Whether dynamo or the jit tracer is tracing: the ops are then custom operators; eagerly
    they are autograd Functions (the cheapest dispatch per call), around the same code."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _lif_params(decay: float, threshold: float, surrogate: int, detach_reset: bool) -> LIFParams:
    return LIFParams(decay, threshold, _NAMES[surrogate], detach_reset)


# ------------------------------------------------------------------------------ layout helpers


def _nhwc(t: Tensor) -> bool:
    """Whether a 4-d tensor, or each step of a 5-d one, is stored channels-last."""
    if t.dim() == 4:
        return is_channels_last_step(t)
    if t.dim() == 5:
        return is_channels_last_step(t[0])
    return False


def _rows(t: Tensor, rows: int, nhwc: bool) -> Tensor:
    """``t`` as ``[rows, L]`` in the order of its storage (a copy only if it is not dense)."""
    return channels_to_last(t, nhwc).contiguous().view(rows, -1)


def _from_rows(x: Tensor, shape: Sequence[int], nhwc: bool) -> Tensor:
    """A ``[rows, L]`` tensor viewed as ``shape`` in the layout ``nhwc`` (the inverse of :func:`_rows`)."""
    shape = tuple(shape)
    last = (*shape[:-3], shape[-2], shape[-1], shape[-3]) if nhwc else shape
    return channels_to_front(x.view(last), nhwc)


def _empty_like_layout(shape: Sequence[int], nhwc: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    shape = tuple(shape)
    last = (*shape[:-3], shape[-2], shape[-1], shape[-3]) if nhwc else shape
    return channels_to_front(torch.empty(last, dtype=dtype, device=device), nhwc)


def _like_layout(t: Tensor | None, nhwc: bool) -> Tensor | None:
    """``t`` stored channels-last (``nhwc``) or contiguous, copied only if it is not already."""
    if t is None:
        return None
    return t.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    """``t``, or a fresh empty tensor where there is none (a custom operator returns tensors,
    never the same one twice)."""
    return t if t is not None else like.new_empty(_EMPTY)


def _bytes_per_row(n: int) -> int:
    return (n + 7) // 8


def _backward_from_bits(
    grad_s: Tensor, bits: Tensor, sg: Tensor, is_static: bool, nhwc: bool, decay: float, backend: str
) -> Tensor:
    """The LIF's input gradient (rectangle surrogate, detached reset) from the bits of its spikes
    and of the surrogate's window, in the layout of the spikes: ``grad_s [T, ...]`` gives
    ``[T, ...]`` or, ``is_static``, the sum over the steps."""
    T = grad_s.shape[0]
    rows = _rows(grad_s, T, nhwc)
    plan = _plan_for(backend, grad_s.device, grad_s.dtype)
    out = _call(plan, "lif_backward_bits", rows, bits, sg, is_static, decay)
    shape = grad_s.shape[1:] if is_static else grad_s.shape
    return _from_rows(out, shape, nhwc)


# ------------------------------------------------------------------------------ bits (no autograd)


@torch.library.custom_op("gac_coding::pack_bits", mutates_args=())
def _pack_op(x: Tensor, backend: str = "auto") -> Tensor:
    return _call(_plan(backend, x), "pack_bits", x.contiguous())


@_pack_op.register_fake
def _pack_fake(x, backend="auto"):
    return x.new_empty((x.shape[0], _bytes_per_row(x.shape[1])), dtype=torch.uint8)


@torch.library.custom_op("gac_coding::unpack_bits", mutates_args=())
def _unpack_op(bits: Tensor, length: int, dtype: torch.dtype, backend: str = "auto") -> Tensor:
    return _call(_plan_for(backend, bits.device, dtype), "unpack_bits", bits.contiguous(), length, dtype)


@_unpack_op.register_fake
def _unpack_fake(bits, length, dtype, backend="auto"):
    return bits.new_empty((bits.shape[0], length), dtype=dtype)


def pack_bits(x: Tensor, *, backend: str = "auto") -> Tensor:
    """``x: [R, L]`` (nonzero means 1) packed to ``uint8 [R, ceil(L / 8)]`` (see the module doc).

    Example:
        >>> import torch
        >>> from gac_coding.ops.lean import pack_bits, unpack_bits
        >>> x = torch.tensor([[1., 0., 1., 1., 0., 0., 0., 0., 1.]])
        >>> pack_bits(x).tolist()                  # bits 0, 2, 3 -> 13; then bit 0 of the next byte
        [[13, 1]]
        >>> torch.equal(unpack_bits(pack_bits(x), 9, torch.float32), x)
        True
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x: expected a 2-d tensor [R, L], got {getattr(x, 'shape', type(x).__name__)}")
    return torch.ops.gac_coding.pack_bits(x, backend)


def unpack_bits(
    bits: Tensor, length: int, dtype: torch.dtype = torch.float32, *, backend: str = "auto"
) -> Tensor:
    """The ``[R, length]`` tensor of 0. and 1. that :func:`pack_bits` packed to ``bits``."""
    if not isinstance(bits, Tensor) or bits.dim() != 2 or bits.dtype != torch.uint8:
        raise ValueError(
            f"bits: expected a uint8 tensor [R, ceil(L / 8)], got {getattr(bits, 'shape', bits)}"
        )
    if isinstance(length, bool) or not isinstance(length, int) or _bytes_per_row(length) != bits.shape[1]:
        raise ValueError(f"length: expected L with ceil(L / 8) = {bits.shape[1]}, got {length!r}")
    return torch.ops.gac_coding.unpack_bits(bits, length, dtype, backend)
