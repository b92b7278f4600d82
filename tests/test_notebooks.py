"""Every example notebook runs top to bottom (executed with nbclient, as a user would) and its key
results hold: notebooks 01-05 end with a cell of ``assert`` statements on what the notebook claims
(final accuracy over a stated level, layers that fire, the metric relations its prose states) that
prints ``checks passed``; here the printed numbers are also read back and checked."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_the_six_notebooks_exist() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    text = "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "stream"
    )
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
                        (r"'backbone.1': ([0-9.]+)", 0.01)],
    "04_paper_models": [(r"largest logit difference between the two images: ([0-9.]+)", 1e-3),
                        (r"'synop': ([0-9]+)", 1)],
    "05_coding_dynamics": [(r"test accuracy after 2 epochs: ([0-9.]+)", 0.85)],
}
