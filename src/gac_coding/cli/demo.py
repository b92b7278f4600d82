"""``gac-coding demo``: the four input codings (direct, rate, latency, GAC) on scikit-learn's
digits (a table and a plot)."""

from __future__ import annotations

import argparse

__all__ = ["configure_demo_parser", "run_demo_command"]


def configure_demo_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding demo``."""
    from ..train.demo import DEMO_DEFAULTS

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
    from ..train.demo import run_demo

    run_demo(
        epochs=args.epochs,
        seeds=args.seeds,
        T=args.T,
        out=args.out,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    return 0
