"""Property-based tests (hypothesis): the fast implementations against loop / brute-force references on random
shapes and data. Derandomised, so a CI run is reproducible; no deadline, so a slow machine cannot fail them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ge2e.config import InferenceConfig
from ge2e.inference import window_starts, windows
from ge2e.metrics import det_curve, eer, error_rates, min_dcf, threshold_at_far
from ge2e.scoring import as_norm, cosine_matrix, cosine_scores, s_norm
from ge2e.similarity import similarity_matrix
from test_loss import reference_similarity
from test_metrics import _brute_force_eer

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


@PROPERTY
@given(
    n=st.integers(2, 5),
    m=st.integers(2, 5),
    d=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    w=st.floats(0.1, 20.0),
    b=st.floats(-10.0, 10.0),
    offset=st.floats(-3.0, 3.0),
)
def test_similarity_matrix_matches_loop_reference(n, m, d, seed, w, b, offset):
    e = torch.randn(n, m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + offset
    torch.testing.assert_close(similarity_matrix(e, w, b), reference_similarity(e, w, b))


@PROPERTY
@given(
    num_frames=st.integers(1, 3000),
    window=st.integers(1, 400),
    overlap=st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9]),
)
def test_windows_cover_every_frame_within_bounds(num_frames, window, overlap):
    cfg = InferenceConfig(window_frames=window, overlap=overlap)
    starts = window_starts(num_frames, cfg)
    size = min(num_frames, window)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] + size == num_frames  # the last window ends on the last frame
    covered = np.zeros(num_frames, dtype=bool)
    for s in starts:
        covered[s : s + size] = True
    assert covered.all()
    assert all(b - a <= cfg.hop_frames for a, b in itertools.pairwise(starts))
    mel = torch.arange(num_frames, dtype=torch.float32).unsqueeze(1).expand(num_frames, 2)
    cut = windows(mel, cfg)
    assert cut.shape == (len(starts), size, 2)
    assert [int(c[0, 0]) for c in cut] == starts


def _trials(draw_ints: list[int], labels: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    # integer scores on a small range force ties, the case the sorted implementation must get right
    return np.asarray(draw_ints, dtype=np.float64) / 4.0, np.asarray(labels, dtype=int)


trial_lists = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-20, 20), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda x: 0 < sum(x) < len(x)),
    )
)


@PROPERTY
@given(trial_lists)
def test_eer_matches_brute_force(trials):
    scores, labels = _trials(*trials)
    rate, threshold = eer(scores, labels)
    assert rate == pytest.approx(_brute_force_eer(scores, labels), abs=1e-12)
    assert scores.min() <= threshold <= np.nextafter(scores.max(), np.inf)


@PROPERTY
@given(trial_lists, st.sampled_from([0.01, 0.05, 0.5]), st.floats(0.5, 10.0))
def test_min_dcf_matches_brute_force(trials, p_target, c_miss):
    scores, labels = _trials(*trials)
    tgt, non = scores[labels == 1], scores[labels == 0]
    costs = [
        c_miss * np.mean(tgt < t) * p_target + np.mean(non >= t) * (1 - p_target)
        for t in [*np.unique(scores), np.inf]
    ]
    expected = min(costs) / min(c_miss * p_target, 1 - p_target)
    value, threshold = min_dcf(scores, labels, p_target, c_miss)
    assert value == pytest.approx(expected, abs=1e-12)
    # the threshold realises the minimum
    got = c_miss * np.mean(tgt < threshold) * p_target + np.mean(non >= threshold) * (1 - p_target)
    assert got / min(c_miss * p_target, 1 - p_target) == pytest.approx(value, abs=1e-12)
    p_fa, p_miss, thresholds = det_curve(scores, labels)
    for k in range(len(thresholds)):  # every operating point is what its threshold gives
        assert p_miss[k] == np.mean(tgt < thresholds[k]) and p_fa[k] == np.mean(non >= thresholds[k])


@PROPERTY
@given(
    n=st.integers(1, 6),
    c=st.integers(2, 12),
    d=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.01, 100.0),
)
def test_scoring_against_definitions(n, c, d, seed, scale):
    rng = np.random.default_rng(seed)
    enroll, test, cohort = rng.standard_normal((n, d)), rng.standard_normal((n, d)), rng.standard_normal((c, d))

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    raw = cosine_scores(enroll, scale * test)  # scale invariant
    np.testing.assert_allclose(raw, [cos(enroll[i], test[i]) for i in range(n)], atol=1e-12)
    np.testing.assert_allclose(cosine_matrix(enroll, test).diagonal(), raw, atol=1e-12)
    expected = []
    for i in range(n):
        se = np.array([cos(enroll[i], x) for x in cohort])
        st_ = np.array([cos(test[i], x) for x in cohort])
        expected.append(0.5 * ((raw[i] - se.mean()) / se.std() + (raw[i] - st_.mean()) / st_.std()))
    np.testing.assert_allclose(s_norm(raw, enroll, test, cohort), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(as_norm(raw, enroll, test, cohort, top_n=c), expected, rtol=1e-9, atol=1e-9)
    top = 2
    expected_top = []
    for i in range(n):
        se = np.sort([cos(enroll[i], x) for x in cohort])[-top:]
        st_ = np.sort([cos(test[i], x) for x in cohort])[-top:]
        expected_top.append(0.5 * ((raw[i] - se.mean()) / se.std() + (raw[i] - st_.mean()) / st_.std()))
    np.testing.assert_allclose(as_norm(raw, enroll, test, cohort, top_n=top), expected_top, rtol=1e-7, atol=1e-7)


@PROPERTY
@given(trial_lists, st.sampled_from([0.01, 0.1, 0.25, 0.5, 0.9]))
def test_threshold_at_far_and_error_rates_against_counting(trials, far):
    scores, labels = _trials(*trials)
    tgt, non = scores[labels == 1], scores[labels == 0]
    threshold = threshold_at_far(scores, labels, far)
    p_fa, p_miss = error_rates(scores, labels, threshold)
    assert (p_fa, p_miss) == (np.mean(non >= threshold), np.mean(tgt < threshold))
    assert p_fa <= far
    # lowest such threshold: any lower operating point accepts too many non-targets
    lower = [t for t in np.unique(scores) if t < threshold]
    assert all(np.mean(non >= t) > far for t in lower)
