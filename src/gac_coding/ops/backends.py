"""Which backend computes the neuron ops: ``"eager"``, ``"cpp"`` or ``"triton"``, or ``"auto"``.

**A backend** is a value with one interface, :class:`Backend`: four functions on contiguous tensors
(a channels-last step handed over as its ``[..., H, W, C]`` view)::

    lif_forward(x, steps, decay, threshold, save) -> (spikes, h or None)
    lif_backward(grad_s, h, is_static, decay, threshold, surrogate, detach_reset) -> grad_x
    gated_forward(u, ta, sca, steps, decay, threshold, save) -> (out, fired, gate, h or None)
    gated_backward(grad_out, h, out, gate, ta, sca, u_static, decay, threshold, surrogate,
                   detach_reset) -> (grad_u, grad_ta, grad_sca)

plus ``covers(device, dtype)`` (the tensors it takes) and ``ready(device)`` (whether it can run
now, building or importing its kernels on first use). ``steps > 0``: ``x`` (``u``) is one step
applied ``steps`` times; ``surrogate`` is a code (0 triangle, 1 rectangle). :data:`REGISTRY` holds
the three: ``"eager"`` (torch operations, any tensor), ``"cpp"`` (C++ kernels, float32/float64 CPU
tensors, compiled on first use) and ``"triton"`` (CUDA tensors of float16, bfloat16, float32,
float64; CPU tensors only in triton's interpreter, ``TRITON_INTERPRET=1``, as the tests run it).

**A backend setting** (the ``backend=`` of :class:`gac_coding.LIF`, the gate, the encoder and the
models; :func:`set_backend`; ``GAC_CODING_LIF_BACKEND``) is one of

* ``"auto"``: :func:`auto_backend`, a pure function of the tensor's device and dtype and of the
  installed packages: ``"triton"`` for CUDA tensors of those dtypes when triton is installed (with
  eager as the fallback, below), else ``"eager"``. The C++ kernels are never picked by ``"auto"``:
  on the CPU they were not faster than eager for whole models (``benchmarks/RESULTS.md``), and
  picking them only where a build happens to sit in torch's cache would make two runs of one
  script run different kernels.
* a backend name, ``"eager"``, ``"cpp"`` or ``"triton"``: that backend alone. If it cannot run a
  call (its kernels fail to build, it is not usable on this machine, or it fails at launch), the
  call raises :class:`BackendError`.
* backends to try in order, comma-separated, eager last: ``"cpp,eager"``, ``"triton,eager"``.
  A backend that fails a call hands it to the next with a ``RuntimeWarning`` naming the reason.

Either way the decision is per call: the next call tries the chosen backend again (a failed C++
build is remembered, not redone). A tensor that no named backend covers (``"cpp"`` with a CUDA or a
half-precision tensor) runs eager, and so does a callable surrogate (no kernel knows it).

**Which setting applies** to an op call, highest first:

1. the module's (or the op call's) own ``backend=``, when it is not ``"auto"``;
2. the process override, :func:`set_backend` (or :func:`use_backend` in a ``with`` block);
3. the environment variable ``GAC_CODING_LIF_BACKEND`` (read at each call);
4. ``"auto"``.

Modules hand their setting to the ops as a plain string argument (so ``torch.compile`` and
``torch.export`` graphs hold it as a constant); it is resolved when the op runs. Every backend
gives the same spikes and, up to float rounding, the same gradients.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType, ModuleType
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "Backend",
    "BackendError",
    "BackendSetting",
    "REGISTRY",
    "auto_backend",
    "backend_module",
    "check_backend",
    "get_backend",
    "module_backends",
    "resolve",
    "set_backend",
    "set_module_backend",
    "use_backend",
]

#: The single-word settings; comma-separated lists such as ``"cpp,eager"`` are accepted too.
BACKENDS = ("auto", "eager", "cpp", "triton")
#: Environment variable read at each op call whose setting is ``"auto"`` when :func:`set_backend`
#: was not called.
BACKEND_ENV = "GAC_CODING_LIF_BACKEND"

_HALF_AND_FULL = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class BackendError(RuntimeError):
    """A backend could not run an op call and its setting names no backend to fall back to."""


# ------------------------------------------------------------------------------------ the interface


@runtime_checkable
class Backend(Protocol):
    """One way of computing the neuron ops (see the module doc for the four functions)."""

    name: str

    def covers(self, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether it takes tensors of this device and dtype (a fixed rule, nothing is loaded)."""
        ...

    def ready(self, device: torch.device) -> tuple[bool, str]:
        """``(True, "")`` if it can run on ``device`` now (building or importing on first use),
        else ``(False, why)``."""
        ...

    def lif_forward(
        self, x: Tensor, steps: int, decay: float, threshold: float, save: bool
    ) -> tuple[Tensor, Tensor | None]: ...

    def lif_backward(
        self,
        grad_s: Tensor,
        h: Tensor,
        is_static: bool,
        decay: float,
        threshold: float,
        surrogate: Any,
        detach_reset: bool,
    ) -> Tensor: ...

    def gated_forward(
        self, u: Tensor, ta: Tensor, sca: Tensor, steps: int, decay: float, threshold: float, save: bool
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]: ...

    def gated_backward(
        self,
        grad_out: Tensor,
        h: Tensor,
        out: Tensor,
        gate: Tensor,
        ta: Tensor,
        sca: Tensor,
        u_static: bool,
        decay: float,
        threshold: float,
        surrogate: Any,
        detach_reset: bool,
    ) -> tuple[Tensor, Tensor, Tensor]: ...


class _ModuleBackend:
    """A backend whose four functions live in a module of this package, imported on first use
    (looked up at each call, so a patched function is the one that runs)."""

    def __init__(
        self,
        name: str,
        module: str,
        devices: tuple[str, ...],
        dtypes: tuple[torch.dtype, ...] | None,
        ready: Callable[[torch.device], tuple[bool, str]],
    ) -> None:
        self.name = name
        self._module_name = module
        self._devices = devices
        self._dtypes = dtypes
        self._ready = ready

    def __repr__(self) -> str:
        return f"<gac_coding backend {self.name!r}>"

    def module(self) -> ModuleType:
        return importlib.import_module(f"{__package__}.{self._module_name}")

    def covers(self, device: torch.device, dtype: torch.dtype) -> bool:
        if self._dtypes is None:
            return True
        return device.type in self._devices and dtype in self._dtypes

    def ready(self, device: torch.device) -> tuple[bool, str]:
        return self._ready(device)

    def lif_forward(self, *args: Any) -> Any:
        return self.module().lif_forward(*args)

    def lif_backward(self, *args: Any) -> Any:
        return self.module().lif_backward(*args)

    def gated_forward(self, *args: Any) -> Any:
        return self.module().gated_forward(*args)

    def gated_backward(self, *args: Any) -> Any:
        return self.module().gated_backward(*args)


def _always(device: torch.device) -> tuple[bool, str]:
    return True, ""


def _cpp_ready(device: torch.device) -> tuple[bool, str]:
    from . import _cpp

    if _cpp.load() is not None:  # the build (or the load of the cached one) happens once
        return True, ""
    return False, f"the C++ kernels could not be built: {_cpp.build_error()}"


def _triton_ready(device: torch.device) -> tuple[bool, str]:
    from . import _triton

    return _triton.available(device)


#: The backends by name (read-only).
REGISTRY: Mapping[str, Backend] = MappingProxyType(
    {
        "eager": _ModuleBackend("eager", "_eager", (), None, _always),
        "cpp": _ModuleBackend("cpp", "_cpp", ("cpu",), (torch.float32, torch.float64), _cpp_ready),
        "triton": _ModuleBackend("triton", "_triton", ("cuda", "cpu"), _HALF_AND_FULL, _triton_ready),
    }
)


def backend_module(name: str) -> ModuleType:
    """The module holding backend ``name``'s functions (imports it; compiles nothing)."""
    if name not in REGISTRY:
        raise ValueError(f"backend: expected one of {list(REGISTRY)}, got {name!r}")
    backend = REGISTRY[name]
    assert isinstance(backend, _ModuleBackend)
    return backend.module()


# -------------------------------------------------------------------------------------- settings


_CHOICES = (
    f"one of {list(BACKENDS)} or backends to try in order, comma-separated with 'eager' last "
    "(e.g. 'cpp,eager')"
)


@functools.lru_cache(maxsize=64)
def _parse(value: str, what: str) -> str:
    text = value.strip().lower()
    if text == "auto":
        return text
    names = [n.strip() for n in text.split(",")]
    if (
        not names
        or any(n not in REGISTRY for n in names)
        or len(set(names)) != len(names)
        or ("eager" in names and names[-1] != "eager")
    ):
        raise ValueError(f"{what}: expected {_CHOICES}, got {value!r}")
    return ",".join(names)


def check_backend(value: object, what: str = "backend") -> str:
    """``value`` as a normalised setting (lower case, no spaces); a ``ValueError`` (``TypeError``
    for a non-string) naming ``what`` and the choices if it is none.

    Example:
        >>> from gac_coding.ops.backends import check_backend
        >>> check_backend(" CPP, eager")
        'cpp,eager'
    """
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected a str, {_CHOICES}, got {type(value).__name__}")
    return _parse(value, what)


_override: str | None = None  # set_backend's setting; None: the environment variable, else "auto"


def set_backend(name: str | None) -> None:
    """Set the process override: the setting of every op call whose own ``backend=`` is
    ``"auto"`` (the default). ``None`` removes it (``GAC_CODING_LIF_BACKEND``, else ``"auto"``,
    apply again). Nothing is compiled here; ``"cpp"`` builds its kernels on the first call.
    """
    global _override
    _override = None if name is None else check_backend(name)


def get_backend() -> str:
    """The process setting: :func:`set_backend`'s, else ``GAC_CODING_LIF_BACKEND``'s, else ``"auto"``."""
    if _override is not None:
        return _override
    env = os.environ.get(BACKEND_ENV, "")
    return check_backend(env, BACKEND_ENV) if env.strip() else "auto"


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Run a block with another process override (:func:`set_backend`), restored afterwards.

    Example:
        >>> import torch
        >>> from gac_coding.ops import backends, lif, LIFParams
        >>> with backends.use_backend("eager"):
        ...     lif(torch.tensor([[0.6], [0.6], [0.6]]), LIFParams()).flatten().tolist()
        [0.0, 0.0, 1.0]
    """
    global _override
    previous = _override
    set_backend(name)
    try:
        yield
    finally:
        _override = previous


# ------------------------------------------------------------------------------------ resolution


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def auto_backend(device: torch.device | str, dtype: torch.dtype) -> str:
    """The backend ``"auto"`` runs tensors of ``device`` and ``dtype`` on: ``"triton"`` for CUDA
    tensors of float16, bfloat16, float32 or float64 when triton is installed, else ``"eager"``.

    A pure function of its arguments and the installed packages: the same on every run.

    Example:
        >>> import torch
        >>> from gac_coding.ops.backends import auto_backend
        >>> auto_backend("cpu", torch.float32)
        'eager'
    """
    device = torch.device(device)
    if device.type == "cuda" and dtype in _HALF_AND_FULL and _triton_installed():
        return "triton"
    return "eager"


class Plan(NamedTuple):
    """The backends one op call tries, in order, and the setting they come from."""

    setting: str
    names: tuple[str, ...]


_EAGER = ("eager",)


def _plan(backend: str, device: torch.device, dtype: torch.dtype, surrogate_code: int | None) -> Plan:
    setting = get_backend() if backend == "auto" else backend
    if surrogate_code is None:  # a callable surrogate: no kernel knows it
        return Plan(setting, _EAGER)
    if setting == "auto":
        first = auto_backend(device, dtype)
        return Plan(setting, _EAGER if first == "eager" else (first, "eager"))
    names = tuple(n for n in setting.split(",") if REGISTRY[n].covers(device, dtype))
    return Plan(setting, _EAGER if names in ((), _EAGER) else names)


def resolve(
    backend: str,
    device: torch.device | str,
    dtype: torch.dtype,
    surrogate_code: int | None = 0,
    *,
    check: bool = False,
) -> str:
    """The backend that an op call with setting ``backend`` on tensors of ``device`` and ``dtype``
    runs on (the process override and the environment variable apply to ``"auto"``;
    ``surrogate_code=None`` stands for a callable surrogate).

    ``check=False``: the first backend of the setting that takes such tensors (nothing loaded).
    ``check=True``: the first that is also ready to run here, building the C++ kernels or
    importing triton if need be, as a call would; :class:`BackendError` when none is (a kernel
    that fails at launch is not foreseen).

    Example:
        >>> import torch
        >>> from gac_coding.ops.backends import resolve
        >>> resolve("cpp", "cpu", torch.float64), resolve("cpp", "cpu", torch.bfloat16)
        ('cpp', 'eager')
    """
    device = torch.device(device)
    p = _plan(check_backend(backend), device, dtype, surrogate_code)
    if not check:
        return p.names[0]
    failures = []
    for name in p.names:
        ok, reason = REGISTRY[name].ready(device)
        if ok:
            return name
        failures.append(f"{name!r} cannot run here: {reason}")
    raise BackendError(
        f"gac_coding: no backend can run on {device} (setting {p.setting!r}): {'; '.join(failures)}"
    )


def _summary(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def call(plan: Plan, function: str, *args: Any, registry: Mapping[str, Any] = REGISTRY) -> tuple[Any, str]:
    """``(result, name)``: ``function`` run by the first backend of ``plan`` that can run it.

    A backend that is not ready or raises (out-of-memory errors excepted) hands the call to the
    next with a ``RuntimeWarning``; when none is left, :class:`BackendError` is raised.
    ``registry``: where the backends of the plan's names are looked up (another family of
    functions, e.g. the lean ops' of :mod:`gac_coding.ops.lean`, has its own).
    """
    names = plan.names
    if names is _EAGER:  # the common case: no checks
        return getattr(registry["eager"], function)(*args), "eager"
    device = args[0].device
    failures: list[str] = []
    cause: BaseException | None = None
    for name in names:
        backend = registry[name]
        ok, reason = backend.ready(device)
        if ok:
            try:
                result = getattr(backend, function)(*args)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - a kernel failure: the next backend, or raise
                cause = exc
                failures.append(f"{name!r} failed: {_summary(exc)}")
                continue
            if failures:
                warnings.warn(
                    f"gac_coding: {'; '.join(failures)}; backend {name!r} ran this {function} call "
                    f"instead (setting {plan.setting!r}; the next call tries {names[0]!r} again)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return result, name
        failures.append(f"{name!r} cannot run here: {reason}")
    first = names[0]
    hint = (
        f"; use backend='{first},eager' to fall back to eager (with a warning), or 'eager'"
        if "eager" not in names
        else ""
    )
    raise BackendError(
        f"gac_coding: no backend could run {function} (setting {plan.setting!r}): {'; '.join(failures)}{hint}"
    ) from cause


def plan(backend: str, x: Tensor, surrogate_code: int | None) -> Plan:
    """The backends an op call with setting ``backend`` on ``x`` tries (see :func:`call`)."""
    return _plan(backend, x.device, x.dtype, surrogate_code)


# ------------------------------------------------------------------------------------ on modules


class BackendSetting:
    """The ``backend`` of a module that runs the neuron ops: a setting checked on assignment
    (see the module doc), shown in the module's repr."""

    _backend: str = "auto"

    @property
    def backend(self) -> str:
        """The backend setting of this module's neuron ops (``"auto"`` by default)."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = check_backend(value)


def module_backends(
    module: torch.nn.Module,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    check: bool = False,
) -> dict[str, str]:
    """``{qualified name: backend setting}`` of every submodule that runs the neuron ops; with
    ``device`` and ``dtype``, the backend each one runs on there instead (:func:`resolve`).

    Example:
        >>> import torch, gac_coding as gac
        >>> from gac_coding.ops.backends import module_backends
        >>> net = torch.nn.Sequential(gac.LIF(), gac.LIF(backend="cpp,eager"))
        >>> module_backends(net)
        {'0': 'auto', '1': 'cpp,eager'}
        >>> module_backends(net, "cpu", torch.float16)       # the C++ kernels take float32/64
        {'0': 'eager', '1': 'eager'}
    """
    found = {name: m for name, m in module.named_modules() if isinstance(m, BackendSetting)}
    if device is None and dtype is None:
        return {name: m.backend for name, m in found.items()}
    if device is None or dtype is None:
        raise ValueError("module_backends: give both device and dtype, or neither")
    resolved = {}
    for name, m in found.items():
        params = getattr(m, "params", None)
        code = params.surrogate_code if params is not None else 0
        resolved[name] = resolve(m.backend, device, dtype, code, check=check)
    return resolved


def set_module_backend(module: torch.nn.Module, backend: str) -> torch.nn.Module:
    """Give every submodule of ``module`` that runs the neuron ops the setting ``backend``;
    returns ``module``."""
    backend = check_backend(backend)
    for m in module.modules():
        if isinstance(m, BackendSetting):
            m.backend = backend
    return module
