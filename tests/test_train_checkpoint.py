"""Checkpoints: atomic writes survive a crash mid-save, hostile files are refused unread."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gac_coding.train import TrainConfig, fit
from gac_coding.train import checkpoint as ckpt_mod
from gac_coding.train.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    capture_rng_state,
    load_checkpoint,
    read_jsonl,
    restore_rng_state,
    save_checkpoint,
    save_safetensors,
)


class _Hostile:
    """Unpickling this calls ``Path.touch(marker)``: code carried by the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    state = {"epoch": 3, "w": torch.arange(6.0).view(2, 3), "cfg": {"model": "m", "T": 4}}
    path = save_checkpoint(state, tmp_path / "sub" / "last.pt")
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["cfg"] == {"model": "m", "T": 4}
    assert torch.equal(loaded["w"], state["w"])
    assert _leftovers(path.parent) == []


@pytest.mark.parametrize("crash_in", ["torch.save", "os.replace"])
def test_crash_mid_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch, crash_in: str) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()
    real_save = torch.save

    def partial_save(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a zip")  # some bytes reach the temporary file, then the crash
        raise RuntimeError("disk full")

    def failing_replace(src, dst):
        raise OSError("power cut")

    if crash_in == "torch.save":
        monkeypatch.setattr(ckpt_mod.torch, "save", partial_save)
    else:
        monkeypatch.setattr(ckpt_mod.os, "replace", failing_replace)
    with pytest.raises((RuntimeError, OSError)):
        save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert path.read_bytes() == before
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["w"], torch.ones(1000))
    assert _leftovers(tmp_path) == []


def test_crash_while_training_saves_then_resume(tmp_path: Path, monkeypatch) -> None:
    """A crash inside epoch 2's save: last.pt still holds epoch 1 and the run resumes from it."""
    out = tmp_path / "run"
    cfg = dict(model="msresnet_tiny", dataset="digits", T=2, epochs=2, batch_size=256, lr=0.05,
               out=str(out), progress=False)  # fmt: skip
    real_save = torch.save
    calls = {"n": 0}

    def save_then_crash(obj, fh, *args, **kwargs):
        calls["n"] += 1
        if obj.get("epoch") == 2:
            fh.write(b"garbage")
            raise KeyboardInterrupt("killed mid-save")
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod.torch, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        fit(TrainConfig(**cfg), log=lambda _m: None)
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]  # line 2 written first
    first_line = (out / "metrics.jsonl").read_text().splitlines()[0]
    assert _leftovers(out) == []
    result = fit(TrainConfig(resume=True, **cfg), log=lambda _m: None)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert lines[0] == first_line and len(lines) == 2  # the orphan epoch-2 line was replaced
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_hostile_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "payload": _Hostile(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused to load.*nothing of it was executed"):
        load_checkpoint(path)
    assert not marker.exists()
    assert isinstance(UnsafeCheckpointError("x"), pickle.UnpicklingError)
    # the payload is real: an unrestricted load does run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_resume_from_hostile_last_pt_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "gac-coding/train-checkpoint-v1", "x": _Hostile(marker)}, out / "last.pt")
    with pytest.raises(UnsafeCheckpointError):
        fit(TrainConfig(model="msresnet_tiny", T=2, out=str(out), resume=True, progress=False),
            log=lambda _m: None)  # fmt: skip
    assert not marker.exists()


def test_truncated_and_missing_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"w": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="no file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(5)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint({"rng": capture_rng_state(gen)}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=gen))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    gen.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], gen)
    got = (random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=gen))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


def test_safetensors_weights_and_metadata(tmp_path: Path) -> None:
    from safetensors import safe_open

    lin = torch.nn.Linear(3, 2)
    path = save_safetensors(lin.state_dict(), tmp_path / "model.safetensors", {"T": 4})
    with safe_open(str(path), "pt") as fh:
        assert fh.metadata() == {"T": "4"}
        assert torch.equal(fh.get_tensor("weight"), lin.weight.detach())
    # the temporary file's private mode is not left on the result: it gets the umask's mode
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------- the shared reader's recorded settings
def test_recorded_settings_are_typed_and_checked(tmp_path: Path) -> None:
    from gac_coding.models.checkpoints import describe_settings, read_weights

    lin = torch.nn.Linear(3, 2)
    good = save_safetensors(lin.state_dict(), tmp_path / "good.safetensors",
                            {"model": "m", "T": 4, "num_classes": 2, "gac": False, "epoch": 3})  # fmt: skip
    weights = read_weights(good)
    assert weights.settings == {"model": "m", "T": 4, "num_classes": 2, "gac": False}  # typed, no epoch
    assert torch.equal(weights.state_dict["weight"], lin.weight.detach())
    assert describe_settings(weights.settings) == "a m run (T=4, 2 classes, direct coding)"
    for key, value, fragment in (("T", "-3", "recorded T '-3' is not an integer >= 1"),
                                 ("T", "four", "recorded T 'four'"),
                                 ("gac", "maybe", "recorded gac 'maybe' is not True or False"),
                                 ("model", "", "recorded model '' is not a model name")):  # fmt: skip
        path = save_safetensors(lin.state_dict(), tmp_path / f"{key}.safetensors", {key: value})
        with pytest.raises(CheckpointError, match=fragment):
            read_weights(path)
    pt = tmp_path / "cfg.pt"
    torch.save({"model": lin.state_dict(), "config": {"T": True}}, pt)  # a bool is not a count
    with pytest.raises(CheckpointError, match="recorded T True"):
        read_weights(pt)
    torch.save({"model": {"w": "not a tensor"}}, pt)
    with pytest.raises(CheckpointError, match="key 'w' does not hold a tensor"):
        read_weights(pt)
    torch.save([1, 2], pt)
    with pytest.raises(CheckpointError, match="expected a dict, got list"):
        read_weights(pt)
    with pytest.raises(TypeError, match="path: expected a file path"):
        read_weights(3)
