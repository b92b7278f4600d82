"""Distributed plumbing: one process on CPU/GPU, or many under ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; when they
are present :func:`setup` joins the process group (NCCL on CUDA, gloo on CPU) and pins each process
to ``cuda:LOCAL_RANK``. Only rank 0 writes files; metrics are summed over ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["DistContext", "ShardSampler", "all_reduce_sum", "on_rank0", "setup", "teardown"]

T_ = TypeVar("T_")


@dataclass
class DistContext:
    """Where this process runs: its rank, the number of processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only process that writes files and logs."""
        return self.rank == 0


def _resolve_device(device: str | torch.device | None, local_rank: int, launched: bool) -> torch.device:
    if device is None or str(device) == "":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected e.g. 'cpu', 'cuda' or 'cuda:1', got {device!r}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} was asked for but CUDA is not available")
        if launched and dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def setup(device: str | torch.device | None = None) -> DistContext:
    """Join the ``torchrun`` process group if launched by it; pick this process's device."""
    launched = "WORLD_SIZE" in os.environ and "RANK" in os.environ
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if launched else 1
    rank = int(os.environ.get("RANK", "0")) if launched else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if launched else 0
    dev = _resolve_device(device, local_rank, launched)
    initialized_here = False
    if world_size > 1 and not (dist.is_available() and dist.is_initialized()):
        if not dist.is_available():  # pragma: no cover - torch builds without distributed
            raise RuntimeError("this torch build has no torch.distributed; cannot use torchrun")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        initialized_here = True
    elif dev.type == "cuda":
        torch.cuda.set_device(dev)
    return DistContext(rank, world_size, local_rank, dev, initialized_here)


def teardown(ctx: DistContext) -> None:
    """Leave the process group joined by :func:`setup`."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Sum a few numbers over all ranks (float64); a no-op in a single process."""
    if not ctx.distributed:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu().tolist()]


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


def gather_object(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, indexed by rank, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def on_rank0(ctx: DistContext, fn: Callable[[], T_]) -> T_:
    """Run ``fn`` on rank 0 only and share its result, or the exception it raised, with all ranks.

    Every rank then returns the same value or raises the same exception, so a check that fails on
    rank 0 (a bad ``--out``, an unreadable checkpoint) stops all processes instead of hanging them.
    """
    result: Any = None
    error: BaseException | None = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            error = exc
    if ctx.distributed:
        result, error = broadcast_object(ctx, (result, error))
    if error is not None:
        raise error
    return result


def barrier(ctx: DistContext) -> None:
    """Wait for all ranks (no-op in a single process)."""
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` in order: every sample evaluated exactly once."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = int(length), int(rank), int(world_size)

    def __iter__(self):  # type: ignore[override]
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))
