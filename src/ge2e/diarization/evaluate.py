"""Diarization error rate, computed here and cross-checked against pyannote.metrics.

DER = (missed speech + false alarm + speaker confusion) / reference speech, with the hypothesis speakers mapped
one-to-one onto the reference speakers so as to maximise their overlap (Hungarian assignment), as NIST md-eval
and pyannote.metrics score it. Overlapped reference speech counts once per speaker. Collars follow md-eval:
``collar`` seconds on EACH side of every reference boundary are not scored (pyannote.metrics' ``collar`` is the
total width, so :func:`pyannote_der` passes it ``2 * collar``). A recording is scored from 0 s to the end of the
last turn of either side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ge2e.diarization.rttm import Segment, read_rttm
from ge2e.errors import Ge2eError


@dataclass
class DerResult:
    """Totals over a set of recordings, in seconds of scored reference speech, plus per-recording DER."""

    collar: float
    total: float = 0.0
    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    per_file: dict[str, float] = field(default_factory=dict)

    @property
    def der(self) -> float:
        """(missed + false alarm + confusion) / scored reference speech; a fraction, not a percentage."""
        return (self.missed + self.false_alarm + self.confusion) / self.total if self.total else 0.0

    def add(self, uri: str, total: float, missed: float, false_alarm: float, confusion: float) -> None:
        self.total += total
        self.missed += missed
        self.false_alarm += false_alarm
        self.confusion += confusion
        self.per_file[uri] = (missed + false_alarm + confusion) / total if total else 0.0


def _activity(segments: Sequence[Segment], mids: np.ndarray) -> np.ndarray:
    """``(M, S)`` int: how many turns of each of the S speakers (sorted names) cover each time in ``mids``.

    A count, not a flag, because pyannote.metrics counts a speaker's overlapping turns (possible in an RTTM
    file) once per turn.
    """
    column = {speaker: i for i, speaker in enumerate(sorted({s.speaker for s in segments}))}
    active = np.zeros((len(mids), len(column)), dtype=np.int64)
    for seg in segments:
        active[(mids > seg.start) & (mids < seg.end), column[seg.speaker]] += 1
    return active


def _timeline(
    reference: Sequence[Segment], hypothesis: Sequence[Segment], collar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both sides on the elementary intervals between all their boundaries (exact, no frame rounding):
    ``(scored seconds (M,), reference activity (M, R), hypothesis activity (M, H))``."""
    end = max((s.end for s in (*reference, *hypothesis)), default=0.0)
    edges = {0.0, end} | {t for s in (*reference, *hypothesis) for t in (s.start, s.end)}
    boundaries = np.array(sorted({t for s in reference for t in (s.start, s.end)}))
    if collar > 0:
        edges |= {min(max(t + d, 0.0), end) for t in boundaries for d in (-collar, collar)}
    points = np.array(sorted(edges))
    mids, widths = (points[1:] + points[:-1]) / 2, np.diff(points)
    if collar > 0 and len(boundaries):
        nearest = np.abs(mids[:, None] - boundaries[None, :]).min(axis=1)
        widths = np.where(nearest < collar, 0.0, widths)
    return widths, _activity(reference, mids), _activity(hypothesis, mids)


def _assignment(widths: np.ndarray, ref: np.ndarray, hyp: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one (reference column, hypothesis column) pairs that maximise the time they speak together."""
    from scipy.optimize import linear_sum_assignment

    if not ref.shape[1] or not hyp.shape[1]:
        return []
    together = ref.T @ (hyp * widths[:, None])
    rows, cols = linear_sum_assignment(-together)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if together[i, j] > 0]


def map_speakers(reference: Sequence[Segment], hypothesis: Sequence[Segment]) -> dict[str, str]:
    """``{hypothesis speaker: reference speaker}`` of the optimal one-to-one mapping; unmatched ones left out."""
    widths, ref, hyp = _timeline(reference, hypothesis, 0.0)
    ref_names, hyp_names = sorted({s.speaker for s in reference}), sorted({s.speaker for s in hypothesis})
    return {hyp_names[j]: ref_names[i] for i, j in _assignment(widths, ref, hyp)}


def score_file(
    reference: Sequence[Segment], hypothesis: Sequence[Segment], collar: float = 0.0
) -> tuple[float, float, float, float]:
    """``(scored reference speech, missed, false alarm, confusion)`` in seconds for one recording."""
    widths, ref, hyp = _timeline(reference, hypothesis, collar)
    n_ref, n_hyp = ref.sum(axis=1), hyp.sum(axis=1)
    correct = sum(float(widths @ np.minimum(ref[:, i], hyp[:, j])) for i, j in _assignment(widths, ref, hyp))
    return (
        float(widths @ n_ref),
        float(widths @ np.maximum(n_ref - n_hyp, 0)),
        float(widths @ np.maximum(n_hyp - n_ref, 0)),
        float(widths @ np.minimum(n_ref, n_hyp)) - correct,
    )


def der(
    references: Mapping[str, Sequence[Segment]], hypotheses: Mapping[str, Sequence[Segment]], collar: float = 0.0
) -> DerResult:
    """Diarization error rate of ``hypotheses`` against ``references`` (both ``{uri: segments}``).

    Every reference recording is scored; one with no hypothesis counts as all speech missed. Hypotheses of
    recordings absent from the references are ignored (the caller reports them).
    """
    if collar < 0:
        raise Ge2eError(f"collar must be >= 0, got {collar}")
    result = DerResult(collar=collar)
    for uri, ref in references.items():
        result.add(uri, *score_file(ref, hypotheses.get(uri, ()), collar))
    return result


def pyannote_der(
    references: Mapping[str, Sequence[Segment]], hypotheses: Mapping[str, Sequence[Segment]], collar: float = 0.0
) -> DerResult:
    """:func:`der` computed by pyannote.metrics instead, to cross-check it (same recordings, same scored span)."""
    try:
        from pyannote.core import Annotation, Timeline
        from pyannote.core import Segment as PSegment
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        raise Ge2eError("the pyannote.metrics cross-check needs pip install 'ge2e[diarization]'") from None

    def annotation(uri: str, segments: Sequence[Segment]) -> Annotation:
        result = Annotation(uri=uri)
        for i, seg in enumerate(segments):
            result[PSegment(seg.start, seg.end), i] = seg.speaker
        return result

    metric = DiarizationErrorRate(collar=2 * collar)
    result = DerResult(collar=collar)
    for uri, ref in references.items():
        hyp = hypotheses.get(uri, ())
        uem = Timeline([PSegment(0.0, max(s.end for s in (*ref, *hyp)))], uri=uri)
        parts = metric(annotation(uri, ref), annotation(uri, hyp), uem=uem, detailed=True)
        result.add(uri, parts["total"], parts["missed detection"], parts["false alarm"], parts["confusion"])
    return result


def read_rttm_dir(folder: str | Path) -> dict[str, list[Segment]]:
    """All ``*.rttm`` files of a folder (or one RTTM file) merged into ``{uri: segments}``."""
    folder = Path(folder)
    if folder.is_file():
        return read_rttm(folder)
    if not folder.is_dir():
        raise Ge2eError(f"{folder}: RTTM folder not found")
    files = sorted(folder.glob("*.rttm"))
    if not files:
        raise Ge2eError(f"{folder}: no .rttm files")
    merged: dict[str, list[Segment]] = {}
    for path in files:
        for uri, segments in read_rttm(path).items():
            merged.setdefault(uri, []).extend(segments)
    return merged
