"""Put a GAC encoder in front of an existing snnTorch, Norse, SpikingJelly or plain PyTorch model.

``net = gac_coding.wrap(backbone, T=6, in_channels=1)`` returns a :class:`GACNet`: the image (or
frame sequence) goes through a :class:`~gac_coding.GACEncoder`, and the backbone, unchanged, is
driven over the ``T`` steps of the code the way its framework expects. Every call starts from fresh
backbone state. Frameworks are imported only when a backbone of theirs is wrapped; a missing one
raises an ``ImportError`` that names the extra to install (``pip install "gac-coding[norse]"``).

Each framework has one module here, which holds everything the library knows about it (detection
of its neurons, how it is driven, its state reset, its NIR neuron map), registered as a
:class:`Framework` (:mod:`.base` has the interface and the registry):

* snnTorch (:mod:`.snntorch`): ``init_hidden=True`` nets, one call per step; tutorial classes
  with explicit ``init_leaky()`` membranes that loop over ``num_steps`` themselves, one call in all,
  with step ``t`` of the code fed to their input layer at its ``t``-th call; whole-sequence neurons.
* Norse (:mod:`.norse`): ``SequentialState`` of cells, state threaded from ``None`` per step;
  whole-sequence modules (``LIF``, ``Lift``) in one call.
* SpikingJelly (:mod:`.spikingjelly`): step mode ``"m"`` in one call, ``"s"`` one call per step,
  ``functional.reset_net`` first; mixed step modes are rejected.
* plain PyTorch (:mod:`.plain`), whose neuron is this library's :class:`~gac_coding.LIF`: one call
  on ``[T, B, C, H, W]``.

A new framework is one module with a :class:`Framework` subclass, registered with
:func:`register_framework` (the built-in ones are registered below).
"""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from types import FrameType
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import boolean, positive_int
from ..coding import StemEncoder, check_coding, make_encoder
from ._layers import (
    GatedInputWarning,
    adapt_layer,
    find_input_layer,
    first_receiving_layer,
    layer_in_size,
    replace_submodule,
)
from .base import (
    DEFAULT_FRAMEWORK,
    Driver,
    Framework,
    describe,
    detect_framework,
    extra_of_package,
    framework_names,
    frameworks,
    get_framework,
    is_chain,
    is_neuron,
    neuron_framework,
    register_framework,
    reset_state,
    unregister_framework,
)
from .memory import set_memory
from .norse import Norse
from .plain import PlainTorch
from .snntorch import SnnTorch
from .spikingjelly import SpikingJelly

__all__ = [
    "FRAMEWORKS",
    "Driver",
    "Framework",
    "GACNet",
    "GatedInputWarning",
    "detect_framework",
    "extra_of_package",
    "framework_names",
    "frameworks",
    "get_framework",
    "is_chain",
    "is_neuron",
    "neuron_framework",
    "register_framework",
    "reset_state",
    "set_memory",
    "unregister_framework",
    "wrap",
]

# the built-in frameworks (detection tries them in this order; plain PyTorch is the fallback)
for _framework in (SnnTorch(), Norse(), SpikingJelly(), PlainTorch()):
    register_framework(_framework)


def __getattr__(name: str) -> Any:
    if name == "FRAMEWORKS":  # the names registered now (a framework registered later included)
        return framework_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: backbone -> the live GACNets that drive it (weak on both sides: a net or a backbone that is
#: garbage-collected drops out). A shared backbone's input layer must not be replaced under a net.
_NETS_OF: weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet[GACNet]] = weakref.WeakKeyDictionary()


def _resolve_framework(backbone: nn.Module, framework: str | None) -> str:
    if framework is None:
        detected = detect_framework(backbone)
        get_framework(detected).require()
        return detected
    get_framework(framework).require()
    detected = detect_framework(backbone)
    if detected != framework:
        what = f"{detected} modules"
        if detected == DEFAULT_FRAMEWORK:
            titles = [f.title for f in frameworks() if f.name != DEFAULT_FRAMEWORK] or ["framework"]
            what = f"no {' or '.join(filter(None, (', '.join(titles[:-1]), titles[-1])))} modules"
        raise ValueError(
            f"framework: got {framework!r} but the backbone holds {what}; leave framework=None "
            f"to detect it, or pass framework={detected!r}"
        )
    return framework


def _caller_level() -> int:
    """``stacklevel`` that points a warning at the first frame outside this package."""
    level = 1
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level += 1
        frame = frame.f_back
    return level


def _reference_tensor(module: nn.Module) -> Tensor | None:
    """The backbone's first floating-point parameter (else buffer): its device and dtype rule."""
    tensors: list[Tensor] = [*module.parameters(), *module.buffers()]
    return next((t for t in tensors if t.is_floating_point()), None)


class GACNet(nn.Module):
    """An encoder (GAC by default) followed by an existing backbone, driven over ``T`` steps.

    ``GACNet(x)`` takes a static batch ``[B, C, H, W]`` (the encoder's exact fast path) or a
    sequence ``[T, B, C, H, W]``, encodes it to ``[T, B, C', H', W']`` and returns the
    backbone's outputs stacked over time, ``[T, B, ...]`` (a tuple output is stacked element by
    element; a net that loops over time itself returns what its ``forward`` returns). Each call
    starts from fresh backbone state. Usually built with :func:`wrap`, which has the same arguments.

    Args:
        backbone: the model to drive; kept as :attr:`backbone` (the very object).
        T: number of time steps.
        in_channels: channels of the input image.
        out_channels: channels of the code, default ``in_channels`` (the backbone stays untouched).
        framework: ``"snntorch"``, ``"norse"``, ``"spikingjelly"`` or ``"torch"``; detected from the
            backbone's modules when ``None``.
        input_layer: name (as in ``named_modules``) of the layer that receives the code; default the
            first Conv/Linear registered.
        adapt_input_layer: when the code's channels differ from what the input layer takes, replace
            that layer by a **re-initialised** one of the same class and hyperparameters that takes
            ``out_channels``. Without it a mismatch raises ``ValueError``. The layer is replaced
            in the backbone object itself, so a backbone that another live :class:`GACNet`
            already drives is refused with a ``ValueError`` (the replacement would change that
            net too): wrap ``copy.deepcopy(backbone)`` instead.
        coding: the input coding, a name of :data:`gac_coding.coding.CODINGS`: ``"gac"`` (the
            :class:`~gac_coding.GACEncoder`, default), ``"direct"``, ``"rate"`` or ``"latency"``.
            The codings other than GAC hand the backbone the stem's BatchNorm output (real
            values), for a backbone that starts with a spiking neuron.
        **encoder_kwargs: passed to the coding's encoder (for GAC: ``binarize``, ``decay``,
            ``kernel_size``, ...; a setting the coding does not have raises ``TypeError``). Use
            ``binarize=True`` when the backbone's first layer is a Conv/Linear, so that it receives
            binary spikes; keep the gated code (the default) for a backbone that starts with a
            spiking neuron, as the paper's MS-ResNet does.

    Attributes:
        encoder: the coding's encoder, on the backbone's device and dtype; it owns ``T``
            (:attr:`T` reads it).
        backbone: the backbone.
        framework: the framework used.
        mode: how the backbone is driven (``"step"``, ``"loop"``, ``"sequence"``, ``"m"``, ``"s"``).
        input_layer: the name of the layer that receives the code, or ``None``.

    Example:
        >>> import torch, gac_coding as gac
        >>> from torch import nn
        >>> backbone = nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(2 * 8 * 8, 10))
        >>> net = gac.GACNet(backbone, T=4, in_channels=2)
        >>> net(torch.rand(3, 2, 8, 8)).shape                 # [T, B, classes]
        torch.Size([4, 3, 10])
        >>> net.framework, net.mode, net.backbone is backbone
        ('torch', 'sequence', True)
    """

    def __init__(
        self,
        backbone: nn.Module,
        T: int,
        in_channels: int,
        out_channels: int | None = None,
        framework: str | None = None,
        input_layer: str | None = None,
        *,
        adapt_input_layer: bool = False,
        coding: str = "gac",
        **encoder_kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone: expected a torch.nn.Module, got {type(backbone).__name__}")
        T = positive_int("T", T)
        in_channels = positive_int("in_channels", in_channels)
        out_channels = in_channels if out_channels is None else positive_int("out_channels", out_channels)
        boolean("adapt_input_layer", adapt_input_layer)
        coding = check_coding(coding)
        self.framework = _resolve_framework(backbone, framework)

        found = find_input_layer(backbone, input_layer)
        if found is not None:
            found = self._match_input_layer(backbone, found, in_channels, out_channels, adapt_input_layer)
        elif adapt_input_layer and out_channels != in_channels:
            raise ValueError(
                "adapt_input_layer: the backbone has no Conv/Linear layer to adapt; name its input "
                "layer with input_layer="
            )

        encoder = make_encoder(coding, in_channels, out_channels, T, **encoder_kwargs)
        ref = _reference_tensor(backbone)
        if ref is not None:
            encoder = encoder.to(device=ref.device, dtype=ref.dtype)
        self.encoder: StemEncoder = encoder
        self.backbone = backbone
        self._driver: Driver = get_framework(self.framework).build(backbone, T, found)
        self.input_layer: str | None = None if found is None else found[0]
        self._verified: set[tuple[int, ...]] = set()
        self._register()
        self._warn_if_gated_into_mac(input_layer)

    def _register(self) -> None:
        _NETS_OF.setdefault(self.backbone, weakref.WeakSet()).add(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # an unpickled or deep-copied net drives its own copy of the backbone: register it too
        super().__setstate__(state)
        self._register()

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _match_input_layer(
        backbone: nn.Module,
        found: tuple[str, nn.Module],
        in_channels: int,
        out_channels: int,
        adapt: bool,
    ) -> tuple[str, nn.Module]:
        name, layer = found
        size = layer_in_size(layer)
        if size is None:
            if adapt and out_channels != in_channels:
                raise ValueError(
                    f"adapt_input_layer: expected the input layer to be a Conv or Linear, got "
                    f"{describe(name, layer)}"
                )
            return found
        kind, n = size
        if kind == "in_channels":
            mismatch = n != out_channels
        else:  # a Linear: its size depends on the image; change it only when asked to
            mismatch = adapt and out_channels != in_channels
        if not mismatch:
            return found
        if not adapt:
            raise ValueError(
                f"out_channels: the code has {out_channels} channels but the backbone's input "
                f"layer {describe(name, layer)} takes in_channels={n}; pass "
                f"adapt_input_layer=True to replace it by a re-initialised "
                f"{type(layer).__name__} that takes {out_channels}, or choose "
                f"out_channels={n}"
            )
        drivers = [net for net in _NETS_OF.get(backbone, ()) if net.backbone is backbone]
        if drivers:
            raise ValueError(
                f"adapt_input_layer: the backbone is already wrapped by a GACNet whose code has "
                f"{drivers[0].encoder.out_channels} channels; replacing its input layer "
                f"{describe(name, layer)} for {out_channels} channels would change that net too "
                f"(the backbone is one object, shared). Wrap a copy instead: "
                f"wrap(copy.deepcopy(backbone), ...)"
            )
        new = adapt_layer(layer, in_channels, out_channels)
        replace_submodule(backbone, name, new)
        return name, new

    def _warn_if_gated_into_mac(self, input_layer: str | None) -> None:
        if getattr(self.encoder, "binarize", True):  # binary spikes, or not the GAC encoder
            return
        first: tuple[str, nn.Module] | None
        if self.mode == "loop" and self.input_layer is not None:
            first = (self.input_layer, self.backbone.get_submodule(self.input_layer))
        else:
            first = first_receiving_layer(self.backbone, input_layer)
        if first is None or layer_in_size(first[1]) is None:
            return
        warnings.warn(
            f"gac_coding.wrap: the backbone's first layer {describe(*first)} receives the GAC "
            f"encoder's gated output, which is not binary (values in [0, 1)), so it multiplies "
            f"real values (MACs) instead of accumulating spikes (ACs). Pass binarize=True to "
            f"feed it binary spikes, or start the backbone with a spiking neuron (as MS-ResNet "
            f"does).",
            GatedInputWarning,
            stacklevel=_caller_level(),
        )

    # ------------------------------------------------------------------ forward
    @property
    def T(self) -> int:
        """The number of time steps: the encoder's (:meth:`set_timesteps` changes it)."""
        return self.encoder.T

    @property
    def coding(self) -> str:
        """The input coding, the encoder's name in :data:`gac_coding.coding.CODINGS`."""
        return self.encoder.coding

    @property
    def mode(self) -> str:
        """How the backbone is driven (see the framework modules)."""
        return self._driver.mode

    def _install_size_check(self, code: Tensor) -> Any:
        key = tuple(code.shape[2:])
        if self.input_layer is None or key in self._verified:
            return None
        name = self.input_layer
        layer = self.backbone.get_submodule(name)
        size = layer_in_size(layer)
        if size is None:
            return None
        kind, n = size
        channels = code.shape[2]

        def check(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not args or not isinstance(args[0], Tensor):
                return
            x = args[0]
            if kind == "in_features":
                got = x.shape[-1] if x.dim() else 0
            else:
                dim = -(len(module.kernel_size) + 1)  # type: ignore[arg-type]
                got = x.shape[dim] if x.dim() >= -dim else 0
            if got != n:
                raise ValueError(
                    f"x: the backbone's input layer {describe(name, module)} expects {kind}={n} "
                    f"but receives {got} from the code of shape {tuple(code.shape)} "
                    f"({channels} channels); pass adapt_input_layer=True to wrap() to replace "
                    f"it by a re-initialised layer, or change out_channels or the image size"
                )

        return layer.register_forward_pre_hook(check)

    def set_timesteps(self, T: int) -> None:
        """Run encoder and backbone at ``T`` steps from now on: the encoder's ``T``, which the net
        reads (see :meth:`gac_coding.GACEncoder.set_timesteps`; the paper's ``"mlp"`` temporal attention
        refuses a call at another ``T`` than it was built for, ``temporal_attention="conv"`` runs at
        any ``T``). A backbone that loops over its own number of steps (``mode == "loop"``)
        cannot be told another ``T``: that raises ``ValueError``."""
        T = positive_int("T", T)
        if self.mode == "loop" and T != self.T:
            raise ValueError(
                f"T: this backbone runs its own loop of {self.T} steps (mode 'loop'), which "
                f"set_timesteps cannot change; set the net's number of steps and wrap it again "
                f"with T={T}"
            )
        self.encoder.set_timesteps(T)
        if hasattr(self._driver, "T"):  # drivers that loop over the steps themselves
            self._driver.T = self.T

    def forward(self, x: Tensor) -> Any:
        """Encode ``x`` (``[B, C, H, W]`` or ``[T, B, C, H, W]``) and run the backbone over ``T``."""
        code = self.encoder(x)
        # registering and removing a hook breaks a torch.compile/torch.export graph: when traced,
        # a code that does not fit the input layer meets that layer's own shape error instead
        traced = torch.compiler.is_compiling() or torch.compiler.is_exporting()
        handle = None if traced else self._install_size_check(code)
        try:
            out = self._driver.run(self.backbone, code)
        finally:
            if handle is not None:
                handle.remove()
        if handle is not None:
            self._verified.add(tuple(code.shape[2:]))
        return out

    def extra_repr(self) -> str:
        return f"framework={self.framework!r}, mode={self.mode!r}, T={self.T}, coding={self.coding!r}"


def wrap(
    backbone: nn.Module,
    T: int,
    in_channels: int,
    out_channels: int | None = None,
    framework: str | None = None,
    input_layer: str | None = None,
    *,
    adapt_input_layer: bool = False,
    coding: str = "gac",
    **encoder_kwargs: Any,
) -> GACNet:
    """Put an encoder in front of ``backbone``: ``wrap(backbone, T, in_channels) -> GACNet``; the
    GAC encoder by default, another coding with ``coding=`` (``"direct"``, ``"rate"``,
    ``"latency"``: :data:`gac_coding.coding.CODINGS`).

    See :class:`GACNet` for the arguments. Warns once (:class:`GatedInputWarning`) when the GAC
    code is gated (``binarize=False``) and the first layer that receives it is a Conv/Linear.

    Example:
        >>> import torch, gac_coding as gac
        >>> from torch import nn
        >>> net = gac.wrap(nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 10)),
        ...                T=6, in_channels=1)
        >>> net(torch.rand(5, 1, 8, 8)).shape
        torch.Size([6, 5, 10])
    """
    return GACNet(
        backbone,
        T,
        in_channels,
        out_channels,
        framework,
        input_layer,
        adapt_input_layer=adapt_input_layer,
        coding=coding,
        **encoder_kwargs,
    )
