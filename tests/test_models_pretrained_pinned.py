"""What the models-pretrained mutation run found unpinned in Hub-style folders and their card.

The whole text of ``config.json`` and of the model card, each written out here by hand; the
weights' safetensors metadata; ``config.json`` of models that lack the attributes the paper's
models have (no ``T``, ``num_classes``, ``coding``, ``recipe``, ``in_channels`` or encoder: the
recorded arguments and the registered ``ModelInfo`` fill them in) and of one whose own attributes
differ from its recorded arguments (its own win); the checks of a config read back, value by value,
and every message of the module in full; how a new folder is staged (beside it, hidden, with the
permissions of a plain ``mkdir``) and that saving leaves the global random stream alone;
``map_location``; the Hub calls' arguments and their defaults. No network: the Hub calls are
replaced at ``huggingface_hub``'s boundary, as in ``test_pretrained.py``.
"""

from __future__ import annotations

import json
import locale
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from gac_coding import __version__
from gac_coding.models import (
    ModelInfo,
    PretrainedConfigError,
    create_model,
    from_pretrained,
    list_models,
    push_to_hub,
    register_model,
    save_pretrained,
)
from gac_coding.models import pretrained as pretrained_module
from gac_coding.models._card import model_card
from gac_coding.models.pretrained import PretrainedMixin, pretrained_config
from gac_coding.models.registry import _REGISTRY

BARE, OWN = "test_pinned_bare", "test_pinned_own"


class _Bare(nn.Module):
    """A model with none of the attributes the paper's models have, and no floating tensor."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.register_buffer("steps", torch.arange(3))


def _bare(
    num_classes: int | None = None,
    T: int | None = None,
    coding: str = "gac",
    in_channels: int | None = None,
    label: str = "bare",
    extra: object = None,
) -> nn.Module:
    if len(label) > 8:
        raise ValueError(f"label:  at most 8 characters,\n   got {len(label)}")
    return _Bare(label)


class _Own(nn.Module):
    """A model whose own settings differ from the arguments that built it."""

    def __init__(self) -> None:
        super().__init__()
        self.T, self.num_classes, self.coding, self.recipe, self.in_channels = 7, 9, "latency", "cifar", 4
        self.fc = nn.Linear(4, 9)


def _own(num_classes: int | None = None, T: int | None = None, coding: str = "gac") -> nn.Module:
    if T is not None and T > 5:
        raise ValueError(f"T: at most 5, got {T}")
    return _Own()


@pytest.fixture
def registered():
    """The two builders above, registered for one test (the registry is global)."""
    bare_info = ModelInfo(in_channels=2, input_size=(4, 6), recipe="imagenet")
    register_model(BARE, _bare, info=bare_info, overwrite=True)
    register_model(OWN, _own, info=ModelInfo(in_channels=2, recipe="imagenet"), overwrite=True)
    try:
        yield
    finally:
        _REGISTRY.pop(BARE, None)
        _REGISTRY.pop(OWN, None)


def _tiny(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return create_model("msresnet_tiny", T=2, in_channels=1, **kwargs).eval()


def _message(exc_type: type[BaseException], call, *args, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        call(*args, **kwargs)
    return str(info.value)


# ----------------------------------------------------------------------------------- config.json
def test_config_json_is_this_text_and_the_weights_carry_this_metadata(tmp_path: Path) -> None:
    model = _tiny()  # num_classes not given: the model's own 10, not the missing argument
    folder = save_pretrained(model, tmp_path / "m", input_size=(8, 10))
    expected = f"""{{
  "format": "gac-coding-pretrained",
  "format_version": 1,
  "gac_coding_version": "{__version__}",
  "model": "msresnet_tiny",
  "num_classes": 10,
  "T": 2,
  "coding": "gac",
  "kwargs": {{
    "in_channels": 1
  }},
  "in_channels": 1,
  "input_size": [
    8,
    10
  ],
  "input_kind": "image",
  "recipe": "cifar",
  "temporal_attention": "mlp",
  "dtype": "float32"
}}
"""
    assert (folder / "config.json").read_text(encoding="utf-8") == expected
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"format": "pt", "gac_coding": "gac-coding-pretrained"}


def test_a_model_without_the_usual_attributes_takes_them_from_its_arguments_and_info(registered) -> None:
    common = {"format": "gac-coding-pretrained", "format_version": 1, "gac_coding_version": __version__,
              "model": BARE, "input_size": [4, 6], "input_kind": "image", "recipe": "imagenet",
              "temporal_attention": None, "dtype": "float32"}  # fmt: skip
    # nothing given: null T and classes, the default coding, the registered input channels
    assert pretrained_config(create_model(BARE)) == {
        **common, "num_classes": None, "T": None, "coding": "gac", "kwargs": {}, "in_channels": 2
    }  # fmt: skip
    # all given: the recorded arguments (the model has no attribute to say otherwise)
    model = create_model(BARE, num_classes=4, T=3, coding="direct", in_channels=5, label="b")
    assert pretrained_config(model) == {
        **common, "num_classes": 4, "T": 3, "coding": "direct", "kwargs": {"in_channels": 5, "label": "b"},
        "in_channels": 5,
    }  # fmt: skip


def test_the_models_own_settings_win_over_its_recorded_arguments(registered) -> None:
    config = pretrained_config(create_model(OWN, num_classes=3, T=2, coding="direct"))
    own = {key: config[key] for key in ("T", "num_classes", "coding", "recipe", "in_channels")}
    assert own == {"T": 7, "num_classes": 9, "coding": "latency", "recipe": "cifar", "in_channels": 4}


def test_input_size_is_two_positive_sides(registered) -> None:
    model = create_model(BARE)
    assert pretrained_config(model, input_size=(1, 1))["input_size"] == [1, 1]
    for bad in ((8,), (8, 8, 8), (0, 8), (8, 0)):
        assert _message(ValueError, pretrained_config, model, input_size=bad) == (
            f"input_size: expected (H, W) of positive ints, got {bad!r}"
        )


def test_a_model_with_no_floating_tensor_is_float32_and_mixed_dtypes_are_refused(
    registered, tmp_path: Path
) -> None:
    assert pretrained_config(create_model(BARE))["dtype"] == "float32"
    mixed = _tiny()
    mixed.fc.double()
    assert _message(ValueError, save_pretrained, mixed, tmp_path / "m") == (
        "model: its weights mix dtypes ['torch.float32', 'torch.float64']; convert it to one first"
    )
    assert not (tmp_path / "m").exists()


def test_what_save_pretrained_refuses_is_said_in_full(registered, tmp_path: Path) -> None:
    assert _message(TypeError, save_pretrained, nn.Linear(2, 2), tmp_path / "a") == (
        "model: save_pretrained needs a model built by gac_coding.models.create_model (it records the name "
        "and arguments that rebuild it); got a Linear built otherwise: register its builder with "
        "register_model and build it with create_model"
    )
    assert _message(ValueError, save_pretrained, create_model(BARE, extra=(1, 2)), tmp_path / "b") == (
        "model: the create_model argument extra=(1, 2) cannot be written to config.json (JSON numbers, "
        "strings, booleans, lists and dicts only); build the model without it"
    )
    # a model whose own T (7) its builder refuses: the rebuild fails, naming the config to be written
    folder = tmp_path / "c"
    assert _message(PretrainedConfigError, save_pretrained, create_model(OWN, T=2), folder) == (
        f"{folder / 'config.json'}: create_model({OWN!r}, ...) refuses the recorded arguments: T: at most 5, "
        "got 7; fix config.json or save the model again"
    )
    # weights that the recorded arguments do not rebuild: both files named
    mlp = _tiny()
    mlp.set_timesteps(4)
    message = _message(PretrainedConfigError, save_pretrained, mlp, tmp_path / "d")
    assert message.startswith(f"{tmp_path / 'd' / 'model.safetensors'}: 'encoder.gate."), message
    assert message.endswith(
        "(another T, class or channel count?); config.json does not describe these weights: fix "
        f"{tmp_path / 'd' / 'config.json'} or save the folder again"
    ), message
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_saving_draws_no_random_numbers(tmp_path: Path) -> None:
    # the check that the config rebuilds the weights builds the model on the meta device, which
    # initialises nothing: a run that saves mid-way keeps its random stream
    model = _tiny()
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    save_pretrained(model, tmp_path / "m")
    assert torch.equal(torch.rand(4), expected)


# ------------------------------------------------------------------------------------ the folder
def test_a_new_folder_is_staged_beside_it_hidden_with_mkdirs_mode(tmp_path: Path, monkeypatch) -> None:
    real, parents = pretrained_module.atomic_write, []

    def spy(path, write):
        parents.append(Path(path).parent)
        return real(path, write)

    monkeypatch.setattr(pretrained_module, "atomic_write", spy)
    folder = save_pretrained(_tiny(), tmp_path / "deep" / "er" / "m")  # two missing parents
    assert len(parents) == 3 and len(set(parents)) == 1
    assert parents[0].parent == tmp_path / "deep" / "er" and parents[0].name.startswith(".m.")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["m"]
    os.mkdir(tmp_path / "plain")
    assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_a_file_in_the_way_and_a_vanished_staging_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "f").write_text("mine")
    assert _message(NotADirectoryError, save_pretrained, _tiny(), tmp_path / "f") == (
        f"folder: {tmp_path / 'f'} is a file, expected a folder"
    )
    assert (tmp_path / "f").read_text() == "mine"

    def vanish(path, write):  # the staging folder removed by someone else, then a failure
        shutil.rmtree(Path(path).parent)
        raise OSError("staging gone")

    monkeypatch.setattr(pretrained_module, "atomic_write", vanish)
    # the failure that happened is the one raised, not the clean-up's
    assert _message(OSError, save_pretrained, _tiny(), tmp_path / "m") == "staging gone"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# ---------------------------------------------------------------------------------- reading back
def _bare_folder(tmp_path: Path) -> tuple[Path, dict]:
    model = create_model(BARE, T=3, label="gruen")
    model.steps += 5  # weights of its own, not the builder's
    folder = save_pretrained(model, tmp_path / "bare")
    return folder, json.loads((folder / "config.json").read_text())


def test_a_bare_folder_round_trips_with_null_and_one_valued_settings(registered, tmp_path: Path) -> None:
    folder, good = _bare_folder(tmp_path)
    assert (good["T"], good["num_classes"], good["in_channels"]) == (3, None, 2)
    again = from_pretrained(folder)
    assert type(again) is _Bare and torch.equal(again.steps, torch.arange(5, 8)) and again.label == "gruen"
    (folder / "config.json").write_text(json.dumps(dict(good, T=1, num_classes=1)))
    assert torch.equal(from_pretrained(folder).steps, torch.arange(5, 8))


def test_a_hand_edited_utf8_config_is_read_as_utf8_whatever_the_locale(registered, tmp_path: Path) -> None:
    folder, good = _bare_folder(tmp_path)
    text = json.dumps(dict(good, kwargs={"label": "grün"}), ensure_ascii=False)
    (folder / "config.json").write_bytes(text.encode("utf-8"))
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")  # an ASCII locale (Python's default encoding follows it)
    try:
        again = from_pretrained(folder)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    assert again.label == "grün"


def test_a_config_read_back_is_checked_value_by_value(registered, tmp_path: Path) -> None:
    folder, good = _bare_folder(tmp_path)
    path = folder / "config.json"

    def refused(config: object) -> str:
        path.write_text(json.dumps(config))
        return _message(PretrainedConfigError, from_pretrained, folder)

    not_ours = f'{path}: not a gac-coding config (expected "format": "gac-coding-pretrained")'
    assert refused([good]) == not_ours
    assert refused(dict(good, format="other")) == not_ours
    assert refused(dict(good, format_version=2)) == f"{path}: format_version 2 is not 1; upgrade gac-coding"
    assert refused(dict(good, model=3)) == f"{path}: 'model' must be a str, got 3"
    assert refused(dict(good, kwargs=[])) == f"{path}: 'kwargs' must be a dict, got []"
    for key in ("num_classes", "T"):
        for value in (0, -1, True, 2.5, "2"):
            assert refused(dict(good, **{key: value})) == (
                f"{path}: {key!r} must be an integer >= 1 or null, got {value!r}"
            )
    for dtype in ("float99", "nn"):
        assert refused(dict(good, dtype=dtype)) == f"{path}: 'dtype' {dtype!r} is not a torch dtype"
    assert refused(dict(good, model="no_such_model")) == (
        f"{path}: model 'no_such_model' is not registered (known: {', '.join(list_models())}); "
        "register its builder with gac_coding.models.register_model before loading, or fix 'model'"
    )
    assert refused(dict(good, kwargs={"label": "much too long"})) == (
        f"{path}: create_model({BARE!r}, ...) refuses the recorded arguments: label: at most 8 characters, "
        "got 13; fix config.json or save the model again"
    )


def test_weights_that_differ_by_one_key_are_named(tmp_path: Path) -> None:
    folder = save_pretrained(_tiny(num_classes=3), tmp_path / "m")
    weights, config = folder / "model.safetensors", folder / "config.json"
    state = load_file(str(weights))
    fix = f"config.json does not describe these weights: fix {config} or save the folder again"
    save_file({k: v for k, v in state.items() if k != "fc.bias"}, str(weights))
    assert _message(PretrainedConfigError, from_pretrained, folder) == (
        f"{weights}: its keys differ from those of the model that config.json builds (missing 'fc.bias'; "
        f"1 missing, 0 unexpected); {fix}"
    )
    save_file({**state, "zz.extra": torch.zeros(1)}, str(weights))
    assert _message(PretrainedConfigError, from_pretrained, folder) == (
        f"{weights}: its keys differ from those of the model that config.json builds (unexpected "
        f"'zz.extra'; 0 missing, 1 unexpected); {fix}"
    )
    weights.unlink()
    assert _message(FileNotFoundError, from_pretrained, folder) == (
        f"{weights}: missing; the folder has config.json but no weights: write it again with "
        "model.save_pretrained"
    )


def test_map_location_and_what_is_not_a_folder(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    folder = save_pretrained(_tiny(), tmp_path / "m")
    on_meta = from_pretrained(folder, map_location="meta")
    assert {t.device.type for t in on_meta.state_dict().values()} == {"meta"}
    assert _message(TypeError, from_pretrained, 3) == (
        "folder_or_repo_id: expected a folder or a repository id, got int"
    )
    file = folder / "config.json"
    assert _message(NotADirectoryError, from_pretrained, file) == (
        f"{file}: is a file; from_pretrained takes the folder that holds config.json"
    )

    def no_hub(**kwargs):
        raise AssertionError(f"the Hub was asked for {kwargs}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.chdir(tmp_path)
    for name in ("nosuchname", "no such/name"):  # no folder, and not an 'owner/name' id
        assert _message(FileNotFoundError, from_pretrained, name) == (
            f"{name}: no such folder (nor a Hub repository id 'owner/name')"
        )


# ----------------------------------------------------------------------------------------- the Hub
def test_push_to_hub_passes_its_arguments_and_defaults(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub

    calls: list[tuple] = []

    def create_repo(self, *, repo_id, private, exist_ok):
        calls.append(("create_repo", self.token, repo_id, private, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, commit_message):
        calls.append(("upload_folder", repo_id, commit_message, sorted(os.listdir(folder_path))))
        return "https://huggingface.co/someone/tiny/commit/1"  # no commit_url attribute: its text

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    model = _tiny()
    url = push_to_hub(model, "someone/tiny", token="hf_test")
    assert url == "https://huggingface.co/someone/tiny/commit/1"
    files = ["README.md", "config.json", "model.safetensors"]
    assert calls == [
        ("create_repo", "hf_test", "someone/tiny", False, True),
        ("upload_folder", "someone/tiny", "Upload gac-coding model", files),
    ]
    calls.clear()
    model.push_to_hub("someone/tiny", private=True, commit_message="second")
    assert [c[1:] for c in calls] == [(None, "someone/tiny", True, True), ("someone/tiny", "second", files)]
    calls.clear()
    for bad in ("tiny", "a b/c", "a/b/c", 5):
        assert _message(ValueError, push_to_hub, model, bad) == f"repo_id: expected 'owner/name', got {bad!r}"
    assert calls == []


# -------------------------------------------------------------------------------------- the card
_CONFIG = {"gac_coding_version": "9.9.9", "model": "mine", "coding": "rate", "T": 3, "num_classes": 4,
           "in_channels": 2, "input_size": [5, 7], "input_kind": "events", "recipe": "imagenet",
           "temporal_attention": None, "kwargs": {"in_channels": 2, "width": 0.5},
           "dtype": "float64"}  # fmt: skip

_HEAD = """---
library_name: gac-coding
tags:
- spiking-neural-networks
- gated-attention-coding
- pytorch
---

"""

_USE = """## Use

```python
from gac_coding.models import from_pretrained

model = from_pretrained("path/to/this/folder")  # or the Hub repository id
logits = model(images)  # [T, B, classes]; predict with logits.mean(0).argmax(-1)
```
"""


class _Report:
    """An energy report as the card reads one: ``totals`` and its text."""

    totals = {"T": 3, "ignored": 1.0, "energy_executed_mj": 2.0, "samples": 256, "energy_mj": 1.5,
              "energy_mj_per_sample": 0.0012345678}  # fmt: skip

    def __str__(self) -> str:
        return "  layer  synops\n  conv1  12\n\n"


def test_the_card_is_this_text() -> None:
    card = model_card(
        _CONFIG,
        metrics={"val_acc": 0.123456789, "epochs": 2},
        energy=_Report(),
        description="  Weights from a test.\n",
    )
    expected = (
        _HEAD
        + """# mine, rate coding, T=3

A spiking neural network saved by gac-coding 9.9.9 (`save_pretrained`): `model.safetensors` holds the \
weights, `config.json` what rebuilds the model.

Weights from a test.

## Settings

| setting | value |
|---|---|
| model | `mine` |
| input coding | rate |
| time steps T | 3 |
| classes | 4 |
| input | 2 x 5 x 7 (events) |
| recipe | imagenet |
| other create_model arguments | `in_channels=2`, `width=0.5` |
| weights | float64, safetensors |

"""
        + _USE
        + """
## Metrics

| metric | value |
|---|---|
| val_acc | 0.123457 |
| epochs | 2 |

## Energy

| quantity | value |
|---|---|
| energy per sample, mJ (the paper's accounting) | 0.00123457 |
| energy of all measured samples, mJ | 1.5 |
| energy as executed, mJ | 2 |
| samples measured | 256 |
| time steps | 3 |

```text
  layer  synops
  conv1  12
```
"""
    )
    assert card == expected


def test_a_card_without_metrics_or_arguments_and_an_energy_text() -> None:
    config = dict(_CONFIG, kwargs={}, temporal_attention="conv", recipe=None, coding="gac")
    settings = """## Settings

| setting | value |
|---|---|
| model | `mine` |
| input coding | gac |
| time steps T | 3 |
| classes | 4 |
| input | 2 x 5 x 7 (events) |
| temporal attention | conv |
| weights | float64, safetensors |

"""
    intro = (
        "# mine, gac coding, T=3\n\nA spiking neural network saved by gac-coding 9.9.9 (`save_pretrained`): "
        "`model.safetensors` holds the weights, `config.json` what rebuilds the model.\n\n"
    )
    assert model_card(config, metrics={}, description="") == _HEAD + intro + settings + _USE
    energy = "## Energy\n\n```text\n  total 1.5 mJ\n```\n"
    assert model_card(config, energy="  total 1.5 mJ \n") == _HEAD + intro + settings + _USE + "\n" + energy
    assert _message(TypeError, model_card, config, metrics=[("val_acc", 1.0)]) == (
        "metrics: expected a mapping of names to values, got list"
    )


def test_the_mixin_refuses_what_is_not_a_module() -> None:
    for call in (lambda m: m.save_pretrained("nowhere"), lambda m: m.push_to_hub("someone/tiny")):
        assert _message(TypeError, call, PretrainedMixin()) == "PretrainedMixin: mix it into an nn.Module"
