"""The parts of NIR export that the whole-graph tests of test_nir*.py do not pin, found by mutation
testing (``make mutation AREA=export-nir-neurons``): the node builders' dtypes and checks, how a
spike function is classified, the host encoder's copy and its options, the per-sample shapes read
by the trace, and the messages.

Each test is checked against the mutant it guards (tests/README.md, the mutation section).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_nir_settings import WORKING, build
from torch import Tensor, nn
from torch.nn import functional as F

import gac_coding as gac

nir = pytest.importorskip("nir")  # the test extra installs it; never skipped under `make test`
from gac_coding.adapters import GatedInputWarning  # noqa: E402
from gac_coding.adapters._nir_nodes import (  # noqa: E402
    SettingShapeError,
    decay_node,
    full,
    probe_spike_function,
)
from gac_coding.export import to_nir  # noqa: E402
from gac_coding.export.nir.host import HostEncoder  # noqa: E402
from gac_coding.export.nir.neurons import check_dt, describe, require_nir, unsupported  # noqa: E402
from gac_coding.export.nir.trace import per_sample, trace_shapes  # noqa: E402
from gac_coding.models import create_model  # noqa: E402
from gac_coding.models._steps import channels_last_steps  # noqa: E402

DT = 1e-3


def _arrays(node: Any) -> dict[str, np.ndarray]:
    return {k: v for k, v in vars(node).items() if isinstance(v, np.ndarray) and k != "input_type"}


# ------------------------------------------------------------------------------------------------
# Node builders
# ------------------------------------------------------------------------------------------------


def _plain_net() -> nn.Module:
    # time-major throughout: [T, B, ...] into each layer
    return nn.Sequential(
        gac.LIF(decay=0.25, threshold=0.5),
        nn.Flatten(2),
        nn.Linear(32, 3),
        gac.LIF(decay=1.0),
        nn.Linear(3, 2),
    )


@pytest.mark.parametrize("name", ["plain", *WORKING])
def test_every_neuron_node_is_written_in_the_models_dtype(name: str) -> None:
    # float64 models: every array of a neuron node in float64 (a builder that lets torch pick its
    # default dtype writes float32 time constants and thresholds, rounding them); the nets of
    # test_nir_settings.py hold every framework's neurons (snnTorch's Leaky as IF and LIF, Norse's
    # LIFBoxCell and LIFCell, SpikingJelly's LIFNode and IFNode)
    if name == "plain":
        torch.manual_seed(0)
        model = gac.wrap(_plain_net(), T=2, in_channels=2).double().eval()
        exp = to_nir(model, torch.rand(2, 2, 4, 4, dtype=torch.float64))
    else:
        exp = build(name)[2]
    neurons = [n for n in exp.graph.nodes.values() if type(n).__name__ in ("LIF", "IF", "CubaLIF")]
    assert neurons, "the net has neurons"
    for node in neurons:
        for field, value in _arrays(node).items():
            assert value.dtype == np.float64, (name, type(node).__name__, field, value.dtype)


def test_decay_node_takes_time_constants_from_float64() -> None:
    # a float32 decay of 0.1: 1 - 0.1 is rounded in float32 but exact in float64, so tau = dt / (1 -
    # decay) differs in its last float32 bit when the leak is not computed in float64 first
    decay = torch.tensor([0.1, 0.02], dtype=torch.float32)
    node = decay_node(nir, decay, 0.5, (2,), DT, "'n' (LIF)")
    leak = 1.0 - decay.double().numpy()
    np.testing.assert_array_equal(node.tau, (DT / leak).astype(np.float32))
    np.testing.assert_array_equal(node.r, (1.0 / leak).astype(np.float32))
    assert (DT / (1 - decay)).numpy().tolist() != node.tau.tolist(), "the float32 formula must differ"
    assert node.tau.dtype == node.v_threshold.dtype == node.v_leak.dtype == np.float32
    np.testing.assert_array_equal(node.v_threshold, np.float32(0.5))


def test_decay_node_refuses_neurons_that_mix_leaky_and_non_leaky() -> None:
    with pytest.raises(ValueError) as info:
        decay_node(nir, torch.tensor([1.0, 0.5], dtype=torch.float64), 1.0, (2,), DT, "'n' (Leaky)")
    assert str(info.value) == (
        "'n' (Leaky): some neurons have decay 1 (no leak) and others leak; NIR's LIF cannot express "
        "a non-leaky neuron (tau would be infinite) and IF cannot leak"
    )
    node = decay_node(nir, torch.ones(2, dtype=torch.float64), 1.0, (2,), DT, "'n' (Leaky)")
    assert type(node).__name__ == "IF"


def test_full_detaches_a_trained_threshold() -> None:
    threshold = nn.Parameter(torch.tensor([0.5, 0.25]))
    out = full(threshold, (3, 2), torch.float64)
    assert out.dtype == np.float64 and out.shape == (3, 2)
    np.testing.assert_array_equal(out, np.array([[0.5, 0.25]] * 3))


def test_a_setting_that_does_not_fit_the_nodes_shape_is_named() -> None:
    """A setting per neuron or per channel that does not broadcast to the shape the node is built
    for: ``SettingShapeError`` (the exporter's check skips it and the trace, building with the real
    shape, raises it to the user) with both shapes in the message."""
    with pytest.raises(SettingShapeError) as info:
        decay_node(nir, torch.full((3,), 0.5, dtype=torch.float64), 1.0, (2,), DT, "'n' (LIF)")
    assert str(info.value) == "a setting of shape (3,) does not broadcast to (2,)"
    with pytest.raises(SettingShapeError) as info:
        full(torch.ones(4, 1, 1), (2, 3, 5), torch.float32)
    assert str(info.value) == "a setting of shape (4, 1, 1) does not broadcast to (2, 3, 5)"
    assert isinstance(info.value, RuntimeError) and isinstance(info.value.__cause__, RuntimeError)


class _OnAccelerator(Tensor):
    """A CPU tensor standing in for one on a GPU where the node builders can tell: ``numpy()``
    refuses it, as torch refuses a CUDA tensor, and ``.to("cpu")`` gives a plain CPU tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is Tensor.numpy:
            raise TypeError("can't convert cuda:0 device type tensor to numpy (stand-in)")
        if func is Tensor.to:
            devices = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
            if devices and torch.device(devices[0]).type == "cpu":
                with torch._C.DisableTorchFunctionSubclass():
                    return func(*args, **kwargs).as_subclass(Tensor)
        return super().__torch_function__(func, types, args, kwargs)


def test_nodes_move_a_gpu_models_settings_to_the_cpu() -> None:
    """A model exported from a GPU hands its neurons' settings over on the GPU: the builders move
    them to the CPU before making numpy arrays of them (without the move, ``numpy()`` raises)."""
    decay = torch.tensor([0.5, 0.25], dtype=torch.float64).as_subclass(_OnAccelerator)
    threshold = nn.Parameter(torch.tensor([0.5, 2.0])).as_subclass(_OnAccelerator)
    with pytest.raises(TypeError, match="stand-in"):
        decay.numpy()  # the stand-in refuses as a CUDA tensor would
    node = decay_node(nir, decay, threshold.detach().double(), (2,), DT, "'n' (LIF)")
    assert type(node).__name__ == "LIF"
    np.testing.assert_array_equal(node.tau, DT / np.array([0.5, 0.75]))
    np.testing.assert_array_equal(node.r, 1.0 / np.array([0.5, 0.75]))
    np.testing.assert_array_equal(node.v_threshold, np.array([0.5, 2.0]))
    out = full(threshold, (3, 2), torch.float32)
    assert type(out) is np.ndarray and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0.5, 2.0]] * 3, dtype=np.float32))
    node = decay_node(
        nir, torch.ones(2, dtype=torch.float64).as_subclass(_OnAccelerator), 1.0, (2,), DT, "'n'"
    )
    assert type(node).__name__ == "IF"


@pytest.mark.parametrize(
    ("fn", "rule"),
    [
        (lambda v: (v > 0).to(v.dtype), "gt"),
        (lambda v: (v >= 0).to(v.dtype), "ge"),
        (lambda v: ((v > 0).to(v.dtype), v), "gt"),  # (spikes, something): the first item is read
        (lambda v: [(v >= 0).to(v.dtype)], "ge"),
        (lambda v: (v > 0.01).to(v.dtype), "other"),  # fires only well above the threshold
        (lambda v: (v >= -0.01).to(v.dtype), "other"),  # fires below it
        (lambda v: 0.0, "other"),  # not a tensor
        (lambda v: (v < 0).to(v.dtype), "other"),
    ],
)
def test_spike_functions_are_classified_by_where_they_fire(fn: Any, rule: str) -> None:
    assert probe_spike_function(fn, torch.float64) == rule


def test_an_snntorch_spike_function_that_is_not_strict_is_refused_with_the_probe() -> None:
    import snntorch as snn

    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        snn.Leaky(beta=0.5, init_hidden=True, reset_mechanism="zero", spike_grad=lambda v: (v >= 0).float()),
        nn.Flatten(),
        nn.Linear(32, 2),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        model = gac.wrap(net, T=2, in_channels=1).eval()
    with pytest.raises(ValueError, match=r"fire exactly when mem > threshold \(probe gave 'ge'\)"):
        to_nir(model, torch.rand(1, 1, 4, 4))


# ------------------------------------------------------------------------------------------------
# Checks and messages
# ------------------------------------------------------------------------------------------------


def test_check_dt_takes_numbers_only() -> None:
    assert check_dt(1) == 1.0 and check_dt(0.5) == 0.5
    for bad in ("0.001", True, None, torch.tensor(1e-3)):
        with pytest.raises(TypeError) as info:
            check_dt(bad)
        assert str(info.value) == f"dt: expected a float (seconds), got {type(bad).__name__}"
    for bad in (0, -1e-3, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="dt: expected a finite step > 0, got"):
            check_dt(bad)


def test_describe_names_the_module_or_the_model() -> None:
    assert describe("body.2", nn.ReLU()) == "'body.2' (ReLU)"
    assert describe("", nn.ReLU()) == "<model> (ReLU)"


def test_unsupported_lists_every_framework_neuron() -> None:
    with pytest.raises(TypeError) as info:
        unsupported("act", nn.ReLU())
    assert str(info.value) == (
        "'act' (ReLU): no NIR mapping; export supports Conv2d, Linear, BatchNorm (folded), Flatten, "
        "AvgPool2d/AdaptiveAvgPool2d, Identity/Dropout, snnTorch Leaky, Norse LIFCell/LIF/LIFBoxCell, "
        "SpikingJelly LIFNode/IFNode, gac_coding.LIF and MSBlock"
    )


def test_require_nir_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_nir() is nir
    monkeypatch.setitem(sys.modules, "nir", None)  # import nir raises ImportError
    with pytest.raises(ImportError) as info:
        require_nir()
    assert str(info.value).startswith("NIR export needs nir (")
    assert str(info.value).endswith('): pip install "gac-coding[export]"')


# ------------------------------------------------------------------------------------------------
# The host encoder
# ------------------------------------------------------------------------------------------------


def _encoder(**kw: Any) -> gac.GACEncoder:
    torch.manual_seed(0)
    return gac.GACEncoder(2, 3, T=2, **kw).double().eval()


def _image(*shape: int) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 4


def test_host_messages() -> None:
    with pytest.raises(TypeError) as info:
        HostEncoder(_encoder(), binarize=1)  # type: ignore[arg-type]
    assert str(info.value) == "binarize: expected a bool or None, got int"
    direct = create_model("msresnet_tiny", num_classes=2, T=2, coding="direct", in_channels=2).encoder
    with pytest.raises(ValueError) as info2:
        HostEncoder(direct, binarize=True)
    assert str(info2.value) == (
        "binarize: the model uses direct coding, whose host sends the stem's real-valued membrane U to "
        "the chip; binarize=True needs a GAC encoder"
    )


def test_host_holds_its_own_copy_and_keeps_the_encoders_binarize() -> None:
    enc = _encoder(binarize=True)
    x = _image(2, 2, 4, 4)
    host = HostEncoder(enc)  # binarize=None: the encoder's setting
    want = enc(x)
    assert host.binarize and set(want.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(host(x), want, rtol=0, atol=0)
    with torch.no_grad():  # the model trains on: the export keeps the weights it was made with
        for p in enc.parameters():
            p.add_(0.5)
    assert not torch.equal(enc(x), want)
    torch.testing.assert_close(host(x), want, rtol=0, atol=0)
    off = HostEncoder(enc, binarize=False)
    assert not off.binarize and enc.binarize


def _strides_of(encoder: nn.Module, x: Tensor) -> tuple[int, ...]:
    return encoder(x).stride()


@pytest.mark.parametrize("shape", [(2, 2, 4, 4), (2, 2, 2, 4, 4)])
def test_host_runs_channels_last_only_when_asked(shape: tuple[int, ...]) -> None:
    enc = _encoder()
    x = _image(*shape)
    plain, last = _strides_of(enc, x), _strides_of(enc, channels_last_steps(x))
    assert plain != last, "the two layouts must be told apart"
    assert HostEncoder(enc).channels_last is False
    assert _strides_of(HostEncoder(enc), x) == plain
    assert _strides_of(HostEncoder(enc, channels_last=True), x) == last
    torch.testing.assert_close(HostEncoder(enc, channels_last=True)(x), enc(x), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# The trace
# ------------------------------------------------------------------------------------------------


def test_per_sample_drops_batch_or_time_and_batch() -> None:
    T, B = 2, 3
    assert per_sample((B,), T, B) == ()  # one value per sample
    assert per_sample((T * B, 5), T, B) == (5,)
    assert per_sample((T, B), T, B) == ()  # one value per step and sample
    assert per_sample((T, B, 4, 4), T, B) == (4, 4)
    assert per_sample((5, B, 4), T, B) is None  # neither the batch nor T first
    assert per_sample((T, 5, 4), T, B) is None
    assert per_sample((), T, B) is None


class _Takes(nn.Module):
    """Called with a list, or with keyword arguments only: the trace reads no shape from it."""

    def forward(self, x: Any = None, *, y: Tensor | None = None) -> Tensor:
        return x[0] if isinstance(x, list) else y  # type: ignore[return-value]


class _Collapse(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sum(0)  # [B, 4] -> [4]: no batch dimension left


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.listed, self.keyword, self.collapse = _Takes(), _Takes(), _Collapse()

    def forward(self, x: Tensor) -> Tensor:
        y = self.listed([x]) + self.keyword(y=x)
        return self.collapse(y.flatten(1)[:, :4])


def test_trace_skips_calls_without_a_tensor_and_explains_a_lost_batch() -> None:
    net = _Net()
    shapes = trace_shapes(net, torch.rand(3, 2, 2), T=2, B=3)
    assert net.listed not in shapes and net.keyword not in shapes
    err = shapes[net.collapse]
    assert isinstance(err, ValueError)
    assert str(err) == (
        "model: cannot tell the batch dimension of the tensors around 'collapse' (_Collapse) (input "
        "(3, 4), output (4,), T=2, batch 3); export expects [B, ...], [T*B, ...] or [T, B, ...]"
    )


# ------------------------------------------------------------------------------------------------
# The reference simulator (what the export-nir-sim-graph mutation run found unpinned)
# ------------------------------------------------------------------------------------------------


def _graph(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> Any:
    # no type check: nir 1.0.8 infers a grouped Conv2d's input channels as weight.shape[1]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _chain(*middle: Any, shape: tuple[int, ...]) -> Any:
    names = [f"n{i}" for i in range(len(middle))]
    nodes = {"input": nir.Input(input_type=np.array(shape)), **dict(zip(names, middle, strict=True))}
    nodes["output"] = nir.Output(output_type=np.array(shape))  # the type is not read by simulate
    path = ["input", *names, "output"]
    return _graph(nodes, list(zip(path[:-1], path[1:], strict=True)))


def test_simulator_convolution_uses_padding_stride_dilation_groups_and_bias(tmp_path: Path) -> None:
    from gac_coding.export.nir.simulator import simulate

    g = torch.Generator().manual_seed(5)
    w = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)  # groups 2: 2 in, 4 out
    b = torch.randn(4, generator=g, dtype=torch.float64)
    code = torch.rand(2, 3, 2, 9, 9, generator=g, dtype=torch.float64)
    for padding in ((2, 1), "same"):
        stride = (1, 1) if padding == "same" else (2, 1)
        conv = nir.Conv2d(input_shape=(9, 9), weight=w.numpy(), stride=stride, padding=padding,
                          dilation=(2, 2), groups=2, bias=b.numpy())  # fmt: skip
        out, extra = simulate(_chain(conv, shape=(2, 9, 9)), code, DT)
        want = F.conv2d(code.flatten(0, 1), w, b, stride=stride, padding=padding, dilation=2, groups=2)
        if padding != "same":
            conv_tuple, want_tuple = conv, want
        torch.testing.assert_close(out.flatten(0, 1), want, rtol=0, atol=1e-12)
        assert extra == {}  # record and count_ops are off by default
    # a graph read back from a file holds its padding as a numpy array
    path = tmp_path / "conv.nir"
    nir.write(path, _chain(conv_tuple, shape=(2, 9, 9)))
    out, _ = simulate(nir.read(path, type_check=False), code, DT)
    torch.testing.assert_close(out.flatten(0, 1), want_tuple, rtol=0, atol=1e-12)


def test_simulator_linear_has_no_bias_and_affine_has_its_own() -> None:
    from gac_coding.export.nir.simulator import simulate

    g = torch.Generator().manual_seed(6)
    w = torch.randn(3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    code = torch.rand(2, 4, 5, generator=g, dtype=torch.float64)
    out, _ = simulate(_chain(nir.Linear(weight=w.numpy()), shape=(5,)), code, DT)
    torch.testing.assert_close(out, code @ w.T, rtol=0, atol=1e-12)
    out, extra = simulate(
        _chain(nir.Affine(weight=w.numpy(), bias=b.numpy()), shape=(5,)), code, DT, record=True
    )
    torch.testing.assert_close(out, code @ w.T + b, rtol=0, atol=1e-12)
    assert sorted(extra) == ["outputs"] and sorted(extra["outputs"]) == ["input", "n0", "output"]
    torch.testing.assert_close(extra["outputs"]["n0"], out, rtol=0, atol=0)


def test_simulator_takes_a_code_of_two_dims_and_refuses_less() -> None:
    from gac_coding.export.nir.simulator import simulate

    graph = _chain(shape=())
    code = torch.rand(3, 2, dtype=torch.float64)  # [T, B]: one value per sample
    out, _ = simulate(graph, code, DT)
    torch.testing.assert_close(out, code, rtol=0, atol=0)
    with pytest.raises(ValueError) as info:
        simulate(graph, torch.zeros(3), DT)
    assert str(info.value) == "code: expected a tensor [T, B, ...], got torch.Size([3])"
    with pytest.raises(ValueError) as info:
        simulate(graph, [[0.0]], DT)  # type: ignore[arg-type]
    assert str(info.value) == "code: expected a tensor [T, B, ...], got <class 'list'>"


def test_simulator_refuses_a_cycle() -> None:
    from gac_coding.export.nir.simulator import simulate

    w = np.eye(2)
    nodes = {"input": nir.Input(input_type=np.array([2])), "a": nir.Linear(weight=w),
             "b": nir.Linear(weight=w), "output": nir.Output(output_type=np.array([2]))}  # fmt: skip
    graph = _graph(nodes, [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")])
    with pytest.raises(ValueError) as info:
        simulate(graph, torch.zeros(2, 1, 2), DT)
    assert str(info.value) == "graph: has a cycle; simulate runs feed-forward graphs only"


def test_simulator_scale_flatten_pools_ties_and_unknown_nodes() -> None:
    # export-nir-sim-step survivors: Scale, Flatten with end_dim, SumPool2d, a pool's stride, a
    # membrane exactly at the threshold (no spike), the message of a node simulate cannot run
    from gac_coding.export.nir.simulator import simulate

    x = torch.arange(2 * 1 * 2 * 4 * 4, dtype=torch.float64).view(2, 1, 2, 4, 4) / 8
    out, _ = simulate(_chain(nir.Scale(scale=np.array([0.5, 2.0]).reshape(2, 1, 1)), shape=(2, 4, 4)), x, DT)
    torch.testing.assert_close(out, x * torch.tensor([0.5, 2.0], dtype=torch.float64).view(2, 1, 1))
    flat = nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=1, end_dim=2)
    out, _ = simulate(_chain(flat, shape=(2, 4, 4)), x, DT)
    assert out.shape == (2, 1, 2, 16)
    torch.testing.assert_close(out, x.flatten(3, 4), rtol=0, atol=0)
    for start, end, want in ((0, 1, x.flatten(2, 3)), (-2, -1, x.flatten(-2, -1)), (0, 0, x)):
        flat = nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=start, end_dim=end)
        out, _ = simulate(_chain(flat, shape=(2, 4, 4)), x, DT)
        torch.testing.assert_close(out, want, rtol=0, atol=0)
    for kind, want in (("SumPool2d", F.avg_pool2d(x[0], 2, 1, divisor_override=1)),
                       ("AvgPool2d", F.avg_pool2d(x[0], 2, 1))):  # fmt: skip
        pool = getattr(nir, kind)(
            kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0])
        )
        out, _ = simulate(_chain(pool, shape=(2, 4, 4)), x, DT)
        torch.testing.assert_close(out[0], want, rtol=0, atol=1e-12)
    padded = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([1, 0]))
    with pytest.raises(ValueError) as info:
        simulate(_chain(padded, shape=(2, 4, 4)), x, DT)
    assert str(info.value) == "graph: SumPool2d 'n0' has padding, which simulate does not run"
    # IF with r = 1/dt: v = x; 0.5 sits exactly at the threshold and does not fire
    neuron = nir.IF(r=np.full(3, 1 / DT), v_threshold=np.full(3, 0.5), v_reset=np.zeros(3))
    out, _ = simulate(
        _chain(neuron, shape=(3,)), torch.tensor([[[0.25, 0.5, 0.75]]], dtype=torch.float64), 1.0 / 1000
    )
    assert out.tolist() == [[[0.0, 0.0, 1.0]]]
    with pytest.raises(ValueError) as info:
        simulate(_chain(nir.Delay(delay=np.ones(3)), shape=(3,)), torch.zeros(1, 1, 3), DT)
    assert str(info.value) == "graph: node 'n0' of type Delay is not supported by simulate"


# ------------------------------------------------------------------------------------------------
# What the export-nir-sim-run mutation run found unpinned: the dtype the time loop runs in, the
# message of a node with no input
# ------------------------------------------------------------------------------------------------


def _lif_arrays(n: int, dtype: Any, **values: float) -> dict[str, np.ndarray]:
    return {k: np.full(n, v, dtype=dtype) for k, v in values.items()}


def test_simulator_runs_in_the_dtype_of_the_code_not_of_the_graph() -> None:
    # a float64 graph on a float32 code runs as if its arrays had been rounded to float32 first:
    # every recorded output is float32 and equal, bit for bit, to the run of the rounded graph
    from gac_coding.export.nir.simulator import simulate

    def graph(dtype: Any) -> Any:
        g = np.random.default_rng(3)
        w, b = g.normal(size=(4, 3)).astype(dtype), g.normal(size=4).astype(dtype)
        lif = nir.LIF(**_lif_arrays(4, dtype, tau=3e-3, r=1.3, v_leak=0.1, v_threshold=0.7, v_reset=0.05))
        return _chain(nir.Affine(weight=w, bias=b), nir.Scale(scale=np.full(4, 1.1, dtype=dtype)), lif,
                      shape=(3,))  # fmt: skip

    code = torch.rand(6, 5, 3, generator=torch.Generator().manual_seed(8))
    out, extra = simulate(graph(np.float64), code, DT, record=True)
    want, want_extra = simulate(graph(np.float32), code, DT, record=True)
    assert out.dtype == torch.float32
    assert {n: v.dtype for n, v in extra["outputs"].items()} == dict.fromkeys(extra["outputs"], torch.float32)
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    for name, value in want_extra["outputs"].items():
        torch.testing.assert_close(extra["outputs"][name], value, rtol=0, atol=0)
    assert 0 < out.sum() < out.numel()  # some spikes, not all

    # the thresholds in the code's dtype decide a tie: 0.1 rounded to float32 is above 0.1, so
    # v = x = float32(0.1) sits exactly on a float32 threshold (no spike) but above a float64 one
    arrays = _lif_arrays(1, np.float64, tau=DT, r=1.0, v_leak=0.0, v_threshold=0.1, v_reset=0.0)
    tie = _chain(nir.LIF(**arrays), shape=(1,))
    x32 = torch.full((1, 1, 1), 0.1, dtype=torch.float32)
    assert simulate(tie, x32, DT)[0].tolist() == [[[0.0]]]
    assert simulate(tie, x32.double(), DT)[0].tolist() == [[[1.0]]]
    assert simulate(tie, torch.full((1, 1, 1), 0.1, dtype=torch.float64), DT)[0].tolist() == [[[0.0]]]


def test_simulator_names_a_node_that_receives_nothing() -> None:
    from gac_coding.export.nir.simulator import simulate

    w = np.eye(2)
    nodes = {"input": nir.Input(input_type=np.array([2])), "orphan": nir.Linear(weight=w),
             "output": nir.Output(output_type=np.array([2]))}  # fmt: skip
    graph = _graph(nodes, [("input", "output"), ("orphan", "output")])
    with pytest.raises(ValueError) as info:
        simulate(graph, torch.zeros(2, 1, 2, dtype=torch.float64), DT)
    assert str(info.value) == "graph: node 'orphan' has no input"
