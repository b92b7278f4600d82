"""The choice of backend: settings and their precedence, ``"auto"`` as a pure rule, kernels that
fail raising or falling back per call, the setting on modules (their repr), in compiled graphs and
in training checkpoints.

Which backend ran is observed directly: the backend modules' functions are wrapped by spies. The
triton backend runs in its interpreter on CPU tensors (tiny tensors: the interpreter is slow).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from slow_reference import slow_lif
from torch import Tensor
from triton_device import triton_kernel_device

import gac_coding as gac
from gac_coding import neuron
from gac_coding.models import create_model
from gac_coding.ops import _cpp, _triton, backends
from gac_coding.ops.backends import BACKEND_ENV, BackendError, module_backends, set_module_backend

F64 = torch.float64
FUNCTIONS = ("lif_forward", "lif_backward", "gated_forward", "gated_backward")
CHOICES = r"expected one of \['auto', 'eager', 'cpp', 'triton'\] or backends to try in order"


@pytest.fixture(autouse=True)
def _no_process_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No environment variable and no process override, both restored afterwards."""
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    with backends.use_backend(None):
        yield


@pytest.fixture(scope="module")
def triton_cpu() -> None:
    assert triton_kernel_device() == "cpu", "these tests run the triton kernels on CPU tensors"


@contextmanager
def spying() -> Iterator[list[str]]:
    """Record ``"backend.function"`` for every backend function that runs in the block."""
    calls: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        for name in ("eager", "cpp", "triton"):
            module = backends.backend_module(name)
            for fn in FUNCTIONS:
                original = getattr(module, fn)

                def spy(*args: object, _tag: str = f"{name}.{fn}", _fn: Callable = original) -> object:
                    calls.append(_tag)
                    return _fn(*args)

                mp.setattr(module, fn, spy)
        yield calls


def ran(fn: Callable[[], object]) -> set[str]:
    """The backends whose functions ran during ``fn()``."""
    with spying() as calls:
        fn()
    return {c.split(".")[0] for c in calls}


def _x(*shape: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=F64) * 1.5


# ------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("bad", ["cuda", "", "eager,cpp", "cpp,cpp", "cpp;eager", "auto,eager"])
def test_bad_backend_names_raise_value_error_naming_the_choices(bad: str) -> None:
    x = _x(3, 2)
    makers: list[Callable[[], object]] = [
        lambda: gac.LIF(backend=bad),
        lambda: gac.GatedAttentionUnit(4, T=2, backend=bad),
        lambda: gac.GACEncoder(1, 4, T=2, backend=bad),
        lambda: create_model("msresnet_tiny", T=2, backend=bad),
        lambda: create_model("msresnet_tiny", T=2, coding="direct", backend=bad),
        lambda: create_model("vgg_tiny", T=2, backend=bad),
        lambda: neuron.lif(x, backend=bad),
        lambda: gac.attention.gated_lif(x, torch.ones(3, 2), torch.ones(2), backend=bad),
        lambda: backends.set_backend(bad),
    ]
    for make in makers:
        with pytest.raises(ValueError, match=f"backend: {CHOICES}"):
            make()
    lif = gac.LIF()
    with pytest.raises(ValueError, match=CHOICES):
        lif.backend = bad
    assert lif.backend == "auto"
    with pytest.raises(TypeError, match="backend: expected a str"):
        gac.LIF(backend=None)  # type: ignore[arg-type]


def test_settings_are_normalised_and_the_environment_variable_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert backends.check_backend(" CPP , Eager ") == "cpp,eager"
    assert gac.LIF(backend="Triton").backend == "triton"
    assert backends.get_backend() == "auto"
    monkeypatch.setenv(BACKEND_ENV, " Triton,EAGER ")
    assert backends.get_backend() == "triton,eager"
    monkeypatch.setenv(BACKEND_ENV, "fast")
    with pytest.raises(ValueError, match=f"{BACKEND_ENV}: {CHOICES}"):
        neuron.lif(_x(2, 3))  # read at the call ("auto" consults it)
    # an explicit setting does not consult it
    ref = slow_lif(_x(2, 3), 0.5, 1.0, "triangle", False)[0]
    assert torch.equal(neuron.lif(_x(2, 3), backend="eager"), ref)


def test_precedence_module_then_process_override_then_environment_then_auto(
    triton_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _x(3, 2, 4)
    auto, eager, triton = gac.LIF(), gac.LIF(backend="eager"), gac.LIF(backend="triton")
    assert ran(lambda: auto(x)) == {"eager"}  # the rule for CPU tensors
    assert ran(lambda: triton(x)) == {"triton"}
    monkeypatch.setenv(BACKEND_ENV, "triton")  # read at each call
    assert ran(lambda: auto(x)) == {"triton"}
    assert ran(lambda: eager(x)) == {"eager"}  # a module's own setting wins
    backends.set_backend("eager")  # the process override wins over the environment
    assert backends.get_backend() == "eager"
    assert ran(lambda: auto(x)) == {"eager"}
    assert ran(lambda: triton(x)) == {"triton"}
    with backends.use_backend("triton"):
        assert ran(lambda: auto(x)) == {"triton"}
    assert backends.get_backend() == "eager"  # restored
    backends.set_backend(None)  # no override: the environment again
    assert ran(lambda: auto(x)) == {"triton"}
    monkeypatch.delenv(BACKEND_ENV)
    assert ran(lambda: auto(x)) == {"eager"}
    ref = slow_lif(x, 0.5, 1.0, "triangle", False)[0]
    assert all(torch.equal(m(x), ref) for m in (auto, eager, triton))


# ------------------------------------------------------------------------------------ auto


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_on_cpu_is_eager_whether_or_not_cpp_was_built(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    def check() -> None:
        assert backends.auto_backend("cpu", dtype) == "eager"
        assert backends.resolve("auto", "cpu", dtype) == "eager"
        assert backends.resolve("auto", "cpu", dtype, check=True) == "eager"
        x = _x(3, 2, 4).to(dtype).requires_grad_()
        enc = gac.GACEncoder(1, 4, T=2).to(dtype)

        def run() -> None:
            gac.LIF()(x).sum().backward()
            enc(torch.rand(2, 1, 6, 6, dtype=dtype)).sum().backward()

        with spying() as calls:
            run()
        assert calls == [f"eager.{fn}" for fn in FUNCTIONS]

    monkeypatch.setattr(_cpp, "is_built", lambda: False)  # no build anywhere
    monkeypatch.setattr(_cpp, "load", lambda: pytest.fail("auto must not start a build"))
    check()
    monkeypatch.undo()
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    # a build in torch's cache, and (where a compiler is found) the kernels loaded in this process
    monkeypatch.setattr(_cpp, "is_built", lambda: True)
    if _cpp.toolchain_available():
        assert _cpp.load() is not None
    check()


def test_auto_on_cuda_is_triton_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_triton_installed", lambda: True)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        assert backends.auto_backend("cuda", dtype) == "triton"
        assert backends.resolve("auto", torch.device("cuda", 1), dtype) == "triton"
        # a failing triton call falls back to eager ("auto" chose, not the user)
        assert backends._plan("auto", torch.device("cuda"), dtype, 0).names == ("triton", "eager")
    assert backends.auto_backend("cuda", torch.int32) == "eager"
    assert backends.auto_backend("meta", torch.float32) == "eager"
    assert backends.resolve("auto", "cuda", torch.float32, surrogate_code=None) == "eager"  # a callable
    assert backends.resolve("cpp", "cuda", torch.float32) == "eager"  # cpp takes CPU tensors only
    monkeypatch.setattr(backends, "_triton_installed", lambda: False)
    assert backends.auto_backend("cuda", torch.float32) == "eager"


# ------------------------------------------------------------------------------------ failures


def test_a_kernel_failing_at_launch_raises_or_falls_back_per_call(
    triton_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _x(4, 2, 5).requires_grad_()
    ref = slow_lif(x.detach(), 0.5, 1.0, "triangle", False)[0]
    calls: list[int] = []
    original = _triton.lif_forward

    def broken(*args: object) -> None:
        calls.append(1)
        raise RuntimeError("illegal instruction")

    monkeypatch.setattr(_triton, "lif_forward", broken)
    for n in (1, 2):  # "triton" alone: every call tries it again, and raises
        with pytest.raises(BackendError, match=r"'triton' failed: RuntimeError: illegal instruction") as info:
            neuron.lif(x, backend="triton")
        assert "'triton,eager'" in str(info.value)  # the way to a fallback, named
        assert isinstance(info.value.__cause__, RuntimeError)
        assert len(calls) == n
    with warnings.catch_warnings(record=True) as caught:  # a fallback: per call, with a warning
        warnings.simplefilter("always")
        first = neuron.lif(x, backend="triton,eager")
        second = gac.LIF(backend="triton,eager")(x)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(calls) == 4 and len(messages) == 2
    assert all("illegal instruction" in m and "'eager' ran this lif_forward call" in m for m in messages)
    assert torch.equal(first, ref) and torch.equal(second, ref)
    monkeypatch.setattr(_triton, "lif_forward", original)  # mended: the next call runs triton
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ran(lambda: neuron.lif(x, backend="triton,eager")) == {"triton"}


def test_a_backward_that_fails_raises_or_falls_back(
    triton_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _x(3, 2, 4)
    grad = _x(3, 2, 4) * 0.3
    leaf = x.clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(slow_lif(leaf, 0.5, 1.0, "triangle", False)[0], leaf, grad)

    def broken(*args: object) -> None:
        raise RuntimeError("launch failed")

    monkeypatch.setattr(_triton, "lif_backward", broken)
    leaf = x.clone().requires_grad_()
    spikes = neuron.lif(leaf, backend="triton")
    with pytest.raises(BackendError, match="launch failed"):
        torch.autograd.grad(spikes, leaf, grad)
    with spying() as order, pytest.warns(RuntimeWarning, match="'eager' ran this lif_backward call"):
        spikes = neuron.lif(leaf, backend="triton,eager")
        (g,) = torch.autograd.grad(spikes, leaf, grad)
    assert order == ["triton.lif_forward", "triton.lif_backward", "eager.lif_backward"]
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


def test_the_gate_falls_back_and_out_of_memory_is_not_a_kernel_failure(
    triton_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    unit = gac.GatedAttentionUnit(3, T=2, backend="triton,eager").double()
    u = _x(2, 2, 3, 4, 4)
    expected = unit(u)

    def broken(*args: object) -> None:
        raise RuntimeError("no kernel image")

    monkeypatch.setattr(_triton, "gated_forward", broken)
    with pytest.warns(RuntimeWarning, match="no kernel image"):
        torch.testing.assert_close(unit(u), expected, rtol=1e-12, atol=1e-12)

    def oom(*args: object) -> None:
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(_triton, "gated_forward", oom)
    with pytest.raises(torch.OutOfMemoryError):
        unit(u)


# ------------------------------------------------------------------------------------ modules


def test_repr_shows_the_backend_of_every_module_that_runs_neurons() -> None:
    assert repr(gac.LIF()).endswith("detach_reset=False, backend='auto')")
    assert "backend='triton,eager'" in repr(gac.GatedAttentionUnit(4, T=2, backend="triton,eager"))
    enc = gac.GACEncoder(1, 4, T=2, backend="cpp")
    assert enc.gate.backend == "cpp" and repr(enc).splitlines()[1].strip().endswith("backend='cpp'")
    enc.backend = "eager"  # the encoder's setting is its gate's
    assert enc.gate.backend == "eager" and "cpp" not in repr(enc)
    for name, kw in (("msresnet_tiny", {}), ("msresnet_tiny", {"coding": "direct"}), ("vgg_tiny", {})):
        model = create_model(name, T=2, backend="cpp,eager", **kw)
        neurons = [m for m in model.modules() if isinstance(m, (gac.LIF, gac.GatedAttentionUnit))]
        found = module_backends(model)
        assert len(found) == len(neurons) and set(found.values()) == {"cpp,eager"}
        shown = 1 if kw.get("coding", "gac") == "gac" else 0  # the GAC encoder shows its gate's too
        assert repr(model).count("backend='cpp,eager'") == len(neurons) + shown
        set_module_backend(model, "eager")
        assert repr(model).count("backend='eager'") == len(neurons) + shown
        assert module_backends(model, "cpu", torch.float32) == dict.fromkeys(found, "eager")


def test_the_setting_reaches_compiled_graphs_as_a_constant_resolved_at_run_time(triton_cpu: None) -> None:
    x = _x(3, 2, 4)
    lif = gac.LIF()
    compiled = torch.compile(lif, fullgraph=True, backend="aot_eager")
    with backends.use_backend("eager"):
        with spying() as calls:
            a = compiled(x)
    with backends.use_backend("triton"):  # no retrace: the op resolves "auto" when it runs
        with spying() as later:
            b = compiled(x)
    assert calls == ["eager.lif_forward"] and later == ["triton.lif_forward"]
    assert torch.equal(a, b) and torch.equal(a, slow_lif(x, 0.5, 1.0, "triangle", False)[0])
    program = torch.export.export(gac.LIF(backend="triton,eager"), (x,))
    nodes = [n for n in program.graph.nodes if n.target == torch.ops.gac_coding.lif.default]
    assert len(nodes) == 1 and nodes[0].args[-1] == "triton,eager"


# ------------------------------------------------------------------------------------ training


def _tiny_data():  # 32 random 8x8 grey images, 10 classes
    from gac_coding.train.data import DataSpec, TensorImageDataset

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(48, 1, 8, 8, generator=gen)
    labels = torch.randint(0, 10, (48,), generator=gen)
    train = TensorImageDataset(images[:32], labels[:32])
    test = TensorImageDataset(images[32:], labels[32:])
    return DataSpec("tiny", train, test, num_classes=10, in_channels=1, image_size=8)


@pytest.mark.parametrize("setting,used", [("auto", "eager"), ("eager", "eager")])
def test_training_prints_and_records_the_backend(tmp_path: Path, setting: str, used: str) -> None:
    from gac_coding.train import TrainConfig, fit, load_checkpoint

    out = tmp_path / "run"
    config = TrainConfig(model="msresnet_tiny", dataset="digits", T=2, epochs=1, batch_size=16, lr=0.1,
                         out=str(out), progress=False, device="cpu", backend=setting)  # fmt: skip
    lines: list[str] = []
    result = fit(config, log=lines.append, data=_tiny_data())
    assert any(f"neuron backend {used} (setting {setting!r})" in line for line in lines)
    saved = load_checkpoint(out / "last.pt")["config"]
    assert saved["backend"] == setting and saved["backend_used"] == used
    assert set(module_backends(result.model).values()) == {"auto" if setting == "auto" else setting}


def test_training_backend_option_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gac_coding.cli import main

    args = ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", "1",
            "--batch-size", "8", "--lr", "0.1", "--out", str(tmp_path / "x"),
            "--backend", "fast"]  # fmt: skip
    assert main(args, friendly_errors=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "backend: expected one of" in err[0]
    assert not (tmp_path / "x").exists()
