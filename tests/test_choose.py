import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.choose import (
    FAMILIES,
    MatchedBlock,
    Workload,
    matched_stack,
    profile,
    recommend,
    saved_activation_elements,
    training_state_bytes_per_parameter,
)
from utils.graphs import conv_graph, hops_matrix, path_length, rnn_graph, sequential_steps
from utils.measure import count_flops, count_parameters, reachability, saved_activation_bytes, steady_training_memory


@settings(deadline=None, max_examples=30)
@given(n=st.integers(2, 40), data=st.data(), k=st.sampled_from([2, 3, 5]))
def test_cnn_path_matches_the_graph(n, data, k):
    span = data.draw(st.integers(1, n - 1))
    p = profile("cnn", Workload(n=n, span=span, kernel_size=k, d_model=8, heads=1, layers=1))
    graph = conv_graph(n, k, p.layers, causal=True)
    assert p.path == p.layers
    assert path_length(graph, 0, span) == p.layers          # enough layers to connect the span ...
    if p.layers > 1:                                       # ... and not one more than needed
        assert path_length(conv_graph(n, k, p.layers - 1, causal=True), 0, span) is None


@settings(deadline=None, max_examples=20)
@given(n=st.integers(2, 40), data=st.data())
def test_rnn_steps_and_path_match_the_graph(n, data):
    span = data.draw(st.integers(1, n - 1))
    i = data.draw(st.integers(0, n - 1 - span))
    p = profile("rnn", Workload(n=n, span=span, d_model=8, heads=1, layers=1))
    graph = rnn_graph(n)
    assert p.sequential_steps == sequential_steps(graph) == n
    # choose counts the state transfers h -> h; the graph counts every edge, so its shortest path
    # x_i -> h_i -> … -> h_{i+span} has one more: the input edge x_i -> h_i (utils.graphs conventions).
    assert p.path == path_length(graph, i, i + span) - 1
    assert p.path + 1 == int(hops_matrix(graph)[i + span, i])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("ffn", [True, False])
def test_matched_stack_matches_the_profile(family, ffn):
    """Parameters and FLOPs exact, saved activations within 20 % (exact for attention), on the real stack."""
    w = Workload(n=128, span=40, d_model=32, heads=4, layers=2, radius=8, bytes_per_element=4, batch=2, ffn=ffn)
    p = profile(family, w)
    stack = matched_stack(family, w)
    x = torch.randn(2, 128, 32)
    assert len(stack) == p.layers
    assert count_parameters(stack) == p.parameters
    assert count_flops(stack, x) == p.flops
    saved = saved_activation_bytes(stack, x)
    formula = p.layers * saved_activation_elements(family, w) * 4
    if family in ("transformer", "flash transformer"):
        assert saved == formula
    else:
        assert 0.8 * formula <= saved <= 1.2 * formula


@pytest.mark.parametrize("family", ["cnn", "dilated cnn", "local attention"])
def test_matched_stack_connects_the_span_with_its_depth_and_not_one_block_less(family):
    n, span = 48, 30
    w = Workload(n=n, span=span, d_model=8, heads=2, layers=1, radius=4, kernel_size=3)
    p = profile(family, w)
    torch.manual_seed(0)
    stack = matched_stack(family, w)
    assert len(stack) == p.layers == p.path > 1
    assert bool(reachability(stack, n, 8)[n - 1, n - 1 - span])
    assert not bool(reachability(stack[:-1], n, 8)[n - 1, n - 1 - span])
    assert not profile(family, Workload(n=n, span=span, d_model=8, heads=2, layers=1, radius=4,
                                        max_layers=p.layers - 1)).connects


def test_training_memory_formula_against_a_measured_step():
    w = Workload(n=256, span=100, d_model=32, heads=4, layers=2, radius=32, bytes_per_element=4, batch=2)
    for family in ("lstm", "transformer", "local attention"):
        p = profile(family, w)
        torch.manual_seed(0)
        measured = steady_training_memory(matched_stack(family, w), torch.randn(2, 256, 32))
        assert 0.85 * p.memory_bytes <= measured <= 1.1 * p.memory_bytes, (family, measured, p.memory_bytes)


def test_training_state_bytes_per_parameter():
    assert training_state_bytes_per_parameter(4, "adam") == training_state_bytes_per_parameter(2, "adam") == 16
    assert training_state_bytes_per_parameter(4, "sgd") == 8 and training_state_bytes_per_parameter(2, "sgd") == 8
    with pytest.raises(ValueError, match="bytes_per_element"):
        training_state_bytes_per_parameter(8)
    with pytest.raises(ValueError, match="optimizer"):
        training_state_bytes_per_parameter(2, "lion")


def test_transformer_memory_is_quadratic_and_flash_linear():
    small, large = Workload(n=512, span=10), Workload(n=1024, span=10)
    assert profile("transformer", large).largest_tensor_bytes == 4 * profile("transformer", small).largest_tensor_bytes
    flash_large = profile("flash transformer", large).largest_tensor_bytes
    assert flash_large == 2 * profile("flash transformer", small).largest_tensor_bytes
    for w in (small, large):   # materialised weights B·h·n² instead of a flash kernel's B·h·n softmax statistics
        extra = saved_activation_elements("transformer", w) - saved_activation_elements("flash transformer", w)
        assert extra == w.batch * w.heads * (w.n**2 - w.n)


def test_ranking_order_is_connect_memory_latency_cost():
    w = Workload(n=4096, span=4000, d_model=256, heads=4, layers=4, batch=8, memory_budget_bytes=4 * 2**30,
                 max_sequential_steps=64, max_layers=48)
    ranked = recommend(w)
    keys = [(not p.connects, not p.fits_memory, not p.fits_latency) for p in ranked]
    assert keys == sorted(keys)
    feasible = [p for p in ranked if p.feasible]
    assert feasible and ranked[0] is feasible[0]
    assert [p.flops for p in feasible] == sorted(p.flops for p in feasible)
    by = {p.family: p for p in ranked}
    assert not by["cnn"].connects and not by["lstm"].fits_latency and not by["transformer"].fits_memory
    assert sorted(p.family for p in ranked) == sorted(FAMILIES)


def test_small_span_prefers_the_cheapest_not_the_shortest_path():
    w = Workload(n=4096, span=50, d_model=256, heads=4, layers=4, max_sequential_steps=64)
    top = recommend(w)[0]
    assert top.feasible and top.family in ("cnn", "dilated cnn") and top.path > 1


def test_inference_memory_is_smaller_than_training():
    w = Workload(n=1024, span=100)
    inference = Workload(n=1024, span=100, training=False)
    for family in FAMILIES:
        assert profile(family, inference).memory_bytes < profile(family, w).memory_bytes


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0, span=0), "n must be >= 1"),
    (dict(n=8, span=8), "span"),
    (dict(n=8, span=2, d_model=10, heads=4), "divide"),
    (dict(n=8, span=2, kernel_size=1), "kernel_size"),
    (dict(n=8, span=2, memory_budget_bytes=0), "memory_budget_bytes"),
    (dict(n=8, span=2, max_sequential_steps=0), "max_sequential_steps"),
    (dict(n=8, span=2, max_flops=-1.0), "max_flops"),
    (dict(n=8, span=2, bytes_per_element=8), "bytes_per_element"),
    (dict(n=8, span=2, optimizer="lion"), "optimizer"),
    (dict(n=8, span=2, ffn=1), "ffn"),
    (dict(n=8, span=2, max_layers=0), "max_layers"),
    (dict(n=8, span=2, max_path=-3), "max_path"),
])
def test_bad_workloads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Workload(**kwargs)


def test_flop_budget_excludes_the_expensive_families():
    w = Workload(n=2048, span=64, d_model=256, heads=4, layers=4, max_flops=30e9)
    ranked = recommend(w)
    assert all(p.flops <= 30e9 for p in ranked if p.feasible)
    assert not profile("transformer", w).feasible and profile("transformer", w).connects


def test_bad_family_and_block_arguments():
    with pytest.raises(ValueError, match="family"):
        profile("mamba", Workload(n=8, span=2))
    with pytest.raises(ValueError, match="family"):
        matched_stack("gru", Workload(n=8, span=2))
    with pytest.raises(ValueError, match="divide"):
        MatchedBlock("transformer", 10, heads=4)
