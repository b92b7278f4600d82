"""What the ops-cpp area's mutation run found unpinned in ``gac_coding.ops._cpp``.

The kernels' numbers are judged by the backend tests (float64 against the slow loops). This file
pins the module around them: the build's arguments (the flags carry the arithmetic contract:
``-ffp-contract=off`` keeps ``a * b + c`` two roundings, as in the eager backend), the cache key,
where a build is looked for, one build however many threads ask at once, the availability rules
and the one-line summary of a compiler's output. Stand-ins replace the compiler and the file
system where the real ones would take half a minute or could not fail.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import time
import types
from pathlib import Path

import pytest
import torch

from gac_coding.ops import _cpp

F64 = torch.float64


# ------------------------------------------------------------------------------- the build call


def test_compile_passes_the_source_the_flags_and_the_name_and_stays_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, object]] = []
    fake = types.SimpleNamespace(load=lambda **kw: calls.append(kw) or "module")
    monkeypatch.setattr(_cpp, "_cpp_extension", lambda: fake)
    assert _cpp._EXTENSION.compile() == "module"
    (kw,) = calls
    assert kw["name"] == _cpp._EXTENSION.name()
    assert kw["sources"] == [str(_cpp.SOURCE)]
    # the flags are part of the kernels' contract (see the module and csrc/lif.cpp)
    assert kw["extra_cflags"] == ["-O3", "-ffp-contract=off", "-fopenmp"]
    assert not kw.get("verbose", False)  # torch's default is quiet too


def test_the_name_follows_the_source_and_the_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = _cpp._EXTENSION.name()
    assert name.startswith("gac_coding_lif_") and name.isidentifier()
    assert _cpp._EXTENSION.name() == name  # deterministic
    edited = tmp_path / "lif.cpp"
    edited.write_bytes(_cpp.SOURCE.read_bytes() + b"\n// edited\n")
    monkeypatch.setattr(_cpp._EXTENSION, "source", edited)
    moved = _cpp._EXTENSION.name()
    assert moved != name  # an edit (or another location) never loads a stale build
    monkeypatch.setattr(_cpp, "_FLAGS", ["-O0"])
    assert _cpp._EXTENSION.name() not in (name, moved)


def test_the_build_directory_is_the_one_the_loaded_module_came_from(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if not _cpp.toolchain_available():
        assert _cpp.available()[0] is _cpp.is_built()
        return
    module = _cpp.load()
    assert module is not None, _cpp.build_error()
    with caplog.at_level(logging.DEBUG, logger="torch.utils.cpp_extension"):
        directory = _cpp._EXTENSION.build_dir()
    assert Path(module.__file__).parent == Path(directory)
    assert not [r for r in caplog.records if r.name.startswith("torch.utils.cpp_extension")]
    # not loaded in this process, but the cache holds the build
    monkeypatch.setattr(_cpp._EXTENSION, "module", None)
    assert _cpp.is_built()


def test_is_built_looks_for_the_named_library_in_the_build_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_cpp._EXTENSION, "module", None)
    monkeypatch.setattr(_cpp._EXTENSION, "build_dir", lambda: str(tmp_path))
    assert _cpp.is_built() is False
    (tmp_path / "other.so").write_bytes(b"")
    assert _cpp.is_built() is False
    (tmp_path / f"{_cpp._EXTENSION.name()}.so").write_bytes(b"")
    assert _cpp.is_built() is True

    def no_directory() -> str:
        raise OSError("no cache directory")

    monkeypatch.setattr(_cpp._EXTENSION, "build_dir", no_directory)
    assert _cpp.is_built() is False
    monkeypatch.setattr(_cpp._EXTENSION, "module", types.ModuleType("loaded"))
    assert _cpp.is_built() is True  # loaded in this process: no need to look


def test_cpp_extension_import_hides_its_warnings_and_restores_the_level(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The extension module logs "No CUDA runtime is found" when imported on a machine with a
    CUDA folder and no GPU: irrelevant to C++ kernels. A stand-in module logs the same way."""
    seen: list[int] = []
    name = "torch.utils.cpp_extension"

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):  # type: ignore[no-untyped-def]
            return None

        def exec_module(self, module: types.ModuleType) -> None:
            logger = logging.getLogger(name)
            seen.append(logger.getEffectiveLevel())
            logger.warning("No CUDA runtime is found (stand-in)")
            module.marker = "stand-in"  # type: ignore[attr-defined]

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
            if fullname == name:
                return importlib.machinery.ModuleSpec(fullname, Loader())
            return None

    monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(torch.utils, "cpp_extension")
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.INFO)  # a user who asked for torch's info lines
    try:
        with caplog.at_level(logging.DEBUG):
            module = _cpp._cpp_extension()
        assert logger.level == logging.INFO  # put back
    finally:
        logger.setLevel(before)
    assert module.marker == "stand-in"
    assert seen == [logging.ERROR]
    assert not [r for r in caplog.records if "No CUDA runtime" in r.getMessage()]


# --------------------------------------------------------------------------------- load, once


def test_threads_that_ask_at_once_build_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cpp._EXTENSION, "module", None)
    monkeypatch.setattr(_cpp._EXTENSION, "error", None)
    builds: list[int] = []
    building = threading.Event()
    built = types.ModuleType("built")

    def slow_compile() -> types.ModuleType:
        builds.append(1)
        building.set()
        time.sleep(1.0)  # the second thread passes the unlocked check meanwhile
        return built

    monkeypatch.setattr(_cpp._EXTENSION, "compile", slow_compile)
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(_cpp.load()))
    first.start()
    assert building.wait(10)
    second = threading.Thread(target=lambda: results.append(_cpp.load()))
    second.start()
    first.join(30)
    second.join(30)
    assert builds == [1]
    assert results == [built, built]


def test_a_failed_build_is_kept_and_named_by_every_kernel_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cpp._EXTENSION, "module", None)
    monkeypatch.setattr(_cpp._EXTENSION, "error", None)
    builds: list[int] = []

    def broken() -> None:
        builds.append(1)
        raise RuntimeError("Error building extension 'x'\nc++: error: no such flag")

    monkeypatch.setattr(_cpp._EXTENSION, "compile", broken)
    assert _cpp.load() is None and _cpp.load() is None
    assert builds == [1]
    assert _cpp.build_error() == "RuntimeError: Error building extension 'x' ... c++: error: no such flag"
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(RuntimeError, match=r"^the C\+\+ kernels could not be built \(RuntimeError: Error"):
        _cpp.lif_forward(x, 2, 0.5, 1.0, False)
    assert _cpp.available() == (False, _cpp.build_error())


# ------------------------------------------------------------------------------- availability


@pytest.mark.parametrize(
    ("built", "toolchain", "expected"),
    [
        (True, True, True),
        (True, False, True),  # a cached build needs no compiler
        (False, True, True),  # a compiler builds it on first use
        (False, False, False),
    ],
)
def test_available_needs_a_build_or_a_toolchain(
    monkeypatch: pytest.MonkeyPatch, built: bool, toolchain: bool, expected: bool
) -> None:
    monkeypatch.setattr(_cpp._EXTENSION, "error", None)
    monkeypatch.setattr(_cpp._EXTENSION, "is_built", lambda: built)
    monkeypatch.setattr(_cpp, "toolchain_available", lambda: toolchain)
    usable, reason = _cpp.available()
    assert usable is expected
    if expected:
        assert reason == ""
    else:
        assert reason == "no C++ compiler or ninja found to build the kernels"


def test_toolchain_asks_for_the_compiler_named_by_cxx_and_for_ninja(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    found: dict[str, str | None] = {}
    monkeypatch.setattr(_cpp.shutil, "which", lambda name: asked.append(name) or found.get(name))
    ninja = [True]
    fake = types.SimpleNamespace(is_ninja_available=lambda: ninja[0])
    monkeypatch.setattr(_cpp, "_cpp_extension", lambda: fake)

    monkeypatch.delenv("CXX", raising=False)
    assert _cpp.toolchain_available() is False and asked == ["c++"]
    found["c++"] = "/usr/bin/c++"
    assert _cpp.toolchain_available() is True
    ninja[0] = False
    assert _cpp.toolchain_available() is False
    ninja[0] = True
    asked.clear()
    monkeypatch.setenv("CXX", "my-compiler")
    assert _cpp.toolchain_available() is False and asked == ["my-compiler"]
    found["my-compiler"] = "/opt/bin/my-compiler"
    assert _cpp.toolchain_available() is True


# ------------------------------------------------------------------------- the build's summary


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("", "RuntimeError: "),
        ("one line only", "RuntimeError: one line only"),
        ("first\n\n  second  ", "RuntimeError: first ... second"),  # no cause: the last line
        ("first\nmiddle\nlast", "RuntimeError: first ... last"),
        ("first\nc++: ERROR: bad\nlast", "RuntimeError: first ... c++: ERROR: bad"),
        ("first\nninja: Not Found\nlast", "RuntimeError: first ... ninja: Not Found"),
        ("first\nerror one\nerror two\nlast", "RuntimeError: first ... error one"),
        ("error in the first line\nlast", "RuntimeError: error in the first line ... last"),
    ],
)
def test_summary_keeps_the_first_line_and_the_first_cause(message: str, expected: str) -> None:
    assert _cpp._summary(RuntimeError(message)) == expected


def test_summary_shortens_long_lines_and_names_the_exception_type() -> None:
    head, cause = "h" * 250, "error: " + "c" * 400
    text = _cpp._summary(OSError(f"{head}\n{cause}"))
    assert text == f"OSError: {'h' * 200} ... {cause[:300]}"


# ------------------------------------------------------------------- one extension, from new


def test_a_new_extension_starts_unbuilt_and_builds_once_on_first_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What both extensions are made of (the modules build theirs at import): an ``Extension``
    starts with nothing loaded and no failure, keeps its prefix, source and name for the kernels,
    builds on the first ``load`` only and names itself in the error after a failed build."""
    source = tmp_path / "kernels.cpp"
    source.write_text("// kernels\n")
    ext = _cpp.Extension("gac_coding_test", source, "the test kernels")
    assert (ext.prefix, ext.source, ext.what) == ("gac_coding_test", source, "the test kernels")
    assert ext.module is None and ext.error is None
    assert ext.name().startswith("gac_coding_test_") and ext.name() != _cpp._EXTENSION.name()
    monkeypatch.setattr(ext, "build_dir", lambda: str(tmp_path))
    assert ext.is_built() is False
    monkeypatch.setattr(_cpp, "toolchain_available", lambda: False)
    assert ext.available() == (False, "no C++ compiler or ninja found to build the kernels")
    built = types.ModuleType("built")
    builds: list[int] = []
    monkeypatch.setattr(ext, "compile", lambda: builds.append(1) or built)
    assert ext.load() is built and ext.load() is built and ext.kernels() is built
    assert builds == [1] and ext.is_built() is True and ext.available() == (True, "")

    broken = _cpp.Extension("gac_coding_test", source, "the test kernels")

    def fail() -> types.ModuleType:
        raise OSError("no space left")

    monkeypatch.setattr(broken, "compile", fail)
    assert broken.load() is None and broken.error == "OSError: no space left"
    with pytest.raises(RuntimeError) as info:
        broken.kernels()
    assert str(info.value) == "the test kernels could not be built (OSError: no space left)"
