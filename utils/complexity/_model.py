"""FLOPs of a whole model, per token, and of training: Kaplan et al.'s accounting, checked term by term.

Conventions (those of :mod:`utils.complexity`): FLOPs = 2 × the multiply-accumulates of the matrix
products; biases, norms, softmax and the embedding lookup cost nothing. Two conventions for a causal
attention core, chosen with ``causal``:

* ``causal=False`` (default): the full ``n × n`` square, what a dense kernel computes and what
  ``FlopCounterMode`` (:func:`utils.measure.count_flops`) reports for a causal stack;
* ``causal=True``: only the ``n(n+1)/2`` pairs a causal query may see — on average ``(n+1)/2`` keys per
  query, the convention of Kaplan et al. (2020), who write it ``n_ctx/2``.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from utils.complexity._flops import encoder_layer_flops, projection_flops
from utils.validate import check_heads, check_positive_int

BACKWARD_TO_FORWARD = 2
"""Backward FLOPs per forward FLOP of a matrix product ``Y = X·W``: ``∂X = ∂Y·Wᵀ`` and ``∂W = Xᵀ·∂Y``
cost one forward product each. Exact for every product whose inputs all need a gradient; a product
whose input needs none (the first layer on raw data) skips ``∂X``."""


def _d_ff(d_model: int, d_ff: int | None) -> int:
    return 4 * d_model if d_ff is None else check_positive_int("d_ff", d_ff)


def transformer_stack_flops(n: int, d_model: int, heads: int, d_ff: int | None, layers: int, batch: int = 1, *,
                            n_kv: int | None = None, causal: bool = False, vocab: int | None = None) -> int:
    """Forward FLOPs of ``layers`` Transformer layers on ``batch × n`` positions, plus an LM head if ``vocab``.

    Each layer is :func:`~utils.complexity.encoder_layer_flops` (``8·B·n·d² + 4·B·n·n_kv·d +
    4·B·n·d·d_ff``): ``nn.TransformerEncoder``, a stack of :class:`utils.blocks.TransformerBlock`, or the
    blocks of :class:`utils.models.TinyDecoder`. ``vocab`` adds the head ``Linear(d, vocab)`` on every
    position (``2·B·n·d·vocab``); the embedding lookups cost nothing. ``causal``: see the module's
    conventions (``False`` = what a dense kernel runs and FlopCounterMode counts). ``n_kv``: keys per
    query with a KV cache (:func:`~utils.complexity.encoder_layer_flops`). ``d_ff=None`` means ``4·d``.
    """
    d, layers = check_positive_int("d_model", d_model), check_positive_int("layers", layers)
    check_heads(d, heads)
    per_layer = encoder_layer_flops(n, d, heads, _d_ff(d, d_ff), batch, n_kv=n_kv, causal=causal)
    head = 0 if vocab is None else projection_flops(n, d, check_positive_int("vocab", vocab), batch)
    return layers * per_layer + head


def flops_per_token(n: int, d_model: int, d_ff: int | None, layers: int, *, causal: bool = False,
                    vocab: int | None = None) -> Fraction:
    """Forward FLOPs per token of a Transformer stack run on sequences of ``n`` tokens (exact ``Fraction``).

    ``layers·(8d² + 4d·d_ff + a·d)`` with ``a = 4n`` for the full square (``causal=False``) and
    ``a = 2(n+1)`` for the causal pairs (``causal=True``), plus ``2·d·vocab`` for an LM head. The first
    two terms are ``2 ×`` the weights a token meets; only attention's ``a·d`` grows with the context.
    """
    n = check_positive_int("n", n)
    return Fraction(transformer_stack_flops(n, d_model, 1, d_ff, layers, causal=causal, vocab=vocab), n)


def non_embedding_parameters(d_model: int, d_ff: int | None, layers: int, *, d_attn: int | None = None) -> int:
    """Kaplan et al.'s ``N = 2·d_model·n_layer·(2·d_attn + d_ff)``: the weight matrices of the layers.

    Q, K, V (``3·d·d_attn``), the output projection (``d_attn·d``) and the feed-forward block
    (``2·d·d_ff``) per layer. Embeddings, biases and LayerNorms are excluded, as in the paper; the LM head
    is excluded too (it is the tied embedding there). ``d_attn`` defaults to ``d_model``.
    """
    d, layers = check_positive_int("d_model", d_model), check_positive_int("layers", layers)
    d_attn = d if d_attn is None else check_positive_int("d_attn", d_attn)
    return 2 * d * layers * (2 * d_attn + _d_ff(d, d_ff))


def kaplan_forward_flops_per_token(n_ctx: int, d_model: int, d_ff: int | None, layers: int, *,
                                   d_attn: int | None = None) -> int:
    """Kaplan et al.'s ``C_forward ≈ 2N + 2·n_layer·n_ctx·d_attn`` per token (their Table 1).

    ``2N``: each weight of :func:`non_embedding_parameters` is one multiply-accumulate per token.
    ``2·n_layer·n_ctx·d_attn``: ``QKᵀ`` and ``A·V`` cost ``4·d_attn`` per (query, key) pair, and a causal
    query sees ``n_ctx/2`` keys on average. It equals ``flops_per_token(n, d, d_ff, layers, causal=True)``
    up to ``2·n_layer·d_attn`` (exactly, the average is ``(n_ctx+1)/2``), and is ``2·n_layer·n_ctx·d_attn``
    below what a dense kernel runs.
    """
    n_ctx, d = check_positive_int("n_ctx", n_ctx), check_positive_int("d_model", d_model)
    d_attn = d if d_attn is None else check_positive_int("d_attn", d_attn)
    n_params = non_embedding_parameters(d, d_ff, layers, d_attn=d_attn)
    return 2 * n_params + 2 * check_positive_int("layers", layers) * n_ctx * d_attn


def training_flops_per_token(n: int, d_model: int, d_ff: int | None, layers: int, *, causal: bool = False,
                             vocab: int | None = None) -> Fraction:
    """FLOPs per token of one training step (forward + backward): ``(1 + BACKWARD_TO_FORWARD) = 3 ×``
    :func:`flops_per_token`, exact when every product's input needs a gradient (as in a language model,
    whose first layer reads trainable embeddings)."""
    return (1 + BACKWARD_TO_FORWARD) * flops_per_token(n, d_model, d_ff, layers, causal=causal, vocab=vocab)


def six_nd_flops(parameters: int, tokens: int) -> int:
    """The rule of thumb ``C ≈ 6·N·D``: training FLOPs for ``N`` parameters on ``D`` tokens
    (2 forward + 4 backward per parameter and token, attention's context term left out)."""
    return 6 * check_positive_int("parameters", parameters) * check_positive_int("tokens", tokens)


def six_nd_undercount(n: int, d_model: int, d_ff: int | None = None, *, causal: bool = False) -> Fraction:
    """Share of a Transformer's training FLOPs that ``6·N·D`` leaves out, ``1 − 6N / C_train`` per token.

    ``N`` = :func:`non_embedding_parameters` and ``C_train`` = :func:`training_flops_per_token` (no LM
    head on either side). It depends on ``n`` and ``d`` only through ``n/d`` (and ``d_ff/d``): with
    ``d_ff = 4d`` it is ``n/(6d + n)`` for the full square and ``(n+1)/(12d + n + 1)`` for causal pairs.
    Independent of the number of layers.
    """
    d = check_positive_int("d_model", d_model)
    six_n = 6 * non_embedding_parameters(d, d_ff, 1)
    return 1 - Fraction(six_n) / training_flops_per_token(n, d, d_ff, 1, causal=causal)


def context_for_undercount(d_model: int, d_ff: int | None = None, fraction=Fraction(1, 10), *,
                           causal: bool = False) -> int:
    """Shortest context ``n`` at which ``6·N·D`` misses at least ``fraction`` of the training FLOPs.

    Solving ``six_nd_undercount = f``: ``a·d·(1−f) = f·(8d² + 4d·d_ff)`` with ``a = 4n`` (full) or
    ``2(n+1)`` (causal), i.e. ``n/d = f·(2 + d_ff/d)/(1−f)`` for the full square (``2/3`` at ``f = 0.1``,
    ``d_ff = 4d``) and twice that (less one token) for causal pairs. ``fraction`` in ``(0, 1)``.
    """
    d = check_positive_int("d_model", d_model)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ValueError(f"fraction must be a number between 0 and 1 (e.g. 0.1 for 10 %), got {fraction!r}.")
    f = Fraction(repr(fraction)) if isinstance(fraction, float) else Fraction(fraction)  # 0.1 means 1/10
    if not 0 < f < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1 (e.g. 0.1 for 10 %), got {fraction!r}.")
    a = f * (8 * d + 4 * _d_ff(d, d_ff)) / (1 - f)   # the a (4n, or 2(n+1)) at which the undercount equals f
    n = max(1, math.ceil(a / 2) - 1 if causal else math.ceil(a / 4))
    while six_nd_undercount(n, d, d_ff, causal=causal) < f:  # guard the rounding: the smallest such n
        n += 1
    while n > 1 and six_nd_undercount(n - 1, d, d_ff, causal=causal) >= f:
        n -= 1
    return n
