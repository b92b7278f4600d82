"""The coding layer (issue 22, part 2): every input coding behind one interface and one factory.

Each coding built by ``make_encoder`` is checked against an independent formulation written out
here in float64 (the stem as ``F.conv2d`` + ``F.batch_norm`` per step; rate coding as Bernoulli
draws of the same generator; latency coding's spike times by hand). Also: the deprecated ``gac=``
gives the same model as ``coding=`` with exactly one warning, ``set_timesteps`` on the owner of
``T`` reaches every reader, bad coding names raise naming the choices, and a new coding is one
registered class.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gac_coding as gac
from gac_coding._deprecated import DEPRECATED
from gac_coding.coding import (
    CODINGS,
    DirectEncoder,
    GACEncoder,
    LatencyEncoder,
    RateEncoder,
    StemEncoder,
    latency_encode,
    make_encoder,
    rate_encode,
    register_coding,
)
from gac_coding.models import MSResNet, create_model
from gac_coding.models.vgg import SpikingVGG

F64 = torch.float64
CHOICES = r"\['direct', 'rate', 'latency', 'gac'\]"


def _stem_by_hand(enc: StemEncoder, frames: Tensor) -> Tensor:
    """``BN(Conv(frame))`` of every frame ``[T, B, C, H, W]``, batch statistics over all frames
    (training mode), written out with the functional ops."""
    conv, bn = enc.conv, enc.bn
    T, B = frames.shape[:2]
    y = F.conv2d(frames.reshape(T * B, *frames.shape[2:]), conv.weight, None, conv.stride, conv.padding)
    mean = y.mean((0, 2, 3), keepdim=True)
    var = y.var((0, 2, 3), unbiased=False, keepdim=True)
    out = (y - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    return out.view(T, B, *out.shape[1:])


def _randomise(enc: StemEncoder) -> StemEncoder:
    with torch.no_grad():
        enc.bn.weight.uniform_(0.5, 2.0)
        enc.bn.bias.uniform_(-0.5, 0.5)
    return enc


# ---------------------------------------------------------------------------------- the factory
def test_the_registry_lists_the_four_codings_with_their_classes() -> None:
    assert CODINGS == {"direct": DirectEncoder, "rate": RateEncoder, "latency": LatencyEncoder,
                       "gac": GACEncoder}  # fmt: skip
    for name, cls in CODINGS.items():
        assert cls.coding == name and issubclass(cls, StemEncoder) and cls.label
    assert [n for n, c in CODINGS.items() if c.takes_neuron] == ["gac"]
    assert [n for n, c in CODINGS.items() if not c.static_stem] == ["rate", "latency"]
    assert [n for n, c in CODINGS.items() if c.reads_intensities] == ["rate", "latency"]


def test_direct_coding_is_the_stem_repeated() -> None:
    torch.manual_seed(0)
    enc = _randomise(make_encoder("direct", 2, 3, T=4, kernel_size=3, stride=2, padding=1).double())
    assert type(enc) is DirectEncoder
    x = torch.rand(5, 2, 7, 7, dtype=F64)
    want = _stem_by_hand(enc, x.unsqueeze(0))[0]
    got = enc(x)
    assert got.shape == (4, 5, 3, 4, 4)
    for t in range(4):
        torch.testing.assert_close(got[t], want, rtol=1e-12, atol=1e-12)


def test_rate_coding_is_bernoulli_draws_of_the_same_generator_then_the_stem() -> None:
    torch.manual_seed(1)
    T = 5
    enc = make_encoder("rate", 2, 3, T=T, generator=torch.Generator().manual_seed(7)).double()
    _randomise(enc)
    assert type(enc) is RateEncoder
    x = torch.rand(4, 2, 6, 6, dtype=F64)
    got = enc(x)
    # independently: T Bernoulli draws of the intensities from a generator in the same state
    spikes = torch.bernoulli(x.expand(T, *x.shape).contiguous(), generator=torch.Generator().manual_seed(7))
    assert bool(((spikes == 0) | (spikes == 1)).all()) and 0 < float(spikes.mean()) < 1
    torch.testing.assert_close(got, _stem_by_hand(enc, spikes), rtol=1e-12, atol=1e-12)
    # the generator moved on: a second call draws other spikes; reseeded, the same again
    assert not torch.equal(enc(x), got)
    enc.generator = torch.Generator().manual_seed(7)
    assert torch.equal(enc(x), got)
    # without a generator the global one draws: a run seeded with torch.manual_seed repeats
    enc.generator = None
    torch.manual_seed(5)
    a = enc(x)
    torch.manual_seed(5)
    assert torch.equal(enc(x), a)
    # a sequence of intensities: one draw per frame
    seq = torch.rand(T, 2, 2, 6, 6, dtype=F64)
    enc.generator = torch.Generator().manual_seed(3)
    want = _stem_by_hand(enc, torch.bernoulli(seq, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(enc(seq), want, rtol=1e-12, atol=1e-12)


def test_rate_encode_rates_and_errors() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.tensor([0.0, 0.25, 0.75, 1.0]).view(1, 1, 2, 2)
    s = rate_encode(x, T=4000, generator=gen)
    assert s.shape == (4000, 1, 1, 2, 2) and bool(((s == 0) | (s == 1)).all())
    rate = s.mean(0).flatten()
    assert rate[0] == 0 and rate[3] == 1
    assert abs(float(rate[1]) - 0.25) < 0.03 and abs(float(rate[2]) - 0.75) < 0.03
    assert torch.equal(s, rate_encode(x, T=4000, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"x: rate coding expects intensities in \[0, 1\], got \[1.0, 2.0\]"):
        rate_encode(x + 1.0, T=2)
    with pytest.raises(ValueError, match="T: expected an integer >= 1"):
        rate_encode(x, T=0)
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        rate_encode(torch.ones(2, dtype=torch.uint8), T=2)
    with pytest.raises(ValueError, match=r"x: rate coding expects intensities in \[0, 1\]"):
        RateEncoder(1, 2, T=2)(torch.full((1, 1, 4, 4), -0.5))
    with pytest.raises(TypeError, match="generator: expected a torch.Generator or None, got int"):
        RateEncoder(1, 2, T=2, generator=0)  # type: ignore[arg-type]


def test_latency_coding_fires_once_at_the_hand_computed_step() -> None:
    # T = 4: step floor((1 - x) * 4); x = 0 never fires
    x = torch.tensor([1.0, 0.9, 0.75, 0.6, 0.5, 0.3, 0.25, 0.01, 0.0], dtype=F64)
    first = [0, 0, 1, 1, 2, 2, 3, 3, None]
    want = torch.zeros(4, len(x), dtype=F64)
    for i, t in enumerate(first):
        if t is not None:
            want[t, i] = 1.0
    assert torch.equal(latency_encode(x, 4), want)
    assert torch.equal(latency_encode(x, 1)[0], (x > 0).to(F64))  # one step: every lit pixel
    # the encoder: those spikes through the stem
    torch.manual_seed(2)
    enc = _randomise(make_encoder("latency", 1, 3, T=4).double())
    img = x[:8].view(2, 1, 2, 2)
    spikes = want[:, :8].reshape(4, 2, 1, 2, 2)
    torch.testing.assert_close(enc(img), _stem_by_hand(enc, spikes), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"x: latency coding turns a static image batch .* got a sequence"):
        enc(torch.rand(4, 2, 1, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"x: latency coding expects intensities in \[0, 1\]"):
        latency_encode(x * 2, 4)


def test_gac_from_the_factory_is_the_gac_encoder() -> None:
    torch.manual_seed(3)
    a = make_encoder("gac", 2, 4, T=3, temporal_attention="conv", decay=0.25)
    torch.manual_seed(3)
    b = GACEncoder(2, 4, 3, temporal_attention="conv", decay=0.25)
    assert type(a) is GACEncoder and repr(a) == repr(b)
    x = torch.rand(2, 2, 5, 5)
    assert torch.equal(a(x), b(x))


def test_settings_a_coding_does_not_have_raise() -> None:
    with pytest.raises(TypeError, match=r"coding 'rate' has no setting \['binarize'\]; its settings are "
                                        r"\['kernel_size', 'stride', 'padding', 'generator'\]"):  # fmt: skip
        make_encoder("rate", 1, 2, T=2, binarize=True)
    with pytest.raises(TypeError, match=r"coding 'latency' has no setting \['temporal_attention'\]"):
        create_model("msresnet_tiny", T=2, coding="latency", temporal_attention="conv")
    with pytest.raises(TypeError, match=r"coding 'gac' has no setting \['generator'\]"):
        gac.wrap(nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(16, 2)), T=2, in_channels=1,
                 generator=None)  # fmt: skip


@pytest.mark.parametrize("bad", ["poison", "GAC", ""])
def test_bad_coding_names_raise_naming_the_choices(bad: str) -> None:
    from gac_coding.train import TrainConfig

    message = rf"coding: expected one of {CHOICES}, got {bad!r}"
    with pytest.raises(ValueError, match=message):
        make_encoder(bad, 1, 2, T=2)
    with pytest.raises(ValueError, match=message):
        create_model("msresnet_tiny", coding=bad)
    with pytest.raises(ValueError, match=message):
        gac.wrap(nn.Sequential(gac.LIF()), T=2, in_channels=1, coding=bad)
    with pytest.raises(ValueError, match=message):
        TrainConfig(model="msresnet_tiny", coding=bad).validate()
    with pytest.raises(TypeError, match=r"coding: expected a str, one of .* got NoneType"):
        make_encoder(None, 1, 2, T=2)  # type: ignore[arg-type]


def test_a_new_coding_is_one_registered_class() -> None:
    @register_coding
    class Negated(StemEncoder):
        coding, label = "negated_test", "minus the direct code"

        def forward(self, x: Tensor) -> Tensor:
            u, static = self.membrane(x)
            return -(u.expand(self.T, *u.shape) if static else u)

    try:
        torch.manual_seed(0)
        model = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1, coding="negated_test")
        torch.manual_seed(0)
        direct = create_model("msresnet_tiny", num_classes=3, T=2, in_channels=1, coding="direct")
        assert type(model.encoder) is Negated and model.coding == "negated_test"
        x = torch.rand(2, 1, 8, 8)
        torch.testing.assert_close(model.encoder(x), -direct.encoder(x), rtol=0, atol=0)
        net = gac.wrap(nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 2)), T=2, in_channels=1,
                       coding="negated_test")  # fmt: skip
        assert net(x).shape == (2, 2, 2) and net.coding == "negated_test"
        with pytest.raises(ValueError, match="the coding 'negated_test' is already registered"):
            register_coding(type("Other", (StemEncoder,), {"coding": "negated_test"}))
    finally:
        del CODINGS["negated_test"]
    with pytest.raises(ValueError, match="must name the coding"):
        register_coding(StemEncoder)


# ---------------------------------------------------------------------------- deprecated names
def _one_warning(build, old: str):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = build()
    assert len(caught) == 1, [str(w.message) for w in caught]
    warning = caught[0]
    assert warning.category is DeprecationWarning
    # points here; in a mutation run (tests/mutation) mutmut's trampolines add frames in between
    assert warning.filename == __file__ or "MUTANT_UNDER_TEST" in os.environ
    assert str(warning.message).startswith(f"{old} is deprecated and will be removed in gac-coding 0.3.0")
    return made


@pytest.mark.parametrize("flag, coding", [(True, "gac"), (False, "direct")])
def test_gac_flag_warns_once_and_builds_the_model_of_coding(flag: bool, coding: str) -> None:
    from gac_coding.models.msresnet import msresnet_tiny
    from gac_coding.models.vgg import vgg_tiny

    def same(build_old, build_new, old: str) -> None:  # type: ignore[no-untyped-def]
        torch.manual_seed(4)
        a = _one_warning(build_old, old)
        torch.manual_seed(4)
        b = build_new()
        assert repr(a) == repr(b) and a.coding == coding
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)

    kw = {"num_classes": 3, "T": 2, "in_channels": 1}
    same(
        lambda: create_model("msresnet_tiny", gac=flag, **kw),
        lambda: create_model("msresnet_tiny", coding=coding, **kw),
        "create_model(gac=...)",
    )
    same(
        lambda: msresnet_tiny(gac=flag, **kw),
        lambda: msresnet_tiny(coding=coding, **kw),
        "model builder (gac=...)",
    )
    same(lambda: vgg_tiny(gac=flag, **kw), lambda: vgg_tiny(coding=coding, **kw), "model builder (gac=...)")
    same(
        lambda: MSResNet([(8, 1, 1)], 3, 2, gac=flag, stem_channels=8),
        lambda: MSResNet([(8, 1, 1)], 3, 2, coding=coding, stem_channels=8),
        "MSResNet(gac=...)",
    )
    same(lambda: SpikingVGG([8, "A"], 3, 2, gac=flag), lambda: SpikingVGG([8, "A"], 3, 2, coding=coding),
         "SpikingVGG(gac=...)")  # fmt: skip
    model = create_model("msresnet_tiny", coding=coding, **kw)
    assert _one_warning(lambda: model.gac, "model.gac") is flag


def test_moved_names_resolve_with_one_warning_each() -> None:
    import importlib

    moved = [old for old in DEPRECATED if old.startswith("gac_coding.")]
    assert len(moved) >= 10
    for old in moved:
        module, _, name = old.rpartition(".")
        target_module, _, target = DEPRECATED[old].new.rpartition(".")
        want = getattr(importlib.import_module(target_module), target)
        mod = importlib.import_module(module)
        assert _one_warning(lambda mod=mod, name=name: getattr(mod, name), old) is want
    # `from package import name` goes through the import machinery's own check first: still once
    assert _one_warning(lambda: __import__("gac_coding.models", fromlist=["DirectEncoder"]).DirectEncoder,
                        "gac_coding.models.DirectEncoder") is DirectEncoder  # fmt: skip


def test_every_deprecation_names_a_version_that_removes_it() -> None:
    for old, row in DEPRECATED.items():
        assert row.new and row.removed_in == "0.3.0", old
        assert tuple(int(p) for p in row.removed_in.split(".")) > tuple(
            int(p) for p in gac.__version__.split(".")
        )


# ------------------------------------------------------------------------------ one owner of T
def test_set_timesteps_on_the_owner_reaches_every_reader() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8)
    for coding in CODINGS:
        extra = {"temporal_attention": "conv"} if coding == "gac" else {}
        for name in ("msresnet_tiny", "vgg_tiny"):
            model = create_model(name, num_classes=3, T=2, in_channels=1, coding=coding, **extra)
            model.set_timesteps(5)
            assert model.T == model.encoder.T == 5 and model(x).shape == (5, 2, 3)
            model.encoder.set_timesteps(3)  # the owner itself: the model reads it
            assert model.T == 3 and model(x).shape == (3, 2, 3)
            with pytest.raises(AttributeError):
                model.T = 4  # type: ignore[misc]
    # the gate holds no T; the paper's MLP attention keeps its width (a capacity) and refuses others
    enc = GACEncoder(1, 4, T=4)
    assert not hasattr(enc.gate, "T") and enc.gate.ta.width == 4
    enc.set_timesteps(6)
    assert enc.T == 6 and enc.gate.ta.width == 4
    with pytest.raises(ValueError, match=r"MLP over the 4 time steps it was built for, .* cannot run at T=6"):
        enc(x)


def test_a_wrapped_net_and_its_driver_read_the_encoders_T() -> None:
    net = gac.wrap(nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 2)), T=2, in_channels=1,
                   coding="direct")  # fmt: skip
    net.set_timesteps(4)
    assert net.T == net.encoder.T == 4 and net(torch.rand(3, 1, 8, 8)).shape == (4, 3, 2)
    assert "T=4, coding='direct'" in repr(net)


# ----------------------------------------------------------------------- models and training
def test_every_coding_builds_every_registered_small_model_and_trains_a_step() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(4, 2, 8, 8), torch.tensor([0, 1, 2, 0])
    for coding in CODINGS:
        for name in ("msresnet_tiny", "vgg_tiny"):
            model = create_model(name, num_classes=3, T=2, in_channels=2, coding=coding)
            logits = model(x)
            assert logits.shape == (2, 4, 3) and model.coding == coding
            nn.functional.cross_entropy(logits.mean(0), y).backward()
            grads = [p.grad for p in model.parameters()]
            assert model.encoder.conv.weight.grad is not None and float(model.fc.bias.grad.abs().sum()) > 0
            assert all(g is None or bool(torch.isfinite(g).all()) for g in grads)


def test_a_rate_coded_model_is_the_direct_model_fed_the_spikes() -> None:
    """The old pipeline (draw Bernoulli spikes, feed them to a direct-coding model) and the new one
    (a rate-coded model draws them itself) give the same logits and the same energy count."""
    from gac_coding.energy import estimate_energy

    torch.manual_seed(0)
    rate = create_model("msresnet_tiny", num_classes=3, T=3, in_channels=1, coding="rate").double()
    direct = create_model("msresnet_tiny", num_classes=3, T=3, in_channels=1, coding="direct").double()
    direct.load_state_dict(rate.state_dict())
    x = torch.rand(4, 1, 8, 8, dtype=F64)
    spikes = rate_encode(x, 3, generator=torch.Generator().manual_seed(9))
    rate.encoder.generator = torch.Generator().manual_seed(9)
    torch.testing.assert_close(rate(x), direct(spikes), rtol=0, atol=0)
    rate.encoder.generator = torch.Generator().manual_seed(9)
    a, b = estimate_energy(rate, x).totals, estimate_energy(direct, spikes).totals
    for key in ("mac", "mac_paper", "ac_paper", "synop", "samples", "T"):
        assert a[key] == pytest.approx(b[key], rel=1e-12), key


def test_training_with_rate_coding_is_the_old_pipeline_exactly() -> None:
    """``TrainConfig(coding="rate")`` repeats, to the bit, the former ``coding="poisson"`` loop:
    spikes drawn from torch's global generator right before a direct-coding model's forward."""
    from gac_coding.train import TrainConfig, fit
    from gac_coding.train.data import DataSpec, TensorImageDataset, build_datasets

    class OldPipeline(nn.Module):
        def __init__(self, model: nn.Module, T: int) -> None:
            super().__init__()
            self.model, self.T = model, T

        def forward(self, x: Tensor) -> Tensor:
            return self.model(torch.bernoulli(x.unsqueeze(0).expand(self.T, *x.shape)))

    def old_factory(name: str, *, coding: str, T: int, **kw: object) -> nn.Module:
        assert coding == "rate"
        return OldPipeline(create_model(name, coding="direct", T=T, **kw), T)  # type: ignore[arg-type]

    full = build_datasets("digits")
    small = DataSpec(name="digits", num_classes=10, in_channels=1, image_size=8,
                     train=TensorImageDataset(full.train.images[:128], full.train.labels[:128]),
                     test=TensorImageDataset(full.test.images[:32], full.test.labels[:32]))  # fmt: skip
    config = dict(model="msresnet_tiny", dataset="digits", T=2, epochs=1, batch_size=64, lr=0.1,
                  coding="rate", cutmix=0.5, device="cpu", progress=False, backend="eager")  # fmt: skip
    quiet = {"log": lambda _m: None, "data": small}
    new = fit(TrainConfig(**config), **quiet).history  # type: ignore[arg-type]
    old = fit(TrainConfig(**config), model_factory=old_factory, **quiet).history  # type: ignore[arg-type]
    assert len(new) == 1 and 0 < new[0]["train_loss"]
    for epoch in (*new, *old):
        epoch.pop("seconds")
    assert new == old


def test_event_data_sets_refuse_the_codings_that_read_intensities() -> None:
    from gac_coding.train import TrainConfig

    for coding in ("rate", "latency"):
        with pytest.raises(ValueError, match=rf"coding: event data sets are fed as frames, and '{coding}'"):
            TrainConfig(model="vgg_tiny", dataset="nmnist", coding=coding).validate()
