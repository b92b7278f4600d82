"""NeuroBench on gac-coding models: a batch-first model with the library's neurons as activations.

NeuroBench (``pip install "gac-coding[bench]"``) feeds a model batch-first data, ``[B, C, H, W]``
images or ``[B, T, C, H, W]`` sequences, and compares its predictions with the targets.
gac-coding's models are time-major: they take ``[B, C, H, W]`` or ``[T, B, C, H, W]`` and return
logits ``[T, B, K]``. :class:`BatchFirst` turns one into the other, and :func:`neurobench_model`
gives NeuroBench's ``TorchModel`` of it, with the spiking layers as its activation modules:

* every neuron module that :func:`gac_coding.adapters.is_neuron` recognises (this library's
  :class:`~gac_coding.LIF`, the neurons of snnTorch, Norse, SpikingJelly);
* the :class:`~gac_coding.GACEncoder`, whose output ``sigmoid(TA * SCA) * S`` is non-zero exactly
  where its neuron fired (the gate is positive), so NeuroBench's activation sparsity counts the
  encoder's spikes.

NeuroBench's default activations (``nn.ReLU``, ``nn.Sigmoid``) are left out: the sigmoids of the
attention gate are not spiking layers. Its connection layers (``Conv*``, ``Linear``) are found by
NeuroBench itself.

How its counts relate to :func:`gac_coding.energy.estimate_energy` and
:func:`gac_coding.analysis.spike_counts` on the same data (tested; see the guide page
``docs/guide/neurobench.md``):

* ``SynapticOperations["Effective_ACs"]`` x samples equals ``report.totals["synop"]`` (the exact
  synaptic operations of the layers with binary input) when no weight is exactly zero (NeuroBench
  skips zero weights; the energy report counts every weight a spike reaches);
* ``Effective_MACs`` counts only the non-zero inputs of the layers with real-valued input, where
  ``report.totals["mac"]`` counts them densely, and ``Dense`` counts the taps that fall inside the
  input (padding excluded), where ``report.totals["flops"]`` counts every tap;
* ``ActivationSparsity`` is ``1 - mean_firing_rate`` over the layers above.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from torch import Tensor, nn

from ..adapters import is_neuron, reset_state
from ..coding import GACEncoder

__all__ = ["BatchFirst", "activation_types", "neurobench_model"]

_READOUTS = ("mean", "sum", "last")


class BatchFirst(nn.Module):
    """``model`` on batch-first input, returning batch-first logits ``[B, K]``.

    Args:
        model: a time-major model (a model of :func:`gac_coding.models.create_model`, a
            :class:`~gac_coding.GACNet`): ``[B, C, H, W]`` or ``[T, B, C, H, W]`` in,
            ``[T, B, K]`` out.
        readout: how the ``T`` steps of the logits become one prediction: ``"mean"`` (what
            the library's training and evaluation use), ``"sum"`` or ``"last"``.

    The input: a 4-dim ``[B, C, H, W]`` image batch goes to the model as it is (the encoder
    repeats it over its ``T`` steps); a 5-dim ``[B, T, C, H, W]`` sequence is transposed to
    ``[T, B, C, H, W]``. The state that other frameworks keep in their modules is reset before
    every call (this library's modules reset themselves).

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> net = BatchFirst(create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1))
        >>> net(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(self, model: nn.Module, *, readout: str = "mean") -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if readout not in _READOUTS:
            raise ValueError(f"readout: expected one of {', '.join(_READOUTS)}, got {readout!r}")
        self.model = model
        self.readout = readout

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 5:
            x = x.transpose(0, 1)  # [B, T, ...] -> [T, B, ...]
        elif x.dim() != 4:
            raise ValueError(
                f"x: expected a batch-first [B, C, H, W] image batch or [B, T, C, H, W] sequence, "
                f"got shape {tuple(x.shape)}"
            )
        reset_state(self.model)
        out = self.model(x)
        if not isinstance(out, Tensor) or out.dim() != 3:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"model: expected time-major logits [T, B, K], got {shape}")
        if self.readout == "mean":
            return out.mean(0)
        if self.readout == "sum":
            return out.sum(0)
        return out[-1]


def activation_types(model: nn.Module) -> list[type]:
    """The classes of ``model``'s spiking layers, as NeuroBench's activation modules take them:
    the neuron classes found in it (:func:`gac_coding.adapters.is_neuron`) and
    :class:`~gac_coding.GACEncoder` when it holds one, in the order first met.

    Example:
        >>> from gac_coding.models import create_model
        >>> [t.__name__ for t in activation_types(create_model("msresnet_tiny", T=2))]
        ['GACEncoder', 'LIF']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    found: list[type] = []
    for module in model.modules():
        if (isinstance(module, GACEncoder) or is_neuron(module)) and type(module) not in found:
            found.append(type(module))
    return found


def neurobench_model(model: nn.Module, *, readout: str = "mean") -> Any:
    """NeuroBench's ``TorchModel`` of ``BatchFirst(model, readout=readout)``, whose activation
    modules are ``model``'s spiking layers (:func:`activation_types`) instead of NeuroBench's
    defaults. Pass it to ``neurobench.benchmarks.Benchmark``. Puts ``model`` in eval mode (as
    ``TorchModel`` does).

    Raises:
        ImportError: NeuroBench is not installed (``pip install "gac-coding[bench]"``).
        ValueError: ``model`` has no spiking layer (NeuroBench's activation sparsity would be 0).
    """
    if importlib.util.find_spec("neurobench") is None:
        raise ImportError(
            'neurobench_model needs NeuroBench, which is not installed: pip install "gac-coding[bench]"'
        )
    from neurobench.models import TorchModel

    types = activation_types(model)
    if not types:
        raise ValueError(
            "model: no spiking layer found (no GACEncoder and no neuron of a registered framework)"
        )
    wrapped = TorchModel(BatchFirst(model, readout=readout))
    wrapped.activation_modules = list(types)
    return wrapped
