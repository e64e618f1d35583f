"""requirements.lock: the exact version of every package of .venv (``make lock`` writes it).

    python .ci/lock.py write PYTHON   write requirements.lock from what PYTHON's environment holds
    python .ci/lock.py check          exit 1 unless the lock pins every package that requirements.txt and
                                      .ci/colab-requirements.txt name, the latter at their own versions

``make install`` and the Colab-like environment install with ``-c requirements.lock``, so a new release of
numpy or myst-nb changes nothing until someone runs ``make lock`` on purpose. A version's local label
(torch's ``+cpu``) is left out of the lock: the same pin takes the CPU build here and PyPI's elsewhere.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
REQUIREMENTS = [ROOT / "requirements.txt", ROOT / ".ci" / "colab-requirements.txt"]
UNLOCKED = {"pip", "pathlen-course-utils"}  # pip: the venv's own; the course package: installed from the tree
HEADER = """\
# Every package of .venv at an exact version: constraints (-c) for .venv and the Colab-like .venv-colab.
# Written by `make lock` from a fresh environment built from requirements.txt with the pins of
# .ci/colab-requirements.txt; do not edit by hand. After `make lock`, run `make test`.
"""
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;#,]+)\s*(?:[;#]|$))?")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(python: str) -> dict[str, tuple[str, str]]:
    """``{canonical name: (name, version without local label)}`` of PYTHON's environment."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps([(d.metadata['Name'], d.version) for d in m.distributions()]))")
    found = {}
    for name, version in json.loads(subprocess.run([python, "-c", code], check=True, capture_output=True,
                                                   text=True).stdout):
        if name and canonical(name) not in UNLOCKED:
            found[canonical(name)] = (name, version.split("+")[0])
    return found


def requirements(path: pathlib.Path) -> dict[str, str | None]:
    """``{canonical name: exact version or None}`` of a requirements (or lock) file."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith(("#", "-")):
            continue
        match = NAME.match(line)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


def check() -> list[str]:
    pins, problems = requirements(LOCK), []
    for path in REQUIREMENTS:
        for name, version in requirements(path).items():
            if name not in pins:
                problems.append(f"{path.relative_to(ROOT)} names {name}, which {LOCK.name} does not pin")
            elif version and version != pins[name]:
                problems.append(f"{path.relative_to(ROOT)} pins {name}=={version}, {LOCK.name} {pins[name]}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "write":
        packages = installed(argv[1])
        LOCK.write_text(HEADER + "".join(f"{name}=={version}\n" for name, version in
                                         sorted(packages.values(), key=lambda p: canonical(p[0]))), encoding="utf-8")
        print(f"{LOCK.name}: {len(packages)} packages pinned")
        return 0
    if argv == ["check"]:
        problems = check()
        if problems:
            print(*problems, sep="\n")
            print("Run `make lock` to pin the packages the requirements name (then `make test`).")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
