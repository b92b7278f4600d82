"""``gac_coding.io``: the run-settings format that training writes and every reader shares.

A run records its settings twice, in ``last.pt`` (Python values under ``"config"``) and in
``model.safetensors`` (strings); both must read back as the same typed settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gac_coding.io import (
    CheckpointError,
    describe_settings,
    read_safetensors,
    read_settings,
    recorded_input_size,
    save_safetensors,
    settings_metadata,
)

# the "config" of a last.pt as the training loop writes it (TrainConfig.run_config() + data)
RUN_CONFIG = {
    "model": "msresnet_tiny", "dataset": "nmnist", "data_dir": "/data/events", "T": 3, "epochs": 2,
    "coding": "gac", "gac": True, "backend": "auto", "model_kwargs": {"temporal_attention": "conv"},
    "events": {"size": 16, "flip": True}, "num_classes": 10, "in_channels": 2, "image_size": 16,
    "input_size": [16, 16], "world_size": 1, "backend_used": "eager", "lr": 0.1,
}  # fmt: skip


def test_both_files_of_a_run_read_back_as_the_same_settings(tmp_path: Path) -> None:
    expected = {
        "model": "msresnet_tiny", "T": 3, "num_classes": 10, "in_channels": 2, "gac": True,
        "temporal_attention": "conv", "dataset": "nmnist", "data_dir": "/data/events",
        "input_size": (16, 16), "image_size": 16, "coding": "gac", "events": {"size": 16, "flip": True},
    }  # fmt: skip
    assert read_settings("last.pt", RUN_CONFIG) == expected
    metadata = settings_metadata(RUN_CONFIG, epoch=2)
    assert all(isinstance(v, str) for v in metadata.values()) and metadata["epoch"] == "2"
    path = save_safetensors({"w": torch.ones(2)}, tmp_path / "model.safetensors", metadata)
    tensors, stored = read_safetensors(path)
    assert torch.equal(tensors["w"], torch.ones(2)) and stored == metadata
    from_metadata = read_settings(path, stored)
    assert from_metadata == {k: v for k, v in expected.items() if k != "image_size"}  # not in metadata
    # a run without data folder, events or temporal attention records none of them
    plain = dict(RUN_CONFIG, data_dir=None, events={}, model_kwargs={}, dataset="digits", in_channels=1)
    assert {"data_dir", "events", "temporal_attention"}.isdisjoint(settings_metadata(plain, epoch=1))


def test_settings_are_typed_and_checked() -> None:
    assert read_settings("m.safetensors", {"gac": "False", "coding": "direct", "T": "4"}) == {
        "T": 4, "gac": False, "coding": "direct"}  # fmt: skip
    # files from before "coding" named the GAC model: gac=True with coding="direct" reads as gac
    assert read_settings("old.pt", {"gac": True, "coding": "direct"})["coding"] == "gac"
    choices = {"temporal_attention": ("mlp", "conv")}
    refused = r"recorded temporal_attention 'lstm' is not one of \['mlp', 'conv'\]"
    with pytest.raises(CheckpointError, match=refused):
        read_settings("m.pt", {"temporal_attention": "lstm"}, choices=choices)
    for record, fragment in (
        ({"input_size": "[8]"}, r"recorded input_size '\[8\]' is not \[H, W\]"),
        ({"events": "[1]"}, "recorded events '.1.' is not a dict of options"),
        ({"input_size": "{"}, "recorded input_size '{' is not valid JSON"),
        ({"num_classes": 0}, "recorded num_classes 0 is not an integer >= 1"),
        ({"temporal_attention": 3}, "recorded temporal_attention 3 is not a name"),
    ):
        with pytest.raises(CheckpointError, match=fragment):
            read_settings("m.safetensors", record)


def test_recorded_input_size_and_the_description() -> None:
    assert recorded_input_size({"input_size": (8, 6), "image_size": 224}) == (8, 6)
    assert recorded_input_size({"image_size": 32}) == (32, 32)
    assert recorded_input_size({"dataset": "digits"}) is None  # the data set's size is train's
    assert describe_settings(read_settings("last.pt", RUN_CONFIG)) == (
        "a msresnet_tiny run (T=3, 10 classes, 2 input channels, GAC encoder, conv temporal attention)"
    )
