import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.complexity import attention_weights_bytes
from utils.datastats import (
    autocorrelation,
    autocorrelation_floor,
    bracket_distances,
    bucketed_batches,
    corpus_function_lengths,
    function_lengths,
    label_mutual_information,
    lagged_mutual_information,
    length_percentiles,
    mutual_information,
    mutual_information_floor,
    nearest_rank,
    padding_cost,
    planted_lag_autocorrelation,
    planted_lag_mutual_information,
    planted_lag_series,
    planted_lag_tokens,
    random_batches,
    span_above_floor,
)
from utils.tasks import bracket_task, copy_task

SOURCE = '''import functools


@functools.cache
def first(a, b):
    return (a + b) * [1, 2][0]


class Box:
    def method(self):
        def inner():
            return {"k": 1}
        return inner()

    async def other(self):
        pass
'''


# ------------------------------------------------------------------------------------------- lengths

def test_function_lengths_counts_each_def_not_nested_in_a_function():
    chars = function_lengths(SOURCE, unit="chars")
    assert len(chars) == 3                                       # first, method, other (inner belongs to method)
    start = SOURCE.index("def first")
    assert chars[0] == SOURCE.index("[0]") + 3 - start         # from "def" to the last character
    tokens = function_lengths(SOURCE, unit="tokens")
    # def first ( a , b ) : return ( a + b ) * [ 1 , 2 ] [ 0 ] -> 23 tokens
    assert tokens[0] == 23
    assert tokens[2] == len("async def other ( self ) : pass".split())


def test_function_lengths_bad_input():
    with pytest.raises(ValueError, match="not valid Python"):
        function_lengths("def f(:\n")
    with pytest.raises(ValueError, match="unit must be one of"):
        function_lengths(SOURCE, unit="words")
    with pytest.raises(ValueError, match="source must be"):
        function_lengths(b"def f(): pass")
    with pytest.raises(ValueError, match="modules must be"):
        corpus_function_lengths("textwrap")


def test_corpus_lengths_are_long_tailed():
    lengths = corpus_function_lengths(("textwrap", "heapq"))
    stats = length_percentiles(lengths)
    assert stats["P50"] <= stats["P90"] <= stats["P99"] <= stats["max"]
    assert stats["mean"] > stats["P50"]                          # a long right tail pulls the mean up


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=200), st.sampled_from([1, 25, 50, 90, 99, 100]))
def test_nearest_rank_matches_numpy_inverted_cdf(values, p):
    assert nearest_rank(values, p) == int(np.percentile(values, p, method="inverted_cdf"))
    assert np.mean(np.asarray(values) <= nearest_rank(values, p)) >= p / 100


def test_length_percentiles_bad_input():
    for bad in ([], [0, 3], [1.5, 2.0], [[1, 2]]):
        with pytest.raises(ValueError, match="lengths must"):
            length_percentiles(bad)
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1, 2], 0)


def test_bracket_distances_ignore_strings_and_comments():
    src = 'f(a, "(((", [b])  # ((\n'
    # tokens: f ( a , "(((" , [ b ] ) comment
    assert sorted(bracket_distances(src).tolist()) == [2, 8]
    assert sorted(bracket_distances(src, unit="chars").tolist()) == [2, 14]
    with pytest.raises(ValueError, match="unit"):
        bracket_distances(src, unit="lines")


# ------------------------------------------------------------------------------------ autocorrelation

def test_autocorrelation_matches_numpy_and_the_planted_lag():
    x = planted_lag_series(20_000, 7, theta=0.8, seed=1)
    acf = autocorrelation(x, 20)
    c = x - x.mean()
    assert acf[0] == 1.0
    assert acf[3] == pytest.approx(np.dot(c[:-3], c[3:]) / np.dot(c, c))
    floor = autocorrelation_floor(x.size, 20)
    assert acf[7] == pytest.approx(planted_lag_autocorrelation(0.8), abs=4 / np.sqrt(x.size))
    assert span_above_floor(np.abs(acf[1:]), floor) == 7


def test_autocorrelation_bad_input():
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(np.arange(10.0), 10)
    with pytest.raises(ValueError, match="constant"):
        autocorrelation(np.ones(10), 2)
    with pytest.raises(ValueError, match="finite"):
        autocorrelation([1.0, np.nan, 2.0, 3.0], 1)
    with pytest.raises(ValueError, match="alpha"):
        autocorrelation_floor(100, 5, alpha=2)


# ------------------------------------------------------------------------------- mutual information

def test_mutual_information_closed_forms():
    x = np.arange(1000) % 4
    assert mutual_information(x, x) == pytest.approx(np.log(4))
    assert mutual_information(x, np.zeros_like(x)) == 0.0
    assert mutual_information(np.repeat([0, 1], 500), np.tile([0, 1], 500)) == pytest.approx(0.0, abs=1e-12)


def test_planted_tokens_mi_matches_closed_form_only_at_the_lag():
    lag = 11
    x = planted_lag_tokens(60_000, lag, vocab=6, p=0.5, seed=3)
    mi, floor = lagged_mutual_information(x, 40)
    assert mi[lag - 1] == pytest.approx(planted_lag_mutual_information(6, 0.5), rel=0.1)
    assert span_above_floor(mi, floor) == lag
    assert (mi > floor).sum() == 1                    # 2 * lag is independent too


def test_mutual_information_floor_is_the_g_test_quantile():
    # upper chi-square quantiles from scipy.stats.chi2.isf(p, df): (p, df) -> quantile
    table = {(0.01, 9): 21.665994333461928, (0.01, 81): 113.51241047036046, (0.0001, 49): 94.59672198268808}
    assert mutual_information_floor(4, 4, 1000) == pytest.approx(table[(0.01, 9)] / 2000, rel=0.02)
    assert mutual_information_floor(10, 10, 50_000) == pytest.approx(table[(0.01, 81)] / 100_000, rel=0.02)
    # Bonferroni: 100 tests at alpha 0.01 in all is one test at 0.0001
    assert mutual_information_floor(8, 8, 10, tests=100) == pytest.approx(table[(0.0001, 49)] / 20, rel=0.02)


def test_label_mi_recovers_the_copy_distance_and_needs_the_pair_for_brackets():
    x, y = copy_task(3000, 32, 9, generator=0)
    mi, floor = label_mutual_information(x.numpy(), y.numpy())
    assert span_above_floor(mi, floor) == 9 and int(np.argmax(mi)) + 1 == 9
    x, y = bracket_task(3000, 32, 13, generator=0)
    alone, floor = label_mutual_information(x.numpy(), y.numpy())
    assert span_above_floor(alone, floor) == 0        # neither bracket alone says anything about the label
    pair, floor = label_mutual_information(x.numpy(), y.numpy(), pair_with_last=True)
    assert span_above_floor(pair, floor) == 13 and pair[12] == pytest.approx(np.log(2), abs=0.01)


def test_mutual_information_bad_input():
    with pytest.raises(ValueError, match="integer symbols"):
        mutual_information([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="pair up"):
        mutual_information([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="targets"):
        label_mutual_information(np.zeros((4, 5), dtype=int), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="symbols_x"):
        mutual_information_floor(1, 4, 100)
    with pytest.raises(ValueError, match="p must be"):
        planted_lag_tokens(100, 3, p=1.5)
    with pytest.raises(ValueError, match="floor"):
        span_above_floor([1.0, 2.0], [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------------------- padding

@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=120), st.integers(1, 17), st.integers(0, 99))
def test_bucketing_never_pads_more_and_keeps_the_peak(lengths, batch_size, seed):
    rand = padding_cost(lengths, random_batches(len(lengths), batch_size, seed=seed), heads=2)
    buck = padding_cost(lengths, bucketed_batches(lengths, batch_size, seed=seed), heads=2)
    assert rand.real_tokens == buck.real_tokens == sum(lengths)
    assert buck.padded_tokens <= rand.padded_tokens
    assert buck.attention_bytes_total <= rand.attention_bytes_total
    assert buck.attention_bytes_real == rand.attention_bytes_real <= buck.attention_bytes_total
    # bucketing fills its first batch with the longest sequences: its peak is a full batch padded to the
    # longest length, the most any grouping into batches of this size can pay
    full = min(batch_size, len(lengths))
    assert buck.attention_bytes_peak == attention_weights_bytes(full, 2, max(lengths)) >= rand.attention_bytes_peak


def test_padding_cost_counts_exactly():
    lengths = [3, 10, 4, 9]
    cost = padding_cost(lengths, [[0, 1], [2, 3]], heads=1, bytes_per_element=2)
    assert cost.real_tokens == 26 and cost.padded_tokens == 2 * 10 + 2 * 9 and cost.wasted_tokens == 12
    assert cost.waste_fraction == pytest.approx(12 / 38)
    assert cost.attention_bytes_total == 2 * (2 * 100 + 2 * 81) and cost.attention_bytes_peak == 2 * 2 * 100
    assert cost.attention_bytes_real == 2 * (9 + 100 + 16 + 81)
    buck = padding_cost(lengths, bucketed_batches(lengths, 2))
    assert buck.padded_tokens == 2 * 10 + 2 * 4


def test_padding_cost_bad_input():
    with pytest.raises(ValueError, match="exactly once"):
        padding_cost([1, 2, 3], [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="batch_size"):
        random_batches(10, 0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=300))
def test_mutual_information_is_symmetric_and_bounded_by_the_entropies(pairs):
    x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    mi = mutual_information(x, y)
    assert mi == pytest.approx(mutual_information(y, x), abs=1e-12)

    def entropy(v):
        p = np.unique(v, return_counts=True)[1] / v.size
        return float(-(p * np.log(p)).sum())

    assert -1e-12 <= mi <= min(entropy(x), entropy(y)) + 1e-12
    assert mutual_information(x, x) == pytest.approx(entropy(x), abs=1e-12)
