"""The first source article's example models, runnable: Abstract Algorithms, *Deep Learning Architectures:
CNNs, RNNs, and Transformers*.

The article shows three PyTorch models and two Keras models. This module holds

* :class:`SimpleCNN`, :class:`SimpleRNN` and :class:`SimpleTransformer`, the PyTorch models **as the article
  writes them** (same layers, same defaults, same forward pass). Only argument checks are added: a wrong
  width or a wrong input shape raises a ``ValueError`` that says what to change. :class:`SimpleTransformer`
  also takes two keyword-only switches, both off by default, that the article's model does not have:
  ``positional=True`` adds sinusoidal positional encodings (:func:`utils.positional.sinusoidal`, no
  parameters) and ``cls_token=True`` prepends a learned ``[CLS]`` vector that the head reads instead of the
  first real token.
* :class:`KerasCNNBaseline` (``cnn_baseline``) and :class:`KerasTransformerBaseline`
  (``transformer_baseline``), the two Keras models **ported to PyTorch** layer by layer, with the same
  parameter counts and the same computation; what the port changes is listed in each class's docstring.

:func:`build_article_model` builds any of the five by name, :func:`example_input` makes an input batch of
the shape each expects, and :func:`permutation_gap` measures how much a model's output moves when its
input is permuted along one axis (the "dog bites man" test).
"""

from __future__ import annotations

import torch
from torch import nn

from utils.positional import check_even_width, sinusoidal
from utils.validate import check_choice, check_heads, check_int, check_positive_int

__all__ = [
    "ARTICLE_MODELS",
    "KerasCNNBaseline",
    "KerasTransformerBaseline",
    "SimpleCNN",
    "SimpleRNN",
    "SimpleTransformer",
    "build_article_model",
    "example_input",
    "permutation_gap",
]


def _check_shape(name: str, x, ndim: int, expected: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {expected}, got {type(x).__name__}.")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)} ({x.dim()} dimensions).")
    return x


def _check_tokens(tokens, vocab: int, expected: str) -> torch.Tensor:
    tokens = _check_shape("tokens", tokens, 2, expected)
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be integer token ids (torch.long), got dtype {tokens.dtype}.")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(f"token ids must lie in 0 … {vocab - 1} (vocab = {vocab}), got ids from "
                         f"{int(tokens.min())} to {int(tokens.max())}.")
    return tokens


class SimpleCNN(nn.Module):
    """The article's CNN, as written: ``Conv2d(1, 32, 3, padding=1)`` → ReLU → ``MaxPool2d(2)`` →
    ``Conv2d(32, 64, 3, padding=1)`` → ReLU → ``AdaptiveAvgPool2d(4)`` → ``Linear(64·4·4, num_classes)``.

    Input ``(B, 1, H, W)`` (the article comments ``(B, 1, 28, 28)``); the adaptive pooling makes the head
    independent of ``H`` and ``W`` (each at least 2). Output: ``num_classes`` logits (no softmax).
    Added: a ``ValueError`` for a wrong ``num_classes`` or input shape.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Linear(64 * 4 * 4, num_classes)

    def forward(self, x):
        x = _check_shape("x", x, 4, "(B, 1, H, W)")
        if x.shape[1] != 1 or x.shape[2] < 2 or x.shape[3] < 2:
            raise ValueError(f"x must have shape (B, 1, H, W) with one channel and H, W >= 2, got {tuple(x.shape)}.")
        return self.classifier(self.features(x).flatten(1))


class SimpleRNN(nn.Module):
    """The article's recurrent model, as written: one ``nn.LSTM(input_size, hidden, batch_first=True)`` and a
    ``Linear(hidden, num_classes)`` head on the last hidden state ``h_n[-1]``.

    Input ``(B, seq_len, input_size)``. Output: ``num_classes`` logits. Added: a ``ValueError`` for a wrong
    width or input shape.
    """

    def __init__(self, input_size: int = 1, hidden: int = 64, num_classes: int = 2):
        super().__init__()
        input_size = check_positive_int("input_size", input_size)
        hidden = check_positive_int("hidden", hidden)
        num_classes = check_positive_int("num_classes", num_classes)
        self.rnn = nn.LSTM(input_size, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = _check_shape("x", x, 3, "(B, seq_len, input_size)")
        if x.shape[2] != self.rnn.input_size or x.shape[1] < 1:
            raise ValueError(f"x must have shape (B, seq_len >= 1, {self.rnn.input_size}), got {tuple(x.shape)}.")
        _, (h_n, _) = self.rnn(x)
        return self.head(h_n[-1])


class SimpleTransformer(nn.Module):
    """The article's Transformer, as written: ``nn.Embedding(vocab, d_model)``, a two-layer
    ``nn.TransformerEncoder`` of ``nn.TransformerEncoderLayer(d_model, nhead, batch_first=True)`` (PyTorch's
    defaults: ``dim_feedforward=2048``, ``dropout=0.1``, post-norm, ReLU) and a ``Linear(d_model,
    num_classes)`` head on position 0, ``x[:, 0, :]``, which the article comments as "CLS-token pooling".

    With the defaults this is the article's model exactly: no positional encoding, and no ``[CLS]`` token is
    prepended, so position 0 is the first real token. Two keyword-only switches, both off by default, add
    what it lacks:

    * ``positional=True`` adds the sinusoidal encoding ``sinusoidal(n, d_model)`` to the embeddings
      (no parameters; ``d_model`` must be even);
    * ``cls_token=True`` prepends a learned vector (``d_model`` parameters, initialised from a standard
      normal) to every sequence; the head then reads its output.

    Input: token ids ``(B, seq_len)`` in ``0 … vocab-1``. Output: ``num_classes`` logits. Dropout is active
    in training mode: call ``.eval()`` before comparing two outputs.
    """

    def __init__(self, vocab: int = 1000, d_model: int = 128, nhead: int = 4, num_classes: int = 2, *,
                 positional: bool = False, cls_token: bool = False):
        super().__init__()
        self.vocab = check_positive_int("vocab", vocab)
        d_model, nhead = check_heads(d_model, nhead)
        num_classes = check_positive_int("num_classes", num_classes)
        self.positional = check_choice("positional", positional, (False, True))
        if self.positional:
            check_even_width(d_model)
        self.embed = nn.Embedding(vocab, d_model)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, nhead, batch_first=True), num_layers=2
        )
        self.head = nn.Linear(d_model, num_classes)
        self.cls = nn.Parameter(torch.randn(d_model)) if check_choice("cls_token", cls_token, (False, True)) else None

    def forward(self, tokens):
        tokens = _check_tokens(tokens, self.vocab, "(B, seq_len)")
        if tokens.shape[1] < 1:
            raise ValueError("tokens must hold at least one position, got seq_len = 0.")
        x = self.embed(tokens)
        if self.cls is not None:
            x = torch.cat([self.cls.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        if self.positional:
            x = x + sinusoidal(x.shape[1], x.shape[2], dtype=x.dtype).to(x.device)
        x = self.encoder(x)
        return self.head(x[:, 0, :])


class KerasCNNBaseline(nn.Module):
    """The article's Keras ``cnn_baseline``, ported to PyTorch layer by layer.

    Keras: ``Input((28, 28, 1))`` → ``Conv2D(32, 3, activation="relu")`` (``padding="valid"``) →
    ``MaxPooling2D()`` (2×2) → ``Flatten()`` → ``Dense(10, activation="softmax")``. Port:
    ``Conv2d(1, 32, 3)`` → ReLU → ``MaxPool2d(2)`` → ``Flatten`` → ``Linear(32·13·13, 10)`` → softmax.
    Same parameters (320 + 54,090) and the same products.

    What the port changes: tensors are channels-first ``(B, 1, 28, 28)`` instead of ``(B, 28, 28, 1)``, so
    ``Flatten`` orders the 5,408 features channel-major (copying Keras weights would need the dense
    matrix's rows permuted); the initialisation is PyTorch's (Kaiming-uniform), not Keras's Glorot-uniform.
    The output is kept a probability vector, as in Keras (train it with ``NLLLoss`` on its log, or drop
    the softmax for ``CrossEntropyLoss``).
    """

    def __init__(self, height: int = 28, width: int = 28, num_classes: int = 10):
        super().__init__()
        self.height = check_int("height", height, minimum=4, hint="a 3×3 valid convolution and 2×2 pooling need 4.")
        self.width = check_int("width", width, minimum=4, hint="a 3×3 valid convolution and 2×2 pooling need 4.")
        num_classes = check_positive_int("num_classes", num_classes)
        features = 32 * ((self.height - 2) // 2) * ((self.width - 2) // 2)
        self.conv = nn.Conv2d(1, 32, 3)
        self.pool = nn.MaxPool2d(2)
        self.dense = nn.Linear(features, num_classes)

    def forward(self, x):
        x = _check_shape("x", x, 4, f"(B, 1, {self.height}, {self.width})")
        if tuple(x.shape[1:]) != (1, self.height, self.width):
            raise ValueError(f"x must have shape (B, 1, {self.height}, {self.width}) (channels first), "
                             f"got {tuple(x.shape)}.")
        return torch.softmax(self.dense(self.pool(torch.relu(self.conv(x))).flatten(1)), dim=-1)


class KerasTransformerBaseline(nn.Module):
    """The article's Keras ``transformer_baseline``, ported to PyTorch layer by layer.

    Keras: ``Input((128,), int32)`` → ``Embedding(5000, 64)`` → ``MultiHeadAttention(num_heads=4,
    key_dim=16)(x, x)`` → ``GlobalAveragePooling1D()`` → ``Dense(2, activation="softmax")``. Port:
    ``nn.Embedding(5000, 64)`` → ``nn.MultiheadAttention(64, 4, batch_first=True)`` (heads of
    ``64 / 4 = 16`` channels, scale ``1/√16``, as Keras) → mean over positions → ``Linear(64, 2)`` → softmax.
    Same parameters: 320,000 + 16,640 + 130.

    Despite its name it is one attention layer, not a Transformer block: no residual connection, no
    LayerNorm, no feed-forward network, and no positional encoding. Without positions, self-attention is
    permutation-equivariant and the average over positions is permutation-invariant, so the output does
    not depend on the order of the tokens at all (:func:`permutation_gap` measures it).

    What the port changes: ``nn.MultiheadAttention`` stores the three input projections as one
    ``3d × d`` matrix where Keras keeps three ``d × (heads · key_dim)`` kernels (the same numbers,
    arranged differently); it requires ``num_heads · key_dim = d_model`` (Keras allows other widths), so
    other values raise a ``ValueError``; the initialisation is PyTorch's. ``positional=True`` (not in the
    article) adds the sinusoidal encoding to the embeddings.
    """

    def __init__(self, vocab: int = 5000, seq_len: int = 128, d_model: int = 64, num_heads: int = 4,
                 key_dim: int = 16, num_classes: int = 2, *, positional: bool = False):
        super().__init__()
        self.vocab = check_positive_int("vocab", vocab)
        self.seq_len = check_positive_int("seq_len", seq_len)
        d_model, num_heads = check_heads(d_model, num_heads)
        key_dim = check_positive_int("key_dim", key_dim)
        if num_heads * key_dim != d_model:
            raise ValueError(f"the port needs num_heads * key_dim = d_model (nn.MultiheadAttention splits d_model "
                             f"into the heads), got {num_heads} * {key_dim} != {d_model}; use "
                             f"key_dim={d_model // num_heads}.")
        num_classes = check_positive_int("num_classes", num_classes)
        self.positional = check_choice("positional", positional, (False, True))
        if self.positional:
            check_even_width(d_model)
        self.embed = nn.Embedding(vocab, d_model)
        self.attention = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.dense = nn.Linear(d_model, num_classes)

    def forward(self, tokens):
        tokens = _check_tokens(tokens, self.vocab, f"(B, {self.seq_len})")
        if tokens.shape[1] != self.seq_len:
            raise ValueError(f"tokens must have shape (B, {self.seq_len}) (the Keras Input shape), "
                             f"got {tuple(tokens.shape)}.")
        x = self.embed(tokens)
        if self.positional:
            x = x + sinusoidal(x.shape[1], x.shape[2], dtype=x.dtype).to(x.device)
        x, _ = self.attention(x, x, x, need_weights=False)
        return torch.softmax(self.dense(x.mean(dim=1)), dim=-1)


ARTICLE_MODELS = {
    "SimpleCNN": SimpleCNN,
    "SimpleRNN": SimpleRNN,
    "SimpleTransformer": SimpleTransformer,
    "cnn_baseline": KerasCNNBaseline,
    "transformer_baseline": KerasTransformerBaseline,
}


def build_article_model(name: str, **kwargs) -> nn.Module:
    """One of the article's five models by name (the PyTorch class name or the Keras model name), in
    eval mode (dropout off) so that two calls on the same input give the same output."""
    check_choice("name", name, ARTICLE_MODELS)
    return ARTICLE_MODELS[name](**kwargs).eval()


def example_input(model: nn.Module, batch: int = 2, *, seq_len: int | None = None, seed: int = 0) -> torch.Tensor:
    """A random input batch of the shape ``model`` expects (reproducible from ``seed``).

    Images ``(batch, 1, 28, 28)`` for the CNNs, ``(batch, seq_len, input_size)`` for :class:`SimpleRNN`
    (``seq_len`` 16 by default), token ids ``(batch, seq_len)`` for the attention models (16 by default;
    the Keras port's fixed length). Float inputs take the dtype of the model's parameters.
    """
    batch = check_positive_int("batch", batch)
    seed = check_int("seed", seed, minimum=0)
    if seq_len is not None:
        seq_len = check_positive_int("seq_len", seq_len)
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    if isinstance(model, KerasCNNBaseline):
        return torch.randn(batch, 1, model.height, model.width, generator=g).to(dtype)
    if isinstance(model, SimpleCNN):
        return torch.randn(batch, 1, 28, 28, generator=g).to(dtype)
    if isinstance(model, SimpleRNN):
        return torch.randn(batch, seq_len or 16, model.rnn.input_size, generator=g).to(dtype)
    if isinstance(model, KerasTransformerBaseline):
        if seq_len is not None and seq_len != model.seq_len:
            raise ValueError(f"this model takes exactly seq_len = {model.seq_len} tokens, got seq_len = {seq_len}.")
        return torch.randint(0, model.vocab, (batch, model.seq_len), generator=g)
    if isinstance(model, SimpleTransformer):
        return torch.randint(0, model.vocab, (batch, seq_len or 16), generator=g)
    names = sorted(c.__name__ for c in ARTICLE_MODELS.values())
    raise ValueError(f"model must be one of the article's models {names}, got {type(model).__name__}.")


def permutation_gap(model, x: torch.Tensor, perm, *, dim: int = 1) -> float:
    """``max |model(x permuted along dim) - model(x)|``: how much the output moves when the input's positions
    are reordered by ``perm`` (a permutation of ``0 … x.shape[dim]-1``).

    0 up to floating-point rounding means the model cannot see that order; a gap of the size of the outputs
    themselves means it can. Run in eval mode (dropout off) and, to tell rounding from a real difference,
    in float64.
    """
    if not callable(model):
        raise ValueError(f"model must be callable (an nn.Module), got {type(model).__name__}.")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    dim = check_int("dim", dim, minimum=0)
    if dim >= x.dim():
        raise ValueError(f"dim must be < x.dim() = {x.dim()}, got {dim}.")
    n = x.shape[dim]
    try:
        perm = [int(p) for p in perm]
    except (TypeError, ValueError):
        raise ValueError(f"perm must be a sequence of whole numbers, got {perm!r}.") from None
    if sorted(perm) != list(range(n)):
        raise ValueError(f"perm must be a permutation of 0 … {n - 1} (x.shape[{dim}] = {n}), got {perm}.")
    index = torch.tensor(perm, device=x.device)
    with torch.no_grad():
        return float((model(x.index_select(dim, index)) - model(x)).abs().max())
