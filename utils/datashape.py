"""The first article's data-shape → family rule, as data.

Abstract Algorithms, *Deep Learning Architectures: CNNs, RNNs, and Transformers*, gives one table
("Data shape | Typical example | Good default"), one decision flow (a single branching question,
*Data type?*, with three answers) and, in its decision guide, one rule that comes before any family:
skip deep learning below a few thousand labelled examples. This module holds all three as plain
data (:data:`DATA_SHAPES`, :data:`FLOW_NODES`, :data:`FLOW_EDGES`, :data:`SMALL_DATA_RULE`),
walks them with :func:`recommend`, and draws them with :func:`draw_flow`, so that the figure and the
function cannot disagree.

The article gives no number for "a few thousand"; :func:`recommend` takes it as the keyword
``few_thousand`` (default 3000) so that a chapter can move it and watch the answer change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from utils.validate import check_choice, check_int, check_positive_int

__all__ = [
    "DATA_SHAPES",
    "FLOW_EDGES",
    "FLOW_NODES",
    "SMALL_DATA_RULE",
    "DataShape",
    "FlowNode",
    "Recommendation",
    "draw_flow",
    "recommend",
    "shape_table",
]


@dataclass(frozen=True)
class DataShape:
    """One row of the article's table: a data shape, its typical example, its default family, and
    the matching row of its "Condition | Start here" table."""

    key: str
    shape: str
    example: str
    family: str
    condition: str


DATA_SHAPES: tuple[DataShape, ...] = (
    DataShape("grid", "2D / 3D grid", "Image, video frame", "CNN", "Local spatial patterns dominate"),
    DataShape("short_stream", "Short ordered stream", "Sensor telemetry, short text", "RNN / LSTM",
              "Strict time-order and moderate context window"),
    DataShape("long_sequence", "Long-context sequence", "Document, code file, conversation", "Transformer",
              "Long-range dependencies dominate"),
)
"""The article's three rows, in its order. ``key`` is what :func:`recommend` takes."""

SHAPE_KEYS = tuple(row.key for row in DATA_SHAPES)


@dataclass(frozen=True)
class SmallDataRule:
    """The decision guide's rule that precedes the family choice."""

    text: str
    alternative: str
    default_threshold: int


SMALL_DATA_RULE = SmallDataRule(
    text="Skip deep learning when you have fewer than a few thousand labeled examples",
    alternative="gradient-boosted trees or logistic regression",
    default_threshold=3000,
)
"""The article's words (its American spelling kept) and the alternative it names."""


@dataclass(frozen=True)
class FlowNode:
    """A node of the decision flow: a ``kind`` of ``"start"``, ``"question"``, ``"family"`` or
    ``"end"``, a label, and a position ``(x, y)`` for :func:`draw_flow`."""

    key: str
    label: str
    kind: str
    xy: tuple[float, float]


FLOW_NODES: tuple[FlowNode, ...] = (
    FlowNode("data", "Raw data", "start", (0.0, 1.6)),
    FlowNode("size", "Labelled\nexamples?", "question", (1.5, 1.6)),
    FlowNode("type", "Data type?", "question", (3.0, 2.4)),
    FlowNode("grid", "CNN", "family", (5.1, 3.8)),
    FlowNode("short_stream", "RNN / LSTM / GRU", "family", (5.3, 2.4)),
    FlowNode("long_sequence", "Transformer", "family", (5.3, 1.0)),
    FlowNode("no_dl", "No deep learning: logistic\nregression, boosted trees", "family", (5.3, -0.4)),
    FlowNode("prediction", "Prediction", "end", (7.4, 1.6)),
)
"""The article's flow (Raw Data → Data type? → three families → Prediction), with the decision
guide's data-size question put in front of it."""

FLOW_EDGES: tuple[tuple[str, str, str], ...] = (
    ("data", "size", ""),
    ("size", "no_dl", "fewer than a few thousand"),
    ("size", "type", "a few thousand\nor more "),
    ("type", "grid", "image or grid"),
    ("type", "short_stream", "short ordered stream"),
    ("type", "long_sequence", "long-context sequence"),
    ("grid", "prediction", ""),
    ("short_stream", "prediction", ""),
    ("long_sequence", "prediction", ""),
    ("no_dl", "prediction", ""),
)
"""``(from, to, label)`` for every arrow of the flow."""


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` returns: the family (or ``"no deep learning"``), the node keys of the
    path walked through the flow, and the table row that decided it (``None`` for the small-data exit)."""

    family: str
    path: tuple[str, ...]
    row: DataShape | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def _row(key: str) -> DataShape:
    return next(row for row in DATA_SHAPES if row.key == key)


def recommend(shape: str, *, labelled_examples: int | None = None, few_thousand: int = 3000) -> Recommendation:
    """Walk the article's decision flow for data of ``shape`` (one of ``"grid"``, ``"short_stream"``,
    ``"long_sequence"``).

    With ``labelled_examples`` given and below ``few_thousand``, the flow stops at the decision guide's
    small-data exit (``family == "no deep learning"``); otherwise the family is the table's "good
    default" for the shape. ``labelled_examples=None`` skips the size question, as the article's own
    flow does.
    """
    check_choice("shape", shape, SHAPE_KEYS)
    few_thousand = check_positive_int("few_thousand", few_thousand,
                                      hint="the article gives no number; 3000 reads 'a few thousand'.")
    path = ["data", "size"]
    if labelled_examples is not None:
        labelled_examples = check_int("labelled_examples", labelled_examples, minimum=0)
        if labelled_examples < few_thousand:
            path += ["no_dl", "prediction"]
            return Recommendation(
                "no deep learning", tuple(path), None,
                (f"{labelled_examples} < {few_thousand} labelled examples: "
                 f"{SMALL_DATA_RULE.alternative}",))
    row = _row(shape)
    path += ["type", shape, "prediction"]
    return Recommendation(row.family, tuple(path), row, (f"{row.shape}: {row.condition}",))


def shape_table() -> list[dict[str, str]]:
    """The article's table as rows of a dict, for printing or a DataFrame."""
    return [{"data shape": r.shape, "typical example": r.example, "good default": r.family,
             "condition": r.condition} for r in DATA_SHAPES]


_KIND_STYLE = {
    "start": {"boxstyle": "round,pad=0.35", "fc": "#eeeeee", "ec": "#555555"},
    "question": {"boxstyle": "round4,pad=0.35", "fc": "#fff3cd", "ec": "#8a6d1a"},
    "family": {"boxstyle": "round,pad=0.35", "fc": "#dbe9f6", "ec": "#1f4e79"},
    "end": {"boxstyle": "round,pad=0.35", "fc": "#eeeeee", "ec": "#555555"},
}


def draw_flow(ax=None, *, highlight: Recommendation | None = None, show_examples: bool = True):
    """Draw :data:`FLOW_NODES` and :data:`FLOW_EDGES` on ``ax`` (a new figure if ``None``) and return
    the axes. With ``highlight`` (a :class:`Recommendation`), the path it walked is drawn in red.
    ``show_examples`` writes each family's typical example from :data:`DATA_SHAPES` under its box."""
    import matplotlib.pyplot as plt

    if highlight is not None and not isinstance(highlight, Recommendation):
        raise ValueError(f"highlight must be a Recommendation from recommend(...), got {type(highlight).__name__}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    pos = {node.key: node.xy for node in FLOW_NODES}
    on_path = set()
    if highlight is not None:
        on_path = set(zip(highlight.path, highlight.path[1:]))
    for src, dst, label in FLOW_EDGES:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        red = (src, dst) in on_path
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": "#c0392b" if red else "#777777",
                                "lw": 2.0 if red else 1.0, "shrinkA": 28, "shrinkB": 28})
        if label:
            short = abs(x1 - x0) < 2.0   # a short arrow: its label goes to the left, clear of the boxes
            ax.text(x0 + 0.5 * (x1 - x0), y0 + 0.5 * (y1 - y0) + 0.1, label, ha="right" if short else "center",
                    va="bottom",
                    fontsize=7, color="#333333", rotation=0,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    visited = set(highlight.path) if highlight is not None else set()
    for node in FLOW_NODES:
        style = dict(_KIND_STYLE[node.kind])
        if node.key in visited:
            style["ec"], style["lw"] = "#c0392b", 2.0
        ax.text(*node.xy, node.label, ha="center", va="center", fontsize=8, bbox=style)
        if show_examples and node.key in SHAPE_KEYS:
            ax.text(node.xy[0], node.xy[1] - 0.3, _row(node.key).example, ha="center", va="top",
                    fontsize=7, style="italic", color="#444444")
    ax.set_xlim(-0.5, 8.0)
    ax.set_ylim(-0.9, 4.2)
    ax.axis("off")
    return ax
