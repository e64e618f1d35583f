"""Shared, tested helpers for the course *Path length & resource complexity*.

One module per concept, so a reader can find a computation by its name:

==================  ===============================================================================
module              concept
==================  ===============================================================================
``graphs``          computation graphs of RNN / CNN / attention; BFS path lengths, sequential steps
``receptive``       receptive fields of convolution stacks, layers needed to connect a distance
``reachability``    which outputs depend on which inputs, measured by autograd
``sequential``      matched-width backbones and their forward time as the sequence grows
``gradients``       gradient norms along the path: spectral radius, forget gates, truncated BPTT
``positional``      sinusoidal positional encoding and its offset property
``tasks``           synthetic copy and bracket tasks with a controlled dependency distance
``models``          one factory for RNN / LSTM / GRU / dilated CNN / Transformer classifiers
``train``           one seeded training loop for every family
``flops``           closed-form FLOPs and an exact FLOP counter for every family
``memory``          attention's n² bytes, peak-memory measurement, the out-of-memory guard
``kvcache``         a small decoder with an explicit KV cache; cache bytes and per-token FLOPs
``roofline``        measured compute and bandwidth roofs; arithmetic intensity
``efficient``       local (blocked) attention, downsample-then-attend, gradient checkpointing
``choose``          both axes at once: profile each family on a workload and rank under budgets
``attention``       naive, SDPA and masked (causal, local) self-attention
``conv``            1-D convolution stacks: centred, causal, dilated
``parameters``      closed-form parameter counts of the layers
``timing``          robust wall-clock timing (CPU and CUDA)
``plotting``        log-log plots with fitted slopes, shared colours
``env``             which device runs the notebook; CPU vs GPU sweep sizes; reference data
``validate``        argument checks that raise clear ``ValueError`` messages
``report``          numbers for the prose: myst-nb glue on the site, a table in Jupyter and Colab
``torch_support``   the oldest torch the package supports, and self-checks of the torch internals it uses
``measure``         one import point for every *measurement* helper
``complexity``      one import point for every *closed-form cost* formula
==================  ===============================================================================
"""

__version__ = "0.1.0"

# An older torch than the package supports fails here, with the version it needs, instead of giving a
# wrong number later (Colab brings its own preinstalled torch).
from utils.torch_support import require_torch as _require_torch  # noqa: E402

_require_torch()
