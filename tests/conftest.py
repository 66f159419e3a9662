"""Shared test fixtures. ``data_root``: the real speech corpora (README.md there), optional outside CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def require_data() -> Path:
    """The speech data folder (env GE2E_DATA, default <repo>/../shared/data).

    Skips the calling test when the folder is absent, but fails it under CI=true, where a missing folder means
    the CI setup is broken and a silent skip would hide that.
    """
    root = Path(os.environ.get("GE2E_DATA", REPO.parent / "shared" / "data"))
    if not root.is_dir():
        reason = f"speech data folder {root} not found (set GE2E_DATA)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return require_data()
