"""How gradients travel along a path: Jacobian norms vs distance, measured by autograd.

The central measurement of the course's gradient chapter is

    G(k) = ‖ ∂ y_{n-1} / ∂ x_{n-1-k} ‖,   k = 0, 1, …, n-1,

the norm of the Jacobian of the **last output** ``y_{n-1}`` with respect to the **input k steps
earlier**. :func:`~utils.measure.gradient_norms_vs_distance` computes every ``G(k)`` of one sequence with a single
backward pass: the sequence is repeated ``d_out`` times in the batch and the identity matrix is fed
back as the output gradient, so row ``b`` of the input gradient is row ``b`` of the Jacobian.

Helpers build the models whose gradients the chapter measures:

* :func:`~utils.gradients.rnn_with_spectral_radius`: a vanilla RNN (``nn.RNN`` with ``tanh``, or :class:`LinearRNN`)
  whose recurrent matrix has an exact spectral radius ``rho``, and whose input matrix is the
  identity, so that for the linear RNN ``∂h_T/∂x_{T-k} = W_hh^k`` exactly;
* :func:`set_forget_gate_bias`: the LSTM forget-gate bias trick (PyTorch gate order ``i|f|g|o``);
* :func:`~utils.measure.lstm_cell_gradient_norms`: ``‖∂c_T/∂c_{T-k}‖`` along the LSTM cell state, with the forget
  gates that were open on the way;
* ``window=`` in :func:`~utils.measure.gradient_norms_vs_distance`: truncated back-propagation through time.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from utils._moved import module_getattr as _module_getattr
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int


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


__getattr__ = _module_getattr(__name__)  # names moved in 0.2 (utils._moved)
