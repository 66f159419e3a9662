"""Request and response bodies of the HTTP API (the store's records, :mod:`ge2e.serve.records`, are answered as
they are), and the OpenAPI descriptions of the bodies the routes read
themselves (audio uploads, and JSON read only after authentication)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ge2e.inference import SHORT_SPEECH_SECONDS
from ge2e.serve.keys import KEY_ID_PATTERN, MAX_RATE_PER_MINUTE, ApiKey, Role
from ge2e.serve.records import Enrollment, Speaker

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_METADATA_CHARS = 4096
MAX_METADATA_DEPTH = 16
SpeakerId = Annotated[str, Path(pattern=ID_PATTERN, description="the speaker's id")]
EnrollmentId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="an enrollment's id")]
KeyId = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="a key's public id")]
Decision = Literal["accept", "reject"]
SHORT_HELP = (
    f"under {SHORT_SPEECH_SECONDS:g} s of speech: still scored, but such scores err far more often "
    "(docs/usage.md, Short utterances)"
)


class _Out(BaseModel):
    # a non-finite float in an answer is a bug: fail loudly here rather than emit non-standard JSON
    model_config = ConfigDict(allow_inf_nan=False)


class ErrorDetail(_Out):
    status: int
    code: str = Field(description="stable machine-readable error code, e.g. speaker_not_found")
    message: str


class ErrorResponse(_Out):
    error: ErrorDetail


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


class SpeakerCreate(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    id: str | None = Field(default=None, pattern=ID_PATTERN, description="your own id; random hex when absent")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"free JSON object kept with the speaker (at most {MAX_METADATA_CHARS} characters as JSON, "
        f"nested at most {MAX_METADATA_DEPTH} deep)",
    )

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _depth(value) > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
        try:
            size = len(json.dumps(value, allow_nan=False, separators=(",", ":")))
        except ValueError:
            raise ValueError("metadata holds NaN or Infinity, which JSON does not have") from None
        if size > MAX_METADATA_CHARS:
            raise ValueError(f"metadata is larger than {MAX_METADATA_CHARS} characters as JSON")
        return value


class SpeakerPage(_Out):
    speakers: list[Speaker]
    total: int
    limit: int
    offset: int


class EnrollResult(_Out):
    speaker: Speaker
    added: list[Enrollment]


class VerifyResult(_Out):
    speaker_id: str
    score: float = Field(description="cosine similarity of the audio's d-vector to the speaker model, in [-1, 1]")
    threshold: float
    decision: Decision = Field(description="'accept' when score >= threshold, else 'reject'")
    speech_seconds: float
    short: bool = Field(description=SHORT_HELP)


class Candidate(_Out):
    speaker_id: str
    name: str
    score: float
    decision: Decision


class IdentifyResult(_Out):
    candidates: list[Candidate] = Field(description="best first")
    threshold: float
    n_speakers: int = Field(description="your tenant's enrolled speakers compared against")
    speech_seconds: float
    short: bool = Field(description=SHORT_HELP)


class EmbedResult(_Out):
    embedding: list[float] = Field(description="unit-norm d-vector")
    dim: int
    model_id: str
    speech_seconds: float


class TimeRegion(_Out):
    start: float = Field(description="seconds from the start of the recording")
    end: float
    score: float = Field(description="cosine similarity to the speaker, in [-1, 1]")


class SearchResult(_Out):
    speaker_id: str
    threshold: float
    regions: list[TimeRegion] = Field(description="where the speaker talks: segments scored >= threshold, merged")
    segments: list[TimeRegion] = Field(description="every speech segment and its score, in time order")
    duration_seconds: float
    speech_seconds: float


class Turn(_Out):
    start: float = Field(description="seconds from the start of the recording")
    end: float
    speaker: str = Field(description="SPEAKER_00, SPEAKER_01, ... in order of first appearance")


class DiarizeResult(_Out):
    speakers: int
    estimated: bool = Field(description="the number of speakers was estimated, not given")
    turns: list[Turn] = Field(description="in time order")
    rttm: str = Field(description="the turns as RTTM lines")
    duration_seconds: float
    speech_seconds: float


class Health(_Out):
    status: Literal["ok"]
    version: str | None = Field(default=None, description="only with a valid API key")
    model_id: str | None = Field(default=None, description="only with a valid API key")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    name: str = Field(default="", max_length=200, description="a note on who holds the key")
    # strict: pydantic would otherwise take JSON true as 1 request a minute
    rate_per_minute: int | None = Field(default=None, ge=1, le=MAX_RATE_PER_MINUTE, strict=True)


class KeyCreated(ApiKey):
    key: str = Field(description="the secret bearer token: shown this once, stored only as a digest")


class KeyList(_Out):
    keys: list[ApiKey]


class AuditEntry(_Out):
    seq: int
    time: float
    actor: str = Field(description="the key id that made the change, or 'cli'")
    action: str
    target: str


class AuditPage(_Out):
    entries: list[AuditEntry] = Field(description="oldest first")


# errors are JSON on every route, the text/plain /metrics included, hence the explicit media type
_ERROR = {
    "model": ErrorResponse,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}
ERRORS: dict[int | str, dict[str, Any]] = {s: _ERROR for s in (400, 401, 403, 404, 408, 413, 415, 422, 429, 503)}
ERRORS_409: dict[int | str, dict[str, Any]] = {**ERRORS, 409: _ERROR}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body of a JSON route whose handler reads the body itself (after authentication)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)  # the enums it uses are response fields too, so FastAPI lists them in components
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def audio_body(many: bool) -> dict[str, Any]:
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
