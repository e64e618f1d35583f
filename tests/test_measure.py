"""utils.measure.reachability (autograd) against the computation graphs of utils.graphs."""

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.blocks import MultiHeadAttention
from utils.conv import ConvStack
from utils.graphs import attention_graph, conv_graph, local_attention_graph, reachability_matrix, rnn_graph
from utils.measure import reachability

D = 3


def case(name, n):
    torch.manual_seed(0)
    return {
        "rnn": (nn.RNN(D, D, batch_first=True), rnn_graph(n)),
        "rnn-2layers": (nn.RNN(D, D, num_layers=2, batch_first=True), rnn_graph(n, 2)),
        "lstm": (nn.LSTM(D, D, batch_first=True), rnn_graph(n)),
        "gru": (nn.GRU(D, D, batch_first=True), rnn_graph(n)),
        "conv-centred": (ConvStack(D, 3, 2, padding="centred"), conv_graph(n, 3, 2)),
        "conv-causal": (ConvStack(D, 3, 2, padding="causal"), conv_graph(n, 3, 2, causal=True)),
        "conv-dilated": (ConvStack(D, 2, 3, [1, 2, 4], padding="causal"), conv_graph(n, 2, 3, [1, 2, 4], causal=True)),
        "conv-holes": (ConvStack(D, 2, 2, [1, 4], padding="causal"), conv_graph(n, 2, 2, [1, 4], causal=True)),
        "conv-centred-dilated": (ConvStack(D, 3, 2, [1, 3], padding="centred"), conv_graph(n, 3, 2, [1, 3])),
        "attention": (MultiHeadAttention(D), attention_graph(n)),
        "attention-causal": (MultiHeadAttention(D, mask="causal"), attention_graph(n, causal=True)),
        "attention-2layers-causal": (
            nn.Sequential(MultiHeadAttention(D, mask="causal"), MultiHeadAttention(D, mask="causal")),
            attention_graph(n, 2, causal=True),
        ),
        "local": (MultiHeadAttention(D, mask="local", radius=1), local_attention_graph(n, 1)),
        "local-naive": (MultiHeadAttention(D, mask="local", radius=2, impl="naive"), local_attention_graph(n, 2)),
        "local-causal-2layers": (
            nn.Sequential(*(MultiHeadAttention(D, mask="local", radius=2, causal=True) for _ in range(2))),
            local_attention_graph(n, 2, 2, causal=True),
        ),
    }[name]


NAMES = ["rnn", "rnn-2layers", "lstm", "gru", "conv-centred", "conv-causal", "conv-dilated", "conv-holes",
         "conv-centred-dilated", "attention", "attention-causal", "attention-2layers-causal", "local",
         "local-naive", "local-causal-2layers"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 5, 11])
def test_measured_reachability_equals_the_graph(name, n):
    module, graph = case(name, n)
    measured = reachability(module, n, D)
    assert measured.dtype == torch.bool and measured.shape == (n, n)
    assert torch.equal(measured, reachability_matrix(graph))


@settings(deadline=None, max_examples=25)
@given(n=st.integers(1, 12), k=st.integers(2, 5), data=st.data(), causal=st.booleans())
def test_conv_stacks_random_shapes(n, k, data, causal):
    if not causal and k % 2 == 0:
        k += 1
    layers = data.draw(st.integers(0, 3))
    dil = data.draw(st.lists(st.integers(1, 3), min_size=layers, max_size=layers))
    torch.manual_seed(0)
    stack = ConvStack(2, k, layers, dil, padding="causal" if causal else "centred")
    assert torch.equal(reachability(stack, n, 2), reachability_matrix(conv_graph(n, k, layers, dil, causal)))


@settings(deadline=None, max_examples=20)
@given(n=st.integers(1, 10), r=st.integers(0, 3), layers=st.integers(1, 3), causal=st.booleans())
def test_local_attention_random_windows(n, r, layers, causal):
    torch.manual_seed(0)
    model = nn.Sequential(*(MultiHeadAttention(4, heads=2, mask="local", radius=r, causal=causal)
                            for _ in range(layers)))
    assert torch.equal(reachability(model, n, 4), reachability_matrix(local_attention_graph(n, r, layers, causal)))
