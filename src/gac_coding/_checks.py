"""Argument checks shared by the modules: one rule for every integer setting.

A value of the wrong type raises ``TypeError`` and a value of the right type out of range raises
``ValueError``; both messages name the argument, what was expected and what arrived. ``bool`` is
not accepted as an integer (``True`` is an ``int`` to Python, but never a size or a count here).
"""

from __future__ import annotations

__all__ = ["nonnegative_int", "positive_int"]


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return value


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an integer >= 1.

    Example:
        >>> from gac_coding._checks import positive_int
        >>> positive_int("T", 4)
        4
        >>> positive_int("T", "4")
        Traceback (most recent call last):
        TypeError: T: expected an int, got str
    """
    if _integer(name, value) < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value}")
    return value  # type: ignore[return-value]


def nonnegative_int(name: str, value: object) -> int:
    """``value`` if it is an integer >= 0.

    Example:
        >>> from gac_coding._checks import nonnegative_int
        >>> nonnegative_int("padding", 0)
        0
        >>> nonnegative_int("padding", -1)
        Traceback (most recent call last):
        ValueError: padding: expected an integer >= 0, got -1
    """
    if _integer(name, value) < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value}")
    return value  # type: ignore[return-value]
