"""Crash-safe file writes: nothing ge2e writes is ever left half-written, and write failures come early.

Writes go to a temp file ``.<name>.ge2e-<pid>-<random>.tmp`` beside the target, are fsynced, renamed over the
target, and the folder is fsynced so the rename itself survives a power cut. A run killed mid-write leaves its
temp file behind; the recognisable name (with the writer's process id) lets a later run remove it safely.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ge2e.errors import OutputError

_TEMP = re.compile(r"^\..+\.ge2e-(\d+)-[^./]+\.tmp$")
NEARLY_FULL_BYTES = 1 << 20  # free space under which a short write is put down to a full disk


def os_problem(exc: OSError) -> str:
    """The cause of an OSError in a few lower-case words ("permission denied", "no space left on device")."""
    return (exc.strerror or type(exc).__name__).lower()


def is_temp_file(name: str) -> bool:
    """Whether ``name`` is a temp file of :func:`atomic_write_path` (of any process)."""
    return _TEMP.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temp_files(folder: str | Path, target: str | None = None) -> list[Path]:
    """Delete the temp files in ``folder`` (only those for file name ``target``, when given) whose writer process
    has ended: leftovers of a killed run. Returns what was removed."""
    removed = []
    for path in Path(folder).glob(f".{target}.ge2e-*.tmp" if target else ".*.ge2e-*.tmp"):
        m = _TEMP.match(path.name)
        if m and not _alive(int(m[1])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _write_problem(exc: OSError, folder: Path) -> str:
    # numpy's tofile reports a short write as "N requested and M written", without an errno
    if exc.errno is None and shutil.disk_usage(folder).free < NEARLY_FULL_BYTES:
        return "no space left on device"
    return os_problem(exc) if exc.strerror else str(exc).splitlines()[0]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: str | Path, folder: bool = False, create_parents: bool = True) -> Path:
    """Fail now, before any work, when ``path`` (a file, or with ``folder`` a folder) cannot be written.

    Creates the folder (without ``create_parents``, the folder that holds ``path`` must exist already, for an
    output folder as for a file: a mistyped folder name should not silently become a new tree), writes and
    removes a probe file in it (the only test that sees read-only mounts and quotas, also for root). Returns the
    folder.

    Raises:
        OutputError: one line naming the path and the cause.
    """
    path = Path(path)
    where = path if folder else path.parent
    if not folder and path.is_dir():
        raise OutputError(path, "is a folder, not a file")
    parent = path.parent
    # only a truly missing folder: one under a file is reported as unwritable below
    if not create_parents and not parent.exists() and next(p for p in parent.parents if p.exists()).is_dir():
        raise OutputError(parent, "no such folder (create it, or pass --mkdir)")
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=where, prefix=f".{path.name}.ge2e-{os.getpid()}-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise OutputError(where, "is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(path, f"cannot write ({os_problem(exc)})") from None
    return where


def check_free_space(path: str | Path, need_bytes: int) -> None:
    """OutputError when the disk holding ``path`` (an existing folder) has less than ``need_bytes`` free."""
    free = shutil.disk_usage(path).free
    if need_bytes > free:
        raise OutputError(path, f"needs about {need_bytes / 1e6:.1f} MB, only {free / 1e6:.1f} MB free on its disk")


def atomic_write_path(path: str | Path, write_to: Callable[[Path], Any]) -> None:
    """Call ``write_to(tmp)`` for a temp file in ``path``'s folder, fsync it, rename it over ``path``, fsync the
    folder.

    For writers that need a file name (ONNX, TorchScript). A crash at any point leaves either the old file or
    the new one, never a mix; a failed write removes the temp file, and stale temp files of ``path`` left by
    killed runs are removed first.

    Raises:
        OutputError: the folder or file cannot be written (read-only, permissions, disk full); one line.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path.parent, path.name)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.ge2e-{os.getpid()}-", suffix=".tmp")
    except OSError as exc:
        raise OutputError(path, f"cannot write ({os_problem(exc)})") from None
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; ours are meant to be shared like any other
        write_to(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:
        problem = _write_problem(exc, path.parent)
        tmp.unlink(missing_ok=True)
        raise OutputError(path, f"cannot write ({problem})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Call ``write(f)`` on a temp file opened with ``mode`` (``"wb"`` or ``"w"``); see :func:`atomic_write_path`."""

    def write_to(tmp: Path) -> None:
        with open(tmp, mode) as f:
            write(f)

    atomic_write_path(path, write_to)
