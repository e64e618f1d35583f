"""Which outputs depend on which inputs — measured on real modules by autograd.

``reachability(fn, n, d_model)[j, i]`` is ``True`` iff output position ``j`` depends on input
position ``i``: the gradient of (a random projection of) output ``j`` with respect to input ``i`` is
not zero. Where a computation graph has no path from ``i`` to ``j`` autograd returns an exact zero,
so this is an exact, structural measurement (no threshold to tune).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from utils.env import module_device
from utils.validate import check_positive_int


def reachability(fn, n: int, d_model: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Boolean ``n × n`` matrix, entry ``[j, i]`` True iff output ``j`` depends on input ``i``.

    ``fn`` maps a ``(1, n, d_model)`` tensor to ``(1, n, d_out)``. An ``nn.Module`` is copied, put in
    eval mode and converted to ``dtype`` (float64 by default, so that long chains of small
    Jacobians do not underflow to zero and hide a real dependency). The random input is made on the
    CPU (so it is the same on every device) and moved to the module's device; the result is on the CPU.
    """
    n = check_positive_int("n", n)
    d_model = check_positive_int("d_model", d_model)
    device = module_device(fn)
    if isinstance(fn, nn.Module):
        fn = copy.deepcopy(fn).to(dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, d_model, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    y = fn(x)
    if isinstance(y, tuple):  # nn.RNN / nn.LSTM return (output, state)
        y = y[0]
    if y.dim() != 3 or y.shape[:2] != (1, n):
        raise ValueError(f"fn must map (1, n, d) to (1, n, d_out); got output of shape {tuple(y.shape)}.")
    proj = torch.randn(y.shape[-1], generator=gen, dtype=dtype).to(y.device)
    reach = torch.zeros(n, n, dtype=torch.bool)
    for j in range(n):
        (grad,) = torch.autograd.grad(y[0, j] @ proj, x, retain_graph=j < n - 1)
        reach[j] = (grad[0].abs().sum(dim=-1) > 0).cpu()
    return reach
