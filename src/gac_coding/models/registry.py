"""One name registry for the models: :func:`create_model`, :func:`list_models`, :func:`register_model`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..coding.registry import coding_from_gac_flag

__all__ = ["create_model", "list_models", "register_model"]

Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=Builder)

_REGISTRY: dict[str, Builder] = {}


def register_model(name: str, builder: Builder | None = None, *, overwrite: bool = False) -> Any:
    """Register ``builder(num_classes=..., T=..., coding=..., **kwargs) -> nn.Module`` under ``name``.

    Use it as a function (``register_model("mine", build)``) or a decorator
    (``@register_model("mine")``). A name that is taken raises ``ValueError`` unless
    ``overwrite=True``.

    Example:
        >>> from gac_coding.models import register_model, create_model, list_models
        >>> from gac_coding.models.msresnet import MSResNet
        >>> @register_model("my_net", overwrite=True)
        ... def my_net(num_classes=10, T=2, coding="gac", **kw):
        ...     return MSResNet([(8, 1, 1)], num_classes, T, coding=coding, stem_channels=8, **kw)
        >>> "my_net" in list_models()
        True
        >>> create_model("my_net", num_classes=3).fc.out_features
        3
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty str, got {name!r}")

    def add(fn: _B) -> _B:
        if not callable(fn):
            raise TypeError(f"builder: expected a callable, got {type(fn).__name__}")
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not fn:
            raise ValueError(f"name: {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = fn
        return fn

    if builder is None:
        return add
    return add(builder)


def list_models() -> list[str]:
    """Sorted names accepted by :func:`create_model`.

    Example:
        >>> from gac_coding.models import list_models
        >>> [n for n in list_models() if n.startswith("msresnet")]
        ['msresnet18_cifar', 'msresnet18_dvs', 'msresnet18_imagenet', 'msresnet34_imagenet', 'msresnet_tiny']
    """
    return sorted(_REGISTRY)


def create_model(
    name: str,
    num_classes: int | None = None,
    T: int | None = None,
    coding: str = "gac",
    *,
    gac: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: one of :func:`list_models` (``"msresnet18_cifar"``, ``"msresnet18_imagenet"``,
            ``"msresnet34_imagenet"``, ``"msresnet_tiny"``; for event frames ``"msresnet18_dvs"``,
            ``"vggsnn_dvs"``, ``"vgg_tiny"``, ...).
        num_classes: outputs of the head (``None``: the model's default, 10 for the CIFAR recipe
            and ``msresnet_tiny``, 1000 for the ImageNet recipe).
        T: time steps (``None``: the model's default, 6 for CIFAR, 4 for ImageNet and tiny).
        coding: the input coding, a name of :data:`gac_coding.coding.CODINGS`: ``"gac"`` (the
            GAC encoder, default), ``"direct"`` (the direct-coding baseline), ``"rate"``
            (Bernoulli spikes of the pixel intensities) or ``"latency"`` (one spike per pixel,
            brighter earlier); an unknown name raises ``ValueError`` naming them.
        gac: deprecated: ``gac=True`` / ``False`` for ``coding="gac"`` / ``"direct"`` (one
            ``DeprecationWarning``).
        **kwargs: passed to the builder, e.g. ``in_channels=1`` for grey images,
            ``temporal_attention="conv"`` for a GAC encoder that runs at any ``T``
            (``set_timesteps``), ``backend="eager"`` (or ``"cpp"``, ``"triton"``, ``"cpp,eager"``;
            default ``"auto"``) for every neuron of the model (:mod:`gac_coding.ops.backends`),
            or ``encoder_kwargs={...}`` for the coding's encoder.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> m = create_model("msresnet_tiny", num_classes=10, T=4, in_channels=1)
        >>> m(torch.rand(2, 1, 8, 8)).shape           # logits [T, B, classes]
        torch.Size([4, 2, 10])
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown model {name!r}; expected one of {list_models()}")
    builder = _REGISTRY[name]
    coding = coding_from_gac_flag(coding, gac, "create_model(gac=...)")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if T is not None:
        kwargs["T"] = T
    kwargs["coding"] = coding
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        sig = None
    if sig is not None:
        try:
            sig.bind(**kwargs)
        except TypeError as err:
            raise TypeError(f"create_model({name!r}, ...): {err}") from None
    return builder(**kwargs)
