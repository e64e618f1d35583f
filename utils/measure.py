"""One import point for every *measurement* helper of the course.

Each helper lives in the module of its concept; this module only re-exports them, so that chapters
can write ``from utils.measure import reachability, count_flops, peak_memory``.
"""

from utils.reachability import reachability  # noqa: F401  (dependency structure, by autograd)
from utils.gradients import gradient_norms_vs_distance  # noqa: F401  (Jacobian norm vs distance, by autograd)
from utils.flops import count_flops, count_flops_by_module  # noqa: F401  (FLOPs of real modules, by FlopCounterMode)
from utils.roofline import matmul_peak_flops, copy_bandwidth, measure_roofline, time_attention_stages  # noqa: F401  (the two roofs of a device, timed)
from utils.receptive import input_gradient_profile  # noqa: F401  (effective receptive field, by autograd)
from utils.memory import peak_memory, check_fits, guard_attention  # noqa: F401  (peak bytes, by allocator; the OOM guard)
