"""Speaker verification as an HTTP service (``pip install ge2e[serve]``; run it with ``ge2e serve``).

Enroll a speaker once (the service keeps d-vectors, never audio), then verify or identify from new audio. Keys
belong to tenants and have roles; a tenant sees only its own speakers. See docs/serve.md for the API.
"""

from ge2e.serve.app import create_app
from ge2e.serve.service import ServeConfig
from ge2e.serve.store import SpeakerStore

__all__ = ["ServeConfig", "SpeakerStore", "create_app"]
