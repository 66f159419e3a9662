"""Timeline pictures of diarization results (matplotlib, the ``plot`` or ``diarization`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ge2e.diarization.rttm import Segment
from ge2e.errors import Ge2eError
from ge2e.files import atomic_write


def plot_timeline(
    tracks: Mapping[str, Sequence[Segment]], path: str | Path, title: str = "", duration: float | None = None
) -> None:
    """Draw one row of coloured speaker turns per track (e.g. ``{"reference": ..., "spectral": ...}``) to a PNG.

    Colours are per speaker name within a track; the x axis is seconds. Written atomically.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Ge2eError("plotting needs matplotlib: pip install 'ge2e[plot]'") from None
    end = duration or max((s.end for segs in tracks.values() for s in segs), default=1.0)
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.5 * len(tracks)), dpi=120)
    colours = plt.get_cmap("tab10").colors
    for row, segments in enumerate(reversed(list(tracks.values()))):
        speakers = sorted({s.speaker for s in segments})
        for seg in segments:
            colour = colours[speakers.index(seg.speaker) % len(colours)]
            ax.broken_barh([(seg.start, seg.duration)], (row - 0.35, 0.7), color=colour)
        ax.text(end * 1.005, row, f"{len(speakers)} spk", va="center", fontsize=8)
    ax.set_yticks(range(len(tracks)), list(reversed(list(tracks))))
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
