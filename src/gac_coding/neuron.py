"""Leaky integrate-and-fire dynamics with surrogate gradients (torch only).

The neuron of GAC and of the MS-ResNet backbones, per element and per step ``t``::

    h_t = decay * v_{t-1} + x_t             (membrane before firing, v_0 = 0)
    s_t = Heaviside(h_t - threshold)        (strictly greater than the threshold fires)
    v_t = h_t * (1 - s_t)                   (hard reset to 0)

which is ``v_t = decay * v_{t-1} * (1 - s_{t-1}) + x_t`` of GAC.md §1 written with the reset
applied after firing. The backward pass replaces ``d s / d h`` by a surrogate and, with
``detach_reset=True``, treats the reset factor ``(1 - s_t)`` as a constant.

The multi-step function :func:`lif` runs the whole ``[T, B, ...]`` sequence inside one autograd
node with a hand-written backward through time: it saves one tensor (the pre-spike membrane) instead
of the handful of intermediates per step that an autograd loop keeps. Two backends run it on CPU
(:func:`set_backend`): ``"eager"`` (default), torch operations with float comparisons written
directly (no bool masks, ``masked_fill`` or bool-to-float copies), and ``"cpp"``, an optional fused
C++ kernel (:mod:`gac_coding._lif_kernel`) compiled on first use, with a fallback to eager.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor, nn

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "LIF",
    "RECIPES",
    "SurrogateLike",
    "get_backend",
    "lif",
    "lif_reference",
    "resolve_surrogate",
    "set_backend",
    "surrogate_rectangle",
    "surrogate_triangle",
]

SurrogateFn = Callable[[Tensor], Tensor]
SurrogateLike = str | SurrogateFn

#: The neuron settings of the paper's two recipes (GAC.md §3).
RECIPES: dict[str, dict[str, object]] = {
    "cifar": {"decay": 0.5, "threshold": 1.0, "surrogate": "triangle", "detach_reset": False},
    "imagenet": {"decay": 0.25, "threshold": 0.5, "surrogate": "rectangle", "detach_reset": True},
}


def surrogate_triangle(x: Tensor) -> Tensor:
    """Triangle surrogate ``d s / d h = max(0, 1 - |h - threshold|)``; ``x = h - threshold``."""
    return (1.0 - x.abs()).clamp_(min=0.0)


def surrogate_rectangle(x: Tensor) -> Tensor:
    """Rectangle surrogate ``d s / d h = 1`` where ``|h - threshold| < 0.5``; ``x = h - threshold``."""
    return (x.abs() < 0.5).to(x.dtype)


_SURROGATES: dict[str, SurrogateFn] = {
    "triangle": surrogate_triangle,
    "rectangle": surrogate_rectangle,
}


def resolve_surrogate(surrogate: SurrogateLike) -> SurrogateFn:
    """Turn ``"triangle"``, ``"rectangle"`` or a callable into the derivative function.

    A callable receives ``h - threshold`` and returns ``d s / d h`` with the same shape.
    """
    if isinstance(surrogate, str):
        try:
            return _SURROGATES[surrogate]
        except KeyError:
            raise ValueError(
                f"surrogate: expected one of {sorted(_SURROGATES)} or a callable, got {surrogate!r}"
            ) from None
    if callable(surrogate):
        return surrogate
    raise TypeError(
        f"surrogate: expected a name {sorted(_SURROGATES)} or a callable, "
        f"got {type(surrogate).__name__}"
    )


def _check_params(decay: float, threshold: float) -> tuple[float, float]:
    for name, value in (("decay", decay), ("threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    if not 0.0 <= float(decay) <= 1.0:
        raise ValueError(f"decay: expected a value in [0, 1], got {decay}")
    if not float(threshold) > 0.0 or float(threshold) == float("inf"):
        raise ValueError(f"threshold: expected a finite value > 0, got {threshold}")
    return float(decay), float(threshold)


# --------------------------------------------------------------------------------------------
# Backend selection: the eager torch path or the fused C++ kernel (gac_coding._lif_kernel).
# --------------------------------------------------------------------------------------------

BACKENDS = ("auto", "eager", "cpp")
#: Environment variable read on the first LIF call when :func:`set_backend` was not called.
BACKEND_ENV = "GAC_CODING_LIF_BACKEND"
_DEFAULT_BACKEND = "eager"

_backend: str | None = None  # None: not chosen yet, read BACKEND_ENV on first use
_warned_build = False


def _check_backend(name: object, source: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ValueError(f"{source}: expected one of {list(BACKENDS)}, got {name!r}")
    return name.strip().lower()


def set_backend(name: str) -> None:
    """Choose how :func:`lif` (every :class:`LIF`) and the encoder's fused LIF+gate run on CPU.

    * ``"eager"`` (default): torch operations, a few passes over memory per time step.
    * ``"cpp"``: fused C++ kernels, one pass over the sequence forward and one backward. They are
      compiled on first use (about half a minute, once: torch caches the build in its extensions
      directory, ``TORCH_EXTENSIONS_DIR``); if compiling fails, one warning names the reason and the
      eager path is used for the rest of the process.
    * ``"auto"``: the kernel when it is already built or a C++ compiler and ``ninja`` are found (it
      then builds it on first use), else the eager path without a warning.

    The kernel covers float32/float64 CPU tensors and the ``"triangle"``/``"rectangle"`` surrogates;
    anything else (CUDA, half precision, a callable surrogate) takes the eager path. Both paths
    give the same spikes and gradients. Without a call, the environment variable
    ``GAC_CODING_LIF_BACKEND`` is read on the first LIF call. Nothing is compiled here.
    """
    global _backend
    _backend = _check_backend(name, "backend")


def get_backend() -> str:
    """The backend chosen by :func:`set_backend`, ``GAC_CODING_LIF_BACKEND`` or the default."""
    global _backend
    if _backend is None:
        env = os.environ.get(BACKEND_ENV, "").strip()
        _backend = _check_backend(env, BACKEND_ENV) if env else _DEFAULT_BACKEND
    return _backend


def _surrogate_code(fn: SurrogateFn) -> int | None:
    if fn is surrogate_triangle:
        return 0
    if fn is surrogate_rectangle:
        return 1
    return None


def _kernel_for(x: Tensor, fn: SurrogateFn) -> ModuleType | None:
    """The compiled kernel if the chosen backend and this call allow it, else ``None`` (eager)."""
    global _warned_build
    backend = get_backend()
    if backend == "eager":
        return None
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    if _surrogate_code(fn) is None:
        return None
    from . import _lif_kernel

    if backend == "auto" and not (_lif_kernel.is_built() or _lif_kernel.toolchain_available()):
        return None
    module = _lif_kernel.load()
    if module is None and not _warned_build:
        _warned_build = True
        warnings.warn(
            f"gac_coding: the C++ LIF kernel could not be built ({_lif_kernel.build_error()}); "
            "using the eager torch path for the rest of this process",
            RuntimeWarning,
            stacklevel=3,
        )
    return module


# --------------------------------------------------------------------------------------------
# Memory layout: a channels-last step stays channels-last (convolutions around the neuron run
# faster in that layout on oneDNN and cuDNN, and a layout change would cost a copy).
# --------------------------------------------------------------------------------------------


def is_channels_last_step(step: Tensor) -> bool:
    """Whether a ``[B, C, H, W]`` step is stored channels-last (and not also plain contiguous)."""
    return (
        step.dim() == 4
        and not step.is_contiguous()
        and step.is_contiguous(memory_format=torch.channels_last)
    )


def empty_steps(step: Tensor, T: int) -> Tensor:
    """Uninitialised ``[T, *step.shape]`` whose every step has the layout of ``step``.

    A channels-last ``step`` gives ``T`` channels-last steps, each a dense block, so that
    ``out.flatten(0, 1)`` is a channels-last ``[T * B, C, H, W]`` view; anything else gives a
    contiguous tensor.
    """
    if is_channels_last_step(step):
        flat = torch.empty(
            (T * step.shape[0], *step.shape[1:]),
            dtype=step.dtype,
            device=step.device,
            memory_format=torch.channels_last,
        )
        return flat.view(T, *step.shape)
    return torch.empty((T, *step.shape), dtype=step.dtype, device=step.device)


def channels_to_last(x: Tensor, on: bool) -> Tensor:
    """``[..., C, H, W] -> [..., H, W, C]`` (a view) when ``on``: a channels-last tensor becomes
    plainly contiguous, which is the layout the C++ kernels walk."""
    return x.movedim(-3, -1) if on else x


def channels_to_front(x: Tensor, on: bool) -> Tensor:
    """Inverse of :func:`channels_to_last`."""
    return x.movedim(-1, -3) if on else x


# --------------------------------------------------------------------------------------------
# One step forward and backward (eager), shared by the LIF function and the fused GAC gate.
# --------------------------------------------------------------------------------------------


def lif_step_forward(
    x_t: Tensor,
    h_prev: Tensor | None,
    keep: Tensor,
    decay: float,
    threshold: float,
    h_out: Tensor,
    spike_out: Tensor,
) -> None:
    """One step: write ``h_t`` into ``h_out``, ``s_t`` into ``spike_out`` and ``1 - s_t`` into ``keep``.

    ``h_prev`` is ``h_{t-1}`` (``None`` at the first step), ``keep`` holds ``1 - s_{t-1}`` on entry
    (a float tensor of the step's shape). ``h_t = x_t + (decay h_{t-1}) (1 - s_{t-1})`` is one
    ``addcmul``; ``spike_out`` may be float (0./1.) or bool. ``h_out`` may be ``h_prev`` itself.
    Comparisons write float results directly: no bool mask, ``masked_fill`` or bool-to-float copy.
    """
    if h_prev is None:
        h_out.copy_(x_t)
    else:
        torch.addcmul(x_t, h_prev, keep, value=decay, out=h_out)
    torch.gt(h_out, threshold, out=spike_out)
    torch.le(h_out, threshold, out=keep)


def _surrogate_at(h_t: Tensor, threshold: float, surrogate: SurrogateFn) -> Tensor:
    """``surrogate(h_t - threshold)`` as a new tensor, in place after the subtraction when named."""
    d = torch.sub(h_t, threshold)
    if surrogate is surrogate_triangle:
        return d.abs_().neg_().add_(1.0).clamp_(min=0.0)  # -a + 1 rounds exactly as 1 - a
    if surrogate is surrogate_rectangle:
        return d.abs_().lt_(0.5)
    return surrogate(d)


def lif_step_backward(
    grad_s: Tensor,
    grad_h_next: Tensor | None,
    h_t: Tensor,
    keep: Tensor,
    decay: float,
    threshold: float,
    surrogate: SurrogateFn,
    detach_reset: bool,
    out: Tensor | None = None,
) -> Tensor:
    """``dL/dh_t`` from ``dL/ds_t`` and ``g = dL/dh_{t+1}`` (``None`` at the last step).

    ``keep`` is a float scratch tensor of the step's shape (overwritten with ``1 - s_t``, computed
    from ``h_t``); the result goes to ``out`` when given.

    ``v_t = h_t (1 - s_t)`` and ``h_{t+1} = decay v_t + x_{t+1}``, hence
    ``dL/ds_t = grad_s - decay g h_t`` (the reset path, dropped when detached) and
    ``dL/dh_t = dL/ds_t * surrogate(h_t - threshold) + decay g (1 - s_t)`` with ``g = dL/dh_{t+1}``.
    """
    sg = _surrogate_at(h_t, threshold, surrogate)
    if grad_h_next is None:
        return torch.mul(grad_s, sg, out=out) if out is not None else sg.mul_(grad_s)
    if detach_reset:
        grad_h = sg.mul_(grad_s)
    else:
        grad_h = torch.addcmul(grad_s, grad_h_next, h_t, value=-decay).mul_(sg)
    torch.le(h_t, threshold, out=keep)
    if out is None:
        return grad_h.addcmul_(grad_h_next, keep, value=decay)
    return torch.addcmul(grad_h, grad_h_next, keep, value=decay, out=out)


def _eager_forward(
    x: Tensor, steps: int, decay: float, threshold: float, save: bool
) -> tuple[Tensor, Tensor | None]:
    static = steps > 0
    T = steps if static else x.shape[0]
    step = x if static else x[0]
    spikes = empty_steps(step, T)
    # without a backward pass one scratch step of membrane is enough (updated in place)
    h = torch.empty_like(spikes) if save else torch.empty_like(spikes[0])
    keep = torch.empty_like(spikes[0])
    h_prev = None
    for t in range(T):
        h_t = h[t] if save else h
        lif_step_forward(x if static else x[t], h_prev, keep, decay, threshold, h_t, spikes[t])
        h_prev = h_t
    return spikes, (h if save else None)


def _eager_backward(
    grad_s: Tensor,
    h: Tensor,
    static: bool,
    decay: float,
    threshold: float,
    surrogate: SurrogateFn,
    detach_reset: bool,
) -> Tensor:
    T = h.shape[0]
    keep = torch.empty_like(h[0])
    grad_x = None if static else torch.empty_like(h)
    g = None
    for t in range(T - 1, -1, -1):
        out = None if static else grad_x[t]  # type: ignore[index]
        g = lif_step_backward(
            grad_s[t], g, h[t], keep, decay, threshold, surrogate, detach_reset, out=out
        )
        if static:
            # g is fresh each step and the previous one is no longer needed: accumulate in place
            grad_x = g if grad_x is None else grad_x.add_(g)
    return grad_x  # type: ignore[return-value]


class _LIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,
        steps: int,
        decay: float,
        threshold: float,
        surrogate: SurrogateFn,
        detach_reset: bool,
        save: bool,
        kernel: ModuleType | None,
    ) -> Tensor:
        nhwc = False
        if kernel is not None:
            # a channels-last input goes to the kernel as a contiguous [..., H, W, C] view
            nhwc = is_channels_last_step(x if steps > 0 else x[0])
            spikes, h = kernel.lif_forward(channels_to_last(x, nhwc), steps, decay, threshold, save)
            spikes = channels_to_front(spikes, nhwc)
            h = channels_to_front(h, nhwc) if save else h
        else:
            spikes, h = _eager_forward(x, steps, decay, threshold, save)
        if save:
            ctx.save_for_backward(h)
        ctx.params = (steps > 0, decay, threshold, surrogate, detach_reset, kernel, nhwc)
        return spikes

    @staticmethod
    def backward(ctx, grad_s: Tensor):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        static, decay, threshold, surrogate, detach_reset, kernel, nhwc = ctx.params
        if kernel is not None:
            code = _surrogate_code(surrogate)
            grad_x = kernel.lif_backward(
                channels_to_last(grad_s, nhwc),
                channels_to_last(h, nhwc),
                static,
                decay,
                threshold,
                code,
                detach_reset,
            )
            grad_x = channels_to_front(grad_x, nhwc)
        else:
            grad_x = _eager_backward(grad_s, h, static, decay, threshold, surrogate, detach_reset)
        return grad_x, None, None, None, None, None, None, None


def lif(
    x: Tensor,
    decay: float = 0.5,
    threshold: float = 1.0,
    surrogate: SurrogateLike = "triangle",
    detach_reset: bool = False,
    *,
    steps: int | None = None,
) -> Tensor:
    """Multi-step LIF spikes for a time-major input.

    Args:
        x: input current ``[T, B, ...]``, or with ``steps`` a static current ``[B, ...]`` that is
            applied at each of ``steps`` steps (its gradient is the sum over the steps).
        decay, threshold, surrogate, detach_reset: see :class:`LIF`.
        steps: number of steps for a static input; ``None`` for a sequence.

    Returns:
        Spikes ``[T, B, ...]`` (0. or 1., dtype of ``x``).

    Example:
        >>> import torch
        >>> from gac_coding.neuron import lif
        >>> lif(torch.tensor([[0.6], [0.6], [0.6]]), decay=0.5, threshold=1.0).flatten().tolist()
        [0.0, 0.0, 1.0]
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    decay, threshold = _check_params(decay, threshold)
    fn = resolve_surrogate(surrogate)
    if steps is None:
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"x: expected a sequence [T, B, ...] with T >= 1, got shape {tuple(x.shape)}")
        steps = 0
    elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    save = torch.is_grad_enabled() and x.requires_grad
    kernel = _kernel_for(x, fn)
    return _LIFFunction.apply(x, steps, decay, threshold, fn, bool(detach_reset), save, kernel)


class _Heaviside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: SurrogateFn) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate(x), None


def lif_reference(
    x: Tensor,
    decay: float = 0.5,
    threshold: float = 1.0,
    surrogate: SurrogateLike = "triangle",
    detach_reset: bool = False,
) -> Tensor:
    """The same dynamics as :func:`lif` as a plain loop of autograd operations (slow, for checks).

    This is how the authors' code runs the neuron; :func:`lif` equals it in values and gradients.
    """
    decay, threshold = _check_params(decay, threshold)
    fn = resolve_surrogate(surrogate)
    out = []
    v = torch.zeros_like(x[0])
    s = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        keep = 1.0 - (s.detach() if detach_reset else s)
        v = decay * v * keep + x[t]
        s = _Heaviside.apply(v - threshold, fn)
        out.append(s)
    return torch.stack(out)


class LIF(nn.Module):
    """Multi-step leaky integrate-and-fire neuron over dim 0 of ``[T, B, ...]``.

    ``v_t = decay * v_{t-1} * (1 - s_{t-1}) + x_t``, ``s_t = [v_t > threshold]``, ``v_0 = 0``.
    Stateless between calls: every forward starts from a zero membrane. Defaults are the CIFAR
    recipe (GAC.md §3); ``LIF(**RECIPES["imagenet"])`` gives the ImageNet one.

    Args:
        decay: membrane leak factor in ``[0, 1]``.
        threshold: firing threshold (> 0).
        surrogate: ``"triangle"`` (``max(0, 1 - |v - th|)``), ``"rectangle"``
            (``1`` where ``|v - th| < 0.5``) or a callable mapping ``v - th`` to ``d s / d v``.
        detach_reset: treat the reset factor ``(1 - s)`` as a constant in the backward pass.

    Example:
        >>> import torch, gac_coding as gac
        >>> neuron = gac.LIF(decay=0.5, threshold=1.0)
        >>> x = torch.full((4, 2, 3), 0.7)          # [T, B, features]
        >>> neuron(x)[:, 0, 0].tolist()             # 0.7, 1.05 -> fire, reset, 0.7, 1.05 -> fire
        [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        decay: float = 0.5,
        threshold: float = 1.0,
        surrogate: SurrogateLike = "triangle",
        detach_reset: bool = False,
    ) -> None:
        super().__init__()
        self.decay, self.threshold = _check_params(decay, threshold)
        self.surrogate = surrogate
        self._surrogate_fn = resolve_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(
                f"x: expected a time-major sequence [T, B, ...] (at least 2 dims), "
                f"got shape {tuple(x.shape)}"
            )
        return lif(x, self.decay, self.threshold, self._surrogate_fn, self.detach_reset)

    def extra_repr(self) -> str:
        name = self.surrogate if isinstance(self.surrogate, str) else getattr(
            self.surrogate, "__name__", "callable"
        )
        return (
            f"decay={self.decay}, threshold={self.threshold}, surrogate={name}, "
            f"detach_reset={self.detach_reset}"
        )
