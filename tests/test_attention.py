import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.attention import causal_mask, local_mask, naive_attention, sdpa_attention
from utils.blocks import MultiHeadAttention


@given(n=st.integers(1, 20), radius=st.integers(0, 25), causal=st.booleans())
def test_local_mask_matches_definition(n, radius, causal):
    m = local_mask(n, radius, causal)
    for j in range(n):
        for i in range(n):
            expected = (0 <= j - i <= radius) if causal else abs(j - i) <= radius
            assert bool(m[j, i]) == expected


def test_local_mask_with_large_radius_is_full_or_causal():
    assert local_mask(7, 10).all()
    assert torch.equal(local_mask(7, 10, causal=True), causal_mask(7))


@pytest.mark.parametrize("mask_kind", ["none", "causal"])
def test_naive_matches_sdpa_math(mask_kind):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, dtype=torch.float64) for _ in range(3))
    mask = causal_mask(16) if mask_kind == "causal" else None
    torch.testing.assert_close(naive_attention(q, k, v, mask), sdpa_attention(q, k, v, mask, backend="math"))


def test_attention_rows_are_convex_combinations():
    q, k, v = (torch.randn(1, 1, 10, 4) for _ in range(3))
    _, w = naive_attention(q, k, v, local_mask(10, 2), return_weights=True)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 1, 10))


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=6, heads=4), "divisible"),
    (dict(d_model=8, mask="local"), "radius"),
    (dict(d_model=8, mask="sparse"), "mask must be one of"),
    (dict(d_model=0), "d_model must be >= 1"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(**kwargs)


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("mask", ["none", "causal"])
def test_causal_true_is_causal_whatever_the_mask(impl, mask):
    # Was silently a full (non-causal) layer unless mask="local".
    torch.manual_seed(0)
    layer = MultiHeadAttention(8, heads=2, mask=mask, causal=True, impl=impl).double().eval()
    assert layer.causal and layer.mask_kind == "causal"
    assert torch.equal(layer.build_mask(5), causal_mask(5))
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, -1] += 1.0                                  # change only the last position
    y, y2 = layer(x), layer(x2)
    torch.testing.assert_close(y[:, :-1], y2[:, :-1], rtol=0, atol=0)   # no earlier output sees it
    assert not torch.allclose(y[:, -1], y2[:, -1])


def test_mask_causal_sets_causal_and_local_causal_keeps_its_window():
    assert MultiHeadAttention(8, mask="causal").causal
    local = MultiHeadAttention(8, mask="local", radius=2, causal=True)
    assert torch.equal(local.build_mask(6), local_mask(6, 2, causal=True))
    assert MultiHeadAttention(8).build_mask(6) is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(radius=2), r"radius=2 only applies to mask='local' \(got mask='none'\)"),
    (dict(mask="causal", radius=0), r"radius=0 only applies to mask='local' \(got mask='causal'\)"),
    (dict(mask="local", radius=-1), "radius must be >= 0"),
    (dict(mask="local", radius=1.5), "radius must be a whole number"),
    (dict(causal="yes"), "causal must be True or False"),
])
def test_radius_without_a_local_mask_is_an_error(kwargs, message):
    # radius was silently ignored without mask="local" (and checked only at the first forward).
    with pytest.raises(ValueError, match=message):
        MultiHeadAttention(8, **kwargs)


def test_bad_mask_arguments():
    with pytest.raises(ValueError, match="n must be >= 1"):
        local_mask(0, 1)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        local_mask(5, -1)
    with pytest.raises(ValueError, match="backend must be one of"):
        q = torch.randn(1, 1, 4, 2)
        sdpa_attention(q, q, q, backend="fastest")


@settings(deadline=None, max_examples=10)
@given(n=st.integers(1, 12), heads=st.sampled_from([1, 2]), impl=st.sampled_from(["naive", "sdpa"]))
def test_self_attention_shapes(n, heads, impl):
    layer = MultiHeadAttention(8, heads=heads, impl=impl)
    assert layer(torch.randn(2, n, 8)).shape == (2, n, 8)


# --- backends by capability (fake GPUs; the CPU for real) ---------------------------------------------

from utils.attention import (  # noqa: E402
    available_attention_impls,
    check_sdpa_backend,
    fused_attention_impl,
    unavailable_backend_message,
)

from fake_devices import FAKE, use_fake_gpu  # noqa: E402

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")


def test_available_impls_on_this_cpu():
    impls = available_attention_impls("cpu", torch.float32)
    assert impls[:2] == ["naive", "math"] and "efficient" not in impls and "cudnn" not in impls
    assert fused_attention_impl("cpu", torch.float32) == ("flash" if "flash" in impls else None)


@pytest.mark.parametrize("fake, dtype, impls, fused", [
    ("t4", torch.float16, ["naive", "math", "efficient"], "efficient"),
    ("t4", torch.bfloat16, ["naive", "math"], None),
    ("a100", torch.float16, ["naive", "math", "flash", "efficient", "cudnn"], "flash"),
    ("a100", torch.float32, ["naive", "math", "efficient"], "efficient"),
    ("h100", torch.bfloat16, ["naive", "math", "flash", "efficient", "cudnn"], "flash"),
])
def test_available_impls_by_capability(monkeypatch, fake, dtype, impls, fused):
    use_fake_gpu(monkeypatch, FAKE[fake])
    assert available_attention_impls("cuda", dtype) == impls
    assert fused_attention_impl("cuda", dtype) == fused


def test_check_sdpa_backend_says_what_to_use_instead(monkeypatch):
    use_fake_gpu(monkeypatch, FAKE["t4"])
    assert check_sdpa_backend("efficient", "cuda", torch.float16) == "efficient"
    with pytest.raises(ValueError, match=r"^flash needs compute capability >= 8.0 and fp16/bf16 .*; this GPU "
                                         r"\(Tesla T4, sm75\) runs, in float16: math, efficient "
                                         r"— use impl='efficient'\.$"):
        check_sdpa_backend("flash", "cuda", torch.float16)
    with pytest.raises(ValueError, match="runs, in bfloat16: math — use impl='math'"):
        check_sdpa_backend("efficient", "cuda", torch.bfloat16)
    with pytest.raises(ValueError, match="backend must be one of"):
        check_sdpa_backend("fastest", "cuda", torch.float16)


def test_unavailable_message_offers_a_16_bit_dtype_on_ampere(monkeypatch):
    use_fake_gpu(monkeypatch, FAKE["a100"])
    msg = unavailable_backend_message("flash", "cuda", torch.float32)
    assert "NVIDIA A100-SXM4-40GB, sm80" in msg and msg.endswith("use impl='efficient' or dtype=torch.float16.")


def test_sdpa_attention_forced_backend_that_cannot_run_is_a_value_error():
    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match=r"efficient needs a CUDA GPU.*this CPU"):
        sdpa_attention(q, q, q, backend="efficient")
    with pytest.raises(ValueError, match="cudnn needs"):
        sdpa_attention(q, q, q, backend="cudnn")


@requires_cuda
def test_cuda_every_available_backend_matches_naive():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 64, generator=g).to("cuda", torch.float16) for _ in range(3))
    ref = naive_attention(q.float(), k.float(), v.float())
    for impl in available_attention_impls("cuda", torch.float16)[1:]:
        out = sdpa_attention(q, k, v, backend=impl)
        assert torch.allclose(out.float(), ref, atol=2e-2), impl
    cap = torch.cuda.get_device_capability()
    if cap < (8, 0):
        with pytest.raises(ValueError, match="flash needs compute capability >= 8.0"):
            sdpa_attention(q, k, v, backend="flash")


# --- online softmax (FlashAttention's algorithm, for reading) -------------------------------------------

from utils.attention import online_softmax_attention  # noqa: E402


@pytest.mark.parametrize("n, block, causal", [(1, 4, False), (7, 3, False), (16, 16, True), (33, 8, True),
                                              (20, 64, False), (12, 1, True)])
def test_online_softmax_equals_the_textbook_formula(n, block, causal):
    g = torch.Generator().manual_seed(n * 100 + block)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64) for _ in range(3))
    want = naive_attention(q, k, v, causal_mask(n) if causal else None)
    torch.testing.assert_close(online_softmax_attention(q, k, v, block_size=block, causal=causal), want)


def test_online_softmax_handles_large_scores_without_overflow():
    q = torch.full((1, 4, 2), 300.0)
    k = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]])
    v = torch.arange(8.0).view(1, 4, 2)
    got = online_softmax_attention(q, k, v, block_size=1)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, naive_attention(q, k, v))


def test_online_softmax_memory_grows_like_n_not_n_squared():
    from utils.complexity import attention_weights_bytes
    from utils.measure import peak_memory

    d, block = 16, 64
    g = torch.Generator().manual_seed(0)
    peaks = {}
    for n in (1024, 2048):
        q, k, v = (torch.randn(1, 1, n, d, generator=g) for _ in range(3))
        peaks["tiled", n] = peak_memory(lambda q=q, k=k, v=v: online_softmax_attention(q, k, v, block_size=block),
                                        "cpu")
        peaks["naive", n] = peak_memory(lambda q=q, k=k, v=v: naive_attention(q, k, v), "cpu")
    assert peaks["naive", 1024] >= attention_weights_bytes(1, 1, 1024, bytes_per_element=4)  # holds n x n scores
    assert peaks["tiled", 1024] < attention_weights_bytes(1, 1, 1024, bytes_per_element=4) / 3
    assert peaks["naive", 2048] / peaks["naive", 1024] > 3.5      # doubling n: four times the memory
    assert peaks["tiled", 2048] / peaks["tiled", 1024] < 2.5      # doubling n: twice (n x block scores)


@pytest.mark.parametrize("kwargs, match", [
    (dict(block_size=0), r"block_size must be >= 1"),
    (dict(causal="yes"), r"causal must be True or False"),
])
def test_online_softmax_rejects_bad_options(kwargs, match):
    q = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match=match):
        online_softmax_attention(q, q, q, **kwargs)


def test_online_softmax_rejects_mismatched_shapes():
    q = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match=r"keys and values need the same length"):
        online_softmax_attention(q, torch.zeros(1, 5, 2), torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match=r"causal attention needs as many queries as keys, got 4 and 6"):
        online_softmax_attention(q, torch.zeros(1, 6, 2), torch.zeros(1, 6, 2), causal=True)
    with pytest.raises(ValueError, match=r"q must be a tensor of shape"):
        online_softmax_attention([1, 2], q, q)
