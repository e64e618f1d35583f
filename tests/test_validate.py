"""utils.validate: every bad value is a ValueError whose message names the argument and the value."""

import math

import pytest
from hypothesis import given, strategies as st

from utils.validate import check_choice, check_int, check_positive_float, check_positive_int


def test_check_int_accepts_whole_numbers_and_rejects_the_rest():
    assert check_int("n", 3) == 3 and type(check_int("n", 3)) is int
    assert check_int("n", 0, minimum=0) == 0
    with pytest.raises(ValueError, match=r"^n must be a whole number, got True \(bool\)\.$"):
        check_int("n", True)
    with pytest.raises(ValueError, match=r"^n must be a whole number, got 2\.0 \(float\)\.$"):
        check_int("n", 2.0)
    with pytest.raises(ValueError, match=r"^n must be >= 1, got 0\. use n >= 1\.$"):
        check_int("n", 0, minimum=1, hint="use n >= 1.")
    with pytest.raises(ValueError, match=r"^layers must be >= 1, got -3\.$"):
        check_positive_int("layers", -3)


@given(x=st.floats(min_value=1e-300, max_value=1e300))
def test_check_positive_float_accepts_every_finite_positive_number(x):
    assert check_positive_float("x", x) == x


@pytest.mark.parametrize("value, message", [
    (math.inf, r"^lr must be a finite number > 0, got inf\. e\.g\. 1e-3\.$"),   # inf used to pass
    (-math.inf, r"^lr must be a finite number > 0, got -inf\."),
    (math.nan, r"^lr must be a finite number > 0, got nan\."),
    (0.0, r"^lr must be > 0, got 0\.0\."),
    (-1, r"^lr must be > 0, got -1\."),
    (False, r"^lr must be a number, got False \(bool\)\.$"),
    ("0.1", r"^lr must be a number, got '0\.1' \(str\)\.$"),
])
def test_check_positive_float_rejects_non_finite_and_non_positive(value, message):
    with pytest.raises(ValueError, match=message):
        check_positive_float("lr", value, "e.g. 1e-3.")


def test_check_choice_returns_the_value():
    assert check_choice("mask", "local", {"none", "causal", "local"}) == "local"
    assert check_choice("family", "rnn", ("rnn", "lstm")) == "rnn"
    assert check_choice("norm", "spectral", {"spectral": 2, "frobenius": "fro"}) == "spectral"


@pytest.mark.parametrize("value", [["rnn"], {"rnn": 1}, {"rnn"}])
@pytest.mark.parametrize("choices", [{"rnn", "lstm"}, {"rnn": 1, "lstm": 4}, frozenset({"rnn", "lstm"})])
def test_check_choice_with_an_unhashable_value_is_a_value_error(value, choices):
    # `value in a_set` raises TypeError for a list or dict: it used to escape as a TypeError.
    with pytest.raises(ValueError, match=r"^family must be one of \['lstm', 'rnn'\], got "):
        check_choice("family", value, choices)


def test_check_choice_names_the_choices_and_the_value():
    with pytest.raises(ValueError, match=r"^mask must be one of \['causal', 'none'\], got 'sparse'\.$"):
        check_choice("mask", "sparse", {"none", "causal"})
