import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.blocks import KVCache
from utils.complexity import MIB, decode_step_flops, generation_flops, kv_cache_bytes, recurrent_state_bytes
from utils.measure import count_flops, peak_memory
from utils.models import TinyDecoder, decode_step, generate


@given(b=st.integers(1, 8), h=st.integers(1, 16), n=st.integers(1, 5000), d=st.integers(1, 256),
       layers=st.integers(1, 48), bpe=st.sampled_from([1, 2, 4]))
def test_kv_cache_bytes_counts_keys_and_values_of_every_layer(b, h, n, d, layers, bpe):
    assert kv_cache_bytes(b, h, n, d, layers, bpe) == 2 * layers * b * h * n * d * bpe


def test_seed_kv_example_is_8_mib_not_4():
    # B = 1, h = 8, n = 4096, d_k = 64, FP16, one layer: K alone is 4 MiB, K and V together 8 MiB.
    assert kv_cache_bytes(1, 8, 4096, 64) == 8 * MIB
    assert kv_cache_bytes(1, 8, 4096, 64) // 2 == 4 * MIB


@settings(deadline=None, max_examples=15)
@given(layers=st.integers(1, 3), b=st.integers(1, 3), h=st.integers(1, 4), n=st.integers(1, 64),
       d=st.integers(1, 16), dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]))
def test_cache_tensors_have_exactly_the_formula_bytes(layers, b, h, n, d, dtype):
    cache = KVCache(b, h, n, d, layers=layers, dtype=dtype)
    bpe = torch.empty((), dtype=dtype).element_size()
    assert cache.nbytes == kv_cache_bytes(b, h, n, d, layers, bpe)
    assert sum(t.nbytes for t in cache.keys + cache.values) == cache.nbytes


def test_allocating_a_cache_allocates_exactly_the_formula():
    assert peak_memory(lambda: KVCache(1, 8, 4096, 64, dtype=torch.float16), "cpu") == kv_cache_bytes(1, 8, 4096, 64)


def test_cache_overflow_and_guard():
    cache = KVCache(1, 1, 4, 2)
    cache.length = 3
    with pytest.raises(ValueError, match="overflow"):
        cache.write(0, 3, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="refusing"):
        KVCache(1, 1, 10**6, 64, limit_bytes=MIB)


@settings(deadline=None, max_examples=8)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), t0=st.integers(1, 6), new=st.integers(1, 12))
def test_greedy_tokens_are_identical_with_and_without_cache(seed, b, t0, new):
    torch.manual_seed(seed)
    model = TinyDecoder(vocab=17, d_model=16, heads=2, layers=2, d_ff=32, max_len=32).double().eval()
    prompt = torch.randint(0, 17, (b, t0))
    with_cache, cache = generate(model, prompt, new, use_cache=True, return_cache=True)
    without = generate(model, prompt, new, use_cache=False)
    assert torch.equal(with_cache, without)
    assert with_cache.shape == (b, t0 + new) and torch.equal(with_cache[:, :t0], prompt)
    assert cache.nbytes == kv_cache_bytes(b, 2, t0 + new, 8, 2, 8)


def test_cached_logits_match_full_forward():
    torch.manual_seed(0)
    model = TinyDecoder(vocab=11, d_model=16, heads=4, layers=3, d_ff=40, max_len=20).double()
    tokens = torch.randint(0, 11, (2, 12))
    full = model(tokens)
    cache = model.new_cache(2, 12)
    parts = [model(tokens[:, :5], cache, 0)] + [model(tokens[:, t:t + 1], cache, t) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full)


@pytest.mark.parametrize("context", [1, 2, 7, 33])
@pytest.mark.parametrize("use_cache", [True, False])
def test_decode_step_flops_formula_is_what_runs(context, use_cache):
    model = TinyDecoder(vocab=23, d_model=32, heads=4, layers=2, d_ff=48, max_len=64)
    step = decode_step(model, context, use_cache, batch=2)
    assert count_flops(step) == decode_step_flops(context, 32, 48, 2, 23, use_cache, batch=2)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_flops_formula_is_what_runs(use_cache):
    model = TinyDecoder(vocab=13, d_model=16, heads=2, layers=2, d_ff=24, max_len=40)
    prompt = torch.randint(0, 13, (1, 4))
    measured = count_flops(lambda: generate(model, prompt, 9, use_cache=use_cache))
    assert measured == generation_flops(4, 9, 16, 24, 2, 13, use_cache)


def test_cache_turns_quadratic_per_token_work_into_linear():
    d, d_ff, layers, vocab = 64, 256, 2, 64

    def f(c, uc):
        return decode_step_flops(c, d, d_ff, layers, vocab, uc)

    for c in (1, 10, 100, 1000):
        # with the cache: affine in the context (only the 4·c·d of QKᵀ and A·V grows) ...
        assert f(c + 1, True) - f(c, True) == layers * 4 * d
        # ... without it: quadratic, second difference 2 · layers · 4d
        assert f(c + 2, False) - 2 * f(c + 1, False) + f(c, False) == 2 * layers * 4 * d
    assert f(1, True) == f(1, False)


def test_recurrent_state_is_constant_in_n():
    lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
    state = None
    sizes = []
    with torch.no_grad():
        for _ in range(5):
            _, state = lstm(torch.randn(3, 1, 8), state)
            sizes.append(sum(s.nbytes for s in state))
    assert sizes == [recurrent_state_bytes(3, 16, 2, "lstm", 4)] * 5
    assert recurrent_state_bytes(3, 16, 2, "gru", 4) == sizes[0] // 2


@pytest.mark.parametrize("call, message", [
    (lambda m: generate(m, torch.zeros(1, 3), 2), "token ids"),
    (lambda m: generate(m, torch.zeros(3, dtype=torch.long), 2), "token ids"),
    (lambda m: generate(m, torch.full((1, 3), 99), 2), r"\[0, 64\)"),
    (lambda m: generate(m, torch.zeros(1, 3, dtype=torch.long), 0), "new_tokens must be >= 1"),
    (lambda m: generate(m, torch.zeros(1, 3, dtype=torch.long), 200), "max_len"),
    (lambda m: generate(m, torch.zeros(1, 3, dtype=torch.long), 2, use_cache="yes"), "use_cache"),
    (lambda m: generate(nn.Linear(2, 2), torch.zeros(1, 3, dtype=torch.long), 2), "TinyDecoder"),
    (lambda m: decode_step(m, 500, True), "max_len"),
    (lambda m: decode_step_flops(0, 8, 8, 1, 8, True), "context must be >= 1"),
    (lambda m: kv_cache_bytes(1, 1, 1, 0), "head_dim must be >= 1"),
    (lambda m: recurrent_state_bytes(1, 8, family="transformer", bytes_per_element=4), "family must be one of"),
    (lambda m: TinyDecoder(d_model=10, heads=4), "divisible"),
])
def test_bad_inputs_are_clear_errors(call, message):
    model = TinyDecoder(max_len=128)
    with pytest.raises(ValueError, match=message):
        call(model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")
def test_cuda_generate_with_a_cpu_prompt():
    torch.manual_seed(0)
    model = TinyDecoder(vocab=32, d_model=32, heads=4, layers=2, d_ff=64, max_len=64).double().eval()
    prompt = torch.randint(0, 32, (2, 5))
    on_cpu = generate(model, prompt, 8)
    on_gpu = generate(model.to("cuda"), prompt, 8)                # the prompt stays on the CPU
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)
    assert torch.equal(generate(model, prompt, 8, use_cache=False).cpu(), on_cpu)


def test_cache_write_refuses_a_gap():
    # A gap (start > length) would leave zero keys at the skipped positions, which the next query
    # attends to (softmax gives them weight exp(0)): the old write accepted it silently.
    cache = KVCache(1, 1, 8, 2)
    cache.write(0, 0, torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    cache.length = 2
    with pytest.raises(ValueError, match="gap"):
        cache.write(0, 4, torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    with pytest.raises(ValueError, match="overwrite"):
        cache.write(0, 1, torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    keys, _ = cache.write(0, 2, torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    assert keys.shape[2] == 3


def test_model_refuses_a_gap_in_positions():
    model = TinyDecoder(vocab=11, d_model=16, heads=2, layers=1, d_ff=16, max_len=20)
    cache = model.new_cache(1, 12)
    model(torch.zeros(1, 3, dtype=torch.long), cache, 0)
    with pytest.raises(ValueError, match="gap"):
        model(torch.zeros(1, 1, dtype=torch.long), cache, 5)


def test_decode_step_can_be_repeated_and_honours_the_memory_cap():
    model = TinyDecoder(vocab=11, d_model=16, heads=2, layers=2, d_ff=16, max_len=64).double()
    step = decode_step(model, 9, True)
    first, second = step(), step()
    torch.testing.assert_close(first, second)
    assert step.cache.length == 9
    for use_cache in (True, False):
        with pytest.raises(ValueError, match="refusing"):
            decode_step(model, 60, use_cache, limit_bytes=64)


def test_decode_step_bytes_counts_weights_once_and_the_whole_cache():
    from utils.models import decode_step_bytes

    d, L, d_ff, V = 16, 3, 40, 11
    model = TinyDecoder(vocab=V, d_model=d, heads=2, layers=L, d_ff=d_ff, max_len=64)
    per_layer = 4 * (d * d + d) + (d * d_ff + d_ff) + (d_ff * d + d) + 2 * 2 * d   # Q,K,V,O, FFN, 2 norms
    weights = L * per_layer + 2 * d + V * d                                          # final norm, head
    for T, B in [(1, 1), (10, 1), (10, 3)]:
        expected = 4 * (weights + 2 * B * d + 2 * L * B * T * d)
        assert decode_step_bytes(model, T, batch=B) == expected
    # the cache part equals the cache a step at context T reads (T positions, K and V, every layer)
    cache = decode_step(model, 10, True).cache
    assert decode_step_bytes(model, 10) - decode_step_bytes(model, 1) == cache.nbytes * 9 // 10
    with pytest.raises(ValueError, match="TinyDecoder"):
        decode_step_bytes(nn.Linear(2, 2), 4)


def test_kvcache_takes_the_order_of_kv_cache_bytes_and_warns_on_the_old_order():
    new = KVCache(2, 4, 16, 8, layers=3, dtype=torch.float16)
    assert new.nbytes == kv_cache_bytes(2, 4, 16, 8, 3)
    assert (new.layers, new.capacity, tuple(new.keys[0].shape)) == (3, 16, (2, 4, 16, 8))
    with pytest.warns(DeprecationWarning, match=r"KVCache\(batch, heads, capacity, head_dim, layers="):
        old = KVCache(3, 2, 4, 16, 8, torch.float16)          # 0.1 order: layers first
    assert (old.layers, tuple(old.keys[0].shape), old.keys[0].dtype) == (3, (2, 4, 16, 8), torch.float16)
    with pytest.raises(ValueError, match=r"KVCache takes \(batch, heads, capacity, head_dim"):
        KVCache(1, 1, 1, 4, 2, torch.float32, "cpu", 0.5, None, "extra")
