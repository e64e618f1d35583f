"""Fake device descriptions (a Colab T4, an A100, an H100) for testing the capability logic without a GPU.

`use_fake_gpu(monkeypatch, FAKE["t4"])` makes `utils.env.describe_device` and `utils.env.sdpa_backends`
answer for that GPU, as a real probe would on it (PyTorch 2.x: no flash before sm80; flash and cuDNN
attention only in fp16/bf16; the memory-efficient kernel in every float dtype, bf16 from sm80 on).
"""

from __future__ import annotations

import dataclasses

import torch

from utils import env

GIB = 2**30


def _fake(name, capability, total_gib, backends):
    """backends: {dtype: tuple of SDPA backends that run}."""
    desc = env.DeviceDescription(
        name=name, type="cuda", index=0, capability=capability, total_bytes=int(total_gib * GIB),
        free_bytes=int((total_gib - 0.6) * GIB), bf16=capability >= (8, 0), fp16=True, tf32_matmul=False,
        tf32_cudnn=True, float32_matmul_precision="highest", cuda="12.8", cudnn=91002, torch=torch.__version__,
        dtype="float16", sdpa_backends=backends[torch.float16])
    return desc, backends


AMPERE_PLUS = {torch.float16: ("math", "flash", "efficient", "cudnn"),
               torch.bfloat16: ("math", "flash", "efficient", "cudnn"),
               torch.float32: ("math", "efficient")}

FAKE = {
    "t4": _fake("Tesla T4", (7, 5), 15.0, {torch.float16: ("math", "efficient"), torch.bfloat16: ("math",),
                                         torch.float32: ("math", "efficient")}),
    "a100": _fake("NVIDIA A100-SXM4-40GB", (8, 0), 39.4, AMPERE_PLUS),
    "h100": _fake("NVIDIA H100 80GB HBM3", (9, 0), 79.1, AMPERE_PLUS),
}


def use_fake_gpu(monkeypatch, fake):
    """Make utils.env answer for the fake GPU on device 'cuda' (the CPU keeps its real answers)."""
    desc, backends = fake
    real_backends, real_describe = env.sdpa_backends, env.describe_device

    def sdpa_backends(device=None, dtype=None, head_dim=64):
        if torch.device(device if device is not None else "cuda").type != "cuda":
            return real_backends(device, dtype, head_dim)
        return backends[dtype if dtype is not None else torch.float16]

    def describe_device(device=None, dtype=None, head_dim=64):
        if torch.device(device if device is not None else "cuda").type != "cuda":
            return real_describe(device, dtype, head_dim)
        dtype = dtype if dtype is not None else torch.float16
        return dataclasses.replace(desc, dtype=str(dtype).replace("torch.", ""), sdpa_backends=backends[dtype])

    monkeypatch.setattr(env, "sdpa_backends", sdpa_backends)
    monkeypatch.setattr(env, "describe_device", describe_device)
    return desc
