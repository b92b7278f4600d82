"""The GAC encoder against an independent slow formulation of docs/design/encoder.md §1-3 and §7.

The slow formulation repeats a static frame T times and computes everything per step: the stem
convolution, BatchNorm over (T, B, H, W) written out by hand, the LIF as a plain Python loop, the
temporal attention from per-step means and maxima (of ``U``, or of the LIF's membrane), the
spatial-channel attention with PyTorch's ``padding="same"``, then the gate (``sigmoid(TA * SCA)``,
``sigmoid(TA) * sigmoid(SCA)``, ``sigmoid(TA + SCA)`` or ``sigmoid(TA)``) times ``S``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from slow_reference import fire, slow_temporal_attention

import gac_coding as gac


def slow_encoder(
    enc: gac.GACEncoder, x: torch.Tensor, *, momentum_update: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Naive GAC: returns (O, S, M) and updates the BN running statistics like nn.BatchNorm2d."""
    T = enc.T
    frames = [x] * T if x.dim() == 4 else list(x.unbind(0))
    conv = enc.conv
    ys = torch.stack(
        [F.conv2d(f, conv.weight, None, conv.stride, conv.padding) for f in frames]
    )  # [T, B, C, H, W]
    bn = enc.bn
    if bn.training:
        mean = ys.mean(dim=(0, 1, 3, 4))
        var = ((ys - mean.view(1, 1, -1, 1, 1)) ** 2).mean(dim=(0, 1, 3, 4))
        if momentum_update:
            n = ys.numel() / ys.shape[2]
            with torch.no_grad():
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1 / bn.num_batches_tracked.item()
                bn.running_mean.mul_(1 - m).add_(m * mean.detach())
                bn.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
    else:
        mean, var = bn.running_mean, bn.running_var
    shape = (1, 1, -1, 1, 1)
    u = (ys - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
    u = u * bn.weight.view(shape) + bn.bias.view(shape)

    g = enc.gate
    options = g.options
    spikes, pooled = [], []
    v = torch.zeros_like(u[0])
    s = torch.zeros_like(u[0])
    m = torch.zeros_like(u[0])  # the membrane the attention reads: the reset a constant there
    for t in range(T):
        keep = 1 - (s.detach() if g.detach_reset else s)
        m = g.decay * m * (1 - s.detach()) + u[t]
        v = g.decay * v * keep + u[t]
        s = fire(v - g.threshold, g.surrogate)
        spikes.append(s)
        pooled.append(m if options["ta_source"] == "membrane" else u[t])
    S = torch.stack(spikes)

    a_avg = torch.stack([p.mean(dim=(1, 2, 3)) for p in pooled], dim=1)  # [B, T]
    a_max = torch.stack([p.amax(dim=(1, 2, 3)) for p in pooled], dim=1)
    ta = slow_temporal_attention(g.ta, a_avg, a_max).view(T, -1, 1, 1, 1)  # [T, B, 1, 1, 1]
    if options["gate"] == "temporal":  # no spatial-channel attention
        M = (1 / (1 + torch.exp(-ta))).expand(S.shape)
        return M * S, S, M
    sca = torch.stack(
        [
            F.conv2d(
                F.relu(F.conv2d(u[t], g.sca.conv1.weight, padding="same")), g.sca.conv2.weight, padding="same"
            )
            for t in range(T)
        ]
    )
    if options["gate"] == "product":
        M = 1 / (1 + torch.exp(-ta * sca))
    elif options["gate"] == "separate":
        M = 1 / (1 + torch.exp(-ta)) / (1 + torch.exp(-sca))
    else:
        M = 1 / (1 + torch.exp(-(ta + sca)))
    return M * S, S, M


def _params(enc: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in enc.parameters() if p.requires_grad]


def _compare(enc: gac.GACEncoder, x: torch.Tensor, feed_sequence: bool, train: bool) -> None:
    enc.train(train)
    # the slow formulation starts from the same running statistics
    bn_state = {k: v.clone() for k, v in enc.bn.state_dict().items()}

    xin = x.detach().clone().requires_grad_()
    inp = xin.unsqueeze(0).expand(enc.T, *x.shape) if feed_sequence else xin
    out = enc(inp)
    grad = torch.randn_like(out)
    grads_fast = torch.autograd.grad(out, [xin, *_params(enc)], grad)
    fast_running = {k: v.clone() for k, v in enc.bn.state_dict().items()}

    enc.bn.load_state_dict(bn_state)
    xref = x.detach().clone().requires_grad_()
    ref, S, M = slow_encoder(enc, xref)
    grads_slow = torch.autograd.grad(ref, [xref, *_params(enc)], grad)

    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    assert enc.last_spikes is not None and enc.last_gate is not None
    assert torch.equal(enc.last_spikes, S.detach())
    torch.testing.assert_close(enc.last_gate, M.detach(), rtol=1e-9, atol=1e-10)
    for gf, gs in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(gf, gs, rtol=1e-8, atol=1e-9)
    for key, value in enc.bn.state_dict().items():
        torch.testing.assert_close(fast_running[key], value, rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 6),
    B=st.integers(1, 3),
    cin=st.integers(1, 3),
    cout=st.integers(1, 6),
    size=st.integers(3, 7),
    kernel=st.sampled_from([(1, 1, 0), (3, 1, 1), (3, 2, 1), (5, 1, 2), (3, 1, 0)]),
    ta_ratio=st.integers(1, 4),
    sca_ratio=st.integers(1, 2),
    sca_kernel=st.integers(1, 4),
    recipe=st.sampled_from(["cifar", "imagenet"]),
    train=st.booleans(),
    feed_sequence=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_encoder_matches_slow_formulation(
    T: int,
    B: int,
    cin: int,
    cout: int,
    size: int,
    kernel: tuple[int, int, int],
    ta_ratio: int,
    sca_ratio: int,
    sca_kernel: int,
    recipe: str,
    train: bool,
    feed_sequence: bool,
    seed: int,
) -> None:
    torch.manual_seed(seed)
    sca_ratio = min(sca_ratio, cout)
    k, stride, pad = kernel
    enc = gac.GACEncoder(
        cin,
        cout,
        T,
        k,
        stride,
        pad,
        ta_ratio=ta_ratio,
        sca_ratio=sca_ratio,
        sca_kernel=sca_kernel,
        **gac.RECIPES[recipe],  # type: ignore[arg-type]
    ).double()
    with torch.no_grad():  # non-trivial BN parameters and running statistics
        enc.bn.weight.uniform_(0.5, 2.0)
        enc.bn.bias.uniform_(-0.3, 0.8)
        enc.bn.running_mean.uniform_(-0.2, 0.2)
        enc.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(B, cin, size, size, dtype=torch.float64) * 2
    if B * enc.output_size(size, size)[0] ** 2 == 1 and T == 1 and train:
        return  # one value per channel: BatchNorm cannot train; covered by a dedicated test
    _compare(enc, x, feed_sequence, train)


def test_static_equals_sequence_of_same_frames_float32() -> None:
    enc = gac.GACEncoder(3, 16, T=4)
    x = torch.rand(4, 3, 10, 10)
    a = enc(x)
    b = enc(x.unsqueeze(0).expand(4, *x.shape))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_sequence_of_different_frames_matches_slow() -> None:
    torch.manual_seed(3)
    enc = gac.GACEncoder(2, 5, T=3).double()
    x = torch.rand(3, 2, 2, 6, 6, dtype=torch.float64, requires_grad=True) * 3
    out = enc(x)
    ref, _, _ = slow_encoder(enc, x, momentum_update=False)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_momentum_none_running_statistics() -> None:
    enc = gac.GACEncoder(1, 4, T=3).double()
    enc.bn.momentum = None
    ref = gac.GACEncoder(1, 4, T=3).double()
    ref.load_state_dict(enc.state_dict())
    ref.bn.momentum = None
    for i in range(3):
        x = torch.rand(2, 1, 5, 5, dtype=torch.float64) + i
        enc(x)
        slow_encoder(ref, x)
    torch.testing.assert_close(enc.bn.running_mean, ref.bn.running_mean)
    torch.testing.assert_close(enc.bn.running_var, ref.bn.running_var)
    assert int(enc.bn.num_batches_tracked) == 3


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_single_value_per_channel_static_training() -> None:
    # B = 1 and a 1x1 code: the naive formulation has T identical values per channel
    enc = gac.GACEncoder(1, 3, T=4, kernel_size=3, padding=0).double()
    x = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    out = enc(x)
    ref, _, _ = slow_encoder(enc, x, momentum_update=False)
    torch.testing.assert_close(out, ref)
    enc1 = gac.GACEncoder(1, 3, T=1, kernel_size=3, padding=0)
    with pytest.raises(ValueError, match="more than one value per channel"):
        enc1(torch.rand(1, 1, 3, 3))


def test_output_range_and_zero_without_spikes() -> None:
    enc = gac.GACEncoder(3, 8, T=5)
    o = enc(torch.rand(6, 3, 9, 9) * 4)
    s = enc.last_spikes
    assert s is not None
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert bool((o >= 0).all()) and bool((o < 1).all())
    assert bool((o[s == 0] == 0).all())
    assert bool((o[s == 1] > 0).all())
    gate = enc.last_gate
    assert gate is not None and bool(((gate > 0) & (gate < 1)).all())
    assert enc.last_temporal_attention is not None
    assert enc.last_temporal_attention.shape == (5, 6)


def test_state_does_not_leak_between_calls() -> None:
    enc = gac.GACEncoder(1, 4, T=4).eval()
    x = torch.rand(3, 1, 8, 8)
    first = enc(x)
    enc(torch.rand(5, 1, 8, 8) * 10)
    assert torch.equal(first, enc(x))


def test_record_off_keeps_nothing() -> None:
    enc = gac.GACEncoder(1, 4, T=2, record=False)
    enc(torch.rand(2, 1, 4, 4))
    assert enc.last_spikes is None and enc.last_gate is None


def test_binarize_emits_spikes_with_straight_through_gradient() -> None:
    torch.manual_seed(1)
    gated = gac.GACEncoder(1, 6, T=4)
    binary = gac.GACEncoder(1, 6, T=4, binarize=True)
    binary.load_state_dict(gated.state_dict())
    x = torch.rand(3, 1, 8, 8) * 3
    o = gated(x)
    b = binary(x)
    assert torch.equal(b, (o > 0.5).to(o.dtype))
    assert 0 < b.sum() < b.numel()
    gated.zero_grad()
    o.sum().backward()
    b.sum().backward()  # straight through: the same gradient as the gated output
    torch.testing.assert_close(binary.conv.weight.grad, gated.conv.weight.grad)


def test_autocast_bfloat16_cpu() -> None:
    enc = gac.GACEncoder(3, 8, T=4)
    x = torch.rand(2, 3, 8, 8) * 2
    ref = enc(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(x)
    out.float().sum().backward()
    assert out.shape == ref.shape
    assert bool(torch.isfinite(out.float()).all())
    assert enc.conv.weight.grad is not None and enc.conv.weight.grad.dtype == torch.float32
    assert bool(torch.isfinite(enc.conv.weight.grad).all())
    # bf16 keeps about 3 significant digits: most spikes agree with the float32 code
    agree = ((out.float() > 0) == (ref > 0)).float().mean()
    assert agree > 0.9


def test_double_precision_module() -> None:
    enc = gac.GACEncoder(1, 4, T=3).double()
    assert enc(torch.rand(2, 1, 5, 5, dtype=torch.float64)).dtype == torch.float64


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def enc() -> gac.GACEncoder:
    return gac.GACEncoder(3, 8, T=4, kernel_size=3, padding=0)


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.rand(3, 8, 8), ValueError, r"x: expected a static batch .* got 3 dims"),
        (torch.rand(1, 4, 2, 3, 8, 8), ValueError, "got 6 dims"),
        (torch.rand(2, 1, 8, 8), ValueError, "expected 3 channels at dim 1, got 1"),
        (torch.rand(4, 2, 1, 8, 8), ValueError, "expected 3 channels at dim 2, got 1"),
        (torch.rand(6, 2, 3, 8, 8), ValueError, "T=6 steps but the encoder was built for T=4"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), TypeError, r"uint8.*x.float\(\) / 255"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.bool), TypeError, "floating-point"),
        (torch.rand(2, 3, 2, 8), ValueError, r"too small for the stem.*\(3, 3\)"),
        (torch.rand(0, 3, 8, 8), ValueError, "batch of at least 1"),
        (torch.rand(2, 3, 8, 8, dtype=torch.float64), TypeError, "does not match"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(enc: gac.GACEncoder, x: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        enc(x)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input(enc: gac.GACEncoder, value: float) -> None:
    x = torch.rand(2, 3, 8, 8)
    x[1, 2, 3, 4] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        enc(x)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"T": 0}, ValueError, "T: expected an integer >= 1, got 0"),
        ({"T": 2.0}, TypeError, "T: expected an int"),
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"padding": -1}, ValueError, "padding"),
        ({"ta_ratio": 0}, ValueError, "ratio"),
        ({"sca_ratio": 16}, ValueError, "channels // ratio"),
        ({"decay": 2.0}, ValueError, "decay"),
        ({"surrogate": "erf"}, ValueError, "surrogate"),
    ],
)
def test_bad_construction(kwargs: dict, exc: type, match: str) -> None:
    args = {"in_channels": 3, "out_channels": 8, "T": 4, **kwargs}
    with pytest.raises(exc, match=match):
        gac.GACEncoder(**args)


def test_gated_attention_unit_standalone() -> None:
    unit = gac.GatedAttentionUnit(channels=4, T=3).double()
    u = torch.randn(3, 2, 4, 5, 5, dtype=torch.float64) * 2
    o = unit(u)
    s = gac.LIF()(u)
    ta = unit.ta(u)
    sca = unit.sca(u.flatten(0, 1)).view(u.shape)
    torch.testing.assert_close(o, torch.sigmoid(ta.view(3, 2, 1, 1, 1) * sca) * s)
    with pytest.raises(ValueError, match=r"u: expected \[T=3, B, C=4, H, W\]"):
        unit(torch.randn(2, 2, 4, 5, 5))


def test_import_needs_torch_only() -> None:
    import subprocess
    import sys

    code = (
        "import sys, gac_coding; "
        "bad = [m for m in ('snntorch', 'norse', 'spikingjelly', 'sklearn', 'matplotlib') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_inference_path_equals_training_path() -> None:
    enc = gac.GACEncoder(2, 6, T=5).eval()
    for x in (torch.rand(3, 2, 7, 7) * 3, torch.rand(5, 3, 2, 7, 7) * 3):
        with_grad = enc(x)
        with torch.no_grad():
            without = enc(x)
        assert with_grad.requires_grad and not without.requires_grad
        assert torch.equal(with_grad, without)
    x = torch.randn(6, 4, 9) * 2
    with torch.no_grad():
        a = gac.LIF()(x)
    assert torch.equal(a, gac.LIF()(x.requires_grad_()))
