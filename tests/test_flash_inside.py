"""FlashAttention's arithmetic (utils.complexity._flash): block sizes, the SRAM crossover, backward FLOPs —
each closed form against a count or a measurement."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.attention import naive_attention, online_softmax_attention
from utils.complexity import (
    attention_backward_flops,
    attention_flops,
    flash_block_sizes,
    naive_attention_stages,
    tiled_attention_bytes,
    tiled_attention_crossover_sram_bytes,
)
from utils.measure import count_flops


def _algorithm1_moved(n, d, block_r, block_c):
    """Elements Algorithm 1 moves between HBM and SRAM, counted by walking its two loops."""
    moved = n * d + 2 * n                                   # initialise O, l, m
    for c0 in range(0, n, block_c):
        moved += 2 * min(block_c, n - c0) * d               # load K_j, V_j
        for r0 in range(0, n, block_r):
            rows = min(block_r, n - r0)
            moved += rows * d + 2 * rows * d + 4 * rows     # load Q_i, O_i, l_i, m_i; write O_i, l_i, m_i
    return moved


def test_block_sizes_of_dao_et_al_algorithm_1():
    assert flash_block_sizes(100 * 1024, 64) == (64, 200)          # M = 51200 fp16 elements: 51200 / 256
    assert flash_block_sizes(100 * 1024, 64, bytes_per_element=4) == (64, 100)
    assert flash_block_sizes(1000, 16, bytes_per_element=1) == (16, 16)   # ⌈1000 / 64⌉ = 16
    assert flash_block_sizes(4 * 64 * 2, 64) == (1, 1)             # the smallest SRAM: one row of each


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), d=st.sampled_from([8, 16, 32, 64]), m=st.integers(256, 20_000))
def test_tiled_bytes_equal_the_walked_loops_with_these_blocks(n, d, m):
    m = max(m, 4 * d)
    block_r, block_c = flash_block_sizes(m, d, bytes_per_element=1)
    assert 1 <= block_r <= min(block_c, d)
    assert block_r * block_c <= d * -(-m // (4 * d))                # the score tile: about M / 4
    assert tiled_attention_bytes(n, d, m, bytes_per_element=1) == _algorithm1_moved(n, d, block_r, block_c)


@pytest.mark.parametrize("n, d", [(512, 64), (4096, 64), (4096, 128), (1000, 32)])
def test_crossover_is_the_least_sram_where_tiling_wins(n, d):
    sram = tiled_attention_crossover_sram_bytes(n, d)
    naive = sum(s.bytes_moved for s in naive_attention_stages(n, d))
    assert tiled_attention_bytes(n, d, sram) <= naive
    if sram > 4 * d * 2:
        assert tiled_attention_bytes(n, d, sram - 2) > naive
    if n >= 16 * d:
        assert 0.95 < sram / (2 * d * d * 2) < 1.1                  # about 2·d² elements for n ≫ d


def test_backward_flops_counted_on_autograd_and_on_a_recomputing_backward():
    torch.manual_seed(0)
    batch, heads, n, d = 2, 3, 32, 8
    q, k, v, grad = (torch.randn(batch, heads, n, d, dtype=torch.float64) for _ in range(4))

    def naive_step(q, k, v):
        q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
        naive_attention(q, k, v).backward(grad)

    forward = attention_flops(n, heads * d, batch, heads=heads)
    assert count_flops(naive_step, q, k, v) == forward + attention_backward_flops(n, d, batch, heads)

    def recomputing_backward(q, k, v):                          # the products FlashAttention's backward runs
        scale = 1 / math.sqrt(d)
        s = q @ k.transpose(-2, -1) * scale                     # recomputed scores
        p = torch.softmax(s, dim=-1)
        dv = p.transpose(-2, -1) @ grad
        dp = grad @ v.transpose(-2, -1)
        ds = p * (dp - (dp * p).sum(-1, keepdim=True))
        return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv

    assert count_flops(recomputing_backward, q, k, v) == attention_backward_flops(n, d, batch, heads, recompute=True)
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    naive_attention(qg, kg, vg).backward(grad)
    for got, want in zip(recomputing_backward(q, k, v), (qg.grad, kg.grad, vg.grad)):
        torch.testing.assert_close(got, want)
    assert attention_backward_flops(n, d, recompute=True) * 4 == 5 * attention_backward_flops(n, d)


def test_online_softmax_with_dao_block_sizes_matches_sdpa():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 150, 16, dtype=torch.float64) for _ in range(3))
    _, block_c = flash_block_sizes(1000, 16, bytes_per_element=1)
    for causal in (False, True):
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        torch.testing.assert_close(online_softmax_attention(q, k, v, block_size=block_c, causal=causal), want)


@pytest.mark.parametrize("call, match", [
    (lambda: flash_block_sizes(255, 64), r"fewer than 4·head_dim=256"),
    (lambda: flash_block_sizes(1024, 0), r"head_dim must be >= 1"),
    (lambda: flash_block_sizes(1024, 8, bytes_per_element=0), r"bytes_per_element must be >= 1"),
    (lambda: tiled_attention_crossover_sram_bytes(8, 64), r"use n > head_dim / 3"),
    (lambda: tiled_attention_crossover_sram_bytes(0, 64), r"n must be >= 1"),
    (lambda: attention_backward_flops(16, 8, recompute="yes"), r"recompute must be True or False"),
    (lambda: attention_backward_flops(16, 8, heads=0), r"heads must be >= 1"),
])
def test_bad_arguments_say_what_to_change(call, match):
    with pytest.raises(ValueError, match=match):
        call()
