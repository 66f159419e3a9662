"""Audio and frames -> d-vectors, for any :class:`Encoder` (PyTorch, TorchScript or ONNX).

One path: :func:`ge2e.audio.preprocess` turns audio into log-mel frames, :func:`embed_mels` turns frames into
d-vectors (160-frame windows with 50% overlap, batched across utterances; the window d-vectors are averaged by
:func:`normalize_average`, paper Sec. 4), and every entry point (API, CLI, service, diarization, evaluation)
goes through them. Nothing here knows which kind of encoder it runs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ge2e.audio import speech_features
from ge2e.config import AudioConfig, InferenceConfig
from ge2e.decoding import Source, is_array_item
from ge2e.errors import AudioError, Ge2eError

logger = logging.getLogger(__name__)

# Scoring takes any speech the VAD finds (at least one analysis window): AudioConfig.min_speech_ms is what training
# data needs, and a keyword or a digit has less. A score from less than SHORT_SPEECH_SECONDS of speech is flagged
# short instead: benchmarks/short_utterances.py measures how much weaker it is (docs/usage.md, Short utterances).
SCORING_MIN_SPEECH_MS = 0.0
SHORT_SPEECH_SECONDS = 1.0

Item = Source  # one utterance: a path, file bytes, an array (with ``sr``) or an (array, sr) tuple


@runtime_checkable
class Encoder(Protocol):
    """What every speaker encoder offers: ``(B, T, n_mels)`` log-mel frames in, ``(B, D)`` unit d-vectors out.

    ``audio`` is the front end the frames must come from, ``inference`` the sliding windows, ``calibration``
    the decision-threshold record (``None`` when uncalibrated) and ``fingerprint`` an id that is equal for two
    encoders exactly when their d-vectors are comparable (``None`` until known; see :func:`model_fingerprint`).
    :class:`ge2e.model.SpeakerEncoder` and the exported encoders of :mod:`ge2e.export` satisfy it.
    """

    audio: AudioConfig
    inference: InferenceConfig
    calibration: dict[str, Any] | None
    fingerprint: str | None

    @property
    def embedding_size(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------------- windows


def window_starts(num_frames: int, cfg: InferenceConfig = InferenceConfig()) -> list[int]:
    """Start frames of the windows covering ``num_frames`` frames.

    Windows start every ``hop_frames``; when they do not reach the end, one more window is aligned with the
    last frame so that no speech is dropped. An utterance shorter than one window is a single window of its own
    length (the LSTM takes any length; its last frame still summarises the whole input).
    """
    if num_frames <= 0:
        raise ValueError("cannot window an utterance with no frames")
    size = cfg.window_frames
    if num_frames <= size:
        return [0]
    starts = list(range(0, num_frames - size + 1, cfg.hop_frames))
    if starts[-1] + size < num_frames:
        starts.append(num_frames - size)
    return starts


def windows(mel: torch.Tensor, cfg: InferenceConfig = InferenceConfig()) -> torch.Tensor:
    """Cut ``(T, n_mels)`` frames into ``(W, min(T, window_frames), n_mels)`` windows."""
    size = min(mel.shape[0], cfg.window_frames)
    return torch.stack([mel[s : s + size] for s in window_starts(mel.shape[0], cfg)])


# ----------------------------------------------------------------------------------------------- averaging


def normalize_average(vectors: torch.Tensor, groups: torch.Tensor | None = None, count: int = 1) -> torch.Tensor:
    """Normalise, average, normalise: rows L2-normalised, averaged (per group), the average normalised again.

    The paper's utterance d-vector from its window d-vectors, and its speaker model from utterance d-vectors.

    Args:
        vectors: ``(N, D)`` d-vectors.
        groups: ``(N,)`` group index of each row in ``[0, count)``; ``None`` averages all rows into one.
        count: number of groups.

    Returns:
        ``(D,)`` when ``groups`` is None, else ``(count, D)``.
    """
    rows = F.normalize(vectors, dim=-1)
    if groups is None:
        return F.normalize(rows.mean(dim=0), dim=0)
    summed = torch.zeros(count, rows.shape[-1], dtype=rows.dtype).index_add_(0, groups, rows)
    return F.normalize(summed, dim=-1)


def average_embeddings(embeddings: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """``(U, D)`` d-vectors -> ``(D,)`` float32 speaker embedding (:func:`normalize_average`, in float64)."""
    rows = torch.from_numpy(np.asarray(embeddings, dtype=np.float64))
    return normalize_average(rows).numpy().astype(np.float32)


# -------------------------------------------------------------------------------------------- frames -> d-vector


@torch.inference_mode()
def embed_frames(encoder: Encoder, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``(B, T, n_mels)`` windows -> ``(B, D)`` float32 CPU d-vectors, ``inference.batch_windows`` at a time."""
    frames = torch.as_tensor(frames, dtype=torch.float32)
    step = encoder.inference.batch_windows
    parts = [encoder(frames[lo : lo + step].to(encoder.device)).float().cpu() for lo in range(0, len(frames), step)]
    return torch.cat(parts) if parts else torch.zeros(0, encoder.embedding_size)


@torch.inference_mode()
def embed_mels(
    encoder: Encoder, mels: Sequence[torch.Tensor | np.ndarray], cfg: InferenceConfig | None = None
) -> torch.Tensor:
    """d-vectors of utterances from their log-mel frames: ``[(T_u, n_mels)] -> (U, D)`` float32, unit rows.

    Each utterance is cut into :func:`windows`; full-length windows of all utterances share one shape and are
    run together, the few utterances shorter than one window in groups of equal length. The window d-vectors
    of each utterance go through :func:`normalize_average`. An int8 encoder runs each utterance's windows alone.
    """
    cfg = cfg or encoder.inference
    pieces = [windows(torch.as_tensor(mel, dtype=torch.float32), cfg) for mel in mels]
    owner = torch.cat([torch.full((p.shape[0],), u) for u, p in enumerate(pieces)])
    starts = torch.tensor([0] + [p.shape[0] for p in pieces]).cumsum(0)
    batches: dict[int, list[int]] = {}
    for u, p in enumerate(pieces):
        # Dynamic int8 quantises activations with one range per batch, so a window's d-vector would move (by
        # ~1e-3 in cosine) with whatever shares its batch: an utterance runs alone there, and a file gets the
        # same d-vector whichever call embeds it. At one thread int8 ONNX Runtime is no slower at small batches.
        batches.setdefault(u if getattr(encoder, "int8", False) else -p.shape[1], []).append(u)
    dvectors = torch.empty(len(owner), encoder.embedding_size)
    for members in batches.values():
        rows = torch.cat([torch.arange(starts[u], starts[u + 1]) for u in members])
        dvectors[rows] = embed_frames(encoder, torch.cat([pieces[u] for u in members]))
    return normalize_average(dvectors, owner, len(pieces))


# --------------------------------------------------------------------------------------------- audio -> d-vector


def as_items(items: Item | Sequence[Item]) -> list[Item]:
    """One item or a sequence of items -> a non-empty list of items."""
    if isinstance(items, str | Path | bytes | np.ndarray) or is_array_item(items):
        return [items]  # type: ignore[list-item]
    listed = list(items)  # type: ignore[arg-type]
    if not listed:
        raise Ge2eError("no utterances given")
    return listed


def scoring_features(encoder: Encoder, item: Item, sr: int | None = None, name: str | None = None) -> np.ndarray:
    """``(T, n_mels)`` log-mel frames of one utterance to embed: :func:`ge2e.audio.preprocess` keeping any
    speech, however short (see :data:`SCORING_MIN_SPEECH_MS`).

    Raises:
        AudioError: the item cannot be used (missing, corrupt, silent, no speech); the line names it.
    """
    return speech_features(item, sr, encoder.audio, name=name, min_speech_ms=SCORING_MIN_SPEECH_MS)[0]


def speech_seconds(mel: np.ndarray | torch.Tensor, cfg: AudioConfig) -> float:
    """Seconds of speech behind ``(T, n_mels)`` frames (one frame per hop)."""
    return mel.shape[0] * cfg.hop_ms / 1000


def is_short(seconds: float) -> bool:
    """Whether a score from ``seconds`` of speech is flagged short (less than :data:`SHORT_SPEECH_SECONDS`)."""
    return seconds < SHORT_SPEECH_SECONDS


def embed_with_speech(
    encoder: Encoder, items: Item | Sequence[Item], sr: int | None = None, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`embed_utterances` and the seconds of speech behind each d-vector: ``((U, D), (U,))``."""
    listed = as_items(items)
    step = len(listed) if batch_size is None else batch_size
    if step < 1:
        raise Ge2eError(f"batch_size must be >= 1, got {batch_size}")
    vectors, seconds = [], []
    # features of one batch at a time: a long list of in-memory recordings never holds all their frames at once
    for lo in range(0, len(listed), step):
        mels = [scoring_features(encoder, item, sr) for item in listed[lo : lo + step]]
        seconds.extend(speech_seconds(mel, encoder.audio) for mel in mels)
        vectors.append(embed_mels(encoder, mels).numpy())
    return np.concatenate(vectors), np.array(seconds)


def embed_utterances(
    encoder: Encoder, items: Item | Sequence[Item], sr: int | None = None, batch_size: int | None = None
) -> np.ndarray:
    """d-vectors of utterances (paths, bytes, arrays with ``sr``, ``(array, sr)``) -> ``(U, D)`` float32,
    ``batch_size`` utterances at a time (default: all at once).

    Raises:
        AudioError: an item cannot be used (missing, corrupt, silent, no speech); the line names it.
    """
    return embed_with_speech(encoder, items, sr, batch_size)[0]


@dataclass(frozen=True)
class Partials:
    """One utterance's d-vector with the window d-vectors it averages (Resemblyzer's ``return_partials``)."""

    embedding: np.ndarray  # (D,) the utterance d-vector
    partials: np.ndarray  # (W, D) unit d-vector of each window
    spans: np.ndarray  # (W, 2) start and end second of each window in the input audio


def embed_partials(encoder: Encoder, item: Item, sr: int | None = None) -> Partials:
    """The utterance d-vector of ``item`` and its windows' d-vectors with their time spans.

    Windows cover speech only (the VAD's silence is cut before framing), so a span that straddles a pause is
    longer than the window's 1.6 s of speech; spans are seconds in the input audio.
    """
    mel, positions = speech_features(item, sr, encoder.audio, min_speech_ms=SCORING_MIN_SPEECH_MS)
    cfg, audio = encoder.inference, encoder.audio
    starts = np.asarray(window_starts(mel.shape[0], cfg))
    size = min(mel.shape[0], cfg.window_frames)
    vectors = F.normalize(embed_frames(encoder, windows(torch.from_numpy(mel), cfg)), dim=-1)
    first = positions[starts * audio.hop_length]
    last = positions[np.minimum((starts + size - 1) * audio.hop_length + audio.win_length, len(positions)) - 1]
    spans = np.stack([first, last + 1], axis=1) / audio.sample_rate
    return Partials(normalize_average(vectors).numpy(), vectors.numpy(), spans)


def embed_speaker(encoder: Encoder, items: Item | Sequence[Item], sr: int | None = None) -> np.ndarray:
    """Speaker embedding ``(D,)`` from enrollment utterances: their d-vectors through :func:`normalize_average`
    (the paper's enrollment, Sec. 2.1 and 4: the speaker's centroid on the unit sphere)."""
    return average_embeddings(embed_utterances(encoder, items, sr))


@dataclass
class EmbeddedFiles:
    """Result of :func:`embed_files`: ``(U, D)`` d-vectors of the files that worked, and why the others failed."""

    paths: list[str]
    embeddings: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.paths, self.embeddings, strict=True))


def embed_files(
    encoder: Encoder, paths: Sequence[str | Path], batch_size: int = 32, progress: bool = True
) -> EmbeddedFiles:
    """d-vectors of many audio files, ``batch_size`` utterances at a time with windows batched across them.

    A file that cannot be used (missing, corrupt, silent, no speech, ...) is skipped, logged, and listed in
    ``errors`` with its one-line reason; the others are still embedded, however short their speech.
    """
    kept: list[str] = []
    chunks: list[torch.Tensor] = []
    errors: dict[str, str] = {}
    pending: list[np.ndarray] = []
    for path in tqdm(paths, desc="embed", unit="file", disable=not progress, dynamic_ncols=True):
        try:
            pending.append(scoring_features(encoder, path))
            kept.append(str(path))
        except AudioError as exc:
            errors[str(path)] = exc.problem
            logger.warning("skipped %s", exc)
        if len(pending) == batch_size:
            chunks.append(embed_mels(encoder, pending))
            pending = []
    if pending:
        chunks.append(embed_mels(encoder, pending))
    dim = encoder.embedding_size
    embeddings = torch.cat(chunks).numpy() if chunks else np.zeros((0, dim), dtype=np.float32)
    return EmbeddedFiles(kept, embeddings, errors)


# ---------------------------------------------------------------------------------------------- identity


def model_fingerprint(encoder: Encoder) -> str:
    """The one id of an encoder's d-vectors: ``encoder.fingerprint`` (the SHA-256 of the model file, set by
    :func:`ge2e.pretrained.load_model`), else a SHA-256 of the weights and settings of an in-memory model.
    Embedding stores and calibration records are tied to it."""
    if getattr(encoder, "fingerprint", None):
        return str(encoder.fingerprint)
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):  # type: ignore[attr-defined]
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr((encoder.audio, encoder.inference)).encode())
    return digest.hexdigest()


class EmbedMethods:
    """The embedding functions of this module as methods (``model.embed_utterance(path)``), for any encoder."""

    def embed_frames(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``(B, T, n_mels)`` frames -> ``(B, D)`` d-vectors (see :func:`embed_frames`)."""
        return embed_frames(self, frames)  # type: ignore[arg-type]

    def embed_mel(self, mel: np.ndarray | torch.Tensor) -> np.ndarray:
        """Utterance d-vector ``(D,)`` from its ``(T, n_mels)`` log-mel frames (see :func:`embed_mels`)."""
        return embed_mels(self, [mel])[0].numpy()  # type: ignore[arg-type]

    def embed_utterance(self, source: Item, sr: int | None = None) -> np.ndarray:
        """d-vector ``(D,)`` of an audio file, file bytes or waveform (``sr`` required for bare arrays)."""
        return embed_utterances(self, [source], sr)[0]  # type: ignore[arg-type]

    def embed_speaker(self, items: Item | Sequence[Item], sr: int | None = None) -> np.ndarray:
        """Speaker d-vector ``(D,)`` from enrollment utterances (see :func:`embed_speaker`)."""
        return embed_speaker(self, items, sr)  # type: ignore[arg-type]

    def embed_files(self, paths: Sequence[str | Path], batch_size: int = 32, progress: bool = True) -> EmbeddedFiles:
        """d-vectors of many files, windows batched across them (see :func:`embed_files`)."""
        return embed_files(self, paths, batch_size=batch_size, progress=progress)  # type: ignore[arg-type]
