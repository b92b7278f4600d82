"""The import graph of gac-coding's modules, and the layers it must follow.

    python tools/import_graph.py            # the layers, then each module and what it imports
    python tools/import_graph.py --mermaid  # the graph between packages as a mermaid diagram
    python tools/import_graph.py --dot      # the same as Graphviz DOT (| dot -Tsvg > graph.svg)

The graph is read from the source (``ast``), nothing is imported. An edge ``a -> b`` means module
``a`` imports ``b``: an ``import`` statement anywhere in ``a`` (inside functions too), or a string
that names ``b`` (``"gac_coding.x"``, or ``".x"`` relative to ``a``'s package, as the lazy tables
of :mod:`gac_coding._lazy` and ``importlib.import_module`` take them). :data:`LAYERS` is the layer
table of docs/design/architecture.md; ``tests/test_architecture.py`` checks the graph against it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "gac_coding"

#: The layers, bottom first. A module may import modules of lower rows, and modules of its own row
#: only inside its own entry (``gac_coding.train.loop`` may import ``gac_coding.train.data``;
#: ``gac_coding.neuron`` may not import ``gac_coding.attention``). Every module must fall under an
#: entry (the longest entry that prefixes its name); the package root only re-exports.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundations: checks, deprecations, files and run settings", (
        "gac_coding._version", "gac_coding._checks", "gac_coding._deprecated", "gac_coding._plotting",
        "gac_coding.io")),
    ("lazy names (a name that moved: the deprecation table)", ("gac_coding._lazy",)),
    ("ops: the neuron ops and their backends", ("gac_coding.ops",)),
    ("the neuron", ("gac_coding.neuron",)),
    ("attention", ("gac_coding.attention",)),
    ("codings", ("gac_coding.coding",)),
    ("the former encoder module (deprecated names)", ("gac_coding.encoder",)),
    ("frameworks: adapters", ("gac_coding.adapters",)),
    ("measuring hooks", ("gac_coding._measure",)),
    ("models", ("gac_coding.models",)),
    ("energy", ("gac_coding.energy",)),
    ("analysis", ("gac_coding.analysis",)),
    ("export", ("gac_coding.export",)),
    ("training", ("gac_coding.train",)),
    ("the command line", ("gac_coding.cli",)),
    ("python -m gac_coding", ("gac_coding.__main__",)),
    ("the package root (re-exports)", ("gac_coding",)),
)  # fmt: skip

#: Modules that import by a computed name (``importlib.import_module(variable)``), and what they
#: reach that way. The names of sibling modules they hold as strings count as their imports.
DYNAMIC: dict[str, str] = {
    "gac_coding._lazy": "the names of a package's lazy table (counted as the package's imports)",
    "gac_coding._deprecated": "the new homes of deprecated names (gac_coding._deprecated.DEPRECATED)",
    "gac_coding.ops.backends": "its backend modules (_eager, _cpp, _triton), named by the registry",
    "gac_coding.ops._lean_common": "the lean ops' backend modules (_lean_eager, _lean_cpp, _lean_triton)",
    "gac_coding.adapters.base": "the third-party frameworks (snntorch, norse, spikingjelly)",
}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package that relative imports of this module start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def find_modules(src: Path = SRC) -> dict[str, Module]:
    """Every module of the package under ``src``, by dotted name."""
    modules = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _resolve_relative(module: Module, level: int, name: str | None) -> str:
    base = module.package.split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _known(name: str, modules: dict[str, Module]) -> str | None:
    """The module ``name`` is or lies in (``gac_coding.x.func`` -> ``gac_coding.x``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _string_target(module: Module, text: str, modules: dict[str, Module]) -> str | None:
    if text.startswith(f"{PACKAGE}.") and text in modules:
        return text
    if text.startswith(".") and text.strip("."):
        level = len(text) - len(text.lstrip("."))
        target = _resolve_relative(module, level, text.lstrip("."))
        return target if target in modules else None
    if module.name in DYNAMIC and text.isidentifier():
        sibling = f"{module.package}.{text}"
        return sibling if sibling in modules else None
    return None


def imports_of(module: Module, modules: dict[str, Module]) -> set[str]:
    """The modules of the package that ``module`` imports, statements and strings."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, node.level, node.module) if node.level else (node.module or "")
            targets = [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            target = _string_target(module, node.value, modules)
            targets = [target] if target else []
        for target in targets:
            known = _known(target, modules)
            if known is not None and known != module.name:
                found.add(known)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """``{module: the modules it imports}`` for every module of the package."""
    modules = find_modules(src)
    return {name: imports_of(module, modules) for name, module in modules.items()}


def layer_of(module: str) -> tuple[int, str] | None:
    """``(row of LAYERS, the entry it falls under)``, or ``None`` for a module the table misses."""
    best: tuple[int, str] | None = None
    for row, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            inside = module == entry or (entry != PACKAGE and module.startswith(entry + "."))
            if inside and (best is None or len(entry) > len(best[1])):
                best = (row, entry)
    return best


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Modules the table misses, and imports that point up or sideways out of their entry."""
    problems = [f"{m}: not in LAYERS (add it to a row)" for m in sorted(graph) if layer_of(m) is None]
    for source in sorted(graph):
        mine = layer_of(source)
        for target in sorted(graph[source]):
            theirs = layer_of(target)
            if mine is None or theirs is None:
                continue
            if theirs[0] < mine[0] or theirs[1] == mine[1]:
                continue
            where = "up" if theirs[0] > mine[0] else "sideways"
            problems.append(
                f"{source} imports {target}: {where}, from '{LAYERS[mine[0]][0]}' to '{LAYERS[theirs[0]][0]}'"
            )
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _group(module: str) -> str:
    """The table entry a module falls under (its package, for the package-level diagrams)."""
    layer = layer_of(module)
    return layer[1] if layer else module


def _package_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    edges = {(_group(a), _group(b)) for a, targets in graph.items() for b in targets}
    return sorted((a, b) for a, b in edges if a != b)


def _short(name: str) -> str:
    return name.removeprefix(f"{PACKAGE}.") if name != PACKAGE else PACKAGE


def as_text(graph: dict[str, set[str]]) -> Iterable[str]:
    yield "layers, bottom first:"
    for row, (label, entries) in enumerate(LAYERS):
        yield f"  {row:2d}  {label}: {', '.join(_short(e) for e in entries)}"
    yield ""
    for source in sorted(graph, key=lambda m: (layer_of(m) or (99, ""))[0]):
        targets = ", ".join(_short(t) for t in sorted(graph[source])) or "-"
        yield f"{_short(source)} -> {targets}"


def as_mermaid(graph: dict[str, set[str]]) -> Iterable[str]:
    yield "graph BT"
    for a, b in _package_edges(graph):
        yield f"  {_short(a).replace('.', '_')}[{_short(a)}] --> {_short(b).replace('.', '_')}[{_short(b)}]"


def as_dot(graph: dict[str, set[str]]) -> Iterable[str]:
    yield "digraph gac_coding {"
    yield "  rankdir=BT; node [shape=box, fontname=Helvetica];"
    for a, b in _package_edges(graph):
        yield f'  "{_short(a)}" -> "{_short(b)}";'
    yield "}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--mermaid", action="store_true", help="the package graph as a mermaid diagram")
    form.add_argument("--dot", action="store_true", help="the package graph as Graphviz DOT")
    parser.add_argument("--check", action="store_true", help="exit 1 on a layer violation or a cycle")
    args = parser.parse_args(argv)
    graph = import_graph()
    lines = as_mermaid(graph) if args.mermaid else as_dot(graph) if args.dot else as_text(graph)
    print("\n".join(lines))
    problems = layer_violations(graph) + [" -> ".join(c) + " (a cycle)" for c in cycles(graph)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
