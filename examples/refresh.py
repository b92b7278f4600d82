"""Execute the example notebooks and store them with their outputs (results and pictures).

    .venv/bin/python examples/refresh.py            # all notebooks in examples/
    .venv/bin/python examples/refresh.py 03 05      # some of them, by number or file name

Run it after changing a notebook's code cells (tests/test_notebooks.py fails on a notebook whose
stored outputs are older than its code) or a library change that alters what they show. Needs the
test extra (nbclient, nbformat, ipykernel) and everything the notebooks import (the ``notebooks``
extra); ``make test``'s ``.venv`` has both.

Each notebook runs top to bottom in a fresh kernel, as Jupyter runs it: matplotlib's inline backend,
this checkout's ``src/`` first on the kernel's import path, a temporary working folder (the
notebooks write their files into temporary folders of their own; nothing lands in examples/).
A notebook that raises is not written. The stored notebook's metadata ``gac_coding.code_sha256`` is
the SHA-256 of the JSON list of its code cells' sources, in order: the test recomputes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent
DPI = 80  # the stored pictures: readable, and the notebooks stay small


def code_sha256(nb: nbformat.NotebookNode) -> str:
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def refresh(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    env = os.environ.copy()
    env.pop("MPLBACKEND", None)  # the kernel picks the inline backend, as in Jupyter
    # tqdm.auto (imported by tonic) warns in a kernel without ipywidgets; the notebooks extra
    # installs ipywidgets, so a reader's Jupyter shows no such warning: neither do the stored outputs
    quiet = "ignore:IProgress not found"  # its message
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet]))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:
        client = NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            record_timing=False,  # no timestamps in the stored file
            resources={"metadata": {"path": cwd}},
            # the stored pictures at a modest resolution (the figures keep their size in inches)
            extra_arguments=[f"--InlineBackend.rc={{'figure.dpi': {DPI}}}"],
        )
        client.execute(env=env)
        left = sorted(p.name for p in Path(cwd).iterdir())
    if left:
        raise SystemExit(f"{path.name}: wrote {left} into its working folder; write into a temporary folder")
    for cell in nb.cells:  # one block of text per stream where print calls follow each other
        merged: list[nbformat.NotebookNode] = []
        for out in cell.get("outputs", []):
            last = merged[-1] if merged else None
            if out.output_type == "stream" and last is not None and last.output_type == "stream":
                if last.name == out.name:
                    last.text += out.text
                    continue
            merged.append(out)
        if cell.cell_type == "code":
            cell.outputs = merged
    nb.metadata["gac_coding"] = {"code_sha256": code_sha256(nb)}
    nbformat.write(nb, path)
    pictures = sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))
    size = path.stat().st_size / 1024
    print(f"{path.name}: {pictures} pictures, {size:.0f} KiB, {time.perf_counter() - start:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="numbers (03) or file names; default: all")
    args = parser.parse_args(argv)
    paths = sorted(EXAMPLES.glob("*.ipynb"))
    if args.notebooks:
        chosen = [p for p in paths if any(p.name.startswith(n) or p.stem == n for n in args.notebooks)]
        unknown = [n for n in args.notebooks if not any(p.name.startswith(n) for p in chosen)]
        if unknown:
            print(f"refresh.py: error: no notebook in examples/ matches {unknown}", file=sys.stderr)
            return 2
        paths = chosen
    for path in paths:
        refresh(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
