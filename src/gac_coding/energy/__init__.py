"""Energy in the accounting of the paper, exact synaptic operations, and a spike-driven check.

The convention of this line of work (docs/design/energy.md §1): ``E = E_MAC * MACs + E_AC * ACs`` with
``E_MAC = 4.6 pJ`` and ``E_AC = 0.9 pJ`` (45 nm, 32-bit float; Horowitz, ISSCC 2014). A convolution
or linear layer whose input is real-valued costs multiply-accumulates (its dense FLOP count); one
whose input is binary spikes costs accumulates. The paper approximates the accumulates of a layer by
``FLOPs x input firing rate`` per step; this module also counts them exactly (each input spike times
the weights it reaches, so borders, padding and stride are accounted for).

:func:`estimate_energy` runs forward passes of any model without gradients, on one input tensor or
on every batch of a data loader (or any iterable of batches), and hooks every ``Conv*`` /
``ConvTranspose*`` / ``Linear`` module; over several batches the counts add up and per-sample
figures divide the totals by the number of samples. Two accountings are reported:

* **executed**: what the forward pass really computed. The GAC encoder's static fast path runs the
  stem convolution and the spatial-channel attention once per image, not ``T`` times.
* **paper**: the per-step accounting of the paper, where every layer is counted at every step, so
  the layers of a static-path encoder are multiplied by ``T``.

Example:
    >>> import torch, gac_coding as gac
    >>> from gac_coding.energy import estimate_energy
    >>> enc = gac.GACEncoder(in_channels=3, out_channels=8, T=4)
    >>> report = estimate_energy(enc, torch.rand(2, 3, 8, 8))
    >>> report.totals["mac"] < report.totals["mac_paper"]       # fast path: stem runs once, not T times
    True
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import integer, real
from .._deprecated import moved_names
from .._measure import first_tensor, measuring, reset_framework_state
from .counts import dense_macs, exact_synops, is_binary
from .report import COUNT_KEYS, EnergyReport, LayerEnergy

__all__ = [
    "E_AC_PJ",
    "E_MAC_PJ",
    "EnergyReport",
    "LayerEnergy",
    "dense_macs",
    "estimate_energy",
    "exact_synops",
    "is_binary",
    "calibrate_batchnorm",
    "spikingjelly_counts",
]

E_MAC_PJ = 4.6
"""Energy of one 32-bit float multiply-accumulate at 45 nm, in pJ (Horowitz, ISSCC 2014)."""
E_AC_PJ = 0.9
"""Energy of one 32-bit float accumulate at 45 nm, in pJ (Horowitz, ISSCC 2014)."""

_CONV = nn.modules.conv._ConvNd
_SYNAPTIC = (_CONV, nn.Linear)


@functools.lru_cache(maxsize=64)
def _input_name(cls: Any) -> str | None:
    """The name of the first argument of ``cls.forward`` after ``self`` (``input`` for a Linear or
    a convolution, ``x`` for an encoder), or ``None`` where it has none."""
    try:
        parameters = list(inspect.signature(cls.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    return parameters[0].name if parameters else None


def _unbatched_rank(module: nn.Module) -> int:
    """The rank of one sample's input to a synaptic layer: 1 for a Linear, the kernel's
    dimensions + 1 for a convolution."""
    return len(module.kernel_size) + 1 if isinstance(module, _CONV) else 1  # type: ignore[arg-type]


def _input_of(module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """What a forward hook sees as the module's input: its first positional argument, or the
    keyword argument of that name (``fc(input=h)``, ``encoder(x=image)``); ``None`` if neither."""
    if args:
        return args[0]
    name = _input_name(type(module))  # type: ignore[arg-type]  # classes hash by identity
    return kwargs.get(name) if name is not None else None


_NORM = nn.modules.batchnorm._BatchNorm


# ------------------------------------------------------------------------------------------------
# estimate_energy
# ------------------------------------------------------------------------------------------------


def _check_energy_cost(name: str, value: object) -> float:
    return real(name, value, 0, what="a finite energy in pJ")


def _batch_input(item: object, index: int) -> Tensor:
    """The input of one batch of an iterable: the tensor, or the first item of ``(x, y, ...)``."""
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    got = type(item).__name__
    if isinstance(item, (tuple, list)):
        got = f"a {got} whose first item is " + (type(item[0]).__name__ if item else "missing")
    raise TypeError(
        f"x: batch {index} is {got}; expected a tensor or an (input, target) tuple or list "
        f"whose first item is the input tensor"
    )


def _check_finite(x: Tensor, where: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"x: {where}contains NaN or infinite values")


class _Shapes:
    """Batches must have one shape up to a single dimension (the batch dimension, which a data
    loader's last batch shrinks), the same dimension in every batch."""

    def __init__(self) -> None:
        self.first: tuple[int, ...] | None = None
        self.free: int | None = None  # the dimension allowed to vary, once one has

    def check(self, x: Tensor, index: int) -> None:
        shape = tuple(x.shape)
        if self.first is None:
            self.first = shape
            return
        if len(shape) == len(self.first):
            differ = [d for d, (a, b) in enumerate(zip(shape, self.first, strict=True)) if a != b]
            if not differ:
                return
            if len(differ) == 1 and self.free in (None, differ[0]):
                self.free = differ[0]
                return
        raise ValueError(
            f"x: batch {index} has shape {list(shape)}, batch 0 has {list(self.first)}; every batch "
            f"must have the same shape but for its batch dimension"
            + (f" (dimension {self.free})" if self.free is not None else "")
        )


def _check_arguments(
    model: object, x: object, e_mac_pj: object, e_ac_pj: object, batch_size: object
) -> tuple[bool, float, float]:
    """The argument checks of :func:`estimate_energy`: whether ``x`` is one tensor (rather than an
    iterable of batches), and the two energies."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    single = isinstance(x, Tensor)
    if not single and (isinstance(x, (str, bytes, Mapping)) or not isinstance(x, Iterable)):
        raise TypeError(
            f"x: expected a tensor, a DataLoader or an iterable of batches (tensors or (input, "
            f"target) pairs), got {type(x).__name__}"
        )
    if single:
        _check_finite(x, "")  # type: ignore[arg-type]
    e_mac = _check_energy_cost("e_mac_pj", e_mac_pj)
    e_ac = _check_energy_cost("e_ac_pj", e_ac_pj)
    integer("batch_size", batch_size, 1, allow_none=True)
    if batch_size is not None and not single:
        raise ValueError(
            "batch_size: applies to a single input tensor; with an iterable of batches the "
            "samples of each batch are counted"
        )
    return single, e_mac, e_ac


def estimate_energy(
    model: nn.Module,
    x: Tensor | Iterable[Any],
    *,
    e_mac_pj: float = E_MAC_PJ,
    e_ac_pj: float = E_AC_PJ,
    batch_size: int | None = None,
) -> EnergyReport:
    """Count operations and energy of ``model`` on ``x``: one tensor, or every batch of a data loader.

    Runs forward passes without gradients, in eval mode (BatchNorm uses its running statistics;
    the training flags are restored afterwards), each from fresh state (this library's modules
    reset per call; the state other frameworks keep in their modules, such as SpikingJelly's
    memories, is reset before every batch and after the last).
    Forward hooks on every convolution and linear module see each call's input and classify it:
    real-valued inputs cost dense multiply-accumulates, binary inputs cost exact synaptic
    operations (:func:`exact_synops`) and, in the paper's approximation, ``FLOPs x firing rate``
    accumulates. Operations done through ``torch.nn.functional`` without a module are not seen.

    Over several batches every count is summed over all of them, so the report is that of all
    their samples at once: a layer's ``firing_rate`` is its non-zero input entries over all batches
    divided by its input entries over all batches (batches weigh by their size), its accumulates
    are the sum of each call's ``FLOPs x firing rate``, and ``totals["energy_mj_per_sample"]`` is
    the total energy divided by the number of samples (``totals["samples"]``).

    Args:
        model: any ``nn.Module``: the paper's backbones, a ``GACNet`` from :func:`gac_coding.wrap`,
            a :class:`~gac_coding.GACEncoder`, a plain network.
        x: the input: one tensor, e.g. a static batch ``[B, C, H, W]`` or a sequence
            ``[T, B, C, H, W]``; or a ``DataLoader``, or any iterable of batches, each a tensor or
            an ``(input, target)`` tuple or list whose first item is the input (a list or tuple
            passed as ``x`` is an iterable of batches, not one ``(input, target)`` pair). All
            batches must have the same shape but for the batch dimension.
        e_mac_pj, e_ac_pj: energy per multiply-accumulate and per accumulate, in pJ.
        batch_size: samples in a single tensor ``x`` for the per-sample energy. By default, per
            batch: from the first :class:`~gac_coding.GACEncoder` call, else ``dim 1`` of
            time-major logits ``[T, B, K]``, else ``dim 0`` of the input. Only for one tensor.

    Returns:
        An :class:`EnergyReport`; ``report.totals["energy_mj"]`` is the paper's accounting.

    Raises:
        TypeError: ``x`` is neither a tensor nor an iterable, or a batch holds no input tensor.
        ValueError: no batches, batches of different shapes, non-finite values, bad costs.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> m = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
        >>> r = estimate_energy(m, torch.rand(1, 1, 8, 8))
        >>> r.layers[0].name, r.layers[0].role, r.layers[0].steps
        ('encoder.conv', 'stem', 2)
        >>> data = [(torch.rand(4, 1, 8, 8), torch.zeros(4)) for _ in range(3)]   # like a loader
        >>> r = estimate_energy(m, data)
        >>> r.totals["samples"], r.totals["batches"]
        (12, 3)
    """
    single, e_mac, e_ac = _check_arguments(model, x, e_mac_pj, e_ac_pj, batch_size)
    counter = _Counter(model)
    shapes = _Shapes()
    batches: Iterable[Any] = [x] if single else x  # type: ignore[list-item]
    with counter.attached(), measuring(model):
        for index, item in enumerate(batches):
            inp = _batch_input(item, index)
            if not single:
                _check_finite(inp, f"batch {index} ")
                shapes.check(inp, index)
                if index:
                    reset_framework_state(model)
            counter.start_batch()
            out = model(inp)
            counter.count_batch(first_tensor(out), inp, batch_size)
    if counter.batches == 0:
        raise ValueError("x: the iterable yielded no batches")
    return counter.report(e_mac, e_ac)


class _Counter:
    """The forward hooks of one :func:`estimate_energy` run, and what they counted."""

    def __init__(self, model: nn.Module) -> None:
        from ..coding import StemEncoder  # every coding's encoder

        self.model = model
        self.names = {module: name for name, module in model.named_modules()}
        self.encoders = [m for m in model.modules() if isinstance(m, StemEncoder)]
        #: every module inside an encoder -> that encoder
        self.owner: dict[nn.Module, nn.Module] = {}
        for enc in self.encoders:
            for sub in enc.modules():
                self.owner.setdefault(sub, enc)
        self.layers: dict[nn.Module, LayerEnergy] = {}
        self.encoder_static: dict[nn.Module, bool] = {}
        self.batch: int | None = None  # of the batch being run, as the encoder saw it
        self.unbatched_rank: int | None = None  # the rank of an unbatched input the stem saw
        self.T: int | None = None
        self.mac_norm = 0
        self.samples = 0
        self.batches = 0

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """The hooks on the model's encoders, synaptic layers and BatchNorms, inside the block."""
        handles = []
        try:
            for module in self.model.modules():
                if module in self.encoders:
                    handles.append(module.register_forward_pre_hook(self.encoder_pre_hook, with_kwargs=True))
                if isinstance(module, _SYNAPTIC):
                    handles.append(module.register_forward_hook(self.synaptic_hook, with_kwargs=True))
                elif isinstance(module, _NORM):
                    handles.append(module.register_forward_hook(self.norm_hook))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def start_batch(self) -> None:
        """Forget what the hooks saw of the previous batch's size."""
        self.batch = None
        self.unbatched_rank = None

    def role_of(self, module: nn.Module) -> str:
        enc = self.owner.get(module)
        if enc is not None:
            return "stem" if module is enc.conv else "attention"
        if not self.encoders and not self.layers:
            return "stem"  # the first layer of a model without encoder takes the raw input
        return "synaptic"

    def steps_of(self, module: nn.Module) -> int:
        enc = self.owner.get(module)
        if enc is None or not self.encoder_static.get(enc, False):
            return 1
        # the static fast path computes the stem and the spatial-channel attention once per image;
        # the temporal attention (an MLP, or 1-D convolutions over the T steps) is per sample anyway
        ta = getattr(getattr(enc, "gate", None), "ta", None)
        in_ta = ta is not None and any(module is m for m in ta.modules())
        return int(enc.T) if isinstance(module, _CONV) and not in_ta else 1  # type: ignore[arg-type]

    def encoder_pre_hook(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        inp = _input_of(module, args, kwargs)
        static = isinstance(inp, Tensor) and inp.dim() == 4
        # a coding that draws spike frames from a static image runs its stem on every frame
        self.encoder_static[module] = static and bool(getattr(module, "static_stem", True))
        if self.batch is None and isinstance(inp, Tensor) and inp.dim() in (4, 5):
            self.batch = int(inp.shape[0] if static else inp.shape[1])
            self.T = int(module.T)  # type: ignore[arg-type]

    def synaptic_hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
    ) -> None:
        inp = _input_of(module, args, kwargs)
        out_t = first_tensor(out)
        if not isinstance(inp, Tensor) or out_t is None:
            return
        layer = self.layers.get(module)
        if layer is None:
            layer = LayerEnergy(
                name=self.names.get(module, type(module).__name__),
                kind=type(module).__name__,
                part="encoder" if module in self.owner else "backbone",
                role=self.role_of(module),
                input_shape=tuple(inp.shape),
            )
            self.layers[module] = layer
        if layer.role == "stem" and module not in self.owner and inp.dim() == _unbatched_rank(module):
            self.unbatched_rank = inp.dim()  # a Linear given [F], a convolution [C, H, W]: one sample
        steps = self.steps_of(module)
        layer.steps = max(layer.steps, steps)
        layer.calls += 1
        flops = dense_macs(module, inp, out_t)
        nonzero = int(torch.count_nonzero(inp))
        layer._nonzero += nonzero
        layer._elements += int(inp.numel())
        layer.flops += flops
        binary = is_binary(inp)
        layer.binary_input = layer.binary_input and binary
        if binary and layer.role != "attention":
            rate = nonzero / max(1, inp.numel())
            layer.synop += exact_synops(module, inp)
            layer.ac_paper += flops * rate * steps
        else:
            layer.mac += flops
            layer.mac_paper += flops * steps

    def norm_hook(self, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        out_t = first_tensor(out)
        if getattr(module, "affine", False) and out_t is not None:
            self.mac_norm += int(out_t.numel())

    def count_batch(self, out_t: Tensor | None, x: Tensor, batch_size: int | None) -> None:
        """After one forward pass: add its samples (``batch_size``, else the encoder's batch,
        else 1 when ``x`` is the unbatched input of the first layer (a Linear's ``[F]``, a
        convolution's ``[C, H, W]``, whose output is not time-major logits), else ``dim 1`` of
        time-major logits, else ``dim 0`` of ``x``) and note ``T``."""
        unbatched = self.batch is None and (x.dim() == 0 or x.dim() == self.unbatched_rank)
        logits = out_t if not unbatched and out_t is not None and out_t.dim() == 3 else None  # [T, B, K]
        if batch_size is None:
            batch_size = self.batch
        if batch_size is None:
            if unbatched:
                batch_size = 1
            elif logits is not None:
                batch_size = int(logits.shape[1])
            else:
                batch_size = int(x.shape[0])
        if self.T is None and logits is not None:
            self.T = int(logits.shape[0])
        self.samples += batch_size
        self.batches += 1

    def report(self, e_mac: float, e_ac: float) -> EnergyReport:
        """The energies and totals of what the hooks counted."""
        T = 1 if self.T is None else self.T
        samples = self.samples

        pj_to_mj = 1e-9
        ordered = list(self.layers.values())
        for layer in ordered:
            layer.firing_rate = layer._nonzero / max(1, layer._elements)
            layer.energy_mj = (e_mac * layer.mac_paper + e_ac * layer.ac_paper) * pj_to_mj
            layer.energy_executed_mj = (e_mac * layer.mac + e_ac * layer.synop) * pj_to_mj
            layer.spike_driven = layer.binary_input or layer.role != "synaptic"

        totals: dict[str, Any] = {key: sum(getattr(ly, key) for ly in ordered) for key in COUNT_KEYS}
        totals["mac_norm"] = self.mac_norm
        totals["energy_mj_per_sample"] = totals["energy_mj"] / samples
        for part in ("encoder", "backbone"):
            totals[f"{part}_energy_mj"] = sum(ly.energy_mj for ly in ordered if ly.part == part)
        totals.update(
            samples=samples, batches=self.batches, batch_size=samples, T=T, e_mac_pj=e_mac, e_ac_pj=e_ac
        )
        flagged = [ly.name for ly in ordered if not ly.spike_driven]
        return EnergyReport(layers=ordered, totals=totals, non_spike_driven=flagged)


# ------------------------------------------------------------------------------------------------
# Cross-check with SpikingJelly's op counter
# ------------------------------------------------------------------------------------------------


def spikingjelly_counts(model: nn.Module, x: Tensor, *, include_norm: bool = False) -> dict[str, int]:
    """``counts`` of SpikingJelly's ``estimate_simple_energy`` on the same model and input, in eval mode.

    SpikingJelly classifies each convolution / matrix product at the dispatcher: a binary operand
    makes it synaptic operations (``synop``, exact weight uses), otherwise it is ``mac``. By default
    BatchNorm modules are excluded (``include_norm=False``), which makes its ``mac`` comparable
    with ``report.totals["mac"]``; with them, compare with ``mac + mac_norm``. Needs SpikingJelly.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(2, 3, 3)
        >>> spikingjelly_counts(conv, torch.rand(1, 2, 5, 5))["mac"] == estimate_energy(
        ...     conv, torch.rand(1, 2, 5, 5)).totals["mac"]
        True
    """
    from ..adapters.spikingjelly import op_counts

    with measuring(model):
        return op_counts(model, x, ignore=() if include_norm else (_NORM,))


# ------------------------------------------------------------------------------------------------
# BatchNorm statistics of an untrained model
# ------------------------------------------------------------------------------------------------


def calibrate_batchnorm(model: nn.Module, x: Tensor) -> None:
    """Set every BatchNorm's running statistics to those of one forward pass on ``x``.

    A freshly initialised model has running statistics (mean 0, variance 1) unrelated to its
    activations; in eval mode its deeper layers then barely fire, so an energy estimate says little.
    This runs ``model(x)`` once in training mode without gradients, with cumulative averaging, then
    restores the momentum and the training flags. Only for untrained models.

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm1d(2)
        >>> calibrate_batchnorm(bn, torch.tensor([[1.0, 4.0], [3.0, 8.0]]))
        >>> bn.running_mean.tolist()
        [2.0, 6.0]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    norms = [m for m in model.modules() if isinstance(m, _NORM)]
    saved = [(m, m.momentum) for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        with measuring(model, train=True):
            model(x)
    finally:
        for m, momentum in saved:
            m.momentum = momentum


# Names that moved (kept working, listed in gac_coding._deprecated; energy imports neither the
# models nor the CLI).
__getattr__ = moved_names(__name__)
