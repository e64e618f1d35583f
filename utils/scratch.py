"""The three families from scratch: a few readable lines each, checked against ``torch.nn``.

Every piece takes its weights as explicit tensors (a small frozen dataclass), so the equations of the
chapter *The families from scratch* can be read off the code. A ``*_weights(module)`` function copies
the weights out of the corresponding ``torch.nn`` module; the tests and the chapter check that the
from-scratch output equals the module's with ``torch.testing.assert_close``.

======================================  ====================================================================
piece                                   reference module
======================================  ====================================================================
:func:`rnn_cell`                        ``nn.RNNCell`` (tanh): ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``
:func:`lstm_cell`                       ``nn.LSTMCell``, gates in PyTorch's order ``i | f | g | o``
:func:`gru_cell`                        ``nn.GRUCell``, gates ``r | z | n``, ``r`` applied to ``W_hn h + b_hn``
:func:`unroll`                          ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (one layer, ``batch_first``)
:func:`conv1d_block`                    ``nn.Conv1d`` → ``nn.ReLU`` → ``nn.MaxPool1d``
:func:`conv2d_block`                    ``nn.Conv2d`` → ``nn.ReLU`` → ``nn.MaxPool2d``
:func:`attention_head`                  ``F.scaled_dot_product_attention`` on projected ``q, k, v``
:func:`multihead_attention`             ``nn.MultiheadAttention`` (``batch_first=True``)
:func:`encoder_block`                   ``nn.TransformerEncoderLayer`` (post-norm or ``norm_first=True``)
======================================  ====================================================================

**Parameter counts.** The recurrent cells have the counts of one layer of ``nn.RNN``/``GRU``/``LSTM``
(:func:`utils.complexity.recurrent_parameters`: ``g·h·(i + h) + 2·g·h`` with ``g`` = 1, 3, 4 gate blocks),
a 1-D convolution block that of its convolution (:func:`utils.complexity.conv1d_parameters`; pooling
has none) and an encoder block :func:`utils.complexity.encoder_layer_parameters`. This module adds only
the counts that :mod:`utils.complexity` lacks: :func:`conv2d_parameters`,
:func:`attention_head_parameters` and :func:`multihead_attention_parameters`.

**The 1/√d_k scale.** :func:`softmax_saturation` measures what the scale prevents: with unit-variance
query and key entries a dot product has variance ``d_k``, so without the scale the softmax over the keys
saturates (its largest probability tends to 1, its entropy and its Jacobian to 0) as ``d_k`` grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from utils.complexity import GATES, conv1d_parameters, linear_parameters
from utils.validate import check_choice, check_heads, check_int, check_positive_int

__all__ = [
    "CellWeights", "cell_weights", "rnn_cell", "lstm_cell", "gru_cell", "unroll",
    "ConvWeights", "conv_weights", "conv1d", "conv2d", "max_pool1d", "max_pool2d", "conv1d_block", "conv2d_block",
    "attention", "attention_head", "MultiheadWeights", "multihead_weights", "multihead_attention",
    "layer_norm", "EncoderWeights", "encoder_weights", "encoder_block",
    "conv2d_parameters", "attention_head_parameters", "multihead_attention_parameters",
    "softmax_saturation",
]

def _check_tensor(name: str, value, ndim=None, hint: str = "") -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if ndim is not None and value.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        extra = f" {hint}" if hint else ""
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}.{extra}")
    return value


def _check_last(name: str, value: torch.Tensor, size: int, what: str) -> None:
    if value.shape[-1] != size:
        raise ValueError(f"{name} has {value.shape[-1]} features in its last dimension, but {what} expects "
                         f"{size}: give {name} shape (..., {size}).")


# ------------------------------------------------------------------------------------ recurrent cells

@dataclass(frozen=True, eq=False)
class CellWeights:
    """Weights of one recurrent cell, laid out as PyTorch does: the gate blocks stacked along dim 0.

    ``w_ih``: ``(g·h, i)``, ``w_hh``: ``(g·h, h)``, ``b_ih``/``b_hh``: ``(g·h,)`` or ``None`` (no bias);
    ``g`` = 1 (``"rnn"``), 3 (``"gru"``: ``r|z|n``) or 4 (``"lstm"``: ``i|f|g|o``).
    """

    family: str
    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None = None
    b_hh: torch.Tensor | None = None

    def __post_init__(self):
        g = GATES[check_choice("family", self.family, GATES)]
        _check_tensor("w_ih", self.w_ih, 2)
        _check_tensor("w_hh", self.w_hh, 2)
        gh, h = self.w_hh.shape
        if gh != g * h:
            raise ValueError(f"w_hh must have shape ({g}·h, h) for family={self.family!r} ({g} gate blocks), "
                             f"got {tuple(self.w_hh.shape)}.")
        if self.w_ih.shape[0] != gh:
            raise ValueError(f"w_ih must have {gh} rows like w_hh, got shape {tuple(self.w_ih.shape)}.")
        if (self.b_ih is None) != (self.b_hh is None):
            raise ValueError("give both biases b_ih and b_hh, or neither (a cell without bias).")
        for name in ("b_ih", "b_hh"):
            b = getattr(self, name)
            if b is not None and tuple(_check_tensor(name, b, 1).shape) != (gh,):
                raise ValueError(f"{name} must have shape ({gh},), got {tuple(b.shape)}.")

    @property
    def input_size(self) -> int:
        return self.w_ih.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.w_hh.shape[1]


def cell_weights(module) -> CellWeights:
    """Copy the weights of ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``, or of layer 0 of a one-layer,
    unidirectional ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (tanh, no projection), into a :class:`CellWeights`."""
    kinds = {nn.RNNCell: "rnn", nn.LSTMCell: "lstm", nn.GRUCell: "gru", nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru"}
    family = kinds.get(type(module))
    if family is None:
        raise ValueError(f"cell_weights needs an nn.RNNCell, nn.LSTMCell, nn.GRUCell or a one-layer nn.RNN/LSTM/GRU, "
                         f"got {type(module).__name__}.")
    if getattr(module, "nonlinearity", "tanh") != "tanh":
        raise ValueError("rnn_cell is the tanh cell: build the module with nonlinearity='tanh'.")
    suffix = ""
    if isinstance(module, nn.RNNBase):
        if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
            raise ValueError("only a one-layer, unidirectional recurrent layer without projection unrolls as one "
                             "cell: build it with num_layers=1, bidirectional=False, proj_size=0.")
        suffix = "_l0"
    get = lambda name: getattr(module, name + suffix, None)  # noqa: E731
    copy = lambda t: None if t is None else t.detach().clone()  # noqa: E731
    return CellWeights(family, copy(get("weight_ih")), copy(get("weight_hh")), copy(get("bias_ih")),
                       copy(get("bias_hh")))


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x Wᵀ + b`` — what ``nn.Linear`` computes."""
    return x @ w.T if b is None else x @ w.T + b


def _check_cell_input(x, h, w: CellWeights, family: str) -> None:
    if w.family != family:
        raise ValueError(f"these are {w.family} weights; call the {w.family}_cell, or copy {family} weights.")
    _check_tensor("x", x, (1, 2), "x holds one time step: (batch, input_size) or (input_size,).")
    _check_last("x", x, w.input_size, f"w_ih (input_size={w.input_size})")
    _check_tensor("h", h, x.ndim, "h must have the layout of x: (batch, hidden_size) or (hidden_size,).")
    _check_last("h", h, w.hidden_size, f"w_hh (hidden_size={w.hidden_size})")


def rnn_cell(x: torch.Tensor, h: torch.Tensor, w: CellWeights) -> torch.Tensor:
    """One step of the Elman RNN: ``h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` (``nn.RNNCell``)."""
    _check_cell_input(x, h, w, "rnn")
    return torch.tanh(_affine(x, w.w_ih, w.b_ih) + _affine(h, w.w_hh, w.b_hh))


def lstm_cell(x: torch.Tensor, state: tuple, w: CellWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step (``nn.LSTMCell``); ``state = (h, c)``, returns ``(h', c')``.

    ``i, f, g, o`` = the four gate blocks of ``x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`` (PyTorch's order);
    ``c' = σ(f)·c + σ(i)·tanh(g)``, ``h' = σ(o)·tanh(c')``.
    """
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError("an LSTM state is the pair (h, c): pass state=(h, c).")
    h, c = state
    _check_cell_input(x, h, w, "lstm")
    _check_tensor("c", c, h.ndim)
    if c.shape != h.shape:
        raise ValueError(f"c must have the shape of h {tuple(h.shape)}, got {tuple(c.shape)}.")
    i, f, g, o = (_affine(x, w.w_ih, w.b_ih) + _affine(h, w.w_hh, w.b_hh)).chunk(4, dim=-1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_next), c_next


def gru_cell(x: torch.Tensor, h: torch.Tensor, w: CellWeights) -> torch.Tensor:
    """One GRU step (``nn.GRUCell``), gate blocks in PyTorch's order ``r | z | n``:

    ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r·(W_hn h + b_hn))``, ``h' = (1 - z)·n + z·h``.
    The reset gate multiplies ``W_hn h + b_hn``, bias included (Cho et al. apply it to ``h`` before ``W_hn``).
    """
    _check_cell_input(x, h, w, "gru")
    x_r, x_z, x_n = _affine(x, w.w_ih, w.b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = _affine(h, w.w_hh, w.b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def unroll(x: torch.Tensor, w: CellWeights, state=None):
    """Run a cell over a sequence ``x`` of shape ``(batch, n, input_size)``, one step per position.

    ``state``: the initial ``h`` (``(h, c)`` for an LSTM), zeros by default. Returns ``(outputs, state)``
    with ``outputs`` of shape ``(batch, n, hidden_size)`` — what a one-layer ``nn.RNN``/``LSTM``/``GRU``
    with ``batch_first=True`` returns as its first output.
    """
    if not isinstance(w, CellWeights):
        raise ValueError(f"w must be a CellWeights (see cell_weights), got {type(w).__name__}.")
    _check_tensor("x", x, 3, "unroll takes a batch of sequences: (batch, n, input_size).")
    _check_last("x", x, w.input_size, f"w_ih (input_size={w.input_size})")
    if x.shape[1] < 1:
        raise ValueError("x must hold at least one time step (n >= 1).")
    zeros = x.new_zeros(x.shape[0], w.hidden_size)
    cell = {"rnn": rnn_cell, "lstm": lstm_cell, "gru": gru_cell}[w.family]
    if state is None:
        state = (zeros, zeros.clone()) if w.family == "lstm" else zeros
    outputs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, w)
        outputs.append(state[0] if w.family == "lstm" else state)
    return torch.stack(outputs, dim=1), state


# ------------------------------------------------------------------------------------------- convolution

@dataclass(frozen=True, eq=False)
class ConvWeights:
    """Weights of one stride-1 convolution: ``weight`` of shape ``(c_out, c_in, k)`` (1-D) or
    ``(c_out, c_in, k, k)`` (2-D), ``bias`` ``(c_out,)`` or ``None``, and the zero ``padding`` on each side."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    padding: int = 0

    def __post_init__(self):
        _check_tensor("weight", self.weight, (3, 4), "a 1-D conv weight is (c_out, c_in, k), a 2-D one "
                      "(c_out, c_in, k, k).")
        if self.weight.ndim == 4 and self.weight.shape[2] != self.weight.shape[3]:
            raise ValueError(f"2-D kernels here are square (k × k), got {tuple(self.weight.shape[2:])}.")
        if self.bias is not None and tuple(_check_tensor("bias", self.bias, 1).shape) != (self.weight.shape[0],):
            raise ValueError(f"bias must have shape ({self.weight.shape[0]},) (one per output channel), "
                             f"got {tuple(self.bias.shape)}.")
        check_int("padding", self.padding, minimum=0)

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[-1]


def conv_weights(conv) -> ConvWeights:
    """Copy the weights of an ``nn.Conv1d`` or ``nn.Conv2d`` (stride 1, no dilation, one group, zero padding
    of equal size on every side)."""
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)):
        raise ValueError(f"conv_weights needs an nn.Conv1d or nn.Conv2d, got {type(conv).__name__}.")
    if set(conv.stride) != {1} or set(conv.dilation) != {1} or conv.groups != 1:
        raise ValueError("the from-scratch convolution has stride 1, dilation 1 and groups 1: build the module so.")
    if isinstance(conv.padding, str) or len(set(conv.padding)) != 1 or conv.padding_mode != "zeros":
        raise ValueError("give the module one integer zero padding for every side, e.g. padding=1.")
    if len(set(conv.kernel_size)) != 1:
        raise ValueError(f"2-D kernels here are square, got kernel_size={conv.kernel_size}.")
    bias = None if conv.bias is None else conv.bias.detach().clone()
    return ConvWeights(conv.weight.detach().clone(), bias, int(conv.padding[0]))


def _check_conv_input(x, w: ConvWeights, dims: int) -> None:
    if not isinstance(w, ConvWeights):
        raise ValueError(f"w must be a ConvWeights (see conv_weights), got {type(w).__name__}.")
    if w.weight.ndim != dims + 2:
        raise ValueError(f"these are {w.weight.ndim - 2}-D weights; call conv{w.weight.ndim - 2}d.")
    layout = "(batch, channels, n)" if dims == 1 else "(batch, channels, height, width)"
    _check_tensor("x", x, dims + 2, f"the input layout is {layout}.")
    if x.shape[1] != w.weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but the weight expects c_in={w.weight.shape[1]}: "
                         f"give x the layout {layout}.")
    for size in x.shape[2:]:
        if size + 2 * w.padding < w.kernel_size:
            raise ValueError(f"the input ({size} positions + 2·padding {w.padding}) is shorter than the kernel "
                             f"({w.kernel_size}): use a longer input or more padding.")


def conv1d(x: torch.Tensor, w: ConvWeights) -> torch.Tensor:
    """``y[b, o, t] = bias[o] + Σ_c Σ_j weight[o, c, j] · x_pad[b, c, t + j]``: slide a window of ``k``
    positions (``unfold``) and take one dot product per window. ``x``: ``(batch, c_in, n)``."""
    _check_conv_input(x, w, 1)
    windows = nn.functional.pad(x, (w.padding, w.padding)).unfold(2, w.kernel_size, 1)   # (B, c_in, n_out, k)
    y = torch.einsum("bctj,ocj->bot", windows, w.weight)
    return y if w.bias is None else y + w.bias[:, None]


def conv2d(x: torch.Tensor, w: ConvWeights) -> torch.Tensor:
    """The 2-D analogue of :func:`conv1d`: one ``k × k`` window per output pixel. ``x``: ``(batch, c_in, H, W)``."""
    _check_conv_input(x, w, 2)
    k, p = w.kernel_size, w.padding
    windows = nn.functional.pad(x, (p, p, p, p)).unfold(2, k, 1).unfold(3, k, 1)   # (B, c_in, H_out, W_out, k, k)
    y = torch.einsum("bchwij,ocij->bohw", windows, w.weight)
    return y if w.bias is None else y + w.bias[:, None, None]


def max_pool1d(x: torch.Tensor, pool: int) -> torch.Tensor:
    """Non-overlapping max pooling over the last axis (``nn.MaxPool1d(pool)``: a trailing remainder is dropped)."""
    pool = check_positive_int("pool", pool)
    _check_tensor("x", x, 3, "the input layout is (batch, channels, n).")
    if x.shape[-1] < pool:
        raise ValueError(f"the sequence ({x.shape[-1]} positions) is shorter than the pool ({pool}).")
    return x.unfold(2, pool, pool).amax(dim=-1)


def max_pool2d(x: torch.Tensor, pool: int) -> torch.Tensor:
    """Non-overlapping ``pool × pool`` max pooling (``nn.MaxPool2d(pool)``)."""
    pool = check_positive_int("pool", pool)
    _check_tensor("x", x, 4, "the input layout is (batch, channels, height, width).")
    if min(x.shape[-2:]) < pool:
        raise ValueError(f"the image {tuple(x.shape[-2:])} is smaller than the pool ({pool}).")
    return x.unfold(2, pool, pool).unfold(3, pool, pool).amax(dim=(-2, -1))


def conv1d_block(x: torch.Tensor, w: ConvWeights, pool: int = 2) -> torch.Tensor:
    """convolution → ReLU → max pooling: ``nn.Sequential(nn.Conv1d, nn.ReLU(), nn.MaxPool1d(pool))``."""
    return max_pool1d(torch.relu(conv1d(x, w)), pool)


def conv2d_block(x: torch.Tensor, w: ConvWeights, pool: int = 2) -> torch.Tensor:
    """convolution → ReLU → max pooling: ``nn.Sequential(nn.Conv2d, nn.ReLU(), nn.MaxPool2d(pool))``."""
    return max_pool2d(torch.relu(conv2d(x, w)), pool)


# ----------------------------------------------------------------------------------------------- attention

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scaled: bool = True, mask=None):
    """``softmax(q kᵀ / √d_k) v`` (``scaled=False``: without the ``1/√d_k``). Returns ``(output, weights)``.

    ``q``: ``(..., n, d_k)``, ``k``: ``(..., n_kv, d_k)``, ``v``: ``(..., n_kv, d_v)``; ``mask`` (bool,
    broadcast to ``(..., n, n_kv)``, ``True`` = may attend) or ``None``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, t, tuple(range(2, 8)), "attention takes (..., positions, features).")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same feature size d_k, got {q.shape[-1]} and {k.shape[-1]}.")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have one row per key, got {k.shape[-2]} and {v.shape[-2]} rows.")
    if not isinstance(scaled, bool):
        raise ValueError(f"scaled must be True or False, got {scaled!r}.")
    scores = q @ k.transpose(-2, -1)
    if scaled:
        scores = scores / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def attention_head(x: torch.Tensor, w_q: torch.Tensor, w_k: torch.Tensor, w_v: torch.Tensor, *,
                   scaled: bool = True, mask=None):
    """One self-attention head on ``x`` of shape ``(batch, n, d_model)``: ``q = x W_qᵀ``, ``k = x W_kᵀ``,
    ``v = x W_vᵀ`` (each ``W`` of shape ``(d_k, d_model)``, no bias), then :func:`attention`.
    Returns ``(output, weights)``: ``(batch, n, d_k)`` and ``(batch, n, n)``."""
    _check_tensor("x", x, 3, "the input layout is (batch, n, d_model).")
    for name, wt in (("w_q", w_q), ("w_k", w_k), ("w_v", w_v)):
        _check_tensor(name, wt, 2, "a projection is (d_k, d_model).")
        _check_last("x", x, wt.shape[1], f"{name} (d_model={wt.shape[1]})")
    return attention(x @ w_q.T, x @ w_k.T, x @ w_v.T, scaled=scaled, mask=mask)


@dataclass(frozen=True, eq=False)
class MultiheadWeights:
    """Weights of ``nn.MultiheadAttention``: ``in_proj_weight`` ``(3d, d)`` (rows: ``W_q``, ``W_k``, ``W_v``),
    ``out_proj_weight`` ``(d, d)``, their biases (``(3d,)``, ``(d,)``) or ``None``, and ``heads``."""

    in_proj_weight: torch.Tensor
    out_proj_weight: torch.Tensor
    heads: int
    in_proj_bias: torch.Tensor | None = None
    out_proj_bias: torch.Tensor | None = None

    def __post_init__(self):
        d = _check_tensor("out_proj_weight", self.out_proj_weight, 2).shape[0]
        check_heads(d, self.heads)
        if tuple(_check_tensor("in_proj_weight", self.in_proj_weight, 2).shape) != (3 * d, d):
            raise ValueError(f"in_proj_weight must have shape (3·d, d) = ({3 * d}, {d}), "
                             f"got {tuple(self.in_proj_weight.shape)}.")
        if tuple(self.out_proj_weight.shape) != (d, d):
            raise ValueError(f"out_proj_weight must be square (d, d), got {tuple(self.out_proj_weight.shape)}.")
        for name, size in (("in_proj_bias", 3 * d), ("out_proj_bias", d)):
            b = getattr(self, name)
            if b is not None and tuple(_check_tensor(name, b, 1).shape) != (size,):
                raise ValueError(f"{name} must have shape ({size},), got {tuple(b.shape)}.")

    @property
    def d_model(self) -> int:
        return self.out_proj_weight.shape[0]


def multihead_weights(mha) -> MultiheadWeights:
    """Copy the weights of an ``nn.MultiheadAttention`` whose query, key and value widths are equal."""
    if not isinstance(mha, nn.MultiheadAttention):
        raise ValueError(f"multihead_weights needs an nn.MultiheadAttention, got {type(mha).__name__}.")
    if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
        raise ValueError("copy only a plain self-attention module: kdim = vdim = embed_dim, "
                         "add_bias_kv=False, add_zero_attn=False.")
    copy = lambda t: None if t is None else t.detach().clone()  # noqa: E731
    return MultiheadWeights(copy(mha.in_proj_weight), copy(mha.out_proj.weight), mha.num_heads,
                            copy(mha.in_proj_bias), copy(mha.out_proj.bias))


def multihead_attention(x: torch.Tensor, w: MultiheadWeights, *, mask=None):
    """Self-attention with ``h`` heads on ``x`` ``(batch, n, d)``: project to ``q, k, v`` at once, split each
    into ``h`` heads of ``d/h`` channels, attend per head (scaled), concatenate, project out.
    Returns ``(output, weights)``: ``(batch, n, d)`` and the per-head weights ``(batch, h, n, n)``."""
    if not isinstance(w, MultiheadWeights):
        raise ValueError(f"w must be a MultiheadWeights (see multihead_weights), got {type(w).__name__}.")
    _check_tensor("x", x, 3, "the input layout is (batch, n, d_model).")
    _check_last("x", x, w.d_model, f"the weights (d_model={w.d_model})")
    b, n, d = x.shape
    split = lambda t: t.view(b, n, w.heads, d // w.heads).transpose(1, 2)  # noqa: E731  (b, h, n, d/h)
    q, k, v = _affine(x, w.in_proj_weight, w.in_proj_bias).chunk(3, dim=-1)
    y, weights = attention(split(q), split(k), split(v), mask=mask)
    return _affine(y.transpose(1, 2).reshape(b, n, d), w.out_proj_weight, w.out_proj_bias), weights


# ------------------------------------------------------------------------------------- Transformer block

def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps) · weight + bias`` over the last axis (biased variance, as ``nn.LayerNorm``)."""
    _check_last("x", _check_tensor("x", x), weight.shape[-1], f"the norm weight (d={weight.shape[-1]})")
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


@dataclass(frozen=True, eq=False)
class EncoderWeights:
    """Weights of ``nn.TransformerEncoderLayer``: the attention, the feed-forward ``linear1`` ``(d_ff, d)`` and
    ``linear2`` ``(d, d_ff)`` with biases, two LayerNorms, their ``eps``, ``norm_first`` (pre-norm) and the
    ``activation`` (``"relu"`` or ``"gelu"``)."""

    attn: MultiheadWeights
    linear1_weight: torch.Tensor
    linear1_bias: torch.Tensor
    linear2_weight: torch.Tensor
    linear2_bias: torch.Tensor
    norm1_weight: torch.Tensor
    norm1_bias: torch.Tensor
    norm2_weight: torch.Tensor
    norm2_bias: torch.Tensor
    eps: float = 1e-5
    norm_first: bool = False
    activation: str = "relu"

    def __post_init__(self):
        check_choice("activation", self.activation, {"relu", "gelu"})
        d = self.attn.d_model
        d_ff = _check_tensor("linear1_weight", self.linear1_weight, 2).shape[0]
        if tuple(self.linear1_weight.shape) != (d_ff, d) or tuple(self.linear2_weight.shape) != (d, d_ff):
            raise ValueError(f"linear1_weight must be (d_ff, {d}) and linear2_weight ({d}, d_ff), got "
                             f"{tuple(self.linear1_weight.shape)} and {tuple(self.linear2_weight.shape)}.")
        if not isinstance(self.norm_first, bool):
            raise ValueError(f"norm_first must be True (pre-norm) or False (post-norm), got {self.norm_first!r}.")


def encoder_weights(layer) -> EncoderWeights:
    """Copy the weights of an ``nn.TransformerEncoderLayer`` (``batch_first=True``, ReLU or GELU, with biases)."""
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise ValueError(f"encoder_weights needs an nn.TransformerEncoderLayer, got {type(layer).__name__}.")
    if not layer.self_attn.batch_first:
        raise ValueError("build the layer with batch_first=True: the from-scratch block takes (batch, n, d).")
    acts = {1: "relu", 2: "gelu"}
    if layer.activation_relu_or_gelu not in acts or layer.linear1.bias is None:
        raise ValueError("copy a layer with activation 'relu' or 'gelu' and bias=True.")
    c = lambda t: t.detach().clone()  # noqa: E731
    return EncoderWeights(multihead_weights(layer.self_attn), c(layer.linear1.weight), c(layer.linear1.bias),
                          c(layer.linear2.weight), c(layer.linear2.bias), c(layer.norm1.weight), c(layer.norm1.bias),
                          c(layer.norm2.weight), c(layer.norm2.bias), float(layer.norm1.eps), bool(layer.norm_first),
                          acts[layer.activation_relu_or_gelu])


def encoder_block(x: torch.Tensor, w: EncoderWeights, *, mask=None) -> torch.Tensor:
    """One Transformer encoder block on ``x`` ``(batch, n, d)`` (no dropout):

    post-norm (Vaswani et al.): ``x ← LN₁(x + MHA(x))``, ``x ← LN₂(x + FFN(x))``;
    pre-norm (``norm_first``): ``x ← x + MHA(LN₁(x))``, ``x ← x + FFN(LN₂(x))``;
    ``FFN(x) = W₂ act(W₁ x + b₁) + b₂``.
    """
    if not isinstance(w, EncoderWeights):
        raise ValueError(f"w must be an EncoderWeights (see encoder_weights), got {type(w).__name__}.")
    act = torch.relu if w.activation == "relu" else nn.functional.gelu
    ln1 = lambda t: layer_norm(t, w.norm1_weight, w.norm1_bias, w.eps)  # noqa: E731
    ln2 = lambda t: layer_norm(t, w.norm2_weight, w.norm2_bias, w.eps)  # noqa: E731
    mha = lambda t: multihead_attention(t, w.attn, mask=mask)[0]  # noqa: E731
    ffn = lambda t: _affine(act(_affine(t, w.linear1_weight, w.linear1_bias)), w.linear2_weight, w.linear2_bias)  # noqa: E731
    if w.norm_first:
        x = x + mha(ln1(x))
        return x + ffn(ln2(x))
    x = ln1(x + mha(x))
    return ln2(x + ffn(x))


# ---------------------------------------------------------------------------------------- parameter counts

def conv2d_parameters(c_in: int, c_out: int, kernel_size: int, bias: bool = True) -> int:
    """Parameters of ``nn.Conv2d(c_in, c_out, kernel_size)`` (square kernel): ``k²·c_in·c_out + c_out``.
    The 1-D count ``k·c_in·c_out + c_out`` is :func:`utils.complexity.conv1d_parameters`."""
    k = check_positive_int("kernel_size", kernel_size)
    return conv1d_parameters(c_in, c_out, k * k, bias=bias)   # a k×k window is k² taps of a 1-D kernel


def attention_head_parameters(d_model: int, d_head: int, bias: bool = False) -> int:
    """Parameters of one head's three projections ``W_q, W_k, W_v`` (``d_head × d_model`` each):
    ``3·d_head·d_model`` (``+ 3·d_head`` with biases)."""
    return 3 * linear_parameters(d_model, d_head, bias=bias)


def multihead_attention_parameters(d_model: int, bias: bool = True) -> int:
    """Parameters of ``nn.MultiheadAttention(d_model, heads)`` (any ``heads``): ``4·d² + 4·d`` — the
    ``3d × d`` input projection and the ``d × d`` output projection, with biases."""
    return linear_parameters(d_model, 3 * d_model, bias=bias) + linear_parameters(d_model, d_model, bias=bias)


# --------------------------------------------------------------------------------------- softmax saturation

def softmax_saturation(d_k: int, *, keys: int = 16, queries: int = 512, scaled: bool = True,
                       seed: int = 0) -> dict:
    """How saturated the attention softmax is for random queries and keys of dimension ``d_k``.

    Draws ``queries`` query vectors, each with its own ``keys`` key vectors, every entry i.i.d. N(0, 1)
    (random seed ``seed``), and takes the softmax of the scores ``q·k_j`` (divided by ``√d_k`` when
    ``scaled``). Returns the means over queries of

    * ``"max_probability"``: the largest attention weight (``1/keys`` uniform … 1 one-hot);
    * ``"entropy"``: the weights' entropy in nats (``log keys`` uniform … 0 one-hot);
    * ``"jacobian_norm"``: the Frobenius norm of the softmax Jacobian ``diag(p) - p pᵀ``, which scales
      every gradient that flows back through the scores (→ 0 when the softmax saturates);
    * ``"score_std"``: the standard deviation of the scores (``√d_k`` unscaled, 1 scaled);

    plus ``"d_k"``, ``"keys"`` and ``"scaled"``.
    """
    d_k = check_positive_int("d_k", d_k)
    keys = check_int("keys", keys, minimum=2, hint="a softmax over one key is always 1.")
    queries = check_positive_int("queries", queries)
    if not isinstance(scaled, bool):
        raise ValueError(f"scaled must be True or False, got {scaled!r}.")
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    q = torch.randn(queries, 1, d_k, generator=gen, dtype=torch.float64)
    k = torch.randn(queries, keys, d_k, generator=gen, dtype=torch.float64)
    scores = (q @ k.transpose(1, 2)).squeeze(1)                    # (queries, keys)
    if scaled:
        scores = scores / math.sqrt(d_k)
    p = torch.softmax(scores, dim=-1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    jac = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)   # d p_i / d s_j
    return {"d_k": d_k, "keys": keys, "scaled": scaled,
            "max_probability": float(p.max(-1).values.mean()),
            "entropy": float(entropy.mean()),
            "jacobian_norm": float(torch.linalg.matrix_norm(jac).mean()),
            "score_std": float(scores.std())}
