"""The state behind the routes: the encoder, the store, keys, limits and metrics, and the embedding of uploads."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from starlette.requests import Request

from ge2e import __version__
from ge2e.decoding import Limits, load_audio
from ge2e.diarization.pipeline import SpeechWindows, embed_speech
from ge2e.errors import AudioError
from ge2e.inference import Encoder, as_inference, embed_mels, is_short, speech_seconds
from ge2e.serve.body import read_body
from ge2e.serve.connections import ConnectionPolicy
from ge2e.serve.errors import ApiError, audio_error
from ge2e.serve.keys import KeyStore
from ge2e.serve.limiter import InferenceLimiter, RateLimiter
from ge2e.serve.metrics import Metrics
from ge2e.serve.middleware import RequestGate
from ge2e.serve.store import SpeakerStore
from ge2e.serve.uploads import Upload, parse_uploads

T = TypeVar("T")


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
    read_timeout_s: float = 30.0
    rate_per_minute: int = 600
    max_requests: int = 64
    header_timeout_s: float = 10.0
    max_connections: int = 1024
    max_connections_per_client: int = 32

    @property
    def limits(self) -> Limits:
        """What uploads may be: the duration cap, and no ffmpeg subprocess run on a client's bytes (docs/serve.md)."""
        return Limits(max_seconds=self.max_audio_seconds, allow_ffmpeg=False)


def decision(score: float, threshold: float) -> str:
    return "accept" if score >= threshold else "reject"


@dataclass(frozen=True)
class Embedded:
    """d-vector ``(D,)`` of one upload plus what is kept about it."""

    dvector: np.ndarray
    upload: Upload
    duration_seconds: float
    speech_seconds: float

    @property
    def short(self) -> bool:
        return is_short(self.speech_seconds)


class Service:
    """Everything a route needs, built once per app."""

    def __init__(self, model: Encoder, store: SpeakerStore, keys: KeyStore, config: ServeConfig, model_id: str) -> None:
        self.model = as_inference(model)
        self.store = store
        self.keys = keys
        self.config = config
        self.model_id = model_id
        self.limiter = InferenceLimiter(config.workers, config.queue, config.retry_after_s)
        self.rates = RateLimiter(config.rate_per_minute)
        self.requests = RequestGate(config.max_requests, config.retry_after_s)
        # used by the server that runs the app (ge2e serve), through ge2e.serve.connections.guarded_protocol
        self.connections = ConnectionPolicy(
            config.header_timeout_s, config.max_connections, config.max_connections_per_client, config.retry_after_s
        )
        self.metrics = Metrics()

    async def embed(self, request: Request, max_files: int = 1) -> list[Embedded]:
        """Read the request's audio (no slot held: a slow upload costs only its connection), then take an
        inference slot and embed it."""
        body = await read_body(request, self.config.max_upload_bytes, self.config.read_timeout_s)
        uploads = parse_uploads(request.headers.get("content-type"), body, max_files)
        async with self.limiter.slot():
            return await self.limiter.run(self._embed_uploads, uploads)

    async def recording(self, request: Request, then: Callable[[SpeechWindows], T]) -> tuple[T, Upload]:
        """Read one recording (the same limits as any upload), then, holding an inference slot, run the diarization
        front end over it (VAD, window and segment d-vectors) and ``then`` on the result."""
        body = await read_body(request, self.config.max_upload_bytes, self.config.read_timeout_s)
        (upload,) = parse_uploads(request.headers.get("content-type"), body, 1)
        async with self.limiter.slot():
            return await self.limiter.run(self._recording, upload, then), upload

    def _decode(self, upload: Upload, label: str) -> np.ndarray:
        """The upload's ``(L,)`` samples at the model's rate, within the service's :attr:`ServeConfig.limits`."""
        return load_audio(upload.data, target_sr=self.model.audio.sample_rate, limits=self.config.limits, name=label)

    def _recording(self, upload: Upload, then: Callable[[SpeechWindows], T]) -> T:
        label = upload.label(1, 1)
        try:
            samples = self._decode(upload, label)
            return then(embed_speech(self.model, samples, self.model.audio.sample_rate, name=label))
        except AudioError as exc:
            raise audio_error(exc, label) from None

    def _embed_uploads(self, uploads: list[Upload]) -> list[Embedded]:
        """Decode, preprocess and embed each upload (runs on an inference thread); the first bad one fails all."""
        out = []
        audio = self.model.audio
        for i, upload in enumerate(uploads, start=1):
            label = upload.label(i, len(uploads))
            start = time.perf_counter()
            try:
                # any speech is scored (and flagged short), as in the CLI
                samples = self._decode(upload, label)
                mel = self.model.features(samples, audio.sample_rate, name=label)
            except AudioError as exc:
                raise audio_error(exc, label) from None
            dvector = embed_mels(self.model, [mel])[0].numpy()
            if not np.isfinite(dvector).all():
                raise ApiError(422, "unusable_audio", f"{label}: the model gave a non-finite d-vector for it")
            self.metrics.observe(
                "ge2e_inference_seconds", "decode + front end + encoder time per utterance", time.perf_counter() - start
            )
            out.append(Embedded(dvector, upload, len(samples) / audio.sample_rate, speech_seconds(mel, audio)))
        return out

    def warm_up(self) -> None:
        """Run the front end and the encoder once, on noise (which the VAD may reject: that is fine)."""
        audio = self.model.audio
        noise = np.random.default_rng(0).normal(0, 0.1, audio.sample_rate).astype(np.float32)
        with contextlib.suppress(AudioError):
            embed_mels(self.model, [self.model.features(noise, audio.sample_rate, name="warm-up")])

    def gauges(self) -> list[tuple[str, str, float, tuple[tuple[str, str], ...]]]:
        speakers, enrollments = self.store.counts()
        return [
            ("ge2e_speakers", "enrolled speakers in the database, all tenants", speakers, ()),
            ("ge2e_enrollments", "enrollment utterances in the database, all tenants", enrollments, ()),
            ("ge2e_inference_slots", "inference workers + queue", self.limiter.capacity, ()),
            ("ge2e_inference_slots_used", "requests holding an inference slot", self.limiter.admitted, ()),
            ("ge2e_inference_running", "utterances being embedded now", self.limiter.running, ()),
            ("ge2e_rejected_overload_total", "requests refused with 503 (all slots busy)", self.limiter.rejected, ()),
            ("ge2e_rate_limited_total", "requests refused with 429 (key over its rate)", self.rates.limited, ()),
            ("ge2e_requests_in_flight", "requests being served now", self.requests.in_flight, ()),
            ("ge2e_rejected_requests_total", "requests refused with 503 (request cap)", self.requests.refused, ()),
            ("ge2e_connections_open", "open client connections", self.connections.total, ()),
            ("ge2e_rejected_connections_total", "connections refused with 503 (caps)", self.connections.refused, ()),
            ("ge2e_build_info", "version and model", 1, (("version", __version__), ("model_id", self.model_id))),
        ]
