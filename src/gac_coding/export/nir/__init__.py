"""The spiking backbone as a NIR graph, the GAC encoder on the host.

NIR (the Neuromorphic Intermediate Representation) describes a network as continuous-time nodes
joined by identity edges; several edges into one node are summed. It has no BatchNorm, sigmoid or
product, and GAC's gate ``sigmoid(TA * SCA) * S`` pools over all ``T`` steps, so the encoder stays
on the host (:class:`HostEncoder`: input -> the code ``[T, B, C, H, W]`` that crosses to the chip)
and the backbone becomes the graph.

**Neurons.** A NIR ``LIF`` integrated by forward Euler at the step ``dt`` reads

    v <- v + dt/tau * ((v_leak - v) + r * I);  z = [v > v_threshold];  v <- v_reset where z

With ``dt/tau = 1 - decay``, ``r = tau/dt = 1/(1 - decay)``, ``v_leak = v_reset = 0`` this is
``v <- decay * v + I`` followed by the hard reset to 0: the library's
``v_t = decay v_{t-1} (1 - s_{t-1}) + x_t``. Each framework maps its own neurons, in its module of
:mod:`gac_coding.adapters` (``Framework.nir_node``; the module docstrings give the equations):
:class:`gac_coding.LIF` (:mod:`~gac_coding.adapters.plain`), snnTorch's ``Leaky``
(:mod:`~gac_coding.adapters.snntorch`), SpikingJelly's ``LIFNode`` and ``IFNode``
(:mod:`~gac_coding.adapters.spikingjelly`), Norse's ``LIFCell``, ``LIF`` and ``LIFBoxCell`` as
``CubaLIF`` or ``LIF`` (:mod:`~gac_coding.adapters.norse`). What NIR cannot express exactly (soft
resets, a non-zero resting membrane...) raises an error naming the setting.

**Firing at the threshold.** NIR, this library, snnTorch and Norse fire when ``v > threshold``;
SpikingJelly fires when ``v >= threshold``. A SpikingJelly backbone is exported with its threshold
unchanged, so the two differ only when a membrane lands exactly on the threshold.

**Layers** (:mod:`.graph`). ``Conv2d`` and ``Linear`` (``Affine`` or ``Linear``) with an eval-mode
``BatchNorm`` right after them folded in (weights and bias from the running statistics); ``Flatten``
with per-sample dimensions (NIR's shapes carry no batch or time dimension); average pooling as
``AvgPool2d`` without padding; MS-ResNet's membrane shortcut as several edges into the nodes that
read the block's output (the sum of the residual branch and the shortcut is the input current of
the next neurons); the head's global average pool as ``AvgPool2d`` over the whole map, ``Flatten``
and ``Affine``. The graph's ``Output`` gives the logits of every step; their mean over time stays
on the host. Anything else raises an error naming the module and its type.

Every parameter is written in the model's dtype (a float64 model gives float64 arrays).

The package: :mod:`.host` (the host encoder), :mod:`.neurons` (the neuron nodes, asked of the
frameworks), :mod:`.trace` (per-sample shapes), :mod:`.graph` (the builder), :mod:`.convert`
(:func:`to_nir`, :class:`NIRExport`), :mod:`.simulator` (:func:`simulate`), :mod:`.files` (writing
and reading an export). ``nir`` itself is imported when an export runs.
"""

from __future__ import annotations

from .convert import DEFAULT_DT, NIRExport, to_nir
from .files import load_host, save_nir_export
from .host import HostEncoder
from .simulator import simulate

__all__ = [
    "DEFAULT_DT",
    "HostEncoder",
    "NIRExport",
    "load_host",
    "save_nir_export",
    "simulate",
    "to_nir",
]
