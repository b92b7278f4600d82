"""Pinned tests of the lean ops' entry points (``ops/lean.py``, ``ops/memory.py``,
``adapters/memory.py``): the custom operators that ``torch.compile`` runs (called here eagerly,
judged against the default ops in float64), their fake (shape-only) implementations, and the
checkpoint and measurement helpers."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode

import gac_coding as gac
from gac_coding import set_memory
from gac_coding.ops import LIFParams, backends, lean
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
    ref.sum().backward()  # first: the checkpoint's backward puts the buffers back in place
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
