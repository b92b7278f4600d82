"""The runnable examples in the public docstrings run and print what they claim."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gac_coding

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(gac_coding.__path__, prefix="gac_coding.")
    if not info.name.endswith("__main__")
)


def test_there_are_modules_with_examples() -> None:
    total = 0
    for name in MODULES:
        tests = doctest.DocTestFinder().find(importlib.import_module(name))
        total += sum(1 for t in tests if t.examples)
    assert total >= 4


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}"
