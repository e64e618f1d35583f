"""Shared, tested helpers for the course *Path length & resource complexity*.

One module per concept, so a reader can find a computation by its name:

==================  ==============================================================
module              concept
==================  ==============================================================
``env``             which device runs the notebook, sweep sizes for CPU vs GPU
``validate``        argument checks that raise clear ``ValueError`` messages
``graphs``          computation graphs of RNN / CNN / attention, shortest paths
``receptive``       receptive fields of convolution stacks
``reachability``    which outputs depend on which inputs, measured by autograd
``attention``       naive, SDPA and local (windowed) attention
``conv``            1-D convolution stacks: centred, causal, dilated
``timing``          robust wall-clock timing (CPU and CUDA)
``plotting``        log-log plots with fitted slopes, shared figure style
``measure``         one import point for every *measurement* helper
``complexity``      one import point for every *closed-form cost* formula
==================  ==============================================================
"""

__version__ = "0.1.0"
