"""Names of a package loaded from their submodule on first use (PEP 562), in one place.

A package that should import quickly (``gac_coding.train`` for ``gac-coding --help`` without the
train extra, ``gac_coding.export`` without nir) declares a table, public name -> the module that
defines it, and takes its ``__getattr__`` and ``__dir__`` from :func:`lazy_attributes`::

    _SOURCES = {"fit": ".engine", "TrainConfig": ".engine"}
    __getattr__, __dir__ = lazy_attributes(__name__, _SOURCES)

Module names starting with a dot are relative to the package. A name is imported once, then kept
in the package's namespace. A name the table does not hold is looked up among the package's moved
names (:func:`gac_coding._deprecated.moved_attribute`: the new object with a warning), else it is
an ``AttributeError``. ``tests/test_architecture.py`` reads these tables as imports of the
package (they count for the layers and for cycles).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ._deprecated import moved_attribute

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, sources: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` of module ``package`` whose names ``sources`` says where to find.

    Args:
        package: the module's ``__name__``.
        sources: public name -> the module that defines it (``".engine"``: relative to
            ``package``; ``"gac_coding.x"``: absolute).

    Example:
        >>> getattr_, dir_ = lazy_attributes("gac_coding", {"wrap": ".adapters"})
        >>> getattr_("wrap").__name__, "wrap" in dir_()
        ('wrap', True)
    """
    table = dict(sources)

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:  # a name that moved (with a warning), else AttributeError
            return moved_attribute(package, name, stacklevel=2)
        value = getattr(importlib.import_module(source, package), name)
        module = sys.modules.get(package)
        if module is not None:
            setattr(module, name, value)  # found directly from now on
        return value

    def __dir__() -> list[str]:
        module = sys.modules.get(package)
        return sorted(set(vars(module) if module is not None else ()) | set(table))

    return __getattr__, __dir__
