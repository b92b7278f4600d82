"""NIR export of neurons with settings the nets of test_nir.py do not use.

* Each framework's own default neuron (SpikingJelly's ``LIFNode()`` charges ``(X - V) / tau``,
  ``decay_input=True``, where test_nir.py uses ``decay_input=False``; ``IFNode()``; Norse's
  ``LIFCell()`` and ``LIFBoxCell()`` with their default time constants and threshold 1).
* A non-zero reset potential where the framework has one and ``to_nir`` maps it (Norse's
  ``v_reset``), and its refusal where it cannot be mapped (SpikingJelly's ``v_reset``).
* snnTorch's ``Leaky`` without leak (``beta=1``: an ``IF`` node) and with the immediate reset
  (``reset_delay=False``); with a ``beta`` per channel (the export once stopped before tracing,
  probing the neuron with a per-sample shape of ``(1,)``).
* A soft reset in Norse's ``LIFBoxCell`` (``reset_method=reset_subtract``), which no NIR neuron
  expresses and the export refuses (it was once mapped as a hard reset).

Each net is exported, written and read back, and run by SpikingJelly's importer (where it takes
the node) and by the plain-numpy interpreter of test_nir.py; spikes must equal the model's exactly
and logits to test_nir.ATOL, as in test_nir.py.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_nir import (
    HIDDEN,
    T,
    _check_against_model,
    neuron_nodes,
    reference_run,
    strict_spike,
    written_and_read,
)
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.energy import calibrate_batchnorm

nir = pytest.importorskip("nir")  # the test extra installs it; never skipped under `make test`
from gac_coding.export import to_nir  # noqa: E402


def _sj_defaults() -> nn.Module:
    from spikingjelly.activation_based import functional, layer, neuron

    net = nn.Sequential(
        layer.Conv2d(2, HIDDEN, 3, padding=1, bias=False),
        layer.BatchNorm2d(HIDDEN),
        neuron.LIFNode(),  # tau 2, decay_input=True, threshold 1, v_reset 0
        layer.Conv2d(HIDDEN, HIDDEN, 3, stride=2, padding=1),
        layer.BatchNorm2d(HIDDEN),
        neuron.IFNode(),
        layer.Flatten(),
        layer.Linear(HIDDEN * 16, 4),
    )
    functional.set_step_mode(net, "m")
    return net


def _norse_defaults() -> nn.Module:
    import norse.torch as norse

    # the defaults' membrane approaches its input (dt/tau_mem = 0.1) and fires above 1: fed by
    # BatchNorm with a gain, not by the code (values < 1)
    return norse.SequentialState(
        nn.Conv2d(2, HIDDEN, 3, padding=1),
        nn.BatchNorm2d(HIDDEN),
        norse.LIFBoxCell(),  # tau_mem_inv 100, threshold 1, dt 1 ms
        nn.Conv2d(HIDDEN, HIDDEN, 3, padding=1),
        nn.BatchNorm2d(HIDDEN),
        norse.LIFCell(),  # tau_syn_inv 200, tau_mem_inv 100, threshold 1
        nn.Flatten(),
        nn.Linear(HIDDEN * 64, 4),
    )


def _norse_reset() -> nn.Module:
    import norse.torch as norse

    # reset potentials below and above 0 (multiples of 1/8: the same in float32 and float64)
    box = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(0.25),
                                 v_reset=torch.tensor(-0.125))  # fmt: skip
    cuba = norse.LIFParameters(tau_syn_inv=torch.tensor(400.0), tau_mem_inv=torch.tensor(500.0),
                               v_th=torch.tensor(0.5), v_reset=torch.tensor(0.25))  # fmt: skip
    return norse.SequentialState(
        norse.LIFBoxCell(box, dt=1e-3),
        nn.Conv2d(2, HIDDEN, 3, padding=1),
        nn.BatchNorm2d(HIDDEN),
        norse.LIFCell(cuba, dt=1e-3),
        nn.Flatten(),
        nn.Linear(HIDDEN * 64, 4),
    )


def _snntorch_settings(beta: float | Tensor = 0.75) -> nn.Module:
    # decays that are multiples of 1/8: snnTorch keeps beta in float32
    import snntorch as snn

    return nn.Sequential(
        snn.Leaky(beta=1.0, threshold=0.45, init_hidden=True, reset_mechanism="zero",
                  spike_grad=strict_spike),  # no leak: an IF node
        nn.Conv2d(2, HIDDEN, 3, padding=1),
        nn.BatchNorm2d(HIDDEN),
        snn.Leaky(beta=beta, threshold=0.8, init_hidden=True, reset_mechanism="zero",
                  reset_delay=False, spike_grad=strict_spike),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(HIDDEN * 4, 4),
    )  # fmt: skip


PER_CHANNEL_BETA = torch.tensor([0.25, 0.5, 0.75, 0.875, 0.625]).view(HIDDEN, 1, 1)

NETS = {
    "spikingjelly-defaults": (_sj_defaults, 3.0),
    "norse-defaults": (_norse_defaults, 6.0),
    "norse-reset": (_norse_reset, 1.0),
    "snntorch-settings": (_snntorch_settings, 1.0),
    "snntorch-beta-per-channel": (lambda: _snntorch_settings(PER_CHANNEL_BETA), 1.0),
}
WORKING = sorted(set(NETS) - {"snntorch-beta-per-channel"})


@cache
def build(name: str) -> tuple[nn.Module, Tensor, Any]:
    """A float64 wrapped net with calibrated BatchNorm (its scale widened by ``gain`` so that the
    defaults' threshold of 1 is reached), in eval mode; its input; its export."""
    make, gain = NETS[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gac.wrap(make(), T=T, in_channels=2).double()
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4
    calibrate_batchnorm(model, x)
    for m in model.backbone.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.mul_(gain)
    model.eval()
    return model, x, to_nir(model, x)


def _node(exp: Any, module_name: str) -> Any:
    key = next(k for k, v in exp.sources.items() if v == module_name)
    return exp.graph.nodes[key]


@pytest.mark.parametrize("name", WORKING)
def test_reference_interpreter_runs_the_graph_like_the_model(name: str, tmp_path: Path) -> None:
    model, x, exp = build(name)
    graph = written_and_read(exp, tmp_path)
    with torch.no_grad():
        code = exp.host(x).numpy()
    out, rec = reference_run(graph, code, exp.dt)
    spikes = {k: torch.from_numpy(rec[k]) for k in neuron_nodes(graph)}
    assert len(spikes) == 2
    _check_against_model(model, x, exp, torch.from_numpy(out), spikes)


@pytest.mark.parametrize("name", ["spikingjelly-defaults", "snntorch-settings"])
def test_spikingjelly_importer_runs_the_graph_like_the_model(name: str, tmp_path: Path) -> None:
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    model, x, exp = build(name)
    module = import_from_nir(written_and_read(exp, tmp_path), dt=exp.dt, dtype=torch.float64)
    neurons = neuron_nodes(exp.graph)
    seen: dict[str, list[Tensor]] = {k: [] for k in neurons}
    for k in neurons:
        module.get_submodule(k).register_forward_hook(lambda m, a, o, k=k: seen[k].append(o[0]))
    code = exp.host(x)
    state, outs = None, []
    for t in range(T):
        y, state = module(code[t], state)
        outs.append(y)
    _check_against_model(model, x, exp, torch.stack(outs), {k: torch.stack(v) for k, v in seen.items()})


def test_the_nodes_carry_the_settings() -> None:
    """The parameters written for each setting, from the NIR equations (v <- v + dt/tau ((v_leak -
    v) + r I)): SpikingJelly's default charges (X - V) / tau, so dt/tau = 1/2 and r = 1."""
    _, _, sj = build("spikingjelly-defaults")
    lif, if_node = (_node(sj, f"backbone.{i}") for i in (2, 5))
    np.testing.assert_allclose(sj.dt / lif.tau, 0.5, rtol=1e-14)
    np.testing.assert_allclose(lif.r, 1.0, rtol=0)
    assert type(if_node).__name__ == "IF" and np.all(if_node.v_threshold == 1.0)
    np.testing.assert_allclose(if_node.r * sj.dt, 1.0, rtol=1e-14)
    _, _, norse = build("norse-reset")
    box, cuba = _node(norse, "backbone.0"), _node(norse, "backbone.3")
    assert np.all(box.v_reset == -0.125) and np.all(cuba.v_reset == 0.25)
    assert np.all(box.v_threshold == 0.25) and np.all(cuba.v_threshold == 0.5)
    _, _, default = build("norse-defaults")
    box, cuba = _node(default, "backbone.2"), _node(default, "backbone.5")
    np.testing.assert_allclose(default.dt / box.tau, 1e-3 * 100, rtol=1e-12)
    np.testing.assert_allclose(default.dt / cuba.tau_mem, 1e-3 * 100, rtol=1e-12)
    np.testing.assert_allclose(default.dt / cuba.tau_syn, 1e-3 * 200, rtol=1e-12)
    for node in (box, cuba):
        assert np.all(node.v_threshold == 1.0) and np.all(node.v_reset == 0.0) and np.all(node.r == 1.0)
    _, _, snn = build("snntorch-settings")
    assert type(_node(snn, "backbone.0")).__name__ == "IF"
    np.testing.assert_allclose(snn.dt / _node(snn, "backbone.3").tau, 1 - 0.75, rtol=1e-12)


def test_snntorch_beta_per_channel_exports_one_time_constant_per_channel(tmp_path: Path) -> None:
    model, x, exp = build("snntorch-beta-per-channel")
    per_channel = exp.dt / _node(exp, "backbone.3").tau  # 1 - beta, per channel, broadcast
    np.testing.assert_allclose(per_channel[:, 0, 0], [0.75, 0.5, 0.25, 0.125, 0.375], rtol=1e-12)
    assert np.all(per_channel == per_channel[:, :1, :1])
    graph = written_and_read(exp, tmp_path)
    with torch.no_grad():
        out, rec = reference_run(graph, exp.host(x).numpy(), exp.dt)
    spikes = {k: torch.from_numpy(rec[k]) for k in neuron_nodes(graph)}
    _check_against_model(model, x, exp, torch.from_numpy(out), spikes)


def _wrap(backbone: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gac.wrap(backbone, T=2, in_channels=1).eval()


def test_spikingjelly_lif_with_a_reset_potential_is_refused() -> None:
    from spikingjelly.activation_based import neuron

    with pytest.raises(ValueError, match=r"'backbone\.0' \(LIFNode\): v_reset=0\.25 .*needs v_reset=0\.0"):
        to_nir(_wrap(nn.Sequential(neuron.LIFNode(v_reset=0.25))), torch.rand(2, 1, 4, 4))


def test_norse_soft_reset_is_refused() -> None:
    import norse.torch as norse
    from norse.torch.functional.reset import reset_subtract

    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(0.2),
                               reset_method=reset_subtract)  # fmt: skip
    with pytest.raises(ValueError, match=r"'backbone\.0' \(LIFBoxCell\).*reset"):
        to_nir(_wrap(norse.SequentialState(norse.LIFBoxCell(p, dt=1e-3))), torch.rand(2, 1, 4, 4))
