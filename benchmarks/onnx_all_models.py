"""Every registered model through the plain ``torch.onnx.export(..., dynamo=True)``, in onnxruntime.

    python benchmarks/onnx_all_models.py            # every model of list_models()
    python benchmarks/onnx_all_models.py vgg_tiny   # some of them

For each model: build it untrained (``T=2``, 4 classes, its input channels, every LIF's threshold
lowered to 0.25 and its BatchNorm statistics calibrated on a random batch, so that the deep layers
fire and the logits depend on the input), export it with a dynamic batch
(the call a user writes, nothing from gac_coding), then run the file in onnxruntime on a batch of
another size and compare with eager (float32). Prints one line per model: the input, the export
time, the largest absolute difference, ``to_onnx``'s measure (mean absolute difference over the
mean absolute output) and, to tell a faithful translation from float32 rounding, the largest
difference between eager and the exported program with the neuron operators decomposed, both run
by PyTorch in float64. onnxruntime's float32 convolutions round differently from PyTorch's; in a
deep untrained model a membrane within that rounding of its threshold can flip a spike, and the
flip propagates. The input is small (16x16; 32x32 for the ImageNet models, whose stem and stages
downsample 32 times) to keep the CPU time short; the file fixes the spatial size to the example's.
tests/test_onnx_plain_export.py tests a representative set.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

import gac_coding as gac
from gac_coding.energy import calibrate_batchnorm
from gac_coding.models import create_model, list_models, model_info
from gac_coding.ops import LIFParams


def _input(name: str, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, int]:
    info = model_info(name)
    size = 32 if "imagenet" in name else 16
    if info.input_kind == "events":  # time-major frames [T, B, C, H, W]
        return torch.rand(2, batch, info.in_channels, size, size, generator=generator) * 3, 1
    return torch.rand(batch, info.in_channels, size, size, generator=generator) * 3, 0


def check(name: str, folder: Path) -> str:
    import onnxruntime

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the weights
    model = create_model(name, num_classes=4, T=2, in_channels=model_info(name).in_channels)
    for module in model.modules():  # untrained: a lower threshold makes the deep layers fire
        if isinstance(module, gac.LIF):
            module.params = LIFParams(0.5, 0.25)
    calibrate_batchnorm(model, _input(name, 4, g)[0])
    model.eval()
    example, dim = _input(name, 3, g)
    path = folder / f"{name}.onnx"
    start = time.perf_counter()
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=True,
        input_names=["x"],
        dynamic_shapes=({dim: torch.export.Dim("batch")},),
        verbose=False,
    )
    seconds = time.perf_counter() - start
    x, _ = _input(name, 5, g)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    with torch.no_grad():
        expected = model(x)
    diff = float((got - expected).abs().max())
    relative = float((got - expected).abs().mean() / expected.abs().mean())
    varies = not torch.allclose(expected[:, 0], expected[:, 1])  # the logits depend on the input
    return (
        f"{name:22s} input {tuple(x.shape)!s:22s} export {seconds:6.1f} s  "
        f"max |onnxruntime - eager| {diff:.2e}  relative mean {relative:.2e}  "
        f"float64 decomposed vs eager {_float64_gap(model, example, x, dim):.1e}  "
        f"samples differ {'yes' if varies else 'NO'}"
    )


def _float64_gap(model: torch.nn.Module, example: torch.Tensor, x: torch.Tensor, dim: int) -> float:
    from torch._decomp import decomposition_table

    model = model.double()
    ops = (torch.ops.gac_coding.lif.default, torch.ops.gac_coding.gated_lif.default)
    with torch.no_grad():
        program = torch.export.export(
            model, (example.double(),), dynamic_shapes=({dim: torch.export.Dim("batch")},)
        ).run_decompositions({op: decomposition_table[op] for op in ops})
        gap = (program.module()(x.double()) - model(x.double())).abs().max()
    model.float()
    return float(gap)


def main(names: list[str]) -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list_models():
            print(check(name, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
