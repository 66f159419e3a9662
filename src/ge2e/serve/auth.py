"""API keys: bearer tokens from ``GE2E_API_KEYS`` (comma-separated) and/or a key file, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

from ge2e.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_VAR = "GE2E_API_KEYS"
MIN_KEY_LENGTH = 16  # shorter keys are guessable; accepted, but logged as a warning


def load_keys(key_file: str | Path | None = None, environ: dict[str, str] | None = None) -> list[str]:
    """Keys from ``$GE2E_API_KEYS`` plus ``key_file`` (one key per line; blank lines and ``#`` comments skipped).

    Raises:
        ConfigError: the key file cannot be read, a key contains whitespace, or no key is configured at all
            (the service never runs open by accident).
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
    if not keys:
        raise ConfigError(f"no API key configured: set {ENV_VAR}=key1,key2 or pass --api-key-file")
    return keys


class KeyChecker:
    """Constant-time membership test of a presented token against the configured keys.

    Keys are compared as SHA-256 digests, so the comparison time depends neither on the key lengths nor on how
    many leading characters match, and every key is compared (no early exit that reveals which one matched).
    """

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one API key is required")
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def check(self, token: str | None) -> bool:
        presented = hashlib.sha256((token or "").encode("utf-8", "surrogateescape")).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched and bool(token)
