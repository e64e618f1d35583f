"""Serving: grouped-query attention (utils.serving) and the decode-roofline closed forms (utils.complexity)."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.blocks import MultiHeadAttention
from utils.complexity import (
    compute_bound_batch,
    decode_intensity,
    decode_step_flops,
    decode_step_time_s,
    grouped_kv_cache_bytes,
    kv_cache_bytes,
    window_path_layers,
)
from utils.measure import count_flops, reachability
from utils.models import TinyDecoder, decode_step_bytes
from utils.serving import GroupedQueryAttention, gqa_decode_step, gqa_from_mha
from utils.streaming import RingKVCache

# ---------------------------------------------------------------- grouped-query attention

def test_gqa_with_all_heads_is_multi_head_attention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 6, mask="causal", impl="naive").double()
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    torch.testing.assert_close(gqa_from_mha(mha)(x), mha(x))


def test_mean_pooled_conversion_changes_the_function_but_keeps_its_shape():
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, 6, mask="causal", impl="naive").double()
    x = torch.randn(1, 5, 24, dtype=torch.float64)
    mqa = gqa_from_mha(mha, 1)
    assert mqa.kv_heads == 1 and mqa(x).shape == x.shape
    assert not torch.allclose(mqa(x), mha(x))
    # the pooled key projection is the mean of the six heads' key projections
    keys = mha.qkv.weight.view(3, 6, 4, 24)[1]
    torch.testing.assert_close(mqa.kv.weight[:4], keys.mean(dim=0))


@settings(deadline=None, max_examples=10)
@given(kv_heads=st.sampled_from([1, 2, 3, 6]), n=st.integers(1, 9), window=st.one_of(st.none(), st.integers(1, 4)))
def test_cached_decoding_equals_the_full_pass(kv_heads, n, window):
    torch.manual_seed(1)
    layer = GroupedQueryAttention(24, 6, kv_heads, window=window).double()
    x = torch.randn(2, n, 24, dtype=torch.float64)
    if window is None:
        cache = layer.new_cache(2, n)
        expected = grouped_kv_cache_bytes(2, kv_heads, n, 4, 1, 8)
    else:
        cache = RingKVCache(2, kv_heads, window, 4, dtype=torch.float64)
        expected = grouped_kv_cache_bytes(2, kv_heads, n, 4, 1, 8, window=window)
    stepwise = torch.cat([layer(x[:, t:t + 1], cache, 0, t) for t in range(n)], dim=1)
    torch.testing.assert_close(stepwise, layer(x))
    assert cache.nbytes == expected if window is None or n >= window else cache.nbytes >= expected


def test_prefill_then_decode_equals_the_full_pass():
    torch.manual_seed(2)
    layer = GroupedQueryAttention(16, 4, 2).double()
    x = torch.randn(1, 10, 16, dtype=torch.float64)
    cache = layer.new_cache(1, 10)
    first = layer(x[:, :6], cache, 0, 0)
    rest = [layer(x[:, t:t + 1], cache, 0, t) for t in range(6, 10)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), layer(x))


def test_attention_flops_do_not_depend_on_the_key_value_heads():
    counts = {}
    for g in (8, 2, 1):
        torch.manual_seed(0)
        layer = GroupedQueryAttention(64, 8, g)
        step = gqa_decode_step(layer, 20, batch=3)
        d, dk = 64, 8
        projections = 2 * 3 * (d * d + d * 2 * g * dk + d * d)
        counts[g] = count_flops(step) - projections
    assert len(set(counts.values())) == 1 and counts[1] == 4 * 3 * 20 * 64   # QK^T and A·V over 20 positions


def test_decode_step_cache_weighs_the_formula_and_advances():
    layer = GroupedQueryAttention(32, 4, 2)
    step = gqa_decode_step(layer, 7, batch=2)
    assert step.cache.nbytes == grouped_kv_cache_bytes(2, 2, 7, 8, 1, 4)
    assert step().shape == (2, 1, 32) and step.cache.length == 7
    assert step().shape == (2, 1, 32)          # it rewinds, so it can be timed many times


def test_window_reach_measured_by_autograd():
    torch.manual_seed(0)
    for w, depth in ((2, 2), (3, 3)):
        stack = nn.Sequential(*[GroupedQueryAttention(8, 2, 1, window=w) for _ in range(depth)])
        reach = reachability(stack, 12, 8)[11]
        farthest = max(s for s in range(12) if reach[11 - s])
        assert farthest == depth * w and window_path_layers(farthest, w) == depth


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=32, heads=4, kv_heads=3), "divide"),
    (dict(d_model=32, heads=4, kv_heads=0), "kv_heads"),
    (dict(d_model=30, heads=4, kv_heads=1), "heads"),
    (dict(d_model=32, heads=4, kv_heads=2, window=0), "window"),
])
def test_bad_layers_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GroupedQueryAttention(**kwargs)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="MultiHeadAttention"):
        gqa_from_mha(MultiHeadAttention(8, 2))                       # not causal
    with pytest.raises(ValueError, match="GroupedQueryAttention"):
        gqa_decode_step(nn.Linear(2, 2), 4)
    with pytest.raises(ValueError, match="context"):
        gqa_decode_step(GroupedQueryAttention(8, 2, 1), 0)
    with pytest.raises(ValueError, match="start"):
        GroupedQueryAttention(8, 2, 1)(torch.randn(1, 2, 8), None, 0, 3)


# ---------------------------------------------------------------- closed forms

@settings(deadline=None, max_examples=30)
@given(batch=st.integers(1, 8), g=st.integers(1, 8), n=st.integers(1, 500), dk=st.integers(1, 64),
       layers=st.integers(1, 4), window=st.one_of(st.none(), st.integers(1, 600)))
def test_grouped_cache_is_the_kv_cache_of_g_heads_capped_by_the_window(batch, g, n, dk, layers, window):
    got = grouped_kv_cache_bytes(batch, g, n, dk, layers, 2, window=window)
    assert got == kv_cache_bytes(batch, g, n if window is None else min(n, window), dk, layers, 2)
    if window is not None and n > window:
        assert got == grouped_kv_cache_bytes(batch, g, n + 1000, dk, layers, 2, window=window)   # bounded


def test_decode_intensity_of_a_real_decoder_is_about_two_over_b_per_sequence():
    model = TinyDecoder(vocab=64, d_model=128, heads=4, layers=2, d_ff=512)
    f = decode_step_flops(8, 128, 512, 2, 64, use_cache=True)
    k = kv_cache_bytes(1, 4, 8, 32, 2, 4)
    W = decode_step_bytes(model, 8) - k
    for batch in (1, 4, 16):
        exact = decode_step_flops(8, 128, 512, 2, 64, use_cache=True, batch=batch) / decode_step_bytes(model, 8, batch)
        assert decode_intensity(batch, f, W, k) == pytest.approx(exact, rel=0.02)
    assert 0.45 < decode_intensity(1, f, W, k) < 0.5


@settings(deadline=None, max_examples=40)
@given(f=st.floats(1e3, 1e10), W=st.floats(0, 1e10), k=st.floats(0, 1e9), peak=st.floats(1e9, 1e15),
       beta=st.floats(1e9, 1e13))
def test_compute_bound_batch_is_the_first_batch_at_the_ridge(f, W, k, peak, beta):
    if W + k == 0:
        return
    b = compute_bound_batch(f, W, k, peak, beta)
    ridge = peak / beta
    if b is None:
        assert f / k <= ridge if k else False
    else:
        assert decode_intensity(b, f, W, k) >= ridge * (1 - 1e-12)
        assert b == 1 or decode_intensity(b - 1, f, W, k) < ridge


def test_compute_bound_batch_by_hand():
    # 2 MFLOP per sequence, 4 MB of weights, no cache, ridge 10: B = 20
    assert compute_bound_batch(2e6, 4e6, 0, 100e9, 10e9) == 20
    assert compute_bound_batch(2e6, 4e6, 1e6, 100e9, 10e9) is None        # f/k = 2 < 10
    assert compute_bound_batch(2e6, 4e6, 1e5, 100e9, 10e9) == 40          # 40·2e6 / (4e6 + 40·1e5) = 10


def test_step_time_is_the_larger_roof():
    assert decode_step_time_s(1e9, 1e9, 1e12, 1e10) == pytest.approx(0.1)     # bytes bound
    assert decode_step_time_s(1e12, 1e6, 1e12, 1e10) == pytest.approx(1.0)    # compute bound


@settings(deadline=None, max_examples=40)
@given(distance=st.integers(0, 10_000), window=st.integers(1, 500))
def test_window_path_layers(distance, window):
    layers = window_path_layers(distance, window)
    assert layers == max(1, math.ceil(distance / window))
    assert (layers - 1) * window < max(distance, 1) <= layers * window or distance == 0
    assert window_path_layers(distance, None) == 1


@pytest.mark.parametrize("call", [
    lambda: grouped_kv_cache_bytes(1, 1, 8, 8, window=0),
    lambda: grouped_kv_cache_bytes(1, 0, 8, 8),
    lambda: decode_intensity(0, 1, 1, 1),
    lambda: decode_intensity(1, 1, 0, 0),
    lambda: decode_intensity(1, 1, -1, 1),
    lambda: compute_bound_batch(1, 1, 1, 0, 1),
    lambda: decode_step_time_s(1, float("nan"), 1, 1),
    lambda: window_path_layers(-1, 4),
    lambda: window_path_layers(4, 0),
])
def test_bad_closed_form_input_raises(call):
    with pytest.raises(ValueError):
        call()
