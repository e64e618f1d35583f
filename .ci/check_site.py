"""Check the built site as a reader gets it: parse every HTML page of the build (no browser).

    python .ci/check_site.py [BUILD_DIR]          (default: _build/html)

Each rule is a function ``rule_*(page) -> list[Failure]``; a failure names the page, the rule and what
is wrong. The failures are printed grouped by rule, then the run time; the exit status is 1 when there
is any. Rules:

remote-resource    the page loads something from another host: ``src``/``href`` of script, link
                   (stylesheet, icon, preload …), img, iframe …, or a CSS ``url(``/``@import`` in the page
                   or in a local stylesheet it links. Hyperlinks (``<a href>``) are not loads and are fine.
unrendered-myst    MyST that reached the page as text: ``{glue``, ``{numref``, ``{cite``, ``{doc}``, ``:::`` …
error-in-output    a traceback, an exception line (``ValueError: …``) or a warning in a cell's output.
image-alt          an image without alt text, or whose alt text is only its file name.
figure-legibility  a PNG figure shown so much smaller than drawn that its labels are too small to read.
figure-full-size   a PNG figure that does not link to its full-size file (a reader cannot click to enlarge it).
plumbing-in-code   a visible code cell (input not hidden or removed) that contains ``glue(`` or ``NBVAL``.
maintainer-text    words meant for the maintainers (``make test``, ``nbval``, ``TODO`` …) in prose or outputs.
widget-without-figure  an interactive widget, which the static site cannot run, without a static figure
                   before it (since the previous widget or the start of its section).

Standard library only: ``html.parser`` builds a small tree of each page.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import html.parser
import pathlib
import re
import struct
import sys
import time
import urllib.parse

# --- Rule constants -----------------------------------------------------------------------------------

#: CSS pixels of the text column of sphinx-book-theme on a wide screen: where a figure is shown.
COLUMN_PX = 672
#: A cell tagged ``full-width`` (or a ``full-width`` container) grows by 36 % over the right margin.
FULL_WIDTH_PX = round(COLUMN_PX * 1.36)
#: Margin content (``margin``/``popout`` tags, ``{margin}``) is 33 % of the column wide.
MARGIN_PX = round(COLUMN_PX * 0.33)
#: Dots per inch of a figure whose PNG has no pHYs chunk: matplotlib's default.
DEFAULT_DPI = 100
#: A figure's "natural size" is a 100-dpi figure shown pixel for pixel: matplotlib's own defaults (10-pt
#: labels at 100 dpi) are designed to be read there, where a label of F points shows at about F CSS points.
REFERENCE_DPI = 100
#: Smallest legible scale of a figure: (shown CSS px / PNG px) · (PNG dpi / REFERENCE_DPI). At 0.70 the
#: default 10-pt tick labels show at 7 pt (9.7 CSS px), the least a reader can still read on a screen; the
#: figures the issue found illegible were shown below 70 % of their natural size, with 5–6 px labels.
#: The course style (utils.plotting: 6.5 in at 150 dpi, fonts >= 10 pt) shows at about 1.05.
LEGIBLE_SCALE = 0.70

#: Unrendered MyST roles, directives and substitutions, as they would appear in the page's text.
MYST_PATTERNS = re.compile(
    r"\{glue|\{numref|\{cite|\{doc\}|\{ref\}|\{eq\}|\{term\}|\{download\}|\{prf:|:::|```\{|\{\{\s*[\w.]+\s*\}\}"
)
#: Cell-output lines that mean something went wrong: a traceback, an exception or a warning line.
ERROR_PATTERNS = re.compile(
    r"Traceback \(most recent call last\)"
    r"|^\s*(?:\S+:\d+:\s*)?(?:[\w.]+\.)?(?:[A-Z]\w*)?(?:Error|Exception|Warning)(?::|$)",
    re.MULTILINE,
)
#: Code a reader should not see in a visible code cell: the site's glue calls and the test markers.
PLUMBING_IN_CODE = ("glue(", "NBVAL")
#: Maintainer text, never for readers (case-sensitive where the word is an acronym).
MAINTAINER_TEXT = [
    re.compile(r"To make one on a GPU", re.IGNORECASE),
    re.compile(r"python -m\b"),
    re.compile(r"GPU reference: none committed", re.IGNORECASE),
    re.compile(r"\bmake test(?![-\w])", re.IGNORECASE),   # `make test-gpu` is a reader's command (running_on_gpu)
    re.compile(r"nbval", re.IGNORECASE),
    re.compile(r"\bmaintainers?\b", re.IGNORECASE),
    re.compile(r"\bCI\b"),
    re.compile(r"\bTODO\b"),
    re.compile(r"\bFIXME\b"),
    re.compile(r"free memory now", re.IGNORECASE),
    re.compile(r"load average", re.IGNORECASE),
]
#: Containers whose content a reader does not see unless they open it (myst-nb's hidden input, removed
#: cells, sphinx-togglebutton's toggles): code inside them is not "visible code".
HIDDEN_INPUT_CLASSES = {"tag_hide-input", "tag_hide-cell", "tag_remove-input", "tag_remove-cell", "toggle-hidden"}
#: MIME types myst-nb writes for an ipywidgets output (a script element the static site cannot run).
WIDGET_SCRIPT_TYPES = {"application/vnd.jupyter.widget-view+json"}
#: ``<link rel=…>`` values that are navigation, not something the browser fetches.
NAV_LINK_RELS = {"canonical", "alternate", "prev", "next", "index", "search", "author", "license", "help",
                 "top", "up", "first", "last", "bookmark", "start", "contents", "copyright", "glossary", "me"}
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
             "track", "wbr"}
#: Elements whose ``src``/``href``/``data``/``poster``/``srcset`` the browser loads.
LOADING_ATTRS = {"script": ("src",), "img": ("src", "srcset"), "iframe": ("src",), "frame": ("src",),
                 "embed": ("src",), "object": ("data",), "video": ("src", "poster"), "audio": ("src",),
                 "source": ("src", "srcset"), "track": ("src",), "input": ("src",)}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)['"]""", re.IGNORECASE)
SKIP_TEXT_TAGS = {"script", "style", "template", "noscript"}


@dataclasses.dataclass(frozen=True)
class Failure:
    page: str
    rule: str
    detail: str


# --- A small DOM --------------------------------------------------------------------------------------

class Node:
    __slots__ = ("tag", "attrs", "children", "parent")

    def __init__(self, tag, attrs=None, parent=None):
        self.tag = tag
        self.attrs = dict(attrs or {})
        self.children = []
        self.parent = parent

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def iter(self):
        """Every element below this one, in document order (text is a plain ``str`` child)."""
        stack = [c for c in reversed(self.children) if isinstance(c, Node)]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(c for c in reversed(node.children) if isinstance(c, Node))

    def find_all(self, tag=None, cls=None):
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]

    def text(self, skip=lambda node: False) -> str:
        parts = []

        def walk(node):
            for child in node.children:
                if isinstance(child, str):
                    parts.append(child)
                elif child.tag not in SKIP_TEXT_TAGS and not skip(child):
                    walk(child)
                    if child.tag in ("p", "div", "li", "tr", "br", "pre", "section", "h1", "h2", "h3", "h4",
                                     "dt", "dd", "figcaption", "summary", "td", "th"):
                        parts.append("\n")

        walk(self)
        return "".join(parts)


class _TreeBuilder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, ((k, v if v is not None else "") for k, v in attrs), self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, ((k, v if v is not None else "") for k, v in attrs), self.stack[-1])
        self.stack[-1].children.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):  # close up to the matching open element, if any
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


@dataclasses.dataclass
class Page:
    """One HTML page of the build: ``name`` relative to the build folder, ``root`` its tree."""

    build_dir: pathlib.Path
    path: pathlib.Path
    root: Node

    @property
    def name(self) -> str:
        return self.path.relative_to(self.build_dir).as_posix()

    @functools.cached_property
    def article(self) -> Node:
        """The reader's content (the theme's ``<article>``/``<main>``; the whole page if neither)."""
        for node in self.root.iter():
            if node.tag == "article" or (node.tag == "div" and "bd-article" in node.classes):
                return node
        for node in self.root.iter():
            if node.tag == "main":
                return node
        return self.root

    def local_file(self, url: str) -> pathlib.Path | None:
        """The file a relative URL of this page points to, or ``None`` (remote, data:, anchor)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path:
            return None
        return (self.path.parent / urllib.parse.unquote(parts.path)).resolve()


def load_page(build_dir: pathlib.Path, path: pathlib.Path) -> Page:
    return Page(build_dir, path, parse_html(path.read_text(encoding="utf-8", errors="replace")))


def _has_class(node: Node, names: set[str]) -> bool:
    return bool(node.classes & names)


def _inside(node: Node, predicate) -> bool:
    return any(predicate(a) for a in node.ancestors())


def _is_remote(url: str) -> bool:
    url = url.strip()
    parts = urllib.parse.urlsplit(url if not url.startswith("//") else "http:" + url)
    if parts.scheme in ("", "data", "blob", "about", "javascript", "mailto"):
        return bool(url.startswith("//") and parts.hostname not in ("localhost", "127.0.0.1", "::1"))
    if parts.scheme in ("file",):
        return False
    return parts.hostname not in ("localhost", "127.0.0.1", "::1")


def _srcset_urls(value: str) -> list[str]:
    return [item.strip().split()[0] for item in value.split(",") if item.strip()]


def _is_cell_input(node: Node) -> bool:
    return "cell_input" in node.classes


def _is_hidden_container(node: Node) -> bool:
    return _has_class(node, HIDDEN_INPUT_CLASSES) or (node.tag == "details" and "hide" in node.classes)


# --- Rules --------------------------------------------------------------------------------------------

_css_cache: dict[pathlib.Path, list[str]] = {}


def _css_remote_urls(css: str) -> list[str]:
    return [u for m in CSS_URL.finditer(css) for u in m.groups() if u and _is_remote(u)]


def rule_remote_resources(page: Page) -> list[Failure]:
    """Everything the page *loads* (not ``<a href>``) must come from the site itself."""
    found = []
    for node in page.root.iter():
        for attr in LOADING_ATTRS.get(node.tag, ()):
            value = node.attrs.get(attr)
            if value:
                urls = _srcset_urls(value) if attr == "srcset" else [value]
                found += [f"<{node.tag} {attr}={u}>" for u in urls if _is_remote(u)]
        if node.tag == "link":
            rels = set((node.attrs.get("rel") or "").lower().split())
            href = node.attrs.get("href", "")
            if href and not (rels and rels <= NAV_LINK_RELS):
                if _is_remote(href):
                    found.append(f"<link rel={' '.join(sorted(rels))} href={href}>")
                elif "stylesheet" in rels:
                    css_file = page.local_file(href)
                    if css_file is not None and css_file.suffix == ".css" and css_file.is_file():
                        if css_file not in _css_cache:
                            _css_cache[css_file] = _css_remote_urls(css_file.read_text(errors="replace"))
                        found += [f"url({u}) in {href}" for u in _css_cache[css_file]]
        if node.tag == "style":
            found += [f"url({u}) in <style>" for u in _css_remote_urls(node.text())]
        if "style" in node.attrs:
            found += [f"url({u}) in style= of <{node.tag}>" for u in _css_remote_urls(node.attrs["style"])]
    return [Failure(page.name, "remote-resource", f) for f in dict.fromkeys(found)]


def _prose_and_output_text(page: Page) -> str:
    """The article's text a reader sees: prose, captions, outputs; not code inputs, not inline ``code``
    literals of the prose (a page may quote MyST syntax), not the math source MathJax typesets."""
    def skip(node):
        return (_is_cell_input(node) or (node.tag == "code" and not _inside(node, lambda a: a.tag == "pre"))
                or _has_class(node, {"math", "MathJax"}) or "headerlink" in node.classes)

    return page.article.text(skip)


def rule_unrendered_myst(page: Page) -> list[Failure]:
    """MyST syntax that reached the page as plain text (an unknown role, a glue key not found …)."""
    text = _prose_and_output_text(page)
    failures = []
    for m in MYST_PATTERNS.finditer(text):
        line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end()) % (len(text) + 1)]
        failures.append(Failure(page.name, "unrendered-myst", f"{m.group(0)!r} in: {_short(line)}"))
    return failures


def rule_error_in_output(page: Page) -> list[Failure]:
    """A traceback, an exception line or a warning in a cell output (``div.cell_output``)."""
    failures = []
    for out in page.article.find_all(cls="cell_output"):
        text = out.text()
        for m in ERROR_PATTERNS.finditer(text):
            end = text.find("\n", m.end())
            line = text[text.rfind("\n", 0, m.start()) + 1: end if end >= 0 else len(text)]
            failures.append(Failure(page.name, "error-in-output", _short(line)))
    return failures


def rule_image_alt(page: Page) -> list[Failure]:
    """Every image has alt text that describes it (not empty, not its own file name)."""
    failures = []
    for img in page.root.find_all("img"):
        src = img.attrs.get("src", "")
        alt = (img.attrs.get("alt") or "").strip()
        if not alt:
            failures.append(Failure(page.name, "image-alt", f"no alt text: {src}"))
        elif alt == src or pathlib.PurePosixPath(alt).name == pathlib.PurePosixPath(src).name:
            failures.append(Failure(page.name, "image-alt", f"alt text is the file name: {src}"))
    return failures


def png_size_and_dpi(path: pathlib.Path) -> tuple[int, int, float | None]:
    """Width and height in pixels of a PNG file, and its dots per inch from the pHYs chunk (``None``
    without one). ``ValueError`` if the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
            raise ValueError(f"{path} is not a PNG file")
        width, height = struct.unpack(">II", head[16:24])
        f.seek(8)
        while True:
            header = f.read(8)
            if len(header) < 8:
                return width, height, None
            length, kind = struct.unpack(">I4s", header)
            if kind == b"pHYs":
                ppx, _ppy, unit = struct.unpack(">IIB", f.read(9))
                return width, height, (round(ppx * 0.0254, 1) if unit == 1 and ppx else None)  # px/metre → dpi
            if kind in (b"IDAT", b"IEND"):
                return width, height, None
            f.seek(length + 4, 1)


_CSS_LENGTH = re.compile(r"(?:^|;)\s*width\s*:\s*([\d.]+)\s*(px|%)", re.IGNORECASE)


def _available_px(img: Node) -> tuple[int, str]:
    for a in img.ancestors():
        classes = a.classes
        if classes & {"tag_margin", "tag_popout", "margin", "sidebar"}:
            return MARGIN_PX, "margin"
        if classes & {"tag_full-width", "tag_full_width", "full-width", "full_width"}:
            return FULL_WIDTH_PX, "full width"
    return COLUMN_PX, "column"


def displayed_scale(natural_px: int, dpi: float | None, available_px: float, css_width: str | None = None,
                    width_attr: str | None = None) -> tuple[float, float]:
    """``(shown CSS px, scale)`` of an image ``natural_px`` wide at ``dpi`` in a container ``available_px``
    wide. The image keeps its own width (``width`` attribute or CSS ``width``, else its pixel width) but is
    never wider than its container (the theme's ``max-width: 100%``). The scale is the size of its text
    relative to a ``REFERENCE_DPI`` image shown pixel for pixel."""
    intrinsic = float(natural_px)
    m = _CSS_LENGTH.search(css_width or "")
    if m and m.group(2) == "%":
        intrinsic = available_px * float(m.group(1)) / 100
    elif m:
        intrinsic = float(m.group(1))
    elif width_attr and re.fullmatch(r"\s*[\d.]+\s*(px)?\s*", width_attr):
        intrinsic = float(width_attr.strip().removesuffix("px"))
    elif width_attr and width_attr.strip().endswith("%"):
        intrinsic = available_px * float(width_attr.strip()[:-1]) / 100
    shown = min(intrinsic, available_px)
    return shown, shown / natural_px * (dpi or DEFAULT_DPI) / REFERENCE_DPI


def rule_figure_legibility(page: Page) -> list[Failure]:
    """A PNG in a figure or cell output must not be shown below ``LEGIBLE_SCALE`` of its natural size."""
    failures = []
    for img in page.article.find_all("img"):
        if not _inside(img, lambda a: a.tag == "figure" or _has_class(a, {"cell_output", "figure"})):
            continue
        file = page.local_file(img.attrs.get("src", ""))
        if file is None or file.suffix.lower() != ".png" or not file.is_file():
            continue  # SVG scales without loss; remote images are the remote-resource rule's
        try:
            natural, _height, dpi = png_size_and_dpi(file)
        except (OSError, ValueError, struct.error) as err:
            failures.append(Failure(page.name, "figure-legibility", f"{img.attrs.get('src')}: unreadable ({err})"))
            continue
        available, where = _available_px(img)
        shown, scale = displayed_scale(natural, dpi, available, img.attrs.get("style"), img.attrs.get("width"))
        if scale < LEGIBLE_SCALE:
            failures.append(Failure(
                page.name, "figure-legibility",
                f"{img.attrs.get('src')}: {natural} px at {dpi or DEFAULT_DPI:.0f} dpi "
                f"({natural / (dpi or DEFAULT_DPI):.1f} in) shown {shown:.0f} px wide in the {where}: "
                f"scale {scale:.2f} < {LEGIBLE_SCALE} (10-pt labels show at {10 * scale * 100 / 96:.1f} pt)"))
    return failures


def rule_plumbing_in_code(page: Page) -> list[Failure]:
    """A visible code cell (its input neither hidden nor removed) must not show the site's plumbing."""
    failures = []
    for cell_input in page.article.find_all(cls="cell_input"):
        if _inside(cell_input, _is_hidden_container) or _is_hidden_container(cell_input):
            continue
        code = cell_input.text()
        for word in PLUMBING_IN_CODE:
            if word in code:
                line = next(ln for ln in code.splitlines() if word in ln)
                failures.append(Failure(page.name, "plumbing-in-code", f"{word!r} in: {_short(line)}"))
    return failures


#: Pages written for instructors, who run the grading tools themselves: the test runner's name is their
#: instruction there, not maintainer text. Every other maintainer word still fails on these pages.
INSTRUCTOR_PAGES = {"book/appendix/instructor_guide.html", "book/appendix/instructor/syllabus.html",
                    "book/appendix/instructor/rubrics.html"}
INSTRUCTOR_TOOLS = ("nbval", "python -m")


def rule_maintainer_text(page: Page) -> list[Failure]:
    """Words meant for the maintainers (``MAINTAINER_TEXT``) must not reach the reader's prose or outputs."""
    text = _prose_and_output_text(page)
    patterns = MAINTAINER_TEXT
    if page.name in INSTRUCTOR_PAGES:
        patterns = [p for p in MAINTAINER_TEXT if not any(tool in p.pattern for tool in INSTRUCTOR_TOOLS)]
    failures = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.end())
            failures.append(Failure(page.name, "maintainer-text",
                                    f"{m.group(0)!r} in: {_short(text[start: end if end >= 0 else len(text)])}"))
    return failures


def _is_widget(node: Node) -> bool:
    return node.tag == "script" and node.attrs.get("type", "").strip() in WIDGET_SCRIPT_TYPES


def rule_widget_without_figure(page: Page) -> list[Failure]:
    """Each widget output needs a static figure (``<img>``) before it: after the previous widget and in
    the same section, so that a reader of the static site sees what the widget would show."""
    failures = []
    seen_img = False
    section = "(page start)"
    for node in page.article.iter():
        if node.tag == "section":
            seen_img = False
            section = node.attrs.get("id", "(section)")
        elif node.tag == "img":
            seen_img = True
        elif _is_widget(node):
            if not seen_img:
                failures.append(Failure(page.name, "widget-without-figure",
                                        f"widget in section #{section} has no static figure before it"))
            seen_img = False
    return failures


def rule_figure_opens_full_size(page: Page) -> list[Failure]:
    """A PNG figure shown in the text column links to its full-size file, so a reader can click to enlarge it."""
    failures = []
    for img in page.article.find_all("img"):
        if not _inside(img, lambda a: a.tag == "figure" or _has_class(a, {"cell_output", "figure"})):
            continue
        src = img.attrs.get("src", "")
        if not src.lower().endswith(".png"):
            continue
        link = next((a for a in img.ancestors() if a.tag == "a"), None)
        target = (link.attrs.get("href") or "") if link is not None else ""
        if pathlib.PurePosixPath(target.split("#")[0]).name != pathlib.PurePosixPath(src).name:
            failures.append(Failure(page.name, "figure-full-size", f"{src}: not a link to its full-size image"))
    return failures


RULES = [
    ("remote-resource", rule_remote_resources),
    ("unrendered-myst", rule_unrendered_myst),
    ("error-in-output", rule_error_in_output),
    ("image-alt", rule_image_alt),
    ("figure-legibility", rule_figure_legibility),
    ("figure-full-size", rule_figure_opens_full_size),
    ("plumbing-in-code", rule_plumbing_in_code),
    ("maintainer-text", rule_maintainer_text),
    ("widget-without-figure", rule_widget_without_figure),
]


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Running ------------------------------------------------------------------------------------------

def html_pages(build_dir: pathlib.Path) -> list[pathlib.Path]:
    """The site's pages: every ``.html`` file, without the copied sources and static assets."""
    skip = {"_sources", "_static", "_images", "_downloads"}
    return sorted(p for p in build_dir.rglob("*.html") if not skip & set(p.relative_to(build_dir).parts))


def check_site(build_dir: pathlib.Path, rules=RULES) -> list[Failure]:
    build_dir = pathlib.Path(build_dir).resolve()
    pages = html_pages(build_dir)
    if not pages:
        raise FileNotFoundError(f"no HTML pages under {build_dir}: build the site first (make book)")
    failures = []
    for path in pages:
        page = load_page(build_dir, path)
        for _name, rule in rules:
            failures += rule(page)
    return failures


def report(failures: list[Failure], n_pages: int, seconds: float, rules=RULES, out=None) -> None:
    out = out or sys.stdout
    by_rule = collections.defaultdict(list)
    for f in failures:
        by_rule[f.rule].append(f)
    for name, _rule in rules:
        found = by_rule.get(name, [])
        pages = collections.Counter(f.page for f in found)
        print(f"{'FAIL' if found else 'ok  '} {name}: {len(found)} failure(s)"
              + (f" on {len(pages)} page(s)" if found else ""), file=out)
        for page in pages:
            print(f"     {page}", file=out)
            for f in found:
                if f.page == page:
                    print(f"       - {f.detail}", file=out)
    print(f"check_site: {len(failures)} failure(s) on {n_pages} pages in {seconds:.2f} s", file=out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", nargs="?", default="_build/html", type=pathlib.Path)
    parser.add_argument("--rule", action="append", choices=[name for name, _ in RULES],
                        help="run only this rule (repeatable)")
    args = parser.parse_args(argv)
    rules = [r for r in RULES if not args.rule or r[0] in args.rule]
    start = time.perf_counter()
    try:
        failures = check_site(args.build_dir, rules)
    except FileNotFoundError as err:
        print(f"check_site: {err}", file=sys.stderr)
        return 2
    report(failures, len(html_pages(args.build_dir.resolve())), time.perf_counter() - start, rules)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
