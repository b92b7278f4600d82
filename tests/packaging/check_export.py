"""The export extra alone: a model's spiking backbone goes to NIR and back, the whole model to
ONNX (checked in onnxruntime against eager); no framework needed."""

from __future__ import annotations

import _common as c
import torch

c.from_the_wheel()
c.importable("nir", "safetensors", "onnx", "onnxscript", "onnxruntime")
c.absent("snntorch", "norse", "spikingjelly", "sklearn", "tonic")

import nir  # noqa: E402

from gac_coding.export import to_nir, to_onnx  # noqa: E402
from gac_coding.models import create_model  # noqa: E402

torch.manual_seed(0)
model = create_model("msresnet_tiny", num_classes=10, T=2, in_channels=1).eval()
x = torch.rand(2, 1, 8, 8)
exported = to_nir(model, x)
nir.write("backbone.nir", exported.graph)
again = nir.read("backbone.nir")
assert set(again.nodes) == set(exported.graph.nodes)
assert exported.run(x).shape == (2, 2, 10)
onnx_file = to_onnx(model, x, "model.onnx")  # check=True: onnxruntime against eager, two batch sizes
assert onnx_file.stat().st_size > 0
print(f"export: NIR graph of {len(again.nodes)} nodes written and read back; ONNX checked in onnxruntime")
