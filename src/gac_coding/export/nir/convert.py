"""``to_nir``: a model split into a host encoder and the NIR graph of its spiking backbone."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..._measure import measuring
from .graph import Builder
from .host import HostEncoder
from .neurons import NEURON_TYPES, SYNAPTIC_TYPES, check_dt, require_nir
from .simulator import simulate
from .trace import trace_shapes

__all__ = ["DEFAULT_DT", "NIRExport", "to_nir"]

DEFAULT_DT = 1e-4
"""Default integration step in seconds: the one SpikingJelly's importer defaults to and snnTorch's
importer assumes."""


@dataclass
class NIRExport:
    """Result of :func:`to_nir`.

    Attributes:
        host: :class:`HostEncoder`, input -> code ``[T, B, C, H, W]`` (what crosses to the chip).
        graph: the backbone as a ``nir.NIRGraph``; per-sample shapes; its ``Output`` gives the
            logits of each step.
        dt: the integration step the graph's time constants were written for.
        T: time steps of the host's code.
        input_shape, output_shape: per-sample shapes of the graph's input and output.
        sources: graph node -> qualified name of the model module it comes from.
        model_name: the model's registered name when known (``None`` otherwise).
    """

    host: HostEncoder
    graph: Any
    dt: float
    T: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    sources: dict[str, str] = field(default_factory=dict)
    model_name: str | None = None

    def run(self, x: Tensor) -> Tensor:
        """Per-step logits ``[T, B, ...]`` of the host followed by the graph (:func:`simulate`)."""
        with torch.no_grad():
            code = self.host(x)
        return simulate(self.graph, code, self.dt)[0]

    def summary(self, x: Tensor | None = None) -> dict[str, Any]:
        """Nodes per type, neurons, synaptic weights; with an input also the energy split."""
        counts: dict[str, int] = {}
        neurons = weights = 0
        for node in self.graph.nodes.values():
            kind = type(node).__name__
            counts[kind] = counts.get(kind, 0) + 1
            if kind in NEURON_TYPES:
                neurons += int(node.v_threshold.size)
            if kind in SYNAPTIC_TYPES:
                weights += int(node.weight.size)
        out: dict[str, Any] = {
            "nodes": dict(sorted(counts.items())),
            "edges": len(self.graph.edges),
            "neurons": neurons,
            "synapses": weights,
            "dt": self.dt,
            "T": self.T,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "code": "direct (real-valued U)"
            if self.host.direct
            else ("binary spikes" if self.host.binarize else "gated (graded spikes)"),
        }
        if x is not None:
            out.update(self.energy(x))
        return out

    def energy(self, x: Tensor) -> dict[str, float]:
        """Operations per image: host MACs (stem, its BatchNorm, attention) and chip operations.

        The chip's synaptic operations are counted from the graph's own run: a ``Conv2d``,
        ``Affine`` or ``Linear`` node fed binary spikes costs its exact synaptic operations
        (:func:`gac_coding.energy.exact_synops`), one fed real values (the membrane shortcut's
        1x1 convolution, the head after average pooling, a graded code) costs dense
        multiply-accumulates (``chip_mac``). Host counts are executed operations
        (:func:`gac_coding.energy.estimate_energy` of the host; the static fast path runs the stem
        once per image), and ``host_mac_norm`` the stem BatchNorm's affine MACs.
        """
        from ...energy import estimate_energy

        report = estimate_energy(self.host, x)
        B = int(report.totals["batch_size"])
        with torch.no_grad():
            code = self.host(x)
        _, ops = simulate(self.graph, code, self.dt, count_ops=True)
        return {
            "host_mac_per_image": report.totals["mac"] / B,
            "host_mac_paper_per_image": report.totals["mac_paper"] / B,
            "host_mac_norm_per_image": report.totals["mac_norm"] / B,
            "chip_synop_per_image": ops["synop"] / B,
            "chip_mac_per_image": ops["mac"] / B,
        }


def to_nir(
    model: nn.Module,
    example_input: Tensor,
    *,
    dt: float = DEFAULT_DT,
    binarize: bool | None = None,
) -> NIRExport:
    """Split ``model`` into a host encoder and a NIR graph of its spiking backbone.

    Args:
        model: an :class:`~gac_coding.models.MSResNet` (any registered MS-ResNet with
            ``coding="gac"`` or ``"direct"``) or a :class:`~gac_coding.GACNet` whose backbone is
            an ``nn.Sequential`` chain (or a framework's sequential container: Norse's ``SequentialState``,
            SpikingJelly's containers) of supported layers and neurons (see
            :mod:`gac_coding.export.nir`). Exported as in eval mode: BatchNorm uses its running
            statistics.
        example_input: an input the model accepts (``[B, C, H, W]`` or ``[T, B, C, H, W]``); it
            fixes the spatial size of the graph.
        dt: the integration step (seconds) the NIR time constants are written for.
        binarize: ``None`` keeps the encoder's setting; ``True`` sends binary spikes
            ``[gated > 0.5]`` to the chip, ``False`` the graded gated code.

    Returns:
        :class:`NIRExport` with ``host``, ``graph``, ``dt``.

    Example:
        >>> import torch
        >>> from gac_coding.models import create_model
        >>> from gac_coding.export import to_nir
        >>> model = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1).eval()
        >>> exp = to_nir(model, torch.rand(1, 1, 8, 8))
        >>> exp.input_shape, exp.output_shape
        ((16, 8, 8), (3,))
    """
    nir = require_nir()
    dt = _check_arguments(model, example_input, dt, binarize)
    host = _host(model, binarize)
    ref = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.float32
    T = host.T
    x, B = _traced_input(example_input, T)

    work: Any = model if binarize is None else _with_binarize(model, binarize)
    items, checked = _backbone_items(work)
    builder = Builder(nir, dt, dtype, {})
    builder.validate(checked)  # before the traced run, which an unsupported module may break
    host.eval()
    with measuring(work):
        code = host(x)
        builder.shapes = trace_shapes(work, x, T, B)
    in_shape = tuple(int(s) for s in code.shape[2:])
    metadata = {"dt": dt, "T": T, "producer": "gac-coding"}
    graph, y = builder.graph(in_shape, items, work, metadata)
    return NIRExport(
        host=host,
        graph=graph,
        dt=dt,
        T=T,
        input_shape=in_shape,
        output_shape=tuple(y.shape),
        sources=builder.sources,
    )


def _check_arguments(model: object, example_input: object, dt: object, binarize: object) -> float:
    """The argument checks of :func:`to_nir` that need no model type; returns ``dt``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an MSResNet or a GACNet, got {type(model).__name__}")
    if not isinstance(example_input, Tensor):
        raise TypeError(f"example_input: expected a torch.Tensor, got {type(example_input).__name__}")
    value = check_dt(dt)
    if binarize is not None and not isinstance(binarize, bool):
        raise TypeError(f"binarize: expected a bool or None, got {type(binarize).__name__}")
    return value


def _host(model: nn.Module, binarize: bool | None) -> HostEncoder:
    """The host encoder of an MS-ResNet or a GACNet; any other model raises ``TypeError``."""
    from ...adapters import GACNet
    from ...models.msresnet import MSResNet

    if isinstance(model, MSResNet):
        return HostEncoder(model.encoder, binarize=binarize, channels_last=model.channels_last)
    if isinstance(model, GACNet):
        return HostEncoder(model.encoder, binarize=binarize)
    raise TypeError(
        f"model: expected an MSResNet (gac_coding.models) or a GACNet (gac_coding.wrap), got "
        f"{type(model).__name__}"
    )


def _traced_input(example_input: Tensor, T: int) -> tuple[Tensor, int]:
    """``example_input`` repeated to a batch ``B = T + 1`` (a size that cannot be mistaken for
    ``T`` or ``T * B`` when the traced shapes are read), and ``B``."""
    B = T + 1
    static = example_input.dim() == 4
    batch_dim = 0 if static else 1
    if example_input.dim() not in (4, 5) or example_input.shape[batch_dim] < 1:
        raise ValueError(
            f"example_input: expected [B, C, H, W] or [T, B, C, H, W], got shape {tuple(example_input.shape)}"
        )
    idx = torch.arange(B, device=example_input.device) % example_input.shape[batch_dim]
    return example_input.index_select(batch_dim, idx), B


def _backbone_items(work: Any) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, nn.Module]]]:
    """The ``(name, module)`` items the graph is built from, and those to validate first."""
    from ...adapters import is_chain
    from ...models.msresnet import MSResNet

    if isinstance(work, MSResNet):
        items = [(f"stages.{s}", stage) for s, stage in enumerate(work.stages)]
        return items, [*items, ("head_lif", work.head_lif)]
    backbone = work.backbone
    if is_chain(backbone):
        items = [(f"backbone.{n}", m) for n, m in backbone.named_children()]
    else:
        items = [("backbone", backbone)]
    return items, items


def _with_binarize(model: nn.Module, binarize: bool) -> nn.Module:
    """A copy of ``model`` whose encoder emits (or not) binary spikes, for tracing shapes."""
    from ...coding import GACEncoder

    copied = copy.deepcopy(model)
    enc: Any = copied.encoder
    if isinstance(enc, GACEncoder):
        enc.binarize = binarize
    return copied
