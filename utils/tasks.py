"""Synthetic sequence tasks whose *dependency distance* is a knob: a copy/recall task and a bracket task.

Both tasks are sequence classification with the answer read at the **last** position ``n - 1``, and both
put the one token that decides the answer exactly ``d`` positions before it, at ``n - 1 - d``. Everything
else is filler that the model must carry the decisive information past. So ``d`` is the length of the
dependency the model has to learn, independent of ``n``.

* :func:`copy_task` (recall). Vocabulary ``0 … vocab_size-1`` split into three groups::

      0                                   the query token, always at position n-1
      1 … vocab_size-num_values-1         distractors, drawn uniformly for every other position
      vocab_size-num_values … vocab_size-1  values: exactly one, at position n-1-d

  The target is the index of the value (``0 … num_values-1``); chance accuracy is ``1/num_values``.

* :func:`position_copy_task` (recall by position). The same query at ``n - 1``, but every other position
  holds a symbol from **one** alphabet ``1 … num_values``, and the target is the symbol at ``n-1-d``. The
  value cannot be recognised by what it is — the same symbols appear everywhere — only by *where* it is,
  so a model must know positions (order) to solve it. Chance accuracy is ``1/num_values``.

* :func:`bracket_task` (balanced or not). Tokens ``_ ( ) [ ]`` (ids ``0 … 4``). A *critical* opening
  bracket sits at ``n-1-d`` and the last token ``n-1`` is a closing bracket; every other position holds
  balanced material (filler and complete pairs, nested at most two deep). The whole string is balanced
  iff the last bracket has the type of the critical opener, so the label (``1`` balanced, ``0`` not) is
  decided by a matching pair whose span is exactly ``d``. Chance accuracy is 1/2.

Every generator takes ``batch_size`` first and a ``generator`` keyword (a ``torch.Generator``, an ``int``
seed, or ``None`` for torch's global RNG), so that ``functools.partial(copy_task, n=32, d=8)`` is a
``task_fn(batch_size, generator=...)`` for :func:`utils.train.fit`.
"""

from __future__ import annotations

import functools
import itertools

import torch

from utils.validate import check_int, check_positive_int

__all__ = [
    "COPY_QUERY", "BRACKET_TOKENS", "copy_task", "copy_task_layout", "position_copy_task", "bracket_task",
    "balanced_blocks",
    "is_balanced", "render_tokens", "as_generator",
]

#: Token id of the query that closes every copy-task sequence.
COPY_QUERY = 0
#: Symbols of the bracket task, indexed by token id.
BRACKET_TOKENS = ("_", "(", ")", "[", "]")
_OPEN = {1: 2, 3: 4}        # opener id -> matching closer id


def as_generator(generator=None) -> torch.Generator | None:
    """A ``torch.Generator`` from a generator, an ``int`` seed, or ``None`` (torch's global RNG)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    seed = check_int("generator", generator, minimum=0,
                     hint="pass a torch.Generator, a non-negative int seed, or None for the global RNG.")
    return torch.Generator().manual_seed(seed)


def _check_distance(n: int, d: int, task: str) -> tuple[int, int]:
    n = check_int("n", n, minimum=2, hint=f"the {task} needs at least the decisive token and the readout.")
    d = check_int("d", d, minimum=1, hint="d counts positions between the decisive token and the readout "
                                          "(position n-1); d = 1 is the token just before it.")
    if d >= n:
        raise ValueError(f"d must be < n (the decisive token sits at position n-1-d >= 0), got d={d}, n={n}; "
                         f"use d <= {n - 1} or a longer sequence n >= {d + 1}.")
    return n, d


def copy_task_layout(num_values: int = 4, vocab_size: int = 12) -> dict[str, range]:
    """The token groups of :func:`copy_task`: ``{"query": range(0, 1), "distractors": …, "values": …}``."""
    num_values = check_int("num_values", num_values, minimum=2, hint="with one value there is nothing to recall.")
    vocab_size = check_positive_int("vocab_size", vocab_size)
    if vocab_size < num_values + 2:
        raise ValueError(f"vocab_size={vocab_size} is too small for {num_values} values: the copy task needs "
                         f"one query token, at least one distractor and the values; use vocab_size >= "
                         f"{num_values + 2}.")
    return {"query": range(COPY_QUERY, COPY_QUERY + 1),
            "distractors": range(1, vocab_size - num_values),
            "values": range(vocab_size - num_values, vocab_size)}


def copy_task(batch_size: int, n: int, d: int, *, num_values: int = 4, vocab_size: int = 12,
              generator=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall the one *value* token that sits ``d`` positions before the query at the end.

    Returns ``inputs`` of shape ``(batch_size, n)`` (``torch.long``) and ``targets`` of shape
    ``(batch_size,)`` in ``0 … num_values-1``. Position ``n-1`` holds :data:`COPY_QUERY`, position
    ``n-1-d`` a value token (``vocab_size - num_values + target``), every other position a distractor drawn
    uniformly. Raises ``ValueError`` for ``d < 1``, ``d >= n`` or a vocabulary too small for the values.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    n, d = _check_distance(n, d, "copy task")
    layout = copy_task_layout(num_values, vocab_size)
    gen = as_generator(generator)
    distractors = layout["distractors"]
    inputs = torch.randint(distractors.start, distractors.stop, (batch_size, n), generator=gen)
    targets = torch.randint(0, num_values, (batch_size,), generator=gen)
    inputs[:, n - 1 - d] = layout["values"].start + targets
    inputs[:, n - 1] = COPY_QUERY
    return inputs.to(device), targets.to(device)


def position_copy_task(batch_size: int, n: int, d: int, *, num_values: int = 4, generator=None,
                       device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall the symbol that sits ``d`` positions before the query, where every position holds a symbol.

    Vocabulary ``0 … num_values``: ``0`` is :data:`COPY_QUERY` (at position ``n-1``), ``1 … num_values``
    the symbols, drawn uniformly and independently at every position ``0 … n-2``. The target is the
    symbol at ``n-1-d``, as a class ``0 … num_values-1`` (symbol id minus 1). Unlike :func:`copy_task`,
    the decisive token looks exactly like the others (the "distractors" and the value share one
    alphabet), so only its *position* identifies it. Since ``n`` is fixed, that position is both "``d``
    before the query" and the absolute position ``n-1-d``: a model may use either. Raises ``ValueError``
    for ``d < 1``, ``d >= n`` or ``num_values < 2``.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    n, d = _check_distance(n, d, "position copy task")
    num_values = check_int("num_values", num_values, minimum=2, hint="with one symbol there is nothing to recall.")
    gen = as_generator(generator)
    inputs = torch.randint(1, num_values + 1, (batch_size, n), generator=gen)
    inputs[:, n - 1] = COPY_QUERY
    targets = inputs[:, n - 1 - d] - 1
    return inputs.to(device), targets.to(device)


def is_balanced(tokens) -> bool:
    """True iff a bracket-task sequence (ids ``0 … 4``) is a well-nested word (fillers ignored)."""
    stack = []
    for t in (int(x) for x in tokens):
        if t in _OPEN:
            stack.append(t)
        elif t in (2, 4):
            if not stack or _OPEN[stack.pop()] != t:
                return False
        elif t != 0:
            raise ValueError(f"bracket tokens are ids 0 … 4 ({' '.join(BRACKET_TOKENS)}), got {t}.")
    return not stack


@functools.cache
def _balanced_words(length: int) -> tuple[tuple[int, ...], ...]:
    return tuple(w for w in itertools.product(range(len(BRACKET_TOKENS)), repeat=length) if is_balanced(w))


def balanced_blocks(length: int) -> torch.Tensor:
    """Every balanced word of exactly ``length`` bracket-task tokens, one per row (``(count, length)``).

    Used as building blocks: a segment of ``m`` positions is filled with ``m // 4`` random blocks of
    length 4 (nesting at most two deep) and one block of length ``m % 4``. The enumeration is cached;
    each call returns a new tensor, so a caller may change it freely.
    """
    length = check_int("length", length, minimum=0, hint="a block length is a number of positions.")
    if length > 6:
        raise ValueError(f"blocks are enumerated exhaustively; use length <= 6, got {length}.")
    words = _balanced_words(length)
    return torch.tensor(words, dtype=torch.long).reshape(len(words), length)


def _balanced_segment(batch_size: int, m: int, gen) -> torch.Tensor:
    parts = []
    quads, rest = divmod(m, 4)
    if quads:
        lib = balanced_blocks(4)
        parts.append(lib[torch.randint(0, len(lib), (batch_size, quads), generator=gen)].reshape(batch_size, 4 * quads))
    if rest:
        lib = balanced_blocks(rest)
        parts.append(lib[torch.randint(0, len(lib), (batch_size,), generator=gen)])
    return torch.cat(parts, dim=1) if parts else torch.empty(batch_size, 0, dtype=torch.long)


def bracket_task(batch_size: int, n: int, d: int, *, d_max: int | None = None, generator=None,
                 device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced-or-not classification whose deciding bracket pair spans exactly ``d`` positions.

    Returns ``inputs`` ``(batch_size, n)`` (``torch.long``, ids of :data:`BRACKET_TOKENS`) and ``targets``
    ``(batch_size,)``: ``1`` if the sequence is balanced, ``0`` if not (half of each on average). The
    critical opener sits at ``n-1-d``, the last token is a closer of the same type (balanced) or the other
    type (not balanced); positions ``0 … n-2-d`` and the ``d-1`` positions inside the pair are filled with
    balanced blocks (:func:`balanced_blocks`).

    With a fixed ``d`` the critical opener is always at the same offset, so a model can solve the task by
    comparing the token at ``n-1-d`` with the last one, without any bracket matching. ``d_max`` removes
    that shortcut: every sequence then draws its own span uniformly from ``d … d_max`` (inclusive), the
    critical opener can be at any of those offsets, and the model must find the one opener left unmatched
    by the balanced material around it. Raises ``ValueError`` for ``d < 1``, ``d >= n``, or ``d_max``
    outside ``d … n-1``.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    n, d = _check_distance(n, d, "bracket task")
    gen = as_generator(generator)
    if d_max is not None:
        d_max = check_int("d_max", d_max, minimum=d, hint="d_max is the largest span drawn; use d <= d_max <= n-1.")
        _check_distance(n, d_max, "bracket task")
        spans = torch.randint(d, d_max + 1, (batch_size,), generator=gen)
        inputs = torch.empty(batch_size, n, dtype=torch.long)
        targets = torch.empty(batch_size, dtype=torch.long)
        for span in spans.unique().tolist():
            rows = (spans == span).nonzero().squeeze(1)
            inputs[rows], targets[rows] = bracket_task(len(rows), n, span, generator=gen)
        return inputs.to(device), targets.to(device)
    p = n - 1 - d
    opener = 1 + 2 * torch.randint(0, 2, (batch_size,), generator=gen)          # 1 "(" or 3 "["
    targets = torch.randint(0, 2, (batch_size,), generator=gen)
    closer_type = torch.where(targets == 1, opener, 4 - opener)                  # same or other type
    inputs = torch.cat([_balanced_segment(batch_size, p, gen), opener.unsqueeze(1),
                        _balanced_segment(batch_size, d - 1, gen), (closer_type + 1).unsqueeze(1)], dim=1)
    return inputs.to(device), targets.to(device)


def render_tokens(tokens, task: str = "copy", *, num_values: int = 4, vocab_size: int = 12) -> str:
    """A readable string for one sequence: copy task ``? `` query, ``a b c …`` distractors, ``A B …``
    values; position copy task ``?`` query and ``A B …`` symbols; bracket task ``_ ( ) [ ]``."""
    out = []
    for t in (int(x) for x in tokens):
        if task == "bracket":
            if not 0 <= t < len(BRACKET_TOKENS):
                raise ValueError(f"bracket tokens are ids 0 … 4, got {t}.")
            out.append(BRACKET_TOKENS[t])
        elif task == "position_copy":
            if not 0 <= t <= num_values:
                raise ValueError(f"position-copy tokens are ids 0 … {num_values}, got {t}.")
            out.append("?" if t == COPY_QUERY else chr(ord("A") + t - 1))
        elif task == "copy":
            layout = copy_task_layout(num_values, vocab_size)
            if t == COPY_QUERY:
                out.append("?")
            elif t in layout["distractors"]:
                out.append(chr(ord("a") + t - 1))
            elif t in layout["values"]:
                out.append(chr(ord("A") + t - layout["values"].start))
            else:
                raise ValueError(f"token {t} is outside the copy-task vocabulary 0 … {vocab_size - 1}.")
        else:
            raise ValueError(f"task must be 'copy', 'position_copy' or 'bracket', got {task!r}.")
    return " ".join(out)
