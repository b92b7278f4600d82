"""gac-coding: Gated Attention Coding (Qiu et al., AAAI 2024) for spiking neural networks.

``import gac_coding`` needs torch alone; snnTorch, Norse and SpikingJelly are imported only when an
adapter for them is used.
"""

from __future__ import annotations

from ._version import __version__
from .adapters import GACNet, set_memory, wrap
from .attention import GatedAttentionUnit, SpatialChannelAttention, TemporalAttention
from .coding import GACEncoder
from .neuron import LIF, RECIPES

__all__ = [
    "GACEncoder",
    "GACNet",
    "GatedAttentionUnit",
    "LIF",
    "RECIPES",
    "SpatialChannelAttention",
    "TemporalAttention",
    "__version__",
    "set_memory",
    "wrap",
]
