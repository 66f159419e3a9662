"""Sliding-window inference: 160-frame windows with 50% overlap, averaged d-vectors (paper, Sec. 4)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ge2e.config import AudioConfig, InferenceConfig
from ge2e.errors import AudioError

logger = logging.getLogger(__name__)


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


def average_embeddings(embeddings: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """``(U, D)`` d-vectors -> ``(D,)`` float32: rows L2-normalised, averaged, and the average normalised."""
    rows = np.asarray(embeddings, dtype=np.float64)
    rows = rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
    mean = rows.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def utterance_embedding(window_embeddings: torch.Tensor) -> torch.Tensor:
    """Average L2-normalised window d-vectors and normalise again: ``(W, D) -> (D,)``."""
    return F.normalize(F.normalize(window_embeddings, dim=-1).mean(dim=0), dim=0)


@torch.inference_mode()
def embed_mels(
    model: torch.nn.Module, mels: list[torch.Tensor], cfg: InferenceConfig = InferenceConfig()
) -> torch.Tensor:
    """d-vectors of many utterances, batching windows across utterances: ``[(T_u, n_mels)] -> (U, D)``.

    All full-length windows share one shape, so they are stacked across utterances and run ``batch_windows``
    at a time; the few utterances shorter than one window are run in groups of equal length.
    """
    device = getattr(model, "device", None) or next(model.parameters()).device
    pieces = [windows(mel, cfg) for mel in mels]
    owner = torch.cat([torch.full((p.shape[0],), u) for u, p in enumerate(pieces)])
    by_length: dict[int, list[int]] = {}
    for u, p in enumerate(pieces):
        by_length.setdefault(p.shape[1], []).append(u)
    dvectors = torch.empty(len(owner), model.embedding_size)
    starts = torch.tensor([0] + [p.shape[0] for p in pieces]).cumsum(0)
    for members in by_length.values():
        rows = torch.cat([torch.arange(starts[u], starts[u + 1]) for u in members])
        stacked = torch.cat([pieces[u] for u in members])
        for lo in range(0, len(rows), cfg.batch_windows):
            batch = stacked[lo : lo + cfg.batch_windows].to(device)
            dvectors[rows[lo : lo + cfg.batch_windows]] = model(batch).float().cpu()
    summed = torch.zeros(len(mels), dvectors.shape[1]).index_add_(0, owner, dvectors)
    return torch.nn.functional.normalize(summed, dim=-1)


@dataclass
class EmbeddedFiles:
    """Result of :func:`embed_files`: ``(U, D)`` d-vectors of the files that worked, and why the others failed."""

    paths: list[str]
    embeddings: np.ndarray
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.paths, self.embeddings, strict=True))


def embed_files(
    model: torch.nn.Module,
    paths: Sequence[str | Path],
    batch_size: int = 32,
    progress: bool = True,
    audio: AudioConfig | None = None,
) -> EmbeddedFiles:
    """d-vectors of many audio files, ``batch_size`` utterances at a time with windows batched across them.

    A file that cannot be used (missing, corrupt, silent, too short, ...) is skipped, logged, and listed in
    ``errors`` with its one-line reason; the others are still embedded.
    """
    from ge2e.audio import preprocess

    audio = audio or model.audio
    kept: list[str] = []
    chunks: list[torch.Tensor] = []
    errors: dict[str, str] = {}
    pending: list[torch.Tensor] = []
    for path in tqdm(paths, desc="embed", unit="file", disable=not progress, dynamic_ncols=True):
        try:
            pending.append(torch.from_numpy(preprocess(path, cfg=audio)))
            kept.append(str(path))
        except AudioError as exc:
            errors[str(path)] = exc.problem
            logger.warning("skipped %s", exc)
        if len(pending) == batch_size:
            chunks.append(embed_mels(model, pending, model.inference))
            pending = []
    if pending:
        chunks.append(embed_mels(model, pending, model.inference))
    dim = model.embedding_size
    embeddings = torch.cat(chunks).numpy() if chunks else np.zeros((0, dim), dtype=np.float32)
    return EmbeddedFiles(kept, embeddings, errors)
