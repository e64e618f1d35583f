import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from random_tensors import qkv

from utils.attention import naive_attention
from utils.graphs import conv_graph, hops_matrix, local_attention_graph, max_path_length, rnn_graph
from utils.measure import count_flops, decay_rate_per_step, gradient_norms_vs_distance, reachability
from utils.mixers import (
    DiagonalSSM,
    MixerLayer,
    causal_linear_attention,
    chunked_linear_attention,
    linear_attention,
    linear_attention_flops,
    linear_attention_state_bytes,
    linear_attention_steps,
    mask_graph,
    mixer_layer_flops,
    op_tally,
    parallel_scan,
    recurrent_linear_attention,
    scan_multiplies,
    scan_steps,
    sequential_scan,
    stack_graphs,
    strided_attention,
    strided_attention_flops,
    strided_mask,
    strided_offsets,
    strided_pairs,
)
from utils.receptive import doubling_dilations

# --------------------------------------------------------------------------------- strided attention

@settings(deadline=None, max_examples=25)
@given(n=st.integers(1, 30), stride=st.integers(1, 35))
def test_strided_equals_masked_naive_and_counts(n, stride):
    q, k, v = qkv((2, 2, n, 3), seed=n * 50 + stride)
    torch.testing.assert_close(strided_attention(q, k, v, stride), naive_attention(q, k, v, strided_mask(n, stride)))
    assert int(strided_mask(n, stride).sum()) == strided_pairs(n, stride)
    assert len(strided_offsets(n, stride)) == min(stride, n) + (n - 1) // stride * (stride < n)


def test_strided_flops_measured():
    q, k, v = qkv((2, 3, 50, 4))
    for stride in (1, 7, 50):
        measured = count_flops(lambda a, b, c, s=stride: strided_attention(a, b, c, s), q, k, v)
        assert measured == strided_attention_flops(50, 4, stride, batch=2, heads=3)


def test_strided_path_two_hops():
    n, stride = 40, 6
    one, two = mask_graph(strided_mask(n, stride), 1), mask_graph(strided_mask(n, stride), 2)
    assert max_path_length(two) == 2
    assert bool(hops_matrix(two).tril().ge(1).tril().sum() == n * (n + 1) // 2)
    assert int(hops_matrix(one)[stride + 1, 0]) == -1          # one layer misses distance l + 1
    layer = MixerLayer(8, "strided", stride=stride)
    measured = reachability(torch.nn.Sequential(layer, MixerLayer(8, "strided", stride=stride)), n, 8)
    assert bool((measured == torch.ones(n, n, dtype=torch.bool).tril()).all())
    assert bool((reachability(layer, n, 8) == strided_mask(n, stride)).all())


# --------------------------------------------------------------------------------- linear attention

@settings(deadline=None, max_examples=15)
@given(n=st.integers(1, 20), chunk=st.integers(1, 25))
def test_linear_forms_agree(n, chunk):
    q, k, v = qkv((2, n, 4), seed=n + 100 * chunk)
    want = causal_linear_attention(q, k, v)
    got, state = recurrent_linear_attention(q, k, v)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(chunked_linear_attention(q, k, v, chunk), want)
    assert state.shape == (2, 4, 5)
    # the last causal output sees every key: it equals the non-causal form there
    torch.testing.assert_close(want[..., -1, :], linear_attention(q, k, v)[..., -1, :])


def test_linear_state_continues_a_stream():
    q, k, v = qkv((1, 12, 3))
    whole, _ = recurrent_linear_attention(q, k, v)
    first, state = recurrent_linear_attention(q[:, :5], k[:, :5], v[:, :5])
    second, _ = recurrent_linear_attention(q[:, 5:], k[:, 5:], v[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


def test_linear_flops_and_bytes_measured():
    q, k, v = qkv((2, 3, 21, 4))
    assert count_flops(linear_attention, q, k, v) == linear_attention_flops(21, 4, 2, 3)
    assert count_flops(causal_linear_attention, q, k, v) == linear_attention_flops(21, 4, 2, 3, form="causal")
    assert count_flops(lambda a, b, c: recurrent_linear_attention(a, b, c)[0], q, k, v) == \
        linear_attention_flops(21, 4, 2, 3, form="recurrent")
    for chunk in (1, 5, 21, 30):
        assert count_flops(lambda a, b, c, s=chunk: chunked_linear_attention(a, b, c, s), q, k, v) == \
            linear_attention_flops(21, 4, 2, 3, form="chunked", chunk=chunk)
    _, state = recurrent_linear_attention(*(t.half() for t in (q, k, v)))
    assert state.nbytes == linear_attention_state_bytes(2, 3, 4, 2)
    assert linear_attention_steps(21, "recurrent") == 21 and linear_attention_steps(21, "chunked", 5) == 5
    assert linear_attention_steps(21) == 1


# --------------------------------------------------------------------------------- the scan

@settings(deadline=None, max_examples=25)
@given(n=st.integers(1, 70), d=st.integers(1, 4))
def test_scans_agree_and_steps_are_measured(n, d):
    g = torch.Generator().manual_seed(n * 10 + d)
    a = torch.rand(n, d, generator=g, dtype=torch.float64)
    u = torch.randn(2, n, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(parallel_scan(a, u), sequential_scan(a, u))
    seq, par = op_tally(sequential_scan, a, u), op_tally(parallel_scan, a, u)
    assert seq["addcmul"].calls == scan_steps(n, "sequential") == n
    assert par.get("addcmul", (0, 0))[0] == scan_steps(n, "parallel") == math.ceil(math.log2(n))
    assert seq["addcmul"].elements == 2 * scan_multiplies(n, d, "sequential")
    work = par.get("addcmul", (0, 0))[1] + par.get("mul", (0, 0))[1]
    assert work == 2 * scan_multiplies(n, d, "parallel")


def test_scan_closed_form_recurrence():
    a = torch.full((3,), 0.5, dtype=torch.float64)
    u = torch.zeros(5, 3, dtype=torch.float64)
    u[0] = 1.0
    h = parallel_scan(a, u)
    torch.testing.assert_close(h[:, 0], torch.tensor([1, 0.5, 0.25, 0.125, 0.0625], dtype=torch.float64))


def test_scan_graph_is_a_doubling_causal_conv():
    n = 16
    layers = scan_steps(n)
    g = conv_graph(n, 2, layers, doubling_dilations(layers), causal=True)
    assert max_path_length(g) == layers == 4
    ssm = DiagonalSSM(4, 0.8)
    assert bool((reachability(ssm, n, 4) == torch.ones(n, n, dtype=torch.bool).tril()).all())


def test_ssm_gradient_decays_like_a():
    torch.manual_seed(0)
    for form in ("parallel", "sequential"):
        ssm = DiagonalSSM(6, 0.85, form=form)
        norms = gradient_norms_vs_distance(ssm, torch.randn(40, 6))
        assert abs(decay_rate_per_step(norms) - 0.85) < 1e-6


# --------------------------------------------------------------------------------- layers and graphs

def test_mixer_layer_flops_measured():
    x = torch.randn(2, 30, 12)
    for core, opt in [("full", {}), ("local", {"radius": 4}), ("strided", {"stride": 5}), ("linear", {"chunk": 8})]:
        layer = MixerLayer(12, core, heads=3, **opt)
        assert count_flops(layer, x) == mixer_layer_flops(30, 12, core, heads=3, batch=2, **opt)
        assert layer(x).shape == x.shape


def test_hybrid_graphs():
    n, r = 32, 3
    local = local_attention_graph(n, r, layers=3, causal=True)
    hybrid = stack_graphs(local, mask_graph(torch.ones(n, n, dtype=torch.bool).tril(), 1))
    hops = hops_matrix(hybrid)
    assert int(hops[n - 1, 0]) == 4 and int(hops[2 * r, 0]) == 2
    conv_rnn = stack_graphs(conv_graph(n, 5, 2, causal=True), rnn_graph(n))
    assert int(hops_matrix(conv_rnn)[n - 1, 0]) == 2 + 1 + (n - 1 - 8)


# --------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call", [
    lambda: strided_mask(0, 2),
    lambda: strided_mask(5, 0),
    lambda: strided_pairs(4, -1),
    lambda: linear_attention_flops(10, 4, form="sparse"),
    lambda: linear_attention_flops(10, 4, form="chunked"),
    lambda: linear_attention_flops(10, 4, form="parallel", chunk=3),
    lambda: scan_steps(0),
    lambda: scan_multiplies(4, 2, form="tree"),
    lambda: MixerLayer(10, "full", heads=3),
    lambda: MixerLayer(8, "local"),
    lambda: MixerLayer(8, "full", stride=3),
    lambda: MixerLayer(8, "mamba"),
    lambda: DiagonalSSM(4, 1.5),
    lambda: DiagonalSSM(4, [0.5, 0.5]),
    lambda: parallel_scan(torch.ones(3), torch.ones(5, 4)),
    lambda: sequential_scan(torch.ones(4), torch.ones(4)),
    lambda: strided_attention(torch.ones(3, 4), torch.ones(3, 5), torch.ones(3, 4), 2),
    lambda: mask_graph(torch.ones(3, 4, dtype=torch.bool)),
    lambda: stack_graphs(rnn_graph(4), rnn_graph(5)),
    lambda: stack_graphs(),
    lambda: op_tally(3),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
