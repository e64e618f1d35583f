"""How measured numbers reach the reader — on the site, in Jupyter and on Colab.

The book's prose cites numbers computed by its code cells. On the built site, myst-nb's ``glue``
stores each number and a ``glue:text`` role names it in the sentence. Outside the book build
(Colab, JupyterLab, VS Code) a notebook renders its Markdown as it is, so a role shows only its name.
:func:`glue` serves both:

* during the site build (``COURSE_BOOK_BUILD=1``, set by the book's Sphinx configuration, and by the
  test run whose executed notebooks the tested site is built from) it writes what ``myst_nb.glue``
  writes (with myst-nb itself where it is installed);
* everywhere else it records the value, and when the cell finishes, the cell's output shows one small
  table, *"Numbers quoted in the text"*, with each name and its value — the name the text cites.

So every chapter runs where myst-nb is not installed, and a notebook reader sees every number the
site shows, right under the cell that measured it.
"""

from __future__ import annotations

import html
import math
import numbers
import os
import re

__all__ = ["glue", "in_book_build", "format_value", "numbers_table"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_pending: list[tuple[str, object]] = []
_hooked_shells: set[int] = set()


def in_book_build() -> bool:
    """True while the site is being built (the book's Sphinx setup sets ``COURSE_BOOK_BUILD=1``)."""
    return os.environ.get("COURSE_BOOK_BUILD") == "1"


def format_value(value) -> str:
    """A short, readable rendering of a glued value (the site applies the role's own format)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            return str(x)
        if x == int(x) and abs(x) < 1e15:
            return f"{int(x):,}"
        if 1e4 <= abs(x) < 1e15:  # large: digits with separators, not an exponent
            return f"{x:,.1f}"
        return f"{x:.4g}"
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "…"


class _NumbersTable:
    """The table shown under a cell: ``text/plain`` for any front end, ``text/html`` for notebooks."""

    def __init__(self, rows):
        self.rows = [(name, format_value(value)) for name, value in rows]

    def __repr__(self) -> str:
        width = max(len(name) for name, _ in self.rows)
        lines = ["Numbers quoted in the text:"]
        lines += [f"  {name:<{width}}  {value}" for name, value in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(v)}</td></tr>"
                       for n, v in self.rows)
        return ("<table><caption style='text-align:left'>Numbers quoted in the text</caption>"
                f"<thead><tr><th>name in the text</th><th>value</th></tr></thead><tbody>{body}</tbody></table>")


def numbers_table(rows):
    """The displayable table of ``(name, value)`` pairs that :func:`glue` shows under a cell."""
    rows = list(rows)
    if not rows:
        raise ValueError("numbers_table needs at least one (name, value) pair.")
    return _NumbersTable(rows)


def _flush(*_args) -> None:
    if not _pending:
        return
    rows = list(dict(_pending).items())  # the last value of a name wins, in first-seen order
    _pending.clear()
    from IPython.display import display

    display(numbers_table(rows))


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python without IPython: nothing to display into
        return None
    return get_ipython()


GLUE_PREFIX = "application/papermill.record/"


def _glue_output(name: str, value, display: bool = False) -> None:
    """The output ``myst_nb.glue`` writes, written without myst-nb: the value's display formats under
    myst-nb's glue prefix, named in the output's metadata, which is where a site built from the executed
    notebook reads it."""
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
    show({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def glue(name: str, value, display: bool = False) -> None:
    """Publish ``value`` under ``name`` for the prose (same call as ``myst_nb.glue``).

    On the site the prose prints it through a ``glue:text`` role. Elsewhere the value appears in
    the table *"Numbers quoted in the text"* under the cell. ``display=True`` also shows the value
    itself in the cell's output.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"glue name must be an identifier such as 'p2c02_attn_mib', got {name!r}.")
    # a NumPy scalar prints as ``np.float64(0.88)``, which a ``{glue:text}`:.2f``` format cannot read
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if in_book_build():
        try:
            from myst_nb import glue as myst_glue
        except ImportError:  # a kernel without myst-nb whose outputs the site is built from
            myst_glue = _glue_output
        myst_glue(name, value, display=display)
        return
    shell = _shell()
    if display and shell is not None:
        from IPython.display import display as show

        show(value)
    if shell is None:  # plain Python: no cell output to show the table in
        return
    _pending.append((name, value))
    if id(shell) not in _hooked_shells:
        shell.events.register("post_execute", _flush)
        _hooked_shells.add(id(shell))
