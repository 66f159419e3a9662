"""Sliding-window inference: 160-frame windows with 50% overlap, averaged d-vectors (paper, Sec. 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ge2e.config import InferenceConfig


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


def utterance_embedding(window_embeddings: torch.Tensor) -> torch.Tensor:
    """Average L2-normalised window d-vectors and normalise again: ``(W, D) -> (D,)``."""
    return F.normalize(F.normalize(window_embeddings, dim=-1).mean(dim=0), dim=0)
