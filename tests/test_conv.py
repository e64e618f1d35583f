import pytest
import torch
from hypothesis import given, settings, strategies as st

from utils.conv import ConvStack


@settings(deadline=None, max_examples=20)
@given(n=st.integers(1, 20), k=st.integers(2, 5), layers=st.integers(0, 3),
       padding=st.sampled_from(["causal", "centred"]))
def test_length_is_preserved(n, k, layers, padding):
    if padding == "centred" and k % 2 == 0:
        k += 1
    stack = ConvStack(4, k, layers, padding=padding)
    assert stack(torch.randn(2, n, 4)).shape == (2, n, 4)


def test_causal_stack_never_sees_the_future():
    torch.manual_seed(0)
    stack = ConvStack(3, 3, 2, dilations=[1, 2], padding="causal").double()
    x = torch.randn(1, 12, 3, dtype=torch.float64)
    y = stack(x)
    x2 = x.clone()
    x2[0, 8:] += 1.0
    torch.testing.assert_close(stack(x2)[0, :8], y[0, :8])


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=1, layers=2), "kernel_size must be >= 2"),
    (dict(kernel_size=4, layers=2, padding="centred"), "odd kernel_size"),
    (dict(kernel_size=3, layers=-1), "layers must be >= 0"),
    (dict(kernel_size=3, layers=2, dilations=[1]), "one dilation per layer"),
    (dict(kernel_size=3, layers=1, dilations=[0]), "dilation must be >= 1"),
    (dict(kernel_size=3, layers=1, padding="same"), "padding must be one of"),
])
def test_bad_shapes_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvStack(4, **kwargs)


def test_padding_left_out_is_causal_with_a_warning_of_the_coming_default():
    with pytest.warns(FutureWarning, match=r"pass padding='causal' or padding='centred'"):
        stack = ConvStack(4, 3, 2)
    assert stack.padding == "causal"
