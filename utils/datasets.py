"""Small real data sets that ship inside installed packages: nothing is downloaded.

Three data shapes, one loader each, every one returning a :class:`Split` of float32/int64 tensors:

- :func:`digits`: scikit-learn's 1,797 handwritten digits, an 8 × 8 image grid (``x``: ``(N, 1, 8, 8)``
  in [0, 1], ``y``: class 0–9); a stratified random split with a fixed random seed.
- :func:`eeg`: the four-channel EEG trace in matplotlib's sample data (``eeg.dat``: 800 samples × 4
  channels of float64, 10 s, as matplotlib's *MRI with EEG* example reads it), cut into windows for
  next-step prediction (``x``: ``(N, window, 1)``, ``y``: ``(N,)``, standardised with the training
  statistics). The split is chronological: the first part of every channel trains, the last part
  validates, so that no validation value lies inside a training window.
- :func:`stdlib_text`: characters of Python standard-library modules (``inspect.getsource``) for
  next-character prediction (``x``: ``(N, context)`` character indices, ``y``: ``(N, context)`` the
  next character at each position); the first part of the text trains, the last part validates.
  The text is whatever the running Python ships, so its exact characters change with the Python version.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch

from utils.validate import check_int, check_positive_int

__all__ = ["STDLIB_MODULES", "Split", "digits", "eeg", "eeg_trace", "stdlib_source", "stdlib_text"]


@dataclass
class Split:
    """A training and a validation set, and what a model needs to know about them (``info``)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Split(x_train {tuple(self.x_train.shape)}, y_train {tuple(self.y_train.shape)}, "
                f"x_val {tuple(self.x_val.shape)}, y_val {tuple(self.y_val.shape)})")


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}.")
    return float(value)


def digits(*, val_fraction: float = 0.25, seed: int = 0, n_train: int | None = None) -> Split:
    """scikit-learn's digits as images: ``x`` ``(N, 1, 8, 8)`` float32 in [0, 1] (pixel / 16), ``y``
    ``(N,)`` int64 in 0–9.

    The split is stratified and random with random seed ``seed``; the default keeps 450 of the 1,797
    images for validation. ``n_train`` keeps only the first ``n_train`` training images (a random,
    not stratified, subset, because the training set is already shuffled), for learning curves; the
    validation set does not change with it.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    val_fraction = _check_fraction("val_fraction", val_fraction)
    seed = check_int("seed", seed, minimum=0)
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_va, y_tr, y_va = train_test_split(x, data.target, test_size=val_fraction, random_state=seed,
                                              stratify=data.target)
    if n_train is not None:
        n_train = check_positive_int("n_train", n_train)
        if n_train > len(x_tr):
            raise ValueError(f"n_train must be at most {len(x_tr)} (the training set at val_fraction="
                             f"{val_fraction}), got {n_train}.")
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    return Split(torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(), torch.from_numpy(x_va),
                 torch.from_numpy(y_va).long(), {"classes": 10, "image": (8, 8)})


EEG_SAMPLES, EEG_CHANNELS, EEG_SECONDS = 800, 4, 10.0


def eeg_trace() -> np.ndarray:
    """The raw EEG trace of matplotlib's sample data, ``(800, 4)`` float64 (time × channel, 80 Hz)."""
    from matplotlib import cbook

    with cbook.get_sample_data("eeg.dat") as f:
        raw = np.frombuffer(f.read(), dtype=np.float64)
    return raw.reshape(EEG_SAMPLES, EEG_CHANNELS).copy()


def eeg(*, window: int = 32, val_fraction: float = 0.25, channels=None) -> Split:
    """Next-step prediction on the EEG trace: each example is ``window`` consecutive samples of one
    channel (``x``: ``(N, window, 1)``) and the sample after them (``y``: ``(N,)``), both float32.

    Each channel is standardised with the mean and standard deviation of its training part. The first
    ``1 - val_fraction`` of the samples of each channel trains, the rest validates (a chronological
    split: no random seed is involved). ``info["persistence_mse"]`` is the validation mean squared error
    of predicting the last value of the window, the baseline any model must beat.
    """
    window = check_positive_int("window", window)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    trace = eeg_trace()
    channels = list(range(EEG_CHANNELS)) if channels is None else list(channels)
    if not channels or any(isinstance(c, bool) or c not in range(EEG_CHANNELS) for c in channels):
        raise ValueError(f"channels must be a non-empty list of channel numbers in 0..{EEG_CHANNELS - 1}, "
                         f"got {channels!r}.")
    cut = int(round(EEG_SAMPLES * (1 - val_fraction)))
    if min(cut, EEG_SAMPLES - cut) <= window:
        raise ValueError(f"window ({window}) must be shorter than both parts of the split ({cut} and "
                         f"{EEG_SAMPLES - cut} samples); use a smaller window or val_fraction nearer 0.5.")
    parts = {"train": ([], []), "val": ([], [])}
    for c in channels:
        series = trace[:, c]
        mean, std = series[:cut].mean(), series[:cut].std()
        series = (series - mean) / std
        for name, piece in (("train", series[:cut]), ("val", series[cut:])):
            idx = np.arange(len(piece) - window)[:, None] + np.arange(window + 1)
            windows = piece[idx]
            parts[name][0].append(windows[:, :window])
            parts[name][1].append(windows[:, window])
    xs = {k: torch.tensor(np.concatenate(v[0]), dtype=torch.float32)[..., None] for k, v in parts.items()}
    ys = {k: torch.tensor(np.concatenate(v[1]), dtype=torch.float32) for k, v in parts.items()}
    persistence = float(((xs["val"][:, -1, 0] - ys["val"]) ** 2).mean())
    return Split(xs["train"], ys["train"], xs["val"], ys["val"],
                 {"window": window, "channels": channels, "samples": EEG_SAMPLES, "hz": EEG_SAMPLES / EEG_SECONDS,
                  "persistence_mse": persistence})


STDLIB_MODULES = ("textwrap", "heapq", "bisect", "colorsys", "fnmatch", "shlex", "calendar")
"""Pure-Python standard-library modules whose source :func:`stdlib_text` reads by default."""


def stdlib_source(modules=STDLIB_MODULES) -> str:
    """The concatenated source text of ``modules`` (importable standard-library module names)."""
    import importlib

    if isinstance(modules, str) or not modules:
        raise ValueError(f"modules must be a non-empty list of module names, got {modules!r}.")
    texts = []
    for name in modules:
        try:
            texts.append(inspect.getsource(importlib.import_module(name)))
        except (ImportError, TypeError, OSError) as err:
            raise ValueError(f"cannot read the source of module {name!r} ({err}); use a pure-Python "
                             f"standard-library module such as 'textwrap'.") from None
    return "\n".join(texts)


def stdlib_text(*, context: int = 64, modules=STDLIB_MODULES, max_chars: int = 120_000,
                val_fraction: float = 0.1, seed: int = 0) -> Split:
    """Next-character prediction on Python source: ``x`` ``(N, context)`` int64 character indices,
    ``y`` ``(N, context)`` the next character at each position (``x`` shifted by one).

    The text (at most ``max_chars`` characters of ``modules``) is split once: the first
    ``1 - val_fraction`` trains, the rest validates. Each part is cut into non-overlapping windows;
    the training windows are shuffled with random seed ``seed``. ``info["vocab"]`` is the sorted list of
    characters (from the training part; characters seen only in validation map to index 0), and
    ``info["unigram_loss"]`` the validation cross-entropy (nats) of predicting the training part's
    character frequencies, the baseline a model must beat.
    """
    context = check_positive_int("context", context)
    max_chars = check_positive_int("max_chars", max_chars)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    seed = check_int("seed", seed, minimum=0)
    text = stdlib_source(modules)[:max_chars]
    cut = int(len(text) * (1 - val_fraction))
    if min(cut, len(text) - cut) <= context + 1:
        raise ValueError(f"context ({context}) must be shorter than both parts of the text ({cut} and "
                         f"{len(text) - cut} characters); raise max_chars or lower context.")
    vocab = sorted(set(text[:cut]))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([index.get(ch, 0) for ch in text], dtype=torch.long)

    def windows(part):
        n = (len(part) - 1) // context
        x = part[: n * context].view(n, context)
        y = part[1: n * context + 1].view(n, context)
        return x, y

    x_tr, y_tr = windows(ids[:cut])
    x_va, y_va = windows(ids[cut:])
    order = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(seed))
    counts = torch.bincount(ids[:cut], minlength=len(vocab)).double() + 1.0
    log_p = torch.log(counts / counts.sum())
    unigram = float(-log_p[y_va.flatten()].mean())
    return Split(x_tr[order], y_tr[order], x_va, y_va,
                 {"vocab": vocab, "context": context, "chars": len(text), "unigram_loss": unigram})
