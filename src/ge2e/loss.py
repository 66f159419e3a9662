"""GE2E (softmax and contrast, paper Eq. 6, 7 and 10) and the tuple-based TE2E baseline (Eq. 1-3).

The authors published corrections to Eq. (3) and (6); the forms implemented here are the corrected ones:

- Eq. (3), TE2E: ``L = delta(j,k) (1 - sigmoid(s)) + (1 - delta(j,k)) sigmoid(s)``.
- Eq. (6), GE2E softmax: ``L(e_ji) = -S[j,i,j] + log sum_k exp(S[j,i,k])``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ge2e.config import LossConfig
from ge2e.similarity import _EPS, check_batch, similarity_matrix

Method = Literal["softmax", "contrast"]


def softmax_loss(similarity: torch.Tensor) -> torch.Tensor:
    """Sum over all e_ji of -S[j,i,j] + logsumexp_k S[j,i,k] (Eq. 6, 10). ``(N, M, N) -> ()``."""
    n, m, _ = similarity.shape
    targets = torch.arange(n, device=similarity.device).repeat_interleave(m)
    return F.cross_entropy(similarity.reshape(n * m, n), targets, reduction="sum")


def contrast_loss(similarity: torch.Tensor) -> torch.Tensor:
    """Sum over all e_ji of 1 - sigmoid(S[j,i,j]) + max_{k != j} sigmoid(S[j,i,k]) (Eq. 7, 10)."""
    n = similarity.shape[0]
    same = torch.eye(n, dtype=torch.bool, device=similarity.device).unsqueeze(1)
    positive = similarity.diagonal(dim1=0, dim2=2)  # (M, N): S[j, i, j] indexed [i, j]
    # sigmoid is monotonic, so the max of sigmoids is the sigmoid of the max.
    hardest = similarity.masked_fill(same, float("-inf")).amax(dim=-1)
    return (1.0 - torch.sigmoid(positive)).sum() + torch.sigmoid(hardest).sum()


def full_precision(tensor: torch.Tensor) -> torch.autocast:
    """A context that switches autocast off on ``tensor``'s device.

    Under bf16 autocast the cosine products would run in bfloat16 (8 bits of mantissa): with w ~ 10 that is a
    ~1-2% error in every similarity and in the gradients. The loss is a tiny part of a step's cost, so it always
    runs in float32.
    """
    return torch.autocast(tensor.device.type, enabled=False)


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (autocast outputs) as float32; float32 and float64 unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


class _ScaledSimilarity(nn.Module):
    """Learnable scale w > 0 and bias b shared by GE2E and TE2E, with the paper's 0.01 gradient scale."""

    def __init__(self, init_w: float, init_b: float, min_w: float, grad_scale: float, learn: bool = True) -> None:
        super().__init__()
        if init_w <= 0:
            raise ValueError(f"init_w must be > 0, got {init_w}")
        # Parameters even when fixed, so that checkpoints of either kind load into the other
        self.w = nn.Parameter(torch.tensor(float(init_w)), requires_grad=learn)
        self.b = nn.Parameter(torch.tensor(float(init_b)), requires_grad=learn)
        self.min_w = min_w
        if learn and grad_scale != 1.0:
            for p in (self.w, self.b):
                p.register_hook(lambda grad, s=grad_scale: grad * s)

    def positive_w(self) -> torch.Tensor:
        """Clamp w in place so that the scale used (and stored) stays > 0.

        Clamping the parameter itself, rather than a copy, keeps gradients flowing at the boundary: a clamped
        copy of a negative parameter would have zero gradient and could never recover.
        """
        # Only touch w when it is out of range: an in-place write would invalidate graphs that already use w
        # (MultiReader evaluates the loss once per data source before a single backward).
        if self.w.detach() < self.min_w:
            with torch.no_grad():
                self.w.clamp_(min=self.min_w)
        return self.w


class GE2ELoss(_ScaledSimilarity):
    """Generalized end-to-end loss over an ``(N, M, D)`` batch, summed over all N*M utterances.

    Args:
        init_w, init_b: initial similarity scale and bias (paper: 10 and -5).
        method: ``"softmax"`` (Eq. 6) or ``"contrast"`` (Eq. 7).
        min_w: lower bound that keeps w > 0.
        grad_scale: gradient multiplier on w and b (paper: 0.01).
        exclusive: leave e_ji out of its own speaker's centroid (Eq. 8); False is the inclusive ablation.
        learn_scale: learn w and b; False holds them at their initial values (ablation).
    """

    def __init__(
        self,
        init_w: float = LossConfig.init_w,
        init_b: float = LossConfig.init_b,
        method: Method = "softmax",
        min_w: float = LossConfig.min_w,
        grad_scale: float = LossConfig.grad_scale,
        exclusive: bool = True,
        learn_scale: bool = True,
    ) -> None:
        super().__init__(init_w, init_b, min_w, grad_scale, learn_scale)
        if method not in ("softmax", "contrast"):
            raise ValueError(f"method must be 'softmax' or 'contrast', got {method!r}")
        self.method = method
        self.exclusive = exclusive

    def similarity(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(N, M, D) -> (N, M, N)`` similarity matrix with the current w > 0 and b, always in float32."""
        with full_precision(embeddings):
            return similarity_matrix(at_least_float32(embeddings), self.positive_w(), self.b, self.exclusive)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        s = self.similarity(embeddings)
        with full_precision(s):
            return softmax_loss(s) if self.method == "softmax" else contrast_loss(s)


def enrollment_indices(m: int, p: int, device: torch.device | None = None) -> torch.Tensor:
    """For each evaluation utterance i, the P enrollment utterances i+1, ..., i+P (mod M). ``-> (M, P)``."""
    if not 1 <= p <= m - 1:
        raise ValueError(f"TE2E needs 1 <= P <= M - 1 enrollment utterances, got P={p} with M={m}")
    return (torch.arange(m, device=device).unsqueeze(1) + torch.arange(1, p + 1, device=device)) % m


class TE2ELoss(_ScaledSimilarity):
    """Tuple-based end-to-end loss (paper Sec. 2.1, Eq. 1-3 with the corrected Eq. 3).

    Built from the same ``(N, M, D)`` batches as GE2E so one sampler feeds both. Every utterance e_ji is the
    evaluation utterance of two tuples: a positive one, whose P enrollment utterances are speaker j's
    utterances i+1..i+P (mod M), and a negative one with the same utterance indices of another speaker
    k = (j + r) mod N, r drawn uniformly from 1..N-1 per batch. The centroid c_k is the mean of the P enrollment
    embeddings (Eq. 1), s = w cos(e_ji, c_k) + b (Eq. 2). The loss is summed over all 2 N M tuples.

    Args:
        num_enroll: P; 0 means M - 1.
        learn_scale: learn w and b; False holds them at their initial values.
    """

    def __init__(
        self,
        init_w: float = LossConfig.init_w,
        init_b: float = LossConfig.init_b,
        num_enroll: int = 0,
        min_w: float = LossConfig.min_w,
        grad_scale: float = LossConfig.grad_scale,
        learn_scale: bool = True,
    ) -> None:
        super().__init__(init_w, init_b, min_w, grad_scale, learn_scale)
        self.num_enroll = num_enroll

    def tuple_scores(self, embeddings: torch.Tensor, shift: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the positive and negative tuples, each ``(N, M)``; ``shift`` fixes r for tests."""
        n, m, _ = check_batch(embeddings)
        idx = enrollment_indices(m, self.num_enroll or m - 1, embeddings.device)
        enroll = F.normalize(embeddings[:, idx].mean(dim=2), dim=-1, eps=_EPS)  # (N, M, D)
        if shift is None:
            shift = int(torch.randint(1, n, ()).item())
        other = (torch.arange(n, device=embeddings.device) + shift) % n
        e = F.normalize(embeddings, dim=-1, eps=_EPS)
        w = self.positive_w()
        pos = w * (e * enroll).sum(-1) + self.b
        neg = w * (e * enroll[other]).sum(-1) + self.b
        return pos, neg

    def forward(self, embeddings: torch.Tensor, shift: int | None = None) -> torch.Tensor:
        with full_precision(embeddings):
            pos, neg = self.tuple_scores(at_least_float32(embeddings), shift)
            return (1.0 - torch.sigmoid(pos)).sum() + torch.sigmoid(neg).sum()


def build_loss(config: LossConfig) -> GE2ELoss | TE2ELoss:
    """The loss a :class:`LossConfig` names."""
    if config.method == "te2e":
        return TE2ELoss(
            config.init_w, config.init_b, config.te2e_enroll, config.min_w, config.grad_scale, config.learn_scale
        )
    return GE2ELoss(
        config.init_w,
        config.init_b,
        config.method,
        config.min_w,
        config.grad_scale,
        exclusive=config.centroid == "exclusive",
        learn_scale=config.learn_scale,
    )
