"""Every example notebook runs top to bottom (executed with nbclient, as a user would, with
matplotlib's inline backend as in Jupyter) and its key results hold: notebooks 01-05 end with a cell
of ``assert`` statements on what the notebook claims (final accuracy over a stated level, layers
that fire, the metric relations its prose states) that prints ``checks passed``; here the printed
numbers are also read back and checked.

The notebooks are stored with their outputs (``python examples/refresh.py`` executes and writes
them): the stored outputs must be those of the stored code (a hash of the code cells, written by
the refresh tool, is recomputed here), hold every picture the README promises, and the same number
of pictures must come out of a fresh run. A run writes nothing into its working folder. The kernel
refuses to import every package that the ``notebooks`` extra of pyproject.toml does not install,
so a notebook that needs one fails here."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the build package brings tomli to Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]

# the pictures the README's notebook table promises, at least
PICTURES = {
    "01_snntorch_quickstart": 2,  # accuracy per epoch, the encoder's spike raster
    "02_norse": 1,  # accuracy per epoch
    "03_spikingjelly": 1,  # firing rate per layer
    "04_paper_models": 1,  # energy per layer
    "05_coding_dynamics": 3,  # the gate over time, the rasters of direct coding and GAC
    "06_event_camera": 2,  # the frames of a recording, the T=2/4/8 results
}

# put before a copy of each notebook: the kernel refuses to import the modules of every package
# here that the notebooks extra does not install (formatted with their names), as on a machine
# with that extra alone; a package's optional imports then fail as they would there
_REFUSE_CELL = """
import importlib.abc as _abc, importlib.util as _util, sys as _sys

_REFUSED = {refused!r}

class _Refuse(_abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _REFUSED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the notebooks extra)", name=name)
        return None

_sys.meta_path.insert(0, _Refuse())
_find_spec = _util.find_spec
_util.find_spec = lambda name, *a: None if name.split(".")[0] in _REFUSED else _find_spec(name, *a)
"""


def _pictures(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )  # fmt: skip


def _code_hash(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of the JSON list of the code cells' sources, as examples/refresh.py stores it."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def test_the_six_notebooks_exist() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]
    assert sorted(PICTURES) == IDS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_outputs_are_those_of_the_stored_code(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    stored = nb.metadata.get("gac_coding", {}).get("code_sha256")
    assert stored == _code_hash(nb), (
        f"{path.name}: its outputs were not made by its code cells; run python examples/refresh.py "
        f"{path.name[:2]} and commit the notebook"
    )
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") == i + 1 for i, cell in enumerate(code)), path.name
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert _pictures(nb) >= PICTURES[path.stem]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as in Jupyter
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    nb = nbformat.read(path, as_version=4)
    stored_pictures = _pictures(nb)
    installed = _installed_by_notebooks_extra()
    refused = sorted(
        module for module, dists in md.packages_distributions().items()
        if not any(canonicalize_name(d) in installed for d in dists)
    )  # fmt: skip
    assert "pytest" in refused and "torch" not in refused  # what the hook below refuses
    nb.cells.insert(0, nbformat.v4.new_code_cell(_REFUSE_CELL.format(refused=set(refused))))
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]  # fmt: skip
    assert not errors
    assert list(tmp_path.iterdir()) == [], f"{path.name} wrote into its working folder"
    assert _pictures(nb) == stored_pictures, f"{path.name}: the pictures differ from the stored ones"
    text = "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "stream"
    )  # fmt: skip
    if path.stem in CLAIMS:
        assert "checks passed" in text, f"{path.name}: its cell of checks did not run"
        for pattern, least in CLAIMS[path.stem]:
            values = [float(v) for v in re.findall(pattern, text)]
            assert values and min(values) >= least, (path.name, pattern, values)


# notebook -> (a regex capturing a printed number, the least value it may take); chance is 0.1
CLAIMS: dict[str, list[tuple[str, float]]] = {
    "01_snntorch_quickstart": [(r"final test accuracy: direct ([0-9.]+)", 0.8),
                               (r"final test accuracy: .*GAC ([0-9.]+)", 0.8)],
    "02_norse": [(r"epoch 3: .*test accuracy ([0-9.]+)", 0.8),
                 (r"hidden layer firing rate: ([0-9.]+)", 0.01)],
    "03_spikingjelly": [(r"epoch 3: .*test accuracy ([0-9.]+)", 0.8),
                        (r"backbone\.1: ([0-9.]+)", 0.01)],
    "04_paper_models": [(r"largest logit difference between the two images: ([0-9.]+)", 1e-3),
                        (r"'synop': ([0-9]+)", 1)],
    "05_coding_dynamics": [(r"test accuracy after 2 epochs: ([0-9.]+)", 0.85)],
}  # fmt: skip

# present in every virtual environment; some packages import them without declaring them
_ENVIRONMENT = {"pip", "setuptools"}


@functools.cache
def _installed_by_notebooks_extra() -> frozenset[str]:
    """The distributions that ``pip install ".[notebooks]"`` installs: the extra's requirements
    (other extras of gac-coding expanded), the core requirements, and everything those require in
    turn as installed here (markers evaluated for this interpreter); gac-coding itself and what
    every virtual environment has."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    todo = [Requirement(r) for r in (*project["dependencies"], *extras["notebooks"])]
    seen = {"gac-coding", *_ENVIRONMENT}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == "gac-coding":
            todo += [Requirement(r) for e in req.extras for r in extras[e]]
            continue
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:  # named by the extra, not installed here (jupyterlab)
            continue
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return frozenset(seen)


def test_the_notebooks_extra_names_jupyter() -> None:
    """``pip install -e ".[notebooks]"`` then ``jupyter lab examples/`` (the README) needs these."""
    assert {"jupyterlab", "ipykernel"} <= _installed_by_notebooks_extra()
