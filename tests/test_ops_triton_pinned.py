"""What the ops-triton-setup mutation area leaves to pin in ``gac_coding.ops._triton``'s host code.

The kernels' numbers are judged by the backend tests (float64 against the slow loops, in Triton's
CPU interpreter here). This file pins what the launches are built from and what only a GPU would
otherwise reach: the block size and number of warps per row length (against a loop written
out), the grid's ceiling division, the gated layout and its refusals, the arithmetic dtypes, the
per-tensor checks and their messages, availability on each kind of device, where the
interpreter setting is read and kept, and both ways a kernel is launched (with a stand-in kernel
that records its grid, arguments and the interpreter switch, and a stand-in CUDA device context).
"""

from __future__ import annotations

import contextlib
import math
import re
import types
from collections.abc import Iterator

import pytest
import torch
import triton
import triton.language as tl
from triton_device import triton_kernel_device
from triton_stand_in import LaunchRecording, record_launches, same_args, same_meta

from gac_coding.ops import _triton

# --------------------------------------------------------------------------- sizes and layout


def _block_by_loop(n: int) -> tuple[int, int]:
    """The smallest power of two from 16 up that holds ``n``, at most 1024; a warp per 256."""
    block = 16
    while block < n and block < 1024:
        block *= 2
    warps = block // 256
    return block, min(8, max(1, warps))


def test_block_is_the_smallest_power_of_two_that_holds_a_row() -> None:
    assert _triton.MAX_BLOCK == 1024
    for n in [*range(0, 1100), 1500, 2047, 2048, 4097, 10**6]:
        block, warps = _triton._block(n)
        assert (block, warps) == _block_by_loop(n), n
        assert type(block) is int and type(warps) is int, n  # launch options: ints, never floats
    # by hand
    assert _triton._block(1) == (16, 1)
    assert _triton._block(17) == (32, 1)
    assert _triton._block(513) == (1024, 4)
    assert _triton._block(100_000) == (1024, 4)


def test_cdiv_rounds_up() -> None:
    for n in range(1, 200):
        for d in (1, 2, 3, 16, 64, 1024):
            assert _triton.triton_cdiv(n, d) == math.ceil(n / d)


def test_gated_layout_per_sample_rows_and_the_static_gate() -> None:
    one_step = torch.zeros(12)
    three_steps = torch.zeros(3, 12)
    assert _triton._gated_layout(12, 4, 3, one_step) == (3, True)
    assert _triton._gated_layout(12, 4, 3, three_steps) == (3, False)
    assert _triton._gated_layout(12, 1, 3, three_steps) == (12, False)
    assert _triton._gated_layout(12, 12, 1, one_step) == (1, True)  # T = 1: one step either way
    with pytest.raises(
        ValueError, match=r"^ta: expected a batch size that divides a step of 12 elements, got 5$"
    ):
        _triton._gated_layout(12, 5, 3, one_step)
    with pytest.raises(ValueError, match=r"got 0$"):
        _triton._gated_layout(12, 0, 3, one_step)
    with pytest.raises(
        ValueError, match=r"^sca: expected one step \(12 elements\) or 3 steps, got 24 elements$"
    ):
        _triton._gated_layout(12, 4, 3, torch.zeros(2, 12))


@pytest.mark.parametrize(
    ("dtype", "compute", "tl_dtype"),
    [
        (torch.float16, torch.float32, tl.float32),
        (torch.bfloat16, torch.float32, tl.float32),
        (torch.float32, torch.float32, tl.float32),
        (torch.float64, torch.float64, tl.float64),
    ],
)
def test_arithmetic_dtype(dtype: torch.dtype, compute: torch.dtype, tl_dtype: object) -> None:
    assert _triton._compute_dtype(dtype) == compute
    assert _triton._tl_dtype(dtype) == tl_dtype


# -------------------------------------------------------------------------------- the checks


def test_check_refuses_other_dtypes_and_devices_and_returns_contiguous(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[torch.device] = []

    def available(device: torch.device) -> tuple[bool, str]:
        calls.append(device)
        return True, ""

    monkeypatch.setattr(_triton, "available", available)
    monkeypatch.setattr(_triton, "_usable", set())
    with pytest.raises(
        TypeError, match=r"^x: expected float16, bfloat16, float32 or float64, got dtype torch.int64$"
    ):
        _triton._check("x", torch.zeros(2, dtype=torch.long))
    assert calls == []  # the dtype first
    t = torch.arange(12.0).reshape(3, 4).t()
    out = _triton._check("x", t)
    assert out.is_contiguous() and torch.equal(out, t)
    assert calls == [torch.device("cpu")] and _triton._usable == {"cpu"}
    _triton._check("y", t)
    assert len(calls) == 1  # a device type is checked once per process
    meta = torch.device("meta")
    with pytest.raises(ValueError, match=r"^ta: expected a tensor on meta, got one on cpu$"):
        _triton._check("ta", t, meta)
    assert torch.equal(_triton._check("ta", t, torch.device("cpu")), t)
    assert len(calls) == 1  # later tensors of a call are compared with the first one's device


def test_check_names_why_the_kernels_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_triton, "available", lambda device: (False, "no way here"))
    monkeypatch.setattr(_triton, "_usable", set())
    with pytest.raises(RuntimeError, match=r"^gac_coding triton backend: no way here$"):
        _triton._check("x", torch.zeros(2))
    assert _triton._usable == set()  # a refusal is asked again next time


# ---------------------------------------------------------------------------------- availability


@pytest.mark.parametrize(
    ("device", "interp", "cuda", "expected"),
    [
        (None, True, False, (True, "")),
        (None, False, True, (True, "")),
        (None, False, False, (False, "no CUDA device (and TRITON_INTERPRET is not set)")),
        ("cpu", True, False, (True, "")),
        ("cpu", True, True, (True, "")),
        ("cuda", False, True, (True, "")),
        ("cuda", True, False, (False, "no CUDA device (and TRITON_INTERPRET is not set)")),
        ("cuda:0", False, False, (False, "no CUDA device (and TRITON_INTERPRET is not set)")),
        ("mps", True, True, (False, "triton kernels run on CUDA tensors, got device 'mps'")),
        ("meta", False, True, (False, "triton kernels run on CUDA tensors, got device 'meta'")),
    ],
)
def test_available_per_device(
    monkeypatch: pytest.MonkeyPatch,
    device: str | None,
    interp: bool,
    cuda: bool,
    expected: tuple[bool, str],
) -> None:
    monkeypatch.setattr(_triton, "interpreted", lambda: interp)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert _triton.available(device) == expected
    if device is not None:
        assert _triton.available(torch.device(device)) == expected


def test_available_on_cpu_without_the_interpreter_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_triton, "interpreted", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _triton.available("cpu") == (
        False,
        "triton runs CPU tensors only in its interpreter: set TRITON_INTERPRET=1 before the "
        "first triton kernel call of the process",
    )


# ------------------------------------------------------------------- the interpreter setting


@contextlib.contextmanager
def _interpret(value: bool) -> Iterator[None]:
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = value
        yield


def test_interpreted_reads_the_loaded_kernels_or_else_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_triton, "_kernels", None)
    for value in (True, False):
        with _interpret(value):
            assert _triton._interpret_requested() is value
            assert _triton.interpreted() is value
    for value in (True, False):
        monkeypatch.setattr(_triton, "_kernels", types.SimpleNamespace(_INTERPRETED=value))
        with _interpret(not value):  # fixed at the first load: triton's switch no longer counts
            assert _triton.interpreted() is value
    monkeypatch.setattr(_triton, "_kernels", types.ModuleType("no_flag"))
    assert _triton.interpreted() is False


def test_load_records_the_interpreter_setting_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernels decorated the way the rest of the suite needs them (the first load of the
    # process decides); then a fresh load is simulated
    triton_kernel_device()
    from gac_coding.ops import _triton_kernels

    monkeypatch.setattr(_triton, "_kernels", None)
    monkeypatch.setattr(_triton_kernels, "_INTERPRETED", None, raising=False)
    with _interpret(False):
        assert _triton._load() is _triton_kernels
    assert _triton_kernels._INTERPRETED is False
    with _interpret(True):
        assert _triton._load() is _triton_kernels  # loaded: not read again
    assert _triton_kernels._INTERPRETED is False and _triton._kernels is _triton_kernels


# ------------------------------------------------------------------------------- the launches


def test_interpreted_launch_switches_the_interpreter_on_for_the_call_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = record_launches(monkeypatch, _triton, ["some_kernel"], interpreted=True)
    with _interpret(False):
        _triton._launch("some_kernel", 7, torch.device("cpu"), "a", 2, BLOCK=16, num_warps=1)
        assert triton.knobs.runtime.interpret is False  # put back
    assert rec.calls == [("some_kernel", (7,), ("a", 2), {"BLOCK": 16, "num_warps": 1}, True)]
    assert rec.entered == []  # an interpreted launch enters no CUDA device


def test_compiled_launch_runs_on_the_tensors_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = record_launches(monkeypatch, _triton, ["other_kernel"])
    target = torch.device("cuda", 1)
    with _interpret(False):
        _triton._launch("other_kernel", 3, target, "x", N=5)
    assert rec.entered == [target]
    assert rec.calls == [("other_kernel", (3,), ("x",), {"N": 5}, False)]


# ------------------------------------------------------- what the four functions launch


_KERNEL_NAMES = ("lif_forward_kernel", "lif_backward_kernel", "gated_forward_kernel", "gated_backward_kernel")


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> LaunchRecording:
    """Stand-ins for the four kernels, launched as compiled ones on a CPU counted as usable."""
    monkeypatch.setattr(_triton, "_usable", {"cpu"})
    return record_launches(monkeypatch, _triton, _KERNEL_NAMES)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("save", [False, True])
def test_lif_forward_launch(recording: LaunchRecording, static: bool, save: bool) -> None:
    step = (2, 1500)  # 3000 elements a step: 3 programs of 1024, 4 warps
    x = torch.zeros(step if static else (3, *step), dtype=torch.float16)
    spikes, h = _triton.lif_forward(x, 3 if static else 0, 1, 0.75, save)
    assert spikes.shape == (3, *step) and spikes.dtype == torch.float16
    if save:
        assert h is not None and h.shape == (3, *step) and h.dtype == torch.float32
    else:
        assert h is None
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "lif_forward_kernel" and grid == (3,)
    same_args(args, (x, spikes, h if save else spikes, 3, 3000))
    same_meta(meta, {"DECAY": 1.0, "TH": 0.75, "STATIC": static, "SAVE": save, "CT": tl.float32,
                 "BLOCK": 1024, "num_warps": 4})  # fmt: skip
    assert recording.entered == [x.device]


@pytest.mark.parametrize("static", [False, True])
def test_lif_backward_launch(recording: LaunchRecording, static: bool) -> None:
    h = torch.zeros(3, 2, 1500, dtype=torch.float64)
    grad_s = torch.ones(3, 2, 1500, dtype=torch.float32)
    grad_x = _triton.lif_backward(grad_s, h, static, 0.5, 1, 1, 1)
    assert grad_x.shape == ((2, 1500) if static else (3, 2, 1500)) and grad_x.dtype == torch.float32
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "lif_backward_kernel" and grid == (3,)
    same_args(args, (grad_s, h, grad_x, 3, 3000, 6000))
    same_meta(meta, {"DECAY": 0.5, "TH": 1.0, "SURROGATE": 1, "DETACH": True, "STATIC": static,
                 "CT": tl.float64, "BLOCK": 1024, "num_warps": 4})  # fmt: skip
    assert recording.entered == [grad_s.device]


@pytest.mark.parametrize("static", [False, True])
def test_empty_sequences_launch_nothing(recording: LaunchRecording, static: bool) -> None:
    h = torch.zeros(0, 3, 4)
    grad_x = _triton.lif_backward(h, h, static, 0.5, 1.0, 0, False)
    assert grad_x.shape == ((3, 4) if static else (0, 3, 4)) and not grad_x.any()
    x = torch.zeros(2, 0) if static else torch.zeros(0, 5)  # no elements, or no steps
    spikes, saved = _triton.lif_forward(x, 3 if static else 0, 0.5, 1.0, True)
    shape = (3, 2, 0) if static else (0, 5)
    assert spikes.shape == shape and saved is not None and saved.shape == shape
    ta = torch.zeros(0, 2)
    out, fired, gate, hg = _triton.gated_forward(
        torch.zeros(0, 2, 3), ta, torch.zeros(2, 3), 0, 0.5, 1.0, True
    )
    assert out.shape == fired.shape == gate.shape == (0, 2, 3) and hg is not None
    grads = _triton.gated_backward(
        torch.zeros(0, 2, 3), torch.zeros(0, 2, 3), torch.zeros(0, 2, 3), torch.zeros(0, 2, 3),
        ta, torch.zeros(2, 3), static, 0.5, 1.0, 0, False,
    )  # fmt: skip
    assert grads[0].shape == ((2, 3) if static else (0, 2, 3)) and not grads[0].any()
    assert grads[1].shape == (0, 2) and grads[2].shape == (2, 3) and not grads[2].any()
    assert recording.calls == []


def test_gated_forward_launch(recording: LaunchRecording) -> None:
    u = torch.zeros(3, 2, 1500, dtype=torch.bfloat16)  # B = 2: 1500 a sample, 2 programs each
    ta = torch.zeros(3, 2, dtype=torch.bfloat16)
    sca = torch.zeros(2, 1500, dtype=torch.bfloat16)
    out, fired, gate, h = _triton.gated_forward(u, ta, sca, 0, 0.5, 2, True)
    for t in (out, fired, gate):
        assert t.shape == (3, 2, 1500) and t.dtype == torch.bfloat16
    assert h is not None and h.shape == (3, 2, 1500) and h.dtype == torch.float32
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "gated_forward_kernel" and grid == (4,)
    same_args(args, (u, ta, sca, out, fired, gate, h, 3, 2, 1500, 2))
    same_meta(meta, {"DECAY": 0.5, "TH": 2.0, "U_STATIC": False, "SCA_STATIC": True, "SAVE": True,
                 "CT": tl.float32, "BLOCK": 1024, "num_warps": 4})  # fmt: skip
    assert recording.entered == [u.device]
    recording.calls.clear()
    out, fired, gate, h = _triton.gated_forward(u[0], ta, sca.expand(3, 2, 1500), 3, 0.5, 2, False)
    ((_, _, args, meta, _),) = recording.calls
    assert h is None and args[6] is out and out.shape == (3, 2, 1500)
    assert meta["U_STATIC"] is True and meta["SCA_STATIC"] is False and meta["SAVE"] is False


def test_gated_backward_launch_and_the_sum_of_its_partial_gradients(recording: LaunchRecording) -> None:
    T, B, P = 3, 2, 1500
    h = torch.zeros(T, B, P, dtype=torch.float32)
    grad_out, out, gate = (torch.zeros(T, B, P, dtype=torch.float16) for _ in range(3))
    ta = torch.zeros(T, B, dtype=torch.float16)
    sca = torch.zeros(T, B, P, dtype=torch.float16)
    partials = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.25, 8.0, 16.0], [-1.0, 1.0, 2.0, -2.0]])

    def fill(*args: object) -> None:
        args[6].copy_(partials)  # type: ignore[union-attr]

    recording.effect["gated_backward_kernel"] = fill
    grad_u, grad_ta, grad_sca = _triton.gated_backward(
        grad_out, h, out, gate, ta, sca, True, 0.5, 1.0, 1, True
    )
    assert grad_u.shape == (B, P) and grad_u.dtype == torch.float16
    assert grad_sca.shape == sca.shape and grad_sca.dtype == torch.float16
    # per sample b, its programs' partial sums (columns 2b, 2b + 1), in ta's dtype
    expected = torch.tensor([[3.0, 7.0], [0.75, 24.0], [0.0, 0.0]], dtype=torch.float16)
    assert grad_ta.dtype == torch.float16 and torch.equal(grad_ta, expected)
    ((name, grid, args, meta, _),) = recording.calls
    assert name == "gated_backward_kernel" and grid == (4,)
    partial = args[6]
    assert isinstance(partial, torch.Tensor) and partial.shape == (T, 4) and partial.dtype == torch.float32
    same_args(args[:6], (grad_out, h, ta, sca, grad_u, grad_sca))
    same_args(args[7:], (T, B, P, 2, 6000))
    same_meta(meta, {"DECAY": 0.5, "TH": 1.0, "SURROGATE": 1, "DETACH": True, "U_STATIC": True,
                 "SCA_STATIC": False, "CT": tl.float32, "BLOCK": 1024, "num_warps": 4})  # fmt: skip
    assert recording.entered == [grad_out.device]


def test_the_four_functions_name_their_arguments(recording: LaunchRecording) -> None:
    h = torch.zeros(2, 3)
    meta_t = torch.zeros(2, 3, device="meta")
    with pytest.raises(TypeError, match=r"^h: expected float16"):
        _triton.lif_backward(h, h.long(), False, 0.5, 1.0, 0, False)
    with pytest.raises(TypeError, match=r"^grad_s: expected float16"):
        _triton.lif_backward(h.long(), h, False, 0.5, 1.0, 0, False)
    with pytest.raises(ValueError, match=r"^grad_s: expected a tensor on cpu, got one on meta$"):
        _triton.lif_backward(meta_t, h, False, 0.5, 1.0, 0, False)
    u = torch.zeros(2, 2, 3)
    ta = torch.zeros(2, 2)
    for i, name in enumerate(("u", "ta", "sca")):
        args = [u, ta, u]
        args[i] = args[i].long()
        with pytest.raises(TypeError, match=rf"^{name}: expected float16"):
            _triton.gated_forward(*args, 0, 0.5, 1.0, False)
    for i, name in enumerate(("h", "grad_out", "out", "gate", "ta", "sca")):
        args = [u, u, u, u, ta, u]
        args[i] = args[i].long()
        order = [args[1], args[0], *args[2:]]  # gated_backward takes grad_out first, then h
        with pytest.raises(TypeError, match=rf"^{name}: expected float16"):
            _triton.gated_backward(*order, False, 0.5, 1.0, 0, False)
    assert recording.calls == []


def test_surrogates_and_devices_named_in_the_messages(recording: LaunchRecording) -> None:
    h = torch.zeros(2, 2, 3)
    ta = torch.zeros(2, 2)
    surrogate = r"^surrogate: expected 0 \(triangle\) or 1 \(rectangle\), got 2$"
    with pytest.raises(ValueError, match=surrogate):
        _triton.lif_backward(h, h, False, 0.5, 1.0, 2, False)
    with pytest.raises(ValueError, match=surrogate):
        _triton.gated_backward(h, h, h, h, ta, h, False, 0.5, 1.0, 2, False)
    meta_h, meta_ta = torch.zeros(2, 2, 3, device="meta"), torch.zeros(2, 2, device="meta")
    for i, name in enumerate(("ta", "sca")):
        args = [h, ta, h]
        args[i + 1] = meta_ta if name == "ta" else meta_h
        with pytest.raises(ValueError, match=rf"^{name}: expected a tensor on cpu, got one on meta$"):
            _triton.gated_forward(*args, 0, 0.5, 1.0, False)
    for i, name in enumerate(("grad_out", "out", "gate", "ta", "sca")):
        args = [h, h, h, ta, h]
        args[i] = meta_ta if name == "ta" else meta_h
        with pytest.raises(ValueError, match=rf"^{name}: expected a tensor on cpu, got one on meta$"):
            _triton.gated_backward(args[0], h, *args[1:], False, 0.5, 1.0, 0, False)
    assert recording.calls == []


def test_shapes_named_in_the_messages(recording: LaunchRecording) -> None:
    h = torch.zeros(2, 2, 3)
    other = torch.zeros(1, 2, 3)
    ta = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"^grad_s: expected the shape of h \(2, 2, 3\), got \(1, 2, 3\)$"):
        _triton.lif_backward(other, h, False, 0.5, 1.0, 0, False)
    for i, name in enumerate(("grad_out", "out", "gate")):
        args = [h, h, h]
        args[i] = other
        with pytest.raises(
            ValueError, match=rf"^{name}: expected the shape of h \(2, 2, 3\), got \(1, 2, 3\)$"
        ):
            _triton.gated_backward(args[0], h, args[1], args[2], ta, h, False, 0.5, 1.0, 0, False)
    for bad in (torch.zeros(2), torch.zeros(3, 2)):  # not [T, B]; T rows but not h's
        shape = re.escape(str(tuple(bad.shape)))
        with pytest.raises(ValueError, match=rf"^ta: expected \[T=2, B\], got shape {shape}$"):
            _triton.gated_backward(h, h, h, h, bad, h, False, 0.5, 1.0, 0, False)
    with pytest.raises(ValueError, match=r"^ta: expected \[T, B\], got shape \(2,\)$"):
        _triton.gated_forward(h, torch.zeros(2), h, 0, 0.5, 1.0, False)
    with pytest.raises(ValueError, match=r"^steps: expected T=2 \(the rows of ta\), got 3$"):
        _triton.gated_forward(h[0], ta, h[0], 3, 0.5, 1.0, False)
    with pytest.raises(ValueError, match=r"^u: expected 2 steps to match ta, got shape \(1, 2, 3\)$"):
        _triton.gated_forward(other, ta, h[0], 0, 0.5, 1.0, False)
    assert recording.calls == []


def test_outputs_are_made_on_the_inputs_device_not_the_default_one(recording: LaunchRecording) -> None:
    h = torch.zeros(2, 2, 3)
    ta = torch.zeros(2, 2)

    def fill(*args: object) -> None:
        args[6].zero_()  # type: ignore[union-attr]

    recording.effect["gated_backward_kernel"] = fill
    with torch.device("meta"):  # a default device other than the inputs'
        outputs = [
            *_triton.lif_forward(h, 0, 0.5, 1.0, True),
            _triton.lif_backward(h, h, True, 0.5, 1.0, 0, False),
            _triton.lif_backward(h, h, False, 0.5, 1.0, 0, False),
            *_triton.gated_forward(h, ta, h[0], 0, 0.5, 1.0, True),
            *_triton.gated_backward(h, h, h, h, ta, h, True, 0.5, 1.0, 0, False),
            *_triton.gated_backward(h, h, h, h, ta, h, False, 0.5, 1.0, 0, False),
        ]
    assert len(recording.calls) == 6
    for _, _, args, _, _ in recording.calls:
        assert all(a.device.type == "cpu" for a in args if isinstance(a, torch.Tensor))
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in outputs)


def test_gated_edge_shapes(recording: LaunchRecording) -> None:
    # a step of one element (u is [T]): one sample, launched
    out, fired, gate, h = _triton.gated_forward(
        torch.zeros(3), torch.zeros(3, 1), torch.zeros(3), 0, 0.5, 1.0, False
    )
    assert out.shape == fired.shape == gate.shape == (3,) and h is None
    ((name, grid, args, _, _),) = recording.calls
    assert name == "gated_forward_kernel" and grid == (1,) and args[7:] == (3, 1, 1, 1)
    recording.calls.clear()
    # steps with no elements: nothing to launch
    out, fired, gate, h = _triton.gated_forward(
        torch.zeros(3, 2, 0), torch.zeros(3, 2), torch.zeros(2, 0), 0, 0.5, 1.0, True
    )
    assert out.shape == (3, 2, 0) and h is not None and h.shape == (3, 2, 0)
    assert recording.calls == []


def test_partial_ta_gradients_are_added_in_float64(recording: LaunchRecording) -> None:
    """float32 partial sums (the arithmetic dtype of a float32 membrane) added in float64: a
    float64 ``ta`` gets their exact sum."""
    h = torch.zeros(2, 1, 1500)
    tiny = 2.0**-30  # lost when added to 1.0 in float32

    def fill(*args: object) -> None:
        partial = args[6]
        assert (
            isinstance(partial, torch.Tensor) and partial.shape == (2, 2) and partial.dtype == torch.float32
        )
        partial.copy_(torch.tensor([[1.0, tiny], [tiny, 1.0]]))

    recording.effect["gated_backward_kernel"] = fill
    ta = torch.zeros(2, 1, dtype=torch.float64)
    _, grad_ta, _ = _triton.gated_backward(h, h, h, h, ta, h, False, 0.5, 1.0, 0, False)
    # 1500 elements a sample in blocks of 1024: two programs per sample
    assert grad_ta.dtype == torch.float64 and grad_ta.flatten().tolist() == [1.0 + tiny, 1.0 + tiny]
