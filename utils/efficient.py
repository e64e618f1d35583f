"""Cheaper attention: local (windowed) attention that really skips the far pairs, downsample-then-attend,
and gradient checkpointing.

Three ways to pay less than full attention's ``O(n²)``, each with its price on the other axis:

* **Local attention** (:func:`blocked_local_attention`): query ``j`` attends only to keys with
  ``|j - i| <= r`` (or ``0 <= j - i <= r`` when causal) — the mask of :func:`utils.attention.local_mask`.
  Applying that mask to the full score matrix (``MultiHeadAttention(mask="local")``) gives the right numbers
  but still computes all ``n²`` scores; :func:`blocked_local_attention` computes only ``O(n·r)``
  of them
  by cutting the queries into blocks and giving each block the slice of keys it can see. Price: a
  position at distance ``d`` is reached only after ``⌈d / r⌉`` stacked layers.
* **Downsample, then attend** (:class:`DownsampledAttention`): average-pool the sequence by a stride
  ``s`` and attend over ``n / s`` positions — the attention core costs ``s²`` times less, the
  projections ``s`` times less. Price: the ``s`` positions of a pool share one output (resolution), and
  with local attention on the pooled sequence a distance ``d`` shrinks to about ``d / s``.
* **Gradient checkpointing** (:class:`CheckpointedStack`): keep only the input of each layer during the
  forward pass and recompute the rest during backward — activation memory down, roughly one extra
  forward pass of time up. It changes neither FLOPs of the model's answer nor its path length.

Tensors for the functional forms are ``(batch, heads, n, head_dim)``, as in :mod:`utils.attention`.
FLOPs follow :mod:`utils.complexity` (2 × multiply-accumulates of the matrix products).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from utils._moved import module_getattr as _module_getattr
from utils.attention import local_mask
from utils.blocks import MultiHeadAttention
from utils.complexity import blocked_local_attention_bytes as _blocked_local_attention_bytes
from utils.complexity._local import _geometry
from utils.validate import check_int, check_positive_int

__all__ = [
    "blocked_local_attention", "DownsampledAttention",
    "downsampled_reachability", "layers_needed", "CheckpointedStack", "training_step",
]


# --------------------------------------------------------------------------------------------------
# Local attention, blocked so that only O(n·r) scores are computed
# --------------------------------------------------------------------------------------------------







def blocked_local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, radius: int, *,
                            causal: bool = False, block_size: int | None = None, fraction: float = 0.5,
                            limit_bytes: int | None = None) -> torch.Tensor:
    """Local self-attention that computes only the scores inside the window, block by block.

    Same result as ``naive_attention(q, k, v, local_mask(n, radius, causal))`` (to rounding), but
    the
    queries are cut into ``⌈n / b⌉`` blocks of ``b`` (``block_size``, default
    :func:`~utils.complexity.default_block_size`)
    and block ``t`` is scored only against the ``b + 2r`` keys (``b + r`` when causal) that any of
    its
    queries may see — a strided *view* of the padded keys, so nothing ``n × n`` is ever built. Scores and
    FLOPs are ``O(n·(b + 2r))`` instead of ``O(n²)``: :func:`~utils.complexity.local_attention_flops` gives the
    exact count.

    ``q``, ``k``, ``v``: ``(..., n, head_dim)``, all the same shape. Guarded: a plan
    (:func:`~utils.complexity.blocked_local_attention_bytes`) of 64 MiB or more must fit in ``fraction`` of the free
    memory of ``q``'s device (:func:`utils.measure.guard_large`; smaller calls are not checked, so that
    timing loops do not pay for reading the free memory).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise ValueError(f"{name} must be a tensor of shape (..., n, head_dim), got "
                             f"{getattr(t, 'shape', type(t).__name__)}.")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v must have the same shape (self-attention), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}.")
    *lead, n, dh = q.shape
    b, blocks, keys = _geometry(n, radius, causal, block_size)
    lead_numel = math.prod(lead)
    if lead_numel and dh and q.device.type in ("cpu", "cuda"):   # a meta tensor allocates nothing
        from utils.measure import guard_large

        guard_large(_blocked_local_attention_bytes(n, dh, radius, lead_numel, causal=causal, block_size=block_size,
                                                  bytes_per_element=q.element_size()),
                    q.device, fraction, limit_bytes, what=f"blocked local attention at n={n}, radius={radius}")
    r = radius
    n_pad = blocks * b
    left, right = r, n_pad - n + (0 if causal else r)
    pad = torch.nn.functional.pad
    q_blocks = pad(q, (0, 0, 0, n_pad - n)).reshape(*lead, blocks, b, dh)
    # Key slot c of block t holds original key i = t·b + c - r: a window of `keys` slots, stride b.
    k_win = pad(k, (0, 0, left, right)).unfold(-2, keys, b).transpose(-1, -2)  # (..., blocks, keys, dh)
    v_win = pad(v, (0, 0, left, right)).unfold(-2, keys, b).transpose(-1, -2)
    scores = q_blocks @ k_win.transpose(-1, -2) / math.sqrt(dh)  # (..., blocks, b, keys)

    a = torch.arange(b, device=q.device).view(b, 1)                # query offset inside its block
    c = torch.arange(keys, device=q.device).view(1, keys)          # key slot
    offset = a + r - c                                              # j - i
    band = (offset >= 0) & (offset <= r) if causal else offset.abs() <= r
    key_pos = torch.arange(blocks, device=q.device).view(blocks, 1, 1) * b + c - r
    allowed = band & (key_pos >= 0) & (key_pos < n)                 # (blocks, b, keys)
    # A finite "minus infinity": padded query rows (j >= n) may see no key at all, and -inf would turn
    # their softmax into NaN, which backward would spread into the real keys' gradients.
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    out = weights @ v_win                                           # (..., blocks, b, dh)
    return out.reshape(*lead, n_pad, dh)[..., :n, :]










# --------------------------------------------------------------------------------------------------
# Downsample, then attend
# --------------------------------------------------------------------------------------------------

class DownsampledAttention(nn.Module):
    """Average-pool ``(B, n, d)`` by ``stride`` ``s``, run ``layers`` self-attention layers on the
    ``n / s`` pooled positions, then repeat each pooled output ``s`` times to get back to ``n``.

    ``mask``/``radius``/``heads``/``impl`` are passed to :class:`utils.blocks.MultiHeadAttention`. The
    layers are stacked without residuals, so that every dependency comes from attention alone. ``n``
    must be a multiple of ``stride``.
    """

    def __init__(self, d_model: int, stride: int, *, layers: int = 1, heads: int = 1, mask: str = "none",
                 radius: int | None = None, impl: str = "sdpa"):
        super().__init__()
        self.stride = check_positive_int("stride", stride)
        layers = check_positive_int("layers", layers)
        self.layers = nn.ModuleList(MultiHeadAttention(d_model, heads, mask=mask, radius=radius, impl=impl)
                                    for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, n, d_model), got shape {tuple(x.shape)}.")
        bsz, n, d = x.shape
        s = self.stride
        if n % s:
            raise ValueError(f"n={n} is not a multiple of stride={s}; pad the sequence or pick a divisor of n.")
        z = x.reshape(bsz, n // s, s, d).mean(dim=2)
        for layer in self.layers:
            z = layer(z)
        return z.repeat_interleave(s, dim=1)


def downsampled_reachability(n: int, stride: int, layers: int = 1, radius: int | None = None) -> torch.Tensor:
    """Predicted ``n × n`` dependency matrix of :class:`DownsampledAttention` (same orientation as
    :func:`utils.measure.reachability`: ``[j, i]`` True iff output ``j`` depends on input ``i``).

    Output ``j`` reads pooled position ``⌊j/s⌋``; input ``i`` enters pooled position ``⌊i/s⌋``; ``L``
    full-attention layers connect every pooled pair, ``L`` local layers of radius ``r`` the pairs with
    ``|⌊j/s⌋ − ⌊i/s⌋| <= L·r``. ``radius=None`` means full attention.
    """
    n, s = check_positive_int("n", n), check_positive_int("stride", stride)
    layers = check_positive_int("layers", layers)
    if n % s:
        raise ValueError(f"n={n} is not a multiple of stride={s}.")
    if radius is None:
        return torch.ones(n, n, dtype=torch.bool)
    r = check_int("radius", radius, minimum=0)
    pooled = local_mask(n // s, min(layers * r, n // s), causal=False)
    idx = torch.arange(n) // s
    return pooled[idx][:, idx]


# --------------------------------------------------------------------------------------------------
# Path length measured: how many stacked layers until output j depends on input i
# --------------------------------------------------------------------------------------------------

def layers_needed(make_layer: Callable[[], nn.Module], n: int, d_model: int, max_layers: int, *,
                  seed: int = 0) -> torch.Tensor:
    """Measured: ``[j, i]`` = fewest layers of a stack after which output ``j`` depends on input ``i``,
    ``-1`` if ``max_layers`` are not enough.

    Builds ``max_layers`` layers with ``make_layer()`` (seeded), then measures
    :func:`utils.measure.reachability` of the stacks of their first ``1, 2, …, max_layers`` layers.
    For layers whose outputs always depend on their own position (local attention includes the key
    ``i = j``), reach can only grow with depth; the result is the measured counterpart of
    :func:`utils.graphs.hops_matrix` on the layer's graph.
    """
    from utils.measure import reachability

    if not callable(make_layer):
        raise ValueError("make_layer must be a callable returning a fresh nn.Module, e.g. "
                         "lambda: MultiHeadAttention(8, mask='local', radius=2).")
    n, d_model = check_positive_int("n", n), check_positive_int("d_model", d_model)
    max_layers = check_positive_int("max_layers", max_layers)
    with torch.random.fork_rng(devices=[]):  # seed the layers without touching the caller's random state
        torch.manual_seed(seed)
        stack = [make_layer() for _ in range(max_layers)]
    needed = torch.full((n, n), -1, dtype=torch.int64)
    for depth in range(1, max_layers + 1):
        reach = reachability(nn.Sequential(*stack[:depth]), n, d_model, seed=seed)
        needed[(needed < 0) & reach] = depth
        if bool((needed >= 0).all()):
            break
    return needed


# --------------------------------------------------------------------------------------------------
# Gradient checkpointing
# --------------------------------------------------------------------------------------------------

class CheckpointedStack(nn.Module):
    """Run ``layers`` one after the other; with ``checkpoint=True`` (and autograd on) keep only the
    inputs of ``segments`` segments during the forward pass and recompute each segment's inside during
    backward (:func:`torch.utils.checkpoint.checkpoint_sequential`, non-reentrant).

    ``segments`` defaults to the number of layers (each layer its own segment): the stored activations
    drop from "everything every layer computes" to "one ``(B, n, d)`` tensor per layer", plus the inside
    of the one layer being recomputed. The output and the gradients are the same as without checkpointing.
    """

    def __init__(self, layers: Sequence[nn.Module], *, checkpoint: bool = False, segments: int | None = None):
        super().__init__()
        layers = list(layers)
        if not layers or not all(isinstance(m, nn.Module) for m in layers):
            raise ValueError("layers must be a non-empty sequence of nn.Module.")
        self.layers = nn.Sequential(*layers)
        self.checkpoint = bool(checkpoint)
        self.segments = len(layers) if segments is None else check_positive_int("segments", segments)
        if self.segments > len(layers):
            raise ValueError(f"segments={self.segments} exceeds the {len(layers)} layers; use at most one "
                             "segment per layer.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            return checkpoint_sequential(self.layers, self.segments, x, use_reentrant=False)
        return self.layers(x)


def training_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A no-argument function that runs one forward and backward pass of ``model`` on ``x`` (loss: the
    mean square of the output) — what :func:`utils.measure.peak_memory` and
    :func:`utils.measure.time_call` take.

    The gradients are set to ``None`` before *and after* the pass, so every call starts from the same
    state: otherwise freeing gradients left by an earlier call would lower a peak-memory measurement
    by the size of the gradients, and two models sharing layers would not be measured alike.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}.")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a tensor, got {type(x).__name__}.")

    def step():
        model.zero_grad(set_to_none=True)
        y = model(x)
        (y[0] if isinstance(y, tuple) else y).square().mean().backward()
        model.zero_grad(set_to_none=True)

    return step


__getattr__ = _module_getattr(__name__)  # names moved in 0.2 (utils._moved)
