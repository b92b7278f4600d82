"""The paper's backbones (GAC-MS-ResNet-18/34, both recipes), a name registry, and loading of the
authors' released checkpoints.

Example:
    >>> import torch
    >>> from gac_coding.models import create_model, list_models
    >>> "msresnet18_cifar" in list_models()
    True
    >>> m = create_model("msresnet_tiny", num_classes=10, T=4, in_channels=1)
    >>> m(torch.rand(3, 1, 8, 8)).shape               # logits [T, B, classes]
    torch.Size([4, 3, 10])
"""

from __future__ import annotations

import dataclasses

from .._deprecated import moved_names
from .msresnet import (
    MSBlock,
    MSResNet,
    count_parameters,
    msresnet18_cifar,
    msresnet18_dvs,
    msresnet18_imagenet,
    msresnet34_imagenet,
    msresnet_tiny,
)
from .pretrained import PretrainedConfigError, from_pretrained, push_to_hub, save_pretrained
from .reference import (
    ReferenceCheckpointError,
    export_reference_state_dict,
    load_reference_checkpoint,
    reference_layout,
)
from .registry import ModelInfo, create_model, list_models, model_info, register_model
from .vgg import SpikingVGG, vgg_tiny, vggsnn_dvs

# what each model is made for: its input, recipe and exports (T and classes: the builders' defaults)
_CIFAR = ModelInfo(input_size=(32, 32), recipe="cifar", exports=("nir", "onnx"))
_IMAGENET = ModelInfo(input_size=(224, 224), recipe="imagenet", exports=("nir", "onnx"))
_EVENTS = ModelInfo(in_channels=2, input_size=(48, 48), input_kind="events", recipe="cifar")
register_model("msresnet18_cifar", msresnet18_cifar, info=_CIFAR)
register_model("msresnet18_imagenet", msresnet18_imagenet, info=_IMAGENET)
register_model("msresnet34_imagenet", msresnet34_imagenet, info=_IMAGENET)
register_model("msresnet_tiny", msresnet_tiny, info=_CIFAR)
register_model("msresnet18_dvs", msresnet18_dvs, info=dataclasses.replace(_EVENTS, exports=("nir", "onnx")))
register_model("vggsnn_dvs", vggsnn_dvs, info=dataclasses.replace(_EVENTS, exports=("onnx",)))
register_model("vgg_tiny", vgg_tiny, info=dataclasses.replace(_EVENTS, exports=("onnx",)))

__getattr__ = moved_names(__name__)  # DirectEncoder, which moved to gac_coding.coding

__all__ = [
    "MSBlock",
    "MSResNet",
    "ModelInfo",
    "ReferenceCheckpointError",
    "PretrainedConfigError",
    "SpikingVGG",
    "count_parameters",
    "create_model",
    "export_reference_state_dict",
    "from_pretrained",
    "list_models",
    "load_reference_checkpoint",
    "model_info",
    "push_to_hub",
    "reference_layout",
    "register_model",
    "save_pretrained",
]
