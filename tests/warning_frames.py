"""Where warnings point, counted as ``warnings.warn`` counts ``stacklevel`` but without the frames
of mutmut's trampolines (tests/mutation), so that the check judges mutants too; a plain run has
no such frames, and the result is where the warning points."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import pytest


def _is_trampoline(frame: object) -> bool:
    return "mutmut" in frame.f_code.co_filename  # type: ignore[attr-defined]


def warnings_pointing(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]
) -> list[tuple[str, str, object]]:
    """``(message, function pointed at, category)`` of each warning that ``call()`` issues."""
    seen: list[tuple[str, str, object]] = []

    def spy(message: object, category: object = None, stacklevel: int = 1, **kwargs: object) -> None:
        frame = sys._getframe(1)  # the caller of warnings.warn: stacklevel 1
        for _ in range(stacklevel - 1):
            frame = frame.f_back  # type: ignore[assignment]
            while _is_trampoline(frame):
                frame = frame.f_back  # type: ignore[assignment]
        seen.append((str(message), frame.f_code.co_name, category))

    monkeypatch.setattr(warnings, "warn", spy)
    call()
    monkeypatch.undo()
    return seen
