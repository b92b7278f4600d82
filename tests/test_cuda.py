"""CUDA correctness: the LIF, the encoder and a model on the GPU against a CPU float64 copy, the
triton kernels against the eager backend in float64, mixed precision, the training command on the
GPU (plain, under torchrun with stop and resume), NCCL with DistributedDataParallel.

Every test here is marked ``cuda``: without CUDA, ``tests/conftest.py`` deselects them (reported as
deselected, not skipped). ``benchmarks/cuda_check.sh`` runs them (``pytest -m cuda``) before its
speed measurements. ``GAC_CODING_CUDA_DRY_RUN=1`` runs them on the CPU at tiny sizes instead, to
exercise their code where no GPU is (float32 against float64 on the CPU, triton in its interpreter,
gloo instead of NCCL, CPU autocast): ``GAC_CODING_CUDA_DRY_RUN=1 pytest -m cuda``.

Tolerances (relative L2 errors against float64, the same on both paths). A spike may differ where
a membrane lies within float32 rounding of the threshold; the fraction of differing spikes fails
above 1e-3. With no differing spike, values agree to 1e-4 and gradients to 1e-3 (float32
arithmetic through BatchNorm, the attention's convolutions and T-step recurrences; gradients sum
more terms); with some, 5e-2 and 1e-1 (one flipped spike moves what follows it). The triton check
compares the kernels alone: float32 to 1e-5 (a sigmoid and short recurrences in float32), bfloat16
to 8e-3 (float32 arithmetic rounded once to bfloat16, 2**-9 relative per element, allowed 4x).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import CUDA_DRY_RUN_ENV
from torch import Tensor, nn

import gac_coding
from gac_coding import RECIPES, GACEncoder
from gac_coding.attention import gated_lif
from gac_coding.models import create_model
from gac_coding.neuron import LIF, lif, lif_reference
from gac_coding.ops import _triton, backends
from gac_coding.ops.layout import is_channels_last_step

pytestmark = pytest.mark.cuda

DRY = os.environ.get(CUDA_DRY_RUN_ENV) == "1"
DEVICE = torch.device("cpu" if DRY else "cuda")
REPO = Path(__file__).resolve().parent.parent
VALUE_TOL, GRAD_TOL = 1e-4, 1e-3  # no spike differs
VALUE_TOL_FLIPS, GRAD_TOL_FLIPS = 5e-2, 1e-1  # some spikes differ (threshold-near elements)
MAX_SPIKE_FRACTION = 1e-3
TRITON_TOL = {torch.float32: 1e-5, torch.bfloat16: 8e-3}


@dataclass(frozen=True)
class Sizes:
    lif: tuple[int, int, int, int, int]  # T, B, C, H, W
    encoder: tuple[int, int, int, int]  # T, B, C, image size
    model: tuple[int, int, int]  # T, B, image size
    amp: tuple[int, int, int, int]  # T, B, image size, SGD steps


SIZES = Sizes((3, 2, 8, 6, 6), (3, 2, 8, 8), (2, 4, 8), (2, 16, 8, 6)) if DRY else Sizes(
    (6, 16, 32, 16, 16), (6, 8, 32, 32), (4, 16, 32), (4, 64, 32, 15)
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _triton_for_this_device() -> Iterator[None]:
    """The triton kernels as the device needs them, for this module only.

    Dry run: in the interpreter on CPU tensors, as the rest of the suite runs them. On CUDA:
    compiled. Triton fixes the mode when it decorates the kernels (``TRITON_INTERPRET`` at their
    first import, which ``tests/conftest.py`` sets to 1 for the suite), so the kernels module is
    imported afresh with the interpreter off and the suite's one is put back afterwards.
    """
    if DRY:
        from triton_device import triton_kernel_device

        assert triton_kernel_device() == "cpu"
        yield
        return
    import gac_coding.ops as ops_package

    name = "gac_coding.ops._triton_kernels"
    saved = (sys.modules.pop(name, None), ops_package.__dict__.pop("_triton_kernels", None))
    saved_state = (_triton._kernels, set(_triton._usable))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "0")
        _triton._kernels = None
        _triton._usable.clear()
        _triton._load()
        assert not _triton.interpreted()
        try:
            yield
        finally:
            sys.modules.pop(name, None)
            ops_package.__dict__.pop("_triton_kernels", None)
            if saved[0] is not None:
                sys.modules[name] = saved[0]
            if saved[1] is not None:
                ops_package._triton_kernels = saved[1]  # type: ignore[attr-defined]
            _triton._kernels = saved_state[0]
            _triton._usable.clear()
            _triton._usable.update(saved_state[1])


@pytest.fixture(autouse=True)
def _no_tf32() -> Iterator[None]:
    """Full float32 in cuDNN convolutions and cuBLAS products (TF32 is not float32's precision)."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ------------------------------------------------------------------------------------ helpers


def rel_err(test: Tensor, ref: Tensor, mask: Tensor | None = None) -> float:
    """``||test - ref|| / ||ref||`` in float64 on the CPU (``inf`` when ``test`` is not finite)."""
    a = test.detach().to("cpu", torch.float64)
    b = ref.detach().to("cpu", torch.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    if not bool(torch.isfinite(a).all()):
        return math.inf
    num, den = float((a - b).norm()), float(b.norm())
    return num / den if den > 0 else num


def grads_err(test: nn.Module, ref: nn.Module) -> dict[str, float]:
    """Relative error of all parameter gradients together, and of the worst single parameter.

    A parameter's error is ``||a - b||`` over the larger of ``||b||`` and the share of the whole
    gradient's norm its size would carry if spread evenly: a gradient that is zero in exact
    arithmetic (a bias before a training-mode BatchNorm) is judged by its absolute error on the
    scale of the others, not divided by its own rounding noise.
    """
    pairs = []
    for (name, pa), (_, pb) in zip(test.named_parameters(), ref.named_parameters(), strict=True):
        if pb.grad is None:
            continue
        assert pa.grad is not None, f"{name}: no gradient"
        pairs.append((pa.grad.detach().to("cpu", torch.float64).flatten(), pb.grad.double().flatten()))
    a_all = torch.cat([a for a, _ in pairs])
    b_all = torch.cat([b for _, b in pairs])
    scale = float(b_all.norm())
    worst = max(
        float((a - b).norm()) / max(float(b.norm()), scale * math.sqrt(b.numel() / b_all.numel()), 1e-300)
        for a, b in pairs
    )
    return {"param_grad": rel_err(a_all, b_all), "worst_param_grad": worst}


def buffers_err(test: nn.Module, ref: nn.Module) -> float:
    """Relative error of the BatchNorm running statistics together."""
    a, b = [], []
    for (name, ba), (_, bb) in zip(test.named_buffers(), ref.named_buffers(), strict=True):
        if name.endswith(("running_mean", "running_var")):
            a.append(ba.detach().to("cpu", torch.float64).flatten())
            b.append(bb.detach().to("cpu", torch.float64).flatten())
    return rel_err(torch.cat(a), torch.cat(b)) if a else 0.0


def channels_last_steps(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` channels-last; ``[T, B, C, H, W]`` with channels-last steps."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)


class Comparison:
    """Errors and differing spikes of a device run against the float64 reference."""

    def __init__(self) -> None:
        self.errors: dict[str, float] = {}
        self.flips = 0
        self.total = 0
        self.firing: list[float] = []

    def spikes(self, test: Tensor, ref: Tensor) -> None:
        self.flips += int((test.detach().cpu().double() != ref.detach().cpu().double()).sum())
        self.total += ref.numel()
        self.firing.append(float(ref.detach().double().mean()))

    def check(self, tol: float | None = None) -> None:
        """Judge the errors: ``tol`` (if given) for every value and gradient when no spike
        differs, else the module's tolerances."""
        loose = self.flips > 0
        problems = []
        for key, err in self.errors.items():
            grad = key.endswith("grad")
            if loose:
                limit = GRAD_TOL_FLIPS if grad else VALUE_TOL_FLIPS
            elif tol is not None:
                limit = tol
            else:
                limit = GRAD_TOL if grad else VALUE_TOL
            if not err <= limit:
                problems.append(f"{key}: {err:.2e} > {limit:.0e}")
        if self.flips > MAX_SPIKE_FRACTION * max(self.total, 1):
            problems.append(f"{self.flips} of {self.total} spikes differ")
        assert not problems, "; ".join(problems)
        # the comparison means something only where neurons fire, and not everywhere
        assert 0.02 < statistics.mean(self.firing) < 0.98, self.firing


# ------------------------------------------------------------------------------------ correctness


@pytest.mark.parametrize("channels_last", [True, False])
def test_lif_on_the_device_equals_cpu_float64(channels_last: bool) -> None:
    T, B, C, H, W = SIZES.lif
    g = torch.Generator().manual_seed(0)
    cmp = Comparison()
    for recipe in ("cifar", "imagenet"):
        p = RECIPES[recipe]
        params = (float(p["decay"]), float(p["threshold"]), str(p["surrogate"]), bool(p["detach_reset"]))
        for static in (False, True):
            shape = (B, C, H, W) if static else (T, B, C, H, W)
            x = (torch.randn(shape, generator=g) * 0.5 + 0.7 * params[1]).float()
            grad_out = torch.randn((T, B, C, H, W), generator=g)

            def run(inp: Tensor, params=params, static=static, grad_out=grad_out) -> tuple[Tensor, Tensor]:
                leaf = inp.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
                s = lif(leaf, *params, steps=T if static else None)
                (gx,) = torch.autograd.grad(s, leaf, grad_out.to(s))
                return s.detach(), gx

            xd = x.to(DEVICE)
            if channels_last:
                xd = channels_last_steps(xd)
            s32, g32 = run(xd)
            s64, g64 = run(x.double())
            tag = f"{recipe}.{'static' if static else 'sequence'}"
            cmp.spikes(s32, s64)
            cmp.errors[f"{tag}.input_grad"] = rel_err(g32, g64)
            assert is_channels_last_step(s32[0]) == channels_last, "the spikes keep the input's layout"
            if not static:  # against the plain autograd loop on the same device
                leaf = xd.detach().clone().requires_grad_(True)
                sr = lif_reference(leaf, *params)
                (gr,) = torch.autograd.grad(sr, leaf, grad_out.to(sr))
                cmp.spikes(s32, sr)
                cmp.errors[f"{tag}.vs_loop_grad"] = rel_err(g32, gr)
    cmp.check()


@pytest.mark.parametrize("channels_last", [True, False])
def test_encoder_on_the_device_equals_cpu_float64(channels_last: bool) -> None:
    T, B, C, S = SIZES.encoder
    torch.manual_seed(0)
    base = GACEncoder(3, C, T)
    g = torch.Generator().manual_seed(1)
    cmp = Comparison()
    for static in (True, False):
        tag = "static" if static else "sequence"
        x = torch.rand((B, 3, S, S) if static else (T, B, 3, S, S), generator=g) * 2
        enc64 = copy.deepcopy(base).double()
        enc32 = copy.deepcopy(base).to(DEVICE)
        x32 = x.to(DEVICE, torch.float32, copy=True)
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
        assert enc32.last_gate is not None and enc64.last_gate is not None
        assert x32.grad is not None and x64.grad is not None
        cmp.spikes(s32, s64)
        cmp.errors[f"{tag}.out"] = rel_err(o32, o64, s32.cpu().double() == s64)
        cmp.errors[f"{tag}.gate"] = rel_err(enc32.last_gate, enc64.last_gate)
        cmp.errors[f"{tag}.input_grad"] = rel_err(x32.grad, x64.grad)
        cmp.errors.update({f"{tag}.{k}": v for k, v in grads_err(enc32, enc64).items()})
        cmp.errors[f"{tag}.bn_running"] = buffers_err(enc32, enc64)
        assert is_channels_last_step(o32[0]) == channels_last, "the code keeps the input's layout"
    cmp.check()


def _model_pass(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward + backward in training mode: logits, loss, input gradient, every LIF's spikes."""
    spikes: list[Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: spikes.append(out.detach().flatten()))
        for m in model.modules()
        if isinstance(m, LIF)
    ]
    try:
        leaf = x.detach().clone().requires_grad_(True)
        logits = model(leaf)
        loss = F.cross_entropy(logits.mean(0), y)
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    enc_spikes = model.encoder.last_spikes
    assert enc_spikes is not None and leaf.grad is not None
    spikes.append(enc_spikes.flatten())
    return logits.detach(), loss.detach(), leaf.grad, torch.cat([s.cpu() for s in spikes])


@pytest.mark.parametrize("channels_last", [True, False])
def test_msresnet_tiny_on_the_device_equals_cpu_float64(channels_last: bool) -> None:
    T, B, S = SIZES.model
    torch.manual_seed(0)
    base = create_model("msresnet_tiny", num_classes=10, T=T, channels_last=channels_last)
    ref = create_model("msresnet_tiny", num_classes=10, T=T, channels_last=False)
    ref.load_state_dict(base.state_dict())
    ref = ref.double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand((B, 3, S, S), generator=g) * 2
    y = torch.randint(0, 10, (B,), generator=g)
    l64, loss64, gx64, s64 = _model_pass(ref, x.double(), y)
    model = copy.deepcopy(base).to(DEVICE)
    xd = channels_last_steps(x.to(DEVICE)) if channels_last else x.to(DEVICE)
    l32, loss32, gx32, s32 = _model_pass(model, xd, y.to(DEVICE))
    cmp = Comparison()
    cmp.spikes(s32, s64)
    cmp.errors.update(logits=rel_err(l32, l64), loss=rel_err(loss32, loss64), input_grad=rel_err(gx32, gx64))
    cmp.errors.update(grads_err(model, ref))
    cmp.errors["bn_running"] = buffers_err(model, ref)
    cmp.check()


def test_triton_on_the_device_equals_eager_float64() -> None:
    """The triton kernels (dry run: interpreted, on CPU tensors) against the eager backend in
    float64 on the CPU, from the same rounded inputs: the LIF and the LIF+gate, both recipes,
    static and sequence inputs, both layouts, float32 and bfloat16; values and every gradient;
    two runs' gradients bitwise equal (grad_ta's reduction order is fixed)."""
    T, B, C, H, W = SIZES.lif
    g = torch.Generator().manual_seed(3)

    def lif_run(x: Tensor, grad: Tensor, params: tuple, static: bool, backend: str) -> tuple[Tensor, Tensor]:
        leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        s = lif(leaf, *params, steps=T if static else None, backend=backend)
        (gx,) = torch.autograd.grad(s, leaf, grad.to(s))
        return s.detach(), gx

    def gated_run(u: Tensor, ta: Tensor, sca: Tensor, grad: Tensor, params: tuple, static: bool,
                  backend: str) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:  # fmt: skip
        keep = torch.preserve_format
        leaves = [t.detach().clone(memory_format=keep).requires_grad_() for t in (u, ta, sca)]
        out, fired, gate = gated_lif(*leaves, *params, static=static, backend=backend)
        return (out.detach(), fired, gate), torch.autograd.grad(out, leaves, grad.to(out))

    for dtype in (torch.float32, torch.bfloat16):
        cmp = Comparison()
        for recipe in ("cifar", "imagenet"):
            p = RECIPES[recipe]
            params = (float(p["decay"]), float(p["threshold"]), str(p["surrogate"]), bool(p["detach_reset"]))
            for static in (False, True):
                for cl in (False, True):
                    tag = f"{recipe}.{'static' if static else 'sequence'}.{'nhwc' if cl else 'nchw'}"
                    step = (B, C, H, W)
                    x = torch.randn(step if static else (T, *step), generator=g) * 0.5 + 0.7 * params[1]
                    x = x.to(dtype)
                    ta = torch.randn((T, B), generator=g).to(dtype)
                    sca = torch.randn(step, generator=g).to(dtype)
                    grad = torch.randn((T, *step), generator=g).to(dtype)
                    xd, scad = x.to(DEVICE), sca.to(DEVICE)
                    if cl:
                        xd, scad = channels_last_steps(xd), channels_last_steps(scad)
                    s_t, g_t = lif_run(xd, grad.to(DEVICE), params, static, "triton")
                    s_r, g_r = lif_run(x.double(), grad.double(), params, static, "eager")
                    cmp.spikes(s_t, s_r)
                    cmp.errors[f"{tag}.lif.input_grad"] = rel_err(g_t, g_r)
                    args_t = (xd, ta.to(DEVICE), scad, grad.to(DEVICE), params, static, "triton")
                    (o_t, f_t, m_t), gr_t = gated_run(*args_t)
                    args_r = (x.double(), ta.double(), sca.double(), grad.double(), params, static, "eager")
                    (o_r, f_r, m_r), gr_r = gated_run(*args_r)
                    cmp.spikes(f_t, f_r)
                    cmp.errors[f"{tag}.gated.out"] = rel_err(o_t, o_r, f_t.cpu().double() == f_r)
                    cmp.errors[f"{tag}.gated.gate"] = rel_err(m_t, m_r)
                    for name, a, b in zip(("u", "ta", "sca"), gr_t, gr_r, strict=True):
                        cmp.errors[f"{tag}.gated.{name}_grad"] = rel_err(a, b)
                    _, again = gated_run(*args_t)
                    assert all(torch.equal(a, b) for a, b in zip(gr_t, again, strict=True)), tag
        cmp.check(TRITON_TOL[dtype])  # with differing spikes, the loose tolerances


# ------------------------------------------------------------------------------------ AMP


@contextlib.contextmanager
def backends_used() -> Iterator[Counter]:
    """Count ``"device/dtype: backend"`` for every neuron op call in the block."""
    seen: Counter = Counter()
    original = backends.call

    def call(plan: backends.Plan, function: str, *args: Any) -> tuple[Any, str]:
        result, used = original(plan, function, *args)
        seen[f"{args[0].device.type}/{str(args[0].dtype).removeprefix('torch.')}: {used}"] += 1
        return result, used

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backends, "call", call)
        yield seen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_mixed_precision_training_steps(dtype: torch.dtype) -> None:
    """A few SGD steps of msresnet_tiny on one batch under autocast (fp16 with a gradient scaler),
    both layouts: finite, decreasing loss; every neuron op runs on the backend "auto" names for its
    device and dtype; a bare LIF on half tensors runs and returns their dtype."""
    if not DRY and dtype == torch.bfloat16:
        assert torch.cuda.is_bf16_supported(), "this GPU has no bfloat16: run with -k fp16"
    T, B, S, steps = SIZES.amp
    for channels_last in (True, False):
        torch.manual_seed(0)
        model = create_model("msresnet_tiny", num_classes=10, T=T, channels_last=channels_last).to(DEVICE)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scaler = torch.amp.GradScaler(DEVICE.type, enabled=dtype == torch.float16)
        g = torch.Generator().manual_seed(3)
        x = (torch.rand((B, 3, S, S), generator=g) * 2).to(DEVICE)
        y = torch.randint(0, 10, (B,), generator=g).to(DEVICE)
        losses = []
        with backends_used() as seen:
            for _ in range(steps):
                with torch.autocast(DEVICE.type, dtype=dtype):
                    logits = model(x)
                loss = F.cross_entropy(logits.float().mean(0), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(float(loss.detach()))
        assert all(math.isfinite(v) for v in losses), losses
        assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
        assert statistics.mean(losses[-max(1, steps // 3) :]) < losses[0], losses
        assert seen, "no neuron op ran"
        for key in seen:
            where, used = key.split(": ")
            device, name = where.split("/")
            assert used == backends.auto_backend(device, getattr(torch, name)), key
    half = (torch.randn(SIZES.lif, generator=torch.Generator().manual_seed(4)) + 0.7).to(DEVICE)
    xh = half.to(dtype).requires_grad_(True)
    s = LIF()(xh)
    s.backward(torch.ones_like(s))
    assert s.dtype == dtype and xh.grad is not None and xh.grad.dtype == dtype
    assert bool(torch.isfinite(xh.grad).all())
    assert 0.02 < float(s.detach().float().mean()) < 0.98


# ------------------------------------------------------------------------------------ processes


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc; torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as fh:
                    children.setdefault(int(fh.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def run_command(args: list[str], timeout: float) -> str:
    """Run ``args`` in the repository root with ``src/`` first on the path; its output. Killed with
    everything below it at ``timeout``; a non-zero exit fails the test with the output's tail."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("NCCL_DEBUG", "WARN")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *_descendants(proc.pid)]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(args)}: killed after {timeout} s\n{out[-3000:]}")
    assert proc.returncode == 0, f"{' '.join(args)}: exit status {proc.returncode}\n{out[-3000:]}"
    return out


def _train_args(out: Path, epochs: int) -> list[str]:
    return ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", str(epochs),
            "--batch-size", "128", "--lr", "0.1", "--out", str(out), "--device", DEVICE.type, "--amp",
            "--no-progress"]  # fmt: skip


def _epochs(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert all(math.isfinite(r["train_loss"]) for r in records)
    return [r["epoch"] for r in records]


def _torchrun() -> list[str]:
    nproc = 2 if DRY or torch.cuda.device_count() >= 2 else 1  # gloo on the CPU
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]


def test_train_command_on_the_device_with_amp(tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = run_command([sys.executable, "-m", "gac_coding", *_train_args(out, 1)], timeout=300)
    assert f"on {DEVICE.type}" in text and "neuron backend" in text
    assert _epochs(out) == [1]
    assert all((out / f).is_file() for f in ("last.pt", "best.pt", "model.safetensors"))
    from gac_coding.train import load_checkpoint

    config = load_checkpoint(out / "last.pt")["config"]
    # CUDA: bf16 or fp16 autocast; the CPU trains in float32 ("auto" names one backend for all three)
    assert config["backend_used"] == backends.auto_backend(DEVICE, torch.float32)


def test_torchrun_stop_after_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = run_command([*_torchrun(), "-m", "gac_coding", *_train_args(out, 2), "--stop-after", "1"], 300)
    assert "stopping after epoch 1" in text and _epochs(out) == [1]
    text = run_command([*_torchrun(), "-m", "gac_coding", *_train_args(out, 2), "--resume"], 300)
    assert "resume: continuing" in text and _epochs(out) == [1, 2]


def test_ddp_over_nccl_keeps_ranks_in_step(tmp_path: Path) -> None:
    """NCCL (gloo on the CPU) + DistributedDataParallel on msresnet_tiny under bf16 autocast: after
    three steps every rank holds the same parameters; all_reduce and broadcast work."""
    worker = Path(__file__).with_name("cuda_ddp_worker.py")
    text = run_command([*_torchrun(), str(worker), DEVICE.type], timeout=240)
    lines = [line for line in text.splitlines() if line.startswith("DDP_RESULT ")]
    assert len(lines) == 1, text[-3000:]
    result = json.loads(lines[0].removeprefix("DDP_RESULT "))
    assert result["problems"] == [], result
    assert result["backend"] == ("gloo" if DRY else "nccl")
    assert all(math.isfinite(v) for v in result["losses"])


@pytest.mark.parametrize("where", ["generator on the CPU", "generator on the device"])
def test_rate_coding_draws_on_the_generator_device(where: str) -> None:
    """A generator on another device than the input draws there (its own numbers, not the global
    generator's) and the spikes come back to the input's device (in the dry run both are the CPU)."""
    from gac_coding.coding import rate_encode

    gen_device, x_device = ("cpu", DEVICE) if where == "generator on the CPU" else (DEVICE, "cpu")
    x = torch.rand(2, 1, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    T = 6
    torch.manual_seed(123)  # the global generators: a draw from them would differ from the expected
    if not DRY:
        torch.cuda.manual_seed_all(123)
    spikes = rate_encode(x.to(x_device), T, generator=torch.Generator(device=gen_device).manual_seed(7))
    own = torch.Generator(device=gen_device).manual_seed(7)
    expected = torch.bernoulli(x.to(gen_device).unsqueeze(0).expand(T, *x.shape), generator=own)
    assert spikes.device.type == torch.device(x_device).type
    assert torch.equal(spikes.cpu(), expected.cpu())
    assert 0 < spikes.sum() < spikes.numel()


def test_nir_simulation_runs_on_the_device_of_the_code() -> None:
    """The reference simulator moves the graph's modules and arrays to the code's device (weights
    in multiples of 1/8: the device's and the CPU's runs agree exactly)."""
    import nir
    import numpy as np

    from gac_coding.export.nir.simulator import simulate

    g = np.random.default_rng(4)
    w = g.integers(-8, 9, size=(4, 3)) / 8
    lif = nir.LIF(tau=np.full(4, 2e-3), r=np.full(4, 1.5), v_leak=np.zeros(4), v_threshold=np.full(4, 0.25),
                  v_reset=np.zeros(4))  # fmt: skip
    nodes = {"input": nir.Input(input_type=np.array([3])), "fc": nir.Affine(weight=w, bias=np.full(4, 0.125)),
             "scale": nir.Scale(scale=np.full(4, 0.5)), "lif": lif,
             "output": nir.Output(output_type=np.array([4]))}  # fmt: skip
    path = ["input", "fc", "scale", "lif", "output"]
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(path[:-1], path[1:], strict=True)), type_check=False)
    code = (
        torch.rand(5, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) > 0.5
    ).double()
    out, extra = simulate(graph, code.to(DEVICE), 1e-3, record=True)
    want, want_extra = simulate(graph, code, 1e-3, record=True)
    assert out.device.type == DEVICE.type
    assert {v.device.type for v in extra["outputs"].values()} == {DEVICE.type}
    assert torch.equal(out.cpu(), want)
    assert all(torch.equal(extra["outputs"][n].cpu(), v) for n, v in want_extra["outputs"].items())
    assert 0 < want.sum() < want.numel()


def test_the_library_under_test_is_this_checkout() -> None:
    assert Path(gac_coding.__file__).resolve().is_relative_to(REPO / "src")
    if not DRY:
        assert torch.cuda.is_available()
