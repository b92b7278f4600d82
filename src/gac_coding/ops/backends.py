"""Which backend runs the neuron ops: ``"auto"`` (default), ``"eager"``, ``"cpp"`` or ``"triton"``.

A backend is a module with four functions (all tensors contiguous, a channels-last step handed over
as its ``[..., H, W, C]`` view)::

    lif_forward(x, steps, decay, threshold, save) -> (spikes, h or None)
    lif_backward(grad_s, h, is_static, decay, threshold, surrogate, detach_reset) -> grad_x
    gated_forward(u, ta, sca, steps, decay, threshold, save) -> (out, fired, gate, h or None)
    gated_backward(grad_out, h, out, gate, ta, sca, u_static, decay, threshold, surrogate,
                   detach_reset) -> (grad_u, grad_ta, grad_sca)

and ``available(device) -> (usable, reason)``. ``steps > 0``: ``x`` (``u``) is one step applied
``steps`` times; ``surrogate`` is a code (0 triangle, 1 rectangle).

Choice per call, from the setting (:func:`set_backend`, else ``GAC_CODING_LIF_BACKEND``, else
``"auto"``) and the tensor:

* ``"auto"``: ``"triton"`` for CUDA tensors when triton is installed; ``"cpp"`` for float32/float64
  CPU tensors when the C++ kernels are already built (torch's extension cache; ``"auto"`` never
  starts the half-minute build, ``set_backend("cpp")`` does, once per machine); else ``"eager"``.
* ``"cpp"``: the C++ kernels for float32/float64 CPU tensors (built on first use); other tensors
  run eager.
* ``"triton"``: the triton kernels for CUDA tensors; CPU tensors only in triton's interpreter
  (``TRITON_INTERPRET=1``, for tests), otherwise eager after one warning.
* ``"eager"``: torch operations.

A callable surrogate always runs eager. A kernel that cannot be built or fails at launch is
dropped for the rest of the process with one ``RuntimeWarning`` naming the reason; the eager
backend runs instead. Every backend gives the same spikes and, up to float rounding, the same
gradients.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from . import _eager

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "backend_module",
    "call",
    "get_backend",
    "select",
    "set_backend",
    "use_backend",
]

BACKENDS = ("auto", "eager", "cpp", "triton")
#: Environment variable read on the first call of an op when :func:`set_backend` was not called.
BACKEND_ENV = "GAC_CODING_LIF_BACKEND"
_DEFAULT = "auto"

_CPP_DTYPES = (torch.float32, torch.float64)
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_setting: str | None = None  # None: not chosen yet, read BACKEND_ENV on first use
_ready: set[str] = {"eager"}  # backends checked usable in this process
_dropped: dict[str, str] = {}  # backend -> why it was dropped (warned once)
_cpp_cached: bool | None = None  # whether "auto" found a cached C++ build (checked once)


def _check(name: object, source: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ValueError(f"{source}: expected one of {list(BACKENDS)}, got {name!r}")
    return name.strip().lower()


def set_backend(name: str) -> None:
    """Choose the backend of every LIF and of the encoder's fused LIF+gate (see the module doc).

    Nothing is compiled here; ``"cpp"`` builds its kernels on the first call that needs them.
    """
    global _setting
    _setting = _check(name, "backend")


def get_backend() -> str:
    """The setting from :func:`set_backend`, ``GAC_CODING_LIF_BACKEND`` or the default ``"auto"``."""
    global _setting
    if _setting is None:
        env = os.environ.get(BACKEND_ENV, "").strip()
        _setting = _check(env, BACKEND_ENV) if env else _DEFAULT
    return _setting


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block with another backend setting, restored afterwards.

    Example:
        >>> import torch
        >>> from gac_coding.ops import backends, lif, LIFParams
        >>> with backends.use_backend("eager"):
        ...     lif(torch.tensor([[0.6], [0.6], [0.6]]), LIFParams()).flatten().tolist()
        [0.0, 0.0, 1.0]
    """
    global _setting
    previous = _setting
    set_backend(name)
    try:
        yield
    finally:
        _setting = previous


def backend_module(name: str) -> ModuleType:
    """The module of backend ``name`` (imports it; compiles nothing)."""
    if name == "eager":
        return _eager
    if name == "cpp":
        from . import _cpp

        return _cpp
    if name == "triton":
        from . import _triton

        return _triton
    raise ValueError(f"backend: expected one of {list(BACKENDS[1:])}, got {name!r}")


def _key(name: str, device: torch.device) -> str:
    """What a drop applies to: triton on CPU (its interpreter) is dropped apart from CUDA."""
    return name if name == "cpp" or device.type == "cuda" else f"{name} on {device.type}"


def _drop(key: str, reason: str) -> None:
    if key not in _dropped:
        _dropped[key] = reason
        warnings.warn(
            f"gac_coding: the {key} backend of the neuron ops is not usable ({reason}); "
            "the eager torch backend runs instead for the rest of this process",
            RuntimeWarning,
            stacklevel=4,
        )


def _usable(name: str, device: torch.device) -> bool:
    """Whether ``name`` can run here, building/importing it on first use; warns once if not."""
    key = _key(name, device)
    if key in _ready:
        return True
    if key in _dropped:
        return False
    if name == "cpp":
        from . import _cpp

        ok = _cpp.load() is not None
        reason = f"the C++ kernels could not be built: {_cpp.build_error()}"
    else:
        ok, reason = backend_module(name).available(device)
    if ok:
        _ready.add(key)
        return True
    _drop(key, reason)
    return False


def _cpp_already_built() -> bool:
    global _cpp_cached
    if "cpp" in _ready:
        return True
    if _cpp_cached is None:
        from . import _cpp

        _cpp_cached = _cpp.is_built()
    return _cpp_cached


def select(x: Tensor, surrogate_code: int | None) -> str:
    """The backend that runs an op on ``x`` (``None`` code: a callable surrogate, eager)."""
    if surrogate_code is None:
        return "eager"
    setting = _setting if _setting is not None else get_backend()
    if setting == "eager":
        return "eager"
    device, dtype = x.device, x.dtype
    if setting == "auto":
        if device.type == "cuda":
            if dtype in _TRITON_DTYPES and importlib.util.find_spec("triton") is not None:
                return "triton" if _usable("triton", device) else "eager"
            return "eager"
        if device.type == "cpu" and dtype in _CPP_DTYPES and _cpp_already_built():
            return "cpp" if _usable("cpp", device) else "eager"
        return "eager"
    if setting == "cpp":
        ok = device.type == "cpu" and dtype in _CPP_DTYPES
        return "cpp" if ok and _usable("cpp", device) else "eager"
    # triton
    if dtype not in _TRITON_DTYPES:
        return "eager"
    return "triton" if _usable("triton", device) else "eager"


def call(name: str, function: str, *args: Any) -> Any:
    """Run ``function`` of backend ``name``; a kernel that fails at launch is dropped (one
    warning) and the eager backend runs the call."""
    key = _key(name, args[0].device)
    if name != "eager" and key not in _dropped:
        try:
            return getattr(backend_module(name), function)(*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a kernel failure: fall back to eager
            _ready.discard(key)
            _drop(key, f"{function} failed: {type(exc).__name__}: {str(exc)[:300]}")
    return getattr(_eager, function)(*args)
