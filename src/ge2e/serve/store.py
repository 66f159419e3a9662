"""Speaker store: enrolled speakers and their d-vectors in one SQLite file (no audio is ever stored).

Durability contract: WAL journal with ``synchronous=FULL``, so a committed transaction survives a power cut; every
write runs in one ``BEGIN IMMEDIATE`` transaction, so a process killed mid-request leaves the previous state. A
speaker's model is the L2-normalised mean of its enrollment d-vectors, recomputed from the enrollment rows inside
the transaction that changes them, so the speaker row and its enrollments can never disagree.

Schema version in ``PRAGMA user_version``; a database from a newer ge2e is refused, not guessed at.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ge2e.errors import Ge2eError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another writer's lock before failing

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE speakers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,                   -- unix time, seconds
    updated REAL NOT NULL,
    model_id TEXT NOT NULL,                  -- fingerprint of the encoder its d-vectors come from
    n_utterances INTEGER NOT NULL DEFAULT 0,
    speech_seconds REAL NOT NULL DEFAULT 0,
    centroid BLOB,                           -- float32 (D,), unit norm; NULL until the first enrollment
    metadata TEXT NOT NULL DEFAULT '{}'      -- JSON object from the client
);
CREATE TABLE enrollments (
    id TEXT PRIMARY KEY,
    speaker_id TEXT NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
    created REAL NOT NULL,
    filename TEXT,
    sha256 TEXT NOT NULL,                    -- of the uploaded bytes: lets clients spot duplicates
    duration_seconds REAL NOT NULL,
    speech_seconds REAL NOT NULL,
    dvector BLOB NOT NULL                    -- float32 (D,), unit norm
);
CREATE INDEX enrollments_speaker ON enrollments(speaker_id);
INSERT INTO meta VALUES ('generation', '0')
"""


class StoreError(Ge2eError):
    """The database cannot be opened or used (not SQLite, newer schema, another model's d-vectors)."""


class SpeakerNotFound(StoreError):
    """No speaker with this id."""


class SpeakerExists(StoreError):
    """A speaker with this id already exists."""


@dataclass(frozen=True)
class Enrollment:
    """Metadata of one enrollment utterance (its d-vector stays in the database)."""

    id: str
    created: float
    filename: str | None
    sha256: str
    duration_seconds: float
    speech_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Speaker:
    """A speaker row; ``enrollments`` is filled only by :meth:`SpeakerStore.get`."""

    id: str
    name: str
    created: float
    updated: float
    model_id: str
    n_utterances: int
    speech_seconds: float
    metadata: dict[str, Any]
    enrollments: list[Enrollment] = field(default_factory=list)

    def as_dict(self, with_enrollments: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "enrollments"}
        if with_enrollments:
            out["enrollments"] = [e.as_dict() for e in self.enrollments]
        return out


@dataclass(frozen=True)
class NewEnrollment:
    """One utterance to add: its unit-norm ``(D,)`` d-vector and what is kept about the upload."""

    dvector: np.ndarray
    filename: str | None
    sha256: str
    duration_seconds: float
    speech_seconds: float


@dataclass(frozen=True)
class Centroids:
    """Every enrolled speaker's model: ``ids[i]``, ``names[i]`` own row i of the ``(S, D)`` unit-norm matrix."""

    generation: int
    ids: list[str]
    names: list[str]
    matrix: np.ndarray


_SPEAKER_COLUMNS = "id, name, created, updated, model_id, n_utterances, speech_seconds, metadata"


def _speaker(row: sqlite3.Row) -> Speaker:
    return Speaker(
        id=row["id"],
        name=row["name"],
        created=row["created"],
        updated=row["updated"],
        model_id=row["model_id"],
        n_utterances=row["n_utterances"],
        speech_seconds=row["speech_seconds"],
        metadata=json.loads(row["metadata"]),
    )


def _vector(blob: bytes, dim: int) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32, count=dim)


class SpeakerStore:
    """Thread-safe access to one speaker database; each thread gets its own SQLite connection.

    Args:
        path: the SQLite file (created with its folder if missing).
        model_id: fingerprint of the encoder the service runs; speakers enrolled with another model are refused.
        dim: d-vector size D of that encoder.

    Raises:
        StoreError: not a SQLite file, schema newer than this ge2e, or d-vectors of a different model inside.
    """

    def __init__(self, path: str | Path, model_id: str, dim: int) -> None:
        self.path = Path(path)
        self.model_id = model_id
        self.dim = dim
        self._local = threading.local()
        self._cache: Centroids | None = None
        self._cache_lock = threading.Lock()
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a database file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._migrate()
            self._check_model()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot use database ({exc})") from None

    # ---- connections and transactions -----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit mode (isolation_level=None): transactions are opened explicitly, with BEGIN IMMEDIATE
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit: an answer is durable
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock up front, so read-modify-write cannot race."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: database schema version {version} is newer than this ge2e reads ({SCHEMA_VERSION})"
            )
        if version == 0:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(f"{self.path}: SQLite file without a ge2e schema; use a new file for --db")
            try:  # one transaction: a crash leaves either no schema or all of it
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA_V1}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _check_model(self) -> None:
        rows = self._conn().execute(
            "SELECT model_id, count(*) FROM speakers WHERE model_id != ? GROUP BY model_id", (self.model_id,)
        )
        others = {model_id: n for model_id, n in rows}
        if others:
            listed = ", ".join(f"{n} with model {m}" for m, n in sorted(others.items()))
            raise StoreError(
                f"{self.path}: holds speakers enrolled with another model ({listed}); the service runs model "
                f"{self.model_id}: serve that model, or enroll into a new database"
            )

    # ---- speakers -------------------------------------------------------------------------------

    def create(self, name: str, metadata: dict[str, Any] | None = None, speaker_id: str | None = None) -> Speaker:
        """Add a speaker with no enrollments; ``speaker_id`` defaults to a random hex id."""
        speaker_id = speaker_id or uuid.uuid4().hex
        now = time.time()
        try:
            with self._write() as conn:
                conn.execute(
                    "INSERT INTO speakers (id, name, created, updated, model_id, metadata) VALUES (?, ?, ?, ?, ?, ?)",
                    (speaker_id, name, now, now, self.model_id, json.dumps(metadata or {})),
                )
        except sqlite3.IntegrityError:
            raise SpeakerExists(f"speaker {speaker_id!r} already exists") from None
        return self.get(speaker_id, with_enrollments=False)

    def get(self, speaker_id: str, with_enrollments: bool = True) -> Speaker:
        conn = self._conn()
        row = conn.execute(f"SELECT {_SPEAKER_COLUMNS} FROM speakers WHERE id = ?", (speaker_id,)).fetchone()
        if row is None:
            raise SpeakerNotFound(f"speaker {speaker_id!r} not found")
        speaker = _speaker(row)
        if not with_enrollments:
            return speaker
        rows = conn.execute(
            "SELECT id, created, filename, sha256, duration_seconds, speech_seconds FROM enrollments "
            "WHERE speaker_id = ? ORDER BY created, id",
            (speaker_id,),
        )
        return Speaker(**{**speaker.__dict__, "enrollments": [Enrollment(**dict(r)) for r in rows]})

    def list_speakers(self, limit: int = 100, offset: int = 0) -> tuple[list[Speaker], int]:
        """A page of speakers ordered by creation time, and the total count."""
        conn = self._conn()
        rows = conn.execute(
            f"SELECT {_SPEAKER_COLUMNS} FROM speakers ORDER BY created, id LIMIT ? OFFSET ?", (limit, offset)
        )
        speakers = [_speaker(r) for r in rows]
        return speakers, conn.execute("SELECT count(*) FROM speakers").fetchone()[0]

    def delete(self, speaker_id: str) -> None:
        """Remove a speaker and its enrollments (one transaction)."""
        with self._write() as conn:
            if conn.execute("DELETE FROM speakers WHERE id = ?", (speaker_id,)).rowcount == 0:
                raise SpeakerNotFound(f"speaker {speaker_id!r} not found")

    def counts(self) -> tuple[int, int]:
        """(speakers, enrollments) in the database."""
        conn = self._conn()
        return (
            conn.execute("SELECT count(*) FROM speakers").fetchone()[0],
            conn.execute("SELECT count(*) FROM enrollments").fetchone()[0],
        )

    # ---- enrollments ----------------------------------------------------------------------------

    def enroll(self, speaker_id: str, items: list[NewEnrollment]) -> tuple[Speaker, list[Enrollment]]:
        """Add utterances to a speaker and update its model, all in one transaction (all or nothing)."""
        now = time.time()
        added = [
            Enrollment(uuid.uuid4().hex, now, it.filename, it.sha256, it.duration_seconds, it.speech_seconds)
            for it in items
        ]
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM speakers WHERE id = ?", (speaker_id,)).fetchone() is None:
                raise SpeakerNotFound(f"speaker {speaker_id!r} not found")
            conn.executemany(
                "INSERT INTO enrollments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.id, speaker_id, e.created, e.filename, e.sha256, e.duration_seconds, e.speech_seconds, blob)
                    for e, blob in zip(added, (self._blob(it.dvector) for it in items), strict=True)
                ],
            )
            self._refresh(conn, speaker_id, now)
        return self.get(speaker_id, with_enrollments=False), added

    def delete_enrollment(self, speaker_id: str, enrollment_id: str) -> Speaker:
        """Remove one utterance and update the speaker's model (one transaction)."""
        with self._write() as conn:
            deleted = conn.execute(
                "DELETE FROM enrollments WHERE id = ? AND speaker_id = ?", (enrollment_id, speaker_id)
            ).rowcount
            if deleted == 0:
                if conn.execute("SELECT 1 FROM speakers WHERE id = ?", (speaker_id,)).fetchone() is None:
                    raise SpeakerNotFound(f"speaker {speaker_id!r} not found")
                raise SpeakerNotFound(f"speaker {speaker_id!r} has no enrollment {enrollment_id!r}")
            self._refresh(conn, speaker_id, time.time())
        return self.get(speaker_id, with_enrollments=False)

    def _blob(self, dvector: np.ndarray) -> bytes:
        vec = np.asarray(dvector, dtype=np.float32)
        if vec.shape != (self.dim,) or not np.isfinite(vec).all():
            raise ValueError(f"expected a finite ({self.dim},) d-vector, got shape {vec.shape}")
        return vec.tobytes()

    def _refresh(self, conn: sqlite3.Connection, speaker_id: str, now: float) -> None:
        """Recompute a speaker's centroid and counts from its enrollment rows (inside the caller's transaction)."""
        rows = conn.execute(
            "SELECT dvector, speech_seconds FROM enrollments WHERE speaker_id = ?", (speaker_id,)
        ).fetchall()
        centroid = None
        if rows:
            mean = np.mean([_vector(r["dvector"], self.dim) for r in rows], axis=0, dtype=np.float64)
            centroid = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32).tobytes()
        conn.execute(
            "UPDATE speakers SET centroid = ?, n_utterances = ?, speech_seconds = ?, updated = ? WHERE id = ?",
            (centroid, len(rows), float(sum(r["speech_seconds"] for r in rows)), now, speaker_id),
        )

    # ---- models for scoring ---------------------------------------------------------------------

    def centroid(self, speaker_id: str) -> np.ndarray | None:
        """A speaker's ``(D,)`` unit-norm model, or None before its first enrollment."""
        row = self._conn().execute("SELECT centroid FROM speakers WHERE id = ?", (speaker_id,)).fetchone()
        if row is None:
            raise SpeakerNotFound(f"speaker {speaker_id!r} not found")
        return None if row["centroid"] is None else _vector(row["centroid"], self.dim)

    def centroids(self) -> Centroids:
        """Every enrolled speaker's model, cached until the next write (by any process) to the database."""
        conn = self._conn()
        generation = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        with self._cache_lock:
            if self._cache is not None and self._cache.generation == generation:
                return self._cache
        conn.execute("BEGIN")  # one snapshot: the generation and the rows must agree
        try:
            generation = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            rows = conn.execute(
                "SELECT id, name, centroid FROM speakers WHERE centroid IS NOT NULL ORDER BY id"
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        matrix = np.stack([_vector(r["centroid"], self.dim) for r in rows]) if rows else np.zeros((0, self.dim))
        cache = Centroids(generation, [r["id"] for r in rows], [r["name"] for r in rows], matrix.astype(np.float32))
        with self._cache_lock:
            self._cache = cache
        return cache


def integrity_check(path: str | Path) -> str:
    """``PRAGMA integrity_check`` of a database file: ``"ok"`` or SQLite's first problem."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
