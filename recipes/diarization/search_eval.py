"""Speaker search on the diarization conversations: the threshold calibrated on DEV, missed and false alarm on TEST.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python recipes/diarization/search_eval.py --per-count 4

1. Builds (or reuses) ``exp/diarization/{dev,test}`` and the model's cached d-vectors of every conversation, as
   ``tune.py`` does (``ensure_set``, ``embed_set``; a smaller ``--per-count`` keeps the first conversations).
2. For each conversation and each of its speakers: the speaker is enrolled from up to ``ENROLL_FILES`` of its own
   files of the official split (at least ``ENROLL_S`` seconds of audio) that no turn of *that* conversation was
   cut from, and searched in the conversation (:func:`ge2e.diarization.search.score_segments`).
3. Missed speech (the speaker's reference speech outside the found regions) and false alarm (found time outside
   it: other speakers, pauses), pooled over all (conversation, speaker) pairs, as a share of the speakers' speech.
   The threshold with the least missed + false-alarm time on dev is written as ``search_threshold`` into the
   model's settings beside its weights (:func:`ge2e.pretrained.tuning_path`); the test table goes between the
   markers of docs/diarization.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_eval_set import REPO, data_root, split_files
from tune import GROUPS, OUT, cache_name, embed_set, ensure_set, set_id

from ge2e.diarization import load_encoder
from ge2e.diarization.search import find_regions, score_segments
from ge2e.files import atomic_write
from ge2e.inference import model_fingerprint
from ge2e.pretrained import bundled_model_path, file_sha256, read_tuning, tuning_path

ENROLL_FILES = 10
ENROLL_S = 8.0  # about two sentences: what a user records to enroll
JOIN_GAP_S = 0.3  # simulate.join_sources' default: the silence after each file of a speaker's joined source
THRESHOLDS = np.round(np.arange(-0.2, 0.951, 0.01), 2)
TARGET = 0.20  # issue 35: missed and false alarm each under 20% of the speaker's speech
RESOLUTION_S = 0.001
MARK_START, MARK_END = "<!-- search-table:start -->", "<!-- search-table:end -->"


def used_files(chosen: list[str], turns: list[dict]) -> set[str]:
    """The files of a speaker's joined source (``chosen``, in order, each followed by ``JOIN_GAP_S``) that the
    conversation's ``turns`` of that speaker were cut from."""
    spans, offset = [], 0.0
    for path in chosen:
        seconds = sf.info(path).duration
        spans.append((path, offset, offset + seconds))
        offset += seconds + JOIN_GAP_S
    used = set()
    for turn in turns:
        lo = turn["source_start_s"]
        hi = lo + turn["end_s"] - turn["start_s"]
        used |= {path for path, a, b in spans if a < hi and lo < b}
    return used


def enrollments(manifest: dict, files: dict, seed: int) -> list[tuple[str, str, list[str]]]:
    """``(uri, speaker, enrollment files)`` for every speaker of every conversation, from files it did not use."""
    rng = np.random.default_rng(seed)
    out = []
    for conv in manifest["conversations"]:
        for speaker in conv["speakers"]:
            every, chosen = files[speaker]
            turns = [t for t in conv["turns"] if t["speaker"] == speaker]
            candidates = sorted(set(every) - used_files(chosen, turns))
            picked, seconds = [], 0.0
            for i in rng.permutation(len(candidates)):
                picked.append(candidates[i])
                seconds += sf.info(candidates[i]).duration
                if seconds >= ENROLL_S or len(picked) == ENROLL_FILES:
                    break
            if picked:
                out.append((conv["uri"], speaker, picked))
    return out


def raster(segments, duration: float) -> np.ndarray:
    """``(n,)`` bool: which ``RESOLUTION_S`` steps of the recording the segments cover."""
    mask = np.zeros(int(duration / RESOLUTION_S) + 2, dtype=bool)
    for seg in segments:
        mask[round(seg.start / RESOLUTION_S) : round(seg.end / RESOLUTION_S)] = True
    return mask


def score_pairs(model, split: str, per_count: int, seed: int) -> list[dict]:
    """Every (conversation, speaker) pair of ``split``: its scored segments and its reference speech mask."""
    manifest, refs = ensure_set(split, per_count, seed)
    cache = OUT / "cache" / cache_name(model_fingerprint(model)) / set_id(split, manifest)
    speeches = embed_set(model, OUT / split, list(refs), cache)
    pairs = []
    for uri, speaker, paths in enrollments(manifest, split_files(data_root(), split, seed), seed):
        speech, _ = speeches[uri]
        reference = raster([s for s in refs[uri] if s.speaker == speaker], speech.duration_s)
        segments = score_segments(speech, model.embed_speaker(paths))
        speakers = len({s.speaker for s in refs[uri]})
        pairs.append({"uri": uri, "speaker": speaker, "speakers": speakers, "segments": segments, "ref": reference})
    print(f"{split}: {len(pairs)} (conversation, speaker) pairs from {len(refs)} conversations", flush=True)
    return pairs


def errors(pairs: list[dict], threshold: float) -> dict:
    """Pooled seconds of the speakers' speech, missed and false alarm at ``threshold``, and the share of pairs
    with both under ``TARGET``."""
    speech = missed = false_alarm = 0.0
    within = 0
    for pair in pairs:
        ref = pair["ref"]
        found = raster(find_regions(pair["segments"], threshold), len(ref) * RESOLUTION_S)[: len(ref)]
        s, m, f = ref.sum(), (ref & ~found).sum(), (found & ~ref).sum()
        speech, missed, false_alarm = speech + s, missed + m, false_alarm + f
        within += bool(m < TARGET * s and f < TARGET * s)
    step = RESOLUTION_S
    return {
        "pairs": len(pairs),
        "speech_s": speech * step,
        "missed": missed / speech,
        "false_alarm": false_alarm / speech,
        "within_target": within / max(len(pairs), 1),
    }


def table(results: dict) -> str:
    lines = [
        "| split | speakers per conversation | (conversation, speaker) pairs | their speech | missed | false alarm "
        "| pairs with both under 20% |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        for group, row in results[split].items():
            lines.append(
                f"| {split} | {group} | {row['pairs']} | {row['speech_s'] / 60:.1f} min | {100 * row['missed']:.1f}% "
                f"| {100 * row['false_alarm']:.1f}% | {100 * row['within_target']:.0f}% |"
            )
    return "\n".join(lines)


def write_threshold(path: Path, threshold: float, explicit: bool) -> Path:
    """``search_threshold`` into the settings beside the model's weights (created, with the model's fingerprints,
    when it has none yet)."""
    target = tuning_path(path)
    fingerprints = [file_sha256(path)] if explicit else [file_sha256(bundled_model_path(i)) for i in (True, False)]
    record = read_tuning(path) or {"fingerprints": list(dict.fromkeys(fingerprints))}
    if not set(fingerprints) <= set(record["fingerprints"]):
        raise SystemExit(f"{target} holds for another model; tune it with tune.py --model first")
    record["search_threshold"] = threshold
    atomic_write(target, lambda f: f.write(json.dumps(record, indent=1) + "\n"), "w")
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint or exported encoder (default: the bundled model)")
    p.add_argument("--per-count", type=int, default=4, help="conversations per speaker count and split (4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--docs", type=Path, default=REPO / "docs", help="where diarization.md is updated")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    model = load_encoder(args.model)
    pairs = {split: score_pairs(model, split, args.per_count, args.seed) for split in ("dev", "test")}
    dev_error = [(lambda e: e["missed"] + e["false_alarm"])(errors(pairs["dev"], t)) for t in THRESHOLDS]
    threshold = float(THRESHOLDS[int(np.argmin(dev_error))])
    results: dict = {"threshold": threshold}
    for split, rows in pairs.items():
        results[split] = {
            name: errors([r for r in rows if r["speakers"] in counts], threshold) for name, counts in GROUPS.items()
        }
        results[split]["all"] = errors(rows, threshold)
    path = args.model.resolve() if args.model else bundled_model_path(int8=getattr(model, "int8", False)).resolve()
    written = write_threshold(path, threshold, args.model is not None)
    results["minutes"] = (time.time() - start) / 60
    atomic_write(OUT / "search.json", lambda f: f.write(json.dumps(results, indent=1)), "w")
    section = (
        f"Threshold {threshold:.2f} (least missed + false-alarm time on dev; written to "
        f"`{written.relative_to(REPO) if written.is_relative_to(REPO) else written}`), {args.per_count} "
        f"conversations per speaker count and split, {results['minutes']:.0f} min on one core:\n\n{table(results)}"
    )
    print(section)
    docs = args.docs / "diarization.md"
    text = docs.read_text()
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        docs.write_text(f"{head}{MARK_START}\n{section}\n{MARK_END}{rest.split(MARK_END, 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
