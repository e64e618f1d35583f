"""The capstone lab: matched character models, the training loop, the span a model uses, stream state, the rule."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.blocks import KVCache
from utils.capstone import (
    CAPSTONE_FAMILIES,
    RUNS,
    CharModel,
    decide,
    evaluate_char_model,
    flat_ids,
    make_backbone,
    make_char_model,
    matched_width,
    span_used,
    stream_state_bytes,
    train_char_model,
    truncated_context_quality,
)
from utils.measure import count_parameters

VOCAB, CONTEXT = 12, 16


def periodic_windows(windows=24, n=CONTEXT, period=5):
    """Windows of a text that repeats every ``period`` characters, and their next characters."""
    text = torch.arange(windows * n + 1) % period
    return text[:-1].view(windows, n), text[1:].view(windows, n)


@pytest.mark.parametrize("family", CAPSTONE_FAMILIES)
def test_every_family_maps_tokens_to_causal_logits(family):
    model = CharModel(family, VOCAB, 8, context=CONTEXT).eval()
    x = torch.randint(VOCAB, (2, CONTEXT), generator=torch.Generator().manual_seed(0))
    y = model(x)
    assert y.shape == (2, CONTEXT, VOCAB)
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % VOCAB
    with torch.no_grad():
        assert torch.allclose(model(changed)[:, :10], y[:, :10], atol=1e-6)   # the future never leaks back
        assert not torch.allclose(model(changed)[:, 10], y[:, 10])


@pytest.mark.parametrize("family", CAPSTONE_FAMILIES)
def test_widths_match_the_budget_within_ten_percent(family):
    model = make_char_model(family, VOCAB, param_budget=10_000, context=CONTEXT, seed=1)
    assert abs(count_parameters(model) - 10_000) <= 1000
    assert model.d_model == matched_width(family, 10_000, VOCAB, context=CONTEXT)


def test_transformer_width_is_a_multiple_of_twice_the_heads():
    assert matched_width("transformer", 10_000, VOCAB, context=CONTEXT, heads=2) % 4 == 0


def test_dilated_cnn_receptive_field_covers_the_context():
    backbone = make_backbone("dilated cnn", 8, context=20)
    assert 1 + sum(backbone.dilations) >= 20 > 1 + sum(backbone.dilations[:-1])


def test_the_same_seed_gives_the_same_weights_and_leaves_the_global_state_alone():
    state = torch.random.get_rng_state()
    a = make_char_model("lstm", VOCAB, param_budget=3000, context=CONTEXT, seed=3)
    b = make_char_model("lstm", VOCAB, param_budget=3000, context=CONTEXT, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_training_learns_a_periodic_text_and_is_reproducible():
    x, y = periodic_windows()
    runs = []
    for _ in range(2):
        model = make_char_model("lstm", VOCAB, param_budget=3000, context=CONTEXT, seed=0)
        before = evaluate_char_model(model, x, y)["loss"]
        hist = train_char_model(model, x, y, steps=40, batch_size=8, lr=1e-2, seed=0)
        runs.append(hist["loss"])
    assert runs[0] == runs[1]
    assert hist["tokens"] == 40 * 8 * CONTEXT and hist["tokens_per_s"] > 0
    after = evaluate_char_model(model, x, y)
    assert after["loss"] < 0.5 * before and after["accuracy"] > 0.8


def test_evaluate_is_the_mean_cross_entropy_over_every_position():
    x, y = periodic_windows(windows=4)
    model = CharModel("transformer", VOCAB, 8, context=CONTEXT).eval()
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
    assert evaluate_char_model(model, x, y, batch_size=3)["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_flat_ids_rebuilds_the_text_and_rejects_shuffled_windows():
    x, y = periodic_windows(windows=5, period=7)
    assert torch.equal(flat_ids(x, y), torch.arange(5 * CONTEXT + 1) % 7)
    with pytest.raises(ValueError, match="shifted by one"):
        flat_ids(x[[1, 0, 2, 3, 4]], y)


def test_truncated_context_is_exactly_a_window_of_the_last_d_characters():
    ids = torch.randint(VOCAB, (80,), generator=torch.Generator().manual_seed(1))
    model = CharModel("lstm", VOCAB, 8, context=CONTEXT).eval()
    curve = truncated_context_quality(model, ids, [3, 10], stride=7)
    ends = torch.arange(9, 79, 7)
    assert curve[3]["targets"] == len(ends)
    with torch.no_grad():
        logits = torch.stack([model(ids[t - 2:t + 1].unsqueeze(0))[0, -1] for t in ends])
    expected = torch.nn.functional.cross_entropy(logits, ids[ends + 1])
    assert curve[3]["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_a_cnn_cannot_use_more_than_its_receptive_field():
    ids = torch.randint(VOCAB, (120,), generator=torch.Generator().manual_seed(2))
    model = CharModel("dilated cnn", VOCAB, 8, context=8).eval()         # receptive field 8
    curve = truncated_context_quality(model, ids, [2, 8, 16, 32], stride=5)
    assert curve[8]["loss"] == pytest.approx(curve[16]["loss"], abs=1e-6) == pytest.approx(curve[32]["loss"], abs=1e-6)
    assert curve[2]["loss"] != pytest.approx(curve[8]["loss"], abs=1e-6)


def test_span_used_reads_the_curve():
    curve = {1: {"loss": 3.0, "accuracy": 0.1}, 2: {"loss": 2.2, "accuracy": 0.4}, 4: {"loss": 2.05, "accuracy": 0.5},
             8: {"loss": 2.0, "accuracy": 0.52}, 16: {"loss": 2.01, "accuracy": 0.52}}
    # gain 1.0 from d=1 to the best (d=8): 90 % means loss <= 2.1, 99 % loss <= 2.01
    assert span_used(curve, fraction=0.9) == 4
    assert span_used(curve, fraction=0.99) == 8
    assert span_used(curve, fraction=0.9, key="accuracy") == 4
    flat = {1: {"loss": 2.0, "accuracy": 0.5}, 4: {"loss": 2.5, "accuracy": 0.4}}
    assert span_used(flat) == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 5.0), min_size=2, max_size=8), st.floats(0.05, 1.0), st.floats(0.05, 1.0))
def test_span_used_grows_with_the_fraction(losses, f1, f2):
    curve = {2**i: {"loss": v, "accuracy": 0.0} for i, v in enumerate(losses)}
    lo, hi = sorted((f1, f2))
    assert span_used(curve, fraction=lo) <= span_used(curve, fraction=hi)
    assert span_used(curve, fraction=hi) in curve


def test_stream_state_bytes_matches_real_states():
    d = 16
    lstm = make_backbone("lstm", d, context=CONTEXT)
    _, (h, c) = lstm.rnn(torch.zeros(1, 1, d))
    assert stream_state_bytes("lstm", d, context=CONTEXT) == h.nbytes + c.nbytes
    hybrid = make_backbone("cnn+lstm", d, context=CONTEXT)
    assert stream_state_bytes("cnn+lstm", d, context=CONTEXT) == hybrid.initial_state(1).nbytes
    cache = KVCache(1, 2, CONTEXT, d // 2, layers=2, dtype=torch.float32)
    assert stream_state_bytes("transformer", d, context=CONTEXT) == cache.nbytes
    cnn = make_backbone("dilated cnn", d, context=CONTEXT)                    # kernel 2: (k - 1) · dilation each
    assert stream_state_bytes("dilated cnn", d, context=CONTEXT) == d * sum(cnn.dilations) * 4


def rows():
    return [{"family": "lstm", "val_loss": 2.00, "train_peak_bytes": 10, "latency_s": 0.002},
            {"family": "transformer", "val_loss": 1.98, "train_peak_bytes": 30, "latency_s": 0.004},
            {"family": "cnn+lstm", "val_loss": 2.20, "train_peak_bytes": 9, "latency_s": 0.001}]


def test_decide_keeps_the_near_best_and_picks_the_fastest():
    d = decide(rows(), quality_margin=0.05)
    assert d["near_best"] == ["lstm", "transformer"] and d["choice"] == "lstm" and d["best_loss"] == 1.98
    assert decide(rows(), quality_margin=0.5)["choice"] == "cnn+lstm"
    assert decide(rows(), memory_budget_bytes=20)["feasible"] == ["lstm", "cnn+lstm"]
    assert decide(rows(), latency_budget_s=0.0015)["choice"] == "cnn+lstm"


@pytest.mark.parametrize("call, match", [
    (lambda: CharModel("gru", VOCAB, 8, context=CONTEXT), "family"),
    (lambda: CharModel("lstm", VOCAB, 8, context=CONTEXT)(torch.zeros(2, 3)), "torch.long"),
    (lambda: matched_width("lstm", 10, 50, context=CONTEXT), "within"),
    (lambda: make_backbone("transformer", 9, context=CONTEXT), "even d_model"),
    (lambda: train_char_model(CharModel("lstm", VOCAB, 8, context=CONTEXT), torch.zeros(2, 4, dtype=torch.long),
                              torch.zeros(2, 5, dtype=torch.long), steps=1, batch_size=1), "same shape"),
    (lambda: truncated_context_quality(CharModel("lstm", VOCAB, 8, context=CONTEXT), torch.arange(5), [8]), "too few"),
    (lambda: truncated_context_quality(CharModel("lstm", VOCAB, 8, context=CONTEXT), torch.arange(50), []), "empty"),
    (lambda: span_used({}), "non-empty"),
    (lambda: span_used({1: {"loss": 1.0}}, fraction=1.5), "fraction"),
    (lambda: stream_state_bytes("lstm", 8, context=CONTEXT, bytes_per_element=0), "bytes_per_element"),
    (lambda: decide([]), "non-empty"),
    (lambda: decide(rows(), latency_budget_s=1e-6), "no family"),
    (lambda: decide(rows(), quality_margin=-1), "quality_margin"),
])
def test_bad_input_raises_value_error_saying_what_to_change(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_two_runs_share_their_keys_and_the_gpu_run_is_larger():
    assert set(RUNS["cpu"]) == set(RUNS["gpu"])
    for key in ("context", "param_budget", "steps", "batch_size"):
        assert RUNS["gpu"][key] > RUNS["cpu"][key]
