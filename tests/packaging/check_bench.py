"""The bench extra alone: NeuroBench (with torchaudio and numba) next to torch, a model run through
gac_coding.integrations.neurobench, its accumulates equal to the energy report's."""

from __future__ import annotations

import warnings

import _common as c
import torch

c.from_the_wheel()
c.importable("neurobench", "torchaudio", "numba")
c.absent("norse", "spikingjelly", "nir", "onnx")

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from gac_coding.energy import calibrate_batchnorm, estimate_energy  # noqa: E402
from gac_coding.integrations.neurobench import neurobench_model  # noqa: E402
from gac_coding.models import create_model  # noqa: E402

torch.manual_seed(0)
model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
images = torch.rand(6, 1, 8, 8) * 3
calibrate_batchnorm(model, images)
data = DataLoader(TensorDataset(images, torch.zeros(6, dtype=torch.long)), batch_size=3)
bench = Benchmark(neurobench_model(model), data, [], [], [[], [ActivationSparsity, SynapticOperations]])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    results = bench.run(quiet=True)
report = estimate_energy(model, data)
accumulates = results["SynapticOperations"]["Effective_ACs"]
per_sample = report.totals["synop"] / report.totals["samples"]
assert accumulates > 0 and accumulates == per_sample, (results, report.totals)
print(f"bench: NeuroBench, torch {torch.__version__}: {accumulates:.0f} accumulates per sample, as counted")
