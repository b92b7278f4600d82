"""The shape of the code (docs/design/architecture.md), read from the source with ``ast``.

* Imports point down the layer table (``tools/import_graph.py``'s ``LAYERS``), counting imports
  made by string (the lazy tables, ``importlib.import_module``), and there is no import cycle.
* No module of ``src/`` has more than 600 lines and no function more than 80 (from its ``def``
  line to its last line, docstring included).

What other work still has to bring in line is listed below, each entry with who owns it; an entry
that is no longer needed fails the test, so the lists only shrink.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Known exceptions (each with the reason it stays); issue 22 emptied them.
ALLOWED_IMPORTS: set[tuple[str, str]] = set()
ALLOWED_LONG_MODULES: set[str] = set()
ALLOWED_LONG_FUNCTIONS: set[str] = set()


def _load_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return tool.import_graph(ROOT / "src")


def _sources() -> list[Path]:
    return sorted((ROOT / "src" / "gac_coding").rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------------------ the reader
def test_the_reader_finds_statement_and_string_imports(tmp_path: Path) -> None:
    """A made-up package: each kind of import the checks rely on is found, and a cycle made only
    through a string import is a cycle."""
    pkg = tmp_path / "gac_coding"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import f\n",
        "a.py": "import gac_coding.b\ndef f():\n    from .sub import c\n",
        "b.py": "from gac_coding.sub.c import g\n",
        "sub/__init__.py": "_SOURCES = {'g': '.c'}\n",
        "sub/c.py": "import importlib\nimportlib.import_module('gac_coding.a')\nX = 'gac_coding'\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    found = tool.import_graph(tmp_path)
    assert found == {
        "gac_coding": {"gac_coding.a"},
        "gac_coding.a": {"gac_coding.b", "gac_coding.sub.c"},
        "gac_coding.b": {"gac_coding.sub.c"},
        "gac_coding.sub": {"gac_coding.sub.c"},
        "gac_coding.sub.c": {"gac_coding.a"},  # the string 'gac_coding' (the root) is no import
    }
    assert tool.cycles(found) == [["gac_coding.a", "gac_coding.b", "gac_coding.sub.c"]]


def test_the_layer_rule_on_made_up_edges() -> None:
    graph = {
        "gac_coding.train.loop": {"gac_coding.train.data", "gac_coding.models", "gac_coding.io"},  # fine
        "gac_coding.neuron": {"gac_coding.attention"},  # up: attention sits on the neuron
        "gac_coding.export.nir": {"gac_coding.train.data"},  # up
        "gac_coding.somewhere_new": set(),
    }
    assert tool.layer_violations(graph) == [
        "gac_coding.somewhere_new: not in LAYERS (add it to a row)",
        "gac_coding.export.nir imports gac_coding.train.data: up, from 'export' to 'training'",
        "gac_coding.neuron imports gac_coding.attention: up, from 'the neuron' to 'attention'",
    ]
    # sideways: two entries of one row may not import each other
    row = next(entries for _, entries in tool.LAYERS if len(entries) > 1)
    sideways = tool.layer_violations({row[1]: {row[0]}, row[0]: set()})
    assert sideways and "sideways" in sideways[0]


# ------------------------------------------------------------------------------------ the rules
def test_imports_point_down_the_layers(graph: dict[str, set[str]]) -> None:
    problems = [p for p in tool.layer_violations(graph)
                if not any(p.startswith(f"{a} imports {b}:") for a, b in ALLOWED_IMPORTS)]  # fmt: skip
    assert problems == [], "\n".join(problems)
    for a, b in ALLOWED_IMPORTS:
        assert b in graph.get(a, set()), f"{a} no longer imports {b}: remove it from ALLOWED_IMPORTS"


def test_no_import_cycles_counting_string_imports(graph: dict[str, set[str]]) -> None:
    assert tool.cycles(graph) == []


def test_the_lazy_tables_and_dynamic_imports_are_seen(graph: dict[str, set[str]]) -> None:
    """The string imports of this code base reach the graph; a module that imports by a computed
    name is listed in DYNAMIC with what it reaches."""
    assert "gac_coding.train.engine" in graph["gac_coding.train"]  # the lazy table's ".engine"
    assert "gac_coding.export.onnx" in graph["gac_coding.export"]
    assert {"gac_coding.ops._eager", "gac_coding.ops._cpp"} <= graph["gac_coding.ops.backends"]
    dynamic = set()
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "import_module" and node.args
                    and not isinstance(node.args[0], ast.Constant)):  # fmt: skip
                parts = path.relative_to(ROOT / "src").with_suffix("").parts
                dynamic.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert dynamic == set(tool.DYNAMIC)


def test_no_module_over_600_lines() -> None:
    long = {_rel(p): n for p in _sources() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert set(long) - ALLOWED_LONG_MODULES == set(), long
    stale = ALLOWED_LONG_MODULES - set(long)
    assert stale == set(), f"no longer too long, remove from ALLOWED_LONG_MODULES: {stale}"


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{node.name}", node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def test_no_function_over_80_lines() -> None:
    long = {}
    for path in _sources():
        for name, node in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long[f"{_rel(path)}::{name}"] = lines
    assert set(long) - ALLOWED_LONG_FUNCTIONS == set(), long
    stale = ALLOWED_LONG_FUNCTIONS - set(long)
    assert stale == set(), f"no longer too long, remove from ALLOWED_LONG_FUNCTIONS: {stale}"


def test_the_command_prints_the_graph_and_checks_it(capsys) -> None:
    assert tool.main(["--mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("graph BT") and "cli[cli] --> train[train]" in out
    assert tool.main(["--dot"]) == 0
    assert '"train" -> "models";' in capsys.readouterr().out


# ------------------------------------------------------ one lazy loader, one table of deprecations
def test_the_lazy_loader_imports_on_first_use_and_keeps_the_name() -> None:
    code = ("import sys, gac_coding.train as t; a = 'gac_coding.train.engine' in sys.modules; "
            "f = t.fit; print(a, 'gac_coding.train.engine' in sys.modules, vars(t)['fit'] is f, "
            "'fit' in dir(t))")  # fmt: skip
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True", "True"]
    import gac_coding.export

    with pytest.raises(AttributeError, match="module 'gac_coding.export' has no attribute 'to_tflite'"):
        gac_coding.export.to_tflite  # noqa: B018


def test_every_deprecated_name_has_a_home_and_a_removal_version() -> None:
    import importlib
    import warnings

    import gac_coding
    from gac_coding._deprecated import DEPRECATED, moved_attribute

    current = tuple(int(p) for p in gac_coding.__version__.split(".")[:3])
    for old, row in DEPRECATED.items():
        new, removed_in = row.new, row.removed_in
        assert tuple(int(p) for p in removed_in.split(".")) > current, old
        if old.startswith("gac_coding."):  # a Python name: the new one exists, the old one serves it
            home, _, name = new.rpartition(".")
            target = getattr(importlib.import_module(home), name)
            module, _, attribute = old.rpartition(".")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert moved_attribute(module, attribute) is target
            assert caught[0].category is DeprecationWarning and new in str(caught[0].message)
        elif old.startswith("gac-coding "):  # a command-line option: gac-coding --old -> --new ...
            assert old.startswith("gac-coding --") and new.startswith("--"), old
        else:  # an argument or a value, warned about by the code that reads it
            assert "(" in old or "=" in old or old.startswith("model."), old


def test_a_deprecation_warning_points_at_the_line_that_used_the_old_name() -> None:
    import gac_coding.energy as energy

    with pytest.warns(DeprecationWarning) as caught:
        energy.load_checkpoint  # noqa: B018
    assert caught[0].filename == __file__
