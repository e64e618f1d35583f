"""Where a notebook runs: the device, the hardware description, and CPU-vs-GPU sweep sizes.

Every chapter calls :func:`pick_device` once. Small configurations run on a laptop CPU in well under a
minute; :func:`sweep` returns the larger configuration *by itself* when a CUDA GPU is present (for
example on Colab), so that nobody has to edit a notebook to scale it up.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """Return ``cuda`` when a GPU is available, else ``cpu``.

    ``prefer`` (or the environment variable ``COURSE_DEVICE``) forces a choice, e.g. ``"cpu"`` to
    reproduce the CPU numbers of the book on a GPU machine.
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
    """Pick the sweep for this device: ``gpu`` on CUDA, ``cpu`` otherwise."""
    return gpu if on_gpu(device) else cpu


def hardware(device: torch.device | str | None = None) -> dict:
    """A small provenance record to print next to every timing or memory figure."""
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": _dt.date.today().isoformat(),
    }


def hardware_label(device: torch.device | str | None = None) -> str:
    """One line for a figure title: device, thread count and torch version."""
    h = hardware(device)
    if h["device_type"] == "cuda":
        return f"{h['device']} · torch {h['torch']}"
    return f"CPU ({h['cpu_count']} cores, {h['threads']} torch threads) · torch {h['torch']}"


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
    return data
