"""The neuron-ops layer: LIFParams and traceability (the backend choice: tests/test_backend_choice.py).

Tracing: ``torch.compile(fullgraph=True)`` (forward and backward) and ``torch.export`` of the LIF,
the fused LIF+gate and the modules built on them give eager's numbers in float64; the custom
operators pass ``torch.library.opcheck`` (schema, fake kernels with the real output strides,
autograd registration) for sequences, static inputs and channels-last steps.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding import neuron, ops
from gac_coding.coding import check_image_input
from gac_coding.ops import LIFParams, backends
from gac_coding.ops.functional import gated_lif_decomposed, inference_decompositions, lif_decomposed
from gac_coding.ops.layout import is_channels_last_step

F64 = torch.float64


@pytest.fixture
def eager():
    """Pin the eager backend for the process (the same arithmetic in every compared run)."""
    with backends.use_backend("eager"):
        yield backends


# ------------------------------------------------------------------------------------ LIFParams


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"decay": 1.5}, ValueError, "decay"),
        ({"decay": -0.1}, ValueError, "decay"),
        ({"decay": True}, TypeError, "decay"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"threshold": float("inf")}, ValueError, "threshold"),
        ({"threshold": float("nan")}, ValueError, "threshold"),
        ({"threshold": "1"}, TypeError, "threshold"),
        ({"surrogate": "sigmoid"}, ValueError, "surrogate"),
        ({"surrogate": 3}, TypeError, "surrogate"),
        ({"detach_reset": "yes"}, TypeError, "detach_reset"),
        ({"detach_reset": 2}, TypeError, "detach_reset"),
    ],
)
def test_lif_params_are_checked_once_at_construction(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        LIFParams(**kwargs)
    with pytest.raises(exc, match=match):
        LIFParams().replace(**kwargs)  # a changed copy is checked again


def test_lif_params_value_semantics() -> None:
    p = LIFParams(decay=1, threshold=2, surrogate="rectangle", detach_reset=1)
    assert (p.decay, p.threshold, p.detach_reset) == (1.0, 2.0, True)
    assert type(p.decay) is float and type(p.detach_reset) is bool
    assert p.surrogate_code == 1 and p.surrogate_fn is ops.surrogate_rectangle
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.decay = 0.5  # type: ignore[misc]
    same = LIFParams(1.0, 2.0, "rectangle", True)
    assert p == same and hash(p) == hash(same)
    # a read-only mapping: the recipes keep working as keyword arguments
    assert dict(gac.RECIPES["imagenet"]) == {
        "decay": 0.25,
        "threshold": 0.5,
        "surrogate": "rectangle",
        "detach_reset": True,
    }
    assert gac.RECIPES["cifar"]["decay"] == 0.5
    with pytest.raises(KeyError):
        p["tau"]
    assert gac.LIF(**gac.RECIPES["imagenet"]).params == gac.RECIPES["imagenet"]
    # the named surrogate functions have kernel codes, any other callable has none
    assert LIFParams(surrogate=ops.surrogate_triangle).surrogate_code == 0
    assert LIFParams(surrogate=lambda d: d).surrogate_code is None


def test_ops_reject_bad_arguments() -> None:
    x = torch.rand(3, 2)
    with pytest.raises(TypeError, match="params"):
        ops.lif(x, {"decay": 0.5})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x"):
        ops.lif(x.numpy(), LIFParams())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        ops.lif(x, LIFParams(), steps=0)
    with pytest.raises(TypeError, match="ta"):
        ops.gated_lif(x, torch.ones(3, 2, dtype=torch.int64), x, LIFParams())
    with pytest.raises(ValueError, match="sca"):
        ops.gated_lif(x, torch.ones(3, 2), torch.ones(4), LIFParams())


# ------------------------------------------------------------------------ custom-op contracts


def _steps(T: int, B: int, channels_last: bool, dtype=F64) -> Tensor:
    flat = torch.randn(T * B, 3, 4, 5, dtype=dtype) * 1.2 + 0.6
    if channels_last:
        flat = flat.contiguous(memory_format=torch.channels_last)
    return flat.view(T, B, 3, 4, 5)


# schema, fake kernels (shapes, dtypes, strides vs the real kernels), autograd registration; the
# AOT-dispatch checks are the compile tests below
CHECKS = ("test_schema", "test_faketensor", "test_autograd_registration")


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_custom_ops_pass_opcheck(eager, static: bool, channels_last: bool) -> None:
    T, B = 3, 2
    x = _steps(1 if static else T, B, channels_last)
    x = (x[0] if static else x).detach().requires_grad_()
    steps = T if static else 0
    lif_op, gated_op = torch.ops.gac_coding.lif.default, torch.ops.gac_coding.gated_lif.default
    torch.library.opcheck(lif_op, (x, steps, 0.5, 1.0, 0, False, True), test_utils=CHECKS)
    torch.library.opcheck(lif_op, (x.detach(), steps, 0.25, 0.5, 1, True, False), test_utils=CHECKS)
    # the backend setting: a plain string argument (default "auto")
    torch.library.opcheck(lif_op, (x, steps, 0.5, 1.0, 1, False, True, "eager"), test_utils=CHECKS)
    ta = torch.randn(T, B, dtype=F64, requires_grad=True)
    for sca_steps in (None, T):
        sca = _steps(sca_steps or 1, B, channels_last)
        sca = (sca[0] if sca_steps is None else sca).detach().requires_grad_()
        torch.library.opcheck(gated_op, (x, ta, sca, steps, 0.5, 1.0, 0, False, True), test_utils=CHECKS)
        args = (x, ta, sca, steps, 0.5, 1.0, 1, True, True, "eager")
        torch.library.opcheck(gated_op, args, test_utils=CHECKS)


# ------------------------------------------------------------------------------------ compile


def _grads(out: Tensor, inputs: list[Tensor], grad: Tensor) -> tuple[Tensor, ...]:
    return torch.autograd.grad(out, inputs, grad)


@pytest.mark.parametrize(
    "static,channels_last,recipe",
    [(False, False, "cifar"), (True, True, "imagenet"), (False, True, "imagenet"), (True, False, "cifar")],
)
def test_compiled_lif_equals_eager(eager, static: bool, channels_last: bool, recipe: str) -> None:
    p = gac.RECIPES[recipe]
    x = _steps(1 if static else 4, 2, channels_last)
    x = (x[0] if static else x).detach().requires_grad_()
    steps = 4 if static else None

    def f(x: Tensor) -> Tensor:
        return neuron.lif(x, **p, steps=steps) * torch.arange(1.0, 3.0, dtype=F64).view(1, 2, 1, 1, 1)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out, ref = compiled(x), f(x)
    assert torch.equal(out, ref)
    assert is_channels_last_step(out[0]) == channels_last
    g = torch.randn_like(ref)
    (g_c,), (g_e,) = _grads(out, [x], g), _grads(ref, [x], g)
    torch.testing.assert_close(g_c, g_e, rtol=0, atol=0)  # the same backend, the same arithmetic


def test_inductor_compiles_lif_module_and_gate_unit(eager) -> None:
    torch.manual_seed(0)
    unit = gac.GatedAttentionUnit(channels=3, T=4).double()
    lif = gac.LIF(**gac.RECIPES["imagenet"])

    def f(u: Tensor) -> Tensor:
        return lif(unit(u) * 3.0 + u)

    compiled = torch.compile(f, fullgraph=True)  # inductor
    u = (torch.randn(4, 2, 3, 5, 5, dtype=F64) * 1.5 + 0.5).requires_grad_()
    out, ref = compiled(u), f(u)
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    params = list(unit.parameters())
    for a, b in zip(_grads(out, [u, *params], g), _grads(ref, [u, *params], g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("sca_per_step", [False, True])
def test_compiled_gated_lif_equals_eager(eager, static: bool, sca_per_step: bool) -> None:
    T, B = 3, 2
    p = LIFParams(0.5, 1.0, "triangle", False)
    u = _steps(1 if static else T, B, True)
    u = (u[0] if static else u).detach().requires_grad_()
    ta = torch.randn(T, B, dtype=torch.float32, requires_grad=True)  # cast to u's dtype inside
    sca = _steps(T if sca_per_step else 1, B, False)
    sca = (sca if sca_per_step else sca[0]).detach().requires_grad_()

    def f(u: Tensor, ta: Tensor, sca: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return gac.attention.gated_lif(u, ta, sca, **p, static=static)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got, ref = compiled(u, ta, sca), f(u, ta, sca)
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b) and a.stride() == b.stride()
    g = torch.randn_like(ref[0])
    for a, b in zip(_grads(got[0], [u, ta, sca], g), _grads(ref[0], [u, ta, sca], g), strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_callable_surrogate_compiles_through_the_decomposition(eager) -> None:
    def sigmoid_slope(d: Tensor) -> Tensor:
        s = torch.sigmoid(4.0 * d)
        return 4.0 * s * (1.0 - s)

    neuron_ = gac.LIF(surrogate=sigmoid_slope, detach_reset=False)
    x = (torch.randn(5, 2, 7, dtype=F64) * 1.5).requires_grad_()
    compiled = torch.compile(neuron_, fullgraph=True, backend="aot_eager")
    out, ref = compiled(x), neuron_(x)
    assert torch.equal(out, ref)
    slow = neuron.lif_reference(x, surrogate=sigmoid_slope)
    g = torch.randn_like(ref)
    (g_c,), (g_e,), (g_s,) = _grads(out, [x], g), _grads(ref, [x], g), _grads(slow, [x], g)
    torch.testing.assert_close(g_c, g_e, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_c, g_s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("static", [False, True])
def test_decomposition_equals_the_op(eager, static: bool) -> None:
    """The plain-torch formulation (exporters' fallback, callables under tracing) equals the op."""
    T, B = 4, 3
    p = LIFParams(0.25, 0.5, "rectangle", True)
    u = _steps(1 if static else T, B, False)
    u = (u[0] if static else u).detach().requires_grad_()
    ta = torch.randn(T, B, dtype=F64, requires_grad=True)
    sca = torch.randn(u.shape[-4:] if static else u.shape[1:], dtype=F64, requires_grad=True)
    steps = T if static else 0
    spikes, h = lif_decomposed(u, steps, p)
    assert torch.equal(spikes, ops.lif(u, p, steps=steps or None))
    out, fired, gate, _ = gated_lif_decomposed(u, ta, sca, steps, p)
    ref = ops.gated_lif(u, ta, sca, p, static=static)
    assert torch.equal(out, ref[0]) and torch.equal(fired, ref[1]) and torch.equal(gate, ref[2])
    g = torch.randn_like(out)
    for a, b in zip(_grads(out, [u, ta, sca], g), _grads(ref[0], [u, ta, sca], g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("static", [False, True])
def test_inference_decompositions_equal_the_ops(eager, static: bool, dtype) -> None:
    """The forward-only table (what ONNX export writes) gives the operators' spikes and membranes
    bit for bit; the gate (and the gated output) to a few ulps: torch's sigmoid rounds differently
    in its vectorised body and in the tail of a loop, and the op takes the gate step by step."""
    T, B = 5, 3
    table = inference_decompositions()
    lif_op, gated_op = torch.ops.gac_coding.lif.default, torch.ops.gac_coding.gated_lif.default
    u = _steps(1 if static else T, B, False, dtype=dtype)
    u = u[0] if static else u
    ta = torch.randn(T, B, dtype=dtype)
    sca = torch.randn(u.shape[-4:] if static else u.shape[1:], dtype=dtype)
    steps = T if static else 0
    eps = torch.finfo(dtype).eps
    for decay, thr, surrogate, detach in [(0.25, 0.5, 1, True), (0.5, 1.0, 0, False)]:
        for save in (False, True):
            args = (steps, decay, thr, surrogate, detach, save)
            spikes, h = table[lif_op](u, *args)
            ref_spikes, ref_h = lif_op(u, *args)
            assert torch.equal(spikes, ref_spikes) and torch.equal(h, ref_h)
            assert h.numel() == (spikes.numel() if save else 0)
            assert ref_spikes.ne(0).any() and ref_spikes.eq(0).any()  # spikes and silence
            out, fired, gate, h = table[gated_op](u, ta, sca, *args)
            ref = gated_op(u, ta, sca, *args)
            assert torch.equal(fired, ref[1]) and torch.equal(h, ref[3])
            for a, b in ((out, ref[0]), (gate, ref[2])):
                assert a.dtype == b.dtype and a.shape == b.shape
                torch.testing.assert_close(a, b, rtol=4 * eps, atol=0)


# ------------------------------------------------------------------------------------ export


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.unit = gac.GatedAttentionUnit(channels=3, T=3)
        self.lif = gac.LIF(**gac.RECIPES["imagenet"])

    def forward(self, u: Tensor) -> Tensor:
        o = self.unit(u)
        return self.lif(o * 2.0 + u) + neuron.lif(u[0], steps=3)


def test_export_with_dynamic_batch_equals_eager(eager) -> None:
    torch.manual_seed(1)
    model = _Head().double().eval()
    u = torch.randn(3, 2, 3, 5, 5, dtype=F64) * 1.5
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (u,), dynamic_shapes=({1: batch},))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert {"gac_coding.lif.default", "gac_coding.gated_lif.default"} <= targets
    for B in (1, 5):
        new = torch.randn(3, B, 3, 5, 5, dtype=F64) * 1.5
        assert torch.equal(program.module()(new), model(new))


def test_encoder_compiles_fullgraph_and_checks_values_on_cpu_only(eager) -> None:
    torch.manual_seed(2)
    enc = gac.GACEncoder(2, 4, T=3).double()
    x = torch.rand(2, 2, 6, 6, dtype=F64)
    compiled = torch.compile(enc, fullgraph=True, backend="aot_eager")  # no graph break
    out = compiled(x)
    torch.testing.assert_close(out, enc(x), rtol=0, atol=0)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        enc(bad)  # eager, CPU: checked
    kwargs = {"in_channels": 2, "T": 3}
    assert check_image_input(bad, check_finite=False, **kwargs) is True
    with pytest.raises(ValueError, match="NaN"):
        check_image_input(bad, check_finite=True, **kwargs)
    # an accelerator tensor (meta stands for one here) is not value-checked by default: no sync
    assert check_image_input(bad.to("meta"), **kwargs) is True
