import os

import pytest
import torch
from hypothesis import settings

# Property tests are derandomized by default, so that a run that passed once passes again (CI never
# flakes). Set HYPOTHESIS_PROFILE=explore to search fresh random examples while developing.
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread (and do not fight other processes for the cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
