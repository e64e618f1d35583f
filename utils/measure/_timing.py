"""Wall-clock timing that a reader can trust: warm-up, synchronisation, repeats, thread count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils import benchmark

from utils.complexity._roofline import attention_stages_bytes
from utils.measure._guard import check_fits
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


def _device(device) -> torch.device:
    if device is None:
        from utils.env import pick_device

        return pick_device()
    return torch.device(device)


def time_best_s(fn, *, repeats: int = 3, min_run_time: float = 0.05, threads: int | None = None) -> float:
    """Seconds per call of ``fn()``: the best (smallest) of ``repeats`` medians from
    :func:`utils.measure.time_call`.

    On a shared machine other work can only *slow a measurement down*, so the fastest of a few
    independent medians is the most faithful estimate of what the hardware does; use it for
    quantities compared with a peak (which is measured the same way).
    """
    repeats = check_positive_int("repeats", repeats)
    check_positive_float("min_run_time", min_run_time)
    return min(time_call(fn, min_run_time=min_run_time, threads=threads).median for _ in range(repeats))


def time_interleaved_s(calls: dict, *, rounds: int = 3, min_run_time: float = 0.05, threads: int | None = None,
                       warmup: int = 1) -> dict:
    """Seconds per call of each ``calls[key]()``, timed in ``rounds`` interleaved rounds (every call once per
    round, in order), keeping each call's fastest median (:func:`time_call`).

    Calls that are compared with each other should be timed this way: a slow moment of a shared machine
    then hits all of them alike instead of one, and the fastest round is the most faithful estimate.
    """
    if not isinstance(calls, dict) or not calls or not all(callable(f) for f in calls.values()):
        raise ValueError("calls must be a non-empty dict of callables taking no arguments, e.g. {n: run_n}.")
    rounds = check_positive_int("rounds", rounds)
    check_positive_float("min_run_time", min_run_time)
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for key, fn in calls.items():
            best[key] = min(best[key], time_call(fn, min_run_time=min_run_time, threads=threads, warmup=warmup).median)
    return best


def time_attention_stages(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, min_run_time: float = 0.1,
                          threads: int | None = None, repeats: int = 1, fraction: float = 0.5,
                          limit_bytes: int | None = None) -> dict[str, Timing]:
    """Time the four stages of naive attention separately on ``(batch, heads, n, head_dim)`` tensors.

    Returns ``{"QKᵀ": Timing, "scale": …, "softmax": …, "PV": …}`` in the order of
    :func:`~utils.complexity.naive_attention_stages`. Each stage's input is computed once, outside its timed region, and
    each stage writes into a preallocated output (``out=``), so that the time is the kernel's and not
    the memory allocator's: on Linux a fresh allocation of tens of MiB is served by ``mmap`` and its
    pages are zeroed by the operating system on first touch, which can cost as much as the kernel.
    With ``repeats > 1`` the four stages are timed that many times, interleaved, and each keeps its
    fastest :class:`~utils.measure.Timing` (see :func:`time_best_s`).

    Guarded: :func:`~utils.complexity.attention_stages_bytes` must fit in ``fraction`` of the free memory of the inputs'
    device (and under ``limit_bytes``), checked before anything is allocated.
    """
    repeats = check_positive_int("repeats", repeats)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor (batch, heads, n, head_dim), got "
                             f"{getattr(t, 'shape', type(t).__name__)}.")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v must have the same shape for self-attention, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}.")
    b, h, n, dh = q.shape
    check_fits(attention_stages_bytes(b, h, n, dh, q.element_size()), q.device, fraction, limit_bytes,
               what=f"the stages of naive attention at n={n} (five n×n tensors)")
    scale = math.sqrt(q.shape[-1])
    with torch.inference_mode():
        kt = k.transpose(-2, -1)
        scores = q @ kt
        scaled = scores / scale
        weights = scaled.softmax(dim=-1)
        out = weights @ v
        s_buf, w_buf, o_buf = torch.empty_like(scores), torch.empty_like(scores), torch.empty_like(out)
        calls = {
            "QKᵀ": lambda: torch.matmul(q, kt, out=s_buf),
            "scale": lambda: torch.div(scores, scale, out=s_buf),
            "softmax": lambda: torch.softmax(scaled, dim=-1, out=w_buf),
            "PV": lambda: torch.matmul(weights, v, out=o_buf),
        }
        best: dict[str, Timing] = {}
        for _ in range(repeats):
            for name, fn in calls.items():
                t = time_call(fn, min_run_time=min_run_time, threads=threads)
                if name not in best or t.median < best[name].median:
                    best[name] = t
        return best
