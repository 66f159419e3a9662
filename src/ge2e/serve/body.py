"""Reading a request body: only after authentication, with a size cap and a deadline.

A client that stalls or trickles its upload is answered 408 when the deadline passes, and it never holds an
inference slot meanwhile (slots are taken once the body is in). JSON bodies are parsed as standard JSON only:
NaN, Infinity and numbers that overflow a double are refused, like integers outside the signed 64-bit range.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from ge2e.serve.errors import ApiError, validation_message

M = TypeVar("M", bound=BaseModel)

MAX_JSON_BYTES = 64 * 1024
INT64 = 2**63


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, or 413 (over ``max_bytes``, by Content-Length up front or as it streams), 408 (not in
    within ``timeout_s``), 400 (bad Content-Length, client gone)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise _too_large(max_bytes)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"request body not received within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client closed the connection mid-upload") from None
    return bytes(body)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "upload_too_large", f"request body exceeds the {max_bytes} byte limit")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} overflows a double")
    return value


def _int64(text: str) -> int:
    value = int(text) if len(text) <= 20 else None  # more digits cannot fit, and int() of 5000 digits raises
    if value is None or not -INT64 <= value < INT64:
        raise ValueError(f"integer {text[:20]} is outside the signed 64-bit range")
    return value


def parse_json(data: bytes, model: type[M]) -> M:
    """``data`` as an instance of ``model``: 400 for anything but standard JSON, 422 when it does not fit."""
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_float=_finite, parse_int=_int64)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and the hooks' errors are ValueErrors
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0]
        raise ApiError(400, "invalid_json", f"request body is not valid JSON ({reason})") from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", validation_message(exc.errors(), ("body",))) from None


async def read_json(request: Request, model: type[M], timeout_s: float) -> M:
    return parse_json(await read_body(request, MAX_JSON_BYTES, timeout_s), model)
