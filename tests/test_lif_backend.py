"""The LIF backends: the fused C++ kernel equals the eager path and the plain loop; switch; fallback.

The kernel is compiled (or loaded from torch's cache) once per session by the module fixture. On a
machine where it cannot be built the tests of the kernel path check the documented fallback (one
warning, then the eager path) instead of being skipped.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from types import ModuleType

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import gac_coding as gac
from gac_coding import _lif_kernel, neuron
from gac_coding.attention import gated_lif
from gac_coding.neuron import lif, lif_reference


@pytest.fixture(scope="module")
def kernel() -> ModuleType | None:
    """The compiled kernel, built once for the session; ``None`` where building fails."""
    return _lif_kernel.load()


@pytest.fixture(autouse=True)
def _restore_backend() -> Iterator[None]:
    saved = (neuron._backend, neuron._warned_build)
    yield
    neuron._backend, neuron._warned_build = saved


def _run(
    backend: str, x: Tensor, grad: Tensor, **kwargs: object
) -> tuple[Tensor, Tensor]:
    neuron.set_backend(backend)
    leaf = x.clone().requires_grad_()
    spikes = lif(leaf, **kwargs)  # type: ignore[arg-type]
    (g,) = torch.autograd.grad(spikes, leaf, grad)
    return spikes, g



def test_kernel_builds_here_or_falls_back_with_a_warning(kernel: ModuleType | None) -> None:
    x = torch.randn(3, 4, dtype=torch.float64)
    if kernel is None:
        # the build failed on this machine: the cpp backend warns once and runs the eager path
        neuron._warned_build = False
        neuron.set_backend("cpp")
        with pytest.warns(RuntimeWarning, match="could not be built"):
            out = lif(x)
        assert torch.equal(out, lif_reference(x))
        assert _lif_kernel.build_error()
    else:
        assert _lif_kernel.build_error() is None
        assert _lif_kernel.is_built()
        neuron.set_backend("cpp")
        assert neuron._kernel_for(x, neuron.surrogate_triangle) is kernel


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 7),
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    decay=st.floats(0.0, 1.0),
    threshold=st.floats(0.05, 2.0),
    surrogate=st.sampled_from(["triangle", "rectangle"]),
    detach=st.booleans(),
    static=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cpp_equals_eager_and_plain_loop(
    kernel: ModuleType | None,
    T: int,
    shape: list[int],
    decay: float,
    threshold: float,
    surrogate: str,
    detach: bool,
    static: bool,
    seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    step = tuple(shape)
    x = torch.randn((*step,) if static else (T, *step), generator=gen, dtype=torch.float64) * 1.5
    grad = torch.randn((T, *step), generator=gen, dtype=torch.float64)
    kw = {"decay": decay, "threshold": threshold, "surrogate": surrogate, "detach_reset": detach}
    steps = {"steps": T} if static else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallback warning where no build
        s_cpp, g_cpp = _run("cpp", x, grad, **kw, **steps)
    s_eager, g_eager = _run("eager", x, grad, **kw, **steps)
    leaf = x.clone().requires_grad_()
    seq = leaf.expand(T, *step) if static else leaf
    s_ref = lif_reference(seq, decay, threshold, surrogate, detach)
    (g_ref,) = torch.autograd.grad(s_ref, leaf, grad)
    assert s_cpp.dtype == torch.float64 and s_cpp.shape == (T, *step)
    assert torch.equal(s_cpp, s_eager)
    assert torch.equal(s_cpp, s_ref)
    torch.testing.assert_close(g_cpp, g_eager, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_cpp, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("surrogate", ["triangle", "rectangle"])
@pytest.mark.parametrize("static", [False, True])
def test_cpp_float32_and_multithreaded(
    kernel: ModuleType | None, surrogate: str, static: bool
) -> None:
    gen = torch.Generator().manual_seed(3)
    step = (4, 8, 40, 40)  # 51200 elements per step: several threads' chunks and vector tails
    x = torch.randn(step if static else (5, *step), generator=gen) * 1.5
    grad = torch.randn((5, *step), generator=gen)
    kw = {"decay": 0.3, "threshold": 0.7, "surrogate": surrogate, "detach_reset": False}
    steps = {"steps": 5} if static else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            s_cpp, g_cpp = _run("cpp", x, grad, **kw, **steps)
    finally:
        torch.set_num_threads(threads)
    s_eager, g_eager = _run("eager", x, grad, **kw, **steps)
    assert s_cpp.dtype == torch.float32
    assert torch.equal(s_cpp, s_eager)
    assert 0.05 < float(s_cpp.detach().mean()) < 0.95
    torch.testing.assert_close(g_cpp, g_eager, rtol=1e-5, atol=1e-5)


def test_cpp_without_grad_saves_nothing(kernel: ModuleType | None) -> None:
    neuron.set_backend("cpp")
    x = torch.randn(4, 3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = lif(x)
    assert not out.requires_grad
    assert torch.equal(out, lif_reference(x))


def test_callable_surrogate_and_half_precision_use_eager(kernel: ModuleType | None) -> None:
    neuron.set_backend("cpp")

    def sigmoid_grad(d: Tensor) -> Tensor:
        return torch.sigmoid(4 * d) * (1 - torch.sigmoid(4 * d)) * 4

    x = torch.randn(4, 6, dtype=torch.float64)
    assert neuron._kernel_for(x, sigmoid_grad) is None
    assert neuron._kernel_for(x.to(torch.bfloat16), neuron.surrogate_triangle) is None
    leaf = x.clone().requires_grad_()
    out = lif(leaf, surrogate=sigmoid_grad)
    ref_leaf = x.clone().requires_grad_()
    ref = lif_reference(ref_leaf, surrogate=sigmoid_grad)
    assert torch.equal(out, ref)
    grad = torch.randn_like(x)
    torch.testing.assert_close(
        torch.autograd.grad(out, leaf, grad)[0], torch.autograd.grad(ref, ref_leaf, grad)[0]
    )
    half = lif(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16 and torch.equal(half.double(), lif_reference(x))


def test_backend_switch_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 3)
    neuron.set_backend("EAGER")
    assert neuron.get_backend() == "eager"
    assert neuron._kernel_for(x, neuron.surrogate_triangle) is None
    with pytest.raises(ValueError, match="backend: expected one of"):
        neuron.set_backend("cuda")
    assert neuron.get_backend() == "eager"
    monkeypatch.setattr(neuron, "_backend", None)
    monkeypatch.setenv(neuron.BACKEND_ENV, "cpp")
    assert neuron.get_backend() == "cpp"
    monkeypatch.setattr(neuron, "_backend", None)
    monkeypatch.delenv(neuron.BACKEND_ENV)
    assert neuron.get_backend() == "eager"  # the default
    monkeypatch.setattr(neuron, "_backend", None)
    monkeypatch.setenv(neuron.BACKEND_ENV, "fast")
    with pytest.raises(ValueError, match="GAC_CODING_LIF_BACKEND"):
        lif(x)


def test_simulated_build_failure_warns_once_then_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def broken() -> ModuleType:
        calls.append(1)
        raise RuntimeError("Error building extension 'gac_coding_lif': c++ not found")

    monkeypatch.setattr(_lif_kernel, "_module", None)
    monkeypatch.setattr(_lif_kernel, "_error", None)
    monkeypatch.setattr(_lif_kernel, "_compile", broken)
    neuron._warned_build = False
    neuron.set_backend("cpp")
    x = (torch.randn(5, 2, 7, dtype=torch.float64) * 1.5).requires_grad_()
    with pytest.warns(RuntimeWarning, match="c\\+\\+ not found") as record:
        first = lif(x)
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = lif(x, surrogate="rectangle", detach_reset=True)
    assert calls == [1]  # not retried
    assert torch.equal(first, lif_reference(x))
    assert torch.equal(second, lif_reference(x, 0.5, 1.0, "rectangle", True))
    assert "c++ not found" in (_lif_kernel.build_error() or "")


def test_auto_without_toolchain_is_quietly_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_build() -> ModuleType:
        raise AssertionError("auto must not try to build without a toolchain")

    monkeypatch.setattr(_lif_kernel, "_module", None)
    monkeypatch.setattr(_lif_kernel, "_error", None)
    monkeypatch.setattr(_lif_kernel, "_compile", must_not_build)
    monkeypatch.setattr(_lif_kernel, "is_built", lambda: False)
    monkeypatch.setattr(_lif_kernel, "toolchain_available", lambda: False)
    neuron.set_backend("auto")
    x = torch.randn(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(lif(x), lif_reference(x))


def test_auto_uses_the_kernel_when_built(kernel: ModuleType | None) -> None:
    neuron.set_backend("auto")
    x = torch.randn(3, 4)
    if kernel is None:
        assert _lif_kernel.build_error()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert neuron._kernel_for(x, neuron.surrogate_triangle) is None
    else:
        assert neuron._kernel_for(x, neuron.surrogate_rectangle) is kernel


def test_import_does_not_compile() -> None:
    code = (
        "import sys, gac_coding; "
        "print('gac_coding._lif_kernel' in sys.modules, 'torch.utils.cpp_extension' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------------------------
# The encoder's fused LIF + gate (gac_coding.attention.gated_lif) on the C++ kernel.
# --------------------------------------------------------------------------------------------


def _run_gated(
    backend: str, u: Tensor, ta: Tensor, sca: Tensor, grad: Tensor, **kwargs: object
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, ...]]:
    neuron.set_backend(backend)
    leaves = [x.clone().requires_grad_() for x in (u, ta, sca)]
    out, fired, gate = gated_lif(*leaves, **kwargs)  # type: ignore[arg-type]
    grads = torch.autograd.grad(out, leaves, grad)
    return (out, fired, gate), grads


def _slow_gated(
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    decay: float,
    threshold: float,
    surrogate: str,
    detach_reset: bool,
    static: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``sigmoid(ta * sca) * S`` step by step with autograd operations, as tests/test_encoder.py's
    slow formulation writes it (the LIF as a plain loop, a static input repeated T times)."""
    T, B = ta.shape
    seq = u.expand(T, *u.shape) if static else u
    sca_seq = sca.expand(T, *sca.shape) if sca.dim() == seq.dim() - 1 else sca
    S = lif_reference(seq, decay, threshold, surrogate, detach_reset)
    M = torch.sigmoid(ta.view(T, B, *([1] * (seq.dim() - 2))) * sca_seq)
    return M * S, S, M


@settings(max_examples=50, deadline=None)
@given(
    T=st.integers(1, 6),
    B=st.integers(1, 3),
    C=st.integers(1, 4),
    H=st.integers(1, 6),
    W=st.integers(1, 6),
    static=st.booleans(),
    sca_per_step=st.booleans(),
    decay=st.floats(0.0, 1.0),
    threshold=st.floats(0.05, 2.0),
    surrogate=st.sampled_from(["triangle", "rectangle"]),
    detach=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cpp_gated_lif_equals_eager_and_slow(
    kernel: ModuleType | None,
    T: int,
    B: int,
    C: int,
    H: int,
    W: int,
    static: bool,
    sca_per_step: bool,
    decay: float,
    threshold: float,
    surrogate: str,
    detach: bool,
    seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    step = (B, C, H, W)
    f64 = torch.float64
    u = torch.randn(step if static else (T, *step), generator=gen, dtype=f64) * 1.5
    ta = torch.randn((T, B), generator=gen, dtype=f64)
    sca = torch.randn((T, *step) if sca_per_step else step, generator=gen, dtype=f64)
    grad = torch.randn((T, *step), generator=gen, dtype=f64)
    kw = {
        "decay": decay,
        "threshold": threshold,
        "surrogate": surrogate,
        "detach_reset": detach,
        "static": static,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallback warning where no build
        (o_cpp, s_cpp, m_cpp), g_cpp = _run_gated("cpp", u, ta, sca, grad, **kw)
    (o_eager, s_eager, m_eager), g_eager = _run_gated("eager", u, ta, sca, grad, **kw)
    leaves = [x.clone().requires_grad_() for x in (u, ta, sca)]
    o_ref, s_ref, m_ref = _slow_gated(*leaves, decay, threshold, surrogate, detach, static)
    g_ref = torch.autograd.grad(o_ref, leaves, grad)
    assert o_cpp.shape == (T, *step) and s_cpp.dtype == f64
    assert torch.equal(s_cpp, s_eager) and torch.equal(s_cpp, s_ref)
    tol = {"rtol": 1e-12, "atol": 1e-12}
    for cpp_value, eager_value, ref_value in ((o_cpp, o_eager, o_ref), (m_cpp, m_eager, m_ref)):
        torch.testing.assert_close(cpp_value, eager_value, **tol)
        torch.testing.assert_close(cpp_value, ref_value.detach(), **tol)
    for name, gc, ge, gr in zip(("u", "ta", "sca"), g_cpp, g_eager, g_ref, strict=True):
        assert gc.shape == ge.shape, name
        torch.testing.assert_close(gc, ge, **tol, msg=lambda m, n=name: f"grad {n}: {m}")
        torch.testing.assert_close(gc, gr, **tol, msg=lambda m, n=name: f"grad {n}: {m}")


@pytest.mark.parametrize("surrogate", ["triangle", "rectangle"])
@pytest.mark.parametrize("static", [False, True])
def test_cpp_gated_lif_float32_multithreaded_deterministic(
    kernel: ModuleType | None, surrogate: str, static: bool
) -> None:
    gen = torch.Generator().manual_seed(5)
    T, step = 4, (3, 8, 30, 30)  # 7200 elements per sample: several chunks per sample
    u = torch.randn(step if static else (T, *step), generator=gen) * 1.5
    ta = torch.randn((T, 3), generator=gen)
    sca = torch.randn(step if static else (T, *step), generator=gen)
    grad = torch.randn((T, *step), generator=gen)
    kw = {"decay": 0.4, "threshold": 0.8, "surrogate": surrogate, "static": static}
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                results.append(_run_gated("cpp", u, ta, sca, grad, **kw))
    finally:
        torch.set_num_threads(threads)
    (out, fired, _), g_cpp = results[0]
    # the same bits whatever the number of threads (grad_ta's reduction order is fixed)
    for a, b in zip((*results[0][0], *results[0][1]), (*results[1][0], *results[1][1]), strict=True):
        assert torch.equal(a, b)
    (o_eager, s_eager, _), g_eager = _run_gated("eager", u, ta, sca, grad, **kw)
    assert fired.dtype == torch.float32 and torch.equal(fired, s_eager)
    assert 0.05 < float(fired.mean()) < 0.95
    torch.testing.assert_close(out, o_eager, rtol=1e-6, atol=1e-6)
    for gc, ge in zip(g_cpp, g_eager, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-4, atol=1e-4)


def test_cpp_gated_lif_inference_and_kernel_use(kernel: ModuleType | None) -> None:
    u = torch.randn(3, 2, 4, 5, 5)
    ta = torch.randn(3, 2)
    sca = torch.randn(3, 2, 4, 5, 5)
    neuron.set_backend("cpp")
    calls: list[str] = []
    if kernel is not None:
        # the cpp backend must reach the kernel's gated functions (not the eager loop)
        class Spy:
            def __getattr__(self, name: str) -> object:
                calls.append(name)
                return getattr(kernel, name)

        spy = Spy()
        original = neuron._kernel_for
        attention_module = sys.modules["gac_coding.attention"]
        attention_module._kernel_for = lambda x, fn: spy  # type: ignore[attr-defined]
        try:
            leaf = u.clone().requires_grad_()
            out, _, _ = gated_lif(leaf, ta, sca)
            out.sum().backward()
            with torch.no_grad():
                inferred = gated_lif(u, ta, sca)
        finally:
            attention_module._kernel_for = original  # type: ignore[attr-defined]
        assert calls == ["gated_forward", "gated_backward", "gated_forward"]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with torch.no_grad():
                inferred = gated_lif(u, ta, sca)
    neuron.set_backend("eager")
    with torch.no_grad():
        eager = gated_lif(u, ta, sca)
    assert not inferred[0].requires_grad
    assert torch.equal(inferred[1], eager[1])
    torch.testing.assert_close(inferred[0], eager[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("feed_sequence", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_encoder_cpp_equals_eager_float64(
    kernel: ModuleType | None, feed_sequence: bool, train: bool
) -> None:
    torch.manual_seed(11)
    enc = gac.GACEncoder(3, 8, 4).double().train(train)
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64) * 2
    inp = x.unsqueeze(0).expand(4, *x.shape) if feed_sequence else x
    bn_state = {k: v.clone() for k, v in enc.bn.state_dict().items()}
    runs = []
    for backend in ("cpp", "eager"):
        enc.bn.load_state_dict(bn_state)
        neuron.set_backend(backend)
        leaf = inp.detach().clone().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = enc(leaf)
        params = [p for p in enc.parameters() if p.requires_grad]
        grads = torch.autograd.grad(out, [leaf, *params], torch.ones_like(out) * 0.5)
        runs.append((out.detach(), enc.last_spikes, grads))
    (o_cpp, s_cpp, g_cpp), (o_eager, s_eager, g_eager) = runs
    assert s_cpp is not None and s_eager is not None and torch.equal(s_cpp, s_eager)
    assert 0.0 < float(s_cpp.mean()) < 1.0
    torch.testing.assert_close(o_cpp, o_eager, rtol=1e-12, atol=1e-12)
    for gc, ge in zip(g_cpp, g_eager, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-11, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# Channels-last steps keep their layout through the LIF and the gate (both backends)
# ------------------------------------------------------------------------------------------------


def _channels_last_steps(x: Tensor, static: bool) -> Tensor:
    """The same values with every ``[B, C, H, W]`` step stored channels-last."""
    if static:
        return x.contiguous(memory_format=torch.channels_last)
    flat = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    return flat.view(x.shape)


def _is_channels_last_steps(x: Tensor) -> bool:
    flat = x.flatten(0, 1)  # a view only when every step is a dense block
    return flat.data_ptr() == x.data_ptr() and flat.is_contiguous(memory_format=torch.channels_last)


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 5),
    step=st.tuples(st.integers(1, 3), *[st.integers(2, 5)] * 3),  # (B, C, H, W), C*H*W > 1
    static=st.booleans(),
    backend=st.sampled_from(["eager", "cpp"]),
    surrogate=st.sampled_from(["triangle", "rectangle"]),
    detach=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_channels_last_steps_keep_their_layout_and_values(
    kernel: ModuleType | None,
    T: int,
    step: tuple[int, int, int, int],
    static: bool,
    backend: str,
    surrogate: str,
    detach: bool,
    seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    B = step[0]
    x = torch.randn(step if static else (T, *step), generator=gen, dtype=f64) * 1.5
    ta = torch.randn((T, B), generator=gen, dtype=f64)
    sca = torch.randn(step, generator=gen, dtype=f64)
    grad = _channels_last_steps(torch.randn((T, *step), generator=gen, dtype=f64), False)
    kw = {"decay": 0.6, "threshold": 0.9, "surrogate": surrogate, "detach_reset": detach}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallback warning where no build
        lif_kw = {**kw, "steps": T if static else None}
        s_plain, g_plain = _run(backend, x, grad, **lif_kw)
        s_last, g_last = _run(backend, _channels_last_steps(x, static), grad, **lif_kw)
        plain = _run_gated(backend, x, ta, sca, grad, static=static, **kw)
        last = _run_gated(
            backend, _channels_last_steps(x, static), ta, _channels_last_steps(sca, True), grad,
            static=static, **kw,
        )  # fmt: skip
    # elementwise in time: the same numbers in another order in memory (vectorised loops and
    # their scalar tails may round a sigmoid differently in the last bit, hence the tolerance)
    tol = {"rtol": 1e-14, "atol": 1e-15}
    assert _is_channels_last_steps(s_last) and not _is_channels_last_steps(s_plain)
    assert torch.equal(s_last, s_plain)
    torch.testing.assert_close(g_last, g_plain, **tol)
    if static:
        assert g_last.is_contiguous(memory_format=torch.channels_last)
    else:
        assert _is_channels_last_steps(g_last)
    (o_plain, f_plain, m_plain), grads_plain = plain
    (o_last, f_last, m_last), grads_last = last
    for tensor in (o_last, f_last, m_last):
        assert _is_channels_last_steps(tensor)
    assert torch.equal(f_last, f_plain)
    torch.testing.assert_close(o_last, o_plain, **tol)
    torch.testing.assert_close(m_last, m_plain, **tol)
    # grad_ta sums over each sample in memory order: equal up to the rounding of that sum
    for name, gl, gp in zip(("u", "ta", "sca"), grads_last, grads_plain, strict=True):
        torch.testing.assert_close(gl, gp, rtol=1e-12, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")
