import pytest
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.complexity import (
    conv1d_parameters,
    dense_vs_conv_parameters,
    encoder_layer_parameters,
    linear_parameters,
    recurrent_parameters,
)
from utils.measure import count_parameters

MODULES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@settings(deadline=None, max_examples=25)
@given(family=st.sampled_from(sorted(MODULES)), d_in=st.integers(1, 24), h=st.integers(1, 24),
       layers=st.integers(1, 3), bias=st.booleans())
def test_recurrent_formula_matches_module(family, d_in, h, layers, bias):
    module = MODULES[family](d_in, h, num_layers=layers, bias=bias)
    assert recurrent_parameters(family, d_in, h, layers, bias) == count_parameters(module)


@settings(deadline=None, max_examples=25)
@given(c_in=st.integers(1, 16), c_out=st.integers(1, 16), k=st.integers(1, 7), bias=st.booleans())
def test_conv_and_linear_formulas(c_in, c_out, k, bias):
    assert conv1d_parameters(c_in, c_out, k, bias) == count_parameters(nn.Conv1d(c_in, c_out, k, bias=bias))
    assert linear_parameters(c_in, c_out, bias) == count_parameters(nn.Linear(c_in, c_out, bias=bias))


@settings(deadline=None, max_examples=15)
@given(heads=st.sampled_from([1, 2, 4]), mult=st.integers(1, 8), d_ff=st.integers(1, 64))
def test_encoder_layer_formula(heads, mult, d_ff):
    d = heads * mult
    layer = nn.TransformerEncoderLayer(d, heads, d_ff, batch_first=True)
    assert encoder_layer_parameters(d, d_ff) == count_parameters(layer)


def test_dense_vs_conv():
    dense, conv = dense_vs_conv_parameters(28, 28, 1, 32, 3)
    assert dense == 784 * 784 * 32 and conv == 9 * 32


@pytest.mark.parametrize("call, message", [
    (lambda: recurrent_parameters("transformer", 4, 4), "family must be one of"),
    (lambda: recurrent_parameters("rnn", 0, 4), "d_in must be >= 1"),
    (lambda: conv1d_parameters(4, 4, 0), "kernel_size must be >= 1"),
    (lambda: encoder_layer_parameters(8, -1), "d_ff must be >= 1"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
