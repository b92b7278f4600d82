"""The plots of :mod:`gac_coding.analysis` (see there where they show and who holds them): spike
rasters, the gate, firing rates per layer, energy per layer. matplotlib is imported when a plot is
made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import integer
from ._code import check_code

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..energy import EnergyReport

__all__ = ["plot_energy", "plot_firing_rates", "plot_gate", "plot_raster"]


def _new_figure(width: float, height: float) -> Figure:
    try:
        from .._plotting import new_figure
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
    code = check_code(spikes, "spikes")
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
    from ..coding import GACEncoder

    if isinstance(gate, GACEncoder):
        enc = gate
        if enc.last_gate is None:
            raise ValueError("gate: the encoder holds no gate; call it on an input first (with record=True)")
        gate, temporal_attention = enc.last_gate, enc.last_temporal_attention
    g = check_code(gate, "gate")
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
        ta = check_code(temporal_attention, "temporal_attention")
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
