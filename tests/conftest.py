from __future__ import annotations

import os
import warnings

# Triton reads TRITON_INTERPRET when it decorates kernels and again on later imports of its own
# parts; torch.compile (inductor) may import triton before any backend test runs. Setting it for
# the whole test process makes the triton backend run in its interpreter on CPU tensors whatever
# the test order (the suite runs on CPU; real CUDA runs are in benchmarks/cuda_check.sh).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# the same examples on every run (a fixed seed per test), no example database between runs
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
