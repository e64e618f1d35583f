"""Both axes at once: profile each family on a workload, with matched blocks and training memory, then choose.

A :class:`Workload` states what the task needs (sequence length ``n``, the longest dependency distance
``span`` it must connect) and what the deployment allows (memory for a training step, sequential steps,
FLOPs per forward pass, and optionally the deepest stack and the longest path you accept).

**Matched blocks.** Every family is profiled as a stack of the same block, :class:`MatchedBlock`:
a pre-norm residual *mixing layer* (an RNN or LSTM layer, one causal convolution, or multi-head
attention — full, FlashAttention-style or local) followed, when ``Workload.ffn`` is true, by the same
pre-norm residual feed-forward block of width ``d_ff``. All families have the same width ``d_model``
and at least ``Workload.layers`` blocks; a family that needs more blocks to connect ``span`` (a
convolution, local attention) gets exactly as many as it needs. :func:`matched_stack` builds the
real stack, so that every number of :func:`profile` can be measured.

For one family, :func:`profile` computes from closed forms that the chapters check against
measurements:

* **path**: what a signal crosses to connect ``span`` positions — recurrent steps for an RNN/LSTM,
  layers otherwise (:func:`utils.receptive.layers_to_connect`,
  :func:`utils.receptive.dilated_layers_to_connect`, :func:`utils.complexity.local_attention_layers`);
* **sequential steps** ``S`` of one forward pass (``layers × n`` for recurrent stacks, as PyTorch's
  kernels run them layer after layer; ``layers`` otherwise);
* **FLOPs** of one forward pass of the whole stack (:mod:`utils.complexity`; elementwise work not
  counted, as :func:`utils.measure.count_flops`);
* **parameters** of the stack, exactly as ``numel`` counts them;
* **training memory** of one step: weights + gradients + optimizer state
  (:func:`utils.complexity.training_state_bytes_per_parameter`) + the activations autograd saves for the backward pass
  (:func:`saved_activation_elements`, per block) + the backward pass's working set (one more tensor the
  size of the largest; two for materialised attention, whose weights and scores both get an ``n × n``
  gradient) — the quantity that breaks training (Part II); with ``training=False``, the
  weights and one block's activations;
* **largest tensor** of one layer (the ``B·h·n²`` attention weights for materialised attention).

:func:`recommend` ranks in the order the decision is made: the families that **connect** the span
first, then those that **fit memory**, then those that **fit the latency budget** (sequential steps
and FLOPs), and among equals the **cheapest** in FLOPs. It is a back-of-the-envelope tool that makes
the reasoning explicit, not an oracle: the last word belongs to a trained baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from utils.complexity import (
    attention_weights_bytes,
    conv1d_flops,
    conv1d_parameters,
    ffn_flops,
    linear_parameters,
    local_attention_flops,
    local_attention_layers,
    local_attention_scores_numel,
    multihead_attention_flops,
    projection_flops,
    recurrent_flops,
    recurrent_parameters,
    training_state_bytes_per_parameter,  # the canonical closed form; re-exported here under its old name
)
from utils.receptive import dilated_layers_to_connect, doubling_dilations, layers_to_connect
from utils.validate import check_choice, check_heads, check_int, check_positive_float, check_positive_int

FAMILIES = ("rnn", "lstm", "cnn", "dilated cnn", "transformer", "flash transformer", "local attention")
OPTIMIZERS = ("adam", "sgd")

# Elements autograd saves per block for the backward pass, in units of B·n·d (see saved_activation_elements):
# the mixing layer's own, counted with saved-tensor hooks on MatchedBlock in PyTorch 2.13 (CPU kernels).
_MIXER_SAVED = {"rnn": 3, "lstm": 19, "cnn": 2, "dilated cnn": 2, "transformer": 6, "flash transformer": 6,
                "local attention": 6}


@dataclass(frozen=True)
class Workload:
    """What the task needs and what the deployment allows (``None`` = no budget).

    ``layers`` is the *minimum* depth of every stack (the depth the task needs for its own sake); a
    family that needs more blocks to connect ``span`` gets more. ``ffn``: every block ends with a
    feed-forward block of width ``d_ff`` (default ``4 · d_model``). ``training``: the memory budget is
    for a training step (weights, gradients, ``optimizer`` state, saved activations) rather than for
    inference. ``max_layers`` and ``max_path`` are optional limits on what counts as connecting the
    span: the deepest stack you will train, and the longest path (steps or layers) you trust a gradient
    to cross (Part I measured how fast it decays).
    """

    n: int
    span: int
    d_model: int = 512
    heads: int = 8
    d_ff: int | None = None
    ffn: bool = True
    batch: int = 1
    layers: int = 6
    kernel_size: int = 3
    radius: int = 128
    bytes_per_element: int = 2
    training: bool = True
    optimizer: str = "adam"
    memory_budget_bytes: float | None = None
    max_sequential_steps: int | None = None
    max_flops: float | None = None
    max_layers: int | None = None
    max_path: int | None = None

    def __post_init__(self):
        n = check_positive_int("n", self.n)
        check_int("span", self.span, minimum=0)
        if self.span >= n:
            raise ValueError(f"span ({self.span}) must be < n ({n}): the farthest dependency inside a "
                             f"sequence of n positions is n - 1 = {n - 1}.")
        for name in ("batch", "layers"):
            check_positive_int(name, getattr(self, name))
        check_heads(self.d_model, self.heads)
        if self.bytes_per_element not in (2, 4):
            raise ValueError(f"bytes_per_element must be 2 (FP16/BF16 mixed precision) or 4 (FP32), "
                             f"got {self.bytes_per_element!r}.")
        check_int("kernel_size", self.kernel_size, minimum=2, hint="use kernel_size >= 2.")
        check_int("radius", self.radius, minimum=1, hint="a local window needs radius >= 1.")
        for name in ("ffn", "training"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.d_ff is not None:
            check_positive_int("d_ff", self.d_ff)
        if self.memory_budget_bytes is not None:
            check_positive_float("memory_budget_bytes", self.memory_budget_bytes, "e.g. 8 * 2**30 for 8 GiB.")
        for name in ("max_sequential_steps", "max_layers", "max_path"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if self.max_flops is not None:
            check_positive_float("max_flops", self.max_flops, "e.g. 1e10 for ten GFLOPs per forward pass.")

    @property
    def feed_forward(self) -> int:
        """The feed-forward width ``d_ff`` (``4 · d_model`` unless given)."""
        return self.d_ff if self.d_ff is not None else 4 * self.d_model


@dataclass(frozen=True)
class Profile:
    """One family on one workload: the two axes, and which budgets it breaks (``problems``)."""

    family: str
    path: int
    sequential_steps: int
    layers: int
    flops: int
    parameters: int
    memory_bytes: int
    largest_tensor_bytes: int
    connects: bool = True
    fits_memory: bool = True
    fits_latency: bool = True
    problems: tuple[str, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        """Connects the span and fits every budget."""
        return not self.problems


class _Recurrent(nn.Module):
    def __init__(self, family: str, d_model: int):
        super().__init__()
        self.rnn = (nn.LSTM if family == "lstm" else nn.RNN)(d_model, d_model, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


class _CausalConv(nn.Module):
    def __init__(self, d_model: int, kernel_size: int, dilation: int):
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, dilation=dilation)

    def forward(self, x):
        return self.conv(nn.functional.pad(x.transpose(1, 2), (self.pad, 0))).transpose(1, 2)


class _LocalAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, radius: int):
        super().__init__()
        self.heads, self.radius = heads, check_int("radius", radius, minimum=1)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x):
        from utils.efficient import blocked_local_attention

        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = blocked_local_attention(q, k, v, self.radius)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class MatchedBlock(nn.Module):
    """One block of any family: ``x + mixer(norm(x))``, then ``x + ffn(norm(x))`` when ``ffn`` is true.

    The mixer is ``family``'s mixing layer of width ``d_model``: one ``nn.RNN``/``nn.LSTM`` layer, one
    causal ``nn.Conv1d`` (``kernel_size``, ``dilation``), or :class:`utils.blocks.MultiHeadAttention`
    (``"transformer"``: naive, the ``n × n`` weights materialised; ``"flash transformer"``: SDPA), or
    for ``"local attention"`` the same projections around :func:`utils.efficient.blocked_local_attention`
    with a window of ``radius`` (only the scores inside the window are computed). The feed-forward block
    is ``Linear(d, d_ff) → GELU → Linear(d_ff, d)``.
    """

    def __init__(self, family: str, d_model: int, *, heads: int = 1, d_ff: int | None = None, ffn: bool = True,
                 kernel_size: int = 3, dilation: int = 1, radius: int = 1):
        super().__init__()
        from utils.blocks import MultiHeadAttention  # utils.blocks imports utils.measure: imported on use

        family = check_choice("family", family, FAMILIES)
        d_model, heads = check_heads(d_model, heads)
        self.family = family
        self.norm1 = nn.LayerNorm(d_model)
        if family in ("rnn", "lstm"):
            self.mixer = _Recurrent(family, d_model)
        elif family in ("cnn", "dilated cnn"):
            self.mixer = _CausalConv(d_model, check_int("kernel_size", kernel_size, minimum=2),
                                     check_positive_int("dilation", dilation))
        elif family == "local attention":
            self.mixer = _LocalAttention(d_model, heads, radius)
        else:
            self.mixer = MultiHeadAttention(d_model, heads, impl="naive" if family == "transformer" else "sdpa")
        d_ff = 4 * d_model if d_ff is None else check_positive_int("d_ff", d_ff)
        self.ffn = (nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
                    if ffn else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x if self.ffn is None else x + self.ffn(x)


def _depth(family: str, w: Workload) -> tuple[int, int]:
    """(blocks in the stack, path length for distance ``w.span``)."""
    if family in ("rnn", "lstm"):
        return w.layers, w.span
    if family == "cnn":
        path = max(1, layers_to_connect(w.span, w.kernel_size, causal=True))
    elif family == "dilated cnn":
        path = max(1, dilated_layers_to_connect(w.span, w.kernel_size, growth=2, causal=True))
    elif family == "local attention":
        path = local_attention_layers(w.span, w.radius)
    else:
        path = 1
    return max(w.layers, path), path


def matched_stack(family: str, w: Workload) -> nn.Sequential:
    """The real stack :func:`profile` describes: ``profile(family, w).layers`` :class:`MatchedBlock` s
    (doubling dilations ``1, 2, 4, …`` for ``"dilated cnn"``), on ``(batch, n, d_model)`` inputs."""
    family = check_choice("family", family, FAMILIES)
    layers, _ = _depth(family, w)
    dilations = doubling_dilations(layers) if family == "dilated cnn" else [1] * layers
    return nn.Sequential(*[MatchedBlock(family, w.d_model, heads=w.heads, d_ff=w.feed_forward, ffn=w.ffn,
                                        kernel_size=w.kernel_size, dilation=dil, radius=w.radius)
                           for dil in dilations])


def block_parameters(family: str, d_model: int, *, d_ff: int | None = None, ffn: bool = True,
                     kernel_size: int = 3) -> int:
    """Parameters of one :class:`MatchedBlock` (equal to the sum of its tensors' ``numel``)."""
    family = check_choice("family", family, FAMILIES)
    d = check_positive_int("d_model", d_model)
    d_ff = 4 * d if d_ff is None else check_positive_int("d_ff", d_ff)
    norm = 2 * d
    if family in ("rnn", "lstm"):
        mixer = recurrent_parameters(family, d, d)
    elif family in ("cnn", "dilated cnn"):
        mixer = conv1d_parameters(d, d, kernel_size)
    else:
        mixer = linear_parameters(d, 3 * d) + linear_parameters(d, d)
    feed = norm + linear_parameters(d, d_ff) + linear_parameters(d_ff, d) if ffn else 0
    return norm + mixer + feed


def block_flops(family: str, w: Workload) -> int:
    """Forward FLOPs of one :class:`MatchedBlock` on ``w`` (matrix products only, as ``count_flops``)."""
    family = check_choice("family", family, FAMILIES)
    n, d, b = w.n, w.d_model, w.batch
    if family in ("rnn", "lstm"):
        mixer = recurrent_flops(family, n, d, d, b)
    elif family in ("cnn", "dilated cnn"):
        mixer = conv1d_flops(n, d, d, w.kernel_size, b)
    elif family == "local attention":
        mixer = 4 * projection_flops(n, d, d, b) + local_attention_flops(n, d, w.radius, b, heads=w.heads)
    else:
        mixer = multihead_attention_flops(n, d, b, heads=w.heads)
    return mixer + (ffn_flops(n, d, w.feed_forward, b) if w.ffn else 0)


def saved_activation_elements(family: str, w: Workload) -> int:
    """Elements autograd saves for the backward pass of one :class:`MatchedBlock` on ``w``.

    Per block, in units of ``B·n·d``: the block's input (its layer norm keeps it) and the mixer's
    own (RNN 2: the normalised input and the hidden states; LSTM 18: PyTorch's CPU kernel keeps its
    gates, cells and workspace; convolution 1: the padded input; attention 5: the normalised input,
    Q, K, V and the heads' output), plus ``2·B·n`` for each
    layer norm's statistics; ``B·h·n²`` attention weights for materialised attention, ``B·h·n`` softmax
    statistics for a FlashAttention-style kernel, the banded weights and the keys and values padded by
    ``r`` on each side (``2·B·(n + 2r)·d``) for local attention; and, with the
    feed-forward block, ``2·B·n·d + 2·B·n·d_ff`` (its normalised input, the hidden layer before and
    after the activation, its input's statistics). The coefficients were counted with saved-tensor
    hooks on these blocks; :func:`utils.measure.saved_activation_bytes` measures them, and the chapter
    checks the total against the measured peak of a training step.
    """
    family = check_choice("family", family, FAMILIES)
    b, n, d, h = w.batch, w.n, w.d_model, w.heads
    elements = _MIXER_SAVED[family] * b * n * d + 2 * b * n
    if family == "transformer":
        elements += b * h * n * n
    elif family == "flash transformer":
        elements += b * h * n
    elif family == "local attention":  # the windowed weights, and the keys and values padded by r each side
        elements += local_attention_scores_numel(n, w.radius, b, h) + 2 * b * (n + 2 * w.radius) * d
    if w.ffn:
        elements += 2 * b * n * d + 2 * b * n * w.feed_forward + 2 * b * n
    return elements


def _largest_tensor(family: str, w: Workload) -> int:
    b, n, d, bpe = w.batch, w.n, w.d_model, w.bytes_per_element
    activations = b * n * d * bpe
    if family == "transformer":
        return max(activations, attention_weights_bytes(b, w.heads, n, bpe))
    if family == "local attention":
        return max(activations, local_attention_scores_numel(n, w.radius, b, w.heads) * bpe)
    return max(activations, b * n * w.feed_forward * bpe) if w.ffn else activations


def profile(family: str, w: Workload) -> Profile:
    """The two axes of ``family`` on workload ``w`` (see the module docstring for each quantity)."""
    family = check_choice("family", family, FAMILIES)
    layers, path = _depth(family, w)
    steps = layers * w.n if family in ("rnn", "lstm") else layers
    flops = layers * block_flops(family, w)
    params = layers * block_parameters(family, w.d_model, d_ff=w.feed_forward, ffn=w.ffn,
                                       kernel_size=w.kernel_size)
    bpe = w.bytes_per_element
    largest = _largest_tensor(family, w)
    if w.training:  # + the backward pass's working set: the gradient of the largest tensor (materialised
        # attention: the gradients of its weights and of its scores, both n × n, live at once)
        working = 2 * largest if family == "transformer" else largest
        memory = (params * training_state_bytes_per_parameter(bpe, w.optimizer)
                  + layers * saved_activation_elements(family, w) * bpe + working)
    else:  # inference: the weights and one block's working set
        memory = params * bpe + saved_activation_elements(family, w) * bpe
    connect, fit_memory, fit_latency = [], [], []
    if w.max_layers is not None and layers > w.max_layers:
        connect.append(f"needs {layers} layers to connect distance {w.span}, more than max_layers={w.max_layers}")
    if w.max_path is not None and path > w.max_path:
        connect.append(f"its path for distance {w.span} is {path}, longer than max_path={w.max_path}")
    if w.memory_budget_bytes is not None and memory > w.memory_budget_bytes:
        what = "a training step" if w.training else "inference"
        fit_memory.append(f"{what} needs {memory / 2**20:,.0f} MiB, over the memory budget of "
                          f"{w.memory_budget_bytes / 2**20:,.0f} MiB")
    if w.max_sequential_steps is not None and steps > w.max_sequential_steps:
        fit_latency.append(f"{steps:,} sequential steps exceed the budget of {w.max_sequential_steps:,}")
    if w.max_flops is not None and flops > w.max_flops:
        fit_latency.append(f"{flops / 1e9:,.1f} GFLOPs per forward pass exceed the budget of "
                           f"{w.max_flops / 1e9:,.1f}")
    return Profile(family, path, steps, layers, flops, params, memory, largest,
                   not connect, not fit_memory, not fit_latency, tuple(connect + fit_memory + fit_latency))


def profiles(w: Workload, families=FAMILIES) -> list[Profile]:
    """:func:`profile` for every family, in the order given."""
    return [profile(f, w) for f in families]


def recommend(w: Workload, families=FAMILIES) -> list[Profile]:
    """Families ranked for ``w``, in the order the decision is made: those that connect the span, then
    those that fit memory, then those that fit the latency budget (steps and FLOPs); among equals, the
    fewest FLOPs first. The first entry is the one to try first when it is :attr:`Profile.feasible`."""
    return sorted(profiles(w, families), key=lambda p: (not p.connects, not p.fits_memory, not p.fits_latency,
                                                        p.flops))
