"""Receptive fields of 1-D convolution stacks: closed forms, depth needed, and the *effective* field.

Symbols: kernel size ``k``, number of layers ``L``, per-layer dilations ``δ_1 … δ_L`` (all 1 when not
given). The receptive field is a **span** (how many input positions an output sees)::

    R = 1 + (k - 1) · (δ_1 + … + δ_L)

The **distance** an output can look (how far back input ``t - d`` may lie) depends on where the
window sits: a causal stack sees ``t - (R - 1) … t`` (reach ``R - 1``), a centred stack (odd ``k``)
sees ``t ± (R - 1)/2`` (reach ``(R - 1)/2`` on each side). Conventions are those of
:class:`utils.conv.ConvStack` and :mod:`utils.graphs`.

The *effective* receptive field (Luo et al. 2016) is measured, not computed: the gradient magnitude
of one output with respect to every input position (:func:`input_gradient_profile`), whose width
(:func:`profile_width`) grows only like ``sqrt(L)`` while ``R`` grows like ``L``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from utils.conv import check_conv_args
from utils.validate import check_int, check_positive_int

__all__ = [
    "receptive_field", "reach", "layers_to_connect", "doubling_dilations", "dilated_layers_to_connect",
    "input_gradient_profile", "profile_width",
]


def receptive_field(kernel_size: int, layers: int, dilations=None) -> int:
    """``R = 1 + (k - 1) · Σ dilations``: how many input positions one output of the stack sees (a span).

    The same for centred and causal padding (only the window's placement differs); ``layers = 0`` gives
    ``R = 1`` (the output is the input)."""
    dil = check_conv_args(kernel_size, layers, dilations, padding="causal")
    return 1 + (kernel_size - 1) * sum(dil)


def reach(kernel_size: int, layers: int, dilations=None, causal: bool = False) -> int:
    """The largest distance ``d`` such that output ``t`` depends on input ``t - d``: ``R - 1`` for a causal
    stack, ``(R - 1) / 2`` for a centred one (which needs odd ``k``)."""
    padding = "causal" if causal else "centred"
    dil = check_conv_args(kernel_size, layers, dilations, padding)
    per_tap = kernel_size - 1 if causal else (kernel_size - 1) // 2
    return per_tap * sum(dil)


def layers_to_connect(distance: int, kernel_size: int, causal: bool = False) -> int:
    """The fewest stacked stride-1, undilated conv layers for output ``t`` to depend on input ``t - distance``.

    Causal kernel (covers ``t-k+1 … t``): ``ceil(d / (k-1))``. Centred kernel (odd ``k``, covers
    ``t ± (k-1)/2``): ``ceil(d / ((k-1)/2))``. ``distance = 0`` needs no layer."""
    distance = check_int("distance", distance, minimum=0,
                         hint="a distance counts positions between two tokens: use |j - i|.")
    padding = "causal" if causal else "centred"
    check_conv_args(kernel_size, 1, None, padding)
    per_layer = kernel_size - 1 if causal else (kernel_size - 1) // 2
    return -(-distance // per_layer)


def doubling_dilations(layers_per_block: int, blocks: int = 1, growth: int = 2) -> list[int]:
    """WaveNet-style dilations ``1, g, g², …, g^(layers_per_block-1)``, repeated ``blocks`` times."""
    layers_per_block = check_int("layers_per_block", layers_per_block, minimum=0)
    blocks = check_positive_int("blocks", blocks)
    growth = check_int("growth", growth, minimum=2, hint="growth 1 is an undilated stack; use growth >= 2.")
    return [growth**i for i in range(layers_per_block)] * blocks


def dilated_layers_to_connect(distance: int, kernel_size: int, growth: int = 2, causal: bool = True) -> int:
    """The fewest layers of a stack with dilations ``1, g, g², …`` for output ``t`` to depend on ``t - distance``.

    With ``growth <= kernel_size`` the stack's field has no holes, so the answer is the smallest ``L``
    whose reach ``(k-1)(g^L - 1)/(g - 1)`` (causal) or half of it (centred) is ``>= distance`` — about
    ``log_g(distance)``: logarithmic instead of linear depth. A larger growth leaves holes (distances the
    stack never connects) and is refused. A centred answer assumes both positions lie far enough from
    the sequence ends: its shortest path may step past the target and come back (``+3`` then ``-1``),
    and zero padding cuts a path that would leave ``0 … n-1``."""
    distance = check_int("distance", distance, minimum=0,
                         hint="a distance counts positions between two tokens: use |j - i|.")
    padding = "causal" if causal else "centred"
    check_conv_args(kernel_size, 1, None, padding)
    growth = check_int("growth", growth, minimum=2, hint="growth 1 is an undilated stack: use layers_to_connect.")
    if growth > kernel_size:
        raise ValueError(f"growth {growth} > kernel_size {kernel_size} leaves holes in the receptive field "
                         "(some distances are never connected); use growth <= kernel_size.")
    per_tap = kernel_size - 1 if causal else (kernel_size - 1) // 2
    layers, total = 0, 0
    while per_tap * total < distance:
        total += growth**layers
        layers += 1
    return layers


def input_gradient_profile(fn, n: int, d_model: int, position: int | None = None, *, seed: int = 0,
                           dtype: torch.dtype = torch.float64, squared: bool = True) -> torch.Tensor:
    """Squared input gradient of one output position, per input position (length ``n``).

    ``profile[i] = Σ_c (∂ s / ∂ x[i, c])²`` with ``s = Σ_c y[position, c]`` (the output's channels summed,
    as in Luo et al. 2016) for a random input; with ``squared=False``, ``Σ_c |∂ s / ∂ x[i, c]|`` instead
    (use it to test *whether* output ``position`` depends on input ``i`` through a very deep stack, where
    a tiny gradient squared could underflow even float64). ``fn`` maps ``(1, n, d_model)`` to ``(1, n, d_out)``; an
    ``nn.Module`` is copied in eval mode at ``dtype``. Average it over several random initialisations to
    estimate the effective receptive field. ``position`` defaults to the centre ``n // 2``. The input
    is made on the CPU and moved to the module's device; the profile is returned on the CPU.
    """
    n = check_positive_int("n", n)
    d_model = check_positive_int("d_model", d_model)
    position = n // 2 if position is None else check_int("position", position, minimum=0)
    if position >= n:
        raise ValueError(f"position {position} is outside 0…{n - 1}.")
    from utils.env import module_device

    device = module_device(fn)
    if isinstance(fn, nn.Module):
        fn = copy.deepcopy(fn).to(dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, d_model, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    y = fn(x)
    if isinstance(y, tuple):
        y = y[0]
    if y.dim() != 3 or y.shape[:2] != (1, n):
        raise ValueError(f"fn must map (1, n, d) to (1, n, d_out); got output of shape {tuple(y.shape)}.")
    (grad,) = torch.autograd.grad(y[0, position].sum(), x)
    grad = grad[0].detach()
    return (grad.pow(2).sum(dim=-1) if squared else grad.abs().sum(dim=-1)).cpu()


def profile_width(profile) -> float:
    """Standard deviation (in positions) of a non-negative profile read as a distribution over positions."""
    p = torch.as_tensor(profile, dtype=torch.float64).flatten()
    if p.numel() == 0 or bool((p < 0).any()) or not float(p.sum()) > 0:
        raise ValueError("profile must be non-negative with a positive sum (e.g. squared gradients).")
    p = p / p.sum()
    pos = torch.arange(p.numel(), dtype=torch.float64)
    mean = (p * pos).sum()
    return float(((p * (pos - mean) ** 2).sum()).sqrt())
