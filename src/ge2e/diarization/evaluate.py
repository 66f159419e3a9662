"""Diarization error rate with pyannote.metrics (the ``diarization`` extra).

Collars follow NIST md-eval: ``collar`` seconds on EACH side of every reference boundary are not scored.
pyannote.metrics' ``collar`` is the total width, so it receives ``2 * collar``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ge2e.diarization.rttm import Segment, read_rttm
from ge2e.errors import Ge2eError

COLLARS = (0.0, 0.25)


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


def to_annotation(uri: str, segments: Sequence[Segment]):  # -> pyannote.core.Annotation
    from pyannote.core import Annotation
    from pyannote.core import Segment as PSegment

    annotation = Annotation(uri=uri)
    for i, seg in enumerate(segments):
        annotation[PSegment(seg.start, seg.end), i] = seg.speaker
    return annotation


def der(
    references: Mapping[str, Sequence[Segment]], hypotheses: Mapping[str, Sequence[Segment]], collar: float = 0.0
) -> DerResult:
    """Diarization error rate of ``hypotheses`` against ``references`` (both ``{uri: segments}``).

    Every reference recording is scored; one with no hypothesis counts as all speech missed. Hypotheses of
    recordings absent from the references are ignored (the caller reports them).
    """
    try:
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        raise Ge2eError("diarization scoring needs pyannote.metrics: pip install 'ge2e[diarization]'") from None
    from pyannote.core import Segment as PSegment
    from pyannote.core import Timeline

    metric = DiarizationErrorRate(collar=2 * collar)
    result = DerResult(collar=collar)
    for uri, ref in references.items():
        hyp = hypotheses.get(uri, ())
        # score from 0 to the last turn of either side (pyannote would otherwise guess, with a warning)
        uem = Timeline([PSegment(0.0, max(s.end for s in (*ref, *hyp)))], uri=uri)
        parts = metric(to_annotation(uri, ref), to_annotation(uri, hyp), uem=uem, detailed=True)
        result.total += parts["total"]
        result.missed += parts["missed detection"]
        result.false_alarm += parts["false alarm"]
        result.confusion += parts["confusion"]
        result.per_file[uri] = parts["diarization error rate"]
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
