"""Out of eager mode: torch.compile, torch.export and ONNX give eager's numbers, or a clear error.

Also: the encoder's record of the last call (spikes, gate) stays out of pickles and deep copies.
"""

from __future__ import annotations

import copy
import io

import torch

import gac_coding as gac
from gac_coding.models import create_model


def _saved_bytes(module: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module, buf)
    return buf.getbuffer().nbytes


def test_record_stays_out_of_whole_model_saves_and_deep_copies() -> None:
    model = create_model("msresnet_tiny", num_classes=10, T=4, in_channels=1)
    fresh = _saved_bytes(model)
    model(torch.rand(8, 1, 16, 16))
    enc = model.encoder
    assert enc.last_spikes is not None and enc.last_gate is not None  # recorded for inspection
    # what saving the record would add: spikes and gate [T, B, C, H, W] float32, plus TA [T, B]
    record_bytes = sum(t.numel() * t.element_size() for t in enc._last)
    assert record_bytes > 200_000
    after = _saved_bytes(model)
    assert abs(after - fresh) < 4096, (fresh, after, record_bytes)
    # the live model keeps its record; a deep copy and a reloaded save start without one
    assert enc.last_spikes is not None
    twin = copy.deepcopy(model)
    assert twin.encoder.last_spikes is None and twin.encoder.last_gate is None
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded.encoder.last_spikes is None
    # ... and both record again on their next call, with the same values as the original
    x = torch.rand(2, 1, 16, 16)
    model.eval(), twin.eval(), loaded.eval()
    for other in (twin, loaded):
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)
        assert torch.equal(other.encoder.last_spikes, model.encoder.last_spikes)


def test_record_off_and_on_for_a_bare_encoder_deep_copy() -> None:
    enc = gac.GACEncoder(1, 4, T=3)
    enc(torch.rand(2, 1, 6, 6))
    assert copy.deepcopy(enc).last_spikes is None
    assert enc.last_spikes is not None and enc.last_spikes.shape == (3, 2, 4, 6, 6)
