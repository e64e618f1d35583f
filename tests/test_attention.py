import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.attention import SelfAttention, causal_mask, local_mask, naive_attention, sdpa_attention


@given(n=st.integers(1, 20), radius=st.integers(0, 25), causal=st.booleans())
def test_local_mask_matches_definition(n, radius, causal):
    m = local_mask(n, radius, causal)
    for j in range(n):
        for i in range(n):
            expected = (0 <= j - i <= radius) if causal else abs(j - i) <= radius
            assert bool(m[j, i]) == expected


def test_local_mask_with_large_radius_is_full_or_causal():
    assert local_mask(7, 10).all()
    assert torch.equal(local_mask(7, 10, causal=True), causal_mask(7))


@pytest.mark.parametrize("mask_kind", ["none", "causal"])
def test_naive_matches_sdpa_math(mask_kind):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, dtype=torch.float64) for _ in range(3))
    mask = causal_mask(16) if mask_kind == "causal" else None
    torch.testing.assert_close(naive_attention(q, k, v, mask), sdpa_attention(q, k, v, mask, backend="math"))


def test_attention_rows_are_convex_combinations():
    q, k, v = (torch.randn(1, 1, 10, 4) for _ in range(3))
    _, w = naive_attention(q, k, v, local_mask(10, 2), return_weights=True)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 1, 10))


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=6, heads=4), "divisible"),
    (dict(d_model=8, mask="local"), "radius"),
    (dict(d_model=8, mask="sparse"), "mask must be one of"),
    (dict(d_model=0), "d_model must be >= 1"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelfAttention(**kwargs)


def test_bad_mask_arguments():
    with pytest.raises(ValueError, match="n must be >= 1"):
        local_mask(0, 1)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        local_mask(5, -1)
    with pytest.raises(ValueError, match="backend must be one of"):
        q = torch.randn(1, 1, 4, 2)
        sdpa_attention(q, q, q, backend="fastest")


@settings(deadline=None, max_examples=10)
@given(n=st.integers(1, 12), heads=st.sampled_from([1, 2]), impl=st.sampled_from(["naive", "sdpa"]))
def test_self_attention_shapes(n, heads, impl):
    layer = SelfAttention(8, heads=heads, impl=impl)
    assert layer(torch.randn(2, n, 8)).shape == (2, n, 8)
