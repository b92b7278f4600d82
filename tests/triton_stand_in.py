"""Stand-ins for compiled Triton kernels, for the tests of the host code that launches them.

The backends keep their loaded kernels in a module attribute ``_kernels`` (a module whose
``_INTERPRETED`` says whether Triton's CPU interpreter built them). :func:`record_launches` puts a
:class:`LaunchRecording` there: each kernel records every launch as a :class:`Launch` (its name,
grid, positional arguments, keyword meta-parameters and whether the interpreter was switched on
during the call) and may run an ``effect`` on its arguments, to write outputs the way the real
kernel would. ``torch.cuda.device`` is replaced by a context manager that records the device
entered, so a compiled launch can be followed on a machine without CUDA.

:func:`same_args` and :func:`same_meta` compare what was launched exactly: tensors by identity,
everything else by type and value (``1`` is not ``1.0``, ``True`` is not ``1``).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import pytest
import torch
import triton


class Launch(NamedTuple):
    name: str
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    meta: dict[str, Any]
    interpreted: bool


class _StandInKernel:
    def __init__(self, name: str, recording: LaunchRecording) -> None:
        self.name, self.recording = name, recording

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        def launch(*args: Any, **meta: Any) -> None:
            rec = self.recording
            rec.calls.append(Launch(self.name, grid, args, meta, bool(triton.knobs.runtime.interpret)))
            if self.name in rec.effect:
                rec.effect[self.name](*args)

        return launch


class LaunchRecording:
    """The kernels ``names`` as stand-ins; ``calls`` their launches in order, ``effect`` maps a
    kernel's name to a function run on each launch's arguments, ``entered`` the CUDA devices the
    launches entered."""

    def __init__(self, names: Sequence[str], interpreted: bool = False) -> None:
        self.calls: list[Launch] = []
        self.effect: dict[str, Callable[..., None]] = {}
        self.entered: list[torch.device] = []
        self.kernels = types.SimpleNamespace(
            _INTERPRETED=interpreted, **{n: _StandInKernel(n, self) for n in names}
        )


def record_launches(
    monkeypatch: pytest.MonkeyPatch, module: object, names: Sequence[str], *, interpreted: bool = False
) -> LaunchRecording:
    """``module._kernels`` replaced by stand-ins for ``names``, and ``torch.cuda.device`` by one
    that records the device entered (both undone with ``monkeypatch``)."""
    rec = LaunchRecording(names, interpreted)
    monkeypatch.setattr(module, "_kernels", rec.kernels)

    @contextlib.contextmanager
    def device(d: torch.device) -> Iterator[None]:
        rec.entered.append(d)
        yield

    monkeypatch.setattr(torch.cuda, "device", device)
    return rec


def same_args(args: tuple[object, ...], expected: tuple[object, ...]) -> None:
    assert len(args) == len(expected)
    for got, want in zip(args, expected, strict=True):
        if isinstance(want, torch.Tensor):
            assert got is want
        else:
            assert type(got) is type(want) and got == want


def same_meta(meta: dict[str, object], expected: dict[str, object]) -> None:
    assert meta.keys() == expected.keys()
    for key, want in expected.items():
        assert type(meta[key]) is type(want) and meta[key] == want, key
