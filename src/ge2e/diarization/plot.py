"""Timeline pictures of diarization and speaker search results (matplotlib, the ``plot`` or ``diarization`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ge2e.diarization.rttm import Segment
from ge2e.errors import Ge2eError

if TYPE_CHECKING:
    from ge2e.diarization.search import SearchResult

UNMATCHED = "no reference match"
# bars of speakers past the tenth get a hatch too: tab10 colours repeat there (ge2e.plots.speaker_style)
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo")


def plot_timeline(
    tracks: Mapping[str, Sequence[Segment]],
    path: str | Path,
    title: str = "",
    duration: float | None = None,
    reference: str | None = None,
) -> None:
    """Draw speaker turns against time (seconds) to an image (format from the suffix), written atomically.

    One track (a recording's diarization): one row per speaker, named on the y axis. Several tracks (e.g.
    ``{"reference": ..., "nme-sc": ...}``): one row per track, with a legend of speakers beside the axes. With
    ``reference`` (the name of one track), every other track's speakers take the colour of the reference
    speaker they are mapped to for scoring, so a wrong colour is a confusion, and extra speakers are grey and
    hatched; without it, speakers are coloured by name.
    """
    try:
        from matplotlib.patches import Patch
    except ImportError:
        raise Ge2eError("plotting needs matplotlib: pip install 'ge2e[plot]'") from None
    from ge2e.diarization.evaluate import map_speakers
    from ge2e.plots import new_figure, save_figure, speaker_style

    names = sorted(
        {s.speaker for s in tracks[reference]} if reference else {s.speaker for t in tracks.values() for s in t}
    )
    style = {
        name: {"facecolor": speaker_style(i, len(names))[0], "hatch": HATCHES[i // 10 % len(HATCHES)], "edgecolor": "w"}
        for i, name in enumerate(names)
    }
    unmatched = {"facecolor": "0.75", "hatch": "///", "edgecolor": "0.4"}
    end = duration or max((s.end for segs in tracks.values() for s in segs), default=1.0)
    single = len(tracks) == 1 and reference is None
    rows = names if single else list(tracks)
    fig = new_figure((10.0, 1.2 + 0.4 * len(rows)))
    ax = fig.add_subplot()
    for row, track in enumerate(rows):
        segments = next(iter(tracks.values())) if single else tracks[track]
        mapping = map_speakers(tracks[reference], segments) if reference else {n: n for n in names}
        for seg in segments:
            if single and seg.speaker != track:
                continue
            speaker = mapping.get(seg.speaker)
            ax.broken_barh([(seg.start, seg.duration)], (row - 0.35, 0.7), **(style[speaker] if speaker else unmatched))
        if not single:
            ax.text(end * 1.005, row, f"{len({s.speaker for s in segments})} spk", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()  # first row on top, as read
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    if not single:
        handles = [Patch(**style[n], label=n) for n in names]
        if reference:
            handles.append(Patch(**unmatched, label=UNMATCHED))
        # beside the axes: under them it covered the time axis label
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.06, 1.0), fontsize=7, title="speaker")
    if title:
        ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def plot_search(result: SearchResult, path: str | Path, title: str = "") -> None:
    """Draw a speaker search (:mod:`ge2e.diarization.search`): each speech segment's score against time, the
    threshold, and the regions found shaded; written atomically, format from the suffix."""
    from ge2e.plots import new_figure, save_figure

    fig = new_figure((10.0, 2.6))
    ax = fig.add_subplot()
    for region in result.regions:
        ax.axvspan(region.start, region.end, color="tab:green", alpha=0.25, lw=0)
    for seg in result.segments:
        colour = "tab:green" if seg.score >= result.threshold else "0.45"
        ax.plot([seg.start, seg.end], [seg.score, seg.score], color=colour, lw=2.5, solid_capstyle="butt")
    ax.axhline(result.threshold, color="tab:red", ls="--", lw=1, label=f"threshold {result.threshold:.2f}")
    ax.set_xlim(0, result.duration_s)
    ax.set_ylim(min(-0.1, *(s.score - 0.05 for s in result.segments)), 1.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("cosine to the speaker")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    save_figure(fig, path)
