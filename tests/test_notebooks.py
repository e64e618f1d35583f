"""Static checks of every chapter notebook: the standards nbval alone cannot see.

* every notebook under book/ is listed in _toc.yml (else the site and nbval would skip it);
* every notebook asserts something (else nbval only checks that it runs);
* every cell tagged ``nbval-check-output`` has a stored output marked ``keep_output`` (else nothing is
  compared), and no other cell stores output;
* every chapter (``book/part*/``) states learning objectives, has exercises and glues numbers;
* every notebook runs on a fresh Colab runtime: it imports only the standard library, what Colab
  preinstalls and what the course package declares; its first cell installs the package from the
  repository set in ``_config.yml`` (or, while none is set, says how to install it from a local copy);
  its boxes and quizzes are HTML that Jupyter renders, not MyST directives that show as raw text.
"""

import ast
import functools
import json
import pathlib
import re
import shutil
import sys

import pytest
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))
import set_repository  # noqa: E402
import toc_notebooks as toc  # noqa: E402

NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)
IDS = {"ids": lambda p: p.relative_to(ROOT).as_posix()}

# What a fresh Colab runtime has (and the course may use) besides the standard library.
COLAB_PREINSTALLED = {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "pandas", "scipy", "sklearn",
                      "statsmodels", "IPython", "ipykernel"}


@functools.cache
def toc_notebooks() -> list[str]:
    return toc.toc_notebooks()


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no chapter notebook under book/"


@pytest.mark.parametrize("nb", NOTEBOOKS, **IDS)
def test_notebook_is_in_toc(nb):
    assert nb.relative_to(ROOT).as_posix() in toc_notebooks(), f"{nb.name} is not listed in _toc.yml"


@pytest.mark.parametrize("nb", NOTEBOOKS, **IDS)
def test_notebook_asserts_something(nb):
    code = [src(c) for c in cells(nb) if c["cell_type"] == "code"]
    assert any(re.search(r"\bassert\b", s) for s in code), f"{nb.name} has no assert: it cannot fail"


@pytest.mark.parametrize("nb", NOTEBOOKS, **IDS)
def test_checked_cells_have_stored_output_and_others_none(nb):
    checked = 0
    for i, cell in enumerate(cells(nb)):
        if cell["cell_type"] != "code":
            continue
        if "nbval-check-output" in cell["metadata"].get("tags", []):
            checked += 1
            assert cell.get("outputs"), f"{nb.name} cell {i}: checked cell without stored output checks nothing"
            assert cell["metadata"].get("keep_output"), f"{nb.name} cell {i}: checked cell lacks keep_output"
        else:
            assert not cell.get("outputs"), f"{nb.name} cell {i}: stored output in an unchecked cell"
    assert checked >= 1, f"{nb.name}: no micro-trace cell tagged nbval-check-output"


CHAPTERS = [p for p in NOTEBOOKS if p.parent.name.startswith("part")]


@pytest.mark.parametrize("nb", CHAPTERS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_chapter_pattern(nb):
    text = "\n".join(src(c) for c in cells(nb) if c["cell_type"] == "markdown")
    assert re.search(r"learning objectives", text, re.I), f"{nb.name}: no learning objectives"
    assert text.count("{exercise}") >= 2, f"{nb.name}: fewer than two exercises"
    assert "{glue" in text, f"{nb.name}: no glued number in the prose"


def declared_imports() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    return {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].replace("-", "_") for d in deps} | {"utils"}


def imported_top_level_modules(code: str) -> set[str]:
    # IPython magics (%pip, !cmd) are not Python: blank them out before parsing.
    code = "\n".join(re.sub(r"^(\s*)[%!].*", r"\1pass", line) for line in code.splitlines())
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("nb", NOTEBOOKS, **IDS)
def test_notebook_imports_only_what_colab_has_or_the_package_declares(nb):
    allowed = COLAB_PREINSTALLED | declared_imports() | set(sys.stdlib_module_names)
    used = set().union(*(imported_top_level_modules(src(c)) for c in cells(nb) if c["cell_type"] == "code"))
    assert used <= allowed, (f"{nb.name} imports {sorted(used - allowed)}, which a fresh Colab runtime lacks: "
                             "declare it in pyproject.toml or use a utils helper (e.g. utils.report.glue)")


@pytest.mark.parametrize("nb", NOTEBOOKS, **IDS)
def test_first_cell_installs_from_the_configured_repository(nb):
    url, branch = set_repository.read_setting()
    first = src(next(c for c in cells(nb) if c["cell_type"] == "code"))
    assert set_repository.install_block(url, branch) in first, (
        f"{nb.name}: the first code cell must start with the install block for {url or 'no repository'}; "
        "run `python .ci/set_repository.py URL` (or `--unset`)")
    assert "github.com/pathlength-course" not in first


@pytest.mark.parametrize("nb", NOTEBOOKS, **IDS)
def test_boxes_and_quizzes_render_outside_the_site(nb):
    for i, cell in enumerate(cells(nb)):
        if cell["cell_type"] != "markdown":
            continue
        found = re.search(r"^(:::+|```+)\{(admonition|dropdown|note|tip|warning|important|exercise)\}",
                          src(cell), re.M)
        assert not found or found.group(2) == "exercise" and found.group(1).startswith(":"), (
            f"{nb.name} cell {i}: `{found.group(0)}` shows as raw text in Jupyter and Colab; write boxes as "
            '<div class="admonition ...">, quizzes as <details class="sd-dropdown ...">, exercises with :::')


def test_set_repository_writes_config_and_every_install_cell(tmp_path, monkeypatch):
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    for nb in NOTEBOOKS:
        (tmp_path / nb.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(nb, tmp_path / nb.relative_to(ROOT))
    monkeypatch.setattr(set_repository, "ROOT", tmp_path)
    monkeypatch.setattr(set_repository, "CONFIG", tmp_path / "_config.yml")
    assert set_repository.main(["https://github.com/someone/course-fork", "spring"]) == 0
    assert set_repository.read_setting() == ("https://github.com/someone/course-fork", "spring")
    config = (tmp_path / "_config.yml").read_text(encoding="utf-8")
    assert "use_repository_button: true" in config and 'colab_url: "https://colab.research.google.com"' in config
    assert set_repository.check() == []
    for nb in set_repository.notebooks():
        first = src(next(c for c in cells(nb) if c["cell_type"] == "code"))
        assert '%pip install -q "pathlen-course-utils @ git+https://github.com/someone/course-fork@spring"' in first
    assert set_repository.main(["--unset"]) == 0
    assert set_repository.read_setting() == (None, "main")
    assert "use_repository_button: false" in (tmp_path / "_config.yml").read_text(encoding="utf-8")
    assert set_repository.check() == []
    assert set_repository.main(["http://example.com/not-github"]) == 2
