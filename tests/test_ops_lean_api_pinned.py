"""Pinned tests of the lean ops' entry points (``ops/lean.py``, ``ops/memory.py``,
``adapters/memory.py``): the custom operators that ``torch.compile`` runs (called here eagerly,
judged against the default ops in float64), their fake (shape-only) implementations, and the
checkpoint and measurement helpers."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

import gac_coding as gac
from gac_coding import set_memory
from gac_coding.ops import LIFParams, _cpp, backends, lean
from gac_coding.ops import gated_lif as default_gated_lif
from gac_coding.ops.memory import checkpoint, module_memory, saved_tensor_bytes

F64 = torch.float64


def _close(a: Tensor, b: Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    scale = max(a.abs().max().item(), 1e-300)
    assert (a - b).abs().max().item() <= 1e-12 * scale


def _same_grads(first: Sequence[Tensor | None], second: Sequence[Tensor | None]) -> None:
    """The same gradients wanted (``None`` where not) and close where they are."""
    for a, b in zip(first, second, strict=True):
        if a is None:
            assert b is None
        else:
            assert b is not None
            _close(a, b)


def _gated_inputs(static: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    T, shape = 3, (2, 3, 5, 3)
    g = torch.Generator().manual_seed(11)
    u = torch.randn(*(shape if static else (T, *shape)), generator=g, dtype=F64) * 2
    ta = torch.randn(T, shape[0], generator=g, dtype=F64)
    sca = torch.randn(u.shape, generator=g, dtype=F64)
    w = torch.randn(T, *shape, generator=g, dtype=F64)
    return u, ta, sca, w


def _op_gated(u, ta, sca, p, static):  # type: ignore[no-untyped-def]
    code = lean.check_lean_params(p)
    T = ta.shape[0]
    return torch.ops.gac_coding.lean_gated_lif(
        u, ta, sca, T if static else 0, p.decay, p.threshold, code, p.detach_reset, "eager"
    )


@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("recipe", ["cifar", "imagenet"])
@pytest.mark.parametrize("wanted", [(True, True, True), (True, False, False), (False, True, True)])
def test_gated_custom_op_against_default(static: bool, recipe: str, wanted: tuple[bool, ...]) -> None:
    """The custom operator (what ``torch.compile`` runs) with its registered autograd: the default
    op's outputs and gradients, for the inputs that want them (None for the others)."""
    p = gac.RECIPES[recipe]
    u, ta, sca, w = _gated_inputs(static)
    results = []
    for fn in (lambda *a: default_gated_lif(*a, p, static=static), lambda *a: _op_gated(*a, p, static)):
        args = [t.clone().requires_grad_(r) for t, r in zip((u, ta, sca), wanted, strict=True)]
        out, fired, gate = fn(*args)
        assert not fired.requires_grad and not gate.requires_grad
        (out * w).sum().backward()
        results.append((out.detach(), fired, gate, [a.grad for a in args]))
    (o1, f1, m1, g1), (o2, f2, m2, g2) = results
    assert torch.equal(o1, o2) and torch.equal(f1, f2) and torch.equal(m1, m2)
    for a, b, r in zip(g1, g2, wanted, strict=True):
        if r:
            _close(a, b)
        else:
            assert a is None and b is None


def test_gated_custom_op_backward_through_gate_only_output() -> None:
    """A loss of the output alone, twice (the saved inputs are kept for a second backward)."""
    p = gac.RECIPES["imagenet"]
    u, ta, sca, w = _gated_inputs(True)
    args = [t.clone().requires_grad_() for t in (u, ta, sca)]
    out, _, _ = _op_gated(*args, p, True)
    g1 = torch.autograd.grad((out * w).sum(), args, retain_graph=True)
    g2 = torch.autograd.grad((out * w).sum(), args)
    ref_args = [t.clone().requires_grad_() for t in (u, ta, sca)]
    ref, _, _ = default_gated_lif(*ref_args, p, static=True)
    ref_g = torch.autograd.grad((ref * w).sum(), ref_args)
    for a, b, c in zip(g1, g2, ref_g, strict=True):
        _close(c, a)
        _close(c, b)


def _pointwise_inputs(bias: bool, channels_last: bool):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 7, 5, generator=g, dtype=F64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, 3, 1, 1, generator=g, dtype=F64)
    b = torch.randn(4, generator=g, dtype=F64) if bias else None
    return x, weight, b


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "wanted", [(True, True, True), (True, False, False), (False, True, True), (False, True, False)]
)
def test_pointwise_custom_op_against_conv(bias: bool, channels_last: bool, wanted: tuple[bool, ...]) -> None:
    x, weight, b = _pointwise_inputs(bias, channels_last)
    stride = 2
    tensors = [x, weight, b]
    results = []
    for use_op in (False, True):
        args = [
            None if t is None else t.clone().requires_grad_(r) for t, r in zip(tensors, wanted, strict=True)
        ]
        if channels_last:
            args[0] = args[0].detach().contiguous(memory_format=torch.channels_last).requires_grad_(wanted[0])
        if use_op:
            out, kept = torch.ops.gac_coding.pointwise_conv(args[0], args[1], args[2], stride)
            assert not kept.requires_grad
            assert torch.equal(kept, x[:, :, ::stride, ::stride])
            assert kept.is_contiguous(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format
            )
        else:
            out = F.conv2d(args[0], args[1], args[2], stride)
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
        (out * w).sum().backward()
        results.append((out.detach(), [None if a is None else a.grad for a in args]))
    (o1, g1), (o2, g2) = results
    assert torch.equal(o1, o2)
    _same_grads(g1, g2)
    if wanted[0]:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        assert g2[0].is_contiguous(memory_format=fmt)


# ------------------------------------------------------------------------------ fake tensors


def _same_meta(real: Tensor, fake: Tensor) -> None:
    assert tuple(fake.shape) == tuple(real.shape)
    assert fake.dtype == real.dtype
    assert fake.stride() == real.stride()


@pytest.mark.parametrize("static", [True, False])
def test_gated_fakes_match_the_real_ops(static: bool) -> None:
    p = gac.RECIPES["cifar"]
    u, ta, sca, w = _gated_inputs(static)
    code = lean.check_lean_params(p)
    T = ta.shape[0]
    settings = (T if static else 0, p.decay, p.threshold, code, p.detach_reset, "eager")
    real = torch.ops.gac_coding.lean_gated_lif(u, ta, sca, *settings)
    real_b = torch.ops.gac_coding.lean_gated_lif_backward(w, u, ta, sca, *settings)
    with FakeTensorMode() as mode:
        fu, fta, fsca, fw = (mode.from_tensor(t) for t in (u, ta, sca, w))
        fake = torch.ops.gac_coding.lean_gated_lif(fu, fta, fsca, *settings)
        fake_b = torch.ops.gac_coding.lean_gated_lif_backward(fw, fu, fta, fsca, *settings)
    assert len(fake) == 3 and len(fake_b) == 3
    for r, f in zip((*real, *real_b), (*fake, *fake_b), strict=True):
        _same_meta(r, f)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("need", [(True, True), (True, False), (False, True)])
def test_pointwise_fakes_match_the_real_ops(bias: bool, channels_last: bool, need: tuple[bool, bool]) -> None:
    x, weight, b = _pointwise_inputs(bias, channels_last)
    if channels_last:
        weight = weight.contiguous(memory_format=torch.channels_last)
    out, kept = torch.ops.gac_coding.pointwise_conv(x, weight, b, 2)
    grad = torch.randn(out.shape, dtype=F64).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    real_b = torch.ops.gac_coding.pointwise_conv_backward(grad, kept, weight, list(x.shape), 2, bias, *need)
    with FakeTensorMode() as mode:
        fx, fw, fg = (mode.from_tensor(t) for t in (x, weight, grad))
        fb = None if b is None else mode.from_tensor(b)
        fout, fkept = torch.ops.gac_coding.pointwise_conv(fx, fw, fb, 2)
        fkept2 = mode.from_tensor(kept)
        fake_b = torch.ops.gac_coding.pointwise_conv_backward(fg, fkept2, fw, list(x.shape), 2, bias, *need)
    _same_meta(out, fout)
    _same_meta(kept, fkept)
    for r, f in zip(real_b, fake_b, strict=True):
        _same_meta(r, f)


# --------------------------------------------------------------------- what run_layers folds in

# (pooling module, the kernel bn_lif may fold in: 0 where the module is not a plain k x k average
# pooling of stride k, no padding, the default counting), worked out by hand
POOLS = [
    (nn.AvgPool2d(2), 2),
    (nn.AvgPool2d(3), 3),
    (nn.AvgPool2d(1), 1),
    (nn.AvgPool2d((2, 2)), 2),
    (nn.AvgPool2d(2, stride=(2, 2)), 2),
    (nn.AvgPool2d(2, padding=(0, 0)), 2),
    (nn.AvgPool2d((2, 3)), 0),
    (nn.AvgPool2d((3, 2)), 0),
    (nn.AvgPool2d((2, 3), stride=2), 0),
    (nn.AvgPool2d((2, 3), stride=1), 0),
    (nn.AvgPool2d(2, stride=1), 0),
    (nn.AvgPool2d(2, stride=(2, 1)), 0),
    (nn.AvgPool2d(2, stride=(1, 2)), 0),
    (nn.AvgPool2d(1, stride=(2, 1)), 0),
    (nn.AvgPool2d(1, stride=(1, 2)), 0),
    (nn.AvgPool2d(2, padding=1), 0),
    (nn.AvgPool2d(2, padding=(0, 1)), 0),
    (nn.AvgPool2d(2, padding=(1, 0)), 0),
    (nn.AvgPool2d(2, ceil_mode=True), 0),
    (nn.AvgPool2d(2, count_include_pad=False), 0),
    (nn.AvgPool2d(2, divisor_override=3), 0),
    (nn.MaxPool2d(2), 0),
    (nn.Identity(), 0),
]


@pytest.mark.parametrize(("pool", "expected"), POOLS, ids=[repr(m) for m, _ in POOLS])
def test_pool_size_by_hand(pool: nn.Module, expected: int) -> None:
    assert lean._pool_size(pool) == expected
    if expected:  # what bn_lif then runs is the module's own numbers
        z = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
        assert torch.equal(F.avg_pool2d(z, expected), pool(z))


def test_is_neuron_needs_both_the_setting_and_lif_params() -> None:
    class SettingOnly(backends.BackendSetting, nn.Module):
        pass

    class ParamsOnly(nn.Module):
        params = LIFParams()

    class Both(backends.BackendSetting, nn.Module):
        params = LIFParams()

    assert lean._is_neuron(gac.LIF())
    assert lean._is_neuron(Both())
    assert not lean._is_neuron(SettingOnly())
    assert not lean._is_neuron(ParamsOnly())
    assert not lean._is_neuron(nn.ReLU())


# ------------------------------------------------------------------------------- measurement


def test_saved_bytes_counts_tensors_by_hand() -> None:
    x = torch.rand(10, dtype=F64, requires_grad=True)
    with saved_tensor_bytes() as saved:
        assert (saved.bytes, saved.tensors) == (0, 0)
        a = x.exp()  # keeps its output: 80 bytes
        b = (a * 2).sin()  # mul by a number keeps nothing; sin keeps its input: 80 bytes
        c = x[2:] * x[2:]  # a view of a parameter-like leaf: not counted
        d = a[3:].cos()  # a view of a's storage: counted once already
    assert (saved.bytes, saved.tensors) == (160, 2)
    assert b.requires_grad and c.requires_grad and d.requires_grad


def test_saved_bytes_tells_devices_apart() -> None:
    """A storage is known by its device and address: an empty CPU storage and a meta storage both
    have address 0 and count twice."""
    cpu = torch.empty(0, requires_grad=True)
    meta = torch.empty(4, device="meta", requires_grad=True)
    with saved_tensor_bytes() as saved:
        cpu.exp()
        meta.exp()
    assert (saved.bytes, saved.tensors) == (16, 2)


# -------------------------------------------------------------------------------- set_memory


def test_set_memory_on_a_container_reaches_the_outermost_modules() -> None:
    inner = gac.LIF()
    net = nn.Sequential(gac.LIF(), nn.ReLU(), nn.Sequential(inner, nn.Identity()))
    assert set_memory(net, "lean") is net
    assert module_memory(net) == {"0": "lean", "2.0": "lean"}
    assert set_memory(net, "default") is net
    assert module_memory(net) == {"0": "default", "2.0": "default"}
    plain = nn.Sequential(nn.ReLU())
    assert set_memory(plain, "default") is plain
    with pytest.raises(ValueError, match=r"memory='lean' cannot apply to Sequential: none of its modules"):
        set_memory(plain, "lean")


# -------------------------------------------------------------------------------- run_layers


def _layers() -> list[nn.Module]:
    torch.manual_seed(0)

    def neuron() -> nn.Module:
        return gac.LIF(0.5, 1.0, "rectangle", True, backend="eager")

    return [
        nn.Conv2d(2, 4, 3, padding=1),  # on the input: a plain convolution
        neuron(),  # lif
        nn.Conv2d(4, 4, 3, padding=1),  # spike_conv2d
        nn.BatchNorm2d(4),
        nn.AvgPool2d(2),
        neuron(),  # bn_lif with the pooling folded in
        nn.Conv2d(4, 4, 1),  # spike_conv2d
        nn.Conv2d(4, 4, 1),  # a plain convolution (its input is not spikes)
        nn.BatchNorm2d(4),
        nn.ReLU(),  # BatchNorm not followed by a neuron: runs as it is
        nn.Conv2d(4, 4, 1),  # a plain convolution
        nn.Identity(),  # runs as it is (not taken for a BatchNorm)
        neuron(),  # lif
        nn.Identity(),
        nn.BatchNorm2d(4),  # at the end: runs as it is
    ]


def _run_default(layers: list[nn.Module], h: Tensor) -> Tensor:
    T = h.shape[0]
    for m in layers:
        if isinstance(m, gac.LIF):
            h = m(h)
        else:
            y = m(h.flatten(0, 1))
            h = y.view(T, -1, *y.shape[1:])
    return h


@pytest.mark.parametrize("grad", [True, False])
def test_run_layers_calls_the_lean_ops_where_they_apply(grad: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Which lean op runs each layer (recorded by wrapping them), against the list worked out by
    hand above, and the numbers of the layers run one by one (float64)."""
    calls: list[tuple[object, ...]] = []

    def record(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            if name == "spike_conv2d":
                calls.append((name, args[2] is not None, kwargs.get("backend")))
            elif name == "bn_lif":
                calls.append((name, kwargs.get("pool"), kwargs.get("backend")))
            else:
                calls.append((name, kwargs.get("backend")))
            return fn(*args, **kwargs)

        return wrapped

    for name in ("lif", "bn_lif", "spike_conv2d"):
        monkeypatch.setattr(lean, name, record(name, getattr(lean, name)))
    layers = [m.double() for m in _layers()]
    ref_layers = [m.double() for m in _layers()]
    x = torch.rand(2, 2, 2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=F64) * 3
    w = torch.randn(2, 2, 4, 4, 4, generator=torch.Generator().manual_seed(6), dtype=F64)
    with torch.set_grad_enabled(grad):
        out = lean.run_layers(layers, x.clone().requires_grad_(grad))
    ref = _run_default(ref_layers, x.clone())
    assert torch.equal(out, ref)
    if grad:
        assert calls == [
            ("lif", "eager"),
            ("spike_conv2d", True, "eager"),
            ("bn_lif", 2, "eager"),
            ("spike_conv2d", True, "eager"),
            ("lif", "eager"),
        ]
        (out * w).sum().backward()
        (ref * w).sum().backward()
        for a, b in zip(layers, ref_layers, strict=True):
            for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
                _close(pb.grad, pa.grad)
    else:
        assert calls == []
    for a, b in zip(layers, ref_layers, strict=True):  # the running statistics updated once
        for ba, bb in zip(a.buffers(), b.buffers(), strict=True):
            assert torch.equal(ba, bb)


# -------------------------------------------------------------------------------- checkpoint


def _segment() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Tanh(), nn.Linear(6, 3)
    ).double()


@pytest.mark.parametrize("wanted", [(True, True), (True, False), (False, True), (False, False)])
def test_checkpoint_against_the_segment_run_once(wanted: tuple[bool, bool]) -> None:
    """Two inputs (the second a scale); outputs, every gradient, the running statistics and the
    random draws (dropout) those of the segment run once with a graph; only the inputs are kept."""
    seg, ref_seg = _segment(), _segment()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4, 5, generator=g, dtype=F64)
    scale = torch.rand(4, 1, generator=g, dtype=F64) + 0.5
    w = torch.randn(4, 3, generator=g, dtype=F64)

    def run(module: nn.Module):  # type: ignore[no-untyped-def]
        return lambda a, b: module(a * b)

    xs = [x.clone().requires_grad_(wanted[0]), scale.clone().requires_grad_(wanted[1])]
    ref_xs = [t.clone().requires_grad_(r) for t, r in zip((x, scale), wanted, strict=True)]
    torch.manual_seed(9)
    with saved_tensor_bytes() as saved:
        out = checkpoint(run(seg), [seg], *xs)
    torch.manual_seed(9)
    ref = run(ref_seg)(*ref_xs)
    assert torch.equal(out, ref)
    kept = [t for t, r in zip((x, scale), wanted, strict=True) if not r]
    assert (saved.bytes, saved.tensors) == (sum(t.numel() * 8 for t in kept), len(kept))
    torch.manual_seed(123)  # the backward pass must draw the first run's numbers again
    (out * w).sum().backward()
    (ref * w).sum().backward()
    for a, b in zip(xs, ref_xs, strict=True):
        if b.requires_grad:
            _close(b.grad, a.grad)
        else:
            assert a.grad is None
    for pa, pb in zip(seg.parameters(), ref_seg.parameters(), strict=True):
        _close(pb.grad, pa.grad)
    for ba, bb in zip(seg.buffers(), ref_seg.buffers(), strict=True):
        assert torch.equal(ba, bb)


def test_checkpoint_with_frozen_parameters_and_no_gradients() -> None:
    seg = _segment().eval()
    for p in seg.parameters():
        p.requires_grad_(False)
    x = torch.randn(4, 5, dtype=F64, requires_grad=True)
    one = torch.ones(4, 1, dtype=F64)
    out = checkpoint(lambda a, b: seg(a * b), [seg], x, one)
    ref_x = x.detach().clone().requires_grad_()
    ref = seg(ref_x)
    assert torch.equal(out, ref)
    ref.sum().backward()  # either order works (test_memory: a BatchNorm shared inside and outside)
    out.sum().backward()
    _close(ref_x.grad, x.grad)
    assert all(p.grad is None for p in seg.parameters())
    with torch.no_grad():
        assert torch.equal(checkpoint(lambda a: seg(a), [seg], x), ref.detach())
    # nothing to differentiate: the input wants no gradient and the parameters are frozen
    y = checkpoint(lambda a: seg(a), [seg], x.detach())
    assert torch.equal(y, ref.detach()) and not y.requires_grad


def test_checkpoint_refuses_a_segment_returning_no_tensor() -> None:
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match=r"^checkpoint: expected the segment to return a tensor, got tuple$"):
        checkpoint(lambda a: (a, a), [], x)


def test_set_memory_default_on_a_foreign_net_and_bad_module() -> None:
    from spikingjelly.activation_based import layer, neuron

    backbone = nn.Sequential(neuron.LIFNode(step_mode="m"), layer.Conv2d(4, 4, 3, padding=1, step_mode="m"))
    net = gac.wrap(backbone, framework="spikingjelly", T=2, in_channels=3, out_channels=4)
    set_memory(net.encoder, "lean")
    assert set_memory(net, "default") is net  # "default" applies to anything
    assert set(module_memory(net).values()) == {"default"}
    with pytest.raises(TypeError, match=r"^module: expected a torch.nn.Module, got str$"):
        set_memory("net", "lean")  # type: ignore[arg-type]


# ------------------------------------------------------------------ the eager strided 1x1 path


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    "wanted", [(True, True, True), (True, False, False), (False, True, False), (False, False, True)]
)
def test_pointwise_conv_against_the_convolution(
    bias: bool, channels_last: bool, wanted: tuple[bool, ...]
) -> None:
    """``lean.pointwise_conv`` (stride 2) against the module itself: output, the gradients wanted
    (None for the others), and the layouts of the gradients (those of the input and weight)."""
    if not bias and not any(wanted[:2]):
        wanted = (False, True, False)
    torch.manual_seed(12)
    convs = []
    for _ in range(2):
        conv = nn.Conv2d(3, 4, 1, stride=2, bias=bias).double()
        if channels_last:
            conv = conv.to(memory_format=torch.channels_last)
        conv.weight.requires_grad_(wanted[1])
        if bias:
            conv.bias.requires_grad_(wanted[2])
        convs.append(conv)
    convs[1].load_state_dict(convs[0].state_dict())
    x, _, _ = _pointwise_inputs(False, channels_last)
    w = torch.randn(2, 4, 4, 3, generator=torch.Generator().manual_seed(13), dtype=F64)
    results = []
    for conv, fn in zip(convs, (lambda c, a: c(a), lean.pointwise_conv), strict=True):
        xa = x.clone(memory_format=torch.preserve_format).requires_grad_(wanted[0])
        out = fn(conv, xa)
        (out * w).sum().backward()
        results.append(
            (out.detach(), xa.grad, conv.weight.grad, None if conv.bias is None else conv.bias.grad)
        )
    (o1, *g1), (o2, *g2) = results
    assert torch.equal(o1, o2)
    _same_grads(g1, g2)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if wanted[0]:
        assert g2[0].is_contiguous(memory_format=fmt)
    if g2[1] is not None:
        assert g2[1].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("mode", ["lean", "checkpoint"])
def test_set_memory_foreign_message_in_full(mode: str) -> None:
    from spikingjelly.activation_based import layer, neuron

    backbone = nn.Sequential(neuron.LIFNode(step_mode="m"), layer.Conv2d(4, 4, 3, padding=1, step_mode="m"))
    net = gac.wrap(backbone, framework="spikingjelly", T=2, in_channels=3, out_channels=4)
    cls = f"{neuron.LIFNode.__module__}.LIFNode"
    tail = (
        f": spikingjelly modules have no lean path; set it on gac_coding's modules alone "
        f"(e.g. set_memory(net.encoder, '{mode}') or gac.wrap(..., memory='{mode}') for the GAC "
        f"encoder of a wrapped net)"
    )
    for module, name in ((net, "backbone.0"), (neuron.LIFNode(step_mode="m"), "the module")):
        with pytest.raises(ValueError) as info:
            set_memory(module, mode)
        assert str(info.value) == f"memory='{mode}' cannot apply to {name} ({cls}){tail}"


def test_checkpoint_segment_ignoring_its_input_and_unused_parameters() -> None:
    """A second run that does not depend on what wants a gradient: None for those gradients."""
    used, unused = nn.Linear(3, 3).double(), nn.Linear(3, 3).double()
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    out = checkpoint(lambda a: used(a), [used, unused], x)
    ref_x = x.detach().clone().requires_grad_()
    used(ref_x).sum().backward()
    grads = [p.grad.clone() for p in used.parameters()]
    used.zero_grad()
    out.sum().backward()
    _close(ref_x.grad, x.grad)
    for p, g in zip(used.parameters(), grads, strict=True):
        _close(g, p.grad)
    assert all(p.grad is None for p in unused.parameters())
    y = torch.randn(2, 3, dtype=F64, requires_grad=True)
    z = checkpoint(lambda a: a.detach() * 2, [], y)
    assert z.requires_grad  # the Function's output, though the segment ignores its input's graph
    z.sum().backward()
    assert y.grad is None


@pytest.mark.parametrize("static", [True, False])
def test_lean_gated_one_step(static: bool) -> None:
    """T = 1 (a static input of one step)."""
    p = gac.RECIPES["imagenet"]
    g = torch.Generator().manual_seed(21)
    u = torch.randn(*((2, 3, 4, 4) if static else (1, 2, 3, 4, 4)), generator=g, dtype=F64) * 2
    ta = torch.randn(1, 2, generator=g, dtype=F64)
    sca = torch.randn(u.shape, generator=g, dtype=F64)
    w = torch.randn(1, 2, 3, 4, 4, generator=g, dtype=F64)
    res = []
    for fn in (default_gated_lif, lean.gated_lif, None):
        args = [t.clone().requires_grad_() for t in (u, ta, sca)]
        out = (_op_gated(*args, p, static) if fn is None else fn(*args, p, static=static))[0]
        res.append((out.detach(), torch.autograd.grad((out * w).sum(), args)))
    for out, grads in res[1:]:
        assert torch.equal(out, res[0][0])
        for a, b in zip(res[0][1], grads, strict=True):
            _close(a, b)


# ---------------------------------------------------------------- what the strided 1x1 path keeps

# (convolution, whether pointwise_conv keeps only the positions it reads), by hand: only a 1x1
# kernel of the same stride s > 1 both ways, no padding, no dilation, one group, is lean
CONVS = [
    (lambda: nn.Conv2d(4, 6, 1, stride=2), True),
    (lambda: nn.Conv2d(4, 6, (1, 1), stride=(2, 2), padding=(0, 0), dilation=(1, 1)), True),
    (lambda: nn.Conv2d(4, 6, 1, stride=3, bias=False), True),
    (lambda: nn.Conv2d(4, 6, 1), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=(2, 1)), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=(1, 2)), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=2, padding=1), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=2, padding=(0, 1)), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=2, padding=(1, 0)), False),
    (lambda: nn.Conv2d(4, 6, 3, stride=2), False),
    (lambda: nn.Conv2d(4, 6, (1, 3), stride=2), False),
    (lambda: nn.Conv2d(4, 6, (3, 1), stride=2), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=2, dilation=2), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=2, dilation=(1, 2)), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=2, dilation=(2, 1)), False),
    (lambda: nn.Conv2d(4, 6, 1, stride=2, groups=2), False),
]


def _rows(n: int, s: int) -> int:
    return (n + s - 1) // s


@pytest.mark.parametrize(("make", "lean_expected"), CONVS, ids=[str(i) for i in range(len(CONVS))])
@pytest.mark.parametrize("wanted", [(True, True), (True, False), (False, True)])
def test_pointwise_conv_keeps_only_what_it_reads(make, lean_expected: bool, wanted) -> None:  # type: ignore[no-untyped-def]
    """The bytes autograd keeps, worked out by hand: the lean path keeps the ``ceil(H / s) *
    ceil(W / s)`` positions read (a copy), the convolution itself its whole input; a frozen weight
    is kept too (a leaf wanting no gradient counts), a trained one is not. The numbers are the
    convolution's either way."""
    torch.manual_seed(14)
    conv = make().double()
    conv.weight.requires_grad_(wanted[1])
    x0 = torch.randn(2, 4, 7, 5, generator=torch.Generator().manual_seed(15), dtype=F64)
    leaf = x0.clone().requires_grad_(wanted[0])
    x = leaf.clone() if wanted[0] else leaf  # a non-leaf when it wants a gradient: counted
    with saved_tensor_bytes() as saved:
        out = lean.pointwise_conv(conv, x)
    ref = conv(x0)
    assert torch.equal(out.detach(), ref.detach())
    s = conv.stride[0]
    kept = 2 * 4 * _rows(7, s) * _rows(5, s) if lean_expected else 2 * 4 * 7 * 5
    frozen = 0 if wanted[1] else conv.weight.numel()
    assert (saved.bytes, saved.tensors) == (8 * (kept + frozen), 1 + (frozen > 0))
    with torch.no_grad(), saved_tensor_bytes() as none:
        assert torch.equal(lean.pointwise_conv(conv, x), ref.detach())
    assert (none.bytes, none.tensors) == (0, 0)


def test_pointwise_conv_of_stride_one_runs_the_convolution_itself() -> None:
    """Stride 1 reads every position: the convolution runs as it is and keeps its input as it
    is, here a slice of a larger tensor, whose whole storage counts (no compact copy made)."""
    conv = nn.Conv2d(4, 6, 1).double()
    big = torch.randn(2, 4, 9, 9, dtype=F64, requires_grad=True) * 1.0
    x = big[:, :, :7, :5]
    with saved_tensor_bytes() as saved:
        out = lean.pointwise_conv(conv, x)
    assert torch.equal(out, conv(x))
    assert (saved.bytes, saved.tensors) == (8 * 2 * 4 * 9 * 9, 1)


def test_pointwise_conv_keeps_nothing_when_nothing_wants_a_gradient() -> None:
    conv = nn.Conv2d(4, 6, 1, stride=2).double().requires_grad_(False)
    x = torch.randn(2, 4, 7, 5, dtype=F64)
    with saved_tensor_bytes() as saved:
        out = lean.pointwise_conv(conv, x)
    assert not out.requires_grad and (saved.bytes, saved.tensors) == (0, 0)
    assert torch.equal(out, conv(x))


# ------------------------------------------------------- the CUDA random state, by stand-ins


class _Dev:
    """Stands in for a tensor where only its device is read."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)


def test_rng_devices_by_hand() -> None:
    from gac_coding.ops import memory

    devs = [_Dev(d) for d in ("cuda:2", "cpu", "cuda", "cuda:0", "meta", "cuda:2", "cuda:1")]
    assert memory._rng_devices(devs) == [0, 1, 2]  # type: ignore[arg-type]
    assert memory._rng_devices([_Dev("cpu")]) == []  # type: ignore[list-item]


def test_checkpoint_saves_and_restores_the_cuda_random_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU needed: stand-ins for the CUDA random-state calls record what the checkpoint hands
    them. The forward pass reads the state of each device of the inputs (two here, by a stand-in
    ``_rng_devices``), the backward pass forks the random state of exactly those devices and,
    inside the fork, sets each back to what it was at the first run, before running again."""
    from gac_coding.ops import memory

    log: list[tuple[object, ...]] = []
    inside = [False]
    real_fork = torch.random.fork_rng

    @contextlib.contextmanager
    def fork_rng(*args, **kwargs):  # type: ignore[no-untyped-def]
        log.append(("fork", args, kwargs))
        with real_fork(devices=[]):
            inside[0] = True
            try:
                yield
            finally:
                inside[0] = False
        log.append(("joined",))

    def get_rng_state(device="cuda"):  # type: ignore[no-untyped-def]
        log.append(("get", device))
        return torch.tensor([10 + device], dtype=torch.uint8) if isinstance(device, int) else None

    def set_rng_state(new_state, device="cuda"):  # type: ignore[no-untyped-def]
        state = new_state.tolist() if isinstance(new_state, Tensor) else new_state
        log.append(("set", state, device, inside[0]))

    def run(a: Tensor) -> Tensor:
        log.append(("run", inside[0]))
        return F.dropout(a, 0.5) * 3

    monkeypatch.setattr(memory, "_rng_devices", lambda tensors: [1, 3])
    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    monkeypatch.setattr(torch.cuda, "get_rng_state", get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    x = torch.randn(6, 8, dtype=F64, requires_grad=True)
    torch.manual_seed(30)
    out = checkpoint(run, [], x)
    assert log == [("get", 1), ("get", 3), ("run", False)]
    log.clear()
    torch.manual_seed(31)
    out.backward(torch.ones_like(out))
    assert log == [
        ("fork", (), {"devices": [1, 3]}),
        ("set", [11], 1, True),
        ("set", [13], 3, True),
        ("run", True),
        ("joined",),
    ]
    torch.manual_seed(30)
    ref = F.dropout(torch.ones_like(x), 0.5) * 3  # the first run's draws: the same mask
    assert torch.equal(x.grad, ref)


# ------------------------------------------- the custom operators chosen while tracing, eagerly


@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("recipe", ["cifar", "imagenet"])
def test_gated_lif_while_tracing_runs_the_custom_operator(
    static: bool, recipe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the compiler ``lean.gated_lif`` hands its arguments to the custom operator (here with
    the tracing test stood in for, the operator run eagerly): the default op's outputs, and its
    gradients for float32 scores of a float64 input (converted to the input's dtype)."""
    monkeypatch.setattr(lean, "_tracing", lambda: True)
    calls: list[str] = []
    real_op = torch.ops.gac_coding.lean_gated_lif

    def op(*args):  # type: ignore[no-untyped-def]
        calls.append(args[-1])
        return real_op(*args)

    monkeypatch.setattr(torch.ops.gac_coding, "lean_gated_lif", op)
    p = gac.RECIPES[recipe]
    u, ta, sca, w = _gated_inputs(static)
    ta32 = ta.float()
    results = []
    for fn in (default_gated_lif, lean.gated_lif):
        args = [u.clone().requires_grad_(), ta32.clone().requires_grad_(), sca.clone().requires_grad_()]
        out, fired, gate = fn(*args, p, static=static, backend="eager")
        assert out.dtype == F64 and gate.dtype == F64
        (out * w).sum().backward()
        results.append((out.detach(), fired, gate, [a.grad for a in args]))
    assert calls == ["eager"]
    (o1, f1, m1, g1), (o2, f2, m2, g2) = results
    assert torch.equal(o1, o2) and torch.equal(f1, f2) and torch.equal(m1, m2)
    for a, b in zip(g1, g2, strict=True):
        if a.dtype == torch.float32:
            assert b.dtype == torch.float32 and torch.allclose(a, b, rtol=1e-6, atol=1e-6)
        else:
            _close(a, b)


@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv_while_tracing_runs_the_custom_operator(
    bias: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the compiler ``pointwise_conv`` returns the custom operator's first output (the
    convolution; its second is the kept input): the module's numbers, keeping a quarter of it."""
    monkeypatch.setattr(lean, "_tracing", lambda: True)
    torch.manual_seed(16)
    conv = nn.Conv2d(4, 6, 1, stride=2, bias=bias).double()
    ref_conv = nn.Conv2d(4, 6, 1, stride=2, bias=bias).double()
    ref_conv.load_state_dict(conv.state_dict())
    x0 = torch.randn(2, 4, 7, 5, generator=torch.Generator().manual_seed(17), dtype=F64)
    w = torch.randn(2, 6, 4, 3, generator=torch.Generator().manual_seed(18), dtype=F64)
    leaf, ref_x = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    x = leaf.clone()
    with saved_tensor_bytes() as saved:
        out = lean.pointwise_conv(conv, x)
    ref = ref_conv(ref_x)
    assert torch.equal(out.detach(), ref.detach())
    assert (saved.bytes, saved.tensors) == (8 * 2 * 4 * 4 * 3, 1)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    _close(ref_x.grad, leaf.grad)
    for a, b in zip(ref_conv.parameters(), conv.parameters(), strict=True):
        _close(a.grad, b.grad)


def test_checkpoint_while_compiling_is_torchs_non_reentrant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the compiler (stood in for) ``checkpoint`` is ``torch.utils.checkpoint`` with
    ``use_reentrant=False`` passed (no warning), which ``torch.autograd.grad`` can differentiate
    (the reentrant one refuses): the segment's numbers."""
    torch.manual_seed(19)
    lin, ref_lin = nn.Linear(5, 3).double(), nn.Linear(5, 3).double()
    ref_lin.load_state_dict(lin.state_dict())
    x0 = torch.randn(4, 5, generator=torch.Generator().manual_seed(20), dtype=F64)
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(21), dtype=F64)
    x, ref_x = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = checkpoint(lambda a: lin(a).tanh(), [lin], x)
        grads = torch.autograd.grad((out * w).sum(), [x, *lin.parameters()])
    monkeypatch.undo()
    ref = ref_lin(ref_x).tanh()
    ref_grads = torch.autograd.grad((ref * w).sum(), [ref_x, *ref_lin.parameters()])
    assert torch.equal(out, ref)
    _same_grads(ref_grads, grads)


# --------------------------------------------------- the backend of the gated LIF's backward


@pytest.mark.parametrize("backend", ["eager", *(["cpp"] if _cpp.toolchain_available() else [])])
@pytest.mark.parametrize("static", [True, False])
def test_gated_lif_backward_runs_on_the_backend_set(
    backend: str, static: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backward pass runs the forward again and then the backward on the backend the setting
    names (``"cpp"`` where a C++ toolchain is found: the same as the forward), with the default
    op's gradients."""
    from gac_coding.ops import functional

    plans: list[tuple[str, ...]] = []
    real = functional._gated_backward

    def recorded(plan, *args):  # type: ignore[no-untyped-def]
        plans.append(plan.names)
        return real(plan, *args)

    monkeypatch.setattr(functional, "_gated_backward", recorded)
    p = gac.RECIPES["imagenet"]
    u, ta, sca, w = _gated_inputs(static)
    grads = []
    for fn in (default_gated_lif, lean.gated_lif):
        args = [t.clone().requires_grad_() for t in (u, ta, sca)]
        out = fn(*args, p, static=static, backend=backend)[0]
        grads.append(torch.autograd.grad((out * w).sum(), args))
    assert plans == [(backend,), (backend,)]  # the default op's, then the lean op's
    _same_grads(grads[0], grads[1])


# ----------------------------------------------------------------------- a block's shortcut


def test_block_shortcut_by_kind() -> None:
    """An identity hands ``x`` on; a sequence opening with a 1x1 strided convolution runs it lean
    (a quarter of ``x`` kept) and the rest as it is; anything else (a bare convolution, a sequence
    opening with pooling, an empty sequence) runs as it is: the module's numbers every time."""
    torch.manual_seed(22)
    x0 = torch.randn(2, 4, 8, 6, generator=torch.Generator().manual_seed(23), dtype=F64)
    leaf = x0.clone().requires_grad_()
    x = leaf * 1.0  # a non-leaf, counted where it is kept

    def conv() -> nn.Conv2d:
        return nn.Conv2d(4, 6, 1, stride=2, bias=False).double()

    assert lean.block_shortcut(nn.Identity(), x) is x
    cases = [
        (nn.Sequential(conv(), nn.BatchNorm2d(6).double()), 2 * 4 * 4 * 3),
        (nn.Sequential(conv()), 2 * 4 * 4 * 3),
        (conv(), 2 * 4 * 8 * 6),
        # the pooling keeps its input, the convolution the pooled one
        (nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(4, 6, 1, bias=False).double()), 2 * 4 * (48 + 12)),
        (nn.Sequential(), 0),
    ]
    for module, kept in cases:
        with saved_tensor_bytes() as saved:
            out = lean.block_shortcut(module, x)
        assert torch.equal(out, module(x))
        bn = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        # BatchNorm keeps its input, the running mean and variance, the batch mean and inverse std
        bn_bytes = 8 * (2 * 6 * 4 * 3 + 4 * 6) if bn else 0
        assert saved.bytes == 8 * kept + bn_bytes


# ------------------------------------------------------------------------ on the meta device


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_conv_gradients_on_the_meta_device(bias: bool, channels_last: bool) -> None:
    """The strided 1x1 path on another device than the default (meta: shapes only) gives every
    gradient on that device with the module's shapes and layouts (the meta convolution backward
    reads the bias's size from its argument)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    grads = []
    for fn in (lambda c, a: c(a), lean.pointwise_conv):
        conv = nn.Conv2d(4, 6, 1, stride=2, bias=bias, device="meta").to(memory_format=fmt)
        x = torch.empty(2, 4, 7, 5, device="meta").contiguous(memory_format=fmt).requires_grad_()
        out = fn(conv, x)
        out.backward(torch.empty_like(out))
        grads.append([x.grad, conv.weight.grad, None if conv.bias is None else conv.bias.grad])
    for a, b in zip(*grads, strict=True):
        if a is None:
            assert b is None
        else:
            assert b.device.type == "meta" and b.shape == a.shape and b.dtype == a.dtype
            assert b.is_contiguous(memory_format=fmt if b.dim() == 4 else torch.contiguous_format)


# ------------------------------------------------------- which gated op runs, and its outputs

SUBSETS = [(False, False, False), (True, False, False), (False, True, False), (False, False, True)]


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("wanted", SUBSETS)
def test_gated_lif_runs_the_default_op_exactly_when_nothing_wants_a_gradient(
    grad: bool, wanted: tuple[bool, bool, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lean.gated_lif`` (its defaults: not static, backend ``"auto"``) hands the call to the
    default op with gradients off or no input wanting one, else runs its own: the default op's
    outputs either way, spikes and gate never differentiable, the same gradients."""
    from gac_coding.ops import functional

    p = gac.RECIPES["cifar"]
    u, ta, sca, w = _gated_inputs(False)
    ref_args = [t.clone().requires_grad_(r) for t, r in zip((u, ta, sca), wanted, strict=True)]
    ref = default_gated_lif(*ref_args, p)
    calls: list[tuple[object, ...]] = []
    real = functional.gated_lif

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((len(args), kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(functional, "gated_lif", recorded)
    args = [t.clone().requires_grad_(r) for t, r in zip((u, ta, sca), wanted, strict=True)]
    with torch.set_grad_enabled(grad):
        out = lean.gated_lif(*args, p)
    lean_ran = grad and any(wanted)
    assert calls == ([] if lean_ran else [(4, {"static": False, "backend": "auto"})])
    for a, b in zip(ref, out, strict=True):
        assert torch.equal(a.detach(), b.detach())
    assert out[0].requires_grad == lean_ran
    assert not out[1].requires_grad and not out[2].requires_grad
    if lean_ran:
        grads = torch.autograd.grad((out[0] * w).sum(), [a for a in args if a.requires_grad])
        ref_grads = torch.autograd.grad((ref[0] * w).sum(), [a for a in ref_args if a.requires_grad])
        _same_grads(ref_grads, grads)


# --------------------------------------------------------------- checkpoint and memory checks


def test_params_of_each_trained_parameter_once() -> None:
    from gac_coding.ops import memory

    a, b = nn.Linear(2, 2), nn.Linear(2, 3)
    b.bias.requires_grad_(False)
    shared = nn.Sequential(a, b, a)
    assert [id(p) for p in memory._params_of([a, shared, b, a])] == [id(a.weight), id(a.bias), id(b.weight)]


def test_checkpoint_of_a_module_listed_twice_gives_its_gradients_once() -> None:
    torch.manual_seed(24)
    lin, ref_lin = nn.Linear(3, 3).double(), nn.Linear(3, 3).double()
    ref_lin.load_state_dict(lin.state_dict())
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(25), dtype=F64)
    out = checkpoint(lambda a: lin(lin(a)), [lin, lin], x)
    out.sum().backward()
    ref_lin(ref_lin(x)).sum().backward()
    _same_grads([p.grad for p in ref_lin.parameters()], [p.grad for p in lin.parameters()])


def test_checkpoint_without_gradients_is_the_segment_itself() -> None:
    """Without gradients nothing is checked nor kept: the segment's result, a tuple here."""
    x = torch.randn(3, requires_grad=True)
    with torch.no_grad():
        pair = checkpoint(lambda a: (a, a * 2), [], x)
    assert isinstance(pair, tuple) and pair[0] is x and torch.equal(pair[1], x.detach() * 2)


def test_lean_is_off_while_jit_traces_or_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    from gac_coding.ops.memory import lean_active

    seen: list[bool] = []

    def f(x: Tensor) -> Tensor:
        seen.append(lean_active("lean"))
        return x * 2

    assert lean_active("lean") and not lean_active("default")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(f, torch.ones(2), check_trace=False)
    assert seen == [False]
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert not lean_active("lean")


def test_check_memory_messages_in_full() -> None:
    from gac_coding.ops.memory import check_memory

    with pytest.raises(TypeError) as info:
        check_memory(3)
    assert str(info.value) == "memory: expected one of ['default', 'lean', 'checkpoint'], got int"
    with pytest.raises(ValueError) as info2:
        check_memory("checkpoint", "memory (LIF)", ("default", "lean"))
    assert (
        str(info2.value)
        == "memory (LIF): 'checkpoint' does not apply here; expected one of ['default', 'lean']"
    )
    with pytest.raises(ValueError) as info3:
        check_memory("small", "m", ("default",))
    assert str(info3.value) == "m: expected one of ['default'], got 'small'"


@pytest.mark.parametrize("tracing", [False, True])
def test_gated_lif_scores_in_the_dtype_of_the_input(tracing: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Float64 scores of a float32 input are computed with in float32, as by the default op: the
    same gate bit for bit (float64 products rounded once to float32 differ here and there)."""
    if tracing:
        monkeypatch.setattr(lean, "_tracing", lambda: True)
    p = gac.RECIPES["cifar"]
    g = torch.Generator().manual_seed(26)
    T, shape = 4, (3, 8, 6, 6)
    u = torch.randn(T, *shape, generator=g)
    ta = torch.randn(T, shape[0], generator=g, dtype=F64) * 3
    sca = torch.randn(T, *shape, generator=g, dtype=F64) * 3
    w = torch.randn(T, *shape, generator=g)
    res = []
    for fn in (default_gated_lif, lean.gated_lif):
        args = [t.clone().requires_grad_() for t in (u, ta, sca)]
        out, fired, gate = fn(*args, p, backend="eager")
        assert out.dtype == gate.dtype == torch.float32
        grads = torch.autograd.grad((out * w).sum(), args)
        res.append((out.detach(), fired, gate, grads))
    (o1, f1, m1, g1), (o2, f2, m2, g2) = res
    assert torch.equal(m1, m2) and torch.equal(f1, f2) and torch.equal(o1, o2)
    for a, b in zip(g1, g2, strict=True):
        assert a.dtype == b.dtype and torch.allclose(a, b, rtol=1e-5, atol=1e-6)
