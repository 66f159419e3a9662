"""A real ``ge2e serve`` process on a free loopback port, a tiny model for it, and raw-socket clients (to send
headers without a body, or a body that stalls), for the service tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEY = "test-key-0123456789abcdef"
CLIPS = {  # LibriSpeech test-other, 2.8-4.3 s each, under the 5 s limit the test servers run with
    "a1": "LibriSpeech/test-other/1688/142285/1688-142285-0002.flac",
    "a2": "LibriSpeech/test-other/1688/142285/1688-142285-0005.flac",
    "b1": "LibriSpeech/test-other/1998/15444/1998-15444-0007.flac",
    "b2": "LibriSpeech/test-other/1998/15444/1998-15444-0008.flac",
}
START_TIMEOUT_S = 90.0  # importing torch and loading the VAD on a busy 2-core CI machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m ge2e serve`` with the given arguments; stdout and stderr go to ``log``."""

    def __init__(self, args: list[str], keys: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "GE2E_API_KEYS": keys}
        cmd = [sys.executable, "-m", "ge2e", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server not healthy after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash or an OOM kill."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def tiny_model(path: Path) -> Path:
    """A random 1 x 32 LSTM encoder saved at ``path``: fast, and its scores are checked against offline ones."""
    import torch

    from ge2e.config import ModelConfig
    from ge2e.model import SpeakerEncoder

    torch.manual_seed(0)
    SpeakerEncoder(ModelConfig(hidden_size=32, proj_size=0, num_layers=1)).save(path)
    return path


def send_head(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> socket.socket:
    """Opens a connection and sends a request's head and ``body`` (possibly less than its Content-Length)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", **headers}.items())
    sock.sendall(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
    return sock


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of the next response on ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    """``r`` is the service's JSON error with this status and code, and a message a person can act on."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["status"] == status and error["code"] == code
    assert len(error["message"]) > 10
