import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.choose import FAMILIES, Workload, profile, recommend
from utils.conv import ConvStack
from utils.graphs import conv_graph, hops_matrix, path_length, rnn_graph, sequential_steps
from utils.measure import count_flops
from utils.receptive import doubling_dilations


@settings(deadline=None, max_examples=30)
@given(n=st.integers(2, 40), data=st.data(), k=st.sampled_from([2, 3, 5]))
def test_cnn_path_matches_the_graph(n, data, k):
    span = data.draw(st.integers(1, n - 1))
    p = profile("cnn", Workload(n=n, span=span, kernel_size=k, d_model=8, heads=1))
    graph = conv_graph(n, k, p.layers, causal=True)
    assert path_length(graph, 0, span) == p.layers          # enough layers to connect the span ...
    if p.layers > 1:                                       # ... and not one more than needed
        assert path_length(conv_graph(n, k, p.layers - 1, causal=True), 0, span) is None


@settings(deadline=None, max_examples=20)
@given(n=st.integers(2, 40), data=st.data())
def test_rnn_steps_and_path_match_the_graph(n, data):
    span = data.draw(st.integers(1, n - 1))
    i = data.draw(st.integers(0, n - 1 - span))
    p = profile("rnn", Workload(n=n, span=span, d_model=8, heads=1))
    graph = rnn_graph(n)
    assert p.sequential_steps == sequential_steps(graph) == n
    # choose counts the state transfers h -> h; the graph counts every edge, so its shortest path
    # x_i -> h_i -> … -> h_{i+span} has one more: the input edge x_i -> h_i (utils.graphs conventions).
    assert p.path == path_length(graph, i, i + span) - 1
    assert p.path + 1 == int(hops_matrix(graph)[i + span, i])


def test_dilated_cnn_flops_match_a_real_stack():
    w = Workload(n=64, span=40, d_model=8, heads=1, kernel_size=3)
    p = profile("dilated cnn", w)
    stack = ConvStack(8, 3, p.layers, dilations=doubling_dilations(p.layers), padding="causal")
    assert count_flops(stack, torch.randn(1, 64, 8)) == p.flops


def test_transformer_memory_is_quadratic_and_flash_linear():
    small, large = Workload(n=512, span=10), Workload(n=1024, span=10)
    assert profile("transformer", large).largest_tensor_bytes == 4 * profile("transformer", small).largest_tensor_bytes
    flash_large = profile("flash transformer", large).largest_tensor_bytes
    assert flash_large == 2 * profile("flash transformer", small).largest_tensor_bytes


def test_budgets_filter_and_rank():
    w = Workload(n=4096, span=4000, memory_budget_bytes=64 * 2**20, max_sequential_steps=64)
    ranked = recommend(w)
    assert ranked[0].feasible and ranked[0].family == "flash transformer"
    infeasible = {p.family for p in ranked if not p.feasible}
    assert {"rnn", "lstm", "cnn", "transformer"} <= infeasible
    assert sorted(p.family for p in ranked) == sorted(FAMILIES)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0, span=0), "n must be >= 1"),
    (dict(n=8, span=8), "span"),
    (dict(n=8, span=2, d_model=10, heads=4), "divide"),
    (dict(n=8, span=2, kernel_size=1), "kernel_size"),
    (dict(n=8, span=2, memory_budget_bytes=0), "memory_budget_bytes"),
    (dict(n=8, span=2, max_sequential_steps=0), "max_sequential_steps"),
    (dict(n=8, span=2, max_flops=-1.0), "max_flops"),
])
def test_bad_workloads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Workload(**kwargs)


def test_flop_budget_excludes_the_expensive_families():
    w = Workload(n=2048, span=64, d_model=256, heads=4, layers=4, max_flops=8e9)
    ranked = recommend(w)
    assert ranked[0].family == "dilated cnn"
    assert all(p.flops <= 8e9 for p in ranked if p.feasible)
    assert not profile("transformer", w).feasible


def test_unknown_family():
    with pytest.raises(ValueError, match="family must be one of"):
        profile("mamba", Workload(n=8, span=2))
