"""Run every chapter as a student on a fresh Colab runtime would, and check it with nbval.

    python .ci/colab_run.py COLAB_PYTHON [--workers N]

COLAB_PYTHON is the interpreter of an environment that holds only what Colab preinstalls plus the test
runner (``.ci/colab-requirements.txt``; ``make test`` builds it as ``.venv-colab``). This script

1. copies the repository's files (tracked and new, nothing ignored: no ``.venv``, no ``_build``) into an
   empty folder and installs the course package from that copy, non-editable — what the notebooks'
   ``%pip install`` line does on Colab;
2. copies each notebook of ``_toc.yml`` alone into a folder of its own, so that it can read nothing next
   to it (no repository, no ``book/data``);
3. runs nbval over them (``--nbval-lax``: every cell must run, checked cells must print their stored
   output) and prints how long each notebook took.

With ``--executed DIR`` each chapter is also written to ``DIR/<chapter path>`` as nbval ran it, outputs
and glued numbers included (``.ci/nbval_outputs.py``), and the kernels glue as in the site build: the
tested site is then built from these notebooks, so every chapter is executed once.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))
from toc_notebooks import toc_notebooks  # noqa: E402


def clean_copy(dest: pathlib.Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("python", help="interpreter of the Colab-like environment")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executed", type=pathlib.Path, help="write the executed chapters here")
    args = parser.parse_args(argv)
    args.python = os.path.abspath(args.python)  # the venv's own path: resolving the symlink would leave the venv
    notebooks = toc_notebooks()
    if not notebooks:
        print("no notebook listed in _toc.yml", file=sys.stderr)
        return 1
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_BOOK_BUILD", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    plugin = []
    if args.executed:
        executed = args.executed.resolve()
        shutil.rmtree(executed, ignore_errors=True)
        env["COURSE_EXECUTED_DIR"] = str(executed)
        env["COURSE_BOOK_BUILD"] = "1"   # glue writes what myst_nb.glue writes, for the site built from these
        plugin = ["-p", "nbval_outputs"]
    # Several notebooks run at once: give each kernel its share of the cores, as one notebook alone on a
    # Colab CPU runtime has all of them (oversubscribed OpenMP threads spin and slow everything down).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.workers))))
    with tempfile.TemporaryDirectory(prefix="colab-run-") as tmp:
        tmp = pathlib.Path(tmp)
        src, run = tmp / "course", tmp / "run"
        src.mkdir()
        run.mkdir()
        clean_copy(src)
        pip = [args.python, "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run(pip + ["uninstall", "-y", "pathlen-course-utils"], check=True, env=env, cwd=tmp)
        subprocess.run(pip + ["install", str(src)], check=True, env=env, cwd=tmp)
        shutil.rmtree(src)
        copies = []
        for nb in notebooks:
            folder = run / nb.replace("/", "__").removesuffix(".ipynb")
            folder.mkdir()
            shutil.copy2(ROOT / nb, folder / pathlib.Path(nb).name)
            copies.append(str((folder / pathlib.Path(nb).name).relative_to(run)))
        if plugin:
            shutil.copy2(ROOT / ".ci" / "nbval_outputs.py", run / "nbval_outputs.py")
        report = tmp / "nbval.xml"
        cmd = [args.python, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               "-q", "-n", str(args.workers), "--dist", "loadscope", f"--junitxml={report}", *plugin,
               "--rootdir", str(run), *copies]
        code = subprocess.run(cmd, cwd=run, env=env).returncode
        if report.exists():
            slugs = {copy.split("/")[0]: nb for copy, nb in zip(copies, notebooks)}
            times = dict.fromkeys(notebooks, 0.0)
            for case in ET.parse(report).iter("testcase"):
                where = case.get("file") or case.get("classname", "")
                slug = next((s for s in slugs if where.startswith(s)), None)
                if slug:
                    times[slugs[slug]] += float(case.get("time", 0))
            print(f"\nColab-like run, seconds per notebook ({args.workers} at a time on {os.cpu_count()} cores):")
            for nb, seconds in times.items():
                print(f"  {seconds:6.1f}  {nb}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
