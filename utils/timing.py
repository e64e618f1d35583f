"""Wall-clock timing that survives a busy laptop.

Timings are the one measurement in this course that is *not* exact. The rules: warm up, take the
median of many runs with :class:`torch.utils.benchmark.Timer` (which also synchronises CUDA), say the
hardware and thread count next to the number, and only ever assert *robust* bounds on timings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.benchmark as benchmark

from utils.validate import check_positive_float


@dataclass(frozen=True)
class Timing:
    """Median and inter-quartile range of one timed call, in seconds."""

    median: float
    iqr: float
    runs: int
    threads: int

    @property
    def median_ms(self) -> float:
        return self.median * 1e3


def time_call(fn, *, min_run_time: float = 0.1, threads: int | None = None, warmup: int = 1) -> Timing:
    """Time ``fn()`` (no arguments) and return its median over repeated blocks.

    ``threads`` defaults to the current ``torch.get_num_threads()`` — note that ``benchmark.Timer``
    itself defaults to *one* thread, which silently changes CPU results.
    """
    check_positive_float("min_run_time", min_run_time, "Use a positive number of seconds, e.g. 0.1.")
    threads = threads or torch.get_num_threads()
    for _ in range(warmup):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(median=float(m.median), iqr=float(m.iqr), runs=len(m.times), threads=threads)
