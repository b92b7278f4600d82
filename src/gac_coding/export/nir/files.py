"""The files of an export: ``backbone.nir`` (the graph), ``host.safetensors`` and ``host.json``
(the host encoder and how to rebuild it), written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...io import atomic_write, save_safetensors
from .convert import NIRExport
from .host import HostEncoder
from .neurons import require_nir

__all__ = ["load_host", "save_nir_export"]


def save_nir_export(exp: NIRExport, out: str | os.PathLike[str], config: dict[str, Any]) -> dict[str, Path]:
    """Write ``backbone.nir``, ``host.safetensors`` and ``host.json`` (``config`` + export facts) to ``out``.

    ``config`` must say how to rebuild the host's model (``create_model`` arguments); see
    :func:`load_host`.
    """
    nir = require_nir()

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "graph": folder / "backbone.nir",
        "weights": folder / "host.safetensors",
        "config": folder / "host.json",
    }
    tmp = folder / ".backbone.nir.tmp"
    try:
        nir.write(tmp, exp.graph)
        os.replace(tmp, paths["graph"])
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves no half-written file behind
        raise
    save_safetensors(exp.host.state_dict(), paths["weights"])
    payload = dict(config)
    payload.update(
        dt=exp.dt,
        T=exp.T,
        binarize=exp.host.binarize,
        direct=exp.host.direct,
        channels_last=exp.host.channels_last,
        code_shape=list(exp.input_shape),
        output_shape=list(exp.output_shape),
    )
    text = json.dumps(payload, indent=2) + "\n"
    atomic_write(paths["config"], lambda fh: fh.write(text.encode()))
    return paths


def load_host(folder: str | os.PathLike[str]) -> HostEncoder:
    """Rebuild the :class:`HostEncoder` written by :func:`save_nir_export` (``gac-coding export``),
    with the encoder options (``temporal_attention``, ``ta_bias``, ``ta_activation``, ``ta_source``,
    ``gate``) recorded under ``encoder_options`` in ``host.json``."""
    from safetensors.torch import load_file

    from ...models import create_model

    folder = Path(folder)
    config = json.loads((folder / "host.json").read_text())
    options = config.get("encoder_options") or {}  # a GAC encoder's variant (none: the paper's)
    model = create_model(
        config["model"], num_classes=config.get("num_classes"), T=config["T"],
        coding="direct" if config["direct"] else "gac", in_channels=config["in_channels"], **options,
    )  # fmt: skip
    host = HostEncoder(
        model.encoder,  # type: ignore[arg-type]
        binarize=None if config["direct"] else bool(config["binarize"]),
        channels_last=bool(config["channels_last"]),
    )
    host.load_state_dict(load_file(str(folder / "host.safetensors")))
    return host.eval()
