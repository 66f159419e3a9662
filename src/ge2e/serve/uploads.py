"""Audio uploads: split a request body into its audio files (decoded by :func:`ge2e.decoding.load_audio`).

A body is either ``multipart/form-data`` with one or more file parts named ``audio``, or the raw audio bytes (any
other content type). Neither the file name nor the content type decides whether bytes are audio: only decoding does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ge2e.serve.errors import ApiError

AUDIO_FIELD = "audio"


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
