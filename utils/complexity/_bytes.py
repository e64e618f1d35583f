"""Closed-form bytes: attention's n² weights and its inverse, the KV cache, recurrent state, bytes per element.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import torch

from utils.validate import check_choice, check_int, check_positive_int

MB, GB = 10**6, 10**9


MIB, GIB = 2**20, 2**30


def format_bytes(nbytes: int) -> str:
    """``"256 MiB (268.4 MB)"``: binary and decimal units side by side, to remove the ambiguity."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral) or nbytes < 0:
        raise ValueError(f"nbytes must be a whole number >= 0, got {nbytes!r}.")
    for unit, size, dec_unit, dec in (("GiB", GIB, "GB", GB), ("MiB", MIB, "MB", MB), ("KiB", 2**10, "kB", 10**3)):
        if nbytes >= size:
            return f"{nbytes / size:g} {unit} ({nbytes / dec:.4g} {dec_unit})"
    return f"{nbytes} B"


def attention_weights_bytes(batch: int, heads: int, n: int, bytes_per_element: int = 2) -> int:
    """Bytes of the attention weights ``softmax(QKᵀ/√d)`` of shape ``(batch, heads, n, n)``.

    ``batch · heads · n² · bytes_per_element``; ``bytes_per_element`` is 2 for FP16/BF16, 4 for FP32.
    This is one such tensor: a naive implementation holds the scores *and* the weights at once, and
    training keeps them for the backward pass (see :func:`~utils.measure.attention_peak_memory`).
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


def attention_plan_bytes(batch: int, heads: int, n: int, head_dim: int = 64, bytes_per_element: int = 2,
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


def kv_cache_bytes(batch: int, heads: int, n: int, head_dim: int, layers: int = 1,
                   bytes_per_element: int = 2) -> int:
    """Bytes of a KV cache holding ``n`` positions: keys **and** values, every layer.

    ``2 · layers · batch · heads · n · head_dim · bytes_per_element`` (2 for FP16/BF16, 4 for FP32).
    With ``heads · head_dim = d_model`` this is ``4 · layers · batch · n · d_model`` bytes in FP16.
    """
    batch = check_positive_int("batch", batch)
    heads = check_positive_int("heads", heads)
    n = check_positive_int("n", n)
    head_dim = check_positive_int("head_dim", head_dim)
    layers = check_positive_int("layers", layers)
    bpe = check_positive_int("bytes_per_element", bytes_per_element, "Use 2 for float16/bfloat16, 4 for float32.")
    return 2 * layers * batch * heads * n * head_dim * bpe


def recurrent_state_bytes(batch: int, d_hidden: int, layers: int = 1, family: str = "lstm",
                          bytes_per_element: int = 2) -> int:
    """Bytes of the state a recurrent decoder carries from one token to the next — independent of n.

    ``layers · batch · d_hidden · bytes_per_element`` for ``"rnn"``/``"gru"`` (the hidden state ``h``),
    twice that for ``"lstm"`` (``h`` and the cell state ``c``).
    """
    batch = check_positive_int("batch", batch)
    d_hidden = check_positive_int("d_hidden", d_hidden)
    layers = check_positive_int("layers", layers)
    family = check_choice("family", family, {"rnn", "gru", "lstm"})
    bpe = check_positive_int("bytes_per_element", bytes_per_element, "Use 2 for float16/bfloat16, 4 for float32.")
    return (2 if family == "lstm" else 1) * layers * batch * d_hidden * bpe
