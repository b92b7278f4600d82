"""NeuroBench's Benchmark on a gac-coding model: its counts against this library's on the same data.

NeuroBench 2.3 (the ``bench`` extra) runs the model through ``gac_coding.integrations.neurobench``.
Its synaptic operations and activation sparsity are compared with
:func:`gac_coding.energy.estimate_energy` and :func:`gac_coding.analysis.spike_counts`: equal where
the definitions agree, and where they differ (NeuroBench counts only the non-zero inputs of a
real-valued layer and only the in-bounds taps of a dense one) the difference is computed here
independently, layer call by layer call.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gac_coding as gac
from gac_coding.analysis import spike_counts
from gac_coding.energy import calibrate_batchnorm, estimate_energy, exact_synops, is_binary
from gac_coding.integrations.neurobench import BatchFirst, activation_types, neurobench_model
from gac_coding.models import count_parameters, create_model
from gac_coding.train.data import load_digits_split


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = load_digits_split()
    return x[:10] * 3, y[:10]  # 3x: an untrained model's layers fire on most images


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
    calibrate_batchnorm(model, _data()[0])
    return model.eval()


def _independent_counts(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Per call of every Conv/Linear: NeuroBench's definitions, written with this library's
    exact_synops (each non-zero input times the weights it reaches)."""
    counts = {"ac": 0.0, "effective_mac": 0.0, "in_bounds": 0.0}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        reached = exact_synops(module, (x != 0).to(x.dtype))
        counts["ac" if is_binary(x) else "effective_mac"] += reached
        counts["in_bounds"] += exact_synops(module, torch.ones_like(x))

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_pre_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            for x, _ in loader:
                model(x)
    finally:
        for h in handles:
            h.remove()
    return counts


def test_synaptic_operations_and_activation_sparsity_match_the_library() -> None:
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations

    model = _model()
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=6)  # two batches: 6 and 4 images
    bench = Benchmark(
        neurobench_model(model),
        loader,
        [],
        [lambda logits: logits.argmax(1)],
        [
            [ParameterCount, Footprint, ConnectionSparsity],
            [ClassificationAccuracy, ActivationSparsity, SynapticOperations],
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = bench.run(quiet=True)
    synops = results["SynapticOperations"]
    report = estimate_energy(model, loader)
    samples = report.totals["samples"]
    assert samples == 10

    # no weight is exactly zero: NeuroBench skips zero weights, the energy report does not
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(bool(w.ne(0).all()) for w in weights)
    # accumulates: the same definition, the same integer count
    assert report.totals["synop"] > 0
    assert synops["Effective_ACs"] == report.totals["synop"] / samples
    independent = _independent_counts(model, loader)
    assert independent["ac"] == report.totals["synop"]
    # multiply-accumulates: NeuroBench counts the non-zero inputs of real-valued layers only
    # (here the digits' black pixels and silent channels), the report every input (dense)
    assert synops["Effective_MACs"] == independent["effective_mac"] / samples
    assert synops["Effective_MACs"] < report.totals["mac"] / samples
    # dense: NeuroBench counts the taps inside the input (zero padding excluded), the report all
    assert synops["Dense"] == independent["in_bounds"] / samples
    assert synops["Dense"] < report.totals["flops"] / samples

    # activation sparsity: the zero outputs of the spiking layers (encoder spikes and every LIF)
    spikes = total = 0
    for batch, _ in loader:
        for s, n in spike_counts(model, batch).values():
            spikes, total = spikes + s, total + n
    # NeuroBench averages the per-batch sparsities weighted by batch size: equal to the pooled
    # ratio (every batch has the same neurons per sample) up to float rounding
    assert results["ActivationSparsity"] == pytest.approx((total - spikes) / total, rel=0, abs=1e-12)
    assert 0 < results["ActivationSparsity"] < 1

    with torch.no_grad():
        accuracy = float(model(x).mean(0).argmax(1).eq(y).float().mean())
    assert results["ClassificationAccuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert results["ParameterCount"] == count_parameters(model)
    assert results["ConnectionSparsity"] == 0.0  # no zero weight, as checked above


def test_batch_first_model() -> None:
    model = create_model("vgg_tiny", num_classes=4, T=3, in_channels=2).eval()
    events = torch.rand(5, 3, 2, 8, 8)  # [B, T, C, H, W] as NeuroBench feeds it
    with torch.no_grad():
        expected = model(events.transpose(0, 1))  # [T, B, K]
        assert torch.equal(BatchFirst(model)(events), expected.mean(0))
        assert torch.equal(BatchFirst(model, readout="sum")(events), expected.sum(0))
        assert torch.equal(BatchFirst(model, readout="last")(events), expected[-1])
    with pytest.raises(ValueError, match=r"x: expected a batch-first \[B, C, H, W\]"):
        BatchFirst(model)(torch.rand(3, 2, 8))
    with pytest.raises(ValueError, match="readout: expected one of mean, sum, last, got 'max'"):
        BatchFirst(model, readout="max")
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        BatchFirst("vgg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"model: expected time-major logits \[T, B, K\], got \(5, 4\)"):
        BatchFirst(nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 4)))(torch.rand(5, 2, 8, 8))


def test_activation_modules_are_the_spiking_layers() -> None:
    from spikingjelly.activation_based import layer, neuron

    backbone = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = gac.wrap(backbone, T=2, in_channels=1)
    assert activation_types(net) == [gac.GACEncoder, neuron.LIFNode]
    wrapped = neurobench_model(net)
    names = [entry["layer"] for entry in wrapped.activation_layers()]
    assert names == [net.encoder, backbone[1]]  # not the attention's sigmoids
    with pytest.raises(ValueError, match="model: no spiking layer found"):
        neurobench_model(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
