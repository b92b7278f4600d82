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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._checks import integer, real
from ._measure import measuring
from .adapters import is_neuron

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .energy import EnergyReport

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


def _check_code(o: object, name: str = "o") -> Tensor:
    if not isinstance(o, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(o).__name__}")
    if o.dim() < 2:
        raise ValueError(
            f"{name}: expected a time-major code [T, B, ...] (at least 2 dims), got shape {tuple(o.shape)}"
        )
    if o.shape[0] < 1 or o.shape[1] < 1 or o.numel() == 0:
        raise ValueError(f"{name}: expected T >= 1, B >= 1 and a non-empty code, got {tuple(o.shape)}")
    if o.dtype == torch.bool:
        o = o.to(torch.float64)
    if o.is_complex() or not (o.is_floating_point() or o.dtype in _INT_DTYPES):
        raise TypeError(f"{name}: expected a real (float, int or bool) tensor, got dtype {o.dtype}")
    o = o.detach().to(device="cpu", dtype=torch.float64)  # metrics and plots run on the CPU
    if not bool(torch.isfinite(o).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return o


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


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
    code = _check_code(o)
    integer("levels", levels, 2, allow_none=True)
    atol = real("atol", atol, 0)
    integer("max_period", max_period, 1, allow_none=True)
    T, B = code.shape[:2]
    flat = code.reshape(T, B, -1)
    N = flat.shape[2]

    # distinct step maps per sample: step t is new when no earlier step equals it
    new = torch.ones(T, B, dtype=torch.bool)
    for t in range(1, T):
        for s in range(t):
            new[t] &= ~_steps_equal(flat[t], flat[s], atol)
    distinct = new.sum(0).to(torch.float64)

    # mean pairwise cosine dissimilarity per sample
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
    diversity = dissim / pairs if pairs else dissim

    # periodicity
    period: int | None = None
    has_period = torch.zeros(B, dtype=torch.bool)
    for p in range(1, T if max_period is None else min(max_period + 1, T)):
        ok = torch.ones(B, dtype=torch.bool)
        for t in range(T - p):
            ok &= _steps_equal(flat[t + p], flat[t], atol)
        has_period |= ok
        if period is None and bool(ok.all()):
            period = p

    entropies = _pattern_entropies(flat, levels)
    spikes_per_sample = float(torch.count_nonzero(flat)) / B
    total_bits = float(entropies.sum())
    return {
        "T": T,
        "B": B,
        "neurons": N,
        "distinct_steps": float(distinct.mean()),
        "temporal_diversity": float(diversity.mean()),
        "periodicity": period,
        "periodic_fraction": float(has_period.double().mean()),
        "entropy_bits": float(entropies.mean()),
        "max_entropy_bits": math.log2(B),
        "bits_per_spike": total_bits / spikes_per_sample if spikes_per_sample > 0 else 0.0,
        "firing_rate": float(torch.count_nonzero(flat)) / flat.numel(),
    }


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
    from .coding import GACEncoder

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


# ------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    try:
        from ._plotting import new_figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('plots need matplotlib: pip install "gac-coding[train]"') from exc
    return new_figure(width, height)


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        if not isinstance(path, (str, Path)):
            raise TypeError(f"path: expected a str or Path, got {type(path).__name__}")
        fig.savefig(str(path), dpi=100, format="png")
    return fig


def _sample_index(sample: object, B: int) -> int:
    return integer("sample", sample, 0, B - 1)


def plot_raster(
    spikes: Tensor,
    *,
    sample: int = 0,
    neurons: int | Sequence[int] = 64,
    title: str = "spike raster",
    path: str | Path | None = None,
) -> Figure:
    """Raster of chosen neurons of one sample over ``T``: a mark where the code is non-zero.

    Args:
        spikes: a code ``[T, B, ...]`` (spikes, or a gated code: marks are shaded by value).
        sample: which sample of the batch.
        neurons: how many neurons, evenly spaced over the flattened neurons, or their indices.
        title: the axes title.
        path: save a PNG there.

    Returns:
        The figure; how it shows and whether pyplot holds it: see :mod:`gac_coding.analysis`.

    Example:
        >>> import torch
        >>> fig = plot_raster((torch.rand(6, 2, 4, 5, 5) < 0.3).float(), neurons=20)
        >>> fig.axes[0].get_xlabel()
        'time step t'
    """
    code = _check_code(spikes, "spikes")
    T, B = code.shape[:2]
    b = _sample_index(sample, B)
    flat = code.reshape(T, B, -1)[:, b]
    N = flat.shape[1]
    if isinstance(neurons, int) and not isinstance(neurons, bool):
        if neurons < 1:
            raise ValueError(f"neurons: expected a count >= 1 or indices, got {neurons}")
        idx = torch.linspace(0, N - 1, min(neurons, N)).round().long().unique()
    elif isinstance(neurons, Sequence) and all(isinstance(i, int) for i in neurons):
        idx = torch.as_tensor(list(neurons), dtype=torch.long)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= N:
            raise ValueError(f"neurons: expected indices in [0, {N}), got {list(neurons)}")
    else:
        raise TypeError(f"neurons: expected an int or a sequence of ints, got {neurons!r}")
    chosen = flat[:, idx]  # [T, K]
    t_idx, row = torch.nonzero(chosen, as_tuple=True)
    height = 2.1 + 0.06 * len(idx)
    fig = _new_figure(6.0, height)
    ax = fig.add_subplot()
    values = chosen[t_idx, row].abs()
    scale = float(values.max()) if values.numel() else 1.0
    row_points = (height - 0.9) * 72 / len(idx)  # about the axes' height per neuron, in points
    # a mark fills most of its row; its shade grows with the value, from light grey (never white:
    # every mark is a non-zero entry) to black for the largest
    ax.scatter(
        t_idx.numpy(), row.numpy(), marker="|", s=min(120.0, (0.8 * row_points) ** 2), linewidths=2,
        c=(0.3 + 0.7 * values / (scale or 1.0)).numpy(), cmap="Greys", vmin=0.0, vmax=1.0,
    )  # fmt: skip
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(-0.5, len(idx) - 0.5)
    ax.set_xticks(range(T))
    ticks = torch.linspace(0, len(idx) - 1, min(len(idx), 9)).round().long().unique().tolist()
    ax.set_yticks(ticks, [str(int(idx[r])) for r in ticks])  # the neurons' own indices
    ax.set_xlabel("time step t")
    ax.set_ylabel(f"neuron ({len(idx)} of {N})")
    ax.set_title(title)
    return _save(fig, path)


def plot_gate(
    gate: Any,
    *,
    sample: int = 0,
    temporal_attention: Tensor | None = None,
    path: str | Path | None = None,
) -> Figure:
    """The gate ``sigmoid(TA * SCA)`` of one image over the ``T`` steps.

    Top row: the channel-mean gate map at each step (common colour scale). Bottom: the mean gate
    per step and, when known, the temporal attention ``TA[t]`` of the sample.

    Args:
        gate: a :class:`~gac_coding.GACEncoder` after a call (its ``last_gate`` and
            ``last_temporal_attention`` are used), or a gate tensor ``[T, B, C, H, W]``.
        sample: which image of the batch.
        temporal_attention: ``TA`` ``[T, B]`` to draw with a gate tensor.
        path: save a PNG there.

    Returns:
        The figure; how it shows and whether pyplot holds it: see :mod:`gac_coding.analysis`.

    Example:
        >>> import torch, gac_coding as gac
        >>> enc = gac.GACEncoder(in_channels=1, out_channels=4, T=3)
        >>> _ = enc(torch.rand(2, 1, 8, 8))
        >>> len(plot_gate(enc).axes)    # 3 maps, a colour bar, mean gate and TA (twin axes)
        6
    """
    from .coding import GACEncoder

    if isinstance(gate, GACEncoder):
        enc = gate
        if enc.last_gate is None:
            raise ValueError("gate: the encoder holds no gate; call it on an input first (with record=True)")
        gate, temporal_attention = enc.last_gate, enc.last_temporal_attention
    g = _check_code(gate, "gate")
    if g.dim() != 5:
        raise ValueError(f"gate: expected [T, B, C, H, W], got shape {tuple(g.shape)}")
    T, B = g.shape[:2]
    b = _sample_index(sample, B)
    maps = g[:, b].mean(1)  # [T, H, W]
    fig = _new_figure(max(5.0, 1.7 * T + 0.8), 5.0)
    grid = fig.add_gridspec(2, T + 1, height_ratios=(1.2, 1.0), width_ratios=[1.0] * T + [0.06])
    lo, hi = float(maps.min()), float(maps.max())
    if hi - lo < 1e-3:  # an (almost) constant gate: a readable colour scale around it
        lo, hi = lo - 0.05, hi + 0.05
    image = None
    for t in range(T):
        ax = fig.add_subplot(grid[0, t])
        image = ax.imshow(maps[t].numpy(), vmin=lo, vmax=hi, cmap="viridis")
        ax.set_title(f"t={t}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    assert image is not None  # T >= 1
    fig.colorbar(image, cax=fig.add_subplot(grid[0, T]), label="channel-mean gate")
    ax = fig.add_subplot(grid[1, :])
    steps = list(range(T))
    handles = ax.plot(steps, g[:, b].reshape(T, -1).mean(1).numpy(), "o-", label="mean gate")
    if temporal_attention is not None:
        ta = _check_code(temporal_attention, "temporal_attention")
        if tuple(ta.shape) != (T, B):
            raise ValueError(f"temporal_attention: expected shape {(T, B)}, got {tuple(ta.shape)}")
        twin = ax.twinx()
        handles += twin.plot(steps, ta[:, b].numpy(), "s--", color="tab:orange", label="TA[t]")
        twin.set_ylabel("TA[t]")
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xticks(steps)
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean gate")
    fig.suptitle(f"GAC gate over time, sample {b}")
    return _save(fig, path)


def plot_firing_rates(
    rates: Mapping[str, float], *, title: str = "firing rate per layer", path: str | Path | None = None
) -> Figure:
    """Horizontal bars of ``{layer: rate}`` (e.g. from :func:`firing_rates`).

    Args:
        rates: ``{layer name: firing rate}``, drawn top to bottom in the mapping's order.
        title: the axes title.
        path: save a PNG there.

    Returns:
        The figure; how it shows and whether pyplot holds it: see :mod:`gac_coding.analysis`.

    Example:
        >>> fig = plot_firing_rates({"lif1": 0.12, "lif2": 0.05})
        >>> fig.axes[0].get_xlabel()
        'firing rate'
    """
    if not isinstance(rates, Mapping) or not rates:
        raise ValueError(f"rates: expected a non-empty mapping of layer -> rate, got {rates!r}")
    names = list(rates)
    values = [float(rates[n]) for n in names]
    fig = _new_figure(6.5, 1.4 + 0.28 * len(names))
    ax = fig.add_subplot()
    bars = ax.barh(range(len(names)), values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], padding=2, fontsize=7)
    ax.margins(x=0.12)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("firing rate")
    ax.set_title(title)
    return _save(fig, path)


def plot_energy(
    report: EnergyReport | Mapping[str, Any], *, log: bool | None = None, path: str | Path | None = None
) -> Figure:
    """Energy per layer in the paper's accounting (µJ per sample): a MAC bar and an AC bar per layer.

    The MAC bar is ``E_MAC x mac_paper``, the AC bar ``E_AC x ac_paper`` of the layer, each divided
    by the batch size; a bar is drawn only where its energy is not zero, and labelled with its
    value. The encoder's real-valued layers and the spiking backbone often differ by orders of
    magnitude, so the energy axis is logarithmic when the bars span more than two decades.

    Args:
        report: an :class:`~gac_coding.energy.EnergyReport` or its ``to_dict()``.
        log: a logarithmic energy axis (``True``), a linear one (``False``), or ``None`` to choose:
            logarithmic when the largest bar is more than 100 times the smallest.
        path: save a PNG there.

    Returns:
        The figure; how it shows and whether pyplot holds it: see :mod:`gac_coding.analysis`.

    Example:
        >>> import torch, gac_coding as gac
        >>> from gac_coding.energy import estimate_energy
        >>> r = estimate_energy(gac.GACEncoder(1, 4, T=2), torch.rand(1, 1, 6, 6))
        >>> plot_energy(r).axes[0].get_xlabel()
        'energy per sample (µJ)'
    """
    data = report.to_dict() if hasattr(report, "to_dict") else report
    if not isinstance(data, Mapping) or "layers" not in data or "totals" not in data:
        raise TypeError(f"report: expected an EnergyReport or its to_dict(), got {type(report).__name__}")
    if log is not None and not isinstance(log, bool):
        raise TypeError(f"log: expected True, False or None, got {log!r}")
    layers = list(data["layers"])
    if not layers:
        raise ValueError("report: holds no layers")
    totals = data["totals"]
    batch = float(totals.get("batch_size", 1))
    e_mac, e_ac = float(totals["e_mac_pj"]), float(totals["e_ac_pj"])
    # pJ of the batch -> µJ per sample
    mac = [e_mac * float(ly["mac_paper"]) * 1e-6 / batch for ly in layers]
    ac = [e_ac * float(ly["ac_paper"]) * 1e-6 / batch for ly in layers]
    names = [
        ly["name"] + ("  (not spike-driven)" if not ly.get("spike_driven", True) else "") for ly in layers
    ]
    drawn = [v for v in mac + ac if v > 0]
    if log is None:
        log = bool(drawn) and max(drawn) > 100 * min(drawn)
    fig = _new_figure(7.5, 1.3 + 0.3 * len(layers))
    ax = fig.add_subplot()
    for values, offset, colour, label in (
        (mac, -0.2, "tab:red", f"MAC (E_MAC = {e_mac:g} pJ)"),
        (ac, 0.2, "tab:green", f"AC (E_AC = {e_ac:g} pJ)"),
    ):
        rows = [i for i, v in enumerate(values) if v > 0]
        if not rows:
            continue
        bars = ax.barh([i + offset for i in rows], [values[i] for i in rows], height=0.4, color=colour,
                       label=label)  # fmt: skip
        ax.bar_label(bars, labels=[_number(values[i]) for i in rows], padding=2, fontsize=7)
    ax.set_yticks(range(len(layers)), names, fontsize=8)
    ax.set_ylim(len(layers) - 0.5, -0.5)  # the first layer on top
    if log and drawn:
        ax.set_xscale("log")
        # half a decade below the smallest bar; room for the labels right of the largest
        ax.set_xlim(min(drawn) / 10**0.5, max(drawn) * 10**0.8)
    elif drawn:
        ax.set_xlim(0.0, max(drawn) * 1.18)
    ax.set_xlabel("energy per sample (µJ)")
    ax.set_title(
        f"energy per layer (paper accounting)\n{float(totals['energy_mj']) / batch:.4g} mJ per sample",
        fontsize=10,
    )
    if drawn:
        fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return _save(fig, path)


def _number(value: float) -> str:
    """3 significant digits, without an exponent from 1000 up (1,850 rather than 1.85e+03)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
