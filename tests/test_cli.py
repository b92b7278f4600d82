"""The ``gac-coding`` command: demo outputs, train options, friendly errors, ``python -m``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gac_coding.cli import build_parser, main


def test_demo_writes_json_png_and_prints_the_table(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--seeds", "2", "--T", "2", "--out", str(out),
                 "--workers", "2"]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "demo.json").read_text())
    assert list(report["codings"]) == ["direct", "poisson", "gac"]
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
    assert report["codings"]["gac"]["gac"] is True and report["codings"]["poisson"]["gac"] is False
    assert report["best_coding"] == max(
        report["codings"], key=lambda k: report["codings"][k]["test_acc_mean"]
    )
    assert "test accuracy" in text and "firing rate" in text and "±" in text
    assert "2 process(es)" in text.splitlines()[0]
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # the runs are seeded and single-threaded: in-process gives the pool's numbers exactly
    from gac_coding.train.demo import run_demo

    solo = run_demo(epochs=1, seeds=2, T=2, out=tmp_path / "solo", workers=1, log=lambda _m: None)
    for name, res in report["codings"].items():
        for a, b in zip(res["runs"], solo["codings"][name]["runs"], strict=True):
            assert (a["test_acc"], a["firing_rate"]) == (b["test_acc"], b["firing_rate"])


def test_demo_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seeds: expected an integer >= 1, got 0"):
        main(["demo", "--seeds", "0", "--out", str(tmp_path)])


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
        parser.parse_args(["train", "--model", "m", "--dataset", "imagenet", "--T", "4",
                           "--epochs", "1", "--batch-size", "2", "--lr", "0.1", "--out", "o"])
    for command in ("demo", "train", "energy"):
        assert command in parser.format_help()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gac_coding", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_python_dash_m_trains_and_reports_errors_in_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    common = ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2",
              "--batch-size", "256", "--lr", "0.1", "--out", str(out), "--device", "cpu"]
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
