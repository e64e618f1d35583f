"""Token mixers that came after the four families: strided sparse attention, linear attention and a
diagonal linear recurrence (a state-space scan), each written from scratch in a few lines, with the
closed forms that place them on the course's two axes.

* **Strided sparse attention** (Child et al. 2019): causal query ``j`` attends to its ``l`` most recent
  keys (``0 <= j - i < l``) and to every ``l``-th key before them (``(j - i) % l == 0``).
  :func:`strided_attention` gathers only those keys — ``l + (n-1)//l`` slots per query — so its score
  count and FLOPs grow like ``n·(l + n/l)``, ``n^1.5`` with ``l ≈ √n``; any pair is two hops apart.
* **Linear attention** (Katharopoulos et al. 2020): replace ``softmax(q·k)`` by ``φ(q)·φ(k)`` with
  ``φ(x) = elu(x) + 1``. Then ``Σ_i φ(q_j)·φ(k_i) v_i = φ(q_j) · (Σ_i φ(k_i) v_iᵀ)``: the sum over keys
  is a ``d_k × (d_v + 1)`` matrix (the ``+ 1`` column carries the normaliser), computed once for the
  whole sequence (:func:`linear_attention`), or updated one position at a time, a recurrent form with a
  state of fixed size (:func:`recurrent_linear_attention`), or by chunks (:func:`chunked_linear_attention`).
  The causal quadratic form (:func:`causal_linear_attention`) is the same function computed like attention.
* **A diagonal linear recurrence** ``h_t = a_t ⊙ h_{t-1} + u_t`` (the core of S4D-, Mamba- and
  RWKV-style layers, with ``u_t = b ⊙ x_t``): :func:`sequential_scan` takes ``n`` dependent steps,
  :func:`parallel_scan` (Hillis–Steele) ``⌈log₂ n⌉``, for more element-wise work
  (:func:`scan_steps`, :func:`scan_multiplies`; measured with :func:`op_tally`).

:class:`MixerLayer` wraps the attention cores in the usual projections, :class:`DiagonalSSM` the scan;
:func:`mask_graph` and :func:`stack_graphs` build the computation graphs of :mod:`utils.graphs` for these
patterns and for hybrids. FLOPs follow :mod:`utils.complexity` (2 × the multiply-accumulates of the matrix
products, what ``FlopCounterMode`` counts); element-wise work is not in them and is counted separately.
Tensors of the functional forms are ``(..., n, head_dim)``, as in :mod:`utils.attention`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from utils.attention import local_mask, naive_attention
from utils.complexity import attention_flops, local_attention_flops, projection_flops
from utils.efficient import blocked_local_attention
from utils.graphs import SequenceGraph
from utils.validate import check_choice, check_heads, check_int, check_positive_int

__all__ = [
    "strided_mask", "strided_offsets", "strided_pairs", "strided_attention", "strided_attention_flops",
    "elu_feature_map", "linear_attention", "causal_linear_attention", "recurrent_linear_attention",
    "chunked_linear_attention", "LINEAR_FORMS", "linear_attention_flops", "linear_attention_state_bytes",
    "linear_attention_steps",
    "sequential_scan", "parallel_scan", "SCAN_FORMS", "scan_steps", "scan_multiplies", "OpCount", "op_tally",
    "MIXER_CORES", "MixerLayer", "mixer_layer_flops", "DiagonalSSM", "mask_graph", "stack_graphs",
]


def _check_qkv(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise ValueError(f"{name} must be a tensor of shape (..., n, head_dim), got "
                             f"{getattr(t, 'shape', type(t).__name__)}.")
    if q.shape != k.shape or q.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"self-attention needs q and k of one shape and v of the same length; got q "
                         f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}.")


# ------------------------------------------------------------------------------------------------
# Strided sparse attention (Child et al. 2019)
# ------------------------------------------------------------------------------------------------

def strided_mask(n: int, stride: int, device=None) -> torch.Tensor:
    """``n × n`` boolean mask of causal strided attention: ``[j, i]`` True iff ``0 <= j - i < stride``
    (the ``stride`` most recent keys) or ``j - i`` is a non-negative multiple of ``stride``."""
    n = check_positive_int("n", n)
    stride = check_positive_int("stride", stride, hint="stride l is the local window and the step between far keys.")
    offset = torch.arange(n, device=device).unsqueeze(1) - torch.arange(n, device=device).unsqueeze(0)
    return (offset >= 0) & ((offset < stride) | (offset % stride == 0))


def strided_offsets(n: int, stride: int) -> list[int]:
    """The offsets ``j - i`` a query may look back: ``0 … l-1`` and ``l, 2l, … ≤ n-1`` — ``l + (n-1)//l``
    key slots per query (fewer are valid near the start)."""
    n = check_positive_int("n", n)
    stride = check_positive_int("stride", stride)
    local = list(range(min(stride, n)))
    return local + list(range(stride, n, stride)) if stride < n else local


def strided_pairs(n: int, stride: int) -> int:
    """How many (query, key) pairs :func:`strided_mask` allows: ``Σ_j min(j + 1, l) + ⌊j / l⌋``.

    Closed form: ``l(l+1)/2 + (n - l)·l`` local pairs (``n(n+1)/2`` while ``n <= l``) plus
    ``l·q(q-1)/2 + r·q`` far ones, with ``q, r = divmod(n, l)``."""
    n = check_positive_int("n", n)
    l_ = check_positive_int("stride", stride)
    local = n * (n + 1) // 2 if n <= l_ else l_ * (l_ + 1) // 2 + (n - l_) * l_
    q, r = divmod(n, l_)
    return local + l_ * q * (q - 1) // 2 + r * q


def strided_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, stride: int) -> torch.Tensor:
    """Causal strided attention that scores only the keys of :func:`strided_offsets`.

    Same result as ``naive_attention(q, k, v, strided_mask(n, stride))`` (to rounding). Each query gathers
    its ``K = l + (n-1)//l`` key and value slots (slots before position 0 are masked), so scores, FLOPs
    (:func:`strided_attention_flops`) and the gathered copies grow like ``n·K``, never ``n²``.
    """
    _check_qkv(q, k, v)
    n = q.shape[-2]
    offsets = torch.tensor(strided_offsets(n, stride), device=q.device)
    idx = torch.arange(n, device=q.device).unsqueeze(1) - offsets          # (n, K): key of each slot
    valid = idx >= 0
    idx = idx.clamp(min=0)
    k_g, v_g = k[..., idx, :], v[..., idx, :]                               # (..., n, K, head_dim)
    scores = (q.unsqueeze(-2) @ k_g.transpose(-1, -2)).squeeze(-2) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~valid, float("-inf")).softmax(dim=-1)     # (..., n, K)
    return (weights.unsqueeze(-2) @ v_g).squeeze(-2)


def strided_attention_flops(n: int, head_dim: int, stride: int, batch: int = 1, heads: int = 1) -> int:
    """Exact FLOPs of :func:`strided_attention`: ``4 · B · h · n · K · head_dim`` with ``K = l + (n-1)//l``
    (every gathered slot is scored and mixed, the masked ones too). ``l ≈ √n`` gives ``≈ 8·B·h·n^1.5·head_dim``."""
    n = check_positive_int("n", n)
    head_dim = check_positive_int("head_dim", head_dim)
    batch, heads = check_positive_int("batch", batch), check_positive_int("heads", heads)
    return 4 * batch * heads * n * len(strided_offsets(n, stride)) * head_dim


# ------------------------------------------------------------------------------------------------
# Linear attention (Katharopoulos et al. 2020)
# ------------------------------------------------------------------------------------------------

def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``φ(x) = elu(x) + 1``: positive, so that every weight ``φ(q)·φ(k)`` is positive, as after a softmax."""
    return F.elu(x) + 1


def _features(q, k, v):
    _check_qkv(q, k, v)
    ones = v.new_ones(*v.shape[:-1], 1)
    return elu_feature_map(q), elu_feature_map(k), torch.cat([v, ones], dim=-1)   # v1 = [v, 1]


def _normalise(out: torch.Tensor) -> torch.Tensor:
    return out[..., :-1] / out[..., -1:]          # numerator / Σ φ(q)·φ(k), the last column


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal linear attention: ``φ(Q) · (φ(K)ᵀ [V, 1])``, normalised. Two products of
    ``2·n·d_k·(d_v + 1)`` FLOPs each: linear in ``n``, no ``n × n`` tensor."""
    fq, fk, v1 = _features(q, k, v)
    return _normalise(fq @ (fk.transpose(-1, -2) @ v1))


def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal linear attention computed like attention: ``(φ(Q) φ(K)ᵀ ⊙ M) [V, 1]``, normalised, ``M``
    the causal mask. All positions at once (one step), but an ``n × n`` matrix and ``n²`` FLOPs."""
    fq, fk, v1 = _features(q, k, v)
    return _normalise((fq @ fk.transpose(-1, -2)).tril() @ v1)


def recurrent_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor | None = None):
    """Causal linear attention as a recurrence: ``S_t = S_{t-1} + φ(k_t) [v_t, 1]ᵀ``, ``y_t = φ(q_t) S_t``.

    Returns ``(out, state)``; the state ``S`` is ``(..., d_k, d_v + 1)`` whatever ``n`` is (pass it back to
    continue a stream). ``n`` dependent steps of two small products each.
    """
    fq, fk, v1 = _features(q, k, v)
    *lead, n, dk = fq.shape
    s = fq.new_zeros(*lead, dk, v1.shape[-1]) if state is None else state
    outs = []
    for t in range(n):
        s = s + fk[..., t, :, None] @ v1[..., t, None, :]       # outer product: the state update
        outs.append(fq[..., t, None, :] @ s)                    # read the state with the query
    return _normalise(torch.cat(outs, dim=-2)), s


def chunked_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """Causal linear attention by chunks of ``c`` positions: the quadratic form inside a chunk, the
    recurrent state between chunks. ``⌈n / c⌉`` dependent steps; ``c = n`` is the quadratic form plus a
    state, ``c = 1`` the recurrence."""
    fq, fk, v1 = _features(q, k, v)
    chunk = check_positive_int("chunk", chunk, hint="chunk is the number of positions computed together.")
    *lead, n, dk = fq.shape
    s = fq.new_zeros(*lead, dk, v1.shape[-1])
    outs = []
    for start in range(0, n, chunk):
        qc, kc, vc = (t[..., start:start + chunk, :] for t in (fq, fk, v1))
        outs.append((qc @ kc.transpose(-1, -2)).tril() @ vc + qc @ s)    # within the chunk + all before it
        s = s + kc.transpose(-1, -2) @ vc
    return _normalise(torch.cat(outs, dim=-2))


#: The four ways of computing linear attention, by name.
LINEAR_FORMS = ("parallel", "causal", "recurrent", "chunked")


def _chunk_sizes(n: int, form: str, chunk) -> list[int]:
    if form != "chunked":
        if chunk is not None:
            raise ValueError(f"chunk belongs to form='chunked' only, got chunk={chunk!r} with form={form!r}.")
        return []
    chunk = check_positive_int("chunk", chunk, hint="form='chunked' needs chunk, e.g. chunk=64.")
    return [min(chunk, n - s) for s in range(0, n, chunk)]


def linear_attention_flops(n: int, head_dim: int, batch: int = 1, heads: int = 1, *, form: str = "parallel",
                           chunk: int | None = None) -> int:
    """Exact FLOPs of the four linear-attention forms of this module (``d_v = d_k = head_dim``, per head
    and batch element, times ``B·h``):

    * ``"parallel"`` (:func:`linear_attention`) and ``"recurrent"``: ``4·n·d·(d + 1)`` — linear in ``n``;
    * ``"causal"`` (quadratic form): ``2·n²·(2d + 1)``;
    * ``"chunked"``: ``Σ_chunks 2·c²·(2d + 1) + 4·n·d·(d + 1)``.
    """
    n = check_positive_int("n", n)
    d = check_positive_int("head_dim", head_dim)
    lead = check_positive_int("batch", batch) * check_positive_int("heads", heads)
    check_choice("form", form, LINEAR_FORMS)
    sizes = _chunk_sizes(n, form, chunk)
    if form in ("parallel", "recurrent"):
        per = 4 * n * d * (d + 1)
    elif form == "causal":
        per = 2 * n * n * (2 * d + 1)
    else:
        per = sum(2 * c * c * (2 * d + 1) for c in sizes) + 4 * n * d * (d + 1)
    return lead * per


def linear_attention_steps(n: int, form: str = "parallel", chunk: int | None = None) -> int:
    """Dependent steps of one layer: 1 for the parallel and causal forms, ``n`` for the recurrence,
    ``⌈n / c⌉`` by chunks."""
    n = check_positive_int("n", n)
    check_choice("form", form, LINEAR_FORMS)
    sizes = _chunk_sizes(n, form, chunk)
    return {"parallel": 1, "causal": 1, "recurrent": n}.get(form, len(sizes))


def linear_attention_state_bytes(batch: int, heads: int, head_dim: int, bytes_per_element: int = 2) -> int:
    """Bytes of the recurrent state ``S``: ``B · h · d · (d + 1)`` elements — no ``n`` (a KV cache holds
    ``2 · B · h · n · d``)."""
    batch, heads = check_positive_int("batch", batch), check_positive_int("heads", heads)
    d = check_positive_int("head_dim", head_dim)
    return batch * heads * d * (d + 1) * check_positive_int("bytes_per_element", bytes_per_element)


# ------------------------------------------------------------------------------------------------
# A diagonal linear recurrence, scanned sequentially or in parallel
# ------------------------------------------------------------------------------------------------

def _check_scan(a, u):
    if not isinstance(u, torch.Tensor) or u.dim() < 2:
        raise ValueError(f"u must be a tensor of shape (..., n, d), got {getattr(u, 'shape', type(u).__name__)}.")
    if not isinstance(a, torch.Tensor):
        raise ValueError(f"a must be a tensor that broadcasts to u's shape {tuple(u.shape)}, got {type(a).__name__}.")
    try:
        return a.expand_as(u)
    except RuntimeError:
        raise ValueError(f"a of shape {tuple(a.shape)} does not broadcast to u's shape {tuple(u.shape)}; give one "
                         "decay per channel (d,) or per position and channel (..., n, d).") from None


def sequential_scan(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``h_t = a_t ⊙ h_{t-1} + u_t`` from ``h_{-1} = 0``, one position after the other: ``n`` dependent
    steps of one multiply-add per channel. ``u``: ``(..., n, d)``; ``a`` broadcasts to it."""
    a = _check_scan(a, u)
    h = torch.zeros_like(u[..., 0, :])
    states = []
    for t in range(u.shape[-2]):
        h = torch.addcmul(u[..., t, :], a[..., t, :], h)
        states.append(h)
    return torch.stack(states, dim=-2)


def parallel_scan(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The same states as :func:`sequential_scan` in ``⌈log₂ n⌉`` rounds (Hillis and Steele 1986).

    Each position holds a pair ``(A, U)``: "multiply what came before by ``A``, then add ``U``". Round
    ``s = 1, 2, 4, …`` composes every position ``t >= s`` with position ``t - s``:
    ``(A_t A_{t-s}, A_t U_{t-s} + U_t)``. After the round with ``s >= n/2`` each ``U_t`` covers the whole
    prefix, ``U_t = h_t``. Every round is one vectorised step over all positions; the work is about
    ``n log₂ n`` instead of ``n``.
    """
    a = _check_scan(a, u)
    n, s = u.shape[-2], 1
    while s < n:
        u = torch.cat([u[..., :s, :], torch.addcmul(u[..., s:, :], a[..., s:, :], u[..., :-s, :])], dim=-2)
        a = torch.cat([a[..., :s, :], a[..., s:, :] * a[..., :-s, :]], dim=-2)
        s *= 2
    return u


#: The two ways of computing the scan.
SCAN_FORMS = ("sequential", "parallel")


def scan_steps(n: int, form: str = "parallel") -> int:
    """Dependent steps of a scan over ``n`` positions: ``n`` sequentially, ``⌈log₂ n⌉`` in parallel."""
    n = check_positive_int("n", n)
    check_choice("form", form, SCAN_FORMS)
    return n if form == "sequential" else (n - 1).bit_length()


def _offsets(n: int) -> list[int]:
    return [1 << r for r in range(scan_steps(n, "parallel"))]


def scan_multiplies(n: int, d: int, form: str = "parallel") -> int:
    """Element-wise multiplications of a scan over ``n`` positions and ``d`` channels: ``n·d``
    sequentially; ``2·d·Σ_s (n - s)`` in parallel (``s = 1, 2, 4, … < n``; one for ``U``, one for ``A``),
    which is ``2·d·(n·R - 2^R + 1)`` with ``R = ⌈log₂ n⌉``."""
    n, d = check_positive_int("n", n), check_positive_int("d", d)
    check_choice("form", form, SCAN_FORMS)
    if form == "sequential":
        return n * d
    return 2 * d * sum(n - s for s in _offsets(n))


class OpCount(NamedTuple):
    """How often one ATen operator ran (``calls``) and how many output elements it produced in all."""

    calls: int
    elements: int


class _Tally(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts: dict[str, list[int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        entry = self.counts.setdefault(func.overloadpacket.__name__, [0, 0])
        entry[0] += 1
        entry[1] += out.numel() if isinstance(out, torch.Tensor) else 0
        return out


def op_tally(fn, *inputs) -> dict[str, OpCount]:
    """Run ``fn(*inputs)`` and count every ATen operator it dispatches: ``{name: OpCount(calls, elements)}``
    (e.g. ``"addcmul"``, ``"mul"``, ``"bmm"``). A measurement of element-wise work and of how many
    dependent kernel calls a loop makes, which ``FlopCounterMode`` does not see."""
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {type(fn).__name__}.")
    tally = _Tally()
    with tally:
        fn(*inputs)
    return {name: OpCount(*c) for name, c in tally.counts.items()}


# ------------------------------------------------------------------------------------------------
# Layers: projections around a mixing core; a diagonal state-space layer
# ------------------------------------------------------------------------------------------------

#: The causal mixing cores :class:`MixerLayer` offers.
MIXER_CORES = ("full", "local", "strided", "linear")


def _core_option(core: str, radius, stride, chunk):
    needed = {"local": ("radius", radius), "strided": ("stride", stride), "linear": ("chunk", chunk)}
    for other, (name, value) in needed.items():
        if other != core and value is not None:
            raise ValueError(f"{name} belongs to core={other!r}, not core={core!r}; drop it.")
    if core in needed:
        name, value = needed[core]
        return check_positive_int(name, value, hint=f"core={core!r} needs {name}, a whole number >= 1.")
    return None


class MixerLayer(nn.Module):
    """Causal multi-head token mixing on ``(batch, n, d_model)``: a ``qkv`` projection (``d → 3d``, no
    bias), a core, and an ``out`` projection (``d → d``, no bias).

    ``core``: ``"full"`` (:func:`~utils.attention.naive_attention` with a causal mask: ``n²`` scores),
    ``"local"`` (:func:`~utils.efficient.blocked_local_attention`, causal, ``radius``), ``"strided"``
    (:func:`strided_attention`, ``stride``) or ``"linear"`` (:func:`chunked_linear_attention`, ``chunk``).
    :func:`mixer_layer_flops` gives its exact FLOPs.
    """

    def __init__(self, d_model: int, core: str, *, heads: int = 1, radius: int | None = None,
                 stride: int | None = None, chunk: int | None = None):
        super().__init__()
        self.d_model, self.heads = check_heads(d_model, heads)
        self.core = check_choice("core", core, MIXER_CORES)
        self.option = _core_option(core, radius, stride, chunk)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (batch, n, {self.d_model}), got {tuple(x.shape)}.")
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if self.core == "full":
            y = naive_attention(q, k, v, local_mask(n, n, causal=True, device=x.device))
        elif self.core == "local":
            y = blocked_local_attention(q, k, v, self.option, causal=True)
        elif self.core == "strided":
            y = strided_attention(q, k, v, self.option)
        else:
            y = chunked_linear_attention(q, k, v, self.option)
        return self.out(y.transpose(1, 2).reshape(b, n, self.d_model))


def mixer_layer_flops(n: int, d_model: int, core: str, *, heads: int = 1, batch: int = 1, radius: int | None = None,
                      stride: int | None = None, chunk: int | None = None) -> int:
    """Exact FLOPs of one :class:`MixerLayer`: ``8·B·n·d²`` of projections plus the core —
    ``4·B·n²·d`` (full), :func:`~utils.complexity.local_attention_flops` (local, causal),
    :func:`strided_attention_flops` or :func:`linear_attention_flops` (``"chunked"``)."""
    d, h = check_heads(d_model, heads)
    check_choice("core", core, MIXER_CORES)
    option = _core_option(core, radius, stride, chunk)
    proj = projection_flops(n, d, 3 * d, batch) + projection_flops(n, d, d, batch)
    if core == "full":
        mix = attention_flops(n, d, batch, heads=h)
    elif core == "local":
        mix = local_attention_flops(n, d, option, batch, heads=h, causal=True)
    elif core == "strided":
        mix = strided_attention_flops(n, d // h, option, batch, h)
    else:
        mix = linear_attention_flops(n, d // h, batch, h, form="chunked", chunk=option)
    return proj + mix


class DiagonalSSM(nn.Module):
    """A diagonal state-space layer: ``u = W_in x``, ``h_t = a ⊙ h_{t-1} + u_t``, ``y = W_out h``.

    ``decay``: the per-channel factor ``a`` (a number in ``(0, 1]`` for every channel, or a tensor of
    ``d_model`` values), a trainable parameter as in S4D-like layers. ``form``: ``"parallel"``
    (:func:`parallel_scan`) or ``"sequential"`` (:func:`sequential_scan`) — the same function. The
    projections cost ``4·B·n·d²`` FLOPs; the scan's element-wise work is :func:`scan_multiplies`.
    """

    def __init__(self, d_model: int, decay=0.9, *, form: str = "parallel"):
        super().__init__()
        d = check_positive_int("d_model", d_model)
        a = torch.as_tensor(decay, dtype=torch.get_default_dtype())
        if a.dim() == 0:
            a = a.expand(d)
        if a.shape != (d,) or not bool(((a > 0) & (a <= 1)).all()):
            raise ValueError(f"decay must be a number in (0, 1] or {d} such numbers (one per channel), got "
                             f"{decay!r}; a decay above 1 makes the state grow without bound.")
        self.form = check_choice("form", form, SCAN_FORMS)
        self.decay = nn.Parameter(a.clone())
        self.inp = nn.Linear(d, d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scan = parallel_scan if self.form == "parallel" else sequential_scan
        return self.out(scan(self.decay, self.inp(x)))


# ------------------------------------------------------------------------------------------------
# Graphs of these patterns and of hybrids
# ------------------------------------------------------------------------------------------------

def mask_graph(mask: torch.Tensor, layers: int = 1, family: str = "masked attention") -> SequenceGraph:
    """``layers`` attention layers whose query ``j`` reads key ``i`` where ``mask[j, i]`` (e.g.
    :func:`strided_mask`), as a :class:`~utils.graphs.SequenceGraph`."""
    square = isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[0] == mask.shape[1]
    if not square or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a square boolean tensor, got {getattr(mask, 'shape', type(mask).__name__)}.")
    layers = check_int("layers", layers, minimum=0)
    return SequenceGraph(family, mask.shape[0], layers, (mask,) * layers, (None,) * layers)


def stack_graphs(*graphs: SequenceGraph, family: str = "hybrid") -> SequenceGraph:
    """The graph of a model whose layers are those of ``graphs``, bottom first (e.g. two conv layers
    under a recurrent layer, or local-attention layers under a global one). All need the same ``n``."""
    if not graphs or not all(isinstance(g, SequenceGraph) for g in graphs):
        raise ValueError("give at least one SequenceGraph (from utils.graphs or mask_graph) to stack.")
    ns = {g.n for g in graphs}
    if len(ns) != 1:
        raise ValueError(f"every graph must have the same n to be stacked, got n = {sorted(ns)}.")
    between = tuple(m for g in graphs for m in g.between)
    within = tuple(m for g in graphs for m in g.within)
    parts = tuple(f"{g.family}×{g.layers}" for g in graphs)
    return SequenceGraph(family, ns.pop(), len(between), between, within, {"parts": parts})
