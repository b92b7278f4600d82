"""The training loop: files per epoch, exact resume, errors, losses, CutMix, Poisson, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gac_coding.train import (
    MixedTarget,
    TrainConfig,
    cutmix,
    fit,
    load_checkpoint,
    spike_loss,
)
from gac_coding.train.checkpoint import read_jsonl

QUIET = {"log": lambda _m: None}


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(model="msresnet_tiny", dataset="digits", T=2, epochs=3, batch_size=128, lr=0.1,
                out=str(out), progress=False, device="cpu")  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


class _Stop(Exception):
    pass


def _stop_after(epoch: int):
    def hook(record: dict) -> None:
        if record["epoch"] == epoch:
            raise _Stop

    return hook


def test_training_writes_every_file_and_learns(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = fit(_cfg(out, epochs=2, cutmix=0.5), **QUIET)
    lines = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2]
    for key in ("epoch", "train_loss", "train_acc", "val_acc", "lr", "seconds"):
        assert key in lines[0]
    assert lines[0]["lr"] == pytest.approx(0.1) and lines[1]["lr"] == pytest.approx(0.05)  # cosine
    assert lines[1]["train_loss"] < lines[0]["train_loss"]
    assert lines[1]["train_acc"] > 0.5  # 10 classes: far above chance after two epochs
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "config"} <= set(last)
    assert {"python", "numpy", "torch", "cuda", "data"} <= set(last["rng"][0])
    assert last["config"]["model"] == "msresnet_tiny" and last["config"]["T"] == 2
    assert last["config"]["num_classes"] == 10
    best = load_checkpoint(out / "best.pt")
    assert best["best_val_acc"] == max(r["val_acc"] for r in lines)
    from safetensors.torch import load_file

    weights = load_file(str(out / "model.safetensors"))
    model_state = result.model.state_dict()
    assert set(weights) == set(model_state)
    assert all(torch.equal(weights[k], model_state[k]) for k in weights)


@pytest.mark.parametrize("extra", [{}, {"coding": "rate", "loss": "tet"}])
def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path, extra: dict) -> None:
    extra = dict(extra, cutmix=0.5, epochs=2)
    straight = fit(_cfg(tmp_path / "a", **extra), **QUIET).history
    with pytest.raises(_Stop):
        fit(_cfg(tmp_path / "b", **extra), on_epoch_end=_stop_after(1), **QUIET)
    first = (tmp_path / "b" / "metrics.jsonl").read_text()
    resumed = fit(_cfg(tmp_path / "b", resume=True, **extra), **QUIET).history
    assert (tmp_path / "b" / "metrics.jsonl").read_text().startswith(first)  # kept as it was
    on_disk = read_jsonl(tmp_path / "b" / "metrics.jsonl")
    reference = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    assert len(on_disk) == len(reference) == 2 == len(resumed) == len(straight)
    for got, want in zip(on_disk, reference, strict=True):
        got.pop("seconds")
        want.pop("seconds")
        assert got == want  # bit-identical losses, accuracies and learning rates


def _without_seconds(path: Path) -> list[dict]:
    lines = read_jsonl(path)
    for line in lines:
        line.pop("seconds")
    return lines


def test_stop_after_then_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = fit(_cfg(tmp_path / "a", epochs=2, cutmix=0.5), **QUIET)
    messages: list[str] = []
    stopped = fit(_cfg(tmp_path / "b", epochs=2, stop_after=1, cutmix=0.5), log=messages.append)
    assert [r["epoch"] for r in stopped.history] == [1]
    assert any("stopping after epoch 1 of 2" in m and "--resume" in m for m in messages)
    last = load_checkpoint(tmp_path / "b" / "last.pt")
    assert last["epoch"] == 1 and "stop_after" not in last["config"] and last["config"]["epochs"] == 2
    assert (tmp_path / "b" / "model.safetensors").is_file() and (tmp_path / "b" / "best.pt").is_file()
    before = (tmp_path / "b" / "last.pt").read_bytes()
    messages.clear()  # the same job again, e.g. a resubmitted cluster job: nothing left to do
    again = fit(_cfg(tmp_path / "b", epochs=2, stop_after=1, cutmix=0.5, resume=True), log=messages.append)
    assert [r["epoch"] for r in again.history] == [1]
    assert (tmp_path / "b" / "last.pt").read_bytes() == before
    assert any("nothing to do" in m and "stop-after 1" in m for m in messages)
    assert not any("stopping after" in m for m in messages)
    resumed = fit(_cfg(tmp_path / "b", epochs=2, cutmix=0.5, resume=True), **QUIET)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert len(straight.history) == 2
    assert _without_seconds(tmp_path / "b" / "metrics.jsonl") == _without_seconds(
        tmp_path / "a" / "metrics.jsonl"
    )  # bit-identical losses, accuracies and learning rates
    a = load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stop_after_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"stop_after: expected an integer >= 1, got 0"):
        _cfg(tmp_path, stop_after=0).validate()
    with pytest.raises(TypeError, match=r"stop_after: expected an int, got float"):
        _cfg(tmp_path, stop_after=1.0).validate()
    with pytest.raises(TypeError, match=r"stop_after: expected an int, got bool"):
        _cfg(tmp_path, stop_after=True).validate()
    with pytest.raises(ValueError, match=r"stop_after: expected at most epochs \(3\), got 4"):
        fit(_cfg(tmp_path / "x", epochs=3, stop_after=4), **QUIET)
    assert not (tmp_path / "x").exists()  # refused before anything was written
    _cfg(tmp_path, epochs=3, stop_after=3).validate()  # stopping at the end: a plain run


def test_run_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model: unknown model 'resnet9'.*msresnet_tiny"):
        fit(_cfg(tmp_path / "x", model="resnet9"), **QUIET)
    with pytest.raises(ValueError, match="dataset: expected one of"):
        fit(_cfg(tmp_path / "x", dataset="svhn"), **QUIET)
    with pytest.raises(ValueError, match="T: expected an integer >= 1, got 0"):
        fit(_cfg(tmp_path / "x", T=0), **QUIET)
    with pytest.raises(ValueError, match="cutmix: expected a probability"):
        fit(_cfg(tmp_path / "x", cutmix=1.5), **QUIET)
    with pytest.raises(ValueError, match="resume: expected .*last.pt"):
        fit(_cfg(tmp_path / "empty", resume=True), **QUIET)
    out = tmp_path / "run"
    fit(_cfg(out, epochs=1), **QUIET)
    with pytest.raises(ValueError, match="already holds another run's files.*--resume"):
        fit(_cfg(out, epochs=1), **QUIET)
    with pytest.raises(ValueError, match="T: the checkpoint .* T=2, got T=3"):
        fit(_cfg(out, epochs=2, T=3, resume=True), **QUIET)
    with pytest.raises(ValueError, match="model: the checkpoint"):
        fit(_cfg(out, epochs=2, model="msresnet18_cifar", resume=True), **QUIET)
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1]  # nothing was touched


def test_resume_when_finished_trains_nothing_and_longer_epochs_extend(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(_cfg(out, epochs=1), **QUIET)
    before = (out / "last.pt").read_bytes()
    messages: list[str] = []
    result = fit(_cfg(out, epochs=1, resume=True), log=messages.append)
    assert len(result.history) == 1 and (out / "last.pt").read_bytes() == before
    assert any("nothing to do" in m for m in messages)
    extended = fit(_cfg(out, epochs=2, resume=True), **QUIET)  # a longer schedule: re-planned
    assert [r["epoch"] for r in extended.history] == [1, 2]
    assert extended.history[1]["lr"] == pytest.approx(0.05)  # cos schedule of 2 epochs at epoch 2
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_progress_bars_and_plain_lines(tmp_path: Path, capsys) -> None:
    fit(_cfg(tmp_path / "bars", epochs=1, progress=True))
    captured = capsys.readouterr()
    assert "epochs" in captured.err and "epoch 1/1" in captured.out + captured.err
    fit(_cfg(tmp_path / "plain", epochs=1, progress=False))
    captured = capsys.readouterr()
    assert captured.err == "" and "epoch 1/1  train_loss" in captured.out


# --------------------------------------------------------------------------- losses, CutMix
def test_losses_match_their_definitions() -> None:
    logits = torch.randn(3, 5, 4)
    y = torch.tensor([0, 1, 2, 3, 0])
    assert torch.allclose(spike_loss(logits, y, "ce"), F.cross_entropy(logits.mean(0), y))
    per_step = torch.stack([F.cross_entropy(logits[t], y) for t in range(3)]).mean()
    assert torch.allclose(spike_loss(logits, y, "tet"), per_step)
    smooth = spike_loss(logits, y, "ce", label_smoothing=0.2)
    assert torch.allclose(smooth, F.cross_entropy(logits.mean(0), y, label_smoothing=0.2))
    assert not torch.allclose(smooth, spike_loss(logits, y, "ce"))
    y_b = torch.tensor([1, 1, 1, 1, 1])
    mixed = spike_loss(logits, MixedTarget(y, y_b, 0.25), "tet")
    want = 0.25 * per_step + 0.75 * torch.stack([F.cross_entropy(logits[t], y_b) for t in range(3)]).mean()
    assert torch.allclose(mixed, want)
    with pytest.raises(ValueError, match="loss: expected one of"):
        spike_loss(logits, y, "mse")
    with pytest.raises(ValueError, match="logits: expected \\[T, B, classes\\]"):
        spike_loss(logits[0], y)


def test_cutmix_pastes_a_box_and_corrects_lambda() -> None:
    torch.manual_seed(1)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 16, 16).contiguous()
    y = torch.tensor([0, 1, 2, 3])
    for _ in range(10):
        mixed, target = cutmix(x, y, probability=1.0)
        assert isinstance(target, MixedTarget)
        for i in range(4):
            own = (mixed[i, 0] == x[i, 0, 0, 0]).float().mean().item()
            src = int(target.y_b[i])
            if src != i:  # pasted pixels come from the image whose label is y_b
                assert own == pytest.approx(target.lam)
                assert bool(((mixed[i] == i) | (mixed[i] == src)).all())
        assert torch.equal(target.y_a, y)
    same, target = cutmix(x, y, probability=0.0)
    assert same is x and target is y
    with pytest.raises(ValueError, match="probability: expected a probability"):
        cutmix(x, y, probability=2.0)


# ----------------------------------------------------------------------------------- torchrun
def _torchrun(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gac_coding", "train", "--model", "msresnet_tiny", "--dataset", "digits",
           "--T", "2", "--epochs", "2", "--batch-size", "128", "--lr", "0.1", "--cutmix", "0.5",
           "--out", str(out), "--device", "cpu", "--no-progress", *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_torchrun_two_cpu_processes_and_stop_resume(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = _torchrun(out)
    assert "2 process(es) on cpu" in proc.stdout
    assert proc.stdout.count("epoch 1/2") == 1  # only rank 0 logs
    lines = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["world_size"] == 2 and len(ckpt["rng"]) == 2  # both ranks' states
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt",
        "last.pt",
        "metrics.jsonl",
        "model.safetensors",
    ]
    # metrics are reduced over ranks: the whole test set (360 images) is scored exactly once
    assert all(round(r["val_acc"] * 360) == pytest.approx(r["val_acc"] * 360) for r in lines)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1

    # the same run as two jobs: --stop-after 1, then --resume; both ranks' random states come back
    split = tmp_path / "split"
    first = _torchrun(split, "--stop-after", "1")
    assert first.stdout.count("stopping after epoch 1 of 2") == 1 and "epoch 2/2" not in first.stdout
    saved = load_checkpoint(split / "last.pt")
    assert saved["epoch"] == 1 and len(saved["rng"]) == 2
    second = _torchrun(split, "--resume")
    assert "resume: continuing" in second.stdout and "random streams restart" not in second.stdout
    assert second.stdout.count("epoch 2/2") == 1 and "epoch 1/2" not in second.stdout
    assert _without_seconds(split / "metrics.jsonl") == _without_seconds(out / "metrics.jsonl")
    resumed = load_checkpoint(split / "last.pt")
    for rank in (0, 1):  # every random state of both ranks after epoch 2 matches the straight run
        got, want = resumed["rng"][rank], ckpt["rng"][rank]
        assert torch.equal(got["torch"], want["torch"]) and torch.equal(got["data"], want["data"])
        assert got["python"] == want["python"] and torch.equal(got["numpy"][1], want["numpy"][1])
    assert all(torch.equal(resumed["model"][k], ckpt["model"][k]) for k in ckpt["model"])
