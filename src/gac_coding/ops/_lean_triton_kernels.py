"""Triton kernels of the lean ops: bit packing and the LIF that packs its spikes (BatchNorm's
per-channel scale and shift applied on the way in).

Imported only by :mod:`gac_coding.ops._lean_triton` on the first call that needs a kernel (triton
reads ``TRITON_INTERPRET`` when it decorates them, as for :mod:`gac_coding.ops._triton_kernels`).

Layout: a program owns ``BYTES`` bytes of a row, i.e. a ``[BYTES, 8]`` block of ``8 * BYTES``
consecutive elements, so that each byte is written by one program: no atomics, the same bits on
every run. A byte is the sum of its 8 bits shifted to their places. The LIF kernel walks the ``T``
steps with the membrane of its block in registers; its arithmetic is that of the neuron ops'
kernels (``h_t = z_t + (decay h_{t-1}) [h_{t-1} <= th]``, in ``CT``: float32, or float64 for
float64 tensors), with ``z = x * alpha[c] + beta[c]`` first when ``AFFINE``.
"""

import triton
import triton.language as tl


@triton.jit
def _block(L, BYTES: tl.constexpr):
    """``(element offsets [BYTES, 8], their mask, byte offsets [BYTES], their mask, shifts)`` of
    this program's block in a row of ``L`` elements (axis 1 of the grid: the block)."""
    byte = tl.program_id(1).to(tl.int64) * BYTES + tl.arange(0, BYTES)
    shift = tl.arange(0, 8)
    elem = byte[:, None] * 8 + shift[None, :]
    return elem, elem < L, byte, byte < (L + 7) // 8, shift


@triton.jit
def _pack(v, shift):
    """``[BYTES, 8]`` of 0/1 (int32) -> ``[BYTES]`` bytes, least significant bit first."""
    return tl.sum(v << shift[None, :], axis=1).to(tl.uint8)


@triton.jit
def pack_kernel(x_ptr, out_ptr, L, L8, BYTES: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    elem, emask, byte, bmask, shift = _block(L, BYTES)
    x = tl.load(x_ptr + row * L + elem, mask=emask, other=0)
    tl.store(out_ptr + row * L8 + byte, _pack((x != 0).to(tl.int32), shift), mask=bmask)


@triton.jit
def unpack_kernel(bits_ptr, out_ptr, L, L8, BYTES: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    elem, emask, byte, bmask, shift = _block(L, BYTES)
    b = tl.load(bits_ptr + row * L8 + byte, mask=bmask, other=0).to(tl.int32)
    v = (b[:, None] >> shift[None, :]) & 1
    tl.store(out_ptr + row * L + elem, v.to(out_ptr.dtype.element_ty), mask=emask)


@triton.jit
def lif_packed_kernel(
    x_ptr,
    alpha_ptr,
    beta_ptr,
    s_ptr,
    bits_ptr,
    sg_ptr,
    h_ptr,
    T,
    L,
    L8,
    C,
    INNER,
    DECAY: tl.constexpr,
    TH: tl.constexpr,
    STATIC: tl.constexpr,
    AFFINE: tl.constexpr,
    WANT_SG: tl.constexpr,
    WANT_H: tl.constexpr,
    CT: tl.constexpr,
    BYTES: tl.constexpr,
):
    """The LIF of ``x: [T, L]`` (``STATIC``: one step ``[L]`` at every step): spikes ``[T, L]``,
    their bits ``[T, L8]``, the bits of ``|h - th| < 0.5`` (``WANT_SG``), the membrane (``WANT_H``).
    Grid ``(1, blocks)``."""
    elem, emask, byte, bmask, shift = _block(L, BYTES)
    if AFFINE:
        c = (elem // INNER) % C
        a = tl.load(alpha_ptr + c, mask=emask, other=0.0).to(CT)
        b = tl.load(beta_ptr + c, mask=emask, other=0.0).to(CT)
    h = tl.zeros([BYTES, 8], dtype=CT)
    keep = tl.zeros([BYTES, 8], dtype=CT)
    for t in range(T):
        if STATIC:
            x = tl.load(x_ptr + elem, mask=emask, other=0.0).to(CT)
        else:
            x = tl.load(x_ptr + t * L + elem, mask=emask, other=0.0).to(CT)
        if AFFINE:
            x = x * a + b
        h = x + (h * DECAY) * keep
        keep = (h <= TH).to(CT)
        s = ((h > TH) & emask).to(tl.int32)
        tl.store(s_ptr + t * L + elem, s.to(s_ptr.dtype.element_ty), mask=emask)
        tl.store(bits_ptr + t * L8 + byte, _pack(s, shift), mask=bmask)
        if WANT_SG:
            w = ((tl.abs(h - TH) < 0.5) & emask).to(tl.int32)
            tl.store(sg_ptr + t * L8 + byte, _pack(w, shift), mask=bmask)
        if WANT_H:
            tl.store(h_ptr + t * L + elem, h, mask=emask)


@triton.jit
def lif_backward_bits_kernel(
    gs_ptr,
    bits_ptr,
    sg_ptr,
    gx_ptr,
    T,
    L,
    L8,
    DECAY: tl.constexpr,
    STATIC: tl.constexpr,
    CT: tl.constexpr,
    BYTES: tl.constexpr,
):
    """The LIF's backward pass (rectangle surrogate, detached reset) from the bits of the spikes and
    of the window: ``g_t = grad_s_t w_t + (g_{t+1} decay) (1 - s_t)``, steps in reverse; ``STATIC``:
    the sum over the steps. Grid ``(1, blocks)``."""
    elem, emask, byte, bmask, shift = _block(L, BYTES)
    g = tl.zeros([BYTES, 8], dtype=CT)
    acc = tl.zeros([BYTES, 8], dtype=CT)
    for i in range(T):
        t = T - 1 - i
        gs = tl.load(gs_ptr + t * L + elem, mask=emask, other=0.0).to(CT)
        b = tl.load(bits_ptr + t * L8 + byte, mask=bmask, other=0).to(tl.int32)
        w = tl.load(sg_ptr + t * L8 + byte, mask=bmask, other=0).to(tl.int32)
        fired = ((b[:, None] >> shift[None, :]) & 1).to(CT)
        window = ((w[:, None] >> shift[None, :]) & 1).to(CT)
        g = gs * window + (g * DECAY) * (1.0 - fired)
        if STATIC:
            acc += g
        else:
            tl.store(gx_ptr + t * L + elem, g.to(gx_ptr.dtype.element_ty), mask=emask)
    if STATIC:
        tl.store(gx_ptr + elem, acc.to(gx_ptr.dtype.element_ty), mask=emask)
