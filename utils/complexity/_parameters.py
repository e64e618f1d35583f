"""Closed-form parameter counts of the sequence layers.
"""

from __future__ import annotations

from utils.complexity._flops import GATES
from utils.validate import check_choice, check_int, check_positive_int


def recurrent_parameters(family: str, d_in: int, d_hidden: int, layers: int = 1, bias: bool = True) -> int:
    """Parameters of ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` (unidirectional, no projection)."""
    g = GATES[check_choice("family", family, GATES)]
    d_in, h = check_positive_int("d_in", d_in), check_positive_int("d_hidden", d_hidden)
    layers = check_positive_int("layers", layers)
    per_layer = lambda d: g * (d * h + h * h + (2 * h if bias else 0))  # noqa: E731
    return per_layer(d_in) + (layers - 1) * per_layer(h)


def linear_parameters(d_in: int, d_out: int, bias: bool = True) -> int:
    """Parameters of ``nn.Linear(d_in, d_out)``."""
    return check_positive_int("d_in", d_in) * check_positive_int("d_out", d_out) + (d_out if bias else 0)


def conv1d_parameters(c_in: int, c_out: int, kernel_size: int, bias: bool = True) -> int:
    """Parameters of ``nn.Conv1d(c_in, c_out, kernel_size)``: weights are shared across positions."""
    k = check_int("kernel_size", kernel_size, minimum=1)
    return k * check_positive_int("c_in", c_in) * check_positive_int("c_out", c_out) + (c_out if bias else 0)


def encoder_layer_parameters(d_model: int, d_ff: int) -> int:
    """Parameters of ``nn.TransformerEncoderLayer(d_model, nhead, d_ff)`` (any ``nhead``)."""
    d, f = check_positive_int("d_model", d_model), check_positive_int("d_ff", d_ff)
    attention = 4 * d * d + 4 * d        # in_proj (3d×d + 3d) and out_proj (d×d + d)
    feed_forward = 2 * d * f + f + d     # linear1 (d→f) and linear2 (f→d)
    norms = 4 * d                        # two LayerNorms, weight and bias each
    return attention + feed_forward + norms


def dense_vs_conv_parameters(height: int, width: int, c_in: int, c_out: int, kernel_size: int) -> tuple[int, int]:
    """Weights of a dense layer mapping a ``c_in×H×W`` grid to ``c_out×H×W`` vs a ``k×k`` 2-D conv.

    Returns ``(dense, conv)``, biases excluded: ``(H·W)²·c_in·c_out`` vs ``k²·c_in·c_out``.
    """
    hw = check_positive_int("height", height) * check_positive_int("width", width)
    c_in, c_out = check_positive_int("c_in", c_in), check_positive_int("c_out", c_out)
    k = check_positive_int("kernel_size", kernel_size)
    return hw * hw * c_in * c_out, k * k * c_in * c_out
