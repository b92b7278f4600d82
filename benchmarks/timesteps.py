"""Accuracy and energy at T' = 1..8 of models trained at T = 4 on the bundled digits.

Three codings of the same backbone (``msresnet_tiny``), trained at T = 4 with ``gac-coding
train``'s loop (:func:`gac_coding.train.fit`), then run at every T' with ``set_timesteps``:

* ``gac-mlp``: GAC with the paper's temporal attention, an MLP across the 4 steps; it runs at
  T' = 4 only (other T' raise ``ValueError``, reported as "n/a");
* ``gac-conv``: GAC with ``temporal_attention="conv"`` (a 1-D convolution over time);
* ``direct``: direct coding (``coding="direct"``).

For each T' it reports the test accuracy (360 images, mean and std over seeds) and the paper's
energy estimate per image (:func:`gac_coding.energy.estimate_energy` on the test set, mean over
seeds). Writes ``timesteps.json`` and ``timesteps.png`` to ``--out`` (default ``benchmarks/``, where
the README's figures are kept) and prints a Markdown table.

    python benchmarks/timesteps.py                       # 3 seeds x 8 epochs: 954 s on 2 busy cores
    python benchmarks/timesteps.py --seeds 1 --epochs 1  # a quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

CODINGS: dict[str, dict[str, Any]] = {
    "gac-mlp": {"coding": "gac", "temporal_attention": "mlp", "label": "GAC, MLP attention (paper)"},
    "gac-conv": {"coding": "gac", "temporal_attention": "conv", "label": "GAC, conv attention"},
    "direct": {"coding": "direct", "temporal_attention": None, "label": "direct coding"},
}
TRAIN_T = 4


def run_one(coding: str, seed: int, epochs: int, steps: list[int]) -> dict[str, Any]:
    """Train one model at T=4, then measure accuracy and energy per image at each T' in ``steps``."""
    torch.set_num_threads(1)
    from gac_coding.energy import estimate_energy
    from gac_coding.train import TrainConfig, fit

    spec = CODINGS[coding]
    kwargs = {} if spec["temporal_attention"] is None else {"temporal_attention": spec["temporal_attention"]}
    config = TrainConfig(model="msresnet_tiny", dataset="digits", T=TRAIN_T, epochs=epochs, batch_size=64,
                         lr=0.1, coding=spec["coding"], seed=seed, device="cpu", progress=False,
                         model_kwargs=kwargs)
    started = time.perf_counter()
    result = fit(config, log=lambda line: None)
    model = result.model.eval()
    x, y = result.data.test.images, result.data.test.labels
    rows: dict[int, dict[str, float] | None] = {}
    for T in steps:
        model.set_timesteps(T)
        try:
            with torch.no_grad():
                logits = model(x)
        except ValueError:  # the paper's MLP attention at a T it was not built for
            rows[T] = None
            continue
        acc = float((logits.mean(0).argmax(1) == y).double().mean())
        energy = estimate_energy(model, x).totals["energy_mj_per_sample"] * 1000.0  # µJ
        rows[T] = {"acc": acc, "energy_uj": energy}
    model.set_timesteps(TRAIN_T)
    return {"coding": coding, "seed": seed, "rows": rows, "seconds": time.perf_counter() - started}


def summarise(runs: list[dict[str, Any]], steps: list[int]) -> dict[str, dict[int, dict[str, float] | None]]:
    """Mean and std over seeds per coding and T'."""
    table: dict[str, dict[int, dict[str, float] | None]] = {}
    for coding in CODINGS:
        mine = [r for r in runs if r["coding"] == coding]
        table[coding] = {}
        for T in steps:
            vals = [r["rows"][T] for r in mine if r["rows"][T] is not None]
            if not vals:
                table[coding][T] = None
                continue
            accs = [v["acc"] for v in vals]
            table[coding][T] = {
                "acc_mean": statistics.fmean(accs),
                "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "energy_uj": statistics.fmean(v["energy_uj"] for v in vals),
                "seeds": len(vals),
            }
    return table


def markdown(table: dict[str, dict[int, dict[str, float] | None]], steps: list[int]) -> str:
    head = "| T' | " + " | ".join(f"{c} acc (%) | {c} µJ" for c in CODINGS) + " |"
    sep = "|---:|" + "---:|---:|" * len(CODINGS)
    lines = [head, sep]
    for T in steps:
        cells = []
        for coding in CODINGS:
            cell = table[coding][T]
            if cell is None:
                cells += ["n/a", "n/a"]
            else:
                acc = f"{100 * cell['acc_mean']:.2f} ± {100 * cell['acc_std']:.2f}"
                cells += [acc, f"{cell['energy_uj']:.3f}"]
        mark = " (trained)" if T == TRAIN_T else ""
        lines.append(f"| {T}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(
    table: dict[str, dict[int, dict[str, float] | None]], steps: list[int], path: Path, note: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_e) = plt.subplots(1, 2, figsize=(10, 4))
    for coding, spec in CODINGS.items():
        pts = [(T, table[coding][T]) for T in steps if table[coding][T] is not None]
        ts = [T for T, _ in pts]
        style = "o" if len(ts) == 1 else "o-"
        ax_acc.errorbar(ts, [100 * c["acc_mean"] for _, c in pts], yerr=[100 * c["acc_std"] for _, c in pts],
                        fmt=style, capsize=3, label=spec["label"])
        ax_e.plot(ts, [c["energy_uj"] for _, c in pts], style, label=spec["label"])
    for ax in (ax_acc, ax_e):
        ax.axvline(TRAIN_T, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("time steps at inference T' (trained at T=4)")
        ax.set_xticks(steps)
    ax_acc.set_ylabel("test accuracy (%)")
    ax_e.set_ylabel("energy per image (µJ, paper's accounting)")
    ax_acc.legend(fontsize=8)
    fig.suptitle(f"msresnet_tiny on digits, trained at T=4, run at T' ({note})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-T", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="parallel single-thread processes")
    parser.add_argument("--out", default="benchmarks", help="folder for timesteps.json and timesteps.png")
    args = parser.parse_args(argv)
    for name in ("epochs", "seeds", "max_T", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected an integer >= 1")
    steps = list(range(1, args.max_T + 1))
    jobs = [(c, s, args.epochs, steps) for c in CODINGS for s in range(args.seeds)]
    started = time.perf_counter()
    if args.workers == 1:
        runs = [run_one(*job) for job in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            runs = list(pool.map(run_one, *zip(*jobs, strict=True)))
    table = summarise(runs, steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    note = f"{args.seeds} seeds x {args.epochs} epochs"
    payload = {"train_T": TRAIN_T, "epochs": args.epochs, "seeds": args.seeds, "steps": steps,
               "table": {c: {str(T): v for T, v in rows.items()} for c, rows in table.items()},
               "runs": runs, "seconds": time.perf_counter() - started,
               "command": "python benchmarks/timesteps.py "
               + " ".join(sys.argv[1:] if argv is None else argv)}
    (out / "timesteps.json").write_text(json.dumps(payload, indent=1))
    plot(table, steps, out / "timesteps.png", note)
    print(markdown(table, steps))
    print(f"\n{note}; {payload['seconds']:.0f} s; files in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
