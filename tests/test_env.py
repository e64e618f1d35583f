import pytest
import torch

from utils.env import hardware, hardware_label, on_gpu, pick_device, sweep


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
    assert on_gpu("cpu") is False


def test_hardware_record_has_provenance():
    h = hardware("cpu")
    assert {"device", "torch", "threads", "date"} <= h.keys()
    assert "torch" in hardware_label("cpu")
