"""Each backend through the public API: ``neuron.lif``, ``gac.LIF``, ``attention.gated_lif`` and the
encoder (the paper's gate and its variants), run by eager, cpp and triton (in its interpreter on CPU
tensors), against the independent slow formulations of ``tests/slow_reference.py``; the chosen
backend is the one that runs; the C++ kernels build wherever a compiler and ninja are found;
channels-last steps keep their layout.

The interface-level checks of the backends (every dtype, ties, determinism) are in
``tests/test_backends.py``; the choice of backend and its fallbacks in ``tests/test_backend_choice.py``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from slow_reference import slow_gated_lif, slow_lif
from torch import Tensor
from triton_device import triton_kernel_device

import gac_coding as gac
from gac_coding import neuron
from gac_coding.attention import gated_lif
from gac_coding.ops import _cpp, backends

F64 = torch.float64


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    """Build (or load) the C++ kernels and the interpreted triton kernels once for the module.

    Where a C++ compiler and ninja are found, a failed build fails the suite: the cpp cases would
    otherwise compare the eager fallback with itself.
    """
    if _cpp.toolchain_available():
        assert _cpp.load() is not None, f"the C++ kernels failed to build: {_cpp.build_error()}"
    assert triton_kernel_device() == "cpu", "these tests run the triton kernels on CPU tensors"


@pytest.fixture(autouse=True)
def _restore_backend_override() -> Iterator[None]:
    with backends.use_backend(backends._override):  # restored afterwards, whatever a test sets
        yield


# cpp only where it can exist; a machine without a compiler checks its fallback instead (below)
BACKEND_NAMES = ["eager", "triton", *(["cpp"] if _cpp.toolchain_available() else [])]


@contextmanager
def running(name: str) -> Iterator[list[str]]:
    """Select backend ``name`` and record which of its four functions run (the selected backend
    must run: no warning, no silent eager fallback)."""
    calls: list[str] = []
    module = backends.backend_module(name)
    with pytest.MonkeyPatch.context() as mp, backends.use_backend(name), warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in ("lif_forward", "lif_backward", "gated_forward", "gated_backward"):
            original = getattr(module, fn)

            def spy(*args: object, _fn: str = fn, _original: Callable = original) -> object:
                calls.append(_fn)
                return _original(*args)

            mp.setattr(module, fn, spy)
        yield calls


def _channels_last_steps(x: Tensor, static: bool) -> Tensor:
    """The same values with every ``[B, C, H, W]`` step stored channels-last."""
    if static:
        return x.contiguous(memory_format=torch.channels_last)
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)


def _is_channels_last_steps(x: Tensor) -> bool:
    flat = x.flatten(0, 1)  # a view only when every step is a dense block
    return flat.data_ptr() == x.data_ptr() and flat.is_contiguous(memory_format=torch.channels_last)


_NEURON = {
    "decay": st.floats(0.0, 1.0),
    "threshold": st.floats(0.05, 2.0),
    "surrogate": st.sampled_from(["triangle", "rectangle"]),
    "detach": st.booleans(),
}


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=8, deadline=None)
@given(
    T=st.integers(1, 4),
    step=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    static=st.booleans(),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
    **_NEURON,
)
def test_lif_through_each_backend_equals_slow_reference(
    name: str,
    T: int,
    step: tuple[int, int, int, int],
    static: bool,
    channels_last: bool,
    seed: int,
    decay: float,
    threshold: float,
    surrogate: str,
    detach: bool,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(step if static else (T, *step), generator=gen, dtype=F64) * 1.5
    if channels_last:
        x = _channels_last_steps(x, static)
    grad = torch.randn((T, *step), generator=gen, dtype=F64)
    leaf = x.clone(memory_format=torch.preserve_format).requires_grad_()
    with running(name) as calls:
        spikes = neuron.lif(leaf, decay, threshold, surrogate, detach, steps=T if static else None)
        (g,) = torch.autograd.grad(spikes, leaf, grad)
    assert calls == ["lif_forward", "lif_backward"]
    ref_leaf = x.clone().requires_grad_()
    seq = ref_leaf.expand(T, *step) if static else ref_leaf
    ref, _ = slow_lif(seq, decay, threshold, surrogate, detach)
    (g_ref,) = torch.autograd.grad(ref, ref_leaf, grad)
    assert spikes.dtype == F64 and torch.equal(spikes, ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    # a channels-last input gives channels-last spikes and gradient (no layout change around);
    # with one channel or one pixel both layouts are the same memory
    if step[1] > 1 and step[2] * step[3] > 1:
        assert _is_channels_last_steps(spikes) == channels_last
        g_last = g.is_contiguous(memory_format=torch.channels_last) and not g.is_contiguous()
        assert g_last == channels_last if static else _is_channels_last_steps(g) == channels_last


@pytest.mark.parametrize("name", BACKEND_NAMES)
@settings(max_examples=8, deadline=None)
@given(
    T=st.integers(1, 4),
    step=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
    static=st.booleans(),
    sca_per_step=st.booleans(),
    seed=st.integers(0, 2**16),
    **_NEURON,
)
def test_gated_lif_through_each_backend_equals_slow_reference(
    name: str,
    T: int,
    step: tuple[int, int, int, int],
    static: bool,
    sca_per_step: bool,
    seed: int,
    decay: float,
    threshold: float,
    surrogate: str,
    detach: bool,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(step if static else (T, *step), generator=gen, dtype=F64) * 1.5
    ta = torch.randn((T, step[0]), generator=gen, dtype=F64)
    sca = torch.randn((T, *step) if sca_per_step else step, generator=gen, dtype=F64)
    grad = torch.randn((T, *step), generator=gen, dtype=F64)
    leaves = [t.clone().requires_grad_() for t in (u, ta, sca)]
    with running(name) as calls:
        out, fired, gate = gated_lif(*leaves, decay, threshold, surrogate, detach, static=static)
        grads = torch.autograd.grad(out, leaves, grad)
    assert calls == ["gated_forward", "gated_backward"]
    ref_leaves = [t.clone().requires_grad_() for t in (u, ta, sca)]
    r_out, r_fired, r_gate, _ = slow_gated_lif(*ref_leaves, decay, threshold, surrogate, detach, static)
    r_grads = torch.autograd.grad(r_out, ref_leaves, grad)
    assert torch.equal(fired, r_fired)
    tol = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out, r_out.detach(), **tol)
    torch.testing.assert_close(gate, r_gate.detach(), **tol)
    for n, a, r in zip(("u", "ta", "sca"), grads, r_grads, strict=True):
        torch.testing.assert_close(a, r, **tol, msg=lambda m, n=n: f"grad {n}: {m}")


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_without_grad_nothing_is_saved_and_inference_runs_the_backend(name: str) -> None:
    x = torch.randn(4, 2, 3, 5, 5) * 1.5
    ta, sca = torch.randn(4, 2), torch.randn(2, 3, 5, 5)
    with running(name) as calls, torch.no_grad():
        spikes = gac.LIF()(x)
        out, fired, gate = gated_lif(x, ta, sca)
    assert calls == ["lif_forward", "gated_forward"]
    assert not spikes.requires_grad and not out.requires_grad
    ref = slow_lif(x, 0.5, 1.0, "triangle", False)[0]
    assert torch.equal(spikes, ref) and torch.equal(fired, ref)
    assert 0.05 < float(ref.mean()) < 0.95
    # float32: the sigmoid of the backends and torch's agree to a few float32 ulps
    torch.testing.assert_close(gate, torch.sigmoid(ta.view(4, 2, 1, 1, 1) * sca), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, gate * ref)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("feed_sequence", [False, True])
def test_encoder_float64_each_backend_equals_eager(name: str, feed_sequence: bool) -> None:
    torch.manual_seed(11)
    enc = gac.GACEncoder(3, 8, 4).double().train()
    x = torch.rand(2, 3, 9, 9, dtype=F64) * 2
    inp = x.unsqueeze(0).expand(4, *x.shape) if feed_sequence else x
    bn_state = {k: v.clone() for k, v in enc.bn.state_dict().items()}
    runs = []
    for backend in (name, "eager"):
        enc.bn.load_state_dict(bn_state)
        leaf = inp.detach().clone().requires_grad_()
        with running(backend) as calls:
            out = enc(leaf)
            params = [p for p in enc.parameters() if p.requires_grad]
            grads = torch.autograd.grad(out, [leaf, *params], torch.ones_like(out) * 0.5)
        assert calls == ["gated_forward", "gated_backward"]
        runs.append((out.detach(), enc.last_spikes, grads))
    (o_a, s_a, g_a), (o_e, s_e, g_e) = runs
    assert s_a is not None and s_e is not None and torch.equal(s_a, s_e)
    assert 0.0 < float(s_a.mean()) < 1.0
    torch.testing.assert_close(o_a, o_e, rtol=1e-12, atol=1e-12)
    for a, e in zip(g_a, g_e, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("feed_sequence", [False, True])
def test_encoder_variants_float64_each_backend_equals_eager(name: str, feed_sequence: bool) -> None:
    # the variants' gates are torch operations around the backend's LIF op (issue 26)
    torch.manual_seed(12)
    variants = [
        {"ta_source": "membrane", "ta_bias": True, "ta_activation": "gelu"},
        {"gate": "separate", "temporal_attention": "conv"},
        {"gate": "temporal", "ta_source": "membrane", "ta_activation": "leaky_relu"},
    ]
    for options in variants:
        enc = gac.GACEncoder(3, 6, 4, **options).double().train()
        x = torch.rand(2, 3, 7, 7, dtype=F64) * 2
        inp = x.unsqueeze(0).expand(4, *x.shape) if feed_sequence else x
        bn_state = {k: v.clone() for k, v in enc.bn.state_dict().items()}
        runs = []
        for backend in (name, "eager"):
            enc.bn.load_state_dict(bn_state)
            leaf = inp.detach().clone().requires_grad_()
            with running(backend) as calls:
                out = enc(leaf)
                params = [p for p in enc.parameters() if p.requires_grad]
                grads = torch.autograd.grad(out, [leaf, *params], torch.ones_like(out) * 0.5)
            assert calls == ["lif_forward", "lif_backward"], options
            runs.append((out.detach(), enc.last_spikes, enc.last_gate, grads))
        (o_a, s_a, m_a, g_a), (o_e, s_e, m_e, g_e) = runs
        assert s_a is not None and s_e is not None and torch.equal(s_a, s_e)
        assert 0.0 < float(s_a.mean()) < 1.0
        torch.testing.assert_close(o_a, o_e, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m_a, m_e, rtol=1e-12, atol=1e-12)
        for a, e in zip(g_a, g_e, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision_through_the_api(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(4, 2, 3, 4, 4, generator=gen, dtype=F64) * 1.5).to(dtype)
    grad = torch.randn(4, 2, 3, 4, 4, generator=gen, dtype=F64).to(dtype)
    ref_leaf = x.to(F64).requires_grad_()
    ref, h_ref = slow_lif(ref_leaf, 0.25, 0.5, "rectangle", True)
    (g_ref,) = torch.autograd.grad(ref, ref_leaf, grad.to(F64))
    d = (h_ref - 0.5).abs()
    assert float(torch.minimum(d, (d - 0.5).abs()).min()) > 1e-4  # away from where float32 may differ
    leaf = x.clone().requires_grad_()
    with running("triton") as calls:
        spikes = gac.LIF(**gac.RECIPES["imagenet"])(leaf)  # type: ignore[arg-type]
        (g,) = torch.autograd.grad(spikes, leaf, grad)
    assert calls == ["lif_forward", "lif_backward"]
    assert spikes.dtype == dtype and g.dtype == dtype
    assert torch.equal(spikes.to(F64), ref)
    # float32 arithmetic, one conversion to the half dtype at the end (see test_backends.py)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(g.to(F64), g_ref, rtol=eps, atol=1e-5 * float(g_ref.abs().max()))


# ------------------------------------------------------------------------------------------------
# The C++ kernels: build, threads, determinism
# ------------------------------------------------------------------------------------------------


def test_cpp_builds_with_a_toolchain_and_a_failed_build_raises_or_falls_back_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.randn(3, 4, dtype=F64) * 2
    if _cpp.toolchain_available():
        # compiler and ninja found: the build must have succeeded (a failure fails here)
        assert _cpp.build_error() is None and _cpp.load() is not None and _cpp.is_built()
        assert _cpp.available() == (True, "")
    # a broken build: remembered (not redone), and every call that asks for cpp meets it
    monkeypatch.setattr(_cpp._EXTENSION, "module", None)
    monkeypatch.setattr(_cpp._EXTENSION, "error", None)
    builds = []

    def broken() -> None:
        builds.append(1)
        raise RuntimeError("Error building extension: c++: boom")

    monkeypatch.setattr(_cpp._EXTENSION, "compile", broken)
    with pytest.raises(backends.BackendError, match=r"'cpp' cannot run here: .*could not be built.*boom"):
        neuron.lif(x, backend="cpp")
    with pytest.raises(backends.BackendError, match="cpp,eager"):  # the way out, named
        neuron.lif(x, backend="cpp")
    ref = slow_lif(x, 0.5, 1.0, "triangle", False)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = neuron.lif(x, backend="cpp,eager")
        second = neuron.lif(x, surrogate="rectangle", backend="cpp,eager")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2 and all("could not be built" in m and "'eager' ran" in m for m in messages)
    assert torch.equal(first, ref) and torch.equal(second, ref)
    assert builds == [1] and _cpp.build_error()


@pytest.mark.parametrize("static", [False, True])
def test_cpp_multithreaded_results_do_not_depend_on_threads(static: bool) -> None:
    if not _cpp.toolchain_available():
        # nothing to thread here: the documented fallback is what the test above checks
        assert _cpp.available()[0] is _cpp.is_built()
        return
    gen = torch.Generator().manual_seed(5)
    T, step = 4, (3, 8, 30, 30)  # 7200 elements per sample: several threads' chunks per sample
    u = torch.randn(step if static else (T, *step), generator=gen) * 1.5
    ta = torch.randn((T, 3), generator=gen)
    sca = torch.randn(step if static else (T, *step), generator=gen)
    grad = torch.randn((T, *step), generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            leaves = [t.clone().requires_grad_() for t in (u, ta, sca)]
            with running("cpp"):
                out, fired, _ = gated_lif(*leaves, 0.4, 0.8, static=static)
                grads = torch.autograd.grad(out, leaves, grad)
                spikes = neuron.lif(leaves[0], 0.4, 0.8, steps=T if static else None)
                (g_lif,) = torch.autograd.grad(spikes, leaves[0], grad)
            results.append((out, fired, *grads, spikes, g_lif))
    finally:
        torch.set_num_threads(threads)
    # the same bits whatever the number of threads (grad_ta's reduction order is fixed)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    assert 0.05 < float(results[0][1].mean()) < 0.95
    leaves = [t.double().requires_grad_() for t in (u, ta, sca)]
    r_out, r_fired, _, _ = slow_gated_lif(*leaves, 0.4, 0.8, "triangle", False, static)
    r_grads = torch.autograd.grad(r_out, leaves, grad.double())
    assert torch.equal(results[0][1].double(), r_fired)
    # float32 kernels against float64: sigmoid and sums of up to 7200 float32 terms (grad_ta)
    for a, r in zip(results[0][2:5], r_grads, strict=True):
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-4 * max(1.0, float(r.abs().max())))


def test_import_compiles_nothing_and_imports_no_triton() -> None:
    # the triton backend module itself imports triton only on its first kernel call
    code = (
        "import sys, gac_coding; a = 'gac_coding.ops._cpp' in sys.modules; "
        "import gac_coding.ops._triton; "
        "print(a, 'torch.utils.cpp_extension' in sys.modules, 'triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False", "False"]
