"""The framework registry (issue 22): each framework's module answers for its own neurons, state
and NIR map, and nothing outside ``gac_coding.adapters`` reads framework names.

A framework registered from outside the library (``FakeSNN`` below, a package made of a module
object) is picked up by ``wrap``, the firing rates, the energy estimate and the NIR export with no
other change: adding a framework is one module. Its neuron keeps its membrane between calls, as
SpikingJelly's do, so a forgotten reset shows in the numbers; every comparison is against a loop
written here, in float64.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.adapters import (
    Driver,
    Framework,
    detect_framework,
    extra_of_package,
    framework_names,
    frameworks,
    get_framework,
    is_neuron,
    neuron_framework,
    register_framework,
    reset_state,
    unregister_framework,
)
from gac_coding.adapters.base import stack_steps
from gac_coding.analysis import firing_rates
from gac_coding.energy import calibrate_batchnorm, estimate_energy

T = 3
BUILT_IN = ("snntorch", "norse", "spikingjelly", "torch")
PACKAGES = ("snntorch", "norse", "spikingjelly")  # the framework packages other than torch
SRC = Path(gac.__file__).parent


# ------------------------------------------------------------------------------------------------
# The built-in frameworks: each knows its own neurons and no other's
# ------------------------------------------------------------------------------------------------


def neurons_of() -> dict[str, list[nn.Module]]:
    """A few neurons of each built-in framework (``"torch"``: this library's LIF)."""
    import norse.torch as norse
    import snntorch as snn
    from spikingjelly.activation_based import neuron

    return {
        "snntorch": [
            snn.Leaky(beta=0.5),
            snn.Synaptic(alpha=0.5, beta=0.5),
            snn.StateLeaky(beta=0.5, channels=2),
        ],
        "norse": [norse.LIFCell(), norse.LIF(), norse.LICell(), norse.LIFBoxCell()],
        "spikingjelly": [neuron.LIFNode(), neuron.IFNode(), neuron.ParametricLIFNode()],
        "torch": [gac.LIF(), gac.LIF(decay=1.0)],
    }


def not_neurons() -> list[nn.Module]:
    """Modules of the frameworks (and torch) that are not neurons: layers, containers, surrogates."""
    import norse.torch as norse
    from spikingjelly.activation_based import layer, surrogate

    return [
        nn.Linear(2, 2),
        nn.ReLU(),
        nn.Sequential(gac.LIF()),
        layer.Conv2d(1, 2, 3),
        layer.SeqToANNContainer(nn.Linear(2, 2)),
        surrogate.ATan(),
        norse.SequentialState(nn.Linear(2, 2)),
        norse.Lift(nn.Linear(2, 2)),
    ]


def test_the_built_in_frameworks_are_registered_in_detection_order() -> None:
    assert framework_names() == BUILT_IN
    assert gac.adapters.FRAMEWORKS == BUILT_IN
    assert [fw.name for fw in frameworks()] == list(BUILT_IN)
    extras = {p: extra_of_package(p) for p in (*PACKAGES, "torch", "numpy")}
    assert extras == {**{p: p for p in PACKAGES}, "torch": None, "numpy": None}


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_framework_claims_its_own_neurons_and_refuses_the_others(name: str) -> None:
    fw = get_framework(name)
    zoo = neurons_of()
    for module in zoo[name]:
        assert fw.is_neuron(module), (name, module)
        assert neuron_framework(module) == name and is_neuron(module)
        assert fw.owns(module) == (name != "torch"), module  # plain PyTorch claims nothing
        assert detect_framework(nn.Sequential(nn.Identity(), module)) == name
    for other, modules in zoo.items():
        if other != name:
            assert not any(fw.is_neuron(m) for m in modules), (name, other)
    for module in not_neurons():
        assert not fw.is_neuron(module), (name, module)
        assert neuron_framework(module) is None


def test_detection_reads_class_modules_and_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from torch import nn\n"
        "from gac_coding.adapters import detect_framework, is_chain, neuron_framework\n"
        "Leaky = type('Leaky', (nn.Module,), {'__module__': 'snntorch._neurons.leaky'})\n"
        "Cell = type('LIFCell', (nn.Module,), {'__module__': 'norse.torch.module.lif'})\n"
        "Chain = type('SequentialState', (nn.Sequential,), {'__module__': 'norse.torch.module.sequential',\n"
        "             'forward': lambda self, x: x})\n"
        "Mine = type('Mine', (nn.Sequential,), {'forward': lambda self, x: x})\n"
        "print(neuron_framework(Leaky()), neuron_framework(Cell()),\n"
        "      detect_framework(nn.Sequential(Leaky())), is_chain(Chain()), is_chain(Mine()))\n"
        "print(sorted(m for m in ('snntorch', 'norse', 'spikingjelly') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split("\n")[:2] == ["snntorch norse snntorch True False", "[]"]


def test_reset_state_clears_what_snntorch_and_spikingjelly_keep_between_calls() -> None:
    import snntorch as snn
    from spikingjelly.activation_based import neuron

    # inputs that do not fire at the first call and do at the second: 0.6, then 0.9 * 0.6 + 0.6
    # (snnTorch, threshold 1); 1.5 / 2, then 0.75 + (1.5 - 0.75) / 2 (SpikingJelly, tau 2)
    for make, value in (
        (lambda: snn.Leaky(beta=0.9, init_hidden=True, spike_grad=lambda v: (v > 0).to(v.dtype)), 0.6),
        (lambda: neuron.LIFNode(tau=2.0), 1.5),
    ):
        x = torch.full((2, 3), value, dtype=torch.float64)
        fresh, used = make().double(), make().double()
        with torch.no_grad():
            first = fresh(x)
            used(x)
            assert not torch.equal(used(x), first)  # the second call charges a non-empty membrane
            reset_state(nn.Sequential(used))
            assert torch.equal(used(x), first)


# ------------------------------------------------------------------------------------------------
# A framework registered from outside: one module's worth of code
# ------------------------------------------------------------------------------------------------


class FakeNeuron(nn.Module):
    """``v <- decay v + x``, fire above ``threshold``, reset to 0; the membrane stays between calls
    until :meth:`reset` (as SpikingJelly's nodes keep theirs)."""

    def __init__(self, decay: float = 0.5, threshold: float = 0.5) -> None:
        super().__init__()
        self.decay, self.threshold = decay, threshold
        self.v: Tensor | None = None

    def reset(self) -> None:
        self.v = None

    def forward(self, x: Tensor) -> Tensor:
        v = x if self.v is None else self.decay * self.v + x
        spikes = (v > self.threshold).to(x.dtype)
        self.v = v * (1 - spikes)
        return spikes


FakeNeuron.__module__ = "fakesnn.neurons"  # as if defined in the package "fakesnn"


class FakeDriver(Driver):
    framework = "fakesnn"
    mode = "step"

    def __init__(self, T: int) -> None:
        self.T = T

    def run(self, backbone: nn.Module, code: Tensor) -> Any:
        FakeSNN().reset_state(backbone)
        return stack_steps([backbone(code[t]) for t in range(self.T)])


class FakeSNN(Framework):
    name = "fakesnn"
    title = "FakeSNN"
    package = "fakesnn"
    extra = "fakesnn"
    nir_neurons = "FakeSNN FakeNeuron"

    def is_neuron(self, module: nn.Module) -> bool:
        return isinstance(module, FakeNeuron)

    def build(self, backbone: nn.Module, T: int, input_layer: Any) -> Driver:
        return FakeDriver(T)

    def reset_state(self, model: nn.Module) -> None:
        for module in model.modules():
            if self.owns(module):
                module.reset()  # type: ignore[operator]

    def nir_node(
        self, nir: Any, where: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: Any
    ) -> Any:
        if not isinstance(module, FakeNeuron):
            return None
        leak = 1.0 - module.decay  # dt/tau; r = tau/dt
        full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
        threshold = full(module.threshold)
        return nir.LIF(
            tau=full(dt / leak), r=full(1 / leak), v_leak=full(0.0), v_threshold=threshold, v_reset=full(0.0)
        )


@pytest.fixture
def fakesnn(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(sys.modules, "fakesnn", types.ModuleType("fakesnn"))  # "installed"
    fw = register_framework(FakeSNN())
    yield fw
    unregister_framework("fakesnn")


def fake_backbone() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), FakeNeuron(), nn.Flatten(1), nn.Linear(2 * 6 * 6, 3))
    with torch.no_grad():
        net[0].weight.mul_(4.0)  # every channel fires on some steps
    return net.double()


def images() -> Tensor:
    return torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def fake_net() -> gac.GACNet:
    """A wrapped fake backbone in eval mode, its encoder's BatchNorm calibrated on :func:`images`
    (with the initial running statistics the encoder barely fires)."""
    net = gac.wrap(fake_backbone(), T=T, in_channels=1, binarize=True)
    calibrate_batchnorm(net, images())
    return net.eval()


def by_hand(backbone: nn.Sequential, code: Tensor) -> tuple[Tensor, Tensor]:
    """Logits and the neuron's spikes, stepping the layers by hand from an empty membrane."""
    conv, _, flat, fc = backbone
    v = torch.zeros(())
    logits, spikes = [], []
    for t in range(code.shape[0]):
        v = 0.5 * v + conv(code[t])
        s = (v > 0.5).to(v.dtype)
        v = v * (1 - s)
        spikes.append(s)
        logits.append(fc(flat(s)))
    return torch.stack(logits), torch.stack(spikes)


def test_a_registered_framework_is_detected_and_driven_by_wrap(fakesnn: Framework) -> None:
    backbone = fake_backbone()
    assert "fakesnn" in gac.adapters.FRAMEWORKS and detect_framework(backbone) == "fakesnn"
    net = gac.wrap(backbone, T=T, in_channels=1, binarize=True)
    assert (net.framework, net.mode) == ("fakesnn", "step")
    x = images()
    with torch.no_grad():
        expected, spikes = by_hand(backbone, net.encoder(x))
        assert spikes.any() and not spikes.all()
        assert torch.equal(net(x), expected)
        assert torch.equal(net(x), expected)  # the driver reset the membrane: no leak between calls
    with pytest.raises(ValueError, match="framework: got 'snntorch' but the backbone holds fakesnn modules"):
        gac.wrap(backbone, T=T, in_channels=1, framework="snntorch")


def test_a_missing_registered_framework_names_its_extra(
    fakesnn: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fakesnn", None)  # "import fakesnn" raises ImportError
    with pytest.raises(ImportError, match=r'pip install "gac-coding\[fakesnn\]"'):
        gac.wrap(fake_backbone(), T=T, in_channels=1, binarize=True)


def test_firing_rates_count_a_registered_frameworks_neurons(fakesnn: Framework) -> None:
    net = fake_net()
    x = images()
    with torch.no_grad():
        _, spikes = by_hand(net.backbone, net.encoder(x))
        assert spikes.any() and not spikes.all()
    rates = firing_rates(net, x)
    assert rates["backbone.1"] == int(spikes.count_nonzero()) / spikes.numel()
    unregister_framework("fakesnn")
    try:
        assert "backbone.1" not in firing_rates(net, x)  # the registry, not a list elsewhere, decides
    finally:
        register_framework(fakesnn)


def test_energy_clears_a_registered_frameworks_state_between_batches(fakesnn: Framework) -> None:
    backbone = fake_backbone()  # one step per call, no wrapper: only estimate_energy resets it
    x = images()
    with torch.no_grad():
        backbone(x)
        dirty = backbone(x)  # the neuron's membrane carries over: the second call spikes differently
        backbone[1].reset()
        assert not torch.equal(backbone(x), dirty)
    one = estimate_energy(backbone, x).totals
    assert backbone[1].v is None  # cleared on the way out too
    backbone(x)  # leave a membrane behind
    two = estimate_energy(backbone, [x, x]).totals
    assert two["samples"] == 2 * one["samples"] and two["synop"] == 2 * one["synop"] > 0
    assert two["ac_paper"] == 2 * one["ac_paper"]


def test_nir_export_maps_a_registered_frameworks_neurons(fakesnn: Framework) -> None:
    from gac_coding.export import to_nir

    net = fake_net()
    x = images()
    with torch.no_grad():
        _, spikes = by_hand(net.backbone, net.encoder(x))
    assert spikes.any() and not spikes.all()
    exp = to_nir(net, x)
    kinds = {name: type(node).__name__ for name, node in exp.graph.nodes.items()}
    assert kinds["backbone_1"] == "LIF" and exp.sources["backbone_1"] == "backbone.1"
    with torch.no_grad():
        expected = net(x)
    # NIR's Euler step v + dt/tau (r x - v) with dt/tau = 0.5, r = 2 rounds once more than 0.5 v + x
    torch.testing.assert_close(exp.run(x), expected, rtol=0.0, atol=1e-12)
    refused = gac.wrap(nn.Sequential(FakeNeuron(), nn.Tanh()).double(), T=T, in_channels=1)
    with pytest.raises(TypeError, match=r"'backbone\.1' \(Tanh\): no NIR mapping.*FakeSNN FakeNeuron"):
        to_nir(refused.eval(), x)


def test_the_registry_refuses_bad_registrations(fakesnn: Framework) -> None:
    with pytest.raises(ValueError, match="'fakesnn' is registered already"):
        register_framework(FakeSNN())
    assert register_framework(FakeSNN(), replace=True).name == "fakesnn"
    with pytest.raises(TypeError, match="expected a gac_coding.adapters.Framework, got str"):
        register_framework("fakesnn")  # type: ignore[arg-type]
    bad = FakeSNN()
    bad.name = "fake snn"
    with pytest.raises(ValueError, match="framework.name: expected an identifier"):
        register_framework(bad)
    with pytest.raises(ValueError, match="the default framework 'torch' cannot be removed"):
        unregister_framework("torch")
    with pytest.raises(ValueError, match=r"name: expected one of .* got 'keras'"):
        unregister_framework("keras")
    assert framework_names()[-1] == "torch"  # the fallback stays last


# ------------------------------------------------------------------------------------------------
# Nobody outside the adapters reads framework names
# ------------------------------------------------------------------------------------------------

_NAME = re.compile(r"\b(" + "|".join(PACKAGES) + r")\b")


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def framework_mentions(path: Path) -> list[str]:
    """Imports of a framework package, and strings (docstrings aside) that name one."""
    tree = ast.parse(path.read_text())
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            hits += [
                f"{node.lineno}: import {a.name}" for a in node.names if _NAME.fullmatch(a.name.split(".")[0])
            ]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if _NAME.fullmatch(node.module.split(".")[0]):
                hits.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if _NAME.search(node.value):
                hits.append(f"{node.lineno}: {node.value!r}")
    return hits


def test_the_scan_sees_imports_and_strings_but_not_docstrings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Works with snntorch."""\n'
        "import norse.torch\n"
        "def f():\n"
        '    """Clears spikingjelly state."""\n'
        "    from spikingjelly.activation_based import functional\n"
        '    return type(f).__module__.startswith("spikingjelly.") or "snntorch_counts" or "SpikingJelly"\n'
    )
    assert framework_mentions(sample) == [
        "2: import norse.torch",
        "5: from spikingjelly.activation_based import ...",
        "6: 'spikingjelly.'",
    ]


def test_no_module_outside_the_adapters_reads_framework_names() -> None:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).parts[0] == "adapters":
            continue
        hits = framework_mentions(path)
        if hits:
            found[str(path.relative_to(SRC))] = hits
    assert found == {}, "ask gac_coding.adapters instead"


def test_the_adapters_import_frameworks_lazily() -> None:
    for path in sorted((SRC / "adapters").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {
            (n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and not n.level
        }
        assert not names & set(PACKAGES), (path.name, names)


def test_a_framework_without_a_driver_cannot_be_made() -> None:
    """``build`` is abstract: a framework that does not say how its backbones are driven fails
    when it is made, not at its first ``wrap``."""

    class NoDriver(Framework):
        name = "nodriver"

    with pytest.raises(TypeError, match=r"abstract method.*\bbuild\b"):
        NoDriver()
