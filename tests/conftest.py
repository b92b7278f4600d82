from __future__ import annotations

import os
import warnings

# Triton reads TRITON_INTERPRET when it decorates kernels and again on later imports of its own
# parts; torch.compile (inductor) may import triton before any backend test runs. Setting it for
# the whole test process makes the triton backend run in its interpreter on CPU tensors whatever
# the test order. The tests marked cuda (tests/test_cuda.py) load compiled kernels for themselves.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# the same examples on every run (a fixed seed per test), no example database between runs
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

os.environ.setdefault("MPLBACKEND", "Agg")

# make test runs two pytest-xdist workers on two cores: one torch thread each, or their OpenMP
# pools (two threads apiece by default) fight over the cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


#: Set to 1 to run the tests marked ``cuda`` on the CPU at tiny sizes (a smoke run of their code).
CUDA_DRY_RUN_ENV = "GAC_CODING_CUDA_DRY_RUN"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests marked ``cuda`` where torch sees no CUDA device (and no dry run is asked
    for): they are reported as deselected, not skipped."""
    if torch.cuda.is_available() or os.environ.get(CUDA_DRY_RUN_ENV) == "1":
        return
    dropped = [item for item in items if item.get_closest_marker("cuda") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.get_closest_marker("cuda") is None]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _model_registry():
    """Models a test (or a docstring example) registers are gone after it: the registry is
    global, and tests such as ``test_every_registered_model_is_covered`` walk all of it."""
    from gac_coding.models.registry import _REGISTRY

    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)
