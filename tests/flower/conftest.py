"""One math thread for the in-process trainers of these tests (several trainers share two
cores here; more threads oversubscribe them and are 10-20x slower, not faster)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
