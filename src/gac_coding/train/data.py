"""Data sets for training: bundled digits, CIFAR-10/100 python pickles, ImageNet-style folders.

Nothing is downloaded. A missing or malformed data folder raises :class:`DataFolderError` (a
``FileNotFoundError``) whose message names the files that were expected where.

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, values scaled to ``[0, 1]``), split
  once and for all into 1437 training and 360 test images (stratified, fixed seed).
* ``cifar10`` / ``cifar100``: the standard ``cifar-10-batches-py/`` (``data_batch_1..5``,
  ``test_batch``, ``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``) folder,
  found in ``--data-dir`` or given directly. Training images get ``RandomCrop(32, padding=4)`` and a
  horizontal flip, then per-channel normalisation.
* ``imagefolder``: ``train/`` and ``val/`` trees of class folders read by torchvision's
  ``ImageFolder``; ImageNet-style ``RandomResizedCrop`` + flip for training, resize + centre crop
  for validation.
* ``nmnist`` / ``dvsgesture`` / ``cifar10dvs``: event-camera recordings in tonic's extracted
  layout, turned into cached frame sequences with time-major batches ``[T, B, 2, H, W]`` by
  :mod:`gac_coding.train.events` (the ``events`` extra; pass ``events=FrameOptions(...)``).

The CIFAR pickles are read with a restricted unpickler that only rebuilds numpy arrays, lists,
dicts, strings and numbers; a file asking for anything else is refused.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .events import EVENT_DATASETS, build_event_datasets, event_frame_size
from .spec import DataFolderError, DataSpec

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "CIFAR_STATS",
    "DataFolderError",
    "DataSpec",
    "TensorImageDataset",
    "build_datasets",
    "dataset_input_size",
    "load_cifar",
    "load_digits_split",
]

#: The image data sets of this module.
IMAGE_DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "imagefolder")
#: The data set names ``gac-coding train --dataset`` accepts: the images, then the event-camera
#: data sets (:data:`~gac_coding.train.events.EVENT_DATASETS`, read with the ``events`` extra).
DATASETS: tuple[str, ...] = IMAGE_DATASETS + EVENT_DATASETS

#: Per-channel mean and std used to normalise CIFAR images.
CIFAR_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

_CIFAR_LAYOUT: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": "labels",
        "names": "label_names",
        "classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": "fine_labels",
        "names": "fine_label_names",
        "classes": 100,
    },
}


class TensorImageDataset(Dataset):
    """Images held in memory as one tensor ``[N, C, H, W]`` plus integer labels ``[N]``.

    ``transform`` (optional) maps one image tensor to another, e.g. random crop and flip; it draws
    from torch's global random generator (per worker when loading with workers).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if images.dim() != 4:
            raise ValueError(f"images: expected [N, C, H, W], got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels: expected shape ({images.shape[0]},) to match the images, got {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


# ---------------------------------------------------------------------------------------- digits
def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's bundled digits as ``(x_train, y_train, x_test, y_test)``.

    Images are ``[N, 1, 8, 8]`` float32 in ``[0, 1]``. The split is stratified and fixed by
    ``seed``: with the defaults, 1437 training and 360 test images, the same on every machine.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('the digits data set needs scikit-learn: pip install "gac-coding[train]"') from exc
    import numpy as np  # scikit-learn's dependency; local so that the CLI starts without it

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    train_idx = torch.from_numpy(np.sort(train_idx))
    test_idx = torch.from_numpy(np.sort(test_idx))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


# ----------------------------------------------------------------------------------------- CIFAR
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers, and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR batch holds only numpy arrays, lists and strings"
            )
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name == "_reconstruct":
            import importlib

            try:
                multiarray = importlib.import_module("numpy._core.multiarray")  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                multiarray = importlib.import_module("numpy.core.multiarray")
            return multiarray._reconstruct
        import numpy as np  # the train extra's; local so that the CLI starts without it

        return getattr(np, name)


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataFolderError(f"{path}: not a readable CIFAR python pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataFolderError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _find_cifar_folder(name: str, data_dir: str | os.PathLike[str] | None) -> Path:
    layout = _CIFAR_LAYOUT[name]
    expected = [*layout["train"], *layout["test"], layout["meta"]]
    hint = f"{layout['folder']}/{{{','.join(expected)}}}"
    if data_dir is None:
        raise DataFolderError(
            f"data_dir: --dataset {name} needs --data-dir DIR holding {hint} (nothing is downloaded)"
        )
    root = Path(data_dir)
    folder = root if root.name == layout["folder"] else root / layout["folder"]
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        raise DataFolderError(
            f"data_dir: expected the python version of {name} at {folder} "
            f"({hint}); missing: {', '.join(missing)}. Nothing is downloaded: unpack "
            f"the official {layout['folder']} archive there."
        )
    return folder


def load_cifar(
    name: str, data_dir: str | os.PathLike[str] | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    """Read CIFAR-10 or CIFAR-100 pickles: ``(x_train, y_train, x_test, y_test, class_names)``.

    Images are uint8 ``[N, 3, 32, 32]``, labels int64. ``data_dir`` is the folder that holds
    ``cifar-10-batches-py/`` / ``cifar-100-python/``, or that folder itself.
    """
    if name not in _CIFAR_LAYOUT:
        raise ValueError(f"name: expected one of {sorted(_CIFAR_LAYOUT)}, got {name!r}")
    import numpy as np  # the train extra's; local so that the CLI starts without it

    layout = _CIFAR_LAYOUT[name]
    folder = _find_cifar_folder(name, data_dir)

    def read(files: list[str]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for fname in files:
            path = folder / fname
            batch = _read_pickle(path)
            if "data" not in batch or layout["labels"] not in batch:
                raise DataFolderError(
                    f"{path}: expected keys 'data' and {layout['labels']!r}, got {sorted(batch)}"
                )
            data = np.asarray(batch["data"])
            labels = np.asarray(batch[layout["labels"]], dtype=np.int64)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
                raise DataFolderError(
                    f"{path}: expected 'data' of shape [N, 3072] with N labels, got data "
                    f"{data.shape} and {labels.shape[0]} labels"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= layout["classes"]):
                raise DataFolderError(
                    f"{path}: labels must lie in [0, {layout['classes']}), got "
                    f"[{labels.min()}, {labels.max()}]"
                )
            xs.append(torch.from_numpy(data.astype(np.uint8).reshape(-1, 3, 32, 32)))
            ys.append(torch.from_numpy(labels))
        return torch.cat(xs), torch.cat(ys)

    x_train, y_train = read(layout["train"])
    x_test, y_test = read(layout["test"])
    meta = _read_pickle(folder / layout["meta"])
    raw_names = meta.get(layout["names"], [])
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw_names]
    if len(names) != layout["classes"]:
        raise DataFolderError(
            f"{folder / layout['meta']}: expected {layout['classes']} names under "
            f"{layout['names']!r}, got {len(names)}"
        )
    return x_train, y_train, x_test, y_test, names


class _CifarTransform:
    """uint8 ``[3, 32, 32]`` -> float normalised; random crop (pad 4) + flip when training."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], train: bool) -> None:
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.train = train

    def __call__(self, image: Tensor) -> Tensor:
        x = image.float().div_(255.0)
        if self.train:
            padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
            i, j = torch.randint(0, 9, (2,)).tolist()
            x = padded[:, i : i + 32, j : j + 32]
            if bool(torch.rand(()) < 0.5):
                x = x.flip(-1)
        return (x - self.mean) / self.std


# ----------------------------------------------------------------------------------- ImageFolder
def _imagefolder(data_dir: str | os.PathLike[str] | None, image_size: int) -> DataSpec:
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('imagefolder needs torchvision: pip install "gac-coding[train]"') from exc
    layout = "DIR/train/<class>/<image> and DIR/val/<class>/<image>"
    if data_dir is None:
        raise DataFolderError(f"data_dir: --dataset imagefolder needs --data-dir DIR holding {layout}")
    root = Path(data_dir)
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        raise DataFolderError(
            f"data_dir: expected an ImageNet-style tree at {root} ({layout}); "
            f"missing folder(s): {', '.join(missing)}"
        )
    mean, std = IMAGENET_STATS
    resize = max(image_size, int(round(image_size * 256 / 224)))
    train_tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    val_tf = transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    splits = {}
    for split, tf in (("train", train_tf), ("val", val_tf)):
        try:
            splits[split] = datasets.ImageFolder(str(root / split), transform=tf, loader=_rgb_loader)
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataFolderError(
                f"data_dir: {root / split} must hold one folder per class with image files "
                f"(.png, .jpg, ...): {exc}"
            ) from exc
    if splits["train"].classes != splits["val"].classes:
        raise DataFolderError(
            f"data_dir: train/ and val/ must have the same class folders, got "
            f"{splits['train'].classes} and {splits['val'].classes}"
        )
    return DataSpec(
        name="imagefolder",
        train=splits["train"],
        test=splits["val"],
        num_classes=len(splits["train"].classes),
        in_channels=3,
        image_size=image_size,
        class_names=list(splits["train"].classes),
    )


def _rgb_loader(path: str) -> Any:
    from PIL import Image

    with open(path, "rb") as fh:
        return Image.open(fh).convert("RGB")


# -------------------------------------------------------------------------------------- factory
def dataset_input_size(
    name: str, *, image_size: int | None = None, events: dict[str, Any] | None = None
) -> tuple[int, int]:
    """``(H, W)`` that :func:`build_datasets` gives data set ``name``, without reading any data.

    ``image_size``: the ``imagefolder`` crop (default 224); ``events``: an event data set's frame
    options (their ``size``, else the sensor's size).

    Example:
        >>> dataset_input_size("digits"), dataset_input_size("cifar100"), dataset_input_size("nmnist")
        ((8, 8), (32, 32), (34, 34))
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {name!r}")
    if name in EVENT_DATASETS:
        return event_frame_size(name, (events or {}).get("size"))
    side = {"digits": 8, "cifar10": 32, "cifar100": 32}.get(name)
    if side is None:
        side = 224 if image_size is None else int(image_size)
    return (side, side)


def build_datasets(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    image_size: int | None = None,
    events: Any = None,
    build_cache: bool = True,
) -> DataSpec:
    """Build the training and test splits of data set ``name`` (one of :data:`DATASETS`).

    ``image_size`` only matters for ``imagefolder`` (default 224). ``events``: the
    :class:`~gac_coding.train.events.FrameOptions` of an event data set (``nmnist``,
    ``dvsgesture``, ``cifar10dvs``; required for them, refused for the others).
    ``build_cache``: event data sets compute and cache missing frames (default), or with ``False``
    raise ``RuntimeError`` when they are not cached yet (see
    :func:`~gac_coding.train.events.build_event_datasets`); other data sets ignore it.

    Example:
        >>> spec = build_datasets("digits")
        >>> len(spec.train), len(spec.test), spec.num_classes, spec.image_size
        (1437, 360, 10, 8)
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {name!r}")
    if name in EVENT_DATASETS:
        if events is None:
            raise ValueError(
                f"events: --dataset {name} needs FrameOptions (at least T, the frames per sample)"
            )
        return build_event_datasets(name, data_dir, events, build_cache=build_cache)
    if events is not None:
        raise ValueError(
            f"events: frame options apply to event data sets {list(EVENT_DATASETS)}, not {name!r}"
        )
    if name == "digits":
        x_tr, y_tr, x_te, y_te = load_digits_split()
        return DataSpec(
            name=name,
            train=TensorImageDataset(x_tr, y_tr),
            test=TensorImageDataset(x_te, y_te),
            num_classes=10,
            in_channels=1,
            image_size=dataset_input_size(name)[0],
            class_names=[str(i) for i in range(10)],
        )
    if name in _CIFAR_LAYOUT:
        x_tr, y_tr, x_te, y_te, names = load_cifar(name, data_dir)
        mean, std = CIFAR_STATS[name]
        return DataSpec(
            name=name,
            train=TensorImageDataset(x_tr, y_tr, _CifarTransform(mean, std, train=True)),
            test=TensorImageDataset(x_te, y_te, _CifarTransform(mean, std, train=False)),
            num_classes=len(names),
            in_channels=3,
            image_size=dataset_input_size(name)[0],
            class_names=names,
        )
    size = dataset_input_size(name, image_size=image_size)[0]
    if size < 8:
        raise ValueError(f"image_size: expected an integer >= 8, got {image_size!r}")
    return _imagefolder(data_dir, size)
