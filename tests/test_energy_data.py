"""Energy on data: ``estimate_energy`` over many batches, ``gac-coding energy`` on a run's own
validation images, the input size recorded by training and shared with ``gac-coding export``.

The references are independent of the summing code: per-batch reports of the one-tensor path
combined by hand (sums of integer counts, energy over the image count), spikes counted by a
forward hook written here, and the digits split read straight from scikit-learn's loader.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gac_coding.cli import main
from gac_coding.energy import estimate_energy
from gac_coding.models import create_model
from gac_coding.train import load_digits_split

# --------------------------------------------------------------------- estimate_energy on batches


def _spiking_net() -> nn.Module:
    """A small net whose second convolution receives binary spikes (a threshold on the first)."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 3, 3, stride=2)
            self.fc = nn.Linear(3 * 3 * 3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            spikes = (self.conv1(x) > 0.2).to(x.dtype)
            return self.fc(self.conv2(spikes).flatten(1))

    torch.manual_seed(1)
    return Net().double()


def _by_hand(model: nn.Module, batches: list[torch.Tensor], batch_dim: int = 0) -> dict:
    """One report per batch (the one-tensor path), combined by hand; samples along ``batch_dim``."""
    reports = [estimate_energy(model, b) for b in batches]
    names = [layer.name for layer in reports[0].layers]
    layers = {}
    for i, name in enumerate(names):
        per = [r.layers[i] for r in reports]
        elements = [math.prod(layer.input_shape) * layer.calls for layer in per]
        spikes = [layer.firing_rate * n for layer, n in zip(per, elements, strict=True)]
        layers[name] = {
            "synop": sum(layer.synop for layer in per),
            "mac": sum(layer.mac for layer in per),
            "ac_paper": sum(layer.ac_paper for layer in per),
            "firing_rate": sum(spikes) / sum(elements),
        }
    images = sum(int(b.shape[batch_dim]) for b in batches)
    energy = sum(r.totals["energy_mj"] for r in reports)
    return {"layers": layers, "images": images, "energy_mj": energy,
            "per_image": energy / images, "synop": sum(r.totals["synop"] for r in reports),
            "mac": sum(r.totals["mac"] for r in reports)}  # fmt: skip


def _check_against(report, expected: dict) -> None:
    t = report.totals
    assert t["samples"] == expected["images"] == t["batch_size"]
    assert t["synop"] == expected["synop"] and t["mac"] == expected["mac"]  # integers: exact
    assert t["energy_mj"] == pytest.approx(expected["energy_mj"], rel=1e-12)
    assert t["energy_mj_per_sample"] == pytest.approx(expected["per_image"], rel=1e-12)
    for layer in report.layers:
        want = expected["layers"][layer.name]
        assert (layer.synop, layer.mac) == (want["synop"], want["mac"]), layer.name
        assert layer.ac_paper == pytest.approx(want["ac_paper"], rel=1e-12)
        assert layer.firing_rate == pytest.approx(want["firing_rate"], rel=1e-12)


def test_a_loader_of_unequal_batches_is_the_sum_of_its_batches() -> None:
    model = _spiking_net()
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(23, 1, 8, 8, generator=gen, dtype=torch.float64)
    labels = torch.zeros(23, dtype=torch.long)
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)  # 8, 8, 7
    expected = _by_hand(model, [images[:8], images[8:16], images[16:]])
    report = estimate_energy(model, loader)
    assert report.totals["batches"] == 3
    _check_against(report, expected)
    # the spike rate into conv2 differs between batches: the pooled rate weighs them by size
    rates = [estimate_energy(model, b).layers[1].firing_rate for b in (images[:8], images[16:])]
    assert rates[0] != rates[1] and report.layers[1].binary_input
    assert report.layers[1].synop > 0
    # the same images as one tensor: the same integer counts
    whole = estimate_energy(model, images)
    assert (whole.totals["synop"], whole.totals["mac"]) == (report.totals["synop"], report.totals["mac"])
    # any iterable: a generator of tensors, a list of (x, y) lists
    gen_report = estimate_energy(model, (b for b in (images[:8], images[8:16], images[16:])))
    assert gen_report.to_dict() == report.to_dict()
    pairs = [[images[:8], labels[:8]], [images[8:], labels[8:]]]
    assert estimate_energy(model, pairs).totals["synop"] == report.totals["synop"]


def test_time_major_batches_count_their_samples_in_dim_1() -> None:
    model = create_model("msresnet_tiny", num_classes=4, T=2, in_channels=2, coding="direct")
    gen = torch.Generator().manual_seed(0)
    frames = torch.bernoulli(torch.full((2, 5, 2, 8, 8), 0.3), generator=gen)
    report = estimate_energy(model, [frames[:, :3], frames[:, 3:]])
    assert (report.totals["samples"], report.totals["batches"], report.totals["T"]) == (5, 2, 2)
    _check_against(report, _by_hand(model, [frames[:, :3], frames[:, 3:]], batch_dim=1))


def test_bad_batches_name_the_argument() -> None:
    model = _spiking_net()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="x: the iterable yielded no batches"):
        estimate_energy(model, [])
    with pytest.raises(TypeError, match="x: batch 1 is str; expected a tensor"):
        estimate_energy(model, [x, "x"])
    with pytest.raises(TypeError, match="x: batch 0 is a tuple whose first item is int"):
        estimate_energy(model, [(1, x)])
    with pytest.raises(TypeError, match="x: expected a tensor, a DataLoader or an iterable"):
        estimate_energy(model, {"x": x})
    with pytest.raises(TypeError, match="x: expected a tensor"):
        estimate_energy(model, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x: batch 1 has shape \[2, 1, 6, 6\], batch 0 has \[2, 1, 8, 8\]"):
        estimate_energy(model, [x, torch.rand(2, 1, 6, 6, dtype=torch.float64)])
    # the batch dimension may vary, but only one dimension, the same in every batch
    with pytest.raises(ValueError, match=r"batch 2 has shape \[3, 1, 8, 9\].*\(dimension 0\)"):
        estimate_energy(model, [x, x[:1], torch.rand(3, 1, 8, 9, dtype=torch.float64)])
    bad = x.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="x: batch 1 contains NaN"):
        estimate_energy(model, [x, bad])
    with pytest.raises(ValueError, match="batch_size: applies to a single input tensor"):
        estimate_energy(model, [x], batch_size=2)


# ----------------------------------------------------------------- gac-coding energy on a run


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A real (tiny) training run: msresnet_tiny, T=2, one epoch of the digits."""
    run = tmp_path_factory.mktemp("energy") / "runs" / "digits"
    assert main(["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2",
                 "--epochs", "1", "--batch-size", "32", "--lr", "0.1", "--out", str(run),
                 "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    return run


def _energy_json(capsys, *argv: str) -> dict:
    assert main(["energy", *argv, "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def _trained_model(run: Path) -> nn.Module:
    """The run's weights read with safetensors' own loader (not the library's reader)."""
    from safetensors.torch import load_file

    model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    return model


def test_training_records_what_energy_and_export_need(digits_run: Path) -> None:
    from safetensors import safe_open

    from gac_coding.train import load_checkpoint

    with safe_open(str(digits_run / "model.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert {k: meta[k] for k in ("model", "T", "dataset", "coding", "input_size", "in_channels")} == {
        "model": "msresnet_tiny", "T": "2", "dataset": "digits", "coding": "gac",
        "input_size": "[8, 8]", "in_channels": "1"}  # fmt: skip
    assert "data_dir" not in meta  # the digits come with scikit-learn
    config = load_checkpoint(digits_run / "last.pt")["config"]
    recorded = (config["dataset"], config["input_size"], config["coding"], config["T"])
    assert recorded == ("digits", [8, 8], "gac", 2)
    assert config["data_dir"] is None


def test_energy_of_a_run_is_the_per_batch_accounting_of_its_validation_images(
    digits_run: Path, capsys
) -> None:
    x_test = load_digits_split()[2]  # the fixed split's 360 test images, in order
    model = _trained_model(digits_run)
    for path in (digits_run / "model.safetensors", digits_run / "last.pt"):
        payload = _energy_json(capsys, "--checkpoint", str(path), "--batches", "3", "--batch-size", "100")
        assert payload["input"] == {
            "kind": "validation data", "dataset": "digits", "split": "test", "data_dir": None,
            "images": 300, "of": 360, "batches": 3, "batch_size": 100, "input_size": [8, 8],
            "coding": "gac"}  # fmt: skip
        expected = _by_hand(model, [x_test[:100], x_test[100:200], x_test[200:300]])
        t = payload["totals"]
        assert (t["samples"], t["batches"]) == (300, 3)
        assert (t["synop"], t["mac"]) == (expected["synop"], expected["mac"])  # integers: exact
        assert t["energy_mj_per_sample"] == pytest.approx(expected["per_image"], rel=1e-9)
        assert t["synop"] > 0, "the trained backbone must fire on the digits for this to mean anything"
    # the whole split, the last batch smaller (100, 100, 100, 60)
    payload = _energy_json(capsys, "--checkpoint", str(digits_run / "model.safetensors"),
                           "--batches", "all", "--batch-size", "100")  # fmt: skip
    batches = [x_test[i : i + 100] for i in range(0, 360, 100)]
    expected = _by_hand(model, batches)
    assert payload["totals"]["samples"] == 360 and payload["input"]["batches"] == 4
    assert payload["totals"]["energy_mj_per_sample"] == pytest.approx(expected["per_image"], rel=1e-9)
    # firing rates counted by a hook of our own over the same images
    spikes, entries = 0, 0

    def count(_module, args, _out) -> None:
        nonlocal spikes, entries
        spikes += int(torch.count_nonzero(args[0]))
        entries += args[0].numel()

    handle = model.stages[2][0].conv1.register_forward_hook(count)  # the stage that fires after 1 epoch
    with torch.no_grad():
        model.eval()
        for b in batches:
            model(b)
    handle.remove()
    layer = next(ly for ly in payload["layers"] if ly["name"] == "stages.2.0.conv1")
    assert layer["binary_input"] and layer["firing_rate"] == pytest.approx(spikes / entries, rel=1e-12)
    assert 0 < spikes < entries


def test_energy_header_says_what_it_measured_on(digits_run: Path, capsys) -> None:
    path = str(digits_run / "model.safetensors")
    assert main(["energy", "--checkpoint", path, "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"msresnet_tiny, weights: {path} (library layout)"
    assert lines[1] == ("measured on: digits, test split (the run's validation data), 320 of 360 "
                        "images in 10 batch(es) of 32, input 1x8x8")  # fmt: skip
    assert any(line.startswith("320 samples in 10 batches, T=2") for line in lines)
    # random input only when asked: at the recorded size, and said so
    assert main(["energy", "--checkpoint", path, "--random-input", "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("measured on: random input (2, 1, 8, 8), images [B, C, H, W], uniform in "
                        "[0, 1), seeded")  # fmt: skip
    assert lines[2].startswith("(random input: the firing rates")


def test_energy_option_conflicts_are_one_line(digits_run: Path, capsys) -> None:
    path = str(digits_run / "model.safetensors")
    for argv, fragment in (
        (["--checkpoint", path, "--sequence"], "--sequence: chooses the random input"),
        (["--checkpoint", path, "--input-size", "32", "32"],
         r"--input-size: --input-size gives the input size \(32, 32\), but digits as rebuilt gives \(8, 8\)"),
        (["--checkpoint", path, "--random-input", "--batches", "3"],
         "--batches: chooses the data to measure on, but --random-input measures on random input"),
        (["--model", "msresnet_tiny", "--dataset", "digits"],
         "--dataset: chooses the data to measure on, but without --checkpoint the model is untrained"),
        (["--checkpoint", path, "--dataset", "cifar10"],
         "--dataset: the checkpoint .* was trained and validated on digits"),
        (["--checkpoint", path, "--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
    ):  # fmt: skip
        assert main(["energy", *argv], friendly_errors=True) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("gac-coding energy: error: "), err
        assert re.search(fragment, err), (fragment, err)


def _checkpoint(folder: Path, name: str, metadata: dict, **model: object) -> Path:
    """An untrained ``msresnet_tiny`` saved as ``model.safetensors`` with ``metadata``."""
    from gac_coding.train.checkpoint import save_safetensors

    settings = {"num_classes": 10, "T": 2, "in_channels": 1, **model}
    net = create_model("msresnet_tiny", **settings)  # type: ignore[arg-type]
    return save_safetensors(net.state_dict(), folder / f"{name}.safetensors", metadata=metadata)


_TINY = {"model": "msresnet_tiny", "T": 2, "num_classes": 10, "in_channels": 1}


def test_a_progress_bar_on_a_terminal_only(tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    path = _checkpoint(tmp_path, "named", {**_TINY, "gac": True, "dataset": "digits"})
    argv = ["energy", "--checkpoint", str(path), "--batches", "3", "--batch-size", "8"]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("\renergy:") and "/3 [" in err, err  # tqdm's bar over the 3 batches
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("recorded", ["rate", "poisson"])  # "poisson": the name older runs recorded
def test_a_rate_coded_run_is_measured_on_its_bernoulli_spikes(tmp_path: Path, capsys, recorded: str) -> None:
    from gac_coding.coding import rate_encode

    meta = {**_TINY, "gac": False, "dataset": "digits", "coding": recorded, "input_size": "[8, 8]"}
    path = _checkpoint(tmp_path, "rate", meta, coding="rate")
    payload = _energy_json(capsys, "--checkpoint", str(path), "--batches", "2", "--batch-size", "50",
                           "--seed", "4")  # fmt: skip
    assert payload["input"]["coding"] == "rate" and payload["layers"][0]["binary_input"]
    # by hand: the same weights as direct coding, fed the Bernoulli spikes the command's seed draws
    x_test = load_digits_split()[2]
    gen = torch.Generator().manual_seed(4)  # the command's seed, drawn batch after batch
    spikes = [rate_encode(x_test[i : i + 50], 2, generator=gen) for i in (0, 50)]
    model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1, coding="direct")
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))
    expected = _by_hand(model, spikes, batch_dim=1)
    assert payload["totals"]["samples"] == expected["images"] == 100
    assert payload["totals"]["synop"] == expected["synop"] > 0
    assert payload["totals"]["energy_mj_per_sample"] == pytest.approx(expected["per_image"], rel=1e-9)
    assert main(["energy", "--checkpoint", str(path), "--batches", "1", "--no-progress"]) == 0
    assert "coded as Bernoulli spikes over T=2 steps" in capsys.readouterr().out.splitlines()[1]


def test_older_checkpoints_get_their_data_sets_size_or_one_line_asking(tmp_path: Path, capsys) -> None:
    import argparse

    from gac_coding.cli.export import configure_export_parser, run_export_command

    named = _checkpoint(tmp_path, "named", {**_TINY, "gac": True, "dataset": "digits"})
    bare = _checkpoint(tmp_path, "bare", {**_TINY, "gac": True})
    payload = _energy_json(capsys, "--checkpoint", str(named), "--random-input")
    assert payload["input"] == {"kind": "random images", "shape": [1, 1, 8, 8]}  # digits: 8x8
    payload = _energy_json(capsys, "--checkpoint", str(named), "--batches", "1")  # on data, too
    assert payload["input"]["images"] == 32 and payload["input"]["input_size"] == [8, 8]
    for argv in (["--random-input"], []):
        assert main(["energy", "--checkpoint", str(bare), *argv], friendly_errors=True) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        if argv:
            assert "--input-size: the checkpoint" in err and "records no input size" in err
        else:
            assert "--dataset: the checkpoint" in err and "records no data set" in err
    payload = _energy_json(capsys, "--checkpoint", str(bare), "--random-input", "--input-size", "8", "8")
    assert payload["input"]["shape"] == [1, 1, 8, 8]
    payload = _energy_json(capsys, "--checkpoint", str(bare), "--dataset", "digits", "--batches", "1")
    assert payload["input"]["dataset"] == "digits" and payload["totals"]["samples"] == 32
    # gac-coding export resolves the size the same way
    parser = argparse.ArgumentParser()
    configure_export_parser(parser)
    out = tmp_path / "export"
    assert run_export_command(parser.parse_args(["--checkpoint", str(named), "--out", str(out)])) == 0
    assert json.loads((out / "host.json").read_text())["input_size"] == [8, 8]
    capsys.readouterr()
    with pytest.raises(ValueError, match="--input-size: the checkpoint .* records no input size"):
        run_export_command(parser.parse_args(["--checkpoint", str(bare), "--out", str(tmp_path / "x")]))
    assert not (tmp_path / "x").exists()


def test_a_data_folder_that_moved_is_one_line_and_data_dir_finds_it(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from test_train_data import write_cifar

    write_cifar(tmp_path / "data", "cifar10", per_file=2)
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # a relative --data-dir is recorded as an absolute folder
    assert main(["train", "--model", "msresnet_tiny", "--dataset", "cifar10", "--data-dir", "data",
                 "--T", "2", "--epochs", "1", "--batch-size", "4", "--lr", "0.05", "--out", "run",
                 "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    from gac_coding.models.checkpoints import read_weights

    settings = read_weights(run / "model.safetensors").settings
    assert settings["data_dir"] == str((tmp_path / "data").resolve()) and settings["input_size"] == (32, 32)
    monkeypatch.chdir(run)  # from elsewhere: the recorded folder is found
    payload = _energy_json(capsys, "--checkpoint", "model.safetensors")
    assert payload["input"]["dataset"] == "cifar10" and payload["input"]["images"] == 2
    os.rename(tmp_path / "data", tmp_path / "moved")
    assert main(["energy", "--checkpoint", "last.pt"], friendly_errors=True) == 2
    err = capsys.readouterr().err
    gone = (tmp_path / "data").resolve()
    assert err == (f"gac-coding energy: error: --data-dir: the folder {gone} that the run read "
                   "cifar10 from no longer exists; give --data-dir DIR where the data is now, or "
                   "--random-input\n")  # fmt: skip
    payload = _energy_json(capsys, "--checkpoint", "last.pt", "--data-dir", str(tmp_path / "moved"))
    assert payload["input"]["data_dir"] == str(tmp_path / "moved") and payload["totals"]["samples"] == 2
    payload = _energy_json(capsys, "--checkpoint", "last.pt", "--random-input")
    assert payload["input"]["shape"] == [1, 3, 32, 32]  # the recorded size


def test_a_failed_run_leaves_no_folder(tmp_path: Path, capsys) -> None:
    common = ["train", "--model", "vgg_tiny", "--T", "2", "--epochs", "1", "--batch-size", "4",
              "--lr", "0.1", "--device", "cpu", "--no-progress"]  # fmt: skip
    out = tmp_path / "runs" / "nmnist"
    assert main([*common, "--dataset", "nmnist", "--data-dir", str(tmp_path / "absent"),
                 "--out", str(out)], friendly_errors=True) == 2  # fmt: skip
    assert "NMNIST/Train" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    (tmp_path / "empty").mkdir()
    assert main([*common, "--dataset", "cifar10dvs", "--data-dir", str(tmp_path / "empty"),
                 "--out", str(out)], friendly_errors=True) == 2  # fmt: skip
    assert list(tmp_path.iterdir()) == [tmp_path / "empty"] and not any((tmp_path / "empty").iterdir())
    # an --out that cannot be made is refused before any data is read
    (tmp_path / "file").write_text("x")
    assert main([*common, "--dataset", "digits", "--out", str(tmp_path / "file" / "run")],
                friendly_errors=True) == 2  # fmt: skip
    assert "out: cannot make the folder" in capsys.readouterr().err


def test_an_event_run_is_measured_on_its_frames(tmp_path: Path, capsys) -> None:
    from test_events import make_nmnist

    from gac_coding.train.events import FrameOptions, build_event_datasets, time_major_collate

    root = make_nmnist(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--model", "vgg_tiny", "--dataset", "nmnist", "--data-dir", str(root),
                 "--T", "2", "--frame-size", "17", "--epochs", "1", "--batch-size", "8", "--lr", "0.05",
                 "--out", str(run), "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    payload = _energy_json(capsys, "--checkpoint", str(run / "model.safetensors"), "--batch-size", "4")
    info = payload["input"]
    assert (info["dataset"], info["images"], info["batches"]) == ("nmnist", 10, 3)
    assert info["input_size"] == [17, 17]  # the frame size the run recorded
    assert payload["layers"][0]["input_shape"] == [2 * 4, 2, 17, 17]  # frames [T, B, 2, H, W], folded
    # by hand: the test split's frames, batched 4, 4, 2, time-major
    test = build_event_datasets("nmnist", root, FrameOptions(T=2, size=17)).test
    frames = [time_major_collate([test[i] for i in range(j, min(j + 4, 10))])[0] for j in (0, 4, 8)]
    from safetensors.torch import load_file

    model = create_model("vgg_tiny", num_classes=10, T=2, in_channels=2)
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    expected = _by_hand(model, frames, batch_dim=1)
    assert payload["totals"]["samples"] == expected["images"] == 10
    assert (payload["totals"]["synop"], payload["totals"]["mac"]) == (expected["synop"], expected["mac"])
    assert payload["totals"]["energy_mj_per_sample"] == pytest.approx(expected["per_image"], rel=1e-9)
