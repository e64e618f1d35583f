"""utils.graphs: builders, BFS, closed forms of path length, sequential steps and reachability."""

import math

import matplotlib
import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.graphs import (
    SequenceGraph,
    attention_graph,
    conv_graph,
    draw_graph,
    hops_matrix,
    local_attention_graph,
    max_path_length,
    path_length,
    path_length_matrix,
    reachability_matrix,
    rnn_graph,
    sequential_steps,
    shortest_path,
    shortest_path_lengths,
)
from utils.receptive import dilated_layers_to_connect, doubling_dilations, layers_to_connect

matplotlib.use("Agg")


@st.composite
def any_graph(draw):
    n = draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["rnn", "conv", "attention", "local"]))
    causal = draw(st.booleans())
    if kind == "rnn":
        return rnn_graph(n, layers=draw(st.integers(1, 3)))
    if kind == "attention":
        return attention_graph(n, layers=draw(st.integers(0, 3)), causal=causal)
    if kind == "local":
        return local_attention_graph(n, draw(st.integers(0, 3)), layers=draw(st.integers(0, 3)), causal=causal)
    k = draw(st.integers(2, 5))
    if not causal and k % 2 == 0:
        k += 1
    layers = draw(st.integers(0, 4))
    dil = draw(st.lists(st.integers(1, 4), min_size=layers, max_size=layers))
    return conv_graph(n, k, layers, dilations=dil, causal=causal)


@settings(deadline=None, max_examples=60)
@given(g=any_graph())
def test_bfs_agrees_with_the_vectorised_all_pairs_distances(g):
    lengths = path_length_matrix(g)
    hops = hops_matrix(g) if g.layers >= 1 else None
    for i in range(g.n):
        dist = shortest_path_lengths(g, i)
        for j in range(g.n):
            expected = dist.get((g.layers, j))
            assert (expected if expected is not None else -1) == int(lengths[j, i])
            if g.layers >= 1:
                nearest = [d for (layer, pos), d in dist.items() if pos == j and layer >= 1]
                assert (min(nearest) if nearest else -1) == int(hops[j, i])
    assert torch.equal(reachability_matrix(g), lengths >= 0)


@settings(deadline=None, max_examples=40)
@given(g=any_graph())
def test_shortest_path_is_a_real_path_of_the_bfs_length(g):
    for i in range(g.n):
        for j in range(g.n):
            p = shortest_path(g, i, j)
            d = path_length(g, i, j)
            if p is None:
                assert d is None
                continue
            assert p[0] == (0, i) and p[-1] == (g.layers, j) and len(p) - 1 == d
            for a, b in zip(p, p[1:]):
                assert b in g.successors(a)


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 12), layers=st.integers(1, 3))
def test_rnn_path_length_is_one_input_edge_plus_the_distance(n, layers):
    g = rnn_graph(n, layers)
    j = torch.arange(n).unsqueeze(1)
    i = torch.arange(n).unsqueeze(0)
    expected = torch.where(j >= i, layers + (j - i), torch.full((n, n), -1))
    assert torch.equal(path_length_matrix(g), expected)
    assert sequential_steps(g) == n + layers - 1
    assert torch.equal(reachability_matrix(g), torch.ones(n, n, dtype=torch.bool).tril())


@settings(deadline=None, max_examples=40)
@given(n=st.integers(2, 30), k=st.integers(2, 6), causal=st.booleans())
def test_conv_hops_match_layers_to_connect(n, k, causal):
    if not causal and k % 2 == 0:
        k += 1
    depth = layers_to_connect(n - 1, k, causal)
    g = conv_graph(n, k, max(depth, 1), causal=causal)
    hops = hops_matrix(g)
    for d in range(n):
        assert int(hops[d, 0]) == max(layers_to_connect(d, k, causal), 1)
    assert bool(reachability_matrix(g)[n - 1, 0])
    if depth > 1:
        assert not bool(reachability_matrix(conv_graph(n, k, depth - 1, causal=causal))[n - 1, 0])
    assert max_path_length(g) == max(depth, 1) == sequential_steps(g)


@settings(deadline=None, max_examples=40)
@given(n=st.integers(2, 40), k=st.integers(2, 4), growth=st.integers(2, 4), causal=st.booleans())
def test_dilated_depth_matches_the_closed_form(n, k, growth, causal):
    if not causal and k % 2 == 0:
        k += 1
    growth = min(growth, k)
    d = n - 1
    depth = dilated_layers_to_connect(d, k, growth, causal)
    # A centred dilated path may step outside 0 … n-1 (e.g. +3 then -1): keep the pair away from the ends.
    pad = 0 if causal else d * growth
    size, out, inp = n + 2 * pad, pad + d, pad
    g = conv_graph(size, k, depth, doubling_dilations(depth, growth=growth), causal=causal)
    assert bool(reachability_matrix(g, inputs=[inp])[out, 0])
    if causal:  # no holes: every distance up to the reach is connected
        assert bool(reachability_matrix(g).tril().eq(torch.ones(n, n, dtype=torch.bool).tril()).all())
    if depth > 1:
        shallower = conv_graph(size, k, depth - 1, doubling_dilations(depth - 1, growth=growth), causal=causal)
        assert not bool(reachability_matrix(shallower, inputs=[inp])[out, 0])


def test_centred_dilated_paths_can_be_cut_by_the_sequence_ends():
    # offsets {-1,0,1} then {-3,0,3}: distance 2 = 3 - 1 needs position -1, which is zero padding
    assert not bool(reachability_matrix(conv_graph(3, 3, 2, [1, 3]))[2, 0])
    assert bool(reachability_matrix(conv_graph(9, 3, 2, [1, 3]))[5, 3])


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 15), r=st.integers(0, 4), layers=st.integers(1, 4), causal=st.booleans())
def test_local_attention_reaches_r_per_layer(n, r, layers, causal):
    reach = reachability_matrix(local_attention_graph(n, r, layers, causal))
    j = torch.arange(n).unsqueeze(1)
    i = torch.arange(n).unsqueeze(0)
    expected = (j - i >= 0) & (j - i <= r * layers) if causal else (j - i).abs() <= r * layers
    assert torch.equal(reach, expected)
    if r >= 1:
        hops = hops_matrix(local_attention_graph(n, r, max(1, math.ceil((n - 1) / r)), causal))
        assert [int(hops[d, 0]) for d in range(n)] == [max(1, math.ceil(d / r)) for d in range(n)]


@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_attention_is_one_edge_per_layer_and_one_step_per_layer(n):
    for layers in (1, 2, 3):
        g = attention_graph(n, layers)
        assert max_path_length(g) == layers == sequential_steps(g)
        assert bool(reachability_matrix(g).all())
        assert int(hops_matrix(g).max()) == 1
        gc = attention_graph(n, layers, causal=True)
        assert torch.equal(reachability_matrix(gc), torch.ones(n, n, dtype=torch.bool).tril())


def test_table1_shapes_from_graphs():
    for n in (8, 16, 32):
        assert max_path_length(attention_graph(n)) == 1
        assert max_path_length(rnn_graph(n)) == n and sequential_steps(rnn_graph(n)) == n
        assert sequential_steps(conv_graph(n, 3, 1, causal=True)) == 1


def test_counts_and_families():
    assert rnn_graph(4).num_edges == 4 + 3 and rnn_graph(4).num_nodes == 8
    assert conv_graph(5, 3, 1).num_edges == 3 * 5 - 2
    assert conv_graph(5, 3, 2, [1, 2]).family == "dilated cnn"
    assert conv_graph(5, 3, 2).family == "cnn"
    assert local_attention_graph(5, 1).family == "local attention"
    assert "kernel_size=3" in repr(conv_graph(5, 3, 2))
    assert sequential_steps(conv_graph(5, 3, 0)) == 0
    assert torch.equal(reachability_matrix(conv_graph(5, 3, 0)), torch.eye(5, dtype=torch.bool))


@pytest.mark.parametrize("call, message", [
    (lambda: rnn_graph(0), "n must be >= 1"),
    (lambda: rnn_graph(4, layers=0), "layers must be >= 1"),
    (lambda: conv_graph(4, 1, 2), "kernel_size must be >= 2"),
    (lambda: conv_graph(4, 4, 2), "odd kernel_size"),
    (lambda: conv_graph(4, 3, -1), "layers must be >= 0"),
    (lambda: conv_graph(4, 3, 2, dilations=[1]), "one dilation per layer"),
    (lambda: attention_graph(0), "n must be >= 1"),
    (lambda: local_attention_graph(4, -1), "radius must be >= 0"),
    (lambda: path_length(rnn_graph(4), 0, 4), "outside"),
    (lambda: shortest_path_lengths(rnn_graph(4), 5), "outside"),
    (lambda: shortest_path_lengths(rnn_graph(4), (3, 0)), "outside the graph"),
    (lambda: hops_matrix(attention_graph(3, 0)), "at least one layer"),
    (lambda: path_length_matrix(rnn_graph(3), inputs=[3]), "outside"),
    (lambda: SequenceGraph("x", 2, 1, (torch.ones(2, 2, dtype=torch.bool),),
                           (torch.ones(2, 2, dtype=torch.bool),)), "acyclic"),
    (lambda: SequenceGraph("x", 2, 2, (torch.ones(2, 2, dtype=torch.bool),), (None,)), "one edge matrix per layer"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_draw_graph_draws_the_path():
    import matplotlib.pyplot as plt
    from matplotlib.text import Annotation

    fig, (ax, ax2) = plt.subplots(1, 2)
    try:
        g = rnn_graph(4)
        path = shortest_path(g, 0, 3)
        assert draw_graph(g, ax, path) is ax
        # the path: one red polyline through exactly its nodes, in order
        red = [line for line in ax.lines if line.get_color() == "#d62728"]
        assert len(red) == 1
        assert list(red[0].get_xdata()) == [p for _, p in path]
        assert list(red[0].get_ydata()) == [layer for layer, _ in path]
        # one grey segment per edge between layers, one arrow per recurrent edge inside a layer
        between = sum(int(b.sum()) for b in g.between)
        within = sum(int(w.sum()) for w in g.within if w is not None)
        assert len(ax.lines) == between + 1 and within > 0
        assert sum(isinstance(c, Annotation) for c in ax.get_children()) == within
        assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "h1"]

        c = conv_graph(4, 3, 2)
        draw_graph(c, ax2)
        assert len(ax2.lines) == sum(int(b.sum()) for b in c.between)  # no path drawn
        assert not any(line.get_color() == "#d62728" for line in ax2.lines)
        assert [t.get_text() for t in ax2.get_yticklabels()] == ["x", "L1", "L2"]
    finally:
        plt.close(fig)
