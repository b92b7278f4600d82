"""Argument checks shared by the modules: one rule for every integer, real, flag and choice.

A value of the wrong type raises ``TypeError`` and a value of the right type out of range raises
``ValueError``; both messages name the argument, what was expected and what arrived. ``bool`` is
not accepted as a number (``True`` is an ``int`` to Python, but never a size, a count or a rate
here).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TypeVar

__all__ = ["boolean", "choice", "integer", "nonnegative_int", "positive_int", "probability", "real"]

_C = TypeVar("_C")


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return value


def integer(
    name: str,
    value: object,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    allow_none: bool = False,
) -> int:
    """``value`` if it is an integer in ``[minimum, maximum]`` (either bound optional).

    ``allow_none=True`` also lets ``None`` through (returned as is; the messages then say
    ``"or None"``).

    Example:
        >>> from gac_coding._checks import integer
        >>> integer("levels", 3, 2)
        3
        >>> integer("sample", 4, 0, 3)
        Traceback (most recent call last):
        ValueError: sample: expected an integer in [0, 3], got 4
        >>> integer("max_period", None, 1, allow_none=True) is None
        True
    """
    if allow_none and value is None:
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if allow_none else "an int"
        raise TypeError(f"{name}: expected {kind}, got {type(value).__name__}")
    low_ok = minimum is None or value >= minimum
    high_ok = maximum is None or value <= maximum
    if not (low_ok and high_ok):
        if maximum is None:
            wanted = f"an integer >= {minimum}"
        elif minimum is None:
            wanted = f"an integer <= {maximum}"
        else:
            wanted = f"an integer in [{minimum}, {maximum}]"
        raise ValueError(f"{name}: expected {wanted}{' or None' if allow_none else ''}, got {value}")
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


def _bound(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    what: str = "a value",
) -> float:
    """``value`` as a ``float`` if it is a real number (an ``int`` or a ``float``, not a ``bool``)
    in the range the bounds give: ``[low, high]``, an end open with ``low_open``/``high_open``,
    either bound optional. ``finite=True`` (default) also rejects NaN and infinities. ``what``
    names the kind of value in the message (``"a value"``, ``"a probability"``, ...).

    Example:
        >>> from gac_coding._checks import real
        >>> real("decay", 1, 0, 1)
        1.0
        >>> real("lr", 0.0, 0, low_open=True)
        Traceback (most recent call last):
        ValueError: lr: expected a value > 0, got 0.0
        >>> real("momentum", "0.9")
        Traceback (most recent call last):
        TypeError: momentum: expected a real number, got str
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    number = float(value)
    bound = _bound(low, high, low_open, high_open)
    # comparisons only (NaN fails them all): torch.compile traces modules that check settings
    ok = number == number and (not finite or -math.inf < number < math.inf)
    if low is not None:
        ok = ok and (number > low if low_open else number >= low)
    if high is not None:
        ok = ok and (number < high if high_open else number <= high)
    if not ok:
        kind = what if bound else ("a finite number" if finite else "a number")
        raise ValueError(f"{name}: expected {kind}{bound}, got {value}")
    return number


def probability(name: str, value: object) -> float:
    """``value`` as a ``float`` if it is a real number in ``[0, 1]``.

    Example:
        >>> from gac_coding._checks import probability
        >>> probability("cutmix", 1.5)
        Traceback (most recent call last):
        ValueError: cutmix: expected a probability in [0, 1], got 1.5
    """
    return real(name, value, 0, 1, what="a probability")


def boolean(name: str, value: object) -> bool:
    """``value`` if it is a ``bool`` (not ``0``/``1`` or another truthy value).

    Example:
        >>> from gac_coding._checks import boolean
        >>> boolean("binarize", 1)
        Traceback (most recent call last):
        TypeError: binarize: expected a bool, got int
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


def choice(name: str, value: object, choices: Collection[_C]) -> _C:
    """``value`` if it is one of ``choices`` (compared with ``==``, in the order given).

    Example:
        >>> from gac_coding._checks import choice
        >>> choice("temporal_attention", "gru", ("mlp", "conv"))
        Traceback (most recent call last):
        ValueError: temporal_attention: expected one of ['mlp', 'conv'], got 'gru'
    """
    try:
        known = value in choices
    except TypeError:  # an unhashable value asked of a set or a dict
        known = False
    if not known:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]
