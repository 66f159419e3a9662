"""The service's connection policy and its files, through a real ``ge2e serve`` on 127.0.0.1: idle connections and
unfinished request heads neither block real requests nor stay open past the head deadline, the caps on
connections and on requests in flight answer the JSON 503 with ``Retry-After``, the database is owner-only, and
the schema's small promises (``Allow``, the open ``/health``, strict integers) hold. In process: ``/health``'s 503
is JSON with ``Retry-After`` too.

Clients come from several loopback addresses (Linux routes all of 127.0.0.0/8 to the loopback interface), as an
attack from many hosts would, so that the per-address cap is tested apart from the total one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ge2e.model import SpeakerEncoder
from ge2e.serve import ServeConfig, SpeakerStore, create_app
from serve_server import CLIPS, KEY, ServerProcess, assert_error, read_response, send_head, tiny_model

HEADER_TIMEOUT_S = 2
READ_TIMEOUT_S = 4
PER_CLIENT = 20
MAX_CONNECTIONS = 200
MAX_REQUESTS = 6
IDLE, HALF_OPEN = 100, 50
# the bound; the failure it guards against is an instant 503 or a request that waits for a slot
REAL_REQUEST_BOUND_S = 2.0
HALF_HEAD = b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("connections")
    model = tiny_model(tmp / "tiny.pt")
    args = ["--db", str(tmp / "private" / "db.sqlite"), "--model", str(model), "--threshold", "0.5"]
    limits = ["--header-timeout", str(HEADER_TIMEOUT_S), "--read-timeout", str(READ_TIMEOUT_S),
              "--max-connections", str(MAX_CONNECTIONS), "--max-connections-per-client", str(PER_CLIENT),
              "--max-requests", str(MAX_REQUESTS), "--max-audio-seconds", "5", "--threads", "1"]  # fmt: skip
    umask = os.umask(0o002)  # the widest common umask: the files must come out owner-only anyway
    try:
        proc = ServerProcess([*args, *limits], KEY, tmp / "server.log")
    finally:
        os.umask(umask)
    with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        assert c.post("/v1/speakers", json={"id": "s", "name": "S"}).status_code == 201
        assert c.post("/v1/speakers/s/enrollments", content=(data_root / CLIPS["a1"]).read_bytes()).status_code == 201
    yield proc
    proc.stop()


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def connect_from(address: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(30)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


@contextlib.contextmanager
def held(addresses: list[str], per_address: int, port: int, head: bytes = b"") -> Iterator[list[socket.socket]]:
    """``per_address`` connections from each address, each sent ``head`` (nothing: idle), closed on exit."""
    socks = []
    try:
        for address in addresses:
            for _ in range(per_address):
                socks.append(connect_from(address, port))
                if head:
                    socks[-1].sendall(head)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def addresses(first: int, n: int) -> list[str]:
    return [f"127.0.{first + i}.1" for i in range(n)]


def gauge(api: httpx.Client, name: str) -> float:
    r = api.get("/metrics")
    assert r.status_code == 200, r.text
    return float(re.search(rf"^{name} (\S+)$", r.text, re.M).group(1))


def assert_json_503(status: int, head: dict[str, str], body: bytes, code: str) -> None:
    assert status == 503 and head["content-type"] == "application/json", (status, head, body)
    assert int(head["retry-after"]) >= 1 and head["connection"] == "close"
    assert json.loads(body)["error"]["code"] == code


def test_real_verify_beside_idle_connections_and_unfinished_heads(server: ServerProcess, api: httpx.Client,
                                                                  data_root: Path) -> None:  # fmt: skip
    clip = (data_root / CLIPS["a2"]).read_bytes()
    with (
        held(addresses(10, 5), IDLE // 5, server.port) as idle,
        held(addresses(20, 5), HALF_OPEN // 5, server.port, HALF_HEAD) as half_open,
    ):
        time.sleep(0.3)  # the server has accepted them all
        assert gauge(api, "ge2e_connections_open") >= IDLE + HALF_OPEN
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as new:
            start = time.monotonic()
            r = new.post("/v1/speakers/s/verify", content=clip)
            elapsed = time.monotonic() - start
        assert r.status_code == 200, r.text
        assert elapsed < REAL_REQUEST_BOUND_S, f"verify took {elapsed:.2f} s beside {IDLE} idle + {HALF_OPEN} heads"
        # then, at the head deadline, each is closed: the unfinished heads with a 408, the idle ones silently
        for sock in half_open:
            status, head, body = read_response(sock, timeout=HEADER_TIMEOUT_S + 10)
            assert status == 408 and json.loads(body)["error"]["code"] == "header_timeout"
            assert head["connection"] == "close"
        for sock in idle:
            sock.settimeout(HEADER_TIMEOUT_S + 10)
            assert sock.recv(1) == b""
    assert gauge(api, "ge2e_connections_open") < 5


def test_connection_caps_answer_json_503(server: ServerProcess, api: httpx.Client) -> None:
    with held(addresses(30, 1), PER_CLIENT, server.port):
        with contextlib.closing(connect_from("127.0.30.1", server.port)) as one_more:
            assert_json_503(*read_response(one_more, timeout=5), "too_many_connections")
        assert api.get("/health").status_code == 200  # another address is served meanwhile
        rest = MAX_CONNECTIONS - PER_CLIENT  # with the api client's keep-alive connection, one may be refused
        with held(addresses(40, rest // 10), 10, server.port), held(addresses(60, 1), rest % 10, server.port):
            with contextlib.closing(connect_from("127.0.70.1", server.port)) as over:
                status, head, body = read_response(over, timeout=5)
            assert_json_503(status, head, body, "too_many_connections")
            assert "server has its maximum" in json.loads(body)["error"]["message"]
    assert gauge(api, "ge2e_rejected_connections_total") >= 2


def test_request_cap_answers_json_503(server: ServerProcess, api: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Length": "100000"}
    stalled = [send_head(server.port, "POST", "/v1/embed", headers, b"RIFF") for _ in range(MAX_REQUESTS)]
    try:
        time.sleep(0.3)
        r = api.get("/v1/speakers")
        assert_error(r, 503, "overloaded")
        assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close"
        for sock in stalled:  # at the body deadline they are answered, and their request slots are free again
            assert read_response(sock, timeout=READ_TIMEOUT_S + 30)[0] == 408
        assert api.get("/v1/speakers").status_code == 200
    finally:
        for sock in stalled:
            sock.close()


def test_database_files_are_owner_only(server: ServerProcess, api: httpx.Client) -> None:
    assert api.post("/v1/speakers", json={"name": "written now"}).status_code == 201
    db = Path(server.proc.args[server.proc.args.index("--db") + 1])
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for file in (db, db.with_name("db.sqlite-wal"), db.with_name("db.sqlite-shm")):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_schema_promises(server: ServerProcess, api: httpx.Client) -> None:
    r = api.put("/v1/speakers")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, POST"
    assert api.patch("/v1/speakers/s").headers["allow"] == "DELETE, GET"
    health = api.get("/openapi.json").json()["paths"]["/health"]["get"]
    assert {} in health["security"]  # no key needed
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert_error(api.post("/v1/keys", json={"role": "verify", "rate_per_minute": True}), 422, "invalid_request")


def test_health_503_is_json_with_retry_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = SpeakerEncoder.load(tiny_model(tmp_path / "tiny.pt"))
    store = SpeakerStore(tmp_path / "db.sqlite", "m", model.embedding_size)
    app = create_app(model, store, [KEY], ServeConfig(threshold=0.5), "m")

    def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "counts", broken)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get("/health")

    r = asyncio.run(call())
    assert_error(r, 503, "unavailable")
    assert r.headers["retry-after"] == "1"
