"""Which PyTorch this package needs, and self-checks of the private PyTorch internals it relies on.

The floor in ``pyproject.toml`` (``torch>=2.4``) was read off the released wheels, not guessed: each
API below was looked up in the Python sources and the compiled extension (``torch/_C`` bindings) of
the ``torch`` wheels 2.0.0, 2.1.0, …, 2.12.0 published on PyPI. "2.0" means "present in 2.0.0, the
oldest release checked". The course is tested on torch 2.13.0; Colab brings whatever it has preinstalled.

::

    API used by utils/                                              first  notes
    --------------------------------------------------------------  -----  --------------------------------------
    FlopCounterMode(display=, custom_mapping=)                      2.1    new module torch.utils.flop_counter
    custom_mapping formulas called with shapes                      2.2    shape_wrapper; 2.1 passed tensors
    sdpa_flop_count(query_shape, key_shape, value_shape)            2.1
    FlopCounterMode.flop_registry (instance attribute)              2.2    2.1 called it flop_mapping
    private hook FlopCounterMode._count_flops(packet, out, ...)     2.4    ModuleTracker rewrite, PR #125352;
                                                                           2.6+ calls it from _FlopCounterMode
    torch.nn.attention.sdpa_kernel, SDPBackend                      2.3    2.2 has no torch.nn.attention
    SDPBackend.CUDNN_ATTENTION                                      2.3    sdpa_kernel honours it from 2.4
    torch.backends.mha.get/set_fastpath_enabled                     2.3    PR #112212
    aten._scaled_dot_product_flash_attention_for_cpu                2.3    optional, looked up with getattr
    autograd.profiler.profile(profile_memory=True)                  2.0
      .kineto_results.events()                                      2.0
    _KinetoEvent.nbytes(), .device_type()                           2.0    used by 2.0's own profiler.py
    _KinetoEvent.start_ns()                                         2.4    2.0-2.3 only have start_us()
    torch.cuda.OutOfMemoryError                                     2.0    top-level torch.OutOfMemoryError: 2.4
    checkpoint_sequential(..., use_reentrant=False)                 2.0
    torch.random.fork_rng(devices=[])                               2.0
    utils.benchmark.Timer(num_threads=).blocked_autorange           2.0
    torch.backends.mkldnn.flags / cudnn.flags                       2.0
    Tensor.untyped_storage().nbytes(), element_size()               2.0    Tensor.nbytes/itemsize, dtype.itemsize: 2.1
    torch.linalg.*, inference_mode, F.scaled_dot_product_attention  2.0

So **2.4** is the first release with everything: the private ``_count_flops`` hook that the FLOP
audit overrides and the ``start_ns()`` that the CPU peak-memory reader sorts by. The cuDNN SDPA
backend is optional (CUDA only) and present from the floor on.

Private internals cannot be pinned by a version range, so each is **self-checked once**, the first
time the code relying on it runs, and a failure raises ``RuntimeError`` naming the torch version
instead of letting a wrong number through:

* :func:`check_flop_audit` — ``utils.measure.count_flops``' override of ``FlopCounterMode._count_flops`` is really
  called: a 2×3 @ 3×4 ``mm`` counts exactly ``2·2·3·4``, and ``aten.mv`` / an in-place ``addmm_``
  (no formula) land in the audited ``uncounted`` set — or are counted exactly, should a later torch
  learn a formula for them;
* :func:`check_cpu_memory_reader` — ``utils.measure.peak_memory``'s Kineto reader reports a kept-alive 1 MiB canary
  allocation as at least 1 MiB, and raises if the profiler recorded no memory event at all.

:func:`require_torch` (run at import, microseconds) refuses a torch older than :data:`MIN_TORCH`.
"""

from __future__ import annotations

import contextlib
import functools
import re

import torch

MIN_TORCH = (2, 4)
"""Oldest ``torch`` release (major, minor) with every API the package uses (see the table above)."""

TESTED_TORCH = "2.13.0"
"""The torch release the whole course (every test and every chapter) is tested on."""


def torch_release(version: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of ``version`` (default: the installed ``torch.__version__``)."""
    version = str(torch.__version__ if version is None else version)
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"cannot read a torch release from version string {version!r}.")
    return int(match.group(1)), int(match.group(2))


def _tested_hint() -> str:
    return (f"This package is tested on torch {TESTED_TORCH} and needs torch>="
            f"{MIN_TORCH[0]}.{MIN_TORCH[1]}: `pip install torch=={TESTED_TORCH}`, or report this with "
            "your torch version to the course authors.")


def require_torch(version: str | None = None) -> None:
    """Raise ``ImportError`` if ``torch`` (or ``version``) is older than :data:`MIN_TORCH`."""
    version = str(torch.__version__ if version is None else version)
    if torch_release(version) < MIN_TORCH:
        raise ImportError(
            f"torch {version} is too old for this course's utils: it needs torch>={MIN_TORCH[0]}."
            f"{MIN_TORCH[1]} (FlopCounterMode calls the _count_flops hook the FLOP audit relies on, and "
            "profiler events have start_ns(), from 2.4 on). " + _tested_hint())


# --------------------------------------------------------------------------------------------------
# FLOP audit: utils.measure._flops._AuditedFlopCounter overrides the private FlopCounterMode._count_flops
# --------------------------------------------------------------------------------------------------

def check_flop_audit(counter_cls, context=contextlib.nullcontext) -> None:
    """Check that ``counter_cls`` (a ``FlopCounterMode`` subclass with an ``uncounted`` set) audits.

    Counts three tiny products under ``context()``: ``mm`` must be counted exactly (``2·m·k·n``);
    ``mv`` and an in-place ``addmm_`` have no formula in FlopCounterMode, so each must either land in
    ``counter.uncounted`` (the override of the private ``_count_flops`` was called) or, should a
    later torch count it, be counted exactly. Anything else raises ``RuntimeError``.
    """
    m, k, n = 2, 3, 4
    a, b, h, c = torch.ones(m, k), torch.ones(k, n), torch.ones(k), torch.zeros(m, n)
    probes = (
        ("aten.mm", lambda: torch.mm(a, b), 2 * m * k * n, "a 2x3 @ 3x4 torch.mm"),
        ("aten.mv", lambda: torch.mv(a, h), 2 * m * k, "a 2x3 @ 3 torch.mv"),
        ("aten.addmm_", lambda: c.addmm_(a, b), 2 * m * k * n, "an in-place 2x3 @ 3x4 addmm_"),
    )
    version = torch.__version__
    for op, run, exact, what in probes:
        counter = counter_cls(display=False)
        with context(), counter:
            run()
        total = int(counter.get_total_flops())
        uncounted = getattr(counter, "uncounted", None)
        if uncounted is None:
            raise RuntimeError(f"{counter_cls.__name__} has no 'uncounted' set: it is not an audited counter.")
        if op == "aten.mm":
            if total != exact:
                raise RuntimeError(
                    f"torch {version}: FlopCounterMode counted {total} FLOPs for {what}, expected exactly "
                    f"{exact} (2 x the multiply-accumulates): its convention or its mm formula changed, so "
                    "every count of utils.measure.count_flops would be off. " + _tested_hint())
            continue
        if op in uncounted and total == 0:
            continue  # reported by the audit: count_flops raises instead of returning a low number
        if op not in uncounted and total == exact:
            continue  # this torch has a formula for it and counts it exactly
        if op not in uncounted and total == 0:
            raise RuntimeError(
                f"torch {version}: FlopCounterMode did not call the private FlopCounterMode._count_flops "
                f"hook that utils.measure.count_flops overrides ({what} was neither counted nor reported), so "
                "the audit "
                "that catches uncounted matrix kernels is off and count_flops could silently return a "
                "count that is too low. The hook's name or call changed in this torch. " + _tested_hint()
            )
        raise RuntimeError(
            f"torch {version}: FlopCounterMode counted {total} FLOPs for {what} (expected 0 and an "
            f"audit report, or exactly {exact}); uncounted={sorted(uncounted)}. " + _tested_hint())


@functools.cache
def ensure_flop_audit(counter_cls, context=contextlib.nullcontext) -> None:
    """:func:`check_flop_audit`, run once per (class, context) and process (a few milliseconds)."""
    check_flop_audit(counter_cls, context)


# --------------------------------------------------------------------------------------------------
# CPU peak memory: utils.measure.peak_memory reads Kineto's memory events (kineto_results.events(), nbytes(), …)
# --------------------------------------------------------------------------------------------------

CANARY_BYTES = 1 << 20
"""Size of the allocation the CPU memory reader must see (1 MiB)."""


def check_cpu_memory_reader(trace) -> None:
    """Check a CPU memory-event reader on a canary allocation of :data:`CANARY_BYTES` kept alive.

    ``trace(fn)`` runs ``fn()`` under the profiler and returns the signed byte counts of the CPU
    allocator's events in time order (``utils.measure._memory._cpu_memory_trace``). Raises ``RuntimeError`` if
    it records no event, or if the running sum never reaches the canary's size.
    """
    keep = []
    deltas = list(trace(lambda: keep.append(torch.empty(CANARY_BYTES, dtype=torch.uint8))))
    version = torch.__version__
    if not deltas:
        raise RuntimeError(
            f"torch {version}: torch.autograd.profiler.profile(profile_memory=True) recorded no CPU "
            f"memory event while a {CANARY_BYTES}-byte tensor was allocated, so utils.measure.peak_memory("
            "..., 'cpu') would report 0 bytes. The profiler's Kineto event API (kineto_results.events(), "
            "'[memory]' events, nbytes(), device_type()) changed or is unavailable in this build. "
            + _tested_hint())
    current = peak = 0
    for delta in deltas:
        current += int(delta)
        peak = max(peak, current)
    if peak < CANARY_BYTES:
        raise RuntimeError(
            f"torch {version}: the CPU memory reader saw a peak of {peak} bytes while a kept-alive "
            f"{CANARY_BYTES}-byte tensor was allocated ({len(deltas)} events): the profiler's memory "
            "events changed meaning, so utils.measure.peak_memory(..., 'cpu') would be too low. "
            + _tested_hint())


@functools.cache
def ensure_cpu_memory_reader(trace) -> None:
    """:func:`check_cpu_memory_reader`, run once per reader and process (one profiler session)."""
    check_cpu_memory_reader(trace)


def reset_checks() -> None:
    """Forget which self-checks passed, so the next use runs them again (for tests)."""
    ensure_flop_audit.cache_clear()
    ensure_cpu_memory_reader.cache_clear()


require_torch()
