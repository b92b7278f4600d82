"""What the integrations area's mutation run found unpinned in the NeuroBench adapter.

The whole text of the adapter's messages (a model or an input of the wrong type, logits that are
not a tensor, NeuroBench missing, a model with no spiking layer), ``readout="last"`` as the last
of the ``T`` steps on a model whose steps differ, ``neurobench_model`` passing its ``readout`` on,
and each neuron class listed once however many neurons of it a model holds.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import gac_coding as gac
from gac_coding.integrations.neurobench import BatchFirst, activation_types, neurobench_model


class _Steps(nn.Module):
    """A time-major model whose logits at step t are the step's mean input times (t + 1); it holds
    a neuron (for NeuroBench's activation modules) that its forward pass does not use."""

    def __init__(self) -> None:
        super().__init__()
        self.lif = gac.LIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_step = x.flatten(2).mean(-1, keepdim=True).expand(-1, -1, 2)  # [T, B, 2]
        scale = torch.arange(1, x.shape[0] + 1, dtype=x.dtype).view(-1, 1, 1)
        return per_step * scale


class _NotLogits(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


def _spiking() -> nn.Module:
    return nn.Sequential(gac.LIF(), nn.Linear(3, 3), gac.LIF(), nn.Linear(3, 2), gac.LIF())


def test_the_type_messages_name_the_argument_and_what_arrived() -> None:
    with pytest.raises(TypeError) as excinfo:
        BatchFirst([1])  # type: ignore[arg-type]
    assert _message(excinfo) == "model: expected a torch.nn.Module, got list"
    with pytest.raises(TypeError) as excinfo:
        activation_types("net")  # type: ignore[arg-type]
    assert _message(excinfo) == "model: expected a torch.nn.Module, got str"
    with pytest.raises(TypeError) as excinfo:
        BatchFirst(_Steps())([[1.0]])  # type: ignore[arg-type]
    assert _message(excinfo) == "x: expected a torch.Tensor, got list"


def test_logits_that_are_no_tensor_are_named_by_their_type() -> None:
    with pytest.raises(ValueError) as excinfo:
        BatchFirst(_NotLogits())(torch.rand(2, 1, 3, 3))
    assert _message(excinfo) == "model: expected time-major logits [T, B, K], got list"


def test_readout_last_is_the_last_step() -> None:
    x = torch.rand(2, 4, 1, 3, 3, dtype=torch.float64)  # [B, T, C, H, W]
    by_hand = x[:, -1].flatten(1).mean(-1, keepdim=True).expand(-1, 2) * 4  # step 4 of 4
    assert torch.equal(BatchFirst(_Steps(), readout="last")(x), by_hand)


def test_neurobench_model_passes_its_readout_on() -> None:
    x = torch.rand(2, 3, 1, 3, 3, dtype=torch.float64)
    steps = torch.stack([x[:, t].flatten(1).mean(-1) * (t + 1) for t in range(3)])  # [T, B]
    model = _Steps()
    for readout, expected in (("sum", steps.sum(0)), ("last", steps[-1]), ("mean", steps.mean(0))):
        wrapped = neurobench_model(model, readout=readout)
        assert wrapped.net.readout == readout
        assert torch.allclose(wrapped(x)[:, 0], expected, rtol=1e-12, atol=0)


def test_each_neuron_class_is_listed_once() -> None:
    assert activation_types(_spiking()) == [gac.LIF]


def test_no_spiking_layer_is_refused_with_the_whole_message() -> None:
    with pytest.raises(ValueError) as excinfo:
        neurobench_model(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    assert _message(excinfo) == (
        "model: no spiking layer found (no GACEncoder and no neuron of a registered framework)"
    )


def test_neurobench_missing_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "neurobench", None)  # as if it were not installed
    with pytest.raises(ImportError) as excinfo:
        neurobench_model(_spiking())
    assert _message(excinfo) == (
        'neurobench_model needs NeuroBench, which is not installed: pip install "gac-coding[bench]"'
    )
