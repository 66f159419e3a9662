"""Plots a person can read: similarity heatmaps grouped by folder, projections of many speakers named at their
clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("matplotlib")

from ge2e.cli import main
from ge2e.cli import plot as cli_plot
from ge2e.config import AudioConfig, ModelConfig
from ge2e.model import SpeakerEncoder


def captured_figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """Figures ge2e.plots would save, kept instead of written."""
    import ge2e.plots

    figures: list = []
    monkeypatch.setattr(ge2e.plots, "save_figure", lambda fig, path: figures.append(fig))
    return figures


def test_similarity_of_many_files_groups_rows_by_speaker(tmp_path: Path, monkeypatch, capsys) -> None:
    rng = np.random.default_rng(0)
    files = []
    for u in range(15):  # named in an interleaved order: a, b, c, a, b, c, ...
        for spk in ("a", "b", "c"):
            path = tmp_path / spk / f"{u:02d}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, (0.1 * rng.standard_normal(4_800)).astype(np.float32), 16_000)
            files.append(path)
    SpeakerEncoder(ModelConfig(hidden_size=8, proj_size=0, num_layers=1), AudioConfig(vad=False)).save(
        tmp_path / "m.pt"
    )
    drawn = {}
    monkeypatch.setattr(cli_plot, "save_heatmap", lambda matrix, labels, path, title, grouped=False: drawn.update(
        labels=list(labels), grouped=grouped, title=title
    ))  # fmt: skip
    args = ["similarity", *map(str, files), "--model", str(tmp_path / "m.pt"), "--csv", str(tmp_path / "m.csv")]
    assert main([*args, "--no-progress"]) == 0
    assert drawn["grouped"] and drawn["labels"] == ["a"] * 15 + ["b"] * 15 + ["c"] * 15
    assert drawn["title"] == "Cosine similarity of 45 utterances of 3 speakers"
    rows = [line.split(",")[0] for line in (tmp_path / "m.csv").read_text().splitlines()[1:]]
    assert [Path(r).parent.name for r in rows] == drawn["labels"]  # the CSV rows in the heatmap's order


def test_many_speakers_are_named_at_their_clusters(tmp_path: Path, monkeypatch) -> None:
    figures = captured_figures(monkeypatch)
    speakers = [f"s{i:02d}" for i in range(34) for _ in range(3)]
    coords = np.random.default_rng(0).standard_normal((len(speakers), 2))
    cli_plot.save_projection(coords, speakers, tmp_path / "p.png", "34 speakers")
    ax = figures[0].axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(set(speakers))
    assert ax.get_legend() is None
    styles = {cli_plot._style(i, 34) for i in range(34)}
    assert len(styles) == 34  # no two speakers drawn alike


def test_few_speakers_get_a_legend(tmp_path: Path, monkeypatch) -> None:
    figures = captured_figures(monkeypatch)
    speakers = ["alice", "bob", "carol"] * 3
    cli_plot.save_projection(np.arange(18.0).reshape(9, 2), speakers, tmp_path / "p.png", "3 speakers")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["alice", "bob", "carol"] and not ax.texts
