"""Load test of ``ge2e serve`` on loopback: verify requests for a fixed duration, per client count.

Starts its own server on 127.0.0.1 (a temporary database and API key), enrolls one speaker, then for each
``--concurrency`` value runs that many client threads sending verify requests for ``--duration`` seconds. Nothing
leaves the machine. Clients honour ``Retry-After`` on 429 and 503 (they wait before the next try), a transport
error is counted and the client reconnects. Reported per row: successful verifies per second, the answers by class
(2xx, 429, 503, other errors, transport errors), p50/p95/p99 latency of the 2xx with their sample count, and the
server's resident memory before and after.

    python benchmarks/serve_load.py --preset small --duration 30 --concurrency 1,4,16
    python benchmarks/serve_load.py --model exp/run/best.pt --workers 2 --queue 8 --json out.json
    python benchmarks/serve_load.py --abuse --duration 60 --concurrency 16 --queue 16

``--abuse`` holds idle connections and unfinished request heads open from many loopback addresses
(127.0.<n>.1: Linux routes all of 127.0.0.0/8 to the loopback interface) for the whole run, reopening each one
the server closes, and reports one verify from a new client made while they are held, then the clients' success
rate (429, 503, other errors and transport errors count as failures) and latency.

``--preset`` builds a random encoder of that architecture (speed does not depend on the weights); ``--model``
serves a checkpoint. Audio: a LibriSpeech test-other clip from $GE2E_DATA.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CLIP = "LibriSpeech/test-other/1688/142285/1688-142285-0002.flac"  # 2.8 s of read speech
MAX_DURATION_S = 600  # a bounded load test, not a stress tool
MAX_CLIENTS = 64
MAX_ABUSE_CONNECTIONS = 2000
HALF_HEAD = b"POST /v1/identify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer x"
KINDS = ("2xx", "429", "503", "other", "transport")
COLUMNS = ("clients", "ok/s", *KINDS, "p50 ms", "p95 ms", "p99 ms", "n", "RSS MiB before/after")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="checkpoint to serve")
    src.add_argument("--preset", default="small", choices=("small", "paper"), help="random encoder (default small)")
    p.add_argument("--audio", type=Path, help=f"probe audio (default $GE2E_DATA/{CLIP})")
    p.add_argument("--duration", type=float, default=30, help="seconds of load per row (default 30)")
    p.add_argument("--warmup", type=float, default=3, help="untimed seconds of one client first (default 3)")
    p.add_argument("--concurrency", default="4", help="client threads, or a comma-separated list (default 4)")
    p.add_argument("--workers", type=int, default=1, help="server inference threads (default 1)")
    p.add_argument("--queue", type=int, default=8, help="server queue (default 8)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per inference (default 1)")
    p.add_argument("--rate-limit", type=int, default=0, help="server's per-key requests/minute (default 0: off)")
    p.add_argument("--json", type=Path, help="also write the results here")
    abuse = p.add_argument_group("abuse scenario")
    abuse.add_argument("--abuse", action="store_true", help="hold idle connections and unfinished heads meanwhile")
    abuse.add_argument("--idle", type=int, default=500, help="idle connections held (default 500)")
    abuse.add_argument("--half-open", type=int, default=200, help="unfinished request heads held (default 200)")
    abuse.add_argument("--addresses", type=int, default=50, help="loopback addresses they come from (default 50)")
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if not 0 < args.duration <= MAX_DURATION_S or not all(1 <= c <= MAX_CLIENTS for c in args.concurrency):
        p.error(f"--duration must be in (0, {MAX_DURATION_S}] and each --concurrency in 1..{MAX_CLIENTS}")
    if not (0 <= args.idle + args.half_open <= MAX_ABUSE_CONNECTIONS and 1 <= args.addresses <= 250):
        p.error(f"--idle + --half-open must be in 0..{MAX_ABUSE_CONNECTIONS} and --addresses in 1..250")
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_model(preset: str, path: Path) -> None:
    import torch

    from ge2e.model import SpeakerEncoder

    torch.manual_seed(0)
    SpeakerEncoder(preset).save(path)


def start_server(args: argparse.Namespace, tmp: Path, key: str) -> tuple[subprocess.Popen, str]:
    model = args.model or str(tmp / f"{args.preset}.pt")
    if not args.model:
        random_model(args.preset, Path(model))
    port = free_port()
    cmd = [sys.executable, "-m", "ge2e", "serve", "--host", "127.0.0.1", "--port", str(port), "--db",
           str(tmp / "db.sqlite"), "--model", model, "--threshold", "0.5", "--workers", str(args.workers),
           "--queue", str(args.queue), "--threads", str(args.threads), "--rate-limit", str(args.rate_limit),
           "--log-level", "warning"]  # fmt: skip
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - the server writes to it until it is stopped
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GE2E_API_KEYS": key})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"server did not start:\n{(tmp / 'server.log').read_text()[-2000:]}")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@dataclass
class Tally:
    """What the clients saw in one row: 2xx latencies (s) and answers by class."""

    ok_latencies: list[float] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    waited_s: float = 0.0  # time clients spent honouring Retry-After
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, latency: float | None = None) -> None:
        with self.lock:
            self.counts[kind] += 1
            if latency is not None:
                self.ok_latencies.append(latency)


def _classify(status: int) -> str:
    if 200 <= status < 300:
        return "2xx"
    return str(status) if status in (429, 503) else "other"


def run_load(url: str, key: str, audio: bytes, duration: float, concurrency: int) -> tuple[Tally, float]:
    """``concurrency`` client threads sending verify requests until ``duration`` s have passed."""
    tally = Tally()
    end = time.monotonic() + duration

    def client() -> None:
        while time.monotonic() < end:  # a transport error costs the connection, never the client
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
                while (now := time.monotonic()) < end:
                    try:
                        r = c.post("/v1/speakers/bench/verify", content=audio)
                    except httpx.TransportError:
                        tally.add("transport")
                        break
                    kind = _classify(r.status_code)
                    tally.add(kind, time.monotonic() - now if kind == "2xx" else None)
                    if kind in ("429", "503"):
                        wait = min(float(r.headers.get("retry-after", 1)), max(0.0, end - time.monotonic()))
                        with tally.lock:
                            tally.waited_s += wait
                        time.sleep(wait)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.monotonic() - start


class Abuser(threading.Thread):
    """Holds ``idle`` connections that send nothing and ``half_open`` ones that send half a request head, spread
    over ``addresses`` loopback addresses, until ``end``; each connection the server closes is opened again."""

    def __init__(self, port: int, idle: int, half_open: int, addresses: int, end: float) -> None:
        super().__init__(daemon=True)
        self.port, self.end = port, end
        kinds = [b""] * idle + [HALF_HEAD] * half_open
        self.slots = [(f"127.0.{1 + i % addresses}.1", head) for i, head in enumerate(kinds)]
        self.selector = selectors.DefaultSelector()
        self.reopened = 0
        self.failed = 0  # connects that did not succeed (refused, reset)
        self.ready = threading.Event()

    def _open(self, slot: int) -> None:
        address, head = self.slots[slot]
        sock = socket.socket()
        try:
            sock.bind((address, 0))
            sock.settimeout(5)
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(head)
        except OSError:
            self.failed += 1
            sock.close()
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, slot)

    def run(self) -> None:
        for slot in range(len(self.slots)):
            self._open(slot)
        self.ready.set()
        while time.monotonic() < self.end:  # bounded: stops by itself at the end of the run
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)  # the server answered (408, 503) or closed: either way, reopen
                except OSError:
                    data = b""
                if data:
                    continue  # the close follows
                self.selector.unregister(sock)
                sock.close()
                self.reopened += 1
                self._open(key.data)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def server_gauges(url: str, key: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^(ge2e_\w+) (\S+)$", text, re.M)}


def run_abuse(args: argparse.Namespace, url: str, key: str, audio: bytes, concurrency: int, pid: int) -> dict:
    """One client count under abuse: a new client's verify once the abusers are in, then the clients' run."""
    port = int(url.rsplit(":", 1)[1])
    rss_before = rss_mib(pid)
    abuser = Abuser(port, args.idle, args.half_open, args.addresses, time.monotonic() + args.duration + 30)
    abuser.start()
    abuser.ready.wait()
    held = server_gauges(url, key)["ge2e_connections_open"]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as new:
        start = time.monotonic()
        first = new.post("/v1/speakers/bench/verify", content=audio)
        first_ms = (time.monotonic() - start) * 1000
    tally, wall = run_load(url, key, audio, args.duration, concurrency)
    gauges = server_gauges(url, key)
    abuser.end = 0  # stop it now
    abuser.join()
    answered = sum(tally.counts.values())
    return {
        "idle": args.idle,
        "half_open": args.half_open,
        "addresses": args.addresses,
        "server_connections_at_start": int(held),
        "new_client_status": first.status_code,
        "new_client_ms": round(first_ms, 1),
        "success_pct": round(100 * tally.counts["2xx"] / max(1, answered), 2),
        "abuse_reopened": abuser.reopened,
        "abuse_connect_failures": abuser.failed,
        "server_rejected_connections": int(gauges["ge2e_rejected_connections_total"]),
        **summarise(tally, wall, concurrency, (rss_before, rss_mib(pid))),
    }


def summarise(tally: Tally, wall: float, concurrency: int, rss: tuple[float, float]) -> dict:
    ms = np.array(tally.ok_latencies) * 1000

    def pct(q: float) -> float | None:
        return round(float(np.percentile(ms, q)), 1) if len(ms) else None

    return {
        "clients": concurrency,
        "seconds": round(wall, 1),
        "ok_per_s": round(tally.counts["2xx"] / wall, 2),
        **tally.counts,
        "retry_after_waited_s": round(tally.waited_s, 1),
        "n_latency": len(ms),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "rss_before_mib": round(rss[0], 1),
        "rss_after_mib": round(rss[1], 1),
    }


def print_table(rows: list[dict], args: argparse.Namespace, load: tuple[float, float]) -> None:
    print(
        f"\nverify, {args.duration:g} s per row, server --workers {args.workers} --queue {args.queue} "
        f"--threads {args.threads}; model {args.model or 'random ' + args.preset}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"1-min load average {load[0]:.2f} before, {load[1]:.2f} after\n"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print(
            f"| {r['clients']} | {r['ok_per_s']} | {r['2xx']} | {r['429']} | {r['503']} | {r['other']} | "
            f"{r['transport']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['n_latency']} | "
            f"{r['rss_before_mib']} / {r['rss_after_mib']} |"
        )


def print_abuse(rows: list[dict]) -> None:
    print("\n| idle + half-open (addresses) | open at start | new client verify | clients | ok/s | success % | "
          "2xx | 429 | 503 | other | transport | p50 ms | p99 ms | reopened | refused |")  # fmt: skip
    print("|" + "---|" * 15)
    for r in rows:
        print(
            f"| {r['idle']} + {r['half_open']} ({r['addresses']}) | {r['server_connections_at_start']} | "
            f"{r['new_client_status']} in {r['new_client_ms']} ms | {r['clients']} | {r['ok_per_s']} | "
            f"{r['success_pct']} | {r['2xx']} | {r['429']} | {r['503']} | {r['other']} | {r['transport']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['abuse_reopened']} | {r['server_rejected_connections']} |"
        )


def raise_open_files(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"the abuse scenario needs {need} open files; ulimit -Hn allows {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def main() -> None:
    args = parse_args()
    if args.abuse:
        raise_open_files(args.idle + args.half_open + 2 * max(args.concurrency) + 256)
    data = Path(os.environ.get("GE2E_DATA", REPO.parent / "shared" / "data"))
    audio_path = args.audio or data / CLIP
    if not audio_path.is_file():
        sys.exit(f"{audio_path}: probe audio not found (set GE2E_DATA or pass --audio)")
    audio = audio_path.read_bytes()
    key = secrets.token_urlsafe(24)
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(args, Path(tmp), key)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
                c.post("/v1/speakers", json={"id": "bench", "name": "bench"}).raise_for_status()
                c.post("/v1/speakers/bench/enrollments", content=audio).raise_for_status()
            run_load(url, key, audio, args.warmup, 1)
            for concurrency in args.concurrency:
                if args.abuse:
                    rows.append(run_abuse(args, url, key, audio, concurrency, proc.pid))
                    continue
                before = rss_mib(proc.pid)
                tally, wall = run_load(url, key, audio, args.duration, concurrency)
                rows.append(summarise(tally, wall, concurrency, (before, rss_mib(proc.pid))))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    load = (load_before, os.getloadavg()[0])
    print_table(rows, args, load)
    if args.abuse:
        print_abuse(rows)
    if args.json:
        meta = {"model": args.model or f"random {args.preset}", "audio_seconds": round(sf.info(audio_path).duration, 3)}
        meta |= {"workers": args.workers, "queue": args.queue, "torch_threads": args.threads, "load_avg_1min": load}
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
