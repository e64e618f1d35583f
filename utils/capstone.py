"""The capstone lab: one real data set, four causal families, one training budget, one decision.

The data is next-character prediction on Python standard-library source (:func:`utils.datasets.stdlib_text`).
Every model maps character indices ``(batch, n)`` to next-character logits ``(batch, n, vocab)`` the same
way::

    tokens -> nn.Embedding(vocab, d) -> causal backbone (batch, n, d) -> LayerNorm -> nn.Linear(d, vocab)

and only the causal backbone differs (:func:`make_backbone`):

* ``"lstm"``: one ``nn.LSTM`` layer (:func:`utils.blocks.recurrent_layer`);
* ``"transformer"``: sinusoidal positions, then ``layers`` pre-norm causal
  :class:`utils.blocks.TransformerBlock` s;
* ``"dilated cnn"``: a causal :class:`utils.conv.ConvStack`, kernel 2, dilations 1, 2, 4, …, as deep as the
  training context needs (:func:`utils.models.cnn_layers_for`);
* ``"cnn+lstm"``: the streaming hybrid :class:`utils.streaming.ConvLSTM` (causal convolutions, then an LSTM).

:func:`make_char_model` picks each family's width so that the parameter counts match a budget
(:func:`matched_width`, exact counts on the ``meta`` device). :func:`train_char_model` is the one seeded
training loop (AdamW, the same batches for every family) and times itself (training tokens per second).
:func:`truncated_context_quality` measures the dependency span a trained model *uses*: the loss and
accuracy of the same validation targets when the model sees only the last ``d`` characters, for each
``d``; :func:`span_used` reads off the shortest context that recovers most of the full context's gain.
:func:`stream_state_bytes` is what each family keeps between characters when it reads a stream, and
:func:`decide` applies the chapter's decision rule to the measured rows. The data itself is measured with
:mod:`utils.datastats` (function lengths, bracket distances).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from utils.blocks import TransformerBlock, recurrent_layer
from utils.conv import ConvStack
from utils.measure import count_parameters
from utils.models import cnn_layers_for
from utils.positional import sinusoidal
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

__all__ = [
    "CAPSTONE_FAMILIES", "CharModel", "make_backbone", "matched_width", "make_char_model", "train_char_model",
    "evaluate_char_model", "flat_ids", "truncated_context_quality", "span_used", "stream_state_bytes", "decide",
    "RUNS",
]

#: The four families of the capstone, in the order the chapter reports them.
CAPSTONE_FAMILIES = ("lstm", "transformer", "dilated cnn", "cnn+lstm")

#: Architecture settings that are not the width: the Transformer's depth, heads and feed-forward factor,
#: the hybrid's convolution front end.
DEFAULTS = {"layers": 2, "heads": 2, "ff_mult": 2, "conv_layers": 2, "conv_kernel": 3}


class _LastOutput(nn.Module):
    """An ``nn.LSTM`` (batch first) returning only its outputs ``(batch, n, d)``."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class _CausalTransformer(nn.Module):
    """Sinusoidal positions, then pre-norm causal Transformer blocks."""

    def __init__(self, d_model: int, layers: int, heads: int, ff_mult: int):
        super().__init__()
        self.d_model = d_model
        self.blocks = nn.ModuleList(TransformerBlock(d_model, heads, ff_mult * d_model, mask="causal")
                                    for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + sinusoidal(x.shape[1], self.d_model).to(x.device, x.dtype)
        for block in self.blocks:
            x = block(x)
        return x


def make_backbone(family: str, d_model: int, *, context: int, layers: int = DEFAULTS["layers"],
                  heads: int = DEFAULTS["heads"], ff_mult: int = DEFAULTS["ff_mult"],
                  conv_layers: int = DEFAULTS["conv_layers"], conv_kernel: int = DEFAULTS["conv_kernel"]) -> nn.Module:
    """The causal backbone ``(batch, n, d_model) -> (batch, n, d_model)`` of one family (module docstring).

    ``context`` is the training window: the dilated CNN gets the fewest layers whose receptive field
    covers it. ``layers``, ``heads`` and ``ff_mult`` configure the Transformer; ``conv_layers`` and
    ``conv_kernel`` the hybrid's convolutions."""
    family = check_choice("family", family, CAPSTONE_FAMILIES)
    d_model = check_positive_int("d_model", d_model)
    context = check_positive_int("context", context, hint="context is the training window in characters.")
    if family == "lstm":
        return _LastOutput(recurrent_layer("lstm", d_model))
    if family == "transformer":
        if d_model % 2 or d_model % check_positive_int("heads", heads):
            raise ValueError(f"the transformer needs an even d_model divisible by heads={heads} (sinusoidal "
                             f"positions come in sin/cos pairs), got {d_model}.")
        return _CausalTransformer(d_model, check_positive_int("layers", layers), heads,
                                  check_positive_int("ff_mult", ff_mult))
    if family == "dilated cnn":
        depth = cnn_layers_for(context, 2)
        return ConvStack(d_model, 2, depth, [2**i for i in range(depth)], padding="causal")
    from utils.streaming import ConvLSTM

    return ConvLSTM(d_model, d_model, kernel_size=check_int("conv_kernel", conv_kernel, minimum=2),
                    conv_layers=check_positive_int("conv_layers", conv_layers), dilated=True)


class CharModel(nn.Module):
    """Embedding -> causal backbone of ``family`` -> LayerNorm -> readout: tokens ``(batch, n)`` to
    next-character logits ``(batch, n, vocab_size)``; output ``t`` depends on tokens ``0 … t`` only."""

    def __init__(self, family: str, vocab_size: int, d_model: int, *, context: int, **arch):
        super().__init__()
        self.family = check_choice("family", family, CAPSTONE_FAMILIES)
        self.vocab_size = check_int("vocab_size", vocab_size, minimum=2)
        self.d_model, self.context = d_model, context
        self.embed = nn.Embedding(vocab_size, d_model)
        self.backbone = make_backbone(family, d_model, context=context, **arch)
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a (batch, n) torch.long tensor of character indices, got "
                             f"{getattr(tokens, 'shape', type(tokens).__name__)} {getattr(tokens, 'dtype', '')}.")
        return self.readout(self.norm(self.backbone(self.embed(tokens))))


def _count(family, vocab_size, d_model, context, arch) -> int:
    with torch.device("meta"):
        return count_parameters(CharModel(family, vocab_size, d_model, context=context, **arch))


def matched_width(family: str, param_budget: int, vocab_size: int, *, context: int, tolerance: float = 0.10,
                  **arch) -> int:
    """The width ``d_model`` whose :class:`CharModel` parameter count is closest to ``param_budget``.

    Counts are exact (built on the ``meta`` device). The Transformer's width stays a multiple of
    ``2 · heads``. Raises ``ValueError`` when no width comes within ``tolerance`` of the budget."""
    family = check_choice("family", family, CAPSTONE_FAMILIES)
    budget = check_positive_int("param_budget", param_budget)
    tolerance = check_positive_float("tolerance", tolerance)
    step = 2 * arch.get("heads", DEFAULTS["heads"]) if family == "transformer" else 1
    best, best_gap = None, math.inf
    width = step
    while True:                                   # counts grow with the width
        count = _count(family, vocab_size, width, context, arch)
        if abs(count - budget) < best_gap:
            best, best_gap = width, abs(count - budget)
        if count > budget:
            break
        width += step
    if best_gap > tolerance * budget:
        raise ValueError(f"no {family} width gives {budget} parameters within {tolerance:.0%} (closest: d_model="
                         f"{best}, {_count(family, vocab_size, best, context, arch)} parameters); choose a larger "
                         "param_budget.")
    return best


def make_char_model(family: str, vocab_size: int, *, param_budget: int, context: int, seed: int = 0,
                    **arch) -> CharModel:
    """A :class:`CharModel` of ``family`` near ``param_budget`` parameters, its weights drawn from random
    seed ``seed`` (without touching the global random state)."""
    width = matched_width(family, param_budget, vocab_size, context=context, **arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed, minimum=0))
        return CharModel(family, vocab_size, width, context=context, **arch)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_pairs(x, y, name: str):
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dim() == 2 and x.shape == y.shape
            and x.dtype == y.dtype == torch.long and len(x)):
        raise ValueError(f"x_{name} and y_{name} must be non-empty (windows, n) torch.long tensors of the same "
                         "shape (inputs and next characters, as utils.datasets.stdlib_text returns them).")


def train_char_model(model: CharModel, x_train: torch.Tensor, y_train: torch.Tensor, *, steps: int,
                     batch_size: int, lr: float = 3e-3, seed: int = 0, clip_norm: float = 1.0) -> dict:
    """Train ``model`` in place: ``steps`` AdamW steps, each on ``batch_size`` training windows drawn with
    replacement by a generator seeded with ``seed`` (the same windows, in the same order, for every
    family), cross-entropy over every position, gradient norm clipped to ``clip_norm``.

    Returns ``{"loss": [per-step training loss], "seconds": wall time of the loop, "tokens": steps ·
    batch_size · n, "tokens_per_s": their ratio}`` (the training throughput on this device)."""
    _check_pairs(x_train, y_train, "train")
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    clip_norm = check_positive_float("clip_norm", clip_norm)
    device = _device(model)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(len(x_train), (batch_size,), generator=gen)
        x, y = x_train[idx].to(device), y_train[idx].to(device)
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        opt.step()
        losses.append(loss.detach())
    losses = [float(v) for v in losses]            # one synchronisation, after the loop
    seconds = time.perf_counter() - start
    tokens = steps * batch_size * x_train.shape[1]
    return {"loss": losses, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


@torch.no_grad()
def evaluate_char_model(model: CharModel, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256) -> dict:
    """Mean cross-entropy (nats per character) and accuracy of ``model`` over every position of ``(x, y)``."""
    _check_pairs(x, y, "val")
    batch_size = check_positive_int("batch_size", batch_size)
    device, was_training = _device(model), model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        logits = model(xb).flatten(0, 1)
        loss_sum += float(nn.functional.cross_entropy(logits, yb.flatten(), reduction="sum"))
        correct += int((logits.argmax(-1) == yb.flatten()).sum())
    model.train(was_training)
    return {"loss": loss_sum / y.numel(), "accuracy": correct / y.numel()}


def flat_ids(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The contiguous text behind non-overlapping windows ``x`` and their next characters ``y`` (in order,
    as :func:`utils.datasets.stdlib_text` cuts its validation part): ``x`` flattened plus the last target."""
    _check_pairs(x, y, "val")
    if not torch.equal(x.flatten()[1:], y.flatten()[:-1]):
        raise ValueError("x and y are not consecutive windows of one text (y must be x shifted by one); pass the "
                         "validation windows in their original order.")
    return torch.cat([x.flatten(), y.flatten()[-1:]])


@torch.no_grad()
def truncated_context_quality(model: CharModel, ids: torch.Tensor, distances, *, stride: int = 4,
                              batch_size: int = 512) -> dict[int, dict]:
    """Loss and accuracy on the *same* targets when the model sees only the last ``d`` characters.

    The targets are the characters ``ids[t + 1]`` for ``t = D - 1, D - 1 + stride, …`` with ``D =
    max(distances)``; for each ``d`` in ``distances`` the model reads ``ids[t - d + 1 … t]`` (a window of
    ``d`` characters) and predicts from its last position. Because every ``d`` is scored on the same
    targets, the differences between contexts are paired, not sampling noise. Returns ``{d: {"loss",
    "accuracy", "targets"}}``."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype != torch.long:
        raise ValueError("ids must be a 1-D torch.long tensor of character indices (see flat_ids).")
    distances = sorted({check_positive_int("distance", d) for d in distances})
    if not distances:
        raise ValueError("distances is empty; give context lengths such as [1, 2, 4, 8].")
    stride = check_positive_int("stride", stride)
    batch_size = check_positive_int("batch_size", batch_size)
    longest = distances[-1]
    if len(ids) < longest + 1:
        raise ValueError(f"ids holds {len(ids)} characters, too few for a context of {longest} and a target.")
    ends = torch.arange(longest - 1, len(ids) - 1, stride)
    targets = ids[ends + 1]
    device, was_training = _device(model), model.training
    model.eval()
    out = {}
    for d in distances:
        windows = ids[ends.unsqueeze(1) + torch.arange(-d + 1, 1)]       # (targets, d)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(windows), batch_size):
            logits = model(windows[i:i + batch_size].to(device))[:, -1]
            t = targets[i:i + batch_size].to(device)
            loss_sum += float(nn.functional.cross_entropy(logits, t, reduction="sum"))
            correct += int((logits.argmax(-1) == t).sum())
        out[d] = {"loss": loss_sum / len(targets), "accuracy": correct / len(targets), "targets": len(targets)}
    model.train(was_training)
    return out


def span_used(curve: dict[int, dict], *, fraction: float = 0.9, key: str = "loss") -> int:
    """The dependency span a model *uses*: the shortest context ``d`` of ``curve`` (from
    :func:`truncated_context_quality`) that recovers ``fraction`` of the improvement its best context
    brings over the shortest one.

    With ``key="loss"`` (lower is better) that is the first ``d`` with ``loss(d) <= best + (1 - fraction)
    · (loss(d_min) - best)``, ``best`` the lowest loss of the curve; ``key="accuracy"`` does the same with
    higher being better. If no context beats the shortest, the shortest is returned."""
    if not isinstance(curve, dict) or not curve:
        raise ValueError("curve must be a non-empty {d: {'loss': ..., 'accuracy': ...}} dict from "
                         "truncated_context_quality.")
    check_choice("key", key, {"loss", "accuracy"})
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}.")
    ds = sorted(curve)
    sign = 1.0 if key == "loss" else -1.0
    value = {d: sign * curve[d][key] for d in ds}       # lower is better for both
    best = min(value.values())
    gain = value[ds[0]] - best
    if gain <= 0:
        return ds[0]
    threshold = best + (1 - fraction) * gain
    return next(d for d in ds if value[d] <= threshold + 1e-12)


def stream_state_bytes(family: str, d_model: int, *, context: int, layers: int = DEFAULTS["layers"],
                       heads: int = DEFAULTS["heads"], conv_layers: int = DEFAULTS["conv_layers"],
                       conv_kernel: int = DEFAULTS["conv_kernel"], bytes_per_element: int = 4) -> int:
    """Bytes a :class:`CharModel` backbone must keep between characters when it reads a stream one
    character at a time (batch 1), whatever the stream's length:

    * ``"lstm"``: ``h`` and ``c`` (:func:`utils.complexity.recurrent_state_bytes`);
    * ``"transformer"``: a sliding-window KV cache of the last ``context`` positions, every layer
      (:func:`utils.complexity.kv_cache_bytes`);
    * ``"dilated cnn"``: each layer's last ``(k - 1) · dilation`` inputs, ``d_model`` channels
      (``receptive field - 1`` positions in all);
    * ``"cnn+lstm"``: :meth:`utils.streaming.ConvLSTM.state_bytes` (its ring buffers plus ``h`` and ``c``).
    """
    from utils.complexity import kv_cache_bytes, recurrent_state_bytes
    from utils.receptive import receptive_field

    family = check_choice("family", family, CAPSTONE_FAMILIES)
    d_model = check_positive_int("d_model", d_model)
    context = check_positive_int("context", context)
    bpe = check_positive_int("bytes_per_element", bytes_per_element, "Use 2 for float16/bfloat16, 4 for float32.")
    if family == "lstm":
        return recurrent_state_bytes(1, d_model, 1, "lstm", bpe)
    if family == "transformer":
        if d_model % check_positive_int("heads", heads):
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads}).")
        return kv_cache_bytes(1, heads, context, d_model // heads, check_positive_int("layers", layers), bpe)
    if family == "dilated cnn":
        depth = cnn_layers_for(context, 2)
        return d_model * (receptive_field(2, depth, [2**i for i in range(depth)]) - 1) * bpe
    from utils.streaming import ConvLSTM

    with torch.device("meta"):
        hybrid = ConvLSTM(d_model, d_model, kernel_size=check_int("conv_kernel", conv_kernel, minimum=2),
                          conv_layers=check_positive_int("conv_layers", conv_layers), dilated=True)
    return hybrid.state_bytes(1, bpe)


def decide(rows, *, quality_margin: float = 0.05, memory_budget_bytes: int | None = None,
           latency_budget_s: float | None = None) -> dict:
    """The decision rule of the capstone, applied to measured rows (one dict per family with the keys
    ``family``, ``val_loss``, ``train_peak_bytes`` and ``latency_s``):

    1. drop the families over ``memory_budget_bytes`` (training peak) or ``latency_budget_s`` (per sample);
    2. keep those whose validation loss is within ``quality_margin`` nats per character of the best left;
    3. choose the cheapest of them to serve: the lowest latency (then the lower training peak).

    Returns ``{"choice", "feasible", "near_best", "best_loss"}`` (family names in the order of ``rows``).
    Raises ``ValueError`` when no family meets the budgets."""
    rows = list(rows)
    keys = {"family", "val_loss", "train_peak_bytes", "latency_s"}
    if not rows or not all(isinstance(r, dict) and keys <= set(r) for r in rows):
        raise ValueError(f"rows must be a non-empty list of dicts with the keys {sorted(keys)}.")
    if isinstance(quality_margin, bool) or not isinstance(quality_margin, (int, float)) or quality_margin < 0:
        raise ValueError(f"quality_margin must be a number >= 0 (nats per character), got {quality_margin!r}.")
    if memory_budget_bytes is not None:
        memory_budget_bytes = check_positive_int("memory_budget_bytes", memory_budget_bytes)
    if latency_budget_s is not None:
        latency_budget_s = check_positive_float("latency_budget_s", latency_budget_s)
    feasible = [r for r in rows
                if (memory_budget_bytes is None or r["train_peak_bytes"] <= memory_budget_bytes)
                and (latency_budget_s is None or r["latency_s"] <= latency_budget_s)]
    if not feasible:
        raise ValueError("no family meets the memory and latency budgets; relax a budget or shrink the models.")
    best = min(r["val_loss"] for r in feasible)
    near = [r for r in feasible if r["val_loss"] <= best + quality_margin]
    choice = min(near, key=lambda r: (r["latency_s"], r["train_peak_bytes"]))
    return {"choice": choice["family"], "feasible": [r["family"] for r in feasible],
            "near_best": [r["family"] for r in near], "best_loss": best}


#: The capstone's two sizes: ``"cpu"`` (the live run of the chapter on one CPU thread, about 20 s of
#: training in all) and ``"gpu"`` (switched on by itself on a CUDA device: more text, a longer context,
#: ten times the parameters, more steps and a larger batch).
RUNS = {
    "cpu": {"context": 64, "param_budget": 40_000, "steps": 150, "batch_size": 32, "lr": 1e-2,
            "max_chars": 120_000, "extra_modules": (), "stride": 12},
    "gpu": {"context": 256, "param_budget": 400_000, "steps": 1500, "batch_size": 64, "lr": 3e-3,
            "max_chars": 1_500_000, "stride": 4,
            "extra_modules": ("argparse", "difflib", "pprint", "dataclasses", "typing", "pathlib", "string",
                              "tokenize", "enum", "functools", "random", "statistics", "fractions",
                              "configparser", "csv", "gettext", "glob", "locale", "optparse", "pickle",
                              "shutil", "tempfile", "threading", "zipfile")},
}
