"""Closed forms of serving: the bytes a decoding step reads, its arithmetic intensity against the batch,
the batch at which decoding turns compute-bound, the step time on a roofline, and the KV cache of
grouped-query attention and of a sliding window.

Symbols: ``W`` bytes of weights read per step (shared by the batch), ``k`` KV-cache bytes read per
sequence, ``f`` FLOPs per sequence per step, ``B`` the batch, ``P`` peak FLOP/s, ``β`` bandwidth in
bytes/s. A step of ``B`` sequences does ``B·f`` FLOPs and reads ``W + B·k`` bytes.
"""

from __future__ import annotations

import math

from utils.complexity._bytes import kv_cache_bytes
from utils.validate import check_int, check_positive_float, check_positive_int


def _check_nonnegative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return value


def grouped_kv_cache_bytes(batch: int, kv_heads: int, n: int, head_dim: int, layers: int = 1,
                           bytes_per_element: int = 2, *, window: int | None = None) -> int:
    """Bytes of the KV cache of grouped-query attention with ``kv_heads`` key/value heads.

    ``2 · layers · batch · kv_heads · m · head_dim · bytes_per_element`` with ``m = n`` positions, or
    ``m = min(n, window)`` for a sliding-window cache that keeps only the last ``window`` positions.
    Multi-head attention is ``kv_heads = heads``, multi-query attention ``kv_heads = 1``
    (:func:`~utils.complexity.kv_cache_bytes` with ``heads = kv_heads``).
    """
    n = check_positive_int("n", n)
    if window is not None:
        window = check_positive_int("window", window, "window is how many past positions a layer keeps.")
        n = min(n, window)
    return kv_cache_bytes(batch, kv_heads, n, head_dim, layers, bytes_per_element)


def decode_intensity(batch: int, flops_per_sequence, weight_bytes, kv_bytes_per_sequence) -> float:
    """FLOPs per byte of one decoding step of ``batch`` sequences: ``B·f / (W + B·k)``.

    With the weights dominating (``W ≫ B·k``) this is about ``B·f/W ≈ 2B/b`` (one multiply-add per
    weight read per sequence, ``b`` bytes per weight): the intensity grows like the batch. With the
    cache dominating it tends to ``f/k``, which no batch raises.
    """
    batch = check_positive_int("batch", batch)
    f = check_positive_float("flops_per_sequence", flops_per_sequence)
    w = _check_nonnegative("weight_bytes", weight_bytes)
    k = _check_nonnegative("kv_bytes_per_sequence", kv_bytes_per_sequence)
    if w + k == 0:
        raise ValueError("weight_bytes and kv_bytes_per_sequence cannot both be 0: a step reads something.")
    return batch * f / (w + batch * k)


def compute_bound_batch(flops_per_sequence, weight_bytes, kv_bytes_per_sequence, peak_flops_per_s,
                        bandwidth_bytes_per_s) -> int | None:
    """The smallest batch whose decoding step reaches the ridge point ``P/β`` (turns compute-bound).

    ``B·f / (W + B·k) ≥ P/β``  ⇔  ``B ≥ P·W / (f·β − P·k)``. Returns ``None`` when ``f/k ≤ P/β``: the
    cache reads alone are below the ridge, so no batch makes the step compute-bound.
    """
    f = check_positive_float("flops_per_sequence", flops_per_sequence)
    w = _check_nonnegative("weight_bytes", weight_bytes)
    k = _check_nonnegative("kv_bytes_per_sequence", kv_bytes_per_sequence)
    peak = check_positive_float("peak_flops_per_s", peak_flops_per_s)
    beta = check_positive_float("bandwidth_bytes_per_s", bandwidth_bytes_per_s)
    margin = f * beta - peak * k
    if margin <= 0:
        return None
    batch = max(1, math.ceil(peak * w / margin))
    while batch > 1 and (batch - 1) * f * beta >= peak * (w + (batch - 1) * k):   # guard against rounding
        batch -= 1
    while batch * f * beta < peak * (w + batch * k):
        batch += 1
    return batch


def decode_step_time_s(flops, bytes_moved, peak_flops_per_s, bandwidth_bytes_per_s) -> float:
    """The roofline's lower bound on one step: ``max(bytes/β, FLOPs/P)`` seconds.

    Left of the ridge (every decoding step of a small batch) this is ``bytes/β``: latency ≈ (weight
    bytes + KV bytes) / bandwidth.
    """
    flops = _check_nonnegative("flops", flops)
    moved = _check_nonnegative("bytes_moved", bytes_moved)
    peak = check_positive_float("peak_flops_per_s", peak_flops_per_s)
    beta = check_positive_float("bandwidth_bytes_per_s", bandwidth_bytes_per_s)
    return max(moved / beta, flops / peak)


def window_path_layers(distance: int, window: int | None) -> int:
    """Layers a causal stack needs to carry a token ``distance`` positions forward.

    Full causal attention (``window=None``): 1. A sliding window that sees the ``window`` positions
    before the current one: ``max(1, ⌈distance / window⌉)`` (as :func:`~utils.complexity.local_attention_layers`).
    """
    distance = check_int("distance", distance, minimum=0)
    if window is None:
        return 1
    window = check_positive_int("window", window, "window is how many past positions a layer sees.")
    return max(1, -(-distance // window))
