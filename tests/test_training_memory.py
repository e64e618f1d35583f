import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.blocks import TransformerBlock
from utils.complexity import (
    best_checkpoint_segments,
    checkpointed_activation_bytes,
    korthikanti_activation_bytes,
    optimizer_state_bytes_per_parameter,
    training_state_bytes,
    training_state_bytes_per_parameter,
    transformer_layer_activation_bytes,
    transformer_layer_activation_terms,
    transformer_training_memory,
)
from utils.measure import count_parameters, saved_activation_bytes

OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1),
              "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
              "adam": lambda p: torch.optim.Adam(p)}


def _state_bytes(opt):
    return sum(t.nbytes for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0)


def test_bytes_per_parameter_table():
    assert training_state_bytes_per_parameter(4, "adam") == training_state_bytes_per_parameter(2, "adam") == 16
    assert training_state_bytes_per_parameter(4, "sgd") == training_state_bytes_per_parameter(2, "sgd") == 8
    assert training_state_bytes_per_parameter(4, "sgd_momentum") == 12
    assert training_state_bytes(2, "adam") == {"weights": 2, "gradients": 2, "master weights": 4,
                                               "optimizer state": 8}
    assert optimizer_state_bytes_per_parameter("sgd") == 0


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_fp32_state_measured(optimizer, one_thread):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    opt = OPTIMIZERS[optimizer](model.parameters())
    model(torch.randn(8, 16)).square().mean().backward()
    opt.step()
    params = list(model.parameters())
    measured = sum(p.nbytes + p.grad.nbytes for p in params) + _state_bytes(opt)
    assert measured == training_state_bytes_per_parameter(4, optimizer) * count_parameters(model)


def test_mixed_precision_adam_measured(one_thread):
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 8).to(torch.bfloat16)
    master = [p.detach().float().requires_grad_() for p in model.parameters()]
    opt = torch.optim.Adam(master)
    model(torch.randn(4, 16, dtype=torch.bfloat16)).float().square().mean().backward()
    for m, p in zip(master, model.parameters()):
        m.grad = p.grad.float()
    opt.step()
    measured = sum(p.nbytes + p.grad.nbytes for p in model.parameters()) + sum(m.nbytes for m in master) \
        + _state_bytes(opt)
    assert measured == 16 * count_parameters(model)


@pytest.mark.parametrize("impl,attention", [("naive", "naive"), ("sdpa", "flash")])
@pytest.mark.parametrize("n", [8, 24])
def test_layer_formula_equals_saved_tensors(impl, attention, n, one_thread):
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 24, impl=impl)
    x = torch.randn(3, n, 16)
    assert saved_activation_bytes(block, x) == transformer_layer_activation_bytes(
        3, n, 16, 4, 24, attention=attention, bytes_per_element=4)


def test_layer_formula_bf16(one_thread):
    block = TransformerBlock(16, 2, impl="naive").to(torch.bfloat16)
    x = torch.randn(2, 12, 16, dtype=torch.bfloat16)
    assert saved_activation_bytes(block, x) == transformer_layer_activation_bytes(2, 12, 16, 2, bytes_per_element=2)


@settings(max_examples=40)
@given(s=st.integers(1, 4096), b=st.integers(1, 16), heads=st.sampled_from([1, 2, 8, 16]), width=st.integers(1, 64))
def test_korthikanti_is_the_dropout_fp16_case(s, b, heads, width):
    h = heads * width
    terms = transformer_layer_activation_terms(b, s, h, heads, attention="naive", bytes_per_element=2, dropout=True)
    assert sum(terms.values()) - terms["layer-norm statistics"] == korthikanti_activation_bytes(s, b, h, heads)


@settings(max_examples=40)
@given(L=st.integers(1, 64), a=st.integers(0, 10**6), i=st.integers(1, 10**6))
def test_checkpointing_properties(L, a, i):
    assert checkpointed_activation_bytes(L, a, i, 1) == L * a
    best = best_checkpoint_segments(L, a, i)
    assert all(checkpointed_activation_bytes(L, a, i, best) <= checkpointed_activation_bytes(L, a, i, k)
               for k in range(1, L + 1))


@pytest.mark.parametrize("L", [4, 9, 16, 25, 36])
def test_sqrt_rule_when_a_layer_saves_its_input(L):
    assert best_checkpoint_segments(L, 1000, 1000) == math.isqrt(L)


def test_training_memory_parameters_match_a_real_stack():
    stack = torch.nn.Sequential(*[TransformerBlock(32, 4) for _ in range(3)])
    mem = transformer_training_memory(2, 10, 32, 4, 3, bytes_per_element=4)
    assert mem["parameters"] == count_parameters(stack)
    assert mem["total"] == 16 * mem["parameters"] + 3 * transformer_layer_activation_bytes(2, 10, 32, 4,
                                                                                         bytes_per_element=4)


@pytest.mark.parametrize("call", [
    lambda: training_state_bytes_per_parameter(8),
    lambda: training_state_bytes_per_parameter(2, "lion"),
    lambda: transformer_layer_activation_bytes(1, 8, 30, 4),            # heads do not divide d_model
    lambda: transformer_layer_activation_bytes(1, 8, 32, 4, attention="sparse"),
    lambda: transformer_layer_activation_bytes(0, 8, 32, 4),
    lambda: checkpointed_activation_bytes(4, 10, 10, segments=5),
    lambda: transformer_training_memory(1, 8, 32, 4, 2, vocab=-1),
])
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()
