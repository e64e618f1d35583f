"""Import paths of version 0.1 that moved in 0.2: each still works for one release, with a warning.

Version 0.2 gave every public name one home (see the map in :mod:`utils`): closed forms in
:mod:`utils.complexity`, measurements in :mod:`utils.measure`, building blocks in :mod:`utils.blocks`.
A notebook written for 0.1 (``from utils.memory import peak_memory``) keeps running: the old path
forwards to the new one and emits a ``DeprecationWarning`` that names it. The old paths go in 0.3.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

REMOVED_IN = "0.3"

_C, _M = "utils.complexity", "utils.measure"

#: old module → {old name: "new.module" or "new.module:new_name"}.
MOVED: dict[str, dict[str, str]] = {
    "utils.flops": {
        **dict.fromkeys(["GATES", "projection_flops", "conv_output_length", "conv1d_flops", "recurrent_flops",
                         "rnn_flops", "gru_flops", "lstm_flops", "attention_flops", "multihead_attention_flops",
                         "ffn_flops", "encoder_layer_flops", "attention_ffn_crossover"], _C),
        **dict.fromkeys(["UncountedFlopsError", "counting_context", "count_flops", "count_flops_by_module"], _M),
    },
    "utils.memory": {
        **dict.fromkeys(["MB", "GB", "MIB", "GIB", "attention_weights_bytes", "max_seq_len", "bytes_per_element",
                         "format_bytes", "attention_plan_bytes"], _C),
        **dict.fromkeys(["FALLBACK_FREE_CPU_BYTES", "free_memory_bytes", "check_fits", "guard_attention",
                         "GUARD_MIN_BYTES", "guard_large", "sweep_that_fits", "largest_that_fits", "peak_memory",
                         "ATTENTION_IMPLS", "attention_inputs", "attention_peak_memory", "parameter_bytes",
                         "training_peak_memory", "ALLOCATION_FAILURE_MESSAGES", "is_allocation_failure",
                         "release_memory", "fits_by_trying", "largest_passing", "cuda_oom_edge"], _M),
        "TransformerBlock": "utils._moved:_memory_transformer_block",
    },
    "utils.kvcache": {
        **dict.fromkeys(["kv_cache_bytes", "recurrent_state_bytes", "decode_step_flops", "generation_flops"], _C),
        **dict.fromkeys(["TinyDecoder", "generate", "decode_step", "decode_step_bytes"], "utils.models"),
        "KVCache": "utils.blocks",
        "CausalSelfAttention": "utils._moved:_causal_self_attention",
        "DecoderBlock": "utils._moved:_decoder_block",
    },
    "utils.roofline": {
        **dict.fromkeys(["arithmetic_intensity", "achieved_flops_per_s", "ridge_intensity", "attainable_flops_per_s",
                         "matmul_bytes", "elementwise_bytes", "Stage", "naive_attention_stages",
                         "fused_attention_stage", "tiled_attention_bytes", "attention_stages_bytes"], _C),
        **dict.fromkeys(["Roofline", "measure_roofline", "time_attention_stages"], _M),
        "time_best": f"{_M}:time_best_s",
        "matmul_peak_flops": f"{_M}:matmul_peak_flops_per_s",
        "copy_bandwidth": f"{_M}:copy_bandwidth_bytes_per_s",
    },
    "utils.parameters": {
        **dict.fromkeys(["GATES", "recurrent_parameters", "linear_parameters", "conv1d_parameters",
                         "encoder_layer_parameters", "dense_vs_conv_parameters"], _C),
        "count_parameters": _M,
    },
    "utils.timing": dict.fromkeys(["Timing", "synchronize", "time_call", "time_forward_vs_n"], _M),
    "utils.reachability": {"reachability": _M},
    # modules that stay, with some names moved out
    "utils.gradients": dict.fromkeys(["NORMS", "gradient_norms_vs_distance", "lstm_cell_gradient_norms",
                                      "decay_rate_per_step"], _M),
    "utils.receptive": dict.fromkeys(["input_gradient_profile", "profile_width"], _M),
    "utils.efficient": dict.fromkeys(["default_block_size", "blocked_local_attention_bytes", "local_attention_flops",
                                      "local_attention_scores_numel", "local_attention_pairs",
                                      "local_attention_layers"], _C),
    "utils.attention": {"SelfAttention": "utils.blocks:MultiHeadAttention"},
    "utils.models": {"RECURRENT": "utils.blocks", "count_parameters": _M},
    "utils.sequential": {"RECURRENT": "utils.blocks"},
    "utils.complexity": dict.fromkeys(["receptive_field", "reach", "layers_to_connect", "dilated_layers_to_connect"],
                                      "utils.receptive"),
    "utils.measure": {"matmul_peak_flops": f"{_M}:matmul_peak_flops_per_s",
                      "copy_bandwidth": f"{_M}:copy_bandwidth_bytes_per_s"},
}

#: Modules of 0.1 that no longer exist as files: :func:`install` puts a forwarding module in their place.
REMOVED_MODULES = ("utils.flops", "utils.memory", "utils.kvcache", "utils.roofline", "utils.parameters",
                   "utils.timing", "utils.reachability")


def _resolve(old_module: str, name: str):
    target = MOVED[old_module][name]
    module, _, new_name = target.partition(":")
    new_name = new_name or name
    where = f"{module}.{new_name}" if not module.startswith("utils._moved") else _LEGACY_SPELLING[new_name]
    warnings.warn(f"{old_module}.{name} moved to {where}; the old path stops working in version {REMOVED_IN}.",
                  DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(module), new_name)


def module_getattr(old_module: str):
    """A module-level ``__getattr__`` for a module that stays but had some names moved out."""

    def __getattr__(name: str):
        if name in MOVED.get(old_module, {}):
            return _resolve(old_module, name)
        raise AttributeError(f"module {old_module!r} has no attribute {name!r}")

    return __getattr__


class _Forwarding(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in MOVED[self.__name__]:
            return _resolve(self.__name__, name)
        raise AttributeError(f"module {self.__name__!r} (a 0.1 path kept for one release) has no attribute {name!r}")

    def __dir__(self):
        return sorted(MOVED[self.__name__])


def publish(namespace: dict) -> None:
    """Give every object in ``namespace["__all__"]`` defined in a private submodule (``utils.measure._flops``)
    its package as ``__module__``: reprs, the API page and pickle then show the one public path."""
    package = namespace["__name__"]
    for name in namespace["__all__"]:
        obj = namespace[name]
        if callable(obj) and getattr(obj, "__module__", "").startswith(package + "._"):
            obj.__module__ = package


def install() -> None:
    """Register the forwarding modules of :data:`REMOVED_MODULES` (called once by ``import utils``)."""
    package = sys.modules["utils"]
    for path in REMOVED_MODULES:
        if path not in sys.modules:
            module = _Forwarding(path, f"Deprecated: version 0.1's {path}; see utils._moved.")
            module.__file__ = __file__
            sys.modules[path] = module
            setattr(package, path.rsplit(".", 1)[1], module)


# The three classes of 0.1 whose defaults differ from the one block that replaced them: a factory each,
# so that an old call builds the same layer as before.
_LEGACY_SPELLING = {
    "_memory_transformer_block": "utils.blocks.TransformerBlock (impl='naive' was the old default)",
    "_causal_self_attention": "utils.blocks.MultiHeadAttention(d_model, heads, mask='causal', impl='naive')",
    "_decoder_block": "utils.blocks.TransformerBlock(d_model, heads, d_ff, impl='naive', mask='causal')",
}


def _memory_transformer_block(d_model: int, heads: int, d_ff: int, impl: str = "naive"):
    from utils.blocks import TransformerBlock

    return TransformerBlock(d_model, heads, d_ff, impl)


def _causal_self_attention(d_model: int, heads: int):
    from utils.blocks import MultiHeadAttention

    return MultiHeadAttention(d_model, heads, mask="causal", impl="naive")


def _decoder_block(d_model: int, heads: int, d_ff: int):
    from utils.blocks import TransformerBlock

    return TransformerBlock(d_model, heads, d_ff, impl="naive", mask="causal")
