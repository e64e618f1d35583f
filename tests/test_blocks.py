"""The one attention, the one Transformer block, the KV cache and the recurrent factory."""

import pytest
import torch
from torch import nn

from utils.blocks import KVCache, MultiHeadAttention, TransformerBlock, recurrent_layer
from utils.gradients import forget_gate_bias
from utils.measure import reachability
from utils.validate import check_heads


def _copy_into_torch_layer(block: TransformerBlock, layer: nn.TransformerEncoderLayer) -> None:
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        layer.self_attn.out_proj.weight.copy_(block.attn.out.weight)
        layer.self_attn.out_proj.bias.copy_(block.attn.out.bias)
        layer.linear1.weight.copy_(block.ffn[0].weight)
        layer.linear1.bias.copy_(block.ffn[0].bias)
        layer.linear2.weight.copy_(block.ffn[2].weight)
        layer.linear2.bias.copy_(block.ffn[2].bias)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_block_equals_torch_encoder_layer_with_copied_weights(norm):
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 32, norm=norm, activation="relu").double().eval()
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm == "pre").double()
    _copy_into_torch_layer(block, layer)
    layer.train()  # dropout is 0; training mode keeps torch off its fused inference path
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    torch.testing.assert_close(block(x), layer(x))
    assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize("mask, radius", [("causal", None), ("local", 2)])
@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_cached_decoding_equals_the_whole_sequence(mask, radius, impl):
    torch.manual_seed(1)
    block = TransformerBlock(8, 2, 16, impl, mask=mask, radius=radius, causal=True).double().eval()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    whole = block(x)
    cache = KVCache(2, 2, 9, 4, dtype=torch.float64)
    pieces = [block(x[:, :4], cache, 0, 0)]
    cache.length = 4
    for t in range(4, 9):
        pieces.append(block(x[:, t:t + 1], cache, 0, t))
        cache.length = t + 1
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole)


def test_sliding_window_sees_exactly_the_window():
    layer = MultiHeadAttention(4, mask="local", radius=2, causal=True).double()
    reach = reachability(layer, 8, 4)
    for j in range(8):
        assert [i for i in range(8) if reach[j, i]] == list(range(max(0, j - 2), j + 1))


def test_build_mask_with_an_offset_matches_the_square_mask():
    for kind, kw in [("causal", {}), ("local", {"radius": 1}), ("local", {"radius": 1, "causal": True})]:
        layer = MultiHeadAttention(4, mask=kind, **kw)
        square = layer.build_mask(6)
        assert torch.equal(layer.build_mask(2, start=4, n_kv=6), square[4:6])
    assert MultiHeadAttention(4, mask="causal").build_mask(1, start=5, n_kv=6) is None  # one new query sees all


def test_start_without_a_cache_is_refused():
    with pytest.raises(ValueError, match=r"start=3 needs a KVCache"):
        MultiHeadAttention(4)(torch.zeros(1, 2, 4), start=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"d_model": 10, "heads": 4},
            r"d_model \(10\) must be divisible by heads \(4\): each head .* heads that divide it: \[1, 2, 5, 10\]",
        ),
        ({"d_model": 8, "heads": 0}, r"heads must be >= 1"),
        ({"d_model": 8, "heads": 2, "norm": "middle"}, r"norm must be one of"),
        ({"d_model": 8, "heads": 2, "activation": "tanh"}, r"activation must be one of"),
        ({"d_model": 8, "heads": 2, "d_ff": 0}, r"d_ff must be >= 1"),
    ],
)
def test_block_rejects_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerBlock(**kwargs)


def test_check_heads():
    assert check_heads(12, 3) == (12, 3)
    with pytest.raises(ValueError, match=r"d_model must be >= 1"):
        check_heads(0, 1)


@pytest.mark.parametrize("family, kind", [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_recurrent_layer(family, kind):
    layer = recurrent_layer(family, 6, 10, layers=2)
    assert isinstance(layer, kind) and layer.batch_first and layer.hidden_size == 10 and layer.num_layers == 2
    assert recurrent_layer(family, 6).hidden_size == 6


def test_recurrent_layer_forget_bias():
    lstm = recurrent_layer("lstm", 4, forget_bias=1.0)
    torch.testing.assert_close(forget_gate_bias(lstm), torch.ones(4))
    with pytest.raises(ValueError, match=r"forget_bias applies to the 'lstm' family only"):
        recurrent_layer("gru", 4, forget_bias=1.0)
    with pytest.raises(ValueError, match=r"family must be one of"):
        recurrent_layer("transformer", 4)
