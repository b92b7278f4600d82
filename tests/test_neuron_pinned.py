"""What the neuron area's mutation run found unpinned in ``gac_coding.neuron``.

The defaults every signature documents (the CIFAR recipe), the tie at the threshold in the slow
reference, the module's lean memory path (its backend and its refusals), its printed settings and
its messages. The numbers are judged against the settings spelled out and a loop written here.
"""

from __future__ import annotations

import pytest
import torch
from slow_reference import slow_lif

import gac_coding as gac
from gac_coding.neuron import lif, lif_reference
from gac_coding.ops import BackendError
from gac_coding.ops.backends import REGISTRY
from gac_coding.ops.lean import LEAN_REGISTRY


def _by_hand(x: torch.Tensor, decay: float, threshold: float) -> torch.Tensor:
    """The spikes of the slow step-by-step LIF of the tests (its forward values)."""
    return slow_lif(x, decay, threshold, "triangle", False)[0].detach()


def _input() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (torch.rand(5, 3, 7, generator=g, dtype=torch.float64) * 1.6).requires_grad_()


def _grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    y = fn(x)
    weights = torch.arange(1.0, y.numel() + 1, dtype=y.dtype).reshape(y.shape)
    (y * weights).sum().backward()
    assert x.grad is not None
    return y.detach(), x.grad


@pytest.mark.parametrize("name", ["lif", "lif_reference", "LIF"])
def test_defaults_are_the_cifar_recipe_in_values_and_gradients(name):
    """decay 0.5, threshold 1.0, the triangle surrogate, the reset in the graph (docstrings)."""
    x = _input()
    spelled = {"decay": 0.5, "threshold": 1.0, "surrogate": "triangle", "detach_reset": False}
    if name == "lif":
        default, explicit = lif, lambda v: lif(v, **spelled)
        detached = lambda v: lif(v, **{**spelled, "detach_reset": True})  # noqa: E731
    elif name == "lif_reference":
        default, explicit = lif_reference, lambda v: lif_reference(v, **spelled)
        detached = lambda v: lif_reference(v, **{**spelled, "detach_reset": True})  # noqa: E731
    else:
        default, explicit = gac.LIF(), gac.LIF(**spelled)
        detached = gac.LIF(**{**spelled, "detach_reset": True})
    y0, g0 = _grad(default, x)
    y1, g1 = _grad(explicit, x)
    torch.testing.assert_close(y0, _by_hand(x.detach(), 0.5, 1.0), rtol=0, atol=0)
    torch.testing.assert_close(y0, y1, rtol=0, atol=0)
    torch.testing.assert_close(g0, g1, rtol=0, atol=0)
    # the input makes the reset's gradient matter, so a default of detach_reset=True would show
    _, g_detached = _grad(detached, x)
    assert not torch.equal(g0, g_detached)


def test_the_reference_does_not_fire_at_the_threshold_itself():
    """``s = [v > threshold]``: a membrane exactly at the threshold is no spike (by hand)."""
    x = torch.tensor([[1.0], [0.5], [0.75]], dtype=torch.float64)
    # v: 1.0 (tie, no spike), 0.5 * 1.0 + 0.5 = 1.0 (tie), 0.5 + 0.75 = 1.25 (spike)
    assert lif_reference(x).flatten().tolist() == [0.0, 0.0, 1.0]
    assert lif(x).flatten().tolist() == [0.0, 0.0, 1.0]


def test_lean_memory_gives_the_default_spikes_and_gradients():
    x = _input()
    for settings in ({}, {"surrogate": "rectangle", "detach_reset": True, "decay": 0.25}):
        default = gac.LIF(**settings).train()
        lean = gac.LIF(**settings, memory="lean").train()
        y0, g0 = _grad(default, x)
        y1, g1 = _grad(lean, x)
        torch.testing.assert_close(y1, y0, rtol=0, atol=0)
        torch.testing.assert_close(g1, g0, rtol=0, atol=0)
        torch.testing.assert_close(y0, _by_hand(x.detach(), settings.get("decay", 0.5), 1.0))


@pytest.mark.parametrize("memory", ["default", "lean"])
def test_the_module_backend_reaches_the_op_in_either_memory_mode(memory, monkeypatch):
    """A backend that cannot run is refused, not silently replaced by the automatic one (eager)."""
    for registry in (REGISTRY, LEAN_REGISTRY):
        monkeypatch.setattr(registry["cpp"], "ready", lambda device: (False, "switched off by the test"))
    neuron = gac.LIF(backend="cpp", memory=memory).train()
    with pytest.raises(BackendError, match="switched off by the test"):
        neuron(_input())


def test_lean_memory_is_refused_for_a_callable_surrogate_naming_the_module():
    with pytest.raises(ValueError, match=r"^memory \(LIF\): the lean ops take the named"):
        gac.LIF(surrogate=lambda v: (v.abs() < 0.5).to(v.dtype), memory="lean")
    neuron = gac.LIF(surrogate=lambda v: (v.abs() < 0.5).to(v.dtype))
    with pytest.raises(ValueError, match=r"^memory \(LIF\): "):
        neuron.memory = "lean"
    assert neuron.memory == "default"


def test_printed_settings_show_the_memory_mode_only_when_it_is_not_the_default():
    assert repr(gac.LIF()) == (
        "LIF(decay=0.5, threshold=1.0, surrogate=triangle, detach_reset=False, backend='auto')"
    )
    assert repr(gac.LIF(memory="lean")) == (
        "LIF(decay=0.5, threshold=1.0, surrogate=triangle, detach_reset=False, backend='auto', memory='lean')"
    )


def test_a_non_tensor_input_is_named_in_the_message():
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor, got list$"):
        gac.LIF()([[1.0, 2.0]])
