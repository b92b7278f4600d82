"""Mutation testing of one area (``tests/mutation/areas.py``) with mutmut 3, and its score.

Usage (from the repository root; ``make mutation AREA=energy`` runs the first line)::

    python tests/mutation/run.py energy              # mutate, test, print the score and survivors
    python tests/mutation/run.py energy --report     # print the score of the last run again
    python tests/mutation/run.py --list              # the areas, their sources and tests

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
took on the unmutated code, plus a constant: counted as killed, the tests noticed), *no tests* (no
test of the area reaches the function: a gap). The score is ``(killed + timeout) / mutants``.
"""

from __future__ import annotations

import argparse
import difflib
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

from areas import AREAS, Area  # noqa: E402

MUTMUT_REQUIREMENT = "mutmut>=3.8,<3.9"  # reads mutmut's result files (stable within 3.8)


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


def _filterwarnings() -> list[str]:
    """The repository's pytest ``filterwarnings`` (its ``addopts`` are left out)."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data.get("tool", {}).get("pytest", {}).get("ini_options", {}).get("filterwarnings", []))


def _write_config(work: Path, area: Area, timeout_factor: float) -> None:
    sources = _sources(area)
    deselect: list[str] = []
    for node in area.skip_tests:
        deselect += ["--deselect", node]
    filterwarnings = _filterwarnings()
    # no:unraisableexception: its gc.collect() calls at the end of every run cost seconds in a
    # process that holds torch and the frameworks (most of the time of a mutant killed quickly)
    plugins = ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "mutation_order"]
    pytest_args = [*plugins, *deselect]
    text = f"""# written by tests/mutation/run.py for this run; edit tests/mutation/areas.py instead
[tool.mutmut]
source_paths = ["src"]
only_mutate = {_toml_list(sources)}
do_not_mutate_patterns = {_toml_list(list(area.skip_lines))}
pytest_add_cli_args_test_selection = {_toml_list(list(area.tests))}
pytest_add_cli_args = {_toml_list(pytest_args)}
process_isolation = "forkserver"
forkserver_warmup = "collect"
timeout_multiplier = {float(timeout_factor)}
timeout_constant = 10.0
use_git_change_detection = false
use_setproctitle = false

[tool.pytest.ini_options]
testpaths = ["tests"]
filterwarnings = {_toml_list(filterwarnings)}
"""
    (work / "pyproject.toml").write_text(text)


def _prepare(work: Path, area: Area) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    shutil.copytree(ROOT / "src", work / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    # made now, so that the PYTHONPATH entry below exists when Python starts (a missing folder on
    # sys.path is remembered as empty and would let tests import the unmutated package)
    (work / "mutants" / "src").mkdir(parents=True)


def _run_mutmut(work: Path, jobs: int, log: Path) -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        raise SystemExit(
            f'mutation: mutmut is not installed next to {sys.executable}: pip install "{MUTMUT_REQUIREMENT}"'
            f' (or pip install -e ".[mutation]")'
        )
    env = dict(os.environ)
    # tests that start Python processes import the mutated copy too (mutmut puts it first on
    # sys.path in its own processes only); the ordering plugin comes from tests/mutation
    env["PYTHONPATH"] = os.pathsep.join([str(work / "mutants" / "src"), str(HERE)])
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    env.pop("MUTANT_UNDER_TEST", None)
    with open(log, "w") as fh:
        proc = subprocess.run(
            [str(mutmut), "run", "--max-children", str(jobs)],
            cwd=work,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    return proc.returncode


# ------------------------------------------------------------------------------------------------
# The report: mutmut's result files, and where each surviving mutation is in the source
# ------------------------------------------------------------------------------------------------

_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
           36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
           None: "not checked"}  # fmt: skip


def _status(code: int | None) -> str:
    return _STATUS.get(code, "suspicious")


def _function_node(module: Any, key: str) -> Any:
    """The original function of mutant ``key`` in the parsed source ``module`` (class-aware)."""
    import libcst as cst

    mangled = key.rpartition(".")[2].partition("__mutmut_")[0]
    if mangled.startswith("x\u01c1"):  # a method: xǁClassǁname
        _, cls_name, name = mangled.split("\u01c1")
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


def report(area_name: str, work: Path) -> dict[str, Any]:
    area = AREAS[area_name]
    counts = {s: 0 for s in ("killed", "timeout", "survived", "no tests", "suspicious", "skipped",
                             "not checked")}  # fmt: skip
    unkilled: list[tuple[str, str, str]] = []
    for path in _sources(area):
        meta = work / "mutants" / (path + ".meta")
        if not meta.exists():
            raise SystemExit(f"mutation: no results for {path} in {work} (run the area first)")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for key, code in sorted(codes.items(), key=lambda kv: _mutant_order(kv[0])):
            status = _status(code)
            counts[status] += 1
            if status not in ("killed", "timeout"):
                unkilled.append((status, path, key))
    total = sum(counts.values())
    detected = counts["killed"] + counts["timeout"]
    score = detected / total if total else 0.0
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
    summary = {"area": area_name, "made": total, **counts, "score": round(score, 4)}
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _mutant_order(key: str) -> tuple[str, int]:
    name, _, number = key.rpartition("__mutmut_")
    return (name, int(number) if number.isdigit() else 0)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("area", nargs="?", choices=sorted(AREAS), help="the area to mutate")
    parser.add_argument("--list", action="store_true", help="list the areas and exit")
    parser.add_argument("--report", action="store_true", help="print the last run's score again")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument(
        "--timeout-factor",
        type=float,
        default=6.0,
        help="a mutant whose tests run this many times longer than on the unmutated code "
        "(plus 10 s) is stopped and counted as timed out (default 6)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default build/mutation/AREA")
    args = parser.parse_args(argv)
    if args.list:
        for name, area in AREAS.items():
            print(f"{name}:\n  sources: {', '.join(_sources(area))}\n  tests:   {', '.join(area.tests)}")
            for node, why in area.skip_tests.items():
                print(f"  left out: {node} ({why})")
            for pattern, why in area.skip_lines.items():
                print(f"  not mutated: lines matching {pattern!r} ({why})")
        return 0
    if args.area is None:
        parser.error("give an area (or --list)")
    if args.jobs < 1:
        parser.error("--jobs: expected an integer >= 1")
    work = (args.workdir or ROOT / "build" / "mutation" / args.area).resolve()
    if args.report:
        report(args.area, work)
        return 0
    area = AREAS[args.area]
    _prepare(work, area)
    _write_config(work, area, args.timeout_factor)
    log = work / "mutmut.log"
    print(f"mutation area {args.area!r}: mutating {', '.join(_sources(area))} in {work}")
    print(f"  tests: {', '.join(area.tests)}; mutmut's output goes to {log}")
    start = time.monotonic()
    rc = _run_mutmut(work, args.jobs, log)
    minutes = (time.monotonic() - start) / 60
    if rc != 0:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
        print("\n".join(tail))
        print(f"mutation: mutmut stopped with exit code {rc} after {minutes:.1f} min (log: {log})")
        return 1
    summary = report(args.area, work)
    summary["minutes"] = round(minutes, 1)
    (work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\n{args.area}: {minutes:.1f} min with {args.jobs} jobs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
