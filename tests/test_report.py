"""utils.report.glue: myst-nb's glue during the site build, a table of the numbers everywhere else."""

import sys
import types

import pytest

from utils import report


class FakeEvents:
    def __init__(self):
        self.callbacks = {}

    def register(self, event, fn):
        self.callbacks.setdefault(event, []).append(fn)


class FakeShell:
    def __init__(self):
        self.events = FakeEvents()


@pytest.fixture
def shell(monkeypatch):
    fake = FakeShell()
    shown = []
    monkeypatch.setattr(report, "_shell", lambda: fake)
    monkeypatch.setattr(report, "_pending", [])
    monkeypatch.setattr(report, "_hooked_shells", set())
    monkeypatch.setitem(sys.modules, "IPython.display", types.SimpleNamespace(display=shown.append))
    monkeypatch.delenv("COURSE_BOOK_BUILD", raising=False)
    return fake, shown


def test_outside_the_build_the_cell_shows_one_table_of_its_numbers(shell):
    fake, shown = shell
    report.glue("p9_mib", 4.8828125)
    report.glue("p9_layers", 256)
    report.glue("p9_mib", 5.0)  # a name glued twice shows its last value once
    assert shown == [] and len(fake.events.callbacks["post_execute"]) == 1
    fake.events.callbacks["post_execute"][0]()
    (table,) = shown
    assert table.rows == [("p9_mib", "5"), ("p9_layers", "256")]
    assert repr(table).splitlines()[0] == "Numbers quoted in the text:"
    assert "<code>p9_layers</code></td><td>256</td>" in table._repr_html_()
    fake.events.callbacks["post_execute"][0]()  # the next cell glued nothing: nothing more is shown
    assert len(shown) == 1


def test_the_hook_is_registered_once_per_shell(shell):
    fake, _ = shell
    for i in range(3):
        report.glue(f"p9_x{i}", i)
    assert len(fake.events.callbacks["post_execute"]) == 1


def test_in_the_book_build_it_calls_myst_nb(monkeypatch, shell):
    calls = []
    monkeypatch.setenv("COURSE_BOOK_BUILD", "1")
    monkeypatch.setitem(sys.modules, "myst_nb", types.SimpleNamespace(glue=lambda *a, **k: calls.append((a, k))))
    report.glue("p9_n", 7)
    assert calls == [(("p9_n", 7), {"display": False})]
    assert report._pending == []


def test_numpy_scalars_reach_the_prose_as_python_numbers(monkeypatch, shell):
    import numpy as np
    calls = []
    monkeypatch.setenv("COURSE_BOOK_BUILD", "1")
    monkeypatch.setitem(sys.modules, "myst_nb", types.SimpleNamespace(glue=lambda *a, **k: calls.append(a)))
    report.glue("p9_acc", np.float64(0.5))
    report.glue("p9_n", np.int64(3))
    assert calls == [("p9_acc", 0.5), ("p9_n", 3)]
    assert [type(v) for _, v in calls] == [float, int]


def test_plain_python_records_nothing(monkeypatch):
    monkeypatch.setattr(report, "_shell", lambda: None)
    monkeypatch.setattr(report, "_pending", [])
    monkeypatch.delenv("COURSE_BOOK_BUILD", raising=False)
    report.glue("p9_n", 7)
    assert report._pending == []


@pytest.mark.parametrize("name", ["", "has space", "p2-c02", 3, None])
def test_bad_names_are_rejected(name):
    with pytest.raises(ValueError, match="glue name must be an identifier"):
        report.glue(name, 1)


@pytest.mark.parametrize(
    "value, text",
    [
        (1234567, "1,234,567"),
        (0.000123456, "0.0001235"),
        (2.0, "2"),
        (68320.5, "68,320.5"),
        (float("inf"), "inf"),
        (True, "True"),
        ("holds", "holds"),
        ("x" * 200, "x" * 157 + "…"),
    ],
)
def test_format_value(value, text):
    assert report.format_value(value) == text


def test_empty_table_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        report.numbers_table([])


def test_without_myst_nb_the_book_build_writes_what_myst_nb_writes(monkeypatch):
    """A kernel without myst-nb (the Colab-like test run) writes the very output myst_nb.glue writes."""
    import IPython.display
    import myst_nb

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setattr("myst_nb.ext.glue.ipy_display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setenv("COURSE_BOOK_BUILD", "1")
    for display in (False, True):
        shown.clear()
        myst_nb.glue("p9_x", 0.25, display=display)
        monkeypatch.setitem(sys.modules, "myst_nb", None)      # import myst_nb now raises ImportError
        report.glue("p9_x", 0.25, display=display)
        monkeypatch.setitem(sys.modules, "myst_nb", myst_nb)
        assert len(shown) == 2 and shown[0] == shown[1]
        assert shown[0][1]["metadata"]["scrapbook"] == {"name": "p9_x",
                                                        "mime_prefix": "" if display else report.GLUE_PREFIX}
