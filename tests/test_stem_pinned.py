"""What the coding-stem mutation run found unpinned (tests/README.md, "Mutation testing").

The stem every encoder shares (``coding/base.py``), the rate and latency codings and the registry:
``check_image_input``'s messages (each names the argument, what was expected and what arrived)
and its checks as they run while tracing (``torch.compile``: ``torch._check`` with a constant
message); the smallest input the stem takes, against the convolution itself; the constructor's
messages and the stem's documented defaults; the static stem's BatchNorm with a zero weight in
the one-value branch, with ``track_running_stats`` switched off after construction, with
``momentum=None`` over several batches (in float64, to the last bits), under CPU autocast and
in bfloat16; the device message; the rate coding's messages, an empty batch and ``extra_repr``;
latency coding under another default device; ``check_coding``'s ``"poisson"`` and its messages,
``register_coding``'s refusals, and where each deprecation warning points (``stacklevel``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from warning_frames import warnings_pointing

from gac_coding._deprecated import DEPRECATED
from gac_coding.coding import (
    CODINGS,
    DirectEncoder,
    LatencyEncoder,
    RateEncoder,
    StemEncoder,
    check_coding,
    check_image_input,
    latency_encode,
    make_encoder,
    rate_encode,
    register_coding,
)
from gac_coding.coding.registry import coding_from_gac_flag

F64 = torch.float64
CHOICES = r"\['direct', 'rate', 'latency', 'gac'\]"


# ------------------------------------------------------------------------------ check_image_input


def test_check_image_input_messages_name_the_argument_what_was_expected_and_what_arrived() -> None:
    with pytest.raises(TypeError, match=r"^frames: expected a torch.Tensor, got list$"):
        check_image_input([1.0], in_channels=1, T=2, name="frames")
    with pytest.raises(
        TypeError,
        match=r"^x: expected a floating-point tensor, got dtype torch.uint8 "
        r"\(convert images first, e.g. x.float\(\) / 255\)$",
    ):
        check_image_input(torch.zeros(1, 1, 2, 2, dtype=torch.uint8), in_channels=1, T=2)
    # no conversion hint for a dtype that is not an image's integer type
    with pytest.raises(TypeError, match=r"^x: expected a floating-point tensor, got dtype torch.bool$"):
        check_image_input(torch.zeros(1, 1, 2, 2, dtype=torch.bool), in_channels=1, T=2)
    with pytest.raises(
        ValueError,
        match=r"^x: sequence has T=3 steps but the encoder was built for T=2 \(or set to it\); shape "
        r"\(3, 1, 1, 2, 2\). To run at 3 steps, call set_timesteps\(3\) on the model first$",
    ):
        check_image_input(torch.zeros(3, 1, 1, 2, 2, dtype=F64), in_channels=1, T=2)


def test_check_image_input_takes_exactly_the_minimum_size_and_names_the_spatial_size() -> None:
    need = (3, 5)  # not square, so that height and width cannot stand in for each other
    for shape in ((1, 1, 3, 5), (2, 1, 1, 3, 5)):
        assert check_image_input(torch.zeros(shape, dtype=F64), in_channels=1, T=2, min_size=need) == (
            len(shape) == 4
        )
    for shape in ((1, 1, 2, 5), (1, 1, 3, 4), (2, 1, 1, 2, 5), (2, 1, 1, 3, 4)):
        spatial = shape[-2:]
        with pytest.raises(
            ValueError,
            match=rf"^x: spatial size \({spatial[0]}, {spatial[1]}\) is too small for the stem, which "
            rf"needs at least \(3, 5\) \(shape \({', '.join(map(str, shape))}\)\)$",
        ):
            check_image_input(torch.zeros(shape, dtype=F64), in_channels=1, T=2, min_size=need)


def test_check_image_input_while_tracing_checks_batch_and_size_with_constant_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under ``torch.compile`` the batch and spatial sizes go through ``torch._check`` (a guard or
    a runtime assertion); here the tracing branch runs on concrete sizes, where ``torch._check``
    raises ``RuntimeError`` with the message at once. (The compiled path itself is tested in
    tests/test_compile_export.py, outside this mutation area: it compiles.)"""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    need = (3, 5)

    def check(shape: tuple[int, ...]) -> bool:
        return check_image_input(torch.zeros(shape, dtype=F64), in_channels=1, T=2, min_size=need)

    # one sample, one channel, exactly the minimum size: static and sequence
    assert check((1, 1, 3, 5)) is True
    assert check((2, 1, 1, 3, 5)) is False
    for empty in ((0, 1, 3, 5), (2, 0, 1, 3, 5)):
        with pytest.raises(RuntimeError, match=r"^x: expected a batch of at least 1$"):
            check(empty)
    for small in ((1, 1, 2, 5), (1, 1, 3, 4), (2, 1, 1, 2, 5), (2, 1, 1, 3, 4)):
        with pytest.raises(
            RuntimeError, match=r"^x: spatial size too small for the stem, which needs at least \(3, 5\)$"
        ):
            check(small)


# ------------------------------------------------------------------------------ the stem


def test_the_stem_takes_exactly_the_inputs_its_convolution_takes() -> None:
    """The smallest input: the convolution ``H + 2p - k >= 0`` and at least one pixel. The oracle is
    ``F.conv2d`` itself: an input it refuses (or maps to nothing) is refused first by the encoder
    with its own message, every other one is taken."""
    for k, p in ((3, 1), (5, 1), (5, 0), (3, 2), (1, 0)):
        enc = DirectEncoder(1, 1, T=2, kernel_size=k, padding=p).eval()
        for h in range(1, 7):
            for w in range(1, 7):
                x = torch.rand(1, 1, h, w)
                try:
                    conv_takes = F.conv2d(x, enc.conv.weight, None, 1, p).numel() > 0
                except RuntimeError:
                    conv_takes = False
                if conv_takes:
                    assert enc.check_input(x) is True, (k, p, h, w)
                    assert enc(x).shape == (2, 1, 1, *enc.output_size(h, w))
                else:
                    with pytest.raises(ValueError, match=rf"^x: spatial size \({h}, {w}\) is too small"):
                        enc(x)


def test_the_constructor_names_each_bad_argument() -> None:
    good = {"in_channels": 1, "out_channels": 2, "T": 2, "kernel_size": 3, "stride": 1, "padding": 1}
    for name in ("in_channels", "out_channels", "kernel_size", "stride"):
        with pytest.raises(ValueError, match=rf"^{name}: expected an integer >= 1, got 0$"):
            StemEncoder(**{**good, name: 0})
    with pytest.raises(ValueError, match=r"^padding: expected an integer >= 0, got -1$"):
        StemEncoder(**{**good, "padding": -1})
    enc = StemEncoder(**{**good, "in_channels": 3, "out_channels": 4})
    assert (enc.in_channels, enc.out_channels) == (3, 4)
    assert (enc.conv.in_channels, enc.conv.out_channels, enc.bn.num_features) == (3, 4, 4)


def test_every_stem_defaults_to_a_3x3_convolution_of_stride_1_and_padding_1() -> None:
    """The defaults the constructors state (``kernel_size=3, stride=1, padding=1``: the spatial size
    is kept); the rate coding passes its own ``stride`` and ``padding`` to the stem."""
    x = torch.rand(2, 1, 5, 4)
    for cls in (StemEncoder, DirectEncoder, RateEncoder, LatencyEncoder):
        conv = cls(1, 2, T=2).conv
        assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1)), cls
        assert conv.bias is None
    assert RateEncoder(1, 2, T=2)(x).shape == (2, 2, 2, 5, 4)
    rate = RateEncoder(1, 2, T=2, kernel_size=3, stride=2, padding=0)
    assert (rate.conv.stride, rate.conv.padding) == ((2, 2), (0, 0))
    assert rate(torch.rand(2, 1, 7, 9)).shape == (2, 2, 2, 3, 4)


def test_parameters_on_another_device_are_named_with_both_devices() -> None:
    enc = DirectEncoder(1, 2, T=2).to("meta")
    with pytest.raises(
        ValueError,
        match=r"^x: is on cpu but the encoder's parameters are on meta; move one of them "
        r"\(x.to\(\.\.\.\) or encoder.to\(\.\.\.\)\)$",
    ):
        enc(torch.rand(1, 1, 4, 4))


def _bn_of_copies(bn: nn.BatchNorm2d, y: Tensor, T: int) -> Tensor:
    """``bn`` (a copy, changed in place as the encoder's would be) on ``T`` identical steps of ``y``;
    the first step's output."""
    return bn(y.unsqueeze(0).expand(T, *y.shape).flatten(0, 1))[: y.shape[0]]


def test_one_value_per_channel_with_a_zero_weight_gives_the_bias() -> None:
    """One value per channel and step (``B=1``, a 1x1 output): every step equals the channel's mean,
    so BatchNorm gives ``0 * weight + bias``, the bias also where the weight is 0."""
    enc = DirectEncoder(1, 3, T=3).to(F64).train()
    with torch.no_grad():
        enc.bn.weight.copy_(torch.tensor([0.0, 1.5, -2.0]))
        enc.bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    ref = copy.deepcopy(enc.bn)
    x = torch.rand(1, 1, 1, 1, dtype=F64)
    out = enc(x)
    assert torch.equal(out, enc.bn.bias.detach().view(1, 1, 3, 1, 1).expand(3, 1, 3, 1, 1))
    torch.testing.assert_close(out[0], _bn_of_copies(ref, enc.conv(x), 3).detach(), rtol=0, atol=0)


def test_tracking_switched_off_after_construction_leaves_the_running_statistics() -> None:
    """``bn.track_running_stats = False`` on a built encoder (its buffers stay): training uses the
    batch statistics and updates nothing, as ``nn.BatchNorm2d`` does."""
    enc = DirectEncoder(1, 2, T=2).to(F64).train()
    enc.bn.track_running_stats = False
    ref = copy.deepcopy(enc.bn)
    x = torch.rand(3, 1, 4, 4, dtype=F64)
    out = enc(x)
    torch.testing.assert_close(out[0], _bn_of_copies(ref, enc.conv(x), 2).detach(), rtol=1e-12, atol=1e-12)
    assert torch.equal(enc.bn.running_mean, torch.zeros(2, dtype=F64))
    assert torch.equal(enc.bn.running_var, torch.ones(2, dtype=F64))
    assert int(enc.bn.num_batches_tracked) == 0 == int(ref.num_batches_tracked)


def test_momentum_none_is_the_cumulative_average_to_the_last_bits_in_float64() -> None:
    """The weight ``1 / batches`` of the cumulative average in float64 (``1/3`` is not a float32)."""
    enc = DirectEncoder(1, 2, T=3).to(F64).train()
    enc.bn.momentum = None
    ref = copy.deepcopy(enc.bn)
    for _ in range(3):
        x = torch.rand(2, 1, 4, 4, dtype=F64)
        enc(x)
        with torch.no_grad():
            _bn_of_copies(ref, enc.conv(x), 3)
    assert int(enc.bn.num_batches_tracked) == 3
    torch.testing.assert_close(enc.bn.running_mean, ref.running_mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(enc.bn.running_var, ref.running_var, rtol=1e-14, atol=0)


def _running_by_hand(y: Tensor, T: int, momentum: float = 0.1) -> tuple[Tensor, Tensor]:
    """Running statistics after one batch from the defaults (mean 0, variance 1), in float64."""
    y = y.to(F64)
    n = y.numel() // y.shape[1] * T
    mean = y.mean((0, 2, 3))
    var = y.var((0, 2, 3), unbiased=False) * n / (n - 1)
    return momentum * mean, (1 - momentum) + momentum * var


def test_autocast_statistics_are_taken_in_float32_from_the_low_precision_stem_output() -> None:
    """Under CPU autocast the convolution gives bfloat16 and the running statistics stay float32:
    they are computed in float32 from the bfloat16 values (bfloat16 arithmetic would be off by
    about 2**-8; float32 by about 2**-24)."""
    enc = DirectEncoder(3, 4, T=2).train()
    x = torch.rand(4, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = enc.conv(x).detach()
        enc(x)
    assert y.dtype == torch.bfloat16 and enc.bn.running_mean.dtype == torch.float32
    mean, var = _running_by_hand(y, 2)
    torch.testing.assert_close(enc.bn.running_mean.to(F64), mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(enc.bn.running_var.to(F64), var, rtol=1e-5, atol=1e-7)


def test_a_bfloat16_encoder_keeps_bfloat16_statistics() -> None:
    """An encoder converted to bfloat16: the statistics are taken in float32 and stored in bfloat16
    (to bfloat16's precision, 2**-8 relative)."""
    enc = DirectEncoder(1, 2, T=3).to(torch.bfloat16).train()
    enc.bn.momentum = None
    x = torch.rand(2, 1, 5, 5).to(torch.bfloat16)
    out = enc(x)
    assert out.dtype == enc.bn.running_mean.dtype == enc.bn.running_var.dtype == torch.bfloat16
    mean, var = _running_by_hand(enc.conv(x).detach(), 3, momentum=1.0)
    torch.testing.assert_close(enc.bn.running_mean.to(F64), mean, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(enc.bn.running_var.to(F64), var, rtol=1e-2, atol=1e-2)


# ------------------------------------------------------------------------------ rate and latency


def test_the_intensity_checks_name_what_arrived() -> None:
    with pytest.raises(TypeError, match=r"^x: expected a floating-point tensor, got torch.int64$"):
        rate_encode(torch.zeros(2, 2, dtype=torch.int64), T=2)
    with pytest.raises(TypeError, match=r"^x: expected a floating-point tensor, got list$"):
        latency_encode([0.5], T=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^T: expected an integer >= 1, got 0$"):
        latency_encode(torch.rand(2), T=0)
    # a sequence of intensities for the rate encoder: one draw per frame, after the same check
    with pytest.raises(
        ValueError, match=r"^x: rate coding expects intensities in \[0, 1\], got \[0.0, 2.0\]$"
    ):
        RateEncoder(1, 2, T=2).spikes(torch.tensor([0.0, 2.0], dtype=F64).view(2, 1, 1, 1, 1))


def test_an_empty_batch_gives_empty_spike_trains() -> None:
    assert rate_encode(torch.empty(0, 1, 2, 2), T=3).shape == (3, 0, 1, 2, 2)
    assert latency_encode(torch.empty(0, 4), T=2).shape == (2, 0, 4)


def test_the_rate_encoders_repr_says_where_its_draws_come_from() -> None:
    assert RateEncoder(1, 2, T=3).extra_repr() == "T=3, rate coding (Bernoulli spikes, global generator)"
    own = RateEncoder(1, 2, T=2, generator=torch.Generator().manual_seed(1))
    assert own.extra_repr() == "T=2, rate coding (Bernoulli spikes, own generator)"
    assert "own generator" in repr(own)


def test_latency_spikes_are_made_on_the_inputs_device_whatever_the_default_device() -> None:
    """Steps are made where ``x`` is (a default device of another kind, here ``meta``, is not used)."""
    x = torch.tensor([1.0, 0.6, 0.3, 0.0], dtype=F64)
    by_hand = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=F64).t()
    with torch.device("meta"):
        s = latency_encode(x, T=4)
    assert s.device == x.device and s.dtype == F64
    assert torch.equal(s, by_hand)


# ------------------------------------------------------------------------------ the registry


def test_check_coding_reads_poisson_as_rate_and_names_the_type_that_arrived() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        assert check_coding("poisson") == "rate"
    removed_in = DEPRECATED["coding='poisson'"].removed_in
    assert [str(w.message) for w in caught] == [
        f"coding='poisson' is deprecated and will be removed in gac-coding {removed_in}; "
        "use coding='rate' (the same Bernoulli rate coding)"
    ]
    with pytest.warns(DeprecationWarning):
        assert isinstance(make_encoder("poisson", 1, 2, T=2), RateEncoder)
    with pytest.raises(
        TypeError,
        match=rf"^coding: expected a str, one of {CHOICES}, got bool \(gac=True / False is now "
        r"coding='gac' / 'direct'\)$",
    ):
        check_coding(True)
    with pytest.raises(TypeError, match=rf"^coding: expected a str, one of {CHOICES}, got int$"):
        check_coding(3)


def test_register_coding_refuses_what_is_not_a_named_stem_encoder() -> None:
    with pytest.raises(TypeError, match=r"^cls: expected a subclass of StemEncoder, got <class 'int'>$"):
        register_coding(int)  # type: ignore[type-var]

    class TwoWords(StemEncoder):
        coding = "two words"

    with pytest.raises(
        ValueError, match=r"^cls: TwoWords.coding must name the coding \(an identifier\), got 'two words'$"
    ):
        register_coding(TwoWords)
    assert "two words" not in CODINGS


def test_the_gac_flag_maps_to_a_coding_by_its_documented_rule() -> None:
    old = "create_model(gac=...)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert coding_from_gac_flag("direct", True, old) == "gac"
        assert coding_from_gac_flag("gac", True, old) == "gac"
        assert coding_from_gac_flag("gac", False, old) == "direct"
        assert coding_from_gac_flag("direct", False, old) == "direct"
        assert coding_from_gac_flag("rate", False, old) == "rate"
        assert coding_from_gac_flag("latency", False, old) == "latency"
        with pytest.raises(
            ValueError,
            match=r"^coding: Poisson rate coding feeds spikes to a model without GAC; gac=True "
            r"contradicts it \(pass coding='rate' alone\)$",
        ):
            coding_from_gac_flag("rate", True, old)
        with pytest.raises(TypeError, match=r"^gac: expected a bool, got int$"):
            coding_from_gac_flag("direct", 1, old)


def _where_warnings_point(
    monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]
) -> list[tuple[str, str]]:
    """The old name each deprecation warning of ``call()`` is about, and the function it points at."""
    return [(m.split(" is deprecated")[0], where) for m, where, _ in warnings_pointing(monkeypatch, call)]


def test_each_deprecation_warning_points_at_the_code_that_used_the_old_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``check_coding``, ``make_encoder`` and ``coding_from_gac_flag`` warn at the caller of the
    function that took the old name (``library`` here; ``user`` is the code that used it)."""

    def library_check() -> str:
        return check_coding("poisson")

    def library_flag(coding: str, gac: bool | None) -> str:
        return coding_from_gac_flag(coding, gac, "create_model(gac=...)")

    def user() -> None:
        library_check()
        make_encoder("poisson", 1, 2, T=2)
        library_flag("poisson", None)
        library_flag("direct", True)
        library_flag("poisson", False)

    assert _where_warnings_point(monkeypatch, user) == [
        ("coding='poisson'", "user"),
        ("coding='poisson'", "user"),
        ("coding='poisson'", "user"),
        ("create_model(gac=...)", "user"),
        ("create_model(gac=...)", "user"),
        ("coding='poisson'", "user"),
    ]


def test_half_precision_latency_spikes_are_the_times_of_their_values_once_each() -> None:
    """bfloat16 intensities ``k / 256`` (exact in bfloat16) at ``T = 300`` steps: pixel ``k`` fires
    once, at ``floor((256 - k) * 300 / 256)`` (integer arithmetic), and ``x = 0`` never. (In
    bfloat16 arithmetic the products round, and the step numbers past 256 too, so that pixels
    fired at the wrong step or at two or three.)"""
    T = 300
    k = torch.arange(257)
    for dtype in (torch.bfloat16, torch.float16):
        x = (k.to(F64) / 256).to(dtype)
        s = latency_encode(x, T)
        assert s.dtype == dtype and s.shape == (T, 257)
        assert torch.equal(s[:, 0], torch.zeros(T, dtype=dtype))
        fires = s[:, 1:].nonzero()  # (step, pixel - 1), one row per spike
        assert torch.equal(fires[:, 1].sort().values, torch.arange(256)), dtype
        steps = torch.empty(256, dtype=torch.int64)
        steps[fires[:, 1]] = fires[:, 0]
        assert torch.equal(steps, (256 - k[1:]) * T // 256), dtype
