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
  ``layers`` pre-norm blocks of causal :class:`utils.attention.SelfAttention` and a feed-forward layer,
  each with a residual connection, then a LayerNorm (path length 1 per layer).

:func:`width_for_budget` picks each family's width so that its parameter count is as close as possible to
a target; :func:`matched_models` builds all families at one budget and checks they agree within ±10 %.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from utils.attention import SelfAttention, naive_attention
from utils.conv import ConvStack
from utils.gradients import set_forget_gate_bias
from utils.parameters import count_parameters
from utils.positional import sinusoidal
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

__all__ = [
    "FAMILIES", "RECURRENT", "count_parameters", "make_model", "width_for_budget", "matched_models",
    "RecurrentClassifier", "ConvClassifier", "TransformerClassifier", "cnn_layers_for", "lstm_forget_gates",
]

FAMILIES = ("rnn", "lstm", "gru", "cnn", "transformer")
RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


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
        self.family = check_choice("family", family, RECURRENT)
        self.rnn = RECURRENT[family](d_model, d_model, batch_first=True)

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


class _Block(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, mask="causal")
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class TransformerClassifier(_Classifier):
    """Embedding + sinusoidal PE -> ``layers`` pre-norm causal attention blocks -> LayerNorm -> readout."""

    family = "transformer"

    def __init__(self, vocab_size: int, num_classes: int, d_model: int, layers: int = 1, heads: int = 1,
                 ff_mult: int = 2):
        super().__init__(vocab_size, num_classes, d_model)
        self.layers = check_positive_int("layers", layers)
        self.blocks = nn.ModuleList(_Block(d_model, heads, ff_mult * d_model) for _ in range(layers))
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
    if family in RECURRENT:
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
        return count_parameters(_build(family, vocab_size, num_classes, d_model, n, layers, heads, ff_mult,
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
        got = count_parameters(model)
        if abs(got - param_budget) > tolerance * param_budget:
            raise ValueError(f"{family}: {got} parameters, not within {tolerance:.0%} of {param_budget}.")
        models[family] = model
    return models
