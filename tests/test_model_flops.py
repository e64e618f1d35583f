"""FLOPs of whole models, per token and for training (utils.complexity._model) vs FlopCounterMode."""

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.blocks import TransformerBlock
from utils.complexity import (
    BACKWARD_TO_FORWARD,
    context_for_undercount,
    encoder_layer_flops,
    flops_per_token,
    kaplan_forward_flops_per_token,
    multihead_attention_flops,
    non_embedding_parameters,
    six_nd_flops,
    six_nd_undercount,
    training_flops_per_token,
    transformer_stack_flops,
)
from utils.measure import count_flops
from utils.models import TinyDecoder


def _lm_train_step(model, tokens):
    logits = model(tokens)
    nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1)).backward()


@settings(deadline=None, max_examples=8)
@given(n=st.integers(1, 12), heads=st.sampled_from([1, 2, 4]), layers=st.integers(1, 3), batch=st.integers(1, 2),
       mult=st.integers(1, 3))
def test_stack_matches_nn_transformer_encoder(n, heads, layers, batch, mult):
    d, d_ff = 8, 8 * mult
    layer = nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, batch_first=True)
    stack = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    measured = count_flops(stack, torch.randn(batch, n, d))
    assert measured == transformer_stack_flops(n, d, heads, d_ff, layers, batch)


def test_causal_block_stack_is_counted_as_full():
    d, n = 16, 10
    stack = nn.Sequential(*[TransformerBlock(d, 2, 32, impl=impl, mask="causal") for impl in ("naive", "sdpa")])
    measured = count_flops(stack, torch.randn(2, n, d))
    assert measured == transformer_stack_flops(n, d, 2, 32, 2, 2) > transformer_stack_flops(n, d, 2, 32, 2, 2,
                                                                                              causal=True)


def test_tiny_decoder_forward_backward_and_cached_step():
    torch.manual_seed(0)
    vocab, d, heads, layers, d_ff, b, n = 11, 16, 2, 2, 24, 2, 9
    model = TinyDecoder(vocab, d, heads, layers, d_ff, max_len=32)
    tokens = torch.randint(0, vocab, (b, n))
    forward = count_flops(model, tokens)
    assert forward == transformer_stack_flops(n, d, heads, d_ff, layers, b, vocab=vocab)
    total = count_flops(lambda t: _lm_train_step(model, t), tokens)
    assert total - forward == BACKWARD_TO_FORWARD * forward
    assert Fraction(total, b * n) == training_flops_per_token(n, d, d_ff, layers, vocab=vocab)
    # one cached decoding step: one new query against n_kv = n keys
    cache = model.new_cache(b, 32)
    with torch.no_grad():
        model(tokens[:, :-1], cache)
        step = count_flops(lambda t: model(t, cache, start=n - 1), tokens[:, -1:])
    assert step == transformer_stack_flops(1, d, heads, d_ff, layers, b, n_kv=n, vocab=vocab)


def test_backward_skips_the_input_gradient_of_raw_data():
    d, n, b = 8, 6, 2
    stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True), 2,
                                  enable_nested_tensor=False)
    x = torch.randn(b, n, d)
    forward = count_flops(stack, x)

    def step(inp):
        stack(inp).sum().backward()

    assert count_flops(step, x) - forward == 2 * forward - 2 * b * n * d * 3 * d   # no ∂x for in_proj
    assert count_flops(step, x.requires_grad_(True)) - forward == 2 * forward


@settings(deadline=None, max_examples=15)
@given(n=st.integers(1, 8), n_kv=st.integers(1, 8), kdim=st.integers(1, 9), vdim=st.integers(1, 9),
       batch=st.integers(1, 2))
def test_multihead_kdim_vdim_match_module(n, n_kv, kdim, vdim, batch):
    mha = nn.MultiheadAttention(8, 2, kdim=kdim, vdim=vdim, batch_first=True)
    q, k, v = torch.randn(batch, n, 8), torch.randn(batch, n_kv, kdim), torch.randn(batch, n_kv, vdim)
    measured = count_flops(lambda a, b_, c: mha(a, b_, c, need_weights=False), q, k, v)
    assert measured == multihead_attention_flops(n, 8, batch, n_kv=n_kv, heads=2, kdim=kdim, vdim=vdim)


@given(n=st.integers(1, 300), d=st.integers(1, 64), f=st.integers(1, 256), b=st.integers(1, 4))
def test_defaults_unchanged(n, d, f, b):
    assert encoder_layer_flops(n, d, 1, f, b) == 8 * b * n * d * d + 4 * b * n * n * d + 4 * b * n * d * f
    assert multihead_attention_flops(n, d, b, kdim=d, vdim=d) == multihead_attention_flops(n, d, b)


@given(n=st.integers(1, 5000), d=st.integers(1, 2048), layers=st.integers(1, 48))
def test_kaplan_is_the_causal_average(n, d, layers):
    exact = flops_per_token(n, d, None, layers, causal=True)
    assert exact - kaplan_forward_flops_per_token(n, d, None, layers) == 2 * layers * d
    assert flops_per_token(n, d, None, layers) - exact == 2 * layers * d * (n - 1)
    assert 2 * non_embedding_parameters(d, None, layers) == flops_per_token(n, d, None, layers) - 4 * layers * n * d


@given(n=st.integers(1, 10**5), d=st.integers(1, 4096))
def test_undercount_closed_form(n, d):
    assert six_nd_undercount(n, d) == Fraction(n, 6 * d + n)
    assert six_nd_undercount(n, d, causal=True) == Fraction(n + 1, 12 * d + n + 1)


@settings(max_examples=40)
@given(d=st.integers(1, 2048), ratio=st.integers(1, 8), causal=st.booleans(),
       f=st.fractions(Fraction(1, 100), Fraction(9, 10)))
def test_context_for_undercount_is_the_smallest(d, ratio, causal, f):
    n = context_for_undercount(d, ratio * d, f, causal=causal)
    assert six_nd_undercount(n, d, ratio * d, causal=causal) >= f
    assert n == 1 or six_nd_undercount(n - 1, d, ratio * d, causal=causal) < f


def test_ten_percent_points():
    assert context_for_undercount(768) == context_for_undercount(768, fraction=0.1) == 512   # n/d = 2/3
    assert context_for_undercount(768, causal=True) == 1023                                 # (n+1)/d = 4/3
    assert six_nd_flops(10, 100) == 6000


@pytest.mark.parametrize("call", [
    lambda: transformer_stack_flops(0, 8, 2, 16, 1),
    lambda: transformer_stack_flops(4, 8, 3, 16, 1),
    lambda: transformer_stack_flops(4, 8, 2, 16, 0),
    lambda: transformer_stack_flops(4, 8, 2, 16, 1, n_kv=2),
    lambda: transformer_stack_flops(4, 8, 2, 16, 1, vocab=0),
    lambda: flops_per_token(0, 8, 16, 1),
    lambda: non_embedding_parameters(8, 16, 1, d_attn=0),
    lambda: kaplan_forward_flops_per_token(0, 8, 16, 1),
    lambda: six_nd_flops(0, 10),
    lambda: six_nd_undercount(4, 0),
    lambda: context_for_undercount(8, fraction=1),
    lambda: context_for_undercount(8, fraction=0),
    lambda: context_for_undercount(8, fraction="0.1"),
    lambda: multihead_attention_flops(4, 8, kdim=0),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
