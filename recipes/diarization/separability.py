"""How well d-vectors tell the speakers of one conversation apart, before any clustering (docs/diarization.md).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python recipes/diarization/separability.py [--model PT] [--split dev]
        [--set exp/diarization/dev-noise-free]

On the conversations of tune.py (built or reused, embeddings from its cache), every pair of speech segments
(:func:`ge2e.diarization.pipeline.speech_segments`) of one conversation is a trial: same reference speaker or not.
For each scale of the segment d-vector (the windows centred in the segment, the segment's own frames, both: the
pipeline's) it prints the equal error rate of all pairs pooled and the mean per-conversation area under the ROC
curve, with and without centring the d-vectors of a recording; the equal error rate of the pairs within one
corpus (both speakers from it); and, as a ceiling for any segmentation, the same for the reference turns embedded
on their own frames (one speaker each, boundaries known), with the speaker count the default method finds over
those turns for each silhouette bonus. Writes ``exp/diarization/separability-<split or set>.json``. ``--set``
scores another set built by ``make_eval_set.py`` instead, e.g. the noise-free twin of the dev set (its
``--snr-db 100 100``), to see what the noise costs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_eval_set import PER_COUNT
from tune import OUT, SILHOUETTE_BONUSES, cache_name, count, embed_set, ensure_set, references, set_id

from ge2e.audio import load_speech, log_mel
from ge2e.diarization import load_encoder
from ge2e.diarization.clustering import cluster, tuned
from ge2e.diarization.pipeline import SpeechWindows, speech_segments, windows_around
from ge2e.files import atomic_write
from ge2e.inference import embed_mels, model_fingerprint
from ge2e.metrics import eer

MIN_TURN_FRAMES = 20  # reference turns shorter than 0.2 s of speech (overlap slivers) are left out


def frame_speakers(speech: SpeechWindows, reference) -> np.ndarray:
    """``(F,)`` index of the reference speaker of each speech frame (the first listed where turns overlap), -1 for
    none."""
    times = speech.offset_s + speech.speech_frames * speech.frame_s
    names = sorted({s.speaker for s in reference})
    labels = np.full(len(times), -1)
    for seg in reference:
        labels[(times >= seg.start) & (times < seg.end) & (labels < 0)] = names.index(seg.speaker)
    return labels


def majority(labels: np.ndarray, groups: np.ndarray, count_: int) -> np.ndarray:
    """``(count_,)`` most frequent label >= 0 of each group, -1 where a group has none."""
    out = np.full(count_, -1)
    for g in range(count_):
        values = labels[(groups == g) & (labels >= 0)]
        if len(values):
            out[g] = np.bincount(values).argmax()
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def centred(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return unit(x - (weights[:, None] * x).sum(0) / weights.sum())


def pairs(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and same-speaker flag of every pair of labelled rows."""
    keep = labels >= 0
    x, y = unit(vectors[keep]), labels[keep]
    upper = np.triu_indices(len(x), 1)
    return (x @ x.T)[upper], (y[:, None] == y[None, :])[upper]


def separation(units: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Pooled EER and mean per-conversation AUC over ``[(vectors, labels)]``."""
    scored = [pairs(v, lab) for v, lab in units]
    scores = np.concatenate([s for s, _ in scored])
    same = np.concatenate([t for _, t in scored])
    aucs = [roc_auc_score(t, s) for s, t in scored if 0 < t.sum() < len(t)]
    return {"eer": eer(scores, same)[0], "auc": float(np.mean(aucs)), "pairs": len(scores)}


def reference_turns(model, wav: Path, speech: SpeechWindows, labels: np.ndarray):
    """d-vectors of the reference turns on their own frames -> (``(T, D)``, seconds, speaker of each)."""
    waveform, _ = load_speech(wav, None, model.audio, wav.name)
    frames = log_mel(torch.from_numpy(waveform), model.audio)[torch.from_numpy(speech.speech_frames)]
    keep = np.flatnonzero(labels >= 0)
    breaks = np.flatnonzero(np.diff(labels[keep]) != 0) + 1
    runs = [r for r in np.split(keep, breaks) if len(r) >= MIN_TURN_FRAMES]
    pieces = [frames[torch.from_numpy(r)] for r in runs]
    vectors = embed_mels(model, [p - p.mean(dim=0, keepdim=True) for p in pieces]).numpy().astype(np.float64)
    return vectors, np.array([len(r) * speech.frame_s for r in runs]), np.array([labels[r[0]] for r in runs])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="checkpoint or exported encoder (default: the bundled model)")
    p.add_argument("--split", choices=("dev", "test"), default="dev")
    p.add_argument("--per-count", type=int, default=PER_COUNT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", type=Path, dest="folder", help="a set built by make_eval_set.py (default: tune.py's)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_encoder(args.model)
    if args.folder:
        manifest = json.loads((args.folder / "manifest.json").read_text())
        folder, set_name, refs = args.folder, args.folder.name, references(args.folder, manifest)
    else:
        manifest, refs = ensure_set(args.split, args.per_count, args.seed)
        folder, set_name = OUT / args.split, args.split
    # separation needs pairs of different speakers: the one-speaker recordings are left out
    refs = {uri: segments for uri, segments in refs.items() if count(segments) > 1}
    cache = OUT / "cache" / cache_name(model_fingerprint(model)) / set_id(manifest["split"], manifest)
    speeches = embed_set(model, folder, list(refs), cache)

    scales: dict[str, list] = {"windows": [], "own frames": [], "both": []}
    centred_scales: dict[str, list] = {k: [] for k in scales}
    corpora: dict[str, list] = {}
    turns = []
    for uri, (speech, _) in speeches.items():
        units = speech_segments(speech)
        frames = frame_speakers(speech, refs[uri])
        labels = majority(frames, units.frame_segment, len(units.durations))
        vectors = {
            "windows": windows_around(speech),
            "own frames": speech.segment_embeddings.astype(np.float64),
            "both": units.embeddings.astype(np.float64),
        }
        for name, v in vectors.items():
            scales[name].append((v, labels))
            centred_scales[name].append((centred(v, units.durations), labels))
        names = sorted({s.speaker for s in refs[uri]})  # <corpus>/<speaker>
        for corpus in sorted({n.split("/")[0] for n in names}):
            members = [i for i, n in enumerate(names) if n.startswith(corpus + "/")]
            if len(members) > 1:
                within = np.where(np.isin(labels, members), labels, -1)
                corpora.setdefault(corpus, []).append((vectors["both"], within))
        turns.append((uri, *reference_turns(model, folder / "wav" / f"{uri}.wav", speech, frames)))
        print(f"{set_name}/{uri}", flush=True)

    results: dict = {
        "split": manifest["split"],
        "set": set_name,
        "conversations": len(speeches),
        "scales": {},
        "centred": {},
    }
    for name in scales:
        results["scales"][name] = separation(scales[name])
        results["centred"][name] = separation(centred_scales[name])
    results["same corpus"] = {c: separation(u) for c, u in corpora.items()}
    results["reference turns"] = separation([(v, lab) for _, v, _, lab in turns])
    results["reference turns, centred"] = separation([(centred(v, s), lab) for _, v, s, lab in turns])
    default = tuned()
    counting = {}
    for bonus in SILHOUETTE_BONUSES:
        tuning = replace(default, silhouette_bonus=float(bonus))
        right = {"2-4": [], "5-8": []}
        for uri, v, seconds, _ in turns:
            found = len(set(cluster(v.astype(np.float32), 1, min(10, len(v)), "silhouette", 1, tuning, seconds)))
            right["2-4" if count(refs[uri]) <= 4 else "5-8"].append(found == count(refs[uri]))
        counting[f"{bonus:g}"] = {g: float(np.mean(r)) for g, r in right.items()}
    results["reference turns, silhouette count right"] = counting

    print(f"\nsegment pairs of one conversation ({set_name}): EER pooled / mean AUC")
    for name in scales:
        plain, cen = results["scales"][name], results["centred"][name]
        print(f"  {name:11s} {100 * plain['eer']:5.1f}% {plain['auc']:.3f}", end="")
        print(f"   centred {100 * cen['eer']:5.1f}% {cen['auc']:.3f}")
    for corpus, r in results["same corpus"].items():
        print(f"  both, two speakers of {corpus}: {100 * r['eer']:.1f}% ({r['pairs']} pairs)")
    for key in ("reference turns", "reference turns, centred"):
        print(f"  {key}: {100 * results[key]['eer']:.1f}% {results[key]['auc']:.3f}")
    best = max(counting.items(), key=lambda kv: kv[1]["2-4"])
    print(f"  reference turns, best silhouette bonus {best[0]}: count right {best[1]}")
    path = OUT / f"separability-{set_name}.json"
    atomic_write(path, lambda f: f.write(json.dumps(results, indent=1)), "w")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
