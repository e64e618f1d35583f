"""FlashAttention's arithmetic: block sizes from on-chip memory, the SRAM size at which tiling starts to
move fewer bytes than naive attention, and the FLOPs of the backward pass with and without recomputation.
"""

from __future__ import annotations

from utils.complexity._flops import attention_flops
from utils.complexity._roofline import naive_attention_stages, tiled_attention_bytes
from utils.validate import check_positive_int


def flash_block_sizes(sram_bytes: int, head_dim: int, *, bytes_per_element: int = 2) -> tuple[int, int]:
    """The block sizes ``(B_r, B_c)`` of FlashAttention's forward pass (Dao et al. 2022, Algorithm 1, line 1)
    for on-chip memory (SRAM) of ``sram_bytes``: with ``M = sram_bytes // bytes_per_element`` elements,

        ``B_c = ⌈M / (4·d)⌉`` rows of keys and values,   ``B_r = min(B_c, d)`` rows of queries.

    Four blocks of ``B_c × d`` (K_j, V_j, and room for Q_i, O_i) then fill about M, and the score tile
    ``B_r × B_c ≤ d · ⌈M / 4d⌉`` about a quarter of it. These are the sizes
    :func:`~utils.complexity.tiled_attention_bytes` assumes. Requires ``M >= 4·d`` (one row of each).
    """
    d = check_positive_int("head_dim", head_dim)
    sram = check_positive_int("sram_bytes", sram_bytes, "Use the on-chip memory per processor, e.g. 100 * 1024.")
    b = check_positive_int("bytes_per_element", bytes_per_element, "Use 2 for float16/bfloat16, 4 for float32.")
    m = sram // b
    if m < 4 * d:
        raise ValueError(f"sram_bytes={sram} holds {m} elements, fewer than 4·head_dim={4 * d}: not even one "
                         "row of Q, K, V and O fits. Use a larger SRAM or a smaller head.")
    block_c = -(-m // (4 * d))
    return min(block_c, d), block_c


def tiled_attention_crossover_sram_bytes(n: int, head_dim: int, *, bytes_per_element: int = 2) -> int:
    """The smallest on-chip memory (in bytes, a whole number of elements) at which FlashAttention's forward
    moves no more main-memory bytes than naive attention: the least ``sram_bytes`` with
    ``tiled_attention_bytes(n, d, sram_bytes) <= Σ bytes of naive_attention_stages(n, d)``.

    For ``n ≫ d`` the tiled count is about ``12·n²·d²/M`` elements and the naive one ``6·n²``, so the
    crossover tends to ``M ≈ 2·d²`` elements. The tiled count never grows with M, so a bisection over M
    (from ``4·d`` elements, the smallest allowed) finds it exactly. Raises ``ValueError`` if even an SRAM
    that holds the whole of K and V (``B_c >= n``, the tiled count's floor) moves more than naive
    attention — which happens only for ``n`` below about ``d / 3``.
    """
    n = check_positive_int("n", n)
    d = check_positive_int("head_dim", head_dim)
    b = check_positive_int("bytes_per_element", bytes_per_element, "Use 2 for float16/bfloat16, 4 for float32.")
    naive = sum(stage.bytes_moved for stage in naive_attention_stages(n, d, bytes_per_element=b))

    def tiled(elements: int) -> int:
        return tiled_attention_bytes(n, d, elements * b, bytes_per_element=b)

    lo, hi = 4 * d, 4 * d * n              # at hi, B_c = n: one outer step, the least traffic possible
    if tiled(hi) > naive:
        raise ValueError(f"at n={n}, head_dim={d} tiling never moves fewer bytes than naive attention "
                         f"({tiled(hi)} > {naive} bytes even with all of K and V on chip): use n > head_dim / 3.")
    if tiled(lo) <= naive:
        return lo * b
    while hi - lo > 1:                     # invariant: tiled(lo) > naive >= tiled(hi)
        mid = (lo + hi) // 2
        if tiled(mid) <= naive:
            hi = mid
        else:
            lo = mid
    return hi * b


def attention_backward_flops(n: int, head_dim: int, batch: int = 1, heads: int = 1, *,
                             recompute: bool = False) -> int:
    """Matrix-product FLOPs of attention's backward pass, ``softmax(QKᵀ/√d)·V`` with ``n`` queries and keys
    (the convention of :func:`~utils.complexity.attention_flops`: 2 × multiply-accumulates, element-wise
    work not counted). From the gradient of the output ``dO``:

    ==========================  ==========
    product                     FLOPs/head
    ==========================  ==========
    ``dV = Pᵀ·dO``              ``2·n²·d``
    ``dP = dO·Vᵀ``              ``2·n²·d``
    ``dQ = dS·K``               ``2·n²·d``
    ``dK = dSᵀ·Q``              ``2·n²·d``
    ``S = Q·Kᵀ`` (recompute)    ``2·n²·d``
    ==========================  ==========

    ``8·B·h·n²·d`` in all — twice the forward's ``4·B·h·n²·d`` — when the forward kept the ``n × n``
    weights P (naive attention, autograd); ``10·B·h·n²·d`` with ``recompute=True``, when it kept only
    the output and one statistic per row and the scores are computed again block by block
    (FlashAttention's backward, Dao et al. 2022, Algorithm 2).
    """
    n = check_positive_int("n", n)
    d = check_positive_int("head_dim", head_dim)
    batch, heads = check_positive_int("batch", batch), check_positive_int("heads", heads)
    if not isinstance(recompute, bool):
        raise ValueError(f"recompute must be True or False, got {recompute!r}.")
    forward = attention_flops(n, heads * d, batch, heads=heads)      # 4·B·n²·(h·d): QKᵀ and PV
    return 2 * forward + (forward // 2 if recompute else 0)
