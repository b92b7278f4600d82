"""gac-coding models handed to other tools' harnesses.

* :mod:`gac_coding.integrations.neurobench`: NeuroBench's ``Benchmark`` (the ``bench`` extra:
  ``pip install "gac-coding[bench]"``).

Each module imports its tool only inside the functions that need it, so ``import
gac_coding.integrations.neurobench`` needs torch alone.
"""

from __future__ import annotations

__all__: list[str] = []
