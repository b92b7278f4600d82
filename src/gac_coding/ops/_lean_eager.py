"""The eager backend of the lean ops (:mod:`gac_coding.ops.lean`): torch operations.

Three functions, the same in every lean backend (tensors arrive contiguous):

* ``pack_bits(x) -> bits``: ``x: [R, L]`` (nonzero means 1) to ``uint8 [R, ceil(L / 8)]``,
  element ``(r, i)`` in bit ``i % 8`` (least significant first) of byte ``(r, i // 8)``; the
  padding bits of a row's last byte are 0;
* ``unpack_bits(bits, L, dtype) -> x``: the inverse, ``[R, L]`` of 0. and 1. in ``dtype``;
* ``lif_forward_packed(x, steps, alpha, beta, channels, inner, decay, threshold, want_sg, want_h)
  -> (spikes, bits, sg, h)``: the multi-step LIF of ``x: [T, L]`` (or with ``steps > 0`` one step
  ``[L]`` applied ``steps`` times) after the per-channel affine map ``x * alpha[c] + beta[c]``
  (``c = (i // inner) % channels`` for element ``i`` of a step; none when ``alpha`` is ``None``):
  the spikes ``[T, L]`` (dtype of ``x``), their bits, the bits of the rectangle surrogate's window
  ``|h - threshold| < 0.5`` when ``want_sg`` (else ``None``) and the membrane ``h`` when
  ``want_h`` (else ``None``).

The membrane arithmetic is that of the neuron ops' eager backend (:mod:`gac_coding.ops._eager`),
whose ``lif_forward`` runs here: the same spikes and membranes bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _eager

__all__ = ["available", "lif_forward_packed", "pack_bits", "unpack_bits"]


def available(device: object = None) -> tuple[bool, str]:
    """Always usable."""
    return True, ""


def pack_bits(x: Tensor) -> Tensor:
    R, L = x.shape
    L8 = (L + 7) // 8
    ones = torch.ne(x, 0).to(torch.uint8)
    if L8 * 8 != L:
        ones = torch.nn.functional.pad(ones, (0, L8 * 8 - L))
    ones = ones.view(R, L8, 8)
    out = ones[..., 0].clone()
    for j in range(1, 8):
        out.bitwise_or_(ones[..., j].bitwise_left_shift(j))
    return out


def unpack_bits(bits: Tensor, L: int, dtype: torch.dtype) -> Tensor:
    R, L8 = bits.shape
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    ones = bits.unsqueeze(-1).bitwise_right_shift(shifts).bitwise_and_(1)
    out = torch.empty((R, L), dtype=dtype, device=bits.device)
    out.copy_(ones.view(R, L8 * 8)[:, :L])
    return out


def affine(x: Tensor, alpha: Tensor, beta: Tensor, channels: int, inner: int) -> Tensor:
    """``x * alpha[c] + beta[c]`` with ``c = (i // inner) % channels`` along the last dim."""
    shape = x.shape
    view = x.reshape(*shape[:-1], shape[-1] // (channels * inner), channels, inner)
    a = alpha.to(x.dtype).view(channels, 1)
    b = beta.to(x.dtype).view(channels, 1)
    return (view * a + b).reshape(shape)


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
    z = x if alpha is None or beta is None else affine(x, alpha, beta, channels, inner)
    spikes, h = _eager.lif_forward(z, steps, decay, threshold, want_sg or want_h)
    T = spikes.shape[0]
    bits = pack_bits(spikes.view(T, -1))
    sg = None
    if want_sg:
        assert h is not None
        sg = pack_bits(torch.sub(h, threshold).abs_().lt_(0.5).view(T, -1))
    return spikes, bits, sg, (h if want_h else None)
