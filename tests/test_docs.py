"""The documentation site: its examples run, and the code's citations of it point at real sections.

Every ```python block of ``docs/**/*.md`` runs as written, alone, in a fresh namespace and an empty
working folder (the README's rule, with the README's helpers). ``make docs`` builds the site with
``--strict`` (broken links, unknown pages and docstring warnings fail it); these tests cover what
the build cannot see.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest
from test_readme import _python_blocks, run_block_alone

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
BLOCKS = [(page, line, block) for page in PAGES for line, block in _python_blocks(page)]

# "docs/design/encoder.md §2", "docs/design/recipes.md §1-2" or a page alone
_CITATION = re.compile(r"docs/((?:[\w-]+/)*[\w-]+\.md)(?: §(\d+)(?:-(\d+))?)?")


def _label(value: object) -> str:
    if isinstance(value, Path):
        return str(value.relative_to(DOCS))
    return f"line{value}" if isinstance(value, int) else ""


def test_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 10
    design = {page.name for page, _, _ in BLOCKS if page.parent.name == "design"}
    assert {"encoder.md", "neuron.md", "energy.md", "checkpoints.md", "nir.md"} <= design


@pytest.mark.parametrize("page, line, block", BLOCKS, ids=_label)
def test_docs_python_block_runs_alone(page: Path, line: int, block: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_block_alone(block, f"{page.relative_to(ROOT)}, python block at line {line}")


def _sections(page: Path) -> set[int]:
    return {int(n) for n in re.findall(r"^#+ §(\d+) ", page.read_text(), flags=re.M)}


def _citations() -> list[tuple[str, str, int | None, int | None]]:
    """``(file:line, page, first section, last section)`` of every citation of a docs page."""
    found = []
    sources = [ROOT / "README.md", *sorted((ROOT / "benchmarks").rglob("*.py"))]
    for folder in ("src", "tests", "examples"):
        sources += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".ipynb", ".md"))
    for path in sources:
        for number, text in enumerate(path.read_text().splitlines(), 1):
            for m in _CITATION.finditer(text):
                first = int(m.group(2)) if m.group(2) else None
                last = int(m.group(3)) if m.group(3) else first
                found.append((f"{path.relative_to(ROOT)}:{number}", m.group(1), first, last))
    return found


def test_code_cites_the_design_pages() -> None:
    cited = {page for _, page, _, _ in _citations()}
    assert {"design/encoder.md", "design/recipes.md", "design/energy.md"} <= cited


@pytest.mark.parametrize(
    "where, page, first, last", _citations(), ids=lambda v: v if isinstance(v, str) and ":" in v else ""
)
def test_citation_points_at_an_existing_section(
    where: str, page: str, first: int | None, last: int | None
) -> None:
    path = DOCS / page
    assert path.is_file(), f"{where} cites docs/{page}, which does not exist"
    if first is not None:
        missing = set(range(first, last + 1)) - _sections(path)
        assert not missing, f"{where} cites docs/{page} §{sorted(missing)}, which has no such section"


def test_no_citation_of_unshipped_design_notes() -> None:
    """The design notes the docs replaced lived outside the repository: nothing may cite them."""
    stale = [where for where, text in _all_lines() if "GAC.md" in text or "reference-layouts" in text]
    assert not stale, f"cites design notes that are not in the repository: {stale}"


def _all_lines() -> list[tuple[str, str]]:
    lines = []
    for folder in ("src", "tests", "examples", "benchmarks", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".ipynb", ".md") and path != Path(__file__):
                lines += [
                    (f"{path.relative_to(ROOT)}:{i}", t)
                    for i, t in enumerate(path.read_text().splitlines(), 1)
                ]
    readme = (ROOT / "README.md").read_text().splitlines()
    return lines + [(f"README.md:{i}", t) for i, t in enumerate(readme, 1)]


def test_no_issue_numbers_in_what_users_read() -> None:
    """Users cannot look up this project's issue tracker: the library's text (docstrings, messages),
    the docs and the README never cite an issue number (the built site is checked the same way by
    tests/docs_site_check.py)."""
    issue = re.compile(r"\bissues?\s*(?:no\.?\s*)?#?\d+", flags=re.I)
    cited = [
        (where, text.strip())
        for where, text in _all_lines()
        if where.startswith(("src/", "docs/", "README.md")) and issue.search(text)
    ]
    assert not cited, f"issue numbers in user-facing text: {cited}"


def _griffe_extension(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """docs/_ext/griffe_rst.py, loaded with a stand-in for griffe (a docs extra, not a test one)."""
    monkeypatch.setitem(sys.modules, "griffe", types.SimpleNamespace(Extension=object, Object=object))
    spec = importlib.util.spec_from_file_location("griffe_rst", DOCS / "_ext" / "griffe_rst.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_splits_shared_parameter_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry for several parameters becomes one entry per name (griffe then takes each one's
    type and default from the signature: the built site is checked for that by docs_site_check)."""
    ext = _griffe_extension(monkeypatch)
    text = (
        "Intro: a, b: not a section entry.\n\nArgs:\n    x: one.\n"
        "    kernel_size, stride (int): the convolution,\n        no bias.\n\n    y: two.\n"
        "\nReturns:\n    a, b: left as written.\n\nExample:\n    >>> 1\n    1\n"
    )
    assert ext.rewrite(text) == (
        "Intro: a, b: not a section entry.\n\nArgs:\n    x: one.\n"
        "    kernel_size (int): the convolution,\n        no bias.\n"
        "    stride (int): the convolution,\n        no bias.\n\n    y: two.\n"
        "\nReturns:\n    a, b: left as written.\n\nExamples:\n    >>> 1\n    1\n"
    )
    assert ext.rewrite("See :class:`~gac_coding.LIF` and :func:`gac_coding.wrap`.") == (
        "See `LIF` and `gac_coding.wrap`."
    )
