"""1-D convolution stacks over sequences, with centred, causal and dilated padding.

``ConvStack`` maps ``(batch, n, d_model) -> (batch, n, d_model)`` (the sequence layout of the whole
course) and keeps the length ``n`` fixed at every layer:

* ``padding="centred"``: output t sees inputs ``t - (k-1)/2 · dil … t + (k-1)/2 · dil`` (odd k only);
* ``padding="causal"``: output t sees inputs ``t - (k-1) · dil … t`` (never the future).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from utils.validate import check_choice, check_int, check_positive_int


def check_conv_args(kernel_size: int, layers: int, dilations=None, padding: str = "causal") -> list[int]:
    """Validate a conv stack's shape; return the per-layer dilations (all 1 when ``None``)."""
    kernel_size = check_int("kernel_size", kernel_size, minimum=2,
                            hint="A kernel of size 1 never mixes positions; use kernel_size >= 2.")
    layers = check_int("layers", layers, minimum=0)
    check_choice("padding", padding, {"centred", "causal"})
    if padding == "centred" and kernel_size % 2 == 0:
        raise ValueError(f"a centred kernel needs an odd kernel_size, got {kernel_size}; "
                         "use an odd size (3, 5, …) or padding='causal'.")
    if dilations is None:
        return [1] * layers
    dilations = [check_int("dilation", d, minimum=1) for d in dilations]
    if len(dilations) != layers:
        raise ValueError(f"got {len(dilations)} dilations for {layers} layers; give one dilation per layer.")
    return dilations


class ConvStack(nn.Module):
    """``layers`` stride-1 ``nn.Conv1d`` layers (``tanh`` between them) that keep the length ``n``.

    ``padding`` is ``"causal"`` (pad on the left: output ``t`` sees inputs ``<= t``) or ``"centred"``
    (odd ``kernel_size``). Give it explicitly: left out, it is ``"causal"`` with a
    ``FutureWarning``, because from version 0.3 it defaults to ``"centred"`` like
    :func:`utils.graphs.conv_graph` and :func:`utils.receptive.layers_to_connect` (``causal=False``).
    """

    def __init__(self, d_model: int, kernel_size: int, layers: int, dilations=None,
                 padding: str | None = None, activation: bool = True):
        super().__init__()
        if padding is None:
            warnings.warn("ConvStack without padding= is causal today and centred from version 0.3, like "
                          "conv_graph and layers_to_connect; pass padding='causal' or padding='centred'.",
                          FutureWarning, stacklevel=2)
            padding = "causal"
        d_model = check_positive_int("d_model", d_model)
        self.dilations = check_conv_args(kernel_size, layers, dilations, padding)
        self.kernel_size, self.padding = kernel_size, padding
        self.convs = nn.ModuleList(nn.Conv1d(d_model, d_model, kernel_size, dilation=d) for d in self.dilations)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # (batch, d_model, n)
        for i, (conv, dil) in enumerate(zip(self.convs, self.dilations)):
            span = (self.kernel_size - 1) * dil
            pad = (span, 0) if self.padding == "causal" else (span // 2, span // 2)
            h = conv(nn.functional.pad(h, pad))
            if self.activation and i < len(self.convs) - 1:
                h = torch.tanh(h)
        return h.transpose(1, 2)
