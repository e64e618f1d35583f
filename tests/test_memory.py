import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.blocks import TransformerBlock
from utils.complexity import (
    GIB,
    MIB,
    attention_plan_bytes,
    attention_weights_bytes,
    bytes_per_element,
    format_bytes,
    max_seq_len,
)
from utils.measure import (
    attention_peak_memory,
    check_fits,
    cuda_oom_edge,
    fits_by_trying,
    free_memory_bytes,
    guard_attention,
    guard_large,
    is_allocation_failure,
    largest_passing,
    largest_that_fits,
    parameter_bytes,
    peak_memory,
    sweep_that_fits,
    training_peak_memory,
)

from fake_devices import FAKE, use_fake_gpu

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")


# ---------------------------------------------------------------- closed forms

@given(b=st.integers(1, 16), h=st.integers(1, 32), n=st.integers(1, 10_000),
       dtype=st.sampled_from([torch.int8, torch.float16, torch.float32, torch.float64]))
def test_attention_weights_bytes_is_the_nbytes_of_the_score_tensor(b, h, n, dtype):
    # The oracle is torch's own byte count of a (b, h, n, n) tensor (on the meta device: no memory used).
    scores = torch.empty(b, h, n, n, dtype=dtype, device="meta")
    assert attention_weights_bytes(b, h, n, bytes_per_element(dtype)) == scores.nbytes


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
    with pytest.raises(ValueError, match=r"nbytes must be a whole number >= 0, got -1\."):
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


@requires_cuda
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


def test_free_memory_cpu_uses_the_smallest_of_cgroup_and_meminfo(monkeypatch):
    from utils import env

    monkeypatch.setattr(env, "cpu_memory_bytes", lambda: (8 * GIB, 3 * GIB))
    assert free_memory_bytes("cpu") == 3 * GIB


def test_free_memory_falls_back_when_nothing_is_known(monkeypatch):
    from utils import env

    monkeypatch.setattr(env, "cpu_memory_bytes", lambda: (None, None))
    assert free_memory_bytes("cpu") > 0
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        free_memory_bytes("meta")


def test_free_memory_cuda_adds_what_the_allocator_holds_unused(monkeypatch):
    # the driver sees 2 GiB free; PyTorch has reserved 5 GiB of which 1 GiB is allocated: 6 GiB are free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * GIB, 16 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 5 * GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 * GIB)
    assert free_memory_bytes("cuda:0") == 6 * GIB


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


@requires_cuda
def test_cuda_oom_edge_is_near_max_seq_len():
    free = free_memory_bytes("cuda")
    edge = cuda_oom_edge(1, 8, "cuda", torch.float16, "weights")
    assert 0.8 * max_seq_len(free, 1, 8, 2) <= edge <= max_seq_len(free, 1, 8, 2) + 1


# ---------------------------------------------------------------- allocation failures

@pytest.mark.parametrize("exc, expected", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("some other bug"), False),
    (RuntimeError("No available kernel. Aborting execution."), False),
    (ValueError("out of memory"), False),          # not a RuntimeError: never a CUDA allocation failure
])
def test_is_allocation_failure(exc, expected):
    assert is_allocation_failure(exc) is expected


def test_fits_by_trying_counts_alloc_failures_and_reraises_bugs():
    def fail_with(message):
        def run():
            raise RuntimeError(message)
        return run

    assert fits_by_trying(lambda: None, "cpu") is True
    assert fits_by_trying(fail_with("CUBLAS_STATUS_ALLOC_FAILED"), "cpu") is False
    with pytest.raises(RuntimeError, match="some other bug"):
        fits_by_trying(fail_with("some other bug"), "cpu")


def test_oom_search_with_a_fake_cublas_failure_finds_the_edge():
    def attempt(n):
        def run():
            if n > 3000:
                raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasSgemm`")
            if n > 2000:
                raise torch.OutOfMemoryError("CUDA out of memory.")
        return run

    assert largest_passing(lambda n: fits_by_trying(attempt(n), "cpu"), 1, 10_000) == 2000


def test_oom_search_stops_on_a_real_bug():
    def attempt(n):
        def run():
            if n > 50:
                raise RuntimeError("some other bug")
        return run

    with pytest.raises(RuntimeError, match="some other bug"):
        largest_passing(lambda n: fits_by_trying(attempt(n), "cpu"), 1, 100)


# ---------------------------------------------------------------- sweeps sized from free memory

# II-02's GPU sweep: B=2, h=8, d=64 in fp16, naive attention (scores, weights and a spare copy)
def _naive_fp16(n):
    return attention_plan_bytes(2, 8, n, 64, 2, copies=3)


@pytest.mark.parametrize("fake, largest", [("t4", 8192), ("a100", 8192), ("h100", 16384)])
def test_sweep_that_fits_each_gpu(fake, largest):
    free = FAKE[fake][0].free_bytes
    ns = sweep_that_fits([1024, 2048, 4096, 8192, 16384, 32768], _naive_fp16, "cuda", free_bytes=free)
    assert ns[-1] == largest and ns[0] == 1024
    assert largest_that_fits([16384, 1024, 4096], _naive_fp16, "cuda", free_bytes=free) == \
        (16384 if largest == 16384 else 4096)
    for n in ns:   # every kept size passes the guard's own margin
        assert _naive_fp16(n) <= 0.5 * free


def test_sweep_that_fits_margin_limit_and_refusal():
    assert sweep_that_fits([1, 2, 3, 4], lambda n: n * GIB, "cpu", fraction=0.5, free_bytes=6 * GIB) == [1, 2, 3]
    assert sweep_that_fits([1, 2, 3, 4], lambda n: n * GIB, "cpu", free_bytes=6 * GIB, limit_bytes=2 * GIB) == [1, 2]
    with pytest.raises(ValueError, match="not even the smallest size 1 fits"):
        sweep_that_fits([1, 2], lambda n: n * GIB, "cpu", free_bytes=GIB)
    with pytest.raises(ValueError, match="candidates is empty"):
        sweep_that_fits([], lambda n: n, "cpu")
    with pytest.raises(ValueError, match="fraction"):
        sweep_that_fits([1], lambda n: n, "cpu", fraction=0)
    with pytest.raises(ValueError, match="bytes_for must be a callable"):
        sweep_that_fits([1], 3, "cpu")


def test_guard_large_skips_small_allocations():
    assert guard_large(1024, "cpu") == 1024
    with pytest.raises(ValueError, match="cap"):
        guard_large(1024, "cpu", limit_bytes=512)
    with pytest.raises(ValueError, match="refusing"):
        guard_large(10**18, "cpu")


# ---------------------------------------------------------------- backends by capability

@pytest.mark.parametrize("fake", ["t4", "a100", "h100"])
def test_attention_peak_memory_refuses_a_backend_the_gpu_lacks(monkeypatch, fake):
    desc = use_fake_gpu(monkeypatch, FAKE[fake])
    if fake == "t4":
        with pytest.raises(ValueError, match=r"flash needs compute capability >= 8.0 .*this GPU \(Tesla T4, sm75\) "
                                             r"runs, in float16: math, efficient — use impl='efficient'"):
            attention_peak_memory("flash", 1, 8, 1024, 64, "cuda", torch.float16)
        with pytest.raises(ValueError, match="cudnn needs"):
            attention_peak_memory("cudnn", 1, 8, 1024, 64, "cuda", torch.float16)
    # flash never runs in float32 on CUDA: the message offers a 16-bit dtype on sm80+
    match = r"or dtype=torch.float16" if desc.capability >= (8, 0) else r"use impl='efficient'\.$"
    with pytest.raises(ValueError, match=match):
        attention_peak_memory("flash", 1, 8, 1024, 64, "cuda", torch.float32)


def test_attention_peak_memory_refuses_efficient_on_a_cpu():
    with pytest.raises(ValueError, match=r"efficient needs a CUDA GPU.*use impl='flash'"):
        attention_peak_memory("efficient", 1, 1, 64, 8, "cpu")


@requires_cuda
def test_cuda_attention_peak_memory_every_available_impl():
    from utils.attention import available_attention_impls

    impls = available_attention_impls("cuda", torch.float16)
    peaks = {impl: attention_peak_memory(impl, 1, 4, 2048, 64, "cuda", torch.float16) for impl in impls}
    assert peaks["naive"] >= 2 * attention_weights_bytes(1, 4, 2048, 2)
    for impl in set(impls) & {"flash", "efficient", "cudnn"}:
        assert peaks[impl] < attention_weights_bytes(1, 4, 2048, 2), (impl, peaks)
    for impl in {"flash", "efficient", "cudnn"} - set(impls):
        with pytest.raises(ValueError, match="use impl="):
            attention_peak_memory(impl, 1, 4, 2048, 64, "cuda", torch.float16)


@requires_cuda
def test_cuda_oom_edge_of_naive_attention_is_below_its_prediction():
    free = free_memory_bytes("cuda")
    edge = cuda_oom_edge(1, 8, "cuda", torch.float16, "naive")
    assert 0 < edge <= max_seq_len(free, 1, 8, 2, overhead=2) + 1
    assert torch.cuda.memory_allocated() < 64 * MIB     # everything was released after the search



def test_assert_allocation_is_exact_on_the_tested_cpu_and_bounded_elsewhere(monkeypatch):
    from utils.measure import ALLOCATION_SLACK_BYTES, assert_allocation
    from utils.torch_support import TESTED_TORCH

    monkeypatch.setattr(torch, "__version__", TESTED_TORCH + "+cpu")
    assert_allocation(4096, 4096, "cpu")
    with pytest.raises(AssertionError, match=r"measured 4097 bytes, formula 4096 bytes \(\+1\); expected equal"):
        assert_allocation(4097, 4096, "cpu")
    monkeypatch.setattr(torch, "__version__", "2.4.0")           # another release: a bounded excess is fine
    assert_allocation(4096 + ALLOCATION_SLACK_BYTES, 4096, "cpu")
    with pytest.raises(AssertionError, match=r"\(-1\); expected between the formula and 10% \+ 2 MiB above it"):
        assert_allocation(4095, 4096, "cpu")                      # never below the formula
    with pytest.raises(AssertionError, match=r"expected between"):
        assert_allocation(2 * 10**8, 10**8, "cuda")               # a GPU is never exact, and 2x is too much


def test_saved_activation_bytes_counts_what_autograd_keeps():
    from utils.measure import saved_activation_bytes

    x = torch.randn(5, 4)
    assert saved_activation_bytes(torch.nn.Linear(4, 3), x) == x.nbytes            # the input, for the weight grad
    two = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    # the input, and tanh's output: tanh keeps it for its own backward, and the second layer keeps it as its
    # input (one storage, counted once)
    assert saved_activation_bytes(two, x) == x.nbytes + 5 * 6 * 4
    frozen = torch.nn.Linear(4, 3).requires_grad_(False)
    with pytest.raises(ValueError, match="requires a gradient"):
        saved_activation_bytes(frozen, x)
    with pytest.raises(ValueError, match="nn.Module"):
        saved_activation_bytes(lambda t: t, x)
    with pytest.raises(ValueError, match="inputs"):
        saved_activation_bytes(torch.nn.Linear(4, 3))
