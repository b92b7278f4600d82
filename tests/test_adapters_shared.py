"""A backbone shared by several GACNets stays consistent (issue 15, item 6).

``wrap(backbone, ..., adapt_input_layer=True)`` replaces the input layer inside the backbone
object itself. A second adaptation of a backbone that a live net already drives would change that
net under its feet, so it is refused; a copy of the backbone, or the same code size, is fine.
"""

from __future__ import annotations

import copy
import gc
import warnings

import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac
from gac_coding.adapters import GatedInputWarning

T = 3


class PerFrameConv(nn.Module):
    """Plain torch, ``[T, B, C, H, W]`` in, a convolution on every frame, then a LIF and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.lif = gac.LIF(threshold=0.5)
        self.fc = nn.Linear(4 * 36, 5)

    def forward(self, x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        y = self.conv(x.flatten(0, 1))
        return self.fc(self.lif(y.view(steps, batch, -1)))


def wrap(backbone: nn.Module, **kwargs: object) -> gac.GACNet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GatedInputWarning)
        return gac.wrap(backbone, T=T, in_channels=1, adapt_input_layer=True, **kwargs)  # type: ignore[arg-type]


def test_second_adaptation_of_a_shared_backbone_is_refused_and_the_first_net_keeps_working() -> None:
    torch.manual_seed(0)
    backbone = PerFrameConv()
    first = wrap(backbone, out_channels=4)
    adapted = backbone.conv
    x = torch.rand(2, 1, 6, 6)
    before = first(x)
    with pytest.raises(
        ValueError,
        match=r"already wrapped by a GACNet whose code has 4 channels.*"
        r"'conv' \(Conv2d\) for 6 channels.*copy\.deepcopy\(backbone\)",
    ):
        wrap(backbone, out_channels=6)
    assert backbone.conv is adapted and adapted.in_channels == 4  # nothing was replaced
    assert torch.equal(first(x), before)


def test_a_copy_of_the_backbone_can_be_adapted_again() -> None:
    backbone = PerFrameConv()
    first = wrap(backbone, out_channels=4)
    second = wrap(copy.deepcopy(backbone), out_channels=6)
    assert first.backbone.conv.in_channels == 4 and second.backbone.conv.in_channels == 6
    x = torch.rand(2, 1, 6, 6)
    assert first(x).shape == second(x).shape == (T, 2, 5)


def test_the_same_code_size_shares_the_adapted_layer() -> None:
    backbone = PerFrameConv()
    first = wrap(backbone, out_channels=4)
    second = wrap(backbone, out_channels=4)  # fits already: nothing to replace
    assert first.backbone.conv is second.backbone.conv
    assert second(torch.rand(2, 1, 6, 6)).shape == (T, 2, 5)


def test_a_net_that_no_longer_exists_does_not_hold_the_backbone() -> None:
    backbone = PerFrameConv()
    first = wrap(backbone, out_channels=4)
    del first
    gc.collect()
    second = wrap(backbone, out_channels=6)
    assert second.backbone.conv.in_channels == 6


def test_a_deep_copied_net_guards_its_own_backbone() -> None:
    net = copy.deepcopy(wrap(PerFrameConv(), out_channels=4))
    with pytest.raises(ValueError, match="already wrapped by a GACNet"):
        wrap(net.backbone, out_channels=6)
    plain = PerFrameConv()  # a backbone no net drives: adapted freely
    assert wrap(plain, out_channels=6).backbone.conv.in_channels == 6
