"""``gac-coding energy``: operation counts and energy of a model (the base install).

With a checkpoint of ``gac-coding train`` the model is measured on the data its run validated on;
a model without a checkpoint, or ``--random-input``, on a seeded random batch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .options import add_model_options, build_model, model_settings, resolve_input_size

__all__ = [
    "ENERGY_BATCHES",
    "ENERGY_BATCH_SIZE",
    "EVENT_DENSITY",
    "configure_energy_parser",
    "run_energy_command",
]

#: Probability that a pixel of ``gac-coding energy``'s random event frames holds an event.
EVENT_DENSITY = 0.1


#: Batches of validation data ``gac-coding energy`` measures by default.
ENERGY_BATCHES = 10
#: Images per batch of ``gac-coding energy`` on data (random input: 1).
ENERGY_BATCH_SIZE = 32


def _batches_option(text: str) -> int:
    """``--batches``: an integer >= 1, or ``all`` (read as 0)."""
    if text == "all":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'all', got {text!r}")
    return value


def configure_energy_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``gac-coding energy``."""
    from ..train.data import DATASETS

    add_model_options(parser)
    data = parser.add_argument_group(
        "what it measures on: a checkpoint of gac-coding train on the data the run validated on "
        "(by default), a model without a checkpoint on random input"
    )
    data.add_argument(
        "--random-input", action="store_true",
        help="measure a checkpoint on random input instead of its validation data",
    )  # fmt: skip
    data.add_argument(
        "--batches", type=_batches_option, default=None, metavar="N|all",
        help=f"batches of validation data, in order from the first (default {ENERGY_BATCHES}; "
        f"'all': the whole split)",
    )  # fmt: skip
    data.add_argument(
        "--batch-size", type=int, default=None,
        help=f"images per batch (default {ENERGY_BATCH_SIZE} on data, 1 for random input)",
    )  # fmt: skip
    data.add_argument(
        "--data-dir", default=None,
        help="where the run's data set is now (default: the folder the run recorded)",
    )  # fmt: skip
    data.add_argument(
        "--dataset", choices=DATASETS, default=None,
        help="data set to measure a checkpoint that records none on (a bare state dict, the "
        "authors' file); images as gac-coding train feeds them, event frames with T bins",
    )  # fmt: skip
    data.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    data.add_argument(
        "--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
        help="size of the random input (default: the checkpoint's; without one the size the "
        "model is made for: 224 224 for ImageNet models, 48 48 for event models, else 32 32); "
        "on data it must be the data's",
    )  # fmt: skip
    data.add_argument(
        "--sequence", action=argparse.BooleanOptionalAction, default=None,
        help=f"random input: a sequence of random binary event frames [T, B, C, H, W] (each pixel "
        f"an event with probability {EVENT_DENSITY}, seeded) instead of a static image batch "
        f"(default: on for the models made for event frames, such as vgg_tiny and msresnet18_dvs)",
    )  # fmt: skip
    data.add_argument(
        "--seed", type=int, default=0,
        help="seed of the random input, of the weights without a checkpoint, and of rate-coded spikes",
    )  # fmt: skip
    data.add_argument(
        "--no-calibrate", action="store_true",
        help="without a checkpoint, keep the initial BatchNorm statistics (by default they are "
        "set from the random batch so that the untrained network fires)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _check_energy_options(args: argparse.Namespace, on_data: bool) -> None:
    """Options that only one kind of input takes are refused with the other, in one line."""
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if on_data:
        if args.sequence is not None:
            raise ValueError(
                "--sequence: chooses the random input; the checkpoint is measured on its "
                "validation data (add --random-input to measure it on random input)"
            )
        return
    why = (
        "without --checkpoint the model is untrained and measured on random input"
        if args.checkpoint is None
        else "--random-input measures on random input"
    )
    for option, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir),
                          ("--batches", args.batches)):  # fmt: skip
        if value is not None:
            raise ValueError(f"{option}: chooses the data to measure on, but {why}")


def _validation_data(
    args: argparse.Namespace, recorded: dict[str, Any], s: dict[str, Any]
) -> tuple[str, Any, Any]:
    """``(data set name, folder, DataSpec)`` of the split the run validated on: the data set the
    checkpoint names (or ``--dataset``) rebuilt as ``gac-coding train`` built it, checked against
    the model's channels and classes and against the recorded and asked input sizes."""
    from pathlib import Path

    from ..train.data import DataFolderError, build_datasets
    from ..train.events import EVENT_DATASETS, FrameOptions

    path = args.checkpoint
    named = recorded.get("dataset")
    if args.dataset is not None and named not in (None, args.dataset):
        raise ValueError(
            f"--dataset: the checkpoint {path} was trained and validated on {named}; drop "
            f"--dataset, or add --random-input"
        )
    dataset = args.dataset or named
    if dataset is None:
        raise ValueError(
            f"--dataset: the checkpoint {path} records no data set to measure on (a bare state "
            f"dict, the authors' file or an older model.safetensors); give --dataset NAME (and "
            f"--data-dir DIR), or --random-input with --input-size H W"
        )
    data_dir = args.data_dir if args.data_dir is not None else recorded.get("data_dir")
    if args.data_dir is None and data_dir is not None and not Path(data_dir).exists():
        raise DataFolderError(
            f"--data-dir: the folder {data_dir} that the run read {dataset} from no longer "
            f"exists; give --data-dir DIR where the data is now, or --random-input"
        )
    events = None
    if dataset in EVENT_DATASETS:
        try:
            events = FrameOptions(T=s["T"], **recorded.get("events", {}))
        except TypeError as exc:
            raise ValueError(f"--checkpoint: {path} records frame options that do not fit: {exc}") from None
    recorded_size = recorded.get("input_size")
    image_size = recorded_size[0] if recorded_size else recorded.get("image_size")
    spec = build_datasets(dataset, data_dir, image_size=image_size, events=events)
    for what, mine, theirs in (("in_channels", s["in_channels"], spec.in_channels),
                               ("num_classes", s["num_classes"], spec.num_classes)):  # fmt: skip
        if mine is not None and mine != theirs:
            raise ValueError(
                f"{'--dataset' if args.dataset else '--checkpoint'}: {dataset} has {what}={theirs}, "
                f"the model {mine}; measure it on the data set it was trained on"
            )
    for option, where, size in (("--input-size", "--input-size", args.input_size),
                                ("--checkpoint", f"the checkpoint {path}", recorded_size)):  # fmt: skip
        if size is not None and tuple(size) != spec.input_size:
            raise ValueError(
                f"{option}: {where} gives the input size {tuple(size)}, but {dataset} as rebuilt "
                f"gives {spec.input_size}; on data the data decide (add --random-input to measure "
                f"random input of another size)"
            )
    return dataset, data_dir, spec


def _validation_batches(
    args: argparse.Namespace, recorded: dict[str, Any], s: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The batches of the split the run validated on (:func:`_validation_data`), and what they
    are (for the header and the JSON): its test split in order, the first ``--batches`` batches
    of ``--batch-size``; a rate-coded model draws its Bernoulli spikes from a generator seeded
    with ``--seed``."""
    import itertools

    from torch.utils.data import DataLoader

    dataset, data_dir, spec = _validation_data(args, recorded, s)
    batch_size = args.batch_size or ENERGY_BATCH_SIZE
    loader = DataLoader(spec.test, batch_size=batch_size, shuffle=False, collate_fn=spec.collate_fn)
    wanted = ENERGY_BATCHES if args.batches is None else args.batches
    count = len(loader) if wanted == 0 else min(wanted, len(loader))
    images = min(count * batch_size, len(spec.test))
    batches: Any = itertools.islice(loader, count)
    coding = s["coding"]
    batches = (x for x, _ in batches)  # a rate-coded model draws its spikes itself (seeded)
    if not args.no_progress and sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm
        except ImportError:  # the bar comes with the train extra; measure without it
            pass
        else:
            batches = tqdm(batches, total=count, desc="energy", unit="batch", dynamic_ncols=True, leave=False)
    info = {
        "kind": "validation data",
        "dataset": dataset,
        "split": spec.test_split,
        "data_dir": None if data_dir is None else str(data_dir),
        "images": images,
        "of": len(spec.test),
        "batches": count,
        "batch_size": batch_size,
        "input_size": list(spec.input_size),
        "coding": coding,
    }
    return batches, info


def _random_input(
    args: argparse.Namespace, recorded: dict[str, Any], s: dict[str, Any], model: Any
) -> tuple[Any, dict[str, Any]]:
    """The seeded random input of ``gac-coding energy`` and what it is: random event frames for
    a model made for them (:attr:`gac_coding.models.ModelInfo.input_kind`) or ``--sequence``,
    else uniform images (which the model's encoder codes)."""
    import torch

    from ..models import model_info

    size = resolve_input_size(args.input_size, recorded, args.checkpoint, s["model"])
    sequence = model_info(s["model"]).input_kind == "events" if args.sequence is None else args.sequence
    gen = torch.Generator().manual_seed(args.seed)
    batch_size = args.batch_size or 1
    steps = getattr(model, "T", None)
    if sequence and (isinstance(steps, bool) or not isinstance(steps, int)):
        raise ValueError(
            f"--sequence: the model {s['model']!r} has no integer "
            f"attribute T (its number of time steps), so the sequence length is unknown"
        )
    T = int(steps) if isinstance(steps, int) else 0
    if sequence:
        shape = (T, batch_size, s["in_channels"], *size)
        x = torch.bernoulli(torch.full(shape, EVENT_DENSITY), generator=gen)
    else:
        x = torch.rand(batch_size, s["in_channels"], *size, generator=gen)
    info: dict[str, Any] = {"kind": "random event frames" if sequence else "random images"}
    info["shape"] = list(x.shape)
    if T and _coded_as(s["coding"], T):  # the steps a coding that draws spikes draws them over
        info["T"] = T
    return x, info


def _measured_on(info: dict[str, Any], s: dict[str, Any]) -> str:
    """The header line that says what ``gac-coding energy`` measured on."""
    if info["kind"] != "validation data":
        what = (
            f"event frames [T, B, C, H, W] (each pixel an event with probability {EVENT_DENSITY})"
            if info["kind"] == "random event frames"
            else "images [B, C, H, W], uniform in [0, 1)"
        )
        what += _coded_as(s["coding"], info.get("T", s["T"]))
        return f"measured on: random input {tuple(info['shape'])}, {what}, seeded"
    h, w = info["input_size"]
    folder = f" from {info['data_dir']}" if info["data_dir"] else ""
    return (
        f"measured on: {info['dataset']}{folder}, {info['split']} split (the run's validation "
        f"data), {info['images']} of {info['of']} images in {info['batches']} batch(es) of "
        f"{info['batch_size']}, input {s['in_channels']}x{h}x{w}{_coded_as(s['coding'], s['T'])}"
    )


def _coded_as(coding: str, T: object) -> str:
    """How the model's encoder turns images into spikes, for the header (codings that draw them)."""
    return {
        "rate": f", coded as Bernoulli spikes over T={T} steps",
        "latency": f", coded as spike times over T={T} steps",
    }.get(coding, "")


def run_energy_command(args: argparse.Namespace) -> int:
    """Run ``gac-coding energy``: build the model, load weights, report its energy.

    With a checkpoint, the model is measured on the split its run validated on
    (:func:`_validation_batches`: the data set, folder, input size and coding the checkpoint
    records), over ``--batches`` batches; ``--random-input``, or no checkpoint at all (an untrained
    model), measures it on a seeded random batch: uniform images (as Bernoulli spikes for the
    rate coding), or for ``--sequence`` (the default of the models made for event frames)
    ``T`` random binary event frames (each pixel an event with probability
    :data:`EVENT_DENSITY`). Firing rates, and so accumulates, depend on the data.
    """
    import torch

    from ..energy import calibrate_batchnorm, estimate_energy
    from ..models.checkpoints import load_weights, read_weights

    weights = read_weights(args.checkpoint) if args.checkpoint else None
    recorded = weights.settings if weights else {}
    s = model_settings(args, recorded, args.checkpoint)
    on_data = weights is not None and not args.random_input
    _check_energy_options(args, on_data)
    torch.manual_seed(args.seed)
    model = build_model(s)
    if hasattr(model.encoder, "generator"):  # a rate-coded model: seeded spikes
        model.encoder.generator = torch.Generator().manual_seed(args.seed)
    layout = load_weights(model, weights, model_name=s["model"]) if weights else None
    calibrated = False
    if on_data:
        data, info = _validation_batches(args, recorded, s)
        report = estimate_energy(model, data)
    else:
        x, info = _random_input(args, recorded, s, model)
        calibrated = weights is None and not args.no_calibrate
        if calibrated:
            calibrate_batchnorm(model, x)
        report = estimate_energy(model, x)
    if args.json:
        payload = report.to_dict()
        payload["model"] = s["model"]
        payload["input"] = info
        payload["checkpoint"] = {"path": args.checkpoint, "layout": layout}
        payload["batchnorm_calibrated"] = calibrated
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        if weights is not None:
            described = f"{args.checkpoint} ({layout} layout)"
        elif calibrated:
            described = "random init, BatchNorm statistics from the random batch"
        else:
            described = "random init"
        print(f"{s['model']}, weights: {described}")
        print(_measured_on(info, s))
        if weights is not None and not on_data:
            print("(random input: the firing rates, and so the accumulates, are not those of data)")
        print(report)
    return 0
