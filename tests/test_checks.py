"""One rule for integer settings (issue 15, item 5): a wrong type is a ``TypeError``, a value out
of range a ``ValueError``, each naming the argument."""

from __future__ import annotations

import pytest
from torch import nn

import gac_coding as gac
from gac_coding._checks import nonnegative_int, positive_int


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"padding": "1"}, TypeError, r"padding: expected an int, got str"),
        ({"padding": 1.0}, TypeError, r"padding: expected an int, got float"),
        ({"padding": True}, TypeError, r"padding: expected an int, got bool"),
        ({"padding": -1}, ValueError, r"padding: expected an integer >= 0, got -1"),
        ({"kernel_size": "3"}, TypeError, r"kernel_size: expected an int, got str"),
        ({"kernel_size": 0}, ValueError, r"kernel_size: expected an integer >= 1, got 0"),
        ({"stride": 2.0}, TypeError, r"stride: expected an int, got float"),
        ({"stride": 0}, ValueError, r"stride: expected an integer >= 1, got 0"),
    ],
)
def test_encoder_integer_settings_follow_one_rule(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        gac.GACEncoder(3, 8, T=4, **kwargs)


def test_padding_zero_is_accepted() -> None:
    assert gac.GACEncoder(3, 8, T=4, padding=0).conv.padding == (0, 0)


@pytest.mark.parametrize("value", [0, 1, 7])
def test_the_two_checks_differ_only_at_zero(value: int) -> None:
    assert nonnegative_int("n", value) == value
    if value == 0:
        with pytest.raises(ValueError, match=r"n: expected an integer >= 1, got 0"):
            positive_int("n", value)
    else:
        assert positive_int("n", value) == value


def test_wrap_uses_the_same_rule() -> None:
    backbone = nn.Sequential(gac.LIF(), nn.Flatten(2), nn.Linear(64, 2))
    with pytest.raises(TypeError, match=r"T: expected an int, got str"):
        gac.wrap(backbone, T="4", in_channels=1)
    with pytest.raises(ValueError, match=r"in_channels: expected an integer >= 1, got 0"):
        gac.wrap(backbone, T=4, in_channels=0)
