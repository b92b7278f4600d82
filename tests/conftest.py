from __future__ import annotations

import os
import warnings

import pytest
import torch
from hypothesis import settings

# the same examples on every run (a fixed seed per test), no example database between runs
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
