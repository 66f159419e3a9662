"""The rule for missing prerequisites (system tools, the corpora): skip outside CI, fail under CI=true."""

from __future__ import annotations

import shutil

import pytest

from conftest import require_data, require_tool


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_tool_skips_outside_ci_and_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="espeak-ng is not installed"):
        require_tool("espeak-ng")


@pytest.mark.parametrize(("ci", "outcome"), [("1", pytest.fail.Exception), ("false", pytest.skip.Exception)])
def test_missing_data_skips_outside_ci_and_fails_under_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setenv("GE2E_DATA", str(tmp_path / "absent"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="not found"):
        require_data()


def test_present_tool_is_its_path(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setenv("CI", "true")
    assert require_tool("ffmpeg") == "/usr/bin/ffmpeg"
