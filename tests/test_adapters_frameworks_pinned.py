"""What the adapters-frameworks mutation run (``adapters/snntorch.py``, ``norse.py``, ``spikingjelly.py``:
one area then, one area per file since) left unpinned by the adapter, NIR and energy tests.

* Each framework's NIR map, called on one neuron: every array of the node against values worked out
  by hand from the neuron's settings (``beta`` clamped as snnTorch clamps it, Norse's own ``dt``
  against the export's, SpikingJelly's ``decay_input``), and the node run by the NIR equations
  written out here against the framework's own neuron run step by step in float64 (spikes equal,
  membranes to 1e-12). Every refusal with its whole message; what each map leaves to others.
* Detection and driving: the classification of neurons (snnTorch's per-step and whole-sequence
  neurons, Norse's cells and sequence modules, SpikingJelly's step modes and containers), the
  drivers' calls (what each call of the backbone receives, the state threaded and reset), the
  messages of each refusal in full; ``reset_state`` for each framework, also on modules of another
  framework that have a method of the same name.
* ``op_counts``: SpikingJelly's counts as ints, the modules it is told to ignore, its
  ``ImportError``.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.adapters import get_framework
from gac_coding.adapters import norse as norse_adapter
from gac_coding.adapters import snntorch as snntorch_adapter
from gac_coding.adapters import spikingjelly as sj_adapter

nir = pytest.importorskip("nir")  # the test extra installs it; never skipped under `make test`

DT = 1e-3


def strict(v: Tensor) -> Tensor:
    """An snnTorch spike function that fires above the threshold and keeps the dtype."""
    return (v > 0).to(v.dtype)


def full_match(text: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for exactly ``text``."""
    return "^" + re.escape(text) + "$"


def node_of(framework: str, module: nn.Module, shape: tuple[int, ...] = (2, 3), dt: float = DT,
            dtype: torch.dtype = torch.float64, where: str = "'n' (X)") -> Any:  # fmt: skip
    return get_framework(framework).nir_node(nir, where, module, shape, dt, dtype)


def arrays(node: Any) -> dict[str, np.ndarray]:
    names = {
        "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
        "IF": ("r", "v_threshold", "v_reset"),
        "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
    }[type(node).__name__]
    return {n: np.asarray(getattr(node, n)) for n in names}


def check_arrays(node: Any, kind: str, expected: dict[str, float], shape: tuple[int, ...],
                 dtype: Any, rtol: float = 1e-12) -> None:  # fmt: skip
    """The node's type, and each array: shape, dtype and (every element) the value by hand."""
    assert type(node).__name__ == kind
    got = arrays(node)
    assert set(got) == set(expected), (set(got), set(expected))
    for name, value in expected.items():
        a = got[name]
        assert a.shape == shape and a.dtype == dtype, (name, a.shape, a.dtype)
        np.testing.assert_allclose(a, np.full(shape, value), rtol=rtol, atol=0, err_msg=name)


def nir_run(node: Any, xs: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The node over the steps of ``xs`` by NIR's equations (Euler, ``dt``); (spikes, membrane
    before the reset) per step."""
    kind = type(node).__name__
    v = np.zeros_like(xs[0])
    i = np.zeros_like(xs[0])
    spikes, mems = [], []
    for x in xs:
        if kind == "LIF":
            v = v + dt / node.tau * ((node.v_leak - v) + node.r * x)
        elif kind == "IF":
            v = v + dt * node.r * x
        else:
            i = i + dt / node.tau_syn * (-i + node.w_in * x)
            v = v + dt / node.tau_mem * ((node.v_leak - v) + node.r * i)
        s = (v > node.v_threshold).astype(xs.dtype)
        spikes.append(s)
        mems.append(v.copy())
        v = np.where(s > 0, node.v_reset, v)
    return np.stack(spikes), np.stack(mems)


def inputs(steps: int = 12, shape: tuple[int, ...] = (2, 3), scale: float = 0.6, seed: int = 0) -> Tensor:
    return (
        torch.rand(steps, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    )


# ------------------------------------------------------------------------------------------------
# snnTorch: Leaky as a NIR LIF (or IF)
# ------------------------------------------------------------------------------------------------


def leaky(beta: Any = 0.75, threshold: float = 0.5, **kwargs: Any) -> nn.Module:
    import snntorch as snn

    settings = {"reset_mechanism": "zero", "spike_grad": strict, **kwargs}
    return snn.Leaky(beta=beta, threshold=threshold, **settings)


def snntorch_steps(m: nn.Module, xs: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """snnTorch's own Leaky (explicit membrane) step by step: (spikes, membranes)."""
    mem = torch.zeros_like(xs[0])
    spikes, mems = [], []
    with torch.no_grad():
        for x in xs:
            spk, mem = m(x, mem)
            spikes.append(spk)
            mems.append(mem)
    return torch.stack(spikes).numpy(), torch.stack(mems).numpy()


@pytest.mark.parametrize(
    ("beta", "kind", "expected"),
    [
        # tau = dt / (1 - beta), r = 1 / (1 - beta)
        (0.75, "LIF", {"tau": DT / 0.25, "r": 4.0, "v_leak": 0.0, "v_threshold": 0.5, "v_reset": 0.0}),
        (0.5, "LIF", {"tau": DT / 0.5, "r": 2.0, "v_leak": 0.0, "v_threshold": 0.5, "v_reset": 0.0}),
        # snnTorch clamps beta to [0, 1]: above 1 no leak (an IF, r = 1 / dt), below 0 no memory
        (1.5, "IF", {"r": 1.0 / DT, "v_threshold": 0.5, "v_reset": 0.0}),
        (1.0, "IF", {"r": 1.0 / DT, "v_threshold": 0.5, "v_reset": 0.0}),
        (-0.25, "LIF", {"tau": DT, "r": 1.0, "v_leak": 0.0, "v_threshold": 0.5, "v_reset": 0.0}),
    ],
)
def test_snntorch_leaky_node_by_hand_and_against_the_neuron(beta: float, kind: str, expected: dict) -> None:
    m = leaky(beta)
    node = node_of("snntorch", m)
    check_arrays(node, kind, expected, (2, 3), np.float64)
    xs = inputs()
    spikes, mems = snntorch_steps(m.double(), xs)
    agrees_with_the_framework(node, xs, spikes, mems, after_reset=False)


def test_snntorch_leaky_node_in_float32_with_a_beta_and_threshold_per_neuron() -> None:
    beta = torch.tensor([0.5, 0.75, 0.875])
    threshold = torch.tensor([0.25, 0.5, 1.0])
    node = node_of("snntorch", leaky(beta, threshold=threshold), shape=(2, 3), dtype=torch.float32)
    assert type(node).__name__ == "LIF"
    for name in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
        a = getattr(node, name)
        assert a.shape == (2, 3) and a.dtype == np.float32, name
    np.testing.assert_allclose(node.tau, np.tile(DT / np.array([0.5, 0.25, 0.125]), (2, 1)), rtol=1e-6)
    np.testing.assert_array_equal(node.r, np.tile(np.float32([2, 4, 8]), (2, 1)))
    np.testing.assert_array_equal(node.v_threshold, np.tile(np.float32([0.25, 0.5, 1.0]), (2, 1)))
    assert not node.v_leak.any() and not node.v_reset.any()


def test_snntorch_beta_that_is_one_for_some_neurons_only_is_refused() -> None:
    where = "'b.1' (Leaky)"
    with pytest.raises(
        ValueError,
        match=full_match(
            f"{where}: some neurons have decay 1 (no leak) and others leak; NIR's LIF cannot "
            f"express a non-leaky neuron (tau would be infinite) and IF cannot leak"
        ),
    ):
        node_of("snntorch", leaky(torch.tensor([0.5, 1.0, 0.75])), shape=(3,), where=where)


def _leaky_refusals() -> list[tuple[dict[str, Any], type, str]]:
    tail = (
        "which NIR's LIF (reset to v_reset) cannot express exactly; build the neuron with "
        "reset_mechanism='zero'"
    )
    fires = "its spike function does not fire exactly when mem > threshold"
    return [
        ({"reset_mechanism": "subtract"}, ValueError,
         f"reset_mechanism='subtract' is a soft reset (subtract the threshold), {tail}"),
        ({"reset_mechanism": "none"}, ValueError, f"reset_mechanism='none' is no reset, {tail}"),
        ({"inhibition": True}, ValueError, "inhibition and state_quant have no NIR equivalent"),
        ({"state_quant": lambda v: v}, ValueError, "inhibition and state_quant have no NIR equivalent"),
        ({"output": True, "init_hidden": True}, ValueError,
         "output=True returns the membrane, which NIR neurons do not emit (they emit spikes only); "
         "end the backbone with a Linear layer for per-step logits"),
        ({"graded_spikes_factor": 2.0}, ValueError, "graded_spikes_factor must be 1 (binary spikes) for NIR"),
        ({"graded_spikes_factor": torch.tensor([1.0, 0.5, 1.0])}, ValueError,
         "graded_spikes_factor must be 1 (binary spikes) for NIR"),
        ({"spike_grad": lambda v: (v >= 0).to(v.dtype)}, ValueError,
         f"{fires} (probe gave 'ge'); NIR's LIF does"),
        ({"spike_grad": lambda v: (v > 1e-2).to(v.dtype)}, ValueError,
         f"{fires} (probe gave 'other'); NIR's LIF does"),
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
@pytest.mark.parametrize(("settings", "error", "message"), _leaky_refusals())
def test_snntorch_leaky_refusals_in_full(settings: dict, error: type, message: str) -> None:
    where = "'stages.0' (Leaky)"
    with pytest.raises(error, match=full_match(f"{where}: {message}")):
        node_of("snntorch", leaky(**settings), where=where)


def test_snntorch_leaky_settings_each_default_accepted() -> None:
    """The refusals' settings at their accepted values give the plain node (each read for what it is)."""
    for settings in ({"inhibition": False}, {"state_quant": False}, {"output": False},
                     {"graded_spikes_factor": 1.0}, {"graded_spikes_factor": torch.ones(3)}):  # fmt: skip
        node = node_of("snntorch", leaky(**settings))
        assert type(node).__name__ == "LIF", settings


def test_snntorch_other_neurons_and_modules() -> None:
    import snntorch as snn

    where = "'x' (Synaptic)"
    message = f"{where}: NIR export maps snnTorch's Leaky only (a LIF); this neuron has other dynamics"
    for other in (
        snn.Synaptic(alpha=0.5, beta=0.5),
        snn.StateLeaky(beta=0.5, channels=2),
        snn.Lapicque(beta=0.5),
    ):
        with pytest.raises(TypeError, match=full_match(message)):
            node_of("snntorch", other, where=where)

    class MyLeaky(snn.Leaky):  # a subclass defined elsewhere: no map (export refuses it)
        pass

    assert node_of("snntorch", MyLeaky(beta=0.5, reset_mechanism="zero", spike_grad=strict)) is None
    # a module of snnTorch's package outside its neurons, and modules of other packages
    outside = type("Layer", (nn.Module,), {"__module__": "snntorch._layers.thing"})()
    assert node_of("snntorch", outside) is None
    from spikingjelly.activation_based import neuron

    for module in (nn.Linear(2, 2), gac.LIF(), neuron.LIFNode()):
        assert node_of("snntorch", module) is None
    # a class named Leaky in another package is not snnTorch's
    fake = type("Leaky", (nn.Module,), {"__module__": "snntorchx._neurons.leaky"})()
    assert node_of("snntorch", fake) is None


# ------------------------------------------------------------------------------------------------
# Norse: LIFCell / LIF as a CubaLIF, LIFBoxCell as a LIF
# ------------------------------------------------------------------------------------------------


def norse_steps(cell: nn.Module, xs: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Norse's cell step by step from rest: (spikes, membranes after the reset)."""
    state = None
    spikes, mems = [], []
    with torch.no_grad():
        for x in xs:
            z, state = cell(x, state)
            spikes.append(z)
            mems.append(state.v)
    return torch.stack(spikes).numpy(), torch.stack(mems).numpy()


def reset_after(node: Any, spikes: np.ndarray, mems: np.ndarray) -> np.ndarray:
    return np.where(spikes > 0, node.v_reset, mems)


def agrees_with_the_framework(node: Any, xs: Tensor, spikes: Any, mems: Any, *, after_reset: bool) -> None:
    """The node run by NIR's equations over ``xs`` gives the framework's spikes, and its membrane to
    1e-12 (after the reset where the framework reports it so); the case fires, and not always."""
    nir_spikes, nir_mems = nir_run(node, xs.numpy(), DT)
    assert spikes.sum() > 0 and (spikes == 0).sum() > 0
    np.testing.assert_array_equal(nir_spikes, spikes)
    got = reset_after(node, nir_spikes, nir_mems) if after_reset else nir_mems
    np.testing.assert_allclose(got, mems, rtol=0, atol=1e-12)


def test_norse_lif_cell_node_by_hand_and_against_the_cell() -> None:
    import norse.torch as norse

    # Norse's own dt (2 ms) is not the export's (1 ms): the per-step leaks are dt_n / tau
    p = norse.LIFParameters(tau_syn_inv=torch.tensor(250.0), tau_mem_inv=torch.tensor(125.0),
                            v_th=torch.tensor(0.5), v_reset=torch.tensor(0.125))  # fmt: skip
    cell = norse.LIFCell(p, dt=2e-3)
    node = node_of("norse", cell)
    # leak_mem = 2e-3 * 125 = 0.25 -> tau_mem = 1e-3 / 0.25; leak_syn = 0.5 -> tau_syn = 2e-3, w_in = 2
    check_arrays(
        node,
        "CubaLIF",
        {"tau_syn": 2e-3, "tau_mem": 4e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 0.5,
         "v_reset": 0.125, "w_in": 2.0},
        (2, 3),
        np.float64,
    )  # fmt: skip
    xs = inputs(steps=16, scale=0.5)
    spikes, mems = norse_steps(cell, xs)
    agrees_with_the_framework(node, xs, spikes, mems, after_reset=True)


def test_norse_lif_sequence_module_is_the_same_node() -> None:
    import norse.torch as norse

    p = norse.LIFParameters(tau_syn_inv=torch.tensor(250.0), tau_mem_inv=torch.tensor(125.0),
                            v_th=torch.tensor(0.5), v_reset=torch.tensor(0.125))  # fmt: skip
    node = node_of("norse", norse.LIF(p, dt=2e-3), dtype=torch.float32)
    check_arrays(
        node,
        "CubaLIF",
        {"tau_syn": 2e-3, "tau_mem": 4e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 0.5,
         "v_reset": 0.125, "w_in": 2.0},
        (2, 3),
        np.float32,
        rtol=1e-6,
    )  # fmt: skip


def test_norse_lif_box_cell_node_by_hand_and_against_the_cell() -> None:
    import norse.torch as norse

    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(250.0), v_th=torch.tensor(0.25),
                               v_reset=torch.tensor(-0.125))  # fmt: skip
    cell = norse.LIFBoxCell(p, dt=2e-3)
    node = node_of("norse", cell)
    # leak = 2e-3 * 250 = 0.5 -> tau = 1e-3 / 0.5
    check_arrays(
        node,
        "LIF",
        {"tau": 2e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 0.25, "v_reset": -0.125},
        (2, 3),
        np.float64,
    )
    xs = inputs(steps=16, scale=0.4)
    spikes, mems = norse_steps(cell, xs)
    agrees_with_the_framework(node, xs, spikes, mems, after_reset=True)


def test_norse_default_cells_read_their_own_dt() -> None:
    """Norse's default dt (1 ms) and time constants; the export's dt only scales tau."""
    import norse.torch as norse

    node = node_of("norse", norse.LIFCell(), dt=5e-4)
    # dt_n tau_mem_inv = 0.1 -> tau_mem = 5e-4 / 0.1; dt_n tau_syn_inv = 0.2 -> tau_syn = 2.5e-3, w_in 5
    check_arrays(
        node,
        "CubaLIF",
        {"tau_syn": 2.5e-3, "tau_mem": 5e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0,
         "v_reset": 0.0, "w_in": 5.0},
        (2, 3),
        np.float64,
    )  # fmt: skip
    node = node_of("norse", norse.LIFBoxCell(dt=4e-3), dt=5e-4)  # dt_n tau_mem_inv = 0.4
    check_arrays(node, "LIF", {"tau": 1.25e-3, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0},
                 (2, 3), np.float64)  # fmt: skip


def test_norse_refusals_in_full() -> None:
    import norse.torch as norse
    from norse.torch.functional.reset import reset_subtract

    where = "'b.0' (LIFCell)"
    leaky = norse.LIFCell(norse.LIFParameters(v_leak=torch.tensor(0.5)))
    with pytest.raises(
        ValueError,
        match=full_match(
            f"{where}: v_leak=0.5 is also Norse's initial membrane, while NIR consumers start at 0; "
            f"export needs v_leak=0"
        ),
    ):
        node_of("norse", leaky, where=where)
    per_neuron = norse.LIFBoxCell(norse.LIFBoxParameters(v_leak=torch.tensor([0.0, 0.25, 0.0])))
    with pytest.raises(ValueError, match=re.escape(f"{where}: v_leak=[0.0, 0.25, 0.0] is also")):
        node_of("norse", per_neuron, shape=(3,), where=where)
    tail = (
        "is not a reset to v_reset, which is all NIR's LIF expresses; build the neuron with "
        "Norse's default reset_value"
    )
    soft = norse.LIFBoxCell(norse.LIFBoxParameters(reset_method=reset_subtract))
    with pytest.raises(ValueError, match=full_match(f"{where}: reset_method=reset_subtract {tail}")):
        node_of("norse", soft, where=where)

    class Named:  # a reset without a __name__: its repr names it
        def __call__(self, *args: Any) -> Any:
            raise AssertionError("never called")

        def __repr__(self) -> str:
            return "<my reset>"

    odd = norse.LIFBoxCell(norse.LIFBoxParameters(reset_method=Named()))
    with pytest.raises(ValueError, match=full_match(f"{where}: reset_method=<my reset> {tail}")):
        node_of("norse", odd, where=where)


def test_norse_other_neurons_and_modules() -> None:
    import norse.torch as norse

    where = "'x' (LICell)"
    message = (
        f"{where}: NIR export maps Norse's LIFCell, LIF and LIFBoxCell only; this neuron has other "
        f"dynamics (a leaky integrator readout has no spikes to export: end the backbone with a Linear "
        f"layer)"
    )
    # cells by their name, and a sequence module (no "Cell") by its parameters
    for other in (norse.LICell(), norse.LI(), norse.LIFAdExCell(), norse.LIFRecurrentCell(2, 2)):
        with pytest.raises(TypeError, match=full_match(message)):
            node_of("norse", other, where=where)
    # a Norse class that ends in "Cell" but has no parameters: refused by its name alone
    bare = type("ThingCell", (nn.Module,), {"__module__": "norse.torch.module.thing"})()
    with pytest.raises(TypeError, match=full_match(message)):
        node_of("norse", bare, where=where)
    for module in (
        norse.SequentialState(nn.Linear(2, 2)),
        norse.Lift(nn.Linear(2, 2)),
        nn.Linear(2, 2),
        gac.LIF(),
    ):
        assert node_of("norse", module) is None
    # Norse's names outside its modules are not Norse's neurons
    fake = type("LIFCell", (nn.Module,), {"__module__": "norse.torch.functional.lif"})()
    assert node_of("norse", fake) is None


# ------------------------------------------------------------------------------------------------
# SpikingJelly: LIFNode as a LIF, IFNode as an IF
# ------------------------------------------------------------------------------------------------


def sj_steps(node: nn.Module, xs: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """SpikingJelly's node in single-step mode, step by step: (spikes, membranes after the reset)."""
    spikes, mems = [], []
    node.reset()
    with torch.no_grad():
        for x in xs:
            spikes.append(node(x))
            mems.append(node.v.clone())
    return torch.stack(spikes).numpy(), torch.stack(mems).numpy()


@pytest.mark.parametrize(
    ("make", "kind", "expected"),
    [
        # decay_input=False charges V - V/tau + X: dt/tau_nir = 1/tau, r = tau
        (lambda n: n.LIFNode(tau=4.0, decay_input=False, v_threshold=0.75), "LIF",
         {"tau": 4 * DT, "r": 4.0, "v_leak": 0.0, "v_threshold": 0.75, "v_reset": 0.0}),
        # decay_input=True charges V + (X - V)/tau: r = 1
        (lambda n: n.LIFNode(tau=2.0, v_threshold=0.25), "LIF",
         {"tau": 2 * DT, "r": 1.0, "v_leak": 0.0, "v_threshold": 0.25, "v_reset": 0.0}),
        (lambda n: n.IFNode(v_threshold=0.5), "IF", {"r": 1 / DT, "v_threshold": 0.5, "v_reset": 0.0}),
    ],
)  # fmt: skip
def test_spikingjelly_node_by_hand_and_against_the_neuron(make: Callable, kind: str, expected: dict) -> None:
    from spikingjelly.activation_based import neuron

    m = make(neuron)
    node = node_of("spikingjelly", m)
    check_arrays(node, kind, expected, (2, 3), np.float64)
    xs = inputs(steps=12, scale=0.5)
    spikes, mems = sj_steps(m, xs)
    agrees_with_the_framework(node, xs, spikes, mems, after_reset=True)
    assert node.v_reset is not getattr(node, "v_leak", None)


def test_spikingjelly_refusals_in_full() -> None:
    from spikingjelly.activation_based import neuron

    for cls, kind in ((neuron.LIFNode, "LIF"), (neuron.IFNode, "IF")):
        where = f"'b.2' ({cls.__name__})"
        with pytest.raises(
            ValueError,
            match=full_match(
                f"{where}: v_reset=None is a soft reset (subtract the threshold), which NIR's {kind} "
                f"(reset to v_reset) cannot express exactly"
            ),
        ):
            node_of("spikingjelly", cls(v_reset=None), where=where)
        with pytest.raises(
            ValueError,
            match=full_match(
                f"{where}: v_reset=-0.5 also sets the resting and initial membrane, which NIR consumers "
                f"start at 0; export needs v_reset=0.0"
            ),
        ):
            node_of("spikingjelly", cls(v_reset=-0.5), where=where)
    where = "'b.2' (ParametricLIFNode)"
    for other in (neuron.ParametricLIFNode(), neuron.IzhikevichNode(), neuron.KLIFNode()):
        with pytest.raises(
            TypeError,
            match=full_match(
                f"{where}: NIR export maps SpikingJelly's LIFNode and IFNode only; this neuron has "
                f"other dynamics"
            ),
        ):
            node_of("spikingjelly", other, where=where)
    from spikingjelly.activation_based import layer

    for module in (
        layer.Conv2d(1, 2, 3),
        nn.Linear(2, 2),
        gac.LIF(),
        layer.SeqToANNContainer(nn.Linear(2, 2)),
    ):
        assert node_of("spikingjelly", module) is None


# ------------------------------------------------------------------------------------------------
# snnTorch: detection, the three modes, the loop's feed, reset
# ------------------------------------------------------------------------------------------------


def quiet_wrap(backbone: nn.Module, **kwargs: Any) -> gac.GACNet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gac.wrap(backbone, **kwargs)


def test_snntorch_classifies_per_step_and_whole_sequence_neurons() -> None:
    import snntorch as snn

    rleaky = snn.RLeaky(beta=0.5, linear_features=4, init_hidden=True)  # holds a Linear: not walked into
    backbone = nn.Sequential(
        nn.Linear(4, 4),
        nn.Sequential(snn.Leaky(beta=0.5), rleaky),
        snn.StateLeaky(beta=0.5, channels=4),
        snn.Synaptic(alpha=0.5, beta=0.5),
    )
    stepwise, sequence = snntorch_adapter._neurons(backbone)
    assert [n for n, _ in stepwise] == ["1.0", "1.1", "3"]
    assert [n for n, _ in sequence] == ["2"]
    assert stepwise[1][1] is rleaky and sequence[0][1] is backbone[2]
    assert snntorch_adapter._kind(backbone[0]) is None and snntorch_adapter._kind(backbone) is None
    assert snntorch_adapter._kind(rleaky) == "step" and snntorch_adapter._kind(backbone[2]) == "sequence"
    # a neuron is what snnTorch's neuron package defines, also through a subclass made elsewhere
    assert snntorch_adapter._is_neuron(rleaky) and not snntorch_adapter._is_neuron(rleaky.recurrent)
    mine = type("Mine", (snn.StateLeaky,), {"__module__": "elsewhere"})(beta=0.5, channels=4)
    assert snntorch_adapter._is_neuron(mine) and snntorch_adapter._kind(mine) == "sequence"
    other = type("Leaky", (nn.Module,), {"__module__": "snntorch.other"})()
    assert not snntorch_adapter._is_neuron(other) and snntorch_adapter._kind(other) is None


def test_snntorch_build_chooses_the_mode_and_its_messages_in_full() -> None:
    import snntorch as snn

    T = 3
    step = snntorch_adapter.build(
        nn.Sequential(nn.Linear(4, 4), snn.Leaky(beta=0.5, init_hidden=True)), T, None
    )
    assert (step.mode, step.T, step.input_layer, step.feed) == ("step", T, None, None)
    seq = snntorch_adapter.build(
        nn.Sequential(nn.Linear(4, 4), snn.StateLeaky(beta=0.5, channels=4)), T, None
    )
    assert (seq.mode, seq.T, seq.input_layer, seq.feed) == ("sequence", T, None, None)
    assert snntorch_adapter.build(nn.Sequential(nn.Linear(4, 4)), T, None).mode == "step"
    fc = nn.Linear(4, 4)
    loop = snntorch_adapter.build(nn.Sequential(fc, snn.Leaky(beta=0.5)), T, ("0", fc))
    assert (loop.mode, loop.T, loop.input_layer) == ("loop", T, "0")
    assert loop.feed is not None and loop.feed.attached_to(fc) and not loop.feed.attached_to(nn.Linear(4, 4))
    assert (loop.feed.name, loop.feed.T, loop.feed.code, loop.feed.calls) == ("0", T, None, 0)
    assert len(fc._forward_pre_hooks) == 1

    mixed = nn.Sequential(nn.Linear(4, 4), snn.Leaky(beta=0.5, init_hidden=True), nn.Linear(4, 4),
                          snn.Leaky(beta=0.5))  # fmt: skip
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: expected snnTorch neurons that all use init_hidden=True (the wrapper loops over "
            "time) or all init_hidden=False (the net loops itself), got both: '1' (Leaky) has "
            "init_hidden=True, '3' (Leaky) has init_hidden=False"
        ),
    ):
        snntorch_adapter.build(mixed, T, None)
    both = nn.Sequential(
        snn.StateLeaky(beta=0.5, channels=4), snn.Synaptic(alpha=0.5, beta=0.5, init_hidden=True)
    )
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: expected per-step snnTorch neurons or whole-sequence ones, got both: '1' "
            "(Synaptic) is per-step, '0' (StateLeaky) takes whole sequences"
        ),
    ):
        snntorch_adapter.build(both, T, None)
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: its snnTorch neurons use explicit membranes (init_hidden=False), so the net loops "
            "over time itself and the code must enter through its input layer, but it has no "
            "Conv/Linear layer; name one with input_layer="
        ),
    ):
        snntorch_adapter.build(nn.Sequential(snn.Leaky(beta=0.5)), T, None)


class Recorder(nn.Module):
    """Records what each call receives; returns it times 2."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.clone())
        return 2 * x


def test_snntorch_driver_resets_then_calls_per_step_or_once() -> None:
    import snntorch as snn

    code = torch.arange(24, dtype=torch.float64).view(3, 2, 4)
    lif = snn.Leaky(beta=0.5, init_hidden=True, spike_grad=strict).double()
    lif.mem = torch.full((2, 4), 100.0, dtype=torch.float64)  # a stale membrane: fires at once if kept
    rec = Recorder()
    out = snntorch_adapter.SnnTorchDriver("step", 3, None).run(nn.Sequential(rec, lif), code / 100)
    assert len(rec.seen) == 3 and all(torch.equal(rec.seen[t], code[t] / 100) for t in range(3))
    # from rest: 2 x / 100 < 1 at every step, summed with decay 1/2: the membrane stays below 1
    assert out.shape == (3, 2, 4) and not out.any()
    seq_rec = Recorder()
    out = snntorch_adapter.SnnTorchDriver("sequence", 3, None).run(seq_rec, code)
    assert len(seq_rec.seen) == 1 and torch.equal(seq_rec.seen[0], code) and torch.equal(out, 2 * code)


def test_snntorch_reset_state_resets_snntorch_neurons_only() -> None:
    import snntorch as snn

    calls: list[str] = []
    foreign = type("Foreign", (nn.Module,), {"reset_mem": lambda self: calls.append("foreign")})()
    not_callable = nn.Module()
    not_callable.reset_mem = 3  # type: ignore[assignment]
    lif = snn.Leaky(beta=0.5, init_hidden=True)
    lif.mem = torch.ones(2)
    get_framework("snntorch").reset_state(nn.Sequential(foreign, not_callable, nn.Sequential(lif)))
    assert calls == [] and torch.equal(lif.mem, torch.zeros(2))
    lif.mem = torch.ones(2)
    snntorch_adapter.reset_states(nn.Sequential(not_callable, nn.Sequential(lif)))
    assert torch.equal(lif.mem, torch.zeros(2))


class TwoArgs(nn.Module):
    def forward(self, x: Tensor, scale: float) -> Tensor:
        return x * scale


class LoopNet(nn.Module):
    """The tutorial shape: ``num_steps`` calls of the input layer on the static input."""

    def __init__(self, num_steps: int, feed: Callable[[nn.Module, Tensor], Tensor] | None = None) -> None:
        super().__init__()
        import snntorch as snn

        self.num_steps = num_steps
        self.inp = TwoArgs()
        self.fc = nn.Linear(64, 4)
        self.lif = snn.Leaky(beta=0.5, spike_grad=strict)
        self.feed = feed

    def forward(self, x: Tensor) -> Tensor:
        mem = self.lif.init_leaky()
        out = []
        for _ in range(self.num_steps):
            h = self.feed(self, x) if self.feed is not None else self.fc(self.inp(x.flatten(1), 0.5))
            spk, mem = self.lif(h, mem)
            out.append(mem)
        return torch.stack(out)


def test_snntorch_loop_passes_the_input_layers_other_arguments_on() -> None:
    net = quiet_wrap(LoopNet(3), T=3, in_channels=1, input_layer="inp")
    assert net.mode == "loop"
    seen: list[Any] = []
    net.backbone.inp.register_forward_hook(lambda m, a, o: seen.append((a[0].clone(), a[1], o.clone())))
    x = torch.rand(2, 1, 8, 8)
    net(x)
    code = net.encoder(x)
    assert len(seen) == 3
    for t, (arg, scale, out) in enumerate(seen):
        assert scale == 0.5 and torch.equal(arg, code[t].reshape(2, 64)) and torch.equal(out, 0.5 * arg)


def _loop_message(name: str, tail: str) -> str:
    return f"backbone: its input layer {name!r} {tail}"


def test_snntorch_loop_messages_in_full() -> None:
    T = 3
    x = torch.rand(2, 1, 8, 8)
    few = quiet_wrap(LoopNet(2), T=T, in_channels=1, input_layer="fc")
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: its input layer 'fc' was called 2 times in one forward, expected exactly T=3 "
            "(one per step); set the net's num_steps to T=3"
        ),
    ):
        few(x)
    many = quiet_wrap(LoopNet(4), T=T, in_channels=1, input_layer="fc")
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: its input layer 'fc' was called more than T=3 times in one forward; the net's "
            "own loop (num_steps) must run exactly T=3 steps"
        ),
    ):
        many(x)
    keyword = quiet_wrap(LoopNet(3, feed=lambda m, x: m.fc(input=x.flatten(1))), T=T, in_channels=1,
                         input_layer="fc")  # fmt: skip
    with pytest.raises(
        TypeError, match=full_match("backbone: its input layer 'fc' was called without a tensor argument")
    ):
        keyword(x)
    wrong = quiet_wrap(LoopNet(3, feed=lambda m, x: m.fc(x.flatten(1)[:, :32].repeat(1, 2)[:1])), T=T,
                       in_channels=1, input_layer="fc")  # fmt: skip
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: its input layer 'fc' received a tensor of shape (1, 64), which is not a reshape "
            "of one code step (2, 1, 8, 8); the net must pass its static input (possibly flattened) "
            "straight to 'fc', or name another layer with input_layer="
        ),
    ):
        wrong(x)


def test_snntorch_loop_feed_called_with_something_else_than_a_tensor() -> None:
    feed = snntorch_adapter.LoopFeed("fc", 2)
    feed.start(torch.zeros(2, 1, 4))
    with pytest.raises(
        TypeError, match=full_match("backbone: its input layer 'fc' was called without a tensor argument")
    ):
        feed(nn.Identity(), ([1.0, 2.0],))
    assert feed.calls == 1
    step = feed(nn.Identity(), (torch.ones(4), "extra"))
    assert step is not None and torch.equal(step[0], torch.zeros(4)) and step[1:] == ("extra",)
    feed.stop()
    assert feed.code is None and feed(nn.Identity(), (torch.ones(4),)) is None and feed.calls == 2


def test_snntorch_loop_with_a_replaced_input_layer_under_the_compiler_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.rand(2, 1, 8, 8)
    message = (
        "backbone: its input layer 'fc' was replaced after wrap(); call the net once outside "
        "torch.compile/torch.export to re-attach it"
    )
    for flag in ("is_compiling", "is_exporting"):
        net = quiet_wrap(LoopNet(3), T=3, in_channels=1, input_layer="fc")
        net.backbone.fc = nn.Linear(64, 4)
        with monkeypatch.context() as m:
            m.setattr(torch.compiler, flag, lambda: True)
            with pytest.raises(RuntimeError, match=full_match(message)):
                net(x)
        out = net(x)  # outside: the hook moves to the new layer
        assert out.shape == (3, 2, 4)
        assert net._driver.feed.attached_to(net.backbone.fc)


# ------------------------------------------------------------------------------------------------
# Norse: cells and sequence modules, the driver's state
# ------------------------------------------------------------------------------------------------


class MyCell(nn.Module):
    """A stateful cell made elsewhere (its name ends in "Cell", it takes a state)."""

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        return x, state


class StatelessCell(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class Stateful(nn.Module):
    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        return x, state


def test_norse_takes_state_reads_the_forward_signature() -> None:
    assert norse_adapter._takes_state(MyCell()) and norse_adapter._takes_state(Stateful())
    assert not norse_adapter._takes_state(StatelessCell()) and not norse_adapter._takes_state(nn.Linear(2, 2))
    builtin = nn.Module()
    builtin.forward = torch.relu  # no signature (ValueError)
    odd = nn.Module()
    odd.forward = 3  # not callable (TypeError)
    assert not norse_adapter._takes_state(builtin) and not norse_adapter._takes_state(odd)
    driver = norse_adapter.build(builtin, 4, None)
    assert (driver.mode, driver.T, driver.stateful) == ("sequence", 4, False)


def test_norse_classifies_cells_and_sequence_modules() -> None:
    import norse.torch as norse

    cells_net = norse.SequentialState(
        nn.Linear(2, 2),
        norse.LIFCell(),
        nn.Sequential(norse.LICell(), StatelessCell(), Stateful()),
        MyCell(),
        norse.LIFRecurrentCell(2, 2),
        # Norse's cells by their base class, whatever their name
        type("Mine", (norse.LIFCell,), {"__module__": "elsewhere"})(),
        type("Mine", (norse.LIFRecurrentCell,), {"__module__": "elsewhere"})(2, 2),
    )
    cells, sequences = norse_adapter._classify(cells_net)
    assert [n for n, _ in cells] == ["1", "2.0", "3", "4", "5", "6"] and sequences == []
    seq_net = norse.SequentialState(
        norse.LIF(), nn.Linear(2, 2), norse.Lift(norse.LIFCell()), nn.LSTM(2, 2), norse.LIFRecurrent(2, 2)
    )
    cells, sequences = norse_adapter._classify(seq_net)
    assert cells == [] and [n for n, _ in sequences] == ["0", "2", "3", "4"]
    # the neuron predicate: Norse's neurons, also through a subclass made elsewhere
    neurons = (
        norse.LIF(),
        norse.LIFCell(),
        norse.LIFRecurrentCell(2, 2),
        norse.LIFRecurrent(2, 2),
        norse.LICell(),
    )
    assert all(norse_adapter._is_neuron(m) for m in neurons)
    mine = type("Mine", (norse.LIFCell,), {"__module__": "elsewhere"})()
    assert norse_adapter._is_neuron(mine)
    # a cell that derives from no Norse base class is a neuron by its name
    assert norse_adapter._is_neuron(norse.CobaLIFCell(2, 2))
    assert not any(
        norse_adapter._is_neuron(m)
        for m in (norse.SequentialState(), norse.Lift(nn.Linear(2, 2)), MyCell(), nn.RNNCell(2, 2),
                  type("SNN", (nn.Module,), {"__module__": "other.torch.module"})())
    )  # fmt: skip


def test_norse_build_modes_and_the_mixed_message_in_full() -> None:
    import norse.torch as norse

    step = norse_adapter.build(norse.SequentialState(nn.Linear(2, 2), norse.LIFCell()), 5, None)
    assert (step.mode, step.T, step.stateful) == ("step", 5, True)
    seq = norse_adapter.build(norse.SequentialState(nn.Linear(2, 2), norse.LIF()), 5, None)
    assert (seq.mode, seq.T, seq.stateful) == ("sequence", 5, True)
    plain = norse_adapter.build(norse.Lift(nn.Linear(2, 2)), 5, None)
    assert (plain.mode, plain.T, plain.stateful) == ("sequence", 5, False)
    mixed = norse.SequentialState(nn.Linear(2, 2), norse.LIF(), norse.LIFCell(), norse.LIF())
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: expected a Norse net of per-step cells or of whole-sequence modules, got both: "
            "'2' (LIFCell) takes one step, '1' (LIF) takes the whole [T, B, ...] sequence; wrap the "
            "cells in norse.torch.Lift(...) or use the cells' sequence versions (LIFCell -> LIF)"
        ),
    ):
        norse_adapter.build(mixed, 5, None)


class StateCounter(nn.Module):
    """Records (input, state) per call; returns (3 x, state + 1), state None counting as 0."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Tensor, Any]] = []

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, int]:
        self.seen.append((x.clone(), state))
        return 3 * x, (0 if state is None else state) + 1


def test_norse_driver_threads_the_state_per_step_and_starts_sequences_at_rest() -> None:
    code = torch.arange(12, dtype=torch.float64).view(3, 2, 2)
    net = StateCounter()
    out = norse_adapter.NorseDriver("step", 3, stateful=True).run(net, code)
    assert [s for _, s in net.seen] == [None, 1, 2]
    assert all(torch.equal(x, code[t]) for t, (x, _) in enumerate(net.seen)) and torch.equal(out, 3 * code)
    net = StateCounter()
    out = norse_adapter.NorseDriver("sequence", 3, stateful=True).run(net, code)
    assert len(net.seen) == 1 and torch.equal(net.seen[0][0], code) and net.seen[0][1] is None
    assert torch.equal(out, 3 * code)


class Pair(nn.Module):
    """A module without a state argument that returns ``parts`` (``is_stateful`` as given)."""

    def __init__(self, stateful: bool | None, n: int) -> None:
        super().__init__()
        if stateful is not None:
            self.is_stateful = stateful
        self.n = n

    def forward(self, x: Tensor) -> Any:
        return tuple(x + i for i in range(self.n))


def test_norse_driver_drops_the_final_state_of_a_stateful_lift_only() -> None:
    code = torch.zeros(2, 1, 3)
    driver = norse_adapter.NorseDriver("sequence", 2, stateful=False)
    assert torch.equal(driver.run(Pair(True, 2), code), code)  # (outputs, state) -> outputs
    for stateful, n in ((False, 2), (None, 2), (True, 3), (True, 1)):
        out = driver.run(Pair(stateful, n), code)
        assert isinstance(out, tuple) and len(out) == n, (stateful, n)
    stateless = Recorder()
    assert torch.equal(driver.run(stateless, code), 2 * code) and len(stateless.seen) == 1


# ------------------------------------------------------------------------------------------------
# SpikingJelly: step modes, containers, the driver, reset
# ------------------------------------------------------------------------------------------------


class Supported(nn.Module):
    """A module that says which step modes it supports but keeps no ``step_mode``."""

    def __init__(self, modes: Any, **step_mode: Any) -> None:
        super().__init__()
        self.modes = modes
        if step_mode:
            self.step_mode = step_mode["step_mode"]

    def supported_step_mode(self) -> Any:
        return self.modes

    def forward(self, x: Tensor) -> Tensor:
        return x


def test_spikingjelly_mode_of_each_kind_of_module() -> None:
    from spikingjelly.activation_based import layer, neuron

    assert sj_adapter._mode_of(neuron.IFNode(step_mode="m")) == "m"
    assert sj_adapter._mode_of(layer.Conv2d(1, 1, 1, step_mode="s")) == "s"
    assert sj_adapter._mode_of(Supported(("m",), step_mode=None)) is None  # read, not a string
    assert sj_adapter._mode_of(Supported(("m",), step_mode="s")) == "s"  # read before the supported ones
    assert sj_adapter._mode_of(Supported(("m",))) == "m"
    assert sj_adapter._mode_of(Supported(["s"])) == "s"
    assert sj_adapter._mode_of(Supported(("s", "m"))) is None
    assert sj_adapter._mode_of(Supported(())) is None
    not_callable = nn.Module()
    not_callable.supported_step_mode = ("m",)  # type: ignore[assignment]
    assert sj_adapter._mode_of(not_callable) is None


def test_spikingjelly_step_modes_first_module_per_mode_and_containers() -> None:
    from spikingjelly.activation_based import layer, neuron

    stray = nn.Module()
    stray.step_mode = "s"  # neither a StepModule nor saying its modes: not read
    inner = layer.Conv2d(1, 1, 1, step_mode="s")
    net = nn.Sequential(
        nn.Linear(1, 1),
        stray,
        layer.SeqToANNContainer(inner),  # its children count with the container ("m")
        Supported(("m",)),
        nn.Sequential(neuron.IFNode(step_mode="m"), Supported(("s", "m"))),
    )
    found = sj_adapter.step_modes(net)
    assert list(found) == ["m"] and found["m"][0] == "2" and found["m"][1] is net[2]
    net.append(Supported(("s",)))
    net.append(neuron.LIFNode(step_mode="s"))
    found = sj_adapter.step_modes(net)
    assert list(found) == ["m", "s"] and found["s"][0] == "5" and found["m"][0] == "2"


def test_spikingjelly_build_modes_and_messages_in_full() -> None:
    from spikingjelly.activation_based import layer, neuron

    assert sj_adapter.build(nn.Sequential(nn.Linear(1, 1)), 3, None).mode == "m"  # no mode read: "m"
    single = sj_adapter.build(nn.Sequential(layer.Linear(1, 1), neuron.IFNode()), 3, None)
    assert (single.mode, single.T) == ("s", 3)
    multi = sj_adapter.build(nn.Sequential(layer.Linear(1, 1, step_mode="m")), 4, None)
    assert (multi.mode, multi.T) == ("m", 4)
    mixed = nn.Sequential(nn.ReLU(), layer.Linear(1, 1, step_mode="m"), neuron.IFNode(step_mode="s"))
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: expected one SpikingJelly step mode throughout, got both: '1' (Linear) has "
            "step_mode='m', '2' (IFNode) has step_mode='s'; call "
            "spikingjelly.activation_based.functional.set_step_mode(net, 'm') (or 's') first"
        ),
    ):
        sj_adapter.build(mixed, 3, None)
    strange = Supported(("m",), step_mode="x")
    with pytest.raises(
        ValueError,
        match=full_match("backbone: expected SpikingJelly step mode 'm' or 's', got 'x' at '1' (Supported)"),
    ):
        sj_adapter.build(nn.Sequential(nn.ReLU(), strange, neuron.IFNode(step_mode="m")), 3, None)


def test_spikingjelly_driver_resets_then_calls_once_or_per_step() -> None:
    from spikingjelly.activation_based import neuron

    code = torch.full((3, 2, 2), 0.75, dtype=torch.float64)
    for mode, calls in (("s", 3), ("m", 1)):
        node = neuron.IFNode(v_threshold=1.0, step_mode=mode)
        node.v = torch.full((2, 2), 0.5, dtype=torch.float64)  # stale: would fire at the first step
        rec = Recorder()
        out = sj_adapter.SpikingJellyDriver(mode, 3).run(nn.Sequential(rec, node), code / 2)
        assert len(rec.seen) == calls
        # from rest: 0.75, 1.5 (fires, reset to 0), 0.75
        assert torch.equal(
            out, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).view(3, 1, 1).expand(3, 2, 2)
        )


def test_spikingjelly_reset_state_and_is_neuron() -> None:
    from spikingjelly.activation_based import layer, neuron

    fw = get_framework("spikingjelly")
    calls: list[str] = []
    foreign = type("Foreign", (nn.Module,), {"reset": lambda self: calls.append("foreign")})()
    not_callable = nn.Module()
    not_callable.reset = 3  # type: ignore[assignment]
    node = neuron.LIFNode()
    node.v = torch.ones(2)
    fw.reset_state(nn.Sequential(foreign, not_callable, nn.Sequential(node)))
    assert calls == [] and node.v == 0.0
    mine = type("Mine", (neuron.LIFNode,), {"__module__": "elsewhere"})()
    assert fw.is_neuron(node) and fw.is_neuron(mine) and fw.is_neuron(neuron.IFNode())
    assert not any(fw.is_neuron(m) for m in (layer.Conv2d(1, 1, 1), nn.Linear(1, 1), foreign, gac.LIF()))


# ------------------------------------------------------------------------------------------------
# op_counts: SpikingJelly's counts
# ------------------------------------------------------------------------------------------------


def test_op_counts_are_ints_and_leave_out_the_ignored_modules() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(32, 3, bias=False)
    ).eval()
    x = torch.rand(1, 1, 6, 6) + 0.1  # no zeros, no ones: every product a MAC
    counts = sj_adapter.op_counts(model, x, ignore=[nn.BatchNorm2d])
    # conv: 2 channels x 4 x 4 outputs x 9 taps; linear: 3 x 32
    assert counts["mac"] == 2 * 16 * 9 + 3 * 32 and counts["synop"] == 0
    assert all(type(v) is int for v in counts.values())
    with_norm = sj_adapter.op_counts(model, x)
    assert with_norm["mac"] > counts["mac"] and set(with_norm) == set(counts)


def test_op_counts_without_spikingjelly_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "spikingjelly.activation_based.op_counter", None)
    with pytest.raises(
        ImportError,
        match=full_match('spikingjelly_counts needs SpikingJelly: pip install "gac-coding[spikingjelly]"'),
    ):
        sj_adapter.op_counts(nn.Linear(2, 2), torch.rand(1, 2))


def _containers() -> list[tuple[str, Callable[[nn.Module], nn.Module], str]]:
    from spikingjelly.activation_based import layer

    return [
        ("StepModeContainer", lambda inner: layer.StepModeContainer(False, "m", inner), "m"),
        ("MultiStepContainer", lambda inner: layer.MultiStepContainer(inner), "m"),
        ("SeqToANNContainer", lambda inner: layer.SeqToANNContainer(inner), "m"),
        ("TLastMultiStepContainer", lambda inner: layer.TLastMultiStepContainer(inner), "m"),
        ("TLastSeqToANNContainer", lambda inner: layer.TLastSeqToANNContainer(inner), "m"),
        (
            "ElementWiseRecurrentContainer",
            lambda inner: layer.ElementWiseRecurrentContainer(inner, lambda x, y: x + y, step_mode="m"),
            "m",
        ),
        (
            "LinearRecurrentContainer",
            lambda inner: layer.LinearRecurrentContainer(inner, 2, 2, step_mode="m"),
            "m",
        ),
    ]


@pytest.mark.parametrize(("name", "make", "mode"), _containers(), ids=[c[0] for c in _containers()])
def test_spikingjelly_each_container_counts_its_children_with_its_own_mode(
    name: str, make: Callable[[nn.Module], nn.Module], mode: str
) -> None:
    from spikingjelly.activation_based import neuron

    inner = neuron.IFNode(step_mode="s" if mode == "m" else "m")
    container = make(inner)
    assert type(container).__name__ == name
    found = sj_adapter.step_modes(nn.Sequential(nn.ReLU(), container))
    assert list(found) == [mode] and found[mode] == ("1", container)
    assert sj_adapter.build(nn.Sequential(container), 2, None).mode == mode


class SeesItsInput(LoopNet):
    """A loop net that records the static input it is called with."""

    def __init__(self, num_steps: int) -> None:
        super().__init__(num_steps)
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x.clone())
        return super().forward(x)


@pytest.mark.parametrize("T", [1, 3])
def test_snntorch_loop_calls_the_backbone_once_on_the_first_step(T: int) -> None:
    net = quiet_wrap(SeesItsInput(T), T=T, in_channels=1, input_layer="fc")
    x = torch.rand(2, 1, 8, 8) * 2
    out = net(x)
    code = net.encoder(x)
    assert len(net.backbone.inputs) == 1 and torch.equal(net.backbone.inputs[0], code[0])
    assert out.shape == (T, 2, 4)
    assert net._driver.feed.code is None and net._driver.feed.calls == T  # stopped after the call


def test_snntorch_leaky_that_does_not_say_its_settings_has_snntorchs_defaults() -> None:
    """A ``Leaky`` of snnTorch's package that lacks a setting (say, from a version that did not have
    it) is read with snnTorch's default: the soft reset, no inhibition, no state quantisation, no
    membrane output, binary spikes."""
    bare = type("Leaky", (nn.Module,), {"__module__": "snntorch._neurons.leaky"})
    m = bare()
    m.beta, m.threshold, m.spike_grad = torch.tensor(0.5), torch.tensor(0.75), strict
    where = "'b.0' (Leaky)"
    with pytest.raises(
        ValueError,
        match=full_match(
            f"{where}: reset_mechanism='subtract' is a soft reset (subtract the threshold), which NIR's "
            f"LIF (reset to v_reset) cannot express exactly; build the neuron with reset_mechanism='zero'"
        ),
    ):
        node_of("snntorch", m, where=where)
    m.reset_mechanism = "zero"
    node = node_of("snntorch", m, where=where)
    check_arrays(
        node,
        "LIF",
        {"tau": DT / 0.5, "r": 2.0, "v_leak": 0.0, "v_threshold": 0.75, "v_reset": 0.0},
        (2, 3),
        np.float64,
    )


def test_snntorch_spike_function_probed_in_the_models_dtype() -> None:
    """A spike function written for the model's dtype (``torch.heaviside`` takes one dtype): the
    probe runs it in that dtype, so a float64 model's is classified, not broken."""
    values = torch.zeros((), dtype=torch.float64)
    m = leaky(0.5, spike_grad=lambda v: torch.heaviside(v, values))
    check_arrays(
        node_of("snntorch", m),
        "LIF",
        {"tau": DT / 0.5, "r": 2.0, "v_leak": 0.0, "v_threshold": 0.5, "v_reset": 0.0},
        (2, 3),
        np.float64,
    )


def test_norse_cell_that_does_not_say_its_dt_has_norses_default() -> None:
    import norse.torch as norse

    bare = type("LIFCell", (nn.Module,), {"__module__": "norse.torch.module.lif"})()
    bare.p = norse.LIFParameters(tau_syn_inv=torch.tensor(250.0), tau_mem_inv=torch.tensor(125.0))
    # dt 1 ms: leak_mem = 0.125 -> tau_mem = 8 dt; leak_syn = 0.25 -> tau_syn = 4 dt, w_in = 4
    check_arrays(
        node_of("norse", bare),
        "CubaLIF",
        {"tau_syn": 4 * DT, "tau_mem": 8 * DT, "r": 1.0, "v_leak": 0.0, "v_threshold": 1.0, "v_reset": 0.0,
         "w_in": 4.0},
        (2, 3),
        np.float64,
    )  # fmt: skip


class OwnNeuron(nn.Module):
    """A per-step neuron made elsewhere: it has ``reset_mem`` but says no ``init_hidden``, and it
    holds snnTorch neurons of its own."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch as snn

        self.inner = nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True))

    def reset_mem(self) -> None:
        self.inner[0].reset_mem()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


def test_snntorch_a_neuron_is_not_looked_into_and_init_hidden_defaults_to_false() -> None:
    import snntorch as snn

    own = OwnNeuron()
    stepwise, sequence = snntorch_adapter._neurons(nn.Sequential(nn.Linear(2, 2), own))
    assert stepwise == [("1", own)] and sequence == []
    # without init_hidden it is taken to loop itself (snnTorch's default init_hidden=False)
    fc = nn.Linear(2, 2)
    assert snntorch_adapter.build(nn.Sequential(fc, own), 2, ("0", fc)).mode == "loop"
    with pytest.raises(
        ValueError,
        match=full_match(
            "backbone: expected snnTorch neurons that all use init_hidden=True (the wrapper loops over "
            "time) or all init_hidden=False (the net loops itself), got both: '0' (Leaky) has "
            "init_hidden=True, '1' (OwnNeuron) has init_hidden=False"
        ),
    ):
        snntorch_adapter.build(nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True), own), 2, None)


class NeedsState(nn.Module):
    """A stateful module whose ``state`` argument has no default."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[Any] = []

    def forward(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        self.states.append(state)
        return x + 1, "final"


def test_norse_driver_passes_the_state_argument_explicitly() -> None:
    code = torch.zeros(2, 1, 3)
    net = NeedsState()
    out = norse_adapter.NorseDriver("sequence", 2, stateful=True).run(net, code)
    assert torch.equal(out, code + 1) and net.states == [None]
    net = NeedsState()
    out = norse_adapter.NorseDriver("step", 2, stateful=True).run(net, code)
    assert torch.equal(out, code + 1) and net.states == [None, "final"]


def test_spikingjelly_a_step_mode_that_is_not_a_string_is_not_read() -> None:
    assert sj_adapter._mode_of(Supported(("m",), step_mode=1)) is None
    assert sj_adapter.step_modes(nn.Sequential(Supported(("m",), step_mode=1))) == {}
