"""Loaders of small real data that ship inside installed packages (utils.datasets)."""

import pytest
import torch

from utils.datasets import digits, eeg, eeg_trace, stdlib_source, stdlib_text


def test_digits_shapes_ranges_and_a_reproducible_split():
    d = digits()
    assert d.x_train.shape == (1347, 1, 8, 8) and d.x_val.shape == (450, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert 0 <= float(d.x_train.min()) and float(d.x_train.max()) == 1.0
    assert set(d.y_val.tolist()) == set(range(10))
    assert torch.equal(digits().y_train, d.y_train) and not torch.equal(digits(seed=1).y_train, d.y_train)
    small = digits(n_train=100)
    assert small.x_train.shape[0] == 100 and torch.equal(small.y_val, d.y_val)


def test_eeg_windows_are_the_trace_and_the_split_is_chronological():
    trace = eeg_trace()
    assert trace.shape == (800, 4)
    s = eeg(window=16, val_fraction=0.25)
    assert s.x_train.shape == (4 * (600 - 16), 16, 1) and s.y_train.shape == (4 * (600 - 16),)
    assert s.x_val.shape == (4 * (200 - 16), 16, 1)
    # the target of window t is the first value of window t+1's last position
    assert torch.allclose(s.x_train[1, -1, 0], s.y_train[0])
    assert abs(float(s.x_train[: 600 - 16].mean())) < 0.2
    assert s.info["persistence_mse"] > 0 and s.info["samples"] == 800


def test_stdlib_text_targets_are_the_inputs_shifted_by_one():
    s = stdlib_text(context=32, max_chars=20_000)
    assert s.x_train.shape[1] == 32 and s.y_train.shape == s.x_train.shape
    assert torch.equal(s.x_val[:, 1:], s.y_val[:, :-1])
    vocab = s.info["vocab"]
    assert "".join(vocab[i] for i in s.x_val[0, :8].tolist()) in stdlib_source()
    assert 0 < s.info["unigram_loss"] < torch.log(torch.tensor(len(vocab) + 0.0))


@pytest.mark.parametrize("call", [
    lambda: digits(val_fraction=1.5), lambda: digits(seed=-1), lambda: digits(n_train=10_000),
    lambda: digits(n_train=0), lambda: eeg(window=0), lambda: eeg(window=500), lambda: eeg(channels=[7]),
    lambda: stdlib_text(context=0), lambda: stdlib_text(modules="textwrap"),
    lambda: stdlib_text(modules=["no_such_module_x"]), lambda: stdlib_text(context=64, max_chars=100),
])
def test_bad_input_is_a_value_error(call):
    with pytest.raises(ValueError):
        call()
