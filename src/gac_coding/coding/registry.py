"""The registry of input codings: :data:`CODINGS`, :func:`register_coding`, :func:`make_encoder`."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from .._checks import boolean, choice
from .._deprecated import deprecated
from .base import StemEncoder

__all__ = ["CODINGS", "check_coding", "make_encoder", "register_coding"]

_E = TypeVar("_E", bound=type[StemEncoder])

#: name -> encoder class of every input coding, in the order the tables list them (the baselines
#: first). Filled by :func:`register_coding`, one line per coding module.
CODINGS: dict[str, type[StemEncoder]] = {}

#: the arguments every encoder takes first, positionally
_COMMON = ("in_channels", "out_channels", "T")


def register_coding(cls: _E) -> _E:
    """Register an encoder class under its :attr:`~gac_coding.coding.StemEncoder.coding` name
    (usable as a class decorator); a name that is taken by another class raises ``ValueError``.

    Example:
        >>> from gac_coding.coding import CODINGS, StemEncoder, register_coding
        >>> @register_coding
        ... class Twice(StemEncoder):
        ...     coding, label = "twice_doc", "stem output doubled"
        ...     def forward(self, x):
        ...         u, static = self.membrane(x)
        ...         return 2 * (u.expand(self.T, *u.shape) if static else u)
        >>> CODINGS["twice_doc"] is Twice
        True
        >>> del CODINGS["twice_doc"]
    """
    if not (isinstance(cls, type) and issubclass(cls, StemEncoder)):
        raise TypeError(f"cls: expected a subclass of StemEncoder, got {cls!r}")
    name = cls.coding
    if not isinstance(name, str) or not name.isidentifier() or cls.coding == StemEncoder.coding:
        raise ValueError(f"cls: {cls.__name__}.coding must name the coding (an identifier), got {name!r}")
    if name in CODINGS and CODINGS[name] is not cls:
        raise ValueError(f"cls: the coding {name!r} is already registered ({CODINGS[name].__name__})")
    CODINGS[name] = cls
    return cls


def check_coding(coding: object, *, stacklevel: int = 2) -> str:
    """The registered name ``coding`` stands for; ``ValueError`` naming the choices otherwise.

    ``"poisson"``, the former name of ``"rate"``, is read as ``"rate"`` with a
    ``DeprecationWarning`` (``stacklevel`` as for :func:`warnings.warn`, from the caller).

    Example:
        >>> from gac_coding.coding import check_coding
        >>> check_coding("direct")
        'direct'
        >>> check_coding("morse")
        Traceback (most recent call last):
        ValueError: coding: expected one of ['direct', 'rate', 'latency', 'gac'], got 'morse'
    """
    if coding == "poisson":
        deprecated("coding='poisson'", stacklevel=stacklevel + 1)
        return "rate"
    if not isinstance(coding, str):
        hint = " (gac=True / False is now coding='gac' / 'direct')" if isinstance(coding, bool) else ""
        raise TypeError(f"coding: expected a str, one of {list(CODINGS)}, got {type(coding).__name__}{hint}")
    return choice("coding", coding, CODINGS)


def settings_of(coding: str) -> list[str]:
    """The keyword settings the encoder of ``coding`` takes beyond ``in_channels, out_channels, T``."""
    params = inspect.signature(CODINGS[coding]).parameters.values()
    return [p.name for p in params if p.name not in _COMMON and p.kind is not p.VAR_KEYWORD]


def make_encoder(coding: str, in_channels: int, out_channels: int, T: int, **settings: Any) -> StemEncoder:
    """Build the encoder of ``coding`` (a name in :data:`CODINGS`) with its ``settings``.

    A setting that the coding does not have (e.g. a gate setting for ``"direct"``) raises a
    ``TypeError`` that lists the ones it has; an unknown coding raises ``ValueError`` naming the
    choices.

    Example:
        >>> import torch
        >>> from gac_coding.coding import make_encoder
        >>> enc = make_encoder("latency", 1, 4, T=3)
        >>> enc(torch.rand(2, 1, 6, 6)).shape
        torch.Size([3, 2, 4, 6, 6])
        >>> make_encoder("direct", 1, 4, T=3, temporal_attention="conv")
        Traceback (most recent call last):
        TypeError: coding 'direct' has no setting ['temporal_attention']; its settings are [...]
    """
    name = check_coding(coding, stacklevel=2)
    known = settings_of(name)
    unknown = [key for key in settings if key not in known]
    if unknown:
        raise TypeError(f"coding {name!r} has no setting {unknown}; its settings are {known}")
    return CODINGS[name](in_channels, out_channels, T, **settings)


def coding_from_gac_flag(coding: object, gac: object, old: str, *, stacklevel: int = 2) -> str:
    """The coding a call means, given the deprecated ``gac`` flag (``None``: not given).

    The rule of the former pair of a model flag (``gac``) and an input flag (``coding``):
    ``gac=True`` means ``coding="gac"`` (with ``"gac"`` or ``"direct"``: the GAC model fed the
    static images) and contradicts a coding that feeds spikes (``"rate"``, ``"latency"``);
    ``gac=False`` turns ``"gac"`` into ``"direct"`` and keeps any other coding. Warns once, as the
    row ``old`` of :data:`gac_coding._deprecated.DEPRECATED` (``stacklevel`` from the caller).
    """
    if gac is None:
        return check_coding(coding, stacklevel=stacklevel + 1)
    deprecated(old, stacklevel=stacklevel + 1)
    boolean("gac", gac)
    name = check_coding(coding, stacklevel=stacklevel + 1)
    if gac and name not in ("gac", "direct"):
        raise ValueError(
            f"coding: {CODINGS[name].label} feeds spikes to a model without GAC; gac=True "
            f"contradicts it (pass coding={name!r} alone)"
        )
    return "gac" if gac else ("direct" if name == "gac" else name)
