"""Verify, identify and embed: audio in, scores out, against the caller's tenant's speakers only."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from ge2e.serve.errors import ApiError
from ge2e.serve.routes import Svc, Verifier
from ge2e.serve.schemas import (
    ERRORS,
    ERRORS_409,
    Candidate,
    EmbedResult,
    IdentifyResult,
    SpeakerId,
    VerifyResult,
    audio_body,
)
from ge2e.serve.service import decision

router = APIRouter(prefix="/v1", tags=["scoring"], responses=ERRORS)
Threshold = Annotated[float | None, Query(ge=-1, le=1, allow_inf_nan=False, description="overrides the service's")]


@router.post(
    "/speakers/{speaker_id}/verify",
    response_model=VerifyResult,
    responses=ERRORS_409,
    openapi_extra=audio_body(many=False),
)
async def verify(
    speaker_id: SpeakerId, request: Request, who: Verifier, svc: Svc, threshold: Threshold = None
) -> VerifyResult:
    """Is this audio the claimed speaker? Cosine score against the speaker model, and the decision."""
    centroid = await run_in_threadpool(svc.store.centroid, who.tenant, speaker_id)
    if centroid is None:
        raise ApiError(409, "not_enrolled", f"speaker {speaker_id!r} has no enrollment audio yet")
    (probe,) = await svc.embed(request)
    score = float(np.dot(centroid.astype(np.float64), probe.dvector))
    used = svc.config.threshold if threshold is None else threshold
    return VerifyResult(
        speaker_id=speaker_id,
        score=score,
        threshold=used,
        decision=decision(score, used),
        speech_seconds=probe.speech_seconds,
        short=probe.short,
    )


@router.post("/identify", response_model=IdentifyResult, openapi_extra=audio_body(many=False))
async def identify(
    request: Request,
    who: Verifier,
    svc: Svc,
    top_k: Annotated[int, Query(ge=1, le=100)] = 5,
    threshold: Threshold = None,
) -> IdentifyResult:
    """Which of your enrolled speakers sound most like this audio? The ``top_k`` best, best first."""
    (probe,) = await svc.embed(request)
    models = await run_in_threadpool(svc.store.centroids, who.tenant)
    scores = models.matrix.astype(np.float64) @ probe.dvector
    best = np.argsort(-scores, kind="stable")[:top_k]
    used = svc.config.threshold if threshold is None else threshold
    candidates = [
        Candidate(
            speaker_id=models.ids[i],
            name=models.names[i],
            score=float(scores[i]),
            decision=decision(float(scores[i]), used),
        )
        for i in best
    ]
    return IdentifyResult(
        candidates=candidates,
        threshold=used,
        n_speakers=len(models.ids),
        speech_seconds=probe.speech_seconds,
        short=probe.short,
    )


@router.post("/embed", response_model=EmbedResult, openapi_extra=audio_body(many=False))
async def embed(request: Request, who: Verifier, svc: Svc) -> EmbedResult:
    """The audio's d-vector (unit norm), for scoring on your side."""
    (probe,) = await svc.embed(request)
    return EmbedResult(
        embedding=probe.dvector.tolist(),
        dim=len(probe.dvector),
        model_id=svc.model_id,
        speech_seconds=probe.speech_seconds,
    )
