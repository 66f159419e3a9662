"""The speaker verification service: a real uvicorn process on 127.0.0.1, plus store, auth and overload units.

A tiny random encoder cannot tell voices apart, so decisions are checked against the scores the same model
computes offline, and the threshold is set between two offline scores to make a false claim fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from ge2e.api import average_embeddings, embed_utterance
from ge2e.cli import main as cli_main
from ge2e.errors import ConfigError
from ge2e.model import SpeakerEncoder
from ge2e.serve import ServeConfig, SpeakerStore, create_app
from ge2e.serve.auth import load_keys
from ge2e.serve.db import DEFAULT_TENANT, Database, integrity_check
from ge2e.serve.keys import KeyNotFound, KeyStore, Principal, Role
from ge2e.serve.store import NewEnrollment, SpeakerNotFound, StoreError
from serve_server import CLIPS, KEY, ServerProcess, assert_error, tiny_model

FILE_KEY = "file-key-fedcba9876543210"
TOL = 1e-4  # server vs offline score: same code and weights, float32 sums in another order
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE speakers (id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    model_id TEXT NOT NULL, n_utterances INTEGER NOT NULL DEFAULT 0, speech_seconds REAL NOT NULL DEFAULT 0,
    centroid BLOB, metadata TEXT NOT NULL DEFAULT '{}');
CREATE TABLE enrollments (id TEXT PRIMARY KEY, speaker_id TEXT NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
    created REAL NOT NULL, filename TEXT, sha256 TEXT NOT NULL, duration_seconds REAL NOT NULL,
    speech_seconds REAL NOT NULL, dvector BLOB NOT NULL);
CREATE INDEX enrollments_speaker ON enrollments(speaker_id);
INSERT INTO meta VALUES ('generation', '0');
PRAGMA user_version = 1;
"""  # what ge2e 0.x wrote, before tenants
LIMITS = ["--max-upload-mb", "1", "--max-audio-seconds", "5", "--workers", "2", "--queue", "8", "--threads", "1"]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clips(data_root: Path) -> dict[str, Path]:
    return {name: data_root / rel for name, rel in CLIPS.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SpeakerEncoder]:
    path = tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")
    return path, SpeakerEncoder.load(path)


@pytest.fixture(scope="module")
def offline(tiny: tuple[Path, SpeakerEncoder], clips: dict[str, Path]) -> dict[str, np.ndarray]:
    """d-vectors computed in this process, with the same model file the server loads."""
    torch.set_num_threads(1)
    return {name: embed_utterance(path, tiny[1]) for name, path in clips.items()}


@pytest.fixture(scope="module")
def threshold(offline: dict[str, np.ndarray]) -> float:
    """Halfway between a perfect match (1.0) and the a1-vs-b1 score, so claiming b with a1 must fail."""
    cross = float(offline["a1"] @ offline["b1"])
    assert 1.0 - cross > 20 * TOL, "the tiny model maps a1 and b1 too close together to place a threshold"
    return (1.0 + cross) / 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny: tuple[Path, SpeakerEncoder], threshold: float):
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "keys.txt").write_text(f"# service keys\n{FILE_KEY}\n")
    args = ["--db", str(tmp / "db.sqlite"), "--model", str(tiny[0]), "--threshold", str(threshold)]
    proc = ServerProcess([*args, "--api-key-file", str(tmp / "keys.txt"), *LIMITS], KEY, tmp / "server.log")
    yield proc
    proc.stop()


@pytest.fixture
def client(server: ServerProcess):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def wav_bytes(samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def audio(path: Path) -> dict:
    return {"files": {"audio": (path.name, path.read_bytes(), "audio/flac")}}


def create(client: httpx.Client, speaker_id: str, name: str) -> None:
    r = client.post("/v1/speakers", json={"id": speaker_id, "name": name})
    assert r.status_code == 201, r.text


def server_model_id(client: httpx.Client) -> str:
    return client.get("/health", headers={"Authorization": f"Bearer {KEY}"}).json()["model_id"]


# ---------------------------------------------------------------------------------------------- end to end


def test_enroll_verify_identify_delete(
    client: httpx.Client, clips: dict[str, Path], offline: dict[str, np.ndarray], threshold: float, data_root: Path
) -> None:
    create(client, "alice", "Alice")
    create(client, "bob", "Bob")
    for speaker, clip in (("alice", "a1"), ("bob", "b1")):
        r = client.post(f"/v1/speakers/{speaker}/enrollments", **audio(clips[clip]))
        assert r.status_code == 201, r.text
        added = r.json()["added"]
        assert len(added) == 1 and added[0]["sha256"] == hashlib.sha256(clips[clip].read_bytes()).hexdigest()
        assert r.json()["speaker"]["n_utterances"] == 1

    # true claim: alice's own enrollment audio; false claim: the same audio claimed as bob
    true = client.post("/v1/speakers/alice/verify", **audio(clips["a1"])).json()
    false = client.post("/v1/speakers/bob/verify", **audio(clips["a1"])).json()
    assert true["score"] == pytest.approx(1.0, abs=TOL) and true["decision"] == "accept"
    assert false["score"] == pytest.approx(float(offline["a1"] @ offline["b1"]), abs=TOL)
    assert false["decision"] == "reject" and false["threshold"] == pytest.approx(threshold)
    assert true["short"] is False

    # a spoken digit with 0.16 s of speech (under the model's 250 ms training minimum): scored, flagged short
    digit = data_root / "speech_commands_v0.02_test" / "one" / "82d0d3ba_nohash_0.opus"
    r = client.post("/v1/speakers/alice/verify", **audio(digit))
    assert r.status_code == 200, r.text
    assert r.json()["short"] is True and r.json()["speech_seconds"] < 0.25
    r = client.post("/v1/identify", **audio(digit))
    assert r.status_code == 200 and r.json()["short"] is True, r.text

    # another utterance: the score the model gives offline, the decision the threshold implies
    other = client.post("/v1/speakers/alice/verify", **audio(clips["a2"])).json()
    assert other["score"] == pytest.approx(float(offline["a2"] @ offline["a1"]), abs=TOL)
    assert other["decision"] == ("accept" if other["score"] >= threshold else "reject")
    lenient = client.post("/v1/speakers/bob/verify", params={"threshold": -1}, **audio(clips["a1"])).json()
    assert lenient["decision"] == "accept" and lenient["threshold"] == -1

    # raw body instead of multipart; the service's d-vector equals the offline one
    embedded = client.post("/v1/embed", content=clips["a1"].read_bytes()).json()
    assert np.abs(np.array(embedded["embedding"]) - offline["a1"]).max() < TOL

    ranked = client.post("/v1/identify", params={"top_k": 2}, **audio(clips["b1"])).json()
    assert [c["speaker_id"] for c in ranked["candidates"]] == ["bob", "alice"]
    assert ranked["candidates"][0]["score"] == pytest.approx(1.0, abs=TOL)

    # two files in one enrollment: the model becomes the normalised mean of the three d-vectors
    files = [("audio", (p.name, p.read_bytes())) for p in (clips["a2"], clips["b2"])]
    r = client.post("/v1/speakers/alice/enrollments", files=files)
    assert r.status_code == 201 and r.json()["speaker"]["n_utterances"] == 3
    centroid = average_embeddings(np.stack([offline["a1"], offline["a2"], offline["b2"]]))
    after = client.post("/v1/speakers/alice/verify", **audio(clips["a1"])).json()
    assert after["score"] == pytest.approx(float(centroid @ offline["a1"]), abs=TOL)

    detail = client.get("/v1/speakers/alice").json()
    assert detail["n_utterances"] == len(detail["enrollments"]) == 3
    r = client.delete(f"/v1/speakers/alice/enrollments/{detail['enrollments'][-1]['id']}")
    assert r.status_code == 200 and r.json()["n_utterances"] == 2
    assert {s["id"] for s in client.get("/v1/speakers").json()["speakers"]} >= {"alice", "bob"}

    assert client.delete("/v1/speakers/bob").status_code == 204
    assert_error(client.get("/v1/speakers/bob"), 404, "speaker_not_found")
    assert_error(client.post("/v1/speakers/bob/verify", **audio(clips["a1"])), 404, "speaker_not_found")
    ranked = client.post("/v1/identify", params={"top_k": 5}, **audio(clips["b1"])).json()
    assert "bob" not in [c["speaker_id"] for c in ranked["candidates"]]


def test_api_keys(server: ServerProcess, clips: dict[str, Path]) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        for method, path in (("GET", "/v1/speakers"), ("POST", "/v1/embed"), ("GET", "/metrics")):
            r = anon.request(method, path)
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": f"Bearer {KEY[:-1]}x"}
        assert_error(anon.get("/v1/speakers", headers=wrong), 401, "unauthorized")
        assert_error(anon.get("/v1/speakers", headers={"Authorization": f"Basic {KEY}"}), 401, "unauthorized")
        assert anon.get("/health").json() == {"status": "ok"}  # version and model only for keyholders
        assert "/v1/speakers/{speaker_id}/verify" in anon.get("/openapi.json").json()["paths"]
        assert anon.get("/docs").status_code == 200
        # the key file's key works as well as the environment's
        r = anon.get("/v1/speakers", headers={"Authorization": f"Bearer {FILE_KEY}"})
        assert r.status_code == 200
        metrics = anon.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert 'ge2e_http_requests_total{method="GET",route="/v1/speakers",status="401"}' in metrics
        assert f'model_id="{server_model_id(anon)}"' in metrics and "ge2e_speakers " in metrics


def test_bad_inputs_get_clear_errors(client: httpx.Client, server: ServerProcess, clips: dict[str, Path]) -> None:
    rng = np.random.default_rng(0)
    speech, sr = sf.read(clips["a1"], dtype="float32")
    stereo48 = np.stack([soxr.resample(speech, sr, 48_000), 0.5 * soxr.resample(speech, sr, 48_000)], axis=1)
    nan_wav = wav_bytes(np.full(16_000, np.nan, dtype=np.float32), 16_000, "FLOAT")
    cases = {
        "corrupt": (rng.bytes(5000), 415, "undecodable_audio"),
        "corrupt wav header": (b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(200), 415, "undecodable_audio"),
        "empty": (b"", 422, "empty_audio"),
        "silent": (wav_bytes(np.zeros(32_000, dtype=np.float32), 16_000), 422, "no_speech"),
        "noise only": (wav_bytes(0.01 * rng.standard_normal(32_000), 16_000), 422, "no_speech"),
        "huge": (rng.bytes(1_500_000), 413, "upload_too_large"),
        "too long": (wav_bytes(0.1 * rng.standard_normal(16_000 * 6), 16_000), 413, "audio_too_long"),
        "wrong type": (b"\x89PNG\r\n\x1a\n" + rng.bytes(3000), 415, "undecodable_audio"),
        "text": (b"hello, I am not audio at all", 415, "undecodable_audio"),
        "NaN-filled": (nan_wav, 422, "non_finite_audio"),
        "1-sample": (wav_bytes(np.array([0.5], dtype=np.float32), 16_000), 422, "audio_too_short"),
    }
    for name, (data, status, code) in cases.items():
        # named .wav and typed audio/wav whatever they hold: only decoding decides
        r = client.post("/v1/embed", files={"audio": ("clip.wav", data, "audio/wav")})
        assert r.status_code == status, f"{name}: {r.text}"
        assert r.json()["error"]["code"] == code, name
        assert r.json()["error"]["message"].startswith("audio" if status != 413 else ""), name

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(40):
            yield rng.bytes(50_000)

    assert_error(client.post("/v1/embed", content=chunks()), 413, "upload_too_large")

    # stereo 48 kHz is valid audio: downmixed and resampled, then embedded
    r = client.post("/v1/embed", files={"audio": ("s.wav", wav_bytes(stereo48, 48_000))})
    assert r.status_code == 200, r.text
    assert np.linalg.norm(r.json()["embedding"]) == pytest.approx(1.0, abs=1e-4)

    good = clips["a1"].read_bytes()
    assert_error(client.post("/v1/embed", files={"file": ("a.flac", good)}), 400, "bad_form")
    boundary = {"Content-Type": "multipart/form-data; boundary=xyz"}
    assert_error(client.post("/v1/embed", content=b"--xyz\r\nnot a part", headers=boundary), 400, "bad_form")
    two = [("audio", ("a.flac", good)), ("audio", ("b.flac", good))]
    assert_error(client.post("/v1/embed", files=two), 400, "too_many_files")

    create(client, "carol", "Carol")
    assert_error(client.post("/v1/speakers/carol/verify", content=good), 409, "not_enrolled")
    assert_error(client.post("/v1/speakers", json={"id": "carol", "name": "C"}), 409, "speaker_exists")
    assert_error(client.post("/v1/speakers", json={"id": "no spaces", "name": "C"}), 422, "invalid_request")
    assert_error(client.post("/v1/speakers", json={"name": ""}), 422, "invalid_request")
    assert_error(
        client.post("/v1/speakers", content=b"{", headers={"Content-Type": "application/json"}), 400, "invalid_json"
    )
    assert_error(client.post("/v1/identify", params={"top_k": 0}, content=good), 422, "invalid_request")
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    # an enrollment with one bad file adds nothing
    mixed = [("audio", ("a.flac", good)), ("audio", ("bad.wav", b"junk" * 100))]
    r = client.post("/v1/speakers/carol/enrollments", files=mixed)
    assert_error(r, 415, "undecodable_audio")
    assert "audio[2] (bad.wav)" in r.json()["error"]["message"]
    assert client.get("/v1/speakers/carol").json()["n_utterances"] == 0

    assert server.alive() and client.get("/health").status_code == 200
    assert client.post("/v1/embed", content=good).status_code == 200


# ---------------------------------------------------------------------------------------------- crash safety


def test_kill9_during_enrollment_burst(tmp_path: Path, tiny: tuple[Path, SpeakerEncoder], clips: dict[str, Path]):
    db = tmp_path / "db.sqlite"
    args = ["--db", str(db), "--model", str(tiny[0]), "--threshold", "0.5", *LIMITS]
    server = ServerProcess(args, KEY, tmp_path / "server.log")
    speakers = [f"s{i}" for i in range(6)]
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as c:
        for s in speakers:
            create(c, s, s.upper())
    answered: list[tuple[str, str]] = []  # (speaker, enrollment id) of every 2xx
    cut_off: list[int] = []  # workers whose request was in flight when the server died
    lock = threading.Lock()
    payloads = [p.read_bytes() for p in clips.values()]

    def burst(worker: int) -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as c:
            for i in range(12):  # bounded: 4 workers x 12 requests at most
                speaker = speakers[(worker + i) % len(speakers)]
                try:
                    r = c.post(f"/v1/speakers/{speaker}/enrollments", content=payloads[i % len(payloads)])
                except httpx.TransportError:
                    cut_off.append(worker)
                    return
                if r.is_success:
                    with lock:
                        answered.extend((speaker, a["id"]) for a in r.json()["added"])

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # mid-burst: other enrollments are in flight
    for t in threads:
        t.join(timeout=60)
    assert len(answered) >= 6, server.log_tail()
    assert cut_off, "no request was in flight at the kill"

    assert integrity_check(db) == "ok"
    server = ServerProcess(args, KEY, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as c:
            stored = {s: c.get(f"/v1/speakers/{s}").json() for s in speakers}
            verified = c.post(f"/v1/speakers/{answered[0][0]}/verify", content=payloads[0])
    finally:
        server.stop()
    for speaker, enrollment in answered:
        assert enrollment in {e["id"] for e in stored[speaker]["enrollments"]}
    for detail in stored.values():  # no half-written speaker: counts and rows agree
        assert detail["n_utterances"] == len(detail["enrollments"])
    assert verified.status_code == 200
    assert integrity_check(db) == "ok"


# ---------------------------------------------------------------------------------------------- units


class _BlockingEncoder:
    """Wraps an encoder; a forward pass waits for ``release``, so a test can hold the only inference slot."""

    def __init__(self, model: SpeakerEncoder) -> None:
        self.model = model
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        self.release.wait(timeout=30)
        return self.model(frames)


def test_full_queue_answers_503(tmp_path: Path, tiny: tuple[Path, SpeakerEncoder], clips: dict[str, Path]) -> None:
    encoder = _BlockingEncoder(tiny[1])
    store = SpeakerStore(tmp_path / "db.sqlite", "m", encoder.embedding_size)
    app = create_app(encoder, store, [KEY], ServeConfig(threshold=0.5, workers=1, queue=0), "m")
    body = clips["a1"].read_bytes()

    async def scenario() -> tuple[httpx.Response, httpx.Response, dict]:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
            first = asyncio.create_task(c.post("/v1/embed", content=body))
            while not encoder.entered.is_set():
                await asyncio.sleep(0.01)
            second = await c.post("/v1/embed", content=body)
            encoder.release.set()
            metrics = (await c.get("/metrics")).text
            return await first, second, {"metrics": metrics}

    first, second, extra = asyncio.run(scenario())
    assert first.status_code == 200
    assert_error(second, 503, "overloaded")
    assert int(second.headers["retry-after"]) >= 1
    assert "ge2e_rejected_overload_total 1" in extra["metrics"]


def test_unexpected_error_is_json_and_closes_the_connection(
    tmp_path: Path, tiny: tuple[Path, SpeakerEncoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SpeakerStore(tmp_path / "db.sqlite", "m", tiny[1].embedding_size)
    app = create_app(tiny[1], store, [KEY], ServeConfig(threshold=0.5), "m")

    def broken(*_: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "list_speakers", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def call() -> httpx.Response:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
            return await c.get("/v1/speakers")

    r = asyncio.run(call())
    assert_error(r, 500, "internal_error")
    assert "disk on fire" not in r.text and r.headers["connection"] == "close"


def test_keys_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = str(tmp_path / "db.sqlite")
    assert cli_main(["serve", "keys", "add", "--db", db, "--tenant", "acme", "--role", "enroll", "--name", "ops"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli_main(["serve", "keys", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    key_id = listing.splitlines()[1].split()[0]
    assert "acme" in listing and "enroll" in listing and token not in listing
    assert cli_main(["serve", "keys", "revoke", "--db", db, key_id]) == 0
    assert KeyStore(Database(db)).authenticate(token) is None
    assert cli_main(["serve", "keys", "revoke", "--db", db, "nope"]) == 1
    assert "not found" in capsys.readouterr().err
    assert cli_main(["serve", "keys", "add", "--db", db, "--tenant", "bad tenant", "--role", "admin"]) == 1


def test_store_is_atomic_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = SpeakerStore(path, "model-a", 4)
    store.create("t", "Ann", speaker_id="ann")
    unit = np.array([1, 0, 0, 0], dtype=np.float32)
    good = NewEnrollment(unit, "a.wav", "00", 1.0, 0.8)
    bad = NewEnrollment(np.ones(3, dtype=np.float32), "b.wav", "11", 1.0, 0.8)  # wrong size: fails mid-way
    with pytest.raises(ValueError):
        store.enroll("t", "ann", [good, bad])
    assert store.get("t", "ann").n_utterances == 0 and store.centroid("t", "ann") is None
    _, added = store.enroll("t", "ann", [good, NewEnrollment(np.array([0, 1, 0, 0], np.float32), None, "22", 1, 1)])
    assert np.allclose(store.centroid("t", "ann"), [2**-0.5, 2**-0.5, 0, 0])
    assert store.centroids("t").ids == ["ann"] and store.centroids("other").ids == []
    store.delete_enrollment("t", "ann", added[1].id)
    assert np.allclose(store.centroid("t", "ann"), unit) and store.centroids("t").matrix.tolist() == [unit.tolist()]
    with pytest.raises(SpeakerNotFound):
        store.enroll("t", "nobody", [good])
    with pytest.raises(SpeakerNotFound):  # another tenant's speaker is not there at all
        store.get("other", "ann")

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(StoreError, match="another model"):
        SpeakerStore(path, "model-b", 4)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        SpeakerStore(path, "model-a", 4)
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot use database"):
        SpeakerStore(tmp_path / "junk.sqlite", "model-a", 4)


def test_keys_from_env_file_and_database(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("# comment\n\nfrom-file-key-000000\n")
    legacy = load_keys(tmp_path / "keys", environ={"GE2E_API_KEYS": " a-key-0000000000000, b-key-0000000000000 "})
    assert legacy == ["a-key-0000000000000", "b-key-0000000000000", "from-file-key-000000"]
    assert load_keys(None, environ={"GE2E_API_KEYS": " , "}) == []
    db = Database(tmp_path / "db.sqlite")
    keys = KeyStore(db, legacy)
    who = keys.authenticate("b-key-0000000000000")
    assert who is not None and (who.tenant, who.role) == (DEFAULT_TENANT, Role.ADMIN)
    assert keys.authenticate("b-key-000000000000") is None and keys.authenticate("") is None
    assert not KeyStore(db).has_keys()

    record, token = keys.add("acme", Role.VERIFY, "kiosk", rate_per_minute=60)
    assert keys.authenticate(token) == Principal(record.id, "acme", Role.VERIFY, 60)
    assert KeyStore(db).has_keys()
    with sqlite3.connect(db.path) as conn:  # only the digest is stored
        assert token.encode() not in b"".join(
            bytes(str(v), "utf-8") for row in conn.execute("SELECT * FROM api_keys") for v in row
        )
    with pytest.raises(KeyNotFound):
        keys.revoke(record.id, tenant="other")  # another tenant's admin cannot even see it
    keys.revoke(record.id)
    assert keys.authenticate(token) is None and keys.list("acme")[0].revoked is not None
    assert [e["action"] for e in db.audit_log("acme")] == ["create_key", "revoke_key"]
    assert Role.ADMIN.includes(Role.ENROLL) and not Role.VERIFY.includes(Role.ENROLL)
    with pytest.raises(ConfigError, match="tenant"):
        keys.add("bad tenant", Role.ADMIN)


def test_version_1_database_becomes_the_default_tenant(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute(
            "INSERT INTO speakers (id, name, created, updated, model_id, centroid) VALUES ('ann', 'Ann', 1, 1, 'm', ?)",
            (np.ones(4, np.float32).tobytes(),),
        )
        conn.execute(
            "INSERT INTO enrollments VALUES ('e1', 'ann', 1, NULL, '00', 1, 1, ?)", (np.ones(4, np.float32).tobytes(),)
        )
        conn.commit()
    store = SpeakerStore(path, "m", 4)
    speaker = store.get(DEFAULT_TENANT, "ann")
    assert speaker.name == "Ann" and [e.id for e in speaker.enrollments] == ["e1"]
    assert store.centroids(DEFAULT_TENANT).ids == ["ann"]
    store.delete(DEFAULT_TENANT, "ann")  # the foreign key still cascades after the table swap
    assert store.counts() == (0, 0) and integrity_check(path) == "ok"


def test_cli_refuses_to_start_without_keys(
    tmp_path: Path, tiny: tuple[Path, SpeakerEncoder], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("GE2E_API_KEYS", raising=False)
    assert cli_main(["serve", "--db", str(tmp_path / "db"), "--model", str(tiny[0]), "--threshold", "0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no API key configured" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "db").exists()
    keys = KeyStore(Database(tmp_path / "db"))  # a database whose only key is revoked lets nobody in either
    keys.revoke(keys.add("acme", Role.ADMIN)[0].id)
    assert cli_main(["serve", "--db", str(tmp_path / "db"), "--model", str(tiny[0]), "--threshold", "0.5"]) == 1
    assert "no API key configured" in capsys.readouterr().err
