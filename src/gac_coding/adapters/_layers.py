"""Framework-neutral helpers of :func:`gac_coding.wrap`: the layer that receives the code, found
by name or position, its size checked, and replaced when the code's channels differ."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn

from .base import is_neuron, walk

__all__ = [
    "GatedInputWarning",
    "adapt_layer",
    "find_input_layer",
    "first_receiving_layer",
    "layer_in_size",
    "replace_submodule",
]

_INPUT_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


class GatedInputWarning(UserWarning):
    """The backbone's first layer is a Conv/Linear fed the gated, real-valued GAC output.

    Such a layer multiplies real values (MACs) instead of accumulating spikes (ACs). Silence it with
    ``binarize=True`` (binary spikes into the backbone) or
    ``warnings.filterwarnings("ignore", category=GatedInputWarning)``.
    """


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
