import pytest
import torch
from torch import nn

from utils.complexity import conv1d_parameters, linear_parameters, recurrent_parameters
from utils.gradients import forget_gate_bias
from utils.measure import count_parameters, reachability
from utils.models import (
    FAMILIES,
    ConvClassifier,
    RecurrentClassifier,
    cnn_layers_for,
    lstm_forget_gates,
    make_model,
    matched_models,
    width_for_budget,
)
from utils.tasks import copy_task

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("budget", [2000, 5000, 20000])
@pytest.mark.parametrize("n", [16, 33])
def test_matched_models_agree_within_ten_percent(budget, n):
    models = matched_models(budget, vocab_size=12, num_classes=4, n=n)
    assert set(models) == set(FAMILIES)
    for family, model in models.items():
        got = count_parameters(model)
        assert abs(got - budget) <= 0.10 * budget, (family, got)
        assert model.family == family


@pytest.mark.parametrize("family", FAMILIES)
def test_width_for_budget_is_the_closest_width(family):
    w = width_for_budget(family, 3000, 5, 2, n=24)
    step = 2 if family == "transformer" else 1
    count = lambda d: count_parameters(make_model(family, 5, 2, d, n=24))  # noqa: E731
    assert abs(count(w) - 3000) <= abs(count(w + step) - 3000)
    if w > step:
        assert abs(count(w) - 3000) <= abs(count(w - step) - 3000)


def test_counts_match_closed_forms():
    v, c, d = 12, 4, 10
    for family in ("rnn", "lstm", "gru"):
        m = make_model(family, v, c, d)
        assert count_parameters(m) == v * d + recurrent_parameters(family, d, d) + linear_parameters(d, c)
    cnn = make_model("cnn", v, c, d, n=32)
    assert cnn.dilations == [1, 2, 4, 8, 16] and cnn.receptive_field == 32
    assert count_parameters(cnn) == v * d + 5 * conv1d_parameters(d, d, 2) + linear_parameters(d, c)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n", [2, 9, 32])
def test_output_shapes(family, n):
    model = make_model(family, 12, 4, 8, n=n, seed=0)
    x, _ = copy_task(5, n, 1, generator=0)
    assert model(x).shape == (5, 4)


@pytest.mark.parametrize("n, layers", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (32, 5), (33, 6), (128, 7)])
def test_cnn_depth_covers_n(n, layers):
    assert cnn_layers_for(n) == layers
    assert 2 ** layers >= n


def test_cnn_is_causal_and_its_last_output_sees_every_position():
    n = 12
    model = make_model("cnn", 12, 4, 6, n=n, seed=0)
    reach = reachability(model.conv, n, 6)
    assert torch.equal(reach, torch.ones(n, n, dtype=torch.bool).tril())     # never the future, all the past
    # and through the whole classifier: changing a future token cannot change an earlier prefix's logits
    x, _ = copy_task(2, n, 3, generator=0)
    y = x.clone()
    y[:, 7:] = 1
    torch.testing.assert_close(model(x[:, :7]), model(y[:, :7]))


def test_transformer_blocks_are_causal():
    n = 10
    model = make_model("transformer", 12, 4, 8, n=n, seed=0, layers=2)
    blocks = nn.Sequential(*model.blocks)
    assert torch.equal(reachability(blocks, n, 8), torch.ones(n, n, dtype=torch.bool).tril())


def test_transformer_uses_positions():
    # without positions attention could not tell where the value sits; with them, moving it changes the output
    model = make_model("transformer", 12, 4, 8, seed=0).eval()
    x = torch.tensor([[1, 2, 11, 3, 0]])
    y = torch.tensor([[1, 11, 2, 3, 0]])
    assert not torch.allclose(model(x), model(y))


def test_seed_makes_initialisation_reproducible_without_touching_global_rng():
    state = torch.random.get_rng_state()
    a = make_model("lstm", 12, 4, 8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = make_model("lstm", 12, 4, 8, seed=3)
    c = make_model("lstm", 12, 4, 8, seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("n, w, expected", [
    (10, 4, [(0, 2), (2, 6), (6, 10)]),
    (8, 4, [(0, 4), (4, 8)]),
    (4, 4, [(0, 4)]),
    (3, 5, [(0, 3)]),
    (5, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_tbptt_windows_count_back_from_the_readout(n, w, expected):
    assert RecurrentClassifier.chunk_bounds(n, w) == expected


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
def test_tbptt_forward_equals_full_forward_and_cuts_gradient_beyond_window(family):
    n, w = 12, 5
    model = make_model(family, 12, 4, 6, seed=0).double()
    x, _ = copy_task(3, n, 2, generator=0)
    torch.testing.assert_close(model(x), model(x, tbptt=w))                 # the forward pass is not cut
    emb = {}

    def keep(module, inp, out):
        out.retain_grad()
        emb["out"] = out

    handle = model.embed.register_forward_hook(keep)
    for tbptt in (None, w):
        model.zero_grad()
        model(x, tbptt=tbptt).sum().backward()
        g = emb["out"].grad.abs().sum(dim=(0, 2))                           # per input position
        if tbptt is None:
            assert (g > 0).all()
        else:
            assert (g[: n - w] == 0).all() and (g[n - w:] > 0).all()        # distances 0 … w-1 only
    handle.remove()


@pytest.mark.parametrize("bad, match", [
    (dict(family="mlp"), "family must be one of"),
    (dict(vocab_size=1), "vocab_size must be >= 2"),
    (dict(num_classes=1), "num_classes must be >= 2"),
    (dict(d_model=None), "exactly one of d_model"),
    (dict(param_budget=1000), "exactly one of d_model"),
    (dict(d_model=0), "d_model must be >= 1"),
])
def test_make_model_bad_inputs(bad, match):
    args = dict(family="lstm", vocab_size=12, num_classes=4, d_model=8)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        make_model(**args)


def test_family_specific_bad_inputs():
    with pytest.raises(ValueError, match="needs the sequence length n"):
        make_model("cnn", 12, 4, 8)
    with pytest.raises(ValueError, match="even d_model"):
        make_model("transformer", 12, 4, 7)
    with pytest.raises(ValueError, match="within 10%"):
        width_for_budget("lstm", 50, 40, 4)                 # the embedding alone exceeds the budget
    cnn = make_model("cnn", 12, 4, 8, n=8)
    with pytest.raises(ValueError, match="exceeds the CNN's receptive field"):
        cnn(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="recurrent families only"):
        cnn(torch.zeros(1, 8, dtype=torch.long), tbptt=4)
    lstm = make_model("lstm", 12, 4, 8)
    with pytest.raises(ValueError, match="token ids must lie in"):
        lstm(torch.full((1, 4), 12))
    with pytest.raises(ValueError, match="torch.long"):
        lstm(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="tbptt must be >= 1"):
        lstm(torch.zeros(1, 4, dtype=torch.long), tbptt=0)
    assert isinstance(cnn, ConvClassifier)


def test_transformer_attention_weights_are_causal_distributions():
    model = make_model("transformer", 12, 4, 8, seed=0, layers=2)
    x, _ = copy_task(3, 7, 2, generator=0)
    for layer in (0, 1):
        w = model.attention_weights(x, layer)
        assert w.shape == (3, 7, 7) and (w >= 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 7))
        assert (w.triu(1) == 0).all()                                       # never a future key
    with pytest.raises(ValueError, match="layer must be < 2"):
        model.attention_weights(x, 2)


@pytest.mark.parametrize("call", [
    lambda: make_model("transformer", 12, 4, 8, heads=0),
    lambda: make_model("transformer", 12, 4, param_budget=2000, heads=0),
    lambda: width_for_budget("transformer", 2000, 12, 4, heads=0),
    lambda: make_model("lstm", 12, 4, 8, heads=-1),
])
def test_zero_heads_is_a_value_error_that_says_what_to_use(call):
    # used to be a ZeroDivisionError from d_model % heads
    with pytest.raises(ValueError, match=r"heads must be >= 1.*use heads=1"):
        call()


def test_forget_bias_sets_the_lstm_forget_gate_and_keeps_the_rest():
    plain = make_model("lstm", 12, 4, 8, seed=3)
    biased = make_model("lstm", 12, 4, 8, seed=3, forget_bias=1.0)
    assert torch.equal(forget_gate_bias(biased.rnn), torch.ones(8))
    assert not torch.equal(forget_gate_bias(plain.rnn), torch.ones(8))
    for (name, a), (_, b) in zip(plain.named_parameters(), biased.named_parameters()):
        if "bias" not in name:
            assert torch.equal(a, b), name                      # same seed: only the biases differ
    assert count_parameters(plain) == count_parameters(biased)
    with pytest.raises(ValueError, match="'lstm' family only"):
        make_model("gru", 12, 4, 8, forget_bias=1.0)


def test_lstm_forget_gates_unroll_matches_nn_lstm():
    model = make_model("lstm", 12, 4, 6, seed=0, forget_bias=1.0)
    x, _ = copy_task(5, 9, 3, generator=0)
    f = lstm_forget_gates(model, x)
    assert f.shape == (5, 9, 6) and ((f > 0) & (f < 1)).all()
    # the manual unroll must reproduce nn.LSTM: recompute h from the same gates and compare the readout
    lstm, e = model.rnn, model.embed(x)
    hid = lstm.hidden_size
    h = c = torch.zeros(5, hid)
    for t in range(9):
        gates = e[:, t] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T + lstm.bias_hh_l0
        i, ff, g, o = gates.split(hid, -1)
        torch.testing.assert_close(torch.sigmoid(ff), f[:, t])
        c = torch.sigmoid(ff) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    torch.testing.assert_close(model.readout(h), model(x))
    # with the forget bias raised, the gates open further (a check that the bias enters the gate)
    model2 = make_model("lstm", 12, 4, 6, seed=0, forget_bias=4.0)
    assert lstm_forget_gates(model2, x).mean() > f.mean()
    with pytest.raises(ValueError, match="needs an 'lstm' model"):
        lstm_forget_gates(make_model("gru", 12, 4, 6), x)
