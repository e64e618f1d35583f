"""Print the notebooks listed in _toc.yml, one path a line (the set nbval runs).

Exits non-zero when _toc.yml names a file that does not exist or lists no notebook at all, so an
empty test run can never pass as green.
"""

import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


def toc_files(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                yield value
            else:
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


def toc_notebooks() -> list[str]:
    """The notebooks of ``_toc.yml`` in book order; ``ValueError`` if a listed file is missing or none is listed."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    notebooks, missing = [], []
    for entry in toc_files(toc):
        candidates = [ROOT / entry] if pathlib.Path(entry).suffix else [ROOT / f"{entry}{s}" for s in (".ipynb", ".md")]
        found = [c for c in candidates if c.exists()]
        if not found:
            missing.append(entry)
        elif found[0].suffix == ".ipynb":
            notebooks.append(found[0].relative_to(ROOT).as_posix())
    if missing:
        raise ValueError(f"_toc.yml names files that do not exist: {missing}")
    if not notebooks:
        raise ValueError("_toc.yml lists no notebook: nothing for nbval to test.")
    return notebooks


def main() -> int:
    try:
        print("\n".join(toc_notebooks()))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
