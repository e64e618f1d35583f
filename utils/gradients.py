"""How gradients travel along a path: Jacobian norms vs distance, measured by autograd.

The central measurement of the course's gradient chapter is

    G(k) = ‖ ∂ y_{n-1} / ∂ x_{n-1-k} ‖,   k = 0, 1, …, n-1,

the norm of the Jacobian of the **last output** ``y_{n-1}`` with respect to the **input k steps
earlier**. :func:`gradient_norms_vs_distance` computes every ``G(k)`` of one sequence with a single
backward pass: the sequence is repeated ``d_out`` times in the batch and the identity matrix is fed
back as the output gradient, so row ``b`` of the input gradient is row ``b`` of the Jacobian.

Helpers build the models whose gradients the chapter measures:

* :func:`rnn_with_spectral_radius`: a vanilla RNN (``nn.RNN`` with ``tanh``, or :class:`LinearRNN`)
  whose recurrent matrix has an exact spectral radius ``rho``, and whose input matrix is the
  identity, so that for the linear RNN ``∂h_T/∂x_{T-k} = W_hh^k`` exactly;
* :func:`set_forget_gate_bias`: the LSTM forget-gate bias trick (PyTorch gate order ``i|f|g|o``);
* :func:`lstm_cell_gradient_norms`: ``‖∂c_T/∂c_{T-k}‖`` along the LSTM cell state, with the forget
  gates that were open on the way;
* ``window=`` in :func:`gradient_norms_vs_distance`: truncated back-propagation through time.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn

from utils.env import module_device
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

NORMS = {"spectral": 2, "frobenius": "fro"}


# --------------------------------------------------------------------------------------------------
# Models with a controlled recurrent matrix
# --------------------------------------------------------------------------------------------------
class LinearRNN(nn.Module):
    """``h_t = W_ih x_t + W_hh h_{t-1}`` — a vanilla RNN without a nonlinearity.

    Same calling convention as ``nn.RNN(batch_first=True, bias=False)`` with one layer:
    ``forward(x, hx=None) -> (output, h_n)``, ``x`` of shape ``(batch, n, input_size)``, ``hx`` and
    ``h_n`` of shape ``(1, batch, hidden_size)``. Parameter names match ``nn.RNN``.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size))
        bound = 1 / math.sqrt(hidden_size)
        nn.init.uniform_(self.weight_ih_l0, -bound, bound)
        nn.init.uniform_(self.weight_hh_l0, -bound, bound)

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None):
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (batch, n, {self.input_size}), got {tuple(x.shape)}.")
        b, n, _ = x.shape
        h = x.new_zeros(b, self.hidden_size) if hx is None else hx[0]
        u = x @ self.weight_ih_l0.T
        outs = []
        for t in range(n):
            h = u[:, t] + h @ self.weight_hh_l0.T
            outs.append(h)
        return torch.stack(outs, dim=1), h.unsqueeze(0)


def spectral_radius(matrix: torch.Tensor) -> float:
    """Largest ``|λ|`` over the eigenvalues of a square matrix (``torch.linalg.eigvals``)."""
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"spectral_radius needs a square matrix, got shape {tuple(matrix.shape)}.")
    return float(torch.linalg.eigvals(matrix.detach().double()).abs().max())


def random_recurrent_matrix(d: int, rho: float, kind: str = "orthogonal", seed: int = 0) -> torch.Tensor:
    """A ``d × d`` float64 matrix with spectral radius exactly ``rho``.

    ``kind="orthogonal"``: ``rho · Q`` with ``Q`` a random orthogonal matrix (QR of a Gaussian, signs
    fixed). It is a *normal* matrix, so ``‖W^k‖₂ = rho^k`` for every k.
    ``kind="gaussian"``: a Gaussian matrix rescaled so that its largest ``|eigenvalue|`` is ``rho``.
    It is not normal: ``‖W^k‖₂`` can exceed ``rho^k`` for small k, and only decays at rate ``rho``
    asymptotically.
    """
    d = check_positive_int("d", d)
    rho = check_positive_float("rho", rho, hint="a spectral radius is a positive number such as 0.9 or 1.1.")
    check_choice("kind", kind, {"orthogonal", "gaussian"})
    seed = check_int("seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    if kind == "orthogonal":
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(d, dtype=torch.float64))
        return rho * q
    return a * (rho / spectral_radius(a))


def rnn_with_spectral_radius(d: int, rho: float, nonlinearity: str = "tanh", seed: int = 0,
                             kind: str = "orthogonal", dtype: torch.dtype = torch.float64) -> nn.Module:
    """A one-layer vanilla RNN of width ``d`` whose recurrent matrix has spectral radius ``rho``.

    ``nonlinearity="tanh"`` returns ``nn.RNN(d, d, bias=False, batch_first=True)``;
    ``nonlinearity="linear"`` returns :class:`LinearRNN` (PyTorch's ``nn.RNN`` has no linear mode).
    In both, ``W_ih`` is the identity (so the input gradient equals the hidden-state gradient of the
    linear RNN) and ``W_hh`` comes from :func:`random_recurrent_matrix`. The spectral radius is
    verified with ``torch.linalg.eigvals`` after the cast to ``dtype``.
    """
    check_choice("nonlinearity", nonlinearity, {"tanh", "linear"})
    w_hh = random_recurrent_matrix(d, rho, kind, seed)
    if nonlinearity == "tanh":
        rnn = nn.RNN(d, d, nonlinearity="tanh", bias=False, batch_first=True)
    else:
        rnn = LinearRNN(d, d)
    rnn = rnn.to(dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(d, dtype=dtype))
        rnn.weight_hh_l0.copy_(w_hh.to(dtype))
    measured = spectral_radius(rnn.weight_hh_l0)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    if abs(measured - rho) > tol * max(1.0, rho) * d:
        raise RuntimeError(f"spectral radius {measured} differs from the requested {rho}.")
    return rnn


def set_forget_gate_bias(lstm: nn.LSTM, value: float) -> nn.LSTM:
    """Set the LSTM forget-gate bias of every layer (and direction) to ``value``, in place.

    PyTorch stores the four gates stacked as ``i | f | g | o`` (input, forget, cell, output) in
    ``bias_ih_l*`` and ``bias_hh_l*``, and *adds* the two biases. So the forget slice of ``bias_ih``
    gets ``value`` and that of ``bias_hh`` gets 0: the effective bias is exactly ``value``.
    Returns the same module.
    """
    if not isinstance(lstm, nn.LSTM):
        raise ValueError(f"set_forget_gate_bias needs an nn.LSTM, got {type(lstm).__name__}.")
    if not lstm.bias:
        raise ValueError("this LSTM was built with bias=False: it has no forget-gate bias to set.")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"value must be a finite number, got {value!r}.")
    h = lstm.hidden_size
    with torch.no_grad():
        for name, param in lstm.named_parameters():
            if name.startswith("bias_ih"):
                param[h:2 * h].fill_(float(value))
            elif name.startswith("bias_hh"):
                param[h:2 * h].zero_()
    return lstm


def forget_gate_bias(lstm: nn.LSTM, layer: int = 0) -> torch.Tensor:
    """The effective forget-gate bias ``b_ih[f] + b_hh[f]`` of one layer (a vector of length hidden)."""
    if not isinstance(lstm, nn.LSTM):
        raise ValueError(f"forget_gate_bias needs an nn.LSTM, got {type(lstm).__name__}.")
    layer = check_int("layer", layer, minimum=0)
    if layer >= lstm.num_layers:
        raise ValueError(f"layer must be < num_layers ({lstm.num_layers}), got {layer}.")
    h = lstm.hidden_size
    b_ih = getattr(lstm, f"bias_ih_l{layer}")
    b_hh = getattr(lstm, f"bias_hh_l{layer}")
    return (b_ih[h:2 * h] + b_hh[h:2 * h]).detach()


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------
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
    ``r = rho`` for the linear RNN of :func:`rnn_with_spectral_radius`. Raises ``ValueError`` when
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
