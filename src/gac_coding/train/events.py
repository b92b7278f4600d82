"""Event-camera data sets as frame sequences: N-MNIST, DVS128 Gesture, CIFAR10-DVS.

The events are read with `tonic <https://github.com/neuromorphs/tonic>`_ (the optional ``events``
extra, ``pip install "gac-coding[events]"``; tonic is GPL-3.0, see the README) from the folders its
data set classes use after extraction, and **nothing is ever downloaded**: a missing or incomplete
folder raises :class:`~gac_coding.train.spec.DataFolderError` naming the layout expected where.

=============  ============================================================  ========  =======
name           layout under ``--data-dir DIR``                               sensor    classes
=============  ============================================================  ========  =======
``nmnist``     ``NMNIST/Train/<0..9>/*.bin``, ``NMNIST/Test/<0..9>/*.bin``   34 x 34   10
``dvsgesture`` ``DVSGesture/ibmGestureTrain/user<NN>_<light>/<label>.npy``,  128x128   11
               ``DVSGesture/ibmGestureTest/...`` (tonic's preprocessed copy)
``cifar10dvs`` ``CIFAR10DVS/<airplane..truck>/*.aedat4``                     128x128   10
=============  ============================================================  ========  =======

``DIR`` may also be the data set's folder itself (``.../NMNIST``).

Frames (:class:`FrameOptions`): each sample becomes ``T`` frames with tonic's
``ToFrame(n_time_bins=T)`` (equal time bins from the first event: bin ``k`` holds the events with
``t0 + k w <= t < t0 + (k + 1) w``, ``w = (t_last - t0) // T`` microseconds; the last event and the
final ``< T`` microseconds fall outside, as in tonic), or, with ``window_ms``, the first ``T`` frames
of fixed ``window_ms`` windows from the first event (empty frames pad a short recording). A frame
counts the events per polarity and pixel: ``[T, 2, H, W]``, polarity 0 (OFF) first. ``size``
downsamples the events first (``x -> floor(x * size / W)``, tonic's ``Downsample``), e.g. 128 -> 64
or 48. Batches are time-major, ``[T, B, 2, H, W]``.

CIFAR10-DVS has no official split: the usual 9:1 split is drawn per class with ``split_seed``
(a class's recordings in file-name order, shuffled by ``numpy.random.default_rng(split_seed)``; the
first 90 % train, the rest test), so the same seed gives the same split on every machine.

Training augmentations on frames, off by default (the same draw for all ``T`` frames of a sample):
``flip`` (horizontal, probability 0.5; wrong for DVS Gesture, whose left- and right-hand classes
swap under it) and ``translate=n`` (a shift by up to ``n`` pixels each way, zero fill: the random
crop of a zero-padded frame used in DVS papers).

The frames are computed once, with a progress bar, and cached on disk (``cache_dir``, default
``DIR/.gac_frames``), under a key made of every setting that changes them (data set, source folder
and its files, ``T``, ``window_ms``, ``size``); the augmentations act on cached frames.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import boolean, integer, real
from ..io import atomic_write
from .spec import DataFolderError, DataSpec

__all__ = [
    "EVENT_DATASETS",
    "EventFrames",
    "FrameOptions",
    "build_event_datasets",
    "check_event_folder",
    "event_frame_size",
    "cifar10dvs_split",
    "events_to_frames",
    "time_major_collate",
]

#: Event data set names accepted by ``gac-coding train --dataset``.
EVENT_DATASETS: tuple[str, ...] = ("nmnist", "dvsgesture", "cifar10dvs")

CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                      "dog", "frog", "horse", "ship", "truck")  # fmt: skip
DVSGESTURE_CLASSES = ("hand clap", "right hand wave", "left hand wave", "right arm cw",
                      "right arm ccw", "left arm cw", "left arm ccw", "arm roll", "air drums",
                      "air guitar", "other gestures")  # fmt: skip
_CACHE_VERSION = 1


@dataclass(frozen=True)
class _Layout:
    folder: str  # tonic's folder name under DIR (its class name)
    tonic_class: str
    sensor: tuple[int, int]  # W, H
    classes: tuple[str, ...]
    extension: str
    describe: str  # the layout, for error messages


_LAYOUTS: dict[str, _Layout] = {
    "nmnist": _Layout(
        "NMNIST", "NMNIST", (34, 34), tuple(str(d) for d in range(10)), ".bin",
        "NMNIST/Train/<digit 0-9>/*.bin and NMNIST/Test/<digit 0-9>/*.bin (the extracted "
        "Train.zip and Test.zip of N-MNIST, as tonic.datasets.NMNIST expects them)",
    ),
    "dvsgesture": _Layout(
        "DVSGesture", "DVSGesture", (128, 128), DVSGESTURE_CLASSES, ".npy",
        "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy and "
        "DVSGesture/ibmGestureTest/... (tonic's preprocessed DVS128 Gesture: "
        "ibmGestureTrain.tar.gz and ibmGestureTest.tar.gz extracted there)",
    ),
    "cifar10dvs": _Layout(
        "CIFAR10DVS", "CIFAR10DVS", (128, 128), CIFAR10DVS_CLASSES, ".aedat4",
        "CIFAR10DVS/<class>/*.aedat4 for the 10 classes " + ", ".join(CIFAR10DVS_CLASSES)
        + " (tonic's CIFAR10DVS.zip and the class zips in it extracted there)",
    ),
}  # fmt: skip
_SPLIT_FOLDERS = {"nmnist": ("Train", "Test"), "dvsgesture": ("ibmGestureTrain", "ibmGestureTest")}


@dataclass(frozen=True)
class FrameOptions:
    """How events become frames, and the training augmentations (see the module docstring).

    Args:
        T: frames per sample (the model's time steps).
        size: downsample the (square) sensor to ``size x size`` pixels; ``None`` keeps it.
        window_ms: frames of this fixed duration (the first ``T`` of them) instead of ``T`` equal
            bins over the whole recording.
        flip: random horizontal flip of training samples.
        translate: random shift of training samples by up to this many pixels (zero fill).
        cache_dir: where frames are cached (default ``DIR/.gac_frames``).
        split_seed: seed of the CIFAR10-DVS 9:1 split.
    """

    T: int
    size: int | None = None
    window_ms: float | None = None
    flip: bool = False
    translate: int = 0
    cache_dir: str | None = None
    split_seed: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("T", 1), ("translate", 0), ("split_seed", 0)):
            integer(name, getattr(self, name), minimum)
        integer("size", self.size, 4, allow_none=True)
        if self.window_ms is not None:
            real("window_ms", self.window_ms, 0, low_open=True, what="a duration")  # in milliseconds
        boolean("flip", self.flip)


def _import_tonic() -> Any:
    try:
        import tonic
    except ImportError as exc:
        raise ImportError('event data sets need tonic (GPL-3.0): pip install "gac-coding[events]"') from exc
    return tonic


def event_frame_size(name: str, size: int | None = None) -> tuple[int, int]:
    """``(H, W)`` of data set ``name``'s frames: ``size x size`` when downsampled, else the sensor's.

    Example:
        >>> event_frame_size("dvsgesture"), event_frame_size("dvsgesture", 48)
        ((128, 128), (48, 48))
    """
    if name not in _LAYOUTS:
        raise ValueError(f"dataset: expected one of {list(EVENT_DATASETS)}, got {name!r}")
    width, height = _LAYOUTS[name].sensor
    return (height, width) if size is None else (int(size), int(size))


# ------------------------------------------------------------------------------ folder checks
def _dataset_root(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """The folder tonic calls ``save_to`` (it holds ``NMNIST/`` etc.)."""
    layout = _LAYOUTS[name]
    if data_dir is None:
        raise DataFolderError(
            f"data_dir: --dataset {name} needs --data-dir DIR holding {layout.describe} "
            f"(nothing is downloaded)"
        )
    root = Path(data_dir)
    return root.parent if root.name == layout.folder else root


def check_event_folder(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """Check that ``data_dir`` holds data set ``name`` in tonic's layout; return tonic's ``save_to``.

    Complete means: every split folder (N-MNIST, DVS Gesture) or class folder (CIFAR10-DVS) is
    there with at least one file of the data set's format; N-MNIST also needs all ten digit folders
    in both splits. Raises :class:`DataFolderError` with the expected layout otherwise.
    """
    if name not in _LAYOUTS:
        raise ValueError(f"dataset: expected one of {list(EVENT_DATASETS)}, got {name!r}")
    layout = _LAYOUTS[name]
    root = _dataset_root(name, data_dir)
    base = root / layout.folder
    if name == "cifar10dvs":
        groups = [base / c for c in layout.classes]
    elif name == "nmnist":
        groups = [base / s / d for s in _SPLIT_FOLDERS[name] for d in layout.classes]
    else:
        groups = [base / s for s in _SPLIT_FOLDERS[name]]
    missing = [str(g.relative_to(root)) for g in groups if not any(g.glob(f"**/*{layout.extension}"))]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise DataFolderError(
            f"data_dir: expected {name} at {root} as {layout.describe}; no {layout.extension} files "
            f"in {shown}. Nothing is downloaded: extract the archives there."
        )
    return root


def _tonic_dataset(name: str, root: Path, train: bool | None) -> Any:
    """tonic's data set class reading ``root`` in place; its download is never reached."""
    tonic = _import_tonic()
    if name == "cifar10dvs":
        try:
            import aedat  # noqa: F401  (tonic reads .aedat4 files with it)
        except ImportError as exc:
            raise ImportError(
                'CIFAR10-DVS (.aedat4 files) needs aedat: pip install "gac-coding[events]"'
            ) from exc
    base = getattr(tonic.datasets, _LAYOUTS[name].tonic_class)

    def refuse(self: Any) -> None:
        raise DataFolderError(f"data_dir: {name} is incomplete at {root}; nothing is downloaded")

    # the folder was checked by check_event_folder; tonic's own check wants the archives too
    cls = type(base.__name__, (base,), {"_check_exists": lambda self: True, "download": refuse})
    kwargs: dict[str, Any] = {} if train is None else {"train": train}
    return _sorted_by_path(cls(save_to=str(root), **kwargs))


def _sorted_by_path(dataset: Any) -> Any:
    """``dataset`` with its recordings (``data``, file paths, and ``targets``) in file-path order:
    tonic lists a folder in the order ``os.walk`` gives, which differs between disks, so a seeded
    split would take other recordings elsewhere."""
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if not isinstance(data, list) or targets is None or len(data) != len(targets):
        return dataset
    if not all(isinstance(path, str) for path in data):
        return dataset
    order = sorted(range(len(data)), key=lambda i: data[i])
    dataset.data = [data[i] for i in order]
    dataset.targets = [targets[i] for i in order] if isinstance(targets, list) else targets[order]
    return dataset


# ------------------------------------------------------------------------------ frames
def events_to_frames(events: Any, sensor: tuple[int, int], options: FrameOptions) -> Tensor:
    """One recording (a numpy structured array with ``x``, ``y``, ``t`` in µs, ``p``) ->
    event counts ``[T, 2, H, W]`` (float32), following :class:`FrameOptions`. Counts are exact up
    to 65535 events per pixel and frame; a frame with more at one pixel raises ``ValueError``.

    Example:
        >>> import numpy as np
        >>> ev = np.zeros(3, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
        >>> ev["x"], ev["y"], ev["t"], ev["p"] = [0, 2, 3], [1, 1, 0], [0, 50, 99], [1, 0, 1]
        >>> f = events_to_frames(ev, (4, 4), FrameOptions(T=2))   # bins of 49 us from t=0
        >>> f.shape, f[0, 1, 1, 0].item(), f[1, 0, 1, 2].item(), f.sum().item()
        (torch.Size([2, 2, 4, 4]), 1.0, 1.0, 2.0)
    """
    import numpy as np

    tonic = _import_tonic()
    width, height = sensor
    if options.size is not None and (options.size, options.size) != (width, height):
        events = tonic.transforms.Downsample(
            sensor_size=(width, height, 2), target_size=(options.size, options.size)
        )(events)
        width = height = options.size
    T = options.T
    if len(events) == 0:
        return torch.zeros(T, 2, height, width)
    p = np.asarray(events["p"]).astype(np.int64)
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"events: polarity must be 0 or 1, got values in [{p.min()}, {p.max()}]")
    if options.window_ms is None:
        to_frame = tonic.transforms.ToFrame(sensor_size=(width, height, 2), n_time_bins=T)
    else:
        to_frame = tonic.transforms.ToFrame(
            sensor_size=(width, height, 2),
            time_window=float(options.window_ms) * 1000.0,
            include_incomplete=True,  # the recording's last, partial window too
        )
    counts = np.asarray(to_frame(events))
    if counts.dtype == np.int16:  # tonic counts in int16, which wraps above 32767: exact as uint16
        counts = counts.view(np.uint16)
    if len(events) > 65535:  # a frame's pixel may have wrapped past 65535: find it
        n = len(events) if options.window_ms is not None else _binned_by_time_bins(events, T)
        _check_no_count_wrapped(events[:n], p[:n], counts, width, height)
    frames = torch.from_numpy(counts.astype(np.float32))
    if frames.shape[0] < T:  # a short recording under fixed windows: empty frames after it
        pad = frames.new_zeros(T - frames.shape[0], *frames.shape[1:])
        frames = torch.cat((frames, pad))
    return frames[:T].contiguous()


def _binned_by_time_bins(events: Any, T: int) -> int:
    """How many of the events (sorted by time) ``ToFrame(n_time_bins=T)`` counts: the first ones,
    those with ``t < t0 + T w``, ``w = (t_last - t0) // T`` (found as tonic finds its bins'
    bounds); the last event and the final ``< T`` microseconds fall outside."""
    import numpy as np

    t = np.asarray(events["t"])
    w = (t[-1] - t[0]) // T
    return int(np.searchsorted(t, t[0] + T * w))


def _check_no_count_wrapped(events: Any, p: Any, counts: Any, width: int, height: int) -> None:
    """Refuse a recording whose counts wrapped in a frame (more than 65535 events at one pixel in
    one frame): a pixel's frames then sum to at least 65536 fewer events than the pixel has.
    ``events`` are those the frames count, so a smaller difference cannot arise from a wrap and is
    left alone."""
    import numpy as np

    index = (p * height + np.asarray(events["y"]).astype(np.int64)) * width + np.asarray(events["x"]).astype(
        np.int64
    )
    per_pixel = np.bincount(index, minlength=2 * height * width)[: 2 * height * width]
    in_frames = counts.astype(np.int64).sum(axis=0).reshape(-1)
    lost = per_pixel - in_frames
    if lost.max() >= 65536:
        worst = int(lost.argmax())
        pol, rest = divmod(worst, height * width)
        y, x = divmod(rest, width)
        raise ValueError(
            f"events: {per_pixel[worst]} events at pixel x={x}, y={y}, polarity {pol} (of the "
            f"{width}x{height} frame) and more than 65535 of them in one frame; counts above 65535 "
            "per pixel and frame cannot be computed exactly"
        )


def cifar10dvs_split(labels: Sequence[int], seed: int = 0) -> tuple[list[int], list[int]]:
    """The seeded, per-class 9:1 split of CIFAR10-DVS: ``(train_indices, test_indices)``.

    Indices of each class (in file order) are shuffled by ``numpy.random.default_rng(seed)``; the
    first ``round(0.9 n)`` go to training.

    Example:
        >>> tr, te = cifar10dvs_split([0] * 10 + [1] * 20, seed=0)
        >>> len(tr), len(te), sorted(tr + te) == list(range(30))
        (27, 3, True)
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    train: list[int] = []
    test: list[int] = []
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        idx = idx[rng.permutation(len(idx))]
        cut = int(round(0.9 * len(idx)))
        train += idx[:cut].tolist()
        test += idx[cut:].tolist()
    return sorted(train), sorted(test)


# ------------------------------------------------------------------------------ cache
def _source_fingerprint(files: Sequence[str]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cache_folder(name: str, root: Path, split: str, files: Sequence[str], options: FrameOptions) -> Path:
    key = {
        "version": _CACHE_VERSION,
        "dataset": name,
        "source": str(root.resolve()),
        "split": split,
        "files": _source_fingerprint(files),
        "T": options.T,
        "window_ms": options.window_ms,
        "size": options.size,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    base = Path(options.cache_dir) if options.cache_dir is not None else root / ".gac_frames"
    return base / f"{name}-{split}-T{options.T}-{digest}"


def _write_array(path: Path, array: Any) -> None:
    import numpy as np

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _build_cache(
    name: str,
    source: Any,
    sensor: tuple[int, int],
    folder: Path,
    options: FrameOptions,
    progress: bool,
    key: dict[str, Any],
) -> None:
    """Frames of every sample of ``source`` as ``folder/<i>.npy`` (uint16 counts), then
    ``folder/complete.json`` (written last: a folder without it is rebuilt)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    indices: Any = range(len(source))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"{name}: events -> frames (cached in {folder})", dynamic_ncols=True)
    for i in indices:
        events, _ = source[i]
        frames = events_to_frames(events, sensor, options)
        if frames.numel() and float(frames.max()) > 65535:
            raise ValueError(f"{name}: sample {i} has more than 65535 events in one pixel and frame")
        _write_array(folder / f"{i}.npy", frames.numpy().astype(np.uint16))
    payload = json.dumps(dict(key, count=len(source)), indent=1).encode()
    atomic_write(folder / "complete.json", lambda fh: fh.write(payload))


class EventFrames(Dataset):
    """Cached frames of one split: ``(frames [T, 2, H, W] float32, label)`` per sample.

    ``augment=True`` applies the training augmentations of ``options`` (torch's global random
    generator, so a seeded run repeats them).
    """

    def __init__(
        self,
        folder: Path,
        indices: Sequence[int],
        labels: Sequence[int],
        options: FrameOptions,
        augment: bool,
    ) -> None:
        self.folder = Path(folder)
        self.indices = list(indices)
        self.labels = [int(v) for v in labels]
        self.options = options
        self.augment = augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        import numpy as np

        array = np.load(self.folder / f"{self.indices[index]}.npy", allow_pickle=False)
        frames = torch.from_numpy(array.astype(np.float32))
        if self.augment:
            frames = self._augment(frames)
        return frames, self.labels[index]

    def _augment(self, frames: Tensor) -> Tensor:
        opt = self.options
        if opt.flip and bool(torch.rand(()) < 0.5):
            frames = frames.flip(-1)
        n = opt.translate
        if n > 0:
            H, W = frames.shape[-2:]
            dy, dx = (torch.randint(-n, n + 1, (2,))).tolist()
            padded = torch.nn.functional.pad(frames, (n, n, n, n))
            frames = padded[..., n - dy : n - dy + H, n - dx : n - dx + W].contiguous()
        return frames


def time_major_collate(batch: Sequence[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """Stack samples ``[T, C, H, W]`` into a time-major batch ``[T, B, C, H, W]`` plus labels ``[B]``."""
    frames = torch.stack([b[0] for b in batch], dim=1)
    labels = torch.tensor([int(b[1]) for b in batch], dtype=torch.long)
    return frames, labels


def build_event_datasets(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    options: FrameOptions,
    *,
    progress: bool | None = None,
    build_cache: bool = True,
) -> DataSpec:
    """The training and test splits of event data set ``name`` as cached frame sequences.

    ``progress``: a progress bar while frames are first computed (default: when stderr is a
    terminal). ``build_cache=False``: read frames that another process has cached (the other
    ranks under torchrun, after rank 0 built them) and raise ``RuntimeError`` if they are
    missing. Batches from a ``DataLoader`` with ``collate_fn=spec.collate_fn`` are
    ``[T, B, 2, H, W]``.
    """
    import sys

    if not isinstance(options, FrameOptions):
        raise TypeError(f"options: expected a FrameOptions, got {type(options).__name__}")
    root = check_event_folder(name, data_dir)
    layout = _LAYOUTS[name]
    if options.size is not None and options.size > min(layout.sensor):
        raise ValueError(
            f"size: {name}'s sensor is {layout.sensor[0]}x{layout.sensor[1]}; downsampling goes to a "
            f"smaller size, got {options.size}"
        )
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if name == "cifar10dvs":
        full = _tonic_dataset(name, root, None)
        sources = {"all": full}
    else:
        sources = {"train": _tonic_dataset(name, root, True), "test": _tonic_dataset(name, root, False)}
    folders: dict[str, Path] = {}
    for split, source in sources.items():
        folder = _cache_folder(name, root, split, source.data, options)
        key = {"dataset": name, "split": split, **asdict(options)}
        done = folder / "complete.json"
        if not (done.is_file() and json.loads(done.read_text()).get("count") == len(source)):
            if not build_cache:
                raise RuntimeError(
                    f"{name}: the frames of the {split!r} split are not cached in {str(folder)!r}, "
                    f"and this process was told not to compute them (build_cache=False: under "
                    f"torchrun rank 0 computes them first)"
                )
            _build_cache(name, source, layout.sensor, folder, options, show, key)
        folders[split] = folder
    if name == "cifar10dvs":
        labels = list(full.targets)
        train_idx, test_idx = cifar10dvs_split(labels, options.split_seed)
        train = EventFrames(folders["all"], train_idx, [labels[i] for i in train_idx], options, True)
        test = EventFrames(folders["all"], test_idx, [labels[i] for i in test_idx], options, False)
    else:
        tr, te = sources["train"], sources["test"]
        train = EventFrames(folders["train"], range(len(tr)), tr.targets, options, True)
        test = EventFrames(folders["test"], range(len(te)), te.targets, options, False)
    for split, labels in (("train", train.labels), ("test", test.labels)):
        bad = [v for v in labels if not 0 <= v < len(layout.classes)]
        if bad:
            raise DataFolderError(
                f"data_dir: {name} {split} labels must lie in [0, {len(layout.classes)}), got {bad[0]}"
            )
    size = event_frame_size(name, options.size)[0]
    return DataSpec(
        name=name,
        train=train,
        test=test,
        num_classes=len(layout.classes),
        in_channels=2,
        image_size=size,
        class_names=list(layout.classes),
        collate_fn=time_major_collate,
    )
