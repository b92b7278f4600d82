"""The cpp extra alone: ninja is installed, the wheel carries the C++ source, and the fused LIF
kernel builds and gives the eager backend's spikes exactly (float64)."""

from __future__ import annotations

import warnings

import _common as c
import torch

import gac_coding as gac
from gac_coding import neuron

c.from_the_wheel()
c.importable("ninja")
c.absent("sklearn", "snntorch", "norse", "spikingjelly")
x = torch.randn(6, 2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
lif = gac.LIF(threshold=0.5)
neuron.set_backend("eager")
eager = lif(x)
neuron.set_backend("cpp")
with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)  # a failed build warns and falls back: fail instead
    fused = lif(x)
assert neuron.get_backend() == "cpp"
assert torch.equal(fused, eager), "the C++ kernel's spikes differ from the eager backend's"
print(f"cpp: the fused kernel built and matches eager ({int(eager.sum())} spikes)")
