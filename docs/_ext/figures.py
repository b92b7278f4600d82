"""Make the pictures of the documentation site: ``make docs-figures`` (or ``python docs/_ext/figures.py``).

Writes PNG files into ``docs/images/`` (committed; the site shows them as they are):

- ``demo.png``: the demo's plot, from ``gac-coding demo`` with its defaults (the settings of
  ``make demo``: 8 epochs, 5 seeds, T=4), run into a temporary folder and copied;
- ``gate.png``, ``raster.png``, ``firing_rates.png``, ``energy.png``: one ``msresnet_tiny`` with
  ``temporal_attention="conv"`` trained on scikit-learn's bundled digits (seed 0, T=4, 8 epochs,
  single-threaded, so every run draws the same pictures), then the library's plot functions on
  test images: the encoder's gate over time, a raster of its code, the firing rate of every
  spiking layer and the energy per layer (paper accounting) on the 360 test images.

The paper's MLP temporal attention often outputs 0 for a static image (its ReLU), which makes a
flat gate; the convolutional temporal attention gives a gate that changes over time.

The T-sweep plot is ``benchmarks/timesteps.png`` (made by ``benchmarks/timesteps.py``); the docs
build copies it into the site (``docs/_ext/hooks.py``), so it is not duplicated here.

Needs the ``train`` extra. ``--skip-demo`` redraws the other pictures only (the demo takes
minutes on two cores: 15 training runs).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

IMAGES = Path(__file__).resolve().parents[1] / "images"
SEED = 0
T = 4
EPOCHS = 8


def demo_plot(images: Path) -> None:
    """Run ``gac-coding demo`` (defaults) in a fresh folder and copy its plot."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        command = [sys.executable, "-m", "gac_coding", "demo", "--out", str(out)]
        print("running:", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
        shutil.copyfile(out / "demo.png", images / "demo.png")


def trained_model_plots(images: Path) -> None:
    """Train ``msresnet_tiny`` (conv temporal attention) on digits and draw the four analysis plots."""
    from gac_coding.analysis import firing_rates, plot_energy, plot_firing_rates, plot_gate, plot_raster
    from gac_coding.energy import estimate_energy
    from gac_coding.train import TrainConfig, fit
    from gac_coding.train.data import build_datasets

    torch.set_num_threads(1)  # the same arithmetic on every machine: the same pictures
    spec = build_datasets("digits")
    config = TrainConfig(
        model="msresnet_tiny", dataset="digits", T=T, epochs=EPOCHS, batch_size=64, lr=0.1,
        seed=SEED, coding="gac", device="cpu", progress=False,
        model_kwargs={"temporal_attention": "conv"},
    )  # fmt: skip
    result = fit(config, log=print, data=spec)
    model = result.model.eval()
    x = spec.test.images  # the 360 test images [360, 1, 8, 8]
    print(f"test accuracy {100 * result.history[-1]['val_acc']:.2f} %")

    with torch.no_grad():
        model(x)
    encoder = model.encoder
    code = encoder.last_gate * encoder.last_spikes  # the code O the backbone receives, [T, B, C, H, W]
    plot_gate(encoder, sample=0, path=images / "gate.png")
    # 48 of the neurons that fire at least once for this image (most of the 1024 never do)
    active = torch.nonzero(code[:, 0].reshape(T, -1).ne(0).any(0)).flatten()
    chosen = active[torch.linspace(0, len(active) - 1, min(48, len(active))).round().long().unique()]
    fig = plot_raster(
        code, sample=0, neurons=chosen.tolist(),
        title=f"GAC code of test digit 0: {len(chosen)} of its {len(active)} active neurons (of 1024)",
    )  # fmt: skip
    # marks 70% of a row high, so that neighbouring neurons' marks do not merge into one line
    ax = fig.axes[0]
    row_points = fig.get_size_inches()[1] * ax.get_position().height * 72 / len(chosen)
    ax.collections[0].set_sizes([(0.7 * row_points) ** 2])
    fig.savefig(images / "raster.png", dpi=100)
    lif = model.stages[0][0].lif1
    print(
        f"code max {float(code.max()):.4f}; gate range {float(encoder.last_gate.min()):.4f}.."
        f"{float(encoder.last_gate.max()):.4f}; stage 0 LIF: {lif}"
    )
    with torch.no_grad():
        rates = firing_rates(model, x)
        report = estimate_energy(model, x)
    print("firing rates:", {name: round(rate, 4) for name, rate in rates.items()})
    plot_firing_rates(rates, title="firing rate per layer, 360 test digits", path=images / "firing_rates.png")
    plot_energy(report, path=images / "energy.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true", help="keep docs/images/demo.png as it is")
    args = parser.parse_args(argv)
    IMAGES.mkdir(exist_ok=True)
    trained_model_plots(IMAGES)
    if not args.skip_demo:
        demo_plot(IMAGES)
    for path in sorted(IMAGES.glob("*.png")):
        print(f"{path.relative_to(IMAGES.parents[1])}: {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
