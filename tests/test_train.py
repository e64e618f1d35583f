import functools

import pytest
import torch

from utils.measure import count_parameters
from utils.models import FAMILIES, make_model
from utils.tasks import copy_task
from utils.train import distance_sweep, evaluate, fit, main, span_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def trivial(batch_size, generator=None):
    """Copy with d = 1: the value sits right before the query (learnable in a few dozen steps)."""
    return copy_task(batch_size, 4, 1, generator=generator)


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru", "cnn", "transformer"])
def test_loss_decreases_on_a_trivial_task(family):
    model = make_model(family, 12, 4, 12, n=4, seed=0)
    hist = fit(model, trivial, 60, 32, 1e-2, seed=0, progress=False)
    assert len(hist["loss"]) == len(hist["accuracy"]) == 60
    first, last = sum(hist["loss"][:5]) / 5, sum(hist["loss"][-5:]) / 5
    assert last < 0.5 * first
    assert evaluate(model, trivial)["accuracy"] > 0.9


def test_fit_is_reproducible_under_a_seed():
    runs = []
    for _ in range(2):
        model = make_model("gru", 12, 4, 8, seed=1)
        runs.append((fit(model, trivial, 10, 16, 1e-2, seed=5, progress=False), model))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1].parameters(), runs[1][1].parameters()):
        assert torch.equal(a, b)
    other = fit(make_model("gru", 12, 4, 8, seed=1), trivial, 10, 16, 1e-2, seed=6, progress=False)
    assert other != runs[0][0]


def test_evaluate_uses_fresh_seeded_batches_and_restores_mode():
    model = make_model("lstm", 12, 4, 8, seed=0)
    model.train()
    a, b = evaluate(model, trivial, batches=2, batch_size=64), evaluate(model, trivial, batches=2, batch_size=64)
    assert a == b and 0 <= a["accuracy"] <= 1 and a["loss"] > 0
    assert model.training


def test_tbptt_training_never_updates_from_beyond_the_window():
    """With a window w, the value token at distance d >= w gets no gradient: the embedding rows of the
    values (which only ever appear at position n-1-d) must not move, except by weight decay."""
    n, d, w = 10, 6, 4
    task = functools.partial(copy_task, n=n, d=d)
    model = make_model("lstm", 12, 4, 8, seed=0)
    before = model.embed.weight.detach().clone()
    fit(model, task, 5, 16, 1e-2, seed=0, tbptt=w, weight_decay=0.0, progress=False)
    after = model.embed.weight.detach()
    values = slice(12 - 4, 12)
    torch.testing.assert_close(after[values], before[values], rtol=0, atol=0)
    assert not torch.equal(after[1:8], before[1:8])                      # distractors inside the window move
    # and with d < w they do move
    model = make_model("lstm", 12, 4, 8, seed=0)
    fit(model, functools.partial(copy_task, n=n, d=w - 1), 5, 16, 1e-2, seed=0, tbptt=w, weight_decay=0.0,
        progress=False)
    assert not torch.equal(model.embed.weight.detach()[values], before[values])


def test_tbptt_chunked_training_differs_from_full_only_beyond_window():
    """If the dependency is inside the window, truncation changes nothing in the first gradient step for the
    parameters that only see the last window... but the recurrent weights get fewer terms: losses differ."""
    task = functools.partial(copy_task, n=12, d=2)
    full = fit(make_model("rnn", 12, 4, 8, seed=0), task, 3, 16, 1e-2, seed=0, progress=False)
    cut = fit(make_model("rnn", 12, 4, 8, seed=0), task, 3, 16, 1e-2, seed=0, tbptt=4, progress=False)
    assert full["loss"][0] == cut["loss"][0]                             # same forward pass
    assert full["loss"][1:] != cut["loss"][1:]                           # different gradients


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps must be >= 1"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(clip_norm=-1.0), "clip_norm must be > 0"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
    (dict(tbptt=0), "tbptt must be >= 1"),
])
def test_fit_bad_inputs(kwargs, match):
    args = dict(steps=2, batch_size=4, lr=1e-3, seed=0, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit(make_model("rnn", 12, 4, 4), trivial, **args)


def test_tbptt_needs_a_recurrent_model():
    with pytest.raises(ValueError, match="needs a recurrent model"):
        fit(make_model("transformer", 12, 4, 4), trivial, 2, 4, 1e-3, 0, tbptt=2, progress=False)


def test_distance_sweep_records():
    recs = distance_sweep("copy", n=6, distances=[1, 4], families=["gru", "cnn"], param_budget=2000, steps=3,
                          batch_size=8, lr=1e-2, seeds=[0], progress=False, eval_batches=1, eval_batch_size=16)
    assert [(r["family"], r["d"]) for r in recs] == [("gru", 1), ("gru", 4), ("cnn", 1), ("cnn", 4)]
    for r in recs:
        assert abs(r["params"] - 2000) <= 200 and 0 <= r["accuracy"] <= 1 and r["seconds"] > 0
    recs = distance_sweep("bracket", n=6, distances=[3], families=["lstm"], param_budget=2000, steps=2,
                          batch_size=8, lr=1e-2, tbptt=2, progress=False, eval_batches=1, eval_batch_size=16)
    assert recs[0]["family"] == "lstm"
    with pytest.raises(ValueError, match="task must be one of"):
        distance_sweep("sort", n=6, distances=[1], param_budget=2000, steps=1, batch_size=2, lr=1e-2)
    with pytest.raises(ValueError, match="d must be < n"):
        distance_sweep("copy", n=6, distances=[6], param_budget=2000, steps=1, batch_size=2, lr=1e-2)


def test_run_lab_and_main_write_a_reference_file(tmp_path, monkeypatch):
    import json

    import utils.train as train
    tiny = {"n": 6, "param_budget": 2000, "steps": 2, "batch_size": 4, "seeds": [0]}
    monkeypatch.setitem(train.LAB, "cpu", {
        "copy": {**tiny, "distances": [2], "lrs": [1e-2, 3e-2]},
        "position_copy": {**tiny, "distances": [2], "families": ["lstm_fb1"], "lrs": [1e-2]},
        "bracket": {**tiny, "d_min": 1, "d_max": 5, "eval_distances": [1, 5], "families": ["gru"], "lrs": [1e-2]},
        "tbptt": {**tiny, "distances": [2], "families": ["lstm"], "window": 2, "lr": 1e-2}})
    out = tmp_path / "sweep.json"
    assert main(["--out", str(out), "--profile", "cpu", "--seeds", "0,1", "--threads", "1"]) == 0
    data = json.loads(out.read_text())
    assert data["provenance"]["profile"] == "cpu" and data["provenance"]["seeds"] == [0, 1]
    assert len(data["copy"]) == 2 * 5 * 2                              # lrs x families x seeds
    assert sorted({r["lr"] for r in data["copy"]}) == [1e-2, 3e-2]
    assert {r["family"] for r in data["position_copy"]} == {"lstm_fb1"}
    assert [(r["seed"], r["d"]) for r in data["bracket"]] == [(0, 1), (0, 5), (1, 1), (1, 5)]
    assert all(r["trained_on"] == [1, 5] for r in data["bracket"])
    assert [r["window"] for r in data["tbptt"]] == [2, 2, None, None]
    for key in ("family", "d", "seed", "lr", "params", "accuracy", "steps_run", "curve"):
        assert key in data["copy"][0]


def test_learning_curves_are_block_means_of_the_training_accuracy():
    recs = distance_sweep("copy", n=6, distances=[2], families=["gru"], param_budget=2000, steps=25,
                          batch_size=8, lr=1e-2, seeds=[0], progress=False, eval_batches=1, eval_batch_size=16,
                          curve_every=10)
    model = make_model("gru", 12, 4, param_budget=2000, n=6, seed=0)
    hist = fit(model, functools.partial(copy_task, n=6, d=2), 25, 8, 1e-2, seed=0, progress=False)
    acc = hist["accuracy"]
    expected = [sum(acc[0:10]) / 10, sum(acc[10:20]) / 10, sum(acc[20:25]) / 5]
    assert recs[0]["curve"] == pytest.approx(expected, abs=1e-4)
    assert "curve" not in distance_sweep("copy", n=6, distances=[2], families=["gru"], param_budget=2000,
                                         steps=2, batch_size=8, lr=1e-2, progress=False, eval_batches=1,
                                         eval_batch_size=16)[0]


def test_variant_lstm_fb1_is_an_lstm_with_forget_bias_one():
    from utils.gradients import forget_gate_bias
    from utils.train import _build_variant
    m = _build_variant("lstm_fb1", 12, 4, 2000, 24, 0, {})
    plain = make_model("lstm", 12, 4, param_budget=2000, n=24, seed=0)
    assert m.family == "lstm" and torch.equal(forget_gate_bias(m.rnn), torch.ones(m.d_model))
    assert count_parameters(m) == count_parameters(plain)
    with pytest.raises(ValueError, match="family must be one of"):
        _build_variant("lstm_fb2", 12, 4, 2000, 24, 0, {})


def test_span_sweep_tests_one_model_at_every_distance():
    recs = span_sweep(n=8, d_min=1, d_max=6, eval_distances=[1, 3, 6], families=["lstm"], param_budget=2000,
                      steps=3, batch_size=8, lr=1e-2, seeds=[0], progress=False, eval_batches=1,
                      eval_batch_size=16)
    assert [r["d"] for r in recs] == [1, 3, 6]
    assert len({r["seconds"] for r in recs}) == 1                   # one training run, three test sets
    with pytest.raises(ValueError, match="d must be < n"):
        span_sweep(n=8, d_min=1, d_max=6, eval_distances=[8], param_budget=2000, steps=1, batch_size=2, lr=1e-2)
    with pytest.raises(ValueError, match="'bracket' task"):
        span_sweep("copy", n=8, d_min=1, d_max=6, eval_distances=[2], param_budget=2000, steps=1, batch_size=2,
                   lr=1e-2)


def test_early_stopping_once_solved():
    model = make_model("gru", 12, 4, 12, seed=0)
    hist = fit(model, trivial, 400, 32, 1e-2, seed=0, target_accuracy=0.99, window=10, progress=False)
    assert len(hist["accuracy"]) < 400
    assert sum(hist["accuracy"][-10:]) / 10 >= 0.99
    with pytest.raises(ValueError, match="target_accuracy"):
        fit(model, trivial, 2, 4, 1e-2, seed=0, target_accuracy=1.5, progress=False)


def test_lab_profiles_are_consistent():
    from utils.train import LAB, VARIANTS
    assert set(LAB) == {"cpu", "cpu_reference", "gpu"}
    names = set(FAMILIES) | set(VARIANTS)
    for profile in LAB.values():
        assert {"copy", "position_copy", "bracket", "tbptt"} <= set(profile)
        assert "window" in profile["tbptt"] and set(profile["tbptt"]["families"]) <= {"rnn", "lstm", "gru"}
        for name, cfg in profile.items():
            assert set(cfg.get("families", FAMILIES)) <= names
            assert ("lr" in cfg) != ("lrs" in cfg)
            if name == "bracket":
                assert 1 <= cfg["d_min"] < cfg["d_max"] < cfg["n"] and max(cfg["eval_distances"]) <= cfg["d_max"]
            else:
                assert max(cfg["distances"]) < cfg["n"] and min(cfg["distances"]) >= 1
    # the live CPU run is a subset of the committed five-seed reference: same recipe, fewer runs
    cpu, ref = LAB["cpu"], LAB["cpu_reference"]
    keys = ("n", "param_budget", "steps", "batch_size")
    for name, cfg in cpu.items():
        ref_cfg = ref["copy" if name == "copy_lr" else name]
        assert all(cfg[k] == ref_cfg[k] for k in keys), name
        assert set(cfg.get("lrs", [cfg.get("lr")])) <= set(ref_cfg.get("lrs", [ref_cfg.get("lr")]))
        assert set(cfg.get("families", FAMILIES)) <= set(ref_cfg.get("families", FAMILIES))
        assert set(cfg["seeds"]) <= set(ref_cfg["seeds"])
        if "distances" in cfg:
            assert set(cfg["distances"]) <= set(ref_cfg["distances"])
    assert cpu["tbptt"]["window"] == ref["tbptt"]["window"]
    assert cpu["bracket"]["eval_distances"] == ref["bracket"]["eval_distances"]
