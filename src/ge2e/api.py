"""The user-facing tasks: verify, identify, score pairs; the embed_* functions are thin calls into
:class:`ge2e.inference.Inference` with the bundled model (or ``model=``), which owns them::

    import ge2e
    result = ge2e.verify(["alice_1.wav", "alice_2.wav"], "unknown.wav")
    result.same_speaker, result.score, result.threshold

An *item* is one utterance: a path, the bytes of an audio file, a waveform array (give its sample rate with
``sr=``), or a ``(waveform, sample_rate)`` tuple. Waveforms are ``(L,)`` mono or ``(L, C)`` / ``(C, L)``
multi-channel samples, integer PCM or floats in [-1, 1] (see :func:`ge2e.audio.load_audio`). Every embedding
is a float32 ``(D,)`` array of unit L2 norm, and every score is a cosine similarity in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np

from ge2e.errors import Ge2eError
from ge2e.inference import EmbeddedFiles, Encoder, Inference, Item, as_inference, average_embeddings, is_short
from ge2e.pretrained import (
    BUNDLED_MODEL,
    bundled_model_path,
    calibration_path,
    default_threshold,
    file_sha256,
    load_model,
    threshold_origin,
)

__all__ = [
    "BUNDLED_MODEL",
    "Item",
    "Match",
    "VerificationResult",
    "average_embeddings",
    "bundled_model_path",
    "calibration_path",
    "default_threshold",
    "embed_files",
    "embed_speaker",
    "embed_utterance",
    "embed_utterances",
    "file_sha256",
    "identify",
    "load_model",
    "score_pairs",
    "threshold_origin",
    "verify",
]


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verify`: ``same_speaker`` is ``score >= threshold``.

    ``short`` flags a test utterance with less than :data:`ge2e.inference.SHORT_SPEECH_SECONDS` of speech (a
    digit, a keyword): it is scored all the same, but such a score errs far more often (docs/usage.md, Short
    utterances).
    """

    score: float  # cosine similarity of the enrollment and test d-vectors, in [-1, 1]
    same_speaker: bool
    threshold: float
    speech_seconds: float  # speech the VAD found in the test utterance
    short: bool


@dataclass(frozen=True)
class Match:
    """One candidate of :func:`identify`: a speaker name and the cosine score of the test item against it, with
    the test item's seconds of speech and whether that is short (as in :class:`VerificationResult`)."""

    speaker: str
    score: float
    speech_seconds: float
    short: bool


# --------------------------------------------------------------------------------------------------- embedding


def _inference(model: Inference | Encoder | None) -> Inference:
    """``model`` as an Inference (:func:`~ge2e.inference.as_inference`), the bundled one by default."""
    return load_model() if model is None else as_inference(model)


def embed_utterances(
    items: Item | Sequence[Item], model: Inference | Encoder | None = None, sr: int | None = None, batch_size: int = 32
) -> np.ndarray:
    """:meth:`Inference.embed_utterances <ge2e.inference.Inference.embed_utterances>`: ``U`` items ->
    ``(U, D)`` float32, unit rows, ``batch_size`` at a time with windows batched across them."""
    return _inference(model).embed_utterances(items, sr, batch_size)


@overload
def embed_utterance(
    item: Item, model: Inference | Encoder | None = None, sr: int | None = None, return_partials: Literal[False] = False
) -> np.ndarray: ...
@overload
def embed_utterance(
    item: Item, model: Inference | Encoder | None = None, sr: int | None = None, *, return_partials: Literal[True]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def embed_utterance(
    item: Item, model: Inference | Encoder | None = None, sr: int | None = None, return_partials: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`Inference.embed_utterance <ge2e.inference.Inference.embed_utterance>`: d-vector ``(D,)``, or with
    ``return_partials`` ``(embedding, partials (W, D), spans (W, 2))``."""
    return _inference(model).embed_utterance(item, sr, return_partials)


def embed_speaker(
    items: Item | Sequence[Item], model: Inference | Encoder | None = None, sr: int | None = None
) -> np.ndarray:
    """:meth:`Inference.embed_speaker <ge2e.inference.Inference.embed_speaker>`: the paper's enrollment (Sec. 2.1,
    Sec. 4), the re-normalised mean of the unit utterance d-vectors -> ``(D,)`` float32."""
    return _inference(model).embed_speaker(items, sr)


def embed_files(
    paths: Sequence[str | Path], model: Inference | Encoder | None = None, batch_size: int = 32, progress: bool = True
) -> EmbeddedFiles:
    """:meth:`Inference.embed_files <ge2e.inference.Inference.embed_files>`: many files, bad ones skipped and
    listed in ``result.errors``, with a progress bar."""
    return _inference(model).embed_files(paths, batch_size=batch_size, progress=progress)


# --------------------------------------------------------------------------------------------------- decisions


def _embed_test(item: Item, model: Inference, sr: int | None) -> tuple[np.ndarray, float]:
    """d-vector ``(D,)`` of the utterance to decide on, and its seconds of speech."""
    vectors, seconds = model.embed_with_speech([item], sr)
    return vectors[0], float(seconds[0])


def _enrolled(value: Item | Sequence[Item] | np.ndarray, model: Inference, sr: int | None, name: str) -> np.ndarray:
    """A speaker's ``(D,)`` embedding from its enrollment utterance(s), or the precomputed one it is given."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.shape[0] == model.embedding_size:
        return average_embeddings(value[None])
    if isinstance(value, np.ndarray):
        raise Ge2eError(
            f"{name}: an array must be a ({model.embedding_size},) embedding; wrap a waveform as [(wav, sr)]"
        )
    return model.embed_speaker(value, sr)


def verify(
    enroll_items: Item | Sequence[Item] | np.ndarray,
    test_item: Item,
    model: Inference | Encoder | None = None,
    threshold: float | None = None,
    sr: int | None = None,
) -> VerificationResult:
    """Is ``test_item`` spoken by the speaker of ``enroll_items``?

    Args:
        enroll_items: one or more enrollment utterances (averaged as in :func:`embed_speaker`), or the
            speaker's ``(D,)`` embedding from :func:`embed_speaker` (to verify many test items against it).
        test_item: the utterance to check.
        model: an encoder from :func:`load_model` (default: the bundled one).
        threshold: accept when the cosine score is at or above it; default :func:`default_threshold`.
        sr: sample rate in Hz of bare waveform arrays among the items.

    Returns:
        :class:`VerificationResult` with the score, the decision, the threshold that made it, and the test
        utterance's speech (flagged ``short`` under :data:`ge2e.inference.SHORT_SPEECH_SECONDS`).

    Raises:
        AudioError: an utterance cannot be used (the line names it); Ge2eError: no threshold available.
    """
    model = _inference(model)
    threshold = default_threshold(model) if threshold is None else float(threshold)
    enrolled = _enrolled(enroll_items, model, sr, "the enrollment")
    test, seconds = _embed_test(test_item, model, sr)
    score = float(np.dot(enrolled, test))
    return VerificationResult(
        score=score,
        same_speaker=score >= threshold,
        threshold=threshold,
        speech_seconds=seconds,
        short=is_short(seconds),
    )


def identify(
    test_item: Item,
    speakers: Mapping[str, Item | Sequence[Item] | np.ndarray],
    model: Inference | Encoder | None = None,
    sr: int | None = None,
) -> list[Match]:
    """Rank enrolled speakers by their cosine score against ``test_item``, best first.

    Args:
        test_item: the utterance to identify.
        speakers: name -> enrollment utterance(s), or a precomputed ``(D,)`` speaker embedding (e.g. from
            :func:`embed_speaker`). A bare 1-D array of size D is taken as an embedding; wrap a single
            waveform as ``[(wav, sr)]``.
        model: an encoder from :func:`load_model` (default: the bundled one).
        sr: sample rate in Hz of bare waveform arrays among the items.

    Returns:
        One :class:`Match` per speaker, sorted by decreasing score. For open-set use, compare the top score
        with :func:`default_threshold` (or your own).
    """
    if not speakers:
        raise Ge2eError("identify needs at least one enrolled speaker")
    model = _inference(model)
    test, seconds = _embed_test(test_item, model, sr)
    short = is_short(seconds)
    matches = []
    for name, value in speakers.items():
        enrolled = _enrolled(value, model, sr, f"speaker {name!r}")
        matches.append(Match(str(name), float(np.dot(enrolled, test)), seconds, short))
    return sorted(matches, key=lambda m: m.score, reverse=True)


def score_pairs(
    pairs: Sequence[tuple[Item, Item]],
    model: Inference | Encoder | None = None,
    sr: int | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Cosine scores ``(N,)`` of ``N`` (enroll, test) pairs of utterances, as SpeechBrain's ``verify_files``
    over a trial list: each distinct item is embedded once (paths by name, in-memory items by identity),
    ``batch_size`` at a time. Compare them with :func:`default_threshold` (or your own).

    Raises:
        AudioError: an item cannot be used; the line names it.
    """
    if not pairs:
        raise Ge2eError("score_pairs needs at least one (enroll, test) pair")
    model = _inference(model)
    row_of: dict[object, int] = {}
    items: list[Item] = []
    for pair in pairs:
        for item in pair:
            key = str(item) if isinstance(item, str | Path) else id(item)
            if key not in row_of:
                row_of[key] = len(items)
                items.append(item)
    vectors = model.embed_utterances(items, sr, batch_size)

    def row(item: Item) -> np.ndarray:
        return vectors[row_of[str(item) if isinstance(item, str | Path) else id(item)]]

    return np.array([float(np.dot(row(enroll), row(test))) for enroll, test in pairs], dtype=np.float32)
