"""The wheel: ``make dist`` / ``python -m build`` must ship the bundled model and everything tied to it, since
an installed package has no repository beside it. Installing it in a fresh venv and running ``ge2e verify``
offline is checked by hand (docs/usage.md, Install from a wheel): too slow for the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO

SHIPPED = [
    "ge2e/pretrained/ge2e_small.pt",
    "ge2e/pretrained/ge2e_small.json",
    "ge2e/pretrained/ge2e_small.int8.onnx",
    "ge2e/pretrained/ge2e_small.diarization.json",
    "ge2e/py.typed",
]


def test_the_wheel_holds_the_bundled_model_and_the_command(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building in place would leave build/ and egg-info in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path, source],
        check=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("ge2e-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert [f for f in SHIPPED if f not in names] == []
    assert "ge2e = ge2e.cli:main" in entry_points
