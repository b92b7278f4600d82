"""Temporal attention, spatial-channel attention and the gate of GAC (docs/design/encoder.md §1, stages 3-5).

``TA[t, b] = f(mean_{chw} U[t, b]) + f(max_{chw} U[t, b])`` with a bias-free MLP ``f`` that mixes the
``T`` values of one sample; ``SCA = Conv_k(ReLU(Conv_k(U_t)))``; the output is
``O = sigmoid(TA * SCA) * S`` where ``S = LIF(U)``.

:func:`gated_lif` runs the LIF and the gate in one autograd node over the whole sequence: it never
materialises the ``T``-fold copy of a static input, nor ``TA * SCA``, nor the surrogate gradient,
and its backward walks the steps once, producing the gradients of ``U``, ``TA`` and ``SCA``.

Variants (docs/design/encoder.md §7), options of :class:`GatedAttentionUnit` and the encoder, listed
in :data:`ATTENTION_OPTIONS` with the paper's value first: a temporal attention with biases
(``ta_bias``) or another activation (``ta_activation``), pooled from the LIF membrane instead of the
stem output (``ta_source="membrane"``), and gates that do not multiply ``TA`` by ``SCA``
(``gate="separate"``: ``sigmoid(TA) * sigmoid(SCA)``; ``gate="sum"``: ``sigmoid(TA + SCA)``). The
paper's configuration runs the fused op; the others run the backend's LIF op followed by torch
operations. The statistics of a gate (docs/design/encoder.md §8) are
:class:`gac_coding.coding.gate_stats.GateStatistics`, which the GAC encoder keeps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from ._checks import positive_int as _positive_int
from .ops import lean
from .ops.backends import BackendSetting, check_backend
from .ops.memory import MemorySetting, lean_active
from .ops.params import RECIPES, LIFParams, LIFSettings, SurrogateLike

__all__ = [
    "ATTENTION_OPTIONS",
    "GATES",
    "LEAKY_SLOPE",
    "TA_ACTIVATIONS",
    "TA_SOURCES",
    "TEMPORAL_ATTENTIONS",
    "ConvTemporalAttention",
    "GatedAttentionUnit",
    "SpatialChannelAttention",
    "TemporalAttention",
    "check_attention_option",
    "combine_gate",
    "gated_lif",
    "make_temporal_attention",
    "membrane_of",
]

#: The accepted values of ``temporal_attention=``.
TEMPORAL_ATTENTIONS: tuple[str, ...] = ("mlp", "conv")
#: The accepted values of ``ta_activation=``: the nonlinearity between the temporal attention's
#: two layers (``"relu"``: the paper's).
TA_ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "gelu")
#: What the temporal attention pools: ``"stem"`` (the paper's: ``U``) or ``"membrane"`` (the
#: encoder LIF's membrane ``h_t``, which changes over the steps even for a static image).
TA_SOURCES: tuple[str, ...] = ("stem", "membrane")
#: How ``TA`` and ``SCA`` make the gate: ``"product"`` (the paper's ``sigmoid(TA * SCA)``),
#: ``"separate"`` (``sigmoid(TA) * sigmoid(SCA)``), ``"sum"`` (``sigmoid(TA + SCA)``) or
#: ``"temporal"`` (``sigmoid(TA)``, one gain per step and sample: no spatial-channel attention).
GATES: tuple[str, ...] = ("product", "separate", "sum", "temporal")
#: Negative slope of ``ta_activation="leaky_relu"``.
LEAKY_SLOPE = 0.1

#: Every option of the attention and the gate with its accepted values, the paper's first (the
#: default). ``create_model``, ``gac.wrap``, ``gac-coding train`` and the checkpoints use this table.
ATTENTION_OPTIONS: dict[str, tuple[Any, ...]] = {
    "temporal_attention": TEMPORAL_ATTENTIONS,
    "ta_bias": (False, True),
    "ta_activation": TA_ACTIVATIONS,
    "ta_source": TA_SOURCES,
    "gate": GATES,
}


def check_attention_option(name: str, value: object) -> Any:
    """``value`` if it is an accepted value of the option ``name`` of :data:`ATTENTION_OPTIONS`.

    Raises ``TypeError`` (``ta_bias`` not a bool) or ``ValueError`` naming the option, the accepted
    values and what arrived.

    Example:
        >>> from gac_coding.attention import check_attention_option
        >>> check_attention_option("gate", "sum")
        'sum'
        >>> check_attention_option("gate", "max")
        Traceback (most recent call last):
        ValueError: gate: expected one of ['product', 'separate', 'sum', 'temporal'], got 'max'
    """
    if name not in ATTENTION_OPTIONS:
        raise ValueError(f"name: expected one of {list(ATTENTION_OPTIONS)}, got {name!r}")
    if name == "ta_bias":
        if not isinstance(value, bool):
            raise TypeError(f"ta_bias: expected a bool, got {type(value).__name__}")
        return value
    choices = ATTENTION_OPTIONS[name]
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def _activate(x: Tensor, kind: str) -> Tensor:
    if kind == "relu":
        return F.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, LEAKY_SLOPE)
    return F.gelu(x)


class TemporalAttention(nn.Module):
    """One attention score per time step and sample, from the ``T`` pooled membranes of the sample.

    The paper's form: a bias-free MLP of width ``T`` mixes the ``T`` values of one sample, so the
    module only runs at the ``T`` it was built for, its :attr:`width` (a capacity fixed by the
    weights' shapes, not the current number of steps, which belongs to the encoder); a call at
    another ``T`` raises ``ValueError`` (see :class:`ConvTemporalAttention` for a T-agnostic one).

    Args:
        T: number of time steps it is built for (the MLP's width).
        ratio: reduction ratio ``r_t``; the hidden layer has ``max(1, T // ratio)`` units.
        bias: biases in both layers (the paper has none).
        activation: between the layers, ``"relu"`` (the paper's), ``"leaky_relu"`` (negative slope
            :data:`LEAKY_SLOPE`) or ``"gelu"``.

    Example:
        >>> import torch
        >>> from gac_coding.attention import TemporalAttention
        >>> ta = TemporalAttention(T=4)
        >>> ta(torch.randn(4, 2, 8, 5, 5)).shape, ta.width    # [T, B, C, H, W] -> [T, B]
        (torch.Size([4, 2]), 4)
    """

    kind = "mlp"

    def __init__(self, T: int, ratio: int = 2, *, bias: bool = False, activation: str = "relu") -> None:
        super().__init__()
        #: the number of steps the MLP is built for (its input and output width)
        self.width = _positive_int("T", T)
        self.ratio = _positive_int("ratio", ratio)
        self.activation = check_attention_option("ta_activation", activation)
        bias = check_attention_option("ta_bias", bias)
        hidden = max(1, self.width // self.ratio)
        self.fc1 = nn.Linear(self.width, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, self.width, bias=bias)

    def mlp(self, a: Tensor) -> Tensor:
        """The shared MLP on per-sample vectors ``a: [B, T]``."""
        return self.fc2(_activate(self.fc1(a), self.activation))

    def check_steps(self, steps: int) -> None:
        """Raise ``ValueError`` unless the MLP can run at ``steps`` time steps (its :attr:`width`)."""
        if steps != self.width:
            raise ValueError(
                f"T: the paper's temporal attention (temporal_attention='mlp') is an MLP over the "
                f"{self.width} time steps it was built for, so it cannot run at T={steps}; build the "
                f"model with temporal_attention='conv' (no T-sized weights) to change the number of "
                f"steps, or set_timesteps({self.width}) back"
            )

    def from_stats(self, avg: Tensor, peak: Tensor) -> Tensor:
        """``TA`` from pooled statistics ``avg, peak: [T, B]``; returns ``[T, B]``."""
        self.check_steps(avg.shape[0])
        return (self.mlp(avg.t()) + self.mlp(peak.t())).t()

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() < 3:
            raise ValueError(f"u: expected [T={self.width}, B, ...], got shape {tuple(u.shape)}")
        self.check_steps(u.shape[0])
        flat = u.flatten(2)
        return self.from_stats(flat.mean(2), flat.amax(2))

    def extra_repr(self) -> str:
        bias = self.fc1.bias is not None
        return f"width={self.width}, ratio={self.ratio}, bias={bias}, activation={self.activation!r}"


class ConvTemporalAttention(nn.Module):
    """A temporal attention with no ``T``-sized weights: it runs at any number of steps.

    ``TA[:, b] = f(mean_{chw} U[:, b]) + f(max_{chw} U[:, b])`` as in the paper, but the shared
    ``f`` is a bias-free 1-D convolution over time, ``Conv1d(1, hidden, k) -> ReLU ->
    Conv1d(hidden, 1, k)`` with zero "same" padding, instead of an MLP across all ``T`` steps.

    Why a convolution: the score of a step is then a function of the statistics of its
    neighbourhood (``2k - 1`` steps wide for the two layers), the same function at every step and
    for every sequence length. A model trained at one ``T`` can run at another (fewer steps for
    latency and energy, event streams of varying length), and a shift in time shifts the scores
    (for steps away from the ends, where the zero padding sits). ``k = 3`` (one step either side per
    layer) keeps the receptive field small enough that a step's score is still local at ``T = 4``,
    as in ECA-Net's 1-D convolution over channels; ``hidden = 4`` filters.

    Args:
        kernel_size: ``k``, odd (the padding is symmetric).
        hidden: filters of the hidden layer.
        bias: biases in both layers.
        activation: ``"relu"``, ``"leaky_relu"`` or ``"gelu"`` between the layers.

    Example:
        >>> import torch
        >>> from gac_coding.attention import ConvTemporalAttention
        >>> ta = ConvTemporalAttention()
        >>> ta(torch.randn(4, 2, 8, 5, 5)).shape, ta(torch.randn(7, 2, 8, 5, 5)).shape
        (torch.Size([4, 2]), torch.Size([7, 2]))
    """

    kind = "conv"

    def __init__(
        self, kernel_size: int = 3, hidden: int = 4, *, bias: bool = False, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd integer (symmetric padding), got {kernel_size}")
        self.hidden = _positive_int("hidden", hidden)
        self.activation = check_attention_option("ta_activation", activation)
        bias = check_attention_option("ta_bias", bias)
        pad = self.kernel_size // 2
        self.conv1 = nn.Conv1d(1, self.hidden, self.kernel_size, padding=pad, bias=bias)
        self.conv2 = nn.Conv1d(self.hidden, 1, self.kernel_size, padding=pad, bias=bias)

    def check_steps(self, steps: int) -> None:
        """Any number of steps >= 1 is accepted."""
        _positive_int("T", steps)

    def from_stats(self, avg: Tensor, peak: Tensor) -> Tensor:
        """``TA`` from pooled statistics ``avg, peak: [T, B]``; returns ``[T, B]``."""
        T, B = avg.shape
        both = torch.cat((avg.t(), peak.t())).unsqueeze(1)  # [2B, 1, T]: f runs once on both
        scores = self.conv2(_activate(self.conv1(both), self.activation)).view(2, B, T)
        return (scores[0] + scores[1]).t()

    def forward(self, u: Tensor) -> Tensor:
        if u.dim() < 3:
            raise ValueError(f"u: expected [T, B, ...], got shape {tuple(u.shape)}")
        flat = u.flatten(2)
        return self.from_stats(flat.mean(2), flat.amax(2))

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, hidden={self.hidden}, "
            f"bias={self.conv1.bias is not None}, activation={self.activation!r}"
        )


def make_temporal_attention(
    kind: str, T: int, ratio: int = 2, *, bias: bool = False, activation: str = "relu"
) -> TemporalAttention | ConvTemporalAttention:
    """``TemporalAttention(T, ratio, ...)`` for ``"mlp"``, ``ConvTemporalAttention(...)`` for ``"conv"``."""
    kind = check_attention_option("temporal_attention", kind)
    if kind == "mlp":
        return TemporalAttention(T, ratio, bias=bias, activation=activation)
    return ConvTemporalAttention(bias=bias, activation=activation)


class SpatialChannelAttention(nn.Module):
    """Per-step spatial-channel score map ``Conv_k(ReLU(Conv_k(U_t)))`` (no bias, "same" padding).

    For an even kernel the padding is 1 pixel before and ``k - 2`` after on each axis (PyTorch's
    ``padding="same"``), as in the released weights.

    Args:
        channels: ``C``.
        ratio: ``r_sc``; the hidden layer has ``C // ratio`` channels.
        kernel_size: ``k`` (4 in the paper).
    """

    def __init__(self, channels: int, ratio: int = 1, kernel_size: int = 4) -> None:
        super().__init__()
        channels = _positive_int("channels", channels)
        ratio = _positive_int("ratio", ratio)
        kernel_size = _positive_int("kernel_size", kernel_size)
        hidden = channels // ratio
        if hidden < 1:
            raise ValueError(f"ratio: channels // ratio must be >= 1, got channels={channels}, ratio={ratio}")
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size, bias=False)
        self.conv2 = nn.Conv2d(hidden, channels, kernel_size, bias=False)
        before = (kernel_size - 1) // 2
        self._pad = (before, kernel_size - 1 - before) * 2  # (left, right, top, bottom)

    def forward(self, u: Tensor) -> Tensor:
        """``u: [N, C, H, W]`` (fold time into ``N``) -> ``[N, C, H, W]``."""
        hidden = F.relu(self.conv1(F.pad(u, self._pad)))
        return self.conv2(F.pad(hidden, self._pad))


def gated_lif(
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    decay: float = 0.5,
    threshold: float = 1.0,
    surrogate: SurrogateLike = "triangle",
    detach_reset: bool = False,
    *,
    static: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Spikes of ``u`` gated by ``sigmoid(ta * sca)``, fused over time.

    Args:
        u: membrane input ``[T, B, ...]``, or with ``static=True`` one step ``[B, ...]`` applied at
            every step.
        ta: temporal scores ``[T, B]``.
        sca: spatial-channel scores, ``[B, ...]`` (the same at every step) or ``[T, B, ...]``.
        decay, threshold, surrogate, detach_reset: the LIF (see :class:`gac_coding.LIF`).
        static: whether ``u`` is a single step repeated ``T = ta.shape[0]`` times.
        backend: the backend setting (see :class:`gac_coding.LIF`).

    Returns:
        ``(out, spikes, gate)``: the gated output ``[T, B, ...]`` (differentiable), the spikes
        (0./1. in the dtype of ``u``) and the gate ``sigmoid(ta * sca)`` (both detached).
    """
    params = LIFParams(decay, threshold, surrogate, detach_reset)
    return ops.gated_lif(u, ta, sca, params, static=static, backend=backend)


def membrane_of(u: Tensor, spikes: Tensor, decay: float, *, static: bool = False) -> Tensor:
    """The LIF's membrane before the reset, ``h_t = u_t + decay * h_{t-1} * (1 - s_{t-1})``.

    ``h_1 = u_1``; ``spikes: [T, B, ...]`` are the LIF's output for ``u`` (``[T, B, ...]``, or with
    ``static`` one step ``[B, ...]`` applied at every step). The reset factor is a constant in the
    backward pass (the spikes are detached here): the gradient of ``h`` reaches ``u`` through the
    leak. ``ta_source="membrane"`` pools this ``h`` (docs/design/encoder.md §7).

    Example:
        >>> import torch
        >>> from gac_coding.attention import membrane_of
        >>> u = torch.tensor([0.5], dtype=torch.float64)     # a static input: the same at every step
        >>> s = torch.tensor([[0.0], [0.0], [1.0]], dtype=torch.float64)   # its LIF (0.5, 1.0)
        >>> membrane_of(u, s, 0.5, static=True).flatten().tolist()
        [0.5, 0.75, 0.875]
    """
    T = spikes.shape[0]
    step = tuple(u.shape) if static else tuple(u.shape[1:])
    if step != tuple(spikes.shape[1:]) or (not static and u.shape[0] != T):
        raise ValueError(
            f"spikes: expected the LIF's output for u of shape {tuple(u.shape)} (static={static}), "
            f"got shape {tuple(spikes.shape)}"
        )
    keep = 1.0 - spikes.detach()
    steps: list[Tensor] = []
    for t in range(T):
        u_t = u if static else u[t]
        steps.append(u_t if t == 0 else u_t + decay * steps[-1] * keep[t - 1])
    return torch.stack(steps)


def combine_gate(ta: Tensor, sca: Tensor | None, gate: str = "product", *, static: bool = False) -> Tensor:
    """The gate ``M`` from ``ta: [T, B]`` and ``sca`` (``[T, B, ...]``, or with ``static`` one
    step ``[B, ...]``, the same at every step): ``"product"`` ``sigmoid(TA * SCA)`` (the paper's),
    ``"separate"`` ``sigmoid(TA) * sigmoid(SCA)``, ``"sum"`` ``sigmoid(TA + SCA)``, each
    ``[T, B, ...]``; ``TA[t, b]`` is broadcast over the map of step ``t``, sample ``b``.
    ``"temporal"``: ``sigmoid(TA)`` alone (``sca`` unused, may be ``None``), shaped
    ``[T, B, 1, ...]`` to broadcast like ``sca`` would (``[T, B]`` when ``sca`` is ``None``).

    Example:
        >>> import torch
        >>> from gac_coding.attention import combine_gate
        >>> ta, sca = torch.zeros(2, 1), torch.tensor([[2.0]])     # a dead TA: 0 at every step
        >>> [round(combine_gate(ta, sca, g, static=True)[1, 0, 0].item(), 4)
        ...  for g in ("product", "separate", "sum", "temporal")]
        [0.5, 0.4404, 0.8808, 0.5]
    """
    gate = check_attention_option("gate", gate)
    T, B = ta.shape
    if sca is None:
        if gate != "temporal":
            raise ValueError(f"sca: gate={gate!r} needs the spatial-channel scores, got None")
        return torch.sigmoid(ta)
    dims = sca.dim() + 1 if static else sca.dim()
    t = ta.reshape(T, B, *([1] * (dims - 2)))
    if gate == "product":
        return torch.sigmoid(t * sca)
    if gate == "separate":
        return torch.sigmoid(t) * torch.sigmoid(sca)
    if gate == "sum":
        return torch.sigmoid(t + sca)
    return torch.sigmoid(t)


class GatedAttentionUnit(LIFSettings, BackendSetting, MemorySetting, nn.Module):
    """Gate spikes with temporal and spatial-channel attention computed from the membrane input.

    ``O = sigmoid(TA(U) * SCA(U)) * LIF(U)``, values in ``[0, 1)``, zero wherever no spike. The
    options of :data:`ATTENTION_OPTIONS` change how ``TA`` is computed and how the gate combines
    ``TA`` and ``SCA`` (docs/design/encoder.md §7); their defaults are the paper's.

    The unit holds no number of time steps of its own: a sequence ``U: [T, B, C, H, W]`` brings
    its ``T``, and a static ``U`` (one step standing for all) is given ``T`` by its caller, the
    encoder that owns it (:meth:`gate_and_fire`). The paper's ``"mlp"`` temporal attention has a
    width, the ``T`` it is built for, and refuses any other.

    Args:
        channels: ``C`` of ``U``.
        T: the width of the ``"mlp"`` temporal attention (the number of steps it runs at); unused
            by ``"conv"``.
        ta_ratio, sca_ratio, sca_kernel: ``r_t``, ``r_sc``, ``k`` (paper: 2, 1, 4).
        decay, threshold, surrogate, detach_reset: the LIF that makes ``S``; CIFAR recipe default.
        temporal_attention: ``"mlp"`` (the paper's :class:`TemporalAttention`, fixed ``T``) or
            ``"conv"`` (:class:`ConvTemporalAttention`, any ``T``).
        ta_bias: biases in the temporal attention's two layers (the paper has none).
        ta_activation: ``"relu"`` (the paper's), ``"leaky_relu"`` or ``"gelu"`` between them.
        ta_source: ``"stem"`` (the paper's: ``TA`` pools ``U``) or ``"membrane"`` (``TA`` pools
            the LIF's membrane, :func:`membrane_of`).
        gate: ``"product"`` (the paper's ``sigmoid(TA * SCA)``), ``"separate"``
            (``sigmoid(TA) * sigmoid(SCA)``), ``"sum"`` (``sigmoid(TA + SCA)``) or ``"temporal"``
            (``sigmoid(TA)``; the unit then has no spatial-channel attention, :attr:`sca` is
            ``None``, and ``sca_ratio``, ``sca_kernel`` are unused).
        backend: what computes the fused LIF+gate (see :class:`gac_coding.LIF`).
        memory: ``"default"`` or ``"lean"`` (:mod:`gac_coding.ops.memory`): in training, the fused
            LIF+gate keeps its inputs and recomputes the membranes, spikes and gate in the
            backward pass. Needs a named surrogate.

    Example:
        >>> import torch, gac_coding as gac
        >>> unit = gac.GatedAttentionUnit(channels=8, T=4)
        >>> o = unit(torch.randn(4, 2, 8, 5, 5))    # U: [T, B, C, H, W]
        >>> o.shape, bool((o >= 0).all() and (o < 1).all())
        (torch.Size([4, 2, 8, 5, 5]), True)
    """

    def __init__(
        self,
        channels: int,
        T: int,
        ta_ratio: int = 2,
        sca_ratio: int = 1,
        sca_kernel: int = 4,
        decay: float = RECIPES["cifar"].decay,
        threshold: float = RECIPES["cifar"].threshold,
        surrogate: SurrogateLike = "triangle",
        detach_reset: bool = False,
        temporal_attention: str = "mlp",
        backend: str = "auto",
        memory: str = "default",
        *,
        ta_bias: bool = False,
        ta_activation: str = "relu",
        ta_source: str = "stem",
        gate: str = "product",
    ) -> None:
        super().__init__()
        T = _positive_int("T", T)
        self.channels = _positive_int("channels", channels)
        self.backend = check_backend(backend)
        self.ta = make_temporal_attention(
            temporal_attention, T, ta_ratio, bias=ta_bias, activation=ta_activation
        )
        #: how ``TA`` and ``SCA`` make the gate: ``"product"``, ``"separate"``, ``"sum"``, ``"temporal"``
        self.gate_form: str = check_attention_option("gate", gate)
        sca = SpatialChannelAttention(self.channels, sca_ratio, sca_kernel)  # checks its arguments
        self.sca: SpatialChannelAttention | None = None if self.gate_form == "temporal" else sca
        #: the LIF's settings (checked once, here)
        self.params = LIFParams(decay, threshold, surrogate, detach_reset)
        #: what the temporal attention pools, ``"stem"`` or ``"membrane"``
        self.ta_source: str = check_attention_option("ta_source", ta_source)
        self.memory = memory

    memory_modes = ("default", "lean")

    def _set_memory(self, mode: str) -> None:
        if mode == "lean":
            lean.check_lean_params(self.params, "memory (GatedAttentionUnit)")
            if self.gate_form != "product" or self.ta_source != "stem":
                raise ValueError(
                    "memory (GatedAttentionUnit): 'lean' (and a model's 'checkpoint', which runs its "
                    "encoder lean) applies to the paper's gate (gate='product', ta_source='stem'), "
                    f"got gate={self.gate_form!r}, ta_source={self.ta_source!r}; keep memory='default' "
                    "with these variants"
                )

    @property
    def temporal_attention(self) -> str:
        """``"mlp"`` or ``"conv"``: the kind of temporal attention."""
        return str(self.ta.kind)

    @property
    def options(self) -> dict[str, Any]:
        """The values of the options of :data:`ATTENTION_OPTIONS` (keyword arguments that rebuild
        this configuration)."""
        first = self.ta.fc1 if isinstance(self.ta, TemporalAttention) else self.ta.conv1
        return {
            "temporal_attention": self.temporal_attention,
            "ta_bias": first.bias is not None,
            "ta_activation": self.ta.activation,
            "ta_source": self.ta_source,
            "gate": self.gate_form,
        }

    @property
    def is_paper(self) -> bool:
        """Whether every option has the paper's value. (The fused gated op runs whenever the gate
        is the paper's, ``gate="product"`` with ``ta_source="stem"``, whatever the temporal
        attention's kind, biases or activation.)"""
        return all(v == ATTENTION_OPTIONS[k][0] for k, v in self.options.items())

    def gate_and_fire(
        self, u: Tensor, static: bool = False, T: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(out, spikes, gate, ta)`` for ``u: [T, B, C, H, W]`` or, static, ``[B, C, H, W]``
        standing for ``T`` identical steps (``T`` required then).

        ``spikes`` (0./1.), ``gate`` and ``ta`` are detached; only ``out`` carries gradients.
        """
        if static and T is None:
            raise ValueError("T: a static u (one step standing for all) needs the number of steps")
        steps = int(T) if static else int(u.shape[0])  # type: ignore[arg-type]
        if self.gate_form == "product" and self.ta_source == "stem":
            # the paper's gate: one fused op for the LIF and the gate
            ta = self._ta_of(u, static, steps)
            sca = self._sca_of(u, static)
            assert sca is not None
            fuse = lean.gated_lif if lean_active(self.memory) else ops.gated_lif
            out, fired, gate = fuse(u, ta, sca, self.params, static=static, backend=self.backend)
            return out, fired, gate, ta.detach()
        # the variants: the backend's LIF op, then the attention and the gate as torch operations
        spikes = ops.lif(u, self.params, steps=steps if static else None, backend=self.backend)
        if self.ta_source == "membrane":
            ta = self.ta(membrane_of(u, spikes, self.params.decay, static=static))
        else:
            ta = self._ta_of(u, static, steps)
        ta = ta.to(u.dtype)
        sca = self._sca_of(u, static)
        if sca is None:  # the temporal gate: one gain per step and sample, over the whole map
            gate = combine_gate(ta, None, self.gate_form)
            gate = gate.view(*gate.shape, *([1] * (spikes.dim() - 2))).expand(spikes.shape)
        else:
            gate = combine_gate(ta, sca.to(u.dtype), self.gate_form, static=static)
        return gate * spikes, spikes.detach(), gate.detach(), ta.detach()

    def _sca_of(self, u: Tensor, static: bool) -> Tensor | None:
        """``SCA`` of ``U`` (one step when static), or ``None`` for the temporal gate."""
        if self.sca is None:
            return None
        return self.sca(u) if static else self.sca(u.flatten(0, 1)).view(u.shape)

    def _ta_of(self, u: Tensor, static: bool, steps: int) -> Tensor:
        """``TA [T, B]`` pooled from the stem output ``U`` (constant statistics when static)."""
        if not static:
            return self.ta(u)
        flat = u.flatten(1)
        ones = flat.new_ones(steps, 1)
        return self.ta.from_stats(ones * flat.mean(1), ones * flat.amax(1))

    def forward(self, u: Tensor) -> Tensor:
        """``U: [T, B, C, H, W]`` -> ``O``, the same shape."""
        if not isinstance(u, Tensor):
            raise TypeError(f"u: expected a torch.Tensor, got {type(u).__name__}")
        width = getattr(self.ta, "width", None)  # the "mlp" attention's fixed T
        if u.dim() != 5 or u.shape[2] != self.channels or (width is not None and u.shape[0] != width):
            steps = "T" if width is None else f"T={width}"
            raise ValueError(f"u: expected [{steps}, B, C={self.channels}, H, W], got shape {tuple(u.shape)}")
        return self.gate_and_fire(u)[0]

    def extra_repr(self) -> str:
        changed = {k: v for k, v in self.options.items() if v != ATTENTION_OPTIONS[k][0]}
        return ", ".join(
            [f"channels={self.channels}", f"temporal_attention={self.temporal_attention!r}"]
            + [f"{k}={v!r}" for k, v in changed.items() if k != "temporal_attention"]
            + [f"backend={self.backend!r}"]
            + ([] if self.memory == "default" else [f"memory={self.memory!r}"])
        )
