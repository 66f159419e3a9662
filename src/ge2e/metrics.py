"""Verification metrics: equal error rate, DET curve and normalised minimum detection cost.

Conventions used throughout:

* ``scores``: shape ``(n,)``, higher means "more likely the same speaker".
* ``labels``: shape ``(n,)``, 1 = target (same speaker), 0 = non-target. Booleans are accepted.
* A trial is accepted when ``score >= threshold``.
* ``p_miss``: fraction of target trials rejected (score below the threshold).
* ``p_fa``: fraction of non-target trials accepted (score at or above the threshold).

All operating points are used: one per distinct score plus "reject everything", so every function is exact
and O(n log n) (one sort), never a truncated threshold grid.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def _validate(scores: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Check and convert inputs; returns ``(scores (n,) float64, is_target (n,) bool)``."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels)
    if s.ndim != 1 or lab.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {s.shape} and {lab.shape}")
    if s.shape != lab.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {lab.shape[0]}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {np.count_nonzero(~np.isfinite(s))} NaN or infinite value(s)")
    if lab.dtype != np.bool_:
        if not np.all((lab == 0) | (lab == 1)):
            raise ValueError("labels must be 0 (non-target) or 1 (target)")
        lab = lab == 1
    n_target = int(np.count_nonzero(lab))
    if n_target == 0 or n_target == lab.shape[0]:
        kind = "target" if n_target else "non-target"
        raise ValueError(f"need both target and non-target trials, got only {kind} trials (n={lab.shape[0]})")
    return s, lab


def _operating_points(scores: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Every operating point, ordered by increasing threshold.

    With ``u_0 < ... < u_{m-1}`` the distinct scores, point ``k`` (``0 <= k <= m``) accepts the trials scoring
    ``>= u_k`` (point ``m`` rejects everything). Point 0 is ``(p_fa, p_miss) = (1, 0)``, point ``m`` is
    ``(0, 1)``.

    Returns ``(p_fa, p_miss, thresholds)``, each of shape ``(m + 1,)``. The threshold reported for an interior
    point is the midpoint ``(u_{k-1} + u_k) / 2`` of the interval ``(u_{k-1}, u_k]`` in which every threshold
    gives that point (robust to small score shifts); the ends use the tightest finite value, ``u_0`` and the
    next float above ``u_{m-1}``.
    """
    s, is_target = _validate(scores, labels)
    uniq, inverse = np.unique(s, return_inverse=True)
    tgt_per_value = np.bincount(inverse, weights=is_target, minlength=uniq.size)
    non_per_value = np.bincount(inverse, weights=~is_target, minlength=uniq.size)
    # Targets strictly below u_k, non-targets strictly below u_k (k = 0..m).
    tgt_below = np.concatenate(([0.0], np.cumsum(tgt_per_value)))
    non_below = np.concatenate(([0.0], np.cumsum(non_per_value)))
    p_miss = tgt_below / tgt_below[-1]
    p_fa = (non_below[-1] - non_below) / non_below[-1]

    lower, upper = uniq[:-1], uniq[1:]
    mid = lower + (upper - lower) / 2.0
    mid = np.where(mid > lower, mid, upper)  # adjacent floats: the midpoint may round down onto u_{k-1}
    thresholds = np.concatenate(([uniq[0]], mid, [np.nextafter(uniq[-1], np.inf)]))
    return p_fa, p_miss, thresholds


def det_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """All operating points of the detection error trade-off.

    Args:
        scores: ``(n,)`` trial scores.
        labels: ``(n,)`` 1 = target, 0 = non-target.

    Returns:
        ``(p_fa, p_miss, thresholds)``, each ``(m + 1,)`` for ``m`` distinct scores, ordered by increasing
        threshold (``p_fa`` falls from 1 to 0, ``p_miss`` rises from 0 to 1). Accepting ``score >=
        thresholds[k]`` gives exactly ``(p_fa[k], p_miss[k])``.

    Raises:
        ValueError: one class only, lengths differ, non-finite scores or labels other than 0/1.
    """
    return _operating_points(scores, labels)


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate, with linear interpolation where ``p_miss`` and ``p_fa`` cross.

    The crossing is found on the segment between the last operating point with ``p_miss < p_fa`` and the next
    one; the EER is where that straight segment meets ``p_miss == p_fa``. The threshold is interpolated with
    the same weight between the two points' thresholds (see :func:`det_curve`).

    Args:
        scores: ``(n,)`` trial scores.
        labels: ``(n,)`` 1 = target, 0 = non-target.

    Returns:
        ``(eer, threshold)``: EER as a fraction in ``[0, 1]`` and the score threshold that realises it.

    Raises:
        ValueError: one class only, lengths differ, non-finite scores or labels other than 0/1.
    """
    p_fa, p_miss, thresholds = _operating_points(scores, labels)
    diff = p_miss - p_fa  # rises from -1 (point 0) to +1 (last point)
    k = int(np.argmax(diff >= 0.0))  # first point at or past the crossing; k >= 1 since diff[0] == -1
    alpha = -diff[k - 1] / (diff[k] - diff[k - 1])
    rate = p_miss[k - 1] + alpha * (p_miss[k] - p_miss[k - 1])
    threshold = thresholds[k - 1] + alpha * (thresholds[k] - thresholds[k - 1])
    return float(rate), float(threshold)


def min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Normalised minimum detection cost (NIST SRE / VoxCeleb definition).

    ``DCF(t) = c_miss * p_miss(t) * p_target + c_fa * p_fa(t) * (1 - p_target)``, divided by the cost of the
    best trivial system ``min(c_miss * p_target, c_fa * (1 - p_target))`` and minimised over all thresholds.

    Args:
        scores: ``(n,)`` trial scores.
        labels: ``(n,)`` 1 = target, 0 = non-target.
        p_target: prior probability of a target trial, in ``(0, 1)``.
        c_miss: cost of a miss, ``> 0``.
        c_fa: cost of a false alarm, ``> 0``.

    Returns:
        ``(min_dcf, threshold)``: the normalised minimum (``<= 1``) and a threshold reaching it (the lowest
        one on ties).

    Raises:
        ValueError: invalid costs or prior, or the input errors of :func:`det_curve`.
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0.0 or c_fa <= 0.0:
        raise ValueError(f"c_miss and c_fa must be > 0, got {c_miss} and {c_fa}")
    p_fa, p_miss, thresholds = _operating_points(scores, labels)
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)
    k = int(np.argmin(dcf))
    return float(dcf[k] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thresholds[k])


def threshold_at_far(scores: ArrayLike, labels: ArrayLike, far: float) -> float:
    """The lowest threshold whose false-accept rate is at most ``far``: the fewest misses that target allows.

    Args:
        scores: ``(n,)`` trial scores.
        labels: ``(n,)`` 1 = target, 0 = non-target.
        far: target false-accept rate, in ``(0, 1)``.

    Raises:
        ValueError: ``far`` outside ``(0, 1)``, or the input errors of :func:`det_curve`.
    """
    if not 0.0 < far < 1.0:
        raise ValueError(f"the target false-accept rate must be in (0, 1), got {far}")
    p_fa, _, thresholds = _operating_points(scores, labels)
    return float(thresholds[int(np.argmax(p_fa <= far))])  # p_fa falls to 0 at the last point, so one exists


def error_rates(scores: ArrayLike, labels: ArrayLike, threshold: float) -> tuple[float, float]:
    """``(p_fa, p_miss)`` of accepting ``score >= threshold``: false accepts among non-targets, misses among
    targets.

    Raises:
        ValueError: the input errors of :func:`det_curve`.
    """
    s, is_target = _validate(scores, labels)
    accepted = s >= threshold
    return float(np.mean(accepted[~is_target])), float(np.mean(~accepted[is_target]))


def bootstrap_eer_differences(
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    labels: ArrayLike,
    groups: ArrayLike | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> FloatArray:
    """EER(b) - EER(a) of two systems scored on the same trials, on paired bootstrap resamples of the trials.

    Take percentiles of the result for a confidence interval of the difference (a paired interval is much
    narrower than the two systems' separate intervals, since both see the same hard trials). With ``groups``
    (e.g. each trial's enrolment speaker), whole groups are resampled instead of single trials: trials that share
    a speaker are not independent, and resampling them one by one makes intervals too narrow.

    Args:
        scores_a, scores_b: ``(n,)`` scores of the two systems on the same trials.
        labels: ``(n,)`` 1 = target, 0 = non-target.
        groups: ``(n,)`` optional group key of each trial.
        resamples: number of bootstrap resamples; those left with one class only are dropped.

    Returns:
        ``(k,)`` differences, ``k <= resamples``.
    """
    a, y = _validate(scores_a, labels)
    b, _ = _validate(scores_b, labels)
    keys = np.arange(len(y)) if groups is None else np.asarray(groups)
    if keys.shape != y.shape:
        raise ValueError(f"groups has shape {keys.shape}, the trials {y.shape}")
    _, inverse = np.unique(keys, return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(resamples):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        if 0 < y[idx].sum() < len(idx):
            out.append(eer(b[idx], y[idx])[0] - eer(a[idx], y[idx])[0])
    return np.asarray(out, dtype=np.float64)
