"""What the export-nir-graph area's mutation run found unpinned in the graph builder
(``gac_coding.export.nir.graph``): the exported nodes of a chain with every layer the builder maps
(BatchNorm folded into convolutions and linear layers with and without biases, ``"valid"`` padding,
pools with tuple and int settings, a linear layer without bias), against the folding done here by
hand in numpy; the dtype of the written arrays for a float32 model; the names and sources of the
nodes (also of unnamed modules and of repeated names); MS-ResNet's node names and head; every
flatten of consecutive dimensions; the refusals and their messages.

Each test is checked against the mutants it guards (tests/README.md, the mutation section).
"""

from __future__ import annotations

import itertools
import math
import re
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac

nir = pytest.importorskip("nir")  # the test extra installs it; never skipped under `make test`
snn = pytest.importorskip("snntorch")  # likewise
from gac_coding.export import to_nir  # noqa: E402
from gac_coding.export.nir.graph import Builder, Value  # noqa: E402
from gac_coding.export.nir.trace import trace_shapes  # noqa: E402
from gac_coding.models import MSBlock, create_model  # noqa: E402

T = 2
DT = 1e-3
ATOL = 1e-10  # float64 graph against the float64 model (folded BatchNorm rounds differently)


@contextmanager
def _deadline(seconds: int = 10) -> Iterator[None]:
    """Fail instead of hanging: a loop of the builder that never ends (a mutant) raises here. The
    guarded calls take microseconds; the limit only turns an endless loop into a failure."""

    def stop(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the builder did not return within {seconds} s (an endless loop)")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _spike(v: Tensor) -> Tensor:
    return (v > 0).to(v.dtype)


def _leaky(beta: Any = 0.5) -> nn.Module:
    return snn.Leaky(beta=beta, threshold=0.3, init_hidden=True, reset_mechanism="zero", spike_grad=_spike)


def _wrap(backbone: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gated code into a Conv2d
        return gac.wrap(backbone, T=T, in_channels=2).eval()


def _statistics(bn: nn.Module, seed: int) -> None:
    """Running statistics, weight and bias far from a fresh BatchNorm's, and a non-default eps."""
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.25)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
    bn.eps = 1e-2


def _folded(layer: nn.Module, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray | None]:
    """``layer`` followed by ``bn`` (eval mode) as one weight and bias, in float64 numpy:
    ``gamma (W x + b - mean) / sqrt(var + eps) + beta``."""
    w = layer.weight.detach().numpy().astype(np.float64)
    b = None if layer.bias is None else layer.bias.detach().numpy().astype(np.float64)
    if bn is None:
        return w, b
    gamma = bn.weight.detach().numpy().astype(np.float64)
    beta = bn.bias.detach().numpy().astype(np.float64)
    mean = bn.running_mean.numpy().astype(np.float64)
    var = bn.running_var.numpy().astype(np.float64)
    s = gamma / np.sqrt(var + bn.eps)
    shape = (-1,) + (1,) * (w.ndim - 1)
    return w * s.reshape(shape), ((0.0 if b is None else b) - mean) * s + beta


# ------------------------------------------------------------------------------------------------
# A chain with every layer the builder maps
# ------------------------------------------------------------------------------------------------


def _chain() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        _leaky(0.5),  # 0
        nn.Conv2d(2, 3, 3, padding=1),  # 1: bias, BatchNorm
        nn.BatchNorm2d(3),  # 2
        _leaky(0.75),  # 3
        nn.AvgPool2d((2, 1), stride=(2, 1), padding=(0, 0)),  # 4: tuples  -> [3, 4, 8]
        nn.Conv2d(3, 4, 3, stride=(1, 2), padding="valid", bias=False),  # 5: no bias, BN -> [4, 2, 3]
        nn.BatchNorm2d(4),  # 6
        _leaky(0.5),  # 7
        nn.Conv2d(4, 4, 1),  # 8: no BatchNorm
        _leaky(0.5),  # 9
        nn.AdaptiveAvgPool2d((1, 3)),  # 10: kernel (2, 1) -> [4, 1, 3]
        nn.Flatten(),  # 11 -> [12]
        nn.Dropout(0.5),  # 12
        nn.Linear(12, 5),  # 13: bias, BatchNorm
        nn.BatchNorm1d(5),  # 14
        _leaky(0.5),  # 15
        nn.Linear(5, 4, bias=False),  # 16: no bias, BatchNorm -> Affine
        nn.BatchNorm1d(4),  # 17
        _leaky(0.5),  # 18
        nn.Linear(4, 3, bias=False),  # 19: no bias, no BatchNorm -> Linear
        _leaky(0.5),  # 20
        nn.Identity(),  # 21
        nn.Linear(3, 2),  # 22: bias, no BatchNorm
    )
    for i, m in enumerate(net):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _statistics(m, seed=i)
    return net


# index in the chain -> NIR node type, in the order of the graph (BatchNorm, Dropout, Identity: none)
CHAIN_NODES = {0: "LIF", 1: "Conv2d", 3: "LIF", 4: "AvgPool2d", 5: "Conv2d", 7: "LIF", 8: "Conv2d",
               9: "LIF", 10: "AvgPool2d", 11: "Flatten", 13: "Affine", 15: "LIF", 16: "Affine",
               18: "LIF", 19: "Linear", 20: "LIF", 22: "Affine"}  # fmt: skip
FOLDED = {1: 2, 5: 6, 8: None, 13: 14, 16: 17, 19: None, 22: None}  # synaptic layer -> its BatchNorm


def _exported(dtype: torch.dtype) -> tuple[nn.Module, Tensor, Any]:
    model = _wrap(_chain()).to(dtype)
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype) * 4
    return model, x, to_nir(model, x, dt=DT)


def test_chain_nodes_edges_and_sources() -> None:
    model, x, exp = _exported(torch.float64)
    graph = exp.graph
    names = [f"backbone_{i}" for i in CHAIN_NODES]
    assert list(graph.nodes) == ["input", *names, "output"]
    kinds = {k: type(v).__name__ for k, v in graph.nodes.items()}
    assert kinds == {
        "input": "Input",
        **{f"backbone_{i}": t for i, t in CHAIN_NODES.items()},
        "output": "Output",
    }
    chain = ["input", *names, "output"]
    assert graph.edges == list(zip(chain[:-1], chain[1:], strict=True))
    assert exp.sources == {f"backbone_{i}": f"backbone.{i}" for i in CHAIN_NODES}
    assert graph.metadata == {"dt": DT, "T": T, "producer": "gac-coding"}
    np.testing.assert_array_equal(graph.nodes["input"].input_type["input"], [2, 8, 8])
    np.testing.assert_array_equal(graph.nodes["output"].output_type["output"], [2])
    assert exp.output_shape == (2,)
    # the graph, run, is the model (every node's arrays are judged by hand below)
    torch.testing.assert_close(exp.run(x), model(x), rtol=0.0, atol=ATOL)


def test_chain_folds_batchnorm_by_hand() -> None:
    model, _, exp = _exported(torch.float64)
    net = model.backbone
    for i, j in FOLDED.items():
        node = exp.graph.nodes[f"backbone_{i}"]
        w, b = _folded(net[i], None if j is None else net[j])
        np.testing.assert_allclose(node.weight, w, rtol=1e-13, atol=1e-15, err_msg=f"backbone.{i} weight")
        if b is None:
            assert type(node).__name__ == "Linear" and not hasattr(node, "bias"), f"backbone.{i}"
        else:
            np.testing.assert_allclose(node.bias, b, rtol=1e-13, atol=1e-15, err_msg=f"backbone.{i} bias")


def test_chain_convolutions_and_pools_keep_their_settings() -> None:
    _, _, exp = _exported(torch.float64)
    nodes = exp.graph.nodes
    conv = {1: ((2, 8, 8), (1, 1), (1, 1)), 5: ((3, 4, 8), (1, 2), (0, 0)), 8: ((4, 2, 3), (1, 1), (0, 0))}
    for i, (shape, stride, padding) in conv.items():
        node = nodes[f"backbone_{i}"]
        np.testing.assert_array_equal(node.input_shape, shape[1:], err_msg=f"backbone.{i}")  # NIR: (H, W)
        np.testing.assert_array_equal(node.input_type["input"], shape, err_msg=f"backbone.{i}")
        np.testing.assert_array_equal(node.stride, stride, err_msg=f"backbone.{i}")
        np.testing.assert_array_equal(node.padding, padding, err_msg=f"backbone.{i}")
        np.testing.assert_array_equal(node.dilation, (1, 1), err_msg=f"backbone.{i}")
        assert int(node.groups) == 1
    for i, kernel in ((4, (2, 1)), (10, (2, 1))):
        node = nodes[f"backbone_{i}"]
        np.testing.assert_array_equal(node.kernel_size, kernel, err_msg=f"backbone.{i}")
        np.testing.assert_array_equal(node.stride, kernel, err_msg=f"backbone.{i}")
        np.testing.assert_array_equal(node.padding, (0, 0), err_msg=f"backbone.{i}")
    flat = nodes["backbone_11"]
    np.testing.assert_array_equal(flat.input_type["input"], (4, 1, 3))
    assert (flat.start_dim, flat.end_dim) == (0, -1)


def test_float32_model_writes_float32_arrays_rounded_once() -> None:
    # the fold in float64, rounded to float32 once: every element within half a float32 ulp of the
    # float64 value computed here (2**-24 relative, plus float64 noise); a fold whose statistics are
    # taken in float32 rounds the scale before the product
    model, x, exp = _exported(torch.float32)
    net = model.backbone
    for i, j in FOLDED.items():
        node = exp.graph.nodes[f"backbone_{i}"]
        w, b = _folded(net[i], None if j is None else net[j])
        arrays = {"weight": (node.weight, w)} | ({} if b is None else {"bias": (node.bias, b)})
        for field, (got, want) in arrays.items():
            assert got.dtype == np.float32, (i, field, got.dtype)
            np.testing.assert_allclose(
                got, want, rtol=2.0**-24 + 1e-15, atol=0, err_msg=f"backbone.{i} {field}"
            )


# ------------------------------------------------------------------------------------------------
# MS-ResNet: names, sources, head; BatchNorms named in messages
# ------------------------------------------------------------------------------------------------


def _msresnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("msresnet_tiny", num_classes=3, T=T, in_channels=1).double().eval()


def test_msresnet_node_names_sources_and_head() -> None:
    model = _msresnet()
    exp = to_nir(model, torch.rand(1, 1, 8, 8, dtype=torch.float64))
    expected: dict[str, str | None] = {}
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            for part in ("lif1", "conv1", "lif2", "conv2"):
                expected[f"stages_{s}_{b}_{part}"] = f"stages.{s}.{b}.{part}"
            if not isinstance(block.shortcut, nn.Identity):
                expected[f"stages_{s}_{b}_shortcut_0"] = f"stages.{s}.{b}.shortcut.0"
    expected |= {"head_lif": "head_lif", "pool": None, "flatten": None, "fc": "fc"}
    assert any("shortcut" in k for k in expected), "the model has a downsample shortcut"
    assert list(exp.graph.nodes) == ["input", *expected, "output"]
    assert exp.sources == {k: v for k, v in expected.items() if v is not None}
    c = model.fc.in_features
    h, w = exp.graph.nodes["stages_2_0_conv2"].output_type["output"][1:]
    pool, flat, fc = (exp.graph.nodes[k] for k in ("pool", "flatten", "fc"))
    np.testing.assert_array_equal(pool.kernel_size, (h, w))
    np.testing.assert_array_equal(flat.input_type["input"], (c, 1, 1))
    assert (flat.start_dim, flat.end_dim) == (0, -1)
    np.testing.assert_array_equal(fc.weight, model.fc.weight.detach().numpy())
    np.testing.assert_array_equal(fc.bias, model.fc.bias.detach().numpy())


@pytest.mark.parametrize("where", ["bn1", "bn2", "shortcut.1"])
def test_msresnet_batchnorm_without_statistics_is_named(where: str) -> None:
    model = _msresnet()
    block = model.stages[1][0]
    c = block.bn2.num_features
    bn = nn.BatchNorm2d(c, track_running_stats=False).double()
    if where == "shortcut.1":
        block.shortcut[1] = bn
    else:
        setattr(block, where, bn)
    pattern = rf"'{re.escape('stages.1.0.' + where)}' \(BatchNorm2d\): BatchNorm without running statistics"
    with pytest.raises(ValueError, match=pattern):
        to_nir(model, torch.rand(1, 1, 8, 8, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------
# The builder on its own: names of unnamed and repeated modules, blocks, messages
# ------------------------------------------------------------------------------------------------


def _builder(model: nn.Module, x: Tensor) -> Builder:
    return Builder(nir, DT, torch.float64, trace_shapes(model, x, T, x.shape[1]))


def _time_major() -> tuple[nn.Sequential, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(gac.LIF(decay=0.5), nn.Flatten(2), nn.Linear(8, 3), gac.LIF(), nn.Linear(3, 2))
    return model.double(), torch.rand(T, 3, 2, 2, 2, dtype=torch.float64)


def test_unnamed_modules_are_nodes_node_1_node_2() -> None:
    model, x = _time_major()
    builder = _builder(model, x)
    with _deadline():
        graph, y = builder.graph((2, 2, 2), [("", m) for m in model], model, {"note": 1})
    keys = ["node", "node_1", "node_2", "node_3", "node_4"]
    assert list(graph.nodes) == ["input", *keys, "output"]
    assert [type(graph.nodes[k]).__name__ for k in keys] == ["LIF", "Flatten", "Affine", "LIF", "Affine"]
    assert builder.sources == dict.fromkeys(keys, "")
    assert graph.metadata == {"note": 1}
    assert y.shape == (2,)


def test_repeated_names_count_up_past_taken_ones() -> None:
    model, x = _time_major()
    builder = _builder(model, x)
    builder.nodes |= {"a": None, "a_1": None, "a_3": None}
    v = Value(["a"], (2, 2, 2))
    with _deadline():
        got = [builder.neuron("a", model[0], v).terms[0] for _ in range(3)]
    assert got == ["a_2", "a_4", "a_5"]


def test_an_unnamed_chain_names_its_children() -> None:
    model, x = _time_major()
    graph, _ = _builder(model, x).graph((2, 2, 2), [("", model)], model, {})
    assert list(graph.nodes) == ["input", "0", "1", "2", "3", "4", "output"]


def test_an_unnamed_block_names_its_parts() -> None:
    torch.manual_seed(0)
    block = MSBlock(2, 4, stride=2, lif=dict(decay=0.5, threshold=0.3)).double().eval()
    x = torch.rand(T, 3, 2, 4, 4, dtype=torch.float64)
    builder = _builder(block, x)
    y = builder.block("", block, Value(["input"], (2, 4, 4)))
    parts = ["lif1", "conv1", "lif2", "conv2", "shortcut_0"]
    assert list(builder.nodes) == parts
    assert builder.sources == {k: k.replace("_", ".") for k in parts}
    assert y.terms == ["conv2", "shortcut_0"] and y.shape == (4, 2, 2)


def test_a_block_whose_shortcut_shape_differs_is_refused_by_name() -> None:
    torch.manual_seed(0)
    block = MSBlock(2, 4, stride=2, lif=dict(decay=0.5, threshold=0.3)).double().eval()
    builder = _builder(block, torch.rand(T, 3, 2, 4, 4, dtype=torch.float64))
    builder.shapes[block.shortcut[1]] = ((4, 1, 1), (4, 1, 1))  # as if the shortcut pooled
    with pytest.raises(
        ValueError, match=r"'stages\.0\.0' \(MSBlock\): branch \(4, 2, 2\) and shortcut \(4, 1, 1\) differ"
    ):
        builder.block("stages.0.0", block, Value(["input"], (2, 4, 4)))


def test_builder_array_of_nothing_is_zeros_in_its_dtype() -> None:
    for dtype, np_dtype in ((torch.float64, np.float64), (torch.float32, np.float32)):
        a = Builder(nir, DT, dtype, {}).array(None, (2, 3))
        assert a.dtype == np_dtype and a.shape == (2, 3) and not a.any()


def test_module_maps_a_linear_layer_and_names_what_it_cannot_map() -> None:
    torch.manual_seed(0)
    builder = Builder(nir, DT, torch.float64, {})
    fc = nn.Linear(4, 3).double()
    y = builder.module("backbone.5", fc, Value(["input"], (4,)))
    assert y.terms == ["backbone_5"] and y.shape == (3,)
    node = builder.nodes["backbone_5"]
    np.testing.assert_array_equal(node.weight, fc.weight.detach().numpy())
    np.testing.assert_array_equal(node.bias, fc.bias.detach().numpy())
    assert builder.edges == [("input", "backbone_5")] and builder.sources == {"backbone_5": "backbone.5"}
    with pytest.raises(TypeError, match=r"'backbone\.2' \(ReLU\): no NIR mapping"):
        builder.module("backbone.2", nn.ReLU(), Value(["input"], (4,)))


def test_neuron_messages_name_the_module() -> None:
    builder = Builder(nir, DT, torch.float64, {})
    soft = snn.Leaky(beta=0.5, init_hidden=True, spike_grad=_spike)  # reset_mechanism="subtract"
    with pytest.raises(ValueError, match=r"'backbone\.0' \(Leaky\): reset_mechanism='subtract'"):
        builder.neuron("backbone.0", soft, Value(["input"], (3,)))


def test_untraced_modules_are_named() -> None:
    builder = Builder(nir, DT, torch.float64, {})
    x = Value(["input"], (2, 4, 4))
    cases = [
        ("backbone.1", lambda: builder.conv("backbone.1", nn.Conv2d(2, 3, 1), None, x)),
        ("backbone.2", lambda: builder.flatten("backbone.2", nn.Flatten(), x)),
        ("backbone.3", lambda: builder.pool("backbone.3", nn.AvgPool2d(2), x)),
    ]
    for name, call in cases:
        with pytest.raises(
            ValueError, match=rf"model: '{name}' \(\w+\) was not called in the traced forward"
        ):
            call()
    conv, bn = nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3)
    builder.shapes[conv] = ((2, 4, 4), (3, 4, 4))
    with pytest.raises(ValueError, match=r"model: 'backbone\.2' \(BatchNorm2d\) was not called"):
        builder.conv("backbone.1", conv, ("backbone.2", bn), x)


def test_batchnorm_without_statistics_is_named_after_conv_and_linear() -> None:
    builder = Builder(nir, DT, torch.float64, {})
    conv = nn.Conv2d(2, 3, 1)
    builder.shapes[conv] = ((2, 4, 4), (3, 4, 4))
    with pytest.raises(
        ValueError, match=r"'backbone\.2' \(BatchNorm2d\): BatchNorm without running statistics"
    ):
        builder.conv(
            "backbone.1",
            conv,
            ("backbone.2", nn.BatchNorm2d(3, track_running_stats=False)),
            Value([], (2, 4, 4)),
        )
    with pytest.raises(
        ValueError, match=r"'backbone\.4' \(BatchNorm1d\): BatchNorm without running statistics"
    ):
        builder.linear(
            "backbone.3",
            nn.Linear(4, 3),
            ("backbone.4", nn.BatchNorm1d(3, track_running_stats=False)),
            Value([], (4,)),
        )
    for missing in ("running_mean", "running_var"):  # either statistic alone cannot be folded
        bn = nn.BatchNorm1d(3)
        setattr(bn, missing, None)
        with pytest.raises(ValueError, match=r"^bn here: BatchNorm without running statistics"):
            Builder._bn_scale(bn, "bn here")


def test_conv_refusals_name_the_layer() -> None:
    class MyConv(nn.Conv2d):
        pass

    builder = Builder(nir, DT, torch.float64, {})
    x = Value(["input"], (2, 4, 4))
    cases = [
        (MyConv(2, 3, 1), TypeError,
         r"^'backbone\.1' \(MyConv\): export maps nn\.Conv2d \(and SpikingJelly's"),
        (nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), ValueError,
         r"^'backbone\.1' \(Conv2d\): padding_mode='reflect'; NIR's Conv2d pads with zeros"),
        (nn.Conv2d(2, 3, 3, padding="same"), ValueError,
         r"^'backbone\.1' \(Conv2d\): padding='same'; pass explicit padding for NIR"),
    ]  # fmt: skip
    for conv, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            builder.conv("backbone.1", conv, None, x)


def test_pool_refusals_name_the_layer() -> None:
    builder = Builder(nir, DT, torch.float64, {})
    x = Value(["input"], (3, 4, 4))
    unfixed = r"\(AvgPool2d\): padding, ceil_mode and divisor_override change what is averaged; NIR's"
    uneven = r"\(AdaptiveAvgPool2d\): adaptive pooling from \({}\) to \(2, 2\) has windows of unequal size"
    cases = [
        (nn.AvgPool2d(2), ((4, 4), (2, 2)), r"\(AvgPool2d\): expected per-sample \[C, H, W\], got \(4, 4\)$"),
        (nn.AdaptiveAvgPool2d((2, 2)), ((3, 4, 5), (3, 2, 2)), uneven.format("4, 5")),
        (nn.AdaptiveAvgPool2d((2, 2)), ((3, 5, 4), (3, 2, 2)), uneven.format("5, 4")),
        (nn.AvgPool2d(2, padding=1), ((3, 4, 4), (3, 3, 3)), unfixed),  # each setting alone
        (nn.AvgPool2d(2, ceil_mode=True), ((3, 5, 5), (3, 3, 3)), unfixed),
        (nn.AvgPool2d(2, divisor_override=3), ((3, 4, 4), (3, 2, 2)), unfixed),
    ]  # fmt: skip
    for pool, shapes, pattern in cases:
        builder.shapes[pool] = shapes
        with pytest.raises(ValueError, match=rf"^'backbone\.3' {pattern}"):
            builder.pool("backbone.3", pool, x)


def test_validation_goes_on_past_a_neuron_with_settings_per_neuron() -> None:
    # the check before the traced run probes neurons with a shape of its own: a setting per neuron
    # ([2] here, with one neuron that does not leak) is left to the trace, and the modules after it
    # are still checked, before the traced run (which this one would break)
    class Boom(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            raise RuntimeError("the traced run reached Boom")

    net = nn.Sequential(nn.Flatten(), nn.Linear(128, 2), _leaky(torch.tensor([0.5, 1.0])), Boom())
    with pytest.raises(TypeError, match=r"'backbone\.3' \(Boom\): no NIR mapping"):
        to_nir(_wrap(net), torch.rand(1, 2, 8, 8))


# ------------------------------------------------------------------------------------------------
# Flatten: every flatten of consecutive dimensions, and what is none
# ------------------------------------------------------------------------------------------------


def _flatten_node(ps_in: tuple[int, ...], ps_out: tuple[int, ...]) -> Any:
    builder = Builder(nir, DT, torch.float64, {})
    module = nn.Flatten()
    builder.shapes[module] = (ps_in, ps_out)
    with _deadline():
        y = builder.flatten("backbone.4", module, Value(["input"], ps_in))
    assert y.shape == ps_out and builder.sources == {"backbone_4": "backbone.4"}, (ps_in, ps_out)
    return builder.nodes["backbone_4"]


def _shapes(sizes: tuple[int, ...], longest: int) -> Iterator[tuple[int, ...]]:
    for n in range(1, longest + 1):
        yield from itertools.product(sizes, repeat=n)


def test_every_flatten_of_sizes_above_one_is_written_as_it_was_made() -> None:
    # with every size > 1 a flatten's output shape tells its dims (a merged size exceeds each part)
    for shape in _shapes((2, 3), 4):
        for start in range(len(shape)):
            for end in range(start + 1, len(shape)):
                out = tuple(torch.zeros(shape).flatten(start, end).shape)
                node = _flatten_node(shape, out)
                np.testing.assert_array_equal(node.input_type["input"], shape)
                assert node.input_type["input"].dtype == np.int64
                written = end if end < len(shape) - 1 else -1
                assert (node.start_dim, node.end_dim) == (start, written), (shape, start, end)


def test_what_is_no_flatten_is_refused_by_name() -> None:
    def is_flatten(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
        return any(
            a[:s] == b[:s] and a[e + 1 :] == b[s + 1 :] and math.prod(a[s : e + 1]) == b[s]
            for s in range(len(b))
            for e in range(s, len(a))
        )

    shapes = list(_shapes((2, 3, 5, 6), 3))
    refused = 0
    for a, b in itertools.product(shapes, repeat=2):
        if a == b or is_flatten(a, b):
            continue
        builder = Builder(nir, DT, torch.float64, {})
        module = nn.Flatten()
        builder.shapes[module] = (a, b)
        pattern = (
            rf"^'backbone\.4' \(Flatten\): turns per-sample shape {re_tuple(a)} into {re_tuple(b)}, "
            r"which is not a flatten of consecutive dimensions$"
        )
        with _deadline(), pytest.raises(ValueError, match=pattern):
            builder.flatten("backbone.4", module, Value(["input"], a))
        refused += 1
    assert refused > 1000


def re_tuple(t: tuple[int, ...]) -> str:
    return str(t).replace("(", r"\(").replace(")", r"\)")


def test_flattens_that_merge_dimensions_of_size_one() -> None:
    # a flatten whose merged dims include sizes of 1 ((C, 1, 1) -> (C,) after a global pool) was
    # refused as "not a flatten": the common prefix (C) was taken as a kept dim. Every flatten of
    # shapes with sizes 1, 2, 3 is written now, as a node that gives the same shape (a flatten is a
    # reshape, so any start and end that give it are the same values)
    for shape in _shapes((1, 2, 3), 4):
        for start in range(len(shape)):
            for end in range(start + 1, len(shape)):
                out = tuple(torch.zeros(shape).flatten(start, end).shape)
                if out == shape:
                    continue  # nothing merged: an identity, no node
                node = _flatten_node(shape, out)
                np.testing.assert_array_equal(node.input_type["input"], shape)
                got = torch.zeros(shape).flatten(node.start_dim, node.end_dim).shape
                assert tuple(got) == out, (shape, start, end, node.start_dim, node.end_dim)


def test_global_pool_then_flatten_exports_and_runs_as_the_model() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(_leaky(0.5), nn.Conv2d(2, 3, 3, padding=1), _leaky(0.5), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(3, 2))  # fmt: skip
    model = _wrap(net).double()
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 4
    exp = to_nir(model, x, dt=DT)
    flat = exp.graph.nodes["backbone_4"]
    np.testing.assert_array_equal(flat.input_type["input"], (3, 1, 1))
    assert (flat.start_dim, flat.end_dim) == (0, -1)
    torch.testing.assert_close(exp.run(x), model(x), rtol=0.0, atol=ATOL)
