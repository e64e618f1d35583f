"""One factory for five sequence classifiers with matched parameter counts.

Every model maps tokens ``(batch, n)`` to class logits ``(batch, num_classes)`` the same way::

    tokens -> nn.Embedding(vocab, d) -> backbone (batch, n, d) -> output at the last position -> nn.Linear(d, C)

and only the backbone differs (``d`` is the family's width, picked so that the parameter counts match):

* ``"rnn"``, ``"lstm"``, ``"gru"``: one ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` layer (``tanh`` RNN), read at
  its last state. ``forward(tokens, tbptt=w)`` runs truncated back-propagation through time: the state is
  detached every ``w`` steps, windows counted back from the readout, so the loss has a gradient path to
  the last ``w`` inputs only (distances ``0 … w-1``).
* ``"cnn"``: a causal dilated :class:`utils.conv.ConvStack` with kernel 2 and dilations 1, 2, 4, …,
  ``2^(L-1)``, with ``L = ceil(log2 n)`` layers so that the receptive field ``2^L`` covers all ``n``
  positions (path length ``L``).
* ``"transformer"``: sinusoidal positions (:func:`utils.positional.sinusoidal`) added to the embedding,
  ``layers`` pre-norm causal :class:`utils.blocks.TransformerBlock` s, then a LayerNorm (path length 1 per
  layer).

:class:`TinyDecoder` is the course's small decoder-only Transformer (the same blocks, causal, with a
:class:`utils.blocks.KVCache`); :func:`~utils.models.generate` decodes greedily with or without the cache,
:func:`decode_step` prepares one decoding step to time or count, and :func:`decode_step_bytes` is the
bytes that step must read.

:func:`width_for_budget` picks each family's width so that its parameter count is as close as possible to
a target; :func:`matched_models` builds all families at one budget and checks they agree within ±10 %.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from utils._moved import module_getattr as _module_getattr
from utils.attention import naive_attention
from utils.blocks import RECURRENT as _RECURRENT, KVCache, TransformerBlock, recurrent_layer
from utils.complexity import bytes_per_element  # noqa: F401  (used by the decoder's guard)
from utils.conv import ConvStack
from utils.measure import count_parameters as _count_parameters, guard_attention
from utils.positional import sinusoidal
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

__all__ = [
    "FAMILIES", "make_model", "width_for_budget", "matched_models", "RecurrentClassifier", "ConvClassifier",
    "TransformerClassifier", "cnn_layers_for", "lstm_forget_gates",
    "TinyDecoder", "generate", "decode_step", "decode_step_bytes",
]

#: The five families the course compares (recurrent layers: :data:`utils.blocks.RECURRENT`).
FAMILIES = ("rnn", "lstm", "gru", "cnn", "transformer")


def cnn_layers_for(n: int, kernel_size: int = 2) -> int:
    """Fewest layers of a causal stack with dilations ``1, 2, 4, …`` whose receptive field covers ``n``.

    The field is ``1 + (k-1)(2^L - 1)``; with ``k = 2`` that is ``2^L``, so ``L = ceil(log2 n)``."""
    n = check_positive_int("n", n)
    k = check_int("kernel_size", kernel_size, minimum=2)
    layers = 0
    while 1 + (k - 1) * (2**layers - 1) < n:
        layers += 1
    return max(layers, 1)


class _Classifier(nn.Module):
    """Shared parts: embedding, readout at the last position."""

    family: str

    def __init__(self, vocab_size: int, num_classes: int, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.readout = nn.Linear(d_model, num_classes)

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a (batch, n) torch.long tensor, got "
                             f"{getattr(tokens, 'shape', type(tokens).__name__)} "
                             f"{getattr(tokens, 'dtype', '')}.")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.embed.num_embeddings):
            raise ValueError(f"token ids must lie in 0 … {self.embed.num_embeddings - 1} (vocab_size), got "
                             f"{int(tokens.min())} … {int(tokens.max())}; build the model with a larger vocab_size.")


class RecurrentClassifier(_Classifier):
    """Embedding -> one ``nn.RNN``/``nn.LSTM``/``nn.GRU`` layer -> readout of the last state."""

    def __init__(self, family: str, vocab_size: int, num_classes: int, d_model: int):
        super().__init__(vocab_size, num_classes, d_model)
        self.family = check_choice("family", family, _RECURRENT)
        self.rnn = recurrent_layer(family, d_model)

    def forward(self, tokens: torch.Tensor, tbptt: int | None = None) -> torch.Tensor:
        self._check_tokens(tokens)
        x = self.embed(tokens)
        if tbptt is None:
            out, _ = self.rnn(x)
            return self.readout(out[:, -1])
        w = check_positive_int("tbptt", tbptt, hint="tbptt is the number of steps a gradient may travel back.")
        state, out = None, None
        for start, stop in self.chunk_bounds(x.shape[1], w):
            if state is not None:
                state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            out, state = self.rnn(x[:, start:stop], state)
        return self.readout(out[:, -1])

    @staticmethod
    def chunk_bounds(n: int, tbptt: int) -> list[tuple[int, int]]:
        """The ``(start, stop)`` windows of ``forward(tokens, tbptt)``: the last is ``(n - tbptt, n)``."""
        n, w = check_positive_int("n", n), check_positive_int("tbptt", tbptt)
        bounds = sorted({0, *range(n - w * ((n - 1) // w), n, w)}) + [n]
        return list(zip(bounds[:-1], bounds[1:]))


class ConvClassifier(_Classifier):
    """Embedding -> causal dilated :class:`~utils.conv.ConvStack` (kernel 2, dilations 1, 2, 4, …) -> readout."""

    family = "cnn"

    def __init__(self, vocab_size: int, num_classes: int, d_model: int, n: int, kernel_size: int = 2):
        super().__init__(vocab_size, num_classes, d_model)
        self.n = check_positive_int("n", n)
        layers = cnn_layers_for(n, kernel_size)
        self.dilations = [2**i for i in range(layers)]
        self.receptive_field = 1 + (kernel_size - 1) * sum(self.dilations)
        self.conv = ConvStack(d_model, kernel_size, layers, self.dilations, padding="causal")

    def forward(self, tokens: torch.Tensor, tbptt: int | None = None) -> torch.Tensor:
        self._check_tokens(tokens)
        if tbptt is not None:
            raise ValueError("tbptt applies to recurrent families only ('rnn', 'lstm', 'gru'); use tbptt=None.")
        if tokens.shape[1] > self.receptive_field:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds the CNN's receptive field "
                             f"{self.receptive_field}; build it with n >= {tokens.shape[1]}.")
        return self.readout(torch.tanh(self.conv(self.embed(tokens)))[:, -1])


class TransformerClassifier(_Classifier):
    """Embedding + sinusoidal PE -> ``layers`` pre-norm causal attention blocks -> LayerNorm -> readout."""

    family = "transformer"

    def __init__(self, vocab_size: int, num_classes: int, d_model: int, layers: int = 1, heads: int = 1,
                 ff_mult: int = 2):
        super().__init__(vocab_size, num_classes, d_model)
        self.layers = check_positive_int("layers", layers)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, heads, ff_mult * d_model, mask="causal")
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, tbptt: int | None = None) -> torch.Tensor:
        self._check_tokens(tokens)
        if tbptt is not None:
            raise ValueError("tbptt applies to recurrent families only ('rnn', 'lstm', 'gru'); use tbptt=None.")
        x = self.embed(tokens)
        x = x + sinusoidal(x.shape[1], self.d_model).to(x.device, x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.readout(self.norm(x[:, -1]))

    @torch.no_grad()
    def attention_weights(self, tokens: torch.Tensor, layer: int = 0) -> torch.Tensor:
        """The attention weights of block ``layer`` (averaged over heads), ``(batch, n, n)``.

        Row ``j`` is the distribution of query ``j`` over keys ``0 … j`` (causal): non-negative, summing
        to 1. Row ``n-1`` is where the readout position looks."""
        self._check_tokens(tokens)
        layer = check_int("layer", layer, minimum=0)
        if layer >= self.layers:
            raise ValueError(f"layer must be < {self.layers} (the number of blocks), got {layer}.")
        x = self.embed(tokens)
        x = x + sinusoidal(x.shape[1], self.d_model).to(x.device, x.dtype)
        for block in self.blocks[:layer]:
            x = block(x)
        attn = self.blocks[layer].attn
        b, n, d = x.shape
        q, k, _ = attn.qkv(self.blocks[layer].norm1(x)).view(b, n, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        _, weights = naive_attention(q, k, k, attn.build_mask(n, x.device), return_weights=True)
        return weights.mean(dim=1)


def _build(family, vocab_size, num_classes, d_model, n, layers, heads, ff_mult, kernel_size):
    if family in _RECURRENT:
        return RecurrentClassifier(family, vocab_size, num_classes, d_model)
    if family == "cnn":
        if n is None:
            raise ValueError("the 'cnn' family needs the sequence length n, so that its dilated receptive "
                             "field covers it: make_model('cnn', ..., n=32).")
        return ConvClassifier(vocab_size, num_classes, d_model, n, kernel_size)
    if d_model % 2 or d_model % heads:
        raise ValueError(f"the transformer needs an even d_model divisible by heads={heads} (sinusoidal "
                         f"positions come in sin/cos pairs), got {d_model}.")
    return TransformerClassifier(vocab_size, num_classes, d_model, layers, heads, ff_mult)


def _check_common(family, vocab_size, num_classes):
    check_choice("family", family, set(FAMILIES))
    vocab_size = check_int("vocab_size", vocab_size, minimum=2, hint="a vocabulary needs at least two tokens.")
    num_classes = check_int("num_classes", num_classes, minimum=2, hint="a classifier needs two classes or more.")
    return vocab_size, num_classes


def _check_heads(heads) -> int:
    return check_int("heads", heads, minimum=1,
                     hint="heads is the transformer's number of attention heads: use heads=1 (the default) "
                          "or another divisor of the width d_model.")


def _width_step(family: str, heads: int) -> int:
    return math.lcm(2, heads) if family == "transformer" else 1


def _count(family, vocab_size, num_classes, d_model, n, layers, heads, ff_mult, kernel_size) -> int:
    with torch.device("meta"):
        return _count_parameters(_build(family, vocab_size, num_classes, d_model, n, layers, heads, ff_mult,
                                       kernel_size))


def width_for_budget(family: str, param_budget: int, vocab_size: int, num_classes: int, *, n: int | None = None,
                     layers: int = 1, heads: int = 1, ff_mult: int = 2, kernel_size: int = 2,
                     tolerance: float = 0.10) -> int:
    """The width ``d_model`` whose parameter count is closest to ``param_budget`` (within ``tolerance``).

    Counts are exact (the model is built on the ``meta`` device, which allocates nothing). The
    transformer's width stays even and divisible by ``heads``. Raises ``ValueError`` if no width comes
    within ``tolerance`` (relative) of the budget — typically a budget too small for the embedding.
    """
    vocab_size, num_classes = _check_common(family, vocab_size, num_classes)
    heads = _check_heads(heads)
    budget = check_positive_int("param_budget", param_budget)
    tolerance = check_positive_float("tolerance", tolerance)
    step = _width_step(family, heads)
    count = lambda w: _count(family, vocab_size, num_classes, w, n, layers, heads, ff_mult, kernel_size)  # noqa: E731
    lo, hi = step, step
    while count(hi) < budget:           # grow until above the budget, then bisect (counts grow with width)
        lo, hi = hi, hi * 2
    while hi - lo > step:
        mid = lo + (hi - lo) // (2 * step) * step
        lo, hi = (mid, hi) if count(mid) < budget else (lo, mid)
    best = min((lo, hi), key=lambda w: abs(count(w) - budget))
    got = count(best)
    if abs(got - budget) > tolerance * budget:
        raise ValueError(f"no {family} width gives {budget} parameters within {tolerance:.0%} (closest: "
                         f"d_model={best} with {got}); choose a larger param_budget or a smaller vocabulary.")
    return best


def make_model(family: str, vocab_size: int, num_classes: int, d_model: int | None = None, *,
               param_budget: int | None = None, n: int | None = None, layers: int = 1, heads: int = 1,
               ff_mult: int = 2, kernel_size: int = 2, seed: int | None = None,
               forget_bias: float | None = None) -> nn.Module:
    """Build a token classifier of one family (see the module docstring).

    Give either ``d_model`` (the width) or ``param_budget`` (the width is then :func:`width_for_budget`).
    ``n`` (the sequence length) is required for ``"cnn"``, whose depth is ``ceil(log2 n)``. ``layers``,
    ``heads`` and ``ff_mult`` configure the transformer. ``seed`` makes the initial weights reproducible
    without touching the global RNG. ``forget_bias`` (``"lstm"`` only) sets the LSTM's effective
    forget-gate bias after initialisation (:func:`utils.gradients.set_forget_gate_bias`; 1.0 is the
    classic choice of Gers et al. and Jozefowicz et al.). Raises ``ValueError`` for an unknown family, a
    vocabulary or class count below 2, ``heads < 1``, a missing/duplicated width, or ``forget_bias`` on a
    family other than ``"lstm"``.
    """
    vocab_size, num_classes = _check_common(family, vocab_size, num_classes)
    heads = _check_heads(heads)
    if forget_bias is not None and family != "lstm":
        raise ValueError(f"forget_bias applies to the 'lstm' family only (it has a forget gate), got family "
                         f"{family!r}; use forget_bias=None.")
    if (d_model is None) == (param_budget is None):
        raise ValueError("give exactly one of d_model (a width) or param_budget (a parameter count to match).")
    if param_budget is not None:
        d_model = width_for_budget(family, param_budget, vocab_size, num_classes, n=n, layers=layers,
                                   heads=heads, ff_mult=ff_mult, kernel_size=kernel_size)
    d_model = check_positive_int("d_model", d_model)
    if seed is None:
        model = _build(family, vocab_size, num_classes, d_model, n, layers, heads, ff_mult, kernel_size)
    else:
        seed = check_int("seed", seed, minimum=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build(family, vocab_size, num_classes, d_model, n, layers, heads, ff_mult, kernel_size)
    if forget_bias is not None:
        from utils.gradients import set_forget_gate_bias

        set_forget_gate_bias(model.rnn, forget_bias)
    return model


@torch.no_grad()
def lstm_forget_gates(model: RecurrentClassifier, tokens: torch.Tensor) -> torch.Tensor:
    """The forget-gate activations ``f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)`` of an ``"lstm"`` model.

    Unrolls the model's one ``nn.LSTM`` layer step by step with its own weights (PyTorch's gate order
    ``i | f | g | o``) and returns ``f`` of shape ``(batch, n, hidden)``: one value in ``(0, 1)`` per
    sequence, time step and unit. Raises ``ValueError`` for a model that is not an ``"lstm"``
    :class:`RecurrentClassifier`.
    """
    if not isinstance(model, RecurrentClassifier) or model.family != "lstm":
        raise ValueError(f"lstm_forget_gates needs an 'lstm' model from make_model, got "
                         f"{getattr(model, 'family', type(model).__name__)!r}.")
    model._check_tokens(tokens)
    lstm = model.rnn
    x = model.embed(tokens)
    b, n, _ = x.shape
    hid = lstm.hidden_size
    h = x.new_zeros(b, hid)
    c = x.new_zeros(b, hid)
    pre_x = x @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0          # (b, n, 4·hid)
    forget = []
    for t in range(n):
        gates = pre_x[:, t] + h @ lstm.weight_hh_l0.T
        i, f, g, o = gates.split(hid, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        forget.append(f)
    return torch.stack(forget, dim=1)


def matched_models(param_budget: int, vocab_size: int, num_classes: int, n: int, *, families=FAMILIES,
                   seed: int = 0, tolerance: float = 0.10, **kwargs) -> dict[str, nn.Module]:
    """One model per family at (about) ``param_budget`` parameters; asserts every count is within ``tolerance``.

    ``kwargs`` go to :func:`make_model` (e.g. ``layers`` for the transformer). Raises ``ValueError`` if a
    family cannot be matched.
    """
    models = {}
    for family in families:
        model = make_model(family, vocab_size, num_classes, param_budget=param_budget, n=n, seed=seed, **kwargs)
        got = _count_parameters(model)
        if abs(got - param_budget) > tolerance * param_budget:
            raise ValueError(f"{family}: {got} parameters, not within {tolerance:.0%} of {param_budget}.")
        models[family] = model
    return models


# --------------------------------------------------------------------------------------------------
# A small decoder with a KV cache
# --------------------------------------------------------------------------------------------------

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
        self.blocks = nn.ModuleList(TransformerBlock(d_model, heads, d_ff, impl="naive", mask="causal")
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    @property
    def heads(self) -> int:
        return self.blocks[0].attn.heads

    @property
    def head_dim(self) -> int:
        return self.blocks[0].attn.head_dim

    def new_cache(self, batch: int, capacity: int, fraction: float = 0.5, limit_bytes: int | None = None) -> KVCache:
        """An empty :class:`~utils.blocks.KVCache` shaped for this model (its dtype and device)."""
        p = self.head.weight
        return KVCache(batch, self.heads, capacity, self.head_dim, layers=self.n_layers, dtype=p.dtype,
                       device=p.device, fraction=fraction, limit_bytes=limit_bytes)

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

    ``use_cache=True``: the prompt is run once (prefill) and written into a :class:`~utils.blocks.KVCache` of
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
    (:func:`~utils.complexity.decode_step_flops`) divided by it is its arithmetic intensity, about
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


__getattr__ = _module_getattr(__name__)  # names moved in 0.2 (utils._moved)
