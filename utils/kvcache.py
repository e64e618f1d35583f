"""Autoregressive decoding with and without a key/value cache, and what the cache costs.

A decoder generates one token at a time. Without a cache, step ``T`` runs the whole model again on
all ``T`` tokens so far: per-token work grows like ``T·d² + T²·d``, and generating ``n`` tokens costs
``O(n²·d² + n³·d)``. With a **KV cache** every layer stores the keys and values of the tokens it has
already seen, so step ``T`` projects only the *new* token and attends from it to the ``T`` cached
keys: per-token work ``O(d² + T·d)``, total ``O(n·d² + n²·d)``. The price is memory that grows
linearly with the context:

    kv_cache_bytes = 2 (keys and values) · layers · batch · heads · n · head_dim · bytes_per_element.

:class:`TinyDecoder` is a small pre-norm Transformer decoder whose causal self-attention writes into
an explicit :class:`KVCache` (preallocated tensors, one key and one value tensor per layer).
:func:`generate` decodes greedily with ``use_cache=True`` or ``False``; both must produce the same
tokens. :func:`decode_step_flops` is the closed form of one step's FLOPs (in the convention of
:mod:`utils.flops`), checked against ``count_flops`` in the tests and the chapter.
"""

from __future__ import annotations

import torch
from torch import nn

from utils.attention import naive_attention
from utils.flops import attention_flops, ffn_flops, projection_flops
from utils.memory import bytes_per_element, check_fits, guard_attention
from utils.validate import check_choice, check_int, check_positive_int


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
                          bytes_per_element: int = 4) -> int:
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


class KVCache:
    """Preallocated keys and values: ``layers`` pairs of ``(batch, heads, capacity, head_dim)`` tensors.

    The allocation is checked by :func:`utils.memory.check_fits` first. ``length`` is the number of
    positions filled so far (the model advances it); :attr:`nbytes` is the exact size of the tensors,
    equal to :func:`kv_cache_bytes` of the same shape.
    """

    def __init__(self, layers: int, batch: int, heads: int, capacity: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device="cpu", fraction: float = 0.5,
                 limit_bytes: int | None = None):
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
        overwrite. To rerun a step (as :func:`decode_step` does), set ``length`` back first.
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


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate Q, K, V, output projections and an optional cache.

    The attention core is :func:`utils.attention.naive_attention` (two ``matmul``s), so that
    ``count_flops`` sees exactly ``QKᵀ`` and ``A·V``. Query ``i`` of a chunk that starts at position
    ``start`` sees keys ``0 … start+i``.
    """

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        d_model = check_positive_int("d_model", d_model)
        heads = check_positive_int("heads", heads)
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads}).")
        self.heads, self.head_dim = heads, d_model // heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, start: int = 0):
        b, t, d = x.shape
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        if cache is not None:
            k, v = cache.write(layer, start, k, v)
        n_kv = k.shape[2]
        mask = None
        if t > 1:  # a single new query sees every key so far: no mask needed
            queries = torch.arange(start, start + t, device=x.device).unsqueeze(1)
            mask = torch.arange(n_kv, device=x.device).unsqueeze(0) <= queries
        y = naive_attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class DecoderBlock(nn.Module):
    """Pre-norm block: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``, FFN = Linear → GELU → Linear."""

    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, check_positive_int("d_ff", d_ff)), nn.GELU(),
                                 nn.Linear(d_ff, d_model))

    def forward(self, x, cache=None, layer=0, start=0):
        x = x + self.attn(self.norm1(x), cache, layer, start)
        return x + self.ffn(self.norm2(x))


class TinyDecoder(nn.Module):
    """A small decoder-only Transformer: token + learned position embeddings, ``layers`` blocks, LM head.

    ``forward(tokens, cache=None, start=0, last_only=False)`` maps ``(batch, t)`` token ids at
    positions ``start … start+t-1`` to logits ``(batch, t, vocab)`` (only the last position with
    ``last_only``). With a ``cache`` the keys and values of these positions are written into it and
    attention reads every cached position before them.
    """

    def __init__(self, vocab: int = 64, d_model: int = 64, heads: int = 4, layers: int = 2, d_ff: int = 256,
                 max_len: int = 1024):
        super().__init__()
        self.vocab = check_positive_int("vocab", vocab)
        self.d_model = check_positive_int("d_model", d_model)
        self.d_ff = check_positive_int("d_ff", d_ff)
        self.max_len = check_positive_int("max_len", max_len)
        self.n_layers = check_positive_int("layers", layers)
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(DecoderBlock(d_model, heads, d_ff) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    @property
    def heads(self) -> int:
        return self.blocks[0].attn.heads

    @property
    def head_dim(self) -> int:
        return self.blocks[0].attn.head_dim

    def new_cache(self, batch: int, capacity: int, fraction: float = 0.5, limit_bytes: int | None = None) -> KVCache:
        """An empty :class:`KVCache` shaped for this model (its dtype and device)."""
        p = self.head.weight
        return KVCache(self.n_layers, batch, self.heads, capacity, self.head_dim, p.dtype, p.device,
                       fraction, limit_bytes)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, start: int = 0,
                last_only: bool = False) -> torch.Tensor:
        b, t = tokens.shape
        if start + t > self.max_len:
            raise ValueError(f"positions up to {start + t} exceed max_len={self.max_len}.")
        positions = torch.arange(start, start + t, device=tokens.device)
        x = self.tok(tokens) + self.pos(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, start)
        if cache is not None:
            cache.length = start + t
        if last_only:
            x = x[:, -1:]
        return self.head(self.norm(x))


def _check_prompt(model: TinyDecoder, prompt) -> torch.Tensor:
    if not isinstance(model, TinyDecoder):
        raise ValueError(f"model must be a TinyDecoder, got {type(model).__name__}.")
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.dtype != torch.long \
            or prompt.shape[0] < 1 or prompt.shape[1] < 1:
        raise ValueError("prompt must be a (batch, t) tensor of token ids (torch.long) with batch, t >= 1, "
                         f"got {getattr(prompt, 'shape', prompt)!r}.")
    if int(prompt.min()) < 0 or int(prompt.max()) >= model.vocab:
        raise ValueError(f"prompt token ids must lie in [0, {model.vocab}).")
    return prompt


@torch.no_grad()
def generate(model: TinyDecoder, prompt: torch.Tensor, new_tokens: int, use_cache: bool = True,
             return_cache: bool = False, fraction: float = 0.5, limit_bytes: int | None = None):
    """Greedy decoding of ``new_tokens`` tokens after ``prompt`` (``(batch, t0)`` token ids).

    ``use_cache=True``: the prompt is run once (prefill) and written into a :class:`KVCache` of
    capacity ``t0 + new_tokens``; every later step feeds only the newest token. ``use_cache=False``:
    every step runs the model on all tokens so far. Both return the same ``(batch, t0 + new_tokens)``
    tokens. With ``return_cache`` (and ``use_cache``) the cache is returned too. The planned memory is
    checked by the guard before anything is allocated. A prompt on another device than the model is
    moved to the model's device; the tokens are returned there.
    """
    prompt = _check_prompt(model, prompt).to(model.head.weight.device)
    new_tokens = check_positive_int("new_tokens", new_tokens)
    if not isinstance(use_cache, bool):
        raise ValueError(f"use_cache must be True or False, got {use_cache!r}.")
    b, t0 = prompt.shape
    total = t0 + new_tokens
    if total > model.max_len:
        raise ValueError(f"prompt ({t0}) + new_tokens ({new_tokens}) = {total} exceeds the model's "
                         f"max_len={model.max_len}.")
    bpe = model.head.weight.element_size()
    device = model.head.weight.device
    guard_attention(b, model.heads, total if not use_cache else t0, model.head_dim, device, bpe, 3,
                    fraction, limit_bytes)
    tokens = prompt
    if use_cache:
        cache = model.new_cache(b, total, fraction, limit_bytes)
        logits = model(prompt, cache, 0, last_only=True)
        for step in range(new_tokens):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, nxt], dim=1)
            if step + 1 < new_tokens:
                logits = model(nxt, cache, t0 + step)
        return (tokens, cache) if return_cache else tokens
    for _ in range(new_tokens):
        logits = model(tokens, last_only=True)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def decode_step_flops(context: int, d_model: int, d_ff: int, layers: int, vocab: int, use_cache: bool,
                      batch: int = 1) -> int:
    """FLOPs (2 × MACs of the matrix products) of the decoding step that sees ``context`` tokens.

    With the cache the step processes **one** token against ``context`` cached keys:
    ``layers · (4 · 2d² + 4·context·d + 4·d·d_ff) + 2·d·vocab``. Without it the model reruns on all
    ``context`` tokens: ``layers · (8·context·d² + 4·context²·d + 4·context·d·d_ff) + 2·d·vocab``
    (the LM head is applied to the last position only in both cases). Built from
    :func:`utils.flops.projection_flops`, :func:`~utils.flops.attention_flops` and
    :func:`~utils.flops.ffn_flops`.
    """
    context = check_positive_int("context", context)
    layers = check_positive_int("layers", layers)
    if not isinstance(use_cache, bool):
        raise ValueError(f"use_cache must be True or False, got {use_cache!r}.")
    t = 1 if use_cache else context
    per_layer = (4 * projection_flops(t, d_model, d_model, batch)
                 + attention_flops(t, d_model, batch, n_kv=context)
                 + ffn_flops(t, d_model, d_ff, batch))
    return layers * per_layer + projection_flops(1, d_model, vocab, batch)


def generation_flops(prompt_len: int, new_tokens: int, d_model: int, d_ff: int, layers: int, vocab: int,
                     use_cache: bool, batch: int = 1) -> int:
    """Total FLOPs of :func:`generate`: the sum of :func:`decode_step_flops` over its forward calls.

    With the cache: one prefill on ``prompt_len`` tokens (counted as a forward on all of them, head on
    the last) and ``new_tokens - 1`` one-token steps at contexts ``prompt_len + 1 …``. Without: one
    full forward at each context ``prompt_len … prompt_len + new_tokens - 1``.
    """
    prompt_len = check_positive_int("prompt_len", prompt_len)
    new_tokens = check_positive_int("new_tokens", new_tokens)
    contexts = range(prompt_len, prompt_len + new_tokens)
    if not use_cache:
        return sum(decode_step_flops(c, d_model, d_ff, layers, vocab, False, batch) for c in contexts)
    prefill = decode_step_flops(prompt_len, d_model, d_ff, layers, vocab, False, batch)
    return prefill + sum(decode_step_flops(c + 1, d_model, d_ff, layers, vocab, True, batch)
                         for c in contexts[:-1])


def decode_step(model: TinyDecoder, context: int, use_cache: bool, batch: int = 1, seed: int = 0, *,
                fraction: float = 0.5, limit_bytes: int | None = None):
    """A zero-argument callable that runs *one* decoding step at ``context`` tokens (to time or count).

    With the cache, a cache holding ``context - 1`` earlier positions is prepared first (not part of
    the step); the step feeds the newest token at position ``context - 1``. Without it, the step runs
    the model on all ``context`` tokens. Either way only the last position's logits are produced.
    Each call of the cached step first sets ``cache.length`` back to ``context - 1``, so the step can
    be run (timed) many times. The memory guard uses the caller's ``fraction`` and ``limit_bytes``.
    Returns ``step`` with ``step.cache`` (or ``None``) attached.
    """
    if not isinstance(model, TinyDecoder):
        raise ValueError(f"model must be a TinyDecoder, got {type(model).__name__}.")
    context = check_positive_int("context", context)
    batch = check_positive_int("batch", batch)
    if context > model.max_len:
        raise ValueError(f"context={context} exceeds the model's max_len={model.max_len}.")
    check_int("seed", seed)
    device = model.head.weight.device
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.vocab, (batch, context), generator=g).to(device)
    cache = None
    if use_cache:
        cache = model.new_cache(batch, context, fraction, limit_bytes)
        if context > 1:
            with torch.no_grad():
                model(tokens[:, :-1], cache, 0)
        newest = tokens[:, -1:]

        def step():
            cache.length = context - 1
            with torch.no_grad():
                return model(newest, cache, context - 1)
    else:
        guard_attention(batch, model.heads, context, model.head_dim, device,
                        model.head.weight.element_size(), 3, fraction, limit_bytes)

        def step():
            with torch.no_grad():
                return model(tokens, last_only=True)
    step.cache = cache
    return step



def decode_step_bytes(model: TinyDecoder, context: int, batch: int = 1) -> int:
    """Bytes a cached decoding step must read from memory at ``context`` tokens: weights plus KV cache.

    Every weight matrix and vector of the blocks, the final norm and the LM head is read once per step
    (shared by the ``batch`` sequences); of the two embedding tables only one row each per sequence;
    and every layer reads the keys and values of all ``context`` positions of every sequence,
    ``2 · layers · batch · context · d_model`` elements. Activations (a few vectors of width ``d``) are
    left out. Divided by the step's time this is the bandwidth a decoder achieves; the step's FLOPs
    (:func:`decode_step_flops`) divided by it is its arithmetic intensity, about
    ``2 · batch / bytes_per_element`` FLOP/byte when the weights dominate.
    """
    if not isinstance(model, TinyDecoder):
        raise ValueError(f"model must be a TinyDecoder, got {type(model).__name__}.")
    context = check_positive_int("context", context)
    batch = check_positive_int("batch", batch)
    bpe = model.head.weight.element_size()
    embeddings = {id(model.tok.weight), id(model.pos.weight)}
    weights = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    rows = 2 * batch * model.d_model
    kv = 2 * model.n_layers * batch * context * model.d_model
    return (weights + rows + kv) * bpe
