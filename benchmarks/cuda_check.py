"""CUDA checks of gac-coding in one run: correctness, mixed precision, the training CLI, speed.

Normally started by ``benchmarks/cuda_check.sh`` (which first finds a python with a CUDA-enabled
torch); directly::

    python benchmarks/cuda_check.py [--out DIR] [--budget SECONDS] [--only A,B] [--skip A,B]
    python benchmarks/cuda_check.py --dry-run      # CPU, tiny sizes: tests the script itself

Every check is wrapped so that one failure does not stop the others. Results go to
``OUT/cuda_check.json`` (``name -> {ok, seconds, details | error}``; ``ok`` is ``null`` for a
skipped check), rewritten after every check so that a killed run still leaves what finished, and a
readable summary is printed at the end (and written to ``OUT/summary.txt``). Output of the
subprocesses (training CLI, torchrun) goes to ``OUT/subprocess.log``. ``OUT`` defaults to the
environment variable ``OUT``, else ``./cuda_check_out``.

Time: ``--budget`` seconds in all (default 480); a check that no longer fits is skipped. An
in-process check is stopped by SIGALRM at its own limit; every subprocess is killed, with all
processes below it (torchrun's workers run in sessions of their own), at its timeout; SIGTERM
(the entry point's ``timeout``) stops the running subprocesses and ends with the results so far.
A call blocked inside C (a hung CUDA kernel) is left to the entry point's ``timeout``; the check
that was running then reads "did not finish" in the JSON file.

Checks, in this order (``--dry-run``: the same on the CPU, float32 against float64, gloo instead
of NCCL, ``msresnet_tiny`` for the timings; the TF32 comparison and memory figures need CUDA):

* ``correct_{lif,encoder,msresnet_tiny}_{channels_last,nchw}``: forward and backward on CUDA in
  float32 (TF32 off) against a CPU float64 copy with the same weights, training mode. Spikes may
  differ where a membrane lies within rounding of the threshold: their fraction is reported and
  fails only above 1e-3; with no differing spike the values must agree to 1e-4 and gradients to
  1e-3 (relative L2), else to 5e-2 / 1e-1. The model check also reports (without judging) how far
  cuDNN's default TF32 convolutions move the result.
* ``correct_triton``: the triton backend on CUDA against the eager backend in float64 on the CPU
  from the same inputs: the LIF and the LIF+gate, both recipes, static and sequence inputs, both
  layouts, float32 (relative error 1e-5) and bfloat16 (8e-3); spikes, outputs, every gradient,
  and two runs' gradients bitwise equal (grad_ta's reduction order is fixed). Dry run: the same
  kernels in triton's interpreter on CPU tensors.
* ``amp_bf16``, ``amp_fp16``: a few SGD steps of ``msresnet_tiny`` on one random batch under
  ``torch.autocast`` (fp16 with ``torch.amp.GradScaler``), both layouts: finite, decreasing loss;
  the dtypes that reach the LIFs and the encoder's fused LIF+gate, and which LIF path ran; a bare
  ``LIF`` forward + backward in float16 and bfloat16.
* ``speed_b32``, ``speed_b8``: one training step (forward + backward) of ``msresnet18_cifar``,
  T=6, 32x32: the library (channels-last), ``library_nchw``, the naive per-step formulation
  (``naive_copy`` of ``benchmarks/models.py``) and direct coding (``gac=False``), each in float32
  and under bf16 autocast; medians after warm-up, interleaved, with ``torch.cuda.synchronize``;
  peak memory from ``torch.cuda.max_memory_allocated``. Ratios: naive / library, library_nchw /
  library, library / direct, library fp32 / bf16, step memory library / naive.
* ``peers_imagenet``, ``peers_cifar``: ``benchmarks/peers.py --device cuda`` in a subprocess:
  ``msresnet18_imagenet`` (direct coding and GAC, triton and eager LIF backends), the naive
  formulation and SpikingJelly's ``ms_resnet18`` at T=4, batch 32, 224x224; ``msresnet18_cifar``
  against the naive formulation at T=6, batch 128; fp32 and bf16 autocast, train step (with SGD)
  and inference, images/s and peak memory; ratios with the goals (>= SpikingJelly for direct
  coding, >= 2x naive).
* ``cli_train_amp``: ``python -m gac_coding train ... --device cuda --amp`` (one epoch on digits).
  ``cli_torchrun_stop_after`` / ``cli_torchrun_resume``: the same under ``torch.distributed.run``
  (``--epochs 2 --stop-after 1``, then ``--resume``; ``metrics.jsonl`` must hold epochs 1 and 2).
  With one GPU this is one process: the library then creates no process group, so
  ``ddp_nccl`` runs NCCL + ``DistributedDataParallel`` on the model itself (a worker mode of this
  script under torchrun, bf16 autocast; parameters must agree across ranks afterwards).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import faulthandler
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
BENCH = REPO / "benchmarks"

# tolerances (relative L2 error against the float64 reference)
VALUE_TOL, GRAD_TOL = 1e-4, 1e-3  # no spike differs
VALUE_TOL_FLIPS, GRAD_TOL_FLIPS = 5e-2, 1e-1  # some spikes differ (threshold-near elements)
MAX_SPIKE_FRACTION = 1e-3


def use_repo_sources() -> None:
    """Import ``gac_coding`` from this working tree and ``models`` from ``benchmarks/``."""
    for path in (str(BENCH), str(SRC)):
        if path not in sys.path:
            sys.path.insert(0, path)


class SkipCheck(Exception):
    """Raised by a check that cannot run here; recorded with ``ok: null``."""


class Terminated(BaseException):
    """SIGTERM arrived (e.g. the entry point's ``timeout``): stop, keep the results so far."""


#: subprocesses running now, stopped (with everything below them) when this process is terminated
ACTIVE: list[subprocess.Popen] = []


@dataclass
class Sizes:
    lif: tuple[int, int, int, int, int]  # T, B, C, H, W
    encoder: tuple[int, int, int, int]  # T, B, C, image size
    model: tuple[int, int, int]  # T, B, image size
    amp: tuple[int, int, int, int]  # T, B, image size, steps
    speed_model: str
    speed_T: int
    speed_size: int
    speed_batches: tuple[int, ...]
    speed_warmup: int
    speed_repeats: int


CUDA_SIZES = Sizes((6, 16, 32, 16, 16), (6, 8, 32, 32), (4, 16, 32), (4, 64, 32, 15),
                   "msresnet18_cifar", 6, 32, (32, 8), 3, 10)
DRY_SIZES = Sizes((3, 2, 8, 6, 6), (3, 2, 8, 8), (2, 4, 8), (2, 32, 8, 10),
                  "msresnet_tiny", 2, 16, (4,), 1, 2)


@dataclass
class Ctx:
    device: torch.device
    dry: bool
    out: Path
    tmp: Path
    deadline: float
    sizes: Sizes
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


# ------------------------------------------------------------------------------------ helpers
def rel_err(test: Tensor, ref: Tensor, mask: Tensor | None = None) -> float:
    """``||test - ref|| / ||ref||`` in float64 on the CPU (``inf`` when ``test`` is not finite)."""
    a = test.detach().to("cpu", torch.float64)
    b = ref.detach().to("cpu", torch.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    if not bool(torch.isfinite(a).all()):
        return math.inf
    num = float((a - b).norm())
    den = float(b.norm())
    return num / den if den > 0 else num


def grads_err(test: nn.Module, ref: nn.Module) -> tuple[float, str, float]:
    """Relative error of all parameter gradients together, and the worst single parameter.

    A parameter's error is ``||a - b||`` over the larger of ``||b||`` and the share of the whole
    gradient's norm its size would carry if spread evenly (``||b_all|| sqrt(n / N)``): a gradient
    that is zero in exact arithmetic (e.g. a bias before a training-mode BatchNorm) is then judged
    by its absolute error on the scale of the others, not divided by its own rounding noise.
    """
    pairs = []
    for (name, pa), (_, pb) in zip(test.named_parameters(), ref.named_parameters(), strict=True):
        if pb.grad is None:
            continue
        if pa.grad is None:
            return math.inf, name + " (no gradient)", math.inf
        pairs.append((name, pa.grad.detach().to("cpu", torch.float64).flatten(),
                      pb.grad.detach().to("cpu", torch.float64).flatten()))
    a_all = torch.cat([a for _, a, _ in pairs])
    b_all = torch.cat([b for _, _, b in pairs])
    if not bool(torch.isfinite(a_all).all()):
        return math.inf, "(non-finite gradient)", math.inf
    scale = float(b_all.norm())
    worst, worst_name = -1.0, ""
    for name, a, b in pairs:
        den = max(float(b.norm()), scale * math.sqrt(b.numel() / b_all.numel()), 1e-300)
        e = float((a - b).norm()) / den
        if e > worst:
            worst, worst_name = e, name
    return rel_err(a_all, b_all), worst_name, worst


def buffers_err(test: nn.Module, ref: nn.Module) -> float:
    """Relative error of the BatchNorm running statistics together."""
    a, b = [], []
    for (name, ba), (_, bb) in zip(test.named_buffers(), ref.named_buffers(), strict=True):
        if name.endswith(("running_mean", "running_var")):
            a.append(ba.detach().to("cpu", torch.float64).flatten())
            b.append(bb.detach().to("cpu", torch.float64).flatten())
    return rel_err(torch.cat(a), torch.cat(b)) if a else 0.0


def channels_last_steps(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` in ``torch.channels_last``; ``[T, B, C, H, W]`` with channels-last steps."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Allow or forbid TF32 in cuDNN convolutions and cuBLAS matrix products, restored on exit."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def judge(errors: dict[str, float], flips: int, total: int) -> tuple[bool, list[str]]:
    """Errors (keys ending in ``grad`` are gradients) against the tolerances; the spike fraction."""
    problems = []
    loose = flips > 0
    for key, err in errors.items():
        is_grad = key.endswith("grad")
        if loose:
            tol = GRAD_TOL_FLIPS if is_grad else VALUE_TOL_FLIPS
        else:
            tol = GRAD_TOL if is_grad else VALUE_TOL
        if not err <= tol:
            problems.append(f"{key}: {err:.2e} > {tol:.0e}")
    fraction = flips / max(total, 1)
    if fraction > MAX_SPIKE_FRACTION:
        problems.append(f"{flips} of {total} spikes differ ({fraction:.2e} > {MAX_SPIKE_FRACTION:.0e})")
    return not problems, problems


def fmt_errors(errors: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.3e}") if math.isfinite(v) else v for k, v in errors.items()}


def spike_flips(a: Tensor, b: Tensor) -> tuple[int, int]:
    return int((a.detach().cpu().double() != b.detach().cpu().double()).sum()), a.numel()


# ------------------------------------------------------------------------------- environment
def check_environment(ctx: Ctx) -> dict[str, Any]:
    import gac_coding
    from gac_coding import neuron

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gac_coding": gac_coding.__version__,
        "gac_coding_file": gac_coding.__file__,
        "lif_backend": neuron.get_backend(),
        "device": str(ctx.device),
        "dry_run": ctx.dry,
        "cudnn_version": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            device_count=torch.cuda.device_count(),
            device_name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
        with contextlib.suppress(Exception):
            version = torch.cuda.nccl.version()
            info["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    ok = ctx.dry or info["cuda_available"]
    where = info.get("device_name", "no GPU")
    info["summary"] = (f"torch {info['torch']} (CUDA {info['torch_cuda']}), {where}, "
                       f"gac-coding {info['gac_coding']}")
    info["ok"] = bool(ok)
    if not ok:
        info["summary"] += ": CUDA is NOT available"
    return info


# ------------------------------------------------------------------------------- correctness
def check_lif(ctx: Ctx, channels_last: bool) -> dict[str, Any]:
    from gac_coding import RECIPES
    from gac_coding.neuron import lif, lif_reference
    from gac_coding.ops.layout import is_channels_last_step

    T, B, C, H, W = ctx.sizes.lif
    g = torch.Generator().manual_seed(0)
    errors: dict[str, float] = {}
    flips = total = 0
    layout_kept = True
    firing = []
    for recipe in ("cifar", "imagenet"):
        p = RECIPES[recipe]
        params = (float(p["decay"]), float(p["threshold"]), str(p["surrogate"]), bool(p["detach_reset"]))
        for static in (False, True):
            shape = (B, C, H, W) if static else (T, B, C, H, W)
            x = (torch.randn(shape, generator=g) * 0.5 + 0.7 * params[1]).float()
            grad_out = torch.randn((T, B, C, H, W), generator=g)

            def run(inp: Tensor, params=params, static=static, grad_out=grad_out) -> tuple[Tensor, Tensor]:
                inp = inp.detach().clone().requires_grad_(True)
                s = lif(inp, *params, steps=T if static else None)
                s.backward(grad_out.to(s))
                return s.detach(), inp.grad

            xd = x.to(ctx.device)
            if channels_last:
                xd = channels_last_steps(xd)
            s32, g32 = run(xd)
            s64, g64 = run(x.double())
            tag = f"{recipe}.{'static' if static else 'sequence'}"
            f, n = spike_flips(s32, s64)
            flips, total = flips + f, total + n
            firing.append(float(s64.mean()))
            errors[f"{tag}.input_grad"] = rel_err(g32, g64)
            layout_kept &= is_channels_last_step(s32[0]) == channels_last
            if not static:  # the library's function against the plain autograd loop, same device
                r = xd.detach().clone().requires_grad_(True)
                sr = lif_reference(r, *params)
                sr.backward(grad_out.to(sr))
                f, n = spike_flips(s32, sr)
                flips, total = flips + f, total + n
                errors[f"{tag}.vs_loop_grad"] = rel_err(g32, r.grad)
    return comparison_result(errors, flips, total, firing, layout_kept, "the spikes'")


def comparison_result(
    errors: dict[str, float],
    flips: int,
    total: int,
    firing: list[float],
    layout_kept: bool,
    what: str,
) -> dict[str, Any]:
    """The record of a CUDA-vs-CPU comparison: verdict, summary line and every figure."""
    ok, problems = judge(errors, flips, total)
    if not layout_kept:
        problems.append(f"{what} steps do not keep the input's layout")
    return {
        "ok": ok and layout_kept,
        "summary": f"{flips}/{total} spikes differ; worst rel err {max(errors.values()):.1e}"
        + ("" if not problems else "; " + "; ".join(problems)),
        "errors": fmt_errors(errors),
        "spikes_differing": flips,
        "spikes_total": total,
        "firing_rate": round(statistics.mean(firing), 4),
        "layout_kept": layout_kept,
        "problems": problems,
    }


def check_encoder(ctx: Ctx, channels_last: bool) -> dict[str, Any]:
    from gac_coding import GACEncoder
    from gac_coding.ops.layout import is_channels_last_step

    T, B, C, S = ctx.sizes.encoder
    torch.manual_seed(0)
    base = GACEncoder(3, C, T)
    g = torch.Generator().manual_seed(1)
    errors: dict[str, float] = {}
    flips = total = 0
    layout_kept = True
    firing = []
    with tf32(False):
        for static in (True, False):
            tag = "static" if static else "sequence"
            x = torch.rand((B, 3, S, S) if static else (T, B, 3, S, S), generator=g) * 2
            enc64 = copy.deepcopy(base).double()
            enc32 = copy.deepcopy(base).to(ctx.device)
            x32 = x.to(ctx.device, torch.float32, copy=True)
            if channels_last:
                enc32 = enc32.to(memory_format=torch.channels_last)
                x32 = channels_last_steps(x32)
            x32.requires_grad_(True)
            x64 = x.to(torch.float64, copy=True).requires_grad_(True)
            o32, o64 = enc32(x32), enc64(x64)
            grad_out = torch.randn(o64.shape, generator=g, dtype=torch.float64)
            o32.backward(grad_out.to(o32))
            o64.backward(grad_out)
            s32, s64 = enc32.last_spikes, enc64.last_spikes
            assert s32 is not None and s64 is not None
            f, n = spike_flips(s32, s64)
            flips, total = flips + f, total + n
            firing.append(float(s64.mean()))
            same = s32.cpu().double() == s64
            errors[f"{tag}.out"] = rel_err(o32, o64, same)
            errors[f"{tag}.gate"] = rel_err(enc32.last_gate, enc64.last_gate)
            errors[f"{tag}.input_grad"] = rel_err(x32.grad, x64.grad)
            errors[f"{tag}.param_grad"], worst_name, worst = grads_err(enc32, enc64)
            errors[f"{tag}.bn_running"] = buffers_err(enc32, enc64)
            errors[f"{tag}.worst_param({worst_name})_grad"] = worst
            layout_kept &= is_channels_last_step(o32[0]) == channels_last
    return comparison_result(errors, flips, total, firing, layout_kept, "the code's")


# Tolerances of the triton check (relative L2 against float64). float32: the kernels' float32
# arithmetic (a sigmoid, T-step recurrences, sums over a sample for grad_ta) stays within ~1e-6;
# bfloat16: every result is float32 arithmetic rounded once to bfloat16 (2**-9 relative per
# element), allowed 4x. With differing spikes (membranes within rounding of the threshold) the
# loose tolerances above apply.
TRITON_TOL = {torch.float32: 1e-5, torch.bfloat16: 8e-3}


def check_triton(ctx: Ctx) -> dict[str, Any]:
    """The triton backend on CUDA (dry run: in triton's interpreter on CPU) against the eager
    backend in float64 on the CPU, from the same (rounded) inputs: the LIF and the LIF+gate, both
    recipes, static and sequence inputs, contiguous and channels-last steps, float32 and bfloat16;
    values and the gradients of every input; grad_ta bitwise equal over two runs."""
    import warnings

    from gac_coding import RECIPES
    from gac_coding.attention import gated_lif
    from gac_coding.neuron import lif
    from gac_coding.ops import _triton, backends

    saved_env = os.environ.get("TRITON_INTERPRET")
    if ctx.dry and _triton._kernels is None:
        os.environ["TRITON_INTERPRET"] = "1"  # read by triton when it first loads the kernels
    try:
        _triton._load()
    finally:
        if saved_env is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved_env
    usable, reason = _triton.available(ctx.device)
    if not usable:
        return {"ok": False, "summary": f"the triton backend cannot run here: {reason}"}
    T, B, C, H, W = ctx.sizes.lif
    g = torch.Generator().manual_seed(3)
    errors: dict[str, float] = {}
    problems: list[str] = []
    flips = total = 0
    firing = []
    deterministic = True

    def on(backend: str, fn: Callable[..., Any], *args: Any) -> Any:
        with backends.use_backend(backend), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn(*args)
        problems.extend(f"{backend}: {w.message}" for w in caught if issubclass(w.category, RuntimeWarning))
        return result

    def lif_run(x: Tensor, grad: Tensor, params: tuple, static: bool) -> tuple[Tensor, Tensor]:
        leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        s = lif(leaf, *params, steps=T if static else None)
        (gx,) = torch.autograd.grad(s, leaf, grad.to(s))
        return s.detach(), gx

    def gated_run(u: Tensor, ta: Tensor, sca: Tensor, grad: Tensor, params: tuple, static: bool) -> tuple:
        leaves = [t.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
                  for t in (u, ta, sca)]
        out, fired, gate = gated_lif(*leaves, *params, static=static)
        return (out.detach(), fired, gate), torch.autograd.grad(out, leaves, grad.to(out))

    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        for recipe in ("cifar", "imagenet"):
            p = RECIPES[recipe]
            params = (float(p["decay"]), float(p["threshold"]), str(p["surrogate"]), bool(p["detach_reset"]))
            for static in (False, True):
                for cl in (False, True):
                    tag = f"{name}.{recipe}.{'static' if static else 'sequence'}.{'nhwc' if cl else 'nchw'}"
                    step = (B, C, H, W)
                    x = (torch.randn(step if static else (T, *step), generator=g) * 0.5
                         + 0.7 * params[1]).to(dtype)
                    ta = torch.randn((T, B), generator=g).to(dtype)
                    sca = torch.randn(step, generator=g).to(dtype)
                    grad = torch.randn((T, *step), generator=g).to(dtype)
                    xd, scad = x.to(ctx.device), sca.to(ctx.device)
                    if cl:
                        xd, scad = channels_last_steps(xd), channels_last_steps(scad)
                    s_t, g_t = on("triton", lif_run, xd, grad.to(ctx.device), params, static)
                    s_r, g_r = on("eager", lif_run, x.double(), grad.double(), params, static)
                    f, n = spike_flips(s_t, s_r)
                    flips, total = flips + f, total + n
                    firing.append(float(s_r.mean()))
                    errors[f"{tag}.lif.input_grad"] = rel_err(g_t, g_r)
                    args_t = (xd, ta.to(ctx.device), scad, grad.to(ctx.device), params, static)
                    (o_t, f_t, m_t), gr_t = on("triton", gated_run, *args_t)
                    args_r = (x.double(), ta.double(), sca.double(), grad.double(), params, static)
                    (o_r, f_r, m_r), gr_r = on("eager", gated_run, *args_r)
                    f, n = spike_flips(f_t, f_r)
                    flips, total = flips + f, total + n
                    same = f_t.cpu().double() == f_r
                    errors[f"{tag}.gated.out"] = rel_err(o_t, o_r, same)
                    errors[f"{tag}.gated.gate"] = rel_err(m_t, m_r)
                    for gname, a, b in zip(("u", "ta", "sca"), gr_t, gr_r, strict=True):
                        errors[f"{tag}.gated.{gname}_grad"] = rel_err(a, b)
                    _, again = on("triton", gated_run, *args_t)
                    deterministic &= all(torch.equal(a, b) for a, b in zip(gr_t, again, strict=True))
        for key, err in errors.items():
            if key.startswith(name + ".") and not err <= (
                    TRITON_TOL[dtype] if flips == 0 else (GRAD_TOL_FLIPS if key.endswith("grad")
                                                          else VALUE_TOL_FLIPS)):
                problems.append(f"{key}: {err:.2e}")
    if flips / max(total, 1) > MAX_SPIKE_FRACTION:
        problems.append(f"{flips} of {total} spikes differ")
    if not deterministic:
        problems.append("the gradients differ between two identical runs")
    return {
        "ok": not problems,
        "summary": f"{flips}/{total} spikes differ; worst rel err float32 "
        f"{max(v for k, v in errors.items() if k.startswith('float32')):.1e}, bfloat16 "
        f"{max(v for k, v in errors.items() if k.startswith('bfloat16')):.1e}; deterministic "
        f"{deterministic}" + ("" if not problems else "; " + "; ".join(problems[:6])),
        "interpreted": _triton.interpreted(),
        "errors": fmt_errors(errors),
        "spikes_differing": flips,
        "spikes_total": total,
        "firing_rate": round(statistics.mean(firing), 4),
        "deterministic": deterministic,
        "problems": problems,
    }


def _model_pass(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward + backward in training mode; returns logits, loss, input gradient, all spikes."""
    from gac_coding import LIF

    spikes: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: spikes.append(out.detach().flatten()))
             for m in model.modules() if isinstance(m, LIF)]
    try:
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        loss = F.cross_entropy(logits.mean(0), y)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    enc_spikes = model.encoder.last_spikes
    if enc_spikes is not None:
        spikes.append(enc_spikes.flatten())
    return logits.detach(), loss.detach(), x.grad, torch.cat([s.cpu() for s in spikes])


def check_model(ctx: Ctx, channels_last: bool) -> dict[str, Any]:
    from gac_coding.models import create_model

    T, B, S = ctx.sizes.model
    torch.manual_seed(0)
    base = create_model("msresnet_tiny", num_classes=10, T=T, channels_last=channels_last)
    ref = create_model("msresnet_tiny", num_classes=10, T=T, channels_last=False)
    ref.load_state_dict(base.state_dict())
    ref = ref.double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand((B, 3, S, S), generator=g) * 2
    y = torch.randint(0, 10, (B,), generator=g)
    l64, loss64, gx64, s64 = _model_pass(ref, x.double(), y)

    def device_pass(allow_tf32: bool | None) -> tuple[dict[str, float], int, int]:
        model = copy.deepcopy(base).to(ctx.device)
        xd = x.to(ctx.device)
        if channels_last:
            xd = channels_last_steps(xd)
        with tf32(allow_tf32) if allow_tf32 is not None else contextlib.nullcontext():  # None: defaults
            l32, loss32, gx32, s32 = _model_pass(model, xd, y.to(ctx.device))
        f, n = spike_flips(s32, s64)
        errs = {
            "logits": rel_err(l32, l64),
            "loss": rel_err(loss32, loss64),
            "input_grad": rel_err(gx32, gx64),
        }
        errs["param_grad"], worst_name, worst = grads_err(model, ref)
        errs["bn_running"] = buffers_err(model, ref)
        errs[f"worst_param({worst_name})_grad"] = worst
        return errs, f, n

    errors, flips, total = device_pass(False)
    ok, problems = judge(errors, flips, total)
    details: dict[str, Any] = {
        "ok": ok,
        "summary": f"{flips}/{total} spikes differ; logits rel err {errors['logits']:.1e}, "
        f"param grads {errors['param_grad']:.1e}" + ("" if not problems else "; " + "; ".join(problems)),
        "errors": fmt_errors(errors),
        "spikes_differing": flips,
        "spikes_total": total,
        "firing_rate": round(float(s64.mean()), 4),
        "problems": problems,
    }
    if ctx.cuda:  # informational: the same pass with torch's default TF32 settings (cuDNN: on)
        e_tf32, f_tf32, _ = device_pass(None)
        details["with_default_tf32_settings"] = {
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "errors": fmt_errors(e_tf32),
            "spikes_differing": f_tf32,
        }
        details["summary"] += (f" (default TF32 settings: {f_tf32} spikes differ, "
                               f"logits {e_tf32['logits']:.1e})")
    return details


# ------------------------------------------------------------------------------------------ AMP
@contextlib.contextmanager
def record_lif_dtypes(model: nn.Module, seen: dict[str, Counter]) -> Iterator[None]:
    """Count the dtypes reaching every ``LIF`` and the encoder's fused LIF+gate, and which backend
    of the neuron ops (eager, cpp, triton) each call took."""
    from gac_coding import LIF, ops
    from gac_coding.ops import backends

    orig_gated, orig_select = ops.gated_lif, backends.select

    def gated(u: Tensor, ta: Tensor, sca: Tensor, *args: Any, **kwargs: Any) -> Any:
        seen["gated_lif"][f"u={u.dtype}, ta={ta.dtype}, sca={sca.dtype}"] += 1
        return orig_gated(u, ta, sca, *args, **kwargs)

    def select(x: Tensor, code: Any) -> str:
        name = orig_select(x, code)
        seen["lif_path"][f"{x.device.type}/{x.dtype}: {name}"] += 1
        return name

    hooks = [m.register_forward_pre_hook(lambda _m, args: seen["lif_input"].update([str(args[0].dtype)]))
             for m in model.modules() if isinstance(m, LIF)]
    ops.gated_lif = gated  # type: ignore[assignment]
    backends.select = select  # type: ignore[assignment]
    try:
        yield
    finally:
        ops.gated_lif = orig_gated  # type: ignore[assignment]
        backends.select = orig_select  # type: ignore[assignment]
        for h in hooks:
            h.remove()


def check_amp(ctx: Ctx, dtype: torch.dtype) -> dict[str, Any]:
    from gac_coding import LIF
    from gac_coding.models import create_model

    if ctx.cuda and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise SkipCheck("this GPU does not support bfloat16")
    T, B, S, steps = ctx.sizes.amp
    dev = ctx.device
    runs: dict[str, Any] = {}
    seen: dict[str, Counter] = {"lif_input": Counter(), "gated_lif": Counter(), "lif_path": Counter()}
    all_ok = True
    for channels_last in (True, False):
        torch.manual_seed(0)
        model = create_model("msresnet_tiny", num_classes=10, T=T, channels_last=channels_last).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
        g = torch.Generator().manual_seed(3)
        x = (torch.rand((B, 3, S, S), generator=g) * 2).to(dev)
        y = torch.randint(0, 10, (B,), generator=g).to(dev)
        losses, scales = [], []
        logits_dtype = None
        with record_lif_dtypes(model, seen):
            for _ in range(steps):
                with torch.autocast(dev.type, dtype=dtype):
                    logits = model(x)
                logits_dtype = str(logits.dtype)
                loss = F.cross_entropy(logits.float().mean(0), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(float(loss.detach()))
                scales.append(float(scaler.get_scale()) if scaler.is_enabled() else 1.0)
            model.eval()
            with torch.no_grad(), torch.autocast(dev.type, dtype=dtype):
                eval_logits = model(x).float()
        finite = all(math.isfinite(v) for v in losses) and bool(torch.isfinite(eval_logits).all())
        params_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        third = max(1, len(losses) // 3)
        decreasing = statistics.mean(losses[-third:]) < losses[0]
        skipped = sum(1 for a, b in zip(scales, scales[1:], strict=False) if b < a)
        runs[f"channels_last={channels_last}"] = {
            "losses": [round(v, 4) for v in losses],
            "logits_dtype": logits_dtype,
            "decreasing": decreasing,
            "finite": finite and params_finite,
            "scaler_backoffs": skipped,
        }
        all_ok &= finite and params_finite and decreasing
    # a bare LIF on half tensors (no autocast): must run, on the eager path
    bare: dict[str, Any] = {}
    bare_seen: dict[str, Counter] = {"lif_input": Counter(), "gated_lif": Counter(), "lif_path": Counter()}
    T_, B_, C_, H_, W_ = ctx.sizes.lif
    half = (torch.randn((T_, B_, C_, H_, W_), generator=torch.Generator().manual_seed(4)) + 0.7).to(dev)
    for name, dt in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        xh = half.to(dt).requires_grad_(True)
        with record_lif_dtypes(nn.Identity(), bare_seen):
            s = LIF()(xh)
        s.backward(torch.ones_like(s))
        xf = half.to(dt).float().requires_grad_(True)
        sf = LIF()(xf)
        sf.backward(torch.ones_like(sf))
        f, n = spike_flips(s, sf)
        bare[name] = {
            "spike_dtype": str(s.dtype),
            "grad_dtype": str(xh.grad.dtype),
            "grad_finite": bool(torch.isfinite(xh.grad).all()),
            "spikes_differing_vs_float32_membrane": f"{f}/{n}",
            "path": sorted(bare_seen["lif_path"]),
        }
        bare_seen["lif_path"].clear()
        all_ok &= bool(torch.isfinite(xh.grad).all()) and s.dtype == dt
    lif_inputs = sorted(seen["lif_input"])
    # the C++ kernel covers float32/float64 CPU tensors only: half types must have run eager
    kernel_on_half = [k for k in seen["lif_path"] if "cpp kernel" in k and "float16" in k]
    return {
        "ok": all_ok and not kernel_on_half,
        "summary": (f"losses {runs['channels_last=True']['losses'][0]:.3f} -> "
                    f"{runs['channels_last=True']['losses'][-1]:.3f} (CL), "
                    f"{runs['channels_last=False']['losses'][0]:.3f} -> "
                    f"{runs['channels_last=False']['losses'][-1]:.3f} (NCHW); LIF inputs {lif_inputs}; "
                    f"paths {sorted(seen['lif_path'])}"),
        "runs": runs,
        "bare_lif": bare,
        "lif_input_dtypes": dict(seen["lif_input"]),
        "gated_lif_dtypes": dict(seen["gated_lif"]),
        "lif_paths": dict(seen["lif_path"]),
        "kernel_on_half_types": kernel_on_half,
    }


# --------------------------------------------------------------------------- subprocess checks
def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (read from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _signal_tree(proc: subprocess.Popen, pids: list[int], sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, sig)  # the process group started with it (start_new_session)
    for pid in pids:  # torchrun starts its workers in sessions of their own
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def stop_tree(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to ``proc``, its process group and everything below it; SIGKILL after ``grace`` s."""
    pids = _descendants(proc.pid)
    _signal_tree(proc, pids, signal.SIGTERM)
    end = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < end:  # poll, not wait: safe in a signal handler
        time.sleep(0.1)
    _signal_tree(proc, pids + _descendants(proc.pid), signal.SIGKILL)
    end = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.1)


def on_sigterm(signum: int, frame: Any) -> None:
    for proc in list(ACTIVE):
        stop_tree(proc, 3)
    raise Terminated(f"signal {signum}")


def run_subprocess(ctx: Ctx, name: str, cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` in the repository root with a timeout; output appended to ``subprocess.log``.

    On timeout the command, its process group and every process below it get SIGTERM, then
    SIGKILL 10 s later.
    """
    timeout = min(timeout, ctx.left() - 10)
    if timeout < 15:
        raise SkipCheck(f"out of time ({ctx.left():.0f} s left)")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("NCCL_DEBUG", "WARN")
    log_path = ctx.tmp / f"{name}.out"
    started = time.perf_counter()
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        ACTIVE.append(proc)
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_tree(proc, 10)
            rc = proc.returncode
        except BaseException:  # the check's own limit, SIGTERM: leave nothing running
            stop_tree(proc, 5)
            raise
        finally:
            ACTIVE.remove(proc)
    seconds = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    with open(ctx.out / "subprocess.log", "a") as log:
        log.write(f"===== {name}: {' '.join(cmd)}\n{text}\n===== {name}: rc {rc}, {seconds:.1f} s"
                  f"{' (TIMED OUT)' if timed_out else ''}\n\n")
    return {"rc": rc, "seconds": round(seconds, 1), "timed_out": timed_out, "timeout_s": round(timeout),
            "output": text, "tail": text.splitlines()[-25:]}


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train_args(ctx: Ctx, out: Path, epochs: int) -> list[str]:
    return ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", str(epochs),
            "--batch-size", "128", "--lr", "0.1", "--out", str(out), "--device", ctx.device.type, "--amp",
            "--no-progress"]


def _nproc(ctx: Ctx) -> int:
    if not ctx.cuda:
        return 2  # gloo on the CPU
    return 2 if torch.cuda.device_count() >= 2 else 1


def _torchrun(ctx: Ctx) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            str(_nproc(ctx))]


def _cli_result(r: dict[str, Any], metrics: list[dict[str, Any]], epochs: list[int],
                extra_problems: list[str]) -> dict[str, Any]:
    problems = list(extra_problems)
    if r["timed_out"]:
        problems.append(f"timed out after {r['timeout_s']} s")
    elif r["rc"] != 0:
        problems.append(f"exit status {r['rc']}")
    got = [m.get("epoch") for m in metrics]
    if got != epochs:
        problems.append(f"metrics.jsonl holds epochs {got}, expected {epochs}")
    if metrics and not all(math.isfinite(m.get("train_loss", math.nan)) for m in metrics):
        problems.append("non-finite train_loss")
    details = {
        "ok": not problems,
        "summary": (f"rc {r['rc']} in {r['seconds']} s; epochs {got}"
                    + (f"; val_acc {metrics[-1]['val_acc']:.3f}" if metrics else "")
                    + ("" if not problems else "; " + "; ".join(problems))),
        "rc": r["rc"],
        "seconds": r["seconds"],
        "metrics": metrics,
        "problems": problems,
        "notes": [ln for ln in r["output"].splitlines()
                  if ln.startswith(("amp:", "resume:", "training ", "stopping", "nothing to do"))
                  or "bucket view strides" in ln],
    }
    if problems:
        details["tail"] = r["tail"]
    return details


def check_cli_train(ctx: Ctx) -> dict[str, Any]:
    out = ctx.tmp / "cli_single"
    cmd = [sys.executable, "-m", "gac_coding", *_train_args(ctx, out, 1)]
    r = run_subprocess(ctx, "cli_train_amp", cmd, 150)
    missing = [f for f in ("last.pt", "best.pt", "model.safetensors") if not (out / f).is_file()]
    return _cli_result(r, _read_metrics(out / "metrics.jsonl"), [1],
                       [f"missing {', '.join(missing)}"] if missing else [])


def check_cli_torchrun_stop(ctx: Ctx) -> dict[str, Any]:
    out = ctx.tmp / "cli_torchrun"
    ctx.state["torchrun_out"] = out
    cmd = [*_torchrun(ctx), "-m", "gac_coding", *_train_args(ctx, out, 2), "--stop-after", "1"]
    r = run_subprocess(ctx, "cli_torchrun_stop_after", cmd, 150)
    problems = [] if "stopping after epoch 1" in r["output"] else ["no 'stopping after epoch 1' line"]
    details = _cli_result(r, _read_metrics(out / "metrics.jsonl"), [1], problems)
    details["nproc_per_node"] = _nproc(ctx)
    if ctx.cuda and _nproc(ctx) == 1:
        details["note"] = ("one process: gac_coding.train.distributed.setup creates no process group at "
                           "world size 1, so NCCL and DDP are not exercised here (see ddp_nccl)")
    ctx.state["torchrun_ok"] = details["ok"]
    return details


def check_cli_torchrun_resume(ctx: Ctx) -> dict[str, Any]:
    out = ctx.state.get("torchrun_out")
    if out is None or not (out / "last.pt").is_file():
        raise RuntimeError("needs the last.pt of cli_torchrun_stop_after, which is missing")
    cmd = [*_torchrun(ctx), "-m", "gac_coding", *_train_args(ctx, out, 2), "--resume"]
    r = run_subprocess(ctx, "cli_torchrun_resume", cmd, 150)
    problems = [] if "resume: continuing" in r["output"] else ["no 'resume: continuing' line"]
    return _cli_result(r, _read_metrics(out / "metrics.jsonl"), [1, 2], problems)


def check_ddp(ctx: Ctx) -> dict[str, Any]:
    cmd = [*_torchrun(ctx), str(Path(__file__).resolve()), "--ddp-worker", "--device", ctx.device.type]
    r = run_subprocess(ctx, "ddp_nccl", cmd, 120)
    result = None
    for line in r["output"].splitlines():
        if line.startswith("DDP_RESULT "):
            result = json.loads(line[len("DDP_RESULT "):])
    problems = []
    if r["timed_out"]:
        problems.append(f"timed out after {r['timeout_s']} s")
    elif r["rc"] != 0:
        problems.append(f"exit status {r['rc']}")
    if result is None:
        problems.append("no DDP_RESULT line from rank 0")
    else:
        problems += result.get("problems", [])
    stride_warning = "bucket view strides" in r["output"]
    details: dict[str, Any] = {
        "ok": not problems,
        "summary": (f"rc {r['rc']} in {r['seconds']} s"
                    + (f"; backend {result['backend']}, world {result['world_size']}, "
                       f"losses {result['losses']}" if result else "")
                    + ("; DDP warned about grad/bucket strides" if stride_warning else "")
                    + ("" if not problems else "; " + "; ".join(problems))),
        "result": result,
        "ddp_stride_warning": stride_warning,
        "problems": problems,
    }
    if problems or stride_warning:
        details["tail"] = r["tail"]
    return details


def ddp_worker(device_type: str) -> int:
    """One torchrun process: NCCL (gloo on CPU) + DDP on ``msresnet_tiny``; rank 0 prints a result."""
    from datetime import timedelta

    import torch.distributed as dist

    use_repo_sources()
    from gac_coding.models import create_model

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ["LOCAL_RANK"])
    if device_type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=90))
    problems: list[str] = []
    torch.manual_seed(0)
    model = create_model("msresnet_tiny", num_classes=10, T=4).to(dev)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local] if dev.type == "cuda" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(100 + rank)
    x = (torch.rand((16, 3, 16, 16), generator=g) * 2).to(dev)
    y = torch.randint(0, 10, (16,), generator=g).to(dev)
    amp_dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
    losses = []
    for _ in range(3):
        with torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
            logits = ddp(x)
        loss = F.cross_entropy(logits.float().mean(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(float(loss), 4))
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    mine = torch.stack([flat.sum(), flat.norm()])
    every = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    if not all(torch.equal(every[0], e) for e in every):
        problems.append("parameters differ between ranks after DDP steps")
    total = torch.tensor([float(rank + 1)], device=dev)
    dist.all_reduce(total)
    if float(total) != world * (world + 1) / 2:
        problems.append(f"all_reduce gave {float(total)}")
    box: list[Any] = [{"from": rank}]
    dist.broadcast_object_list(box, src=0, device=dev if dev.type == "cuda" else None)
    if box[0] != {"from": 0}:
        problems.append(f"broadcast_object_list gave {box[0]}")
    if dev.type == "cuda":
        dist.barrier(device_ids=[local])
    else:
        dist.barrier()
    if not all(math.isfinite(v) for v in losses):
        problems.append(f"non-finite losses {losses}")
    if rank == 0:
        print("DDP_RESULT " + json.dumps({"backend": backend, "world_size": world, "device": str(dev),
                                          "amp": str(amp_dtype), "losses": losses, "problems": problems}),
              flush=True)
    dist.destroy_process_group()
    return 0


# ---------------------------------------------------------------------------------------- speed
def check_speed(ctx: Ctx, batch: int) -> dict[str, Any]:
    import models as bench_models  # benchmarks/models.py

    from gac_coding.models import create_model

    sz = ctx.sizes
    dev = ctx.device
    torch.manual_seed(0)
    library = create_model(sz.speed_model, num_classes=10, T=sz.speed_T)
    nchw = create_model(sz.speed_model, num_classes=10, T=sz.speed_T, channels_last=False)
    nchw.load_state_dict(library.state_dict())
    naive = bench_models.naive_copy(library)
    torch.manual_seed(0)
    direct = create_model(sz.speed_model, num_classes=10, T=sz.speed_T, gac=False)
    models = {"library": library, "library_nchw": nchw, "naive": naive, "direct": direct}
    for m in models.values():
        m.to(dev).train()
    precisions: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
    if ctx.cuda and not torch.cuda.is_bf16_supported():
        del precisions["bf16"]
    g = torch.Generator().manual_seed(5)
    x = torch.rand((batch, 3, sz.speed_size, sz.speed_size), generator=g).to(dev)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)
    keys = [(v, p) for p in precisions for v in models]

    def step(variant: str, prec: str) -> None:
        model = models[variant]
        model.zero_grad(set_to_none=True)
        dtype = precisions[prec]
        with torch.autocast(dev.type, dtype=dtype) if dtype else contextlib.nullcontext():
            logits = model(x)
        F.cross_entropy(logits.float().mean(0), y).backward()

    for v, p in keys:  # warm-up
        for _ in range(sz.speed_warmup):
            step(v, p)
    ctx.sync()
    memory: dict[str, dict[str, float]] = {}
    if ctx.cuda:
        for v, p in keys:
            models[v].zero_grad(set_to_none=True)
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            step(v, p)
            torch.cuda.synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev)
            memory[f"{v}/{p}"] = {"peak_mib": round(peak / 2**20, 1),
                                  "step_mib": round((peak - before) / 2**20, 1)}
    times: dict[str, list[float]] = {f"{v}/{p}": [] for v, p in keys}
    per_round = None
    for r in range(sz.speed_repeats):  # interleaved rounds: load changes hit every variant alike
        if r > 0 and per_round is not None and ctx.left() < per_round + 30:
            break
        started = time.perf_counter()
        for v, p in keys:
            ctx.sync()
            t0 = time.perf_counter()
            step(v, p)
            ctx.sync()
            times[f"{v}/{p}"].append(time.perf_counter() - t0)
        per_round = time.perf_counter() - started
    med = {k: statistics.median(ts) * 1e3 for k, ts in times.items()}
    best = {k: min(ts) * 1e3 for k, ts in times.items()}
    ratios: dict[str, float] = {}
    for p in precisions:
        ratios[f"naive/library {p}"] = med[f"naive/{p}"] / med[f"library/{p}"]
        ratios[f"library_nchw/library {p}"] = med[f"library_nchw/{p}"] / med[f"library/{p}"]
        ratios[f"library/direct {p}"] = med[f"library/{p}"] / med[f"direct/{p}"]
    if "bf16" in precisions:
        ratios["library fp32/bf16"] = med["library/fp32"] / med["library/bf16"]
    if memory:
        for p in precisions:
            ratios[f"step memory library/naive {p}"] = (memory[f"library/{p}"]["step_mib"]
                                                        / memory[f"naive/{p}"]["step_mib"])
    table = [f"{sz.speed_model} T={sz.speed_T} batch {batch} {sz.speed_size}x{sz.speed_size} on {dev}, "
             f"{len(times['library/fp32'])} timed steps each (median, best)",
             f"{'variant':<22} {'median ms':>10} {'best ms':>9} {'peak MiB':>9} {'step MiB':>9}"]
    for k in times:
        mem = memory.get(k, {})
        table.append(f"{k:<22} {med[k]:>10.2f} {best[k]:>9.2f} {mem.get('peak_mib', float('nan')):>9.1f} "
                     f"{mem.get('step_mib', float('nan')):>9.1f}")
    table += [f"  {k}: {v:.2f}x" for k, v in ratios.items()]
    print("\n".join(table), flush=True)
    finite = all(math.isfinite(v) for v in med.values())
    return {
        "ok": finite,
        "summary": ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()
                             if k.startswith(("naive", "library/"))),
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "best_ms": {k: round(v, 3) for k, v in best.items()},
        "steps_ms": {k: [round(t * 1e3, 3) for t in ts] for k, ts in times.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "memory": memory,
        "table": table,
        "settings": {"cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                     "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                     "warmup": sz.speed_warmup},
    }


# ---------------------------------------------------------------------------------------- peers
def check_peers(ctx: Ctx, model: str) -> dict[str, Any]:
    """``benchmarks/peers.py`` in a subprocess: the ImageNet model against SpikingJelly's
    ``ms_resnet18`` (T=4, batch 32, 224x224) or the CIFAR model against the naive formulation
    (T=6, batch 128), fp32 and bf16 autocast, train and inference (dry run: CPU, tiny sizes)."""
    result = ctx.tmp / f"peers_{model}.json"
    cmd = [sys.executable, str(BENCH / "peers.py"), "--model", model, "--json", str(result)]
    if ctx.dry:
        size = "32" if model == "imagenet" else "16"
        cmd += ["--device", "cpu", "--threads", "1", "--T", "2", "--batch", "2", "--size", size,
                "--repeats", "1", "--warmup", "0", "--backends", "eager", "--no-memory"]
        cmd += ["--no-check"] if model == "cifar" else []
    else:  # the float64 equality checks are device-independent: run on CPU by the CPU benchmark
        cmd += ["--device", "cuda", "--backends", "triton,eager", "--repeats", "5", "--warmup", "2",
                "--no-check"]
    r = run_subprocess(ctx, f"peers_{model}", cmd, 200 if model == "imagenet" else 120)
    table = [line for line in r["output"].splitlines() if line.strip()][-60:]
    print("\n".join(table), flush=True)
    if r["rc"] != 0 or not result.is_file():
        return {"ok": False, "rc": r["rc"], "timed_out": r["timed_out"], "tail": r["tail"], "table": table}
    figures = json.loads(result.read_text())
    train = figures["modes"].get("train", {}).get("ratios", {})
    return {"ok": True, "summary": ", ".join(f"{k} {v['median']:.2f}x" for k, v in train.items()
                                             if k.startswith(("sj /", "naive /"))),
            "figures": figures, "table": table, "seconds_subprocess": r["seconds"]}


# ---------------------------------------------------------------------------------------- compile
def check_compile(ctx: Ctx) -> dict[str, Any]:
    """``benchmarks/compile.py`` in a subprocess: eager vs ``torch.compile`` (inductor,
    ``fullgraph=True``) for a training step and inference of ``msresnet18_cifar`` (T=6, batch 8)
    and of the encoder, with compile times (dry run: CPU, the encoder alone at a tiny size)."""
    result = ctx.tmp / "compile.json"
    cmd = [sys.executable, str(BENCH / "compile.py"), "--json", str(result)]
    if ctx.dry:
        # the script's path only: aot_eager skips inductor's C++ builds, minutes on a small CPU
        cmd += ["--device", "cpu", "--only", "encoder", "--T", "2", "--size", "8", "--batch", "2",
                "--repeats", "1", "--backend", "aot_eager"]
    else:
        cmd += ["--device", "cuda", "--repeats", "10"]
    r = run_subprocess(ctx, "compile", cmd, 200 if ctx.dry else 240)
    table = [line for line in r["output"].splitlines() if line.strip()][-20:]
    print("\n".join(table), flush=True)
    if r["rc"] != 0 or not result.is_file():
        return {"ok": False, "rc": r["rc"], "timed_out": r["timed_out"], "tail": r["tail"], "table": table}
    rows = json.loads(result.read_text())
    return {"ok": True, "summary": ", ".join(f"{row['name']} {row['ratios'][1]:.2f}x (compile "
                                             f"{row['compile_s']:.0f} s)" for row in rows),
            "rows": rows, "table": table, "seconds_subprocess": r["seconds"]}


# ---------------------------------------------------------------------------------------- runner
@dataclass
class Check:
    name: str
    fn: Callable[[Ctx], dict[str, Any]]
    need: float  # seconds it needs at least: skipped when less is left
    limit: float  # in-process time limit (SIGALRM; a call blocked inside C is left to the outer timeout)


class CheckTimeout(Exception):
    """An in-process check ran past its limit."""


def on_alarm(signum: int, frame: Any) -> None:
    raise CheckTimeout("ran past its time limit")


def all_checks(ctx: Ctx) -> list[Check]:
    """The checks in the order they run."""
    checks = [Check("environment", check_environment, 0, 60)]
    for layout, cl in (("channels_last", True), ("nchw", False)):
        checks.append(Check(f"correct_lif_{layout}", lambda c, cl=cl: check_lif(c, cl), 10, 60))
        checks.append(Check(f"correct_encoder_{layout}", lambda c, cl=cl: check_encoder(c, cl), 10, 60))
        checks.append(Check(f"correct_msresnet_tiny_{layout}", lambda c, cl=cl: check_model(c, cl), 10, 90))
    checks.append(Check("correct_triton", check_triton, 15, 120))
    checks.append(Check("amp_bf16", lambda c: check_amp(c, torch.bfloat16), 15, 90))
    checks.append(Check("amp_fp16", lambda c: check_amp(c, torch.float16), 15, 90))
    # speed before the subprocesses: a hung torchrun (stopped at its timeout) cannot cost the timings
    for batch in ctx.sizes.speed_batches:
        checks.append(Check(f"speed_b{batch}", lambda c, b=batch: check_speed(c, b), 20, 150))
    # benchmarks/peers.py: the ImageNet model against SpikingJelly's, the CIFAR model against naive
    checks.append(Check("peers_imagenet", lambda c: check_peers(c, "imagenet"), 60, 215))
    checks.append(Check("peers_cifar", lambda c: check_peers(c, "cifar"), 45, 135))
    # benchmarks/compile.py: eager vs torch.compile (its subprocess stops at 200 s dry, 240 s CUDA)
    checks.append(Check("compile", check_compile, 60, 260))
    # the subprocess checks stop their commands at their own timeouts (150 s, 120 s)
    checks.append(Check("cli_train_amp", check_cli_train, 30, 200))
    checks.append(Check("cli_torchrun_stop_after", check_cli_torchrun_stop, 30, 200))
    checks.append(Check("cli_torchrun_resume", check_cli_torchrun_resume, 30, 200))
    checks.append(Check("ddp_nccl", check_ddp, 30, 170))
    return checks


def write_json(path: Path, results: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def run_all(ctx: Ctx, checks: list[Check], results: dict[str, Any], path: Path) -> None:
    cuda_missing = not ctx.dry and not torch.cuda.is_available()
    signal.signal(signal.SIGALRM, on_alarm)
    for check in checks:
        name, need = check.name, check.need
        print(f"\n===== {name} ({ctx.left():.0f} s left)", flush=True)
        if cuda_missing and name != "environment":
            results[name] = {"ok": False, "seconds": 0.0, "error": (
                f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda})")}
            write_json(path, results)
            continue
        if ctx.left() < need:
            results[name] = {"ok": None, "seconds": 0.0, "skipped": f"out of time ({ctx.left():.0f} s left)"}
            write_json(path, results)
            continue
        # written first, so that a run killed inside this check says where it stopped
        results[name] = {"ok": False, "seconds": None, "error": "did not finish (hung or killed)"}
        write_json(path, results)
        started = time.perf_counter()
        limit = max(1.0, min(check.limit, ctx.left() + 5))
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                details = check.fn(ctx)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            ok = bool(details.pop("ok"))
            results[name] = {"ok": ok, "seconds": round(time.perf_counter() - started, 2), "details": details}
        except SkipCheck as exc:
            results[name] = {"ok": None, "seconds": round(time.perf_counter() - started, 2),
                             "skipped": str(exc)}
        except CheckTimeout:
            results[name] = {"ok": False, "seconds": round(time.perf_counter() - started, 2),
                             "error": f"timed out after {limit:.0f} s",
                             "traceback": traceback.format_exc()[-6000:]}
        except Exception as exc:  # noqa: BLE001 - recorded, the next check runs
            results[name] = {"ok": False, "seconds": round(time.perf_counter() - started, 2),
                             "error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()[-6000:]}
        res = results[name]
        status = {True: "OK", False: "FAIL", None: "SKIP"}[res["ok"]]
        note = res.get("details", {}).get("summary") or res.get("error") or res.get("skipped", "")
        print(f"----- {name}: {status} in {res['seconds']} s: {note}", flush=True)
        if res["ok"] is False and "traceback" in res:
            print(res["traceback"], flush=True)
        if ctx.cuda:
            with contextlib.suppress(Exception):
                torch.cuda.empty_cache()
        write_json(path, results)


def summary_lines(results: dict[str, Any], wall: float) -> list[str]:
    lines = ["", "=" * 100, f"gac-coding CUDA check summary ({wall:.0f} s)", "=" * 100]
    for name, res in results.items():
        status = {True: "OK", False: "FAIL", None: "SKIP"}[res["ok"]]
        note = res.get("details", {}).get("summary") or res.get("error") or res.get("skipped", "")
        seconds = res["seconds"] if res["seconds"] is not None else float("nan")
        lines.append(f"{name:<34} {status:<5} {seconds:>7.1f} s  {note}")
    for name, res in results.items():
        if name.startswith(("speed_", "peers_")) and "details" in res:
            lines += ["", *res["details"]["table"]]
    counts = Counter({True: "ok", False: "failed", None: "skipped"}[r["ok"]] for r in results.values())
    lines += ["", f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny sizes, gloo: test the script itself")
    parser.add_argument("--out", default=os.environ.get("OUT") or "cuda_check_out",
                        help="folder for cuda_check.json, summary.txt, subprocess.log (default: $OUT)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for all checks; later checks are skipped when it runs out")
    parser.add_argument("--only", default="", help="comma-separated check names (prefixes) to run")
    parser.add_argument("--skip", default="", help="comma-separated check names (prefixes) to leave out")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args.device)

    started = time.monotonic()
    faulthandler.enable()
    faulthandler.dump_traceback_later(max(args.budget + 5, 10), exit=False)  # a hang leaves a stack
    use_repo_sources()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out / "subprocess.log").unlink()
    device = torch.device("cpu" if args.dry_run else "cuda")
    tmp = Path(tempfile.mkdtemp(prefix="gac_cuda_check_"))
    ctx = Ctx(device=device, dry=args.dry_run, out=out, tmp=tmp, deadline=started + args.budget,
              sizes=DRY_SIZES if args.dry_run else CUDA_SIZES)
    checks = all_checks(ctx)
    only = [s for s in args.only.split(",") if s]
    skip = [s for s in args.skip.split(",") if s]

    def wanted(name: str) -> bool:
        if name == "environment":
            return True
        if only and not name.startswith(tuple(only)):
            return False
        return not (skip and name.startswith(tuple(skip)))

    checks = [c for c in checks if wanted(c.name)]
    print(f"gac-coding CUDA check: {len(checks)} checks on {device}, budget {args.budget:.0f} s, out {out}",
          flush=True)
    results: dict[str, Any] = {}
    path = out / "cuda_check.json"
    signal.signal(signal.SIGTERM, on_sigterm)
    terminated = False
    try:
        run_all(ctx, checks, results, path)
    except Terminated as exc:
        terminated = True
        print(f"\nterminated ({exc}); the check that was running is marked as not finished", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        faulthandler.cancel_dump_traceback_later()
    lines = summary_lines(results, time.monotonic() - started)
    print("\n".join(lines), flush=True)
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    if terminated:
        return 124
    return 1 if any(r["ok"] is False for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
