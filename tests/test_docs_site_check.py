"""``tests/docs_site_check.py`` (run by ``make docs`` on the built site) fails on each kind of problem
it is meant to catch, and passes a clean page: small pages written by hand, shaped as mkdocs and
mkdocstrings write them."""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_site_check import check_page, check_site, main, signature_defaults

# one documented class as mkdocstrings-python renders it with a separate signature
API_OBJECT = """
<div class="doc doc-object doc-class">
<h2 id="pkg.Enc" class="doc doc-heading"><span class="doc-object-name">Enc</span>
<a href="#pkg.Enc" class="headerlink">&para;</a></h2>
{signature}
<div class="doc doc-contents">
<p>An encoder.</p>
<p><span class="doc-section-title">Parameters:</span></p>
<table><thead><tr><th>Name</th><th>Type</th><th>Description</th><th>Default</th></tr></thead>
<tbody>
<tr class="doc-section-item"><td><code>channels</code></td><td>int</td><td>channels</td>
<td><em>required</em></td></tr>
<tr class="doc-section-item"><td><code>{name}</code></td><td>int</td><td>the stride</td>
<td>{default}</td></tr>
</tbody></table>
<div class="doc doc-children">
<div class="doc doc-object doc-function">
<h3 id="pkg.Enc.run" class="doc doc-heading"><code>run(x)</code></h3>
<div class="doc doc-contents"><p>Run it.</p></div>
</div>
</div>
</div>
</div>
"""
SIGNATURE = (
    '<div class="doc-signature highlight"><pre><code><span class="nf">Enc</span>(\n'
    "    channels,\n    stride=<span>1</span>,\n    *,\n    record=True,\n)</code></pre></div>"
)


def page(body: str) -> str:
    return (
        '<html><head><link rel="stylesheet" href="../assets/main.css"></head><body>'
        '<nav><a href="../index.html">Home</a></nav>'
        f'<article class="md-content__inner"><h1 id="top">Guide</h1>{body}</article>'
        '<script src="../assets/bundle.js"></script></body></html>'
    )


FILES = {
    "index.html",
    "guide/a.html",
    "guide/b.html",
    "images/gate.png",
    "assets/main.css",
    "assets/bundle.js",
}
ANCHORS = {
    "guide/b.html": {"top", "usage"},
    "guide/a.html": {"top", "pkg.Enc", "pkg.Enc.run"},
    "index.html": {"top"},
}


def check(body: str, *, min_images: int = 0) -> list[str]:
    return check_page(
        "guide/a.html",
        page(body),
        is_file=FILES.__contains__,
        anchors=lambda p: ANCHORS.get(p, set()),
        min_images=min_images,
    )


CLEAN = (
    '<p>See <a href="b.html#usage">usage</a> and <a href="#top">the top</a>.</p>'
    '<p><img alt="the gate" src="../images/gate.png"></p>'
    + API_OBJECT.format(signature=SIGNATURE, name="stride", default="<code>1</code>")
)


def test_a_clean_page_passes() -> None:
    assert check(CLEAN, min_images=1) == []


def test_a_page_with_fewer_pictures_than_promised_fails() -> None:
    (problem,) = check(CLEAN.replace('<img alt="the gate" src="../images/gate.png">', ""), min_images=1)
    assert "shows 0 picture(s), 1 promised" in problem


def test_an_unrendered_markdown_image_fails() -> None:
    (problem,) = check(CLEAN + "<p>![the raster](../images/raster.png)</p>", min_images=1)
    assert "Markdown image reference was not rendered" in problem


def test_an_image_of_a_missing_file_fails() -> None:
    (problem,) = check(CLEAN.replace("gate.png", "gait.png"), min_images=1)
    assert "img '../images/gait.png': no such file" in problem


def test_a_parameter_shown_as_required_with_a_default_in_the_signature_fails() -> None:
    body = API_OBJECT.format(signature=SIGNATURE, name="stride", default="<em>required</em>")
    (problem,) = check(body)
    assert "pkg.Enc: parameter 'stride' is shown as required but has a default" in problem
    # keyword-only parameters count too
    body = API_OBJECT.format(signature=SIGNATURE, name="record", default="<em>required</em>")
    assert "parameter 'record' is shown as required but has a default" in check(body)[0]


def test_one_row_for_several_parameters_fails() -> None:
    body = API_OBJECT.format(signature=SIGNATURE, name="stride, record", default="<em>required</em>")
    (problem,) = check(body)
    assert "one table row for several parameters: 'stride, record'" in problem


def test_a_parameter_table_without_a_signature_fails() -> None:
    (problem,) = check(API_OBJECT.format(signature="", name="stride", default="<code>1</code>"))
    assert "pkg.Enc: a parameter table without a signature" in problem


def test_a_signature_in_the_heading_is_read() -> None:
    body = API_OBJECT.format(signature="", name="stride", default="<em>required</em>").replace(
        '<span class="doc-object-name">Enc</span>', "<code>Enc(channels, stride=1)</code>"
    )
    (problem,) = check(body)
    assert "parameter 'stride' is shown as required but has a default" in problem


def test_broken_internal_links_fail() -> None:
    cases = {
        '<a href="c.html">gone</a>': "link 'c.html': no such file",
        '<a href="b.html#nowhere">x</a>': "link 'b.html#nowhere': guide/b.html has no anchor 'nowhere'",
        '<a href="#nowhere">x</a>': "link '#nowhere': guide/a.html has no anchor 'nowhere'",
        '<a href="../guide/">x</a>': "link '../guide/': no such file in the site (a folder)",
        '<a href="/guide/c.html">x</a>': "link '/guide/c.html': no such file",
    }
    for link, expected in cases.items():
        (problem,) = check(CLEAN + f"<p>{link}</p>", min_images=1)
        assert expected in problem, (link, problem)
    # external addresses are not followed; a root-relative link to an existing page is fine
    assert (
        check(CLEAN + '<a href="https://example.org/x">x</a><a href="/guide/b.html">b</a>', min_images=1)
        == []
    )


def test_a_missing_stylesheet_or_script_fails() -> None:
    problems = check_page(
        "guide/a.html", page(CLEAN), is_file={"guide/b.html", "images/gate.png", "index.html"}.__contains__,
        anchors=lambda p: ANCHORS.get(p, set()), min_images=1,
    )  # fmt: skip
    assert sorted(p.split(": ")[1] for p in problems) == [
        "script '../assets/bundle.js'",
        "stylesheet '../assets/main.css'",
    ]


def test_a_private_module_heading_fails() -> None:
    for heading in (
        '<h2 id="pkg.export._nir">_nir</h2>',
        '<h2 id="pkg.export.to_nir">to_nir</h2>'.replace("to_nir</h2>", "pkg.export._nir.to_nir</h2>"),
        '<h2 id="pkg.export._nir.to_nir">to_nir</h2>',
    ):
        (problem,) = check(CLEAN + heading, min_images=1)
        assert "names a private module or object" in problem, heading
    # dunder names and underscores inside words are not private modules
    assert (
        check(CLEAN + '<h2 id="pkg.Enc.__call__">__call__</h2><h2 id="x">set_timesteps</h2>', min_images=1)
        == []
    )


def test_an_issue_number_in_the_text_fails() -> None:
    for text in ("the encoder on the host (issue 13).", "see Issue #7", "fixed in issues 21"):
        (problem,) = check(CLEAN + f"<p>{text}</p>", min_images=1)
        assert "cites an issue number" in problem, text
    assert check(CLEAN + "<p>no issue here; 13 steps</p>", min_images=1) == []


def test_signature_defaults() -> None:
    names, with_default = signature_defaults("f(a, b=1, /, c=2, *args, d, e=None, **kw)")
    assert names == {"a", "b", "c", "args", "d", "e", "kw"} and with_default == {"b", "c", "e"}
    with pytest.raises(ValueError, match="no parameter list"):
        signature_defaults("f")
    with pytest.raises(ValueError, match="cannot read the signature"):
        signature_defaults("f(a=, b)")


def test_check_site_reads_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "guide" / "a.html").write_text(page(CLEAN))
    (tmp_path / "guide" / "b.html").write_text(
        page('<h2 id="usage">Usage</h2><a href="a.html#pkg.Enc.run">run</a>')
    )
    (tmp_path / "index.html").write_text(page('<a href="guide/a.html">a</a>').replace("../", ""))
    assert check_site(tmp_path, {"guide/a.html": 1}) == []
    assert main([str(tmp_path)]) == 1  # the default promise: index.html shows four pictures
    assert "index.html: shows 0 picture(s), 4 promised" in capsys.readouterr().out
    assert check_site(tmp_path, {"guide/missing.html": 1}) == [
        "guide/missing.html: promised pictures, but the page does not exist"
    ]
    assert check_site(tmp_path / "empty") == [
        f"{tmp_path / 'empty'}: no HTML pages (build the site first: make docs)"
    ]
