"""Audio front end: decode (:mod:`ge2e.decoding`) -> mono 16 kHz float32 -> volume normalisation -> VAD trim ->
log-mel energies.

Every failure on a given input raises a subclass of :class:`ge2e.errors.AudioError` whose one-line message
names the file (arrays are named ``<array>``), so a data-preparation run can log and skip bad files.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import soxr
import torch

from ge2e.config import AudioConfig
from ge2e.decoding import ARRAY_NAME, DEFAULT_LIMITS, Limits, Source, input_name, load_audio
from ge2e.errors import (
    AudioTooShort,
    LowConfidenceSpeech,
    NoSpeechError,
)

logger = logging.getLogger(__name__)

SILENCE_DBFS = -80.0  # peak level under which a recording is silent (16-bit dither sits near -90 dBFS)
LOG_FLOOR = 1e-6  # added to mel energies before the log, so silent frames stay finite
VAD_SAMPLE_RATES = (8_000, 16_000)  # the rates silero-vad accepts
VAD_MIN_REGION_MS = 100  # shorter speech regions are dropped; silero's 250 ms default loses 1 s keyword clips
# The fallback when the VAD keeps too little of an audible clip: 10 ms frames within this many dB of the loudest
# frame count as speech (a clearly spoken word is tens of dB above the room; the pauses around it are not).
ENERGY_FRAME_MS = 10.0
ENERGY_RANGE_DB = 35.0
MIN_SPEECH_SPREAD_DB = 10.0  # least spread of frame levels (95th - 5th percentile) that can be speech


# ------------------------------------------------------------------------------------------------ loudness


def peak_dbfs(wav: np.ndarray) -> float:
    """Peak level of (L,) samples in dBFS (0 dBFS = full scale 1.0); -inf for all-zero audio."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def normalize_volume(wav: np.ndarray, method: str = "loudness", target_dbfs: float = -30.0) -> np.ndarray:
    """Scale (L,) float samples to a target level; returns a new float32 array.

    - ``"peak"``: max |x| becomes ``10 ** (target_dbfs / 20)`` (the peak sits at ``target_dbfs`` dBFS).
    - ``"loudness"``: RMS becomes ``target_dbfs`` dBFS, but the gain is capped so max |x| <= 1: lowering the
      gain keeps the waveform intact, where clipping samples would add distortion.
    - ``"none"``: unchanged.

    All-zero input is returned unchanged (there is no level to scale).
    """
    if method not in ("peak", "loudness", "none"):
        raise ValueError(f"unknown normalization {method!r}; expected 'peak', 'loudness' or 'none'")
    wav = np.asarray(wav, dtype=np.float32)
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if method == "none" or peak == 0.0:
        return wav.copy()
    target = 10.0 ** (target_dbfs / 20.0)
    if method == "peak":
        gain = target / peak
    else:
        rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
        gain = min(target / rms, 1.0 / peak)
    return (wav * np.float32(gain)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ VAD

_vad_lock = threading.Lock()


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _silero_module() -> Any:
    # importing silero_vad calls torch.set_num_threads(1) as a side effect; undo it so that training and
    # inference in the same process keep their thread count (the VAD sets its own, below)
    with _torch_threads(torch.get_num_threads()):
        import silero_vad
    return silero_vad


@functools.cache
def _silero_sequence() -> Any | None:
    """silero's "sequence" ONNX model (one onnxruntime call per 512 frames, single-threaded), or None without
    onnxruntime. It gives the streaming model's probabilities bit for bit, ~6x faster than one call per frame."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    return _load_silero(sequence=True)


@functools.cache
def _silero_jit() -> Any:
    """silero-vad's TorchScript streaming model (one call per 32 ms frame), for 8 kHz or without onnxruntime."""
    return _load_silero(onnx=False)


def _load_silero(**kwargs: Any) -> Any:
    logger.debug("loading silero-vad %s", kwargs)
    with warnings.catch_warnings():  # its loader uses deprecated importlib and torch.jit calls; not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        return _silero_module().load_silero_vad(**kwargs)


def _speech_probabilities(wav: np.ndarray, sr: int) -> list[float]:
    """silero's speech probability of every 32 ms frame of (L,) samples at 8 or 16 kHz."""
    sequence = _silero_sequence() if sr == 16_000 else None
    if sequence is not None:
        return sequence.audio_forward(wav, sampling_rate=sr).tolist()
    chunk = 512 if sr == 16_000 else 256
    padded = np.zeros(-(-len(wav) // chunk) * chunk, dtype=np.float32)
    padded[: len(wav)] = wav
    frames = torch.from_numpy(padded).reshape(-1, chunk)
    # one call per 32 ms frame: with more than one thread each tiny call pays thread wake-ups (measured up to
    # 40x slower on a busy 2-core machine), which is why silero sets one thread on import
    with _vad_lock, torch.no_grad(), _torch_threads(1):
        model = _silero_jit()
        model.reset_states()
        return [model(frame, sr).item() for frame in frames]


def speech_regions(wav: np.ndarray, sr: int, threshold: float = 0.5) -> list[tuple[int, int]]:
    """(start, end) sample ranges silero-vad calls speech in (L,) samples at 8 or 16 kHz, without padding.

    Regions are what silero's ``get_speech_timestamps`` returns (its hysteresis, regions under
    ``VAD_MIN_REGION_MS`` dropped); the probabilities come from its sequence ONNX model where onnxruntime is
    installed (16 kHz), else from its TorchScript model.
    """
    stamps = _silero_module().utils_vad.get_speech_timestamps_from_probs(
        _speech_probabilities(np.ascontiguousarray(wav, dtype=np.float32), sr),
        sampling_rate=sr,
        threshold=threshold,
        min_speech_duration_ms=VAD_MIN_REGION_MS,
        speech_pad_ms=0,  # padding is applied by speech_mask, in the caller's sample rate
        audio_length_samples=len(wav),
    )
    return [(stamp["start"], stamp["end"]) for stamp in stamps]


def speech_mask(wav: np.ndarray, sr: int, threshold: float = 0.5, pad_ms: float = 60.0) -> np.ndarray:
    """Boolean (L,) mask of the samples silero-vad calls speech, each region widened by ``pad_ms`` per side.

    Args:
        wav: (L,) float32 samples in [-1, 1].
        sr: sample rate in Hz; 8 and 16 kHz go to the model as they are, other rates via a 16 kHz copy.
        threshold: speech probability above which a 32 ms frame is speech (silero's hysteresis applies).
        pad_ms: margin kept around every speech region, in milliseconds.
    """
    vad_sr = sr if sr in VAD_SAMPLE_RATES else 16_000
    vad_wav = wav if vad_sr == sr else soxr.resample(wav, sr, vad_sr, quality="HQ")
    scale = sr / vad_sr
    pad = round(pad_ms * sr / 1000)
    mask = np.zeros(len(wav), dtype=bool)
    for start, end in speech_regions(vad_wav, vad_sr, threshold):
        mask[max(0, round(start * scale) - pad) : round(end * scale) + pad] = True
    return mask


def trim_silence(
    wav: np.ndarray, sr: int, threshold: float = 0.5, pad_ms: float = 60.0, name: str = ARRAY_NAME
) -> np.ndarray:
    """Keep only the speech of (L,) samples: the :func:`speech_mask` regions, concatenated -> (L',) float32.

    Raises:
        NoSpeechError: silero-vad found no speech; the message names ``name``.
    """
    return wav[_require_speech(speech_mask(wav, sr, threshold, pad_ms), name, threshold)]


def _frame_levels(wav: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """dB power of each whole 10 ms frame of (L,) samples, and the frame length in samples."""
    hop = max(1, round(ENERGY_FRAME_MS * sr / 1000))
    frames = len(wav) // hop
    power = np.mean(np.square(wav[: frames * hop].reshape(frames, hop), dtype=np.float64), axis=1)
    return 10 * np.log10(power + 1e-12), hop


def energy_mask(wav: np.ndarray, sr: int, pad_ms: float = 60.0) -> np.ndarray:
    """Boolean (L,) mask of the 10 ms frames within ``ENERGY_RANGE_DB`` of the loudest one, padded by ``pad_ms``."""
    level, hop = _frame_levels(wav, sr)
    if not len(level):
        return np.ones(len(wav), dtype=bool)
    loud = level >= level.max() - ENERGY_RANGE_DB
    pad = int(np.ceil(pad_ms / ENERGY_FRAME_MS))
    if pad:  # widen every kept region by pad frames per side
        loud = np.convolve(loud, np.ones(2 * pad + 1), mode="same") > 0
    mask = np.zeros(len(wav), dtype=bool)
    mask[: len(level) * hop] = np.repeat(loud, hop)
    return mask


def _fallback_mask(wav: np.ndarray, cfg: AudioConfig, min_samples: int, name: str, found: int) -> np.ndarray:
    """What to score when the VAD keeps less than ``min_samples`` of audible audio: the :func:`energy_mask`
    frames when they are enough, else the whole clip; a :class:`LowConfidenceSpeech` warning names the file.

    Raises:
        NoSpeechError: the level barely varies (steady noise, a hum, a tone): speech rises and falls with its
            syllables, by far more than ``MIN_SPEECH_SPREAD_DB`` between its quiet and loud frames.
    """
    level, _ = _frame_levels(wav, cfg.sample_rate)
    spread = float(np.subtract(*np.percentile(level, [95, 5]))) if len(level) else 0.0
    if spread < MIN_SPEECH_SPREAD_DB:
        raise NoSpeechError(name, f"no speech found by VAD (threshold {cfg.vad_threshold}; steady sound)")
    mask = energy_mask(wav, cfg.sample_rate, cfg.vad_pad_ms)
    what = "the energy-trimmed audio"
    if mask.sum() < min_samples:
        mask, what = np.ones(len(wav), dtype=bool), "the whole clip"
    ms = 1000 / cfg.sample_rate
    warnings.warn(
        LowConfidenceSpeech(f"{name}: the VAD found {ms * found:.0f} ms of speech; scored {what} (low confidence)"),
        stacklevel=3,
    )
    return mask


def _require_speech(mask: np.ndarray, name: str, threshold: float) -> np.ndarray:
    if not mask.any():
        raise NoSpeechError(name, f"no speech found by VAD (threshold {threshold})")
    return mask


# -------------------------------------------------------------------------------------------------- log-mel


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 2595 * log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_frequencies(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels + 2,) band edges in Hz, equally spaced on the HTK mel scale; band i peaks at edge i + 1."""
    return _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))


@functools.lru_cache(maxsize=16)
def _mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float, device: torch.device
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, peak 1, no area normalisation (as torchaudio)."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz, got f_min={f_min}, f_max={f_max}")
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_frequencies(n_mels, f_min, f_max)
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    fbank = np.maximum(0.0, np.minimum(rising, falling))
    return torch.from_numpy(fbank.astype(np.float32)).to(device)


@functools.lru_cache(maxsize=16)
def _hann_window(win_length: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(win_length, periodic=True, dtype=torch.float32, device=device)


def log_mel(wav: torch.Tensor, cfg: AudioConfig = AudioConfig()) -> torch.Tensor:
    """Log mel-filterbank energies of (L,) -> (T, n_mels) or (B, L) -> (B, T, n_mels), float32, same device.

    Frames are ``win_length`` samples (hann window, zero-padded to ``n_fft`` for the FFT) every ``hop_length``
    samples, with no padding of the signal, so ``T = 1 + (L - win_length) // hop_length``. Values are
    ``log(mel_power + 1e-6)`` of the power spectrum |STFT|^2 through HTK-scale triangular filters on
    [f_min, f_max]. No mean normalisation here: :func:`preprocess` does that per utterance.
    """
    if wav.dim() not in (1, 2):
        raise ValueError(f"log_mel expects (L,) or (B, L) samples, got shape {tuple(wav.shape)}")
    win, hop, n_fft = cfg.win_length, cfg.hop_length, cfg.n_fft
    if n_fft < win:
        raise ValueError(f"n_fft ({n_fft}) must be >= the window length ({win} samples)")
    if wav.shape[-1] < win:
        raise ValueError(f"need at least {win} samples for one frame, got {wav.shape[-1]}")
    wav = wav.to(torch.float32)
    # torch.stft centres the win-sample window inside each n_fft frame; padding the signal by the same margin
    # makes frame t cover exactly samples [t * hop, t * hop + win) of the input
    left = (n_fft - win) // 2
    padded = torch.nn.functional.pad(wav, (left, n_fft - win - left))
    spec = torch.stft(
        padded,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win,
        window=_hann_window(win, wav.device),
        center=False,
        return_complex=True,
    )  # (..., n_fft // 2 + 1, T)
    power = torch.view_as_real(spec).square().sum(-1)
    fbank = _mel_filterbank(cfg.sample_rate, n_fft, cfg.n_mels, cfg.f_min, cfg.f_max, wav.device)
    mel = torch.matmul(fbank, power)  # (..., n_mels, T)
    return torch.log(mel + LOG_FLOOR).transpose(-1, -2).contiguous()


# ---------------------------------------------------------------------------------------------- front end


def load_normalized(
    source: Source, sr: int | None, cfg: AudioConfig, name: str, limits: Limits = DEFAULT_LIMITS
) -> np.ndarray:
    """Load (mono, ``cfg.sample_rate``, within ``limits``), reject less than one analysis window and silence,
    normalise the volume -> float32 ``(L,)``.

    Raises:
        AudioError subclasses named ``name``; AudioTooShort under one window; NoSpeechError for silent audio.
    """
    wav = load_audio(source, sr, cfg.sample_rate, limits, name)
    if len(wav) < cfg.win_length:
        ms = 1000 / cfg.sample_rate
        raise AudioTooShort(name, f"{ms * len(wav):.0f} ms of audio, need at least {ms * cfg.win_length:.0f} ms")
    # checked before normalising, which would amplify near-silence (noise floor, dither) to speech level
    level = peak_dbfs(wav)
    if level < SILENCE_DBFS:
        raise NoSpeechError(name, f"silent audio (peak {level:.0f} dBFS)")
    return normalize_volume(wav, cfg.normalization, cfg.target_dbfs)


def load_speech(
    source: Source,
    sr: int | None = None,
    cfg: AudioConfig = AudioConfig(),
    name: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_normalized` samples ``(L,)`` and the boolean ``(L,)`` mask of their speech (VAD, padded by
    ``cfg.vad_pad_ms``; all True when ``cfg.vad`` is off), for diarization, which keeps the frames whose centre
    is masked. One utterance (:func:`speech_features`) goes through the same VAD, with a fallback.

    Raises:
        AudioError subclasses named ``name`` (default: see :func:`input_name`); NoSpeechError when silent or
        when the VAD finds no speech.
    """
    name = input_name(source, name)
    wav = load_normalized(source, sr, cfg, name, limits)
    if not cfg.vad:
        return wav, np.ones(len(wav), dtype=bool)
    mask = speech_mask(wav, cfg.sample_rate, cfg.vad_threshold, cfg.vad_pad_ms)
    return wav, _require_speech(mask, name, cfg.vad_threshold)


def preprocess(
    source: Source,
    sr: int | None = None,
    cfg: AudioConfig = AudioConfig(),
    name: str | None = None,
    min_speech_ms: float | None = None,
) -> np.ndarray:
    """The whole front end for one utterance -> (T, n_mels) float32 log-mel features (:func:`speech_features`)."""
    return speech_features(source, sr, cfg, name, min_speech_ms)[0]


def speech_features(
    source: Source,
    sr: int | None = None,
    cfg: AudioConfig = AudioConfig(),
    name: str | None = None,
    min_speech_ms: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole front end for one utterance -> (T, n_mels) float32 log-mel features, and the ``(S,)`` positions
    in the decoded ``cfg.sample_rate`` audio of the speech samples they were computed from (frame ``t`` covers
    speech samples ``[t * hop_length, t * hop_length + win_length)``), which place windows on the input's timeline.

    :func:`load_normalized` (decode to mono ``cfg.sample_rate``, silence check, volume normalisation) -> VAD ->
    the speech samples -> minimum duration -> :func:`log_mel` -> subtract the per-utterance mean over time (if
    ``cfg.mean_normalize``). Only silent and near-silent audio is refused as no speech: when the VAD keeps less
    than the minimum of an audible clip, the energy-trimmed clip (else the whole clip) is scored instead, with a
    :class:`~ge2e.errors.LowConfidenceSpeech` warning.

    Args:
        source, sr: as for :func:`load_audio` (a path, file bytes, an array with ``sr``, or ``(array, sr)``).
        name: how errors name the input (default: the path, or ``<array>``).
        min_speech_ms: least speech (audio when ``cfg.vad`` is off) accepted, default ``cfg.min_speech_ms``
            (what training data needs); never less than one analysis window.
        limits: what the decoder accepts (:class:`ge2e.decoding.Limits`).

    Raises:
        AudioError subclasses; NoSpeechError for silent audio, AudioTooShort when even the whole clip is under
        the minimum.
    """
    name = input_name(source, name)
    wav = load_normalized(source, sr, cfg, name, limits)
    minimum_ms = cfg.min_speech_ms if min_speech_ms is None else min_speech_ms
    min_samples = max(round(minimum_ms * cfg.sample_rate / 1000), cfg.win_length)
    mask = np.ones(len(wav), dtype=bool)
    if cfg.vad:
        mask = speech_mask(wav, cfg.sample_rate, cfg.vad_threshold, cfg.vad_pad_ms)
        if mask.sum() < min_samples:
            mask = _fallback_mask(wav, cfg, min_samples, name, int(mask.sum()))
    positions = np.flatnonzero(mask)
    wav = wav[positions]
    if len(wav) < min_samples:
        ms = 1000 / cfg.sample_rate
        raise AudioTooShort(name, f"{ms * len(wav):.0f} ms of audio, need {ms * min_samples:.0f} ms")
    feats = log_mel(torch.from_numpy(wav), cfg)
    if cfg.mean_normalize:
        feats = feats - feats.mean(dim=0, keepdim=True)
    return feats.numpy().astype(np.float32, copy=False), positions
