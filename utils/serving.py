"""Serving a decoder: grouped-query attention written from scratch, and one decoding step to time.

* :class:`GroupedQueryAttention` — causal self-attention whose ``heads`` query heads share
  ``kv_heads`` key/value heads (Ainslie et al. 2023): ``kv_heads = heads`` is multi-head attention,
  ``kv_heads = 1`` multi-query attention (Shazeer 2019), anything between that divides ``heads`` is
  grouped-query attention. The ``heads / kv_heads`` query heads of one group are stacked as extra
  *rows* against their group's one key matrix, so no key or value is ever copied. With a
  :class:`utils.blocks.KVCache` of ``kv_heads`` heads it decodes one token at a time; with
  ``window=w`` each position sees itself and the ``w`` positions before it (a sliding window; decode
  with a :class:`utils.streaming.RingKVCache`, which keeps ``w`` positions).
* :func:`gqa_from_mha` builds one from a :class:`utils.blocks.MultiHeadAttention`: the same function
  when ``kv_heads = heads``, and the mean-pooled key/value heads of Ainslie et al. otherwise.
* :func:`gqa_decode_step` prepares one cached decoding step of a batch at a given context (to time).

The closed forms these are checked against are in :mod:`utils.complexity`
(:func:`~utils.complexity.grouped_kv_cache_bytes`, :func:`~utils.complexity.decode_intensity`,
:func:`~utils.complexity.compute_bound_batch`, :func:`~utils.complexity.decode_step_time_s`,
:func:`~utils.complexity.window_path_layers`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.blocks import KVCache, MultiHeadAttention
from utils.validate import check_heads, check_int, check_positive_int

__all__ = ["GroupedQueryAttention", "gqa_from_mha", "gqa_decode_step"]


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``heads`` query heads and ``kv_heads`` shared key/value heads.

    Projections: ``q`` (``d → d``), ``kv`` (``d → 2 · kv_heads · head_dim``), ``out`` (``d → d``), with
    ``head_dim = d_model / heads``. Query head ``j`` uses key/value head ``j // (heads / kv_heads)``.
    ``forward(x, cache=None, layer=0, start=0)`` maps ``(batch, t, d_model)`` (positions
    ``start … start+t-1``) to the same shape; with a cache the new keys and values are written into
    layer ``layer`` of it first (writing its last layer advances ``cache.length`` to ``start + t``).
    ``window=None`` is full causal attention; ``window=w`` lets each position see itself and the ``w``
    positions before it. Raises ``ValueError`` when ``kv_heads`` does not divide
    ``heads``.
    """

    def __init__(self, d_model: int, heads: int, kv_heads: int, *, window: int | None = None, bias: bool = True):
        super().__init__()
        d_model, heads = check_heads(d_model, heads)
        kv_heads = check_positive_int("kv_heads", kv_heads)
        if heads % kv_heads:
            raise ValueError(f"kv_heads={kv_heads} must divide heads={heads} (each group has the same number of "
                             f"query heads); use one of {[g for g in range(1, heads + 1) if heads % g == 0]}.")
        if window is not None:
            window = check_positive_int("window", window, "window is how many past positions each layer sees.")
        self.heads, self.kv_heads, self.head_dim, self.window = heads, kv_heads, d_model // heads, window
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.kv = nn.Linear(d_model, 2 * kv_heads * self.head_dim, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads

    def _mask(self, t: int, n_kv: int, start: int, device) -> torch.Tensor | None:
        # True = may attend; query position start + i, key position j (keys are the last n_kv positions)
        first_key = start + t - n_kv
        offset = (torch.arange(start, start + t, device=device).unsqueeze(1)
                  - torch.arange(first_key, first_key + n_kv, device=device).unsqueeze(0))
        allowed = offset >= 0
        if self.window is not None:
            allowed &= offset <= self.window
        return None if bool(allowed.all()) else allowed

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        b, t, d = x.shape
        g, r, dk = self.kv_heads, self.group_size, self.head_dim
        # queries: (b, g, r·t, dk) — the r query heads of a group become r·t rows against one key matrix
        q = self.q(x).view(b, t, g, r, dk).permute(0, 2, 3, 1, 4).reshape(b, g, r * t, dk)
        k, v = self.kv(x).view(b, t, 2, g, dk).permute(2, 0, 3, 1, 4)          # each (b, g, t, dk)
        if cache is not None:
            k, v = cache.write(layer, start, k, v)
            if layer == cache.layers - 1:          # the last layer of the cache advances it
                cache.length = start + t
        elif start:
            raise ValueError(f"start={start} needs a KVCache that holds the positions before it.")
        scores = q @ k.transpose(-2, -1) / math.sqrt(dk)                          # (b, g, r·t, n_kv)
        mask = self._mask(t, k.shape[2], start, x.device)
        if mask is not None:
            scores = scores.masked_fill(~mask.repeat(r, 1), float("-inf"))
        y = scores.softmax(dim=-1) @ v                                            # (b, g, r·t, dk)
        y = y.view(b, g, r, t, dk).permute(0, 3, 1, 2, 4).reshape(b, t, d)
        return self.out(y)

    def new_cache(self, batch: int, capacity: int, *, layers: int = 1, **kwargs) -> KVCache:
        """An empty :class:`~utils.blocks.KVCache` of ``kv_heads`` heads (dtype and device of the weights)."""
        w = self.q.weight
        return KVCache(batch, self.kv_heads, capacity, self.head_dim, layers=layers, dtype=w.dtype,
                       device=w.device, **kwargs)


@torch.no_grad()
def gqa_from_mha(mha: MultiHeadAttention, kv_heads: int | None = None) -> GroupedQueryAttention:
    """A :class:`GroupedQueryAttention` with the weights of a causal :class:`~utils.blocks.MultiHeadAttention`.

    The query and output projections are copied; the key and value projections of the
    ``heads / kv_heads`` heads of each group are averaged (mean pooling, the conversion of Ainslie et
    al. 2023). With ``kv_heads = heads`` (the default) nothing is averaged and the result computes the
    same function as ``mha``.
    """
    if not isinstance(mha, MultiHeadAttention) or mha.mask_kind != "causal":
        raise ValueError("mha must be a utils.blocks.MultiHeadAttention built with mask='causal'.")
    h, dk = mha.heads, mha.head_dim
    d = h * dk
    kv_heads = h if kv_heads is None else check_positive_int("kv_heads", kv_heads)
    bias = mha.qkv.bias is not None
    gqa = GroupedQueryAttention(d, h, kv_heads, bias=bias).to(mha.qkv.weight)
    w = mha.qkv.weight.view(3, h, dk, d)
    gqa.q.weight.copy_(w[0].reshape(d, d))
    pooled = w[1:].view(2, kv_heads, h // kv_heads, dk, d).mean(dim=2)            # (2, g, dk, d)
    gqa.kv.weight.copy_(pooled.reshape(2 * kv_heads * dk, d))
    if bias:
        bvec = mha.qkv.bias.view(3, h, dk)
        gqa.q.bias.copy_(bvec[0].reshape(d))
        gqa.kv.bias.copy_(bvec[1:].view(2, kv_heads, h // kv_heads, dk).mean(dim=2).reshape(-1))
        gqa.out.bias.copy_(mha.out.bias)
    gqa.out.weight.copy_(mha.out.weight)
    return gqa


def gqa_decode_step(attn: GroupedQueryAttention, context: int, batch: int = 1, seed: int = 0):
    """A zero-argument callable that decodes one token of ``batch`` sequences at ``context`` tokens.

    A :class:`~utils.blocks.KVCache` of ``kv_heads`` heads is filled with ``context - 1`` random keys and
    values first (not part of the step); each call rewinds it, writes the newest position and attends
    over all ``context``. Returns ``step`` with ``step.cache`` attached; ``step.cache.nbytes`` is
    :func:`~utils.complexity.grouped_kv_cache_bytes` of that shape.
    """
    if not isinstance(attn, GroupedQueryAttention):
        raise ValueError(f"attn must be a GroupedQueryAttention, got {type(attn).__name__}.")
    context = check_positive_int("context", context)
    batch = check_positive_int("batch", batch)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    cache = attn.new_cache(batch, context)
    w = attn.q.weight
    for t in cache.keys + cache.values:
        t[:, :, :context - 1] = torch.randn(t[:, :, :context - 1].shape, generator=g).to(t)
    x = torch.randn(batch, 1, w.shape[1], generator=g).to(w)

    def step():
        cache.length = context - 1
        with torch.no_grad():
            return attn(x, cache, 0, context - 1)

    step.cache = cache
    return step
