"""Triton kernels of the multi-step LIF and of the LIF fused with the GAC gate.

Imported only by :mod:`gac_coding.ops._triton`, on the first call that needs a kernel: this module
imports triton at the top, and ``@triton.jit`` reads ``TRITON_INTERPRET`` when it decorates, so the
interpreter (kernels run by numpy on CPU tensors) is chosen by the environment at that first import.

Layout: one program owns ``BLOCK`` elements of a step and walks the ``T`` steps with the membrane
(forward) or the carried gradient ``dL/dh_{t+1}`` (backward, steps in reverse) held in registers;
each element of each tensor is read and written once per pass. The gated kernels give a program
a block of one sample only (``per_b`` blocks per sample) so that the temporal-attention gradient
``grad_ta[t, b]`` is a sum of per-program partial sums written to a ``[T, programs]`` buffer and
added in a fixed order afterwards: no atomics, the same bits on every run.

Arithmetic runs in ``CT`` (float32 for float16/bfloat16/float32 inputs, float64 for float64); the
neuron's decay and threshold are compile-time constants (``tl.constexpr``), so that they enter the
arithmetic exactly as the Python floats rounded once to ``CT``, as in the eager torch path (a plain
float argument would be passed as a float32 scalar, inexact for float64 tensors).
"""

import triton
import triton.language as tl


@triton.jit
def _surrogate(d, SURROGATE: tl.constexpr):
    """``d s / d h`` at ``d = h - threshold``: 0 triangle ``max(0, 1 - |d|)``, 1 rectangle."""
    if SURROGATE == 0:
        sg = tl.maximum(1.0 - tl.abs(d), 0.0)
    else:
        sg = (tl.abs(d) < 0.5).to(d.dtype)
    return sg


@triton.jit
def _membrane(x, h, keep, DECAY: tl.constexpr, TH: tl.constexpr, CT: tl.constexpr):
    """One step: ``h_t = x_t + (decay h_{t-1}) keep_{t-1}`` and ``keep_t = [h_t <= th]`` (the spike
    is ``1 - keep_t``); with ``h = keep = 0`` before the first step, ``h_0 = x_0 + 0 * 0 = x_0``."""
    h = x + (h * DECAY) * keep
    return h, (h <= TH).to(CT)


@triton.jit
def _gate(z):
    """``(sigmoid(z), 1 - sigmoid(z))``, each without cancellation or overflow:
    with ``e = exp(-|z|)``, ``1 / (1 + e)`` and ``e / (1 + e)`` are the larger and the smaller."""
    e = tl.exp(-tl.abs(z))
    big = 1.0 / (1.0 + e)
    small = e * big
    pos = z >= 0.0
    return tl.where(pos, big, small), tl.where(pos, small, big)


@triton.jit
def _grad_h(
    grad_s,
    g,
    hv,
    DECAY: tl.constexpr,
    TH: tl.constexpr,
    SURROGATE: tl.constexpr,
    DETACH: tl.constexpr,
    CT: tl.constexpr,
):
    """``dL/dh_t`` from ``dL/ds_t`` and ``g = dL/dh_{t+1}`` (zero at the last step).

    ``v_t = h_t (1 - s_t)``, ``h_{t+1} = decay v_t + x_{t+1}``: ``dL/ds_t = grad_s - decay g h_t``
    (the reset path, dropped when detached) and ``dL/dh_t = dL/ds_t sg + decay g [h_t <= th]``.
    """
    sg = _surrogate(hv - TH, SURROGATE)
    if DETACH:
        gsv = grad_s
    else:
        gsv = grad_s + (g * (-DECAY)) * hv
    keep = (hv <= TH).to(CT)
    return gsv * sg + (g * DECAY) * keep


@triton.jit
def lif_forward_kernel(
    x_ptr,
    s_ptr,
    h_ptr,
    T,
    N,
    DECAY: tl.constexpr,
    TH: tl.constexpr,
    STATIC: tl.constexpr,
    SAVE: tl.constexpr,
    CT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``h_t = x_t + (decay h_{t-1}) [h_{t-1} <= th]`` (``h_0 = x_0``), ``s_t = [h_t > th]``.

    ``x``: ``[T, N]`` or, ``STATIC``, one step ``[N]`` read at every step; ``s``, ``h``: ``[T, N]``.
    """
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    xp = x_ptr + offs
    sp = s_ptr + offs
    hp = h_ptr + offs
    h = tl.zeros([BLOCK], dtype=CT)
    keep = tl.zeros([BLOCK], dtype=CT)
    for _t in range(T):
        h, keep = _membrane(tl.load(xp, mask=mask, other=0.0).to(CT), h, keep, DECAY, TH, CT)
        tl.store(sp, (h > TH).to(CT).to(s_ptr.dtype.element_ty), mask=mask)
        if SAVE:
            tl.store(hp, h, mask=mask)
        if not STATIC:
            xp += N
        sp += N
        hp += N


@triton.jit
def lif_backward_kernel(
    gs_ptr,
    h_ptr,
    gx_ptr,
    T,
    N,
    last,
    DECAY: tl.constexpr,
    TH: tl.constexpr,
    SURROGATE: tl.constexpr,
    DETACH: tl.constexpr,
    STATIC: tl.constexpr,
    CT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``grad_x`` from ``grad_s, h: [T, N]`` walking the steps in reverse (``last = (T-1) N``);
    ``STATIC``: the sum over the steps, ``[N]``, added from the last step to the first."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    gsp = gs_ptr + last + offs
    hp = h_ptr + last + offs
    if STATIC:
        gxp = gx_ptr + offs
    else:
        gxp = gx_ptr + last + offs
    g = tl.zeros([BLOCK], dtype=CT)
    acc = tl.zeros([BLOCK], dtype=CT)
    for _i in range(T):
        hv = tl.load(hp, mask=mask, other=0.0).to(CT)
        grad_s = tl.load(gsp, mask=mask, other=0.0).to(CT)
        g = _grad_h(grad_s, g, hv, DECAY, TH, SURROGATE, DETACH, CT)
        if STATIC:
            acc += g
        else:
            tl.store(gxp, g.to(gx_ptr.dtype.element_ty), mask=mask)
            gxp -= N
        gsp -= N
        hp -= N
    if STATIC:
        tl.store(gxp, acc.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def gated_forward_kernel(
    u_ptr,
    ta_ptr,
    sca_ptr,
    out_ptr,
    fired_ptr,
    gate_ptr,
    h_ptr,
    T,
    B,
    P,
    per_b,
    DECAY: tl.constexpr,
    TH: tl.constexpr,
    U_STATIC: tl.constexpr,
    SCA_STATIC: tl.constexpr,
    SAVE: tl.constexpr,
    CT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The LIF of ``u`` and ``out_t = sigmoid(ta[t, b] sca_t) s_t``; a program owns a block of
    one sample ``b`` (``P`` elements per sample, ``per_b`` blocks per sample)."""
    pid = tl.program_id(0)
    b = pid // per_b
    col = (pid % per_b) * BLOCK + tl.arange(0, BLOCK)
    mask = col < P
    N = B * P
    offs = b.to(tl.int64) * P + col
    up = u_ptr + offs
    cp = sca_ptr + offs
    op = out_ptr + offs
    fp = fired_ptr + offs
    mp = gate_ptr + offs
    hp = h_ptr + offs
    tp = ta_ptr + b
    h = tl.zeros([BLOCK], dtype=CT)
    keep = tl.zeros([BLOCK], dtype=CT)
    for _t in range(T):
        h, keep = _membrane(tl.load(up, mask=mask, other=0.0).to(CT), h, keep, DECAY, TH, CT)
        s = (h > TH).to(CT)
        z = tl.load(cp, mask=mask, other=0.0).to(CT) * tl.load(tp).to(CT)
        m, _one_minus_m = _gate(z)
        tl.store(fp, s.to(fired_ptr.dtype.element_ty), mask=mask)
        tl.store(mp, m.to(gate_ptr.dtype.element_ty), mask=mask)
        tl.store(op, (m * s).to(out_ptr.dtype.element_ty), mask=mask)
        if SAVE:
            tl.store(hp, h, mask=mask)
        if not U_STATIC:
            up += N
        if not SCA_STATIC:
            cp += N
        op += N
        fp += N
        mp += N
        hp += N
        tp += B


@triton.jit
def gated_backward_kernel(
    dout_ptr,
    h_ptr,
    ta_ptr,
    sca_ptr,
    gu_ptr,
    gsca_ptr,
    part_ptr,
    T,
    B,
    P,
    per_b,
    last,
    DECAY: tl.constexpr,
    TH: tl.constexpr,
    SURROGATE: tl.constexpr,
    DETACH: tl.constexpr,
    U_STATIC: tl.constexpr,
    SCA_STATIC: tl.constexpr,
    CT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Gradients of ``u``, ``sca`` and the partial sums of ``grad_ta`` (``part[t, program]``), steps
    in reverse (``last = (T-1) N``). ``dout/dz = s m (1 - m)`` with ``z = ta sca``: the gate ``m`` and
    the spike ``s`` are recomputed in ``CT`` from ``ta``, ``sca`` and ``h`` rather than read back from
    the forward outputs (fewer bytes read, and no loss of ``1 - m`` to a gate stored in half precision
    near 1)."""
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    b = pid // per_b
    col = (pid % per_b) * BLOCK + tl.arange(0, BLOCK)
    mask = col < P
    N = B * P
    offs = b.to(tl.int64) * P + col
    dp = dout_ptr + last + offs
    hp = h_ptr + last + offs
    if U_STATIC:
        gup = gu_ptr + offs
    else:
        gup = gu_ptr + last + offs
    if SCA_STATIC:
        cp = sca_ptr + offs
        gcp = gsca_ptr + offs
    else:
        cp = sca_ptr + last + offs
        gcp = gsca_ptr + last + offs
    tp = ta_ptr + (T - 1) * B + b
    pp = part_ptr + (T - 1) * programs + pid
    g = tl.zeros([BLOCK], dtype=CT)
    acc_u = tl.zeros([BLOCK], dtype=CT)
    acc_sca = tl.zeros([BLOCK], dtype=CT)
    for _i in range(T):
        d = tl.load(dp, mask=mask, other=0.0).to(CT)
        hv = tl.load(hp, mask=mask, other=0.0).to(CT)
        sca = tl.load(cp, mask=mask, other=0.0).to(CT)
        tav = tl.load(tp).to(CT)
        m, one_minus_m = _gate(sca * tav)
        grad_z = ((d * (hv > TH).to(CT)) * m) * one_minus_m
        tl.store(pp, tl.sum(grad_z * sca, axis=0))
        gz_ta = grad_z * tav
        g = _grad_h(d * m, g, hv, DECAY, TH, SURROGATE, DETACH, CT)
        if U_STATIC:
            acc_u += g
        else:
            tl.store(gup, g.to(gu_ptr.dtype.element_ty), mask=mask)
            gup -= N
        if SCA_STATIC:
            acc_sca += gz_ta
        else:
            tl.store(gcp, gz_ta.to(gsca_ptr.dtype.element_ty), mask=mask)
            gcp -= N
            cp -= N
        dp -= N
        hp -= N
        tp -= B
        pp -= programs
    if U_STATIC:
        tl.store(gup, acc_u.to(gu_ptr.dtype.element_ty), mask=mask)
    if SCA_STATIC:
        tl.store(gcp, acc_sca.to(gsca_ptr.dtype.element_ty), mask=mask)
