"""Running statistics of a GAC encoder's gate: does the gate do anything? (docs/design/encoder.md §8).

:class:`GateStatistics` accumulates them over a :class:`~gac_coding.GACEncoder`'s eval-mode calls,
as tensors on the gate's device; :meth:`GACEncoder.gate_statistics
<gac_coding.GACEncoder.gate_statistics>` and :func:`gac_coding.analysis.gate_statistics` read them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["CONSTANT_GATE_TOLERANCE", "GateStatistics"]

#: Spread (``gate_max - gate_min``) at or below which :class:`GateStatistics` calls a gate
#: constant, and mean spread over time at or below which it calls it constant over time. A dead
#: temporal attention gives exactly 0; float32's resolution near 0.5 is 6e-8.
CONSTANT_GATE_TOLERANCE = 1e-6


def _memory_order(g: Tensor) -> Tensor:
    """``g [T, B, ...]`` with the dimensions after the first two permuted into the order they have
    in memory (a channels-last gate becomes ``[T, B, H, W, C]``), made contiguous where that does
    not do it: the reductions below then read memory in order."""
    strides = g.stride()
    rest = sorted(range(2, g.dim()), key=lambda d: -strides[d])
    g = g.permute(0, 1, *rest)
    return g if g.is_contiguous() else g.contiguous()


class GateStatistics:
    """Running diagnostics of an encoder's gate over the calls since the last :meth:`reset`
    (:class:`~gac_coding.GACEncoder` adds its eval-mode calls).

    Each :meth:`update` (one forward pass) adds, weighted by its batch size ``B``: the fraction of
    temporal-attention scores that are exactly 0 (``ta_zero_fraction``), the gate's mean
    (``gate_mean``), its spread over time (``gate_time_std``: the standard deviation over the ``T``
    steps of each gate value, averaged over samples and positions) and over space
    (``gate_space_std``: the standard deviation over ``C, H, W`` of each step's map, averaged over
    steps and samples), and keeps the smallest and largest gate value. The sums stay tensors on the
    gate's device: an update makes no host synchronisation; :meth:`read` does (once).
    Definitions and what the numbers mean: docs/design/encoder.md §8.

    Example:
        >>> import torch
        >>> from gac_coding.coding.gate_stats import GateStatistics
        >>> stats = GateStatistics()
        >>> stats.update(torch.full((4, 2, 3, 5, 5), 0.5), torch.zeros(4, 2))   # a dead gate
        >>> r = stats.read()
        >>> r["ta_zero_fraction"], r["gate_mean"], r["constant"], r["samples"]
        (1.0, 0.5, True, 2)
    """

    #: the averaged statistics, in the order :meth:`read` lists them
    KEYS: tuple[str, ...] = ("ta_zero_fraction", "gate_mean", "gate_time_std", "gate_space_std")

    def __init__(self) -> None:
        self._sums: Tensor | None = None
        self._low: Tensor | None = None
        self._high: Tensor | None = None
        self.samples = 0
        self.calls = 0

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.__init__()  # type: ignore[misc]

    @torch.no_grad()
    def update(self, gate: Tensor, ta: Tensor) -> None:
        """Add one call's gate ``[T, B, ...]`` and temporal attention ``[T, B]``."""
        if gate.dim() < 3 or ta.dim() != 2 or tuple(gate.shape[:2]) != tuple(ta.shape):
            raise ValueError(
                f"gate, ta: expected [T, B, ...] and [T, B], got {tuple(gate.shape)} and {tuple(ta.shape)}"
            )
        g = _memory_order(gate.detach())
        if g.dtype not in (torch.float32, torch.float64):
            g = g.float()
        T, B = int(ta.shape[0]), int(ta.shape[1])
        g = g.view(T, B, -1)  # the positions C, H, W in memory order: none of the figures depends on it
        # two-pass deviations, a step at a time through one reused buffer (torch's std and norm over
        # the outer dimension are slow on the CPU; fresh buffers cost page faults; a single-pass
        # E[x^2] - E[x]^2 would not give 0 for a constant gate)
        over_time = g[0].clone()
        for t in range(1, T):
            over_time += g[t]
        over_time /= T  # the mean over the steps, [B, N]
        step = torch.sub(g[0], over_time)
        spread = step.square()
        for t in range(1, T):
            torch.sub(g[t], over_time, out=step)
            spread.addcmul_(step, step)
        step_mean = g.mean(dim=2, keepdim=True)  # [T, B, 1]
        space = torch.empty((T, B), dtype=g.dtype, device=g.device)
        for t in range(T):  # the norm of each map's deviations, then / sqrt(N): its std
            torch.linalg.vector_norm(torch.sub(g[t], step_mean[t], out=step), dim=-1, out=space[t])
        space /= g.shape[2] ** 0.5
        values = (
            torch.stack(
                [
                    (ta.detach() == 0).to(g.dtype).mean(),
                    over_time.mean(),
                    spread.div_(T).sqrt_().mean(),
                    space.mean(),
                ]
            ).double()
            * B
        )
        low, high = (v.double() for v in torch.aminmax(g))
        if self._sums is None or self._low is None or self._high is None:
            self._sums, self._low, self._high = values, low, high
        else:
            device = values.device
            self._sums = self._sums.to(device) + values
            self._low = torch.minimum(self._low.to(device), low)
            self._high = torch.maximum(self._high.to(device), high)
        self.samples += B
        self.calls += 1

    def read(self) -> dict[str, Any] | None:
        """The statistics since the last reset (``None`` if nothing was recorded): the four
        averages of :attr:`KEYS`, ``gate_min``, ``gate_max``, ``samples``, ``calls``, and two flags:
        ``constant`` (``gate_max - gate_min <= CONSTANT_GATE_TOLERANCE``: the gate is one number
        everywhere) and ``constant_over_time`` (``gate_time_std <= CONSTANT_GATE_TOLERANCE``)."""
        if self._sums is None or self._low is None or self._high is None:
            return None
        means = (self._sums / self.samples).tolist()
        stats: dict[str, Any] = dict(zip(self.KEYS, means, strict=True))
        stats["gate_min"] = float(self._low)
        stats["gate_max"] = float(self._high)
        stats["samples"] = self.samples
        stats["calls"] = self.calls
        stats["constant"] = stats["gate_max"] - stats["gate_min"] <= CONSTANT_GATE_TOLERANCE
        stats["constant_over_time"] = stats["gate_time_std"] <= CONSTANT_GATE_TOLERANCE
        return stats
