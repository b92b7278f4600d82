"""The bare install (torch and numpy): the core, the energy command, --help everywhere, one-line
errors naming the extra for everything else."""

from __future__ import annotations

import sys

import _common as c
import torch

import gac_coding as gac

c.from_the_wheel()
c.absent(*c.OPTIONAL)  # nothing of the project's environment leaks in
c.importable("numpy")  # a base dependency (torch warns on import without it)
assert c.optional_modules_loaded() == []

torch.manual_seed(0)
net = gac.wrap(torch.nn.Sequential(gac.LIF(threshold=0.5), torch.nn.Flatten(2), torch.nn.Linear(64, 10)),
               T=4, in_channels=1)  # fmt: skip
assert net(torch.rand(3, 1, 8, 8)).shape == (4, 3, 10) and net.framework == "torch"
for framework in ("snntorch", "norse", "spikingjelly"):
    c.wrap_framework_missing(framework)
assert c.optional_modules_loaded() == [], c.optional_modules_loaded()

c.help_works()
for args in (["demo", "--epochs", "1"],
             ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", "1",
              "--batch-size", "8", "--lr", "0.1", "--out", "run"]):  # fmt: skip
    status, _, err = c.main_in_process(*args)
    assert status == 2, (args, status, err)
    c.one_line_error(err, args[0], 'pip install "gac-coding[train]"')
demo = c.cli("demo", expect=2)  # the console script: one line, no traceback, nothing else on stderr
c.one_line_error(demo, "demo", "needs the 'train' extra (no module named 'sklearn')")
energy = c.cli("energy", "--model", "msresnet_tiny", "--T", "2", "--input-size", "8", "8")
assert "paper accounting" in energy.stdout
print(f"bare: core, wrap, energy and --help with torch {torch.__version__} (python {sys.version.split()[0]})")
