"""Where the signal goes when GAC's gate stays at or below 0.5: per-layer firing rates.

Trains ``msresnet_tiny`` exactly as ``benchmarks/gate_variants.py`` does (its :func:`run_one`
settings: ``gac-coding train``'s loop, SGD, lr 0.1, batch 64, cosine schedule) for each
``--coding`` and ``--seeds``, then measures on the test split:

* the firing rate of every spiking layer (:func:`gac_coding.analysis.firing_rates`);
* the largest value of the code ``O`` that the encoder hands the backbone (``code_max``), and of
  the membrane of the first block's first LIF (``stages.0.0.lif1``, decay 0.5, threshold 1.0:
  ``h_t = O_t + 0.5 * h_{t-1}`` until it fires, so a code ``O <= 0.5`` keeps ``h < 1``);
* the gate statistics and the accuracy, which must equal those of the same run in
  ``benchmarks/gate_variants.json`` when that file holds it (the training is deterministic on
  one thread; printed as a check).

Single-threaded. Writes ``--out``/``gate_layers.json`` and prints a Markdown table, one row per
layer, one column per run.

    python benchmarks/gate_layers.py --dataset digits --T 4 --codings direct gac --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gate_variants import CODINGS, JSON_NAME, _batches, run_key, train_config  # noqa: E402

OUT_NAME = "gate_layers.json"


def measure_layers(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Per-layer firing rates, the code's maximum and the first block LIF's largest membrane."""
    from gac_coding.analysis import firing_rates
    from gac_coding.attention import membrane_of

    model.eval()
    lif1 = model.stages[0][0].lif1
    seen: dict[str, torch.Tensor] = {}

    def keep(_module: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen["code"], seen["spikes"] = args[0].detach(), out.detach()

    handle = lif1.register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    code, spikes = seen["code"], seen["spikes"]
    membrane = membrane_of(code, spikes, float(lif1.decay))
    return {
        "rates": firing_rates(model, x),
        "code_max": float(code.max()),
        "lif1_membrane_max": float(membrane.max()),
        "lif1_spikes": int(spikes.count_nonzero()),
        "lif1_threshold": float(lif1.threshold),
        "lif1_decay": float(lif1.decay),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits", choices=("digits", "mnist5k"))
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--codings", nargs="+", choices=list(CODINGS), default=["direct", "gac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from gac_coding.train import fit

    reference_path = Path(args.out) / JSON_NAME
    reference = json.loads(reference_path.read_text())["runs"] if reference_path.is_file() else {}
    runs: dict[str, Any] = {}
    for coding in args.codings:
        for seed in args.seeds:
            config = train_config(args.dataset, coding, args.T, seed, args.epochs)
            result = fit(config, log=lambda line: None)
            test = result.data.test
            model = result.model.eval()
            enc = model.encoder
            gate = None
            if hasattr(enc, "reset_gate_statistics"):
                enc.reset_gate_statistics()
            correct = 0
            with torch.no_grad():  # in the batches of gate_variants.measure: the same rounding
                for xb, yb in _batches(test.images, test.labels):
                    correct += int((model(xb).mean(0).argmax(1) == yb).sum())
            acc = correct / int(test.images.shape[0])
            if hasattr(enc, "gate_statistics"):
                gate = enc.gate_statistics(reset=True)
            record = {"dataset": args.dataset, "coding": coding, "T": args.T, "seed": seed,
                      "epochs": args.epochs, "acc": acc, "gate": gate,
                      **measure_layers(model, test.images)}  # fmt: skip
            key = run_key(args.dataset, coding, args.T, seed, args.epochs)
            ref = reference.get(key)
            record["same_as_gate_variants"] = None if ref is None else abs(ref["acc"] - acc) < 1e-12
            runs[key] = record
            ta0 = "n/a" if gate is None else f"{gate['ta_zero_fraction']:.2f}"
            print(f"{key}: acc {acc:.4f} (gate_variants.json: "
                  f"{'not there' if ref is None else format(ref['acc'], '.4f')}), TA=0 {ta0}, "
                  f"code max {record['code_max']:.3f}, lif1 membrane max "
                  f"{record['lif1_membrane_max']:.3f}, lif1 spikes {record['lif1_spikes']}",
                  flush=True)  # fmt: skip
    out = Path(args.out) / OUT_NAME
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"command": "python benchmarks/gate_layers.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "runs": runs}, indent=1))  # fmt: skip
    os.replace(tmp, out)
    keys = list(runs)
    layers = list(runs[keys[0]]["rates"])
    for k in keys[1:]:
        layers += [name for name in runs[k]["rates"] if name not in layers]
    print()
    print("| layer | " + " | ".join(f"{runs[k]['coding']} seed {runs[k]['seed']}" for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    rows = [("accuracy (%)", lambda r: f"{100 * r['acc']:.2f}"),
            ("TA = 0", lambda r: "" if r["gate"] is None else f"{100 * r['gate']['ta_zero_fraction']:.0f}%"),
            ("gate min..max", lambda r: "" if r["gate"] is None
             else f"{r['gate']['gate_min']:.3f}..{r['gate']['gate_max']:.3f}"),
            ("code max", lambda r: f"{r['code_max']:.3f}"),
            ("stages.0.0.lif1 membrane max", lambda r: f"{r['lif1_membrane_max']:.3f}")]  # fmt: skip
    for name, cell in rows:
        print(f"| {name} | " + " | ".join(cell(runs[k]) for k in keys) + " |")
    for layer in layers:
        cells = [f"{runs[k]['rates'][layer]:.3f}" if layer in runs[k]["rates"] else "" for k in keys]
        print(f"| {layer} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
