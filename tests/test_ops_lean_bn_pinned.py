"""Pinned tests of BatchNorm + LIF as one lean op (``ops/_lean_bn.py``) and the helpers the lean ops
share (``ops/_lean_common.py``).

``bn_lif`` is judged against an independent slow formulation in float64: a copy of the BatchNorm
module run as torch runs it, the average pooling, and the step-by-step LIF of
``slow_reference.py``; spikes and bits equal, every wanted gradient to 1e-12 relative (``None``
for the others), the running statistics and ``num_batches_tracked`` as the module updates them,
on each backend, in training and eval mode, through the autograd Function (eager) and the custom
operator (what ``torch.compile`` runs). What is kept for the backward pass is recorded with
``saved_tensors_hooks`` and compared with the list worked out by hand; the helpers are checked one
by one against hand-computed values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F
from slow_reference import slow_lif
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from triton_device import triton_kernel_device

import gac_coding as gac
from gac_coding.ops import (
    LIFParams,
    _cpp,
    _lean_bn,
    _lean_common,
    _lean_cpp,
    _lean_eager,
    _lean_triton,
    _triton,
    backends,
    lean,
)

F64 = torch.float64
CL = torch.channels_last
CIFAR = gac.RECIPES["cifar"]  # triangle, reset not detached: the backward recomputes the membrane
IMAGENET = gac.RECIPES["imagenet"]  # rectangle, detached reset: the backward reads two bits
# neither recipe's numbers, so that a decay read for a threshold (or the other way) shows
PARAMS = {
    "cifar": CIFAR,
    "imagenet": IMAGENET,
    "tri_detach": LIFParams(0.75, 0.8, "triangle", True),
    "rect_attached": LIFParams(0.6, 1.2, "rectangle", False),
    "rect_detach": LIFParams(0.4, 0.9, "rectangle", True),
}
BACKENDS = ["eager", "triton", *(["cpp"] if _cpp.toolchain_available() else [])]
CPU = torch.device("cpu")


_TRITON_DEVICE = ["cpu"]


@pytest.fixture(scope="module", autouse=True)
def _triton_loaded() -> None:
    """Where the triton kernels run: CPU tensors in triton's interpreter, unless this process
    compiled them for CUDA already."""
    _TRITON_DEVICE[0] = triton_kernel_device()


def _dev(backend: str) -> str:
    return _TRITON_DEVICE[0] if backend.startswith("triton") else "cpu"


_MODULES = {"eager": _lean_eager, "cpp": _lean_cpp, "triton": _lean_triton}
_FUNCTIONS = ("pack_bits", "unpack_bits", "lif_forward_packed", "lif_backward_bits")


class Calls(list):
    """``(backend, function)`` of each call; ``affine``: whether each lif_forward_packed call was
    handed BatchNorm's scale and shift (applied in the kernel)."""

    affine: list[bool]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """``(backend, function)`` of each call of a lean backend module's four functions (which
    backend ran: a fallback to eager gives the same numbers)."""
    record = Calls()
    record.affine = []

    def recorder(name: str, function: str, fn):  # type: ignore[no-untyped-def]
        def wrapped(*args):  # type: ignore[no-untyped-def]
            record.append((name, function))
            if function == "lif_forward_packed":
                record.affine.append(args[2] is not None and args[3] is not None)
            return fn(*args)

        return wrapped

    for name, module in _MODULES.items():
        for function in _FUNCTIONS:
            monkeypatch.setattr(module, function, recorder(name, function, getattr(module, function)))
    return record


def _rel_err(a: Tensor, b: Tensor) -> float:
    scale = a.abs().max().item() if a.numel() else 0.0
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    return 0.0 if diff == 0 else diff / max(scale, 1e-300)


def _pack_rows(x: Tensor) -> Tensor:
    """``x [R, L]`` (nonzero: 1) packed by hand: bit ``i % 8`` of byte ``i // 8`` holds element ``i``."""
    R, L = x.shape
    out = torch.zeros(R, (L + 7) // 8, dtype=torch.int64)
    for i in range(L):
        out[:, i // 8] += (x[:, i] != 0).long() << (i % 8)
    return out.to(torch.uint8)


def _storage_rows(t: Tensor, T: int, nhwc: bool) -> Tensor:
    """``[T * B, C, H, W]`` as ``[T, L]`` in the order of channels-last (``nhwc``) or contiguous storage."""
    t = t.permute(0, 2, 3, 1) if nhwc else t
    return t.reshape(T, -1)


# ----------------------------------------------------------------------------- the reference


@dataclass(frozen=True)
class Case:
    backend: str = "eager"
    params: str = "cifar"
    training: bool = True
    pool: int = 0
    channels_last: bool = False
    affine: bool = True
    track: bool = True
    momentum: float | None = 0.1
    T: int = 2
    B: int = 2
    C: int = 3
    H: int = 4
    W: int = 5
    wanted: tuple[bool, bool, bool] = (True, True, True)
    op: bool = False  # through the custom operator (what torch.compile runs) rather than the Function

    def __str__(self) -> str:
        d = Case()
        return ",".join(f"{k}={v}" for k, v in vars(self).items() if v != getattr(d, k)) or "default"


def _bn(case: Case, seed: int, on: bool = False) -> nn.BatchNorm2d:
    """The module with drawn parameters and statistics (``on``: on the case's backend's device)."""
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(case.C, momentum=case.momentum, affine=case.affine, track_running_stats=case.track)
    bn = bn.double()
    with torch.no_grad():
        if case.affine:
            bn.weight.copy_(torch.rand(case.C, generator=g, dtype=F64) + 0.5)
            bn.bias.copy_(torch.randn(case.C, generator=g, dtype=F64) * 0.3)
        if case.track:
            bn.running_mean.copy_(torch.randn(case.C, generator=g, dtype=F64) * 0.5)
            bn.running_var.copy_(torch.rand(case.C, generator=g, dtype=F64) + 0.5)
            bn.num_batches_tracked.fill_(3)
    bn.train(case.training)
    return bn.to(_dev(case.backend)) if on else bn


def _inputs(case: Case, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(case.T * case.B, case.C, case.H, case.W, generator=g, dtype=F64) * 1.5 + 0.2
    return y.contiguous(memory_format=CL) if case.channels_last else y


def _grad_targets(y: Tensor, bn: nn.BatchNorm2d, wanted: Sequence[bool]) -> list[Tensor | None]:
    out: list[Tensor | None] = [y]
    out += [bn.weight, bn.bias]
    for t, r in zip(out, wanted, strict=True):
        if t is not None:
            t.requires_grad_(r)
    return out


def _grads(loss: Tensor, targets: Sequence[Tensor | None]) -> list[Tensor | None]:
    wanting = [t for t in targets if t is not None and t.requires_grad]
    got = iter(torch.autograd.grad(loss, wanting)) if wanting else iter(())
    return [next(got) if t is not None and t.requires_grad else None for t in targets]


def _reference(case: Case, bn: nn.BatchNorm2d, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor, list]:
    """``(spikes, membranes [T, L in storage order], gradients)`` of BN, pooling, the slow LIF."""
    p = PARAMS[case.params]
    targets = _grad_targets(y, bn, case.wanted)
    z = bn(y)
    z = F.avg_pool2d(z, case.pool) if case.pool else z
    s, h = slow_lif(z.view(case.T, case.B, *z.shape[1:]), p.decay, p.threshold, p.surrogate, p.detach_reset)
    s = s.flatten(0, 1)
    grads = _grads((s * w).sum(), targets) if s.requires_grad else [None, None, None]
    return s.detach(), _storage_rows(h.flatten(0, 1), case.T, case.channels_last), grads


@contextmanager
def _through_the_op(on: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """bn_lif calls the custom operator where ``_tracing()`` says so: made to say so eagerly."""
    with monkeypatch.context() as mp:
        if on:
            mp.setattr(_lean_bn, "_tracing", lambda: True)
        yield


CASES = [
    Case(),
    Case(params="imagenet"),
    Case(params="tri_detach", T=3, B=1),
    Case(params="rect_attached", channels_last=True),
    Case(params="rect_detach", channels_last=True, T=1, B=3),
    Case(training=False),
    Case(training=False, params="imagenet", channels_last=True),
    Case(training=False, params="rect_attached"),
    Case(pool=2, H=6, W=4),
    Case(pool=2, H=5, W=5, params="imagenet"),
    Case(pool=2, H=5, W=4, params="rect_attached", channels_last=True, training=False),
    Case(pool=3, H=6, W=7, params="tri_detach"),
    Case(pool=1, params="rect_attached"),
    Case(affine=False),
    Case(affine=False, params="imagenet", training=False),
    Case(track=False),
    Case(track=False, training=False, params="rect_detach"),
    Case(momentum=None),
    Case(momentum=None, params="imagenet", pool=2, H=4, W=6),
    Case(momentum=0.3, params="rect_attached"),
    Case(wanted=(True, False, False)),
    Case(wanted=(False, True, False), params="imagenet"),
    Case(wanted=(False, False, True), params="rect_attached", training=False),
    Case(wanted=(False, True, True), params="tri_detach", pool=2, H=4, W=4),
    Case(T=1, B=1, C=2, H=2, W=2, params="imagenet"),
    Case(T=1, B=2, C=2, H=2, W=3, params="cifar"),
]
CASES += [replace(c, backend=b) for c in CASES[:20] for b in BACKENDS if b != "eager"]
CASES += [replace(c, op=True) for c in CASES[:26]]
# eval mode included: the triton path's custom operator returned the running mean itself as an
# output there, which torch refuses (an output may not alias an input)
CASES += [replace(c, op=True, backend="triton") for c in CASES[:12]]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bn_lif_against_batchnorm_then_slow_lif(
    case: Case, monkeypatch: pytest.MonkeyPatch, calls: Calls
) -> None:
    """Two calls (the second with the statistics the first left): spikes, bits and their layout,
    the wanted gradients (None for the others) and their layout, the module's buffers; the
    backend named ran the kernels, forward and backward (the membrane recomputed where the
    backward does not read bits)."""
    p = PARAMS[case.params]
    bn, ref_bn = _bn(case, 1, on=True), _bn(case, 1)
    dev = _dev(case.backend)
    for call in range(2):
        ry = _inputs(case, 10 + call)
        y = ry.clone().to(dev)
        w = torch.randn(
            (case.T * case.B, case.C, case.H // max(case.pool, 1), case.W // max(case.pool, 1)),
            generator=torch.Generator().manual_seed(20 + call),
            dtype=F64,
        )
        s_ref, _h, g_ref = _reference(case, ref_bn, ry, w)
        targets = _grad_targets(y, bn, case.wanted)
        calls.clear()
        calls.affine.clear()
        in_kernel = case.backend == "triton" and case.pool == 0
        with _through_the_op(case.op, monkeypatch):
            s, bits = lean.bn_lif(y, bn, p, case.T, pool=case.pool, backend=case.backend)
            assert {n for n, _ in calls} == {case.backend}
            assert calls.count((case.backend, "lif_forward_packed")) == 1
            assert calls.affine == [in_kernel]
            calls.clear()
            grads = _grads((s * w.to(dev)).sum(), targets) if s.requires_grad else [None, None, None]
        assert {n for n, _ in calls} == {case.backend}
        if p.surrogate == "rectangle" and p.detach_reset:
            assert (case.backend, "lif_backward_bits") in calls
        else:
            assert calls.count((case.backend, "lif_forward_packed")) == 1
            assert calls.affine == [in_kernel, in_kernel]
        s, bits, grads = s.cpu(), bits.cpu(), [None if g is None else g.cpu() for g in grads]
        assert torch.equal(s.detach(), s_ref)
        assert s.dtype == F64
        fmt = CL if case.channels_last else torch.contiguous_format
        assert s.is_contiguous(memory_format=fmt)
        assert bits.dtype == torch.uint8 and not bits.requires_grad
        assert torch.equal(bits, _pack_rows(_storage_rows(s_ref, case.T, case.channels_last)))
        for a, b in zip(g_ref, grads, strict=True):
            if a is None:
                assert b is None
            else:
                assert b is not None and a.shape == b.shape
                assert _rel_err(a, b) <= 1e-12
        if case.wanted[0]:
            assert grads[0] is not None and grads[0].stride() == g_ref[0].stride()
        for (name, a), b in zip(ref_bn.state_dict().items(), bn.state_dict().values(), strict=True):
            assert a.dtype == b.dtype, name
            assert torch.allclose(a, b.cpu(), rtol=1e-13, atol=1e-15), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_bn_lif_without_gradients_keeps_the_statistics_right(backend: str, calls: Calls) -> None:
    """Under no_grad, and with nothing requiring a gradient: spikes, no graph, buffers updated;
    no pooling unless asked (the triton path then applies BatchNorm in its kernel)."""
    case = Case(params="imagenet", backend=backend)
    for mode in ("no_grad", "nothing_wanted"):
        bn, ref_bn = _bn(case, 2, on=True), _bn(case, 2)
        y = _inputs(case, 3)
        with torch.no_grad():
            z = ref_bn(y)
            s_ref, _ = slow_lif(
                z.view(2, 2, *z.shape[1:]), IMAGENET.decay, IMAGENET.threshold, "rectangle", True
            )
        y = y.to(_dev(backend))
        if mode == "no_grad":
            with torch.no_grad():
                s, bits = lean.bn_lif(y, bn, IMAGENET, 2, backend=backend)
        else:
            for prm in bn.parameters():
                prm.requires_grad_(False)
            s, bits = lean.bn_lif(y, bn, IMAGENET, 2, backend=backend)
        assert not s.requires_grad and s.grad_fn is None
        assert torch.equal(s.cpu(), s_ref.flatten(0, 1))
        assert calls.affine == [backend == "triton"]
        calls.affine.clear()
        for a, b in zip(ref_bn.state_dict().values(), bn.state_dict().values(), strict=True):
            assert torch.allclose(a, b.cpu(), rtol=1e-13, atol=0)


def test_momentum_none_is_the_cumulative_average() -> None:
    """Hand-computed: momentum=None averages the batch statistics of every call so far (the
    running statistics start at 0 and 1 and count as one batch; then 1/2, 1/3 of each new one)."""
    bn = nn.BatchNorm2d(1, momentum=None).double()
    bn.num_batches_tracked.fill_(1)
    batches = [torch.tensor([1.0, 3.0], dtype=F64), torch.tensor([4.0, 8.0, 6.0, 10.0], dtype=F64)]
    for b in batches:
        y = b.view(-1, 1, 1, 1)
        lean.bn_lif(y, bn, CIFAR, 1)
    # batch means 2 and 7, unbiased variances 2 and 6.6666...; after the first: (0 + 2) / 2 = 1,
    # (1 + 2) / 2 = 1.5; after the second: 1 + (7 - 1) / 3 = 3, 1.5 + (20/3 - 1.5) / 3
    assert bn.num_batches_tracked.item() == 3
    assert bn.running_mean.item() == pytest.approx(3.0, rel=1e-14)
    assert bn.running_var.item() == pytest.approx(1.5 + (20 / 3 - 1.5) / 3, rel=1e-14)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_buffers_kept_but_tracking_switched_off(training: bool, backend: str) -> None:
    """A module built with running statistics, then ``track_running_stats = False``: torch's
    BatchNorm uses the batch statistics in training mode and updates nothing (the count neither),
    the running ones in eval mode; so does bn_lif."""
    case = Case(training=training, backend=backend, params="rect_attached")
    bn, ref_bn = _bn(case, 4, on=True), _bn(case, 4)
    bn.track_running_stats = ref_bn.track_running_stats = False
    ry = _inputs(case, 5)
    y = ry.clone().to(_dev(backend))
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
    s_ref, _, g_ref = _reference(case, ref_bn, ry, w)
    targets = _grad_targets(y, bn, case.wanted)
    s, _ = lean.bn_lif(y, bn, PARAMS[case.params], 2, backend=backend)
    grads = _grads((s * w.to(y.device)).sum(), targets)
    assert torch.equal(s.detach().cpu(), s_ref)
    for a, b in zip(g_ref, grads, strict=True):
        assert _rel_err(a, b.cpu()) <= 1e-12
    for a, b in zip(ref_bn.state_dict().values(), bn.state_dict().values(), strict=True):
        assert torch.equal(a, b.cpu())
    assert bn.num_batches_tracked.item() == 3


def test_empty_batch_in_eval_mode() -> None:
    """No sample: no spike, no bit (the backward is left out: torch's own BatchNorm backward
    kernel stops the process with a floating point exception on an empty batch)."""
    bn = _bn(Case(training=False), 1)
    y = torch.zeros(0, 3, 4, 5, dtype=F64, requires_grad=True)
    s, bits = lean.bn_lif(y, bn, CIFAR, 1)
    assert s.shape == (0, 3, 4, 5) and bits.shape == (1, 0) and bits.dtype == torch.uint8
    assert s.requires_grad and torch.equal(bn.running_mean, _bn(Case(training=False), 1).running_mean)


def test_backend_setting_is_normalised() -> None:
    """``backend`` is read as backends.check_backend reads it (case, spaces)."""
    case = Case(params="imagenet")
    bn, ref_bn = _bn(case, 1), _bn(case, 1)
    y = _inputs(case, 2)
    a, _ = lean.bn_lif(y, bn, IMAGENET, 2, backend=" Eager ")
    b, _ = lean.bn_lif(y, ref_bn, IMAGENET, 2, backend="eager")
    assert torch.equal(a, b)


# ------------------------------------------------------------------------ what is kept (saved)


@contextmanager
def _recording() -> Iterator[list[Tensor]]:
    kept: list[Tensor] = []

    def pack(t: Tensor) -> Tensor:
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield kept


@pytest.mark.parametrize("op", [False, True])
@pytest.mark.parametrize("params", ["cifar", "imagenet"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_what_is_kept_for_backward(op: bool, params: str, training: bool, affine: bool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The input, the parameters, the running statistics in eval mode only, the statistics used
    (mean and 1/sqrt(var + eps), as torch.native_batch_norm returns them), and the bits of the
    spikes and of the surrogate's window only for the rectangle with a detached reset (the custom
    operator keeps empty tensors in their place: it returns tensors, never None)."""
    case = Case(params=params, training=training, affine=affine, T=1, B=2, C=2, H=2, W=2)
    p = PARAMS[params]
    bn = _bn(case, 7)
    y = _inputs(case, 8).requires_grad_()
    bits_wanted = params == "imagenet"
    with _recording() as kept, _through_the_op(op, monkeypatch):
        s, bits = lean.bn_lif(y, bn, p, 1)
    ref_bn = _bn(case, 7)
    z, mean, invstd = torch.native_batch_norm(
        y.detach(), ref_bn.weight, ref_bn.bias, ref_bn.running_mean, ref_bn.running_var, training, 0.1, 1e-5
    )
    _, h = slow_lif(z.view(1, 2, 2, 2, 2), p.decay, p.threshold, p.surrogate, p.detach_reset)
    window = _pack_rows(((h - p.threshold).abs() < 0.5).reshape(1, -1))
    empty = torch.empty(0, dtype=torch.uint8)
    expected: list[Tensor] = [y]
    expected += [bn.weight, bn.bias] if affine else []
    expected += [] if training else [bn.running_mean, bn.running_var]
    expected += [mean.to(F64), invstd.to(F64)]
    if bits_wanted:
        expected += [bits, window]
    elif op:
        expected += [empty, empty]
    assert len(kept) == len(expected)
    for a, b in zip(kept, expected, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.allclose(a.detach(), b.detach(), rtol=1e-14, atol=0)
    if not training:
        assert (
            kept[3 if affine else 1] is bn.running_mean
            or kept[3 if affine else 1].data_ptr() == bn.running_mean.data_ptr()
        )
    s.sum().backward()


# -------------------------------------------------------------------------- the custom operator


def _op_args(case: Case, bn: nn.BatchNorm2d, save: bool, momentum: float) -> tuple:
    p = PARAMS[case.params]
    code = lean.check_lean_params(p)
    return (
        bn.weight, bn.bias, bn.running_mean, bn.running_var, case.training, momentum, bn.eps, case.T,
        case.pool, p.decay, p.threshold, code, p.detach_reset, save,
    )  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        Case(),
        Case(params="imagenet", channels_last=True),
        Case(training=False, pool=2, H=4, W=4),
        Case(affine=False, params="rect_detach", track=False),
        Case(backend="triton"),
        Case(backend="triton", channels_last=True, params="imagenet", pool=0, track=False),
        Case(backend="triton", training=False, channels_last=True, params="imagenet"),
    ],
    ids=str,
)
@pytest.mark.parametrize("save", [True, False])
def test_op_outputs_statistics_and_fakes(case: Case, save: bool) -> None:
    """The custom operator's seven outputs: spikes, bits, the window's bits (empty unless kept),
    the statistics used (those of torch.native_batch_norm), the new running statistics (empty
    unless training with them); the fake implementation gives each output's shape, dtype, strides."""
    bn, on = _bn(case, 9), _bn(case, 9, on=True)
    y = _inputs(case, 10)
    yd = y.to(_dev(case.backend))
    args = _op_args(case, on, save, 0.25)
    out = torch.ops.gac_coding.bn_lif(yd, *args, case.backend)
    assert not any(t.requires_grad for t in out[1:])  # only the spikes are differentiable
    assert out[0].requires_grad == case.affine
    spikes, bits, sg, mean, invstd, new_mean, new_var = (t.detach().cpu() for t in out)
    rm = None if bn.running_mean is None else bn.running_mean.clone()
    rv = None if bn.running_var is None else bn.running_var.clone()
    training = case.training or rm is None
    z, ref_mean, ref_invstd = torch.native_batch_norm(y, bn.weight, bn.bias, rm, rv, training, 0.25, 1e-5)
    if not training and case.backend == "triton":  # the statistics it computes itself
        ref_mean, ref_invstd = bn.running_mean, (bn.running_var + 1e-5).rsqrt()
        assert out[3].data_ptr() != on.running_mean.data_ptr()  # a copy: no output aliases an input
    elif not training:  # torch's kernel returns none in eval mode
        assert ref_mean.shape == ref_invstd.shape == (0,)
    assert mean.shape == ref_mean.shape and invstd.shape == ref_invstd.shape
    assert _rel_err(ref_mean, mean) <= 1e-13 and _rel_err(ref_invstd, invstd) <= 1e-13
    assert mean.dtype == invstd.dtype == F64
    if case.training and rm is not None:
        assert torch.allclose(new_mean, rm, rtol=1e-13, atol=0) and torch.allclose(
            new_var, rv, rtol=1e-13, atol=0
        )
        assert not torch.equal(new_mean, bn.running_mean)  # the module's buffers are not written here
    else:
        assert new_mean.shape == new_var.shape == (0,)
    p = PARAMS[case.params]
    zp = F.avg_pool2d(z, case.pool) if case.pool else z
    s_ref, h = slow_lif(
        zp.view(case.T, case.B, *zp.shape[1:]), p.decay, p.threshold, p.surrogate, p.detach_reset
    )
    assert torch.equal(spikes, s_ref.flatten(0, 1))
    if save and p.surrogate == "rectangle" and p.detach_reset:
        window = ((h - p.threshold).abs() < 0.5).flatten(0, 1)
        assert torch.equal(sg, _pack_rows(_storage_rows(window, case.T, case.channels_last)))
    else:
        assert sg.shape == (0,) and sg.dtype == torch.uint8
    with FakeTensorMode() as mode:
        fy = mode.from_tensor(yd)
        fargs = tuple(mode.from_tensor(a) if isinstance(a, Tensor) else a for a in args)
        fake = torch.ops.gac_coding.bn_lif(fy, *fargs, case.backend)
    assert len(fake) == 7
    for r, f in zip(out, fake, strict=True):
        assert tuple(f.shape) == tuple(r.shape) and f.dtype == r.dtype
        assert f.stride() == r.stride()


def test_op_without_backend_argument_runs_its_default() -> None:
    case = Case(params="cifar")
    bn = _bn(case, 1)
    y = _inputs(case, 2).requires_grad_()
    out = torch.ops.gac_coding.bn_lif(y, *_op_args(case, bn, True, 0.1))
    g = torch.autograd.grad(out[0].sum(), [y, bn.weight])
    ref_bn = _bn(case, 1)
    ry = _inputs(case, 2).requires_grad_()
    s, _ = lean.bn_lif(ry, ref_bn, CIFAR, 2)
    g2 = torch.autograd.grad(s.sum(), [ry, ref_bn.weight])
    assert torch.equal(out[0], s)
    for a, b in zip(g2, g, strict=True):
        assert _rel_err(a, b) <= 1e-12


# ----------------------------------------------------------------------------------- bad input


def test_bad_input_messages_in_full() -> None:
    bn = nn.BatchNorm2d(3)
    y = torch.zeros(4, 3, 2, 2)
    with pytest.raises(TypeError) as e:
        lean.bn_lif(y, nn.BatchNorm1d(3), CIFAR, 2, pool=-1)
    assert str(e.value) == "bn: expected a torch.nn.BatchNorm2d, got BatchNorm1d"
    for pool in (-1, True, 1.0, "2"):
        with pytest.raises(ValueError) as e:
            lean.bn_lif(y, bn, CIFAR, 2, pool=pool)  # type: ignore[arg-type]
        assert str(e.value) == f"pool: expected 0 (none) or a kernel size >= 1, got {pool!r}"
    with pytest.raises(ValueError) as e:
        lean.bn_lif(torch.zeros(5, 3, 2, 2), bn, CIFAR, 2)
    assert str(e.value) == "y: expected [T * B, C, H, W] with T=2, got shape (5, 3, 2, 2)"
    with pytest.raises(ValueError) as e:
        lean.bn_lif(torch.zeros(4, 3, 2), bn, CIFAR, 2)
    assert str(e.value) == "y: expected [T * B, C, H, W] with T=2, got shape (4, 3, 2)"
    with pytest.raises(ValueError) as e:
        lean.bn_lif(torch.zeros(4, 3, 2, 2, 1), bn, CIFAR, 4)
    assert str(e.value) == "y: expected [T * B, C, H, W] with T=4, got shape (4, 3, 2, 2, 1)"
    with pytest.raises(ValueError, match="the lean ops take the named surrogates"):
        lean.bn_lif(y, nn.Linear(1, 1), LIFParams(surrogate=lambda x: x), 2)  # type: ignore[arg-type]
    assert bn.num_batches_tracked.item() == 0  # nothing counted for a refused call
    lean.bn_lif(y, bn, CIFAR, 2, pool=0)
    lean.bn_lif(y, bn, CIFAR, 4, pool=1)
    assert bn.num_batches_tracked.item() == 2


def test_pack_and_unpack_messages_in_full() -> None:
    with pytest.raises(ValueError) as e:
        lean.pack_bits([[1.0]])  # type: ignore[arg-type]
    assert str(e.value) == "x: expected a 2-d tensor [R, L], got list"
    for bad in (torch.zeros(3), torch.zeros(1, 2, 3)):
        with pytest.raises(ValueError) as e:
            lean.pack_bits(bad)
        assert str(e.value) == f"x: expected a 2-d tensor [R, L], got {bad.shape}"
    for bad in (
        torch.zeros(3, dtype=torch.uint8),
        torch.zeros(1, 2),
        torch.zeros(1, 1, 2, dtype=torch.uint8),
    ):
        with pytest.raises(ValueError) as e:
            lean.unpack_bits(bad, 9)
        assert str(e.value) == f"bits: expected a uint8 tensor [R, ceil(L / 8)], got {bad.shape}"
    with pytest.raises(ValueError) as e:
        lean.unpack_bits("ab", 9)  # type: ignore[arg-type]
    assert str(e.value) == "bits: expected a uint8 tensor [R, ceil(L / 8)], got ab"
    bits = torch.zeros(3, 2, dtype=torch.uint8)
    for length in (8, 17, 0, True, 9.0, "9"):
        with pytest.raises(ValueError) as e:
            lean.unpack_bits(bits, length)  # type: ignore[arg-type]
        assert str(e.value) == f"length: expected L with ceil(L / 8) = 2, got {length!r}"
    for length in (9, 16):
        assert lean.unpack_bits(bits, length).shape == (3, length)


# ------------------------------------------------------------------------- the helpers one by one


@pytest.mark.parametrize("backend", [*BACKENDS, "auto"])
def test_pack_and_unpack_by_hand(backend: str, calls: Calls) -> None:
    d = _dev(backend)
    x = torch.tensor(
        [[1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0]]
    )
    bits = lean.pack_bits(x.to(d), backend=backend)
    assert bits.tolist() == [[13, 1], [130, 0]]
    assert lean.pack_bits(x).tolist() == [[13, 1], [130, 0]]  # the default setting: auto
    back = lean.unpack_bits(bits, 9, backend=backend)
    assert back.dtype == torch.float32
    assert back.tolist() == (x != 0).float().tolist()
    assert lean.unpack_bits(bits, 9, F64, backend=backend).dtype == F64
    g = torch.Generator().manual_seed(3)
    r = (torch.rand(3, 21, generator=g) > 0.5).to(F64)
    assert torch.equal(lean.pack_bits(r.to(d), backend=backend).cpu(), _pack_rows(r))
    assert torch.equal(lean.unpack_bits(_pack_rows(r).to(d), 21, F64, backend=backend).cpu(), r)
    t = r.to(d).t()  # not contiguous
    assert torch.equal(lean.pack_bits(t, backend=backend).cpu(), _pack_rows(t.cpu().contiguous()))
    ran = "eager" if backend == "auto" else backend
    assert set(calls) == {(ran, "pack_bits"), (ran, "unpack_bits"), ("eager", "pack_bits")}


def test_bytes_per_row_by_hand() -> None:
    got = [_lean_common._bytes_per_row(n) for n in (0, 1, 7, 8, 9, 15, 16, 17)]
    assert got == [0, 1, 1, 1, 2, 2, 2, 3]


def test_h_dtype_and_stats_dtype() -> None:
    h = _lean_common._h_dtype
    assert [h(d) for d in (torch.float16, torch.bfloat16, torch.float32, F64)] == [
        torch.float32, torch.float32, torch.float32, F64,
    ]  # fmt: skip
    sd = _lean_bn._stats_dtype
    y = torch.zeros(1, 2, 1, 1, dtype=torch.float16)
    assert sd(y, torch.zeros(2)) == torch.float32
    assert sd(y, None) == torch.float16
    assert sd(y.double(), torch.zeros(2, dtype=torch.bfloat16)) == torch.bfloat16


def test_lif_params_by_code() -> None:
    assert _lean_common._lif_params(0.25, 1.5, 0, True) == LIFParams(0.25, 1.5, "triangle", True)
    assert _lean_common._lif_params(0.75, 0.5, 1, False) == LIFParams(0.75, 0.5, "rectangle", False)


def test_tracing_is_either_compiler_or_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _lean_common._tracing() is False
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _lean_common._tracing() is True
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert _lean_common._tracing() is True


def test_plans() -> None:
    x = torch.zeros(2, 3, dtype=F64)
    assert _lean_common._plan(" CPP ", x) == backends.Plan("cpp", ("cpp",))
    assert _lean_common._plan("triton", x.to(_dev("triton"))) == backends.Plan("triton", ("triton",))
    assert _lean_common._plan("auto", x) == backends.Plan("auto", ("eager",))
    assert _lean_common._plan("cpp", x, None) == backends.Plan("cpp", ("eager",))
    assert _lean_common._plan("cpp,eager", x, 1) == backends.Plan("cpp,eager", ("cpp", "eager"))
    assert _lean_common._plan_for("CPP", CPU, F64) == backends.Plan("cpp", ("cpp",))
    assert _lean_common._plan_for("cpp", CPU, torch.bfloat16) == backends.Plan("cpp", ("eager",))
    on = torch.device(_dev("triton"))
    assert _lean_common._plan_for("triton", on, torch.float32) == backends.Plan("triton", ("triton",))
    assert _lean_common._plan_for("triton", torch.device("meta"), F64) == backends.Plan("triton", ("eager",))
    with pytest.raises(ValueError, match="backend: expected"):
        _lean_common._plan_for("nope", CPU, F64)


def test_call_returns_the_result_only() -> None:
    x = torch.tensor([[1.0, 0.0, 1.0]])
    assert _lean_common._call(backends.Plan("eager", ("eager",)), "pack_bits", x).tolist() == [[5]]
    assert _lean_common._call(backends.Plan("cpp", ("cpp",)), "pack_bits", x).tolist() == [[5]]


def test_lean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = _lean_common.LEAN_REGISTRY
    assert list(reg) == ["eager", "cpp", "triton"]
    assert repr(reg["cpp"]) == "<gac_coding lean backend 'cpp'>"
    assert reg["eager"].module() is _lean_eager and reg["cpp"].module() is _lean_cpp
    assert reg["triton"].module().__name__ == "gac_coding.ops._lean_triton"
    for name in reg:
        assert reg[name].name == name
        for dev, dtype in ((CPU, F64), (CPU, torch.bfloat16), (torch.device("meta"), torch.float16)):
            assert reg[name].covers(dev, dtype) == backends.REGISTRY[name].covers(dev, dtype)
    assert reg["eager"].ready(CPU) == (True, "")
    assert reg["triton"].ready(CPU) == _triton.available(CPU)
    if _cpp.toolchain_available():
        assert reg["cpp"].ready(CPU) == (True, "")
    monkeypatch.setattr(_lean_cpp, "load", lambda: None)
    monkeypatch.setattr(_lean_cpp, "build_error", lambda: "no compiler")
    assert reg["cpp"].ready(CPU) == (False, "the C++ lean kernels could not be built: no compiler")
    assert _lean_common._always(CPU) == (True, "")


@pytest.mark.parametrize("name", BACKENDS)
def test_registry_forwards_each_function(name: str) -> None:
    """Each of the four functions of a backend module reached through its registry entry."""
    b = _lean_common.LEAN_REGISTRY[name]
    d = _dev(name)
    x = torch.tensor([[0.6, 0.7, -0.3], [0.6, 0.9, 0.1]], dtype=F64)
    assert torch.equal(b.pack_bits(x.to(d)).cpu(), _pack_rows(x))
    assert torch.equal(b.unpack_bits(_pack_rows(x).to(d), 3, F64).cpu(), (x != 0).to(F64))
    out = b.lif_forward_packed(x.to(d), 0, None, None, 1, 1, 0.5, 1.0, True, True)
    spikes, bits, sg, h = (t.cpu() for t in out)
    s_ref, h_ref = slow_lif(x, 0.5, 1.0, "rectangle", True)
    assert torch.equal(spikes, s_ref) and torch.equal(bits, _pack_rows(s_ref))
    assert torch.allclose(h, h_ref, rtol=1e-15, atol=0)
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=F64)
    got = b.lif_backward_bits(g.to(d), bits.to(d), sg.to(d), False, 0.5).cpu()
    xr = x.clone().requires_grad_()
    s2, _ = slow_lif(xr, 0.5, 1.0, "rectangle", True)
    assert torch.allclose(got, torch.autograd.grad((s2 * g).sum(), xr)[0], rtol=1e-15, atol=0)


def test_nhwc() -> None:
    t = torch.zeros(2, 3, 4, 5)
    assert not _lean_common._nhwc(t)
    assert _lean_common._nhwc(t.contiguous(memory_format=CL))
    five = torch.zeros(1, 2, 4, 5, 3).permute(0, 1, 4, 2, 3)  # one step, each channels-last
    assert _lean_common._nhwc(five)
    assert not _lean_common._nhwc(five.contiguous())
    assert not _lean_common._nhwc(torch.zeros(3, 4, 5))
    assert not _lean_common._nhwc(torch.zeros(3, 4, 5).permute(0, 2, 1))
    assert not _lean_common._nhwc(torch.zeros(1, 1, 1, 2, 3, 4))


def test_rows_and_back() -> None:
    g = torch.Generator().manual_seed(1)
    t = torch.randn(4, 3, 5, 2, generator=g)
    tl = t.contiguous(memory_format=CL)
    assert torch.equal(_lean_common._rows(t, 2, False), t.reshape(2, 60))
    assert torch.equal(_lean_common._rows(tl, 2, True), t.permute(0, 2, 3, 1).reshape(2, 60))
    assert torch.equal(_lean_common._rows(tl, 4, False), t.reshape(4, 30))
    for nhwc in (False, True):
        rows = _lean_common._rows(t, 2, nhwc)
        back = _lean_common._from_rows(rows, t.shape, nhwc)
        assert torch.equal(back, t) and back.is_contiguous(
            memory_format=CL if nhwc else torch.contiguous_format
        )
        five = _lean_common._from_rows(rows, [2, 2, 3, 5, 2], nhwc)
        assert torch.equal(five, t.view(2, 2, 3, 5, 2))
        assert (five[0].is_contiguous(memory_format=CL)) == nhwc
        e = _lean_common._empty_like_layout([2, 2, 3, 5, 2], nhwc, F64, CPU)
        assert e.shape == (2, 2, 3, 5, 2) and e.dtype == F64 and e.stride() == five.stride()
        e4 = _lean_common._empty_like_layout((4, 3, 5, 2), nhwc, torch.float16, torch.device("meta"))
        assert e4.shape == (4, 3, 5, 2) and e4.dtype == torch.float16 and e4.device.type == "meta"
        assert e4.stride() == (tl if nhwc else t).stride()


def test_like_layout_and_or_empty() -> None:
    t = torch.arange(24.0).view(1, 2, 3, 4)
    assert _lean_common._like_layout(None, True) is None
    assert _lean_common._like_layout(t, False) is t
    cl = _lean_common._like_layout(t, True)
    assert cl.is_contiguous(memory_format=CL) and not cl.is_contiguous() and torch.equal(cl, t)
    back = _lean_common._like_layout(cl, False)
    assert back.is_contiguous() and torch.equal(back, t)
    like = torch.zeros(2, dtype=F64)
    assert _lean_common._or_empty(t, like) is t
    e = _lean_common._or_empty(None, like)
    assert e.shape == (0,) and e.dtype == F64


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("static", [False, True])
def test_backward_from_bits_against_autograd(backend: str, nhwc: bool, static: bool, calls: Calls) -> None:
    """The input gradient of the rectangle LIF with a detached reset from the bits of the spikes
    and of the window, in the layout of the spikes; ``is_static``: the sum over the steps (one
    input repeated at each step)."""
    T, decay, th = 3, 0.6, 0.9
    g = torch.Generator().manual_seed(12)
    shape = (2, 3, 4, 2)
    x = torch.randn((T, *shape), generator=g, dtype=F64) * 1.2 + 0.5
    if static:
        x0 = x[0].clone().requires_grad_()
        seq = x0.expand(T, *shape)
    else:
        x0 = x.clone().requires_grad_()
        seq = x0
    s, h = slow_lif(seq, decay, th, "rectangle", True)
    grad_s = torch.randn(s.shape, generator=g, dtype=F64)
    ref = torch.autograd.grad((s * grad_s).sum(), x0)[0]
    rows = lambda t: _storage_rows(t.flatten(0, 1), T, nhwc)  # noqa: E731
    bits = _pack_rows(rows(s.detach()))
    sg = _pack_rows(rows((h - th).abs() < 0.5))
    gs = grad_s.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if nhwc else grad_s
    d = _dev(backend)
    got = _lean_common._backward_from_bits(gs.to(d), bits.to(d), sg.to(d), static, nhwc, decay, backend)
    assert got.shape == ref.shape and got.dtype == F64
    assert _rel_err(ref, got.cpu()) <= 1e-13
    assert calls == [(backend, "lif_backward_bits")]
    step = got if static else got[0]
    assert step.is_contiguous(memory_format=CL) == nhwc


# ----------------------------------------------------------------------------- BatchNorm's parts


def test_in_kernel() -> None:
    y = torch.zeros(2, 3, 2, 2, dtype=F64, device=_dev("triton"))
    assert _lean_bn._in_kernel("triton", y, 0, 0)
    assert _lean_bn._in_kernel("triton,eager", y, 1, 0)
    assert not _lean_bn._in_kernel("triton", y, 0, 1)
    assert not _lean_bn._in_kernel("triton", y, 0, 2)
    assert not _lean_bn._in_kernel("eager", y, 0, 0)
    assert not _lean_bn._in_kernel("cpp", y, 0, 0)
    assert not _lean_bn._in_kernel("auto", y.cpu(), 0, 0)  # a CPU tensor: eager
    assert not _lean_bn._in_kernel("triton", y.to(torch.bfloat16).to("meta"), 0, 0)


def test_inner_and_scale_shift_by_hand() -> None:
    y = torch.zeros(2, 3, 4, 5)
    assert _lean_bn._inner(y, False) == 20 and _lean_bn._inner(y, True) == 1
    mean = torch.tensor([1.0, -2.0], dtype=F64)
    invstd = torch.tensor([0.5, 4.0], dtype=F64)
    w = torch.tensor([3.0, -1.0], dtype=F64)
    b = torch.tensor([0.25, 2.0], dtype=F64)
    cases = {
        (True, True): ([1.5, -4.0], [0.25 - 1.5, 2.0 - 8.0]),
        (True, False): ([1.5, -4.0], [-1.5, -8.0]),
        (False, True): ([0.5, 4.0], [0.25 - 0.5, 2.0 + 8.0]),
        (False, False): ([0.5, 4.0], [-0.5, 8.0]),
    }
    for (hw, hb), (alpha, beta) in cases.items():
        a, c = _lean_bn._scale_shift(mean, invstd, w if hw else None, b if hb else None)
        assert a.tolist() == alpha and c.tolist() == beta
    strided = torch.tensor([0.5, 9.0, 4.0], dtype=F64)[::2]
    a, c = _lean_bn._scale_shift(mean, strided, None, None)
    assert a.is_contiguous() and c.is_contiguous() and a.tolist() == [0.5, 4.0]


def _hand_stats(y: Tensor) -> tuple[Tensor, Tensor, int]:
    """Mean and biased variance per channel by hand (sums over dims 0, 2, 3), the count."""
    n = y.shape[0] * y.shape[2] * y.shape[3]
    m = y.sum(dim=(0, 2, 3)) / n
    v = ((y - m.view(1, -1, 1, 1)) ** 2).sum(dim=(0, 2, 3)) / n
    return m, v, n


@pytest.mark.parametrize("n_shape", [(2, 3, 1, 1), (3, 2, 2, 3), (1, 2, 1, 3)])
@pytest.mark.parametrize("momentum", [0.1, 0.75])
def test_batch_stats_by_hand(n_shape: tuple[int, ...], momentum: float) -> None:
    g = torch.Generator().manual_seed(2)
    y = torch.randn(n_shape, generator=g, dtype=F64) * 2 + 1
    C = n_shape[1]
    rm = torch.randn(C, generator=g, dtype=F64)
    rv = torch.rand(C, generator=g, dtype=F64) + 0.5
    w = torch.rand(C, generator=g, dtype=F64)
    eps = 0.01
    m, v, n = _hand_stats(y)
    mean, invstd, nm, nv = _lean_bn._batch_stats(y, w, rm, rv, True, momentum, eps)
    assert _rel_err(m, mean) <= 1e-14 and _rel_err(1 / (v + eps).sqrt(), invstd) <= 1e-14
    assert _rel_err(momentum * m + (1 - momentum) * rm, nm) <= 1e-14
    assert _rel_err(momentum * v * n / (n - 1) + (1 - momentum) * rv, nv) <= 1e-14
    assert nm.dtype == nv.dtype == F64
    mean2, invstd2, nm2, nv2 = _lean_bn._batch_stats(y, None, None, None, True, momentum, eps)
    assert torch.equal(mean2, mean) and torch.equal(invstd2, invstd) and nm2 is None and nv2 is None
    assert _lean_bn._batch_stats(y, w, rm, None, True, momentum, eps)[2:] == (None, None)
    assert _lean_bn._batch_stats(y, w, None, rv, True, momentum, eps)[2:] == (None, None)
    em, ei, a, b = _lean_bn._batch_stats(y, w, rm, rv, False, momentum, eps)
    assert torch.equal(em, rm) and _rel_err(1 / (rv + eps).sqrt(), ei) <= 1e-15 and a is None and b is None


def test_batch_stats_one_value_per_channel() -> None:
    """n = 1: the unbiased variance divides by max(n - 1, 1) (torch's update); the variance is 0."""
    y = torch.tensor([3.0, -1.0], dtype=F64).view(1, 2, 1, 1)
    rm, rv = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([2.0, 4.0], dtype=F64)
    mean, invstd, nm, nv = _lean_bn._batch_stats(y, None, rm, rv, True, 0.5, 0.25)
    assert mean.tolist() == [3.0, -1.0] and invstd.tolist() == [2.0, 2.0]
    assert nm.tolist() == [2.0, 0.0] and nv.tolist() == [1.0, 2.0]


def test_batch_stats_half_input_accumulates_in_float32() -> None:
    """float16 input: the statistics computed in float32 (the dtype of the weight, else of the
    input, is the statistics'); the running statistics keep their own dtype."""
    g = torch.Generator().manual_seed(4)
    base = (torch.randn(4, 2, 3, 3, generator=g) * 0.05 + 300.0).half()
    m, v, n = _hand_stats(base.double())
    rm, rv = torch.zeros(2), torch.ones(2)
    mean, invstd, nm, nv = _lean_bn._batch_stats(base, torch.ones(2), rm, rv, True, 0.5, 1e-5)
    assert mean.dtype == invstd.dtype == nm.dtype == nv.dtype == torch.float32
    assert _rel_err(m, mean.double()) <= 1e-6
    assert _rel_err(1 / (v + 1e-5).sqrt(), invstd.double()) <= 1e-3
    assert _rel_err(0.5 * v * n / (n - 1) + 0.5, nv.double()) <= 1e-3
    mean16, invstd16, _, _ = _lean_bn._batch_stats(base, None, None, None, True, 0.5, 1e-5)
    assert mean16.dtype == invstd16.dtype == torch.float16
    assert _rel_err(1 / (v + 1e-5).sqrt(), invstd16.double()) <= 2e-3
    em, ei, _, _ = _lean_bn._batch_stats(base, None, rm.half() + 1, rv.half() * 3.5, False, 0.5, 0.5)
    assert em.dtype == ei.dtype == torch.float16
    assert em.tolist() == [1.0, 1.0] and ei.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("running", [True, False])
def test_bn_native(training: bool, running: bool) -> None:
    """torch's BatchNorm kernel, the running statistics updated on copies (the module's buffers
    unwritten); the new ones returned only when updated."""
    g = torch.Generator().manual_seed(5)
    y = torch.randn(3, 2, 2, 2, generator=g, dtype=F64)
    w, b = torch.rand(2, generator=g, dtype=F64), torch.randn(2, generator=g, dtype=F64)
    rm = torch.randn(2, generator=g, dtype=F64) if running else None
    rv = torch.rand(2, generator=g, dtype=F64) + 0.5 if running else None
    saved = (None if rm is None else rm.clone(), None if rv is None else rv.clone())
    train = training or not running
    z, mean, invstd, nm, nv = _lean_bn._bn_native(y, w, b, rm, rv, train, 0.3, 0.01)
    crm = None if rm is None else rm.clone()
    crv = None if rv is None else rv.clone()
    ref = torch.native_batch_norm(y, w, b, crm, crv, train, 0.3, 0.01)
    assert torch.equal(z, ref[0]) and torch.equal(mean, ref[1]) and torch.equal(invstd, ref[2])
    if running:
        assert torch.equal(rm, saved[0]) and torch.equal(rv, saved[1])
    if train and running:
        assert torch.equal(nm, crm) and torch.equal(nv, crv)
        assert not torch.equal(nm, rm)
    else:
        assert nm is None and nv is None


def test_batch_stats_eval_needs_both_running_statistics() -> None:
    y = torch.zeros(2, 2, 1, 1, dtype=F64)
    rm = torch.zeros(2, dtype=F64)
    for a, b in ((rm, None), (None, rm), (None, None)):
        with pytest.raises(AssertionError):
            _lean_bn._batch_stats(y, None, a, b, False, 0.1, 1e-5)


@pytest.mark.parametrize("nhwc", [False, True])
@pytest.mark.parametrize("params", ["cifar", "imagenet"])
def test_backward_runs_on_the_device_of_its_tensors(nhwc: bool, params: str) -> None:
    """The backward with pooling on meta tensors (shapes only): every tensor it makes is made on
    the device of its inputs; the input gradient in the layout of the input."""
    T, B, C = 2, 2, 3
    fmt = CL if nhwc else torch.contiguous_format
    meta = torch.device("meta")
    y = torch.empty(T * B, C, 4, 6, dtype=F64, device=meta).contiguous(memory_format=fmt)
    w, b, mean, invstd = (torch.empty(C, dtype=F64, device=meta) for _ in range(4))
    g = torch.empty(T * B, C, 2, 3, dtype=F64, device=meta).contiguous(memory_format=fmt)
    p = PARAMS[params]
    code = lean.check_lean_params(p)
    bits = torch.empty(T, B * C * 6 // 8 + 1, dtype=torch.uint8, device=meta) if code == 1 else None
    gy, gw, gb = _lean_bn._bn_lif_backward_run(
        g, y, w, b, None, None, mean, invstd, bits, bits, True, 1e-5, T, 2, p.decay, p.threshold,
        code, p.detach_reset, True, True, "eager",
    )  # fmt: skip
    assert gy.device == gw.device == gb.device == meta
    assert gy.shape == y.shape and gw.shape == gb.shape == (C,)
    assert gy.is_contiguous(memory_format=fmt)


def test_triton_ready_reads_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where triton is compiled for CUDA (not interpreted), CPU tensors are refused with the
    reason, CUDA tensors taken."""
    monkeypatch.setattr(_triton, "interpreted", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    reg = _lean_common.LEAN_REGISTRY["triton"]
    ok, why = reg.ready(CPU)
    assert not ok and why.startswith("triton runs CPU tensors only in its interpreter")
    assert reg.ready(torch.device("cuda")) == (True, "")
    assert _lean_common._triton_ready(CPU) == (ok, why)


def test_batch_stats_mixed_dtypes() -> None:
    """The statistics in the dtype of the weight, accumulated in the wider of it and the input's;
    the new running statistics computed in that dtype (float32 here: each value a float32 number)
    and returned in the running statistics' own dtype."""
    g = torch.Generator().manual_seed(6)
    y = torch.randn(3, 2, 2, 2, generator=g) * 2 + 1
    rm = torch.randn(2, generator=g, dtype=F64) / 3
    rv = torch.rand(2, generator=g, dtype=F64) / 3 + 0.5
    # float32 input, float64 weight, float32 running statistics, eval: all in float64
    em, ei, _, _ = _lean_bn._batch_stats(
        y, torch.ones(2, dtype=F64), rm.float(), rv.float(), False, 0.1, 1e-5
    )
    assert em.dtype == ei.dtype == F64
    assert torch.equal(em, rm.float().double())
    assert _rel_err(1 / (rv.float().double() + 1e-5).sqrt(), ei) <= 1e-15
    # float32 input and weight, float64 running statistics, training: accumulated in float32
    mean, invstd, nm, nv = _lean_bn._batch_stats(y, torch.ones(2), rm, rv, True, 0.1, 1e-5)
    assert mean.dtype == invstd.dtype == torch.float32 and nm.dtype == nv.dtype == F64
    assert torch.equal(nm, nm.float().double()) and torch.equal(nv, nv.float().double())
    m, v, n = _hand_stats(y.double())
    assert _rel_err(0.1 * m + 0.9 * rm, nm) <= 1e-6
    assert _rel_err(0.1 * v * n / (n - 1) + 0.9 * rv, nv) <= 1e-6
    # float64 input, float32 weight and running statistics: float64 accumulation, float32 results
    mean, invstd, nm, nv = _lean_bn._batch_stats(
        y.double(), torch.ones(2), rm.float(), rv.float(), True, 0.1, 1e-5
    )
    assert mean.dtype == invstd.dtype == nm.dtype == nv.dtype == torch.float32


@pytest.mark.parametrize("training", [True, False])
def test_half_input_float_module_on_the_triton_path(training: bool) -> None:
    """float16 input, float32 module (mixed precision): the statistics in the module's dtype, as
    the fake implementation says; computed from the float16 values in float32."""
    d = _dev("triton")
    bn = nn.BatchNorm2d(3).to(d)
    with torch.no_grad():
        bn.running_mean.fill_(0.25)
        bn.running_var.fill_(2.0)
    g = torch.Generator().manual_seed(7)
    y = (torch.randn(4, 3, 2, 3, generator=g) * 0.01 + 3.0).half().to(d)
    args = (bn.weight, bn.bias, bn.running_mean, bn.running_var, training, 0.1, bn.eps, 2, 0)
    code = lean.check_lean_params(CIFAR)
    tail = (CIFAR.decay, CIFAR.threshold, code, CIFAR.detach_reset, False, "triton")
    out = torch.ops.gac_coding.bn_lif(y, *args, *tail)
    spikes, _, _, mean, invstd, nm, nv = (t.cpu() for t in out)
    assert spikes.dtype == torch.float16
    assert mean.dtype == invstd.dtype == torch.float32
    m, v, n = _hand_stats(y.cpu().double())
    if training:
        assert _rel_err(m, mean.double()) <= 1e-6 and _rel_err(1 / (v + 1e-5).sqrt(), invstd.double()) <= 1e-4
        assert nm.dtype == nv.dtype == torch.float32
    else:
        assert mean.tolist() == [0.25] * 3 and _rel_err(torch.full((3,), (2 + 1e-5) ** -0.5), invstd) <= 1e-6
    with FakeTensorMode() as mode:
        fake = torch.ops.gac_coding.bn_lif(
            mode.from_tensor(y), *(mode.from_tensor(a) if isinstance(a, Tensor) else a for a in args), *tail
        )
    for r, f in zip(out, fake, strict=True):
        assert f.dtype == r.dtype and tuple(f.shape) == tuple(r.shape)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_input_backward_reads_the_membrane_in_float32(dtype: torch.dtype, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A half-precision input: the recomputed membrane is handed to the LIF's backward in float32
    (the dtype the kernels compute in), the gradients come back in the input's dtype."""
    seen: list[torch.dtype] = []
    backward = _lean_bn.functional._lif_backward

    def recording(plan, grad_s, h, static, p):  # type: ignore[no-untyped-def]
        seen.append(h.dtype)
        return backward(plan, grad_s, h, static, p)

    monkeypatch.setattr(_lean_bn.functional, "_lif_backward", recording)
    bn = nn.BatchNorm2d(3).to(dtype)
    y = (torch.randn(4, 3, 2, 3, generator=torch.Generator().manual_seed(2)) * 2).to(dtype).requires_grad_()
    s, _ = lean.bn_lif(y, bn, CIFAR, 2, backend="eager")
    s.sum().backward()
    assert seen == [torch.float32]
    assert y.grad is not None and y.grad.dtype == dtype and bn.weight.grad.dtype == dtype


def test_function_outputs_running_statistics_without_gradient() -> None:
    """The autograd Function's new running statistics are not differentiable (only the spikes)."""
    case = Case()
    bn = _bn(case, 3)
    y = _inputs(case, 4).requires_grad_()
    spikes, bits, new_mean, new_var = _lean_bn._BNLIFFunction.apply(
        y,
        bn.weight,
        bn.bias,
        bn.running_mean,
        bn.running_var,
        True,
        0.1,
        bn.eps,
        2,
        0,
        CIFAR,
        0,
        True,
        "eager",
    )
    assert spikes.requires_grad and not bits.requires_grad
    assert not new_mean.requires_grad and not new_var.requires_grad


def test_momentum_none_without_a_count_as_torch() -> None:
    """momentum=None and no ``num_batches_tracked``: torch's BatchNorm then updates with factor 0
    (the running statistics stay); so does bn_lif."""
    case = Case(momentum=None)
    bn, ref_bn = _bn(case, 5), _bn(case, 5)
    bn.num_batches_tracked = ref_bn.num_batches_tracked = None
    y = _inputs(case, 6)
    with torch.no_grad():
        ref = ref_bn(y)
        s, _ = lean.bn_lif(y, bn, IMAGENET, 2)
        s_ref, _ = slow_lif(
            ref.view(2, 2, *ref.shape[1:]), IMAGENET.decay, IMAGENET.threshold, "rectangle", True
        )
    assert torch.equal(s, s_ref.flatten(0, 1))
    assert torch.equal(bn.running_mean, ref_bn.running_mean) and torch.equal(
        bn.running_var, ref_bn.running_var
    )
    assert torch.equal(bn.running_mean, _bn(case, 5).running_mean)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_running_statistic_is_refused_in_eval_mode_as_torch(backend: str) -> None:
    """A module left with a running mean but no running variance: torch's BatchNorm refuses to run
    it in eval mode (it does not fall back to the batch statistics); so does bn_lif (torch's
    kernel refuses it, the triton path's statistics assert both)."""
    case = Case(training=False, backend=backend)
    bn, ref_bn = _bn(case, 5, on=True), _bn(case, 5)
    bn.running_var = ref_bn.running_var = None
    y = _inputs(case, 6)
    with pytest.raises(RuntimeError, match="running_var must be defined in evaluation mode"):
        ref_bn(y)
    with pytest.raises((ValueError, AssertionError)):
        lean.bn_lif(y.to(_dev(backend)), bn, CIFAR, 2, backend=backend)


def test_lean_backend_built_anew() -> None:
    """A backend entry built in the test (the registry's were built at import)."""
    b = _lean_common._LeanBackend("cpp", "_lean_eager", lambda device: (False, f"not on {device}"))
    assert b.name == "cpp" and repr(b) == "<gac_coding lean backend 'cpp'>"
    assert b.module() is _lean_eager
    assert b.ready(CPU) == (False, "not on cpu")
    assert b.covers(CPU, F64) == backends.REGISTRY["cpp"].covers(CPU, F64)
    assert b.pack_bits(torch.tensor([[1.0, 1.0]])).tolist() == [[3]]
