"""The model card (``README.md``) of a folder written by :func:`gac_coding.models.save_pretrained`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["model_card"]

# the energy report's totals shown as a table above its full text (when the report has them)
_ENERGY_TOTALS = (
    ("energy_mj_per_sample", "energy per sample, mJ (the paper's accounting)"),
    ("energy_mj", "energy of all measured samples, mJ"),
    ("energy_executed_mj", "energy as executed, mJ"),
    ("samples", "samples measured"),
    ("T", "time steps"),
)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _settings(config: Mapping[str, Any]) -> list[str]:
    rows = [
        ("model", f"`{config['model']}`"),
        ("input coding", config["coding"]),
        ("time steps T", config["T"]),
        ("classes", config["num_classes"]),
        ("input", f"{config['in_channels']} x {config['input_size'][0]} x {config['input_size'][1]} "
                  f"({config['input_kind']})"),
        ("recipe", config["recipe"]),
        ("temporal attention", config["temporal_attention"]),
        ("other create_model arguments", ", ".join(f"`{k}={v!r}`" for k, v in config["kwargs"].items())),
        ("weights", f"{config['dtype']}, safetensors"),
    ]  # fmt: skip
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | {_number(value)} |" for name, value in rows if value not in (None, "")]
    return lines


def _energy(energy: Any) -> list[str]:
    totals = getattr(energy, "totals", None)
    lines = ["## Energy", ""]
    if isinstance(totals, Mapping):
        lines += ["| quantity | value |", "|---|---|"]
        lines += [f"| {label} | {_number(totals[key])} |" for key, label in _ENERGY_TOTALS if key in totals]
        lines.append("")
    lines += ["```text", str(energy).rstrip(), "```", ""]
    return lines


def model_card(
    config: Mapping[str, Any],
    *,
    metrics: Mapping[str, Any] | None = None,
    energy: Any = None,
    description: str | None = None,
) -> str:
    """The ``README.md`` text: a YAML header for the Hub, the settings, how to load the model, the
    ``metrics`` (a table) and the ``energy`` report (its totals and its text) when given."""
    if metrics is not None and not isinstance(metrics, Mapping):
        raise TypeError(f"metrics: expected a mapping of names to values, got {type(metrics).__name__}")
    title = f"{config['model']}, {config['coding']} coding, T={config['T']}"
    lines = [
        "---",
        "library_name: gac-coding",
        "tags:",
        "- spiking-neural-networks",
        "- gated-attention-coding",
        "- pytorch",
        "---",
        "",
        f"# {title}",
        "",
        "A spiking neural network saved by gac-coding "
        f"{config['gac_coding_version']} (`save_pretrained`): `model.safetensors` holds the weights, "
        "`config.json` what rebuilds the model.",
        "",
    ]
    if description:
        lines += [description.strip(), ""]
    lines += ["## Settings", "", *_settings(config), ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from gac_coding.models import from_pretrained",
        "",
        'model = from_pretrained("path/to/this/folder")  # or the Hub repository id',
        "logits = model(images)  # [T, B, classes]; predict with logits.mean(0).argmax(-1)",
        "```",
        "",
    ]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_number(value)} |" for name, value in metrics.items()]
        lines.append("")
    if energy is not None:
        lines += _energy(energy)
    return "\n".join(lines)
