"""Diarization segments and the RTTM format (NIST Rich Transcription Time Marked, ``SPEAKER`` lines).

One line per speech turn, ten space-separated fields:
``SPEAKER <uri> <channel> <start s> <duration s> <NA> <NA> <speaker> <NA> <NA>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ge2e.errors import Ge2eError
from ge2e.files import atomic_write

RTTM_FIELDS = 10


@dataclass(frozen=True)
class Segment:
    """One speaker turn: ``speaker`` talks from ``start`` to ``end`` seconds after the start of the recording."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def format_rttm(segments_by_uri: Mapping[str, Sequence[Segment]]) -> str:
    """RTTM text of the segments of several recordings (``uri`` -> segments), times to the millisecond."""
    lines = []
    for uri, segments in segments_by_uri.items():
        if not uri or any(c.isspace() for c in uri):
            raise ValueError(f"RTTM file ids cannot be empty or contain spaces: {uri!r}")
        for seg in sorted(segments, key=lambda s: (s.start, s.speaker)):
            lines.append(f"SPEAKER {uri} 1 {seg.start:.3f} {seg.duration:.3f} <NA> <NA> {seg.speaker} <NA> <NA>\n")
    return "".join(lines)


def write_rttm(segments_by_uri: Mapping[str, Sequence[Segment]], path: str | Path) -> None:
    """Write :func:`format_rttm` to ``path`` atomically (temp file in the same folder, then rename)."""
    text = format_rttm(segments_by_uri)
    atomic_write(path, lambda f: f.write(text), "w")


def read_rttm(path: str | Path) -> dict[str, list[Segment]]:
    """Parse the ``SPEAKER`` lines of an RTTM file -> ``{uri: segments}`` in file order.

    Other line types (``SPKR-INFO``, ...), blank lines and ``;;`` comments are ignored. A malformed ``SPEAKER``
    line raises :class:`Ge2eError` naming the file and line number.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise Ge2eError(f"{path}: RTTM file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Ge2eError(f"{path}: cannot read RTTM file ({type(exc).__name__})") from None
    result: dict[str, list[Segment]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith(";;") or fields[0] != "SPEAKER":
            continue
        if len(fields) < RTTM_FIELDS - 1:  # the last <NA> (confidence/slat) is often left out
            raise Ge2eError(f"{path}:{number}: expected {RTTM_FIELDS} RTTM fields, got {len(fields)}")
        try:
            start, duration = float(fields[3]), float(fields[4])
        except ValueError:
            raise Ge2eError(f"{path}:{number}: start and duration must be numbers") from None
        if start < 0 or duration < 0:
            raise Ge2eError(f"{path}:{number}: negative start or duration")
        result.setdefault(fields[1], []).append(Segment(start, start + duration, fields[7]))
    return result
