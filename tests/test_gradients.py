import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from utils.gradients import (
    LinearRNN,
    forget_gate_bias,
    random_recurrent_matrix,
    rnn_with_spectral_radius,
    set_forget_gate_bias,
    spectral_radius,
)
from utils.measure import gradient_norms_vs_distance, lstm_cell_gradient_norms


@settings(deadline=None, max_examples=25)
@given(d=st.integers(1, 12), rho=st.floats(0.05, 2.0), kind=st.sampled_from(["orthogonal", "gaussian"]),
       seed=st.integers(0, 1000))
def test_recurrent_matrix_has_exact_spectral_radius(d, rho, kind, seed):
    w = random_recurrent_matrix(d, rho, kind, seed)
    assert w.shape == (d, d)
    assert math.isclose(spectral_radius(w), rho, rel_tol=1e-9)


@settings(deadline=None, max_examples=15)
@given(d=st.integers(1, 8), rho=st.floats(0.5, 1.2), seed=st.integers(0, 100))
def test_orthogonal_kind_is_normal_so_power_norms_are_rho_to_the_k(d, rho, seed):
    w = random_recurrent_matrix(d, rho, "orthogonal", seed)
    for k in (1, 3, 7):
        assert math.isclose(float(torch.linalg.matrix_norm(torch.linalg.matrix_power(w, k), ord=2)),
                            rho**k, rel_tol=1e-9)


@pytest.mark.parametrize("nonlinearity, cls", [("tanh", nn.RNN), ("linear", LinearRNN)])
def test_rnn_with_spectral_radius_builds_the_promised_module(nonlinearity, cls):
    rnn = rnn_with_spectral_radius(6, 0.9, nonlinearity, seed=3)
    assert isinstance(rnn, cls)
    assert math.isclose(spectral_radius(rnn.weight_hh_l0), 0.9, rel_tol=1e-9)
    torch.testing.assert_close(rnn.weight_ih_l0, torch.eye(6, dtype=torch.float64))


@settings(deadline=None, max_examples=15)
@given(rho=st.sampled_from([0.5, 0.9, 1.0, 1.1]), n=st.integers(1, 30), seed=st.integers(0, 50))
def test_linear_rnn_gradient_is_rho_to_the_k(rho, n, seed):
    rnn = rnn_with_spectral_radius(5, rho, "linear", seed=seed)
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(seed))
    g = gradient_norms_vs_distance(rnn, x)
    torch.testing.assert_close(g, rho ** torch.arange(n, dtype=torch.float64), rtol=1e-9, atol=0)


@settings(deadline=None, max_examples=15)
@given(rho=st.sampled_from([0.9, 1.0, 1.1]), scale=st.floats(0.01, 3.0), seed=st.integers(0, 50))
def test_tanh_rnn_gradient_lies_below_rho_to_the_k(rho, scale, seed):
    rnn = rnn_with_spectral_radius(5, rho, "tanh", seed=seed)
    x = scale * torch.randn(25, 5, generator=torch.Generator().manual_seed(seed))
    g = gradient_norms_vs_distance(rnn, x)
    assert (g <= rho ** torch.arange(25, dtype=torch.float64) * (1 + 1e-9)).all()


def test_gradient_norms_agree_with_a_full_jacobian():
    torch.manual_seed(0)
    gru = nn.GRU(3, 4, batch_first=True).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda inp: gru(inp.unsqueeze(0))[0][0, -1], x)  # (4, 7, 3)
    expected = torch.linalg.matrix_norm(jac.permute(1, 0, 2), ord="fro").flip(0)
    torch.testing.assert_close(gradient_norms_vs_distance(gru, x, norm="frobenius"), expected)


def test_micro_trace_scalar_rnn_is_exact():
    rnn = LinearRNN(1, 1).double()
    with torch.no_grad():
        rnn.weight_ih_l0.fill_(1.0)
        rnn.weight_hh_l0.fill_(0.5)
    g = gradient_norms_vs_distance(rnn, torch.ones(6, 1), norm="frobenius")
    assert g.tolist() == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]


@pytest.mark.parametrize("make", [
    lambda: nn.RNN(4, 4, batch_first=True),
    lambda: nn.LSTM(4, 4, batch_first=True),
    lambda: nn.GRU(4, 4, batch_first=True),
    lambda: rnn_with_spectral_radius(4, 1.0, "linear"),
])
@pytest.mark.parametrize("n, window", [(12, 4), (13, 5), (5, 5), (3, 7)])
def test_truncated_bptt_is_exactly_zero_beyond_the_window(make, n, window):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(n, 4)
    full = gradient_norms_vs_distance(model, x)
    trunc = gradient_norms_vs_distance(model, x, window=window)
    assert (trunc[window:] == 0).all()
    assert (trunc[:window] > 0).all()
    torch.testing.assert_close(trunc[:window], full[:window])


def test_set_forget_gate_bias_sets_the_effective_sum_in_every_layer():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, num_layers=2, batch_first=True)
    before = {name: p.detach().clone() for name, p in lstm.named_parameters()}
    set_forget_gate_bias(lstm, 1.0)
    for layer in range(2):
        torch.testing.assert_close(forget_gate_bias(lstm, layer), torch.ones(5))
        for kind in ("ih", "hh"):
            name = f"bias_{kind}_l{layer}"
            now = getattr(lstm, name)
            torch.testing.assert_close(now[:5], before[name][:5])  # input gate untouched
            torch.testing.assert_close(now[10:], before[name][10:])  # cell and output gates untouched


def test_forget_bias_opens_the_forget_gate():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 8, batch_first=True)
    x = torch.randn(30, 4)
    means = []
    for b in (0.0, 1.0, 3.0):
        set_forget_gate_bias(lstm, b)
        _, f = lstm_cell_gradient_norms(lstm, x)
        means.append(float(f.mean()))
    assert means[0] < means[1] < means[2]
    assert 0.35 < means[0] < 0.65 and means[2] > 0.9


def test_lstm_cell_gradient_matches_the_direct_path_with_frozen_gates():
    # With W_hh = 0 the gates do not depend on the past, so dc_T/dc_t is exactly diag(prod f).
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)
    with torch.no_grad():
        lstm.weight_hh_l0.zero_()
    x = torch.randn(9, 3)
    g, f = lstm_cell_gradient_norms(lstm, x)
    assert g.shape == (9,) and f.shape == (9, 4)
    for k in range(9):
        expected = f[9 - k:].prod(0).max() if k else torch.tensor(1.0, dtype=torch.float64)
        torch.testing.assert_close(g[k], expected)


@pytest.mark.parametrize("call, message", [
    (lambda: random_recurrent_matrix(0, 0.9), "d must be >= 1"),
    (lambda: random_recurrent_matrix(4, 0.0), "rho must be > 0"),
    (lambda: random_recurrent_matrix(4, -1.0), "rho must be > 0"),
    (lambda: random_recurrent_matrix(4, "big"), "rho must be a number"),
    (lambda: random_recurrent_matrix(4, 0.9, kind="unitary"), "kind must be one of"),
    (lambda: random_recurrent_matrix(4, 0.9, seed=-1), "seed must be >= 0"),
    (lambda: rnn_with_spectral_radius(4, 0.9, "relu"), "nonlinearity must be one of"),
    (lambda: rnn_with_spectral_radius(2.5, 0.9), "d must be a whole number"),
    (lambda: set_forget_gate_bias(nn.GRU(2, 2), 1.0), "needs an nn.LSTM"),
    (lambda: set_forget_gate_bias(nn.LSTM(2, 2, bias=False), 1.0), "bias=False"),
    (lambda: set_forget_gate_bias(nn.LSTM(2, 2), float("nan")), "finite number"),
    (lambda: forget_gate_bias(nn.LSTM(2, 2), 1), "layer must be <"),
    (lambda: gradient_norms_vs_distance(nn.RNN(2, 2, batch_first=True), torch.randn(4, 2), norm="max"),
     "norm must be one of"),
    (lambda: gradient_norms_vs_distance(nn.RNN(2, 2, batch_first=True), torch.randn(2, 4, 2)), "one sequence"),
    (lambda: gradient_norms_vs_distance(nn.RNN(2, 2, batch_first=True), torch.randn(4)), "shape"),
    (lambda: gradient_norms_vs_distance(nn.RNN(2, 2, batch_first=True), [[1.0]]), "torch.Tensor"),
    (lambda: gradient_norms_vs_distance(nn.RNN(2, 2, batch_first=True), torch.randn(4, 2), window=0),
     "window must be >= 1"),
    (lambda: gradient_norms_vs_distance(lambda z: z.sum(1), torch.randn(4, 2)), "must map"),
    (lambda: lstm_cell_gradient_norms(nn.LSTM(2, 2, num_layers=2, batch_first=True), torch.randn(3, 2)),
     "one-layer"),
    (lambda: lstm_cell_gradient_norms(nn.LSTM(2, 2, batch_first=True), torch.randn(3, 5)), "input_size=2"),
    (lambda: spectral_radius(torch.zeros(2, 3)), "square"),
])
def test_bad_inputs_are_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@settings(max_examples=30)
@given(r=st.floats(0.2, 1.5), c=st.floats(0.1, 10.0), n=st.integers(2, 60))
def test_decay_rate_recovers_an_exact_exponential(r, c, n):
    from utils.measure import decay_rate_per_step
    g = c * r ** torch.arange(n, dtype=torch.float64)
    assert math.isclose(decay_rate_per_step(g), r, rel_tol=1e-9)


@pytest.mark.parametrize("args, message", [
    (([1.0], 0, None), "at least two"),
    (([1.0, 0.5, 0.0], 0, None), "> 0"),
    (([1.0, 0.5, 0.25], 2, None), "at least two"),
    (([1.0, 0.5], -1, None), "start must be >= 0"),
])
def test_decay_rate_bad_inputs(args, message):
    from utils.measure import decay_rate_per_step
    with pytest.raises(ValueError, match=message):
        decay_rate_per_step(*args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")
def test_cuda_model_with_a_cpu_sequence_gives_the_cpu_answer():
    from utils.measure import lstm_cell_gradient_norms

    torch.manual_seed(0)
    lstm = nn.LSTM(4, 4, batch_first=True)
    x = torch.randn(12, 4)
    cpu = gradient_norms_vs_distance(lstm, x)
    gpu = gradient_norms_vs_distance(lstm.to("cuda"), x)           # x stays on the CPU
    assert gpu.device.type == "cpu" and torch.allclose(gpu, cpu, rtol=1e-6, atol=1e-12)
    g_cpu, f_cpu = lstm_cell_gradient_norms(lstm.cpu(), x)
    g_gpu, f_gpu = lstm_cell_gradient_norms(lstm.to("cuda"), x)
    assert torch.allclose(g_gpu, g_cpu, rtol=1e-6, atol=1e-12) and torch.allclose(f_gpu, f_cpu, atol=1e-12)


class _Stateless(nn.Module):
    """A model with no recurrent state: returns one (batch, n, d_out) tensor."""

    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x, state=None):
        return self.lin(x)


class _Triple(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.rnn = nn.RNN(d, d, batch_first=True)

    def forward(self, x, state=None):
        y, h = self.rnn(x, state)
        return y, h, None


@pytest.mark.parametrize("d", [2, 3])
def test_window_on_a_model_without_state_is_a_clear_error(d):
    # The old code unpacked the lone (d_out, n, d_out) tensor as (output, state) along its batch
    # dimension: an IndexError deep inside for d_out == 2, an unpacking error for d_out == 3.
    model, x = _Stateless(d), torch.randn(6, d)
    assert gradient_norms_vs_distance(model, x).shape == (6,)  # fine without window
    with pytest.raises(ValueError, match=r"window= \(truncated BPTT\) needs a recurrent model .* it returned Tensor"):
        gradient_norms_vs_distance(model, x, window=2)
    with pytest.raises(ValueError, match="it returned a tuple of 3"):
        gradient_norms_vs_distance(_Triple(d), x, window=2)
