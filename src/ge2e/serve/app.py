"""The HTTP service: a thin FastAPI layer over a speaker encoder, a :class:`~ge2e.serve.store.SpeakerStore` and
its API keys. Routes live under ``/v1``; each needs ``Authorization: Bearer <key>`` with a role that allows it, and
sees only its key's tenant. ``/health``, ``/openapi.json``, ``/docs`` and the console's static files (``/ui``) are
open. Every error is JSON:
``{"error": {"status", "code", "message"}}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ge2e import __version__
from ge2e.serve import console
from ge2e.serve.errors import install_error_handlers
from ge2e.serve.keys import KeyStore
from ge2e.serve.middleware import CloseUnreadBody, RequestLimit, RequestMetrics
from ge2e.serve.routes import admin, recordings, scoring, speakers
from ge2e.serve.service import Encoder, ServeConfig, Service
from ge2e.serve.store import SpeakerStore


def create_app(model: Encoder, store: SpeakerStore, keys: list[str], config: ServeConfig, model_id: str) -> FastAPI:
    """The ASGI application (run it with uvicorn; ``ge2e serve`` does).

    Args:
        model: any :class:`ge2e.inference.Encoder`; its ``audio`` config is the front end applied to uploads.
        store: the speaker database, opened for the same ``model_id``; its API keys are accepted.
        keys: admin keys of the ``default`` tenant besides the database's (``GE2E_API_KEYS``, a key file).
        config: limits and the decision threshold.
        model_id: the id of ``model``'s d-vectors (:func:`ge2e.inference.model_fingerprint`, 16 digits).
    """
    svc = Service(model, store, KeyStore(store.db, keys), config, model_id)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await svc.limiter.run(svc.warm_up)  # so the first client does not pay for loading the VAD model
        yield
        svc.limiter.shutdown()

    app = FastAPI(
        title="ge2e speaker verification",
        version=__version__,
        lifespan=lifespan,
        description="Enroll speakers once, then verify or identify them from audio. Send `Authorization: Bearer "
        "<API key>` on every route but /health and the docs; a key sees only its tenant's speakers.",
        redoc_url=None,
    )
    app.state.service = svc
    install_error_handlers(app)
    for module in (admin, speakers, scoring, recordings):
        app.include_router(module.router)
    console.mount(app)
    app.add_middleware(CloseUnreadBody)
    app.add_middleware(RequestLimit, gate=svc.requests)
    app.add_middleware(RequestMetrics, metrics=svc.metrics)  # added last = outermost: it sees every answer
    return app
