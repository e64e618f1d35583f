"""Order and position: sinusoidal positional encodings and permutation (non-)equivariance.

Sinusoidal encoding (Vaswani et al., 2017; the formula the path-length article quotes), for position ``p``
and ``i = 0 … d/2-1``::

    PE[p, 2i]   = sin(p · ω_i)        ω_i = base^(-2i/d)   (base = 10000)
    PE[p, 2i+1] = cos(p · ω_i)

Because ``sin a sin b + cos a cos b = cos(a - b)``, the dot product of two encodings depends only on
the offset ``Δ``: ``PE[p] · PE[p+Δ] = Σ_i cos(Δ · ω_i)`` (:func:`offset_dot_product`), and
``PE[p+Δ] = R(Δ) PE[p]`` with ``R(Δ)`` a block-diagonal rotation (:func:`relative_rotation`).

:func:`equivariance_gap` measures how far a sequence map ``f`` is from permutation equivariance,
``max |f(x[:, perm]) - f(x)[:, perm]|``: zero (up to rounding) for self-attention without positional
information, clearly non-zero for an RNN, a convolution, a causal mask, or attention with ``x + PE``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from utils.validate import check_int, check_positive_float, check_positive_int


def check_even_width(d: int) -> int:
    """``d`` must be an even whole number >= 2 (sin and cos come in pairs)."""
    d = check_int("d", d, minimum=2, hint="a sinusoidal encoding needs at least one sin/cos pair.")
    if d % 2:
        raise ValueError(f"d must be even (sin and cos columns come in pairs), got {d}; use {d + 1} or {d - 1}.")
    return d


def frequencies(d: int, base: float = 10000.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ``d/2`` angular frequencies ``ω_i = base^(-2i/d)``, from 1 down to about ``1/base``."""
    d = check_even_width(d)
    base = check_positive_float("base", base)
    i = torch.arange(d // 2, dtype=torch.float64)
    return (base ** (-2 * i / d)).to(dtype)


def sinusoidal(n: int, d: int, base: float = 10000.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``n × d`` sinusoidal positional encoding (even columns ``sin``, odd columns ``cos``).

    Computed in float64 and cast to ``dtype``. Raises ``ValueError`` for ``n < 1`` or an odd or
    too small ``d``.
    """
    n = check_positive_int("n", n, hint="n is the number of positions to encode.")
    angles = torch.arange(n, dtype=torch.float64).unsqueeze(1) * frequencies(d, base).unsqueeze(0)
    pe = torch.empty(n, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.to(dtype)


def offset_dot_product(delta, d: int, base: float = 10000.0) -> torch.Tensor:
    """Closed form of ``PE[p] · PE[p + Δ] = Σ_i cos(Δ · ω_i)`` — the same for every ``p``.

    ``delta`` may be a number or a tensor of offsets; returns float64 of the same shape.
    """
    delta = torch.as_tensor(delta, dtype=torch.float64)
    return torch.cos(delta.unsqueeze(-1) * frequencies(d, base)).sum(-1)


def relative_rotation(delta, d: int, base: float = 10000.0) -> torch.Tensor:
    """The ``d × d`` block-diagonal rotation ``R(Δ)`` with ``PE[p + Δ] = R(Δ) @ PE[p]`` for every ``p``.

    Block i acts on ``(sin, cos)`` of frequency ``ω_i``: ``[[cos Δω, sin Δω], [-sin Δω, cos Δω]]``.
    """
    d = check_even_width(d)
    angle = float(delta) * frequencies(d, base)
    r = torch.zeros(d, d, dtype=torch.float64)
    c, s = torch.cos(angle), torch.sin(angle)
    idx = torch.arange(0, d, 2)
    r[idx, idx] = c
    r[idx, idx + 1] = s
    r[idx + 1, idx] = -s
    r[idx + 1, idx + 1] = c
    return r


def equivariance_gap(fn, x: torch.Tensor, perm=None, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> float:
    """``max |fn(x[:, perm]) - fn(x)[:, perm]|`` — 0 (up to rounding) iff ``fn`` commutes with ``perm``.

    ``fn`` maps ``(batch, n, d)`` to ``(batch, n, d_out)`` (a tuple output keeps its first element,
    as for ``nn.RNN``). An ``nn.Module`` is copied, put in eval mode and cast to ``dtype``. ``perm``
    defaults to a random permutation of the n positions (seeded) that moves at least one position.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a (batch, n, d) tensor, got {getattr(x, 'shape', type(x).__name__)}.")
    n = x.shape[1]
    if n < 2:
        raise ValueError("a permutation needs at least two positions; use n >= 2.")
    if isinstance(fn, nn.Module):
        fn = copy.deepcopy(fn).to(dtype).eval()
    x = x.to(dtype)
    if perm is None:
        gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        perm = torch.randperm(n, generator=gen)
        while torch.equal(perm, torch.arange(n)):
            perm = torch.randperm(n, generator=gen)
    perm = torch.as_tensor(perm)
    if sorted(perm.tolist()) != list(range(n)):
        raise ValueError(f"perm must be a permutation of 0 … {n - 1}, got {perm.tolist()}.")

    def run(inp):
        y = fn(inp)
        return y[0] if isinstance(y, tuple) else y

    with torch.no_grad():
        return float((run(x[:, perm]) - run(x)[:, perm]).abs().max())
