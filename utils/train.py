"""One training loop for every family: same optimiser, steps, batch, learning rate and data stream.

:func:`fit` trains a token classifier from :mod:`utils.models` on a task generator from :mod:`utils.tasks`
(a fresh batch every step, drawn from a seeded ``torch.Generator``: there is no fixed training set to
memorise) with AdamW, cross-entropy, and gradient-norm clipping; it returns the per-step loss and
accuracy. :func:`evaluate` measures accuracy on fresh batches from a *different* seed.
:func:`distance_sweep` trains one model per (family, distance) pair — the experiment of the learnability
lab — and returns one record per run; :func:`span_sweep` trains one model per family on spans drawn
per sequence and tests it at each distance.

``python -m utils.train --profile cpu_reference --threads 1 --out utils/data/p1c06_cpu_seeds.json`` runs the
lab over five seeds, with a learning-rate grid for every family on the copy task, and writes it with its
provenance (the committed reference the chapter reads); ``--profile gpu`` runs a larger version of the
same lab (longer sequences, larger models and budgets).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from utils.blocks import RECURRENT
from utils.measure import count_parameters
from utils.models import FAMILIES, make_model
from utils.tasks import BRACKET_TOKENS, as_generator, bracket_task, copy_task, position_copy_task
from utils.validate import check_int, check_positive_float, check_positive_int

__all__ = ["fit", "evaluate", "distance_sweep", "span_sweep", "run_experiment", "run_lab", "LAB", "VARIANTS",
           "TARGET_ACCURACY", "EVAL_SEED", "CURVE_EVERY"]

#: Seed of the evaluation batches (training streams use the ``seed`` given to :func:`fit`).
EVAL_SEED = 10_007


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_tbptt(model: nn.Module, tbptt):
    if tbptt is None:
        return None
    if getattr(model, "family", None) not in RECURRENT:
        raise ValueError(f"tbptt (truncated back-propagation through time) needs a recurrent model "
                         f"({', '.join(RECURRENT)}), got family {getattr(model, 'family', type(model).__name__)!r}; "
                         "use tbptt=None.")
    return check_positive_int("tbptt", tbptt, hint="tbptt is the number of steps a gradient may travel back.")


def _batch(task_fn, batch_size, gen, device):
    inputs, targets = task_fn(batch_size, generator=gen)
    return inputs.to(device), targets.to(device)


def fit(model: nn.Module, task_fn, steps: int, batch_size: int, lr: float, seed: int, *,
        weight_decay: float = 0.01, clip_norm: float | None = 1.0, tbptt: int | None = None,
        target_accuracy: float | None = None, window: int = 20, progress: bool = True,
        desc: str | None = None) -> dict[str, list[float]]:
    """Train ``model`` in place for ``steps`` AdamW steps on fresh batches of ``task_fn``.

    ``task_fn(batch_size, generator=g)`` returns ``(inputs, targets)`` (e.g. ``functools.partial(copy_task,
    n=32, d=8)``); batches come from a ``torch.Generator`` seeded with ``seed`` and move to the model's
    device. ``clip_norm`` clips the gradient norm (``None``: no clipping). ``tbptt=w`` trains a recurrent
    model with truncated back-propagation through time (see
    :class:`utils.models.RecurrentClassifier`). With ``target_accuracy`` (e.g. 0.99) training stops
    early once the mean training accuracy of the last ``window`` batches reaches it: the task is solved,
    and ``len(history["loss"])`` is the number of steps it took. ``progress`` shows a ``tqdm.auto`` bar
    that disappears when done. Returns ``{"loss": [...], "accuracy": [...]}``, one entry per step run,
    measured on the training batch before the update.
    """
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    seed = check_int("seed", seed, minimum=0)
    if clip_norm is not None:
        clip_norm = check_positive_float("clip_norm", clip_norm)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    tbptt = _check_tbptt(model, tbptt)
    window = check_positive_int("window", window)
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy must lie in (0, 1], got {target_accuracy}.")
    device = _model_device(model)
    gen = as_generator(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history = {"loss": [], "accuracy": []}
    model.train()
    kwargs = {} if tbptt is None else {"tbptt": tbptt}
    for _ in tqdm(range(steps), desc=desc or getattr(model, "family", "train"), disable=not progress, leave=False):
        inputs, targets = _batch(task_fn, batch_size, gen, device)
        logits = model(inputs, **kwargs)
        loss = loss_fn(logits, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        opt.step()
        history["loss"].append(float(loss.detach()))
        history["accuracy"].append(float((logits.detach().argmax(-1) == targets).float().mean()))
        recent = history["accuracy"][-window:]
        if target_accuracy is not None and len(recent) == window and sum(recent) / window >= target_accuracy:
            break
    return history


@torch.no_grad()
def evaluate(model: nn.Module, task_fn, *, batches: int = 4, batch_size: int = 256,
             seed: int = EVAL_SEED) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``batches`` fresh batches of ``task_fn`` (seeded with ``seed``)."""
    batches = check_positive_int("batches", batches)
    batch_size = check_positive_int("batch_size", batch_size)
    gen = as_generator(check_int("seed", seed, minimum=0))
    device = _model_device(model)
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    for _ in range(batches):
        inputs, targets = _batch(task_fn, batch_size, gen, device)
        logits = model(inputs)
        loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(-1) == targets).sum())
        total += targets.numel()
    model.train(was_training)
    return {"loss": loss_sum / total, "accuracy": correct / total}


TASKS = {"copy": copy_task, "position_copy": position_copy_task, "bracket": bracket_task}

#: Model variants that :func:`distance_sweep` and :func:`span_sweep` accept next to ``FAMILIES``:
#: ``name -> (family, extra make_model keywords)``. ``"lstm_fb1"`` is an LSTM whose forget-gate bias
#: starts at 1 (Gers et al. 2000; Jozefowicz et al. 2015) instead of PyTorch's small random values.
VARIANTS = {"lstm_fb1": ("lstm", {"forget_bias": 1.0})}

_LR_GRID = [3e-3, 1e-2, 3e-2]

#: The learnability lab's experiments, sized for a 2-core CPU (``"cpu"``: the notebook's live run, one
#: seed, well under a minute), its five-seed reference (``"cpu_reference"``: the committed
#: utils/data/p1c06_cpu_seeds.json, about ten minutes on one core) and a GPU (``"gpu"``: larger n and
#: budgets). A config with ``"lrs"`` trains every family once per learning rate of that grid. The
#: ``"bracket"`` experiment trains one model per family on spans drawn per sequence from
#: ``d_min … d_max`` and evaluates it at each of ``eval_distances``. ``"tbptt"`` trains the listed
#: recurrent families twice per distance: with truncation window ``window`` and with full BPTT.
LAB = {
    "cpu": {
        "copy": {"n": 24, "distances": [2, 8, 14, 22], "param_budget": 2000, "steps": 200, "batch_size": 32,
                 "lrs": [1e-2], "seeds": [0]},
        "copy_lr": {"n": 24, "distances": [22], "families": ["lstm", "lstm_fb1", "gru"], "param_budget": 2000,
                    "steps": 200, "batch_size": 32, "lrs": _LR_GRID, "seeds": [0]},
        "position_copy": {"n": 24, "distances": [8], "param_budget": 2000, "steps": 200, "batch_size": 32,
                          "lrs": [1e-2], "seeds": [0]},
        "bracket": {"n": 24, "d_min": 1, "d_max": 22, "eval_distances": [2, 6, 10, 14, 18, 22],
                    "param_budget": 2000, "steps": 400, "batch_size": 32, "lrs": [1e-2], "seeds": [0]},
        "tbptt": {"n": 24, "distances": [3, 5, 8], "families": ["lstm"], "window": 4, "param_budget": 2000,
                  "steps": 200, "batch_size": 32, "lr": 1e-2, "seeds": [0]},
    },
    "cpu_reference": {
        "copy": {"n": 24, "distances": [2, 8, 14, 22], "families": [*FAMILIES, "lstm_fb1"], "param_budget": 2000,
                 "steps": 200, "batch_size": 32, "lrs": _LR_GRID, "seeds": [0, 1, 2, 3, 4]},
        "position_copy": {"n": 24, "distances": [2, 8, 14, 22], "families": [*FAMILIES, "lstm_fb1"],
                          "param_budget": 2000, "steps": 200, "batch_size": 32, "lrs": [1e-2],
                          "seeds": [0, 1, 2, 3, 4]},
        "bracket": {"n": 24, "d_min": 1, "d_max": 22, "eval_distances": [2, 6, 10, 14, 18, 22],
                    "families": [*FAMILIES, "lstm_fb1"], "param_budget": 2000, "steps": 400, "batch_size": 32,
                    "lrs": [1e-2], "seeds": [0, 1, 2, 3, 4]},
        "tbptt": {"n": 24, "distances": [2, 3, 4, 5, 6, 8, 10, 12], "families": ["lstm", "gru"], "window": 4,
                  "param_budget": 2000, "steps": 200, "batch_size": 32, "lr": 1e-2, "seeds": [0, 1, 2, 3, 4]},
    },
    "gpu": {
        "copy": {"n": 64, "distances": [2, 8, 16, 32, 62], "families": [*FAMILIES, "lstm_fb1"],
                 "param_budget": 20000, "steps": 1000, "batch_size": 64, "lrs": [1e-3, 3e-3, 1e-2], "seeds": [0, 1]},
        "position_copy": {"n": 64, "distances": [2, 8, 16, 32, 62], "families": [*FAMILIES, "lstm_fb1"],
                          "param_budget": 20000, "steps": 1000, "batch_size": 64, "lrs": [3e-3], "seeds": [0, 1]},
        "bracket": {"n": 64, "d_min": 1, "d_max": 62, "eval_distances": [2, 8, 16, 32, 62],
                    "families": [*FAMILIES, "lstm_fb1"], "param_budget": 20000, "steps": 2000, "batch_size": 64,
                    "lrs": [3e-3], "seeds": [0, 1]},
        # the truncation experiment stays in the verified small regime, with five seeds
        "tbptt": {"n": 24, "distances": [2, 3, 4, 5, 6, 8, 10, 12], "families": ["lstm", "gru"], "window": 4,
                  "param_budget": 2000, "steps": 200, "batch_size": 32, "lr": 1e-2, "seeds": [0, 1, 2, 3, 4]},
    },
}
#: Stop a run once the mean training accuracy of its last 20 batches reaches this (the task is solved).
TARGET_ACCURACY = 0.99


def _task_shape(task: str, task_kwargs: dict) -> tuple[int, int]:
    """(vocab_size, num_classes) of a task."""
    if task == "copy":
        num_values = task_kwargs.get("num_values", 4)
        return task_kwargs.get("vocab_size", 12), num_values
    if task == "position_copy":
        num_values = task_kwargs.get("num_values", 4)
        return num_values + 1, num_values
    return len(BRACKET_TOKENS), 2


def _build_variant(name: str, vocab_size: int, num_classes: int, param_budget: int, n: int, seed: int,
                   model_kwargs: dict) -> nn.Module:
    if name in VARIANTS:
        family, extra = VARIANTS[name]
        return make_model(family, vocab_size, num_classes, param_budget=param_budget, n=n, seed=seed,
                          **extra, **model_kwargs)
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES) + list(VARIANTS)}, got {name!r}.")
    return make_model(name, vocab_size, num_classes, param_budget=param_budget, n=n, seed=seed, **model_kwargs)


def _curve(accuracy: list[float], every: int | None) -> list[float] | None:
    """Mean training accuracy over consecutive blocks of ``every`` steps (the last block may be shorter)."""
    if every is None:
        return None
    return [round(sum(accuracy[i:i + every]) / len(accuracy[i:i + every]), 4) for i in range(0, len(accuracy), every)]


def distance_sweep(task: str = "copy", *, n: int, distances, families=FAMILIES, param_budget: int, steps: int,
                   batch_size: int, lr: float, seeds=(0,), tbptt: int | None = None, device=None,
                   task_kwargs: dict | None = None, model_kwargs: dict | None = None, progress: bool = True,
                   target_accuracy: float | None = None, eval_batches: int = 4,
                   eval_batch_size: int = 256, curve_every: int | None = None) -> list[dict]:
    """Train one fresh model per (family, distance, seed) and evaluate it; one record per run.

    Every family gets the same budget, steps, batch, learning rate and data stream (``seed``); models are
    built by :func:`utils.models.make_model` with ``param_budget`` and initialised with the same
    ``seed``. ``families`` may also name a :data:`VARIANTS` entry (e.g. ``"lstm_fb1"``). ``task`` is a key
    of ``TASKS``. ``tbptt`` applies to the recurrent families (others train with full gradients);
    ``target_accuracy`` stops a run early once solved (see :func:`fit`). Records hold ``family, d, seed,
    lr, params, d_model, accuracy, loss`` (on fresh evaluation batches), ``steps_run`` and ``seconds``;
    with ``curve_every=k`` also ``curve``, the training accuracy averaged over blocks of ``k`` steps.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}.")
    if curve_every is not None:
        curve_every = check_positive_int("curve_every", curve_every)
    task_kwargs, model_kwargs = dict(task_kwargs or {}), dict(model_kwargs or {})
    vocab_size, num_classes = _task_shape(task, task_kwargs)
    runs = [(f, d, s) for f in families for d in distances for s in seeds]
    records = []
    for family, d, seed in tqdm(runs, desc=f"{task} sweep", disable=not progress, leave=False):
        task_fn = functools.partial(TASKS[task], n=n, d=d, **task_kwargs)
        task_fn(1, generator=0)                       # fail early on a bad (n, d)
        model = _build_variant(family, vocab_size, num_classes, param_budget, n, seed, model_kwargs)
        if device is not None:
            model.to(device)
        t0 = time.perf_counter()
        hist = fit(model, task_fn, steps, batch_size, lr, seed, progress=False,
                   tbptt=tbptt if model.family in RECURRENT else None, target_accuracy=target_accuracy)
        seconds = time.perf_counter() - t0
        ev = evaluate(model, task_fn, batches=eval_batches, batch_size=eval_batch_size)
        rec = {"family": family, "d": d, "seed": seed, "lr": lr, "params": count_parameters(model),
               "d_model": model.d_model, "accuracy": ev["accuracy"], "loss": ev["loss"],
               "steps_run": len(hist["loss"]), "seconds": seconds}
        if curve_every is not None:
            rec["curve"] = _curve(hist["accuracy"], curve_every)
        records.append(rec)
    return records


def span_sweep(task: str = "bracket", *, n: int, d_min: int, d_max: int, eval_distances, families=FAMILIES,
               param_budget: int, steps: int, batch_size: int, lr: float, seeds=(0,), device=None,
               model_kwargs: dict | None = None, progress: bool = True, target_accuracy: float | None = None,
               eval_batches: int = 4, eval_batch_size: int = 256, curve_every: int | None = None) -> list[dict]:
    """Train one model per (family, seed) on spans drawn per sequence, then test it at each distance.

    Training batches come from ``bracket_task(..., d=d_min, d_max=d_max)``: every sequence has its own
    span, so no fixed offset solves the task. Each trained model is then evaluated on fresh batches at
    every distance of ``eval_distances`` (one shared, seeded test set per distance for all families).
    Returns one record per (family, seed, distance) with the keys of :func:`distance_sweep`;
    ``steps_run``, ``seconds`` and ``curve`` belong to the one training run and repeat across its
    distances.
    """
    if task != "bracket":
        raise ValueError(f"span_sweep supports the 'bracket' task (the one with per-sequence spans), got {task!r}.")
    if curve_every is not None:
        curve_every = check_positive_int("curve_every", curve_every)
    bracket_task(1, n, d_min, d_max=d_max, generator=0)          # fail early on a bad (n, d_min, d_max)
    for d in eval_distances:
        bracket_task(1, n, d, generator=0)
    model_kwargs = dict(model_kwargs or {})
    vocab_size, num_classes = _task_shape(task, {})
    train_fn = functools.partial(bracket_task, n=n, d=d_min, d_max=d_max)
    records = []
    for family, seed in tqdm([(f, s) for f in families for s in seeds], desc=f"{task} span sweep",
                             disable=not progress, leave=False):
        model = _build_variant(family, vocab_size, num_classes, param_budget, n, seed, model_kwargs)
        if device is not None:
            model.to(device)
        t0 = time.perf_counter()
        hist = fit(model, train_fn, steps, batch_size, lr, seed, progress=False, target_accuracy=target_accuracy)
        seconds = time.perf_counter() - t0
        for d in eval_distances:
            ev = evaluate(model, functools.partial(bracket_task, n=n, d=d), batches=eval_batches,
                          batch_size=eval_batch_size)
            rec = {"family": family, "d": d, "seed": seed, "lr": lr, "params": count_parameters(model),
                   "d_model": model.d_model, "accuracy": ev["accuracy"], "loss": ev["loss"],
                   "steps_run": len(hist["loss"]), "seconds": seconds, "trained_on": [d_min, d_max]}
            if curve_every is not None:
                rec["curve"] = _curve(hist["accuracy"], curve_every)
            records.append(rec)
    return records


#: Training curves in the lab are recorded as the mean training accuracy of blocks of this many steps.
CURVE_EVERY = 10


def run_experiment(name: str, cfg: dict, *, seeds=None, device=None, progress: bool = True) -> list[dict]:
    """Run one experiment of a :data:`LAB` profile (``"copy"``, ``"copy_lr"``, ``"position_copy"``,
    ``"bracket"`` or ``"tbptt"``); ``seeds`` overrides the config's seeds. Every record gets ``curve``
    (training curves, blocks of :data:`CURVE_EVERY` steps); ``tbptt`` records also get ``"window"``
    (the truncation window, or ``None`` for the full-BPTT reference)."""
    cfg = dict(cfg)
    if seeds is not None:
        cfg["seeds"] = list(seeds)
    common = {"device": device, "progress": progress, "target_accuracy": TARGET_ACCURACY, "curve_every": CURVE_EVERY}
    if name == "tbptt":
        window = cfg.pop("window")
        out = []
        for w in (window, None):
            out += [{**r, "window": w} for r in distance_sweep("copy", tbptt=w, **common, **cfg)]
        return out
    lrs = cfg.pop("lrs", None) or [cfg.pop("lr")]
    cfg.pop("lr", None)
    out = []
    for lr in lrs:
        if name == "bracket":
            out += span_sweep("bracket", lr=lr, **common, **cfg)
        else:
            task = "position_copy" if name == "position_copy" else "copy"
            out += distance_sweep(task, lr=lr, **common, **cfg)
    return out


def run_lab(config: dict, *, seeds=None, device=None, progress: bool = True) -> dict[str, list[dict]]:
    """Run every experiment of one :data:`LAB` profile (see :func:`run_experiment`); ``seeds`` overrides
    the profile's seeds. Returns ``{experiment name: [records]}``."""
    return {name: run_experiment(name, cfg, seeds=seeds, device=device, progress=progress)
            for name, cfg in config.items()}


def main(argv=None) -> int:
    """Run one profile of the learnability lab and write it, with provenance, to a JSON file."""
    from utils.env import hardware, pick_device

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, help="output JSON file, e.g. utils/data/p1c06_gpu_sweep.json")
    parser.add_argument("--profile", choices=sorted(LAB), default="gpu")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest for tiny models)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device("cpu" if args.profile.startswith("cpu") else None)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    t0 = time.perf_counter()
    results = run_lab(LAB[args.profile], seeds=seeds, device=device)
    provenance = {**hardware(device), "profile": args.profile, "config": LAB[args.profile],
                  "seeds": seeds, "target_accuracy": TARGET_ACCURACY, "wall_seconds": time.perf_counter() - t0,
                  "command": "python -m utils.train " + " ".join(argv if argv is not None else sys.argv[1:])}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"provenance": provenance, **results}, f, indent=1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
