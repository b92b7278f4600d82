"""One rule for integer, real, flag and choice settings (issue 15, item 5; issue 22): a wrong type is
a ``TypeError``, a value out of range a ``ValueError``, each naming the argument."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import gac_coding as gac
from gac_coding._checks import boolean, choice, integer, nonnegative_int, positive_int, probability, real


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


# ------------------------------------------------------------------ the other checks (issue 22)


@given(value=st.integers(-50, 50), low=st.integers(-10, 10), span=st.integers(0, 20))
def test_integer_accepts_exactly_the_range(value: int, low: int, span: int) -> None:
    high = low + span
    if low <= value <= high:
        assert integer("n", value, low, high) == value
    else:
        with pytest.raises(ValueError, match=rf"n: expected an integer in \[{low}, {high}\], got {value}"):
            integer("n", value, low, high)


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_real_in_the_unit_interval_open_at_the_top(value: float) -> None:
    inside = 0.0 <= value < 1.0  # False for NaN
    if inside:
        assert real("momentum", value, 0, 1, high_open=True) == value
    else:
        with pytest.raises(ValueError, match=r"momentum: expected a value in \[0, 1\), got"):
            real("momentum", value, 0, 1, high_open=True)


@pytest.mark.parametrize("bad", ["1", None, True, [1]])
def test_wrong_types_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError, match="x: expected an int, got"):
        integer("x", bad)
    with pytest.raises(TypeError, match="x: expected a real number, got"):
        real("x", bad)
    with pytest.raises(TypeError, match="x: expected a real number, got"):
        probability("x", bad)


def test_none_flags_and_choices() -> None:
    assert integer("levels", None, 2, allow_none=True) is None
    with pytest.raises(TypeError, match="levels: expected an int or None, got float"):
        integer("levels", 2.0, 2, allow_none=True)
    with pytest.raises(ValueError, match="levels: expected an integer >= 2 or None, got 1"):
        integer("levels", 1, 2, allow_none=True)
    assert boolean("flip", False) is False
    with pytest.raises(TypeError, match="flip: expected a bool, got int"):
        boolean("flip", 0)
    assert choice("kind", "mlp", ("mlp", "conv")) == "mlp"
    for bad in ("gru", None, ["mlp"]):  # an unhashable value is refused like any other
        with pytest.raises(ValueError, match=r"kind: expected one of \['mlp', 'conv'\], got"):
            choice("kind", bad, {"mlp": 1, "conv": 2})
    assert real("x", float("inf"), finite=False) == float("inf")
    with pytest.raises(ValueError, match="x: expected a number, got nan"):
        real("x", float("nan"), finite=False)
