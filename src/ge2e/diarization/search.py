"""Where in a recording does one enrolled speaker talk? Speaker search (speaker-conditioned detection).

The recording goes through the diarization front end (:func:`~ge2e.diarization.pipeline.embed_speech`) and is
cut into its speech segments (:func:`~ge2e.diarization.pipeline.speech_segments`: VAD regions, long ones cut into
pieces of at most 3 s, each with its two-scale d-vector). Each segment is scored by the cosine of its d-vector to
the speaker's enrollment d-vector (the paper's enrollment: the normalised average of the enrollment utterances'
d-vectors); no clustering is needed. The speaker's regions are the segments at or above the threshold, touching
ones merged.

The threshold is calibrated on the dev conversations of ``recipes/diarization`` (``search_eval.py``) and stored
as ``search_threshold`` beside the diarization settings of the model it holds for
(:func:`ge2e.pretrained.tuning_path`, checked against the model's fingerprint when it loads); a model without one
uses :data:`UNTUNED_THRESHOLD`, with one log line. Missed and false-alarm speech on the test conversations:
docs/diarization.md, *Speaker search*.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ge2e.diarization.pipeline import (
    DiarizationConfig,
    SpeechWindows,
    embed_speech,
    frame_turns,
    load_encoder,
    speech_segments,
)
from ge2e.errors import Ge2eError
from ge2e.inference import Encoder, Item, as_inference, average_embeddings

logger = logging.getLogger(__name__)

UNTUNED_THRESHOLD = 0.5


@dataclass(frozen=True)
class Region:
    """A stretch of the recording (seconds) and its score: the cosine to the enrolled speaker, averaged over the
    region's speech when it joins several segments."""

    start: float
    end: float
    score: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search` found: the speaker's ``regions`` (score at or above ``threshold``), every speech
    ``segment`` with its score (score over time), the recording's length and its seconds of speech."""

    regions: list[Region]
    segments: list[Region]
    threshold: float
    duration_s: float
    speech_s: float


def search_threshold(model: Encoder | None) -> float:
    """The threshold calibrated for ``model`` (``search_threshold`` in the settings
    :func:`ge2e.pretrained.load_model` read beside its weights), else :data:`UNTUNED_THRESHOLD` with one log line."""
    record = getattr(model, "diarization", None) or {}
    if "search_threshold" not in record:
        logger.warning("no search threshold was calibrated for this model: using %g", UNTUNED_THRESHOLD)
        return UNTUNED_THRESHOLD
    return float(record["search_threshold"])


def score_segments(speech: SpeechWindows, speaker: np.ndarray, cfg: DiarizationConfig | None = None) -> list[Region]:
    """Every speech segment of ``speech`` in time order, scored against the ``(D,)`` unit-norm ``speaker``."""
    units = speech_segments(speech, cfg)
    scores = units.embeddings.astype(np.float64) @ np.asarray(speaker, dtype=np.float64)
    # a segment is one run of consecutive speech frames, so labelling each frame with its segment gives one turn each
    spans = frame_turns(speech, units.frame_segment)
    if len(spans) != len(scores):
        raise ValueError(f"{len(scores)} segments but {len(spans)} spans")
    return [Region(s.start, s.end, float(score)) for s, score in zip(spans, scores, strict=True)]


def find_regions(segments: Sequence[Region], threshold: float) -> list[Region]:
    """The segments scored at or above ``threshold``, touching ones merged (score: their duration-weighted mean).

    Segments across a pause stay apart: the pause is not the speaker's speech."""
    found: list[tuple[float, float, float]] = []  # start, end, score x seconds
    for seg in segments:
        if seg.score < threshold:
            continue
        if found and seg.start - found[-1][1] <= 1e-6:
            start, _, weighted = found[-1]
            found[-1] = (start, seg.end, weighted + seg.score * seg.duration)
        else:
            found.append((seg.start, seg.end, seg.score * seg.duration))
    return [Region(start, end, round(weighted / max(end - start, 1e-9), 4)) for start, end, weighted in found]


def search_speech(
    speech: SpeechWindows, speaker: np.ndarray, threshold: float, cfg: DiarizationConfig | None = None
) -> SearchResult:
    """:func:`search` for a recording already through :func:`~ge2e.diarization.pipeline.embed_speech` (``cfg``:
    the windowing that made it) and a ``(D,)`` speaker d-vector."""
    segments = score_segments(speech, speaker, cfg)
    return SearchResult(find_regions(segments, threshold), segments, threshold, speech.duration_s, speech.speech_s)


def search(
    enroll: Item | Sequence[Item] | np.ndarray,
    recording: str | Path | np.ndarray,
    model: Encoder | None = None,
    *,
    threshold: float | None = None,
    sr: int | None = None,
    cfg: DiarizationConfig | None = None,
) -> SearchResult:
    """Where does the speaker of ``enroll`` talk in ``recording``?

    Args:
        enroll: enrollment utterance(s) (paths, bytes, ``(wav, sr)`` tuples), or the speaker's ``(D,)`` d-vector
            (e.g. from :func:`ge2e.embed_speaker`).
        recording: an audio file, or ``(L,)`` samples with their rate ``sr`` (also the rate of bare waveform
            arrays among the enrollment items).
        model: an encoder from :func:`ge2e.load_model` (default: the bundled one).
        threshold: a region is the speaker's when its cosine score is at or above it; default: the model's
            calibrated :func:`search_threshold`.

    Raises:
        AudioError subclasses naming the file that cannot be used; Ge2eError for a malformed ``enroll`` array.

    >>> found = search(["alice_1.wav", "alice_2.wav"], "meeting.wav")  # doctest: +SKIP
    >>> found.regions[0]  # doctest: +SKIP
    Region(start=3.415, end=6.125, score=0.71)
    """
    model = model if model is not None else load_encoder()
    if isinstance(enroll, np.ndarray):
        if enroll.shape != (model.embedding_size,):
            raise Ge2eError(f"enroll: an array must be a ({model.embedding_size},) d-vector, got {enroll.shape}")
        speaker = average_embeddings(enroll[None])
    else:
        speaker = as_inference(model).embed_speaker(enroll, sr)
    threshold = search_threshold(model) if threshold is None else float(threshold)
    return search_speech(embed_speech(model, recording, sr, cfg), speaker, threshold, cfg)
