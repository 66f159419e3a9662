"""ASGI middleware: request metrics with bounded labels, a cap on requests in flight, and closing connections
whose body was left unread."""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ge2e.serve.errors import error_body
from ge2e.serve.metrics import Metrics

# any other method string is counted as "other": a client must not be able to add metric series at will
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """Counts requests by method, route template and status, and times them by route."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = _route_template(scope)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            labels = {"method": method, "route": route, "status": str(status)}
            self.metrics.inc("ge2e_http_requests_total", "HTTP requests answered", **labels)
            self.metrics.observe(
                "ge2e_http_request_duration_seconds", "HTTP request latency", time.perf_counter() - start, route=route
            )


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/speakers/{speaker_id}``), so labels stay few; else ``unmatched``.

    The router records the route it matched in the scope, which this middleware shares.
    """
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"


class CloseUnreadBody:
    """Adds ``Connection: close`` to a response sent before the request body was read to its end.

    A request refused from its headers (401, 403, 413, 429) or cut off mid-upload (408) leaves body bytes on the
    connection; without this the server would go on reading, and discarding, whatever the client still sends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        pending = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers

        async def tracked() -> Message:
            nonlocal pending
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                pending = False
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and pending:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, tracked, closing)


@dataclass
class RequestGate:
    """The count behind :class:`RequestLimit`: requests in flight now, and how many were refused."""

    max_requests: int
    retry_after_s: int = 1
    in_flight: int = 0  # one event loop thread runs every request's ASGI code: no lock needed
    refused: int = 0


class RequestLimit:
    """At most ``gate.max_requests`` requests in flight; one more is answered the JSON 503 with ``Retry-After``.

    This is the concurrency limit uvicorn's ``limit_concurrency`` would give, but counting requests rather than
    connections (an idle connection holds no request), and answering in the service's error format. It bounds the
    request bodies held in memory to ``max_requests`` times the upload limit.
    """

    def __init__(self, app: ASGIApp, gate: RequestGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if gate.in_flight >= gate.max_requests:
            gate.refused += 1
            message = f"all {gate.max_requests} request slots are busy; retry after {gate.retry_after_s} s"
            # the body is left unread, so the connection cannot carry another request
            headers = {"Retry-After": str(gate.retry_after_s), "Connection": "close"}
            await JSONResponse(error_body(503, "overloaded", message), 503, headers)(scope, receive, send)
            return
        gate.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gate.in_flight -= 1
