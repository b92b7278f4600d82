"""The train extra alone: the demo runs, train writes a run folder, energy reads its checkpoint,
a bad checkpoint is one line; no framework or other extra is needed."""

from __future__ import annotations

import json
from pathlib import Path

import _common as c

c.from_the_wheel()
c.importable("numpy", "sklearn", "torchvision", "matplotlib", "tqdm", "safetensors")
c.absent("snntorch", "norse", "spikingjelly", "nir", "tonic")
c.help_works()

c.cli("demo", "--epochs", "1", "--seeds", "1", "--T", "2", "--out", "demo", "--workers", "1")
report = json.loads(Path("demo/demo.json").read_text())
assert list(report["codings"]) == ["direct", "rate", "latency", "gac"]
assert Path("demo/demo.png").read_bytes()[:4] == b"\x89PNG"

run = ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", "1",
       "--batch-size", "256", "--lr", "0.1", "--out", "run", "--device", "cpu", "--no-progress"]  # fmt: skip
assert "done: epoch 1" in c.cli(*run).stdout
for name in ("last.pt", "best.pt", "model.safetensors", "metrics.jsonl"):
    assert Path("run", name).is_file(), name
for checkpoint in ("run/model.safetensors", "run/last.pt"):  # model, T, data set, size from the file
    out = c.cli("energy", "--checkpoint", checkpoint).stdout.splitlines()
    assert out[0].startswith("msresnet_tiny, weights: "), out
    assert out[1].startswith("measured on: digits, test split (the run's validation data)"), out
    assert out[1].endswith("input 1x8x8"), out
last = Path("run/last.pt")
last.write_bytes(last.read_bytes()[:1000])
c.one_line_error(c.cli(*run, "--resume", expect=2), "train", "truncated or corrupt")
print("train: demo, train, energy --checkpoint, one-line errors")
