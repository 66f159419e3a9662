"""Trial scoring: cosine similarity, S-norm / AS-norm score normalisation, and VoxCeleb-format trial lists.

Pure numpy. Embeddings are ``(n, D)`` arrays (pass torch tensors as ``t.detach().cpu().numpy()``); they need
not be unit length, every function normalises rows itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ge2e.errors import Ge2eError

FloatArray = NDArray[np.float64]

_EPS = 1e-12
_CHUNK = 4096  # trials per block when scoring against the cohort, bounds memory at _CHUNK x C floats


class TrialListError(Ge2eError, ValueError):
    """A trial list is missing or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Trial:
    """One verification trial: ``label`` 1 = same speaker, 0 = different; paths are ``root / relative``."""

    label: int
    enroll: Path
    test: Path


def _unit_rows(x: ArrayLike, name: str) -> FloatArray:
    """``(n, D)`` -> rows scaled to unit L2 norm (all-zero rows stay zero)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, D), got shape {a.shape}")
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), _EPS)


def cosine_matrix(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """All-pairs cosine similarity: ``a (A, D)``, ``b (B, D)`` -> ``(A, B)``."""
    ua, ub = _unit_rows(a, "a"), _unit_rows(b, "b")
    if ua.shape[1] != ub.shape[1]:
        raise ValueError(f"embedding sizes differ: {ua.shape[1]} vs {ub.shape[1]}")
    return ua @ ub.T


def cosine_scores(enroll: ArrayLike, test: ArrayLike) -> FloatArray:
    """Row-wise cosine similarity for a trial list: ``enroll (n, D)``, ``test (n, D)`` -> ``(n,)``."""
    ue, ut = _unit_rows(enroll, "enroll"), _unit_rows(test, "test")
    if ue.shape != ut.shape:
        raise ValueError(f"enroll and test shapes differ: {ue.shape} vs {ut.shape}")
    return np.einsum("nd,nd->n", ue, ut)


def _cohort_stats(unit: FloatArray, cohort: FloatArray, top_n: int | None) -> tuple[FloatArray, FloatArray]:
    """Mean and population std of each unit row's cosine scores against the unit cohort, ``(n,)`` each.

    With ``top_n`` set, only each row's ``top_n`` highest cohort scores are used (adaptive normalisation).
    """
    mean = np.empty(unit.shape[0])
    std = np.empty(unit.shape[0])
    for start in range(0, unit.shape[0], _CHUNK):
        s = unit[start : start + _CHUNK] @ cohort.T  # (chunk, C)
        if top_n is not None and top_n < s.shape[1]:
            s = np.partition(s, s.shape[1] - top_n, axis=1)[:, -top_n:]
        mean[start : start + s.shape[0]] = s.mean(axis=1)
        std[start : start + s.shape[0]] = s.std(axis=1)
    return mean, np.maximum(std, _EPS)


def _normalise(
    scores: ArrayLike, enroll_emb: ArrayLike, test_emb: ArrayLike, cohort: ArrayLike, top_n: int | None
) -> FloatArray:
    s = np.asarray(scores, dtype=np.float64)
    e, t, c = _unit_rows(enroll_emb, "enroll_emb"), _unit_rows(test_emb, "test_emb"), _unit_rows(cohort, "cohort")
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if not s.shape[0] == e.shape[0] == t.shape[0]:
        raise ValueError(f"lengths differ: scores {s.shape[0]}, enroll_emb {e.shape[0]}, test_emb {t.shape[0]}")
    if not e.shape[1] == t.shape[1] == c.shape[1]:
        raise ValueError(f"embedding sizes differ: enroll {e.shape[1]}, test {t.shape[1]}, cohort {c.shape[1]}")
    if c.shape[0] < 2:
        raise ValueError(f"the cohort needs at least 2 embeddings, got {c.shape[0]}")
    if top_n is not None and not 2 <= top_n <= c.shape[0]:
        raise ValueError(f"top_n must be in [2, cohort size {c.shape[0]}], got {top_n}")
    mu_e, sd_e = _cohort_stats(e, c, top_n)
    mu_t, sd_t = _cohort_stats(t, c, top_n)
    return 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)


def s_norm(scores: ArrayLike, enroll_emb: ArrayLike, test_emb: ArrayLike, cohort: ArrayLike) -> FloatArray:
    """Symmetric score normalisation (S-norm).

    ``s' = ((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2`` where ``mu_e, sd_e`` are the mean and population std of
    the cosine scores of the enrollment embedding against every cohort embedding (likewise ``mu_t, sd_t`` for
    the test side).

    Args:
        scores: ``(n,)`` raw trial scores (usually :func:`cosine_scores` of the same embeddings).
        enroll_emb: ``(n, D)`` enrollment embedding of each trial.
        test_emb: ``(n, D)`` test embedding of each trial.
        cohort: ``(C, D)`` impostor cohort embeddings, ``C >= 2``, speakers disjoint from the trials.

    Returns:
        ``(n,)`` normalised scores.
    """
    return _normalise(scores, enroll_emb, test_emb, cohort, None)


def as_norm(
    scores: ArrayLike, enroll_emb: ArrayLike, test_emb: ArrayLike, cohort: ArrayLike, top_n: int = 300
) -> FloatArray:
    """Adaptive S-norm: as :func:`s_norm`, but each side's statistics use only its ``top_n`` closest cohort scores.

    Args:
        scores: ``(n,)`` raw trial scores.
        enroll_emb: ``(n, D)`` enrollment embedding of each trial.
        test_emb: ``(n, D)`` test embedding of each trial.
        cohort: ``(C, D)`` impostor cohort embeddings.
        top_n: number of highest cohort scores per side, ``2 <= top_n <= C``; ``top_n == C`` is S-norm.

    Returns:
        ``(n,)`` normalised scores.
    """
    return _normalise(scores, enroll_emb, test_emb, cohort, top_n)


def read_trials(path: str | Path, root: str | Path) -> list[Trial]:
    """Read a VoxCeleb-format trial list: one ``label enroll_path test_path`` per line.

    Args:
        path: the list file. Blank lines are skipped.
        root: folder the paths in the list are relative to.

    Returns:
        The trials in file order, with ``root``-joined paths (existence is not checked).

    Raises:
        TrialListError: the file cannot be read, has no trials, or a line is not ``0|1 path path``
            (the message names the file and line number).
    """
    path, root = Path(path), Path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrialListError(f"{path}: cannot read trial list ({exc})") from exc
    trials = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise TrialListError(f"{path}:{lineno}: expected 'label enroll test', got {len(fields)} field(s)")
        if fields[0] not in ("0", "1"):
            raise TrialListError(f"{path}:{lineno}: label must be 0 or 1, got {fields[0]!r}")
        trials.append(Trial(int(fields[0]), root / fields[1], root / fields[2]))
    if not trials:
        raise TrialListError(f"{path}: no trials in the file")
    return trials
