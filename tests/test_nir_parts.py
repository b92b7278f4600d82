"""The parts of NIR export that the whole-graph tests of test_nir*.py do not pin, found by mutation
testing (``make mutation AREA=export-nir-neurons``): the node builders' dtypes and checks, how a
spike function is classified, the host encoder's copy and its options, the per-sample shapes read
by the trace, and the messages.

Each test is checked against the mutant it guards (tests/README.md, the mutation section).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from test_nir_settings import WORKING, build
from torch import Tensor, nn

import gac_coding as gac

nir = pytest.importorskip("nir")  # the test extra installs it; never skipped under `make test`
from gac_coding.adapters import GatedInputWarning  # noqa: E402
from gac_coding.adapters._nir_nodes import decay_node, full, probe_spike_function  # noqa: E402
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
