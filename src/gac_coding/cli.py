"""The ``gac-coding`` command: ``demo``, ``train`` and ``energy`` subcommands.

Also reachable as ``python -m gac_coding``. A subcommand ``NAME`` is two functions in one module,
``configure_NAME_parser(parser)`` (adds its options) and ``run_NAME_command(args) -> int`` (runs it),
and one :class:`Subcommand` entry in :data:`SUBCOMMANDS` naming that module. The module is imported
when the parser is built, so it imports torch alone at its top; optional packages are imported
inside ``run_NAME_command``. A run that misses an optional package ends with one line naming the
extra to install (:data:`EXTRA_OF_MODULE`) and exit status 2, as any other bad input does.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EVENT_MODELS",
    "EXTRA_OF_MODULE",
    "SUBCOMMANDS",
    "Subcommand",
    "add_model_options",
    "build_model",
    "build_parser",
    "configure_demo_parser",
    "configure_energy_parser",
    "configure_train_parser",
    "default_input_size",
    "main",
    "model_settings",
    "recorded_input_size",
    "resolve_input_size",
    "run_demo_command",
    "run_energy_command",
    "run_train_command",
]


@dataclass(frozen=True)
class Subcommand:
    """One ``gac-coding`` subcommand.

    Attributes:
        name: the word on the command line.
        help: one line for ``gac-coding --help``.
        module: the module holding ``configure_<name>_parser`` and ``run_<name>_command``; it must
            import with torch alone.
        extra: the pip extra its runs need (``None``: torch alone).
        needs: top-level modules every run imports, checked before it starts.
    """

    name: str
    help: str
    module: str = "gac_coding.cli"
    extra: str | None = None
    needs: tuple[str, ...] = ()

    def functions(self) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]:
        """``(configure, run)`` from :attr:`module`."""
        mod = importlib.import_module(self.module)
        return (getattr(mod, f"configure_{self.name}_parser"),
                getattr(mod, f"run_{self.name}_command"))  # fmt: skip


# what the train extra installs (checked before demo or train start, not after an epoch)
_TRAIN_EXTRA = ("sklearn", "torchvision", "matplotlib", "tqdm", "safetensors")

#: The subcommands, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("demo", "direct vs Poisson vs GAC coding on scikit-learn's digits: table + plot",
               extra="train", needs=_TRAIN_EXTRA),
    Subcommand("train", "train a model (one CPU to many GPUs under torchrun)",
               extra="train", needs=_TRAIN_EXTRA),
    Subcommand("energy", "operation counts and energy of a model (the base install)"),
    Subcommand("export", "write a model's host encoder and its spiking backbone (NIR)",
               "gac_coding.export.cli", extra="export"),
)  # fmt: skip

#: The pip extra that provides each optional top-level module (a framework's: its adapter says).
EXTRA_OF_MODULE: dict[str, str] = {
    "numpy": "train", "sklearn": "train", "matplotlib": "train", "torchvision": "train",
    "tqdm": "train", "safetensors": "train", "PIL": "train",
    "ninja": "cpp",
    "nir": "export", "onnx": "export", "onnxscript": "export", "onnxruntime": "export",
    "tonic": "events",
}  # fmt: skip


def _install_hint(extra: str) -> str:
    return f'pip install "gac-coding[{extra}]"'


def _missing_package_message(exc: ImportError, command: Subcommand) -> str | None:
    """One line for an ImportError of an optional package; ``None`` for one of our own modules."""
    text = " ".join(str(exc).split())
    if "pip install" in text:
        return text
    top = (exc.name or "").split(".")[0]
    if not top or top == "gac_coding":
        return None
    from .adapters import extra_of_package

    extra = EXTRA_OF_MODULE.get(top) or extra_of_package(top) or command.extra
    if extra is None:
        return f"needs the package {top!r}, which is not installed ({text})"
    return f"needs the {extra!r} extra (no module named {top!r}): {_install_hint(extra)}"


def _check_needs(command: Subcommand) -> None:
    missing = [m for m in command.needs if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"No module named {missing[0]!r}", name=missing[0])


# ------------------------------------------------------------------------------------ demo
def configure_demo_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding demo``."""
    from .train.demo import DEMO_DEFAULTS

    parser.add_argument(
        "--epochs",
        type=int,
        default=DEMO_DEFAULTS["epochs"],
        help=f"epochs per run (default {DEMO_DEFAULTS['epochs']})",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=DEMO_DEFAULTS["seeds"],
        help=f"seeds per coding (default {DEMO_DEFAULTS['seeds']})",
    )
    parser.add_argument(
        "--T", type=int, default=DEMO_DEFAULTS["T"], help=f"time steps (default {DEMO_DEFAULTS['T']})"
    )
    parser.add_argument(
        "--out", default="demo_out", help="folder for demo.json and demo.png, the only files written"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier demo in --out (refused by default)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="parallel training processes, one thread each (default: up to 2)",
    )


def run_demo_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding demo``."""
    from .train.demo import run_demo

    run_demo(
        epochs=args.epochs,
        seeds=args.seeds,
        T=args.T,
        out=args.out,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    return 0


# ----------------------------------------------------------------------------------- train
def configure_train_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding train``."""
    from .train.data import DATASETS
    from .train.losses import LOSSES

    parser.add_argument("--model", required=True, help="registered model name, e.g. msresnet18_cifar")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding cifar-10-batches-py/, cifar-100-python/ or train/ + val/",
    )
    parser.add_argument("--T", type=int, required=True, help="time steps")
    parser.add_argument("--epochs", type=int, required=True, help="total epochs (cosine schedule length)")
    parser.add_argument("--batch-size", type=int, required=True, help="images per process and step")
    parser.add_argument("--lr", type=float, required=True, help="initial SGD learning rate")
    parser.add_argument(
        "--out", required=True, help="run folder: metrics.jsonl, last.pt, best.pt, model.safetensors"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="end normally after epoch N of the --epochs schedule (checkpoints "
        "written as usual); continue later with --resume",
    )
    from .coding import CODINGS

    parser.add_argument(
        "--coding",
        choices=[*CODINGS, "poisson"],
        default=None,
        help="how images reach the spiking backbone: gac (the GAC encoder; default), direct (the "
        "stem's output at every step), rate (Bernoulli spikes of the pixel intensities; poisson: "
        "its deprecated name) or latency (one spike per pixel, brighter earlier)",
    )
    parser.add_argument("--no-gac", action="store_true", help="deprecated: --coding direct")
    parser.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision on CUDA (bf16 where supported, else fp16 + grad scaler)",
    )
    parser.add_argument(
        "--cutmix",
        type=float,
        default=0.0,
        metavar="P",
        help="CutMix probability (beta 1.0); paper: 0.5 CIFAR, 1.0 ImageNet",
    )
    parser.add_argument(
        "--loss",
        choices=LOSSES,
        default="ce",
        help="ce: cross-entropy of time-averaged logits; tet: mean of per-step CE",
    )
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=5e-5)
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:N (default: CUDA when available; torchrun: cuda:LOCAL_RANK)",
    )
    parser.add_argument(
        "--image-size", type=int, default=None, help="crop size for --dataset imagefolder (default 224)"
    )
    parser.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")
    parser.add_argument(
        "--temporal-attention",
        choices=("mlp", "conv"),
        default=None,
        help="GAC's temporal attention: mlp (the paper's, fixed T; default) or conv "
        "(runs at any T after set_timesteps)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        help="what computes the neurons: auto (default: GAC_CODING_LIF_BACKEND if set, else eager on "
        "CPU, triton on CUDA), eager, cpp, triton, or a list to try in order such as cpp,eager",
    )
    from .train.events import add_event_options

    add_event_options(parser)


def _train_coding(args: argparse.Namespace) -> str:
    """``--coding``, with the deprecated ``--no-gac`` read as ``--coding direct`` and ``--coding
    poisson`` as ``--coding rate``."""
    if args.coding == "poisson":
        print(
            "gac-coding train: --coding poisson is deprecated; use --coding rate", file=sys.stderr, flush=True
        )
        args.coding = "rate"
    if not args.no_gac:
        return args.coding or "gac"
    if args.coding not in (None, "direct"):
        raise ValueError(
            f"--no-gac: means --coding direct, which contradicts --coding {args.coding}; give --coding alone"
        )
    print("gac-coding train: --no-gac is deprecated; use --coding direct", file=sys.stderr, flush=True)
    return "direct"


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding train``."""
    from .train.engine import TrainConfig, fit
    from .train.events import event_options_from_args

    config = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        T=args.T,
        epochs=args.epochs,
        stop_after=args.stop_after,
        batch_size=args.batch_size,
        lr=args.lr,
        out=args.out,
        resume=args.resume,
        coding=_train_coding(args),
        amp=args.amp,
        cutmix=args.cutmix,
        loss=args.loss,
        label_smoothing=args.label_smoothing,
        weight_decay=args.weight_decay,
        workers=args.workers,
        seed=args.seed,
        device=args.device,
        image_size=args.image_size,
        progress=False if args.no_progress else None,
        backend=args.backend,
        events=event_options_from_args(args),
        model_kwargs=(
            {} if args.temporal_attention is None else {"temporal_attention": args.temporal_attention}
        ),
    )
    result = fit(config)
    if _is_rank0() and result.history:
        last = result.history[-1]
        print(
            f"done: epoch {last['epoch']}, val_acc {last['val_acc']:.4f}, "
            f"best {result.best_val_acc:.4f}; files in {args.out}",
            flush=True,
        )
    return 0


# ---------------------------------------------------------------------------------- energy
#: Registered models made for event frames ``[T, B, 2, H, W]``: 2 input channels by default, and
#: ``gac-coding energy`` feeds them a sequence of 48x48 frames unless told otherwise.
EVENT_MODELS: tuple[str, ...] = ("msresnet18_dvs", "vggsnn_dvs", "vgg_tiny")

#: Probability that a pixel of ``gac-coding energy``'s random event frames holds an event.
EVENT_DENSITY = 0.1


def add_model_options(parser: argparse.ArgumentParser, *, checkpoint_required: bool = False) -> None:
    """``--model``, ``--checkpoint``, ``--T``, ``--num-classes``, ``--in-channels``, ``--no-gac``,
    ``--temporal-attention``: the options of a subcommand that builds a registered model and may
    load its weights (read the values with :func:`model_settings`)."""
    parser.add_argument(
        "--model",
        default=None,
        help="registered model name, e.g. msresnet18_cifar (default: the checkpoint's)",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        required=checkpoint_required,
        help="weights: model.safetensors or last.pt/best.pt of gac-coding train (their "
        "model, T, classes and channels are used), a saved state dict, or the "
        "authors' .pth",
    )
    parser.add_argument(
        "--T", type=int, default=None, help="time steps (default: the checkpoint's, else the model's)"
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="head size (default: the checkpoint's, else the model's)",
    )
    parser.add_argument(
        "--in-channels",
        type=int,
        default=None,
        help="image channels (default: the checkpoint's, else 2 for the event "
        f"models {', '.join(EVENT_MODELS)}, else 3)",
    )
    parser.add_argument(
        "--no-gac",
        action="store_true",
        help="direct-coding baseline (default: the checkpoint's choice, else GAC)",
    )
    parser.add_argument(
        "--temporal-attention",
        choices=("mlp", "conv"),
        default=None,
        help="GAC's temporal attention (default: the checkpoint's, else mlp)",
    )


def model_settings(args: argparse.Namespace, recorded: dict[str, Any], path: str | None) -> dict[str, Any]:
    """``model``, ``T``, ``num_classes``, ``in_channels``, ``gac`` and ``temporal_attention`` from
    the options of :func:`add_model_options`, else from the checkpoint's ``recorded`` settings; an
    option that disagrees with the checkpoint raises a ``ValueError`` saying what the file holds."""
    from .models.checkpoints import describe_settings

    asked = {
        "model": args.model,
        "T": args.T,
        "num_classes": args.num_classes,
        "in_channels": args.in_channels,
        "gac": False if args.no_gac else None,
        "temporal_attention": getattr(args, "temporal_attention", None),
    }
    for key in ("T", "num_classes", "in_channels"):
        if asked[key] is not None and asked[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')}: expected an integer >= 1, got {asked[key]}")
    settings: dict[str, Any] = {}
    for key, value in asked.items():
        option = "--no-gac" if key == "gac" else f"--{key.replace('_', '-')}"
        if value is not None and key in recorded and recorded[key] != value:
            raise ValueError(
                f"{option}: the checkpoint {path} holds {describe_settings(recorded)}, "
                f"got {option}" + ("" if key == "gac" else f" {value}")
            )
        settings[key] = value if value is not None else recorded.get(key)
    if settings["model"] is None:
        raise ValueError("--model: expected a model name (required without a --checkpoint that records one)")
    settings["gac"] = True if settings["gac"] is None else settings["gac"]
    # the coding the run recorded (a file that records none: GAC unless --no-gac)
    coding = recorded.get("coding")
    settings["coding"] = coding if coding is not None else ("gac" if settings["gac"] else "direct")
    settings["in_channels"] = settings["in_channels"] or (2 if settings["model"] in EVENT_MODELS else 3)
    return settings


def build_model(settings: dict[str, Any]) -> Any:
    """The registered model that :func:`model_settings` describes (``temporal_attention`` passed on
    when set)."""
    from .models import create_model

    extra = (
        {}
        if settings.get("temporal_attention") is None
        else {"temporal_attention": settings["temporal_attention"]}
    )
    return create_model(
        settings["model"],
        num_classes=settings["num_classes"],
        T=settings["T"],
        coding=settings.get("coding", "gac" if settings["gac"] else "direct"),
        in_channels=settings["in_channels"],
        **extra,
    )


def default_input_size(model: str) -> tuple[int, int]:
    """``(H, W)`` of an untrained model's random input: 224x224 for the ImageNet models, 48x48
    frames for :data:`EVENT_MODELS`, else 32x32."""
    return (224, 224) if "imagenet" in model else (48, 48) if model in EVENT_MODELS else (32, 32)


def recorded_input_size(recorded: dict[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` that a checkpoint's recorded settings give, else ``None``.

    In order: the ``input_size`` a run records, the ``image_size`` of older ``last.pt`` files,
    the known size of the data set the run names (older ``model.safetensors`` files name none).
    """
    from .train.data import DATASETS, dataset_input_size

    if "input_size" in recorded:
        height, width = recorded["input_size"]
        return (int(height), int(width))
    if "image_size" in recorded:
        return (int(recorded["image_size"]), int(recorded["image_size"]))
    dataset = recorded.get("dataset")
    if dataset in DATASETS:
        return dataset_input_size(dataset, events=recorded.get("events"))
    return None


def resolve_input_size(
    asked: Sequence[int] | None, recorded: dict[str, Any], path: str | None, model: str
) -> tuple[int, int]:
    """``(H, W)`` of the images a command feeds a model (``energy``'s random input,
    ``export``'s graph): ``--input-size`` when given, else the checkpoint's
    (:func:`recorded_input_size`), else without a checkpoint :func:`default_input_size`. A
    checkpoint that records none raises a ``ValueError`` asking for ``--input-size``."""
    if asked is not None:
        if len(asked) != 2 or min(asked) < 1:
            raise ValueError(f"--input-size: expected two integers >= 1, got {tuple(asked)}")
        return (int(asked[0]), int(asked[1]))
    if path is None:
        return default_input_size(model)
    found = recorded_input_size(recorded)
    if found is None:
        raise ValueError(
            f"--input-size: the checkpoint {path} records no input size and no data set (a bare "
            f"state dict, the authors' file or an older model.safetensors); give --input-size H W, "
            f"the size of the images the model was trained on"
        )
    return found


#: Batches of validation data ``gac-coding energy`` measures by default.
ENERGY_BATCHES = 10
#: Images per batch of ``gac-coding energy`` on data (random input: 1).
ENERGY_BATCH_SIZE = 32


def _batches_option(text: str) -> int:
    """``--batches``: an integer >= 1, or ``all`` (read as 0)."""
    if text == "all":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'all', got {text!r}")
    return value


def configure_energy_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding energy``."""
    from .train.data import DATASETS

    add_model_options(parser)
    data = parser.add_argument_group(
        "what it measures on: a checkpoint of gac-coding train on the data the run validated on "
        "(by default), a model without a checkpoint on random input"
    )
    data.add_argument(
        "--random-input", action="store_true",
        help="measure a checkpoint on random input instead of its validation data",
    )  # fmt: skip
    data.add_argument(
        "--batches", type=_batches_option, default=None, metavar="N|all",
        help=f"batches of validation data, in order from the first (default {ENERGY_BATCHES}; "
        f"'all': the whole split)",
    )  # fmt: skip
    data.add_argument(
        "--batch-size", type=int, default=None,
        help=f"images per batch (default {ENERGY_BATCH_SIZE} on data, 1 for random input)",
    )  # fmt: skip
    data.add_argument(
        "--data-dir", default=None,
        help="where the run's data set is now (default: the folder the run recorded)",
    )  # fmt: skip
    data.add_argument(
        "--dataset", choices=DATASETS, default=None,
        help="data set to measure a checkpoint that records none on (a bare state dict, the "
        "authors' file); images as gac-coding train feeds them, event frames with T bins",
    )  # fmt: skip
    data.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    data.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
        help="size of the random input (default: the checkpoint's; without one 224 224 for "
        "ImageNet models, 48 48 for event models, else 32 32); on data it must be the data's",
    )  # fmt: skip
    data.add_argument(
        "--sequence", action=argparse.BooleanOptionalAction, default=None,
        help=f"random input: a sequence of random binary event frames [T, B, C, H, W] (each pixel "
        f"an event with probability {EVENT_DENSITY}, seeded) instead of a static image batch "
        f"(default: on for the event models {', '.join(EVENT_MODELS)})",
    )  # fmt: skip
    data.add_argument(
        "--seed", type=int, default=0,
        help="seed of the random input, of the weights without a checkpoint, and of rate-coded spikes",
    )  # fmt: skip
    data.add_argument(
        "--no-calibrate", action="store_true",
        help="without a checkpoint, keep the initial BatchNorm statistics (by default they are "
        "set from the random batch so that the untrained network fires)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _check_energy_options(args: argparse.Namespace, on_data: bool) -> None:
    """Options that only one kind of input takes are refused with the other, in one line."""
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if on_data:
        if args.sequence is not None:
            raise ValueError(
                "--sequence: chooses the random input; the checkpoint is measured on its "
                "validation data (add --random-input to measure it on random input)"
            )
        return
    why = (
        "without --checkpoint the model is untrained and measured on random input"
        if args.checkpoint is None
        else "--random-input measures on random input"
    )
    for option, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir),
                          ("--batches", args.batches)):  # fmt: skip
        if value is not None:
            raise ValueError(f"{option}: chooses the data to measure on, but {why}")


def _validation_batches(
    args: argparse.Namespace, recorded: dict[str, Any], s: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The batches of the split the run validated on, and what they are (for the header and the
    JSON): the data set the checkpoint names (or ``--dataset``) rebuilt as ``gac-coding train``
    built it, its test split in order, the first ``--batches`` batches of ``--batch-size``;
    a rate-coded model draws its Bernoulli spikes from a generator seeded with ``--seed``."""
    import itertools
    from pathlib import Path

    from torch.utils.data import DataLoader

    from .models.checkpoints import recorded_coding
    from .train.data import DataFolderError, build_datasets
    from .train.events import EVENT_DATASETS, FrameOptions

    path = args.checkpoint
    named = recorded.get("dataset")
    if args.dataset is not None and named not in (None, args.dataset):
        raise ValueError(
            f"--dataset: the checkpoint {path} was trained and validated on {named}; drop "
            f"--dataset, or add --random-input"
        )
    dataset = args.dataset or named
    if dataset is None:
        raise ValueError(
            f"--dataset: the checkpoint {path} records no data set to measure on (a bare state "
            f"dict, the authors' file or an older model.safetensors); give --dataset NAME (and "
            f"--data-dir DIR), or --random-input with --input-size H W"
        )
    data_dir = args.data_dir if args.data_dir is not None else recorded.get("data_dir")
    if args.data_dir is None and data_dir is not None and not Path(data_dir).exists():
        raise DataFolderError(
            f"--data-dir: the folder {data_dir} that the run read {dataset} from no longer "
            f"exists; give --data-dir DIR where the data is now, or --random-input"
        )
    events = None
    if dataset in EVENT_DATASETS:
        try:
            events = FrameOptions(T=s["T"], **recorded.get("events", {}))
        except TypeError as exc:
            raise ValueError(f"--checkpoint: {path} records frame options that do not fit: {exc}") from None
    recorded_size = recorded.get("input_size")
    image_size = recorded_size[0] if recorded_size else recorded.get("image_size")
    spec = build_datasets(dataset, data_dir, image_size=image_size, events=events)
    for what, mine, theirs in (("in_channels", s["in_channels"], spec.in_channels),
                               ("num_classes", s["num_classes"], spec.num_classes)):  # fmt: skip
        if mine is not None and mine != theirs:
            raise ValueError(
                f"{'--dataset' if args.dataset else '--checkpoint'}: {dataset} has {what}={theirs}, "
                f"the model {mine}; measure it on the data set it was trained on"
            )
    for option, where, size in (("--input-size", "--input-size", args.input_size),
                                ("--checkpoint", f"the checkpoint {path}", recorded_size)):  # fmt: skip
        if size is not None and tuple(size) != spec.input_size:
            raise ValueError(
                f"{option}: {where} gives the input size {tuple(size)}, but {dataset} as rebuilt "
                f"gives {spec.input_size}; on data the data decide (add --random-input to measure "
                f"random input of another size)"
            )
    batch_size = args.batch_size or ENERGY_BATCH_SIZE
    loader = DataLoader(spec.test, batch_size=batch_size, shuffle=False, collate_fn=spec.collate_fn)
    wanted = ENERGY_BATCHES if args.batches is None else args.batches
    count = len(loader) if wanted == 0 else min(wanted, len(loader))
    images = min(count * batch_size, len(spec.test))
    batches: Any = itertools.islice(loader, count)
    coding = recorded_coding(recorded) or ("gac" if s["gac"] else "direct")
    batches = (x for x, _ in batches)  # a rate-coded model draws its spikes itself (seeded)
    if not args.no_progress and sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the bar comes with the train extra; measure without it
            pass
        else:
            batches = tqdm(batches, total=count, desc="energy", unit="batch", dynamic_ncols=True, leave=False)
    info = {
        "kind": "validation data",
        "dataset": dataset,
        "split": spec.test_split,
        "data_dir": None if data_dir is None else str(data_dir),
        "images": images,
        "of": len(spec.test),
        "batches": count,
        "batch_size": batch_size,
        "input_size": list(spec.input_size),
        "coding": coding,
    }
    return batches, info


def _random_input(
    args: argparse.Namespace, recorded: dict[str, Any], s: dict[str, Any], model: Any
) -> tuple[Any, dict[str, Any]]:
    """The seeded random input of ``gac-coding energy`` and what it is."""
    import torch

    size = resolve_input_size(args.input_size, recorded, args.checkpoint, s["model"])
    sequence = s["model"] in EVENT_MODELS if args.sequence is None else args.sequence
    gen = torch.Generator().manual_seed(args.seed)
    batch_size = args.batch_size or 1
    if sequence:
        T = getattr(model, "T", None)
        if isinstance(T, bool) or not isinstance(T, int):
            raise ValueError(
                f"--sequence: the model {s['model']!r} has no integer attribute T (its "
                f"number of time steps), so the sequence length is unknown"
            )
        shape = (T, batch_size, s["in_channels"], *size)
        x = torch.bernoulli(torch.full(shape, EVENT_DENSITY), generator=gen)
    else:
        x = torch.rand(batch_size, s["in_channels"], *size, generator=gen)
    return x, {"kind": "random event frames" if sequence else "random images", "shape": list(x.shape)}


def _measured_on(info: dict[str, Any], s: dict[str, Any]) -> str:
    """The header line that says what ``gac-coding energy`` measured on."""
    if info["kind"] != "validation data":
        what = (
            f"event frames [T, B, C, H, W] (each pixel an event with probability {EVENT_DENSITY})"
            if info["kind"] == "random event frames"
            else "images [B, C, H, W], uniform in [0, 1)"
        )
        return f"measured on: random input {tuple(info['shape'])}, {what}, seeded"
    h, w = info["input_size"]
    fed = {
        "rate": f", coded as Bernoulli spikes over T={s['T']} steps",
        "latency": f", coded as spike times over T={s['T']} steps",
    }
    folder = f" from {info['data_dir']}" if info["data_dir"] else ""
    return (
        f"measured on: {info['dataset']}{folder}, {info['split']} split (the run's validation "
        f"data), {info['images']} of {info['of']} images in {info['batches']} batch(es) of "
        f"{info['batch_size']}, input {s['in_channels']}x{h}x{w}{fed.get(info['coding'], '')}"
    )


def run_energy_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding energy``: build the model, load weights, report its energy.

    With a checkpoint, the model is measured on the split its run validated on
    (:func:`_validation_batches`: the data set, folder, input size and coding the checkpoint
    records), over ``--batches`` batches; ``--random-input``, or no checkpoint at all (an untrained
    model), measures it on a seeded random batch: uniform images, or for ``--sequence`` (the
    default of :data:`EVENT_MODELS`) ``T`` random binary event frames (each pixel an event with
    probability :data:`EVENT_DENSITY`). Firing rates, and so accumulates, depend on the data.
    """
    import torch

    from .energy import calibrate_batchnorm, estimate_energy
    from .models.checkpoints import load_weights, read_weights

    weights = read_weights(args.checkpoint) if args.checkpoint else None
    recorded = weights.settings if weights else {}
    s = model_settings(args, recorded, args.checkpoint)
    on_data = weights is not None and not args.random_input
    _check_energy_options(args, on_data)
    torch.manual_seed(args.seed)
    model = build_model(s)
    if hasattr(model.encoder, "generator"):  # a rate-coded model: seeded spikes
        model.encoder.generator = torch.Generator().manual_seed(args.seed)
    layout = load_weights(model, weights, model_name=s["model"]) if weights else None
    calibrated = False
    if on_data:
        data, info = _validation_batches(args, recorded, s)
        report = estimate_energy(model, data)
    else:
        x, info = _random_input(args, recorded, s, model)
        calibrated = weights is None and not args.no_calibrate
        if calibrated:
            calibrate_batchnorm(model, x)
        report = estimate_energy(model, x)
    if args.json:
        payload = report.to_dict()
        payload["model"] = s["model"]
        payload["input"] = info
        payload["checkpoint"] = {"path": args.checkpoint, "layout": layout}
        payload["batchnorm_calibrated"] = calibrated
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        if weights is not None:
            described = f"{args.checkpoint} ({layout} layout)"
        elif calibrated:
            described = "random init, BatchNorm statistics from the random batch"
        else:
            described = "random init"
        print(f"{s['model']}, weights: {described}")
        print(_measured_on(info, s))
        if weights is not None and not on_data:
            print("(random input: the firing rates, and so the accumulates, are not those of data)")
        print(report)
    return 0


# ------------------------------------------------------------------------------------ main
def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def build_parser() -> argparse.ArgumentParser:
    """The ``gac-coding`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="gac-coding",
        description="Gated Attention Coding for spiking neural networks: demo, training, energy.",
    )
    names = ",".join(c.name for c in SUBCOMMANDS)
    sub = parser.add_subparsers(dest="command", required=True, metavar=f"{{{names}}}")
    for command in SUBCOMMANDS:
        extra = f"\n\nneeds the {command.extra!r} extra: " if command.extra else ""
        if command.extra:
            extra += _install_hint(command.extra)
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.help + extra,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        configure, run = command.functions()
        configure(p)
        p.set_defaults(handler=run, subcommand=command)
    return parser


def _say(command: str, message: str) -> None:
    if _is_rank0():
        print(f"gac-coding {command}: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None, *, friendly_errors: bool | None = None) -> int:
    """Entry point of ``gac-coding``; returns the exit status.

    Run as a command (``argv=None``: the console script, ``python -m gac_coding``), known error
    types (bad values, missing data folders, unreadable or refused checkpoints, a missing optional
    package) print one line ``gac-coding CMD: error: ...`` on stderr and return 2. Called from
    Python with an explicit ``argv`` they propagate as exceptions, unless ``friendly_errors=True``.
    """
    from .models.checkpoints import CheckpointError

    if friendly_errors is None:
        friendly_errors = argv is None
    args = build_parser().parse_args(argv)
    command: Subcommand = args.subcommand
    try:
        _check_needs(command)
        return int(args.handler(args))
    except ImportError as exc:
        message = _missing_package_message(exc, command)
        if not friendly_errors or message is None:
            raise
        _say(args.command, f"error: {message}")
        return 2
    except (ValueError, TypeError, OSError, CheckpointError) as exc:
        if not friendly_errors:
            raise
        _say(args.command, "error: " + " ".join(str(exc).split()))
        return 2
    except KeyboardInterrupt:
        if not friendly_errors:
            raise
        _say(args.command, "interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
