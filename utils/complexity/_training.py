"""Training memory in closed form: bytes per parameter, saved activations per Transformer layer, checkpointing.

A training step holds four things at once: the **weights**, their **gradients**, the **optimizer state**
(and, in mixed precision, an FP32 **master copy** of the weights), and the **activations** autograd saves
during the forward pass for the backward pass. The first three scale with the parameters ``P``; the last
with ``B·n`` — and, for attention that materialises its weights, with ``B·h·n²``.

Symbols: ``B`` batch, ``n`` sequence length, ``d`` model width, ``h`` heads, ``d_ff`` feed-forward width
(``4·d`` by default), ``L`` layers, ``b`` bytes per element of the activations (2 for FP16/BF16, 4 for FP32).
"""

from __future__ import annotations

import math

from utils.complexity._parameters import encoder_layer_parameters
from utils.validate import check_choice, check_heads, check_int, check_positive_int

#: Optimizers whose state :func:`optimizer_state_bytes_per_parameter` knows: Adam/AdamW keep two FP32 moments
#: (8 bytes), SGD with momentum one FP32 buffer (4), plain SGD nothing.
OPTIMIZER_STATE_BYTES = {"adam": 8, "sgd_momentum": 4, "sgd": 0}
TRAINING_OPTIMIZERS = tuple(OPTIMIZER_STATE_BYTES)
#: ``attention=`` of the activation formulas: ``"naive"`` keeps the ``B·h·n²`` softmax output;
#: ``"flash"`` (a fused kernel such as ``F.scaled_dot_product_attention``) keeps ``B·h·n`` FP32 statistics.
ATTENTION_KINDS = ("naive", "flash")


def _check_bytes_per_element(bytes_per_element) -> int:
    if isinstance(bytes_per_element, bool) or bytes_per_element not in (2, 4):
        raise ValueError(f"bytes_per_element must be 2 (mixed precision: FP16/BF16 with FP32 master weights) or "
                         f"4 (FP32), got {bytes_per_element!r}.")
    return int(bytes_per_element)


def optimizer_state_bytes_per_parameter(optimizer: str = "adam") -> int:
    """Bytes of optimizer state per parameter, kept in FP32: Adam 8 (two moments), SGD with momentum 4, SGD 0."""
    return OPTIMIZER_STATE_BYTES[check_choice("optimizer", optimizer, TRAINING_OPTIMIZERS)]


def training_state_bytes(bytes_per_element: int = 2, optimizer: str = "adam") -> dict:
    """Bytes per parameter of each piece of training state, activations aside.

    ``{"weights", "gradients", "master weights", "optimizer state"}``: FP32 (``bytes_per_element=4``)
    keeps 4 + 4 + 0 + state; mixed precision (``2``) keeps FP16/BF16 weights and gradients (2 + 2), an
    FP32 master copy that the optimizer updates (4), and the optimizer state in FP32.
    """
    bpe = _check_bytes_per_element(bytes_per_element)
    return {"weights": bpe, "gradients": bpe, "master weights": 4 if bpe == 2 else 0,
            "optimizer state": optimizer_state_bytes_per_parameter(optimizer)}


def training_state_bytes_per_parameter(bytes_per_element: int = 2, optimizer: str = "adam") -> int:
    """Bytes a training step keeps per parameter, activations aside (the sum of :func:`training_state_bytes`).

    Adam costs 16 bytes per parameter in FP32 (4 + 4 + 8) and in mixed precision (2 + 2 + 4 + 8); SGD 8
    either way; SGD with momentum 12.
    """
    return sum(training_state_bytes(bytes_per_element, optimizer).values())


def transformer_layer_activation_terms(batch: int, n: int, d_model: int, heads: int, d_ff: int | None = None, *,
                                       attention: str = "naive", bytes_per_element: int = 2,
                                       dropout: bool = False) -> dict:
    """Bytes autograd saves for the backward pass of one pre-norm Transformer layer, term by term.

    The layer is ``x + Attn(LN(x))`` then ``x + FFN(LN(x))`` (:class:`utils.blocks.TransformerBlock`,
    GELU). Terms:

    * ``"linear in n"``: ``B·n·(8·d + 2·d_ff)`` elements — both layer norms' inputs and outputs (4),
      Q, K, V (3), the heads' output that enters the output projection (1), the feed-forward hidden layer
      before and after the activation (2·d_ff);
    * ``"attention n²"``: ``B·h·n²`` elements of softmax output for ``attention="naive"``; a fused kernel
      (``"flash"``) keeps instead ``B·h·n`` FP32 log-sum-exp statistics (4 bytes each);
    * ``"layer-norm statistics"``: ``4·B·n`` elements (mean and inverse deviation of two layer norms);
    * with ``dropout=True`` (the convention of Korthikanti et al. 2022: dropout after the attention
      weights, after attention and after the feed-forward block): ``"dropout masks"``, one byte per
      element (``B·h·n²`` + ``2·B·n·d``; no ``n²`` mask for ``"flash"``, whose kernel regenerates it),
      and ``"dropped weights"``, the ``B·h·n²`` weights after dropout that ``A·V`` keeps (naive only).

    ``bytes_per_element`` is the activations' element size (2 for FP16/BF16, 4 for FP32).
    """
    b = check_positive_int("batch", batch)
    n = check_positive_int("n", n)
    d, h = check_heads(d_model, heads)
    f = 4 * d if d_ff is None else check_positive_int("d_ff", d_ff)
    kind = check_choice("attention", attention, ATTENTION_KINDS)
    bpe = _check_bytes_per_element(bytes_per_element)
    if not isinstance(dropout, bool):
        raise ValueError(f"dropout must be True or False, got {dropout!r}.")
    terms = {
        "linear in n": b * n * (8 * d + 2 * f) * bpe,
        "attention n²": b * h * n * n * bpe if kind == "naive" else b * h * n * 4,
        "layer-norm statistics": 4 * b * n * bpe,
    }
    if dropout:
        terms["dropout masks"] = (b * h * n * n if kind == "naive" else 0) + 2 * b * n * d
        terms["dropped weights"] = b * h * n * n * bpe if kind == "naive" else 0
    return terms


def transformer_layer_activation_bytes(batch: int, n: int, d_model: int, heads: int, d_ff: int | None = None, *,
                                       attention: str = "naive", bytes_per_element: int = 2,
                                       dropout: bool = False) -> int:
    """Bytes saved for backward by one pre-norm Transformer layer: the sum of
    :func:`transformer_layer_activation_terms`. With ``d_ff = 4·d``, naive attention and no dropout:
    ``(16·B·n·d + B·h·n² + 4·B·n)·b``."""
    return sum(transformer_layer_activation_terms(batch, n, d_model, heads, d_ff, attention=attention,
                                                  bytes_per_element=bytes_per_element, dropout=dropout).values())


def korthikanti_activation_bytes(seq_len: int, batch: int, hidden: int, heads: int) -> int:
    """Korthikanti et al. (2022), activation bytes of one Transformer layer: ``s·b·h·(34 + 5·a·s/h)``.

    Their symbols: ``s`` sequence length, ``b`` batch, ``h`` hidden width, ``a`` heads. Conventions: 16-bit
    activations, ``d_ff = 4·h``, dropout with one-byte masks after the attention weights, after attention
    and after the MLP, layer-norm statistics neglected. Equal to :func:`transformer_layer_activation_bytes`
    with ``bytes_per_element=2, dropout=True`` minus its layer-norm statistics.
    """
    s, b = check_positive_int("seq_len", seq_len), check_positive_int("batch", batch)
    h, a = check_heads(hidden, heads)
    return 34 * s * b * h + 5 * a * s * s * b


def checkpointed_activation_bytes(layers: int, layer_bytes: int, input_bytes: int, segments: int = 1) -> int:
    """Activation bytes held at the end of the forward pass of ``layers`` equal layers cut into ``segments``.

    ``segments=1``: no checkpointing, ``L·a`` (``a = layer_bytes`` saved per layer). With ``k`` segments
    (``torch.utils.checkpoint.checkpoint_sequential``, whose last segment runs plainly) the stack keeps
    the inputs of the other ``k − 1`` segments (``input_bytes`` each, one ``B·n·d`` tensor) and the last
    segment's ``⌈L/k⌉`` layers: ``(k − 1)·input + ⌈L/k⌉·a``. Backward then recomputes one segment at a
    time, so no later moment holds more than that plus one segment's activations.
    """
    L = check_positive_int("layers", layers)
    a = check_int("layer_bytes", layer_bytes, minimum=0)
    i = check_int("input_bytes", input_bytes, minimum=0)
    k = check_positive_int("segments", segments)
    if k > L:
        raise ValueError(f"segments={k} exceeds the {L} layers; use at most one segment per layer.")
    return L * a if k == 1 else (k - 1) * i + math.ceil(L / k) * a


def best_checkpoint_segments(layers: int, layer_bytes: int, input_bytes: int) -> int:
    """The segment count ``k`` (1 … ``layers``) that minimises :func:`checkpointed_activation_bytes`.

    The continuous optimum of ``k·i + L·a/k`` is ``k = √(L·a/i)``: Chen et al.'s ``√L`` when a layer saves
    as much as its input (``a = i``), more segments — up to one per layer — when a layer saves far more.
    """
    L = check_positive_int("layers", layers)
    return min(range(1, L + 1), key=lambda k: (checkpointed_activation_bytes(L, layer_bytes, input_bytes, k), k))


def transformer_training_memory(batch: int, n: int, d_model: int, heads: int, layers: int, *,
                                d_ff: int | None = None, vocab: int = 0, optimizer: str = "adam",
                                bytes_per_element: int = 2, attention: str = "naive", dropout: bool = False,
                                checkpoint_segments: int = 1) -> dict:
    """Bytes of one training step of a stack of ``layers`` pre-norm Transformer layers, piece by piece.

    Returns ``{"parameters", "weights", "gradients", "master weights", "optimizer state", "activations",
    "total"}``: the parameters are ``layers × encoder_layer_parameters(d, d_ff)`` plus ``vocab·d`` for a
    token embedding (tied with the output layer); each state term is the parameters times its bytes per
    parameter (:func:`training_state_bytes`); the activations are
    :func:`transformer_layer_activation_bytes` per layer, under ``checkpoint_segments`` segments
    (:func:`checkpointed_activation_bytes`; the segment input is ``B·n·d`` elements). The backward pass's
    own temporaries (a gradient the size of the largest tensor, a few of them at once) come on top.
    """
    d, _ = check_heads(d_model, heads)
    L = check_positive_int("layers", layers)
    f = 4 * d if d_ff is None else check_positive_int("d_ff", d_ff)
    params = L * encoder_layer_parameters(d, f) + check_int("vocab", vocab, minimum=0) * d
    per_param = training_state_bytes(bytes_per_element, optimizer)
    layer = transformer_layer_activation_bytes(batch, n, d, heads, f, attention=attention,
                                               bytes_per_element=bytes_per_element, dropout=dropout)
    activations = checkpointed_activation_bytes(L, layer, batch * n * d * bytes_per_element, checkpoint_segments)
    out = {"parameters": params, **{k: params * v for k, v in per_param.items()}, "activations": activations}
    out["total"] = sum(v for k, v in out.items() if k != "parameters")
    return out
