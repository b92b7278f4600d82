"""A membrane exactly at the threshold, through every plain-torch formulation and export path.

The neuron fires when ``h > threshold`` strictly; ``h == threshold`` keeps the membrane. The
backends are tested on such ties in test_backends.py; here the same kind of input goes through the
formulations that replace the operators outside eager mode (:func:`lif_decomposed` with and
without its straight-through terms, :func:`gated_lif_decomposed`, the forward-only table of
:func:`inference_decompositions` and the entries of torch's global decomposition table that the
plain ``torch.onnx.export`` reads), a ``torch.export`` program (with the operators and with them
decomposed) and an ONNX file run by onnxruntime.

Inputs are multiples of 1/8 with decay 0.5 or 1 and threshold 0.5, so every membrane is exact in
float32 as in float64 and the ties are real ties in both. The expected spikes come from an exact
loop over ``fractions.Fraction`` written here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch._decomp import decomposition_table

import gac_coding as gac
from gac_coding import ops
from gac_coding.ops import LIFParams
from gac_coding.ops.functional import gated_lif_decomposed, inference_decompositions, lif_decomposed

THRESHOLD = 0.5

# [T=4, B=2, 4]: sample 0 by hand (membranes h_t), sample 1 the same columns reversed
#   col 0: 0.5 tie, 0.25 + 0.25 = 0.5 tie, 0.375 + 0.25 fires, 0
#   col 1: 0.75 fires, 0.5 tie, 0.25 + 0.25 tie, 0.375 + 0.25 fires
#   col 2: 0.25, 0.375 + 0.125 tie, 0.25, 0.5 + 0.125 fires
#   col 3: 1.0 fires, 0.5 tie, 0.5 + 0.25 fires, 0.25
_COLUMNS = [[0.5, 0.25, 0.375, 0.0], [0.75, 0.5, 0.25, 0.375], [0.25, 0.375, 0.0, 0.5],
            [1.0, 0.5, 0.5, 0.25]]  # fmt: skip
SEQUENCE = torch.tensor(_COLUMNS).T.contiguous().view(4, 1, 4)
SEQUENCE = torch.cat([SEQUENCE, SEQUENCE.flip(-1)], dim=1)
SPIKES_BY_HAND = [[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0]]  # [t][column], sample 0
# the first step as a static input applied at every step, decay 1 (no leak): 0.5 -> tie, 1.0
# fires, tie, fires; 0.75 fires at every step; 0.25 -> 0.25, 0.5 tie, 0.75 fires, 0.25
STATIC = SEQUENCE[0]


def exact_lif(x: Tensor, decay: float, steps: int = 0) -> tuple[list, int]:
    """Spikes ``[T, ...]`` (nested lists) of the LIF on ``x`` in exact rational arithmetic, and
    how many membranes landed exactly on the threshold."""
    flat = x.reshape(x.shape[0] if not steps else 1, -1).tolist()
    T = steps or len(flat)
    thr, d = Fraction(THRESHOLD), Fraction(decay)
    v = [Fraction(0)] * len(flat[0])
    spikes, ties = [], 0
    for t in range(T):
        row = flat[0 if steps else t]
        h = [d * v_i + Fraction(x_i) for v_i, x_i in zip(v, row, strict=True)]
        s = [1 if h_i > thr else 0 for h_i in h]
        ties += sum(h_i == thr for h_i in h)
        v = [h_i * (1 - s_i) for h_i, s_i in zip(h, s, strict=True)]
        spikes.append(s)
    shape = (T, *(x.shape[1:] if not steps else x.shape))
    return torch.tensor(spikes, dtype=torch.float64).view(shape).tolist(), ties


CASES = {  # name -> (input, decay, steps)
    "sequence": (SEQUENCE, 0.5, 0),
    "static": (STATIC, 1.0, 4),
}


def test_the_inputs_hold_ties_and_the_hand_count() -> None:
    spikes, ties = exact_lif(SEQUENCE, 0.5)
    assert [[spikes[t][0][c] for c in range(4)] for t in range(4)] == SPIKES_BY_HAND
    assert ties == 2 * 6
    static, ties = exact_lif(STATIC, 1.0, steps=4)
    assert [[static[t][0][c] for c in (0, 2)] for t in range(4)] == [[0, 0], [1, 0], [0, 1], [1, 0]]
    assert ties == 2 * 3


def _expected(name: str, dtype: torch.dtype) -> Tensor:
    x, decay, steps = CASES[name]
    return torch.tensor(exact_lif(x, decay, steps)[0], dtype=dtype)


# ------------------------------------------------------------------------------------------------
# The formulations
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_lif_and_its_decompositions_do_not_fire_at_the_threshold(name: str, dtype: torch.dtype) -> None:
    x, decay, steps = CASES[name]
    x = x.to(dtype)
    want = _expected(name, dtype)
    p = LIFParams(decay, THRESHOLD)
    assert torch.equal(ops.lif(x, p, steps=steps or None), want)  # the operator itself
    for differentiable in (True, False):
        spikes, h = lif_decomposed(x, steps, p, differentiable=differentiable)
        assert torch.equal(spikes, want), differentiable
        assert bool((h == THRESHOLD).any())  # the ties are in the membrane it returns
    op = torch.ops.gac_coding.lif.default
    # the forward-only table, and torch's global table that the plain ONNX export reads
    for table in (inference_decompositions(), decomposition_table):
        for save in (False, True):
            spikes, _ = table[op](x, steps, decay, THRESHOLD, 0, False, save)
            assert torch.equal(spikes, want), save


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gated_decompositions_do_not_fire_at_the_threshold(name: str, dtype: torch.dtype) -> None:
    x, decay, steps = CASES[name]
    x = x.to(dtype)
    want = _expected(name, dtype)
    T, B = want.shape[:2]
    g = torch.Generator().manual_seed(0)
    ta = torch.randn(T, B, generator=g).to(dtype)
    sca = torch.randn(*want.shape[1:], generator=g).to(dtype)
    gate = torch.sigmoid(ta.view(T, B, 1) * sca)
    p = LIFParams(decay, THRESHOLD)
    out, fired, _ = ops.gated_lif(x, ta, sca, p, static=bool(steps))
    assert torch.equal(fired, want)
    out_d, fired_d, gate_d, _ = gated_lif_decomposed(x, ta, sca, steps, p)
    assert torch.equal(fired_d, want)
    op = torch.ops.gac_coding.gated_lif.default
    out_i, fired_i, gate_i, _ = inference_decompositions()[op](
        x, ta, sca, steps, decay, THRESHOLD, 1, True, False
    )
    assert torch.equal(fired_i, want)
    out_g, fired_g, _, _ = decomposition_table[op](x, ta, sca, steps, decay, THRESHOLD, 1, True, False)
    assert torch.equal(fired_g, want)  # torch's global table (the plain ONNX export)
    eps = torch.finfo(dtype).eps  # torch's sigmoid rounds differently in and out of its loop tail
    for o in (out, out_d, out_i, out_g):
        torch.testing.assert_close(o, gate * want, rtol=4 * eps, atol=0)
        assert bool((o[want == 0] == 0).all())  # a tie passes nothing through the gate


# ------------------------------------------------------------------------------------------------
# Export paths: torch.export (operators kept and decomposed) and ONNX in onnxruntime
# ------------------------------------------------------------------------------------------------


class _Both(nn.Module):
    """``x: [T, B, 1, 1, 4]`` -> the spikes of ``gac.LIF`` on the sequence, and the gated output
    and spikes of its first step taken as a static input for ``T`` steps (gate 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.lif = gac.LIF(decay=0.5, threshold=THRESHOLD)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        first = x[0]
        ta = first.new_zeros(x.shape[0], first.shape[0])  # sigmoid(0) = 0.5: spikes / 2
        out, fired, _ = ops.gated_lif(
            first, ta, torch.ones_like(first), LIFParams(1.0, THRESHOLD), static=True
        )
        return self.lif(x), out, fired


def _check_exported(got: list[Tensor] | tuple[Tensor, ...], dtype: torch.dtype) -> None:
    seq = _expected("sequence", dtype).view(4, 2, 1, 1, 4)
    static = _expected("static", dtype).view(4, 2, 1, 1, 4)
    assert torch.equal(got[0], seq)
    assert torch.equal(got[2], static) and torch.equal(got[1], static * 0.5)


X = SEQUENCE.view(4, 2, 1, 1, 4)


@pytest.mark.parametrize("decomposed", [False, True])
def test_torch_export_programs_do_not_fire_at_the_threshold(decomposed: bool) -> None:
    x = X.double()
    program = torch.export.export(_Both().eval(), (x,))
    if decomposed:
        program = program.run_decompositions(inference_decompositions())
        targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
        assert not any(t.startswith("gac_coding.") for t in targets), targets
    _check_exported(program.module()(x), torch.float64)


def test_onnx_file_does_not_fire_at_the_threshold(tmp_path: Path) -> None:
    import onnxruntime

    from gac_coding.export import to_onnx

    x = X.float()  # exact in float32: multiples of 1/8
    path = to_onnx(_Both(), x, tmp_path / "ties.onnx", check=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _check_exported([torch.from_numpy(a) for a in session.run(None, {"x": x.numpy()})], torch.float32)
