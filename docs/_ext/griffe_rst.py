"""A griffe extension for the API reference: reads this project's docstrings as written.

The docstrings are Google style with habits that griffe's Markdown rendering does not know:

- a singular ``Example:`` heading (griffe treats only ``Examples:`` as doctest examples; anything
  else would render ``>>>`` lines as Markdown, where ``x[:2]`` followed by a ``[...]`` output line
  reads as a link);
- Sphinx roles such as ``:class:`~gac_coding.LIF``` (shown here as the code span ``LIF``);
- one entry for several parameters, ``kernel_size, stride, padding: the convolution.``: griffe
  would read ``kernel_size, stride, padding`` as the name of one parameter that the signature does
  not have, and show it without a type and as required. The entry is split into one entry per
  name, each with the shared description, so that griffe takes each one's type and default from
  the signature like any other entry (and can warn about a name the signature lacks).

The source files stay as they are: this rewrites the text griffe parses, nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", flags=re.M)
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
# the headings of the sections whose entries are "name: description" (Google style)
_NAMED_SECTION = re.compile(
    r"^(\s*)(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters"
    r"|Attributes):[ \t]*$"
)
# "a, b, c: text" or "a, b (int): text" at the start of an entry
_SHARED_ENTRY = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)(\s*\([^)]*\))?:(\s.*|)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def split_shared_entries(text: str) -> str:
    """``text`` with every ``a, b: description`` entry of a named section written as one entry per
    name (``a: description``, ``b: description``); continuation lines go with each copy."""
    lines = text.split("\n")
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = _NAMED_SECTION.match(line)
        if heading:
            section_indent = len(heading.group(1))
            out.append(line)
            i += 1
            continue
        if section_indent is not None and line.strip() and _indent(line) <= section_indent:
            section_indent = None  # the section ended
        entry = _SHARED_ENTRY.match(line) if section_indent is not None else None
        if entry is None:
            out.append(line)
            i += 1
            continue
        indent, names, kind, rest = entry.groups()
        body = [rest]  # the description: the rest of this line and the deeper-indented lines after it
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            body.append("\n" + lines[i])
            i += 1
        while body and not body[-1].strip():  # a blank line after the entry stays after all copies
            body.pop()
            i -= 1
        for name in (n.strip() for n in names.split(",")):
            out.append(f"{indent}{name}{kind or ''}:{''.join(body)}")
    return "\n".join(out)


def _role_to_code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def rewrite(text: str) -> str:
    """The docstring ``text`` with ``Example:`` headings pluralised, Sphinx roles as code and shared
    parameter entries split."""
    return split_shared_entries(_ROLE.sub(_role_to_code, _EXAMPLE.sub(r"\1Examples:", text)))


class ReadRstHabits(griffe.Extension):
    """Rewrite every docstring before griffe parses it (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
