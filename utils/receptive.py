"""Receptive fields of 1-D convolution stacks: closed forms, depth needed, and the *effective* field.

Symbols: kernel size ``k``, number of layers ``L``, per-layer dilations ``δ_1 … δ_L`` (all 1 when not
given). The receptive field is a **span** (how many input positions an output sees)::

    R = 1 + (k - 1) · (δ_1 + … + δ_L)

The **distance** an output can look (how far back input ``t - d`` may lie) depends on where the
window sits: a causal stack sees ``t - (R - 1) … t`` (reach ``R - 1``), a centred stack (odd ``k``)
sees ``t ± (R - 1)/2`` (reach ``(R - 1)/2`` on each side). Conventions are those of
:class:`utils.conv.ConvStack` and :mod:`utils.graphs`.

The *effective* receptive field (Luo et al. 2016) is measured, not computed: the gradient magnitude
of one output with respect to every input position (:func:`~utils.measure.input_gradient_profile`), whose width
(:func:`~utils.measure.profile_width`) grows only like ``sqrt(L)`` while ``R`` grows like ``L``.
"""

from __future__ import annotations

from utils._moved import module_getattr as _module_getattr
from utils.conv import check_conv_args
from utils.validate import check_int, check_positive_int

__all__ = [
    "receptive_field", "reach", "layers_to_connect", "doubling_dilations", "dilated_layers_to_connect",
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


__getattr__ = _module_getattr(__name__)  # names moved in 0.2 (utils._moved)
