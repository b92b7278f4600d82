"""``gac-coding train``: train a model, from one CPU to many GPUs under ``torchrun``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import add_coding_options, coding_option, is_rank0

__all__ = ["CARD_ENERGY_SAMPLES", "configure_train_parser", "run_train_command", "save_run_pretrained"]


def configure_train_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding train``."""
    from ..train.data import DATASETS
    from ..train.losses import LOSSES

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
    add_coding_options(parser, "default gac")
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
        "--save-pretrained",
        default=None,
        metavar="DIR",
        help="at the end, also write the trained model as a folder that gac_coding.models.from_pretrained "
        "loads (model.safetensors, config.json, README.md with the last epoch's metrics and the energy "
        "of the first 256 validation samples); DIR must not hold files",
    )
    _add_model_build_options(parser)
    parser.add_argument(
        "--memory",
        default="default",
        help="what a training step keeps for its backward pass: default; lean (spikes as bits, "
        "BatchNorm+LIF recomputed: about a third of the default's bytes at about the same speed); "
        "checkpoint (every stage but the last recomputed: about a twentieth, for about a quarter "
        "more time). The same numbers in every mode; recorded in the checkpoints",
    )
    _add_event_options(parser)


def _add_model_build_options(parser: argparse.ArgumentParser) -> None:
    """How the model is built beyond its name: its temporal attention and its neurons' backend."""
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


def _add_event_options(parser: argparse.ArgumentParser) -> None:
    """The event-data options of ``gac-coding train`` (an ``argparse`` parser; torch alone)."""
    group = parser.add_argument_group(
        "event data (--dataset nmnist | dvsgesture | cifar10dvs; --T frames per sample)"
    )
    group.add_argument(
        "--frame-size",
        type=int,
        default=None,
        metavar="N",
        help="downsample the events to N x N pixels (e.g. 128 -> 64 or 48)",
    )
    group.add_argument(
        "--time-window",
        type=float,
        default=None,
        metavar="MS",
        help="frames of MS milliseconds from the first event (the first T of them) "
        "instead of T equal bins over the recording",
    )
    group.add_argument(
        "--flip", action="store_true", help="random horizontal flip of training samples (not for dvsgesture)"
    )
    group.add_argument(
        "--translate",
        type=int,
        default=0,
        metavar="N",
        help="random shift of training samples by up to N pixels, zero fill",
    )
    group.add_argument(
        "--frame-cache",
        default=None,
        metavar="DIR",
        help="where computed frames are cached (default DATA_DIR/.gac_frames)",
    )
    group.add_argument(
        "--split-seed", type=int, default=0, help="seed of the 9:1 CIFAR10-DVS train/test split (default 0)"
    )


def _event_options(args: argparse.Namespace) -> dict[str, Any]:
    """``TrainConfig.events`` from parsed options: only the ones given (so that other data sets,
    which take none, are not refused for defaults)."""
    given = {
        "size": args.frame_size,
        "window_ms": args.time_window,
        "flip": args.flip or None,
        "translate": args.translate or None,
        "cache_dir": args.frame_cache,
        "split_seed": args.split_seed or None,
    }
    return {k: v for k, v in given.items() if v is not None}


def _coding(args: argparse.Namespace) -> str:
    """``--coding`` (``--no-gac``: direct), gac when absent."""
    return coding_option(args) or "gac"


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding train``."""
    from ..train.engine import TrainConfig, fit

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
        coding=_coding(args),
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
        memory=args.memory,
        events=_event_options(args),
        model_kwargs=(
            {} if args.temporal_attention is None else {"temporal_attention": args.temporal_attention}
        ),
    )
    if args.save_pretrained is not None:
        _check_empty(args.save_pretrained)
    result = fit(config)
    if is_rank0() and result.history:
        last = result.history[-1]
        print(
            f"done: epoch {last['epoch']}, val_acc {last['val_acc']:.4f}, "
            f"best {result.best_val_acc:.4f}; files in {args.out}",
            flush=True,
        )
        if args.save_pretrained is not None:
            folder = save_run_pretrained(result, args.save_pretrained)
            print(f"pretrained folder (the last epoch's weights): {folder}", flush=True)
    return 0


def _check_empty(folder: str) -> None:
    """Refuse a ``--save-pretrained`` folder that holds files, before training starts."""
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(
            f"--save-pretrained: {path} already exists and is not empty; choose a new folder"
        )


#: validation samples the model card's energy report is measured on
CARD_ENERGY_SAMPLES = 256


def save_run_pretrained(result: Any, folder: str | Path) -> Path:
    """Write a finished run's model (``fit``'s result) with :func:`gac_coding.models.save_pretrained`:
    the card holds the last epoch's metrics and the energy report of the first
    :data:`CARD_ENERGY_SAMPLES` samples of the validation split."""
    import torch

    from ..energy import estimate_energy
    from ..models import save_pretrained

    last = result.history[-1]
    metrics = {k: last[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc") if k in last}
    metrics["best_val_acc"] = result.best_val_acc
    metrics["dataset"] = result.data.name
    model = result.model.to("cpu").eval()
    count = min(CARD_ENERGY_SAMPLES, len(result.data.test))
    subset = torch.utils.data.Subset(result.data.test, range(count))
    loader = torch.utils.data.DataLoader(subset, batch_size=64, collate_fn=result.data.collate_fn)
    energy = estimate_energy(model, loader)
    description = (
        f"Trained by `gac-coding train` on {result.data.name} for {last['epoch']} epochs; "
        f"the energy report is measured on the first {count} samples of its {result.data.test_split} split."
    )
    return save_pretrained(model, folder, input_size=result.data.input_size, metrics=metrics,
                           energy=energy, description=description)  # fmt: skip
