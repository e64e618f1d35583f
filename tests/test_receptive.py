"""utils.receptive: closed forms vs graphs vs autograd, and the effective receptive field."""

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.conv import ConvStack
from utils.graphs import conv_graph, hops_matrix, reachability_matrix
from utils.measure import input_gradient_profile, profile_width
from utils.receptive import dilated_layers_to_connect, doubling_dilations, layers_to_connect, reach, receptive_field


def test_the_k3_table_and_the_dilated_example():
    assert [receptive_field(3, L) for L in (1, 2, 3, 4, 8, 16)] == [3, 5, 7, 9, 17, 33]
    assert receptive_field(3, 4, [1, 2, 4, 8]) == 31
    assert receptive_field(2, 10, doubling_dilations(10)) == 1024  # one WaveNet block
    assert receptive_field(2, 30, doubling_dilations(10, blocks=3)) == 3070
    assert receptive_field(3, 0) == 1


def test_the_d512_k3_cases():
    assert layers_to_connect(512, 3, causal=True) == 256
    assert layers_to_connect(511, 3, causal=True) == 256  # a span of 512 positions is a distance of 511
    assert layers_to_connect(512, 3) == 512
    assert layers_to_connect(512, 5) == 256
    assert dilated_layers_to_connect(512, 2, 2) == 10


@settings(deadline=None, max_examples=60)
@given(k=st.integers(2, 7), layers=st.integers(0, 6), data=st.data())
def test_receptive_field_is_the_span_the_graph_connects(k, layers, data):
    dil = data.draw(st.lists(st.integers(1, 4), min_size=layers, max_size=layers))
    R = receptive_field(k, layers, dil)
    n = R + 2
    g = conv_graph(n, k, layers, dil, causal=True)
    assert int(reachability_matrix(g)[n - 1].sum()) <= R
    assert bool(reachability_matrix(g)[n - 1, n - R])
    assert not bool(reachability_matrix(g)[n - 1, n - R - 1])
    assert reach(k, layers, dil, causal=True) == R - 1
    if k % 2:
        assert reach(k, layers, dil) == (R - 1) // 2


@settings(deadline=None, max_examples=60)
@given(d=st.integers(0, 40), k=st.integers(2, 7), causal=st.booleans())
def test_layers_to_connect_is_the_fewest_layers_on_the_graph(d, k, causal):
    if not causal and k % 2 == 0:
        k += 1
    L = layers_to_connect(d, k, causal)
    per = (k - 1) if causal else (k - 1) // 2
    assert L == math.ceil(d / per)
    if d == 0:
        return
    g = conv_graph(d + 1, k, L, causal=causal)
    assert bool(reachability_matrix(g, inputs=[0])[d, 0])
    assert int(hops_matrix(g, inputs=[0])[d, 0]) == L
    if L > 1:
        assert not bool(reachability_matrix(conv_graph(d + 1, k, L - 1, causal=causal), inputs=[0])[d, 0])


@settings(deadline=None, max_examples=40)
@given(d=st.integers(0, 200), k=st.integers(2, 5), growth=st.integers(2, 5), causal=st.booleans())
def test_dilated_layers_to_connect_is_logarithmic_and_minimal(d, k, growth, causal):
    if not causal and k % 2 == 0:
        k += 1
    growth = min(growth, k)
    L = dilated_layers_to_connect(d, k, growth, causal)
    per = (k - 1) if causal else (k - 1) // 2
    assert reach(k, L, doubling_dilations(L, growth=growth), causal) >= d
    if L:
        assert reach(k, L - 1, doubling_dilations(L - 1, growth=growth), causal) < d
    if d:
        assert L <= math.ceil(math.log(d * (growth - 1) / per + 1, growth)) + 1


def test_linear_stack_gradient_is_exactly_zero_outside_the_field_and_nonzero_inside():
    torch.manual_seed(0)
    for padding, causal in (("centred", False), ("causal", True)):
        stack = ConvStack(3, 3, 3, padding=padding, activation=False)
        prof = input_gradient_profile(stack, 15, 3, position=10)
        graph_row = reachability_matrix(conv_graph(15, 3, 3, causal=causal))[10]
        assert torch.equal(prof > 0, graph_row)


def test_effective_field_of_a_random_linear_stack_follows_sqrt_L(one_thread):
    # E[g_i^2] of a linear stack with i.i.d. zero-mean weights is the L-fold convolution of a uniform
    # 3-tap profile: its standard deviation is sqrt(L (k^2 - 1) / 12) = sqrt(2L/3) for k = 3.
    widths = {}
    for L in (2, 8):
        profs = []
        for s in range(30):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                stack = ConvStack(8, 3, L, padding="centred", activation=False)
            profs.append(input_gradient_profile(stack, 2 * L + 21, 8, seed=s))
        widths[L] = profile_width(torch.stack(profs).mean(0))
        assert widths[L] == pytest.approx(math.sqrt(2 * L / 3), rel=0.2)
    assert widths[8] / widths[2] < 8 / 2  # far slower than the linear growth of R


def test_profile_width_of_known_distributions():
    assert profile_width([0, 1, 0]) == 0
    assert profile_width([1, 0, 1]) == pytest.approx(1.0)
    assert profile_width([1, 1, 1]) == pytest.approx(math.sqrt(2 / 3))


@pytest.mark.parametrize("call, message", [
    (lambda: receptive_field(1, 2), "kernel_size must be >= 2"),
    (lambda: receptive_field(3, -1), "layers must be >= 0"),
    (lambda: receptive_field(3, 2, [1]), "one dilation per layer"),
    (lambda: receptive_field(3, 1, [0]), "dilation must be >= 1"),
    (lambda: reach(4, 2), "odd kernel_size"),
    (lambda: layers_to_connect(-1, 3), "distance must be >= 0"),
    (lambda: layers_to_connect(5, 4), "odd kernel_size"),
    (lambda: layers_to_connect(5, 1, causal=True), "kernel_size must be >= 2"),
    (lambda: layers_to_connect(2.5, 3), "whole number"),
    (lambda: dilated_layers_to_connect(5, 2, 3), "leaves holes"),
    (lambda: dilated_layers_to_connect(5, 3, 1), "growth must be >= 2"),
    (lambda: doubling_dilations(3, blocks=0), "blocks must be >= 1"),
    (lambda: input_gradient_profile(lambda x: x, 0, 2), "n must be >= 1"),
    (lambda: input_gradient_profile(lambda x: x, 4, 2, position=4), "outside"),
    (lambda: input_gradient_profile(lambda x: x.sum(1), 4, 2), "must map"),
    (lambda: profile_width([0, 0]), "positive sum"),
    (lambda: profile_width([1, -1]), "non-negative"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unsquared_profile_sees_a_512_layer_dependency_that_squaring_would_lose():
    stack = ConvStack(1, 3, 512, padding="centred", activation=False)
    with torch.no_grad():
        for conv in stack.convs:
            conv.weight.fill_(1 / 3)
            conv.bias.zero_()
    prof = input_gradient_profile(stack, 513, 1, position=512, squared=False)
    assert prof[0] > 0 and prof[0] == pytest.approx(3.0**-512, rel=1e-6)
    assert input_gradient_profile(stack, 513, 1, position=512)[0] == 0  # (3^-512)^2 underflows float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")
def test_cuda_module_profiles_and_reachability_match_the_cpu():
    from utils.measure import reachability

    torch.manual_seed(0)
    stack = ConvStack(4, 3, 2, padding="causal")
    cpu_profile = input_gradient_profile(stack, 16, 4)
    gpu_profile = input_gradient_profile(stack.to("cuda"), 16, 4)
    assert gpu_profile.device.type == "cpu" and torch.allclose(gpu_profile, cpu_profile, rtol=1e-6)
    assert torch.equal(reachability(stack, 16, 4), reachability(stack.cpu(), 16, 4))
