"""The C++ backend of the neuron ops: fused CPU kernels, compiled on first use.

The eager backend runs a handful of elementwise torch operations per time step, each a full pass
over memory. The kernels in ``csrc/lif.cpp`` (shipped with the package) walk ``[T, N]`` once per
element forward (writing the spikes and, for the backward pass, the pre-spike membrane) and once
backward (the whole backward through time, steps in reverse), parallel over elements with ATen's
OpenMP; the same for the LIF fused with the GAC gate. See the source for the arithmetic contract.

Nothing is compiled at import: :func:`load` builds the extension with
``torch.utils.cpp_extension`` (C++ only, about half a minute, once: torch caches the build in its
extensions directory, ``TORCH_EXTENSIONS_DIR``) or loads the cached build. A failure is remembered
(:func:`build_error`) and not retried in this process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path
from types import ModuleType

from torch import Tensor

__all__ = [
    "SOURCE",
    "available",
    "build_error",
    "gated_backward",
    "gated_forward",
    "is_built",
    "lif_backward",
    "lif_forward",
    "load",
    "toolchain_available",
]

#: The C++ source of the kernels (package data).
SOURCE = Path(__file__).with_name("csrc") / "lif.cpp"
_FLAGS = ["-O3", "-ffp-contract=off", "-fopenmp"]


def _cpp_extension() -> ModuleType:
    """``torch.utils.cpp_extension``, imported without its "No CUDA runtime is found" log line
    (irrelevant here: the kernels are C++ only)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def toolchain_available() -> bool:
    """Whether a C++ compiler and ``ninja`` (which ``torch.utils.cpp_extension`` needs) are found."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return False
    return bool(_cpp_extension().is_ninja_available())


def _summary(exc: BaseException) -> str:
    """The first line of a (possibly long, compiler-output) exception message and the first later
    line that says what went wrong, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0][:200] if lines else ""
    causes = [line for line in lines[1:] if "error" in line.lower() or "not found" in line.lower()]
    if causes or len(lines) > 1:
        text += " ... " + (causes or lines[-1:])[0][:300]
    return f"{type(exc).__name__}: {text}"


class Extension:
    """One C++ extension of the package (``source``, compiled with ``_FLAGS``), built on first use.

    The neuron ops' kernels (this module) and the lean ops' (:mod:`gac_coding.ops._lean_cpp`) are
    one each. :meth:`load` builds the extension once however many threads ask at once, or loads
    torch's cached build; a failure is kept in :attr:`error` (a one-line summary) and not retried
    in this process. ``what`` names the kernels in the error a kernel call raises after a failed
    build.
    """

    def __init__(self, prefix: str, source: Path, what: str) -> None:
        self.prefix, self.source, self.what = prefix, source, what
        self.module: ModuleType | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    def name(self) -> str:
        """``<prefix>_<digest>``: the digest covers the source, the flags, the source's location and
        the torch build, so that an edit never loads a stale build and two environments (each with
        its own torch headers and source path) never rebuild each other's copy in torch's shared
        cache."""
        import torch

        where = f"{' '.join(_FLAGS)}|{self.source}|{torch.__version__}|{Path(torch.__file__).parent}"
        digest = hashlib.sha256(self.source.read_bytes() + where.encode()).hexdigest()[:12]
        return f"{self.prefix}_{digest}"

    def build_dir(self) -> str:
        return _cpp_extension()._get_build_directory(self.name(), verbose=False)

    def is_built(self) -> bool:
        """Whether this process loaded the kernels or torch's extension cache holds a build of this
        source (nothing is compiled)."""
        if self.module is not None:
            return True
        try:
            directory = self.build_dir()
        except Exception:  # noqa: BLE001 - no cache directory: not built
            return False
        return os.path.isfile(os.path.join(directory, f"{self.name()}.so"))

    def available(self) -> tuple[bool, str]:
        """``(usable, reason if not)``: built already, or a toolchain to build it (nothing compiled)."""
        if self.error is not None:
            return False, self.error
        if self.is_built() or toolchain_available():
            return True, ""
        return False, "no C++ compiler or ninja found to build the kernels"

    def compile(self) -> ModuleType:
        return _cpp_extension().load(
            name=self.name(), sources=[str(self.source)], extra_cflags=_FLAGS, verbose=False
        )

    def load(self) -> ModuleType | None:
        """The compiled module (building it on first use), or ``None`` after a failed build."""
        if self.module is not None or self.error is not None:
            return self.module
        with self._lock:
            if self.module is None and self.error is None:
                try:
                    self.module = self.compile()
                except Exception as exc:  # noqa: BLE001 - any failure means: use the eager backend
                    self.error = _summary(exc)
        return self.module

    def kernels(self) -> ModuleType:
        """The compiled module; a ``RuntimeError`` naming why the build failed."""
        module = self.load()
        if module is None:
            raise RuntimeError(f"{self.what} could not be built ({self.error})")
        return module


_EXTENSION = Extension("gac_coding_lif", SOURCE, "the C++ kernels")


def is_built() -> bool:
    """Whether this process loaded the kernels or torch's extension cache holds a build of this
    source (nothing is compiled)."""
    return _EXTENSION.is_built()


def build_error() -> str | None:
    """Why the build failed in this process (``None`` if none failed)."""
    return _EXTENSION.error


def available(device: object = None) -> tuple[bool, str]:
    """``(usable, reason if not)``: built already, or a toolchain to build it (nothing compiled)."""
    return _EXTENSION.available()


def load() -> ModuleType | None:
    """The compiled module (building it on first use), or ``None`` after a failed build.

    A failure is recorded in :func:`build_error` and not retried in this process.
    """
    return _EXTENSION.load()


def _kernels() -> ModuleType:
    return _EXTENSION.kernels()


# The backend functions (signatures: gac_coding.ops.backends). Tensors arrive contiguous.


def lif_forward(
    x: Tensor, steps: int, decay: float, threshold: float, save: bool
) -> tuple[Tensor, Tensor | None]:
    spikes, h = _kernels().lif_forward(x, steps, decay, threshold, save)
    return spikes, h


def lif_backward(
    grad_s: Tensor,
    h: Tensor,
    is_static: bool,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
) -> Tensor:
    return _kernels().lif_backward(grad_s, h, is_static, decay, threshold, surrogate, detach_reset)


def gated_forward(
    u: Tensor, ta: Tensor, sca: Tensor, steps: int, decay: float, threshold: float, save: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    out, fired, gate, h = _kernels().gated_forward(u, ta, sca, steps, decay, threshold, save)
    return out, fired, gate, h


def gated_backward(
    grad_out: Tensor,
    h: Tensor,
    out: Tensor,
    gate: Tensor,
    ta: Tensor,
    sca: Tensor,
    u_static: bool,
    decay: float,
    threshold: float,
    surrogate: int,
    detach_reset: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    grad_u, grad_ta, grad_sca = _kernels().gated_backward(
        grad_out, h, out, gate, ta, sca, u_static, decay, threshold, surrogate, detach_reset
    )
    return grad_u, grad_ta, grad_sca
