"""Peak memory, measured: the CPU profiler or the CUDA allocator; training-step memory; the GPU out-of-memory edge.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys

import torch
from torch import nn

from utils.complexity._bytes import MIB, bytes_per_element, max_seq_len
from utils.measure._guard import check_fits, free_memory_bytes, guard_attention
from utils.validate import check_choice, check_positive_int


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 (the profiler's native start/stop banners) for a moment."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cpu_memory_trace(fn) -> list[int]:
    """Run ``fn()`` under the profiler; the CPU allocator's events in time order (bytes: + alloc, − free)."""
    # torch.autograd.profiler.profile: the same Kineto recorder as torch.profiler.profile, without
    # the latter's import of torch._inductor (seconds) on first use.
    from torch.autograd.profiler import profile

    prof = profile(profile_memory=True)
    with _quiet_native_stderr():
        prof.__enter__()
    try:
        fn()
    finally:
        with _quiet_native_stderr():
            prof.__exit__(None, None, None)
    events = [e for e in prof.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    return [int(e.nbytes()) for e in events]


def _cpu_peak(fn) -> int:
    # The reader above relies on Kineto internals: check once per process, on a 1 MiB canary, that it
    # still sees allocations (raises RuntimeError naming the torch version instead of returning 0).
    from utils.torch_support import ensure_cpu_memory_reader

    ensure_cpu_memory_reader(_cpu_memory_trace)
    current = peak = 0
    for nbytes in _cpu_memory_trace(fn):  # allocations are positive, frees negative
        current += nbytes
        peak = max(peak, current)
    return int(peak)


def peak_memory(fn, device) -> int:
    """Peak bytes allocated *above the starting level* while ``fn()`` runs on ``device``.

    CUDA: ``reset_peak_memory_stats`` then ``max_memory_allocated`` minus the bytes allocated
    before the call (synchronised on both sides). CPU: the running sum of every allocation (+) and
    free (−) that PyTorch's CPU allocator reports to the profiler, in time order, maximised; it
    includes temporaries inside kernels and tensors ``fn`` frees again, and is exact to the byte for
    requested tensor sizes. Tensors allocated before the call are not counted; their frees inside
    ``fn`` can only lower the running sum. Each CPU call costs a few milliseconds of profiler set-up.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a callable taking no arguments, got {type(fn).__name__}.")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    if device.type != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device}.")
    return _cpu_peak(fn)


ATTENTION_IMPLS = ("naive", "math", "flash", "efficient", "cudnn")


def attention_inputs(batch: int, heads: int, n: int, head_dim: int, device="cpu", dtype=torch.float32,
                     seed: int = 0, fraction: float = 0.5, limit_bytes: int | None = None):
    """Random ``q, k, v`` of shape ``(batch, heads, n, head_dim)`` — after the guard says they fit."""
    bpe = bytes_per_element(dtype)
    for name, value in (("batch", batch), ("heads", heads), ("n", n), ("head_dim", head_dim)):
        check_positive_int(name, value)
    check_fits(3 * batch * heads * n * head_dim * bpe, device, fraction, limit_bytes, what="q, k and v")
    g = torch.Generator(device="cpu").manual_seed(seed)
    return tuple(torch.randn(batch, heads, n, head_dim, generator=g, dtype=torch.float32).to(device, dtype)
                 for _ in range(3))


def attention_peak_memory(impl: str, batch: int, heads: int, n: int, head_dim: int = 64, device="cpu",
                          dtype=torch.float32, fraction: float = 0.5, limit_bytes: int | None = None) -> int:
    """Peak bytes of one attention forward ``softmax(QKᵀ/√d)V`` beyond its inputs, on ``device``.

    ``impl``: ``"naive"`` (:func:`utils.attention.naive_attention`, scores materialised),
    ``"math"`` / ``"flash"`` / ``"efficient"`` / ``"cudnn"`` (``F.scaled_dot_product_attention`` forced
    to that backend). The backend is checked first: one that does not run on this device in ``dtype``
    (flash on a T4, or in float32 on CUDA; efficient on a CPU) is a ``ValueError`` that says what to use
    instead — :func:`utils.attention.available_attention_impls` lists what runs. The inputs are
    allocated next (and guarded) and are not part of the peak; the output is. Guarded: refuses with
    ``ValueError`` if it would not fit.
    """
    from utils.attention import check_sdpa_backend, naive_attention, sdpa_attention

    check_choice("impl", impl, ATTENTION_IMPLS)
    bpe = bytes_per_element(dtype)
    if impl != "naive":
        check_sdpa_backend(impl, device, dtype, head_dim)  # a clear ValueError instead of "No available kernel"
    copies = 0 if impl in ("flash", "efficient", "cudnn") else 3
    guard_attention(batch, heads, n, head_dim, device, bpe, copies, fraction, limit_bytes)
    def runner(q, k, v):
        def run():
            with torch.no_grad():
                if impl == "naive":
                    naive_attention(q, k, v)
                else:
                    sdpa_attention(q, k, v, backend=impl)
        return run

    if torch.device(device).type == "cuda":
        # warm-up: the first matrix product on a CUDA stream allocates cuBLAS's workspace for good;
        # it must not be counted as part of the first measurement
        runner(*attention_inputs(1, 1, 16, head_dim, device, dtype))()
    q, k, v = attention_inputs(batch, heads, n, head_dim, device, dtype, fraction=fraction,
                               limit_bytes=limit_bytes)
    return peak_memory(runner(q, k, v), device)


def parameter_bytes(module: nn.Module) -> int:
    """Bytes of every parameter of ``module`` (what its weights occupy)."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module, got {type(module).__name__}.")
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _guard_training_step(model, x, device, fraction, limit_bytes, planned_bytes) -> int:
    """Check the arguments of a training-step measurement and ask the guard (default plan: 16 × the
    parameters + 40 × the input); return the parameters' bytes."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}.")
    params = parameter_bytes(model)
    if planned_bytes is None:
        planned_bytes = 16 * params + 40 * x.numel() * x.element_size()
    check_fits(int(planned_bytes), device, fraction, limit_bytes, what="the training step")
    return params


def steady_training_memory(model: nn.Module, x: torch.Tensor, device="cpu", fraction: float = 0.5,
                           limit_bytes: int | None = None, planned_bytes: int | None = None) -> int:
    """Peak bytes of a training step in steady state: weights + Adam state + the peak of
    ``zero_grad → forward → loss → backward → step`` (gradients, saved activations, temporaries).

    Unlike :func:`training_peak_memory`, whose fresh Adam creates its state after the activations are
    freed, this runs one step first, so that the optimizer state exists during the measured step, as it
    does on every step of a real training run. ``planned_bytes`` (default: 16 × the parameters + 40 × the
    input) is checked by the guard first. ``model`` and ``x`` must already be on ``device``; the model's
    weights change (two Adam steps) and its gradients are left cleared.
    """
    params = _guard_training_step(model, x, device, fraction, limit_bytes, planned_bytes)
    optimizer = torch.optim.Adam(model.parameters())

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(x).float().square().mean().backward()
        optimizer.step()

    step()
    optimizer.zero_grad(set_to_none=True)
    state = sum(t.nbytes for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
    peak = peak_memory(step, device)
    optimizer.zero_grad(set_to_none=True)
    return params + state + peak


def saved_activation_bytes(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of ``model(*inputs)``: the activations
    a training step must keep between its forward and its backward pass.

    Counted with ``torch.autograd.graph.saved_tensors_hooks`` during one forward pass: every saved tensor's
    storage once (views of one storage count once), the inputs included when a layer keeps them,
    the parameters left out (they exist anyway). Nothing is allocated beyond the forward pass itself;
    its output is discarded.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}.")
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ValueError("give the model's inputs as tensors: saved_activation_bytes(model, x).")
    if not any(p.requires_grad for p in model.parameters()) and not any(t.requires_grad for t in inputs):
        raise ValueError("nothing requires a gradient, so autograd saves nothing: call model.train() with "
                         "parameters that require grad, or pass inputs with requires_grad=True.")
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            if storage.data_ptr() not in exclude:
                saved[storage.data_ptr()] = max(saved.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(*inputs)
    del out
    return sum(saved.values())


def training_peak_memory(model: nn.Module, x: torch.Tensor, device="cpu", fraction: float = 0.5,
                         limit_bytes: int | None = None, planned_bytes: int | None = None) -> dict:
    """Peak memory of inference vs one training step (forward + backward + Adam) of ``model`` on ``x``.

    Returns a dict of bytes: ``params`` (the weights, allocated before either run), ``forward``
    (peak of a forward under ``torch.no_grad``, beyond the weights and the input), ``train_step``
    (peak of ``zero_grad → forward → loss → backward → Adam.step`` with a *fresh* Adam, so its two
    state tensors per parameter and the gradients are created inside the measured window),
    ``grads`` and ``adam_state`` (their exact sizes afterwards), and the two totals
    ``inference_total = params + forward`` and ``training_total = params + train_step`` and their
    ``ratio``. ``planned_bytes`` (default: 16 × params + 40 × the input) is checked by the guard
    first. ``model`` and ``x`` must already be on ``device``; the model is left with its gradients
    cleared.
    """
    params = _guard_training_step(model, x, device, fraction, limit_bytes, planned_bytes)

    def forward_only():
        with torch.no_grad():
            model(x)

    if torch.device(device).type == "cuda":
        # warm-up: cuBLAS allocates its workspace on first use, once; keep it out of the measurements
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    forward = peak_memory(forward_only, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.zero_grad(set_to_none=True)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()

    train = peak_memory(train_step, device)
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    adam_state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                     if isinstance(t, torch.Tensor) and t.dim() > 0)
    model.zero_grad(set_to_none=True)
    opt.state.clear()  # free Adam's state now, not when the caller's frame ends
    return {
        "params": params, "forward": forward, "train_step": train, "grads": grads, "adam_state": adam_state,
        "inference_total": params + forward, "training_total": params + train,
        "ratio": (params + train) / (params + forward),
    }


#: Fragments of ``RuntimeError`` messages that mean "an allocation failed". cuBLAS and cuDNN report a
#: failed workspace allocation as their own status; a cuBLAS handle that cannot be created because the
#: GPU is full reports ``NOT_INITIALIZED``.
ALLOCATION_FAILURE_MESSAGES = (
    "out of memory", "cuda_error_out_of_memory", "cudaerrormemoryallocation",
    "cublas_status_alloc_failed", "cudnn_status_alloc_failed", "cublas_status_not_initialized",
    "cudnn_status_not_initialized", "cufft_alloc_failed", "cusolver_status_alloc_failed",
    "cusparse_status_alloc_failed", "failed to allocate",
)


_OOM_ERROR = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def is_allocation_failure(exc: BaseException) -> bool:
    """True when ``exc`` means "did not fit": ``torch.OutOfMemoryError``, or a ``RuntimeError`` whose
    message shows an allocation failure (``ALLOCATION_FAILURE_MESSAGES``: "out of memory",
    ``CUBLAS_STATUS_ALLOC_FAILED``, ``CUDNN_STATUS_ALLOC_FAILED``, ``CUBLAS_STATUS_NOT_INITIALIZED``, …).
    Any other error is a bug and must propagate."""
    if isinstance(exc, _OOM_ERROR):
        return True
    if isinstance(exc, RuntimeError):
        message = str(exc).lower()
        return any(fragment in message for fragment in ALLOCATION_FAILURE_MESSAGES)
    return False


def release_memory(device) -> None:
    """Give memory back after a try: ``gc.collect()``, then on CUDA synchronise and
    ``torch.cuda.empty_cache()`` (cached blocks return to the driver, so the next try and
    :func:`free_memory_bytes` see them)."""
    gc.collect()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def fits_by_trying(fn, device) -> bool:
    """Run ``fn()`` once: ``True`` if it finished, ``False`` if it failed to allocate
    (:func:`is_allocation_failure`); any other exception propagates. The work is synchronised (on CUDA an
    allocation failure can surface late) and memory is released afterwards (:func:`release_memory`),
    whatever happened, so every try starts from the same state."""
    device = torch.device(device)
    ok = True
    try:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except (RuntimeError, MemoryError) as exc:
        if not (is_allocation_failure(exc) or isinstance(exc, MemoryError)):
            raise
        ok = False
    # outside the except block: the traceback (and the tensors its frames hold) is gone by now
    release_memory(device)
    return ok


def largest_passing(try_fn, lo: int, hi: int) -> int:
    """Largest integer ``m`` in ``[lo, hi]`` with ``try_fn(m)`` true, by bisection.

    ``try_fn`` must be monotone (true up to some edge, false beyond) and ``try_fn(lo)`` true;
    returns ``lo - 1`` when ``try_fn(lo)`` is false. Used to find the out-of-memory edge, where
    ``try_fn`` attempts an allocation and reports whether it succeeded.
    """
    lo = check_positive_int("lo", lo)
    hi = check_positive_int("hi", hi)
    if hi < lo:
        raise ValueError(f"need lo <= hi, got lo={lo}, hi={hi}.")
    if not try_fn(lo):
        return lo - 1
    good, bad = lo, hi + 1
    if try_fn(hi):
        return hi
    bad = hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if try_fn(mid):
            good = mid
        else:
            bad = mid
    return good


def cuda_oom_edge(batch: int, heads: int, device="cuda", dtype=torch.float16, what: str = "weights",
                  head_dim: int = 64, hi: int | None = None) -> int:
    """The real largest ``n`` for which attention of this shape fits on a CUDA GPU, found by trying.

    ``what="weights"`` allocates one ``(batch, heads, n, n)`` tensor; ``what="naive"`` runs a naive
    attention forward (inputs, scores, weights, output). (A fused kernel has no n² edge worth
    searching: its memory grows like n, and its edge lies where its n² *time* is hours.) Each try
    that fails to allocate
    (:func:`is_allocation_failure`: ``torch.OutOfMemoryError`` or a cuBLAS/cuDNN allocation
    ``RuntimeError``) counts as "does not fit"; any other error propagates; memory is released and
    the device synchronised after every try (:func:`fits_by_trying`). Refuses (``ValueError``) on
    anything but a CUDA device: on a CPU the operating system's OOM killer, not an exception, would
    answer. The search is bounded above by ``hi`` (default: the :func:`~utils.complexity.max_seq_len` of *all* the GPU's
    free memory at 1 byte per element, plus one).
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("cuda_oom_edge runs only on a CUDA device: on a CPU an out-of-memory search "
                         "would be ended by the operating system, not by a catchable error.")
    from utils.attention import naive_attention

    check_choice("what", what, {"weights", "naive"})
    bytes_per_element(dtype)  # validates dtype
    head_dim = check_positive_int("head_dim", head_dim)
    release_memory(device)
    free = free_memory_bytes(device)
    if hi is None:
        hi = max_seq_len(free, batch, heads, 1) + 1

    def attempt(n: int):
        def run():
            if what == "weights":
                t = torch.empty(batch, heads, n, n, dtype=dtype, device=device)
                del t
                return
            q = torch.randn(batch, heads, n, head_dim, dtype=dtype, device=device)
            with torch.no_grad():
                out = naive_attention(q, q, q)
            del q, out
        return run

    return largest_passing(lambda n: fits_by_trying(attempt(n), device), 1, int(hi))


#: Above the formula, how much a measured allocation may be where the allocator is not exact (another torch
#: release, or CUDA's caching allocator rounding blocks up): 10 % plus 2 MiB of workspace.
ALLOCATION_MARGIN = 0.10
ALLOCATION_SLACK_BYTES = 2 * MIB


def assert_allocation(measured_bytes: int, formula_bytes: int, device) -> None:
    """Check a measured allocation against its closed form; ``AssertionError`` saying by how much if it fails.

    On a CPU with the torch release the course is tested on (:data:`utils.torch_support.TESTED_TORCH`) the
    profiler's allocator events are exact, so the two must be equal to the byte. Elsewhere (a GPU's caching
    allocator, another release) the measurement may exceed the formula by at most ``ALLOCATION_MARGIN`` and
    ``ALLOCATION_SLACK_BYTES``, and never fall below it."""
    from utils.torch_support import TESTED_TORCH

    exact = torch.device(device).type == "cpu" and torch.__version__.split("+")[0] == TESTED_TORCH
    if exact:
        ok = measured_bytes == formula_bytes
        rule = "equal to the byte (CPU, tested torch)"
    else:
        ok = formula_bytes <= measured_bytes <= (1 + ALLOCATION_MARGIN) * formula_bytes + ALLOCATION_SLACK_BYTES
        rule = f"between the formula and {ALLOCATION_MARGIN:.0%} + {ALLOCATION_SLACK_BYTES // MIB} MiB above it"
    if not ok:
        raise AssertionError(f"measured {measured_bytes} bytes, formula {formula_bytes} bytes "
                             f"({measured_bytes - formula_bytes:+d}); expected {rule}.")
