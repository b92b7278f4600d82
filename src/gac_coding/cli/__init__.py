"""The ``gac-coding`` command: ``demo``, ``train``, ``energy``, ``export`` and ``convert`` subcommands.

Also reachable as ``python -m gac_coding``. A subcommand ``NAME`` is one module of this package,
``gac_coding.cli.NAME``, with two functions, ``configure_NAME_parser(parser)`` (adds its options)
and ``run_NAME_command(args) -> int`` (runs it), and one :class:`Subcommand` entry in
:data:`SUBCOMMANDS`; the options that several subcommands share are written once in
:mod:`gac_coding.cli.options`. The modules import torch alone at their top (they are imported
with the parser); optional packages are imported inside ``run_NAME_command``. A run that misses
an optional package ends with one line naming the extra to install (:data:`EXTRA_OF_MODULE`) and
exit status 2, as any other bad input does.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from . import convert, demo, energy, export, train
from .options import is_rank0

__all__ = ["EXTRA_OF_MODULE", "SUBCOMMANDS", "Subcommand", "build_parser", "main"]


@dataclass(frozen=True)
class Subcommand:
    """One ``gac-coding`` subcommand.

    Attributes:
        name: the word on the command line.
        help: one line for ``gac-coding --help``.
        module: the module of this package holding ``configure_<name>_parser`` and
            ``run_<name>_command``; it imports with torch alone.
        extra: the pip extra its runs need (``None``: torch alone).
        needs: top-level modules every run imports, checked before it starts.
    """

    name: str
    help: str
    module: ModuleType
    extra: str | None = None
    needs: tuple[str, ...] = ()

    def functions(self) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]:
        """``(configure, run)`` from :attr:`module`."""
        return (getattr(self.module, f"configure_{self.name}_parser"),
                getattr(self.module, f"run_{self.name}_command"))  # fmt: skip


# what the train extra installs (checked before demo or train start, not after an epoch)
_TRAIN_EXTRA = ("sklearn", "torchvision", "matplotlib", "tqdm", "safetensors")

#: The subcommands, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("demo", "the four input codings on scikit-learn's digits: table + plot",
               demo, extra="train", needs=_TRAIN_EXTRA),
    Subcommand("train", "train a model (one CPU to many GPUs under torchrun)",
               train, extra="train", needs=_TRAIN_EXTRA),
    Subcommand("energy", "operation counts and energy of a model (the base install)", energy),
    Subcommand("export", "write a model's host encoder and its spiking backbone (NIR)",
               export, extra="export"),
    Subcommand("convert", "the authors' released checkpoint as a folder that from_pretrained loads",
               convert, extra="train", needs=("safetensors",)),
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
    from ..adapters import extra_of_package

    extra = EXTRA_OF_MODULE.get(top) or extra_of_package(top) or command.extra
    if extra is None:
        return f"needs the package {top!r}, which is not installed ({text})"
    return f"needs the {extra!r} extra (no module named {top!r}): {_install_hint(extra)}"


def _check_needs(command: Subcommand) -> None:
    missing = [m for m in command.needs if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"No module named {missing[0]!r}", name=missing[0])


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
    if is_rank0():
        print(f"gac-coding {command}: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None, *, friendly_errors: bool | None = None) -> int:
    """Entry point of ``gac-coding``; returns the exit status.

    Run as a command (``argv=None``: the console script, ``python -m gac_coding``), known error
    types (bad values, missing data folders, unreadable or refused checkpoints, a missing optional
    package) print one line ``gac-coding CMD: error: ...`` on stderr and return 2. Called from
    Python with an explicit ``argv`` they propagate as exceptions, unless ``friendly_errors=True``.
    """
    from ..io import CheckpointError

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
