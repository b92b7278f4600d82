from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
warnings.filterwarnings("ignore", message=".*torch.jit.script.*")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
