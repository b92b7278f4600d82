"""The map of the mutation-testing areas (tests/mutation/areas.py) follows the code.

When a module moves or a new one appears, this fails until the map says which area mutates it
(or why none does); a test file or a left-out test that no longer exists fails too. Nothing here
runs mutmut (``make mutation AREA=...`` does, outside the suite).
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "mutation"))

from areas import AREAS, OUTSIDE  # noqa: E402


def _modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "src" / "gac_coding").rglob("*.py"))


def test_every_module_is_in_exactly_one_area_or_outside_with_a_reason() -> None:
    owners: dict[str, list[str]] = {m: [] for m in _modules()}
    for name, area in AREAS.items():
        for pattern in area.sources:
            matched = [m for m in owners if fnmatch.fnmatch(m, pattern)]
            assert matched, f"area {name!r}: the source pattern {pattern!r} matches no module"
            for m in matched:
                owners[m].append(name)
    for m in OUTSIDE:
        assert m in owners, f"OUTSIDE names {m!r}, which does not exist"
        assert OUTSIDE[m].strip(), f"OUTSIDE: {m!r} needs a reason"
    unplaced = [m for m, areas in owners.items() if not areas and m not in OUTSIDE]
    twice = {m: areas for m, areas in owners.items() if len(areas) > 1 or (areas and m in OUTSIDE)}
    assert not unplaced, f"modules in no mutation area (tests/mutation/areas.py): {unplaced}"
    assert not twice, f"modules in more than one place: {twice}"


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_file_and_left_out_test_exists() -> None:
    for name, area in AREAS.items():
        assert area.tests, f"area {name!r} has no tests"
        for test_file in area.tests:
            assert (ROOT / test_file).is_file(), f"area {name!r}: no test file {test_file}"
        for node, why in area.skip_tests.items():
            file, _, test = node.partition("::")
            assert file in area.tests, f"area {name!r}: {node} is not in one of its test files"
            assert test in _test_names(ROOT / file), f"area {name!r}: no test {node}"
            assert why.strip(), f"area {name!r}: {node} needs a reason"
        for pattern, why in area.skip_lines.items():
            assert why.strip(), f"area {name!r}: the line pattern {pattern!r} needs a reason"
