"""A pytest plugin for nbval (``.ci/colab_run.py --executed DIR`` loads it): keep what nbval ran.

nbval executes every code cell of a chapter and compares the checked ones with their stored outputs; it
discards the outputs afterwards. This plugin writes each chapter as nbval ran it — every cell with the
outputs its kernel produced, figures and glued numbers included — to ``$COURSE_EXECUTED_DIR/<chapter
path>``, so that the site ``make test`` checks is built from the very outputs the tests ran (each chapter
is executed once). A chapter whose run failed is not written.
"""

from __future__ import annotations

import os
import pathlib

import nbformat

_chapters: dict[str, object] = {}
_failed: set[str] = set()


def pytest_runtest_makereport(item, call):
    if call.when != "call" or not hasattr(item, "cell") or getattr(item, "test_outputs", None) is None:
        return
    key = str(item.parent.fspath)
    _chapters[key] = item.parent
    item.cell.outputs = list(item.test_outputs)
    if call.excinfo is not None:
        _failed.add(key)


def pytest_sessionfinish(session):
    target = os.environ.get("COURSE_EXECUTED_DIR")
    if not target:
        return
    for path, chapter in _chapters.items():
        if path in _failed:
            continue
        # colab_run.py runs book/part1/x.ipynb as <run>/book__part1__x/x.ipynb
        rel = pathlib.Path(path).parent.name.replace("__", "/") + ".ipynb"
        dest = pathlib.Path(target) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(chapter.nb, str(dest))
