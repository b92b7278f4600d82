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

from gac_coding import _lif_kernel, neuron
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
