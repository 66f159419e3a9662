"""Resegmentation: each speech segment's speaker re-decided by a hidden Markov model over the segment sequence.

Clustering treats the segments of a recording as a bag: it does not know that the next segment is usually the
same speaker. On the dev conversations of 2-8 speakers (``recipes/diarization/make_eval_set.py``), 55% of adjacent
segments belong to one speaker, against 22% if speakers followed each other at random. Once the clustering has
found the speakers, an HMM whose states are those speakers (emission: ``sharpness`` times the cosine to each
speaker's duration-weighted centroid; transition: stay with probability ``stay``, otherwise any other speaker)
gives each segment the speaker of highest posterior (forward-backward), and the centroids are re-estimated from
the result, twice. This is the resegmentation step of classical diarization systems (VB/Viterbi resegmentation),
kept to the clusters' cosine geometry: a PLDA back end, as VBx uses, needs many more speakers than the 38 dev
speakers to fit (see docs/diarization.md). The count stays the clustering's: a pass that would leave a speaker with no
segment is not taken.
"""

from __future__ import annotations

import numpy as np

from ge2e.diarization.clustering import weighted_centroids

ITERATIONS = 2  # centroids re-estimated once; a third pass changed nothing on dev


def posteriors(log_likelihoods: np.ndarray, stay: float) -> np.ndarray:
    """Forward-backward: ``(T, K)`` per-step log-likelihoods of K states, a uniform start, stay with probability
    ``stay`` else move to one of the other states uniformly -> ``(T, K)`` state posteriors."""
    from scipy.special import logsumexp

    steps, k = log_likelihoods.shape
    log_move = np.log(np.where(np.eye(k, dtype=bool), stay, (1 - stay) / (k - 1)))
    forward = np.empty((steps, k))
    backward = np.zeros((steps, k))
    forward[0] = log_likelihoods[0] - np.log(k)
    for t in range(1, steps):
        forward[t] = log_likelihoods[t] + logsumexp(forward[t - 1][:, None] + log_move, axis=0)
    for t in range(steps - 2, -1, -1):
        backward[t] = logsumexp(log_move + log_likelihoods[t + 1] + backward[t + 1], axis=1)
    joint = forward + backward
    return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))


def resegment(
    embeddings: np.ndarray, durations: np.ndarray, labels: np.ndarray, sharpness: float, stay: float
) -> np.ndarray:
    """Time-ordered segment d-vectors ``(S, D)`` (unit norm), their seconds of speech ``(S,)`` and cluster
    ``labels`` ``(S,)`` -> resegmented labels ``(S,)`` (same label values). ``sharpness`` 0 or a single speaker:
    the labels unchanged."""
    labels = np.asarray(labels)
    ids = np.unique(labels)
    if sharpness == 0 or len(ids) < 2:
        return labels
    unit = np.asarray(embeddings, dtype=np.float64)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    weights = np.asarray(durations, dtype=np.float64)
    current = np.searchsorted(ids, labels)
    for _ in range(ITERATIONS):
        centres = weighted_centroids(unit, current, weights)  # every speaker present: row c is speaker c
        decided = posteriors(sharpness * unit @ centres.T, stay).argmax(axis=1)
        if len(np.unique(decided)) < len(ids):
            break  # a speaker would vanish: the count is the clustering's to make
        current = decided
    return ids[current]
