"""Whole recordings: who speaks when (diarization), and where one of your enrolled speakers talks (search)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ge2e.diarization.clustering import tuned
from ge2e.diarization.pipeline import DEFAULT_MAX_SPEAKERS, SpeechWindows, diarize_speech, speaker_range
from ge2e.diarization.rttm import format_rttm
from ge2e.diarization.search import search_speech, search_threshold
from ge2e.errors import Ge2eError
from ge2e.serve.errors import ApiError
from ge2e.serve.routes import Svc, Verifier
from ge2e.serve.schemas import (
    ERRORS,
    ERRORS_409,
    DiarizeResult,
    SearchResult,
    SpeakerId,
    TimeRegion,
    Turn,
    audio_body,
)

router = APIRouter(prefix="/v1", tags=["recordings"], responses=ERRORS)
Speakers = Annotated[int | None, Query(ge=1, le=DEFAULT_MAX_SPEAKERS)]


@router.post(
    "/speakers/{speaker_id}/search",
    response_model=SearchResult,
    responses=ERRORS_409,
    openapi_extra=audio_body(many=False),
)
async def search(
    speaker_id: SpeakerId,
    request: Request,
    who: Verifier,
    svc: Svc,
    threshold: Annotated[float | None, Query(ge=-1, le=1, allow_inf_nan=False, description="default: tuned")] = None,
) -> SearchResult:
    """Where in this recording does the speaker talk? Its speech segments scored against the speaker model, and
    the regions at or above the threshold (default: the model's, calibrated on dev conversations)."""
    centroid = await run_in_threadpool(svc.store.centroid, who.tenant, speaker_id)
    if centroid is None:
        raise ApiError(409, "not_enrolled", f"speaker {speaker_id!r} has no enrollment audio yet")
    used = search_threshold(svc.model) if threshold is None else threshold
    found, _ = await svc.recording(request, lambda speech: search_speech(speech, centroid, used))
    as_list = lambda regions: [TimeRegion(start=r.start, end=r.end, score=r.score) for r in regions]  # noqa: E731
    return SearchResult(
        speaker_id=speaker_id,
        threshold=used,
        regions=as_list(found.regions),
        segments=as_list(found.segments),
        duration_seconds=found.duration_s,
        speech_seconds=found.speech_s,
    )


@router.post("/diarize", response_model=DiarizeResult, openapi_extra=audio_body(many=False))
async def diarize(
    request: Request,
    who: Verifier,
    svc: Svc,
    num_speakers: Speakers = None,
    min_speakers: Speakers = None,
    max_speakers: Speakers = None,
) -> DiarizeResult:
    """Who speaks when: speaker turns of the recording (the model's tuned diarization, as ``ge2e diarize``)."""
    try:
        lo, hi = speaker_range(num_speakers, min_speakers, max_speakers)
    except Ge2eError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    tuning = tuned(svc.model)

    def turns(speech: SpeechWindows) -> tuple[list, SpeechWindows]:
        return diarize_speech(speech, num_speakers, min_speakers, max_speakers, tuning=tuning), speech

    (segments, speech), upload = await svc.recording(request, turns)
    uri = "_".join(PurePath(upload.filename or "audio").stem.split()) or "audio"
    return DiarizeResult(
        speakers=len({s.speaker for s in segments}),
        estimated=lo < hi,
        turns=[Turn(start=s.start, end=s.end, speaker=s.speaker) for s in segments],
        rttm=format_rttm({uri: segments}),
        duration_seconds=speech.duration_s,
        speech_seconds=speech.speech_s,
    )
