"""Speaker verification as an HTTP service (``pip install ge2e[serve]``; run it with ``ge2e serve``).

Enroll a speaker once (the service keeps d-vectors, never audio), then verify or identify from new audio.
See docs/serve.md for the API.
"""

from ge2e.serve.app import ServeConfig, create_app, model_id
from ge2e.serve.store import SpeakerStore

__all__ = ["ServeConfig", "SpeakerStore", "create_app", "model_id"]
