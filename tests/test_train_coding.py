"""One ``coding`` choice for training (issue 15, item 3; issue 22): a name of
``gac_coding.coding.CODINGS``, ``"gac"``, ``"direct"``, ``"rate"`` or ``"latency"``.

The older pair ``gac`` + ``coding`` (a model flag and an input flag tied by a rule) still works as
a deprecated alias, in ``TrainConfig`` and on the command line (``--no-gac``), and so does the
former name of rate coding, ``"poisson"``; checkpoints written with either resume under the new
name.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest

from gac_coding.cli import build_parser
from gac_coding.cli.train import _coding as train_coding
from gac_coding.train.engine import CODINGS, TrainConfig, saved_coding


def config(**kwargs: object) -> TrainConfig:
    return TrainConfig(model="msresnet_tiny", **kwargs)  # type: ignore[arg-type]


def test_one_tuple_of_codings_and_gac_by_default() -> None:
    assert set(CODINGS) == {"gac", "direct", "rate", "latency"}
    c = config()
    assert c.coding == "gac" and c.uses_gac
    for coding in CODINGS:
        c = config(coding=coding)
        c.validate()
        assert c.uses_gac == (coding == "gac") and c.run_config()["gac"] == c.uses_gac
    with pytest.raises(
        ValueError, match=r"coding: expected one of \['direct', 'rate', 'latency', 'gac'\], got 'morse'"
    ):
        config(coding="morse").validate()


@pytest.mark.parametrize(
    "old, new",
    [
        ({"gac": True}, "gac"),
        ({"gac": False}, "direct"),
        ({"gac": True, "coding": "direct"}, "gac"),
        ({"gac": False, "coding": "direct"}, "direct"),
        ({"gac": False, "coding": "rate"}, "rate"),
        ({"gac": False, "coding": "latency"}, "latency"),
    ],
)
def test_the_old_gac_flag_is_a_deprecated_alias(old: dict, new: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = config(**old)
    assert [str(w.message).split(" is deprecated")[0] for w in caught] == ["TrainConfig(gac=...)"]
    assert caught[0].category is DeprecationWarning and caught[0].filename == __file__
    assert c.coding == new and c.gac is None
    # the flag was consumed: changing the coding later is not overruled by it
    assert dataclasses.replace(c, coding="rate").coding == "rate"


def test_poisson_is_the_deprecated_name_of_rate() -> None:
    with pytest.warns(DeprecationWarning, match=r"coding='poisson' is deprecated .* use coding='rate'"):
        c = config(coding="poisson")
    assert c.coding == "rate"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = config(gac=False, coding="poisson")
    assert c.coding == "rate" and len(caught) == 2  # one warning per deprecated spelling


def test_the_old_contradiction_is_still_an_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="Poisson rate coding feeds spikes to a model without GAC"):
            config(gac=True, coding="rate")
        with pytest.raises(ValueError, match="latency coding feeds spikes to a model without GAC"):
            config(gac=True, coding="latency")
        with pytest.raises(TypeError, match="gac: expected a bool, got str"):
            config(gac="yes")


def test_checkpoints_written_before_coding_had_gac_resume_as_gac() -> None:
    assert saved_coding({"gac": True, "coding": "direct"}) == "gac"
    assert saved_coding({"gac": False, "coding": "direct"}) == "direct"
    assert saved_coding({"gac": False, "coding": "poisson"}) == "rate"  # the former name
    assert saved_coding({"gac": False, "coding": "rate"}) == "rate"
    assert saved_coding({"gac": True, "coding": "gac"}) == "gac"


def _args(*options: str):
    common = ["train", "--model", "msresnet_tiny", "--dataset", "digits", "--T", "2", "--epochs", "1",
              "--batch-size", "8", "--lr", "0.1", "--out", "run"]  # fmt: skip
    return build_parser().parse_args([*common, *options])


def test_command_line_coding_and_the_deprecated_no_gac(capsys) -> None:
    assert train_coding(_args()) == "gac"
    for name in ("gac", "direct", "rate", "latency"):
        assert train_coding(_args("--coding", name)) == name
    assert capsys.readouterr().err == ""
    assert train_coding(_args("--coding", "poisson")) == "rate"
    assert "--coding poisson is deprecated; use --coding rate" in capsys.readouterr().err
    assert train_coding(_args("--no-gac")) == "direct"
    assert "--no-gac is deprecated; use --coding direct" in capsys.readouterr().err
    assert train_coding(_args("--no-gac", "--coding", "direct")) == "direct"
    with pytest.raises(ValueError, match="--no-gac: means --coding direct, which contradicts --coding gac"):
        train_coding(_args("--no-gac", "--coding", "gac"))
