"""Load test of ``ge2e serve`` on loopback: verify requests/s and p50/p99 latency.

Starts its own server on 127.0.0.1 (a temporary database and API key), enrolls one speaker, then sends a bounded
number of verify requests from ``--concurrency`` client threads. Nothing leaves the machine.

    python benchmarks/serve_load.py --preset small --requests 200 --concurrency 4
    python benchmarks/serve_load.py --model exp/run/best.pt --workers 2 --queue 8

``--preset`` builds a random encoder of that architecture (speed does not depend on the weights); ``--model``
serves a checkpoint; neither serves the bundled model. Audio: a LibriSpeech test-other clip from $GE2E_DATA.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CLIP = "LibriSpeech/test-other/1688/142285/1688-142285-0002.flac"  # 2.8 s of read speech
MAX_REQUESTS = 10_000  # the script is a bounded load test, not a stress tool


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="checkpoint to serve")
    src.add_argument("--preset", default="small", choices=("small", "paper"), help="random encoder (default small)")
    p.add_argument("--audio", type=Path, help=f"probe audio (default $GE2E_DATA/{CLIP})")
    p.add_argument("--requests", type=int, default=200, help="verify requests to time (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="untimed requests first (default 5)")
    p.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    p.add_argument("--workers", type=int, default=1, help="server inference threads (default 1)")
    p.add_argument("--queue", type=int, default=8, help="server queue (default 8)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per inference (default 1)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS or not 1 <= args.concurrency <= 64:
        p.error(f"--requests must be in 1..{MAX_REQUESTS} and --concurrency in 1..64")
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
           "--queue", str(args.queue), "--threads", str(args.threads), "--log-level", "warning"]  # fmt: skip
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


def run_load(url: str, key: str, audio: bytes, n: int, concurrency: int) -> tuple[list[float], dict[int, int], float]:
    """``n`` verify requests over ``concurrency`` threads -> (latencies of 200s in s, status counts, wall s)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    counter = iter(range(n))

    def client() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
            for _ in counter:  # shared iterator: n requests in all
                start = time.perf_counter()
                status = c.post("/v1/speakers/bench/verify", content=audio).status_code
                elapsed = time.perf_counter() - start
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - start


def main() -> None:
    args = parse_args()
    data = Path(os.environ.get("GE2E_DATA", REPO.parent / "shared" / "data"))
    audio_path = args.audio or data / CLIP
    if not audio_path.is_file():
        sys.exit(f"{audio_path}: probe audio not found (set GE2E_DATA or pass --audio)")
    audio = audio_path.read_bytes()
    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(args, Path(tmp), key)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
                c.post("/v1/speakers", json={"id": "bench", "name": "bench"}).raise_for_status()
                c.post("/v1/speakers/bench/enrollments", content=audio).raise_for_status()
            run_load(url, key, audio, args.warmup, 1)
            latencies, statuses, wall = run_load(url, key, audio, args.requests, args.concurrency)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ms = np.array(latencies) * 1000
    result = {
        "model": args.model or f"random {args.preset}",
        "audio_seconds": round(float(sf.info(audio_path).duration), 3),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "queue": args.queue,
        "torch_threads": args.threads,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "requests_per_s": round(args.requests / wall, 2),
        "ok_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(
        f"verify x{args.requests}, {args.concurrency} clients, {args.workers} worker(s): "
        f"{result['requests_per_s']} req/s ({result['ok_per_s']} ok/s), p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, statuses {result['statuses']} (load avg {result['load_avg_1min']})"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
