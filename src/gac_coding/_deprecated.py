"""The one list of deprecated names: what replaces each, and the version that removes it.

Every deprecated name, argument or value of the package is a row of :data:`DEPRECATED`, and warns
through :func:`deprecated` with one ``DeprecationWarning`` per use. A module whose names moved
sets ``__getattr__ = moved_names(__name__)``: its old names then resolve to the new objects (read
from the table, imported on first use) with the warning. Removing a deprecation means deleting its
row and the code that reads the old name.

Example:
    >>> import warnings
    >>> from gac_coding._deprecated import DEPRECATED, deprecated
    >>> DEPRECATED["model.gac"]
    Deprecated(new="model.coding == 'gac'", removed_in='0.3.0')
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     deprecated("model.gac")
    >>> print(caught[0].message)
    model.gac is deprecated and will be removed in gac-coding 0.3.0; use model.coding == 'gac'
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["DEPRECATED", "Deprecated", "deprecated", "moved_attribute", "moved_names"]


@dataclass(frozen=True)
class Deprecated:
    """One row of :data:`DEPRECATED`.

    Attributes:
        new: what to use instead: for a moved name the dotted path of the object that replaces it
            (what :func:`moved_names` imports), else words.
        removed_in: the version of gac-coding that removes the old name.
    """

    new: str
    removed_in: str = "0.3.0"


#: old name -> :class:`Deprecated`. A dotted ``module.name`` key is a name that moved (resolved by
#: :func:`moved_names`); other keys are arguments or values, warned about by the code that reads
#: them.
DEPRECATED: dict[str, Deprecated] = {
    # the encoder module became the package of every input coding
    "gac_coding.encoder.GACEncoder": Deprecated("gac_coding.coding.GACEncoder"),
    "gac_coding.encoder.StemEncoder": Deprecated("gac_coding.coding.StemEncoder"),
    "gac_coding.encoder.check_image_input": Deprecated("gac_coding.coding.check_image_input"),
    "gac_coding.models.DirectEncoder": Deprecated("gac_coding.coding.DirectEncoder"),
    "gac_coding.models.msresnet.DirectEncoder": Deprecated("gac_coding.coding.DirectEncoder"),
    # Poisson coding is a coding, not an augmentation
    "gac_coding.train.poisson_encode": Deprecated("gac_coding.coding.rate_encode"),
    "gac_coding.train.augment.poisson_encode": Deprecated("gac_coding.coding.rate_encode"),
    # energy measures; loading weights and the command line live elsewhere
    "gac_coding.energy.load_checkpoint": Deprecated("gac_coding.models.checkpoints.load_weights"),
    "gac_coding.energy.configure_energy_parser": Deprecated("gac_coding.cli.energy.configure_energy_parser"),
    "gac_coding.energy.run_energy_command": Deprecated("gac_coding.cli.energy.run_energy_command"),
    # one switch for the coding: coding=, not a GAC flag
    "create_model(gac=...)": Deprecated("create_model(coding='gac' | 'direct')"),
    "MSResNet(gac=...)": Deprecated("MSResNet(coding='gac' | 'direct')"),
    "SpikingVGG(gac=...)": Deprecated("SpikingVGG(coding='gac' | 'direct')"),
    "model builder (gac=...)": Deprecated("the builder's coding='gac' | 'direct'"),
    "model.gac": Deprecated("model.coding == 'gac'"),
    "TrainConfig(gac=...)": Deprecated("TrainConfig(coding='gac' | 'direct' | 'rate' | ...)"),
    "coding='poisson'": Deprecated("coding='rate' (the same Bernoulli rate coding)"),
    # command-line options: one line on stderr instead of a warning
    "gac-coding --no-gac": Deprecated("--coding direct"),
}


def deprecated(old: str, *, stacklevel: int = 2) -> None:
    """Warn (``DeprecationWarning``) that ``old``, a key of :data:`DEPRECATED`, is deprecated.

    ``stacklevel`` counts from the caller of :func:`deprecated`, as for :func:`warnings.warn`:
    the default 2 points at the code that called the function that uses the old name.
    """
    row = DEPRECATED[old]  # a KeyError here: the name belongs in the table
    warnings.warn(
        f"{old} is deprecated and will be removed in gac-coding {row.removed_in}; use {row.new}",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )


def _resolve(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def moved_attribute(module: str, name: str, *, stacklevel: int = 2) -> Any:
    """The object that replaces ``module.name`` (a dotted row of :data:`DEPRECATED`), with one
    :func:`deprecated` warning; ``AttributeError`` for a name that is not listed.

    For a module ``__getattr__`` that also resolves other names. ``stacklevel`` as for
    :func:`deprecated`: 2 is the code that asked the module for the name. The import machinery's own
    ``hasattr`` check before ``from package import name`` is not counted, so that the statement
    warns once.
    """
    old = f"{module}.{name}"
    if old not in DEPRECATED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    if "importlib._bootstrap" not in sys._getframe(stacklevel).f_code.co_filename:
        deprecated(old, stacklevel=stacklevel + 1)
    return _resolve(DEPRECATED[old].new)


def moved_names(module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for the names of ``module`` that moved:
    :func:`moved_attribute` for each.

    Example:
        >>> import warnings
        >>> import gac_coding.encoder as old
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     cls = old.GACEncoder
        >>> import gac_coding.coding
        >>> cls is gac_coding.coding.GACEncoder, len(caught), caught[0].category.__name__
        (True, 1, 'DeprecationWarning')
    """

    def __getattr__(name: str) -> Any:
        return moved_attribute(module, name, stacklevel=2)

    return __getattr__
