"""Measure your data before choosing a family: its lengths ``n``, its dependency span, its padding.

Three questions, answered from the data alone, before any model is built:

**How long are the sequences?** :func:`function_lengths` cuts Python source into its functions and
methods (with ``ast``) and measures each in characters or in tokens of Python's own tokenizer;
:func:`corpus_function_lengths` does it for standard-library modules that ship with every Python.
:func:`length_percentiles` gives the mean and nearest-rank percentiles (P50, P90, P99: each one a real
length of the data, the smallest length that at least that share of the sequences does not exceed).

**How far do dependencies reach?** Three estimators, each with a significance floor so that "how far"
has an answer that does not depend on where one looks at a curve:

- :func:`autocorrelation` (real-valued series) and :func:`autocorrelation_floor`, the white-noise band
  ``z / sqrt(N)`` widened for the number of lags looked at;
- :func:`lagged_mutual_information` (discrete tokens: the dependence between ``x_t`` and ``x_{t+k}``,
  whatever its form) and :func:`mutual_information_floor`, from the G-test: for independent symbols
  ``2 · N · MI`` (nats) is chi-square distributed with ``(K_x - 1)(K_y - 1)`` degrees of freedom;
- :func:`label_mutual_information` (labelled sequences: the dependence between the label and the token
  ``k`` positions before the read-out, alone or together with the read-out token).

:func:`span_above_floor` turns a curve and its floor into one number: the largest lag still above it.
:func:`bracket_distances` measures real dependency distances of code directly (matching brackets).
:func:`planted_lag_tokens` and :func:`planted_lag_series` make sequences whose only dependency has a known
lag, with closed forms for what the estimators must find (:func:`planted_lag_mutual_information`,
:func:`planted_lag_autocorrelation`).

**What does padding cost?** :func:`random_batches` and :func:`bucketed_batches` group sequences;
:func:`padding_cost` counts, exactly, the tokens and attention-weight bytes each grouping pays for when
every batch is padded to its longest sequence.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import statistics
import tokenize
from dataclasses import dataclass

import numpy as np

from utils.validate import check_choice, check_int, check_positive_int

__all__ = [
    "CORPUS_MODULES",
    "PaddingCost",
    "autocorrelation",
    "autocorrelation_floor",
    "bracket_distances",
    "bucketed_batches",
    "corpus_function_lengths",
    "function_lengths",
    "label_mutual_information",
    "lagged_mutual_information",
    "length_percentiles",
    "mutual_information",
    "mutual_information_floor",
    "nearest_rank",
    "padding_cost",
    "planted_lag_autocorrelation",
    "planted_lag_mutual_information",
    "planted_lag_series",
    "planted_lag_tokens",
    "random_batches",
    "span_above_floor",
]

CORPUS_MODULES = ("argparse", "calendar", "configparser", "dataclasses", "difflib", "fractions", "gettext",
                  "ipaddress", "json.decoder", "pprint", "shlex", "statistics", "string", "textwrap",
                  "heapq", "bisect", "fnmatch", "colorsys")
"""Pure-Python standard-library modules whose functions make the chapter's corpus of real lengths."""

UNITS = ("tokens", "chars")
_LAYOUT = (tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE)
_OPENERS = {"(": ")", "[": "]", "{": "}"}


# --------------------------------------------------------------------------------------------------
# Lengths
# --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _tokenized(source: str) -> tuple[tuple[tokenize.TokenInfo, ...], np.ndarray]:
    """Python's tokens of ``source`` without the layout tokens (indent, dedent, line ends), and the character
    offset at which each starts. Cached: lengths and bracket distances of one module share them."""
    tokens = tuple(t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in _LAYOUT)
    line_starts = np.cumsum([0] + [len(line) for line in source.splitlines(keepends=True)])
    offsets = np.array([line_starts[t.start[0] - 1] + t.start[1] for t in tokens], dtype=np.int64)
    offsets.flags.writeable = False
    return tokens, offsets


def function_lengths(source: str, *, unit: str = "tokens") -> np.ndarray:
    """The length of every function and method of Python ``source``, one entry each, in source order.

    A *function* is every ``def`` / ``async def`` that is not nested inside another function (methods
    count; a helper defined inside a function is part of it), from its ``def`` to its last character,
    decorators excluded. ``unit="chars"`` counts characters; ``unit="tokens"`` counts the tokens of
    Python's own tokenizer (names, operators, literals, comments), layout tokens (indentation, line
    ends) left out.
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be Python source text (str), got {type(source).__name__}.")
    check_choice("unit", unit, UNITS)
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"source is not valid Python ({err.msg}, line {err.lineno}); pass the text of one "
                         "module, e.g. utils.datasets.stdlib_source(['textwrap']).") from None
    line_starts = np.cumsum([0] + [len(line) for line in source.splitlines(keepends=True)])
    spans = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = line_starts[child.lineno - 1] + child.col_offset
                end = line_starts[child.end_lineno - 1] + child.end_col_offset
                spans.append((int(start), int(end)))
            else:
                visit(child)

    visit(tree)
    if unit == "chars":
        return np.array([end - start for start, end in spans], dtype=np.int64)
    _, offsets = _tokenized(source)
    return np.array([np.searchsorted(offsets, end) - np.searchsorted(offsets, start) for start, end in spans],
                    dtype=np.int64)


def corpus_function_lengths(modules=CORPUS_MODULES, *, unit: str = "tokens") -> np.ndarray:
    """:func:`function_lengths` of every module in ``modules`` (importable standard-library names), joined.

    The source is what the running Python ships, so the exact numbers change with the Python version."""
    if isinstance(modules, str) or not modules:
        raise ValueError(f"modules must be a non-empty list of module names, got {modules!r}.")
    check_choice("unit", unit, UNITS)
    return _corpus_function_lengths(tuple(modules), unit).copy()


@functools.lru_cache(maxsize=8)
def _corpus_function_lengths(modules: tuple, unit: str) -> np.ndarray:
    """Cached: parsing and tokenizing the corpus takes seconds, and a chapter's tests ask for it again."""
    from utils.datasets import stdlib_source

    return np.concatenate([function_lengths(stdlib_source([m]), unit=unit) for m in modules])


def _lengths(lengths, name: str = "lengths") -> np.ndarray:
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of whole numbers, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer) or (arr < 1).any():
        raise ValueError(f"{name} must hold whole numbers >= 1 (one length per sequence).")
    return arr.astype(np.int64)


def nearest_rank(lengths, percentile: float) -> int:
    """The nearest-rank percentile: the smallest value that at least ``percentile`` % of ``lengths`` do not
    exceed (always one of the data's own values; ``numpy.percentile(..., method="inverted_cdf")``)."""
    arr = np.sort(_lengths(lengths))
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise ValueError(f"percentile must be a number in (0, 100], got {percentile!r}.")
    return int(arr[math.ceil(percentile / 100 * arr.size) - 1])


def length_percentiles(lengths, percentiles=(50, 90, 99)) -> dict:
    """``{"mean": …, "P50": …, "P90": …, "P99": …, "max": …}`` of ``lengths`` (nearest-rank percentiles,
    :func:`nearest_rank`; the keys follow ``percentiles``)."""
    arr = _lengths(lengths)
    out = {"mean": float(arr.mean())}
    for p in percentiles:
        out[f"P{p:g}"] = nearest_rank(arr, p)
    out["max"] = int(arr.max())
    return out


def bracket_distances(source: str, *, unit: str = "tokens") -> np.ndarray:
    """The distance ``j - i`` between every matching pair of brackets ``() [] {}`` in Python ``source``.

    Brackets are Python's operator tokens, so brackets inside strings and comments do not count. The
    distance is in tokens (as :func:`function_lengths` counts them) or characters. Each pair is a real
    dependency: a model that reads the code must know, at the closer, which opener it closes.
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be Python source text (str), got {type(source).__name__}.")
    check_choice("unit", unit, UNITS)
    try:
        tokens, offsets = _tokenized(source)
    except (tokenize.TokenError, SyntaxError) as err:
        raise ValueError(f"source cannot be tokenized as Python ({err}).") from None
    stack, out = [], []
    for i, t in enumerate(tokens):
        if t.type != tokenize.OP:
            continue
        if t.string in _OPENERS:
            stack.append(i)
        elif t.string in (")", "]", "}") and stack:
            j = stack.pop()
            out.append(i - j if unit == "tokens" else int(offsets[i] - offsets[j]))
    return np.array(out, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Span: autocorrelation
# --------------------------------------------------------------------------------------------------

def _series(x) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"x must be a series (1-D) or several series of equal length (2-D: series × time) "
                         f"with at least 3 steps, got shape {np.shape(x)}.")
    if not np.isfinite(arr).all():
        raise ValueError("x must hold finite numbers (no nan or inf).")
    return arr


def _check_max_lag(max_lag, length: int) -> int:
    max_lag = check_positive_int("max_lag", max_lag)
    if max_lag >= length:
        raise ValueError(f"max_lag must be < the series length ({length}), got {max_lag}; use "
                         f"max_lag <= {length - 1}, in practice a small fraction of it.")
    return max_lag


def autocorrelation(x, max_lag: int) -> np.ndarray:
    """The sample autocorrelation ``ρ(k)`` for ``k = 0 … max_lag`` (``ρ(0) = 1``).

    ``ρ(k) = Σ_t (x_t - m)(x_{t+k} - m) / Σ_t (x_t - m)²`` (the standard, biased estimator). For a 2-D
    ``x`` (series × time), each series is centred on its own mean and the sums are pooled over series.
    """
    arr = _series(x)
    max_lag = _check_max_lag(max_lag, arr.shape[1])
    centred = arr - arr.mean(axis=1, keepdims=True)
    denom = float((centred**2).sum())
    if denom == 0:
        raise ValueError("x is constant: its autocorrelation is undefined.")
    n = arr.shape[1]
    return np.array([1.0] + [float((centred[:, :n - k] * centred[:, k:]).sum()) / denom
                             for k in range(1, max_lag + 1)])


def _z(alpha: float, tests: int) -> float:
    """Two-sided normal quantile for ``alpha`` shared among ``tests`` tests (Bonferroni)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a probability strictly between 0 and 1, got {alpha!r}.")
    return statistics.NormalDist().inv_cdf(1 - alpha / (2 * tests))


def autocorrelation_floor(samples: int, max_lag: int, *, alpha: float = 0.01) -> float:
    """The largest ``|ρ(k)|`` that white noise of ``samples`` values reaches at any of ``max_lag`` lags
    with probability about ``1 - alpha``: ``z / sqrt(samples)``, ``z`` the two-sided normal quantile for
    ``alpha / max_lag`` (a Bonferroni correction: looking at many lags finds a few large ones by chance)."""
    samples = check_int("samples", samples, minimum=2)
    max_lag = check_positive_int("max_lag", max_lag)
    return _z(alpha, max_lag) / math.sqrt(samples)


# --------------------------------------------------------------------------------------------------
# Span: mutual information
# --------------------------------------------------------------------------------------------------

def _symbols(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a non-empty array of integer symbols (token ids), got dtype "
                         f"{arr.dtype} and shape {arr.shape}.")
    return arr.astype(np.int64)


def _codes(x) -> tuple[np.ndarray, int]:
    """``x`` as codes ``0 … K - 1`` (in the order of the sorted distinct symbols) and ``K``."""
    _, codes = np.unique(x, return_inverse=True)
    return codes.reshape(np.shape(x)), int(codes.max()) + 1


def _mi_codes(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> float:
    joint = np.bincount((a * kb + b).ravel(), minlength=ka * kb).reshape(ka, kb).astype(np.float64) / a.size
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def mutual_information(x, y) -> float:
    """The plug-in mutual information (nats) of two equally long sequences of integer symbols.

    ``MI = Σ p(a, b) log(p(a, b) / (p(a) p(b)))`` with the observed frequencies of the pairs
    ``(x[i], y[i])``. It is 0 exactly when the observed pairs factorise, and biased upwards for finite
    data: compare it with :func:`mutual_information_floor`.
    """
    x, y = _symbols(x, "x").ravel(), _symbols(y, "y").ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must pair up one to one, got {x.size} and {y.size} symbols.")
    (xi, kx), (yi, ky) = _codes(x), _codes(y)
    return _mi_codes(xi, yi, kx, ky)


def _chi2_isf(p: float, df: int) -> float:
    """Upper quantile of the chi-square distribution (Wilson–Hilferty; within 1 % for df >= 3)."""
    z = statistics.NormalDist().inv_cdf(1 - p)
    c = 2 / (9 * df)
    return df * max(1 - c + z * math.sqrt(c), 0.0) ** 3


def mutual_information_floor(symbols_x: int, symbols_y: int, pairs: int, *, tests: int = 1,
                             alpha: float = 0.01) -> float:
    """The plug-in MI (nats) that independent symbols exceed with probability about ``alpha`` in total over
    ``tests`` tests: ``χ²_{1 - alpha/tests}(df) / (2 · pairs)`` with ``df = (symbols_x - 1)(symbols_y - 1)``
    (the G-test: for independent symbols ``2 · pairs · MI`` is chi-square distributed).

    The chi-square law holds when every pair of symbols is expected several times. With many rare
    symbols (a hundred distinct characters, say) the plug-in MI of independent data stays well below this
    floor: the floor is then conservative, and a span read from it errs towards short."""
    symbols_x = check_int("symbols_x", symbols_x, minimum=2, hint="a variable with one symbol carries no information.")
    symbols_y = check_int("symbols_y", symbols_y, minimum=2, hint="a variable with one symbol carries no information.")
    pairs = check_positive_int("pairs", pairs)
    tests = check_positive_int("tests", tests)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a probability strictly between 0 and 1, got {alpha!r}.")
    return _chi2_isf(alpha / tests, (symbols_x - 1) * (symbols_y - 1)) / (2 * pairs)


def lagged_mutual_information(tokens, max_lag: int, *, alpha: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``(mi, floor)``: the mutual information between ``x_t`` and ``x_{t+k}`` for ``k = 1 … max_lag``
    (``mi[k - 1]``), and each lag's significance floor (:func:`mutual_information_floor`, Bonferroni over
    the ``max_lag`` lags).

    ``tokens``: one sequence (1-D), or several of equal length (2-D, sequence × position: pairs are taken
    within each sequence only).
    """
    arr = _symbols(tokens, "tokens")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"tokens must be 1-D or 2-D (sequence × position), got shape {arr.shape}.")
    max_lag = _check_max_lag(max_lag, arr.shape[1])
    codes, k = _codes(arr)
    mi, floor = np.empty(max_lag), np.empty(max_lag)
    for lag in range(1, max_lag + 1):
        a, b = codes[:, :-lag], codes[:, lag:]
        mi[lag - 1] = _mi_codes(a, b, k, k)
        floor[lag - 1] = mutual_information_floor(max(k, 2), max(k, 2), a.size, tests=max_lag, alpha=alpha)
    return mi, floor


def label_mutual_information(inputs, targets, *, pair_with_last: bool = False,
                             alpha: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``(mi, floor)``: how much the label says about the token ``k`` positions before the read-out.

    ``inputs`` ``(N, n)`` integer tokens, read out at the last position ``n - 1``; ``targets`` ``(N,)``
    labels. ``mi[k - 1]`` for ``k = 1 … n - 1`` is the mutual information between the label and the
    token at ``n - 1 - k`` or, with ``pair_with_last=True``, the *pair* (that token, the read-out token):
    a label decided by two tokens together (their types must match, say) is invisible to either one
    alone. ``floor`` as in :func:`lagged_mutual_information`, Bonferroni over the ``n - 1`` distances.
    """
    x = _symbols(inputs, "inputs")
    y = _symbols(targets, "targets")
    if x.ndim != 2 or x.shape[1] < 2 or y.shape != (x.shape[0],):
        raise ValueError(f"inputs must be (N, n) with n >= 2 and targets (N,), got {x.shape} and {y.shape}.")
    if not isinstance(pair_with_last, bool):
        raise ValueError(f"pair_with_last must be True or False, got {pair_with_last!r}.")
    n = x.shape[1]
    vocab = int(x.max()) + 1
    k_y = max(len(np.unique(y)), 2)
    mi, floor = np.empty(n - 1), np.empty(n - 1)
    for k in range(1, n):
        col = x[:, n - 1 - k]
        if pair_with_last:
            col = col * vocab + x[:, n - 1]
        k_x = max(len(np.unique(col)), 2)
        mi[k - 1] = mutual_information(col, y)
        floor[k - 1] = mutual_information_floor(k_x, k_y, len(y), tests=n - 1, alpha=alpha)
    return mi, floor


def span_above_floor(values, floor) -> int:
    """The largest lag ``k`` (1-based: ``values[k - 1]``) whose value is above its floor; 0 if none is.

    ``floor`` is one number or one per lag. With :func:`autocorrelation`, pass ``|ρ(1 …)|``, leaving out
    ``ρ(0) = 1``.
    """
    v = np.asarray(values, dtype=np.float64)
    f = np.broadcast_to(np.asarray(floor, dtype=np.float64), v.shape) if np.ndim(floor) == 0 else np.asarray(floor)
    if v.ndim != 1 or f.shape != v.shape:
        raise ValueError(f"values must be 1-D and floor one number or one per value, got {v.shape} and {f.shape}.")
    above = np.nonzero(v > f)[0]
    return int(above[-1] + 1) if above.size else 0


# --------------------------------------------------------------------------------------------------
# Ground truth: sequences with one planted lag
# --------------------------------------------------------------------------------------------------

def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(check_int("seed", seed, minimum=0))


def planted_lag_tokens(length: int, lag: int, *, vocab: int = 8, p: float = 0.5, seed: int = 0) -> np.ndarray:
    """Tokens whose only dependency is at distance ``lag``: ``x_t = e_{t - lag}`` with probability ``p``,
    else ``e_t``, with ``e`` independent uniform symbols ``0 … vocab - 1`` (random seed ``seed``).

    ``x_t`` and ``x_{t-lag}`` share ``e_{t-lag}`` (with probability ``p(1 - p)``); at any other distance,
    including ``2 · lag``, the two tokens are built from disjoint innovations and are independent.
    :func:`planted_lag_mutual_information` is the exact MI at ``lag``.
    """
    length = check_int("length", length, minimum=2)
    lag = check_positive_int("lag", lag)
    vocab = check_int("vocab", vocab, minimum=2)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}.")
    rng = _rng(seed)
    e = rng.integers(0, vocab, length + lag)
    copy = rng.random(length) < p
    return np.where(copy, e[:length], e[lag:]).astype(np.int64)


def planted_lag_mutual_information(vocab: int = 8, p: float = 0.5) -> float:
    """The exact MI (nats) between ``x_t`` and ``x_{t - lag}`` of :func:`planted_lag_tokens`.

    The two tokens are equal with probability ``q + (1 - q) / vocab``, ``q = p(1 - p)``, and both are
    uniform, so ``P(a, b) = q [a = b] / vocab + (1 - q) / vocab²``.
    """
    vocab = check_int("vocab", vocab, minimum=2)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}.")
    q = p * (1 - p)
    same = q / vocab + (1 - q) / vocab**2
    other = (1 - q) / vocab**2
    mi = vocab * same * math.log(same * vocab**2)
    if other > 0:
        mi += vocab * (vocab - 1) * other * math.log(other * vocab**2)
    return mi


def planted_lag_series(length: int, lag: int, *, theta: float = 0.8, seed: int = 0) -> np.ndarray:
    """A real-valued series whose only correlation is at distance ``lag``: ``x_t = e_t + θ e_{t - lag}``
    with standard normal ``e`` (random seed ``seed``). Its autocorrelation is ``θ / (1 + θ²)`` at ``lag``
    and 0 at every other non-zero lag (:func:`planted_lag_autocorrelation`)."""
    length = check_int("length", length, minimum=2)
    lag = check_positive_int("lag", lag)
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta):
        raise ValueError(f"theta must be a finite number, got {theta!r}.")
    e = _rng(seed).standard_normal(length + lag)
    return e[lag:] + theta * e[:length]


def planted_lag_autocorrelation(theta: float = 0.8) -> float:
    """``θ / (1 + θ²)``: the autocorrelation of :func:`planted_lag_series` at its lag."""
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta):
        raise ValueError(f"theta must be a finite number, got {theta!r}.")
    return theta / (1 + theta**2)


# --------------------------------------------------------------------------------------------------
# Padding and length bucketing
# --------------------------------------------------------------------------------------------------

def random_batches(count: int, batch_size: int, *, seed: int = 0) -> list[np.ndarray]:
    """The indices ``0 … count - 1`` shuffled (random seed ``seed``) and cut into batches of
    ``batch_size`` (the last one may be smaller)."""
    count = check_positive_int("count", count)
    batch_size = check_positive_int("batch_size", batch_size)
    order = _rng(seed).permutation(count)
    return [order[i:i + batch_size] for i in range(0, count, batch_size)]


def bucketed_batches(lengths, batch_size: int, *, seed: int = 0) -> list[np.ndarray]:
    """Length bucketing: the indices sorted by length, longest first (ties in index order), and cut into
    batches of ``batch_size``, so each batch holds sequences of similar length and a smaller last batch
    holds the shortest ones; the *order of the batches* is then shuffled (random seed ``seed``), as a
    training loop would."""
    arr = _lengths(lengths)
    batch_size = check_positive_int("batch_size", batch_size)
    order = np.argsort(-arr, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, arr.size, batch_size)]
    return [batches[i] for i in _rng(seed).permutation(len(batches))]


@dataclass(frozen=True)
class PaddingCost:
    """What one epoch pays when each batch is padded to its longest sequence.

    ``real_tokens``: the sum of the lengths; ``padded_tokens``: the sum over batches of
    ``batch size × longest length``; ``attention_bytes_total``: the attention weights of every batch
    (``Σ B · h · n_max² · bytes``, one layer); ``attention_bytes_peak``: the largest batch's;
    ``attention_bytes_real``: what the sequences alone need (``Σ h · n² · bytes``, no padding)."""

    real_tokens: int
    padded_tokens: int
    attention_bytes_total: int
    attention_bytes_peak: int
    attention_bytes_real: int

    @property
    def wasted_tokens(self) -> int:
        return self.padded_tokens - self.real_tokens

    @property
    def waste_fraction(self) -> float:
        """The share of the padded tokens that are padding."""
        return self.wasted_tokens / self.padded_tokens


def padding_cost(lengths, batches, *, heads: int = 1, bytes_per_element: int = 2) -> PaddingCost:
    """Count, exactly, the tokens and attention-weight bytes of ``batches`` (lists of indices into
    ``lengths``, each index once) padded to their longest member. Attention bytes follow
    :func:`utils.complexity.attention_weights_bytes` (one layer, ``heads`` heads)."""
    from utils.complexity import attention_weights_bytes

    arr = _lengths(lengths)
    heads = check_positive_int("heads", heads)
    bytes_per_element = check_positive_int("bytes_per_element", bytes_per_element)
    batches = [np.asarray(b, dtype=np.int64) for b in batches]
    seen = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    if seen.size != arr.size or not np.array_equal(np.sort(seen), np.arange(arr.size)):
        raise ValueError(f"batches must hold every index 0 … {arr.size - 1} of lengths exactly once, got "
                         f"{seen.size} indices.")
    padded = total = peak = 0
    for b in batches:
        longest = int(arr[b].max())
        padded += b.size * longest
        weights = attention_weights_bytes(int(b.size), heads, longest, bytes_per_element)
        total += weights
        peak = max(peak, weights)
    real_attention = int(sum(attention_weights_bytes(1, heads, int(n), bytes_per_element) for n in arr))
    return PaddingCost(int(arr.sum()), padded, total, peak, real_attention)
