"""Quick guards of the install promises, in the test suite (the full matrix from the built wheel is
``make packaging``, tests/packaging/matrix.py): the command line works without any extra, and
missing extras are one line naming them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gac_coding.train as train

# Runs in a fresh interpreter in which every optional package fails to import, as on a bare
# install (an import hook refuses them even though this environment has them).
_BARE = textwrap.dedent(
    """
    import contextlib, importlib.abc, io, sys

    OPTIONAL = {"sklearn", "torchvision", "matplotlib", "tqdm", "safetensors", "snntorch", "norse",
                "spikingjelly", "ninja", "nir", "onnx", "onnxruntime", "onnxscript", "tonic", "PIL"}

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in OPTIONAL:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    import importlib.util
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: (None if name.split(".")[0] in OPTIONAL
                                                 else real_find_spec(name, *a))

    from gac_coding.cli import SUBCOMMANDS, build_parser, main

    parser = build_parser()
    for command in SUBCOMMANDS:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([command.name, "--help"])
        assert out.getvalue().startswith(f"usage: gac-coding {command.name}"), command.name
        print("help", command.name)
    for argv in (["demo"], ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2",
                 "--epochs", "1", "--batch-size", "8", "--lr", "0.1", "--out", "never-written"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main(argv, friendly_errors=True)
        print(status, err.getvalue(), end="")
    loaded = sorted(m for m in OPTIONAL if m in sys.modules)
    print("loaded", loaded)
    """
)


def test_the_command_line_needs_no_extra_and_names_the_missing_one() -> None:
    result = subprocess.run([sys.executable, "-c", _BARE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    from gac_coding.cli import SUBCOMMANDS

    lines = result.stdout.splitlines()
    n = len(SUBCOMMANDS)
    assert lines[:n] == [f"help {c.name}" for c in SUBCOMMANDS], lines
    assert {"demo", "train", "energy"} <= {c.name for c in SUBCOMMANDS}
    hint = "needs the 'train' extra (no module named 'sklearn'): pip install \"gac-coding[train]\""
    assert lines[n:] == [f"2 gac-coding demo: error: {hint}", f"2 gac-coding train: error: {hint}",
                         "loaded []"]  # fmt: skip


def test_the_train_package_names_resolve_lazily() -> None:
    assert set(train.__all__) == set(train._SOURCES)
    for name in train.__all__:
        value = getattr(train, name)
        assert getattr(value, "__name__", name) == name or not callable(value)
    code = "import sys, gac_coding.train.data; print('gac_coding.train.engine' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # one submodule does not import the training loop
