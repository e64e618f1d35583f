"""Closed-form FLOPs (utils.complexity) vs FlopCounterMode on real PyTorch modules: exact equality."""

import collections
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from utils.attention import sdpa_attention
from utils.blocks import MultiHeadAttention
from utils.complexity import (
    attention_ffn_crossover,
    attention_flops,
    conv1d_flops,
    conv_output_length,
    encoder_layer_flops,
    ffn_flops,
    gru_flops,
    lstm_flops,
    multihead_attention_flops,
    projection_flops,
    recurrent_flops,
    rnn_flops,
)
from utils.conv import ConvStack
from utils.measure import UncountedFlopsError, count_flops, count_flops_by_module, counting_context
from utils.measure._flops import _AuditedFlopCounter, _is_matrix_work

RECURRENT = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
small = st.integers(1, 12)


@settings(deadline=None, max_examples=30)
@given(family=st.sampled_from(sorted(RECURRENT)), n=small, d_in=small, h=small, batch=st.integers(1, 3),
       layers=st.integers(1, 2), bidirectional=st.booleans(), eval_no_grad=st.booleans())
def test_recurrent_formula_matches_module(family, n, d_in, h, batch, layers, bidirectional, eval_no_grad):
    module = RECURRENT[family](d_in, h, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    x = torch.randn(batch, n, d_in)
    if eval_no_grad:  # the path where CPU nn.LSTM runs oneDNN's uncounted kernel
        module.eval()
        with torch.no_grad():
            measured = count_flops(module, x)
    else:
        measured = count_flops(module, x)
    expected = recurrent_flops(family, n, d_in, h, batch, layers, bidirectional)
    assert measured == expected > 0
    assert {"rnn": rnn_flops, "gru": gru_flops, "lstm": lstm_flops}[family](
        n, d_in, h, batch, layers, bidirectional) == expected


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(deadline=None, max_examples=30)
@given(n=st.integers(10, 24), d_in=small, d_out=small, k=st.integers(2, 5), batch=st.integers(1, 3),
       padding=st.sampled_from(["same", "valid", 0, 1, 2]), stride=st.integers(1, 3),
       dilation=st.integers(1, 2))
def test_conv1d_formula_matches_module(n, d_in, d_out, k, batch, padding, stride, dilation):
    if padding == "same" and stride > 1:
        stride = 1
    torch_padding = {"same": "same", "valid": 0}.get(padding, padding)
    conv = nn.Conv1d(d_in, d_out, k, padding=torch_padding, stride=stride, dilation=dilation)
    x = torch.randn(batch, d_in, n)
    out = conv(x)
    assert out.shape[-1] == conv_output_length(n, k, padding, dilation, stride)
    assert count_flops(conv, x) == conv1d_flops(n, d_in, d_out, k, batch, padding=padding, stride=stride,
                                                dilation=dilation)


@settings(deadline=None, max_examples=20)
@given(n=small, d=small, k=st.integers(2, 5), layers=st.integers(1, 3), padding=st.sampled_from(["causal", "centred"]))
def test_conv_stack_is_same_padding(n, d, k, layers, padding):
    if padding == "centred" and k % 2 == 0:
        k += 1
    stack = ConvStack(d, k, layers, dilations=[2**i for i in range(layers)], padding=padding)
    assert count_flops(stack, torch.randn(2, n, d)) == conv1d_flops(n, d, d, k, 2, layers=layers)


def test_grouped_conv():
    conv = nn.Conv1d(8, 6, 3, groups=2)
    assert count_flops(conv, torch.randn(1, 8, 10)) == conv1d_flops(10, 8, 6, 3, padding="valid", groups=2)


@settings(deadline=None, max_examples=25)
@given(n=small, n_kv=small, heads=st.sampled_from([1, 2, 4]), mult=st.integers(1, 4), batch=st.integers(1, 3),
       need_weights=st.booleans(), eval_no_grad=st.booleans())
def test_multihead_attention_matches_module(n, n_kv, heads, mult, batch, need_weights, eval_no_grad):
    d = heads * mult
    mha = nn.MultiheadAttention(d, heads, batch_first=True)
    q, kv = torch.randn(batch, n, d), torch.randn(batch, n_kv, d)
    call = lambda a, b: mha(a, b, b, need_weights=need_weights)  # noqa: E731
    if eval_no_grad:  # the inference fast path
        mha.eval()
        with torch.no_grad():
            measured = count_flops(call, q, kv)
    else:
        measured = count_flops(call, q, kv)
    assert measured == multihead_attention_flops(n, d, batch, n_kv=n_kv, heads=heads)


@settings(deadline=None, max_examples=20)
@given(n=small, heads=st.sampled_from([1, 2, 4]), mult=st.integers(1, 4), d_ff=small, batch=st.integers(1, 3),
       eval_no_grad=st.booleans(), causal=st.booleans())
def test_encoder_layer_matches_module(n, heads, mult, d_ff, batch, eval_no_grad, causal):
    d = heads * mult
    layer = nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, batch_first=True)
    x = torch.randn(batch, n, d)
    mask = nn.Transformer.generate_square_subsequent_mask(n) if causal else None
    call = lambda a: layer(a, src_mask=mask, is_causal=causal)  # noqa: E731
    if eval_no_grad:
        layer.eval()
        with torch.no_grad():
            measured = count_flops(call, x)
    else:
        measured = count_flops(call, x)
    # causal attention is counted as full: the masked scores are computed, then discarded
    assert measured == encoder_layer_flops(n, d, heads, d_ff, batch)
    parts = count_flops_by_module(layer, x)
    assert parts["TransformerEncoderLayer.self_attn"]["aten.bmm"] == attention_flops(n, d, batch)
    ffn = sum(parts["TransformerEncoderLayer.linear1"].values()) + sum(
        parts["TransformerEncoderLayer.linear2"].values()
    )
    assert ffn == ffn_flops(n, d, d_ff, batch)


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("mask", ["none", "causal"])
def test_course_self_attention(impl, mask):
    attn = MultiHeadAttention(16, 4, mask=mask, impl=impl)
    x = torch.randn(2, 11, 16)
    assert count_flops(attn, x) == multihead_attention_flops(11, 16, 2, heads=4)
    assert count_flops(attn, x, meta=True) == multihead_attention_flops(11, 16, 2, heads=4)


@pytest.mark.parametrize("backend", [None, "math", "flash"])
def test_sdpa_core_every_backend(backend):
    q = torch.randn(2, 4, 9, 8)
    k = torch.randn(2, 4, 13, 8)
    assert count_flops(lambda a, b: sdpa_attention(a, b, b, backend=backend), q, k) == \
        attention_flops(9, 32, 2, n_kv=13, heads=4)


def test_projection_and_ffn():
    x = torch.randn(3, 7, 10)
    assert count_flops(nn.Linear(10, 6), x) == projection_flops(7, 10, 6, 3)
    ffn = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 10))
    assert count_flops(ffn, x) == ffn_flops(7, 10, 40, 3) == 2 * projection_flops(7, 10, 40, 3)


@pytest.mark.parametrize("family", sorted(RECURRENT))
def test_meta_device_counts_the_same_without_arithmetic(family):
    module = RECURRENT[family](6, 5, batch_first=True)
    x = torch.randn(2, 9, 6)
    assert count_flops(module, x, meta=True) == count_flops(module, x) == recurrent_flops(family, 9, 6, 5, 2)
    assert next(module.parameters()).device.type == "cpu"  # the caller's module is not moved


def test_meta_device_long_sequence_is_cheap():
    layer = nn.TransformerEncoderLayer(512, 8, 2048, batch_first=True)
    x = torch.empty(1, 16384, 512, device="meta")
    assert count_flops(layer, x, meta=True) == encoder_layer_flops(16384, 512, 8, 2048)


def test_counting_context_restores_settings():
    before = (torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled,
              torch.backends.cudnn.enabled)
    with counting_context():
        assert not torch.backends.mha.get_fastpath_enabled()
        assert not torch.backends.mkldnn.enabled
    after = (torch.backends.mha.get_fastpath_enabled(), torch.backends.mkldnn.enabled,
             torch.backends.cudnn.enabled)
    assert before == after


def test_zero_count_for_matrix_module_is_an_error():
    class Hidden(nn.Module):  # a matrix product written with element-wise ops: FlopCounterMode sees none
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            return (x.unsqueeze(-1) * self.weight).sum(-2)

    with pytest.raises(RuntimeError, match="counted 0 FLOPs"):
        count_flops(Hidden(), torch.randn(2, 4))
    assert count_flops(nn.LayerNorm(4), torch.randn(2, 4)) == 0  # no weight matrix: 0 is the right answer
    assert count_flops(nn.Embedding(10, 4), torch.tensor([1, 2])) == 0


def test_uncounted_matrix_kernel_is_an_error():
    a, b, c = torch.randn(3, 4), torch.randn(4, 5), torch.zeros(3, 5)
    with pytest.raises(RuntimeError, match="addmm_"):
        count_flops(lambda: c.addmm_(a, b))


def test_causal_useful_work():
    # full square vs lower triangle (diagonal included)
    assert attention_flops(4, 8) == 4 * 16 * 8
    assert attention_flops(4, 8, causal=True) == 4 * 10 * 8
    # one new query against a cache of 10 keys: every key is visible, causal or not
    assert attention_flops(1, 8, n_kv=10, causal=True) == attention_flops(1, 8, n_kv=10) == 4 * 10 * 8
    # heads never change the count
    assert attention_flops(7, 12, heads=3) == attention_flops(7, 12, heads=1)


@settings(deadline=None, max_examples=50)
@given(d=st.integers(1, 64), d_ff=st.integers(1, 256), projections=st.booleans())
def test_crossover_is_the_first_n_where_attention_wins(d, d_ff, projections):
    def attention_side(n):
        return (multihead_attention_flops if projections else attention_flops)(n, d)

    n_star = attention_ffn_crossover(d, d_ff, include_projections=projections)
    assert attention_side(n_star) > ffn_flops(n_star, d, d_ff)
    if n_star > 1:
        assert attention_side(n_star - 1) <= ffn_flops(n_star - 1, d, d_ff)


def test_seed_worked_example_closed_forms():
    n, d, d_ff = 1024, 512, 2048
    assert n * d * d == 268_435_456                     # the seed's "RNN ≈ 268M MACs" (W_hh only)
    assert rnn_flops(n, d, d) // 2 == 2 * n * d * d     # with W_ih the RNN is twice that
    assert attention_flops(n, 64) // 4 == n * n * 64    # "67M MACs": one head, QKᵀ only
    assert ffn_flops(n, d, d_ff) // 2 == 2 * n * d * d_ff  # "2·n·d·d_ff": MACs of both FFN products
    assert attention_ffn_crossover(d, d_ff) == d_ff + 1


@pytest.mark.parametrize("call, message", [
    (lambda: rnn_flops(0, 4, 4), "n must be >= 1"),
    (lambda: lstm_flops(4, 4, -1), "d_hidden must be >= 1"),
    (lambda: recurrent_flops("transformer", 4, 4, 4), "family must be one of"),
    (lambda: attention_flops(4, 6, heads=4), r"d_model \(6\) must be divisible by heads \(4\)"),
    (lambda: attention_flops(4, 8, n_kv=2, causal=True), "n_kv >= n"),
    (lambda: attention_flops(4.5, 8), "whole number"),
    (lambda: encoder_layer_flops(4, 6, 4, 8), r"d_model \(6\) must be divisible by heads \(4\)"),
    (lambda: ffn_flops(4, 8, 0), "d_ff must be >= 1"),
    (lambda: projection_flops(4, 8, 8, batch=0), "batch must be >= 1"),
    (lambda: conv1d_flops(4, 8, 8, 9, padding="valid"), "does not fit"),
    (lambda: conv1d_flops(8, 8, 8, 3, padding="same", stride=2), "stride=1"),
    (lambda: conv1d_flops(8, 6, 8, 3, groups=4), "groups=4 must divide"),
    (lambda: conv1d_flops(8, 8, 8, 3, padding="full"), "padding must be one of"),
    (lambda: count_flops(42), "nn.Module or a function"),
])
def test_bad_input_raises_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------------------------------
# The audit: every matrix product is counted exactly or refused, never silently 0
# --------------------------------------------------------------------------------------------------

def test_matrix_vector_product_is_an_error_not_zero():
    # the textbook from-scratch RNN cell, W @ h with a 1-D h, dispatches aten.mv: FlopCounterMode has no
    # formula for it and used to report 0 without a word
    W, h = torch.randn(5, 3), torch.randn(3)
    with pytest.raises(ValueError, match=r"aten\.mv.*h\.unsqueeze\(-1\)"):
        count_flops(lambda W, h: W @ h, W, h)
    # the rewrite the message suggests is counted exactly: 2 * 5 * 3
    assert count_flops(lambda W, h: W @ h.unsqueeze(-1), W, h) == 30


def test_uncounted_matrix_error_is_a_value_error_and_a_runtime_error():
    a, b, c = torch.randn(3, 4), torch.randn(4, 5), torch.zeros(3, 5)
    with pytest.raises(UncountedFlopsError, match=r"aten\.addmm_.*out-of-place") as info:
        count_flops(lambda: c.addmm_(a, b))
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)


_m, _k, _n = 3, 4, 5
_A, _B, _C = torch.randn(_m, _k), torch.randn(_k, _n), torch.randn(_m, _n)
_u, _v, _w = torch.randn(_m), torch.randn(_k), torch.randn(_k)
_bA, _bB, _bC = torch.randn(2, _m, _k), torch.randn(2, _k, _n), torch.randn(2, _m, _n)


# what FlopCounterMode has no formula for on torch 2.13 (measured): each must be refused by name
@pytest.mark.parametrize("op, fn", [
    ("aten.mv", lambda: torch.mv(_A, _v)),
    ("aten.addmv", lambda: torch.addmv(_u, _A, _v)),
    ("aten.addmv_", lambda: _u.clone().addmv_(_A, _v)),
    ("aten.dot", lambda: _v @ _w),
    ("aten.vdot", lambda: torch.vdot(_v, _w)),
    ("aten.addr", lambda: torch.addr(_C, _u, torch.randn(_n))),
    ("aten.addr_", lambda: _C.clone().addr_(_u, torch.randn(_n))),
    ("aten.addbmm", lambda: torch.addbmm(_C, _bA, _bB)),
    ("aten.addbmm_", lambda: _C.clone().addbmm_(_bA, _bB)),
    ("aten.baddbmm_", lambda: _bC.clone().baddbmm_(_bA, _bB)),
    ("aten.addmm_", lambda: _C.clone().addmm_(_A, _B)),
    ("aten._addmm_activation", lambda: torch._addmm_activation(_C, _A, _B)),
    ("aten._trilinear", lambda: F.bilinear(torch.randn(2, _k), torch.randn(2, _m), torch.randn(_n, _k, _m))),
    ("aten._cdist_forward", lambda: torch.cdist(_A, torch.randn(6, _k))),
])
def test_uncountable_matrix_operators_are_refused(op, fn):
    with pytest.raises(ValueError, match=re.escape(op)):
        count_flops(fn)


def test_inner_product_is_counted_exactly_or_refused():
    # torch.inner of two vectors: torch 2.4 decomposes it into a counted mm (2·k), torch 2.13 dispatches
    # aten.dot (no formula): either is fine, a silent 0 is not
    try:
        flops = count_flops(lambda: torch.inner(_v, _w))
    except ValueError as error:
        assert "aten.dot" in str(error)
    else:
        assert flops == 2 * _k


# what FlopCounterMode does count on torch 2.13, by decomposing into mm/bmm/baddbmm (measured): exact
@pytest.mark.parametrize("fn, flops", [
    (lambda: _A @ _B, 2 * _m * _k * _n),
    (lambda: torch.mm(_A, _B, out=torch.empty(_m, _n)), 2 * _m * _k * _n),
    (lambda: torch.addmm(_C, _A, _B), 2 * _m * _k * _n),
    (lambda: torch.baddbmm(_bC, _bA, _bB), 2 * 2 * _m * _k * _n),
    (lambda: _bA @ _B, 2 * 2 * _m * _k * _n),                    # batched @ matrix -> one mm
    (lambda: _v @ _bB, 2 * 2 * _k * _n),                         # vector @ batch -> bmm
    (lambda: torch.einsum("ij,jk->ik", _A, _B), 2 * _m * _k * _n),
    (lambda: torch.einsum("i,i->", _v, _w), 2 * _k),             # einsum's dot goes through bmm
    (lambda: torch.tensordot(_A, _B, dims=1), 2 * _m * _k * _n),
    (lambda: torch.linalg.multi_dot([_A, _B, _B.T]), 2 * _m * _k * _n + 2 * _m * _n * _k),
    (lambda: F.linear(_v, torch.randn(_n, _k)), 2 * _k * _n),    # 1-D input: unsqueezed to an mm
    (lambda: torch.outer(_u, _v), 0),                            # element-wise mul: 0 by the convention
])
def test_decomposed_matrix_operators_are_counted_exactly(fn, flops):
    assert count_flops(fn) == flops


def test_fused_transformer_fast_path_is_refused():
    # count_flops turns the fast path off; a function that turns it back on runs the fused
    # aten._transformer_encoder_layer_fwd, which the old substring regex did not recognise
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).eval()

    def fast(x):
        torch.backends.mha.set_fastpath_enabled(True)
        try:
            with torch.no_grad():
                return layer(x)
        finally:
            torch.backends.mha.set_fastpath_enabled(False)

    with pytest.raises(ValueError, match=r"aten\._transformer_encoder_layer_fwd.*fused kernel"):
        count_flops(fast, torch.randn(2, 7, 8))


@pytest.mark.parametrize("op", [
    "aten.mm", "aten.addmm_", "aten.baddbmm_", "aten.mv", "aten.addmv", "aten.dot", "aten.vdot", "aten.addr",
    "aten.linalg_multi_dot", "aten._transformer_encoder_layer_fwd", "aten._native_multi_head_attention",
    "aten.mkldnn_rnn_layer", "aten._cudnn_rnn", "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._thnn_fused_lstm_cell", "aten.convolution", "aten._trilinear", "aten._cdist_forward",
    "aten._int_mm", "mkldnn._linear_pointwise", "onednn.qlinear_pointwise",
])
def test_matrix_operator_names_are_recognised(op):
    assert _is_matrix_work(op)


@pytest.mark.parametrize("op", [
    "aten.mul", "aten.add_", "aten._softmax", "aten.native_layer_norm", "aten.lgamma", "aten.mvlgamma",
    "aten.digamma", "aten.cummax", "aten.hamming_window", "aten.upsample_bilinear2d", "aten.addcmul",
    "aten.addcdiv_", "aten._convert_indices_from_coo_to_csr", "aten.view", "aten.clone",
])
def test_element_wise_operator_names_are_not_matrix_work(op):
    assert not _is_matrix_work(op)


class _Recorder(TorchDispatchMode):
    """Every operator that reaches a Python dispatch mode, independently of FlopCounterMode."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func._overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


class _HookRecorder(_AuditedFlopCounter):
    """The audited counter, also recording every operator its private ``_count_flops`` hook receives."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = collections.Counter()

    def _count_flops(self, func_packet, out, args, kwargs):
        self.seen[str(func_packet)] += 1
        return super()._count_flops(func_packet, out, args, kwargs)


def _families():
    torch.manual_seed(0)
    seq = torch.randn(2, 7, 6)
    return {
        "rnn": (nn.RNN(6, 5, batch_first=True), (seq,)),
        "lstm": (nn.LSTM(6, 5, batch_first=True), (seq,)),
        "gru": (nn.GRU(6, 5, batch_first=True), (seq,)),
        "conv1d_stack": (nn.Sequential(nn.Conv1d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv1d(8, 8, 3, padding=1)),
                         (torch.randn(2, 6, 7),)),
        "multihead_attention": (nn.MultiheadAttention(8, 2, batch_first=True), (torch.randn(2, 7, 8),) * 3),
        "encoder_layer": (nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), (torch.randn(2, 7, 8),)),
    }


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru", "conv1d_stack", "multihead_attention", "encoder_layer"])
@pytest.mark.parametrize("mode", ["train", "eval_no_grad"])
def test_private_hook_sees_every_operator_of_each_family(family, mode):
    module, inputs = _families()[family]
    module.train(mode == "train")
    with torch.set_grad_enabled(mode == "train"):
        torch.manual_seed(1)
        recorder = _Recorder()
        with counting_context(), recorder:
            module(*inputs)
        torch.manual_seed(1)  # same dropout draws
        hook = _HookRecorder(display=False)
        with counting_context(), hook:
            module(*inputs)
    assert recorder.ops, "nothing reached the dispatch mode"
    assert hook.seen == recorder.ops  # each operator, as many times as it ran
    assert hook.get_total_flops() > 0
    assert not [op for op in hook.uncounted if _is_matrix_work(op)]  # every product was counted
