"""recipes/diarization/separability.py: reference speaker per speech frame and segment, and pair scoring."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ge2e.diarization.pipeline import SpeechWindows
from ge2e.diarization.rttm import Segment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "diarization"))
from separability import frame_speakers, majority, separation  # a recipe script, not a package module


def test_frames_take_the_reference_speaker_at_their_centre_and_segments_the_majority() -> None:
    # speech frames 0-9 and 20-29 (10 ms, centres at 5 ms + 10 ms x index); b speaks 0.00-0.07 and 0.20-0.30,
    # a speaks 0.07-0.10 and overlaps b at 0.25-0.30
    frames = np.r_[np.arange(10), np.arange(20, 30)]
    speech = SpeechWindows("x", np.zeros((1, 2)), frames, np.zeros(20, int), 0.01, 0.005, 0.3, np.zeros(20, int),
                           np.zeros((1, 2)))  # fmt: skip
    reference = [Segment(0.0, 0.07, "b"), Segment(0.07, 0.1, "a"), Segment(0.2, 0.3, "b"), Segment(0.25, 0.3, "a")]
    labels = frame_speakers(speech, reference)
    a, b = 0, 1  # sorted names
    assert labels.tolist() == [b] * 7 + [a] * 3 + [b] * 10  # overlap: the first listed turn
    silent = frame_speakers(speech, [Segment(0.0, 0.05, "a")])
    assert silent.tolist() == [0] * 5 + [-1] * 15
    groups = np.array([0] * 10 + [1] * 10)
    assert majority(labels, groups, 3).tolist() == [b, b, -1]
    assert majority(silent, groups, 2).tolist() == [0, -1]


def test_separation_scores_same_speaker_pairs_against_different_speaker_pairs() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16))
    labels = np.repeat([0, 1, 2], 6)
    apart = [(centres[labels] + 0.05 * rng.standard_normal((18, 16)), labels) for _ in range(2)]
    result = separation(apart)
    assert result["eer"] == 0.0 and result["auc"] == 1.0
    assert result["pairs"] == 2 * 18 * 17 // 2
    noise = [(rng.standard_normal((18, 16)), labels) for _ in range(20)]
    assert separation(noise)["auc"] == pytest.approx(0.5, abs=0.08)
    # unlabelled rows (-1) take no part in any pair
    masked = [(apart[0][0], np.where(np.arange(18) < 3, -1, labels))]
    assert separation(masked)["pairs"] == 15 * 14 // 2
