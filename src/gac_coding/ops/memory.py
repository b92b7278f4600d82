"""Memory modes of training: what autograd keeps for the backward pass.

Backpropagation through time keeps every layer's state at every step, so the memory a training
step needs grows linearly with ``T``. Three modes trade it against time; all three compute the
same numbers (float64: the same logits and spikes, every gradient to float rounding, the same
BatchNorm running statistics):

* ``"default"``: what autograd keeps for PyTorch's own layers and the neuron ops' membranes;
* ``"lean"``: spikes are kept as bits (a convolution whose input is spikes saves its packed input,
  :func:`gac_coding.ops.lean.spike_conv2d`), BatchNorm followed by the LIF is one op that keeps the
  convolution's output and the batch statistics and recomputes the rest in the backward pass
  (:func:`~gac_coding.ops.lean.bn_lif`), the encoder's gated LIF keeps its inputs (one copy for all
  ``T`` steps of a static image) and recomputes the membranes, and a strided 1x1 shortcut keeps
  only the input positions it reads;
* ``"checkpoint"``: a model keeps the input of each stage but the last (the encoder goes with
  the first) and runs the stage again in the backward pass, with the lean ops inside; the last
  stage, whose activations are the smallest while its recomputation would cost as much as any
  other's, runs lean. A block or an encoder in this mode keeps its own input.

Modes matter in training only: without gradients (``torch.no_grad``, ``eval`` inference) nothing
is kept, and every mode runs the default ops. Under ``torch.export`` and ``torch.jit`` tracing the
default ops run too (an inference graph); ``torch.compile`` keeps the lean ops (custom operators
whose backward is their own) and turns a checkpoint into ``torch.utils.checkpoint``.

Modules that take ``memory=`` (:class:`gac_coding.LIF`, :class:`gac_coding.GACEncoder`, the
models and their blocks) show it in their repr; :func:`gac_coding.set_memory` sets it on every such
submodule of a model, and refuses (``ValueError``) a model holding modules of another framework,
for which no lean path exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "MEMORY_MODES",
    "MemorySetting",
    "check_memory",
    "checkpoint",
    "lean_active",
    "module_memory",
    "saved_tensor_bytes",
]

#: The memory modes, in order of increasing saving.
MEMORY_MODES: tuple[str, ...] = ("default", "lean", "checkpoint")


def check_memory(value: object, what: str = "memory", modes: Sequence[str] = MEMORY_MODES) -> str:
    """``value`` if it is one of ``modes``, else a ``ValueError`` (``TypeError`` for a non-string)
    naming ``what`` and the modes.

    Example:
        >>> from gac_coding.ops.memory import check_memory
        >>> check_memory("lean")
        'lean'
    """
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected one of {list(modes)}, got {type(value).__name__}")
    if value not in modes:
        if value in MEMORY_MODES:
            raise ValueError(f"{what}: {value!r} does not apply here; expected one of {list(modes)}")
        raise ValueError(f"{what}: expected one of {list(modes)}, got {value!r}")
    return value


def _tracing_inference() -> bool:
    """Whether a graph for inference is being traced (``torch.export``, ``torch.jit``)."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.jit.is_scripting()


def lean_active(mode: str) -> bool:
    """Whether a module in memory mode ``mode`` runs its lean ops now: not ``"default"``, with
    gradients enabled, and not while ``torch.export`` or ``torch.jit`` traces."""
    return mode != "default" and torch.is_grad_enabled() and not _tracing_inference()


class MemorySetting:
    """The ``memory`` of a module: one of :attr:`memory_modes`, checked on assignment, shown in
    the module's repr. Subclasses may override :meth:`_set_memory` to hand the mode on to their
    children."""

    #: the modes this kind of module accepts
    memory_modes: tuple[str, ...] = MEMORY_MODES
    _memory: str = "default"

    @property
    def memory(self) -> str:
        """The memory mode (:mod:`gac_coding.ops.memory`): ``"default"``, ``"lean"`` or
        ``"checkpoint"`` where it applies."""
        return self._memory

    @memory.setter
    def memory(self, value: str) -> None:
        mode = check_memory(value, f"memory ({type(self).__name__})", self.memory_modes)
        self._set_memory(mode)  # may refuse the mode: then nothing has changed
        self._memory = mode

    def _set_memory(self, mode: str) -> None:
        """Hand ``mode`` on to the children (nothing by default)."""


def module_memory(module: nn.Module) -> dict[str, str]:
    """``{qualified name: memory mode}`` of every submodule that has one.

    Example:
        >>> import torch, gac_coding as gac
        >>> from gac_coding.ops.memory import module_memory
        >>> module_memory(torch.nn.Sequential(gac.LIF(), gac.LIF(memory="lean")))
        {'0': 'default', '1': 'lean'}
    """
    return {name: m.memory for name, m in module.named_modules() if isinstance(m, MemorySetting)}


# ------------------------------------------------------------------------------- measurement


class SavedBytes:
    """What :func:`saved_tensor_bytes` counted: :attr:`bytes` and :attr:`tensors` (storages)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.tensors = 0
        self._seen: set[tuple[str, int]] = set()

    def _add(self, t: Tensor) -> None:
        base = t if t._base is None else t._base
        if base.is_leaf and base.requires_grad:  # parameters (and inputs one differentiates)
            return
        storage = t.untyped_storage()
        key = (str(t.device), storage.data_ptr())
        if key in self._seen:
            return
        self._seen.add(key)
        self.bytes += storage.nbytes()
        self.tensors += 1


@contextlib.contextmanager
def saved_tensor_bytes() -> Iterator[SavedBytes]:
    """Count the bytes autograd keeps for the backward pass of what runs inside.

    Every tensor saved for backward (``torch.autograd.graph.saved_tensors_hooks``) counts once per
    storage, whatever the number of nodes or views that keep it; leaves that require gradients
    (the parameters) do not count. The count is deterministic, unlike a peak of allocated memory.
    Autograd must keep the counted tensors alive until the backward pass (as it does), so that
    no storage is freed and its address reused inside.

    Example:
        >>> import torch
        >>> from gac_coding.ops.memory import saved_tensor_bytes
        >>> x = torch.rand(1000, requires_grad=True)
        >>> with saved_tensor_bytes() as saved:
        ...     y = x.exp().sin().sum()      # exp keeps its output, sin its input: one storage
        >>> saved.bytes, saved.tensors
        (4000, 1)
    """
    counter = SavedBytes()

    def pack(t: Tensor) -> Tensor:
        counter._add(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield counter


# ----------------------------------------------------------------------------------- checkpoints


@contextlib.contextmanager
def _frozen_buffers(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Run a block on copies of every buffer of ``modules``, then put the buffers themselves back
    (a recomputation must not update BatchNorm's running statistics a second time). The buffers
    are swapped, never written: an in-place restore would bump their version, and another graph
    that saved them (the same BatchNorm used outside the checkpoint) could no longer run backward."""
    slots: list[tuple[nn.Module, str, Tensor]] = []
    seen: set[int] = set()
    for top in modules:
        for m in top.modules():
            if id(m) in seen:
                continue
            seen.add(id(m))
            slots += [(m, name, b) for name, b in m._buffers.items() if b is not None]
    for m, name, b in slots:
        m._buffers[name] = b.detach().clone()
    try:
        yield
    finally:
        for m, name, b in slots:
            m._buffers[name] = b


def _rng_devices(tensors: Sequence[Tensor]) -> list[int]:
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


def _params_of(modules: Sequence[nn.Module]) -> list[Tensor]:
    """The parameters of ``modules`` that require gradients, each once, in module order."""
    seen: set[int] = set()
    out: list[Tensor] = []
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class _Checkpoint(torch.autograd.Function):
    """``run(*inputs)`` computed without a graph; the backward pass runs it again from the saved
    inputs (random state and the modules' buffers as at the first run) and differentiates it with
    respect to the inputs and the parameters (passed after the inputs, so that autograd hands their
    gradients on as for any other input)."""

    @staticmethod
    def forward(ctx, run, modules, n_inputs, *args):  # type: ignore[override]
        inputs = args[:n_inputs]
        ctx.run = run
        ctx.modules = modules
        ctx.n_params = len(args) - n_inputs
        ctx.cpu_rng = torch.get_rng_state()
        ctx.cuda_devices = _rng_devices(inputs)
        ctx.cuda_rng = [torch.cuda.get_rng_state(d) for d in ctx.cuda_devices]
        ctx.save_for_backward(*args)  # the parameters are not copied (they are leaves)
        with torch.no_grad():
            out = run(*inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"checkpoint: expected the segment to return a tensor, got {type(out).__name__}")
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        saved = ctx.saved_tensors
        n_inputs = len(saved) - ctx.n_params
        params = list(saved[n_inputs:])
        inputs = [t.detach().requires_grad_(t.requires_grad) for t in saved[:n_inputs]]
        wanted = [t for t in inputs if t.requires_grad] + params
        # the second run and its backward work on copies of the buffers (its BatchNorm nodes
        # keep the copies); the buffers themselves are neither updated twice nor written
        with torch.random.fork_rng(devices=ctx.cuda_devices), _frozen_buffers(ctx.modules):
            torch.set_rng_state(ctx.cpu_rng)
            for d, state in zip(ctx.cuda_devices, ctx.cuda_rng, strict=True):
                torch.cuda.set_rng_state(state, d)
            with torch.enable_grad():
                out = ctx.run(*inputs)
            if not wanted or not out.requires_grad:
                return (None, None, None, *([None] * len(saved)))
            grads = list(torch.autograd.grad(out, wanted, grad_out, allow_unused=True))
        input_grads = [grads.pop(0) if t.requires_grad else None for t in inputs]
        return (None, None, None, *input_grads, *grads)


def checkpoint(run: Callable[..., Tensor], modules: Sequence[nn.Module], *inputs: Tensor) -> Tensor:
    """``run(*inputs)`` keeping only ``inputs`` for the backward pass, which runs it again.

    ``modules`` are those ``run`` uses: their parameters receive gradients, and their buffers are
    put back after the second run (BatchNorm's running statistics are updated once, as without a
    checkpoint). The random state of the first run is restored for the second, so random layers
    draw the same numbers. Eagerly this is an autograd Function that saves the inputs through
    ``save_for_backward`` (so ``torch.autograd.graph.saved_tensors_hooks`` see what is kept);
    under ``torch.compile`` it is ``torch.utils.checkpoint.checkpoint`` (non-reentrant), whose
    recomputation the compiler plans. Without gradients it is ``run(*inputs)``.
    """
    if not torch.is_grad_enabled() or _tracing_inference():
        return run(*inputs)
    if torch.compiler.is_compiling():
        import torch.utils.checkpoint as torch_checkpoint

        out = torch_checkpoint.checkpoint(run, *inputs, use_reentrant=False)
        assert isinstance(out, Tensor)
        return out
    params = _params_of(modules)
    return _Checkpoint.apply(run, tuple(modules), len(inputs), *inputs, *params)
