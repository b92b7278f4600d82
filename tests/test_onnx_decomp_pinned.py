"""What the export-onnx mutation run found unpinned in the neuron operators' global decompositions
and Inductor's fallback for them (``gac_coding.ops._decomp``, ``gac_coding.ops._inductor``).

``ensure_inductor_fallbacks`` is judged without ``torch.compile``: the test takes the two ops out
of Inductor's tables (restored afterwards), calls it, and reads what ``make_fallback`` leaves
behind (a fallback lowering, the op among the fallbacks and the inputs to realize, the layout
constraint of the op's tag, written out here from torch's tag table), including when Inductor's
own table decomposes the op with ``CI`` set, when a lowering exists already, on a second call and
when Inductor is not loaded. ``_register`` is called again on a table without the entries. The
decompositions' layouts and values at one step (static and sequence, channels-last) are compared
with the fake kernels and the operators themselves.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch._decomp import decomposition_table

import gac_coding  # noqa: F401  (registers the operators)
from gac_coding.ops import _decomp, _inductor

LIF = torch.ops.gac_coding.lif.default
GATED = torch.ops.gac_coding.gated_lif.default
OPS = (LIF, GATED)
LOWERING = "torch._inductor.lowering"


@pytest.fixture
def inductor(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Inductor's lowering module with the neuron ops in none of its tables and ``_DONE`` empty;
    every table as it was afterwards."""
    import torch._inductor.lowering as lowering

    tables = (lowering.lowerings, lowering._maybe_layout_constraints)
    sets = (lowering.fallbacks, lowering.needs_realized_inputs)
    saved = [{op: t[op] for op in OPS if op in t} for t in tables]
    in_sets = [{op for op in OPS if op in s} for s in sets]
    monkeypatch.setattr(_inductor, "_DONE", [])
    for t in tables:
        for op in OPS:
            t.pop(op, None)
    for s in sets:
        for op in OPS:
            s.discard(op)
    try:
        yield lowering
    finally:
        for t, before in zip(tables, saved, strict=True):
            for op in OPS:
                t.pop(op, None)
            t.update(before)
        for s, before in zip(sets, in_sets, strict=True):
            for op in OPS:
                s.discard(op)
            s.update(before)


def _expected_constraint(lowering: Any, tag_name: str) -> Any:
    """The layout constraint Inductor attaches to a custom op's fallback for each layout tag
    (torch's ``tag_to_layout_constraint``, written out)."""
    return {
        "needs_exact_strides": lowering.constrain_to_fake_tensors,
        "needs_contiguous_strides": lowering.require_contiguous_strides,
        "needs_fixed_stride_order": lowering.constrain_to_fx_strides,
        "flexible_layout": None,
    }[tag_name]


_LAYOUT_TAGS = (
    "needs_exact_strides",
    "needs_contiguous_strides",
    "needs_fixed_stride_order",
    "flexible_layout",
)


def _default_constraint(lowering: Any) -> Any:
    from torch._functorch import config

    return _expected_constraint(lowering, config.custom_op_default_layout_constraint)


def _assert_fallback(lowering: Any, op: Any, constraint: Any) -> None:
    assert op in lowering.lowerings, op
    assert getattr(lowering.lowerings[op], "_is_fallback_handler", False), op  # the op's kernel runs
    assert op in lowering.fallbacks and op in lowering.needs_realized_inputs, op
    if constraint is None:
        assert op not in lowering._maybe_layout_constraints, op
    else:
        assert lowering._maybe_layout_constraints[op] is constraint, op


@pytest.mark.parametrize("tag_name", _LAYOUT_TAGS)
def test_fallbacks_take_the_layout_of_the_ops_default_tag(inductor: Any, tag_name: str) -> None:
    """The ops carry no layout tag of their own, so Inductor's default for custom ops applies
    (``torch._functorch.config.custom_op_default_layout_constraint``); each setting of it gives its
    own constraint, as for an op whose fallback Inductor makes by itself."""
    from torch._functorch import config

    for op in OPS:
        assert not {t.name for t in op.tags} & set(_LAYOUT_TAGS), op.tags
    with config.patch(custom_op_default_layout_constraint=tag_name):
        _inductor.ensure_inductor_fallbacks()
    for op in OPS:
        _assert_fallback(inductor, op, _expected_constraint(inductor, tag_name))
    assert _inductor._DONE


def test_fallbacks_are_made_once(inductor: Any) -> None:
    _inductor.ensure_inductor_fallbacks()
    expected = _default_constraint(inductor)
    for op in OPS:
        _assert_fallback(inductor, op, expected)
        del inductor.lowerings[op]
    _inductor.ensure_inductor_fallbacks()  # done already: nothing is registered again
    assert not any(op in inductor.lowerings for op in OPS)


def test_an_existing_lowering_is_kept(inductor: Any) -> None:
    def own_lowering(*args: Any) -> None:
        raise AssertionError("not called here")

    inductor.lowerings[LIF] = own_lowering
    _inductor.ensure_inductor_fallbacks()
    assert inductor.lowerings[LIF] is own_lowering
    assert LIF not in inductor.fallbacks and LIF not in inductor._maybe_layout_constraints
    _assert_fallback(inductor, GATED, _default_constraint(inductor))


def test_fallbacks_override_a_decomposition_and_pass_the_ci_check(
    inductor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``CI`` set, ``make_fallback`` refuses an op that the global table decomposes (as
    ``_decomp`` does for both) unless told not to warn; an op that Inductor's own table
    decomposes needs the override. Both are made here."""
    assert all(op in decomposition_table for op in OPS)
    monkeypatch.setenv("CI", "1")
    for op in OPS:
        monkeypatch.setitem(inductor.decompositions, op, decomposition_table[op])
    _inductor.ensure_inductor_fallbacks()
    for op in OPS:
        _assert_fallback(inductor, op, _default_constraint(inductor))


class _NoImport(importlib.abc.MetaPathFinder):
    """Fails the import of Inductor's lowering module."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == LOWERING:
            raise AssertionError(f"{LOWERING} was imported")
        return None


def test_nothing_happens_while_inductor_is_not_loaded(inductor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, LOWERING)
    monkeypatch.setattr(sys, "meta_path", [_NoImport(), *sys.meta_path])
    _inductor.ensure_inductor_fallbacks()
    assert LOWERING not in sys.modules
    assert not _inductor._DONE  # a later call, with Inductor loaded, still makes them
    assert not any(op in inductor.lowerings for op in OPS)


def test_register_fills_the_global_table_and_keeps_an_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    for op in OPS:
        monkeypatch.delitem(decomposition_table, op)
    keys = set(decomposition_table)
    _decomp._register()
    assert decomposition_table[LIF] is _decomp._lif and decomposition_table[GATED] is _decomp._gated
    assert set(decomposition_table) == keys | set(OPS)

    def own(*args: Any) -> None:
        raise AssertionError("not called here")

    monkeypatch.setitem(decomposition_table, LIF, own)
    _decomp._register()  # a decomposition registered by someone else stays
    assert decomposition_table[LIF] is own and decomposition_table[GATED] is _decomp._gated


# ------------------------------------------------------------------------------------------------
# The global decompositions at one step: layouts and values
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("save", [False, True])
def test_global_decompositions_at_one_step_channels_last(static: bool, save: bool) -> None:
    """A channels-last input with one step (a sequence of ``T = 1``, or a static input run for
    ``steps = 1``): every output keeps the fake kernel's and the operator's layout, and the
    values are the operator's (spikes exactly, the gate to a few ulps)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    g = torch.Generator().manual_seed(11)
    step = (torch.randint(0, 17, (2, 3, 4, 5), generator=g) / 8).contiguous(memory_format=torch.channels_last)
    u = step if static else step.unsqueeze(0)  # [B, C, H, W] for 1 step, or [T=1, B, C, H, W]
    steps = 1 if static else 0
    ta = torch.randn(1, 2, generator=g)
    sca = torch.randn(2, 3, 4, 5, generator=g)  # [B, C, H, W]: the same at every step
    calls = {
        LIF: (u, steps, 0.5, 0.75, 0, False, save),
        GATED: (u, ta, sca, steps, 0.5, 0.75, 0, False, save),
    }
    for op, args in calls.items():
        with FakeTensorMode() as mode:
            kernel = op(*(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))
        table = decomposition_table[op](*args)
        real = op(*args)
        assert len(kernel) == len(table) == len(real)
        for a, b, c in zip(kernel, table, real, strict=True):
            assert (
                (a.shape, a.dtype, a.stride())
                == (b.shape, b.dtype, b.stride())
                == (c.shape, c.dtype, c.stride())
            )
        spikes = 0 if op is LIF else 1
        assert torch.equal(table[spikes], real[spikes]) and 0 < float(real[spikes].mean()) < 1
        eps = torch.finfo(torch.float32).eps  # the gate's sigmoid: a few ulps (see test_ties.py)
        for b, c in zip(table, real, strict=True):
            torch.testing.assert_close(b, c, rtol=4 * eps, atol=0)
