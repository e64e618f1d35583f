"""Models that read a stream one token at a time, and the state each one carries between tokens.

* :class:`ConvLSTM` — a causal, dilated 1-D convolution front end followed by a one-layer LSTM.
  ``forward`` reads a whole sequence; ``step`` reads one token and gives the same outputs (to rounding);
  ``prefill`` reads a prefix at once and returns the state ``step`` continues from.
  Its state is fixed in size: one ring buffer per convolution (the last ``(k - 1) · dilation`` inputs
  of that layer) plus the LSTM's ``h`` and ``c`` — :meth:`ConvLSTM.state_bytes`, whatever the stream's
  length.
* :class:`RingKVCache` — a key/value cache of ``window`` positions that overwrites the oldest one:
  a decoder (:class:`utils.models.TinyDecoder`) fed one token at a time with it attends over the
  current position and the ``window`` before it only (sliding-window attention). Its size is fixed,
  ``2 · layers · batch · window · d_model · bytes_per_element``, while a :class:`utils.blocks.KVCache` of
  the whole stream grows with every token.
* :func:`sliding_window_decode` feeds a sequence through a decoder one token at a time with a
  :class:`RingKVCache`; :func:`decode_step_at` prepares one decoding step at stream position ``t``,
  with a sliding window or with a cache of the whole stream, for timing.

A window of ``w`` past positions per layer lets a token at distance ``s > w`` reach the output only
through ``ceil(s / w)`` stacked layers (:func:`utils.complexity.local_attention_layers`): the decoder's
state is bounded, and so is what one layer can see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from utils.blocks import KVCache
from utils.complexity import recurrent_state_bytes
from utils.conv import ConvStack
from utils.receptive import doubling_dilations, receptive_field
from utils.validate import check_int, check_positive_int

__all__ = ["ConvLSTM", "ConvLSTMState", "RingKVCache", "sliding_window_decode", "decode_step_at"]


@dataclass
class ConvLSTMState:
    """What a :class:`ConvLSTM` carries from one token to the next.

    ``buffers[i]`` is the ring buffer of conv layer ``i``, ``(batch, d_model, (k - 1) · dilation_i)``:
    its inputs at the last ``(k - 1) · dilation_i`` positions, the one at position ``p`` stored in slot
    ``p mod size``. ``h`` and ``c`` are the LSTM's hidden and cell states, ``(1, batch, d_model)``.
    ``t`` counts the tokens read so far.
    """

    buffers: list[torch.Tensor]
    h: torch.Tensor
    c: torch.Tensor
    t: int = 0

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor of the state (the ring buffers, ``h`` and ``c``)."""
        return sum(t.untyped_storage().nbytes() for t in [*self.buffers, self.h, self.c])


class ConvLSTM(nn.Module):
    """A causal convolution front end, then a one-layer LSTM: ``(batch, n, d_in) -> (batch, n, d_model)``.

    The input is projected to ``d_model`` channels (``nn.Linear``, one position at a time), passed through
    ``conv_layers`` causal ``nn.Conv1d`` layers of kernel ``kernel_size`` (:class:`utils.conv.ConvStack`,
    ``tanh`` between layers) with dilations ``1, 2, 4, …`` (``dilated=True``) or all 1, then through an
    ``nn.LSTM`` of width ``d_model``. Output ``t`` depends on inputs ``<= t`` only.

    ``step(x_t, state)`` reads one token ``(batch, d_in)`` and returns ``(y_t, state)`` with ``y_t`` of
    shape ``(batch, d_model)``: the same numbers (to rounding) as row ``t`` of ``forward`` on the whole
    sequence. ``state=None`` starts a new stream (zeros, as the causal padding of ``forward``). The ring
    buffers of ``state`` are updated in place. ``step`` computes one output of each convolution and one
    LSTM cell update with the layers' own weights (a one-step call of ``nn.LSTM`` on a CPU costs
    milliseconds of setup). ``prefill(x)`` reads a whole prefix at once and returns the outputs and the
    state after it, for ``step`` to continue from.
    """

    def __init__(self, d_in: int, d_model: int, *, kernel_size: int = 3, conv_layers: int = 2,
                 dilated: bool = True):
        super().__init__()
        self.d_in = check_positive_int("d_in", d_in)
        self.d_model = check_positive_int("d_model", d_model)
        conv_layers = check_int("conv_layers", conv_layers, minimum=0,
                                hint="use conv_layers=0 for an LSTM without a convolution front end.")
        if not isinstance(dilated, bool):
            raise ValueError(f"dilated must be True or False, got {dilated!r}.")
        dilations = doubling_dilations(conv_layers) if dilated else [1] * conv_layers
        self.inp = nn.Linear(d_in, d_model)
        self.conv = ConvStack(d_model, kernel_size, conv_layers, dilations, padding="causal")
        self.lstm = nn.LSTM(d_model, d_model, batch_first=True)

    @property
    def kernel_size(self) -> int:
        return self.conv.kernel_size

    @property
    def dilations(self) -> list[int]:
        return list(self.conv.dilations)

    @property
    def buffer_sizes(self) -> list[int]:
        """Positions each conv layer keeps: ``(k - 1) · dilation`` (its inputs older than the current one)."""
        return [(self.kernel_size - 1) * d for d in self.dilations]

    @property
    def conv_receptive_field(self) -> int:
        """Input positions one output of the convolution front end sees: ``1 + (k - 1) · Σ dilations``."""
        return receptive_field(self.kernel_size, len(self.dilations), self.dilations)

    def state_bytes(self, batch: int = 1, bytes_per_element: int | None = None) -> int:
        """Exact bytes of the streaming state: ``batch · d_model · (Σ buffer sizes + 2) · bytes_per_element``.

        The conv ring buffers hold ``Σ (k - 1) · dilation`` positions of ``d_model`` channels; ``h`` and
        ``c`` are :func:`utils.complexity.recurrent_state_bytes` of an LSTM. ``bytes_per_element=None``
        uses the dtype of the model's parameters. The size does not depend on how long the stream is.
        """
        batch = check_positive_int("batch", batch)
        if bytes_per_element is None:
            bytes_per_element = self.inp.weight.element_size()
        bpe = check_positive_int("bytes_per_element", bytes_per_element,
                                 "Use 2 for float16/bfloat16, 4 for float32.")
        buffers = batch * self.d_model * sum(self.buffer_sizes) * bpe
        return buffers + recurrent_state_bytes(batch, self.d_model, 1, "lstm", bpe)

    def _check_input(self, x: torch.Tensor, dims: int, what: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != dims or x.shape[-1] != self.d_in:
            raise ValueError(f"{what} must be a tensor of shape {'(batch, n, d_in)' if dims == 3 else '(batch, d_in)'}"
                             f" with d_in={self.d_in}, got {getattr(x, 'shape', x)!r}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x, 3, "x")
        y, _ = self.lstm(self.conv(self.inp(x)))
        return y

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, ConvLSTMState]:
        """Read a whole prefix ``x`` ``(batch, n, d_in)`` at once: ``forward(x)`` and the state after it.

        The same outputs and state as ``n`` calls of :meth:`step`, computed in parallel over the prefix
        (what a decoder's prefill does for its KV cache); later tokens continue with :meth:`step`.
        """
        self._check_input(x, 3, "x")
        n = x.shape[1]
        h = self.inp(x).transpose(1, 2)  # (batch, d_model, n)
        buffers, last = [], len(self.conv.convs) - 1
        for i, (conv, size) in enumerate(zip(self.conv.convs, self.buffer_sizes)):
            padded = nn.functional.pad(h, (size, 0))
            # positions n - size … n - 1 of this layer's input, position p moved to slot p mod size
            buffers.append(torch.roll(padded[:, :, -size:], shifts=n % size, dims=2).detach().clone())
            h = conv(padded)
            if self.conv.activation and i < last:
                h = torch.tanh(h)
        y, (h_n, c_n) = self.lstm(h.transpose(1, 2))
        return y, ConvLSTMState(buffers, h_n.detach(), c_n.detach(), n)

    def initial_state(self, batch: int = 1) -> ConvLSTMState:
        """The state before the first token: zeros (what the causal padding of ``forward`` feeds in)."""
        batch = check_positive_int("batch", batch)
        p = self.inp.weight
        buffers = [torch.zeros(batch, self.d_model, size, dtype=p.dtype, device=p.device)
                   for size in self.buffer_sizes]
        h = torch.zeros(1, batch, self.d_model, dtype=p.dtype, device=p.device)
        return ConvLSTMState(buffers, h, torch.zeros_like(h), 0)

    def step(self, x_t: torch.Tensor, state: ConvLSTMState | None = None) -> tuple[torch.Tensor, ConvLSTMState]:
        """Read one token ``x_t`` ``(batch, d_in)``; return ``(y_t, state)`` with ``y_t`` ``(batch, d_model)``."""
        self._check_input(x_t, 2, "x_t")
        if state is None:
            state = self.initial_state(x_t.shape[0])
        elif not isinstance(state, ConvLSTMState) or state.h.shape[1] != x_t.shape[0]:
            raise ValueError("state must be the ConvLSTMState of a stream with the same batch size "
                             "(from initial_state or an earlier step), or None to start a new stream.")
        t = state.t
        h = self.inp(x_t)  # (batch, d_model)
        last = len(self.conv.convs) - 1
        for i, (conv, dil, buf) in enumerate(zip(self.conv.convs, self.dilations, state.buffers)):
            size = buf.shape[-1]
            # taps at positions t - (k-1)·dil, …, t - dil (oldest first), then the current input
            slots = torch.tensor([(t - j * dil) % size for j in range(self.kernel_size - 1, 0, -1)],
                                 device=buf.device)
            window = torch.cat([buf.index_select(2, slots), h.unsqueeze(2)], dim=2)  # (batch, d, k)
            buf[:, :, t % size] = h  # overwrite position t - size, which no output needs any more
            # one output position of the convolution: a matrix-vector product with the flattened kernel
            h = nn.functional.linear(window.flatten(1), conv.weight.flatten(1), conv.bias)
            if self.conv.activation and i < last:
                h = torch.tanh(h)
        # one LSTM cell step with the layer's own weights (PyTorch's gate order i, f, g, o)
        lstm = self.lstm
        gates = (nn.functional.linear(h, lstm.weight_ih_l0, lstm.bias_ih_l0)
                 + nn.functional.linear(state.h[0], lstm.weight_hh_l0, lstm.bias_hh_l0))
        i_g, f_g, g_g, o_g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f_g) * state.c[0] + torch.sigmoid(i_g) * torch.tanh(g_g)
        y = torch.sigmoid(o_g) * torch.tanh(c)
        state.h, state.c, state.t = y.unsqueeze(0), c.unsqueeze(0), t + 1
        return y, state


# --------------------------------------------------------------------------------------------------
# A sliding-window KV cache for decoding a stream
# --------------------------------------------------------------------------------------------------

class RingKVCache(KVCache):
    """The keys and values of the last ``window`` positions of a stream, for decoding one token at a time.

    Position ``p`` lives in slot ``p mod window``. ``write(layer, t, k, v)`` returns the keys and values
    of positions ``t - window … t`` (the cached ones and the new one, at most ``window + 1``), then
    stores the new position over the oldest one, position ``t - window``, which no later token sees.
    Attention does not care about the order of the keys (the positions are already in them). A
    :class:`utils.models.TinyDecoder` fed one token at a time with this cache therefore attends over the
    current position and the ``window`` before it — the causal local mask of radius ``window`` — and
    carries ``kv_cache_bytes(batch, heads, window, head_dim, layers)`` bytes from one token to the next,
    for a stream of any length.
    """

    def __init__(self, batch: int, heads: int, window: int, head_dim: int, *, layers: int = 1,
                 dtype: torch.dtype = torch.float32, device="cpu", fraction: float = 0.5,
                 limit_bytes: int | None = None):
        window = check_positive_int("window", window, "window is how many past positions each layer keeps.")
        super().__init__(batch, heads, window, head_dim, layers=layers, dtype=dtype, device=device,
                         fraction=fraction, limit_bytes=limit_bytes)

    @property
    def window(self) -> int:
        return self.capacity

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor):
        """Keys and values of positions ``start - window … start`` after adding one position's ``k, v``
        (``(batch, heads, 1, head_dim)``); the cache then holds ``start - window + 1 … start``."""
        start = check_int("start", start)
        if k.shape[2] != 1:
            raise ValueError(f"a RingKVCache is written one position at a time, got {k.shape[2]} positions; "
                             "feed the tokens one by one (sliding_window_decode does).")
        if start != self.length:
            raise ValueError(f"the stream has reached position {self.length}; write at start={self.length}.")
        filled = min(start, self.window)
        keys = torch.cat([self.keys[layer][:, :, :filled], k], dim=2)
        values = torch.cat([self.values[layer][:, :, :filled], v], dim=2)
        slot = start % self.window
        self.keys[layer][:, :, slot] = k[:, :, 0]
        self.values[layer][:, :, slot] = v[:, :, 0]
        return keys, values


def _new_ring_cache(model, batch: int, window: int) -> RingKVCache:
    from utils.models import TinyDecoder

    if not isinstance(model, TinyDecoder):
        raise ValueError(f"model must be a utils.models.TinyDecoder, got {type(model).__name__}.")
    p = model.head.weight
    return RingKVCache(batch, model.heads, window, model.head_dim, layers=model.n_layers, dtype=p.dtype,
                       device=p.device)


@torch.no_grad()
def sliding_window_decode(model, tokens: torch.Tensor, window: int) -> torch.Tensor:
    """Logits ``(batch, n, vocab)`` of a :class:`utils.models.TinyDecoder` fed ``tokens`` one at a time,
    each layer attending over its last ``window`` positions (a :class:`RingKVCache`).

    Equal to the decoder's full forward with a causal local mask of radius ``window`` in every layer
    (each position sees itself and the ``window`` before it); equal to its plain causal forward while
    ``n <= window + 1``.
    """
    window = check_positive_int("window", window)
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
        raise ValueError(f"tokens must be a (batch, n) tensor of token ids (torch.long), got "
                         f"{getattr(tokens, 'shape', tokens)!r}.")
    cache = _new_ring_cache(model, tokens.shape[0], window)
    out = [model(tokens[:, t:t + 1], cache, t) for t in range(tokens.shape[1])]
    return torch.cat(out, dim=1)


def decode_step_at(model, t: int, window: int | None = None, batch: int = 1, seed: int = 0):
    """A zero-argument callable that decodes *one* token at stream position ``t`` (``t >= 0``), to time it.

    ``window=None``: a :class:`utils.blocks.KVCache` holding all ``t`` earlier positions (it grows with
    the stream); ``window=w``: a :class:`RingKVCache` of the last ``w`` positions (fixed size). The
    cache is filled with random keys and values as if ``t`` tokens had been read (their values do not
    change the work of the step). Each call rewinds ``cache.length`` to ``t``, so the step can be
    repeated. Returns ``step`` with ``step.cache`` attached.
    """
    from utils.models import TinyDecoder

    if not isinstance(model, TinyDecoder):
        raise ValueError(f"model must be a utils.models.TinyDecoder, got {type(model).__name__}.")
    t = check_int("t", t, minimum=0)
    batch = check_positive_int("batch", batch)
    if t + 1 > model.max_len:
        raise ValueError(f"position {t} needs max_len > {t}; the model has max_len={model.max_len}.")
    cache = model.new_cache(batch, t + 1) if window is None else _new_ring_cache(model, batch, window)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    filled = min(t, cache.capacity)
    for keys, values in zip(cache.keys, cache.values):
        keys[:, :, :filled] = torch.randn(keys[:, :, :filled].shape, generator=g).to(keys)
        values[:, :, :filled] = torch.randn(values[:, :, :filled].shape, generator=g).to(values)
    token = torch.randint(0, model.vocab, (batch, 1), generator=g).to(model.head.weight.device)

    def step():
        cache.length = t
        with torch.no_grad():
            return model(token, cache, t)

    step.cache = cache
    return step
