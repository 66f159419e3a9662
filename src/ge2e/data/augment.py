"""Waveform augmentation applied at prepare time: each augmented copy is cached as an extra utterance.

- ``speed``: resampling by 0.9 and 1.1 (soxr) changes tempo AND pitch, so each copy becomes a new pseudo-speaker
  ``"<speaker>_sp0.9"`` (the Kaldi/VoxCeleb recipe).
- ``noise``: additive noise at a random SNR: coloured noise (1/f^beta spectrum) made in numpy, or a random
  excerpt of a noise file from a folder when one is given.
- ``reverb``: convolution with a simulated room impulse response: exponentially decaying Gaussian noise with a
  random RT60 in 0.2-0.8 s.
- ``telephone``: the narrowband telephone channel users feed a model: resampled to 8 kHz, band-limited to
  300-3400 Hz, then coded with G.711 mu-law or GSM 06.10 (13 kbit/s), both through libsndfile, and resampled back.
- ``babble``: 3-5 other people talking at once behind the speaker, at a random SNR of 5-15 dB: excerpts of random
  files of the noise folder, which must then hold speech (other speakers than the ones prepared, e.g. another
  corpus's training files).
- ``level``: a recording level far from the usual one: 20-50 dB quieter and rounded to 16-bit samples (a quiet
  microphone's quantisation noise), or driven 6-20 dB past full scale and clipped (an overloaded input).

All randomness comes from :func:`rng_for`, seeded by (seed, path, kind), so a copy is the same on every run
and in every worker process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soxr

from ge2e.audio import load_audio
from ge2e.decoding import AUDIO_EXTENSIONS, Limits, encode
from ge2e.errors import Ge2eError

AUGMENTATIONS = ("speed", "noise", "reverb", "telephone", "babble", "level")
SPEED_FACTORS = (0.9, 1.1)
SNR_RANGE_DB = (5.0, 20.0)
RT60_RANGE_S = (0.2, 0.8)
NOISE_BETA_RANGE = (0.0, 2.0)  # spectral slope: 0 white, 1 pink, 2 brown
DECAY_60DB = np.log(1000.0)  # amplitude falls by 60 dB (x 1/1000) over RT60 seconds
PHONE_RATE = 8_000
PHONE_BAND_HZ = (300.0, 3_400.0)  # the ITU-T telephone band
PHONE_CODECS = ("ULAW", "GSM610")  # G.711 mu-law (64 kbit/s) and GSM full rate (13 kbit/s), libsndfile subtypes
BABBLE_TALKERS = (3, 5)
BABBLE_SNR_DB = (5.0, 15.0)
QUIET_DB = (20.0, 50.0)  # level: attenuation of a quiet copy
LOUD_DB = (6.0, 20.0)  # level: how far past full scale a loud copy's peak is driven before clipping
PCM16 = 32_767


def parse_augment(spec: str | Sequence[str] | None) -> list[str]:
    """``"speed,noise"`` or ``["speed", "noise"]`` -> validated, de-duplicated kinds in canonical order."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    kinds = {s.strip() for s in items if s.strip()}
    unknown = sorted(kinds - set(AUGMENTATIONS))
    if unknown:
        raise Ge2eError(f"unknown augmentation(s) {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
    return [k for k in AUGMENTATIONS if k in kinds]


def variants(kinds: Sequence[str]) -> list[str]:
    """Names of the augmented copies made per file: ``speed`` gives ``speed0.9`` and ``speed1.1``."""
    out: list[str] = []
    for kind in kinds:
        if kind == "speed":
            out.extend(f"speed{f}" for f in SPEED_FACTORS)
        else:
            out.append(kind)
    return out


def pseudo_speaker(speaker: str, variant: str) -> str:
    """Speaker id of an augmented copy: speed copies are new speakers ``"<speaker>_sp<factor>"``."""
    return f"{speaker}_sp{variant.removeprefix('speed')}" if variant.startswith("speed") else speaker


def rng_for(seed: int, path: str, variant: str) -> np.random.Generator:
    """A generator that depends only on (seed, path, variant): deterministic across runs and processes."""
    digest = hashlib.sha256(f"{seed}\0{path}\0{variant}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def speed_perturb(wav: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Play (L,) samples ``factor`` times faster: (round(L / factor),) float32, pitch scaled by ``factor``."""
    # reading the samples as if recorded at sr * factor and resampling to sr shortens them by 1 / factor
    return soxr.resample(wav, sr * factor, sr, quality="HQ").astype(np.float32, copy=False)


def coloured_noise(length: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """(length,) float32 noise with power spectrum ~ 1/f^beta, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length)
    freqs[0] = freqs[1] if length > 1 else 1.0  # keep DC finite
    noise = np.fft.irfft(spectrum / freqs ** (beta / 2), n=length)
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def add_noise(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """(L,) ``wav`` + ``noise`` (tiled or cut to L) scaled so that power(wav) / power(noise) is ``snr_db`` dB."""
    noise = np.resize(noise.astype(np.float64), len(wav))  # np.resize repeats a short noise
    p_signal = float(np.mean(np.square(wav, dtype=np.float64)))
    p_noise = float(np.mean(noise**2))
    if p_signal == 0.0 or p_noise == 0.0:
        return wav.astype(np.float32, copy=True)
    gain = np.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (wav + gain * noise).astype(np.float32)


def simulated_rir(sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """(round(rt60 * sr),) float32 impulse response: a unit direct path then Gaussian noise whose amplitude
    decays by 60 dB over ``rt60`` seconds; scaled to unit energy so reverberation keeps the level."""
    n = max(2, round(rt60 * sr))
    t = np.arange(n) / sr
    rir = rng.standard_normal(n) * np.exp(-DECAY_60DB * t / rt60)
    rir[0] = 1.0
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """(L,) ``wav`` convolved with ``rir``, cut to L samples (the tail past the end is dropped) -> float32."""
    # FFT convolution in numpy: scipy.signal would add seconds of import time to every worker process
    n = 1 << (len(wav) + len(rir) - 2).bit_length()  # a power of two >= the full convolution length
    full = np.fft.irfft(np.fft.rfft(wav, n) * np.fft.rfft(rir, n), n)
    return full[: len(wav)].astype(np.float32)


def band_limit(wav: np.ndarray, sr: int, low: float, high: float) -> np.ndarray:
    """(L,) ``wav`` with every frequency outside [low, high] Hz removed (FFT mask) -> float32."""
    spectrum = np.fft.rfft(wav)
    freqs = np.fft.rfftfreq(len(wav), 1.0 / sr)
    spectrum[(freqs < low) | (freqs > high)] = 0.0
    return np.fft.irfft(spectrum, n=len(wav)).astype(np.float32)


def codec_round_trip(wav: np.ndarray, sr: int, subtype: str) -> np.ndarray:
    """(L,) ``wav`` encoded as a WAV of libsndfile ``subtype`` (e.g. ULAW, GSM610) and decoded again."""
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    scale = 0.99 / peak if peak > 0.99 else 1.0  # the codecs clip at full scale
    decoded = load_audio(encode(wav * scale, sr, subtype), target_sr=sr, limits=Limits(max_seconds=None))
    return decoded[: len(wav)] / scale  # GSM pads to whole 20 ms frames


def telephone(wav: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """(L,) ``wav`` through a simulated telephone line (module docstring), back at ``sr`` -> float32."""
    narrow = soxr.resample(wav, sr, PHONE_RATE, quality="HQ")
    narrow = band_limit(narrow, PHONE_RATE, *PHONE_BAND_HZ)
    narrow = codec_round_trip(narrow, PHONE_RATE, PHONE_CODECS[int(rng.integers(len(PHONE_CODECS)))])
    wide = soxr.resample(narrow, PHONE_RATE, sr, quality="HQ")
    return np.resize(wide, len(wav)).astype(np.float32)


def list_noise_files(folder: str | Path) -> list[str]:
    """Sorted audio files under ``folder`` (sorted so the per-file choice is reproducible)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Ge2eError(f"{folder}: noise folder not found")
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise Ge2eError(f"{folder}: no audio files in the noise folder")
    return files


def _excerpt(path: str, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``length`` samples of ``path`` at ``sr``, from a random start."""
    audio = load_audio(path, target_sr=sr)
    start = int(rng.integers(max(1, len(audio) - length + 1)))
    return audio[start : start + length]


def _noise_for(length: int, sr: int, rng: np.random.Generator, noise_files: Sequence[str]) -> np.ndarray:
    """``length`` samples of noise: coloured noise, or a random excerpt of a random file of ``noise_files``."""
    if not noise_files:
        return coloured_noise(length, float(rng.uniform(*NOISE_BETA_RANGE)), rng)
    return _excerpt(noise_files[int(rng.integers(len(noise_files)))], length, sr, rng)


def babble(length: int, sr: int, rng: np.random.Generator, speech_files: Sequence[str]) -> np.ndarray:
    """``length`` samples of 3-5 talkers: random excerpts of random ``speech_files``, each at unit RMS, summed."""
    if not speech_files:
        raise Ge2eError("babble augmentation needs a noise folder of speech recordings (prepare's --noise-dir)")
    talkers = int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))
    mix = np.zeros(length, dtype=np.float64)
    for k in rng.choice(len(speech_files), size=min(talkers, len(speech_files)), replace=False):
        part = np.resize(_excerpt(speech_files[int(k)], length, sr, rng), length).astype(np.float64)
        mix += part / max(float(np.sqrt(np.mean(part**2))), 1e-12)
    return mix.astype(np.float32)


def change_level(wav: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(L,) ``wav`` made quiet and 16-bit quantised, or loud and clipped (module docstring) -> float32."""
    if rng.random() < 0.5:
        quiet = wav * 10.0 ** (-rng.uniform(*QUIET_DB) / 20.0)
        return (np.round(quiet * PCM16) / PCM16).astype(np.float32)
    peak = max(float(np.max(np.abs(wav))) if len(wav) else 0.0, 1e-12)
    return np.clip(wav / peak * 10.0 ** (rng.uniform(*LOUD_DB) / 20.0), -1.0, 1.0).astype(np.float32)


def augment(
    wav: np.ndarray, sr: int, variant: str, rng: np.random.Generator, noise_files: Sequence[str] = ()
) -> np.ndarray:
    """Apply one variant (``speed0.9``, ``speed1.1``, ``noise``, ``reverb``, ``telephone``, ``babble``, ``level``)
    to (L,) samples. ``noise_files`` are the noise folder's files (``noise``; speech for ``babble``).

    Raises:
        Ge2eError: ``babble`` without ``noise_files``.
    """
    if variant.startswith("speed"):
        return speed_perturb(wav, sr, float(variant.removeprefix("speed")))
    if variant == "noise":
        return add_noise(wav, _noise_for(len(wav), sr, rng, noise_files), float(rng.uniform(*SNR_RANGE_DB)))
    if variant == "reverb":
        return reverberate(wav, simulated_rir(sr, float(rng.uniform(*RT60_RANGE_S)), rng))
    if variant == "telephone":
        return telephone(wav, sr, rng)
    if variant == "babble":
        return add_noise(wav, babble(len(wav), sr, rng, noise_files), float(rng.uniform(*BABBLE_SNR_DB)))
    if variant == "level":
        return change_level(wav, rng)
    raise ValueError(f"unknown augmentation variant {variant!r}")
