"""The training loop behind ``gac-coding train`` (recipes: docs/design/recipes.md §4).

SGD with momentum 0.9 and cosine annealing (stepped once per epoch), cross-entropy on the
time-averaged logits or TET, optional label smoothing and CutMix, automatic mixed precision on CUDA
(bf16 where supported, else fp16 with a gradient scaler), and DistributedDataParallel under
``torchrun``. Every epoch rank 0 appends a line to ``metrics.jsonl`` and writes ``last.pt``,
``best.pt`` (when the test accuracy improves) and ``model.safetensors`` atomically.

``resume=True`` restores the model, optimizer, scheduler, grad scaler, every random state and the
data-order generator from ``last.pt``: on CPU with the same seed the continued run reproduces the
metrics of an uninterrupted one exactly (all but the wall-clock ``seconds``).

``backend`` sets the backend of every neuron of the model (:mod:`gac_coding.ops.backends`;
``"auto"``, the default, leaves the model's own settings). The backend the neurons run on is
printed at the start and recorded in the checkpoints' ``config`` as ``backend_used``.

``memory`` is what a training step keeps for its backward pass (:mod:`gac_coding.ops.memory`):
``"default"``, ``"lean"`` or ``"checkpoint"``; the same numbers in every mode. It is printed at the
start and recorded in the checkpoints' ``config``.

``stop_after=N`` ends the run normally after epoch ``N`` of the ``epochs``-long schedule (files
written as usual), for jobs with a time limit: a later ``resume=True`` run continues from epoch
``N + 1`` as if nothing had happened. ``N`` must lie in ``[1, epochs]``.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from ..adapters.memory import set_memory
from ..io import settings_metadata
from ..ops import backends
from . import distributed as dist_utils
from .augment import MixedTarget, cutmix
from .checkpoint import capture_rng_state, restore_rng_state
from .config import CODINGS, TrainConfig, saved_coding
from .data import DataSpec, build_datasets
from .losses import spike_loss
from .rundir import CHECKPOINT_FORMAT, RUN_FILES, prepare_out, truncate_metrics, write_epoch_files

__all__ = [
    "CODINGS",
    "CHECKPOINT_FORMAT",
    "RUN_FILES",
    "FitResult",
    "TrainConfig",
    "fit",
    "saved_coding",
    "seed_everything",
]

ModelFactory = Callable[..., nn.Module]
Logger = Callable[[str], None]


@dataclass
class FitResult:
    """What :func:`fit` returns: per-epoch metrics (all epochs, resumed ones included)."""

    history: list[dict[str, Any]]
    best_val_acc: float
    model: nn.Module
    data: DataSpec
    out: Path | None


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) global random generators."""
    import numpy as np  # the train extra's; local so that the CLI starts without it

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ model creation
def default_model_factory() -> tuple[ModelFactory, list[str]]:
    """``gac_coding.models.create_model`` and the names it knows."""
    from ..models import create_model, list_models

    return create_model, list(list_models())


def check_model_name(name: str, known: Iterable[str]) -> None:
    """Raise ``ValueError`` for a model name the registry does not know."""
    known = list(known)
    if name not in known:
        raise ValueError(f"model: unknown model {name!r}; expected one of {known}")


# ---------------------------------------------------------------------------------- progress
def _use_bars(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty()


def _bar(iterable: Iterable[Any], enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, **kwargs)


# --------------------------------------------------------------------------------------- fit
def _replan_cosine(
    scheduler: torch.optim.lr_scheduler.CosineAnnealingLR, optimizer: torch.optim.Optimizer, epochs: int
) -> None:
    """Stretch a cosine schedule to ``epochs`` in total, keeping the epochs already done."""
    scheduler.T_max = epochs
    done = scheduler.last_epoch
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = (
            scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * done / epochs)) / 2
        )
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def backend_used(model: nn.Module, device: torch.device, amp_dtype: torch.dtype | None = None) -> str:
    """The backend(s) the neurons of ``model`` run on for the run's compute dtype, comma-separated
    (``"none"`` for a model without the library's neurons), checked ready: the C++ kernels are
    built here if they are chosen, and a setting that cannot run here raises now."""
    dtype = amp_dtype
    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    used = backends.module_backends(model, device, dtype, check=True).values()
    return ", ".join(sorted(set(used))) or "none"


def _amp_setup(config: TrainConfig, device: torch.device, log: Logger) -> tuple[torch.dtype | None, bool]:
    if not config.amp:
        return None, False
    if device.type != "cuda":
        log(f"amp: mixed precision runs on CUDA only; training in float32 on {device}")
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def _batches(loader: DataLoader, device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    non_blocking = device.type == "cuda"
    for x, y in loader:
        yield x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    config: TrainConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> tuple[float, float, float]:
    """``(loss_sum, correct, count)`` of ``model`` over ``loader`` (time-averaged logits)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )
    with torch.no_grad(), autocast:
        for x, y in _batches(loader, device):
            logits = model(x).float()
            mean = logits.mean(0)
            loss_sum += nn.functional.cross_entropy(mean, y, reduction="sum").double()
            correct += (mean.argmax(1) == y).sum().double()
            count += y.shape[0]
    return float(loss_sum), float(correct), float(count)


def fit(
    config: TrainConfig,
    *,
    log: Logger | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    model_factory: ModelFactory | None = None,
    data: DataSpec | None = None,
) -> FitResult:
    """Train ``config.model`` on ``config.dataset``; see the module docstring.

    Args:
        config: the run (validated first).
        log: where rank 0's plain log lines go (default: ``print``).
        on_epoch_end: called on every rank with each epoch's metrics after they are saved.
        model_factory: ``create_model``-like callable; default is ``gac_coding.models``' registry.
        data: an already built :class:`DataSpec` (default: built from ``config.dataset``).

    Example:
        >>> from gac_coding.train import TrainConfig, fit
        >>> config = TrainConfig(model="msresnet_tiny", dataset="digits", T=2, epochs=1,
        ...                      batch_size=256, lr=0.1, progress=False, device="cpu")
        >>> result = fit(config, log=lambda line: None)     # out=None: no files written
        >>> result.history[0]["epoch"], 0.0 <= result.history[0]["val_acc"] <= 1.0
        (1, True)
    """
    config.validate()
    ctx = dist_utils.setup(config.device)
    try:
        return _fit(ctx, config, log, on_epoch_end, model_factory, data)
    finally:
        dist_utils.teardown(ctx)


@dataclass
class _Run:
    """What one training run holds while it trains (built by :func:`_build`)."""

    ctx: dist_utils.DistContext
    config: TrainConfig
    spec: DataSpec
    model: nn.Module
    train_model: nn.Module  # the model, or (set after resuming) its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.CosineAnnealingLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    data_gen: torch.Generator
    run_config: dict[str, Any]
    say: Logger
    out: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -1.0
    start_epoch: int = 1


def _datasets(ctx: dist_utils.DistContext, config: TrainConfig) -> DataSpec:
    """The data sets of ``config``. Event data sets under torchrun: rank 0 computes and caches the
    frames while the other ranks wait, then every rank reads the cache (each computing them on
    its own would do the work once per rank)."""

    def build(build_cache: bool) -> DataSpec:
        return build_datasets(
            config.dataset,
            config.data_dir,
            image_size=config.image_size,
            events=config.frame_options(),
            build_cache=build_cache,
        )

    if not (ctx.distributed and config.frame_options() is not None):
        return build(True)
    built: list[DataSpec] = []  # rank 0's data sets, kept: no second pass over the files

    def cache_frames() -> None:
        built.append(build(True))

    dist_utils.on_rank0(ctx, cache_frames)  # its exception, if any, reaches every rank
    return built[0] if built else build(False)


def _fit(
    ctx: dist_utils.DistContext,
    config: TrainConfig,
    log: Logger | None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None,
    model_factory: ModelFactory | None,
    data: DataSpec | None,
) -> FitResult:
    def say(msg: str) -> None:
        if ctx.is_main:
            (log or (lambda m: print(m, flush=True)))(msg)

    if model_factory is None:
        model_factory, known = default_model_factory()
        check_model_name(config.model, known)
    ckpt = dist_utils.on_rank0(ctx, lambda: prepare_out(config))  # before scanning any data
    spec = data if data is not None else _datasets(ctx, config)
    if ckpt is not None:
        _check_resumed_data(ckpt, config, spec)
    run = _build(ctx, config, spec, model_factory, say)
    if ckpt is not None:
        _resume(run, ckpt)
    if ctx.distributed:  # wraps the resumed weights
        run.train_model = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    train_sampler, train_loader, test_loader = _loaders(run)

    bars = ctx.is_main and _use_bars(config.progress)
    last_epoch = config.epochs if config.stop_after is None else config.stop_after
    _announce(run, last_epoch)
    epoch_bar = _bar(
        range(run.start_epoch, last_epoch + 1),
        bars,
        desc="epochs",
        initial=run.start_epoch - 1,
        total=config.epochs,
    )
    for epoch in epoch_bar:
        started = time.perf_counter()
        if isinstance(train_sampler, DistributedSampler):
            train_sampler.set_epoch(epoch)
        lr = float(run.optimizer.param_groups[0]["lr"])
        train_sums = _train_epoch(run, train_loader, bars, epoch)
        v_loss, v_correct, v_count = evaluate(run.model, test_loader, config, ctx.device, run.amp_dtype)
        t_loss, t_correct, t_seen, v_loss, v_correct, v_count = dist_utils.all_reduce_sum(
            ctx, [*train_sums, v_loss, v_correct, v_count]
        )
        run.scheduler.step()
        record = {
            "epoch": epoch,
            "train_loss": t_loss / max(t_seen, 1.0),
            "train_acc": t_correct / max(t_seen, 1.0),
            "val_loss": v_loss / max(v_count, 1.0),
            "val_acc": v_correct / max(v_count, 1.0),
            "lr": lr,
            "seconds": round(time.perf_counter() - started, 3),
        }
        improved = record["val_acc"] > run.best
        run.best = max(run.best, record["val_acc"])
        record["best_val_acc"] = run.best
        run.history.append(record)
        _save_epoch(run, epoch, record, improved)
        _report_epoch(record, config.epochs, epoch_bar if bars else None, say)
        if on_epoch_end is not None:
            on_epoch_end(record)
    if run.start_epoch <= last_epoch < config.epochs:
        say(
            f"stopping after epoch {last_epoch} of {config.epochs} as asked (--stop-after); "
            f"continue with --resume"
        )
    return FitResult(history=run.history, best_val_acc=run.best, model=run.model, data=spec, out=run.out)


def _report_epoch(record: dict[str, Any], epochs: int, epoch_bar: Any, say: Logger) -> None:
    """One line of the epoch's metrics: above the progress bar when there is one, else logged."""
    msg = (
        f"epoch {record['epoch']}/{epochs}  train_loss {record['train_loss']:.4f}  "
        f"train_acc {record['train_acc']:.4f}  val_acc {record['val_acc']:.4f}  "
        f"lr {record['lr']:.4g}  {record['seconds']:.1f}s"
    )
    if epoch_bar is not None:
        epoch_bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_acc']:.3f}")
        epoch_bar.write(msg)
    else:
        say(msg)


def _check_resumed_data(ckpt: dict[str, Any], config: TrainConfig, spec: DataSpec) -> None:
    """The data set must have the class and channel counts the resumed run was trained with."""
    saved = ckpt["config"]
    for key, label, mine in (
        ("num_classes", "class count", spec.num_classes),
        ("in_channels", "in_channels", spec.in_channels),
    ):
        if saved.get(key) != mine:
            raise ValueError(
                f"{key}: the checkpoint being resumed was trained with {label} "
                f"{saved.get(key)!r}, but data set {config.dataset!r} has {mine!r}"
            )


def _build(
    ctx: dist_utils.DistContext, config: TrainConfig, spec: DataSpec, model_factory: ModelFactory, say: Logger
) -> _Run:
    """The model, optimizer, cosine schedule, grad scaler and data-order generator of a new run."""
    device = ctx.device
    seed_everything(config.seed)
    model = model_factory(
        config.model,
        num_classes=spec.num_classes,
        T=config.T,
        coding=config.coding,
        in_channels=spec.in_channels,
        **config.model_kwargs,
    ).to(device)
    if config.backend != "auto":
        backends.set_module_backend(model, config.backend)
    if config.memory != "default":
        set_memory(model, config.memory)
    if ctx.rank > 0:
        seed_everything(config.seed + ctx.rank)
    data_gen = torch.Generator()
    data_gen.manual_seed(config.seed + ctx.rank)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    amp_dtype, use_scaler = _amp_setup(config, device, say)
    scaler = torch.amp.GradScaler(device.type if device.type == "cuda" else "cpu", enabled=use_scaler)
    run_config = dict(
        config.run_config(),
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        image_size=spec.image_size,
        input_size=list(spec.input_size),
        world_size=ctx.world_size,
        backend_used=backend_used(model, device, amp_dtype),
    )
    return _Run(
        ctx=ctx,
        config=config,
        spec=spec,
        model=model,
        train_model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=amp_dtype,
        data_gen=data_gen,
        run_config=run_config,
        say=say,
        out=Path(config.out) if config.out is not None else None,
    )


def _resume(run: _Run, ckpt: dict[str, Any]) -> None:
    """Restore the states of ``last.pt`` into ``run``: weights, optimizer, schedule (re-planned
    when ``epochs`` changed), scaler, history, random states; trim ``metrics.jsonl`` to match."""
    ctx, config, say = run.ctx, run.config, run.say
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    if ckpt["config"].get("epochs") != config.epochs:
        _replan_cosine(run.scheduler, run.optimizer, config.epochs)
        say(
            f"resume: cosine schedule re-planned for {config.epochs} epochs "
            f"(the checkpoint planned {ckpt['config'].get('epochs')})"
        )
    run.history = list(ckpt.get("history", []))
    run.best = float(ckpt.get("best_val_acc", -1.0))
    run.start_epoch = int(ckpt["epoch"]) + 1
    rng = ckpt.get("rng") or []
    if len(rng) == ctx.world_size:
        restore_rng_state(rng[ctx.rank], run.data_gen)
    else:
        say(
            f"resume: the checkpoint holds random states of {len(rng)} process(es), this run has "
            f"{ctx.world_size}; random streams restart from seed {config.seed} + epoch"
        )
        seed_everything(config.seed + 1000 * run.start_epoch + ctx.rank)
        run.data_gen.manual_seed(config.seed + 1000 * run.start_epoch + ctx.rank)
    say(f"resume: continuing {config.out} after epoch {run.start_epoch - 1}")
    if run.out is not None and ctx.is_main:
        truncate_metrics(run.out / "metrics.jsonl", run.start_epoch - 1)


def _loaders(run: _Run) -> tuple[Any, DataLoader, DataLoader]:
    """``(train sampler, train loader, test loader)``: shuffled from the run's generator (or a
    ``DistributedSampler``), the test set in order (or an exact shard per process)."""
    ctx, config, spec = run.ctx, run.config, run.spec
    if ctx.distributed:
        train_sampler: Any = DistributedSampler(
            spec.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
        )
    else:
        train_sampler = RandomSampler(spec.train, generator=run.data_gen)
    test_sampler: Any = (
        dist_utils.ShardSampler(len(spec.test), ctx.rank, ctx.world_size)
        if ctx.distributed
        else SequentialSampler(spec.test)
    )
    loader_kw: dict[str, Any] = dict(
        batch_size=config.batch_size,
        num_workers=config.workers,
        pin_memory=ctx.device.type == "cuda",
        collate_fn=spec.collate_fn,
    )
    train_loader = DataLoader(spec.train, sampler=train_sampler, generator=run.data_gen, **loader_kw)
    test_loader = DataLoader(spec.test, sampler=test_sampler, **loader_kw)
    return train_sampler, train_loader, test_loader


def _announce(run: _Run, last_epoch: int) -> None:
    config, spec, ctx = run.config, run.spec, run.ctx
    done = run.start_epoch - 1
    if run.start_epoch > config.epochs:
        run.say(f"nothing to do: {config.out} already holds {done} of {config.epochs} epochs")
    elif run.start_epoch > last_epoch:
        run.say(
            f"nothing to do: {config.out} already holds {done} of {config.epochs} epochs "
            f"(--stop-after {last_epoch}); resume without --stop-after, or with a later one, to go on"
        )
    else:
        run.say(
            f"training {config.model} (T={config.T}, coding={config.coding}) on "
            f"{spec.name}: {len(spec.train)} train / {len(spec.test)} test images, "
            f"{ctx.world_size} process(es) on {ctx.device}; neuron backend "
            f"{run.run_config['backend_used']} (setting {config.backend!r}); memory {config.memory}"
        )


def _train_epoch(run: _Run, loader: DataLoader, bars: bool, epoch: int) -> list[float]:
    """One pass over the training set; ``[loss sum, correct (CutMix-weighted), samples]`` of
    this process."""
    config, device = run.config, run.ctx.device
    run.train_model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    batches = _bar(_batches(loader, device), bars, desc=f"epoch {epoch}", total=len(loader), leave=False)
    for x, y in batches:
        target: Tensor | MixedTarget = y
        if config.cutmix > 0:
            x, target = cutmix(x, y, config.cutmix)
        autocast = (
            torch.autocast(device.type, dtype=run.amp_dtype)
            if run.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits = run.train_model(x)
        loss = spike_loss(logits, target, config.loss, config.label_smoothing)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        with torch.no_grad():
            pred = logits.detach().float().mean(0).argmax(1)
            if isinstance(target, MixedTarget):
                hits = (
                    target.lam * (pred == target.y_a).double()
                    + (1 - target.lam) * (pred == target.y_b).double()
                ).sum()
            else:
                hits = (pred == target).sum().double()
            correct += hits
            loss_sum += loss.detach().double() * y.shape[0]
            seen += y.shape[0]
    return [float(loss_sum), float(correct), float(seen)]


def _save_epoch(run: _Run, epoch: int, record: dict[str, Any], improved: bool) -> None:
    """Rank 0 appends the epoch to ``metrics.jsonl`` and writes ``last.pt``, ``best.pt`` (when
    the test accuracy improved) and ``model.safetensors`` (with the run settings as metadata,
    :func:`gac_coding.io.settings_metadata`); every rank waits for it."""
    ctx = run.ctx
    rng_states = dist_utils.gather_object(ctx, capture_rng_state(run.data_gen))
    if run.out is not None and ctx.is_main:
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "config": run.run_config,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "rng": rng_states,
            "best_val_acc": run.best,
            "history": run.history,
        }
        metadata = settings_metadata(run.run_config, epoch=epoch)
        write_epoch_files(run.out, state, record, improved, run.model.state_dict(), metadata)
    dist_utils.barrier(ctx)
