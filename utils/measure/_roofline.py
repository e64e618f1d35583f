"""The two roofs of the device a notebook runs on: peak matrix-product FLOP/s and copy bandwidth, measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from utils.complexity._roofline import attainable_flops_per_s, ridge_intensity
from utils.measure._guard import check_fits, largest_that_fits, sweep_that_fits
from utils.measure._timing import _device, time_best_s
from utils.validate import check_positive_float, check_positive_int


def _check_float_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype such as torch.float32, got {dtype!r}.")
    return dtype


def matmul_peak_flops_per_s(device=None, size=1024, dtype: torch.dtype = torch.float32, *,
                      repeats: int = 3, min_run_time: float = 0.1, threads: int | None = None,
                      fraction: float = 0.5) -> float:
    """Measured matrix-multiply throughput of ``device``, in FLOP/s: the flat roof.

    Times ``A @ B`` for two random ``size × size`` matrices (``2·size³`` FLOPs) with
    :func:`time_best_s` (the best of ``repeats`` medians of :func:`utils.measure.time_call`). ``size`` may
    be a sequence of sizes: the best throughput over them is returned (a BLAS library is fastest at
    the size that suits its blocking and the caches). This is the *achievable* peak of the library at
    this thread count, not the vendor's datasheet number (which is usually higher). In float32 on a
    CUDA GPU from sm80 on, the result depends on the TF32 switch
    (``torch.backends.cuda.matmul.allow_tf32``), which :func:`utils.env.hardware` records.

    Guarded: each size's three matrices must fit in ``fraction`` of the free memory
    (:func:`utils.measure.check_fits`), checked before they are allocated.
    """
    sizes = [size] if isinstance(size, int) or not hasattr(size, "__iter__") else list(size)
    if not sizes:
        raise ValueError("size must be a positive int or a non-empty sequence of them, e.g. 1024.")
    sizes = [check_positive_int("size", s, "Use a few hundred or thousand, e.g. 1024.") for s in sizes]
    repeats = check_positive_int("repeats", repeats)
    check_positive_float("min_run_time", min_run_time)
    dtype = _check_float_dtype(dtype)
    device = _device(device)
    element = torch.empty((), dtype=dtype).element_size()
    for n in sizes:
        check_fits(3 * n * n * element, device, fraction, what=f"a {n}×{n} matrix product")
    best = 0.0
    for n in sizes:
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        seconds = time_best_s(lambda a=a, b=b: a @ b, repeats=repeats, min_run_time=min_run_time, threads=threads)
        best = max(best, 2 * n**3 / seconds)
    return best


def copy_bandwidth_bytes_per_s(device=None, mebibytes: float = 64, dtype: torch.dtype = torch.float32, *,
                               repeats: int = 3, min_run_time: float = 0.1, threads: int | None = None,
                   fraction: float = 0.5) -> float:
    """Measured memory bandwidth of ``device``, in bytes/s: the slope of the slanted roof.

    Times ``dst.copy_(src)`` for a tensor of ``mebibytes`` MiB (one read and one write of every byte, so
    ``2 × size`` bytes move) and returns the best of ``repeats`` medians. Choose ``mebibytes`` well above
    the last-level cache (tens of MiB on a laptop CPU), or the copy measures the cache, not the memory.
    Guarded: source and destination must fit in ``fraction`` of the free memory.
    """
    mebibytes = check_positive_float("mebibytes", mebibytes, "Use tens of MiB, e.g. 64.")
    repeats = check_positive_int("repeats", repeats)
    check_positive_float("min_run_time", min_run_time)
    dtype = _check_float_dtype(dtype)
    device = _device(device)
    element = torch.empty((), dtype=dtype).element_size()
    numel = max(1, int(mebibytes * 2**20) // element)
    check_fits(2 * numel * element, device, fraction, what=f"a {mebibytes:g} MiB copy")
    src = torch.ones(numel, device=device, dtype=dtype)
    dst = torch.empty_like(src)
    best = time_best_s(lambda: dst.copy_(src), repeats=repeats, min_run_time=min_run_time, threads=threads)
    return 2 * numel * element / best


@dataclass(frozen=True)
class Roofline:
    """The two roofs of one device (one dtype, one thread count), as measured."""

    peak_flops_per_s: float
    bandwidth_bytes_per_s: float
    device: str = ""
    dtype: str = "float32"
    threads: int = 1
    tf32: bool | None = None   # CUDA: torch.backends.cuda.matmul.allow_tf32 during the measurement

    def __post_init__(self):
        check_positive_float("peak_flops_per_s", self.peak_flops_per_s)
        check_positive_float("bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)

    @property
    def ridge_intensity(self) -> float:
        """FLOPs per byte at which the two roofs meet: ``peak / bandwidth``."""
        return ridge_intensity(self.peak_flops_per_s, self.bandwidth_bytes_per_s)

    def attainable(self, intensity):
        """``min(peak, intensity · bandwidth)`` for a number or an array of intensities."""
        return attainable_flops_per_s(intensity, self.peak_flops_per_s, self.bandwidth_bytes_per_s)

    def bound(self, intensity: float) -> str:
        """``"memory"`` left of the ridge point, ``"compute"`` at or right of it."""
        check_positive_float("intensity", intensity)
        return "memory" if intensity < self.ridge_intensity else "compute"


def measure_roofline(device=None, dtype: torch.dtype = torch.float32, *, matmul_size=None,
                     copy_mebibytes: float | None = None, repeats: int = 3, min_run_time: float = 0.1,
                     threads: int | None = None) -> Roofline:
    """Measure both roofs of ``device`` and return them as a :class:`Roofline`.

    Defaults: the best of 256², 512² and 1024² matrix products and a 64 MiB copy on a CPU; on CUDA the
    sizes of 4096² and 8192² and a copy of 256 MiB or 1 GiB *that fit* this GPU's free memory (a
    quarter of it at most, :func:`utils.measure.sweep_that_fits`). ``matmul_size`` (an int or a
    sequence) and ``copy_mebibytes`` override them."""
    from utils.env import _tf32, hardware_label, on_gpu

    device = _device(device)
    dtype = _check_float_dtype(dtype)
    gpu = on_gpu(device)
    element = torch.empty((), dtype=dtype).element_size()
    if not matmul_size:
        matmul_size = (sweep_that_fits([4096, 8192], lambda n: 3 * n * n * element, device, 0.25)
                       if gpu else (256, 512, 1024))
    if not copy_mebibytes:
        copy_mebibytes = (largest_that_fits([256, 1024], lambda m: 2 * m * 2**20, device, 0.25)
                          if gpu else 64)
    peak = matmul_peak_flops_per_s(device, matmul_size, dtype, repeats=repeats, min_run_time=min_run_time,
                             threads=threads)
    bandwidth = copy_bandwidth_bytes_per_s(device, copy_mebibytes, dtype, repeats=repeats, min_run_time=min_run_time,
                               threads=threads)
    return Roofline(peak, bandwidth, hardware_label(device), str(dtype).replace("torch.", ""),
                    threads or torch.get_num_threads(), _tf32()[0] if gpu else None)
