"""Out of eager mode: torch.compile, torch.export and ONNX give eager's numbers, or a clear error.

Also: the encoder's record of the last call (spikes, gate) stays out of pickles and deep copies.
"""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_adapters_backbones import SHAPES, build_float64, snntorch_whole_sequence_float64, strong_digits

import gac_coding as gac
from gac_coding.energy import calibrate_batchnorm
from gac_coding.export import to_onnx
from gac_coding.models import MSResNet, create_model, list_models
from gac_coding.ops import backends

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def _eager_lif_backend() -> Iterator[None]:
    # what is traced does not depend on the LIF backend (the neuron operators are opaque to the
    # tracers); the eager one never starts a C++ build inside these tests
    with backends.use_backend("eager"):
        yield


def _saved_bytes(module: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module, buf)
    return buf.getbuffer().nbytes


def test_record_stays_out_of_whole_model_saves_and_deep_copies() -> None:
    model = create_model("msresnet_tiny", num_classes=10, T=4, in_channels=1)
    fresh = _saved_bytes(model)
    model(torch.rand(8, 1, 16, 16))
    enc = model.encoder
    assert enc.last_spikes is not None and enc.last_gate is not None  # recorded for inspection
    # what saving the record would add: spikes and gate [T, B, C, H, W] float32, plus TA [T, B]
    record_bytes = sum(t.numel() * t.element_size() for t in enc._last)
    assert record_bytes > 200_000
    after = _saved_bytes(model)
    assert abs(after - fresh) < 4096, (fresh, after, record_bytes)
    # the live model keeps its record; a deep copy and a reloaded save start without one
    assert enc.last_spikes is not None
    twin = copy.deepcopy(model)
    assert twin.encoder.last_spikes is None and twin.encoder.last_gate is None
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded.encoder.last_spikes is None
    # ... and both record again on their next call, with the same values as the original
    x = torch.rand(2, 1, 16, 16)
    model.eval(), twin.eval(), loaded.eval()
    for other in (twin, loaded):
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)
        assert torch.equal(other.encoder.last_spikes, model.encoder.last_spikes)


def test_record_off_and_on_for_a_bare_encoder_deep_copy() -> None:
    enc = gac.GACEncoder(1, 4, T=3)
    enc(torch.rand(2, 1, 6, 6))
    assert copy.deepcopy(enc).last_spikes is None
    assert enc.last_spikes is not None and enc.last_spikes.shape == (3, 2, 4, 6, 6)


# ------------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------------

# Float64 comparisons: inductor fuses and reorders the same float operations (BatchNorm statistics,
# reductions), so results agree to a few ulps (observed <= 1e-14); a spike would flip only for a
# membrane within that distance of its threshold.
F64 = {"rtol": 1e-9, "atol": 1e-11}

FRESH = r"""
import copy, json, sys
import torch
import gac_coding as gac
from gac_coding.models import create_model

def diff(a, b):
    return float((a.double() - b.double()).abs().max())

def train_step(module, x):
    x = x.clone().requires_grad_(True)
    out = module(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum().backward()
    return out.detach(), x.grad

def compare_train(module, x):
    twin = copy.deepcopy(module)
    compiled = torch.compile(module, fullgraph=True)
    out, gx = train_step(compiled, x)
    ref, rgx = train_step(twin, x)
    grads = max(diff(p.grad, q.grad) for p, q in zip(module.parameters(), twin.parameters()))
    bufs = max(diff(p, q) for p, q in zip(module.buffers(), twin.buffers()))
    return compiled, twin, {"out": diff(out, ref), "x_grad": diff(gx, rgx), "param_grads": grads,
                            "buffers": bufs, "fired": float(ref.ne(0).double().mean())}

g = torch.Generator().manual_seed(0)
torch.manual_seed(0)
res = {}
# the model: training step, then inference (a second graph), float64
model = create_model("msresnet_tiny", num_classes=10, T=4, in_channels=1).double()
x = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64) * 3
compiled, twin, res["model_train"] = compare_train(model, x)
model.eval(), twin.eval()
with torch.no_grad():
    x2 = torch.rand(5, 1, 8, 8, generator=g, dtype=torch.float64) * 3
    res["model_eval"] = {"out": diff(compiled(x2), twin(x2))}
res["model_records"] = bool(torch.equal(model.encoder.last_spikes, twin.encoder.last_spikes))
# the encoder alone (its static path ran inside the model): a sequence, inference, float32
enc = gac.GACEncoder(2, 6, T=3).eval()
twin32 = copy.deepcopy(enc)
seq = torch.rand(3, 4, 2, 6, 6, generator=g) * 3
with torch.no_grad():
    a, b = torch.compile(enc, fullgraph=True)(seq), twin32(seq)
res["encoder_eval_f32"] = {"out": diff(a, b), "fired": float(b.ne(0).double().mean())}
print("RESULT", json.dumps(res))
"""


def _run_fresh(script: str, **extra_env: str) -> dict:
    env = {**os.environ, "GAC_CODING_LIF_BACKEND": "eager", "PYTHONPATH": SRC, **extra_env}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def test_models_and_encoder_compile_fullgraph_on_the_first_call_of_a_fresh_process(tmp_path) -> None:
    """Inductor, fullgraph=True, nothing warmed up (an empty Inductor cache): training step and
    inference match eager. With ``CI`` set, as on a CI machine, where Inductor refuses to fall back
    to the kernel of an op that has a global decomposition unless the op registered its fallback
    (the neuron ops do: gac_coding.ops._inductor)."""
    res = _run_fresh(FRESH, CI="true", TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    r = res["model_train"]
    assert r["out"] <= F64["atol"] and r["x_grad"] <= 1e-10, r
    assert r["param_grads"] <= 1e-10 and r["buffers"] <= 1e-12, r
    assert res["model_eval"]["out"] <= F64["atol"], res
    assert res["model_records"], res  # the compiled encoder keeps its record as in eager
    # float32: inductor's fused kernels round differently (a few ulps of values of order 1); with
    # ~2600 neurons none lies that close to its threshold here, so the code agrees to 1e-5
    assert res["encoder_eval_f32"]["fired"] > 0.01 and res["encoder_eval_f32"]["out"] <= 1e-5, res


def _small_input(model: torch.nn.Module, batch: int = 2, size: int = 16) -> torch.Tensor:
    """A static batch, or for the event-frame models (2 channels) a [T, B, 2, H, W] sequence."""
    enc = model.encoder
    if enc.in_channels == 2:
        return torch.rand(enc.T, batch, 2, size, size, dtype=torch.float64) * 3
    return torch.rand(batch, enc.in_channels, size, size, dtype=torch.float64) * 3


def _imagenet_recipe_tiny(**kwargs: object) -> torch.nn.Module:
    """The ImageNet recipe (7x7/2 stem, rectangle surrogate, detached reset) on msresnet_tiny's
    stages: the code paths of msresnet18_imagenet and msresnet34_imagenet at a fraction of the cost."""
    stages = ((16, 1, 2), (32, 1, 2))
    return MSResNet(
        stages, 3, 2, "imagenet", stem_channels=16, stem_kernel=7, stem_stride=2, stem_padding=3, **kwargs
    )  # type: ignore[arg-type]


TRACE_CASES = {
    "msresnet_tiny": lambda: create_model("msresnet_tiny", num_classes=3, T=2),
    **{
        f"msresnet_tiny {c} coding": lambda c=c: create_model("msresnet_tiny", num_classes=3, T=2, coding=c)
        for c in ("direct", "rate", "latency")
    },  # fmt: skip
    "imagenet recipe": _imagenet_recipe_tiny,
    "vgg_tiny (event frames)": lambda: create_model("vgg_tiny", num_classes=3, T=2),
}


@pytest.mark.parametrize("case", list(TRACE_CASES))
def test_model_code_paths_trace_into_one_graph(case: str) -> None:
    """fullgraph=True in training mode (BatchNorm statistics, the encoder's record), no graph
    break; the traced graph, run by torch.compile's eager backend, gives eager's logits. These are
    the code paths of every registered model (same classes, recipes and input kinds); inductor on
    every registered model, forward and backward, is checked by benchmarks/compile.py --check."""
    torch._dynamo.reset()
    model = TRACE_CASES[case]().double()
    twin = copy.deepcopy(model)
    x = _small_input(model, size=32 if "imagenet" in case else 16)
    if model.encoder.reads_intensities:  # rate and latency coding: intensities in [0, 1]
        x = x / 3
    torch.manual_seed(1)  # rate coding draws from the global generator: the same draws in both
    out = torch.compile(model, fullgraph=True, backend="eager")(x)
    torch.manual_seed(1)
    torch.testing.assert_close(out, twin(x), **F64)


def test_bad_input_under_compile_meets_the_eager_messages() -> None:
    torch._dynamo.reset()
    enc = gac.GACEncoder(1, 4, T=2)
    # default compile: the check's exception leaves the graph unchanged, as in eager
    with pytest.raises(ValueError, match=r"x: expected 1 channels at dim 1, got 3"):
        torch.compile(enc, backend="eager")(torch.rand(2, 3, 6, 6))
    with pytest.raises(TypeError, match=r"floating-point tensor.*convert images first"):
        torch.compile(enc, backend="eager")(torch.zeros(2, 1, 6, 6, dtype=torch.uint8))
    # fullgraph=True: dynamo reports the same message as the cause of its own error
    with pytest.raises(Exception, match=r"x: expected 1 channels at dim 1, got 3"):
        torch.compile(enc, fullgraph=True, backend="eager")(torch.rand(2, 3, 6, 6))


# ------------------------------------------------------------------------------------------------
# torch.compile of wrapped nets (GACNet), one per framework
# ------------------------------------------------------------------------------------------------

# One backbone per framework and mode of tests/test_adapters_backbones.py (plus snnTorch's
# whole-sequence StateLeaky). All but Norse's trace into one graph. Norse's cells build their
# initial state inside their own forward and set ``requires_grad`` on it, which dynamo cannot put
# in a graph: they compile with graph breaks there (7 per net), each piece compiled by inductor.
FULLGRAPH_ADAPTERS = [
    "torch",
    "spikingjelly-m",
    "spikingjelly-s",
    "snntorch-sequential",  # mode "step"
    "snntorch-tutorial-loop",  # mode "loop"
    "snntorch-whole-sequence",  # StateLeaky, mode "sequence"
]
BREAKING_ADAPTERS = ["norse-cells", "norse-sequence"]  # modes "step" and "sequence"
COMPILE_STEPS = 2  # the time loops are unrolled into the graph: 2 steps halve inductor's work


def _build(name: str) -> gac.GACNet:
    if name == "snntorch-whole-sequence":
        return snntorch_whole_sequence_float64(COMPILE_STEPS)
    return build_float64(name, steps=COMPILE_STEPS)


def _leaves(out: object) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]  # type: ignore[arg-type]


class _Side(torch.nn.Module):
    """The wrapped nets side by side: one compiled frame holds them all (one compilation)."""

    def __init__(self, nets: list[torch.nn.Module]) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [leaf for net in self.nets for leaf in _leaves(net(x))]


def test_every_framework_and_mode_is_in_one_of_the_compile_lists() -> None:
    from test_adapters_backbones import SHAPES

    modes = {name: (framework, mode) for name, (_, framework, mode) in SHAPES.items()}
    modes["snntorch-whole-sequence"] = ("snntorch", "sequence")
    listed = [modes[name] for name in FULLGRAPH_ADAPTERS + BREAKING_ADAPTERS]
    assert len(set(listed)) == len(listed) and set(listed) == set(modes.values())


def compile_wrapped_nets(fullgraph: bool) -> None:
    """The nets of FULLGRAPH_ADAPTERS (``fullgraph=True``) or BREAKING_ADAPTERS side by side,
    default inductor backend: a training step (forward and backward, training mode), then
    inference in eval mode (a second graph) on another batch size, against an eager twin, float64.
    Raises AssertionError on a difference."""
    names = FULLGRAPH_ADAPTERS if fullgraph else BREAKING_ADAPTERS
    side = _Side([_build(name) for name in names]).train()
    twin = copy.deepcopy(side)
    compiled = torch.compile(side, fullgraph=fullgraph)
    x = strong_digits()[:3]

    def step(module: torch.nn.Module) -> tuple[list[torch.Tensor], torch.Tensor]:
        xg = x.clone().requires_grad_(True)
        outs = module(xg)
        sum(o.sum() * (i + 1) for i, o in enumerate(outs)).backward()
        return [o.detach() for o in outs], xg.grad

    got, gx = step(compiled)
    expected, ex = step(twin)
    assert len(got) == len(expected) >= len(names)  # some snnTorch nets return (spikes, membrane)
    assert all(o.shape[0] == COMPILE_STEPS for o in expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **F64)
    torch.testing.assert_close(gx, ex, **F64)
    for (n, p), q in zip(side.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, **F64, msg=n)
    side.eval(), twin.eval()
    x2 = strong_digits()[3:8]  # another batch size
    with torch.no_grad():
        got, expected = compiled(x2), twin(x2)
    for a, b in zip(got, expected, strict=True):
        assert a.shape[1] == 5
        torch.testing.assert_close(a, b, **F64)


FRESH_WRAPPED = """
import json, sys
sys.path.insert(0, {tests!r})
from test_compile_export import compile_wrapped_nets
compile_wrapped_nets(fullgraph=True)
compile_wrapped_nets(fullgraph=False)
print("RESULT", json.dumps({{"ok": True}}))
"""


def test_wrapped_nets_of_every_framework_compile_with_inductor_train_and_eval() -> None:
    """In a fresh process (nothing compiled before; one process for both lists, to pay the
    frameworks' imports once): see compile_wrapped_nets."""
    tests = str(Path(__file__).resolve().parent)
    assert _run_fresh(FRESH_WRAPPED.format(tests=tests)) == {"ok": True}


# ------------------------------------------------------------------------------------------------
# torch.export with a dynamic batch dimension
# ------------------------------------------------------------------------------------------------


def _export_and_compare(
    module: torch.nn.Module, example: torch.Tensor, other: torch.Tensor, batch_dim: int
) -> None:
    module.eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (example,), dynamic_shapes=({batch_dim: batch},))
    with torch.no_grad():
        for x in (example, other):  # the second has another batch size
            got = _leaves(program.module()(x))
            expected = _leaves(module(x))
            for a, b in zip(got, expected, strict=True):
                torch.testing.assert_close(a, b, **F64)
            assert got[0].shape[1] == x.shape[batch_dim]  # outputs are [T, B, ...]


def test_export_encoder_with_a_dynamic_batch() -> None:
    g = torch.Generator().manual_seed(3)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64) * 3

    enc = gac.GACEncoder(2, 4, T=3).double()
    _export_and_compare(enc, rand(2, 2, 6, 6), rand(7, 2, 6, 6), 0)
    assert enc.last_spikes is not None and enc.last_spikes.shape[1] == 7  # eager call recorded
    _export_and_compare(enc, rand(3, 2, 2, 6, 6), rand(3, 5, 2, 6, 6), 1)  # sequences


@pytest.mark.parametrize("name", list_models())
def test_export_every_registered_model_with_a_dynamic_batch(name: str) -> None:
    model = create_model(name, num_classes=3, T=2).double()
    size = 32 if "imagenet" in name else 16
    _export_and_compare(
        model,
        _small_input(model, 2, size),
        _small_input(model, 3, size),
        1 if model.encoder.in_channels == 2 else 0,
    )


@pytest.mark.parametrize("name", [*SHAPES, "snntorch-whole-sequence"])
def test_export_wrapped_nets_with_a_dynamic_batch(name: str) -> None:
    """Every mode of every framework, Norse's too: torch.export (non-strict, its default) runs the
    Python of Norse's cells as it is, so their requires_grad on the initial state does not stop it
    as it stops dynamo's fullgraph tracing."""
    net = _build(name).eval()
    x = strong_digits()
    _export_and_compare(net, x[:3], x[3:8], 0)


# ------------------------------------------------------------------------------------------------
# ONNX
# ------------------------------------------------------------------------------------------------

# onnxruntime's CPU convolutions have no float64 kernel, so these compare float32. Its MLAS
# convolutions and oneDNN's sum in different orders: a few ulps (~1e-6) per layer on values of
# order 1. 1e-4 leaves a wide margin for that; a spike that flips (a membrane within that distance
# of its threshold) would exceed it, and with the few thousand neurons here none does.
ONNX_TOL = {"rtol": 1e-4, "atol": 1e-4}


def _onnx_run(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def test_to_onnx_model_runs_in_onnxruntime_at_other_batch_sizes(tmp_path: Path) -> None:
    model = create_model("msresnet_tiny", num_classes=10, T=3, in_channels=1)
    # untrained: BatchNorm statistics from a batch, so that every layer fires and logits differ
    calibrate_batchnorm(model, torch.rand(8, 1, 8, 8) * 3)
    model.train()
    path = to_onnx(model, torch.rand(2, 1, 8, 8), tmp_path / "tiny.onnx")
    assert model.training and all(m.training for m in model.modules())  # mode restored
    model.eval()
    g = torch.Generator().manual_seed(4)
    outs = []
    for batch in (1, 5):  # neither is the example's
        x = torch.rand(batch, 1, 8, 8, generator=g) * 3
        got = _onnx_run(path, x)
        with torch.no_grad():
            torch.testing.assert_close(got, model(x), **ONNX_TOL)
        outs.append(got)
    assert outs[0].shape == (3, 1, 10) and outs[1].shape == (3, 5, 10)
    assert not torch.allclose(outs[1][:, 0], outs[1][:, 1])  # the graph reads its input


def test_to_onnx_encoder_on_sequences(tmp_path: Path) -> None:
    enc = gac.GACEncoder(2, 4, T=3)
    g = torch.Generator().manual_seed(5)
    path = to_onnx(enc, torch.rand(3, 2, 2, 6, 6, generator=g) * 3, tmp_path / "enc.onnx")
    enc.eval()
    x = torch.rand(3, 4, 2, 6, 6, generator=g) * 3
    got = _onnx_run(path, x)
    with torch.no_grad():
        expected = enc(x)
    assert expected.ne(0).float().mean() > 0.01  # spikes gated through
    torch.testing.assert_close(got, expected, **ONNX_TOL)


@pytest.mark.parametrize(
    "options, shape",
    [({"ta_source": "membrane", "ta_bias": True, "ta_activation": "gelu", "gate": "sum"}, (2, 2, 6, 6)),
     ({"gate": "separate", "temporal_attention": "conv", "ta_activation": "leaky_relu"}, (3, 2, 2, 6, 6)),
     ({"gate": "temporal", "ta_source": "membrane"}, (2, 2, 6, 6))],
)  # fmt: skip
def test_to_onnx_encoder_variants(options: dict, shape: tuple[int, ...], tmp_path: Path) -> None:
    # issue 26: the variants' gates are torch operations around the LIF operator (static batches
    # and sequences)
    torch.manual_seed(6)
    enc = gac.GACEncoder(2, 4, T=3, **options)
    g = torch.Generator().manual_seed(5)
    path = to_onnx(enc, torch.rand(*shape, generator=g) * 3, tmp_path / "enc.onnx")
    enc.eval()
    x = torch.rand(*shape[:-4], 5, *shape[-3:], generator=g) * 3  # another batch size
    with torch.no_grad():
        expected = enc(x)
    assert expected.ne(0).float().mean() > 0.01  # spikes gated through
    torch.testing.assert_close(_onnx_run(path, x), expected, **ONNX_TOL)


class _CountsCalls(torch.nn.Module):
    """Its output depends on Python state that an exported graph freezes at the traced value."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


def test_to_onnx_check_rejects_a_file_that_differs_from_eager(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"check: onnxruntime's outputs differ"):
        to_onnx(_CountsCalls(), torch.rand(2, 3, 4, 4), tmp_path / "calls.onnx")
    assert to_onnx(_CountsCalls(), torch.rand(2, 3, 4, 4), tmp_path / "ok.onnx", check=False).exists()


def test_to_onnx_argument_errors(tmp_path: Path) -> None:
    enc = gac.GACEncoder(1, 2, T=2)
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        to_onnx("enc", x, tmp_path / "a.onnx")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="example: expected a torch.Tensor"):
        to_onnx(enc, [x], tmp_path / "a.onnx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="example: expected a batch of at least 2 at dim 0"):
        to_onnx(enc, x[:1], tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="batch_dim: cannot tell the batch dimension"):
        to_onnx(enc, torch.rand(2, 4), tmp_path / "a.onnx")
    with pytest.raises(ValueError, match="path: the folder"):
        to_onnx(enc, x, tmp_path / "missing" / "a.onnx")
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike"):
        to_onnx(enc, x, 3)  # type: ignore[arg-type]


def test_legacy_torchscript_onnx_exporter_stops_with_an_error_naming_the_operator(
    tmp_path: Path,
) -> None:
    """The TorchScript-based exporter used to write a graph without inputs (constant logits)."""
    model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1).eval()
    path = tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(Exception, match=r"gac_coding::(gated_)?lif"):
            torch.onnx.export(model, (torch.rand(2, 1, 8, 8),), str(path), dynamo=False)
        with pytest.raises(Exception, match=r"gac_coding::lif"):
            torch.onnx.export(gac.LIF(), (torch.rand(3, 2, 4),), str(path), dynamo=False)
    assert not path.exists()
