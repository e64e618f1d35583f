"""Point the book at the repository it is published from (for a fork or a course mirror).

    python .ci/set_repository.py https://github.com/OWNER/REPO

Rewrites ``repository.url`` in ``_config.yml`` (the source of the site's repository and Colab
buttons) and the ``%pip install git+…`` line of every notebook's first cell (what a fresh Colab
runtime installs). Nothing else refers to the repository's address.
"""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
URL = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")


def main(argv) -> int:
    if len(argv) != 1 or not URL.fullmatch(argv[0].rstrip("/")):
        print(__doc__)
        return 2
    url = argv[0].rstrip("/")
    config = ROOT / "_config.yml"
    text = config.read_text(encoding="utf-8")
    config.write_text(re.sub(r"(repository:\s*\n\s*url:\s*)\S+", rf"\g<1>{url}", text), encoding="utf-8")
    changed = 0
    for nb in sorted((ROOT / "book").rglob("*.ipynb")):
        raw = nb.read_text(encoding="utf-8")
        data = json.loads(raw)
        edited = 0
        for cell in data["cells"]:
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            new = re.sub(r"(%pip install -q git\+)" + URL.pattern, rf"\g<1>{url}", src)
            if new != src:
                cell["source"] = new.splitlines(keepends=True)
                edited += 1
        changed += edited
        if edited:
            nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"_config.yml and {changed} notebook cell(s) now point at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
