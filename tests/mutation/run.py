"""Mutation testing of one area (``tests/mutation/areas.py``) with mutmut 3, and its score.

Usage (from the repository root; ``make mutation AREA=energy`` runs the first line)::

    python tests/mutation/run.py energy              # mutate, test, print the score and survivors
    python tests/mutation/run.py export              # a group: each of its areas in turn
    python tests/mutation/run.py all                 # every area (hours; the full score)
    python tests/mutation/run.py energy --report     # print the score of the last run again
    python tests/mutation/run.py --list              # the areas, their sources and tests
    python tests/mutation/run.py all --check         # the areas' tests pass on the mutated copy

The run happens in ``build/mutation/<area>/`` (git-ignored): a copy of ``src/`` and ``tests/`` and
a ``pyproject.toml`` written here that tells mutmut which files to mutate and which tests to run;
the working tree is never modified. mutmut copies that into ``mutants/``, rewrites every function
of the area's sources into the original plus one copy per mutation behind a switch, runs the
area's tests once to learn which tests call which function, and then, per mutant, runs only the
tests that reach the mutated function (fastest first, stopping at the first failure) in a process
forked from a server that has imported the tests but run none (so no test-level cache carries a
result computed without the mutant). ``OMP_NUM_THREADS=1`` per worker, ``--jobs`` workers
(default 2).

Verdicts: *killed* (a test failed), *survived* (every test passed: a gap, or an equivalent mutant
that changes no output), *timeout* (ran ``--timeout-factor`` times longer than the tests it ran
took on the unmutated code, plus 10 s: counted as killed, the tests noticed), *no tests* (no test
of the area reaches the function: a gap). The score is ``(killed + timeout) / mutants``.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from areas import AREAS, GROUPS, Area  # noqa: E402

MUTMUT_REQUIREMENT = "mutmut>=3.8,<3.9"  # reads mutmut's result files (stable within 3.8)
_SEP = "\u01c1"  # mutmut's separator in the names of methods' mutants: xǁClassǁmethod
_ALSO_COPY = ("benchmarks",)  # folders besides src/ and tests/ that tests read (by path)


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def _sources(area: Area) -> list[str]:
    """The area's source files (patterns expanded), relative to the root."""
    found: list[str] = []
    for pattern in area.sources:
        matches = sorted(
            str(p.relative_to(ROOT)) for p in ROOT.glob(pattern) if p.is_file() and p.suffix == ".py"
        )
        if not matches:
            raise SystemExit(f"mutation: the area's source pattern {pattern!r} matches no file")
        found += [m for m in matches if m not in found]
    return found


def _module(path: str) -> str:
    """``src/gac_coding/export/nir/graph.py`` -> ``gac_coding.export.nir.graph`` (mutmut's names)."""
    parts = Path(path).with_suffix("").parts[1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def mutant_patterns(area: Area) -> list[str]:
    """mutmut's names of the area's mutants as ``fnmatch`` patterns (empty: all of its sources)."""
    patterns = []
    for path in _sources(area) if area.functions else []:
        for fn in area.functions:
            cls, dot, name = fn.rpartition(".")
            mangled = f"x{_SEP}{cls}{_SEP}{name}" if dot else f"x_{name}"
            patterns.append(f"{_module(path)}.{mangled}__mutmut_*")
    return patterns


def _filterwarnings() -> list[str]:
    """The repository's pytest ``filterwarnings`` (its ``addopts`` are left out)."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data.get("tool", {}).get("pytest", {}).get("ini_options", {}).get("filterwarnings", []))


def _write_config(work: Path, area: Area, timeout_factor: float) -> None:
    deselect: list[str] = []
    for node in area.skip_tests:
        deselect += ["--deselect", node]
    # no:unraisableexception: its gc.collect() calls at the end of every run cost seconds in a
    # process that holds torch and the frameworks (most of the time of a mutant killed quickly)
    plugins = ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "mutation_order"]
    text = f"""# written by tests/mutation/run.py for this run; edit tests/mutation/areas.py instead
[tool.mutmut]
source_paths = ["src"]
also_copy = {_toml_list(list(_ALSO_COPY))}
only_mutate = {_toml_list(_sources(area))}
do_not_mutate_patterns = {_toml_list(list(area.skip_lines))}
pytest_add_cli_args_test_selection = {_toml_list(list(area.tests))}
pytest_add_cli_args = {_toml_list([*plugins, *deselect])}
process_isolation = "forkserver"
forkserver_warmup = "collect"
timeout_multiplier = {float(timeout_factor)}
timeout_constant = 10.0
use_git_change_detection = false
use_setproctitle = false

[tool.pytest.ini_options]
testpaths = ["tests"]
filterwarnings = {_toml_list(_filterwarnings())}
"""
    (work / "pyproject.toml").write_text(text)


def _prepare(work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    shutil.copytree(ROOT / "src", work / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    for extra in _ALSO_COPY:  # scripts some tests run
        if (ROOT / extra).is_dir():
            shutil.copytree(ROOT / extra, work / extra, ignore=ignore)
    # made now, so that the PYTHONPATH entry below exists when Python starts (a missing folder on
    # sys.path is remembered as empty and would let tests import the unmutated package)
    (work / "mutants" / "src").mkdir(parents=True)


def _run_mutmut(work: Path, area: Area, jobs: int, log: Path) -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        raise SystemExit(
            f"mutation: mutmut is not installed next to {sys.executable}: "
            f'pip install "{MUTMUT_REQUIREMENT}" (or pip install -e ".[mutation]")'
        )
    env = dict(os.environ)
    # tests that start Python processes import the mutated copy too (mutmut puts it first on
    # sys.path in its own processes only); the ordering plugin comes from tests/mutation
    env["PYTHONPATH"] = os.pathsep.join([str(work / "mutants" / "src"), str(HERE)])
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("MUTANT_UNDER_TEST", None)
    cmd = [str(mutmut), "run", "--max-children", str(jobs), *mutant_patterns(area)]
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return proc.returncode


# ------------------------------------------------------------------------------------------------
# The report: mutmut's result files, and where each surviving mutation is in the source
# ------------------------------------------------------------------------------------------------

_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
           36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
           None: "not checked"}  # fmt: skip
_COUNTED = ("killed", "timeout", "survived", "no tests", "suspicious", "skipped", "not checked")


def _status(code: int | None) -> str:
    return _STATUS.get(code, "suspicious")


def _function_node(module: Any, key: str) -> Any:
    """The original function of mutant ``key`` in the parsed source ``module`` (class-aware)."""
    import libcst as cst

    mangled = key.rpartition(".")[2].partition("__mutmut_")[0]
    if mangled.startswith("x" + _SEP):
        _, cls_name, name = mangled.split(_SEP)
        for node in module.body:
            if isinstance(node, cst.ClassDef) and node.name.value == cls_name:
                for item in node.body.body:
                    if isinstance(item, cst.FunctionDef) and item.name.value == name:
                        return item
        return None
    name = mangled[2:]
    for node in module.body:
        if isinstance(node, cst.FunctionDef) and node.name.value == name:
            return node
    return None


def _where(work: Path, path: str, key: str, parsed: dict[str, Any]) -> list[str]:
    """``path:line: - old / + new`` lines of mutant ``key`` in the original source."""
    import libcst as cst
    from mutmut.mutation.diff_apply import read_functions_from_index

    cwd = os.getcwd()
    os.chdir(work)
    try:
        if path not in parsed:
            text = Path(path).read_text()
            parsed[path] = (text, cst.parse_module(text))
        text, module = parsed[path]
        original = _function_node(module, key)
        pair = read_functions_from_index(key, path)
        if original is None or pair is None:
            return [f"{path}: {key} (its function was not found; `mutmut show {key}` in {work})"]
        mutant = pair[1]
        changed = original.with_changes(body=mutant.body, params=mutant.params)
        new_text = module.deep_replace(original, changed).code  # type: ignore[attr-defined]
    finally:
        os.chdir(cwd)
    out: list[str] = []
    old_lines, new_lines = text.splitlines(), new_text.splitlines()
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for k in range(i1, i2):
            out.append(f"{path}:{k + 1}: - {old_lines[k].strip()}")
        for k in range(j1, j2):
            out.append(f"{path}:{i1 + 1}: + {new_lines[k].strip()}")
    return out or [f"{path}: {key} (no textual change found)"]


def _mutant_order(key: str) -> tuple[str, int]:
    name, _, number = key.rpartition("__mutmut_")
    return (name, int(number) if number.isdigit() else 0)


def report(area_name: str, work: Path, minutes: float | None = None) -> dict[str, Any]:
    """Print the area's counts, score and the mutants not killed; write ``summary.json``."""
    area = AREAS[area_name]
    patterns = mutant_patterns(area)
    counts = dict.fromkeys(_COUNTED, 0)
    unkilled: list[tuple[str, str, str]] = []
    for path in _sources(area):
        meta = work / "mutants" / (path + ".meta")
        if not meta.exists():
            raise SystemExit(f"mutation: no results for {path} in {work} (run the area first)")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for key, code in sorted(codes.items(), key=lambda kv: _mutant_order(kv[0])):
            if patterns and not any(fnmatch.fnmatchcase(key, p) for p in patterns):
                continue  # another area's function of a shared module
            status = _status(code)
            counts[status] += 1
            if status not in ("killed", "timeout"):
                unkilled.append((status, path, key))
    total = sum(counts.values())
    score = (counts["killed"] + counts["timeout"]) / total if total else 0.0
    print(f"\nmutation area {area_name!r}: {total} mutants made")
    print(
        f"  killed {counts['killed']}, timed out {counts['timeout']} (counted as killed), "
        f"survived {counts['survived']}, no tests {counts['no tests']}, "
        f"suspicious {counts['suspicious']}, not checked {counts['not checked']}"
    )
    print(f"  score {score:.1%} ((killed + timed out) / made)")
    if area.skip_tests:
        print("  tests left out: " + ", ".join(sorted(area.skip_tests)))
    if area.skip_lines:
        print("  lines not mutated: " + "; ".join(area.skip_lines.values()))
    listed = [u for u in unkilled if u[0] != "not checked"]  # an interrupted run leaves those
    if listed:
        print("\nnot killed (triage: add a test, or say why the mutant changes no output):")
        parsed: dict[str, Any] = {}
        for status, path, key in listed:
            print(f"[{status}] {key}")
            for line in _where(work, path, key, parsed):
                print(f"    {line}")
    summary: dict[str, Any] = {"area": area_name, "made": total, **counts, "score": round(score, 4)}
    if minutes is None and (work / "summary.json").exists():
        minutes = json.loads((work / "summary.json").read_text()).get("minutes")
    if minutes is not None:
        summary["minutes"] = round(minutes, 1)
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# ------------------------------------------------------------------------------------------------


def run_area(name: str, work: Path, jobs: int, timeout_factor: float) -> dict[str, Any] | None:
    area = AREAS[name]
    _prepare(work)
    _write_config(work, area, timeout_factor)
    log = work / "mutmut.log"
    what = ", ".join(_sources(area)) + (f" (functions {', '.join(area.functions)})" if area.functions else "")
    print(f"mutation area {name!r}: mutating {what} in {work}")
    print(f"  tests: {', '.join(area.tests)}; mutmut's output goes to {log}", flush=True)
    start = time.monotonic()
    rc = _run_mutmut(work, area, jobs, log)
    minutes = (time.monotonic() - start) / 60
    if rc != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
        print("\n".join(tail))
        print(f"mutation: mutmut stopped with exit code {rc} after {minutes:.1f} min (log: {log})")
        print(
            "  a test that fails on the unmutated copy stops mutmut before any mutant; to see it: "
            f"cd {work / 'mutants'} && MUTANT_UNDER_TEST= PYTHONPATH=src:{HERE} "
            f"{sys.executable} -m pytest -p mutation_order {' '.join(area.tests)}"
        )
        return None
    summary = report(name, work, minutes)
    print(f"\n{name}: {minutes:.1f} min with {jobs} jobs", flush=True)
    return summary


def check(names: list[str], work: Path) -> int:
    """Run the areas' tests once on the mutated copy with no mutant active (mutmut's first step,
    which stops a run when a test fails there); print the tests that fail. One run for all the
    areas named (each test file once)."""
    from mutmut.configuration import reset_config
    from mutmut.mutation.file_mutation import mutate_file_contents

    areas = [AREAS[n] for n in names]
    merged = Area(
        sources=tuple(dict.fromkeys(s for a in areas for s in _sources(a))),
        tests=tuple(dict.fromkeys(t for a in areas for t in a.tests)),
        skip_tests={k: v for a in areas for k, v in a.skip_tests.items()},
        skip_lines={k: v for a in areas for k, v in a.skip_lines.items()},
    )
    _prepare(work)
    _write_config(work, merged, 6.0)
    shutil.copytree(work / "src", work / "mutants" / "src", dirs_exist_ok=True)
    cwd = os.getcwd()
    os.chdir(work)  # mutmut reads its settings from ./pyproject.toml
    try:
        reset_config()
        for path in merged.sources:
            code = mutate_file_contents(path, Path(path).read_text()).code
            (work / "mutants" / path).write_text(code)
    finally:
        os.chdir(cwd)
    for extra in ("tests", *_ALSO_COPY):
        if (work / extra).is_dir():
            shutil.copytree(work / extra, work / "mutants" / extra)
    shutil.copy(work / "pyproject.toml", work / "mutants" / "pyproject.toml")
    # "stats": the trampolines record each call as in mutmut's first step (which fails where a test
    # runs them under torch.compile: dynamo cannot trace their context variable), no mutant active
    env = dict(os.environ, MUTANT_UNDER_TEST="stats", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(work / "mutants" / "src"), str(HERE)])
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
           "-p", "mutation_order", "-rf", *[a for n in merged.skip_tests for a in ("--deselect", n)],
           *merged.tests]  # fmt: skip
    print(f"checking {', '.join(names)}: {len(merged.tests)} test files on the mutated copy in {work}")
    proc = subprocess.run(cmd, cwd=work / "mutants", env=env, capture_output=True, text=True)
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    print(proc.stdout.splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:])
    for line in failed:
        print(f"  {line}")
    if proc.returncode != 0:
        print("these tests fail under mutmut's trampolines with no mutant active: fix them, or leave "
              "them out of the area (skip_tests in tests/mutation/areas.py) with the reason")  # fmt: skip
    return 0 if proc.returncode == 0 else 1


def main(argv: list[str] | None = None) -> int:
    names = sorted(AREAS) + sorted(set(GROUPS) - set(AREAS)) + ["all"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("area", nargs="?", choices=names, help="an area, a group of areas, or all")
    parser.add_argument("--list", action="store_true", help="list the areas and exit")
    parser.add_argument("--report", action="store_true", help="print the last run's score again")
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the areas' tests once on the mutated copy, no mutant active, and list the tests "
        "that fail there (they would stop a mutation run); one run for a group or all",
    )
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument(
        "--timeout-factor",
        type=float,
        default=6.0,
        help="a mutant whose tests run this many times longer than on the unmutated code "
        "(plus 10 s) is stopped and counted as timed out (default 6)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default build/mutation (one folder per area)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for group, members in GROUPS.items():
            print(f"group {group}: {', '.join(members)}")
        for name, area in AREAS.items():
            print(f"{name}:\n  sources: {', '.join(_sources(area))}")
            if area.functions:
                print(f"  functions: {', '.join(area.functions)}")
            print(f"  tests:   {', '.join(area.tests)}")
            for node, why in area.skip_tests.items():
                print(f"  left out: {node} ({why})")
            for pattern, why in area.skip_lines.items():
                print(f"  not mutated: lines matching {pattern!r} ({why})")
        return 0
    if args.area is None:
        parser.error("give an area, a group or all (or --list)")
    if args.jobs < 1:
        parser.error("--jobs: expected an integer >= 1")
    if args.area == "all":
        todo = list(AREAS)
    elif args.area in AREAS:
        todo = [args.area]
    else:
        todo = list(GROUPS[args.area])
    base = (args.workdir or ROOT / "build" / "mutation").resolve()
    if args.check:
        return check(todo, base / f"check-{args.area}")
    results = []
    for name in todo:
        work = base / name
        summary = report(name, work) if args.report else run_area(name, work, args.jobs, args.timeout_factor)
        if summary is None:
            return 1
        results.append(summary)
    if len(results) > 1:
        print("\n| area | made | killed | timed out | survived | no tests | score | minutes |")
        print("|---|---|---|---|---|---|---|---|")
        for s in results:
            print(
                f"| {s['area']} | {s['made']} | {s['killed']} | {s['timeout']} | {s['survived']} | "
                f"{s['no tests']} | {s['score']:.1%} | {s.get('minutes', '')} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
