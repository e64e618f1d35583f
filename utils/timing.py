"""Wall-clock timing that survives a busy laptop.

Timings are the one measurement in this course that is *not* exact. The rules: warm up, take the
median of many runs with :class:`torch.utils.benchmark.Timer`, say the hardware and thread count next
to the number, and only ever assert *robust* bounds on timings.

On CUDA a kernel launch returns before the kernel has run, so a wall clock around the call measures
the launch. ``benchmark.Timer`` synchronises the device before reading its clock (its default timer
calls ``torch.cuda.synchronize`` / ``torch.accelerator.synchronize``), and :func:`time_call`
synchronises once more after the warm-up, so that no warm-up work is still queued when timing starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.benchmark as benchmark

from utils.validate import check_int, check_positive_float, check_positive_int


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


def synchronize() -> None:
    """Wait for every queued CUDA kernel (a no-op without an initialised CUDA context)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_call(fn, *, min_run_time: float = 0.1, threads: int | None = None, warmup: int = 1) -> Timing:
    """Time ``fn()`` (no arguments) and return its median over repeated blocks.

    ``threads`` defaults to the current ``torch.get_num_threads()`` — note that ``benchmark.Timer``
    itself defaults to *one* thread, which silently changes CPU results. ``threads`` must be ``None``
    or ``>= 1``, ``warmup`` (untimed calls before timing) ``>= 0``.
    """
    check_positive_float("min_run_time", min_run_time, "Use a positive number of seconds, e.g. 0.1.")
    if threads is None:
        threads = torch.get_num_threads()
    else:
        threads = check_positive_int("threads", threads, "Use None for torch's current thread count.")
    warmup = check_int("warmup", warmup, minimum=0, hint="warmup counts untimed calls; 0 means none.")
    for _ in range(warmup):
        fn()
    synchronize()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(median=float(m.median), iqr=float(m.iqr), runs=len(m.times), threads=threads)


def time_forward_vs_n(fn, ns, make_input, *, device=None, min_run_time: float = 0.05,
                      threads: int | None = None, no_grad: bool = True) -> list[Timing]:
    """Time one forward call ``fn(make_input(n))`` for every sequence length ``n`` in ``ns``.

    ``fn`` is an ``nn.Module`` or any callable. ``make_input(n)`` returns a tensor, or a tuple of
    tensors passed as separate arguments; it is built once per ``n``, *outside* the timed region, and
    moved to ``device`` (as is a module ``fn``) when ``device`` is given. With ``no_grad`` the call runs
    under :func:`torch.inference_mode`, so no autograd graph is recorded. The module's train/eval mode
    is left as the caller set it (use ``.eval()`` to switch dropout off).

    Returns one :class:`Timing` per ``n``, in the order of ``ns``; each comes from :func:`time_call`,
    so the median is taken over repeated blocks on ``threads`` threads (default: all torch threads).
    """
    if not callable(fn):
        raise ValueError(f"fn must be an nn.Module or a callable, got {type(fn).__name__}.")
    if not callable(make_input):
        raise ValueError("make_input must be a callable n -> input tensor (or tuple of tensors), "
                         f"got {type(make_input).__name__}.")
    ns = [check_positive_int("n", n) for n in ns]
    if not ns:
        raise ValueError("ns is empty; give at least one sequence length, e.g. [64, 256, 1024].")
    if device is not None and isinstance(fn, torch.nn.Module):
        fn = fn.to(device)
    timings = []
    for n in ns:
        inputs = make_input(n)
        if not isinstance(inputs, tuple):
            inputs = (inputs,)
        if device is not None:
            inputs = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs)

        def call(inputs=inputs):
            if no_grad:
                with torch.inference_mode():
                    return fn(*inputs)
            return fn(*inputs)

        timings.append(time_call(call, min_run_time=min_run_time, threads=threads))
    return timings
