"""Timeline pictures of diarization results (matplotlib, the ``plot`` or ``diarization`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ge2e.diarization.rttm import Segment
from ge2e.errors import Ge2eError
from ge2e.files import atomic_write

UNMATCHED = "no reference match"


def plot_timeline(
    tracks: Mapping[str, Sequence[Segment]],
    path: str | Path,
    title: str = "",
    duration: float | None = None,
    reference: str | None = None,
) -> None:
    """Draw one row of speaker turns per track (e.g. ``{"reference": ..., "nme-sc": ...}``) to a PNG, with a legend.

    With ``reference`` (the name of one track), every other track's speakers take the colour of the reference
    speaker they are mapped to for scoring, so a wrong colour is a confusion, and extra speakers are grey and
    hatched; without it, speakers are coloured by name. The x axis is seconds. Written atomically.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise Ge2eError("plotting needs matplotlib: pip install 'ge2e[plot]'") from None
    from ge2e.diarization.evaluate import map_speakers

    palette = plt.get_cmap("tab10").colors
    names = sorted(
        {s.speaker for s in tracks[reference]} if reference else {s.speaker for t in tracks.values() for s in t}
    )
    colour = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    end = duration or max((s.end for segs in tracks.values() for s in segs), default=1.0)
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.5 * len(tracks)), dpi=120)
    for row, segments in enumerate(reversed(list(tracks.values()))):
        mapping = map_speakers(tracks[reference], segments) if reference else {n: n for n in names}
        for seg in segments:
            speaker = mapping.get(seg.speaker)
            style = {"color": colour[speaker]} if speaker else {"color": "0.75", "hatch": "///", "edgecolor": "0.4"}
            ax.broken_barh([(seg.start, seg.duration)], (row - 0.35, 0.7), **style)
        ax.text(end * 1.005, row, f"{len({s.speaker for s in segments})} spk", va="center", fontsize=8)
    ax.set_yticks(range(len(tracks)), list(reversed(list(tracks))))
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    handles = [Patch(color=colour[n], label=n) for n in names]
    if reference:
        handles.append(Patch(facecolor="0.75", hatch="///", edgecolor="0.4", label=UNMATCHED))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=min(len(handles), 5), fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
