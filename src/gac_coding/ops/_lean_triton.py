"""The triton backend of the lean ops (:mod:`gac_coding.ops.lean`): CUDA kernels.

The three functions have the lean backends' signatures (:mod:`gac_coding.ops._lean_eager`);
tensors arrive contiguous. The LIF kernel applies BatchNorm's per-channel scale and shift to its
input as it reads it (``alpha``, ``beta``), so that the normalised input of a ``BatchNorm -> LIF``
pair is never stored, and writes the spikes and their bits in the same pass. Float16, bfloat16,
float32 and float64 inputs; arithmetic in float32 (float64 for float64), the membrane ``h`` in that
dtype. Triton is imported on the first kernel call (never at ``import gac_coding``); with
``TRITON_INTERPRET=1`` at that moment the kernels run in triton's interpreter on CPU tensors, as the
tests run them (see :mod:`gac_coding.ops._triton`).
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from . import _triton

__all__ = ["available", "lif_backward_bits", "lif_forward_packed", "pack_bits", "unpack_bits"]

#: Bytes (8 elements each) of a row one program packs or unpacks, and of a step the LIF walks.
BYTES = 128

_kernels: ModuleType | None = None


def available(device: torch.device | str | None = None) -> tuple[bool, str]:
    """As the neuron ops' triton backend (:func:`gac_coding.ops._triton.available`)."""
    return _triton.available(device)


def _load() -> ModuleType:
    global _kernels
    if _kernels is None:
        interp = _triton._interpret_requested()
        from . import _lean_triton_kernels as kernels

        kernels._INTERPRETED = interp  # type: ignore[attr-defined]
        _kernels = kernels
    return _kernels


def _launch(name: str, grid: tuple[int, int], device: torch.device, *args: object, **meta: object) -> None:
    """Run kernel ``name`` on a 2-d ``grid`` (see :func:`gac_coding.ops._triton._launch`)."""
    kernels = _load()
    kernel = getattr(kernels, name)
    if not kernels._INTERPRETED:
        with torch.cuda.device(device):
            kernel[grid](*args, **meta)
        return
    import triton

    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = True
        kernel[grid](*args, **meta)


def _blocks(L: int) -> int:
    return max(1, _triton.triton_cdiv((L + 7) // 8, BYTES))


def pack_bits(x: Tensor) -> Tensor:
    x = _triton._check("x", x)
    R, L = x.shape
    out = torch.empty((R, (L + 7) // 8), dtype=torch.uint8, device=x.device)
    if R and L:
        _launch("pack_kernel", (R, _blocks(L)), x.device, x, out, L, out.shape[1], BYTES=BYTES)
    return out


def unpack_bits(bits: Tensor, length: int, dtype: torch.dtype) -> Tensor:
    if bits.dtype != torch.uint8 or bits.dim() != 2:
        raise ValueError(f"bits: expected a uint8 tensor [R, L8], got {bits.dtype} {tuple(bits.shape)}")
    if dtype not in _triton._FLOATS:
        raise TypeError(f"dtype: expected float16, bfloat16, float32 or float64, got {dtype}")
    _triton._check("out", torch.empty(0, dtype=dtype, device=bits.device))  # the device is usable
    bits = bits.contiguous()
    R = bits.shape[0]
    out = torch.empty((R, length), dtype=dtype, device=bits.device)
    if R and length:
        _launch(
            "unpack_kernel", (R, _blocks(length)), bits.device, bits, out, length, bits.shape[1], BYTES=BYTES
        )
    return out


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
    x = _triton._check("x", x)
    static = steps > 0
    T = steps if static else x.shape[0]
    L = x.numel() if static else (x.numel() // T if T else 0)
    L8 = (L + 7) // 8
    ct = _triton._compute_dtype(x.dtype)
    affine = alpha is not None and beta is not None
    if alpha is not None and beta is not None:
        if channels < 1 or inner < 1 or L % (channels * inner):
            raise ValueError(f"channels, inner: {channels} x {inner} does not divide a step of {L}")
        alpha = _triton._check("alpha", alpha, x.device)
        beta = _triton._check("beta", beta, x.device)
    spikes = torch.empty((T, L), dtype=x.dtype, device=x.device)
    bits = torch.empty((T, L8), dtype=torch.uint8, device=x.device)
    sg = torch.empty((T, L8), dtype=torch.uint8, device=x.device) if want_sg else None
    h = torch.empty((T, L), dtype=ct, device=x.device) if want_h else None
    if T and L:
        _launch(
            "lif_packed_kernel", (1, _blocks(L)), x.device,
            x, alpha if affine else x, beta if affine else x, spikes, bits,
            sg if want_sg else bits, h if want_h else spikes, T, L, L8, max(channels, 1), max(inner, 1),
            DECAY=float(decay), TH=float(threshold), STATIC=static, AFFINE=affine,
            WANT_SG=bool(want_sg), WANT_H=bool(want_h), CT=_triton._tl_dtype(x.dtype), BYTES=BYTES,
        )  # fmt: skip
    return spikes, bits, sg, h


def lif_backward_bits(grad_s: Tensor, bits: Tensor, sg: Tensor, is_static: bool, decay: float) -> Tensor:
    grad_s = _triton._check("grad_s", grad_s)
    T, L = grad_s.shape
    L8 = (L + 7) // 8
    for name, b in (("bits", bits), ("sg", sg)):
        if b.dtype != torch.uint8 or b.numel() != T * L8 or b.device != grad_s.device:
            raise ValueError(
                f"{name}: expected uint8 [{T}, {L8}] on {grad_s.device}, got {b.dtype} {tuple(b.shape)}"
            )
    gx = torch.empty((L,) if is_static else (T, L), dtype=grad_s.dtype, device=grad_s.device)
    if T and L:
        _launch(
            "lif_backward_bits_kernel", (1, _blocks(L)), grad_s.device,
            grad_s, bits.contiguous(), sg.contiguous(), gx, T, L, L8,
            DECAY=float(decay), STATIC=bool(is_static), CT=_triton._tl_dtype(grad_s.dtype), BYTES=BYTES,
        )  # fmt: skip
    elif is_static:
        gx.zero_()
    return gx
