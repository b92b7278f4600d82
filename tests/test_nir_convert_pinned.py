"""What ``to_nir`` writes and the files of an export, pinned where the whole-graph tests of
test_nir*.py leave them free, found by mutation testing (``make mutation AREA=export-nir-convert``):
the summary's counts and code name, the host's per-image operation counts, the graph's metadata,
the argument checks and their messages, a sequence example input, ``binarize`` on a copy of the
model, a channels-last host, and ``save_nir_export``/``load_host``: the files written (read back
with nir's own reader), ``host.json``'s text, a nested output folder and a failed write.

Each test is checked against the mutants it guards (tests/README.md, the mutation section).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gac_coding as gac

nir = pytest.importorskip("nir")  # the test extra installs it; never skipped under `make test`
from gac_coding.energy import estimate_energy  # noqa: E402
from gac_coding.export import load_host, save_nir_export, to_nir  # noqa: E402
from gac_coding.export.nir.convert import _traced_input  # noqa: E402
from gac_coding.models import create_model  # noqa: E402

T = 2
DT = 1e-3


def _plain(binarize: bool = False) -> nn.Module:
    """A float64 GACNet, 2 channels of 4x4: LIF, Flatten, Affine, LIF, Affine (two of a kind)."""
    torch.manual_seed(0)
    backbone = nn.Sequential(
        gac.LIF(decay=0.25, threshold=0.5),
        nn.Flatten(2),
        nn.Linear(32, 3),
        gac.LIF(decay=0.5),
        nn.Linear(3, 2),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gated input of the first layer (GatedInputWarning)
        return gac.wrap(backbone, T=T, in_channels=2, binarize=binarize).double().eval()


def _image(*shape: int, seed: int = 1) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _tiny(**kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    return create_model("msresnet_tiny", num_classes=3, T=T, in_channels=1, **kwargs).eval()


def _same_graph(read: Any, written: Any) -> None:
    """``read``: ``written`` after a file round trip (nir's reader gives the nodes in another order
    and the integer settings as arrays)."""
    assert sorted(read.nodes) == sorted(written.nodes)
    assert sorted(map(tuple, read.edges)) == sorted(map(tuple, written.edges))
    assert len(read.edges) == len(written.edges)
    for key, node in written.nodes.items():
        other = read.nodes[key]
        assert type(node) is type(other), key
        for field, value in vars(node).items():
            if isinstance(value, (np.ndarray, int, float, tuple, str)):
                np.testing.assert_array_equal(
                    np.asarray(getattr(other, field)), np.asarray(value), err_msg=f"{key}.{field}"
                )


# ------------------------------------------------------------------------------------------------
# The summary and the energy split
# ------------------------------------------------------------------------------------------------


def test_summary_counts_nodes_neurons_and_synapses() -> None:
    exp = to_nir(_plain(), _image(2, 2, 4, 4), dt=DT)
    summary = exp.summary()
    # by hand: the encoder keeps 2 channels of 4x4, so the first LIF has 32 neurons, the second 3;
    # the weights are 32 x 3 and 3 x 2 (biases are not synapses); a chain of 7 nodes has 6 edges
    assert summary == {
        "nodes": {"Affine": 2, "Flatten": 1, "Input": 1, "LIF": 2, "Output": 1},
        "edges": 6,
        "neurons": 32 + 3,
        "synapses": 32 * 3 + 3 * 2,
        "dt": DT,
        "T": T,
        "input_shape": [2, 4, 4],
        "output_shape": [2],
        "code": "gated (graded spikes)",
    }
    assert list(summary["nodes"]) == sorted(summary["nodes"])


def test_summary_names_the_code_sent_to_the_chip() -> None:
    x = _image(2, 2, 4, 4)
    assert to_nir(_plain(), x).summary()["code"] == "gated (graded spikes)"
    assert to_nir(_plain(), x, binarize=True).summary()["code"] == "binary spikes"
    assert to_nir(_plain(binarize=True), x).summary()["code"] == "binary spikes"
    direct = _tiny(coding="direct").double()
    assert to_nir(direct, _image(2, 1, 8, 8)).summary()["code"] == "direct (real-valued U)"


@pytest.mark.parametrize("coding", ["gac", "direct"])
def test_energy_gives_the_host_counts_per_image(coding: str) -> None:
    # three images: the model's own report of its encoder, divided by 3 (a product by the batch
    # size is 9 times too large); the stem's BatchNorm runs once per image (the static stem), one
    # affine MAC per output: 16 channels of 8x8
    model = _tiny(coding=coding).double()
    x = _image(3, 1, 8, 8)
    exp = to_nir(model, x)
    split = exp.energy(x)
    host = estimate_energy(model, x).part("encoder")
    assert set(split) == {
        "host_mac_per_image",
        "host_mac_paper_per_image",
        "host_mac_norm_per_image",
        "chip_synop_per_image",
        "chip_mac_per_image",
    }
    assert split["host_mac_paper_per_image"] == pytest.approx(host["mac_paper"] / 3, rel=1e-12)
    assert split["host_mac_norm_per_image"] == 16 * 8 * 8
    assert host["mac_paper"] > 0
    summary = exp.summary(x)
    for key, value in split.items():
        assert summary[key] == value


# ------------------------------------------------------------------------------------------------
# to_nir: metadata, arguments, the example input, binarize, channels-last
# ------------------------------------------------------------------------------------------------


def test_graph_metadata_names_dt_t_and_the_producer(tmp_path: Path) -> None:
    exp = to_nir(_plain(), _image(1, 2, 4, 4), dt=DT)
    assert exp.graph.metadata == {"dt": DT, "T": T, "producer": "gac-coding"}
    nir.write(tmp_path / "g.nir", exp.graph)
    back = nir.read(tmp_path / "g.nir")
    assert {k: back.metadata[k] for k in ("dt", "T", "producer")} == {
        "dt": DT,
        "T": T,
        "producer": "gac-coding",
    }


def test_argument_messages_name_the_argument_the_expected_and_the_given() -> None:
    x = _image(1, 2, 4, 4)
    with pytest.raises(TypeError, match=r"^model: expected an MSResNet or a GACNet, got str$"):
        to_nir("net", x)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^example_input: expected a torch\.Tensor, got list$"):
        to_nir(_plain(), [x])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^binarize: expected a bool or None, got int$"):
        to_nir(_plain(), x, binarize=1)  # type: ignore[arg-type]
    # the arguments are checked before the model's type: a bad binarize is named for any module
    with pytest.raises(TypeError, match=r"^binarize: expected a bool or None, got str$"):
        to_nir(nn.Linear(2, 2), x, binarize="yes")  # type: ignore[arg-type]
    expected = (
        r"^model: expected an MSResNet \(gac_coding\.models\) or a GACNet \(gac_coding\.wrap\), got Linear$"
    )
    with pytest.raises(TypeError, match=expected):
        to_nir(nn.Linear(2, 2), x)


@pytest.mark.parametrize("shape", [(2, 4, 4), (0, 2, 4, 4), (T, 0, 2, 4, 4), (1, T, 1, 2, 4, 4)])
def test_example_input_of_another_rank_or_no_sample_is_refused(shape: tuple[int, ...]) -> None:
    message = rf"^example_input: expected \[B, C, H, W\] or \[T, B, C, H, W\], got shape {tuple(shape)}$"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        to_nir(_plain(), torch.zeros(shape, dtype=torch.float64))


def test_a_sequence_example_input_gives_the_graph_of_its_images() -> None:
    # [T, B, C, H, W] with one sample: the batch is repeated along dim 1, not along time or channels
    model = _plain()
    x = _image(1, 2, 4, 4)
    seq = x.unsqueeze(0).expand(T, -1, -1, -1, -1).contiguous()
    static, sequence = to_nir(model, x, dt=DT), to_nir(model, seq, dt=DT)
    assert sequence.input_shape == static.input_shape == (2, 4, 4)
    assert sequence.output_shape == static.output_shape == (2,)
    _same_graph(sequence.graph, static.graph)  # the same nodes with the same arrays


def test_traced_input_repeats_the_samples_on_their_own_device() -> None:
    # B = T + 1 samples (documented: a size that cannot be mistaken for T or T * B), cycling over the
    # given ones, on the input's device even under another default device
    x = _image(2, 1, 2, 2)
    with torch.device("meta"):
        y, B = _traced_input(x, 3)
    assert B == 4 and y.device == x.device
    torch.testing.assert_close(y, x[[0, 1, 0, 1]], rtol=0.0, atol=0.0)
    seq = _image(3, 2, 1, 2, 2)
    with torch.device("meta"):
        z, B = _traced_input(seq, 3)
    assert B == 4 and z.device == seq.device
    torch.testing.assert_close(z, seq[:, [0, 1, 0, 1]], rtol=0.0, atol=0.0)


def test_binarize_acts_on_a_copy_and_reaches_a_gacnets_host() -> None:
    model = _tiny().double()
    x = _image(2, 1, 8, 8)
    exp = to_nir(model, x, binarize=True)
    assert exp.host.binarize and not model.encoder.binarize  # the user's model is not edited
    code = exp.host(x)
    assert bool(((code == 0) | (code == 1)).all())
    net = _plain()
    binary = to_nir(net, _image(2, 2, 4, 4), binarize=True)
    assert binary.host.binarize and not net.encoder.binarize
    code = binary.host(_image(2, 2, 4, 4))
    assert bool(((code == 0) | (code == 1)).all())  # the graded code is not
    graded = to_nir(_plain(binarize=True), _image(2, 2, 4, 4), binarize=False)
    assert not graded.host.binarize


def test_a_channels_last_msresnet_gets_a_channels_last_host() -> None:
    model = _tiny(channels_last=True).double()
    x = _image(2, 1, 8, 8)
    exp = to_nir(model, x)
    assert exp.host.channels_last
    assert not to_nir(_tiny(channels_last=False).double(), x).host.channels_last
    torch.testing.assert_close(exp.host(x), model.encoder(x), rtol=0.0, atol=0.0)


def test_an_unsupported_head_neuron_is_named() -> None:
    model = _tiny().double()
    model.head_lif = nn.ReLU()
    with pytest.raises(TypeError, match=r"^'head_lif' \(ReLU\): no NIR mapping"):
        to_nir(model, _image(1, 1, 8, 8))


# ------------------------------------------------------------------------------------------------
# The files: save_nir_export and load_host
# ------------------------------------------------------------------------------------------------


def _config(**extra: Any) -> dict[str, Any]:
    return {"model": "msresnet_tiny", "num_classes": 3, "in_channels": 1, **extra}


@pytest.mark.parametrize("coding", ["gac", "direct"])
def test_files_written_in_a_new_nested_folder_and_read_back(coding: str, tmp_path: Path) -> None:
    model = _tiny(coding=coding, channels_last=coding == "direct")  # float32, as load_host builds it
    x = _image(2, 1, 8, 8).float()
    exp = to_nir(model, x, dt=DT, binarize=True if coding == "gac" else None)
    out = tmp_path / "a" / "b"
    paths = save_nir_export(exp, out, _config())
    assert paths == {
        "graph": out / "backbone.nir",
        "weights": out / "host.safetensors",
        "config": out / "host.json",
    }
    assert sorted(p.name for p in out.iterdir()) == ["backbone.nir", "host.json", "host.safetensors"]
    # the graph, read with nir's own reader
    _same_graph(nir.read(paths["graph"]), exp.graph)
    # host.json: the config and the export's facts, by hand, indented by two spaces
    text = paths["config"].read_text()
    expected = {
        **_config(),
        "dt": DT,
        "T": T,
        "binarize": coding == "gac",
        "direct": coding == "direct",
        "channels_last": coding == "direct",
        "code_shape": [16, 8, 8],
        "output_shape": [3],
    }
    assert json.loads(text) == expected
    assert text.startswith('{\n  "model": "msresnet_tiny",\n  "num_classes": 3,\n')
    assert '\n  "code_shape": [\n    16,\n    8,\n    8\n  ],\n' in text and text.endswith("\n  ]\n}\n")
    # the host rebuilt from the files: the same settings and the same code
    host = load_host(out)
    assert (host.direct, host.binarize, host.channels_last, host.T) == (
        coding == "direct",
        coding == "gac",
        coding == "direct",
        T,
    )
    assert not host.training
    torch.testing.assert_close(host(x), exp.host(x), rtol=0.0, atol=0.0)


def test_a_failed_graph_write_leaves_the_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = to_nir(_plain(), _image(1, 2, 4, 4), dt=DT)
    (tmp_path / "backbone.nir").write_bytes(b"previous")

    def broken(path: Any, graph: Any) -> None:
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        save_nir_export(exp, tmp_path, _config())
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.nir"]
    assert (tmp_path / "backbone.nir").read_bytes() == b"previous"
