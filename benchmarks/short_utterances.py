"""What a score is worth on short speech: EER, and false accepts / misses at the model's threshold, by seconds of
speech, on official DEV trial lists (never test: these figures decide where ``verify`` flags a score as short).

Both measurements use the scoring front end (:meth:`ge2e.inference.Inference.features`: any speech the VAD finds):

- cropped: on a list of longer utterances (default ``speechocean762.dev``, read sentences), the test side of each
  trial is cut to the middle 0.3 / 0.5 / 1 / 2 s of its speech (the samples the VAD keeps); the enrollment side
  stays whole. Only trials whose test utterance has at least the longest crop of speech are used, the same trials
  in every row, so rows differ by test length only.
- natural: on ``speech_commands_v0.02_test.dev`` (1 s keywords, same-word trials), trials bucketed by the speech
  of their shorter side, as a digit or keyword reaches ``verify``.

    nice -n 10 .venv/bin/python benchmarks/short_utterances.py [--model PATH]   # writes results/short_utterances.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common import machine, write_result
from ge2e.audio import load_speech, preprocess
from ge2e.errors import AudioError
from ge2e.evaluate import EvalTrial, list_trials
from ge2e.inference import (
    SCORING_MIN_SPEECH_MS,
    Encoder,
    as_inference,
    embed_mels,
    speech_seconds,
)
from ge2e.metrics import eer, error_rates
from ge2e.pretrained import default_threshold, load_model

DEFAULT_DATA = Path(os.environ.get("GE2E_DATA", "../shared/data"))


def row(label: str, scores: Sequence[float], labels: Sequence[int], threshold: float | None) -> dict[str, Any]:
    """EER and, at ``threshold``, the false-accept and miss rates of one set of trials."""
    out: dict[str, Any] = {"what": label, "n_trials": len(scores), "n_target": int(np.sum(labels))}
    if len(set(labels)) < 2:
        return out
    out["eer"] = eer(scores, labels)[0]
    if threshold is not None:
        out["false_accepts"], out["misses"] = error_rates(scores, labels, threshold)
    return out


def embed_each(model: Encoder, paths: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, str]]:
    """d-vector and seconds of speech of every file the scoring front end takes; the others with their reason."""
    mels, refused = {}, {}
    for path in paths:
        try:
            mels[path] = as_inference(model).features(path)
        except AudioError as exc:
            refused[path] = exc.problem
    vectors = embed_mels(model, list(mels.values())).numpy() if mels else []
    seconds = {p: speech_seconds(m, model.audio) for p, m in mels.items()}
    return dict(zip(mels, vectors, strict=True)), seconds, refused


def cropped(model: Encoder, trials: list[EvalTrial], crops: list[float], threshold: float | None) -> list[dict]:
    audio = model.audio
    plain = dataclasses.replace(audio, vad=False)  # the crops are speech already: embed exactly that many seconds
    enroll_paths = sorted({t.enroll[0] for t in trials})
    enrolled, _, _ = embed_each(model, enroll_paths)
    speech = {}
    for path in sorted({t.test for t in trials}):
        try:
            wav, mask = load_speech(path, cfg=audio)
        except AudioError:
            continue
        speech[path] = wav[mask]
    longest = round(max(crops) * audio.sample_rate)
    kept = [t for t in trials if t.enroll[0] in enrolled and len(speech.get(t.test, ())) >= longest]
    tests = sorted({t.test for t in kept})
    labels = [t.label for t in kept]
    rows = []
    for seconds in [*crops, None]:
        mels = []
        for path in tests:
            wav = speech[path]
            if seconds is not None:
                n = round(seconds * audio.sample_rate)
                start = (len(wav) - n) // 2
                wav = wav[start : start + n]
            mels.append(preprocess(wav, audio.sample_rate, plain, min_speech_ms=SCORING_MIN_SPEECH_MS))
        vectors = dict(zip(tests, embed_mels(model, mels).numpy(), strict=True))
        scores = [float(np.dot(enrolled[t.enroll[0]], vectors[t.test])) for t in kept]
        what = "whole utterance" if seconds is None else f"{seconds:g} s"
        rows.append(row(what, scores, labels, threshold))
        print(f"  cropped test side {what}: {rows[-1]}", flush=True)
    return rows


def natural(model: Encoder, trials: list[EvalTrial], edges: list[float], threshold: float | None) -> dict:
    paths = sorted({p for t in trials for p in (t.enroll[0], t.test)})
    vectors, seconds, refused = embed_each(model, paths)
    usable = [t for t in trials if t.enroll[0] in vectors and t.test in vectors]
    shorter = np.array([min(seconds[t.enroll[0]], seconds[t.test]) for t in usable])
    scores = np.array([float(np.dot(vectors[t.enroll[0]], vectors[t.test])) for t in usable])
    labels = np.array([t.label for t in usable])
    bounds = [0.0, *edges, np.inf]
    rows = []
    for lo, hi in itertools.pairwise(bounds):
        inside = (shorter >= lo) & (shorter < hi)
        what = f"shorter side {lo:g}-{hi:g} s" if np.isfinite(hi) else f"shorter side >= {lo:g} s"
        rows.append(row(what, scores[inside].tolist(), labels[inside].tolist(), threshold))
        print(f"  {what}: {rows[-1]}", flush=True)
    rows.append(row("all", scores.tolist(), labels.tolist(), threshold))
    training_minimum = model.audio.min_speech_ms / 1000
    return {
        "rows": rows,
        "files": len(paths),
        "files_refused": refused,
        "trials_unscored": len(trials) - len(usable),
        "trials_under_training_minimum": int(np.sum(shorter < training_minimum)),
        "file_speech_seconds_quartiles": np.quantile(list(seconds.values()), [0.25, 0.5, 0.75]).round(3).tolist(),
    }


def table(rows: list[dict]) -> str:
    lines = ["| speech | trials (targets) | EER | false accepts | misses |", "|---|---|---|---|---|"]
    for r in rows:
        pct = {k: f"{100 * r[k]:.1f}%" if k in r else "-" for k in ("eer", "false_accepts", "misses")}
        lines.append(
            f"| {r['what']} | {r['n_trials']} ({r['n_target']}) | {pct['eer']} | {pct['false_accepts']} | "
            f"{pct['misses']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint or exported encoder (default: the bundled model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder (default $GE2E_DATA)")
    parser.add_argument("--cropped-list", default="speechocean762.dev", help="list of long utterances to crop")
    parser.add_argument("--crops", type=float, nargs="+", default=[0.3, 0.5, 1.0, 2.0], help="seconds of speech")
    parser.add_argument("--natural-list", default="speech_commands_v0.02_test.dev", help="list of short utterances")
    parser.add_argument("--edges", type=float, nargs="+", default=[0.5, 0.7], help="bucket edges in seconds")
    parser.add_argument("--out", default="short_utterances", help="results/<OUT>.json")
    args = parser.parse_args()
    for name in (args.cropped_list, args.natural_list):
        if not name.endswith(".dev"):
            parser.error(f"{name}: measure on a dev list; the flag's cut-off is chosen from these figures")
    model = load_model(args.model)
    threshold = default_threshold(model) if model.calibration else None
    trials_dir = args.data / "trials"
    print(f"cropped: {args.cropped_list}", flush=True)
    crop_rows = cropped(model, list_trials(trials_dir / f"{args.cropped_list}.txt"), args.crops, threshold)
    print(f"natural: {args.natural_list}", flush=True)
    natural_result = natural(model, list_trials(trials_dir / f"{args.natural_list}.txt"), args.edges, threshold)
    result = {
        "machine": machine(),
        "model": args.model or "bundled",
        "model_sha256": model.fingerprint,
        "threshold": threshold,
        "cropped": {"list": args.cropped_list, "rows": crop_rows},
        "natural": {"list": args.natural_list, **natural_result},
    }
    path = write_result(args.out, result)
    threshold_note = "no threshold" if threshold is None else f"threshold {threshold:.3f}"
    print(f"\n{args.cropped_list}, test side cropped ({threshold_note}):\n{table(crop_rows)}")
    print(f"\n{args.natural_list}, by the shorter side's speech:\n{table(natural_result['rows'])}")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
