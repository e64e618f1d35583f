"""Shared, tested helpers for the course *Path length & resource complexity*.

Three kinds of code, three places: **closed forms** in :mod:`utils.complexity` (what a layer costs,
on paper), **measurements** in :mod:`utils.measure` (what it costs and sees, on this device), and
**models** in :mod:`utils.blocks` and :mod:`utils.models` (what is measured). Every other module holds
one concept of the course. Each public name has exactly one import path, the one below.

==================  ==========================================================================  ==========
module              concept                                                                     chapters
==================  ==========================================================================  ==========
``complexity``      closed forms: FLOPs per layer, token and training step; bytes, training     O, II, III
                    memory, parameters; roofline, decode, FlashAttention traffic
``measure``         measurements: autograd reachability and gradients, FLOP counter, peak
                    memory and the OOM guard, timing, the device's two roofs                    all
``blocks``          one multi-head attention (full/causal/local, KV cache), one Transformer
                    block (pre/post-norm), the KV cache, the recurrent-layer factory            I, II, III
``models``          matched classifiers of the five families; a small decoder and ``generate``  I.6, II.4
``serving``         grouped/multi-query attention from scratch; one cached decode step to time  II.8
``graphs``          computation graphs of RNN / CNN / attention; path lengths, steps            O, I, II.5
``receptive``       receptive fields, layers needed to connect a distance (closed forms)        I.1–2, III
``conv``            1-D convolution stacks: centred, causal, dilated                            O, I, II.1
``attention``       attention as functions: naive, SDPA backends, causal and local masks        I.5, II
``efficient``       blocked local attention, downsample-then-attend, gradient checkpointing     II.5
``gradients``       models for the gradient chapter: exact spectral radius, forget-gate bias    I.4
``positional``      sinusoidal positional encoding and its offset property                      I.4–5
``sequential``      forward time vs n of matched backbones; serial vs batched steps             I.3
``scratch``         the three families from scratch, checked against torch.nn                   O
``article_models``  the first article's example models, run and examined                        O
``datashape``       the first article's data-shape → family table and decision flow, as data    O
``datasets``        small real data from installed packages: digits, an EEG trace, stdlib text  O
``tasks``           synthetic copy and bracket tasks with a controlled dependency distance      I.6
``train``           one seeded training loop; the learnability lab                              I.6
``choose``          both axes at once: matched blocks, training memory, the ranking             III.1
``datastats``       measure data first: length percentiles, span estimators, padding cost       III.2
``streaming``       streaming models and their state: ConvLSTM, sliding-window KV cache         III.3, III.5
``mixers``          strided sparse and linear attention, a diagonal scan; hybrid graphs         III.4
``capstone``        the capstone: four causal character models at one budget, span used         III.5
``baselines``       the playbook: a baseline per family at one budget; quality, latency, cost   O, III
``env``             the device: description, CPU vs GPU sweep sizes, reference data             all
``plotting``        log-log plots with fitted slopes, shared colours                            I, II, III
``report``          numbers for the prose: glue on the site, a table in Jupyter and Colab       all
``validate``        argument checks that raise a ``ValueError`` saying what to change           —
``torch_support``   the oldest supported torch; self-checks of the torch internals used         II.2, II.4
==================  ==========================================================================  ==========

Conventions: shape arguments in the order ``batch, heads, n, head_dim, layers``; byte counts take
``bytes_per_element`` (2 by default: FP16/BF16); units in names (``_bytes``, ``_flops``, ``_s``); new
parameters keyword-only. Paths of version 0.1 (``utils.memory``, ``utils.flops``, …) still work for one
release and warn (``utils._moved``).
"""

__version__ = "0.2.0"

# An older torch than the package supports fails here, with the version it needs, instead of giving a
# wrong number later (Colab brings its own preinstalled torch).
from utils.torch_support import require_torch as _require_torch  # noqa: E402

_require_torch()

# Version 0.1 import paths (utils.memory, utils.flops, …) keep working for one release, with a warning.
from utils._moved import install as _install_moved  # noqa: E402

_install_moved()
