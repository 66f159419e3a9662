"""What the store returns: speakers, enrollments, the models for scoring (plain data, no database access)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """Immutable data the store returns, and the API answers as is (so no non-finite float ever goes out)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)


class Enrollment(Record):
    """Metadata of one enrollment utterance (its d-vector stays in the database)."""

    id: str
    created: float = Field(description="unix time, seconds")
    filename: str | None
    sha256: str = Field(description="SHA-256 of the uploaded bytes (the audio itself is not kept)")
    duration_seconds: float
    speech_seconds: float = Field(description="speech kept by voice activity detection")


class Speaker(Record):
    """A speaker row."""

    id: str
    name: str
    created: float
    updated: float
    model_id: str = Field(description="fingerprint of the encoder its d-vectors come from")
    n_utterances: int
    speech_seconds: float
    metadata: dict[str, Any]


class SpeakerDetail(Speaker):
    """A speaker with the metadata of its enrollments."""

    enrollments: list[Enrollment]


@dataclass(frozen=True)
class NewEnrollment:
    """One utterance to add: its unit-norm ``(D,)`` d-vector and what is kept about the upload."""

    dvector: np.ndarray
    filename: str | None
    sha256: str
    duration_seconds: float
    speech_seconds: float


@dataclass(frozen=True)
class Centroids:
    """Every enrolled speaker's model: ``ids[i]``, ``names[i]`` own row i of the ``(S, D)`` unit-norm matrix."""

    generation: int
    ids: list[str]
    names: list[str]
    matrix: np.ndarray


# the column order of the Enrollment fields, so a row and a record convert by position
ENROLLMENT_COLUMNS = "id, created, filename, sha256, duration_seconds, speech_seconds"
SPEAKER_COLUMNS = "id, name, created, updated, model_id, n_utterances, speech_seconds, metadata"


def speaker_from_row(row: sqlite3.Row) -> Speaker:
    return Speaker(
        id=row["id"],
        name=row["name"],
        created=row["created"],
        updated=row["updated"],
        model_id=row["model_id"],
        n_utterances=row["n_utterances"],
        speech_seconds=row["speech_seconds"],
        metadata=json.loads(row["metadata"]),
    )


def vector_from_blob(blob: bytes, dim: int) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32, count=dim)
