import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.blocks import MultiHeadAttention
from utils.conv import ConvStack
from utils.positional import (
    equivariance_gap,
    frequencies,
    offset_dot_product,
    relative_rotation,
    sinusoidal,
)

even_d = st.integers(1, 32).map(lambda h: 2 * h)


def test_seed_formula_by_hand():
    pe = sinusoidal(5, 6, dtype=torch.float64)
    for pos in range(5):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert math.isclose(pe[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-15)
            assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-15)


@given(n=st.integers(1, 40), d=even_d)
def test_shape_dtype_and_range(n, d):
    pe = sinusoidal(n, d)
    assert pe.shape == (n, d) and pe.dtype == torch.float32
    assert pe.abs().max() <= 1
    torch.testing.assert_close(pe[0, 0::2], torch.zeros(d // 2))
    torch.testing.assert_close(pe[0, 1::2], torch.ones(d // 2))
    # every row has norm sqrt(d/2): sin^2 + cos^2 = 1 per pair
    torch.testing.assert_close(sinusoidal(n, d, dtype=torch.float64).norm(dim=1),
                               torch.full((n,), math.sqrt(d / 2), dtype=torch.float64))


@settings(max_examples=50)
@given(p=st.integers(0, 500), delta=st.integers(-200, 200), d=even_d)
def test_dot_product_depends_on_offset_only(p, delta, d):
    q = max(p, p + delta, 0)
    pe = sinusoidal(q + 1 + abs(delta) + p, d, dtype=torch.float64)
    a, b = p, p + delta
    if b < 0:
        a, b = a - delta, b - delta
    torch.testing.assert_close(pe[a] @ pe[b], offset_dot_product(b - a, d), rtol=0, atol=1e-10)
    torch.testing.assert_close(offset_dot_product(delta, d), offset_dot_product(-delta, d))


@settings(max_examples=30)
@given(p=st.integers(0, 300), delta=st.integers(0, 100), d=even_d)
def test_relative_rotation_moves_every_position(p, delta, d):
    pe = sinusoidal(p + delta + 1, d, dtype=torch.float64)
    r = relative_rotation(delta, d)
    torch.testing.assert_close(r @ pe[p], pe[p + delta], rtol=0, atol=1e-10)
    torch.testing.assert_close(r @ r.T, torch.eye(d, dtype=torch.float64))


def test_frequencies_run_from_one_down_to_about_one_over_base():
    w = frequencies(8)
    assert w[0] == 1 and (w[1:] < w[:-1]).all()
    assert math.isclose(w[-1].item(), 10000 ** (-6 / 8))


@settings(deadline=None, max_examples=10)
@given(n=st.integers(2, 12), seed=st.integers(0, 100))
def test_attention_without_position_is_equivariant_and_others_are_not(n, seed):
    torch.manual_seed(seed)
    x = torch.randn(1, n, 8)
    attn = MultiHeadAttention(8, heads=2, impl="naive")
    assert equivariance_gap(attn, x, seed=seed) < 1e-12
    assert equivariance_gap(MultiHeadAttention(8, heads=2, mask="causal", impl="naive"), x, seed=seed) > 1e-6
    assert equivariance_gap(nn.RNN(8, 8, batch_first=True), x, seed=seed) > 1e-6
    assert equivariance_gap(ConvStack(8, 3, 2, padding="causal"), x, seed=seed) > 1e-6


def test_adding_pe_breaks_equivariance():
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, heads=2, impl="naive").double()
    pe = sinusoidal(10, 8, dtype=torch.float64)
    x = torch.randn(1, 10, 8, dtype=torch.float64)
    assert equivariance_gap(lambda z: attn(z + pe), x) > 1e-3


def test_explicit_perm_is_the_one_tested():
    # x + reverse(x) commutes with the reversal of the positions but not with a cyclic shift: the gap
    # must follow the perm that is passed, not the default random one.
    x = torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def mirror(z):
        return z + z.flip(1)

    assert equivariance_gap(mirror, x, perm=[5, 4, 3, 2, 1, 0]) < 1e-12
    assert equivariance_gap(mirror, x, perm=[1, 2, 3, 4, 5, 0]) > 1e-3
    assert equivariance_gap(mirror, x, perm=torch.tensor([1, 2, 3, 4, 5, 0])) > 1e-3


@pytest.mark.parametrize("call, message", [
    (lambda: sinusoidal(4, 5), "d must be even"),
    (lambda: sinusoidal(4, 0), "d must be >= 2"),
    (lambda: sinusoidal(4, 1), "d must be >= 2"),
    (lambda: sinusoidal(0, 4), "n must be >= 1"),
    (lambda: sinusoidal(4.0, 4), "n must be a whole number"),
    (lambda: sinusoidal(4, True), "d must be a whole number"),
    (lambda: sinusoidal(4, 4, base=0), "base must be > 0"),
    (lambda: relative_rotation(1, 3), "d must be even"),
    (lambda: equivariance_gap(lambda z: z, torch.randn(4, 3)), r"\(batch, n, d\)"),
    (lambda: equivariance_gap(lambda z: z, torch.randn(1, 1, 3)), "at least two positions"),
    (lambda: equivariance_gap(lambda z: z, torch.randn(1, 3, 3), perm=[0, 0, 1]), "permutation of"),
])
def test_bad_inputs_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
