"""Closed forms of local (windowed) attention: pairs, scores, FLOPs' geometry, bytes, layers to connect a distance.
"""

from __future__ import annotations

from utils.validate import check_int, check_positive_int


def default_block_size(radius: int) -> int:
    """Query block size used when none is given: the radius (at least 1).

    Each block of ``b`` queries reads ``b + 2r`` keys (``b + r`` when causal), of which each query uses
    ``2r + 1``: with ``b = r`` a centred kernel computes ``3r`` scores per query for ``2r + 1`` useful
    ones. Smaller blocks waste less but make more, smaller matrix products.
    """
    radius = check_int("radius", radius, minimum=0)
    return max(1, radius)


def _geometry(n: int, radius: int, causal: bool, block_size: int | None) -> tuple[int, int, int]:
    """(block size b, number of blocks, keys per block)."""
    n = check_positive_int("n", n)
    radius = check_int("radius", radius, minimum=0, hint="radius 0 lets each position see only itself.")
    b = default_block_size(radius) if block_size is None else check_positive_int("block_size", block_size)
    blocks = -(-n // b)
    keys = b + radius if causal else b + 2 * radius
    return b, blocks, keys


def blocked_local_attention_bytes(n: int, head_dim: int, radius: int, batch: int = 1, heads: int = 1, *,
                                  causal: bool = False, block_size: int | None = None,
                                  bytes_per_element: int = 2) -> int:
    """Planned bytes of one :func:`~utils.efficient.blocked_local_attention` call beyond its inputs: three tensors of
    :func:`local_attention_scores_numel` scores (scores, mask fill, weights), the padded and windowed
    keys and values (up to ``keys/b`` times the inputs each) and the padded queries and the output."""
    b, blocks, keys = _geometry(n, radius, causal, block_size)
    batch, heads = check_positive_int("batch", batch), check_positive_int("heads", heads)
    head_dim = check_positive_int("head_dim", head_dim)
    scores = batch * heads * blocks * b * keys
    windows = 2 * batch * heads * blocks * keys * head_dim
    rows = 2 * batch * heads * blocks * b * head_dim
    return (3 * scores + windows + rows) * check_positive_int("bytes_per_element", bytes_per_element)


def local_attention_scores_numel(n: int, radius: int, batch: int = 1, heads: int = 1, *,
                                 causal: bool = False, block_size: int | None = None) -> int:
    """Number of attention scores :func:`~utils.efficient.blocked_local_attention` materialises:
    ``B · h · ⌈n/b⌉ · b · (b + 2r)`` (``b + r`` causal), against ``B · h · n²`` for full attention."""
    batch, heads = check_positive_int("batch", batch), check_positive_int("heads", heads)
    b, blocks, keys = _geometry(n, radius, causal, block_size)
    return batch * heads * blocks * b * keys


def local_attention_pairs(n: int, radius: int, causal: bool = False) -> int:
    """How many (query, key) pairs the local mask allows: ``local_mask(n, radius, causal).sum()``.

    Centred: ``n·(2r + 1) − r·(r + 1)`` while ``r < n`` (the ``r`` positions at each end see fewer keys),
    ``n²`` once the window covers everything. Causal: ``n·(r + 1) − r·(r + 1)/2``, or ``n(n + 1)/2``.
    This is the useful work; a blocked kernel computes :func:`local_attention_scores_numel` scores,
    somewhat more, because a block's key slice must cover all of its queries' windows.
    """
    n = check_positive_int("n", n)
    r = check_int("radius", radius, minimum=0)
    if causal:
        return n * (n + 1) // 2 if r >= n - 1 else n * (r + 1) - r * (r + 1) // 2
    return n * n if r >= n - 1 else n * (2 * r + 1) - r * (r + 1)


def local_attention_layers(distance: int, radius: int) -> int:
    """Fewest stacked local-attention layers of radius ``r`` that carry information over ``distance``
    positions: ``max(1, ⌈d / r⌉)`` (each layer moves it at most ``r`` positions; at distance 0 one layer
    is still needed to compute anything). The same for a causal window looking back ``r`` positions."""
    d = check_int("distance", distance, minimum=0)
    r = check_int("radius", radius, minimum=0)
    if r == 0:
        if d == 0:
            return 1
        raise ValueError(f"radius 0 never reaches distance {d}: each position sees only itself.")
    return max(1, -(-d // r))
