"""The service's one SQLite file: connections, write transactions with their audit row, schema and migrations.

Durability contract: WAL journal with ``synchronous=FULL``, so a committed transaction survives a power cut; every
write runs in one ``BEGIN IMMEDIATE`` transaction, so a process killed mid-request leaves the previous state. The
audit row of a change is written in the change's own transaction: the log never misses or invents a change.

Schema version in ``PRAGMA user_version``; a database from a newer ge2e is refused, not guessed at. Version 1 (one
namespace) is upgraded in place to version 2, its speakers becoming the ``default`` tenant's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ge2e.errors import Ge2eError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another writer's lock before failing
DEFAULT_TENANT = "default"

_TABLES = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE speakers (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,                        -- unique within its tenant only
    name TEXT NOT NULL,
    created REAL NOT NULL,                   -- unix time, seconds
    updated REAL NOT NULL,
    model_id TEXT NOT NULL,                  -- fingerprint of the encoder its d-vectors come from
    n_utterances INTEGER NOT NULL DEFAULT 0,
    speech_seconds REAL NOT NULL DEFAULT 0,
    centroid BLOB,                           -- float32 (D,), unit norm; NULL until the first enrollment
    metadata TEXT NOT NULL DEFAULT '{}',     -- JSON object from the client (standard JSON: no NaN)
    PRIMARY KEY (tenant, id)
);
CREATE TABLE enrollments (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    speaker_id TEXT NOT NULL,
    created REAL NOT NULL,
    filename TEXT,
    sha256 TEXT NOT NULL,                    -- of the uploaded bytes: lets clients spot duplicates
    duration_seconds REAL NOT NULL,
    speech_seconds REAL NOT NULL,
    dvector BLOB NOT NULL,                   -- float32 (D,), unit norm
    FOREIGN KEY (tenant, speaker_id) REFERENCES speakers(tenant, id) ON DELETE CASCADE
);
CREATE INDEX enrollments_speaker ON enrollments(tenant, speaker_id);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,                     -- public handle, shown in lists and the audit log
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE,             -- SHA-256 of the secret; the secret itself is never stored
    rate_per_minute INTEGER,                 -- NULL: the service's default
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,                     -- key id, or 'cli'
    action TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX audit_tenant ON audit(tenant, seq);
"""

_V1_TO_V2 = f"""
ALTER TABLE speakers RENAME TO speakers_v1;
ALTER TABLE enrollments RENAME TO enrollments_v1;
DROP INDEX enrollments_speaker;
ALTER TABLE meta RENAME TO meta_v1;
{_TABLES};
INSERT INTO meta SELECT * FROM meta_v1;
INSERT INTO speakers SELECT '{DEFAULT_TENANT}', id, name, created, updated, model_id, n_utterances, speech_seconds,
    centroid, metadata FROM speakers_v1;
INSERT INTO enrollments SELECT id, '{DEFAULT_TENANT}', speaker_id, created, filename, sha256, duration_seconds,
    speech_seconds, dvector FROM enrollments_v1;
DROP TABLE enrollments_v1;
DROP TABLE speakers_v1;
DROP TABLE meta_v1
"""


class StoreError(Ge2eError):
    """The database cannot be opened or used (not SQLite, newer schema, another model's d-vectors)."""


class Database:
    """Thread-safe access to the service's SQLite file; each thread gets its own connection.

    Raises:
        StoreError: a directory, not a SQLite file, a foreign SQLite file, or a schema newer than this ge2e.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a database file")
        try:
            _make_private(self.path)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the database file ({exc.strerror})") from None
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot use database ({exc})") from None

    def conn(self) -> sqlite3.Connection:
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
    def write(self, tenant: str, actor: str, action: str, target: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, audited. IMMEDIATE takes the write lock up front, so read-modify-write cannot
        race; the generation counter tells readers of cached state that something changed."""
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute(
                "INSERT INTO audit (time, tenant, actor, action, target) VALUES (?, ?, ?, ?, ?)",
                (time.time(), tenant, actor, action, target),
            )
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def generation(self) -> int:
        return int(self.conn().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def audit_log(self, tenant: str, after: int = 0, limit: int = 100) -> list[dict[str, object]]:
        """A tenant's audit entries with ``seq > after``, oldest first."""
        rows = self.conn().execute(
            "SELECT seq, time, actor, action, target FROM audit WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
            (tenant, after, limit),
        )
        return [dict(r) for r in rows]

    def _migrate(self) -> None:
        conn = self.conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: database schema version {version} is newer than this ge2e reads ({SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(f"{self.path}: SQLite file without a ge2e schema; use a new file for --db")
            script = f"{_TABLES}; INSERT INTO meta VALUES ('generation', '0')"
        else:
            script = _V1_TO_V2
        # foreign keys off while tables are swapped (a pragma, so outside the transaction); one transaction, so a
        # crash leaves the old schema or all of the new one
        conn.execute("PRAGMA foreign_keys=OFF")
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("PRAGMA foreign_keys=ON")


def _make_private(path: Path) -> None:
    """Create ``path`` (and its missing folders) readable by its owner only, before SQLite opens it.

    The file holds every tenant's d-vectors, the key digests and the audit log. SQLite creates the ``-wal`` and
    ``-shm`` files with the database file's mode, so a 0600 database gives 0600 companions. An existing file with
    group or other bits (from an older ge2e, which let the umask decide) is tightened, with a warning.
    """
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask; the folder must not be wider either
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for file in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))):
            mode = file.stat().st_mode if file.exists() else 0
            if mode & 0o077 and file.stat().st_uid == os.geteuid():
                logger.warning("%s: was readable by others (mode %s); now owner-only (0600)", file, oct(mode & 0o777))
                os.chmod(file, stat.S_IRUSR | stat.S_IWUSR)
        return
    os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask took away
    os.close(fd)


def integrity_check(path: str | Path) -> str:
    """``PRAGMA integrity_check`` of a database file: ``"ok"`` or SQLite's first problem."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
