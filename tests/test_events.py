"""Event-camera data sets: tiny synthetic copies in each one's on-disk format, read through tonic.

The writers below produce the real formats: N-MNIST's 40-bit binary events, tonic's DVS128 Gesture
``.npy`` arrays (x, y, p, t in ms) and AEDAT 4 files (header + uncompressed flatbuffer event packets)
for CIFAR10-DVS. Frames are checked by hand on known events; one epoch trains through the CLI.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gac_coding.cli import main
from gac_coding.train import events as ev
from gac_coding.train.data import DataFolderError
from gac_coding.train.engine import TrainConfig, fit
from gac_coding.train.events import FrameOptions, build_event_datasets, events_to_frames


# ------------------------------------------------------------------------------ writers
def write_nmnist_bin(path: Path, x, y, t, p) -> None:
    """N-MNIST: 5 bytes per event: x, y, then polarity (bit 7) and a 23-bit timestamp in µs."""
    out = bytearray()
    for xi, yi, ti, pi in zip(x, y, t, p, strict=True):
        out += bytes([xi, yi, (pi << 7) | ((ti >> 16) & 0x7F), (ti >> 8) & 0xFF, ti & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


def write_gesture_npy(path: Path, x, y, p, t_ms) -> None:
    """tonic's DVS128 Gesture: an integer array [N, 4] of x, y, p, t (milliseconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.stack([x, y, p, t_ms], axis=1).astype(np.int64))


def _flatbuffer_event_packet(t, x, y, on) -> bytes:
    """A size-prefixed flatbuffer ``EventPacket {elements: [Event]}`` with identifier EVTS."""
    n = len(t)
    head = bytearray()
    head += struct.pack("<I", 0)  # size prefix, filled in below
    head += struct.pack("<I", 20 - 4)  # root table at 20, relative to the root offset's position
    head += b"EVTS"
    head += struct.pack("<HHH", 6, 8, 4)  # vtable at 12: its size, the table's size, field 0 at +4
    head += b"\0\0"  # table at 20 (4-aligned)
    head += struct.pack("<i", 20 - 12)  # the table's offset back to its vtable
    head += struct.pack("<I", 28 - 24)  # field 0: the vector at 28
    head += struct.pack("<I", n)  # vector length; elements at 32 (8-aligned structs)
    body = bytearray()
    for ti, xi, yi, oi in zip(t, x, y, on, strict=True):
        body += struct.pack("<qhhB3x", ti, xi, yi, oi)  # struct Event {t: int64; x, y: int16; on: bool}
    buf = head + body
    buf[0:4] = struct.pack("<I", len(buf) - 4)
    return bytes(buf)


def write_aedat4(path: Path, t, x, y, on, width: int = 128, height: int = 128) -> None:
    """AEDAT 4: magic line, flatbuffer IO header (no compression, XML stream description), then one
    uncompressed event packet of stream 0."""
    xml = (
        f'<dv version="2.0"><node name="outInfo" path="/mainloop/output/outInfo/">'
        f'<node name="0" path="/mainloop/output/outInfo/0/">'
        f'<attr key="typeIdentifier" type="string">EVTS</attr>'
        f'<node name="info" path="/mainloop/output/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
        f"</node></node></node></dv>"
    ).encode()
    header = bytearray()
    header += struct.pack("<I", 20)  # root table at 20
    header += b"IOHE"
    header += struct.pack("<HHHHH", 10, 8, 0, 0, 4)  # vtable at 8: compression and position default
    header += b"\0\0"
    header += struct.pack("<i", 20 - 8)
    header += struct.pack("<I", 28 - 24)  # description string at 28
    header += struct.pack("<I", len(xml)) + xml + b"\0"
    packet = _flatbuffer_event_packet(t, x, y, on)
    data = b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + bytes(header)
    data += struct.pack("<II", 0, len(packet)) + packet
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# known recordings: (x, y, t µs, p); with T=2 the bins are 20 µs wide from t=0, and the events at
# t=40 and t=41 fall outside (tonic's equal bins: w = (41 - 0) // 2 = 20)
KNOWN = ([1, 3, 3, 0, 2], [2, 0, 0, 5, 1], [0, 10, 25, 40, 41], [1, 0, 0, 1, 1])


def known_frames(size: int, shift: int = 0) -> torch.Tensor:
    want = torch.zeros(2, 2, size, size)
    want[0, 1, 2, 1] = 1  # (x=1, y=2, t=0, on)
    want[0, 0, 0, 3] = 1  # (x=3, y=0, t=10, off)
    want[1, 0, 0, 3] = 1  # (x=3, y=0, t=25, off)
    return want


def make_nmnist(root: Path, per_class: int = 1) -> Path:
    rng = np.random.default_rng(0)
    for split in ("Train", "Test"):
        for d in range(10):
            for i in range(per_class):
                n = 30
                t = np.sort(rng.integers(0, 300_000, n))
                write_nmnist_bin(
                    root / "NMNIST" / split / str(d) / f"{i:05d}.bin",
                    rng.integers(0, 34, n).tolist(),
                    rng.integers(0, 34, n).tolist(),
                    t.tolist(),
                    rng.integers(0, 2, n).tolist(),
                )
    write_nmnist_bin(root / "NMNIST" / "Train" / "0" / "00000.bin", *KNOWN)
    return root


def make_gesture(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for split, users in (("ibmGestureTrain", (1, 2)), ("ibmGestureTest", (24,))):
        for u in users:
            for label in range(11):
                n = 40
                write_gesture_npy(
                    root / "DVSGesture" / split / f"user{u:02d}_led" / f"{label}.npy",
                    rng.integers(0, 128, n),
                    rng.integers(0, 128, n),
                    rng.integers(0, 2, n),
                    np.sort(rng.integers(0, 3000, n)),
                )
    return root


def make_cifar10dvs(root: Path, per_class: int = 2) -> Path:
    rng = np.random.default_rng(2)
    for c in ev.CIFAR10DVS_CLASSES:
        for i in range(per_class):
            n = 25
            write_aedat4(
                root / "CIFAR10DVS" / c / f"cifar10_{c}_{i}.aedat4",
                np.sort(rng.integers(0, 500_000, n)).tolist(),
                rng.integers(0, 128, n).tolist(),
                rng.integers(0, 128, n).tolist(),
                rng.integers(0, 2, n).tolist(),
            )
    return root


# ------------------------------------------------------------------------------ frames by hand
def _structured(x, y, t, p):
    arr = np.zeros(len(x), dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
    arr["x"], arr["y"], arr["t"], arr["p"] = x, y, t, p
    return arr


def test_time_bins_by_hand() -> None:
    frames = events_to_frames(_structured(*KNOWN), (6, 6), FrameOptions(T=2))
    torch.testing.assert_close(frames, known_frames(6), rtol=0, atol=0)


def test_fixed_window_by_hand_pads_short_recordings() -> None:
    # 15 µs windows from t=0: [0,15) holds t=0,10; [15,30) t=25; [30,45) t=40,41; then empty frames
    frames = events_to_frames(_structured(*KNOWN), (6, 6), FrameOptions(T=5, window_ms=0.015))
    want = torch.zeros(5, 2, 6, 6)
    want[:2] = known_frames(6)
    want[2, 1, 5, 0] = 1  # (x=0, y=5, t=40, on)
    want[2, 1, 1, 2] = 1  # (x=2, y=1, t=41, on)
    torch.testing.assert_close(frames, want, rtol=0, atol=0)


def test_downsampling_by_hand() -> None:
    x, y = [0, 127, 64, 100], [5, 127, 63, 2]
    frames = events_to_frames(
        _structured(x, y, [0, 1, 2, 10], [1, 1, 0, 0]), (128, 128), FrameOptions(T=1, size=48)
    )
    want = torch.zeros(1, 2, 48, 48)
    for xi, yi, pi in zip(x[:3], y[:3], [1, 1, 0], strict=True):  # t=10 is the last event: outside
        want[0, pi, yi * 48 // 128, xi * 48 // 128] += 1
    torch.testing.assert_close(frames, want, rtol=0, atol=0)


def test_frame_options_validate() -> None:
    with pytest.raises(ValueError, match="T: expected an integer >= 1"):
        FrameOptions(T=0)
    with pytest.raises(ValueError, match="window_ms: expected a duration > 0"):
        FrameOptions(T=2, window_ms=-1.0)
    with pytest.raises(ValueError, match="size: expected an integer >= 4"):
        FrameOptions(T=2, size=2)


# ------------------------------------------------------------------------------ readers
def test_nmnist_reader_frames_and_batches(tmp_path: Path) -> None:
    root = make_nmnist(tmp_path / "data")
    spec = build_event_datasets("nmnist", root, FrameOptions(T=2, cache_dir=str(tmp_path / "c")))
    assert (spec.num_classes, spec.in_channels, spec.image_size) == (10, 2, 34)
    assert len(spec.train) == len(spec.test) == 10
    frames, label = spec.train[0]  # Train/0/00000.bin: the known recording
    assert label == 0
    torch.testing.assert_close(frames, known_frames(34), rtol=0, atol=0)
    x, y = next(iter(DataLoader(spec.train, batch_size=4, collate_fn=spec.collate_fn)))
    assert x.shape == (2, 4, 2, 34, 34) and y.shape == (4,)
    torch.testing.assert_close(x[:, 0], known_frames(34), rtol=0, atol=0)


def test_gesture_reader_by_hand(tmp_path: Path) -> None:
    root = tmp_path / "g"
    make_gesture(root)
    # user01_led/3.npy: two events 1 ms apart in the first bin, one in the second, one at the end
    write_gesture_npy(
        root / "DVSGesture" / "ibmGestureTrain" / "user01_led" / "3.npy",
        np.array([10, 20, 30, 40]),
        np.array([5, 6, 7, 8]),
        np.array([0, 1, 1, 0]),
        np.array([0, 1, 3, 4]),
    )
    spec = build_event_datasets("dvsgesture", root / "DVSGesture", FrameOptions(T=2, size=64))
    assert (spec.num_classes, spec.image_size, len(spec.train), len(spec.test)) == (11, 64, 22, 11)
    src = ev._tonic_dataset("dvsgesture", root, True)
    i = next(k for k, path in enumerate(src.data) if path.endswith("user01_led/3.npy"))
    frames, label = spec.train[i]
    assert label == 3
    want = torch.zeros(2, 2, 64, 64)
    want[0, 0, 5 // 2, 10 // 2] = 1  # t = 0 ms; bins of 2000 µs; downsampled by 2
    want[0, 1, 6 // 2, 20 // 2] = 1  # t = 1 ms
    want[1, 1, 7 // 2, 30 // 2] = 1  # t = 3 ms; t = 4 ms is the last event: outside
    torch.testing.assert_close(frames, want, rtol=0, atol=0)


def test_cifar10dvs_reader_and_split(tmp_path: Path) -> None:
    root = make_cifar10dvs(tmp_path / "c10", per_class=10)
    write_aedat4(
        root / "CIFAR10DVS" / "bird" / "cifar10_bird_0.aedat4",
        [0, 100, 150, 200],
        [127, 64, 0, 3],
        [0, 64, 127, 3],
        [1, 0, 1, 1],
    )
    spec = build_event_datasets("cifar10dvs", root, FrameOptions(T=2, size=32, split_seed=3))
    assert (len(spec.train), len(spec.test), spec.num_classes) == (90, 10, 10)
    assert sorted(spec.train.labels + spec.test.labels) == sorted(list(range(10)) * 10)
    assert set(spec.train.indices).isdisjoint(spec.test.indices)
    assert sorted(spec.test.labels) == list(range(10))  # one test recording per class
    src = ev._tonic_dataset("cifar10dvs", root, None)
    i = next(k for k, path in enumerate(src.data) if path.endswith("bird_0.aedat4"))
    frames = ev.EventFrames(spec.train.folder, [i], [2], spec.train.options, augment=False)[0][0]
    want = torch.zeros(2, 2, 32, 32)
    want[0, 1, 0, 127 // 4] = 1  # t=0; bins of 100 µs
    want[1, 0, 64 // 4, 64 // 4] = 1  # t=100
    want[1, 1, 127 // 4, 0] = 1  # t=150; t=200 is the last event: outside
    torch.testing.assert_close(frames, want, rtol=0, atol=0)
    # the same seed gives the same split; another seed another one
    again = build_event_datasets("cifar10dvs", root, FrameOptions(T=2, size=32, split_seed=3))
    other = build_event_datasets("cifar10dvs", root, FrameOptions(T=2, size=32, split_seed=4))
    assert again.test.indices == spec.test.indices != other.test.indices


def test_cache_is_reused_and_keyed_by_frame_settings(tmp_path: Path, monkeypatch) -> None:
    root = make_nmnist(tmp_path / "data")
    build_event_datasets("nmnist", root, FrameOptions(T=2))
    folders = sorted(p.name for p in (root / ".gac_frames").iterdir())
    assert len(folders) == 2  # train and test
    calls = []
    real = ev.events_to_frames
    monkeypatch.setattr(ev, "events_to_frames", lambda *a: calls.append(1) or real(*a))
    build_event_datasets("nmnist", root, FrameOptions(T=2, flip=True, translate=2))  # same frames
    assert calls == []
    build_event_datasets("nmnist", root, FrameOptions(T=3))
    build_event_datasets("nmnist", root, FrameOptions(T=2, window_ms=50.0))
    assert len(calls) == 2 * 20  # two new settings x (10 train + 10 test recordings)
    assert len(list((root / ".gac_frames").iterdir())) == 6
    done = json.loads(next((root / ".gac_frames").glob("nmnist-train-T3-*/complete.json")).read_text())
    assert done["count"] == 10 and done["T"] == 3


def test_reading_only_a_cache_that_is_missing_raises(tmp_path: Path) -> None:
    root = make_nmnist(tmp_path / "data")
    with pytest.raises(RuntimeError, match=r"nmnist: the frames of the 'train' split are not cached"):
        build_event_datasets("nmnist", root, FrameOptions(T=2), build_cache=False)
    assert not (root / ".gac_frames").exists() or not any((root / ".gac_frames").rglob("*.npy"))
    built = build_event_datasets("nmnist", root, FrameOptions(T=2))
    read = build_event_datasets("nmnist", root, FrameOptions(T=2), build_cache=False)
    assert len(read.train) == len(built.train) == 10 and len(read.test) == 10
    assert torch.equal(read.test[3][0], built.test[3][0])


_COUNTING_RANK = """
import json, os, sys
from gac_coding.cli import main
from gac_coding.train import events as ev
calls = []
real = ev.events_to_frames
ev.events_to_frames = lambda *a: calls.append(1) or real(*a)  # counts the frames this rank computes
rc = main(sys.argv[2:])
with open(os.path.join(sys.argv[1], "rank" + os.environ["RANK"] + ".json"), "w") as fh:
    json.dump({"rc": rc, "computed": len(calls)}, fh)
sys.exit(rc)
"""


def test_torchrun_ranks_share_one_frame_cache(tmp_path: Path) -> None:
    """Rank 0 computes the frames (10 train + 10 test recordings) while rank 1 waits; rank 1
    computes none and reads rank 0's cache."""
    import os
    import subprocess
    import sys

    root = make_nmnist(tmp_path / "data")
    out = tmp_path / "run"
    script = tmp_path / "counting_rank.py"
    script.write_text(_COUNTING_RANK)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), "train", "--model", "vgg_tiny", "--dataset", "nmnist",
           "--data-dir", str(root), "--T", "2", "--epochs", "1", "--batch-size", "4",
           "--lr", "0.05", "--out", str(out), "--device", "cpu", "--no-progress"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "2 process(es) on cpu" in proc.stdout
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"rc": 0, "computed": 20}, {"rc": 0, "computed": 0}]
    caches = sorted(p.name.split("-")[1] for p in (root / ".gac_frames").iterdir())
    assert caches == ["test", "train"]  # one cache per split
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1


def test_augmentations_shift_and_flip_by_hand() -> None:
    frames = torch.arange(2 * 2 * 5 * 5, dtype=torch.float32).view(2, 2, 5, 5) + 1
    shifted = ev.EventFrames.__new__(ev.EventFrames)
    shifted.options = FrameOptions(T=2, translate=2)
    seen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        out = shifted._augment(frames)
        # find the shift: the pixel that holds frames[..., 2, 2]
        pos = (out[0, 0] == frames[0, 0, 2, 2]).nonzero()
        dy, dx = (int(pos[0, 0]) - 2, int(pos[0, 1]) - 2)
        assert abs(dy) <= 2 and abs(dx) <= 2
        want = torch.zeros_like(frames)
        ys, xs = slice(max(dy, 0), 5 + min(dy, 0)), slice(max(dx, 0), 5 + min(dx, 0))
        want[..., ys, xs] = frames[..., max(-dy, 0) : 5 - max(dy, 0), max(-dx, 0) : 5 - max(dx, 0)]
        torch.testing.assert_close(out, want, rtol=0, atol=0)
        seen.add((dy, dx))
    assert len(seen) > 5
    flipper = ev.EventFrames.__new__(ev.EventFrames)
    flipper.options = FrameOptions(T=2, flip=True)
    outs = []
    for seed in range(10):
        torch.manual_seed(seed)
        outs.append(flipper._augment(frames))
    assert any(torch.equal(o, frames.flip(-1)) for o in outs) and any(torch.equal(o, frames) for o in outs)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "name, fragment",
    [
        ("nmnist", "NMNIST/Train/<digit 0-9>/*.bin"),
        ("dvsgesture", "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy"),
        ("cifar10dvs", "CIFAR10DVS/<class>/*.aedat4"),
    ],
)
def test_missing_folder_is_one_line_naming_the_layout(
    tmp_path: Path, capsys, name: str, fragment: str
) -> None:
    rc = main(
        [
            "train",
            "--model",
            "vgg_tiny",
            "--dataset",
            name,
            "--data-dir",
            str(tmp_path),
            "--T",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--lr",
            "0.1",
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ],
        friendly_errors=True,
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert fragment in err and str(tmp_path) in err and "Nothing is downloaded" in err


def test_incomplete_nmnist_names_what_is_missing(tmp_path: Path) -> None:
    root = make_nmnist(tmp_path / "d")
    for f in (root / "NMNIST" / "Test" / "7").iterdir():
        f.unlink()
    with pytest.raises(DataFolderError, match=r"no \.bin files in NMNIST/Test/7"):
        build_event_datasets("nmnist", root, FrameOptions(T=2))


def test_event_options_refused_elsewhere_and_bad_combinations() -> None:
    with pytest.raises(ValueError, match="events: frame options"):
        TrainConfig(model="msresnet_tiny", dataset="digits", events={"size": 8}).validate()
    with pytest.raises(ValueError, match="cutmix: works on static images"):
        TrainConfig(model="vgg_tiny", dataset="nmnist", cutmix=0.5).validate()
    with pytest.raises(TypeError, match="events: .*unexpected keyword"):
        TrainConfig(model="vgg_tiny", dataset="nmnist", events={"sise": 8}).validate()


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize(
    "name, maker, extra",
    [
        ("nmnist", make_nmnist, ["--translate", "2", "--flip", "--frame-size", "17"]),
        ("dvsgesture", make_gesture, ["--frame-size", "16", "--temporal-attention", "conv"]),
        ("cifar10dvs", make_cifar10dvs, ["--frame-size", "16", "--time-window", "100", "--split-seed", "1"]),
    ],
)
def test_one_epoch_through_the_cli(tmp_path: Path, name: str, maker, extra: list[str]) -> None:
    root = maker(tmp_path / "data")
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--model",
            "vgg_tiny",
            "--dataset",
            name,
            "--data-dir",
            str(root),
            "--T",
            "3",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--lr",
            "0.05",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            *extra,
        ]
    )
    assert rc == 0
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["epoch"] == 1 and 0.0 <= record["val_acc"] <= 1.0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["config"]["dataset"] == name and ckpt["config"]["in_channels"] == 2


def test_fit_direct_coding_msresnet_on_events(tmp_path: Path) -> None:
    root = make_nmnist(tmp_path / "data")
    config = TrainConfig(
        model="msresnet_tiny",
        dataset="nmnist",
        data_dir=str(root),
        T=2,
        epochs=1,
        batch_size=10,
        lr=0.05,
        coding="direct",
        device="cpu",
        progress=False,
    )
    result = fit(config, log=lambda line: None)
    assert result.history[0]["epoch"] == 1
    assert result.model.encoder.in_channels == 2
