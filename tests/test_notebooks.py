"""Static checks of every chapter notebook: the standards nbval alone cannot see.

* every notebook under book/ is listed in _toc.yml (else the site and nbval would skip it);
* every notebook asserts something (else nbval only checks that it runs);
* every ``# NBVAL_CHECK_OUTPUT`` cell has a stored output marked ``keep_output`` (else nothing is
  compared), and no other cell stores output;
* every chapter (``book/part*/``) states learning objectives, has exercises and glues numbers.
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def toc_notebooks() -> list[str]:
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "toc_notebooks.py")],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebook under book/"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_is_in_toc(nb):
    assert nb.relative_to(ROOT).as_posix() in toc_notebooks(), f"{nb.name} is not listed in _toc.yml"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_asserts_something(nb):
    code = [src(c) for c in cells(nb) if c["cell_type"] == "code"]
    assert any(re.search(r"\bassert\b", s) for s in code), f"{nb.name} has no assert: it cannot fail"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_checked_cells_have_stored_output_and_others_none(nb):
    checked = 0
    for i, cell in enumerate(cells(nb)):
        if cell["cell_type"] != "code":
            continue
        if "NBVAL_CHECK_OUTPUT" in src(cell):
            checked += 1
            assert cell.get("outputs"), f"{nb.name} cell {i}: checked cell without stored output checks nothing"
            assert cell["metadata"].get("keep_output"), f"{nb.name} cell {i}: checked cell lacks keep_output"
        else:
            assert not cell.get("outputs"), f"{nb.name} cell {i}: stored output in an unchecked cell"
    assert checked >= 1, f"{nb.name}: no # NBVAL_CHECK_OUTPUT micro-trace cell"


CHAPTERS = [p for p in NOTEBOOKS if p.parent.name.startswith("part")]


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_chapter_pattern(nb):
    text = "\n".join(src(c) for c in cells(nb) if c["cell_type"] == "markdown")
    assert re.search(r"learning objectives", text, re.I), f"{nb.name}: no learning objectives"
    assert text.count("{exercise}") >= 2, f"{nb.name}: fewer than two exercises"
    assert "{glue" in text, f"{nb.name}: no glued number in the prose"
