"""The encoder of a backbone, built from the model's coding, recipe and encoder settings.

Internal to :mod:`gac_coding.models` (MS-ResNet and VGG build their stems here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..coding import CODINGS, StemEncoder, make_encoder
from ..coding.registry import coding_from_gac_flag

__all__ = ["build_encoder", "builder_coding"]


def build_encoder(
    coding: str,
    in_channels: int,
    out_channels: int,
    T: int,
    kernel_size: int,
    stride: int,
    padding: int,
    *,
    neuron: Mapping[str, Any],
    temporal_attention: str | None,
    encoder_kwargs: Mapping[str, Any] | None,
) -> StemEncoder:
    """``make_encoder(coding, ...)`` with the stem geometry, the recipe's ``neuron`` settings for a
    coding that has a neuron, ``temporal_attention`` when given, and ``encoder_kwargs``. A
    setting given twice, or one the coding does not have, raises ``TypeError``."""
    settings: dict[str, Any] = {"kernel_size": kernel_size, "stride": stride, "padding": padding}
    if CODINGS[coding].takes_neuron:
        settings.update(neuron)
    extra = dict(encoder_kwargs or {})
    if temporal_attention is not None:
        if "temporal_attention" in extra:
            raise TypeError(
                "temporal_attention: given both as an argument and in encoder_kwargs; give it once"
            )
        extra["temporal_attention"] = temporal_attention
    twice = sorted(set(settings) & set(extra))
    if twice:
        raise TypeError(
            f"encoder_kwargs: {twice} are set by the model (the stem geometry, or the recipe's neuron "
            f"settings; change the recipe or backend= instead)"
        )
    return make_encoder(coding, in_channels, out_channels, T, **settings, **extra)


def builder_coding(coding: str, gac: bool | None) -> str:
    """A model builder's coding, given the deprecated ``gac`` flag (one warning, pointing at the
    builder's caller)."""
    return coding_from_gac_flag(coding, gac, "model builder (gac=...)", stacklevel=3)
