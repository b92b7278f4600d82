"""CUDA measurements of gac-coding in one run: training-step speed and memory, the peer benchmark,
eager against torch.compile.

Normally started by ``benchmarks/cuda_check.sh``, which first runs the CUDA correctness tests
(``pytest -m cuda``: ``tests/test_cuda.py``) and then this script; directly::

    python benchmarks/cuda_check.py [--out DIR] [--budget SECONDS] [--only A,B] [--skip A,B]
    python benchmarks/cuda_check.py --dry-run      # CPU, tiny sizes: tests the script itself

Every measurement is wrapped so that one failure does not stop the others. Results go to
``OUT/cuda_check.json`` (``name -> {ok, seconds, details | error}``; ``ok`` is ``null`` for a
skipped one), rewritten after every measurement so that a killed run still leaves what finished,
and a readable summary is printed at the end (and written to ``OUT/summary.txt``). Output of the
subprocesses goes to ``OUT/subprocess.log``. ``OUT`` defaults to the environment variable ``OUT``,
else ``./cuda_check_out``.

Time: ``--budget`` seconds in all (default 300); a measurement that no longer fits is skipped. An
in-process one is stopped by SIGALRM at its own limit; every subprocess is killed, with all
processes below it, at its timeout; SIGTERM (the entry point's ``timeout``) stops the running
subprocesses and ends with the results so far.

Measurements, in this order (``--dry-run``: the same on the CPU at tiny sizes, ``msresnet_tiny``
for the timings; memory figures need CUDA):

* ``environment``: versions, the GPU, the TF32 settings, the neuron backend ``"auto"`` picks.
* ``speed_b32``, ``speed_b8``: one training step (forward + backward) of ``msresnet18_cifar``,
  T=6, 32x32: the library (channels-last), ``library_nchw``, the naive per-step formulation
  (``naive_copy`` of ``benchmarks/models.py``) and direct coding (``coding="direct"``), each in float32
  and under bf16 autocast; medians after warm-up, interleaved, with ``torch.cuda.synchronize``;
  peak memory from ``torch.cuda.max_memory_allocated``. Ratios: naive / library, library_nchw /
  library, library / direct, library fp32 / bf16, step memory library / naive.
* ``peers_imagenet``, ``peers_cifar``: ``benchmarks/peers.py --device cuda`` in a subprocess:
  ``msresnet18_imagenet`` (direct coding and GAC, triton and eager LIF backends), the naive
  formulation and SpikingJelly's ``ms_resnet18`` at T=4, batch 32, 224x224; ``msresnet18_cifar``
  against the naive formulation at T=6, batch 128; fp32 and bf16 autocast, train step (with SGD)
  and inference, images/s and peak memory; ratios with the goals (>= SpikingJelly for direct
  coding, >= 2x naive).
* ``compile``: ``benchmarks/compile.py`` in a subprocess, eager against ``torch.compile``.
* ``memory_imagenet``, ``memory_cifar``: ``benchmarks/memory.py --device cuda`` in a subprocess:
  the memory modes (default, lean, checkpoint; direct coding and GAC) against SpikingJelly's
  ``ms_resnet18`` as shipped and with its memory optimiser at level 4, T=2,4,8, batch 32, 224x224:
  saved bytes, step time and peak memory (``torch.cuda.max_memory_allocated``); the CIFAR model
  (ours alone) at T=6, batch 128.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
BENCH = REPO / "benchmarks"

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
    speed_model: str
    speed_T: int
    speed_size: int
    speed_batches: tuple[int, ...]
    speed_warmup: int
    speed_repeats: int


CUDA_SIZES = Sizes("msresnet18_cifar", 6, 32, (32, 8), 3, 10)
DRY_SIZES = Sizes("msresnet_tiny", 2, 16, (4,), 1, 2)


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


# ------------------------------------------------------------------------------- environment
def check_environment(ctx: Ctx) -> dict[str, Any]:
    import gac_coding
    from gac_coding.ops import backends

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gac_coding": gac_coding.__version__,
        "gac_coding_file": gac_coding.__file__,
        "lif_backend_setting": backends.get_backend(),
        "auto_backend": backends.auto_backend(ctx.device, torch.float32),
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
    direct = create_model(sz.speed_model, num_classes=10, T=sz.speed_T, coding="direct")
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


# ---------------------------------------------------------------------------------- memory modes
def check_memory_modes(ctx: Ctx, model: str) -> dict[str, Any]:
    """``benchmarks/memory.py`` in a subprocess: the memory modes' saved bytes, step time and peak
    memory against SpikingJelly's ``ms_resnet18`` and its memory optimiser (level 4), T=2,4,8,
    batch 32, 224x224; the CIFAR model alone at T=6, batch 128 (dry run: CPU, tiny sizes)."""
    result = ctx.tmp / f"memory_{model}.json"
    cmd = [sys.executable, str(BENCH / "memory.py"), "--model", model, "--json", str(result), "--no-fit"]
    if ctx.dry:
        cmd += ["--device", "cpu", "--T", "2", "4", "--batch", "2", "--size", "32", "--rounds", "1"]
    elif model == "imagenet":
        cmd += ["--device", "cuda", "--T", "2", "4", "8", "--batch", "32", "--size", "224", "--rounds", "3"]
    else:
        cmd += ["--device", "cuda", "--T", "6", "--batch", "128", "--size", "32", "--rounds", "3"]
    r = run_subprocess(ctx, f"memory_{model}", cmd, 200 if model == "imagenet" else 120)
    table = [line for line in r["output"].splitlines() if line.strip()][-60:]
    print("\n".join(table), flush=True)
    if r["rc"] != 0 or not result.is_file():
        return {"ok": False, "rc": r["rc"], "timed_out": r["timed_out"], "tail": r["tail"], "table": table}
    figures = json.loads(result.read_text())
    peaks = {name: max(by_t.values()) for name, by_t in figures["peak_mib"].items() if by_t}
    summary = ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()) or "saved bytes only"
    return {"ok": True, "summary": summary, "figures": figures, "table": table,
            "seconds_subprocess": r["seconds"]}


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
    """The measurements in the order they run."""
    checks = [Check("environment", check_environment, 0, 60)]
    for batch in ctx.sizes.speed_batches:
        checks.append(Check(f"speed_b{batch}", lambda c, b=batch: check_speed(c, b), 20, 150))
    # benchmarks/peers.py: the ImageNet model against SpikingJelly's, the CIFAR model against naive
    checks.append(Check("peers_imagenet", lambda c: check_peers(c, "imagenet"), 60, 215))
    checks.append(Check("peers_cifar", lambda c: check_peers(c, "cifar"), 45, 135))
    # benchmarks/compile.py: eager vs torch.compile (its subprocess stops at 200 s dry, 240 s CUDA)
    checks.append(Check("compile", check_compile, 60, 260))
    # benchmarks/memory.py: the memory modes against SpikingJelly's model and memory optimiser
    checks.append(Check("memory_imagenet", lambda c: check_memory_modes(c, "imagenet"), 60, 215))
    checks.append(Check("memory_cifar", lambda c: check_memory_modes(c, "cifar"), 45, 135))
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
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: test the script itself")
    parser.add_argument("--out", default=os.environ.get("OUT") or "cuda_check_out",
                        help="folder for cuda_check.json, summary.txt, subprocess.log (default: $OUT)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds for all checks; later checks are skipped when it runs out")
    parser.add_argument("--only", default="", help="comma-separated check names (prefixes) to run")
    parser.add_argument("--skip", default="", help="comma-separated check names (prefixes) to leave out")
    args = parser.parse_args(argv)

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
