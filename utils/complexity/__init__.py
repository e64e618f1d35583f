"""Closed forms: what a layer costs as a function of the sequence length ``n`` — FLOPs, bytes, parameters.

Nothing here runs a model or allocates a tensor; every formula is checked against a measurement of
:mod:`utils.measure` in the tests and in the chapters.

**FLOPs** (the convention of ``torch.utils.flop_counter.FlopCounterMode``): FLOPs = 2 × the
multiply-accumulates of the matrix products (every ``mm``/``addmm``/``bmm``/``baddbmm`` and convolution).
Biases, activations, gates, softmax, masking, LayerNorm and residual additions are not counted: they are
O(n·d) element-wise work. All counts are for one forward pass. Symbols: ``n`` queries, ``n_kv`` keys
(``n`` for self-attention), ``d_in``/``d_hidden``/``d_model`` widths, ``d_ff`` feed-forward width, ``k``
kernel size, ``B`` batch, ``g`` gate count (RNN 1, GRU 3, LSTM 4).

=======================================  ======================================================
function                                 FLOPs (``layers=1``, ``batch=B``)
=======================================  ======================================================
``projection_flops(n, d_in, d_out)``     ``2·B·n·d_in·d_out``  (one ``nn.Linear``)
``conv1d_flops(n, d_in, d_out, k)``      ``2·B·n_out·k·d_in·d_out`` (``n_out = n`` for "same")
``rnn_flops(n, d_in, h)``                ``2·B·n·h·(d_in + h)``  (``W_ih`` and ``W_hh``)
``gru_flops`` / ``lstm_flops``           ``3 ×`` / ``4 × rnn_flops``
``attention_flops(n, d)``                ``4·B·n·n_kv·d``  (``QKᵀ`` and ``A·V`` only, all heads)
``multihead_attention_flops(n, d)``      ``2·B·d²·(n + 2·n_kv) + 2·B·n·d² + attention_flops``
``ffn_flops(n, d, d_ff)``                ``4·B·n·d·d_ff``  (both linears)
``encoder_layer_flops(n, d, h, d_ff)``   ``8·B·n·d² + 4·B·n²·d + 4·B·n·d·d_ff``
``local_attention_flops(n, d, r)``       ``4·B·d·pairs`` (only the pairs a window of radius r keeps)
``decode_step_flops`` / ``generation_``  one decoding step / a whole generation, with or without KV cache
=======================================  ======================================================

**Bytes.** Shape arguments come in the order ``batch, heads, n, head_dim, layers`` and every byte count
takes ``bytes_per_element``, **2 by default** (FP16/BF16: what GPUs train and serve in, and the unit of the
figures the course checks); pass 4 for FP32, the CPU default. :func:`attention_weights_bytes` is the
``batch × heads × n × n`` weight tensor and :func:`~utils.complexity.max_seq_len` its exact inverse;
:func:`kv_cache_bytes`
the keys and values of every layer; :func:`recurrent_state_bytes` a recurrent decoder's state (no
``n``);
:func:`~utils.complexity.attention_plan_bytes` everything naive attention holds at once (what the memory guard
plans for).
``MIB``/``GIB`` are binary units, ``MB``/``GB`` decimal ones (they differ by 4.9 % and 7.4 %).

**Local attention**: pairs, scores and the layers a window needs to connect a distance.
**Parameters**: exact counts of ``nn.RNN``/``GRU``/``LSTM``, ``nn.Conv1d``, ``nn.Linear`` and an encoder layer.
**Roofline arithmetic**: intensity = FLOPs / bytes, the ridge point, attainable FLOP/s, and the FLOPs and
ideal bytes of attention's stages — naive, fused, and tiled (FlashAttention's Θ(n²d²/M) traffic).

Receptive fields and the layers a convolution stack needs are closed forms too; they live with their
concept in :mod:`utils.receptive`.
"""

from utils._moved import module_getattr as _module_getattr, publish as _publish
from utils.complexity._bytes import (
    GB,
    GIB,
    MB,
    MIB,
    attention_plan_bytes,
    attention_weights_bytes,
    bytes_per_element,
    format_bytes,
    kv_cache_bytes,
    max_seq_len,
    recurrent_state_bytes,
)
from utils.complexity._flash import (
    attention_backward_flops,
    flash_block_sizes,
    tiled_attention_crossover_sram_bytes,
)
from utils.complexity._flops import (
    GATES,
    attention_ffn_crossover,
    attention_flops,
    conv1d_flops,
    conv_output_length,
    decode_step_flops,
    encoder_layer_flops,
    ffn_flops,
    generation_flops,
    gru_flops,
    local_attention_flops,
    lstm_flops,
    multihead_attention_flops,
    projection_flops,
    recurrent_flops,
    rnn_flops,
)
from utils.complexity._local import (
    blocked_local_attention_bytes,
    default_block_size,
    local_attention_layers,
    local_attention_pairs,
    local_attention_scores_numel,
)
from utils.complexity._model import (
    BACKWARD_TO_FORWARD,
    context_for_undercount,
    flops_per_token,
    kaplan_forward_flops_per_token,
    non_embedding_parameters,
    six_nd_flops,
    six_nd_undercount,
    training_flops_per_token,
    transformer_stack_flops,
)
from utils.complexity._parameters import (
    conv1d_parameters,
    dense_vs_conv_parameters,
    encoder_layer_parameters,
    linear_parameters,
    recurrent_parameters,
)
from utils.complexity._roofline import (
    Stage,
    achieved_flops_per_s,
    arithmetic_intensity,
    attainable_flops_per_s,
    attention_stages_bytes,
    elementwise_bytes,
    fused_attention_stage,
    matmul_bytes,
    naive_attention_stages,
    ridge_intensity,
    tiled_attention_bytes,
)
from utils.complexity._serving import (
    compute_bound_batch,
    decode_intensity,
    decode_step_time_s,
    grouped_kv_cache_bytes,
    window_path_layers,
)
from utils.complexity._training import (
    ATTENTION_KINDS,
    OPTIMIZER_STATE_BYTES,
    TRAINING_OPTIMIZERS,
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

__all__ = [
    # FLOPs
    "GATES", "projection_flops", "conv_output_length", "conv1d_flops", "recurrent_flops", "rnn_flops", "gru_flops",
    "lstm_flops", "attention_flops", "multihead_attention_flops", "ffn_flops", "encoder_layer_flops",
    "attention_ffn_crossover", "local_attention_flops", "decode_step_flops", "generation_flops",
    # bytes and units
    "MB", "GB", "MIB", "GIB", "bytes_per_element", "format_bytes", "attention_weights_bytes", "max_seq_len",
    "attention_plan_bytes", "kv_cache_bytes", "recurrent_state_bytes",
    # local attention
    "default_block_size", "blocked_local_attention_bytes", "local_attention_scores_numel", "local_attention_pairs",
    "local_attention_layers",
    # parameters
    "recurrent_parameters", "linear_parameters", "conv1d_parameters", "encoder_layer_parameters",
    "dense_vs_conv_parameters",
    # roofline arithmetic
    "arithmetic_intensity", "achieved_flops_per_s", "ridge_intensity", "attainable_flops_per_s", "matmul_bytes",
    "elementwise_bytes", "Stage", "naive_attention_stages", "fused_attention_stage", "tiled_attention_bytes",
    "attention_stages_bytes",
    # FlashAttention: block sizes, the SRAM crossover, backward FLOPs with recomputation
    "flash_block_sizes", "tiled_attention_crossover_sram_bytes", "attention_backward_flops",
    # serving: the decode roofline, grouped-query attention, sliding windows
    "grouped_kv_cache_bytes", "decode_intensity", "compute_bound_batch", "decode_step_time_s", "window_path_layers",
    # training memory
    "OPTIMIZER_STATE_BYTES", "TRAINING_OPTIMIZERS", "ATTENTION_KINDS", "optimizer_state_bytes_per_parameter",
    "training_state_bytes", "training_state_bytes_per_parameter", "transformer_layer_activation_terms",
    "transformer_layer_activation_bytes", "korthikanti_activation_bytes", "checkpointed_activation_bytes",
    "best_checkpoint_segments", "transformer_training_memory",
    # a whole model, per token, and training (Kaplan et al.'s accounting, 6·N·D)
    "transformer_stack_flops", "flops_per_token", "non_embedding_parameters", "kaplan_forward_flops_per_token",
    "BACKWARD_TO_FORWARD", "training_flops_per_token", "six_nd_flops", "six_nd_undercount", "context_for_undercount",
]

__getattr__ = _module_getattr(__name__)

# The public path is the package: objects report it (in reprs, in the API page, to pickle), not the private file.
_publish(globals())
