"""The roofline's arithmetic: intensity, ridge, attainable FLOP/s; bytes and FLOPs of attention's stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.complexity._flops import attention_flops
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int


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


def matmul_bytes(m: int, k: int, n: int, batch: int = 1, bytes_per_element: int = 2) -> int:
    """Ideal memory traffic of ``batch`` products ``(m × k) @ (k × n)``: read both operands once, write
    the result once — ``batch · (m·k + k·n + m·n) · bytes_per_element``."""
    m, k, n = check_positive_int("m", m), check_positive_int("k", k), check_positive_int("n", n)
    batch = check_positive_int("batch", batch)
    b = check_positive_int("bytes_per_element", bytes_per_element, "fp32 is 4, bf16/fp16 2.")
    return batch * (m * k + k * n + m * n) * b


def elementwise_bytes(numel: int, bytes_per_element: int = 2, reads: int = 1, writes: int = 1) -> int:
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
    (``kind="matmul"``, FLOPs as counted by :mod:`utils.complexity`) or element-wise (``kind="elementwise"``,
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
                           bytes_per_element: int = 2, softmax_flops_per_element: int = 5) -> list[Stage]:
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

    The two matmul stages add up to :func:`utils.complexity.attention_flops` exactly. For ``n ≫ d_h`` the
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
                          bytes_per_element: int = 2, softmax_flops_per_element: int = 5) -> Stage:
    """Attention as one fused kernel (FlashAttention's ideal): the same FLOPs as
    :func:`~utils.complexity.naive_attention_stages` in total, but only Q, K, V read and O written — ``4·n·d_h``
    elements
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
    from utils.complexity._flash import flash_block_sizes  # _flash imports this module

    _, block_c = flash_block_sizes(sram, d, bytes_per_element=b)
    outer = -(-n // block_c)
    return bh * b * (n * d + 2 * n + 2 * n * d + outer * (3 * n * d + 4 * n))


def attention_stages_bytes(batch: int, heads: int, n: int, head_dim: int, bytes_per_element: int = 2) -> int:
    """Bytes :func:`~utils.measure.time_attention_stages` allocates beyond its inputs: five ``(batch, heads, n, n)``
    tensors (scores, scaled scores, weights and two output buffers) and two outputs."""
    n2 = batch * heads * n * n
    return (5 * n2 + 2 * batch * heads * n * head_dim) * bytes_per_element
