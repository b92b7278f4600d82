"""Event data, pinned where test_events.py and test_events_pinned.py do not reach: the cache's
folder name from its documented key, its files (uint16 counts, ``complete.json``) and a rebuild over
an interrupted one, the atomic writes, the progress bar, counts past 16 bits, empty and one-event
recordings, the augmentations against draws made here from the same seed, which splits augment,
and every message (the argument, what was expected, what arrived).

The recordings are the synthetic files of test_events.py in the real on-disk formats; frames are
written out by hand.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_events import _structured, known_frames, make_cifar10dvs, make_nmnist, write_gesture_npy
from test_events_pinned import LABELS, documented_split

from gac_coding.train import events as ev
from gac_coding.train.data import DataFolderError
from gac_coding.train.events import (
    FrameOptions,
    build_event_datasets,
    check_event_folder,
    cifar10dvs_split,
    event_frame_size,
    events_to_frames,
)

BASE = FrameOptions(T=2)
DATASETS = "['nmnist', 'dvsgesture', 'cifar10dvs']"


@pytest.fixture(scope="module")
def nmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_nmnist(tmp_path_factory.mktemp("nmnist") / "data")
    build_event_datasets("nmnist", root, BASE)  # the base cache, read by the tests below
    return root


# ------------------------------------------------------------------------------------------------
# The cache: its folder name, its files, a rebuild
# ------------------------------------------------------------------------------------------------
def _expected_folder_name(root: Path, split: str, T: int) -> str:
    """``<name>-<split>-T<T>-<digest>``: the first 20 hex digits of the SHA-256 of the key in JSON
    with sorted keys; the key's ``files`` is the first 16 hex digits of the SHA-256 of each file's
    ``path NUL size NUL mtime_ns LF``, the files in path order."""
    folder = "Train" if split == "train" else "Test"
    files = sorted(str(f) for f in (root / "NMNIST" / folder).rglob("*.bin"))
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    key = {
        "T": T,
        "dataset": "nmnist",
        "files": h.hexdigest()[:16],
        "size": None,
        "source": str(root.resolve()),
        "split": split,
        "version": 1,
        "window_ms": None,
    }
    text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in key.items()) + "}"
    return f"nmnist-{split}-T{T}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def test_the_cache_folder_name_is_the_documented_key(nmnist_root: Path) -> None:
    """A cache written by one release is found by the next: the name is pinned to the key."""
    spec = build_event_datasets("nmnist", nmnist_root, BASE)
    assert spec.train.folder == nmnist_root / ".gac_frames" / _expected_folder_name(nmnist_root, "train", 2)
    assert spec.test.folder == nmnist_root / ".gac_frames" / _expected_folder_name(nmnist_root, "test", 2)


def test_the_cache_holds_uint16_counts_and_the_settings(nmnist_root: Path) -> None:
    spec = build_event_datasets("nmnist", nmnist_root, BASE)
    stored = np.load(spec.train.folder / "0.npy")  # Train/0/00000.bin: the known recording
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, known_frames(34).numpy().astype(np.uint16))
    text = (spec.train.folder / "complete.json").read_text()
    want = {"dataset": "nmnist", "split": "train", "T": 2, "size": None, "window_ms": None,
            "flip": False, "translate": 0, "cache_dir": None, "split_seed": 0, "count": 10}  # fmt: skip
    assert text == json.dumps(want, indent=1)  # one space per level, in this order


def test_an_interrupted_cache_is_rebuilt_in_its_folder(tmp_path: Path) -> None:
    root = make_nmnist(tmp_path / "data")
    options = FrameOptions(T=2, cache_dir=str(tmp_path / "cache"))
    folder = build_event_datasets("nmnist", root, options).train.folder
    (folder / "complete.json").unlink()  # a build stopped before its last file
    (folder / "0.npy").unlink()
    spec = build_event_datasets("nmnist", root, options)
    assert spec.train.folder == folder and (folder / "complete.json").is_file()
    torch.testing.assert_close(spec.train[0][0], known_frames(34), rtol=0, atol=0)


def _fake_frames(value: int):
    def frames(events, sensor, options) -> torch.Tensor:
        out = torch.zeros(1, 2, 2, 2)
        out[0, 1, 1, 0] = value
        return out

    return frames


def test_the_cache_refuses_counts_past_16_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = [(None, 0)]
    options = FrameOptions(T=1)
    monkeypatch.setattr(ev, "events_to_frames", _fake_frames(65535))
    ev._build_cache("nmnist", source, (2, 2), tmp_path / "a", options, False, {})
    assert int(np.load(tmp_path / "a" / "0.npy")[0, 1, 1, 0]) == 65535
    monkeypatch.setattr(ev, "events_to_frames", _fake_frames(65536))
    with pytest.raises(
        ValueError, match=r"^nmnist: sample 0 has more than 65535 events in one pixel and frame$"
    ):
        ev._build_cache("nmnist", source, (2, 2), tmp_path / "b", options, False, {})


def test_frame_counts_past_the_16_bit_signed_range_are_exact() -> None:
    """tonic counts in int16: 40000 events in one pixel came back as 40000 - 65536."""
    n = 40_000  # one pixel, t = 0 .. n-1 µs, then a last event (outside the one bin) elsewhere
    events = _structured([1] * n + [3], [2] * n + [0], list(range(n)) + [n], [1] * n + [0])
    frames = events_to_frames(events, (4, 4), FrameOptions(T=1))
    want = torch.zeros(1, 2, 4, 4)
    want[0, 1, 2, 1] = n
    torch.testing.assert_close(frames, want, rtol=0, atol=0)
    n = 65_536  # one more than a uint16 holds: refused, not wrapped to 0
    events = _structured([1] * n + [3], [2] * n + [0], list(range(n)) + [n], [1] * n + [0])
    with pytest.raises(ValueError, match=r"^events: 65536 events at pixel x=1, y=2, polarity 1 \(of the 4x4"):
        events_to_frames(events, (4, 4), FrameOptions(T=1))
    # the same pixel busy over a longer recording, under 65536 events in each frame: exact counts
    n = 90_000
    events = _structured([1] * n + [3], [2] * n + [0], list(range(n)) + [n], [1] * n + [0])
    frames = events_to_frames(events, (4, 4), FrameOptions(T=2))
    assert frames[:, 1, 2, 1].sum().item() == n and frames[:, 1, 2, 1].max().item() < 65536
    assert frames.sum().item() == n  # tonic's bins end before the last event's time


def test_a_count_wrap_is_found_from_65536_events_and_among_other_pixels_events() -> None:
    """Under fixed windows a window holds every event in it, the last one too: 65536 events at
    one pixel within 100 ms already wrap tonic's count to 0, and are refused with the whole
    message. Each pixel's events are compared with its own frames, so events at other pixels
    (under 65536 each) do not hide the wrap."""
    n = 65_536
    options = FrameOptions(T=1, window_ms=100.0)
    message = (
        "events: 65536 events at pixel x=1, y=2, polarity 1 (of the 4x4 frame) and more than 65535 "
        "of them in one frame; counts above 65535 per pixel and frame cannot be computed exactly"
    )
    events = _structured([1] * n, [2] * n, list(range(n)), [1] * n)  # t = 0 .. 65535 µs
    with pytest.raises(ValueError) as info:
        events_to_frames(events, (4, 4), options)
    assert str(info.value) == message
    m = 70_000  # rows 0 and 1 only, both polarities: 4375 events at each of 16 other pixels
    xs = [1] * n + [i % 4 for i in range(m)]
    ys = [2] * n + [(i // 4) % 2 for i in range(m)]
    ps = [1] * n + [(i // 8) % 2 for i in range(m)]
    ts = list(range(n)) + [i % n for i in range(m)]
    with pytest.raises(ValueError) as info:
        events_to_frames(_structured(xs, ys, ts, ps), (4, 4), options)
    assert str(info.value) == message
    # one event fewer: the counts are exact (65535 fits), nothing refused
    frames = events_to_frames(
        _structured([1] * (n - 1), [2] * (n - 1), list(range(n - 1)), [1] * (n - 1)), (4, 4), options
    )
    assert frames[0, 1, 2, 1].item() == n - 1 and frames.sum().item() == n - 1


def test_events_tonic_leaves_out_are_not_taken_for_a_wrap() -> None:
    """With ``T`` equal bins tonic counts ``t0 <= t < t0 + T w``, ``w = (t_last - t0) // T``: the
    last event and the final ``< T`` microseconds fall outside. 65536 events there at one pixel
    are not a wrap (the frames count none of them) and nothing is refused; inside the bins they
    are refused, counted as the frames count them."""
    n = 65_536
    frames = events_to_frames(_structured([1] * n, [2] * n, [0] * n, [1] * n), (4, 4), FrameOptions(T=2))
    assert frames.shape == (2, 2, 4, 4) and frames.sum().item() == 0  # one instant: w = 0
    # from t0 = 1000 µs: 10 events over 1000 .. 1009, 65536 at 1010 and the last event at 1011, so
    # w = 11 // 2 = 5 and the bins end at 1010 (the final < T µs and the last event fall outside)
    ts = list(range(1000, 1010)) + [1010] * n + [1011]
    events = _structured([0] * 10 + [1] * (n + 1), [0] * 10 + [2] * (n + 1), ts, [0] * 10 + [1] * (n + 1))
    frames = events_to_frames(events, (4, 4), FrameOptions(T=2))
    assert frames.sum().item() == 10 and frames[:, 0, 0, 0].tolist() == [5.0, 5.0]
    events = _structured([1] * (n + 3), [2] * (n + 3), list(range(n)) + [10**6] * 3, [1] * (n + 3))
    with pytest.raises(ValueError, match=r"^events: 65536 events at pixel x=1, y=2, polarity 1 \(of the 4x4"):
        events_to_frames(events, (4, 4), FrameOptions(T=2))


# ------------------------------------------------------------------------------------------------
# Atomic writes
# ------------------------------------------------------------------------------------------------
def test_an_array_is_written_through_a_hidden_temporary_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    real_save = np.save

    def save(fh, array) -> None:
        seen.append(sorted(os.listdir(tmp_path)))
        real_save(fh, array)

    monkeypatch.setattr(np, "save", save)
    ev._write_array(tmp_path / "0.npy", np.arange(3, dtype=np.uint16))
    (during,) = seen
    assert len(during) == 1 and re.fullmatch(r"\.0\.npy\..+\.tmp", during[0]), during
    assert os.listdir(tmp_path) == ["0.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "0.npy"), np.arange(3))


def test_a_failed_write_raises_its_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def save(fh, array) -> None:
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", save)
    with pytest.raises(OSError, match="^disk full$"):
        ev._write_array(tmp_path / "0.npy", np.arange(3))
    assert os.listdir(tmp_path) == []


def test_a_pickled_cache_file_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "0.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        ev.EventFrames(tmp_path, [0], [0], BASE, augment=False)[0]


# ------------------------------------------------------------------------------------------------
# The progress bar
# ------------------------------------------------------------------------------------------------
class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "progress, tty, shown",
    [(True, False, True), (False, True, False), (None, True, True), (None, False, False)],
)
def test_the_progress_bar(
    nmnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, progress, tty: bool, shown: bool
) -> None:
    import tqdm.auto

    calls: list[tuple[list[int], dict]] = []

    def bar(iterable, **kwargs):
        items = list(iterable)
        calls.append((items, kwargs))
        return iter(items)

    monkeypatch.setattr(tqdm.auto, "tqdm", bar)
    monkeypatch.setattr(sys, "stderr", _TTY() if tty else io.StringIO())
    spec = build_event_datasets(
        "nmnist", nmnist_root, FrameOptions(T=2, cache_dir=str(tmp_path)), progress=progress
    )
    if not shown:
        assert calls == []
        return
    assert calls == [
        (list(range(10)), {"desc": f"nmnist: events -> frames (cached in {folder})", "dynamic_ncols": True})
        for folder in (spec.train.folder, spec.test.folder)
    ]


# ------------------------------------------------------------------------------------------------
# Frames
# ------------------------------------------------------------------------------------------------
def test_an_empty_recording_is_empty_frames_of_the_frame_size() -> None:
    empty = _structured([], [], [], [])
    frames = events_to_frames(empty, (6, 4), FrameOptions(T=3))  # sensor W=6, H=4
    assert frames.shape == (3, 2, 4, 6) and frames.dtype == torch.float32 and not frames.any()
    frames = events_to_frames(empty, (8, 8), FrameOptions(T=2, size=4))
    assert frames.shape == (2, 2, 4, 4) and not frames.any()


def test_a_one_event_recording() -> None:
    frames = events_to_frames(_structured([1], [2], [0], [1]), (6, 4), FrameOptions(T=2, window_ms=1.0))
    want = torch.zeros(2, 2, 4, 6)
    want[0, 1, 2, 1] = 1
    torch.testing.assert_close(frames, want, rtol=0, atol=0)


@pytest.mark.parametrize("p, shown", [([0, 2], "[0, 2]"), ([-1, 1], "[-1, 1]")])
def test_a_polarity_other_than_0_or_1_is_refused(p: list[int], shown: str) -> None:
    with pytest.raises(
        ValueError, match=rf"^events: polarity must be 0 or 1, got values in {re.escape(shown)}$"
    ):
        events_to_frames(_structured([0, 1], [0, 1], [0, 5], p), (4, 4), FrameOptions(T=1))


def test_the_size_of_the_sensor_is_no_downsampling(nmnist_root: Path) -> None:
    same = build_event_datasets("nmnist", nmnist_root, FrameOptions(T=2, size=34))
    assert same.image_size == 34
    torch.testing.assert_close(same.train[0][0], known_frames(34), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# Augmentations: against draws made here from the same seed
# ------------------------------------------------------------------------------------------------
def _augmenter(options: FrameOptions) -> ev.EventFrames:
    return ev.EventFrames(Path("."), [], [], options, augment=True)


def _shifted_by_hand(frames: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    H, W = frames.shape[-2:]
    out = torch.zeros_like(frames)
    for y in range(H):
        for x in range(W):
            if 0 <= y - dy < H and 0 <= x - dx < W:
                out[..., y, x] = frames[..., y - dy, x - dx]
    return out


FRAMES = torch.arange(2 * 2 * 4 * 5, dtype=torch.float32).view(2, 2, 4, 5) + 1


@pytest.mark.parametrize("n", [1, 2, 3])
def test_translate_shifts_by_the_seeded_draw(n: int) -> None:
    aug = _augmenter(FrameOptions(T=2, translate=n))
    for seed in range(8):
        torch.manual_seed(seed)
        dy, dx = torch.randint(-n, n + 1, (2,)).tolist()
        torch.manual_seed(seed)
        torch.testing.assert_close(aug._augment(FRAMES), _shifted_by_hand(FRAMES, dy, dx), rtol=0, atol=0)


def test_flip_alone_draws_one_number_per_sample() -> None:
    """translate=0 draws no shift, so a seeded run flips as the seed's uniform draws say."""
    aug = _augmenter(FrameOptions(T=2, flip=True))
    torch.manual_seed(3)
    flips = [bool(torch.rand(()) < 0.5) for _ in range(12)]
    assert any(flips) and not all(flips)
    torch.manual_seed(3)
    for flip in flips:
        torch.testing.assert_close(aug._augment(FRAMES), FRAMES.flip(-1) if flip else FRAMES, rtol=0, atol=0)


def test_flip_takes_the_lower_half_of_the_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flipped when the uniform draw in [0, 1) is below 0.5: probability exactly 0.5."""
    aug = _augmenter(FrameOptions(T=2, flip=True))
    below = float(np.nextafter(np.float32(0.5), np.float32(0)))
    for draw, flipped in ((0.5, False), (below, True)):
        monkeypatch.setattr(torch, "rand", lambda *a, _d=draw, **k: torch.tensor(_d))
        assert torch.equal(aug._augment(FRAMES), FRAMES.flip(-1) if flipped else FRAMES)


def _unaugmented(spec_split: ev.EventFrames, i: int) -> torch.Tensor:
    return torch.from_numpy(np.load(spec_split.folder / f"{spec_split.indices[i]}.npy").astype(np.float32))


def _check_only_train_augments(spec, options: FrameOptions) -> None:
    assert spec.train.augment is True and spec.test.augment is False
    assert spec.train.options == options and spec.test.options == options
    plain = _unaugmented(spec.train, 0)
    flips = []
    for seed in range(8):
        torch.manual_seed(seed)
        flip = bool(torch.rand(()) < 0.5)
        flips.append(flip)
        torch.manual_seed(seed)
        torch.testing.assert_close(spec.train[0][0], plain.flip(-1) if flip else plain, rtol=0, atol=0)
        torch.manual_seed(seed)
        torch.testing.assert_close(spec.test[0][0], _unaugmented(spec.test, 0), rtol=0, atol=0)
    assert any(flips) and not all(flips)


def test_only_the_training_split_augments_nmnist(nmnist_root: Path) -> None:
    options = FrameOptions(T=2, flip=True)
    _check_only_train_augments(build_event_datasets("nmnist", nmnist_root, options), options)


def test_only_the_training_split_augments_cifar10dvs(tmp_path: Path) -> None:
    root = make_cifar10dvs(tmp_path / "c10", per_class=5)  # 4 + 1 per class
    options = FrameOptions(T=2, size=16, flip=True)
    _check_only_train_augments(build_event_datasets("cifar10dvs", root, options), options)


# ------------------------------------------------------------------------------------------------
# The data spec, labels, the split's default seed
# ------------------------------------------------------------------------------------------------
def _gesture(root: Path, train_labels: list[int], test_labels: list[int]) -> Path:
    for split, user, labels in (("ibmGestureTrain", 1, train_labels), ("ibmGestureTest", 24, test_labels)):
        for label in labels:
            write_gesture_npy(
                root / "DVSGesture" / split / f"user{user:02d}_led" / f"{label}.npy",
                np.array([1, 2, 3]),
                np.array([4, 5, 6]),
                np.array([0, 1, 1]),
                np.array([0, 1, 2]),
            )
    return root


def test_the_data_spec_names_the_data_set_and_its_classes(tmp_path: Path) -> None:
    spec = build_event_datasets(
        "dvsgesture", _gesture(tmp_path / "g", [0, 3], [10]), FrameOptions(T=2, size=16)
    )
    assert spec.name == "dvsgesture" and spec.num_classes == 11 and spec.image_size == 16
    assert len(spec.class_names) == 11
    assert spec.class_names[:3] == ["hand clap", "right hand wave", "left hand wave"]
    assert spec.class_names[-1] == "other gestures"
    assert (spec.train.labels, spec.test.labels) == ([0, 3], [10])


@pytest.mark.parametrize(
    "train, test, message",
    [([0, 11], [1], "dvsgesture train labels must lie in [0, 11), got 11"),
     ([0], [12, 1], "dvsgesture test labels must lie in [0, 11), got 12")],
)  # fmt: skip
def test_a_label_outside_the_classes_is_refused(tmp_path: Path, train, test, message: str) -> None:
    root = _gesture(tmp_path / "g", train, test)
    with pytest.raises(DataFolderError, match="^data_dir: " + re.escape(message) + "$"):
        build_event_datasets("dvsgesture", root, FrameOptions(T=2, size=8))


def test_the_split_seed_defaults_to_0() -> None:
    assert cifar10dvs_split(LABELS) == documented_split(LABELS, 0) != documented_split(LABELS, 1)


def test_sorted_by_path_leaves_what_it_cannot_sort() -> None:
    no_data = SimpleNamespace(targets=[1, 0])
    assert ev._sorted_by_path(no_data) is no_data and no_data.targets == [1, 0]
    no_targets = SimpleNamespace(data=["b", "a"])
    assert ev._sorted_by_path(no_targets) is no_targets and no_targets.data == ["b", "a"]
    none_targets = SimpleNamespace(data=["b", "a"], targets=None)
    assert ev._sorted_by_path(none_targets).data == ["b", "a"]
    short = SimpleNamespace(data=["c", "b", "a"], targets=[2, 1])
    assert ev._sorted_by_path(short).data == ["c", "b", "a"] and short.targets == [2, 1]
    a_tuple = SimpleNamespace(data=("b", "a"), targets=[1, 0])
    assert ev._sorted_by_path(a_tuple).data == ("b", "a")
    array_targets = SimpleNamespace(data=["b", "c", "a"], targets=np.array([1, 2, 0]))
    ev._sorted_by_path(array_targets)
    assert array_targets.data == ["a", "b", "c"]
    assert isinstance(array_targets.targets, np.ndarray) and array_targets.targets.tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------------
# tonic's data set classes: no download, aedat only for CIFAR10-DVS
# ------------------------------------------------------------------------------------------------
def test_tonic_download_is_refused(nmnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tonic

    def reached(self) -> None:
        raise AssertionError("tonic's own download was reached")

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", reached)
    dataset = ev._tonic_dataset("nmnist", nmnist_root, True)
    want = f"data_dir: nmnist is incomplete at {nmnist_root}; nothing is downloaded"
    with pytest.raises(DataFolderError, match="^" + re.escape(want) + "$"):
        dataset.download()


def test_cifar10dvs_needs_aedat_and_the_others_do_not(
    nmnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aedat", None)  # `import aedat` raises ImportError
    root = make_cifar10dvs(tmp_path / "c10", per_class=1)
    want = 'CIFAR10-DVS (.aedat4 files) needs aedat: pip install "gac-coding[events]"'
    with pytest.raises(ImportError, match="^" + re.escape(want) + "$"):
        ev._tonic_dataset("cifar10dvs", root, None)
    assert len(ev._tonic_dataset("nmnist", nmnist_root, True)) == 10


def test_events_need_tonic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tonic", None)
    want = 'event data sets need tonic (GPL-3.0): pip install "gac-coding[events]"'
    with pytest.raises(ImportError, match="^" + re.escape(want) + "$"):
        events_to_frames(_structured([0], [0], [0], [0]), (4, 4), BASE)


# ------------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------------
def test_an_unknown_data_set_is_named_with_the_known_ones(tmp_path: Path) -> None:
    want = f"^dataset: expected one of {re.escape(DATASETS)}, got 'mnist'$"
    with pytest.raises(ValueError, match=want):
        event_frame_size("mnist")
    with pytest.raises(ValueError, match=want):
        check_event_folder("mnist", tmp_path)


def test_no_data_dir_names_the_layout() -> None:
    want = (
        "data_dir: --dataset nmnist needs --data-dir DIR holding NMNIST/Train/<digit 0-9>/*.bin and "
        "NMNIST/Test/<digit 0-9>/*.bin (the extracted Train.zip and Test.zip of N-MNIST, as "
        "tonic.datasets.NMNIST expects them) (nothing is downloaded)"
    )
    with pytest.raises(DataFolderError, match="^" + re.escape(want) + "$"):
        build_event_datasets("nmnist", None, BASE)


def test_options_of_another_type_are_refused(nmnist_root: Path) -> None:
    with pytest.raises(TypeError, match="^options: expected a FrameOptions, got dict$"):
        build_event_datasets("nmnist", nmnist_root, {"T": 2})  # type: ignore[arg-type]


def test_a_size_above_the_sensor_is_refused(nmnist_root: Path) -> None:
    want = "size: nmnist's sensor is 34x34; downsampling goes to a smaller size, got 35"
    with pytest.raises(ValueError, match="^" + re.escape(want) + "$"):
        build_event_datasets("nmnist", nmnist_root, FrameOptions(T=2, size=35))


def test_flip_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="^flip: expected a bool, got int$"):
        FrameOptions(T=2, flip=1)  # type: ignore[arg-type]


def test_reading_a_missing_cache_names_its_folder(nmnist_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "nothing-here"
    want = (
        f"nmnist: the frames of the 'train' split are not cached in "
        f"'{cache / _expected_folder_name(nmnist_root, 'train', 2)}', and this process was told not "
        f"to compute them (build_cache=False: under torchrun rank 0 computes them first)"
    )
    with pytest.raises(RuntimeError, match="^" + re.escape(want) + "$"):
        build_event_datasets(
            "nmnist", nmnist_root, FrameOptions(T=2, cache_dir=str(cache)), build_cache=False
        )


@pytest.mark.parametrize(
    "emptied, shown",
    [
        (4, "CIFAR10DVS/airplane, CIFAR10DVS/automobile, CIFAR10DVS/bird, CIFAR10DVS/cat"),
        (5, "CIFAR10DVS/airplane, CIFAR10DVS/automobile, CIFAR10DVS/bird, CIFAR10DVS/cat and 1 more"),
        (10, "CIFAR10DVS/airplane, CIFAR10DVS/automobile, CIFAR10DVS/bird, CIFAR10DVS/cat and 6 more"),
    ],
)
def test_missing_class_folders_are_listed_four_at_most(tmp_path: Path, emptied: int, shown: str) -> None:
    root = make_cifar10dvs(tmp_path / "c10", per_class=1)
    for c in ev.CIFAR10DVS_CLASSES[:emptied]:
        for f in (root / "CIFAR10DVS" / c).iterdir():
            f.unlink()
    with pytest.raises(DataFolderError) as info:
        check_event_folder("cifar10dvs", root)
    message = str(info.value)
    assert message.startswith(f"data_dir: expected cifar10dvs at {root} as CIFAR10DVS/<class>/*.aedat4")
    assert message.endswith(
        f"; no .aedat4 files in {shown}. Nothing is downloaded: extract the archives there."
    )
