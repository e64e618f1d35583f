import pytest
import torch
from hypothesis import given, settings, strategies as st
from random_tensors import qkv

from utils.attention import local_mask, naive_attention
from utils.blocks import MultiHeadAttention
from utils.complexity import (
    attention_flops,
    default_block_size,
    local_attention_flops,
    local_attention_layers,
    local_attention_pairs,
    local_attention_scores_numel,
    multihead_attention_flops,
)
from utils.efficient import (
    CheckpointedStack,
    DownsampledAttention,
    blocked_local_attention,
    downsampled_reachability,
    layers_needed,
    training_step,
)
from utils.graphs import hops_matrix, local_attention_graph, path_length
from utils.measure import count_flops, peak_memory, reachability


@settings(deadline=None, max_examples=60)
@given(n=st.integers(1, 40), r=st.integers(0, 45), causal=st.booleans(),
       block=st.one_of(st.none(), st.integers(1, 12)))
def test_blocked_equals_naive_with_local_mask(n, r, causal, block):
    q, k, v = qkv((2, 3, n, 5), seed=n * 100 + r)
    got = blocked_local_attention(q, k, v, r, causal=causal, block_size=block)
    want = naive_attention(q, k, v, local_mask(n, r, causal))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_blocked_gradients_match_naive_and_pass_gradcheck():
    q, k, v = (t.requires_grad_() for t in qkv((1, 2, 11, 4)))
    assert torch.autograd.gradcheck(lambda a, b, c: blocked_local_attention(a, b, c, 2, block_size=4), (q, k, v))
    # radius 0 leaves padded query rows with no key at all: still no NaN in any gradient
    out = blocked_local_attention(q, k, v, 0, block_size=4).sum()
    grads = torch.autograd.grad(out, (q, k, v))
    ref = torch.autograd.grad(naive_attention(q, k, v, local_mask(11, 0)).sum(), (q, k, v))
    for g, h in zip(grads, ref):
        assert not torch.isnan(g).any()
        torch.testing.assert_close(g, h)


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 70), r=st.integers(0, 20), causal=st.booleans(),
       block=st.one_of(st.none(), st.integers(1, 16)), heads=st.sampled_from([1, 2, 4]))
def test_flop_formula_is_exact(n, r, causal, block, heads):
    dh, batch = 3, 2
    q, k, v = qkv((batch, heads, n, dh), dtype=torch.float32)
    counted = count_flops(lambda a, b, c: blocked_local_attention(a, b, c, r, causal=causal, block_size=block),
                          q, k, v)
    assert counted == local_attention_flops(n, heads * dh, r, batch, heads=heads, causal=causal, block_size=block)


def test_flops_are_linear_in_n_and_below_full_attention():
    r, d = 16, 64
    f = [local_attention_flops(n, d, r) for n in (1024, 2048, 4096)]
    assert f[1] == 2 * f[0] and f[2] == 2 * f[1]
    assert f[2] < attention_flops(4096, d) / 40
    # block size b: each query pays b + 2r keys
    assert local_attention_flops(96, d, r, block_size=32) == 4 * 96 * (32 + 2 * r) * d
    assert local_attention_scores_numel(96, r, 2, 3, causal=True, block_size=32) == 2 * 3 * 96 * (32 + r)
    assert default_block_size(0) == 1 and default_block_size(7) == 7


@given(n=st.integers(1, 60), r=st.integers(0, 70), causal=st.booleans())
def test_pairs_formula_equals_mask_count(n, r, causal):
    assert local_attention_pairs(n, r, causal) == int(local_mask(n, r, causal).sum())


@given(d=st.integers(0, 500), r=st.integers(1, 50))
def test_layers_formula(d, r):
    layers = local_attention_layers(d, r)
    assert (layers - 1) * r < max(d, 1) <= layers * r


@pytest.mark.parametrize("causal", [False, True])
def test_layers_needed_measured_equals_graph(causal):
    n, r, depth = 17, 3, 6
    measured = layers_needed(lambda: MultiHeadAttention(4, mask="local", radius=r, causal=causal), n, 4, depth)
    graph = hops_matrix(local_attention_graph(n, r, depth, causal))
    assert torch.equal(measured, graph)
    for dist in (1, 3, 4, 9, 16):
        L = local_attention_layers(dist, r)
        assert int(measured[dist, 0]) == L
        assert path_length(local_attention_graph(n, r, L, causal), 0, dist) == L
        assert path_length(local_attention_graph(n, r, L - 1, causal), 0, dist) is None if L > 1 else True


@pytest.mark.parametrize("radius", [None, 0, 1, 2])
def test_downsampled_reachability_measured(radius):
    n, s, layers = 24, 3, 2
    mask = "none" if radius is None else "local"
    model = DownsampledAttention(4, s, layers=layers, mask=mask, radius=radius)
    assert torch.equal(reachability(model, n, 4), downsampled_reachability(n, s, layers, radius))


def test_downsampled_flops_divide_by_stride():
    n, d, s = 64, 16, 4
    model = DownsampledAttention(d, s, heads=2)
    x = torch.randn(1, n, d)
    assert count_flops(model, x) == multihead_attention_flops(n // s, d, heads=2)
    core_full, core_pooled = attention_flops(n, d), attention_flops(n // s, d)
    assert core_full == s * s * core_pooled
    assert model(x).shape == x.shape


def test_checkpointed_stack_same_output_and_grads_less_memory():
    torch.manual_seed(0)
    layers = [torch.nn.Sequential(torch.nn.Linear(32, 256), torch.nn.GELU(), torch.nn.Linear(256, 32))
              for _ in range(4)]
    plain = CheckpointedStack(layers)
    ckpt = CheckpointedStack(layers, checkpoint=True)
    x = torch.randn(8, 64, 32)
    torch.testing.assert_close(plain(x), ckpt(x))
    g1 = torch.autograd.grad(plain(x).square().mean(), list(plain.parameters()))
    g2 = torch.autograd.grad(ckpt(x).square().mean(), list(ckpt.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    p_plain = peak_memory(training_step(plain, x), "cpu")
    assert all(p.grad is None for p in plain.parameters())      # every step starts and ends alike
    p_ckpt = peak_memory(training_step(ckpt, x), "cpu")
    assert 0 < p_ckpt < p_plain
    assert peak_memory(training_step(ckpt, x), "cpu") == p_ckpt


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: blocked_local_attention(*qkv((1, 4, 3)), -1), r"radius must be >= 0, got"),
        (lambda: blocked_local_attention(*qkv((1, 4, 3)), 1.5), r"radius must be a whole number,"),
        (lambda: blocked_local_attention(*qkv((1, 4, 3)), 1, block_size=0), r"block_size must be >= 1, got"),
        (lambda: blocked_local_attention(torch.randn(4), torch.randn(4), torch.randn(4), 1), r"q must be a tensor of"),
        (
            lambda: blocked_local_attention(torch.randn(1, 4, 3), torch.randn(1, 5, 3), torch.randn(1, 5, 3), 1),
            r"q, k, v must have the",
        ),
        (lambda: local_attention_flops(0, 8, 1), r"n must be >= 1, got"),
        (lambda: local_attention_flops(8, 8, 1, heads=3), r"d_model \(8\) must be divisible by heads \(3\): each head"),
        (lambda: local_attention_pairs(8, -1), r"radius must be >= 0, got"),
        (lambda: local_attention_layers(5, 0), r"radius 0 never reaches distance 5:"),
        (lambda: local_attention_layers(-1, 2), r"distance must be >= 0, got"),
        (lambda: DownsampledAttention(8, 0), r"stride must be >= 1, got"),
        (lambda: DownsampledAttention(8, 3)(torch.randn(1, 10, 8)), r"n=10 is not a multiple of"),
        (lambda: DownsampledAttention(8, 2)(torch.randn(10, 8)), r"x must be \(batch, n, d_model\),"),
        (lambda: downsampled_reachability(10, 3), r"n=10 is not a multiple of"),
        (lambda: layers_needed("not callable", 8, 4, 2), r"make_layer must be a callable returning"),
        (lambda: layers_needed(lambda: MultiHeadAttention(4), 8, 4, 0), r"max_layers must be >= 1, got"),
        (lambda: CheckpointedStack([]), r"layers must be a non\-empty sequence"),
        (lambda: CheckpointedStack([torch.nn.Identity()], segments=2), r"segments=2 exceeds the 1 layers; use"),
        (lambda: training_step("model", torch.randn(2)), r"model must be an nn\.Module, got"),
    ],
)
def test_bad_inputs_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_blocked_local_attention_is_guarded():
    from utils.complexity import blocked_local_attention_bytes

    q = torch.randn(1, 2, 64, 8)
    planned = blocked_local_attention_bytes(64, 8, 4, 2, bytes_per_element=4)
    assert planned > 3 * local_attention_scores_numel(64, 4, 1, 2) * 4
    with pytest.raises(ValueError, match="refusing blocked local attention"):
        blocked_local_attention(q, q, q, 4, limit_bytes=planned - 1)
    assert blocked_local_attention(q, q, q, 4, limit_bytes=planned).shape == q.shape
    m = torch.empty(1, 2, 10**6, 8, device="meta")   # meta tensors allocate nothing: not guarded
    assert blocked_local_attention(m, m, m, 4).shape == m.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")
def test_cuda_blocked_local_attention_matches_naive():
    q, k, v = (torch.randn(1, 2, 300, 16, device="cuda", dtype=torch.float64) for _ in range(3))
    expected = naive_attention(q, k, v, local_mask(300, 7, device="cuda"))
    assert torch.allclose(blocked_local_attention(q, k, v, 7), expected, atol=1e-10)


def test_layers_needed_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    layers_needed(lambda: MultiHeadAttention(8, mask="local", radius=1), 6, 8, max_layers=3)
    assert torch.equal(torch.rand(3), expected)
