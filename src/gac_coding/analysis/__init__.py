"""Observer-model coding metrics, firing rates per layer, and plots (docs/design/metrics.md).

The paper argues that direct coding hands a downstream observer the same frame at every step, so its
first spikes are periodic and carry little temporal information, while GAC's gate varies over time.
:func:`coding_metrics` measures that for any code ``o: [T, B, ...]`` with explicit definitions;
:func:`firing_rates` reports the spike rate of every spiking layer of a model and
:func:`mean_firing_rate` the rate over all of them (both from :func:`spike_counts`). The plot functions
import matplotlib lazily, return a matplotlib ``Figure`` and save a PNG when given a path.

Where the plots show and who holds them (the same for every ``plot_*`` function):

* In a Jupyter notebook (the inline backend) a plot shows exactly once, whether it is the last
  expression of its cell, is followed by ``plt.show()``, or neither (then at the end of the cell,
  like any pyplot figure). pyplot lets go of it once shown, so ``plt.get_fignums()`` does not grow.
* With a GUI backend (a script or IPython with Qt, Tk, ...) it is a pyplot figure like those of
  ``plt.subplots``: ``plt.show()`` shows it, and it stays in ``plt.get_fignums()`` until its window
  or ``plt.close(fig)`` closes it (a loop making 100 plots opens 100 figures, as pyplot does).
* Under a non-interactive backend (Agg, the default without a display, or ``MPLBACKEND=Agg``) pyplot
  never sees it: nothing to close, ``plt.get_fignums()`` does not grow. Write it with ``path=`` or
  ``fig.savefig`` (``plt.savefig`` saves pyplot's current figure, which is not this one).

Example:
    >>> import torch
    >>> from gac_coding.analysis import coding_metrics
    >>> o = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(4, 1, 1)   # one neuron, period 2
    >>> m = coding_metrics(o)
    >>> m["periodicity"], m["distinct_steps"], m["firing_rate"]
    (2, 2.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import integer, real
from .._measure import measuring
from ..adapters import is_neuron
from ._code import check_code
from .plots import plot_energy, plot_firing_rates, plot_gate, plot_raster

__all__ = [
    "coding_metrics",
    "firing_rates",
    "mean_firing_rate",
    "plot_energy",
    "plot_firing_rates",
    "plot_gate",
    "plot_raster",
    "spike_counts",
]


# ------------------------------------------------------------------------------------------------
# Observer-model metrics
# ------------------------------------------------------------------------------------------------


def _steps_equal(a: Tensor, b: Tensor, atol: float) -> Tensor:
    """Per sample, whether two steps ``[B, N]`` are equal within ``atol`` (``[B]`` bool)."""
    if atol == 0.0:
        return (a == b).all(1)
    return ((a - b).abs() <= atol).all(1)


def _quantise(flat: Tensor, levels: int | None) -> tuple[Tensor, int]:
    """Integer symbols ``0 .. alphabet-1`` of every entry, and the alphabet size."""
    if levels is None:
        values, ids = torch.unique(flat, return_inverse=True)
        return ids, int(values.numel())
    peak = float(flat.abs().max())
    if peak == 0.0:
        return torch.zeros_like(flat, dtype=torch.int64), levels
    # 0 stays level 0; non-zero magnitudes map to 1 .. levels - 1 relative to the peak
    mag = torch.ceil(flat.abs() / peak * (levels - 1)).clamp_(max=levels - 1).to(torch.int64)
    if not bool((flat < 0).any()):
        return mag, levels
    return mag * torch.sign(flat).to(torch.int64) + (levels - 1), 2 * levels - 1  # sign kept


def _pattern_entropies(code: Tensor, levels: int | None) -> Tensor:
    """Entropy (bits) of each neuron's length-T pattern over the batch; ``code: [T, B, N]``."""
    T, B, N = code.shape
    sym, alphabet = _quantise(code, levels)
    alphabet = max(alphabet, 2)
    neuron = torch.arange(N, device=code.device).expand(B, N)
    if T * math.log2(alphabet) < 62:
        weights = torch.tensor([alphabet**t for t in range(T)], dtype=torch.int64)
        pattern = (sym.permute(1, 2, 0) * weights).sum(-1)  # [B, N] integer per pattern
        rows = torch.stack([neuron.reshape(-1), pattern.reshape(-1)], 1)
    else:
        rows = torch.cat([neuron.reshape(-1, 1), sym.permute(1, 2, 0).reshape(B * N, T)], 1)
    unique, counts = torch.unique(rows, dim=0, return_counts=True)
    p = counts.to(torch.float64) / B
    contrib = -p * torch.log2(p)
    return torch.zeros(N, dtype=torch.float64).index_add_(0, unique[:, 0], contrib)


def coding_metrics(
    o: Tensor, *, levels: int | None = 2, atol: float = 0.0, max_period: int | None = None
) -> dict[str, Any]:
    """Temporal diversity, periodicity and coding efficiency of a code ``o: [T, B, ...]``.

    A "step map" is ``o[t, b]`` flattened over the neurons (everything after ``B``).

    * ``distinct_steps``: the number of distinct step maps of a sample (equal within ``atol``),
      averaged over the batch. ``1`` for a constant code, ``p`` for a code of period ``p``.
    * ``temporal_diversity``: the mean over all pairs ``t < t'`` of ``1 - cos(o[t, b], o[t', b])``,
      averaged over the batch; ``0`` when all steps are equal (or ``T = 1``), larger when the steps
      point in different directions. Two all-zero maps count as identical (cosine 1); a zero map
      and a non-zero one as orthogonal (cosine 0).
    * ``periodicity``: the smallest ``p`` in ``1 .. max_period`` (default ``T-1``) with
      ``o[t + p] == o[t]`` (within ``atol``) for every valid ``t`` and every sample, or ``None``
      when there is none (an aperiodic code, or ``T = 1``). A period ``p`` is checked on ``T - p``
      pairs of steps: ``p = T-1`` compares only the first and the last step, which is weak
      evidence; ``max_period=T // 2`` asks for at least two full periods. ``periodic_fraction``:
      the fraction of samples that have such a period on their own.
    * ``entropy_bits``: the empirical entropy ``H = -sum_k p_k log2 p_k`` of each neuron's
      length-``T`` output pattern over the ``B`` samples, averaged over neurons. Values are first
      quantised to ``levels`` magnitude levels (0 stays 0, non-zero magnitudes map to
      ``1 .. levels-1`` relative to the largest, the sign kept); the default ``levels=2`` uses the
      spike pattern (``o != 0``); ``levels=None`` compares exact values. The maximum is
      ``max_entropy_bits = log2(B)``, so use a batch much larger than the number of patterns.
    * ``bits_per_spike``: the summed entropy of all neurons divided by the mean number of non-zero
      entries per sample; ``0`` when nothing fires.
    * ``firing_rate``: the fraction of non-zero entries of ``o``.

    Args:
        o: the code, time-major; bool, integer or float.
        levels: quantisation of the values for the entropy (``>= 2``), or ``None`` for exact values.
        atol: tolerance for equality of step maps (``distinct_steps``, ``periodicity``).
        max_period: the longest period searched (an integer ``>= 1``; periods beyond ``T-1`` do
            not exist); ``None`` for ``T-1``.

    Returns:
        A dict with the keys above (floats; ``periodicity`` an int or ``None``) and ``T``, ``B``,
        ``neurons``.

    Example:
        >>> import torch
        >>> o = torch.ones(5, 3, 2, 2)                          # constant over time
        >>> m = coding_metrics(o)
        >>> m["distinct_steps"], m["periodicity"], m["temporal_diversity"], m["entropy_bits"]
        (1.0, 1, 0.0, 0.0)
    """
    code = check_code(o)
    integer("levels", levels, 2, allow_none=True)
    atol = real("atol", atol, 0)
    integer("max_period", max_period, 1, allow_none=True)
    T, B = code.shape[:2]
    flat = code.reshape(T, B, -1)
    N = flat.shape[2]
    period, has_period = _periodicity(flat, atol, max_period)
    entropies = _pattern_entropies(flat, levels)
    spikes_per_sample = float(torch.count_nonzero(flat)) / B
    total_bits = float(entropies.sum())
    return {
        "T": T,
        "B": B,
        "neurons": N,
        "distinct_steps": float(_distinct_steps(flat, atol).mean()),
        "temporal_diversity": float(_temporal_diversity(flat).mean()),
        "periodicity": period,
        "periodic_fraction": float(has_period.double().mean()),
        "entropy_bits": float(entropies.mean()),
        "max_entropy_bits": math.log2(B),
        "bits_per_spike": total_bits / spikes_per_sample if spikes_per_sample > 0 else 0.0,
        "firing_rate": float(torch.count_nonzero(flat)) / flat.numel(),
    }


def _distinct_steps(flat: Tensor, atol: float) -> Tensor:
    """Distinct step maps per sample of ``flat: [T, B, N]`` (step ``t`` is new when no earlier
    step equals it), float64 ``[B]``."""
    T, B = flat.shape[:2]
    new = torch.ones(T, B, dtype=torch.bool)
    for t in range(1, T):
        for s in range(t):
            new[t] &= ~_steps_equal(flat[t], flat[s], atol)
    return new.sum(0).to(torch.float64)


def _temporal_diversity(flat: Tensor) -> Tensor:
    """Mean pairwise cosine dissimilarity of the step maps per sample of ``flat: [T, B, N]``,
    float64 ``[B]`` (zeros for ``T = 1``)."""
    T, B = flat.shape[:2]
    norms = flat.norm(dim=2)  # [T, B]
    pairs = 0
    dissim = torch.zeros(B, dtype=torch.float64)
    for t in range(T):
        for s in range(t + 1, T):
            dot = (flat[t] * flat[s]).sum(1)
            denom = norms[t] * norms[s]
            cos = torch.where(denom > 0, dot / denom.clamp_min(1e-300), (norms[t] == norms[s]).double())
            # identical maps are exactly similar (no rounding residue); cosine stays in [-1, 1]
            cos = torch.where((flat[t] == flat[s]).all(1), torch.ones_like(cos), cos.clamp(-1.0, 1.0))
            dissim += 1.0 - cos
            pairs += 1
    return dissim / pairs if pairs else dissim


def _periodicity(flat: Tensor, atol: float, max_period: int | None) -> tuple[int | None, Tensor]:
    """The smallest period every sample of ``flat: [T, B, N]`` has (``None``: none up to
    ``max_period``), and which samples have some period on their own (bool ``[B]``)."""
    T, B = flat.shape[:2]
    period: int | None = None
    has_period = torch.zeros(B, dtype=torch.bool)
    for p in range(1, T if max_period is None else min(max_period + 1, T)):
        ok = torch.ones(B, dtype=torch.bool)
        for t in range(T - p):
            ok &= _steps_equal(flat[t + p], flat[t], atol)
        has_period |= ok
        if period is None and bool(ok.all()):
            period = p
    return period, has_period


# ------------------------------------------------------------------------------------------------
# Firing rates per layer
# ------------------------------------------------------------------------------------------------


def spike_counts(model: nn.Module, x: Tensor, *, modules: Sequence[type] = ()) -> dict[str, tuple[int, int]]:
    """``(spikes, neuron-steps)`` of every spiking layer of ``model`` on ``x``, in call order.

    One forward pass without gradients in eval mode, from fresh state (training flags restored).
    Spiking layers are those :func:`gac_coding.adapters.is_neuron` recognises (this
    library's :class:`~gac_coding.LIF` and the neurons of every registered framework) and any
    type in ``modules``; ``spikes`` counts the non-zero entries of their (first) output, over all
    their calls. Outputs that are not binary (e.g. a leaky integrator's voltage) are skipped. A
    :class:`~gac_coding.GACEncoder` reports its spikes ``S`` (before the gate) as
    ``"<name>.spikes"``.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> m = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
        >>> counts = spike_counts(m, torch.rand(3, 1, 8, 8))
        >>> counts["encoder.spikes"][1] == 2 * 3 * 16 * 8 * 8     # T * B * C * H * W neuron-steps
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    extra = tuple(modules)
    if not all(isinstance(t, type) for t in extra):
        raise TypeError(f"modules: expected a sequence of classes, got {modules!r}")
    from ..coding import GACEncoder

    counts: dict[str, tuple[int, int]] = {}

    def record(name: str, t: Tensor) -> None:
        spikes, total = counts.get(name, (0, 0))
        counts[name] = (spikes + int(torch.count_nonzero(t)), total + int(t.numel()))

    def make_hook(name: str, is_encoder: bool):
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if is_encoder:
                spikes = getattr(module, "last_spikes", None)
                if isinstance(spikes, Tensor):
                    record(f"{name}.spikes" if name else "spikes", spikes)
                return
            t = out if isinstance(out, Tensor) else (
                out[0] if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor) else None
            )  # fmt: skip
            if t is not None and (t.dtype == torch.bool or bool(((t == 0) | (t == 1)).all())):
                record(name, t)

        return hook

    handles = []
    try:
        for name, module in model.named_modules():
            if isinstance(module, GACEncoder):
                handles.append(module.register_forward_hook(make_hook(name, True)))
            elif is_neuron(module) or (extra and isinstance(module, extra)):
                handles.append(module.register_forward_hook(make_hook(name, False)))
        with measuring(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def firing_rates(model: nn.Module, x: Tensor, *, modules: Sequence[type] = ()) -> dict[str, float]:
    """Spike rate of every spiking layer of ``model`` on ``x``, in call order: the fraction of
    its neuron-steps that fired (see :func:`spike_counts` for the layers and the run).

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> m = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
        >>> rates = firing_rates(m, torch.rand(2, 1, 8, 8))
        >>> list(rates)[:2]
        ['encoder.spikes', 'stages.0.0.lif1']
    """
    counts = spike_counts(model, x, modules=modules)
    return {name: spikes / max(1, total) for name, (spikes, total) in counts.items()}


def mean_firing_rate(model: nn.Module, x: Tensor, *, modules: Sequence[type] = ()) -> float:
    """Fraction of all neuron-steps of all spiking layers of ``model`` that fired on ``x``: the
    layers pooled, each weighted by its number of neuron-steps (see :func:`spike_counts`).

    Example:
        >>> import torch, gac_coding as gac
        >>> net = torch.nn.Sequential(gac.LIF(threshold=0.5), gac.LIF(threshold=1.0))
        >>> x = torch.tensor([[0.6, 0.2], [0.6, 0.2]])      # [T, B]: the first LIF fires 2 of 4,
        >>> mean_firing_rate(net, x)                         # its spikes make the second fire 1 of 4
        0.375
    """
    counts = spike_counts(model, x, modules=modules).values()
    return sum(spikes for spikes, _ in counts) / max(1, sum(total for _, total in counts))
