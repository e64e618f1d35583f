"""The first article's models: its parameter counts and FLOPs in closed form, what they can and cannot see
(permutations), the fixes, and bad input raising ValueError."""

import pytest
import torch
from torch import nn

from utils.article_models import (
    ARTICLE_MODELS,
    KerasCNNBaseline,
    KerasTransformerBaseline,
    SimpleCNN,
    SimpleRNN,
    SimpleTransformer,
    build_article_model,
    example_input,
    permutation_gap,
)
from utils.complexity import (
    encoder_layer_flops,
    encoder_layer_parameters,
    linear_parameters,
    lstm_flops,
    multihead_attention_flops,
    recurrent_parameters,
)
from utils.measure import count_flops, count_parameters
from utils.scratch import conv2d_parameters


def _model(name, **kwargs):
    torch.manual_seed(0)
    return build_article_model(name, **kwargs).double()


def _reversed_after_first(n):
    return [0] + list(range(n - 1, 0, -1))


def _reversed(n):
    return list(range(n - 1, -1, -1))


# --- parameters and FLOPs in closed form ---------------------------------------------------------------------

PARAMETERS = {
    "SimpleCNN": conv2d_parameters(1, 32, 3) + conv2d_parameters(32, 64, 3) + linear_parameters(64 * 16, 10),
    "SimpleRNN": recurrent_parameters("lstm", 1, 64) + linear_parameters(64, 2),
    "SimpleTransformer": 1000 * 128 + 2 * encoder_layer_parameters(128, 2048) + linear_parameters(128, 2),
    "cnn_baseline": conv2d_parameters(1, 32, 3) + linear_parameters(32 * 13 * 13, 10),
    "transformer_baseline": 5000 * 64 + (4 * 64 * 64 + 4 * 64) + linear_parameters(64, 2),
}


@pytest.mark.parametrize("name", sorted(ARTICLE_MODELS))
def test_parameter_counts_match_the_closed_forms(name):
    assert count_parameters(build_article_model(name)) == PARAMETERS[name]


def test_the_keras_parameter_counts():
    # what Keras's count_params() reports for the article's two models
    assert PARAMETERS["cnn_baseline"] == 54_410
    assert PARAMETERS["transformer_baseline"] == 336_770


@pytest.mark.parametrize("name", sorted(ARTICLE_MODELS))
def test_forward_flops_match_the_closed_forms(name):
    model = build_article_model(name)
    x = example_input(model, 2)
    b = 2
    expected = {
        "SimpleCNN": 2 * b * 28 * 28 * 9 * 1 * 32 + 2 * b * 14 * 14 * 9 * 32 * 64 + 2 * b * 1024 * 10,
        "SimpleRNN": lstm_flops(16, 1, 64, b) + 2 * b * 64 * 2,
        "SimpleTransformer": 2 * encoder_layer_flops(16, 128, 4, 2048, b) + 2 * b * 128 * 2,
        "cnn_baseline": 2 * b * 26 * 26 * 9 * 32 + 2 * b * 5408 * 10,
        "transformer_baseline": multihead_attention_flops(128, 64, b, heads=4) + 2 * b * 64 * 2,
    }[name]
    flops = count_flops(model, x)
    assert flops == expected and flops > 0


# --- the models run as the article writes them ---------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("SimpleCNN", (3, 10)), ("SimpleRNN", (3, 2)), ("SimpleTransformer", (3, 2)),
                                         ("cnn_baseline", (3, 10)), ("transformer_baseline", (3, 2))])
def test_each_model_runs_on_a_batch(name, shape):
    model = build_article_model(name)
    y = model(example_input(model, 3))
    assert tuple(y.shape) == shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["cnn_baseline", "transformer_baseline"])
def test_the_keras_ports_output_probabilities(name):
    model = build_article_model(name)
    y = model(example_input(model, 4))
    assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(4))


def test_simple_cnn_takes_other_image_sizes():
    model = build_article_model("SimpleCNN")
    assert model(torch.randn(2, 1, 32, 40)).shape == (2, 10)


def test_the_default_transformer_is_the_articles_module_tree():
    model = SimpleTransformer()
    assert model.cls is None and not model.positional
    layer = model.encoder.layers[0]
    assert len(model.encoder.layers) == 2 and layer.linear1.out_features == 2048 and layer.dropout.p == 0.1
    assert [n for n, _ in model.named_children()] == ["embed", "encoder", "head"]


def test_the_keras_transformer_port_is_one_attention_layer():
    model = KerasTransformerBaseline()
    assert not any(isinstance(m, (nn.LayerNorm, nn.TransformerEncoderLayer)) for m in model.modules())
    assert model.attention.head_dim == 16


# --- what each model can and cannot see ----------------------------------------------------------------------

def test_simple_transformer_ignores_the_order_of_tokens_after_the_first():
    model = _model("SimpleTransformer")
    x = example_input(model, 3, seq_len=12)
    assert permutation_gap(model, x, _reversed_after_first(12)) < 1e-12


def test_simple_transformer_reads_token_0():
    model = _model("SimpleTransformer")
    x = example_input(model, 3, seq_len=12)
    other = x.clone()
    other[:, 0] = (x[:, 0] + 1) % 1000
    with torch.no_grad():
        assert (model(other) - model(x)).abs().max() > 1e-3
    assert permutation_gap(model, x, _reversed(12)) > 1e-3


def test_the_keras_transformer_is_permutation_invariant():
    model = _model("transformer_baseline", seq_len=10)
    x = example_input(model, 3)
    for perm in (_reversed(10), [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]):
        assert permutation_gap(model, x, perm) < 1e-12


@pytest.mark.parametrize("name, dim", [("SimpleRNN", 1), ("SimpleCNN", 2), ("cnn_baseline", 2)])
def test_recurrent_and_convolutional_models_are_order_sensitive(name, dim):
    model = _model(name)
    x = example_input(model, 3)
    assert permutation_gap(model, x, _reversed(x.shape[dim]), dim=dim) > 1e-6


def test_a_cls_token_alone_makes_the_transformer_fully_order_blind():
    model = _model("SimpleTransformer", cls_token=True)
    x = example_input(model, 3, seq_len=12)
    assert permutation_gap(model, x, _reversed(12)) < 1e-12
    assert count_parameters(model) == PARAMETERS["SimpleTransformer"] + 128


@pytest.mark.parametrize("kwargs", [{"positional": True}, {"positional": True, "cls_token": True}])
def test_positional_encoding_restores_order_sensitivity(kwargs):
    model = _model("SimpleTransformer", **kwargs)
    x = example_input(model, 3, seq_len=12)
    assert permutation_gap(model, x, _reversed_after_first(12)) > 1e-3
    keras = _model("transformer_baseline", seq_len=10, positional=True)
    assert permutation_gap(keras, example_input(keras, 3), _reversed(10)) > 1e-6


def test_positional_encoding_adds_no_parameters():
    assert count_parameters(SimpleTransformer(positional=True)) == count_parameters(SimpleTransformer())


# --- bad input -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: SimpleCNN(0),
    lambda: SimpleRNN(hidden=-1),
    lambda: SimpleRNN(input_size=1.5),
    lambda: SimpleTransformer(d_model=130, nhead=4),
    lambda: SimpleTransformer(d_model=9, nhead=3, positional=True),
    lambda: SimpleTransformer(positional="yes"),
    lambda: KerasCNNBaseline(height=3),
    lambda: KerasTransformerBaseline(key_dim=8),
    lambda: KerasTransformerBaseline(num_heads=3),
    lambda: build_article_model("ResNet"),
])
def test_bad_configurations_raise_value_error(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("name, bad", [
    ("SimpleCNN", torch.randn(2, 3, 28, 28)),
    ("SimpleCNN", torch.randn(28, 28)),
    ("SimpleRNN", torch.randn(2, 16, 3)),
    ("SimpleRNN", [[1.0]]),
    ("SimpleTransformer", torch.randn(2, 16)),
    ("SimpleTransformer", torch.full((2, 16), 1000)),
    ("SimpleTransformer", torch.zeros(2, 0, dtype=torch.long)),
    ("cnn_baseline", torch.randn(2, 28, 28, 1)),
    ("transformer_baseline", torch.zeros(2, 64, dtype=torch.long)),
    ("transformer_baseline", torch.full((2, 128), -1)),
])
def test_bad_inputs_raise_value_error(name, bad):
    with pytest.raises(ValueError):
        build_article_model(name)(bad)


def test_example_input_rejects_bad_arguments():
    with pytest.raises(ValueError):
        example_input(SimpleCNN(), 0)
    with pytest.raises(ValueError):
        example_input(KerasTransformerBaseline(), seq_len=64)
    with pytest.raises(ValueError):
        example_input(nn.Linear(2, 2))


@pytest.mark.parametrize("perm, dim", [([0, 1, 1], 1), ([0, 1], 1), ("abc", 1), ([0, 1, 2], 5), ([0, 1, 2], -1)])
def test_permutation_gap_rejects_bad_arguments(perm, dim):
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError):
        permutation_gap(lambda t: t, x, perm, dim=dim)


def test_permutation_gap_rejects_a_non_tensor_and_a_non_callable():
    with pytest.raises(ValueError):
        permutation_gap(lambda t: t, [[1.0]], [0])
    with pytest.raises(ValueError):
        permutation_gap("model", torch.zeros(1, 2), [1, 0])
