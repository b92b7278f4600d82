"""Every deprecated name of gac-coding, in one table: the old name, its replacement, and the version
that removes it.

A deprecated name keeps working and says so once per call site (a ``DeprecationWarning`` from
:func:`warn_deprecated`; a command-line option prints one line instead). A module attribute that
moved elsewhere is served by :func:`deprecated_attribute` from the module's ``__getattr__``, so the
old module does not import the new home (which may sit in a layer above it).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = ["DEPRECATED", "deprecated_attribute", "deprecation_message", "warn_deprecated"]

#: old name -> (what to use instead, the gac-coding version that removes the old name). Python names
#: are written in full (``gac_coding.module.name``); command-line options as ``gac-coding --option``.
DEPRECATED: dict[str, tuple[str, str]] = {
    "gac_coding.energy.load_checkpoint": ("gac_coding.models.checkpoints.load_weights", "0.3.0"),
    "gac_coding.energy.configure_energy_parser": (
        "gac_coding.cli.energy.configure_energy_parser",
        "0.3.0",
    ),
    "gac_coding.energy.run_energy_command": ("gac_coding.cli.energy.run_energy_command", "0.3.0"),
    "gac-coding --no-gac": ("--coding direct", "0.3.0"),
}


def deprecation_message(old: str) -> str:
    """What a use of the deprecated ``old`` is told.

    Example:
        >>> deprecation_message("gac-coding --no-gac")
        'gac-coding --no-gac is deprecated and goes in gac-coding 0.3.0: use --coding direct'
    """
    new, removed_in = DEPRECATED[old]
    return f"{old} is deprecated and goes in gac-coding {removed_in}: use {new}"


def warn_deprecated(old: str, *, stacklevel: int = 2) -> None:
    """Warn (``DeprecationWarning``) that ``old``, a key of :data:`DEPRECATED`, is used.

    ``stacklevel`` counts from the caller of this function, as :func:`warnings.warn` does from its own.
    """
    warnings.warn(deprecation_message(old), DeprecationWarning, stacklevel=stacklevel + 1)


def deprecated_attribute(module: str, name: str) -> Any:
    """The new home of ``module.name`` when :data:`DEPRECATED` lists it (with a warning), for a
    module's ``__getattr__``; ``AttributeError`` for any other name."""
    old = f"{module}.{name}"
    if old not in DEPRECATED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warn_deprecated(old, stacklevel=3)  # the line that used the old name
    home, _, attribute = DEPRECATED[old][0].rpartition(".")
    return getattr(importlib.import_module(home), attribute)
