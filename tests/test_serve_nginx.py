"""The reverse-proxy example, deploy/nginx/ge2e.conf, run with Debian's nginx in front of a real ``ge2e serve``.

The file is used as it is, except for what a test must change: the listening port, the service's port, a
self-signed certificate for 127.0.0.1, and 2 s instead of 10 s for the header and body timeouts. Checked: the API
works through TLS; stalled uploads are held by nginx and never take one of the service's request slots (it runs
with only 4); nginx's per-address cap answers the service's JSON 503 with ``Retry-After``; an unfinished request
head is closed at nginx's header timeout. Skipped without nginx or openssl, failed under CI=true (``make sysdeps``
installs them).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import REPO, require_tool
from serve_server import CLIPS, KEY, ServerProcess, free_port, read_response, tiny_model

EXAMPLE = REPO / "deploy" / "nginx" / "ge2e.conf"
TIMEOUT_S = 2
PER_CLIENT = 32  # the example's limit_conn
SERVICE_REQUESTS = 4


def nginx_path() -> str:
    # Debian installs nginx in /usr/sbin, which is not on every user's PATH
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin") or require_tool("nginx")


def render(example: str, port: int, upstream: int, cert: Path, key: Path) -> str:
    substitutions = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream};",
        "/etc/ssl/ge2e/fullchain.pem": str(cert),
        "/etc/ssl/ge2e/privkey.pem": str(key),
        "client_header_timeout 10s;": f"client_header_timeout {TIMEOUT_S}s;",
        "client_body_timeout 10s;": f"client_body_timeout {TIMEOUT_S}s;",
    }
    for old, new in substitutions.items():
        assert example.count(old) == 1, f"{EXAMPLE} no longer has {old!r}: update this test"
        example = example.replace(old, new)
    return example


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    nginx, openssl = nginx_path(), require_tool("openssl")
    tmp = tmp_path_factory.mktemp("nginx")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)  # fmt: skip
    service = ServerProcess(
        ["--db", str(tmp / "db.sqlite"), "--model", str(tiny_model(tmp / "tiny.pt")), "--threshold", "0.5",
         "--max-connections-per-client", "0", "--max-requests", str(SERVICE_REQUESTS), "--threads", "1"],
        KEY, tmp / "service.log",
    )  # fmt: skip
    port = free_port()
    (tmp / "ge2e.conf").write_text(render(EXAMPLE.read_text(), port, service.port, cert, key))
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""  # workers read tmp files
    temp_paths = " ".join(f"{kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))  # fmt: skip
    (tmp / "nginx.conf").write_text(
        f"{user} daemon off; worker_processes 1; pid {tmp / 'nginx.pid'}; error_log {tmp / 'error.log'};\n"
        f"events {{ worker_connections 512; }}\n"
        f"http {{ access_log off; {temp_paths} include {tmp / 'ge2e.conf'}; }}\n"
    )
    proc = subprocess.Popen([nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    tls = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", verify=tls, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {(tmp / 'error.log').read_text()[-2000:]}") from None
                time.sleep(0.2)
        with httpx.Client(base_url=url, verify=tls, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            assert c.post("/v1/speakers", json={"id": "s", "name": "S"}).status_code == 201
            clip = (data_root / CLIPS["a1"]).read_bytes()
            assert c.post("/v1/speakers/s/enrollments", content=clip).status_code == 201
        yield url, tls
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        service.stop()


def tls_connect(port: int, tls: ssl.SSLContext, address: str) -> ssl.SSLSocket:
    sock = socket.socket()
    sock.settimeout(30)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return tls.wrap_socket(sock, server_hostname="127.0.0.1")


@contextlib.contextmanager
def stalled_uploads(port: int, tls: ssl.SSLContext, address: str, n: int) -> Iterator[list[ssl.SSLSocket]]:
    """``n`` verify requests from ``address`` whose body stops after 4 of its 100000 bytes."""
    socks = []
    head = (f"POST /v1/speakers/s/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Length: 100000\r\n\r\nRIFF").encode()  # fmt: skip
    try:
        for _ in range(n):
            socks.append(tls_connect(port, tls, address))
            socks[-1].sendall(head)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_stalled_uploads_never_reach_the_service(proxy, data_root: Path) -> None:
    url, tls = proxy
    port = int(url.rsplit(":", 1)[1])
    clip = (data_root / CLIPS["a2"]).read_bytes()
    with stalled_uploads(port, tls, "127.0.5.1", PER_CLIENT) as stalled:
        time.sleep(0.5)
        with httpx.Client(base_url=url, verify=tls, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            r = c.post("/v1/speakers/s/verify", content=clip)  # the service has 4 request slots, 32 uploads stall
            assert r.status_code == 200, r.text
            assert r.json()["decision"] in ("accept", "reject")
        # one more request in flight from the stalling address is nginx's JSON 503
        with contextlib.closing(tls_connect(port, tls, "127.0.5.1")) as sock:
            sock.sendall(f"GET /v1/speakers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode())
            status, head, body = read_response(sock, timeout=10)
        assert status == 503 and head["content-type"] == "application/json" and head["retry-after"] == "1"
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        for sock in stalled:  # cut off at nginx's body timeout
            sock.settimeout(TIMEOUT_S + 10)
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while sock.recv(65536):
                    pass


def test_unfinished_head_is_closed_at_the_header_timeout(proxy) -> None:
    url, tls = proxy
    with contextlib.closing(tls_connect(int(url.rsplit(":", 1)[1]), tls, "127.0.6.1")) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        sock.settimeout(TIMEOUT_S + 10)
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while sock.recv(65536):
                pass
        assert time.monotonic() - start < TIMEOUT_S + 5
