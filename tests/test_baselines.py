"""The baseline playbook: matched budgets, metrics, cost, selection, and bad input."""

import math

import pytest
import torch

from utils.baselines import (
    BASELINE_FAMILIES,
    Objective,
    Result,
    latency_per_sample_s,
    macro_f1,
    make_baseline,
    metrics,
    run_playbook,
    score,
    select,
    serving_cost_per_million,
    train_baseline,
    width_for_budget,
)
from utils.measure import count_parameters


@pytest.mark.parametrize("family", BASELINE_FAMILIES)
def test_every_family_maps_rows_to_logits(family):
    model = make_baseline(family, (8, 8), 10, param_budget=3000)
    assert model(torch.randn(5, 8, 8)).shape == (5, 10)
    assert model.family == family


@pytest.mark.parametrize("family", ["cnn", "lstm", "transformer"])
def test_widths_match_the_budget_within_ten_percent(family):
    model = make_baseline(family, (8, 8), 10, param_budget=4000)
    assert abs(count_parameters(model) - 4000) <= 400


def test_linear_is_logistic_regression_size():
    assert count_parameters(make_baseline("linear", (8, 8), 10, param_budget=3000)) == 64 * 10 + 10
    assert width_for_budget("linear", 3000, (8, 8), 10) == 0


def test_transformer_width_is_even():
    assert width_for_budget("transformer", 2000, (8, 8), 10) % 2 == 0


def test_macro_f1_matches_sklearn_and_punishes_the_majority_class():
    from sklearn.metrics import f1_score

    gen = torch.Generator().manual_seed(0)
    y_true, y_pred = torch.randint(3, (200,), generator=gen), torch.randint(3, (200,), generator=gen)
    assert macro_f1(y_true, y_pred, 3) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    y = torch.tensor([0] * 9 + [1])
    assert macro_f1(y, torch.zeros(10, dtype=torch.long), 2) == pytest.approx((2 * 9 / (18 + 1)) / 2)


def test_metrics_counts_every_sample_in_the_confusion_matrix():
    model = make_baseline("linear", (4, 4), 3, param_budget=100)
    x, y = torch.randn(30, 4, 4), torch.randint(3, (30,))
    m = metrics(model, x, y, 3)
    assert int(m["confusion"].sum()) == 30
    assert m["accuracy"] == pytest.approx(float(m["confusion"].diag().sum()) / 30)


def test_training_learns_a_separable_rule():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 4, 4, generator=gen)
    y = (x[:, 0, 0] > 0).long()
    model = make_baseline("linear", (4, 4), 2, param_budget=100)
    train_baseline(model, x, y, steps=150, batch_size=32, lr=0.05)
    assert metrics(model, x, y, 2)["accuracy"] > 0.9


def test_cost_formula():
    assert serving_cost_per_million(3600, flops_per_s=1e6, dollars_per_hour=1.0) == pytest.approx(1.0)
    assert serving_cost_per_million(0, flops_per_s=1e9, dollars_per_hour=2.0) == 0


def _r(family, f1, ms, cost=0.0, params=100):
    return Result(family, params, f1, f1, ms, 10, cost)


def test_select_uses_the_full_objective():
    results = [_r("big", 0.95, 2.0), _r("small", 0.90, 0.1)]
    assert select(results, Objective()).family == "big"
    assert select(results, Objective(per_ms=0.1)).family == "small"
    assert select(results, Objective(max_latency_ms=1.0)).family == "small"
    assert select(results, Objective(per_dollar=1.0)).family == "big"
    assert select([_r("a", 0.9, 1.0, params=50), _r("b", 0.9, 1.0, params=10)], Objective()).family == "b"
    assert score(_r("a", 0.9, 1.0), Objective(min_quality=0.95)) == -math.inf


def test_run_playbook_returns_one_row_per_family():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, 4, generator=gen), torch.randint(2, (64,), generator=gen)
    rows = run_playbook(x, y, x, y, 2, families=("linear", "cnn"), param_budget=400, steps=2, batch_size=8,
                        min_run_time=0.001)
    assert [r.family for r in rows] == ["linear", "cnn"]
    assert all(r.flops > 0 and r.latency_ms > 0 and r.cost_per_million > 0 for r in rows)


@pytest.mark.parametrize("call", [
    lambda: make_baseline("mlp", (8, 8), 10, param_budget=1000),
    lambda: make_baseline("cnn", (2, 8), 10, param_budget=1000),
    lambda: make_baseline("cnn", (8,), 10, param_budget=1000),
    lambda: make_baseline("lstm", (8, 8), 1, param_budget=1000),
    lambda: make_baseline("lstm", (8, 8), 10, param_budget=0),
    lambda: make_baseline("transformer", (8, 8), 10, param_budget=10),
    lambda: macro_f1([0, 1], [0], 2),
    lambda: macro_f1([0, 3], [0, 1], 2),
    lambda: serving_cost_per_million(10, flops_per_s=0, dollars_per_hour=1.0),
    lambda: serving_cost_per_million(-1, flops_per_s=1e9, dollars_per_hour=1.0),
    lambda: Objective(quality="loss"),
    lambda: Objective(per_ms=-1.0),
    lambda: Objective(min_quality=2.0),
    lambda: select([], Objective()),
    lambda: select([_r("a", 0.9, 1.0)], {"per_ms": 1}),
    lambda: select([_r("a", 0.9, 5.0)], Objective(max_latency_ms=1.0)),
    lambda: train_baseline(make_baseline("linear", (4, 4), 2, param_budget=10), torch.randn(8, 16),
                           torch.zeros(8, dtype=torch.long), steps=1, batch_size=2),
    lambda: latency_per_sample_s(make_baseline("linear", (4, 4), 2, param_budget=10), torch.randn(2, 4, 4)),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
