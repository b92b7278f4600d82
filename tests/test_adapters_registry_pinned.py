"""What the adapters-registry mutation run found unpinned in ``adapters/base.py`` and ``plain.py``.

Which modules :func:`walk` descends into, the whole text of the registry's messages (mixed
frameworks with the backbone itself named ``<backbone>``, a framework with no package, a package
that cannot be imported), which ``Sequential`` subclasses are chains, the defaults a new
:class:`Framework` inherits (no neuron, no chain), ``stack_steps`` over one step, the printed
drivers and frameworks, and the refusal of a ``LIF`` subclass by the NIR export. Two stand-in
frameworks are registered for a test and removed after it; their classes only claim a package
(``__module__``), which detection reads without importing anything.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.adapters import (
    Framework,
    detect_framework,
    framework_names,
    get_framework,
    is_chain,
    is_neuron,
    neuron_framework,
    register_framework,
    unregister_framework,
)
from gac_coding.adapters.base import Driver, stack_steps, walk
from gac_coding.adapters.plain import TorchDriver
from gac_coding.export import to_nir

_PKG_A = "gacregistrytesta"  # neither package exists: require() must fail to import them
_PKG_B = "gacregistrytestb"


class _StandIn(Framework):
    """A framework that keeps every default of :class:`Framework` except its name and package."""

    def __init__(self, name: str, package: str, *, chains: bool, extra: str | None) -> None:
        self.name = name
        self.package = package
        self.chains = chains
        self.extra = extra

    def build(self, backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> Driver:
        return Driver()


def _in_package(cls: type, package: str) -> type:
    cls.__module__ = f"{package}.layers"
    return cls


class _OwnForwardA(nn.Sequential):
    """A container of package A (chains=True) whose forward is not ``Sequential.forward``."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        for child in self:
            x = child(x)
        return x


class _OwnForwardB(nn.Sequential):
    """The same in package B (chains=False)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        for child in self:
            x = child(x)
        return x


class _LayerB(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


_in_package(_OwnForwardA, _PKG_A)
_in_package(_OwnForwardB, _PKG_B)
_in_package(_LayerB, _PKG_B)


@pytest.fixture
def stand_ins() -> Iterator[tuple[_StandIn, _StandIn]]:
    a = register_framework(_StandIn("standin_a", _PKG_A, chains=True, extra=None))
    b = register_framework(_StandIn("standin_b", _PKG_B, chains=False, extra="standin-extra"))
    try:
        yield a, b
    finally:
        unregister_framework("standin_a")
        unregister_framework("standin_b")


class _LIFWithChild(gac.LIF):
    """A neuron (a LIF subclass) that holds a module of its own, as snnTorch's RLeaky does."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)


# ------------------------------------------------------------------------------------------------
# walk: stops below every neuron except the root, and hands stop the names
# ------------------------------------------------------------------------------------------------


def test_walk_stops_at_neurons_below_the_root_only() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Sequential(_LIFWithChild(), nn.Linear(3, 2)))
    assert [name for name, _ in walk(net)] == ["", "0", "1", "1.0", "1.1"]
    # the root itself is walked into even when it is a neuron
    assert [name for name, _ in walk(_LIFWithChild())] == ["", "inner"]
    assert [name for name, _ in walk(_LIFWithChild(), "lif")] == ["lif"]
    assert [type(m) for _, m in walk(net)] == [
        nn.Sequential,
        nn.Linear,
        nn.Sequential,
        _LIFWithChild,
        nn.Linear,
    ]


def test_walk_hands_stop_each_name_and_module() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Sequential(gac.LIF(), nn.Linear(3, 2)))
    seen: list[tuple[str, type]] = []

    def stop(name: str, module: nn.Module) -> bool:
        seen.append((name, type(module)))
        return name == "1"

    assert [name for name, _ in walk(net, "net", stop=stop)] == [
        "net",
        "net.0",
        "net.1",
        "net.1.0",
        "net.1.1",
    ]
    assert seen == [
        ("net", nn.Sequential),
        ("net.0", nn.Linear),
        ("net.1", nn.Sequential),
        ("net.1.0", gac.LIF),
        ("net.1.1", nn.Linear),
    ]
    assert [name for name, _ in walk(net, stop=stop)] == ["", "0", "1"]


# ------------------------------------------------------------------------------------------------
# The registry's messages and defaults
# ------------------------------------------------------------------------------------------------


def test_mixed_frameworks_name_each_first_module_and_the_backbone(stand_ins) -> None:
    backbone = _OwnForwardA(nn.Linear(3, 3), _LayerB(), _LayerB())
    with pytest.raises(ValueError) as info:
        detect_framework(backbone)
    assert str(info.value) == (
        "backbone: expected modules of one framework, got several (standin_a: <backbone> "
        "(_OwnForwardA), standin_b: '1' (_LayerB)); pass framework=... only for a backbone built "
        "with a single framework"
    )
    nested = nn.Sequential(nn.Sequential(_OwnForwardA()), _LayerB())
    with pytest.raises(ValueError) as info:
        detect_framework(nested)
    assert "(standin_a: '0.0' (_OwnForwardA), standin_b: '1' (_LayerB))" in str(info.value)
    assert detect_framework(nn.Sequential(nn.Linear(2, 2), _LayerB())) == "standin_b"


def test_a_framework_needs_a_package_name() -> None:
    for package in ("", None):
        fw = _StandIn("standin_nopkg", _PKG_A, chains=False, extra=None)
        fw.package = package  # type: ignore[assignment]
        with pytest.raises(ValueError) as info:
            register_framework(fw)
        assert str(info.value) == f"framework.package: expected a top-level package name, got {package!r}"
        assert "standin_nopkg" not in framework_names()


def test_the_default_framework_stays_registered_and_last(stand_ins) -> None:
    with pytest.raises(ValueError) as info:
        unregister_framework("torch")
    assert str(info.value) == "name: the default framework 'torch' cannot be removed"
    register_framework(get_framework("torch"), replace=True)
    assert framework_names()[-3:] == ("standin_a", "standin_b", "torch")


def test_require_names_the_extra_or_the_framework(stand_ins) -> None:
    a, b = stand_ins
    for fw, extra in ((a, "standin_a"), (b, "standin-extra")):
        with pytest.raises(ImportError) as info:
            fw.require()
        assert str(info.value) == (
            f"gac_coding.wrap: the {fw.name} adapter needs the package {fw.package!r}, which could "
            f"not be imported (No module named {fw.package!r}). Install it with: pip install "
            f'"gac-coding[{extra}]"'
        )


def test_a_new_framework_has_no_neurons_by_default(stand_ins) -> None:
    a, b = stand_ins
    assert framework_names()[-3:] == ("standin_a", "standin_b", "torch")
    for module in (nn.ReLU(), nn.Linear(2, 2), _LayerB(), _OwnForwardA()):
        assert not a.is_neuron(module) and not b.is_neuron(module)
        assert neuron_framework(module) is None and not is_neuron(module)
    assert neuron_framework(gac.LIF()) == "torch"


def test_which_sequential_subclasses_are_chains(stand_ins) -> None:
    class KeepsForward(nn.Sequential):
        pass

    class OwnForward(nn.Sequential):
        def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
            return x

    assert is_chain(nn.Sequential(nn.ReLU()))
    assert is_chain(KeepsForward(nn.ReLU()))  # Sequential's forward: applies its children in order
    assert not is_chain(OwnForward(nn.ReLU()))  # its own code, outside every framework's package
    assert is_chain(_OwnForwardA(nn.ReLU()))  # a container of a framework with chains=True
    assert not is_chain(_OwnForwardB(nn.ReLU()))  # chains=False: the framework vouches for none
    assert not is_chain(nn.ReLU())
    a, b = stand_ins
    torch_fw = get_framework("torch")
    assert torch_fw.is_chain(nn.ModuleList()) is False  # a torch module, but no Sequential
    assert [fw.is_chain(_OwnForwardA()) for fw in (a, b, torch_fw)] == [True, False, False]
    assert [fw.is_chain(_OwnForwardB()) for fw in (a, b, torch_fw)] == [False, False, False]
    assert [fw.is_chain(_LayerB()) for fw in (a, b, torch_fw)] == [False, False, False]


# ------------------------------------------------------------------------------------------------
# stack_steps, the printed drivers and frameworks, the LIF subclass refused by export
# ------------------------------------------------------------------------------------------------


def test_stack_steps_of_one_step() -> None:
    x = torch.arange(6.0).reshape(2, 3)
    out = stack_steps([x])
    assert out.shape == (1, 2, 3) and torch.equal(out[0], x)
    spk, mem = stack_steps([(x, x + 1)])
    assert torch.equal(spk, x[None]) and torch.equal(mem, (x + 1)[None])
    assert stack_steps([None]) is None
    steps = stack_steps([None, x])
    assert steps is None  # the first step decides: None stays None


def test_reprs_name_the_class_and_its_settings() -> None:
    assert repr(TorchDriver()) == "TorchDriver(framework='torch', mode='sequence')"
    assert repr(Driver()) == "Driver(framework='torch', mode='sequence')"
    assert repr(get_framework("torch")) == "<PlainTorch 'torch'>"


def test_export_refuses_a_lif_subclass_naming_it() -> None:
    class MyLIF(gac.LIF):
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gac.wrap(nn.Sequential(nn.Flatten(2), MyLIF()), T=2, in_channels=1).eval()
    with pytest.raises(TypeError) as info:
        to_nir(model, torch.rand(1, 1, 4, 4))
    assert str(info.value) == (
        "'backbone.1' (MyLIF): a subclass of gac_coding.LIF may change its dynamics; export takes LIF itself"
    )
