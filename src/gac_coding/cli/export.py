"""``gac-coding export``: write a model's host encoder and its spiking backbone to a folder.

Imports with torch alone (``nir`` is imported when the command runs).
"""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_model_options, build_model, model_settings, resolve_input_size

__all__ = ["FORMATS", "check_exportable", "configure_export_parser", "format_summary", "run_export_command"]

#: Export formats of ``--format`` (one entry per exporter of :mod:`gac_coding.export`).
FORMATS: tuple[str, ...] = ("nir",)


def configure_export_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding export``."""
    add_model_options(parser, checkpoint_required=True)
    parser.add_argument(
        "--out", required=True, help="folder for backbone.nir, host.safetensors and host.json"
    )
    parser.add_argument("--format", choices=FORMATS, default="nir", help="export format (default nir)")
    parser.add_argument(
        "--binarize",
        action="store_true",
        help="send binary spikes [gated code > 0.5] to the chip instead of the graded code",
    )
    parser.add_argument(
        "--dt",
        type=float,
        default=None,
        help="integration step in seconds the NIR time constants are written for (default 1e-4)",
    )
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="image size the graph is written for (default: the checkpoint's, "
                             "recorded by gac-coding train, else its data set's)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random images of the summary")


def format_summary(summary: dict[str, Any], title: str) -> str:
    """The one-screen summary printed by ``gac-coding export``."""
    nodes = ", ".join(f"{kind} {count}" for kind, count in summary["nodes"].items())
    lines = [
        title,
        f"code to the chip: {summary['code']}, per sample {tuple(summary['input_shape'])} x T={summary['T']}",
        f"graph: {sum(summary['nodes'].values())} nodes ({nodes}), {summary['edges']} edges, "
        f"dt={summary['dt']:g} s",
        f"neurons: {summary['neurons']:,}   synapses (weights): {summary['synapses']:,}   "
        f"output per step: {tuple(summary['output_shape'])}",
    ]
    if "host_mac_per_image" in summary:
        lines.append(
            f"host MACs/image: {summary['host_mac_per_image']:,.0f} (stem and attention; stem "
            f"BatchNorm {summary['host_mac_norm_per_image']:,.0f})"
        )
        lines.append(
            f"chip synops/image: {summary['chip_synop_per_image']:,.0f} (spike-driven), chip "
            f"MACs/image: {summary['chip_mac_per_image']:,.0f} (real-valued inputs: shortcuts, head)"
        )
    return "\n".join(lines)


def check_exportable(model: str, fmt: str) -> None:
    """Raise a ``ValueError`` unless the registered ``model`` declares the export ``fmt``
    (:attr:`gac_coding.models.ModelInfo.exports`): what ``gac-coding export`` checks before it
    reads or builds anything."""
    from ..models import model_info

    exports = model_info(model).exports
    if fmt not in exports:
        raise ValueError(
            f"--format {fmt}: the model {model!r} cannot be exported to {fmt.upper()} (to_nir exports "
            f"the MS-ResNet models and wrapped nets; the exports of {model!r}: "
            f"{', '.join(exports) if exports else 'none declared'})"
        )


def run_export_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding export``: load the model, split it, write the files, print a summary.

    A model that cannot be exported to ``--format`` is refused first (:func:`check_exportable`):
    before the checkpoint is read when ``--model`` names it, else as soon as the checkpoint's
    settings are. The graph's input size is ``--input-size``, else the checkpoint's (what
    ``gac-coding train`` records, else the size of the data set it names); a checkpoint that
    records neither needs ``--input-size``. The summary's operation counts come from a batch of 4
    uniform random images (seeded) at that size; they depend on the data.
    """
    import torch

    from ..export import save_nir_export, to_nir
    from ..models.checkpoints import load_weights, read_weights

    if args.model is not None:
        check_exportable(args.model, args.format)
    weights = read_weights(args.checkpoint)
    s = model_settings(args, weights.settings, args.checkpoint)
    check_exportable(s["model"], args.format)
    size = resolve_input_size(args.input_size, weights.settings, args.checkpoint, s["model"])
    model = build_model(s)
    layout = load_weights(model, weights, model_name=s["model"])
    model.eval()
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand(4, s["in_channels"], *size, generator=gen)
    binarize = True if args.binarize else None
    if args.dt is None:  # to_nir's default step
        exp = to_nir(model, x, binarize=binarize)
    else:
        exp = to_nir(model, x, dt=args.dt, binarize=binarize)
    exp.model_name = s["model"]
    config = {
        "model": s["model"],
        "num_classes": int(model.num_classes),  # type: ignore[arg-type]
        "in_channels": int(s["in_channels"]),
        "input_size": list(size),
        "checkpoint": str(args.checkpoint),
        "layout": layout,
    }
    paths = save_nir_export(exp, args.out, config)
    title = f"{s['model']} ({layout} weights from {args.checkpoint}) -> {paths['graph'].parent}"
    print(format_summary(exp.summary(x), title))
    print("wrote: " + ", ".join(str(p.name) for p in paths.values()))
    return 0
