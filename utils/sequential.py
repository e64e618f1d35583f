"""Sequential steps S, the serial floor: five matched-width backbones and their forward time vs n.

The number of *sequential steps* S of a forward pass is the length of the longest chain of
operations that must run one after another. A recurrent layer has ``S = n`` (state ``h_t`` needs
``h_{t-1}``); a convolution stack or a Transformer has ``S = layers``, whatever ``n`` is, because every
position of a layer can be computed at once. S is read off the computation graphs of
:mod:`utils.graphs`; this module builds the real PyTorch layers and times them, so that a chapter can
put the two side by side.

``python -m utils.sequential`` on a GPU runs the GPU-sized sweep and writes it, with its provenance,
as the reference file ``utils/data/p1c03_<gpu-slug>.json`` that the chapter plots beside its live run.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from utils._moved import module_getattr as _module_getattr
from utils.blocks import RECURRENT as _RECURRENT, TransformerBlock, recurrent_layer
from utils.conv import ConvStack
from utils.env import hardware, on_gpu, pick_device, sweep
from utils.measure import Timing, time_call, time_forward_vs_n
from utils.models import FAMILIES
from utils.validate import check_choice, check_int, check_positive_float, check_positive_int

#: Default sweep: small enough for a 2-core laptop in seconds, larger on a GPU (see :func:`utils.env.sweep`).
#: The GPU list holds candidates: :func:`default_sweep` keeps those that fit the GPU's free memory.
CPU_SWEEP = {"ns": [64, 128, 256, 512, 1024, 2048], "batch": 2, "d_model": 64}
GPU_SWEEP = {"ns": [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384], "batch": 2, "d_model": 64}

#: Heads of the Transformer backbone (:func:`make_backbone`'s default).
TRANSFORMER_HEADS = 4


def forward_plan_bytes(n: int, *, batch: int = 2, d_model: int = 64, heads: int = TRANSFORMER_HEADS,
                       d_ff: int | None = None, bytes_per_element: int = 4) -> int:
    """Planned bytes of one forward of the widest backbone at length ``n``: one ``(batch, heads, n, n)``
    attention-weight tensor (in case the encoder's attention materialises it; the fused kernels do
    not) plus ten ``(batch, n, max(d_model, d_ff))`` activations."""
    from utils.complexity import attention_weights_bytes

    d_ff = 4 * d_model if d_ff is None else d_ff
    return (attention_weights_bytes(batch, heads, n, bytes_per_element)
            + 10 * batch * n * max(d_model, d_ff) * bytes_per_element)


class Backbone(nn.Module):
    """A sequence layer ``(batch, n, d_model) -> (batch, n, d_model)`` that returns only the output.

    Recurrent modules return ``(output, state)``; the wrapper drops the state so that every family is
    called the same way.
    """

    def __init__(self, family: str, module: nn.Module):
        super().__init__()
        self.family = check_choice("family", family, set(FAMILIES))
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x)
        return y[0] if isinstance(y, tuple) else y


def make_backbone(family: str, d_model: int, *, layers: int = 1, kernel_size: int = 3, heads: int = 4,
                  d_ff: int | None = None) -> Backbone:
    """Build one family at width ``d_model``, in eval mode (no dropout; PyTorch's inference fast paths).

    * ``"rnn"``, ``"lstm"``, ``"gru"``: one ``batch_first`` recurrent layer, hidden size ``d_model``
      (``layers`` must be 1: a stacked recurrent layer has more than ``n`` steps in practice);
    * ``"cnn"``: :class:`utils.conv.ConvStack` of ``layers`` causal convolutions of ``kernel_size``;
    * ``"transformer"``: ``layers`` post-norm :class:`utils.blocks.TransformerBlock` s (``heads`` heads,
      feed-forward width ``d_ff``, default ``4 * d_model``, ReLU, SDPA attention — the layout of
      ``nn.TransformerEncoderLayer``) in an ``nn.Sequential``.
    """
    check_choice("family", family, set(FAMILIES))
    d_model = check_positive_int("d_model", d_model)
    layers = check_positive_int("layers", layers)
    if family in _RECURRENT:
        if layers != 1:
            raise ValueError(f"{family} backbones have one recurrent layer here, got layers={layers}; "
                             "time a stacked recurrent network with its own nn module instead.")
        module = recurrent_layer(family, d_model)
    elif family == "cnn":
        module = ConvStack(d_model, kernel_size, layers, padding="causal")
    else:
        module = nn.Sequential(*(TransformerBlock(d_model, heads, d_ff, norm="post", activation="relu")
                                 for _ in range(layers)))
    return Backbone(family, module).eval()


def make_backbones(d_model: int, *, cnn_layers: int = 4, transformer_layers: int = 1, kernel_size: int = 3,
                   heads: int = 4, families=FAMILIES) -> dict[str, Backbone]:
    """The five families at one width, keyed by family name (see :func:`make_backbone`)."""
    layers = {"cnn": cnn_layers, "transformer": transformer_layers}
    return {f: make_backbone(f, d_model, layers=layers.get(f, 1), kernel_size=kernel_size, heads=heads)
            for f in families}


def sequential_steps_of(family: str, n: int, *, layers: int = 1, kernel_size: int = 3) -> int:
    """S for one family at length ``n``, as the critical path of its computation graph (:mod:`utils.graphs`).

    Recurrent families use ``rnn_graph(n)`` (one recurrent layer; ``layers`` is ignored), ``"cnn"`` a
    causal ``conv_graph`` with ``layers`` layers of ``kernel_size``, ``"transformer"`` an
    ``attention_graph`` with ``layers`` layers. Results are cached: the graphs are deterministic.
    """
    check_choice("family", family, set(FAMILIES))
    n = check_positive_int("n", n)
    layers = check_positive_int("layers", layers)
    if family in _RECURRENT:
        return _graph_steps("rnn", n, 1, 0)
    return _graph_steps(family, n, layers, kernel_size if family == "cnn" else 0)


@functools.lru_cache(maxsize=256)
def _graph_steps(kind: str, n: int, layers: int, kernel_size: int) -> int:
    from utils.graphs import attention_graph, conv_graph, rnn_graph, sequential_steps

    if kind == "rnn":
        graph = rnn_graph(n)
    elif kind == "cnn":
        graph = conv_graph(n, kernel_size, layers, causal=True)
    else:
        graph = attention_graph(n, layers=layers)
    return int(sequential_steps(graph))


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed the CPU generator for the block and restore the caller's RNG state afterwards (modules are
    initialised on the CPU, so the caller's global and CUDA generators are left untouched)."""
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def serial_time_estimate(per_step: float, steps: int) -> float:
    """The back-of-envelope latency ``per_step * steps`` (same unit as ``per_step``).

    This is the arithmetic of the path-length source article, "Compare CNN, RNN, LSTM, and Transformer
    via Path Length and Resource Complexity" ("0.3 ms per step × 512 steps ≈ 154 ms"); it assumes every
    sequential step costs the same, which measurements show to be false across families.
    """
    per_step = check_positive_float("per_step", per_step)
    steps = check_positive_int("steps", steps)
    return per_step * steps


def per_step_times(medians, steps) -> list[float]:
    """Time per sequential step, ``median / S``, element-wise over two equal-length sequences."""
    medians, steps = list(medians), list(steps)
    if len(medians) != len(steps):
        raise ValueError(f"got {len(medians)} times for {len(steps)} step counts; give one S per time.")
    return [check_positive_float("time", t) / check_positive_int("steps", s) for t, s in zip(medians, steps)]


def forward_time_sweep(ns, *, d_model: int = 64, batch: int = 2, cnn_layers: int = 4,
                       transformer_layers: int = 1, families=FAMILIES, device=None,
                       min_run_time: float = 0.05, threads: int | None = None, seed: int = 0,
                       fraction: float = 0.5) -> dict:
    """Forward wall time vs ``n`` for each family at matched width, as a JSON-ready record.

    Returns ``{"config": {...}, "provenance": hardware(device), "ns": [...], "steps": {family: [S]},
    "median_s": {family: [...]}, "iqr_s": {family: [...]}}``. Inputs are ``randn(batch, n, d_model)``
    made outside the timed region; every call runs under ``torch.inference_mode``.

    Guarded: the plan of the longest ``n`` (:func:`forward_plan_bytes`) must fit in ``fraction`` of
    the device's free memory, checked before anything is built (:func:`default_sweep` sizes the GPU
    sweep so that it does).
    """
    from utils.measure import check_fits

    device = torch.device(device) if device is not None else pick_device()
    d_model = check_positive_int("d_model", d_model)
    batch = check_positive_int("batch", batch)
    ns = [check_positive_int("n", n) for n in ns]
    if not ns:
        raise ValueError("ns is empty; give at least one sequence length, e.g. [64, 256, 1024].")
    if "transformer" in families:
        check_fits(forward_plan_bytes(max(ns), batch=batch, d_model=d_model), device, fraction,
                   what=f"a forward at n={max(ns)}")
    with _seeded(seed):
        models = make_backbones(d_model, cnn_layers=cnn_layers, transformer_layers=transformer_layers,
                                families=families)
    layers = {"cnn": cnn_layers, "transformer": transformer_layers}
    gen = torch.Generator().manual_seed(seed)

    def make_input(n):
        return torch.randn(batch, n, d_model, generator=gen)

    record = {
        "config": {"d_model": d_model, "batch": batch, "cnn_layers": cnn_layers, "kernel_size": 3,
                   "transformer_layers": transformer_layers, "min_run_time": min_run_time, "seed": seed},
        "provenance": hardware(device),
        "ns": ns, "steps": {}, "median_s": {}, "iqr_s": {},
    }
    if threads is not None:
        record["provenance"]["threads"] = threads
    for family, model in models.items():
        timings = time_forward_vs_n(model, ns, make_input, device=device, min_run_time=min_run_time,
                                    threads=threads)
        record["steps"][family] = [n if family in _RECURRENT else layers[family] for n in ns]
        record["median_s"][family] = [t.median for t in timings]
        record["iqr_s"][family] = [t.iqr for t in timings]
    return record


def serial_vs_batched(family: str = "rnn", n: int = 1024, *, d_model: int = 64, device=None,
                      min_run_time: float = 0.05, threads: int | None = None, seed: int = 0) -> tuple[Timing, Timing]:
    """Same work, different S: one recurrent layer over ``(1, n, d)`` vs over ``(n, 1, d)``.

    Both calls apply the same cell ``n`` times to a ``d``-vector (identical multiply-adds), but the
    first chains the ``n`` applications (S = n) while the second runs them as one batched step (S = 1).
    Returns ``(serial, batched)`` timings (on ``threads`` CPU threads, default: all torch threads).
    """
    if family not in _RECURRENT:
        raise ValueError(f"family must be one of {sorted(_RECURRENT)} (a recurrent layer), got {family!r}.")
    n = check_positive_int("n", n)
    device = torch.device(device) if device is not None else pick_device()
    with _seeded(seed):
        model = make_backbone(family, d_model).to(device)
        x = torch.randn(n, d_model).to(device)
    serial_x, batched_x = x.unsqueeze(0), x.unsqueeze(1)   # (1, n, d) and (n, 1, d)

    def run(inp):
        def call():
            with torch.inference_mode():
                return model(inp)
        return call

    return (time_call(run(serial_x), min_run_time=min_run_time, threads=threads),
            time_call(run(batched_x), min_run_time=min_run_time, threads=threads))


def default_sweep(device=None, fraction: float = 0.5) -> dict:
    """The sweep sizes of the chapter: ``CPU_SWEEP`` on a CPU; on a GPU the lengths of ``GPU_SWEEP``
    whose :func:`forward_plan_bytes` fits in ``fraction`` of this GPU's free memory
    (:func:`utils.measure.sweep_that_fits`): all of them on a 24 GB card and up, fewer on a T4."""
    from utils.measure import sweep_that_fits

    cfg = dict(sweep(cpu=CPU_SWEEP, gpu=GPU_SWEEP, device=device))
    if on_gpu(device):
        cfg["ns"] = sweep_that_fits(cfg["ns"], lambda n: forward_plan_bytes(n, batch=cfg["batch"],
                                                                             d_model=cfg["d_model"]),
                                    device, fraction)
    return cfg


def main(argv=None) -> int:
    """Command line: run the default sweep on this device and write it as JSON (a reference file)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="JSON file to write (default: utils/data/p1c03_<device-slug>.json via "
                             "utils.env.save_reference)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads to time on (default: 1 on a CPU, as the chapter does; unused on a GPU)")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    threads = args.threads or (1 if device.type == "cpu" else None)
    cfg = default_sweep(device)
    record = forward_time_sweep(cfg["ns"], d_model=cfg["d_model"], batch=cfg["batch"], device=device,
                                min_run_time=args.min_run_time, threads=threads)
    serial, batched = serial_vs_batched("rnn", 1024, d_model=cfg["d_model"], device=device,
                                        min_run_time=args.min_run_time, threads=threads)
    record["serial_vs_batched"] = {"family": "rnn", "n": 1024, "serial_s": serial.median,
                                   "batched_s": batched.median}
    record["provenance"]["gpu"] = on_gpu(device)
    record["provenance"]["command"] = "python -m utils.sequential" + (f" --out {args.out}" if args.out else "")
    if args.out is None:
        from utils.env import reference_name, save_reference

        path = save_reference(reference_name("p1c03", device), record, device)
    else:
        path = args.out
        with open(path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    print(f"wrote {path} ({record['provenance']['device']})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__getattr__ = _module_getattr(__name__)  # names moved in 0.2 (utils._moved)
