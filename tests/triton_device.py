"""Where the triton kernels run in this test process (shared by the backend test files)."""

from __future__ import annotations

import pytest

from gac_coding.ops import _triton


def triton_kernel_device() -> str:
    """Load the triton kernels, in triton's interpreter unless this process already compiled them
    for CUDA, and return the device whose tensors they take: ``"cpu"`` or ``"cuda"``.

    Triton reads ``TRITON_INTERPRET`` when it decorates the kernels (their first load): it is set
    for that moment only; the backend keeps the interpreter on for its own launches afterwards.
    """
    if _triton._kernels is None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRITON_INTERPRET", "1")
            _triton._load()
    return "cpu" if _triton.interpreted() else "cuda"
