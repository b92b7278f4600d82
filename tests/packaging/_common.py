"""Helpers of the packaging checks (run by a case's interpreter, from the installed wheel)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

OPTIONAL = ("snntorch", "norse", "spikingjelly", "sklearn", "torchvision", "matplotlib",
            "tqdm", "safetensors", "ninja", "nir", "onnx", "onnxruntime", "onnxscript", "tonic")  # fmt: skip


def from_the_wheel() -> None:
    """``gac_coding`` comes from this environment's site-packages, not from a source tree, and
    every installed distribution is this environment's own or one of the torch-only site's."""
    import importlib.metadata as md

    import gac_coding

    where = Path(gac_coding.__file__).resolve()
    assert Path(sys.prefix).resolve() in where.parents, f"gac_coding imported from {where}"
    assert "site-packages" in where.parts, where
    allowed = (Path(sys.prefix).resolve(), Path(os.environ["PACKAGING_TORCH_SITE"]).resolve())
    for dist in md.distributions():
        home = Path(str(dist.locate_file(""))).absolute()
        assert any(home == a or a in home.parents for a in allowed), (dist.metadata["Name"], home)


def importable(*names: str) -> None:
    for name in names:
        assert importlib.util.find_spec(name) is not None, f"{name} should be installed"


def absent(*names: str) -> None:
    """Not installed: the project's other packages do not leak into the case."""
    for name in names:
        assert importlib.util.find_spec(name) is None, f"{name} should not be installed"


def optional_modules_loaded() -> list[str]:
    return sorted(m for m in OPTIONAL if m in sys.modules)


def cli(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """Run the installed ``gac-coding`` console script; check its exit status."""
    result = subprocess.run(["gac-coding", *args], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, MPLBACKEND="Agg"))  # fmt: skip
    assert result.returncode == expect, (args, result.returncode, result.stdout[-2000:],
                                         result.stderr[-3000:])  # fmt: skip
    return result


def one_line_error(result: subprocess.CompletedProcess[str] | str, command: str, *fragments: str) -> None:
    err = result if isinstance(result, str) else result.stderr
    assert err.count("\n") == 1 and err.startswith(f"gac-coding {command}: error: "), err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def main_in_process(*args: str) -> tuple[int, str, str]:
    """``gac-coding ARGS`` in this process, as the console script runs it: (status, out, err)."""
    from gac_coding.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args), friendly_errors=True)
        except SystemExit as stop:  # --help, argparse errors
            status = int(stop.code or 0)
    return status, out.getvalue(), err.getvalue()


def help_works() -> None:
    """``gac-coding --help`` (the installed console script) and every subcommand's ``--help``."""
    from gac_coding.cli import SUBCOMMANDS

    result = cli("--help")
    assert "usage: gac-coding" in result.stdout and result.stderr == "", result.stderr
    for command in SUBCOMMANDS:
        status, out, _ = main_in_process(command.name, "--help")
        assert status == 0 and out.startswith(f"usage: gac-coding {command.name}"), (command.name, out)


def wrap_framework_missing(framework: str) -> None:
    """``wrap(..., framework=<missing>)`` raises the documented ImportError naming the extra."""
    import torch

    import gac_coding as gac

    try:
        gac.wrap(torch.nn.Sequential(gac.LIF(), torch.nn.Flatten(2)), T=2, in_channels=1,
                 framework=framework)  # fmt: skip
    except ImportError as exc:
        assert f'pip install "gac-coding[{framework}]"' in str(exc), exc
    else:
        raise AssertionError(f"wrap(framework={framework!r}) should need the {framework} extra")
