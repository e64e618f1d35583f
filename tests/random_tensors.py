"""Random inputs shared by the attention tests."""

import torch


def qkv(shape, seed=0, dtype=torch.float64):
    """Three random tensors of ``shape`` (queries, keys, values) from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=g, dtype=dtype) for _ in range(3))
