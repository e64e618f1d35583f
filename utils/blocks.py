"""The building blocks every chapter uses: one multi-head attention, one Transformer block, one KV cache,
and one factory for the recurrent layers.

* :class:`MultiHeadAttention` maps ``(batch, n, d_model)`` to the same shape. Its ``mask`` is full
  (``"none"``), ``"causal"`` or ``"local"`` (a window of ``radius``; ``causal=True`` for a causal window),
  its ``impl`` is ``"naive"`` (the score matrix materialised: ``count_flops`` sees ``QKᵀ`` and ``A·V``) or
  ``"sdpa"`` (``F.scaled_dot_product_attention``). Given a :class:`~utils.blocks.KVCache` it writes the keys and values
  of the new positions into it and attends over every cached position: the same layer serves training
  (whole sequence) and decoding (one token at a time).
* :class:`TransformerBlock` is attention plus a feed-forward layer, each with a residual connection, with
  the LayerNorm before (``norm="pre"``, GPT-2 and most models since) or after (``norm="post"``, the
  original Transformer and ``nn.TransformerEncoderLayer``) each sub-layer.
* :class:`~utils.blocks.KVCache` preallocates the keys and values of ``layers`` layers, shaped like
  :func:`utils.complexity.kv_cache_bytes` (``batch, heads, capacity, head_dim``), guarded before it
  allocates.
* :func:`recurrent_layer` builds ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (batch first), optionally with the
  LSTM forget-gate bias set.

Shape arguments come in one order everywhere in the package: ``batch, heads, n, head_dim, layers``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from utils.attention import causal_mask, local_mask, naive_attention, sdpa_attention
from utils.complexity import bytes_per_element, kv_cache_bytes
from utils.measure import check_fits
from utils.validate import check_choice, check_heads, check_int, check_positive_int

__all__ = ["MultiHeadAttention", "TransformerBlock", "KVCache", "RECURRENT", "recurrent_layer"]

#: The three recurrent families and their PyTorch layers (``tanh`` RNN).
RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class KVCache:
    """Preallocated keys and values: ``layers`` pairs of ``(batch, heads, capacity, head_dim)`` tensors.

    The allocation is checked by :func:`utils.measure.check_fits` first. ``length`` is the number of
    positions filled so far (the model advances it); :attr:`nbytes` is the exact size of the tensors,
    equal to :func:`utils.complexity.kv_cache_bytes` of the same shape (same argument order).
    """

    def __init__(self, batch: int, heads: int, capacity: int, head_dim: int, *legacy, layers: int = 1,
                 dtype: torch.dtype = torch.float32, device="cpu", fraction: float = 0.5,
                 limit_bytes: int | None = None):
        if legacy:  # version 0.1 order: (layers, batch, heads, capacity, head_dim, dtype, device, fraction, limit)
            if len(legacy) > 5:
                raise ValueError("KVCache takes (batch, heads, capacity, head_dim, *, layers=…, dtype=…, …).")
            warnings.warn("KVCache(layers, batch, heads, capacity, head_dim, …) is deprecated: the order is now "
                          "KVCache(batch, heads, capacity, head_dim, layers=…, dtype=…, device=…), as in "
                          "kv_cache_bytes. The old order stops working in version 0.3.",
                          DeprecationWarning, stacklevel=2)
            layers, batch, heads, capacity, head_dim = batch, heads, capacity, head_dim, legacy[0]
            rest = dict(zip(("dtype", "device", "fraction", "limit_bytes"), legacy[1:]))
            dtype = rest.get("dtype", dtype)
            device = rest.get("device", device)
            fraction = rest.get("fraction", fraction)
            limit_bytes = rest.get("limit_bytes", limit_bytes)
        planned = kv_cache_bytes(batch, heads, capacity, head_dim, layers, bytes_per_element(dtype))
        check_fits(planned, device, fraction, limit_bytes, what=f"a KV cache of {capacity} positions")
        shape = (batch, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    @property
    def layers(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Bytes of every key and value tensor (what the cache occupies)."""
        return sum(t.untyped_storage().nbytes() for t in self.keys + self.values)

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        """Store ``k, v`` (``(batch, heads, t, head_dim)``) at positions ``start … start+t-1`` of ``layer``.

        Returns the keys and values of positions ``0 … start+t-1`` (views into the cache).
        ``start`` must equal ``length``, the number of positions filled so far: a later start
        would leave a gap of zero keys that the next query attends to, an earlier one would silently
        overwrite. To rerun a step (as :func:`utils.models.decode_step` does), set ``length`` back first.
        """
        start = check_int("start", start)
        if start != self.length:
            kind = "leave a gap of unfilled (zero) positions" if start > self.length else "overwrite filled positions"
            raise ValueError(f"the KV cache holds {self.length} positions; writing at start={start} would {kind}. "
                             f"Write at start={self.length}, or set cache.length = {start} first to rewind.")
        end = start + k.shape[2]
        if end > self.capacity:
            raise ValueError(f"the KV cache holds {self.capacity} positions; writing up to position {end} "
                             "would overflow it. Create it with a larger capacity.")
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention on ``(batch, n, d_model)``: full, causal or local, naive or SDPA, cached or not.

    ``mask``: ``"none"`` (full), ``"causal"``, or ``"local"`` (with ``radius``; ``causal=True`` for a
    causal window). ``causal=True`` always gives a causal layer: with ``mask="none"`` it means
    ``mask="causal"``. ``radius`` belongs to ``mask="local"`` only; with another mask it is an error
    (it would be silently ignored). ``impl``: ``"naive"`` (scores materialised) or ``"sdpa"``.
    The projections are one ``qkv`` linear (``d → 3d``) and one ``out`` linear (``d → d``).

    ``forward(x, cache=None, layer=0, start=0)``: ``x`` holds the positions ``start … start+t-1``;
    with a :class:`~utils.blocks.KVCache` their keys and values are written into layer ``layer`` of the cache and the
    queries attend over every cached position allowed by the mask (a sliding window for
    ``mask="local", causal=True``).
    """

    def __init__(self, d_model: int, heads: int = 1, mask: str = "none", radius: int | None = None,
                 causal: bool = False, impl: str = "sdpa", bias: bool = True):
        super().__init__()
        d_model, heads = check_heads(d_model, heads)
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

    def build_mask(self, n: int, device=None, *, start: int = 0, n_kv: int | None = None) -> torch.Tensor | None:
        """The boolean mask (``True`` = may attend) of queries ``start … start+n-1`` over keys ``0 … n_kv-1``.

        ``None`` when every query may see every key (full attention, or one new causal query)."""
        n_kv = n if n_kv is None else n_kv
        if start == 0 and n_kv == n:
            if self.mask_kind == "causal":
                return causal_mask(n, device)
            if self.mask_kind == "local":
                return local_mask(n, self.radius, self.causal, device)
            return None
        queries = torch.arange(start, start + n, device=device).unsqueeze(1)
        keys = torch.arange(n_kv, device=device).unsqueeze(0)
        if self.mask_kind == "none":
            return None
        offset = queries - keys
        if self.mask_kind == "causal":
            allowed = offset >= 0
        else:
            allowed = (offset >= 0) & (offset <= self.radius) if self.causal else offset.abs() <= self.radius
        return None if bool(allowed.all()) else allowed

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.write(layer, start, k, v)
        elif start:
            raise ValueError(f"start={start} needs a KVCache that holds the positions before it.")
        mask = self.build_mask(t, x.device, start=start, n_kv=k.shape[2])
        y = naive_attention(q, k, v, mask) if self.impl == "naive" else sdpa_attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    """Attention and a feed-forward layer, each with a residual connection and a LayerNorm.

    ``norm="pre"``: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``; ``norm="post"``: ``LN(x + Attn(x))`` then
    ``LN(x + FFN(x))``. ``FFN = Linear(d, d_ff) → activation → Linear(d_ff, d)`` with ``d_ff = 4·d`` by
    default. ``mask``, ``radius``, ``causal`` and ``impl`` configure the :class:`MultiHeadAttention`.
    No dropout, so runs are deterministic. ``forward(x, cache=None, layer=0, start=0)`` passes the cache
    arguments to the attention.
    """

    def __init__(self, d_model: int, heads: int = 1, d_ff: int | None = None, impl: str = "sdpa", *,
                 norm: str = "pre", mask: str = "none", radius: int | None = None, causal: bool = False,
                 activation: str = "gelu"):
        super().__init__()
        d_model, heads = check_heads(d_model, heads)
        d_ff = 4 * d_model if d_ff is None else check_positive_int("d_ff", d_ff)
        self.norm_kind = check_choice("norm", norm, {"pre", "post"})
        act = _ACTIVATIONS[check_choice("activation", activation, _ACTIVATIONS)]
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, heads, mask=mask, radius=radius, causal=causal, impl=impl)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), act(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0) -> torch.Tensor:
        if self.norm_kind == "pre":
            x = x + self.attn(self.norm1(x), cache, layer, start)
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.attn(x, cache, layer, start))
        return self.norm2(x + self.ffn(x))


def recurrent_layer(family: str, d_in: int, d_hidden: int | None = None, *, layers: int = 1,
                    forget_bias: float | None = None) -> nn.Module:
    """``nn.RNN`` (``tanh``) / ``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True``, ``d_hidden = d_in`` by default.

    ``forget_bias`` (``"lstm"`` only) sets the effective forget-gate bias after initialisation
    (:func:`utils.gradients.set_forget_gate_bias`)."""
    family = check_choice("family", family, RECURRENT)
    d_in = check_positive_int("d_in", d_in)
    d_hidden = d_in if d_hidden is None else check_positive_int("d_hidden", d_hidden)
    layer = RECURRENT[family](d_in, d_hidden, num_layers=check_positive_int("layers", layers), batch_first=True)
    if forget_bias is not None:
        if family != "lstm":
            raise ValueError(f"forget_bias applies to the 'lstm' family only (it has a forget gate), got family "
                             f"{family!r}; use forget_bias=None.")
        from utils.gradients import set_forget_gate_bias

        set_forget_gate_bias(layer, forget_bias)
    return layer
