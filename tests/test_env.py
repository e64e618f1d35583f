"""Tests of utils.env: the device, its description (by capability), provenance and reference files."""

import dataclasses
import json

import pytest
import torch

from utils import env
from utils.env import (
    check_reference,
    cpu_memory_bytes,
    cpu_model_name,
    describe_device,
    device_slug,
    gpu_references,
    hardware,
    hardware_label,
    latest_gpu_reference,
    load_reference,
    module_device,
    on_gpu,
    pick_device,
    reference_name,
    reference_sentence,
    save_reference,
    sdpa_backends,
    sweep,
    writing_references,
)

from fake_devices import FAKE, GIB, use_fake_gpu

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")


def test_pick_device_matches_cuda_availability():
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_pick_device_cpu_override():
    assert pick_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a GPU")
def test_requesting_missing_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA"):
        pick_device("cuda")


def test_sweep_picks_by_device():
    assert sweep([1], [1, 2], device="cpu") == [1]
    assert sweep([1], [1, 2], device="cuda") == [1, 2]   # by the device named, not by what is installed
    assert on_gpu("cpu") is False
    assert on_gpu("cuda") is True


def test_hardware_record_has_provenance():
    h = hardware("cpu")
    assert {"device", "device_type", "capability", "cuda", "torch", "threads", "date"} <= h.keys()
    assert h["capability"] is None and h["cuda"] is None
    assert h["device"] == cpu_model_name()
    assert "torch" in hardware_label("cpu")


# --- CPU model, cgroups -----------------------------------------------------------------------------

def test_cpu_model_name_reads_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n")
    assert cpu_model_name(str(f)) == "Intel(R) Xeon(R) Gold 6338"
    assert cpu_model_name(str(tmp_path / "missing"))  # falls back to platform, never empty


def _meminfo(tmp_path, total_kb=16_000_000, avail_kb=8_000_000):
    f = tmp_path / "meminfo"
    f.write_text(f"MemTotal:       {total_kb} kB\nMemFree:  100 kB\nMemAvailable:    {avail_kb} kB\n")
    return str(f)


def test_cpu_memory_without_cgroup_is_meminfo(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    assert cpu_memory_bytes(str(root), _meminfo(tmp_path)) == (16_000_000 * 1024, 8_000_000 * 1024)


def test_cpu_memory_cgroup_v2_limit_wins_when_smaller(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "memory.max").write_text(f"{4 * GIB}\n")
    (root / "memory.current").write_text(f"{3 * GIB}\n")
    total, free = cpu_memory_bytes(str(root), _meminfo(tmp_path))
    assert (total, free) == (4 * GIB, 1 * GIB)


def test_cpu_memory_cgroup_v2_max_means_no_limit(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "memory.max").write_text("max\n")
    (root / "memory.current").write_text(f"{3 * GIB}\n")
    assert cpu_memory_bytes(str(root), _meminfo(tmp_path))[1] == 8_000_000 * 1024


def test_cpu_memory_cgroup_v1_limit_and_unlimited(tmp_path):
    root = tmp_path / "cgroup"
    (root / "memory").mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    (root / "memory" / "memory.usage_in_bytes").write_text(f"{GIB // 2}\n")
    assert cpu_memory_bytes(str(root), _meminfo(tmp_path)) == (2 * GIB, 3 * GIB // 2)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1 "no limit"
    assert cpu_memory_bytes(str(root), _meminfo(tmp_path))[1] == 8_000_000 * 1024


def test_cpu_memory_usage_above_limit_is_zero_and_nothing_known_is_none(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "memory.max").write_text("1000\n")
    (root / "memory.current").write_text("5000\n")
    assert cpu_memory_bytes(str(root), str(tmp_path / "no_meminfo")) == (1000, 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cpu_memory_bytes(str(empty), str(tmp_path / "no_meminfo")) == (None, None)


# --- the device description -------------------------------------------------------------------------

def test_describe_cpu():
    d = describe_device("cpu")
    assert d.type == "cpu" and d.capability is None and d.sm is None
    assert d.free_bytes > 0 and d.total_bytes >= d.free_bytes
    assert d.dtype == "float32" and "math" in d.sdpa_backends
    assert "efficient" not in d.sdpa_backends and "cudnn" not in d.sdpa_backends   # CUDA-only kernels
    assert d.slug == "cpu" and d.torch == torch.__version__
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "other"


def test_sdpa_probe_is_in_the_requested_dtype_and_cached():
    assert sdpa_backends("cpu", torch.float32) == sdpa_backends("cpu", torch.float32)
    assert env._probe_sdpa.cache_info().currsize >= 1
    assert "math" in sdpa_backends("cpu", torch.bfloat16)


@pytest.mark.parametrize("kwargs, message", [
    (dict(device="cpu", dtype=torch.int64), "floating-point"),
    (dict(device="cpu", head_dim=0), "head_dim"),
    (dict(device="meta"), "'cpu' or 'cuda'"),
])
def test_sdpa_backends_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sdpa_backends(**kwargs)


@pytest.mark.parametrize("key, sm, bf16, flash16, flash32", [
    ("t4", "sm75", False, False, False), ("a100", "sm80", True, True, False), ("h100", "sm90", True, True, False)])
def test_fake_gpu_descriptions(monkeypatch, key, sm, bf16, flash16, flash32):
    use_fake_gpu(monkeypatch, FAKE[key])
    d16 = env.describe_device("cuda", torch.float16)
    assert d16.sm == sm and d16.bf16 is bf16 and d16.runs("flash") is flash16
    assert env.describe_device("cuda", torch.float32).runs("flash") is flash32
    assert d16.slug.startswith(("tesla-t4", "nvidia-a100", "nvidia-h100"))
    assert "GB" in d16.label and sm in d16.label


def test_device_slug():
    assert device_slug("NVIDIA H200") == "nvidia-h200"
    assert device_slug("NVIDIA A100-SXM4-80GB") == "nvidia-a100-sxm4-80gb"
    assert device_slug("Tesla T4") == "tesla-t4"
    assert device_slug("!!!") == "unknown"


def test_module_device():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")
    assert module_device(lambda x: x, default="cpu") == torch.device("cpu")


# --- reference files --------------------------------------------------------------------------------

def _prov(**over):
    p = {"device": "NVIDIA H200", "device_type": "cuda", "capability": "9.0", "torch": "2.13.0",
         "cuda": "12.8", "date": "2026-11-30"}
    p.update(over)
    return p


def test_load_reference_absent_is_none(tmp_path):
    assert load_reference("no_such_reference_file", directory=tmp_path) is None


def test_load_reference_reads_json_object(tmp_path):
    (tmp_path / "ref.json").write_text(json.dumps({"provenance": _prov(device="X"), "ns": [1, 2]}))
    assert load_reference("ref", directory=tmp_path)["ns"] == [1, 2]
    assert load_reference("ref.json", directory=tmp_path)["provenance"]["device"] == "X"


def test_load_reference_rejects_paths_and_non_objects(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        load_reference("../secrets")
    with pytest.raises(ValueError, match="plain file name"):
        load_reference("")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_reference("list", directory=tmp_path)


@pytest.mark.parametrize("missing", ["device", "capability", "torch", "cuda", "date"])
def test_reference_without_a_provenance_key_is_refused(tmp_path, missing):
    prov = _prov()
    del prov[missing]
    (tmp_path / "ref.json").write_text(json.dumps({"provenance": prov}))
    with pytest.raises(ValueError, match=f"lacks the key '{missing}'"):
        load_reference("ref", directory=tmp_path)


def test_reference_without_provenance_is_refused():
    with pytest.raises(ValueError, match="no 'provenance' object"):
        check_reference({"ns": [1]}, "p2c02_x")
    with pytest.raises(ValueError, match="JSON object"):
        check_reference([1, 2], "p2c02_x")


def test_committed_references_pass_the_schema():
    import os
    for f in sorted(os.listdir(env.DATA_DIR)):
        if f.endswith(".json"):
            assert load_reference(f[:-5]) is not None, f


def test_save_reference_adds_provenance_and_round_trips(tmp_path):
    path = save_reference("p2c02_cpu", {"ns": [1, 2], "provenance": {"command": "make test-gpu"}}, "cpu",
                          directory=tmp_path)
    assert path == str(tmp_path / "p2c02_cpu.json")
    text = (tmp_path / "p2c02_cpu.json").read_text()
    assert text.endswith("\n")
    ref = load_reference("p2c02_cpu", directory=tmp_path)
    assert ref["ns"] == [1, 2] and ref["provenance"]["command"] == "make test-gpu"
    assert ref["provenance"]["device"] == cpu_model_name() and ref["provenance"]["capability"] is None


@pytest.mark.parametrize("name, data, message", [
    ("../x", {}, "plain name"), ("p2c02.json", {}, "plain name"), ("", {}, "plain name"),
    ("p2c02_x", [1], "must be a dict"), ("p2c02_x", {"provenance": 3}, "provenance"),
])
def test_save_reference_bad_inputs(tmp_path, name, data, message):
    with pytest.raises(ValueError, match=message):
        save_reference(name, data, "cpu", directory=tmp_path)


def test_reference_name_and_write_switch(monkeypatch):
    assert reference_name("p2c02", "cpu") == "p2c02_cpu"
    with pytest.raises(ValueError, match="short id"):
        reference_name("P2 C02", "cpu")
    monkeypatch.setenv("COURSE_WRITE_REFERENCE", "1")
    assert writing_references("cpu") is False      # only a GPU run writes a GPU reference
    assert writing_references("cuda") is True
    monkeypatch.delenv("COURSE_WRITE_REFERENCE")
    assert writing_references("cuda") is False


def test_gpu_references_newest_first_and_cpu_left_out(tmp_path):
    for name, prov in [("p2c02_tesla-t4", _prov(device="Tesla T4", date="2026-01-02")),
                       ("p2c02_nvidia-h200", _prov(date="2026-11-30")),
                       ("p2c02_cpu", _prov(device="x", device_type="cpu", capability=None, cuda=None)),
                       ("p2c03_nvidia-h200", _prov())]:
        (tmp_path / f"{name}.json").write_text(json.dumps({"provenance": prov}))
    refs = gpu_references("p2c02", directory=tmp_path)
    assert [r["provenance"]["device"] for r in refs] == ["NVIDIA H200", "Tesla T4"]
    assert gpu_references("p9c09", directory=tmp_path) == []
    assert gpu_references("p2c02", directory=tmp_path / "missing") == []
    sentence = reference_sentence(refs[0])
    assert sentence == ("The GPU reference was measured on NVIDIA H200 (compute capability 9.0) with torch 2.13.0 "
                        "and CUDA 12.8 on 2026-11-30.")
    assert reference_sentence(None) == "No GPU reference run ships with this copy of the course."
    assert latest_gpu_reference("p2c02", directory=tmp_path)["provenance"]["device"] == "NVIDIA H200"
    assert latest_gpu_reference("p9c09", directory=tmp_path) is None


# --- on a real GPU (make test-gpu) ------------------------------------------------------------------

@requires_cuda
def test_cuda_describe_device_matches_torch():
    d = describe_device("cuda", torch.float16)
    props = torch.cuda.get_device_properties(0)
    assert d.capability == (props.major, props.minor) and d.total_bytes == props.total_memory
    assert 0 < d.free_bytes <= d.total_bytes
    assert d.cuda == torch.version.cuda and d.type == "cuda"
    assert ("flash" in d.sdpa_backends) == (d.capability >= (8, 0))
    assert "math" in d.sdpa_backends
    assert "flash" not in describe_device("cuda", torch.float32).sdpa_backends   # flash needs 16-bit
    h = hardware("cuda")
    assert h["capability"] == f"{props.major}.{props.minor}" and h["cuda"] == torch.version.cuda
    assert "tf32_matmul" in h


@requires_cuda
def test_cuda_free_bytes_counts_the_allocator_cache():
    torch.cuda.empty_cache()
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    del x   # freed to PyTorch's cache, still reserved from the driver
    driver_free = torch.cuda.mem_get_info()[0]
    assert env.cuda_free_bytes("cuda") - driver_free >= 256 * 2**20 - 2**20
    torch.cuda.empty_cache()


@pytest.mark.parametrize("threads, words", [(1, "1 torch thread)"), (4, "4 torch threads)")])
def test_hardware_label_counts_threads_in_words(threads, words):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        assert words in env.hardware_label("cpu")
    finally:
        torch.set_num_threads(previous)
