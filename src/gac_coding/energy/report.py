"""The result of :func:`gac_coding.energy.estimate_energy`: per-layer counts and the totals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["COUNT_KEYS", "EnergyReport", "LayerEnergy"]


@dataclass
class LayerEnergy:
    """Counts and energy of one convolution or linear layer over the measured forward passes
    (every sample of every batch).

    Attributes:
        name: qualified module name in the model.
        kind: class name of the module.
        part: ``"encoder"`` (inside a :class:`~gac_coding.GACEncoder`) or ``"backbone"``.
        role: ``"stem"`` (the encoder's convolution, or the first layer of a model without one),
            ``"attention"`` (the encoder's temporal and spatial-channel attention) or
            ``"synaptic"`` (everything else: meant to be driven by spikes).
        calls: how many times the forward pass called the layer.
        input_shape: shape of the input of its first call.
        binary_input: whether every call received only zeros and ones. The encoder's attention
            layers always count as multiply-accumulates (docs/design/energy.md §1), even on an input that
            happens to be all zeros.
        firing_rate: fraction of non-zero input entries over all calls of all batches (the spike
            rate when binary): non-zero entries summed over the batches / entries summed over them.
        flops: dense multiply-accumulates of the executed calls.
        mac: executed multiply-accumulates (calls with a real-valued input).
        synop: executed exact synaptic operations (calls with a binary input).
        ac_paper: the paper's accumulates, ``FLOPs x input firing rate`` of the binary calls,
            times ``steps``.
        steps: how many of the paper's time steps one executed call stands for (``T`` for the
            stem and spatial-channel attention of a static-path encoder, else 1).
        mac_paper: ``mac x steps``, the paper's per-step multiply-accumulates.
        energy_mj: ``E_MAC x mac_paper + E_AC x ac_paper`` in mJ (the paper's accounting).
        energy_executed_mj: ``E_MAC x mac + E_AC x synop`` in mJ (what was executed, exact).
        spike_driven: ``False`` when a ``"synaptic"`` layer received a non-binary input: it does
            multiply-accumulates where the model should be spike-driven.
    """

    name: str
    kind: str
    part: str
    role: str
    calls: int = 0
    input_shape: tuple[int, ...] = ()
    binary_input: bool = True
    firing_rate: float = 0.0
    flops: int = 0
    mac: int = 0
    synop: int = 0
    ac_paper: float = 0.0
    steps: int = 1
    mac_paper: int = 0
    energy_mj: float = 0.0
    energy_executed_mj: float = 0.0
    spike_driven: bool = True
    _nonzero: int = field(default=0, repr=False)
    _elements: int = field(default=0, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the public fields."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["input_shape"] = list(self.input_shape)
        return d


COUNT_KEYS = ("flops", "mac", "synop", "ac_paper", "mac_paper", "energy_mj", "energy_executed_mj")


@dataclass
class EnergyReport:
    """Result of :func:`~gac_coding.energy.estimate_energy`.

    Attributes:
        layers: one :class:`LayerEnergy` per executed convolution or linear layer, in call order.
        totals: sums over the layers and run information. Counts are for every measured sample
            (the batch, or all batches together): ``flops``, ``mac``, ``synop`` (executed),
            ``mac_paper``, ``ac_paper`` (the paper's per-step accounting), ``mac_norm`` (the
            affine multiply-accumulates of BatchNorm, which the paper leaves out because BN folds
            into the preceding layer at inference; reported so that totals reconcile with
            counters that include them), ``energy_mj`` (paper), ``energy_executed_mj``
            (executed, exact synaptic operations), ``energy_mj_per_sample`` (``energy_mj /
            samples``), ``encoder_energy_mj``, ``backbone_energy_mj``, ``samples`` (how many
            samples the counts are for), ``batches`` (forward passes), ``batch_size`` (the same
            number as ``samples``), ``T``, ``e_mac_pj``, ``e_ac_pj``.
        non_spike_driven: names of the ``"synaptic"`` layers that received a non-binary input.

    Example:
        >>> import torch
        >>> from gac_coding.energy import estimate_energy
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        >>> r = estimate_energy(net, torch.rand(5, 4))
        >>> r.totals["mac"], r.non_spike_driven     # the second layer sees real values
        (90, ['1'])
    """

    layers: list[LayerEnergy]
    totals: dict[str, Any]
    non_spike_driven: list[str]

    def to_dict(self) -> dict[str, Any]:
        """``{"layers": [...], "totals": {...}, "non_spike_driven": [...]}``, JSON-ready."""
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": dict(self.totals),
            "non_spike_driven": list(self.non_spike_driven),
        }

    def part(self, name: str) -> dict[str, float]:
        """Sums of the counts over the layers of one part, ``"encoder"`` or ``"backbone"``."""
        if name not in ("encoder", "backbone"):
            raise ValueError(f"name: expected 'encoder' or 'backbone', got {name!r}")
        return {
            key: sum(getattr(layer, key) for layer in self.layers if layer.part == name) for key in COUNT_KEYS
        }

    def __str__(self) -> str:
        head = (
            f"{'layer':<34} {'role':<9} {'in':>3} {'rate':>6} {'MAC (paper)':>13} "
            f"{'SynOp exact':>13} {'AC (paper)':>13} {'E mJ':>10}"
        )
        lines = [head, "-" * len(head)]
        for layer in self.layers:
            name = layer.name if len(layer.name) <= 34 else "..." + layer.name[-31:]
            flag = "" if layer.spike_driven else "  <- not spike-driven"
            lines.append(
                f"{name:<34} {layer.role:<9} {'bin' if layer.binary_input else 'real':>3} "
                f"{layer.firing_rate:>6.3f} {layer.mac_paper:>13,} {layer.synop:>13,} "
                f"{layer.ac_paper:>13,.0f} {layer.energy_mj:>10.4g}{flag}"
            )
        t = self.totals
        lines.append("-" * len(head))
        measured = (
            f"batch {t['samples']}"
            if t["batches"] == 1
            else f"{t['samples']} samples in {t['batches']} batches"
        )
        lines.append(f"{measured}, T={t['T']}, E_MAC={t['e_mac_pj']} pJ, E_AC={t['e_ac_pj']} pJ")
        lines.append(
            f"paper accounting:  MAC {t['mac_paper']:,}  AC {t['ac_paper']:,.0f}  "
            f"energy {t['energy_mj']:.4g} mJ ({t['energy_mj_per_sample']:.4g} mJ per sample; "
            f"encoder {t['encoder_energy_mj']:.4g}, backbone {t['backbone_energy_mj']:.4g})"
        )
        lines.append(
            f"executed (exact):  MAC {t['mac']:,}  SynOp {t['synop']:,}  "
            f"energy {t['energy_executed_mj']:.4g} mJ  (BatchNorm affine MAC {t['mac_norm']:,}, "
            f"not in the energy)"
        )
        if self.non_spike_driven:
            lines.append(
                "not spike-driven (real-valued input to a synaptic layer): "
                + ", ".join(self.non_spike_driven)
            )
        else:
            lines.append("spike-driven: every synaptic layer after the stem receives binary spikes")
        return "\n".join(lines)
