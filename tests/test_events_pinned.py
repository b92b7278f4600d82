"""Event data, pinned where test_events.py does not reach: the frame cache key setting by setting,
the ``T`` windows kept from a recording longer than ``T`` windows, and the CIFAR10-DVS split index
by index.

The recordings are the synthetic N-MNIST and CIFAR10-DVS files of test_events.py (the real
on-disk formats); frames are written out by hand; the split is computed by a loop written here from
the documented algorithm (per class, in file order, shuffled by ``numpy.random.default_rng(seed)``,
the first ``round(0.9 n)`` to training).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_events import _structured, make_cifar10dvs, make_nmnist, write_nmnist_bin

from gac_coding.train import events as ev
from gac_coding.train.events import FrameOptions, build_event_datasets, cifar10dvs_split, events_to_frames

# ------------------------------------------------------------------------------------------------
# The cache key: every setting that changes the frames changes the folder, the others do not
# ------------------------------------------------------------------------------------------------

BASE = FrameOptions(T=2)


@pytest.fixture(scope="module")
def nmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_nmnist(tmp_path_factory.mktemp("nmnist") / "data")
    build_event_datasets("nmnist", root, BASE)  # the base cache, read by the tests below
    return root


def _folders(root: Path, options: FrameOptions) -> tuple[Path, Path]:
    spec = build_event_datasets("nmnist", root, options)
    return spec.train.folder, spec.test.folder


@pytest.mark.parametrize("change", [{"T": 3}, {"size": 17}, {"window_ms": 50.0}], ids=lambda c: next(iter(c)))
def test_each_frame_setting_has_its_own_cache(nmnist_root: Path, change: dict) -> None:
    base = _folders(nmnist_root, BASE)
    other = _folders(nmnist_root, dataclasses.replace(BASE, **change))
    assert other[0] != base[0] and other[1] != base[1]
    assert other[0].parent == base[0].parent  # the same cache folder, another key
    frames, _ = build_event_datasets("nmnist", nmnist_root, dataclasses.replace(BASE, **change)).train[0]
    assert frames.shape[0] == change.get("T", 2)
    assert frames.shape[-1] == change.get("size", 34)


@pytest.mark.parametrize(
    "change", [{"flip": True}, {"translate": 3}, {"split_seed": 5}], ids=lambda c: next(iter(c))
)
def test_augmentations_and_the_split_seed_share_the_cache(nmnist_root: Path, change: dict) -> None:
    assert _folders(nmnist_root, dataclasses.replace(BASE, **change)) == _folders(nmnist_root, BASE)


def test_cache_dir_moves_the_cache_under_the_same_key(nmnist_root: Path, tmp_path: Path) -> None:
    base = _folders(nmnist_root, BASE)
    moved = _folders(nmnist_root, dataclasses.replace(BASE, cache_dir=str(tmp_path / "c")))
    assert moved[0].parent == tmp_path / "c" and moved[0].name == base[0].name


def test_the_source_folder_is_in_the_key(nmnist_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(nmnist_root / "NMNIST", copy / "NMNIST", copy_function=shutil.copy2)
    cache = str(tmp_path / "shared")  # one cache folder for both sources
    a = _folders(nmnist_root, dataclasses.replace(BASE, cache_dir=cache))
    b = _folders(copy, dataclasses.replace(BASE, cache_dir=cache))
    assert a[0] != b[0] and a[1] != b[1]


def _frames_of(x: list[int], y: list[int], t: list[int], p: list[int], T: int = 2) -> torch.Tensor:
    return events_to_frames(_structured(x, y, t, p), (34, 34), FrameOptions(T=T))


# the first training recording rewritten: another size, the same size, a new name
_NEW = ([5, 6, 7, 8], [1, 1, 2, 2], [0, 10, 20, 30], [1, 1, 0, 0])
_SAME_SIZE = ([9, 9, 9, 9, 9], [3, 3, 3, 3, 3], [0, 1, 2, 3, 41], [0, 0, 0, 1, 1])  # 5 events as before


def _edit(root: Path, how: str) -> tuple[str, torch.Tensor]:
    """Change ``Train/0/00000.bin`` (the 5-event recording of test_events.KNOWN) and return its new
    path and frames."""
    path = root / "NMNIST" / "Train" / "0" / "00000.bin"
    st = os.stat(path)
    if how == "size":  # 4 events: 20 bytes instead of 25, the old modification time
        write_nmnist_bin(path, *_NEW)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return str(path), _frames_of(*_NEW)
    if how == "mtime":  # 5 other events: the same 25 bytes, a later modification time
        write_nmnist_bin(path, *_SAME_SIZE)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert os.stat(path).st_size == st.st_size
        return str(path), _frames_of(*_SAME_SIZE)
    renamed = path.with_name("00000b.bin")  # the same file under another name, same size and time
    write_nmnist_bin(renamed, *_SAME_SIZE)
    os.utime(renamed, ns=(st.st_atime_ns, st.st_mtime_ns))
    path.unlink()
    return str(renamed), _frames_of(*_SAME_SIZE)


@pytest.mark.parametrize("how", ["size", "mtime", "name"])
def test_an_edited_recording_is_never_read_from_a_stale_cache(tmp_path: Path, how: str) -> None:
    root = make_nmnist(tmp_path / "data", per_class=1)
    before = build_event_datasets("nmnist", root, BASE)
    path, want = _edit(root, how)
    after = build_event_datasets("nmnist", root, BASE)
    assert after.train.folder != before.train.folder  # the key saw the change
    assert after.test.folder == before.test.folder  # the other split's files did not change
    src = ev._tonic_dataset("nmnist", root, True)
    i = src.data.index(path)
    frames, label = after.train[i]
    assert label == 0
    torch.testing.assert_close(frames, want, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# A recording longer than T fixed windows: the first T windows, counted from the first event
# ------------------------------------------------------------------------------------------------

# 10 ms windows from the first event at t = 100 ms: [100, 110) ms holds t = 100, 105; [110, 120)
# holds t = 112, 119.999; the events at 120, 125, 138 and 161 ms fall in windows 3 to 7 and are
# dropped
LONG = ([1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 1, 1, 2, 2, 3, 3],
        [100_000, 105_000, 112_000, 119_999, 120_000, 125_000, 138_000, 161_000],
        [1, 0, 1, 1, 0, 0, 1, 0])  # fmt: skip
WINDOW_MS = 10.0


def _long_by_hand(size: int) -> torch.Tensor:
    want = torch.zeros(2, 2, size, size)
    want[0, 1, 0, 1] = 1  # t=100 ms: x=1, y=0, on
    want[0, 0, 0, 2] = 1  # t=105 ms: x=2, y=0, off
    want[1, 1, 1, 3] = 1  # t=112 ms: x=3, y=1, on
    want[1, 1, 1, 4] = 1  # t=119.999: x=4, y=1, on
    return want


def test_a_long_recording_keeps_its_first_T_windows() -> None:
    frames = events_to_frames(_structured(*LONG), (34, 34), FrameOptions(T=2, window_ms=WINDOW_MS))
    torch.testing.assert_close(frames, _long_by_hand(34), rtol=0, atol=0)
    # with more steps than the recording has windows: every window, then empty frames
    all_windows = events_to_frames(_structured(*LONG), (34, 34), FrameOptions(T=9, window_ms=WINDOW_MS))
    assert all_windows.shape[0] == 9 and int(all_windows.sum()) == 8
    torch.testing.assert_close(all_windows[:2], _long_by_hand(34), rtol=0, atol=0)
    assert [int(all_windows[k].sum()) for k in range(9)] == [2, 2, 2, 1, 0, 0, 1, 0, 0]


def test_a_long_recording_through_the_data_set_cache(tmp_path: Path) -> None:
    root = make_nmnist(tmp_path / "data")
    path = root / "NMNIST" / "Train" / "0" / "00000.bin"
    write_nmnist_bin(path, *LONG)
    spec = build_event_datasets("nmnist", root, FrameOptions(T=2, window_ms=WINDOW_MS))
    i = ev._tonic_dataset("nmnist", root, True).data.index(str(path))
    torch.testing.assert_close(spec.train[i][0], _long_by_hand(34), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# The CIFAR10-DVS split, index by index
# ------------------------------------------------------------------------------------------------

# classes of 10, 4, 6 and 5 recordings, interleaved: round(0.9 n) = 9, 4 (3.6), 5 (5.4) and 4
# (4.5 rounds to even) go to training
LABELS = [2, 0, 1, 0, 2, 2, 1, 0, 0, 2, 1, 0, 2, 0, 0, 1, 2, 0, 0, 0, 3, 3, 3, 3, 3]


def documented_split(labels: list[int], seed: int) -> tuple[list[int], list[int]]:
    """The documented algorithm, written independently: one generator for the whole split; per
    class in increasing label order, the class's positions in file order, shuffled in place."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for c in sorted(set(labels)):
        positions = np.array([i for i, label in enumerate(labels) if label == c])
        rng.shuffle(positions)
        n_train = round(0.9 * len(positions))
        train.extend(int(i) for i in positions[:n_train])
        test.extend(int(i) for i in positions[n_train:])
    return sorted(train), sorted(test)


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_split_indices_follow_the_documented_algorithm(seed: int) -> None:
    train, test = cifar10dvs_split(LABELS, seed)
    assert (train, test) == documented_split(LABELS, seed)
    assert len(test) == 1 + 0 + 1 + 1  # per class: 10 - 9, 4 - 4, 6 - 5, 5 - 4


def test_split_indices_pinned_for_seed_0() -> None:
    """The same split on every machine: numpy's PCG64 stream is stable across versions."""
    train, test = cifar10dvs_split(LABELS, 0)
    assert test == [3, 16, 20]
    assert train == sorted(set(range(len(LABELS))) - {3, 16, 20})


def _walk_listing_files(reverse: bool):
    """``os.walk`` whose file lists come sorted by name, or in reverse: two machines whose
    directories list the same files in different orders (ext4 lists them by a per-disk hash)."""
    real_walk = os.walk

    def walk(top, *args, **kwargs) -> Iterator[tuple[str, list[str], list[str]]]:
        for path, dirs, files in real_walk(top, *args, **kwargs):
            files.sort(reverse=reverse)
            yield path, dirs, files

    return walk


def test_the_split_follows_file_names_whatever_the_directory_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_cifar10dvs(tmp_path / "c10", per_class=5)
    files = sorted(root.glob("CIFAR10DVS/*/*.aedat4"))  # file-name order, classes alphabetical
    labels = [ev.CIFAR10DVS_CLASSES.index(f.parent.name) for f in files]
    _, test = documented_split(labels, 3)
    want = sorted(files[i].name for i in test)
    for reverse in (False, True):
        monkeypatch.setattr(os, "walk", _walk_listing_files(reverse))
        options = FrameOptions(T=2, size=16, split_seed=3, cache_dir=str(tmp_path / f"cache{reverse}"))
        spec = build_event_datasets("cifar10dvs", root, options)
        data = ev._tonic_dataset("cifar10dvs", root, None).data
        assert sorted(Path(data[i]).name for i in spec.test.indices) == want, f"reverse={reverse}"
