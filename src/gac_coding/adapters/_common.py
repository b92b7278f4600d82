"""Framework-neutral helpers of the adapters: detection, lazy imports, input layers, stacking.

Nothing here imports snnTorch, Norse or SpikingJelly: a module's framework is read from the
``__module__`` of the classes in its MRO, so detection works (and costs nothing) whether or not the
framework is importable.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..neuron import LIF

__all__ = [
    "FRAMEWORKS",
    "Driver",
    "GatedInputWarning",
    "adapt_layer",
    "describe",
    "detect_framework",
    "first_receiving_layer",
    "find_input_layer",
    "is_neuron",
    "layer_in_size",
    "neuron_framework",
    "replace_submodule",
    "require",
    "stack_steps",
    "walk",
]

FRAMEWORKS: tuple[str, ...] = ("snntorch", "norse", "spikingjelly", "torch")
_SNN_FRAMEWORKS = ("snntorch", "norse", "spikingjelly")
_INPUT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


class GatedInputWarning(UserWarning):
    """The backbone's first layer is a Conv/Linear fed the gated, real-valued GAC output.

    Such a layer multiplies real values (MACs) instead of accumulating spikes (ACs). Silence it with
    ``binarize=True`` (binary spikes into the backbone) or
    ``warnings.filterwarnings("ignore", category=GatedInputWarning)``.
    """


def require(framework: str, module: str | None = None) -> ModuleType:
    """Import ``module`` (default: ``framework``) or raise an ``ImportError`` naming the extra.

    Example:
        >>> from gac_coding.adapters._common import require
        >>> require("torch").__name__
        'torch'
    """
    name = module or framework
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"gac_coding.wrap: the {framework} adapter needs the package {framework!r}, which "
            f'could not be imported ({exc}). Install it with: pip install "gac-coding[{framework}]"'
        ) from exc


def _roots(module: nn.Module) -> Iterator[tuple[str, type]]:
    for cls in type(module).__mro__:
        yield cls.__module__.partition(".")[0], cls


def module_framework(module: nn.Module) -> str | None:
    """``"snntorch"``, ``"norse"`` or ``"spikingjelly"`` if a class of ``module`` comes from it."""
    for root, _ in _roots(module):
        if root in _SNN_FRAMEWORKS:
            return root
    return None


def describe(name: str, module: nn.Module) -> str:
    """``'name' (ClassName)`` for messages; the backbone itself is ``<backbone>``."""
    return f"{name!r} ({type(module).__name__})" if name else f"<backbone> ({type(module).__name__})"


def detect_framework(backbone: nn.Module) -> str:
    """The framework of ``backbone``'s modules, ``"torch"`` when none; mixed frameworks raise.

    Example:
        >>> from torch import nn
        >>> from gac_coding.adapters._common import detect_framework
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
    return next(iter(found), "torch")


def neuron_framework(module: nn.Module) -> str | None:
    """The framework whose spiking neuron ``module`` is, or ``None`` for any other module.

    ``"gac_coding"`` for this library's :class:`~gac_coding.LIF`; ``"snntorch"`` for the classes of
    ``snntorch._neurons`` (``SpikingNeuron`` and its subclasses); ``"spikingjelly"`` for those of
    ``spikingjelly.activation_based.neuron`` (``BaseNode``...); ``"norse"`` for Norse's ``SNN``,
    ``SNNRecurrent`` and cell modules (``LIFCell``, ``LICell``...). Read from the classes' modules,
    so it imports no framework. This is the library's one answer to "is this a spiking layer?"
    (adapters, analysis).

    Example:
        >>> import gac_coding as gac
        >>> from torch import nn
        >>> from gac_coding.adapters._common import neuron_framework
        >>> neuron_framework(gac.LIF()), neuron_framework(nn.ReLU())
        ('gac_coding', None)
    """
    if isinstance(module, LIF):
        return "gac_coding"
    for root, cls in _roots(module):
        path = cls.__module__
        if root == "snntorch" and path.startswith("snntorch._neurons"):
            return root
        if root == "spikingjelly" and path.startswith("spikingjelly.activation_based.neuron"):
            return root
        if root == "norse" and path.startswith("norse.torch.module"):
            if cls.__name__ in ("SNNCell", "SNNRecurrentCell", "SNN", "SNNRecurrent"):
                return root
            if cls.__name__.endswith("Cell"):
                return root
    return None


def is_neuron(module: nn.Module) -> bool:
    """Whether ``module`` is a spiking/stateful neuron layer of any supported framework
    (:func:`neuron_framework` is not ``None``).

    A neuron turns its (real-valued) input into a membrane update: feeding it the gated code costs
    no multiplications, unlike a Conv/Linear.
    """
    return neuron_framework(module) is not None


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
        >>> from gac_coding.adapters._common import walk
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


def _get_layer(backbone: nn.Module, name: str) -> nn.Module:
    try:
        return backbone.get_submodule(name)
    except AttributeError:
        candidates = [n for n, m in walk(backbone) if isinstance(m, _INPUT_TYPES)]
        raise ValueError(
            f"input_layer: expected the name of a submodule of the backbone (its Conv/Linear "
            f"layers are {candidates}), got {name!r}"
        ) from None


def find_input_layer(backbone: nn.Module, input_layer: str | None) -> tuple[str, nn.Module] | None:
    """The layer that receives the code: ``input_layer`` by name, else the first Conv/Linear.

    Registration order stands for execution order (the convention of ``nn.Sequential`` and of
    tutorial-style classes that declare layers in the order they use them).
    """
    if input_layer is not None:
        if not isinstance(input_layer, str) or not input_layer:
            raise TypeError(f"input_layer: expected a submodule name (str), got {input_layer!r}")
        return input_layer, _get_layer(backbone, input_layer)
    for name, module in walk(backbone):
        if name and isinstance(module, _INPUT_TYPES):
            return name, module
    return None


def first_receiving_layer(backbone: nn.Module, input_layer: str | None) -> tuple[str, nn.Module] | None:
    """The first neuron or Conv/Linear in registration order (or ``input_layer``)."""
    if input_layer is not None:
        return input_layer, _get_layer(backbone, input_layer)
    for name, module in walk(backbone):
        if name and (is_neuron(module) or isinstance(module, _INPUT_TYPES)):
            return name, module
    return None


def layer_in_size(layer: nn.Module) -> tuple[str, int] | None:
    """``("in_channels", n)`` for a Conv, ``("in_features", n)`` for a Linear, else ``None``."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        return "in_channels", int(layer.in_channels)
    if isinstance(layer, nn.Linear):
        return "in_features", int(layer.in_features)
    return None


def adapt_layer(layer: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
    """A re-initialised copy of ``layer`` that takes ``out_channels`` code channels.

    Same class and hyperparameters (kernel, stride, padding, groups, bias, step mode...), fresh
    weights (``reset_parameters``). A Linear is assumed to see the flattened code, channels times
    pixels, so ``in_features`` scales by ``out_channels / in_channels``; this holds when the
    encoder's stem keeps the spatial size (the default 3x3, stride 1, padding 1).
    """
    weight = layer.weight
    if not isinstance(weight, Tensor):
        raise ValueError(f"adapt_input_layer: the input layer {type(layer).__name__} has no weight")
    device, dtype = weight.device, weight.dtype
    new = copy.deepcopy(layer)
    if isinstance(layer, nn.modules.conv._ConvNd):
        if layer.transposed:
            raise ValueError(
                f"adapt_input_layer: expected a Conv or Linear input layer, got the transposed "
                f"convolution {type(layer).__name__}; build the backbone for {out_channels} channels"
            )
        groups = int(layer.groups)
        if out_channels % groups:
            raise ValueError(
                f"out_channels: the input layer has groups={groups}, so the code's channels must "
                f"be a multiple of {groups}, got {out_channels}"
            )
        cast(nn.modules.conv._ConvNd, new).in_channels = out_channels
        shape = (int(layer.out_channels), out_channels // groups, *layer.kernel_size)
    elif isinstance(layer, nn.Linear):
        if layer.in_features % in_channels:
            raise ValueError(
                f"adapt_input_layer: the input Linear has in_features={layer.in_features}, not a "
                f"multiple of in_channels={in_channels}, so it does not take a flattened "
                f"{in_channels}-channel image; build the backbone for the code's size instead"
            )
        in_features = layer.in_features // in_channels * out_channels
        cast(nn.Linear, new).in_features = in_features
        shape = (int(layer.out_features), in_features)
    else:
        raise ValueError(
            f"adapt_input_layer: expected a Conv or Linear input layer, got {type(layer).__name__}"
        )
    new.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
    new.reset_parameters()  # type: ignore[operator]
    return new


def replace_submodule(backbone: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where ``backbone.get_submodule(name)`` was."""
    parent_name, _, child = name.rpartition(".")
    parent = backbone.get_submodule(parent_name) if parent_name else backbone
    setattr(parent, child, new)


def stack_steps(outputs: Sequence[Any]) -> Any:
    """Stack per-step outputs over a new leading time dimension, element by element.

    Tensors are stacked; tuples, lists and dicts are stacked per element (a named tuple keeps its
    type); ``None`` stays ``None``.

    Example:
        >>> import torch
        >>> from gac_coding.adapters._common import stack_steps
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


class Driver:
    """How one backbone is driven over the ``T`` steps of a code; subclasses per framework.

    A driver holds configuration (and, for snnTorch's ``"loop"`` mode, the hook it left on the
    input layer), never the backbone itself, so a :class:`GACNet` deep-copies, pickles and saves
    like any module.
    """

    framework: str = "torch"
    mode: str = "sequence"

    def run(self, backbone: nn.Module, code: Tensor) -> Any:
        """Fresh state, then the backbone's outputs for ``code: [T, B, C, H, W]``, time-major."""
        return backbone(code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(framework={self.framework!r}, mode={self.mode!r})"
