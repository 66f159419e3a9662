"""HTTP errors of the service: every failure becomes one JSON body ``{"error": {"status", "code", "message"}}``."""

from __future__ import annotations

from ge2e.errors import (
    AudioDecodeError,
    AudioError,
    AudioTooShort,
    EmptyAudio,
    NonFiniteAudio,
    NoSpeechError,
)


class ApiError(Exception):
    """An error answered to the client: HTTP ``status``, a stable machine-readable ``code``, a one-line message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, int | str]]:
        return error_body(self.status, self.code, self.message)


def error_body(status: int, code: str, message: str) -> dict[str, dict[str, int | str]]:
    return {"error": {"status": status, "code": code, "message": message}}


class AudioTooLong(AudioError):
    """More audio than the service accepts per upload."""


# (status, code) per audio failure; the most specific class is listed first because the lookup walks the MRO
_AUDIO_STATUS: dict[type[AudioError], tuple[int, str]] = {
    AudioDecodeError: (415, "undecodable_audio"),
    AudioTooLong: (413, "audio_too_long"),
    EmptyAudio: (422, "empty_audio"),
    NonFiniteAudio: (422, "non_finite_audio"),
    NoSpeechError: (422, "no_speech"),
    AudioTooShort: (422, "audio_too_short"),
    AudioError: (422, "unusable_audio"),
}


def audio_error(exc: AudioError, part: str) -> ApiError:
    """Map an audio failure of upload ``part`` (e.g. ``"audio"`` or ``"audio[2] (b.wav)"``) to its HTTP error.

    Undecodable bytes are 415, audio over the duration limit 413, audio that decodes but cannot be used
    (empty, silent, NaN, too short, no speech) 422.
    """
    for cls in type(exc).__mro__:
        if cls in _AUDIO_STATUS:
            status, code = _AUDIO_STATUS[cls]
            return ApiError(status, code, f"{part}: {exc.problem}")
    raise TypeError(f"not an audio error: {exc!r}")
