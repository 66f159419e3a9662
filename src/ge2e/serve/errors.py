"""HTTP errors of the service: every failure becomes one JSON body ``{"error": {"status", "code", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from ge2e.errors import (
    AudioDecodeError,
    AudioError,
    AudioTooLong,
    AudioTooShort,
    EmptyAudio,
    NonFiniteAudio,
    NoSpeechError,
)
from ge2e.serve.keys import KeyNotFound
from ge2e.serve.store import SpeakerExists, SpeakerNotFound

logger = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


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


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    413: "upload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def validation_message(errors: Sequence[Any], drop: tuple[str, ...] = ()) -> str:
    """One line naming the first invalid field (``query.top_k: ...``) and how many more there are."""
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in drop) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid value')}{more}"


def _reply(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message), status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _reply(exc.status, exc.code, exc.message, exc.headers)


async def _store_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, SpeakerExists):
        return _reply(409, "speaker_exists", str(exc))
    if isinstance(exc, KeyNotFound):
        return _reply(404, "key_not_found", str(exc))
    return _reply(404, "speaker_not_found", str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    routing = {404: "no route", 405: "method not allowed"}
    headers = exc.headers
    if exc.status_code in routing:  # Starlette's own "Not Found" says nothing about what was asked
        message = f"{routing[exc.status_code]}: {request.method} {request.url.path} (see /docs)"
    else:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
    allowed = _allowed_methods(request) if exc.status_code == 405 else None
    if allowed:  # else a route outside the schema (the docs): Starlette's own Allow stands
        headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return _reply(exc.status_code, _CODES.get(exc.status_code, "http_error"), message, headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method the API serves at the request's path, from its OpenAPI schema. Starlette's 405 names only the
    methods of the first route whose path matched, and each method of a path here is a route of its own."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {m.upper() for m in operations if m.upper() in HTTP_METHODS}
    return sorted(methods)


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _reply(422, "invalid_request", validation_message(exc.errors()))


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    # Starlette re-raises after this answer and the server then drops the connection: say so
    return _reply(
        500,
        "internal_error",
        f"internal error ({type(exc).__name__}); the server logged the details",
        {"Connection": "close"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every failure answered as ``{"error": {...}}``, never a traceback."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(SpeakerNotFound, _store_error)
    app.add_exception_handler(SpeakerExists, _store_error)
    app.add_exception_handler(KeyNotFound, _store_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _internal)
