"""What the export-onnx mutation run found unpinned in ``to_onnx`` (``gac_coding.export.onnx``).

Small and exact: a LIF and a linear head with weights and inputs that are multiples of 1/8, so
that onnxruntime's outputs equal eager's bit for bit and every comparison here is ``torch.equal``.
What is pinned: the defaults (the graph input's name, the batch dimension of 4- and 5-dim
examples, the check on), what reaches the file (input name, opset, a dynamic batch, no custom
operator even without torch's global decompositions), what the check runs on (the example and
the example with its first sample repeated) and its tolerance taken exactly, every argument
check and message, the packages required (onnxruntime only for the check), the training flags
restored after a failure, nothing printed. The check's measure is compared with values computed
by hand on an ONNX graph written here with ``onnx.helper``.
"""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch._decomp import decomposition_table

import gac_coding as gac
from gac_coding.export import onnx as onnx_export
from gac_coding.export import to_onnx
from gac_coding.ops import backends
from gac_coding.ops.functional import inference_decompositions

OPS = (torch.ops.gac_coding.lif.default, torch.ops.gac_coding.gated_lif.default)


@pytest.fixture(autouse=True)
def _eager_lif_backend() -> Any:
    with backends.use_backend("eager"):
        yield


class _Tiny(nn.Module):
    """A LIF over ``[T, B, ..., 4]`` (a 4-dim static batch is run for 2 steps, the second at half
    strength) and a linear head on the last dimension, inside a child that stays in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.lif = gac.LIF(decay=0.5, threshold=0.5)
        self.inner = nn.Sequential(nn.Linear(4, 3))
        with torch.no_grad():  # multiples of 1/8: sums of a few of them are exact in float32
            self.inner[0].weight.copy_(torch.tensor([[1.0, -0.5, 0.25, 2.0], [0.5, 0.5, -1.0, 0.125],
                                                     [-0.25, 1.5, 0.75, -0.5]]))  # fmt: skip
            self.inner[0].bias.copy_(torch.tensor([0.125, -0.25, 0.5]))

    def forward(self, images: Tensor) -> Tensor:
        seq = torch.stack([images, images * 0.5]) if images.dim() == 4 else images
        return self.inner(self.lif(seq))


def _dyadic(*shape: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 17, shape, generator=g) / 8


def _mixed_flags(model: nn.Module) -> list[bool]:
    model.train()
    model.inner.eval()
    return [m.training for m in model.modules()]


def _run(path: Path, name: str, x: Tensor) -> Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {name: x.numpy()})
    return torch.from_numpy(out)


def _runs_like_eager(path: Path, name: str, model: nn.Module, inputs: list[Tensor], batch_dim: int) -> None:
    model.eval()
    for x in inputs:
        got = _run(path, name, x)
        with torch.no_grad():
            expected = model(x)
        assert torch.equal(got, expected), x.shape
        first, last = got.select(1, 0), got.select(1, got.shape[1] - 1)
        if x.shape[batch_dim] > 1:
            assert not torch.equal(first, last)  # the graph reads its input


def _graph_input(path: Path) -> Any:
    import onnx

    model = onnx.load(str(path))
    (inp,) = model.graph.input
    return model, inp


class _Spy:
    """Stands in for ``_compare``: records its arguments and returns the real measure (or
    ``value``)."""

    def __init__(self, value: float | None = None) -> None:
        self.real = onnx_export._compare
        self.value = value
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, model: nn.Module, path: Path, inputs: Any, input_name: str) -> float:
        self.calls.append((model, path, [x.clone() for x in inputs], input_name))
        return self.real(model, path, inputs, input_name) if self.value is None else self.value


# ------------------------------------------------------------------------------------------------
# to_onnx: files written and checked
# ------------------------------------------------------------------------------------------------


def test_defaults_name_the_input_x_and_check_the_example_and_one_more_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spy = _Spy()
    monkeypatch.setattr(onnx_export, "_compare", spy)
    model = _Tiny()
    flags = _mixed_flags(model)
    x = _dyadic(2, 1, 3, 4)  # [B, C, H, W]: the batch at dim 0
    path = to_onnx(model, x, str(tmp_path / "tiny.onnx"))
    assert isinstance(path, Path) and path == tmp_path / "tiny.onnx"
    assert capsys.readouterr() == ("", "")  # nothing printed
    assert [m.training for m in model.modules()] == flags  # restored, child included
    ((seen_model, seen_path, inputs, name),) = spy.calls  # the check ran, once
    assert seen_model is model and seen_path == path and name == "x"
    assert len(inputs) == 2 and torch.equal(inputs[0], x)
    assert torch.equal(inputs[1], torch.cat([x, x[:1]]))  # one more sample: the first again
    _, inp = _graph_input(path)
    assert inp.name == "x"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 3, 4]  # the batch is free
    _runs_like_eager(path, "x", model, [_dyadic(1, 1, 3, 4, seed=1), _dyadic(5, 1, 3, 4, seed=2)], 0)


def test_a_sequence_with_a_name_an_opset_and_no_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: without onnxruntime (hidden from the requirement check) when ``check=False``, and
    without the library's entries in torch's global decomposition table (``to_onnx`` decomposes
    the neuron operators itself)."""
    spy = _Spy()
    monkeypatch.setattr(onnx_export, "_compare", spy)
    _hide_packages(monkeypatch, "onnxruntime")
    for op in OPS:
        monkeypatch.delitem(decomposition_table, op)
    model = _Tiny()
    x = _dyadic(3, 2, 1, 2, 4)  # [T, B, C, H, W]: the batch at dim 1
    path = to_onnx(model, x, tmp_path / "seq.onnx", input_name="spikes", opset_version=18, check=False)
    monkeypatch.undo()
    assert spy.calls == []
    onnx_model, inp = _graph_input(path)
    assert inp.name == "spikes"
    assert {(o.domain, o.version) for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")} == {
        ("", 18)
    }
    dims = inp.type.tensor_type.shape.dim
    assert dims[1].dim_param and [dims[i].dim_value for i in (0, 2, 3, 4)] == [3, 1, 2, 4]
    assert {n.domain for n in onnx_model.graph.node} <= {"", "ai.onnx"}  # standard operators only
    _runs_like_eager(
        path, "spikes", model, [_dyadic(3, 1, 1, 2, 4, seed=3), _dyadic(3, 4, 1, 2, 4, seed=4)], 1
    )


@pytest.mark.parametrize("measure", [onnx_export.CHECK_TOLERANCE, math.nextafter(1e-3, 1.0), math.nan])
def test_the_check_accepts_up_to_its_tolerance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, measure: float
) -> None:
    """The measure exactly at ``CHECK_TOLERANCE`` passes; above it, or NaN, is refused with the
    measure and the file named, and the training flags are restored after the refusal."""
    monkeypatch.setattr(onnx_export, "_compare", _Spy(measure))
    model = _Tiny()
    flags = _mixed_flags(model)
    path = tmp_path / "tol.onnx"
    x = _dyadic(2, 2, 4)
    if measure <= onnx_export.CHECK_TOLERANCE:
        assert to_onnx(model, x, path, batch_dim=1) == path
    else:
        with pytest.raises(ValueError) as err:
            to_onnx(model, x, path, batch_dim=1)
        assert str(err.value) == (
            f"check: onnxruntime's outputs differ from the eager model's by {measure:.2e} (mean "
            f"absolute difference over the mean absolute output; tolerance 0.001); the file "
            f"{str(path)!r} is not a faithful export"
        )
    assert [m.training for m in model.modules()] == flags


def test_an_exporter_that_returns_no_program_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: None)
    model = _Tiny()
    flags = _mixed_flags(model)
    with pytest.raises(RuntimeError) as err:
        to_onnx(model, _dyadic(2, 2, 4), tmp_path / "none.onnx", batch_dim=1)
    assert str(err.value) == "torch.onnx.export returned no ONNX program"
    assert [m.training for m in model.modules()] == flags
    assert not (tmp_path / "none.onnx").exists()


class _FixedBatch(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(2, -1)  # works for a batch of 2 only


def test_a_model_that_fixes_the_batch_is_refused_naming_the_batch_dimension(tmp_path: Path) -> None:
    """torch.export refuses to specialize the dynamic dimension, and its error names it as
    ``to_onnx`` calls it; nothing is written."""
    model = _FixedBatch()
    with pytest.raises(Exception, match=r"Constraints violated \(batch\)") as err:
        to_onnx(model, torch.rand(2, 3, 4), tmp_path / "fixed.onnx", batch_dim=0)
    assert "batch = 2" in str(err.value)
    assert model.training and not (tmp_path / "fixed.onnx").exists()


# ------------------------------------------------------------------------------------------------
# Requirements and arguments (refused before anything is traced)
# ------------------------------------------------------------------------------------------------


def _hide_packages(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """``to_onnx``'s requirement check finds no package of ``names`` (the rest as installed)."""
    import importlib.util

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in names else importlib.util.find_spec(name, *args)

    fake = types.SimpleNamespace(util=types.SimpleNamespace(find_spec=find_spec))
    monkeypatch.setattr(onnx_export, "importlib", fake)


@pytest.mark.parametrize("package, check", [("onnxscript", False), ("onnx", False), ("onnxruntime", True)])
def test_a_missing_package_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str, check: bool
) -> None:
    _hide_packages(monkeypatch, package)
    model = _Tiny()
    flags = _mixed_flags(model)
    with pytest.raises(ImportError) as err:
        to_onnx(model, _dyadic(2, 2, 4), tmp_path / "m.onnx", batch_dim=1, check=check)
    assert str(err.value) == (
        f"to_onnx needs the package {package!r}, which is not installed: "
        'pip install "gac-coding[export]" (onnx, onnxscript, onnxruntime)'
    )
    assert [m.training for m in model.modules()] == flags and not (tmp_path / "m.onnx").exists()


def _message(exc: type[Exception], call: Any) -> str:
    with pytest.raises(exc) as err:
        call()
    return str(err.value)


def test_argument_messages(tmp_path: Path) -> None:
    model, x, path = _Tiny(), _dyadic(3, 2, 4), tmp_path / "a.onnx"

    def export(**kwargs: Any) -> Any:
        args = {"model": model, "example": x, "path": path, "batch_dim": 1, **kwargs}
        return lambda: to_onnx(args.pop("model"), args.pop("example"), args.pop("path"), **args)

    assert _message(TypeError, export(model="enc")) == "model: expected a torch.nn.Module, got str"
    assert _message(TypeError, export(example=[x])) == "example: expected a torch.Tensor, got list"
    assert _message(TypeError, export(path=3)) == "path: expected a str or os.PathLike, got int"
    assert _message(TypeError, export(input_name="")) == "input_name: expected a non-empty str, got ''"
    assert _message(TypeError, export(input_name=3)) == "input_name: expected a non-empty str, got 3"
    for bad, kind in (("18", "str"), (True, "bool"), (18.0, "float")):
        assert (
            _message(TypeError, export(opset_version=bad))
            == f"opset_version: expected an int or None, got {kind}"
        )
    assert _message(TypeError, export(check="yes")) == "check: expected a bool, got str"
    assert _message(TypeError, export(check=None)) == "check: expected a bool, got NoneType"
    for bad, kind in ((True, "bool"), (1.0, "float")):
        assert _message(TypeError, export(batch_dim=bad)) == f"batch_dim: expected an int or None, got {kind}"
    for bad in (3, -4, 7):
        assert _message(ValueError, export(batch_dim=bad)) == (
            f"batch_dim: expected a dimension of the 3-dim example, got {bad}"
        )
    assert _message(ValueError, export(batch_dim=None)) == (
        "batch_dim: cannot tell the batch dimension of a 3-dim example of shape (3, 2, 4) (4 dims: "
        "[B, C, H, W] -> 0, 5 dims: [T, B, C, H, W] -> 1); pass batch_dim="
    )
    assert _message(ValueError, export(example=x[:, :1])) == (
        "example: expected a batch of at least 2 at dim 1 (torch.export fixes a dimension of size 0 "
        "or 1 to that size), got shape (3, 1, 4)"
    )
    assert _message(ValueError, export(example=x.new_zeros(3, 0, 4))) == (
        "example: expected a batch of at least 2 at dim 1 (torch.export fixes a dimension of size 0 "
        "or 1 to that size), got shape (3, 0, 4)"
    )
    missing = tmp_path / "missing"
    assert (
        _message(ValueError, export(path=missing / "a.onnx"))
        == f"path: the folder {str(missing)!r} does not exist"
    )
    assert not missing.exists()


@pytest.mark.parametrize(
    "shape, batch_dim, expected",
    [((2, 1, 3, 4), None, 0), ((3, 2, 1, 3, 4), None, 1), ((3, 2, 4), 1, 1), ((3, 2, 4), -2, 1),
     ((2, 3, 4), -3, 0), ((3, 4, 2), 2, 2), ((3, 4, 2), -1, 2)],
)  # fmt: skip
def test_accepted_arguments_and_the_batch_dimension(
    tmp_path: Path, shape: tuple[int, ...], batch_dim: int | None, expected: int
) -> None:
    """A batch of exactly 2 is the smallest accepted; negative dimensions count from the end."""
    x = torch.zeros(shape)
    for opset in (None, 18):
        path, dim = onnx_export._check_arguments(
            _Tiny(), x, str(tmp_path / "a.onnx"), batch_dim, opset, "x", True
        )
        assert (path, dim) == (tmp_path / "a.onnx", expected) and isinstance(path, Path) and type(dim) is int


# ------------------------------------------------------------------------------------------------
# The pieces: the check's measure, the training flags, the decomposition table
# ------------------------------------------------------------------------------------------------


def _plus_one_graph(path: Path) -> Path:
    """An ONNX file written by hand: ``out = inp + 1`` on float32 ``[batch, 2]``."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["inp", "one"], ["out"])],
        "plus_one",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 2])],
        initializer=[one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class _Fn(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Any:
        return self.fn(x)


def test_the_check_measure_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worst over the inputs of mean |onnx - eager| / mean |eager| (1 where eager is all zero),
    in onnxruntime's CPU provider."""
    import onnxruntime

    path = _plus_one_graph(tmp_path / "plus_one.onnx")
    sessions: list[tuple[Any, ...]] = []
    real_session = onnxruntime.InferenceSession

    def session(*args: Any, **kwargs: Any) -> Any:
        sessions.append((args, kwargs))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    compare = onnx_export._compare
    zeros, fives = torch.zeros(2, 2), torch.full((3, 2), 2.5)
    assert compare(_Fn(lambda x: x + 1), path, [zeros, fives], "inp") == 0.0
    assert sessions == [((str(path),), {"providers": ["CPUExecutionProvider"]})]
    # eager x + 1.5: |diff| = 0.5; mean |eager| = 1.5 on zeros, 4 on 2.5 -> 1/3 and 1/8
    shifted = _Fn(lambda x: x + 1.5)
    assert compare(shifted, path, [fives, zeros], "inp") == pytest.approx(1 / 3, rel=1e-12)
    assert compare(shifted, path, [zeros, fives], "inp") == pytest.approx(1 / 3, rel=1e-12)
    assert compare(shifted, path, [fives], "inp") == pytest.approx(1 / 8, rel=1e-12)
    # eager all zero: the difference is taken as it is (onnx gives 1 on zeros, 3.5 on 2.5)
    assert compare(_Fn(lambda x: x * 0), path, [zeros], "inp") == 1.0
    assert compare(_Fn(lambda x: x * 0), path, [zeros, fives], "inp") == 3.5
    # outputs in a list are flattened as the graph lists them
    assert compare(_Fn(lambda x: [x + 1]), path, [zeros], "inp") == 0.0
    assert _message(ValueError, lambda: compare(_Fn(lambda x: (x + 1, x)), path, [zeros], "inp")) == (
        "check: the ONNX model returns 1 outputs, the eager model 2"
    )
    assert _message(ValueError, lambda: compare(_Fn(lambda x: (x + 1)[:, :1]), path, [fives], "inp")) == (
        "check: for an input of shape (3, 2) the ONNX model returns shape (3, 2), the eager model (3, 1)"
    )


def test_training_flags_are_set_module_by_module_and_must_match() -> None:
    model = nn.Sequential(nn.Linear(1, 1), nn.Sequential(nn.Dropout(), nn.ReLU()))
    flags = [False, True, True, False, True]
    onnx_export._set_training(model, flags)
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(ValueError):  # flags of another model are never half applied
        onnx_export._set_training(model, flags[:-1])


def test_the_decomposition_table_is_torch_exports_plus_the_neuron_operators() -> None:
    table = onnx_export._decompositions()
    default = torch.export.default_decompositions()
    assert set(table) == set(default) | set(OPS)
    assert all(table[op] is fn for op, fn in inference_decompositions().items())
