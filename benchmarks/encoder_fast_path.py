"""Speed and peak memory of the encoder's static fast path vs the sequence path fed the same frames.

Both paths compute the same function (the tests check it to float rounding): a static batch
``[B, C, H, W]`` vs the same frame repeated ``T`` times as a sequence ``[T, B, C, H, W]``, where the
sequence path runs the stem, its BatchNorm and the spatial-channel attention at every step.

Usage::

    python benchmarks/encoder_fast_path.py            # B=32, C=64, 32x32, T = 2, 4, 6
    python benchmarks/encoder_fast_path.py --quick    # smaller, for a smoke run
    python benchmarks/encoder_fast_path.py --backend cpp   # only the fused C++ LIF+gate kernel

``--backend`` chooses the LIF backend (:func:`gac_coding.neuron.set_backend`) of both paths:
``eager`` (torch operations), ``cpp`` (the fused C++ kernel, compiled on first use) or ``both``
(default: one table per backend, static and sequence paths always under the same backend).

Times are medians of interleaved repetitions (static, sequence, static, ...), so both paths see
the same machine load; peak memory is the growth of the process's peak resident memory (VmHWM) during one
forward+backward, each path in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import gac_coding as gac
from gac_coding import neuron


def _make(T: int, B: int, C: int, size: int) -> tuple[gac.GACEncoder, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    enc = gac.GACEncoder(3, C, T)
    x = torch.rand(B, 3, size, size) * 2
    seq = x.unsqueeze(0).expand(T, *x.shape).contiguous()
    return enc, x, seq


def _train_step(enc: gac.GACEncoder, inp: torch.Tensor) -> None:
    enc.zero_grad(set_to_none=True)
    enc(inp).sum().backward()


def _infer(enc: gac.GACEncoder, inp: torch.Tensor) -> None:
    with torch.no_grad():
        enc(inp)


def _time_pair(fn, a, b, reps: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    fn(a)
    fn(b)
    ta, tb = [], []
    for _ in range(reps):
        for inp, acc in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn(inp)
            acc.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def _high_water_kib() -> int:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_child(T: int, B: int, C: int, size: int, path: str, backend: str) -> None:
    neuron.set_backend(backend)
    enc, x, seq = _make(T, B, C, size)
    inp = x if path == "static" else seq
    _train_step(enc, x[:2])  # warm up allocator and kernels on a small batch
    base = _high_water_kib()
    _train_step(enc, inp)
    print(json.dumps({"peak_kib": _high_water_kib() - base}))


def _peak(T: int, B: int, C: int, size: int, path: str, backend: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", path, "--T", str(T), "--B", str(B),
         "--C", str(C), "--size", str(size), "--backend", backend],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"] / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--C", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--T", type=int, nargs="*", default=[2, 4, 6])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backend", choices=["eager", "cpp", "both"], default="both")
    parser.add_argument("--child", choices=["static", "sequence"])
    args = parser.parse_args()
    if args.child:
        _peak_child(args.T[0], args.B, args.C, args.size, args.child, args.backend)
        return
    if args.quick:
        args.B, args.C, args.size, args.reps = 8, 16, 16, 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"B={args.B}, C={args.C}, {args.size}x{args.size}, median of {args.reps}")
    backends = ["eager", "cpp"] if args.backend == "both" else [args.backend]
    for backend in backends:
        _table(args, backend)


def _table(args: argparse.Namespace, backend: str) -> None:
    neuron.set_backend(backend)
    if backend == "cpp":
        from gac_coding.ops import _cpp

        start = time.perf_counter()
        if _cpp.load() is None:
            print(f"\nbackend cpp: the kernel could not be built ({_cpp.build_error()})")
            return
        print(f"\nbackend cpp (fused C++ LIF+gate kernel; loaded or built in "
              f"{time.perf_counter() - start:.1f} s)")
    else:
        print(f"\nbackend {backend}")
    header = (f"{'T':>2} | {'fwd+bwd static ms':>17} | {'sequence ms':>11} | {'speed-up':>8} | "
              f"{'goal 0.75T':>10} | {'inference speed-up':>18} | {'peak MiB static':>15} | "
              f"{'sequence':>8} | {'memory ratio':>12}")
    print(header)
    print("-" * len(header))
    for T in args.T:
        enc, x, seq = _make(T, args.B, args.C, args.size)
        s_tr, q_tr = _time_pair(lambda inp, e=enc: _train_step(e, inp), x, seq, args.reps)
        s_in, q_in = _time_pair(lambda inp, e=enc: _infer(e, inp), x, seq, args.reps)
        m_s = _peak(T, args.B, args.C, args.size, "static", backend)
        m_q = _peak(T, args.B, args.C, args.size, "sequence", backend)
        print(f"{T:>2} | {s_tr * 1e3:>17.1f} | {q_tr * 1e3:>11.1f} | {q_tr / s_tr:>7.2f}x | "
              f"{0.75 * T:>9.2f}x | {q_in / s_in:>17.2f}x | {m_s:>15.1f} | {m_q:>8.1f} | "
              f"{m_q / max(m_s, 1e-9):>11.2f}x", flush=True)

if __name__ == "__main__":
    main()
