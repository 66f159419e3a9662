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


@torch.inference_mode()
def embed_mels(
    model: torch.nn.Module, mels: list[torch.Tensor], cfg: InferenceConfig = InferenceConfig()
) -> torch.Tensor:
    """d-vectors of many utterances, batching windows across utterances: ``[(T_u, n_mels)] -> (U, D)``.

    All full-length windows share one shape, so they are stacked across utterances and run ``batch_windows``
    at a time; the few utterances shorter than one window are run in groups of equal length.
    """
    device = next(model.parameters()).device
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
