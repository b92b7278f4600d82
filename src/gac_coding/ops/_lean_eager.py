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
  ``want_h`` (else ``None``);
* ``lif_backward_bits(grad_s, bits, sg, is_static, decay) -> grad_x``: the LIF's backward pass
  for the rectangle surrogate with a detached reset from the two bit arrays alone:
  ``g_t = grad_s_t * sg_t + decay * g_{t+1} * (1 - s_t)`` walking the steps in reverse (the
  operations of the neuron ops' backward in their order, so the same gradient bit for bit);
  ``grad_s: [T, L]``, the result ``[T, L]`` or, ``is_static``, the sum over the steps ``[L]``.

The membrane arithmetic is that of the neuron ops' eager backend (:mod:`gac_coding.ops._eager`),
whose ``lif_forward`` runs here: the same spikes and membranes bit for bit.
"""

from __future__ import annotations

import functools
import sys

import torch
from torch import Tensor

from . import _eager

_LITTLE_ENDIAN = sys.byteorder == "little"
_GATHER = 0x0102040810204080  # sum_k 2^(7 k + 7), k = 0..7

__all__ = ["available", "lif_backward_bits", "lif_forward_packed", "pack_bits", "unpack_bits"]


def available(device: object = None) -> tuple[bool, str]:
    """Always usable."""
    return True, ""


def pack_bits(x: Tensor) -> Tensor:
    R, L = x.shape
    L8 = (L + 7) // 8
    # nonzero -> True; a bool is a byte holding 0 or 1; a copy of our own (the caller's bool
    # tensor is not overwritten below, nor read at an offset a 64-bit view cannot start at)
    ones = (x.clone() if x.dtype == torch.bool else x.bool()).view(torch.uint8)
    if L8 * 8 != L:
        ones = torch.nn.functional.pad(ones, (0, L8 * 8 - L))
    if _LITTLE_ENDIAN:
        # eight 0/1 bytes read as one little-endian 64-bit word w = sum_j b_j 2^(8 j): the product
        # w * sum_k 2^(7 k + 7) modulo 2^64 holds b_j at bit 56 + j, its top byte (only the terms
        # j + k = 7 reach that byte; the lower ones are distinct powers of two below 2^56 and carry
        # nothing into it, the higher ones fall off the word). Signed 64-bit multiplication wraps
        # modulo 2^64 like the unsigned one, and is vectorised where the unsigned one is not.
        words = ones.reshape(R, L8, 8).view(torch.int64).mul_(_GATHER)
        return words.view(torch.uint8).view(R, L8, 8)[..., 7].contiguous()
    ones = ones.view(R, L8, 8)
    out = ones[..., 0].clone()
    for j in range(1, 8):
        out.bitwise_or_(ones[..., j].bitwise_left_shift(j))
    return out


@functools.lru_cache(maxsize=16)
def _bit_table(dtype: torch.dtype, device: torch.device, complement: bool) -> Tensor:
    """``[256, 8]``: row ``b`` holds the bits of byte ``b``, least significant first (``1 - bit``
    when ``complement``), in ``dtype``: unpacking is then one gather of rows."""
    bits = (torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1
    return (1 - bits if complement else bits).to(dtype=dtype, device=device)


def _signed(word: int) -> int:
    """The 64-bit word ``word`` as a signed integer (a constant for int64 arithmetic)."""
    return word - (1 << 64) if word >= 1 << 63 else word


_ONES = 0x0101010101010101  # 1 in each byte
_SPREAD = _signed(0x8040201008040201)  # bit j of byte j
_ROUND = 0x7F7F7F7F7F7F7F7F  # 0x7F in each byte


def _unpack(bits: Tensor, L: int, dtype: torch.dtype, complement: bool = False) -> Tensor:
    R, L8 = bits.shape
    if not _LITTLE_ENDIAN:
        table = _bit_table(dtype, bits.device, complement)
        out = torch.index_select(table, 0, bits.reshape(-1).long()).view(R, L8 * 8)
        return out if L8 * 8 == L else out[:, :L].contiguous()
    # byte b copied into the eight bytes of a word (b * _ONES), byte j keeping bit j of b alone
    # (& _SPREAD, so 0 or 2^j <= 0x80); + 0x7F in each byte sets bit 7 of byte j exactly when
    # bit j of b is set and carries nothing between bytes (at most 0x80 + 0x7F = 0xFF); >> 7 and
    # & _ONES leave that bit as byte j: 0 or 1, element 8 i + j of the row in little-endian order
    # (the arithmetic shift's sign bits land in bits the mask clears)
    words = torch.empty((R, L8), dtype=torch.int64, device=bits.device).copy_(bits)  # unit strides
    words.mul_(_ONES).bitwise_and_(_SPREAD).add_(_ROUND).bitwise_right_shift_(7)
    words.bitwise_and_(_ONES)
    if complement:
        words.bitwise_xor_(_ONES)
    ones = words.view(torch.uint8).view(R, L8 * 8)
    return (ones if L8 * 8 == L else ones[:, :L]).to(dtype)


def unpack_bits(bits: Tensor, L: int, dtype: torch.dtype) -> Tensor:
    return _unpack(bits, L, dtype)


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


def lif_backward_bits(grad_s: Tensor, bits: Tensor, sg: Tensor, is_static: bool, decay: float) -> Tensor:
    T, L = grad_s.shape
    ct = torch.float32 if grad_s.dtype in (torch.float16, torch.bfloat16) else grad_s.dtype
    window = _unpack(sg, L, ct)
    keep = _unpack(bits, L, ct, complement=True)  # 1 - s
    grad_x = None if is_static else torch.empty((T, L), dtype=ct, device=grad_s.device)
    g = None
    for t in range(T - 1, -1, -1):
        out = None if is_static else grad_x[t]  # type: ignore[index]
        if g is None:  # the last step: nothing comes back from later steps
            g = torch.mul(grad_s[t], window[t], out=out) if out is not None else window[t].mul_(grad_s[t])
        else:
            grad_h = window[t].mul_(grad_s[t])
            if out is None:
                g = grad_h.addcmul_(g, keep[t], value=decay)
            else:
                g = torch.addcmul(grad_h, g, keep[t], value=decay, out=out)
        if is_static:
            grad_x = g if grad_x is None else grad_x.add_(g)
    assert grad_x is not None
    return grad_x.to(grad_s.dtype)
