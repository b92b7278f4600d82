"""The spiking backbone as a NIR graph, the GAC encoder on the host (issue 13).

NIR (the Neuromorphic Intermediate Representation) describes a network as continuous-time nodes
joined by identity edges; several edges into one node are summed. It has no BatchNorm, sigmoid or
product, and GAC's gate ``sigmoid(TA * SCA) * S`` pools over all ``T`` steps, so the encoder stays
on the host (:class:`HostEncoder`: input -> the code ``[T, B, C, H, W]`` that crosses to the chip)
and the backbone becomes the graph.

**Neurons.** A NIR ``LIF`` integrated by forward Euler at the step ``dt`` reads

    v <- v + dt/tau * ((v_leak - v) + r * I);  z = [v > v_threshold];  v <- v_reset where z

With ``dt/tau = 1 - decay``, ``r = tau/dt = 1/(1 - decay)``, ``v_leak = v_reset = 0`` this is
``v <- decay * v + I`` followed by the hard reset to 0: the library's
``v_t = decay v_{t-1} (1 - s_{t-1}) + x_t``. Per framework:

* :class:`gac_coding.LIF` (``decay``, ``threshold``): as above; ``decay = 1`` (no leak) becomes an
  ``IF`` with ``r = 1/dt`` (``v <- v + dt r I = v + I``).
* snnTorch ``Leaky``: ``mem = beta * mem + input``, reset to zero: ``decay = beta`` (clamped to
  ``[0, 1]`` as snnTorch does, per neuron when ``beta`` is a tensor). Only
  ``reset_mechanism="zero"`` maps (``"subtract"`` is a soft reset, ``"none"`` never resets); with
  ``reset_delay`` on or off the spikes are the same (the delayed reset zeroes the membrane before
  the next leak, the immediate one right away).
* SpikingJelly ``LIFNode`` (``v_reset=0.0``): ``decay_input=False`` charges
  ``H = V - V/tau + X``: ``tau_nir = tau dt``, ``r = tau``; ``decay_input=True`` charges
  ``H = V + (X - V)/tau``: ``tau_nir = tau dt``, ``r = 1``. ``IFNode`` (``v_reset=0.0``) is an
  ``IF`` with ``r = 1/dt``. ``v_reset=None`` (soft reset) and other reset values are refused.
* Norse ``LIFCell`` / ``LIF`` (current-based): per step ``i <- i + x``, then
  ``v <- v + dt_n/tau_mem ((v_leak - v) + i)``, fire, reset, ``i <- (1 - dt_n/tau_syn) i``. This
  is a NIR ``CubaLIF`` with ``dt/tau_syn = dt_n * tau_syn_inv``, ``dt/tau_mem = dt_n *
  tau_mem_inv``, ``w_in = tau_syn/dt`` (so that ``I <- (1 - dt/tau_syn) I + x``), ``r = 1``,
  integrated current first, then membrane (the order Norse and SpikingJelly's ``CUBALIFNode``
  use). ``LIFBoxCell`` (no current) is a ``LIF`` with ``r = 1``. ``v_leak`` must be 0 (Norse starts
  the membrane at ``v_leak``, NIR consumers at 0).

**Firing at the threshold.** NIR, this library, snnTorch and Norse fire when ``v > threshold``;
SpikingJelly fires when ``v >= threshold``. A SpikingJelly backbone is exported with its threshold
unchanged, so the two differ only when a membrane lands exactly on the threshold.

**Layers.** ``Conv2d`` and ``Linear`` (``Affine`` or ``Linear``) with an eval-mode ``BatchNorm``
right after them folded in (weights and bias from the running statistics); ``Flatten`` with
per-sample dimensions (NIR's shapes carry no batch or time dimension); average pooling as
``AvgPool2d`` without padding; MS-ResNet's membrane shortcut as several edges into the nodes that
read the block's output (the sum of the residual branch and the shortcut is the input current of
the next neurons); the head's global average pool as ``AvgPool2d`` over the whole map, ``Flatten``
and ``Affine``. The graph's ``Output`` gives the logits of every step; their mean over time stays
on the host. Anything else raises an error naming the module and its type.

Every parameter is written in the model's dtype (a float64 model gives float64 arrays).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DEFAULT_DT",
    "HostEncoder",
    "NIRExport",
    "load_host",
    "save_nir_export",
    "simulate",
    "to_nir",
]

DEFAULT_DT = 1e-4
"""Default integration step in seconds: the one SpikingJelly's importer defaults to and snnTorch's
importer assumes."""

_NEURON_TYPES = ("LIF", "IF", "CubaLIF")
_SYNAPTIC_TYPES = ("Conv2d", "Affine", "Linear")


def _require_nir() -> Any:
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - the test extra installs nir
        raise ImportError(f'NIR export needs nir ({exc}): pip install "gac-coding[export]"') from exc
    return nir


def _describe(name: str, module: nn.Module) -> str:
    return f"{name!r} ({type(module).__name__})" if name else f"<model> ({type(module).__name__})"


def _check_dt(dt: object) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt: expected a float (seconds), got {type(dt).__name__}")
    value = float(dt)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"dt: expected a finite step > 0, got {dt}")
    return value


# ------------------------------------------------------------------------------------------------
# The host side
# ------------------------------------------------------------------------------------------------


class HostEncoder(nn.Module):
    """Input image (or frame sequence) -> what crosses to the chip, ``[T, B, C, H, W]``.

    Holds a copy of the model's encoder: a :class:`~gac_coding.GACEncoder` (the gated code, real
    values in ``[0, 1)``, or binary spikes with ``binarize``) or the direct-coding stem of an
    MS-ResNet built with ``gac=False`` (the stem's BatchNorm output ``U``, real values).

    Args:
        encoder: the encoder to copy.
        binarize: ``None`` keeps the encoder's setting; ``True``/``False`` sets it on the copy.
        channels_last: run the input channels-last, as an MS-ResNet built with
            ``channels_last=True`` does (same values as the model's own encoder).
    """

    def __init__(
        self, encoder: nn.Module, *, binarize: bool | None = None, channels_last: bool = False
    ) -> None:
        super().__init__()
        from ..encoder import StemEncoder
        from ..models.msresnet import DirectEncoder

        if not isinstance(encoder, StemEncoder):
            raise TypeError(
                f"encoder: expected a GACEncoder or a DirectEncoder, got {type(encoder).__name__}"
            )
        if binarize is not None and not isinstance(binarize, bool):
            raise TypeError(f"binarize: expected a bool or None, got {type(binarize).__name__}")
        self.direct = isinstance(encoder, DirectEncoder)
        if self.direct and binarize:
            raise ValueError(
                "binarize: the model uses direct coding (gac=False), whose host sends the stem's "
                "real-valued membrane U to the chip; binarize=True needs a GAC encoder"
            )
        copied: Any = copy.deepcopy(encoder)  # a StemEncoder (nn.Module attributes are untyped)
        if binarize is not None and not self.direct:
            copied.binarize = binarize
        self.encoder = copied
        self.channels_last = bool(channels_last)
        self.T = int(encoder.T)

    @property
    def binarize(self) -> bool:
        """Whether the code is binary spikes."""
        return (not self.direct) and bool(self.encoder.binarize)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C, H, W]`` or ``[T, B, C, H, W]`` -> code ``[T, B, C', H', W']``."""
        if self.channels_last and isinstance(x, Tensor) and x.dim() in (4, 5) and x.numel():
            from ..models._steps import channels_last_steps

            x = channels_last_steps(x)
        return self.encoder(x)

    def extra_repr(self) -> str:
        return f"T={self.T}, direct={self.direct}, binarize={self.binarize}"


# ------------------------------------------------------------------------------------------------
# Tracing: per-sample shapes of every module, from one forward pass
# ------------------------------------------------------------------------------------------------


def _per_sample(shape: tuple[int, ...], T: int, B: int) -> tuple[int, ...] | None:
    """Drop the leading batch (``[B, ...]``, ``[T*B, ...]``) or time and batch (``[T, B, ...]``) dims."""
    if len(shape) >= 1 and shape[0] in (B, T * B):
        return tuple(shape[1:])
    if len(shape) >= 2 and shape[0] == T and shape[1] == B:
        return tuple(shape[2:])
    return None


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def _trace_shapes(model: nn.Module, x: Tensor, T: int, B: int) -> dict[nn.Module, Any]:
    """Per-sample (input, output) shapes of the first call of every module of ``model`` (or the
    error that says why they cannot be read)."""
    shapes: dict[nn.Module, Any] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if module in shapes:
            return
        inp = args[0] if args and isinstance(args[0], Tensor) else None
        res = _first_tensor(out)
        if inp is None or res is None:
            return
        ps_in = _per_sample(tuple(inp.shape), T, B)
        ps_out = _per_sample(tuple(res.shape), T, B)
        if ps_in is None or ps_out is None:
            # only an error if the graph needs this module (the encoder's internals never are)
            shapes[module] = ValueError(
                f"model: cannot tell the batch dimension of the tensors around "
                f"{_describe(names.get(module, '?'), module)} (input {tuple(inp.shape)}, output "
                f"{tuple(res.shape)}, T={T}, batch {B}); export expects [B, ...], [T*B, ...] or "
                f"[T, B, ...]"
            )
            return
        shapes[module] = (ps_in, ps_out)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        from .._measure import reset_framework_state

        reset_framework_state(model)
    return shapes


# ------------------------------------------------------------------------------------------------
# Neurons
# ------------------------------------------------------------------------------------------------


def _full(value: Any, shape: tuple[int, ...], dtype: torch.dtype) -> Any:
    """``value`` (a number or a broadcastable tensor) as a numpy array of ``shape``."""
    t = torch.as_tensor(value.detach() if isinstance(value, Tensor) else value, dtype=dtype)
    return torch.broadcast_to(t.to("cpu"), shape).clone().numpy()


def _decay_node(
    nir: Any, decay: Tensor, threshold: Any, shape: tuple[int, ...], dt: float, where: str
) -> Any:
    """``v <- decay v + x``, fire above ``threshold``, reset to 0, as a NIR LIF (or IF when decay is 1)."""
    dtype = decay.dtype
    # the time constants in float64, then in the model's dtype
    d = torch.broadcast_to(decay.detach().to("cpu", torch.float64), shape)
    thr = _full(threshold, shape, dtype)
    zeros = _full(0.0, shape, dtype)
    if bool((d == 1).all()):
        return nir.IF(r=_full(1.0 / dt, shape, dtype), v_threshold=thr, v_reset=zeros)
    if bool((d == 1).any()):
        raise ValueError(
            f"{where}: some neurons have decay 1 (no leak) and others leak; NIR's LIF cannot "
            f"express a non-leaky neuron (tau would be infinite) and IF cannot leak"
        )
    leak = 1.0 - d
    return nir.LIF(
        tau=(dt / leak).to(dtype).numpy(),
        r=(1.0 / leak).to(dtype).numpy(),
        v_leak=zeros,
        v_threshold=thr,
        v_reset=zeros.copy(),
    )


def _class_is(module: nn.Module, package: str, name: str) -> bool:
    cls = type(module)
    return cls.__name__ == name and cls.__module__.startswith(package)


def _probe_spike_function(fn: Callable[[Tensor], Tensor], dtype: torch.dtype) -> str:
    """``"gt"`` (fires above 0), ``"ge"`` (at 0 too) or ``"other"`` for a spike function of ``v - thr``."""
    probe = torch.tensor([-1e-3, 0.0, 1e-3], dtype=dtype)
    with torch.no_grad():
        out = _first_tensor(fn(probe))
    if out is None:
        return "other"
    values = [float(v) for v in out.flatten().tolist()]
    if values == [0.0, 0.0, 1.0]:
        return "gt"
    if values == [0.0, 1.0, 1.0]:
        return "ge"
    return "other"


def _neuron_node(
    nir: Any, name: str, module: nn.Module, shape: tuple[int, ...], dt: float, dtype: torch.dtype
) -> Any | None:
    """The NIR node of a neuron module, ``None`` when ``module`` is not a neuron."""
    from ..neuron import LIF

    where = _describe(name, module)
    if type(module) is LIF:
        return _decay_node(nir, torch.tensor(module.decay, dtype=dtype), module.threshold, shape, dt, where)
    if isinstance(module, LIF):
        raise TypeError(
            f"{where}: a subclass of gac_coding.LIF may change its dynamics; export takes LIF itself"
        )

    cls = type(module)
    root = cls.__module__.partition(".")[0]
    if root == "snntorch":
        if _class_is(module, "snntorch", "Leaky"):
            return _snntorch_leaky(nir, module, where, shape, dt, dtype)
        if cls.__module__.startswith("snntorch._neurons"):
            raise TypeError(
                f"{where}: NIR export maps snnTorch's Leaky only (a LIF); this neuron has other dynamics"
            )
    if root == "spikingjelly":
        if _class_is(module, "spikingjelly.activation_based.neuron", "LIFNode"):
            return _spikingjelly_node(nir, module, where, shape, dt, dtype, lif=True)
        if _class_is(module, "spikingjelly.activation_based.neuron", "IFNode"):
            return _spikingjelly_node(nir, module, where, shape, dt, dtype, lif=False)
        if cls.__module__.startswith("spikingjelly.activation_based.neuron"):
            raise TypeError(
                f"{where}: NIR export maps SpikingJelly's LIFNode and IFNode only; this neuron "
                f"has other dynamics"
            )
    if root == "norse":
        in_module = cls.__module__.startswith("norse.torch.module")
        if in_module and cls.__name__ in ("LIFCell", "LIF", "LIFBoxCell"):
            return _norse_node(nir, module, where, shape, dt, dtype)
        if cls.__module__.startswith("norse.torch.module") and (
            cls.__name__.endswith("Cell") or hasattr(module, "p")
        ):
            raise TypeError(
                f"{where}: NIR export maps Norse's LIFCell, LIF and LIFBoxCell only; this neuron "
                f"has other dynamics (a leaky integrator readout has no spikes to export: end the "
                f"backbone with a Linear layer)"
            )
    return None


def _snntorch_leaky(
    nir: Any, m: Any, where: str, shape: tuple[int, ...], dt: float, dtype: torch.dtype
) -> Any:
    mech = getattr(m, "reset_mechanism", "subtract")
    if mech != "zero":
        kind = "a soft reset (subtract the threshold)" if mech == "subtract" else "no reset"
        raise ValueError(
            f"{where}: reset_mechanism={mech!r} is {kind}, which NIR's LIF (reset to v_reset) "
            f"cannot express exactly; build the neuron with reset_mechanism='zero'"
        )
    if getattr(m, "inhibition", False) or getattr(m, "state_quant", False):
        raise ValueError(f"{where}: inhibition and state_quant have no NIR equivalent")
    if getattr(m, "output", False):
        raise ValueError(
            f"{where}: output=True returns the membrane, which NIR neurons do not emit (they "
            f"emit spikes only); end the backbone with a Linear layer for per-step logits"
        )
    factor = torch.as_tensor(getattr(m, "graded_spikes_factor", 1.0))
    if not bool((factor == 1).all()):
        raise ValueError(f"{where}: graded_spikes_factor must be 1 (binary spikes) for NIR")
    rule = _probe_spike_function(m.spike_grad, dtype)
    if rule != "gt":
        raise ValueError(
            f"{where}: its spike function does not fire exactly when mem > threshold "
            f"(probe gave {rule!r}); NIR's LIF does"
        )
    beta = torch.as_tensor(m.beta).detach().to(dtype).clamp(0, 1)
    return _decay_node(nir, beta, torch.as_tensor(m.threshold).detach(), shape, dt, where)


def _spikingjelly_node(
    nir: Any, m: Any, where: str, shape: tuple[int, ...], dt: float, dtype: torch.dtype, *, lif: bool
) -> Any:
    v_reset = m.v_reset
    if v_reset is None:
        raise ValueError(
            f"{where}: v_reset=None is a soft reset (subtract the threshold), which NIR's "
            f"{'LIF' if lif else 'IF'} (reset to v_reset) cannot express exactly"
        )
    if float(v_reset) != 0.0:
        raise ValueError(
            f"{where}: v_reset={v_reset} also sets the resting and initial membrane, which NIR "
            f"consumers start at 0; export needs v_reset=0.0"
        )
    thr = _full(float(m.v_threshold), shape, dtype)
    zeros = _full(0.0, shape, dtype)
    if not lif:
        return nir.IF(r=_full(1.0 / dt, shape, dtype), v_threshold=thr, v_reset=zeros)
    tau = float(m.tau)
    return nir.LIF(
        tau=_full(tau * dt, shape, dtype),
        r=_full(1.0 if m.decay_input else tau, shape, dtype),
        v_leak=zeros,
        v_threshold=thr,
        v_reset=zeros.copy(),
    )


def _norse_node(nir: Any, m: Any, where: str, shape: tuple[int, ...], dt: float, dtype: torch.dtype) -> Any:
    p = m.p
    dt_n = float(getattr(m, "dt", 0.001))
    v_leak = torch.as_tensor(p.v_leak).detach()
    if not bool((v_leak == 0).all()):
        raise ValueError(
            f"{where}: v_leak={v_leak.tolist()} is also Norse's initial membrane, while NIR "
            f"consumers start at 0; export needs v_leak=0"
        )
    thr = _full(p.v_th, shape, dtype)
    reset = _full(p.v_reset, shape, dtype)
    leak_mem = dt_n * torch.as_tensor(p.tau_mem_inv).detach().to(dtype)  # dt/tau_mem
    tau_mem = _full(dt / leak_mem, shape, dtype)
    ones = _full(1.0, shape, dtype)
    if type(m).__name__ == "LIFBoxCell":
        return nir.LIF(tau=tau_mem, r=ones, v_leak=_full(0.0, shape, dtype), v_threshold=thr, v_reset=reset)
    leak_syn = dt_n * torch.as_tensor(p.tau_syn_inv).detach().to(dtype)  # dt/tau_syn
    tau_syn = _full(dt / leak_syn, shape, dtype)
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=ones,
        v_leak=_full(0.0, shape, dtype),
        v_threshold=thr,
        v_reset=reset,
        w_in=tau_syn / dt,
    )


# ------------------------------------------------------------------------------------------------
# The graph builder
# ------------------------------------------------------------------------------------------------

_CONTAINER_PACKAGES = ("torch.", "norse.", "spikingjelly.")


def _is_chain(module: nn.Module) -> bool:
    """An ``nn.Sequential`` whose forward applies its children in order (torch's, Norse's
    ``SequentialState``, SpikingJelly's step-mode containers)."""
    if not isinstance(module, nn.Sequential):
        return False
    cls = type(module)
    return cls.forward is nn.Sequential.forward or cls.__module__.startswith(_CONTAINER_PACKAGES)


@dataclass
class _Value:
    """A per-sample signal: the sum of the outputs of ``terms`` (node names), of shape ``shape``."""

    terms: list[str]
    shape: tuple[int, ...]


class _Builder:
    def __init__(self, nir: Any, dt: float, dtype: torch.dtype, shapes: dict[nn.Module, Any]) -> None:
        self.nir = nir
        self.dt = dt
        self.dtype = dtype
        self.shapes = shapes
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.sources: dict[str, str] = {}  # graph node -> qualified module name in the model

    # -------------------------------------------------------------- helpers
    def add(
        self, name: str, node: Any, inputs: _Value, shape: tuple[int, ...], module_name: str | None = None
    ) -> _Value:
        key = (name or "node").replace(".", "_")
        base, i = key, 1
        while key in self.nodes:
            key = f"{base}_{i}"
            i += 1
        self.nodes[key] = node
        self.edges.extend((src, key) for src in inputs.terms)
        if module_name is not None:
            self.sources[key] = module_name
        return _Value([key], tuple(shape))

    def shape_of(self, module: nn.Module, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if module not in self.shapes:
            raise ValueError(
                f"model: {_describe(name, module)} was not called in the traced forward pass; "
                f"export follows the modules the model runs"
            )
        found = self.shapes[module]
        if isinstance(found, ValueError):
            raise found
        return found

    def array(self, t: Tensor | None, shape: tuple[int, ...] | None = None) -> Any:
        if t is None:
            assert shape is not None
            return torch.zeros(shape, dtype=self.dtype).numpy()
        return t.detach().to("cpu", self.dtype).contiguous().clone().numpy()

    # -------------------------------------------------------------- layers
    @staticmethod
    def _bn_scale(bn: Any, where: str) -> tuple[Tensor, Tensor]:
        """Eval-mode BatchNorm as ``y = x * scale + shift`` (per channel, float64)."""
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(
                f"{where}: BatchNorm without running statistics (track_running_stats=False) "
                f"normalises with the batch's statistics, which a chip cannot fold"
            )
        var = bn.running_var.detach().to(torch.float64)
        mean = bn.running_mean.detach().to(torch.float64)
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.detach().to(torch.float64)
        shift = -mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias.detach().to(torch.float64)
        return scale, shift

    def conv(self, name: str, conv: nn.Conv2d, bn: tuple[str, nn.Module] | None, x: _Value) -> _Value:
        where = _describe(name, conv)
        if type(conv).__name__ != "Conv2d" and not _class_is(conv, "spikingjelly", "Conv2d"):
            raise TypeError(f"{where}: export maps nn.Conv2d (and SpikingJelly's layer.Conv2d) only")
        if conv.padding_mode != "zeros":
            raise ValueError(f"{where}: padding_mode={conv.padding_mode!r}; NIR's Conv2d pads with zeros")
        padding = conv.padding
        if isinstance(padding, str):
            if padding != "valid":
                raise ValueError(f"{where}: padding={padding!r}; pass explicit padding for NIR")
            padding = (0, 0)
        _, out_shape = self.shape_of(conv, name)
        weight = conv.weight.detach().to(torch.float64)
        if conv.bias is not None:
            bias = conv.bias.detach().to(torch.float64)
        else:
            bias = torch.zeros(conv.out_channels, dtype=torch.float64)
        if bn is not None:
            scale, shift = self._bn_scale(bn[1], _describe(*bn))
            weight = weight * scale.view(-1, 1, 1, 1)
            bias = bias * scale + shift
            _, out_shape = self.shape_of(bn[1], bn[0])
        in_shape, _ = self.shape_of(conv, name)
        node = self.nir.Conv2d(
            input_shape=tuple(int(s) for s in in_shape[1:]),
            weight=self.array(weight),
            stride=tuple(int(s) for s in conv.stride),
            padding=tuple(int(p) for p in padding),
            dilation=tuple(int(d) for d in conv.dilation),
            groups=int(conv.groups),
            bias=self.array(bias),
        )
        return self.add(name, node, x, out_shape, name)

    def linear(self, name: str, fc: nn.Linear, bn: tuple[str, nn.Module] | None, x: _Value) -> _Value:
        where = _describe(name, fc)
        if len(x.shape) != 1:
            raise ValueError(
                f"{where}: receives per-sample shape {x.shape}; NIR's Affine takes vectors, so "
                f"flatten before the Linear layer"
            )
        weight = fc.weight.detach().to(torch.float64)
        bias = fc.bias.detach().to(torch.float64) if fc.bias is not None else None
        out_shape = (int(fc.out_features),)
        if bn is not None:
            scale, shift = self._bn_scale(bn[1], _describe(*bn))
            weight = weight * scale.view(-1, 1)
            bias = (bias if bias is not None else torch.zeros_like(scale)) * scale + shift
        if bias is None:
            node = self.nir.Linear(weight=self.array(weight))
        else:
            node = self.nir.Affine(weight=self.array(weight), bias=self.array(bias))
        return self.add(name, node, x, out_shape, name)

    def flatten(self, name: str, module: nn.Module, x: _Value) -> _Value:
        ps_in, ps_out = self.shape_of(module, name)
        if ps_in == ps_out:
            return x  # flattens only batch/time dims (or nothing): per sample an identity
        n = 0
        while n < min(len(ps_in), len(ps_out)) and ps_in[n] == ps_out[n]:
            n += 1
        m = 0
        while m < min(len(ps_in), len(ps_out)) - n and ps_in[-1 - m] == ps_out[-1 - m]:
            m += 1
        start, end = n, len(ps_in) - 1 - m
        if len(ps_out) != len(ps_in) - (end - start) or math.prod(ps_in[start : end + 1]) != ps_out[start]:
            raise ValueError(
                f"{_describe(name, module)}: turns per-sample shape {ps_in} into {ps_out}, which "
                f"is not a flatten of consecutive dimensions"
            )
        node = self.nir.Flatten(
            input_type={"input": self.nir_shape(ps_in)},
            start_dim=start,
            end_dim=end if end != len(ps_in) - 1 else -1,
        )
        return self.add(name, node, x, ps_out, name)

    def nir_shape(self, shape: tuple[int, ...]) -> Any:
        import numpy as np

        return np.array(shape, dtype=np.int64)

    def pool(self, name: str, module: Any, x: _Value) -> _Value:
        where = _describe(name, module)
        ps_in, ps_out = self.shape_of(module, name)
        if len(ps_in) != 3:
            raise ValueError(f"{where}: expected per-sample [C, H, W], got {ps_in}")
        if isinstance(module, nn.AdaptiveAvgPool2d):
            (h, w), (oh, ow) = ps_in[1:], ps_out[1:]
            if h % oh or w % ow:
                raise ValueError(
                    f"{where}: adaptive pooling from {(h, w)} to {(oh, ow)} has windows of unequal "
                    f"size; NIR's AvgPool2d needs a fixed kernel"
                )
            kernel, stride = (h // oh, w // ow), (h // oh, w // ow)
        else:
            pad = module.padding if isinstance(module.padding, tuple) else (module.padding,) * 2
            if any(int(p) for p in pad) or module.ceil_mode or module.divisor_override is not None:
                raise ValueError(
                    f"{where}: padding, ceil_mode and divisor_override change what is averaged; "
                    f"NIR's AvgPool2d is written without them"
                )
            k = module.kernel_size
            kernel = k if isinstance(k, tuple) else (k, k)
            stride = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
        return self.avgpool(name, x, ps_out, kernel, stride, name)

    def avgpool(
        self, name: str, x: _Value, out_shape: tuple[int, ...], kernel: Any, stride: Any,
        module_name: str | None,
    ) -> _Value:  # fmt: skip
        node = self.nir.AvgPool2d(
            kernel_size=self.nir_shape(tuple(int(k) for k in kernel)),
            stride=self.nir_shape(tuple(int(s) for s in stride)),
            padding=self.nir_shape((0, 0)),
        )
        return self.add(name, node, x, out_shape, module_name)

    def neuron(self, name: str, module: nn.Module, x: _Value) -> _Value | None:
        node = _neuron_node(self.nir, name, module, x.shape, self.dt, self.dtype)
        if node is None:
            return None
        return self.add(name, node, x, x.shape, name)

    # -------------------------------------------------------------- structure
    def chain(self, items: list[tuple[str, nn.Module]], x: _Value) -> _Value:
        flat = list(self._flatten_items(items))
        i = 0
        while i < len(flat):
            name, module = flat[i]
            nxt = flat[i + 1] if i + 1 < len(flat) else None
            bn = nxt if nxt is not None and isinstance(nxt[1], nn.modules.batchnorm._BatchNorm) else None
            if isinstance(module, nn.Conv2d):
                x = self.conv(name, module, bn, x)
                i += 2 if bn is not None else 1
                continue
            if isinstance(module, nn.Linear):
                x = self.linear(name, module, bn, x)
                i += 2 if bn is not None else 1
                continue
            x = self.module(name, module, x)
            i += 1
        return x

    def _flatten_items(self, items: list[tuple[str, nn.Module]]) -> Iterator[tuple[str, nn.Module]]:
        for name, module in items:
            if _is_chain(module):
                yield from self._flatten_items(
                    [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
                )
            else:
                yield name, module

    def module(self, name: str, module: nn.Module, x: _Value) -> _Value:
        from ..models.msresnet import MSBlock

        where = _describe(name, module)
        if isinstance(module, MSBlock):
            return self.block(name, module, x)
        if isinstance(module, (nn.Identity, nn.Dropout)):
            return x  # exact identities in eval mode
        if isinstance(module, nn.Flatten):
            return self.flatten(name, module, x)
        if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            return self.pool(name, module, x)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError(
                f"{where}: a BatchNorm must follow a Conv2d or Linear layer to be folded into it; "
                f"NIR has no normalisation node"
            )
        out = self.neuron(name, module, x)
        if out is not None:
            return out
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return self.chain([(name, module)], x)
        _unsupported(name, module)

    def block(self, name: str, block: Any, x: _Value) -> _Value:
        """MS-ResNet block: ``BN2(Conv2(LIF(BN1(Conv1(LIF(x)))))) + shortcut(x)``."""
        p = f"{name}." if name else ""
        y = self.chain(
            [
                (p + "lif1", block.lif1),
                (p + "conv1", block.conv1),
                (p + "bn1", block.bn1),
                (p + "lif2", block.lif2),
                (p + "conv2", block.conv2),
                (p + "bn2", block.bn2),
            ],
            x,
        )
        if isinstance(block.shortcut, nn.Identity):
            short = x
        else:
            short = self.chain([(p + "shortcut", block.shortcut)], x)
        if short.shape != y.shape:
            raise ValueError(f"{_describe(name, block)}: branch {y.shape} and shortcut {short.shape} differ")
        return _Value(y.terms + short.terms, y.shape)

    def validate(self, items: list[tuple[str, nn.Module]]) -> None:
        """Refuse unsupported modules and settings before the traced run (which they may break)."""
        from ..models.msresnet import MSBlock

        flat = list(self._flatten_items(items))
        for i, (name, module) in enumerate(flat):
            if isinstance(module, MSBlock):
                self.validate([(f"{name}.lif1", module.lif1), (f"{name}.lif2", module.lif2)])
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                if i == 0 or not isinstance(flat[i - 1][1], (nn.Conv2d, nn.Linear)):
                    self.module(name, module, _Value([], ()))  # raises the BatchNorm message
            elif not isinstance(module, (nn.Conv2d, nn.Linear, nn.Identity, nn.Dropout, nn.Flatten,
                                         nn.AvgPool2d, nn.AdaptiveAvgPool2d)):  # fmt: skip
                if _neuron_node(self.nir, name, module, (1,), self.dt, self.dtype) is None:
                    _unsupported(name, module)


def _unsupported(name: str, module: nn.Module) -> NoReturn:
    where = _describe(name, module)
    if any(True for _ in module.children()):
        raise TypeError(
            f"{where}: its forward is its own code, which export cannot read; export follows "
            f"nn.Sequential chains (also Norse's SequentialState and SpikingJelly's "
            f"containers), MSBlock and the supported layers and neurons"
        )
    raise TypeError(
        f"{where}: no NIR mapping; export supports Conv2d, Linear, BatchNorm (folded), "
        f"Flatten, AvgPool2d/AdaptiveAvgPool2d, Identity/Dropout, gac_coding.LIF, snnTorch "
        f"Leaky, SpikingJelly LIFNode/IFNode, Norse LIFCell/LIF/LIFBoxCell and MSBlock"
    )


# ------------------------------------------------------------------------------------------------
# The export object and to_nir
# ------------------------------------------------------------------------------------------------


@dataclass
class NIRExport:
    """Result of :func:`to_nir`.

    Attributes:
        host: :class:`HostEncoder`, input -> code ``[T, B, C, H, W]`` (what crosses to the chip).
        graph: the backbone as a ``nir.NIRGraph``; per-sample shapes; its ``Output`` gives the
            logits of each step.
        dt: the integration step the graph's time constants were written for.
        T: time steps of the host's code.
        input_shape, output_shape: per-sample shapes of the graph's input and output.
        sources: graph node -> qualified name of the model module it comes from.
        model_name: the model's registered name when known (``None`` otherwise).
    """

    host: HostEncoder
    graph: Any
    dt: float
    T: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    sources: dict[str, str] = field(default_factory=dict)
    model_name: str | None = None

    def run(self, x: Tensor) -> Tensor:
        """Per-step logits ``[T, B, ...]`` of the host followed by the graph (:func:`simulate`)."""
        with torch.no_grad():
            code = self.host(x)
        return simulate(self.graph, code, self.dt)[0]

    def summary(self, x: Tensor | None = None) -> dict[str, Any]:
        """Nodes per type, neurons, synaptic weights; with an input also the energy split."""
        counts: dict[str, int] = {}
        neurons = weights = 0
        for node in self.graph.nodes.values():
            kind = type(node).__name__
            counts[kind] = counts.get(kind, 0) + 1
            if kind in _NEURON_TYPES:
                neurons += int(node.v_threshold.size)
            if kind in _SYNAPTIC_TYPES:
                weights += int(node.weight.size)
        out: dict[str, Any] = {
            "nodes": dict(sorted(counts.items())),
            "edges": len(self.graph.edges),
            "neurons": neurons,
            "synapses": weights,
            "dt": self.dt,
            "T": self.T,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "code": "direct (real-valued U)"
            if self.host.direct
            else ("binary spikes" if self.host.binarize else "gated (graded spikes)"),
        }
        if x is not None:
            out.update(self.energy(x))
        return out

    def energy(self, x: Tensor) -> dict[str, float]:
        """Operations per image: host MACs (stem, its BatchNorm, attention) and chip operations.

        The chip's synaptic operations are counted from the graph's own run: a ``Conv2d``,
        ``Affine`` or ``Linear`` node fed binary spikes costs its exact synaptic operations
        (:func:`gac_coding.energy.exact_synops`), one fed real values (the membrane shortcut's
        1x1 convolution, the head after average pooling, a graded code) costs dense
        multiply-accumulates (``chip_mac``). Host counts are executed operations
        (:func:`gac_coding.energy.estimate_energy` of the host; the static fast path runs the stem
        once per image), and ``host_mac_norm`` the stem BatchNorm's affine MACs.
        """
        from ..energy import estimate_energy

        report = estimate_energy(self.host, x)
        B = int(report.totals["batch_size"])
        with torch.no_grad():
            code = self.host(x)
        _, ops = simulate(self.graph, code, self.dt, count_ops=True)
        return {
            "host_mac_per_image": report.totals["mac"] / B,
            "host_mac_paper_per_image": report.totals["mac_paper"] / B,
            "host_mac_norm_per_image": report.totals["mac_norm"] / B,
            "chip_synop_per_image": ops["synop"] / B,
            "chip_mac_per_image": ops["mac"] / B,
        }


def to_nir(
    model: nn.Module,
    example_input: Tensor,
    *,
    dt: float = DEFAULT_DT,
    binarize: bool | None = None,
) -> NIRExport:
    """Split ``model`` into a host encoder and a NIR graph of its spiking backbone.

    Args:
        model: an :class:`~gac_coding.models.MSResNet` (any registered MS-ResNet, ``gac=True`` or
            ``False``) or a :class:`~gac_coding.GACNet` whose backbone is an ``nn.Sequential``
            chain (torch, Norse's ``SequentialState``, SpikingJelly containers) of supported
            layers and neurons (module docstring). Exported as in eval mode: BatchNorm uses its
            running statistics.
        example_input: an input the model accepts (``[B, C, H, W]`` or ``[T, B, C, H, W]``); it
            fixes the spatial size of the graph.
        dt: the integration step (seconds) the NIR time constants are written for.
        binarize: ``None`` keeps the encoder's setting; ``True`` sends binary spikes
            ``[gated > 0.5]`` to the chip, ``False`` the graded gated code.

    Returns:
        :class:`NIRExport` with ``host``, ``graph``, ``dt``.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> from gac_coding.export import to_nir
        >>> model = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1).eval()
        >>> exp = to_nir(model, torch.rand(1, 1, 8, 8))
        >>> exp.input_shape, exp.output_shape
        ((16, 8, 8), (3,))
    """
    nir = _require_nir()
    from .._measure import measuring
    from ..adapters import GACNet
    from ..models.msresnet import MSResNet

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an MSResNet or a GACNet, got {type(model).__name__}")
    if not isinstance(example_input, Tensor):
        raise TypeError(f"example_input: expected a torch.Tensor, got {type(example_input).__name__}")
    dt = _check_dt(dt)
    if binarize is not None and not isinstance(binarize, bool):
        raise TypeError(f"binarize: expected a bool or None, got {type(binarize).__name__}")
    if isinstance(model, MSResNet):
        host = HostEncoder(model.encoder, binarize=binarize, channels_last=model.channels_last)
    elif isinstance(model, GACNet):
        host = HostEncoder(model.encoder, binarize=binarize)
    else:
        raise TypeError(
            f"model: expected an MSResNet (gac_coding.models) or a GACNet (gac_coding.wrap), got "
            f"{type(model).__name__}"
        )
    ref = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.float32

    # one traced run at a batch size that cannot be mistaken for T or T*B
    T = host.T
    B = T + 1
    static = example_input.dim() == 4
    batch_dim = 0 if static else 1
    if example_input.dim() not in (4, 5) or example_input.shape[batch_dim] < 1:
        raise ValueError(
            f"example_input: expected [B, C, H, W] or [T, B, C, H, W], got shape {tuple(example_input.shape)}"
        )
    idx = torch.arange(B, device=example_input.device) % example_input.shape[batch_dim]
    x = example_input.index_select(batch_dim, idx)

    work: Any = model if binarize is None else _with_binarize(model, binarize)
    builder = _Builder(nir, dt, dtype, {})
    if isinstance(work, MSResNet):
        items = [(f"stages.{s}", stage) for s, stage in enumerate(work.stages)]
        builder.validate([*items, ("head_lif", work.head_lif)])
    else:
        backbone = work.backbone
        if _is_chain(backbone):
            items = [(f"backbone.{n}", m) for n, m in backbone.named_children()]
        else:
            items = [("backbone", backbone)]
        builder.validate(items)

    host.eval()
    with measuring(work):
        code = host(x)
        shapes = _trace_shapes(work, x, T, B)
    in_shape = tuple(int(s) for s in code.shape[2:])
    builder.shapes = shapes
    import numpy as np

    builder.nodes["input"] = nir.Input(input_type={"input": np.array(in_shape, dtype=np.int64)})
    x_val = _Value(["input"], in_shape)
    y = builder.chain(items, x_val)
    if isinstance(work, MSResNet):
        head = builder.neuron("head_lif", work.head_lif, y)
        assert head is not None
        y = head
        c, h, w = y.shape
        y = builder.avgpool("pool", y, (c, 1, 1), (h, w), (h, w), None)
        flat = nir.Flatten(input_type={"input": np.array((c, 1, 1), dtype=np.int64)}, start_dim=0, end_dim=-1)
        y = builder.add("flatten", flat, y, (c,))
        y = builder.linear("fc", work.fc, None, y)
    builder.nodes["output"] = nir.Output(output_type={"output": np.array(y.shape, dtype=np.int64)})
    builder.edges.extend((src, "output") for src in y.terms)
    graph = nir.NIRGraph(
        nodes=builder.nodes,
        edges=builder.edges,
        metadata={"dt": dt, "T": T, "producer": "gac-coding"},
    )
    return NIRExport(
        host=host,
        graph=graph,
        dt=dt,
        T=T,
        input_shape=in_shape,
        output_shape=tuple(y.shape),
        sources=builder.sources,
    )


def _with_binarize(model: nn.Module, binarize: bool) -> nn.Module:
    """A copy of ``model`` whose encoder emits (or not) binary spikes, for tracing shapes."""
    from ..models.msresnet import DirectEncoder

    copied = copy.deepcopy(model)
    enc: Any = copied.encoder
    if not isinstance(enc, DirectEncoder):
        enc.binarize = binarize
    return copied


# ------------------------------------------------------------------------------------------------
# Running a graph (the library's NIR simulator: energy counts and quick checks)
# ------------------------------------------------------------------------------------------------


def _topological(graph: Any) -> list[str]:
    incoming = {name: 0 for name in graph.nodes}
    for _, dst in graph.edges:
        incoming[dst] += 1
    ready = [n for n, k in incoming.items() if k == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for src, dst in graph.edges:
            if src == name:
                incoming[dst] -= 1
                if incoming[dst] == 0:
                    ready.append(dst)
    if len(order) != len(graph.nodes):
        raise ValueError("graph: has a cycle; simulate runs feed-forward graphs only")
    return order


def _synaptic_module(node: Any, dtype: torch.dtype) -> nn.Module:
    kind = type(node).__name__
    w = torch.as_tensor(node.weight).to(dtype)
    if kind == "Conv2d":
        pad: Any = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in node.padding)
        kernel: Any = tuple(w.shape[2:])  # two ints: NIR's Conv2d is 2-D
        stride: Any = tuple(int(s) for s in node.stride)
        dilation: Any = tuple(int(d) for d in node.dilation)
        m: nn.Module = nn.Conv2d(
            w.shape[1] * int(node.groups), w.shape[0], kernel, stride=stride, padding=pad,
            dilation=dilation, groups=int(node.groups), bias=True,
        )  # fmt: skip
        m.bias = nn.Parameter(torch.as_tensor(node.bias).to(dtype), requires_grad=False)
    else:
        m = nn.Linear(w.shape[1], w.shape[0], bias=kind == "Affine")
        if kind == "Affine":
            m.bias = nn.Parameter(torch.as_tensor(node.bias).to(dtype), requires_grad=False)
    m.weight = nn.Parameter(w, requires_grad=False)
    return m.to(dtype)


def simulate(
    graph: Any, code: Tensor, dt: float, *, record: bool = False, count_ops: bool = False
) -> tuple[Tensor, dict[str, Any]]:
    """Run a feed-forward NIR graph for ``T`` steps, forward Euler at ``dt``, state from zero.

    ``code: [T, B, *input_shape]``; returns ``(output [T, B, *output_shape], extra)`` where
    ``extra`` holds, with ``record``, every node's outputs ``{name: [T, B, ...]}`` and, with
    ``count_ops``, ``"synop"`` and ``"mac"`` of the synaptic nodes (whole batch, all steps).
    Nodes: Input, Output, Conv2d, Affine, Linear, Scale, Flatten, AvgPool2d, SumPool2d (no
    padding), LIF, IF, CubaLIF with NIR's equations (module docstring).
    """
    dt = _check_dt(dt)
    if not isinstance(code, Tensor) or code.dim() < 2:
        raise ValueError(f"code: expected a tensor [T, B, ...], got {getattr(code, 'shape', type(code))}")
    with torch.no_grad():
        return _simulate(graph, code, dt, record, count_ops)


def _simulate(
    graph: Any, code: Tensor, dt: float, record: bool, count_ops: bool
) -> tuple[Tensor, dict[str, Any]]:
    from ..energy import dense_macs, exact_synops, is_binary

    order = _topological(graph)
    sources: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        sources[dst].append(src)
    dtype = code.dtype
    modules = {
        n: _synaptic_module(node, dtype).to(code.device)
        for n, node in graph.nodes.items()
        if type(node).__name__ in _SYNAPTIC_TYPES
    }
    params: dict[str, dict[str, Tensor]] = {}
    for n, node in graph.nodes.items():
        kind = type(node).__name__
        if kind in _NEURON_TYPES or kind == "Scale":
            fields = {
                "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
                "IF": ("r", "v_threshold", "v_reset"),
                "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
                "Scale": ("scale",),
            }[kind]
            params[n] = {f: torch.as_tensor(getattr(node, f)).to(code.device, dtype) for f in fields}
    state: dict[str, dict[str, Tensor]] = {}
    outputs: dict[str, list[Tensor]] = {n: [] for n in graph.nodes} if record else {}
    ops = {"synop": 0, "mac": 0}
    result: list[Tensor] = []
    out_name = next(n for n, node in graph.nodes.items() if type(node).__name__ == "Output")
    for t in range(code.shape[0]):
        values: dict[str, Tensor] = {}
        for n in order:
            node = graph.nodes[n]
            kind = type(node).__name__
            if kind == "Input":
                y = code[t]
            else:
                ins = [values[s] for s in sources[n]]
                if not ins:
                    raise ValueError(f"graph: node {n!r} has no input")
                x = ins[0]
                for other in ins[1:]:
                    x = x + other
                y = _node_step(n, node, kind, x, params.get(n), modules.get(n), state, dt)
                if count_ops and kind in _SYNAPTIC_TYPES:
                    if is_binary(x):
                        ops["synop"] += exact_synops(modules[n], x)
                    else:
                        ops["mac"] += dense_macs(modules[n], x, y)
            values[n] = y
            if record:
                outputs[n].append(y)
        result.append(values[out_name])
    extra: dict[str, Any] = dict(ops) if count_ops else {}
    if record:
        extra["outputs"] = {n: torch.stack(v) for n, v in outputs.items() if v}
    return torch.stack(result), extra


def _node_step(
    name: str, node: Any, kind: str, x: Tensor, p: dict[str, Tensor] | None,
    module: nn.Module | None, state: dict[str, dict[str, Tensor]], dt: float,
) -> Tensor:  # fmt: skip
    if kind == "Output":
        return x
    if kind in _SYNAPTIC_TYPES:
        assert module is not None
        return module(x)
    if kind == "Scale":
        assert p is not None
        return x * p["scale"]
    if kind == "Flatten":
        start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return x.flatten(start, end)
    if kind in ("AvgPool2d", "SumPool2d"):
        if any(int(v) for v in node.padding):
            raise ValueError(f"graph: {kind} {name!r} has padding, which simulate does not run")
        k = tuple(int(v) for v in node.kernel_size)
        s = tuple(int(v) for v in node.stride)
        return F.avg_pool2d(x, k, s, divisor_override=1 if kind == "SumPool2d" else None)
    if kind in _NEURON_TYPES:
        assert p is not None
        st = state.setdefault(name, {"v": torch.zeros_like(x), "i": torch.zeros_like(x)})
        v = st["v"]
        if kind == "IF":
            v = v + dt * p["r"] * x
        elif kind == "LIF":
            v = v + dt / p["tau"] * ((p["v_leak"] - v) + p["r"] * x)
        else:  # CubaLIF: current first, then the membrane with the updated current
            i = st["i"] + dt / p["tau_syn"] * (-st["i"] + p["w_in"] * x)
            st["i"] = i
            v = v + dt / p["tau_mem"] * ((p["v_leak"] - v) + p["r"] * i)
        z = (v > p["v_threshold"]).to(x.dtype)
        st["v"] = torch.where(z > 0, p["v_reset"], v)
        return z
    raise ValueError(f"graph: node {name!r} of type {kind} is not supported by simulate")


# ------------------------------------------------------------------------------------------------
# Saving (the command line)
# ------------------------------------------------------------------------------------------------


def save_nir_export(exp: NIRExport, out: str | os.PathLike[str], config: dict[str, Any]) -> dict[str, Path]:
    """Write ``backbone.nir``, ``host.safetensors`` and ``host.json`` (``config`` + export facts) to ``out``.

    ``config`` must say how to rebuild the host's model (``create_model`` arguments); see
    :func:`load_host`.
    """
    nir = _require_nir()
    from ..train.checkpoint import atomic_write, save_safetensors

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "graph": folder / "backbone.nir",
        "weights": folder / "host.safetensors",
        "config": folder / "host.json",
    }
    tmp = folder / ".backbone.nir.tmp"
    nir.write(tmp, exp.graph)
    os.replace(tmp, paths["graph"])
    save_safetensors(exp.host.state_dict(), paths["weights"])
    payload = dict(config)
    payload.update(
        dt=exp.dt,
        T=exp.T,
        binarize=exp.host.binarize,
        direct=exp.host.direct,
        channels_last=exp.host.channels_last,
        code_shape=list(exp.input_shape),
        output_shape=list(exp.output_shape),
    )
    text = json.dumps(payload, indent=2) + "\n"
    atomic_write(paths["config"], lambda fh: fh.write(text.encode()))
    return paths


def load_host(folder: str | os.PathLike[str]) -> HostEncoder:
    """Rebuild the :class:`HostEncoder` written by :func:`save_nir_export` (``gac-coding export``),
    with the encoder options (``temporal_attention``, ``ta_bias``, ``ta_activation``, ``ta_source``,
    ``gate``) recorded under ``encoder_options`` in ``host.json``."""
    from safetensors.torch import load_file

    from ..models import create_model

    folder = Path(folder)
    config = json.loads((folder / "host.json").read_text())
    options = config.get("encoder_options") or {}  # a GAC encoder's variant (none: the paper's)
    model = create_model(
        config["model"], num_classes=config.get("num_classes"), T=config["T"],
        gac=not config["direct"], in_channels=config["in_channels"], **options,
    )  # fmt: skip
    host = HostEncoder(
        model.encoder,  # type: ignore[arg-type]
        binarize=None if config["direct"] else bool(config["binarize"]),
        channels_last=bool(config["channels_last"]),
    )
    host.load_state_dict(load_file(str(folder / "host.safetensors")))
    return host.eval()
