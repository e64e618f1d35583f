"""The source folder of a site built from chapters executed beforehand (the build executes nothing).

    python .ci/site_source.py EXECUTED DEST    the instructor site: every chapter of _toc.yml from
                                               EXECUTED/<chapter path> (written by colab_run.py --executed)

``make test`` runs every chapter once, under nbval (``.ci/colab_run.py --executed``), and builds the site
it checks from those executed notebooks; ``make book`` executes the chapters itself. The student site
(``.ci/exercises.py site``) is built the same way from the student notebooks.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))
from toc_notebooks import toc_notebooks  # noqa: E402


def write(dest: pathlib.Path, notebooks: dict[str, dict], *, skip=(), edit_config=None, keep_toc=None) -> None:
    """DEST: the book's pages (without notebooks and without the files whose path starts with one of
    ``skip``), the NOTEBOOKS given (path -> notebook JSON), ``_static``, and ``_config.yml`` with execution
    off (then ``edit_config(config)``), ``_toc.yml`` (only the chapters ``keep_toc(path)`` keeps)."""
    shutil.rmtree(dest, ignore_errors=True)
    skipped = tuple(pathlib.Path(s).name + "*" for s in skip)
    shutil.copytree(ROOT / "book", dest / "book", ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints",
                                                                                "__pycache__", *skipped))
    if (ROOT / "_static").is_dir():
        shutil.copytree(ROOT / "_static", dest / "_static")
    for rel, nb in notebooks.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    if edit_config is not None:
        edit_config(config)
    (dest / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    if keep_toc is not None:
        for part in toc["parts"]:
            part["chapters"] = [c for c in part["chapters"] if keep_toc(c["file"])]
        toc["parts"] = [part for part in toc["parts"] if part["chapters"]]
    (dest / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False, allow_unicode=True))


def instructor(executed: pathlib.Path, dest: pathlib.Path) -> None:
    """The instructor site's source: every notebook of _toc.yml as executed under EXECUTED."""
    missing = [nb for nb in toc_notebooks() if not (executed / nb).exists()]
    if missing:
        raise SystemExit(f"{len(missing)} chapters were not executed (or failed) under {executed}: "
                         + ", ".join(missing[:3]))
    write(dest, {nb: json.loads((executed / nb).read_text()) for nb in toc_notebooks()})


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    instructor(pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]).resolve())
