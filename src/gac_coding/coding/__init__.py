"""Every input coding behind one interface, and one factory.

An encoder turns an image batch ``[B, C_in, H, W]`` (or a frame sequence ``[T, B, C_in, H, W]``)
into the code ``[T, B, C, H', W']`` that a spiking backbone receives. Each is a
:class:`StemEncoder` (a convolution and BatchNorm, the stem, plus its own step) and owns ``T``
(:meth:`StemEncoder.set_timesteps`). The codings, by their names in :data:`CODINGS`:

* ``"direct"``: :class:`DirectEncoder`, the stem's output ``U`` at every step;
* ``"rate"``: :class:`RateEncoder`, the stem on Bernoulli spikes drawn per step from the pixel
  intensities (Poisson rate coding);
* ``"latency"``: :class:`LatencyEncoder`, the stem on one spike per pixel, brighter pixels earlier;
* ``"gac"``: :class:`GACEncoder`, Gated Attention Coding: the spikes of ``U`` gated by temporal and
  spatial-channel attention (the paper's subject).

:func:`make_encoder` builds one by name; the models (``create_model(name, coding=...)``),
:func:`gac_coding.wrap` and the training loop (``TrainConfig(coding=...)``) take the same names.
A new coding is one module here holding a :class:`StemEncoder` subclass decorated with
:func:`register_coding`, and one import line below.

Example:
    >>> import torch
    >>> from gac_coding.coding import CODINGS, make_encoder
    >>> list(CODINGS)
    ['direct', 'rate', 'latency', 'gac']
    >>> x = torch.rand(2, 1, 8, 8)
    >>> [tuple(make_encoder(name, 1, 4, T=3)(x).shape) for name in CODINGS]
    [(3, 2, 4, 8, 8), (3, 2, 4, 8, 8), (3, 2, 4, 8, 8), (3, 2, 4, 8, 8)]
"""

from __future__ import annotations

from .base import StemEncoder, check_image_input
from .registry import CODINGS, check_coding, make_encoder, register_coding

# the codings, in the order the tables list them: each module registers its encoder on import
# isort: off
from .direct import DirectEncoder
from .rate import RateEncoder, rate_encode
from .latency import LatencyEncoder, latency_encode
from .gac import GACEncoder

# isort: on

__all__ = [
    "CODINGS",
    "DirectEncoder",
    "GACEncoder",
    "LatencyEncoder",
    "RateEncoder",
    "StemEncoder",
    "check_coding",
    "check_image_input",
    "latency_encode",
    "make_encoder",
    "rate_encode",
    "register_coding",
]
