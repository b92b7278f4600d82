"""``python -m gac_coding ...`` runs the ``gac-coding`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
