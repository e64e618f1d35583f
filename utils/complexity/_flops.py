"""Closed-form FLOPs of the sequence layers (2 × the multiply-accumulates of the matrix products).
"""

from __future__ import annotations

from utils.complexity._local import _geometry
from utils.validate import check_choice, check_heads, check_int, check_positive_int

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
"""Weight blocks per recurrent step: ``nn.RNN`` 1, ``nn.GRU`` 3 (reset, update, new), ``nn.LSTM`` 4."""


def projection_flops(n: int, d_in: int, d_out: int, batch: int = 1) -> int:
    """FLOPs of ``nn.Linear(d_in, d_out)`` applied to ``n`` positions: ``2·B·n·d_in·d_out``."""
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    return 2 * batch * n * check_positive_int("d_in", d_in) * check_positive_int("d_out", d_out)


def conv_output_length(n: int, kernel_size: int, padding="same", dilation: int = 1, stride: int = 1) -> int:
    """Output length of ``nn.Conv1d`` on ``n`` positions.

    ``padding``: ``"same"`` (the length is kept, as in ``utils.conv.ConvStack`` with centred or causal
    padding; needs ``stride=1``), ``"valid"`` (no padding) or an int ``p`` (``p`` zeros on *each* side,
    PyTorch's ``padding=p``).
    """
    n = check_positive_int("n", n)
    k = check_positive_int("kernel_size", kernel_size)
    dilation = check_positive_int("dilation", dilation)
    stride = check_positive_int("stride", stride)
    if isinstance(padding, str):
        check_choice("padding", padding, {"same", "valid"})
        if padding == "same":
            if stride != 1:
                raise ValueError(f"padding='same' keeps the length only with stride=1, got stride={stride}; "
                                 "give an integer padding for strided convolutions.")
            return n
        padding = 0
    p = check_int("padding", padding, minimum=0, hint="Use 'same', 'valid' or a padding >= 0.")
    span = dilation * (k - 1)
    n_out = (n + 2 * p - span - 1) // stride + 1
    if n_out < 1:
        raise ValueError(f"a kernel spanning {span + 1} positions does not fit in n={n} positions with "
                         f"padding={p}; use a longer sequence, a smaller kernel/dilation or padding='same'.")
    return n_out


def conv1d_flops(n: int, d_in: int, d_out: int, kernel_size: int, batch: int = 1, *, layers: int = 1,
                 padding="same", dilation: int = 1, stride: int = 1, groups: int = 1) -> int:
    """FLOPs of a stack of ``layers`` ``nn.Conv1d`` (``d_in → d_out``, then ``d_out → d_out``).

    Per layer ``2·B·n_out·k·(c_in/groups)·c_out``: each of the ``n_out`` outputs is a dot product of
    ``k·c_in/groups`` inputs with each of ``c_out`` filters. With ``padding="same"`` (the default, what
    ``utils.conv.ConvStack`` does) ``n_out = n`` and one layer costs ``2·B·n·k·d_in·d_out``, i.e. the
    ``O(k·n·d²)`` of Vaswani et al.'s Table 1. See :func:`conv_output_length` for the other paddings.
    """
    d_in, d_out = check_positive_int("d_in", d_in), check_positive_int("d_out", d_out)
    k, batch = check_positive_int("kernel_size", kernel_size), check_positive_int("batch", batch)
    layers, groups = check_positive_int("layers", layers), check_positive_int("groups", groups)
    if d_in % groups or d_out % groups:
        raise ValueError(f"groups={groups} must divide both d_in={d_in} and d_out={d_out}; "
                         "use groups=1 (a dense convolution) or a common divisor.")
    total, length, c_in = 0, n, d_in
    for _ in range(layers):
        length = conv_output_length(length, k, padding, dilation, stride)
        total += 2 * batch * length * k * (c_in // groups) * d_out
        c_in = d_out
    return total


def recurrent_flops(family: str, n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
                    bidirectional: bool = False) -> int:
    """FLOPs of ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` (``family`` = ``"rnn"``, ``"gru"``, ``"lstm"``).

    Every step multiplies the input by ``W_ih`` (``g·h × d_in``) and the previous state by ``W_hh``
    (``g·h × h``), so one layer costs ``2·B·n·g·h·(d_in + h)``; layers after the first read the ``h``
    (or ``2h`` if bidirectional) outputs below them; a bidirectional layer doubles the work.
    """
    g = GATES[check_choice("family", family, GATES)]
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    d_in, h = check_positive_int("d_in", d_in), check_positive_int("d_hidden", d_hidden)
    layers = check_positive_int("layers", layers)
    directions = 2 if bidirectional else 1
    total, width_in = 0, d_in
    for _ in range(layers):
        total += directions * 2 * batch * n * g * h * (width_in + h)
        width_in = directions * h
    return total


def rnn_flops(n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
              bidirectional: bool = False) -> int:
    """FLOPs of ``nn.RNN(d_in, d_hidden)``: ``2·B·n·h·(d_in + h)`` per layer (see :func:`recurrent_flops`)."""
    return recurrent_flops("rnn", n, d_in, d_hidden, batch, layers, bidirectional)


def gru_flops(n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
              bidirectional: bool = False) -> int:
    """FLOPs of ``nn.GRU(d_in, d_hidden)``: three weight blocks, ``3 ×`` :func:`rnn_flops`."""
    return recurrent_flops("gru", n, d_in, d_hidden, batch, layers, bidirectional)


def lstm_flops(n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
               bidirectional: bool = False) -> int:
    """FLOPs of ``nn.LSTM(d_in, d_hidden)``: four weight blocks, ``4 ×`` :func:`rnn_flops`."""
    return recurrent_flops("lstm", n, d_in, d_hidden, batch, layers, bidirectional)


def attention_flops(n: int, d_model: int, batch: int = 1, *, n_kv: int | None = None, heads: int = 1,
                    causal: bool = False) -> int:
    """FLOPs of the attention core ``softmax(QKᵀ/√d_k)·V`` over all heads: ``QKᵀ`` and ``A·V`` only.

    ``n`` queries attend to ``n_kv`` keys (default ``n``); both products cost ``2·B·n·n_kv·d_model``,
    so the total is ``4·B·n·n_kv·d_model`` whatever ``heads`` is (``heads`` is only checked to divide
    ``d_model``). The Q/K/V/output projections are *not* included: see :func:`multihead_attention_flops`.

    ``causal=False`` (default) counts the full ``n × n_kv`` rectangle. That is what a dense kernel
    executes **and what FlopCounterMode reports even for causal attention**: a causal mask zeroes
    scores, it does not skip them. ``causal=True`` instead counts only the pairs a query may see (query
    ``j`` sees the first ``n_kv - n + j + 1`` keys), the useful work a mask-skipping kernel could get
    down to: ``4·B·d·(n·(n_kv - n) + n(n+1)/2)``, about half of the square for self-attention.
    """
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    d = check_positive_int("d_model", d_model)
    check_heads(d, heads)
    n_kv = n if n_kv is None else check_positive_int("n_kv", n_kv)
    if not causal:
        return 4 * batch * n * n_kv * d
    if n_kv < n:
        raise ValueError(f"causal attention needs n_kv >= n (the queries are the last n of the n_kv "
                         f"positions), got n={n}, n_kv={n_kv}.")
    pairs = n * (n_kv - n) + n * (n + 1) // 2
    return 4 * batch * pairs * d


def multihead_attention_flops(n: int, d_model: int, batch: int = 1, *, n_kv: int | None = None,
                              heads: int = 1, causal: bool = False, kdim: int | None = None,
                              vdim: int | None = None) -> int:
    """FLOPs of ``nn.MultiheadAttention(d_model, heads, kdim=kdim, vdim=vdim)``: projections + :func:`attention_flops`.

    ``in_proj`` maps the ``n`` queries (``2·B·n·d²``) and the ``n_kv`` keys and values, which arrive
    with widths ``kdim`` and ``vdim`` (default ``d_model``): ``2·B·n_kv·d·(kdim + vdim)``; ``out_proj``
    maps the ``n`` outputs (``2·B·n·d²``). For self-attention that is ``8·B·n·d²``. ``causal`` is the
    convention of :func:`attention_flops`: ``False`` (default) counts the full rectangle, as a dense kernel
    and FlopCounterMode do; ``True`` only the pairs a causal query may see.
    """
    n, d = check_positive_int("n", n), check_positive_int("d_model", d_model)
    n_kv_ = n if n_kv is None else check_positive_int("n_kv", n_kv)
    kdim = d if kdim is None else check_positive_int("kdim", kdim)
    vdim = d if vdim is None else check_positive_int("vdim", vdim)
    core = attention_flops(n, d, batch, n_kv=n_kv, heads=heads, causal=causal)
    return 2 * batch * d * (n * d + n_kv_ * (kdim + vdim)) + 2 * batch * n * d * d + core


def ffn_flops(n: int, d_model: int, d_ff: int, batch: int = 1) -> int:
    """FLOPs of the position-wise feed-forward block ``Linear(d, d_ff) → act → Linear(d_ff, d)``.

    Two products of ``2·B·n·d·d_ff`` each: ``4·B·n·d·d_ff`` in all.
    """
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    return 4 * batch * n * check_positive_int("d_model", d_model) * check_positive_int("d_ff", d_ff)


def encoder_layer_flops(n: int, d_model: int, heads: int, d_ff: int, batch: int = 1, *,
                        n_kv: int | None = None, causal: bool = False) -> int:
    """FLOPs of ``nn.TransformerEncoderLayer(d_model, heads, d_ff)`` on ``n`` positions.

    ``8·B·n·d²`` (Q, K, V and output projections) ``+ 4·B·n²·d`` (``QKᵀ`` and ``A·V``)
    ``+ 4·B·n·d·d_ff`` (feed-forward). A causal ``src_mask`` does not change what a dense kernel
    computes, so the default ``causal=False`` is also the count of a causal layer measured by
    FlopCounterMode; ``causal=True`` counts only the pairs a causal query may see (see
    :func:`attention_flops`). ``n_kv`` (default ``n``): the keys each query block attends to when the
    layer runs with a KV cache — the ``n`` new positions are projected (``8·B·n·d²`` as before) and the
    ``n_kv − n`` earlier ones come from the cache, so only the core grows: ``4·B·n·n_kv·d``.
    """
    d = check_positive_int("d_model", d_model)
    n = check_positive_int("n", n)
    check_heads(d, heads)
    n_kv = n if n_kv is None else check_positive_int("n_kv", n_kv)
    if n_kv < n:
        raise ValueError(f"a layer with a KV cache attends to its n new positions and the cached ones, so "
                         f"n_kv >= n; got n={n}, n_kv={n_kv}.")
    projections = 4 * projection_flops(n, d, d, batch)
    core = attention_flops(n, d, batch, n_kv=n_kv, heads=heads, causal=causal)
    return projections + core + ffn_flops(n, d, d_ff, batch)


def attention_ffn_crossover(d_model: int, d_ff: int, *, include_projections: bool = False) -> int:
    """Smallest ``n`` at which attention costs *strictly more* FLOPs than the feed-forward block.

    Attention core vs FFN: ``4n²d > 4n·d·d_ff  ⇔  n > d_ff``, so the answer is ``d_ff + 1`` (at
    ``n = d_ff`` they tie). With the four projections counted on the attention side:
    ``4n²d + 8n·d² > 4n·d·d_ff  ⇔  n > d_ff − 2d``, so ``max(1, d_ff − 2d + 1)``. Neither depends on the
    batch or the number of heads.
    """
    d, f = check_positive_int("d_model", d_model), check_positive_int("d_ff", d_ff)
    threshold = f - 2 * d if include_projections else f
    return max(1, threshold + 1)


def local_attention_flops(n: int, d_model: int, radius: int, batch: int = 1, *, heads: int = 1,
                          causal: bool = False, block_size: int | None = None) -> int:
    """Exact FLOPs of :func:`~utils.efficient.blocked_local_attention` (the two matrix products, all heads).

    ``⌈n / b⌉`` blocks of ``b`` queries each score ``K = b + 2r`` keys (``b + r`` causal) and mix as many
    values: ``4 · B · ⌈n/b⌉ · b · K · d_model`` — linear in ``n`` for a fixed radius, against
    ``4·B·n²·d_model`` for full attention (:func:`utils.complexity.attention_flops`). ``heads`` only has to
    divide ``d_model``: ``h`` heads of width ``d/h`` do the same products as one of width ``d``.
    """
    d_model, batch = check_positive_int("d_model", d_model), check_positive_int("batch", batch)
    check_heads(d_model, heads)
    b, blocks, keys = _geometry(n, radius, causal, block_size)
    return 4 * batch * blocks * b * keys * d_model


def decode_step_flops(context: int, d_model: int, d_ff: int, layers: int, vocab: int, use_cache: bool,
                      batch: int = 1) -> int:
    """FLOPs (2 × MACs of the matrix products) of the decoding step that sees ``context`` tokens.

    With the cache the step processes **one** token against ``context`` cached keys:
    ``layers · (4 · 2d² + 4·context·d + 4·d·d_ff) + 2·d·vocab``. Without it the model reruns on all
    ``context`` tokens: ``layers · (8·context·d² + 4·context²·d + 4·context·d·d_ff) + 2·d·vocab``
    (the LM head is applied to the last position only in both cases). Built from
    :func:`utils.complexity.projection_flops`, :func:`~utils.complexity.attention_flops` and
    :func:`~utils.complexity.ffn_flops`.
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
    """Total FLOPs of :func:`~utils.models.generate`: the sum of :func:`~utils.complexity.decode_step_flops` over
    its forward calls.

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
