"""Sphinx setup for the course site (loaded through ``sphinx.local_extensions`` in ``_config.yml``).

``COURSE_BOOK_BUILD=1`` tells :func:`utils.report.glue`, inside every notebook executed for the site,
to store its numbers with myst-nb's ``glue`` for the prose instead of showing them as a table.

The exercises are written in otter-grader's notebook format (CONTRIBUTING.md). Its markers are for the
student edition; the site shows the solution and test code without them: the raw marker cells are dropped,
and so are the marker comments, the prompt block and the test configuration of each code cell (none of which
changes what the cell computes).
"""

import json
import os
import re

MARKER_CELL = re.compile(r"^\s*#\s*(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT)\b", re.I)
MARKER_LINE = re.compile(r"^[ \t]*#\s*(BEGIN SOLUTION( NO PROMPT)?|END SOLUTION)[ \t]*\n?", re.M)
PROMPT = re.compile(r'^[ \t]*"""\s*#\s*BEGIN PROMPT.*?^[ \t]*"""\s*#\s*END PROMPT[ \t]*\n?', re.S | re.M)
TEST_CONFIG = re.compile(r'^[ \t]*"""\s*#\s*BEGIN TEST CONFIG.*?^[ \t]*"""\s*#\s*END TEST CONFIG[ \t]*\n?', re.S | re.M)


def _text(cell):
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def strip_otter(notebook: dict) -> dict:
    """The notebook without otter-grader's markers (see the module docstring)."""
    cells = []
    for cell in notebook.get("cells", []):
        text = _text(cell)
        if cell.get("cell_type") == "raw" and MARKER_CELL.match(text):
            continue
        if cell.get("cell_type") == "code":
            text = TEST_CONFIG.sub("", PROMPT.sub("", MARKER_LINE.sub("", text)))
            cell = dict(cell, source=text.rstrip("\n"))
        cells.append(cell)
    return dict(notebook, cells=cells)


def _source_read(app, docname, source):
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    notebook = json.loads(source[0])
    source[0] = json.dumps(strip_otter(notebook), ensure_ascii=False)


def setup(app):
    os.environ["COURSE_BOOK_BUILD"] = "1"
    app.connect("source-read", _source_read)
    app.add_directive("course-chapter-table", _chapter_table_directive())
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# ---------------------------------------------------------------------------------------------------------
# The instructor kit's chapter table: reading time, exercises and points, measured run time
# ---------------------------------------------------------------------------------------------------------

WORDS_PER_MINUTE = 200          # a technical text read with care
MINUTES_PER_FIGURE = 0.5        # looking at one figure and its caption
FIGURE_CALL = re.compile(r"\b(plt\.subplots|plt\.figure|show_figure|\.savefig)\(")


def chapter_facts(path) -> dict:
    """Words, figures, exercises, questions and points of one chapter notebook (instructor kit)."""
    import pathlib

    notebook = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    words = figures = exercises = 0
    questions, points, manual = 0, 0, 0
    for cell in notebook["cells"]:
        text = _text(cell)
        if cell["cell_type"] == "markdown":
            exercises += len(re.findall(r"^:{3,}\{exercise\}", text, re.M))
            prose = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$|<[^>]+>|```.*?```", " ", text, flags=re.S)
            words += len(re.findall(r"[A-Za-z][A-Za-z'-]*", prose))
        elif cell["cell_type"] == "code":
            figures += len(FIGURE_CALL.findall(text))
        elif cell["cell_type"] == "raw" and re.match(r"\s*#\s*BEGIN QUESTION", text):
            questions += 1
            m = re.search(r"^points:\s*([\d.]+)", text, re.M)
            points += float(m.group(1)) if m else 0
            manual += bool(re.search(r"^manual:\s*true", text, re.M))
    minutes = words / WORDS_PER_MINUTE + figures * MINUTES_PER_FIGURE
    return {"words": words, "figures": figures, "reading_min": minutes, "exercises": exercises,
            "questions": questions, "manual": manual, "points": points}


def _chapter_table(app) -> list[str]:
    """MyST lines of the table: one row per chapter of _toc.yml."""
    import pathlib

    import yaml

    root = pathlib.Path(app.srcdir)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    times_file = root / "book" / "appendix" / "instructor" / "chapter_times.json"
    times = json.loads(times_file.read_text(encoding="utf-8")) if times_file.exists() else {"chapters": {}}
    number, lines = 0, []
    lines += ["| | chapter | reading | exercises (questions, written) | points | run time, 2 CPU cores |",
              "|---|---|---|---|---|---|"]
    for part in toc["parts"]:
        if not part.get("numbered"):
            continue
        for entry in part["chapters"]:
            number += 1
            path = root / f"{entry['file']}.ipynb"
            if not path.exists():
                continue
            facts = chapter_facts(path)
            run = times["chapters"].get(entry["file"])
            run_text = f"{run:.0f} s" if run is not None else "–"
            lines.append(f"| {number} | {{doc}}`/{entry['file']}` | {facts['reading_min']:.0f} min "
                         f"| {facts['exercises']} ({facts['questions']}, {facts['manual']}) "
                         f"| {facts['points']:.0f} | {run_text} |")
    return lines


def _chapter_table_directive():
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class ChapterTable(SphinxDirective):
        """``{course-chapter-table}``: the instructor kit's table of every numbered chapter."""

        def run(self):
            container = nodes.container()
            self.state.nested_parse(StringList(_chapter_table(self.env.app)), self.content_offset, container)
            return container.children

    return ChapterTable
