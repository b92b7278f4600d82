"""The events extra alone: tonic is installed (with the train extra it pulls in), the event data
sets are offered by gac-coding train, a missing data folder is one line."""

from __future__ import annotations

import _common as c

c.from_the_wheel()
c.importable("tonic", "numpy", "sklearn")
c.absent("snntorch", "norse", "spikingjelly", "nir")
from gac_coding.train.data import DATASETS  # noqa: E402

events = [d for d in ("nmnist", "dvsgesture", "cifar10dvs") if d in DATASETS]
assert events, DATASETS
import gac_coding.train.events  # noqa: E402,F401 - imports with the extra installed

for name in events:
    result = c.cli("train", "--model", "msresnet_tiny", "--dataset", name, "--data-dir", "no-such-folder",
                   "--T", "2", "--epochs", "1", "--batch-size", "4", "--lr", "0.1", "--out", f"run-{name}",
                   expect=2)  # fmt: skip
    c.one_line_error(result, "train", "no-such-folder")
print(f"events: {', '.join(events)} offered; a missing folder is one line")
