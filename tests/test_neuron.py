"""The LIF: hand-computed sequences, the plain-loop formulation, surrogates, bad parameters."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from triton_device import triton_kernel_device

import gac_coding as gac
from gac_coding.neuron import lif, lif_reference
from gac_coding.ops import _cpp, backends

# x = [0.6, 0.6, 0.6, 2.0], decay 0.5, threshold 1.0:
# h = 0.6, 0.9, 1.05 (fires, reset), 2.0 (fires); spikes 0, 0, 1, 1.
# Backward with dL/ds_t = 1 for every t, g = dL/dh_{t+1}:
#   dL/ds_t = 1 - decay * g * h_t (reset path, absent when detached)
#   dL/dh_t = dL/ds_t * sg(h_t - 1) + decay * g * (1 - s_t)
# triangle sg = 0.6, 0.9, 0.95, 0.0; rectangle sg = 1, 1, 1, 0.
HAND = {
    ("triangle", False): [0.91688, 0.99025, 0.95, 0.0],
    ("triangle", True): [1.2875, 1.375, 0.95, 0.0],
    ("rectangle", False): [1.21, 1.05, 1.0, 0.0],
    ("rectangle", True): [1.75, 1.5, 1.0, 0.0],
}


@pytest.mark.parametrize("surrogate,detach", sorted(HAND))
def test_lif_hand_computed(surrogate: str, detach: bool) -> None:
    x = torch.tensor([0.6, 0.6, 0.6, 2.0], dtype=torch.float64).view(4, 1).requires_grad_()
    neuron = gac.LIF(decay=0.5, threshold=1.0, surrogate=surrogate, detach_reset=detach)
    s = neuron(x)
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    s.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad.flatten(), torch.tensor(HAND[(surrogate, detach)], dtype=torch.float64))


# x = [1.2, 0.9, 0.3], decay 0.5, threshold 1.0: h = 1.2 (fires, reset), 0.9, 0.3 + 0.5 * 0.9 = 0.75;
# spikes 1, 0, 0. The fired step carries a non-zero surrogate and the steps after it a non-zero
# gradient, so the reset path (dL/ds_t gets -decay * g * h_t) changes the result when not detached.
# dL/ds_t = 1 for every t; triangle sg = 0.8, 0.9, 0.75; rectangle sg = 1, 1, 1.
#   triangle:  g2 = 0.75
#              g1 = (1 - 0.5 * 0.75 * 0.9) * 0.9 + 0.5 * 0.75 * 1 = 0.6625 * 0.9 + 0.375 = 0.97125
#              g0 = (1 - 0.5 * 0.97125 * 1.2) * 0.8 + 0 (fired: no leak) = 0.41725 * 0.8 = 0.3338
#   detached:  g2 = 0.75, g1 = 0.9 + 0.375 = 1.275, g0 = 0.8
#   rectangle: g2 = 1, g1 = (1 - 0.45) + 0.5 = 1.05, g0 = 1 - 0.5 * 1.05 * 1.2 = 0.37
#   detached:  g2 = 1, g1 = 1 + 0.5 = 1.5, g0 = 1
HAND_RESET = {
    ("triangle", False): [0.3338, 0.97125, 0.75],
    ("triangle", True): [0.8, 1.275, 0.75],
    ("rectangle", False): [0.37, 1.05, 1.0],
    ("rectangle", True): [1.0, 1.5, 1.0],
}
# every backend that can run here (triton in its interpreter, cpp where a compiler is found)
BACKEND_NAMES = ["eager", "triton", *(["cpp"] if _cpp.toolchain_available() else [])]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("surrogate,detach", sorted(HAND_RESET))
def test_lif_hand_computed_gradient_through_the_reset(backend: str, surrogate: str, detach: bool) -> None:
    triton_kernel_device()  # the triton kernels in the interpreter (CPU tensors)
    x = torch.tensor([1.2, 0.9, 0.3], dtype=torch.float64).view(3, 1).requires_grad_()
    neuron = gac.LIF(decay=0.5, threshold=1.0, surrogate=surrogate, detach_reset=detach)
    with backends.use_backend(backend), warnings.catch_warnings():
        warnings.simplefilter("error")  # the backend runs (no fallback warning)
        s = neuron(x)
        (grad,) = torch.autograd.grad(s.sum(), x)
    assert s.flatten().tolist() == [1.0, 0.0, 0.0]
    torch.testing.assert_close(
        grad.flatten(), torch.tensor(HAND_RESET[(surrogate, detach)], dtype=torch.float64)
    )


def test_lif_threshold_is_strict() -> None:
    x = torch.tensor([[1.0], [0.5]])  # h = 1.0 (at threshold: no spike), then 1.5
    assert gac.LIF(decay=1.0, threshold=1.0)(x.unsqueeze(-1)).flatten().tolist() == [0.0, 1.0]


def test_lif_is_stateless_between_calls() -> None:
    neuron = gac.LIF()
    x = torch.rand(5, 3, 4) * 2
    first = neuron(x)
    neuron(torch.rand(5, 7, 4) * 5)
    assert torch.equal(first, neuron(x))


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 7),
    n=st.integers(1, 12),
    decay=st.floats(0.0, 1.0),
    threshold=st.floats(0.1, 2.0),
    surrogate=st.sampled_from(["triangle", "rectangle"]),
    detach=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_lif_matches_plain_loop(
    T: int, n: int, decay: float, threshold: float, surrogate: str, detach: bool, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, 2, n, generator=gen, dtype=torch.float64) * 1.5).requires_grad_()
    grad = torch.randn(T, 2, n, generator=gen, dtype=torch.float64)
    fast = lif(x, decay, threshold, surrogate, detach)
    slow = lif_reference(x, decay, threshold, surrogate, detach)
    assert torch.equal(fast, slow)
    (g_fast,) = torch.autograd.grad(fast, x, grad)
    (g_slow,) = torch.autograd.grad(slow, x, grad)
    torch.testing.assert_close(g_fast, g_slow, rtol=1e-12, atol=1e-12)


def test_lif_static_steps_equal_repeated_sequence() -> None:
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(4, 3, 5, dtype=torch.float64)
    static = lif(x, 0.25, 0.5, "rectangle", True, steps=4)
    seq = lif(x.unsqueeze(0).expand(4, 3, 5), 0.25, 0.5, "rectangle", True)
    assert torch.equal(static, seq)
    (g1,) = torch.autograd.grad(static, x, grad)
    (g2,) = torch.autograd.grad(seq, x, grad)
    torch.testing.assert_close(g1, g2)


def test_lif_callable_surrogate_is_used() -> None:
    calls: list[torch.Tensor] = []

    def constant(v: torch.Tensor) -> torch.Tensor:
        calls.append(v)
        return torch.full_like(v, 2.0)

    x = torch.tensor([[0.3]], requires_grad=True)
    gac.LIF(surrogate=constant)(x).sum().backward()
    assert calls and x.grad is not None
    assert x.grad.item() == pytest.approx(2.0)
    torch.testing.assert_close(calls[0], torch.tensor([0.3 - 1.0]))  # one step of [T=1, B=1]


def test_recipes_build_neurons() -> None:
    imagenet = gac.LIF(**gac.RECIPES["imagenet"])  # type: ignore[arg-type]
    assert (imagenet.decay, imagenet.threshold, imagenet.detach_reset) == (0.25, 0.5, True)
    assert "rectangle" in repr(imagenet)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"decay": 1.5}, ValueError, "decay"),
        ({"decay": -0.1}, ValueError, "decay"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"threshold": "1"}, TypeError, "threshold"),
        ({"surrogate": "sigmoid"}, ValueError, "surrogate"),
        ({"surrogate": 3}, TypeError, "surrogate"),
    ],
)
def test_lif_bad_parameters(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        gac.LIF(**kwargs)


def test_lif_bad_input() -> None:
    neuron = gac.LIF()
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        neuron(torch.zeros(5))
    with pytest.raises(TypeError, match="floating-point"):
        neuron(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        neuron([[0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        lif(torch.zeros(2, 3), steps=0)
