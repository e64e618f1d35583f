"""Point the book at the repository it is published from (your fork or your course's mirror).

    python .ci/set_repository.py https://github.com/OWNER/REPO [BRANCH]   set it (BRANCH: main)
    python .ci/set_repository.py --unset                                  no repository (the default)
    python .ci/set_repository.py --check                                  exit 1 while none is set

One setting, two places that use it:

* ``repository:`` in ``_config.yml`` — the site's repository and "open in Colab" buttons;
* the first code cell of every notebook — what a fresh Colab runtime installs:
  ``%pip install "pathlen-course-utils @ git+URL@BRANCH"``, from the same branch the button opens.

While no repository is set, the buttons are off and the first cell tells a reader how to install the
course package from their own copy, instead of installing from an address nobody here controls.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = ROOT / "_config.yml"
URL = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")
BRANCH = re.compile(r"[\w./-]+")
DIST = "pathlen-course-utils"

# The install block of every notebook's first code cell: from ``try:`` to the blank line after it.
BLOCK = re.compile(r"try:\n    import utils\.report\n(?:.*\n)*?\n", re.M)


def install_block(url: str | None, branch: str = "main") -> str:
    """The first lines of every notebook's setup cell for this repository setting."""
    if url:
        action = f'    %pip install -q "{DIST} @ git+{url}@{branch}"\n'
    else:
        action = ("    raise ModuleNotFoundError(\n"
                  f"        \"This notebook needs the course package ({DIST}). In your copy of the course \"\n"
                  "        \"repository run `pip install .` (on Colab: upload the repository folder and run \"\n"
                  "        \"`%pip install ./FOLDER`), then run this cell again.\") from None\n")
    return "try:\n    import utils.report\nexcept ModuleNotFoundError:\n" + action + "\n"


def read_setting() -> tuple[str | None, str]:
    """``(url or None, branch)`` as ``_config.yml`` has them."""
    text = CONFIG.read_text(encoding="utf-8")
    block = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", text, re.M)
    if not block:
        return None, "main"
    url = re.search(r"^\s+url:\s*\"?([^\s\"]*)\"?\s*$", block.group(1), re.M)
    branch = re.search(r"^\s+branch:\s*\"?([^\s\"]*)\"?\s*$", block.group(1), re.M)
    return (url.group(1) or None) if url else None, (branch.group(1) if branch else "main") or "main"


def notebooks() -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / "book").rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts)


def first_code_cell(data: dict) -> dict:
    return next(c for c in data["cells"] if c["cell_type"] == "code")


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def write_setting(url: str | None, branch: str) -> int:
    text = CONFIG.read_text(encoding="utf-8")
    text = re.sub(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+url:)[^\n]*", rf'\g<1> "{url or ""}"', text, flags=re.M)
    text = re.sub(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+branch:)[^\n]*", rf"\g<1> {branch}", text, flags=re.M)
    text = re.sub(r"^([ \t]+use_repository_button:)[^\n]*", rf"\g<1> {'true' if url else 'false'}", text,
                  flags=re.M)
    text = re.sub(r'^([ \t]+colab_url:)[^\n]*', rf'\g<1> "{"https://colab.research.google.com" if url else ""}"',
                  text, flags=re.M)
    CONFIG.write_text(text, encoding="utf-8")
    block, changed = install_block(url, branch), 0
    for nb in notebooks():
        data = json.loads(nb.read_text(encoding="utf-8"))
        cell = first_code_cell(data)
        old = source(cell)
        if not BLOCK.search(old):
            raise SystemExit(f"{nb}: the first code cell has no install block (try: import utils.report ...)")
        new = BLOCK.sub(lambda _m: block, old, count=1)
        if new != old:
            cell["source"] = new.splitlines(keepends=True)
            nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            changed += 1
    return changed


def check() -> list[str]:
    """Problems with the current setting: notebooks out of step with ``_config.yml``."""
    url, branch = read_setting()
    block = install_block(url, branch)
    problems = []
    for nb in notebooks():
        cell = source(first_code_cell(json.loads(nb.read_text(encoding="utf-8"))))
        found = BLOCK.search(cell)
        if not found or found.group(0) != block:
            problems.append(f"{nb.relative_to(ROOT)}: its install cell does not match _config.yml's repository")
    return problems


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        problems = check()
        print(*problems, sep="\n") if problems else None
        url, _ = read_setting()
        if not url:
            print("warning: no repository is set, so the site has no Colab/repository buttons and the notebooks "
                  "ask readers to install the course package from their own copy. To publish, run: "
                  "python .ci/set_repository.py https://github.com/OWNER/REPO")
        return 1 if problems else 0
    if argv == ["--unset"]:
        url, branch = None, "main"
    elif 1 <= len(argv) <= 2 and URL.fullmatch(argv[0].rstrip("/")) and (len(argv) == 1 or BRANCH.fullmatch(argv[1])):
        url, branch = argv[0].rstrip("/"), argv[1] if len(argv) == 2 else "main"
    else:
        print(__doc__)
        return 2
    changed = write_setting(url, branch)
    where = f"{url} (branch {branch})" if url else "no repository (buttons off; notebooks ask for a local install)"
    print(f"_config.yml and {changed} notebook(s) now point at {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
