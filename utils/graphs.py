"""Computation graphs of sequence models, and shortest paths on them.

A model that maps ``n`` input positions to ``n`` output positions is drawn as a directed acyclic
graph whose nodes are ``(layer, position)`` pairs:

* layer ``0`` holds the inputs ``x_0 … x_{n-1}``; layer ``graph.layers`` holds the outputs;
* an edge ``(l-1, i) -> (l, j)`` means "node ``j`` of layer ``l`` is computed from node ``i`` of the
  layer below" (one weight application: a conv tap, an attention score, an input projection);
* a *recurrent* layer also has edges inside the layer, ``(l, t-1) -> (l, t)``: the state ``h_t`` is
  computed from ``h_{t-1}``.

**Conventions** (used by every chapter):

* **Every edge counts one.** The path length from input ``i`` to output ``j`` is the number of edges
  on the shortest path. For a recurrent layer (``rnn_graph``) the nodes are ``x_t`` (layer 0) and
  ``h_t`` (layer 1); the path ``x_i -> h_i -> h_{i+1} -> … -> h_j`` has ``1 + (j - i)`` edges: one
  input edge ``x_i -> h_i`` plus ``j - i`` *state transfers* ``h -> h``. Texts that say "an RNN's
  path length is ``d = j - i``" count only the state transfers; the two counts differ by the constant 1.
* **Distance vs span.** The *distance* between positions ``i`` and ``j`` is ``d = |j - i|``; the
  *span* of the positions ``i … j`` is ``d + 1`` (how many positions they cover). A receptive field
  ``R`` is a span; a path length is measured against a distance.
* **Kernels.** A causal kernel of size ``k`` (dilation ``δ``) feeds output ``t`` from inputs
  ``t - (k-1)δ … t``; a centred kernel (odd ``k``) from ``t - (k-1)δ/2 … t + (k-1)δ/2`` — exactly
  :class:`utils.conv.ConvStack`. Taps that fall outside ``0 … n-1`` read zero padding and have no edge.
* **Local attention** with radius ``r``: query ``j`` sees keys ``|j - i| <= r``, or ``0 <= j - i <= r``
  when causal — exactly :func:`utils.attention.local_mask`.

``reachability_matrix(graph)[j, i]`` has the orientation of :func:`utils.measure.reachability`
(``True`` iff output ``j`` depends on input ``i``), so a graph can be compared with a measurement on
a real module entry by entry.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from utils.attention import local_mask
from utils.conv import check_conv_args
from utils.validate import check_int, check_positive_int

__all__ = [
    "SequenceGraph", "rnn_graph", "conv_graph", "attention_graph", "local_attention_graph",
    "shortest_path_lengths", "shortest_path", "path_length", "path_length_matrix", "hops_matrix",
    "reachability_matrix", "sequential_steps", "max_path_length", "draw_graph",
]

_INF = torch.iinfo(torch.int64).max // 4  # "unreachable" inside the distance computations


@dataclass(frozen=True, eq=False)
class SequenceGraph:
    """A layered DAG over nodes ``(layer, position)``, ``layer = 0 … layers``, ``position = 0 … n-1``.

    ``between[l-1][j, i]`` is ``True`` iff there is an edge ``(l-1, i) -> (l, j)``;
    ``within[l-1]`` is ``None`` or a matrix whose ``[j, i]`` (only ``i < j``) marks an edge
    ``(l, i) -> (l, j)`` inside layer ``l`` (a recurrence). Identical layers share one tensor.
    ``family`` names the model family (``"rnn"``, ``"cnn"``, ``"dilated cnn"``, ``"attention"``,
    ``"local attention"``); ``params`` records how the graph was built.
    """

    family: str
    n: int
    layers: int
    between: tuple
    within: tuple
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        check_positive_int("n", self.n)
        check_int("layers", self.layers, minimum=0)
        if len(self.between) != self.layers or len(self.within) != self.layers:
            raise ValueError(f"need one edge matrix per layer: layers={self.layers}, got "
                             f"{len(self.between)} between-layer and {len(self.within)} within-layer matrices.")
        for m in self.between:
            if tuple(m.shape) != (self.n, self.n) or m.dtype != torch.bool:
                raise ValueError(f"edge matrices must be bool tensors of shape ({self.n}, {self.n}).")
        for m in self.within:
            if m is not None and (tuple(m.shape) != (self.n, self.n) or m.dtype != torch.bool
                                  or bool(m.triu().any())):
                raise ValueError("within-layer edges must go from a lower to a higher position (i < j), "
                                 "so that the graph stays acyclic.")

    @property
    def num_nodes(self) -> int:
        return (self.layers + 1) * self.n

    @property
    def num_edges(self) -> int:
        total = sum(int(m.sum()) for m in self.between)
        return total + sum(int(m.sum()) for m in self.within if m is not None)

    def successors(self, node) -> list:
        """Nodes computed directly from ``node = (layer, position)``."""
        layer, i = node
        out = []
        if layer < self.layers:
            out += [(layer + 1, int(j)) for j in _column_targets(self.between[layer], i)]
        if layer >= 1 and self.within[layer - 1] is not None:
            out += [(layer, int(j)) for j in _column_targets(self.within[layer - 1], i)]
        return out

    def __repr__(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"SequenceGraph({self.family!r}, n={self.n}, layers={self.layers}{', ' + extra if extra else ''})"


def _column_targets(matrix: torch.Tensor, i: int) -> list[int]:
    return torch.nonzero(matrix[:, i]).flatten().tolist()


# --------------------------------------------------------------------------------------------- builders

def rnn_graph(n: int, layers: int = 1) -> SequenceGraph:
    """A recurrent network unrolled over ``n`` steps (``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``).

    Layer 0 holds ``x_t``, layer ``l`` the states ``h^l_t``. Edges: ``h^{l-1}_t -> h^l_t`` (the input
    edge; ``x_t -> h_t`` for ``l = 1``) and ``h^l_{t-1} -> h^l_t`` (a state transfer). With one layer the
    shortest path ``x_i -> h_j`` has ``1 + (j - i)`` edges, ``j - i`` of them state transfers.
    """
    n = check_positive_int("n", n)
    layers = check_int("layers", layers, minimum=1, hint="a recurrent network has at least one layer.")
    eye = torch.eye(n, dtype=torch.bool)
    chain = torch.diag(torch.ones(n - 1, dtype=torch.bool), -1) if n > 1 else torch.zeros(1, 1, dtype=torch.bool)
    return SequenceGraph("rnn", n, layers, (eye,) * layers, (chain,) * layers, {"rnn_layers": layers})


def _conv_edges(n: int, kernel_size: int, dilation: int, causal: bool) -> torch.Tensor:
    j = torch.arange(n).unsqueeze(1)
    i = torch.arange(n).unsqueeze(0)
    offset = j - i  # how far back (positive) or forward (negative) input i lies from output j
    if causal:
        lo, hi = 0, (kernel_size - 1) * dilation
    else:
        half = (kernel_size - 1) // 2 * dilation
        lo, hi = -half, half
    return (offset >= lo) & (offset <= hi) & (offset % dilation == 0)


def conv_graph(n: int, kernel_size: int, layers: int, dilations=None, causal: bool = False) -> SequenceGraph:
    """A stack of ``layers`` stride-1 1-D convolutions that keep the length ``n``
    (:class:`utils.conv.ConvStack` with ``padding="causal"`` or ``"centred"``).

    Output ``t`` of a layer with dilation ``δ`` is computed from inputs ``t - (k-1)δ … t`` in steps of
    ``δ`` (causal) or ``t ± (k-1)δ/2`` in steps of ``δ`` (centred, odd ``k`` only).
    """
    n = check_positive_int("n", n)
    padding = "causal" if causal else "centred"
    dil = check_conv_args(kernel_size, layers, dilations, padding)
    cache = {d: _conv_edges(n, kernel_size, d, causal) for d in set(dil)}  # identical layers share a tensor
    between = tuple(cache[d] for d in dil)
    family = "dilated cnn" if any(d > 1 for d in dil) else "cnn"
    return SequenceGraph(family, n, len(dil), between, (None,) * len(dil),
                         {"kernel_size": kernel_size, "dilations": tuple(dil), "causal": bool(causal)})


def attention_graph(n: int, layers: int = 1, causal: bool = False) -> SequenceGraph:
    """``layers`` stacked self-attention layers: every query ``j`` reads every key ``i``
    (only ``i <= j`` when ``causal``)."""
    n = check_positive_int("n", n)
    layers = check_int("layers", layers, minimum=0)
    mask = torch.ones(n, n, dtype=torch.bool)
    if causal:
        mask = mask.tril()
    return SequenceGraph("attention", n, layers, (mask,) * layers, (None,) * layers, {"causal": bool(causal)})


def local_attention_graph(n: int, radius: int, layers: int = 1, causal: bool = False) -> SequenceGraph:
    """``layers`` local (windowed, "restricted") self-attention layers of radius ``r``: query ``j`` reads
    keys ``|j - i| <= r`` (centred, a window of ``2r + 1``) or ``0 <= j - i <= r`` (causal, ``r + 1`` keys),
    as :func:`utils.attention.local_mask`."""
    n = check_positive_int("n", n)
    layers = check_int("layers", layers, minimum=0)
    mask = local_mask(n, radius, causal)
    return SequenceGraph("local attention", n, layers, (mask,) * layers, (None,) * layers,
                         {"radius": int(radius), "causal": bool(causal)})


# ------------------------------------------------------------------------------------ shortest paths (BFS)

def _as_node(graph: SequenceGraph, source):
    if isinstance(source, tuple):
        layer, pos = source
        layer = check_int("layer", layer, minimum=0)
        pos = check_int("position", pos, minimum=0)
        if layer > graph.layers or pos >= graph.n:
            raise ValueError(f"node {source} is outside the graph "
                             f"(layers 0…{graph.layers}, positions 0…{graph.n - 1}).")
        return (layer, pos)
    pos = check_int("source", source, minimum=0)
    if pos >= graph.n:
        raise ValueError(f"input position {pos} is outside 0…{graph.n - 1}.")
    return (0, pos)


def _bfs(graph: SequenceGraph, source):
    start = _as_node(graph, source)
    dist, parent = {start: 0}, {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in graph.successors(node):
            if nxt not in dist:
                dist[nxt] = dist[node] + 1
                parent[nxt] = node
                queue.append(nxt)
    return dist, parent


def shortest_path_lengths(graph: SequenceGraph, source) -> dict:
    """Breadth-first search from ``source`` (an input position ``i``, or a node ``(layer, position)``).

    Returns ``{node: fewest edges from source}`` for every node the source reaches (itself at 0).
    """
    return _bfs(graph, source)[0]


def _check_output(graph: SequenceGraph, j) -> int:
    j = check_int("output position", j, minimum=0)
    if j >= graph.n:
        raise ValueError(f"output position {j} is outside 0…{graph.n - 1}.")
    return j


def path_length(graph: SequenceGraph, i: int, j: int) -> int | None:
    """Fewest edges from input ``i`` (node ``(0, i)``) to output ``j`` (node ``(layers, j)``), by BFS;
    ``None`` when output ``j`` does not depend on input ``i``."""
    j = _check_output(graph, j)
    return shortest_path_lengths(graph, i).get((graph.layers, j))


def shortest_path(graph: SequenceGraph, i: int, j: int) -> list | None:
    """One shortest path from input ``i`` to output ``j`` as a list of nodes (BFS), or ``None``."""
    j = _check_output(graph, j)
    dist, parent = _bfs(graph, i)
    node = (graph.layers, j)
    if node not in dist:
        return None
    path = []
    while node is not None:
        path.append(node)
        node = parent[node]
    return path[::-1]


# ------------------------------------------------------------------ all pairs at once (vectorised, exact)

def _predecessors(matrix: torch.Tensor) -> np.ndarray:
    """Row j lists the i with ``matrix[j, i]``, padded with ``n`` (an extra "nowhere" row)."""
    m = matrix.numpy()
    n = m.shape[0]
    rows, cols = np.nonzero(m)                      # row-major: each row's columns in increasing order
    deg = np.bincount(rows, minlength=n)
    width = max(int(deg.max()) if n else 0, 1)
    starts = np.concatenate([[0], np.cumsum(deg)[:-1]])
    preds = np.full((n, width), n, dtype=np.int64)
    preds[rows, np.arange(len(rows)) - starts[rows]] = cols
    return preds


def _preds_of(matrix: torch.Tensor, cache: dict) -> np.ndarray:
    key = id(matrix)
    if key not in cache:
        cache[key] = _predecessors(matrix)
    return cache[key]


def _layer_distances(graph: SequenceGraph, inputs):
    """Yield ``(layer, D)`` with ``D[j, s]`` = fewest edges from input ``inputs[s]`` to node ``(layer, j)``
    (``_INF`` if unreachable) — the same numbers BFS finds, for many sources at once (numpy arrays)."""
    n, s = graph.n, len(inputs)
    d = np.full((n, s), _INF, dtype=np.int64)
    d[np.asarray(inputs, dtype=np.int64), np.arange(s)] = 0
    yield 0, d
    cache: dict = {}
    nowhere = np.full((1, s), _INF, dtype=np.int64)
    for layer in range(graph.layers):
        preds = _preds_of(graph.between[layer], cache)
        padded = np.concatenate([d, nowhere])
        d = padded[preds[:, 0]]
        for w in range(1, preds.shape[1]):
            np.minimum(d, padded[preds[:, w]], out=d)
        d = np.minimum(d + 1, _INF)
        if graph.within[layer] is not None:
            wp = _preds_of(graph.within[layer], cache)
            for j in range(n):  # positions in order: within-layer edges go from i < j to j
                src = wp[j][wp[j] < n]
                if len(src):
                    d[j] = np.minimum(d[j], np.minimum(d[src].min(axis=0) + 1, _INF))
        yield layer + 1, d


def _check_inputs(graph: SequenceGraph, inputs) -> list[int]:
    if inputs is None:
        return list(range(graph.n))
    out = []
    for i in inputs:
        i = check_int("input position", i, minimum=0)
        if i >= graph.n:
            raise ValueError(f"input position {i} is outside 0…{graph.n - 1}.")
        out.append(i)
    return out


def path_length_matrix(graph: SequenceGraph, inputs=None) -> torch.Tensor:
    """``[j, s]``: fewest edges from input ``inputs[s]`` (default: every input, so ``[j, i]``) to
    output ``j``; ``-1`` where output ``j`` does not depend on it. Equal to :func:`path_length` pair by pair."""
    inputs = _check_inputs(graph, inputs)
    d = None
    for _, d_layer in _layer_distances(graph, inputs):  # keep the last layer's distances: the outputs
        d = d_layer
    return torch.from_numpy(np.where(d >= _INF, -1, d))


def hops_matrix(graph: SequenceGraph, inputs=None) -> torch.Tensor:
    """``[j, s]``: fewest edges from input ``inputs[s]`` to the *nearest* computed node of position ``j``
    (any layer ``>= 1``); ``-1`` if none. In a stack deep enough this is how many layers (or recurrent
    steps) information from input ``i`` needs to arrive at position ``j``: the path length of the family
    as a function of distance, independent of any extra depth."""
    inputs = _check_inputs(graph, inputs)
    best = None
    for layer, d in _layer_distances(graph, inputs):
        if layer >= 1:
            best = d if best is None else np.minimum(best, d)
    if best is None:
        raise ValueError("a graph with 0 layers has no computed nodes; give it at least one layer.")
    return torch.from_numpy(np.where(best >= _INF, -1, best))


def reachability_matrix(graph: SequenceGraph, inputs=None) -> torch.Tensor:
    """Boolean ``n × n``: ``[j, i]`` True iff output ``j`` depends on input ``i`` (a path exists).

    Same orientation as :func:`utils.measure.reachability`, which measures it on a real module.
    With ``inputs``, only those columns (``[j, s]`` for input ``inputs[s]``)."""
    return path_length_matrix(graph, inputs) >= 0


def sequential_steps(graph: SequenceGraph) -> int:
    """Critical path: the most computed nodes on any chain of dependent computations, i.e. the minimum
    number of sequential steps ``S`` of a forward pass with unlimited parallel hardware.

    A recurrent layer gives ``S = n`` (``h_t`` waits for ``h_{t-1}``; ``L`` stacked recurrent layers give
    ``n + L - 1``, a wavefront); a conv or attention stack gives ``S = layers`` whatever ``n`` is."""
    n = graph.n
    longest = np.zeros(n, dtype=np.int64)  # inputs: nothing to compute
    cache: dict = {}
    for layer in range(graph.layers):
        preds = _preds_of(graph.between[layer], cache)
        padded = np.concatenate([longest, np.zeros(1, dtype=np.int64)])
        longest = padded[preds].max(axis=1) + 1
        if graph.within[layer] is not None:
            wp = _preds_of(graph.within[layer], cache)
            for j in range(n):
                src = wp[j][wp[j] < n]
                if len(src):
                    longest[j] = max(longest[j], longest[src].max() + 1)
    return int(longest.max()) if graph.layers else 0


def max_path_length(graph: SequenceGraph) -> int:
    """The longest shortest path, over the pairs ``i <= j`` whose output ``j`` depends on input ``i``
    (the "maximum path length" of Vaswani et al. 2017, Table 1).

    For the table's meaning, give a graph just deep enough to connect every pair (input 0 reaches the
    last output); a shallower stack simply leaves the far pairs out."""
    lengths = path_length_matrix(graph)
    lower = torch.ones(graph.n, graph.n, dtype=torch.bool).tril()
    reachable = (lengths >= 0) & lower
    if not bool(reachable.any()):
        return 0
    return int(lengths[reachable].max())


# ------------------------------------------------------------------------------------------- drawing

def draw_graph(graph: SequenceGraph, ax, path=None, *, node_size: float = 30, edge_alpha: float = 0.25,
               label_layers: bool = True):
    """Draw ``graph`` on a matplotlib axis: positions left to right, layers bottom (inputs) to top.

    ``path`` (a node list, e.g. from :func:`shortest_path`) is drawn on top in a strong colour.
    Recurrent edges inside a layer are drawn as short horizontal arrows.
    """
    xs, ys = [], []
    for layer in range(graph.layers + 1):
        for pos in range(graph.n):
            xs.append(pos)
            ys.append(layer)
    for layer in range(graph.layers):
        js, is_ = torch.nonzero(graph.between[layer], as_tuple=True)
        for j, i in zip(js.tolist(), is_.tolist()):
            ax.plot([i, j], [layer, layer + 1], color="0.5", alpha=edge_alpha, lw=0.8, zorder=1)
        w = graph.within[layer]
        if w is not None:
            js, is_ = torch.nonzero(w, as_tuple=True)
            for j, i in zip(js.tolist(), is_.tolist()):
                ax.annotate("", xy=(j - 0.15, layer + 1), xytext=(i + 0.15, layer + 1),
                            arrowprops=dict(arrowstyle="->", color="0.4", lw=0.8), zorder=1)
    ax.scatter(xs, ys, s=node_size, color="white", edgecolor="0.2", zorder=2)
    if path:
        px = [p for _, p in path]
        py = [lay for lay, _ in path]
        ax.plot(px, py, color="#d62728", lw=2.2, zorder=3)
        ax.scatter(px, py, s=node_size * 1.3, color="#d62728", zorder=4)
    ax.set_xticks(range(graph.n))
    ax.set_xticklabels([str(p + 1) for p in range(graph.n)], fontsize=9)
    ax.set_yticks(range(graph.layers + 1))
    if label_layers:
        prefix = "h" if graph.family == "rnn" else "L"
        names = ["x"] + [f"{prefix}{layer}" for layer in range(1, graph.layers + 1)]
        ax.set_yticklabels(names, fontsize=9)
    ax.set_xlim(-0.6, graph.n - 0.4)
    ax.set_ylim(-0.4, graph.layers + 0.4)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax

