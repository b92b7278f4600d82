"""What the energy-api area's mutation run found unpinned in ``estimate_energy`` and the counts.

The whole text of the messages of ``estimate_energy``'s argument and batch checks (an empty
``(input, target)`` item, ``batch_size`` with an iterable, no batches, batches of different
shapes with and without a batch dimension already seen to vary), and the exact synaptic operations
of a convolution whose receptive field holds more spikes than float32 counts exactly (2**24), for
a float64 and a float32 input: one output position that every tap of the kernel reaches, so the
count is the kernel's size, by hand.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gac_coding.energy import estimate_energy, exact_synops

_EXPECTED_BATCH = "expected a tensor or an (input, target) tuple or list whose first item is the input tensor"


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    return str(excinfo.value)


@pytest.mark.parametrize(("item", "got"), [((), "a tuple"), ([], "a list")])
def test_an_empty_batch_item_is_named_missing(item: object, got: str) -> None:
    with pytest.raises(TypeError) as excinfo:
        estimate_energy(nn.Linear(3, 2), [item])
    assert _message(excinfo) == f"x: batch 0 is {got} whose first item is missing; {_EXPECTED_BATCH}"


def test_a_batch_item_whose_first_entry_is_no_tensor_names_its_type() -> None:
    with pytest.raises(TypeError) as excinfo:
        estimate_energy(nn.Linear(3, 2), [(torch.rand(2, 3), 0), ("x", 1)])
    assert _message(excinfo) == f"x: batch 1 is a tuple whose first item is str; {_EXPECTED_BATCH}"


def test_batch_size_with_an_iterable_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError) as excinfo:
        estimate_energy(nn.Linear(3, 2), [torch.rand(2, 3)], batch_size=2)
    assert _message(excinfo) == (
        "batch_size: applies to a single input tensor; with an iterable of batches the samples "
        "of each batch are counted"
    )


def test_an_iterable_with_no_batches_is_refused() -> None:
    with pytest.raises(ValueError) as excinfo:
        estimate_energy(nn.Linear(3, 2), [])
    assert _message(excinfo) == "x: the iterable yielded no batches"


_SAME = "every batch must have the same shape but for its batch dimension"


def test_batches_differing_in_two_dimensions_name_no_batch_dimension() -> None:
    batches = [torch.rand(2, 3, 4), torch.rand(3, 5, 4)]
    with pytest.raises(ValueError) as excinfo:
        estimate_energy(nn.Linear(4, 2), batches)
    assert _message(excinfo) == f"x: batch 1 has shape [3, 5, 4], batch 0 has [2, 3, 4]; {_SAME}"


def test_batches_of_another_rank_name_no_batch_dimension() -> None:
    batches = [torch.rand(2, 3, 4), torch.rand(6, 4)]
    with pytest.raises(ValueError) as excinfo:
        estimate_energy(nn.Linear(4, 2), batches)
    assert _message(excinfo) == f"x: batch 1 has shape [6, 4], batch 0 has [2, 3, 4]; {_SAME}"


def test_a_second_varying_dimension_names_the_batch_dimension_seen_so_far() -> None:
    batches = [torch.rand(2, 3, 4), torch.rand(5, 3, 4), torch.rand(2, 1, 4)]
    with pytest.raises(ValueError) as excinfo:
        estimate_energy(nn.Linear(4, 2), batches)
    assert _message(excinfo) == (
        f"x: batch 2 has shape [2, 1, 4], batch 0 has [2, 3, 4]; {_SAME} (dimension 0)"
    )


_PAST_FLOAT32 = 2**24 + 1  # the first integer float32 cannot hold


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_exact_synops_past_the_float32_integers(dtype: torch.dtype) -> None:
    # One output position whose receptive field is the whole input, all spikes: every one of the
    # kernel's 2**24 + 1 taps is one accumulate. (A meta-device layer: only its geometry is read.)
    conv = nn.Conv1d(1, 1, _PAST_FLOAT32, bias=False, device="meta")
    x = torch.ones(1, 1, _PAST_FLOAT32, dtype=dtype)
    assert exact_synops(conv, x) == _PAST_FLOAT32
