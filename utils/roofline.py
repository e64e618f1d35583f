"""The roofline model: is a computation limited by arithmetic or by memory traffic?

A kernel that performs ``F`` floating-point operations and moves ``Q`` bytes between memory and the
processor has **arithmetic intensity** ``I = F / Q`` (FLOPs per byte). On a device that can do at most
``P`` FLOP/s and move at most ``β`` bytes/s, the kernel cannot run faster than

    ``attainable(I) = min(P, I · β)``        (Williams, Waterman & Patterson 2009)

— the *roofline*. Left of the **ridge point** ``I* = P / β`` the slanted roof ``I · β`` is lower: the
kernel is **memory-bound** and more arithmetic units would not help. Right of it the flat roof ``P``
is lower: it is **compute-bound**.

This module measures the two roofs of the device a notebook runs on (:func:`matmul_peak_flops`: a large
square matrix product; :func:`copy_bandwidth`: a large tensor copy), and gives the FLOPs and the bytes
of the stages of naive attention (:func:`naive_attention_stages`) so that each stage can be placed
under the roofs.

**Assumptions behind the byte counts** (stated once here, repeated where they are used):

* *ideal traffic*: every operand is read from main memory once and every result written once — the
  minimum any implementation must move. Caches can make a small problem cheaper than this (the data
  never leaves the cache) and a naive kernel can make a large one dearer (operands re-read);
* a matrix product ``(m × k) @ (k × n)`` moves ``(m·k + k·n + m·n)`` elements;
* an element-wise stage on ``N`` elements (scaling, softmax) reads ``N`` and writes ``N`` elements:
  the softmax of a row re-reads it two or three times, but a row of a few thousand numbers stays in
  the cache between passes, so main memory sees one read and one write.

**FLOP convention.** Matrix products are counted as in :mod:`utils.flops` (2 × multiply-accumulates,
what ``FlopCounterMode`` reports). Element-wise work is *not* counted there; to place it on a roofline
we charge it an explicit, stated number of operations per element (``1`` for a scaling, ``5`` by
default for a softmax: max, subtract, exponential, sum, divide). An exponential costs more than one
instruction on most hardware, so this *under*-states the softmax's arithmetic; the conclusion that it
sits far left of the ridge does not depend on the exact figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from utils.flops import attention_flops
from utils.memory import check_fits, largest_that_fits, sweep_that_fits
from utils.timing import Timing, time_call
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

__all__ = [
    "Roofline", "Stage", "time_best", "matmul_peak_flops", "copy_bandwidth", "measure_roofline",
    "arithmetic_intensity", "achieved_flops_per_s", "attainable_flops_per_s", "ridge_intensity",
    "matmul_bytes", "elementwise_bytes", "naive_attention_stages", "fused_attention_stage",
    "attention_stages_bytes", "time_attention_stages", "tiled_attention_bytes",
]


def _device(device) -> torch.device:
    if device is None:
        from utils.env import pick_device

        return pick_device()
    return torch.device(device)


def _check_float_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype such as torch.float32, got {dtype!r}.")
    return dtype


# --------------------------------------------------------------------------------------------------
# Measuring the two roofs
# --------------------------------------------------------------------------------------------------

def time_best(fn, *, repeats: int = 3, min_run_time: float = 0.05, threads: int | None = None) -> float:
    """Seconds per call of ``fn()``: the best (smallest) of ``repeats`` medians from
    :func:`utils.timing.time_call`.

    On a shared machine other work can only *slow a measurement down*, so the fastest of a few
    independent medians is the most faithful estimate of what the hardware does; use it for
    quantities compared with a peak (which is measured the same way).
    """
    repeats = check_positive_int("repeats", repeats)
    check_positive_float("min_run_time", min_run_time)
    return min(time_call(fn, min_run_time=min_run_time, threads=threads).median for _ in range(repeats))


def matmul_peak_flops(device=None, size=1024, dtype: torch.dtype = torch.float32, *,
                      repeats: int = 3, min_run_time: float = 0.1, threads: int | None = None,
                      fraction: float = 0.5) -> float:
    """Measured matrix-multiply throughput of ``device``, in FLOP/s: the flat roof.

    Times ``A @ B`` for two random ``size × size`` matrices (``2·size³`` FLOPs) with
    :func:`time_best` (the best of ``repeats`` medians of :func:`utils.timing.time_call`). ``size`` may
    be a sequence of sizes: the best throughput over them is returned (a BLAS library is fastest at
    the size that suits its blocking and the caches). This is the *achievable* peak of the library at
    this thread count, not the vendor's datasheet number (which is usually higher). In float32 on a
    CUDA GPU from sm80 on, the result depends on the TF32 switch
    (``torch.backends.cuda.matmul.allow_tf32``), which :func:`utils.env.hardware` records.

    Guarded: each size's three matrices must fit in ``fraction`` of the free memory
    (:func:`utils.memory.check_fits`), checked before they are allocated.
    """
    sizes = [size] if isinstance(size, int) or not hasattr(size, "__iter__") else list(size)
    if not sizes:
        raise ValueError("size must be a positive int or a non-empty sequence of them, e.g. 1024.")
    sizes = [check_positive_int("size", s, "Use a few hundred or thousand, e.g. 1024.") for s in sizes]
    repeats = check_positive_int("repeats", repeats)
    check_positive_float("min_run_time", min_run_time)
    dtype = _check_float_dtype(dtype)
    device = _device(device)
    element = torch.empty((), dtype=dtype).element_size()
    for n in sizes:
        check_fits(3 * n * n * element, device, fraction, what=f"a {n}×{n} matrix product")
    best = 0.0
    for n in sizes:
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        seconds = time_best(lambda: a @ b, repeats=repeats, min_run_time=min_run_time, threads=threads)
        best = max(best, 2 * n**3 / seconds)
    return best


def copy_bandwidth(device=None, mebibytes: float = 64, dtype: torch.dtype = torch.float32, *,
                   repeats: int = 3, min_run_time: float = 0.1, threads: int | None = None,
                   fraction: float = 0.5) -> float:
    """Measured memory bandwidth of ``device``, in bytes/s: the slope of the slanted roof.

    Times ``dst.copy_(src)`` for a tensor of ``mebibytes`` MiB (one read and one write of every byte, so
    ``2 × size`` bytes move) and returns the best of ``repeats`` medians. Choose ``mebibytes`` well above
    the last-level cache (tens of MiB on a laptop CPU), or the copy measures the cache, not the memory.
    Guarded: source and destination must fit in ``fraction`` of the free memory.
    """
    mebibytes = check_positive_float("mebibytes", mebibytes, "Use tens of MiB, e.g. 64.")
    repeats = check_positive_int("repeats", repeats)
    check_positive_float("min_run_time", min_run_time)
    dtype = _check_float_dtype(dtype)
    device = _device(device)
    element = torch.empty((), dtype=dtype).element_size()
    numel = max(1, int(mebibytes * 2**20) // element)
    check_fits(2 * numel * element, device, fraction, what=f"a {mebibytes:g} MiB copy")
    src = torch.ones(numel, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    best = time_best(lambda: dst.copy_(src), repeats=repeats, min_run_time=min_run_time, threads=threads)
    return 2 * numel * element / best


@dataclass(frozen=True)
class Roofline:
    """The two roofs of one device (one dtype, one thread count), as measured."""

    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    device: str = ""
    dtype: str = "float32"
    threads: int = 1
    tf32: bool | None = None   # CUDA: torch.backends.cuda.matmul.allow_tf32 during the measurement

    def __post_init__(self):
        check_positive_float("peak_flops_per_s", self.peak_flops_per_s)
        check_positive_float("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)

    @property
    def ridge_intensity(self) -> float:
        """FLOPs per byte at which the two roofs meet: ``peak / bandwidth``."""
        return ridge_intensity(self.peak_flops_per_s, self.bandwidth_bytes_per_s)

    def attainable(self, intensity):
        """``min(peak, intensity · bandwidth)`` for a number or an array of intensities."""
        return attainable_flops_per_s(intensity, self.peak_flops_per_s, self.bandwidth_bytes_per_s)

    def bound(self, intensity: float) -> str:
        """``"memory"`` left of the ridge point, ``"compute"`` at or right of it."""
        check_positive_float("intensity", intensity)
        return "memory" if intensity < self.ridge_intensity else "compute"


def measure_roofline(device=None, dtype: torch.dtype = torch.float32, *, matmul_size=None,
                     copy_mebibytes: float | None = None, repeats: int = 3, min_run_time: float = 0.1,
                     threads: int | None = None) -> Roofline:
    """Measure both roofs of ``device`` and return them as a :class:`Roofline`.

    Defaults: the best of 256², 512² and 1024² matrix products and a 64 MiB copy on a CPU; on CUDA the
    sizes of 4096² and 8192² and a copy of 256 MiB or 1 GiB *that fit* this GPU's free memory (a
    quarter of it at most, :func:`utils.memory.sweep_that_fits`). ``matmul_size`` (an int or a
    sequence) and ``copy_mebibytes`` override them."""
    from utils.env import _tf32, hardware_label, on_gpu

    device = _device(device)
    dtype = _check_float_dtype(dtype)
    gpu = on_gpu(device)
    element = torch.empty((), dtype=dtype).element_size()
    if not matmul_size:
        matmul_size = (sweep_that_fits([4096, 8192], lambda n: 3 * n * n * element, device, 0.25)
                       if gpu else (256, 512, 1024))
    if not copy_mebibytes:
        copy_mebibytes = (largest_that_fits([256, 1024], lambda m: 2 * m * 2**20, device, 0.25)
                          if gpu else 64)
    peak = matmul_peak_flops(device, matmul_size, dtype, repeats=repeats, min_run_time=min_run_time,
                             threads=threads)
    bandwidth = copy_bandwidth(device, copy_mebibytes, dtype, repeats=repeats, min_run_time=min_run_time,
                               threads=threads)
    return Roofline(peak, bandwidth, hardware_label(device), str(dtype).replace("torch.", ""),
                    threads or torch.get_num_threads(), _tf32()[0] if gpu else None)


# --------------------------------------------------------------------------------------------------
# Intensity and the roofline itself
# --------------------------------------------------------------------------------------------------

def arithmetic_intensity(flops, bytes_moved) -> float:
    """FLOPs per byte moved: ``flops / bytes_moved`` (both must be > 0)."""
    flops = check_positive_float("flops", flops)
    bytes_moved = check_positive_float("bytes_moved", bytes_moved)
    return flops / bytes_moved


def achieved_flops_per_s(flops, seconds) -> float:
    """Achieved throughput ``flops / seconds`` of a measured call (both must be > 0)."""
    flops = check_positive_float("flops", flops, "A FLOP count of 0 means nothing was counted: check it.")
    seconds = check_positive_float("seconds", seconds)
    return flops / seconds


def ridge_intensity(peak_flops_per_s, bandwidth_bytes_per_s) -> float:
    """The ridge point ``peak / bandwidth`` in FLOPs per byte."""
    peak = check_positive_float("peak_flops_per_s", peak_flops_per_s)
    bandwidth = check_positive_float("bandwidth_bytes_per_s", bandwidth_bytes_per_s)
    return peak / bandwidth


def attainable_flops_per_s(intensity, peak_flops_per_s, bandwidth_bytes_per_s):
    """The roofline ``min(peak, intensity · bandwidth)``; ``intensity`` may be a number or an array."""
    peak = check_positive_float("peak_flops_per_s", peak_flops_per_s)
    bandwidth = check_positive_float("bandwidth_bytes_per_s", bandwidth_bytes_per_s)
    arr = np.asarray(intensity, dtype=float)
    if arr.size == 0 or np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"intensity must be > 0 (FLOPs per byte), got {intensity!r}.")
    out = np.minimum(peak, arr * bandwidth)
    return float(out) if np.ndim(intensity) == 0 else out


# --------------------------------------------------------------------------------------------------
# Bytes moved (ideal traffic) and the stages of attention
# --------------------------------------------------------------------------------------------------

def matmul_bytes(m: int, k: int, n: int, batch: int = 1, bytes_per_element: int = 4) -> int:
    """Ideal memory traffic of ``batch`` products ``(m × k) @ (k × n)``: read both operands once, write
    the result once — ``batch · (m·k + k·n + m·n) · bytes_per_element``."""
    m, k, n = check_positive_int("m", m), check_positive_int("k", k), check_positive_int("n", n)
    batch = check_positive_int("batch", batch)
    b = check_positive_int("bytes_per_element", bytes_per_element, "fp32 is 4, bf16/fp16 2.")
    return batch * (m * k + k * n + m * n) * b


def elementwise_bytes(numel: int, bytes_per_element: int = 4, reads: int = 1, writes: int = 1) -> int:
    """Ideal memory traffic of an element-wise stage over ``numel`` elements: ``(reads + writes) · numel``
    elements."""
    numel = check_positive_int("numel", numel)
    b = check_positive_int("bytes_per_element", bytes_per_element, "fp32 is 4, bf16/fp16 2.")
    reads = check_int("reads", reads, minimum=0)
    writes = check_int("writes", writes, minimum=0)
    if reads + writes == 0:
        raise ValueError("an element-wise stage reads or writes something: give reads + writes >= 1.")
    return (reads + writes) * numel * b


@dataclass(frozen=True)
class Stage:
    """One stage of a computation: its FLOPs, its ideal bytes moved, and whether it is a matrix product
    (``kind="matmul"``, FLOPs as counted by :mod:`utils.flops`) or element-wise (``kind="elementwise"``,
    FLOPs charged per element by assumption)."""

    name: str
    flops: int
    bytes_moved: int
    kind: str

    def __post_init__(self):
        check_positive_int("flops", self.flops)
        check_positive_int("bytes_moved", self.bytes_moved)
        check_choice("kind", self.kind, {"matmul", "elementwise", "fused"})

    @property
    def intensity(self) -> float:
        return arithmetic_intensity(self.flops, self.bytes_moved)


def naive_attention_stages(n: int, head_dim: int, batch: int = 1, heads: int = 1, *,
                           bytes_per_element: int = 4, softmax_flops_per_element: int = 5) -> list[Stage]:
    """The four stages of :func:`utils.attention.naive_attention` (no mask) on ``batch × heads``
    sequences of ``n`` positions with head width ``head_dim``:

    ========  ============================  ==========================================
    stage     FLOPs                         ideal bytes (per head, × bytes/element)
    ========  ============================  ==========================================
    QKᵀ       ``2·n²·d_h``                  read Q, K (``2·n·d_h``), write S (``n²``)
    scale     ``n²`` (1 per element)        read S, write S/√d_h (``2·n²``)
    softmax   ``5·n²`` (assumed)            read, write (``2·n²``)
    PV        ``2·n²·d_h``                  read P (``n²``), V (``n·d_h``), write O (``n·d_h``)
    ========  ============================  ==========================================

    The two matmul stages add up to :func:`utils.flops.attention_flops` exactly. For ``n ≫ d_h`` the
    matmul stages have intensity about ``2·d_h / bytes_per_element`` (32 FLOP/byte for ``d_h = 64`` in
    fp32) and the element-wise ones a constant below 3 — whatever ``n`` is.
    """
    n, dh = check_positive_int("n", n), check_positive_int("head_dim", head_dim)
    batch, heads = check_positive_int("batch", batch), check_positive_int("heads", heads)
    b = check_positive_int("bytes_per_element", bytes_per_element, "fp32 is 4, bf16/fp16 2.")
    sm = check_positive_int("softmax_flops_per_element", softmax_flops_per_element)
    bh = batch * heads
    core = attention_flops(n, heads * dh, batch, heads=heads)  # QKᵀ + PV, 4·B·n²·(h·d_h)
    half = core // 2
    return [
        Stage("QKᵀ", half, matmul_bytes(n, dh, n, bh, b), "matmul"),
        Stage("scale", bh * n * n, elementwise_bytes(bh * n * n, b), "elementwise"),
        Stage("softmax", sm * bh * n * n, elementwise_bytes(bh * n * n, b), "elementwise"),
        Stage("PV", half, matmul_bytes(n, n, dh, bh, b), "matmul"),
    ]


def fused_attention_stage(n: int, head_dim: int, batch: int = 1, heads: int = 1, *,
                          bytes_per_element: int = 4, softmax_flops_per_element: int = 5) -> Stage:
    """Attention as one fused kernel (FlashAttention's ideal): the same FLOPs as
    :func:`naive_attention_stages` in total, but only Q, K, V read and O written — ``4·n·d_h`` elements
    per head — because the ``n × n`` scores never leave on-chip memory. This is a lower bound no real
    kernel reaches: with on-chip memory of finite size a tiled kernel re-reads blocks, and its traffic
    grows like ``n²·d_h²/M`` (:func:`tiled_attention_bytes`), quadratic in ``n`` again."""
    stages = naive_attention_stages(n, head_dim, batch, heads, bytes_per_element=bytes_per_element,
                                    softmax_flops_per_element=softmax_flops_per_element)
    bh = batch * heads
    return Stage("fused", sum(s.flops for s in stages), 4 * bh * n * head_dim * bytes_per_element, "fused")


def tiled_attention_bytes(n: int, head_dim: int, sram_bytes: int, batch: int = 1, heads: int = 1, *,
                          bytes_per_element: int = 2) -> int:
    """Main-memory (HBM) bytes of FlashAttention's forward pass, Algorithm 1 of Dao et al. (2022), with
    on-chip memory (SRAM) of ``sram_bytes``.

    With ``M = sram_bytes / bytes_per_element`` elements the algorithm uses key/value blocks of
    ``B_c = ⌈M / (4 d)⌉`` rows and query blocks of ``B_r = min(B_c, d)`` rows. It initialises O and the
    row statistics ℓ, m in HBM (``n·d + 2n`` elements written); its outer loop runs over the
    ``T_c = ⌈n / B_c⌉`` key/value blocks, reading each once (``2·n·d`` in all); for every one of them
    the inner loop reads Q, O, ℓ, m and writes O, ℓ, m, block by block (``3·n·d + 4·n`` per outer
    step). Per head:

        elements = n·d + 2n + 2·n·d + T_c · (3·n·d + 4·n)  =  Θ(n² d² / M),

    the count of their Theorem 2 (standard attention: Θ(n·d + n²)). Requires ``d ≤ M`` (a block row
    must fit); the theorem assumes ``d ≤ M ≤ n·d``.
    """
    n = check_positive_int("n", n)
    d = check_positive_int("head_dim", head_dim)
    sram = check_positive_int("sram_bytes", sram_bytes, "Use the on-chip memory per processor, e.g. 100 * 1024.")
    bh = check_positive_int("batch", batch) * check_positive_int("heads", heads)
    b = check_positive_int("bytes_per_element", bytes_per_element, "Use 2 for float16/bfloat16, 4 for float32.")
    m = sram // b
    if m < 4 * d:
        raise ValueError(f"sram_bytes={sram} holds {m} elements, fewer than 4·head_dim={4 * d}: not even one "
                         "row of Q, K, V and O fits. Use a larger SRAM or a smaller head.")
    block_c = -(-m // (4 * d))
    outer = -(-n // block_c)
    return bh * b * (n * d + 2 * n + 2 * n * d + outer * (3 * n * d + 4 * n))


def attention_stages_bytes(batch: int, heads: int, n: int, head_dim: int, bytes_per_element: int = 4) -> int:
    """Bytes :func:`time_attention_stages` allocates beyond its inputs: five ``(batch, heads, n, n)``
    tensors (scores, scaled scores, weights and two output buffers) and two outputs."""
    n2 = batch * heads * n * n
    return (5 * n2 + 2 * batch * heads * n * head_dim) * bytes_per_element


def time_attention_stages(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, min_run_time: float = 0.1,
                          threads: int | None = None, repeats: int = 1, fraction: float = 0.5,
                          limit_bytes: int | None = None) -> dict[str, Timing]:
    """Time the four stages of naive attention separately on ``(batch, heads, n, head_dim)`` tensors.

    Returns ``{"QKᵀ": Timing, "scale": …, "softmax": …, "PV": …}`` in the order of
    :func:`naive_attention_stages`. Each stage's input is computed once, outside its timed region, and
    each stage writes into a preallocated output (``out=``), so that the time is the kernel's and not
    the memory allocator's: on Linux a fresh allocation of tens of MiB is served by ``mmap`` and its
    pages are zeroed by the operating system on first touch, which can cost as much as the kernel.
    With ``repeats > 1`` the four stages are timed that many times, interleaved, and each keeps its
    fastest :class:`~utils.timing.Timing` (see :func:`time_best`).

    Guarded: :func:`attention_stages_bytes` must fit in ``fraction`` of the free memory of the inputs'
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
