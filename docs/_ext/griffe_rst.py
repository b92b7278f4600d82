"""A griffe extension for the API reference: reads this project's docstrings as written.

The docstrings are Google style with two reStructuredText habits that griffe's Markdown rendering
does not know: a singular ``Example:`` heading (griffe treats only ``Examples:`` as doctest
examples; anything else would render ``>>>`` lines as Markdown, where ``x[:2]`` followed by a
``[...]`` output line reads as a link) and Sphinx roles such as ``:class:`~gac_coding.LIF```
(shown here as the code span ``LIF``). The source files stay as they are: this rewrites the text
griffe parses, nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.M)
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def _role_to_code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def rewrite(text: str) -> str:
    """The docstring ``text`` with ``Example:`` headings pluralised and Sphinx roles as code."""
    return _ROLE.sub(_role_to_code, _EXAMPLE.sub(r"\1Examples:", text))


class ReadRstHabits(griffe.Extension):
    """Rewrite every docstring before griffe parses it (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
