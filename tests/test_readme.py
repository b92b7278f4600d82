"""Every ```python block of the README runs as written, alone: each in a fresh namespace and an
empty working folder, so that a block copied on its own works (it imports and builds what it uses)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(path: Path = README) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block of the Markdown file ``path``."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1))
            for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]  # fmt: skip


def test_readme_has_python_examples() -> None:
    assert len(_python_blocks()) >= 10


@pytest.mark.parametrize("line, block", _python_blocks(),
                         ids=lambda v: f"line{v}" if isinstance(v, int) else "")  # fmt: skip
def test_readme_python_block_runs_alone(line: int, block: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block_alone(block, f"README.md, python block at line {line}")


def run_block_alone(block: str, where: str) -> None:
    """Run ``block`` in a fresh namespace; tracebacks name ``where`` (file and line)."""
    exec(compile(block, where, "exec"), {"__name__": "__readme__"})
