"""The from-scratch pieces equal their torch.nn modules with copied weights; their parameter formulas equal numel."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.testing import assert_close

from utils.complexity import conv1d_parameters, encoder_layer_parameters, recurrent_parameters
from utils.measure import count_parameters
from utils.scratch import (
    CellWeights,
    ConvWeights,
    EncoderWeights,
    MultiheadWeights,
    attention,
    attention_head,
    attention_head_parameters,
    cell_weights,
    conv1d,
    conv1d_block,
    conv2d,
    conv2d_block,
    conv2d_parameters,
    conv_weights,
    encoder_block,
    encoder_weights,
    gru_cell,
    layer_norm,
    lstm_cell,
    max_pool1d,
    max_pool2d,
    multihead_attention,
    multihead_attention_parameters,
    multihead_weights,
    rnn_cell,
    softmax_saturation,
    unroll,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    torch.manual_seed(0)


def _randn(*shape, dtype=F64):
    return torch.randn(*shape, dtype=dtype)


# ------------------------------------------------------------------------------------------ recurrent cells

@pytest.mark.parametrize("batch, i, h", [(1, 1, 1), (3, 4, 5), (2, 7, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_rnn_and_gru_cells_equal_torch(batch, i, h, bias):
    for module, cell in ((nn.RNNCell(i, h, bias=bias), rnn_cell), (nn.GRUCell(i, h, bias=bias), gru_cell)):
        module = module.double()
        x, h0 = _randn(batch, i), _randn(batch, h)
        assert_close(cell(x, h0, cell_weights(module)), module(x, h0))


@pytest.mark.parametrize("batch, i, h", [(1, 1, 1), (3, 4, 5), (2, 7, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_equals_torch(batch, i, h, bias):
    module = nn.LSTMCell(i, h, bias=bias).double()
    x, h0, c0 = _randn(batch, i), _randn(batch, h), _randn(batch, h)
    h1, c1 = lstm_cell(x, (h0, c0), cell_weights(module))
    ref_h, ref_c = module(x, (h0, c0))
    assert_close(h1, ref_h)
    assert_close(c1, ref_c)


def test_cells_take_an_unbatched_step_like_torch():
    for module, cell in ((nn.RNNCell(3, 4), rnn_cell), (nn.GRUCell(3, 4), gru_cell)):
        x, h = torch.randn(3), torch.randn(4)
        assert_close(cell(x, h, cell_weights(module)), module(x, h))


def test_lstm_gate_order_is_i_f_g_o():
    # a forget gate driven to 1 and an input gate driven to 0 keep the cell state exactly: only in i|f|g|o order
    module = nn.LSTMCell(2, 3).double()
    w = cell_weights(module)
    b = torch.zeros(12, dtype=F64)
    b[0:3], b[3:6] = -50.0, 50.0            # i ≈ 0, f ≈ 1
    w = CellWeights("lstm", w.w_ih, w.w_hh, b, torch.zeros(12, dtype=F64))
    x, h, c = 0.01 * _randn(1, 2), 0.01 * _randn(1, 3), _randn(1, 3)
    _, c1 = lstm_cell(x, (h, c), w)
    assert_close(c1, c)


def test_gru_reset_gate_multiplies_the_hidden_bias_too():
    # PyTorch: n = tanh(W_in x + b_in + r·(W_hn h + b_hn)). With W = 0, a closed reset gate (r ≈ 0) and b_hn = 3,
    # n = tanh(0) = 0; a form that adds b_hn outside the reset gate would give n = tanh(3)
    b_ih, b_hh = torch.zeros(6, dtype=F64), torch.zeros(6, dtype=F64)
    b_ih[0:2] = -50.0                      # r ≈ 0
    b_hh[4:6] = 3.0                        # b_hn
    w = CellWeights("gru", torch.zeros(6, 2, dtype=F64), torch.zeros(6, 2, dtype=F64), b_ih, b_hh)
    h = _randn(1, 2)
    out = gru_cell(torch.zeros(1, 2, dtype=F64), h, w)
    z = torch.sigmoid(torch.tensor(0.0, dtype=F64))
    assert_close(out, z * h)
    module = nn.GRUCell(2, 2).double()
    with torch.no_grad():
        for p, t in ((module.weight_ih, w.w_ih), (module.weight_hh, w.w_hh), (module.bias_ih, b_ih),
                     (module.bias_hh, b_hh)):
            p.copy_(t)
    assert_close(out, module(torch.zeros(1, 2, dtype=F64), h))


@pytest.mark.parametrize("family, module_class", [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)])
@pytest.mark.parametrize("batch, n, i, h", [(1, 1, 2, 3), (4, 9, 3, 5)])
def test_unroll_equals_the_torch_layer(family, module_class, batch, n, i, h):
    module = module_class(i, h, batch_first=True).double()
    x = _randn(batch, n, i)
    out, state = unroll(x, cell_weights(module))
    ref_out, ref_state = module(x)
    assert_close(out, ref_out)
    if family == "lstm":
        assert_close(state[0], ref_state[0][0])
        assert_close(state[1], ref_state[1][0])
    else:
        assert_close(state, ref_state[0])


def test_unroll_starts_from_a_given_state():
    module = nn.LSTM(3, 4, batch_first=True).double()
    x, h0, c0 = _randn(2, 5, 3), _randn(2, 4), _randn(2, 4)
    out, _ = unroll(x, cell_weights(module), (h0, c0))
    assert_close(out, module(x, (h0[None], c0[None]))[0])


@settings(max_examples=25)
@given(family=st.sampled_from(["rnn", "lstm", "gru"]), batch=st.integers(1, 3), n=st.integers(1, 6),
       i=st.integers(1, 5), h=st.integers(1, 5))
def test_unroll_matches_torch_for_any_shape(family, batch, n, i, h):
    module = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[family](i, h, batch_first=True).double()
    x = _randn(batch, n, i)
    assert_close(unroll(x, cell_weights(module))[0], module(x)[0])


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("i, h, bias", [(1, 1, True), (3, 5, True), (7, 2, False)])
def test_cell_parameters_equal_numel(family, i, h, bias):
    cell = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[family](i, h, bias=bias)
    assert recurrent_parameters(family, i, h, bias=bias) == count_parameters(cell)
    w = cell_weights(cell)
    tensors = [w.w_ih, w.w_hh] + ([w.b_ih, w.b_hh] if bias else [])
    assert sum(t.numel() for t in tensors) == count_parameters(cell)


def test_lstm_formula_of_the_brief():
    i, h = 6, 10
    assert recurrent_parameters("lstm", i, h) == 4 * h * (i + h) + 8 * h == count_parameters(nn.LSTMCell(i, h))


# ------------------------------------------------------------------------------------------- convolution

@pytest.mark.parametrize("batch, c_in, c_out, n, k, padding, pool", [
    (1, 1, 1, 5, 1, 0, 1), (2, 3, 4, 11, 3, 1, 2), (3, 2, 5, 16, 5, 2, 3), (1, 4, 2, 7, 3, 0, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv1d_block_equals_torch(batch, c_in, c_out, n, k, padding, pool, bias):
    conv = nn.Conv1d(c_in, c_out, k, padding=padding, bias=bias).double()
    x = _randn(batch, c_in, n)
    w = conv_weights(conv)
    assert_close(conv1d(x, w), conv(x))
    assert_close(conv1d_block(x, w, pool), nn.Sequential(conv, nn.ReLU(), nn.MaxPool1d(pool))(x))


@pytest.mark.parametrize("batch, c_in, c_out, hw, k, padding, pool", [
    (1, 1, 1, (4, 4), 1, 0, 1), (2, 3, 4, (9, 8), 3, 1, 2), (1, 2, 3, (7, 10), 5, 2, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_block_equals_torch(batch, c_in, c_out, hw, k, padding, pool, bias):
    conv = nn.Conv2d(c_in, c_out, k, padding=padding, bias=bias).double()
    x = _randn(batch, c_in, *hw)
    w = conv_weights(conv)
    assert_close(conv2d(x, w), conv(x))
    assert_close(conv2d_block(x, w, pool), nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(pool))(x))


@settings(max_examples=25)
@given(c_in=st.integers(1, 3), c_out=st.integers(1, 3), k=st.integers(1, 4), extra=st.integers(0, 6),
       padding=st.integers(0, 2), pool=st.integers(1, 3))
def test_conv1d_block_matches_torch_for_any_shape(c_in, c_out, k, extra, padding, pool):
    n = max(k + extra - 2 * padding, 1)
    if n + 2 * padding - k + 1 < pool:
        n += pool
    conv = nn.Conv1d(c_in, c_out, k, padding=padding).double()
    x = _randn(2, c_in, n)
    assert_close(conv1d_block(x, conv_weights(conv), pool), nn.Sequential(conv, nn.ReLU(), nn.MaxPool1d(pool))(x))


@pytest.mark.parametrize("c_in, c_out, k, bias", [(1, 1, 1, True), (3, 8, 3, True), (16, 4, 5, False)])
def test_conv_parameters_equal_numel(c_in, c_out, k, bias):
    assert conv1d_parameters(c_in, c_out, k, bias=bias) == count_parameters(nn.Conv1d(c_in, c_out, k, bias=bias))
    assert conv2d_parameters(c_in, c_out, k, bias=bias) == count_parameters(nn.Conv2d(c_in, c_out, k, bias=bias))
    assert conv2d_parameters(c_in, c_out, k, bias=bias) == k * k * c_in * c_out + (c_out if bias else 0)


def test_pooling_drops_a_trailing_remainder_like_torch():
    x = _randn(1, 2, 7)
    assert_close(max_pool1d(x, 3), nn.functional.max_pool1d(x, 3))
    y = _randn(1, 2, 5, 7)
    assert_close(max_pool2d(y, 2), nn.functional.max_pool2d(y, 2))


# ------------------------------------------------------------------------------------------------ attention

@pytest.mark.parametrize("batch, n, d_model, d_k", [(1, 1, 2, 2), (2, 5, 8, 4), (3, 7, 6, 6)])
@pytest.mark.parametrize("scaled", [True, False])
def test_attention_head_equals_sdpa(batch, n, d_model, d_k, scaled):
    x = _randn(batch, n, d_model)
    w_q, w_k, w_v = (_randn(d_k, d_model) for _ in range(3))
    out, weights = attention_head(x, w_q, w_k, w_v, scaled=scaled)
    ref = nn.functional.scaled_dot_product_attention(x @ w_q.T, x @ w_k.T, x @ w_v.T,
                                                     scale=None if scaled else 1.0)
    assert_close(out, ref)
    assert_close(weights.sum(-1), torch.ones(batch, n, dtype=F64))


def test_attention_mask_and_scale():
    q, k, v = _randn(2, 4, 3), _randn(2, 4, 3), _randn(2, 4, 5)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    out, w = attention(q, k, v, mask=causal)
    assert_close(out, nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert bool((w.triu(1) == 0).all())
    # the unscaled head is the scaled one with queries multiplied by sqrt(d_k)
    assert_close(attention(q, k, v, scaled=False)[0], attention(q * math.sqrt(3), k, v)[0])


@pytest.mark.parametrize("d, heads, batch, n", [(4, 1, 1, 1), (8, 2, 2, 5), (12, 3, 3, 6), (16, 4, 1, 9)])
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_attention_equals_torch(d, heads, batch, n, bias):
    mha = nn.MultiheadAttention(d, heads, bias=bias, batch_first=True).double()
    x = _randn(batch, n, d)
    out, weights = multihead_attention(x, multihead_weights(mha))
    ref_out, ref_weights = mha(x, x, x, average_attn_weights=False)
    assert_close(out, ref_out)
    assert_close(weights, ref_weights)


def test_multihead_attention_with_a_causal_mask_equals_torch():
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double()
    x = _randn(2, 6, 8)
    allowed = torch.ones(6, 6, dtype=torch.bool).tril()
    out, _ = multihead_attention(x, multihead_weights(mha), mask=allowed)
    assert_close(out, mha(x, x, x, attn_mask=~allowed)[0])


@pytest.mark.parametrize("d, heads", [(4, 1), (8, 2), (12, 3)])
def test_attention_parameters_equal_numel(d, heads):
    for bias in (True, False):
        mha = nn.MultiheadAttention(d, heads, bias=bias)
        assert multihead_attention_parameters(d, bias=bias) == count_parameters(mha)
    assert multihead_attention_parameters(d) == 4 * d * d + 4 * d
    d_k = d // heads
    assert attention_head_parameters(d, d_k) == 3 * d * d_k
    # h heads of d/h channels hold exactly the (bias-free) input projection of the multi-head layer
    in_proj = nn.MultiheadAttention(d, heads, bias=False).in_proj_weight
    assert heads * attention_head_parameters(d, d_k) == in_proj.numel()


# ------------------------------------------------------------------------------------------ encoder block

def test_layer_norm_equals_torch():
    ln = nn.LayerNorm(6).double()
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x = _randn(2, 3, 6)
    assert_close(layer_norm(x, ln.weight, ln.bias, ln.eps), ln(x))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("d, heads, d_ff, batch, n", [(4, 1, 8, 1, 1), (8, 2, 16, 2, 5), (12, 3, 20, 3, 4)])
def test_encoder_block_equals_torch(norm_first, activation, d, heads, d_ff, batch, n):
    layer = nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, activation=activation, batch_first=True,
                                       norm_first=norm_first).double().eval()
    for norm in (layer.norm1, layer.norm2):   # non-trivial norm weights, so a swapped norm would show
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    x = _randn(batch, n, d)
    assert_close(encoder_block(x, encoder_weights(layer)), layer(x))


def test_encoder_block_equals_torch_in_float32_on_the_fast_path():
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        assert_close(encoder_block(x, encoder_weights(layer)), layer(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("d, d_ff", [(4, 8), (16, 64)])
def test_encoder_parameters_equal_numel(d, d_ff):
    layer = nn.TransformerEncoderLayer(d, 2, d_ff, batch_first=True)
    assert encoder_layer_parameters(d, d_ff) == count_parameters(layer)
    w = encoder_weights(layer)
    parts = [w.linear1_weight, w.linear1_bias, w.linear2_weight, w.linear2_bias, w.norm1_weight, w.norm1_bias,
             w.norm2_weight, w.norm2_bias]
    assert multihead_attention_parameters(d) + sum(t.numel() for t in parts) == count_parameters(layer)


# ------------------------------------------------------------------------------------------ the 1/sqrt(d_k)

def test_unscaled_softmax_saturates_as_d_k_grows():
    curve = [softmax_saturation(d_k, scaled=False, queries=256) for d_k in (4, 16, 64, 256, 1024)]
    maxp = [c["max_probability"] for c in curve]
    ent = [c["entropy"] for c in curve]
    jac = [c["jacobian_norm"] for c in curve]
    assert maxp == sorted(maxp) and maxp[-1] > 0.95           # towards a one-hot softmax
    assert ent == sorted(ent, reverse=True) and ent[-1] < 0.15
    assert jac[-1] < 0.25 * jac[0]                             # gradients through the scores vanish
    for c in curve:                                             # score std = sqrt(d_k)
        assert abs(c["score_std"] / math.sqrt(c["d_k"]) - 1) < 0.1


def test_scaled_softmax_stays_bounded_whatever_d_k():
    curve = [softmax_saturation(d_k, scaled=True, queries=256) for d_k in (4, 16, 64, 256, 1024)]
    maxp = [c["max_probability"] for c in curve]
    assert max(maxp) < 0.35 and max(maxp) - min(maxp) < 0.05
    assert all(c["entropy"] > 0.8 * math.log(16) for c in curve)
    assert all(abs(c["score_std"] - 1) < 0.1 for c in curve)


def test_saturation_is_reproducible_and_bounded():
    a, b = softmax_saturation(32, seed=3), softmax_saturation(32, seed=3)
    assert a == b
    for scaled in (True, False):
        c = softmax_saturation(8, keys=4, scaled=scaled)
        assert 1 / 4 <= c["max_probability"] <= 1 and 0 <= c["entropy"] <= math.log(4)


# ------------------------------------------------------------------------------------------------ bad input

def test_bad_cell_input_raises_value_error():
    w = cell_weights(nn.RNNCell(3, 4))
    with pytest.raises(ValueError, match="x has 2 features"):
        rnn_cell(torch.randn(2, 2), torch.randn(2, 4), w)
    with pytest.raises(ValueError, match="these are rnn weights"):
        lstm_cell(torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4)), w)
    with pytest.raises(ValueError, match="pass state=\\(h, c\\)"):
        lstm_cell(torch.randn(2, 3), torch.randn(2, 4), cell_weights(nn.LSTMCell(3, 4)))
    with pytest.raises(ValueError, match="3 dimensions"):
        unroll(torch.randn(2, 3), w)
    with pytest.raises(ValueError, match="family must be one of"):
        CellWeights("transformer", torch.randn(4, 3), torch.randn(4, 4))
    with pytest.raises(ValueError, match="w_hh must have shape"):
        CellWeights("lstm", torch.randn(4, 3), torch.randn(4, 4))
    with pytest.raises(ValueError, match="both biases"):
        CellWeights("rnn", torch.randn(4, 3), torch.randn(4, 4), torch.randn(4))
    with pytest.raises(ValueError, match="nonlinearity='tanh'"):
        cell_weights(nn.RNNCell(3, 4, nonlinearity="relu"))
    with pytest.raises(ValueError, match="num_layers=1"):
        cell_weights(nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="got Linear"):
        cell_weights(nn.Linear(3, 4))


def test_bad_conv_input_raises_value_error():
    w = conv_weights(nn.Conv1d(3, 4, 5))
    with pytest.raises(ValueError, match="c_in=3"):
        conv1d(torch.randn(1, 2, 9), w)
    with pytest.raises(ValueError, match="shorter than the kernel"):
        conv1d(torch.randn(1, 3, 4), w)
    with pytest.raises(ValueError, match="call conv1d"):
        conv2d(torch.randn(1, 3, 9, 9), w)
    with pytest.raises(ValueError, match="stride 1"):
        conv_weights(nn.Conv1d(3, 4, 3, stride=2))
    with pytest.raises(ValueError, match="one integer zero padding"):
        conv_weights(nn.Conv1d(3, 4, 3, padding="same"))
    with pytest.raises(ValueError, match="square"):
        conv_weights(nn.Conv2d(3, 4, (3, 5)))
    with pytest.raises(ValueError, match="pool must be >= 1"):
        conv1d_block(torch.randn(1, 3, 9), w, pool=0)
    with pytest.raises(ValueError, match="shorter than the pool"):
        max_pool1d(torch.randn(1, 3, 2), 3)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        ConvWeights(torch.randn(4, 3, 3), None, -1)


def test_bad_attention_input_raises_value_error():
    with pytest.raises(ValueError, match="same feature size d_k"):
        attention(torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="one row per key"):
        attention(torch.randn(2, 3), torch.randn(2, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="scaled must be True or False"):
        attention(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), scaled="yes")
    with pytest.raises(ValueError, match="d_model=6"):
        attention_head(torch.randn(1, 2, 5), torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 6))
    with pytest.raises(ValueError, match="divisible by heads"):
        MultiheadWeights(torch.randn(18, 6), torch.randn(6, 6), 4)
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        multihead_attention([[1.0]], multihead_weights(nn.MultiheadAttention(4, 2)))
    with pytest.raises(ValueError, match="kdim = vdim"):
        multihead_weights(nn.MultiheadAttention(4, 2, kdim=3))
    with pytest.raises(ValueError, match="batch_first=True"):
        encoder_weights(nn.TransformerEncoderLayer(4, 2, 8))
    w = encoder_weights(nn.TransformerEncoderLayer(4, 2, 8, batch_first=True))
    with pytest.raises(ValueError, match="activation must be one of"):
        EncoderWeights(w.attn, w.linear1_weight, w.linear1_bias, w.linear2_weight, w.linear2_bias, w.norm1_weight,
                       w.norm1_bias, w.norm2_weight, w.norm2_bias, activation="tanh")


@pytest.mark.parametrize("kwargs, match", [
    ({"d_k": 0}, "d_k must be >= 1"), ({"d_k": 8, "keys": 1}, "keys must be >= 2"),
    ({"d_k": 8, "scaled": 1}, "scaled must be True or False"), ({"d_k": 2.5}, "whole number"),
    ({"d_k": 8, "queries": 0}, "queries must be >= 1")])
def test_bad_saturation_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        softmax_saturation(**kwargs)


def test_bad_parameter_count_arguments_raise_value_error():
    with pytest.raises(ValueError, match="kernel_size"):
        conv2d_parameters(3, 4, 0)
    with pytest.raises(ValueError, match="d_in"):
        multihead_attention_parameters(0)
    with pytest.raises(ValueError, match="d_out"):
        attention_head_parameters(8, 0)
