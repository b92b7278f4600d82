"""What the gate statistics and the attention variants cost: encoder forward + backward, side by side.

``GACEncoder(3, 64, T)`` in training mode on a static batch ``[32, 3, 32, 32]`` (the fast path), one
forward and backward of ``out.sum()``. Compared, interleaved (one repetition of each in turn):

* ``paper``: the paper's encoder with ``record=True`` (the default);
* ``paper, record=False``: the same without the record of the last call;
* each variant of docs/design/encoder.md §7 (``record=True``).

Then the gate statistics' cost, which eval-mode calls pay: the paper's encoder in eval mode, one
forward pass under ``torch.no_grad()``, with ``record=True`` (statistics kept) against
``record=False``, and the same for a whole model, ``msresnet18_cifar`` (``--model``) at batch 8.
Prints the median time of each and its ratio to the first of its table.
Single-threaded by default (``--threads``); the eager LIF backend unless ``--backend`` says
otherwise.

    python benchmarks/gate_overhead.py --T 4 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import gac_coding as gac
from gac_coding.ops import use_backend

CASES: dict[str, dict] = {
    "paper": {},
    "paper, record=False": {"record": False},
    "ta_bias + leaky_relu": {"ta_bias": True, "ta_activation": "leaky_relu"},
    "ta_source=membrane": {"ta_source": "membrane"},
    "gate=separate": {"gate": "separate"},
    "gate=sum": {"gate": "sum"},
    "gate=temporal (+membrane)": {"gate": "temporal", "ta_source": "membrane"},
}


def step(enc: gac.GACEncoder, x: torch.Tensor) -> float:
    started = time.perf_counter()
    enc(x).sum().backward()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="eager", choices=("eager", "cpp", "triton", "auto"))
    parser.add_argument("--model", default="msresnet18_cifar")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32)
    encoders = {name: gac.GACEncoder(3, 64, args.T, **kw).train() for name, kw in CASES.items()}
    times: dict[str, list[float]] = {name: [] for name in CASES}
    with use_backend(args.backend):
        for enc in encoders.values():  # warm-up
            step(enc, x)
        for _ in range(args.repeats):
            for name, enc in encoders.items():
                times[name].append(step(enc, x))
    base = statistics.median(times["paper"])
    print(f"GACEncoder(3, 64, T={args.T}), static batch {tuple(x.shape)}, training fwd+bwd, backend "
          f"{args.backend}, {args.threads} thread(s), median of {args.repeats}")  # fmt: skip
    print("| encoder | ms | / paper |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {1000 * med:.1f} | {med / base:.2f}x |")

    from gac_coding.models import create_model

    model_on = create_model(args.model, T=args.T).eval()
    model_off = create_model(args.model, T=args.T, encoder_kwargs={"record": False}).eval()
    xm = torch.rand(8, 3, 32, 32)
    evals = {
        "encoder, record=True (statistics)": (encoders["paper"].eval(), x),
        "encoder, record=False": (encoders["paper, record=False"].eval(), x),
        f"{args.model}, record=True (statistics)": (model_on, xm),
        f"{args.model}, record=False": (model_off, xm),
    }
    eval_times: dict[str, list[float]] = {name: [] for name in evals}
    with use_backend(args.backend), torch.no_grad():
        for module, inp in evals.values():
            module(inp)  # warm-up
        for _ in range(args.repeats):
            for name, (module, inp) in evals.items():
                started = time.perf_counter()
                module(inp)
                eval_times[name].append(time.perf_counter() - started)
    print(f"\nthe paper's encoder (batch {x.shape[0]}) and {args.model} (batch {xm.shape[0]}), eval-mode "
          f"forward under no_grad, median of {args.repeats}")  # fmt: skip
    print("| module | ms | statistics on / off |")
    print("|---|---:|---:|")
    names = list(eval_times)
    for on, off in ((names[0], names[1]), (names[2], names[3])):
        a, b = statistics.median(eval_times[on]), statistics.median(eval_times[off])
        print(f"| {on} | {1000 * a:.1f} | {a / b:.2f}x |")
        print(f"| {off} | {1000 * b:.1f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
