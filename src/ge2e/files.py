"""Crash-safe file writes: nothing ge2e writes is ever left half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write_path(path: str | Path, write_to: Callable[[Path], Any]) -> None:
    """Call ``write_to(tmp)`` for a temp file in ``path``'s folder, fsync it, then rename it over ``path``.

    For writers that need a file name (ONNX, TorchScript). A crash at any point leaves either the old file or
    the new one, never a mix; a failed write removes the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; ours are meant to be shared like any other
    try:
        write_to(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Call ``write(f)`` on a temp file opened with ``mode`` (``"wb"`` or ``"w"``); see :func:`atomic_write_path`."""

    def write_to(tmp: Path) -> None:
        with open(tmp, mode) as f:
            write(f)

    atomic_write_path(path, write_to)
