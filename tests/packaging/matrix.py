"""Packaging matrix: every documented install works from the BUILT wheel, not the source tree.

Run with the project's environment (``.venv/bin/python tests/packaging/matrix.py``; ``make
packaging``, called by ``.ci/run``). Steps:

1. ``python -m build`` makes the sdist and the wheel (no isolation: no network needed); the wheel
   built again from the unpacked sdist must hold the same files with the same bytes. The wheel
   holds exactly the package's files (Python modules, the C++ source, data), the sdist only the
   package, README, LICENSE and pyproject: no tests, notebooks or benchmarks.
2. A torch-only site folder: symbolic links to torch and the packages torch requires, taken from
   this environment (torch is large; installing it per case would cost minutes and gigabytes).
3. Per case (the bare install and each extra): a fresh virtualenv without pip and without system
   packages, the torch-only site added through a ``.pth`` file, then ``pip install
   "<wheel>[extra]"`` (this environment's pip, ``--python``), then its ``check_*.py`` script run by the
   case's interpreter from an empty folder, with the case's ``bin`` first on ``PATH``. Nothing of
   this environment leaks in: each case checks that the other extras' packages are absent.

``--cases bare,train`` runs some cases, ``--jobs N`` N cases at a time (default 2); ``--keep DIR``
keeps the work folder for inspection.
Exit status 0 when every step passed; each step prints its time.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

#: case name -> (the extras it installs, the script that checks it)
CASES: dict[str, tuple[list[str], str]] = {
    "bare": ([], "check_bare.py"),
    "snntorch": (["snntorch"], "check_framework.py"),
    "norse": (["norse"], "check_framework.py"),
    "spikingjelly": (["spikingjelly"], "check_framework.py"),
    "train": (["train"], "check_train.py"),
    "cpp": (["cpp"], "check_cpp.py"),
    "export": (["export"], "check_export.py"),
    "events": (["events"], "check_events.py"),
    "bench": (["bench"], "check_bench.py"),
}


def log(msg: str) -> None:
    print(f"[packaging] {msg}", flush=True)


def run(cmd: Sequence[str | os.PathLike[str]], **kw) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], text=True, capture_output=True, **kw)
    if result.returncode != 0:
        raise SystemExit(
            f"[packaging] FAILED ({result.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


# ---------------------------------------------------------------------------------- 1. build
def _members(archive: Path) -> dict[str, bytes]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    with tarfile.open(archive) as tf:
        return {m.name.split("/", 1)[1]: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def _digest(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def build(work: Path) -> Path:
    dist = work / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT])
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tf:
        tf.extractall(work / "sdist", filter="data")
    (unpacked,) = (work / "sdist").iterdir()
    run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", work / "dist2", unpacked])
    (again,) = (work / "dist2").glob("*.whl")
    if again.name != wheel.name or _digest(_members(again)) != _digest(_members(wheel)):
        raise SystemExit(f"[packaging] the wheel built from the sdist differs from {wheel.name}")

    in_wheel = {n for n in _members(wheel) if not n.split("/")[0].endswith(".dist-info")}
    tracked = run(["git", "ls-files", "-co", "--exclude-standard", "src/gac_coding"], cwd=ROOT).stdout.split()
    expected = {p.removeprefix("src/") for p in tracked if (ROOT / p).is_file()}
    if in_wheel != expected:
        raise SystemExit(
            f"[packaging] wheel files differ from src/gac_coding: missing "
            f"{sorted(expected - in_wheel)}, extra {sorted(in_wheel - expected)}"
        )
    if not any(n.endswith(".cpp") for n in in_wheel):
        raise SystemExit("[packaging] the wheel holds no C++ source")
    in_sdist = set(_members(sdist))
    stray = sorted(n for n in in_sdist if not (n.startswith("src/gac_coding/") or n in
                   {"README.md", "LICENSE", "pyproject.toml", "PKG-INFO", ".gitignore"}))  # fmt: skip
    if stray:
        raise SystemExit(f"[packaging] the sdist holds more than the package: {stray}")
    log(
        f"wheel {wheel.name}: {len(in_wheel)} package files; sdist {len(in_sdist)} files; "
        "the sdist builds the same wheel"
    )
    return wheel


# --------------------------------------------------------------------------- 2. torch alone
def _requirement_closure(name: str) -> list[md.Distribution]:
    seen: dict[str, md.Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in seen:
            continue
        dist = md.distribution(key)
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def torch_site(work: Path) -> Path:
    """A folder of links to torch and its requirements (nothing else of this environment)."""
    site = work / "torch-site"
    site.mkdir()
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    for dist in _requirement_closure("torch"):
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = purelib / top
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return site


# ------------------------------------------------------------------------------ 3. the cases
def make_case(work: Path, case: str, extras: Iterable[str], wheel: Path, site: Path) -> Path:
    venv = work / "venvs" / case
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    purelib = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(purelib, "torch_site.pth").write_text(f"{site}\n")
    target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
    run([sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-input",
         "--no-compile", "--disable-pip-version-check", target])  # fmt: skip
    return py


def check_case(work: Path, case: str, py: Path) -> str:
    folder = work / "run" / case
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # a private extension cache: the C++ kernel builds only where the case asks for it (cpp), and
    # this environment's cached build (made against another torch path) is neither used nor rebuilt
    env.update(PATH=f"{py.parent}{os.pathsep}{env.get('PATH', '')}", MPLBACKEND="Agg",
               OMP_NUM_THREADS="1", PACKAGING_CASE=case, PACKAGING_TORCH_SITE=str(work / "torch-site"),
               TORCH_EXTENSIONS_DIR=str(work / "torch_extensions"))  # fmt: skip
    result = run([py, HERE / CASES[case][1]], cwd=folder, env=env, timeout=900)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {list(CASES)}")
    parser.add_argument("--jobs", type=int, default=2, help="cases at a time (default 2, one per core)")
    parser.add_argument("--keep", default=None, help="work folder to keep (default: a temporary one)")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"--cases: unknown {unknown}; expected some of {list(CASES)}")
    work = Path(args.keep or tempfile.mkdtemp(prefix="gac-packaging-")).resolve()
    if args.keep:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        t = time.perf_counter()
        wheel = build(work)
        site = torch_site(work)
        log(f"build + torch-only site: {time.perf_counter() - t:.0f} s")

        def one(case: str) -> None:
            t = time.perf_counter()
            py = make_case(work, case, CASES[case][0], wheel, site)
            t_install = time.perf_counter() - t
            said = check_case(work, case, py)
            t_check = time.perf_counter() - t - t_install
            log(f"{case:<13} install {t_install:5.0f} s, check {t_check:5.0f} s: {said}")

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # pip and the checks are processes
            for future in [pool.submit(one, case) for case in cases]:
                future.result()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    log(f"all {len(cases)} case(s) passed in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
