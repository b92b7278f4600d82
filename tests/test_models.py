"""MS-ResNet backbones and the model registry (GAC.md §3)."""

from __future__ import annotations

import pytest
import torch

from gac_coding.models import count_parameters, create_model, list_models


def test_registry_lists_the_paper_models_and_tiny() -> None:
    assert {"msresnet18_cifar", "msresnet18_imagenet", "msresnet34_imagenet", "msresnet_tiny"} <= set(
        list_models()
    )


@pytest.mark.parametrize(
    ("name", "num_classes", "T", "paper_millions"),
    [
        ("msresnet18_cifar", 10, 6, 12.63),
        ("msresnet18_cifar", 100, 6, 12.68),
        ("msresnet18_imagenet", 1000, 4, 11.82),
        ("msresnet34_imagenet", 1000, 4, 21.93),
    ],
)
def test_parameter_counts_equal_the_paper(name, num_classes, T, paper_millions) -> None:
    model = create_model(name, num_classes=num_classes, T=T)
    assert abs(count_parameters(model) / 1e6 - paper_millions) <= 0.005


def test_tiny_on_one_channel_digits() -> None:
    model = create_model("msresnet_tiny", num_classes=10, T=4, in_channels=1)
    logits = model(torch.rand(3, 1, 8, 8))
    assert logits.shape == (4, 3, 10)
    logits.mean(0).sum().backward()
    assert model.encoder.conv.weight.grad is not None
