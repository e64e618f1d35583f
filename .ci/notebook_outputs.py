"""The course's rules for stored notebook outputs, on top of nbstripout (which does the stripping).

    python .ci/notebook_outputs.py mark  [NB ...]   set the metadata nbstripout goes by (``make strip``)
    python .ci/notebook_outputs.py check [NB ...]   exit 1 if a notebook breaks a rule below (``make test``)
    python .ci/notebook_outputs.py store NB ...     execute, then mark (``make outputs``; nbstripout follows)

With no NB, every notebook under book/. A code cell tagged ``nbval-check-output`` (nbval's own cell tag,
so the marker never shows in the code a reader sees) is a test: nbval compares its fresh output with the
stored one, and skips the comparison when nothing is stored or the stored cell has no execution count.
The rules:

* a checked cell has ``keep_output: true`` in its metadata (so nbstripout keeps its outputs), stored
  outputs and an execution count;
* no other cell has ``keep_output``, outputs or an execution count.

nbstripout runs with ``--keep-count`` (else it would drop the checked cells' counts), so ``mark`` also
clears the counts of the other cells; the Makefile holds nbstripout's options.
"""

from __future__ import annotations

import pathlib
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARK = "nbval-check-output"  # the cell tag nbval reads (metadata.tags)
OLD_MARK = "NBVAL_CHECK_OUTPUT"  # the comment form: not used, so that no reader sees it


def all_notebooks() -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def checked(cell) -> bool:
    return cell.cell_type == "code" and MARK in cell.metadata.get("tags", [])


def mark(nb) -> bool:
    """Give checked cells ``keep_output: true`` and clear everyone else's; True if anything changed."""
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if checked(cell):
            cell.metadata["keep_output"] = True
            if cell.outputs and cell.execution_count is None:
                cell.execution_count = 1
        else:
            cell.metadata.pop("keep_output", None)
            if cell.cell_type == "code":
                cell.execution_count = None
    return nbformat.writes(nb) != before


def problems(nb) -> list[str]:
    found = []
    for number, cell in enumerate(nb.cells, 1):
        where = f"cell {number} ({cell.get('id', 'no id')})"
        if cell.cell_type == "code" and OLD_MARK in cell.source:
            found.append(f"{where}: the # {OLD_MARK} comment shows on the site; tag the cell {MARK} instead")
        if checked(cell):
            if cell.metadata.get("keep_output") is not True:
                found.append(f"{where}: checked cell without keep_output: true in its metadata")
            if not cell.outputs:
                found.append(f"{where}: checked cell with no stored output")
            elif cell.execution_count is None:
                found.append(f"{where}: checked cell with no execution count (nbval would not compare it)")
        else:
            if "keep_output" in cell.metadata or "keep_output" in cell.metadata.get("tags", []):
                found.append(f"{where}: keep_output on a cell without the {MARK} tag")
            if cell.get("outputs"):
                found.append(f"{where}: stored output in a cell without the {MARK} tag")
            if cell.get("execution_count") is not None:
                found.append(f"{where}: execution count in a cell without the {MARK} tag")
    if "keep_output" in nb.metadata:
        found.append("notebook metadata has keep_output (nbstripout would keep every output)")
    return found


def store(path: pathlib.Path) -> int:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # coalesce_streams: one stored stream per cell, however the kernel flushed it (nbval compares them merged)
    NotebookClient(nb, timeout=600, kernel_name="python3", coalesce_streams=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    cells = [c for c in nb.cells if checked(c)]
    missing = [c for c in cells if not c.outputs]
    mark(nb)
    nbformat.write(nb, path)
    print(f"{path}: stored the output of {len(cells) - len(missing)} checked cell(s)")
    if missing:
        print(f"  {len(missing)} checked cell(s) printed nothing: a checked cell must print its result")
        return 1
    return 0


def main(argv) -> int:
    if not argv or argv[0] not in {"mark", "check", "store"}:
        print(__doc__)
        return 2
    paths = [pathlib.Path(a).resolve() for a in argv[1:]] or all_notebooks()
    if not paths:
        print("no notebook under book/")
        return 1
    failed = 0
    for path in paths:
        if argv[0] == "store":
            failed |= store(path)
            continue
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if argv[0] == "mark":
            if mark(nb):
                nbformat.write(nb, path)
                print(f"{path}: metadata of checked cells set")
        else:
            found = problems(nb)
            for problem in found:
                print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {problem}")
            failed |= bool(found)
    if failed and argv[0] == "check":
        print(f"Fix: `make strip`; a checked cell needs its output stored: `make outputs NB=...` (cells tagged {MARK})")
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
