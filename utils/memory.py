"""Attention's n² memory: closed forms, an exact peak-memory meter, and a guard against OOM.

Three kinds of helper live here.

* **Closed forms.** :func:`attention_weights_bytes` is the size of the ``batch × heads × n × n``
  attention-weight tensor; :func:`max_seq_len` inverts it exactly (integer square root) for a memory
  budget.
* **Measurement.** :func:`peak_memory` runs a function and returns the *peak number of bytes
  allocated above what was in use when it started*. On CUDA it reads the caching allocator's
  counters; on CPU it reads every allocation and free reported by PyTorch's CPU allocator to the
  profiler (``profile_memory=True``), so scratch buffers allocated *inside* kernels are counted too.
  :func:`attention_peak_memory` and :func:`training_peak_memory` measure attention and a training
  step with it.
* **The guard.** :func:`check_fits` refuses — with a :class:`ValueError` that says what to change —
  any planned allocation larger than a fraction of the memory that is free right now (CPU:
  ``MemAvailable`` from ``/proc/meminfo``; CUDA: ``torch.cuda.mem_get_info``). Every measurement
  helper of this module calls it *before* allocating, so that a notebook never drives a laptop into
  the out-of-memory killer. :func:`guard_attention` is the attention-shaped version.

Units: every function takes and returns **bytes** (integers). ``MIB = 2**20`` and ``GIB = 2**30``
are the binary units; ``MB = 10**6`` and ``GB = 10**9`` the decimal ones (the difference is 4.9 % at
the mega scale and 7.4 % at the giga scale, enough to flip a "does it fit" verdict).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
from fractions import Fraction

import torch
from torch import nn

from utils.validate import check_choice, check_int, check_positive_int

MB, GB = 10**6, 10**9
MIB, GIB = 2**20, 2**30

#: Used by :func:`free_memory_bytes` on a CPU machine where neither ``/proc/meminfo`` nor ``psutil``
#: nor ``sysconf`` can tell how much memory is free: a deliberately small assumption.
FALLBACK_FREE_CPU_BYTES = 2 * GIB


# --------------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------------

def attention_weights_bytes(batch: int, heads: int, n: int, bytes_per_element: int = 2) -> int:
    """Bytes of the attention weights ``softmax(QKᵀ/√d)`` of shape ``(batch, heads, n, n)``.

    ``batch · heads · n² · bytes_per_element``; ``bytes_per_element`` is 2 for FP16/BF16, 4 for FP32.
    This is one such tensor: a naive implementation holds the scores *and* the weights at once, and
    training keeps them for the backward pass (see :func:`attention_peak_memory`).
    """
    batch = check_positive_int("batch", batch)
    heads = check_positive_int("heads", heads)
    n = check_positive_int("n", n)
    bytes_per_element = check_positive_int("bytes_per_element", bytes_per_element,
                                           "Use 2 for float16/bfloat16, 4 for float32.")
    return batch * heads * n * n * bytes_per_element


def _check_budget(name: str, value) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of bytes, got {value!r}.")
    if not value > 0:
        raise ValueError(f"{name} must be > 0 bytes, got {value}. Example: 8 * 2**30 for 8 GiB.")
    return Fraction(value)  # exact for ints and for floats


def max_seq_len(memory_budget_bytes, batch: int, heads: int, bytes_per_element: int = 2,
                overhead: float = 1.0) -> int:
    """Largest integer ``n`` whose attention weights, times ``overhead``, fit in the budget.

    That is the largest ``n`` with ``overhead · batch · heads · n² · bytes_per_element <=
    memory_budget_bytes`` — computed exactly with rational arithmetic and an integer square root, so
    ``n`` fits and ``n + 1`` does not (asserted). ``overhead`` multiplies the weights to account for
    everything else a real run keeps (scores and weights at once, activations, gradients); it must be
    positive. Returns 0 when not even ``n = 1`` fits.
    """
    budget = _check_budget("memory_budget_bytes", memory_budget_bytes)
    batch = check_positive_int("batch", batch)
    heads = check_positive_int("heads", heads)
    bytes_per_element = check_positive_int("bytes_per_element", bytes_per_element,
                                           "Use 2 for float16/bfloat16, 4 for float32.")
    if isinstance(overhead, bool) or not isinstance(overhead, numbers.Real) or not math.isfinite(overhead) \
            or not overhead > 0:
        raise ValueError(f"overhead must be a positive finite number (1.0 = weights only), got {overhead!r}.")
    per_n2 = batch * heads * bytes_per_element * Fraction(overhead)

    def fits(m: int) -> bool:
        return m * m * per_n2 <= budget

    n = math.isqrt(math.floor(budget / per_n2))
    assert fits(n) and not fits(n + 1), (n, budget, per_n2)
    return n


def bytes_per_element(dtype: torch.dtype) -> int:
    """Size of one element of ``dtype`` in bytes (2 for float16, 4 for float32, …)."""
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype must be a torch.dtype such as torch.float16, got {dtype!r}.")
    return torch.empty((), dtype=dtype).element_size()


def format_bytes(nbytes: int) -> str:
    """``"256 MiB (268.4 MB)"``: binary and decimal units side by side, to remove the ambiguity."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral) or nbytes < 0:
        raise ValueError(f"nbytes must be a whole number >= 0, got {nbytes!r}.")
    for unit, size, dec_unit, dec in (("GiB", GIB, "GB", GB), ("MiB", MIB, "MB", MB), ("KiB", 2**10, "kB", 10**3)):
        if nbytes >= size:
            return f"{nbytes / size:g} {unit} ({nbytes / dec:.4g} {dec_unit})"
    return f"{nbytes} B"


# --------------------------------------------------------------------------------------------------
# The guard
# --------------------------------------------------------------------------------------------------

def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    parts = line.split()
                    return int(parts[1]) * 1024 if parts[2].lower() == "kb" else int(parts[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_memory_bytes(device) -> int:
    """Memory free for new tensors on ``device``, in bytes.

    CUDA: ``torch.cuda.mem_get_info`` (free bytes on the GPU). CPU: ``MemAvailable`` from
    ``/proc/meminfo`` (Linux); else ``psutil.virtual_memory().available`` if psutil is installed; else
    available pages from ``os.sysconf``; else :data:`FALLBACK_FREE_CPU_BYTES` (a small, safe guess).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device}.")
    avail = _meminfo_available()
    if avail is not None:
        return avail
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

    The plan is the four ``(batch, heads, n, head_dim)`` tensors Q, K, V and the output plus
    ``copies`` tensors of attention-weight size (a naive forward holds scores and weights at once, the
    MATH backend one more; use ``copies=0`` for a kernel that never materialises them). Raises the
    guard's ``ValueError`` (see :func:`check_fits`) when it does not fit.
    """
    head_dim = check_positive_int("head_dim", head_dim)
    copies = check_int("copies", copies, minimum=0)
    weights = attention_weights_bytes(batch, heads, n, bytes_per_element)
    planned = 4 * batch * heads * n * head_dim * bytes_per_element + copies * weights
    return check_fits(planned, device, fraction, limit_bytes,
                      what=f"attention with batch={batch}, heads={heads}, n={n}")


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 (the profiler's native start/stop banners) for a moment."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cpu_memory_trace(fn) -> list[int]:
    """Run ``fn()`` under the profiler; the CPU allocator's events in time order (bytes: + alloc, − free)."""
    # torch.autograd.profiler.profile: the same Kineto recorder as torch.profiler.profile, without
    # the latter's import of torch._inductor (seconds) on first use.
    from torch.autograd.profiler import profile

    prof = profile(profile_memory=True)
    with _quiet_native_stderr():
        prof.__enter__()
    try:
        fn()
    finally:
        with _quiet_native_stderr():
            prof.__exit__(None, None, None)
    events = [e for e in prof.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    return [int(e.nbytes()) for e in events]


def _cpu_peak(fn) -> int:
    # The reader above relies on Kineto internals: check once per process, on a 1 MiB canary, that it
    # still sees allocations (raises RuntimeError naming the torch version instead of returning 0).
    from utils.torch_support import ensure_cpu_memory_reader

    ensure_cpu_memory_reader(_cpu_memory_trace)
    current = peak = 0
    for nbytes in _cpu_memory_trace(fn):  # allocations are positive, frees negative
        current += nbytes
        peak = max(peak, current)
    return int(peak)


def peak_memory(fn, device) -> int:
    """Peak bytes allocated *above the starting level* while ``fn()`` runs on ``device``.

    CUDA: ``reset_peak_memory_stats`` then ``max_memory_allocated`` minus the bytes allocated
    before the call (synchronised on both sides). CPU: the running sum of every allocation (+) and
    free (−) that PyTorch's CPU allocator reports to the profiler, in time order, maximised; it
    includes temporaries inside kernels and tensors ``fn`` frees again, and is exact to the byte for
    requested tensor sizes. Tensors allocated before the call are not counted; their frees inside
    ``fn`` can only lower the running sum. Each CPU call costs a few milliseconds of profiler set-up.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a callable taking no arguments, got {type(fn).__name__}.")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device}.")
    return _cpu_peak(fn)


ATTENTION_IMPLS = ("naive", "math", "flash", "efficient")


def attention_inputs(batch: int, heads: int, n: int, head_dim: int, device="cpu", dtype=torch.float32,
                     seed: int = 0, fraction: float = 0.5, limit_bytes: int | None = None):
    """Random ``q, k, v`` of shape ``(batch, heads, n, head_dim)`` — after the guard says they fit."""
    bpe = bytes_per_element(dtype)
    for name, value in (("batch", batch), ("heads", heads), ("n", n), ("head_dim", head_dim)):
        check_positive_int(name, value)
    check_fits(3 * batch * heads * n * head_dim * bpe, device, fraction, limit_bytes, what="q, k and v")
    g = torch.Generator(device="cpu").manual_seed(seed)
    return tuple(torch.randn(batch, heads, n, head_dim, generator=g, dtype=torch.float32).to(device, dtype)
                 for _ in range(3))


def attention_peak_memory(impl: str, batch: int, heads: int, n: int, head_dim: int = 64, device="cpu",
                          dtype=torch.float32, fraction: float = 0.5, limit_bytes: int | None = None) -> int:
    """Peak bytes of one attention forward ``softmax(QKᵀ/√d)V`` beyond its inputs, on ``device``.

    ``impl``: ``"naive"`` (:func:`utils.attention.naive_attention`, scores materialised),
    ``"math"`` / ``"flash"`` / ``"efficient"`` (``F.scaled_dot_product_attention`` forced to that
    backend; on CPU only MATH and FLASH exist). The inputs are allocated first (and guarded) and are
    not part of the peak; the output is. Guarded: refuses with ``ValueError`` if it would not fit.
    """
    from utils.attention import naive_attention, sdpa_attention

    check_choice("impl", impl, ATTENTION_IMPLS)
    bpe = bytes_per_element(dtype)
    copies = 0 if impl in ("flash", "efficient") else 3
    guard_attention(batch, heads, n, head_dim, device, bpe, copies, fraction, limit_bytes)
    def runner(q, k, v):
        def run():
            with torch.no_grad():
                if impl == "naive":
                    naive_attention(q, k, v)
                else:
                    sdpa_attention(q, k, v, backend=impl)
        return run

    if torch.device(device).type == "cuda":
        # warm-up: the first matrix product on a CUDA stream allocates cuBLAS's workspace for good;
        # it must not be counted as part of the first measurement
        runner(*attention_inputs(1, 1, 16, head_dim, device, dtype))()
    q, k, v = attention_inputs(batch, heads, n, head_dim, device, dtype, fraction=fraction,
                               limit_bytes=limit_bytes)
    return peak_memory(runner(q, k, v), device)


class TransformerBlock(nn.Module):
    """A pre-norm Transformer encoder block whose attention is naive or SDPA (to compare memory).

    ``x + Attn(LN(x))`` then ``x + FFN(LN(x))`` with ``FFN = Linear(d, d_ff) → GELU → Linear(d_ff, d)``;
    attention is :class:`utils.attention.SelfAttention` with ``impl="naive"`` (weights materialised
    and saved for backward) or ``"sdpa"``. No dropout, so runs are deterministic.
    """

    def __init__(self, d_model: int, heads: int, d_ff: int, impl: str = "naive"):
        super().__init__()
        from utils.attention import SelfAttention

        d_ff = check_positive_int("d_ff", d_ff)
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, impl=impl)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def parameter_bytes(module: nn.Module) -> int:
    """Bytes of every parameter of ``module`` (what its weights occupy)."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module, got {type(module).__name__}.")
    return sum(p.numel() * p.element_size() for p in module.parameters())


def training_peak_memory(model: nn.Module, x: torch.Tensor, device="cpu", fraction: float = 0.5,
                         limit_bytes: int | None = None, planned_bytes: int | None = None) -> dict:
    """Peak memory of inference vs one training step (forward + backward + Adam) of ``model`` on ``x``.

    Returns a dict of bytes: ``params`` (the weights, allocated before either run), ``forward``
    (peak of a forward under ``torch.no_grad``, beyond the weights and the input), ``train_step``
    (peak of ``zero_grad → forward → loss → backward → Adam.step`` with a *fresh* Adam, so its two
    state tensors per parameter and the gradients are created inside the measured window),
    ``grads`` and ``adam_state`` (their exact sizes afterwards), and the two totals
    ``inference_total = params + forward`` and ``training_total = params + train_step`` and their
    ``ratio``. ``planned_bytes`` (default: 16 × params + 40 × the input) is checked by the guard
    first. ``model`` and ``x`` must already be on ``device``; the model is left with its gradients
    cleared.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}.")
    params = parameter_bytes(model)
    if planned_bytes is None:
        planned_bytes = 16 * params + 40 * x.numel() * x.element_size()
    check_fits(int(planned_bytes), device, fraction, limit_bytes, what="the training step")

    def forward_only():
        with torch.no_grad():
            model(x)

    if torch.device(device).type == "cuda":
        # warm-up: cuBLAS allocates its workspace on first use, once; keep it out of the measurements
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    forward = peak_memory(forward_only, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.zero_grad(set_to_none=True)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()

    train = peak_memory(train_step, device)
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    adam_state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                     if isinstance(t, torch.Tensor) and t.dim() > 0)
    model.zero_grad(set_to_none=True)
    del opt
    return {
        "params": params, "forward": forward, "train_step": train, "grads": grads, "adam_state": adam_state,
        "inference_total": params + forward, "training_total": params + train,
        "ratio": (params + train) / (params + forward),
    }


# --------------------------------------------------------------------------------------------------
# The out-of-memory edge (GPU only)
# --------------------------------------------------------------------------------------------------

def largest_passing(try_fn, lo: int, hi: int) -> int:
    """Largest integer ``m`` in ``[lo, hi]`` with ``try_fn(m)`` true, by bisection.

    ``try_fn`` must be monotone (true up to some edge, false beyond) and ``try_fn(lo)`` true;
    returns ``lo - 1`` when ``try_fn(lo)`` is false. Used to find the out-of-memory edge, where
    ``try_fn`` attempts an allocation and reports whether it succeeded.
    """
    lo = check_positive_int("lo", lo)
    hi = check_positive_int("hi", hi)
    if hi < lo:
        raise ValueError(f"need lo <= hi, got lo={lo}, hi={hi}.")
    if not try_fn(lo):
        return lo - 1
    good, bad = lo, hi + 1
    if try_fn(hi):
        return hi
    bad = hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if try_fn(mid):
            good = mid
        else:
            bad = mid
    return good


def cuda_oom_edge(batch: int, heads: int, device="cuda", dtype=torch.float16, what: str = "weights",
                  head_dim: int = 64, hi: int | None = None) -> int:
    """The real largest ``n`` for which attention of this shape fits on a CUDA GPU, found by trying.

    ``what="weights"`` allocates one ``(batch, heads, n, n)`` tensor; ``what="naive"`` runs a naive
    attention forward (inputs, scores, weights, output). Each try that raises
    ``torch.cuda.OutOfMemoryError`` counts as "does not fit"; memory is released after every try.
    Refuses (``ValueError``) on anything but a CUDA device: on a CPU the operating system's OOM
    killer, not an exception, would answer. The search is bounded above by ``hi`` (default: the
    :func:`max_seq_len` of *all* the GPU's free memory at 1 byte per element, plus one).
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("cuda_oom_edge runs only on a CUDA device: on a CPU an out-of-memory search "
                         "would be ended by the operating system, not by a catchable error.")
    check_choice("what", what, {"weights", "naive"})
    bytes_per_element(dtype)  # validates dtype
    free = free_memory_bytes(device)
    if hi is None:
        hi = max_seq_len(free, batch, heads, 1) + 1

    def try_fn(n: int) -> bool:
        ok = True
        try:
            if what == "weights":
                t = torch.empty(batch, heads, n, n, dtype=dtype, device=device)
                del t
            else:
                from utils.attention import naive_attention
                q = torch.randn(batch, heads, n, head_dim, dtype=dtype, device=device)
                with torch.no_grad():
                    out = naive_attention(q, q, q)
                del q, out
            torch.cuda.synchronize(device)
        except torch.cuda.OutOfMemoryError:
            ok = False
        torch.cuda.empty_cache()
        return ok

    return largest_passing(try_fn, 1, int(hi))
