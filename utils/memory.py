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
  any planned allocation larger than a fraction of the memory that is free right now
  (:func:`free_memory_bytes`: on CUDA the driver's free memory plus what PyTorch's caching allocator
  holds unused; on a CPU the container's cgroup limit or ``MemAvailable``, whichever is smaller). Every
  measurement helper of this module calls it *before* allocating, so that a notebook never drives a
  laptop into the out-of-memory killer. :func:`guard_attention` is the attention-shaped version, and
  :func:`sweep_that_fits` cuts a list of candidate sizes to those that fit *this* device — every GPU
  sweep of the course is sized that way, never from "an H100".
* **The out-of-memory edge** (GPU only). :func:`cuda_oom_edge` finds the real edge by trying;
  :func:`is_allocation_failure` is the one test of "this try did not fit" (``torch.OutOfMemoryError``
  and the ``RuntimeError`` s of cuBLAS/cuDNN that mean the same), :func:`fits_by_trying` runs one try
  and frees the memory afterwards.

Units: every function takes and returns **bytes** (integers). ``MIB = 2**20`` and ``GIB = 2**30``
are the binary units; ``MB = 10**6`` and ``GB = 10**9`` the decimal ones (the difference is 4.9 % at
the mega scale and 7.4 % at the giga scale, enough to flip a "does it fit" verdict).
"""

from __future__ import annotations

import contextlib
import gc
import math
import numbers
import os
import sys
from fractions import Fraction

import torch
from torch import nn

from utils import env as _env
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

def free_memory_bytes(device) -> int:
    """Memory free for new tensors on ``device``, in bytes.

    CUDA: :func:`utils.env.cuda_free_bytes` — ``torch.cuda.mem_get_info`` free *plus* the bytes
    PyTorch's caching allocator has reserved but not allocated (it reuses them without asking the
    driver; ignoring them would refuse sizes that fit after one large step). CPU: the smallest of the
    cgroup v2 limit minus usage, the cgroup v1 limit minus usage and ``MemAvailable``
    (:func:`utils.env.cpu_memory_bytes`); else ``psutil``; else ``os.sysconf``; else
    :data:`FALLBACK_FREE_CPU_BYTES` (a small, safe guess).
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


def attention_plan_bytes(batch: int, heads: int, n: int, head_dim: int = 64, bytes_per_element: int = 4,
                         copies: int = 3) -> int:
    """Planned bytes of attention on ``(batch, heads, n, head_dim)`` inputs: the four tensors Q, K, V
    and the output plus ``copies`` tensors of attention-weight size (:func:`attention_weights_bytes`).

    A naive forward holds scores and weights at once (``copies=2``; 3 leaves room for the MATH backend's
    extra one); a fused kernel (flash, memory-efficient) never materialises them (``copies=0``).
    """
    head_dim = check_positive_int("head_dim", head_dim)
    copies = check_int("copies", copies, minimum=0)
    weights = attention_weights_bytes(batch, heads, n, bytes_per_element)
    return 4 * batch * heads * n * head_dim * bytes_per_element + copies * weights


def guard_attention(batch: int, heads: int, n: int, head_dim: int = 64, device="cpu",
                    bytes_per_element: int = 4, copies: int = 3, fraction: float = 0.5,
                    limit_bytes: int | None = None) -> int:
    """Check that attention on ``(batch, heads, n, head_dim)`` inputs fits; return the planned bytes.

    The plan is :func:`attention_plan_bytes` (Q, K, V, output and ``copies`` weight-sized tensors).
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
    """:func:`check_fits` for allocations of at least :data:`GUARD_MIN_BYTES` (smaller ones pass
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


ATTENTION_IMPLS = ("naive", "math", "flash", "efficient", "cudnn")


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
    ``"math"`` / ``"flash"`` / ``"efficient"`` / ``"cudnn"`` (``F.scaled_dot_product_attention`` forced
    to that backend). The backend is checked first: one that does not run on this device in ``dtype``
    (flash on a T4, or in float32 on CUDA; efficient on a CPU) is a ``ValueError`` that says what to use
    instead — :func:`utils.attention.available_attention_impls` lists what runs. The inputs are
    allocated next (and guarded) and are not part of the peak; the output is. Guarded: refuses with
    ``ValueError`` if it would not fit.
    """
    from utils.attention import naive_attention, sdpa_attention

    from utils.attention import check_sdpa_backend

    check_choice("impl", impl, ATTENTION_IMPLS)
    bpe = bytes_per_element(dtype)
    if impl != "naive":
        check_sdpa_backend(impl, device, dtype, head_dim)  # a clear ValueError instead of "No available kernel"
    copies = 0 if impl in ("flash", "efficient", "cudnn") else 3
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

#: Fragments of ``RuntimeError`` messages that mean "an allocation failed". cuBLAS and cuDNN report a
#: failed workspace allocation as their own status; a cuBLAS handle that cannot be created because the
#: GPU is full reports ``NOT_INITIALIZED``.
ALLOCATION_FAILURE_MESSAGES = (
    "out of memory", "cuda_error_out_of_memory", "cudaerrormemoryallocation",
    "cublas_status_alloc_failed", "cudnn_status_alloc_failed", "cublas_status_not_initialized",
    "cudnn_status_not_initialized", "cufft_alloc_failed", "cusolver_status_alloc_failed",
    "cusparse_status_alloc_failed", "failed to allocate",
)

_OOM_ERROR = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def is_allocation_failure(exc: BaseException) -> bool:
    """True when ``exc`` means "did not fit": ``torch.OutOfMemoryError``, or a ``RuntimeError`` whose
    message shows an allocation failure (:data:`ALLOCATION_FAILURE_MESSAGES`: "out of memory",
    ``CUBLAS_STATUS_ALLOC_FAILED``, ``CUDNN_STATUS_ALLOC_FAILED``, ``CUBLAS_STATUS_NOT_INITIALIZED``, …).
    Any other error is a bug and must propagate."""
    if isinstance(exc, _OOM_ERROR):
        return True
    if isinstance(exc, RuntimeError):
        message = str(exc).lower()
        return any(fragment in message for fragment in ALLOCATION_FAILURE_MESSAGES)
    return False


def release_memory(device) -> None:
    """Give memory back after a try: ``gc.collect()``, then on CUDA synchronise and
    ``torch.cuda.empty_cache()`` (cached blocks return to the driver, so the next try and
    :func:`free_memory_bytes` see them)."""
    gc.collect()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def fits_by_trying(fn, device) -> bool:
    """Run ``fn()`` once: ``True`` if it finished, ``False`` if it failed to allocate
    (:func:`is_allocation_failure`); any other exception propagates. The work is synchronised (on CUDA an
    allocation failure can surface late) and memory is released afterwards (:func:`release_memory`),
    whatever happened, so every try starts from the same state."""
    device = torch.device(device)
    ok = True
    try:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except (RuntimeError, MemoryError) as exc:
        if not (is_allocation_failure(exc) or isinstance(exc, MemoryError)):
            raise
        ok = False
    # outside the except block: the traceback (and the tensors its frames hold) is gone by now
    release_memory(device)
    return ok


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
    attention forward (inputs, scores, weights, output). (A fused kernel has no n² edge worth
    searching: its memory grows like n, and its edge lies where its n² *time* is hours.) Each try
    that fails to allocate
    (:func:`is_allocation_failure`: ``torch.OutOfMemoryError`` or a cuBLAS/cuDNN allocation
    ``RuntimeError``) counts as "does not fit"; any other error propagates; memory is released and
    the device synchronised after every try (:func:`fits_by_trying`). Refuses (``ValueError``) on
    anything but a CUDA device: on a CPU the operating system's OOM killer, not an exception, would
    answer. The search is bounded above by ``hi`` (default: the :func:`max_seq_len` of *all* the GPU's
    free memory at 1 byte per element, plus one).
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("cuda_oom_edge runs only on a CUDA device: on a CPU an out-of-memory search "
                         "would be ended by the operating system, not by a catchable error.")
    from utils.attention import naive_attention

    check_choice("what", what, {"weights", "naive"})
    bytes_per_element(dtype)  # validates dtype
    head_dim = check_positive_int("head_dim", head_dim)
    release_memory(device)
    free = free_memory_bytes(device)
    if hi is None:
        hi = max_seq_len(free, batch, heads, 1) + 1

    def attempt(n: int):
        def run():
            if what == "weights":
                t = torch.empty(batch, heads, n, n, dtype=dtype, device=device)
                del t
                return
            q = torch.randn(batch, heads, n, head_dim, dtype=dtype, device=device)
            with torch.no_grad():
                out = naive_attention(q, q, q)
            del q, out
        return run

    return largest_passing(lambda n: fits_by_trying(attempt(n), device), 1, int(hi))
