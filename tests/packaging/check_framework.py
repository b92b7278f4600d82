"""One framework extra alone (the case's name: snntorch, norse or spikingjelly): wrap takes that
framework's net; the other two give the documented ImportError naming their extra."""

from __future__ import annotations

import os

import _common as c
import torch
from torch import nn

import gac_coding as gac

FRAMEWORKS = ("snntorch", "norse", "spikingjelly")
mine = os.environ["PACKAGING_CASE"]
others = [f for f in FRAMEWORKS if f != mine]

c.from_the_wheel()
c.importable(mine)
c.absent(*others)  # (a framework's own dependencies, e.g. Norse's torchvision, may be present)
import gac_coding.adapters  # noqa: E402,F401 - importing the adapters imports no framework

assert mine not in c.optional_modules_loaded()

torch.manual_seed(0)
images = torch.rand(4, 1, 8, 8)
if mine == "snntorch":
    import snntorch as snn

    backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Flatten(), nn.Linear(8 * 8 * 8, 10),
                             snn.Leaky(beta=0.9, init_hidden=True, output=True))  # fmt: skip
    spk, mem = gac.wrap(backbone, T=3, in_channels=1, binarize=True)(images)
    out = mem
elif mine == "norse":
    import norse.torch as norse

    backbone = norse.SequentialState(
        nn.Conv2d(1, 8, 3, padding=1),
        norse.LIFCell(dt=0.005),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
        norse.LICell(dt=0.005),
    )
    out = gac.wrap(backbone, T=3, in_channels=1, binarize=True)(images)
else:
    from spikingjelly.activation_based import functional, layer, neuron

    backbone = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1),
        neuron.LIFNode(tau=2.0),
        layer.Flatten(),
        layer.Linear(8 * 8 * 8, 10),
    )
    functional.set_step_mode(backbone, "m")
    out = gac.wrap(backbone, T=3, in_channels=1, binarize=True)(images)
assert out.shape == (3, 4, 10), out.shape
out.sum().backward()  # trains: gradients reach the backbone
assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)
for framework in others:
    c.wrap_framework_missing(framework)
print(f"{mine}: wrap takes its nets (forward + backward); {', '.join(others)} name their extras")
