"""The user-facing API: load the bundled model, embed utterances and speakers, verify and identify.

A thin layer over :class:`ge2e.model.SpeakerEncoder` and :mod:`ge2e.inference`::

    import ge2e
    result = ge2e.verify(["alice_1.wav", "alice_2.wav"], "unknown.wav")
    result.same_speaker, result.score, result.threshold

An *item* is one utterance: a path, a waveform array (give its sample rate with ``sr=``), or a
``(waveform, sample_rate)`` tuple. Waveforms are ``(L,)`` mono or ``(L, C)`` / ``(C, L)`` multi-channel samples,
integer PCM or floats in [-1, 1] (see :func:`ge2e.audio.load_audio`). Every embedding is a float32 ``(D,)``
array of unit L2 norm, and every score is a cosine similarity in [-1, 1].
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ge2e.audio import preprocess
from ge2e.errors import CheckpointError, Ge2eError
from ge2e.inference import EmbeddedFiles, average_embeddings, embed_mels
from ge2e.inference import embed_files as _embed_files
from ge2e.model import SpeakerEncoder

logger = logging.getLogger(__name__)

BUNDLED_MODEL = "ge2e_small.pt"
Item = str | Path | np.ndarray | tuple[np.ndarray, int]


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verify`: ``same_speaker`` is ``score >= threshold``."""

    score: float  # cosine similarity of the enrollment and test d-vectors, in [-1, 1]
    same_speaker: bool
    threshold: float


@dataclass(frozen=True)
class Match:
    """One candidate of :func:`identify`: a speaker name and the cosine score of the test item against it."""

    speaker: str
    score: float


# ------------------------------------------------------------------------------------------------------ models


def bundled_model_path() -> Path:
    """Path of the model file shipped inside the package (it may be missing in a source checkout)."""
    return Path(str(resources.files("ge2e.pretrained").joinpath(BUNDLED_MODEL)))


def calibration_path(model_path: str | Path) -> Path:
    """The calibration file of a checkpoint: the same path with a ``.json`` suffix (``best.pt`` -> ``best.json``)."""
    return Path(model_path).with_suffix(".json")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> SpeakerEncoder:
    """Load a speaker encoder, with no network access.

    Args:
        path: a checkpoint written by ``ge2e train`` or :meth:`SpeakerEncoder.save`; ``None`` loads the model
            bundled with the package.
        device: where to put the model (``"cpu"``, ``"cuda"``, ...).

    Returns:
        The encoder in eval mode. Loaded models are cached per process, keyed by file, modification time and
        device, so repeated calls are free and return the same object. ``model.calibration`` holds the
        checkpoint's calibration record (``<path>.json``, see :func:`default_threshold`), or ``None``.

    Raises:
        CheckpointError: the file is missing, corrupt or not a ge2e checkpoint (one line naming the file).
    """
    resolved = bundled_model_path() if path is None else Path(path).expanduser()
    if path is None and not resolved.exists():
        raise CheckpointError(resolved, "the bundled model file is missing; reinstall ge2e or pass a checkpoint path")
    mtime = resolved.stat().st_mtime_ns if resolved.is_file() else 0
    return _load_cached(str(resolved.resolve()), mtime, str(torch.device(device)))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, device: str) -> SpeakerEncoder:
    """Load once per (file, version, device); ``mtime_ns`` is part of the key so a rewritten file is reloaded."""
    model = SpeakerEncoder.load(path, device)
    model.calibration = _read_calibration(Path(path))
    return model


def _read_calibration(model_path: Path) -> dict[str, Any] | None:
    """The calibration record beside ``model_path``, or ``None`` when absent or made for another file."""
    json_path = calibration_path(model_path)
    if not json_path.exists():
        return None
    try:
        record = json.loads(json_path.read_text())
        threshold = float(record["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(json_path, f"unreadable calibration file ({exc})") from None
    if record.get("model_sha256") not in (None, file_sha256(model_path)):
        # a stale threshold silently biases every decision, so it is dropped rather than used
        logger.warning("%s was calibrated for another version of %s; ignoring it", json_path, model_path.name)
        return None
    return {**record, "threshold": threshold}


def default_threshold(model: SpeakerEncoder) -> float:
    """The model's calibrated decision threshold (cosine score).

    It is the equal-error-rate threshold on the official development trial lists, written beside the
    checkpoint by ``recipes/shared_ti/calibrate.py``; ``model.calibration`` holds the full record.

    Raises:
        Ge2eError: the model has no (valid) calibration file; pass ``threshold=`` explicitly instead.
    """
    calibration = getattr(model, "calibration", None)
    if not calibration:
        raise Ge2eError(
            "this model has no calibrated threshold (<checkpoint>.json): pass a threshold, "
            "or run recipes/shared_ti/calibrate.py on the checkpoint"
        )
    return float(calibration["threshold"])


# --------------------------------------------------------------------------------------------------- embedding


def _is_array_item(item: Any) -> bool:
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], np.ndarray)
        and isinstance(item[1], int | np.integer)
    )


def _as_items(items: Item | Sequence[Item]) -> list[Item]:
    """One item or a sequence of items -> a non-empty list of items."""
    if isinstance(items, str | Path | np.ndarray) or _is_array_item(items):
        return [items]  # type: ignore[list-item]
    listed = list(items)  # type: ignore[arg-type]
    if not listed:
        raise Ge2eError("no utterances given")
    return listed


def _features(item: Item, model: SpeakerEncoder, sr: int | None) -> torch.Tensor:
    """``(T, n_mels)`` log-mel features of one item through the model's own front end."""
    if _is_array_item(item):
        wav, item_sr = item  # type: ignore[misc]
        return torch.from_numpy(preprocess(wav, sr=int(item_sr), cfg=model.audio))
    if isinstance(item, np.ndarray):
        return torch.from_numpy(preprocess(item, sr=sr, cfg=model.audio))
    if isinstance(item, str | Path):
        return torch.from_numpy(preprocess(item, cfg=model.audio))
    raise TypeError(f"an utterance must be a path, an array or an (array, sr) tuple, got {type(item).__name__}")


def embed_utterances(
    items: Item | Sequence[Item], model: SpeakerEncoder | None = None, sr: int | None = None
) -> np.ndarray:
    """d-vectors of several utterances, windows batched across them: ``U`` items -> ``(U, D)`` float32, unit rows.

    Raises:
        AudioError: an item cannot be used (missing, corrupt, silent, too short); the line names the file.
    """
    model = model or load_model()
    mels = [_features(item, model, sr) for item in _as_items(items)]
    return embed_mels(model, mels, model.inference).numpy()


def embed_utterance(item: Item, model: SpeakerEncoder | None = None, sr: int | None = None) -> np.ndarray:
    """d-vector ``(D,)`` float32, unit norm, of one utterance (path, array with ``sr``, or ``(array, sr)``)."""
    return embed_utterances([item], model, sr)[0]


def embed_speaker(
    items: Item | Sequence[Item], model: SpeakerEncoder | None = None, sr: int | None = None
) -> np.ndarray:
    """Speaker embedding from enrollment utterances -> ``(D,)`` float32, unit norm.

    The paper's enrollment (Sec. 2.1, Sec. 4): the L2-normalised utterance d-vectors are averaged, and the
    average is normalised again (the speaker's centroid on the unit sphere).
    """
    return average_embeddings(embed_utterances(items, model, sr))


def embed_files(
    paths: Sequence[str | Path],
    model: SpeakerEncoder | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> EmbeddedFiles:
    """d-vectors of many files, ``batch_size`` utterances at a time, with a progress bar.

    Files that cannot be used are skipped and listed with their reason in ``result.errors``; see
    :func:`ge2e.inference.embed_files`. ``result.embeddings`` is ``(U, D)`` for the ``U`` files in
    ``result.paths``.
    """
    return _embed_files(model or load_model(), paths, batch_size=batch_size, progress=progress)


# --------------------------------------------------------------------------------------------------- decisions


def verify(
    enroll_items: Item | Sequence[Item],
    test_item: Item,
    model: SpeakerEncoder | None = None,
    threshold: float | None = None,
    sr: int | None = None,
) -> VerificationResult:
    """Is ``test_item`` spoken by the speaker of ``enroll_items``?

    Args:
        enroll_items: one or more enrollment utterances (averaged as in :func:`embed_speaker`).
        test_item: the utterance to check.
        model: an encoder from :func:`load_model` (default: the bundled one).
        threshold: accept when the cosine score is at or above it; default :func:`default_threshold`.
        sr: sample rate in Hz of bare waveform arrays among the items.

    Returns:
        :class:`VerificationResult` with the score, the decision and the threshold that made it.

    Raises:
        AudioError: an utterance cannot be used (the line names it); Ge2eError: no threshold available.
    """
    model = model or load_model()
    threshold = default_threshold(model) if threshold is None else float(threshold)
    enrolled = embed_speaker(enroll_items, model, sr)
    score = float(np.dot(enrolled, embed_utterance(test_item, model, sr)))
    return VerificationResult(score=score, same_speaker=score >= threshold, threshold=threshold)


def identify(
    test_item: Item,
    speakers: Mapping[str, Item | Sequence[Item] | np.ndarray],
    model: SpeakerEncoder | None = None,
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
    model = model or load_model()
    test = embed_utterance(test_item, model, sr)
    matches = []
    for name, value in speakers.items():
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.shape[0] == model.embedding_size:
            enrolled = average_embeddings(value[None])
        elif isinstance(value, np.ndarray):
            raise Ge2eError(
                f"speaker {name!r}: an array must be a ({model.embedding_size},) embedding; "
                "wrap a waveform as [(wav, sr)]"
            )
        else:
            enrolled = embed_speaker(value, model, sr)
        matches.append(Match(str(name), float(np.dot(enrolled, test))))
    return sorted(matches, key=lambda m: m.score, reverse=True)
