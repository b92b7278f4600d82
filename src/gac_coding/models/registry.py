"""One name registry for the models: :func:`create_model`, :func:`list_models`, :func:`register_model`,
and what each model is made for (:class:`ModelInfo`, :func:`model_info`)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from torch import nn

from .._checks import positive_int
from ..coding.registry import coding_from_gac_flag

__all__ = [
    "EXPORTS",
    "INPUT_KINDS",
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]

Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=Builder)

#: What a model takes: ``"image"``, static images ``[B, C, H, W]`` (or a sequence of them);
#: ``"events"``, sequences of event frames ``[T, B, C, H, W]``.
INPUT_KINDS: tuple[str, ...] = ("image", "events")
#: Export formats a model may declare: ``"nir"`` (:func:`gac_coding.export.to_nir`) and ``"onnx"``
#: (:func:`gac_coding.export.to_onnx`).
EXPORTS: tuple[str, ...] = ("nir", "onnx")
#: How the input may reach each kind of model by default: images directly, through the GAC encoder
#: or as rate or latency spike trains drawn from their intensities; event frames directly or through GAC.
_DEFAULT_CODINGS = {"image": ("gac", "direct", "rate", "latency"), "events": ("gac", "direct")}


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is made for (read it with :func:`model_info`); commands take their
    defaults from it.

    Attributes:
        in_channels: input channels of the default build (3: RGB images; 2: event frames, OFF and
            ON counts).
        input_size: ``(H, W)`` of the input it is made for (``gac-coding energy``'s random input and
            ``gac-coding export``'s graph when no checkpoint says otherwise).
        T: its default number of time steps (``None``: read from the builder's ``T`` default).
        num_classes: its default head size (``None``: read from the builder's default).
        input_kind: one of :data:`INPUT_KINDS`.
        recipe: the paper's neuron settings it uses, ``"cifar"`` or ``"imagenet"`` (``None``: none
            of them).
        codings: how its input may be coded (names of :data:`gac_coding.coding.CODINGS`); empty
            (the default): ``gac``, ``direct``, ``rate`` and ``latency`` for images, ``gac`` and
            ``direct`` for event frames.
        exports: the formats of :data:`EXPORTS` it can be exported to; ``gac-coding export``
            refuses the others before doing any work.
    """

    in_channels: int = 3
    input_size: tuple[int, int] = (32, 32)
    T: int | None = None
    num_classes: int | None = None
    input_kind: str = "image"
    recipe: str | None = None
    codings: tuple[str, ...] = ()
    exports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive_int("in_channels", self.in_channels)
        size = tuple(self.input_size) if isinstance(self.input_size, (tuple, list)) else None
        if size is None or len(size) != 2:
            raise ValueError(f"input_size: expected (H, W), got {self.input_size!r}")
        for side in size:
            positive_int("input_size", side)
        object.__setattr__(self, "input_size", size)
        for name in ("T", "num_classes"):
            if getattr(self, name) is not None:
                positive_int(name, getattr(self, name))
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind: expected one of {list(INPUT_KINDS)}, got {self.input_kind!r}")
        if self.recipe not in (None, "cifar", "imagenet"):
            raise ValueError(f"recipe: expected 'cifar', 'imagenet' or None, got {self.recipe!r}")
        codings = tuple(self.codings) or _DEFAULT_CODINGS[self.input_kind]
        if not codings or not all(isinstance(c, str) and c for c in codings):
            raise ValueError(f"codings: expected a tuple of coding names, got {self.codings!r}")
        object.__setattr__(self, "codings", codings)
        exports = tuple(self.exports)
        unknown = [e for e in exports if e not in EXPORTS]
        if unknown:
            raise ValueError(f"exports: expected names from {list(EXPORTS)}, got {unknown[0]!r}")
        object.__setattr__(self, "exports", exports)


class _Entry(NamedTuple):
    builder: Builder
    info: ModelInfo


_REGISTRY: dict[str, _Entry] = {}


def _builder_default(builder: Builder, name: str) -> int | None:
    try:
        parameter = inspect.signature(builder).parameters.get(name)
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    default = parameter.default
    return default if isinstance(default, int) and not isinstance(default, bool) else None


def _complete(info: ModelInfo, builder: Builder) -> ModelInfo:
    """``info`` with ``T`` and ``num_classes`` from the builder's defaults; a value given in
    ``info`` must agree with the builder's."""
    found: dict[str, int | None] = {}
    for field_name in ("T", "num_classes"):
        given, default = getattr(info, field_name), _builder_default(builder, field_name)
        if given is not None and default is not None and given != default:
            raise ValueError(
                f"info: {field_name}={given} disagrees with the builder's default {field_name}={default}"
            )
        found[field_name] = given if given is not None else default
    return dataclasses.replace(info, T=found["T"], num_classes=found["num_classes"])


def register_model(
    name: str, builder: Builder | None = None, *, info: ModelInfo | None = None, overwrite: bool = False
) -> Any:
    """Register ``builder(num_classes=..., T=..., coding=..., **kwargs) -> nn.Module`` under ``name``.

    Use it as a function (``register_model("mine", build)``) or a decorator
    (``@register_model("mine")``). A name that is taken raises ``ValueError`` unless
    ``overwrite=True``. ``info`` says what the model is made for (:class:`ModelInfo`; default: RGB
    images of 32x32, no export declared); its ``T`` and ``num_classes`` are read from the
    builder's defaults.

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
    if info is not None and not isinstance(info, ModelInfo):
        raise TypeError(f"info: expected a ModelInfo, got {type(info).__name__}")

    def add(fn: _B) -> _B:
        if not callable(fn):
            raise TypeError(f"builder: expected a callable, got {type(fn).__name__}")
        if name in _REGISTRY and not overwrite and _REGISTRY[name].builder is not fn:
            raise ValueError(f"name: {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = _Entry(fn, _complete(info or ModelInfo(), fn))
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


def _entry(name: object) -> _Entry:
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"name: unknown model {name!r}; expected one of {list_models()}")
    return _REGISTRY[name]


def model_info(name: str) -> ModelInfo:
    """What the registered model ``name`` is made for (its :class:`ModelInfo`).

    Example:
        >>> from gac_coding.models import model_info
        >>> info = model_info("vgg_tiny")
        >>> info.input_kind, info.in_channels, info.input_size, info.T, "nir" in info.exports
        ('events', 2, (48, 48), 4, False)
    """
    return _entry(name).info


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
    builder = _entry(name).builder
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
    model = builder(**kwargs)
    # what rebuilds it: save_pretrained writes it to config.json (a copy, so later changes to the
    # caller's dicts do not leak in)
    if isinstance(model, nn.Module):
        try:
            recorded = copy.deepcopy(kwargs)
        except Exception:  # noqa: BLE001 - an argument that cannot be copied (save_pretrained refuses it)
            recorded = dict(kwargs)
        model.__dict__["_gac_coding_build"] = {"model": name, **recorded}
    return model
