"""Measurements: what a real module costs and what it can see, on the device the notebook runs on.

Every helper here runs code and reads a counter — autograd, ``FlopCounterMode``, the allocator, the
clock — and every one that allocates asks the memory guard first. Each is the measurement a closed
form of :mod:`utils.complexity` (or a graph of :mod:`utils.graphs`) is checked against.

**Dependency structure, by autograd.** :func:`reachability` (which outputs depend on which inputs: the
measured twin of :func:`utils.graphs.reachability_matrix`); :func:`~utils.measure.gradient_norms_vs_distance` and
:func:`~utils.measure.lstm_cell_gradient_norms` (Jacobian norms vs distance, truncated BPTT with ``window=``);
:func:`decay_rate_per_step` (their per-step factor); :func:`~utils.measure.input_gradient_profile` and
:func:`~utils.measure.profile_width` (the *effective* receptive field).

**FLOPs.** :func:`count_flops` and :func:`count_flops_by_module` wrap ``FlopCounterMode``, disarm the CPU
paths it cannot see (oneDNN RNN kernels, the fused SDPA kernel, the Transformer fast path) and raise
:class:`UncountedFlopsError` when a matrix kernel ran without being counted. :func:`count_parameters` is
``sum(p.numel())``.

**Memory.** :func:`peak_memory` (peak bytes above the start: the CUDA allocator, or every CPU allocation
reported to the profiler), :func:`~utils.measure.attention_peak_memory`, :func:`training_peak_memory`,
:func:`saved_activation_bytes` (what autograd keeps for the backward pass), :func:`steady_training_memory`
(a training step once the optimizer state exists),
:func:`parameter_bytes`; :func:`assert_allocation` checks a measurement against its formula; on a GPU
:func:`cuda_oom_edge` finds the out-of-memory edge by trying.

**The guard.** :func:`check_fits` refuses, with a ``ValueError`` that says what to change, a planned
allocation above a fraction of the memory free now (:func:`free_memory_bytes`); :func:`guard_attention`
is its attention-shaped form; :func:`sweep_that_fits` and :func:`largest_that_fits` size every sweep to
*this* device.

**Time.** :func:`time_call` (warm-up, synchronisation, ``torch.utils.benchmark``'s adaptive repeats, a
thread count set and restored), :func:`time_best_s`, :func:`time_interleaved_s` (calls compared with
each other), :func:`time_forward_vs_n`, and the two roofs of the
device: :func:`matmul_peak_flops_per_s`, :func:`copy_bandwidth_bytes_per_s`, :func:`measure_roofline`.
"""

from utils._moved import module_getattr as _module_getattr, publish as _publish
from utils.measure._autograd import (
    NORMS,
    count_parameters,
    decay_rate_per_step,
    gradient_norms_vs_distance,
    input_gradient_profile,
    lstm_cell_gradient_norms,
    profile_width,
    reachability,
)
from utils.measure._flops import UncountedFlopsError, count_flops, count_flops_by_module, counting_context
from utils.measure._guard import (
    FALLBACK_FREE_CPU_BYTES,
    GUARD_MIN_BYTES,
    check_fits,
    free_memory_bytes,
    guard_attention,
    guard_large,
    largest_that_fits,
    sweep_that_fits,
)
from utils.measure._memory import (
    ALLOCATION_FAILURE_MESSAGES,
    ALLOCATION_MARGIN,
    ALLOCATION_SLACK_BYTES,
    ATTENTION_IMPLS,
    assert_allocation,
    attention_inputs,
    attention_peak_memory,
    cuda_oom_edge,
    fits_by_trying,
    is_allocation_failure,
    largest_passing,
    parameter_bytes,
    peak_memory,
    release_memory,
    saved_activation_bytes,
    steady_training_memory,
    training_peak_memory,
)
from utils.measure._roofline import Roofline, copy_bandwidth_bytes_per_s, matmul_peak_flops_per_s, measure_roofline
from utils.measure._timing import (
    Timing,
    synchronize,
    time_attention_stages,
    time_best_s,
    time_call,
    time_forward_vs_n,
    time_interleaved_s,
)

__all__ = [
    # autograd
    "reachability", "NORMS", "gradient_norms_vs_distance", "lstm_cell_gradient_norms", "decay_rate_per_step",
    "input_gradient_profile", "profile_width",
    # FLOPs and parameters
    "count_flops", "count_flops_by_module", "counting_context", "UncountedFlopsError", "count_parameters",
    # memory
    "peak_memory", "assert_allocation", "ALLOCATION_MARGIN", "ALLOCATION_SLACK_BYTES",
    "ATTENTION_IMPLS", "attention_inputs", "attention_peak_memory", "parameter_bytes",
    "training_peak_memory", "saved_activation_bytes", "steady_training_memory",
    "ALLOCATION_FAILURE_MESSAGES", "is_allocation_failure", "release_memory",
    "fits_by_trying", "largest_passing", "cuda_oom_edge",
    # the guard
    "FALLBACK_FREE_CPU_BYTES", "GUARD_MIN_BYTES", "free_memory_bytes", "check_fits", "guard_attention", "guard_large",
    "sweep_that_fits", "largest_that_fits",
    # time and the roofs
    "Timing", "synchronize", "time_call", "time_best_s", "time_interleaved_s", "time_forward_vs_n",
    "time_attention_stages",
    "matmul_peak_flops_per_s", "copy_bandwidth_bytes_per_s", "Roofline", "measure_roofline",
]

__getattr__ = _module_getattr(__name__)

# The public path is the package: objects report it (in reprs, in the API page, to pickle), not the private file.
_publish(globals())
