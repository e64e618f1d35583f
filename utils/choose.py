"""Both axes at once: profile each family on a workload, then choose.

A :class:`Workload` states what the task needs (sequence length ``n``, the longest dependency
distance ``span`` it must connect) and what the deployment allows (a memory budget for the largest
tensor one layer keeps, a budget of sequential steps, a FLOP budget per forward pass).
:func:`profile` computes, for one family, the two axes of the course from the closed forms that the
chapters check against measurements:

* **path**: layers (or recurrent steps) a signal crosses to connect ``span`` positions —
  :func:`utils.receptive.layers_to_connect`, :func:`utils.receptive.dilated_layers_to_connect`,
  :func:`utils.complexity.local_attention_layers`;
* **sequential steps** ``S`` of one forward pass over the ``n`` positions;
* **FLOPs** of one forward pass of the whole stack — :mod:`utils.complexity`;
* **largest tensor**: the biggest ``n``-dependent tensor one layer holds — the ``B·h·n²`` attention
  weights for materialised attention (:func:`utils.complexity.attention_weights_bytes`), the banded scores
  of local attention, ``B·n·d`` activations otherwise (also for FlashAttention-style kernels, which
  never store the ``n × n`` matrix).

:func:`recommend` filters out the families that break a budget and ranks the rest by path length,
then by FLOPs. It is a back-of-the-envelope tool that makes the reasoning explicit, not an oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from utils.complexity import (
    attention_weights_bytes,
    conv1d_flops,
    encoder_layer_flops,
    ffn_flops,
    local_attention_flops,
    local_attention_layers,
    local_attention_scores_numel,
    projection_flops,
    recurrent_flops,
)
from utils.receptive import dilated_layers_to_connect, layers_to_connect
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

FAMILIES = ("rnn", "lstm", "cnn", "dilated cnn", "transformer", "flash transformer", "local attention")


@dataclass(frozen=True)
class Workload:
    """What the task needs and what the deployment allows (``None`` = no budget)."""

    n: int
    span: int
    d_model: int = 512
    heads: int = 8
    d_ff: int | None = None
    batch: int = 1
    layers: int = 6
    kernel_size: int = 3
    radius: int = 128
    bytes_per_element: int = 2
    memory_budget_bytes: float | None = None
    max_sequential_steps: int | None = None
    max_flops: float | None = None

    def __post_init__(self):
        n = check_positive_int("n", self.n)
        check_int("span", self.span, minimum=0)
        if self.span >= n:
            raise ValueError(f"span ({self.span}) must be < n ({n}): the farthest dependency inside a "
                             f"sequence of n positions is n - 1 = {n - 1}.")
        for name in ("d_model", "heads", "batch", "layers", "bytes_per_element"):
            check_positive_int(name, getattr(self, name))
        if self.d_model % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide d_model ({self.d_model}).")
        check_int("kernel_size", self.kernel_size, minimum=2, hint="use kernel_size >= 2.")
        check_int("radius", self.radius, minimum=1, hint="a local window needs radius >= 1.")
        if self.d_ff is not None:
            check_positive_int("d_ff", self.d_ff)
        if self.memory_budget_bytes is not None:
            check_positive_float("memory_budget_bytes", self.memory_budget_bytes, "e.g. 8 * 2**30 for 8 GiB.")
        if self.max_sequential_steps is not None:
            check_positive_int("max_sequential_steps", self.max_sequential_steps)
        if self.max_flops is not None:
            check_positive_float("max_flops", self.max_flops, "e.g. 1e10 for ten GFLOPs per forward pass.")

    @property
    def feed_forward(self) -> int:
        return self.d_ff if self.d_ff is not None else 4 * self.d_model


@dataclass(frozen=True)
class Profile:
    """One family on one workload: the two axes and whether the budgets allow it."""

    family: str
    path: int
    sequential_steps: int
    layers: int
    flops: int
    largest_tensor_bytes: int
    problems: tuple[str, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        return not self.problems


def profile(family: str, w: Workload) -> Profile:
    """The two axes of ``family`` on workload ``w`` (see the module docstring for each quantity)."""
    family = check_choice("family", family, FAMILIES)
    n, d, b, bpe = w.n, w.d_model, w.batch, w.bytes_per_element
    activations = b * n * d * bpe
    if family in ("rnn", "lstm"):
        path, layers, steps = w.span, 1, n
        flops = recurrent_flops(family, n, d, d, b)
        largest = activations
    elif family in ("cnn", "dilated cnn"):
        if family == "cnn":
            layers = max(1, layers_to_connect(w.span, w.kernel_size, causal=True))
        else:
            layers = max(1, dilated_layers_to_connect(w.span, w.kernel_size, growth=2, causal=True))
        path = steps = layers
        flops = conv1d_flops(n, d, d, w.kernel_size, b, layers=layers)
        largest = activations
    elif family in ("transformer", "flash transformer"):
        layers = steps = w.layers
        path = 1
        flops = layers * encoder_layer_flops(n, d, w.heads, w.feed_forward, b)
        largest = attention_weights_bytes(b, w.heads, n, bpe) if family == "transformer" else activations
    else:  # local attention
        path = local_attention_layers(w.span, w.radius)
        layers = steps = max(w.layers, path)
        per_layer = (4 * projection_flops(n, d, d, b) + local_attention_flops(n, d, w.radius, b, heads=w.heads)
                     + ffn_flops(n, d, w.feed_forward, b))
        flops = layers * per_layer
        largest = max(activations, local_attention_scores_numel(n, w.radius, b, w.heads) * bpe)
    problems = []
    if w.memory_budget_bytes is not None and largest > w.memory_budget_bytes:
        problems.append(f"largest tensor {largest / 2**20:.0f} MiB exceeds the memory budget "
                        f"{w.memory_budget_bytes / 2**20:.0f} MiB")
    if w.max_sequential_steps is not None and steps > w.max_sequential_steps:
        problems.append(f"{steps} sequential steps exceed the budget of {w.max_sequential_steps}")
    if w.max_flops is not None and flops > w.max_flops:
        problems.append(f"{flops / 1e9:.1f} GFLOPs per forward pass exceed the budget of {w.max_flops / 1e9:.1f}")
    return Profile(family, path, steps, layers, flops, largest, tuple(problems))


def profiles(w: Workload, families=FAMILIES) -> list[Profile]:
    """:func:`profile` for every family, in the order given."""
    return [profile(f, w) for f in families]


def recommend(w: Workload, families=FAMILIES) -> list[Profile]:
    """Families ranked for ``w``: feasible ones first, then by shortest path, then by fewest FLOPs."""
    return sorted(profiles(w, families), key=lambda p: (not p.feasible, p.path, p.flops))
