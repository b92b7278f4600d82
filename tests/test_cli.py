"""The ``gac-coding`` command: demo outputs, train options, friendly errors, ``python -m``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gac_coding.cli import build_parser, main


def test_demo_writes_json_png_and_prints_the_table(tmp_path: Path, capsys, monkeypatch) -> None:
    # the pool's worker processes and this process run the same backend ("auto" is a pure rule),
    # so their numbers agree exactly below
    monkeypatch.chdir(tmp_path)  # nothing may appear here but the output folder
    _demo_checks(tmp_path, capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["demo.json", "demo.png"]


def _demo_checks(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--epochs", "1", "--seeds", "2", "--T", "2", "--out", str(out), "--workers", "2"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "demo.json").read_text())
    assert list(report["codings"]) == ["direct", "rate", "latency", "gac"]
    assert report["config"] == {**report["config"], "epochs": 1, "seeds": 2, "T": 2}
    assert report["split"] == {"train": 1437, "test": 360}
    for res in report["codings"].values():
        accs = [r["test_acc"] for r in res["runs"]]
        assert [r["seed"] for r in res["runs"]] == [0, 1]
        assert res["test_acc_mean"] == pytest.approx(sum(accs) / 2)
        assert res["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
        assert all(0.0 < r["firing_rate"] < 1.0 for r in res["runs"])
        assert res["energy_mj_per_image_mean"] > 0
        assert res["label"] in text
        assert len(res["runs"][0]["history"]) == 1
    assert report["codings"]["gac"]["gac"] is True and report["codings"]["rate"]["gac"] is False
    assert [res["encoder"] for res in report["codings"].values()] == [
        "DirectEncoder", "RateEncoder", "LatencyEncoder", "GACEncoder"]  # fmt: skip
    # ties: means within the larger standard error of the mean (std / sqrt(2) here) of the best
    res = report["codings"]
    for r in res.values():
        assert r["test_acc_sem"] == pytest.approx(r["test_acc_std"] / 2**0.5)
    top = max(res, key=lambda k: res[k]["test_acc_mean"])
    tied = [k for k in res if res[top]["test_acc_mean"] - res[k]["test_acc_mean"]
            <= max(res[top]["test_acc_sem"], res[k]["test_acc_sem"])]  # fmt: skip
    if len(tied) == 1:
        assert report["best_coding"] == top and report["tied"] == []
        assert f"highest mean test accuracy: {res[top]['label']})" in text
    else:
        assert report["best_coding"] is None and sorted(report["tied"]) == sorted(tied)
        assert "tie for the highest mean test accuracy" in text
    assert "test accuracy" in text and "firing rate" in text and "±" in text
    assert "2 process(es)" in text.splitlines()[0]
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # a second demo into the same folder is refused, before any training, and nothing is touched
    saved = (out / "demo.json").read_bytes()
    assert main([*argv[:-2], "--seeds", "1"], friendly_errors=True) == 2
    err = capsys.readouterr().err
    assert err == (f"gac-coding demo: error: out: {out} already holds the results of an earlier "
                   "demo (demo.json, demo.png); pass --overwrite (overwrite=True) to replace them, "
                   "or choose another --out folder\n")  # fmt: skip
    assert (out / "demo.json").read_bytes() == saved and (out / "demo.png").read_bytes() == png
    # the runs are seeded and single-threaded: in-process gives the pool's numbers exactly
    from gac_coding.train.demo import run_demo

    solo = run_demo(epochs=1, seeds=2, T=2, out=out, workers=1, log=lambda _m: None, overwrite=True)
    assert json.loads((out / "demo.json").read_text())["config"]["workers"] == 1  # replaced, as asked
    for name, res in report["codings"].items():
        for a, b in zip(res["runs"], solo["codings"][name]["runs"], strict=True):
            assert (a["test_acc"], a["firing_rate"]) == (b["test_acc"], b["firing_rate"])


def test_demo_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seeds: expected an integer >= 1, got 0"):
        main(["demo", "--seeds", "0", "--out", str(tmp_path)])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out: expected a folder, got an existing file"):
        main(["demo", "--out", str(tmp_path / "file")])


def test_demo_reports_ties_as_ties() -> None:
    from gac_coding.train.demo import best_codings, format_table

    def coding(label: str, accs: list[float]) -> dict:
        mean = sum(accs) / len(accs)
        std = (sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
        return {"label": label, "test_acc_mean": mean, "test_acc_std": std,
                "test_acc_sem": std / len(accs) ** 0.5, "firing_rate_mean": 0.1,
                "energy_mj_per_image_mean": 1e-3}  # fmt: skip

    # one seed each, 97.83 = 97.83: a tie (the case a user met), not "direct coding is best"
    equal = {"direct": coding("direct coding", [0.9783]), "rate": coding("Poisson", [0.96]),
             "gac": coding("GAC", [0.9783])}  # fmt: skip
    assert best_codings(equal) in (["direct", "gac"], ["gac", "direct"])
    # five seeds: means 0.980 and 0.978, standard errors 0.0007 and 0.0026: a tie; 0.960 is not
    spread = {"direct": coding("direct coding", [0.979, 0.980, 0.981, 0.978, 0.982]),
              "rate": coding("Poisson", [0.96] * 5),
              "gac": coding("GAC", [0.970, 0.985, 0.975, 0.982, 0.978])}  # fmt: skip
    assert spread["gac"]["test_acc_sem"] == pytest.approx(0.00263, abs=1e-5)
    assert best_codings(spread) == ["direct", "gac"]
    # 0.980 against 0.975 with standard errors of 0.0007: not a tie
    apart = {"direct": spread["direct"], "gac": coding("GAC", [0.974, 0.975, 0.976, 0.973, 0.977])}
    assert best_codings(apart) == ["direct"]
    for codings, best, tied in ((equal, None, best_codings(equal)), (apart, "direct", [])):
        text = format_table({"config": {"seeds": 1}, "codings": codings, "best_coding": best, "tied": tied})
        last = text.splitlines()[-1]
        if best is None:
            assert "tie for the highest mean test accuracy: direct coding and GAC" in last
            assert last.count("direct coding") == 1  # no winner named on its own
        else:
            assert last.endswith("highest mean test accuracy: direct coding)")


def test_parser_has_the_documented_options() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["train", "--model", "m", "--dataset", "cifar100", "--data-dir", "d", "--T", "6",
         "--epochs", "250", "--stop-after", "100", "--batch-size", "64", "--lr", "0.1", "--out", "o",
         "--resume", "--no-gac", "--amp", "--cutmix", "0.5", "--loss", "tet", "--label-smoothing", "0.1",
         "--weight-decay", "1e-5", "--workers", "4", "--seed", "7", "--device", "cpu"]
    )  # fmt: skip
    assert (args.T, args.epochs, args.stop_after, args.batch_size, args.lr) == (6, 250, 100, 64, 0.1)
    assert args.resume and args.no_gac and args.amp and args.loss == "tet" and args.seed == 7
    assert (args.cutmix, args.label_smoothing, args.weight_decay, args.workers) == (0.5, 0.1, 1e-5, 4)
    with pytest.raises(SystemExit):
        parser.parse_args(
            [
                "train",
                "--model",
                "m",
                "--dataset",
                "imagenet",
                "--T",
                "4",
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--lr",
                "0.1",
                "--out",
                "o",
            ]
        )
    for command in ("demo", "train", "energy"):
        assert command in parser.format_help()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gac_coding", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_python_dash_m_trains_and_reports_errors_in_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    common = [
        "train",
        "--model",
        "msresnet_tiny",
        "--dataset",
        "digits",
        "--T",
        "2",
        "--batch-size",
        "256",
        "--lr",
        "0.1",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    ok = _cli(*common, "--epochs", "1")
    assert ok.returncode == 0, ok.stderr
    assert "epoch 1/1" in ok.stdout and "done: epoch 1" in ok.stdout  # plain lines: not a terminal
    capsys.readouterr()
    assert main([*common, "--epochs", "1"], friendly_errors=True) == 2
    err = capsys.readouterr().err
    assert err.startswith("gac-coding train: error: out:")
    assert "--resume" in err and "Traceback" not in err
    missing = ["train", "--model", "msresnet_tiny", "--dataset", "cifar10", "--data-dir",
               str(tmp_path), "--T", "2", "--epochs", "1", "--batch-size", "4", "--lr", "0.1",
               "--out", str(tmp_path / "c")]  # fmt: skip
    assert main(missing, friendly_errors=True) == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "data_batch_1" in err
    with pytest.raises(FileNotFoundError, match="data_batch_1"):  # from Python: the exception
        main(missing)


# ------------------------------------------------------------- one loader, the same bad files
class _Hostile:
    """Unpickling this calls ``Path.touch(marker)``: code carried by the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _run_files(folder: Path, **settings) -> tuple[Path, Path]:
    """``last.pt`` and ``model.safetensors`` as ``gac-coding train`` writes them for ``settings``."""
    from gac_coding.models import create_model
    from gac_coding.train.checkpoint import save_checkpoint, save_safetensors
    from gac_coding.train.engine import CHECKPOINT_FORMAT

    s = {"model": "msresnet_tiny", "T": 2, "num_classes": 10, "in_channels": 1, "gac": True, **settings}
    model = create_model(s["model"], num_classes=s["num_classes"], T=s["T"],
                         coding="gac" if s["gac"] else "direct", in_channels=s["in_channels"])  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(s, coding="direct", epochs=1)
    pt = save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": 1, "config": config,
                          "model": model.state_dict()}, folder / "last.pt")  # fmt: skip
    st = save_safetensors(model.state_dict(), folder / "model.safetensors", metadata=s)
    return pt, st


def _bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Unreadable or hostile files for both suffixes: ``name -> (path, fragment of the message)``."""
    pt, st = _run_files(folder / "good")
    bad: dict[str, tuple[Path, str]] = {}
    for suffix, good in ((".pt", pt), (".safetensors", st)):
        data = good.read_bytes()
        cases = {
            "truncated": (data[: len(data) // 2], "truncated or corrupt"),
            "empty": (b"", "empty"),
            "text": (b"weights = [1, 2, 3]\nnot a checkpoint\n", "truncated or corrupt"),
        }
        for name, (content, fragment) in cases.items():
            path = folder / f"{name}{suffix}"
            path.write_bytes(content)
            bad[f"{name}{suffix}"] = (path, fragment)
        (folder / f"folder{suffix}").mkdir()
        bad[f"folder{suffix}"] = (folder / f"folder{suffix}", "is a folder")
    hostile = folder / "hostile.pt"
    torch.save({"model": {}, "payload": _Hostile(folder / "code-ran")}, hostile)
    bad["hostile.pt"] = (hostile, "refused to load it because it asks to import or call code")
    # a safetensors header that claims more bytes than the file holds
    huge = folder / "hostile.safetensors"
    huge.write_bytes((2**40).to_bytes(8, "little") + b'{"a": 1}')
    bad["hostile.safetensors"] = (huge, "truncated or corrupt")
    return bad


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv, friendly_errors=True) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"gac-coding {argv[0]}: error: ") and "Traceback" not in err
    return err


_ENERGY = ["energy", "--random-input", "--input-size", "8", "8"]


def test_energy_turns_every_unreadable_or_hostile_file_into_one_line(tmp_path: Path, capsys) -> None:
    for name, (path, fragment) in _bad_files(tmp_path).items():
        err = _one_line_error(capsys, [*_ENERGY, "--model", "msresnet_tiny", "--checkpoint", str(path)])
        assert fragment in err and str(path) in err, (name, err)
        if name == "hostile.pt":
            assert "(getattr)" in err and "weights_only" not in err  # names what it asked for
    assert not (tmp_path / "code-ran").exists()
    missing = _one_line_error(capsys, [*_ENERGY, "--model", "msresnet_tiny", "--checkpoint",
                                       str(tmp_path / "absent.pt")])  # fmt: skip
    assert "no file at" in missing


def test_train_resume_meets_the_same_bad_files_the_same_way(tmp_path: Path, capsys) -> None:
    common = ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", "1",
              "--batch-size", "64", "--lr", "0.1", "--device", "cpu", "--resume"]  # fmt: skip
    for name, (path, fragment) in _bad_files(tmp_path / "files").items():
        if not name.endswith(".pt"):
            continue
        out = tmp_path / name
        out.mkdir()
        last = out / "last.pt"
        if path.is_dir():
            last.mkdir()
        else:
            last.write_bytes(path.read_bytes())
        err = _one_line_error(capsys, [*common, "--out", str(out)])
        assert fragment in err and str(last) in err, (name, err)
    assert not (tmp_path / "files" / "code-ran").exists()
    # a run of another model, T, class count or channel count: one line saying what it was
    from gac_coding.train.checkpoint import load_checkpoint, save_checkpoint

    for name, settings, fragment in (
        ("model", {"model": "msresnet18_cifar"},
         "trained with model='msresnet18_cifar', got model='msresnet_tiny'"),
        ("T", {"T": 3}, "trained with T=3, got T=2"),
        ("classes", {"num_classes": 7}, "trained with class count 7, but data set 'digits' has 10"),
        ("channels", {"in_channels": 3}, "trained with in_channels 3, but data set 'digits' has 1"),
    ):  # fmt: skip
        out = tmp_path / f"wrong-{name}"
        last, _ = _run_files(out)
        ckpt = load_checkpoint(last)
        ckpt["config"].update(settings)
        save_checkpoint(ckpt, last)
        err = _one_line_error(capsys, [*common, "--out", str(out)])
        assert fragment in err, (name, err)


def test_energy_reads_model_T_classes_channels_from_the_checkpoint(tmp_path: Path, capsys) -> None:
    pt, st = _run_files(tmp_path, T=3, num_classes=7, in_channels=1, gac=False)
    for path in (pt, st):
        assert main([*_ENERGY, "--checkpoint", str(path), "--json"]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["model"] == "msresnet_tiny" and payload["totals"]["T"] == 3
        assert payload["layers"][0]["input_shape"] == [1, 1, 8, 8]  # one channel, from the file
        assert payload["layers"][-1]["kind"] == "Linear"
        assert payload["checkpoint"] == {"path": str(path), "layout": "library"}
        assert payload["batchnorm_calibrated"] is False


def test_energy_says_what_a_checkpoint_holds_when_it_does_not_fit(tmp_path: Path, capsys) -> None:
    pt, st = _run_files(tmp_path, T=2, num_classes=10, in_channels=1)
    held = "a msresnet_tiny run (T=2, 10 classes, 1 input channels, GAC encoder)"
    for path in (pt, st):
        for option in (["--model", "msresnet18_cifar"], ["--T", "4"], ["--num-classes", "100"],
                       ["--in-channels", "3"], ["--coding", "direct"], ["--coding", "rate"]):  # fmt: skip
            err = _one_line_error(capsys, [*_ENERGY, "--checkpoint", str(path), *option])
            assert f"error: {option[0]}: the checkpoint {path} holds {held}, got {' '.join(option)}\n" in err
        # the deprecated --no-gac: one warning line, then the one-line error naming it
        assert main([*_ENERGY, "--checkpoint", str(path), "--no-gac"], friendly_errors=True) == 2
        warning, error = capsys.readouterr().err.splitlines()
        assert warning.startswith("gac-coding energy: --no-gac is deprecated; use --coding direct")
        expected = f"gac-coding energy: error: --no-gac: the checkpoint {path} holds {held}, got --no-gac"
        assert error == expected
    # without recorded settings: a bare state dict of another T names the first tensor that differs
    from gac_coding.models import create_model

    bare = tmp_path / "bare.pt"
    torch.save(create_model("msresnet_tiny", num_classes=10, T=2).state_dict(), bare)
    err = _one_line_error(capsys, [*_ENERGY, "--model", "msresnet_tiny", "--T", "4",
                                   "--checkpoint", str(bare)])  # fmt: skip
    assert "'encoder.gate.ta.fc1.weight' has shape [1, 2] in the file, [2, 4] in the model" in err
    err = _one_line_error(capsys, [*_ENERGY, "--model", "msresnet18_cifar", "--checkpoint", str(bare)])
    assert "whose keys do not match the model (another model?)" in err
    err = _one_line_error(capsys, [*_ENERGY, "--checkpoint", str(bare)])
    assert "--model: expected a model name" in err


def test_help_of_every_subcommand_and_the_table_of_modules(capsys) -> None:
    from gac_coding.cli import SUBCOMMANDS

    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit) as stop:
            main([command.name, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: gac-coding {command.name}")
        if command.extra:
            assert f'pip install "gac-coding[{command.extra}]"' in " ".join(text.split())


def test_a_missing_optional_package_is_one_line_naming_its_extra(monkeypatch, capsys) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real(name, *a))  # fmt: skip
    err = _one_line_error(capsys, ["demo", "--epochs", "1"])
    assert err == ("gac-coding demo: error: needs the 'train' extra (no module named 'sklearn'): "
                   'pip install "gac-coding[train]"\n')  # fmt: skip
    with pytest.raises(ModuleNotFoundError):  # from Python: the exception
        main(["demo", "--epochs", "1"])


# ------------------------------------------- issue 14: conv temporal attention, event models
def test_energy_and_export_rebuild_a_run_trained_with_the_conv_temporal_attention(
    tmp_path: Path, capsys
) -> None:
    from gac_coding.energy import estimate_energy
    from gac_coding.models import create_model
    from gac_coding.models.checkpoints import load_weights

    run = tmp_path / "run"
    assert main(["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2",
                 "--epochs", "1", "--batch-size", "512", "--lr", "0.1", "--out", str(run),
                 "--device", "cpu", "--no-progress", "--temporal-attention", "conv"]) == 0  # fmt: skip
    capsys.readouterr()
    # the library's own reading: a conv model takes the file, an mlp model is told what it holds
    conv = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1, temporal_attention="conv")
    load_weights(conv, run / "model.safetensors")
    with pytest.raises(ValueError, match="conv temporal attention.*temporal_attention='mlp'"):
        load_weights(create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1), run / "last.pt")
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # the command's input
    expected = estimate_energy(conv, x).to_dict()
    for path in (run / "last.pt", run / "model.safetensors"):
        assert main([*_ENERGY, "--checkpoint", str(path), "--json"]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert payload["checkpoint"] == {"path": str(path), "layout": "library"}
        assert "encoder.gate.ta.conv1" in [layer["name"] for layer in payload["layers"]]
        assert payload["totals"] == expected["totals"] and payload["layers"] == expected["layers"]
        # asking for the other attention is one line naming what the file holds
        err = _one_line_error(capsys, [*_ENERGY, "--checkpoint", str(path), "--temporal-attention", "mlp"])
        assert (f"error: --temporal-attention: the checkpoint {path} holds a msresnet_tiny run (T=2, "
                "10 classes, 1 input channels, GAC encoder, conv temporal attention), got "
                "--temporal-attention mlp") in err, err  # fmt: skip
    # a bare state dict records nothing: the option says what to build
    bare = tmp_path / "bare.pt"
    torch.save(conv.state_dict(), bare)
    argv = [*_ENERGY, "--model", "msresnet_tiny", "--T", "2", "--in-channels", "1", "--checkpoint", str(bare)]
    assert main([*argv, "--temporal-attention", "conv", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"] == expected["totals"]
    err = _one_line_error(capsys, argv)  # built with the default mlp: the keys differ
    assert "'encoder.gate.ta.conv1.weight'" in err and "keys do not match" in err
    # gac-coding export rebuilds it from the same record (its own parser: the command's functions)
    import argparse

    from gac_coding.cli.export import configure_export_parser, run_export_command

    parser = argparse.ArgumentParser()
    configure_export_parser(parser)
    out = tmp_path / "export"
    common = ["--checkpoint", str(run / "last.pt"), "--input-size", "8", "8"]
    assert run_export_command(parser.parse_args([*common, "--out", str(out)])) == 0
    assert (out / "backbone.nir").is_file() and "library weights" in capsys.readouterr().out
    asked = parser.parse_args([*common, "--out", str(tmp_path / "x"), "--temporal-attention", "mlp"])
    with pytest.raises(ValueError, match="--temporal-attention: the checkpoint .* conv temporal attention"):
        run_export_command(asked)


def test_the_encoder_variants_are_trained_recorded_and_rebuilt(tmp_path: Path, capsys) -> None:
    # issue 26: --ta-bias, --ta-activation, --ta-source and --gate reach the encoder, travel with
    # the files, and energy/export rebuild the same model (a gate of another form would load the
    # same weights silently: the record is what tells them apart)
    from gac_coding.energy import estimate_energy
    from gac_coding.models import create_model
    from gac_coding.models.checkpoints import load_weights, read_weights

    run = tmp_path / "run"
    assert main(["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2",
                 "--epochs", "1", "--batch-size", "512", "--lr", "0.1", "--out", str(run),
                 "--device", "cpu", "--no-progress", "--ta-source", "membrane", "--gate", "sum",
                 "--ta-activation", "gelu"]) == 0  # fmt: skip
    capsys.readouterr()
    options = {"temporal_attention": "mlp", "ta_bias": False, "ta_activation": "gelu",
               "ta_source": "membrane", "gate": "sum"}  # fmt: skip
    for name in ("last.pt", "model.safetensors"):
        assert {k: v for k, v in read_weights(run / name).settings.items() if k in options} == options
    model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1, **options)
    load_weights(model, run / "model.safetensors")
    with pytest.raises(ValueError, match=r"sum gate.*gate='product'"):  # the same keys: refused
        load_weights(create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1, ta_activation="gelu",
                                  ta_source="membrane"), run / "last.pt")  # fmt: skip
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))  # the command's input
    expected = estimate_energy(model, x).to_dict()
    assert main([*_ENERGY, "--checkpoint", str(run / "last.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"] == expected["totals"]
    err = _one_line_error(capsys, [*_ENERGY, "--checkpoint", str(run / "last.pt"), "--gate", "product"])
    assert "--gate: the checkpoint" in err and "sum gate" in err and err.endswith("got --gate product\n")
    err = _one_line_error(capsys, [*_ENERGY, "--checkpoint", str(run / "last.pt"), "--ta-bias"])
    assert "with the paper's ta_bias=False, got --ta-bias" in err
    assert main([*_ENERGY, "--checkpoint", str(run / "last.pt"), "--no-ta-bias", "--gate", "sum"]) == 0
    capsys.readouterr()
    # a paper run written before the options existed records none of them: read as the paper's
    old = tmp_path / "old.pt"
    paper = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1)
    torch.save({"model": paper.state_dict(), "config": {"model": "msresnet_tiny", "T": 2, "gac": True,
                "num_classes": 10, "in_channels": 1}}, old)  # fmt: skip
    assert read_weights(old).settings["gate"] == "product"
    err = _one_line_error(capsys, [*_ENERGY, "--checkpoint", str(old), "--gate", "sum"])
    assert "with the paper's gate='product', got --gate sum" in err


def test_a_recorded_temporal_attention_is_checked(tmp_path: Path) -> None:
    from gac_coding.models.checkpoints import CheckpointError, read_weights
    from gac_coding.train.checkpoint import save_safetensors

    lin = torch.nn.Linear(3, 2)
    path = save_safetensors(lin.state_dict(), tmp_path / "w.safetensors", {"temporal_attention": "lstm"})
    with pytest.raises(CheckpointError, match=r"temporal_attention 'lstm' is not one of \['mlp', 'conv'\]"):
        read_weights(path)
    for key, bad in (("gate", "max"), ("ta_bias", "yes"), ("ta_source", "spikes")):
        path = save_safetensors(lin.state_dict(), tmp_path / "w.safetensors", {key: bad})
        with pytest.raises(CheckpointError, match=f"recorded {key} '{bad}' is not one of"):
            read_weights(path)
    pt = tmp_path / "w.pt"  # last.pt keeps it among the create_model arguments of its config
    torch.save({"model": lin.state_dict(), "config": {"model_kwargs": {"temporal_attention": "conv"}}}, pt)
    assert read_weights(pt).settings == {"temporal_attention": "conv"}


def _event_frames(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """The documented input of ``gac-coding energy --sequence``: Bernoulli(0.1) frames, seeded."""
    gen = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full(shape, 0.1), generator=gen)


def test_energy_of_an_event_model_is_that_of_its_event_frames(tmp_path: Path, capsys) -> None:
    from gac_coding.energy import estimate_energy
    from gac_coding.models import create_model

    pt, st = _run_files(tmp_path, model="vgg_tiny", T=3, num_classes=4, in_channels=2)
    model = create_model("vgg_tiny", num_classes=4, T=3, in_channels=2)
    model.load_state_dict(torch.load(pt, weights_only=True)["model"])
    x = _event_frames((3, 2, 2, 12, 12), seed=5)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    expected = estimate_energy(model, x).to_dict()
    for path in (pt, st):
        assert main(["energy", "--checkpoint", str(path), "--random-input", "--input-size", "12", "12",
                     "--batch-size", "2", "--seed", "5", "--json"]) == 0  # fmt: skip
        payload = json.loads(capsys.readouterr().out)
        assert payload["input"] == {"kind": "random event frames", "shape": [3, 2, 2, 12, 12]}
        assert payload["totals"] == expected["totals"] and payload["layers"] == expected["layers"]
        assert payload["totals"]["T"] == 3
    # --no-sequence: a static image batch through the same model
    assert main(["energy", "--checkpoint", str(st), "--random-input", "--input-size", "12", "12",
                 "--no-sequence", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["input"] == {"kind": "random images", "shape": [1, 2, 12, 12]}
    # without a checkpoint: 2 channels and the recipe's 48x48 frames by default; text names the input
    assert main(["energy", "--model", "vgg_tiny", "--T", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "vgg_tiny, weights: random init, BatchNorm statistics from the random batch",
        "measured on: random input (2, 1, 2, 48, 48), event frames [T, B, C, H, W] (each pixel an "
        "event with probability 0.1), seeded"]  # fmt: skip
    # --sequence on an image model: T frames of its channels
    assert main([*_ENERGY, "--model", "msresnet_tiny", "--T", "3", "--in-channels", "1", "--sequence",
                 "--no-calibrate", "--json"]) == 0  # fmt: skip
    payload = json.loads(capsys.readouterr().out)
    assert payload["input"] == {"kind": "random event frames", "shape": [3, 1, 1, 8, 8]}
    assert payload["batchnorm_calibrated"] is False and payload["totals"]["T"] == 3
    # another T than the checkpoint's is refused in one line, as for images
    err = _one_line_error(capsys, ["energy", "--checkpoint", str(st), "--random-input", "--T", "2"])
    assert "error: --T: the checkpoint" in err


# ------------------------------------ issue 22: --coding everywhere, models that describe themselves
def _energy_json(capsys, *argv: str) -> dict:
    assert main(["energy", *argv, "--no-calibrate", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_energy_takes_each_coding_of_a_model_without_a_checkpoint(capsys) -> None:
    """``--coding direct`` measures the direct-coding model, ``--coding rate`` the rate-coded model,
    which draws its Bernoulli spikes from a generator seeded with ``--seed``: both equal the report
    computed here on the same seeded random image."""
    from gac_coding.energy import estimate_energy
    from gac_coding.models import create_model

    common = ("--model", "msresnet_tiny", "--T", "2", "--in-channels", "1", "--input-size", "8", "8")
    for coding in ("direct", "rate"):
        torch.manual_seed(0)  # what the command seeds the weights with (--seed 0)
        model = create_model("msresnet_tiny", T=2, in_channels=1, coding=coding)
        if coding == "rate":
            model.encoder.generator = torch.Generator().manual_seed(0)
        x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        expected = estimate_energy(model, x).to_dict()
        payload = _energy_json(capsys, *common, "--coding", coding)
        assert payload["totals"] == expected["totals"] and payload["layers"] == expected["layers"]
        assert payload["input"]["shape"] == [1, 1, 8, 8]
    gac = _energy_json(capsys, *common)  # the default: GAC, whose gate layers the direct model lacks
    assert {layer["name"] for layer in gac["layers"]} > {layer["name"] for layer in payload["layers"]}
    assert main(["energy", *common, "--coding", "rate"]) == 0
    assert "coded as Bernoulli spikes over T=2 steps, seeded" in capsys.readouterr().out.splitlines()[1]
    # the deprecated name: one warning line, then the same measurement
    assert main(["energy", *common, "--coding", "poisson", "--no-calibrate", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("gac-coding energy: --coding poisson is deprecated; use --coding rate")
    assert json.loads(captured.out)["totals"] == payload["totals"]
    err = _one_line_error(capsys, ["energy", "--model", "vgg_tiny", "--coding", "rate"])
    assert "--coding: the model 'vgg_tiny' takes event frames coded as gac or direct, got rate" in err


def test_export_refuses_what_to_nir_cannot_take_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:
    """vgg_tiny declares no NIR export: with --model the checkpoint is not even read (it does not
    exist here); from a checkpoint's settings, nothing is built and nothing written."""
    import gac_coding.cli.export as command

    refused = "error: --format nir: the model 'vgg_tiny' cannot be exported to NIR"
    out = tmp_path / "out"
    err = _one_line_error(capsys, ["export", "--model", "vgg_tiny", "--checkpoint", str(tmp_path / "none.pt"),
                                   "--out", str(out)])  # fmt: skip
    assert refused in err and "the exports of 'vgg_tiny': onnx" in err
    pt, _ = _run_files(tmp_path / "run", model="vgg_tiny", T=2, num_classes=4, in_channels=2)

    def build_model(settings):
        raise AssertionError("export built the model of a refused export")

    monkeypatch.setattr(command, "build_model", build_model)
    err = _one_line_error(capsys, ["export", "--checkpoint", str(pt), "--out", str(out)])
    assert refused in err and not out.exists()


def test_export_takes_the_coding_options(tmp_path: Path, capsys) -> None:
    """A GAC checkpoint exported with another --coding is refused in one line saying what it holds;
    the deprecated --no-gac says so on one line first."""
    _, st = _run_files(tmp_path / "run", T=2, num_classes=10, in_channels=1)
    held = "a msresnet_tiny run (T=2, 10 classes, 1 input channels, GAC encoder)"
    common = ["export", "--checkpoint", str(st), "--out", str(tmp_path / "out"), "--input-size", "8", "8"]
    err = _one_line_error(capsys, [*common, "--coding", "direct"])
    assert f"error: --coding: the checkpoint {st} holds {held}, got --coding direct" in err
    assert main([*common, "--no-gac"], friendly_errors=True) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith("gac-coding export: --no-gac is deprecated; use --coding direct")
    assert error.endswith(f"--no-gac: the checkpoint {st} holds {held}, got --no-gac")
    assert main([*common, "--coding", "gac"]) == 0 and (tmp_path / "out" / "backbone.nir").is_file()
