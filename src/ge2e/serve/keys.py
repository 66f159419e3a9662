"""API keys: each belongs to a tenant and has a role; only their SHA-256 digests are stored.

Keys are random 256-bit tokens, so a plain SHA-256 digest is enough to make a stolen database useless for signing
in (a slow password hash would only slow every request down). Keys from ``GE2E_API_KEYS`` or a key file, the
setup before tenants existed, are admin keys of the ``default`` tenant and are never written to the database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ge2e.errors import ConfigError
from ge2e.serve.db import DEFAULT_TENANT, Database

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KEY_ID_PATTERN = r"^[a-z0-9-]{1,32}$"
TOKEN_PREFIX = "ge2e_"
MAX_RATE_PER_MINUTE = 1_000_000
CLI_ACTOR = "cli"


class Role(StrEnum):
    """What a key may do; each role includes the ones before it."""

    VERIFY = "verify"  # verify, identify, embed, read speakers
    ENROLL = "enroll"  # also create, enroll, delete speakers
    ADMIN = "admin"  # also manage its tenant's keys, read its audit log, /metrics

    def includes(self, other: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(other)


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the key's public id, its tenant, role and rate limit (None: the service default)."""

    key_id: str
    tenant: str
    role: Role
    rate_per_minute: int | None = None


class ApiKey(BaseModel):
    """A stored key's public record (never the secret)."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    role: Role
    name: str
    created: float
    revoked: float | None
    rate_per_minute: int | None


class KeyNotFound(ConfigError):
    """No key with this id (in this tenant)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def check_new_key(tenant: str, rate_per_minute: int | None) -> None:
    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise ConfigError(f"tenant {tenant!r} must match {TENANT_PATTERN}")
    if rate_per_minute is not None and not 1 <= rate_per_minute <= MAX_RATE_PER_MINUTE:
        raise ConfigError(f"rate limit must be 1..{MAX_RATE_PER_MINUTE} requests per minute")


class KeyStore:
    """The keys of one database, plus the environment's default-tenant admin keys (``legacy``)."""

    def __init__(self, db: Database, legacy: list[str] | tuple[str, ...] = ()) -> None:
        self.db = db
        # digests compared with compare_digest, every one of them: the time taken does not tell which matched
        self._legacy = [(_digest(k), f"env-{hashlib.sha256(k.encode()).hexdigest()[:8]}") for k in legacy]

    def add(
        self,
        tenant: str,
        role: Role,
        name: str = "",
        rate_per_minute: int | None = None,
        actor: str = CLI_ACTOR,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns its record and the secret token, which is shown this once and never stored."""
        check_new_key(tenant, rate_per_minute)
        key_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            role=role,
            name=name,
            created=time.time(),
            revoked=None,
            rate_per_minute=rate_per_minute,
        )
        with self.db.write(tenant, actor, "create_key", f"{key_id} ({key.role})") as conn:
            conn.execute(
                "INSERT INTO api_keys (id, tenant, role, name, digest, rate_per_minute, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, tenant, key.role.value, name, _digest(token), rate_per_minute, key.created),
            )
        return key, token

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key, or one tenant's, oldest first (revoked ones too: they explain the audit log)."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        rows = self.db.conn().execute(
            f"SELECT id, tenant, role, name, created, revoked, rate_per_minute FROM api_keys {where} "
            "ORDER BY created, id",
            args,
        )
        return [ApiKey(**dict(r)) for r in rows]

    def revoke(self, key_id: str, tenant: str | None = None, actor: str = CLI_ACTOR) -> None:
        """Revoke a key now (of ``tenant`` only, when given); revoking twice is not an error."""
        row = self.db.conn().execute("SELECT tenant FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise KeyNotFound(f"key {key_id!r} not found")
        with self.db.write(row["tenant"], actor, "revoke_key", key_id) as conn:
            conn.execute("UPDATE api_keys SET revoked = coalesce(revoked, ?) WHERE id = ?", (time.time(), key_id))

    def has_keys(self) -> bool:
        """Whether any key would let someone in."""
        if self._legacy:
            return True
        return self.db.conn().execute("SELECT 1 FROM api_keys WHERE revoked IS NULL LIMIT 1").fetchone() is not None

    def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer token stands for, or None for an unknown or revoked one."""
        presented = _digest(token)
        legacy = None
        for digest, key_id in self._legacy:
            if hmac.compare_digest(presented, digest):
                legacy = key_id
        if legacy is not None:
            return Principal(legacy, DEFAULT_TENANT, Role.ADMIN)
        # the lookup is by digest: a timing difference could at most reveal digest bytes, not the secret
        row = (
            self.db.conn()
            .execute(
                "SELECT id, tenant, role, rate_per_minute FROM api_keys WHERE digest = ? AND revoked IS NULL",
                (presented,),
            )
            .fetchone()
        )
        return None if row is None else Principal(row["id"], row["tenant"], Role(row["role"]), row["rate_per_minute"])
