"""The GE2E batch contract: N speakers x M utterances, one random crop length per batch (paper, Sec. 3).

Every batch is a pure function of ``(seed, rank, step)``. That makes training reproducible, lets DataLoader
workers build batches in parallel while keeping their order, and makes resuming exact: restarting at step k
draws the very batches an uninterrupted run would have drawn, with no sampler state to save.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ge2e.config import DataConfig, SourceConfig
from ge2e.data.cache import FeatureCache
from ge2e.data.splits import resolve_speakers
from ge2e.errors import ConfigError


@dataclass
class SpeakerPool:
    """The utterances of one data source grouped by speaker: ``groups[s]`` indexes ``cache``."""

    cache: FeatureCache
    speakers: list[str]
    groups: list[np.ndarray]
    name: str = ""

    @classmethod
    def from_source(cls, source: SourceConfig, min_utterances: int = 1) -> SpeakerPool:
        cache = FeatureCache(source.cache)
        indices = cache.select(resolve_speakers(source.splits), source.label or None, source.augmented)
        return cls.from_indices(cache, indices, min_utterances, name=f"{source.cache}:{source.label or '*'}")

    @classmethod
    def from_indices(
        cls, cache: FeatureCache, indices: list[int], min_utterances: int = 1, name: str = ""
    ) -> SpeakerPool:
        by_speaker: dict[str, list[int]] = {}
        for i in indices:
            by_speaker.setdefault(cache.utterances[i].key, []).append(i)
        kept = sorted(k for k, v in by_speaker.items() if len(v) >= min_utterances)
        return cls(cache, kept, [np.asarray(by_speaker[k]) for k in kept], name)

    def __len__(self) -> int:
        return len(self.speakers)


def crop(frames: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(length, n_mels)`` window of ``(T, n_mels)`` frames, T >= length."""
    start = int(rng.integers(0, frames.shape[0] - length + 1))
    return frames[start : start + length]


def fit_length(
    pool: SpeakerPool, speaker: int, utterance: int, length: int, short: str, rng: np.random.Generator
) -> np.ndarray:
    """``(length, n_mels)`` frames of one utterance: a random crop, extended first when it is too short.

    Short utterances (isolated words, 1 s keywords) are shorter than the 140-180-frame crop. ``"concat"`` joins
    the utterance with the speaker's *other* utterances, in random order and each at most once before any
    repeats, so a crop of a keyword corpus holds several different words of one speaker: text-independent
    material from text-dependent recordings. ``"pad"`` keeps one keyword per crop (text-dependent training).
    """
    frames = pool.cache.features(utterance)
    if frames.shape[0] < length:
        if short == "pad":
            pad = np.zeros((length - frames.shape[0], frames.shape[1]), dtype=frames.dtype)
            return np.concatenate([pad, frames])
        parts = [frames]
        total = frames.shape[0]
        others = rounds([u for u in pool.groups[speaker] if u != utterance] or [utterance], rng)
        while total < length:
            extra = pool.cache.features(int(next(others)))
            parts.append(extra)
            total += extra.shape[0]
        frames = np.concatenate(parts)
    return crop(frames, length, rng)


def rounds(items: list[int] | np.ndarray, rng: np.random.Generator) -> Iterator[int]:
    """``items`` in random order, round after round: each is used once before any is used again.

    A round's permutation is drawn only when the round starts, so a caller that stops early draws no more.
    """
    while True:
        yield from rng.permutation(np.asarray(items))


def distinct_draw(items: list[int] | np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` items of :func:`rounds` (all distinct when there are enough)."""
    return np.asarray(list(itertools.islice(rounds(items, rng), size)))


def random_span(size: int, length: int, rng: np.random.Generator) -> slice:
    """A slice of 0..size (at most ``length``) consecutive indices at a random place in ``range(length)``."""
    width = int(rng.integers(0, min(size, length) + 1))
    start = int(rng.integers(0, length - width + 1))
    return slice(start, start + width)


def spec_mask(batch: np.ndarray, freq_mask: int, time_mask: int, rng: np.random.Generator) -> None:
    """In place, per ``(T, n_mels)`` crop of an ``(N, M, T, n_mels)`` batch: zero one random band of 0..freq_mask
    mel bands and one random span of 0..time_mask frames (SpecAugment, Park et al. 2019, without time warping)."""
    t, n_mels = batch.shape[2:]
    for crop_ in batch.reshape(-1, t, n_mels):
        crop_[:, random_span(freq_mask, n_mels, rng)] = 0.0
        crop_[random_span(time_mask, t, rng)] = 0.0


class BatchDataset(torch.utils.data.Dataset):
    """Map-style dataset whose item ``step`` is that step's batches, one ``(N, M, T, n_mels)`` tensor per pool.

    With several pools (MultiReader) every pool contributes one batch per step, all with the same crop length.
    """

    def __init__(self, pools: list[SpeakerPool], cfg: DataConfig, seed: int, rank: int = 0, steps: int = 10**9):
        for pool in pools:
            if len(pool) < cfg.speakers_per_batch:
                raise ConfigError(
                    f"data source {pool.name} has {len(pool)} speakers with >= {cfg.min_utterances} utterances; "
                    f"a batch needs N={cfg.speakers_per_batch}"
                )
        if not 1 <= cfg.min_frames <= cfg.max_frames:
            raise ConfigError(
                f"crop lengths must satisfy 1 <= min_frames <= max_frames, got {cfg.min_frames}, {cfg.max_frames}"
            )
        self.pools, self.cfg, self.seed, self.rank, self.steps = pools, cfg, seed, rank, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> list[torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, step])
        length = int(rng.integers(self.cfg.min_frames, self.cfg.max_frames + 1))
        batches = [self._batch(pool, length, rng) for pool in self.pools]
        if self.cfg.freq_mask or self.cfg.time_mask:
            # masks come after every crop is cut, from a stream of their own: the crops stay as without masks
            mask_rng = np.random.default_rng([self.seed, self.rank, step, 1])
            for batch in batches:
                spec_mask(batch, self.cfg.freq_mask, self.cfg.time_mask, mask_rng)
        return [torch.from_numpy(b) for b in batches]

    def _batch(self, pool: SpeakerPool, length: int, rng: np.random.Generator) -> np.ndarray:
        n, m = self.cfg.speakers_per_batch, self.cfg.utterances_per_speaker
        out = np.empty((n, m, length, pool.cache.audio_config.n_mels), dtype=np.float32)
        for j, speaker in enumerate(rng.choice(len(pool), size=n, replace=False)):
            for i, utterance in enumerate(distinct_draw(pool.groups[speaker], m, rng)):
                out[j, i] = fit_length(pool, speaker, int(utterance), length, self.cfg.short, rng)
        return out
