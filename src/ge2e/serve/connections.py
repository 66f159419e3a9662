"""The connection policy uvicorn lacks: a deadline for each request head, and caps on open connections per client
address and in total.

uvicorn bounds only the time between keep-alive requests (``timeout_keep_alive``) and the size of a request head
(h11, 16 KiB). A connection that sends nothing, or half a head, is otherwise kept forever, and its one overall cap
(``limit_concurrency``) counts such connections and answers everyone a plain-text 503 once they fill it. This
subclass of uvicorn's h11 protocol closes a connection whose request head is not complete ``header_timeout_s``
after it opened or after its previous response (408 when part of a head came), and refuses a connection over a cap
with the service's JSON 503 and ``Retry-After`` before reading from it. A connection in the middle of a request
is left to the body deadline of :mod:`ge2e.serve.body`.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus

from uvicorn.protocols.http.h11_impl import H11Protocol

from ge2e.serve.errors import error_body

# how long a refused connection is drained before it is closed: closing a socket with unread request bytes makes
# the kernel send a reset, which can destroy the 503 before the client reads it
LINGER_S = 2.0


def canned_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 error response with the service's JSON body, closing the connection; written straight
    to a socket where no request has been parsed (h11 only answers a request it has read)."""
    body = json.dumps(error_body(status, code, message), separators=(",", ":")).encode()
    fields = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
    fields["connection"] = "close"
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n{head}\r\n".encode("latin-1") + body


@dataclass
class ConnectionPolicy:
    """Limits on connections, shared by all of one server's connections (they run on one event loop thread).

    Args:
        header_timeout_s: seconds a request head may take to arrive, from the connection's start or its previous
            response.
        max_connections: open connections in total.
        max_per_client: open connections per client address; 0 turns this cap off (behind a reverse proxy every
            connection comes from the proxy's address).
        retry_after_s: the ``Retry-After`` of a refused connection.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1024
    max_per_client: int = 32
    retry_after_s: int = 1
    open: Counter[str] = field(default_factory=Counter)
    total: int = 0  # open.total(), kept apart so that /metrics, on another thread, never iterates ``open``
    refused: int = 0

    def admit(self, host: str) -> bytes | None:
        """Count a new connection from ``host`` in, or return the canned 503 that refuses it."""
        if self.total >= self.max_connections:
            reason = f"the server has its maximum of {self.max_connections} connections open"
        elif self.max_per_client and self.open[host] >= self.max_per_client:
            reason = f"your address has its maximum of {self.max_per_client} connections open"
        else:
            self.open[host] += 1
            self.total += 1
            return None
        self.refused += 1
        retry = {"Retry-After": str(self.retry_after_s)}
        message = f"{reason}; close one or retry after {self.retry_after_s} s"
        return canned_response(503, "too_many_connections", message, retry)

    def release(self, host: str) -> None:
        self.total -= 1
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under a :class:`ConnectionPolicy` (:func:`guarded_protocol` binds one)."""

    policy: ConnectionPolicy

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._host = self.client[0] if self.client else ""
        self._refusal = self.policy.admit(self._host)
        self._head_timer: asyncio.TimerHandle | None = None
        if self._refusal is not None:
            transport.write(self._refusal)
            self._head_timer = self.loop.call_later(LINGER_S, transport.close)
        else:
            self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._refusal is None:  # a refused connection's bytes are drained unread
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        if self._refusal is None:
            self.policy.release(self._host)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_timer()  # the next request's head gets the same deadline as the first

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.policy.header_timeout_s, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is being served: its body has a deadline of its own
        if self.conn.trailing_data[0]:
            seconds = f"{self.policy.header_timeout_s:g}"
            self.transport.write(
                canned_response(408, "header_timeout", f"request head not received within {seconds} s")
            )
        self.transport.close()


def guarded_protocol(policy: ConnectionPolicy) -> type[H11Protocol]:
    """The protocol class to pass as uvicorn's ``http``: :class:`GuardedH11Protocol` bound to ``policy``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"policy": policy})
