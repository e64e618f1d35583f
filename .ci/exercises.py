"""The exercises of every chapter: their format, the student edition, and grading (CONTRIBUTING.md).

    python .ci/exercises.py check NB...          otter assign each notebook and check the exercise rules
    python .ci/exercises.py student [--site]     write the student notebooks to _build/student/ and, with
                                                 --site, the student site source to _build/student-src/
    python .ci/exercises.py site [--wait S] [--executed DIR]
                                                 only the student site source, from _build/student/, with
                                                 the outputs of the chapters executed under DIR (default:
                                                 the site build's _build/jupyter_execute); with --wait,
                                                 first wait up to S seconds for the site build to have
                                                 executed every chapter
    python .ci/exercises.py leaks DIR...         fail if a solution, hidden test or model answer of any
                                                 chapter appears in a file under DIR (notebooks, HTML)
    python .ci/exercises.py grade STEM DIR       grade every submission DIR/*.ipynb of chapter STEM with
                                                 otter run; writes DIR/grades.csv (one row per submission)

The chapters are the notebooks of _toc.yml. ``otter assign`` (otter-grader) does the assignment work: it
strips the solutions, writes the public and hidden tests and the autograder zip. This script only adds what
a Jupyter Book chapter needs around it: the assignment configuration, the removal of the book's solution
fences, a check cell that works with no files beside the notebook (Colab), and the student site.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import html
import io
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
STUDENT = BUILD / "student"
STUDENT_SRC = BUILD / "student-src"
EXECUTED = BUILD / "jupyter_execute"
OTTER_VERSION = "7.0.0"
# Pages only the instructor edition has.
INSTRUCTOR_ONLY = ("book/appendix/instructor_guide", "book/appendix/instructor")

MARKER = re.compile(r"^\s*#\s*(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT)\b", re.I)
FENCE_START = re.compile(r"^```\{solution-start\}\s*(\S+)", re.M)
FENCE_END = re.compile(r"^```\{solution-end\}", re.M)
EXERCISE = re.compile(r"^:{3,}\{exercise\}", re.M)
TEST_CONFIG = re.compile(r'^\s*"""\s*#\s*BEGIN TEST CONFIG(.*?)"""\s*#\s*END TEST CONFIG\s*\n', re.S)
PROMPT = re.compile(r'^\s*"""\s*#\s*BEGIN PROMPT\s*\n(.*?)^\s*"""\s*#\s*END PROMPT\s*\n?', re.S | re.M)
SOLUTION_LINES = re.compile(r"^[ \t]*#\s*BEGIN SOLUTION.*?^[ \t]*#\s*END SOLUTION[^\n]*\n?", re.S | re.M)
QUIZ_OPTION = re.compile(r'<details class="[^"]*course-quiz-option[^"]*">\s*<summary[^>]*>(.*?)</summary>\s*'
                         r'<div[^>]*>(.*?)</div>\s*</details>', re.S)
ASSIGNMENT_CONFIG = """# ASSIGNMENT CONFIG
name: {name}
init_cell: false
check_all_cell: false
export_cell: false
run_tests: false
solutions_pdf: false
generate: true
tests:
  files: true
  ok_format: false
"""


class FormatError(ValueError):
    """A chapter's exercises break a rule of CONTRIBUTING.md."""


def source(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def toc() -> list[str]:
    """Every notebook of _toc.yml, relative to the repository (.ci/toc_notebooks.py)."""
    sys.path.insert(0, str(ROOT / ".ci"))
    from toc_notebooks import toc_notebooks  # noqa: PLC0415
    return toc_notebooks()


def chapters() -> list[pathlib.Path]:
    return [ROOT / p for p in toc() if "/appendix/" not in p]


# ---------------------------------------------------------------------------------------------------------
# Reading the exercises of a master notebook
# ---------------------------------------------------------------------------------------------------------

def raw_marker(cell) -> tuple[str, str, dict] | None:
    """``(BEGIN|END, QUESTION|SOLUTION|TESTS|PROMPT, config)`` of an otter raw cell, else None."""
    if cell["cell_type"] != "raw":
        return None
    text = source(cell)
    first, _, rest = text.partition("\n")
    m = MARKER.match(first)
    if not m:
        return None
    import yaml  # noqa: PLC0415
    config = yaml.safe_load(rest) if rest.strip() else {}
    return m.group(1).upper(), m.group(2).upper(), config or {}


def prompt_names(code: str) -> list[str]:
    """The names a solution cell's prompt asks for (``name = ...``)."""
    m = PROMPT.search(code)
    if not m:
        return []
    names = []
    try:
        body = ast.parse(m.group(1)).body
    except SyntaxError as err:
        raise FormatError(f"the prompt is not Python: {err}") from None
    for node in body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and node.value.value is Ellipsis):
            raise FormatError(f"a prompt holds only `name = ...` lines, not {ast.unparse(node)!r}")
        for target in node.targets:
            names += [t.id for t in ast.walk(target) if isinstance(t, ast.Name)]
    return names


def read_test(code: str) -> dict:
    import yaml  # noqa: PLC0415
    m = TEST_CONFIG.match(code)
    config = yaml.safe_load(m.group(1)) if m else {}
    body = code[m.end():] if m else code
    tree = ast.parse(body)
    if not (len(tree.body) == 2 and isinstance(tree.body[0], ast.FunctionDef)
            and isinstance(tree.body[1], ast.Expr) and isinstance(tree.body[1].value, ast.Call)):
        raise FormatError(f"a test cell holds one `def test_…(answers)` and one call to it:\n{code}")
    fn = tree.body[0]
    return {"hidden": bool((config or {}).get("hidden", False)), "config": config or {},
            "params": [a.arg for a in fn.args.args], "name": fn.name, "body": ast.unparse(fn)}


def exercises(nb: dict) -> dict:
    """Questions, exercise labels, fences and quiz of a master notebook, checked against the format."""
    cells = nb["cells"]
    questions, stack, labels, public = [], [], [], []
    in_fence, problems = None, []
    for i, cell in enumerate(cells):
        text = source(cell)
        where = f"cell {i} ({cell.get('id')})"
        if cell["cell_type"] == "markdown":
            labels += re.findall(r"^:label:\s*(ex-[\w-]+)", text, re.M) if EXERCISE.search(text) else []
            if FENCE_START.search(text):
                in_fence = FENCE_START.search(text).group(1)
            if FENCE_END.search(text):
                in_fence = None
        marker = raw_marker(cell)
        if cell["cell_type"] == "raw":
            if marker is None:
                problems.append(f"{where}: a raw cell that is not an otter marker")
                continue
            if "remove-cell" not in tags(cell):
                problems.append(f"{where}: the otter marker `{text.splitlines()[0]}` needs the tag remove-cell")
            begin, kind, config = marker
            if begin == "BEGIN":
                if kind == "QUESTION":
                    questions.append({"name": config.get("name"), "manual": bool(config.get("manual")),
                                      "points": config.get("points"), "prompt": [], "tests": [],
                                      "solution_code": [], "solution_md": [], "fence": in_fence})
                stack.append(kind)
            else:
                if not stack or stack[-1] != kind:
                    problems.append(f"{where}: END {kind} without its BEGIN")
                else:
                    stack.pop()
            continue
        block = stack[-1] if stack else None
        if block is None or block == "QUESTION" or (block == "TESTS" and not read_test(text)["hidden"]):
            public.append(SOLUTION_LINES.sub("", text))
        if block == "SOLUTION":
            q = questions[-1]
            if cell["cell_type"] == "code":
                public.append(SOLUTION_LINES.sub("", text))   # the prompt and the lines around it
                q["solution_code"].append(text)
                q["prompt"] += prompt_names(text)
            else:
                q["solution_md"].append(text)
        elif block == "TESTS":
            questions[-1]["tests"].append(read_test(text))
        elif in_fence and not (cell["cell_type"] == "markdown"
                               and (FENCE_START.search(text) or FENCE_END.search(text))):
            problems.append(f"{where}: lies inside the solution of {in_fence} but outside a "
                            "# BEGIN SOLUTION block, so it would reach the student")
    if stack:
        problems.append(f"unclosed otter blocks at the end: {stack}")
    return {"questions": questions, "labels": labels, "problems": problems, "quiz": quiz(cells), "public": public}


def quiz(cells) -> list[dict]:
    """The multiple-choice questions of the ``## Quiz`` section."""
    out, inside = [], False
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        text = source(cell)
        if re.search(r"^## Quiz\s*$", text, re.M):
            inside = True
        elif re.search(r"^#{1,2} ", text, re.M):
            inside = False
        if not inside:
            continue
        for m in re.finditer(r"^\*\*Q(\d+)\.\*\*\s*(.+?)(?=^\*\*Q\d+\.\*\*|\Z)", text, re.S | re.M):
            options = [(html.unescape(re.sub(r"\s+", " ", s)).strip(), b.strip())
                       for s, b in QUIZ_OPTION.findall(m.group(2))]
            out.append({"number": int(m.group(1)), "options": options,
                        "correct": sum(b.startswith("**Correct.**") for _, b in options),
                        "wrong": sum(b.startswith("**Not quite.**") for _, b in options)})
    return out


def rule_problems(info: dict) -> list[str]:
    """Every rule of CONTRIBUTING.md the parsed exercises break."""
    problems = list(info["problems"])
    qs = info["questions"]
    auto = [q for q in qs if not q["manual"]]
    if len(info["labels"]) < 3:
        problems.append(f"{len(info['labels'])} exercises; each chapter has at least three")
    if not any(q["manual"] for q in qs):
        problems.append("no manual (written) question: the design exercise needs one")
    if not any("prediction" in q["prompt"] for q in auto):
        problems.append("no predict-then-measure question (a prompt asking for `prediction`)")
    names = [q["name"] for q in qs]
    if len(set(names)) != len(names) or None in names:
        problems.append(f"question names must be present and unique: {names}")
    for q in qs:
        if q["fence"] is None:
            problems.append(f"{q['name']}: not inside a solution fence (solution-start … solution-end)")
        if q["manual"]:
            if not q["solution_md"]:
                problems.append(f"{q['name']}: a manual question needs a model answer in a SOLUTION block")
            continue
        if not q["prompt"]:
            problems.append(f"{q['name']}: the solution cell has no prompt (`name = ...` lines)")
        public = [t for t in q["tests"] if not t["hidden"]]
        hidden = [t for t in q["tests"] if t["hidden"]]
        if not public or not hidden:
            problems.append(f"{q['name']}: {len(public)} public and {len(hidden)} hidden tests; "
                            "at least one of each")
        for t in q["tests"]:
            message = str(t["config"].get("failure_message") or "")
            if not message or '"' in message or "\\" in message:
                problems.append(f"{q['name']}.{t['name']}: a failure_message is needed, without \" or \\ "
                                "(otter writes it into a Python string)")
            extra = set(t["params"]) - set(q["prompt"])
            if extra:
                problems.append(f"{q['name']}.{t['name']}: parameters {sorted(extra)} are not answers of "
                                f"the prompt {q['prompt']}; import what the test needs inside it")
    if len(info["quiz"]) < 3:
        problems.append(f"{len(info['quiz'])} quiz questions (format `**Q1.**` + options); at least three")
    for item in info["quiz"]:
        n = len(item["options"])
        if not 3 <= n <= 5 or item["correct"] != 1 or item["correct"] + item["wrong"] != n:
            problems.append(f"quiz Q{item['number']}: {n} options, {item['correct']} **Correct.**, "
                            f"{item['wrong']} **Not quite.**; 3–5 options, exactly one correct")
    return problems


# ---------------------------------------------------------------------------------------------------------
# otter assign, and the student notebook
# ---------------------------------------------------------------------------------------------------------

def assign(master: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """Run otter assign on MASTER (with the course's assignment configuration) into OUT; return OUT."""
    from otter.assign import main as otter_assign  # noqa: PLC0415
    nb = json.loads(master.read_text())
    config = {"cell_type": "raw", "id": "otterconf", "metadata": {},
              "source": ASSIGNMENT_CONFIG.format(name=master.stem)}
    nb["cells"].insert(0, config)
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / master.name
        copy.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
        shutil.rmtree(out, ignore_errors=True)
        log = io.StringIO()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            otter_assign(str(copy), str(out), no_pdfs=True, no_run_tests=True)
    return out


CHECKS_CELL = '''\
# The checks of this chapter's exercises (otter-grader). Run this cell once, then each exercise's
# grader.check("…") cell tells you which property your answer still violates.
import importlib.util, pathlib, subprocess, sys
if importlib.util.find_spec("otter") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "otter-grader=={version}"])
import otter

PUBLIC_TESTS = {tests}
_folder = pathlib.Path(".checks") / "{stem}"
_folder.mkdir(parents=True, exist_ok=True)
for _name, _test in PUBLIC_TESTS.items():
    (_folder / _name).write_text(_test)
grader = otter.Notebook(tests_dir=str(_folder))'''


def student_notebook(assigned: pathlib.Path, stem: str) -> dict:
    """The student notebook from otter's output: no solution fences, and a self-contained checks cell."""
    nb = json.loads((assigned / "student" / f"{stem}.ipynb").read_text())
    tests = {p.name: p.read_text() for p in sorted((assigned / "student" / "tests").glob("*.py"))}
    cells = [c for c in nb["cells"]
             if not (c["cell_type"] == "markdown" and (FENCE_START.search(source(c)) or FENCE_END.search(source(c))))]
    first = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and EXERCISE.search(source(c))),
                 None)
    if first is None:
        raise FormatError(f"{stem}: no exercise directive in the student notebook")
    body = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in tests.items()) + "}"
    check = {"cell_type": "code", "id": "otterinit", "metadata": {"tags": ["otter-checks", "hide-input"]},
             "execution_count": None, "outputs": [],
             "source": CHECKS_CELL.format(version=OTTER_VERSION, tests=body, stem=stem)}
    # the heading above the first exercise stays above the checks cell
    head, sep, rest = source(cells[first]).partition(":::")
    if head.strip() and sep:
        cells[first] = dict(cells[first], source=sep + rest)
        heading = {"cell_type": "markdown", "id": "exhead", "metadata": {}, "source": head.rstrip() + "\n"}
        cells[first:first] = [heading, check]
    else:
        cells.insert(first, check)
    for c in cells:
        c.setdefault("metadata", {}).pop("editable", None)
        c["metadata"].pop("deletable", None)
    nb["cells"] = cells
    return nb


def stub_problems(nb: dict, info: dict, tests_dir: pathlib.Path) -> list[str]:
    """Each autograded stub runs without error and fails at least one public test."""
    from otter.test_files.exception_test import ExceptionTestFile  # noqa: PLC0415
    problems = []
    answers = [c for c in nb["cells"] if "otter_answer_cell" in tags(c) and c["cell_type"] == "code"]
    auto = [q for q in info["questions"] if not q["manual"]]
    if len(answers) != len(auto):
        return [f"{len(answers)} answer cells in the student notebook for {len(auto)} autograded questions"]
    for q, cell in zip(auto, answers):
        env: dict = {}
        try:
            exec(compile(source(cell), q["name"], "exec"), env)  # noqa: S102
        except Exception as err:  # noqa: BLE001
            problems.append(f"{q['name']}: the student stub raises {type(err).__name__}: {err}")
            continue
        test = ExceptionTestFile.from_file(str(tests_dir / f"{q['name']}.py"))
        with contextlib.redirect_stdout(io.StringIO()):
            test.run(env)
        if test.passed_all_public:
            problems.append(f"{q['name']}: the blank stub passes every public test")
    return problems


def leak_strings(info: dict) -> list[str]:
    """Fragments that must never reach a student: solution code, hidden tests, model answers."""
    out = []
    for q in info["questions"]:
        for code in q["solution_code"]:
            for m in SOLUTION_LINES.finditer(code):
                out += [line.strip() for line in m.group(0).splitlines()[1:-1]]
        for t in q["tests"]:
            if t["hidden"]:
                out += [line.strip() for line in t["body"].splitlines()[1:]]
        for md in q["solution_md"]:
            out += [s.strip() for s in re.split(r"(?<=[.:;])\s+|\n", md)]
    # short or generic lines (`return x`, `import math`) prove nothing, nor do lines the chapter shows anyway
    public = normalise(json.dumps(info.get("public", [])))
    return sorted({s for s in out if len(s) >= 24 and not s.startswith(("import ", "from ", "#"))
                   and normalise(s) not in public})


def check(master: pathlib.Path) -> list[str]:
    info = exercises(json.loads(master.read_text()))
    problems = rule_problems(info)
    if problems:  # fix the format first: otter assign would fail or strip the wrong cells
        return [f"{master.relative_to(ROOT)}: {p}" for p in problems]
    with tempfile.TemporaryDirectory() as tmp:
        out = assign(master, pathlib.Path(tmp) / "dist")
        nb = student_notebook(out, master.stem)
        problems += stub_problems(nb, info, out / "autograder" / "tests")
        text = normalise(json.dumps([source(c) for c in nb["cells"]]))
        problems += [f"leaks into the student notebook: {s!r}" for s in leak_strings(info)
                     if normalise(s) in text]
    return [f"{master.relative_to(ROOT)}: {p}" for p in problems]


def normalise(text: str, markup: bool = False) -> str:
    """Whitespace-free text, so a code line matches inside JSON and highlighted HTML alike. With
    ``markup`` (an HTML page) the tags go and the entities are unescaped; elsewhere a ``<`` is code."""
    if text.startswith("["):
        text = " ".join(json.loads(text))
    if markup:
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------------------------------------------------
# The student edition
# ---------------------------------------------------------------------------------------------------------

def merge_outputs(nb: dict, executed: pathlib.Path) -> dict:
    """Give NB the outputs of the instructor build's executed chapter (same cell ids), and the numbers the
    prose quotes: myst-nb keeps those apart (``<chapter>.glue.json``), so they return as the outputs of one
    removed cell at the end, where myst-nb's glue finds them."""
    if not executed.exists():
        return nb
    by_id = {c.get("id"): c for c in json.loads(executed.read_text())["cells"]}
    for c in nb["cells"]:
        done = by_id.get(c.get("id"))
        if c["cell_type"] == "code" and done is not None and "otter_answer_cell" not in tags(c):
            c["outputs"] = done.get("outputs", [])
            c["execution_count"] = done.get("execution_count")
    glue_file = executed.with_suffix(".glue.json")
    if glue_file.exists():
        outputs = []
        for output in json.loads(glue_file.read_text()).values():
            prefix = output.get("metadata", {}).get("scrapbook", {}).get("mime_prefix", "")
            outputs.append(dict(output, data={prefix + k: v for k, v in output.get("data", {}).items()}))
        nb["cells"].append({"cell_type": "code", "id": "glue-data", "metadata": {"tags": ["remove-cell"]},
                            "execution_count": None, "outputs": outputs,
                            "source": "# the numbers quoted in the text"})
    return nb


def write_student(site: bool) -> None:
    """Write the student edition of every chapter; exit 1 if a chapter breaks a rule of CONTRIBUTING.md."""
    shutil.rmtree(STUDENT, ignore_errors=True)
    problems = []
    for master in chapters():
        rel = master.relative_to(ROOT)
        info = exercises(json.loads(master.read_text()))
        found = rule_problems(info)
        if not found:
            with tempfile.TemporaryDirectory() as tmp:
                out = assign(master, pathlib.Path(tmp) / "dist")
                nb = student_notebook(out, master.stem)
                found = stub_problems(nb, info, out / "autograder" / "tests")
                target = STUDENT / rel.parent
                target.mkdir(parents=True, exist_ok=True)
                (target / master.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
                grading = STUDENT / "autograder"
                grading.mkdir(exist_ok=True)
                for z in (out / "autograder").glob("*.zip"):
                    shutil.copy(z, grading / f"{master.stem}.zip")
        problems += [f"{rel}: {p}" for p in found]
        print(f"{'FAIL' if found else 'ok  '} student edition of {rel}")
    if problems:
        raise SystemExit("\n".join(problems))
    if site:
        write_student_site()


def write_student_site(executed: pathlib.Path | None = None) -> None:
    """_build/student-src: the book, with the student notebooks, their outputs from the executed chapters
    (EXECUTED: nbval's in make test, else the site build's)."""
    sys.path.insert(0, str(ROOT / ".ci"))
    from site_source import write  # noqa: PLC0415

    executed = EXECUTED if executed is None else executed
    notebooks = {}
    for nb in sorted(STUDENT.rglob("*.ipynb")):
        rel = nb.relative_to(STUDENT)
        notebooks[rel.as_posix()] = merge_outputs(json.loads(nb.read_text()), executed / rel)
    for nb in (ROOT / "book" / "appendix").glob("*.ipynb"):
        rel = nb.relative_to(ROOT)
        notebooks[rel.as_posix()] = merge_outputs(json.loads(nb.read_text()), executed / rel)

    def student_config(config):
        config["title"] = config["title"] + " (student edition)"
        config["repository"]["url"] = ""
        config["launch_buttons"]["colab_url"] = ""
        config["html"]["use_repository_button"] = False
        config["sphinx"]["config"]["hide_solutions"] = True
        config["sphinx"]["local_extensions"] = {"course_site": "book/_ext"}

    write(STUDENT_SRC, notebooks, skip=INSTRUCTOR_ONLY, edit_config=student_config,
          keep_toc=lambda path: not path.startswith(INSTRUCTOR_ONLY))


def executed_missing() -> list[pathlib.Path]:
    """The executed notebooks (and their glued numbers) the student site needs that the site build has not
    written yet: myst-nb writes both as soon as it has run a chapter, long before the pages are written."""
    missing = []
    for rel in toc():
        done = EXECUTED / rel
        glued = "glue(" in (ROOT / rel).read_text()
        if not done.exists() or (glued and not done.with_suffix(".glue.json").exists()):
            missing.append(done)
    return missing


def wait_for_executed(timeout_s: float) -> None:
    import time  # noqa: PLC0415
    deadline = time.monotonic() + timeout_s
    while missing := executed_missing():
        if (BUILD / "site-build-failed").exists():
            raise SystemExit("the site build failed: no executed chapters to build the student site from")
        if time.monotonic() > deadline:
            raise SystemExit(f"the site build has not executed {len(missing)} chapters after {timeout_s:.0f} s: "
                             + ", ".join(str(m.relative_to(ROOT)) for m in missing[:3]))
        time.sleep(2)
    time.sleep(2)  # the last glue file is written right after its notebook


def leaks(dirs: list[pathlib.Path], masters: list[pathlib.Path] | None = None) -> list[str]:
    """Every file under DIRS that holds a solution line, hidden test line or model answer of MASTERS."""
    infos = {master.stem: exercises(json.loads(master.read_text())) for master in masters or chapters()}
    # a line one chapter shows every reader (`for causal in (False, True):`) is no secret of another's solution
    shown = normalise(json.dumps([text for info in infos.values() for text in info.get("public", [])]))
    secrets = [(stem, s) for stem, info in infos.items() for s in leak_strings(info) if normalise(s) not in shown]
    found = []
    for d in dirs:
        for f in sorted(d.rglob("*")):
            if f.suffix not in {".ipynb", ".html", ".txt", ".js", ".md"} or not f.is_file():
                continue
            markup = f.suffix == ".html"
            text = normalise(f.read_text(errors="replace"), markup)
            found += [f"{f}: {stem}: {s!r}" for stem, s in secrets if normalise(s, markup) in text]
    return found


# ---------------------------------------------------------------------------------------------------------
# Grading a folder of submissions
# ---------------------------------------------------------------------------------------------------------

def grade(stem: str, folder: pathlib.Path, autograder: pathlib.Path | None = None) -> list[dict]:
    """Grade each submission FOLDER/*.ipynb with otter; write FOLDER/grades.csv and return its rows.

    One row per submission: the score of each question, the total and the possible total. A submission
    that cannot be graded at all (not a notebook) gets an ``error`` and the others are still graded; a
    missing, renamed or failing answer scores 0 on its own question only.
    """
    from otter.api import grade_submission  # noqa: PLC0415
    zip_path = autograder or STUDENT / "autograder" / f"{stem}.zip"
    if not zip_path.exists():
        raise SystemExit(f"no autograder for {stem}: run `make student` first (looked for {zip_path})")
    rows = []
    for sub in sorted(folder.glob("*.ipynb")):
        row: dict = {"submission": sub.name}
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                results = grade_submission(str(sub), str(zip_path), quiet=True)
            row.update({name: r.score for name, r in results.results.items()})
            row.update(total=results.total, possible=results.possible)
        except Exception as err:  # noqa: BLE001 - one unreadable submission must not stop the others
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        rows.append(row)
        print(row)
    questions = sorted({k for r in rows for k in r} - {"submission", "total", "possible", "error"})
    with open(folder / "grades.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["submission", *questions, "total", "possible", "error"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check")
    p.add_argument("notebooks", nargs="*", type=pathlib.Path)
    p = sub.add_parser("student")
    p.add_argument("--site", action="store_true")
    p = sub.add_parser("site")
    p.add_argument("--wait", type=float, default=0.0)
    p.add_argument("--executed", type=pathlib.Path, default=None)
    p = sub.add_parser("leaks")
    p.add_argument("dirs", nargs="+", type=pathlib.Path)
    p = sub.add_parser("grade")
    p.add_argument("stem")
    p.add_argument("folder", type=pathlib.Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.command == "check":
        problems = []
        for nb in args.notebooks or chapters():
            found = check(nb.resolve())
            problems += found
            print(f"{'FAIL' if found else 'ok  '} {nb}")
        print("\n".join(problems))
        return 1 if problems else 0
    if args.command == "student":
        write_student(args.site)
        return 0
    if args.command == "site":
        if not STUDENT.exists():
            raise SystemExit("no student notebooks in _build/student: run `python .ci/exercises.py student` first")
        if args.wait:
            wait_for_executed(args.wait)
        write_student_site(args.executed.resolve() if args.executed else None)
        return 0
    if args.command == "leaks":
        found = leaks(args.dirs)
        print("\n".join(found) if found else "no solution, hidden test or model answer found")
        return 1 if found else 0
    grade(args.stem, args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
