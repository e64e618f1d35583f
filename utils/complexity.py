"""One import point for every *closed-form cost* of the course (FLOPs, bytes, sequence lengths).

Each formula lives in the module of its concept; this module only re-exports them, so that
chapters can write ``from utils.complexity import attention_flops, attention_weights_bytes``.
"""

from utils.flops import conv1d_flops, rnn_flops, lstm_flops, gru_flops, attention_flops, projection_flops, ffn_flops, encoder_layer_flops  # noqa: F401
from utils.flops import recurrent_flops, multihead_attention_flops, conv_output_length, attention_ffn_crossover  # noqa: F401
from utils.roofline import arithmetic_intensity, attainable_flops_per_s, matmul_bytes, elementwise_bytes, naive_attention_stages  # noqa: F401
from utils.efficient import local_attention_flops, local_attention_pairs, local_attention_layers, local_attention_scores_numel  # noqa: F401
from utils.receptive import receptive_field, reach, layers_to_connect, dilated_layers_to_connect  # noqa: F401
from utils.memory import attention_weights_bytes, max_seq_len  # noqa: F401  (attention's n² memory and its inverse)
from utils.kvcache import kv_cache_bytes  # noqa: F401  (keys and values of every layer)
