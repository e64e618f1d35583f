"""Measurements by autograd: which outputs depend on which inputs, and how strongly (Jacobian norms vs distance).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from utils.env import module_device
from utils.validate import check_choice, check_int, check_positive_int


def _probe(fn, n: int, d_model: int, seed: int, dtype: torch.dtype):
    """Run ``fn`` (a copy of a module, in ``dtype`` and eval mode) on a seeded random ``(1, n, d_model)`` input.

    The input is drawn on the CPU from a local generator (the same on every device, the global RNG
    untouched), moved to the module's device and marked ``requires_grad``. Returns ``(x, y, generator)``,
    ``y`` the output (the first element for ``nn.RNN``/``nn.LSTM``, which return ``(output, state)``)."""
    device = module_device(fn)
    if isinstance(fn, nn.Module):
        fn = copy.deepcopy(fn).to(dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, d_model, generator=gen, dtype=dtype).to(device).requires_grad_(True)
    y = fn(x)
    return x, (y[0] if isinstance(y, tuple) else y), gen

def reachability(fn, n: int, d_model: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Boolean ``n × n`` matrix, entry ``[j, i]`` True iff output ``j`` depends on input ``i``.

    ``fn`` maps a ``(1, n, d_model)`` tensor to ``(1, n, d_out)``. An ``nn.Module`` is copied, put in
    eval mode and converted to ``dtype`` (float64 by default, so that long chains of small
    Jacobians do not underflow to zero and hide a real dependency). The random input is made on the
    CPU (so it is the same on every device) and moved to the module's device; the result is on the CPU.
    """
    n = check_positive_int("n", n)
    d_model = check_positive_int("d_model", d_model)
    x, y, gen = _probe(fn, n, d_model, seed, dtype)
    if y.dim() != 3 or y.shape[:2] != (1, n):
        raise ValueError(f"fn must map (1, n, d) to (1, n, d_out); got output of shape {tuple(y.shape)}.")
    proj = torch.randn(y.shape[-1], generator=gen, dtype=dtype).to(y.device)
    reach = torch.zeros(n, n, dtype=torch.bool)
    for j in range(n):
        (grad,) = torch.autograd.grad(y[0, j] @ proj, x, retain_graph=j < n - 1)
        reach[j] = (grad[0].abs().sum(dim=-1) > 0).cpu()
    return reach


NORMS = {"spectral": 2, "frobenius": "fro"}


def _as_sequence(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() == 3:
        if x.shape[0] != 1:
            raise ValueError(f"x must hold one sequence: shape (n, d) or (1, n, d), got {tuple(x.shape)}.")
        x = x[0]
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (n, d) or (1, n, d) with n, d >= 1, got {tuple(x.shape)}.")
    return x


def _first(y):
    return y[0] if isinstance(y, tuple) else y


def _check_output_and_state(result):
    """With ``window=`` the model must return ``(output, state)``; a lone tensor would otherwise be
    unpacked along its batch dimension and give silently wrong norms."""
    if not (isinstance(result, tuple) and len(result) == 2):
        got = (f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__)
        raise ValueError("window= (truncated BPTT) needs a recurrent model that accepts (x, state) and returns "
                         f"(output, state) like nn.RNN/nn.LSTM/nn.GRU; it returned {got}. Drop window= for a "
                         "model without a state.")
    return result


def _detach_state(state):
    if isinstance(state, tuple):  # nn.LSTM: (h, c)
        return tuple(s.detach() for s in state)
    return state.detach()


def _row_norms(jac: torch.Tensor, norm: str) -> torch.Tensor:
    """``jac`` is ``(d_out, n, d_in)``; return the norm of each ``(d_out, d_in)`` slice, position order."""
    return torch.linalg.matrix_norm(jac.permute(1, 0, 2), ord=NORMS[norm])


def gradient_norms_vs_distance(model, x: torch.Tensor, *, norm: str = "spectral", window: int | None = None,
                               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``G[k] = ‖∂y_{n-1}/∂x_{n-1-k}‖`` for ``k = 0 … n-1`` (distance k back from the last position).

    ``model`` maps ``(batch, n, d_in)`` to ``(batch, n, d_out)`` (or to a tuple whose first element
    is that, like ``nn.RNN``/``nn.LSTM``/``nn.GRU``). It is copied, put in eval mode and cast to
    ``dtype`` (float64 by default so long products do not underflow). ``x`` is one sequence,
    ``(n, d_in)`` or ``(1, n, d_in)``. ``norm`` is ``"spectral"`` (largest singular value of the
    ``d_out × d_in`` Jacobian) or ``"frobenius"``.

    ``window`` (truncated back-propagation through time): the sequence is cut into chunks of
    ``window`` steps *counted back from the last position* (the first chunk takes the remainder), and
    the recurrent state is detached between chunks. ``model`` must then accept ``(x, state)`` and
    return ``(output, state)`` like PyTorch's recurrent modules. The gradient of ``y_{n-1}`` then
    reaches only the last ``window`` inputs: ``G[k] == 0`` exactly for ``k >= window``.

    ``x`` is moved to the model's device (a CUDA model works with a CPU ``x``). Returns a 1-D float64
    tensor of length n, on the CPU.
    """
    check_choice("norm", norm, NORMS)
    x = _as_sequence(x)
    if window is not None:
        window = check_positive_int("window", window, hint="window is the truncation length in steps.")
    x = x.to(module_device(model))
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model).to(dtype).eval()
    n, d_in = x.shape
    with torch.no_grad():
        probe = model(x.detach().to(dtype).unsqueeze(0))
    if window is not None:
        _check_output_and_state(probe)
    probe = _first(probe)
    if probe.dim() != 3 or probe.shape[:2] != (1, n):
        raise ValueError(f"model must map (batch, n, d) to (batch, n, d_out); got {tuple(probe.shape)}.")
    d_out = probe.shape[-1]
    xb = x.detach().to(dtype).unsqueeze(0).repeat(d_out, 1, 1).requires_grad_(True)
    if window is None:
        y = _first(model(xb))
    else:
        bounds = list(range(n, 0, -window))[::-1]  # chunk ends, last one is n
        starts = [0] + bounds[:-1]
        state, outs = None, []
        for s, e in zip(starts, bounds):
            out, state = _check_output_and_state(model(xb[:, s:e], state) if state is not None
                                                 else model(xb[:, s:e]))
            state = _detach_state(state)
            outs.append(out)
        y = torch.cat(outs, dim=1)
    eye = torch.eye(d_out, dtype=dtype, device=xb.device)
    (grad,) = torch.autograd.grad(y[:, -1, :], xb, grad_outputs=eye, allow_unused=False)
    norms = _row_norms(grad, norm)  # position order 0 … n-1
    return norms.flip(0).detach().cpu()


def lstm_cell_gradient_norms(lstm: nn.LSTM, x: torch.Tensor, *, norm: str = "spectral",
                             dtype: torch.dtype = torch.float64):
    """Gradient along the LSTM cell state and the forget gates on the way.

    Runs a one-layer ``nn.LSTM(batch_first=True)`` step by step on one sequence ``x`` (``(n, d_in)``)
    from a zero state and returns ``(G, forget)``:

    * ``G[k] = ‖∂c_{n-1}/∂c_{n-1-k}‖`` for ``k = 0 … n-1`` (all paths, through ``h`` too), float64;
    * ``forget``: the forget-gate activations ``f_t``, shape ``(n, hidden)`` (``f_0`` multiplies the
      zero initial state).

    The direct path along the cell state alone contributes ``diag(f_{t+1} ⊙ … ⊙ f_T)``.
    """
    if not isinstance(lstm, nn.LSTM):
        raise ValueError(f"lstm_cell_gradient_norms needs an nn.LSTM, got {type(lstm).__name__}.")
    if lstm.num_layers != 1 or lstm.bidirectional or not lstm.batch_first or lstm.proj_size:
        raise ValueError("lstm_cell_gradient_norms needs a one-layer, unidirectional, batch_first "
                         "nn.LSTM without projection.")
    check_choice("norm", norm, NORMS)
    x = _as_sequence(x).to(module_device(lstm))
    n, d_in = x.shape
    if d_in != lstm.input_size:
        raise ValueError(f"x has {d_in} features but the LSTM expects input_size={lstm.input_size}.")
    lstm = copy.deepcopy(lstm).to(dtype).eval()
    hid = lstm.hidden_size
    xb = x.detach().to(dtype).unsqueeze(0).repeat(hid, 1, 1)
    h = xb.new_zeros(1, hid, hid)
    c = xb.new_zeros(1, hid, hid)
    cells, forgets = [], []
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0 if lstm.bias else torch.zeros(4 * hid, dtype=dtype, device=x.device)
    for t in range(n):
        with torch.no_grad():
            gates = xb[0, t] @ w_ih.T + h[0, 0] @ w_hh.T + b
            forgets.append(torch.sigmoid(gates[hid:2 * hid]))
        cells.append(c)
        _, (h, c) = lstm(xb[:, t:t + 1], (h, c))
    # cells[t] is the state *entering* step t (c_{t-1}); append the final one as c_{n-1}.
    c_last = c
    eye = torch.eye(hid, dtype=dtype, device=x.device)
    grads = torch.autograd.grad(c_last[0], cells[1:], grad_outputs=eye, allow_unused=True)
    norms = [torch.linalg.matrix_norm(eye, ord=NORMS[norm])]  # k = 0: ∂c_T/∂c_T = I
    # cells[t] for t >= 1 is c_{t-1}, at distance k = n - t
    for g in reversed(grads):
        norms.append(torch.linalg.matrix_norm(g[0], ord=NORMS[norm]) if g is not None
                     else torch.zeros((), dtype=dtype, device=x.device))
    return torch.stack(norms).detach().cpu(), torch.stack(forgets).cpu()


def decay_rate_per_step(norms, start: int = 0, stop: int | None = None) -> float:
    """The per-step factor ``r`` of an exponential fit ``G[k] ≈ c · r^k`` over ``start ≤ k < stop``.

    Least squares on ``log G``. ``r < 1`` means the gradient vanishes, ``r > 1`` that it explodes;
    ``r = rho`` for the linear RNN of :func:`~utils.gradients.rnn_with_spectral_radius`. Raises ``ValueError`` when
    fewer than two points are selected or a selected norm is not positive (an exact zero, e.g.
    beyond a truncation window, has no logarithm).
    """
    g = torch.as_tensor(norms, dtype=torch.float64).flatten()
    start = check_int("start", start, minimum=0)
    stop = g.numel() if stop is None else check_int("stop", stop, minimum=0)
    k = torch.arange(g.numel(), dtype=torch.float64)[start:stop]
    g = g[start:stop]
    if g.numel() < 2:
        raise ValueError(f"need at least two distances to fit a decay rate, got {g.numel()} "
                         f"(start={start}, stop={stop}).")
    if not (g > 0).all():
        raise ValueError("every selected norm must be > 0 to fit an exponential; exclude exact zeros.")
    a = torch.stack([k, torch.ones_like(k)], dim=1)
    slope = torch.linalg.lstsq(a, g.log().unsqueeze(1)).solution[0, 0]
    return float(slope.exp())


def input_gradient_profile(fn, n: int, d_model: int, position: int | None = None, *, seed: int = 0,
                           dtype: torch.dtype = torch.float64, squared: bool = True) -> torch.Tensor:
    """Squared input gradient of one output position, per input position (length ``n``).

    ``profile[i] = Σ_c (∂ s / ∂ x[i, c])²`` with ``s = Σ_c y[position, c]`` (the output's channels summed,
    as in Luo et al. 2016) for a random input; with ``squared=False``, ``Σ_c |∂ s / ∂ x[i, c]|`` instead
    (use it to test *whether* output ``position`` depends on input ``i`` through a very deep stack, where
    a tiny gradient squared could underflow even float64). ``fn`` maps ``(1, n, d_model)`` to ``(1, n, d_out)``; an
    ``nn.Module`` is copied in eval mode at ``dtype``. Average it over several random initialisations to
    estimate the effective receptive field. ``position`` defaults to the centre ``n // 2``. The input
    is made on the CPU and moved to the module's device; the profile is returned on the CPU.
    """
    n = check_positive_int("n", n)
    d_model = check_positive_int("d_model", d_model)
    position = n // 2 if position is None else check_int("position", position, minimum=0)
    if position >= n:
        raise ValueError(f"position {position} is outside 0…{n - 1}.")
    x, y, gen = _probe(fn, n, d_model, seed, dtype)
    if y.dim() != 3 or y.shape[:2] != (1, n):
        raise ValueError(f"fn must map (1, n, d) to (1, n, d_out); got output of shape {tuple(y.shape)}.")
    (grad,) = torch.autograd.grad(y[0, position].sum(), x)
    grad = grad[0].detach()
    return (grad.pow(2).sum(dim=-1) if squared else grad.abs().sum(dim=-1)).cpu()


def profile_width(profile) -> float:
    """Standard deviation (in positions) of a non-negative profile read as a distribution over positions."""
    p = torch.as_tensor(profile, dtype=torch.float64).flatten()
    if p.numel() == 0 or bool((p < 0).any()) or not float(p.sum()) > 0:
        raise ValueError("profile must be non-negative with a positive sum (e.g. squared gradients).")
    p = p / p.sum()
    pos = torch.arange(p.numel(), dtype=torch.float64)
    mean = (p * pos).sum()
    return float(((p * (pos - mean) ** 2).sum()).sqrt())


def count_parameters(module) -> int:
    """``sum(p.numel())`` over a module's parameters: the measurement the formulas are checked against."""
    return sum(p.numel() for p in module.parameters())
