"""The GE2E similarity matrix as pure tensor functions (paper Eq. 5, 8 and 9).

Shapes: ``N`` speakers, ``M`` utterances per speaker, ``D`` embedding size.
"""

from __future__ import annotations

import torch

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


def cosine_to_centroids(embeddings: torch.Tensor, exclusive: bool = True) -> torch.Tensor:
    """Cosine similarities cos(e_ji, c_k), with the leave-one-out centroid on the diagonal k = j (Eq. 8, 9).

    c_k is the mean of speaker k's M embeddings; for k = j it is c_j^(-i) = (sum_m e_jm - e_ji) / (M - 1), so
    the true-speaker similarity is not inflated by the utterance itself, which otherwise makes training converge
    to trivial solutions more easily (paper, Sec. 2.1).

    Cosines ignore the 1/M and 1/(M-1) scales, so every term follows from one ``(N, M, N)`` product of the
    embeddings with the speaker sums S_k and from squared norms: e.(S_j - e) = e.S_j - |e|^2 and
    |S_j - e|^2 = |S_j|^2 - 2 e.S_j + |e|^2. No ``(N, M, D)`` leave-one-out centroids are built, which roughly
    halves the loss's time (benchmarks/loss.py).

    ``exclusive=False`` gives the inclusive centroid on the diagonal too, the ablation the paper argues against.

    ``(N, M, D) -> (N, M, N)``.
    """
    n, _, _ = check_batch(embeddings)
    sums = embeddings.sum(dim=1)  # (N, D)
    dots = torch.einsum("jid,kd->jik", embeddings, sums)  # e_ji . S_k
    e_sq = embeddings.pow(2).sum(dim=-1)  # (N, M)
    s_sq = sums.pow(2).sum(dim=-1)  # (N,)
    cos_all = dots / (e_sq.unsqueeze(-1) * s_sq).clamp_min(_EPS**2).sqrt()
    if not exclusive:
        return cos_all
    own = dots.diagonal(dim1=0, dim2=2).transpose(0, 1)  # (N, M): e_ji . S_j
    excl_sq = (s_sq.unsqueeze(-1) - 2 * own + e_sq).clamp_min(0)  # |S_j - e_ji|^2, >= 0 up to rounding
    cos_self = (own - e_sq) / (e_sq * excl_sq).clamp_min(_EPS**2).sqrt()
    same = torch.eye(n, dtype=torch.bool, device=embeddings.device).unsqueeze(1)
    return torch.where(same, cos_self.unsqueeze(-1), cos_all)


def similarity_matrix(
    embeddings: torch.Tensor, w: torch.Tensor | float, b: torch.Tensor | float, exclusive: bool = True
) -> torch.Tensor:
    """S[j, i, k] = w * cos(e_ji, c_k) + b with the leave-one-out centroid for k = j (Eq. 9).

    Args:
        embeddings: ``(N, M, D)`` utterance embeddings e_ji (need not be normalised).
        w: similarity scale, must be > 0 (the loss module enforces it).
        b: similarity bias.
        exclusive: leave e_ji out of its own centroid (Eq. 8); False only for the paper's ablation.

    Returns:
        ``(N, M, N)`` similarity matrix.
    """
    return w * cosine_to_centroids(embeddings, exclusive) + b
