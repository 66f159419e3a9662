"""Audio and frames -> d-vectors: :class:`Inference` wraps any frames -> d-vector :class:`Encoder` (the PyTorch
:class:`~ge2e.model.SpeakerEncoder`, an ONNX session, a TorchScript module) with its front end, windows,
calibration and fingerprint, and spells every embedding operation once (pyannote's Model / Inference split).

One path: :func:`ge2e.audio.speech_features` turns audio into log-mel frames, :func:`embed_mels` turns frames into
d-vectors (160-frame windows with 50% overlap, batched across utterances; the window d-vectors are averaged by
:func:`normalize_average`, paper Sec. 4), and every entry point (API, CLI, service, diarization, evaluation)
goes through them. Nothing here knows which kind of encoder it runs.
"""

from __future__ import annotations

import copy
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
from ge2e.decoding import DEFAULT_LIMITS, Limits, Source, is_array_item
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

    ``audio`` is the front end the frames must come from and ``inference`` the sliding windows.
    :class:`ge2e.model.SpeakerEncoder`, the exported encoders of :mod:`ge2e.export` and :class:`Inference` (which
    adds calibration, fingerprint and the audio-level operations) satisfy it.
    """

    audio: AudioConfig
    inference: InferenceConfig

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


def speech_seconds(mel: np.ndarray | torch.Tensor, cfg: AudioConfig) -> float:
    """Seconds of speech behind ``(T, n_mels)`` frames (one frame per hop)."""
    return mel.shape[0] * cfg.hop_ms / 1000


def is_short(seconds: float) -> bool:
    """Whether a score from ``seconds`` of speech is flagged short (less than :data:`SHORT_SPEECH_SECONDS`)."""
    return seconds < SHORT_SPEECH_SECONDS


@dataclass
class EmbeddedFiles:
    """Result of :meth:`Inference.embed_files`: ``(U, D)`` d-vectors of the files that worked, and why the others
    failed."""

    paths: list[str]
    embeddings: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.paths, self.embeddings, strict=True))


def model_fingerprint(encoder: Encoder) -> str:
    """The one id of an encoder's d-vectors: its ``fingerprint`` (an :class:`Inference` from
    :func:`ge2e.pretrained.load_model`: the SHA-256 of the model file), else a SHA-256 of the weights and settings
    of an in-memory model. Embedding stores and calibration records are tied to it."""
    if isinstance(encoder, Inference):
        return encoder.fingerprint
    return _hash_weights(encoder)


def _hash_weights(encoder: Encoder) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):  # type: ignore[attr-defined]
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr((encoder.audio, encoder.inference)).encode())
    return digest.hexdigest()


def as_inference(model: Encoder) -> Inference:
    """``model`` itself when it is an :class:`Inference`, else a bare encoder (a freshly trained one) wrapped."""
    return model if isinstance(model, Inference) else Inference(model)


class Inference:
    """Audio -> d-vectors with any frames -> d-vector encoder: the front end, windows, calibration and fingerprint.

    :func:`ge2e.load_model` returns one; ``Inference(encoder)`` serves a freshly trained model. The encoder's own
    attributes (``config``, ``meta``, ``state_dict``, ...) read through, so code written for the encoder keeps
    working; ``.encoder`` is the module itself (for fine-tuning, export).

    Args:
        encoder: ``(B, T, n_mels)`` frames -> ``(B, D)`` unit d-vectors, with the ``audio`` and ``inference``
            configs it was trained with (:class:`Encoder`).
        calibration: the decision-threshold record (:func:`ge2e.pretrained.default_threshold`), or ``None``.
        fingerprint: the id of the encoder's d-vectors (the model file's SHA-256); ``None``: hashed from the weights.
        diarization: the diarization settings tuned for this model, or ``None`` (the untuned defaults).
        limits: what the decoder accepts (:class:`ge2e.decoding.Limits`; the CLI's ``--max-seconds``).
    """

    def __init__(
        self,
        encoder: Encoder,
        calibration: dict[str, Any] | None = None,
        fingerprint: str | None = None,
        diarization: dict[str, Any] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.encoder = encoder
        self.audio: AudioConfig = encoder.audio
        self.inference: InferenceConfig = encoder.inference
        self.calibration = calibration
        self.diarization = diarization
        self.limits = limits
        self._fingerprint = fingerprint

    def __getattr__(self, name: str) -> Any:
        if name == "encoder":  # not yet set (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def __repr__(self) -> str:
        return f"Inference({self.encoder!r})"

    @property
    def fingerprint(self) -> str:
        """The id of this model's d-vectors (:func:`model_fingerprint`)."""
        if self._fingerprint is None:
            self._fingerprint = _hash_weights(self.encoder)
        return self._fingerprint

    @property
    def embedding_size(self) -> int:
        return self.encoder.embedding_size

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def int8(self) -> bool:
        return bool(getattr(self.encoder, "int8", False))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)

    def with_limits(self, limits: Limits) -> Inference:
        """The same model decoding within other ``limits`` (a copy: a cached model stays as it was)."""
        other = copy.copy(self)
        other.limits = limits
        return other

    def features(self, item: Item, sr: int | None = None, name: str | None = None) -> np.ndarray:
        """``(T, n_mels)`` log-mel frames of one utterance to embed: the front end keeping any speech, however
        short (see :data:`SCORING_MIN_SPEECH_MS`).

        Raises:
            AudioError: the item cannot be used (missing, corrupt, silent, no speech); the line names it.
        """
        return self._speech_features(item, sr, name)[0]

    def _speech_features(self, item: Item, sr: int | None, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        return speech_features(
            item, sr, self.audio, name=name, min_speech_ms=SCORING_MIN_SPEECH_MS, limits=self.limits
        )

    def embed_with_speech(
        self, items: Item | Sequence[Item], sr: int | None = None, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed_utterances` and the seconds of speech behind each d-vector: ``((U, D), (U,))``."""
        listed = as_items(items)
        step = len(listed) if batch_size is None else batch_size
        if step < 1:
            raise Ge2eError(f"batch_size must be >= 1, got {batch_size}")
        vectors, seconds = [], []
        # features of one batch at a time: a long list of in-memory recordings never holds all their frames at once
        for lo in range(0, len(listed), step):
            mels = [self.features(item, sr) for item in listed[lo : lo + step]]
            seconds.extend(speech_seconds(mel, self.audio) for mel in mels)
            vectors.append(embed_mels(self, mels).numpy())
        return np.concatenate(vectors), np.array(seconds)

    def embed_utterances(
        self, items: Item | Sequence[Item], sr: int | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """d-vectors of utterances (paths, bytes, arrays with ``sr``, ``(array, sr)``) -> ``(U, D)`` float32,
        ``batch_size`` utterances at a time (default: all at once), windows batched across them.

        Raises:
            AudioError: an item cannot be used (missing, corrupt, silent, no speech); the line names it.
        """
        return self.embed_with_speech(items, sr, batch_size)[0]

    def embed_utterance(
        self, item: Item, sr: int | None = None, return_partials: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """d-vector ``(D,)`` float32, unit norm, of one utterance (path, bytes, array with ``sr``, ``(array, sr)``).

        With ``return_partials`` (as in Resemblyzer): ``(embedding (D,), partials (W, D), spans (W, 2))``, the
        d-vector of each window and its start and end second in the input audio; ``embedding`` is their
        normalised average. Windows cover speech only (the VAD's silence is cut before framing), so a span that
        straddles a pause is longer than the window's 1.6 s of speech.
        """
        if not return_partials:
            return self.embed_utterances([item], sr)[0]
        mel, positions = self._speech_features(item, sr)
        cfg, audio = self.inference, self.audio
        starts = np.asarray(window_starts(mel.shape[0], cfg))
        size = min(mel.shape[0], cfg.window_frames)
        vectors = F.normalize(embed_frames(self, windows(torch.from_numpy(mel), cfg)), dim=-1)
        first = positions[starts * audio.hop_length]
        last = positions[np.minimum((starts + size - 1) * audio.hop_length + audio.win_length, len(positions)) - 1]
        spans = np.stack([first, last + 1], axis=1) / audio.sample_rate
        return normalize_average(vectors).numpy(), vectors.numpy(), spans

    def embed_speaker(self, items: Item | Sequence[Item], sr: int | None = None) -> np.ndarray:
        """Speaker embedding ``(D,)`` from enrollment utterances: their d-vectors through :func:`normalize_average`
        (the paper's enrollment, Sec. 2.1 and 4: the speaker's centroid on the unit sphere)."""
        return average_embeddings(self.embed_utterances(items, sr))

    def embed_files(self, paths: Sequence[str | Path], batch_size: int = 32, progress: bool = True) -> EmbeddedFiles:
        """d-vectors of many audio files, ``batch_size`` utterances at a time with windows batched across them.

        A file that cannot be used (missing, corrupt, silent, no speech, too long, ...) is skipped, logged, and
        listed in ``errors`` with its one-line reason; the others are still embedded, however short their speech.
        """
        kept: list[str] = []
        chunks: list[torch.Tensor] = []
        errors: dict[str, str] = {}
        pending: list[np.ndarray] = []
        for path in tqdm(paths, desc="embed", unit="file", disable=not progress, dynamic_ncols=True):
            try:
                pending.append(self.features(path))
                kept.append(str(path))
            except AudioError as exc:
                errors[str(path)] = exc.problem
                logger.warning("skipped %s", exc)
            if len(pending) == batch_size:
                chunks.append(embed_mels(self, pending))
                pending = []
        if pending:
            chunks.append(embed_mels(self, pending))
        embeddings = torch.cat(chunks).numpy() if chunks else np.zeros((0, self.embedding_size), dtype=np.float32)
        return EmbeddedFiles(kept, embeddings, errors)
