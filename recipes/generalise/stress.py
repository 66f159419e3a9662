"""Stressed copies of the in-domain trial lists: what users feed a model that none of the training corpora hold.

For each official list of a split (dev for choosing, test for the model card) and each condition below, the TEST
side of every trial is replaced by a stressed copy of its file (the enrolment side stays clean, as when a user
enrols once and verifies from the field). At most ``--max-trials`` trials per list, a fixed random subset.

Conditions (every random draw is seeded by (seed, file, condition): the same copy on every machine):

- ``g711``: 8 kHz, 300-3400 Hz, G.711 mu-law (libsndfile): a landline.
- ``gsm``: 8 kHz, 300-3400 Hz, GSM 06.10 full rate, 13 kbit/s (libsndfile): a 2G phone.
- ``opus``: 8 kHz Opus at about 7 kbit/s (libsndfile): a low-bitrate VoIP or AMR-like channel.
- ``short``: 0.5-1.0 s of the file (a window around its loudest second): short test sides.
- ``babble``: 3-5 other people talking (LibriSpeech TRAIN clips, never an evaluation speaker) at 5-15 dB SNR.
- ``reverb``: a simulated room, RT60 0.3-0.9 s.
- ``loudness``: 50 dB quieter, or 18 dB louder and clipped.

The telephone codecs G.711 and GSM and the simulated room are also the training augmentations' kinds
(``ge2e.data.augment``): a model trained with them is tested on conditions it has seen; low-bitrate Opus, babble,
short sides and loudness are in no training recipe.

Writes ``<out>/<split>/<condition>/...flac`` and ``<out>/<split>/<list>.<condition>.txt`` (absolute paths). Run
from the repository root (resumable: existing copies are kept)::

    .venv/bin/python recipes/generalise/stress.py --split dev
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from ge2e.audio import load_audio
from ge2e.data.augment import (
    PHONE_BAND_HZ,
    PHONE_RATE,
    add_noise,
    band_limit,
    codec_round_trip,
    reverberate,
    rng_for,
    simulated_rir,
)
from ge2e.data.splits import DEV_LISTS, TEST_LISTS, data_root
from ge2e.errors import AudioError
from ge2e.scoring import read_trials

SR = 16_000
CONDITIONS = ("g711", "gsm", "opus", "short", "babble", "reverb", "loudness")
LISTS = {"dev": DEV_LISTS, "test": TEST_LISTS}
SHORT_S = (0.5, 1.0)
SNR_DB = (5.0, 15.0)
TALKERS = (3, 5)
RT60_S = (0.3, 0.9)
QUIET_DB, LOUD_DB = -50.0, 18.0
BABBLE_CLIPS = 40  # LibriSpeech train clips to draw talkers from


def phone(wav: np.ndarray, subtype: str) -> np.ndarray:
    narrow = band_limit(soxr.resample(wav, SR, PHONE_RATE, quality="HQ"), PHONE_RATE, *PHONE_BAND_HZ)
    return soxr.resample(codec_round_trip(narrow, PHONE_RATE, subtype), PHONE_RATE, SR, quality="HQ")


def opus(wav: np.ndarray) -> np.ndarray:
    """Through Opus at 8 kHz and libsndfile's lowest bitrate (compression level 1: about 7 kbit/s on speech)."""
    narrow = soxr.resample(wav, SR, PHONE_RATE, quality="HQ").astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(narrow, -1.0, 1.0), PHONE_RATE, format="OGG", subtype="OPUS", compression_level=1.0)
    buffer.seek(0)
    decoded, rate = sf.read(buffer, dtype="float32")
    return soxr.resample(decoded, rate, SR, quality="HQ")


def loudest_window(wav: np.ndarray, seconds: float) -> np.ndarray:
    """The ``seconds`` of ``wav`` with the most energy (the whole file when it is shorter)."""
    n = round(seconds * SR)
    if len(wav) <= n:
        return wav
    energy = np.concatenate(([0.0], np.cumsum(wav.astype(np.float64) ** 2)))
    start = int(np.argmax(energy[n:] - energy[:-n]))
    return wav[start : start + n]


def babble(length: int, clips: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    talkers = rng.choice(len(clips), size=int(rng.integers(TALKERS[0], TALKERS[1] + 1)), replace=False)
    mix = np.zeros(length)
    for k in talkers:
        clip = clips[k]
        start = int(rng.integers(max(1, len(clip) - length + 1)))
        part = np.resize(clip[start : start + length], length)
        mix += part / max(float(np.sqrt(np.mean(part**2))), 1e-6)
    return mix.astype(np.float32)


def stress(wav: np.ndarray, condition: str, rng: np.random.Generator, clips: list[np.ndarray]) -> np.ndarray:
    """One stressed copy of 16 kHz ``wav`` (module docstring)."""
    if condition == "g711":
        return phone(wav, "ULAW")
    if condition == "gsm":
        return phone(wav, "GSM610")
    if condition == "opus":
        return opus(wav)
    if condition == "short":
        return loudest_window(wav, float(rng.uniform(*SHORT_S)))
    if condition == "babble":
        return add_noise(wav, babble(len(wav), clips, rng), float(rng.uniform(*SNR_DB)))
    if condition == "reverb":
        return reverberate(wav, simulated_rir(SR, float(rng.uniform(*RT60_S)), rng))
    if condition == "loudness":
        if rng.random() < 0.5:
            return wav * 10 ** (QUIET_DB / 20)
        return np.clip(wav * 10 ** (LOUD_DB / 20), -1.0, 1.0)
    raise ValueError(f"unknown condition {condition!r}")


def babble_clips(root: Path) -> list[np.ndarray]:
    """Clips of LibriSpeech training speakers (the first of the sorted list): never an evaluation speaker."""
    train = set((root / "splits" / "LibriSpeech.train.txt").read_text().split())
    files = sorted(p for p in (root / "LibriSpeech").rglob("*.flac") if p.name.split("-")[0] in train)
    return [load_audio(p, target_sr=SR) for p in files[:BABBLE_CLIPS]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=sorted(LISTS), default="dev")
    parser.add_argument("--out", default="cache/stress", help="output folder (default cache/stress)")
    parser.add_argument("--max-trials", type=int, default=1000, help="trials kept per list (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = data_root().resolve()
    out = Path(args.out).resolve() / args.split
    clips = babble_clips(root)
    failed = 0
    for name in LISTS[args.split]:
        trials = read_trials(root / "trials" / f"{name}.txt", root)
        if len(trials) > args.max_trials:
            keep = np.random.default_rng(args.seed).choice(len(trials), args.max_trials, replace=False)
            trials = [trials[i] for i in sorted(keep)]
        tests = sorted({t.test for t in trials})
        for condition in CONDITIONS:
            copies: dict[str, str] = {}
            for path in tqdm(tests, desc=f"{name} {condition}", dynamic_ncols=True):
                rel = Path(path).resolve().relative_to(root)
                target = out / condition / rel.with_suffix(".flac")
                if not target.exists():
                    try:
                        wav = load_audio(path, target_sr=SR)
                    except AudioError as exc:
                        print(f"skipped {path}: {exc}", file=sys.stderr)
                        failed += 1
                        continue
                    copy = stress(wav, condition, rng_for(args.seed, str(rel), condition), clips)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(target.stem + ".tmp.flac")
                    sf.write(tmp, np.clip(copy, -1.0, 1.0), SR)
                    tmp.replace(target)
                copies[path] = str(target)
            lines = [f"{t.label} {Path(t.enroll).resolve()} {copies[t.test]}\n" for t in trials if t.test in copies]
            (out / f"{name}.{condition}.txt").write_text("".join(lines))
    print(f"wrote {out} ({failed} unreadable files skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
