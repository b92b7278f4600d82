"""mkdocs hooks of the documentation site (mkdocs.yml ``hooks:``).

Pictures made outside ``docs/`` are copied into the site at build time, so that each exists once in
the repository: ``benchmarks/timesteps.png`` (made by ``benchmarks/timesteps.py``) is served as
``images/timesteps.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
# site path -> file in the repository
FROM_REPOSITORY = {"images/timesteps.png": ROOT / "benchmarks" / "timesteps.png"}


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    for uri, source in FROM_REPOSITORY.items():
        if not source.is_file():
            raise FileNotFoundError(f"{source} (shown on the site as {uri}) is missing")
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files
