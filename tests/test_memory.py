"""Memory modes (``memory="lean"`` / ``"checkpoint"``): the same numbers as the default path.

The lean ops are compared with independent formulations: bits with numpy's ``packbits``, the LIF
with the step-by-step loop of ``slow_reference.py``, the spike convolution, BatchNorm + LIF and the
gated LIF with the default layers (torch's convolution and BatchNorm, the neuron ops). Whole models
in every mode against the default mode in float64: logits and spikes equal, every gradient to 1e-12
relative, BatchNorm's running statistics equal, over two training steps. What the modes keep for
the backward pass is counted with ``torch.autograd.graph.saved_tensors_hooks`` (deterministic).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from slow_reference import slow_lif
from torch import Tensor, nn
from triton_device import triton_kernel_device

import gac_coding as gac
from gac_coding import set_memory
from gac_coding.models import MSBlock, MSResNet, SpikingVGG, create_model, list_models
from gac_coding.models.msresnet import TINY_STAGES
from gac_coding.models.vgg import VGG_TINY_PLAN
from gac_coding.ops import LIFParams, _cpp, lean
from gac_coding.ops import gated_lif as default_gated_lif
from gac_coding.ops.memory import MEMORY_MODES, check_memory, module_memory, saved_tensor_bytes
from gac_coding.train import TrainConfig

F64 = torch.float64
RECIPE_PARAMS = {name: gac.RECIPES[name] for name in ("cifar", "imagenet")}
# the lean ops' backends: cpp where a C++ toolchain is found, triton in its interpreter
LEAN_BACKENDS = ["eager", "triton", *(["cpp"] if _cpp.toolchain_available() else [])]


@pytest.fixture(scope="module")
def triton_device() -> str:
    return triton_kernel_device()


def _device(backend: str, triton_device: str) -> str:
    return triton_device if backend == "triton" else "cpu"


def _rel_err(a: Tensor, b: Tensor) -> float:
    """max |a - b| relative to max |a| (0 where both are 0)."""
    scale = a.abs().max().item()
    diff = (a - b).abs().max().item()
    return 0.0 if diff == 0 else diff / max(scale, 1e-300)


# ------------------------------------------------------------------------------------ bad input


def test_unknown_mode_names_the_modes() -> None:
    for build in (
        lambda: gac.LIF(memory="thin"),
        lambda: create_model("msresnet_tiny", T=2, memory="thin"),
        lambda: set_memory(create_model("vgg_tiny", T=2), "thin"),
        lambda: gac.GACEncoder(3, 4, T=2, memory="thin"),
        lambda: TrainConfig(model="msresnet_tiny", dataset="digits", memory="thin").validate(),
    ):
        with pytest.raises(ValueError, match=r"memory.*expected one of \['default', 'lean'.*\], got 'thin'"):
            build()
    with pytest.raises(TypeError, match="memory"):
        gac.LIF(memory=1)  # type: ignore[arg-type]
    assert check_memory("checkpoint") == "checkpoint"
    assert MEMORY_MODES == ("default", "lean", "checkpoint")


def test_mode_that_does_not_apply_says_so() -> None:
    with pytest.raises(
        ValueError, match="'checkpoint' does not apply here; expected one of \\['default', 'lean'\\]"
    ):
        gac.LIF(memory="checkpoint")
    lif = gac.LIF(surrogate=lambda h: torch.sigmoid(4 * h))
    with pytest.raises(ValueError, match="named surrogates"):
        lif.memory = "lean"
    assert lif.memory == "default"  # nothing changed


def test_foreign_neuron_refused_in_one_line() -> None:
    from spikingjelly.activation_based import layer, neuron

    backbone = nn.Sequential(neuron.LIFNode(step_mode="m"), layer.Conv2d(4, 4, 3, padding=1, step_mode="m"))
    net = gac.wrap(backbone, framework="spikingjelly", T=2, in_channels=3, out_channels=4)
    for mode in ("lean", "checkpoint"):
        with pytest.raises(ValueError) as info:
            set_memory(net, mode)
        message = str(info.value)
        assert "\n" not in message and "spikingjelly" in message and "LIFNode" in message
    assert set(module_memory(net).values()) == {"default"}  # nothing changed
    with pytest.raises(ValueError, match="none of its modules takes memory="):
        set_memory(nn.Sequential(nn.Linear(2, 2)), "lean")


def test_mode_in_repr_and_handed_on() -> None:
    model = create_model("msresnet_tiny", T=2, memory="checkpoint")
    assert "memory='checkpoint'" in repr(model).splitlines()[1]  # the model's own line
    inner = {name: mode for name, mode in module_memory(model).items() if name}
    assert inner and set(inner.values()) == {"lean"}
    set_memory(model, "default")
    assert set(module_memory(model).values()) == {"default"}


# ------------------------------------------------------------------------------------- the ops


@given(rows=st.integers(1, 5), length=st.integers(1, 37), backend=st.sampled_from(LEAN_BACKENDS))
@settings(max_examples=25, deadline=None)
def test_bits_against_numpy(rows: int, length: int, backend: str) -> None:
    dev = _device(backend, triton_kernel_device())
    g = torch.Generator().manual_seed(rows * 100 + length)
    x = (torch.rand(rows, length, generator=g) < 0.4).to(F64)
    bits = lean.pack_bits(x.to(dev), backend=backend).cpu()
    expected = np.packbits(x.numpy().astype(np.uint8), axis=1, bitorder="little")
    assert bits.dtype == torch.uint8 and np.array_equal(bits.numpy(), expected)
    back = lean.unpack_bits(bits.to(dev), length, F64, backend=backend).cpu()
    assert torch.equal(back, x)


@given(
    rows=st.integers(1, 4),
    length=st.integers(1, 70),
    little=st.booleans(),
    dtype=st.sampled_from([torch.bool, torch.float32, F64]),
)
@settings(max_examples=40, deadline=None)
def test_eager_bits_both_byte_orders(rows: int, length: int, little: bool, dtype: torch.dtype) -> None:
    """The eager backend's 64-bit word arithmetic (little-endian hosts) and its byte-by-byte
    fallback (any host) pack and unpack as numpy does: any nonzero value (0.5, -2, NaN) is a 1 and
    -0.0 a 0, a bool input is left as it was, and the complement is ``1 - bit``."""
    from gac_coding.ops import _lean_eager

    g = torch.Generator().manual_seed(rows * 1000 + length)
    values = torch.tensor([0.0, -0.0, 1.0, 0.5, -2.0, float("nan")], dtype=F64)
    x = values[torch.randint(0, len(values), (rows, length), generator=g)]
    x = x != 0 if dtype == torch.bool else x.to(dtype)
    before = x.clone()
    ones = (x != 0).numpy().astype(np.uint8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_lean_eager, "_LITTLE_ENDIAN", little)
        bits = _lean_eager.pack_bits(x)
        assert np.array_equal(bits.numpy(), np.packbits(ones, axis=1, bitorder="little"))
        if dtype == torch.bool:
            assert torch.equal(x, before)
        assert np.array_equal(_lean_eager._unpack(bits, length, F64).numpy(), ones)
        assert np.array_equal(
            _lean_eager._unpack(bits, length, torch.float32, complement=True).numpy(), 1 - ones
        )


def test_bits_bad_input() -> None:
    with pytest.raises(ValueError, match="x: expected a 2-d tensor"):
        lean.pack_bits(torch.zeros(3))
    with pytest.raises(ValueError, match="length: expected L with ceil"):
        lean.unpack_bits(torch.zeros(1, 2, dtype=torch.uint8), 17)


@given(
    T=st.integers(1, 4),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    recipe=st.sampled_from(sorted(RECIPE_PARAMS)),
    detach=st.booleans(),
    backend=st.sampled_from(LEAN_BACKENDS),
)
@settings(max_examples=30, deadline=None)
def test_lean_lif_against_slow_loop(
    T: int, shape: list[int], recipe: str, detach: bool, backend: str
) -> None:
    dev = _device(backend, triton_kernel_device())
    base = RECIPE_PARAMS[recipe]
    p = LIFParams(base.decay, base.threshold, base.surrogate, detach)
    g = torch.Generator().manual_seed(T * 1000 + sum(shape))
    x = (torch.rand(T, *shape, generator=g, dtype=F64) * 2 * p.threshold).requires_grad_()
    ref_s, _ = slow_lif(x, p.decay, p.threshold, str(p.surrogate), p.detach_reset)
    w = torch.randn(ref_s.shape, generator=g, dtype=F64)
    (ref_grad,) = torch.autograd.grad((ref_s * w).sum(), x)
    xd = x.detach().to(dev).requires_grad_()
    s, bits = lean.lif(xd, p, backend=backend)
    (grad,) = torch.autograd.grad((s * w.to(dev)).sum(), xd)
    assert torch.equal(s.cpu(), ref_s.detach())
    expected = np.packbits(ref_s.detach().reshape(T, -1).numpy().astype(np.uint8), axis=1, bitorder="little")
    assert np.array_equal(bits.cpu().numpy(), expected)
    assert _rel_err(ref_grad, grad.cpu()) <= 1e-12


@given(
    n=st.integers(1, 3),
    c_in=st.integers(1, 5),
    c_out=st.integers(1, 4),
    size=st.integers(3, 7),
    stride=st.integers(1, 2),
    channels_last=st.booleans(),
    backend=st.sampled_from(LEAN_BACKENDS),
)
@settings(max_examples=20, deadline=None)
def test_spike_conv_against_conv(
    n: int, c_in: int, c_out: int, size: int, stride: int, channels_last: bool, backend: str
) -> None:
    """The bits packed by ``backend`` (odd numbers of elements a step), unpacked for the weight
    gradient."""
    dev = _device(backend, triton_kernel_device())
    g = torch.Generator().manual_seed(n * 100 + c_in * 10 + size)
    conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=True).double().to(dev)
    s = (torch.rand(n, c_in, size, size, generator=g) < 0.3).to(F64).to(dev)
    if channels_last:
        s = s.contiguous(memory_format=torch.channels_last)
    s.requires_grad_()
    ref = conv(s)
    w = torch.randn(ref.shape, generator=g, dtype=F64).to(dev)
    ref_grads = torch.autograd.grad((ref * w).sum(), [s, conv.weight, conv.bias])
    out = lean.spike_conv2d(s, conv, backend=backend)  # packs the bits itself
    grads = torch.autograd.grad((out * w).sum(), [s, conv.weight, conv.bias])
    assert torch.equal(out, ref)
    for a, b in zip(ref_grads, grads, strict=True):
        assert _rel_err(a.cpu(), b.cpu()) <= 1e-12


def test_spike_conv_refuses_real_values() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1)
    with pytest.raises(ValueError, match="0s and 1s only"):
        lean.spike_conv2d(torch.rand(1, 2, 4, 4, requires_grad=True), conv)


@given(
    T=st.integers(1, 3),
    b=st.integers(1, 3),
    c=st.integers(1, 4),
    size=st.sampled_from([2, 3, 4, 5]),
    recipe=st.sampled_from(sorted(RECIPE_PARAMS)),
    pool=st.sampled_from([0, 2]),
    training=st.booleans(),
    backend=st.sampled_from(LEAN_BACKENDS),
)
@settings(max_examples=25, deadline=None)
def test_bn_lif_against_batchnorm_then_lif(
    T: int, b: int, c: int, size: int, recipe: str, pool: int, training: bool, backend: str
) -> None:
    if pool and size % pool:
        size += 1
    dev = _device(backend, triton_kernel_device())
    p = RECIPE_PARAMS[recipe]
    g = torch.Generator().manual_seed(T * 1000 + b * 100 + c * 10 + size)
    ref_bn = nn.BatchNorm2d(c).double()
    with torch.no_grad():
        ref_bn.weight.copy_(torch.rand(c, generator=g, dtype=F64) + 0.5)
        ref_bn.bias.copy_(torch.randn(c, generator=g, dtype=F64) * 0.3)
        ref_bn.running_mean.copy_(torch.randn(c, generator=g, dtype=F64))
        ref_bn.running_var.copy_(torch.rand(c, generator=g, dtype=F64) + 0.5)
    ref_bn.train(training)
    bn = nn.BatchNorm2d(c).double().to(dev)
    bn.load_state_dict(ref_bn.state_dict())
    bn.train(training)
    y = torch.randn(T * b, c, size, size, generator=g, dtype=F64, requires_grad=True)
    z = ref_bn(y)
    z = F.avg_pool2d(z, pool) if pool else z
    ref_s, _ = slow_lif(z.view(T, b, *z.shape[1:]), p.decay, p.threshold, str(p.surrogate), p.detach_reset)
    ref_s = ref_s.flatten(0, 1)
    w = torch.randn(ref_s.shape, generator=g, dtype=F64)
    ref_grads = torch.autograd.grad((ref_s * w).sum(), [y, ref_bn.weight, ref_bn.bias])
    yd = y.detach().to(dev).requires_grad_()
    s, _bits = lean.bn_lif(yd, bn, p, T, pool=pool, backend=backend)
    grads = torch.autograd.grad((s * w.to(dev)).sum(), [yd, bn.weight, bn.bias])
    assert torch.equal(s.cpu(), ref_s.detach())
    for a, g2 in zip(ref_grads, grads, strict=True):
        assert _rel_err(a, g2.cpu()) <= 1e-12
    for (name, a), g2 in zip(ref_bn.state_dict().items(), bn.state_dict().values(), strict=True):
        assert torch.allclose(a, g2.cpu(), rtol=1e-14, atol=0), name


@pytest.mark.parametrize("backend", LEAN_BACKENDS)
@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("recipe", sorted(RECIPE_PARAMS))
def test_lean_gated_lif_against_default(backend: str, static: bool, recipe: str, triton_device: str) -> None:
    dev = _device(backend, triton_device)
    p = RECIPE_PARAMS[recipe]
    T, shape = 3, (2, 3, 5, 3)  # odd sizes: 90 elements a step
    g = torch.Generator().manual_seed(7)
    u = torch.randn(*(shape if static else (T, *shape)), generator=g, dtype=F64) * 2
    ta = torch.randn(T, shape[0], generator=g, dtype=F64)
    sca = torch.randn(u.shape, generator=g, dtype=F64)
    w = torch.randn(T, *shape, generator=g, dtype=F64)
    results = []
    for fn in (default_gated_lif, lean.gated_lif):
        args = [t.clone().to(dev).requires_grad_() for t in (u, ta, sca)]
        out, fired, gate = fn(*args, p, static=static, backend=backend)
        grads = torch.autograd.grad((out * w.to(dev)).sum(), args)
        results.append((out.detach().cpu(), fired.cpu(), gate.cpu(), [x.cpu() for x in grads]))
    (o1, f1, m1, g1), (o2, f2, m2, g2) = results
    assert torch.equal(f1, f2) and torch.equal(o1, o2) and torch.equal(m1, m2)
    for a, b in zip(g1, g2, strict=True):
        assert _rel_err(a, b) <= 1e-12


@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_shortcut_keeps_what_it_reads(channels_last: bool) -> None:
    block = MSBlock(3, 5, stride=2, lif=dict(gac.RECIPES["imagenet"])).double()
    x = torch.randn(2, 2, 3, 7, 5, dtype=F64)  # odd sizes: the last row and column are read
    flat = x.flatten(0, 1)
    if channels_last:
        flat = flat.contiguous(memory_format=torch.channels_last)
    flat.requires_grad_()
    ref = block.shortcut(flat)
    w = torch.randn(ref.shape, dtype=F64)
    ref_grads = torch.autograd.grad((ref * w).sum(), [flat, *block.shortcut.parameters()])
    out = lean.block_shortcut(block.shortcut, flat)
    grads = torch.autograd.grad((out * w).sum(), [flat, *block.shortcut.parameters()])
    assert torch.equal(out, ref)
    for a, b in zip(ref_grads, grads, strict=True):
        assert _rel_err(a, b) <= 1e-12


# ----------------------------------------------------------------------------- whole models


def _train_steps(
    model: nn.Module, inputs: list[Tensor]
) -> tuple[list[Tensor], list[Tensor], dict[str, Tensor]]:
    """Logits and gradients of a step per input (gradients summed over the steps, no optimiser:
    the parameters stay equal across modes) and the buffers after them."""
    logits = []
    for x in inputs:
        out = model(x)
        out.square().mean().backward()
        logits.append(out.detach())
    grads = [p.grad.clone() for p in model.parameters()]
    return logits, grads, {k: v.clone() for k, v in model.named_buffers()}


def _compare_modes(
    build: Callable[[], nn.Module],
    seed: int,
    inputs: list[Tensor],
    modes: tuple[str, ...] = ("lean", "checkpoint"),
) -> None:
    """``build()`` in the default mode and in each of ``modes``, float64, from the same weights:
    logits equal, gradients to 1e-12 relative, buffers (BatchNorm's statistics) equal."""
    runs = {}
    for mode in ("default", *modes):
        torch.manual_seed(seed)
        model = build().double().train()
        set_memory(model, mode)
        torch.manual_seed(seed + 1)  # the same random draws (rate coding) in every mode
        runs[mode] = _train_steps(model, inputs)
    ref_logits, ref_grads, ref_buffers = runs["default"]
    assert ref_grads[0].abs().sum() > 0  # the stem's weight: a backward pass through every layer
    for mode in modes:
        logits, grads, buffers = runs[mode]
        for a, b in zip(ref_logits, logits, strict=True):
            assert torch.equal(a, b), mode
        for a, b in zip(ref_grads, grads, strict=True):
            assert _rel_err(a, b) <= 1e-12, mode
        for key, value in ref_buffers.items():
            assert torch.equal(value, buffers[key]), (mode, key)


# static images with one recipe, sequences with the other: every model, coding, recipe and input kind
TINY = [
    (name, coding, recipe, static)
    for name in ("msresnet_tiny", "vgg_tiny")
    for coding in ("gac", "direct")
    for recipe, static in (("cifar", coding == "gac"), ("imagenet", coding != "gac"))
]


@pytest.mark.parametrize(("name", "coding", "recipe", "static"), TINY)
def test_tiny_models_every_mode_same_numbers(name: str, coding: str, recipe: str, static: bool) -> None:
    """Both codings, static images and sequences, both recipes (triangle surrogate with the reset
    in the graph; rectangle with a detached reset, where the LIF keeps two bits)."""
    # the VGG's chain of neurons needs 4 steps for spikes to reach its head
    T, in_ch = (2, 3) if name == "msresnet_tiny" else (4, 2)
    g = torch.Generator().manual_seed(3)
    shape = (2, in_ch, 8, 8) if static else (T, 2, in_ch, 8, 8)
    inputs = [torch.rand(*shape, generator=g, dtype=F64) * 3 for _ in range(2)]

    def build() -> nn.Module:
        if name == "msresnet_tiny":
            return MSResNet(TINY_STAGES, 5, T, recipe, coding, stem_channels=16)
        return SpikingVGG(VGG_TINY_PLAN, 5, T, coding, in_channels=in_ch, recipe=recipe)

    _compare_modes(build, 11, inputs)


def test_rate_coding_every_mode_same_numbers() -> None:
    """A coding that draws random numbers: a checkpoint's second run draws the same ones."""
    g = torch.Generator().manual_seed(4)
    inputs = [torch.rand(2, 3, 8, 8, generator=g, dtype=F64) for _ in range(2)]
    _compare_modes(lambda: create_model("msresnet_tiny", T=2, coding="rate", num_classes=4), 5, inputs)


LARGE = {  # every other registered model: (T, input channels, input size)
    "msresnet18_cifar": (2, 3, 8),
    "msresnet18_dvs": (2, 2, 8),
    "msresnet18_imagenet": (2, 3, 16),
    "msresnet34_imagenet": (2, 3, 16),
    "vggsnn_dvs": (4, 2, 16),
}


def test_every_registered_model_is_covered() -> None:
    assert sorted([*LARGE, "msresnet_tiny", "vgg_tiny"]) == sorted(list_models())


@pytest.mark.parametrize("name", sorted(LARGE))
def test_registered_models_checkpoint_same_numbers(name: str) -> None:
    """The full-size models, checkpointed (which runs the lean ops in every layer), one step on a
    small input: the tiny models above cover the lean mode on its own."""
    T, in_ch, size = LARGE[name]
    g = torch.Generator().manual_seed(5)
    inputs = [torch.rand(2, in_ch, size, size, generator=g, dtype=F64) * 3]
    build = lambda: create_model(name, T=T, in_channels=in_ch, num_classes=3)  # noqa: E731
    _compare_modes(build, 2, inputs, modes=("checkpoint",))


# ----------------------------------------------------------------------------- saved bytes


def test_saved_bytes_counts_each_storage_once() -> None:
    a = torch.rand(10, 20, requires_grad=True)  # a leaf: a parameter-like input, excluded
    b = torch.rand(10, 20)
    with saved_tensor_bytes() as counter:
        h = a * 2  # saves nothing (a constant factor)
        y = (h * h).sum()  # h saved twice: one storage of 800 bytes
        z = (h.exp() * b).sum()  # exp saves its output (800), the product saves exp's output and b
    assert counter.bytes == 800 + 800 + 800
    (y + z).backward()


def test_lean_and_checkpoint_keep_less() -> None:
    counts = {}
    for mode in MEMORY_MODES:
        torch.manual_seed(0)
        model = create_model("msresnet_tiny", T=4, memory=mode)
        x = torch.rand(2, 3, 8, 8)
        with saved_tensor_bytes() as counter:
            out = model(x)
        out.sum().backward()
        counts[mode] = counter.bytes
    assert counts["checkpoint"] < counts["lean"] < 0.6 * counts["default"]


def test_modes_need_no_memory_without_gradients() -> None:
    model = create_model("msresnet_tiny", T=2, memory="lean").eval()
    ref = create_model("msresnet_tiny", T=2).eval()
    ref.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad(), saved_tensor_bytes() as counter:
        assert torch.equal(model(x), ref(x))
    assert counter.bytes == 0


def test_export_in_every_mode() -> None:
    for mode in MEMORY_MODES:
        model = create_model("msresnet_tiny", T=2, memory=mode).eval()
        x = torch.rand(2, 3, 8, 8)
        program = torch.export.export(model, (x,))
        assert "gac_coding.lean" not in str(program.graph)
        assert torch.equal(program.module()(x), model(x))


def test_wrapped_foreign_net_takes_a_lean_encoder() -> None:
    """The GAC encoder of a wrapped net runs lean; the foreign backbone stays as it is."""
    from spikingjelly.activation_based import layer, neuron

    outs = []
    for mode in ("default", "lean"):
        torch.manual_seed(1)
        backbone = nn.Sequential(
            neuron.LIFNode(step_mode="m"), layer.Conv2d(4, 4, 3, padding=1, step_mode="m")
        )
        net = gac.wrap(backbone, framework="spikingjelly", T=2, in_channels=3, out_channels=4, memory=mode)
        net = net.double()
        x = torch.rand(2, 3, 6, 6, dtype=F64) * 3
        out = net(x)
        grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
        outs.append((out.detach(), grads))
        assert net.encoder.memory == mode
    assert torch.equal(outs[0][0], outs[1][0])
    assert outs[0][1][0].abs().sum() > 0
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        assert _rel_err(a, b) <= 1e-12


# ------------------------------------------------------------------------------ torch.compile


@pytest.mark.parametrize(
    ("name", "mode"), [("msresnet_tiny", "lean"), ("msresnet_tiny", "checkpoint"), ("vgg_tiny", "checkpoint")]
)
def test_compiled_training_step_same_numbers(name: str, mode: str) -> None:
    """One graph (fullgraph) through AOT autograd, whose backward is the lean ops' own backward
    operators and the compiler's recomputation of checkpoints: eager's default-mode numbers.
    (The VGG's checkpoint runs its lean layers inside, so its lean mode is covered too.)"""
    torch._dynamo.reset()
    torch.manual_seed(0)
    T, in_ch = (2, 3) if name == "msresnet_tiny" else (4, 2)
    ref = create_model(name, T=T, in_channels=in_ch, num_classes=3).double()
    model = create_model(name, T=T, in_channels=in_ch, num_classes=3, memory=mode).double()
    model.load_state_dict(ref.state_dict())
    x = torch.rand(2, in_ch, 8, 8, dtype=F64) * 3
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.square().mean().backward()
    expected = ref(x)
    expected.square().mean().backward()
    assert torch.equal(out, expected)
    for p, q in zip(ref.parameters(), model.parameters(), strict=True):
        assert _rel_err(p.grad, q.grad) <= 1e-12
    for a, b in zip(ref.buffers(), model.buffers(), strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------- training


def _tiny_data():  # 32 random 8x8 grey images, 10 classes
    from gac_coding.train.data import DataSpec, TensorImageDataset

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(48, 1, 8, 8, generator=gen)
    labels = torch.randint(0, 10, (48,), generator=gen)
    train = TensorImageDataset(images[:32], labels[:32])
    test = TensorImageDataset(images[32:], labels[32:])
    return DataSpec("tiny", train, test, num_classes=10, in_channels=1, image_size=8)


def test_training_records_the_mode_and_learns_the_same(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A run in each mode: the mode printed and in the checkpoint, the model trained in it, and
    the same history (float32 training: gradients agree to rounding, so the losses to 1e-5)."""
    from gac_coding.train import fit, load_checkpoint

    histories = {}
    for mode in MEMORY_MODES:
        out = tmp_path / mode
        config = TrainConfig(model="msresnet_tiny", dataset="digits", T=2, epochs=1, batch_size=16, lr=0.1,
                             out=str(out), progress=False, device="cpu", memory=mode)  # fmt: skip
        lines: list[str] = []
        result = fit(config, log=lines.append, data=_tiny_data())
        assert any(line.endswith(f"memory {mode}") for line in lines)
        assert load_checkpoint(out / "last.pt")["config"]["memory"] == mode
        assert result.model.memory == mode
        histories[mode] = [(h["train_loss"], h["val_acc"]) for h in result.history]
    for mode in ("lean", "checkpoint"):
        for (loss, acc), (ref_loss, ref_acc) in zip(histories[mode], histories["default"], strict=True):
            assert abs(loss - ref_loss) <= 1e-5 and acc == ref_acc, mode


def test_train_command_memory_option(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``gac-coding train --memory``: handed to the training config; a bad mode is one line, exit 2."""
    import gac_coding.train.engine as engine
    from gac_coding.cli import main

    common = ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", "1",
              "--batch-size", "8", "--lr", "0.1", "--out", str(tmp_path / "x")]  # fmt: skip
    assert main([*common, "--memory", "thin"], friendly_errors=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory: expected one of ['default', 'lean', 'checkpoint'], got 'thin'" in err[0]
    assert not (tmp_path / "x").exists()
    seen = []

    def fake_fit(config, **_):  # type: ignore[no-untyped-def]
        config.validate()
        seen.append(config.memory)
        raise SystemExit(0)

    monkeypatch.setattr(engine, "fit", fake_fit)
    for mode in ("checkpoint", None):
        with pytest.raises(SystemExit):
            main(common + (["--memory", mode] if mode else []))
    assert seen == ["checkpoint", "default"]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("outside_first", [False, True], ids=["checkpoint-backward-first", "outside-first"])
def test_checkpoint_shares_a_batchnorm_with_a_graph_outside_it(train: bool, outside_first: bool) -> None:
    """A BatchNorm used inside a checkpoint and outside it: both backward passes run, in either
    order, with the gradients and running statistics of the same net run without a checkpoint;
    the buffers stay the same tensors (the second run works on copies, nothing writes them back)."""
    from gac_coding.ops.memory import checkpoint

    torch.manual_seed(7)
    bn, lin = nn.BatchNorm1d(3, dtype=F64), nn.Linear(3, 3, dtype=F64)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    bn.train(train)
    ref_bn, ref_lin = copy.deepcopy(bn), copy.deepcopy(lin)
    buffers = list(bn.named_buffers())
    versions = [b._version for _, b in buffers] + [b._version for b in ref_bn.buffers()]
    x = torch.randn(4, 3, dtype=F64, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()

    inside = checkpoint(lambda a: lin(bn(a)), [bn, lin], x)
    outside = bn(x * 2)
    ref_inside = ref_lin(ref_bn(ref_x))
    ref_outside = ref_bn(ref_x * 2)
    assert torch.equal(inside, ref_inside) and torch.equal(outside, ref_outside)
    w_in, w_out = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    order = [(outside, w_out), (inside, w_in)] if outside_first else [(inside, w_in), (outside, w_out)]
    for out, w in order:
        (out * w).sum().backward()
    ((ref_inside * w_in).sum() + (ref_outside * w_out).sum()).backward()

    for got, want in [
        (x, ref_x),
        (bn.weight, ref_bn.weight),
        (bn.bias, ref_bn.bias),
        (lin.weight, ref_lin.weight),
    ]:
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12)
    for (name, b), (_, ref_b) in zip(buffers, ref_bn.named_buffers(), strict=True):
        assert bn._buffers[name] is b, name  # the module still holds its own tensor
        assert torch.equal(b, ref_b), name  # updated once per forward, as without a checkpoint
    # written as often as without a checkpoint (the forward passes' updates; no write-back)
    now = [b._version for _, b in buffers] + [b._version for b in ref_bn.buffers()]
    delta = [a - v for a, v in zip(now, versions, strict=True)]
    assert delta[: len(buffers)] == delta[len(buffers) :], delta
