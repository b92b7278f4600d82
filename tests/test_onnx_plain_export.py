"""The plain ``torch.onnx.export(model, (x,), path, dynamo=True)`` exports the library's models.

Importing gac_coding registers the neuron operators' plain-torch decompositions in torch's global
decomposition table, which the dynamo-based ONNX exporter consults; torch.export and
torch.compile keep the custom operators. onnxruntime runs the files with eager's outputs on batch
sizes the export never saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_adapters_backbones import build_float64, strong_digits

import gac_coding as gac
from gac_coding.energy import calibrate_batchnorm
from gac_coding.models import create_model
from gac_coding.ops import LIFParams, backends, gated_lif, lif

# onnxruntime's CPU convolutions have no float64 kernel, so models compare in float32. Its MLAS
# convolutions and oneDNN's sum in different orders: a few ulps (~1e-6) per layer on values of
# order 1; 1e-4 leaves a wide margin. A spike that flips (a membrane within that distance of its
# threshold) would exceed it; with the few thousand neurons here none does. The neuron ops alone
# (no convolution) are compared exactly, in float32 on dyadic inputs and in float64.
TOL = {"rtol": 1e-4, "atol": 1e-4}
OPS = {"gac_coding.lif.default", "gac_coding.gated_lif.default"}


@pytest.fixture(autouse=True)
def _eager_lif_backend() -> Iterator[None]:
    with backends.use_backend("eager"):
        yield


def _export(model: torch.nn.Module, x: torch.Tensor, path: Path, batch_dim: int) -> Path:
    """Exactly what a user writes: the plain call, a dynamic batch, nothing from gac_coding."""
    torch.onnx.export(
        model.eval(),
        (x,),
        str(path),
        dynamo=True,
        input_names=["x"],
        dynamic_shapes=({batch_dim: torch.export.Dim("batch")},),
        verbose=False,
    )
    return path


def _run(path: Path, x: torch.Tensor) -> list[torch.Tensor]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {"x": x.numpy()})]


def _ops_in(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _compare(path: Path, model: torch.nn.Module, inputs: list[torch.Tensor], **tol: float) -> None:
    for x in inputs:
        (got,) = _run(path, x)
        with torch.no_grad():
            expected = model(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, **tol)
        if got.shape[-2] > 1:  # the graph reads its input: samples differ
            assert not torch.allclose(got[..., 0, :], got[..., -1, :])


def test_paper_model_static_input(tmp_path: Path) -> None:
    model = create_model("msresnet_tiny", num_classes=10, T=3, in_channels=1)
    calibrate_batchnorm(model, torch.rand(8, 1, 8, 8) * 3)  # untrained: make every layer fire
    path = _export(model, torch.rand(4, 1, 8, 8), tmp_path / "m.onnx", 0)
    assert "Sigmoid" in _ops_in(path) and "Greater" in _ops_in(path)  # standard ops only
    g = torch.Generator().manual_seed(4)
    _compare(path, model, [torch.rand(b, 1, 8, 8, generator=g) * 3 for b in (1, 5)], **TOL)


def test_event_model_time_major_input(tmp_path: Path) -> None:
    model = create_model("vgg_tiny", num_classes=4, T=3, in_channels=2)
    for module in model.modules():  # untrained: a lower threshold makes the deeper layers fire
        if isinstance(module, gac.LIF):
            module.params = LIFParams(0.5, 0.25)
    g = torch.Generator().manual_seed(5)
    calibrate_batchnorm(model, torch.rand(3, 8, 2, 8, 8, generator=g) * 3)
    path = _export(model, torch.rand(3, 3, 2, 8, 8), tmp_path / "v.onnx", 1)
    _compare(path, model, [torch.rand(3, b, 2, 8, 8, generator=g) * 3 for b in (2, 6)], **TOL)


class _Side(torch.nn.Module):
    """The encoder and two wrapped nets (plain PyTorch, SpikingJelly) side by side: one export."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = gac.GACEncoder(1, 4, T=3)
        self.nets = torch.nn.ModuleList(
            [build_float64(n, steps=3).float() for n in ("torch", "spikingjelly-m")]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.encoder(x), *(net(x) for net in self.nets)]


def test_encoder_and_wrapped_nets(tmp_path: Path) -> None:
    side = _Side().eval()
    x = strong_digits().float()
    path = _export(side, x[:3], tmp_path / "side.onnx", 0)
    for batch in (x[3:8], x[:1]):
        got = _run(path, batch)
        with torch.no_grad():
            expected = side(batch)
        assert len(got) == len(expected) == 3
        assert expected[0].ne(0).float().mean() > 0.01  # spikes gated through
        for a, b in zip(got, expected, strict=True):
            assert a.shape == b.shape and a.shape[:2] == (3, batch.shape[0])
            torch.testing.assert_close(a, b, **TOL)
            if batch.shape[0] > 1:  # the graph reads its input: samples differ
                assert not torch.allclose(a[:, 0], a[:, -1])


class _Neurons(torch.nn.Module):
    """A LIF on a sequence and the gated LIF on one step repeated: the operators alone."""

    def __init__(self) -> None:
        super().__init__()
        self.p = LIFParams(0.5, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = lif(x, self.p)  # [T, B, F]
        ta = x.mean(dim=2)  # [T, B]
        out, fired, _ = gated_lif(x[0], ta, x[0] * 0.5, self.p, static=True)
        return torch.cat([spikes, fired, out], dim=2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neuron_operators_exactly(tmp_path: Path, dtype: torch.dtype) -> None:
    """Spikes are exact: dyadic inputs (multiples of 1/8) make every membrane exact in float32, so
    a membrane at the threshold compares equal in both runtimes; float64 on arbitrary inputs too.
    The gate is a sigmoid: a few ulps between torch's vectorised loop and onnxruntime's."""
    g = torch.Generator().manual_seed(7)
    dyadic = (torch.randint(0, 17, (4, 6, 5), generator=g) / 8).to(dtype)
    inputs = [dyadic] + (
        [torch.rand(4, 3, 5, generator=g, dtype=dtype) * 2] if dtype == torch.float64 else []
    )
    model = _Neurons()
    path = _export(model, dyadic[:, :2], tmp_path / "n.onnx", 1)
    for x in inputs:
        (got,) = _run(path, x)
        with torch.no_grad():
            expected = model(x)
        assert got.dtype == dtype and got.shape == expected.shape
        assert torch.equal(got[:, :, :10], expected[:, :, :10])  # spikes of both operators
        assert expected[:, :, :10].any() and not expected[:, :, :10].all()
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(got[:, :, 10:], expected[:, :, 10:], rtol=8 * eps, atol=8 * eps)


class _Tiny(torch.nn.Module):
    """A convolution, the gated LIF (the encoder) and a LIF, channels-last."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = gac.GACEncoder(1, 4, T=2)
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.lif = gac.LIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        return self.lif(self.conv(code.flatten(0, 1)).unflatten(0, code.shape[:2]))


def test_torch_export_and_compile_keep_the_custom_operators() -> None:
    """The registration is for exporters: torch.export's graph (also after its default
    decompositions) and torch.compile's (dynamic shapes, where FakeTensor reads the global table)
    still call the library's operators, with eager's outputs."""
    model = _Tiny().to(memory_format=torch.channels_last).eval()
    x = torch.rand(3, 1, 6, 6) * 3
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("b")},))
    for graph in (program.graph, program.run_decompositions().graph):
        assert OPS <= {str(n.target) for n in graph.nodes}
    seen: list[set[str]] = []

    def backend(gm: torch.fx.GraphModule, example: list[torch.Tensor]) -> object:
        from torch._functorch.aot_autograd import aot_module_simplified

        def inner(g: torch.fx.GraphModule, _: object) -> object:
            seen.append({str(n.target) for n in g.graph.nodes})
            return g.forward

        return aot_module_simplified(gm, example, fw_compiler=inner)

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, dynamic=True, fullgraph=True)
    with torch.no_grad():
        for batch in (x, torch.rand(5, 1, 6, 6) * 3):
            torch.testing.assert_close(compiled(batch), model(batch), rtol=0, atol=0)
    assert seen and OPS <= set().union(*seen)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "half", "static", "save"])
def test_decomposition_gives_the_fake_kernels_metadata(layout: str) -> None:
    """FakeTensor reads the global table for symbolic shapes (torch.compile(dynamic=True)): the
    decompositions must give the fake kernels' shapes, dtypes and strides."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    dtype = torch.float16 if layout == "half" else torch.float32
    x = torch.rand(3, 2, 4, 5, 6, dtype=dtype)  # [T, B, C, H, W]
    if layout == "channels_last":
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (3, 2))
    steps = 3 if layout == "static" else 0
    u = x[0] if steps else x
    ta, sca = torch.rand(3, 2, dtype=dtype), torch.rand(2, 4, 5, 6, dtype=dtype)
    save = layout == "save"
    from torch._decomp import decomposition_table as decomposed  # what the exporter reads

    calls = {
        torch.ops.gac_coding.lif.default: (u, steps, 0.5, 1.0, 0, False, save),
        torch.ops.gac_coding.gated_lif.default: (u, ta, sca, steps, 0.5, 1.0, 0, False, save),
    }
    for op, args in calls.items():
        with FakeTensorMode() as mode:  # static shapes: the fake kernel answers
            kernel = op(*(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))
        table = decomposed[op](*args)
        real = op(*args)
        assert len(kernel) == len(table) == len(real)
        for a, b, c in zip(kernel, table, real, strict=True):
            meta = (a.shape, a.dtype, a.stride())
            assert meta == (b.shape, b.dtype, b.stride()) == (c.shape, c.dtype, c.stride()), (op, layout)


def test_legacy_exporter_is_unchanged(tmp_path: Path) -> None:
    """The TorchScript exporter does not read the table: it still stops naming the operator."""
    path = tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(Exception, match=r"gac_coding::lif"):
            torch.onnx.export(gac.LIF(), (torch.rand(3, 2, 4),), str(path), dynamo=False)
    assert not path.exists()
