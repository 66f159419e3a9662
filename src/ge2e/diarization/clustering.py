"""Clustering d-vectors into speakers: Google's ``spectralcluster`` (refined affinity, eigengap speaker count)
and a k-means baseline (silhouette speaker count)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from ge2e.errors import Ge2eError

# AutoTune search range of the row-wise threshold percentile (Turn-to-Diarize's setting, Xia et al. 2022)
AUTOTUNE_P_MIN = 0.40
AUTOTUNE_P_MAX = 0.95
AUTOTUNE_STEP = 0.05
SEED = 0


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global RNG for the block and restore it after.

    spectralcluster's single-speaker test fits GaussianMixture without a random_state, so it draws from the
    global RNG; seeding it makes a recording's result reproducible without leaking state to the caller.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def spectral(
    embeddings: np.ndarray, min_speakers: int, max_speakers: int, autotune: bool = True, window_overlap: int = 1
) -> np.ndarray:
    """Spectral clustering of time-ordered d-vectors ``(N, D)`` -> ``(N,)`` int labels.

    The affinity (cos + 1) / 2 is refined as in Wang et al. (ICASSP 2018): crop diagonal, Gaussian blur (sigma 1,
    along time), row-wise threshold (soft, x0.01 below ``p`` x row max), symmetrise, diffuse, row-normalise. ``p``
    is 0.95 (the paper) or, with ``autotune``, chosen per recording by the normalised maximum eigengap (Park et
    al., 2019). The eigengap sets the number of speakers within the range; when ``min_speakers`` is 1, a GMM/BIC
    test on the affinities decides between one speaker and several, ignoring the ``window_overlap`` nearest
    neighbours of each window (overlapping windows are similar whoever speaks).
    """
    from spectralcluster import (
        ICASSP2018_REFINEMENT_SEQUENCE,
        AutoTune,
        FallbackOptions,
        RefinementOptions,
        SpectralClusterer,
        ThresholdType,
    )

    n = len(embeddings)
    if min_speakers == 1 and n <= window_overlap + 1:
        # too few windows for the one-vs-many test (< about 3 s of speech): one speaker unless told otherwise
        return np.zeros(n, dtype=int)
    clusterer = SpectralClusterer(
        min_clusters=min_speakers,
        max_clusters=max_speakers,
        refinement_options=RefinementOptions(
            gaussian_blur_sigma=1,
            p_percentile=AUTOTUNE_P_MAX,
            thresholding_soft_multiplier=0.01,
            thresholding_type=ThresholdType.RowMax,
            refinement_sequence=ICASSP2018_REFINEMENT_SEQUENCE,
        ),
        autotune=AutoTune(AUTOTUNE_P_MIN, AUTOTUNE_P_MAX, AUTOTUNE_STEP) if autotune else None,
        fallback_options=FallbackOptions(single_cluster_affinity_diagonal_offset=window_overlap),
        custom_dist="cosine",
    )
    with _seeded(SEED):
        return np.asarray(clusterer.predict(np.asarray(embeddings, dtype=np.float64)), dtype=int)


def kmeans(embeddings: np.ndarray, min_speakers: int, max_speakers: int) -> np.ndarray:
    """k-means baseline on unit-norm d-vectors ``(N, D)`` -> ``(N,)`` int labels.

    Squared Euclidean distance between unit vectors is 2 - 2 cos, so this is cosine k-means. When the number
    of speakers is not fixed, the k in ``[max(2, min_speakers), max_speakers]`` with the best cosine silhouette
    wins (the silhouette is undefined for one cluster, so this never answers one speaker unless
    ``max_speakers`` is 1).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    if max_speakers == 1:
        return np.zeros(n, dtype=int)
    best: tuple[float, np.ndarray] | None = None
    for k in range(max(2, min_speakers), max_speakers + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(embeddings)
        if min_speakers == max_speakers:
            return labels
        if len(set(labels)) < 2 or len(set(labels)) >= n:
            continue  # silhouette needs 2 <= clusters < samples
        score = float(silhouette_score(embeddings, labels, metric="cosine"))
        if best is None or score > best[0]:
            best = (score, labels)
    return best[1] if best is not None else np.zeros(n, dtype=int)


def cluster(
    embeddings: np.ndarray,
    min_speakers: int,
    max_speakers: int,
    method: str = "spectral",
    autotune: bool = True,
    window_overlap: int = 1,
) -> np.ndarray:
    """Speaker label per d-vector ``(N, D)`` -> ``(N,)`` int, with ``min_speakers <= max_speakers <= N``."""
    n = len(embeddings)
    if not 1 <= min_speakers <= max_speakers <= max(n, 1):
        raise ValueError(f"need 1 <= min_speakers <= max_speakers <= {n}, got {min_speakers} and {max_speakers}")
    if n == 1 or max_speakers == 1:
        return np.zeros(n, dtype=int)
    if method == "spectral":
        return spectral(embeddings, min_speakers, max_speakers, autotune, window_overlap)
    if method == "kmeans":
        return kmeans(embeddings, min_speakers, max_speakers)
    raise Ge2eError(f"unknown clustering method {method!r}; choose spectral or kmeans")
