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
from ge2e.plots import speaker_style


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
    styles = {speaker_style(i, 34) for i in range(34)}
    assert len(styles) == 34  # no two speakers drawn alike


def test_few_speakers_get_a_legend(tmp_path: Path, monkeypatch) -> None:
    figures = captured_figures(monkeypatch)
    speakers = ["alice", "bob", "carol"] * 3
    cli_plot.save_projection(np.arange(18.0).reshape(9, 2), speakers, tmp_path / "p.png", "3 speakers")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["alice", "bob", "carol"] and not ax.texts


def legend_clear_of_axes(fig) -> bool:
    """Whether the figure's legend is drawn beside its axes rather than over them (or over their labels)."""
    fig.draw_without_rendering()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    return not any(legend.overlaps(box) for box in (ax.get_window_extent(), ax.xaxis.label.get_window_extent()))


def test_twenty_speakers_are_told_apart_by_colour_and_marker() -> None:
    from matplotlib import colormaps

    styles = [speaker_style(i, 20) for i in range(20)]
    assert len(set(styles)) == 20
    assert {colour for colour, _ in styles} <= set(colormaps["tab10"].colors)  # no light twin of a tab20 hue


def test_small_heatmaps_show_their_numbers(tmp_path: Path, monkeypatch) -> None:
    figures = captured_figures(monkeypatch)
    matrix = np.array([[1.0, 0.25, -0.5], [0.25, 1.0, 0.125], [-0.5, 0.125, 1.0]])
    cli_plot.save_heatmap(matrix, ["a", "b", "c"], tmp_path / "h.png", "3 files")
    assert sorted(t.get_text() for t in figures[0].axes[0].texts) == sorted(f"{v:.2f}" for v in matrix.ravel())
    cli_plot.save_heatmap(np.eye(20), [f"f{i}" for i in range(20)], tmp_path / "h.png", "20 files")
    assert len(figures[1].axes[0].texts) == 0  # too small to read: colour only


def test_evaluation_and_timeline_legends_stay_off_the_data(tmp_path: Path, monkeypatch) -> None:
    import ge2e.plots
    from ge2e.diarization import Segment
    from ge2e.diarization.plot import plot_timeline

    figures = captured_figures(monkeypatch)
    p = np.linspace(0.001, 0.5, 50)
    ge2e.plots.plot_det({"ge2e": (p, p[::-1])}, tmp_path / "det.png")
    scores = np.random.default_rng(0).normal(size=200)
    ge2e.plots.plot_score_histogram(scores, scores > 0, {"EER point": 0.0}, tmp_path / "hist.png")
    turns = {"reference": [Segment(0, 5, "A"), Segment(5, 9, "B")], "nme-sc": [Segment(0, 9, "x")]}
    plot_timeline(turns, tmp_path / "t.png", reference="reference")
    assert all(legend_clear_of_axes(fig) for fig in figures)


def test_a_recordings_timeline_names_its_speakers_on_the_y_axis(tmp_path: Path, monkeypatch) -> None:
    from ge2e.diarization import Segment
    from ge2e.diarization.plot import plot_timeline

    figures = captured_figures(monkeypatch)
    turns = [Segment(0, 4, "SPEAKER_00"), Segment(4, 6, "SPEAKER_01"), Segment(6, 9, "SPEAKER_00")]
    plot_timeline({"nme-sc": turns}, tmp_path / "t.png")
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SPEAKER_00", "SPEAKER_01"] and ax.get_legend() is None
