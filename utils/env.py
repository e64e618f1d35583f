"""Where a notebook runs: the device, what it can do, the hardware record, and CPU-vs-GPU sweep sizes.

Every chapter calls :func:`pick_device` once. Small configurations run on a laptop CPU in well under a
minute; :func:`sweep` returns the larger configuration *by itself* when a CUDA GPU is present (for
example on Colab), so that nobody has to edit a notebook to scale it up.

GPUs differ — a Colab T4 (compute capability 7.5, 15 GiB, no flash SDPA kernel, slow bf16), an L4 or
A10 (24 GB), an A100 (40/80 GB), an H100/H200 — so nothing here assumes one. :func:`describe_device`
is the one place that says what *this* device is and can do: its name, compute capability, total and
free memory (free includes what PyTorch's caching allocator holds unused; on a CPU the cgroup limit of
a container counts), bf16/fp16 support, the TF32 switches, the CUDA/cuDNN/torch versions, and which
``scaled_dot_product_attention`` backends actually run here, *probed* in the dtype that will be used.
Every sweep size and every backend choice of the course is derived from it.

Reference measurements (GPU runs committed with the package, in ``utils/data``) are read with
:func:`load_reference` and written with :func:`save_reference`, which adds their provenance.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import re
import warnings
from dataclasses import dataclass

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return ``cuda`` when a GPU is available, else ``cpu``.

    ``prefer`` (or the environment variable ``COURSE_DEVICE``) forces a choice, e.g. ``"cpu"`` to
    reproduce the CPU numbers of the book on a GPU machine. Apple's ``mps`` is not supported by the
    memory helpers (they raise "device must be 'cpu' or 'cuda'").
    """
    choice = prefer or os.environ.get("COURSE_DEVICE")
    if choice:
        if choice.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} was requested but no CUDA GPU is available; use 'cpu'.")
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def on_gpu(device: torch.device | str | None = None) -> bool:
    """True when ``device`` (default: :func:`pick_device`) is a CUDA device."""
    device = torch.device(device) if device is not None else pick_device()
    return device.type == "cuda"


def sweep(cpu, gpu, device: torch.device | str | None = None):
    """Pick the sweep for this device: ``gpu`` on CUDA, ``cpu`` otherwise.

    The GPU sweep is a list of *candidates*: cut it to what fits this GPU's free memory with
    :func:`utils.measure.sweep_that_fits` (a T4 has 15 GiB, an H200 141 GB).
    """
    return gpu if on_gpu(device) else cpu


def _normalise(device) -> torch.device:
    """``torch.device`` with the CUDA index filled in (``cuda`` means the current CUDA device)."""
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def module_device(module, default="cpu") -> torch.device:
    """The device of ``module``'s first parameter (or buffer); ``default`` for a parameter-less module
    or a plain function. Helpers that build their own inputs put them there."""
    if isinstance(module, torch.nn.Module):
        for t in module.parameters():
            return t.device
        for t in module.buffers():
            return t.device
    return torch.device(default)


# --------------------------------------------------------------------------------------------------
# What the device is and can do
# --------------------------------------------------------------------------------------------------

#: ``scaled_dot_product_attention`` backends, in the order they are probed (names as in
#: ``utils.attention.BACKENDS``).
SDPA_BACKENDS = ("math", "flash", "efficient", "cudnn")

#: What each SDPA backend needs, in words (for error messages; the probe decides, not this table).
SDPA_REQUIREMENTS = {
    "math": "nothing: it runs on every device and dtype",
    "flash": "compute capability >= 8.0 and fp16/bf16 on CUDA (on a CPU: PyTorch's CPU flash kernel)",
    "efficient": "a CUDA GPU (any float dtype; not on a CPU)",
    "cudnn": "a CUDA GPU with compute capability >= 8.0, cuDNN >= 9 and fp16/bf16",
}


def default_dtype(device=None) -> torch.dtype:
    """The dtype the course's attention measurements use on ``device``: float32 on a CPU, float16 on
    CUDA (every GPU since compute capability 5.3 runs it at speed; bf16 is emulated, slowly, before 8.0)."""
    return torch.float16 if _normalise(device).type == "cuda" else torch.float32


def _is_allocation_failure(exc: BaseException) -> bool:
    from utils.measure import is_allocation_failure

    return is_allocation_failure(exc)


@functools.lru_cache(maxsize=64)
def _probe_sdpa(device: torch.device, dtype: torch.dtype, head_dim: int) -> tuple[str, ...]:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    enums = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
             "efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    g = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(1, 2, 32, head_dim, generator=g).to(device, dtype)
    runs = []
    for name in SDPA_BACKENDS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch explains each refusal in a UserWarning
                with sdpa_kernel(enums[name]):
                    out = F.scaled_dot_product_attention(q, q, q)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            ok = bool(torch.isfinite(out).all())
        except (RuntimeError, NotImplementedError) as exc:
            if _is_allocation_failure(exc):
                raise  # a full GPU says nothing about the kernel: do not cache a wrong answer
            ok = False
        if ok:
            runs.append(name)
    return tuple(runs)


def sdpa_backends(device=None, dtype: torch.dtype | None = None, head_dim: int = 64) -> tuple[str, ...]:
    """The ``scaled_dot_product_attention`` backends that really run on ``device`` in ``dtype``.

    Each backend of :data:`SDPA_BACKENDS` is tried once on a tiny ``(1, 2, 32, head_dim)`` input under
    ``torch.nn.attention.sdpa_kernel(backend)``; a ``RuntimeError`` ("No available kernel") means it does
    not. Cached per (device, dtype, head_dim). ``dtype`` defaults to :func:`default_dtype`. A backend that
    runs here without a mask may still refuse an arbitrary ``attn_mask`` (flash takes none).
    """
    device = _normalise(device)
    dtype = default_dtype(device) if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype such as torch.float16, got {dtype!r}.")
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"head_dim must be a positive int, got {head_dim!r}.")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device}.")
    return _probe_sdpa(device, dtype, head_dim)


def _read_int(path: str) -> int | None:
    """An integer file such as ``memory.current``; ``None`` if absent, unreadable or ``max``."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    out = {}
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1)
    except (OSError, ValueError):
        return out
    return out


#: A cgroup v1 limit at or above this is "no limit" (the kernel writes ~2**63 rounded to a page).
_CGROUP_V1_UNLIMITED = 2**60


def cpu_memory_bytes(
    cgroup_root: str = "/sys/fs/cgroup", meminfo: str = "/proc/meminfo"
) -> tuple[int | None, int | None]:
    """``(total, free)`` bytes of CPU memory this process may use; ``None`` where nothing says.

    Free is the smallest of: cgroup v2 ``memory.max - memory.current``; cgroup v1
    ``memory/memory.limit_in_bytes - memory/memory.usage_in_bytes``; ``MemAvailable`` of
    ``/proc/meminfo``. In a container (or a JupyterHub with limits) ``/proc/meminfo`` shows the
    *host's* memory, and the container's OOM killer acts at the cgroup limit. Total is the smallest of
    the cgroup limits and ``MemTotal``.
    """
    totals, frees = [], []
    info = _meminfo(meminfo)
    if "MemTotal" in info:
        totals.append(info["MemTotal"])
    if "MemAvailable" in info:
        frees.append(info["MemAvailable"])
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit = _read_int(os.path.join(cgroup_root, limit_file))
        if limit is None or limit >= _CGROUP_V1_UNLIMITED:
            continue
        totals.append(limit)
        usage = _read_int(os.path.join(cgroup_root, usage_file))
        if usage is not None:
            frees.append(max(0, limit - usage))
    return (min(totals) if totals else None), (min(frees) if frees else None)


def cuda_free_bytes(device=None) -> int:
    """Bytes a new tensor can get on a CUDA device: ``torch.cuda.mem_get_info`` free *plus* what
    PyTorch's caching allocator has reserved but not allocated (``memory_reserved - memory_allocated``),
    which it hands out again without asking the driver."""
    device = _normalise(device if device is not None else "cuda")
    free, _total = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(0, cached))


def cpu_model_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else ``platform.processor()`` or the machine."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _tf32() -> tuple[bool | None, bool | None, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch deprecates allow_tf32 in favour of fp32_precision
        try:
            matmul = bool(torch.backends.cuda.matmul.allow_tf32)
        except Exception:  # noqa: BLE001 - an unknown switch is recorded as unknown
            matmul = None
        try:
            cudnn = bool(torch.backends.cudnn.allow_tf32)
        except Exception:  # noqa: BLE001
            cudnn = None
        precision = torch.get_float32_matmul_precision()
    return matmul, cudnn, precision


@dataclass(frozen=True)
class DeviceDescription:
    """What one device is and can do (see :func:`describe_device`). Bytes are integers."""

    name: str
    type: str                                  # "cpu" or "cuda"
    index: int | None
    capability: tuple[int, int] | None         # CUDA compute capability, e.g. (7, 5) for a T4
    total_bytes: int | None
    free_bytes: int | None
    bf16: bool                                 # bfloat16 at full speed (CUDA: capability >= 8.0)
    fp16: bool
    tf32_matmul: bool | None                   # torch.backends.cuda.matmul.allow_tf32
    tf32_cudnn: bool | None
    float32_matmul_precision: str              # torch.get_float32_matmul_precision()
    cuda: str | None                           # torch.version.cuda
    cudnn: int | None
    torch: str
    dtype: str                                 # the dtype the SDPA probe used
    sdpa_backends: tuple[str, ...]             # backends that ran in that dtype

    @property
    def sm(self) -> str | None:
        """``"sm75"`` for compute capability 7.5; ``None`` on a CPU."""
        return None if self.capability is None else f"sm{self.capability[0]}{self.capability[1]}"

    @property
    def slug(self) -> str:
        """The device name for a file name: ``"NVIDIA H200"`` → ``"nvidia-h200"``."""
        return device_slug(self.name if self.type == "cuda" else "cpu")

    @property
    def label(self) -> str:
        """``"Tesla T4 (sm75, 15.6 GB)"`` or ``"AMD EPYC (CPU)"``."""
        if self.type == "cuda":
            size = f", {self.total_bytes / 1e9:.1f} GB" if self.total_bytes else ""
            return f"{self.name} ({self.sm}{size})"
        return f"{self.name} (CPU)"

    def runs(self, backend: str) -> bool:
        """True when the SDPA ``backend`` ran here in the probe dtype (``self.dtype``)."""
        return backend in self.sdpa_backends


def device_slug(name: str) -> str:
    """Lower-case, hyphenated, file-name-safe: ``"NVIDIA A100-SXM4-80GB"`` → ``"nvidia-a100-sxm4-80gb"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    return slug or "unknown"


def describe_device(device=None, dtype: torch.dtype | None = None, head_dim: int = 64) -> DeviceDescription:
    """Describe ``device`` (default :func:`pick_device`) now: see :class:`DeviceDescription`.

    Free memory is read afresh on every call; the SDPA probe (:func:`sdpa_backends`, in ``dtype``,
    default :func:`default_dtype`) is cached. On CUDA free memory is :func:`cuda_free_bytes`; on a CPU
    :func:`cpu_memory_bytes` (cgroup limits first).
    """
    device = _normalise(device)
    dtype = default_dtype(device) if dtype is None else dtype
    backends = sdpa_backends(device, dtype, head_dim)
    tf32_matmul, tf32_cudnn, precision = _tf32()
    cudnn_version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        capability = (int(props.major), int(props.minor))
        return DeviceDescription(
            name=props.name, type="cuda", index=device.index, capability=capability,
            total_bytes=int(props.total_memory), free_bytes=cuda_free_bytes(device),
            bf16=capability >= (8, 0), fp16=capability >= (5, 3),
            tf32_matmul=tf32_matmul, tf32_cudnn=tf32_cudnn, float32_matmul_precision=precision,
            cuda=torch.version.cuda, cudnn=cudnn_version, torch=torch.__version__,
            dtype=str(dtype).replace("torch.", ""), sdpa_backends=backends)
    total, free = cpu_memory_bytes()
    return DeviceDescription(
        name=cpu_model_name(), type="cpu", index=None, capability=None, total_bytes=total, free_bytes=free,
        bf16=True, fp16=True, tf32_matmul=None, tf32_cudnn=None, float32_matmul_precision=precision,
        cuda=torch.version.cuda, cudnn=cudnn_version, torch=torch.__version__,
        dtype=str(dtype).replace("torch.", ""), sdpa_backends=backends)


# --------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------

def hardware(device: torch.device | str | None = None) -> dict:
    """A small provenance record to print next to every timing or memory figure.

    ``device`` is the CPU's model name (from ``/proc/cpuinfo``) or the GPU's name; on a GPU the record
    also holds the compute ``capability`` (``"8.0"``), the ``cuda``/``cudnn`` versions, the TF32 switches
    and the total memory (the keys exist on a CPU too, as ``None``), so that two runs can be compared.
    """
    device = torch.device(device) if device is not None else pick_device()
    record = {"device_type": device.type, "capability": None, "cuda": None}
    if device.type == "cuda":
        device = _normalise(device)
        props = torch.cuda.get_device_properties(device)
        tf32_matmul, tf32_cudnn, precision = _tf32()
        record.update(device=props.name, capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                      cudnn=torch.backends.cudnn.version(), tf32_matmul=tf32_matmul, tf32_cudnn=tf32_cudnn,
                      float32_matmul_precision=precision, total_bytes=int(props.total_memory))
    else:
        record["device"] = cpu_model_name()
    record.update({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": _dt.date.today().isoformat(),
    })
    return {"device": record.pop("device"), **record}


def hardware_label(device: torch.device | str | None = None) -> str:
    """One line for a figure title: device, thread count and torch version."""
    h = hardware(device)
    if h["device_type"] == "cuda":
        return f"{h['device']} (sm{h['capability'].replace('.', '')}) · torch {h['torch']}"
    threads = f"{h['threads']} torch thread" + ("" if h["threads"] == 1 else "s")
    return f"CPU ({h['cpu_count']} cores, {threads}) · torch {h['torch']}"


# Reference measurements ship inside the package (``utils/data``), so an installed copy — on Colab too —
# finds the same files as a clone of the repository.
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def load_reference(name: str, directory: str | os.PathLike | None = None) -> dict | None:
    """Load a reference measurement ``<name>.json`` shipped with the package (for example a GPU run).

    Returns the decoded JSON object, or ``None`` when the file does not exist — a chapter then says
    that no reference run is available instead of failing. The files are package data (``utils/data``),
    so a pip-installed copy has them too. ``directory`` overrides the data folder. Such files carry
    their provenance (device, torch version, date) next to the numbers; print it beside any plot.
    """
    import json

    if not isinstance(name, str) or not name or os.sep in name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a plain file name such as 'p1c03_gpu_timings', got {name!r}.")
    if not name.endswith(".json"):
        name += ".json"
    path = os.path.join(os.fspath(directory) if directory is not None else DATA_DIR, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (with its provenance), got {type(data).__name__}.")
    check_reference(data, name)
    return data


#: Keys every reference's ``provenance`` object must have (``None`` allowed for ``capability`` and
#: ``cuda`` on a CPU run).
REFERENCE_KEYS = ("device", "capability", "torch", "cuda", "date")


def check_reference(data, name: str = "reference") -> dict:
    """Check a reference measurement's schema; return it. ``ValueError`` names the missing key.

    A reference is a JSON object with a ``provenance`` object holding at least :data:`REFERENCE_KEYS`
    — the device, its compute capability, the torch and CUDA versions and the date — so that a chapter
    can say, in one sentence, where the numbers beside its live run came from.
    """
    if not isinstance(data, dict):
        raise ValueError(f"reference {name!r} must be a JSON object, got {type(data).__name__}.")
    prov = data.get("provenance")
    if not isinstance(prov, dict):
        raise ValueError(f"reference {name!r} has no 'provenance' object; save it with "
                         "utils.env.save_reference, which adds one.")
    missing = [k for k in REFERENCE_KEYS if k not in prov]
    if missing:
        raise ValueError(f"reference {name!r}: provenance lacks the key {missing[0]!r} "
                         f"(a reference records {', '.join(REFERENCE_KEYS)}).")
    return data


def reference_name(chapter: str, device=None) -> str:
    """``"<chapter>_<device-slug>"``, e.g. ``reference_name("p2c02", "cuda")`` → ``"p2c02_nvidia-h200"``."""
    if not isinstance(chapter, str) or not re.fullmatch(r"[a-z0-9]+", chapter):
        raise ValueError(f"chapter must be a short id such as 'p2c02', got {chapter!r}.")
    device = torch.device(device) if device is not None else pick_device()
    name = torch.cuda.get_device_name(_normalise(device)) if device.type == "cuda" else "cpu"
    return f"{chapter}_{device_slug(name)}"


def save_reference(name: str, data: dict, device=None, directory: str | os.PathLike | None = None) -> str:
    """Write ``data`` as the reference ``<directory>/<name>.json`` (default ``utils/data``) with its
    provenance; return the path.

    ``provenance`` is :func:`hardware` of ``device`` (the device, compute capability, torch/CUDA/cuDNN
    versions, TF32 switches, date) updated with whatever ``data["provenance"]`` already holds (a
    configuration, a command). ``name`` is a plain name, by convention ``<chapter>_<gpu-slug>``
    (:func:`reference_name`). Tensors and numpy numbers must be converted to plain Python first.
    """
    import json

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name.endswith(".json"):
        raise ValueError(f"name must be a plain name without '.json', such as 'p2c02_nvidia-h200', got {name!r}.")
    if not isinstance(data, dict):
        raise ValueError(f"data must be a dict (a JSON object), got {type(data).__name__}.")
    extra = data.get("provenance") or {}
    if not isinstance(extra, dict):
        raise ValueError(f"data['provenance'] must be a dict when given, got {type(extra).__name__}.")
    record = {**data, "provenance": {**hardware(device), **extra}}
    check_reference(record, name)
    folder = os.fspath(directory) if directory is not None else DATA_DIR
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".json")
    text = json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return path


def writing_references(device=None) -> bool:
    """True when this run should write its GPU reference: ``COURSE_WRITE_REFERENCE=1`` and a CUDA
    ``device`` (``make test-gpu`` sets it; a reader's run never writes)."""
    return os.environ.get("COURSE_WRITE_REFERENCE") == "1" and on_gpu(device)


def gpu_references(chapter: str, directory: str | os.PathLike | None = None) -> list[dict]:
    """Every committed GPU reference of ``chapter`` (files ``<chapter>_<gpu-slug>.json``), newest first.

    CPU references (``<chapter>_cpu*``) are left out. Each is checked by :func:`check_reference`;
    an empty list means none is committed.
    """
    if not isinstance(chapter, str) or not re.fullmatch(r"[a-z0-9]+", chapter):
        raise ValueError(f"chapter must be a short id such as 'p2c02', got {chapter!r}.")
    folder = os.fspath(directory) if directory is not None else DATA_DIR
    try:
        names = sorted(f[:-5] for f in os.listdir(folder) if f.startswith(chapter + "_") and f.endswith(".json"))
    except OSError:
        return []
    refs = []
    for name in names:
        if name[len(chapter) + 1:].startswith("cpu"):
            continue
        data = load_reference(name, directory=folder)
        if data is not None and data["provenance"].get("device_type", "cuda") == "cuda":
            refs.append(data)
    return sorted(refs, key=lambda d: str(d["provenance"]["date"]), reverse=True)


def latest_gpu_reference(chapter: str, directory: str | os.PathLike | None = None) -> dict | None:
    """The newest committed GPU reference of ``chapter`` (see :func:`gpu_references`), or ``None``."""
    refs = gpu_references(chapter, directory)
    return refs[0] if refs else None


def reference_sentence(ref: dict | None, what: str = "GPU reference") -> str:
    """One sentence of provenance for the reader, e.g. "The GPU reference was measured on an NVIDIA
    H200 (compute capability 9.0) with torch 2.13.0 and CUDA 12.8 on 2026-11-30."; for ``None``:
    "No GPU reference run ships with this copy of the course." """
    if ref is None:
        return f"No {what} run ships with this copy of the course."
    p = check_reference(ref)["provenance"]
    cap = f" (compute capability {p['capability']})" if p.get("capability") else ""
    cuda = f" and CUDA {p['cuda']}" if p.get("cuda") else ""
    return f"The {what} was measured on {p['device']}{cap} with torch {p['torch']}{cuda} on {p['date']}."

