"""The neuron-op backends (eager, cpp, triton) against the independent slow formulations.

Every backend exposes the same four functions (``lif_forward``, ``lif_backward``, ``gated_forward``,
``gated_backward``); each is checked, values and every gradient, against ``tests/slow_reference.py``
(the LIF and the gate written out with autograd operations, independent of the library's math):
exact spikes and float64 results equal to rounding; float32, bfloat16 and float16 against the
float64 reference with the tolerances justified where they are used.

The triton kernels run here in triton's interpreter on CPU tensors: the module fixture sets
``TRITON_INTERPRET=1`` for the first kernel call of the process (triton reads it when the kernels
are decorated). Where the kernels were already compiled for CUDA in this process, the triton cases
run on CUDA tensors instead. The interpreter is slow: shapes are small and examples few.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from slow_reference import slow_gated_lif, slow_lif
from torch import Tensor
from triton_device import triton_kernel_device

from gac_coding.ops import _cpp, _eager, _triton

F64 = torch.float64
CODES = {"triangle": 0, "rectangle": 1}


@pytest.fixture(scope="module")
def triton_device() -> str:
    """The device the triton kernels run on in this process: "cpu" (interpreter) or "cuda"."""
    return triton_kernel_device()


@pytest.fixture(scope="module")
def cpp_module() -> ModuleType:
    """The compiled C++ backend; ``None`` only where no C++ toolchain is found (a failed build
    where a compiler and ninja are present fails the tests that use it)."""
    if _cpp.load() is None and _cpp.toolchain_available():
        pytest.fail(f"a C++ compiler and ninja are here, yet the build failed: {_cpp.build_error()}")
    return _cpp


class _OnDevice:
    """A backend module whose functions take CPU tensors, run on ``device`` and return CPU tensors."""

    def __init__(self, module: ModuleType, device: str) -> None:
        self.module, self.device = module, device

    def __getattr__(self, name: str) -> object:
        fn = getattr(self.module, name)

        def call(*args: object) -> object:
            moved = [a.to(self.device) if isinstance(a, Tensor) else a for a in args]
            result = fn(*moved)
            if isinstance(result, Tensor):
                return result.cpu()
            return type(result)(None if r is None else r.cpu() for r in result)  # type: ignore[union-attr]

        return call


# the cpp backend exists where a C++ compiler and ninja are found (else its fallback to eager is
# what tests/test_lif_backend.py checks); where they are found, it must build (cpp_module)
BACKEND_NAMES = ["eager", "triton", *(["cpp"] if _cpp.toolchain_available() else [])]


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest, triton_device: str) -> object:
    if request.param == "triton":
        return _OnDevice(_triton, triton_device)
    if request.param == "cpp":
        return request.getfixturevalue("cpp_module")
    return _eager


# ------------------------------------------------------------------------------------------------
# The multi-step LIF
# ------------------------------------------------------------------------------------------------


def _lif_through(
    backend: object, x: Tensor, T: int, static: bool, grad_s: Tensor, kw: dict
) -> tuple[Tensor, Tensor, Tensor]:
    """``(spikes, h, grad_x)`` from a backend's two LIF functions."""
    spikes, h = backend.lif_forward(x, T if static else 0, kw["decay"], kw["threshold"], True)  # type: ignore[attr-defined]
    grad_x = backend.lif_backward(  # type: ignore[attr-defined]
        grad_s, h, static, kw["decay"], kw["threshold"], CODES[kw["surrogate"]], kw["detach"]
    )
    return spikes, h, grad_x


def _lif_reference(x: Tensor, T: int, static: bool, grad_s: Tensor, kw: dict) -> tuple[Tensor, ...]:
    """``(spikes, membranes, grad_x)`` of the slow formulation in float64."""
    leaf = x.detach().to(F64).requires_grad_()
    seq = leaf.expand(T, *leaf.shape) if static else leaf
    spikes, membranes = slow_lif(seq, kw["decay"], kw["threshold"], kw["surrogate"], kw["detach"])
    (grad,) = torch.autograd.grad(spikes, leaf, grad_s.to(F64))
    return spikes.detach(), membranes, grad


_NEURON = {
    "decay": st.floats(0.0, 1.0),
    "threshold": st.floats(0.05, 2.0),
    "surrogate": st.sampled_from(sorted(CODES)),
    "detach": st.booleans(),
}


@settings(max_examples=15, deadline=None)
@given(
    T=st.integers(1, 5),
    step=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    static=st.booleans(),
    small_blocks=st.booleans(),
    seed=st.integers(0, 2**16),
    **_NEURON,
)
def test_lif_float64_equals_slow_reference(
    backend: object,
    T: int,
    step: list[int],
    static: bool,
    small_blocks: bool,
    seed: int,
    **kw: object,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(step if static else [T, *step], generator=gen, dtype=F64) * 1.5
    grad_s = torch.randn([T, *step], generator=gen, dtype=F64)
    with pytest.MonkeyPatch.context() as mp:
        # 16-element blocks: several programs per step, a partly masked last one
        mp.setattr(_triton, "MAX_BLOCK", 16 if small_blocks else 1024)
        spikes, h, grad_x = _lif_through(backend, x, T, static, grad_s, kw)
    ref_spikes, ref_h, ref_grad = _lif_reference(x, T, static, grad_s, kw)
    assert spikes.dtype == F64 and spikes.shape == (T, *step)
    assert torch.equal(spikes, ref_spikes)
    # the same operations on the membrane in the same order: the same float64 values
    assert torch.equal(h, ref_h)
    assert grad_x.shape == x.shape and grad_x.dtype == F64
    # the backward sums the same terms in another order: equal to float64 rounding
    torch.testing.assert_close(grad_x, ref_grad, rtol=1e-12, atol=1e-12)


def _margin(membranes: Tensor, threshold: float, surrogate: str) -> float:
    """How far the float64 membranes stay from where a rounding error changes a result: the
    threshold (a spike and the reset) and, for the rectangle surrogate, its edges at +-0.5."""
    d = (membranes - threshold).abs()
    return float(torch.minimum(d, (d - 0.5).abs()).min()) if surrogate == "rectangle" else float(d.min())


# The low-precision cases compare with the float64 reference computed from the same (rounded)
# inputs. Arithmetic is float32 in every case, so the membrane is within (T + 1) float32 roundings
# of the float64 one: below 8 * 2**-24 * 20 < 1e-5 for |h| < 20 and T <= 5. Examples whose float64
# membrane comes within MARGIN = 1e-4 (10x that) of the threshold or of a rectangle edge are left
# out (hypothesis.assume): there a correct float32 kernel may legitimately fire differently.
MARGIN = 1e-4


# Each gradient is a <= 5-step recurrence of a few float32 multiply-adds on values below ~20:
# its error stays below 1e-5 of the largest value involved (a few hundred roundings of 6e-8), an
# absolute bound because terms may cancel. Half-precision results are computed in float32 (the
# kernels recompute the gate in float32 rather than read the stored one) and converted once to the
# output dtype: under one ulp, i.e. a relative error below eps (compiled kernels round to nearest,
# eps / 2, but triton's interpreter truncates float32 to bfloat16).
def _close(actual: Tensor, expected: Tensor, dtype: torch.dtype, what: str) -> None:
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    assert actual.dtype == dtype, what
    torch.testing.assert_close(
        actual.to(F64), expected.to(F64), rtol=max(1e-5, torch.finfo(dtype).eps), atol=1e-5 * scale,
        msg=lambda m: f"{what}: {m}",
    )  # fmt: skip


@settings(max_examples=15, deadline=None)
@given(
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    T=st.integers(1, 5),
    step=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    static=st.booleans(),
    seed=st.integers(0, 2**16),
    **_NEURON,
)
def test_triton_lif_low_precision_against_float64(
    triton_device: str,
    dtype: torch.dtype,
    T: int,
    step: list[int],
    static: bool,
    seed: int,
    **kw: object,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(step if static else [T, *step], generator=gen, dtype=F64) * 1.5).to(dtype)
    grad_s = torch.randn([T, *step], generator=gen, dtype=F64).to(dtype)
    ref_spikes, ref_h, ref_grad = _lif_reference(x, T, static, grad_s, kw)
    assume(_margin(ref_h, kw["threshold"], kw["surrogate"]) > MARGIN)  # type: ignore[arg-type]
    spikes, h, grad_x = _lif_through(_OnDevice(_triton, triton_device), x, T, static, grad_s, kw)
    assert spikes.dtype == dtype and torch.equal(spikes.to(F64), ref_spikes)
    assert h.dtype == torch.float32  # the membrane is kept in float32 for every input dtype
    torch.testing.assert_close(h.to(F64), ref_h, rtol=1e-6, atol=1e-5)
    _close(grad_x, ref_grad, dtype, "grad_x")


# ------------------------------------------------------------------------------------------------
# The LIF fused with the gate
# ------------------------------------------------------------------------------------------------


def _gated_inputs(
    gen: torch.Generator, T: int, step: tuple[int, ...], static: bool, sca_per_step: bool,
    dtype: torch.dtype = F64,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    u = torch.randn(step if static else (T, *step), generator=gen, dtype=F64) * 1.5
    ta = torch.randn((T, step[0]), generator=gen, dtype=F64)
    sca = torch.randn((T, *step) if sca_per_step else step, generator=gen, dtype=F64)
    grad = torch.randn((T, *step), generator=gen, dtype=F64)
    return u.to(dtype), ta.to(dtype), sca.to(dtype), grad.to(dtype)


def _gated_through(
    backend: object, u: Tensor, ta: Tensor, sca: Tensor, grad: Tensor, static: bool, kw: dict
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
    T = ta.shape[0]
    fwd = backend.gated_forward(u, ta, sca, T if static else 0, kw["decay"], kw["threshold"], True)  # type: ignore[attr-defined]
    out, fired, gate, h = fwd
    grads = backend.gated_backward(  # type: ignore[attr-defined]
        grad, h, out, gate, ta, sca, static, kw["decay"], kw["threshold"],
        CODES[kw["surrogate"]], kw["detach"],
    )  # fmt: skip
    return fwd, grads


def _gated_reference(
    u: Tensor, ta: Tensor, sca: Tensor, grad: Tensor, static: bool, kw: dict
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    leaves = [t.detach().to(F64).requires_grad_() for t in (u, ta, sca)]
    out, spikes, gate, membranes = slow_gated_lif(
        *leaves, kw["decay"], kw["threshold"], kw["surrogate"], kw["detach"], static
    )
    grads = torch.autograd.grad(out, leaves, grad.to(F64))
    return (out.detach(), spikes.detach(), gate.detach(), membranes), grads


_STEP = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))


@settings(max_examples=15, deadline=None)
@given(
    T=st.integers(1, 4),
    step=_STEP,
    static=st.booleans(),
    sca_per_step=st.booleans(),
    small_blocks=st.booleans(),
    seed=st.integers(0, 2**16),
    **_NEURON,
)
def test_gated_float64_equals_slow_reference(
    backend: object,
    T: int,
    step: tuple[int, int, int, int],
    static: bool,
    sca_per_step: bool,
    small_blocks: bool,
    seed: int,
    **kw: object,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    u, ta, sca, grad = _gated_inputs(gen, T, step, static, sca_per_step)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_triton, "MAX_BLOCK", 16 if small_blocks else 1024)  # several blocks per sample
        (out, fired, gate, h), grads = _gated_through(backend, u, ta, sca, grad, static, kw)
    (r_out, r_spikes, r_gate, r_h), r_grads = _gated_reference(u, ta, sca, grad, static, kw)
    assert torch.equal(fired, r_spikes) and torch.equal(h, r_h)
    tol = {"rtol": 1e-12, "atol": 1e-12}  # float64: equal to rounding (sigmoid, summation order)
    torch.testing.assert_close(out, r_out, **tol)
    torch.testing.assert_close(gate, r_gate, **tol)
    for name, g, r in zip(("u", "ta", "sca"), grads, r_grads, strict=True):
        assert g.shape == r.shape and g.dtype == F64, name
        torch.testing.assert_close(g, r, **tol, msg=lambda m, n=name: f"grad {n}: {m}")


@settings(max_examples=15, deadline=None)
@given(
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    T=st.integers(1, 4),
    step=_STEP,
    static=st.booleans(),
    sca_per_step=st.booleans(),
    seed=st.integers(0, 2**16),
    **_NEURON,
)
def test_triton_gated_low_precision_against_float64(
    triton_device: str,
    dtype: torch.dtype,
    T: int,
    step: tuple[int, int, int, int],
    static: bool,
    sca_per_step: bool,
    seed: int,
    **kw: object,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    u, ta, sca, grad = _gated_inputs(gen, T, step, static, sca_per_step, dtype)
    (r_out, r_spikes, r_gate, r_h), r_grads = _gated_reference(u, ta, sca, grad, static, kw)
    assume(_margin(r_h, kw["threshold"], kw["surrogate"]) > MARGIN)  # type: ignore[arg-type]
    tri = _OnDevice(_triton, triton_device)
    (out, fired, gate, h), grads = _gated_through(tri, u, ta, sca, grad, static, kw)
    assert fired.dtype == dtype and torch.equal(fired.to(F64), r_spikes)
    assert h.dtype == torch.float32
    _close(out, r_out, dtype, "out")
    _close(gate, r_gate, dtype, "gate")
    for name, g, r, like in zip(("u", "ta", "sca"), grads, r_grads, (grad, ta, sca), strict=True):
        _close(g, r, like.dtype, f"grad {name}")


@pytest.mark.parametrize("static", [False, True])
def test_triton_grad_ta_is_deterministic(
    triton_device: str, monkeypatch: pytest.MonkeyPatch, static: bool
) -> None:
    # 16-element blocks: 5 programs per sample, each adding its own partial sum of grad_ta
    monkeypatch.setattr(_triton, "MAX_BLOCK", 16)
    gen = torch.Generator().manual_seed(7)
    T, step = 3, (2, 4, 5, 4)
    u, ta, sca, grad = _gated_inputs(gen, T, step, static, True, torch.float32)
    kw = {"decay": 0.5, "threshold": 0.8, "surrogate": "triangle", "detach": False}
    tri = _OnDevice(_triton, triton_device)
    runs = [_gated_through(tri, u, ta, sca, grad, static, kw)[1] for _ in range(2)]
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second)
    (_, r_spikes, _, _), r_grads = _gated_reference(u, ta, sca, grad, static, kw)
    assert 0.05 < float(r_spikes.mean()) < 0.95  # the gradients pass through firing neurons
    _close(runs[0][1], r_grads[1], torch.float32, "grad ta")


# ------------------------------------------------------------------------------------------------
# Channels-last steps: the caller hands them over as their contiguous [..., H, W, C] view
# ------------------------------------------------------------------------------------------------


def _channels_last(x: Tensor) -> Tensor:
    """The same values with every ``[B, C, H, W]`` step stored channels-last."""
    flat = x.reshape(-1, *x.shape[-3:]).contiguous(memory_format=torch.channels_last)
    return flat.view(x.shape)


@settings(max_examples=6, deadline=None)
@given(
    T=st.integers(1, 4),
    step=st.tuples(st.integers(1, 3), st.integers(2, 4), st.integers(2, 4), st.integers(1, 4)),
    static=st.booleans(),
    seed=st.integers(0, 2**16),
    **_NEURON,
)
def test_channels_last_views(
    backend: object,
    T: int,
    step: tuple[int, int, int, int],
    static: bool,
    seed: int,
    **kw: object,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    u, ta, sca, grad = _gated_inputs(gen, T, step, static, False)
    last = [_channels_last(t).movedim(-3, -1) for t in (u, sca, grad)]
    assert all(t.is_contiguous() for t in last)  # what the caller hands over
    u_last, sca_last, grad_last = last
    plain = _lif_through(backend, u, T, static, grad, kw)
    viewed = _lif_through(backend, u_last, T, static, grad_last, kw)
    for a, b in zip(plain, viewed, strict=True):
        # elementwise in time: the same operations per element in another memory order
        assert torch.equal(a, b.movedim(-1, -3))
    (p_fwd, p_grads) = _gated_through(backend, u, ta, sca, grad, static, kw)
    (v_fwd, v_grads) = _gated_through(backend, u_last, ta, sca_last, grad_last, static, kw)
    p_out, p_fired, p_gate, p_h = p_fwd
    v_out, v_fired, v_gate, v_h = (t.movedim(-1, -3) for t in v_fwd)
    assert torch.equal(p_fired, v_fired) and torch.equal(p_h, v_h)
    # vectorised loops and their scalar tails (eager, cpp) may round a sigmoid differently in the
    # last bit; grad_ta sums each sample in memory order: equal up to that rounding
    tol = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(p_out, v_out, **tol)
    torch.testing.assert_close(p_gate, v_gate, **tol)
    v_grads = (v_grads[0].movedim(-1, -3), v_grads[1], v_grads[2].movedim(-1, -3))
    for p, v in zip(p_grads, v_grads, strict=True):
        torch.testing.assert_close(p, v, **tol)


# ------------------------------------------------------------------------------------------------
# Exact ties: a membrane at the threshold (no spike, kept) and at the surrogates' edges
# ------------------------------------------------------------------------------------------------

# decay 0.5, threshold 1.0, dyadic inputs: every membrane is exact. Columns (membranes h_t):
#   1.0 (tie), 1.0 (tie), 0.75 | 1.5 (fires, |d| = 0.5: rectangle edge), 0.5 (edge), 0.25 |
#   0.5 (edge), 1.0 (tie), 1.5 (fires, edge) | 2.0 (fires, |d| = 1: triangle edge), 1.0 (tie), 0.5
TIES = torch.tensor([[1.0, 1.5, 0.5, 2.0], [0.5, 0.5, 0.75, 1.0], [0.25, 0.0, 1.0, 0.0]], dtype=F64).view(
    3, 1, 4
)


@pytest.mark.parametrize("surrogate", sorted(CODES))
@pytest.mark.parametrize("detach", [False, True])
def test_ties_at_threshold_and_surrogate_edges(backend: object, surrogate: str, detach: bool) -> None:
    kw = {"decay": 0.5, "threshold": 1.0, "surrogate": surrogate, "detach": detach}
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(3, 1, 4, generator=gen, dtype=F64)
    spikes, h, grad_x = _lif_through(backend, TIES, 3, False, grad, kw)
    ref_spikes, ref_h, ref_grad = _lif_reference(TIES, 3, False, grad, kw)
    assert ref_spikes.flatten().tolist() == [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    assert torch.equal(spikes, ref_spikes) and torch.equal(h, ref_h)
    torch.testing.assert_close(grad_x, ref_grad, rtol=1e-12, atol=1e-12)
    ta = torch.randn(3, 1, generator=gen, dtype=F64)
    sca = torch.randn(1, 4, generator=gen, dtype=F64)
    (out, fired, gate, h), grads = _gated_through(backend, TIES, ta, sca, grad, False, kw)
    (r_out, r_spikes, _, _), r_grads = _gated_reference(TIES, ta, sca, grad, False, kw)
    assert torch.equal(fired, r_spikes)
    for g, r in zip((out, *grads), (r_out, *r_grads), strict=True):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# The triton module itself: availability, lazy import, bad input
# ------------------------------------------------------------------------------------------------


def test_triton_available_and_reasons(triton_device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _triton.available(triton_device) == (True, "")
    assert _triton.available() == (True, "")
    ok, reason = _triton.available("mps")
    assert not ok and "CUDA" in reason
    # kernels compiled for CUDA (no interpreter): CPU tensors are refused with the way out
    monkeypatch.setattr(_triton, "interpreted", lambda: False)
    monkeypatch.setattr(_triton, "_usable", set())  # forget that CPU tensors ran
    ok, reason = _triton.available("cpu")
    assert not ok and "TRITON_INTERPRET=1" in reason
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        _triton.lif_forward(torch.zeros(2, 3), 0, 0.5, 1.0, False)
    monkeypatch.setattr(_triton.importlib.util, "find_spec", lambda name: None)
    assert _triton.available() == (False, "triton is not installed")


def test_triton_bad_input(triton_device: str) -> None:
    x = torch.zeros(2, 3, dtype=torch.int32, device=triton_device)
    with pytest.raises(TypeError, match="x: expected float16, bfloat16, float32 or float64"):
        _triton.lif_forward(x, 0, 0.5, 1.0, False)
    h = torch.zeros(2, 3, device=triton_device)
    with pytest.raises(ValueError, match="surrogate: expected 0"):
        _triton.lif_backward(h, h, False, 0.5, 1.0, 2, False)
    with pytest.raises(ValueError, match="grad_s: expected the shape of h"):
        _triton.lif_backward(h[:1], h, False, 0.5, 1.0, 0, False)
    u = torch.zeros(2, 3, 4, device=triton_device)
    with pytest.raises(ValueError, match="ta: expected a batch size"):
        _triton.gated_forward(u, torch.zeros(2, 5, device=triton_device), u, 0, 0.5, 1.0, False)
    with pytest.raises(ValueError, match="sca: expected one step"):
        _triton.gated_forward(u, torch.zeros(2, 3, device=triton_device), u[:, :1], 0, 0.5, 1.0, False)


def test_without_grad_nothing_is_saved(triton_device: str) -> None:
    x = torch.randn(3, 2, 5, device=triton_device)
    spikes, h = _triton.lif_forward(x, 0, 0.5, 1.0, False)
    assert h is None
    assert torch.equal(spikes.cpu().double(), slow_lif(x.cpu().double(), 0.5, 1.0, "triangle", False)[0])
    ta = torch.randn(3, 2, device=triton_device)
    out, fired, gate, h = _triton.gated_forward(x, ta, x, 0, 0.5, 1.0, False)
    assert h is None and torch.equal(out, gate * fired)
