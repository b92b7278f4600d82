"""The triton backend of the neuron ops: fused multi-step LIF and LIF+gate kernels for CUDA.

The four functions have the signatures of the other backends (``lif_forward``, ``lif_backward``,
``gated_forward``, ``gated_backward``); tensors arrive contiguous (a channels-last step as its
``[..., H, W, C]`` view). Inputs may be float16, bfloat16, float32 or float64: the membrane and all
arithmetic are float32 for the first three and float64 for float64; the saved membrane ``h`` is in
that arithmetic dtype, the spikes, the gated output and the gate in the input dtype, each gradient
in the dtype of the tensor it belongs to (``grad_x``/``grad_u`` in the dtype of the incoming
gradient). ``grad_ta`` is deterministic: per-program partial sums added in a fixed order.

Triton is imported on the first kernel call (:mod:`gac_coding.ops._triton_kernels`), never at
``import gac_coding``. The kernels are decorated at that import, and triton then reads
``TRITON_INTERPRET``: set to 1, they run in triton's interpreter on CPU tensors (slow; how the
test suite checks them without a GPU). Without the interpreter they need CUDA tensors.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

import torch
from torch import Tensor

__all__ = [
    "available",
    "gated_backward",
    "gated_forward",
    "interpreted",
    "lif_backward",
    "lif_forward",
]

#: Largest block of elements one program walks through time (a power of two).
MAX_BLOCK = 1024

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_kernels: ModuleType | None = None


def _interpret_requested() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for the interpreter (triton's own reading of it)."""
    import triton

    return bool(triton.knobs.runtime.interpret)


def interpreted() -> bool:
    """Whether the kernels run (or, not loaded yet, would run) in triton's CPU interpreter.

    Fixed at the first kernel call of the process: triton reads ``TRITON_INTERPRET`` when the
    kernels are decorated.
    """
    if _kernels is not None:
        return bool(_kernels.__dict__.get("_INTERPRETED"))
    return _interpret_requested()


def available(device: torch.device | str | None = None) -> tuple[bool, str]:
    """``(usable, reason if not)`` for tensors on ``device`` (``None``: on any device).

    Triton must be importable; CUDA tensors need a CUDA device and the compiled kernels, CPU tensors
    the interpreter (``TRITON_INTERPRET=1`` before the first kernel call). Nothing is compiled.
    """
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed"
    kind = None if device is None else torch.device(device).type
    interp = interpreted()
    if kind == "cpu" or (kind is None and interp):
        if interp:
            return True, ""
        return False, (
            "triton runs CPU tensors only in its interpreter: set TRITON_INTERPRET=1 before the "
            "first triton kernel call of the process"
        )
    if kind not in (None, "cuda"):
        return False, f"triton kernels run on CUDA tensors, got device {kind!r}"
    if not torch.cuda.is_available():
        return False, "no CUDA device (and TRITON_INTERPRET is not set)"
    return True, ""


def _load() -> ModuleType:
    global _kernels
    if _kernels is None:
        interp = _interpret_requested()
        from . import _triton_kernels as kernels

        kernels._INTERPRETED = interp  # type: ignore[attr-defined]
        _kernels = kernels
    return _kernels


def _launch(name: str, grid: int, device: torch.device, *args: object, **meta: object) -> None:
    """Run kernel ``name`` on ``grid`` programs, on the CUDA device of the tensors.

    Interpreted kernels also need triton's interpreter switch on while they run (triton imports
    parts of itself lazily and checks it), whatever ``TRITON_INTERPRET`` says by then: it is set
    for the launch only and restored afterwards.
    """
    kernels = _load()
    kernel = getattr(kernels, name)
    if not kernels._INTERPRETED:
        with torch.cuda.device(device):  # triton launches on the current device
            kernel[(grid,)](*args, **meta)
        return
    import triton

    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = True
        kernel[(grid,)](*args, **meta)


_usable: set[str] = set()  # device types found usable in this process (checked once)


def _check(name: str, t: Tensor, device: torch.device | None = None) -> Tensor:
    """``t`` contiguous after checking its dtype, its device (``device``: that of the first
    tensor of the call) and, for the first tensor, that the kernels can run there."""
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name}: expected float16, bfloat16, float32 or float64, got dtype {t.dtype}")
    if device is not None:
        if t.device != device:
            raise ValueError(f"{name}: expected a tensor on {device}, got one on {t.device}")
    elif t.device.type not in _usable:
        ok, reason = available(t.device)
        if not ok:
            raise RuntimeError(f"gac_coding triton backend: {reason}")
        _usable.add(t.device.type)
    return t.contiguous()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _tl_dtype(dtype: torch.dtype) -> object:
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def _block(n: int) -> tuple[int, int]:
    """``(BLOCK, num_warps)`` for rows of ``n`` elements."""
    block = min(MAX_BLOCK, max(16, 1 << max(0, n - 1).bit_length()))
    return block, max(1, min(8, block // 256))


def lif_forward(
    x: Tensor, steps: int, decay: float, threshold: float, save: bool
) -> tuple[Tensor, Tensor | None]:
    """Spikes ``[T, ...]`` (dtype of ``x``) and, if ``save``, the membrane ``h`` (arithmetic dtype).

    ``x``: a sequence ``[T, ...]`` (``steps == 0``) or one step applied ``steps`` times."""
    x = _check("x", x)
    static = steps > 0
    T = steps if static else x.shape[0]
    step_shape = tuple(x.shape) if static else tuple(x.shape[1:])
    N = x.numel() if static else (x.numel() // T if T else 0)
    spikes = torch.empty((T, *step_shape), dtype=x.dtype, device=x.device)
    ct = _compute_dtype(x.dtype)
    h = torch.empty((T, *step_shape), dtype=ct, device=x.device) if save else None
    if N == 0 or T == 0:
        return spikes, h
    block, warps = _block(N)
    _launch(
        "lif_forward_kernel", triton_cdiv(N, block), x.device,
        x, spikes, h if save else spikes, T, N,
        DECAY=float(decay), TH=float(threshold), STATIC=static, SAVE=bool(save),
        CT=_tl_dtype(x.dtype), BLOCK=block, num_warps=warps,
    )  # fmt: skip
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
    """``grad_x`` (dtype of ``grad_s``): ``[T, ...]``, or static the sum over steps ``[...]``."""
    if surrogate not in (0, 1):
        raise ValueError(f"surrogate: expected 0 (triangle) or 1 (rectangle), got {surrogate!r}")
    h = _check("h", h)
    grad_s = _check("grad_s", grad_s, h.device)
    if grad_s.shape != h.shape:
        raise ValueError(f"grad_s: expected the shape of h {tuple(h.shape)}, got {tuple(grad_s.shape)}")
    T = h.shape[0]
    N = h.numel() // T if T else 0
    shape = h.shape[1:] if is_static else h.shape
    grad_x = torch.empty(shape, dtype=grad_s.dtype, device=h.device)
    if N == 0:
        return grad_x.zero_()
    block, warps = _block(N)
    _launch(
        "lif_backward_kernel", triton_cdiv(N, block), grad_s.device,
        grad_s, h, grad_x, T, N, (T - 1) * N,
        DECAY=float(decay), TH=float(threshold), SURROGATE=int(surrogate),
        DETACH=bool(detach_reset), STATIC=bool(is_static), CT=_tl_dtype(h.dtype),
        BLOCK=block, num_warps=warps,
    )  # fmt: skip
    return grad_x


def _gated_layout(N: int, B: int, T: int, sca: Tensor) -> tuple[int, bool]:
    if B < 1 or N % B:
        raise ValueError(f"ta: expected a batch size that divides a step of {N} elements, got {B}")
    if sca.numel() not in (N, T * N):
        raise ValueError(f"sca: expected one step ({N} elements) or {T} steps, got {sca.numel()} elements")
    return N // B, sca.numel() == N


def gated_forward(
    u: Tensor,
    ta: Tensor,
    sca: Tensor,
    steps: int,
    decay: float,
    threshold: float,
    save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``(out, fired, gate, h)``: ``out = sigmoid(ta * sca) * fired``, all ``[T, ...]``.

    ``u``: ``[T, ...]`` or (``steps > 0``) one step; ``ta``: ``[T, B]``; ``sca``: one step or
    ``[T, ...]``. ``out``, ``fired``, ``gate`` in the dtype of ``u``, ``h`` in the arithmetic dtype.
    """
    u = _check("u", u)
    ta = _check("ta", ta, u.device)
    sca = _check("sca", sca, u.device)
    if ta.dim() != 2:
        raise ValueError(f"ta: expected [T, B], got shape {tuple(ta.shape)}")
    T, B = ta.shape
    static = steps > 0
    if static and steps != T:
        raise ValueError(f"steps: expected T={T} (the rows of ta), got {steps}")
    if not static and (u.dim() < 1 or u.shape[0] != T):
        raise ValueError(f"u: expected {T} steps to match ta, got shape {tuple(u.shape)}")
    step_shape = tuple(u.shape) if static else tuple(u.shape[1:])
    N = u.numel() if static else (u.numel() // T if T else 0)
    shape = (T, *step_shape)
    out, fired, gate = (torch.empty(shape, dtype=u.dtype, device=u.device) for _ in range(3))
    h = torch.empty(shape, dtype=_compute_dtype(u.dtype), device=u.device) if save else None
    if N == 0 or T == 0:
        return out, fired, gate, h
    P, sca_static = _gated_layout(N, B, T, sca)
    block, warps = _block(P)
    per_b = triton_cdiv(P, block)
    _launch(
        "gated_forward_kernel", B * per_b, u.device,
        u, ta, sca, out, fired, gate, h if save else out, T, B, P, per_b,
        DECAY=float(decay), TH=float(threshold), U_STATIC=static, SCA_STATIC=sca_static,
        SAVE=bool(save), CT=_tl_dtype(u.dtype), BLOCK=block, num_warps=warps,
    )  # fmt: skip
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
    """``(grad_u, grad_ta, grad_sca)`` in the dtypes of ``grad_out``, ``ta`` and ``sca``.

    ``grad_u`` and (one-step ``sca``) ``grad_sca`` are sums over the steps where the input was one
    step. ``grad_ta[t, b]`` adds per-block partial sums (arithmetic dtype) in a fixed order.
    ``out`` and ``gate`` are only checked: the kernel recomputes the spike from ``h`` and the gate
    from ``ta * sca`` in the arithmetic dtype (a half-precision gate near 1 would lose ``1 - gate``).
    """
    if surrogate not in (0, 1):
        raise ValueError(f"surrogate: expected 0 (triangle) or 1 (rectangle), got {surrogate!r}")
    h = _check("h", h)
    grad_out, out, gate, ta, sca = (
        _check(name, t, h.device)
        for name, t in zip(
            ("grad_out", "out", "gate", "ta", "sca"), (grad_out, out, gate, ta, sca), strict=True
        )
    )
    for name, t in (("grad_out", grad_out), ("out", out), ("gate", gate)):
        if t.shape != h.shape:
            raise ValueError(f"{name}: expected the shape of h {tuple(h.shape)}, got {tuple(t.shape)}")
    T = h.shape[0]
    if ta.dim() != 2 or ta.shape[0] != T:
        raise ValueError(f"ta: expected [T={T}, B], got shape {tuple(ta.shape)}")
    B = ta.shape[1]
    N = h.numel() // T if T else 0
    grad_u = torch.empty(h.shape[1:] if u_static else h.shape, dtype=grad_out.dtype, device=h.device)
    grad_sca = torch.empty_like(sca)
    if N == 0:
        return grad_u.zero_(), torch.zeros_like(ta), grad_sca.zero_()
    P, sca_static = _gated_layout(N, B, T, sca)
    block, warps = _block(P)
    per_b = triton_cdiv(P, block)
    partial = torch.empty((T, B * per_b), dtype=h.dtype, device=h.device)
    _launch(
        "gated_backward_kernel", B * per_b, grad_out.device,
        grad_out, h, ta, sca, grad_u, grad_sca, partial,
        T, B, P, per_b, (T - 1) * N,
        DECAY=float(decay), TH=float(threshold), SURROGATE=int(surrogate),
        DETACH=bool(detach_reset), U_STATIC=bool(u_static), SCA_STATIC=sca_static,
        CT=_tl_dtype(h.dtype), BLOCK=block, num_warps=warps,
    )  # fmt: skip
    # torch's sum over a contiguous last dimension is a fixed-order tree: deterministic
    grad_ta = partial.view(T, B, per_b).sum(-1, dtype=torch.float64).to(ta.dtype)
    return grad_u, grad_ta, grad_sca


def triton_cdiv(n: int, d: int) -> int:
    """``ceil(n / d)`` for positive ints."""
    return -(-n // d)
