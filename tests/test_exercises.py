"""The exercise tooling (.ci/exercises.py): the format rules, the student edition, grading with otter.

The fixture ``tests/data/exercise_fixture.ipynb`` is a three-exercise chapter in the format of
CONTRIBUTING.md; each test below breaks one rule of it and expects the check to name that rule.
"""

import copy
import importlib.util
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "exercise_fixture.ipynb"
sys.path.insert(0, str(ROOT / ".ci"))
pytest.importorskip("otter")
exercises = importlib.import_module("exercises")
spec = importlib.util.spec_from_file_location("course_site", ROOT / "book" / "_ext" / "course_site.py")
course_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course_site)


def load():
    return json.loads(FIXTURE.read_text())


def problems_of(nb, tmp_path):
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(nb))
    info = exercises.exercises(nb)
    found = exercises.rule_problems(info)
    if found:
        return found
    out = exercises.assign(path, tmp_path / "dist")
    student = exercises.student_notebook(out, "chapter")
    return exercises.stub_problems(student, info, out / "autograder" / "tests")


def cell(nb, start):
    return next(c for c in nb["cells"] if exercises.source(c).startswith(start))


def test_fixture_follows_every_rule(tmp_path):
    assert problems_of(load(), tmp_path) == []


@pytest.mark.parametrize("chapter", exercises.chapters(), ids=lambda p: p.stem)
def test_every_chapter_follows_the_format(chapter):
    # the rules read from the notebook; the stubs are checked where make test writes the student edition
    assert exercises.rule_problems(exercises.exercises(json.loads(chapter.read_text()))) == []


def test_a_question_without_hidden_test_is_refused(tmp_path):
    nb = load()
    nb["cells"].remove(cell(nb, '""" # BEGIN TEST CONFIG\nhidden: true\npoints: 1\nfailure_message: "a stack'))
    assert any("0 hidden tests" in p for p in problems_of(nb, tmp_path))


def test_a_test_may_take_only_answers(tmp_path):
    nb = load()
    c = cell(nb, '""" # BEGIN TEST CONFIG\nhidden: true\npoints: 1\nfailure_message: "a stack')
    c["source"] = exercises.source(c).replace("(field)", "(field, BASE)")
    assert any("['BASE'] are not answers" in p for p in problems_of(nb, tmp_path))


def test_solution_prose_outside_a_solution_block_is_refused(tmp_path):
    nb = load()
    i = nb["cells"].index(cell(nb, "```{solution-end}"))
    nb["cells"].insert(i, {"cell_type": "markdown", "id": "leak", "metadata": {}, "source": "The answer is 21."})
    assert any("would reach the student" in p for p in problems_of(nb, tmp_path))


def test_a_blank_answer_must_fail_a_public_test(tmp_path):
    nb = load()
    c = cell(nb, '""" # BEGIN TEST CONFIG\nhidden: false\npoints: 1\nfailure_message: "field must')
    c["source"] = exercises.source(c).replace("isinstance(field, int)", "field is not None")
    assert problems_of(nb, tmp_path) == ["fx-field: the blank stub passes every public test"]


def test_a_stub_must_run(tmp_path):
    nb = load()
    c = cell(nb, "# BEGIN SOLUTION NO PROMPT\nfield")
    c["source"] = exercises.source(c).replace("# END PROMPT\nfield", "# END PROMPT\nfield + 1")
    assert any("the student stub raises TypeError" in p for p in problems_of(nb, tmp_path))


@pytest.mark.parametrize("rule", ["tag", "manual", "prediction", "quiz", "message"])
def test_format_rules(tmp_path, rule):
    nb = load()
    if rule == "tag":
        cell(nb, "# END TESTS")["metadata"] = {}
        expected = "needs the tag remove-cell"
    elif rule == "manual":
        nb["cells"] = [c for c in nb["cells"] if "manual: true" not in exercises.source(c)]
        nb["cells"] = [c for c in nb["cells"] if not exercises.source(c).startswith("A twelve-layer")]
        expected = "END QUESTION without its BEGIN"
    elif rule == "prediction":
        for c in nb["cells"]:
            c["source"] = exercises.source(c).replace("prediction", "guess")
        expected = "no predict-then-measure question"
    elif rule == "quiz":
        c = cell(nb, "**Q1.**")
        c["source"] = exercises.source(c).replace("**Not quite.**", "**Correct.**")
        expected = "quiz Q1: 3 options, 3 **Correct.**"
    else:
        c = cell(nb, '""" # BEGIN TEST CONFIG\nhidden: false\npoints: 1\nfailure_message: "field must')
        c["source"] = exercises.source(c).replace('"field must be an int (a count of positions)"', "'say \"int\"'")
        expected = "a failure_message is needed"
    assert any(expected in p for p in problems_of(nb, tmp_path)), problems_of(nb, tmp_path)


def test_the_student_notebook_has_stubs_checks_and_no_solution(tmp_path):
    out = exercises.assign(FIXTURE, tmp_path / "dist")
    nb = exercises.student_notebook(out, FIXTURE.stem)
    text = json.dumps(nb)
    assert "solution-start" not in text and "1 + (3 - 1) * 10" not in text and "A twelve-layer" not in text
    assert [exercises.source(c) for c in nb["cells"] if "grader.check" in exercises.source(c)
            and "otter-checks" not in exercises.tags(c)] == [
        'grader.check("fx-field")', 'grader.check("fx-predict")', 'grader.check("fx-design")']
    # the checks cell carries the public tests only, and runs with no file beside the notebook
    checks = next(c for c in nb["cells"] if "otter-checks" in exercises.tags(c))
    assert "test_is_int" in exercises.source(checks) and "test_value" not in exercises.source(checks)
    assert exercises.leaks([tmp_path / "dist" / "student"], [FIXTURE]) == []


def test_a_planted_solution_line_is_found(tmp_path):
    # a solution line split into highlighted spans, and a model answer's sentence inside HTML
    (tmp_path / "page.html").write_text("<pre><span>field</span> = 1 + (3 - 1) * <span>10</span></pre>")
    (tmp_path / "answer.html").write_text("<p>A twelve-layer stack reaches the distance with room to spare, "
                                          "and it costs linear memory in the length of the\nsequence.</p>")
    (tmp_path / "clean.html").write_text("<p>field = ... and the sequence length</p>")
    found = exercises.leaks([tmp_path], [FIXTURE])
    assert sorted(pathlib.Path(f.split(":")[0]).name for f in found) == ["answer.html", "page.html"]


def test_a_solution_line_the_chapter_also_shows_is_no_secret():
    nb = load()
    nb["cells"].insert(1, {"cell_type": "code", "id": "body", "metadata": {}, "execution_count": None,
                           "outputs": [], "source": "field = 1 + (3 - 1) * 10   # the chapter's own example"})
    secrets = exercises.leak_strings(exercises.exercises(nb))
    assert "field = 1 + (3 - 1) * 10" not in secrets
    assert "field = 1 + (3 - 1) * 10" in exercises.leak_strings(exercises.exercises(load()))


def test_the_site_shows_code_without_otter_markers():
    stripped = course_site.strip_otter(load())
    text = json.dumps(stripped)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN PROMPT", "TEST CONFIG", "BEGIN QUESTION"):
        assert marker not in text
    # what the cells compute is unchanged: the answers are the same
    before, after = {}, {}
    for nb, env in ((load(), before), (stripped, after)):
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                exec(exercises.source(c), env)  # noqa: S102
    answers = ("field", "measured", "design")
    assert {k: before[k] for k in answers} == {k: after[k] for k in answers}


def test_grading_reports_each_question_and_survives_bad_submissions(tmp_path):
    out = exercises.assign(FIXTURE, tmp_path / "dist")
    student = exercises.student_notebook(out, FIXTURE.stem)
    subs = tmp_path / "submissions"
    subs.mkdir()
    (subs / "solution.ipynb").write_text((out / "autograder" / FIXTURE.name).read_text())
    bad = copy.deepcopy(student)
    cells = []
    for c in bad["cells"]:
        s = exercises.source(c)
        if s.startswith("field = ..."):
            continue                                        # an exercise deleted
        if s.startswith("prediction = ..."):                # an error halfway, then an answer of the wrong type
            c["source"] = 'raise RuntimeError("halfway")\nprediction = "big"'
        if s.startswith("design = ..."):
            c["source"] = "design = {'family': 'cnn', 'layers': 12}"
        cells.append(c)
    bad["cells"] = cells
    (subs / "bad.ipynb").write_text(json.dumps(bad))
    (subs / "unreadable.ipynb").write_text("{not a notebook")
    rows = {r["submission"]: r for r in exercises.grade(FIXTURE.stem, subs, next((out / "autograder").glob("*.zip")))}
    assert rows["solution.ipynb"]["total"] == rows["solution.ipynb"]["possible"] == 6
    assert (rows["bad.ipynb"]["fx-field"], rows["bad.ipynb"]["fx-predict"], rows["bad.ipynb"]["fx-design"]) == (0, 0, 2)
    assert "NotJSONError" in rows["unreadable.ipynb"]["error"]
    assert (subs / "grades.csv").read_text().count("\n") == 4


def test_the_chapter_table_counts_exercises_points_and_words():
    facts = course_site.chapter_facts(FIXTURE)
    assert (facts["exercises"], facts["questions"], facts["manual"], facts["points"]) == (3, 4, 1, 9)
    assert facts["words"] > 20 and facts["reading_min"] == facts["words"] / course_site.WORDS_PER_MINUTE


def test_every_chapter_has_a_measured_run_time_under_a_minute():
    times = json.loads((ROOT / "book" / "appendix" / "instructor" / "chapter_times.json").read_text())
    chapters = {str(p.relative_to(ROOT).with_suffix("")) for p in exercises.chapters()}
    assert set(times["chapters"]) == chapters, "run python .ci/chapter_times.py after adding a chapter"
    assert max(times["chapters"].values()) <= 60 and times["machine"]["cores"] <= 2


def test_a_student_runs_the_notebook_and_each_check_answers(tmp_path):
    # the student's path: the notebook alone in a folder, run top to bottom in a kernel; blank answers fail
    # their check with its message, a right answer passes
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out = exercises.assign(FIXTURE, tmp_path / "dist")
    student = exercises.student_notebook(out, FIXTURE.stem)
    for c in student["cells"]:
        if exercises.source(c).startswith("design = ..."):
            c["source"] = "design = {'family': 'cnn', 'layers': 12}"
    folder = tmp_path / "student"
    folder.mkdir()
    nb = nbformat.reads(json.dumps(student), as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    shown = {}
    for c in nb.cells:
        if c.cell_type == "code" and c.source.startswith("grader.check("):
            shown[c.source] = "".join(o.get("data", {}).get("text/plain", "") for o in c.outputs)
    assert "field must be an int" in shown['grader.check("fx-field")']
    assert "Test case failed" in shown['grader.check("fx-predict")']
    assert "All test cases passed" in shown['grader.check("fx-design")']
