"""Pinned tests of the lean LIF and the convolution of spikes and their backends (the ops-lean-lif
mutation area: ``ops/_lean_lif.py``, ``_lean_eager.py``, ``_lean_cpp.py``, ``_lean_triton.py``).

``test_memory.py`` judges the numbers of ``lean.lif`` and ``lean.spike_conv2d`` through the public
calls. This file pins what it leaves: the custom operators ``torch.compile`` runs (called eagerly:
their registered autograd, their fake kernels against the real ones), what the backward pass keeps
(two bits per element with the rectangle surrogate and a detached reset, the membrane otherwise,
nothing without gradients), the rectangle window's edges and ties at the threshold, ``T = 1``,
static inputs, channels-last steps, an empty batch, half inputs, each subset of inputs wanting
gradients, the messages in full, which backend each call reaches, the C++ backend's build and
dtype rules (a stand-in compiler and module), and the Triton backend's launches (stand-in compiled
kernels and a stand-in ``torch.cuda.device``; the real kernels in Triton's interpreter on tiny
shapes). The numbers are compared with ``slow_reference.py`` and the default LIF op in float64.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from slow_reference import slow_lif
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from triton_device import triton_kernel_device
from triton_stand_in import LaunchRecording, record_launches, same_args, same_meta

from gac_coding.ops import (
    LIFParams,
    _cpp,
    _lean_cpp,
    _lean_eager,
    _lean_lif,
    _lean_triton,
    _triton,
    backends,
    lean,
)
from gac_coding.ops import lif as default_lif
from gac_coding.ops._lean_common import LEAN_REGISTRY
from gac_coding.ops.memory import saved_tensor_bytes

F64 = torch.float64
HAS_CPP = _cpp.toolchain_available()
LEAN_BACKENDS = ["eager", "triton", *(["cpp"] if HAS_CPP else [])]

# a backend that fails would hand the call to the next one with a RuntimeWarning: an error here
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

TRI = LIFParams(0.5, 1.0, "triangle", False)  # the membrane kept
RECT = LIFParams(0.25, 0.75, "rectangle", True)  # two bits kept
RECT_ATTACHED = LIFParams(0.5, 1.0, "rectangle", False)  # the membrane kept
TRI_DETACHED = LIFParams(0.5, 0.75, "triangle", True)  # the membrane kept
ALL_PARAMS = [TRI, RECT, RECT_ATTACHED, TRI_DETACHED]
PARAM_IDS = ["tri", "rect", "rect-attached", "tri-detached"]


@pytest.fixture(scope="module")
def triton_device() -> str:
    return triton_kernel_device()


def _dev(backend: str) -> str:
    return triton_kernel_device() if backend == "triton" else "cpu"


def _close(a: Tensor, b: Tensor, rel: float = 1e-12) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    scale = max(a.abs().max().item(), 1e-300) if a.numel() else 1.0
    assert (a - b).abs().max().item() <= rel * scale if a.numel() else True


def _packbits(rows: Tensor) -> np.ndarray:
    return np.packbits((rows != 0).cpu().numpy().astype(np.uint8), axis=1, bitorder="little")


def _nhwc_steps(x: Tensor) -> Tensor:
    """``x [T, B, C, H, W]`` with each step stored channels-last."""
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def _storage_rows(x: Tensor, rows: int, nhwc: bool = False) -> Tensor:
    """``x`` as ``[rows, L]`` in the order of a channels-last storage (``nhwc``) or plainly."""
    if nhwc:
        x = x.movedim(-3, -1)
    return x.reshape(rows, -1)


def _inputs(shape: Sequence[int], seed: int, scale: float = 2.0, dtype: torch.dtype = F64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    # multiples of 1/8: the membranes are exact in every dtype, some of them exactly at the threshold
    return (torch.randint(0, int(8 * scale) + 1, tuple(shape), generator=g).to(F64) / 8).to(dtype)


def _weights(shape: Sequence[int], seed: int) -> Tensor:
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed), dtype=F64)


def _slow(x: Tensor, p: LIFParams, steps: int | None = None) -> tuple[Tensor, Tensor]:
    seq = x.unsqueeze(0).expand(steps, *x.shape) if steps else x
    return slow_lif(seq, p.decay, p.threshold, str(p.surrogate), p.detach_reset)


# ------------------------------------------------------------------------------- small helpers


def test_bit_backward_only_for_the_rectangle_with_a_detached_reset() -> None:
    assert _lean_lif._bit_backward(1, True) is True
    for code, detach in [(0, True), (1, False), (0, False), (2, True)]:
        assert _lean_lif._bit_backward(code, detach) is False


def test_check_lean_params_codes_and_message() -> None:
    assert lean.check_lean_params(LIFParams(surrogate="triangle")) == 0
    assert lean.check_lean_params(LIFParams(surrogate="rectangle")) == 1

    def smooth(h: Tensor) -> Tensor:
        return torch.sigmoid(h)

    p = LIFParams(surrogate=smooth)
    tail = (
        ": the lean ops take the named surrogates 'triangle' and 'rectangle', not the callable "
        "'smooth'; use memory='default' (or 'checkpoint' on a model)"
    )
    with pytest.raises(ValueError, match="^" + re.escape("memory" + tail) + "$"):
        lean.check_lean_params(p)
    with pytest.raises(ValueError, match="^" + re.escape("encoder.memory" + tail) + "$"):
        lean.check_lean_params(p, "encoder.memory")
    with pytest.raises(ValueError, match="^" + re.escape("memory" + tail) + "$"):
        lean.lif(torch.ones(2, 3), p)


@pytest.mark.parametrize("steps", [0, -1, True, False, 1.0, 2.5, "2", None])
def test_lif_refuses_bad_steps_in_full(steps: object) -> None:
    if steps is None:
        for x in (torch.zeros(0, 3), torch.tensor(1.0)):
            message = f"x: expected a sequence [T, B, ...] with T >= 1, got shape {tuple(x.shape)}"
            with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
                lean.lif(x, TRI)
        return
    with pytest.raises(
        ValueError, match="^" + re.escape(f"steps: expected an integer >= 1, got {steps!r}") + "$"
    ):
        lean.lif(torch.zeros(2, 3), TRI, steps=steps)  # type: ignore[arg-type]


def test_lif_names_a_bad_backend() -> None:
    with pytest.raises(ValueError, match="backend"):
        lean.lif(torch.zeros(2, 3), TRI, backend="fortran")
    with pytest.raises(TypeError, match="backend"):
        lean.lif(torch.zeros(2, 3), TRI, backend=3)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- lean.lif's numbers


def _run_default(x: Tensor, p: LIFParams, w: Tensor, steps: int | None, backend: str):  # type: ignore[no-untyped-def]
    a = x.clone().requires_grad_()
    s = default_lif(a, p, steps=steps, backend=backend)
    (g,) = torch.autograd.grad((s * w).sum(), a)
    return s.detach(), g


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("p", ALL_PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize(
    ("shape", "steps", "nhwc"),
    [((3, 2, 3, 2, 3), None, False), ((3, 2, 3, 2, 3), None, True), ((1, 2, 5), None, False),
     ((4,), None, False), ((2, 3, 2, 3), 3, True), ((2, 3, 2, 3), 1, True), ((2, 7), 1, False),
     ((2, 7), 2, False)],
    ids=["seq", "seq-nhwc", "T1", "seq-1d", "static-nhwc", "static-T1-nhwc", "static-T1", "static"],
)  # fmt: skip
@pytest.mark.parametrize("via_op", [False, True], ids=["function", "operator"])
def test_lean_lif_against_the_default_op_and_the_slow_loop(
    backend: str,
    p: LIFParams,
    shape: tuple[int, ...],
    steps: int | None,
    nhwc: bool,
    via_op: bool,
    triton_device: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spikes, bits (in the storage order of the steps) and the input gradient: the default op's
    bit for bit (same backend), the slow loop's to 1e-12; the layout of the spikes and of the
    gradient follows the input's. ``operator``: as under ``torch.compile``, the custom operator
    with its registered autograd."""
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    dev = _dev(backend)
    x = _inputs(shape, sum(shape) + (steps or 0), scale=1.5 * p.threshold)
    if nhwc:
        x = _nhwc_steps(x) if steps is None else x.contiguous(memory_format=torch.channels_last)
    T = steps or shape[0]
    w = _weights((T, *(shape if steps else shape[1:])), 3)
    ref_s, ref_g = _run_default(x.to(dev), p, w.to(dev), steps, backend)
    slow_x = x.clone().requires_grad_()
    slow_s, _ = _slow(slow_x, p, steps)
    (slow_g,) = torch.autograd.grad((slow_s * w).sum(), slow_x)
    xd = x.to(dev).requires_grad_()
    s, bits = lean.lif(xd, p, steps=steps, backend=backend)
    assert not bits.requires_grad and bits.dtype == torch.uint8
    (g,) = torch.autograd.grad((s * w.to(dev)).sum(), xd)
    s, g, bits = s.detach().cpu(), g.cpu(), bits.cpu()
    assert torch.equal(s, ref_s) and torch.equal(s, slow_s.detach())
    assert np.array_equal(bits.numpy(), _packbits(_storage_rows(s, T, nhwc)))
    assert torch.equal(g, ref_g)
    _close(slow_g, g)
    if nhwc:
        step_s = s[0] if s.dim() == 5 else s[0]
        assert step_s.is_contiguous(memory_format=torch.channels_last) and not step_s.is_contiguous()
        step_g = g[0] if steps is None else g
        assert step_g.is_contiguous(memory_format=torch.channels_last) and not step_g.is_contiguous()


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("p", [TRI, RECT], ids=["tri", "rect"])
def test_lean_lif_in_low_precision(backend: str, dtype: torch.dtype, p: LIFParams) -> None:
    """Spikes in the input's dtype and equal to the float64 ones (the inputs are exact), the
    gradient in the input's dtype, within its rounding of the float64 one."""
    dev = _dev(backend)
    x = _inputs((3, 2, 9), 5, scale=1.5)
    w = (torch.randint(-4, 5, (3, 2, 9), generator=torch.Generator().manual_seed(2)) / 4).to(F64)
    ref_s, ref_g = _run_default(x, p, w, None, "eager")
    xd = x.to(dtype).to(dev).requires_grad_()
    s, bits = lean.lif(xd, p, backend=backend)
    (g,) = torch.autograd.grad((s * w.to(dtype).to(dev)).sum(), xd)
    assert s.dtype == dtype and g.dtype == dtype
    assert torch.equal(s.cpu().to(F64), ref_s)
    assert (g.cpu().to(F64) - ref_g).abs().max().item() <= 4e-3 * ref_g.abs().max().item()


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
def test_ties_and_the_rectangle_window_edges(backend: str) -> None:
    """A membrane exactly at the threshold fires no spike and keeps decaying; the rectangle's
    window ``|h - th| < 0.5`` holds neither edge: the gradient is 0 at ``th +- 0.5`` and the
    input's weight just inside them."""
    dev = _dev(backend)
    p = LIFParams(0.5, 1.0, "rectangle", True)
    # one step; membranes: th - 0.5, th - 0.375, th, th + 0.375, th + 0.5, 2.0
    x = torch.tensor([[0.5, 0.625, 1.0, 1.375, 1.5, 2.0]], dtype=F64)
    xd = x.to(dev).requires_grad_()
    s, bits = lean.lif(xd, p, backend=backend)
    (g,) = torch.autograd.grad((s * 3.0).sum(), xd)
    assert s.cpu().tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]
    assert bits.cpu().tolist() == [[0b111000]]
    assert g.cpu().tolist() == [[0.0, 3.0, 3.0, 3.0, 0.0, 0.0]]
    # two steps: a tie at step 0 leaves the membrane to decay (0.5 + 0.5 = 1.0: a tie again)
    x2 = torch.tensor([[1.0], [0.5]], dtype=F64)
    s2, _ = lean.lif(x2.to(dev), p, backend=backend)
    assert s2.cpu().flatten().tolist() == [0.0, 0.0]
    x3 = torch.tensor([[1.0], [0.625]], dtype=F64)
    s3, _ = lean.lif(x3.to(dev), p, backend=backend)
    assert s3.cpu().flatten().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("p", [TRI, RECT], ids=["tri", "rect"])
@pytest.mark.parametrize("steps", [None, 2])
def test_empty_batch(backend: str, p: LIFParams, steps: int | None) -> None:
    dev = _dev(backend)
    x = torch.zeros((0, 3) if steps else (2, 0, 3), dtype=F64, device=dev, requires_grad=True)
    s, bits = lean.lif(x, p, steps=steps, backend=backend)
    assert s.shape == (2, 0, 3) and bits.shape == (2, 0)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert g.shape == x.shape


# ------------------------------------------------------------------------- what is kept


def _kept(x: Tensor, p: LIFParams, steps: int | None = None, backend: str = "eager", op: bool = False) -> int:
    with saved_tensor_bytes() as counter:
        if op:
            code = lean.check_lean_params(p)
            save = torch.is_grad_enabled() and x.requires_grad
            settings = (p.decay, p.threshold, code, p.detach_reset, save, backend)
            s = torch.ops.gac_coding.lean_lif(x, steps or 0, *settings)[0]
        else:
            s, _ = lean.lif(x, p, steps=steps, backend=backend)
    if s.requires_grad:
        s.sum().backward()
    return counter.bytes


@pytest.mark.parametrize("op", [False, True], ids=["function", "operator"])
@pytest.mark.parametrize("backend", LEAN_BACKENDS)
def test_bytes_kept_for_the_backward_pass(op: bool, backend: str) -> None:
    """Rectangle and detached reset: the spikes' bits and the window's, ``2 * T * ceil(L / 8)``
    bytes; otherwise the membrane (float32 for half inputs); without gradients nothing."""
    dev = _dev(backend)
    T, L = 3, 10  # 2 bytes a step
    x = torch.rand(T, 2, 5, dtype=F64, device=dev, requires_grad=True)
    assert _kept(x, RECT, backend=backend, op=op) == 2 * T * 2
    for p in (TRI, RECT_ATTACHED, TRI_DETACHED):
        assert _kept(x, p, backend=backend, op=op) == T * L * 8
    assert _kept(x.detach().float().requires_grad_(), TRI, backend=backend, op=op) == T * L * 4
    assert _kept(x.detach().half().requires_grad_(), TRI, backend=backend, op=op) == T * L * 4
    assert _kept(x.detach().half().requires_grad_(), RECT, backend=backend, op=op) == 2 * T * 2
    # a static input: all T steps are kept
    assert _kept(x[0].detach().requires_grad_(), RECT, steps=T, backend=backend, op=op) == 2 * T * 2
    assert _kept(x[0].detach().requires_grad_(), TRI, steps=T, backend=backend, op=op) == T * L * 8
    assert _kept(x.detach(), TRI, backend=backend, op=op) == 0
    with torch.no_grad():
        assert _kept(x, TRI, backend=backend, op=op) == 0
        assert _kept(x, RECT, backend=backend, op=op) == 0


# ------------------------------------------------------------------ the forward's three outputs


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("static", [False, True])
def test_forward_outputs_spikes_bits_and_what_is_kept(backend: str, nhwc: bool, static: bool) -> None:
    dev = _dev(backend)
    T, shape = 3, (2, 3, 2, 3)
    x = _inputs(shape if static else (T, *shape), 9, scale=2.0)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last) if static else _nhwc_steps(x)
    x = x.to(dev)
    steps = T if static else 0
    slow_s, slow_h = _slow(x.cpu(), RECT, T if static else None)
    expected_bits = _packbits(_storage_rows(slow_s, T, nhwc))
    window = _packbits(_storage_rows((slow_h - RECT.threshold).abs() < 0.5, T, nhwc))
    fwd = _lean_lif._lean_lif_forward
    for p, save in ((RECT, True), (RECT, False), (TRI_DETACHED, True)):
        code = lean.check_lean_params(p)
        out, bits, aux = fwd(x, steps, p.decay, p.threshold, code, p.detach_reset, save, backend)
        ref_s, ref_h = _slow(x.cpu(), p, T if static else None)
        assert torch.equal(out.cpu(), ref_s)
        assert out[0].is_contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
        assert out.shape == (T, *shape)
        if p is RECT:
            assert np.array_equal(bits.cpu().numpy(), expected_bits)
        if not save:
            assert aux.shape == (0,) and aux.dtype == F64
        elif p is RECT:
            assert aux.dtype == torch.uint8 and np.array_equal(aux.cpu().numpy(), window)
        else:
            assert aux.dtype == F64 and aux.shape == (T, *shape)
            assert torch.equal(aux.cpu(), ref_h)
            assert aux[0].is_contiguous(
                memory_format=torch.channels_last if nhwc else torch.contiguous_format
            )


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
def test_forward_keeps_a_float32_membrane_for_half_inputs(backend: str) -> None:
    dev = _dev(backend)
    x = _inputs((2, 3, 4), 4).to(torch.float16).to(dev)
    out, bits, aux = _lean_lif._lean_lif_forward(x, 0, 0.5, 1.0, 0, False, True, backend)
    _, ref_h = _slow(x.cpu().to(F64), TRI)
    assert out.dtype == torch.float16 and aux.dtype == torch.float32
    assert torch.equal(aux.cpu().to(F64), ref_h)
    _, _, empty = _lean_lif._lean_lif_forward(x, 0, 0.5, 1.0, 0, False, False, backend)
    assert empty.shape == (0,) and empty.dtype == torch.float16


# ------------------------------------------------------------- the custom operators, eagerly


def _op(x: Tensor, p: LIFParams, steps: int = 0, save: bool = True, **kw: str):  # type: ignore[no-untyped-def]
    code = lean.check_lean_params(p)
    return torch.ops.gac_coding.lean_lif(x, steps, p.decay, p.threshold, code, p.detach_reset, save, **kw)


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("p", ALL_PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize(("static", "nhwc"), [(False, False), (False, True), (True, True), (True, False)])
def test_lean_lif_operator_with_its_registered_autograd(
    backend: str, p: LIFParams, static: bool, nhwc: bool, triton_device: str
) -> None:
    """``torch.ops.gac_coding.lean_lif`` (what ``torch.compile`` runs) called on a tensor that
    requires grad: the default op's spikes and gradient; bits and kept tensor non-differentiable."""
    dev = _dev(backend)
    T, shape = 3, (2, 3, 2, 3)
    x = _inputs(shape if static else (T, *shape), 21, scale=1.5 * p.threshold)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last) if static else _nhwc_steps(x)
    w = _weights((T, *shape), 8)
    ref_s, ref_g = _run_default(x.to(dev), p, w.to(dev), T if static else None, backend)
    xd = x.to(dev).requires_grad_()
    s, bits, aux = _op(xd, p, T if static else 0, backend=backend)
    assert not bits.requires_grad and not aux.requires_grad
    (g,) = torch.autograd.grad((s * w.to(dev)).sum(), xd)
    assert torch.equal(s.detach().cpu(), ref_s)
    assert torch.equal(g.cpu(), ref_g)
    if nhwc:
        step_g = g if static else g[0]
        assert step_g.is_contiguous(memory_format=torch.channels_last) and not step_g.is_contiguous()


def test_lean_lif_operator_default_backend_and_a_second_backward() -> None:
    x = _inputs((3, 2, 5), 2).requires_grad_()
    w = _weights((3, 2, 5), 1)
    for p in (TRI, RECT):
        ref_s, ref_g = _run_default(x.detach(), p, w, None, "eager")
        s, _, _ = _op(x, p)  # the backend argument left out: "auto"
        g1 = torch.autograd.grad((s * w).sum(), x, retain_graph=True)[0]
        g2 = torch.autograd.grad((s * w).sum(), x)[0]
        assert torch.equal(s.detach(), ref_s) and torch.equal(g1, ref_g) and torch.equal(g2, ref_g)


@pytest.mark.parametrize("shape", [(3, 2, 5), (1, 1)])
def test_lean_lif_operator_refuses_a_backward_without_save(shape: tuple[int, ...]) -> None:
    x = torch.rand(*shape, dtype=F64, requires_grad=True)
    for p in (TRI, RECT):
        s, _, aux = _op(x, p, save=False)
        assert aux.shape == (0,)
        with pytest.raises(
            RuntimeError,
            match="^"
            + re.escape("gac_coding::lean_lif: backward through a call made without save=True")
            + "$",
        ):
            s.sum().backward()
    # an empty batch, with or without save: no refusal (nothing needed what was kept), a gradient
    # of the input's shape and dtype; the bit-backward (rectangle with a detached reset) included
    for steps, e in [(0, torch.zeros(3, 0, 5, dtype=F64)), (3, torch.zeros(0, 5, dtype=F64))]:
        e.requires_grad_()
        for p, save in itertools.product((TRI, RECT, LIFParams(0.5, 1.0, "rectangle", True)), (True, False)):
            s, _, aux = _op(e, p, steps=steps, save=save)
            assert s.shape == (3, 0, 5) and aux.numel() == 0
            (g,) = torch.autograd.grad(s.sum(), e)
            assert g.shape == e.shape and g.dtype == F64


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("p", ALL_PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize(("static", "nhwc"), [(False, False), (False, True), (True, True)])
def test_lean_lif_backward_operator_against_the_slow_loop(
    backend: str, p: LIFParams, static: bool, nhwc: bool, triton_device: str
) -> None:
    dev = _dev(backend)
    T, shape = 3, (2, 3, 2, 3)
    x = _inputs(shape if static else (T, *shape), 30, scale=1.5 * p.threshold)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last) if static else _nhwc_steps(x)
    grad_s = _weights((T, *shape), 4)
    if nhwc:
        grad_s = _nhwc_steps(grad_s)
    xs = x.clone().requires_grad_()
    slow_s, _ = _slow(xs, p, T if static else None)
    (ref,) = torch.autograd.grad((slow_s * grad_s).sum(), xs)
    code = lean.check_lean_params(p)
    _, bits, aux = _op(x.to(dev), p, T if static else 0, backend=backend)
    g = torch.ops.gac_coding.lean_lif_backward(
        grad_s.to(dev), bits, aux, static, nhwc, p.decay, p.threshold, code, p.detach_reset, backend
    )
    _close(ref, g.cpu())
    g2 = _lean_lif._lean_lif_backward_run(
        grad_s.to(dev), bits, aux, static, nhwc, p.decay, p.threshold, code, p.detach_reset, backend
    )
    assert torch.equal(g, g2)


# --------------------------------------------------------------------------------- the fakes


def _same_meta(real: Tensor, fake: Tensor) -> None:
    assert tuple(fake.shape) == tuple(real.shape)
    assert fake.dtype == real.dtype
    assert fake.stride() == real.stride()


@pytest.mark.parametrize("p", [TRI, RECT], ids=["tri", "rect"])
@pytest.mark.parametrize(("static", "nhwc"), [(False, False), (False, True), (True, True), (True, False)])
@pytest.mark.parametrize("dtype", [F64, torch.float16])
def test_lean_lif_fakes_match_the_real_operators(
    p: LIFParams, static: bool, nhwc: bool, dtype: torch.dtype
) -> None:
    T, shape = 3, (2, 3, 2, 5)
    x = _inputs(shape if static else (T, *shape), 6).to(dtype)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last) if static else _nhwc_steps(x)
    grad_s = _weights((T, *shape), 2).to(dtype)
    if nhwc:
        grad_s = _nhwc_steps(grad_s)
    code = lean.check_lean_params(p)
    steps = T if static else 0
    for save in (True, False):
        real = _op(x, p, steps, save)
        with FakeTensorMode() as mode:
            fake = _op(mode.from_tensor(x), p, steps, save)
        assert len(fake) == 3
        for r, f in zip(real, fake, strict=True):
            _same_meta(r, f)
    _, bits, aux = _op(x, p, steps, True)
    settings = (static, nhwc, p.decay, p.threshold, code, p.detach_reset)
    real_b = torch.ops.gac_coding.lean_lif_backward(grad_s, bits, aux, *settings)
    with FakeTensorMode() as mode:
        fg, fb, fa = (mode.from_tensor(t) for t in (grad_s, bits, aux))
        fake_b = torch.ops.gac_coding.lean_lif_backward(fg, fb, fa, *settings)
    _same_meta(real_b, fake_b)


# ------------------------------------------------------------------------ which backend runs


class _Spy:
    """Records the lean functions each registered backend runs (and runs them), the neuron ops'
    ``lif_backward`` (the membrane's backward pass), and the flags ``lif_forward_packed`` gets."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        self.wants: list[tuple[bool, bool]] = []
        for name, backend in LEAN_REGISTRY.items():
            for function in ("pack_bits", "unpack_bits", "lif_forward_packed", "lif_backward_bits"):
                original = getattr(backend, function)
                monkeypatch.setattr(backend, function, self._wrap(name, function, original))
        for name, backend in backends.REGISTRY.items():
            original = backend.lif_backward
            monkeypatch.setattr(backend, "lif_backward", self._wrap(name, "lif_backward", original))

    def _wrap(self, name: str, function: str, original):  # type: ignore[no-untyped-def]
        def run(*args):  # type: ignore[no-untyped-def]
            self.calls.append((name, function))
            if function == "lif_forward_packed":
                self.wants.append(args[-2:])
            return original(*args)

        return run


@pytest.mark.parametrize("backend", [b for b in LEAN_BACKENDS if b != "eager"])
@pytest.mark.parametrize("via_op", [False, True])
def test_the_backend_setting_reaches_every_lean_function(
    backend: str, via_op: bool, monkeypatch: pytest.MonkeyPatch, triton_device: str
) -> None:
    dev = _dev(backend)
    spy = _Spy(monkeypatch)
    x = torch.rand(2, 2, 3, 2, 2, dtype=F64, device=dev, requires_grad=True)
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    s, bits = lean.lif(x, RECT, backend=backend)
    s.sum().backward()
    s2, _ = lean.lif(x, TRI, backend=backend)
    s2.sum().backward()
    s3, _ = lean.lif(x, TRI, backend=backend)
    conv = nn.Conv2d(3, 2, 1).double().to(dev)
    out = lean.spike_conv2d(s3.flatten(0, 1), conv, backend=backend)  # packs here
    out.sum().backward()
    assert spy.calls == [
        (backend, "lif_forward_packed"),
        (backend, "lif_backward_bits"),
        (backend, "lif_forward_packed"),
        (backend, "lif_backward"),
        (backend, "lif_forward_packed"),
        (backend, "pack_bits"),
        (backend, "unpack_bits"),
        (backend, "lif_backward"),
    ]
    assert spy.wants == [(True, False), (False, True), (False, True)]


@pytest.mark.parametrize("via_op", [False, True])
def test_what_the_forward_is_asked_to_keep(via_op: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window's bits for the rectangle with a detached reset, the membrane otherwise, and
    nothing without gradients (no grad mode, or an input that does not require grad)."""
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    spy = _Spy(monkeypatch)
    x = torch.rand(2, 3, dtype=F64, requires_grad=True)
    for p in (RECT, TRI, RECT_ATTACHED, TRI_DETACHED):
        lean.lif(x, p)
    with torch.no_grad():
        lean.lif(x, RECT)
        lean.lif(x, TRI)
    lean.lif(x.detach(), RECT)
    lean.lif(x.detach(), TRI)
    assert spy.wants == [(True, False), (False, True), (False, True), (False, True)] + [(False, False)] * 4


def test_auto_runs_the_eager_functions_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    x = torch.rand(2, 2, 3, 2, 2, dtype=F64, requires_grad=True)
    s, _ = lean.lif(x, RECT)
    s.sum().backward()
    out = lean.spike_conv2d(s.detach().flatten(0, 1).requires_grad_(), nn.Conv2d(3, 2, 1).double())
    out.sum().backward()
    assert spy.calls == [
        ("eager", f) for f in ("lif_forward_packed", "lif_backward_bits", "pack_bits", "unpack_bits")
    ]


# -------------------------------------------------------------------- the convolution of spikes


def test_check_conv_messages_in_full() -> None:
    with pytest.raises(
        TypeError, match="^" + re.escape("conv: expected a torch.nn.Conv2d, got Linear") + "$"
    ):
        lean.spike_conv2d(torch.zeros(1, 2, 3, 3), nn.Linear(2, 2))  # type: ignore[arg-type]
    reflect = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")
    message = (
        "conv: the lean ops take zero padding given as numbers, got padding=(1, 1), padding_mode='reflect'"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        lean.spike_conv2d(torch.zeros(1, 2, 3, 3), reflect)
    same = nn.Conv2d(2, 2, 3, padding="same")
    message = (
        "conv: the lean ops take zero padding given as numbers, got padding='same', padding_mode='zeros'"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        lean.spike_conv2d(torch.zeros(1, 2, 3, 3), same)
    assert lean._check_conv(nn.Conv2d(2, 2, 3, padding=(1, 0))) is None


def test_spike_conv_refuses_other_values_than_0_and_1_in_full() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1).double()
    message = "s: spike_conv2d keeps its input as bits, which needs 0s and 1s only"
    for bad in (0.5, 2.0, -1.0):
        s = torch.zeros(1, 2, 4, 4, dtype=F64)
        s[0, 1, 2, 3] = bad
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            lean.spike_conv2d(s.requires_grad_(), conv)
    ok = torch.zeros(1, 2, 4, 4, dtype=F64)
    ok[0, 0, 1, 1] = -0.0
    ok[0, 1, 0, 0] = 1.0
    lean.spike_conv2d(ok.requires_grad_(), conv)
    # without gradients nothing is kept, nothing is checked: the plain convolution
    real = torch.rand(1, 2, 4, 4, dtype=F64)
    with torch.no_grad():
        assert torch.equal(lean.spike_conv2d(real.requires_grad_(), conv), conv(real))
    frozen = nn.Conv2d(2, 2, 3, padding=1).double().requires_grad_(False)
    out = lean.spike_conv2d(real.detach(), frozen)
    assert torch.equal(out, frozen(real)) and out.grad_fn is None


def _conv_case(nhwc: bool, bias: bool, w_nhwc: bool = False) -> tuple[Tensor, nn.Conv2d]:
    g = torch.Generator().manual_seed(17)
    conv = nn.Conv2d(
        4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=bias
    ).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=F64))
        if bias:
            conv.bias.copy_(torch.randn(6, generator=g, dtype=F64))
    if w_nhwc:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    s = (torch.rand(3, 4, 7, 6, generator=g) < 0.4).to(F64)
    if nhwc:
        s = s.contiguous(memory_format=torch.channels_last)
    return s, conv


WANTED = [
    (True, True, True),
    (True, False, False),
    (False, True, True),
    (False, True, False),
    (False, False, True),
]


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("wanted", WANTED)
@pytest.mark.parametrize("via_op", [False, True])
def test_spike_conv_gradients_of_each_subset(
    backend: str,
    wanted: tuple[bool, bool, bool],
    via_op: bool,
    monkeypatch: pytest.MonkeyPatch,
    triton_device: str,
) -> None:
    """Stride, padding, dilation and groups all asymmetric or not 1; the gradients of exactly the
    inputs that want them, equal to the convolution's own (float64)."""
    dev = _dev(backend)
    want_s, want_w, want_b = wanted
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    for bias in (True, False):
        s, conv = _conv_case(nhwc=False, bias=bias)
        s, conv = s.to(dev).requires_grad_(want_s), conv.to(dev)
        conv.weight.requires_grad_(want_w)
        if bias:
            conv.bias.requires_grad_(want_b)
        if not (want_s or want_w):
            continue
        ref = F.conv2d(s, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        w = _weights(ref.shape, 5).to(dev)
        inputs = [t for t, r in ((s, want_s), (conv.weight, want_w), (conv.bias, want_b and bias)) if r]
        ref_grads = torch.autograd.grad((ref * w).sum(), inputs)
        out = lean.spike_conv2d(s, conv, backend=backend)
        assert torch.equal(out, ref)
        grads = torch.autograd.grad((out * w).sum(), inputs)
        for a, b in zip(ref_grads, grads, strict=True):
            _close(a.cpu(), b.cpu())


@pytest.mark.parametrize("via_op", [False, True])
@pytest.mark.parametrize(("nhwc", "w_nhwc"), [(True, False), (False, True), (True, True)])
def test_spike_conv_gradient_layouts(
    via_op: bool, nhwc: bool, w_nhwc: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input's gradient in the input's layout, the weight's in the weight's."""
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    s, conv = _conv_case(nhwc, True, w_nhwc)
    s.requires_grad_()
    ref = F.conv2d(s, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    w = _weights(ref.shape, 6)
    ref_grads = torch.autograd.grad((ref * w).sum(), [s, conv.weight, conv.bias])
    out = lean.spike_conv2d(s, conv)
    grads = torch.autograd.grad((out * w).sum(), [s, conv.weight, conv.bias])
    for a, b in zip(ref_grads, grads, strict=True):
        _close(a, b)
    fmt = {True: torch.channels_last, False: torch.contiguous_format}
    assert grads[0].is_contiguous(memory_format=fmt[nhwc]) and grads[0].is_contiguous() is not nhwc
    assert grads[1].is_contiguous(memory_format=fmt[w_nhwc]) and grads[1].is_contiguous() is not w_nhwc


@pytest.mark.parametrize("via_op", [False, True])
def test_spike_conv_reads_the_bits_it_is_given(via_op: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weight's gradient comes from ``bits``, not from ``s`` (which is not kept): other bits,
    another gradient; the bits of ``lean.lif`` (one row per step of ``T``) are taken as they are."""
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    T, B = 2, 3
    x = _inputs((T, B, 4, 5, 3), 12, scale=2.0).requires_grad_()
    s, bits = lean.lif(x, RECT)
    flat = s.flatten(0, 1)
    conv = nn.Conv2d(4, 2, 3, padding=1).double()
    out = lean.spike_conv2d(flat, conv, bits)
    ref = conv(flat)
    w = _weights(ref.shape, 7)
    ref_gw = torch.autograd.grad((ref * w).sum(), conv.weight)[0]
    gw = torch.autograd.grad((out * w).sum(), conv.weight, retain_graph=True)[0]
    _close(ref_gw, gw)
    other = lean.pack_bits(torch.ones(T, B * 4 * 5 * 3, dtype=F64))
    out2 = lean.spike_conv2d(flat, conv, other)
    gw2 = torch.autograd.grad((out2 * w).sum(), conv.weight)[0]
    ones = torch.ones_like(flat)
    ref_gw2 = torch.autograd.grad((conv(ones) * w).sum(), conv.weight)[0]
    _close(ref_gw2, gw2)


@pytest.mark.parametrize("via_op", [False, True])
def test_spike_conv_keeps_only_the_bits(via_op: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """``N * ceil(C H W / 8)`` bytes (the weight is a parameter: not counted), in a float32
    convolution the gradient of ``s`` in float32."""
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    s, conv = _conv_case(False, True)
    s, conv = s.float(), conv.float()
    x = s.detach().clone().requires_grad_()
    s2 = x * 1  # not a leaf: a plain convolution would keep it
    with saved_tensor_bytes() as counter:
        out = lean.spike_conv2d(s2, conv)
    assert counter.bytes == (3 * 4 * 7 * 6 + 7) // 8  # the batch's bits in one row
    w = _weights(out.shape, 1).float()
    (gx,) = torch.autograd.grad((out * w).sum(), x)
    ref = torch.autograd.grad((conv(x) * w).sum(), x)[0]
    assert gx.dtype == torch.float32
    _close(ref, gx, 1e-6)
    # an odd number of elements; only the input wants a gradient, or only the weight
    odd = (torch.rand(1, 3, 3, 5, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    conv = nn.Conv2d(3, 2, 3, padding=1).double()
    for want_s, want_w in ((True, False), (False, True)):
        conv.requires_grad_(want_w)
        x = odd.clone().requires_grad_(want_s)
        s2 = x * 1
        with saved_tensor_bytes() as counter:
            out = lean.spike_conv2d(s2, conv)
        # the bits, and the weight where it is not a parameter that wants a gradient
        assert counter.bytes == (45 + 7) // 8 + (0 if want_w else conv.weight.numel() * 8)
        inputs = [x] if want_s else [conv.weight, conv.bias]
        grads = torch.autograd.grad((out * out.detach()).sum(), inputs)
        ref_out = conv(x)
        refs = torch.autograd.grad((ref_out * ref_out.detach()).sum(), inputs)
        for a, b in zip(refs, grads, strict=True):
            _close(a, b)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("nhwc", "w_nhwc"), [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("need", [(True, True), (True, False), (False, True)])
def test_spike_conv_fakes_match_the_real_operators(
    bias: bool, nhwc: bool, w_nhwc: bool, need: tuple[bool, bool]
) -> None:
    s, conv = _conv_case(nhwc, bias, w_nhwc)
    bits = lean.pack_bits(_storage_rows(s, s.shape[0], nhwc))
    args = (conv.stride, conv.padding, conv.dilation, conv.groups)
    out = torch.ops.gac_coding.spike_conv2d(s, conv.weight, conv.bias, bits, *args)
    grad = _weights(out.shape, 2)
    if nhwc:
        grad = grad.contiguous(memory_format=torch.channels_last)
    real_b = torch.ops.gac_coding.spike_conv2d_backward(
        grad, bits, conv.weight, list(s.shape), nhwc, F64, bias, *args, *need
    )
    with FakeTensorMode() as mode:
        fs, fw, fbits, fg = (mode.from_tensor(t) for t in (s, conv.weight, bits, grad))
        fbias = None if conv.bias is None else mode.from_tensor(conv.bias)
        fout = torch.ops.gac_coding.spike_conv2d(fs, fw, fbias, fbits, *args)
        fake_b = torch.ops.gac_coding.spike_conv2d_backward(
            fg, fbits, fw, list(s.shape), nhwc, F64, bias, *args, *need
        )
    _same_meta(out, fout)
    assert len(fake_b) == 3
    for r, f in zip(real_b, fake_b, strict=True):
        _same_meta(r, f)
    # what the real backward returns where a gradient is not wanted: an empty tensor
    for r, wanted in zip(real_b, (need[0], need[1], bias), strict=True):
        assert (r.numel() == 0) is not wanted


# ------------------------------------------------------------------------- the eager backend


def test_eager_backend_is_always_available_and_its_constants() -> None:
    assert _lean_eager.available() == (True, "")
    assert _lean_eager.available("cuda") == (True, "")
    assert _lean_eager._GATHER == sum(2 ** (7 * k + 7) for k in range(8))
    assert _lean_eager._ONES == sum(1 << (8 * j) for j in range(8))
    assert _lean_eager._ROUND == sum(0x7F << (8 * j) for j in range(8))
    assert _lean_eager._SPREAD == sum(1 << (8 * j + j) for j in range(8)) - (1 << 64)


def test_signed_word() -> None:
    signed = _lean_eager._signed
    assert signed(0) == 0
    assert signed(2**63 - 1) == 2**63 - 1
    assert signed(2**63) == -(2**63)
    assert signed(2**64 - 1) == -1
    assert signed(0x8040201008040201) == 0x8040201008040201 - 2**64


@pytest.mark.parametrize("little", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, F64])
@pytest.mark.parametrize("length", [8, 13, 1])
def test_eager_unpack_dtype_and_shape(
    little: bool, dtype: torch.dtype, length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_lean_eager, "_LITTLE_ENDIAN", little)
    g = torch.Generator().manual_seed(length)
    x = (torch.rand(3, length, generator=g) < 0.5).to(F64)
    bits = _lean_eager.pack_bits(x)
    assert bits.shape == (3, (length + 7) // 8) and bits.dtype == torch.uint8
    for complement in (False, True):
        out = _lean_eager._unpack(bits, length, dtype, complement)
        assert out.dtype == dtype and out.shape == (3, length)
        assert torch.equal(out.to(F64), 1 - x if complement else x)
    out = _lean_eager.unpack_bits(bits, length, dtype)
    assert out.dtype == dtype and torch.equal(out.to(F64), x)


@pytest.mark.parametrize("little", [True, False])
def test_eager_byte_order_picks_the_unpacking(little: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 64-bit word arithmetic holds on little-endian hosts only: with the flag off (a
    big-endian host) unpacking goes through the byte table, with it on never."""
    monkeypatch.setattr(_lean_eager, "_LITTLE_ENDIAN", little)
    tables: list[tuple[object, ...]] = []
    real = _lean_eager._bit_table
    monkeypatch.setattr(_lean_eager, "_bit_table", lambda *a: tables.append(a) or real(*a))
    x = (torch.rand(2, 11, generator=torch.Generator().manual_seed(1)) < 0.5).to(F64)
    bits = _lean_eager.pack_bits(x)
    assert torch.equal(_lean_eager.unpack_bits(bits, 11, F64), x)
    assert torch.equal(_lean_eager._unpack(bits, 11, F64, complement=True), 1 - x)
    if little:
        assert tables == []
    else:
        assert tables == [(F64, torch.device("cpu"), False), (F64, torch.device("cpu"), True)]


@pytest.mark.parametrize("little", [True, False])
def test_eager_pack_leaves_a_bool_input_as_it_was(little: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole bytes (no padding, L a multiple of 8) and a bool view that starts at an odd byte: the
    caller's tensor is read, never written, and packed as numpy packs it."""
    monkeypatch.setattr(_lean_eager, "_LITTLE_ENDIAN", little)
    g = torch.Generator().manual_seed(5)
    for L in (8, 16, 24):
        x = torch.rand(3, L, generator=g) < 0.5
        before = x.clone()
        assert np.array_equal(_lean_eager.pack_bits(x).numpy(), _packbits(x))
        assert torch.equal(x, before)
    flat = torch.rand(1 + 2 * 16, generator=g) < 0.5
    odd = flat[1:].view(2, 16)  # storage offset 1: no 64-bit view can start there
    before = odd.clone()
    assert np.array_equal(_lean_eager.pack_bits(odd).numpy(), _packbits(odd))
    assert torch.equal(odd, before)


def test_bit_table_by_hand() -> None:
    table = _lean_eager._bit_table(F64, torch.device("cpu"), False)
    assert table.shape == (256, 8) and table.dtype == F64
    assert table[0b10100001].tolist() == [1, 0, 0, 0, 0, 1, 0, 1]
    comp = _lean_eager._bit_table(torch.float32, torch.device("cpu"), True)
    assert comp.dtype == torch.float32 and comp[0b10100001].tolist() == [0, 1, 1, 1, 1, 0, 1, 0]


def test_affine_per_channel_by_hand() -> None:
    """``c = (i // inner) % channels`` along the last dim; alpha and beta brought to x's dtype."""
    channels, inner = 3, 2
    x = torch.arange(2 * 12, dtype=F64).view(2, 12)
    alpha = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float32)
    beta = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float32)
    out = _lean_eager.affine(x, alpha, beta, channels, inner)
    expected = x.clone()
    for i in range(12):
        c = (i // inner) % channels
        expected[:, i] = x[:, i] * float(alpha[c]) + float(beta[c])
    assert out.dtype == F64 and torch.equal(out, expected)
    # the scale and shift are brought to x's dtype, not x promoted to theirs
    for dtype in (torch.float32, torch.float16):
        low = _lean_eager.affine(x.to(dtype), alpha.double(), beta.double(), channels, inner)
        assert low.dtype == dtype and torch.equal(low, expected.to(dtype))
        spikes, _, _, h = _lean_eager.lif_forward_packed(
            x.to(dtype), 0, alpha.double(), beta.double(), channels, inner, 0.5, 1.0, False, True
        )
        assert spikes.dtype == dtype and h.dtype == dtype


def _affine_case(static: bool) -> tuple[Tensor, Tensor, Tensor, int, int, int]:
    T, channels, inner, B = 3, 3, 4, 2
    L = B * channels * inner
    g = torch.Generator().manual_seed(40)
    x = (torch.randint(-8, 17, (L,) if static else (T, L), generator=g) / 8).to(F64)
    alpha = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    beta = torch.tensor([0.25, -0.125, 0.0], dtype=F64)
    return x, alpha, beta, channels, inner, T


def _affine_reference(x: Tensor, alpha: Tensor, beta: Tensor, channels: int, inner: int) -> Tensor:
    i = torch.arange(x.shape[-1])
    c = (i // inner) % channels
    return x * alpha[c] + beta[c]


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("static", [False, True])
def test_lif_forward_packed_with_the_affine_map(backend: str, static: bool, triton_device: str) -> None:
    """Each backend's ``lif_forward_packed`` with BatchNorm's scale and shift against the slow loop
    of the mapped input: spikes, bits, the window's bits, the membrane; ``None`` where not asked."""
    dev = _dev(backend)
    module = LEAN_REGISTRY[backend].module()
    x, alpha, beta, channels, inner, T = _affine_case(static)
    z = _affine_reference(x, alpha, beta, channels, inner)
    ref_s, ref_h = _slow(z, RECT, T if static else None)
    steps = T if static else 0
    for want_sg, want_h in ((True, True), (False, False), (True, False), (False, True)):
        spikes, bits, sg, h = module.lif_forward_packed(
            x.to(dev),
            steps,
            alpha.to(dev),
            beta.to(dev),
            channels,
            inner,
            RECT.decay,
            RECT.threshold,
            want_sg,
            want_h,
        )
        assert torch.equal(spikes.cpu(), ref_s) and spikes.dtype == F64
        assert np.array_equal(bits.cpu().numpy(), _packbits(ref_s))
        if want_sg:
            assert np.array_equal(sg.cpu().numpy(), _packbits((ref_h - RECT.threshold).abs() < 0.5))
        else:
            assert sg is None
        if want_h:
            assert torch.equal(h.cpu(), ref_h)
        else:
            assert h is None
    # without alpha or beta no map
    plain = _slow(x, TRI, T if static else None)[0]
    for a, b in ((None, None), (alpha, None), (None, beta)):
        a = None if a is None else a.to(dev)
        b = None if b is None else b.to(dev)
        spikes, _, _, _ = module.lif_forward_packed(
            x.to(dev), steps, a, b, channels, inner, 0.5, 1.0, False, False
        )
        assert torch.equal(spikes.cpu(), plain)


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.float16])
@pytest.mark.parametrize("T", [1, 3])
def test_lif_backward_bits_against_the_slow_loop(
    backend: str, static: bool, dtype: torch.dtype, T: int, triton_device: str
) -> None:
    """``g_t = grad_s_t w_t + decay g_{t+1} (1 - s_t)``: the slow loop's gradient (rectangle,
    detached reset) from the two bit arrays alone, in grad_s's dtype; summed over the steps for a
    static input."""
    if backend == "cpp" and dtype == torch.float16:
        return  # the C++ backend covers float32 and float64 (the plan never hands it half tensors)
    dev = _dev(backend)
    module = LEAN_REGISTRY[backend].module()
    L = 11
    x = _inputs((L,) if static else (T, L), 50 + T, scale=1.5)
    xs = x.clone().requires_grad_()
    slow_s, slow_h = _slow(xs, RECT, T if static else None)
    grad_s = (torch.randint(-8, 9, (T, L), generator=torch.Generator().manual_seed(T)) / 8).to(F64)
    (ref,) = torch.autograd.grad((slow_s * grad_s).sum(), xs)
    bits = torch.from_numpy(_packbits(slow_s.detach())).to(dev)
    sg = torch.from_numpy(_packbits((slow_h - RECT.threshold).abs() < 0.5)).to(dev)
    g = module.lif_backward_bits(grad_s.to(dtype).to(dev), bits, sg, static, RECT.decay)
    assert g.dtype == dtype and g.shape == ((L,) if static else (T, L))
    tol = 1e-12 if dtype == F64 else 1e-6 if dtype == torch.float32 else 2e-3
    _close(ref, g.cpu().to(F64), tol)


def test_eager_outputs_on_the_inputs_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tensor the eager backend makes is made on its inputs' device: with a stand-in
    ``torch.empty`` that puts tensors made without a device on ``meta`` (as another default
    device would), the same results on the CPU (only a GPU run would otherwise show it)."""
    g = torch.Generator().manual_seed(8)
    x = (torch.rand(3, 13, generator=g) < 0.5).to(F64)
    grad = torch.randn(3, 13, generator=g, dtype=F64)
    bits = _lean_eager.pack_bits(x)

    def run() -> list[Tensor]:
        return [
            _lean_eager.pack_bits(x),
            _lean_eager.unpack_bits(bits, 13, F64),
            _lean_eager._unpack(bits, 13, torch.float32, complement=True),
            _lean_eager.lif_backward_bits(grad, bits, bits, False, 0.5),
            _lean_eager.lif_backward_bits(grad, bits, bits, True, 0.5),
            _lean_eager.lif_backward_bits(grad.half(), bits, bits, False, 0.5),
        ]

    expected = run()
    real_empty = torch.empty

    def empty(*args, device=None, **kw):  # type: ignore[no-untyped-def]
        return real_empty(*args, device="meta" if device is None else device, **kw)

    monkeypatch.setattr(torch, "empty", empty)
    for a, b in zip(expected, run(), strict=True):
        assert b.device.type == "cpu" and torch.equal(a, b)


@pytest.mark.parametrize("little", [True, False])
def test_eager_functions_run_on_the_inputs_device(little: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs on another device than the default one (``meta`` here, as CUDA tensors would be):
    every tensor made along the way follows them (the byte table of the fallback included)."""
    monkeypatch.setattr(_lean_eager, "_LITTLE_ENDIAN", little)
    meta = torch.device("meta")
    bits = torch.zeros(3, 2, dtype=torch.uint8, device=meta)
    outs = [
        _lean_eager.pack_bits(torch.zeros(3, 13, device=meta)),
        _lean_eager.unpack_bits(bits, 13, F64),
        _lean_eager._unpack(bits, 13, torch.float32, complement=True),
        _lean_eager.lif_backward_bits(torch.zeros(3, 13, dtype=F64, device=meta), bits, bits, False, 0.5),
        _lean_eager.lif_backward_bits(
            torch.zeros(3, 13, dtype=torch.float16, device=meta), bits, bits, True, 0.5
        ),
    ]
    assert [t.device for t in outs] == [meta] * 5
    assert [tuple(t.shape) for t in outs] == [(3, 2), (3, 13), (3, 13), (3, 13), (13,)]


def test_eager_backward_bits_computes_half_gradients_in_float32() -> None:
    """A sum over the steps that float16 would round away: float32 arithmetic, rounded once at
    the end. With no carry (decay 0) the steps' gradients are 1 (the last step, added first),
    then 2^-11 twice: in float16 each 2^-11 is half a unit of 1 and rounds back to 1 (ties to
    even); in float32 the sum is 1 + 2^-10, which float16 holds exactly."""
    T, L = 3, 1
    grad_s = torch.tensor([[2.0**-11], [2.0**-11], [1.0]], dtype=torch.float16)
    ones = torch.tensor([[1]] * T, dtype=torch.uint8)  # window open at every step
    zeros = torch.zeros(T, 1, dtype=torch.uint8)  # no spikes
    for dtype in (torch.float16, torch.bfloat16):
        g = _lean_eager.lif_backward_bits(grad_s.to(dtype), zeros, ones, True, 0.0)
        assert g.dtype == dtype and g.shape == (L,)
        assert g.item() == float(torch.tensor(1 + 2**-10, dtype=dtype))
    assert _lean_eager.lif_backward_bits(grad_s, zeros, ones, True, 0.0).item() == 1 + 2**-10
    # the steps themselves: each in float16 (nothing to round here)
    g = _lean_eager.lif_backward_bits(grad_s, zeros, ones, False, 0.0)
    assert g.dtype == torch.float16 and g.flatten().tolist() == [2.0**-11, 2.0**-11, 1.0]


# ---------------------------------------------------------------------------- the C++ backend


def test_cpp_name_follows_the_source_flags_and_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = _lean_cpp._EXTENSION.name()
    assert re.fullmatch(r"gac_coding_lean_[0-9a-f]{12}", name)
    assert _lean_cpp._EXTENSION.name() == name
    assert name != _cpp._EXTENSION.name()
    assert _lean_cpp.SOURCE.name == "lean.cpp" and _lean_cpp.SOURCE.parent.name == "csrc"
    assert _lean_cpp.SOURCE.parent.parent == Path(_lean_cpp.__file__).parent
    edited = tmp_path / "lean.cpp"
    edited.write_bytes(_lean_cpp.SOURCE.read_bytes())
    monkeypatch.setattr(_lean_cpp._EXTENSION, "source", edited)
    moved = _lean_cpp._EXTENSION.name()
    assert moved != name  # another location
    edited.write_bytes(edited.read_bytes() + b"\n")
    assert _lean_cpp._EXTENSION.name() not in (name, moved)
    monkeypatch.setattr(_cpp, "_FLAGS", ["-O0"])
    flags = _lean_cpp._EXTENSION.name()
    assert flags not in (name, moved)
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert _lean_cpp._EXTENSION.name() != flags


def test_cpp_is_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked: list[tuple[str, bool]] = []

    def build_dir(name: str, verbose: bool) -> str:
        asked.append((name, verbose))
        return str(tmp_path)

    fake = types.SimpleNamespace(_get_build_directory=build_dir)
    monkeypatch.setattr(_cpp, "_cpp_extension", lambda: fake)
    monkeypatch.setattr(_lean_cpp._EXTENSION, "module", None)
    assert _lean_cpp.is_built() is False
    assert asked == [(_lean_cpp._EXTENSION.name(), False)]
    (tmp_path / f"{_lean_cpp._EXTENSION.name()}.so").write_bytes(b"")
    assert _lean_cpp.is_built() is True
    (tmp_path / "other.so").write_bytes(b"")
    (tmp_path / f"{_lean_cpp._EXTENSION.name()}.so").unlink()
    assert _lean_cpp.is_built() is False

    def no_dir(name: str, verbose: bool) -> str:
        raise OSError("no cache")

    monkeypatch.setattr(_cpp, "_cpp_extension", lambda: types.SimpleNamespace(_get_build_directory=no_dir))
    assert _lean_cpp.is_built() is False
    monkeypatch.setattr(_lean_cpp._EXTENSION, "module", types.ModuleType("built"))
    assert _lean_cpp.is_built() is True


def test_cpp_available_and_build_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lean_cpp._EXTENSION, "error", "it broke")
    assert _lean_cpp.build_error() == "it broke"
    assert _lean_cpp.available() == (False, "it broke")
    monkeypatch.setattr(_lean_cpp._EXTENSION, "error", None)
    assert _lean_cpp.build_error() is None
    for built, toolchain, expected in [
        (True, False, (True, "")),
        (False, True, (True, "")),
        (True, True, (True, "")),
        (False, False, (False, "no C++ compiler or ninja found to build the kernels")),
    ]:
        monkeypatch.setattr(_lean_cpp._EXTENSION, "is_built", lambda b=built: b)
        monkeypatch.setattr(_cpp, "toolchain_available", lambda t=toolchain: t)
        assert _lean_cpp.available() == expected
        assert _lean_cpp.available("cpu") == expected


def test_cpp_load_builds_once_and_remembers_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    module = types.ModuleType("fake_lean")
    fake = types.SimpleNamespace(load=lambda **kw: calls.append(kw) or module)
    monkeypatch.setattr(_cpp, "_cpp_extension", lambda: fake)
    monkeypatch.setattr(_lean_cpp._EXTENSION, "module", None)
    monkeypatch.setattr(_lean_cpp._EXTENSION, "error", None)
    assert _lean_cpp.load() is module
    assert _lean_cpp.load() is module
    assert calls == [
        {
            "name": _lean_cpp._EXTENSION.name(),
            "sources": [str(_lean_cpp.SOURCE)],
            "extra_cflags": _cpp._FLAGS,
            "verbose": False,
        }
    ]
    assert _lean_cpp._kernels() is module

    def broken(**kw: object) -> None:
        calls.append(kw)
        raise RuntimeError("Error building extension\nlean.cpp:1: error: nope")

    monkeypatch.setattr(_cpp, "_cpp_extension", lambda: types.SimpleNamespace(load=broken))
    monkeypatch.setattr(_lean_cpp._EXTENSION, "module", None)
    calls.clear()
    assert _lean_cpp.load() is None
    summary = _cpp._summary(RuntimeError("Error building extension\nlean.cpp:1: error: nope"))
    assert _lean_cpp.build_error() == summary and summary
    assert _lean_cpp.load() is None and len(calls) == 1  # not retried
    with pytest.raises(
        RuntimeError, match="^" + re.escape(f"the C++ lean kernels could not be built ({summary})") + "$"
    ):
        _lean_cpp._kernels()
    with pytest.raises(RuntimeError, match="could not be built"):
        _lean_cpp.pack_bits(torch.zeros(1, 3))
    assert _lean_cpp.available() == (False, summary)


class _FakeLeanModule:
    """Stand-in compiled module: records what each function receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def pack_bits(self, x: Tensor) -> Tensor:
        self.calls.append(("pack_bits", (x,)))
        return _lean_eager.pack_bits(x)

    def unpack_bits(self, bits: Tensor, length: int, dtype: torch.dtype) -> Tensor:
        self.calls.append(("unpack_bits", (bits, length, dtype)))
        return _lean_eager.unpack_bits(bits, length, dtype)

    def lif_forward_packed(self, *args: object):  # type: ignore[no-untyped-def]
        self.calls.append(("lif_forward_packed", args))
        # the compiled module returns tensors in all four places
        return torch.zeros(1), torch.ones(1), torch.full((1,), 2.0), torch.full((1,), 3.0)

    def lif_backward_bits(self, *args: object) -> Tensor:
        self.calls.append(("lif_backward_bits", args))
        return torch.full((1,), 4.0)


def test_cpp_functions_pass_their_arguments_and_convert_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeLeanModule()
    monkeypatch.setattr(_lean_cpp._EXTENSION, "module", fake)
    monkeypatch.setattr(_lean_cpp._EXTENSION, "error", None)
    f32 = torch.float32
    for dtype, passed in [(f32, f32), (F64, F64), (torch.float16, f32), (torch.bfloat16, f32),
                          (torch.bool, f32), (torch.uint8, f32)]:  # fmt: skip
        fake.calls.clear()
        x = torch.tensor([[1, 0, 1]]).to(dtype)
        assert _lean_cpp.pack_bits(x).tolist() == [[0b101]]
        ((name, (arg,)),) = fake.calls
        assert name == "pack_bits" and arg.dtype == passed and torch.equal(arg.to(F64), x.to(F64))
        if dtype == passed:
            assert arg is x
    bits = torch.tensor([[0b101]], dtype=torch.uint8)
    for dtype, passed in [(torch.float32, torch.float32), (F64, F64), (torch.float16, torch.float32),
                          (torch.bfloat16, torch.float32)]:  # fmt: skip
        fake.calls.clear()
        out = _lean_cpp.unpack_bits(bits, 3, dtype)
        assert out.dtype == dtype and out.tolist() == [[1.0, 0.0, 1.0]]
        ((name, (b, length, d)),) = fake.calls
        assert name == "unpack_bits" and b is bits and length == 3 and d == passed
    fake.calls.clear()
    x = torch.zeros(2, 4)
    alpha, beta = torch.ones(2), torch.zeros(2)
    for want_sg, want_h in [(True, True), (False, False), (True, False), (False, True)]:
        spikes, b, sg, h = _lean_cpp.lif_forward_packed(x, 0, alpha, beta, 2, 2, 0.5, 1.0, want_sg, want_h)
        assert spikes.tolist() == [0.0] and b.tolist() == [1.0]
        assert (sg.tolist() == [2.0]) if want_sg else sg is None
        assert (h.tolist() == [3.0]) if want_h else h is None
        name, args = fake.calls[-1]
        assert name == "lif_forward_packed"
        assert args[0] is x and args[2] is alpha and args[3] is beta
        assert args[1:2] == (0,) and args[4:] == (2, 2, 0.5, 1.0, want_sg, want_h)
    gs, sgb = torch.zeros(2, 4), torch.zeros(2, 1, dtype=torch.uint8)
    assert _lean_cpp.lif_backward_bits(gs, bits, sgb, True, 0.25).tolist() == [4.0]
    name, args = fake.calls[-1]
    assert name == "lif_backward_bits" and args[0] is gs and args[1] is bits and args[2] is sgb
    assert args[3:] == (True, 0.25)


def test_cpp_kernels_pack_half_and_bool_inputs() -> None:
    if not HAS_CPP:  # without a toolchain: usable only if built before (else the eager one runs)
        assert _lean_cpp.available()[0] is _lean_cpp.is_built()
        return
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(3, 21, generator=g) < 0.5).to(F64)
    for dtype in (torch.float16, torch.bfloat16, torch.bool, F64, torch.float32):
        assert np.array_equal(_lean_cpp.pack_bits(x.to(dtype)).numpy(), _packbits(x))
    bits = _lean_cpp.pack_bits(x)
    for dtype in (torch.float16, torch.bfloat16, F64, torch.float32):
        out = _lean_cpp.unpack_bits(bits, 21, dtype)
        assert out.dtype == dtype and torch.equal(out.to(F64), x)


# ------------------------------------------------------------------------- the Triton backend


def test_triton_blocks_by_hand() -> None:
    assert _lean_triton.BYTES == 128
    for L, blocks in [(0, 1), (1, 1), (8, 1), (1024, 1), (1025, 2), (2048, 2), (2049, 3), (8 * 128 * 5, 5)]:
        assert _lean_triton._blocks(L) == blocks, L
        assert type(_lean_triton._blocks(L)) is int


def test_triton_available_is_the_neuron_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    monkeypatch.setattr(_triton, "available", lambda device=None: seen.append(device) or (False, "why"))
    assert _lean_triton.available("cuda:1") == (False, "why")
    assert _lean_triton.available() == (False, "why")
    assert seen == ["cuda:1", None]


@contextlib.contextmanager
def _interpret(value: bool) -> Iterator[None]:
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = value
        yield


def test_triton_load_records_the_interpreter_setting_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _lean_triton._load()  # decorated as the rest of the suite needs them
    from gac_coding.ops import _lean_triton_kernels

    monkeypatch.setattr(_lean_triton, "_kernels", None)
    monkeypatch.setattr(_lean_triton_kernels, "_INTERPRETED", None, raising=False)
    monkeypatch.setattr(_triton, "_interpret_requested", lambda: False)
    assert _lean_triton._load() is _lean_triton_kernels
    assert _lean_triton_kernels._INTERPRETED is False
    monkeypatch.setattr(_triton, "_interpret_requested", lambda: True)
    assert _lean_triton._load() is _lean_triton_kernels  # loaded: not read again
    assert _lean_triton_kernels._INTERPRETED is False and _lean_triton._kernels is _lean_triton_kernels
    monkeypatch.setattr(_lean_triton, "_kernels", None)
    assert _lean_triton._load() is _lean_triton_kernels
    assert _lean_triton_kernels._INTERPRETED is True


_TRITON_KERNELS = ("pack_kernel", "unpack_kernel", "lif_packed_kernel", "lif_backward_bits_kernel")


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> LaunchRecording:
    """Stand-ins for the lean kernels, launched as compiled ones on a CPU counted as usable."""
    monkeypatch.setattr(_triton, "_usable", {"cpu"})
    return record_launches(monkeypatch, _lean_triton, _TRITON_KERNELS)


def test_triton_launch_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = record_launches(monkeypatch, _lean_triton, _TRITON_KERNELS, interpreted=True)
    with _interpret(False):
        _lean_triton._launch("pack_kernel", (2, 3), torch.device("cpu"), "a", 5, BYTES=128)
        assert triton.knobs.runtime.interpret is False  # put back
    assert rec.calls == [("pack_kernel", (2, 3), ("a", 5), {"BYTES": 128}, True)]
    assert rec.entered == []  # an interpreted launch enters no CUDA device
    rec2 = record_launches(monkeypatch, _lean_triton, _TRITON_KERNELS)
    target = torch.device("cuda", 1)
    with _interpret(False):
        _lean_triton._launch("unpack_kernel", (1, 4), target, "x", N=5)
    assert rec2.entered == [target]
    assert rec2.calls == [("unpack_kernel", (1, 4), ("x",), {"N": 5}, False)]


def test_triton_pack_launch(recording: LaunchRecording) -> None:
    x = torch.zeros(3, 2000, dtype=torch.float16)
    out = _lean_triton.pack_bits(x)
    assert out.shape == (3, 250) and out.dtype == torch.uint8
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "pack_kernel" and grid == (3, 2)
    same_args(args, (x, out, 2000, 250))
    same_meta(meta, {"BYTES": 128})
    assert recording.entered == [x.device]
    recording.calls.clear()
    for empty in (torch.zeros(0, 9), torch.zeros(2, 0)):
        out = _lean_triton.pack_bits(empty)
        assert out.shape == (empty.shape[0], (empty.shape[1] + 7) // 8)
    assert recording.calls == []
    with pytest.raises(
        TypeError, match=r"^x: expected float16, bfloat16, float32 or float64, got dtype torch.int64$"
    ):
        _lean_triton.pack_bits(torch.zeros(2, 3, dtype=torch.long))


def test_triton_unpack_launch_and_messages(recording: LaunchRecording) -> None:
    bits = torch.zeros(2, 9, dtype=torch.uint8).t()  # not contiguous: copied for the kernel
    out = _lean_triton.unpack_bits(bits, 17, torch.bfloat16)
    assert out.shape == (9, 17) and out.dtype == torch.bfloat16
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "unpack_kernel" and grid == (9, 1)
    assert args[0].is_contiguous() and torch.equal(args[0], bits)
    same_args(args[1:], (out, 17, 2))
    same_meta(meta, {"BYTES": 128})
    assert recording.entered == [bits.device]
    recording.calls.clear()
    assert _lean_triton.unpack_bits(torch.zeros(0, 2, dtype=torch.uint8), 9, F64).shape == (0, 9)
    assert _lean_triton.unpack_bits(torch.zeros(2, 0, dtype=torch.uint8), 0, F64).shape == (2, 0)
    assert recording.calls == []
    message = "bits: expected a uint8 tensor [R, L8], got {} {}"
    with pytest.raises(ValueError, match="^" + re.escape(message.format(torch.int8, (2, 1))) + "$"):
        _lean_triton.unpack_bits(torch.zeros(2, 1, dtype=torch.int8), 3, F64)
    with pytest.raises(ValueError, match="^" + re.escape(message.format(torch.uint8, (2,))) + "$"):
        _lean_triton.unpack_bits(torch.zeros(2, dtype=torch.uint8), 3, F64)
    with pytest.raises(
        TypeError,
        match="^" + re.escape("dtype: expected float16, bfloat16, float32 or float64, got torch.int32") + "$",
    ):
        _lean_triton.unpack_bits(torch.zeros(2, 1, dtype=torch.uint8), 3, torch.int32)


def test_triton_unpack_checks_the_device_can_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_triton, "_usable", set())
    monkeypatch.setattr(_triton, "available", lambda device=None: (False, "no way"))
    with pytest.raises(RuntimeError, match=r"^gac_coding triton backend: no way$"):
        _lean_triton.unpack_bits(torch.zeros(2, 1, dtype=torch.uint8), 3, F64)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize(("want_sg", "want_h"), [(True, False), (False, True), (False, False)])
def test_triton_lif_launch(
    recording: LaunchRecording, static: bool, affine: bool, want_sg: bool, want_h: bool
) -> None:
    T, L = 3, 2050  # 257 bytes a step: 3 programs
    x = torch.zeros((L,) if static else (T, L), dtype=torch.float16)
    alpha = torch.ones(5, dtype=F64) if affine else None
    beta = torch.zeros(5, dtype=F64) if affine else None
    spikes, bits, sg, h = _lean_triton.lif_forward_packed(
        x, T if static else 0, alpha, beta, 5 if affine else 0, 410 if affine else 0, 1, 0.75, want_sg, want_h
    )
    assert spikes.shape == (T, L) and spikes.dtype == torch.float16
    assert bits.shape == (T, 257) and bits.dtype == torch.uint8
    assert sg is None if not want_sg else (sg.shape == (T, 257) and sg.dtype == torch.uint8)
    assert h is None if not want_h else (h.shape == (T, L) and h.dtype == torch.float32)
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "lif_packed_kernel" and grid == (1, 3)
    same_args(args[:1], (x,))
    if affine:
        assert args[1] is alpha and args[2] is beta
    else:
        assert args[1] is x and args[2] is x
    same_args(args[3:], (spikes, bits, sg if want_sg else bits, h if want_h else spikes, T, L, 257,
                     5 if affine else 1, 410 if affine else 1))  # fmt: skip
    same_meta(meta, {"DECAY": 1.0, "TH": 0.75, "STATIC": static, "AFFINE": affine, "WANT_SG": want_sg,
                 "WANT_H": want_h, "CT": tl.float32, "BYTES": 128})  # fmt: skip
    assert recording.entered == [x.device]


def test_triton_lif_launch_float64_and_flags_as_bools(recording: LaunchRecording) -> None:
    x = torch.zeros(2, 16, dtype=F64)
    _, bits, sg, h = _lean_triton.lif_forward_packed(x, 0, None, torch.ones(1), 1, 1, 0.5, 1, 1, 0)  # type: ignore[arg-type]
    assert sg is not None and h is None
    assert bits.shape == (2, 2) and sg.shape == (2, 2)
    ((_, grid, args, meta, _),) = recording.calls
    assert grid == (1, 1) and args[1] is x and args[2] is x  # no alpha: no map
    same_meta(meta, {"DECAY": 0.5, "TH": 1.0, "STATIC": False, "AFFINE": False, "WANT_SG": True,
                 "WANT_H": False, "CT": tl.float64, "BYTES": 128})  # fmt: skip


def test_triton_lif_messages_and_empty_inputs(recording: LaunchRecording) -> None:
    x = torch.zeros(2, 12)
    a, b = torch.ones(3), torch.zeros(3)
    for channels, inner in [(5, 1), (0, 1), (3, 0), (3, 3)]:
        message = f"channels, inner: {channels} x {inner} does not divide a step of 12"
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            _lean_triton.lif_forward_packed(x, 0, a, b, channels, inner, 0.5, 1.0, False, False)
    _lean_triton.lif_forward_packed(x, 0, a, b, 3, 4, 0.5, 1.0, False, False)
    _lean_triton.lif_forward_packed(x, 0, a, b, 1, 12, 0.5, 1.0, False, False)
    _lean_triton.lif_forward_packed(x, 0, a, b, 12, 1, 0.5, 1.0, False, False)
    meta = torch.device("meta")
    with pytest.raises(ValueError, match=r"^alpha: expected a tensor on cpu, got one on meta$"):
        _lean_triton.lif_forward_packed(x, 0, a.to(meta), b, 3, 4, 0.5, 1.0, False, False)
    with pytest.raises(ValueError, match=r"^beta: expected a tensor on cpu, got one on meta$"):
        _lean_triton.lif_forward_packed(x, 0, a, b.to(meta), 3, 4, 0.5, 1.0, False, False)
    with pytest.raises(TypeError, match=r"^x: expected float16"):
        _lean_triton.lif_forward_packed(x.long(), 0, None, None, 1, 1, 0.5, 1.0, False, False)
    recording.calls.clear()
    for empty, steps, shape in [
        (torch.zeros(0, 4), 0, (0, 0)),
        (torch.zeros(3, 0), 0, (3, 0)),
        (torch.zeros(0), 2, (2, 0)),
    ]:
        spikes, bits, sg, h = _lean_triton.lif_forward_packed(
            empty, steps, None, None, 1, 1, 0.5, 1.0, True, True
        )
        assert spikes.shape == shape and h.shape == shape and bits.shape == (shape[0], (shape[1] + 7) // 8)
        assert sg.shape == bits.shape
    assert recording.calls == []


@pytest.mark.parametrize("static", [False, True])
def test_triton_backward_bits_launch_and_messages(recording: LaunchRecording, static: bool) -> None:
    T, L = 3, 1030  # 129 bytes a step: 2 programs
    grad_s = torch.zeros(T, L, dtype=torch.float32)
    bits = torch.zeros(T, 129, dtype=torch.uint8)
    sg = torch.zeros(129, T, dtype=torch.uint8).t()
    gx = _lean_triton.lif_backward_bits(grad_s, bits, sg, static, 0.25)
    assert gx.shape == ((L,) if static else (T, L)) and gx.dtype == torch.float32
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "lif_backward_bits_kernel" and grid == (1, 2)
    assert args[0] is grad_s and args[1] is bits and args[2].is_contiguous() and torch.equal(args[2], sg)
    same_args(args[3:], (gx, T, L, 129))
    same_meta(meta, {"DECAY": 0.25, "STATIC": static, "CT": tl.float32, "BYTES": 128})
    assert recording.entered == [grad_s.device]
    recording.calls.clear()
    for name, bad in [("bits", bits.to(torch.int8)), ("bits", bits[:, :-1]), ("bits", bits.to("meta"))]:
        message = f"{name}: expected uint8 [{T}, 129] on cpu, got {bad.dtype} {tuple(bad.shape)}"
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            _lean_triton.lif_backward_bits(grad_s, bad, bits, static, 0.25)
    with pytest.raises(
        TypeError, match=r"^grad_s: expected float16, bfloat16, float32 or float64, got dtype torch.int64$"
    ):
        _lean_triton.lif_backward_bits(grad_s.long(), bits, bits, static, 0.25)
    message = f"sg: expected uint8 [{T}, 129] on cpu, got torch.uint8 (3, 128)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        _lean_triton.lif_backward_bits(grad_s, bits, bits[:, 1:], static, 0.25)
    # another shape of the same number of bytes is accepted
    _lean_triton.lif_backward_bits(grad_s, bits.reshape(-1), sg, static, 0.25)
    recording.calls.clear()
    # no steps: nothing launched, and a sum over no steps is 0 (the fresh tensor filled with NaN
    # here, so that only an explicit zero passes)
    real_empty = torch.empty

    def nan_empty(*args, **kw):  # type: ignore[no-untyped-def]
        return real_empty(*args, **kw).fill_(float("nan"))

    no_bits = torch.zeros(0, 1, dtype=torch.uint8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "empty", nan_empty)
        empty = _lean_triton.lif_backward_bits(torch.zeros(0, 5), no_bits, no_bits, static, 0.5)
    assert empty.shape == ((5,) if static else (0, 5))
    if static:
        assert empty.tolist() == [0.0] * 5
    assert recording.calls == []


def test_triton_outputs_on_the_inputs_device(recording: LaunchRecording) -> None:
    """Made on the inputs' device, not the default one (which only a GPU run would show)."""
    with torch.device("meta"):
        x = torch.zeros(2, 9, device="cpu")
        assert _lean_triton.pack_bits(x).device.type == "cpu"
        bits = torch.zeros(2, 2, dtype=torch.uint8, device="cpu")
        assert _lean_triton.unpack_bits(bits, 9, F64).device.type == "cpu"
        outs = _lean_triton.lif_forward_packed(x, 0, None, None, 1, 1, 0.5, 1.0, True, True)
        assert all(t.device.type == "cpu" for t in outs)
        assert _lean_triton.lif_backward_bits(x, bits, bits, False, 0.5).device.type == "cpu"
        assert _lean_triton.lif_backward_bits(x, bits, bits, True, 0.5).device.type == "cpu"


def test_triton_kernels_in_the_interpreter_across_blocks(triton_device: str) -> None:
    """The real kernels (interpreted) on rows of more than one program: the eager backend's bits,
    spikes, window and membrane, and the slow loop's gradient."""
    L = 1030
    g = torch.Generator().manual_seed(77)
    x = (torch.randint(0, 13, (2, L), generator=g) / 8).to(F64)
    bits = _lean_triton.pack_bits(x.to(triton_device)).cpu()
    assert np.array_equal(bits.numpy(), _packbits(x))
    back = _lean_triton.unpack_bits(bits.to(triton_device), L, torch.float16).cpu()
    assert back.dtype == torch.float16 and torch.equal(back.to(F64), (x != 0).to(F64))
    got = _lean_triton.lif_forward_packed(x.to(triton_device), 0, None, None, 1, 1, 0.5, 1.0, True, True)
    want = _lean_eager.lif_forward_packed(x, 0, None, None, 1, 1, 0.5, 1.0, True, True)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.cpu(), b)


# ------------------------------------------------------------------ what the backward is handed


@pytest.mark.parametrize("via_op", [False, True], ids=["function", "operator"])
def test_the_backward_context(via_op: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each forward records for its backward: static or not, the layout of a step, the LIF's
    settings with the backend, the tensors kept; the convolution's input shape, layout and dtype,
    its settings and backend."""
    if via_op:
        monkeypatch.setattr(_lean_lif, "_tracing", lambda: True)
    x = _nhwc_steps(torch.rand(2, 2, 3, 2, 2, dtype=F64)).requires_grad_()
    s, bits = lean.lif(x, RECT, backend=" Eager ")
    node = s.grad_fn
    assert ("lean_lif" in type(node).__name__) is via_op
    assert ("_LeanLIFFunction" in type(node).__name__) is not via_op
    assert node.static is False and node.nhwc is True
    assert node.lif == (RECT.decay, RECT.threshold, 1, True, "eager" if not via_op else " Eager ")
    kept_bits, sg = node.saved_tensors
    assert torch.equal(kept_bits, bits) and sg.dtype == torch.uint8 and sg.shape == bits.shape
    one = x[0].detach().requires_grad_()
    s1, _ = lean.lif(one, TRI, steps=1)
    node = s1.grad_fn
    assert node.static is True and node.nhwc is True and node.lif == (0.5, 1.0, 0, False, "auto")
    kept = node.saved_tensors
    assert kept[-1].shape == (1, *one.shape) and kept[-1].dtype == F64
    flat = s.detach().flatten(0, 1).contiguous(memory_format=torch.channels_last).requires_grad_()
    conv = nn.Conv2d(
        3, 4, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 1), groups=1, bias=False
    ).double()
    out = lean.spike_conv2d(flat, conv.to(memory_format=torch.channels_last), backend="eager")
    node = out.grad_fn
    assert ("spike_conv2d" in type(node).__name__) is via_op
    assert ("_SpikeConvFunction" in type(node).__name__) is not via_op
    assert node.s == ((4, 3, 2, 2), True, F64)
    assert node.conv == (False, (2, 1), (1, 0), (1, 1), 1)
    assert node.backend == "eager"
    kept_bits, weight = node.saved_tensors
    assert kept_bits.shape == (1, (4 * 3 * 2 * 2 + 7) // 8) and weight is conv.weight
    # the backend left out: the default setting
    assert lean.spike_conv2d(flat, conv).grad_fn.backend == "auto"
