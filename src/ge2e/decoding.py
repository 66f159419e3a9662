"""Decoding, the only door for audio: a file, the bytes of a file, an array or an ``(array, sample_rate)`` tuple ->
mono float32 samples at the front end's rate, within explicit :class:`Limits` (duration, sample rate, channels,
whether ffmpeg may run). The first step of the audio front end (:mod:`ge2e.audio`), which re-exports
:func:`load_audio`. The CLI and the API decode with :data:`DEFAULT_LIMITS`, the service with its own policy
(``ge2e.serve``); docs/usage.md lists what each accepts.

wav, flac, ogg/vorbis, opus and mp3 (:data:`SOUNDFILE_EXTENSIONS`) go through libsndfile (soundfile), a block at a
time, so a long or many-channel file never sits in memory whole; m4a/AAC and other containers
(:data:`FFMPEG_EXTENSIONS`) through ffmpeg. Every failure raises a subclass of :class:`ge2e.errors.AudioError`
whose one-line message names the file (arrays are named ``<array>``).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from ge2e.errors import (
    AudioDecodeError,
    AudioError,
    AudioFileMissing,
    AudioTooLong,
    EmptyAudio,
    Ge2eError,
    NonFiniteAudio,
    printable,
)
from ge2e.files import os_problem

logger = logging.getLogger(__name__)

ARRAY_NAME = "<array>"
MIN_SAMPLE_RATE = 4_000  # below this no speech band survives; such a rate is a caller bug, not a recording
WIDEBAND_RATE = 16_000  # below this rate the speech band above 4-8 kHz is missing (telephone, narrowband)
MAX_SAMPLE_RATE = 384_000  # the highest rate audio interfaces record at; a larger header value is a broken file
# 32 covers every recording layout up to third-order ambisonics and large microphone arrays; more is taken as a
# broken header, or for an array as a shape mistake
MAX_CHANNELS = 32
# An hour covers any enrollment or test utterance and most meetings: a longer file is refused from its header before
# decoding, so that a folder walk cannot fill the memory (an hour at 48 kHz is 0.7 GB of float32 samples).
DEFAULT_MAX_SECONDS = 3600.0
DECODE_BLOCK_SECONDS = 1.0  # read and downmixed a block at a time, so a many-channel file never sits in memory
SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".opus", ".mp3"})
# containers libsndfile cannot open; they go through ffmpeg (VoxCeleb2 is m4a/AAC)
FFMPEG_EXTENSIONS = frozenset({".m4a", ".aac", ".mp4", ".m4b", ".3gp", ".amr", ".wma", ".webm", ".mka", ".mkv"})
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS  # what folder walks collect
# what a decoder that may not run ffmpeg says it reads
NO_FFMPEG = "formats that need ffmpeg (m4a, aac, ...) are refused here; wav, flac, ogg, opus and mp3 are read"

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


@dataclass(frozen=True)
class Limits:
    """What :func:`load_audio` accepts from a file or bytes (in-memory arrays are already in memory: only the rate
    and channel limits apply to them).

    Attributes:
        max_seconds: longest audio decoded; longer is :class:`AudioTooLong`, seen from the header where it says
            the length and while reading otherwise (never decoding more than this). ``None``: no cap.
        max_sample_rate: highest sample rate in Hz (the lowest is :data:`MIN_SAMPLE_RATE`).
        max_channels: most channels.
        allow_ffmpeg: whether formats libsndfile cannot read may go through ffmpeg (a subprocess).
    """

    max_seconds: float | None = DEFAULT_MAX_SECONDS
    max_sample_rate: int = MAX_SAMPLE_RATE
    max_channels: int = MAX_CHANNELS
    allow_ffmpeg: bool = True

    def __post_init__(self) -> None:
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise Ge2eError(f"the maximum duration must be > 0 seconds, got {self.max_seconds}")

    def max_frames(self, sr: int) -> int | None:
        """The most samples per channel at ``sr`` Hz, or ``None`` without a cap."""
        return None if self.max_seconds is None else int(self.max_seconds * sr)

    def too_long(self, name: str, seconds: float | None = None) -> AudioTooLong:
        """The error for audio over ``max_seconds`` (``seconds``: the length the header gives)."""
        length = "audio" if seconds is None else f"{seconds:.0f} s of audio,"
        return AudioTooLong(name, f"{length} longer than the {self.max_seconds:g} s limit")


DEFAULT_LIMITS = Limits()  # the CLI's and the API's (``--max-seconds`` changes the duration)


def encode(wav: np.ndarray, sr: int, subtype: str = "FLOAT") -> bytes:
    """The bytes of a WAV file of (L,) float samples at ``sr`` Hz, in libsndfile's ``subtype`` (PCM_16, ULAW,
    GSM610, ...): for codec simulation, which decodes them again with :func:`load_audio`."""
    buffer = io.BytesIO()
    sf.write(buffer, wav, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


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


def _to_mono(data: np.ndarray, name: str, max_channels: int) -> np.ndarray:
    """Average the channels of a 1-D (L,), (L, C) or (C, L) array into (L,).

    A 2-D array is read as (L, C) (soundfile's layout) when it has at least as many rows as columns, else as
    (C, L) (torch's layout): the channel axis is the shorter one. More than ``max_channels`` channels is an error.
    """
    if data.ndim == 1:
        return data
    if data.ndim != 2:
        raise AudioError(name, f"expected a 1-D or 2-D audio array, got shape {data.shape}")
    frames_first = data.shape[0] >= data.shape[1]
    channels = data.shape[1] if frames_first else data.shape[0]
    if channels > max_channels:
        raise AudioError(name, f"cannot tell samples from channels in shape {data.shape}")
    return _average_channels(data, axis=1 if frames_first else 0)


def _average_channels(data: np.ndarray, axis: int) -> np.ndarray:
    # in float64: float32 sums of finite samples near +-3e38 overflow into infinities
    return data.mean(axis=axis, dtype=np.float64).astype(np.float32)


def _first_line(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"^Error opening (<[^>]*>|'.*'): ", "", first)  # the line names the input already


def _check_format(name: str, sr: int, channels: int, limits: Limits) -> None:
    if not MIN_SAMPLE_RATE <= sr <= limits.max_sample_rate:
        raise AudioError(
            name, f"unsupported sample rate {sr} Hz (need {MIN_SAMPLE_RATE} to {limits.max_sample_rate} Hz)"
        )
    if not 0 < channels <= limits.max_channels:
        raise AudioError(name, f"unsupported format: {channels} channels (at most {limits.max_channels})")


def _read_soundfile(data: str | Path | io.BytesIO, name: str, limits: Limits) -> tuple[np.ndarray, int]:
    """Decode with soundfile, a block at a time -> ((L,) float32 mono, sample rate in Hz); every decoder failure
    becomes an AudioDecodeError. At most ``limits.max_seconds`` are decoded (plus one sample, to tell)."""
    try:
        with sf.SoundFile(data) as f:
            sr = int(f.samplerate)
            _check_format(name, sr, int(f.channels), limits)
            limit = limits.max_frames(sr)
            if limit is not None and f.frames > limit:
                raise limits.too_long(name, f.frames / sr)
            block = max(1, int(DECODE_BLOCK_SECONDS * sr))
            mono: list[np.ndarray] = []
            read = 0
            while limit is None or read <= limit:
                frames = f.read(block if limit is None else min(block, limit + 1 - read), "float32", True)
                if len(frames) == 0:
                    break
                mono.append(_average_channels(frames, axis=1))
                read += len(frames)
            log = f.extra_info
    except AudioError:
        raise
    except Exception as exc:  # libsndfile and its codecs raise several types; all mean "cannot decode"
        raise AudioDecodeError(name, f"cannot decode audio ({_first_line(exc)})") from exc
    if limit is not None and read > limit:
        raise limits.too_long(name)  # the header understated the length
    short = _SHORT_DATA.search(log)
    if short:
        logger.warning(
            "%s: truncated file: its header promises %s bytes of audio, the file holds %s",
            printable(name), short[1], short[2],
        )  # fmt: skip
    return (np.concatenate(mono) if mono else np.zeros(0, dtype=np.float32)), sr


def require_ffmpeg(name: str | Path | None = None, what: str = "m4a") -> str:
    """Path of the ffmpeg executable; when it is not installed, an AudioDecodeError naming ``name`` (one file),
    else a Ge2eError (a corpus that holds ``what`` files)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        problem = f"{what} audio needs ffmpeg, which is not installed (e.g. apt-get install ffmpeg)"
        raise Ge2eError(problem) if name is None else AudioDecodeError(name, problem)
    return exe


def _read_ffmpeg(path: Path, name: str, sr: int, limits: Limits) -> tuple[np.ndarray, int]:
    """Decode any container ffmpeg reads (m4a/AAC, ...) -> ((L,) float32 mono at ``sr``, ``sr``); ffmpeg stops
    one second past ``limits.max_seconds``, so the output stays bounded."""
    if not limits.allow_ffmpeg:
        raise AudioDecodeError(name, f"cannot decode audio: {NO_FFMPEG}")
    cmd = [require_ffmpeg(name, path.suffix or "this"), "-nostdin", "-v", "error", "-i", str(path), "-ac", "1"]
    if limits.max_seconds is not None:
        cmd += ["-t", f"{limits.max_seconds + 1:g}"]
    proc = subprocess.run([*cmd, "-ar", str(sr), "-f", "f32le", "-"], capture_output=True, check=False)
    if proc.returncode != 0:
        reason = (proc.stderr.decode(errors="replace").strip().splitlines() or ["ffmpeg failed"])[-1]
        raise AudioDecodeError(name, f"cannot decode audio ({reason})")
    wav = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    limit = limits.max_frames(sr)
    if limit is not None and len(wav) > limit:
        raise limits.too_long(name)
    return wav, sr


def _decode_bytes(data: bytes, name: str, sr: int, limits: Limits) -> tuple[np.ndarray, int]:
    """Bytes of an audio file: soundfile first; what it cannot read goes to ffmpeg (when the limits allow it)
    through a temporary file (mp4 containers keep their index at the end, so ffmpeg cannot read them from a pipe)."""
    if not data:
        raise EmptyAudio(name, "empty file (0 bytes)")
    try:
        return _read_soundfile(io.BytesIO(data), name, limits)
    except AudioDecodeError as exc:
        if not limits.allow_ffmpeg:
            raise AudioDecodeError(name, f"{exc.problem}; {NO_FFMPEG}") from None
        if shutil.which("ffmpeg") is None:
            raise
    with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
        tmp.write(data)
        tmp.flush()
        return _read_ffmpeg(Path(tmp.name), name, sr, limits)


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


def _read_file(path: Path, name: str, sr: int, limits: Limits) -> tuple[np.ndarray, int]:
    """Decode a file -> ((L,) float32 mono, sample rate in Hz): soundfile, or ffmpeg for the containers it lacks."""
    _check_regular_file(path)
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        return _read_ffmpeg(path, name, sr, limits)
    return _read_soundfile(path, name, limits)


def load_audio(
    source: Source,
    sr: int | None = None,
    target_sr: int = 16_000,
    limits: Limits = DEFAULT_LIMITS,
    name: str | None = None,
) -> np.ndarray:
    """Decode one input: a file, the bytes of a file, an array, or an ``(array, sample_rate)`` tuple.

    Files and bytes: wav, flac, ogg/vorbis, opus and mp3 through libsndfile; m4a/AAC and other containers
    (:data:`FFMPEG_EXTENSIONS`, or bytes libsndfile cannot read) through ffmpeg where ``limits.allow_ffmpeg``,
    with a one-line error saying so when ffmpeg is not installed.

    Args:
        source: a path, file bytes, or samples as a (L,), (L, C) or (C, L) array (layout rule: see
            :func:`_to_mono`); integer PCM is scaled to [-1, 1), floats are taken as already in [-1, 1].
        sr: sample rate of a bare array in Hz (required there); ignored for files (the header says it).
        target_sr: output sample rate in Hz.
        limits: duration, sample rate and channel limits, and whether ffmpeg may run (:class:`Limits`).
        name: how errors name the input (default: :func:`input_name`).

    Returns:
        (L',) float32 mono samples at ``target_sr``, channels averaged, resampled with soxr "HQ".

    Raises:
        AudioFileMissing, AudioDecodeError, EmptyAudio, NonFiniteAudio, AudioTooLong, or AudioError (sample rate,
        channels or array shape out of bounds); the one-line message names the file, or ``<array>``.
    """
    if target_sr < MIN_SAMPLE_RATE:
        raise ValueError(f"target_sr must be >= {MIN_SAMPLE_RATE} Hz, got {target_sr}")
    if is_array_item(source):
        source, sr = source[0], int(source[1])  # type: ignore[index]
    name = input_name(source, name)
    if isinstance(source, np.ndarray):
        if sr is None:
            raise AudioError(name, "sample rate (sr) is required for array input")
        if source.size == 0:
            raise EmptyAudio(name, "no samples")
        wav = _to_mono(_to_float_samples(source, name), name, limits.max_channels)
        _check_format(name, int(sr), 1, limits)
    elif isinstance(source, str | Path | bytes):
        if isinstance(source, bytes):
            wav, sr = _decode_bytes(source, name, target_sr, limits)
        else:
            wav, sr = _read_file(Path(source), name, target_sr, limits)
        if wav.size == 0:
            raise EmptyAudio(name, "no samples")
    else:
        raise TypeError(f"audio must be a path, bytes, an array or an (array, sr) tuple, got {type(source).__name__}")
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
