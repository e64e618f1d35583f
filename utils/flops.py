"""FLOPs of the sequence layers: closed forms, and an exact counter that never silently returns 0.

Convention (the one of :class:`torch.utils.flop_counter.FlopCounterMode`): **FLOPs = 2 × the
multiply-accumulates (MACs) of the matrix products** — every ``mm``/``addmm``/``bmm``/``baddbmm`` and
convolution. Biases, activations, gates, softmax, masking, LayerNorm and residual additions are *not*
counted: they are O(n·d) element-wise work, negligible next to the O(n·d²) and O(n²·d) products. Divide
by 2 to get MACs. All counts are for one **forward** pass.

Symbols: ``n`` sequence length (queries), ``n_kv`` number of keys/values (``n`` for self-attention),
``d_in`` input width, ``d_hidden``/``d_out``/``d_model`` widths, ``d_ff`` feed-forward width, ``k``
kernel size, ``B`` batch, ``g`` gate count (RNN 1, GRU 3, LSTM 4).

=======================================  ======================================================
function                                 FLOPs (``layers=1``, ``batch=B``)
=======================================  ======================================================
``projection_flops(n, d_in, d_out)``     ``2·B·n·d_in·d_out``  (one ``nn.Linear``)
``conv1d_flops(n, d_in, d_out, k)``      ``2·B·n_out·k·d_in·d_out`` (``n_out = n`` for "same")
``rnn_flops(n, d_in, h)``                ``2·B·n·h·(d_in + h)``  (``W_ih`` and ``W_hh``)
``gru_flops(n, d_in, h)``                ``3 × rnn_flops``
``lstm_flops(n, d_in, h)``               ``4 × rnn_flops``
``attention_flops(n, d)``                ``4·B·n·n_kv·d``  (``QKᵀ`` and ``A·V`` only, all heads)
``multihead_attention_flops(n, d)``      ``2·B·d²·(n + 2·n_kv) + 2·B·n·d² + attention_flops``
``ffn_flops(n, d, d_ff)``                ``4·B·n·d·d_ff``  (both linears)
``encoder_layer_flops(n, d, h, d_ff)``   ``8·B·n·d² + 4·B·n²·d + 4·B·n·d·d_ff``
=======================================  ======================================================

Each closed form counts exactly what the PyTorch module of the same name executes, input projections
included where the module has them (``nn.RNN``/``nn.GRU``/``nn.LSTM`` multiply by ``W_ih`` *and*
``W_hh`` at every step; ``nn.MultiheadAttention`` has ``in_proj`` and ``out_proj``). The number of heads
never changes a count: ``h`` heads of width ``d/h`` do the same products as one head of width ``d``.

:func:`count_flops` is the measurement the formulas are checked against. It wraps ``FlopCounterMode``
and disarms the CPU traps that make it report 0 (oneDNN/cuDNN RNN kernels, the fused CPU SDPA kernel,
the inference fast path of ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer``), and it raises if
a matrix kernel still ran without being counted.
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings

import torch
from torch import nn

from utils import torch_support  # refuses a torch older than the floor (ImportError) before the imports below
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count  # noqa: E402

from utils.validate import check_choice, check_int, check_positive_int  # noqa: E402

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
"""Weight blocks per recurrent step: ``nn.RNN`` 1, ``nn.GRU`` 3 (reset, update, new), ``nn.LSTM`` 4."""


# --------------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------------

def projection_flops(n: int, d_in: int, d_out: int, batch: int = 1) -> int:
    """FLOPs of ``nn.Linear(d_in, d_out)`` applied to ``n`` positions: ``2·B·n·d_in·d_out``."""
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    return 2 * batch * n * check_positive_int("d_in", d_in) * check_positive_int("d_out", d_out)


def conv_output_length(n: int, kernel_size: int, padding="same", dilation: int = 1, stride: int = 1) -> int:
    """Output length of ``nn.Conv1d`` on ``n`` positions.

    ``padding``: ``"same"`` (the length is kept, as in ``utils.conv.ConvStack`` with centred or causal
    padding; needs ``stride=1``), ``"valid"`` (no padding) or an int ``p`` (``p`` zeros on *each* side,
    PyTorch's ``padding=p``).
    """
    n = check_positive_int("n", n)
    k = check_positive_int("kernel_size", kernel_size)
    dilation = check_positive_int("dilation", dilation)
    stride = check_positive_int("stride", stride)
    if isinstance(padding, str):
        check_choice("padding", padding, {"same", "valid"})
        if padding == "same":
            if stride != 1:
                raise ValueError(f"padding='same' keeps the length only with stride=1, got stride={stride}; "
                                 "give an integer padding for strided convolutions.")
            return n
        padding = 0
    p = check_int("padding", padding, minimum=0, hint="Use 'same', 'valid' or a padding >= 0.")
    span = dilation * (k - 1)
    n_out = (n + 2 * p - span - 1) // stride + 1
    if n_out < 1:
        raise ValueError(f"a kernel spanning {span + 1} positions does not fit in n={n} positions with "
                         f"padding={p}; use a longer sequence, a smaller kernel/dilation or padding='same'.")
    return n_out


def conv1d_flops(n: int, d_in: int, d_out: int, kernel_size: int, batch: int = 1, *, layers: int = 1,
                 padding="same", dilation: int = 1, stride: int = 1, groups: int = 1) -> int:
    """FLOPs of a stack of ``layers`` ``nn.Conv1d`` (``d_in → d_out``, then ``d_out → d_out``).

    Per layer ``2·B·n_out·k·(c_in/groups)·c_out``: each of the ``n_out`` outputs is a dot product of
    ``k·c_in/groups`` inputs with each of ``c_out`` filters. With ``padding="same"`` (the default, what
    ``utils.conv.ConvStack`` does) ``n_out = n`` and one layer costs ``2·B·n·k·d_in·d_out``, i.e. the
    ``O(k·n·d²)`` of Vaswani et al.'s Table 1. See :func:`conv_output_length` for the other paddings.
    """
    d_in, d_out = check_positive_int("d_in", d_in), check_positive_int("d_out", d_out)
    k, batch = check_positive_int("kernel_size", kernel_size), check_positive_int("batch", batch)
    layers, groups = check_positive_int("layers", layers), check_positive_int("groups", groups)
    if d_in % groups or d_out % groups:
        raise ValueError(f"groups={groups} must divide both d_in={d_in} and d_out={d_out}; "
                         "use groups=1 (a dense convolution) or a common divisor.")
    total, length, c_in = 0, n, d_in
    for _ in range(layers):
        length = conv_output_length(length, k, padding, dilation, stride)
        total += 2 * batch * length * k * (c_in // groups) * d_out
        c_in = d_out
    return total


def recurrent_flops(family: str, n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
                    bidirectional: bool = False) -> int:
    """FLOPs of ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` (``family`` = ``"rnn"``, ``"gru"``, ``"lstm"``).

    Every step multiplies the input by ``W_ih`` (``g·h × d_in``) and the previous state by ``W_hh``
    (``g·h × h``), so one layer costs ``2·B·n·g·h·(d_in + h)``; layers after the first read the ``h``
    (or ``2h`` if bidirectional) outputs below them; a bidirectional layer doubles the work.
    """
    g = GATES[check_choice("family", family, GATES)]
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    d_in, h = check_positive_int("d_in", d_in), check_positive_int("d_hidden", d_hidden)
    layers = check_positive_int("layers", layers)
    directions = 2 if bidirectional else 1
    total, width_in = 0, d_in
    for _ in range(layers):
        total += directions * 2 * batch * n * g * h * (width_in + h)
        width_in = directions * h
    return total


def rnn_flops(n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
              bidirectional: bool = False) -> int:
    """FLOPs of ``nn.RNN(d_in, d_hidden)``: ``2·B·n·h·(d_in + h)`` per layer (see :func:`recurrent_flops`)."""
    return recurrent_flops("rnn", n, d_in, d_hidden, batch, layers, bidirectional)


def gru_flops(n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
              bidirectional: bool = False) -> int:
    """FLOPs of ``nn.GRU(d_in, d_hidden)``: three weight blocks, ``3 ×`` :func:`rnn_flops`."""
    return recurrent_flops("gru", n, d_in, d_hidden, batch, layers, bidirectional)


def lstm_flops(n: int, d_in: int, d_hidden: int, batch: int = 1, layers: int = 1,
               bidirectional: bool = False) -> int:
    """FLOPs of ``nn.LSTM(d_in, d_hidden)``: four weight blocks, ``4 ×`` :func:`rnn_flops`."""
    return recurrent_flops("lstm", n, d_in, d_hidden, batch, layers, bidirectional)


def _check_heads(d_model: int, heads: int) -> int:
    heads = check_positive_int("heads", heads)
    if d_model % heads:
        raise ValueError(f"heads={heads} must divide d_model={d_model} (each head has d_model/heads "
                         "channels); pick a divisor of d_model.")
    return heads


def attention_flops(n: int, d_model: int, batch: int = 1, *, n_kv: int | None = None, heads: int = 1,
                    causal: bool = False) -> int:
    """FLOPs of the attention core ``softmax(QKᵀ/√d_k)·V`` over all heads: ``QKᵀ`` and ``A·V`` only.

    ``n`` queries attend to ``n_kv`` keys (default ``n``); both products cost ``2·B·n·n_kv·d_model``,
    so the total is ``4·B·n·n_kv·d_model`` whatever ``heads`` is (``heads`` is only checked to divide
    ``d_model``). The Q/K/V/output projections are *not* included: see :func:`multihead_attention_flops`.

    ``causal=False`` (default) counts the full ``n × n_kv`` rectangle. That is what a dense kernel
    executes **and what FlopCounterMode reports even for causal attention**: a causal mask zeroes
    scores, it does not skip them. ``causal=True`` instead counts only the pairs a query may see (query
    ``j`` sees the first ``n_kv - n + j + 1`` keys), the useful work a mask-skipping kernel could get
    down to: ``4·B·d·(n·(n_kv - n) + n(n+1)/2)``, about half of the square for self-attention.
    """
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    d = check_positive_int("d_model", d_model)
    _check_heads(d, heads)
    n_kv = n if n_kv is None else check_positive_int("n_kv", n_kv)
    if not causal:
        return 4 * batch * n * n_kv * d
    if n_kv < n:
        raise ValueError(f"causal attention needs n_kv >= n (the queries are the last n of the n_kv "
                         f"positions), got n={n}, n_kv={n_kv}.")
    pairs = n * (n_kv - n) + n * (n + 1) // 2
    return 4 * batch * pairs * d


def multihead_attention_flops(n: int, d_model: int, batch: int = 1, *, n_kv: int | None = None,
                              heads: int = 1, causal: bool = False) -> int:
    """FLOPs of ``nn.MultiheadAttention(d_model, heads)``: projections + :func:`attention_flops`.

    ``in_proj`` maps the ``n`` queries and the ``n_kv`` keys and values (``2·B·d²·(n + 2·n_kv)``),
    ``out_proj`` maps the ``n`` outputs (``2·B·n·d²``); for self-attention that is ``8·B·n·d²``.
    """
    n, d = check_positive_int("n", n), check_positive_int("d_model", d_model)
    n_kv_ = n if n_kv is None else check_positive_int("n_kv", n_kv)
    core = attention_flops(n, d, batch, n_kv=n_kv, heads=heads, causal=causal)
    return 2 * batch * d * d * (n + 2 * n_kv_) + 2 * batch * n * d * d + core


def ffn_flops(n: int, d_model: int, d_ff: int, batch: int = 1) -> int:
    """FLOPs of the position-wise feed-forward block ``Linear(d, d_ff) → act → Linear(d_ff, d)``.

    Two products of ``2·B·n·d·d_ff`` each: ``4·B·n·d·d_ff`` in all.
    """
    n, batch = check_positive_int("n", n), check_positive_int("batch", batch)
    return 4 * batch * n * check_positive_int("d_model", d_model) * check_positive_int("d_ff", d_ff)


def encoder_layer_flops(n: int, d_model: int, heads: int, d_ff: int, batch: int = 1) -> int:
    """FLOPs of ``nn.TransformerEncoderLayer(d_model, heads, d_ff)`` on ``n`` positions.

    ``8·B·n·d²`` (Q, K, V and output projections) ``+ 4·B·n²·d`` (``QKᵀ`` and ``A·V``)
    ``+ 4·B·n·d·d_ff`` (feed-forward). A causal ``src_mask`` does not change it (see
    :func:`attention_flops`).
    """
    d = check_positive_int("d_model", d_model)
    _check_heads(d, heads)
    return multihead_attention_flops(n, d, batch, heads=heads) + ffn_flops(n, d, d_ff, batch)


def attention_ffn_crossover(d_model: int, d_ff: int, *, include_projections: bool = False) -> int:
    """Smallest ``n`` at which attention costs *strictly more* FLOPs than the feed-forward block.

    Attention core vs FFN: ``4n²d > 4n·d·d_ff  ⇔  n > d_ff``, so the answer is ``d_ff + 1`` (at
    ``n = d_ff`` they tie). With the four projections counted on the attention side:
    ``4n²d + 8n·d² > 4n·d·d_ff  ⇔  n > d_ff − 2d``, so ``max(1, d_ff − 2d + 1)``. Neither depends on the
    batch or the number of heads.
    """
    d, f = check_positive_int("d_model", d_model), check_positive_int("d_ff", d_ff)
    threshold = f - 2 * d if include_projections else f
    return max(1, threshold + 1)


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------

# Operators that do matrix work. An operator FlopCounterMode has no formula for (it lands in the audited
# ``uncounted`` set) is matrix work if one of the ``_``-separated words of its name is one of these.
# Matching whole words, not substrings, keeps ``lgamma``, ``cummax``, ``hamming_window`` (all contain
# "mm") and ``upsample_bilinear2d`` out. Measured on torch 2.13 under counting_context: FlopCounterMode
# counts ``mm``/``addmm``/``bmm``/``baddbmm``/``convolution`` and whatever decomposes into them (``@``
# of 2-D and batched operands, ``einsum``, ``tensordot``, ``linalg.multi_dot``, ``F.linear`` of a 1-D
# input, the MATH SDPA), but has **no** formula for ``mv``/``addmv`` (``W @ h`` with a 1-D ``h``),
# ``dot``/``vdot`` (``u @ v`` of two vectors), ``addr``, ``addbmm``, the in-place ``addmm_``/``addmv_``/
# ``baddbmm_``/``addbmm_``/``addr_``, ``_addmm_activation``, ``_trilinear`` (``F.bilinear``),
# ``_cdist_forward``, and the fused kernels ``mkldnn_rnn_layer`` (CPU LSTM), ``_cudnn_rnn``,
# ``_scaled_dot_product_flash_attention_for_cpu``, ``_native_multi_head_attention`` and
# ``_transformer_encoder_layer_fwd`` (the inference fast path). ``outer``/``ger``/``kron``/``vecdot``
# decompose into element-wise ``mul`` (0 FLOPs by the convention, like any element-wise work).
_MATRIX_WORD = re.compile(
    r"[a-z]*mm|(?:add)?mv|gemv|[a-z]*dot|addr|ger"      # mm addmm bmm baddbmm _int_mm gemm mv dot vdot addr
    r"|q?conv(?:\d+d)?|convolution|[a-z]*matmul|einsum|[a-z]*linear|cdist|kron"
    r"|rnn|lstm|gru|attention|attn|transformer")


def _is_matrix_work(op: str) -> bool:
    """True if the operator ``op`` (``"aten.mv"``, ``"aten._transformer_encoder_layer_fwd"``) multiplies matrices."""
    name = str(op).rsplit(".", 1)[-1]
    return any(_MATRIX_WORD.fullmatch(word) for word in name.strip("_").split("_"))


class UncountedFlopsError(ValueError, RuntimeError):
    """A matrix product ran in an operator FlopCounterMode has no formula for: the count would be too low.

    A ``ValueError`` (the function or module given to :func:`count_flops` must be written with
    countable operators) and, for older callers, a ``RuntimeError``.
    """


def _rewrite_hint(op: str) -> str:
    name = str(op).rsplit(".", 1)[-1]
    word = name.strip("_")
    if word in ("mv", "addmv"):
        return (f"{op} is a matrix-vector product (W @ h with a 1-D h): make h a column, W @ h.unsqueeze(-1), "
                "or give it a batch dimension, h of shape (batch, d) and h @ W.T")
    if word in ("dot", "vdot"):
        return f"{op} is a vector-vector product (u @ v of two 1-D tensors): write u.unsqueeze(0) @ v.unsqueeze(-1)"
    if word in ("addr", "ger"):
        return f"{op} is an outer-product update: write c + u.unsqueeze(-1) @ v.unsqueeze(0)"
    if name.endswith("_") and not name.startswith("_"):
        return (f"{op} is in-place: use the out-of-place form (c = c + a @ b, torch.addmm(c, a, b), "
                "torch.baddbmm(c, a, b))")
    if word in ("addbmm",):
        return f"{op} sums batched products: write c + (a @ b).sum(0)"
    return (f"{op} is a fused kernel: run the module under utils.flops.counting_context() (count_flops does) "
            "so that it falls back to mm/bmm, or write the product with @")


def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode formula (called with shapes) for the fused CPU attention kernel: QKᵀ and A·V."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


class _AuditedFlopCounter(FlopCounterMode):
    """``FlopCounterMode`` that also records the operators it had no formula for."""

    def __init__(self, **kwargs):
        # The fused CPU attention kernel (reached when a caller forces the flash backend) does the same
        # two products as the CUDA kernels FlopCounterMode knows: count it with their formula.
        cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
        mapping = {cpu_flash: _sdpa_flop} if cpu_flash is not None else {}
        super().__init__(custom_mapping=mapping, **kwargs)
        self.uncounted: set[str] = set()

    def _count_flops(self, func_packet, out, args, kwargs):  # called once per executed aten op
        if func_packet not in self.flop_registry:
            self.uncounted.add(str(func_packet))
        return super()._count_flops(func_packet, out, args, kwargs)


def _to_meta(obj):
    if isinstance(obj, torch.Tensor):
        return obj.to("meta")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_meta(o) for o in obj)
    if isinstance(obj, dict):
        return {key: _to_meta(value) for key, value in obj.items()}
    return obj


def _has_weight_matrices(module: nn.Module) -> bool:
    """True if the module holds a weight of rank >= 2 outside an embedding table (i.e. it multiplies)."""
    for sub in module.modules():
        if isinstance(sub, (nn.Embedding, nn.EmbeddingBag)):
            continue
        if any(p.dim() >= 2 for p in sub.parameters(recurse=False)):
            return True
    return False


@contextlib.contextmanager
def counting_context():
    """Settings under which every matrix product of the course's modules reaches FlopCounterMode.

    * oneDNN and cuDNN off: ``nn.LSTM`` (and cuDNN RNNs) otherwise run one fused kernel with no formula;
    * SDPA restricted to the MATH backend: it runs ``QKᵀ`` and ``A·V`` as two counted ``bmm`` calls (the CPU
      flash kernel has no formula);
    * the ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` inference fast path off.

    Every setting is restored on exit. The numbers computed are unchanged (up to rounding).
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with warnings.catch_warnings():
            # torch.backends.mkldnn.flags() warns about TF32 on builds without Intel GPU support.
            warnings.filterwarnings("ignore", message=".*TF32.*")
            with torch.backends.mkldnn.flags(enabled=False), torch.backends.cudnn.flags(enabled=False), \
                    sdpa_kernel(SDPBackend.MATH):
                yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _run_counted(module_or_fn, inputs, meta: bool) -> _AuditedFlopCounter:
    if not callable(module_or_fn):
        raise ValueError(f"module_or_fn must be an nn.Module or a function, got {type(module_or_fn).__name__}.")
    fn = module_or_fn
    if meta:
        if isinstance(module_or_fn, nn.Module):
            fn = copy.deepcopy(module_or_fn).to("meta")
        inputs = _to_meta(inputs)
    # the audit below relies on the private FlopCounterMode._count_flops hook: check once that it works
    torch_support.ensure_flop_audit(_AuditedFlopCounter, counting_context)
    counter = _AuditedFlopCounter(display=False)
    with counting_context(), counter:
        fn(*inputs)
    suspicious = sorted(op for op in counter.uncounted if _is_matrix_work(op))
    if suspicious:
        hints = "; ".join(_rewrite_hint(op) for op in suspicious)
        raise UncountedFlopsError(
            f"FlopCounterMode has no formula for {suspicious}, which multiply matrices, so the count would "
            f"be too low (it counts only mm/addmm/bmm/baddbmm/convolution and what decomposes into them). "
            f"Rewrite the product and count again: {hints}.")
    total = counter.get_total_flops()
    if total == 0 and isinstance(module_or_fn, nn.Module) and _has_weight_matrices(module_or_fn):
        raise RuntimeError(
            f"FlopCounterMode counted 0 FLOPs for a {type(module_or_fn).__name__} that holds weight "
            "matrices: its products ran in a kernel that is not counted. Count on the meta device "
            "(meta=True) or report this module to the course authors.")
    return counter


def count_flops(module_or_fn, *inputs, meta: bool = False) -> int:
    """FLOPs (2 × MACs of the matrix products) of one call ``module_or_fn(*inputs)``, measured.

    Built on ``torch.utils.flop_counter.FlopCounterMode`` and run under :func:`counting_context`, so
    that the kernels FlopCounterMode cannot see (CPU ``nn.LSTM`` via oneDNN, the CPU flash kernel of
    ``F.scaled_dot_product_attention``, the eval/no-grad fast path of ``nn.MultiheadAttention`` and
    ``nn.TransformerEncoderLayer``) are replaced by counted ``mm``/``bmm`` kernels. Raises instead of
    returning a wrong count: :class:`UncountedFlopsError` (a ``ValueError``) if a matrix product ran in
    an operator FlopCounterMode cannot count — e.g. ``W @ h`` with a 1-D ``h`` (``aten.mv``), ``u @ v``
    of two vectors (``aten.dot``), an in-place ``addmm_`` — whether ``module_or_fn`` is a module or a
    plain function, and ``RuntimeError`` if a module with weight matrices counted 0.

    Causal attention is counted as full (the masked scores are computed, then discarded), and
    only a forward pass is counted unless ``module_or_fn`` itself calls ``backward()``.

    ``meta=True`` runs on the ``meta`` device: the module (deep-copied) and the tensor inputs are moved
    there, so shapes propagate and FLOPs are counted **without any arithmetic or memory** — use it for
    long sequences. A plain function must then create its own tensors on ``inputs``' device.
    """
    return _run_counted(module_or_fn, inputs, meta).get_total_flops()


def count_flops_by_module(module_or_fn, *inputs, meta: bool = False) -> dict[str, dict[str, int]]:
    """Like :func:`count_flops`, broken down by sub-module and operator.

    Returns ``{module_path: {operator: flops}}`` as FlopCounterMode records it, e.g.
    ``{"Global": {...}, "TransformerEncoderLayer.self_attn": {"aten.addmm": …, "aten.bmm": …}, …}``.
    Inside ``self_attn`` the ``bmm`` entries are the attention core (``QKᵀ`` and ``A·V``) and the
    ``addmm``/``mm`` entries the projections.
    """
    counter = _run_counted(module_or_fn, inputs, meta)
    return {module: {str(op): int(v) for op, v in ops.items()} for module, ops in counter.get_flop_counts().items()}
