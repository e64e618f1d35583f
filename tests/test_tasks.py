import functools

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.tasks import (
    BRACKET_TOKENS,
    COPY_QUERY,
    as_generator,
    balanced_blocks,
    bracket_task,
    copy_task,
    copy_task_layout,
    is_balanced,
    position_copy_task,
    render_tokens,
)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), data=st.data(), num_values=st.integers(2, 6), extra=st.integers(1, 8),
       batch=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_copy_task_places_the_value_exactly_d_before_the_query(n, data, num_values, extra, batch, seed):
    d = data.draw(st.integers(1, n - 1))
    vocab = num_values + 1 + extra
    x, y = copy_task(batch, n, d, num_values=num_values, vocab_size=vocab, generator=seed)
    layout = copy_task_layout(num_values, vocab)
    assert x.shape == (batch, n) and x.dtype == torch.long
    assert y.shape == (batch,) and y.dtype == torch.long
    assert (x[:, n - 1] == COPY_QUERY).all()
    assert (x[:, n - 1 - d] == layout["values"].start + y).all()
    assert ((0 <= y) & (y < num_values)).all()
    is_value = x >= layout["values"].start
    assert (is_value.sum(1) == 1).all()                      # exactly one value token per sequence
    others = torch.ones(n, dtype=torch.bool)
    others[[n - 1, n - 1 - d]] = False
    rest = x[:, others]
    assert ((rest >= layout["distractors"].start) & (rest < layout["distractors"].stop)).all()


def test_copy_task_is_deterministic_under_a_seed_and_varies_across_seeds():
    a = copy_task(8, 16, 5, generator=3)
    b = copy_task(8, 16, 5, generator=torch.Generator().manual_seed(3))
    c = copy_task(8, 16, 5, generator=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # one generator advances: two consecutive batches differ
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(copy_task(8, 16, 5, generator=g)[0], copy_task(8, 16, 5, generator=g)[0])


def test_copy_task_targets_and_distractors_are_spread():
    x, y = copy_task(4000, 10, 3, num_values=4, vocab_size=12, generator=0)
    counts = torch.bincount(y, minlength=4).float() / 4000
    assert (abs(counts - 0.25) < 0.03).all()
    assert set(x[:, 0].tolist()) == set(range(1, 8))        # every distractor shows up


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=10, d=10), "d must be < n"),
    (dict(n=10, d=12), "d must be < n"),
    (dict(n=10, d=0), "d must be >= 1"),
    (dict(n=10, d=-3), "d must be >= 1"),
    (dict(n=1, d=1), "n must be >= 2"),
    (dict(n=10, d=2.5), "whole number"),
    (dict(n=10, d=3, vocab_size=5), "vocab_size=5 is too small"),
    (dict(n=10, d=3, num_values=1), "num_values must be >= 2"),
])
def test_copy_task_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        copy_task(4, **kwargs)


def test_bad_batch_and_generator():
    with pytest.raises(ValueError, match="batch_size"):
        copy_task(0, 10, 3)
    with pytest.raises(ValueError, match="generator"):
        copy_task(2, 10, 3, generator=-1)
    with pytest.raises(ValueError, match="d must be < n"):
        bracket_task(2, 10, 10)


def test_as_generator():
    assert as_generator(None) is None
    g = torch.Generator()
    assert as_generator(g) is g
    assert torch.equal(torch.rand(3, generator=as_generator(5)), torch.rand(3, generator=as_generator(5)))


def test_balanced_blocks_are_all_the_balanced_words():
    assert balanced_blocks(0).shape == (1, 0)
    assert balanced_blocks(1).tolist() == [[0]]
    assert sorted(map(tuple, balanced_blocks(2).tolist())) == [(0, 0), (1, 2), (3, 4)]
    lib = balanced_blocks(4)
    assert len(lib) == 21 and all(is_balanced(w) for w in lib)
    assert len({tuple(w) for w in lib.tolist()}) == 21
    with pytest.raises(ValueError):
        balanced_blocks(7)


def test_is_balanced():
    ids = {s: i for i, s in enumerate(BRACKET_TOKENS)}
    enc = lambda s: [ids[c] for c in s]  # noqa: E731
    assert is_balanced(enc("([_])()"))
    assert not is_balanced(enc("([)]"))
    assert not is_balanced(enc("(("))
    assert not is_balanced(enc(")("))
    with pytest.raises(ValueError):
        is_balanced([7])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), data=st.data(), batch=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_bracket_task_label_is_balance_and_span_is_d(n, data, batch, seed):
    d = data.draw(st.integers(1, n - 1))
    x, y = bracket_task(batch, n, d, generator=seed)
    assert x.shape == (batch, n) and y.shape == (batch,) and x.dtype == torch.long
    for row, label in zip(x, y):
        assert is_balanced(row) == bool(label)
        assert int(row[n - 1 - d]) in (1, 3) and int(row[n - 1]) in (2, 4)     # opener, closer
        # the critical pair: everything before it and everything inside it is balanced on its own
        assert is_balanced(row[: n - 1 - d]) and is_balanced(row[n - d: n - 1])


def test_bracket_task_is_deterministic_and_half_balanced():
    a, b = bracket_task(2000, 20, 7, generator=1), bracket_task(2000, 20, 7, generator=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert abs(a[1].float().mean() - 0.5) < 0.05
    # the matching span cannot be read off a single position: both labels use both closers
    closers = a[0][:, -1]
    for label in (0, 1):
        assert set(closers[a[1] == label].tolist()) == {2, 4}


def test_task_fns_compose_with_partial():
    fn = functools.partial(copy_task, n=12, d=4)
    x, y = fn(3, generator=0)
    assert x.shape == (3, 12)


def test_render_tokens():
    x, y = copy_task(1, 6, 2, generator=0)
    s = render_tokens(x[0])
    assert s.split()[-1] == "?" and s.split()[3] == "ABCD"[int(y[0])]
    assert render_tokens(torch.tensor([1, 3, 0, 4, 2]), "bracket") == "( [ _ ] )"
    with pytest.raises(ValueError, match="'copy', 'position_copy' or 'bracket'"):
        render_tokens([1], "other")
    with pytest.raises(ValueError):
        render_tokens([99])


def _critical_opener(row) -> int:
    """Position of the opener matched by the last closer (the one opener left open before it)."""
    stack = []
    for i, t in enumerate(int(x) for x in row[:-1]):
        if t in (1, 3):
            stack.append(i)
        elif t in (2, 4):
            stack.pop()
    assert len(stack) == 1
    return stack[0]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 30), data=st.data(), batch=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_bracket_task_with_d_max_draws_a_span_per_sequence(n, data, batch, seed):
    d = data.draw(st.integers(1, n - 2))
    d_max = data.draw(st.integers(d, n - 1))
    x, y = bracket_task(batch, n, d, d_max=d_max, generator=seed)
    assert x.shape == (batch, n) and y.shape == (batch,)
    for row, label in zip(x, y):
        assert is_balanced(row) == bool(label)
        span = n - 1 - _critical_opener(row)
        assert d <= span <= d_max


def test_bracket_task_with_d_max_uses_every_span_and_no_fixed_offset_decides():
    n, lo, hi = 24, 1, 22
    x, y = bracket_task(6000, n, lo, d_max=hi, generator=0)
    spans = torch.tensor([n - 1 - _critical_opener(r) for r in x])
    counts = torch.bincount(spans, minlength=hi + 1)[lo:]
    assert (counts > 0).all() and counts.max() < 2 * counts.min() + 100        # roughly uniform over lo … hi
    # the fixed-offset shortcut of a fixed d: "is the token at n-1-d an opener of the closer's type?"
    # agrees with the label only on the sequences whose span is d, so it is far from solving the task
    for d in (2, 10):
        opener = x[:, n - 1 - d]
        shortcut = (opener == x[:, -1] - 1).long()
        assert (shortcut == y).float().mean() < 0.75
    assert torch.equal(
        bracket_task(50, n, lo, d_max=hi, generator=3)[0], bracket_task(50, n, lo, d_max=hi, generator=3)[0]
    )
    with pytest.raises(ValueError, match="d_max must be >= 5"):
        bracket_task(2, n, 5, d_max=4)
    with pytest.raises(ValueError, match="d must be < n"):
        bracket_task(2, n, 5, d_max=n)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), data=st.data(), num_values=st.integers(2, 6), batch=st.integers(1, 16),
       seed=st.integers(0, 2**16))
def test_position_copy_task_target_is_the_symbol_d_before_the_query(n, data, num_values, batch, seed):
    d = data.draw(st.integers(1, n - 1))
    x, y = position_copy_task(batch, n, d, num_values=num_values, generator=seed)
    assert x.shape == (batch, n) and x.dtype == torch.long and y.shape == (batch,)
    assert (x[:, n - 1] == COPY_QUERY).all()
    assert (x[:, : n - 1] >= 1).all() and (x[:, : n - 1] <= num_values).all()     # one alphabet everywhere
    assert torch.equal(y, x[:, n - 1 - d] - 1)


def test_position_copy_task_cannot_be_solved_by_content():
    # in copy_task the value is the one token from its own group; here the target symbol also fills the
    # other positions, so "which symbols occur" says little about the answer
    n, d = 24, 8
    x, y = position_copy_task(4000, n, d, generator=0)
    assert abs(torch.bincount(y, minlength=4).float() / 4000 - 0.25).max() < 0.03
    occurs_elsewhere = torch.stack([(x[i, : n - 1] == x[i, n - 1 - d]).sum() > 1 for i in range(len(x))])
    assert occurs_elsewhere.float().mean() > 0.99
    # the best content-only guess, the most frequent symbol, is right far less often than the position
    counts = torch.stack([torch.bincount(r[: n - 1] - 1, minlength=4) for r in x])
    assert (counts.argmax(1) == y).float().mean() < 0.45
    with pytest.raises(ValueError, match="d must be < n"):
        position_copy_task(2, 10, 10)
    with pytest.raises(ValueError, match="num_values must be >= 2"):
        position_copy_task(2, 10, 3, num_values=1)


def test_render_position_copy_tokens():
    assert render_tokens(torch.tensor([1, 4, 2, 0]), "position_copy") == "A D B ?"
    with pytest.raises(ValueError, match="position-copy tokens"):
        render_tokens([5], "position_copy")


def test_balanced_blocks_returns_a_fresh_tensor_each_call():
    first = balanced_blocks(4)
    expected = first.clone()
    first.zero_()  # a caller changing its copy must not change what the next caller gets
    assert torch.equal(balanced_blocks(4), expected)
