"""The neuron-ops layer against the code before it, side by side in one process.

Usage::

    git archive <old commit> src | tar -x -C /tmp/old
    cp -r /tmp/old/src/gac_coding /tmp/oldpkg/gac_coding_old
    python benchmarks/ops_overhead.py --old /tmp/oldpkg

Imports the older tree as ``gac_coding_old`` next to this checkout's ``gac_coding`` (the package uses
relative imports, so a renamed copy is a separate package) and times, interleaved round by round:
the LIF forward + backward on a large channels-last tensor (where the arithmetic dominates) and on a
small one (where the per-call dispatch dominates), and a static ``GACEncoder`` training step, each
under the eager and the C++ backend. Prints medians and the median of paired per-round ratios
(old / new: above 1 means the new code is faster) and of the fastest rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch


def _lif_case(pkg, shape: tuple[int, ...], backend: str) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    T, B = shape[:2]
    flat = torch.randn(T * B, *shape[2:], generator=gen).contiguous(memory_format=torch.channels_last)
    x = flat.view(shape).requires_grad_()
    g = torch.randn(shape, generator=gen)

    def run() -> None:
        pkg.neuron.set_backend(backend)
        pkg.neuron.lif(x).backward(g)

    return run


def _encoder_case(pkg, backend: str) -> Callable[[], None]:
    torch.manual_seed(0)
    enc = pkg.GACEncoder(3, 16, T=4)
    x = torch.rand(8, 3, 16, 16)

    def run() -> None:
        pkg.neuron.set_backend(backend)
        enc(x).sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="folder holding the gac_coding_old package")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, args.old)
    import importlib

    import gac_coding_old  # type: ignore[import-not-found]

    import gac_coding
    from gac_coding.ops import _cpp

    try:  # where the older tree keeps its C++ kernels: ops/_cpp.py, or _lif_kernel.py before the ops layer
        old_cpp = importlib.import_module("gac_coding_old.ops._cpp")
    except ImportError:
        old_cpp = importlib.import_module("gac_coding_old._lif_kernel")
    built = _cpp.load() is not None and old_cpp.load() is not None
    backends = ["eager", "cpp"] if built else ["eager"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.rounds} interleaved rounds")
    cases = {}
    for backend in backends:
        shapes = (("LIF [6,8,128,32,32] CL", (6, 8, 128, 32, 32)), ("LIF [4,8,16,8,8] CL", (4, 8, 16, 8, 8)))
        for label, shape in shapes:
            cases[f"{label} {backend}"] = (
                _lif_case(gac_coding_old, shape, backend), _lif_case(gac_coding, shape, backend)
            )
        cases[f"encoder static T=4 {backend}"] = (
            _encoder_case(gac_coding_old, backend), _encoder_case(gac_coding, backend)
        )
    inner = {}
    for name, (old, new) in cases.items():
        old(), new()  # warm-up
        start = time.perf_counter()
        new()
        inner[name] = max(1, int(0.05 / max(time.perf_counter() - start, 1e-6)))
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    for _ in range(args.rounds):
        for name, (old, new) in cases.items():
            for slot, fn in ((0, old), (1, new)):
                start = time.perf_counter()
                for _ in range(inner[name]):
                    fn()
                times[name][slot].append((time.perf_counter() - start) / inner[name])
    print(f"{'case':<32} {'old ms':>9} {'new ms':>9} {'best old/new':>13} {'paired old/new':>15}")
    for name, (old_t, new_t) in times.items():
        paired = statistics.median(o / n for o, n in zip(old_t, new_t, strict=True))
        best = min(old_t) / min(new_t)
        print(
            f"{name:<32} {statistics.median(old_t) * 1e3:>9.3f} {statistics.median(new_t) * 1e3:>9.3f} "
            f"{best:>12.2f}x {paired:>14.2f}x"
        )
    print("(ms: medians; best: ratio of the fastest rounds; paired: median of per-round ratios)")


if __name__ == "__main__":
    main()
