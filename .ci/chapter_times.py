"""Measure each chapter's run time as a student runs it, for the instructor kit's syllabus table.

    python .ci/chapter_times.py [--repeats 1]

Each chapter of _toc.yml is executed alone, top to bottom, in a fresh kernel of this environment, with all
the machine's cores (a student's laptop or Colab CPU runtime), and its wall time is written to
book/appendix/instructor/chapter_times.json with the machine it was measured on. Run it on a quiet
machine: anything else running inflates the times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "appendix" / "instructor" / "chapter_times.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs per chapter; the fastest is kept")
    parser.add_argument("--only", nargs="*", default=None,
                        help="measure only these chapters (paths); keep the stored times of the others")
    args = parser.parse_args(argv)
    import nbformat
    import torch
    from nbclient import NotebookClient

    sys.path.insert(0, str(ROOT / ".ci"))
    from toc_notebooks import toc_notebooks

    stored = json.loads(OUT.read_text())["chapters"] if args.only and OUT.exists() else {}
    times = {}
    for rel in toc_notebooks():
        if "/appendix/" in rel:
            continue
        if args.only is not None and rel not in args.only and rel.removesuffix(".ipynb") in stored:
            times[rel.removesuffix(".ipynb")] = stored[rel.removesuffix(".ipynb")]
            continue
        best = float("inf")
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                path = pathlib.Path(tmp) / pathlib.Path(rel).name
                shutil.copy(ROOT / rel, path)
                nb = nbformat.read(path, as_version=4)
                start = time.perf_counter()
                NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute()
                best = min(best, time.perf_counter() - start)
        times[rel.removesuffix(".ipynb")] = round(best, 1)
        print(f"{best:6.1f} s  {rel}", flush=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    OUT.write_text(json.dumps({
        "what": "wall time of each chapter executed alone, top to bottom, in a fresh kernel (seconds; "
                f"the fastest of {args.repeats})",
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "gpu": None, "python": platform.python_version(),
                    "torch": torch.__version__},
        "measured": datetime.date.today().isoformat(),
        "command": "python .ci/chapter_times.py",
        "chapters": times,
    }, indent=1) + "\n")
    print(f"written: {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
