import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from utils.measure import time_call
from utils.plotting import fit_power_law


@given(p=st.floats(-3, 3), c=st.floats(0.01, 100))
def test_power_law_fit_recovers_exponent(p, c):
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    slope, coef = fit_power_law(x, c * x**p)
    assert slope == pytest.approx(p, abs=1e-6)
    assert coef == pytest.approx(c, rel=1e-6)


def test_power_law_rejects_non_positive():
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2], [0, 1])
    with pytest.raises(ValueError, match="at least two"):
        fit_power_law([1], [1])


def test_time_call_returns_positive_median():
    t = time_call(lambda: sum(range(1000)), min_run_time=0.01)
    assert t.median > 0 and t.runs >= 1 and t.median_ms == t.median * 1e3


def test_time_call_rejects_bad_budget():
    with pytest.raises(ValueError, match="min_run_time must be > 0"):
        time_call(lambda: None, min_run_time=0)
    with pytest.raises(ValueError, match="min_run_time must be a finite number > 0, got inf"):
        time_call(lambda: None, min_run_time=float("inf"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(threads=0), r"threads must be >= 1, got 0\. Use None"),   # was silently "all threads"
    (dict(threads=-2), "threads must be >= 1"),
    (dict(threads=1.5), "threads must be a whole number"),
    (dict(warmup=-1), r"warmup must be >= 0, got -1"),             # was silently no warm-up
    (dict(warmup=1.5), "warmup must be a whole number"),           # was a TypeError from range()
    (dict(warmup=True), "warmup must be a whole number"),
])
def test_time_call_rejects_bad_threads_and_warmup(kwargs, message):
    calls = []
    with pytest.raises(ValueError, match=message):
        time_call(lambda: calls.append(1), min_run_time=0.001, **kwargs)
    assert calls == []  # rejected before anything ran


def test_time_call_warmup_and_threads_are_honoured(one_thread):
    calls = []
    t = time_call(lambda: calls.append(1), min_run_time=0.001, warmup=0)
    assert t.threads == 1  # None means torch's current thread count
    timed = len(calls)
    calls.clear()
    time_call(lambda: calls.append(1), min_run_time=0.001, warmup=3, threads=2)
    assert len(calls) >= 3 and timed >= 1
    assert time_call(lambda: None, min_run_time=0.001, threads=2).threads == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")
def test_cuda_time_call_waits_for_the_kernel():
    # torch.cuda._sleep spins the GPU for a number of clock cycles; launching it takes microseconds.
    # 20 M cycles is >= 8 ms below 2.5 GHz: a timing that did not synchronise would report the launch.
    cycles = 20_000_000
    t = time_call(lambda: torch.cuda._sleep(cycles), min_run_time=0.05)
    assert t.median > 4e-3, t


def test_loglog_with_fit_draws_points_and_the_fitted_line():
    import matplotlib.pyplot as plt

    from utils.plotting import FAMILY_COLORS, family_color, loglog_with_fit

    x = [64, 128, 256, 512]
    y = [3.0 * v**2 for v in x]
    fig, ax = plt.subplots()
    try:
        slope = loglog_with_fit(ax, x, y, "transformer", color=family_color("Transformer"))
        assert slope == pytest.approx(2.0, abs=1e-9)
        points, fitted = ax.lines
        assert list(points.get_xdata()) == x and points.get_linestyle() == "None"
        assert fitted.get_label() == "transformer (slope 2.00)" and fitted.get_color() == FAMILY_COLORS["transformer"]
        assert fitted.get_ydata()[-1] == pytest.approx(y[-1], rel=1e-9)
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert loglog_with_fit(ax, x, y, "raw", fit=False) is None
        assert ax.lines[-1].get_label() == "raw" and len(ax.lines) == 3
    finally:
        plt.close(fig)
    assert family_color("mamba") is None


# --- The book's figure style (utils.plotting) ---------------------------------------------------------

def test_course_style_is_sharp_and_legible_at_the_column_width():
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    from utils.plotting import COLUMN_PX, COURSE_RC, MIN_SHOWN_PT, course_style, shown_label_pt

    before = dict(mpl.rcParams)
    with course_style():
        assert mpl.rcParams["figure.dpi"] >= 150 and mpl.rcParams["savefig.dpi"] >= 150
        fig, ax = plt.subplots()
        try:
            ax.set_xlabel("n")
            width_in = fig.get_figwidth()
            assert 6.0 <= width_in <= COLUMN_PX / 96  # never shrunk below its drawn size in the column
            fonts = [k for k in COURSE_RC if k == "font.size" or k.endswith(("fontsize", "labelsize", "titlesize"))]
            sizes = [mpl.rcParams[k] for k in fonts]
            assert min(sizes) >= 10 and fig.dpi == COURSE_RC["figure.dpi"]
            assert ax.xaxis.label.get_fontsize() >= 10
            assert shown_label_pt(min(sizes), width_in, fig.dpi) >= MIN_SHOWN_PT
        finally:
            plt.close(fig)
    assert dict(mpl.rcParams) == before  # the context restores every setting


def test_apply_style_sets_the_rc_for_the_session():
    import matplotlib as mpl

    from utils.plotting import COURSE_RC, apply_style

    with mpl.rc_context():
        apply_style()
        assert all(mpl.rcParams[k] == (list(v) if isinstance(v, tuple) else v) for k, v in COURSE_RC.items())


def test_shown_label_pt_matches_the_column_arithmetic():
    from utils.plotting import shown_label_pt

    # 6.5 in at 150 dpi = 975 px shown in 672 px: a 10-pt label is 10·150/72·672/975 px = 14.4 px = 10.8 pt.
    assert shown_label_pt(10, 6.5, 150) == pytest.approx(10 * 672 / 6.5 / 96)
    # a 13-inch, 100-dpi figure (two panels side by side, the old way) shows its 10-pt labels at 5.4 pt
    assert shown_label_pt(10, 13, 100) == pytest.approx(5.385, abs=1e-3)
    # a narrow figure is never enlarged: shown at its drawn size, 100 dpi ≈ 96 CSS px per inch
    assert shown_label_pt(10, 3, 96) == pytest.approx(10.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(font_pt=0, width_in=6.5), r"font_pt must be a finite number > 0, got 0"),
    (dict(font_pt=10, width_in=float("nan")), "width_in must be a finite number > 0"),
    (dict(font_pt=10, width_in=6.5, dpi=True), "dpi must be a finite number > 0, got True"),
    (dict(font_pt=10, width_in=6.5, column_px=-1), "column_px must be a finite number > 0"),
])
def test_shown_label_pt_rejects_bad_input(kwargs, message):
    from utils.plotting import shown_label_pt

    with pytest.raises(ValueError, match=message):
        shown_label_pt(**kwargs)


@pytest.mark.parametrize("shape, width, layout", [
    ((1, 1), "column", (1, 1)),
    ((1, 2), "column", (1, 2)),
    ((1, 3), "column", (3, 1)),   # three 2.2-inch panels would shrink the labels: stacked
    ((1, 4), "column", (2, 2)),
    ((2, 3), "column", (3, 2)),
    ((1, 3), "full", (1, 3)),
    ((1, 5), "full", (5, 1)),     # no full rows of 2 or 3: one per row
    ((3, 1), "full", (3, 1)),
])
def test_panel_layout_keeps_every_panel_wide_enough(shape, width, layout):
    from utils.plotting import COLUMN_WIDTH_IN, FULL_WIDTH_IN, MIN_PANEL_WIDTH_IN, panel_layout

    assert panel_layout(*shape, width=width) == layout
    rows, cols = layout
    assert rows * cols == shape[0] * shape[1]
    assert {"column": COLUMN_WIDTH_IN, "full": FULL_WIDTH_IN}[width] / cols >= MIN_PANEL_WIDTH_IN


def test_figure_is_sized_for_the_column_and_keeps_the_asked_shape():
    import matplotlib.pyplot as plt

    from utils.plotting import COLUMN_WIDTH_IN, FULL_WIDTH_IN, STYLE_DPI, figure

    fig, ax = figure()
    try:
        assert tuple(fig.get_size_inches()) == (COLUMN_WIDTH_IN, 4.0) and fig.dpi == STYLE_DPI
        assert not hasattr(ax, "shape")  # one panel: one Axes, like plt.subplots
    finally:
        plt.close(fig)
    fig, axes = figure(1, 3, sharex=True)
    try:
        assert axes.shape == (3,) and fig.get_figwidth() == COLUMN_WIDTH_IN
        boxes = [a.get_position() for a in axes]
        assert boxes[0].y0 > boxes[1].y0 > boxes[2].y0  # stacked top to bottom, in reading order
        assert all(b.width > 0.5 for b in boxes)
        assert fig.get_figheight() == pytest.approx(3 * 3.2)
    finally:
        plt.close(fig)
    fig, axes = figure(1, 3, width="full", height=3.5, squeeze=False)
    try:
        assert axes.shape == (1, 3) and tuple(fig.get_size_inches()) == (FULL_WIDTH_IN, 3.5)
        xs = [a.get_position().x0 for a in axes[0]]
        assert xs == sorted(xs)  # side by side at full width
    finally:
        plt.close(fig)


@pytest.mark.parametrize("args, kwargs, message", [
    ((0, 1), {}, r"nrows must be a whole number >= 1, got 0"),
    ((1, 2.0), {}, r"ncols must be a whole number >= 1, got 2\.0"),
    ((1, True), {}, "ncols must be a whole number"),
    ((1, 1), dict(width="wide"), r"width must be 'column' or 'full', got 'wide'"),
    ((1, 1), dict(height=0), r"height must be a finite number of inches > 0, got 0"),
])
def test_figure_rejects_bad_input(args, kwargs, message):
    import matplotlib.pyplot as plt

    from utils.plotting import figure

    before = plt.get_fignums()
    with pytest.raises(ValueError, match=message):
        figure(*args, **kwargs)
    assert plt.get_fignums() == before  # nothing left open


def test_time_interleaved_s_times_every_call_in_every_round():
    from utils.measure import time_interleaved_s

    order = []
    calls = {"short": lambda: order.append("short"), "long": lambda: (order.append("long"), sum(range(20_000)))}
    best = time_interleaved_s(calls, rounds=2, min_run_time=0.001, warmup=0)
    assert set(best) == {"short", "long"} and best["long"] > best["short"] > 0
    assert order.index("long") < len(order) - 1 - order[::-1].index("short")    # the rounds interleave
    with pytest.raises(ValueError, match="non-empty dict"):
        time_interleaved_s({})
    with pytest.raises(ValueError, match="rounds"):
        time_interleaved_s(calls, rounds=0)
