import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from utils.plotting import fit_power_law
from utils.timing import time_call


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
