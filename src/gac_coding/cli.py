"""The ``gac-coding`` command: ``demo``, ``train`` and ``energy`` subcommands.

Also reachable as ``python -m gac_coding``. Each subcommand is one ``configure_*`` function that
adds its options and one ``run_*`` function that executes it; a new subcommand is one more entry in
:func:`build_parser`'s table.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


# ------------------------------------------------------------------------------------ demo
def configure_demo_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding demo``."""
    from .train.demo import DEMO_DEFAULTS

    parser.add_argument("--epochs", type=int, default=DEMO_DEFAULTS["epochs"],
                        help=f"epochs per run (default {DEMO_DEFAULTS['epochs']})")
    parser.add_argument("--seeds", type=int, default=DEMO_DEFAULTS["seeds"],
                        help=f"seeds per coding (default {DEMO_DEFAULTS['seeds']})")
    parser.add_argument("--T", type=int, default=DEMO_DEFAULTS["T"],
                        help=f"time steps (default {DEMO_DEFAULTS['T']})")
    parser.add_argument("--out", default="demo_out", help="folder for demo.json and demo.png")
    parser.add_argument("--workers", type=int, default=None,
                        help="parallel training processes, one thread each (default: up to 2)")


def run_demo_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding demo``."""
    from .train.demo import run_demo

    run_demo(epochs=args.epochs, seeds=args.seeds, T=args.T, out=args.out, workers=args.workers)
    return 0


# ----------------------------------------------------------------------------------- train
def configure_train_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding train``."""
    from .train.data import DATASETS
    from .train.losses import LOSSES

    parser.add_argument("--model", required=True, help="registered model name, e.g. msresnet18_cifar")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data-dir", default=None,
                        help="folder holding cifar-10-batches-py/, cifar-100-python/ or train/ + val/")
    parser.add_argument("--T", type=int, required=True, help="time steps")
    parser.add_argument("--epochs", type=int, required=True, help="total epochs (cosine schedule length)")
    parser.add_argument("--batch-size", type=int, required=True, help="images per process and step")
    parser.add_argument("--lr", type=float, required=True, help="initial SGD learning rate")
    parser.add_argument("--out", required=True,
                        help="run folder: metrics.jsonl, last.pt, best.pt, model.safetensors")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="end normally after epoch N of the --epochs schedule (checkpoints "
                             "written as usual); continue later with --resume")
    parser.add_argument("--no-gac", action="store_true", help="direct coding baseline (no GAC encoder)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision on CUDA (bf16 where supported, else fp16 + grad scaler)")
    parser.add_argument("--cutmix", type=float, default=0.0, metavar="P",
                        help="CutMix probability (beta 1.0); paper: 0.5 CIFAR, 1.0 ImageNet")
    parser.add_argument("--loss", choices=LOSSES, default="ce",
                        help="ce: cross-entropy of time-averaged logits; tet: mean of per-step CE")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=5e-5)
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N (default: CUDA when available; torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="crop size for --dataset imagefolder (default 224)")
    parser.add_argument("--no-progress", action="store_true",
                        help="plain log lines even on a terminal")


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding train``."""
    from .train.engine import TrainConfig, fit

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
        gac=not args.no_gac,
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
    )
    result = fit(config)
    if _is_rank0() and result.history:
        last = result.history[-1]
        print(f"done: epoch {last['epoch']}, val_acc {last['val_acc']:.4f}, "
              f"best {result.best_val_acc:.4f}; files in {args.out}", flush=True)
    return 0


# ---------------------------------------------------------------------------------- energy
def configure_energy(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding energy`` (defined in :mod:`gac_coding.energy`)."""
    from .energy import configure_energy_parser

    configure_energy_parser(parser)


def run_energy(args: argparse.Namespace) -> int:
    """Run ``gac-coding energy``."""
    from .energy import run_energy_command

    return int(run_energy_command(args))


# ------------------------------------------------------------------------------------ main
def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def build_parser() -> argparse.ArgumentParser:
    """The ``gac-coding`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="gac-coding",
        description="Gated Attention Coding for spiking neural networks: demo, training, energy.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,train,energy}")
    commands = (
        ("demo", "direct vs Poisson vs GAC coding on scikit-learn's digits: table + plot",
         configure_demo_parser, run_demo_command),
        ("train", "train a model (one CPU to many GPUs under torchrun)",
         configure_train_parser, run_train_command),
        ("energy", "operation counts and energy of a model", configure_energy, run_energy),
    )
    for name, help_text, configure, run in commands:
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(handler=run)
    return parser


def main(argv: Sequence[str] | None = None, *, friendly_errors: bool | None = None) -> int:
    """Entry point of ``gac-coding``; returns the exit status.

    Run as a command (``argv=None``: the console script, ``python -m gac_coding``), known error
    types (bad values, missing data folders, refused checkpoints) print one line
    ``gac-coding CMD: error: ...`` on stderr and return 2. Called from Python with an explicit
    ``argv`` they propagate as exceptions, unless ``friendly_errors=True``.
    """
    if friendly_errors is None:
        friendly_errors = argv is None
    args = build_parser().parse_args(argv)
    if not friendly_errors:
        return int(args.handler(args))
    from .train.checkpoint import CheckpointError

    try:
        return int(args.handler(args))
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as exc:
        if _is_rank0():
            print(f"gac-coding {args.command}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if _is_rank0():
            print(f"gac-coding {args.command}: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
