"""Keep notebook outputs where they are tests, strip them everywhere else.

    python .ci/notebook_outputs.py strip  [NB ...]   strip every notebook under book/ (or the ones named)
    python .ci/notebook_outputs.py verify [NB ...]   exit 1 if strip would change anything
    python .ci/notebook_outputs.py store  NB ...     execute, then keep only the checked cells' outputs

A cell whose source contains ``# NBVAL_CHECK_OUTPUT`` is a test: nbval compares its fresh output with
the stored one, and skips the comparison when nothing is stored or the stored cell has no execution
count. So a checked cell keeps its outputs, an execution count and ``keep_output: true``; every
other cell is committed without outputs or counts, and volatile metadata is dropped.
"""

from __future__ import annotations

import copy
import pathlib
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARK = "NBVAL_CHECK_OUTPUT"
VOLATILE_CELL_KEYS = ("execution", "collapsed", "scrolled", "ExecuteTime")
VOLATILE_NB_KEYS = ("widgets", "signature", "toc", "varInspector")


def all_notebooks() -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def clean(nb):
    nb = copy.deepcopy(nb)
    for key in VOLATILE_NB_KEYS:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type != "code":
            continue
        if MARK in cell.source and cell.outputs:
            cell.metadata["keep_output"] = True
            cell.execution_count = cell.execution_count or 1
        else:
            cell.metadata.pop("keep_output", None)
            cell.outputs = []
            cell.execution_count = None
    return nb


def strip(paths, verify: bool) -> int:
    dirty = []
    for path in paths:
        original = path.read_text(encoding="utf-8")
        cleaned = nbformat.writes(clean(nbformat.reads(original, as_version=4))) + "\n"
        if cleaned != original:
            dirty.append(path)
            if not verify:
                path.write_text(cleaned, encoding="utf-8")
    if verify and dirty:
        print("Notebooks with outputs or metadata to strip (run `make strip`):", *dirty, sep="\n  ")
        return 1
    return 0


def store(paths) -> int:
    from nbclient import NotebookClient

    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        checked = [c for c in nb.cells if c.cell_type == "code" and MARK in c.source]
        missing = [c for c in checked if not c.outputs]
        nbformat.write(clean(nb), path)
        print(f"{path}: stored the output of {len(checked) - len(missing)} checked cell(s)")
        if missing:
            print(f"  {len(missing)} checked cell(s) printed nothing: a checked cell must print its result")
            return 1
    return 0


def main(argv) -> int:
    if not argv or argv[0] not in {"strip", "verify", "store"}:
        print(__doc__)
        return 2
    paths = [pathlib.Path(a).resolve() for a in argv[1:]] or all_notebooks()
    if not paths:
        print("no notebook under book/")
        return 1
    if argv[0] == "store":
        return store(paths)
    return strip(paths, verify=argv[0] == "verify")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
