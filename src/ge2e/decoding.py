"""Decoding: a file, the bytes of a file, an array or an ``(array, sample_rate)`` tuple -> mono float32 samples at
the front end's rate. The first step of the audio front end (:mod:`ge2e.audio`), which re-exports
:func:`load_audio`.

wav, flac, ogg/vorbis, opus and mp3 go through libsndfile (soundfile); m4a/AAC and other containers through
ffmpeg. Every failure raises a subclass of :class:`ge2e.errors.AudioError` whose one-line message names the file
(arrays are named ``<array>``).
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
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from ge2e.errors import AudioDecodeError, AudioError, AudioFileMissing, EmptyAudio, NonFiniteAudio, printable
from ge2e.files import os_problem

logger = logging.getLogger(__name__)

ARRAY_NAME = "<array>"
MIN_SAMPLE_RATE = 4_000  # below this no speech band survives; such a rate is a caller bug, not a recording
WIDEBAND_RATE = 16_000  # below this rate the speech band above 4-8 kHz is missing (telephone, narrowband)
MAX_CHANNELS = 16  # a 2-D array with more "channels" than this is taken as a shape mistake
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
        raise TypeError(f"audio must be a path, bytes, an array or an (array, sr) tuple, got {type(source).__name__}")
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
