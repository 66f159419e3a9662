"""Tests for ge2e.scoring: cosine scoring, S-norm / AS-norm and trial-list reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ge2e import scoring
from ge2e.metrics import eer
from ge2e.scoring import Trial, TrialListError, as_norm, cosine_matrix, cosine_scores, read_trials, s_norm

# Tiny example: enroll (1, 0), test (0, 2) (not unit length on purpose), cohort of four 2-D vectors.
ENROLL = np.array([[1.0, 0.0]])
TEST = np.array([[0.0, 2.0]])
COHORT = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-3.0, 0.0]])
R = 1 / np.sqrt(2)
ENROLL_VS_COHORT = [1.0, 0.0, R, -1.0]  # cosines worked out by hand
TEST_VS_COHORT = [0.0, 1.0, R, 0.0]


def test_cosine_matrix_and_scores() -> None:
    a = np.array([[3.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 5.0], [2.0, 0.0], [-1.0, -1.0]])
    expected = np.array([[0.0, 1.0, -R], [R, R, -1.0]])
    np.testing.assert_allclose(cosine_matrix(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(cosine_scores(a, b[:2]), [0.0, R], atol=1e-12)
    assert cosine_scores(np.zeros((1, 2)), np.ones((1, 2)))[0] == 0.0  # zero vector: score 0, not NaN


def test_cosine_shape_errors() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_scores(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="sizes differ"):
        cosine_matrix(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        cosine_matrix(np.ones(3), np.ones((2, 3)))


def _snorm_by_hand(s: float, enroll_cohort: list[float], test_cohort: list[float]) -> float:
    mu_e, sd_e = np.mean(enroll_cohort), np.std(enroll_cohort)
    mu_t, sd_t = np.mean(test_cohort), np.std(test_cohort)
    return 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)


def test_s_norm_matches_hand_formula() -> None:
    out = s_norm([0.3], ENROLL, TEST, COHORT)
    assert out.shape == (1,)
    assert out[0] == pytest.approx(_snorm_by_hand(0.3, ENROLL_VS_COHORT, TEST_VS_COHORT))


def test_as_norm_uses_top_scores_per_side() -> None:
    # top 2 of the enroll side: 1, 1/sqrt(2); of the test side: 1, 1/sqrt(2).
    out = as_norm([0.3], ENROLL, TEST, COHORT, top_n=2)
    assert out[0] == pytest.approx(_snorm_by_hand(0.3, [1.0, R], [1.0, R]))
    # top 3: enroll 1, 1/sqrt(2), 0; test 1, 1/sqrt(2), 0.
    out = as_norm([0.3], ENROLL, TEST, COHORT, top_n=3)
    assert out[0] == pytest.approx(_snorm_by_hand(0.3, [1.0, R, 0.0], [1.0, R, 0.0]))


def test_as_norm_with_whole_cohort_equals_s_norm(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    e, t, c = rng.normal(size=(10, 8)), rng.normal(size=(10, 8)), rng.normal(size=(25, 8))
    raw = cosine_scores(e, t)
    full = s_norm(raw, e, t, c)
    np.testing.assert_allclose(as_norm(raw, e, t, c, top_n=25), full, rtol=1e-12)
    top5 = as_norm(raw, e, t, c, top_n=5)
    assert not np.allclose(top5, full)
    monkeypatch.setattr(scoring, "_CHUNK", 3)  # blocks of 3 trials must give the same answer
    np.testing.assert_allclose(s_norm(raw, e, t, c), full, rtol=1e-12)
    np.testing.assert_allclose(as_norm(raw, e, t, c, top_n=5), top5, rtol=1e-12)


def test_as_norm_removes_per_utterance_test_bias() -> None:
    """Every embedding shares a mean direction m; each test utterance carries its own random amount of m.

    Raw cosine scores then get a per-test-utterance offset (large m share -> every score high), which mixes
    targets and non-targets; the test side's cohort statistics see the same offset and normalise it away.
    """
    rng = np.random.default_rng(0)
    dim, n_spk, n_cohort, n = 32, 40, 200, 2000
    m = rng.normal(size=dim)
    m /= np.linalg.norm(m)

    def embed(centres: np.ndarray, share_of_m: np.ndarray) -> np.ndarray:
        noise = 0.7 * rng.normal(size=centres.shape) / np.sqrt(dim)
        return centres + noise + share_of_m[:, None] * m

    speakers = rng.normal(size=(n_spk, dim)) / np.sqrt(dim)
    enroll_spk = rng.integers(0, n_spk, n)
    labels = rng.integers(0, 2, n)
    test_spk = np.where(labels == 1, enroll_spk, (enroll_spk + rng.integers(1, n_spk, n)) % n_spk)
    enroll = embed(speakers[enroll_spk], np.ones(n))
    test = embed(speakers[test_spk], rng.uniform(0.0, 3.0, n))
    cohort = embed(rng.normal(size=(n_cohort, dim)) / np.sqrt(dim), np.ones(n_cohort))

    raw = cosine_scores(enroll, test)
    raw_eer, _ = eer(raw, labels)
    norm_eer, _ = eer(as_norm(raw, enroll, test, cohort, top_n=50), labels)
    assert raw_eer > 0.1
    assert norm_eer < 0.5 * raw_eer


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": [0.1, 0.2]}, "lengths differ"),
        ({"cohort": COHORT[:1]}, "at least 2"),
        ({"cohort": np.ones((4, 3))}, "sizes differ"),
        ({"top_n": 1}, "top_n must be"),
        ({"top_n": 5}, "top_n must be"),
    ],
)
def test_norm_input_errors(kwargs: dict, match: str) -> None:
    args = {"scores": [0.3], "enroll_emb": ENROLL, "test_emb": TEST, "cohort": COHORT, "top_n": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        as_norm(**args)


def test_read_trials(tmp_path: Path) -> None:
    lst = tmp_path / "trials.txt"
    lst.write_text("1 a/x.wav a/y.wav\n\n0  a/x.wav\tb/z.wav\n", encoding="utf-8")
    trials = read_trials(lst, tmp_path / "root")
    assert trials == [
        Trial(1, tmp_path / "root/a/x.wav", tmp_path / "root/a/y.wav"),
        Trial(0, tmp_path / "root/a/x.wav", tmp_path / "root/b/z.wav"),
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 a b\n1 a\n", r"trials\.txt:2: expected 'label enroll test', got 2 field"),
        ("1 a b\n\ntarget a b\n", r"trials\.txt:3: label must be 0 or 1, got 'target'"),
        ("1 a b c\n", r"trials\.txt:1: expected"),
        ("\n  \n", r"trials\.txt: no trials"),
    ],
)
def test_read_trials_bad_lines(tmp_path: Path, text: str, match: str) -> None:
    lst = tmp_path / "trials.txt"
    lst.write_text(text, encoding="utf-8")
    with pytest.raises(TrialListError, match=match):
        read_trials(lst, tmp_path)


def test_read_trials_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrialListError, match=r"nope\.txt: cannot read"):
        read_trials(tmp_path / "nope.txt", tmp_path)


def test_real_trial_lists_parse_and_point_at_files(data_root: Path) -> None:
    lists = sorted((data_root / "trials").glob("*.txt"))
    assert lists
    for lst in lists:
        trials = read_trials(lst, data_root)
        labels = [t.label for t in trials]
        assert 0.3 < np.mean(labels) < 0.7, lst.name  # "about half the trials are targets"
        missing = [p for p in {t.enroll for t in trials} | {t.test for t in trials} if not p.is_file()]
        assert not missing, f"{lst.name}: {len(missing)} missing file(s), e.g. {missing[0]}"
