"""Shared figure helpers: one look for every chapter, and log-log fits of cost vs n.

A cost that grows like ``c · n^p`` is a straight line of slope ``p`` on log-log axes, so every sweep
over n is plotted with :func:`loglog_with_fit`, which draws the points, fits the slope by least
squares on the logs, and puts the fitted exponent in the legend.

Every figure of the book is sized for the page it is shown on. The site's text column is
:data:`COLUMN_PX` CSS pixels wide (96 CSS px to an inch), a ``full-width`` cell is :data:`FULL_WIDTH_PX`.
A figure ``W`` inches wide, drawn at ``D`` dots per inch, is a PNG about ``W·D`` pixels wide that the
browser shrinks to the column, so a label of ``F`` points shows at

    ``F · min(D, column_px / W) / 96``  CSS points  (see :func:`shown_label_pt`).

:func:`apply_style` (a whole notebook) or :func:`course_style` (one block of code) sets a width of
:data:`COLUMN_WIDTH_IN` inches, :data:`STYLE_DPI` dots per inch (sharp on high-density screens) and
fonts of at least 10 points, so every label shows at 9 points or more at the column width;
:func:`figure` makes a figure of that size whose panels stay at least :data:`MIN_PANEL_WIDTH_IN` wide,
stacking them when more would not fit side by side.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

FAMILY_COLORS = {
    "rnn": "#1f77b4",
    "lstm": "#2ca02c",
    "gru": "#17becf",
    "cnn": "#ff7f0e",
    "dilated cnn": "#d62728",
    "attention": "#9467bd",
    "transformer": "#9467bd",
    "local attention": "#8c564b",
    "cnn+lstm": "#e377c2",
}


def fit_power_law(x, y) -> tuple[float, float]:
    """Least-squares fit of ``y = c · x^p`` on log-log axes. Returns ``(p, c)``.

    Raises ``ValueError`` if fewer than two points are given or any value is not positive.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"need at least two (x, y) pairs of equal length, got {x.size} and {y.size}.")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("a power-law fit needs positive x and y; drop zero or negative measurements first.")
    p, logc = np.polyfit(np.log(x), np.log(y), 1)
    return float(p), float(np.exp(logc))


def loglog_with_fit(ax, x, y, label: str, *, color=None, marker="o", fit: bool = True, **kwargs) -> float | None:
    """Plot ``y`` vs ``x`` on log-log axes; with ``fit`` add the fitted line and return the slope."""
    line = ax.loglog(x, y, marker=marker, linestyle="none", color=color, **kwargs)[0]
    slope = None
    if fit:
        slope, c = fit_power_law(x, y)
        xs = np.geomspace(min(x), max(x), 50)
        ax.loglog(xs, c * xs**slope, color=line.get_color(), alpha=0.7, label=f"{label} (slope {slope:.2f})")
    else:
        line.set_label(label)
    return slope


def family_color(name: str) -> str | None:
    """The colour a model family has in every figure of the book (``None`` for unknown names)."""
    return FAMILY_COLORS.get(name.lower())


# --- The book's figure style ------------------------------------------------------------------------

#: CSS pixels of the site's text column (sphinx-book-theme on a wide screen), where a figure is shown.
COLUMN_PX = 672
#: CSS pixels of a ``full-width`` cell (the theme widens it by 36 %, over the right margin).
FULL_WIDTH_PX = 914
#: CSS pixels to an inch: the unit a browser lays a page out in.
CSS_PX_PER_INCH = 96
#: Dots per inch of every figure: the inline backend draws the PNG at ``figure.dpi``.
STYLE_DPI = 150
#: Width in inches of a figure in the text column (6.5 in shows at 672 / (6.5 · 96) = 108 % of its size).
COLUMN_WIDTH_IN = 6.5
#: Width in inches of a figure in a ``full-width`` cell (9 in shows at 914 / (9 · 96) = 106 %).
FULL_WIDTH_IN = 9.0
#: Narrowest panel, in inches, that keeps its tick labels apart: 2 across in the column, 3 at full width.
MIN_PANEL_WIDTH_IN = 3.0
#: Smallest label, in points, a reader sees at the column width.
MIN_SHOWN_PT = 9.0

#: The matplotlib settings of :func:`apply_style` and :func:`course_style`.
COURSE_RC = {
    "figure.figsize": (COLUMN_WIDTH_IN, 4.0),
    "figure.dpi": STYLE_DPI,
    "savefig.dpi": STYLE_DPI,
    "savefig.bbox": "tight",
    # Tight layout on every draw: labels do not overlap, and an explicit fig.tight_layout() stays valid.
    "figure.autolayout": True,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 12,
    "lines.linewidth": 1.8,
    "lines.markersize": 6,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.framealpha": 0.85,
}

_WIDTHS = {"column": (COLUMN_WIDTH_IN, COLUMN_PX), "full": (FULL_WIDTH_IN, FULL_WIDTH_PX)}


def shown_label_pt(font_pt: float, width_in: float, dpi: float = STYLE_DPI, column_px: float = COLUMN_PX) -> float:
    """The size in CSS points at which a ``font_pt`` label of a ``width_in``-inch figure drawn at ``dpi``
    is shown in a column ``column_px`` CSS pixels wide (the browser never enlarges an image).

    >>> round(shown_label_pt(10, 6.5), 1), round(shown_label_pt(10, 13, dpi=100), 1)
    (10.8, 5.4)
    """
    for name, value in (("font_pt", font_pt), ("width_in", width_in), ("dpi", dpi), ("column_px", column_px)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return font_pt * min(dpi, column_px / width_in) / CSS_PX_PER_INCH


def apply_style() -> None:
    """Set the book's figure style (:data:`COURSE_RC`) for the rest of the session: call it once in a
    chapter's setup cell. With the inline backend this is the reliable way: a figure is drawn after the
    cell ends, so its tick labels take the settings in force then."""
    import matplotlib as mpl

    mpl.rcParams.update(COURSE_RC)


@contextlib.contextmanager
def course_style():
    """The book's figure style (:data:`COURSE_RC`) inside a ``with`` block only; the previous settings
    come back after it. Show or save the figure inside the block (``plt.show()``, ``fig.savefig``)."""
    import matplotlib as mpl

    with mpl.rc_context(COURSE_RC):
        yield


def panel_layout(nrows: int = 1, ncols: int = 1, *, width: str = "column") -> tuple[int, int]:
    """Rows and columns in which :func:`figure` places ``nrows × ncols`` panels at ``width``: as asked
    when every panel is at least :data:`MIN_PANEL_WIDTH_IN` wide, else the panels, in reading order,
    fill full rows of as many as fit (``panel_layout(1, 3)`` is ``(3, 1)`` in the column and ``(1, 3)``
    at full width; ``panel_layout(1, 4)`` is ``(2, 2)`` in the column)."""
    for name, value in (("nrows", nrows), ("ncols", ncols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
    if width not in _WIDTHS:
        raise ValueError(f"width must be 'column' or 'full', got {width!r}.")
    across = max(1, int(_WIDTHS[width][0] // MIN_PANEL_WIDTH_IN))
    if ncols <= across:
        return nrows, ncols
    total = nrows * ncols
    per_row = max(d for d in range(1, across + 1) if total % d == 0)  # full rows: no empty panel
    return total // per_row, per_row


def figure(nrows: int = 1, ncols: int = 1, *, width: str = "column", height: float | None = None, **subplot_kw):
    """A figure of ``nrows × ncols`` panels sized for the site: ``width="column"`` (the text column,
    :data:`COLUMN_WIDTH_IN` inches) or ``"full"`` (a cell tagged ``full-width``, :data:`FULL_WIDTH_IN`
    inches), at :data:`STYLE_DPI` dots per inch. Returns ``(fig, axes)`` like ``plt.subplots``: one
    axes, or an array of shape ``(nrows, ncols)`` with length-1 dimensions squeezed.

    Panels narrower than :data:`MIN_PANEL_WIDTH_IN` would shrink their labels below
    :data:`MIN_SHOWN_PT`, so they are stacked instead (see :func:`panel_layout`); ``axes`` keeps the
    shape asked for. ``height`` is the figure's height in inches (default: 0.62 of a panel's width per
    row, from 2.6 to 4 inches, at most 3.2 when there are several rows). Other keywords (``sharex``,
    ``sharey`` …) go to ``Figure.subplots``.
    """
    import matplotlib.pyplot as plt

    rows, cols = panel_layout(nrows, ncols, width=width)
    width_in = _WIDTHS[width][0]
    if height is None:
        row_in = min(4.0 if rows == 1 else 3.2, max(2.6, 0.62 * width_in / cols))
        height = row_in * rows
    elif isinstance(height, bool) or not isinstance(height, (int, float)) or not math.isfinite(height) or height <= 0:
        raise ValueError(f"height must be a finite number of inches > 0, got {height!r}.")
    squeeze = subplot_kw.pop("squeeze", True)
    fig = plt.figure(figsize=(width_in, height), dpi=STYLE_DPI, layout="tight")
    grid = fig.subplots(rows, cols, squeeze=False, **subplot_kw)
    axes = np.empty(nrows * ncols, dtype=object)
    axes[:] = list(grid.ravel())  # reading order is kept when the panels are stacked
    axes = axes.reshape(nrows, ncols)
    if squeeze:
        axes = axes.item() if axes.size == 1 else axes.squeeze()
    return fig, axes
