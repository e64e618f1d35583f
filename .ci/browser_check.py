"""Optional: load every page of the built site in headless Chromium, as a reader's browser would.

    python .ci/browser_check.py [BUILD_DIR] [--out DIR] [--chromium PATH] [--page GLOB ...]

Needs the system Chromium (Debian: ``apt-get install chromium``) and the ``playwright`` Python package
(``pip install playwright`` into the environment that runs this; it is not a course requirement, and no
browser is downloaded: Playwright drives ``/usr/bin/chromium``). The site is served from BUILD_DIR
(default ``_build/html``) by ``http.server`` on a free localhost port.

Each page is loaded once, as a first-time visitor (nothing in local storage). Fails (exit 1) on a
console error other than the known harmless ``THEBE_JS_URL`` one, an uncaught page error, a missing
file (HTTP 404 …), or a request to any host but localhost (Chromium resolves no other host name). Saves
a desktop (1280×900) and a phone (390×844) full-page screenshot of each page under ``--out`` (default
``_build/screenshots``), and prints notes a reader would notice: a page wider than the phone screen,
and figures shown below ``LEGIBLE_SCALE`` (see check_site.py).
Exit 2: Chromium or Playwright is missing.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import functools
import http.server
import pathlib
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from check_site import COLUMN_PX, DEFAULT_DPI, LEGIBLE_SCALE, REFERENCE_DPI, html_pages, png_size_and_dpi  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
#: Console messages that are known and harmless: sphinx-thebe's script refers to THEBE_JS_URL on every
#: page, although the launch button (and so thebe itself) is off.
HARMLESS_CONSOLE = ("THEBE_JS_URL",)
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
#: Chromium resolves no host name but localhost: a request to another host fails (and is reported).
BLOCK_REMOTE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
#: Files a browser asks for on its own, whose absence the reader never sees.
HARMLESS_MISSING = ("/favicon.ico",)

# Every figure in a cell output or figure directive: its natural width and the width it is shown at.
FIGURES_JS = """() => [...document.querySelectorAll('article img')]
  .filter(i => i.closest('figure, .cell_output') && i.naturalWidth > 0)
  .map(i => ({src: i.getAttribute('src'), natural: i.naturalWidth, shown: i.getBoundingClientRect().width}))"""
LAYOUT_JS = """() => { const a = document.querySelector('article.bd-article'), s = a && getComputedStyle(a);
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          article: a ? a.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight) : null}; }"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` on a free localhost port in a background thread; returns the server and its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check_pages(build_dir: pathlib.Path, out_dir: pathlib.Path, chromium: str, only=()) -> tuple[list[str], list[str]]:
    """Load every page once, as a first-time visitor, and screenshot it at both sizes; returns
    ``(failures, notes)``."""
    from playwright.sync_api import sync_playwright

    build_dir = build_dir.resolve()
    pages = [p.relative_to(build_dir).as_posix() for p in html_pages(build_dir)]
    pages = [p for p in pages if not only or any(fnmatch.fnmatch(p, pattern) for pattern in only)]
    failures, notes, columns = [], [], set()
    server, base = serve(build_dir)
    try:
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="browser-check-") as profile:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS + [BLOCK_REMOTE],
                viewport=VIEWPORTS["desktop"], service_workers="block")
            # Every page as a reader who arrives on it first (from a search engine): nothing stored yet.
            context.add_init_script("try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}")
            for name in pages:
                failures += _check_page(context, base, build_dir, name, out_dir, notes, columns)
            context.close()
    finally:
        server.shutdown()
    if columns:
        notes.insert(0, f"article column on the desktop: {min(columns):.0f}–{max(columns):.0f} px "
                        f"(check_site.py assumes a {COLUMN_PX} px figure column)")
    return failures, notes


def _text_scale(build_dir: pathlib.Path, name: str, fig: dict) -> float:
    """As check_site.py: (shown px / PNG px) · (PNG dpi / REFERENCE_DPI), the size of the figure's text
    relative to a 100-dpi figure shown pixel for pixel."""
    dpi = None
    file = build_dir / urllib.parse.unquote(urllib.parse.urlsplit(urllib.parse.urljoin(name, fig["src"])).path)
    if file.suffix.lower() == ".png" and file.is_file():
        try:
            dpi = png_size_and_dpi(file)[2]
        except ValueError:
            pass
    return fig["shown"] / fig["natural"] * (dpi or DEFAULT_DPI) / REFERENCE_DPI


def _check_page(context, base: str, build_dir: pathlib.Path, name: str, out_dir: pathlib.Path, notes: list,
                columns: set) -> list[str]:
    failures, messages = [], []
    page = context.new_page()
    page.on("console", lambda m: messages.append((m.type, m.text)))
    page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))

    def on_request(request):
        parts = urllib.parse.urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
            failures.append(f"{name}: request to another host: {request.url}")

    def on_response(response):
        if response.status >= 400 and not urllib.parse.urlsplit(response.url).path.endswith(HARMLESS_MISSING):
            failures.append(f"{name}: {response.status} for {response.url.removeprefix(base)}")

    page.on("request", on_request)
    page.on("response", on_response)
    try:
        page.goto(base + name, wait_until="load", timeout=30_000)
        page.wait_for_timeout(300)  # MathJax and the theme's scripts settle
        for view in ("desktop", "phone"):
            page.set_viewport_size(VIEWPORTS[view])
            page.wait_for_timeout(100)
            shot = out_dir / view / (name.removesuffix(".html").replace("/", "__") + ".png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            layout = page.evaluate(LAYOUT_JS)
            figures = [dict(f, scale=_text_scale(build_dir, name, f)) for f in page.evaluate(FIGURES_JS)]
            small = [f for f in figures if f["scale"] < LEGIBLE_SCALE]
            if layout["scrollWidth"] > layout["innerWidth"] + 1:
                notes.append(f"{name} ({view}): the page is {layout['scrollWidth']} px wide in a "
                             f"{layout['innerWidth']} px window: the reader scrolls sideways")
            if view == "desktop":
                if layout["article"]:
                    columns.add(layout["article"])
                notes += [f"{name} (desktop): {f['src']} {f['natural']} px shown at {f['shown']:.0f} px "
                          f"(scale {f['scale']:.2f})" for f in small]
            elif small:
                notes.append(f"{name} (phone): {len(small)} of {len(figures)} figure(s) shown below scale "
                             f"{LEGIBLE_SCALE} (smallest {min(f['scale'] for f in small):.2f})")
    except Exception as err:  # a page that does not load is a failure, not a crash
        failures.append(f"{name}: did not load: {str(err).splitlines()[0]}")
    finally:
        page.close()
    for kind, text in messages:
        if kind not in ("error", "pageerror") or any(h in text for h in HARMLESS_CONSOLE):
            continue
        if text.startswith("Failed to load resource"):
            continue  # reported above with its URL (or a blocked request to another host)
        failures.append(f"{name}: console {kind}: {text[:300]}")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", nargs="?", default="_build/html", type=pathlib.Path)
    parser.add_argument("--out", default="_build/screenshots", type=pathlib.Path)
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--page", action="append", default=[], metavar="GLOB",
                        help="only the pages matching GLOB, e.g. 'book/part1*' (repeatable)")
    args = parser.parse_args(argv)
    if not pathlib.Path(args.chromium).exists():
        print(f"browser_check: no Chromium at {args.chromium} (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("browser_check: the playwright package is missing (pip install playwright; "
              "it drives the system Chromium, no browser download)", file=sys.stderr)
        return 2
    if not html_pages(args.build_dir.resolve()):
        print(f"browser_check: no HTML pages under {args.build_dir}: build the site first", file=sys.stderr)
        return 2
    start = time.perf_counter()
    failures, notes = check_pages(args.build_dir, args.out, args.chromium, args.page)
    for note in notes:
        print(f"note: {note}")
    for failure in failures:
        print(f"FAIL {failure}")
    repeated = collections.Counter(f.split(": ", 1)[1] for f in failures)
    for text, count in repeated.most_common():
        if count > 1:
            print(f"     ({count} pages) {text}")
    print(f"browser_check: {len(failures)} failure(s), {len(notes)} note(s), screenshots in {args.out}, "
          f"{time.perf_counter() - start:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
