"""Observer-model metrics on hand-built sequences, firing rates per layer, and the plots."""

from __future__ import annotations

import math
import struct

import pytest
import torch
from torch import nn

import gac_coding as gac
from gac_coding.analysis import (
    coding_metrics,
    firing_rates,
    plot_energy,
    plot_firing_rates,
    plot_gate,
    plot_raster,
)
from gac_coding.energy import calibrate_batchnorm, estimate_energy
from gac_coding.models import create_model


def _binary(*shape: int, seed: int, p: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


# ------------------------------------------------------------------------------- metrics


def test_constant_code() -> None:
    frame = _binary(1, 8, 3, 4, seed=0)  # every sample its own map, repeated over T
    o = frame.expand(5, 8, 3, 4)
    m = coding_metrics(o)
    assert m["distinct_steps"] == 1.0 and m["periodicity"] == 1 and m["periodic_fraction"] == 1.0
    assert m["temporal_diversity"] == 0.0
    assert m["firing_rate"] == pytest.approx(float(frame.mean()))
    # each neuron's pattern is all-ones or all-zeros: its entropy is the binary entropy of the
    # fraction q of samples where it fires
    q = frame[0].reshape(8, -1).mean(0).double()
    h = torch.where((q > 0) & (q < 1), -(q * q.log2() + (1 - q) * (1 - q).log2()), torch.zeros_like(q))
    assert m["entropy_bits"] == pytest.approx(float(h.mean()))
    spikes_per_sample = float(o.sum()) / 8
    assert m["bits_per_spike"] == pytest.approx(float(h.sum()) / spikes_per_sample)


def test_periodic_code_with_known_period() -> None:
    base = _binary(3, 4, 10, seed=1)  # three distinct step maps per sample
    o = torch.cat([base, base, base[:1]])  # T = 7, period 3
    m = coding_metrics(o)
    assert m["periodicity"] == 3 and m["distinct_steps"] == 3.0 and m["periodic_fraction"] == 1.0
    assert m["T"] == 7 and m["B"] == 4 and m["neurons"] == 10
    # one sample aperiodic -> no common period, and 3 of 4 samples are periodic on their own
    o2 = o.clone()
    o2[6, 0] = 1.0 - o2[6, 0]
    m2 = coding_metrics(o2)
    assert m2["periodicity"] is None and m2["periodic_fraction"] == 0.75


def test_max_period_drops_periods_checked_on_too_few_steps() -> None:
    base = _binary(5, 2, 12, seed=3)  # five distinct step maps per sample
    o = torch.cat([base, base[:1]])  # T = 6: only o[5] == o[0], "period" 5 on a single pair
    assert coding_metrics(o)["periodicity"] == 5 and coding_metrics(o)["periodic_fraction"] == 1.0
    m = coding_metrics(o, max_period=3)  # at least two full periods: none
    assert m["periodicity"] is None and m["periodic_fraction"] == 0.0
    p3 = torch.cat([base[:3], base[:3]])  # T = 6, period 3: found up to max_period 3, not 2
    assert coding_metrics(p3, max_period=3)["periodicity"] == 3
    assert coding_metrics(p3, max_period=2)["periodicity"] is None
    assert coding_metrics(p3, max_period=100)["periodicity"] == 3  # beyond T-1: same as default
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_period: expected an integer >= 1 or None, got"):
            coding_metrics(p3, max_period=bad)
    for bad in (2.0, True):  # a wrong type is a TypeError (the rule of gac_coding._checks)
        with pytest.raises(TypeError, match="max_period: expected an int or None, got"):
            coding_metrics(p3, max_period=bad)  # type: ignore[arg-type]


def test_period_two_by_hand_and_diversity_values() -> None:
    o = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]).view(4, 1, 2)
    m = coding_metrics(o)
    assert m["periodicity"] == 2 and m["distinct_steps"] == 2.0
    # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3): orthogonal, equal, orthogonal, orthogonal, equal, orthogonal
    assert m["temporal_diversity"] == pytest.approx(4 / 6)
    o = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(2, 1, 2)
    assert coding_metrics(o)["temporal_diversity"] == pytest.approx(1 - 1 / math.sqrt(2))
    zeros = torch.zeros(3, 2, 4)  # all-zero maps are identical (cosine 1)
    mz = coding_metrics(zeros)
    assert mz["temporal_diversity"] == 0.0 and mz["bits_per_spike"] == 0.0 and mz["firing_rate"] == 0.0
    one_zero = torch.tensor([[0.0, 0.0], [1.0, 0.0]]).view(2, 1, 2)  # zero vs non-zero: cosine 0
    assert coding_metrics(one_zero)["temporal_diversity"] == 1.0


def test_entropy_and_bits_per_spike_by_hand() -> None:
    # one neuron, T = 2, four samples with patterns 10, 10, 01, 00: p = 1/2, 1/4, 1/4
    o = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]).view(2, 4, 1)
    m = coding_metrics(o)
    assert m["entropy_bits"] == pytest.approx(1.5)
    assert m["bits_per_spike"] == pytest.approx(1.5 / (3 / 4))
    assert m["firing_rate"] == pytest.approx(3 / 8) and m["max_entropy_bits"] == 2.0


def test_random_code() -> None:
    T, B, N = 8, 64, 50
    o = _binary(T, B, N, seed=2)
    m = coding_metrics(o)
    assert m["periodicity"] is None and m["periodic_fraction"] == 0.0
    assert m["distinct_steps"] == float(T)
    # 256 possible patterns over 64 samples: almost all distinct, entropy close to log2(64) = 6
    assert 5.5 < m["entropy_bits"] <= 6.0
    assert m["bits_per_spike"] == pytest.approx(m["entropy_bits"] * N / (float(o.sum()) / B))
    assert 0.3 < m["temporal_diversity"] < 0.7  # independent halves: cosine about 1/2


def test_levels_and_tolerance() -> None:
    # gated values: with the default levels=2 only the spike pattern counts
    o = torch.tensor([[0.2, 0.9, 0.0, 0.0]]).view(1, 4, 1)
    assert coding_metrics(o)["entropy_bits"] == pytest.approx(1.0)  # fire / not, half each
    assert coding_metrics(o, levels=None)["entropy_bits"] == pytest.approx(1.5)
    assert coding_metrics(o, levels=3)["entropy_bits"] == pytest.approx(1.5)  # 0.2 -> 1, 0.9 -> 2
    near = torch.tensor([0.5, 0.5001, 0.5]).view(3, 1, 1)
    assert coding_metrics(near)["distinct_steps"] == 2.0
    assert coding_metrics(near, atol=1e-3)["distinct_steps"] == 1.0
    assert coding_metrics(near, atol=1e-3)["periodicity"] == 1
    signed = torch.tensor([-1.0, 1.0, 0.0, 1.0]).view(1, 4, 1)
    assert coding_metrics(signed)["entropy_bits"] == pytest.approx(1.5)


def test_long_sequences_take_the_row_fallback() -> None:
    T = 70  # 2^70 patterns do not fit an int64 code
    o = torch.zeros(T, 4, 1)
    o[:, 0, 0] = 1.0
    o[:, 1, 0] = 1.0
    o[5, 2, 0] = 1.0
    assert coding_metrics(o)["entropy_bits"] == pytest.approx(1.5)


def test_direct_coding_is_constant_and_gac_varies() -> None:
    from gac_coding.coding import DirectEncoder

    x = torch.rand(4, 1, 8, 8)
    u = DirectEncoder(1, 4, T=4)(x)
    md = coding_metrics(u, levels=None)
    assert md["distinct_steps"] == 1.0 and md["periodicity"] == 1
    enc = gac.GACEncoder(1, 4, T=4)
    enc.bn.weight.data.fill_(3.0)  # make the untrained stem fire
    o = enc(x)
    assert float(enc.last_spikes.sum()) > 0
    mg = coding_metrics(o)
    assert mg["temporal_diversity"] > 0.0


def test_metrics_reject_bad_input() -> None:
    with pytest.raises(TypeError, match="o: expected a torch.Tensor"):
        coding_metrics([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"o: expected a time-major code \[T, B, \.\.\.\]"):
        coding_metrics(torch.ones(3))
    with pytest.raises(ValueError, match="o: contains NaN"):
        coding_metrics(torch.full((2, 2), math.nan))
    with pytest.raises(ValueError, match="levels"):
        coding_metrics(torch.ones(2, 2), levels=1)
    with pytest.raises(ValueError, match="atol"):
        coding_metrics(torch.ones(2, 2), atol=-1.0)
    with pytest.raises(TypeError, match="o: expected a real"):
        coding_metrics(torch.ones(2, 2, dtype=torch.complex64))


# ------------------------------------------------------------------------------- firing rates


def test_firing_rates_by_hand() -> None:
    net = nn.Sequential(gac.LIF(decay=0.5, threshold=1.0))
    x = torch.full((4, 2, 3), 0.7)  # 0.7, 1.05 -> fire, reset, ... : spikes 0, 1, 0, 1
    assert firing_rates(net, x) == {"0": 0.5}


def test_firing_rates_of_a_model() -> None:
    model = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1)
    model.train()
    x = torch.rand(2, 1, 8, 8)
    lifs = {n: m for n, m in model.named_modules() if isinstance(m, gac.LIF)}
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: outputs.setdefault(n, o)) for n, m in lifs.items()]
    model.eval()  # by hand: one eval-mode forward, the fraction of non-zero outputs of each LIF
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    expected = {n: float(o.ne(0).float().mean()) for n, o in outputs.items()}
    expected_encoder = float(model.encoder.last_spikes.mean())
    model.train()
    rates = firing_rates(model, x)
    assert list(rates) == ["encoder.spikes", *lifs]
    assert rates["encoder.spikes"] == pytest.approx(expected_encoder)
    assert {n: rates[n] for n in lifs} == pytest.approx(expected)
    assert model.training  # restored


def test_firing_rates_of_spikingjelly_nodes() -> None:
    from spikingjelly.activation_based import layer, neuron

    net = nn.Sequential(layer.Linear(3, 4, step_mode="m"), neuron.IFNode(step_mode="m"))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    x = torch.full((4, 1, 3), 0.5)  # 1.5 per step: fires every step (v reset to 0)
    assert firing_rates(net, x) == {"1": 1.0}
    with pytest.raises(TypeError, match="model"):
        firing_rates("net", x)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100 and len(data) > 2000
    return width, height


def test_plots_write_valid_pngs(tmp_path) -> None:
    from matplotlib.figure import Figure

    enc = gac.GACEncoder(1, 4, T=3)
    enc.bn.weight.data.fill_(3.0)
    o = enc(torch.rand(2, 1, 8, 8))

    fig = plot_raster(o, neurons=30, path=tmp_path / "raster.png")
    assert isinstance(fig, Figure)
    _check_png(tmp_path / "raster.png")
    assert len(fig.axes[0].collections[0].get_offsets()) == int(
        (o.reshape(3, 2, -1)[:, 0, torch.linspace(0, 255, 30).round().long()] != 0).sum()
    )
    fig = plot_raster(o, sample=1, neurons=[0, 5, 7])
    assert fig.axes[0].get_ylim() == (-0.5, 2.5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "5", "7"]  # their own indices

    fig = plot_gate(enc, sample=1, path=tmp_path / "gate.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 3 + 1 + 2
    _check_png(tmp_path / "gate.png")
    plot_gate(enc.last_gate, path=str(tmp_path / "gate2.png"))  # a bare tensor, no TA line
    _check_png(tmp_path / "gate2.png")

    model = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1)
    x = torch.rand(2, 1, 8, 8)
    rates = firing_rates(model, x)
    fig = plot_firing_rates(rates, path=tmp_path / "rates.png")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(rates)
    _check_png(tmp_path / "rates.png")

    calibrate_batchnorm(model, torch.rand(8, 1, 8, 8))  # BN statistics that let the backbone fire
    report = estimate_energy(model, x)
    fig = plot_energy(report, path=tmp_path / "energy.png")
    _check_png(tmp_path / "energy.png")
    # one bar per layer and kind of operation where its energy is not zero, in µJ per sample,
    # centred on the layer's row (MAC above, AC below)
    mac_bars, ac_bars = fig.axes[0].containers
    for bars, key, e_pj, offset in ((mac_bars, "mac_paper", 4.6, -0.2), (ac_bars, "ac_paper", 0.9, 0.2)):
        expected = [(i + offset, e_pj * getattr(ly, key) * 1e-6 / 2)
                    for i, ly in enumerate(report.layers) if getattr(ly, key) > 0]  # fmt: skip
        drawn = [(b.get_y() + b.get_height() / 2, b.get_width()) for b in bars]
        assert len(drawn) == len(expected) > 0
        assert [v for pair in drawn for v in pair] == pytest.approx([v for pair in expected for v in pair])
    widths = [b.get_width() for b in mac_bars] + [b.get_width() for b in ac_bars]
    spans_decades = max(widths) > 100 * min(widths)
    assert fig.axes[0].get_xscale() == ("log" if spans_decades else "linear")
    assert plot_energy(report, log=not spans_decades).axes[0].get_xscale() == (
        "linear" if spans_decades else "log"
    )
    plot_energy(report.to_dict())  # the dict form works too


def test_plots_reject_bad_input() -> None:
    enc = gac.GACEncoder(1, 2, T=2)
    with pytest.raises(ValueError, match="gate: the encoder holds no gate"):
        plot_gate(enc)
    with pytest.raises(ValueError, match="sample"):
        plot_raster(torch.ones(2, 3, 4), sample=3)
    with pytest.raises(ValueError, match="neurons"):
        plot_raster(torch.ones(2, 3, 4), neurons=[9])
    with pytest.raises(ValueError, match="rates"):
        plot_firing_rates({})
    with pytest.raises(TypeError, match="report"):
        plot_energy(42)  # type: ignore[arg-type]
    report = estimate_energy(gac.GACEncoder(1, 2, T=2), torch.rand(1, 1, 4, 4))
    with pytest.raises(TypeError, match="log"):
        plot_energy(report, log="yes")  # type: ignore[arg-type]


# A notebook run in a real kernel with matplotlib's inline backend (what Jupyter uses): every plot
# shows exactly one picture whether it is the cell's last expression, followed by plt.show(), or
# neither; path= writes the file; pyplot holds none of them afterwards.
_SETUP = """
import matplotlib.pyplot as plt
import torch
import gac_coding as gac
from gac_coding.analysis import firing_rates, plot_energy, plot_firing_rates, plot_gate, plot_raster
from gac_coding.energy import estimate_energy
enc = gac.GACEncoder(1, 4, T=3)
code = enc(torch.rand(2, 1, 8, 8))
rates = firing_rates(enc, torch.rand(2, 1, 8, 8))
report = estimate_energy(enc, torch.rand(1, 1, 8, 8))
"""
_PLOTS = {
    "raster": "plot_raster(code, neurons=20)",
    "gate": "plot_gate(enc)",
    "rates": "plot_firing_rates(rates)",
    "energy": "plot_energy(report)",
}
_STYLES = {
    "last expression": "{call}",
    "plt.show()": "{call}\nplt.show()",
    "assigned, shown at the end of the cell": "fig = {call}\nprint(type(fig).__mro__[1].__name__)",
    "shown again in a later cell": "fig",
}


def test_plots_show_once_in_a_notebook(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as in Jupyter
    new = nbformat.v4.new_code_cell
    cells, expected = [new(_SETUP)], {}
    for plot, call in _PLOTS.items():
        for style, template in _STYLES.items():
            expected[len(cells)] = (plot, style)
            cells.append(new(template.format(call=call)))
    saved = tmp_path / "energy.png"
    expected[len(cells)] = ("energy", "last expression with path=")
    cells.append(new(f"plot_energy(report, path={str(saved)!r})"))
    cells.append(new("print('open figures:', plt.get_fignums())"))
    nb = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    def outputs(cell, kind):
        return [out for out in cell.outputs if kind in out.get("data", {})]

    assert not [out for cell in nb.cells for out in cell.outputs if out.output_type == "error"]
    assert not outputs(nb.cells[0], "image/png")
    for index, (plot, style) in expected.items():
        pictures = outputs(nb.cells[index], "image/png")
        assert len(pictures) == 1, (plot, style, [out.output_type for out in nb.cells[index].outputs])
        if style.startswith("assigned"):
            assert "Figure\n" in nb.cells[index].outputs[0].get("text", "")  # a Figure came back
    _check_png(saved)
    assert nb.cells[-1].outputs[0]["text"] == "open figures: []\n"


def test_plots_do_not_accumulate_in_pyplot(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import pickle

    import matplotlib
    import matplotlib.pyplot as plt

    from gac_coding import _plotting

    assert matplotlib.get_backend().lower() == "agg"  # tests/conftest.py: as in a script, CI
    rates = {"a": 0.1, "b": 0.2}
    before = plt.get_fignums()
    for i in range(100):
        fig = plot_firing_rates(rates, path=tmp_path / "rates.png" if i == 99 else None)
    assert plt.get_fignums() == before  # pyplot holds none of them
    _check_png(tmp_path / "rates.png")
    assert pickle.loads(pickle.dumps(fig)).axes[0].get_xlabel() == "firing rate"

    # where the backend can show figures (Qt, Tk, ...), pyplot holds each plot as it holds those of
    # plt.subplots, until the window or plt.close lets go of it
    monkeypatch.setattr(_plotting, "_backend", lambda: "qtagg")
    figs = [plot_firing_rates(rates) for _ in range(3)]
    try:
        assert plt.get_fignums() == [*before, *(f.number for f in figs)]
        plt.close(figs[0])
        assert plt.get_fignums() == [*before, figs[1].number, figs[2].number]
    finally:
        for f in figs:
            plt.close(f)
    assert plt.get_fignums() == before
