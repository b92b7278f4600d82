"""pytest plugin of the mutation runs (``-p mutation_order``, see run.py): fastest tests first,
heavy optional frameworks imported once.

mutmut runs a mutant's tests with ``-x`` (stop at the first failure) and records how long each
test took on the unmutated code in ``mutmut-stats.json``, in the folder the tests run from. Its
fork server passes a mutant's tests in no particular order; sorting them by that duration makes a
killed mutant cost its fastest failing test instead of whatever ran first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    stats = Path("mutmut-stats.json")
    if not stats.is_file():
        return
    try:
        durations = json.loads(stats.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))


# Imported once in mutmut's fork server (this plugin loads while it collects the tests), so that
# the process forked per mutant does not import them again: several seconds each.
_HEAVY = (
    "spikingjelly.activation_based.neuron",
    "spikingjelly.activation_based.layer",
    "spikingjelly.activation_based.functional",
    "spikingjelly.activation_based.nir_exchange",
    "snntorch",
    "norse.torch",
    "nir",
    "nirtorch",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "tonic",
    "sklearn.datasets",
    "torch.onnx",
)


def pytest_configure(config: Any) -> None:
    import importlib
    import warnings

    for name in _HEAVY:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except Exception:  # an optional framework that is missing or broken: the tests say so
            pass
