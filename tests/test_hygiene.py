"""What a user sees besides the work they asked for: packaging warnings, and log lines of other packages."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ge2e.config import AudioConfig, ModelConfig
from ge2e.model import SpeakerEncoder

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_gives_setuptools_nothing_to_warn_about(monkeypatch: pytest.MonkeyPatch) -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(REPO)  # the version is read from src/ge2e/__init__.py
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []
    assert dist.metadata.license_expression == "Apache-2.0"


def test_a_plot_on_a_fresh_machine_logs_nothing_of_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", (0.1 * rng.standard_normal(8_000)).astype(np.float32), 16_000)
    SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1), AudioConfig(vad=False)).save(
        tmp_path / "m.pt"
    )
    result = subprocess.run(
        [sys.executable, "-m", "ge2e", "similarity", "a.wav", "b.wav", "--model", "m.pt", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        # an empty matplotlib config folder: the font cache is built, as on a user's first plot
        env={**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (tmp_path / "similarity.png").exists()
