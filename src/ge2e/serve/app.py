"""The HTTP service: a thin FastAPI layer over a speaker encoder and a :class:`~ge2e.serve.store.SpeakerStore`.

Routes live under ``/v1``; all of them, and ``/metrics``, need ``Authorization: Bearer <key>``. ``/health``,
``/openapi.json`` and ``/docs`` are open. Every error is JSON: ``{"error": {"status", "code", "message"}}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ge2e import __version__
from ge2e.audio import preprocess
from ge2e.config import AudioConfig
from ge2e.errors import AudioError
from ge2e.serve.auth import KeyChecker
from ge2e.serve.errors import ApiError, audio_error, error_body
from ge2e.serve.limiter import InferenceLimiter
from ge2e.serve.metrics import Metrics
from ge2e.serve.store import NewEnrollment, SpeakerExists, SpeakerNotFound, SpeakerStore
from ge2e.serve.uploads import Upload, decode, read_uploads

logger = logging.getLogger(__name__)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_METADATA_CHARS = 4096
SpeakerId = Annotated[str, Path(pattern=ID_PATTERN, description="the speaker's id")]


class Encoder(Protocol):
    """What the service needs of a model (:class:`ge2e.model.SpeakerEncoder` is one)."""

    audio: AudioConfig

    @property
    def embedding_size(self) -> int: ...

    def embed_mel(self, mel: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ServeConfig:
    """Service limits and the decision threshold (cosine score, accept when ``score >= threshold``)."""

    threshold: float
    max_upload_bytes: int = 10 * 1024 * 1024
    max_audio_seconds: float = 60.0
    max_enroll_files: int = 10
    workers: int = 1
    queue: int = 8
    retry_after_s: int = 1


def model_id(model: Any) -> str:
    """Fingerprint of an encoder's weights and configs (16 hex digits): d-vectors are comparable iff it matches."""
    digest = hashlib.sha256()
    for key in ("config", "audio", "inference"):
        digest.update(repr(getattr(model, key, None)).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- schemas


class ErrorDetail(BaseModel):
    status: int
    code: str = Field(description="stable machine-readable error code, e.g. speaker_not_found")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class SpeakerCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    id: str | None = Field(default=None, pattern=ID_PATTERN, description="your own id; random hex when absent")
    metadata: dict[str, Any] = Field(default_factory=dict, description="free JSON object kept with the speaker")


class EnrollmentOut(BaseModel):
    id: str
    created: float = Field(description="unix time, seconds")
    filename: str | None
    sha256: str = Field(description="SHA-256 of the uploaded bytes (the audio itself is not kept)")
    duration_seconds: float
    speech_seconds: float = Field(description="speech kept by voice activity detection")


class SpeakerOut(BaseModel):
    id: str
    name: str
    created: float
    updated: float
    model_id: str
    n_utterances: int
    speech_seconds: float
    metadata: dict[str, Any]


class SpeakerDetail(SpeakerOut):
    enrollments: list[EnrollmentOut]


class SpeakerPage(BaseModel):
    speakers: list[SpeakerOut]
    total: int
    limit: int
    offset: int


class EnrollResult(BaseModel):
    speaker: SpeakerOut
    added: list[EnrollmentOut]


class VerifyResult(BaseModel):
    speaker_id: str
    score: float = Field(description="cosine similarity of the audio's d-vector to the speaker model, in [-1, 1]")
    threshold: float
    decision: str = Field(description="'accept' when score >= threshold, else 'reject'")
    speech_seconds: float


class Candidate(BaseModel):
    speaker_id: str
    name: str
    score: float
    decision: str


class IdentifyResult(BaseModel):
    candidates: list[Candidate] = Field(description="best first")
    threshold: float
    n_speakers: int = Field(description="enrolled speakers compared against")
    speech_seconds: float


class EmbedResult(BaseModel):
    embedding: list[float] = Field(description="unit-norm d-vector")
    dim: int
    model_id: str
    speech_seconds: float


class Health(BaseModel):
    status: str
    version: str
    model_id: str


def _audio_body(many: bool) -> dict[str, Any]:
    """OpenAPI request body of an audio upload (the handlers parse the stream themselves)."""
    binary = {"type": "string", "format": "binary"}
    audio = {"type": "array", "items": binary} if many else binary
    what = "one or more audio files" if many else "one audio file"
    return {
        "requestBody": {
            "required": True,
            "description": f"{what} in any format libsndfile decodes (wav, flac, ogg/opus, mp3, ...), "
            "as multipart part(s) named 'audio' or as the raw request body",
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["audio"], "properties": {"audio": audio}}
                },
                "application/octet-stream": {"schema": binary},
            },
        }
    }


_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 415, 422, 503)}


# ---------------------------------------------------------------------------------------------- middleware


class BodyLimit:
    """Caps every request body at ``max_bytes``: by Content-Length up front, else while it streams in (413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> ApiError:
        return ApiError(413, "upload_too_large", f"request body exceeds the {self.max_bytes} byte limit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            error = self._error() if declared.isdigit() else ApiError(400, "bad_request", "invalid Content-Length")
            await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI re-raises an HTTPException from body reading as is; the handler renders it as JSON
                raise HTTPException(413, self._error().message)
            return message

        await self.app(scope, limited, send)


class RequestMetrics:
    """Counts requests by method, route template and status, and times them by route."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = _route_template(scope)
            labels = {"method": scope["method"], "route": route, "status": str(status)}
            self.metrics.inc("ge2e_http_requests_total", "HTTP requests answered", **labels)
            self.metrics.observe(
                "ge2e_http_request_duration_seconds", "HTTP request latency", time.perf_counter() - start, route=route
            )


def _route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/speakers/{speaker_id}``), so labels stay few; else ``unmatched``."""
    for route in scope["app"].router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path
    return "unmatched"


# ---------------------------------------------------------------------------------------------- the app


@dataclass(frozen=True)
class _Embedded:
    """d-vector ``(D,)`` of one upload plus what is kept about it."""

    dvector: np.ndarray
    upload: Upload
    duration_seconds: float
    speech_seconds: float


class Service:
    """The state behind the routes: model, store, limits, key checker, metrics."""

    def __init__(
        self, model: Encoder, store: SpeakerStore, keys: list[str], config: ServeConfig, model_id: str
    ) -> None:
        self.model = model
        self.store = store
        self.config = config
        self.model_id = model_id
        self.keys = KeyChecker(keys)
        self.limiter = InferenceLimiter(config.workers, config.queue, config.retry_after_s)
        self.metrics = Metrics()

    def embed_uploads(self, uploads: list[Upload]) -> list[_Embedded]:
        """Decode, preprocess and embed each upload (runs on an inference thread); the first bad one fails all."""
        out = []
        audio = self.model.audio
        for i, upload in enumerate(uploads, start=1):
            label = upload.label(i, len(uploads))
            start = time.perf_counter()
            try:
                decoded = decode(upload.data, label, self.config.max_audio_seconds, audio.min_speech_ms / 1000)
                mel = preprocess(decoded.samples, decoded.sample_rate, cfg=audio, name=label)
            except AudioError as exc:
                raise audio_error(exc, label) from None
            dvector = np.asarray(self.model.embed_mel(mel), dtype=np.float32)
            self.metrics.observe(
                "ge2e_inference_seconds", "decode + front end + encoder time per utterance", time.perf_counter() - start
            )
            speech = mel.shape[0] * audio.hop_ms / 1000
            out.append(_Embedded(dvector, upload, decoded.seconds, speech))
        return out

    def warm_up(self) -> None:
        """Run the front end and the encoder once, on noise (which the VAD may reject: that is fine)."""
        audio = self.model.audio
        noise = np.random.default_rng(0).normal(0, 0.1, audio.sample_rate).astype(np.float32)
        with contextlib.suppress(AudioError):
            self.model.embed_mel(preprocess(noise, audio.sample_rate, cfg=audio, name="warm-up"))

    async def embed_request(self, request: Request, max_files: int = 1) -> list[_Embedded]:
        """Read and embed the request's audio (call while holding a limiter slot)."""
        uploads = await read_uploads(request, max_files)
        return await self.limiter.run(self.embed_uploads, uploads)

    def gauges(self) -> list[tuple[str, str, float, tuple[tuple[str, str], ...]]]:
        speakers, enrollments = self.store.counts()
        return [
            ("ge2e_speakers", "enrolled speakers in the database", speakers, ()),
            ("ge2e_enrollments", "enrollment utterances in the database", enrollments, ()),
            ("ge2e_inference_slots", "inference workers + queue", self.limiter.capacity, ()),
            ("ge2e_inference_slots_used", "requests holding an inference slot", self.limiter.admitted, ()),
            ("ge2e_inference_running", "utterances being embedded now", self.limiter.running, ()),
            ("ge2e_rejected_overload_total", "requests refused with 503 (all slots busy)", self.limiter.rejected, ()),
            ("ge2e_build_info", "version and model", 1, (("version", __version__), ("model_id", self.model_id))),
        ]


def _decision(score: float, threshold: float) -> str:
    return "accept" if score >= threshold else "reject"


def _status_code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "upload_too_large",
        415: "unsupported_media_type",
        503: "unavailable",
    }.get(status, "http_error")


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "invalid_json", "request body is not valid JSON"
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, "invalid_request", f"{where}: {first.get('msg', 'invalid value')}{more}"


def _install_error_handlers(app: FastAPI) -> None:
    def reply(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(status, code, message), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return reply(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(SpeakerNotFound)
    async def not_found(_: Request, exc: SpeakerNotFound) -> JSONResponse:
        return reply(404, "speaker_not_found", str(exc))

    @app.exception_handler(SpeakerExists)
    async def exists(_: Request, exc: SpeakerExists) -> JSONResponse:
        return reply(409, "speaker_exists", str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        routing = {404: "no route", 405: "method not allowed"}
        if exc.status_code in routing:  # Starlette's own "Not Found" says nothing about what was asked
            message = f"{routing[exc.status_code]}: {request.method} {request.url.path} (see /docs)"
        else:
            message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return reply(exc.status_code, _status_code(exc.status_code), message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return reply(*_validation_message(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return reply(500, "internal_error", f"internal error ({type(exc).__name__}); the server logged the details")


_bearer = HTTPBearer(auto_error=False, description="an API key from GE2E_API_KEYS or the key file")


async def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Dependency of every protected route: 401 unless the bearer token is a configured key."""
    if credentials is None or not request.app.state.service.keys.check(credentials.credentials):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid API key; send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app(model: Encoder, store: SpeakerStore, keys: list[str], config: ServeConfig, model_id: str) -> FastAPI:
    """The ASGI application (run it with uvicorn; ``ge2e serve`` does).

    Args:
        model: the encoder; its ``audio`` config is the front end applied to uploads.
        store: the speaker database, opened for the same ``model_id``.
        keys: accepted API keys (bearer tokens).
        config: limits and the decision threshold.
        model_id: fingerprint of ``model`` (:func:`model_id`).
    """
    svc = Service(model, store, keys, config, model_id)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await svc.limiter.run(svc.warm_up)  # so the first client does not pay for loading the VAD model
        yield
        svc.limiter.shutdown()

    app = FastAPI(
        title="ge2e speaker verification",
        version=__version__,
        lifespan=lifespan,
        description="Enroll speakers once, then verify or identify them from audio. "
        "Send `Authorization: Bearer <API key>` on every route but /health and the docs.",
        redoc_url=None,
    )
    app.state.service = svc
    _install_error_handlers(app)
    auth = [Depends(require_key)]

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health | JSONResponse:
        """Liveness and readiness: 200 when the database answers, else 503. No API key needed."""
        try:
            await run_in_threadpool(store.counts)
        except Exception as exc:
            logger.error("health check failed: %s", exc)
            return JSONResponse(error_body(503, "unavailable", "database unavailable"), status_code=503)
        return Health(status="ok", version=__version__, model_id=model_id)

    @app.get("/metrics", dependencies=auth, response_class=PlainTextResponse, tags=["service"])
    async def metrics() -> Response:
        """Prometheus text exposition: request counts and latencies, inference time, queue, database size."""
        gauges = await run_in_threadpool(svc.gauges)
        return PlainTextResponse(svc.metrics.render(gauges), media_type="text/plain; version=0.0.4")

    @app.post(
        "/v1/speakers",
        dependencies=auth,
        status_code=201,
        response_model=SpeakerOut,
        responses={**_ERRORS, 409: {"model": ErrorResponse}},
    )
    async def create_speaker(body: SpeakerCreate) -> SpeakerOut:
        """Create a speaker with no enrollments yet (409 when the id is taken)."""
        if len(repr(body.metadata)) > MAX_METADATA_CHARS:
            raise ApiError(422, "invalid_request", f"metadata is larger than {MAX_METADATA_CHARS} characters")
        speaker = await run_in_threadpool(store.create, body.name, body.metadata, body.id)
        return SpeakerOut(**speaker.as_dict())

    @app.get("/v1/speakers", dependencies=auth, response_model=SpeakerPage, responses=_ERRORS)
    async def list_speakers(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0
    ) -> SpeakerPage:
        """Speakers in creation order, a page at a time."""
        speakers, total = await run_in_threadpool(store.list_speakers, limit, offset)
        return SpeakerPage(speakers=[s.as_dict() for s in speakers], total=total, limit=limit, offset=offset)

    @app.get("/v1/speakers/{speaker_id}", dependencies=auth, response_model=SpeakerDetail, responses=_ERRORS)
    async def get_speaker(speaker_id: SpeakerId) -> SpeakerDetail:
        """A speaker and the metadata of its enrollment utterances."""
        speaker = await run_in_threadpool(store.get, speaker_id)
        return SpeakerDetail(**speaker.as_dict(with_enrollments=True))

    @app.delete("/v1/speakers/{speaker_id}", dependencies=auth, status_code=204, responses=_ERRORS)
    async def delete_speaker(speaker_id: SpeakerId) -> Response:
        """Delete a speaker and every d-vector enrolled for it."""
        await run_in_threadpool(store.delete, speaker_id)
        return Response(status_code=204)

    @app.post(
        "/v1/speakers/{speaker_id}/enrollments",
        dependencies=auth,
        status_code=201,
        response_model=EnrollResult,
        responses=_ERRORS,
        openapi_extra=_audio_body(many=True),
    )
    async def enroll(speaker_id: SpeakerId, request: Request) -> EnrollResult:
        """Add enrollment audio: the d-vectors are stored and the speaker model updated atomically (all files or
        none). The audio itself is not kept."""
        await run_in_threadpool(store.get, speaker_id, False)  # 404 before reading any audio
        async with svc.limiter.slot():
            embedded = await svc.embed_request(request, config.max_enroll_files)
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
            speaker, added = await run_in_threadpool(store.enroll, speaker_id, items)
        return EnrollResult(speaker=speaker.as_dict(), added=[a.as_dict() for a in added])

    @app.delete(
        "/v1/speakers/{speaker_id}/enrollments/{enrollment_id}",
        dependencies=auth,
        response_model=SpeakerOut,
        responses=_ERRORS,
    )
    async def delete_enrollment(speaker_id: SpeakerId, enrollment_id: str) -> SpeakerOut:
        """Remove one enrollment utterance and update the speaker model."""
        speaker = await run_in_threadpool(store.delete_enrollment, speaker_id, enrollment_id)
        return SpeakerOut(**speaker.as_dict())

    @app.post(
        "/v1/speakers/{speaker_id}/verify",
        dependencies=auth,
        response_model=VerifyResult,
        responses={**_ERRORS, 409: {"model": ErrorResponse}},
        openapi_extra=_audio_body(many=False),
    )
    async def verify(
        speaker_id: SpeakerId,
        request: Request,
        threshold: Annotated[float | None, Query(ge=-1, le=1, description="overrides the service's")] = None,
    ) -> VerifyResult:
        """Is this audio the claimed speaker? Cosine score against the speaker model, and the decision."""
        centroid = await run_in_threadpool(store.centroid, speaker_id)
        if centroid is None:
            raise ApiError(409, "not_enrolled", f"speaker {speaker_id!r} has no enrollment audio yet")
        async with svc.limiter.slot():
            (probe,) = await svc.embed_request(request)
        score = float(np.dot(centroid.astype(np.float64), probe.dvector))
        used = config.threshold if threshold is None else threshold
        return VerifyResult(
            speaker_id=speaker_id,
            score=score,
            threshold=used,
            decision=_decision(score, used),
            speech_seconds=probe.speech_seconds,
        )

    @app.post(
        "/v1/identify",
        dependencies=auth,
        response_model=IdentifyResult,
        responses=_ERRORS,
        openapi_extra=_audio_body(many=False),
    )
    async def identify(
        request: Request,
        top_k: Annotated[int, Query(ge=1, le=100)] = 5,
        threshold: Annotated[float | None, Query(ge=-1, le=1, description="overrides the service's")] = None,
    ) -> IdentifyResult:
        """Which enrolled speakers sound most like this audio? The ``top_k`` best, best first."""
        async with svc.limiter.slot():
            (probe,) = await svc.embed_request(request)
        models = await run_in_threadpool(store.centroids)
        scores = models.matrix.astype(np.float64) @ probe.dvector
        best = np.argsort(-scores, kind="stable")[:top_k]
        used = config.threshold if threshold is None else threshold
        candidates = [
            Candidate(
                speaker_id=models.ids[i],
                name=models.names[i],
                score=float(scores[i]),
                decision=_decision(float(scores[i]), used),
            )
            for i in best
        ]
        return IdentifyResult(
            candidates=candidates, threshold=used, n_speakers=len(models.ids), speech_seconds=probe.speech_seconds
        )

    @app.post(
        "/v1/embed",
        dependencies=auth,
        response_model=EmbedResult,
        responses=_ERRORS,
        openapi_extra=_audio_body(many=False),
    )
    async def embed(request: Request) -> EmbedResult:
        """The audio's d-vector (unit norm), for scoring on your side."""
        async with svc.limiter.slot():
            (probe,) = await svc.embed_request(request)
        return EmbedResult(
            embedding=probe.dvector.tolist(),
            dim=len(probe.dvector),
            model_id=model_id,
            speech_seconds=probe.speech_seconds,
        )

    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes)
    app.add_middleware(RequestMetrics, metrics=svc.metrics)  # added last = outermost: it sees the 413s too
    return app
