"""Checks on the built documentation site that ``mkdocs build --strict`` does not make.

``python tests/docs_site_check.py site`` (run by ``make docs`` after the build) reads every HTML
page of the site and exits 1, listing each problem, when

- a page promised to carry pictures (``PAGES_WITH_IMAGES``) shows fewer than promised, an image
  points at a file the site lacks, or a Markdown image reference was left unrendered (``![``);
- a parameter table of the API reference says *required* for a parameter whose signature gives it
  a default, has one row for several parameters (``"a, b"``), or stands without a signature;
- a link, image, stylesheet or script points at a file or an anchor the site lacks, or at a folder
  (a folder does not open from disk, ``file://``, and the site is meant to browse from there);
- a heading names a private module (a dotted name with a part such as ``_nir``);
- the text cites an issue number ("issue 13"): the site is for users, who cannot look one up.

Only the standard library: it runs wherever the site builds. ``tests/test_docs_site_check.py``
feeds it small hand-written pages to show that each check fails when it should.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

# page (relative to the site) -> how many pictures its text promises (docs/index.md: the demo, the
# T sweep, the gate, a raster; docs/guide/analysis.md: one per plot function it describes)
PAGES_WITH_IMAGES = {"index.html": 4, "guide/analysis.html": 4}

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_SKIP_TEXT = {"script", "style"}
_ISSUE = re.compile(r"\bissues?\s*(?:no\.?\s*)?#?\d+", flags=re.I)
# a dotted Python name with a private part: "gac_coding.export._nir", "_nir", "x._private.y"
_PRIVATE = re.compile(r"(?:^|[\s.`(])_[A-Za-z0-9]\w*")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, data:, javascript:


class Node:
    """An element of a parsed page: tag, attributes, children (nodes and strings)."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        if self.tag in _SKIP_TEXT:
            return ""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        """This node and every element below it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, test: Callable[[Node], bool]) -> list[Node]:
        return [n for n in self.iter() if test(n)]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in _VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.current
        while node is not None and node.tag != tag:  # close what the page left open
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def _content(root: Node) -> Node:
    """The page's own text (Material's ``<article>``), else the whole page."""
    articles = root.find_all(lambda n: n.tag == "article")
    return articles[0] if articles else root


# ------------------------------------------------------------------------------------------------
# the API reference: signatures and parameter tables


def signature_defaults(text: str) -> tuple[set[str], set[str]]:
    """``(all parameter names, those with a default)`` of a rendered signature such as
    ``GACEncoder(in_channels, T, kernel_size=3, *, decay=0.5)``; ``ValueError`` when unreadable."""
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end < start:
        raise ValueError(f"no parameter list in {text!r}")
    try:
        tree = ast.parse(f"def _f({text[start + 1 : end]}): pass")
    except SyntaxError as exc:
        raise ValueError(f"cannot read the signature {text!r}: {exc.msg}") from exc
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    a = func.args
    positional = [*a.posonlyargs, *a.args]
    names = {p.arg for p in [*positional, *a.kwonlyargs]}
    names |= {p.arg for p in (a.vararg, a.kwarg) if p is not None}
    with_default = {p.arg for p in positional[len(positional) - len(a.defaults) :]}
    with_default |= {p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None}
    return names, with_default


def _own(obj: Node, test: Callable[[Node], bool]) -> list[Node]:
    """Elements below the documented object ``obj`` that are not inside a nested documented object."""
    found = []

    def walk(node: Node) -> None:
        for child in node.children:
            if not isinstance(child, Node):
                continue
            if test(child):
                found.append(child)
            if "doc-object" not in child.classes:
                walk(child)

    walk(obj)
    return found


def _parameter_rows(obj: Node) -> list[tuple[str, str]]:
    """``(name, default cell)`` of each row of ``obj``'s own "Parameters:" tables (mkdocstrings
    writes ``<p><span class="doc-section-title">Parameters:</span></p>`` then the ``<table>``)."""
    rows = []
    for title in _own(obj, lambda n: "doc-section-title" in n.classes):
        paragraph = title.parent
        if title.text().strip() != "Parameters:" or paragraph is None or paragraph.parent is None:
            continue
        siblings = [c for c in paragraph.parent.children if isinstance(c, Node)]
        following = siblings[siblings.index(paragraph) + 1 :]
        if not following or following[0].tag != "table":
            continue
        for tr in following[0].find_all(lambda n: n.tag == "tr"):
            cells = [c for c in tr.children if isinstance(c, Node) and c.tag == "td"]
            if len(cells) >= 2:
                rows.append((cells[0].text().strip().lstrip("*"), cells[-1].text().strip()))
    return rows


def check_parameters(content: Node) -> list[str]:
    problems = []
    for obj in content.find_all(lambda n: n.tag == "div" and {"doc-object"} <= n.classes):
        if not ({"doc-class", "doc-function"} & obj.classes):
            continue
        rows = _parameter_rows(obj)
        if not rows:
            continue
        heading = next(iter(_own(obj, lambda n: re.fullmatch(r"h[1-6]", n.tag) is not None)), None)
        where = heading.attrs.get("id", "?") if heading is not None else "?"
        # a separate signature block, else the signature inside the heading (functions)
        signatures = _own(obj, lambda n: "doc-signature" in n.classes)
        if not signatures and heading is not None and "(" in heading.text():
            signatures = [heading]
        if not signatures:
            problems.append(f"{where}: a parameter table without a signature (the defaults cannot be seen)")
            continue
        try:
            names, with_default = signature_defaults(signatures[0].text())
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        for name, default in rows:
            if "," in name:
                problems.append(f"{where}: one table row for several parameters: {name!r}")
            elif default == "required" and name in with_default:
                problems.append(f"{where}: parameter {name!r} is shown as required but has a default")
            elif default == "required" and name not in names:
                problems.append(
                    f"{where}: parameter {name!r} is shown as required but is not in the signature"
                )
    return problems


# ------------------------------------------------------------------------------------------------
# links, images, headings, text


def _targets(root: Node) -> Iterator[tuple[str, str]]:
    """``(what, url)`` of every link, image, stylesheet and script of a page."""
    for node in root.iter():
        if node.tag == "a" and "href" in node.attrs:
            yield "link", node.attrs["href"]
        elif node.tag in ("img", "script", "source") and "src" in node.attrs:
            yield node.tag, node.attrs["src"]
        elif node.tag == "link" and "href" in node.attrs:
            yield "stylesheet", node.attrs["href"]


def anchors_of(root: Node) -> set[str]:
    return {n.attrs[k] for n in root.iter() for k in ("id", "name") if n.attrs.get(k)}


def check_page(
    page: str,
    html: str,
    *,
    is_file: Callable[[str], bool],
    anchors: Callable[[str], set[str]],
    min_images: int = 0,
) -> list[str]:
    """Every problem of the page ``page`` (its path in the site, ``/``-separated) with the text
    ``html``. ``is_file(path)``: whether the site has that file; ``anchors(path)``: the ids of
    that page."""
    root = parse(html)
    content = _content(root)
    text = content.text()
    problems = []

    images = content.find_all(lambda n: n.tag == "img")
    if len(images) < min_images:
        problems.append(f"shows {len(images)} picture(s), {min_images} promised")
    if "![" in text:
        problems.append("a Markdown image reference was not rendered: " + text[text.index("![") :][:60])

    here = PurePosixPath(page).parent
    for what, url in _targets(root):
        if _EXTERNAL.match(url) or url.startswith("//"):
            continue
        parts = urlsplit(url)
        path = unquote(parts.path)
        if not path:
            target = page
        else:
            # "/x" starts at the site's root (404.html links so: a server shows it at any address)
            target = "/".join(_normalise(PurePosixPath(path) if path.startswith("/") else here / path))
            if path.endswith("/") or not is_file(target):
                problems.append(
                    f"{what} {url!r}: no such file in the site"
                    + (" (a folder)" if path.endswith("/") or is_file(target + "/index.html") else "")
                )
                continue
        if parts.fragment and target.endswith(".html") and unquote(parts.fragment) not in anchors(target):
            problems.append(f"{what} {url!r}: {target} has no anchor {parts.fragment!r}")

    for heading in content.find_all(lambda n: re.fullmatch(r"h[1-6]", n.tag) is not None):
        title = heading.text().replace("\u00b6", "").strip()
        ident = heading.attrs.get("id", "")
        private = (
            [p for p in ident.split(".") if p.startswith("_") and not p.startswith("__")]
            if "." in ident
            else []
        )
        if _PRIVATE.search(title) or private:
            problems.append(f"heading {title!r} (id {ident!r}) names a private module or object")

    for m in _ISSUE.finditer(text):
        context = text[max(0, m.start() - 30) : m.end() + 10].replace("\n", " ")
        problems.append(f"cites an issue number: {m.group(0)!r} in '...{context}...'")

    problems += check_parameters(content)
    return [f"{page}: {p}" for p in problems]


def _normalise(path: PurePosixPath) -> list[str]:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", "", "/"):
            parts.append(part)
    return parts


def check_site(site: Path, pages_with_images: dict[str, int] = PAGES_WITH_IMAGES) -> list[str]:
    """Every problem of the built site in the folder ``site``."""
    site = Path(site)
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    if not pages:
        return [f"{site}: no HTML pages (build the site first: make docs)"]
    missing = [p for p in pages_with_images if p not in pages]
    problems = [f"{p}: promised pictures, but the page does not exist" for p in missing]
    cache: dict[str, set[str]] = {}

    def anchors(page: str) -> set[str]:
        if page not in cache:
            cache[page] = anchors_of(parse((site / page).read_text(encoding="utf-8")))
        return cache[page]

    def is_file(path: str) -> bool:
        return (site / path).is_file()

    for page in pages:
        html = (site / page).read_text(encoding="utf-8")
        problems += check_page(
            page, html, is_file=is_file, anchors=anchors, min_images=pages_with_images.get(page, 0)
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tests/docs_site_check.py SITE_FOLDER", file=sys.stderr)
        return 2
    problems = check_site(Path(args[0]))
    for problem in problems:
        print(problem)
    pages = len(list(Path(args[0]).rglob("*.html")))
    print(f"docs_site_check: {pages} pages, {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
