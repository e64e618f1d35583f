"""utils.torch_support: the torch floor and the self-checks of the private torch internals we rely on."""

import re
import sys
from pathlib import Path

import pytest
import torch
import torch.autograd.profiler
import torch.utils.flop_counter as flop_counter
from torch import nn

from utils import torch_support
from utils.measure import _memory as memory, count_flops, counting_context
from utils.measure._flops import _AuditedFlopCounter
from utils.torch_support import (
    CANARY_BYTES,
    MIN_TORCH,
    check_cpu_memory_reader,
    check_flop_audit,
    ensure_cpu_memory_reader,
    require_torch,
    reset_checks,
    torch_release,
)


@pytest.fixture(autouse=True)
def fresh_checks():
    """Each test sees the self-checks not yet run, and leaves them so."""
    reset_checks()
    yield
    reset_checks()


# --------------------------------------------------------------------------------------------------
# The floor
# --------------------------------------------------------------------------------------------------

def test_floor_in_pyproject_is_the_checked_one():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    torch_specs = [d for d in project["dependencies"] if re.match(r"torch\b", d)]
    assert torch_specs == [f"torch>={MIN_TORCH[0]}.{MIN_TORCH[1]}"]


def test_installed_torch_is_at_or_above_the_floor():
    assert torch_release() >= MIN_TORCH
    require_torch()  # does not raise


@pytest.mark.parametrize("version, release", [
    ("2.13.0+cpu", (2, 13)), ("2.4.0", (2, 4)), ("2.10.0+cu121", (2, 10)), ("2.6.0a0+git1234", (2, 6)),
    ("3.0", (3, 0)),
])
def test_torch_release_reads_major_minor(version, release):
    assert torch_release(version) == release


def test_torch_release_bad_string():
    with pytest.raises(ValueError, match="cannot read a torch release"):
        torch_release("nightly")


@pytest.mark.parametrize("version", ["2.3.1", "2.2.0+cpu", "1.13.1"])
def test_require_torch_refuses_older_releases(version):
    with pytest.raises(ImportError, match=rf"torch {re.escape(version)} is too old.*torch>=2\.4"):
        require_torch(version)


@pytest.mark.parametrize("version", ["2.4.0", "2.4.1+cu121", "2.13.0", "3.1.0"])
def test_require_torch_accepts_the_floor_and_newer(version):
    require_torch(version)


# --------------------------------------------------------------------------------------------------
# FLOP audit: the override of the private FlopCounterMode._count_flops must be called
# --------------------------------------------------------------------------------------------------

def test_flop_audit_passes_on_this_torch():
    check_flop_audit(_AuditedFlopCounter, counting_context)


def _inline_dispatch(self, func, types, args=(), kwargs=None):
    """A __torch_dispatch__ that counts like torch <= 2.3: inline, never calling ``_count_flops``."""
    kwargs = kwargs or {}
    out = func(*args, **kwargs)
    counter = getattr(self, "counter", self)  # _FlopCounterMode (2.6+) holds the FlopCounterMode
    packet = func._overloadpacket
    if packet in counter.flop_registry:
        flops = counter.flop_registry[packet](*args, **kwargs, out_val=out)
        for parent in set(counter.mod_tracker.parents):
            counter.flop_counts[parent][packet] += flops
    return out


@pytest.fixture
def hook_never_called(monkeypatch):
    """A torch whose FlopCounterMode still counts, but no longer calls the private hook we override."""
    target = getattr(flop_counter, "_FlopCounterMode", flop_counter.FlopCounterMode)
    monkeypatch.setattr(target, "__torch_dispatch__", _inline_dispatch)


def test_flop_audit_raises_when_the_private_hook_is_never_called(hook_never_called):
    # the counting itself still works, so without the check the audit would just be silently off
    with flop_counter.FlopCounterMode(display=False) as plain:
        torch.mm(torch.ones(2, 3), torch.ones(3, 4))
    assert plain.get_total_flops() == 48
    with pytest.raises(RuntimeError, match=r"did not call the private FlopCounterMode\._count_flops hook"):
        check_flop_audit(_AuditedFlopCounter, counting_context)


def test_count_flops_refuses_to_run_when_the_private_hook_is_never_called(hook_never_called):
    with pytest.raises(RuntimeError, match=rf"torch {re.escape(torch.__version__)}: .*_count_flops"):
        count_flops(nn.Linear(3, 4), torch.randn(2, 3))
    W, h = torch.randn(4, 3), torch.randn(3)
    with pytest.raises(RuntimeError, match="_count_flops"):  # without the check: 0, silently
        count_flops(lambda W, h: W @ h, W, h)


def test_flop_audit_runs_once_then_is_cached(monkeypatch):
    calls = []
    monkeypatch.setattr(torch_support, "check_flop_audit", lambda *args: calls.append(args))
    count_flops(nn.Linear(3, 4), torch.randn(2, 3))
    count_flops(nn.Linear(3, 4), torch.randn(2, 3))
    assert len(calls) == 1


def test_flop_audit_raises_on_a_wrong_mm_count():
    class Doubled(_AuditedFlopCounter):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            formula = self.flop_registry[torch.ops.aten.mm]
            self.flop_registry[torch.ops.aten.mm] = lambda *a, **k: 2 * formula(*a, **k)

    with pytest.raises(RuntimeError, match=r"counted 96 FLOPs for a 2x3 @ 3x4 torch\.mm, expected exactly 48"):
        check_flop_audit(Doubled)


def test_flop_audit_needs_an_audited_counter():
    with pytest.raises(RuntimeError, match="no 'uncounted' set"):
        check_flop_audit(flop_counter.FlopCounterMode)


def test_flop_audit_accepts_a_later_torch_that_counts_mv_exactly():
    def mv_flop(a_shape, x_shape, *args, out_shape=None, **kwargs):
        return 2 * a_shape[0] * a_shape[1]

    class KnowsMv(_AuditedFlopCounter):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flop_registry[torch.ops.aten.mv] = flop_counter.shape_wrapper(mv_flop)

    check_flop_audit(KnowsMv)  # counted exactly, not reported: fine


def test_flop_audit_raises_on_a_wrong_count_of_an_unlisted_product():
    class WrongMv(_AuditedFlopCounter):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flop_registry[torch.ops.aten.mv] = lambda *a, **k: 7

    with pytest.raises(RuntimeError, match=r"counted 7 FLOPs for a 2x3 @ 3 torch\.mv"):
        check_flop_audit(WrongMv)


# --------------------------------------------------------------------------------------------------
# CPU memory reader: Kineto's memory events must see a canary allocation
# --------------------------------------------------------------------------------------------------

def test_cpu_memory_reader_passes_on_this_torch():
    check_cpu_memory_reader(memory._cpu_memory_trace)


@pytest.fixture
def profiler_records_no_memory(monkeypatch):
    """A build whose profiler records no memory events (profile_memory silently ignored)."""
    real = torch.autograd.profiler.profile

    def profile(*args, **kwargs):
        kwargs["profile_memory"] = False
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd.profiler, "profile", profile)


def test_cpu_peak_raises_when_the_profiler_records_nothing(profiler_records_no_memory):
    assert memory._cpu_memory_trace(lambda: torch.empty(CANARY_BYTES, dtype=torch.uint8)) == []
    with pytest.raises(RuntimeError, match=r"recorded no CPU memory event.*would report 0 bytes"):
        memory._cpu_peak(lambda: torch.empty(1000))
    with pytest.raises(RuntimeError, match=rf"torch {re.escape(torch.__version__)}: .*recorded no CPU memory"):
        memory.peak_memory(lambda: torch.empty(1000), "cpu")


def test_cpu_memory_reader_raises_when_it_undercounts_the_canary():
    with pytest.raises(RuntimeError, match=rf"peak of 100 bytes while a kept-alive {CANARY_BYTES}-byte"):
        check_cpu_memory_reader(lambda fn: (fn(), [100, -100])[1])


def test_cpu_memory_reader_check_runs_once():
    calls = []

    def trace(fn):
        calls.append(1)
        return memory._cpu_memory_trace(fn)

    ensure_cpu_memory_reader(trace)
    ensure_cpu_memory_reader(trace)
    assert len(calls) == 1


def test_cpu_peak_still_exact_after_the_check():
    # the canary is checked in its own profiler session: it never shows in a measurement
    assert memory.peak_memory(lambda: torch.empty(1000, dtype=torch.float32), "cpu") == 4000
    assert memory.peak_memory(lambda: None, "cpu") == 0
