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
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from utils import env as _env
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


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``(batch, n, d_model)`` with a chosen mask and implementation.

    ``mask``: ``"none"`` (full), ``"causal"``, or ``"local"`` (with ``radius``; ``causal=True`` for a
    causal window). ``causal=True`` always gives a causal layer: with ``mask="none"`` it means
    ``mask="causal"``. ``radius`` belongs to ``mask="local"`` only; with another mask it is an error
    (it would be silently ignored). ``impl``: ``"naive"`` (scores materialised) or ``"sdpa"``.
    """

    def __init__(self, d_model: int, heads: int = 1, mask: str = "none", radius: int | None = None,
                 causal: bool = False, impl: str = "sdpa", bias: bool = True):
        super().__init__()
        d_model = check_positive_int("d_model", d_model)
        heads = check_positive_int("heads", heads)
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads}); change one of them.")
        self.mask_kind = check_choice("mask", mask, {"none", "causal", "local"})
        if not isinstance(causal, bool):
            raise ValueError(f"causal must be True or False, got {causal!r}.")
        if mask == "local":
            if radius is None:
                raise ValueError("mask='local' needs a radius, e.g. radius=2.")
            radius = check_int("radius", radius, minimum=0, hint="radius 0 lets each position see only itself.")
        elif radius is not None:
            raise ValueError(f"radius={radius!r} only applies to mask='local' (got mask={mask!r}); "
                             "pass mask='local' for a window, or drop radius.")
        if causal and mask == "none":
            self.mask_kind = "causal"  # causal=True must never give a layer that sees the future
        self.radius, self.causal = radius, causal or mask == "causal"
        self.impl = check_choice("impl", impl, {"naive", "sdpa"})
        self.heads, self.head_dim = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def build_mask(self, n: int, device=None) -> torch.Tensor | None:
        if self.mask_kind == "causal":
            return causal_mask(n, device)
        if self.mask_kind == "local":
            return local_mask(n, self.radius, self.causal, device)
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = self.build_mask(n, x.device)
        if self.impl == "naive":
            y = naive_attention(q, k, v, mask)
        else:
            y = sdpa_attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))
