"""Deprecated: the encoders live in :mod:`gac_coding.coding` (removed in gac-coding 0.3.0).

``from gac_coding.encoder import GACEncoder`` (and ``StemEncoder``, ``check_image_input``) still
works, with a ``DeprecationWarning``; import them from :mod:`gac_coding.coding` or ``gac_coding``.
"""

from __future__ import annotations

from ._deprecated import moved_names

__getattr__ = moved_names(__name__)
