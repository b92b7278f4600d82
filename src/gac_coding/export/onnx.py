"""ONNX export of the models, the encoder and wrapped nets, for onnxruntime and other ONNX runtimes.

``to_onnx(model, example, path)`` traces the model in inference mode with ``torch.export`` (batch
dimension dynamic), replaces the library's neuron operators (``torch.ops.gac_coding.lif`` and
``gated_lif``, which no ONNX runtime knows) by their plain-torch formulation unrolled over the
``T`` steps, and writes the ONNX file with torch's dynamo-based exporter (``torch.onnx.export(...,
dynamo=True)``). By default it then runs the file in onnxruntime on the example and on a batch of
another size and compares with the eager model. Needs the ``export`` extra
(``pip install "gac-coding[export]"``: onnx, onnxscript, onnxruntime).

The legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) cannot export the
neuron operators and stops with an error that names them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["to_onnx"]

#: Relative mean difference above which ``check`` rejects an export (see :func:`to_onnx`).
CHECK_TOLERANCE = 1e-3


def _decompositions() -> dict[Any, Callable[..., Any]]:
    """torch.export's default decompositions plus plain-torch forms of the neuron operators."""
    from ..ops.functional import inference_decompositions

    table = torch.export.default_decompositions()
    table.update(inference_decompositions())
    return table


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"to_onnx needs the package {module!r}, which is not installed: "
            f'pip install "gac-coding[export]" (onnx, onnxscript, onnxruntime)'
        )


def _batch_dim(example: Tensor, batch_dim: int | None) -> int:
    if batch_dim is None:
        if example.dim() == 4:
            return 0  # a static batch [B, C, H, W]
        if example.dim() == 5:
            return 1  # a time-major sequence [T, B, C, H, W]
        raise ValueError(
            f"batch_dim: cannot tell the batch dimension of a {example.dim()}-dim example of shape "
            f"{tuple(example.shape)} (4 dims: [B, C, H, W] -> 0, 5 dims: [T, B, C, H, W] -> 1); "
            f"pass batch_dim="
        )
    if isinstance(batch_dim, bool) or not isinstance(batch_dim, int):
        raise TypeError(f"batch_dim: expected an int or None, got {type(batch_dim).__name__}")
    if not -example.dim() <= batch_dim < example.dim():
        raise ValueError(
            f"batch_dim: expected a dimension of the {example.dim()}-dim example, got {batch_dim}"
        )
    return batch_dim % example.dim()


def _outputs(out: Any) -> list[Tensor]:
    """The tensors of a model output, flattened in order (as the ONNX graph lists them)."""
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return [t for t in leaves if isinstance(t, Tensor)]


def _set_training(model: nn.Module, flags: Sequence[bool]) -> None:
    for module, flag in zip(model.modules(), flags, strict=True):
        module.training = flag


def _compare(model: nn.Module, path: Path, inputs: Sequence[Tensor], input_name: str) -> float:
    """Run ``path`` in onnxruntime on ``inputs``; the worst relative mean difference to eager."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            expected = _outputs(model(x))
        got = session.run(None, {input_name: x.detach().cpu().numpy()})
        if len(got) != len(expected):
            raise ValueError(
                f"check: the ONNX model returns {len(got)} outputs, the eager model {len(expected)}"
            )
        for e, g in zip(expected, got, strict=True):
            g = torch.from_numpy(g)
            if tuple(g.shape) != tuple(e.shape):
                raise ValueError(
                    f"check: for an input of shape {tuple(x.shape)} the ONNX model returns shape "
                    f"{tuple(g.shape)}, the eager model {tuple(e.shape)}"
                )
            e64, g64 = e.detach().cpu().double(), g.double()
            scale = float(e64.abs().mean()) or 1.0
            worst = max(worst, float((g64 - e64).abs().mean()) / scale)
    return worst


def _check_arguments(
    model: object,
    example: object,
    path: object,
    batch_dim: int | None,
    opset_version: object,
    input_name: object,
    check: object,
) -> tuple[Path, int]:
    """The argument checks of :func:`to_onnx`; the path and the batch dimension."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example, Tensor):
        raise TypeError(f"example: expected a torch.Tensor, got {type(example).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(input_name, str) or not input_name:
        raise TypeError(f"input_name: expected a non-empty str, got {input_name!r}")
    if opset_version is not None and (isinstance(opset_version, bool) or not isinstance(opset_version, int)):
        raise TypeError(f"opset_version: expected an int or None, got {type(opset_version).__name__}")
    if not isinstance(check, bool):
        raise TypeError(f"check: expected a bool, got {type(check).__name__}")
    dim = _batch_dim(example, batch_dim)
    if example.shape[dim] < 2:
        raise ValueError(
            f"example: expected a batch of at least 2 at dim {dim} (torch.export fixes a dimension "
            f"of size 0 or 1 to that size), got shape {tuple(example.shape)}"
        )
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: the folder {str(path.parent)!r} does not exist")
    return path, dim


def to_onnx(
    model: nn.Module,
    example: Tensor,
    path: str | os.PathLike[str],
    *,
    batch_dim: int | None = None,
    opset_version: int | None = None,
    input_name: str = "x",
    check: bool = True,
) -> Path:
    """Write ``model`` (in inference mode) to the ONNX file ``path``, with a dynamic batch size.

    Args:
        model: a model of :func:`gac_coding.models.create_model`, a :class:`~gac_coding.GACEncoder`,
            a :class:`~gac_coding.GACNet` of a plain-PyTorch or SpikingJelly backbone, or any module
            that ``torch.export`` traces. It is exported in ``eval()`` mode (BatchNorm uses its
            running statistics); its training flags are restored afterwards.
        example: an input of the model, on the CPU, float32 for onnxruntime (its CPU convolutions
            have no float64 kernel). Its batch size must be at least 2 (``torch.export`` fixes a
            dimension of size 1); other sizes are accepted by the file.
        path: the ``.onnx`` file to write; its folder must exist.
        batch_dim: the dimension of ``example`` that holds the batch; default 0 for a static
            ``[B, C, H, W]`` batch, 1 for a time-major ``[T, B, C, H, W]`` sequence.
        opset_version: ONNX opset (default: torch's).
        input_name: name of the graph input (the name to feed in onnxruntime).
        check: run the file in onnxruntime on ``example`` and on a batch one larger, and raise
            ``ValueError`` when its outputs differ from the eager model's by more than
            ``1e-3`` in mean absolute difference relative to the mean absolute output. The
            measure is robust to a few spikes that flip: a membrane within float32 rounding of the
            threshold can fire in one runtime and not in the other, because the convolutions
            round differently. An exported graph that ignores its input or mixes up samples fails.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    What is checked at run time in the exported graph: nothing. Input validation
    (:func:`gac_coding.coding.check_image_input`) runs while tracing, on ``example``; the file
    accepts any batch size, but the channels, spatial size and ``T`` are fixed to the example's,
    and the ONNX runtime rejects other shapes with its own error. NaN or infinite values are
    not rejected.

    """
    path, dim = _check_arguments(model, example, path, batch_dim, opset_version, input_name, check)
    _require("onnxscript")
    _require("onnx")
    if check:
        _require("onnxruntime")

    flags = [m.training for m in model.modules()]
    model.eval()
    try:
        batch = torch.export.Dim("batch")
        with torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes=({dim: batch},))
            program = program.run_decompositions(_decompositions())
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                input_names=[input_name],
                opset_version=opset_version,
                verbose=False,
            )
        if onnx_program is None:  # torch.onnx.export returns the program with dynamo=True
            raise RuntimeError("torch.onnx.export returned no ONNX program")
        onnx_program.save(str(path))
        if check:
            bigger = torch.cat([example, example.narrow(dim, 0, 1)], dim)
            worst = _compare(model, path, (example, bigger), input_name)
            if not worst <= CHECK_TOLERANCE:
                raise ValueError(
                    f"check: onnxruntime's outputs differ from the eager model's by {worst:.2e} "
                    f"(mean absolute difference over the mean absolute output; tolerance "
                    f"{CHECK_TOLERANCE:g}); the file {str(path)!r} is not a faithful export"
                )
    finally:
        _set_training(model, flags)
    return path
