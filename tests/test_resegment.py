"""Resegmentation of speech segments by an HMM over the segment sequence (ge2e.diarization.resegment)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ge2e.diarization.pipeline as pipeline
from ge2e.diarization.clustering import Tuning
from ge2e.diarization.pipeline import diarize_speech
from ge2e.diarization.resegment import posteriors, resegment
from test_diarization import conversation_turns


def brute_force_posteriors(log_likelihoods: np.ndarray, stay: float) -> np.ndarray:
    """State posteriors by summing over every state path: the definition forward-backward must equal."""
    steps, k = log_likelihoods.shape
    move = np.where(np.eye(k, dtype=bool), stay, (1 - stay) / (k - 1))
    marginals = np.zeros((steps, k))
    for path in itertools.product(range(k), repeat=steps):
        p = np.exp(log_likelihoods[np.arange(steps), path].sum()) / k
        p *= np.prod([move[a, b] for a, b in itertools.pairwise(path)])
        marginals[np.arange(steps), path] += p
    return marginals / marginals.sum(axis=1, keepdims=True)


@settings(max_examples=30, deadline=None)
@given(
    steps=st.integers(1, 5),
    k=st.integers(2, 3),
    stay=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**16),
)
def test_forward_backward_equals_the_sum_over_all_paths(steps: int, k: int, stay: float, seed: int) -> None:
    scores = np.random.default_rng(seed).normal(0, 3, (steps, k))
    np.testing.assert_allclose(posteriors(scores, stay), brute_force_posteriors(scores, stay), atol=1e-9)


def runs(pattern: list[int], dim: int = 16, spread: float = 0.3, seed: int = 0) -> np.ndarray:
    """Unit d-vectors, one per segment, around one random centre per speaker in ``pattern``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(pattern) + 1, dim))
    x = centres[pattern] + spread * rng.standard_normal((len(pattern), dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_segment_that_leans_to_the_other_speaker_inside_a_turn_goes_back_to_its_turn() -> None:
    truth = [0] * 6 + [1] * 6 + [0] * 6
    x = runs(truth)
    # segment 3 sits in speaker 0's turn but its d-vector lies a little nearer speaker 1's centroid
    x[3] = 0.45 * x[0] + 0.55 * x[7]
    x[3] /= np.linalg.norm(x[3])
    clustered = np.array(truth)
    clustered[3] = 1
    durations = np.ones(len(truth))
    assert (resegment(x, durations, clustered, sharpness=10, stay=0.8) == truth).all()
    # no sharpness: the clustering stands; no pull to stay: each segment takes its nearest centroid
    assert (resegment(x, durations, clustered, sharpness=0, stay=0.8) == clustered).all()
    assert resegment(x, durations, clustered, sharpness=10, stay=0.5)[3] == 1


def test_resegmentation_keeps_the_label_values_and_never_loses_a_speaker() -> None:
    truth = [0] * 8 + [1] * 8
    x = runs(truth)
    labels = np.array([7] * 8 + [3] * 8)
    assert (resegment(x, np.ones(16), labels, sharpness=10, stay=0.8) == labels).all()
    # one voice throughout, one segment of it clustered apart: a sticky HMM would absorb it, the count stays
    lone = np.array([7] * 8 + [3] + [7] * 7)
    assert (resegment(runs([0] * 16), np.ones(16), lone, sharpness=10, stay=0.99) == lone).all()
    assert (resegment(x, np.ones(16), np.zeros(16, dtype=int), sharpness=10, stay=0.8) == 0).all()


@pytest.mark.parametrize(
    ("field", "value"),
    [("resegment_sharpness", -1.0), ("resegment_sharpness", float("inf")), ("resegment_sharpness", float("nan"))]
    + [("resegment_stay", v) for v in (0.0, 1.0, float("nan"))],
)
def test_a_tuning_needs_a_valid_resegmentation(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Tuning(**{field: value})


def test_diarize_speech_resegments_with_the_tuned_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def spy(embeddings, durations, labels, sharpness, stay):
        seen.append((len(embeddings), len(durations), len(labels), sharpness, stay))
        return np.zeros_like(labels)  # everyone one speaker: visible in the turns

    monkeypatch.setattr(pipeline, "resegment", spy)
    speech, _ = conversation_turns(2, 0, spread=1.5)
    turns = diarize_speech(
        speech, num_speakers=2, tuning=replace(Tuning(), resegment_sharpness=7.0, resegment_stay=0.6)
    )
    ((segments, durations, labels, sharpness, stay),) = seen
    assert segments == durations == labels == len(speech.segment_embeddings)
    assert (sharpness, stay) == (7.0, 0.6)
    assert {t.speaker for t in turns} == {"SPEAKER_00"}
