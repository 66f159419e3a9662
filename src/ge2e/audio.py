"""Audio front end: decode -> mono 16 kHz float32 -> volume normalisation -> VAD trim -> log-mel energies.

Every failure on a given input raises a subclass of :class:`ge2e.errors.AudioError` whose one-line message
names the file (arrays are named ``<array>``), so a data-preparation run can log and skip bad files.
"""

from __future__ import annotations

import errno
import functools
import io
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch

from ge2e.config import AudioConfig
from ge2e.errors import (
    AudioDecodeError,
    AudioError,
    AudioFileMissing,
    AudioTooShort,
    EmptyAudio,
    NonFiniteAudio,
    NoSpeechError,
    printable,
)
from ge2e.files import os_problem

logger = logging.getLogger(__name__)

ARRAY_NAME = "<array>"
MIN_SAMPLE_RATE = 4_000  # below this no speech band survives; such a rate is a caller bug, not a recording
WIDEBAND_RATE = 16_000  # below this rate the speech band above 4-8 kHz is missing (telephone, narrowband)
MAX_CHANNELS = 16  # a 2-D array with more "channels" than this is taken as a shape mistake
SILENCE_DBFS = -80.0  # peak level under which a recording is silent (16-bit dither sits near -90 dBFS)
LOG_FLOOR = 1e-6  # added to mel energies before the log, so silent frames stay finite
VAD_SAMPLE_RATES = (8_000, 16_000)  # the rates silero-vad accepts
VAD_MIN_REGION_MS = 100  # shorter speech regions are dropped; silero's 250 ms default loses 1 s keyword clips
# containers libsndfile cannot open; they go through ffmpeg (VoxCeleb2 is m4a/AAC)
FFMPEG_EXTENSIONS = frozenset({".m4a", ".aac", ".mp4", ".m4b", ".3gp", ".amr", ".wma", ".webm", ".mka", ".mkv"})

Source = str | Path | bytes | np.ndarray | tuple[np.ndarray, int]

# libsndfile's header log, e.g. "data : 32000 (should be 15978)": the data chunk promises more than the file holds
_SHORT_DATA = re.compile(r"^data\s*:\s*(\d+) \(should be (\d+)\)", re.MULTILINE)
_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_warned_rates: set[int] = set()  # sample rates already warned about as narrowband, one warning per rate


# ---------------------------------------------------------------------------------------------------- loading


def _to_float_samples(data: np.ndarray, name: str) -> np.ndarray:
    """Integer PCM -> float32 in [-1, 1); floats are cast to float32 unchanged (not rescaled)."""
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise AudioError(name, f"unsupported sample type {data.dtype}")
    if np.issubdtype(data.dtype, np.unsignedinteger):
        # unsigned PCM (e.g. 8-bit WAV) is offset binary: the midpoint is silence
        half = float(np.iinfo(data.dtype).max) / 2 + 0.5
        return ((data.astype(np.float64) - half) / half).astype(np.float32)
    if np.issubdtype(data.dtype, np.integer):
        return (data.astype(np.float64) / -float(np.iinfo(data.dtype).min)).astype(np.float32)
    return data.astype(np.float32, copy=False)


def _to_mono(data: np.ndarray, name: str) -> np.ndarray:
    """Average the channels of a 1-D (L,), (L, C) or (C, L) array into (L,).

    A 2-D array is read as (L, C) (soundfile's layout) when it has at least as many rows as columns, else as
    (C, L) (torch's layout): the channel axis is the shorter one. More than MAX_CHANNELS channels is an error.
    """
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise AudioError(name, f"expected a 1-D or 2-D audio array, got shape {data.shape}")
    frames_first = data.shape[0] >= data.shape[1]
    channels = data.shape[1] if frames_first else data.shape[0]
    if channels > MAX_CHANNELS:
        raise AudioError(name, f"cannot tell samples from channels in shape {data.shape}")
    return _average_channels(data, axis=1 if frames_first else 0)


def _average_channels(data: np.ndarray, axis: int) -> np.ndarray:
    # in float64: float32 sums of finite samples near +-3e38 overflow into infinities
    return data.mean(axis=axis, dtype=np.float64).astype(np.float32)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _read_soundfile(data: str | Path | io.BytesIO, name: str) -> tuple[np.ndarray, int]:
    """Decode with soundfile -> ((L, C) float32, sample rate in Hz); every failure becomes an AudioDecodeError."""
    try:
        with sf.SoundFile(data) as f:
            frames, sr, log = f.read(dtype="float32", always_2d=True), f.samplerate, f.extra_info
    except Exception as exc:  # libsndfile and its codecs raise several types; all mean "cannot decode"
        raise AudioDecodeError(name, f"cannot decode audio ({_first_line(exc)})") from exc
    short = _SHORT_DATA.search(log)
    if short:
        logger.warning(
            "%s: truncated file: its header promises %s bytes of audio, the file holds %s",
            printable(name), short[1], short[2],
        )  # fmt: skip
    return frames, int(sr)


def _read_ffmpeg(path: Path, name: str, sr: int) -> tuple[np.ndarray, int]:
    """Decode any container ffmpeg reads (m4a/AAC, ...) -> ((L, 1) float32 mono at ``sr``, ``sr``)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioDecodeError(
            name, f"{path.suffix or 'this'} audio needs ffmpeg, which is not installed (e.g. apt-get install ffmpeg)"
        )
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = (proc.stderr.decode(errors="replace").strip().splitlines() or ["ffmpeg failed"])[-1]
        raise AudioDecodeError(name, f"cannot decode audio ({reason})")
    return np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, 1), sr


def _decode_bytes(data: bytes, name: str, sr: int) -> tuple[np.ndarray, int]:
    """Bytes of an audio file: soundfile first; what it cannot read goes to ffmpeg through a temporary file (mp4
    containers keep their index at the end, so ffmpeg cannot read them from a pipe)."""
    try:
        return _read_soundfile(io.BytesIO(data), name)
    except AudioDecodeError:
        if shutil.which("ffmpeg") is None:
            raise
    with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
        tmp.write(data)
        tmp.flush()
        return _read_ffmpeg(Path(tmp.name), name, sr)


def _check_regular_file(path: Path) -> None:
    """Fail on anything but a readable, non-empty regular file (after links), without ever blocking: a FIFO
    would make a decoder wait forever for a writer."""
    try:
        # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if path.is_symlink():
            raise AudioFileMissing(path, "dangling symbolic link (its target does not exist)") from None
        raise AudioFileMissing(path, "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioDecodeError(path, "symbolic link loop") from None
        if exc.errno == errno.EISDIR:
            raise AudioDecodeError(path, "is a folder, not an audio file") from None
        raise AudioDecodeError(path, f"cannot open ({os_problem(exc)})") from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if stat.S_ISDIR(info.st_mode):
        raise AudioDecodeError(path, "is a folder, not an audio file")
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "a special file")
        raise AudioDecodeError(path, f"not a regular file ({kind})")
    if info.st_size == 0:
        raise EmptyAudio(path, "empty file (0 bytes)")


def _read_file(path: Path, sr: int) -> tuple[np.ndarray, int]:
    """Decode a file -> ((L, C) float32, sample rate in Hz): soundfile, or ffmpeg for the containers it lacks."""
    _check_regular_file(path)
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        return _read_ffmpeg(path, str(path), sr)
    return _read_soundfile(path, str(path))


def load_audio(source: Source, sr: int | None = None, target_sr: int = 16_000) -> np.ndarray:
    """Decode one input: a file, the bytes of a file, an array, or an ``(array, sample_rate)`` tuple.

    Files and bytes: wav, flac, ogg/vorbis, opus and mp3 through libsndfile; m4a/AAC and other containers
    (:data:`FFMPEG_EXTENSIONS`, or bytes libsndfile cannot read) through ffmpeg, with a one-line error saying
    so when ffmpeg is not installed.

    Args:
        source: a path, file bytes, or samples as a (L,), (L, C) or (C, L) array (layout rule: see
            :func:`_to_mono`); integer PCM is scaled to [-1, 1), floats are taken as already in [-1, 1].
        sr: sample rate of a bare array in Hz (required there); ignored for files (the header says it).
        target_sr: output sample rate in Hz.

    Returns:
        (L',) float32 mono samples at ``target_sr``, channels averaged, resampled with soxr "HQ".

    Raises:
        AudioFileMissing, AudioDecodeError, EmptyAudio, NonFiniteAudio, or AudioError (bad sample rate or
        array shape); the one-line message names the file, or ``<array>``.
    """
    if target_sr < MIN_SAMPLE_RATE:
        raise ValueError(f"target_sr must be >= {MIN_SAMPLE_RATE} Hz, got {target_sr}")
    if is_array_item(source):
        source, sr = source[0], int(source[1])  # type: ignore[index]
    if isinstance(source, np.ndarray):
        name = ARRAY_NAME
        if sr is None:
            raise AudioError(name, "sample rate (sr) is required for array input")
        if source.size == 0:
            raise EmptyAudio(name, "no samples")
        wav = _to_mono(_to_float_samples(source, name), name)
    elif isinstance(source, str | Path | bytes):
        name = input_name(source)
        if isinstance(source, bytes):
            frames, sr = _decode_bytes(source, name, target_sr)
        else:
            frames, sr = _read_file(Path(source), target_sr)
        if frames.size == 0:
            raise EmptyAudio(name, "no samples")
        wav = _average_channels(frames, axis=1)  # decoded layout is always (L, C)
    else:
        raise TypeError(
            f"audio must be a path, bytes, an array or an (array, sr) tuple, got {type(source).__name__}"
        )
    if sr < MIN_SAMPLE_RATE:
        raise AudioError(name, f"unsupported sample rate {sr} Hz (need >= {MIN_SAMPLE_RATE} Hz)")
    if not np.isfinite(wav).all():
        raise NonFiniteAudio(name, f"{int((~np.isfinite(wav)).sum())} NaN or infinite samples")
    if sr < min(target_sr, WIDEBAND_RATE) and sr not in _warned_rates:
        _warned_rates.add(sr)
        logger.warning(
            "%s: narrowband audio (%d Hz): nothing above %d Hz to hear, so scores are less reliable than on "
            "16 kHz audio (not repeated for other %d Hz files)", printable(name), sr, sr // 2, sr,
        )  # fmt: skip
    if sr != target_sr:
        wav = soxr.resample(wav, sr, target_sr, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)


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


def is_array_item(item: Any) -> bool:
    """Whether ``item`` is a ``(samples, sample_rate)`` tuple."""
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], np.ndarray)
        and isinstance(item[1], int | np.integer)
    )


def input_name(source: Source, name: str | None = None) -> str:
    """How errors name an input: ``name`` if given, else the path, ``<bytes>`` or ``<array>``."""
    if name is not None:
        return name
    if isinstance(source, bytes):
        return "<bytes>"
    return str(source) if isinstance(source, str | Path) else ARRAY_NAME


def load_normalized(source: Source, sr: int | None, cfg: AudioConfig, name: str) -> np.ndarray:
    """Load (mono, ``cfg.sample_rate``), reject silence, normalise the volume -> float32 ``(L,)``.

    Raises:
        AudioError subclasses named ``name``; NoSpeechError for silent audio.
    """
    try:
        wav = load_audio(source, sr, cfg.sample_rate)
    except AudioError as exc:
        raise type(exc)(name, exc.problem) from exc
    # checked before normalising, which would amplify near-silence (noise floor, dither) to speech level
    level = peak_dbfs(wav)
    if level < SILENCE_DBFS:
        raise NoSpeechError(name, f"silent audio (peak {level:.0f} dBFS)")
    return normalize_volume(wav, cfg.normalization, cfg.target_dbfs)


def load_speech(
    source: Source, sr: int | None = None, cfg: AudioConfig = AudioConfig(), name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`load_normalized` samples ``(L,)`` and the boolean ``(L,)`` mask of their speech (VAD, padded by
    ``cfg.vad_pad_ms``; all True when ``cfg.vad`` is off). The one place the front end decides what is speech:
    :func:`preprocess` keeps the masked samples, diarization the frames whose centre is masked.

    Raises:
        AudioError subclasses named ``name`` (default: see :func:`input_name`); NoSpeechError when silent or
        when the VAD finds no speech.
    """
    name = input_name(source, name)
    wav = load_normalized(source, sr, cfg, name)
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
    """The whole front end for one utterance -> (T, n_mels) float32 log-mel features.

    :func:`load_speech` (decode to mono ``cfg.sample_rate``, silence check, volume normalisation, VAD) -> the
    speech samples -> minimum duration -> :func:`log_mel` -> subtract the per-utterance mean over time (if
    ``cfg.mean_normalize``).

    Args:
        source, sr: as for :func:`load_audio` (a path, file bytes, an array with ``sr``, or ``(array, sr)``).
        name: how errors name the input (default: the path, or ``<array>``).
        min_speech_ms: least speech (audio when ``cfg.vad`` is off) accepted, default ``cfg.min_speech_ms``
            (what training data needs); never less than one analysis window.

    Raises:
        AudioError subclasses; NoSpeechError for silent audio or no speech, AudioTooShort under the minimum.
    """
    name = input_name(source, name)
    wav, mask = load_speech(source, sr, cfg, name)
    wav = wav[mask]
    minimum_ms = cfg.min_speech_ms if min_speech_ms is None else min_speech_ms
    min_samples = max(round(minimum_ms * cfg.sample_rate / 1000), cfg.win_length)
    if len(wav) < min_samples:
        what = "speech" if cfg.vad else "audio"
        ms = 1000 / cfg.sample_rate
        raise AudioTooShort(name, f"{ms * len(wav):.0f} ms of {what}, need {ms * min_samples:.0f} ms")
    feats = log_mel(torch.from_numpy(wav), cfg)
    if cfg.mean_normalize:
        feats = feats - feats.mean(dim=0, keepdim=True)
    return feats.numpy().astype(np.float32, copy=False)
