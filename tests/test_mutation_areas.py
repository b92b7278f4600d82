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

from areas import AREAS, GROUPS, OUTSIDE  # noqa: E402


def _modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "src" / "gac_coding").rglob("*.py"))


def _owners() -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {m: [] for m in _modules()}
    for name, area in AREAS.items():
        for pattern in area.sources:
            matched = [m for m in owners if fnmatch.fnmatch(m, pattern)]
            assert matched, f"area {name!r}: the source pattern {pattern!r} matches no module"
            for m in matched:
                owners[m].append(name)
    return owners


def _mutated_functions(path: Path) -> list[str]:
    """``name`` and ``Class.method`` of the functions mutmut mutates (top level, undecorated or
    static/class methods)."""

    def plain(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        names = [d.id for d in fn.decorator_list if isinstance(d, ast.Name)]
        return not fn.decorator_list or (
            len(fn.decorator_list) == 1 and names in (["staticmethod"], ["classmethod"])
        )

    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and plain(node):
            found.append(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and plain(item):
                    found.append(f"{node.name}.{item.name}")
    return found


def test_every_module_is_in_one_area_or_outside_with_a_reason() -> None:
    owners = _owners()
    for pattern in OUTSIDE:
        assert fnmatch.filter(owners, pattern), f"OUTSIDE names {pattern!r}, which matches no module"
        assert OUTSIDE[pattern].strip(), f"OUTSIDE: {pattern!r} needs a reason"

    def outside(m: str) -> bool:
        return any(fnmatch.fnmatch(m, pattern) for pattern in OUTSIDE)

    unplaced = [m for m, areas in owners.items() if not areas and not outside(m)]
    assert not unplaced, f"modules in no mutation area (tests/mutation/areas.py): {unplaced}"
    both = [m for m, areas in owners.items() if areas and outside(m)]
    assert not both, f"modules both in an area and OUTSIDE: {both}"
    for m, areas in owners.items():
        if len(areas) < 2:
            continue
        # a module split between areas: each of its mutated functions in exactly one of them
        unsplit = [a for a in areas if not AREAS[a].functions]
        assert not unsplit, f"{m} is in several areas; {unsplit} must name their functions"
        for fn in _mutated_functions(ROOT / m):
            takers = [a for a in areas if any(fnmatch.fnmatchcase(fn, p) for p in AREAS[a].functions)]
            assert len(takers) == 1, f"{m}: function {fn} is in the areas {takers} (exactly one expected)"
    for name, area in AREAS.items():
        for pattern in area.functions:
            names = [fn for m in owners if name in owners[m] for fn in _mutated_functions(ROOT / m)]
            assert any(fnmatch.fnmatchcase(fn, pattern) for fn in names), (
                f"area {name!r}: no function matches {pattern!r}"
            )


def test_groups_hold_every_area_once() -> None:
    grouped = [a for members in GROUPS.values() for a in members]
    assert sorted(grouped) == sorted(AREAS), "each area in exactly one group"


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
