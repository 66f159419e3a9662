"""Speaker store: each tenant's enrolled speakers and their d-vectors (no audio is ever stored).

A speaker's model is the L2-normalised mean of its enrollment d-vectors, recomputed from the enrollment rows inside
the transaction that changes them, so the speaker row and its enrollments can never disagree. Every query names
its tenant: one tenant's speakers are invisible to another's, even by id. Durability: see :mod:`ge2e.serve.db`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ge2e.serve.db import Database, StoreError
from ge2e.serve.records import (
    ENROLLMENT_COLUMNS,
    SPEAKER_COLUMNS,
    Centroids,
    Enrollment,
    NewEnrollment,
    Speaker,
    SpeakerDetail,
    speaker_from_row,
    vector_from_blob,
)

LIBRARY_ACTOR = "library"  # who the audit log names when the store is used from Python rather than the service


class SpeakerNotFound(StoreError):
    """No speaker with this id (in this tenant)."""


class SpeakerExists(StoreError):
    """A speaker with this id already exists in this tenant."""


def _not_found(speaker_id: str) -> SpeakerNotFound:
    return SpeakerNotFound(f"speaker {speaker_id!r} not found")


class SpeakerStore:
    """Thread-safe access to the speakers of one database, tenant by tenant.

    Args:
        path: the SQLite file (created with its folder if missing).
        model_id: fingerprint of the encoder the service runs; speakers enrolled with another model are refused.
        dim: d-vector size D of that encoder.

    Raises:
        StoreError: not a SQLite file, schema newer than this ge2e, or d-vectors of a different model inside.
    """

    def __init__(self, path: str | Path, model_id: str, dim: int) -> None:
        self.db = Database(path)
        self.path = self.db.path
        self.model_id = model_id
        self.dim = dim
        self._cache: dict[str, Centroids] = {}
        self._cache_lock = threading.Lock()
        self._check_model()

    def _check_model(self) -> None:
        rows = self.db.conn().execute(
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

    def create(
        self,
        tenant: str,
        name: str,
        metadata: dict[str, Any] | None = None,
        speaker_id: str | None = None,
        actor: str = LIBRARY_ACTOR,
    ) -> Speaker:
        """Add a speaker with no enrollments; ``speaker_id`` defaults to a random hex id."""
        speaker_id = speaker_id or uuid.uuid4().hex
        now = time.time()
        try:
            with self.db.write(tenant, actor, "create_speaker", speaker_id) as conn:
                conn.execute(
                    "INSERT INTO speakers (tenant, id, name, created, updated, model_id, metadata) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (tenant, speaker_id, name, now, now, self.model_id, json.dumps(metadata or {}, allow_nan=False)),
                )
        except sqlite3.IntegrityError:
            raise SpeakerExists(f"speaker {speaker_id!r} already exists") from None
        return self.get(tenant, speaker_id, with_enrollments=False)

    def get(self, tenant: str, speaker_id: str, with_enrollments: bool = True) -> Speaker:
        conn = self.db.conn()
        row = conn.execute(
            f"SELECT {SPEAKER_COLUMNS} FROM speakers WHERE tenant = ? AND id = ?", (tenant, speaker_id)
        ).fetchone()
        if row is None:
            raise _not_found(speaker_id)
        speaker = speaker_from_row(row)
        if not with_enrollments:
            return speaker
        rows = conn.execute(
            f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE tenant = ? AND speaker_id = ? ORDER BY created, id",
            (tenant, speaker_id),
        )
        return SpeakerDetail(**speaker.model_dump(), enrollments=[Enrollment(**dict(r)) for r in rows])

    def list_speakers(self, tenant: str, limit: int = 100, offset: int = 0) -> tuple[list[Speaker], int]:
        """A page of the tenant's speakers ordered by creation time, and their total count."""
        conn = self.db.conn()
        rows = conn.execute(
            f"SELECT {SPEAKER_COLUMNS} FROM speakers WHERE tenant = ? ORDER BY created, id LIMIT ? OFFSET ?",
            (tenant, limit, offset),
        )
        speakers = [speaker_from_row(r) for r in rows]
        return speakers, conn.execute("SELECT count(*) FROM speakers WHERE tenant = ?", (tenant,)).fetchone()[0]

    def delete(self, tenant: str, speaker_id: str, actor: str = LIBRARY_ACTOR) -> None:
        """Remove a speaker and its enrollments (one transaction)."""
        with self.db.write(tenant, actor, "delete_speaker", speaker_id) as conn:
            deleted = conn.execute("DELETE FROM speakers WHERE tenant = ? AND id = ?", (tenant, speaker_id))
            if deleted.rowcount == 0:
                raise _not_found(speaker_id)

    def counts(self) -> tuple[int, int]:
        """(speakers, enrollments) in the database, all tenants together."""
        conn = self.db.conn()
        return (
            conn.execute("SELECT count(*) FROM speakers").fetchone()[0],
            conn.execute("SELECT count(*) FROM enrollments").fetchone()[0],
        )

    # ---- enrollments ----------------------------------------------------------------------------

    def enroll(
        self, tenant: str, speaker_id: str, items: list[NewEnrollment], actor: str = LIBRARY_ACTOR
    ) -> tuple[Speaker, list[Enrollment]]:
        """Add utterances to a speaker and update its model, all in one transaction (all or nothing)."""
        now = time.time()
        added = [
            Enrollment(
                id=uuid.uuid4().hex,
                created=now,
                filename=it.filename,
                sha256=it.sha256,
                duration_seconds=it.duration_seconds,
                speech_seconds=it.speech_seconds,
            )
            for it in items
        ]
        target = f"{speaker_id}: {len(added)} utterance(s)"
        with self.db.write(tenant, actor, "enroll", target) as conn:
            self._require(conn, tenant, speaker_id)
            blobs = [self._blob(it.dvector) for it in items]
            conn.executemany(
                f"INSERT INTO enrollments ({ENROLLMENT_COLUMNS}, tenant, speaker_id, dvector) VALUES ({'?, ' * 8}?)",
                [(*e.model_dump().values(), tenant, speaker_id, b) for e, b in zip(added, blobs, strict=True)],
            )
            self._refresh(conn, tenant, speaker_id, now)
        return self.get(tenant, speaker_id, with_enrollments=False), added

    def delete_enrollment(
        self, tenant: str, speaker_id: str, enrollment_id: str, actor: str = LIBRARY_ACTOR
    ) -> Speaker:
        """Remove one utterance and update the speaker's model (one transaction)."""
        with self.db.write(tenant, actor, "delete_enrollment", f"{speaker_id}/{enrollment_id}") as conn:
            self._require(conn, tenant, speaker_id)
            deleted = conn.execute(
                "DELETE FROM enrollments WHERE id = ? AND tenant = ? AND speaker_id = ?",
                (enrollment_id, tenant, speaker_id),
            )
            if deleted.rowcount == 0:
                raise SpeakerNotFound(f"speaker {speaker_id!r} has no enrollment {enrollment_id!r}")
            self._refresh(conn, tenant, speaker_id, time.time())
        return self.get(tenant, speaker_id, with_enrollments=False)

    @staticmethod
    def _require(conn: sqlite3.Connection, tenant: str, speaker_id: str) -> None:
        if conn.execute("SELECT 1 FROM speakers WHERE tenant = ? AND id = ?", (tenant, speaker_id)).fetchone() is None:
            raise _not_found(speaker_id)

    def _blob(self, dvector: np.ndarray) -> bytes:
        vec = np.asarray(dvector, dtype=np.float32)
        if vec.shape != (self.dim,) or not np.isfinite(vec).all():
            raise ValueError(f"expected a finite ({self.dim},) d-vector, got shape {vec.shape}")
        return vec.tobytes()

    def _refresh(self, conn: sqlite3.Connection, tenant: str, speaker_id: str, now: float) -> None:
        """Recompute a speaker's centroid and counts from its enrollment rows (inside the caller's transaction)."""
        rows = conn.execute(
            "SELECT dvector, speech_seconds FROM enrollments WHERE tenant = ? AND speaker_id = ?", (tenant, speaker_id)
        ).fetchall()
        centroid = None
        if rows:
            mean = np.mean([vector_from_blob(r["dvector"], self.dim) for r in rows], axis=0, dtype=np.float64)
            centroid = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32).tobytes()
        conn.execute(
            "UPDATE speakers SET centroid = ?, n_utterances = ?, speech_seconds = ?, updated = ? "
            "WHERE tenant = ? AND id = ?",
            (centroid, len(rows), float(sum(r["speech_seconds"] for r in rows)), now, tenant, speaker_id),
        )

    # ---- models for scoring ---------------------------------------------------------------------

    def centroid(self, tenant: str, speaker_id: str) -> np.ndarray | None:
        """A speaker's ``(D,)`` unit-norm model, or None before its first enrollment."""
        row = (
            self.db.conn()
            .execute("SELECT centroid FROM speakers WHERE tenant = ? AND id = ?", (tenant, speaker_id))
            .fetchone()
        )
        if row is None:
            raise _not_found(speaker_id)
        return None if row["centroid"] is None else vector_from_blob(row["centroid"], self.dim)

    def centroids(self, tenant: str) -> Centroids:
        """The tenant's enrolled speakers' models, cached until the next write (by any process) to the database."""
        generation = self.db.generation()
        with self._cache_lock:
            cached = self._cache.get(tenant)
            if cached is not None and cached.generation == generation:
                return cached
        conn = self.db.conn()
        conn.execute("BEGIN")  # one snapshot: the generation and the rows must agree
        try:
            generation = self.db.generation()
            rows = conn.execute(
                "SELECT id, name, centroid FROM speakers WHERE tenant = ? AND centroid IS NOT NULL ORDER BY id",
                (tenant,),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        matrix = (
            np.stack([vector_from_blob(r["centroid"], self.dim) for r in rows]) if rows else np.zeros((0, self.dim))
        )
        cache = Centroids(generation, [r["id"] for r in rows], [r["name"] for r in rows], matrix.astype(np.float32))
        with self._cache_lock:
            self._cache[tenant] = cache
        return cache
