"""NIR export (issue 13): the written-and-read graph, run by consumers nobody here wrote and by an
independent plain-numpy interpreter, equals the model in float64, spike for spike.

Models run in float64 with BatchNorm statistics calibrated on the input, so that every layer fires.
Logit comparisons allow 1e-10 (absolute): the graph's convolutions carry BatchNorm folded into their
weights (``w * g / sqrt(var + eps)`` instead of normalising the output), SpikingJelly charges
``v - v / tau + x`` instead of ``decay * v + x`` and the numpy interpreter sums in another order;
each is a rounding of float64 (relative 1e-16) on values of order 10, compounded over a few layers.
Spikes are compared exactly.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.energy import calibrate_batchnorm, estimate_energy
from gac_coding.models import create_model, list_models

nir = pytest.importorskip("nir")  # the test extra installs it; never skipped under `make test`
from gac_coding.export import to_nir  # noqa: E402

T = 3
HIDDEN = 5
ATOL = 1e-10  # see the module docstring


def strict_spike(v: Tensor) -> Tensor:
    """snnTorch spike function that keeps float64 (its own surrogates return float32)."""
    return (v > 0).to(v.dtype)


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


def _tiny(gac_on: bool) -> nn.Module:
    coding = "gac" if gac_on else "direct"
    return create_model("msresnet_tiny", num_classes=4, T=T, coding=coding, in_channels=2)


def _sj(mode: str) -> nn.Module:
    from spikingjelly.activation_based import functional, layer, neuron

    net = nn.Sequential(
        layer.Conv2d(2, HIDDEN, 3, padding=1, bias=False),
        layer.BatchNorm2d(HIDDEN),
        neuron.LIFNode(tau=2.0, decay_input=False),
        layer.Conv2d(HIDDEN, HIDDEN, 3, stride=2, padding=1),
        layer.BatchNorm2d(HIDDEN),
        neuron.IFNode(v_threshold=0.5),
        layer.AvgPool2d(2),
        layer.Flatten(),
        layer.Linear(HIDDEN * 4, 4),
    )
    functional.set_step_mode(net, mode)
    return net


def _snntorch() -> nn.Module:
    import snntorch as snn

    return nn.Sequential(
        # thresholds off 0.5: the untrained encoder emits exactly 0.5 where its temporal attention is
        # 0, and a membrane exactly on the threshold is decided by the rounding of NIR's dt/tau * r
        snn.Leaky(
            beta=0.6, threshold=0.45, init_hidden=True, reset_mechanism="zero", spike_grad=strict_spike
        ),
        nn.Conv2d(2, HIDDEN, 3, padding=1),
        nn.BatchNorm2d(HIDDEN),
        snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero", spike_grad=strict_spike),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(HIDDEN * 4, 4),
    )


def _torch_lif() -> nn.Module:
    return nn.Sequential(gac.LIF(decay=0.25, threshold=0.45), nn.Flatten(2), nn.Linear(2 * 64, 7),
                         nn.Dropout(0.5), gac.LIF(decay=1.0, threshold=0.15), nn.Linear(7, 4))  # fmt: skip


def _norse() -> nn.Module:
    import norse.torch as norse

    box = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(0.2))
    cuba = norse.LIFParameters(tau_syn_inv=torch.tensor(400.0), tau_mem_inv=torch.tensor(500.0),
                               v_th=torch.tensor(0.5))  # fmt: skip
    return norse.SequentialState(
        norse.LIFBoxCell(box, dt=1e-3),
        nn.Conv2d(2, HIDDEN, 3, padding=1),
        nn.BatchNorm2d(HIDDEN),
        norse.LIFCell(cuba, dt=1e-3),
        nn.Flatten(),
        nn.Linear(HIDDEN * 64, 4),
    )


def _norse_sequence() -> nn.Module:
    import norse.torch as norse

    p = norse.LIFParameters(tau_syn_inv=torch.tensor(400.0), tau_mem_inv=torch.tensor(500.0),
                            v_th=torch.tensor(0.3))  # fmt: skip
    return norse.SequentialState(norse.LIF(p, dt=1e-3), nn.Flatten(2), nn.Linear(2 * 64, 4))


def _torch_msblock() -> nn.Module:
    """The library's MS-ResNet block (1x1 downsample shortcut) inside a wrapped plain-torch chain."""
    from gac_coding.models import MSBlock

    return nn.Sequential(MSBlock(2, 4, stride=2, lif=dict(decay=0.5, threshold=0.45)),
                         gac.LIF(decay=0.5, threshold=0.45), nn.Flatten(2), nn.Linear(4 * 16, 4))  # fmt: skip


WRAPPED = {
    "spikingjelly-m": lambda: _sj("m"),
    "spikingjelly-s": lambda: _sj("s"),
    "snntorch": _snntorch,
    "torch": _torch_lif,
    "norse": _norse,
    "norse-sequence": _norse_sequence,
    "torch-msblock": _torch_msblock,
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, Tensor]:
    """A float64 model with calibrated BatchNorm, in eval mode, and its input."""
    torch.manual_seed(seed)
    if name in ("tiny-gac", "tiny-direct"):
        model = _tiny(name == "tiny-gac")
        scale = 1.0
        if name == "tiny-gac":
            # the gated code (values < 1, the gate near 0.5 untrained) rarely lifts the first LIF over
            # threshold 1 in T=3 steps; a lower threshold there makes every layer of the test net fire
            model.stages[0][0].lif1 = gac.LIF(decay=0.5, threshold=0.4)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = gac.wrap(WRAPPED[name](), T=T, in_channels=2)
        scale = 4.0  # a larger input drives the gated code (values < 1) over the thresholds
    model = model.double()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(3, 2, 8, 8, generator=gen, dtype=torch.float64) * scale
    calibrate_batchnorm(model, x)
    return model.eval(), x


@cache
def exported(name: str) -> tuple[nn.Module, Tensor, Any]:
    """``build(name)`` and its export, shared by the tests that only read them."""
    model, x = build(name)
    return model, x, to_nir(model, x)


def record_neurons(model: nn.Module, names: list[str], x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The model's output and the spikes ``[T, B, ...]`` of the named modules."""
    seen: dict[str, list[Tensor]] = {n: [] for n in names}
    handles = []
    for n in names:

        def hook(module: nn.Module, args: Any, out: Any, n: str = n) -> None:
            seen[n].append(out[0] if isinstance(out, tuple) else out)

        handles.append(model.get_submodule(n).register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    spikes = {}
    for n, outs in seen.items():
        spikes[n] = outs[0] if len(outs) == 1 else torch.stack(outs)
        if spikes[n].dim() >= 2 and spikes[n].shape[0] == T * x.shape[0]:  # [T*B, ...]
            spikes[n] = spikes[n].view(T, x.shape[0], *spikes[n].shape[1:])
    return out, spikes


def neuron_nodes(graph: Any) -> list[str]:
    return [k for k, v in graph.nodes.items() if type(v).__name__ in ("LIF", "IF", "CubaLIF")]


def written_and_read(exp: Any, tmp_path: Path) -> Any:
    path = tmp_path / "backbone.nir"
    nir.write(path, exp.graph)
    return nir.read(path)  # NIR's own type check (type_check=True by default)


# ------------------------------------------------------------------------------------------------
# An independent reference interpreter: numpy, plain loops over kernel taps and time steps
# ------------------------------------------------------------------------------------------------


def _pair(v: Any) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(a[0]), int(a[-1]))


def np_conv2d(x: np.ndarray, node: Any) -> np.ndarray:
    w, b = node.weight, node.bias
    (sh, sw), (ph, pw), (dh, dw) = _pair(node.stride), _pair(node.padding), _pair(node.dilation)
    groups = int(node.groups)
    B, C, H, W = x.shape
    n_out, Cg, kh, kw = w.shape
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((B, n_out, Ho, Wo))
    Og = n_out // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * Cg:(g + 1) * Cg,
                           i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                           j * dw:j * dw + sw * (Wo - 1) + 1:sw]  # fmt: skip
                taps = w[g * Og : (g + 1) * Og, :, i, j]
                out[:, g * Og : (g + 1) * Og] += np.einsum("bchw,oc->bohw", patch, taps)
    return out + b[None, :, None, None]


def np_avgpool(x: np.ndarray, node: Any, average: bool) -> np.ndarray:
    (kh, kw), (sh, sw) = _pair(node.kernel_size), _pair(node.stride)
    assert not np.any(np.asarray(node.padding))
    B, C, H, W = x.shape
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    out = np.zeros((B, C, Ho, Wo))
    for i in range(kh):
        for j in range(kw):
            out += x[:, :, i : i + sh * (Ho - 1) + 1 : sh, j : j + sw * (Wo - 1) + 1 : sw]
    return out / (kh * kw) if average else out


def reference_run(graph: Any, code: np.ndarray, dt: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """NIR's equations, forward Euler at ``dt``, state 0 at start; ``code: [T, B, ...]``."""
    incoming: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        incoming[b].append(a)
    order: list[str] = []
    while len(order) < len(graph.nodes):  # repeated passes: a node runs once its inputs have
        for k in graph.nodes:
            if k not in order and all(s in order for s in incoming[k]):
                order.append(k)
    state: dict[str, dict[str, np.ndarray]] = {}
    rec: dict[str, list[np.ndarray]] = {k: [] for k in graph.nodes}
    for t in range(code.shape[0]):
        val: dict[str, np.ndarray] = {}
        for k in order:
            node = graph.nodes[k]
            kind = type(node).__name__
            if kind == "Input":
                val[k] = code[t]
                continue
            x = sum(val[s] for s in incoming[k])
            if kind == "Output":
                y = x
            elif kind == "Conv2d":
                y = np_conv2d(x, node)
            elif kind == "Affine":
                y = x @ node.weight.T + node.bias
            elif kind == "Linear":
                y = x @ node.weight.T
            elif kind in ("AvgPool2d", "SumPool2d"):
                y = np_avgpool(x, node, kind == "AvgPool2d")
            elif kind == "Flatten":
                shape = tuple(int(s) for s in node.input_type["input"])
                end = node.end_dim % len(shape)
                merged = int(np.prod(shape[node.start_dim : end + 1]))
                new = shape[: node.start_dim] + (merged,) + shape[end + 1 :]
                y = x.reshape(x.shape[0], *new)
            elif kind in ("LIF", "IF", "CubaLIF"):
                s = state.setdefault(k, {"v": np.zeros_like(x), "i": np.zeros_like(x)})
                if kind == "LIF":
                    s["v"] = s["v"] + dt / node.tau * ((node.v_leak - s["v"]) + node.r * x)
                elif kind == "IF":
                    s["v"] = s["v"] + dt * node.r * x
                else:
                    s["i"] = s["i"] + dt / node.tau_syn * (-s["i"] + node.w_in * x)
                    s["v"] = s["v"] + dt / node.tau_mem * ((node.v_leak - s["v"]) + node.r * s["i"])
                y = (s["v"] > node.v_threshold).astype(x.dtype)
                s["v"] = np.where(y > 0, node.v_reset, s["v"])
            else:
                raise AssertionError(f"reference interpreter: no rule for {kind}")
            val[k] = y
            rec[k].append(y)
        rec["output_all"] = rec.get("output_all", []) + [val["output"]]
    outs = {k: np.stack(v) for k, v in rec.items() if v}
    return outs.pop("output_all"), outs


# ------------------------------------------------------------------------------------------------
# Graphs: every registered MS-ResNet, write and read, structure
# ------------------------------------------------------------------------------------------------


# Every registered MS-ResNet, with the GAC encoder and with direct coding in turn (building and
# tracing the large ones costs seconds; both encoders of msresnet_tiny are exported in the equality
# tests below, and the backbone's export does not depend on the encoder).
REGISTERED = [n for n in list_models() if n.startswith("msresnet")]


@pytest.mark.parametrize(("name", "gac_on"), [(n, i % 2 == 0) for i, n in enumerate(REGISTERED)])
def test_every_registered_msresnet_exports(name: str, gac_on: bool) -> None:
    model = create_model(name, num_classes=3, T=1, coding="gac" if gac_on else "direct", in_channels=1).eval()
    size = 32 if "imagenet" in name else 8
    exp = to_nir(model, torch.rand(1, 1, size, size))
    kinds = [type(n).__name__ for n in exp.graph.nodes.values()]
    blocks = [b for stage in model.stages for b in stage]
    downsample = sum(not isinstance(b.shortcut, nn.Identity) for b in blocks)
    assert kinds.count("LIF") == 2 * len(blocks) + 1
    assert kinds.count("Conv2d") == 2 * len(blocks) + downsample
    assert kinds.count("Affine") == kinds.count("AvgPool2d") == kinds.count("Flatten") == 1
    # an identity shortcut: the next block's neurons read two edges (residual branch + shortcut)
    fan_in = {k: sum(1 for _, b in exp.graph.edges if b == k) for k in exp.graph.nodes}
    identity = sum(isinstance(b.shortcut, nn.Identity) for b in blocks)
    assert sum(v > 1 for v in fan_in.values()) >= identity
    assert exp.output_shape == (3,)
    assert exp.host.direct is (not gac_on)


def test_graph_writes_and_reads_with_type_check(tmp_path: Path) -> None:
    model, x, exp = exported("tiny-gac")
    graph = written_and_read(exp, tmp_path)
    assert set(graph.nodes) == set(exp.graph.nodes)
    assert sorted(graph.edges) == sorted(exp.graph.edges)
    assert graph.nodes["input"].input_type["input"].tolist() == [16, 8, 8]
    conv = graph.nodes["stages_0_0_conv1"]
    assert conv.weight.dtype == np.float64 and tuple(conv.weight.shape) == (16, 16, 3, 3)
    # the BN fold: conv1's bias is -mean * g / sqrt(var + eps) + b of bn1 (conv1 has no bias)
    bn = model.stages[0][0].bn1
    expect = (-bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps) + bn.bias).detach()
    np.testing.assert_allclose(conv.bias, expect.numpy(), rtol=1e-13, atol=1e-15)
    lif = graph.nodes["head_lif"]
    decay = 0.5  # the CIFAR recipe
    np.testing.assert_allclose(exp.dt / lif.tau, 1 - decay, rtol=1e-14)
    np.testing.assert_allclose(lif.r * exp.dt / lif.tau, 1.0, rtol=1e-14)
    assert not np.any(lif.v_leak) and not np.any(lif.v_reset)


# ------------------------------------------------------------------------------------------------
# Equality with the model: SpikingJelly's importer and the reference interpreter
# ------------------------------------------------------------------------------------------------


def _check_against_model(
    model: nn.Module, x: Tensor, exp: Any, logits: Tensor, spikes_by_node: dict[str, Tensor]
) -> None:
    names = [exp.sources[k] for k in spikes_by_node]
    out, model_spikes = record_neurons(model, names, x)
    for k, spikes in spikes_by_node.items():
        ref = model_spikes[exp.sources[k]]
        rate = float(ref.mean())
        assert 0.0 < rate < 1.0, f"{k}: the test net must fire but not saturate (rate {rate})"
        assert torch.equal(spikes.to(ref.dtype), ref), f"{k}: spikes differ"
    torch.testing.assert_close(logits, out, rtol=0.0, atol=ATOL)


SPEC_FOLLOWING = ["tiny-gac", "tiny-direct", "spikingjelly-m", "spikingjelly-s", "snntorch", "torch"]


@pytest.mark.parametrize("name", SPEC_FOLLOWING)
def test_spikingjelly_importer_runs_the_graph_like_the_model(name: str, tmp_path: Path) -> None:
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    model, x, exp = exported(name)
    module = import_from_nir(written_and_read(exp, tmp_path), dt=exp.dt, dtype=torch.float64)
    neurons = neuron_nodes(exp.graph)
    seen: dict[str, list[Tensor]] = {k: [] for k in neurons}
    for k in neurons:
        module.get_submodule(k).register_forward_hook(lambda m, a, o, k=k: seen[k].append(o[0]))
    code = exp.host(x)
    state, outs = None, []
    for t in range(T):
        y, state = module(code[t], state)
        outs.append(y)
    _check_against_model(model, x, exp, torch.stack(outs), {k: torch.stack(v) for k, v in seen.items()})


@pytest.mark.parametrize("name", [*SPEC_FOLLOWING, "norse", "norse-sequence", "torch-msblock"])
def test_reference_interpreter_runs_the_graph_like_the_model(name: str, tmp_path: Path) -> None:
    model, x, exp = exported(name)
    graph = written_and_read(exp, tmp_path)
    with torch.no_grad():
        code = exp.host(x).numpy()
    out, rec = reference_run(graph, code, exp.dt)
    spikes = {k: torch.from_numpy(rec[k]) for k in neuron_nodes(graph)}
    _check_against_model(model, x, exp, torch.from_numpy(out), spikes)
    # the library's own simulator agrees with the reference too
    torch.testing.assert_close(exp.run(x), torch.from_numpy(out), rtol=0.0, atol=ATOL)


def test_binarize_sends_binary_spikes_and_the_graph_follows() -> None:
    model, x = build("tiny-gac")
    gated = to_nir(model, x)
    binary = to_nir(model, x, binarize=True)
    code = binary.host(x)
    graded = gated.host(x)
    assert bool(((code == 0) | (code == 1)).all()) and not bool(((graded == 0) | (graded == 1)).all())
    model.encoder.binarize = True
    torch.testing.assert_close(binary.run(x), model(x), rtol=0.0, atol=ATOL)
    assert model.encoder.binarize and not gated.host.binarize  # to_nir copies, never edits


# ------------------------------------------------------------------------------------------------
# Energy: host and chip, consistent with the model's own count
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-gac", "tiny-direct", "spikingjelly-m"])
def test_energy_split_matches_the_models_report(name: str) -> None:
    model, x, exp = exported(name)
    split = exp.energy(x)
    report = estimate_energy(model, x)
    B = x.shape[0]
    enc, back = report.part("encoder"), report.part("backbone")
    assert split["host_mac_per_image"] == enc["mac"] / B > 0
    assert split["chip_synop_per_image"] == back["synop"] / B > 0
    assert split["chip_mac_per_image"] == back["mac"] / B
    # the chip's synaptic operations, counted by hand from the reference run: each input spike of a
    # Linear/Affine node reaches out_features synapses
    _, rec = reference_run(exp.graph, exp.host(x).detach().numpy(), exp.dt)
    fc = [k for k, v in exp.graph.nodes.items() if type(v).__name__ in ("Affine", "Linear")][-1]
    src = [a for a, b in exp.graph.edges if b == fc]
    fc_in = sum(rec[s] for s in src)
    if np.all((fc_in == 0) | (fc_in == 1)):
        layer = next(ly for ly in report.layers if ly.name.endswith(exp.sources[fc]))
        assert layer.synop == np.count_nonzero(fc_in) * exp.graph.nodes[fc].weight.shape[0]


# ------------------------------------------------------------------------------------------------
# Consumers that depart from NIR's equations (documented in the README)
# ------------------------------------------------------------------------------------------------


def _one_lif_graph(decay: float, dt: float, threshold: float = 1.0) -> Any:
    shape = (2,)
    full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
    lif = nir.LIF(tau=full(dt / (1 - decay)), r=full(1 / (1 - decay)), v_leak=full(0.0),
                  v_threshold=full(threshold), v_reset=full(0.0))  # fmt: skip
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array(shape)}), "lif": lif,
               "output": nir.Output(output_type={"output": np.array(shape)})},
        edges=[("input", "lif"), ("lif", "output")],
    )  # fmt: skip


def test_spikingjelly_fires_at_the_threshold_where_nir_does_not() -> None:
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    graph = _one_lif_graph(decay=0.5, dt=1e-4)
    module = import_from_nir(graph, dt=1e-4, dtype=torch.float64)
    x = torch.tensor([[1.0, 0.75]], dtype=torch.float64)  # v = 1.0 lands exactly on the threshold
    out, _ = module(x, None)
    ref, _ = reference_run(graph, x.numpy()[None], 1e-4)
    assert out.tolist() == [[1.0, 0.0]] and ref[0].tolist() == [[0.0, 0.0]]
    assert gac.LIF(decay=0.5, threshold=1.0)(x[None]).tolist() == [[[0.0, 0.0]]]  # the library: strict


def test_spikingjelly_refuses_a_cubalif_with_r_one() -> None:
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    _, _, exp = exported("norse")
    with pytest.raises(ValueError, match="r must equal tau_mem / dt"):
        import_from_nir(exp.graph, dt=1e-4, dtype=torch.float64)


@pytest.mark.filterwarnings("ignore:nirtorch.load is being deprecated:DeprecationWarning")
def test_norse_importer_ignores_r_and_flattens_the_batch() -> None:
    import norse.torch as norse

    dt, decay = 1e-3, 0.5
    module = norse.from_nir(_one_lif_graph(decay, dt), dt=dt, ignore_warnings=True).double()
    x = torch.full((1, 2), 0.6, dtype=torch.float64)
    state, got = None, []
    for _ in range(4):
        z, state = module(x, state)
        got.append(z)
    # NIR: v <- 0.5 v + 0.6 fires at step 2 (0.6, 0.9 no; 1.05 at step 3); Norse, r read as 1:
    # v <- v + 0.5 (0.6 - v) never exceeds 0.6
    ref, _ = reference_run(_one_lif_graph(decay, dt), x.numpy()[None].repeat(4, 0), dt)
    assert ref[:, 0, 0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert torch.stack(got)[:, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    # Flatten: NIR's start_dim counts per-sample dimensions, Norse hands it to torch as is
    flat = nir.Flatten(input_type={"input": np.array([2, 1, 1])}, start_dim=0)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2, 1, 1])}), "flat": flat,
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "flat"), ("flat", "output")],
    )  # fmt: skip
    out, _ = norse.from_nir(graph)(torch.zeros(3, 2, 1, 1))
    assert tuple(out.shape) == (6,)  # batch merged; NIR means (3, 2)


def test_snntorch_importer_assumes_dt_1e4_and_flattens_the_batch() -> None:
    from snntorch.import_nir import import_from_nir

    model, x, _ = exported("tiny-direct")
    betas = {}
    for dt in (1e-4, 1e-3):
        module = import_from_nir(to_nir(model, x, dt=dt).graph)
        betas[dt] = float(module.get_submodule("head_lif").beta.flatten()[0])
        flatten = module.get_submodule("flatten")
        assert (flatten.start_dim, flatten.end_dim) == (0, -1)  # merges the batch in torch
    assert betas[1e-4] == pytest.approx(0.5, abs=1e-6)  # decay of the CIFAR recipe
    assert betas[1e-3] == pytest.approx(1 - 1e-4 / 2e-3, abs=1e-6)  # dt ignored: 0.95, not 0.5


def test_nirtorch_default_map_leaves_the_affine_bias_unset() -> None:
    """nirtorch's own default mapping of ``Affine`` assigns the bias to ``weight.bias``, so the
    Linear keeps its random initial bias (the importers above map ``Affine`` themselves)."""
    import nirtorch

    bias = np.array([5.0, -5.0])
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2])}),
               "fc": nir.Affine(weight=np.eye(2), bias=bias),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "fc"), ("fc", "output")],
    )  # fmt: skip
    module = nirtorch.nir_to_torch(graph, {}, dtype=torch.float64)
    out, _ = module(torch.zeros(1, 2, dtype=torch.float64))
    assert not np.allclose(out.detach().numpy()[0], bias)  # NIR says y = W 0 + b = b
    assert np.allclose(module.get_submodule("fc").weight.bias.detach().numpy(), bias)


# ------------------------------------------------------------------------------------------------
# Refusals: clear errors naming the module and its type
# ------------------------------------------------------------------------------------------------


def _wrap(backbone: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gac.wrap(backbone, T=2, in_channels=1).eval()


def test_refuses_what_it_cannot_map() -> None:
    import snntorch as snn
    from spikingjelly.activation_based import neuron

    x = torch.rand(2, 1, 4, 4)
    cases = [
        (nn.Sequential(gac.LIF(), nn.Flatten(2), nn.ReLU()), TypeError,
         r"'backbone\.2' \(ReLU\): no NIR mapping"),
        (nn.Sequential(nn.Flatten(2), nn.BatchNorm1d(16)), ValueError,
         r"'backbone\.1' \(BatchNorm1d\).*follow"),
        (nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True, spike_grad=strict_spike)), ValueError,
         r"'backbone\.0' \(Leaky\): reset_mechanism='subtract' is a soft reset"),
        (nn.Sequential(snn.Leaky(beta=0.5, init_hidden=True, reset_mechanism="zero",
                                 spike_grad=lambda v: (v >= 0).to(v.dtype))), ValueError,
         r"does not fire exactly when mem > threshold \(probe gave 'ge'\)"),
        (nn.Sequential(neuron.LIFNode(v_reset=None)), ValueError,
         r"'backbone\.0' \(LIFNode\): v_reset=None is a soft reset"),
        (nn.Sequential(neuron.IFNode(v_reset=-0.1)), ValueError, r"v_reset=-0\.1"),
        (nn.Sequential(neuron.ParametricLIFNode()), TypeError, r"LIFNode and IFNode only"),
        (nn.Sequential(gac.LIF(), nn.Linear(4, 3)), ValueError, r"'backbone\.1' \(Linear\).*flatten"),
    ]  # fmt: skip
    for backbone, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            to_nir(_wrap(backbone), x)


def test_refuses_custom_forward_and_other_models() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lif = gac.LIF()

        def forward(self, x: Tensor) -> Tensor:
            return self.lif(x)

    with pytest.raises(TypeError, match=r"'backbone' \(Custom\): its forward is its own code"):
        to_nir(_wrap(Custom()), torch.rand(1, 1, 4, 4))
    with pytest.raises(TypeError, match="model: expected an MSResNet"):
        to_nir(nn.Linear(2, 2), torch.rand(1, 2))
    model = create_model("msresnet_tiny", T=2, coding="direct", in_channels=1).eval()
    with pytest.raises(ValueError, match="binarize: the model uses direct coding"):
        to_nir(model, torch.rand(1, 1, 8, 8), binarize=True)
    with pytest.raises(ValueError, match="dt: expected a finite step > 0"):
        to_nir(model, torch.rand(1, 1, 8, 8), dt=0.0)
    for coding, cls in (("rate", "RateEncoder"), ("latency", "LatencyEncoder")):  # spikes drawn on the host
        drawn = create_model("msresnet_tiny", T=2, coding=coding, in_channels=1).eval()
        with pytest.raises(TypeError, match=f"encoder: expected a GACEncoder or a DirectEncoder, got {cls}"):
            to_nir(drawn, torch.rand(1, 1, 8, 8))


def test_export_package_and_command_import_with_torch_alone() -> None:
    """``gac_coding.export`` and its command module import nothing optional at module level."""
    import ast

    import gac_coding.export as package
    from gac_coding.cli import export as cli

    for module in (package, cli):
        tree = ast.parse(Path(module.__file__).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
        absolute = [n for n in top if isinstance(n, ast.ImportFrom) and not n.level]
        names |= {(n.module or "").split(".")[0] for n in absolute}
        assert names <= {"__future__", "importlib", "typing", "argparse"}, (module.__name__, names)
    assert "export" not in Path(gac.__file__).read_text()  # import gac_coding does not load it


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def test_export_command_writes_host_and_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gac_coding.cli.export import configure_export_parser, run_export_command
    from gac_coding.export import load_host
    from gac_coding.train.checkpoint import save_safetensors

    torch.manual_seed(0)
    model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=3)
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors")
    import argparse

    parser = argparse.ArgumentParser()
    configure_export_parser(parser)
    args = parser.parse_args([
        "--model", "msresnet_tiny", "--checkpoint", str(tmp_path / "w.safetensors"), "--out",
        str(tmp_path / "out"), "--T", "2", "--input-size", "8", "8", "--binarize", "--dt", "0.001",
    ])  # fmt: skip
    assert run_export_command(args) == 0
    text = capsys.readouterr().out
    for key in ("LIF", "neurons", "synapses", "host MACs/image", "chip synops/image"):
        assert key in text
    graph = nir.read(tmp_path / "out" / "backbone.nir")
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Conv2d", "LIF", "Affine"}
    host = load_host(tmp_path / "out")
    x = torch.rand(2, 3, 8, 8)
    model.eval().encoder.binarize = True
    torch.testing.assert_close(host(x), model.encoder(x))  # same weights, same code
    assert host.binarize
    lif = graph.nodes["head_lif"]
    np.testing.assert_allclose(1e-3 / lif.tau, 0.5, rtol=1e-6)


@pytest.mark.parametrize(
    "options",
    [{"ta_source": "membrane", "ta_bias": True, "gate": "sum"},
     {"gate": "temporal", "temporal_attention": "conv", "ta_activation": "leaky_relu"}],
)  # fmt: skip
def test_encoder_variants_export_host_and_graph(options: dict, tmp_path: Path) -> None:
    # issue 26: the host holds the variant encoder; the graph is the backbone, as for the paper's
    from gac_coding.export import load_host, save_nir_export

    torch.manual_seed(0)
    model = create_model("msresnet_tiny", num_classes=4, T=T, in_channels=2, **options)
    model.stages[0][0].lif1 = gac.LIF(decay=0.5, threshold=0.4)  # every layer fires (see build)
    model = model.double()
    x = torch.rand(3, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    calibrate_batchnorm(model, x)
    model.eval()
    exp = to_nir(model, x)
    torch.testing.assert_close(exp.host(x), model.encoder(x), rtol=0.0, atol=0.0)
    torch.testing.assert_close(exp.run(x), model(x), rtol=0.0, atol=ATOL)
    # written and rebuilt from host.json: the options travel with it (a silently different gate
    # would load the same weights for "sum" and "product")
    config = {"model": "msresnet_tiny", "num_classes": 4, "in_channels": 2,
              "encoder_options": model.encoder.gate.options}  # fmt: skip
    save_nir_export(exp, tmp_path, config)
    host = load_host(tmp_path)  # float32, as load_host builds it
    assert host.encoder.gate.options == model.encoder.gate.options
    single = model.float()
    torch.testing.assert_close(host(x.float()), single.encoder(x.float()), rtol=0.0, atol=0.0)
