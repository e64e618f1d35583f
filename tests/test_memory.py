import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils import memory
from utils.complexity import attention_weights_bytes, max_seq_len
from utils.measure import check_fits, guard_attention, peak_memory
from utils.memory import (GIB, MIB, TransformerBlock, attention_peak_memory, bytes_per_element, cuda_oom_edge,
                          format_bytes, free_memory_bytes, largest_passing, parameter_bytes,
                          training_peak_memory)


# ---------------------------------------------------------------- closed forms

@given(b=st.integers(1, 16), h=st.integers(1, 32), n=st.integers(1, 10_000), bpe=st.sampled_from([1, 2, 4, 8]))
def test_attention_weights_bytes_is_the_product(b, h, n, bpe):
    assert attention_weights_bytes(b, h, n, bpe) == b * h * n * n * bpe


def test_attention_weights_bytes_matches_a_real_tensor():
    for dtype in (torch.float16, torch.float32):
        t = torch.empty(2, 3, 17, 17, dtype=dtype)
        assert attention_weights_bytes(2, 3, 17, bytes_per_element(dtype)) == t.nbytes


def test_seed_table_single_head_fp16_is_in_mib():
    assert [attention_weights_bytes(1, 1, n) / MIB for n in (512, 1024, 2048, 4096, 8192)] == [0.5, 2, 8, 32, 128]
    assert attention_weights_bytes(4, 8, 2048) == 256 * MIB          # the seed says ~512 MB
    assert attention_weights_bytes(2, 8, 4096) == 512 * MIB
    assert attention_weights_bytes(4, 8, 4096) == GIB                  # exactly 1 GiB = 1.07 GB


@settings(max_examples=300)
@given(budget=st.integers(1, 2**44), b=st.integers(1, 8), h=st.integers(1, 16), bpe=st.sampled_from([1, 2, 4]),
       overhead=st.sampled_from([1.0, 1.5, 2.0, 3.7, 4, 8]))
def test_max_seq_len_is_the_exact_boundary(budget, b, h, bpe, overhead):
    n = max_seq_len(budget, b, h, bpe, overhead)
    from fractions import Fraction
    per = Fraction(b * h * bpe) * Fraction(overhead)
    assert n * n * per <= budget < (n + 1) ** 2 * per


def test_max_seq_len_seed_examples():
    assert max_seq_len(8 * GIB, 2, 8) == 16384          # sqrt(8 GiB / 32 B) = 2**14 exactly
    assert max_seq_len(8 * 10**9, 2, 8) == 15811         # decimal GB: a little less
    assert max_seq_len(8 * GIB, 2, 8, overhead=4) == 8192  # 4x overhead halves n, not thirds it
    assert max_seq_len(8 * GIB, 2, 8, overhead=8) == 5792
    assert max_seq_len(1, 1, 1, 2) == 0                  # not even n = 1 fits in one byte
    assert max_seq_len(2.0, 1, 1, 2) == 1                # float budgets are fine


@pytest.mark.parametrize("args, message", [
    ((0, 1, 1), "memory_budget_bytes must be > 0"),
    ((-5, 1, 1), "memory_budget_bytes must be > 0"),
    ((float("inf"), 1, 1), "finite"),
    (("8GB", 1, 1), "finite number of bytes"),
    ((100, 0, 1), "batch must be >= 1"),
    ((100, 1, 1.5), "heads must be a whole number"),
])
def test_max_seq_len_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        max_seq_len(*args)


def test_max_seq_len_bad_overhead_and_weights_bad_inputs():
    with pytest.raises(ValueError, match="overhead"):
        max_seq_len(100, 1, 1, overhead=0)
    with pytest.raises(ValueError, match="overhead"):
        max_seq_len(100, 1, 1, overhead=True)
    with pytest.raises(ValueError, match="n must be >= 1"):
        attention_weights_bytes(1, 1, 0)
    with pytest.raises(ValueError, match="bytes_per_element"):
        attention_weights_bytes(1, 1, 4, 0)
    with pytest.raises(ValueError, match="dtype"):
        bytes_per_element("float16")


def test_format_bytes_gives_both_units():
    assert format_bytes(256 * MIB) == "256 MiB (268.4 MB)"
    assert format_bytes(GIB) == "1 GiB (1.074 GB)"
    assert format_bytes(12) == "12 B"
    with pytest.raises(ValueError):
        format_bytes(-1)


# ---------------------------------------------------------------- peak memory

@settings(deadline=None, max_examples=10)
@given(n=st.integers(1, 200_000), dtype=st.sampled_from([torch.float16, torch.float32, torch.float64]))
def test_peak_memory_of_one_tensor_is_its_size(n, dtype):
    assert peak_memory(lambda: torch.empty(n, dtype=dtype), "cpu") == n * bytes_per_element(dtype)


def test_peak_memory_follows_allocations_and_frees():
    def fn():
        a = torch.empty(1_000_000)          # 4 MB
        b = torch.empty(500_000)            # +2 MB -> 6 MB
        del a                               # 2 MB
        c = torch.empty(750_000)            # +3 MB -> 5 MB
        return b, c

    assert peak_memory(fn, "cpu") == 6_000_000


def test_peak_memory_ignores_what_existed_before():
    big = torch.empty(2_000_000)
    assert peak_memory(lambda: big.neg_(), "cpu") == 0       # in place: nothing new
    assert peak_memory(lambda: torch.neg(big), "cpu") == big.nbytes
    assert big.nbytes <= peak_memory(lambda: big + 1, "cpu") <= big.nbytes + 64   # + the wrapped scalar


def test_peak_memory_bad_inputs():
    with pytest.raises(ValueError, match="callable"):
        peak_memory(42, "cpu")
    with pytest.raises(ValueError, match="device"):
        peak_memory(lambda: None, "meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_peak_memory_cuda_known_allocation():
    n = 1 << 20
    assert peak_memory(lambda: torch.empty(n, device="cuda"), "cuda") >= 4 * n


@pytest.mark.parametrize("n", [64, 128, 256])
def test_naive_attention_peak_is_scores_plus_weights_plus_output(n):
    b, h, d = 1, 2, 16
    weights = attention_weights_bytes(b, h, n, 4)
    out = b * h * n * d * 4
    assert attention_peak_memory("naive", b, h, n, d) == 2 * weights + out


def test_flash_attention_never_materialises_the_weights():
    n = 1024
    weights = attention_weights_bytes(1, 2, n, 4)
    assert attention_peak_memory("flash", 1, 2, n, 32) < weights / 4
    assert attention_peak_memory("math", 1, 2, n, 32) >= 2 * weights


def test_training_peak_memory_counts_grads_and_adam_exactly():
    torch.manual_seed(0)
    block = TransformerBlock(32, 2, 64, impl="naive")
    r = training_peak_memory(block, torch.randn(1, 16, 32))
    p = parameter_bytes(block)
    assert r["params"] == p == 4 * sum(t.numel() for t in block.parameters())
    assert r["grads"] == p and r["adam_state"] == 2 * p
    assert r["train_step"] >= r["grads"] + r["adam_state"]
    assert r["ratio"] == pytest.approx((p + r["train_step"]) / (p + r["forward"]))
    assert all(q.grad is None for q in block.parameters())


# ---------------------------------------------------------------- the guard

def test_free_memory_is_positive():
    assert free_memory_bytes("cpu") > 0


def test_meminfo_parser(tmp_path):
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n")
    assert memory._meminfo_available(str(f)) == 8_000_000 * 1024
    f.write_text("MemTotal: 5 kB\n")
    assert memory._meminfo_available(str(f)) is None
    assert memory._meminfo_available(str(tmp_path / "missing")) is None


def test_free_memory_falls_back_when_meminfo_is_missing(monkeypatch):
    monkeypatch.setattr(memory, "_meminfo_available", lambda path="/proc/meminfo": None)
    assert free_memory_bytes("cpu") > 0


def test_check_fits_accepts_small_and_refuses_large():
    assert check_fits(1024, "cpu") == 1024
    with pytest.raises(ValueError, match="refusing"):
        check_fits(free_memory_bytes("cpu") * 4, "cpu")
    with pytest.raises(ValueError, match="cap"):
        check_fits(2 * MIB, "cpu", limit_bytes=MIB)


@pytest.mark.parametrize("kwargs, message", [
    (dict(bytes_needed=-1), "bytes_needed"),
    (dict(bytes_needed=1.5), "bytes_needed"),
    (dict(bytes_needed=1, fraction=0), "fraction"),
    (dict(bytes_needed=1, fraction=1.5), "fraction"),
    (dict(bytes_needed=1, limit_bytes=0), "limit_bytes"),
])
def test_check_fits_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_fits(device="cpu", **kwargs)


def test_guard_refuses_attention_that_does_not_fit_before_allocating():
    # 1 x 64 x 10^6 x 10^6 float32 weights are 256 TB: refused at once, nothing allocated.
    with pytest.raises(ValueError, match="refusing attention"):
        guard_attention(1, 64, 10**6, 64, "cpu")
    with pytest.raises(ValueError, match="refusing attention"):
        attention_peak_memory("naive", 1, 64, 10**6, 64)
    with pytest.raises(ValueError, match="cap"):
        attention_peak_memory("naive", 1, 8, 4096, 64, limit_bytes=100 * MIB)
    planned = guard_attention(1, 2, 128, 16, "cpu", bytes_per_element=4, copies=2)
    assert planned == 4 * 2 * 128 * 16 * 4 + 2 * attention_weights_bytes(1, 2, 128, 4)
    with pytest.raises(ValueError, match="copies"):
        guard_attention(1, 2, 128, 16, "cpu", copies=-1)


def test_attention_peak_memory_bad_impl():
    with pytest.raises(ValueError, match="impl must be one of"):
        attention_peak_memory("fastest", 1, 1, 8, 8)


# ---------------------------------------------------------------- the OOM edge search

@given(edge=st.integers(0, 5000), hi=st.integers(1, 6000))
def test_largest_passing_finds_the_edge(edge, hi):
    calls = []

    def fits(m):
        calls.append(m)
        return m <= edge

    got = largest_passing(fits, 1, hi)
    assert got == min(edge, hi) if edge >= 1 else got == 0
    assert len(calls) <= 3 + math.ceil(math.log2(hi + 1))


def test_largest_passing_bad_range_and_cuda_only():
    with pytest.raises(ValueError, match="lo <= hi"):
        largest_passing(lambda m: True, 5, 2)
    with pytest.raises(ValueError, match="only on a CUDA"):
        cuda_oom_edge(1, 1, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_oom_edge_is_near_max_seq_len():
    free = free_memory_bytes("cuda")
    edge = cuda_oom_edge(1, 8, "cuda", torch.float16, "weights")
    assert 0.8 * max_seq_len(free, 1, 8, 2) <= edge <= max_seq_len(free, 1, 8, 2) + 1
