"""Speakers and their enrollments, always within the caller's tenant."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from ge2e.serve.body import read_json
from ge2e.serve.records import NewEnrollment, Speaker, SpeakerDetail
from ge2e.serve.routes import Enroller, Svc, Verifier
from ge2e.serve.schemas import (
    ERRORS,
    ERRORS_409,
    EnrollmentId,
    EnrollResult,
    SpeakerCreate,
    SpeakerId,
    SpeakerPage,
    audio_body,
    json_body,
)

MAX_OFFSET = 2**31 - 1  # far past any real page; keeps the value a plain SQLite integer

router = APIRouter(prefix="/v1/speakers", tags=["speakers"], responses=ERRORS)


@router.post("", status_code=201, response_model=Speaker, responses=ERRORS_409, openapi_extra=json_body(SpeakerCreate))
async def create_speaker(request: Request, who: Enroller, svc: Svc) -> Speaker:
    """Create a speaker with no enrollments yet (409 when the id is taken in your tenant)."""
    body = await read_json(request, SpeakerCreate, svc.config.read_timeout_s)
    speaker = await run_in_threadpool(svc.store.create, who.tenant, body.name, body.metadata, body.id, who.key_id)
    return speaker


@router.get("", response_model=SpeakerPage)
async def list_speakers(
    who: Verifier,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> SpeakerPage:
    """Your tenant's speakers in creation order, a page at a time."""
    speakers, total = await run_in_threadpool(svc.store.list_speakers, who.tenant, limit, offset)
    return SpeakerPage(speakers=speakers, total=total, limit=limit, offset=offset)


@router.get("/{speaker_id}", response_model=SpeakerDetail)
async def get_speaker(speaker_id: SpeakerId, who: Verifier, svc: Svc) -> SpeakerDetail:
    """A speaker and the metadata of its enrollment utterances."""
    speaker = await run_in_threadpool(svc.store.get, who.tenant, speaker_id)
    return speaker


@router.delete("/{speaker_id}", status_code=204, response_class=Response)
async def delete_speaker(speaker_id: SpeakerId, who: Enroller, svc: Svc) -> Response:
    """Delete a speaker and every d-vector enrolled for it."""
    await run_in_threadpool(svc.store.delete, who.tenant, speaker_id, who.key_id)
    return Response(status_code=204)


@router.post(
    "/{speaker_id}/enrollments", status_code=201, response_model=EnrollResult, openapi_extra=audio_body(many=True)
)
async def enroll(speaker_id: SpeakerId, request: Request, who: Enroller, svc: Svc) -> EnrollResult:
    """Add enrollment audio: the d-vectors are stored and the speaker model updated atomically (all files or
    none). The audio itself is not kept."""
    await run_in_threadpool(svc.store.get, who.tenant, speaker_id, False)  # 404 before reading any audio
    embedded = await svc.embed(request, svc.config.max_enroll_files)
    items = [
        NewEnrollment(
            e.dvector,
            e.upload.filename,
            hashlib.sha256(e.upload.data).hexdigest(),
            e.duration_seconds,
            e.speech_seconds,
        )
        for e in embedded
    ]
    speaker, added = await run_in_threadpool(svc.store.enroll, who.tenant, speaker_id, items, who.key_id)
    return EnrollResult(speaker=speaker, added=added)


@router.delete("/{speaker_id}/enrollments/{enrollment_id}", response_model=Speaker)
async def delete_enrollment(speaker_id: SpeakerId, enrollment_id: EnrollmentId, who: Enroller, svc: Svc) -> Speaker:
    """Remove one enrollment utterance and update the speaker model."""
    speaker = await run_in_threadpool(svc.store.delete_enrollment, who.tenant, speaker_id, enrollment_id, who.key_id)
    return speaker
