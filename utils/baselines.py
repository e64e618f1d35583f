"""The baseline playbook: one small model per family, one training budget, chosen on the full objective.

Every model maps a float tensor ``(batch, n, f)`` — ``n`` rows (time steps, image rows) of ``f`` features
(pixels of a row, one-hot tokens) — to class logits ``(batch, num_classes)``:

* ``"linear"``: flatten, one ``nn.Linear`` (multinomial logistic regression: the non-deep baseline; its
  size is fixed by ``n·f·C + C``, not by the budget);
* ``"cnn"``: the grid as a one-channel image, two blocks ``Conv2d(3×3) → ReLU → MaxPool2d(2)``, flatten,
  ``nn.Linear`` (needs ``n, f >= 4``);
* ``"lstm"``: one ``nn.LSTM`` over the ``n`` rows, read at its last state;
* ``"transformer"``: ``nn.Linear(f, d)`` plus a learned position per row, one pre-norm
  :class:`utils.blocks.TransformerBlock` (two heads, no mask), mean over positions, LayerNorm, readout.

:func:`make_baseline` picks the width of ``cnn``, ``lstm`` and ``transformer`` so that the parameter count
is closest to ``param_budget`` (:func:`width_for_budget`, exact counts on the ``meta`` device).
:func:`train_baseline` trains with :func:`utils.train.fit` — AdamW, ``steps`` batches of ``batch_size``
drawn with replacement from the training set by a seeded generator — so the budget is the same number of
samples seen for every family. :func:`metrics` gives accuracy, macro-F1 and the confusion matrix;
:func:`latency_per_sample_s` times one sample at batch 1 (:func:`utils.measure.time_best_s`);
:func:`serving_cost_per_million` turns FLOPs per sample (:func:`utils.measure.count_flops`) into dollars per
million requests at a stated sustained throughput and hourly price. :func:`run_playbook` does all of it per
family and returns one :class:`Result` each; :func:`select` picks one on an :class:`Objective` (quality,
minus a price per millisecond and per dollar, under optional hard limits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from utils.blocks import TransformerBlock
from utils.measure import count_flops, count_parameters, time_best_s
from utils.train import fit
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

__all__ = [
    "BASELINE_FAMILIES", "make_baseline", "width_for_budget", "train_baseline", "metrics", "macro_f1",
    "latency_per_sample_s", "serving_cost_per_million", "Result", "Objective", "score", "run_playbook", "select",
]

#: The families of the playbook, the non-deep baseline first.
BASELINE_FAMILIES = ("linear", "cnn", "lstm", "transformer")

_HEADS = 2


class _Linear(nn.Module):
    def __init__(self, n, f, num_classes, width=None):
        super().__init__()
        self.readout = nn.Linear(n * f, num_classes)

    def forward(self, x):
        return self.readout(x.flatten(1))


class _CNN(nn.Module):
    def __init__(self, n, f, num_classes, width):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.readout = nn.Linear(width * (n // 4) * (f // 4), num_classes)

    def forward(self, x):
        return self.readout(self.features(x.unsqueeze(1)).flatten(1))


class _LSTM(nn.Module):
    def __init__(self, n, f, num_classes, width):
        super().__init__()
        self.lstm = nn.LSTM(f, width, batch_first=True)
        self.readout = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.readout(self.lstm(x)[0][:, -1])


class _Transformer(nn.Module):
    def __init__(self, n, f, num_classes, width):
        super().__init__()
        self.embed = nn.Linear(f, width)
        self.position = nn.Parameter(torch.zeros(n, width))
        nn.init.normal_(self.position, std=0.02)
        self.block = TransformerBlock(width, _HEADS, 2 * width)
        self.norm = nn.LayerNorm(width)
        self.readout = nn.Linear(width, num_classes)

    def forward(self, x):
        h = self.block(self.embed(x) + self.position)
        return self.readout(self.norm(h.mean(dim=1)))


_CLASSES = {"linear": _Linear, "cnn": _CNN, "lstm": _LSTM, "transformer": _Transformer}


def _check_shape(input_shape, num_classes):
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 2):
        raise ValueError(f"input_shape must be (n, f): rows and features per row, got {input_shape!r}.")
    n = check_positive_int("n (input_shape[0])", input_shape[0])
    f = check_positive_int("f (input_shape[1])", input_shape[1])
    num_classes = check_int("num_classes", num_classes, minimum=2, hint="a classifier needs two classes or more.")
    return n, f, num_classes


def _build(family, n, f, num_classes, width):
    if family == "cnn" and (n < 4 or f < 4):
        raise ValueError(f"the 'cnn' baseline pools twice by 2, so it needs n, f >= 4, got ({n}, {f}).")
    return _CLASSES[family](n, f, num_classes, width)


def _count(family, n, f, num_classes, width) -> int:
    with torch.device("meta"):
        return count_parameters(_build(family, n, f, num_classes, width))


def width_for_budget(family: str, param_budget: int, input_shape, num_classes: int, *, max_width: int = 512) -> int:
    """The width (channels, hidden units, ``d_model``) whose parameter count is closest to ``param_budget``.

    The transformer's width stays even (two heads). ``"linear"`` has no width: it returns 0.
    """
    family = check_choice("family", family, set(BASELINE_FAMILIES))
    param_budget = check_positive_int("param_budget", param_budget)
    n, f, num_classes = _check_shape(input_shape, num_classes)
    if family == "linear":
        return 0
    step = _HEADS if family == "transformer" else 1
    best, best_gap = step, math.inf
    for w in range(step, check_positive_int("max_width", max_width) + 1, step):   # counts grow with w
        count = _count(family, n, f, num_classes, w)
        if abs(count - param_budget) < best_gap:
            best, best_gap = w, abs(count - param_budget)
        if count > param_budget:
            break
    return best


def make_baseline(family: str, input_shape, num_classes: int, *, param_budget: int, seed: int = 0) -> nn.Module:
    """A baseline of ``family`` for inputs ``(batch, *input_shape)`` near ``param_budget`` parameters.

    Weights are initialised from ``torch.manual_seed(seed)``; ``model.family`` names the family. Raises
    ``ValueError`` for an unknown family, a bad shape, or a budget no width comes within 25 % of."""
    family = check_choice("family", family, set(BASELINE_FAMILIES))
    n, f, num_classes = _check_shape(input_shape, num_classes)
    width = width_for_budget(family, param_budget, (n, f), num_classes)
    if family != "linear":
        got = _count(family, n, f, num_classes, width)
        if abs(got - param_budget) > 0.25 * param_budget:
            raise ValueError(f"no {family} width comes within 25 % of param_budget={param_budget} "
                             f"(closest: width {width}, {got} parameters); change the budget.")
    torch.manual_seed(check_int("seed", seed, minimum=0))
    model = _build(family, n, f, num_classes, width)
    model.family = family
    return model


def _check_data(x, y, name):
    if not (isinstance(x, torch.Tensor) and x.dim() == 3 and x.is_floating_point()):
        raise ValueError(f"x_{name} must be a float tensor (samples, n, f), got "
                         f"{getattr(x, 'shape', type(x).__name__)}.")
    if not (isinstance(y, torch.Tensor) and y.dim() == 1 and y.dtype == torch.long and len(y) == len(x)):
        raise ValueError(f"y_{name} must be a 1-D long tensor of labels, one per sample of x_{name}.")
    if len(x) == 0:
        raise ValueError(f"x_{name} is empty.")


def train_baseline(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, *, steps: int,
                   batch_size: int, lr: float = 3e-3, seed: int = 0) -> dict[str, list[float]]:
    """Train ``model`` in place on ``steps`` batches of ``batch_size`` samples drawn with replacement.

    The budget is ``steps × batch_size`` samples seen, the same for every family; the draws come from a
    generator seeded with ``seed``. Returns :func:`utils.train.fit`'s history."""
    _check_data(x_train, y_train, "train")

    def draw(size, generator=None):
        idx = torch.randint(len(x_train), (size,), generator=generator)
        return x_train[idx], y_train[idx]

    return fit(model, draw, steps, batch_size, lr, seed, progress=False)


def _check_labels(y_true, y_pred, num_classes):
    y_true, y_pred = torch.as_tensor(y_true).long().flatten(), torch.as_tensor(y_pred).long().flatten()
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and of the same length, got {len(y_true)} "
                         f"and {len(y_pred)}.")
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes:
        raise ValueError(f"labels must lie in 0 … {num_classes - 1}.")
    return y_true, y_pred, num_classes


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """The unweighted mean over classes of ``F1 = 2·TP / (2·TP + FP + FN)`` (a class never present and
    never predicted counts as 1; one present but never predicted counts as 0)."""
    y_true, y_pred, num_classes = _check_labels(y_true, y_pred, num_classes)
    cm = torch.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).view(num_classes, num_classes)
    return _macro_f1(cm)


def _macro_f1(cm: torch.Tensor) -> float:
    tp = cm.diag().double()
    denom = 2 * tp + (cm.sum(0) - cm.diag()) + (cm.sum(1) - cm.diag())
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.ones_like(tp))
    return float(f1.mean())


@torch.no_grad()
def metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict:
    """``{"accuracy", "macro_f1", "confusion"}`` of ``model`` on ``(x, y)``; ``confusion[i, j]`` counts
    samples of true class ``i`` predicted as ``j``."""
    _check_data(x, y, "val")
    was_training = model.training
    model.eval()
    pred = model(x).argmax(-1)
    model.train(was_training)
    y, pred, num_classes = _check_labels(y, pred, num_classes)
    cm = torch.bincount(y * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)
    return {"accuracy": float((pred == y).float().mean()), "macro_f1": _macro_f1(cm), "confusion": cm}


@torch.no_grad()
def latency_per_sample_s(model: nn.Module, sample: torch.Tensor, *, repeats: int = 3,
                         min_run_time: float = 0.05) -> float:
    """Seconds for one request of one sample (batch 1, no gradients): the best of ``repeats`` medians."""
    if not (isinstance(sample, torch.Tensor) and sample.dim() == 3 and len(sample) == 1):
        raise ValueError(f"sample must be one input of shape (1, n, f), got {getattr(sample, 'shape', sample)!r}.")
    model.eval()
    return time_best_s(lambda: model(sample), repeats=repeats, min_run_time=min_run_time)


def serving_cost_per_million(flops_per_sample: int, *, flops_per_s: float, dollars_per_hour: float) -> float:
    """Dollars per million requests if a machine costing ``dollars_per_hour`` sustains ``flops_per_s``:
    ``1e6 · flops_per_sample / flops_per_s · dollars_per_hour / 3600``. A FLOP-bound estimate: tiny models
    are bound by per-call overhead instead, which the measured latency shows."""
    flops_per_sample = check_int("flops_per_sample", flops_per_sample, minimum=0)
    flops_per_s = check_positive_float("flops_per_s", flops_per_s)
    dollars_per_hour = check_positive_float("dollars_per_hour", dollars_per_hour)
    return 1e6 * flops_per_sample / flops_per_s * dollars_per_hour / 3600


@dataclass(frozen=True)
class Result:
    """One baseline's row of the playbook table."""

    family: str
    params: int
    accuracy: float
    macro_f1: float
    latency_ms: float
    flops: int
    cost_per_million: float


@dataclass(frozen=True)
class Objective:
    """Score = ``quality`` (``"macro_f1"`` or ``"accuracy"``) − ``per_ms`` × latency in ms − ``per_dollar`` ×
    dollars per million requests; results over ``max_latency_ms`` or under ``min_quality`` are infeasible."""

    quality: str = "macro_f1"
    per_ms: float = 0.0
    per_dollar: float = 0.0
    max_latency_ms: float | None = None
    min_quality: float | None = None

    def __post_init__(self):
        check_choice("quality", self.quality, {"macro_f1", "accuracy"})
        for name in ("per_ms", "per_dollar"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (a price per unit), got {value!r}.")
        if self.max_latency_ms is not None:
            check_positive_float("max_latency_ms", self.max_latency_ms)
        if self.min_quality is not None and not 0 <= self.min_quality <= 1:
            raise ValueError(f"min_quality must lie in [0, 1], got {self.min_quality!r}.")


def score(result: Result, objective: Objective) -> float:
    """The objective's score of one result (``-inf`` if it breaks a hard limit)."""
    if not isinstance(result, Result) or not isinstance(objective, Objective):
        raise ValueError("score needs a Result and an Objective.")
    quality = getattr(result, objective.quality)
    if objective.max_latency_ms is not None and result.latency_ms > objective.max_latency_ms:
        return -math.inf
    if objective.min_quality is not None and quality < objective.min_quality:
        return -math.inf
    return quality - objective.per_ms * result.latency_ms - objective.per_dollar * result.cost_per_million


def select(results, objective: Objective) -> Result:
    """The result with the highest :func:`score` (ties: fewer parameters). Raises ``ValueError`` if
    ``results`` is empty or holds no :class:`Result`, or if none meets the objective's hard limits."""
    if not isinstance(objective, Objective):
        raise ValueError(f"objective must be an Objective, got {type(objective).__name__}.")
    results = list(results)
    if not results or not all(isinstance(r, Result) for r in results):
        raise ValueError("results must be a non-empty list of Result (from run_playbook).")
    best = max(results, key=lambda r: (score(r, objective), -r.params))
    if score(best, objective) == -math.inf:
        raise ValueError("no result meets the objective's limits (max_latency_ms / min_quality); relax them.")
    return best


def run_playbook(x_train, y_train, x_val, y_val, num_classes: int, *, families=BASELINE_FAMILIES,
                 param_budget: int, steps: int, batch_size: int, lr: float = 3e-3, seed: int = 0,
                 flops_per_s: float = 1e12, dollars_per_hour: float = 1.0, min_run_time: float = 0.05) -> list[Result]:
    """Build, train and measure one baseline per family at one budget; one :class:`Result` per family.

    Quality on ``(x_val, y_val)``; latency of one sample at batch 1; FLOPs of one sample counted by
    :func:`utils.measure.count_flops`; cost by :func:`serving_cost_per_million` at ``flops_per_s`` and
    ``dollars_per_hour`` (defaults: 1 TFLOP/s sustained for one dollar an hour)."""
    _check_data(x_train, y_train, "train")
    _check_data(x_val, y_val, "val")
    families = tuple(families)
    if not families:
        raise ValueError("families must name at least one of " + ", ".join(BASELINE_FAMILIES) + ".")
    shape = tuple(x_train.shape[1:])
    results = []
    for family in families:
        model = make_baseline(family, shape, num_classes, param_budget=param_budget, seed=seed)
        train_baseline(model, x_train, y_train, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
        m = metrics(model, x_val, y_val, num_classes)
        sample = x_val[:1]
        flops = count_flops(model, sample)
        results.append(Result(
            family=family, params=count_parameters(model), accuracy=m["accuracy"], macro_f1=m["macro_f1"],
            latency_ms=1e3 * latency_per_sample_s(model, sample, min_run_time=min_run_time), flops=int(flops),
            cost_per_million=serving_cost_per_million(int(flops), flops_per_s=flops_per_s,
                                                      dollars_per_hour=dollars_per_hour)))
    return results
