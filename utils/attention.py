"""Self-attention three ways: naive (scores materialised), PyTorch SDPA, and local (windowed).

Conventions used everywhere in the course:

* tensors are ``(batch, heads, n, head_dim)`` for the functional forms;
* a boolean ``mask`` is ``True`` where a query **may** attend to a key (``mask[j, i]``: query j, key i);
* ``radius`` r of local attention: query j sees keys i with ``|j - i| <= r`` (centred) or
  ``0 <= j - i <= r`` (causal), i.e. a window of ``2r + 1`` or ``r + 1`` keys.

Which SDPA backends exist depends on the device *and* the dtype: a CPU has MATH and FLASH; a T4
(sm75) MATH and the memory-efficient kernel but no flash; an A100/H100/H200 all four, flash only in
fp16/bf16. :func:`available_attention_impls` says what a chapter can show here (probed, see
:func:`utils.env.sdpa_backends`), and :func:`check_sdpa_backend` turns a request for a backend that
does not run into a ``ValueError`` that says what to use instead — not torch's "No available kernel".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from utils import env as _env
from utils._moved import module_getattr as _module_getattr
from utils.validate import check_choice, check_int, check_positive_int

BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


#: Order of preference when a memory-saving kernel is wanted: the first that runs is suggested.
FUSED_PREFERENCE = ("flash", "cudnn", "efficient")


def available_attention_impls(device=None, dtype: torch.dtype | None = None, head_dim: int = 64) -> list[str]:
    """The attention implementations that run on ``device`` in ``dtype``: ``"naive"`` (always) and every
    SDPA backend the probe found (:func:`utils.env.sdpa_backends`), in the order ``naive, math, flash,
    efficient, cudnn``. ``dtype`` defaults to :func:`utils.env.default_dtype` (float32 on a CPU,
    float16 on CUDA).

    A chapter that shows a fused kernel asks this function and says in its text which one it shows,
    e.g. flash on an A100, efficient on a T4, flash (PyTorch's CPU kernel) on a laptop.
    """
    return ["naive", *_env.sdpa_backends(device, dtype, head_dim)]


def fused_attention_impl(device=None, dtype: torch.dtype | None = None, head_dim: int = 64) -> str | None:
    """The memory-saving SDPA backend to show here — the first of :data:`FUSED_PREFERENCE` that runs
    on ``device`` in ``dtype`` — or ``None`` when only MATH runs."""
    runs = _env.sdpa_backends(device, dtype, head_dim)
    return next((b for b in FUSED_PREFERENCE if b in runs), None)


def unavailable_backend_message(backend: str, device=None, dtype: torch.dtype | None = None,
                                head_dim: int = 64) -> str:
    """Why ``backend`` does not run here and what to use instead, in one sentence, e.g. "flash needs
    compute capability >= 8.0 and fp16/bf16 …; this GPU (Tesla T4, sm75) runs, in float16: math,
    efficient — use impl='efficient'"."""
    desc = _env.describe_device(device, dtype, head_dim)
    runs = desc.sdpa_backends
    where = (f"this GPU ({desc.name}, {desc.sm})" if desc.type == "cuda" else f"this CPU ({desc.name})")
    suggestion = next((b for b in FUSED_PREFERENCE if b in runs), "math" if "math" in runs else "naive")
    hint = f"use impl='{suggestion}'"
    if backend in ("flash", "cudnn") and desc.type == "cuda" and desc.dtype == "float32" and desc.capability \
            and desc.capability >= (8, 0):
        hint += " or dtype=torch.float16"
    return (f"{backend} needs {_env.SDPA_REQUIREMENTS[backend]}; {where} runs, in {desc.dtype}: "
            f"{', '.join(runs) or 'none'} — {hint}.")


def check_sdpa_backend(backend: str, device=None, dtype: torch.dtype | None = None, head_dim: int = 64) -> str:
    """Return ``backend`` if that SDPA backend runs on ``device`` in ``dtype``; else raise a ``ValueError``
    saying what it needs and what to use instead (:func:`unavailable_backend_message`)."""
    check_choice("backend", backend, BACKENDS)
    if backend not in _env.sdpa_backends(device, dtype, head_dim):
        raise ValueError(unavailable_backend_message(backend, device, dtype, head_dim))
    return backend


def causal_mask(n: int, device=None) -> torch.Tensor:
    """``n × n`` boolean mask, ``True`` on and below the diagonal (query j sees keys i <= j)."""
    n = check_positive_int("n", n)
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def local_mask(n: int, radius: int, causal: bool = False, device=None) -> torch.Tensor:
    """``n × n`` boolean mask of local attention with the given ``radius`` (see module docstring)."""
    n = check_positive_int("n", n)
    radius = check_int("radius", radius, minimum=0, hint="radius 0 lets each position see only itself.")
    j = torch.arange(n, device=device).unsqueeze(1)
    i = torch.arange(n, device=device).unsqueeze(0)
    if causal:
        return (j - i >= 0) & (j - i <= radius)
    return (j - i).abs() <= radius


def naive_attention(q, k, v, mask: torch.Tensor | None = None, return_weights: bool = False):
    """softmax(QKᵀ/√d)·V with the full ``n × n`` score matrix materialised (the textbook formula)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    out = weights @ v
    return (out, weights) if return_weights else out


def online_softmax_attention(q, k, v, *, block_size: int = 64, causal: bool = False) -> torch.Tensor:
    """softmax(QKᵀ/√d)·V computed one block of keys at a time, never holding an ``n × n`` matrix.

    The algorithm of FlashAttention (Dao et al. 2022, Algorithm 1), written for reading rather than
    speed. For each block of ``block_size`` keys, every query keeps a running maximum ``m`` of its
    scores, a running sum ``ℓ`` of ``exp(score − m)`` and a running output ``o``; a new block with a
    larger maximum rescales the old sum and output by ``exp(m_old − m_new)``. After the last block,
    ``o / ℓ`` equals the softmax-weighted sum exactly (up to rounding). The largest temporary is
    ``(…, n, block_size)`` scores, so memory grows like ``n · block_size``, not ``n²``.

    ``q, k, v``: ``(…, n, head_dim)`` (keys and values may have their own length); ``causal``: query
    ``j`` sees keys ``i <= j`` (queries and keys must then have the same length).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise ValueError(f"{name} must be a tensor of shape (..., n, head_dim), got "
                             f"{getattr(t, 'shape', type(t).__name__)}.")
    if k.shape[-2] != v.shape[-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"keys and values need the same length and queries and keys the same head_dim; got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}.")
    block_size = check_positive_int("block_size", block_size, hint="the number of keys scored at a time, e.g. 64.")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be True or False, got {causal!r}.")
    n_q, n_k = q.shape[-2], k.shape[-2]
    if causal and n_q != n_k:
        raise ValueError(f"causal attention needs as many queries as keys, got {n_q} and {n_k}.")
    scale = 1.0 / math.sqrt(q.shape[-1])
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))      # running maximum of each query's scores
    ell = q.new_zeros((*q.shape[:-1], 1))                    # running sum of exp(score - m)
    o = q.new_zeros((*q.shape[:-1], v.shape[-1]))            # running (unnormalised) output
    rows = torch.arange(n_q, device=q.device).unsqueeze(1)
    for start in range(0, n_k, block_size):
        stop = min(start + block_size, n_k)
        s = (q @ k[..., start:stop, :].transpose(-2, -1)) * scale        # (..., n_q, b): one block of scores
        if causal:
            s = s.masked_fill(torch.arange(start, stop, device=q.device).unsqueeze(0) > rows, float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
        safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)   # rows with no key seen yet
        p = torch.exp(s - safe)
        correction = torch.exp(m - safe)
        ell = ell * correction + p.sum(dim=-1, keepdim=True)
        o = o * correction + p @ v[..., start:stop, :]
        m = m_new
    return o / ell


def sdpa_attention(q, k, v, mask: torch.Tensor | None = None, backend: str | None = None):
    """``F.scaled_dot_product_attention`` with an optional forced backend (``"math"``, ``"flash"``, …).

    On CPU only ``"math"`` and ``"flash"`` exist; the flash kernel does not accept an arbitrary mask.
    A forced backend that cannot run these inputs raises ``ValueError`` saying what runs here
    (see :func:`available_attention_impls`) instead of torch's "No available kernel".
    """
    if backend is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    check_choice("backend", backend, BACKENDS)
    try:
        with sdpa_kernel(BACKENDS[backend]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    except RuntimeError as exc:
        if "no available kernel" not in str(exc).lower() and "no viable backend" not in str(exc).lower():
            raise
        reason = unavailable_backend_message(backend, q.device, q.dtype, q.shape[-1]) \
            if backend not in _env.sdpa_backends(q.device, q.dtype, q.shape[-1]) else \
            (f"{backend} runs on {q.device} in {q.dtype} but not on these inputs"
             + (" (it takes no arbitrary attn_mask; use 'math' or 'efficient' with a mask)"
                if mask is not None else ""))
        raise ValueError(reason) from None


__getattr__ = _module_getattr(__name__)  # names moved in 0.2 (utils._moved)
