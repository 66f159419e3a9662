"""Who is calling, from the headers alone: the bearer key, its role, and its rate limit.

The dependencies here run before any request body is read, so an unauthenticated client is answered 401, a key
without the role 403 and a key over its rate 429, whatever (and however slowly) it sends after its headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ge2e.errors import ConfigError
from ge2e.serve.errors import ApiError
from ge2e.serve.keys import Principal, Role

logger = logging.getLogger(__name__)

ENV_VAR = "GE2E_API_KEYS"
MIN_KEY_LENGTH = 16  # shorter keys are guessable; accepted, but logged as a warning


def load_keys(key_file: str | Path | None = None, environ: dict[str, str] | None = None) -> list[str]:
    """The default tenant's admin keys: ``$GE2E_API_KEYS`` plus ``key_file`` (one key per line; blank lines and
    ``#`` comments skipped). Empty when neither is set: the database's keys may be all there is.

    Raises:
        ConfigError: the key file cannot be read or a key contains whitespace.
    """
    env = os.environ if environ is None else environ
    keys = [k.strip() for k in env.get(ENV_VAR, "").split(",") if k.strip()]
    if key_file is not None:
        path = Path(key_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read API key file ({exc})") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for i, key in enumerate(keys, start=1):
        if any(c.isspace() for c in key):
            raise ConfigError(f"API key #{i} contains whitespace")
        if len(key) < MIN_KEY_LENGTH:
            logger.warning("API key #%d is shorter than %d characters and may be guessed", i, MIN_KEY_LENGTH)
    return keys


_bearer = HTTPBearer(auto_error=False, description="an API key (ge2e serve keys add, or GE2E_API_KEYS)")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, or 401; then its rate limit (429). Reads headers only."""
    service = request.app.state.service
    principal = None
    if credentials is not None and credentials.credentials:
        principal = await run_in_threadpool(service.keys.authenticate, credentials.credentials)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing, invalid or revoked API key; send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    service.rates.take(principal.key_id, principal.rate_per_minute)
    request.state.principal = principal
    return principal


async def optional_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    """The caller when it sent a valid key, else None (for routes open to anyone that tell keyholders more)."""
    if credentials is None or not credentials.credentials:
        return None
    return await run_in_threadpool(request.app.state.service.keys.authenticate, credentials.credentials)


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, or 403 when its key's role does not include ``role``."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.role.includes(role):
            raise ApiError(403, "forbidden", f"this route needs a key with the {role.value!r} role")
        return principal

    return check
