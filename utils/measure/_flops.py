"""FLOPs of real modules, counted by FlopCounterMode with an audit that never silently returns 0.
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from utils import torch_support

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
    return (f"{op} is a fused kernel: run the module under utils.measure.counting_context() (count_flops does) "
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
