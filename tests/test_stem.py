"""The stem every encoder shares (issue 15, item 4): ``StemEncoder`` is conv + BatchNorm with the
static fast path; ``GACEncoder`` adds the neuron and gate, ``DirectEncoder`` hands over ``U``."""

from __future__ import annotations

import copy

import pytest
import torch

import gac_coding as gac
from gac_coding.coding import DirectEncoder, StemEncoder
from gac_coding.models import create_model


def test_direct_encoder_is_the_stem_alone() -> None:
    direct = DirectEncoder(2, 6, T=3)
    assert isinstance(direct, StemEncoder) and not isinstance(direct, gac.GACEncoder)
    assert not hasattr(direct, "gate") and direct.last_spikes is None
    assert sorted(direct.state_dict()) == sorted(StemEncoder(2, 6, T=3).state_dict())
    assert {n for n, _ in direct.named_parameters()} == {"conv.weight", "bn.weight", "bn.bias"}


@pytest.mark.parametrize("training", [True, False])
def test_direct_encoder_repeats_the_gac_encoders_membrane(training: bool) -> None:
    """With the same stem weights, the direct code is GAC's membrane U at every step, and
    BatchNorm's running statistics move the same way (float64)."""
    torch.manual_seed(0)
    T = 4
    enc = gac.GACEncoder(2, 5, T=T).double()
    direct = DirectEncoder(2, 5, T=T).double()
    direct.load_state_dict({k: v for k, v in enc.state_dict().items() if not k.startswith("gate.")})
    enc.train(training)
    direct.train(training)
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    u, static = copy.deepcopy(enc).membrane(x)
    code = direct(x)
    assert static and code.shape == (T, 3, 5, 6, 6)
    for t in range(T):
        assert torch.equal(code[t], u)
    enc(x)
    assert torch.equal(direct.bn.running_var, enc.bn.running_var)
    assert torch.equal(direct.bn.running_mean, enc.bn.running_mean)


@pytest.mark.parametrize(
    "setting", [{"decay": 0.25}, {"temporal_attention": "conv"}, {"record": False}, {"binarize": True},
                {"backend": "eager"}],
)  # fmt: skip
def test_gate_settings_are_refused_not_ignored(setting: dict) -> None:
    """Direct coding has no neuron and no gate: their settings raise instead of being dropped."""
    from gac_coding.coding import make_encoder

    with pytest.raises(TypeError):
        DirectEncoder(1, 4, T=2, **setting)
    (name,) = setting
    with pytest.raises(TypeError, match=rf"coding 'direct' has no setting \['{name}'\]; its settings are "
                                        r"\['kernel_size', 'stride', 'padding'\]"):  # fmt: skip
        make_encoder("direct", 1, 4, 2, **setting)
    with pytest.raises(TypeError, match=rf"coding 'direct' has no setting \['{name}'\]"):
        create_model("msresnet_tiny", T=2, in_channels=1, coding="direct", encoder_kwargs=setting)
    # a model passes the recipe's neuron settings to a coding with a neuron only
    model = create_model("msresnet_tiny", T=2, in_channels=1, coding="direct", backend="eager")
    assert type(model.encoder) is DirectEncoder


def test_set_timesteps_on_both_encoders_and_the_direct_model() -> None:
    direct = DirectEncoder(1, 4, T=2)
    direct.set_timesteps(5)
    assert direct(torch.rand(2, 1, 6, 6)).shape == (5, 2, 4, 6, 6)
    model = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1, coding="direct")
    model.set_timesteps(3)
    assert model(torch.rand(2, 1, 8, 8)).shape == (3, 2, 3)
    with pytest.raises(TypeError, match="T: expected an int, got float"):
        direct.set_timesteps(2.0)
