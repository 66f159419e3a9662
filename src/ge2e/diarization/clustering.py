"""Clustering d-vectors into speakers, six ways of counting them (compared on dev by
``recipes/diarization/tune.py``, which also picks the default):

- ``nme-sc``: spectralcluster's auto-tuned spectral clustering (Park et al. 2019: binarised p-percentile
  affinity pruning, p chosen per recording by the normalised maximum eigengap);
- ``eigengap``: the refined affinity of Wang et al. (ICASSP 2018) at a fixed percentile p, count from the
  largest eigengap;
- ``ahc``: average-linkage agglomerative clustering of cosine distances, cut at a threshold;
- ``kmeans``: cosine k-means, count by the best silhouette;
- ``centroid``: NME-SC's partition for each number of speakers k; the count is the largest k whose speakers are
  all told apart (every pair of speaker centroids, duration-weighted, below a cosine tuned on dev) and each
  speak long enough (at least ``min_speaker_s``);
- ``silhouette``: NME-SC's partition for each number of speakers k whose speakers all speak at least
  ``silhouette_min_s``; the count is the k with the best duration-weighted cosine silhouette plus
  ``silhouette_bonus`` times ln k, and the speakers are duration-weighted k-means clusters of that count. One
  speaker when NME-SC's two clusters are too alike to be two speakers (centroid cosine at least
  ``one_speaker_cos``).

The points clustered are either the window d-vectors or, by default, speech segments (``Tuning.segments``,
see :func:`ge2e.diarization.pipeline.speech_segments`).

The numbers tuned on dev (``eigengap`` p, ``ahc`` threshold, ``centroid`` cosine and minimum, ``silhouette``
bonus and minimum, segments or windows, the default method, and the sharpness and stay probability of
:mod:`ge2e.diarization.resegment`) live beside the weights of the model they were tuned for
(``ge2e_small.diarization.json`` for the bundled model, :func:`ge2e.pretrained.tuning_path`), with the split they
were tuned on; ``recipes/diarization/tune.py`` rewrites it. :func:`tuned` gives a model its own settings only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ge2e.errors import Ge2eError

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("nme-sc", "eigengap", "ahc", "kmeans", "centroid", "silhouette")
# NME-SC's search range of the pruning percentile (Turn-to-Diarize's published AutoTune, Xia et al. 2022)
AUTOTUNE_P_MIN = 0.40
AUTOTUNE_P_MAX = 0.95
AUTOTUNE_STEP = 0.05
SEED = 0
SPECTRAL_MIN_POINTS = 4  # fewer points than this: no spectral clustering
# partitions and k-means results remembered: every k of the 256 dev conversations at both levels (about 4,600),
# with room; with 1,024 a pass over the dev set evicted each before the next setting asked for it again
MEMORY = 16_384


@dataclass(frozen=True)
class Tuning:
    """What dev tuning chose. Attributes: the default ``method``, the ``eigengap`` method's fixed percentile
    ``eigengap_p``, the ``ahc`` cosine-distance ``ahc_threshold``, the ``centroid`` method's largest cosine
    between two speakers' centroids ``centroid_max_cos`` and least speech per speaker ``min_speaker_s``
    (seconds), the ``silhouette`` method's bonus per ln(speakers) ``silhouette_bonus`` and least speech per
    speaker ``silhouette_min_s`` (seconds), the centroid cosine ``one_speaker_cos`` from which its two clusters
    are one speaker, whether it counts and clusters ``centred`` d-vectors (:func:`centred`), whether speech
    ``segments`` rather than windows are clustered, and the resegmentation of
    segments (:mod:`ge2e.diarization.resegment`): its ``resegment_sharpness`` (0: none) and ``resegment_stay``."""

    method: str = "nme-sc"
    eigengap_p: float = 0.95
    ahc_threshold: float = 0.5
    centroid_max_cos: float = 0.8
    min_speaker_s: float = 3.0
    silhouette_bonus: float = 0.2
    silhouette_min_s: float = 5.0
    one_speaker_cos: float = 0.7
    centred: bool = False
    segments: bool = True
    resegment_sharpness: float = 0.0
    resegment_stay: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_speaker_s", "silhouette_min_s"):
            seconds = getattr(self, name)
            if not 0 <= seconds < float("inf"):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {seconds}")
        if not 0 <= self.resegment_sharpness < float("inf"):
            raise ValueError(f"resegment_sharpness must be a finite number >= 0, got {self.resegment_sharpness}")
        if not 0 < self.resegment_stay < 1:
            raise ValueError(f"resegment_stay must be strictly between 0 and 1, got {self.resegment_stay}")


def tuned(model: Any = None) -> Tuning:
    """The settings tuned on dev for ``model`` (what :func:`ge2e.pretrained.load_model` read from beside its
    weights, checked against its fingerprint), or the untuned defaults, with one log line, for a model that has
    none. Without a model: the bundled model's settings."""
    if model is None:
        from ge2e.pretrained import bundled_model_path, read_tuning

        record = read_tuning(bundled_model_path())
    else:
        record = getattr(model, "diarization", None)
        if record is None:
            logger.warning("no diarization settings were tuned for this model: using the untuned defaults")
    return Tuning(**{k: record[k] for k in Tuning.__dataclass_fields__ if k in record}) if record else Tuning()


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
    embeddings: np.ndarray,
    min_speakers: int,
    max_speakers: int,
    autotune: bool = True,
    p_percentile: float = 0.95,
    window_overlap: int = 1,
) -> np.ndarray:
    """Spectral clustering of time-ordered d-vectors ``(N, D)`` -> ``(N,)`` int labels.

    ``autotune``: NME-SC (spectralcluster's Turn-to-Diarize configuration without turn constraints: binarised
    row-wise percentile pruning, average symmetrisation, graph-cut Laplacian, p searched in 0.40-0.95). Otherwise
    the ICASSP 2018 refinement (crop diagonal, Gaussian blur along time, soft row-max threshold at
    ``p_percentile``, symmetrise, diffuse, row-normalise). The eigengap sets the count within the range; when
    ``min_speakers`` is 1, a GMM/BIC test on the affinities first decides between one speaker and several,
    ignoring the ``window_overlap`` nearest neighbours of each window (overlapping windows are alike whoever
    speaks).
    """
    from spectralcluster import (
        ICASSP2018_REFINEMENT_SEQUENCE,
        AutoTune,
        FallbackOptions,
        LaplacianType,
        RefinementName,
        RefinementOptions,
        SpectralClusterer,
        SymmetrizeType,
        ThresholdType,
    )

    n = len(embeddings)
    if min_speakers == 1 and n <= window_overlap + 1:
        # too few windows for the one-vs-many test (< about 3 s of speech): one speaker unless told otherwise
        return np.zeros(n, dtype=int)
    if n < SPECTRAL_MIN_POINTS and min_speakers > 1:
        # spectralcluster's auto-tune fails on so few points (a recording of two speech segments): the fewest
        # speakers allowed, by average-linkage clustering
        return agglomerative(embeddings, min_speakers, min_speakers, 0.0)
    if autotune:
        options = {
            "refinement_options": RefinementOptions(
                thresholding_soft_multiplier=0.01,
                thresholding_type=ThresholdType.Percentile,
                thresholding_with_binarization=True,
                thresholding_preserve_diagonal=True,
                symmetrize_type=SymmetrizeType.Average,
                refinement_sequence=[RefinementName.RowWiseThreshold, RefinementName.Symmetrize],
            ),
            "autotune": AutoTune(AUTOTUNE_P_MIN, AUTOTUNE_P_MAX, AUTOTUNE_STEP),
            "laplacian_type": LaplacianType.GraphCut,
            "row_wise_renorm": True,
        }
    else:
        options = {
            "refinement_options": RefinementOptions(
                gaussian_blur_sigma=1,
                p_percentile=p_percentile,
                thresholding_soft_multiplier=0.01,
                thresholding_type=ThresholdType.RowMax,
                refinement_sequence=ICASSP2018_REFINEMENT_SEQUENCE,
            )
        }
    clusterer = SpectralClusterer(
        min_clusters=min_speakers,
        max_clusters=max_speakers,
        fallback_options=FallbackOptions(single_cluster_affinity_diagonal_offset=window_overlap),
        custom_dist="cosine",
        **options,
    )
    with _seeded(SEED):
        return np.asarray(clusterer.predict(np.asarray(embeddings, dtype=np.float64)), dtype=int)


def agglomerative(embeddings: np.ndarray, min_speakers: int, max_speakers: int, threshold: float) -> np.ndarray:
    """Average-linkage clustering of cosine distances ``(N, D)`` -> ``(N,)`` labels, merging while the closest
    clusters are nearer than ``threshold``; a count outside ``[min_speakers, max_speakers]`` is clipped to it."""
    from sklearn.cluster import AgglomerativeClustering

    def fit(**kwargs: float | int | None) -> np.ndarray:
        return AgglomerativeClustering(metric="cosine", linkage="average", **kwargs).fit_predict(embeddings)

    labels = fit(n_clusters=None, distance_threshold=threshold)
    count = len(set(labels.tolist()))
    if not min_speakers <= count <= max_speakers:
        labels = fit(n_clusters=min(max(count, min_speakers), max_speakers))
    return labels


def kmeans(embeddings: np.ndarray, min_speakers: int, max_speakers: int) -> np.ndarray:
    """k-means on unit-norm d-vectors ``(N, D)`` -> ``(N,)`` int labels.

    Squared Euclidean distance between unit vectors is 2 - 2 cos, so this is cosine k-means. When the number
    of speakers is not fixed, the k in ``[max(2, min_speakers), max_speakers]`` with the best cosine silhouette
    wins (the silhouette is undefined for one cluster, so this never answers one speaker unless
    ``max_speakers`` is 1).
    """
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    data = np.ascontiguousarray(embeddings, dtype=np.float64)
    ones = np.ones(n)
    best: tuple[float, np.ndarray] | None = None
    for k in range(max(2, min_speakers), max_speakers + 1):
        labels = weighted_kmeans(data, ones, k)
        if min_speakers == max_speakers:
            return labels
        if len(set(labels)) < 2 or len(set(labels)) >= n:
            continue  # silhouette needs 2 <= clusters < samples
        score = float(silhouette_score(embeddings, labels, metric="cosine"))
        if best is None or score > best[0]:
            best = (score, labels)
    return best[1] if best is not None else np.zeros(n, dtype=int)


def remembered(maxsize: int) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Least-recently-used memory of a function of arrays, keyed by a digest of every array argument.

    Dev tuning asks for the same partition of the same recording for every setting it tries: each k of every
    conversation, thousands in all. ``functools.lru_cache`` would need the arrays' bytes as keys (megabytes per
    entry); the digest is 16 bytes. Results are handed out read-only, since every caller shares them.
    """

    def decorate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        store: OrderedDict[tuple, np.ndarray] = OrderedDict()

        @functools.wraps(fn)
        def wrapper(*args: object) -> np.ndarray:
            key = tuple(
                (hashlib.blake2b(a.tobytes(), digest_size=16).digest(), a.shape, a.dtype.str)
                if isinstance(a, np.ndarray)
                else a
                for a in args
            )
            if key in store:
                store.move_to_end(key)
                return store[key]
            result = np.asarray(fn(*args))
            result.setflags(write=False)
            store[key] = result
            if len(store) > maxsize:
                store.popitem(last=False)
            return result

        return wrapper

    return decorate


def weighted_kmeans(embeddings: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Cosine k-means of d-vectors ``(N, D)`` into ``k`` clusters, each point counting ``weights`` ``(N,)`` times
    (10 restarts, seeded) -> ``(N,)`` int labels. Remembered per input, as dev tuning asks for the same one often."""
    data = np.ascontiguousarray(embeddings, dtype=np.float64)
    scale = np.ascontiguousarray(weights, dtype=np.float64)
    return _kmeans(data, scale, k).copy()


@remembered(maxsize=MEMORY)
def _kmeans(data: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    return KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(unit, sample_weight=weights)


@remembered(maxsize=MEMORY)
def _partition(data: np.ndarray, k: int, window_overlap: int) -> np.ndarray:
    """NME-SC's partition into ``k`` clusters, remembered: it does not depend on the ``centroid`` or
    ``silhouette`` settings, which dev tuning tries many of on the same recordings."""
    return spectral(data, k, k, True, window_overlap=window_overlap)


def centroid_count(
    embeddings: np.ndarray,
    min_speakers: int,
    max_speakers: int,
    weights: np.ndarray,
    max_cos: float,
    min_weight: float,
    window_overlap: int = 1,
) -> np.ndarray:
    """``(N, D)`` d-vectors -> ``(N,)`` labels: NME-SC's partition into k clusters for the largest k in the range
    whose clusters are all distinct speakers, or ``min_speakers`` clusters when no k is.

    A partition counts when every pair of cluster centroids (``weights``-weighted means of the unit d-vectors,
    normalised) has cosine below ``max_cos`` and every cluster weighs at least ``min_weight``: a speaker split in
    two leaves two alike halves, and a spurious cluster of a few odd points is light.
    """
    data = np.ascontiguousarray(embeddings, dtype=np.float64)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    for k in range(max_speakers, max(min_speakers, 2) - 1, -1):
        labels = np.asarray(_partition(data, k, window_overlap))
        if k == min_speakers or _distinct(unit, labels, k, weights, max_cos, min_weight):
            return labels
    return np.zeros(len(embeddings), dtype=int)


def weighted_centroids(unit: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unit centroid of each cluster, in the order of ``np.unique(labels)``: the ``weights``-weighted sum of its
    unit d-vectors ``unit`` ``(N, D)``, normalised -> ``(K, D)``."""
    centres = np.stack([(weights[labels == c, None] * unit[labels == c]).sum(axis=0) for c in np.unique(labels)])
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def centred(unit: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The unit d-vectors ``unit`` ``(N, D)`` of one recording less their ``weights``-weighted mean, normalised.

    What every segment of a recording shares (its channel, its background noise, the voice quality of the corpus)
    pulls all cosines up; removing it spreads the speakers apart. On the segment pairs of the dev conversations
    (recipes/diarization/separability.py, model v6) the mean AUC per conversation rose from 0.941 to 0.947.
    """
    rest = unit - (weights[:, None] * unit).sum(axis=0) / weights.sum()
    return rest / np.maximum(np.linalg.norm(rest, axis=1, keepdims=True), 1e-12)


def _distinct(
    unit: np.ndarray, labels: np.ndarray, k: int, weights: np.ndarray, max_cos: float, min_weight: float
) -> bool:
    """Whether the ``labels`` of the unit d-vectors ``unit`` form ``k`` clusters that are all distinct speakers:
    every pair of centroids (``weights``-weighted means, normalised) has cosine below ``max_cos`` and every
    cluster weighs at least ``min_weight``."""
    ids = np.unique(labels)
    if len(ids) != k:
        return False
    centres = weighted_centroids(unit, labels, weights)
    cosines = (centres @ centres.T)[np.triu_indices(k, 1)]
    return bool(cosines.max() < max_cos and min(weights[labels == c].sum() for c in ids) >= min_weight)


def silhouette_count(
    embeddings: np.ndarray,
    min_speakers: int,
    max_speakers: int,
    weights: np.ndarray,
    bonus: float,
    min_weight: float,
    one_speaker_cos: float,
    window_overlap: int = 1,
    centre: bool = False,
) -> np.ndarray:
    """``(N, D)`` d-vectors -> ``(N,)`` labels. The count: the k within the range whose NME-SC partition maximises
    the ``weights``-weighted mean cosine silhouette plus ``bonus`` * ln k, among the k whose every cluster weighs at
    least ``min_weight`` (``min_speakers`` when no k qualifies). The speakers: :func:`weighted_kmeans` into that
    many clusters.

    NME-SC's partitions count better, k-means's find the speakers better once the count is set: on the dev
    conversations with the count given, the DER at 2-4 speakers was 8.1% with k-means against 9.7% with NME-SC's
    partition (19.7% against 20.3% at 5-8; scratch replay of recipes/diarization/tune.py, model v5); counted as
    above and re-tuned, 18.8% against 19.2% over all dev conversations (tune.py), while counting on k-means's
    partitions got fewer 2-4 speaker counts right (61% against 69%; scratch replay).

    The silhouette alone favours two clusters (with many speakers, the nearest other cluster of a point is close
    at any k), hence the bonus per speaker; the weights make a 3 s segment count more than a 0.3 s one, and the
    least weight keeps a few odd points from being a speaker. Silhouettes cannot say one speaker: when
    ``min_speakers`` is 1, it is one speaker unless NME-SC's two clusters are distinct speakers (centroid cosine
    below ``one_speaker_cos``, however light), or no k qualifies. One speaker's recordings from different sessions
    split into two clusters that are still alike; spectralcluster's GMM/BIC test on the affinities (see
    :func:`spectral`), used here before, called 6 of 16 dev and 8 of 16 test one-speaker recordings several
    speakers and 3 of 16 two-speaker test conversations one (recipes/diarization/tune.py tunes the cosine on dev).

    With ``centre``, an estimated count (past the one-speaker test, which needs what the segments share) and its
    speakers come from the :func:`centred` d-vectors.
    """
    from sklearn.metrics import silhouette_samples

    n = len(embeddings)
    data = np.ascontiguousarray(embeddings, dtype=np.float64)

    def partition(k: int) -> np.ndarray:
        return np.asarray(_partition(data, k, window_overlap))

    lo = max(min_speakers, 2)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    # one speaker allowed: no least speech here, a light cluster unlike the rest is an outlier or a speaker who says
    # little, and the k that follow (each speaker >= min_weight) decide; demanding it called 5-8 speaker dev
    # recordings one
    if (
        min_speakers == 1
        and max_speakers > 1
        and (n < 3 or not _distinct(unit, partition(2), 2, weights, one_speaker_cos, 0.0))
    ):
        return np.zeros(n, dtype=int)
    if min_speakers == max_speakers:
        # the count given: k-means on the d-vectors as they are found the speakers better on dev (DER over all dev
        # conversations 13.9% against 14.6% on centred ones; scratch replay, model v6)
        return weighted_kmeans(data, weights, lo)
    if centre:
        data = centred(unit, weights)
    best: tuple[float, int] | None = None
    for k in range(lo, min(max_speakers, n - 1) + 1):  # the silhouette needs 2 <= clusters < points
        labels = partition(k)
        ids = np.unique(labels)
        if len(ids) != k or min(weights[labels == c].sum() for c in ids) < min_weight:
            continue
        silhouette = float(np.average(silhouette_samples(data, labels, metric="cosine"), weights=weights))
        score = silhouette + bonus * np.log(k)
        if best is None or score > best[0]:
            best = (score, k)
    if best is not None:
        return weighted_kmeans(data, weights, best[1])
    return weighted_kmeans(data, weights, lo) if min_speakers > 1 else np.zeros(n, dtype=int)


def cluster(
    embeddings: np.ndarray,
    min_speakers: int,
    max_speakers: int,
    method: str | None = None,
    window_overlap: int = 1,
    tuning: Tuning | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Speaker label per d-vector ``(N, D)`` -> ``(N,)`` int, with ``min_speakers <= max_speakers <= N``.

    ``method`` (one of :data:`METHODS`) and ``tuning`` default to :func:`tuned`'s. ``weights``: ``(N,)`` seconds
    of speech each d-vector stands for (``centroid`` and ``silhouette``; default 0.4 s each, the window step).
    """
    tuning = tuning or tuned()
    method = method or tuning.method
    if method not in METHODS:
        raise Ge2eError(f"unknown clustering method {method!r}; choose from {', '.join(METHODS)}")
    n = len(embeddings)
    if not 1 <= min_speakers <= max_speakers <= max(n, 1):
        raise ValueError(f"need 1 <= min_speakers <= max_speakers <= {n}, got {min_speakers} and {max_speakers}")
    if n == 1 or max_speakers == 1:
        return np.zeros(n, dtype=int)
    if method == "ahc":
        return agglomerative(embeddings, min_speakers, max_speakers, tuning.ahc_threshold)
    if method == "kmeans":
        return kmeans(embeddings, min_speakers, max_speakers)
    weights = np.full(n, 0.4) if weights is None else np.asarray(weights, dtype=np.float64)
    if method == "silhouette":
        return silhouette_count(
            embeddings,
            min_speakers,
            max_speakers,
            weights,
            tuning.silhouette_bonus,
            tuning.silhouette_min_s,
            tuning.one_speaker_cos,
            window_overlap,
            tuning.centred,
        )
    if method == "centroid":
        return centroid_count(
            embeddings,
            min_speakers,
            max_speakers,
            weights,
            tuning.centroid_max_cos,
            tuning.min_speaker_s,
            window_overlap,
        )
    autotune = method == "nme-sc"
    return spectral(embeddings, min_speakers, max_speakers, autotune, tuning.eigengap_p, window_overlap)
