"""Service routes: health (open), metrics, and a tenant's keys and audit log (admin keys)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ge2e import __version__
from ge2e.serve.auth import optional_principal
from ge2e.serve.body import read_json
from ge2e.serve.errors import error_body
from ge2e.serve.keys import Principal
from ge2e.serve.routes import Admin, Svc
from ge2e.serve.schemas import (
    ERRORS,
    AuditEntry,
    AuditPage,
    Health,
    KeyCreate,
    KeyCreated,
    KeyId,
    KeyList,
    json_body,
)

logger = logging.getLogger(__name__)

router = APIRouter(tags=["service"], responses=ERRORS)


# the key is optional here: FastAPI lists the bearer scheme this route reads, and an empty requirement added to it
# tells clients (and schemathesis) that no key is needed
@router.get(
    "/health",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: ERRORS[503]},
    openapi_extra={"security": [{}]},
)
async def health(svc: Svc, who: Annotated[Principal | None, Depends(optional_principal)]) -> Health | JSONResponse:
    """Liveness and readiness: 200 when the database answers, else 503. Open to anyone; only a valid key also
    sees the version and the model id."""
    try:
        await run_in_threadpool(svc.store.counts)
    except Exception as exc:
        logger.error("health check failed: %s", exc)
        retry = {"Retry-After": str(svc.config.retry_after_s)}
        return JSONResponse(error_body(503, "unavailable", "database unavailable"), status_code=503, headers=retry)
    if who is None:
        return Health(status="ok")
    return Health(status="ok", version=__version__, model_id=svc.model_id)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(_: Admin, svc: Svc) -> Response:
    """Prometheus text exposition: request counts and latencies, inference time, queue, database size (all
    tenants together, hence admin keys only)."""
    gauges = await run_in_threadpool(svc.gauges)
    return PlainTextResponse(svc.metrics.render(gauges), media_type="text/plain; version=0.0.4")


@router.get("/v1/keys", response_model=KeyList)
async def list_keys(who: Admin, svc: Svc) -> KeyList:
    """Your tenant's keys, revoked ones included (never their secrets)."""
    keys = await run_in_threadpool(svc.keys.list, who.tenant)
    return KeyList(keys=keys)


@router.post("/v1/keys", status_code=201, response_model=KeyCreated, openapi_extra=json_body(KeyCreate))
async def create_key(request: Request, who: Admin, svc: Svc) -> KeyCreated:
    """A new key of your tenant; the answer holds its secret, shown this once."""
    body = await read_json(request, KeyCreate, svc.config.read_timeout_s)
    key, token = await run_in_threadpool(
        svc.keys.add, who.tenant, body.role, body.name, body.rate_per_minute, who.key_id
    )
    return KeyCreated(**key.model_dump(), key=token)


@router.delete("/v1/keys/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: KeyId, who: Admin, svc: Svc) -> Response:
    """Revoke one of your tenant's keys, from the next request on."""
    await run_in_threadpool(svc.keys.revoke, key_id, who.tenant, who.key_id)
    return Response(status_code=204)


@router.get("/v1/audit", response_model=AuditPage)
async def audit(
    who: Admin,
    svc: Svc,
    after: Annotated[int, Query(ge=0, le=2**62, description="entries after this sequence number")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Who created, enrolled, deleted in your tenant (and created or revoked its keys), oldest first."""
    rows = await run_in_threadpool(svc.store.db.audit_log, who.tenant, after, limit)
    return AuditPage(entries=[AuditEntry(**r) for r in rows])
