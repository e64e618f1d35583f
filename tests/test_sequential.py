"""Tests of utils.sequential and utils.measure.time_forward_vs_n."""

import json

import pytest
import torch

from utils import sequential
from utils.env import load_reference
from utils.measure import Timing, time_forward_vs_n
from utils.sequential import (
    FAMILIES,
    Backbone,
    forward_time_sweep,
    make_backbone,
    make_backbones,
    per_step_times,
    sequential_steps_of,
    serial_time_estimate,
    serial_vs_batched,
)

# --- time_forward_vs_n -------------------------------------------------------------------------------


def test_time_forward_vs_n_times_every_n_in_order():
    seen = []

    def fn(x):
        seen.append(x.shape[1])
        return x * 2

    timings = time_forward_vs_n(fn, [4, 8, 16], lambda n: torch.ones(1, n), min_run_time=0.005)
    assert len(timings) == 3 and all(isinstance(t, Timing) and t.median > 0 for t in timings)
    assert seen[0] == 4 and seen[-1] == 16 and set(seen) == {4, 8, 16}


def test_time_forward_vs_n_accepts_modules_tuples_and_device():
    lin = torch.nn.Linear(3, 3)
    t = time_forward_vs_n(lin, [2], lambda n: torch.ones(n, 3), device="cpu", min_run_time=0.005)
    assert len(t) == 1
    t = time_forward_vs_n(torch.add, [2, 3], lambda n: (torch.ones(n), torch.ones(n)), min_run_time=0.005)
    assert len(t) == 2


def test_time_forward_vs_n_inference_mode_switch():
    modes = []

    def fn(x):
        modes.append(torch.is_inference_mode_enabled())
        return x

    time_forward_vs_n(fn, [2], lambda n: torch.ones(n), min_run_time=0.001)
    assert modes and all(modes)
    modes.clear()
    time_forward_vs_n(fn, [2], lambda n: torch.ones(n), min_run_time=0.001, no_grad=False)
    assert modes and not any(modes)


@pytest.mark.parametrize("kwargs, match", [
    ({"fn": 3, "ns": [2], "make_input": torch.ones}, "fn must be"),
    ({"fn": torch.sin, "ns": [2], "make_input": "x"}, "make_input"),
    ({"fn": torch.sin, "ns": [], "make_input": torch.ones}, "empty"),
    ({"fn": torch.sin, "ns": [0], "make_input": torch.ones}, "n must be >= 1"),
    ({"fn": torch.sin, "ns": [2.5], "make_input": torch.ones}, "whole number"),
])
def test_time_forward_vs_n_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_forward_vs_n(kwargs["fn"], kwargs["ns"], kwargs["make_input"], min_run_time=0.001)


# --- backbones ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_backbone_keeps_shape_and_is_in_eval_mode(family):
    torch.manual_seed(0)
    model = make_backbone(family, 8, layers=2 if family in ("cnn", "transformer") else 1, heads=2)
    assert isinstance(model, Backbone) and model.family == family and not model.training
    x = torch.randn(2, 16, 8)
    y = model(x)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape


def test_make_backbones_has_all_five_at_one_width():
    models = make_backbones(8, cnn_layers=3, transformer_layers=2, heads=2)
    assert list(models) == list(FAMILIES)
    assert len(models["cnn"].module.convs) == 3 and len(models["transformer"].module) == 2
    assert models["lstm"].module.hidden_size == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"family": "mamba", "d_model": 8}, "family must be one of"),
    ({"family": "rnn", "d_model": 8, "layers": 2}, "one recurrent layer"),
    ({"family": "transformer", "d_model": 10, "heads": 4}, r"d_model \(10\) must be divisible by heads \(4\)"),
    ({"family": "cnn", "d_model": 0}, "d_model must be >= 1"),
    ({"family": "cnn", "d_model": 8, "layers": 0}, "layers must be >= 1"),
])
def test_make_backbone_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_backbone(**kwargs)


# --- sequential steps --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 8, 64])
def test_sequential_steps_per_family(n):
    for family in ("rnn", "lstm", "gru"):
        assert sequential_steps_of(family, n) == n
    assert sequential_steps_of("cnn", n, layers=4) == 4
    assert sequential_steps_of("transformer", n, layers=6) == 6


def test_sequential_steps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="family"):
        sequential_steps_of("mlp", 8)
    with pytest.raises(ValueError, match="n must be"):
        sequential_steps_of("rnn", 0)


def test_serial_time_estimate_is_the_seed_arithmetic():
    assert serial_time_estimate(0.3, 512) == pytest.approx(153.6)
    assert serial_time_estimate(0.2, 1024) == pytest.approx(204.8)
    assert serial_time_estimate(0.3, 6) == pytest.approx(1.8)
    with pytest.raises(ValueError, match="per_step"):
        serial_time_estimate(0, 5)
    with pytest.raises(ValueError, match="steps"):
        serial_time_estimate(0.1, 0)


def test_per_step_times():
    assert per_step_times([2.0, 6.0], [2, 3]) == [1.0, 2.0]
    with pytest.raises(ValueError, match="one S per time"):
        per_step_times([1.0], [1, 2])


# --- sweeps ------------------------------------------------------------------------------------------


def test_forward_time_sweep_record_is_json_ready():
    rec = forward_time_sweep([8, 16], d_model=8, batch=1, device="cpu", min_run_time=0.002,
                             families=("rnn", "cnn", "transformer"))
    json.dumps(rec)
    assert rec["ns"] == [8, 16] and set(rec["median_s"]) == {"rnn", "cnn", "transformer"}
    assert rec["steps"]["rnn"] == [8, 16] and rec["steps"]["cnn"] == [4, 4] and rec["steps"]["transformer"] == [1, 1]
    assert all(t > 0 for ts in rec["median_s"].values() for t in ts)
    assert {"device", "torch", "date", "threads"} <= rec["provenance"].keys()


def test_serial_vs_batched_returns_two_timings_and_rejects_non_recurrent():
    serial, batched = serial_vs_batched("gru", 16, d_model=8, device="cpu", min_run_time=0.002)
    assert serial.median > 0 and batched.median > 0
    with pytest.raises(ValueError, match="recurrent"):
        serial_vs_batched("cnn", 16)


def test_sweeps_leave_the_callers_rng_alone_and_are_deterministic(monkeypatch):
    # They used to call torch.manual_seed(seed), reseeding the caller's global generator.
    built = []
    real = sequential.make_backbone
    monkeypatch.setattr(sequential, "make_backbone",
                        lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    forward_time_sweep([8], d_model=8, batch=1, device="cpu", min_run_time=0.001, families=("rnn",), seed=3)
    serial_vs_batched("rnn", 8, d_model=8, device="cpu", min_run_time=0.001, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    # the same seed builds the same weights, whatever the caller's generator did in between
    torch.randn(10)
    forward_time_sweep([8], d_model=8, batch=1, device="cpu", min_run_time=0.001, families=("rnn",), seed=3)
    w = [b.module.weight_hh_l0 for b in built]
    assert len(w) == 3 and torch.equal(w[0], w[1]) and torch.equal(w[0], w[2])
    with pytest.raises(ValueError, match="seed must be >= 0"):
        serial_vs_batched("rnn", 8, device="cpu", seed=-1)


def test_main_writes_reference_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sequential, "CPU_SWEEP", {"ns": [8, 16], "batch": 1, "d_model": 8})
    out = tmp_path / "ref.json"
    assert sequential.main(["--out", str(out), "--device", "cpu", "--min-run-time", "0.002"]) == 0
    rec = load_reference("ref", directory=tmp_path)
    assert rec["ns"] == [8, 16] and rec["serial_vs_batched"]["n"] == 1024
    assert rec["provenance"]["gpu"] is False and "command" in rec["provenance"]


# --- sized from the device, guarded ------------------------------------------------------------------

def test_forward_time_sweep_refuses_before_allocating():
    # n = 10**6: one (2, 4, n, n) float32 tensor is 32 TB, refused before anything is built
    with pytest.raises(ValueError, match="refusing a forward at n=1000000"):
        forward_time_sweep([8, 10**6], d_model=8, device="cpu")
    with pytest.raises(ValueError, match="ns is empty"):
        forward_time_sweep([], device="cpu")


@pytest.mark.parametrize("free_gib, largest", [(14.4, 8192), (22.0, 16384), (78.0, 16384)])
def test_default_gpu_sweep_is_sized_from_free_memory(monkeypatch, free_gib, largest):
    from utils.measure import _guard

    monkeypatch.setattr(_guard, "free_memory_bytes", lambda device: int(free_gib * 2**30))
    cfg = sequential.default_sweep("cuda")
    assert cfg["ns"][-1] == largest and cfg["ns"][0] == 64
    assert sequential.default_sweep("cpu")["ns"] == sequential.CPU_SWEEP["ns"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")
def test_cuda_forward_time_sweep_runs_and_synchronises():
    rec = forward_time_sweep([64, 256], d_model=16, batch=1, device="cuda", min_run_time=0.01)
    assert rec["provenance"]["device_type"] == "cuda" and rec["provenance"]["capability"]
    assert all(t > 0 for ts in rec["median_s"].values() for t in ts)

