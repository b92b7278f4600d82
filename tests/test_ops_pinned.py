"""What the ops-eager area's mutation run found unpinned in the eager backend and its plumbing.

``gac_coding.ops._eager``, ``backends``, ``layout`` and ``params``: the eager kernels at one step
and under another default device, a callable surrogate of another dtype, the layout of the steps
the eager backend allocates, which backend a call plans, checks and falls back to (with the
messages and where the warning points), ``module_backends``, and the settings' messages. The
numbers are judged against ``lif_reference`` (a slow loop under autograd) and values by hand; the
backend rules against the module's docstrings, with stand-in backends where a rule needs one that
fails or is not ready.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from slow_reference import slow_lif
from torch import nn
from warning_frames import warnings_pointing

import gac_coding as gac
from gac_coding.neuron import lif_reference
from gac_coding.ops import BackendError, LIFParams, _cpp, _eager, _triton, backends, gated_lif, lif
from gac_coding.ops.backends import (
    BACKEND_ENV,
    REGISTRY,
    BackendSetting,
    Plan,
    backend_module,
    check_backend,
    module_backends,
    resolve,
)
from gac_coding.ops.layout import empty_steps, is_channels_last_step
from gac_coding.ops.params import resolve_surrogate, surrogate_rectangle

F64 = torch.float64


@pytest.fixture(autouse=True)
def _auto_everywhere(monkeypatch: pytest.MonkeyPatch):
    """No process override and no environment variable: ``"auto"`` is the process setting."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    with backends.use_backend(None):
        yield


def _input(shape: tuple[int, ...], seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=F64) * 1.6


def _by_hand(x: torch.Tensor, decay: float, threshold: float) -> torch.Tensor:
    """The spikes of the slow step-by-step LIF of the tests (its forward values)."""
    return slow_lif(x, decay, threshold, "triangle", False)[0].detach()


# ----------------------------------------------------------------------------- the eager kernels


def test_eager_is_always_available() -> None:
    """``available()`` of the eager module: ``(True, "")`` (its docstring), on any device."""
    assert _eager.available() == (True, "")
    assert _eager.available(torch.device("meta")) == (True, "")


@pytest.mark.parametrize("static", [False, True])
def test_one_step_without_a_backward_pass(static: bool) -> None:
    """``T = 1`` under ``no_grad``: the membrane is one scratch step (nothing saved)."""
    x = _input((1, 2, 3)) + 0.5
    ta = torch.tensor([[0.5, -1.0]], dtype=F64)
    sca = _input((2, 3), seed=6)
    expected = _by_hand(x, 0.5, 1.0)
    with torch.no_grad():
        if static:
            s = lif(x[0], LIFParams(), steps=1, backend="eager")
            out, fired, gate = gated_lif(x[0], ta, sca, LIFParams(), static=True, backend="eager")
        else:
            s = lif(x, LIFParams(), backend="eager")
            out, fired, gate = gated_lif(x, ta, sca, LIFParams(), backend="eager")
    torch.testing.assert_close(s, expected, rtol=0, atol=0)
    torch.testing.assert_close(fired, expected, rtol=0, atol=0)
    m = torch.sigmoid(ta[:, :, None] * sca)
    torch.testing.assert_close(gate, m, rtol=1e-15, atol=0)
    torch.testing.assert_close(out, m * expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("sca_per_step", [False, True])
def test_gated_lif_under_another_default_device_stays_on_the_input_device(sca_per_step: bool) -> None:
    """CPU tensors under a ``meta`` default device (``torch.device`` as a context): values and
    all three gradients on the CPU, equal to ``lif_reference`` gated by hand."""
    T, B, N = 3, 2, 4
    u = _input((T, B, N))
    ta = torch.tensor([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]], dtype=F64)
    sca = _input((T, B, N) if sca_per_step else (B, N), seed=8) - 0.8
    w = _input((T, B, N), seed=9)

    def grads(fn: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in (u, ta, sca)]
        (fn(*leaves) * w).sum().backward()
        return [fn(*leaves).detach(), *(t.grad for t in leaves)]  # type: ignore[misc]

    def reference(u_: torch.Tensor, ta_: torch.Tensor, sca_: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(ta_[:, :, None] * sca_) * lif_reference(u_)

    expected = grads(reference)
    with torch.device("meta"):
        got = grads(lambda *a: gated_lif(*a, LIFParams(), backend="eager")[0])
        spikes = lif(u, LIFParams(), backend="eager")
    for g, e in zip(got, expected, strict=True):
        assert g.device.type == "cpu"
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)
    assert spikes.device.type == "cpu"
    torch.testing.assert_close(spikes, _by_hand(u, 0.5, 1.0), rtol=0, atol=0)


@pytest.mark.parametrize("static", [False, True])
def test_the_eager_functions_allocate_on_the_device_of_their_inputs(static: bool) -> None:
    """The backend's functions called directly under a ``meta`` default device (autograd's
    backward pass runs outside that context, so the test above cannot see the backward's
    allocations): results on the CPU, equal to ``lif_reference`` gated by hand."""
    T, B, N = 3, 2, 4
    u = _input((B, N) if static else (T, B, N))
    ta = torch.tensor([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]], dtype=F64)
    sca = _input((B, N), seed=8) - 0.8
    w = _input((T, B, N), seed=9)
    leaves = [t.clone().requires_grad_() for t in (u, ta, sca)]
    seq = leaves[0].expand(T, B, N) if static else leaves[0]
    ref = torch.sigmoid(leaves[1][:, :, None] * leaves[2]) * lif_reference(seq)
    (ref * w).sum().backward()
    ref_spikes = lif_reference(seq.detach())
    steps = T if static else 0
    with torch.device("meta"):
        out, fired, gate, h = _eager.gated_forward(u, ta, sca, steps, 0.5, 1.0, True)
        assert h is not None
        grads = _eager.gated_backward(w, h, out, gate, ta, sca, static, 0.5, 1.0, 0, False)
        spikes, h2 = _eager.lif_forward(u, steps, 0.5, 1.0, True)
        assert h2 is not None
        grad_x = _eager.lif_backward(w, h2, static, 0.5, 1.0, 0, False)
    for got, expected in (
        (out, ref),
        (spikes, ref_spikes),
        *zip(grads, (t.grad for t in leaves), strict=True),
    ):
        assert got.device.type == "cpu"
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    assert grad_x.device.type == "cpu"
    x = u.clone().requires_grad_()
    (lif_reference(x.expand(T, B, N) if static else x) * w).sum().backward()
    torch.testing.assert_close(grad_x, x.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("kind", ["bool", "float32"])
def test_a_callable_surrogate_of_another_dtype_gives_the_reference_gradient(
    kind: str, static: bool, detach_reset: bool
) -> None:
    """A callable may return a bool mask (``|d| < 0.5``) or float32 values for a float64
    membrane; the gradient is the reference's, with no float32 rounding. (It raised deep in torch
    for a bool mask on a static input or with ``detach_reset``, and rounded to float32 there.)"""
    if kind == "bool":

        def fn(d: torch.Tensor) -> torch.Tensor:
            return d.abs() < 0.5
    else:

        def fn(d: torch.Tensor) -> torch.Tensor:
            return (1.0 - d.abs()).clamp(min=0.0).to(torch.float32)

    T = 4
    x = _input((T, 2, 3), seed=11)
    w = _input((T, 2, 3), seed=12)
    p = LIFParams(surrogate=fn, detach_reset=detach_reset)
    a = (x[0] if static else x).clone().requires_grad_()
    (lif(a, p, steps=T if static else None, backend="eager") * w).sum().backward()
    b = (x[0] if static else x).clone().requires_grad_()
    seq = b.unsqueeze(0).expand(T, *b.shape) if static else b
    (lif_reference(seq, surrogate=fn, detach_reset=detach_reset) * w).sum().backward()
    assert a.grad is not None and a.grad.dtype == F64
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------------- the layout


def test_a_step_counts_as_channels_last_only_when_it_is_not_also_contiguous() -> None:
    plain = torch.empty(2, 3, 4, 5)
    last = plain.to(memory_format=torch.channels_last)
    assert not is_channels_last_step(plain) and is_channels_last_step(last)
    # one channel (or 1x1 pixels): both layouts at once, which is plainly contiguous
    for shape in ((2, 1, 4, 5), (2, 3, 1, 1)):
        both = torch.empty(shape).to(memory_format=torch.channels_last)
        assert both.is_contiguous() and both.is_contiguous(memory_format=torch.channels_last)
        assert not is_channels_last_step(both)
    assert not is_channels_last_step(torch.empty(2, 3, 4))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_empty_steps_keep_the_layout_dtype_and_device_of_the_step(dtype: torch.dtype) -> None:
    """``[T, *step.shape]``; a channels-last step gives channels-last steps, each a dense block,
    whose ``flatten(0, 1)`` is a channels-last view; the step's dtype and device, whatever the
    default device."""
    B, C, H, W, T = 2, 3, 4, 5, 3
    last = torch.zeros(B, C, H, W, dtype=dtype).to(memory_format=torch.channels_last)
    three = torch.zeros(B, C, H, dtype=dtype)
    with torch.device("meta"):
        out = empty_steps(last, T)
        plain = empty_steps(three, T)
    assert out.shape == (T, B, C, H, W) and out.dtype == dtype and out.device.type == "cpu"
    # strides by hand: channels fastest, then W, H, the batch, the step
    assert out.stride() == (B * H * W * C, H * W * C, 1, W * C, C)
    flat = out.flatten(0, 1)
    assert flat.data_ptr() == out.data_ptr() and flat.shape == (T * B, C, H, W)
    assert flat.is_contiguous(memory_format=torch.channels_last) and not flat.is_contiguous()
    assert all(is_channels_last_step(out[t]) for t in range(T))
    assert plain.shape == (T, B, C, H) and plain.dtype == dtype and plain.device.type == "cpu"
    assert plain.is_contiguous()


# ------------------------------------------------------------------------------ the backends


class _Fake:
    """A stand-in backend: ``ready`` says ``why`` (ready when empty), ``lif_forward`` raises
    ``fails`` or returns ``name``; it records the devices ``ready`` was asked about."""

    def __init__(self, name: str, why: str = "", fails: BaseException | None = None) -> None:
        self.name, self.why, self.fails = name, why, fails
        self.asked: list[object] = []

    def ready(self, device: torch.device) -> tuple[bool, str]:
        self.asked.append(device)
        return (not self.why), self.why

    def lif_forward(self, *args: Any) -> str:
        if self.fails is not None:
            raise self.fails
        return self.name


def _warnings_of(monkeypatch: pytest.MonkeyPatch, fn: Callable[[], object]) -> list[tuple[str, str]]:
    """The message and the function each warning of ``fn()`` points at (all ``RuntimeWarning``)."""
    seen = warnings_pointing(monkeypatch, fn)
    assert all(category is RuntimeWarning for _, _, category in seen)
    return [(message, where) for message, where, _ in seen]


def test_call_falls_back_with_a_warning_at_its_caller_naming_every_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first two backends of ``"cpp,triton,eager"`` fail (one not ready, one raising a long,
    multi-line error, cut to 300 characters on one line); eager runs and the warning, pointing at
    the code that called ``call``, names both reasons, the setting and the backend tried next."""
    x = torch.zeros(2, dtype=F64)
    long = "a b\n" + "x" * 400
    registry = {
        "cpp": _Fake("cpp", why="no compiler"),
        "triton": _Fake("triton", fails=RuntimeError(long)),
        "eager": _Fake("eager"),
    }
    plan = Plan("cpp,triton,eager", ("cpp", "triton", "eager"))
    results = []

    def library() -> None:
        results.append(backends.call(plan, "lif_forward", x, registry=registry))

    seen = _warnings_of(monkeypatch, library)
    assert results == [("eager", "eager")]
    summary = ("a b " + "x" * 400)[:300]
    assert seen == [
        (
            "gac_coding: 'cpp' cannot run here: no compiler; 'triton' failed: RuntimeError: "
            f"{summary}; backend 'eager' ran this lif_forward call instead (setting "
            "'cpp,triton,eager'; the next call tries 'cpp' again)",
            "library",
        )
    ]
    assert registry["cpp"].asked == [x.device] and registry["eager"].asked == [x.device]


def test_call_raises_naming_every_failure_and_hints_at_eager_only_when_eager_was_not_tried() -> None:
    x = torch.zeros(2, dtype=F64)
    registry = {"cpp": _Fake("cpp", why="no compiler"), "eager": _Fake("eager", fails=ValueError("bad"))}
    with pytest.raises(BackendError) as info:
        backends.call(Plan("cpp,eager", ("cpp", "eager")), "lif_forward", x, registry=registry)
    assert str(info.value) == (
        "gac_coding: no backend could run lif_forward (setting 'cpp,eager'): 'cpp' cannot run "
        "here: no compiler; 'eager' failed: ValueError: bad"
    )
    assert isinstance(info.value.__cause__, ValueError)
    registry = {"cpp": _Fake("cpp", fails=ValueError("bad")), "triton": _Fake("triton", why="off")}
    with pytest.raises(BackendError) as info:
        backends.call(Plan("cpp,triton", ("cpp", "triton")), "lif_forward", x, registry=registry)
    assert str(info.value) == (
        "gac_coding: no backend could run lif_forward (setting 'cpp,triton'): 'cpp' failed: "
        "ValueError: bad; 'triton' cannot run here: off; use backend='cpp,eager' to fall back to "
        "eager (with a warning), or 'eager'"
    )


def test_plans_name_the_setting_they_come_from_and_try_eager_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Plan(setting, names)``: the call's setting, the process override's for ``"auto"``; eager
    alone (the very tuple of the fast path) where nothing else covers the tensor."""
    x = torch.zeros(2, dtype=F64)
    assert backends.plan("auto", x, 0) == Plan("auto", ("eager",))
    assert backends.plan("auto", x, 0).names is backends._EAGER
    assert backends.plan("cpp,eager", x, 0) == Plan("cpp,eager", ("cpp", "eager"))
    assert backends.plan("cpp,eager", x.half(), 1) == Plan("cpp,eager", ("eager",))
    assert backends.plan("cpp", x, None) == Plan("cpp", ("eager",))  # a callable surrogate
    with backends.use_backend("cpp"):
        assert backends.plan("auto", x, None) == Plan("cpp", ("eager",))
        assert backends.plan("auto", x, 0) == Plan("cpp", ("cpp",))
    # "auto" on a CUDA tensor with triton installed: triton, then eager
    monkeypatch.setattr(backends, "_triton_installed", lambda: True)
    cuda = torch.device("cuda")
    assert backends._plan("auto", cuda, torch.float32, 0) == Plan("auto", ("triton", "eager"))
    assert backends._plan("auto", cuda, torch.int64, 0) == Plan("auto", ("eager",))


def test_ready_is_true_with_no_reason_and_asks_about_the_device_of_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ready(device)`` is ``(True, "")`` when the backend can run (``Backend.ready``); the
    triton backend outside its interpreter refuses CPU tensors for that reason (not for want of
    a CUDA device), in ``resolve`` and in a call alike."""
    cpu = torch.device("cpu")
    assert REGISTRY["eager"].ready(cpu) == (True, "")
    monkeypatch.setattr(_cpp, "load", lambda: object())
    assert REGISTRY["cpp"].ready(cpu) == (True, "")
    monkeypatch.setattr(_triton, "interpreted", lambda: False)
    ok, why = REGISTRY["triton"].ready(cpu)
    assert not ok and why.startswith("triton runs CPU tensors only in its interpreter")
    with pytest.raises(BackendError, match="triton runs CPU tensors only in its interpreter"):
        resolve("triton", "cpu", F64, check=True)
    with pytest.raises(BackendError, match="triton runs CPU tensors only in its interpreter"):
        lif(torch.zeros(2, 3, dtype=F64), LIFParams(), backend="triton")


def test_resolve_with_check_raises_naming_each_backend_that_cannot_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[object] = []

    def not_built(device: torch.device) -> tuple[bool, str]:
        asked.append(device)
        return False, "the C++ kernels could not be built: no compiler"

    monkeypatch.setattr(REGISTRY["cpp"], "_ready", not_built)
    monkeypatch.setattr(_triton, "interpreted", lambda: False)
    assert resolve("cpp", "cpu", F64) == "cpp"  # check=False: nothing asked
    assert asked == []
    with pytest.raises(BackendError) as info:
        resolve("cpp", "cpu", F64, check=True)
    assert str(info.value) == (
        "gac_coding: no backend can run on cpu (setting 'cpp'): 'cpp' cannot run here: the C++ "
        "kernels could not be built: no compiler"
    )
    assert asked == [torch.device("cpu")]
    with pytest.raises(BackendError) as info:
        resolve("cpp,triton", "cpu", F64, check=True)
    message = str(info.value)
    assert message.startswith(
        "gac_coding: no backend can run on cpu (setting 'cpp,triton'): 'cpp' cannot run here: the "
        "C++ kernels could not be built: no compiler; 'triton' cannot run here: triton runs CPU "
        "tensors only in its interpreter"
    )
    assert resolve("cpp,eager", "cpu", F64, check=True) == "eager"


def test_a_module_backend_holds_what_it_was_made_with() -> None:
    """A fresh ``_ModuleBackend``: its name, its module (imported by name), the devices and dtypes
    it covers (``None``: any tensor), and its readiness asked about the device given."""
    asked: list[object] = []

    def ready(device: torch.device) -> tuple[bool, str]:
        asked.append(device)
        return False, "not today"

    b = backends._ModuleBackend("mine", "_cpp", ("cpu",), (torch.float32,), ready)
    assert b.name == "mine" and repr(b) == "<gac_coding backend 'mine'>"
    assert b.module() is _cpp
    assert b.covers(torch.device("cpu"), torch.float32)
    assert not b.covers(torch.device("cpu"), torch.float64)
    assert not b.covers(torch.device("meta"), torch.float32)
    meta = torch.device("meta")
    assert b.ready(meta) == (False, "not today") and asked == [meta]
    anything = backends._ModuleBackend("any", "_eager", (), None, ready)
    assert anything.covers(meta, torch.int8) and anything.module() is _eager
    x = torch.tensor([[0.6], [0.6], [0.6]], dtype=F64)
    spikes, h = anything.lif_forward(x, 0, 0.5, 1.0, False)
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0] and h is None
    for name in ("eager", "cpp", "triton"):
        assert REGISTRY[name].name == name


def test_backend_messages_name_what_arrived() -> None:
    with pytest.raises(ValueError) as info:
        backend_module("cuda")
    assert str(info.value) == "backend: expected one of ['eager', 'cpp', 'triton'], got 'cuda'"
    with pytest.raises(TypeError, match=r"^backend: expected a str, one of .*, got int$"):
        check_backend(3)
    with pytest.raises(TypeError, match=r"^layer\.backend: expected a str, .*, got NoneType$"):
        check_backend(None, "layer.backend")


# ------------------------------------------------------------------------------ module_backends


class _OwnNeuron(BackendSetting, nn.Module):
    """A user's module with a backend setting and no ``params``: a named surrogate is assumed."""


def _net() -> nn.Module:
    return nn.Sequential(
        gac.LIF(backend="cpp"),
        gac.LIF(surrogate=lambda d: (1.0 - d.abs()).clamp(min=0.0), backend="cpp"),
        gac.LIF(surrogate="rectangle", backend="cpp,eager"),
        _OwnNeuron(),
        gac.LIF(),
    )


def test_module_backends_resolve_each_module_with_its_surrogate(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net()
    net[3].backend = "cpp"
    assert module_backends(net) == {"0": "cpp", "1": "cpp", "2": "cpp,eager", "3": "cpp", "4": "auto"}
    asked: list[object] = []
    monkeypatch.setattr(REGISTRY["cpp"], "_ready", lambda d: (asked.append(d), (False, "no compiler"))[1])
    # check=False by default: the first backend that covers the tensors, nothing built or asked
    expected = {"0": "cpp", "1": "eager", "2": "cpp", "3": "cpp", "4": "eager"}
    assert module_backends(net, "cpu", F64) == expected
    assert module_backends(net, torch.device("cpu"), torch.float32, check=False) == expected
    assert asked == []
    assert module_backends(net, "cpu", torch.float16) == dict.fromkeys("01234", "eager")
    with pytest.raises(BackendError, match=r"\(setting 'cpp'\): 'cpp' cannot run here: no compiler$"):
        module_backends(net, "cpu", F64, check=True)
    assert asked == [torch.device("cpu")]
    rest = nn.Sequential(net[1], net[2], net[4])  # not the modules whose only backend is cpp
    assert module_backends(rest, "cpu", F64, check=True) == {"0": "eager", "1": "eager", "2": "eager"}


@pytest.mark.parametrize("given", [{"device": "cpu"}, {"dtype": F64}])
def test_module_backends_want_both_device_and_dtype_or_neither(given: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as info:
        module_backends(_net(), **given)
    assert str(info.value) == "module_backends: give both device and dtype, or neither"


# ---------------------------------------------------------------------------------- the settings


def test_the_rectangle_surrogate_is_one_strictly_inside_half_and_keeps_the_dtype() -> None:
    x = torch.tensor([-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75], dtype=F64)
    y = surrogate_rectangle(x)
    assert y.dtype == F64 and y.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_settings_messages_name_the_setting_and_what_arrived() -> None:
    with pytest.raises(ValueError) as info:
        LIFParams(decay=2)
    assert str(info.value) == "decay: expected a value in [0, 1], got 2"
    for bad in (0, -1.5, float("inf")):
        with pytest.raises(ValueError) as info:
            LIFParams(threshold=bad)
        assert str(info.value) == f"threshold: expected a finite value > 0, got {bad}"
    with pytest.raises(TypeError) as info:
        resolve_surrogate(3)  # type: ignore[arg-type]
    assert str(info.value) == "surrogate: expected a name ['rectangle', 'triangle'] or a callable, got int"


def test_settings_are_floats_and_a_read_only_mapping() -> None:
    p = LIFParams(decay=1, threshold=2, surrogate="rectangle", detach_reset=1)
    assert type(p.decay) is float and type(p.threshold) is float and p.detach_reset is True
    assert (p.decay, p.threshold) == (1.0, 2.0)
    assert list(p) == ["decay", "threshold", "surrogate", "detach_reset"]
    assert dict(p) == {"decay": 1.0, "threshold": 2.0, "surrogate": "rectangle", "detach_reset": True}
    with pytest.raises(KeyError) as info:
        p["leak"]
    assert info.value.args == ("leak",)
