
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from utils.attention import naive_attention
from utils.complexity import (
    Stage,
    achieved_flops_per_s,
    arithmetic_intensity,
    attainable_flops_per_s,
    attention_flops,
    elementwise_bytes,
    fused_attention_stage,
    matmul_bytes,
    naive_attention_stages,
    ridge_intensity,
)
from utils.measure import (
    Roofline,
    copy_bandwidth_bytes_per_s,
    count_flops,
    matmul_peak_flops_per_s,
    measure_roofline,
    time_attention_stages,
    time_best_s,
)


def test_matmul_bytes_closed_form():
    assert matmul_bytes(2, 3, 4, bytes_per_element=4) == (6 + 12 + 8) * 4
    assert matmul_bytes(2, 3, 4, batch=5, bytes_per_element=2) == 5 * 26 * 2


def test_elementwise_bytes_closed_form():
    assert elementwise_bytes(10, bytes_per_element=4) == 80
    assert elementwise_bytes(10, 2, reads=2, writes=1) == 60


@given(n=st.integers(1, 300), dh=st.integers(1, 96), b=st.integers(1, 3), h=st.integers(1, 4),
       bpe=st.sampled_from([2, 4]))
def test_attention_stages_match_flops_module_and_formula(n, dh, b, h, bpe):
    stages = naive_attention_stages(n, dh, b, h, bytes_per_element=bpe)
    assert [s.name for s in stages] == ["QKᵀ", "scale", "softmax", "PV"]
    matmul = [s for s in stages if s.kind == "matmul"]
    assert sum(s.flops for s in matmul) == attention_flops(n, h * dh, b, heads=h)
    bh = b * h
    assert stages[0].bytes_moved == bh * (2 * n * dh + n * n) * bpe
    assert stages[1].bytes_moved == stages[2].bytes_moved == 2 * bh * n * n * bpe
    assert stages[2].flops == 5 * bh * n * n
    fused = fused_attention_stage(n, dh, b, h, bytes_per_element=bpe)
    assert fused.flops == sum(s.flops for s in stages)
    assert fused.bytes_moved == 4 * bh * n * dh * bpe


def test_attention_stage_flops_equal_counted_flops():
    q, k, v = (torch.randn(2, 3, 40, 16) for _ in range(3))
    stages = naive_attention_stages(40, 16, 2, 3, bytes_per_element=4)
    assert count_flops(naive_attention, q, k, v) == sum(s.flops for s in stages if s.kind == "matmul")


def test_intensity_of_stages_large_n_limits():
    # for n >> d_h the matmul stages approach 2·d_h / bytes, the element-wise ones stay constant
    stages = {s.name: s for s in naive_attention_stages(2**16, 64, bytes_per_element=4)}
    assert stages["QKᵀ"].intensity == pytest.approx(2 * 64 / 4, rel=0.01)
    assert stages["scale"].intensity == pytest.approx(1 / 8)
    assert stages["softmax"].intensity == pytest.approx(5 / 8)


@given(i=st.floats(1e-3, 1e4), peak=st.floats(1e6, 1e15), bw=st.floats(1e6, 1e13))
def test_attainable_is_min_of_roofs(i, peak, bw):
    a = attainable_flops_per_s(i, peak, bw)
    assert a == pytest.approx(min(peak, i * bw))
    assert a <= peak * (1 + 1e-12)
    roof = Roofline(peak, bw)
    assert roof.bound(i) == ("memory" if i < peak / bw else "compute")


def test_attainable_accepts_arrays_and_ridge():
    out = attainable_flops_per_s(np.array([1.0, 10.0, 100.0]), 100.0, 10.0)
    assert out.tolist() == [10.0, 100.0, 100.0]
    assert ridge_intensity(100.0, 10.0) == 10.0
    assert Roofline(100.0, 10.0).ridge_intensity == 10.0


def test_intensity_and_achieved():
    assert arithmetic_intensity(100, 50) == 2.0
    assert achieved_flops_per_s(1e9, 0.5) == 2e9


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: arithmetic_intensity(0, 1), r"flops must be > 0, got"),
        (lambda: arithmetic_intensity(1, 0), r"bytes_moved must be > 0, got"),
        (lambda: achieved_flops_per_s(0, 1.0), r"flops must be > 0, got"),
        (lambda: achieved_flops_per_s(1, -1.0), r"seconds must be > 0, got"),
        (lambda: attainable_flops_per_s(0.0, 1.0, 1.0), r"intensity must be > 0 \(FLOPs"),
        (lambda: attainable_flops_per_s([1.0, -1.0], 1.0, 1.0), r"intensity must be > 0 \(FLOPs"),
        (lambda: attainable_flops_per_s(1.0, 0, 1.0), r"peak_flops_per_s must be > 0, got"),
        (lambda: ridge_intensity(1.0, 0), r"bandwidth_bytes_per_s must be > 0, got"),
        (lambda: matmul_bytes(0, 1, 1, bytes_per_element=4), r"m must be >= 1, got"),
        (lambda: matmul_bytes(1, 1, 1, bytes_per_element=0), r"bytes_per_element must be >= 1, got"),
        (
            lambda: elementwise_bytes(10, reads=0, writes=0, bytes_per_element=4),
            r"an element\-wise stage reads or writes",
        ),
        (lambda: elementwise_bytes(0, bytes_per_element=4), r"numel must be >= 1, got"),
        (lambda: naive_attention_stages(0, 64, bytes_per_element=4), r"n must be >= 1, got"),
        (
            lambda: naive_attention_stages(8, 64, softmax_flops_per_element=0, bytes_per_element=4),
            r"softmax_flops_per_element must be >= 1, got",
        ),
        (lambda: Stage("x", 1, 1, "nonsense"), r"kind must be one of \['elementwise',"),
        (lambda: Stage("x", 0, 1, "matmul"), r"flops must be >= 1, got"),
        (lambda: Roofline(0.0, 1.0), r"peak_flops_per_s must be > 0, got"),
        (lambda: matmul_peak_flops_per_s("cpu", size=0), r"size must be >= 1, got"),
        (
            lambda: matmul_peak_flops_per_s("cpu", size=8, dtype=torch.int32),
            r"dtype must be a floating\-point torch\.dtype",
        ),
        (lambda: copy_bandwidth_bytes_per_s("cpu", mebibytes=0), r"mebibytes must be > 0, got"),
        (lambda: matmul_peak_flops_per_s("cpu", size=[]), r"size must be a positive int"),
        (lambda: matmul_peak_flops_per_s("cpu", size=[64, -1]), r"size must be >= 1, got"),
        (lambda: time_best_s(lambda: None, repeats=0), r"repeats must be >= 1, got"),
        (lambda: time_attention_stages(*(torch.randn(1, 1, 4, 2),) * 3, repeats=0), r"repeats must be >= 1, got"),
        (
            lambda: time_attention_stages(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)),
            r"q must be a 4\-D tensor",
        ),
        (
            lambda: time_attention_stages(*(torch.randn(1, 1, 4, 2),) * 2, torch.randn(1, 1, 5, 2)),
            r"q, k, v must have the",
        ),
    ],
)
def test_bad_inputs_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_measured_roofs_are_positive_and_plausible():
    peak = matmul_peak_flops_per_s("cpu", size=128, repeats=1, min_run_time=0.01)
    bw = copy_bandwidth_bytes_per_s("cpu", mebibytes=1, repeats=1, min_run_time=0.01)
    assert 1e6 < peak < 1e14          # between a megaFLOP/s and 100 TFLOP/s on any CPU
    assert 1e6 < bw < 1e13
    roof = measure_roofline("cpu", matmul_size=128, copy_mebibytes=1, repeats=1, min_run_time=0.01)
    assert roof.peak_flops_per_s > 0 and roof.bandwidth_bytes_per_s > 0 and roof.dtype == "float32"


def test_time_attention_stages_returns_every_stage():
    q, k, v = (torch.randn(1, 1, 32, 8) for _ in range(3))
    t = time_attention_stages(q, k, v, min_run_time=0.01)
    assert list(t) == ["QKᵀ", "scale", "softmax", "PV"]
    assert all(x.median > 0 for x in t.values())


def test_time_best_is_a_minimum_of_medians_and_peak_takes_sizes():
    assert 0 < time_best_s(lambda: sum(range(100)), repeats=2, min_run_time=0.01) < 1
    peak = matmul_peak_flops_per_s("cpu", size=(32, 64), repeats=1, min_run_time=0.01)
    assert 1e6 < peak < 1e14
    t = time_attention_stages(*(torch.randn(1, 1, 16, 4) for _ in range(3)), min_run_time=0.01, repeats=2)
    assert list(t) == ["QKᵀ", "scale", "softmax", "PV"]


# --- guards --------------------------------------------------------------------------------------------

def test_roofline_allocators_are_guarded():
    from utils.complexity import attention_stages_bytes
    from utils.measure import copy_bandwidth_bytes_per_s, matmul_peak_flops_per_s, time_attention_stages

    with pytest.raises(ValueError, match="refusing a 1e\\+09 MiB copy"):
        copy_bandwidth_bytes_per_s("cpu", mebibytes=1e9)
    with pytest.raises(ValueError, match="refusing a 10000000×10000000 matrix product"):
        matmul_peak_flops_per_s("cpu", size=[64, 10**7])
    q = torch.randn(1, 2, 64, 8)
    assert attention_stages_bytes(1, 2, 64, 8, 4) == (5 * 2 * 64 * 64 + 2 * 2 * 64 * 8) * 4
    with pytest.raises(ValueError, match="cap"):
        time_attention_stages(q, q, q, limit_bytes=attention_stages_bytes(1, 2, 64, 8, 4) - 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")
def test_cuda_roofline_and_stages_run():
    from utils.measure import measure_roofline, time_attention_stages

    roof = measure_roofline("cuda", matmul_size=2048, copy_mebibytes=256, repeats=1, min_run_time=0.02)
    assert roof.peak_flops_per_s > 1e12 and roof.bandwidth_bytes_per_s > 1e11 and roof.tf32 is not None
    q = torch.randn(1, 4, 1024, 64, device="cuda")
    stages = time_attention_stages(q, q, q, min_run_time=0.01)
    assert all(t.median > 0 for t in stages.values())


def test_tiled_attention_bytes_follows_dao_theorem_2():
    from utils.complexity import tiled_attention_bytes

    d, sram = 64, 100 * 1024                       # 51200 FP16 elements: B_c = 200 key rows per block
    assert tiled_attention_bytes(200, d, sram) == 2 * (200 * d + 400 + 2 * 200 * d + (3 * 200 * d + 800))
    big = [tiled_attention_bytes(n, d, sram) for n in (8192, 16384, 32768)]
    # quadratic in n at large n (the T_c factor grows with n) ...
    assert 3.8 < big[1] / big[0] < 4.1 and 3.9 < big[2] / big[1] < 4.1
    # ... and inversely proportional to the SRAM size, as Theta(n^2 d^2 / M) says
    assert 1.9 < tiled_attention_bytes(32768, d, sram) / tiled_attention_bytes(32768, d, 2 * sram) < 2.1
    # far above the ideal fused traffic (4 n d) at long n, and a batch of heads multiplies it
    ideal = fused_attention_stage(32768, d, bytes_per_element=2).bytes_moved
    assert big[2] > 20 * ideal
    assert tiled_attention_bytes(512, d, sram, batch=2, heads=3) == 6 * tiled_attention_bytes(512, d, sram)
    with pytest.raises(ValueError, match="not even one row"):
        tiled_attention_bytes(512, 64, 255)
