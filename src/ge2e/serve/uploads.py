"""Audio uploads: split a request body into its audio files, then decode the bytes.

A body is either ``multipart/form-data`` with one or more file parts named ``audio``, or the raw audio bytes (any
other content type). Neither the file name nor the content type decides whether bytes are audio: only decoding does.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ge2e.errors import AudioDecodeError, AudioError, AudioTooShort, EmptyAudio
from ge2e.serve.errors import ApiError, AudioTooLong

AUDIO_FIELD = "audio"
MAX_SAMPLE_RATE = 384_000  # the highest rate audio interfaces record at; a larger header value is a broken file
MAX_CHANNELS = 32
DECODE_BLOCK_SECONDS = 1.0  # decoded and downmixed a block at a time, so a many-channel file never sits in memory


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the raw bytes and the client's file name (informational only)."""

    filename: str | None
    data: bytes

    def label(self, index: int, count: int) -> str:
        """How error messages name this part: ``audio``, or ``audio[2] (b.wav)`` among several."""
        name = AUDIO_FIELD if count == 1 else f"{AUDIO_FIELD}[{index}]"
        return f"{name} ({self.filename})" if self.filename else name


@dataclass
class _Parts:
    """Callbacks of python-multipart's streaming parser: keeps the ``audio`` parts, rejects any other field."""

    max_files: int
    uploads: list[Upload] = field(default_factory=list)
    _header_name: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _filename: str | None = None
    _name: str | None = None
    _data: bytearray = field(default_factory=bytearray)

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._data.extend(data[start:end]),
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._name, self._filename = None, None
        self._data = bytearray()

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._header_value))
            self._name = options.get(b"name", b"").decode("utf-8", "replace")
            filename = options.get(b"filename")
            self._filename = filename.decode("utf-8", "replace") if filename else None
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        if self._name != AUDIO_FIELD:
            got = f"a part named {self._name!r}" if self._name else "a part without a name"
            raise ApiError(400, "bad_form", f"got {got}; send the audio as multipart file part(s) named 'audio'")
        if len(self.uploads) >= self.max_files:
            raise ApiError(400, "too_many_files", f"at most {self.max_files} audio part(s) per request")

    def _end(self) -> None:
        self.uploads.append(Upload(self._filename, bytes(self._data)))
        self._data = bytearray()


def parse_uploads(content_type: str | None, body: bytes, max_files: int = 1) -> list[Upload]:
    """The audio file(s) of a request body.

    Raises:
        ApiError: 400 for a malformed multipart body, foreign form fields, more than ``max_files`` parts, or none.
    """
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return [Upload(None, body)]
    if not options.get(b"boundary"):
        raise ApiError(400, "bad_form", "multipart/form-data without a boundary")
    parts = _Parts(max_files)
    parser = MultipartParser(options[b"boundary"], parts.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, "bad_form", f"malformed multipart body ({exc})") from None
    if not parts.uploads:
        raise ApiError(400, "bad_form", "no audio: send the audio as a multipart file part named 'audio'")
    return parts.uploads


@dataclass(frozen=True)
class Decoded:
    """Decoded upload: ``(L,)`` float32 mono samples at the file's own ``sample_rate`` (Hz)."""

    samples: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def decode(data: bytes, name: str, max_seconds: float, min_seconds: float) -> Decoded:
    """Decode any format soundfile reads from memory, downmix to mono, enforce the duration limits.

    Raises:
        EmptyAudio (0 bytes or 0 samples), AudioDecodeError (not decodable), AudioError (absurd header),
        AudioTooLong (over ``max_seconds``; detected without decoding the rest), AudioTooShort (under
        ``min_seconds``); each message names ``name``.
    """
    if not data:
        raise EmptyAudio(name, "empty upload (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr, channels = int(f.samplerate), int(f.channels)
            if not 0 < sr <= MAX_SAMPLE_RATE or not 0 < channels <= MAX_CHANNELS:
                raise AudioError(name, f"unsupported format: {sr} Hz, {channels} channel(s)")
            limit = int(max_seconds * sr)
            block = max(1, int(DECODE_BLOCK_SECONDS * sr))
            mono: list[np.ndarray] = []
            read = 0
            while read <= limit:
                frames = f.read(frames=min(block, limit + 1 - read), dtype="float32", always_2d=True)
                if len(frames) == 0:
                    break
                mono.append(frames.mean(axis=1, dtype=np.float32))
                read += len(frames)
    except AudioError:
        raise
    except Exception as exc:  # libsndfile raises several types for bad bytes; all mean "cannot decode"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = re.sub(r"^Error opening <[^>]*>: ", "", first)  # the BytesIO repr says nothing to the client
        raise AudioDecodeError(name, f"cannot decode audio ({first})") from None
    if read > limit:
        raise AudioTooLong(name, f"audio longer than the {max_seconds:g} s limit of this service")
    if read == 0:
        raise EmptyAudio(name, "no samples")
    samples = np.concatenate(mono)
    if read < min_seconds * sr:
        raise AudioTooShort(name, f"{1000 * read / sr:.0f} ms of audio, need at least {1000 * min_seconds:.0f} ms")
    return Decoded(samples, sr)
