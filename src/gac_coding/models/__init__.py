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

from .._deprecated import moved_names
from .checkpoints import (
    ReferenceCheckpointError,
    export_reference_state_dict,
    load_reference_checkpoint,
    reference_layout,
)
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
from .registry import create_model, list_models, register_model
from .vgg import SpikingVGG, vgg_tiny, vggsnn_dvs

register_model("msresnet18_cifar", msresnet18_cifar)
register_model("msresnet18_imagenet", msresnet18_imagenet)
register_model("msresnet34_imagenet", msresnet34_imagenet)
register_model("msresnet_tiny", msresnet_tiny)
register_model("msresnet18_dvs", msresnet18_dvs)
register_model("vggsnn_dvs", vggsnn_dvs)
register_model("vgg_tiny", vgg_tiny)

__getattr__ = moved_names(__name__)  # DirectEncoder, which moved to gac_coding.coding

__all__ = [
    "MSBlock",
    "MSResNet",
    "ReferenceCheckpointError",
    "SpikingVGG",
    "count_parameters",
    "create_model",
    "export_reference_state_dict",
    "list_models",
    "load_reference_checkpoint",
    "reference_layout",
    "register_model",
]
