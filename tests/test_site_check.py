"""Each rule of .ci/check_site.py on tiny synthetic pages: one that passes and one that fails."""

import pathlib
import struct
import sys
import zlib

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / ".ci"))
import check_site  # noqa: E402


def png_bytes(width: int, height: int = 10, dpi: float | None = None) -> bytes:
    """A valid greyscale PNG of ``width × height`` pixels, with a pHYs chunk when ``dpi`` is given."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    phys = chunk(b"pHYs", struct.pack(">IIB", round(dpi / 0.0254), round(dpi / 0.0254), 1)) if dpi else b""
    raw = b"".join(b"\x00" + b"\xff" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + phys + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def page(body: str, head: str = "") -> str:
    """A page shaped like the book's: the theme's article holds the content."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>"
            f"<main><article class='bd-article'>{body}</article></main></body></html>")


def cell(code: str = "x = 1", output: str = "", tags: str = "") -> str:
    """A myst-nb code cell: input (hidden in a <details> for hide-input) and output."""
    code_html = f"<div class='cell_input docutils container'><div class='highlight'><pre>{code}</pre></div></div>"
    if "tag_hide-input" in tags:
        code_html = f"<details class='hide above-input'><summary>Show code cell source</summary>{code_html}</details>"
    out = f"<div class='cell_output docutils container'>{output}</div>" if output else ""
    return f"<div class='cell docutils container {tags}'>{code_html}{out}</div>"


def run_rule(tmp_path, rule, body, head="", files=None, name="book/chapter.html"):
    site = tmp_path / "html"
    target = site / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page(body, head), encoding="utf-8")
    for rel, data in (files or {}).items():
        f = site / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data) if isinstance(data, bytes) else f.write_text(data)
    failures = check_site.check_site(site, [(rule, dict(check_site.RULES)[rule])])
    assert all(f.rule == rule and f.page == name for f in failures), failures
    return failures


# --- remote-resource ------------------------------------------------------------------------------------

def test_remote_resource_passes_local_loads_and_outbound_links(tmp_path):
    head = ("<script src='../_static/app.js'></script><link rel='stylesheet' href='../_static/site.css'>"
            "<link rel='canonical' href='https://example.org/book/chapter.html'>")
    body = "<p><a href='https://arxiv.org/abs/1706.03762'>the paper</a></p><img alt='a plot' src='../_images/a.png'>"
    files = {"_static/site.css": "body { background: url('../_images/bg.png'); }"}
    assert run_rule(tmp_path, "remote-resource", body, head, files) == []


@pytest.mark.parametrize("head, body, files, needle", [
    ("<script src='https://cdn.jsdelivr.net/npm/x.js'></script>", "", {}, "cdn.jsdelivr.net"),
    ("<link rel='stylesheet' href='//fonts.example.com/a.css'>", "", {}, "fonts.example.com"),
    ("<link rel='preconnect' href='https://fonts.gstatic.com'>", "", {}, "fonts.gstatic.com"),
    ("", "<img alt='x' src='http://example.com/a.png'>", {}, "example.com/a.png"),
    ("", "<iframe src='https://www.youtube.com/embed/x'></iframe>", {}, "youtube.com"),
    ("<style>@import 'https://fonts.googleapis.com/css';</style>", "", {}, "fonts.googleapis.com"),
    ("", "<div style='background: url(https://example.com/bg.png)'></div>", {}, "example.com/bg.png"),
    ("<link rel='stylesheet' href='../_static/site.css'>", "",
     {"_static/site.css": "@font-face { src: url(https://fonts.example.com/f.woff2); }"}, "f.woff2"),
])
def test_remote_resource_fails_on_anything_loaded_from_another_host(tmp_path, head, body, files, needle):
    failures = run_rule(tmp_path, "remote-resource", body, head, files)
    assert len(failures) == 1 and needle in failures[0].detail


def test_localhost_is_local():
    assert not check_site._is_remote("http://localhost:8000/_static/a.js")
    assert not check_site._is_remote("../_static/a.js") and not check_site._is_remote("data:image/png;base64,AA")
    assert check_site._is_remote("https://unpkg.com/thebe") and check_site._is_remote("//cdn.example.com/a.js")


# --- unrendered-myst ------------------------------------------------------------------------------------

def test_unrendered_myst_passes_rendered_text_and_quoted_syntax(tmp_path):
    body = ("<p>The FLOPs grow as <span class='math'>\\(n^{2}\\)</span>: see <a href='#f'>Fig. 3</a>.</p>"
            "<p>Write <code>{glue:text}`key`</code> in the prose.</p>" + cell("print(':::')"))
    assert run_rule(tmp_path, "unrendered-myst", body) == []


@pytest.mark.parametrize("text", ["{glue:text}`flops_ratio`", "see {numref}`fig-x`", "as in {cite}`vaswani`",
                                  ":::{note}", "```{code-cell}", "{doc}`intro`", "{ref}`sec`", "{{ n_layers }}"])
def test_unrendered_myst_fails_on_syntax_in_the_text(tmp_path, text):
    failures = run_rule(tmp_path, "unrendered-myst", f"<section id='s'><p>Before {text} after.</p></section>")
    assert len(failures) == 1 and "Before" in failures[0].detail


def test_unrendered_myst_in_an_output_counts(tmp_path):
    failures = run_rule(tmp_path, "unrendered-myst", cell(output="<pre>ratio is {glue:text}`r`</pre>"))
    assert [f.rule for f in failures] == ["unrendered-myst"]


# --- error-in-output ------------------------------------------------------------------------------------

def test_error_in_output_passes_clean_outputs_and_errors_in_prose_or_code(tmp_path):
    body = ("<p>A ValueError: is raised when n is negative.</p>"
            + cell("raise ValueError('n')  # Traceback in the input is fine", "<pre>n = 128: 3.2 ms</pre>"))
    assert run_rule(tmp_path, "error-in-output", body) == []


@pytest.mark.parametrize("output", [
    "<pre>Traceback (most recent call last):\n  File \"x.py\"</pre>",
    "<pre>ok\nValueError: n must be positive</pre>",
    "<pre><span class='ansi-red-fg'>torch.OutOfMemoryError</span>: CUDA out of memory</pre>",
    "<pre>Error: the reference is missing</pre>",
    "<div class='output stderr'><pre>/x/y.py:3: DeprecationWarning: utils.flops moved</pre></div>",
])
def test_error_in_output_fails_on_tracebacks_and_exception_lines(tmp_path, output):
    failures = run_rule(tmp_path, "error-in-output", cell(output=output))
    assert len(failures) == 1


# --- image-alt ------------------------------------------------------------------------------------------

def test_image_alt_passes_described_images(tmp_path):
    body = "<img alt='Forward time grows linearly with n for the RNN' src='../_images/t.png'>"
    assert run_rule(tmp_path, "image-alt", body) == []


@pytest.mark.parametrize("img", ["<img src='../_images/t.png'>", "<img alt='' src='../_images/t.png'>",
                                 "<img alt='  ' src='a.svg'>",
                                 "<img alt='../_images/t.png' src='../_images/t.png'>"])
def test_image_alt_fails_without_a_description(tmp_path, img):
    failures = run_rule(tmp_path, "image-alt", img)
    assert len(failures) == 1 and "t.png" in failures[0].detail or "a.svg" in failures[0].detail


# --- figure-legibility ----------------------------------------------------------------------------------

def test_png_header_and_dpi_are_read():
    assert check_site.png_size_and_dpi.__doc__
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        f = pathlib.Path(d) / "a.png"
        f.write_bytes(png_bytes(975, 20, dpi=150))
        w, h, dpi = check_site.png_size_and_dpi(f)
        assert (w, h) == (975, 20) and dpi == pytest.approx(150, abs=0.01)
        f.write_bytes(png_bytes(640))
        assert check_site.png_size_and_dpi(f) == (640, 10, None)
        f.write_bytes(b"GIF89a" + b"\0" * 30)
        with pytest.raises(ValueError, match="not a PNG"):
            check_site.png_size_and_dpi(f)


@pytest.mark.parametrize("width, dpi, tags, style", [
    (640, None, "", ""),          # drawn at 100 dpi, shown pixel for pixel
    (955, 150, "", ""),           # the course style: 6.5 in at 150 dpi, shown at 672 px: scale 1.06
    (1300, 100, "tag_full-width", ""),  # 13 in at 100 dpi at full width (914 px): 0.70
    (2400, 100, "", "width: 100%"),     # a figure directive at 100 % of the column: not legible, but…
])
def test_figure_legibility_passes_figures_shown_near_their_size(tmp_path, width, dpi, tags, style):
    img = f"<img alt='plot' src='../_images/f.png' style='{style}'>"
    body = cell(output=img, tags=tags)
    failures = run_rule(tmp_path, "figure-legibility", body, files={"_images/f.png": png_bytes(width, dpi=dpi)})
    if style:  # … 2400 px shown at 672 is scale 0.28: it fails even with a width option
        assert len(failures) == 1 and "0.28" in failures[0].detail
    else:
        assert failures == []


@pytest.mark.parametrize("width, dpi, wrapper, scale", [
    (1100, None, "cell", "0.61"),        # an 11-in figure at 100 dpi in the column: 672 / 1100
    (1950, 150, "cell", "0.52"),         # 13 in at 150 dpi: sharp, but its labels are just as small
    (700, 100, "margin", "0.32"),        # a margin figure is a third of the column
    (1000, None, "figure", "0.67"),      # a {figure} directive's image
])
def test_figure_legibility_fails_figures_shrunk_below_the_threshold(tmp_path, width, dpi, wrapper, scale):
    img = "<img alt='plot' src='../_images/f.png'>"
    body = {"cell": cell(output=img), "margin": cell(output=img, tags="tag_margin"),
            "figure": f"<figure class='align-default' id='fig-x'>{img}<figcaption>c</figcaption></figure>"}[wrapper]
    failures = run_rule(tmp_path, "figure-legibility", body, files={"_images/f.png": png_bytes(width, dpi=dpi)})
    assert len(failures) == 1, failures
    assert f"scale {scale}" in failures[0].detail and f"{width} px" in failures[0].detail


def test_figure_legibility_ignores_svg_and_images_outside_figures(tmp_path):
    body = (cell(output="<img alt='plot' src='../_images/f.svg'>")
            + "<p><img alt='logo' src='../_images/big.png'></p>")
    files = {"_images/f.svg": "<svg/>", "_images/big.png": png_bytes(3000)}
    assert run_rule(tmp_path, "figure-legibility", body, files=files) == []


def test_displayed_scale_follows_width_attributes():
    assert check_site.displayed_scale(1000, 200, 672, width_attr="500") == (500, pytest.approx(1.0))
    assert check_site.displayed_scale(1000, 100, 672, css_width="width: 50%") == (336, pytest.approx(0.336))
    shown, scale = check_site.displayed_scale(500, None, 672)
    assert shown == 500 and scale == pytest.approx(1.0)  # never enlarged


# --- plumbing-in-code -----------------------------------------------------------------------------------

def test_plumbing_in_code_passes_hidden_and_removed_inputs(tmp_path):
    body = (cell("glue('ratio', r)", tags="tag_hide-input")
            + cell("x = 1  # NBVAL_CHECK_OUTPUT", tags="tag_remove-input") + cell("y = torch.randn(4)")
            + "<p>We glue( nothing here: prose is the maintainer-text rule's.</p>")
    assert run_rule(tmp_path, "plumbing-in-code", body) == []


@pytest.mark.parametrize("code", ["glue('flops_ratio', ratio)", "# NBVAL_IGNORE_OUTPUT\nprint(t)"])
def test_plumbing_in_code_fails_on_visible_cells(tmp_path, code):
    failures = run_rule(tmp_path, "plumbing-in-code", cell(code))
    assert len(failures) == 1 and ("glue(" in failures[0].detail or "NBVAL" in failures[0].detail)


# --- maintainer-text ------------------------------------------------------------------------------------

def test_maintainer_text_passes_reader_prose(tmp_path):
    body = ("<p>The circuit (CIrcuit) makes a decision; we maintain a cache of keys.</p>"
            + cell("# make test-like words in code are the plumbing rule's: nbval", "<pre>n = 64</pre>"))
    assert run_rule(tmp_path, "maintainer-text", body) == []


@pytest.mark.parametrize("text", ["Run make test first.", "Checked by nbval.", "TODO: rewrite", "FIXME later",
                                  "For the maintainers: update.", "the CI runs it", "GPU reference: none committed",
                                  "To make one on a GPU: python -m utils.env", "free memory now 3.1 GiB",
                                  "load average 1.2"])
def test_maintainer_text_fails_in_prose(tmp_path, text):
    failures = run_rule(tmp_path, "maintainer-text", f"<div class='admonition note'><p>{text}</p></div>")
    assert failures and all(text.split()[0][:4] in f.detail or "python -m" in f.detail for f in failures)


def test_maintainer_text_fails_in_outputs(tmp_path):
    output = "<pre>load average: 1.9 · free memory now 2 GiB</pre>"
    failures = run_rule(tmp_path, "maintainer-text", cell(output=output))
    assert len(failures) == 2


# --- widget-without-figure ------------------------------------------------------------------------------

WIDGET = "<script type='application/vnd.jupyter.widget-view+json'>{\"model_id\": \"ab\"}</script>"


def test_widget_passes_with_a_static_figure_before_it(tmp_path):
    body = ("<section id='a'><h2>A</h2>" + cell(output="<img alt='static plot' src='s.png'>")
            + cell(output=WIDGET) + cell(output="<img alt='second' src='t.png'>") + cell(output=WIDGET)
            + "</section>")
    assert run_rule(tmp_path, "widget-without-figure", body) == []


@pytest.mark.parametrize("body", [
    "<section id='a'><h2>A</h2>" + cell(output=WIDGET) + "</section>",                 # no figure at all
    "<section id='a'>" + cell(output=WIDGET) + cell(output="<img alt='after' src='s.png'>") + "</section>",
    "<section id='a'>" + cell(output="<img alt='s' src='s.png'>") + cell(output=WIDGET) + cell(output=WIDGET)
    + "</section>",                                                                    # one figure, two widgets
    "<section id='a'>" + cell(output="<img alt='s' src='s.png'>") + "</section><section id='b'>"
    + cell(output=WIDGET) + "</section>",                                      # the figure is in another section
])
def test_widget_fails_without_a_figure_before_it(tmp_path, body):
    failures = run_rule(tmp_path, "widget-without-figure", body)
    assert len(failures) == 1 and "widget" in failures[0].detail


# --- the command ----------------------------------------------------------------------------------------

def test_main_reports_grouped_failures_and_the_run_time(tmp_path, capsys):
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    (site / "book" / "a.html").write_text(page("<p>TODO</p><img src='x.png'>"))
    (site / "index.html").write_text(page("<p>Welcome.</p>"))
    (site / "_static").mkdir()
    (site / "_static" / "ignored.html").write_text(page("<p>TODO</p>"))
    assert check_site.main([str(site)]) == 1
    out = capsys.readouterr().out
    assert "FAIL maintainer-text: 1 failure(s) on 1 page(s)" in out and "book/a.html" in out
    assert "FAIL image-alt" in out and "ok   remote-resource" in out
    assert "2 failure(s) on 2 pages in" in out and out.rstrip().endswith(" s")
    (site / "book" / "a.html").write_text(page("<p>Fine.</p>"))
    assert check_site.main([str(site)]) == 0


def test_main_without_a_build_says_so(tmp_path, capsys):
    assert check_site.main([str(tmp_path / "missing")]) == 2
    assert "build the site first" in capsys.readouterr().err


# --- figure-full-size -------------------------------------------------------------------------------------

def test_figure_full_size_passes_a_figure_linked_to_its_file(tmp_path):
    img = ("<a class='reference internal image-reference' href='../_images/f.png'>"
           "<img alt='plot' src='../_images/f.png'></a>")
    body = f"<figure class='align-default'>{img}<figcaption>c</figcaption></figure>" + cell(output=img)
    assert run_rule(tmp_path, "figure-full-size", body) == []


@pytest.mark.parametrize("img", [
    "<img alt='plot' src='../_images/f.png'>",                                         # no link at all
    "<a href='../_images/other.png'><img alt='plot' src='../_images/f.png'></a>",    # a link to another file
])
def test_figure_full_size_fails_a_figure_that_cannot_be_enlarged(tmp_path, img):
    failures = run_rule(tmp_path, "figure-full-size", cell(output=img))
    assert len(failures) == 1 and "not a link to its full-size image" in failures[0].detail


def test_maintainer_text_lets_the_instructor_guide_name_its_grading_tool_only(tmp_path):
    body = "<p>Grade with nbval: python -m pytest --nbval-lax a.ipynb</p>"
    assert run_rule(tmp_path, "maintainer-text", body, name="book/appendix/instructor_guide.html") == []
    assert len(run_rule(tmp_path / "other", "maintainer-text", body)) == 3
    failures = run_rule(tmp_path / "todo", "maintainer-text", "<p>TODO: grade</p>",
                        name="book/appendix/instructor_guide.html")
    assert len(failures) == 1 and "TODO" in failures[0].detail
