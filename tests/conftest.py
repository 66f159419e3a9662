"""Shared test fixtures. ``data_root``: the real speech corpora (README.md there), optional outside CI.

Tests that run a system tool (espeak-ng, ffmpeg; ``make sysdeps`` installs them) call :func:`require_tool`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _missing(reason: str) -> None:
    """Skip the calling test, or fail it under CI=true, where a missing prerequisite means the CI setup is broken
    and a silent skip would hide that."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Path of the executable ``name``; skips the calling test when it is absent (fails it under CI=true)."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (run `make sysdeps`, or apt-get install {name})")
    return path


def require_data() -> Path:
    """The speech data folder (env GE2E_DATA, default <repo>/../shared/data).

    Skips the calling test when the folder is absent, but fails it under CI=true (see :func:`_missing`).
    """
    root = Path(os.environ.get("GE2E_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        _missing(f"speech data folder {root} not found (set GE2E_DATA)")
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def espeak_ng() -> str:
    return require_tool("espeak-ng")


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    return require_tool("ffmpeg")
