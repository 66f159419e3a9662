"""Synthetic speakers for tests that must run without the corpora: harmonic "voices" with their own pitch and
formants, every utterance a different pitch contour, loudness and noise. Mechanics only, never reported figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ge2e.config import AudioConfig, DataConfig, ModelConfig, OptimConfig, SourceConfig, TrainConfig, ValConfig
from ge2e.data.prepare import prepare
from ge2e.data.readers import Utterance

SR = 16_000
# No VAD: the clips are all voice, and silero would dominate the run time of the tests that use them. No mean
# normalisation: these voices are stationary, so their spectral envelope, the speaker, is in the mean.
AUDIO = AudioConfig(vad=False, mean_normalize=False)


def voice(rng: np.random.Generator, f0: float, formants: np.ndarray, seconds: float) -> np.ndarray:
    """One utterance: harmonics of a drifting f0 shaped by resonances near ``formants`` (Hz), plus noise.

    Pitch, formants and a channel tilt vary per utterance, so that an untrained encoder confuses speakers and
    training has something to learn.
    """
    n = round(seconds * SR)
    f0 *= rng.uniform(0.9, 1.1)
    formants = formants * rng.uniform(0.95, 1.05, size=len(formants))
    tilt = rng.uniform(-1.0, 1.0)
    contour = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * np.arange(n) / SR + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(contour) / SR
    wav = np.zeros(n)
    for h in range(1, int(7_000 / f0)):
        freq = h * f0
        gain = sum(1.0 / (1.0 + ((freq - f) / 120.0) ** 2) for f in formants) * (freq / 1000) ** tilt
        wav += gain * np.sin(h * phase)
    wav += 0.05 * rng.standard_normal(n) * np.abs(wav).max()
    return (0.3 * wav / np.abs(wav).max() * rng.uniform(0.3, 1.0)).astype(np.float32)


def make_corpus(root: Path, speakers: int, utterances: int, seed: int = 0, labels: int = 0) -> list[Utterance]:
    """``<root>/spk<k>/<n>.wav`` for ``speakers`` voices x ``utterances`` clips of 1.2-2.4 s; with ``labels`` > 0,
    clip n gets the keyword label ``w<n % labels>``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(speakers):
        f0 = rng.uniform(100, 200)
        formants = np.sort(rng.uniform([300, 900, 2000], [900, 2200, 3500]))
        (root / f"spk{k}").mkdir(parents=True, exist_ok=True)
        for n in range(utterances):
            path = root / f"spk{k}" / f"{n}.wav"
            sf.write(path, voice(rng, f0, formants, rng.uniform(1.2, 2.4)), SR)
            out.append(Utterance(str(path), f"spk{k}", f"w{n % labels}" if labels else "", "synth"))
    return out


def make_cache(
    root: Path, speakers: int, utterances: int, seed: int = 0, labels: int = 0, augment: str | None = None
) -> Path:
    """A prepared feature cache (``AUDIO`` front end) of :func:`make_corpus` speakers, with ``augment``ed copies
    when given (e.g. ``"noise"``); returns its folder."""
    utts = make_corpus(root / "wav", speakers, utterances, seed, labels)
    prepare(utts, root / "feats", cfg=AUDIO, workers=1, progress=False, augment=augment)
    return root / "feats"


class LabelledCache:
    """An in-memory stand-in for :class:`ge2e.data.cache.FeatureCache` whose frames say where they come from.

    Frame t of utterance u of speaker s is ``[s, u, t, 1, 0, ...]``: a batch can be traced back to speakers,
    utterances and crop offsets, and the 1 tells real frames from zero padding.
    """

    def __init__(self, lengths: dict[str, list[int]], n_mels: int = 40) -> None:
        self.utterances: list[Utterance] = []
        self._frames: list[np.ndarray] = []
        self.n_mels = n_mels
        for s, (speaker, utt_lengths) in enumerate(sorted(lengths.items())):
            for length in utt_lengths:
                frames = np.zeros((length, n_mels), dtype=np.float32)
                frames[:, 0], frames[:, 1], frames[:, 2], frames[:, 3] = s, len(self.utterances), np.arange(length), 1
                self.utterances.append(Utterance(f"{speaker}/{len(self.utterances)}.wav", speaker, "", "mem"))
                self._frames.append(frames)

    @property
    def audio_config(self) -> AudioConfig:
        return AudioConfig(n_mels=self.n_mels)

    def features(self, i: int) -> np.ndarray:
        return self._frames[i].copy()


def tiny_train_config(
    out: Path, sources: list[SourceConfig], val_sources: list[SourceConfig], trials: int = 300, **changes
) -> TrainConfig:
    """A CPU training run of seconds: a 1 x 32 LSTM, 4 x 4 batches of 40-60 frames, 40 Adam steps, validation
    every 10 steps; ``changes`` set other top-level fields."""
    cfg = TrainConfig(
        out_dir=str(out),
        model=ModelConfig(hidden_size=32, proj_size=0, num_layers=1),
        data=DataConfig(
            sources=sources,
            speakers_per_batch=4,
            utterances_per_speaker=4,
            min_frames=40,
            max_frames=60,
            num_workers=0,
        ),
        optim=OptimConfig(name="adam", lr=0.003),
        val=ValConfig(sources=val_sources, every=10, trials=trials),
        steps=40,
        checkpoint_every=1000,
        seed=0,
        device="cpu",
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg
