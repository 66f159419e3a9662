"""Known-answer tests for ge2e.metrics and smoke tests for ge2e.plots."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from ge2e.metrics import bootstrap_eer_differences, det_curve, eer, error_rates, min_dcf

# Non-targets 0.1, 0.4, 0.6; targets 0.3, 0.7, 0.8, 0.9. Operating points (accept score >= u):
#   u=0.1: miss 0, fa 1 | u=0.3: 0, 2/3 | u=0.4: 1/4, 2/3 | u=0.6: 1/4, 1/3 | u=0.7: 1/4, 0 | ...
# p_miss - p_fa goes -1/12 -> +1/4 between u=0.6 and u=0.7: weight 1/4, EER = 1/3 - 1/4 * 1/3 = 1/4.
# Thresholds of those two points: midpoints 0.5 and 0.65 -> 0.5 + 1/4 * 0.15 = 0.5375.
HAND_SCORES = [0.1, 0.4, 0.6, 0.3, 0.7, 0.8, 0.9]
HAND_LABELS = [0, 0, 0, 1, 1, 1, 1]


def _brute_force_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """O(n^2) reference: rates by direct counting at every threshold, then intersect the polyline."""
    tgt, non = scores[labels == 1], scores[labels == 0]
    ts = [*sorted(set(scores.tolist())), np.inf]
    pts = [(np.mean(tgt < t), np.mean(non >= t)) for t in ts]  # (p_miss, p_fa)
    for (m0, f0), (m1, f1) in itertools.pairwise(pts):
        if m0 - f0 < 0 <= m1 - f1:
            # Solve m0 + a (m1 - m0) == f0 + a (f1 - f0) for a.
            a = (f0 - m0) / ((m1 - m0) - (f1 - f0))
            return m0 + a * (m1 - m0)
    raise AssertionError("no crossing")


def _sklearn_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Independent reference from sklearn's ROC (fpr = p_fa, 1 - tpr = p_miss), same interpolation."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr  # ordered by decreasing threshold: fnr falls, fpr rises
    d = fpr - fnr
    k = int(np.argmax(d >= 0))
    a = -d[k - 1] / (d[k] - d[k - 1])
    return fnr[k - 1] + a * (fnr[k] - fnr[k - 1])


def test_eer_separable_is_zero_with_threshold_between_classes() -> None:
    scores = [0.0, 0.2, 1.0, 0.9, 0.1, 0.95]
    labels = [0, 0, 1, 1, 0, 1]
    rate, thr = eer(scores, labels)
    assert rate == 0.0
    assert 0.2 < thr < 0.9
    assert thr == pytest.approx(0.55)


def test_eer_identical_distributions_is_half() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20_000)
    labels = rng.integers(0, 2, size=20_000)
    rate, _ = eer(scores, labels)
    assert rate == pytest.approx(0.5, abs=0.02)


def test_eer_hand_example_interpolated() -> None:
    rate, thr = eer(HAND_SCORES, HAND_LABELS)
    assert rate == pytest.approx(0.25)
    assert thr == pytest.approx(0.5375)


def test_eer_hand_example_with_tie() -> None:
    # Non-targets 0.1, 0.3, 0.5; targets 0.5, 0.7, 0.9 (0.5 is tied across classes).
    # u=0.5: miss 0, fa 1/3; u=0.7: miss 1/3, fa 0 -> both rates change on one step, crossing halfway:
    # EER = 1/6, threshold halfway between midpoints 0.4 and 0.6 = 0.5.
    rate, thr = eer([0.1, 0.3, 0.5, 0.5, 0.7, 0.9], [0, 0, 0, 1, 1, 1])
    assert rate == pytest.approx(1 / 6)
    assert thr == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_references_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    labels = rng.integers(0, 2, size=n)
    scores = np.round(rng.normal(size=n) + 1.2 * labels, 1)  # rounding creates ties across classes
    rate, thr = eer(scores, labels)
    assert rate == pytest.approx(_brute_force_eer(scores, labels), abs=1e-12)
    assert rate == pytest.approx(_sklearn_eer(scores, labels), abs=1e-12)
    # At the reported threshold the empirical rates straddle the EER (they are a step away at most).
    p_miss = np.mean(scores[labels == 1] < thr)
    p_fa = np.mean(scores[labels == 0] >= thr)
    assert min(p_miss, p_fa) - 1e-12 <= rate <= max(p_miss, p_fa) + 1e-12


def test_det_curve_matches_sklearn_and_thresholds_realise_points() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=300)
    scores = np.round(rng.normal(size=300) + labels, 2)
    p_fa, p_miss, thr = det_curve(scores, labels)
    assert (p_fa[0], p_miss[0], p_fa[-1], p_miss[-1]) == (1.0, 0.0, 0.0, 1.0)
    assert np.all(np.diff(thr) > 0) and np.all(np.diff(p_fa) <= 0) and np.all(np.diff(p_miss) >= 0)
    for f, m, t in zip(p_fa, p_miss, thr, strict=True):
        assert f == np.mean(scores[labels == 0] >= t)
        assert m == np.mean(scores[labels == 1] < t)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(p_fa[::-1], fpr)
    np.testing.assert_allclose(p_miss[::-1], 1.0 - tpr)


def test_error_rates_accept_a_score_equal_to_the_threshold() -> None:
    scores, labels = [0.2, 0.5, 0.5, 0.8], [0, 0, 1, 1]
    assert error_rates(scores, labels, 0.5) == (0.5, 0.0)  # the 0.5 non-target is accepted, the 0.5 target too
    assert error_rates(scores, labels, float(np.nextafter(0.5, 1.0))) == (0.0, 0.5)


def test_min_dcf_separable_is_zero() -> None:
    value, thr = min_dcf([0.0, 0.2, 1.0, 0.9], [0, 0, 1, 1])
    assert value == 0.0
    assert 0.2 < thr < 0.9


def test_min_dcf_hand_example() -> None:
    # p_target 0.5, c_miss 3, c_fa 1: DCF = 1.5 p_miss + 0.5 p_fa, normaliser min(1.5, 0.5) = 0.5, so the
    # normalised cost is 3 p_miss + p_fa: 1, 2/3, 17/12, 13/12, 3/4, 3/2, ... -> 2/3 at the point accepting
    # >= 0.3, whose threshold is the midpoint of 0.1 and 0.3.
    value, thr = min_dcf(HAND_SCORES, HAND_LABELS, p_target=0.5, c_miss=3.0, c_fa=1.0)
    assert value == pytest.approx(2 / 3)
    assert thr == pytest.approx(0.2)
    # Equal costs and prior: normalised cost p_miss + p_fa, minimum 1/4 at threshold 0.65.
    value, thr = min_dcf(HAND_SCORES, HAND_LABELS, p_target=0.5)
    assert value == pytest.approx(0.25)
    assert thr == pytest.approx(0.65)


def test_min_dcf_useless_system_is_one() -> None:
    # Constant scores: only the trivial systems are available, so the normalised cost is exactly 1.
    value, _ = min_dcf(np.zeros(10), [0, 1] * 5, p_target=0.01)
    assert value == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.1, 0.2], [1, 1], "only target"),
        ([0.1, 0.2], [0, 0], "only non-target"),
        ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, 0.2], [0, 2], "labels must be 0"),
        ([[0.1, 0.2]], [[0, 1]], "1-D"),
    ],
)
def test_invalid_inputs_raise(scores: list, labels: list, match: str) -> None:
    for fn in (eer, det_curve, min_dcf):
        with pytest.raises(ValueError, match=match):
            fn(scores, labels)


@pytest.mark.parametrize("kwargs", [{"p_target": 0.0}, {"p_target": 1.0}, {"c_miss": 0.0}, {"c_fa": -1.0}])
def test_min_dcf_invalid_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be"):
        min_dcf([0.1, 0.2], [0, 1], **kwargs)


def test_plots_write_png_atomically(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from ge2e.plots import plot_det, plot_score_histogram

    p_fa, p_miss, _ = det_curve(HAND_SCORES, HAND_LABELS)
    det_path = tmp_path / "det.png"
    plot_det({"hand": (p_fa, p_miss)}, det_path)
    hist_path = tmp_path / "hist.png"
    plot_score_histogram(HAND_SCORES, HAND_LABELS, {"EER point": 0.5375}, hist_path)
    for path in (det_path, hist_path):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.png", "hist.png"]  # no temp files left


def _two_systems(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a weak system's scores and a strong system's scores on the same trials."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return labels, labels + rng.normal(0, 1.5, n), labels + rng.normal(0, 0.5, n)


def test_bootstrap_differences_are_paired_and_centred_on_the_difference() -> None:
    labels, weak, strong = _two_systems()
    same = bootstrap_eer_differences(weak, weak, labels, resamples=200)
    assert same.shape == (200,) and np.all(same == 0.0)  # a system against itself: every resample is 0
    diffs = bootstrap_eer_differences(weak, strong, labels, resamples=300)
    point = eer(strong, labels)[0] - eer(weak, labels)[0]
    assert point < -0.1 and np.all(diffs < 0)  # the strong system wins on every resample
    assert abs(np.median(diffs) - point) < 0.02
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    assert lo < point < hi and hi - lo > 0.01


def test_bootstrap_resamples_whole_groups() -> None:
    labels, weak, strong = _two_systems(n=300)
    groups = np.repeat([0, 1, 2], 100)
    by_group = bootstrap_eer_differences(weak, strong, labels, groups=groups, resamples=300)
    # three groups drawn three times with replacement: at most 10 distinct multisets, hence EER differences
    assert len(np.unique(by_group.round(12))) <= 10
    by_trial = bootstrap_eer_differences(weak, strong, labels, resamples=300)
    assert len(np.unique(by_trial.round(12))) > 50
    # one group per trial is the trial bootstrap, draw for draw
    singletons = bootstrap_eer_differences(weak, strong, labels, groups=np.arange(300), resamples=300)
    assert np.array_equal(singletons, by_trial)
