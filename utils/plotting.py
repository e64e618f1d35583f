"""Shared figure helpers: one look for every chapter, and log-log fits of cost vs n.

A cost that grows like ``c · n^p`` is a straight line of slope ``p`` on log-log axes, so every sweep
over n is plotted with :func:`loglog_with_fit`, which draws the points, fits the slope by least
squares on the logs, and puts the fitted exponent in the legend.
"""

from __future__ import annotations

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
