"""A two-speaker conversation of real speech (LibriSpeech test-other) with its exact turns, and enrollment
clips of both speakers that are not in it: for the speaker search tests and the console's browser test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

FOLDER = "LibriSpeech/test-other"
SPEAKERS = {"alice": "1998/15444/1998-15444-", "bob": "2033/164914/2033-164914-"}
ENROLL = ("0000", "0001")
TURNS = (("alice", "0005"), ("bob", "0005"), ("alice", "0006"), ("bob", "0006"))
PAUSE_S = 0.6
SR = 16_000


def build(data: Path, out: Path) -> tuple[dict[str, list[Path]], Path, list[tuple[str, float, float]]]:
    """``({name: enrollment files}, conversation wav, [(name, start s, end s)] turns)`` written under ``out``."""
    enroll = {name: [data / FOLDER / f"{stem}{n}.flac" for n in ENROLL] for name, stem in SPEAKERS.items()}
    parts, turns, t = [], [], 0.0
    for name, n in TURNS:
        wav, sr = sf.read(data / FOLDER / f"{SPEAKERS[name]}{n}.flac", dtype="float32")
        assert sr == SR
        parts += [wav, np.zeros(round(PAUSE_S * SR), np.float32)]
        turns.append((name, t, t + len(wav) / SR))
        t += len(wav) / SR + PAUSE_S
    path = out / "meeting.wav"
    sf.write(path, np.concatenate(parts), SR, subtype="PCM_16")
    return enroll, path, turns


def overlap(
    regions: list[tuple[float, float]], turns: list[tuple[str, float, float]], name: str
) -> tuple[float, float]:
    """Seconds of ``regions`` inside ``name``'s turns and outside them."""
    inside = sum(max(0.0, min(b, e) - max(a, s)) for a, b in regions for who, s, e in turns if who == name)
    return inside, sum(b - a for a, b in regions) - inside
