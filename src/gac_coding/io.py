"""Files written so that a crash never leaves a half-written one: atomic writes and safetensors.

Every file is written to a temporary file in the destination folder, flushed and ``fsync``-ed,
then moved over the destination with :func:`os.replace` (atomic on POSIX and Windows), and the
folder entry is synced. A crash mid-save leaves the previous file intact. Imports torch alone
(``safetensors`` when a safetensors file is written).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = atomic_write(Path(d) / "a.txt", lambda fh: fh.write(b"written"))
    ...     path.read_text()
    'written'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from torch import Tensor

__all__ = ["PathLike", "atomic_write", "save_safetensors"]

PathLike = str | os.PathLike[str]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse directory fsync
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file that then replaces it.

    On any exception the temporary file is removed and the previous ``path`` (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def save_safetensors(
    state_dict: Mapping[str, Tensor], path: PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write tensors (e.g. a model's ``state_dict``) to a ``.safetensors`` file atomically."""
    from safetensors.torch import save as st_save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = st_save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})
    return atomic_write(path, lambda fh: fh.write(data))
