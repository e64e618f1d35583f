import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.complexity import kv_cache_bytes, recurrent_state_bytes
from utils.measure import reachability
from utils.models import TinyDecoder
from utils.streaming import ConvLSTM, RingKVCache, decode_step_at, sliding_window_decode


def _stepwise(model, x):
    state, ys = None, []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1), state


@settings(deadline=None, max_examples=12)
@given(k=st.integers(2, 4), layers=st.integers(0, 3), dilated=st.booleans(), n=st.integers(1, 24),
       batch=st.integers(1, 3))
def test_step_by_step_equals_forward(k, layers, dilated, n, batch):
    torch.manual_seed(0)
    model = ConvLSTM(3, 5, kernel_size=k, conv_layers=layers, dilated=dilated).double()
    x = torch.randn(batch, n, 3, dtype=torch.float64)
    with torch.no_grad():
        stepped, state = _stepwise(model, x)
        torch.testing.assert_close(stepped, model(x))
    assert state.t == n


@pytest.mark.parametrize("n", [1, 3, 7, 20])
def test_prefill_then_step_equals_stepping_all_the_way(n):
    torch.manual_seed(0)
    model = ConvLSTM(3, 6, kernel_size=3, conv_layers=3).double()
    x = torch.randn(2, n + 5, 3, dtype=torch.float64)
    with torch.no_grad():
        stepped, state = _stepwise(model, x[:, :n])
        y, pre = model.prefill(x[:, :n])
        torch.testing.assert_close(y, stepped)
        assert pre.t == state.t == n and pre.nbytes == state.nbytes
        for a, b in zip(pre.buffers, state.buffers):
            torch.testing.assert_close(a, b)
        for t in range(n, n + 5):
            ya, pre = model.step(x[:, t], pre)
            yb, state = model.step(x[:, t], state)
            torch.testing.assert_close(ya, yb)
        torch.testing.assert_close(ya, model(x)[:, -1])


def test_forward_is_causal_and_sees_the_whole_past():
    torch.manual_seed(0)
    model = ConvLSTM(2, 4, kernel_size=3, conv_layers=3)
    reach = reachability(model, 12, 2)
    assert torch.equal(reach, torch.tril(torch.ones(12, 12, dtype=torch.bool)))


def test_conv_front_end_alone_sees_its_receptive_field():
    model = ConvLSTM(2, 4, kernel_size=2, conv_layers=3)  # dilations 1, 2, 4: field 1 + 7 = 8
    assert model.dilations == [1, 2, 4] and model.conv_receptive_field == 8
    front = torch.nn.Sequential(model.inp, model.conv)
    reach = reachability(front, 16, 2)
    t = torch.arange(16)
    expected = (t[:, None] >= t[None, :]) & (t[:, None] - t[None, :] < 8)
    assert torch.equal(reach, expected)


@pytest.mark.parametrize("k, layers, dilated, d_model, batch, dtype", [
    (3, 2, True, 8, 2, torch.float32),   # buffers 2 + 4
    (2, 4, True, 16, 1, torch.float64),  # buffers 1 + 2 + 4 + 8
    (5, 3, False, 4, 3, torch.float32),  # buffers 4 + 4 + 4
    (3, 0, True, 8, 2, torch.float16),   # LSTM only
])
def test_state_bytes_are_exact_and_do_not_grow(k, layers, dilated, d_model, batch, dtype):
    model = ConvLSTM(3, d_model, kernel_size=k, conv_layers=layers, dilated=dilated).to(dtype)
    bpe = torch.empty((), dtype=dtype).element_size()
    dil = [2**i for i in range(layers)] if dilated else [1] * layers
    closed = batch * d_model * (k - 1) * sum(dil) * bpe + recurrent_state_bytes(batch, d_model, 1, "lstm", bpe)
    assert model.state_bytes(batch) == model.state_bytes(batch, bpe) == closed
    state = model.initial_state(batch)
    assert state.nbytes == closed
    with torch.no_grad():
        for _ in range(3 * sum(model.buffer_sizes) + 2):
            _, state = model.step(torch.randn(batch, 3).to(dtype), state)
    assert state.nbytes == closed


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_in=0, d_model=4), "d_in must be >= 1"),
    (dict(d_in=2, d_model=4, conv_layers=-1), "conv_layers must be >= 0"),
    (dict(d_in=2, d_model=4, kernel_size=1), "kernel_size must be >= 2"),
    (dict(d_in=2, d_model=4, dilated="yes"), "dilated must be True or False"),
])
def test_bad_construction_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvLSTM(**kwargs)


def test_bad_inputs_are_clear_errors():
    model = ConvLSTM(3, 4)
    with pytest.raises(ValueError, match=r"\(batch, n, d_in\) with d_in=3"):
        model(torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match=r"\(batch, d_in\)"):
        model.step(torch.randn(2, 5, 3))
    _, state = model.step(torch.randn(2, 3))
    with pytest.raises(ValueError, match="same batch size"):
        model.step(torch.randn(3, 3), state)
    with pytest.raises(ValueError, match="bytes_per_element"):
        model.state_bytes(1, 0)


def _decoder():
    torch.manual_seed(0)
    return TinyDecoder(vocab=16, d_model=16, heads=2, layers=2, d_ff=32, max_len=64).double()


def test_sliding_window_decode_equals_a_causal_local_mask():
    model = _decoder()
    tokens = torch.randint(0, 16, (2, 30), generator=torch.Generator().manual_seed(1))
    window = 8
    reference = copy.deepcopy(model)
    for block in reference.blocks:
        block.attn.mask_kind, block.attn.radius, block.attn.causal = "local", window, True
    with torch.no_grad():
        decoded = sliding_window_decode(model, tokens, window)
        torch.testing.assert_close(decoded, reference(tokens))
        full = model(tokens)
    torch.testing.assert_close(decoded[:, :window + 1], full[:, :window + 1])  # nothing dropped yet
    assert not torch.allclose(decoded[:, window + 1:], full[:, window + 1:])  # then the window forgets


@pytest.mark.parametrize("t", [0, 3, 8, 40])
def test_ring_cache_size_is_fixed_and_a_full_cache_grows(t):
    model = _decoder()
    step = decode_step_at(model, t, window=8)
    assert step().shape == (1, 1, 16)
    assert step.cache.nbytes == kv_cache_bytes(1, 2, 8, 8, 2, 8)  # batch, heads, window, head_dim, layers, fp64
    full = decode_step_at(model, t)
    assert full().shape == (1, 1, 16)
    assert full.cache.nbytes == kv_cache_bytes(1, 2, t + 1, 8, 2, 8)


def test_ring_cache_refuses_what_it_cannot_hold():
    cache = RingKVCache(1, 1, 4, 2)
    with pytest.raises(ValueError, match="one position at a time"):
        cache.write(0, 0, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="write at start=0"):
        cache.write(0, 1, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
    with pytest.raises(ValueError, match="window must be >= 1"):
        RingKVCache(1, 1, 0, 2)
    with pytest.raises(ValueError, match="TinyDecoder"):
        sliding_window_decode(torch.nn.Linear(2, 2), torch.zeros(1, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="max_len"):
        decode_step_at(_decoder(), 64, window=8)
    with pytest.raises(ValueError, match="TinyDecoder"):
        decode_step_at(torch.nn.Linear(2, 2), 3)


def test_a_token_reaches_only_layers_times_window_positions_ahead():
    # each layer moves information at most `window` positions: with 2 layers, token 0 reaches t <= 2·window,
    # i.e. distance s needs local_attention_layers(s, window) = ceil(s / window) layers
    from utils.complexity import local_attention_layers

    model, window = _decoder(), 5
    tokens = torch.randint(0, 16, (1, 20), generator=torch.Generator().manual_seed(2))
    changed = tokens.clone()
    changed[0, 0] = (tokens[0, 0] + 1) % 16
    diff = (sliding_window_decode(model, tokens, window) - sliding_window_decode(model, changed, window))
    reached = diff.abs().amax(dim=-1)[0] > 0
    expected = torch.tensor([local_attention_layers(s, window) <= model.n_layers for s in range(20)])
    assert torch.equal(reached, expected) and int(reached.sum()) == 2 * window + 1
