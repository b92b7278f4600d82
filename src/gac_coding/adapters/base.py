"""The framework interface and its registry: the one place that says which framework a module is.

Everything gac-coding knows about one spiking-network framework lives in that framework's module of
this package (:mod:`.snntorch`, :mod:`.norse`, :mod:`.spikingjelly`, :mod:`.plain` for plain
PyTorch and this library's :class:`~gac_coding.LIF`): a :class:`Framework` that tells its modules
and neurons apart, drives a backbone of them (:class:`Driver`), clears the state it keeps between
calls and maps its neurons to NIR nodes. :func:`gac_coding.wrap`, the measurements (energy, firing
rates) and the NIR export ask the registry below instead of reading class names themselves, so a
framework (or a neuron type) is added in one module.

Detection never imports a framework: a module's framework is read from the ``__module__`` of the
classes in its MRO, so it works (and costs nothing) whether or not the framework is installed.

Example:
    >>> import gac_coding as gac
    >>> from torch import nn
    >>> from gac_coding.adapters import framework_names, is_neuron, neuron_framework
    >>> framework_names()
    ('snntorch', 'norse', 'spikingjelly', 'torch')
    >>> is_neuron(gac.LIF()), is_neuron(nn.ReLU()), neuron_framework(gac.LIF())
    (True, False, 'torch')
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_FRAMEWORK",
    "Driver",
    "Framework",
    "detect_framework",
    "extra_of_package",
    "framework_names",
    "frameworks",
    "get_framework",
    "is_chain",
    "is_neuron",
    "module_framework",
    "neuron_framework",
    "register_framework",
    "require",
    "reset_state",
    "stack_steps",
    "unregister_framework",
    "walk",
]

#: The framework of a backbone that holds no module of another registered framework.
DEFAULT_FRAMEWORK = "torch"


class Driver:
    """How one backbone is driven over the ``T`` steps of a code; subclasses per framework.

    A driver holds configuration (and, for snnTorch's ``"loop"`` mode, the hook it left on the
    input layer), never the backbone itself, so a :class:`~gac_coding.GACNet` deep-copies, pickles
    and saves like any module.
    """

    framework: str = DEFAULT_FRAMEWORK
    mode: str = "sequence"

    def run(self, backbone: nn.Module, code: Tensor) -> Any:
        """Fresh state, then the backbone's outputs for ``code: [T, B, C, H, W]``, time-major."""
        return backbone(code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(framework={self.framework!r}, mode={self.mode!r})"


class Framework(abc.ABC):
    """What gac-coding knows about one framework. Subclass it, then :func:`register_framework`.

    Attributes:
        name: the framework's name, as ``wrap(..., framework=name)`` and ``GACNet.framework``
            spell it.
        title: its name in messages (``"snnTorch"``).
        package: the top-level package its classes come from (their ``__module__``).
        extra: the pip extra of gac-coding that installs it (``None``: nothing to install).
        nir_neurons: the neurons its :meth:`nir_node` maps, for messages (``"snnTorch Leaky"``).
        chains: whether an ``nn.Sequential`` subclass of its package applies its children in order
            (Norse's ``SequentialState``, SpikingJelly's step-mode containers), so that export can
            follow it like a ``Sequential``.

    :meth:`build` is abstract (every framework says how its backbones are driven); the other
    methods have the defaults of a framework that keeps no state and exports no neuron.
    """

    name: str = ""
    title: str = ""
    package: str = ""
    extra: str | None = None
    nir_neurons: str = ""
    chains: bool = False

    def owns(self, module: nn.Module) -> bool:
        """Whether a class of ``module`` (in its MRO) comes from this framework's package."""
        return any(root == self.package for root, _ in _roots(module))

    def is_neuron(self, module: nn.Module) -> bool:
        """Whether ``module`` is one of this framework's spiking (stateful) neuron layers."""
        return False

    @abc.abstractmethod
    def build(self, backbone: nn.Module, T: int, input_layer: tuple[str, nn.Module] | None) -> Driver:
        """The :class:`Driver` of ``backbone`` (a ``ValueError`` for a backbone it cannot drive).

        ``input_layer`` is the ``(name, module)`` of the layer that receives the code, or ``None``.
        """

    def reset_state(self, model: nn.Module) -> None:
        """Clear the state that this framework's modules in ``model`` keep between calls."""
        return None  # a framework whose modules keep no state between calls

    def nir_node(
        self, nir: Any, where: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: torch.dtype
    ) -> Any | None:
        """The NIR node of one of this framework's neurons, ``None`` when ``module`` is not its.

        ``nir`` is the imported ``nir`` package, ``where`` names the module in messages
        (``"'stages.0.0.lif1' (LIF)"``), ``shape`` is the per-sample shape of its input, ``dt``
        the integration step and ``dtype`` the dtype of the arrays. A neuron of this framework
        that NIR cannot express exactly raises ``TypeError`` or ``ValueError`` naming the setting.
        """
        return None

    def is_chain(self, module: nn.Module) -> bool:
        """Whether ``module`` is one of this framework's sequential containers (see ``chains``)."""
        return (
            self.chains
            and isinstance(module, nn.Sequential)
            and type(module).__module__.partition(".")[0] == self.package
        )

    def require(self, module: str | None = None) -> ModuleType:
        """Import ``module`` (default: the framework's package), or raise an ``ImportError`` that
        names the extra to install."""
        name = module or self.package
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"gac_coding.wrap: the {self.name} adapter needs the package {self.package!r}, "
                f"which could not be imported ({exc}). Install it with: pip install "
                f'"gac-coding[{self.extra or self.name}]"'
            ) from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# ------------------------------------------------------------------------------------------------
# The registry
# ------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Framework] = {}


def register_framework(framework: Framework, *, replace: bool = False) -> Framework:
    """Add ``framework`` to the registry (by its ``name``) and return it.

    Registered frameworks are detected by :func:`gac_coding.wrap`, counted by the measurements
    (their neurons by :func:`gac_coding.analysis.firing_rates`, their state cleared by
    :func:`gac_coding.energy.estimate_energy`) and exported by :func:`gac_coding.export.to_nir`.
    A name already registered raises ``ValueError`` unless ``replace=True``.
    """
    if not isinstance(framework, Framework):
        raise TypeError(
            f"framework: expected a gac_coding.adapters.Framework, got {type(framework).__name__}"
        )
    name = framework.name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"framework.name: expected an identifier, got {name!r}")
    if not isinstance(framework.package, str) or not framework.package:
        raise ValueError(f"framework.package: expected a top-level package name, got {framework.package!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"framework: {name!r} is registered already; pass replace=True to replace it")
    _REGISTRY[name] = framework
    return framework


def unregister_framework(name: str) -> Framework:
    """Remove the framework registered as ``name`` (the default framework stays) and return it."""
    if name == DEFAULT_FRAMEWORK:
        raise ValueError(f"name: the default framework {name!r} cannot be removed")
    if name not in _REGISTRY:
        raise ValueError(f"name: expected one of {framework_names()}, got {name!r}")
    return _REGISTRY.pop(name)


def frameworks() -> tuple[Framework, ...]:
    """The registered frameworks, in registration order (the default one last)."""
    default = _REGISTRY.get(DEFAULT_FRAMEWORK)
    others = tuple(fw for name, fw in _REGISTRY.items() if name != DEFAULT_FRAMEWORK)
    return others if default is None else (*others, default)


def framework_names() -> tuple[str, ...]:
    """Names of the registered frameworks, the values ``wrap(..., framework=...)`` takes."""
    return tuple(fw.name for fw in frameworks())


def get_framework(name: str) -> Framework:
    """The framework registered as ``name``; anything else raises ``TypeError``/``ValueError``."""
    if not isinstance(name, str):
        raise TypeError(f"framework: expected one of {framework_names()} or None, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"framework: expected one of {framework_names()} or None, got {name!r}")
    return _REGISTRY[name]


def extra_of_package(package: str) -> str | None:
    """The pip extra that installs the registered framework whose top-level package is
    ``package``, or ``None``.

    Example:
        >>> from gac_coding.adapters import extra_of_package
        >>> extra_of_package("spikingjelly"), extra_of_package("numpy")
        ('spikingjelly', None)
    """
    return next((fw.extra for fw in frameworks() if fw.package == package and fw.extra), None)


def require(framework: str, module: str | None = None) -> ModuleType:
    """Import ``module`` (default: the framework's package) or raise an ``ImportError`` naming the
    extra to install (:meth:`Framework.require`).

    Example:
        >>> from gac_coding.adapters.base import require
        >>> require("torch").__name__
        'torch'
    """
    return get_framework(framework).require(module)


# ------------------------------------------------------------------------------------------------
# Questions about modules, answered by the registered frameworks
# ------------------------------------------------------------------------------------------------


def _roots(module: nn.Module) -> Iterator[tuple[str, type]]:
    for cls in type(module).__mro__:
        yield cls.__module__.partition(".")[0], cls


def module_framework(module: nn.Module) -> str | None:
    """The name of the framework (other than plain PyTorch) that a class of ``module`` comes
    from, or ``None``."""
    for fw in frameworks():
        if fw.name != DEFAULT_FRAMEWORK and fw.owns(module):
            return fw.name
    return None


def describe(name: str, module: nn.Module) -> str:
    """``'name' (ClassName)`` for messages; the backbone itself is ``<backbone>``."""
    return f"{name!r} ({type(module).__name__})" if name else f"<backbone> ({type(module).__name__})"


def detect_framework(backbone: nn.Module) -> str:
    """The framework of ``backbone``'s modules, ``"torch"`` when none; mixed frameworks raise.

    Example:
        >>> from torch import nn
        >>> from gac_coding.adapters import detect_framework
        >>> detect_framework(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
        'torch'
    """
    found: dict[str, str] = {}
    for name, module in backbone.named_modules():
        fw = module_framework(module)
        if fw is not None and fw not in found:
            found[fw] = describe(name, module)
    if len(found) > 1:
        listing = ", ".join(f"{fw}: {where}" for fw, where in found.items())
        raise ValueError(
            f"backbone: expected modules of one framework, got several ({listing}); pass "
            f"framework=... only for a backbone built with a single framework"
        )
    return next(iter(found), DEFAULT_FRAMEWORK)


def neuron_framework(module: nn.Module) -> str | None:
    """The name of the framework whose spiking neuron ``module`` is, or ``None`` for any other
    module (``"torch"`` for this library's :class:`~gac_coding.LIF`, the neuron of plain-PyTorch
    backbones). Imports no framework. This is the library's one answer to "is this a spiking
    layer?" (the adapters, the firing rates of :mod:`gac_coding.analysis`).

    Example:
        >>> import gac_coding as gac
        >>> from torch import nn
        >>> from gac_coding.adapters import neuron_framework
        >>> neuron_framework(gac.LIF()), neuron_framework(nn.ReLU())
        ('torch', None)
    """
    for fw in frameworks():
        if fw.is_neuron(module):
            return fw.name
    return None


def is_neuron(module: nn.Module) -> bool:
    """Whether ``module`` is a spiking/stateful neuron layer of a registered framework
    (:func:`neuron_framework` is not ``None``).

    A neuron turns its (real-valued) input into a membrane update: feeding it the gated code costs
    no multiplications, unlike a Conv/Linear.
    """
    return neuron_framework(module) is not None


def is_chain(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Sequential`` whose forward applies its children in order:
    ``Sequential`` itself (or a subclass that keeps its ``forward``) or a sequential container of a
    registered framework."""
    if not isinstance(module, nn.Sequential):
        return False
    if type(module).forward is nn.Sequential.forward:
        return True
    return any(fw.is_chain(module) for fw in frameworks())


def reset_state(model: nn.Module) -> None:
    """Clear the state that any registered framework keeps in the modules of ``model`` between
    calls (SpikingJelly's memories, snnTorch's hidden membranes). Imports no framework."""
    for fw in frameworks():
        fw.reset_state(model)


def _below_the_root_neurons(name: str, module: nn.Module) -> bool:
    return bool(name) and is_neuron(module)


def walk(
    backbone: nn.Module,
    prefix: str = "",
    *,
    stop: Callable[[str, nn.Module], bool] = _below_the_root_neurons,
) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` in registration order like ``named_modules``, pruned by ``stop``.

    A module for which ``stop(name, module)`` is true is yielded, but nothing inside it is. The
    default stops at every neuron except ``backbone`` itself (a neuron's children, e.g. the
    recurrent layer of snnTorch's ``RLeaky`` or a SpikingJelly surrogate, are not layers of the
    network). The adapters classify modules with their own ``stop``.

    Example:
        >>> import gac_coding as gac
        >>> from torch import nn
        >>> from gac_coding.adapters.base import walk
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(gac.LIF(), nn.Linear(4, 2)))
        >>> [name for name, _ in walk(net)]
        ['', '0', '1', '1.0', '1.1']
        >>> [name for name, _ in walk(net, stop=lambda name, m: isinstance(m, nn.Sequential) and bool(name))]
        ['', '0', '1']
    """
    yield prefix, backbone
    if stop(prefix, backbone):
        return
    for child_name, child in backbone.named_children():
        yield from walk(child, f"{prefix}.{child_name}" if prefix else child_name, stop=stop)


def stack_steps(outputs: Sequence[Any]) -> Any:
    """Stack per-step outputs over a new leading time dimension, element by element.

    Tensors are stacked; tuples, lists and dicts are stacked per element (a named tuple keeps its
    type); ``None`` stays ``None``.

    Example:
        >>> import torch
        >>> from gac_coding.adapters.base import stack_steps
        >>> spk, mem = stack_steps([(torch.zeros(2, 3), torch.ones(2, 3))] * 4)
        >>> spk.shape, mem.shape
        (torch.Size([4, 2, 3]), torch.Size([4, 2, 3]))
    """
    first = outputs[0]
    if isinstance(first, Tensor):
        return torch.stack(list(outputs))
    if first is None:
        return None
    if isinstance(first, dict):
        return {key: stack_steps([o[key] for o in outputs]) for key in first}
    if isinstance(first, (tuple, list)):
        parts = [stack_steps([o[i] for o in outputs]) for i in range(len(first))]
        if isinstance(first, tuple) and hasattr(first, "_fields"):
            return type(first)(*parts)
        return type(first)(parts)
    raise TypeError(
        f"backbone output: expected tensors (or tuples, lists, dicts of tensors) per step, got "
        f"{type(first).__name__}"
    )
