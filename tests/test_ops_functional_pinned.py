"""What the ops-functional area's mutation run found unpinned in ``gac_coding.ops.functional``.

The custom operators called directly (``torch.ops.gac_coding.lif`` / ``gated_lif`` on tensors that
require grad, so that their registered autograd runs ``lif_backward`` / ``gated_lif_backward``,
which eager calls of :func:`~gac_coding.ops.lif` never reach), their refusal of a backward pass
through a call made without ``save``, half-precision inputs (the membrane in float32, each
gradient in its own dtype), ``meta`` inputs (the fake kernels), the public ops while tracing
(``torch.compiler.is_compiling`` patched to ``True``, so that they take the operators or, for a
callable surrogate, :func:`lif_decomposed`), channels-last steps through ``gated_lif``, the
argument messages, what reaches the backend (the setting, ``save``, the dtypes of ``ta`` and
``sca``) and the forward-only decomposition of half inputs.

Values are judged against ``tests/slow_reference.py`` (a step-by-step loop under autograd) in
float64; dtypes and layouts against the rules the ops document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from slow_reference import slow_gated_lif, slow_lif
from torch import Tensor

from gac_coding.ops import LIFParams, _cpp, _eager, backends, gated_lif, lif
from gac_coding.ops.backends import BACKEND_ENV, REGISTRY
from gac_coding.ops.functional import inference_decompositions, lif_decomposed

F64 = torch.float64
DECAY, THRESHOLD = 0.8, 1.0
STEP = (2, 3, 2, 4)  # [B, C, H, W]: C, H and W all different, so a layout mix-up shows
KINDS = ("triangle", "rectangle")  # the operators' surrogate codes 0 and 1
LIF_MESSAGE = "gac_coding::lif: backward through a call made without save=True"
GATED_MESSAGE = "gac_coding::gated_lif: backward through a call made without save=True"


@pytest.fixture(autouse=True)
def _auto_everywhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No process override and no environment variable: ``"auto"`` is eager on the CPU."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    with backends.use_backend(None):
        yield


@pytest.fixture
def tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ops as ``torch.compile`` sees them: they take the custom operators (or, for a callable
    surrogate, the decomposition), here run eagerly."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """The ``"cpp"`` backend made of the eager functions (ready everywhere, nothing built); each
    call is recorded with its arguments."""
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(REGISTRY["cpp"], "_ready", lambda device: (True, ""))
    for fn in ("lif_forward", "lif_backward", "gated_forward", "gated_backward"):
        original = getattr(_eager, fn)

        def spy(*args: Any, _fn: str = fn, _original: Any = original) -> Any:
            calls.append((_fn, args))
            return _original(*args)

        monkeypatch.setattr(_cpp, fn, spy)
    return calls


def _input(shape: tuple[int, ...], seed: int = 3) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=F64) * 1.6


def _normal(shape: tuple[int, ...], seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64)


def _channels_last(x: Tensor) -> Tensor:
    """The same values with every ``[B, C, H, W]`` step stored channels-last."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)


def _layout(x: Tensor) -> str:
    """``"channels_last"`` for a channels-last ``[B, C, H, W]`` step or ``[T, B, C, H, W]`` of such
    steps (each a dense block), ``"contiguous"``, or ``"other"``."""
    if x.is_contiguous():
        return "contiguous"
    flat = x if x.dim() == 4 else x.flatten(0, 1)  # a view only when every step is a dense block
    if flat.data_ptr() == x.data_ptr() and flat.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "other"


def _seq(x: Tensor, steps: int) -> Tensor:
    return x.expand(steps, *x.shape) if steps else x


def _leaves(*ts: Tensor) -> list[Tensor]:
    return [t.detach().clone(memory_format=torch.preserve_format).requires_grad_() for t in ts]


def _gated_inputs(
    T: int, static: bool, sca_per_step: bool, channels_last: bool
) -> tuple[Tensor, Tensor, Tensor]:
    u = _input(STEP if static else (T, *STEP))
    ta = _normal((T, STEP[0]), seed=4)
    sca = _normal((T, *STEP) if sca_per_step else STEP, seed=5)
    if channels_last:
        u, sca = _channels_last(u), _channels_last(sca)
    return u, ta, sca


def test_the_inputs_make_the_reset_matter() -> None:
    """The inputs of the tests below spike and then sit near the threshold, so that a gradient
    through the reset (``detach_reset=False``) differs from one without it."""
    for static in (False, True):
        x = _input(STEP if static else (3, *STEP))
        grads = []
        for detach in (False, True):
            (leaf,) = _leaves(x)
            spikes, _ = slow_lif(_seq(leaf, 3 if static else 0), DECAY, THRESHOLD, "triangle", detach)
            grads.append(torch.autograd.grad(spikes, leaf, _normal(spikes.shape, seed=9))[0])
        assert 0.1 < float(spikes.detach().mean()) < 0.9
        assert (grads[0] - grads[1]).abs().max() > 1e-3


# ------------------------------------------------------------ the operators and their backward


@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("detach", [False, True])
def test_the_lif_operator_and_its_registered_backward_equal_the_slow_reference(
    steps: int, channels_last: bool, detach: bool
) -> None:
    """``torch.ops.gac_coding.lif`` with ``save=True`` on an input that requires grad: the spikes
    and the membrane (not differentiable), the gradient through ``lif_backward`` (a static input's
    is the sum over its steps), and the input's layout kept throughout."""
    T = steps or 3
    x = _input(STEP if steps else (T, *STEP))
    if channels_last:
        x = _channels_last(x)
    (leaf,) = _leaves(x)
    spikes, h = torch.ops.gac_coding.lif(leaf, steps, DECAY, THRESHOLD, 0, detach, True, "eager")
    (ref_leaf,) = _leaves(x)
    ref, membranes = slow_lif(_seq(ref_leaf, steps), DECAY, THRESHOLD, "triangle", detach)
    assert spikes.dtype == h.dtype == F64
    assert torch.equal(spikes, ref.detach())
    torch.testing.assert_close(h, membranes, rtol=1e-12, atol=1e-12)
    assert spikes.requires_grad and not h.requires_grad
    grad = _normal((T, *STEP), seed=9)
    (g,) = torch.autograd.grad(spikes, leaf, grad)
    (g_ref,) = torch.autograd.grad(ref, ref_leaf, grad)
    assert g.shape == x.shape
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    expected = "channels_last" if channels_last else "contiguous"
    assert (_layout(spikes), _layout(h), _layout(g)) == (expected,) * 3


@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("sca_per_step", [False, True])
def test_the_gated_operator_and_its_registered_backward_equal_the_slow_reference(
    steps: int, channels_last: bool, sca_per_step: bool
) -> None:
    """``torch.ops.gac_coding.gated_lif`` with ``save=True``: ``out`` (differentiable), the spikes,
    the gate and the membrane (not), the three gradients through ``gated_lif_backward``, layouts."""
    T = steps or 3
    detach = sca_per_step  # both settings of the reset, each with one kind of sca
    u, ta, sca = _gated_inputs(T, steps > 0, sca_per_step, channels_last)
    leaves = _leaves(u, ta, sca)
    out, fired, gate, h = torch.ops.gac_coding.gated_lif(
        *leaves, steps, DECAY, THRESHOLD, 1, detach, True, "eager"
    )
    ref_leaves = _leaves(u, ta, sca)
    r_out, r_fired, r_gate, membranes = slow_gated_lif(
        *ref_leaves, DECAY, THRESHOLD, "rectangle", detach, static=steps > 0
    )
    assert torch.equal(fired, r_fired.detach())
    tol = {"rtol": 1e-12, "atol": 1e-12}
    for got, want in ((out, r_out), (gate, r_gate), (h, membranes)):
        assert got.dtype == F64
        torch.testing.assert_close(got, want.detach(), **tol)
    assert [t.requires_grad for t in (out, fired, gate, h)] == [True, False, False, False]
    grad = _normal((T, *STEP), seed=9)
    grads = torch.autograd.grad(out, leaves, grad)
    r_grads = torch.autograd.grad(r_out, ref_leaves, grad)
    for name, got, want, leaf in zip(("u", "ta", "sca"), grads, r_grads, leaves, strict=True):
        assert got.shape == leaf.shape, name
        torch.testing.assert_close(got, want, **tol, msg=lambda m, n=name: f"grad {n}: {m}")
    expected = "channels_last" if channels_last else "contiguous"
    assert [_layout(t) for t in (out, fired, gate, h, grads[0], grads[2])] == [expected] * 6


@pytest.mark.parametrize("shape", [(1, 1), (3, 2, 4)])
def test_a_backward_through_an_operator_call_without_save_is_refused(shape: tuple[int, ...]) -> None:
    """``save=False`` keeps no membrane (an empty one is returned); a backward pass through such
    a call raises, naming the operator, also for a single element."""
    (x,) = _leaves(_input(shape))
    spikes, h = torch.ops.gac_coding.lif(x, 0, DECAY, THRESHOLD, 0, False, False, "eager")
    assert h.shape == (0,) and h.dtype == F64
    with pytest.raises(RuntimeError) as info:
        spikes.backward(torch.ones_like(spikes))
    assert str(info.value) == LIF_MESSAGE
    T, B = shape[:2]
    u, ta, sca = _leaves(_input(shape), _normal((T, B), seed=4), _normal(shape[1:], seed=5))
    out, _, _, h = torch.ops.gac_coding.gated_lif(u, ta, sca, 0, DECAY, THRESHOLD, 0, False, False, "eager")
    assert h.shape == (0,) and h.dtype == F64
    with pytest.raises(RuntimeError) as info:
        out.backward(torch.ones_like(out))
    assert str(info.value) == GATED_MESSAGE


@pytest.mark.parametrize("save", [True, False])
@pytest.mark.parametrize("static", [False, True])
def test_an_empty_batch_backpropagates_through_the_operators(save: bool, static: bool) -> None:
    """A batch of 0: with ``save=True`` an empty membrane is kept, with ``save=False`` none; either
    way the backward pass gives each input a gradient of its own shape and dtype (all zeros: no
    output depends on it), with no refusal (there is nothing the membrane was needed for)."""
    T = 3
    (x,) = _leaves(torch.zeros((0, 2) if static else (T, 0, 2), dtype=F64))
    spikes, h = torch.ops.gac_coding.lif(x, T if static else 0, DECAY, THRESHOLD, 0, False, save, "eager")
    assert spikes.shape == (T, 0, 2) and h.shape == ((T, 0, 2) if save else (0,))
    (g,) = torch.autograd.grad(spikes, x, torch.ones_like(spikes))
    assert g.shape == x.shape and g.dtype == F64
    u = torch.zeros((0, 2) if static else (T, 0, 2), dtype=F64)
    leaves = _leaves(u, torch.zeros(T, 0, dtype=F64), torch.zeros(0, 2, dtype=F64))  # ta: [T, B]
    out, _, _, h = torch.ops.gac_coding.gated_lif(
        *leaves, T if static else 0, DECAY, THRESHOLD, 0, False, save, "eager"
    )
    assert out.shape == (T, 0, 2) and h.shape == ((T, 0, 2) if save else (0,))
    grads = torch.autograd.grad(out, leaves, torch.ones_like(out))
    assert [g.shape for g in grads] == [t.shape for t in leaves]
    assert all(g.dtype == F64 and torch.equal(g, torch.zeros_like(g)) for g in grads)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_keep_the_membrane_in_float32_and_each_gradient_in_its_own_dtype(
    dtype: torch.dtype,
) -> None:
    """The operators return the membrane of a half input in float32 (the kernels' arithmetic) and
    the spikes, outputs and gates in the input's dtype; the backward operators give each gradient
    in the dtype of the gradient or tensor it belongs to (the LIF's: the float32 result rounded
    once)."""
    x = _input((3, *STEP)).to(dtype)
    spikes, h = torch.ops.gac_coding.lif(x, 0, DECAY, THRESHOLD, 0, False, True, "eager")
    assert (spikes.dtype, h.dtype) == (dtype, torch.float32)
    assert torch.equal(spikes, (h > THRESHOLD).to(dtype)) and 0 < float(spikes.mean()) < 1
    _, empty = torch.ops.gac_coding.lif(x, 0, DECAY, THRESHOLD, 0, False, False, "eager")
    assert empty.shape == (0,) and empty.dtype == torch.float32
    grad = _normal(tuple(spikes.shape), seed=9).to(dtype)
    for static in (False, True):
        g = torch.ops.gac_coding.lif_backward(grad, h, static, DECAY, THRESHOLD, 0, False, "eager")
        g32 = torch.ops.gac_coding.lif_backward(grad.float(), h, static, DECAY, THRESHOLD, 0, False, "eager")
        assert g.dtype == dtype and g32.dtype == torch.float32
        assert g.shape == (STEP if static else (3, *STEP)) and torch.equal(g, g32.to(dtype))

    ta, sca = _normal((3, STEP[0]), seed=4).to(dtype), _normal(STEP, seed=5).to(dtype)
    out, fired, gate, h = torch.ops.gac_coding.gated_lif(
        x, ta, sca, 0, DECAY, THRESHOLD, 0, False, True, "eager"
    )
    assert [t.dtype for t in (out, fired, gate, h)] == [dtype, dtype, dtype, torch.float32]
    args = (h, out, gate, ta, sca, False, DECAY, THRESHOLD, 0, False, "eager")
    # (the eager backend multiplies the half gradient by the half gate in half precision, so the
    # values are not those of a float32 gradient rounded once: only the dtypes are compared)
    assert [g.dtype for g in torch.ops.gac_coding.gated_lif_backward(grad, *args)] == [dtype] * 3
    assert torch.ops.gac_coding.gated_lif_backward(grad.float(), *args)[0].dtype == torch.float32
    # through autograd too: every gradient in its input's dtype
    leaves = _leaves(x, ta, sca)
    out = torch.ops.gac_coding.gated_lif(*leaves, 0, DECAY, THRESHOLD, 0, False, True, "eager")[0]
    assert [g.dtype for g in torch.autograd.grad(out, leaves, grad)] == [dtype] * 3


def _real_and_meta(fn: Any, *args: Any) -> list[tuple[Tensor, Tensor]]:
    real = fn(*args)
    meta = fn(*(a.to("meta") if isinstance(a, Tensor) else a for a in args))
    real = list(real) if isinstance(real, (tuple, list)) else [real]
    meta = list(meta) if isinstance(meta, (tuple, list)) else [meta]
    return list(zip(real, meta, strict=True))


@pytest.mark.parametrize("dtype", [F64, torch.float16])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_meta_inputs_give_meta_outputs_shaped_as_the_real_ones(
    dtype: torch.dtype, static: bool, channels_last: bool
) -> None:
    """The fake kernels (what ``torch.compile`` and ``torch.export`` trace, and what a ``meta``
    input runs) give outputs on the input's device with the real outputs' shapes, dtypes and
    strides, for both operators and both backward operators, with and without ``save``."""
    T = 3
    steps = T if static else 0
    u, ta, sca = _gated_inputs(T, static, False, channels_last)
    u, ta, sca = u.to(dtype), ta.to(dtype), sca.to(dtype)
    pairs = []
    for save in (False, True):
        pairs += _real_and_meta(torch.ops.gac_coding.lif, u, steps, DECAY, THRESHOLD, 0, False, save, "eager")
        gated = (u, ta, sca, steps, DECAY, THRESHOLD, 1, True, save, "eager")
        pairs += _real_and_meta(torch.ops.gac_coding.gated_lif, *gated)
    spikes, h = torch.ops.gac_coding.lif(u, steps, DECAY, THRESHOLD, 0, False, True, "eager")
    grad = torch.ones_like(spikes)
    pairs += _real_and_meta(
        torch.ops.gac_coding.lif_backward, grad, h, static, DECAY, THRESHOLD, 0, True, "eager"
    )
    out, _, gate, h = torch.ops.gac_coding.gated_lif(
        u, ta, sca, steps, DECAY, THRESHOLD, 0, False, True, "eager"
    )
    backward = (grad, h, out, gate, ta, sca, static, DECAY, THRESHOLD, 0, False, "eager")
    pairs += _real_and_meta(torch.ops.gac_coding.gated_lif_backward, *backward)
    assert len(pairs) == 2 * (2 + 4) + 1 + 3
    for real, meta in pairs:
        assert real.device.type == "cpu" and meta.device.type == "meta"
        assert (meta.shape, meta.dtype, meta.stride()) == (real.shape, real.dtype, real.stride())


# ------------------------------------------------------------------ the public ops while tracing


def _rectangle(d: Tensor) -> Tensor:
    """The rectangle surrogate as a user's callable (no kernel code: the decomposition runs)."""
    return (d.abs() < 0.5).to(d.dtype)


@pytest.mark.parametrize("surrogate", ["rectangle", _rectangle])
@pytest.mark.parametrize("steps", [None, 1, 3])
@pytest.mark.parametrize("detach", [False, True])
def test_lif_while_tracing_equals_the_slow_reference(
    tracing: None, surrogate: Any, steps: int | None, detach: bool
) -> None:
    """Under tracing ``lif`` runs the operator (a named surrogate) or :func:`lif_decomposed` (a
    callable); spikes and gradients are the slow reference's either way."""
    T = steps or 3
    x = _input(STEP if steps else (T, *STEP))
    (leaf,) = _leaves(x)
    spikes = lif(leaf, LIFParams(DECAY, THRESHOLD, surrogate, detach), steps=steps, backend="eager")
    (ref_leaf,) = _leaves(x)
    ref, _ = slow_lif(_seq(ref_leaf, steps or 0), DECAY, THRESHOLD, "rectangle", detach)
    assert spikes.shape == ref.shape and torch.equal(spikes, ref.detach())
    grad = _normal((T, *STEP), seed=9)
    (g,) = torch.autograd.grad(spikes, leaf, grad)
    (g_ref,) = torch.autograd.grad(ref, ref_leaf, grad)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


def _assert_gated_equals_slow(
    result: Any, leaves: list[Tensor], kind: str, detach: bool, static: bool
) -> tuple[Tensor, ...]:
    """``gated_lif``'s ``(out, fired, gate)`` on ``leaves`` against the slow reference on fresh
    leaves of the same values: spikes equal, outputs, gates and the gradients of ``(u, ta, sca)``
    to 1e-12 (float64); returns the gradients."""
    out, fired, gate = result
    ref_leaves = _leaves(*leaves)
    r_out, r_fired, r_gate, _ = slow_gated_lif(*ref_leaves, DECAY, THRESHOLD, kind, detach, static)
    assert torch.equal(fired, r_fired.detach())
    torch.testing.assert_close(out, r_out.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gate, r_gate.detach(), rtol=1e-12, atol=1e-12)
    grad = _normal(tuple(out.shape), seed=9)
    grads = torch.autograd.grad(out, leaves, grad)
    for got, want in zip(grads, torch.autograd.grad(r_out, ref_leaves, grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    return grads


@pytest.mark.parametrize("surrogate", ["rectangle", _rectangle])
@pytest.mark.parametrize("static", [False, True])
def test_gated_lif_while_tracing_equals_the_slow_reference(
    tracing: None, surrogate: Any, static: bool
) -> None:
    """Under tracing ``gated_lif`` runs the operator or the decomposition: three outputs, the slow
    reference's values and gradients (the reset detached with a sequence, not with a static u)."""
    T, detach = 3, not static
    u, ta, sca = _gated_inputs(T, static, True, False)
    leaves = _leaves(u, ta, sca)
    result = gated_lif(
        *leaves, LIFParams(DECAY, THRESHOLD, surrogate, detach), static=static, backend="eager"
    )
    assert len(result) == 3
    _assert_gated_equals_slow(result, leaves, "rectangle", detach, static)


def test_the_backend_setting_reaches_the_operators_while_tracing(
    tracing: None, stand_in: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """The ``backend`` argument is handed to the operators (here ``"cpp"``, a stand-in made of the
    eager functions, while the process setting ``"auto"`` would run eager)."""
    (x,) = _leaves(_input((3, *STEP)))
    spikes = lif(x, LIFParams(DECAY, THRESHOLD), backend="cpp")
    spikes.backward(torch.ones_like(spikes))
    u, ta, sca = _leaves(*_gated_inputs(3, False, False, False))
    out = gated_lif(u, ta, sca, LIFParams(DECAY, THRESHOLD), backend="cpp")[0]
    out.backward(torch.ones_like(out))
    assert [name for name, _ in stand_in] == [
        "lif_forward",
        "lif_backward",
        "gated_forward",
        "gated_backward",
    ]


# ------------------------------------------------------------------------- what reaches a backend


def test_a_backward_pass_falls_back_naming_the_setting_of_its_call(
    stand_in: list[tuple[str, tuple[Any, ...]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backward pass starts with the backend that ran the forward pass; when it fails there,
    the warning of the fallback names the call's setting."""

    def refuse(*args: Any) -> Any:
        raise RuntimeError("stand-in refuses")

    monkeypatch.setattr(_cpp, "lif_backward", refuse)
    monkeypatch.setattr(_cpp, "gated_backward", refuse)
    (x,) = _leaves(_input((3, *STEP)))
    u, ta, sca = _leaves(*_gated_inputs(3, False, False, False))
    spikes = lif(x, LIFParams(DECAY, THRESHOLD), backend="cpp,eager")
    out = gated_lif(u, ta, sca, LIFParams(DECAY, THRESHOLD), backend="cpp,eager")[0]
    assert [name for name, _ in stand_in] == ["lif_forward", "gated_forward"]
    for result, function in ((spikes, "lif_backward"), (out, "gated_backward")):
        with pytest.warns(RuntimeWarning) as seen:
            result.backward(torch.ones_like(result))
        assert [str(w.message) for w in seen] == [
            "gac_coding: 'cpp' failed: RuntimeError: stand-in refuses; backend 'eager' ran this "
            f"{function} call instead (setting 'cpp,eager'; the next call tries 'cpp' again)"
        ]
    assert x.grad is not None and u.grad is not None


def _saves(calls: list[tuple[str, tuple[Any, ...]]]) -> list[bool]:
    return [args[-1] for name, args in calls if name in ("lif_forward", "gated_forward")]


def test_the_membrane_is_kept_only_for_a_backward_pass(stand_in: list[tuple[str, tuple[Any, ...]]]) -> None:
    """``save`` (the T-sized membrane kept for the backward pass) only where autograd records and
    an input requires grad: not under ``no_grad``, not for inputs that need no gradient."""
    p = LIFParams(DECAY, THRESHOLD)
    x = _input((3, *STEP))
    u, ta, sca = _gated_inputs(3, False, False, False)
    lif(x, p, backend="cpp")
    gated_lif(u, ta, sca, p, backend="cpp")
    with torch.no_grad():
        lif(x.requires_grad_(), p, backend="cpp")
        gated_lif(*_leaves(u, ta, sca), p, backend="cpp")
    assert _saves(stand_in) == [False] * 4
    stand_in.clear()
    lif(x, p, backend="cpp")
    for i in range(3):  # one of u, ta, sca requiring grad is enough
        inputs = [u, ta, sca]
        inputs[i] = _leaves(inputs[i])[0]
        gated_lif(*inputs, p, backend="cpp")
    assert _saves(stand_in) == [True] * 4


@pytest.mark.parametrize("which", [0, 1, 2])
def test_the_gradient_of_a_single_input_that_requires_grad(which: int) -> None:
    """Only one of ``u``, ``ta``, ``sca`` requires grad: its gradient is the slow reference's."""
    tensors = list(_gated_inputs(3, False, True, False))
    inputs = list(tensors)
    inputs[which] = _leaves(tensors[which])[0]
    out = gated_lif(*inputs, LIFParams(DECAY, THRESHOLD, "rectangle", True))[0]
    refs = list(tensors)
    refs[which] = _leaves(tensors[which])[0]
    r_out = slow_gated_lif(*refs, DECAY, THRESHOLD, "rectangle", True, False)[0]
    grad = _normal(tuple(out.shape), seed=9)
    (g,) = torch.autograd.grad(out, inputs[which], grad)
    (g_ref,) = torch.autograd.grad(r_out, refs[which], grad)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


def test_the_scores_reach_the_backend_in_the_dtype_of_u(stand_in: list[tuple[str, tuple[Any, ...]]]) -> None:
    """``ta`` and ``sca`` are computed with in the dtype of ``u`` (the C++ kernels require one
    dtype): float64 scores of a float32 ``u`` arrive as float32, and get float64 gradients."""
    u, ta, sca = _gated_inputs(3, False, False, False)
    u = u.float().requires_grad_()
    ta, sca = _leaves(ta, sca)
    out = gated_lif(u, ta, sca, LIFParams(DECAY, THRESHOLD), backend="cpp")[0]
    out.backward(torch.ones_like(out))
    (_, args), (_, back) = stand_in
    assert [t.dtype for t in args[:3]] == [torch.float32] * 3
    assert [t.dtype for t in back[4:6]] == [torch.float32] * 2
    assert (u.grad.dtype, ta.grad.dtype, sca.grad.dtype) == (torch.float32, F64, F64)


# ----------------------------------------------------------------------------- the public ops


def _refusals() -> list[tuple[Any, type, str]]:
    p = LIFParams()
    f = torch.zeros(3, 2, dtype=F64)
    step = f[0]
    return [
        (lambda: lif([1.0], p), TypeError, "x: expected a torch.Tensor, got list"),
        (lambda: lif(f.long(), p), TypeError, "x: expected a floating-point tensor, got dtype torch.int64"),
        (lambda: lif(f, {"decay": 0.5}), TypeError, "params: expected a LIFParams, got dict"),
        (lambda: lif(f[0, 0], p), ValueError, "x: expected a sequence [T, B, ...] with T >= 1, got shape ()"),
        (
            lambda: lif(f[:0], p),
            ValueError,
            "x: expected a sequence [T, B, ...] with T >= 1, got shape (0, 2)",
        ),
        (lambda: lif(f, p, steps=0), ValueError, "steps: expected an integer >= 1, got 0"),
        (lambda: gated_lif([1.0], f, step, p), TypeError, "u: expected a torch.Tensor, got list"),
        (lambda: gated_lif(f, (1.0,), step, p), TypeError, "ta: expected a torch.Tensor, got tuple"),
        (lambda: gated_lif(f, f, 1.0, p), TypeError, "sca: expected a torch.Tensor, got float"),
        (
            lambda: gated_lif(f.long(), f, step, p),
            TypeError,
            "u: expected a floating-point tensor, got dtype torch.int64",
        ),
        (
            lambda: gated_lif(f, f.int(), step, p),
            TypeError,
            "ta: expected a floating-point tensor, got dtype torch.int32",
        ),
        (
            lambda: gated_lif(f, f, step.bool(), p),
            TypeError,
            "sca: expected a floating-point tensor, got dtype torch.bool",
        ),
        (lambda: gated_lif(f, f, step, [0.5]), TypeError, "params: expected a LIFParams, got list"),
        (lambda: gated_lif(f, step, step, p), ValueError, "ta: expected [T, B], got shape (2,)"),
        (
            lambda: gated_lif(f[0, 0], f, step, p),
            ValueError,
            "u: expected T=3 steps to match ta, got shape ()",
        ),
        (
            lambda: gated_lif(torch.zeros(4, 2), f, step, p),
            ValueError,
            "u: expected T=3 steps to match ta, got shape (4, 2)",
        ),
        (
            lambda: gated_lif(f[:, 0], f, step, p),
            ValueError,
            "u: expected batch size 2 to match ta, got shape (3,)",
        ),
        (
            lambda: gated_lif(torch.zeros(3, 5), f, step, p),
            ValueError,
            "u: expected batch size 2 to match ta, got shape (3, 5)",
        ),
        (
            lambda: gated_lif(f[0, 0], f, step, p, static=True),
            ValueError,
            "u: expected batch size 2 to match ta, got shape ()",
        ),
        (
            lambda: gated_lif(torch.zeros(5), f, step, p, static=True),
            ValueError,
            "u: expected batch size 2 to match ta, got shape (5,)",
        ),
        (
            lambda: gated_lif(f, f, torch.zeros(4, 2), p),
            ValueError,
            "sca: expected shape (2,) or (3, 2), got (4, 2)",
        ),
        (lambda: gated_lif(f, f, f[:, 0], p), ValueError, "sca: expected shape (2,) or (3, 2), got (3,)"),
    ]


def test_the_public_ops_refuse_bad_arguments_naming_them() -> None:
    """Each refusal as a whole message: the argument, what was expected, what arrived."""
    for call, exc, message in _refusals():
        with pytest.raises(exc) as info:
            call()
        assert type(info.value) is exc and str(info.value) == message


def test_a_sequence_of_one_neuron_is_a_sequence() -> None:
    """``lif`` of a ``[T]`` input: one neuron over ``T`` steps, as the slow reference."""
    (x,) = _leaves(torch.tensor([0.6, 0.6, 0.6, 1.2], dtype=F64))
    spikes = lif(x, LIFParams(0.5, 1.0))
    (ref_leaf,) = _leaves(x)
    ref, _ = slow_lif(ref_leaf, 0.5, 1.0, "triangle", False)
    assert spikes.tolist() == ref.tolist() == [0.0, 0.0, 1.0, 1.0]
    grad = torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=F64)
    torch.testing.assert_close(
        torch.autograd.grad(spikes, x, grad)[0],
        torch.autograd.grad(ref, ref_leaf, grad)[0],
        rtol=1e-12,
        atol=1e-12,
    )


class _Cut(torch.autograd.Function):
    """The identity whose backward pass hands on no gradient (``None``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> None:  # type: ignore[override]
        return None


def test_gated_lif_marks_spikes_and_gate_constant_and_passes_no_gradient_on_as_none() -> None:
    """The spikes and the gate need no gradient; where no gradient reaches ``out`` (undefined, as
    after ``_Cut``), the inputs get none either, not zeros computed over every step."""
    u, ta, sca = _leaves(*_gated_inputs(3, False, False, False))
    out, fired, gate = gated_lif(u, ta, sca, LIFParams(DECAY, THRESHOLD))
    assert (out.requires_grad, fired.requires_grad, gate.requires_grad) == (True, False, False)
    grads = torch.autograd.grad(_Cut.apply(out).sum(), (u, ta, sca), allow_unused=True)
    assert grads == (None, None, None)


@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("sca_per_step", [False, True])
def test_gated_lif_on_channels_last_steps_equals_the_slow_reference_and_keeps_the_layout(
    steps: int, sca_per_step: bool
) -> None:
    """Channels-last steps (a static ``u`` of one step too): the slow reference's values and
    gradients, and the outputs and the gradients of ``u`` and ``sca`` channels-last."""
    T = steps or 3
    u, ta, sca = _gated_inputs(T, steps > 0, sca_per_step, True)
    leaves = _leaves(u, ta, sca)
    p = LIFParams(DECAY, THRESHOLD, "triangle", sca_per_step)
    out, fired, gate = gated_lif(*leaves, p, static=steps > 0)
    grads = _assert_gated_equals_slow((out, fired, gate), leaves, "triangle", sca_per_step, steps > 0)
    assert [_layout(t) for t in (out, fired, gate, grads[0], grads[2])] == ["channels_last"] * 5


# ------------------------------------------------------------------------------ decompositions


@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("detach", [False, True])
def test_lif_decomposed_equals_the_slow_reference(steps: int, detach: bool) -> None:
    """:func:`lif_decomposed`: spikes and membranes (static inputs of one step too), gradients
    through the reset unless ``detach_reset``, and the forward-only form's values."""
    T = steps or 3
    x = _input(STEP if steps else (T, *STEP))
    (leaf,) = _leaves(x)
    p = LIFParams(DECAY, THRESHOLD, "triangle", detach)
    spikes, h = lif_decomposed(leaf, steps, p)
    (ref_leaf,) = _leaves(x)
    ref, membranes = slow_lif(_seq(ref_leaf, steps), DECAY, THRESHOLD, "triangle", detach)
    assert torch.equal(spikes, ref.detach()) and torch.equal(h.detach(), membranes)
    grad = _normal((T, *STEP), seed=9)
    torch.testing.assert_close(
        torch.autograd.grad(spikes, leaf, grad)[0],
        torch.autograd.grad(ref, ref_leaf, grad)[0],
        rtol=1e-12,
        atol=1e-12,
    )
    plain_spikes, plain_h = lif_decomposed(x, steps, p, differentiable=False)
    assert torch.equal(plain_spikes, spikes.detach()) and torch.equal(plain_h, membranes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("save", [False, True])
def test_the_inference_decompositions_keep_a_half_membrane_in_float32(dtype: torch.dtype, save: bool) -> None:
    """The forward-only table computes a half input's membrane in float32 (as the Triton backend
    does): spikes in the input's dtype, membranes those of the slow loop in float32, and an empty
    float32 membrane without ``save``."""
    x = _input((3, *STEP)).to(dtype)
    table = inference_decompositions()
    spikes, h = table[torch.ops.gac_coding.lif.default](x, 0, DECAY, THRESHOLD, 0, False, save)
    ref, membranes = slow_lif(x.float(), DECAY, THRESHOLD, "triangle", False)
    assert spikes.dtype == dtype and torch.equal(spikes, ref.to(dtype))
    assert h.dtype == torch.float32
    assert torch.equal(h, membranes) if save else h.shape == (0,)
    ta, sca = _normal((3, STEP[0]), seed=4).to(dtype), _normal(STEP, seed=5).to(dtype)
    out, fired, gate, h = table[torch.ops.gac_coding.gated_lif.default](
        x, ta, sca, 0, DECAY, THRESHOLD, 0, False, save
    )
    assert [t.dtype for t in (out, fired, gate, h)] == [dtype, dtype, dtype, torch.float32]
    assert torch.equal(fired, ref.to(dtype))
    assert torch.equal(h, membranes) if save else h.shape == (0,)
