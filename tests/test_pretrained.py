"""Hub-style folders: save_pretrained / from_pretrained / push_to_hub, gac-coding convert, and
gac-coding train --save-pretrained. No network: the two calls that talk to the Hub
(huggingface_hub's snapshot_download and HfApi's create_repo/upload_folder) are replaced at that
boundary by functions of the test that serve or receive a local folder."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from gac_coding.cli import main
from gac_coding.models import (
    PretrainedConfigError,
    create_model,
    export_reference_state_dict,
    from_pretrained,
    push_to_hub,
    register_model,
    save_pretrained,
)


def _tiny(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    args = dict(num_classes=5, T=2, in_channels=1)
    args.update(kwargs)
    model = create_model("msresnet_tiny", **args).double()
    # running statistics away from their defaults, so that a skipped buffer changes the outputs
    model.train()
    model(torch.rand(4, 1, 8, 8, dtype=torch.float64))
    return model.eval()


def _same_outputs(a: nn.Module, b: nn.Module, shape=(3, 1, 8, 8), dtype=torch.float64) -> None:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs", [{}, {"coding": "direct"}, {"temporal_attention": "conv", "backend": "eager"}]
)
def test_round_trip_rebuilds_the_same_model(tmp_path: Path, kwargs) -> None:
    model = _tiny(**kwargs)
    folder = model.save_pretrained(tmp_path / "m", input_size=(8, 8), metrics={"val_acc": 0.75, "epochs": 2})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == "msresnet_tiny" and config["T"] == 2 and config["num_classes"] == 5
    assert config["coding"] == kwargs.get("coding", "gac") and config["in_channels"] == 1
    assert config["input_size"] == [8, 8] and config["recipe"] == "cifar" and config["dtype"] == "float64"
    expected_ta = None if "coding" in kwargs else kwargs.get("temporal_attention", "mlp")
    assert config["temporal_attention"] == expected_ta
    assert config["kwargs"] == {"in_channels": 1, **{k: v for k, v in kwargs.items() if k != "coding"}}
    # the weights as safetensors' own reader sees them: every tensor of the state dict, unchanged
    weights = load_file(str(folder / "model.safetensors"))
    state = model.state_dict()
    assert weights.keys() == state.keys() and all(torch.equal(weights[k], state[k]) for k in state)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: gac-coding\n") and "| val_acc | 0.75 |" in card
    again = from_pretrained(folder)
    assert type(again) is type(model) and not again.training
    assert next(again.parameters()).dtype == torch.float64
    _same_outputs(model, again)
    # the rebuilt model can be saved again: the same config, the same tensors
    second = again.save_pretrained(tmp_path / "m2", input_size=(8, 8))
    assert (second / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    resaved = load_file(str(second / "model.safetensors"))
    assert resaved.keys() == weights.keys() and all(torch.equal(resaved[k], weights[k]) for k in weights)


def test_a_changed_T_and_an_event_model(tmp_path: Path) -> None:
    model = _tiny(temporal_attention="conv")
    model.set_timesteps(3)
    again = from_pretrained(model.save_pretrained(tmp_path / "t3"))
    assert again.T == 3
    _same_outputs(model, again)
    torch.manual_seed(0)
    vgg = create_model("vgg_tiny", num_classes=4, T=3).eval()
    folder = save_pretrained(vgg, tmp_path / "vgg")
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["input_kind"] == "events" and config["input_size"] == [48, 48] and config["in_channels"] == 2
    )
    _same_outputs(vgg, from_pretrained(folder), shape=(3, 2, 2, 16, 16), dtype=torch.float32)


def test_a_wrapped_net_through_a_registered_builder(tmp_path: Path) -> None:
    def builder(num_classes: int = 3, T: int = 2, coding: str = "gac", width: int = 6) -> nn.Module:
        import gac_coding

        head = nn.Sequential(gac_coding.LIF(), nn.Flatten(2), nn.Linear(width * 8 * 8, num_classes))
        return gac_coding.wrap(head, T=T, in_channels=1, out_channels=width, coding=coding)

    from gac_coding.models.registry import _REGISTRY

    register_model("test_pretrained_wrapped", builder, overwrite=True)
    try:  # the registry is global: other tests walk every registered model
        torch.manual_seed(0)
        net = create_model("test_pretrained_wrapped", num_classes=4, width=5).eval()
        folder = save_pretrained(net, tmp_path / "wrapped", input_size=(8, 8))
        config = json.loads((folder / "config.json").read_text())
        assert config["kwargs"] == {"width": 5} and config["in_channels"] == 1  # the encoder's, not 3
        _same_outputs(net, from_pretrained(folder), dtype=torch.float32)
    finally:
        _REGISTRY.pop("test_pretrained_wrapped", None)


def test_bad_folders_fail_in_one_line_naming_the_file(tmp_path: Path) -> None:
    folder = _tiny().save_pretrained(tmp_path / "m")
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    good = json.loads(config_path.read_text())

    def fails(exc_type, *fragments: str) -> str:
        with pytest.raises(exc_type) as info:
            from_pretrained(folder)
        message = str(info.value)
        assert "\n" not in message and all(f in message for f in fragments), message
        return message

    config_path.write_text(json.dumps(dict(good, num_classes=7)))
    fails(PretrainedConfigError, str(weights_path), "'fc.weight' has shape [5, 64]", "[7, 64]", "config.json")
    config_path.write_text(json.dumps(dict(good, model="no_such_model")))
    fails(PretrainedConfigError, str(config_path), "'no_such_model' is not registered", "register_model")
    config_path.write_text(json.dumps(dict(good, kwargs={"in_channels": 1, "colour": True})))
    fails(PretrainedConfigError, str(config_path), "colour")
    config_path.write_text(json.dumps(dict(good, coding="direct")))  # keys differ: no encoder gate
    fails(PretrainedConfigError, str(weights_path), "unexpected")
    config_path.write_text("{not json")
    fails(PretrainedConfigError, str(config_path), "not valid JSON")
    config_path.unlink()
    fails(FileNotFoundError, str(config_path), "missing", "save_pretrained")
    config_path.write_text(json.dumps(good))
    weights_path.unlink()
    fails(FileNotFoundError, str(weights_path), "missing")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        from_pretrained(tmp_path / "nowhere" / "at" / "all")


def test_loading_never_runs_code_from_the_folder(tmp_path: Path) -> None:
    folder = _tiny().save_pretrained(tmp_path / "m")
    marker = tmp_path / "code-ran"

    class Hostile:
        def __reduce__(self):
            return (Path.touch, (marker,))

    # a pickle that would run code, under the weights' name: refused as unreadable, never executed
    (folder / "model.safetensors").write_bytes(pickle.dumps({"x": Hostile()}))
    from gac_coding.io import CheckpointError

    with pytest.raises(CheckpointError, match="not a readable .safetensors file"):
        from_pretrained(folder)
    assert not marker.exists()


def test_what_cannot_be_saved_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    from gac_coding.models import MSResNet

    with pytest.raises(TypeError, match="built by gac_coding.models.create_model"):
        save_pretrained(MSResNet([(8, 1, 1)], 3, 2, stem_channels=8), tmp_path / "a")
    rate = create_model("msresnet_tiny", coding="rate", encoder_kwargs={"generator": torch.Generator()})
    with pytest.raises(ValueError, match="encoder_kwargs"):
        save_pretrained(rate, tmp_path / "b")
    mlp = _tiny()
    mlp.set_timesteps(4)  # the paper's temporal attention keeps its T=2 weights: no config rebuilds them
    with pytest.raises(PretrainedConfigError, match="encoder.gate"):
        save_pretrained(mlp, tmp_path / "c")
    # a failure while the files are written leaves no folder and no staging folder behind
    import gac_coding.models.pretrained as pretrained

    def broken_card(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pretrained, "model_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(_tiny(), tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_crash_while_writing_leaves_no_half_written_folder(tmp_path: Path, monkeypatch) -> None:
    import gac_coding.models.pretrained as pretrained

    calls = []
    real = pretrained.atomic_write

    def crash_on_second(path, write):
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise OSError("crash")
        return real(path, write)

    monkeypatch.setattr(pretrained, "atomic_write", crash_on_second)
    with pytest.raises(OSError, match="crash"):
        save_pretrained(_tiny(), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    # into an existing folder: the file being written when it crashed keeps its old bytes
    monkeypatch.setattr(pretrained, "atomic_write", real)
    folder = save_pretrained(_tiny(), tmp_path / "old")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls.clear()
    monkeypatch.setattr(pretrained, "atomic_write", crash_on_second)
    with pytest.raises(OSError, match="crash"):
        save_pretrained(_tiny(num_classes=6), folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()}[calls[1]] == before[calls[1]]


def test_hub_downloads_and_uploads_go_through_huggingface_hub(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    model = _tiny()
    served = model.save_pretrained(tmp_path / "served")
    asked = {}

    def snapshot_download(**kwargs):
        asked.update(kwargs)
        return str(served)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    _same_outputs(model, from_pretrained("someone/tiny-gac", revision="v1"))
    assert asked == {"repo_id": "someone/tiny-gac", "revision": "v1",
                     "allow_patterns": ["config.json", "model.safetensors", "README.md"]}  # fmt: skip

    received, repos = tmp_path / "received", []

    class Commit:
        commit_url = "https://huggingface.co/someone/tiny-gac/commit/abc"

    def create_repo(self, *, repo_id, private, exist_ok):
        repos.append((repo_id, private, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, commit_message):
        import shutil

        shutil.copytree(folder_path, received)
        return Commit()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    url = model.push_to_hub("someone/tiny-gac", private=True, metrics={"val_acc": 0.5})
    assert url == Commit.commit_url and repos == [("someone/tiny-gac", True, True)]
    assert "| val_acc | 0.5 |" in (received / "README.md").read_text()
    _same_outputs(model, from_pretrained(received))
    with pytest.raises(ValueError, match="repo_id"):
        push_to_hub(model, "not a repo id")


def test_without_huggingface_hub_the_error_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"gac-coding\[hub\]"):
        from_pretrained("someone/tiny-gac")
    with pytest.raises(ImportError, match=r"gac-coding\[hub\]"):
        push_to_hub(_tiny(), "someone/tiny-gac")
    # a local folder needs no huggingface_hub
    model = _tiny()
    _same_outputs(model, from_pretrained(model.save_pretrained(tmp_path / "m")))


# ------------------------------------------------------------------------------ gac-coding convert
def _authors_checkpoint(tmp_path: Path) -> tuple[nn.Module, Path]:
    """A checkpoint in the authors' CIFAR layout, saved from DataParallel (``module.`` keys)."""
    torch.manual_seed(3)
    source = create_model("msresnet_tiny", num_classes=7, T=4, in_channels=3).eval()
    path = tmp_path / "CIFAR100_T=4.pth"
    state = {"module." + k: v for k, v in export_reference_state_dict(source).items()}
    torch.save(state, path)
    return source, path


def test_convert_writes_a_folder_that_from_pretrained_loads(tmp_path: Path, capsys) -> None:
    source, path = _authors_checkpoint(tmp_path)
    out = tmp_path / "hub"
    assert main(["convert", "--checkpoint", str(path), "--out", str(out), "--model", "msresnet_tiny"]) == 0
    assert "T=4, 7 classes, gac coding" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["T"], config["num_classes"], config["in_channels"]) == (
        "msresnet_tiny",
        4,
        7,
        3,
    )
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() in (out / "README.md").read_text()
    _same_outputs(source, from_pretrained(out), shape=(2, 3, 8, 8), dtype=torch.float32)


def test_convert_refuses_in_one_line(tmp_path: Path, capsys) -> None:
    _, path = _authors_checkpoint(tmp_path)
    base = ["convert", "--checkpoint", str(path), "--model", "msresnet_tiny"]

    def one_line(argv: list[str]) -> str:
        assert main(argv, friendly_errors=True) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("gac-coding convert: error: "), err
        return err

    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert "--overwrite" in one_line([*base, "--out", str(full)])
    assert (full / "notes.txt").read_text() == "mine" and len(list(full.iterdir())) == 1
    assert "build it with T=4" in one_line([*base, "--out", str(tmp_path / "x"), "--T", "6"])
    assert "unknown model 'nope'" in one_line([*base[:-1], "nope", "--out", str(tmp_path / "y")])
    assert "no checkpoint file" in one_line(
        ["convert", "--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "z")]
    )
    assert not any((tmp_path / n).exists() for n in "xyz")


# ---------------------------------------------------------------- gac-coding train --save-pretrained
def test_train_writes_the_folder_with_its_metrics_and_energy(tmp_path: Path, capsys) -> None:
    from gac_coding.energy import estimate_energy
    from gac_coding.models.checkpoints import load_weights
    from gac_coding.train.data import load_digits_split

    run, folder = tmp_path / "run", tmp_path / "pretrained"
    common = ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", "1",
              "--batch-size", "256", "--lr", "0.1", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main([*common, "--out", str(run), "--save-pretrained", str(folder)]) == 0
    loaded = from_pretrained(folder)
    # the same weights as the run's own model.safetensors, read by the run-file loader
    reference = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
    load_weights(reference, run / "model.safetensors")
    reference.eval()
    _same_outputs(reference, loaded, shape=(4, 1, 8, 8), dtype=torch.float32)
    card = (folder / "README.md").read_text()
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"| val_acc | {last['val_acc']:.6g} |" in card and "| dataset | digits |" in card
    # the energy of the first 256 validation images, measured here again
    images = load_digits_split()[2][:256]
    report = estimate_energy(reference, images)
    assert (
        f"| energy per sample, mJ (the paper's accounting) | {report.totals['energy_mj_per_sample']:.6g} |"
        in card
    )
    assert json.loads((folder / "config.json").read_text())["input_size"] == [8, 8]
    # a folder that holds files is refused before training
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "run2"), "--save-pretrained", str(folder)],
                friendly_errors=True) == 2  # fmt: skip
    assert "not empty" in capsys.readouterr().err and not (tmp_path / "run2").exists()
