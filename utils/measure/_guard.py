"""The out-of-memory guard: free memory now, and refusing a planned allocation that would not fit.
"""

from __future__ import annotations

import numbers
import os

import torch

from utils import env as _env
from utils.complexity._bytes import GIB, MIB, attention_plan_bytes, format_bytes

#: Used by :func:`free_memory_bytes` on a CPU machine where neither ``/proc/meminfo`` nor ``psutil``
#: nor ``sysconf`` can tell how much memory is free: a deliberately small assumption.
FALLBACK_FREE_CPU_BYTES = 2 * GIB


def free_memory_bytes(device) -> int:
    """Memory free for new tensors on ``device``, in bytes.

    CUDA: :func:`utils.env.cuda_free_bytes` — ``torch.cuda.mem_get_info`` free *plus* the bytes
    PyTorch's caching allocator has reserved but not allocated (it reuses them without asking the
    driver; ignoring them would refuse sizes that fit after one large step). CPU: the smallest of the
    cgroup v2 limit minus usage, the cgroup v1 limit minus usage and ``MemAvailable``
    (:func:`utils.env.cpu_memory_bytes`); else ``psutil``; else ``os.sysconf``; else
    ``FALLBACK_FREE_CPU_BYTES`` (a small, safe guess).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return _env.cuda_free_bytes(device)
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device}.")
    _total, free = _env.cpu_memory_bytes()
    if free is not None:
        return int(free)
    try:
        import psutil  # optional
        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - any failure means "unknown"
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_FREE_CPU_BYTES


def check_fits(bytes_needed: int, device, fraction: float = 0.5, limit_bytes: int | None = None,
               what: str = "this allocation") -> int:
    """Refuse (``ValueError``) a planned allocation that would not fit comfortably; else return it.

    The allocation of ``bytes_needed`` bytes on ``device`` is refused when it exceeds ``fraction`` of
    the memory free right now (:func:`free_memory_bytes`) or, when given, the hard cap
    ``limit_bytes`` (a notebook's own budget). Call it *before* allocating.
    """
    if isinstance(bytes_needed, bool) or not isinstance(bytes_needed, numbers.Integral) or bytes_needed < 0:
        raise ValueError(f"bytes_needed must be a whole number of bytes >= 0, got {bytes_needed!r}.")
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}; 0.5 leaves half the free memory alone.")
    if limit_bytes is not None and (isinstance(limit_bytes, bool) or not isinstance(limit_bytes, numbers.Integral)
                                    or limit_bytes <= 0):
        raise ValueError(f"limit_bytes must be a positive whole number of bytes or None, got {limit_bytes!r}.")
    bytes_needed = int(bytes_needed)
    device = torch.device(device)
    if limit_bytes is not None and bytes_needed > limit_bytes:
        raise ValueError(
            f"refusing {what}: it needs {format_bytes(bytes_needed)}, more than the cap of "
            f"{format_bytes(int(limit_bytes))} set for this run. Reduce n, the batch or the heads, "
            f"or raise limit_bytes if you know your machine has room.")
    free = free_memory_bytes(device)
    allowed = int(fraction * free)
    if bytes_needed > allowed:
        raise ValueError(
            f"refusing {what}: it needs {format_bytes(bytes_needed)}, more than {fraction:.0%} of the "
            f"{format_bytes(free)} free on {device} right now ({format_bytes(allowed)}). Reduce n, the "
            f"batch or the heads (memory grows like n²), or use a memory-efficient kernel.")
    return bytes_needed


def guard_attention(batch: int, heads: int, n: int, head_dim: int = 64, device="cpu",
                    bytes_per_element: int = 4, copies: int = 3, fraction: float = 0.5,
                    limit_bytes: int | None = None) -> int:
    """Check that attention on ``(batch, heads, n, head_dim)`` inputs fits; return the planned bytes.

    The plan is :func:`~utils.complexity.attention_plan_bytes` (Q, K, V, output and ``copies`` weight-sized tensors).
    Raises the guard's ``ValueError`` (see :func:`check_fits`) when it does not fit.
    """
    planned = attention_plan_bytes(batch, heads, n, head_dim, bytes_per_element, copies)
    return check_fits(planned, device, fraction, limit_bytes,
                      what=f"attention with batch={batch}, heads={heads}, n={n}")


#: Allocations below this many bytes are not checked by :func:`guard_large` (reading the free memory
#: costs tens of microseconds, which would show in the timings of small kernels).
GUARD_MIN_BYTES = 64 * MIB


def guard_large(bytes_needed: int, device, fraction: float = 0.5, limit_bytes: int | None = None,
                what: str = "this allocation") -> int:
    """:func:`check_fits` for allocations of at least ``GUARD_MIN_BYTES`` (smaller ones pass
    unchecked); for helpers called inside timing loops."""
    if bytes_needed >= GUARD_MIN_BYTES or limit_bytes is not None:
        return check_fits(bytes_needed, device, fraction, limit_bytes, what)
    return int(bytes_needed)


def sweep_that_fits(candidates, bytes_for, device, fraction: float = 0.5, limit_bytes: int | None = None,
                    free_bytes: int | None = None) -> list:
    """The candidate sizes, in increasing order, up to the largest whose plan fits this device.

    ``bytes_for(n)`` is the planned allocation for size ``n`` (e.g. ``lambda n:
    attention_plan_bytes(1, 8, n, 64, 2, copies=3)``). A size fits when its plan is at most ``fraction``
    of the free memory (:func:`free_memory_bytes` of ``device``, or ``free_bytes`` if given) and at most
    ``limit_bytes``: the same margin as :func:`check_fits`, so every kept size then passes the guard.
    Raises ``ValueError`` when not even the smallest candidate fits. Use it on the GPU list of
    :func:`utils.env.sweep`: the same chapter then runs n up to 16384 on an H200 and fewer on a T4.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}; 0.5 leaves half the free memory alone.")
    if not callable(bytes_for):
        raise ValueError("bytes_for must be a callable n -> planned bytes, e.g. "
                         "lambda n: attention_plan_bytes(1, 8, n, 64, 2).")
    sizes = sorted(candidates)
    if not sizes:
        raise ValueError("candidates is empty; give the sizes to try, e.g. [1024, 2048, 4096].")
    free = free_memory_bytes(device) if free_bytes is None else int(free_bytes)
    allowed = int(fraction * free)
    if limit_bytes is not None:
        allowed = min(allowed, int(limit_bytes))
    kept = [n for n in sizes if bytes_for(n) <= allowed]
    if not kept or kept[0] != sizes[0]:
        raise ValueError(
            f"not even the smallest size {sizes[0]} fits: it needs {format_bytes(int(bytes_for(sizes[0])))}, "
            f"more than {fraction:.0%} of the {format_bytes(free)} free on {torch.device(device)} "
            f"({format_bytes(max(allowed, 0))}). Free memory (restart the runtime) or use smaller sizes.")
    return [n for n in sizes if n <= kept[-1]]


def largest_that_fits(candidates, bytes_for, device, fraction: float = 0.5, limit_bytes: int | None = None,
                      free_bytes: int | None = None):
    """The largest candidate whose plan fits (see :func:`sweep_that_fits`, same margin)."""
    return sweep_that_fits(candidates, bytes_for, device, fraction, limit_bytes, free_bytes)[-1]
