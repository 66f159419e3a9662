"""The GE2E similarity matrix as pure tensor functions (paper Eq. 5, 8 and 9).

Shapes: ``N`` speakers, ``M`` utterances per speaker, ``D`` embedding size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def check_batch(embeddings: torch.Tensor) -> tuple[int, int, int]:
    """Validate an ``(N, M, D)`` batch and return its sizes; GE2E needs N >= 2 and M >= 2."""
    if embeddings.dim() != 3:
        raise ValueError(f"embeddings must have shape (N, M, D), got {tuple(embeddings.shape)}")
    n, m, d = embeddings.shape
    if n < 2:
        raise ValueError(f"GE2E needs at least 2 speakers per batch (N >= 2), got N={n}")
    if m < 2:
        raise ValueError(f"GE2E needs at least 2 utterances per speaker (M >= 2), got M={m}")
    return n, m, d


def centroids(embeddings: torch.Tensor) -> torch.Tensor:
    """Speaker centroids c_k, the mean of each speaker's M embeddings (Eq. 1). ``(N, M, D) -> (N, D)``."""
    return embeddings.mean(dim=1)


def exclusive_centroids(embeddings: torch.Tensor) -> torch.Tensor:
    """Leave-one-out centroids c_j^(-i) = (sum_m e_jm - e_ji) / (M - 1) (Eq. 8). ``(N, M, D) -> (N, M, D)``.

    Excluding e_ji keeps the true-speaker similarity from being inflated by the utterance itself, which
    otherwise makes training converge to trivial solutions more easily (paper, Sec. 2.1).
    """
    m = embeddings.shape[1]
    return (embeddings.sum(dim=1, keepdim=True) - embeddings) / (m - 1)


def cosine_to_centroids(embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarities cos(e_ji, c_k), with c_j^(-i) on the diagonal k = j (Eq. 9). ``-> (N, M, N)``."""
    n, _, _ = check_batch(embeddings)
    e = F.normalize(embeddings, dim=-1, eps=_EPS)
    c = F.normalize(centroids(embeddings), dim=-1, eps=_EPS)
    c_excl = F.normalize(exclusive_centroids(embeddings), dim=-1, eps=_EPS)
    cos_all = torch.einsum("jid,kd->jik", e, c)
    cos_self = (e * c_excl).sum(dim=-1)
    same = torch.eye(n, dtype=torch.bool, device=embeddings.device).unsqueeze(1)
    return torch.where(same, cos_self.unsqueeze(-1), cos_all)


def similarity_matrix(embeddings: torch.Tensor, w: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor:
    """S[j, i, k] = w * cos(e_ji, c_k) + b with the leave-one-out centroid for k = j (Eq. 9).

    Args:
        embeddings: ``(N, M, D)`` utterance embeddings e_ji (need not be normalised).
        w: similarity scale, must be > 0 (the loss module enforces it).
        b: similarity bias.

    Returns:
        ``(N, M, N)`` similarity matrix.
    """
    return w * cosine_to_centroids(embeddings) + b
