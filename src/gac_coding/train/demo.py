"""``gac-coding demo``: the input codings compared on scikit-learn's digits.

The same small backbone (``msresnet_tiny``, an MS-ResNet with a 16-channel stem) is trained once per
coding of :data:`gac_coding.coding.CODINGS` on the fixed digits split (1437 training / 360 test
images, 8x8, grey), each model fed the static images:

* ``direct``: the stem's output, the same at every step;
* ``rate``: Bernoulli spikes drawn per step from the pixel intensities (Poisson rate coding);
* ``latency``: one spike per pixel, brighter pixels earlier (time-to-first-spike);
* ``gac``: the Gated Attention Coding encoder.

For every coding and seed it records the final test accuracy, the mean firing rate of the network's
spiking neurons on the test set (:func:`gac_coding.analysis.mean_firing_rate`), and the paper's energy
estimate per image (:func:`gac_coding.energy.estimate_energy`); a coding that draws random spikes
draws the same ones for both, from a generator seeded per run. Results go to ``demo.json``;
``demo.png`` compares them. Both are written into the output folder and nowhere else, each
atomically; a folder that already holds them is refused before any training unless
``overwrite=True`` (``--overwrite``).

The best coding is the one with the highest mean test accuracy, unless another is **tied** with it:
two codings tie when the difference of their mean accuracies is at most the larger of their two
standard errors of the mean over seeds (``std / sqrt(seeds)``; with one seed, only equal accuracies
tie). Then ``best_coding`` is ``None``, ``tied`` lists the codings tied with the highest, and the
table says "tie". This is a plain rule, not a significance test.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import boolean, positive_int
from ..analysis import mean_firing_rate
from ..coding import CODINGS
from ..energy import estimate_energy
from .checkpoint import atomic_write
from .data import DataSpec, build_datasets
from .engine import TrainConfig, fit

__all__ = [
    "CODINGS",
    "CODING_LABELS",
    "DEMO_DEFAULTS",
    "DEMO_FILES",
    "best_codings",
    "firing_rate",
    "run_demo",
]

#: How each coding of :data:`gac_coding.coding.CODINGS` is called in the table (its encoder's label).
CODING_LABELS: dict[str, str] = {name: cls.label for name, cls in CODINGS.items()}

#: Defaults of ``gac-coding demo`` (sized to finish within 5 minutes on 2 CPU cores).
DEMO_DEFAULTS: dict[str, Any] = {
    "epochs": 8,
    "seeds": 5,
    "T": 4,
    "batch_size": 64,
    "lr": 0.1,
    "model": "msresnet_tiny",
}


#: The files a demo writes into its output folder.
DEMO_FILES: tuple[str, ...] = ("demo.json", "demo.png")

TIE_RULE = (
    "tie: the difference of mean test accuracies is at most the larger standard error of the "
    "mean over seeds (std / sqrt(seeds))"
)


def best_codings(results: dict[str, dict[str, Any]]) -> list[str]:
    """The codings tied for the highest mean test accuracy (one name when there is no tie).

    ``results[name]`` holds ``test_acc_mean`` and ``test_acc_sem``; a coding ties with the best
    when ``best_mean - its_mean <= max(best_sem, its_sem)``. Listed from the highest mean down.

    Example:
        >>> best_codings({"a": {"test_acc_mean": 0.98, "test_acc_sem": 0.002},
        ...               "b": {"test_acc_mean": 0.97, "test_acc_sem": 0.004},
        ...               "c": {"test_acc_mean": 0.978, "test_acc_sem": 0.003}})
        ['a', 'c']
    """
    order = sorted(results, key=lambda k: results[k]["test_acc_mean"], reverse=True)
    top = results[order[0]]
    return [
        name
        for name in order
        if top["test_acc_mean"] - results[name]["test_acc_mean"]
        <= max(top["test_acc_sem"], results[name]["test_acc_sem"])
    ]


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any training, an output folder that is a file or holds a demo's results."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: expected a folder, got an existing file {out}")
    present = [name for name in DEMO_FILES if (out / name).exists()]
    if present and not overwrite:
        raise FileExistsError(
            f"out: {out} already holds the results of an earlier demo ({', '.join(present)}); "
            f"pass --overwrite (overwrite=True) to replace them, or choose another --out folder"
        )


def firing_rate(model: nn.Module, x: Tensor) -> float:
    """Fraction of spiking neuron-steps over all of ``model``'s spiking layers for input ``x``
    (the layers pooled): :func:`gac_coding.analysis.mean_firing_rate`."""
    return mean_firing_rate(model, x)


def _energy_per_image(model: nn.Module, x: Tensor) -> float:
    """The paper's energy estimate per image, in mJ."""
    return float(estimate_energy(model, x).totals["energy_mj_per_sample"])


def _summary(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _train_one(
    name: str,
    seed: int,
    *,
    T: int,
    epochs: int,
    batch_size: int,
    lr: float,
    spec: DataSpec | None = None,
    tick: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one coding with one seed on a single CPU thread; the run's numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic in the pool and in-process: results do not depend on it
    try:
        started = time.perf_counter()
        spec = spec if spec is not None else build_datasets("digits")
        config = TrainConfig(
            model=DEMO_DEFAULTS["model"], dataset="digits", T=T, epochs=epochs,
            batch_size=batch_size, lr=lr, coding=name, seed=seed,
            device="cpu", progress=False,
        )  # fmt: skip
        result = fit(config, log=lambda _m: None, on_epoch_end=tick, data=spec)
        x_test, model = spec.test.images, result.model

        def seeded() -> nn.Module:
            # a coding that draws spikes draws the same ones for each measurement
            if hasattr(model.encoder, "generator"):
                model.encoder.generator = torch.Generator().manual_seed(10_000 + seed)
            return model

        return {
            "seed": seed,
            "test_acc": result.history[-1]["val_acc"],
            "best_test_acc": result.best_val_acc,
            "firing_rate": firing_rate(seeded(), x_test),
            "energy_mj_per_image": _energy_per_image(seeded(), x_test),
            "seconds": round(time.perf_counter() - started, 2),
            "history": result.history,
        }
    finally:
        torch.set_num_threads(threads)


def _pool_job(job: tuple[str, int, dict[str, Any]]) -> tuple[str, int, dict[str, Any]]:
    name, seed, kwargs = job
    return name, seed, _train_one(name, seed, **kwargs)


def run_demo(
    *,
    epochs: int = DEMO_DEFAULTS["epochs"],
    seeds: int = DEMO_DEFAULTS["seeds"],
    T: int = DEMO_DEFAULTS["T"],
    out: str | Path = "demo_out",
    batch_size: int = DEMO_DEFAULTS["batch_size"],
    lr: float = DEMO_DEFAULTS["lr"],
    workers: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train every coding of :data:`gac_coding.coding.CODINGS` for ``seeds`` seeds each; write
    ``out/demo.json`` and ``out/demo.png``.

    The ``codings x seeds`` runs are independent; they run in ``workers`` processes (default: up to 2,
    one per CPU core), each on one thread, which keeps tiny convolutions efficient and degrades
    gracefully on a busy machine. Every run is seeded, so the numbers do not depend on
    ``workers``. Returns the dictionary written to ``demo.json``.

    An ``out`` folder that already holds ``demo.json`` or ``demo.png`` raises
    ``FileExistsError`` before any training, unless ``overwrite=True``. The folder is made when
    the results are written; nothing is written elsewhere.
    """
    epochs = positive_int("epochs", epochs)
    seeds = positive_int("seeds", seeds)
    T = positive_int("T", T)
    batch_size = positive_int("batch_size", batch_size)
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1))
    workers = positive_int("workers", workers)
    boolean("overwrite", overwrite)
    say = log or (lambda m: print(m, flush=True))
    out = Path(out)
    _check_out(out, overwrite)
    spec: DataSpec = build_datasets("digits")
    jobs = [(name, seed) for name in CODINGS for seed in range(seeds)]
    workers = min(workers, len(jobs))
    say(
        f"gac-coding demo: msresnet_tiny on digits ({len(spec.train)} train / {len(spec.test)} "
        f"test, 8x8), T={T}, {epochs} epochs x {seeds} seed(s) x {len(CODINGS)} codings, "
        f"{workers} process(es)"
    )
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"T": T, "epochs": epochs, "batch_size": batch_size, "lr": lr}
    runs = _run_jobs(jobs, kwargs, spec, workers, progress, say)
    results = {name: _summarise(name, [runs[(name, seed)] for seed in range(seeds)]) for name in CODINGS}
    tied = best_codings(results)
    report = {
        "task": "scikit-learn digits, fixed stratified split (seed 0)",
        "model": DEMO_DEFAULTS["model"],
        "config": {
            "epochs": epochs,
            "seeds": seeds,
            "T": T,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": "SGD momentum 0.9, weight decay 5e-5, cosine annealing",
            "loss": "cross-entropy on time-averaged logits",
            "workers": workers,
        },
        "split": {"train": len(spec.train), "test": len(spec.test)},
        "codings": results,
        "best_coding": tied[0] if len(tied) == 1 else None,
        "tied": tied if len(tied) > 1 else [],
        "tie_rule": TIE_RULE,
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(out / "demo.json", lambda fh: fh.write(text.encode("utf-8")))
    _plot(report, out / "demo.png")
    say(format_table(report))
    say(f"wrote {out / 'demo.json'} and {out / 'demo.png'} ({report['seconds']:.0f}s)")
    return report


def _run_jobs(
    jobs: list[tuple[str, int]],
    kwargs: dict[str, Any],
    spec: DataSpec,
    workers: int,
    progress: bool | None,
    say: Callable[[str], None],
) -> dict[tuple[str, int], dict[str, Any]]:
    """Train every ``(coding, seed)`` of ``jobs`` (in this process, or in ``workers`` spawned
    processes); each run's numbers by ``(coding, seed)``, reported as they finish."""
    epochs = kwargs["epochs"]
    bars = sys.stderr.isatty() if progress is None else bool(progress)
    bar: Any = None
    if bars:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs) * epochs, desc="demo", unit="epoch", dynamic_ncols=True)
    runs: dict[tuple[str, int], dict[str, Any]] = {}

    def done(name: str, seed: int, run: dict[str, Any], epochs_left: int) -> None:
        runs[(name, seed)] = run
        msg = (
            f"  {CODING_LABELS[name]:<20} seed {seed}: test acc {run['test_acc']:.4f}, firing "
            f"rate {run['firing_rate']:.3f}, {run['seconds']:.1f}s"
        )
        if bar is not None:
            bar.update(epochs_left)
            bar.write(msg)
        else:
            say(msg)

    if workers == 1:
        for name, seed in jobs:

            def tick(record: dict[str, Any], name: str = name, seed: int = seed) -> None:
                if bar is not None:
                    bar.set_postfix(coding=name, seed=seed, val=f"{record['val_acc']:.3f}")
                    bar.update(1)

            done(name, seed, _train_one(name, seed, spec=spec, tick=tick, **kwargs), 0)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_pool_job, (name, seed, kwargs)) for name, seed in jobs]
            for future in as_completed(futures):
                name, seed, run = future.result()
                done(name, seed, run, epochs)
    if bar is not None:
        bar.close()
    return runs


def _summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The demo's entry for one coding: its runs (one per seed, in seed order) and their means."""
    acc_mean, acc_std = _summary([r["test_acc"] for r in runs])
    energies = [r["energy_mj_per_image"] for r in runs]
    return {
        "label": CODING_LABELS[name],
        "gac": name == "gac",
        "encoder": CODINGS[name].__name__,
        "test_acc_mean": acc_mean,
        "test_acc_std": acc_std,
        "test_acc_sem": acc_std / len(runs) ** 0.5,
        "firing_rate_mean": statistics.fmean(r["firing_rate"] for r in runs),
        "energy_mj_per_image_mean": statistics.fmean(energies),
        "runs": runs,
    }


def format_table(report: dict[str, Any]) -> str:
    """The demo's results as a text table."""
    seeds = report["config"]["seeds"]
    head = f"{'coding':<22}{'test accuracy':>22}{'firing rate':>14}{'energy/image':>16}"
    lines = [head, "-" * len(head)]
    for res in report["codings"].values():
        energy_s = f"{res['energy_mj_per_image_mean'] * 1e3:.2f} uJ"
        acc = f"{100 * res['test_acc_mean']:.2f} ± {100 * res['test_acc_std']:.2f} %"
        lines.append(f"{res['label']:<22}{acc:>22}{res['firing_rate_mean']:>14.3f}{energy_s:>16}")
    codings = report["codings"]
    if report["best_coding"] is not None:
        verdict = f"highest mean test accuracy: {codings[report['best_coding']]['label']}"
    else:
        verdict = (
            "tie for the highest mean test accuracy: "
            + " and ".join(codings[name]["label"] for name in report["tied"])
            + " (the difference is within the larger standard error of the mean)"
        )
    lines.append(f"(mean ± std over {seeds} seed(s); {verdict})")
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    codings = report["codings"]
    names = list(codings)
    ticks = ["\n".join(codings[n]["label"].rsplit(" ", 1)) for n in names]  # two lines: no overlap
    colors = {"direct": "tab:gray", "rate": "tab:blue", "latency": "tab:purple", "gac": "tab:red"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    for i, name in enumerate(names):
        res = codings[name]
        accs = [100 * r["test_acc"] for r in res["runs"]]
        ax.bar(
            i,
            100 * res["test_acc_mean"],
            yerr=100 * res["test_acc_std"],
            capsize=4,
            color=colors.get(name, "tab:green"),
            alpha=0.7,
        )
        ax.scatter([i] * len(accs), accs, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(names)), ticks, fontsize=8)
    lows = [100 * min(r["test_acc"] for r in codings[n]["runs"]) for n in names]
    ax.set_ylim(max(0.0, min(lows) - 5), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("final test accuracy (mean ± std, dots: seeds)", fontsize=9)

    ax = axes[1]
    for name in names:
        runs = codings[name]["runs"]
        epochs = [h["epoch"] for h in runs[0]["history"]]
        mean = [statistics.fmean(100 * r["history"][e]["val_acc"] for r in runs) for e in range(len(epochs))]
        ax.plot(
            epochs, mean, marker="o", ms=3, label=codings[name]["label"], color=colors.get(name, "tab:green")
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("learning curves (mean over seeds)", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[2]
    values = [1e3 * codings[n]["energy_mj_per_image_mean"] for n in names]
    ax.set_ylabel("energy per image (uJ, paper accounting)")
    ax.set_title("energy estimate (45 nm: 4.6 pJ MAC, 0.9 pJ AC)", fontsize=9)
    ax.bar(range(len(names)), values, color=[colors.get(n, "tab:green") for n in names], alpha=0.7)
    for i, name in enumerate(names):
        ax.annotate(
            f"rate {codings[name]['firing_rate_mean']:.3f}",
            (i, values[i]),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(names)), ticks, fontsize=8)
    cfg = report["config"]
    fig.suptitle(
        f"msresnet_tiny on digits, T={cfg['T']}, {cfg['epochs']} epochs, {cfg['seeds']} seed(s)", fontsize=10
    )
    fig.tight_layout()
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    finally:
        plt.close(fig)
