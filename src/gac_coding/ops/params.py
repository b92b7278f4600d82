"""Surrogate derivatives and the neuron settings (:class:`LIFParams`), validated once.

The four settings of a LIF neuron travel together as one frozen value. It behaves as a read-only
mapping too, so ``LIF(**params)``, ``dict(params)`` and ``RECIPES["cifar"]["decay"]`` work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor

from .._checks import real

__all__ = [
    "RECIPES",
    "SURROGATE_CODES",
    "LIFParams",
    "LIFSettings",
    "SurrogateFn",
    "SurrogateLike",
    "resolve_surrogate",
    "surrogate_rectangle",
    "surrogate_triangle",
]

SurrogateFn = Callable[[Tensor], Tensor]
SurrogateLike = str | SurrogateFn


def surrogate_triangle(x: Tensor) -> Tensor:
    """Triangle surrogate ``d s / d h = max(0, 1 - |h - threshold|)``; ``x = h - threshold``."""
    return (1.0 - x.abs()).clamp_(min=0.0)


def surrogate_rectangle(x: Tensor) -> Tensor:
    """Rectangle surrogate ``d s / d h = 1`` where ``|h - threshold| < 0.5``; ``x = h - threshold``."""
    return (x.abs() < 0.5).to(x.dtype)


_SURROGATES: dict[str, SurrogateFn] = {
    "triangle": surrogate_triangle,
    "rectangle": surrogate_rectangle,
}

#: Integer codes of the named surrogates, as the backends' kernels take them.
SURROGATE_CODES: dict[str, int] = {"triangle": 0, "rectangle": 1}
_CODE_OF_FN = {id(fn): SURROGATE_CODES[name] for name, fn in _SURROGATES.items()}


def resolve_surrogate(surrogate: SurrogateLike) -> SurrogateFn:
    """Turn ``"triangle"``, ``"rectangle"`` or a callable into the derivative function.

    A callable receives ``h - threshold`` and returns ``d s / d h`` with the same shape.
    """
    if isinstance(surrogate, str):
        try:
            return _SURROGATES[surrogate]
        except KeyError:
            raise ValueError(
                f"surrogate: expected one of {sorted(_SURROGATES)} or a callable, got {surrogate!r}"
            ) from None
    if callable(surrogate):
        return surrogate
    raise TypeError(
        f"surrogate: expected a name {sorted(_SURROGATES)} or a callable, got {type(surrogate).__name__}"
    )


@dataclasses.dataclass(frozen=True)
class LIFParams:
    """The settings of a LIF neuron, checked when the value is made.

    Args:
        decay: membrane leak factor in ``[0, 1]``.
        threshold: firing threshold, finite and ``> 0``.
        surrogate: ``"triangle"``, ``"rectangle"`` or a callable mapping ``h - threshold`` to
            ``d s / d h`` (a callable runs on the eager backend only).
        detach_reset: treat the reset factor ``(1 - s)`` as a constant in the backward pass.

    Example:
        >>> from gac_coding.ops import LIFParams
        >>> p = LIFParams(decay=0.25, threshold=0.5, surrogate="rectangle", detach_reset=True)
        >>> p.surrogate_code, dict(p)["threshold"]
        (1, 0.5)
    """

    decay: float = 0.5
    threshold: float = 1.0
    surrogate: SurrogateLike = "triangle"
    detach_reset: bool = False
    # the kernels' code of the surrogate, worked out once (None: a callable no kernel knows)
    _code: int | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        decay = real("decay", self.decay, 0, 1)
        threshold = real("threshold", self.threshold, 0, low_open=True, what="a finite value")
        resolve_surrogate(self.surrogate)  # raises for an unknown name or a non-callable
        if not isinstance(self.detach_reset, (bool, int)) or self.detach_reset not in (0, 1):
            raise TypeError(f"detach_reset: expected a bool, got {self.detach_reset!r}")
        object.__setattr__(self, "decay", decay)
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "detach_reset", bool(self.detach_reset))
        code: int | None
        if isinstance(self.surrogate, str):
            code = SURROGATE_CODES[self.surrogate]
        else:
            code = _CODE_OF_FN.get(id(self.surrogate))
        object.__setattr__(self, "_code", code)

    @property
    def surrogate_fn(self) -> SurrogateFn:
        """The derivative function of :attr:`surrogate`."""
        return resolve_surrogate(self.surrogate)

    @property
    def surrogate_code(self) -> int | None:
        """The kernels' code of a named surrogate (0 triangle, 1 rectangle); ``None`` for any
        other callable (which only the eager backend runs)."""
        return self._code

    @property
    def surrogate_name(self) -> str:
        """The surrogate's name, or the callable's ``__name__``."""
        if isinstance(self.surrogate, str):
            return self.surrogate
        return getattr(self.surrogate, "__name__", "callable")

    # read-only mapping protocol: LIF(**params), dict(params), params["decay"]
    def keys(self) -> tuple[str, ...]:
        return _KEYS

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def replace(self, **changes: Any) -> LIFParams:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


_KEYS = ("decay", "threshold", "surrogate", "detach_reset")

#: The neuron settings of the paper's two recipes.
RECIPES: dict[str, LIFParams] = {
    "cifar": LIFParams(decay=0.5, threshold=1.0, surrogate="triangle", detach_reset=False),
    "imagenet": LIFParams(decay=0.25, threshold=0.5, surrogate="rectangle", detach_reset=True),
}


class LIFSettings:
    """Read-only ``decay``, ``threshold``, ``surrogate`` and ``detach_reset`` of a module that holds
    its neuron settings as one :class:`LIFParams` in ``self.params`` (the LIF module, the gate)."""

    params: LIFParams

    @property
    def decay(self) -> float:
        return self.params.decay

    @property
    def threshold(self) -> float:
        return self.params.threshold

    @property
    def surrogate(self) -> SurrogateLike:
        """The surrogate as given: a name or a callable."""
        return self.params.surrogate

    @property
    def detach_reset(self) -> bool:
        return self.params.detach_reset
